//! Pushed components on disk, under `STATE_PATH/components`:
//!
//! ```text
//! <name>/state.json            {"active": "1.1.0", "previous": "1.0.0"}
//! <name>/<version>/component.wasm
//! <name>/<version>/manifest.toml   the text that was signed
//! <name>/<version>/install.json    sha256, signature, signer, url, time
//! ```
//!
//! A version folder is complete before it gets its final name (it is built
//! as `.staging-<version>` and renamed), and switching versions is one
//! atomic write of `state.json`: a power cut leaves either the old or the
//! new version active, never a mix. Only the active and the previous
//! version are kept; the previous one is what `rollback_component` returns
//! to.

use crate::manifest::Manifest;
use crate::store::atomic;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const STATE_FILE: &str = "state.json";
const WASM_FILE: &str = "component.wasm";
const MANIFEST_FILE: &str = "manifest.toml";
const INSTALL_FILE: &str = "install.json";
/// The newest version ever installed, per component, kept when a component
/// is removed: without it, `remove_component` followed by an older signed
/// version would get round the site's no-downgrade rule. A dot name, so
/// [`ComponentStore::list`] never takes it for a component.
const HIGH_WATER_FILE: &str = ".high-water.json";

/// A store operation that failed; the store is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no pushed component named '{0}' is installed")]
    NotInstalled(String),
    #[error("component '{0}' has no previous version to roll back to")]
    NoPrevious(String),
    #[error(
        "component '{name}' version {version} is already installed with different contents; give the new build a new version"
    )]
    VersionClash { name: String, version: String },
    #[error(
        "'{0}' cannot be used as a version: use 1-64 characters of 0-9, a-z, A-Z, '.', '+', '-'"
    )]
    BadVersion(String),
    #[error("'{0}' is not a component name: use 1-64 characters of a-z, 0-9 and '-'")]
    BadName(String),
    #[error("installed component '{name}' is unusable: {detail}")]
    Damaged { name: String, detail: String },
    #[error("component store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Which versions of one component exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionState {
    pub active: String,
    #[serde(default)]
    pub previous: Option<String>,
}

/// Facts kept next to an installed version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallRecord {
    pub sha256: String,
    #[serde(default)]
    pub signature: Option<String>,
    /// Key id of the signer, when signed.
    #[serde(default)]
    pub signer: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    /// Unix milliseconds.
    pub installed_at: u64,
}

/// One installed version, as read back from disk.
#[derive(Debug, Clone)]
pub struct InstalledVersion {
    pub manifest: Manifest,
    pub manifest_text: String,
    pub wasm_path: PathBuf,
    pub manifest_path: PathBuf,
    pub record: InstallRecord,
}

/// A pushed component: its active version and what rollback would give.
#[derive(Debug, Clone)]
pub struct InstalledComponent {
    pub active: InstalledVersion,
    pub previous: Option<String>,
}

/// A verified component ready to be stored.
pub struct NewVersion<'a> {
    pub manifest: &'a Manifest,
    pub manifest_text: &'a str,
    /// The wasm, already downloaded and verified, in the store's incoming
    /// folder (so the final move is a rename on the same filesystem).
    pub wasm_file: &'a Path,
    pub record: InstallRecord,
}

/// What [`ComponentStore::install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// The version active before, if any.
    pub replaced: Option<String>,
    /// The same version with the same contents was already there.
    pub already_installed: bool,
}

/// Versions go into paths: keep them to a safe alphabet.
fn check_version(version: &str) -> Result<(), StoreError> {
    let ok = !version.is_empty()
        && version.len() <= 64
        && !version.starts_with('.')
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadVersion(version.to_owned()))
    }
}

/// The pushed-components folder.
#[derive(Debug, Clone)]
pub struct ComponentStore {
    dir: PathBuf,
}

impl ComponentStore {
    pub fn new(dir: PathBuf) -> Self {
        ComponentStore { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where downloads wait to be verified.
    pub fn incoming_dir(&self) -> Result<PathBuf, StoreError> {
        let dir = self.dir.join(".incoming");
        crate::store::private_dir::create(&dir).map_err(|source| self.io(&dir, source))?;
        Ok(dir)
    }

    fn io(&self, path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// Names go into paths: every operation checks them as install does
    /// (`remove_component {"name": ".."}` must not reach the folder above).
    fn check_name(name: &str) -> Result<(), StoreError> {
        if crate::manifest::is_component_name(name) {
            Ok(())
        } else {
            Err(StoreError::BadName(name.to_owned()))
        }
    }

    fn state(&self, name: &str) -> Result<Option<VersionState>, StoreError> {
        Self::check_name(name)?;
        let path = self.dir.join(name).join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Damaged {
                        name: name.to_owned(),
                        detail: format!("{} is not valid: {e}", path.display()),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(self.io(&path, source)),
        }
    }

    fn write_state(&self, name: &str, state: &VersionState) -> Result<(), StoreError> {
        Self::check_name(name)?;
        let dir_path = self.dir.join(name);
        let dir = atomic::open_state_dir(&dir_path).map_err(|source| self.io(&dir_path, source))?;
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Damaged {
            name: name.to_owned(),
            detail: e.to_string(),
        })?;
        atomic::write_private(&dir, Path::new(STATE_FILE), &bytes)
            .map_err(|source| self.io(&dir_path.join(STATE_FILE), source))
    }

    /// Reads one version folder back.
    pub fn read_version(&self, name: &str, version: &str) -> Result<InstalledVersion, StoreError> {
        Self::check_name(name)?;
        check_version(version)?;
        let dir = self.dir.join(name).join(version);
        let damaged = |detail: String| StoreError::Damaged {
            name: name.to_owned(),
            detail,
        };
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest_text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| damaged(format!("{}: {e}", manifest_path.display())))?;
        let manifest = Manifest::parse(&manifest_path.display().to_string(), &manifest_text)
            .map_err(|e| damaged(e.to_string()))?;
        if manifest.name != name || manifest.version != version {
            return Err(damaged(format!(
                "{} describes {} {}, not {name} {version}",
                manifest_path.display(),
                manifest.name,
                manifest.version
            )));
        }
        let record_path = dir.join(INSTALL_FILE);
        let record: InstallRecord = std::fs::read(&record_path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| damaged(format!("{}: {e}", record_path.display())))?;
        let wasm_path = dir.join(WASM_FILE);
        if !wasm_path.is_file() {
            return Err(damaged(format!("{} is missing", wasm_path.display())));
        }
        Ok(InstalledVersion {
            manifest,
            manifest_text,
            wasm_path,
            manifest_path,
            record,
        })
    }

    /// One installed component.
    pub fn get(&self, name: &str) -> Result<InstalledComponent, StoreError> {
        let state = self
            .state(name)?
            .ok_or_else(|| StoreError::NotInstalled(name.to_owned()))?;
        Ok(InstalledComponent {
            active: self.read_version(name, &state.active)?,
            previous: state.previous,
        })
    }

    /// Every installed component; a damaged one is reported and skipped.
    pub fn list(&self) -> (Vec<InstalledComponent>, Vec<StoreError>) {
        let mut found = Vec::new();
        let mut problems = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (found, problems),
            Err(source) => return (found, vec![self.io(&self.dir, source)]),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            match self.get(&name) {
                Ok(component) => found.push(component),
                Err(StoreError::NotInstalled(_)) => {}
                Err(e) => problems.push(e),
            }
        }
        (found, problems)
    }

    /// Stores a verified version and makes it the active one.
    pub fn install(&self, new: NewVersion<'_>) -> Result<Activation, StoreError> {
        let name = &new.manifest.name;
        let version = &new.manifest.version;
        Self::check_name(name)?;
        check_version(version)?;
        let component_dir = self.dir.join(name);
        crate::store::private_dir::create(&component_dir)
            .map_err(|source| self.io(&component_dir, source))?;
        let state = self.state(name)?;
        let final_dir = component_dir.join(version);
        let already_installed = final_dir.exists();
        if already_installed {
            let existing = self.read_version(name, version)?;
            if existing.record.sha256 != new.record.sha256
                || existing.manifest_text != new.manifest_text
            {
                return Err(StoreError::VersionClash {
                    name: name.clone(),
                    version: version.clone(),
                });
            }
            let _ = std::fs::remove_file(new.wasm_file);
        } else {
            let staging = component_dir.join(format!(".staging-{version}"));
            if staging.exists() {
                std::fs::remove_dir_all(&staging).map_err(|source| self.io(&staging, source))?;
            }
            crate::store::private_dir::create(&staging)
                .map_err(|source| self.io(&staging, source))?;
            let dir =
                atomic::open_state_dir(&staging).map_err(|source| self.io(&staging, source))?;
            let record =
                serde_json::to_vec_pretty(&new.record).map_err(|e| StoreError::Damaged {
                    name: name.clone(),
                    detail: e.to_string(),
                })?;
            atomic::write_private(&dir, Path::new(MANIFEST_FILE), new.manifest_text.as_bytes())
                .and_then(|()| atomic::write_private(&dir, Path::new(INSTALL_FILE), &record))
                .map_err(|source| self.io(&staging, source))?;
            std::fs::rename(new.wasm_file, staging.join(WASM_FILE))
                .map_err(|source| self.io(new.wasm_file, source))?;
            sync_dir(&staging);
            std::fs::rename(&staging, &final_dir).map_err(|source| self.io(&final_dir, source))?;
            sync_dir(&component_dir);
        }
        self.raise_high_water(name, version)?;
        let replaced = state.as_ref().map(|s| s.active.clone());
        if replaced.as_deref() == Some(version.as_str()) {
            return Ok(Activation {
                replaced,
                already_installed,
            });
        }
        self.write_state(
            name,
            &VersionState {
                active: version.clone(),
                previous: replaced.clone(),
            },
        )?;
        self.prune(name);
        Ok(Activation {
            replaced,
            already_installed,
        })
    }

    /// Makes the previous version active again (and the current one the
    /// previous, so a rollback can itself be undone). Returns (from, to).
    pub fn rollback(&self, name: &str) -> Result<(String, String), StoreError> {
        let state = self
            .state(name)?
            .ok_or_else(|| StoreError::NotInstalled(name.to_owned()))?;
        let previous = state
            .previous
            .clone()
            .ok_or_else(|| StoreError::NoPrevious(name.to_owned()))?;
        self.read_version(name, &previous)?;
        self.write_state(
            name,
            &VersionState {
                active: previous.clone(),
                previous: Some(state.active.clone()),
            },
        )?;
        Ok((state.active, previous))
    }

    /// Removes every version of a component; returns the version that was
    /// active.
    pub fn remove(&self, name: &str) -> Result<String, StoreError> {
        let state = self
            .state(name)?
            .ok_or_else(|| StoreError::NotInstalled(name.to_owned()))?;
        let dir = self.dir.join(name);
        // Renamed first: whatever happens next, the component is gone in one
        // step, and a half-deleted folder is never mistaken for an install.
        let trash = self.dir.join(format!(".removed-{name}"));
        if trash.exists() {
            let _ = std::fs::remove_dir_all(&trash);
        }
        std::fs::rename(&dir, &trash).map_err(|source| self.io(&dir, source))?;
        sync_dir(&self.dir);
        if let Err(e) = std::fs::remove_dir_all(&trash) {
            tracing::warn!("cannot delete {}: {e}", trash.display());
        }
        Ok(state.active)
    }

    /// The newest version of each component this box ever installed.
    pub fn high_water_marks(&self) -> std::collections::BTreeMap<String, String> {
        std::fs::read(self.dir.join(HIGH_WATER_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// The newest version of `name` this box ever installed (removed since
    /// or not), if known.
    pub fn high_water(&self, name: &str) -> Option<String> {
        self.high_water_marks().remove(name)
    }

    /// Records `version` as installed: the high-water mark moves up only.
    fn raise_high_water(&self, name: &str, version: &str) -> Result<(), StoreError> {
        let mut all = self.high_water_marks();
        let newer = all
            .get(name)
            .is_none_or(|hw| crate::version_order::is_older(hw, version));
        if !newer {
            return Ok(());
        }
        all.insert(name.to_owned(), version.to_owned());
        let dir = atomic::open_state_dir(&self.dir).map_err(|source| self.io(&self.dir, source))?;
        let bytes = serde_json::to_vec_pretty(&all).map_err(|e| StoreError::Damaged {
            name: name.to_owned(),
            detail: e.to_string(),
        })?;
        atomic::write_private(&dir, Path::new(HIGH_WATER_FILE), &bytes)
            .map_err(|source| self.io(&self.dir.join(HIGH_WATER_FILE), source))
    }

    /// Removes what a power cut left of an install or a remove, which no
    /// state names and nothing else would ever delete: a finished download
    /// no install took (`.incoming/<name>-<version>.wasm`; an interrupted
    /// one, `.partial`, is kept to be resumed and swept after a week), a
    /// version folder being built (`.staging-<version>`), one renamed into
    /// place whose switch (`state.json`) was never written, a component
    /// being deleted (`.removed-<name>`). Returns what went. Only while no
    /// install or remove runs: at the agent's start, or under the software
    /// lock the management commands hold.
    pub fn sweep_interrupted(&self) -> Vec<PathBuf> {
        let mut gone = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return gone;
        };
        for entry in entries.flatten() {
            // Not followed: a link is never a folder here.
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let path = entry.path();
            if !is_dir {
                continue;
            }
            if name == ".incoming" {
                gone.extend(finished_downloads(&path));
            } else if name.starts_with(".removed-") {
                if std::fs::remove_dir_all(&path).is_ok() {
                    gone.push(path);
                }
            } else if Self::check_name(&name).is_ok() {
                gone.extend(self.sweep_component(&name));
            }
        }
        gone
    }

    /// [`ComponentStore::sweep_interrupted`] in one component's folder.
    fn sweep_component(&self, name: &str) -> Vec<PathBuf> {
        let named: Vec<String> = match self.state(name) {
            Ok(Some(state)) => std::iter::once(state.active)
                .chain(state.previous)
                .collect(),
            Ok(None) => Vec::new(),
            // Damaged: reported when listed; nothing is deleted on a guess.
            Err(_) => return Vec::new(),
        };
        let dir = self.dir.join(name);
        let mut gone = Vec::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return gone;
        };
        for entry in entries.flatten() {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let Some(n) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let left =
                n.starts_with(".staging-") || (check_version(&n).is_ok() && !named.contains(&n));
            if is_dir && left && std::fs::remove_dir_all(entry.path()).is_ok() {
                gone.push(entry.path());
            }
        }
        // A first install cut before its switch: the folder is empty now.
        if named.is_empty() && std::fs::remove_dir(&dir).is_ok() {
            gone.push(dir);
        }
        gone
    }

    /// Deletes versions other than the active and previous ones.
    fn prune(&self, name: &str) {
        let Ok(Some(state)) = self.state(name) else {
            return;
        };
        let dir = self.dir.join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(n) = file_name.to_str() else {
                continue;
            };
            let keep = n == STATE_FILE
                || n == state.active
                || state.previous.as_deref() == Some(n)
                || !entry.path().is_dir();
            if !keep && let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!("cannot delete old version {}: {e}", entry.path().display());
            }
        }
    }
}

/// The finished downloads in `incoming` (not the `.partial` ones), deleted.
fn finished_downloads(incoming: &Path) -> Vec<PathBuf> {
    let mut gone = Vec::new();
    let Ok(entries) = std::fs::read_dir(incoming) else {
        return gone;
    };
    for entry in entries.flatten() {
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        let finished = !entry.file_name().to_string_lossy().starts_with('.');
        if is_file && finished && std::fs::remove_file(entry.path()).is_ok() {
            gone.push(entry.path());
        }
    }
    gone
}

fn sync_dir(path: &Path) {
    if let Ok(d) = std::fs::File::open(path) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_text(version: &str) -> String {
        format!("name = \"hello\"\nversion = \"{version}\"\ncommands = [\"hello\"]\n")
    }

    fn install(
        store: &ComponentStore,
        version: &str,
        wasm: &[u8],
    ) -> Result<Activation, StoreError> {
        let text = manifest_text(version);
        let manifest = Manifest::parse("t", &text).map_err(|e| StoreError::Damaged {
            name: "hello".into(),
            detail: e.to_string(),
        })?;
        let incoming = store.incoming_dir()?.join("x.wasm");
        std::fs::write(&incoming, wasm).map_err(|source| StoreError::Io {
            path: incoming.clone(),
            source,
        })?;
        store.install(NewVersion {
            manifest: &manifest,
            manifest_text: &text,
            wasm_file: &incoming,
            record: InstallRecord {
                sha256: crate::store::hash::sha256_hex(wasm),
                signature: None,
                signer: None,
                url: None,
                installed_at: 1,
            },
        })
    }

    fn active(store: &ComponentStore) -> Option<(String, Option<String>)> {
        store
            .get("hello")
            .ok()
            .map(|c| (c.active.manifest.version, c.previous))
    }

    #[test]
    fn upgrade_keeps_one_previous_version_and_rollback_swaps() -> Result<(), StoreError> {
        let tmp = tempfile::tempdir().map_err(|source| StoreError::Io {
            path: PathBuf::new(),
            source,
        })?;
        let store = ComponentStore::new(tmp.path().join("components"));
        assert_eq!(install(&store, "1.0.0", b"one")?.replaced, None);
        assert_eq!(
            install(&store, "1.1.0", b"two")?.replaced.as_deref(),
            Some("1.0.0")
        );
        install(&store, "1.2.0", b"three")?;
        assert_eq!(active(&store), Some(("1.2.0".into(), Some("1.1.0".into()))));
        // 1.0.0 is neither active nor previous any more: deleted.
        assert!(!tmp.path().join("components/hello/1.0.0").exists());
        assert_eq!(
            store.rollback("hello")?,
            ("1.2.0".to_owned(), "1.1.0".to_owned())
        );
        assert_eq!(active(&store), Some(("1.1.0".into(), Some("1.2.0".into()))));
        let wasm = std::fs::read(store.get("hello")?.active.wasm_path).map_err(|source| {
            StoreError::Io {
                path: PathBuf::new(),
                source,
            }
        })?;
        assert_eq!(wasm, b"two");
        Ok(())
    }

    #[test]
    fn same_version_reinstalls_idempotently_but_never_with_other_bytes() -> Result<(), StoreError> {
        let tmp = tempfile::tempdir().map_err(|source| StoreError::Io {
            path: PathBuf::new(),
            source,
        })?;
        let store = ComponentStore::new(tmp.path().join("components"));
        install(&store, "1.0.0", b"one")?;
        let again = install(&store, "1.0.0", b"one")?;
        assert!(again.already_installed);
        assert!(matches!(
            install(&store, "1.0.0", b"other"),
            Err(StoreError::VersionClash { .. })
        ));
        assert_eq!(active(&store), Some(("1.0.0".into(), None)));
        assert!(matches!(
            store.rollback("hello"),
            Err(StoreError::NoPrevious(_))
        ));
        assert_eq!(store.remove("hello")?, "1.0.0");
        assert!(matches!(
            store.get("hello"),
            Err(StoreError::NotInstalled(_))
        ));
        assert!(store.list().0.is_empty());
        Ok(())
    }

    #[test]
    fn names_cannot_climb_out_of_the_store() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let store = ComponentStore::new(tmp.path().join("components"));
        std::fs::create_dir_all(tmp.path().join("components"))?;
        // What `remove_component {"name": ".."}` would have renamed away:
        // the whole state folder's neighbour, here a decoy with a state file.
        std::fs::create_dir_all(tmp.path().join("journal"))?;
        std::fs::write(
            tmp.path().join("journal/state.json"),
            r#"{"active":"1.0.0"}"#,
        )?;
        for bad in ["..", "../journal", "", ".", "a/b", "-x", "Hello"] {
            assert!(
                matches!(store.remove(bad), Err(StoreError::BadName(_))),
                "remove {bad:?}"
            );
            assert!(
                matches!(store.rollback(bad), Err(StoreError::BadName(_))),
                "rollback {bad:?}"
            );
            assert!(matches!(store.get(bad), Err(StoreError::BadName(_))));
        }
        assert!(tmp.path().join("journal/state.json").is_file());
        assert_eq!(
            StoreError::BadName("../journal".into()).to_string(),
            "'../journal' is not a component name: use 1-64 characters of a-z, 0-9 and '-'"
        );
        Ok(())
    }

    /// What a power cut leaves, made for real: an install cut while its
    /// download was being checked (the finished download in `.incoming`),
    /// while its version folder was built (`.staging-`), after the folder
    /// was renamed into place but before the switch, and a remove cut
    /// while its folder was deleted (`.removed-`): nothing removed them,
    /// ever. The power-cut rig's `no-orphans` looks for them after every
    /// `install_component` / `remove_component` cut.
    #[test]
    fn what_a_cut_leaves_of_an_install_or_a_remove_is_swept_and_the_active_version_stays()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let store = ComponentStore::new(tmp.path().join("components"));
        install(&store, "1.0.0", b"one")?;
        install(&store, "1.1.0", b"two")?;
        let root = tmp.path().join("components");
        let write = |rel: &str, bytes: &[u8]| -> std::io::Result<()> {
            let path = root.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, bytes)
        };
        write(".incoming/hello-1.2.0.wasm", b"downloaded")?;
        write(".incoming/.hello-1.3.0.wasm.partial", b"half")?;
        write("hello/.staging-1.3.0/manifest.toml", b"name")?;
        write("hello/1.4.0/component.wasm", b"four")?;
        write(".removed-other/1.0.0/component.wasm", b"\0\0")?;
        write("other-2/1.0.0/component.wasm", b"no state")?;
        let mut gone = store.sweep_interrupted();
        gone.sort();
        let rel: Vec<String> = gone
            .iter()
            .filter_map(|p| p.strip_prefix(&root).ok())
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            rel,
            [
                ".incoming/hello-1.2.0.wasm",
                ".removed-other",
                "hello/.staging-1.3.0",
                "hello/1.4.0",
                "other-2",
                "other-2/1.0.0",
            ]
        );
        // The interrupted download is kept to be resumed; the active and
        // previous versions are whole.
        assert!(root.join(".incoming/.hello-1.3.0.wasm.partial").is_file());
        assert_eq!(active(&store), Some(("1.1.0".into(), Some("1.0.0".into()))));
        assert_eq!(std::fs::read(store.get("hello")?.active.wasm_path)?, b"two");
        assert!(store.read_version("hello", "1.0.0").is_ok());
        assert!(store.sweep_interrupted().is_empty());
        Ok(())
    }

    #[test]
    fn versions_cannot_climb_out_of_their_folder() {
        for bad in ["..", "../x", "a/b", "", ".hidden"] {
            assert!(matches!(check_version(bad), Err(StoreError::BadVersion(_))));
        }
        assert!(check_version("1.2.3-rc.1+build5").is_ok());
    }

    #[test]
    fn the_high_water_mark_survives_remove_and_only_rises() -> Result<(), Box<dyn std::error::Error>>
    {
        let tmp = tempfile::tempdir()?;
        let store = ComponentStore::new(tmp.path().to_owned());
        assert_eq!(store.high_water("hello"), None);
        install(&store, "1.2.0", b"a")?;
        install(&store, "1.0.0", b"b")?;
        assert_eq!(store.high_water("hello").as_deref(), Some("1.2.0"));
        store.remove("hello")?;
        assert!(!tmp.path().join("hello").exists());
        assert_eq!(store.high_water("hello").as_deref(), Some("1.2.0"));
        // Never listed as a component.
        assert!(store.list().0.is_empty() && store.list().1.is_empty());
        install(&store, "1.3.0", b"c")?;
        assert_eq!(store.high_water("hello").as_deref(), Some("1.3.0"));
        Ok(())
    }
}
