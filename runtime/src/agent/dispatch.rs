//! From a command type to a finished outcome: allowlist, component lookup,
//! per-resource serialisation, and the sandboxed run on a blocking thread.
//!
//! The command table (which component handles what, what is allowed) is
//! rebuilt after every successful install, removal or rollback of a pushed
//! component. A command takes the table's entry when it starts and keeps it:
//! commands in flight finish on the version they started with.

use crate::agent::loaded_components::LoadedComponents;
use crate::config::SiteConfig;
use crate::host::ProgressSink;
use crate::journal::Outcome;
use crate::manifest::Resource;
use crate::pushed;
use crate::sandbox::registry::{self, ComponentSpec, Origin, Registry};
use crate::sandbox::{CommandRequest, LoadedComponent, Sandbox};
use crate::store::hash::sha256_hex;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Components loaded now, by wasm file, dropped once idle.
type Loaded = Arc<LoadedComponents<LoadedComponent>>;

/// Which component runs each command type, and which types may run.
#[derive(Default)]
struct Table {
    by_command: BTreeMap<String, Arc<ComponentSpec>>,
    allowed: BTreeSet<String>,
}

impl Table {
    /// Built-in components, the pushed ones over them, and the allowlist.
    fn build(config: &SiteConfig) -> (Self, Vec<String>) {
        let (mut registry, mut problems) = match Registry::scan(&registry::components_dir(config)) {
            Ok((registry, problems)) => (
                registry,
                problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ),
            Err(e) => (Registry::default(), vec![e.to_string()]),
        };
        // Built at the agent's start and after each management command,
        // under the software lock: no install or remove is running, and
        // what a power cut left of one is nobody's (`sweep_interrupted`).
        let store = pushed::store::ComponentStore::new(config.pushed_components_dir());
        for path in store.sweep_interrupted() {
            tracing::info!(
                "removed {}: left by a component install or remove that was interrupted",
                path.display()
            );
        }
        let (policy, pushed_problems) = pushed::overlay(config, &mut registry);
        problems.extend(pushed_problems);
        (
            Self::from_registry(config, &registry, policy.as_ref()),
            problems,
        )
    }

    fn from_registry(
        config: &SiteConfig,
        registry: &Registry,
        policy: Option<&pushed::policy::Policy>,
    ) -> Self {
        let mut by_command = BTreeMap::new();
        for spec in registry.components() {
            let spec = Arc::new(spec.clone());
            for command in &spec.manifest.commands {
                // A built-in whose command a pushed component took over no
                // longer handles it.
                if registry
                    .for_command(command)
                    .is_some_and(|owner| owner.manifest.name == spec.manifest.name)
                {
                    by_command.insert(command.clone(), spec.clone());
                }
            }
        }
        Table {
            by_command,
            allowed: pushed::allowed_commands(config, registry, policy),
        }
    }
}

/// Runs commands with the installed components. A component is loaded the
/// first time one of its commands runs (from the artifact cache, ~0.5 ms;
/// compiled otherwise) and kept until it has been idle for
/// [`crate::agent::loaded_components::IDLE_UNLOAD`] (see
/// [`Dispatcher::unload_idle`]): start-up stays instant and components that
/// do not run cost no memory.
pub struct Dispatcher {
    sandbox: Arc<Sandbox>,
    config: SiteConfig,
    table: std::sync::RwLock<Arc<Table>>,
    loaded: Loaded,
    /// Commands whose manifests name the same [`Resource`] never run at the
    /// same time; everything else runs concurrently.
    locks: BTreeMap<Resource, Arc<Mutex<()>>>,
    slots: Slots,
    /// Whether the server ran a command since the agent last went idle:
    /// only then is going idle worth a line at info level. The hourly
    /// expiry of a quiet box would otherwise log one every hour, a page
    /// written to the SD card each time (issue 29).
    served: Arc<std::sync::atomic::AtomicBool>,
}

/// How many commands may run at once (MAX_CONCURRENT_COMMANDS): a backlog the
/// server re-sends must not get a thread and a wasm Store per command. The
/// semaphore is fair, so waiting commands start in arrival order; none is
/// dropped.
struct Slots {
    permits: Arc<tokio::sync::Semaphore>,
    running: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

/// A running command's slot; frees it when dropped.
struct Slot<'a> {
    slots: &'a Slots,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.slots
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Slots {
    fn new(max: usize) -> Self {
        Slots {
            permits: Arc::new(tokio::sync::Semaphore::new(max.max(1))),
            running: Default::default(),
            peak: Default::default(),
        }
    }

    /// Waits for a free slot, in arrival order. `None` only if the
    /// semaphore were closed, which it never is.
    async fn take(&self) -> Option<Slot<'_>> {
        use std::sync::atomic::Ordering::SeqCst;
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
        Some(Slot {
            slots: self,
            _permit: permit,
        })
    }
}

/// Commands running now and the most that ever ran at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency {
    pub running: usize,
    pub peak: usize,
}

/// The loaded component for `spec`, loading it when it is not, marked in
/// use (the caller ends with `loaded.finished`). Blocking. The map is
/// locked only to look up and to insert, never while compiling: one
/// component's first compile must not hold up another's commands.
fn load(
    sandbox: &Sandbox,
    loaded: &Loaded,
    spec: &ComponentSpec,
) -> Result<Arc<LoadedComponent>, String> {
    if let Some(component) = loaded.start(&spec.wasm_path) {
        return Ok(component);
    }
    let component = match &spec.origin {
        Origin::BuiltIn => sandbox.load_file(&spec.wasm_path, spec.manifest.clone()),
        Origin::Pushed { sha256 } => {
            let bytes = std::fs::read(&spec.wasm_path)
                .map_err(|e| format!("cannot read {}: {e}", spec.wasm_path.display()))?;
            if sha256_hex(&bytes) != *sha256 {
                return Err(format!(
                    "{} is damaged (its sha256 no longer matches the installed one); reinstall the component or roll it back",
                    spec.wasm_path.display()
                ));
            }
            sandbox.load_hashed(&bytes, sha256, spec.manifest.clone())
        }
    }
    .map_err(|e| e.to_string())?;
    Ok(loaded.start_loaded(&spec.wasm_path, Arc::new(component)))
}

/// A command's use of a loaded component; its idle time starts when this
/// drops, however the command ended.
struct InUse<'a> {
    loaded: &'a Loaded,
    path: &'a std::path::Path,
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        self.loaded.finished(self.path);
    }
}

impl Dispatcher {
    /// Reads the built-in and pushed components named by `config`.
    pub fn new(config: &SiteConfig, sandbox: Arc<Sandbox>) -> Self {
        let (table, problems) = Table::build(config);
        for problem in problems {
            tracing::warn!("{problem}");
        }
        Self::with_table(config, table, sandbox)
    }

    fn with_table(config: &SiteConfig, table: Table, sandbox: Arc<Sandbox>) -> Self {
        let locks = Resource::ALL
            .into_iter()
            .map(|r| (r, Arc::new(Mutex::new(()))))
            .collect();
        Dispatcher {
            sandbox,
            config: config.clone(),
            table: std::sync::RwLock::new(Arc::new(table)),
            loaded: Arc::default(),
            locks,
            slots: Slots::new(config.max_concurrent_commands),
            served: Arc::default(),
        }
    }

    /// How many commands run now, and the most that ran at once.
    pub fn concurrency(&self) -> Concurrency {
        use std::sync::atomic::Ordering::SeqCst;
        Concurrency {
            running: self.slots.running.load(SeqCst),
            peak: self.slots.peak.load(SeqCst),
        }
    }

    fn table(&self) -> Arc<Table> {
        match self.table.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the components after one was installed, removed or rolled
    /// back (on a blocking thread: it reads folders and files); drops loaded
    /// components no longer in use.
    async fn reload(&self) {
        let config = self.config.clone();
        let Ok((table, problems)) =
            tokio::task::spawn_blocking(move || Table::build(&config)).await
        else {
            tracing::error!("could not re-read the components; keeping the current ones");
            return;
        };
        for problem in problems {
            tracing::warn!("{problem}");
        }
        let in_use: BTreeSet<PathBuf> = table
            .by_command
            .values()
            .map(|s| s.wasm_path.clone())
            .collect();
        self.loaded.retain(&in_use);
        tracing::info!(
            "commands available now: {}",
            table
                .by_command
                .keys()
                .filter(|t| table.allowed.contains(*t))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
        match self.table.write() {
            Ok(mut t) => *t = Arc::new(table),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(table),
        }
    }

    /// Unloads the components idle for `idle`, for as long as the agent
    /// runs (spawned once by the agent). Once the last one is unloaded the
    /// agent is idle, and the code pages it touched meanwhile are handed
    /// back to the kernel ([`crate::platform::code_pages`]).
    pub fn unload_idle(&self, idle: std::time::Duration) -> impl Future<Output = ()> + use<> {
        let served = self.served.clone();
        self.loaded.clone().sweep(idle, move || {
            let after_commands = served.swap(false, std::sync::atomic::Ordering::Relaxed);
            tokio::task::spawn_blocking(move || {
                match crate::platform::code_pages::page_out_own_code() {
                    Ok(bytes) if after_commands => tracing::info!(
                        "idle: components unloaded, code pages handed back to the kernel ({} KiB mapped)",
                        bytes >> 10
                    ),
                    Ok(bytes) => tracing::debug!(
                        "idle: components unloaded, code pages handed back to the kernel ({} KiB mapped)",
                        bytes >> 10
                    ),
                    Err(e) => tracing::debug!("idle: {e}"),
                }
            });
        })
    }

    /// What the components' host calls share (service manager, follow-ups).
    pub fn host_services(&self) -> &Arc<crate::host::HostServices> {
        self.sandbox.services()
    }

    /// Whether `command_type` is handled by a component declared
    /// `read-only` (it changes nothing, so it needs no journal entry before
    /// it runs).
    pub fn is_read_only(&self, command_type: &str) -> bool {
        let table = self.table();
        table.allowed.contains(command_type)
            && table
                .by_command
                .get(command_type)
                .is_some_and(|spec| spec.manifest.read_only)
    }

    /// Command types that can run here (allowed and with a component).
    pub fn runnable(&self) -> Vec<String> {
        let table = self.table();
        let mut runnable: Vec<String> = table
            .by_command
            .keys()
            .filter(|t| table.allowed.contains(*t))
            .cloned()
            .collect();
        runnable.extend(
            pushed::MANAGEMENT_COMMANDS
                .iter()
                .filter(|c| table.allowed.contains(**c))
                .map(|c| (*c).to_owned()),
        );
        runnable
    }

    /// Runnable command types whose component holds the `agent-update`
    /// grant: the ones that can update the agent again (the trial's
    /// self-check asks for one; no command is known here by name).
    pub fn agent_updaters(&self) -> Vec<String> {
        let table = self.table();
        table
            .by_command
            .iter()
            .filter(|(t, spec)| table.allowed.contains(*t) && spec.manifest.grants.agent_update)
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// The `progress-event` of the component holding the `agent-update`
    /// grant: an agent update's closing event is journaled under it.
    pub fn agent_updater_progress_event(&self) -> Option<String> {
        self.agent_updaters()
            .iter()
            .find_map(|command_type| self.progress_event(command_type))
    }

    /// Whether `command_type`'s manifest lists it under `maintenance-window`
    /// (runs in AUTO_UPDATE_HOUR unless critical).
    pub fn uses_maintenance_window(&self, command_type: &str) -> bool {
        self.table()
            .by_command
            .get(command_type)
            .is_some_and(|spec| {
                spec.manifest
                    .maintenance_window
                    .iter()
                    .any(|c| c == command_type)
            })
    }

    /// Whether `command_type`'s manifest lists it under
    /// `check-before-window`: the component checks it itself before it is
    /// kept for the window ([`Dispatcher::check`]).
    pub fn checks_before_window(&self, command_type: &str) -> bool {
        self.table()
            .by_command
            .get(command_type)
            .is_some_and(|spec| {
                spec.manifest
                    .check_before_window
                    .iter()
                    .any(|c| c == command_type)
            })
    }

    /// Asks `command_type`'s component whether `data` could run: the
    /// command with `"check": true` added to its data (see
    /// `check-before-window`), as `{"resume": true}` asks it to resume.
    /// Takes no resource lock (a check changes nothing, and must not wait
    /// for a running update of the same kind). None when no component
    /// handles it or it is not allowed here (its run will say so).
    pub async fn check(&self, id: &str, command_type: &str, data: &Value) -> Option<Outcome> {
        let spec = {
            let table = self.table();
            if !table.allowed.contains(command_type) {
                return None;
            }
            table.by_command.get(command_type).cloned()?
        };
        let mut asked = match data {
            Value::Object(fields) => fields.clone(),
            _ => serde_json::Map::new(),
        };
        asked.insert(
            crate::agent::maintenance_window::CHECK_KEY.to_owned(),
            Value::Bool(true),
        );
        Some(
            self.execute(spec, id, command_type, &Value::Object(asked), None, false)
                .await,
        )
    }

    /// Components that declare `resume-at-start`: for each, the command type
    /// to run (the first its manifest lists) and its marker file in the
    /// staging root.
    pub fn resumable(&self) -> Vec<(String, String)> {
        let table = self.table();
        let mut seen = BTreeSet::new();
        table
            .by_command
            .values()
            .filter_map(|spec| {
                let marker = spec.manifest.resume_at_start.clone()?;
                let command = spec.manifest.commands.first()?.clone();
                seen.insert(spec.manifest.name.clone())
                    .then_some((command, marker))
            })
            .collect()
    }

    /// The command types manifests declare `periodic`: the agent's own
    /// jobs, run at start and every hour.
    pub fn periodic(&self) -> Vec<String> {
        self.declared(|m| &m.periodic)
    }

    /// The command types manifests list under `maintenance-window`.
    pub fn maintenance_window_commands(&self) -> Vec<String> {
        self.declared(|m| &m.maintenance_window)
    }

    /// The command types whose manifest lists them in `list`'s field.
    fn declared(&self, list: impl Fn(&crate::manifest::Manifest) -> &Vec<String>) -> Vec<String> {
        let table = self.table();
        table
            .by_command
            .iter()
            .filter(|(t, spec)| list(&spec.manifest).contains(*t))
            .map(|(t, _)| t.clone())
            .collect()
    }

    /// The progress event `command_type`'s manifest declares, if any.
    pub fn progress_event(&self, command_type: &str) -> Option<String> {
        self.table()
            .by_command
            .get(command_type)
            .and_then(|spec| spec.manifest.progress_event.clone())
    }

    /// Whether `command_type`'s progress reports go out only with a
    /// `deploymentId` (its manifest's `progress-needs-deployment`).
    pub fn progress_needs_deployment(&self, command_type: &str) -> bool {
        self.table()
            .by_command
            .get(command_type)
            .is_some_and(|spec| spec.manifest.progress_needs_deployment)
    }

    /// Runs one of the agent's own jobs (a `periodic` one): no allowlist,
    /// nothing if no component handles it.
    pub async fn run_internal(&self, command_type: &str) -> Option<Outcome> {
        self.run_internal_with(command_type, &Value::Null).await
    }

    /// [`Dispatcher::run_internal`] with data (e.g. `{"resume": true}`).
    pub async fn run_internal_with(&self, command_type: &str, data: &Value) -> Option<Outcome> {
        let spec = self.table().by_command.get(command_type).cloned()?;
        Some(
            self.execute(spec, "internal", command_type, data, None, true)
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
        self.served
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let table = self.table();
        if !table.allowed.contains(command_type) {
            return Outcome::Error {
                error: format!("Command type '{command_type}' is not allowed"),
            };
        }
        if pushed::is_management(command_type) {
            return self.manage(command_type, data).await;
        }
        let Some(spec) = table.by_command.get(command_type).cloned() else {
            return Outcome::Error {
                error: format!("Unknown command type: {command_type}"),
            };
        };
        self.execute(spec, id, command_type, data, progress, true)
            .await
    }

    /// install/remove/list/rollback_component, natively, then the table
    /// is rebuilt so the next command sees the change.
    async fn manage(&self, command_type: &str, data: &Value) -> Outcome {
        let _guard =
            match pushed::management_resource(command_type).and_then(|r| self.locks.get(&r)) {
                Some(lock) => Some(lock.clone().lock_owned().await),
                None => None,
            };
        let Some(_slot) = self.slots.take().await else {
            return Outcome::Error {
                error: "the agent is stopping; the command did not run".to_owned(),
            };
        };
        let manager = pushed::Manager::new(&self.config);
        let sandbox = self.sandbox.clone();
        let (command, data) = (command_type.to_owned(), data.clone());
        let run =
            tokio::task::spawn_blocking(move || manager.execute(&sandbox, &command, &data)).await;
        match run {
            Ok(Ok(result)) => {
                if command_type != "list_components" {
                    self.reload().await;
                }
                Outcome::Success { result }
            }
            Ok(Err(e)) => {
                tracing::warn!("{command_type} refused: {e}");
                Outcome::Error {
                    error: e.to_string(),
                }
            }
            Err(e) => Outcome::Error {
                error: format!("the command could not finish: {e}"),
            },
        }
    }

    async fn execute(
        &self,
        spec: Arc<ComponentSpec>,
        id: &str,
        command_type: &str,
        data: &Value,
        progress: Option<Arc<dyn ProgressSink>>,
        lock_resource: bool,
    ) -> Outcome {
        let _guard = match spec
            .manifest
            .resource
            .filter(|_| lock_resource)
            .and_then(|r| self.locks.get(&r))
        {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        // After the resource lock: a command waiting for its resource does
        // not hold a slot that an independent command could use.
        let Some(_slot) = self.slots.take().await else {
            return Outcome::Error {
                error: "the agent is stopping; the command did not run".to_owned(),
            };
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
            let _in_use = InUse {
                loaded: &loaded,
                path: &spec.wasm_path,
            };
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
