//! The maintenance window for software updates (`AUTO_UPDATE_ENABLED`,
//! `AUTO_UPDATE_HOUR`, both unused upstream): a non-critical update that
//! arrives outside the window is accepted, answered as scheduled, kept under
//! `STATE_PATH/scheduled/` (it survives restarts) and run when the window
//! opens; `isCritical` runs at once; disabled updates are refused.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Why a scheduled update cannot be kept.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("cannot keep the scheduled update in {path}: {source}")]
    Store {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// From site.conf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateWindow {
    pub enabled: bool,
    /// Hour of the box's local time (0–23) when updates run.
    pub hour: u8,
}

impl Default for UpdateWindow {
    fn default() -> Self {
        UpdateWindow {
            enabled: true,
            hour: 3,
        }
    }
}

/// What to do with an `update_software` command now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Run,
    Refuse(String),
    /// Answer this result now, run the update in the window.
    Schedule(Value),
}

/// Message of a refused update when updates are disabled.
pub const DISABLED: &str = "Software updates are disabled on this box (AUTO_UPDATE_ENABLED=false in site.conf); set it to true to allow update_software";

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
    if data.get("resume").is_some() {
        return Decision::Refuse("'resume' is reserved for the agent itself".to_owned());
    }
    if !window.enabled {
        return Decision::Refuse(DISABLED.to_owned());
    }
    if truthy(data.get("isCritical")) || hour_now.is_none_or(|h| h == window.hour) {
        return Decision::Run;
    }
    let version = data.get("version").cloned().unwrap_or(Value::Null);
    Decision::Schedule(json!({
        "success": true,
        "scheduled": true,
        "version": version,
        "maintenanceHour": window.hour,
        "message": format!(
            "Update scheduled: it will be installed in the maintenance window ({:02}:00-{:02}:59, box time); the final result follows then",
            window.hour, window.hour
        ),
    }))
}

/// Whether the window is open at `hour_now`.
pub fn window_open(window: UpdateWindow, hour_now: Option<u8>) -> bool {
    window.enabled && hour_now == Some(window.hour)
}

/// The box's local hour, from `date +%H` (an argument vector): it follows
/// the system time zone, which the agent has no library to read.
pub fn local_hour() -> Option<u8> {
    let out = std::process::Command::new("date")
        .arg("+%H")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .ok()
        .filter(|h| *h < 24)
}

/// One update waiting for the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledUpdate {
    pub id: String,
    pub data: Value,
}

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

    /// Keeps an update for later.
    pub fn add(&self, id: &str, data: &Value) -> Result<(), MaintenanceError> {
        let store = |source| MaintenanceError::Store {
            path: self.dir.clone(),
            source,
        };
        let dir = crate::store::atomic::open_state_dir(&self.dir).map_err(store)?;
        let entry = ScheduledUpdate {
            id: id.to_owned(),
            data: data.clone(),
        };
        let bytes = serde_json::to_vec(&entry).map_err(|e| store(std::io::Error::other(e)))?;
        let name = self.file(id);
        let name = name.file_name().map(PathBuf::from).unwrap_or_default();
        crate::store::atomic::write(&dir, &name, &bytes).map_err(store)
    }

    /// Removes and returns every waiting update, oldest file first.
    pub fn take_all(&self) -> Vec<ScheduledUpdate> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .map(|e| {
                let at = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (at, e.path())
            })
            .collect();
        files.sort();
        let mut out = Vec::new();
        for (_, path) in files {
            let parsed = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<ScheduledUpdate>(&b).ok());
            let _ = std::fs::remove_file(&path);
            match parsed {
                Some(update) => out.push(update),
                None => {
                    tracing::warn!("dropping an unreadable scheduled update {}", path.display())
                }
            }
        }
        out
    }

    /// Whether anything waits.
    pub fn is_empty(&self) -> bool {
        std::fs::read_dir(&self.dir).map_or(true, |mut d| d.next().is_none())
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
        let Decision::Schedule(result) = decide(WINDOW, &data, Some(14)) else {
            panic!("scheduled expected");
        };
        assert_eq!(result["scheduled"], json!(true));
        assert_eq!(
            result["message"],
            json!(
                "Update scheduled: it will be installed in the maintenance window (03:00-03:59, box time); the final result follows then"
            )
        );
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
    fn scheduled_updates_survive_a_restart_and_run_once() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let scheduled = Scheduled::new(dir.path());
        assert!(scheduled.is_empty());
        scheduled.add("u-1", &json!({"version": "2.0.0"}))?;
        let again = Scheduled::new(dir.path());
        assert!(!again.is_empty());
        assert_eq!(
            again.take_all(),
            vec![ScheduledUpdate {
                id: "u-1".into(),
                data: json!({"version": "2.0.0"})
            }]
        );
        assert!(again.take_all().is_empty());
        Ok(())
    }

    #[test]
    fn the_local_hour_is_read() {
        assert!(local_hour().is_some_and(|h| h < 24));
    }
}
