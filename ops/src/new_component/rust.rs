//! The Rust project: a crate with its own workspace, the SDK and the WIT
//! vendored beside it (`neopro-guest-sdk/`, `wit/`: the SDK's bindings read
//! `../wit`, the same layout as in this repository).

use super::vendored::{RUST_SDK, WIT};
use super::{Names, ProjectFile};
use std::path::PathBuf;

pub(crate) fn files(names: &Names) -> Vec<ProjectFile> {
    let template = |path: &str, text: &str| (PathBuf::from(path), names.fill(text));
    let mut files = vec![
        template("Cargo.toml", include_str!("templates/rust/Cargo.toml.tmpl")),
        template(
            &format!("{}.toml", names.component),
            include_str!("templates/rust/manifest.toml.tmpl"),
        ),
        template("src/lib.rs", include_str!("templates/rust/src/lib.rs.tmpl")),
        template("README.md", include_str!("templates/rust/README.md.tmpl")),
        template(".gitignore", include_str!("templates/rust/gitignore.tmpl")),
        template(
            "neopro-guest-sdk/Cargo.toml",
            include_str!("templates/rust/sdk-Cargo.toml.tmpl"),
        ),
    ];
    files.extend(RUST_SDK.iter().map(|(name, text)| {
        (
            PathBuf::from("neopro-guest-sdk/src").join(name),
            (*text).to_owned(),
        )
    }));
    files.extend(wit_files());
    files
}

/// `wit/*.wit`, shared with the TypeScript project.
pub(crate) fn wit_files() -> impl Iterator<Item = ProjectFile> {
    WIT.iter()
        .map(|(name, text)| (PathBuf::from("wit").join(name), (*text).to_owned()))
}

pub(crate) fn next_steps(names: &Names) -> Vec<String> {
    vec![
        format!("cd {}", names.component),
        "cargo test".to_owned(),
        "cargo build --release --target wasm32-wasip2".to_owned(),
        format!(
            "neopro-runtime run-component target/wasm32-wasip2/release/{}.wasm --config site.conf",
            names.snake
        ),
    ]
}
