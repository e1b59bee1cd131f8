//! `system`: metrics, hardware description and installed version.

use super::bindings::neopro::agent::system::{Host, Info, InterfaceInfo, Metrics, VersionInfo};
use super::{HostState, WitError};
use crate::host::grants::Grant;
use crate::platform::metrics;

/// The `system` capability's state.
#[derive(Debug)]
pub struct SystemHost {
    pub probe: crate::platform::metrics::SystemProbe,
    /// NEOPRO_ROOT, for the version files.
    pub neopro_root: std::path::PathBuf,
    /// Where network_diagnostics probes.
    pub diagnostics: crate::platform::network_probes::Targets,
}

impl SystemHost {
    pub fn from_config(config: &crate::config::SiteConfig) -> Self {
        SystemHost {
            probe: crate::platform::metrics::SystemProbe::default(),
            neopro_root: config.neopro_root.clone(),
            diagnostics: crate::platform::network_probes::Targets::new(&config.central_server_url),
        }
    }
}

impl HostState {
    fn require_system(&self) -> Result<(), WitError> {
        self.call.check(Grant::System)
    }
}

impl Host for HostState {
    fn get_metrics(&mut self) -> Result<Metrics, WitError> {
        self.require_system()?;
        let m = self.call.services.system.probe.metrics();
        Ok(Metrics {
            cpu: m.cpu,
            memory: m.memory,
            temperature: m.temperature,
            disk: m.disk,
            uptime: m.uptime,
            local_ip: m.local_ip,
        })
    }

    fn get_info(&mut self) -> Result<Info, WitError> {
        self.require_system()?;
        let i = self.call.services.system.probe.info();
        Ok(Info {
            hostname: i.hostname,
            os: i.os,
            kernel: i.kernel,
            architecture: i.architecture,
            cpu_model: i.cpu_model,
            cpu_cores: i.cpu_cores,
            cpu_speed_mhz: i.cpu_speed_mhz,
            total_memory: i.total_memory,
            interfaces: i
                .interfaces
                .into_iter()
                .map(|n| InterfaceInfo {
                    name: n.name,
                    ip4: n.ip4,
                    ip6: n.ip6,
                    mac: n.mac,
                    kind: n.kind.to_owned(),
                })
                .collect(),
            active_connections: i.active_connections,
            raspberry_revision: i.raspberry_revision,
            raspberry_serial: i.raspberry_serial,
            model: i.model,
        })
    }

    fn network_diagnostics(&mut self) -> Result<String, WitError> {
        self.require_system()?;
        Ok(
            crate::platform::network_probes::run(&self.call.services.system.diagnostics)
                .to_string(),
        )
    }

    fn get_version(&mut self) -> Result<VersionInfo, WitError> {
        self.require_system()?;
        let v = metrics::version_info(&self.call.services.system.neopro_root);
        Ok(VersionInfo {
            version: v.version,
            commit: v.commit,
            build_date: v.build_date,
            source: v.source,
        })
    }
}
