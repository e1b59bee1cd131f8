//! Interfaces declared in the WIT contract whose host side comes with later
//! work (services, power, archive). Until then each
//! call is checked against its grant like any other, and then fails with a
//! clear `failed` error instead of trapping the guest.

use super::bindings::neopro::agent::{archive, power, services};
use super::{HostState, WitError, WitRoot};

fn not_available(what: &str) -> WitError {
    WitError::Failed(format!(
        "{what} is not available in this version of neopro-runtime"
    ))
}

impl HostState {
    fn require_service(&self, name: &str) -> Result<(), WitError> {
        self.call.require(
            self.call.manifest.grants.services.iter().any(|s| s == name),
            &format!("services containing \"{name}\""),
        )
    }
}

impl services::Host for HostState {
    fn start(&mut self, name: String) -> Result<(), WitError> {
        self.require_service(&name)?;
        Err(not_available("service control"))
    }

    fn stop(&mut self, name: String) -> Result<(), WitError> {
        self.require_service(&name)?;
        Err(not_available("service control"))
    }

    fn restart(&mut self, name: String) -> Result<(), WitError> {
        self.require_service(&name)?;
        Err(not_available("service control"))
    }

    fn status(&mut self, name: String) -> Result<String, WitError> {
        self.require_service(&name)?;
        Err(not_available("service control"))
    }
}

impl power::Host for HostState {
    fn schedule_reboot(&mut self, _delay_secs: u32) -> Result<(), WitError> {
        self.call
            .require(self.call.manifest.grants.may_reboot, "may-reboot = true")?;
        Err(not_available("rebooting"))
    }
}

impl archive::Host for HostState {
    fn extract_tar_gz(
        &mut self,
        src_root: WitRoot,
        _src_path: String,
        dest_root: WitRoot,
        _dest_path: String,
        _skip: Vec<String>,
    ) -> Result<archive::Report, WitError> {
        use crate::manifest::{Access, RootName};
        self.call
            .require_root(RootName::from(src_root), Access::ReadOnly)?;
        self.call
            .require_root(RootName::from(dest_root), Access::ReadWrite)?;
        Err(not_available("archive extraction"))
    }
}
