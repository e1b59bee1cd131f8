//! Actions that must wait until a command's result has reached the central
//! server: a reboot, or a restart of the agent's own unit. Done earlier, the
//! result would die with the agent and the server would time the command out
//! (upstream rebooted 2 s after answering, delivered or not).
//!
//! A host call registers the action under its command id; the session runs
//! it once the result is known delivered, or after the deadline if the link
//! is down (the result then waits in the journal's outbox and goes out after
//! the restart). A pending reboot is also written to `STATE_PATH` so the next
//! start can log whether it happened.

use crate::service_manager::{ServiceError, ServiceManager};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// File under `STATE_PATH` naming the reboot in progress.
pub const REBOOT_FILE: &str = "reboot-pending.json";

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
    pending: Mutex<BTreeMap<String, (Action, Instant)>>,
}

impl FollowUps {
    pub fn new(state_path: PathBuf) -> Self {
        FollowUps {
            state_path,
            pending: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Action, Instant)>> {
        match self.pending.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Registers `action` for `command_id`, to run at the latest after `wait`.
    pub fn add(
        &self,
        command_id: &str,
        action: Action,
        wait: Duration,
    ) -> Result<(), FollowUpError> {
        if action == Action::Reboot {
            let record = PendingReboot {
                command_id: command_id.to_owned(),
                requested_at_ms: crate::clock::unix_millis(SystemTime::now()),
            };
            let dir = crate::atomic::open_state_dir(&self.state_path);
            let written = dir.and_then(|dir| {
                let bytes = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
                crate::atomic::write(&dir, Path::new(REBOOT_FILE), &bytes)
            });
            written.map_err(|source| FollowUpError::Persist {
                path: self.state_path.join(REBOOT_FILE),
                source,
            })?;
        }
        self.lock()
            .insert(command_id.to_owned(), (action, Instant::now() + wait));
        Ok(())
    }

    /// The action waiting for `command_id`'s delivery, removed.
    pub fn take(&self, command_id: &str) -> Option<Action> {
        self.lock().remove(command_id).map(|(action, _)| action)
    }

    /// Actions whose deadline passed, removed.
    pub fn take_overdue(&self) -> Vec<(String, Action)> {
        let now = Instant::now();
        let mut pending = self.lock();
        let overdue: Vec<String> = pending
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        overdue
            .into_iter()
            .filter_map(|id| pending.remove(&id).map(|(a, _)| (id, a)))
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
        Some(_) => tracing::warn!(
            "reboot asked by command {} did not happen (the box was not restarted since)",
            record.command_id
        ),
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
            vec![("c2".to_owned(), Action::Restart("neopro-sync-agent".into()))]
        );
        assert_eq!(follow_ups.take("c1"), Some(Action::Reboot));
        assert!(follow_ups.is_empty());

        let record = log_reboot_outcome(dir.path(), Some(u64::MAX));
        assert_eq!(record.map(|r| r.command_id), Some("c1".to_owned()));
        assert!(!dir.path().join(REBOOT_FILE).exists());
        assert_eq!(log_reboot_outcome(dir.path(), Some(u64::MAX)), None);
        Ok(())
    }
}
