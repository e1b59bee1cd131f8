//! Safe extraction of update archives (host-side checks: no absolute paths,
//! no `..`, no links out, no devices).

use crate::bindings::neopro::agent::archive as host;
use crate::{Error, Root};

pub use host::Report;

/// Extracts `src_root/src_path` (a `.tar.gz`) into the new folder
/// `dest_root/dest_path`, leaving out entries under `skip`. A refused
/// archive leaves no folder behind.
pub fn extract_tar_gz(
    src_root: Root,
    src_path: &str,
    dest_root: Root,
    dest_path: &str,
    skip: &[&str],
) -> Result<Report, Error> {
    let skip: Vec<String> = skip.iter().map(|s| (*s).to_owned()).collect();
    host::extract_tar_gz(src_root, src_path, dest_root, dest_path, &skip)
}

/// Checks `root/path` against the box's trusted update keys (a signature is
/// required only when the box has some); returns the file's sha256.
pub fn verify_signature(
    root: Root,
    path: &str,
    version: &str,
    signature: Option<&str>,
) -> Result<String, Error> {
    host::verify_signature(root, path, version, signature)
}

/// The downgrade rule of an app release, once the download showed it is not
/// an agent release: an error when `version` is older than the installed
/// release, unless the box allows downgrades (UPDATE_ALLOW_DOWNGRADE).
pub fn check_app_release(version: &str) -> Result<(), Error> {
    host::check_app_release(version)
}
