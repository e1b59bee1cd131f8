//! `neopro:agent@0.1.0`, the frozen package of `wit/frozen/0.1/`, linked
//! beside the current one so that a component built against 0.1 runs
//! unchanged (wit/README.md, versioning policy rule 2).
//!
//! 0.2 moved the agent's own update out of `archive` into `agent-update`;
//! every other 0.1 interface is the current one under its 0.1 name. Those
//! are linked straight onto the current host code (wasmtime checks host
//! functions against a component's imports by structure: same functions,
//! same records, same cases), and `archive@0.1.0` is a thin adapter onto
//! the current `archive` and `agent-update` functions, grants included.

use super::HostState;
use super::bindings::neopro::agent as now;
use super::{WitError, WitRoot};
use wasmtime::component::{HasSelf, Linker};

/// Generated from `wit/frozen/0.1`. The interfaces 0.2 kept as they were
/// are the current bindings (no second copy of their types); only
/// `archive@0.1.0` (with its `report`) and the world are generated here.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        world: "command",
        path: "../wit/frozen/0.1",
        with: {
            "neopro:agent/types@0.1.0": crate::host::bindings::neopro::agent::types,
            "neopro:agent/log@0.1.0": crate::host::bindings::neopro::agent::log,
            "neopro:agent/progress@0.1.0": crate::host::bindings::neopro::agent::progress,
            "neopro:agent/files@0.1.0": crate::host::bindings::neopro::agent::files,
            "neopro:agent/system@0.1.0": crate::host::bindings::neopro::agent::system,
            "neopro:agent/logs@0.1.0": crate::host::bindings::neopro::agent::logs,
            "neopro:agent/download@0.1.0": crate::host::bindings::neopro::agent::download,
            "neopro:agent/config-store@0.1.0": crate::host::bindings::neopro::agent::config_store,
            "neopro:agent/services@0.1.0": crate::host::bindings::neopro::agent::services,
            "neopro:agent/power@0.1.0": crate::host::bindings::neopro::agent::power,
            "neopro:agent/local-app@0.1.0": crate::host::bindings::neopro::agent::local_app,
        },
    });
}

use bindings::neopro::agent::archive as archive_v0_1;

/// Links every 0.1 import name into `linker` (which already holds the
/// current package: the world's own `add_to_linker` would define the
/// current names a second time).
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    fn same(state: &mut HostState) -> &mut HostState {
        state
    }
    macro_rules! unchanged {
        ($($module:ident => $name:literal),* $(,)?) => {$(
            now::$module::add_to_linker_instance::<HostState, HasSelf<HostState>>(
                &mut linker.instance(concat!("neopro:agent/", $name, "@0.1.0"))?,
                same,
            )?;
        )*};
    }
    unchanged!(
        types => "types",
        log => "log",
        progress => "progress",
        files => "files",
        system => "system",
        logs => "logs",
        download => "download",
        config_store => "config-store",
        services => "services",
        power => "power",
        local_app => "local-app",
    );
    archive_v0_1::add_to_linker::<HostState, HasSelf<HostState>>(linker, same)
}

/// `archive@0.1.0`'s `report`, the same record as today's.
impl From<now::archive::Report> for archive_v0_1::Report {
    fn from(r: now::archive::Report) -> Self {
        archive_v0_1::Report {
            files: r.files,
            bytes: r.bytes,
            skipped: r.skipped,
        }
    }
}

/// Each 0.1 function as a call of the current host function that does
/// its job, its answer converted where 0.1 has a type of its own.
macro_rules! delegate {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $out:ty => $to:path;)*) => {$(
        fn $name(&mut self, $($arg: $ty),*) -> Result<$out, WitError> {
            $to(self, $($arg),*).map(Into::into)
        }
    )*};
}

/// `archive@0.1.0`: today's `archive`, plus the two functions that moved
/// to `agent-update` in 0.2 (same code, same `agent-update` grant).
impl archive_v0_1::Host for HostState {
    delegate! {
        verify_signature(root: WitRoot, path: String, version: String, signature: Option<String>) -> String
            => now::archive::Host::verify_signature;
        check_app_release(version: String) -> () => now::archive::Host::check_app_release;
        extract_tar_gz(src_root: WitRoot, src_path: String, dest_root: WitRoot, dest_path: String, skip: Vec<String>)
            -> archive_v0_1::Report => now::archive::Host::extract_tar_gz;
        stage_agent_release(root: WitRoot, path: String, version: String, signature: Option<String>, deployment_id: Option<String>)
            -> Option<String> => now::agent_update::Host::stage_agent_release;
        rollback_agent_release(version: String) -> Option<String>
            => now::agent_update::Host::rollback_agent_release;
    }
}
