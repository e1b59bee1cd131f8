//! Why a component could not be prepared to run.

use std::path::PathBuf;

/// Setting up the engine or loading a component failed. (A failure *while
/// running* a command is a [`crate::sandbox::CommandError`] instead.)
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    #[error("cannot read component {path}: {source}")]
    ReadComponent {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("component '{name}' is not a valid WebAssembly component: {detail}")]
    InvalidComponent { name: String, detail: String },
    #[error(
        "component '{name}' cannot run on this agent: {detail} (was it built against a newer neopro:agent WIT?)"
    )]
    Link { name: String, detail: String },
}
