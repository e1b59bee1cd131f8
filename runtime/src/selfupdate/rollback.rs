//! `rollback_update` of an agent update: the server sends it to every site
//! of a failed canary rollout. When the running agent is the one that
//! update committed, the agent it replaced comes back — its slot, kept for
//! this, or the packaged agent — through a restart, and that agent reports
//! the result ([`super::trial::report_outcomes`]).

use super::launcher::{is_executable, slot_binary};
use super::state::{AgentState, RolledBack};
use super::{floor_version, own_version};
use std::path::Path;

/// Why an agent rollback is refused (nothing changed).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RollbackError {
    #[error(
        "nothing rolled back: agent {version} is running but there is no record of the agent it replaced"
    )]
    NoRecord { version: String },
    #[error("nothing rolled back: {0}")]
    State(String),
}

/// Schedules the switch from the running agent `version` back to the one
/// it replaced; returns the version that comes back, or `None` when
/// `version` is not the running committed agent (its update failed and
/// was undone already, or another update followed: nothing to do).
/// `dir` is the agent folder (`STATE_PATH/agent`).
pub fn schedule(
    dir: &Path,
    command_id: &str,
    version: &str,
) -> Result<Option<String>, RollbackError> {
    let state = AgentState::load(dir).map_err(|e| RollbackError::State(e.to_string()))?;
    let Some(mut state) = state else {
        return Ok(None);
    };
    if own_version() != version || state.committed.as_deref() != Some(version) {
        return Ok(None);
    }
    let Some(replaced) = state.replaced.take().filter(|r| r.by == version) else {
        return Err(RollbackError::NoRecord {
            version: version.to_owned(),
        });
    };
    let to = if replaced.from_slot && is_executable(&slot_binary(dir, &replaced.version)) {
        state.committed = Some(replaced.version.clone());
        state.committed_deployment = None;
        replaced.version
    } else {
        state.committed = None;
        state.committed_deployment = None;
        floor_version()
    };
    state.committed_starts = 0;
    state.rolled_back = Some(RolledBack {
        command_id: command_id.to_owned(),
        from: version.to_owned(),
        to: to.clone(),
    });
    state
        .save(dir)
        .map_err(|e| RollbackError::State(e.to_string()))?;
    tracing::warn!(
        "agent rollback from {version} to {to} scheduled; the agent restarts into it when command {command_id} ends"
    );
    Ok(Some(to))
}

#[cfg(test)]
mod tests {
    use super::super::agent_dir;
    use super::super::state::Replaced;
    use super::*;

    /// The running agent committed, replacing 0.0.1 (from a slot).
    fn replacing_a_slot(state_path: &Path) {
        committed(
            state_path,
            Some(Replaced {
                by: own_version(),
                version: "0.0.1".into(),
                from_slot: true,
            }),
        );
    }

    fn committed(state_path: &Path, replaced: Option<Replaced>) {
        let state = AgentState {
            committed: Some(own_version()),
            replaced,
            ..AgentState::default()
        };
        assert!(state.save(&agent_dir(state_path)).is_ok());
    }

    fn load(state_path: &Path) -> AgentState {
        AgentState::load(&agent_dir(state_path))
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    #[test]
    fn the_running_committed_agent_goes_back_to_the_slot_it_replaced()
    -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir()?;
        let old = slot_binary(&agent_dir(tmp.path()), "0.0.1");
        std::fs::create_dir_all(old.parent().unwrap_or(tmp.path()))?;
        std::fs::write(&old, "#!/bin/sh\n")?;
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755))?;
        let own = own_version();
        replacing_a_slot(tmp.path());
        assert_eq!(
            schedule(&agent_dir(tmp.path()), "rb-1", &own)?,
            Some("0.0.1".into())
        );
        let state = load(tmp.path());
        assert_eq!(state.committed.as_deref(), Some("0.0.1"));
        assert_eq!(state.replaced, None);
        assert_eq!(
            state.rolled_back,
            Some(RolledBack {
                command_id: "rb-1".into(),
                from: own.clone(),
                to: "0.0.1".into()
            })
        );
        Ok(())
    }

    #[test]
    fn without_its_slot_the_packaged_agent_comes_back() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let own = own_version();
        replacing_a_slot(tmp.path());
        assert_eq!(
            schedule(&agent_dir(tmp.path()), "rb-1", &own)?,
            Some(floor_version())
        );
        assert_eq!(load(tmp.path()).committed, None);
        Ok(())
    }

    #[test]
    fn an_update_not_in_effect_or_without_record_changes_nothing()
    -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let own = own_version();
        assert_eq!(schedule(&agent_dir(tmp.path()), "rb-1", &own)?, None);
        committed(tmp.path(), None);
        assert_eq!(schedule(&agent_dir(tmp.path()), "rb-1", "0.0.7")?, None);
        let before = std::fs::read(agent_dir(tmp.path()).join("state.json"))?;
        assert_eq!(
            schedule(&agent_dir(tmp.path()), "rb-1", &own)
                .err()
                .map(|e| e.to_string()),
            Some(format!(
                "nothing rolled back: agent {own} is running but there is no record of the agent it replaced"
            ))
        );
        assert_eq!(
            std::fs::read(agent_dir(tmp.path()).join("state.json"))?,
            before
        );
        Ok(())
    }
}
