//! What the agent reads from and asks of the box it runs on: metrics from
//! /proc and /sys, systemctl, the systemd notify socket, network probes and
//! the clock. Nothing here knows about commands or components.

pub mod clock;
pub mod metrics;
pub mod network_probes;
pub mod sd_notify;
pub mod systemctl;
