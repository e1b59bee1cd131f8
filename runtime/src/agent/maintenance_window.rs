//! The maintenance window for software updates (`AUTO_UPDATE_ENABLED`,
//! `AUTO_UPDATE_HOUR`, both unused upstream): a non-critical update that
//! arrives outside the window is kept under `STATE_PATH/scheduled/` until
//! its final result is journaled (it survives restarts, including one in
//! the middle of its run) and run when the window opens. It gets no
//! `command_result` before it has run: the real server takes any success of
//! an update carrying a `deploymentId` as installed. Meanwhile an
//! `update_progress` "scheduled" keeps its deployment in progress.
//! `isCritical` runs at once; disabled updates are refused.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

pub use crate::config::UpdateWindow;

/// Why a scheduled update cannot be kept.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("cannot keep the scheduled update in {path}: {source}")]
    Store {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The key the agent adds to a command's data to ask its component to
/// check it (`check-before-window`); reserved, like `resume`.
pub const CHECK_KEY: &str = "check";

/// Keys of a command's data only the agent sets.
const RESERVED_KEYS: [&str; 2] = ["resume", CHECK_KEY];

/// What to do with a maintenance-window command now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Run,
    Refuse(String),
    /// Keep it and run it in the window; no result until it has run.
    Schedule,
}

/// Message of a refused update when updates are disabled.
pub const DISABLED: &str = "Software updates are disabled on this box (AUTO_UPDATE_ENABLED=false in site.conf); set it to true to allow them";

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        Some(Value::Number(n)) => n.as_u64().is_some_and(|n| n != 0),
        _ => false,
    }
}

/// Decides for one update command at `hour_now` (local; `None` when the
/// time is unknown: then the update runs at once rather than never).
pub fn decide(window: UpdateWindow, data: &Value, hour_now: Option<u8>) -> Decision {
    if let Some(key) = RESERVED_KEYS.iter().find(|k| data.get(**k).is_some()) {
        return Decision::Refuse(format!("'{key}' is reserved for the agent itself"));
    }
    if !window.enabled {
        return Decision::Refuse(DISABLED.to_owned());
    }
    if truthy(data.get("isCritical")) || hour_now.is_none_or(|h| h == window.hour) {
        return Decision::Run;
    }
    Decision::Schedule
}

/// Whether the window is open at `hour_now`.
pub fn window_open(window: UpdateWindow, hour_now: Option<u8>) -> bool {
    window.enabled && hour_now == Some(window.hour)
}

/// The box's local hour, from `date +%H` (an argument vector): it follows
/// the system time zone, which the agent has no library to read.
pub fn local_hour() -> Option<u8> {
    local_clock().map(|c| c.hour)
}

/// The box's local time of day, read in one `date` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalClock {
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

fn local_clock() -> Option<LocalClock> {
    let out = std::process::Command::new("date")
        .arg("+%H %M %S")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace().map(|p| p.parse::<u8>().ok());
    let clock = LocalClock {
        hour: parts.next()??,
        minute: parts.next()??,
        second: parts.next()??,
    };
    (clock.hour < 24 && clock.minute < 60 && clock.second < 61).then_some(clock)
}

/// How long from `now` (local) until the window's hour next begins; at
/// most a day (a time-zone change meanwhile is not foreseen).
pub fn until_window(window: UpdateWindow, now: LocalClock) -> std::time::Duration {
    let into_day = |h: u8, m: u8, s: u8| u64::from(h) * 3600 + u64::from(m) * 60 + u64::from(s);
    let now = into_day(now.hour, now.minute, now.second.min(59));
    let start = into_day(window.hour, 0, 0);
    std::time::Duration::from_secs((start + 86_400 - now) % 86_400)
}

/// When the window next opens, as an ISO time (UTC, like the server's
/// dates); `None` when the box's time is unknown.
pub fn next_window_iso(window: UpdateWindow) -> Option<String> {
    let clock = local_clock()?;
    // Whole seconds, like the local clock just read: the hour, not a
    // millisecond past it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| std::time::UNIX_EPOCH + std::time::Duration::from_secs(d.as_secs()))
        .unwrap_or(std::time::UNIX_EPOCH);
    Some(crate::platform::clock::iso8601(
        now + until_window(window, clock),
    ))
}

/// The `update_progress` that tells the dashboard an update is scheduled
/// (its deployment then reads as in progress, not installed): sent when the
/// update is scheduled and after each re-authentication until it runs.
/// `None` without a `deploymentId` (the server has no deployment to show).
pub fn scheduled_progress(update: &ScheduledUpdate) -> Option<Value> {
    let deployment = update.data.get("deploymentId").filter(|d| !d.is_null())?;
    Some(json!({
        "deploymentId": deployment,
        "version": update.data.get("version").cloned().unwrap_or(Value::Null),
        "progress": 0,
        "status": "scheduled",
        "scheduledFor": update.scheduled_for,
    }))
}

/// One update waiting for the window, or running in it: the entry stays
/// until the update's final result is in the journal, so a restart at any
/// point finds it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledUpdate {
    pub id: String,
    /// The command to run in the window (one a manifest lists under
    /// `maintenance-window`). Empty in entries written before the type was
    /// recorded: the session resolves it from the manifests.
    #[serde(default)]
    pub command_type: String,
    pub data: Value,
    /// When the window was next due when it was scheduled (ISO, UTC).
    #[serde(default)]
    pub scheduled_for: Option<String>,
    /// Later command ids of the same deployment: the real server re-sends
    /// an in-progress update deployment under a new id at every
    /// authentication. They join this entry and get its final result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<String>,
}

/// What identifies a deployment among scheduled updates: its
/// `deploymentId`, or its version and URL when it has none.
pub fn deployment_key(data: &Value) -> Option<String> {
    if let Some(id) = data.get("deploymentId").and_then(Value::as_str)
        && !id.is_empty()
    {
        return Some(format!("deployment {id}"));
    }
    let version = data.get("version").and_then(Value::as_str)?;
    let url = data.get("updateUrl").and_then(Value::as_str)?;
    Some(format!("version {version} from {url}"))
}

/// How long a deployment that ran is remembered (the server re-sends one
/// at every authentication until our result reaches it).
pub const SETTLED_KEPT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Updates waiting for the window, one file each.
#[derive(Debug, Clone)]
pub struct Scheduled {
    dir: PathBuf,
}

impl Scheduled {
    pub fn new(state_path: &Path) -> Self {
        Scheduled {
            dir: state_path.join("scheduled"),
        }
    }

    fn file(&self, id: &str) -> PathBuf {
        self.dir.join(format!(
            "{}.json",
            crate::store::hash::sha256_hex(id.as_bytes())
        ))
    }

    /// Keeps an update for later (persisted before it is answered).
    pub fn add(&self, update: &ScheduledUpdate) -> Result<(), MaintenanceError> {
        let store = |source| MaintenanceError::Store {
            path: self.dir.clone(),
            source,
        };
        let dir = crate::store::atomic::open_state_dir(&self.dir).map_err(store)?;
        let bytes = serde_json::to_vec(update).map_err(|e| store(std::io::Error::other(e)))?;
        let name = self.file(&update.id);
        let name = name.file_name().map(PathBuf::from).unwrap_or_default();
        crate::store::atomic::write_private(&dir, &name, &bytes).map_err(store)
    }

    /// Whether `id` is waiting or running as a scheduled update (or joined
    /// one).
    pub fn contains(&self, id: &str) -> bool {
        self.file(id).is_file() || self.list().iter().any(|u| u.also.iter().any(|a| a == id))
    }

    /// Every command id kept: entries and the ids that joined them.
    pub fn ids(&self) -> std::collections::HashSet<String> {
        self.list()
            .into_iter()
            .flat_map(|u| std::iter::once(u.id).chain(u.also))
            .collect()
    }

    /// The entry kept for the same deployment as `data`, if any.
    pub fn same_deployment(&self, data: &Value) -> Option<ScheduledUpdate> {
        let key = deployment_key(data)?;
        self.list()
            .into_iter()
            .find(|u| deployment_key(&u.data).as_deref() == Some(key.as_str()))
    }

    /// Adds `id` to `entry`'s joined ids (persisted before it is answered).
    pub fn join(&self, entry: &ScheduledUpdate, id: &str) -> Result<(), MaintenanceError> {
        let mut entry = entry.clone();
        if entry.id != id && !entry.also.iter().any(|a| a == id) {
            entry.also.push(id.to_owned());
        }
        self.add(&entry)
    }

    /// `STATE_PATH/scheduled-settled/`: beside the entries, not among them.
    fn settled_dir(&self) -> PathBuf {
        self.dir.with_file_name("scheduled-settled")
    }

    fn settled_file(&self, key: &str) -> PathBuf {
        self.settled_dir().join(format!(
            "{}.settled",
            crate::store::hash::sha256_hex(key.as_bytes())
        ))
    }

    /// Remembers that `entry`'s deployment has run, under `entry.id`: the
    /// server keeps re-sending a deployment until our result reaches it, so
    /// a copy can arrive just after the update finished; it then gets that
    /// update's result instead of running again. Best effort (a copy that
    /// finds nothing runs, as the update would after a lost file); records
    /// older than [`SETTLED_KEPT`] are dropped here, so they stay few.
    pub fn remember_settled(&self, entry: &ScheduledUpdate) {
        let Some(key) = deployment_key(&entry.data) else {
            return;
        };
        let settled = self.settled_dir();
        let written = crate::store::atomic::open_state_dir(&settled).and_then(|dir| {
            let name = self.settled_file(&key);
            let name = name.file_name().map(PathBuf::from).unwrap_or_default();
            crate::store::atomic::write_private(&dir, &name, entry.id.as_bytes())
        });
        if let Err(e) = written {
            tracing::warn!(
                "cannot record that update {} has run ({e}); a copy the server sends again would run again",
                entry.id
            );
        }
        let Ok(entries) = std::fs::read_dir(&settled) else {
            return;
        };
        let now = std::time::SystemTime::now();
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| now.duration_since(at).ok())
                .is_some_and(|age| age > SETTLED_KEPT);
            if old && e.file_name().to_string_lossy().ends_with(".settled") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// The command id under which `data`'s deployment already ran, if it
    /// did (see [`Scheduled::remember_settled`]).
    pub fn settled_id(&self, data: &Value) -> Option<String> {
        use std::io::Read;
        let key = deployment_key(data)?;
        let file = std::fs::File::open(self.settled_file(&key)).ok()?;
        let mut id = String::new();
        file.take(256).read_to_string(&mut id).ok()?;
        let id = id.trim();
        (!id.is_empty()).then(|| id.to_owned())
    }

    /// Forgets an update once its final result is journaled.
    pub fn remove(&self, id: &str) -> Result<(), MaintenanceError> {
        match std::fs::remove_file(self.file(id)) {
            Ok(()) => {
                if let Ok(d) = std::fs::File::open(&self.dir) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(MaintenanceError::Store {
                path: self.file(id),
                source,
            }),
        }
    }

    /// Every kept update, oldest first; nothing is removed.
    pub fn list(&self) -> Vec<ScheduledUpdate> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.ends_with(".json") && !name.starts_with('.')
            })
            .map(|e| {
                let at = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (at, e.path())
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, path)| {
                let parsed = std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<ScheduledUpdate>(&b).ok());
                if parsed.is_none() {
                    tracing::warn!("ignoring an unreadable scheduled update {}", path.display());
                }
                parsed
            })
            .collect()
    }

    /// Whether anything waits.
    pub fn is_empty(&self) -> bool {
        self.list().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: UpdateWindow = UpdateWindow {
        enabled: true,
        hour: 3,
    };

    #[test]
    fn critical_updates_run_at_once_others_wait_for_the_window() {
        let data = json!({"version": "2.0.0", "isCritical": false});
        assert_eq!(decide(WINDOW, &data, Some(3)), Decision::Run);
        assert_eq!(decide(WINDOW, &data, None), Decision::Run);
        assert_eq!(decide(WINDOW, &data, Some(14)), Decision::Schedule);
        let critical = json!({"version": "2.0.0", "isCritical": true});
        assert_eq!(decide(WINDOW, &critical, Some(14)), Decision::Run);
        let off = UpdateWindow {
            enabled: false,
            hour: 3,
        };
        assert_eq!(
            decide(off, &critical, Some(3)),
            Decision::Refuse(DISABLED.to_owned())
        );
        assert!(matches!(
            decide(WINDOW, &json!({"resume": true}), Some(3)),
            Decision::Refuse(_)
        ));
        assert!(window_open(WINDOW, Some(3)) && !window_open(WINDOW, Some(4)));
    }

    #[test]
    fn a_scheduled_update_stays_until_it_is_removed() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let scheduled = Scheduled::new(dir.path());
        assert!(scheduled.is_empty());
        let update = ScheduledUpdate {
            id: "u-1".into(),
            command_type: "update_software".into(),
            data: json!({"version": "2.0.0", "deploymentId": "dep-1"}),
            scheduled_for: Some("2026-12-02T03:00:00.000Z".into()),
            also: Vec::new(),
        };
        scheduled.add(&update)?;
        // A restart (new store over the same folder), listed twice: still there.
        let again = Scheduled::new(dir.path());
        assert_eq!(again.list(), vec![update.clone()]);
        assert_eq!(again.list(), vec![update.clone()]);
        assert!(again.contains("u-1") && !again.contains("u-2"));
        // The same deployment under a new id joins the entry.
        let redelivered = json!({"version": "2.0.0", "deploymentId": "dep-1"});
        let found = again
            .same_deployment(&redelivered)
            .expect("same deployment");
        again.join(&found, "u-2")?;
        again.join(&found, "u-2")?;
        assert_eq!(again.list().len(), 1);
        assert_eq!(again.list()[0].also, vec!["u-2".to_owned()]);
        assert!(again.contains("u-2"));
        assert_eq!(again.ids().len(), 2);
        assert!(
            again
                .same_deployment(&json!({"deploymentId": "dep-2"}))
                .is_none()
        );
        again.remove("u-1")?;
        assert!(again.is_empty() && !again.contains("u-1") && !again.contains("u-2"));
        again.remove("u-1")?;
        assert_eq!(
            scheduled_progress(&update),
            Some(
                json!({"deploymentId": "dep-1", "version": "2.0.0", "progress": 0,
                "status": "scheduled", "scheduledFor": "2026-12-02T03:00:00.000Z"})
            )
        );
        Ok(())
    }

    #[test]
    fn the_window_is_due_at_its_next_hour() {
        let at = |hour, minute, second| LocalClock {
            hour,
            minute,
            second,
        };
        let secs = |c| until_window(WINDOW, c).as_secs();
        assert_eq!(secs(at(2, 59, 0)), 60);
        assert_eq!(secs(at(14, 0, 0)), 13 * 3600);
        assert_eq!(secs(at(4, 30, 0)), 22 * 3600 + 30 * 60);
    }

    #[test]
    fn the_local_hour_is_read() {
        assert!(local_hour().is_some_and(|h| h < 24));
    }

    #[test]
    fn a_deployment_that_ran_is_remembered_under_its_first_id()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let scheduled = Scheduled::new(dir.path());
        let data = serde_json::json!({"deploymentId": "dep-1", "version": "2.0.0",
            "updateUrl": "http://x/u.tar.gz"});
        let entry = ScheduledUpdate {
            id: "c-1".into(),
            command_type: "update_software".into(),
            data: data.clone(),
            scheduled_for: None,
            also: vec!["c-2".into()],
        };
        scheduled.add(&entry)?;
        assert_eq!(scheduled.settled_id(&data), None);
        scheduled.remember_settled(&entry);
        scheduled.remove("c-1")?;
        assert_eq!(scheduled.settled_id(&data).as_deref(), Some("c-1"));
        // Not an entry, nor in the entries' folder.
        assert!(scheduled.list().is_empty());
        assert_eq!(std::fs::read_dir(dir.path().join("scheduled"))?.count(), 0);
        let other = serde_json::json!({"deploymentId": "dep-2", "version": "2.0.0",
            "updateUrl": "http://x/u.tar.gz"});
        assert_eq!(scheduled.settled_id(&other), None);
        Ok(())
    }
}
