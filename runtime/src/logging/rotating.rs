//! A log file rotated by size: when the next line would pass the limit,
//! `log` becomes `log.1` (`log.1` → `log.2`, …) and the oldest beyond the
//! kept count is deleted. Each write is one formatted event, so lines are
//! never split across files.
//!
//! `LOG_PATH` sits in the web app's `logs/` folder, which its user can
//! write: the file is opened without following a link and without blocking
//! on a FIFO, and used only when it is a regular file of the agent's own.
//! Anything else there is moved aside (`<LOG_PATH>.refused-<time>`) and a new
//! file created with `O_EXCL`, so a planted link cannot make the agent write
//! into its own state nor a FIFO hang it before it is ready. The folder is
//! reached without following a link the web app's user could have placed
//! ([`crate::store::safe_folder`]) and held open: rotation renames inside
//! that folder, so swapping `logs/` for a link later moves nothing outside.

use crate::store::safe_folder::{self, FolderError};
use crate::store::untrusted_file::{self, Owner, UntrustedFileError};
use rustix::fs::{AtFlags, OFlags};
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Why the log file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    #[error("cannot open the log folder: {0}")]
    Folder(FolderError),
    #[error("cannot open the log file: {0}")]
    Open(UntrustedFileError),
    #[error("cannot move {path} aside to {to} ({why}): {source}")]
    SetAside {
        path: PathBuf,
        to: PathBuf,
        why: UntrustedFileError,
        source: std::io::Error,
    },
}

impl From<LogFileError> for std::io::Error {
    fn from(e: LogFileError) -> Self {
        std::io::Error::other(e)
    }
}

/// Something at `LOG_PATH` that was not the agent's log, moved aside.
#[derive(Debug)]
pub struct SetAside {
    /// What it was.
    pub why: UntrustedFileError,
    /// Where it is now.
    pub to: PathBuf,
}

impl std::fmt::Display for SetAside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}; moved aside to {} and a new log file started",
            self.why,
            self.to.display()
        )
    }
}

/// After a failed rotation the next attempt waits this long: a folder that
/// went read-only or full would otherwise cost failed renames on every line.
const ROTATE_RETRY: Duration = Duration::from_secs(60);

pub struct RotatingFile {
    path: PathBuf,
    /// The folder holding it, opened once (see the module).
    dir: OwnedFd,
    /// Its name in `dir`.
    name: PathBuf,
    max_bytes: u64,
    /// Total files kept, the live one included.
    files: usize,
    file: File,
    size: u64,
    /// No rotation before this (set by a failed one).
    retry_at: Option<Instant>,
    /// What was moved aside when the file was opened, for the caller to log.
    set_aside: Option<SetAside>,
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Where something that is not the agent's log is moved.
fn aside_name(path: &Path) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".refused-{secs}-{}", std::process::id()));
    PathBuf::from(name)
}

/// Opens `name` in `dir` (`path` in messages) for appending: a regular
/// file of the agent's own, or a new one after moving aside whatever else
/// is there.
fn open_append(
    dir: &OwnedFd,
    name: &Path,
    path: &Path,
) -> Result<(File, Option<SetAside>), LogFileError> {
    let append = OFlags::WRONLY | OFlags::APPEND;
    // 0666 less the unit's umask: the web app's group reads the log.
    let open = |flags| untrusted_file::open_in(dir, name, path, flags, 0o666, Owner::Agent);
    match open(append | OFlags::CREATE) {
        Ok(file) => Ok((file, None)),
        Err(why) if why.is_foreign() => {
            let aside = aside_name(name);
            let to = path.with_file_name(&aside);
            // rename() moves a link or a FIFO itself, never what it names.
            if let Err(source) = rustix::fs::renameat(dir, name, dir, &aside) {
                return Err(LogFileError::SetAside {
                    path: path.to_owned(),
                    to,
                    why,
                    source: source.into(),
                });
            }
            let file = open(append | OFlags::CREATE | OFlags::EXCL).map_err(LogFileError::Open)?;
            Ok((file, Some(SetAside { why, to })))
        }
        Err(e) => Err(LogFileError::Open(e)),
    }
}

impl RotatingFile {
    /// Opens (creating its folder) `path` for appending; see
    /// [`RotatingFile::take_set_aside`] for what may have been moved aside.
    pub fn open(path: &Path, max_bytes: u64, files: usize) -> Result<RotatingFile, LogFileError> {
        let (folder, name) = untrusted_file::split(path).map_err(LogFileError::Open)?;
        // 0777 less the unit's umask, as a plain mkdir would.
        let dir = safe_folder::create(folder, 0o777).map_err(LogFileError::Folder)?;
        let name = name.to_owned();
        let (file, set_aside) = open_append(&dir, &name, path)?;
        let size = file
            .metadata()
            .map_err(|source| {
                LogFileError::Open(UntrustedFileError::Io {
                    path: path.to_owned(),
                    source,
                })
            })?
            .len();
        Ok(RotatingFile {
            path: path.to_owned(),
            dir,
            name,
            max_bytes: max_bytes.max(1),
            files: files.max(1),
            file,
            size,
            retry_at: None,
            set_aside,
        })
    }

    /// What was found at the path instead of the agent's log and moved
    /// aside when it was opened (once; the caller logs it).
    pub fn take_set_aside(&mut self) -> Option<SetAside> {
        self.set_aside.take()
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.files == 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        // Names inside the open folder: never a path that could now run
        // through a link.
        let dir = &self.dir;
        let _ = rustix::fs::unlinkat(dir, numbered(&self.name, self.files - 1), AtFlags::empty());
        for n in (1..self.files - 1).rev() {
            let from = numbered(&self.name, n);
            if rustix::fs::statat(dir, &from, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
                rustix::fs::renameat(dir, &from, dir, numbered(&self.name, n + 1))?;
            }
        }
        rustix::fs::renameat(dir, &self.name, dir, numbered(&self.name, 1))?;
        let (file, set_aside) = open_append(dir, &self.name, &self.path)?;
        self.file = file;
        self.size = 0;
        if let Some(aside) = set_aside {
            let note = format!("log file {}: {aside}\n", self.path.display());
            self.file.write_all(note.as_bytes())?;
            self.size = note.len() as u64;
        }
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let due = self.retry_at.is_none_or(|at| Instant::now() >= at);
        if due && self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            // A failed rotation (e.g. a read-only folder) keeps appending
            // to the current file rather than losing the line.
            match self.rotate() {
                Ok(()) => self.retry_at = None,
                Err(e) => {
                    self.retry_at = Some(Instant::now() + ROTATE_RETRY);
                    let note = format!(
                        "log rotation of {} failed ({e}); appending, next try in {} s\n",
                        self.path.display(),
                        ROTATE_RETRY.as_secs()
                    );
                    if self.file.write_all(note.as_bytes()).is_ok() {
                        self.size += note.len() as u64;
                    }
                }
            }
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn rotates_at_the_limit_and_keeps_five_files() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("logs/sync-agent.log");
        let mut log = RotatingFile::open(&path, 100, 5)?;
        // 40-byte lines: two fit in 100 bytes, the third rotates.
        for i in 0..20 {
            log.write_all(format!("{i:02} {}\n", "x".repeat(36)).as_bytes())?;
        }
        let mut names: Vec<String> = std::fs::read_dir(path.parent().ok_or("parent")?)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        names.sort();
        assert_eq!(
            names,
            [
                "sync-agent.log",
                "sync-agent.log.1",
                "sync-agent.log.2",
                "sync-agent.log.3",
                "sync-agent.log.4"
            ]
        );
        let first = |p: &Path| -> Result<String, std::io::Error> {
            Ok(std::fs::read_to_string(p)?.chars().take(2).collect())
        };
        // Newest in the live file, oldest kept in .4; lines 00-09 are gone.
        assert_eq!(first(&path)?, "18");
        assert_eq!(first(&numbered(&path, 1))?, "16");
        assert_eq!(first(&numbered(&path, 4))?, "10");
        for n in [0, 1, 2, 3, 4] {
            let p = if n == 0 {
                path.clone()
            } else {
                numbered(&path, n)
            };
            assert_eq!(std::fs::metadata(&p)?.len(), 80, "{}", p.display());
        }
        Ok(())
    }

    #[test]
    fn reopening_continues_the_current_size() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.log");
        std::fs::write(&path, "x".repeat(90))?;
        let mut log = RotatingFile::open(&path, 100, 5)?;
        log.write_all(b"0123456789abcdef\n")?;
        assert_eq!(std::fs::read_to_string(&path)?, "0123456789abcdef\n");
        assert_eq!(std::fs::metadata(numbered(&path, 1))?.len(), 90);
        Ok(())
    }

    #[test]
    fn a_failing_rotation_is_retried_after_a_pause_not_on_every_line() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.log");
        // A folder where log.1 should go: the rename fails, even for root.
        let blocker = numbered(&path, 1);
        std::fs::create_dir_all(blocker.join("x"))?;
        let mut log = RotatingFile::open(&path, 10, 2)?;
        log.write_all(&[b'y'; 50])?;
        log.write_all(b"a\n")?;
        let live = std::fs::read_to_string(&path)?;
        assert!(live.contains("log rotation of "), "{live}");
        assert!(live.ends_with("next try in 60 s\na\n"), "{live}");
        // Fixed, but within the pause: no new attempt, lines still appended.
        std::fs::remove_dir_all(&blocker)?;
        log.write_all(b"b\n")?;
        assert!(!blocker.exists());
        assert!(std::fs::read_to_string(&path)?.ends_with("a\nb\n"));
        // The pause is over: rotated.
        log.retry_at = Some(Instant::now());
        log.write_all(b"c\n")?;
        assert_eq!(std::fs::read_to_string(&path)?, "c\n");
        assert!(std::fs::read_to_string(&blocker)?.ends_with("a\nb\n"));
        Ok(())
    }

    #[test]
    fn an_oversized_line_still_gets_written() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.log");
        let mut log = RotatingFile::open(&path, 10, 2)?;
        log.write_all(&[b'y'; 50])?;
        log.write_all(b"z\n")?;
        assert_eq!(std::fs::read_to_string(&path)?, "z\n");
        assert_eq!(std::fs::metadata(numbered(&path, 1))?.len(), 50);
        Ok(())
    }

    /// The entries of `dir` whose name starts with `prefix.refused-`.
    fn set_aside_in(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, std::io::Error> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{prefix}.refused-"))
            {
                found.push(entry.path());
            }
        }
        Ok(found)
    }

    #[test]
    fn a_link_to_a_secret_is_moved_aside_never_written_through() -> TestResult {
        let dir = tempfile::tempdir()?;
        let secret = dir.path().join("site.conf");
        std::fs::write(&secret, "SITE_API_KEY=secret-key\n")?;
        let path = dir.path().join("logs/sync-agent.log");
        std::fs::create_dir_all(dir.path().join("logs"))?;
        std::os::unix::fs::symlink(&secret, &path)?;
        let mut log = RotatingFile::open(&path, 1000, 5)?;
        log.write_all(b"agent line\n")?;
        assert_eq!(
            std::fs::read_to_string(&secret)?,
            "SITE_API_KEY=secret-key\n"
        );
        assert!(std::fs::symlink_metadata(&path)?.file_type().is_file());
        assert_eq!(std::fs::read_to_string(&path)?, "agent line\n");
        let aside = set_aside_in(&dir.path().join("logs"), "sync-agent.log")?;
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read_link(&aside[0])?, secret);
        let note = log.take_set_aside().ok_or("nothing set aside")?.to_string();
        assert!(note.contains("is a symbolic link"), "{note}");
        assert!(note.contains("moved aside to"), "{note}");
        Ok(())
    }

    #[test]
    fn a_log_folder_swapped_for_a_link_is_refused_and_nothing_written_behind_it() -> TestResult {
        let neopro = safe_folder::shared_test_folder()?;
        let state = tempfile::tempdir()?;
        std::fs::write(state.path().join("state.json"), "{}")?;
        let logs = neopro.path().join("logs");
        std::os::unix::fs::symlink(state.path(), &logs)?;
        let path = logs.join("state.json");
        let err = RotatingFile::open(&path, 1000, 5)
            .err()
            .ok_or("opened through the linked folder")?;
        assert_eq!(
            err.to_string(),
            format!(
                "cannot open the log folder: {} is a symbolic link in {}, a folder that other users than the agent can change (owner uid {}, mode 0775); links are not followed there",
                logs.display(),
                neopro.path().display(),
                untrusted_file::agent_uid()
            )
        );
        assert_eq!(
            std::fs::read_to_string(state.path().join("state.json"))?,
            "{}"
        );
        assert_eq!(std::fs::read_dir(state.path())?.count(), 1);
        assert!(std::fs::symlink_metadata(&logs)?.file_type().is_symlink());
        Ok(())
    }

    #[test]
    fn rotation_stays_in_the_folder_opened_when_it_is_swapped_later() -> TestResult {
        let neopro = safe_folder::shared_test_folder()?;
        let elsewhere = tempfile::tempdir()?;
        let path = neopro.path().join("logs/sync-agent.log");
        let mut log = RotatingFile::open(&path, 10, 3)?;
        log.write_all(b"first line\n")?;
        // The web app's user swaps logs/ for a link once the agent runs.
        let old = neopro.path().join("logs.old");
        std::fs::rename(neopro.path().join("logs"), &old)?;
        std::os::unix::fs::symlink(elsewhere.path(), neopro.path().join("logs"))?;
        log.write_all(b"second line\n")?;
        assert_eq!(std::fs::read_dir(elsewhere.path())?.count(), 0);
        assert_eq!(
            std::fs::read_to_string(old.join("sync-agent.log.1"))?,
            "first line\n"
        );
        assert_eq!(
            std::fs::read_to_string(old.join("sync-agent.log"))?,
            "second line\n"
        );
        Ok(())
    }

    #[test]
    fn a_fifo_is_moved_aside_without_hanging() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.log");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o666),
            0,
        )?;
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        // Without O_NONBLOCK the open blocks until a reader shows up.
        std::thread::spawn(move || {
            let _ = tx.send(RotatingFile::open(&p, 1000, 5).map(|mut f| f.take_set_aside()));
        });
        let aside = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "opening the log hung on the FIFO")??
            .ok_or("nothing set aside")?;
        assert!(aside.to_string().contains("FIFO"), "{aside}");
        assert!(std::fs::symlink_metadata(&path)?.file_type().is_file());
        let fifo = std::fs::symlink_metadata(&aside.to)?;
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
        Ok(())
    }

    #[test]
    fn a_hard_link_or_a_file_of_another_user_is_moved_aside() -> TestResult {
        let dir = tempfile::tempdir()?;
        let state = dir.path().join("state.json");
        std::fs::write(&state, "{\"committed\":\"1.2.0\"}")?;
        let path = dir.path().join("a.log");
        std::fs::hard_link(&state, &path)?;
        let mut log = RotatingFile::open(&path, 1000, 5)?;
        log.write_all(b"line\n")?;
        assert_eq!(
            std::fs::read_to_string(&state)?,
            "{\"committed\":\"1.2.0\"}"
        );
        assert_eq!(std::fs::read_to_string(&path)?, "line\n");
        let note = log.take_set_aside().ok_or("nothing set aside")?.to_string();
        assert!(note.contains("has 2 hard links"), "{note}");
        if untrusted_file::agent_uid() == 0 {
            // Root can give the file to someone else (nobody).
            let other = dir.path().join("b.log");
            std::fs::write(&other, "planted\n")?;
            std::os::unix::fs::chown(&other, Some(65534), None)?;
            let mut log = RotatingFile::open(&other, 1000, 5)?;
            let note = log.take_set_aside().ok_or("nothing set aside")?.to_string();
            assert!(note.contains("belongs to uid 65534"), "{note}");
            assert_eq!(std::fs::read_to_string(&other)?, "");
        }
        Ok(())
    }
}
