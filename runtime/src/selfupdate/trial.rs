//! Inside the agent: the end of an agent update.
//!
//! - At start, any agent reports what the state file still owes the
//!   server ([`report_outcomes`]): a failed trial, a commit whose success
//!   did not reach the journal, a rollback.
//! - A binary started as the trial ([`LAUNCHED_ENV`]` = trial`) checks itself
//!   at start (components load, journal readable); once authenticated it
//!   commits (trial → committed, fsync'd) and journals the update's success,
//!   which the session then sends ([`Gate::commit`]). Past its deadline it
//!   records why and the agent exits non-zero, so the launcher falls back.
//! - A committed slot proves healthy once authenticated or up for
//!   [`STABLE_AFTER`](super::state::STABLE_AFTER) ([`mark_healthy`]), which
//!   resets the launcher's count of its starts.
//! - The agent that staged a release and then failed drops the trial
//!   ([`cancel`]).

use super::state::{AgentState, BootInstant, MAX_ATTEMPTS, Replaced, Succeeded, Trial};
use super::{LAUNCHED_ENV, agent_dir, slot};
use crate::journal::{FinalProgress, Journal, Outcome};
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

/// At start, in any agent: what the state file says happened is reported
/// under its command id (replacing "interrupted") — a trial that failed, a
/// commit whose success did not reach the journal before a crash, a
/// rollback — then forgotten; slots no state names are removed.
/// `progress_event` is the event the updater's manifest declares (the
/// component holding the `agent-update` grant): a deployment's closing
/// event is journaled under it.
pub fn report_outcomes(state_path: &Path, journal: &Journal, progress_event: Option<&str>) {
    let dir = agent_dir(state_path);
    let mut state = match AgentState::load(&dir) {
        Ok(Some(state)) => state,
        Ok(None) => return,
        Err(e) => {
            tracing::error!("{e}");
            return;
        }
    };
    let before = state.clone();
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
            progress_event,
            &failed.command_id,
            failed.deployment_id.as_deref(),
            &failed.version,
            Some(&error),
        );
        if let Err(e) = journal.complete(&failed.command_id, Outcome::Error { error }) {
            tracing::error!("{e}");
            return;
        }
    }
    if let Some(done) = state.succeeded.take()
        && !journal_success(journal, &done, progress_event)
    {
        return;
    }
    if let Some(rollback) = state.rolled_back.take() {
        let own = super::own_version();
        let outcome = if own == rollback.to {
            tracing::warn!("agent rolled back from {} to {own}", rollback.from);
            Outcome::Success {
                result: json!({
                    "success": true,
                    "agentUpdate": true,
                    "version": own,
                    "rolledBackVersion": rollback.from,
                }),
            }
        } else {
            let error = format!(
                "the agent rollback from {} to {} did not happen: agent {own} is running",
                rollback.from, rollback.to
            );
            tracing::error!("{error}");
            Outcome::Error { error }
        };
        if let Err(e) = journal.complete(&rollback.command_id, outcome) {
            tracing::error!("{e}");
            return;
        }
    }
    if state != before
        && let Err(e) = state.save(&dir)
    {
        tracing::error!("{e}");
    }
    slot::prune(&dir, &state.slots_in_use());
}

/// Journals a committed update's success (with the deployment's closing
/// event), unless the journal already holds it. False when it could not.
fn journal_success(journal: &Journal, done: &Succeeded, progress_event: Option<&str>) -> bool {
    if matches!(
        journal.outcome(&done.command_id),
        Some(Outcome::Success { .. })
    ) {
        return true;
    }
    let mut result = json!({
        "success": true,
        "agentUpdate": true,
        "version": done.version,
        "previousVersion": done.previous_version,
    });
    if let Some(id) = &done.deployment_id {
        result["deploymentId"] = json!(id);
    }
    close_deployment(
        journal,
        progress_event,
        &done.command_id,
        done.deployment_id.as_deref(),
        &done.version,
        None,
    );
    match journal.complete(&done.command_id, Outcome::Success { result }) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!("{e}");
            false
        }
    }
}

/// A committed slot that authenticated or stayed up: the launcher's count
/// of its unhealthy starts goes back to zero.
pub fn mark_healthy(state_path: &Path) {
    let dir = agent_dir(state_path);
    match AgentState::load(&dir) {
        Ok(Some(mut state)) if state.committed_starts > 0 => {
            state.committed_starts = 0;
            if let Err(e) = state.save(&dir) {
                tracing::warn!("{e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("{e}"),
    }
}

/// Whether this process is a committed slot the launcher started.
pub fn is_committed_slot() -> bool {
    std::env::var(LAUNCHED_ENV).ok().as_deref() == Some("committed")
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
    /// The updater's `progress-event` (see [`report_outcomes`]).
    progress_event: Option<String>,
}

impl Gate {
    pub fn new(state_path: &Path, trial: Trial, progress_event: Option<String>) -> Self {
        Gate {
            state_path: state_path.to_owned(),
            trial,
            progress_event,
        }
    }

    /// How long from now the trial may take to authenticate (counted on
    /// the boot clock from its first start; see [`BootInstant`]).
    pub fn remaining(&self) -> Duration {
        let now_ms = crate::platform::clock::unix_millis(std::time::SystemTime::now());
        let elapsed =
            super::state::trial_elapsed_ms(&self.trial, BootInstant::now().as_ref(), now_ms)
                .unwrap_or(0);
        Duration::from_millis(
            self.trial
                .deadline_secs
                .saturating_mul(1000)
                .saturating_sub(elapsed),
        )
    }

    /// The self-check at start: the components loaded, one of them holding
    /// the `agent-update` grant (`updaters`: its commands), or the box
    /// could never be updated again; and the journal holds the update's
    /// command. A failure is recorded (the launcher then falls back at
    /// once) and returned.
    pub fn self_check(
        &self,
        runnable: &[String],
        updaters: &[String],
        journal: &Journal,
    ) -> Result<(), TrialError> {
        let own = super::own_version();
        let problem = if own != self.trial.version {
            Some(format!(
                "the binary of release {} reports version {own}",
                self.trial.version
            ))
        } else if updaters.is_empty() {
            Some(format!(
                "no component with the agent-update grant loaded, so this release could never be updated again (loaded: {})",
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
        let version = self.trial.version.clone();
        state.replaced = Some(Replaced {
            by: version.clone(),
            version: state
                .committed
                .clone()
                .unwrap_or_else(|| self.trial.previous_version.clone()),
            from_slot: state.committed.is_some(),
        });
        state.commit(&version);
        state.committed_deployment = self.trial.deployment_id.clone();
        state.committed_starts = 0;
        state.trial = None;
        let done = Succeeded {
            version: version.clone(),
            previous_version: self.trial.previous_version.clone(),
            command_id: self.trial.command_id.clone(),
            deployment_id: self.trial.deployment_id.clone(),
        };
        // Committed and owed the server in one write: a crash before the
        // journal has it leaves the success for the next start to report.
        state.succeeded = Some(done.clone());
        if let Err(e) = state.save(&dir) {
            tracing::error!("{e}; the new agent is not committed");
            return false;
        }
        tracing::info!(
            "agent {version} committed (was {})",
            self.trial.previous_version
        );
        if journal_success(journal, &done, self.progress_event.as_deref()) {
            state.succeeded = None;
            if let Err(e) = state.save(&dir) {
                tracing::warn!("{e}");
            }
        }
        slot::prune(&dir, &state.slots_in_use());
        true
    }
}

/// Journals the deployment's closing progress event, under the updater's
/// `progress-event` (the server closes a deployment from it, not from the
/// result); the session sends it with the result after authentication.
fn close_deployment(
    journal: &Journal,
    progress_event: Option<&str>,
    command_id: &str,
    deployment_id: Option<&str>,
    version: &str,
    error: Option<&str>,
) {
    let Some(deployment_id) = deployment_id else {
        return;
    };
    let Some(event) = progress_event else {
        tracing::warn!(
            "deployment {deployment_id}: no component with the agent-update grant declares a progress-event, so its closing event is not sent"
        );
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
        event: event.to_owned(),
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
        slot::prune(&dir, &state.slots_in_use());
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::RolledBack;
    use super::*;

    fn setup(
        state: &AgentState,
    ) -> Result<(tempfile::TempDir, Journal), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        state.save(&agent_dir(tmp.path()))?;
        let journal = Journal::open(&tmp.path().join("journal"))?;
        Ok((tmp, journal))
    }

    #[test]
    fn a_commit_whose_success_missed_the_journal_is_reported_at_the_next_start()
    -> Result<(), Box<dyn std::error::Error>> {
        let state = AgentState {
            committed: Some("9.9.9".into()),
            succeeded: Some(Succeeded {
                version: "9.9.9".into(),
                previous_version: "1.0.0".into(),
                command_id: "u-1".into(),
                deployment_id: Some("dep-9".into()),
            }),
            ..AgentState::default()
        };
        let (tmp, journal) = setup(&state)?;
        journal.admit("u-1", "update_software")?;
        // The crash left it running; the journal reopened calls it interrupted.
        let journal = Journal::open(&tmp.path().join("journal"))?;
        report_outcomes(tmp.path(), &journal, Some("install_progress"));
        let Some(Outcome::Success { result }) = journal.outcome("u-1") else {
            return Err(format!("u-1: {:?}", journal.outcome("u-1")).into());
        };
        assert_eq!(result["version"], json!("9.9.9"));
        assert_eq!(result["previousVersion"], json!("1.0.0"));
        // The deployment's closing event, under the updater's progress-event.
        let closing = journal
            .get("u-1")
            .and_then(|e| e.final_progress)
            .ok_or("no closing event")?;
        assert_eq!(
            (closing.event.as_str(), &closing.payload["status"]),
            ("install_progress", &json!("completed"))
        );
        let after = AgentState::load(&agent_dir(tmp.path()))?.unwrap_or_default();
        assert_eq!(
            (after.committed.as_deref(), after.succeeded),
            (Some("9.9.9"), None)
        );
        Ok(())
    }

    #[test]
    fn a_rollback_that_did_not_bring_its_version_back_is_reported_as_failed()
    -> Result<(), Box<dyn std::error::Error>> {
        let state = AgentState {
            rolled_back: Some(RolledBack {
                command_id: "rb-1".into(),
                from: "9.9.9".into(),
                to: "0.0.7".into(),
            }),
            ..AgentState::default()
        };
        let (tmp, journal) = setup(&state)?;
        report_outcomes(tmp.path(), &journal, None);
        let own = super::super::own_version();
        assert_eq!(
            journal.outcome("rb-1"),
            Some(Outcome::Error {
                error: format!(
                    "the agent rollback from 9.9.9 to 0.0.7 did not happen: agent {own} is running"
                )
            })
        );
        assert_eq!(
            AgentState::load(&agent_dir(tmp.path()))?,
            Some(AgentState::default())
        );
        Ok(())
    }

    #[test]
    fn the_self_check_asks_for_a_component_with_the_agent_update_grant_not_a_name()
    -> Result<(), Box<dyn std::error::Error>> {
        let trial = Trial::staged_by("u-7", &super::super::own_version(), "0.0.1");
        let state = AgentState {
            trial: Some(trial.clone()),
            ..AgentState::default()
        };
        let (tmp, journal) = setup(&state)?;
        journal.admit("u-7", "install_release")?;
        let gate = Gate::new(tmp.path(), trial, None);
        // A component named anything, holding the grant: the check passes.
        let loaded = vec!["install_release".to_owned(), "get_logs".to_owned()];
        gate.self_check(&loaded, &["install_release".to_owned()], &journal)?;
        // The same components without the grant: refused, and recorded.
        let err = gate
            .self_check(&loaded, &[], &journal)
            .err()
            .ok_or("a release without an updater passed its self-check")?;
        assert!(
            err.to_string().contains(
                "no component with the agent-update grant loaded, so this release could never be updated again (loaded: install_release, get_logs)"
            ),
            "{err}"
        );
        let after = AgentState::load(&agent_dir(tmp.path()))?.unwrap_or_default();
        assert!(
            after
                .trial
                .and_then(|t| t.last_error)
                .is_some_and(|e| e.contains("agent-update grant")),
            "the failure is recorded for the launcher"
        );
        Ok(())
    }
}
