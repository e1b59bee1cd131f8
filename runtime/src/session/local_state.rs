//! `sync_local_state`: the box's configuration.json mirrored to the server,
//! on authentication and whenever the file's content changes.

use crate::clock;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::SystemTime;

/// `JSON.stringify` of a parsed document: compact, keys in file order (the
/// `preserve_order` feature), integral numbers without a fraction (`2`, not
/// `2.0`), as JavaScript prints them.
pub fn js_stringify(value: &Value) -> String {
    let mut out = String::new();
    write_js(value, &mut out);
    out
}

fn write_js(value: &Value, out: &mut String) {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e21 => {
                out.push_str(&format!("{f:.0}"));
            }
            _ => out.push_str(&n.to_string()),
        },
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_js(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_js(v, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// First 16 hex digits of sha256 — the digest upstream uses everywhere.
fn short_sha256(bytes: &[u8]) -> String {
    let mut hex = hex::encode(Sha256::digest(bytes));
    hex.truncate(16);
    hex
}

/// The `configHash` of a configuration (protocol notes §5.3).
pub fn config_hash(config: &Value) -> String {
    short_sha256(js_stringify(config).as_bytes())
}

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
    fn hashes_match_the_upstream_vectors() -> Result<(), serde_json::Error> {
        assert_eq!(config_hash(&serde_json::from_str("{}")?), sha16("{}"));
        assert_eq!(sha16("{}"), "44136fa355b3678a");
        assert_eq!(
            config_hash(&serde_json::from_str(r#"{ "categories": [] }"#)?),
            sha16(r#"{"categories":[]}"#)
        );
        assert_eq!(
            config_hash(&serde_json::from_str(
                r#"{"categories":[{"id":"test","name":"Test"}]}"#
            )?),
            sha16(r#"{"categories":[{"id":"test","name":"Test"}]}"#)
        );
        // File order kept, JS number formatting, raw non-ASCII.
        let v: Value = serde_json::from_str(r#"{"z":1,"a":2.0,"b":0.5,"é":"ü\n"}"#)?;
        assert_eq!(
            js_stringify(&v),
            "{\"z\":1,\"a\":2,\"b\":0.5,\"é\":\"ü\\n\"}"
        );
        Ok(())
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
