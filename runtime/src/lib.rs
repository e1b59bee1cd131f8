//! neopro-runtime: the NEOPRO device agent.
//!
//! The native runtime owns the privileged work (files, system facts, logs,
//! the link, downloads and service control); every command handler is a
//! sandboxed WebAssembly component that reaches the box only through the
//! `neopro:agent` WIT interfaces, each call checked against its manifest.
//!
//! The command line and the operator commands live in crate `neopro-ops`
//! (folder `ops/`), which uses this crate's public API.
//!
//! Where things are (folders by concern, each floor using only the floors
//! below it — `cargo xtask floors` prints them and the suite fails on an
//! import that climbs; docs/architecture.md has the map):
//! - [`agent`] — `run`: session, dispatch, update resume, the maintenance
//!   window scheduler;
//! - [`pushed`] — components the server installs: store, site policy, the
//!   install/remove/list/rollback commands;
//! - [`jobs`] — analytics, configuration backups, sweeps;
//! - [`sandbox`] — engine, artifact cache, running a command with the host
//!   interfaces linked, the registry of which component handles which command;
//! - [`host`] — the host side of each WIT interface (`host::download` is where
//!   a deploy's bytes hit the disk, `host::files` where a command's files are
//!   written, `host::grants` where a grant is checked);
//! - [`selfupdate`] — agent releases, slots, the launcher, the trial;
//! - [`link`] — the Socket.IO client and its reconnect supervisor;
//! - [`journal`] — the command journal: every accepted command and its final
//!   result, persisted before it is sent;
//! - [`follow_up`] — restarts and reboots a command asks for, run after its
//!   result is delivered;
//! - [`manifest`] — a component's manifest: its commands, grants and limits;
//! - [`platform`] — metrics, systemctl, sd_notify, network probes, TLS
//!   roots, clock, code pages;
//! - [`logging`] — stderr / journald and the rotated `LOG_PATH`;
//! - [`signing`] — component and release signatures;
//! - [`store`] — atomic writes, hashing, trees, deadlines on reads, the
//!   tar.gz extractor, the web app's configuration.json;
//! - [`version_order`] — which of two versions is older, for every
//!   downgrade check;
//! - [`config`] — site.conf.

pub mod agent;
pub mod config;
pub mod follow_up;
pub mod host;
pub mod jobs;
pub mod journal;
pub mod link;
pub mod logging;
pub mod manifest;
pub mod platform;
pub mod pushed;
pub mod sandbox;
pub mod selfupdate;
pub mod signing;
pub mod store;
pub mod version_order;
