//! `logs`: journal tails through `journalctl` run with an argument vector
//! (never a shell), and tails of log files.

use super::bindings::neopro::agent::logs::Host;
use super::roots::{io_error, open_regular};
use super::{HostState, WitError, WitRoot};
use crate::host::grants::Grant;
use crate::manifest::{Access, RootName};
use crate::platform::systemctl::is_valid_unit_name;
use crate::store::untrusted_file::{self, Owner, UntrustedFileError};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `logs` capability's state.
#[derive(Debug)]
pub struct LogsHost {
    /// The journalctl program; a test double in tests.
    pub journalctl: std::path::PathBuf,
    /// The agent's own log file (LOG_PATH), for `agent-log-tail`.
    pub agent_log: std::path::PathBuf,
}

impl LogsHost {
    pub fn from_config(config: &crate::config::SiteConfig) -> Self {
        LogsHost {
            journalctl: config.journalctl.clone(),
            agent_log: config.log_path.clone(),
        }
    }
}

/// Most lines one call may ask for.
pub const MAX_LINES: u32 = 10_000;
/// Most bytes read from the end of a file or from journalctl's output.
const MAX_TAIL_BYTES: u64 = 4 << 20;
/// A journalctl that takes longer than this is killed.
const JOURNAL_TIMEOUT: Duration = Duration::from_secs(15);

fn check_lines(lines: u32) -> Result<(), WitError> {
    if (1..=MAX_LINES).contains(&lines) {
        Ok(())
    } else {
        Err(WitError::InvalidInput(format!(
            "lines must be between 1 and {MAX_LINES}, got {lines}"
        )))
    }
}

/// The last `lines` lines of `text`, keeping a final newline if it had one.
pub fn last_lines(text: &str, lines: u32) -> String {
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    if trimmed.is_empty() {
        return String::new();
    }
    let all: Vec<&str> = trimmed.split('\n').collect();
    let start = all.len().saturating_sub(lines as usize);
    let mut out = all[start..].join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Tail of a file opened by the caller, reading at most its last 4 MiB
/// (less when the guest has less memory left to take the reply).
fn tail_reader(mut file: impl Read + Seek, lines: u32, budget: u64) -> std::io::Result<String> {
    let max = MAX_TAIL_BYTES.min(budget);
    let len = file.seek(SeekFrom::End(0))?;
    let start = len.saturating_sub(max);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    // A cut at `start` may split the first line: drop that partial line.
    let text = if start > 0 {
        text.split_once('\n').map(|(_, rest)| rest).unwrap_or("")
    } else {
        &text
    };
    Ok(last_lines(text, lines))
}

/// The last `lines` lines of the agent's own log (LOG_PATH). It lies in a
/// folder the web app's user can write, so only a regular file of the
/// agent's own is read: a link (say to site.conf) or a FIFO planted there is
/// refused, never followed nor waited on.
pub fn agent_log_tail(path: &Path, lines: u32, budget: u64) -> Result<String, WitError> {
    check_lines(lines)?;
    let file = untrusted_file::open_read(path, Owner::Agent).map_err(|e| match e {
        UntrustedFileError::NotFound(_) => WitError::NotFound(format!(
            "the agent log {} does not exist yet",
            path.display()
        )),
        e if e.is_foreign() => WitError::NotPermitted(format!(
            "{e}; the agent log is read only when it is the agent's own regular file"
        )),
        e @ UntrustedFileError::Folder(_) => WitError::NotPermitted(e.to_string()),
        e => WitError::Io(e.to_string()),
    })?;
    tail_reader(file, lines, budget).map_err(|e| WitError::Io(format!("{}: {e}", path.display())))
}

/// Runs `journalctl -u <unit> -n <lines> --no-pager` and returns its output,
/// at most `budget` bytes of it (and never more than 4 MiB).
pub fn journal_tail(
    journalctl: &Path,
    unit: &str,
    lines: u32,
    budget: u64,
) -> Result<String, WitError> {
    if !is_valid_unit_name(unit) {
        return Err(WitError::InvalidInput(format!(
            "'{unit}' is not a valid service name (letters, digits and :-_.@ only)"
        )));
    }
    check_lines(lines)?;
    let mut child = Command::new(journalctl)
        .args(["-u", unit, "-n", &lines.to_string(), "--no-pager"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            WitError::Failed(format!(
                "cannot run {}: {e} (is systemd's journalctl installed?)",
                journalctl.display()
            ))
        })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        return Err(WitError::Failed("journalctl output unavailable".to_owned()));
    };
    // Both pipes are read to their end, concurrently: a reader that stopped
    // at 4 MiB would leave journalctl blocked on a full pipe until the
    // timeout. Only the last 4 MiB of stdout are kept (bounded memory).
    let (tx, rx) = mpsc::channel();
    let max = MAX_TAIL_BYTES.min(budget);
    let err_reader = std::thread::spawn(move || {
        let mut err = Vec::new();
        let mut stderr = stderr;
        let _ = (&mut stderr).take(64 << 10).read_to_end(&mut err);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        err
    });
    std::thread::spawn(move || {
        let out = read_tail(stdout, usize::try_from(max).unwrap_or(usize::MAX));
        let err = err_reader.join().unwrap_or_default();
        let _ = tx.send((out, err));
    });
    let received = rx.recv_timeout(JOURNAL_TIMEOUT);
    let Ok((out, err)) = received else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(WitError::Timeout(format!(
            "journalctl did not answer within {} s",
            JOURNAL_TIMEOUT.as_secs()
        )));
    };
    let status = child
        .wait()
        .map_err(|e| WitError::Failed(format!("journalctl: {e}")))?;
    let out = out.map_err(|e| WitError::Io(format!("reading journalctl output: {e}")))?;
    if !status.success() {
        return Err(WitError::Failed(format!(
            "journalctl failed ({status}): {}",
            String::from_utf8_lossy(&err).trim()
        )));
    }
    let (bytes, cut) = out;
    let text = String::from_utf8_lossy(&bytes);
    // A cut may split the first kept line: drop that partial line.
    let text = if cut {
        text.split_once('\n').map(|(_, rest)| rest).unwrap_or("")
    } else {
        &text
    };
    Ok(last_lines(text, lines))
}

/// Reads `input` to its end, keeping only its last `keep` bytes; tells
/// whether anything was dropped from the front.
fn read_tail(mut input: impl Read, keep: usize) -> std::io::Result<(Vec<u8>, bool)> {
    let mut tail = std::collections::VecDeque::with_capacity(keep.min(1 << 20));
    let mut cut = false;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        tail.extend(&buf[..n]);
        if tail.len() > keep {
            let excess = tail.len() - keep;
            tail.drain(..excess);
            cut = true;
        }
    }
    Ok((tail.into_iter().collect(), cut))
}

impl Host for HostState {
    fn journal_tail(&mut self, unit: String, lines: u32) -> Result<String, WitError> {
        if !is_valid_unit_name(&unit) {
            return Err(WitError::InvalidInput(format!(
                "'{unit}' is not a valid service name (letters, digits and :-_.@ only)"
            )));
        }
        self.call.check(Grant::JournalUnit(&unit))?;
        // The server's UI asks for the upstream agent's name: the agent's
        // own unit here (restart_service maps it the same way).
        let agent_unit = &self.call.services.services.agent_unit;
        let unit = if super::services::is_agent_name(&unit, agent_unit) {
            agent_unit.clone()
        } else {
            unit
        };
        journal_tail(
            &self.call.services.logs.journalctl,
            &unit,
            lines,
            self.memory.remaining(),
        )
    }

    fn agent_log_tail(&mut self, lines: u32) -> Result<String, WitError> {
        self.call.check(Grant::AgentLog)?;
        agent_log_tail(
            &self.call.services.logs.agent_log,
            lines,
            self.memory.remaining(),
        )
    }

    fn file_tail(&mut self, root: WitRoot, path: String, lines: u32) -> Result<String, WitError> {
        let root = RootName::from(root);
        self.call.check(Grant::Root(root, Access::ReadOnly))?;
        check_lines(lines)?;
        let dir = self.call.services.roots.open(root, false)?;
        let file = open_regular(&dir, root, &path)?;
        tail_reader(file.into_std(), lines, self.memory.remaining())
            .map_err(|e| io_error(root, &path, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_keeps_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 5), "a\nb\nc");
        assert_eq!(last_lines("", 5), "");
    }

    #[test]
    fn tail_of_a_big_file_reads_only_its_end() -> std::io::Result<()> {
        let mut text = String::new();
        for i in 0..400_000 {
            text.push_str(&format!("line {i}\n"));
        }
        let out = tail_reader(std::io::Cursor::new(text.into_bytes()), 3, u64::MAX)?;
        assert_eq!(out, "line 399997\nline 399998\nline 399999\n");
        Ok(())
    }

    #[test]
    fn a_journal_output_beyond_4_mib_returns_its_last_lines()
    -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        // ~10.9 MB of output, like a chatty unit's journal.
        let fake = dir.path().join("journalctl");
        std::fs::write(&fake, "#!/bin/sh\nseq 1 1500000\n")?;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755))?;
        let out = journal_tail(&fake, "neopro-app", 3, u64::MAX)?;
        assert_eq!(out, "1499998\n1499999\n1500000\n");
        Ok(())
    }

    #[test]
    fn the_kept_tail_is_bounded_and_marked_cut() -> std::io::Result<()> {
        let input: Vec<u8> = (0..100_000u32).map(|i| (i % 256) as u8).collect();
        let (tail, cut) = read_tail(std::io::Cursor::new(&input), 1000)?;
        assert!(cut);
        assert_eq!(tail, input[input.len() - 1000..]);
        let (all, cut) = read_tail(std::io::Cursor::new(&input[..10]), 1000)?;
        assert_eq!((all.as_slice(), cut), (&input[..10], false));
        Ok(())
    }

    #[test]
    fn bad_unit_names_never_reach_the_program() {
        let marker = std::env::temp_dir().join("neopro-never-created");
        let err = journal_tail(Path::new("/bin/sh"), "neopro-app; touch x", 10, u64::MAX);
        assert!(matches!(err, Err(WitError::InvalidInput(_))));
        assert!(!marker.exists());
    }

    #[test]
    fn the_agent_log_tail_refuses_a_link_to_a_secret() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let secret = dir.path().join("site.conf");
        std::fs::write(&secret, "SITE_API_KEY=secret-key\n")?;
        let log = dir.path().join("sync-agent.log");
        std::os::unix::fs::symlink(&secret, &log)?;
        let err = agent_log_tail(&log, 10, u64::MAX)
            .err()
            .ok_or("read through the link")?;
        assert!(matches!(err, WitError::NotPermitted(_)), "{err:?}");
        assert!(!format!("{err:?}").contains("secret-key"));
        // The agent's own log is read.
        std::fs::remove_file(&log)?;
        std::fs::write(&log, "a\nb\n")?;
        assert_eq!(agent_log_tail(&log, 1, u64::MAX)?, "b\n");
        Ok(())
    }

    #[test]
    fn the_agent_log_tail_refuses_a_logs_folder_swapped_for_a_link()
    -> Result<(), Box<dyn std::error::Error>> {
        let neopro = crate::store::safe_folder::shared_test_folder()?;
        // The agent's own file elsewhere, named as LOG_PATH's file is.
        let etc = tempfile::tempdir()?;
        std::fs::write(
            etc.path().join("sync-agent.log"),
            "SITE_API_KEY=secret-key\n",
        )?;
        let logs = neopro.path().join("logs");
        std::os::unix::fs::symlink(etc.path(), &logs)?;
        let err = agent_log_tail(&logs.join("sync-agent.log"), 10, u64::MAX)
            .err()
            .ok_or("read through the linked folder")?;
        let WitError::NotPermitted(message) = &err else {
            return Err(format!("unexpected {err:?}").into());
        };
        assert!(
            message.starts_with(&format!("{} is a symbolic link in ", logs.display())),
            "{message}"
        );
        assert!(!message.contains("secret-key"));
        Ok(())
    }

    #[test]
    fn the_agent_log_tail_refuses_a_fifo_without_waiting() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("sync-agent.log");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &log,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o666),
            0,
        )?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(agent_log_tail(&log, 10, u64::MAX));
        });
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the tail blocked on the FIFO")?;
        match got {
            Err(WitError::NotPermitted(m)) => assert!(m.contains("is a FIFO"), "{m}"),
            other => return Err(format!("unexpected {other:?}").into()),
        }
        Ok(())
    }
}
