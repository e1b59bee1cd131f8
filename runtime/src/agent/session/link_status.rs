//! `RUNTIME_PATH/link-status.json`: the running agent's view of its
//! session, kept up to date so that `neopro-runtime diagnose` can report it
//! without opening a second session as the site (which makes the real server
//! forget the agent's own: issue 18.1).
//!
//! Written atomically (not fsynced) on every change of state (connect,
//! disconnect, authentication, `ping_check`, results sent or delivered); a
//! few hundred bytes, a write per `ping_check` (30 s) when idle. Hence the
//! runtime folder (the unit's tmpfs `/run/neopro-runtime`), not the state
//! folder: on the SD card those rewrites were 2,880 renames a day, each an
//! ext4 journal commit, and the bulk of what an idle agent wrote (issue 29).
//! Nothing in it has to outlive the process.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

/// File name under RUNTIME_PATH.
pub const FILE: &str = "link-status.json";

/// A short, one-way fingerprint of an API key (the first 16 hex digits of
/// its SHA-256): enough to tell two keys apart, useless to recover one.
pub fn key_fingerprint(api_key: &str) -> String {
    let mut hex = crate::store::hash::sha256_hex(api_key.trim().as_bytes());
    hex.truncate(16);
    hex
}

/// Why the status file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a status the agent wrote: {reason}")]
    Parse { path: PathBuf, reason: String },
}

/// What the agent knows about its link. Times are ISO 8601 (UTC).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkStatus {
    /// The agent process writing this file.
    pub pid: u32,
    /// connecting, connected, authenticated, disconnected, stopped.
    pub state: String,
    /// Why the link is down, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_authenticated: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ping_check: Option<String>,
    /// Results in the outbox not yet proven received by the server.
    pub results_waiting: usize,
    /// [`key_fingerprint`] of the API key the agent last authenticated
    /// with: `diagnose` compares it with the key of the file it is given
    /// (the running agent may use another, e.g. after a key was changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    pub updated_at: String,
}

/// Keeps the file in step with the session; write failures are logged once.
///
/// The session only hands the latest status over: a thread of its own does
/// the atomic write, so a slow SD card never holds up the async
/// worker that answers the server's pings. Statuses handed over while one is
/// being written replace each other: only the newest is written.
#[derive(Debug)]
pub struct StatusWriter {
    status: LinkStatus,
    sink: Option<Arc<Handoff>>,
}

/// The status waiting to be written, shared with the writer thread.
#[derive(Debug, Default)]
struct Handoff {
    pending: Mutex<Pending>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Pending {
    text: Option<Vec<u8>>,
    writing: bool,
    closed: bool,
}

impl Handoff {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The writer thread: writes each handed-over text until closed.
    fn write_loop(&self, dir: &cap_std::fs::Dir) {
        let mut warned = false;
        loop {
            let text = {
                let mut pending = self.pending();
                loop {
                    if let Some(text) = pending.text.take() {
                        pending.writing = true;
                        break text;
                    }
                    if pending.closed {
                        return;
                    }
                    pending = self
                        .changed
                        .wait(pending)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            // Not fsynced: it is rewritten at every change of state (a
            // `ping_check` every 30 s), and after a power cut the agent
            // writes it again as soon as it starts; an fsync each time
            // would cost SD card wear for nothing.
            if let Err(e) = crate::store::atomic::write_unsynced(dir, FILE, &text)
                && !warned
            {
                warned = true;
                tracing::warn!("cannot write {FILE} (diagnose will not see the link state): {e}");
            }
            self.pending().writing = false;
            self.changed.notify_all();
        }
    }
}

fn now() -> String {
    crate::platform::clock::iso8601(SystemTime::now())
}

impl StatusWriter {
    /// Keeps the file under `runtime_path` (`SiteConfig::runtime_path`).
    pub fn new(runtime_path: &Path) -> Self {
        let sink = match crate::store::atomic::open_state_dir(runtime_path) {
            Ok(dir) => {
                let handoff = Arc::new(Handoff::default());
                let writer = handoff.clone();
                match std::thread::Builder::new()
                    .name("link-status".to_owned())
                    .spawn(move || writer.write_loop(&dir))
                {
                    Ok(_) => Some(handoff),
                    Err(e) => {
                        tracing::warn!(
                            "cannot start the thread that keeps {}/{FILE} (diagnose will not see the link state): {e}",
                            runtime_path.display()
                        );
                        None
                    }
                }
            }
            Err(e) => {
                tracing::warn!(
                    "cannot keep {}/{FILE} (diagnose will not see the link state): {e}",
                    runtime_path.display()
                );
                None
            }
        };
        StatusWriter {
            sink,
            status: LinkStatus {
                pid: std::process::id(),
                state: "connecting".to_owned(),
                ..LinkStatus::default()
            },
        }
    }

    /// Applies `change` and hands the status to the writer thread.
    pub fn update(&mut self, change: impl FnOnce(&mut LinkStatus)) {
        change(&mut self.status);
        self.status.updated_at = now();
        let Some(sink) = &self.sink else { return };
        let Ok(text) = serde_json::to_vec_pretty(&self.status) else {
            return;
        };
        sink.pending().text = Some(text);
        sink.changed.notify_all();
    }

    /// Waits until everything handed over is on disk (blocking: at
    /// shutdown and in tests).
    pub fn flush(&self) {
        let Some(sink) = &self.sink else { return };
        let mut pending = sink.pending();
        while pending.text.is_some() || pending.writing {
            pending = sink
                .changed
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    pub fn connected(&mut self) {
        self.update(|s| {
            s.state = "connected".to_owned();
            s.reason = None;
            s.connected_since = Some(now());
            // A ping_check of an earlier connection says nothing of this one.
            s.last_ping_check = None;
        });
    }

    /// The key this connection authenticates with (its fingerprint).
    pub fn authenticating_with(&mut self, api_key: &str) {
        let fingerprint = key_fingerprint(api_key);
        self.update(|s| s.key_fingerprint = Some(fingerprint));
    }

    pub fn disconnected(&mut self, reason: &str) {
        self.update(|s| {
            s.state = "disconnected".to_owned();
            s.reason = Some(reason.to_owned());
            s.connected_since = None;
        });
    }

    pub fn authenticated(&mut self) {
        self.update(|s| {
            s.state = "authenticated".to_owned();
            s.last_authenticated = Some(now());
        });
    }

    pub fn ping_check(&mut self) {
        self.update(|s| s.last_ping_check = Some(now()));
    }

    /// Written only when the count changed.
    pub fn results_waiting(&mut self, waiting: usize) {
        if self.status.results_waiting != waiting {
            self.update(|s| s.results_waiting = waiting);
        }
    }

    /// The last status: written before this returns.
    pub fn stopped(&mut self) {
        self.update(|s| {
            s.state = "stopped".to_owned();
            s.connected_since = None;
        });
        self.flush();
    }
}

impl Drop for StatusWriter {
    fn drop(&mut self) {
        if let Some(sink) = &self.sink {
            sink.pending().closed = true;
            sink.changed.notify_all();
        }
    }
}

/// Agents before issue 29 kept the file under STATE_PATH: left there it
/// would describe a link long gone to an older `diagnose`, so it goes
/// (once; nothing is written there again).
pub fn forget_old_file(state_path: &Path, runtime_path: &Path) {
    if state_path != runtime_path {
        let _ = std::fs::remove_file(state_path.join(FILE));
    }
}

/// Reads the status the agent keeps under `runtime_path`; `None` when there
/// is none.
pub fn read(runtime_path: &Path) -> Result<Option<LinkStatus>, StatusError> {
    let path = runtime_path.join(FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StatusError::Read { path, source }),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| StatusError::Parse {
            path,
            reason: e.to_string(),
        })
}

/// Whether the process that wrote `status` is still a running agent: its
/// pid exists and is not a zombie, and names this program.
pub fn writer_alive(status: &LinkStatus) -> bool {
    if status.state == "stopped" || status.pid == 0 {
        return false;
    }
    let proc = PathBuf::from(format!("/proc/{}", status.pid));
    let Ok(stat) = std::fs::read_to_string(proc.join("stat")) else {
        return false;
    };
    // `pid (comm) S ...`: the state letter follows the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, Some('Z' | 'X')) {
        return false;
    }
    // The same program as ours (a recycled pid is something else).
    match (
        std::fs::read_link(proc.join("exe")),
        std::env::current_exe(),
    ) {
        (Ok(theirs), Ok(ours)) => {
            theirs == ours
                || theirs.file_name() == ours.file_name()
                || status.pid == std::process::id()
        }
        // Another user's process: /proc/<pid>/exe is not readable; trust
        // the pid.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_follows_the_session_and_reads_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(read(dir.path()).expect("read"), None);
        // An older agent's file in the state folder goes.
        let state = tempfile::tempdir().expect("temp dir");
        std::fs::write(state.path().join(FILE), b"{}").expect("old file");
        forget_old_file(state.path(), dir.path());
        assert!(!state.path().join(FILE).exists());
        let mut writer = StatusWriter::new(dir.path());
        writer.connected();
        writer.authenticated();
        writer.ping_check();
        writer.results_waiting(2);
        writer.flush();
        let status = read(dir.path()).expect("read").expect("written");
        assert_eq!(status.state, "authenticated");
        assert_eq!(status.results_waiting, 2);
        assert!(status.connected_since.is_some() && status.last_ping_check.is_some());
        assert!(writer_alive(&status), "this test process wrote it");
        writer.stopped();
        let status = read(dir.path()).expect("read").expect("written");
        assert!(!writer_alive(&status));
    }

    #[test]
    fn a_dead_writer_is_not_reported_as_running() {
        let status = LinkStatus {
            pid: u32::MAX - 1,
            state: "authenticated".to_owned(),
            ..LinkStatus::default()
        };
        assert!(!writer_alive(&status));
    }
}
