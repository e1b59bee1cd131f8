//! A log file rotated by size: when the next line would pass the limit,
//! `log` becomes `log.1` (`log.1` → `log.2`, …) and the oldest beyond the
//! kept count is deleted. Each write is one formatted event, so lines are
//! never split across files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// After a failed rotation the next attempt waits this long: a folder that
/// went read-only or full would otherwise cost failed renames on every line.
const ROTATE_RETRY: Duration = Duration::from_secs(60);

pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    /// Total files kept, the live one included.
    files: usize,
    file: File,
    size: u64,
    /// No rotation before this (set by a failed one).
    retry_at: Option<Instant>,
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl RotatingFile {
    /// Opens (creating its folder) `path` for appending.
    pub fn open(path: &Path, max_bytes: u64, files: usize) -> std::io::Result<RotatingFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_owned(),
            max_bytes: max_bytes.max(1),
            files: files.max(1),
            file,
            size,
            retry_at: None,
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.files == 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(numbered(&self.path, self.files - 1));
        for n in (1..self.files - 1).rev() {
            let from = numbered(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, numbered(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(&self.path, 1))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
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
}
