//! The host side of the `neopro:agent` WIT interfaces: one sub-module per
//! interface, every call checked against the calling component's grants.
//!
//! Host functions never trap: a refused or failed call returns a WIT `error`
//! to the guest, which decides what to do with it.

pub mod agent_update;
pub mod archive;
pub mod config_store;
pub mod download;
pub mod files;
pub mod grants;
mod linking;
pub mod local_app;
pub mod log;
pub mod logs;
pub mod memory_cap;
pub mod progress;
pub mod redirects;
pub mod roots;
pub mod services;
pub mod since_v0_1;
pub mod system;

use crate::manifest::{Manifest, RootName};
pub use memory_cap::MemoryCap;
use roots::Roots;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Generated from `wit/`, the current package. Imports are not trappable:
/// host errors are values. Older versions: [`since_v0_1`], linked by
/// [`add_to_linker`].
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        world: "command",
        path: "../wit",
    });
}

pub use bindings::neopro::agent::types::{
    Command as WireCommand, Error as WitError, Root as WitRoot,
};
pub use linking::{CommandPre, add_to_linker};

/// The host state of every capability, one field each, each built from
/// site.conf by its own module: a capability's settings live next to its
/// host functions (wit/README.md § Adding a capability). Shared by every command.
#[derive(Debug)]
pub struct HostServices {
    /// The sandboxed path resolver, shared by every capability that touches
    /// files (files, download, logs, archive).
    pub roots: Roots,
    /// Reboots and self-restarts waiting for their result's delivery (the
    /// agent runs them; `services` and `power` add to them).
    pub follow_ups: Arc<crate::follow_up::FollowUps>,
    pub system: system::SystemHost,
    pub logs: logs::LogsHost,
    pub config_store: config_store::ConfigStore,
    pub download: download::DownloadHost,
    pub local_app: local_app::LocalAppHost,
    pub services: services::ServicesHost,
    pub archive: archive::ArchiveHost,
    /// Self-update: stages a release and registers the restart into it
    /// with `follow_ups`.
    pub agent_update: agent_update::AgentUpdateHost,
}

impl HostServices {
    /// Services over the folders and programs named in site.conf.
    pub fn from_config(config: &crate::config::SiteConfig) -> Self {
        HostServices {
            roots: Roots::from_config(config),
            follow_ups: Arc::new(crate::follow_up::FollowUps::new(config.state_path.clone())),
            system: system::SystemHost::from_config(config),
            logs: logs::LogsHost::from_config(config),
            config_store: config_store::ConfigStore::new(config.config_path.clone()),
            download: download::DownloadHost::from_config(config),
            local_app: local_app::LocalAppHost::from_config(config),
            services: services::ServicesHost::from_config(config),
            archive: archive::ArchiveHost::from_config(config),
            agent_update: agent_update::AgentUpdateHost::from_config(config),
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
    /// Asks the granter ([`grants`]) whether the manifest allows `grant`.
    pub(crate) fn check(&self, grant: grants::Grant<'_>) -> Result<(), WitError> {
        grants::Granter::new(&self.manifest).check(grant)
    }

    /// The `timeout` error of a host call stopped by the command's deadline.
    pub(crate) fn timed_out(&self, doing: &str) -> WitError {
        WitError::Timeout(format!(
            "component '{}' did not finish within its time limit of {} s ({doing} was stopped)",
            self.manifest.name, self.manifest.limits.timeout_secs
        ))
    }

    pub(crate) fn granter(&self) -> grants::Granter<'_> {
        grants::Granter::new(&self.manifest)
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
