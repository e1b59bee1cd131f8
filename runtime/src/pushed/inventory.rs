//! What a box has installed, as far as an install decision goes: its
//! pushed components (version, command types, hash), its built-in ones,
//! and the newest version of each component it ever installed. Read from
//! the box's own store (on the box, or where its STATE_PATH is), or from
//! the result of `list_components` on that box: so `component check` on an
//! author's machine refuses the downgrade or command clash the box would.

use crate::sandbox::registry::Registry;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest `list_components` result read (a box lists a few dozen
/// components; this bounds a wrong file).
const MAX_LIST_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read the list_components result {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_LIST_BYTES} bytes: not a list_components result")]
    TooLarge { path: PathBuf },
    #[error(
        "{path} is not a list_components result (the JSON the box answered, with \"components\"): {detail}"
    )]
    Malformed { path: PathBuf, detail: String },
}

/// A pushed component installed on the box.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstalledVersion {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub previous_version: Option<String>,
    #[serde(default)]
    pub commands: Vec<String>,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// A built-in component of the box.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BuiltinEntry {
    pub name: String,
    #[serde(default)]
    pub commands: Vec<String>,
}

/// The box's installed components and high-water marks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub components: Vec<InstalledVersion>,
    pub builtin: Vec<BuiltinEntry>,
    /// The newest version of each component ever installed (kept when it
    /// is removed).
    pub high_water: BTreeMap<String, String>,
    /// Where this was read from, for the report.
    pub source: String,
}

/// `list_components`'s result, as the box answers it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListResult {
    components: Vec<InstalledVersion>,
    #[serde(default)]
    builtin: Vec<BuiltinEntry>,
    #[serde(default)]
    high_water: Option<BTreeMap<String, String>>,
}

impl Inventory {
    /// From the box's store and built-in registry.
    pub fn from_store(
        store: &super::store::ComponentStore,
        builtins: &Registry,
        source: String,
    ) -> Self {
        let (installed, _) = store.list();
        Inventory {
            components: installed
                .iter()
                .map(|c| InstalledVersion {
                    name: c.active.manifest.name.clone(),
                    version: c.active.manifest.version.clone(),
                    previous_version: c.previous.clone(),
                    commands: c.active.manifest.commands.clone(),
                    sha256: Some(c.active.record.sha256.clone()),
                })
                .collect(),
            builtin: builtins
                .components()
                .map(|s| BuiltinEntry {
                    name: s.manifest.name.clone(),
                    commands: s.manifest.commands.clone(),
                })
                .collect(),
            high_water: store.high_water_marks(),
            source,
        }
    }

    /// From a file holding the box's `list_components` result: the result
    /// object itself, or a command record with it under `"result"` (as the
    /// central server stores it). A result of an older agent has no
    /// `highWater`: the installed versions stand in for it.
    pub fn from_list_file(path: &Path) -> Result<Self, InventoryError> {
        let file = std::fs::File::open(path).map_err(|source| InventoryError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut bytes = Vec::new();
        file.take(MAX_LIST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| InventoryError::Read {
                path: path.to_owned(),
                source,
            })?;
        if bytes.len() as u64 > MAX_LIST_BYTES {
            return Err(InventoryError::TooLarge {
                path: path.to_owned(),
            });
        }
        let malformed = |detail: String| InventoryError::Malformed {
            path: path.to_owned(),
            detail,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
        let value = match value.get("result") {
            Some(inner) if value.get("components").is_none() => inner.clone(),
            _ => value,
        };
        let list: ListResult =
            serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
        let high_water = list.high_water.unwrap_or_else(|| {
            list.components
                .iter()
                .map(|c| (c.name.clone(), c.version.clone()))
                .collect()
        });
        Ok(Inventory {
            components: list.components,
            builtin: list.builtin,
            high_water,
            source: format!("the list_components result {}", path.display()),
        })
    }

    pub fn installed(&self, name: &str) -> Option<&InstalledVersion> {
        self.components.iter().find(|c| c.name == name)
    }

    pub fn builtin_named(&self, name: &str) -> bool {
        self.builtin.iter().any(|b| b.name == name)
    }

    pub fn builtin_for(&self, command: &str) -> bool {
        self.builtin
            .iter()
            .any(|b| b.commands.iter().any(|c| c == command))
    }
}
