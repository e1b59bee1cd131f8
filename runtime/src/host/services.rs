//! `services` and `power`: unit control and reboot through the service
//! manager. A unit must be granted in the manifest *and* listed in site.conf's
//! `MANAGED_SERVICES`. Restarting the agent's own unit and rebooting are
//! follow-ups: they happen once the command's result has been delivered.

use super::bindings::neopro::agent::{power, services};
use super::{HostState, WitError};
use crate::follow_up::Action;
use crate::service_manager::ServiceError;
use std::time::Duration;

/// Longest a follow-up waits for its result to be confirmed delivered.
const MAX_FOLLOW_UP_WAIT: Duration = Duration::from_secs(600);
/// One health-URL request.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// An agent restart waits at most this long for delivery.
const RESTART_WAIT: Duration = Duration::from_secs(30);

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
    fn require_service(&self, name: &str) -> Result<(), WitError> {
        if !crate::manifest::is_valid_unit_name(name) {
            return Err(ServiceError::InvalidName(name.to_owned()).into());
        }
        self.call.require(
            self.call.manifest.grants.services.iter().any(|s| s == name),
            &format!("services containing \"{name}\""),
        )?;
        let managed = &self.call.services.managed_services;
        if managed.iter().any(|s| s == name) {
            Ok(())
        } else {
            Err(WitError::NotPermitted(format!(
                "service '{name}' is not managed by the agent on this box (MANAGED_SERVICES in site.conf: {})",
                managed.join(", ")
            )))
        }
    }

    fn is_agent_unit(&self, name: &str) -> bool {
        name == self.call.services.agent_unit
    }
}

impl services::Host for HostState {
    fn start(&mut self, name: String) -> Result<(), WitError> {
        self.require_service(&name)?;
        Ok(self.call.services.service_manager.start(&name)?)
    }

    fn stop(&mut self, name: String) -> Result<(), WitError> {
        self.require_service(&name)?;
        if self.is_agent_unit(&name) {
            return Err(WitError::NotPermitted(format!(
                "the agent does not stop its own unit {name} (it could not be started again remotely); restart it instead"
            )));
        }
        Ok(self.call.services.service_manager.stop(&name)?)
    }

    fn restart(&mut self, name: String) -> Result<(), WitError> {
        self.require_service(&name)?;
        if self.is_agent_unit(&name) {
            return self
                .call
                .services
                .follow_ups
                .add(&self.call.command_id, Action::Restart(name), RESTART_WAIT)
                .map_err(|e| WitError::Io(e.to_string()));
        }
        Ok(self.call.services.service_manager.restart(&name)?)
    }

    fn health_check(&mut self) -> Result<Option<u16>, WitError> {
        self.call.require(
            !self.call.manifest.grants.services.is_empty(),
            "services (at least one unit)",
        )?;
        let Some(url) = self.call.services.health_url.clone() else {
            return Ok(None);
        };
        let get = async {
            let tls = crate::link::tls::client_config()
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
        self.require_service(&name)?;
        Ok(self.call.services.service_manager.is_active(&name)?)
    }
}

impl power::Host for HostState {
    fn schedule_reboot(&mut self, delay_secs: u32) -> Result<(), WitError> {
        self.call
            .require(self.call.manifest.grants.may_reboot, "may-reboot = true")?;
        let wait = Duration::from_secs(u64::from(delay_secs))
            .clamp(Duration::from_secs(1), MAX_FOLLOW_UP_WAIT);
        self.call
            .services
            .follow_ups
            .add(&self.call.command_id, Action::Reboot, wait)
            .map_err(|e| WitError::Io(e.to_string()))
    }
}
