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
//!
//! The restart into an agent release is the one follow-up that does not wait
//! for delivery: the staging call registers it ([`Action::IntoRelease`]) and
//! it runs as soon as the command succeeds, because the new agent sends the
//! command's result once it has proved itself.

use crate::platform::systemctl::{ServiceError, ServiceManager};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// File under `STATE_PATH` naming the reboot in progress.
pub const REBOOT_FILE: &str = "reboot-pending.json";

/// The marker's name in the unit's runtime folder (see [`PendingReboot`]).
const REBOOT_MARKER: &str = "reboot-pending";
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
    /// Restart the agent's unit (named) into the release the command
    /// staged or the rollback it scheduled; the new agent reports.
    IntoRelease(String),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Reboot => write!(f, "the reboot"),
            Action::Restart(unit) => write!(f, "the restart of {unit}"),
            Action::IntoRelease(unit) => write!(f, "the restart of {unit} into the new release"),
        }
    }
}

/// What became of a command's follow-up once its outcome is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Nothing to do now (none registered, or it waits for delivery).
    Waits,
    /// The command failed: its follow-up is dropped.
    Dropped(Action),
    /// The command succeeded and its follow-up runs now, without waiting
    /// for delivery ([`Action::IntoRelease`]).
    RunNow(Action),
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
    /// The kernel's boot id when the reboot was asked; a different one at
    /// the next start proves the reboot (the boot time in `/proc/stat` is
    /// the host's inside a container). Absent in records of older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// A file written under the unit's `RuntimeDirectory` (a tmpfs that
    /// outlives the agent's restarts, not a reboot) when the reboot was
    /// asked: gone at the next start proves the reboot where the boot id
    /// cannot (a container's reboot keeps the kernel, and its boot id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_marker: Option<PathBuf>,
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
        // The restart into a staged release already restarts the agent,
        // and the new agent sends the result: nothing replaces it (and no
        // reboot is journaled that will not happen).
        if let Some(Pending {
            action: kept @ Action::IntoRelease(_),
            ..
        }) = self.lock().get(command_id)
        {
            tracing::warn!("command {command_id}: {action} not kept, {kept} follows it");
            return Ok(());
        }
        if action == Action::Reboot {
            let record = PendingReboot {
                command_id: command_id.to_owned(),
                requested_at_ms: crate::platform::clock::unix_millis(SystemTime::now()),
                boot_id: boot_id(),
                run_marker: write_run_marker(command_id),
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
    /// for delivery, or runs now when it is the restart into a release.
    pub fn settle(&self, command_id: &str, succeeded: bool) -> Settled {
        let floor = self.delivery_wait();
        let mut pending = self.lock();
        if succeeded {
            match pending.get_mut(command_id) {
                Some(Pending {
                    action: Action::IntoRelease(_),
                    ..
                }) => {
                    return pending
                        .remove(command_id)
                        .map_or(Settled::Waits, |p| Settled::RunNow(p.action));
                }
                Some(p) => p.deadline = Some(Instant::now() + p.wait.max(floor)),
                None => {}
            }
            return Settled::Waits;
        }
        let Some(dropped) = pending.remove(command_id).map(|p| p.action) else {
            return Settled::Waits;
        };
        drop(pending);
        if dropped == Action::Reboot {
            self.forget_reboot(command_id);
        }
        Settled::Dropped(dropped)
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
        Action::Restart(unit) | Action::IntoRelease(unit) => {
            tracing::warn!("restarting {unit} as asked by command {command_id}");
            // The only restart follow-up is the agent's own unit: systemd
            // stops this process, and the systemctl it spawned with it, before
            // a blocking restart could return.
            manager.restart_no_block(unit)
        }
    }
}

/// At start: logs the outcome of a reboot asked before the previous stop,
/// then forgets it. `now` is this boot: its id and when it happened; the id
/// decides when both records have one, the boot time otherwise.
pub fn log_reboot_outcome(state_path: &Path, now: &ThisBoot) -> Option<PendingReboot> {
    let path = state_path.join(REBOOT_FILE);
    let bytes = std::fs::read(&path).ok()?;
    let _ = std::fs::remove_file(&path);
    let Ok(record) = serde_json::from_slice::<PendingReboot>(&bytes) else {
        tracing::warn!("ignoring an unreadable {}", path.display());
        return None;
    };
    let marker_left = record.run_marker.as_deref().map(|marker| {
        let left = marker.exists();
        if left {
            let _ = std::fs::remove_file(marker);
        }
        left
    });
    match reboot_happened(&record, now, marker_left) {
        Some(true) => tracing::info!(
            "reboot asked by command {} completed: the box is up again",
            record.command_id
        ),
        Some(false) => {
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

/// Whether the box rebooted since `record` was written (`None`: unknown).
/// `marker_left`: whether the record's run marker is still there. A new
/// boot id proves a reboot; else the marker decides (a container's reboot
/// keeps the boot id, never its /run); else the same boot id disproves it;
/// records without either fall back to the boot time.
pub fn reboot_happened(
    record: &PendingReboot,
    now: &ThisBoot,
    marker_left: Option<bool>,
) -> Option<bool> {
    let same_boot_id = match (&record.boot_id, &now.id) {
        (Some(then), Some(id)) => Some(then == id),
        _ => None,
    };
    match (same_boot_id, marker_left) {
        (Some(false), _) => Some(true),
        (_, Some(left)) => Some(!left),
        (Some(true), None) => Some(false),
        (None, None) => now.time_ms.map(|boot| boot >= record.requested_at_ms),
    }
}

/// The unit's runtime folder, from systemd (`RUNTIME_DIRECTORY`, the first
/// of a colon-separated list); none when the agent runs outside the unit.
fn runtime_directory() -> Option<PathBuf> {
    let dirs = std::env::var_os("RUNTIME_DIRECTORY")?;
    let first = dirs.to_str()?.split(':').next()?.to_owned();
    let dir = PathBuf::from(first);
    dir.is_absolute().then_some(dir)
}

/// Writes the reboot marker for `command_id` under the runtime folder;
/// `None` (and the boot id alone decides) when there is none or it fails.
fn write_run_marker(command_id: &str) -> Option<PathBuf> {
    let marker = runtime_directory()?.join(REBOOT_MARKER);
    match std::fs::write(&marker, command_id) {
        Ok(()) => Some(marker),
        Err(e) => {
            tracing::warn!("cannot write the reboot marker {}: {e}", marker.display());
            None
        }
    }
}

/// This boot, as seen at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThisBoot {
    pub id: Option<String>,
    pub time_ms: Option<u64>,
}

impl ThisBoot {
    pub fn current() -> ThisBoot {
        ThisBoot {
            id: boot_id(),
            time_ms: boot_time_ms(),
        }
    }
}

/// The kernel's id of this boot (`/proc/sys/kernel/random/boot_id`): new at
/// every boot, of a Pi or of a container.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
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
        assert_eq!(follow_ups.settle("c1", true), Settled::Waits);
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
        assert_eq!(follow_ups.settle("c2", true), Settled::Waits);
        assert_eq!(
            follow_ups.take_overdue(),
            vec![("c2".to_owned(), Action::Restart("neopro-sync-agent".into()))]
        );
        assert_eq!(follow_ups.take("c1"), Some(Action::Reboot));
        assert!(follow_ups.is_empty());

        let later = ThisBoot {
            id: Some("another boot".into()),
            time_ms: Some(u64::MAX),
        };
        let record = log_reboot_outcome(dir.path(), &later);
        assert_eq!(record.map(|r| r.command_id), Some("c1".to_owned()));
        assert!(!dir.path().join(REBOOT_FILE).exists());
        assert_eq!(log_reboot_outcome(dir.path(), &later), None);
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
        log_reboot_outcome(
            dir.path(),
            &ThisBoot {
                id: None,
                time_ms: Some(0),
            },
        );
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
    fn the_boot_id_decides_whether_the_reboot_happened() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let record = |boot_id: Option<&str>| PendingReboot {
            command_id: "c1".into(),
            requested_at_ms: 1_000,
            boot_id: boot_id.map(str::to_owned),
            run_marker: None,
        };
        std::fs::write(
            dir.path().join(REBOOT_FILE),
            serde_json::to_vec(&record(Some("boot-a")))?,
        )?;
        // In a container the boot time is the host's, long before the
        // request: the new boot id still says the reboot happened.
        let rebooted = ThisBoot {
            id: Some("boot-b".into()),
            time_ms: Some(0),
        };
        assert!(log_reboot_outcome(dir.path(), &rebooted).is_some());
        assert!(
            !dir.path().join(REBOOT_FILE).exists(),
            "forgotten once read"
        );
        let old = record(Some("boot-a"));
        assert_eq!(reboot_happened(&old, &rebooted, None), Some(true));
        let same = ThisBoot {
            id: Some("boot-a".into()),
            time_ms: Some(u64::MAX),
        };
        assert_eq!(reboot_happened(&old, &same, None), Some(false));
        // A record of an older agent (no boot id): the boot time decides.
        let legacy = record(None);
        assert_eq!(reboot_happened(&legacy, &same, None), Some(true));
        assert_eq!(reboot_happened(&legacy, &ThisBoot::default(), None), None);
        // Records written by older agents still parse.
        let parsed: PendingReboot = serde_json::from_str(r#"{"commandId":"c","requestedAtMs":5}"#)?;
        assert_eq!(parsed.boot_id, None);
        assert_eq!(parsed.run_marker, None);
        Ok(())
    }

    #[test]
    fn the_run_marker_decides_when_the_boot_id_stays() -> Result<(), Box<dyn std::error::Error>> {
        let same = ThisBoot {
            id: Some("boot-a".into()),
            time_ms: Some(0),
        };
        let with_marker = |marker: PathBuf| PendingReboot {
            command_id: "c2".into(),
            requested_at_ms: 1_000,
            boot_id: Some("boot-a".into()),
            run_marker: Some(marker),
        };
        // A container's reboot: same boot id, /run emptied.
        assert_eq!(
            reboot_happened(&with_marker("/x".into()), &same, Some(false)),
            Some(true)
        );
        // The agent restarted without a reboot: the marker is still there.
        assert_eq!(
            reboot_happened(&with_marker("/x".into()), &same, Some(true)),
            Some(false)
        );
        // A new boot id proves the reboot whatever the marker says.
        let other = ThisBoot {
            id: Some("boot-b".into()),
            time_ms: Some(0),
        };
        assert_eq!(
            reboot_happened(&with_marker("/x".into()), &other, Some(true)),
            Some(true)
        );

        // End to end through the files: the marker left means no reboot,
        // and both the record and the marker are gone afterwards.
        let state = tempfile::tempdir()?;
        let run = tempfile::tempdir()?;
        let marker = run.path().join(REBOOT_MARKER);
        std::fs::write(&marker, "c2")?;
        std::fs::write(
            state.path().join(REBOOT_FILE),
            serde_json::to_vec(&with_marker(marker.clone()))?,
        )?;
        assert!(log_reboot_outcome(state.path(), &same).is_some());
        assert!(!marker.exists(), "the marker is removed once read");
        assert!(
            std::fs::read_to_string(state.path().join(FAILURE_FILE))?.contains("c2"),
            "a reboot that did not happen is reported as failed"
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
        assert_eq!(
            follow_ups.settle("c1", false),
            Settled::Dropped(Action::Reboot)
        );
        assert_eq!(
            follow_ups.settle("c2", false),
            Settled::Dropped(Action::Restart("neopro-runtime".into()))
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
        assert_eq!(follow_ups.settle("c3", false), Settled::Waits);
        Ok(())
    }

    #[test]
    fn the_restart_into_a_release_runs_at_success_and_nothing_replaces_it()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let follow_ups = FollowUps::new(dir.path().to_owned());
        follow_ups.set_delivery_wait(Duration::from_secs(55));
        let into = Action::IntoRelease("neopro-runtime.service".into());
        follow_ups.add("u1", into.clone(), Duration::ZERO)?;
        // A restart or reboot asked besides is not kept (nor the reboot
        // journaled): the release restart covers it.
        follow_ups.add(
            "u1",
            Action::Restart("neopro-runtime.service".into()),
            Duration::ZERO,
        )?;
        follow_ups.add("u1", Action::Reboot, Duration::ZERO)?;
        assert!(!dir.path().join(REBOOT_FILE).exists());
        assert_eq!(follow_ups.settle("u1", true), Settled::RunNow(into.clone()));
        assert!(follow_ups.is_empty(), "it does not wait for delivery");
        follow_ups.add("u2", into.clone(), Duration::ZERO)?;
        assert_eq!(follow_ups.settle("u2", false), Settled::Dropped(into));
        assert!(follow_ups.is_empty());
        Ok(())
    }
}
