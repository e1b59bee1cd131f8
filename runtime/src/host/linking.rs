//! The `neopro:agent` versions this host links (`SUPPORTED_API_VERSIONS`):
//! every version's imports in one `Linker`, and a component's handler
//! called through the version it exports.

use super::{HostState, WireCommand, WitError, bindings, since_v0_1};
use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

/// Links the current package and every older supported one.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    bindings::Command::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    since_v0_1::add_to_linker(linker)
}

/// A component ready to instantiate, through the `handler` it exports.
pub enum CommandPre {
    /// Built against the current package.
    Current(bindings::CommandPre<HostState>),
    /// Built against 0.1 (`wit/frozen/0.1`).
    V0_1(since_v0_1::bindings::CommandPre<HostState>),
}

impl CommandPre {
    /// The handler of the newest version the component exports. When it
    /// exports none, the error is the current version's (what a component
    /// author should build against).
    pub fn new(pre: InstancePre<HostState>) -> wasmtime::Result<Self> {
        match bindings::CommandPre::new(pre.clone()) {
            Ok(current) => Ok(CommandPre::Current(current)),
            Err(current_error) => since_v0_1::bindings::CommandPre::new(pre)
                .map(CommandPre::V0_1)
                .map_err(|_| current_error),
        }
    }

    /// Instantiates the component in `store` and runs `execute`: the outer
    /// error is a trap, the inner one the component's own answer.
    pub fn execute(
        &self,
        store: &mut Store<HostState>,
        command: &WireCommand,
    ) -> wasmtime::Result<Result<String, WitError>> {
        match self {
            CommandPre::Current(pre) => pre
                .instantiate(&mut *store)?
                .neopro_agent_handler()
                .call_execute(store, command),
            CommandPre::V0_1(pre) => pre
                .instantiate(&mut *store)?
                .neopro_agent_handler()
                .call_execute(store, command),
        }
    }
}
