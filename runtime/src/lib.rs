//! neopro-runtime: the NEOPRO device agent.
//!
//! The native runtime owns the privileged work (files, system facts, logs,
//! the link, downloads and service control); every command handler is a
//! sandboxed WebAssembly component that reaches the box only through the
//! `neopro:agent` WIT interfaces, each call checked against its manifest.
//!
//! Where things are (folders by concern; docs/architecture.md has the map):
//! - [`agent`] — `run`: session, dispatch, journal, follow-ups, update resume,
//!   the maintenance window;
//! - [`link`] — the Socket.IO client and its reconnect supervisor;
//! - [`sandbox`] — engine, artifact cache, running a command, manifests and
//!   the registry of which component handles which command;
//! - [`host`] — the host side of each WIT interface (`host::download` is where
//!   a deploy's bytes hit the disk, `host::files` where a command's files are
//!   written);
//! - [`pushed`] — components the server installs: store, site policy, the
//!   install/remove/list/rollback commands;
//! - [`selfupdate`] — agent releases, slots, the launcher, the trial;
//! - [`signing`] — component and release signatures;
//! - [`platform`] — metrics, systemctl, sd_notify, network probes, clock;
//! - [`jobs`] — analytics, configuration backups, sweeps;
//! - [`store`] — atomic writes, hashing, trees, the tar.gz extractor, the web
//!   app's configuration.json;
//! - [`config`] — site.conf;
//! - [`logging`] — stderr / journald and the rotated `LOG_PATH`;
//! - [`ops`] — operator commands: register, resync, diagnose, install-service,
//!   `component keygen|sign|verify|inspect`;
//! - [`cli`] — the `neopro-runtime` command line.

pub mod agent;
pub mod cli;
pub mod config;
pub mod host;
pub mod jobs;
pub mod link;
pub mod logging;
pub mod ops;
pub mod platform;
pub mod pushed;
pub mod sandbox;
pub mod selfupdate;
pub mod signing;
pub mod store;
