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
