//! Which component handles which command type: built-in components are
//! `<name>.wasm` + `<name>.toml` pairs in the components folder; components
//! pushed by the server (see [`crate::pushed`]) are laid over them.

use crate::config::SiteConfig;
use crate::manifest::{Manifest, ManifestError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where built-in components are installed by the package.
pub const SYSTEM_COMPONENTS_DIR: &str = "/usr/lib/neopro-runtime/components";

/// Folder of the components folder holding the artifacts the package
/// precompiled for its target (`<wasm sha256>-<target>-<engine hash>.cwasm`
/// and its `.sha256`; see `sandbox::packaged_artifact`).
pub const PACKAGED_ARTIFACTS: &str = "precompiled";

/// A component found on disk.
#[derive(Debug, Clone)]
pub struct ComponentSpec {
    pub manifest: Manifest,
    pub wasm_path: PathBuf,
    pub manifest_path: PathBuf,
    pub origin: Origin,
}

/// Where a component came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Shipped with the agent.
    BuiltIn,
    /// Installed by `install_component`; its wasm must still hash to
    /// `sha256` when it is loaded (a damaged file is refused, not run).
    Pushed { sha256: String },
}

/// A problem with one component; the others still load.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot list the components folder {path}: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{manifest} has no component next to it (expected {wasm})")]
    MissingWasm { manifest: PathBuf, wasm: PathBuf },
    #[error("{wasm} has no manifest next to it (expected {manifest})")]
    MissingManifest { wasm: PathBuf, manifest: PathBuf },
    #[error("component '{name}' in {path} is also defined in {other}; keeping the first")]
    DuplicateName {
        name: String,
        path: PathBuf,
        other: PathBuf,
    },
    #[error("command '{command}' is claimed by both '{first}' and '{second}'; '{first}' keeps it")]
    DuplicateCommand {
        command: String,
        first: String,
        second: String,
    },
}

/// The components folder: `COMPONENTS_PATH`, else `components/` next to
/// the binary, else the system folder.
pub fn components_dir(config: &SiteConfig) -> PathBuf {
    if let Some(p) = &config.components_path {
        return p.clone();
    }
    if let Some(beside) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("components")))
        .filter(|d| d.is_dir())
    {
        return beside;
    }
    PathBuf::from(SYSTEM_COMPONENTS_DIR)
}

/// Reads the manifest that sits next to a `.wasm` file.
pub fn spec_for_wasm(wasm: &Path) -> Result<ComponentSpec, RegistryError> {
    let manifest_path = manifest_for_wasm(wasm);
    if !manifest_path.is_file() {
        return Err(RegistryError::MissingManifest {
            wasm: wasm.to_owned(),
            manifest: manifest_path,
        });
    }
    let manifest = Manifest::from_file(&manifest_path)?;
    Ok(ComponentSpec {
        manifest,
        wasm_path: wasm.to_owned(),
        manifest_path,
        origin: Origin::BuiltIn,
    })
}

/// The manifest of a `.wasm` given by path: `<stem>.toml` beside it, else
/// the same name with '-' for '_' (cargo names the library `video_stats`,
/// the component is `video-stats`), else, for a wasm cargo just built
/// (`<crate>/target/<triple>/<profile>/x.wasm`), the crate's own
/// `<crate>/<name>.toml`, so the built file needs no renaming. When none
/// exists, the first, for the error message.
pub fn manifest_for_wasm(wasm: &Path) -> PathBuf {
    let beside = wasm.with_extension("toml");
    let Some(stem) = wasm.file_stem().and_then(|s| s.to_str()) else {
        return beside;
    };
    let hyphenated = format!("{}.toml", stem.replace('_', "-"));
    let mut candidates = vec![beside.clone(), wasm.with_file_name(&hyphenated)];
    let cargo_crate = wasm
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .filter(|target| target.file_name().is_some_and(|n| n == "target"))
        .and_then(Path::parent);
    if let Some(krate) = cargo_crate.filter(|c| c.join("Cargo.toml").is_file()) {
        candidates.push(krate.join(&hyphenated));
    }
    candidates
        .into_iter()
        .find(|c| c.is_file())
        .unwrap_or(beside)
}

/// The components of one folder, by name and by command type.
#[derive(Debug, Default)]
pub struct Registry {
    by_name: BTreeMap<String, ComponentSpec>,
    by_command: BTreeMap<String, String>,
}

impl Registry {
    /// Scans a folder. A folder that does not exist is an empty registry; a
    /// broken component is reported and skipped so the others still work.
    pub fn scan(dir: &Path) -> Result<(Self, Vec<RegistryError>), RegistryError> {
        let mut registry = Registry::default();
        let mut problems = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((registry, problems)),
            Err(source) => {
                return Err(RegistryError::ReadDir {
                    path: dir.to_owned(),
                    source,
                });
            }
        };
        let mut manifests: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        manifests.sort();
        for manifest_path in manifests {
            let wasm_path = manifest_path.with_extension("wasm");
            if !wasm_path.is_file() {
                problems.push(RegistryError::MissingWasm {
                    manifest: manifest_path,
                    wasm: wasm_path,
                });
                continue;
            }
            match Manifest::from_file(&manifest_path) {
                Ok(manifest) => {
                    if let Some(problem) = registry.insert(ComponentSpec {
                        manifest,
                        wasm_path,
                        manifest_path,
                        origin: Origin::BuiltIn,
                    }) {
                        problems.push(problem);
                    }
                }
                Err(e) => problems.push(e.into()),
            }
        }
        Ok((registry, problems))
    }

    /// A component of that name is already there: the first one stays.
    fn name_taken(&self, spec: &ComponentSpec) -> Option<RegistryError> {
        let existing = self.by_name.get(&spec.manifest.name)?;
        Some(RegistryError::DuplicateName {
            name: spec.manifest.name.clone(),
            path: spec.manifest_path.clone(),
            other: existing.manifest_path.clone(),
        })
    }

    fn insert(&mut self, spec: ComponentSpec) -> Option<RegistryError> {
        if let Some(taken) = self.name_taken(&spec) {
            return Some(taken);
        }
        let name = spec.manifest.name.clone();
        let mut problem = None;
        for command in &spec.manifest.commands {
            match self.by_command.get(command) {
                Some(first) => {
                    problem = Some(RegistryError::DuplicateCommand {
                        command: command.clone(),
                        first: first.clone(),
                        second: name.clone(),
                    })
                }
                None => {
                    self.by_command.insert(command.clone(), name.clone());
                }
            }
        }
        self.by_name.insert(name, spec);
        problem
    }

    /// Lays a pushed component over the built-in ones: it takes the command
    /// types it claims (the caller has checked the site policy allows it).
    /// A name already used by a built-in component is refused.
    pub fn overlay(&mut self, spec: ComponentSpec) -> Option<RegistryError> {
        if let Some(taken) = self.name_taken(&spec) {
            return Some(taken);
        }
        let name = spec.manifest.name.clone();
        for command in &spec.manifest.commands {
            self.by_command.insert(command.clone(), name.clone());
        }
        self.by_name.insert(name, spec);
        // A built-in that lost all its command types stays listed by name
        // (for `components`) but handles nothing.
        None
    }

    /// The component that handles a command type.
    pub fn for_command(&self, command_type: &str) -> Option<&ComponentSpec> {
        self.by_name.get(self.by_command.get(command_type)?)
    }

    /// A component by name.
    pub fn by_name(&self, name: &str) -> Option<&ComponentSpec> {
        self.by_name.get(name)
    }

    /// All components, sorted by name.
    pub fn components(&self) -> impl Iterator<Item = &ComponentSpec> {
        self.by_name.values()
    }
}
