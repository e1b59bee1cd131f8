//! An agent release delivered again under the deployment that installed it.
//!
//! The real central server re-sends every update deployment still "in
//! progress" at each authentication, under a new command id. After an agent
//! update that is always the case once: the new agent authenticates before
//! the update's success has reached the server (it sends that success only
//! once authenticated). Checked as a new release, that copy would be refused
//! ("this box runs agent … already") and the refusal would flip the
//! deployment the success had just completed to failed (issue 28.6/7). So a
//! copy of the very update this agent came from — same deployment, same
//! version, this agent running it — answers success, "already installed",
//! before anything is downloaded.

use super::state::AgentState;
use serde_json::{Value, json};
use std::path::Path;

/// The deployment an agent version was installed under, as `state.json`
/// records it: the committed slot's, or the trial's while it runs.
fn installed_under(state: &AgentState, version: &str) -> Option<String> {
    if let Some(trial) = &state.trial
        && trial.version == version
    {
        return trial.deployment_id.clone();
    }
    if state.committed.as_deref() == Some(version) {
        return state.committed_deployment.clone();
    }
    None
}

/// The success result for an `update_software` whose `data` names the
/// running agent's version under the deployment that installed it; `None`
/// for anything else (it runs, or is refused, as usual).
pub fn already_installed(state_path: &Path, own_version: &str, data: &Value) -> Option<Value> {
    let version = data.get("version").and_then(Value::as_str)?.trim();
    let deployment = data.get("deploymentId").and_then(Value::as_str)?;
    if version != own_version {
        return None;
    }
    let state = AgentState::load(&super::agent_dir(state_path)).ok()??;
    if installed_under(&state, version).as_deref() != Some(deployment) {
        return None;
    }
    Some(json!({
        "success": true,
        "version": version,
        "deploymentId": deployment,
        "agentVersion": own_version,
        "message": "already installed",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selfupdate::state::Trial;

    fn data(version: &str, deployment: Option<&str>) -> Value {
        let mut d = json!({"version": version, "updateUrl": "http://x/agent.tar.gz"});
        if let Some(dep) = deployment {
            d["deploymentId"] = json!(dep);
        }
        d
    }

    #[test]
    fn only_a_copy_of_the_update_this_agent_came_from_is_already_installed()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let agent_dir = crate::selfupdate::agent_dir(dir.path());
        // No state: the packaged agent, nothing installed by an update.
        assert_eq!(
            already_installed(dir.path(), "0.1.1", &data("0.1.1", Some("dep-1"))),
            None
        );
        let mut state = AgentState::default();
        state.commit("0.1.1");
        state.committed_deployment = Some("dep-1".into());
        std::fs::create_dir_all(&agent_dir)?;
        state.save(&agent_dir)?;
        let answer = already_installed(dir.path(), "0.1.1", &data("0.1.1", Some("dep-1")));
        assert_eq!(
            answer.as_ref().map(|a| a["message"].clone()),
            Some(json!("already installed"))
        );
        // Another deployment, no deployment, another version, or an agent
        // that is not the committed one (a fallback): checked as usual.
        for (own, asked) in [
            ("0.1.1", data("0.1.1", Some("dep-2"))),
            ("0.1.1", data("0.1.1", None)),
            ("0.1.1", data("0.1.2", Some("dep-1"))),
            ("0.1.0", data("0.1.1", Some("dep-1"))),
        ] {
            assert_eq!(already_installed(dir.path(), own, &asked), None, "{asked}");
        }
        // The trial of that deployment, before it commits.
        state.trial = Some(Trial {
            version: "0.1.2".into(),
            previous_version: "0.1.1".into(),
            command_id: "c-2".into(),
            deployment_id: Some("dep-3".into()),
            attempts: 1,
            started_at_ms: 0,
            deadline_secs: 300,
            last_error: None,
            first_start: None,
        });
        state.save(&agent_dir)?;
        assert!(already_installed(dir.path(), "0.1.2", &data("0.1.2", Some("dep-3"))).is_some());
        assert_eq!(
            already_installed(dir.path(), "0.1.2", &data("0.1.2", Some("dep-1"))),
            None
        );
        Ok(())
    }
}
