//! Health and identity of the box.

use crate::Error;
use crate::bindings::neopro::agent::system as host;
pub use crate::bindings::neopro::agent::system::{Info, InterfaceInfo, Metrics, VersionInfo};

/// Live metrics (cpu, memory, temperature, disk, uptime, local IP).
pub fn metrics() -> Result<Metrics, Error> {
    host::get_metrics()
}

/// Hardware, OS and network description.
pub fn info() -> Result<Info, Error> {
    host::get_info()
}

/// Installed NEOPRO software version.
pub fn version() -> Result<VersionInfo, Error> {
    host::get_version()
}

/// The running agent's version (`neopro-runtime`, e.g. `0.1.1`; a slot's
/// after an agent update), from the environment the agent gives every
/// component (`NEOPRO_AGENT_VERSION`). `None` on an agent older than this
/// SDK, which did not set it.
pub fn agent_version() -> Option<String> {
    std::env::var("NEOPRO_AGENT_VERSION")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Network checks run by the host (≤ 25 s), as the JSON object of the
/// `network_diagnostics` answer.
pub fn network_diagnostics() -> Result<serde_json::Value, Error> {
    let text = host::network_diagnostics()?;
    serde_json::from_str(&text)
        .map_err(|e| Error::failed(format!("the host returned invalid diagnostics: {e}")))
}
