//! Actions that must wait until a command's result has reached the central
//! server: a reboot, or a restart of the agent's own unit. Done earlier, the
//! result would die with the agent and the server would time the command out
//! (upstream rebooted 2 s after answering, delivered or not).
//!
//! A host call registers the action under its command id. Nothing runs
//! before the command's outcome is known: a command that fails (error, trap,
//! timeout) after asking has its follow-up dropped. After a success the
//! session runs it once the result is known delivered, or after the deadline
//! if the link is down (the result then waits in the journal's outbox and
//! goes out after the restart). A pending reboot is also written to `STATE_PATH` so the next
//! start can log whether it happened.

use crate::platform::systemctl::{ServiceError, ServiceManager};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// File under `STATE_PATH` naming the reboot in progress.
pub const REBOOT_FILE: &str = "reboot-pending.json";
/// A reboot or self-restart that failed after its result was sent: the
/// server heard "success", so the next heartbeats tell it otherwise
/// (`versionInfo.followUpFailure`) for a day (issue 18.8).
pub const FAILURE_FILE: &str = "follow-up-failure.json";
/// How long a failure is reported.
const FAILURE_REPORTED_FOR_MS: u64 = 24 * 3600 * 1000;

/// What the heartbeat reports about a failed follow-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowUpFailure {
    pub command_id: String,
    /// `reboot` or `restart <unit>`.
    pub action: String,
    pub error: String,
    pub at_ms: u64,
}

/// Records a failed follow-up for the next heartbeats.
pub fn record_failure(state_path: &Path, command_id: &str, action: &str, error: &str) {
    let failure = FollowUpFailure {
        command_id: command_id.to_owned(),
        action: action.to_owned(),
        error: error.to_owned(),
        at_ms: crate::platform::clock::unix_millis(SystemTime::now()),
    };
    let written = crate::store::atomic::open_state_dir(state_path).and_then(|dir| {
        let bytes = serde_json::to_vec(&failure).map_err(std::io::Error::other)?;
        crate::store::atomic::write(&dir, Path::new(FAILURE_FILE), &bytes)
    });
    if let Err(e) = written {
        tracing::warn!("cannot record the failed {action} for the server: {e}");
    }
}

/// The failure to report, if one is recent; an old one is forgotten.
pub fn recent_failure(state_path: &Path) -> Option<FollowUpFailure> {
    let path = state_path.join(FAILURE_FILE);
    let bytes = std::fs::read(&path).ok()?;
    let failure = serde_json::from_slice::<FollowUpFailure>(&bytes).ok();
    let now = crate::platform::clock::unix_millis(SystemTime::now());
    match failure {
        Some(f) if now.saturating_sub(f.at_ms) < FAILURE_REPORTED_FOR_MS => Some(f),
        _ => {
            let _ = std::fs::remove_file(&path);
            None
        }
    }
}

/// Why a follow-up could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum FollowUpError {
    #[error("cannot record the pending reboot in {path}: {source}")]
    Persist {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to do after delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Reboot,
    Restart(String),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Reboot => write!(f, "the reboot"),
            Action::Restart(unit) => write!(f, "the restart of {unit}"),
        }
    }
}

/// One follow-up and how long it may wait for delivery.
#[derive(Debug)]
struct Pending {
    action: Action,
    wait: Duration,
    /// Set once the command succeeded; until then it never runs.
    deadline: Option<Instant>,
}

/// The journaled pending reboot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingReboot {
    pub command_id: String,
    pub requested_at_ms: u64,
}

/// Follow-ups waiting for their command's result to be delivered.
#[derive(Debug)]
pub struct FollowUps {
    state_path: PathBuf,
    pending: Mutex<BTreeMap<String, Pending>>,
    delivery_wait: Mutex<Duration>,
}

impl FollowUps {
    pub fn new(state_path: PathBuf) -> Self {
        FollowUps {
            state_path,
            pending: Mutex::new(BTreeMap::new()),
            delivery_wait: Mutex::new(Duration::ZERO),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Pending>> {
        match self.pending.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// At least this long is waited for delivery: two server pings prove
    /// it, so the session sets it from the handshake's `pingInterval`
    /// (25 s on the real server: up to 50 s, more than a fixed 30 s).
    pub fn set_delivery_wait(&self, wait: Duration) {
        match self.delivery_wait.lock() {
            Ok(mut w) => *w = wait,
            Err(poisoned) => *poisoned.into_inner() = wait,
        }
    }

    fn delivery_wait(&self) -> Duration {
        match self.delivery_wait.lock() {
            Ok(w) => *w,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Registers `action` for `command_id`, to run once the command has
    /// succeeded and its result is delivered, or `wait` after the success.
    pub fn add(
        &self,
        command_id: &str,
        action: Action,
        wait: Duration,
    ) -> Result<(), FollowUpError> {
        if action == Action::Reboot {
            let record = PendingReboot {
                command_id: command_id.to_owned(),
                requested_at_ms: crate::platform::clock::unix_millis(SystemTime::now()),
            };
            let dir = crate::store::atomic::open_state_dir(&self.state_path);
            let written = dir.and_then(|dir| {
                let bytes = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
                crate::store::atomic::write_private(&dir, Path::new(REBOOT_FILE), &bytes)
            });
            written.map_err(|source| FollowUpError::Persist {
                path: self.state_path.join(REBOOT_FILE),
                source,
            })?;
        }
        self.lock().insert(
            command_id.to_owned(),
            Pending {
                action,
                wait,
                deadline: None,
            },
        );
        Ok(())
    }

    /// `command_id`'s outcome is known. After a failure its follow-up is
    /// dropped and returned (a component that asked for a reboot and then
    /// failed must not reboot the box); after a success it starts waiting
    /// for delivery.
    pub fn settle(&self, command_id: &str, succeeded: bool) -> Option<Action> {
        let floor = self.delivery_wait();
        let mut pending = self.lock();
        if succeeded {
            if let Some(p) = pending.get_mut(command_id) {
                p.deadline = Some(Instant::now() + p.wait.max(floor));
            }
            return None;
        }
        let dropped = pending.remove(command_id).map(|p| p.action);
        drop(pending);
        if dropped == Some(Action::Reboot) {
            self.forget_reboot(command_id);
        }
        dropped
    }

    /// Removes the journaled reboot if `command_id` asked for it.
    fn forget_reboot(&self, command_id: &str) {
        let path = self.state_path.join(REBOOT_FILE);
        let ours = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<PendingReboot>(&b).ok())
            .is_some_and(|r| r.command_id == command_id);
        if ours && let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }

    /// The action waiting for `command_id`'s delivery, removed.
    pub fn take(&self, command_id: &str) -> Option<Action> {
        self.lock().remove(command_id).map(|p| p.action)
    }

    /// Actions whose deadline passed, removed.
    pub fn take_overdue(&self) -> Vec<(String, Action)> {
        let now = Instant::now();
        let mut pending = self.lock();
        let overdue: Vec<String> = pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        overdue
            .into_iter()
            .filter_map(|id| pending.remove(&id).map(|p| (id, p.action)))
            .collect()
    }

    /// Whether anything waits.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// Runs one follow-up. Blocking.
pub fn run(
    manager: &ServiceManager,
    command_id: &str,
    action: &Action,
) -> Result<(), ServiceError> {
    match action {
        Action::Reboot => {
            tracing::warn!("rebooting the box as asked by command {command_id}");
            manager.reboot()
        }
        Action::Restart(unit) => {
            tracing::warn!("restarting {unit} as asked by command {command_id}");
            manager.restart(unit)
        }
    }
}

/// At start: logs the outcome of a reboot asked before the previous stop,
/// then forgets it. `boot_ms` is when this boot happened.
pub fn log_reboot_outcome(state_path: &Path, boot_ms: Option<u64>) -> Option<PendingReboot> {
    let path = state_path.join(REBOOT_FILE);
    let bytes = std::fs::read(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    let Ok(record) = serde_json::from_slice::<PendingReboot>(&bytes) else {
        tracing::warn!("ignoring an unreadable {}", path.display());
        return None;
    };
    match boot_ms {
        Some(boot) if boot >= record.requested_at_ms => tracing::info!(
            "reboot asked by command {} completed: the box is up again",
            record.command_id
        ),
        Some(_) => {
            tracing::warn!(
                "reboot asked by command {} did not happen (the box was not restarted since)",
                record.command_id
            );
            record_failure(
                state_path,
                &record.command_id,
                "reboot",
                "the box was not restarted: the agent started again without a reboot",
            );
        }
        None => tracing::info!(
            "reboot asked by command {}: agent started again",
            record.command_id
        ),
    }
    Some(record)
}

/// When this boot happened, from `/proc/stat` (`btime`), in ms since the epoch.
pub fn boot_time_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let secs: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(secs * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delivery_wait_from_the_ping_interval_outlasts_a_shorter_fallback()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let follow_ups = FollowUps::new(dir.path().to_owned());
        // The real server: pingInterval 25 s, so delivery takes up to 50 s.
        follow_ups.set_delivery_wait(Duration::from_secs(55));
        follow_ups.add(
            "c1",
            Action::Restart("neopro-runtime".into()),
            Duration::ZERO,
        )?;
        let before = Instant::now();
        assert_eq!(follow_ups.settle("c1", true), None);
        let deadline = follow_ups.lock().get("c1").and_then(|p| p.deadline);
        assert!(deadline.is_some_and(|d| d >= before + Duration::from_secs(55)));
        assert_eq!(follow_ups.take_overdue(), vec![]);
        Ok(())
    }

    #[test]
    fn a_reboot_is_journaled_and_its_outcome_logged_once() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let follow_ups = FollowUps::new(dir.path().to_owned());
        follow_ups.add("c1", Action::Reboot, Duration::from_secs(60))?;
        follow_ups.add(
            "c2",
            Action::Restart("neopro-sync-agent".into()),
            Duration::ZERO,
        )?;
        assert!(dir.path().join(REBOOT_FILE).is_file());
        assert_eq!(
            follow_ups.take_overdue(),
            vec![],
            "c2 has not succeeded yet"
        );
        assert_eq!(follow_ups.settle("c2", true), None);
        assert_eq!(
            follow_ups.take_overdue(),
            vec![("c2".to_owned(), Action::Restart("neopro-sync-agent".into()))]
        );
        assert_eq!(follow_ups.take("c1"), Some(Action::Reboot));
        assert!(follow_ups.is_empty());

        let record = log_reboot_outcome(dir.path(), Some(u64::MAX));
        assert_eq!(record.map(|r| r.command_id), Some("c1".to_owned()));
        assert!(!dir.path().join(REBOOT_FILE).exists());
        assert_eq!(log_reboot_outcome(dir.path(), Some(u64::MAX)), None);
        assert_eq!(recent_failure(dir.path()), None, "that reboot happened");
        Ok(())
    }

    #[test]
    fn a_reboot_that_did_not_happen_is_kept_for_the_heartbeat()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let follow_ups = FollowUps::new(dir.path().to_owned());
        follow_ups.add("c9", Action::Reboot, Duration::ZERO)?;
        // This boot is older than the request: no reboot happened.
        log_reboot_outcome(dir.path(), Some(0));
        let failure = recent_failure(dir.path()).ok_or("failure recorded")?;
        assert_eq!(
            (failure.command_id.as_str(), failure.action.as_str()),
            ("c9", "reboot")
        );
        assert_eq!(
            failure.error,
            "the box was not restarted: the agent started again without a reboot"
        );
        Ok(())
    }

    #[test]
    fn a_failed_command_never_runs_its_follow_up() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let follow_ups = FollowUps::new(dir.path().to_owned());
        // Asked, then the component errored, trapped or timed out.
        follow_ups.add("c1", Action::Reboot, Duration::ZERO)?;
        follow_ups.add(
            "c2",
            Action::Restart("neopro-runtime".into()),
            Duration::ZERO,
        )?;
        assert_eq!(follow_ups.take_overdue(), vec![], "not before the outcome");
        assert_eq!(follow_ups.settle("c1", false), Some(Action::Reboot));
        assert_eq!(
            follow_ups.settle("c2", false),
            Some(Action::Restart("neopro-runtime".into()))
        );
        assert!(follow_ups.is_empty());
        assert_eq!(
            follow_ups.take("c1"),
            None,
            "delivery of the error runs nothing"
        );
        assert!(
            !dir.path().join(REBOOT_FILE).exists(),
            "no reboot is journaled for the next start"
        );
        // A command without follow-up settles quietly.
        assert_eq!(follow_ups.settle("c3", false), None);
        Ok(())
    }
}
