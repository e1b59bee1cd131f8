//! `system`: metrics, hardware description and installed version.

use super::bindings::neopro::agent::system::{Host, Info, InterfaceInfo, Metrics, VersionInfo};
use super::{HostState, WitError};
use crate::platform::metrics;

impl HostState {
    fn require_system(&self) -> Result<(), WitError> {
        self.call
            .require(self.call.manifest.grants.system, "system = true")
    }
}

impl Host for HostState {
    fn get_metrics(&mut self) -> Result<Metrics, WitError> {
        self.require_system()?;
        let m = self.call.services.probe.metrics();
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
        let i = self.call.services.probe.info();
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
        Ok(crate::platform::network_probes::run(&self.call.services.diagnostics).to_string())
    }

    fn get_version(&mut self) -> Result<VersionInfo, WitError> {
        self.require_system()?;
        let v = metrics::version_info(&self.call.services.neopro_root);
        Ok(VersionInfo {
            version: v.version,
            commit: v.commit,
            build_date: v.build_date,
            source: v.source,
        })
    }
}
