//! The `heartbeat` payload (protocol notes §1.6).

use crate::platform::clock;
use crate::platform::metrics::{SystemProbe, version_info};
use serde_json::{Value, json};
use std::path::Path;
use std::time::SystemTime;

/// Builds one heartbeat: metrics sampled now, the installed version.
/// `follow_up_failure`: a reboot or self-restart that failed after its
/// success was sent (`versionInfo.followUpFailure`, passed through by the
/// server), so the dashboard learns the box did not reboot.
pub fn payload(
    site_id: &str,
    probe: &SystemProbe,
    neopro_root: &Path,
    follow_up_failure: Option<Value>,
) -> Value {
    let now = clock::unix_millis(SystemTime::now());
    let m = probe.metrics();
    let v = version_info(neopro_root);
    let software_version = (v.version != "unknown").then(|| v.version.clone());
    let mut payload = json!({
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
            // The agent itself (a self-update shows here).
            "agentVersion": crate::selfupdate::own_version(),
        },
    });
    if let Some(failure) = follow_up_failure {
        payload["versionInfo"]["followUpFailure"] = failure;
    }
    payload
}
