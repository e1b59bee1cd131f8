//! Rebooting the box (needs `may-reboot = true`).

use crate::Error;
use crate::bindings::neopro::agent::power as host;

/// Reboots once this command's result has been delivered to the central
/// server, or after `max_wait_secs` if it cannot be confirmed.
pub fn schedule_reboot(max_wait_secs: u32) -> Result<(), Error> {
    host::schedule_reboot(max_wait_secs)
}
