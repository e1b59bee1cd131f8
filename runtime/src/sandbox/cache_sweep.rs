//! Artifacts no agent of this version will load again, deleted when the
//! cache opens (every agent start, every `run-component`).
//!
//! An artifact's name carries the machine it is for and the engine's
//! compatibility hash, which changes with every wasmtime upgrade: each
//! agent upgrade leaves a full set of artifacts behind (a SpiderMonkey
//! component's is 46 MB), and on a box's SD card nothing else ever removes
//! them. Two kinds are stale:
//! - the names of agents before artifacts were keyed by target,
//!   `<wasm sha256>-<engine hash>.cwasm`;
//! - this machine's artifacts made by another engine (another agent
//!   version): `<wasm sha256>-<this target>-<other hash>.cwasm`.
//!
//! Artifacts for other targets are left alone: they never load here
//! (their name does not match, and wasmtime's header check refuses them),
//! and a cache folder may be shared with a precompiling tool.

use std::path::{Path, PathBuf};

/// Suffixes of the files that belong to one artifact.
const SIDECARS: [&str; 2] = [".sha256", ".verified"];

/// Whether `name` is an artifact (or one of its sidecar files) that the
/// engine `target`-`engine_hash` never loads: see the module comment.
pub fn is_stale(name: &str, target: &str, engine_hash: &str) -> bool {
    let artifact = SIDECARS
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    let Some(stem) = artifact.strip_suffix(".cwasm") else {
        return false;
    };
    let Some((wasm_sha256, key)) = stem.split_once('-') else {
        return false;
    };
    if wasm_sha256.len() != 64 || !wasm_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    match key.rsplit_once('-') {
        // Before artifacts were keyed by target: only the engine hash.
        None => key.len() == 16 && key.bytes().all(|b| b.is_ascii_hexdigit()),
        Some((label, hash)) => label == target && hash != engine_hash,
    }
}

/// Deletes the stale artifacts in `dir` (not below it); returns what was
/// deleted. A file that cannot be deleted is left for the next start.
pub fn sweep(dir: &Path, target: &str, engine_hash: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if is_file && is_stale(name, target, engine_hash) {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) => tracing::warn!(
                    "cannot delete the stale component artifact {}: {e}",
                    path.display()
                ),
            }
        }
    }
    removed.sort();
    let artifacts = removed
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .count();
    if artifacts > 0 {
        tracing::info!(
            "deleted {artifacts} precompiled component(s) from {} left by an earlier agent \
             version (they are never loaded again)",
            dir.display()
        );
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn old_names_and_other_engine_versions_are_stale() {
        let now = "aaaaaaaaaaaaaaaa";
        let stale = |name: &str| is_stale(name, "x86_64", now);
        // Before the target key.
        assert!(stale(&format!("{SHA}-bbbbbbbbbbbbbbbb.cwasm")));
        assert!(stale(&format!("{SHA}-bbbbbbbbbbbbbbbb.cwasm.sha256")));
        assert!(stale(&format!("{SHA}-bbbbbbbbbbbbbbbb.cwasm.verified")));
        // This machine, an older engine.
        assert!(stale(&format!("{SHA}-x86_64-bbbbbbbbbbbbbbbb.cwasm")));
        // Current ones, other machines, and anything else stay.
        assert!(!stale(&format!("{SHA}-x86_64-{now}.cwasm")));
        assert!(!stale(&format!("{SHA}-x86_64-{now}.cwasm.sha256")));
        assert!(!stale(&format!("{SHA}-pulley32-bbbbbbbbbbbbbbbb.cwasm")));
        assert!(!stale(&format!(".{SHA}-bbbbbbbbbbbbbbbb.cwasm.tmp-1-2")));
        assert!(!stale("notes-bbbbbbbbbbbbbbbb.cwasm"));
        assert!(!stale(&format!("{SHA}-bbbb.cwasm")));
        assert!(!stale("README"));
    }
}
