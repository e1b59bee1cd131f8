//! The agent's own update (the `agent-update` interface; the manifest needs
//! `agent-update = true`, reserved for the built-in updater).

use crate::bindings::neopro::agent::agent_update as host;
use crate::{Error, Root};

/// When `root/path` is an agent release (its first entry is
/// `agent-release.json`), checks and stages it for the agent to switch to
/// once this command ends; the new agent then sends this command's result.
/// Returns the staged version, or `None` for any other archive.
pub fn stage_agent_release(
    root: Root,
    path: &str,
    version: &str,
    signature: Option<&str>,
    deployment_id: Option<&str>,
) -> Result<Option<String>, Error> {
    host::stage_agent_release(root, path, version, signature, deployment_id)
}

/// `rollback_update` of an agent update: when the running agent is
/// `version`, schedules the switch back to the agent it replaced (the agent
/// restarts into it once this command ends; that agent sends this command's
/// result). Returns the version that comes back, or `None` when `version`
/// is not the running agent (nothing to do).
pub fn rollback_agent_release(version: &str) -> Result<Option<String>, Error> {
    host::rollback_agent_release(version)
}
