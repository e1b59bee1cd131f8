//! Downloads into a root, streamed and verified by the host.

use crate::bindings::neopro::agent::download as host;
use crate::{Error, Root};
use serde_json::Value;

pub use host::Outcome;

/// Downloads `url` to `root/path` (the parent folder must exist). With
/// `sha256`, a mismatch is `Error::ChecksumMismatch` and no file is left.
/// With `progress`, progress events (0..=99) carrying its fields are emitted
/// while bytes arrive.
pub fn fetch(
    url: &str,
    root: Root,
    path: &str,
    sha256: Option<&str>,
    progress: Option<&Value>,
) -> Result<Outcome, Error> {
    host::fetch(&host::Request {
        url: url.to_owned(),
        root,
        path: path.to_owned(),
        sha256: sha256.map(str::to_owned),
        max_bytes: None,
        progress_detail: progress.map(Value::to_string),
    })
}
