//! How a compiled artifact is written to the cache folder: the artifact, then
//! its checksum file beside it. Shared by the cache (compiles in process) and
//! the compile child (compiles in a separate process), so neither imports the
//! other.

use std::path::Path;

/// Writes an artifact and then its checksum file.
pub(super) fn store_bytes(bytes: &[u8], path: &Path) -> Result<(), String> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err("bad cache path".to_owned());
    };
    let dir = crate::store::atomic::open_state_dir(dir).map_err(|e| e.to_string())?;
    crate::store::atomic::write_private(&dir, Path::new(name), bytes).map_err(|e| e.to_string())?;
    let mut sum_name = name.to_owned();
    sum_name.push(".sha256");
    // No stamp yet: the file is too fresh to be vouched for by its time.
    crate::store::atomic::write_private(
        &dir,
        Path::new(&sum_name),
        crate::store::hash::sha256_hex(bytes).as_bytes(),
    )
    .map_err(|e| e.to_string())
}
