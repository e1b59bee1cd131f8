//! The end-to-end tests as one test binary: each module was its own binary,
//! and every one of them linked wasmtime and Cranelift again. Tests that
//! change something process-wide stay binaries of their own: the counting
//! allocator (`journal_memory.rs`), the slowed fsync (`slow_disk.rs`) and
//! the peak-RSS readings (`guest_limits.rs`).

mod agent_session;
mod agent_update_v0_1;
mod analytics;
mod artifact_cache;
mod component_new;
mod components;
mod concurrency;
mod conformance;
mod content;
mod crash;
mod deploy;
mod idle_writes;
mod operator;
mod pushed;
mod reauth;
mod sandbox_escapes;
mod sealed_release;
mod self_update;
mod server_truth;
mod services;
mod update;
mod update_crash;
