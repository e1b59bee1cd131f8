//! `config-store`: the one place where configuration.json (CONFIG_PATH) is
//! written. One writer at a time across all concurrent commands; optimistic
//! versions so a component never overwrites a change it did not see; the
//! previous version kept as `<name>.backup.json`; atomic replacement.

use super::bindings::neopro::agent::config_store::{Host, Snapshot};
use super::{HostState, WitError};
use crate::host::grants::Grant;
use crate::manifest::Access;
use crate::store::hash::sha256_hex;
use crate::store::webapp_config::config_hash;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Prefix of the error a write gets when it lost a race; the SDK retries.
pub const CHANGED: &str = "configuration changed since it was read";

/// Largest configuration.json read or written (a real one is tens of KiB).
/// Parsing costs the host ~40× the text in the worst case, so the bound is
/// on the agent's memory, whatever the guest's own limit.
pub const MAX_DOCUMENT_BYTES: u64 = 2 << 20;

/// configuration.json and its writer lock.
#[derive(Debug)]
pub struct ConfigStore {
    path: PathBuf,
    lock: Mutex<()>,
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "configuration.json".to_owned())
}

impl ConfigStore {
    pub fn new(path: PathBuf) -> Self {
        ConfigStore {
            path,
            lock: Mutex::new(()),
        }
    }

    fn read_raw(&self) -> Result<Option<Vec<u8>>, WitError> {
        self.read_raw_within(MAX_DOCUMENT_BYTES)
    }

    /// The file's bytes, refused when over `max` (or [`MAX_DOCUMENT_BYTES`]).
    fn read_raw_within(&self, max: u64) -> Result<Option<Vec<u8>>, WitError> {
        use crate::store::untrusted_file::{UntrustedFileError, read_bounded};
        // The web app's folder: never through a link, never a FIFO.
        let max = max.min(MAX_DOCUMENT_BYTES);
        match read_bounded(&self.path, max) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(UntrustedFileError::NotFound(_)) => Ok(None),
            Err(UntrustedFileError::TooBig { .. }) => Err(WitError::TooLarge(format!(
                "{} is larger than the {max} bytes this command can read",
                self.path.display()
            ))),
            Err(e) if e.is_foreign() => Err(WitError::NotPermitted(format!("cannot read {e}"))),
            Err(e) => Err(WitError::Io(format!("cannot read {e}"))),
        }
    }

    fn parse(&self, bytes: &[u8]) -> Result<Value, WitError> {
        serde_json::from_slice(bytes).map_err(|e| {
            WitError::InvalidInput(format!(
                "{} is not valid JSON ({e}); it was left untouched",
                self.path.display()
            ))
        })
    }

    /// The current version.
    pub fn read(&self) -> Result<Snapshot, WitError> {
        self.read_within(MAX_DOCUMENT_BYTES)
    }

    /// The current version, if its text is at most `max` bytes (what the
    /// calling guest has left to take it).
    pub fn read_within(&self, max: u64) -> Result<Snapshot, WitError> {
        let Some(bytes) = self.read_raw_within(max)? else {
            return Ok(Snapshot {
                json: None,
                version: String::new(),
                config_hash: String::new(),
            });
        };
        let value = self.parse(&bytes)?;
        Ok(Snapshot {
            json: Some(String::from_utf8_lossy(&bytes).into_owned()),
            version: sha256_hex(&bytes),
            config_hash: config_hash(&value),
        })
    }

    /// Replaces the document if it is still at `expected_version`.
    pub fn write(&self, json: &str, expected_version: &str) -> Result<Snapshot, WitError> {
        if json.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(WitError::TooLarge(format!(
                "the new configuration is {} bytes, more than the {MAX_DOCUMENT_BYTES} allowed",
                json.len()
            )));
        }
        let value: Value = serde_json::from_str(json).map_err(|e| {
            WitError::InvalidInput(format!("the new configuration is not valid JSON: {e}"))
        })?;
        if !value.is_object() {
            return Err(WitError::InvalidInput(
                "the configuration must be a JSON object".to_owned(),
            ));
        }
        let _writer = match self.lock.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let current = self.read_raw()?;
        let current_version = current.as_deref().map(sha256_hex).unwrap_or_default();
        if current_version != expected_version {
            return Err(WitError::Failed(format!(
                "{CHANGED}; read it again and retry"
            )));
        }
        let parent = self.path.parent().unwrap_or(Path::new("/"));
        let dir = crate::store::atomic::open_state_dir(parent)
            .map_err(|e| WitError::Io(format!("cannot open {}: {e}", parent.display())))?;
        let name = name_of(&self.path);
        if let Some(previous) = &current {
            self.parse(previous)?;
            let backup = match name.strip_suffix(".json") {
                Some(stem) => format!("{stem}.backup.json"),
                None => format!("{name}.backup"),
            };
            crate::store::atomic::write(&dir, Path::new(&backup), previous)
                .map_err(|e| WitError::Io(format!("cannot write the backup {backup}: {e}")))?;
        }
        // 2-space indentation, like the web app writes it.
        let text = serde_json::to_string_pretty(&value)
            .map_err(|e| WitError::Failed(format!("cannot encode the configuration: {e}")))?;
        crate::store::atomic::write(&dir, Path::new(&name), text.as_bytes())
            .map_err(|e| WitError::Io(format!("cannot write {}: {e}", self.path.display())))?;
        Ok(Snapshot {
            version: sha256_hex(text.as_bytes()),
            config_hash: config_hash(&value),
            json: Some(text),
        })
    }
}

impl Host for HostState {
    fn read(&mut self) -> Result<Snapshot, WitError> {
        self.call.check(Grant::ConfigStore(Access::ReadOnly))?;
        // The snapshot carries the text twice at most (it and the guest's copy).
        self.call
            .services
            .config_store
            .read_within(self.memory.remaining())
    }

    fn write(&mut self, json: String, expected_version: String) -> Result<Snapshot, WitError> {
        self.call.check(Grant::ConfigStore(Access::ReadWrite))?;
        self.call
            .services
            .config_store
            .write(&json, &expected_version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimistic_writes_keep_a_backup_and_refuse_stale_versions() -> Result<(), WitError> {
        let dir = tempfile::tempdir().map_err(|e| WitError::Io(e.to_string()))?;
        let path = dir.path().join("webapp/configuration.json");
        let store = ConfigStore::new(path.clone());
        let empty = store.read()?;
        assert_eq!((empty.json, empty.version.as_str()), (None, ""));

        let first = store.write(r#"{"categories":[]}"#, "")?;
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("{\n  \"categories\": []\n}")
        );
        assert_eq!(
            first.config_hash,
            config_hash(&serde_json::json!({"categories": []}))
        );
        assert_eq!(store.read()?.version, first.version);

        let second = store.write(r#"{"categories":[],"version":"2.0"}"#, &first.version)?;
        assert_eq!(
            std::fs::read_to_string(dir.path().join("webapp/configuration.backup.json")).ok(),
            first.json
        );
        // A writer that read before `second` loses.
        let stale = store.write(r#"{"lost":true}"#, &first.version);
        assert!(
            matches!(&stale, Err(WitError::Failed(m)) if m.starts_with(CHANGED)),
            "{stale:?}"
        );
        assert_eq!(store.read()?.version, second.version);
        Ok(())
    }

    #[test]
    fn invalid_json_is_refused_and_left_untouched() -> Result<(), WitError> {
        let dir = tempfile::tempdir().map_err(|e| WitError::Io(e.to_string()))?;
        let path = dir.path().join("configuration.json");
        std::fs::write(&path, "{\"categories\": [").map_err(|e| WitError::Io(e.to_string()))?;
        let store = ConfigStore::new(path.clone());
        assert!(
            matches!(store.read(), Err(WitError::InvalidInput(m)) if m.ends_with("it was left untouched"))
        );
        let version = sha256_hex(b"{\"categories\": [");
        assert!(matches!(
            store.write("{}", &version),
            Err(WitError::InvalidInput(_))
        ));
        assert!(
            matches!(store.write("[1]", &version), Err(WitError::InvalidInput(m)) if m == "the configuration must be a JSON object")
        );
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("{\"categories\": [")
        );
        assert!(!dir.path().join("configuration.backup.json").exists());
        Ok(())
    }
}
