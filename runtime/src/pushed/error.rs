//! Why a component-management command failed. Every message says what to
//! fix; nothing is installed or changed when one is returned.

use super::policy::PolicyError;
use super::store::StoreError;
use crate::signing::components::SigningError;

#[derive(Debug, thiserror::Error)]
pub enum PushedError {
    #[error("{command}: {detail}")]
    InvalidInput {
        command: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("TRUSTED_COMPONENT_KEYS in site.conf: {0}")]
    TrustedKeys(SigningError),
    #[error(
        "the signature of '{name}' cannot be checked: no trusted keys on this box (set TRUSTED_COMPONENT_KEYS in site.conf)"
    )]
    NoTrustedKeys { name: String },
    #[error("the manifest says '{field}' is '{manifest}' but the command says '{params}'")]
    Mismatch {
        field: &'static str,
        manifest: String,
        params: String,
    },
    #[error("the download of component '{name}' failed: {detail}")]
    Download { name: String, detail: String },
    #[error("'{name}' is not a WebAssembly component: {detail}")]
    NotAComponent { name: String, detail: String },
    #[error("{0}")]
    Incompatible(String),
    #[error(
        "component '{name}' claims '{command}', which only the agent itself handles; pick another command type"
    )]
    ReservedCommand { name: String, command: String },
    #[error("a built-in component is already named '{0}'; pick another name")]
    BuiltInName(String),
    #[error(
        "component '{name}' handles '{command}', which this box does not allow: add it to ALLOWED_COMMANDS in site.conf, or set extend-allowlist = true in the site policy {policy}"
    )]
    CommandNotAllowed {
        name: String,
        command: String,
        policy: String,
    },
    #[error(
        "component '{name}' handles '{command}', which the pushed component '{other}' already handles; remove '{other}' first"
    )]
    CommandTaken {
        name: String,
        command: String,
        other: String,
    },
}
