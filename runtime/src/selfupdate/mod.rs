//! The agent updates itself (issue #15 part A).
//!
//! `/usr` is read-only for the agent (`ProtectSystem=strict`), so new agent
//! versions live in slots it can write, `STATE_PATH/agent/<version>/`, with
//! the packaged `/usr/bin/neopro-runtime` as the floor that always works:
//!
//! - [`release`] — what an agent release is and the checks it must pass
//!   (signature always, architecture, version) before it is staged;
//! - [`slot`] — the slot folders: staged by copy into a temp folder, fsync,
//!   rename;
//! - [`state`] — `STATE_PATH/agent/state.json`: the committed version and
//!   the trial (version, attempts, deadline, last error);
//! - [`launcher`] — `neopro-runtime run` decides first which binary runs
//!   (trial, committed slot, or itself) and execs it, same PID;
//! - [`trial`] — inside the agent: the trial commits once authenticated and
//!   reports success under the update's command id, or gives up at its
//!   deadline; the agent that comes back reports the failure;
//! - [`rollback`] — `rollback_update` of an agent update: back to the agent
//!   the committed one replaced;
//! - [`reinstall`] — the server's re-delivery of the update this agent came
//!   from answers "already installed";
//! - [`at_start`] — self-update's part of the agent's start: earlier trials'
//!   outcomes reported, this trial's self-check and deadline, a committed
//!   slot's health.

pub mod at_start;
pub mod launcher;
pub mod reinstall;
pub mod release;
pub mod rollback;
pub mod slot;
pub mod state;
pub mod trial;

use std::path::{Path, PathBuf};

/// Set by the launcher on the binary it execs: that binary is a slot and
/// must not launch again. Its value is `trial` or `committed`.
pub const LAUNCHED_ENV: &str = "NEOPRO_RUNTIME_LAUNCHED";

/// Tests only (debug builds): the version this binary reports, so one test
/// binary can stand for two agent versions. Ignored by release builds.
pub const TEST_VERSION_ENV: &str = "NEOPRO_RUNTIME_TEST_VERSION";

/// The version of this agent binary.
pub fn own_version() -> String {
    #[cfg(debug_assertions)]
    if let Ok(v) = std::env::var(TEST_VERSION_ENV)
        && !v.trim().is_empty()
    {
        return v.trim().to_owned();
    }
    env!("CARGO_PKG_VERSION").to_owned()
}

/// Set by the launcher next to [`LAUNCHED_ENV`]: the packaged binary's
/// version, below which no slot ever runs.
pub const FLOOR_ENV: &str = "NEOPRO_RUNTIME_FLOOR_VERSION";

/// The packaged binary's version: this one's, unless a launcher said.
pub fn floor_version() -> String {
    std::env::var(FLOOR_ENV)
        .ok()
        .filter(|_| std::env::var_os(LAUNCHED_ENV).is_some())
        .map(|v| v.trim().to_owned())
        .filter(|v| state::is_plain_version(v))
        .unwrap_or_else(own_version)
}

/// The Debian architecture this binary was built for (what an agent
/// release names in `agent-release.json`).
pub fn own_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "armhf",
        other => other,
    }
}

/// `STATE_PATH/agent`: the slots and `state.json`.
pub fn agent_dir(state_path: &Path) -> PathBuf {
    state_path.join("agent")
}

/// The commands whose result an agent switch hands to the agent starting
/// now: the trial's update, a rollback, or an outcome still owed (failed or
/// succeeded). The previous agent left them open on purpose, so the
/// journal does not warn that they were "running when the agent stopped".
pub fn handed_over(state_path: &Path) -> std::collections::HashSet<String> {
    let Ok(Some(state)) = state::AgentState::load(&agent_dir(state_path)) else {
        return Default::default();
    };
    state
        .trial
        .map(|t| t.command_id)
        .into_iter()
        .chain(state.rolled_back.map(|r| r.command_id))
        .chain(state.failed.map(|f| f.command_id))
        .chain(state.succeeded.map(|s| s.command_id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::state::{AgentState, Trial};

    #[test]
    fn the_trials_command_is_handed_over_and_nothing_without_a_state()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        assert!(super::handed_over(tmp.path()).is_empty());
        AgentState {
            trial: Some(Trial {
                version: "1.3.0".into(),
                previous_version: "1.2.0".into(),
                command_id: "u-1".into(),
                deployment_id: Some("dep-1".into()),
                attempts: 1,
                started_at_ms: 0,
                deadline_secs: 600,
                last_error: None,
                first_start: None,
            }),
            ..AgentState::default()
        }
        .save(&super::agent_dir(tmp.path()))?;
        assert_eq!(
            super::handed_over(tmp.path()),
            ["u-1".to_owned()].into_iter().collect()
        );
        Ok(())
    }
}
