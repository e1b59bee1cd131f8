//! Commands the central server pushes to a box as components:
//! `install_component`, `remove_component`, `list_components`,
//! `rollback_component`. These four are native (they change what the
//! sandbox may run, so no component may implement them).
//!
//! An install is refused, with nothing changed, unless every step passes, in
//! this order: the parameters and the manifest agree; the site policy exists
//! and bounds the manifest's grants and limits; the signature verifies
//! against `TRUSTED_COMPONENT_KEYS` (or the policy allows unsigned); the
//! command types are free (or the policy lets this one replace a built-in)
//! and allowed; the download matches its sha256; the file is a component of
//! our `command` world that links against this agent; it precompiles into
//! the cache. Then it is stored and activated atomically ([`store`]).
//!
//! Allowlist: `ALLOWED_COMMANDS` still bounds what the server may run. A
//! pushed component's command types run only if listed there, or if the
//! policy sets `extend-allowlist = true`. The four management commands are
//! available only when a site policy exists, and, when `ALLOWED_COMMANDS` is
//! set in site.conf, only if listed there too.

pub mod check;
mod error;
pub mod inventory;
pub mod policy;
pub mod store;

pub use error::PushedError;

use crate::config::SiteConfig;
use crate::sandbox::registry::{self, ComponentSpec, Origin, Registry};
use crate::sandbox::{Sandbox, SandboxError};
use crate::signing::components as signing;
use inventory::Inventory;
use policy::Policy;
use serde::Deserialize;
use serde_json::{Value, json};
use signing::PublicKey;
use std::collections::BTreeSet;
use store::{ComponentStore, InstallRecord, NewVersion};

/// The native component-management commands.
pub const MANAGEMENT_COMMANDS: [&str; 4] = [
    "install_component",
    "remove_component",
    "list_components",
    "rollback_component",
];

/// Largest pushed component accepted (further bounded by MAX_DOWNLOAD_SIZE).
const MAX_COMPONENT_BYTES: u64 = 32 << 20;
/// Longest an install may spend downloading (it holds the software lock).
const DOWNLOAD_BUDGET: std::time::Duration = std::time::Duration::from_secs(600);

/// The resource a management command is serialised on: install, remove and
/// rollback change what runs on the box, so they wait for (and hold up)
/// software updates, reboots and restarts; listing touches nothing.
pub fn management_resource(command_type: &str) -> Option<crate::sandbox::manifest::Resource> {
    (command_type != "list_components").then_some(crate::sandbox::manifest::Resource::Software)
}

pub fn is_management(command_type: &str) -> bool {
    MANAGEMENT_COMMANDS.contains(&command_type)
}

/// The installed components laid over the built-in ones, as the current
/// policy allows; plus the policy, if there is a usable one, and the
/// problems worth a warning.
pub fn overlay(config: &SiteConfig, registry: &mut Registry) -> (Option<Policy>, Vec<String>) {
    let mut problems = Vec::new();
    let policy = match Policy::load(&config.component_policy_path) {
        Ok(policy) => Some(policy),
        Err(policy::PolicyError::Missing(_)) => None,
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let keys = match trusted_keys(config) {
        Ok(keys) => keys,
        Err(e) => {
            // Fail closed: signed components are not loaded until the key
            // list is fixed.
            problems.push(e.to_string());
            Vec::new()
        }
    };
    let store = ComponentStore::new(config.pushed_components_dir());
    let (installed, store_problems) = store.list();
    problems.extend(store_problems.iter().map(ToString::to_string));
    for component in installed {
        let active = component.active;
        let name = active.manifest.name.clone();
        let Some(policy) = &policy else {
            problems.push(format!(
                "pushed component '{name}' not loaded: no usable site policy at {}",
                config.component_policy_path.display()
            ));
            continue;
        };
        // The site may have tightened its policy or withdrawn a key since
        // the install: what no longer passes is not loaded.
        let fits = still_acceptable(policy, &keys, &active).and_then(|()| {
            active
                .manifest
                .commands
                .iter()
                .filter(|c| registry.for_command(c).is_some())
                .try_for_each(|c| policy.check_replacement(&name, c).map_err(Into::into))
        });
        if let Err(e) = fits {
            problems.push(format!("pushed component '{name}' not loaded: {e}"));
            continue;
        }
        let spec = ComponentSpec {
            manifest: active.manifest,
            wasm_path: active.wasm_path,
            manifest_path: active.manifest_path,
            origin: Origin::Pushed {
                sha256: active.record.sha256,
            },
        };
        if let Some(problem) = registry.overlay(spec) {
            problems.push(format!("pushed component '{name}' not loaded: {problem}"));
        }
    }
    (policy, problems)
}

/// The keys of `TRUSTED_COMPONENT_KEYS`.
fn trusted_keys(config: &SiteConfig) -> Result<Vec<PublicKey>, PushedError> {
    config
        .trusted_component_keys
        .iter()
        .map(|k| PublicKey::parse(k).map_err(PushedError::TrustedKeys))
        .collect()
}

/// No pushed component may claim a management command: they are native and
/// an allowlist extension must never re-enable them.
fn check_not_management(name: &str, commands: &[String]) -> Result<(), PushedError> {
    match commands.iter().find(|c| is_management(c)) {
        Some(command) => Err(PushedError::ReservedCommand {
            name: name.to_owned(),
            command: command.clone(),
        }),
        None => Ok(()),
    }
}

/// The bytes are a WebAssembly component, not a core module or no
/// WebAssembly at all.
/// What a box with `installed` refuses about the version of `manifest`, in
/// the order install checks it: older than the installed version, older
/// than the newest ever installed (unless the policy allows downgrades);
/// and, when the component's `sha256` is given, the installed version
/// number with other bytes (the store refuses that once downloaded).
fn version_problems(
    policy: &Policy,
    manifest: &crate::sandbox::manifest::Manifest,
    sha256: Option<&str>,
    installed: &Inventory,
) -> Vec<PushedError> {
    use crate::agent::version_order::is_older;
    let mut problems = Vec::new();
    let current = installed.installed(&manifest.name);
    if !policy.allow_downgrade {
        // One refusal: the high-water mark is named when it is above the
        // installed version (or nothing is installed).
        if let Some(current) = current
            && is_older(&manifest.version, &current.version)
        {
            problems.push(
                policy::PolicyError::Downgrade {
                    name: manifest.name.clone(),
                    version: manifest.version.clone(),
                    installed: current.version.clone(),
                    path: policy.path.clone(),
                }
                .into(),
            );
        } else if let Some(highest) = installed.high_water.get(&manifest.name)
            && is_older(&manifest.version, highest)
        {
            problems.push(
                policy::PolicyError::BelowHighWater {
                    name: manifest.name.clone(),
                    version: manifest.version.clone(),
                    highest: highest.clone(),
                    path: policy.path.clone(),
                }
                .into(),
            );
        }
    }
    if let (Some(sha256), Some(current)) = (sha256, current)
        && current.version == manifest.version
        && current
            .sha256
            .as_deref()
            .is_some_and(|installed| !installed.eq_ignore_ascii_case(sha256))
    {
        problems.push(
            store::StoreError::VersionClash {
                name: manifest.name.clone(),
                version: manifest.version.clone(),
            }
            .into(),
        );
    }
    problems
}

fn check_is_component(name: &str, bytes: &[u8]) -> Result<(), PushedError> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', _, _, 0, 0]) => Err(PushedError::NotAComponent {
            name: name.to_owned(),
            detail: "it is a core WebAssembly module; build it as a component for wasm32-wasip2 with the guest SDK (see the README, \"Write and push your own command\")".to_owned(),
        }),
        Some([0, b'a', b's', b'm', ..]) => Ok(()),
        _ => Err(PushedError::NotAComponent {
            name: name.to_owned(),
            detail: "the file is not WebAssembly at all".to_owned(),
        }),
    }
}

/// Signature (or the policy's leave to go unsigned), reserved names and
/// grants of an installed version, against today's policy and keys.
fn still_acceptable(
    policy: &Policy,
    keys: &[PublicKey],
    version: &store::InstalledVersion,
) -> Result<(), PushedError> {
    let name = &version.manifest.name;
    check_not_management(name, &version.manifest.commands)?;
    policy.check_manifest(&version.manifest)?;
    match &version.record.signature {
        Some(signature) => {
            signing::verify(
                keys,
                &version.record.sha256,
                &version.manifest_text,
                signature,
            )?;
        }
        None => policy.check_signed(name, false)?,
    }
    Ok(())
}

/// The command types the server may run, given the components and policy.
pub fn allowed_commands(
    config: &SiteConfig,
    registry: &Registry,
    policy: Option<&Policy>,
) -> BTreeSet<String> {
    let mut allowed: BTreeSet<String> = config.allowed_commands.iter().cloned().collect();
    // A policy file that exists but does not parse still enables the
    // management commands, so that they answer with the parse error instead
    // of a bare "not allowed".
    if (policy.is_some() || config.component_policy_path.is_file()) && !config.allowed_commands_set
    {
        allowed.extend(MANAGEMENT_COMMANDS.iter().map(|c| (*c).to_owned()));
    }
    if policy.is_some_and(|p| p.extend_allowlist) {
        for spec in registry.components() {
            if matches!(spec.origin, Origin::Pushed { .. }) {
                allowed.extend(spec.manifest.commands.iter().cloned());
            }
        }
    }
    allowed
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallParams {
    name: String,
    version: String,
    url: String,
    sha256: String,
    #[serde(default)]
    signature: Option<String>,
    /// The manifest's TOML text, exactly as signed.
    manifest: String,
}

#[derive(Debug, Deserialize)]
struct NameParams {
    name: String,
}

fn params<T: serde::de::DeserializeOwned>(
    command: &'static str,
    data: &Value,
) -> Result<T, PushedError> {
    serde_json::from_value(data.clone()).map_err(|e| PushedError::InvalidInput {
        command,
        detail: e.to_string(),
    })
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// What the management commands need from site.conf.
#[derive(Debug, Clone)]
pub struct Manager {
    config: SiteConfig,
    store: ComponentStore,
}

impl Manager {
    pub fn new(config: &SiteConfig) -> Self {
        Manager {
            config: config.clone(),
            store: ComponentStore::new(config.pushed_components_dir()),
        }
    }

    /// Runs one management command. Blocking (downloads and compiles).
    pub fn execute(
        &self,
        sandbox: &Sandbox,
        command_type: &str,
        data: &Value,
    ) -> Result<Value, PushedError> {
        match command_type {
            "install_component" => self.install(sandbox, params("install_component", data)?),
            "remove_component" => {
                let NameParams { name } = params("remove_component", data)?;
                let version = self.store.remove(&name)?;
                tracing::info!("pushed component {name} {version} removed");
                Ok(json!({"success": true, "name": name, "removedVersion": version}))
            }
            "rollback_component" => {
                let NameParams { name } = params("rollback_component", data)?;
                let policy = self.policy()?;
                // The previous version must pass today's checks, as a new
                // install would, before it is made active again.
                let component = self.store.get(&name)?;
                let previous = component
                    .previous
                    .ok_or_else(|| store::StoreError::NoPrevious(name.clone()))?;
                let version = self.store.read_version(&name, &previous)?;
                still_acceptable(&policy, &self.trusted_keys()?, &version)?;
                self.check_commands(&policy, &version.manifest)?;
                let (from, to) = self.store.rollback(&name)?;
                tracing::info!("pushed component {name} rolled back from {from} to {to}");
                Ok(json!({"success": true, "name": name, "version": to, "previousVersion": from}))
            }
            _ => Ok(self.list()),
        }
    }

    fn policy(&self) -> Result<Policy, PushedError> {
        Ok(Policy::load(&self.config.component_policy_path)?)
    }

    fn trusted_keys(&self) -> Result<Vec<PublicKey>, PushedError> {
        trusted_keys(&self.config)
    }

    /// The command types are not reserved, free to take (or the policy lets
    /// this one replace a built-in), and allowed to run.
    fn check_commands(
        &self,
        policy: &Policy,
        manifest: &crate::sandbox::manifest::Manifest,
    ) -> Result<(), PushedError> {
        match self
            .command_problems(policy, manifest, &self.inventory())
            .into_iter()
            .next()
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// What this box has installed: its store and built-in components.
    fn inventory(&self) -> Inventory {
        Inventory::from_store(
            &self.store,
            &self.builtins(),
            format!(
                "{} (this machine)",
                self.config.pushed_components_dir().display()
            ),
        )
    }

    /// Whether this machine holds a component store to read (on a box; an
    /// author's copy of a box's site.conf usually points elsewhere).
    fn has_store(&self) -> bool {
        self.config.pushed_components_dir().is_dir()
    }

    /// Everything [`Manager::check_commands`] would refuse on a box with
    /// `installed`, in its order.
    fn command_problems(
        &self,
        policy: &Policy,
        manifest: &crate::sandbox::manifest::Manifest,
        installed: &Inventory,
    ) -> Vec<PushedError> {
        let mut problems = Vec::new();
        if let Err(e) = check_not_management(&manifest.name, &manifest.commands) {
            problems.push(e);
        }
        if installed.builtin_named(&manifest.name) {
            problems.push(PushedError::BuiltInName(manifest.name.clone()));
        }
        for command in &manifest.commands {
            if installed.builtin_for(command)
                && let Err(e) = policy.check_replacement(&manifest.name, command)
            {
                problems.push(e.into());
            }
            if let Some(other) = installed
                .components
                .iter()
                .find(|c| c.name != manifest.name && c.commands.contains(command))
            {
                problems.push(PushedError::CommandTaken {
                    name: manifest.name.clone(),
                    command: command.clone(),
                    other: other.name.clone(),
                });
            }
            if !policy.extend_allowlist && !self.config.allowed_commands.contains(command) {
                problems.push(PushedError::CommandNotAllowed {
                    name: manifest.name.clone(),
                    command: command.clone(),
                    policy: policy.path.display().to_string(),
                });
            }
        }
        problems
    }

    /// Signed by a trusted key (the signer's id), or unsigned where the
    /// policy allows it (`None`).
    fn check_signature(
        &self,
        policy: &Policy,
        name: &str,
        sha256: &str,
        manifest_text: &str,
        signature: Option<&str>,
    ) -> Result<Option<String>, PushedError> {
        match signature.filter(|s| !s.trim().is_empty()) {
            Some(signature) => {
                let keys = self.trusted_keys()?;
                if keys.is_empty() {
                    return Err(PushedError::NoTrustedKeys {
                        name: name.to_owned(),
                    });
                }
                Ok(Some(signing::verify(
                    &keys,
                    sha256,
                    manifest_text,
                    signature,
                )?))
            }
            None => {
                policy.check_signed(name, false)?;
                Ok(None)
            }
        }
    }

    fn builtins(&self) -> Registry {
        match Registry::scan(&registry::components_dir(&self.config)) {
            Ok((registry, _)) => registry,
            Err(e) => {
                tracing::warn!("{e}");
                Registry::default()
            }
        }
    }

    fn install(&self, sandbox: &Sandbox, p: InstallParams) -> Result<Value, PushedError> {
        // 1. The manifest is the one the parameters describe.
        let manifest = crate::sandbox::manifest::Manifest::parse("the manifest", &p.manifest)
            .map_err(|e| PushedError::InvalidInput {
                command: "install_component",
                detail: e.to_string(),
            })?;
        for (field, in_manifest, in_params) in [
            ("name", &manifest.name, &p.name),
            ("version", &manifest.version, &p.version),
        ] {
            if in_manifest != in_params {
                return Err(PushedError::Mismatch {
                    field,
                    manifest: in_manifest.clone(),
                    params: in_params.clone(),
                });
            }
        }
        let sha256 = crate::host::download::normalise_sha256(&p.sha256).map_err(|e| {
            PushedError::InvalidInput {
                command: "install_component",
                detail: e.message().to_owned(),
            }
        })?;
        // 2. The site allows what it asks for, and no silent downgrade.
        let policy = self.policy()?;
        policy.check_manifest(&manifest)?;
        if let Some(e) = version_problems(&policy, &manifest, None, &self.inventory())
            .into_iter()
            .next()
        {
            return Err(e);
        }
        // 3. Signed by a trusted key (checked against the announced hash
        //    before downloading anything; the download must then match it).
        let signer = self.check_signature(
            &policy,
            &manifest.name,
            &sha256,
            &p.manifest,
            p.signature.as_deref(),
        )?;
        // 4. Its command types are free to take and allowed to run.
        self.check_commands(&policy, &manifest)?;
        // 5. Download, verified against the sha256.
        let incoming = self.store.incoming_dir()?;
        let file_name = format!("{}-{}.wasm", manifest.name, manifest.version);
        let limit = MAX_COMPONENT_BYTES.min(self.config.max_download_size);
        crate::host::download::download_file(
            &p.url,
            &incoming,
            &file_name,
            limit,
            &sha256,
            DOWNLOAD_BUDGET,
        )
        .map_err(|e| PushedError::Download {
            name: manifest.name.clone(),
            detail: e.message().to_owned(),
        })?;
        let wasm_file = incoming.join(&file_name);
        let checked = self.check_component(sandbox, &policy, &wasm_file, &manifest);
        if let Err(e) = checked {
            let _ = std::fs::remove_file(&wasm_file);
            return Err(e);
        }
        // 6. Stored and activated in one step.
        let activation = self.store.install(NewVersion {
            manifest: &manifest,
            manifest_text: &p.manifest,
            wasm_file: &wasm_file,
            record: InstallRecord {
                sha256: sha256.clone(),
                signature: p.signature.clone(),
                signer: signer.clone(),
                url: Some(p.url.clone()),
                installed_at: now_millis(),
            },
        });
        let activation = match activation {
            Ok(a) => a,
            Err(e) => {
                let _ = std::fs::remove_file(&wasm_file);
                return Err(e.into());
            }
        };
        tracing::info!(
            "pushed component {} {} installed ({}), handles {}",
            manifest.name,
            manifest.version,
            signer
                .as_deref()
                .map(|k| format!("signed by {k}"))
                .unwrap_or_else(|| "unsigned".to_owned()),
            manifest.commands.join(", ")
        );
        Ok(json!({
            "success": true,
            "name": manifest.name,
            "version": manifest.version,
            "previousVersion": activation.replaced,
            "alreadyInstalled": activation.already_installed,
            "commands": manifest.commands,
            "sha256": sha256,
            "signer": signer,
        }))
    }

    /// The file is a component of our world that links against this agent
    /// and compiles within the site's memory budget; loading it also leaves
    /// its precompiled artifact in the cache.
    fn check_component(
        &self,
        sandbox: &Sandbox,
        policy: &Policy,
        wasm_file: &std::path::Path,
        manifest: &crate::sandbox::manifest::Manifest,
    ) -> Result<(), PushedError> {
        let name = manifest.name.clone();
        let bytes = std::fs::read(wasm_file).map_err(|e| PushedError::Download {
            name: name.clone(),
            detail: e.to_string(),
        })?;
        check_is_component(&name, &bytes)?;
        policy.check_compile_size(&name, bytes.len() as u64)?;
        match sandbox.load(&bytes, manifest.clone()) {
            Ok(_) => Ok(()),
            Err(SandboxError::InvalidComponent { detail, .. }) => {
                Err(PushedError::NotAComponent { name, detail })
            }
            Err(e) => Err(PushedError::Incompatible(e.to_string())),
        }
    }

    fn list(&self) -> Value {
        let (installed, problems) = self.store.list();
        // What `component check --installed` reads to refuse a downgrade
        // below a removed component's newest version, as install does.
        let high_water = self.store.high_water_marks();
        let components: Vec<Value> = installed
            .iter()
            .map(|c| {
                let m = &c.active.manifest;
                json!({
                    "name": m.name,
                    "version": m.version,
                    "previousVersion": c.previous,
                    "commands": m.commands,
                    "grants": m.grant_summary(),
                    "sha256": c.active.record.sha256,
                    "signer": c.active.record.signer,
                    "installedAt": c.active.record.installed_at,
                })
            })
            .collect();
        let builtin: Vec<Value> = self
            .builtins()
            .components()
            .map(|s| {
                json!({
                    "name": s.manifest.name,
                    "version": s.manifest.version,
                    "commands": s.manifest.commands,
                })
            })
            .collect();
        json!({
            "success": true,
            "components": components,
            "builtin": builtin,
            "highWater": high_water,
            "problems": problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "policy": self.config.component_policy_path.is_file()
                .then(|| self.config.component_policy_path.display().to_string()),
        })
    }
}
