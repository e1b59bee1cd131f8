//! Inside the agent: the end of an agent update.
//!
//! - The agent that comes back after a failed trial reports the failure
//!   under the update's command id ([`report_failure`]).
//! - A binary started as the trial ([`LAUNCHED_ENV`]` = trial`) checks itself
//!   at start (components load, journal readable); once authenticated it
//!   commits (trial → committed, fsync'd) and journals the update's success,
//!   which the session then sends ([`Gate::commit`]). Past its deadline it
//!   records why and the agent exits non-zero, so the launcher falls back.
//! - The agent that staged a release and then failed drops the trial
//!   ([`cancel`]).

use super::state::{AgentState, MAX_ATTEMPTS, Trial};
use super::{LAUNCHED_ENV, agent_dir, slot};
use crate::agent::journal::{FinalProgress, Journal, Outcome};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the trial agent stops.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrialError {
    #[error("the new agent {version} failed its self-check: {problem}")]
    SelfCheck { version: String, problem: String },
    #[error("the new agent {version} did not authenticate with the central server within {secs} s")]
    Deadline { version: String, secs: u64 },
}

/// At start, in any agent: a failed trial recorded by the launcher is
/// reported under its command id (replacing "interrupted"), then forgotten;
/// slots no state names are removed.
pub fn report_failure(state_path: &Path, journal: &Journal) {
    let dir = agent_dir(state_path);
    let mut state = match AgentState::load(&dir) {
        Ok(Some(state)) => state,
        Ok(None) => return,
        Err(e) => {
            tracing::error!("{e}");
            return;
        }
    };
    if let Some(failed) = state.failed.take() {
        let error = format!(
            "agent update to {} failed and agent {} is back: {}",
            failed.version,
            super::own_version(),
            failed.error
        );
        tracing::error!("{error}");
        close_deployment(
            journal,
            &failed.command_id,
            failed.deployment_id.as_deref(),
            &failed.version,
            Some(&error),
        );
        if let Err(e) = journal.complete(&failed.command_id, Outcome::Error { error }) {
            tracing::error!("{e}");
            return;
        }
        if let Err(e) = state.save(&dir) {
            tracing::error!("{e}");
        }
    }
    let keep: Vec<&str> = state
        .committed
        .iter()
        .chain(state.trial.as_ref().map(|t| &t.version))
        .map(String::as_str)
        .collect();
    slot::prune(&dir, &keep);
}

/// The trial this process runs as, if it is one.
pub fn this_trial(state_path: &Path) -> Option<Trial> {
    if std::env::var(LAUNCHED_ENV).ok().as_deref() != Some("trial") {
        return None;
    }
    // Whatever version it reports: a binary that is not the release it
    // claims to be fails its self-check instead of running uncommitted.
    match AgentState::load(&agent_dir(state_path)) {
        Ok(Some(AgentState {
            trial: Some(trial), ..
        })) => Some(trial),
        Ok(_) => None,
        Err(e) => {
            tracing::error!("{e}");
            None
        }
    }
}

/// The trial agent's gate: self-check, deadline, commit.
#[derive(Debug)]
pub struct Gate {
    state_path: PathBuf,
    trial: Trial,
}

impl Gate {
    pub fn new(state_path: &Path, trial: Trial) -> Self {
        Gate {
            state_path: state_path.to_owned(),
            trial,
        }
    }

    /// How long from now the trial may take to authenticate.
    pub fn remaining(&self) -> Duration {
        let now = crate::platform::clock::unix_millis(std::time::SystemTime::now());
        let end = self
            .trial
            .started_at_ms
            .saturating_add(self.trial.deadline_secs.saturating_mul(1000));
        Duration::from_millis(end.saturating_sub(now))
    }

    /// The self-check at start: the components loaded (the updater among
    /// them, or the box could never be updated again) and the journal
    /// holds the update's command. A failure is recorded (the launcher
    /// then falls back at once) and returned.
    pub fn self_check(&self, runnable: &[String], journal: &Journal) -> Result<(), TrialError> {
        let own = super::own_version();
        let problem = if own != self.trial.version {
            Some(format!(
                "the binary of release {} reports version {own}",
                self.trial.version
            ))
        } else if !runnable.iter().any(|c| c == "update_software") {
            Some(format!(
                "the update_software component did not load (loaded: {})",
                if runnable.is_empty() {
                    "none".to_owned()
                } else {
                    runnable.join(", ")
                }
            ))
        } else if journal.get(&self.trial.command_id).is_none() {
            Some(format!(
                "the command journal has no entry for the update command {}",
                self.trial.command_id
            ))
        } else {
            None
        };
        match problem {
            None => Ok(()),
            Some(problem) => {
                let error = TrialError::SelfCheck {
                    version: self.trial.version.clone(),
                    problem,
                };
                self.record(&error.to_string(), true);
                Err(error)
            }
        }
    }

    /// The deadline passed without authentication: recorded for the
    /// launcher and the agent that comes back.
    pub fn expired(&self) -> TrialError {
        let error = TrialError::Deadline {
            version: self.trial.version.clone(),
            secs: self.trial.deadline_secs,
        };
        self.record(&error.to_string(), false);
        error
    }

    /// Writes `error` as the trial's last error; `give_up` makes the next
    /// start fall back without another attempt.
    fn record(&self, error: &str, give_up: bool) {
        let dir = agent_dir(&self.state_path);
        let mut state = match AgentState::load(&dir) {
            Ok(Some(state)) => state,
            Ok(None) => return,
            Err(e) => {
                tracing::error!("{e}");
                return;
            }
        };
        if let Some(trial) = state
            .trial
            .as_mut()
            .filter(|t| t.command_id == self.trial.command_id)
        {
            trial.last_error = Some(error.to_owned());
            if give_up {
                trial.attempts = trial.attempts.max(MAX_ATTEMPTS);
            }
            if let Err(e) = state.save(&dir) {
                tracing::error!("{e}");
            }
        }
    }

    /// Authenticated: trial → committed, then the update's success in the
    /// journal (sent by the session right after). Returns whether it
    /// committed.
    pub fn commit(&self, journal: &Journal) -> bool {
        let dir = agent_dir(&self.state_path);
        let mut state = match AgentState::load(&dir) {
            Ok(Some(state)) => state,
            Ok(None) => AgentState::default(),
            Err(e) => {
                tracing::error!("{e}; the new agent is not committed");
                return false;
            }
        };
        state.committed = Some(self.trial.version.clone());
        state.trial = None;
        if let Err(e) = state.save(&dir) {
            tracing::error!("{e}; the new agent is not committed");
            return false;
        }
        tracing::info!(
            "agent {} committed (was {})",
            self.trial.version,
            self.trial.previous_version
        );
        let mut result = json!({
            "success": true,
            "agentUpdate": true,
            "version": self.trial.version,
            "previousVersion": self.trial.previous_version,
        });
        if let Some(id) = &self.trial.deployment_id {
            result["deploymentId"] = json!(id);
        }
        close_deployment(
            journal,
            &self.trial.command_id,
            self.trial.deployment_id.as_deref(),
            &self.trial.version,
            None,
        );
        if let Err(e) = journal.complete(&self.trial.command_id, Outcome::Success { result }) {
            tracing::error!("{e}");
        }
        slot::prune(&dir, &[self.trial.version.as_str()]);
        true
    }
}

/// Journals the deployment's closing `update_progress` (the server closes a
/// deployment from it, not from the result); the session sends it with the
/// result after authentication.
fn close_deployment(
    journal: &Journal,
    command_id: &str,
    deployment_id: Option<&str>,
    version: &str,
    error: Option<&str>,
) {
    let Some(deployment_id) = deployment_id else {
        return;
    };
    let payload = match error {
        None => json!({
            "version": version, "deploymentId": deployment_id,
            "progress": 100, "status": "completed", "stage": "agent_committed",
        }),
        Some(error) => json!({
            "version": version, "deploymentId": deployment_id,
            "progress": 0, "status": "failed", "error": error,
        }),
    };
    let closing = FinalProgress {
        event: "update_progress".to_owned(),
        payload,
        sent_in: None,
    };
    if let Err(e) = journal.set_final_progress(command_id, closing) {
        tracing::warn!("{e}");
    }
}

/// The agent that staged `command_id`'s release and then failed: the trial
/// is dropped and its slot removed, so the failure it reports is the truth.
pub fn cancel(state_path: &Path, command_id: &str) {
    let dir = agent_dir(state_path);
    let Ok(Some(mut state)) = AgentState::load(&dir) else {
        return;
    };
    if state
        .trial
        .as_ref()
        .is_some_and(|t| t.command_id == command_id)
    {
        state.trial = None;
        if let Err(e) = state.save(&dir) {
            tracing::error!("{e}");
            return;
        }
        let keep: Vec<&str> = state.committed.iter().map(String::as_str).collect();
        slot::prune(&dir, &keep);
    }
}
