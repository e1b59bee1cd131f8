//! Temporary files of atomic writes a power cut left behind.
//!
//! [`atomic`](super::atomic) writes `.<name>.tmp-<pid>-<n>`, flushes it,
//! then renames it over `<name>`. A cut between the flush and the rename's
//! journal commit leaves the temporary file on the card, complete or not,
//! and nothing would ever remove it (the power-cut rig's check
//! `no-orphans`, `docs/power-cuts.md`). At start, before anything
//! writes, the agent removes those of its folders' temporary files whose
//! writer is gone (another running `neopro-runtime`, a CLI command run
//! beside the agent, keeps its own).

use std::path::{Path, PathBuf};

/// The writer's pid in `.<name>.tmp-<pid>-<n>`, if `name` is one of ours.
fn writer_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (stem, tail) = rest.rsplit_once(".tmp-")?;
    let (pid, counter) = tail.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if stem.is_empty() || !digits(pid) || !digits(counter) {
        return None;
    }
    pid.parse().ok()
}

/// Whether `pid` is another live `neopro-runtime` (not this process).
fn writer_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim() == "neopro-runtime")
}

/// Removes the stale temporary files under `dir`, `depth` folders deep
/// (links are never followed); returns what went.
pub fn sweep(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    super::tree::each_regular_file(dir, depth, &mut |entry| {
        let stale = entry
            .file_name()
            .to_str()
            .and_then(writer_pid)
            .is_some_and(|pid| !writer_alive(pid));
        let path = entry.path();
        if stale && std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    });
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_temporary_names_are_recognised() {
        assert_eq!(writer_pid(".configuration.json.tmp-812-3"), Some(812));
        assert_eq!(writer_pid(".a.b.json.tmp-1-0"), Some(1));
        for other in [
            "configuration.json.tmp-812-3",
            ".configuration.json.tmp-812",
            ".configuration.json.tmp-x-3",
            "..tmp-1-2",
            ".video.mp4.partial",
            ".configuration.json.swp",
        ] {
            assert_eq!(writer_pid(other), None, "{other}");
        }
    }

    #[test]
    fn stale_temporary_files_go_live_ones_and_others_stay() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let sub = dir.path().join("journal");
        std::fs::create_dir(&sub)?;
        // A writer long gone (pid 0 is never a process of ours), at two depths.
        let stale = [
            dir.path().join(".configuration.json.tmp-0-4"),
            sub.join(".c1.json.tmp-0-9"),
        ];
        // This process's own name stands for "gone": at start nothing of
        // ours is being written yet.
        let own = dir
            .path()
            .join(format!(".state.json.tmp-{}-1", std::process::id()));
        let kept = [
            dir.path().join("configuration.json"),
            dir.path().join(".video.mp4.partial"),
            dir.path().join("notes.tmp-0-1"),
        ];
        for path in stale.iter().chain(&kept).chain([&own]) {
            std::fs::write(path, b"x")?;
        }
        let mut removed = sweep(dir.path(), 1);
        removed.sort();
        let mut wanted = vec![stale[0].clone(), stale[1].clone(), own];
        wanted.sort();
        assert_eq!(removed, wanted);
        for path in &kept {
            assert!(path.exists(), "{path:?} removed");
        }
        // Depth 0 does not enter sub-folders.
        std::fs::write(sub.join(".x.tmp-0-1"), b"x")?;
        assert!(sweep(dir.path(), 0).is_empty());
        assert!(sub.join(".x.tmp-0-1").exists());
        Ok(())
    }
}
