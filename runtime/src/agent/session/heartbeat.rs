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
/// `took_over`: what [`took_over_from`] read (`versionInfo.tookOverFrom`).
pub fn payload(
    site_id: &str,
    probe: &SystemProbe,
    neopro_root: &Path,
    follow_up_failure: Option<Value>,
    took_over: Option<Value>,
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
    if let Some(took_over) = took_over {
        payload["versionInfo"]["tookOverFrom"] = took_over;
    }
    payload
}

/// `STATE_PATH/took-over.json`, written by the migration handover
/// (`config/migration/handover.sh`) when this agent replaced the Node.js
/// agent on the box: `{agent, runtime, at}`.
pub const TOOK_OVER_FILE: &str = "took-over.json";

/// The handover's record, if any: a JSON object of at most 4 KiB (the file
/// is written by root before the agent's first start; anything else in its
/// place is ignored).
pub fn took_over_from(state_path: &Path) -> Option<Value> {
    use std::io::Read;
    let file = std::fs::File::open(state_path.join(TOOK_OVER_FILE)).ok()?;
    let mut text = String::new();
    file.take(4096).read_to_string(&mut text).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    value.is_object().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handover_record_goes_into_version_info() -> Result<(), Box<dyn std::error::Error>> {
        let state = tempfile::tempdir()?;
        assert_eq!(took_over_from(state.path()), None);
        std::fs::write(
            state.path().join(TOOK_OVER_FILE),
            r#"{"agent":"neopro-sync-agent","runtime":"Node.js v18.19.0","at":"2026-12-02T03:00:00Z"}"#,
        )?;
        let record = took_over_from(state.path());
        let probe = SystemProbe::new(state.path(), state.path(), state.path());
        let beat = payload("site-1", &probe, state.path(), None, record);
        assert_eq!(
            beat["versionInfo"]["tookOverFrom"]["agent"],
            "neopro-sync-agent"
        );
        // Not an object, or too long to be the handover's: ignored.
        std::fs::write(state.path().join(TOOK_OVER_FILE), "[1,2]")?;
        assert_eq!(took_over_from(state.path()), None);
        let long = format!(r#"{{"agent":"{}"}}"#, "x".repeat(5000));
        std::fs::write(state.path().join(TOOK_OVER_FILE), long)?;
        assert_eq!(took_over_from(state.path()), None);
        let beat = payload("site-1", &probe, state.path(), None, None);
        assert!(beat["versionInfo"].get("tookOverFrom").is_none());
        Ok(())
    }
}
