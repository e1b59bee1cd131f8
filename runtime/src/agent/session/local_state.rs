//! `sync_local_state`: the box's configuration.json mirrored to the server,
//! on authentication and whenever the file's content changes.

use crate::host::config_store::MAX_DOCUMENT_BYTES;
use crate::platform::clock;
use crate::store::untrusted_file::{self, UntrustedFileError};
use crate::store::webapp_config::short_sha256;
pub use crate::store::webapp_config::{config_hash, js_stringify};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::SystemTime;

/// Watches CONFIG_PATH by polling its metadata (cheap: one `lstat` per poll)
/// and comparing content digests only when the metadata moved. The file is
/// in the web app user's folder: it is read only when it is a regular file
/// of at most [`MAX_DOCUMENT_BYTES`] (never through a link, never waiting
/// on a FIFO), and the caller reads it off the async worker.
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
        let meta = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.modified().ok(), m.len()));
        if meta == self.last_seen {
            return false;
        }
        self.last_seen = meta;
        match self.read() {
            Ok(raw) => Some(short_sha256(&raw)) != self.last_sent,
            Err(_) => false,
        }
    }

    fn read(&self) -> Result<Vec<u8>, UntrustedFileError> {
        untrusted_file::read_bounded(&self.path, MAX_DOCUMENT_BYTES)
    }

    /// The `sync_local_state` payload, or `None` (logged) when the file is
    /// missing or not JSON. Remembers what it sent.
    pub fn payload(&mut self, site_id: &str) -> Option<Value> {
        let raw = match self.read() {
            Ok(raw) => raw,
            Err(UntrustedFileError::NotFound(_)) => {
                tracing::warn!(
                    "No local configuration found to sync ({})",
                    self.path.display()
                );
                return None;
            }
            Err(e) => {
                tracing::error!("configuration not synced: {e}");
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

    #[test]
    fn a_fifo_or_a_link_to_dev_zero_is_not_read() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let fifo = dir.path().join("fifo.json");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o666),
            0,
        )?;
        let zero = dir.path().join("zero.json");
        std::os::unix::fs::symlink("/dev/zero", &zero)?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            for path in [fifo, zero] {
                let mut w = ConfigWatcher::new(path);
                got.push((w.changed(), w.payload("site-1")));
            }
            let _ = tx.send(got);
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .map_err(|_| "reading configuration.json blocked")?;
        assert_eq!(got, vec![(false, None), (false, None)]);
        Ok(())
    }
}
