//! The granter: the one place that decides whether a component may make a
//! host call. Every host function names the [`Grant`] it needs and asks
//! [`Granter::check`]; a refusal is a `not-permitted` error that names the
//! manifest line which would allow the call, so a component author (or the
//! site's installer reading a log) knows exactly what is missing.
//!
//! What a grant *means* beyond yes/no (MANAGED_SERVICES, MAX_DOWNLOAD_SIZE,
//! the sandboxed path resolver) stays with the host module of the capability:
//! the granter only reads the manifest.

use super::WitError;
use crate::manifest::{Access, Manifest, RootName};

/// One permission a host call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant<'a> {
    /// `files.<root> = "ro" | "rw"`.
    Root(RootName, Access),
    /// `system = true`: metrics, info, version, network diagnostics.
    System,
    /// `local-app = true`: notify the box's web app.
    LocalApp,
    /// `may-reboot = true`.
    Reboot,
    /// `services` lists this unit (the agent's own names are
    /// interchangeable, see [`Granter::check_service`]).
    Service(&'a str),
    /// `services` lists at least one unit (the update health check).
    AnyService,
    /// `logs.units` lists this unit or `"*"`.
    JournalUnit(&'a str),
    /// `logs.agent-log = true`.
    AgentLog,
    /// `[grants.download]` present and, for this host, `hosts` lists it
    /// (or `"*"`).
    Download { host: &'a str },
    /// `config-store = "ro" | "rw"`: the web app's configuration.json through
    /// the config-store interface (optimistic versioned writes).
    ConfigStore(Access),
    /// `agent-update = true`: stage a new agent version, or roll back to the
    /// one the running agent replaced.
    AgentUpdate,
}

/// Checks grants against one component's manifest.
#[derive(Debug, Clone, Copy)]
pub struct Granter<'m> {
    manifest: &'m Manifest,
}

impl<'m> Granter<'m> {
    pub fn new(manifest: &'m Manifest) -> Self {
        Granter { manifest }
    }

    fn component(&self) -> &str {
        &self.manifest.name
    }

    fn lacks(&self, line: &str) -> WitError {
        WitError::NotPermitted(format!(
            "component '{}' lacks the grant {line}",
            self.component()
        ))
    }

    /// `Ok` when the manifest grants `grant`, else the error naming the
    /// manifest line that would allow it.
    pub fn check(&self, grant: Grant<'_>) -> Result<(), WitError> {
        let g = &self.manifest.grants;
        match grant {
            Grant::Root(root, needed) => match g.access(root) {
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
            },
            Grant::System => allow(g.system, || self.lacks("system = true")),
            Grant::LocalApp => allow(g.local_app, || self.lacks("local-app = true")),
            Grant::Reboot => allow(g.may_reboot, || self.lacks("may-reboot = true")),
            Grant::Service(unit) => allow(g.services.iter().any(|s| s == unit), || {
                self.lacks(&format!("services containing \"{unit}\""))
            }),
            Grant::AnyService => allow(!g.services.is_empty(), || {
                self.lacks("services (at least one unit)")
            }),
            Grant::JournalUnit(unit) => allow(g.may_read_journal(unit), || {
                self.lacks(&format!("logs.units containing \"{unit}\""))
            }),
            Grant::AgentUpdate => allow(g.agent_update, || self.lacks("agent-update = true")),
            Grant::AgentLog => allow(g.logs.agent_log, || self.lacks("logs.agent-log = true")),
            Grant::Download { host } => {
                let Some(download) = &g.download else {
                    return Err(self.lacks("download"));
                };
                allow(download.allows_host(host), || {
                    WitError::NotPermitted(format!(
                        "component '{}' may not download from '{host}' (add \"{host}\" to grants.download.hosts)",
                        self.component()
                    ))
                })
            }
            Grant::ConfigStore(needed) => match g.config_store {
                Some(Access::ReadWrite) => Ok(()),
                Some(Access::ReadOnly) if needed == Access::ReadOnly => Ok(()),
                Some(Access::ReadOnly) => Err(WitError::NotPermitted(format!(
                    "component '{}' may only read the configuration store (grant config-store = \"rw\" to write)",
                    self.component()
                ))),
                None => Err(self.lacks(&format!("config-store = \"{}\"", needed.as_str()))),
            },
        }
    }

    /// A service grant where the agent's own unit names are interchangeable
    /// (`AGENT_SERVICE` and upstream's `neopro-sync-agent`): `is_agent` says
    /// whether a name means the agent.
    pub fn check_service(
        &self,
        unit: &str,
        is_agent: impl Fn(&str) -> bool,
    ) -> Result<(), WitError> {
        // `neopro-admin` and `neopro-admin.service` name the same unit.
        let base = unit.strip_suffix(".service").unwrap_or(unit);
        let agent = is_agent(unit);
        let covered = self
            .manifest
            .grants
            .services
            .iter()
            .any(|s| s.strip_suffix(".service").unwrap_or(s) == base || (agent && is_agent(s)));
        if covered {
            Ok(())
        } else {
            self.check(Grant::Service(unit))
        }
    }
}

fn allow(granted: bool, refusal: impl FnOnce() -> WitError) -> Result<(), WitError> {
    if granted { Ok(()) } else { Err(refusal()) }
}

#[cfg(test)]
mod tests;
