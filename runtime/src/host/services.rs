//! `services` and `power`: unit control and reboot through the service
//! manager. A unit must be granted in the manifest *and* listed in site.conf's
//! `MANAGED_SERVICES`. Restarting the agent's own unit and rebooting are
//! follow-ups: they happen once the command's result has been delivered.
//! The upstream agent's unit name is an alias of the agent's own unit: the
//! server's UI sends it, and it must never reach some other unit.

use super::bindings::neopro::agent::{power, services};
use super::{HostState, WitError};
use crate::follow_up::Action;
use crate::host::grants::Grant;
use crate::platform::systemctl::ServiceError;
use std::time::Duration;

/// The `services` capability's state.
#[derive(Debug)]
pub struct ServicesHost {
    /// systemctl (a test double in tests).
    pub manager: crate::platform::systemctl::ServiceManager,
    /// MANAGED_SERVICES: the only units any component may touch.
    pub managed: Vec<String>,
    /// AGENT_SERVICE: the agent's own unit.
    pub agent_unit: String,
    /// UPDATE_HEALTH_URL.
    pub health_url: Option<String>,
    /// UPDATE_SETTLE_SECS: how long the services must stay active after an
    /// update before it counts as healthy.
    pub update_settle: std::time::Duration,
}

impl ServicesHost {
    pub fn from_config(config: &crate::config::SiteConfig) -> Self {
        ServicesHost {
            manager: crate::platform::systemctl::ServiceManager::new(
                config.services.systemctl.clone(),
            ),
            managed: config.services.managed.clone(),
            agent_unit: config.services.agent_unit.clone(),
            health_url: config.update_health_url.clone(),
            update_settle: config.update_settle,
        }
    }
}

/// Longest a follow-up waits for its result to be confirmed delivered.
const MAX_FOLLOW_UP_WAIT: Duration = Duration::from_secs(600);
/// One health-URL request.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// An agent restart waits at most this long for delivery.
const RESTART_WAIT: Duration = Duration::from_secs(30);
/// The upstream agent's unit, which the server sends for "restart the agent".
pub const UPSTREAM_AGENT_UNIT: &str = "neopro-sync-agent";

impl From<ServiceError> for WitError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::InvalidName(_) => WitError::InvalidInput(e.to_string()),
            ServiceError::Timeout { .. } => WitError::Timeout(e.to_string()),
            ServiceError::Spawn { .. } | ServiceError::Failed { .. } => {
                WitError::Failed(e.to_string())
            }
        }
    }
}

impl HostState {
    /// Checks `name` may be touched and returns the unit it means. The
    /// agent's names are interchangeable in grants and MANAGED_SERVICES.
    fn require_service(&self, name: &str) -> Result<String, WitError> {
        if !crate::platform::systemctl::is_valid_unit_name(name) {
            return Err(ServiceError::InvalidName(name.to_owned()).into());
        }
        let agent = self.is_agent_unit(name);
        // `neopro-admin` and `neopro-admin.service` are the same unit, in
        // the command, the grants and MANAGED_SERVICES alike.
        let base = without_service_suffix(name);
        let covers =
            |s: &String| without_service_suffix(s) == base || (agent && self.is_agent_unit(s));
        self.call
            .granter()
            .check_service(name, |unit| self.is_agent_unit(unit))?;
        let managed = &self.call.services.services.managed;
        if managed.iter().any(covers) {
            Ok(if agent {
                self.call.services.services.agent_unit.clone()
            } else {
                name.to_owned()
            })
        } else {
            Err(WitError::NotPermitted(format!(
                "service '{name}' is not managed by the agent on this box (MANAGED_SERVICES in site.conf: {})",
                managed.join(", ")
            )))
        }
    }

    fn is_agent_unit(&self, name: &str) -> bool {
        is_agent_name(name, &self.call.services.services.agent_unit)
    }
}

/// `name` without a trailing `.service`.
pub fn without_service_suffix(name: &str) -> &str {
    name.strip_suffix(".service").unwrap_or(name)
}

/// Whether `name` means the agent's own unit (`agent_unit`, or the upstream
/// agent's name the server's UI sends), with or without `.service`.
pub fn is_agent_name(name: &str, agent_unit: &str) -> bool {
    let base = without_service_suffix(name);
    base == without_service_suffix(agent_unit) || base == UPSTREAM_AGENT_UNIT
}

impl services::Host for HostState {
    fn start(&mut self, name: String) -> Result<(), WitError> {
        let unit = self.require_service(&name)?;
        Ok(self.call.services.services.manager.start(&unit)?)
    }

    fn stop(&mut self, name: String) -> Result<(), WitError> {
        let unit = self.require_service(&name)?;
        if self.is_agent_unit(&name) {
            return Err(WitError::NotPermitted(format!(
                "the agent does not stop its own unit {name} (it could not be started again remotely); restart it instead"
            )));
        }
        Ok(self.call.services.services.manager.stop(&unit)?)
    }

    fn restart(&mut self, name: String) -> Result<(), WitError> {
        let unit = self.require_service(&name)?;
        if self.is_agent_unit(&name) {
            return self
                .call
                .services
                .follow_ups
                .add(&self.call.command_id, Action::Restart(unit), RESTART_WAIT)
                .map_err(|e| WitError::Io(e.to_string()));
        }
        Ok(self.call.services.services.manager.restart(&unit)?)
    }

    fn is_agent(&mut self, name: String) -> bool {
        self.is_agent_unit(&name)
    }

    fn settle_secs(&mut self) -> u32 {
        u32::try_from(self.call.services.services.update_settle.as_secs()).unwrap_or(u32::MAX)
    }

    fn health_check(&mut self) -> Result<Option<u16>, WitError> {
        self.call.check(Grant::AnyService)?;
        let Some(url) = self.call.services.services.health_url.clone() else {
            return Ok(None);
        };
        let get = async {
            let tls = crate::platform::tls::client_config()
                .map_err(|e| WitError::Failed(format!("TLS unavailable: {e}")))?;
            let client = reqwest::Client::builder()
                .use_preconfigured_tls((*tls).clone())
                .timeout(HEALTH_TIMEOUT)
                .build()
                .map_err(|e| WitError::Failed(format!("cannot create the HTTP client: {e}")))?;
            client
                .get(&url)
                .send()
                .await
                .map(|r| Some(r.status().as_u16()))
                .map_err(|e| WitError::Failed(format!("the health URL {url} did not answer: {e}")))
        };
        super::download::block_on(get)?
    }

    fn status(&mut self, name: String) -> Result<String, WitError> {
        let unit = self.require_service(&name)?;
        Ok(self.call.services.services.manager.is_active(&unit)?)
    }
}

impl power::Host for HostState {
    fn schedule_reboot(&mut self, delay_secs: u32) -> Result<(), WitError> {
        self.call.check(Grant::Reboot)?;
        let wait = Duration::from_secs(u64::from(delay_secs))
            .clamp(Duration::from_secs(1), MAX_FOLLOW_UP_WAIT);
        self.call
            .services
            .follow_ups
            .add(&self.call.command_id, Action::Reboot, wait)
            .map_err(|e| WitError::Io(e.to_string()))
    }
}
