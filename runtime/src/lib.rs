//! neopro-runtime: the NEOPRO device agent.
//!
//! The native runtime owns the privileged work (files, system facts, logs,
//! and later the link, downloads and service control); every command handler
//! is a sandboxed WebAssembly component that reaches the box only through the
//! `neopro:agent` WIT interfaces, each call checked against its manifest.
//!
//! Where things are:
//! - [`config`] — site.conf;
//! - [`manifest`] — component manifests, grants and limits;
//! - [`registry`] — which component handles which command;
//! - [`pushed`] — components the server installs: store, signatures, site
//!   policy, the install/remove/list/rollback commands;
//! - [`sandbox`] — engine, artifact cache, running a command;
//! - [`host`] — the host side of each WIT interface (`host::files` is where a
//!   command's bytes are written);
//! - [`metrics`] — cpu, memory, temperature, disk, version;
//! - [`link`] — the Socket.IO client and its reconnect supervisor;
//! - [`session`] — authentication, heartbeat, commands, results;
//! - [`journal`] — the persistent command journal and result outbox;
//! - [`dispatch`] — allowlist, component lookup, per-resource locks;
//! - [`agent`] — `run`: everything wired together;
//! - [`analytics`], [`config_backup`] — the agent's side jobs;
//! - [`logging`] — stderr / journald and the rotated `LOG_PATH`;
//! - [`ops`] — operator commands: register, resync, diagnose, install-service;
//! - [`cli`] — the `neopro-runtime` command line.

pub mod agent;
pub mod analytics;
pub mod archive;
pub mod atomic;
pub mod byte_len;
pub mod cli;
pub mod clock;
pub mod component_cli;
pub mod config;
pub mod config_backup;
pub mod config_json;
pub mod diagnostics;
pub mod dispatch;
pub mod follow_up;
pub mod host;
pub mod journal;
pub mod link;
pub mod logging;
pub mod maintenance;
pub mod manifest;
pub mod metrics;
pub mod ops;
pub mod pushed;
pub mod registry;
pub mod release_signature;
pub mod sandbox;
pub mod service_manager;
pub mod session;
pub mod sweep;
pub mod systemd;
pub mod tree;
pub mod update_resume;
