//! Controlling the box's systemd units. A unit must be granted in the
//! manifest's `services` and listed in site.conf's `MANAGED_SERVICES`.

use crate::Error;
use crate::bindings::neopro::agent::services as host;

/// Starts a unit (waits until systemd reports it started or failed).
pub fn start(unit: &str) -> Result<(), Error> {
    host::start(unit)
}

/// Stops a unit. The agent's own unit cannot be stopped.
pub fn stop(unit: &str) -> Result<(), Error> {
    host::stop(unit)
}

/// Restarts a unit. For the agent's own unit the restart happens after this
/// command's result has been delivered.
pub fn restart(unit: &str) -> Result<(), Error> {
    host::restart(unit)
}

/// Whether `unit` names the agent itself (its unit or the upstream name
/// the server sends): its restart happens after the result is delivered.
pub fn is_agent(unit: &str) -> bool {
    host::is_agent(unit)
}

/// The unit's active state: `active`, `inactive`, `failed`, `activating`, ...
pub fn status(unit: &str) -> Result<String, Error> {
    host::status(unit)
}

/// How long the NEOPRO units must stay active after an update before it
/// counts as healthy (site.conf `UPDATE_SETTLE_SECS`).
pub fn settle_time() -> std::time::Duration {
    std::time::Duration::from_secs(u64::from(host::settle_secs()))
}

/// One request to the box's health URL: its status, or `None` when the box
/// has none configured.
pub fn health_check() -> Result<Option<u16>, Error> {
    host::health_check()
}

/// Waits up to `timeout` for `unit` to be `active`, polling every 250 ms.
/// Returns the last state seen (`active` on success).
pub fn wait_active(unit: &str, timeout: std::time::Duration) -> Result<String, Error> {
    let start = std::time::Instant::now();
    loop {
        let state = status(unit)?;
        let transient = matches!(state.as_str(), "activating" | "reloading" | "deactivating");
        // A unit that has just been (re)started may briefly read `inactive`.
        let settling = state == "inactive" && start.elapsed() < std::time::Duration::from_secs(2);
        if state == "active" || (!transient && !settling) || start.elapsed() >= timeout {
            return Ok(state);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}
