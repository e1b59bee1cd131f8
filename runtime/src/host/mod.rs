//! The host side of the `neopro:agent` WIT interfaces: one sub-module per
//! interface, every call checked against the calling component's grants.
//!
//! Host functions never trap: a refused or failed call returns a WIT `error`
//! to the guest, which decides what to do with it.

pub mod archive;
pub mod config_store;
pub mod deadline;
pub mod download;
pub mod files;
pub mod local_app;
pub mod log;
pub mod logs;
pub mod memory_cap;
pub mod progress;
pub mod roots;
pub mod services;
pub mod system;

use crate::platform::metrics::SystemProbe;
use crate::sandbox::manifest::{Access, Manifest, RootName};
pub use memory_cap::MemoryCap;
use roots::Roots;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Generated from `wit/`. Imports are not trappable: host errors are values.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        world: "command",
        path: "../wit",
    });
}

pub use bindings::neopro::agent::types::{
    Command as WireCommand, Error as WitError, Root as WitRoot,
};
pub use bindings::{Command as CommandWorld, CommandPre};

/// Shared by every command: where the roots are, how to read the box.
#[derive(Debug)]
pub struct HostServices {
    pub roots: Roots,
    pub probe: SystemProbe,
    /// The agent's own log file (LOG_PATH), for `logs.agent-log-tail`.
    pub agent_log: PathBuf,
    /// NEOPRO_ROOT, for the version files.
    pub neopro_root: PathBuf,
    /// The journalctl program; a test double in tests.
    pub journalctl: PathBuf,
    /// configuration.json (CONFIG_PATH) and its writer lock.
    pub config_store: config_store::ConfigStore,
    /// MAX_DOWNLOAD_SIZE: no download may be larger, whatever the grant.
    pub max_download_size: u64,
    /// LOCAL_APP_URL.
    pub local_app_url: String,
    /// systemctl (a test double in tests).
    pub service_manager: crate::platform::systemctl::ServiceManager,
    /// MANAGED_SERVICES: the only units any component may touch.
    pub managed_services: Vec<String>,
    /// AGENT_SERVICE: the agent's own unit.
    pub agent_unit: String,
    /// Reboots and self-restarts waiting for their result's delivery.
    pub follow_ups: Arc<crate::agent::follow_up::FollowUps>,
    /// UPDATE_HEALTH_URL.
    pub health_url: Option<String>,
    /// UPDATE_TRUSTED_KEYS.
    pub update_keys: Vec<[u8; 32]>,
    /// Where network_diagnostics probes.
    pub diagnostics: crate::platform::network_probes::Targets,
}

impl HostServices {
    /// Services over the folders and programs named in site.conf.
    pub fn from_config(config: &crate::config::SiteConfig) -> Self {
        HostServices {
            roots: Roots::from_config(config),
            probe: SystemProbe::default(),
            agent_log: config.log_path.clone(),
            neopro_root: config.neopro_root.clone(),
            journalctl: config.journalctl.clone(),
            config_store: config_store::ConfigStore::new(config.config_path.clone()),
            max_download_size: config.max_download_size,
            local_app_url: config.local_app_url.clone(),
            service_manager: crate::platform::systemctl::ServiceManager::new(
                config.services.systemctl.clone(),
            ),
            managed_services: config.services.managed.clone(),
            agent_unit: config.services.agent_unit.clone(),
            follow_ups: Arc::new(crate::agent::follow_up::FollowUps::new(
                config.state_path.clone(),
            )),
            diagnostics: crate::platform::network_probes::Targets::new(&config.central_server_url),
            update_keys: config.update_keys.clone(),
            health_url: config.update_health_url.clone(),
        }
    }
}

/// The progress event a command's reports go to.
pub trait ProgressSink: Send + Sync {
    /// `payload` already carries `progress` and the component's detail fields.
    fn emit(&self, event: &str, payload: serde_json::Value);
}

/// Per-command facts the host functions consult.
pub struct CallContext {
    pub manifest: Arc<Manifest>,
    pub command_id: String,
    /// When the command's time limit runs out. The epoch deadline only
    /// interrupts guest code; long host calls (downloads, hashing, tree
    /// copies, extraction: see [`deadline`]) check this.
    pub deadline: std::time::Instant,
    pub services: Arc<HostServices>,
    pub progress: progress::ProgressState,
}

impl CallContext {
    fn component(&self) -> &str {
        &self.manifest.name
    }

    /// `Ok` when the manifest grants at least `needed` on `root`, else the
    /// `not-permitted` error naming the missing grant.
    pub(crate) fn require_root(&self, root: RootName, needed: Access) -> Result<(), WitError> {
        match self.manifest.grants.access(root) {
            Some(Access::ReadWrite) => Ok(()),
            Some(Access::ReadOnly) if needed == Access::ReadOnly => Ok(()),
            Some(Access::ReadOnly) => Err(WitError::NotPermitted(format!(
                "component '{}' has read-only access to '{root}' (grant files.{root} = \"rw\" to write)",
                self.component()
            ))),
            None => Err(WitError::NotPermitted(format!(
                "component '{}' has no access to '{root}' (missing grant files.{root} = \"{}\")",
                self.component(),
                needed.as_str()
            ))),
        }
    }

    /// The `timeout` error of a host call stopped by the command's deadline.
    pub(crate) fn timed_out(&self, doing: &str) -> WitError {
        WitError::Timeout(format!(
            "component '{}' did not finish within its time limit of {} s ({doing} was stopped)",
            self.component(),
            self.manifest.limits.timeout_secs
        ))
    }

    pub(crate) fn require(&self, granted: bool, grant: &str) -> Result<(), WitError> {
        if granted {
            Ok(())
        } else {
            Err(WitError::NotPermitted(format!(
                "component '{}' lacks the grant {grant}",
                self.component()
            )))
        }
    }
}

/// The data of one command's `Store`.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) call: CallContext,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::neopro::agent::types::Host for HostState {}

impl From<WitRoot> for RootName {
    fn from(root: WitRoot) -> Self {
        match root {
            WitRoot::Videos => RootName::Videos,
            WitRoot::Config => RootName::Config,
            WitRoot::Backups => RootName::Backups,
            WitRoot::NeoproRoot => RootName::NeoproRoot,
            WitRoot::Staging => RootName::Staging,
            WitRoot::Logs => RootName::Logs,
            WitRoot::Hostapd => RootName::Hostapd,
        }
    }
}

impl WitError {
    /// Kebab-case kind, as in the WIT variant.
    pub fn kind(&self) -> &'static str {
        match self {
            WitError::InvalidInput(_) => "invalid-input",
            WitError::NotPermitted(_) => "not-permitted",
            WitError::NotFound(_) => "not-found",
            WitError::ChecksumMismatch(_) => "checksum-mismatch",
            WitError::TooLarge(_) => "too-large",
            WitError::Timeout(_) => "timeout",
            WitError::Io(_) => "io",
            WitError::Failed(_) => "failed",
        }
    }

    /// The operator-facing message.
    pub fn message(&self) -> &str {
        match self {
            WitError::InvalidInput(m)
            | WitError::NotPermitted(m)
            | WitError::NotFound(m)
            | WitError::ChecksumMismatch(m)
            | WitError::TooLarge(m)
            | WitError::Timeout(m)
            | WitError::Io(m)
            | WitError::Failed(m) => m,
        }
    }
}
