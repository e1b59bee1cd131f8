//! From a command type to a finished outcome: allowlist, component lookup,
//! per-resource serialisation, and the sandboxed run on a blocking thread.

use crate::config::SiteConfig;
use crate::host::ProgressSink;
use crate::journal::Outcome;
use crate::registry::{ComponentSpec, Registry};
use crate::sandbox::{CommandRequest, LoadedComponent, Sandbox};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::Mutex;

/// Commands that touch the same thing never run at the same time; everything
/// else runs concurrently.
pub fn resource_of(command_type: &str) -> Option<&'static str> {
    match command_type {
        "deploy_video" | "delete_video" | "expire_videos" => Some("videos"),
        "update_config" | "update_settings" => Some("config"),
        "update_software" | "reboot" | "restart_service" | "install_component"
        | "remove_component" => Some("software"),
        "update_hotspot" => Some("network"),
        _ => None,
    }
}

/// Components loaded so far, by name.
type Loaded = Arc<std::sync::Mutex<BTreeMap<String, Arc<LoadedComponent>>>>;

/// Runs commands with the installed components. A component is loaded the
/// first time one of its commands runs (from the artifact cache, ~0.5 ms;
/// compiled otherwise) and kept: start-up stays instant and components that
/// never run cost no memory.
pub struct Dispatcher {
    sandbox: Arc<Sandbox>,
    by_command: BTreeMap<String, Arc<ComponentSpec>>,
    loaded: Loaded,
    allowed: BTreeSet<String>,
    locks: BTreeMap<&'static str, Arc<Mutex<()>>>,
}

/// The loaded component for `spec`, loading it on first use. Blocking.
fn load(
    sandbox: &Sandbox,
    loaded: &Loaded,
    spec: &ComponentSpec,
) -> Result<Arc<LoadedComponent>, String> {
    let mut map = match loaded.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(component) = map.get(&spec.manifest.name) {
        return Ok(component.clone());
    }
    let component = sandbox
        .load_file(&spec.wasm_path, spec.manifest.clone())
        .map(Arc::new)
        .map_err(|e| e.to_string())?;
    map.insert(spec.manifest.name.clone(), component.clone());
    Ok(component)
}

impl Dispatcher {
    pub fn new(config: &SiteConfig, registry: &Registry, sandbox: Arc<Sandbox>) -> Self {
        let mut by_command = BTreeMap::new();
        for spec in registry.components() {
            let spec = Arc::new(spec.clone());
            for command in &spec.manifest.commands {
                by_command.insert(command.clone(), spec.clone());
            }
        }
        let locks = ["videos", "config", "software", "network"]
            .into_iter()
            .map(|r| (r, Arc::new(Mutex::new(()))))
            .collect();
        Dispatcher {
            sandbox,
            by_command,
            loaded: Arc::default(),
            allowed: config.allowed_commands.iter().cloned().collect(),
            locks,
        }
    }

    /// What the components' host calls share (service manager, follow-ups).
    pub fn host_services(&self) -> &Arc<crate::host::HostServices> {
        self.sandbox.services()
    }

    /// Command types that can run here (allowed and with a component).
    pub fn runnable(&self) -> Vec<String> {
        self.by_command
            .keys()
            .filter(|t| self.allowed.contains(*t))
            .cloned()
            .collect()
    }

    /// Runs one of the agent's own jobs (e.g. `expire_videos`): no allowlist,
    /// nothing if no component handles it.
    pub async fn run_internal(&self, command_type: &str) -> Option<Outcome> {
        self.run_internal_with(command_type, &Value::Null).await
    }

    /// [`Dispatcher::run_internal`] with data (e.g. `{"resume": true}`).
    pub async fn run_internal_with(&self, command_type: &str, data: &Value) -> Option<Outcome> {
        let spec = self.by_command.get(command_type).cloned()?;
        Some(
            self.execute(spec, "internal", command_type, data, None)
                .await,
        )
    }

    /// Runs one command to its outcome. Never panics, never fails: every
    /// problem is an error outcome with the upstream wording where one exists.
    pub async fn run(
        &self,
        id: &str,
        command_type: &str,
        data: &Value,
        progress: Option<Arc<dyn ProgressSink>>,
    ) -> Outcome {
        if !self.allowed.contains(command_type) {
            return Outcome::Error {
                error: format!("Command type '{command_type}' is not allowed"),
            };
        }
        let Some(spec) = self.by_command.get(command_type).cloned() else {
            return Outcome::Error {
                error: format!("Unknown command type: {command_type}"),
            };
        };
        self.execute(spec, id, command_type, data, progress).await
    }

    async fn execute(
        &self,
        spec: Arc<ComponentSpec>,
        id: &str,
        command_type: &str,
        data: &Value,
        progress: Option<Arc<dyn ProgressSink>>,
    ) -> Outcome {
        let _guard = match resource_of(command_type).and_then(|r| self.locks.get(r)) {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let data = if data.is_null() {
            "{}".to_owned()
        } else {
            data.to_string()
        };
        let request = CommandRequest {
            id: id.to_owned(),
            command_type: command_type.to_owned(),
            data,
        };
        let sandbox = self.sandbox.clone();
        let loaded = self.loaded.clone();
        let run = tokio::task::spawn_blocking(move || {
            let component = load(&sandbox, &loaded, &spec).map_err(|e| {
                crate::host::WitError::Failed(format!(
                    "component {} cannot be loaded: {e}",
                    spec.manifest.name
                ))
            })?;
            sandbox.execute(&component, &request, progress)
        });
        match run.await {
            Ok(Ok(json)) => match serde_json::from_str(&json) {
                Ok(result) => Outcome::Success { result },
                Err(e) => Outcome::Error {
                    error: format!("the component returned invalid JSON: {e}"),
                },
            },
            Ok(Err(error)) => Outcome::Error {
                error: error.message().to_owned(),
            },
            Err(e) => Outcome::Error {
                error: format!("the command could not finish: {e}"),
            },
        }
    }
}
