//! Crash-safe file replacement, shared by everything that persists state:
//! component writes, the command journal, the artifact cache.

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt, PermissionsExt};
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

/// Counts one fsync issued elsewhere (e.g. the journal's log). Called
/// right before the fsync, so it is also where a simulated slow disk waits.
pub fn count_fsync() {
    FSYNCS.fetch_add(1, Ordering::Relaxed);
    let extra = SLOW_FSYNC_MICROS.load(Ordering::Relaxed);
    if extra > 0 {
        std::thread::sleep(std::time::Duration::from_micros(extra));
    }
}

static SLOW_FSYNC_MICROS: AtomicU64 = AtomicU64::new(0);

/// A slow SD card stand-in for tests and benchmarks that run the agent in
/// their own process: from now on each fsync of the agent's persistence
/// (journal, atomic writes) takes `extra` longer, blocking its thread as a
/// slow card does. The agent itself never calls it; zero turns it off.
pub fn simulate_slow_fsync(extra: std::time::Duration) {
    let micros = u64::try_from(extra.as_micros()).unwrap_or(u64::MAX);
    SLOW_FSYNC_MICROS.store(micros, Ordering::Relaxed);
}

/// Mode of a new shared file (videos, configuration.json: the web app's
/// group reads and writes them), before the umask.
const SHARED_FILE_MODE: u32 = 0o666;

/// Writes `contents` to `dir/name` so that a crash leaves either the old or
/// the new file: unique temp name, fsync, rename over, fsync the directory.
/// A failed write removes its temp file and leaves the old file untouched;
/// a replaced file keeps its permissions, a new one gets the shared mode
/// (0666 less the umask). For the web app's files; the agent's own state
/// goes through [`write_private`].
pub fn write(dir: &Dir, name: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_with_mode(dir, name, contents, None)
}

/// [`write`] for the agent's own state: the file is 0600 from its first
/// byte, whatever the umask and whatever mode a file it replaces had.
pub fn write_private(dir: &Dir, name: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_with_mode(
        dir,
        name,
        contents,
        Some(crate::store::private_dir::FILE_MODE),
    )
}

/// [`write`] in a folder holding secrets (hostapd's): a replaced file keeps
/// its mode, a new one (a backup of the passphrase file) is 0600.
pub fn write_secret(dir: &Dir, name: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_inner(
        dir,
        name,
        contents,
        None,
        crate::store::private_dir::FILE_MODE,
    )
}

fn write_with_mode(
    dir: &Dir,
    name: &Path,
    contents: &[u8],
    forced: Option<u32>,
) -> std::io::Result<()> {
    write_inner(dir, name, contents, forced, SHARED_FILE_MODE)
}

fn write_inner(
    dir: &Dir,
    name: &Path,
    contents: &[u8],
    forced: Option<u32>,
    new_mode: u32,
) -> std::io::Result<()> {
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
    let kept = parent_dir
        .symlink_metadata(&file_name)
        .ok()
        .filter(cap_std::fs::Metadata::is_file)
        .map(|m| m.permissions().mode() & 0o7777);
    let result = (|| {
        let mut file = create_temp(&parent_dir, &temp, forced.or(kept), new_mode)?;
        file.write_all(contents)?;
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

/// Renames `from` to `to` inside `dir` so that a power cut leaves either
/// name with whole contents: what is renamed is flushed (a file, or a
/// folder's entries), then renamed, then the folder holding `to` is
/// flushed (and the one `from` left, when it is another) — durable is file
/// flushed, renamed, folder flushed, in that order. Without the last flush
/// the rename is only as durable as the next journal commit that happens to
/// follow it (issue 29: the updater's swap relied on that). A link, FIFO or
/// device is renamed as it is, never opened.
pub fn rename(dir: &Dir, from: &Path, to: &Path) -> std::io::Result<()> {
    flush_entry(dir, from)?;
    trace(|| format!("rename {} -> {}", from.display(), to.display()));
    dir.rename(from, dir, to)?;
    let folder_of = |p: &Path| {
        p.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
    };
    let (to_folder, from_folder) = (folder_of(to), folder_of(from));
    flush_folder(dir, to_folder.as_deref())?;
    if from_folder != to_folder {
        flush_folder(dir, from_folder.as_deref())?;
    }
    Ok(())
}

/// Flushes the file or folder `name` before it is renamed; anything else
/// (a link, a FIFO) is left alone: opening it could follow or block.
fn flush_entry(dir: &Dir, name: &Path) -> std::io::Result<()> {
    let meta = dir.symlink_metadata(name)?;
    let opened = if meta.is_file() {
        // No FIFO waited for, should one be swapped in meanwhile (cap-std
        // keeps any link inside `dir`).
        let mut options = OpenOptions::new();
        options
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
        dir.open_with(name, &options)?
    } else if meta.is_dir() {
        dir.open_dir(name)?.open(".")?
    } else {
        return Ok(());
    };
    trace(|| format!("flush {}", name.display()));
    count_fsync();
    opened.sync_all()
}

/// Flushes the folder `folder` of `dir` (`None`: `dir` itself).
fn flush_folder(dir: &Dir, folder: Option<&Path>) -> std::io::Result<()> {
    let opened = match folder {
        Some(f) => dir.open_dir(f)?.open(".")?,
        None => dir.open(".")?,
    };
    trace(|| {
        format!(
            "flush folder {}",
            folder.map_or_else(|| ".".to_owned(), |f| f.display().to_string())
        )
    });
    count_fsync();
    opened.sync_all()
}

#[cfg(test)]
thread_local! {
    /// What [`rename`] did on this thread, in order: the tests' view of
    /// flushes a power cut alone could show.
    static TRACE: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
fn trace(step: impl FnOnce() -> String) {
    TRACE.with(|t| t.borrow_mut().push(step()));
}

#[cfg(not(test))]
fn trace(_step: impl FnOnce() -> String) {}

/// Like [`write_private`] (a reader sees the old or the new file, never
/// half; 0600) but not flushed: after a power cut the file may be missing or
/// empty. For records whose loss is harmless and detected (a journal outcome
/// whose command is then reported interrupted).
pub fn write_unsynced(dir: &Dir, name: &str, contents: &[u8]) -> std::io::Result<()> {
    let temp = format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mode = crate::store::private_dir::FILE_MODE;
    let result = (|| {
        let mut file = create_temp(dir, &temp, Some(mode), mode)?;
        file.write_all(contents)?;
        drop(file);
        dir.rename(&temp, dir, name)
    })();
    if result.is_err() {
        let _ = dir.remove_file(&temp);
    }
    result
}

/// Creates the temp file of a write *with* its final mode (`None`: a new
/// file, `new_mode` less the umask). A replaced file keeps its mode (a
/// hostapd.conf holding the Wi-Fi passphrase stays 0600); a chmod after the
/// write would leave the secret readable in between.
fn create_temp(
    dir: &Dir,
    temp: &str,
    mode: Option<u32>,
    new_mode: u32,
) -> std::io::Result<cap_std::fs::File> {
    let file = dir.open_with(
        temp,
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode.unwrap_or(new_mode)),
    )?;
    // The umask can only have removed bits: give back the ones the old file
    // had (a group-writable configuration.json stays so).
    if let Some(mode) = mode
        && file.metadata()?.permissions().mode() & 0o7777 != mode
    {
        file.set_permissions(cap_std::fs::Permissions::from_std(
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(mode),
        ))?;
    }
    Ok(file)
}

/// Flushes the whole filesystem holding `dir` (`syncfs`): one flush for
/// many files written unsynced. Through a descriptor opened for reading:
/// cap-std opens folders `O_PATH`, on which `syncfs` fails with EBADF (it
/// silently did, where the error was ignored).
pub fn sync_filesystem(dir: &Dir) -> std::io::Result<()> {
    count_fsync();
    let readable = dir.open(".")?;
    rustix::fs::syncfs(&readable).map_err(std::io::Error::from)
}

/// Opens (creating it if needed) a folder the agent owns, as a capability:
/// created 0700 whatever the umask (see [`crate::store::private_dir`]),
/// reached without following a link someone else could place.
pub fn open_state_dir(path: &Path) -> std::io::Result<Dir> {
    crate::store::private_dir::open_created(path)
        .map(Dir::from)
        .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o7777)
    }

    #[test]
    fn the_temp_file_is_born_with_the_mode_of_the_file_it_replaces()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let conf = tmp.path().join("hostapd.conf");
        std::fs::write(&conf, "wpa_passphrase=old secret\n")?;
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600))?;
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority())?;
        // Before a single byte is written, the temp file is already 0600.
        let file = create_temp(
            &dir,
            ".hostapd.conf.tmp-test",
            Some(0o600),
            SHARED_FILE_MODE,
        )?;
        assert_eq!(mode(&tmp.path().join(".hostapd.conf.tmp-test")), 0o600);
        drop(file);
        dir.remove_file(".hostapd.conf.tmp-test")?;
        write(
            &dir,
            Path::new("hostapd.conf"),
            b"wpa_passphrase=new secret\n",
        )?;
        assert_eq!(mode(&conf), 0o600);
        assert_eq!(
            std::fs::read_dir(tmp.path())?.count(),
            1,
            "no temp file left"
        );
        Ok(())
    }

    #[test]
    fn a_new_temp_file_never_has_more_than_its_final_mode() -> Result<(), Box<dyn std::error::Error>>
    {
        let tmp = tempfile::tempdir()?;
        let dir = Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority())?;
        std::fs::write(tmp.path().join("state.json"), "{}")?;
        std::fs::set_permissions(
            tmp.path().join("state.json"),
            std::fs::Permissions::from_mode(0o664),
        )?;
        write_private(&dir, Path::new("state.json"), b"{\"a\":1}")?;
        assert_eq!(mode(&tmp.path().join("state.json")), 0o600);
        write_private(&dir, Path::new("new.json"), b"{}")?;
        assert_eq!(mode(&tmp.path().join("new.json")), 0o600);
        Ok(())
    }

    /// What [`rename`] did on this thread since the last call.
    fn taken_trace() -> Vec<String> {
        TRACE.with(|t| std::mem::take(&mut *t.borrow_mut()))
    }

    #[test]
    fn a_durable_rename_flushes_the_file_then_renames_then_flushes_the_folders()
    -> Result<(), Box<dyn std::error::Error>> {
        let t = tempfile::tempdir()?;
        std::fs::create_dir_all(t.path().join(".neopro-update/new/webapp"))?;
        std::fs::create_dir(t.path().join("old"))?;
        std::fs::write(t.path().join(".neopro-update/new/webapp/index.html"), "new")?;
        std::fs::write(t.path().join("VERSION.tmp"), "2.0.0")?;
        let dir = Dir::open_ambient_dir(t.path(), cap_std::ambient_authority())?;
        taken_trace();
        // A file within one folder: the file, the rename, that folder.
        rename(&dir, Path::new("VERSION.tmp"), Path::new("VERSION"))?;
        assert_eq!(
            taken_trace(),
            [
                "flush VERSION.tmp",
                "rename VERSION.tmp -> VERSION",
                "flush folder ."
            ]
        );
        assert_eq!(std::fs::read_to_string(t.path().join("VERSION"))?, "2.0.0");
        // A folder swapped in from another folder: both folders flushed.
        rename(
            &dir,
            Path::new(".neopro-update/new/webapp"),
            Path::new("webapp"),
        )?;
        assert_eq!(
            taken_trace(),
            [
                "flush .neopro-update/new/webapp",
                "rename .neopro-update/new/webapp -> webapp",
                "flush folder .",
                "flush folder .neopro-update/new",
            ]
        );
        rename(&dir, Path::new("webapp"), Path::new("old/webapp"))?;
        assert_eq!(
            taken_trace(),
            [
                "flush webapp",
                "rename webapp -> old/webapp",
                "flush folder old",
                "flush folder .",
            ]
        );
        assert_eq!(
            std::fs::read_to_string(t.path().join("old/webapp/index.html"))?,
            "new"
        );
        Ok(())
    }

    #[test]
    fn a_fifo_is_renamed_without_being_opened() -> Result<(), Box<dyn std::error::Error>> {
        let t = tempfile::tempdir()?;
        rustix::fs::mknodat(
            rustix::fs::CWD,
            t.path().join("pipe"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )?;
        let dir = Dir::open_ambient_dir(t.path(), cap_std::ambient_authority())?;
        taken_trace();
        // Opening it for its flush would wait for a writer for ever.
        rename(&dir, Path::new("pipe"), Path::new("pipe2"))?;
        assert_eq!(taken_trace(), ["rename pipe -> pipe2", "flush folder ."]);
        let missing = rename(&dir, Path::new("gone"), Path::new("x"));
        assert_eq!(
            missing.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::NotFound)
        );
        assert!(taken_trace().is_empty(), "nothing renamed, nothing flushed");
        Ok(())
    }

    #[test]
    fn the_filesystem_of_a_cap_std_folder_can_be_flushed() -> Result<(), Box<dyn std::error::Error>>
    {
        let t = tempfile::tempdir()?;
        let dir = Dir::open_ambient_dir(t.path(), cap_std::ambient_authority())?;
        // The O_PATH descriptor itself cannot be flushed: the reason for the helper.
        assert!(rustix::fs::syncfs(&dir).is_err());
        sync_filesystem(&dir)?;
        Ok(())
    }
}
