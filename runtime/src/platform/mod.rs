//! What the agent reads from and asks of the box it runs on: metrics from
//! /proc and /sys, systemctl, the systemd notify socket, network probes and
//! the clock, the agent's own code pages, and the 32-bit-safe byte-length
//! conversions. Nothing here
//! knows about commands or components.

pub mod byte_len;
pub mod clock;
pub mod code_pages;
pub mod metrics;
pub mod network_probes;
pub mod sd_notify;
pub mod systemctl;
pub mod tls;
