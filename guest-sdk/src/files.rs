//! Files inside the roots granted to the component.
//!
//! Paths are relative to a [`Root`](crate::Root) and use `/`. The host refuses
//! anything that would leave the root (`..`, absolute paths, symlinks out).

use crate::{Error, Root};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::neopro::agent::files as host;
pub use crate::bindings::neopro::agent::files::{DirEntry, EntryKind, Metadata};

/// Largest file [`read`] accepts unless told otherwise (16 MiB): enough for
/// any configuration, small enough that a mistake cannot exhaust memory.
pub const DEFAULT_MAX_READ: u64 = 16 * 1024 * 1024;

/// Reads a whole file of at most [`DEFAULT_MAX_READ`] bytes.
pub fn read(root: Root, path: &str) -> Result<Vec<u8>, Error> {
    host::read(root, path, DEFAULT_MAX_READ)
}

/// Reads a UTF-8 text file.
pub fn read_to_string(root: Root, path: &str) -> Result<String, Error> {
    String::from_utf8(read(root, path)?)
        .map_err(|_| Error::invalid_input(format!("{path} is not UTF-8 text")))
}

/// Reads and parses a JSON file.
pub fn read_json<T: DeserializeOwned>(root: Root, path: &str) -> Result<T, Error> {
    let bytes = read(root, path)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid_input(format!("{path} is not valid JSON: {e}")))
}

/// Replaces a file atomically (old or new content survive a power cut, never half).
pub fn write_atomic(root: Root, path: &str, contents: &[u8]) -> Result<(), Error> {
    host::write_atomic(root, path, contents)
}

/// Writes a value as pretty JSON (2-space indent, like the web app), atomically.
pub fn write_json<T: Serialize>(root: Root, path: &str, value: &T) -> Result<(), Error> {
    let text = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::failed(format!("could not encode {path}: {e}")))?;
    write_atomic(root, path, &text)
}

/// Removes one file (never a directory).
pub fn remove_file(root: Root, path: &str) -> Result<(), Error> {
    host::remove_file(root, path)
}

/// Renames within one root.
pub fn rename(root: Root, from: &str, to: &str) -> Result<(), Error> {
    host::rename(root, from, to)
}

/// Lists a directory, sorted by name.
pub fn list(root: Root, path: &str) -> Result<Vec<DirEntry>, Error> {
    host::list_dir(root, path)
}

/// Describes a path; `Error::NotFound` when it does not exist.
pub fn stat(root: Root, path: &str) -> Result<Metadata, Error> {
    host::stat(root, path)
}

/// True when the path exists (any kind).
pub fn exists(root: Root, path: &str) -> Result<bool, Error> {
    match stat(root, path) {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// sha256 (lower-case hex) of a file of any size.
pub fn sha256(root: Root, path: &str) -> Result<String, Error> {
    host::sha256(root, path)
}

/// Creates a directory and its parents.
pub fn mkdir(root: Root, path: &str) -> Result<(), Error> {
    host::mkdir(root, path)
}

/// Copies a file or folder tree, possibly to another root; links are copied
/// as links. `to` must not exist. Returns the bytes copied.
pub fn copy_tree(from_root: Root, from: &str, to_root: Root, to: &str) -> Result<u64, Error> {
    host::copy_tree(from_root, from, to_root, to)
}

/// Removes a file, link or folder tree (links are not followed).
pub fn remove_tree(root: Root, path: &str) -> Result<(), Error> {
    host::remove_tree(root, path)
}

/// Removes a file, link or folder tree if it exists.
pub fn remove_tree_if_exists(root: Root, path: &str) -> Result<(), Error> {
    match host::remove_tree(root, path) {
        Err(Error::NotFound(_)) => Ok(()),
        other => other,
    }
}

/// Bytes free on the filesystem holding `root`.
pub fn free_bytes(root: Root) -> Result<u64, Error> {
    host::free_bytes(root)
}
