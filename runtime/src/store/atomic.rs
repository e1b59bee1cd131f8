//! Crash-safe file replacement, shared by everything that persists state:
//! component writes, the command journal, the artifact cache.

use cap_std::fs::{Dir, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);
static FSYNCS: AtomicU64 = AtomicU64::new(0);

/// fsyncs (file or folder) the agent's own persistence issued since start:
/// on an SD card each costs milliseconds and wear, so the benchmark prints
/// them per command.
pub fn fsync_count() -> u64 {
    FSYNCS.load(Ordering::Relaxed)
}

/// Counts one fsync issued elsewhere (e.g. the journal's log).
pub fn count_fsync() {
    FSYNCS.fetch_add(1, Ordering::Relaxed);
}

/// Writes `contents` to `dir/name` so that a crash leaves either the old or
/// the new file: unique temp name, fsync, rename over, fsync the directory.
/// A failed write removes its temp file and leaves the old file untouched;
/// a replaced file keeps its permissions.
pub fn write(dir: &Dir, name: &Path, contents: &[u8]) -> std::io::Result<()> {
    let file_name = name
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let parent = name.parent().filter(|p| !p.as_os_str().is_empty());
    let parent_dir = match parent {
        Some(p) => dir.open_dir(p)?,
        None => dir.try_clone()?,
    };
    let temp = format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let result = (|| {
        let mut file =
            parent_dir.open_with(&temp, OpenOptions::new().write(true).create_new(true))?;
        file.write_all(contents)?;
        // A replaced file keeps its mode (e.g. a hostapd.conf holding the
        // Wi-Fi passphrase stays 0600).
        if let Ok(meta) = parent_dir.symlink_metadata(&file_name)
            && meta.is_file()
        {
            file.set_permissions(meta.permissions())?;
        }
        count_fsync();
        file.sync_all()?;
        drop(file);
        parent_dir.rename(&temp, &parent_dir, &file_name)?;
        // Make the rename itself durable.
        count_fsync();
        parent_dir.open(".")?.sync_all()
    })();
    if result.is_err() {
        let _ = parent_dir.remove_file(&temp);
    }
    result
}

/// Like [`write`] (a reader sees the old or the new file, never half) but
/// not flushed: after a power cut the file may be missing or empty. For
/// records whose loss is harmless and detected (a journal outcome whose
/// command is then reported interrupted).
pub fn write_unsynced(dir: &Dir, name: &str, contents: &[u8]) -> std::io::Result<()> {
    let temp = format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let result = (|| {
        let mut file = dir.open_with(&temp, OpenOptions::new().write(true).create_new(true))?;
        file.write_all(contents)?;
        drop(file);
        dir.rename(&temp, dir, name)
    })();
    if result.is_err() {
        let _ = dir.remove_file(&temp);
    }
    result
}

/// Opens (creating it if needed) a folder the agent owns, as a capability.
pub fn open_state_dir(path: &Path) -> std::io::Result<Dir> {
    std::fs::create_dir_all(path)?;
    Dir::open_ambient_dir(path, cap_std::ambient_authority())
}
