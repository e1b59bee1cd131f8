//! The agent's periodic side jobs, each started by `agent::run` on its own
//! schedule: analytics forwarding, configuration backups, sweeps of stale
//! downloads.

pub mod analytics;
pub mod config_backup;
pub mod sweep;
