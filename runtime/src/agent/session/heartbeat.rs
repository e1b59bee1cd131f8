//! The `heartbeat` payload (protocol notes §1.6).

use crate::platform::clock;
use crate::platform::metrics::{SystemProbe, version_info};
use serde_json::{Value, json};
use std::path::Path;
use std::time::SystemTime;

/// Builds one heartbeat: metrics sampled now, the installed version.
pub fn payload(site_id: &str, probe: &SystemProbe, neopro_root: &Path) -> Value {
    let now = clock::unix_millis(SystemTime::now());
    let m = probe.metrics();
    let v = version_info(neopro_root);
    let software_version = (v.version != "unknown").then(|| v.version.clone());
    json!({
        "siteId": site_id,
        "timestamp": now,
        "metrics": {
            "cpu": m.cpu,
            "memory": m.memory,
            "temperature": m.temperature,
            "disk": m.disk,
            "uptime": m.uptime,
            "localIp": m.local_ip,
            "timestamp": now,
        },
        "softwareVersion": software_version,
        "versionInfo": {
            "version": v.version,
            "commit": v.commit,
            "buildDate": v.build_date,
            "source": v.source,
        },
    })
}
