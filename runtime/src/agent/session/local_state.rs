//! `sync_local_state`: the box's configuration.json mirrored to the server,
//! on authentication and whenever the file's content changes.

use crate::platform::clock;
use crate::store::webapp_config::short_sha256;
pub use crate::store::webapp_config::{config_hash, js_stringify};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::SystemTime;

/// Watches CONFIG_PATH by polling its metadata (cheap: one `stat` per poll)
/// and comparing content digests only when the metadata moved.
#[derive(Debug)]
pub struct ConfigWatcher {
    path: PathBuf,
    last_seen: Option<(Option<SystemTime>, u64)>,
    last_sent: Option<String>,
}

impl ConfigWatcher {
    pub fn new(path: PathBuf) -> Self {
        ConfigWatcher {
            path,
            last_seen: None,
            last_sent: None,
        }
    }

    /// True when the file's content differs from what was last sent.
    pub fn changed(&mut self) -> bool {
        let meta = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().ok(), m.len()));
        if meta == self.last_seen {
            return false;
        }
        self.last_seen = meta;
        match std::fs::read(&self.path) {
            Ok(raw) => Some(short_sha256(&raw)) != self.last_sent,
            Err(_) => false,
        }
    }

    /// The `sync_local_state` payload, or `None` (logged) when the file is
    /// missing or not JSON. Remembers what it sent.
    pub fn payload(&mut self, site_id: &str) -> Option<Value> {
        let raw = match std::fs::read(&self.path) {
            Ok(raw) => raw,
            Err(_) => {
                tracing::warn!(
                    "No local configuration found to sync ({})",
                    self.path.display()
                );
                return None;
            }
        };
        self.last_sent = Some(short_sha256(&raw));
        let config: Value = match serde_json::from_slice(&raw) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("{} is not valid JSON, not synced: {e}", self.path.display());
                return None;
            }
        };
        Some(json!({
            "siteId": site_id,
            "configHash": config_hash(&config),
            "config": config,
            "timestamp": clock::iso8601(SystemTime::now()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha16(s: &str) -> String {
        short_sha256(s.as_bytes())
    }

    #[test]
    fn the_watcher_fires_once_per_content_change() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("configuration.json");
        let mut w = ConfigWatcher::new(path.clone());
        assert!(!w.changed(), "no file yet");
        std::fs::write(&path, r#"{"a":1}"#)?;
        assert!(w.changed());
        let payload = w.payload("site-1");
        assert_eq!(
            payload.as_ref().map(|p| p["configHash"].clone()),
            Some(json!(sha16(r#"{"a":1}"#)))
        );
        assert_eq!(payload.map(|p| p["config"].clone()), Some(json!({"a": 1})));
        assert!(!w.changed(), "nothing new");
        std::fs::write(&path, r#"{"a":2, "longer": true}"#)?;
        assert!(w.changed());
        Ok(())
    }
}
