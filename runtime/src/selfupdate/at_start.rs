//! Self-update's part of the agent's start, in one place: what earlier
//! trials owe the server is reported, this agent — when it is a new
//! version on trial — checks itself and gets its deadline, and a committed
//! slot's health is watched. `agent::run` calls [`AtStart::begin`] once the
//! components are loaded and hands the pieces to the session; nothing of
//! the trial's plumbing lives in the agent's wiring.

use super::trial::{Gate, TrialError};
use crate::journal::Journal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::oneshot;

/// What the loaded components say about self-update (the dispatcher's
/// answers, so this floor needs no dispatcher).
#[derive(Debug, Clone, Default)]
pub struct Updaters {
    /// Every command that can run here.
    pub runnable: Vec<String>,
    /// The commands of the components holding the `agent-update` grant.
    pub commands: Vec<String>,
    /// Their manifest's `progress-event`.
    pub progress_event: Option<String>,
}

/// Self-update's state for one run of the agent.
#[derive(Debug)]
pub struct AtStart {
    state_path: PathBuf,
    /// This agent is a new version on trial.
    gate: Option<Arc<Gate>>,
    committed_tx: Option<oneshot::Sender<()>>,
    committed_rx: Option<oneshot::Receiver<()>>,
    expired: Arc<AtomicBool>,
}

impl AtStart {
    /// Reports the outcomes earlier trials left in the state file; when
    /// this agent is on trial, runs its self-check (a failure is recorded
    /// for the launcher, which falls back at once, and returned).
    pub fn begin(
        state_path: &Path,
        journal: &Journal,
        updaters: &Updaters,
    ) -> Result<Self, TrialError> {
        let event = updaters.progress_event.clone();
        super::trial::report_outcomes(state_path, journal, event.as_deref());
        let gate = super::trial::this_trial(state_path)
            .map(|trial| Arc::new(Gate::new(state_path, trial, event)));
        if let Some(gate) = &gate {
            gate.self_check(&updaters.runnable, &updaters.commands, journal)?;
        }
        Ok(Self::with_gate(state_path, gate))
    }

    fn with_gate(state_path: &Path, gate: Option<Arc<Gate>>) -> Self {
        let (committed_tx, committed_rx) = oneshot::channel();
        AtStart {
            state_path: state_path.to_owned(),
            gate,
            committed_tx: Some(committed_tx),
            committed_rx: Some(committed_rx),
            expired: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A committed slot is healthy once authenticated (`authenticated` is
    /// told) or up for [`STABLE_AFTER`](super::state::STABLE_AFTER): the
    /// launcher's count of its starts is reset then. Nothing for the
    /// packaged agent or a trial.
    pub fn watch_health(&self, authenticated: oneshot::Receiver<()>) {
        if !super::trial::is_committed_slot() {
            return;
        }
        let state_path = self.state_path.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(super::state::STABLE_AFTER) => {}
                sent = authenticated => if sent.is_err() {
                    return;
                },
            }
            let _ = tokio::task::spawn_blocking(move || {
                super::trial::mark_healthy(&state_path);
            })
            .await;
        });
    }

    /// For the session, when this agent is on trial: its gate (commit at
    /// authentication) and the sender it tells once committed (which stops
    /// the deadline). Given once.
    pub fn trial_for_session(&mut self) -> Option<(Arc<Gate>, oneshot::Sender<()>)> {
        let gate = self.gate.clone()?;
        let committed = self.committed_tx.take()?;
        Some((gate, committed))
    }

    /// Resolves when a trial's deadline passes before it committed (the
    /// agent then stops: see [`AtStart::outcome`]); never for an agent that
    /// is not on trial, or once committed. Taken once.
    pub fn deadline(&mut self) -> impl std::future::Future<Output = ()> + use<> {
        let deadline = self.gate.as_ref().map(|g| g.remaining());
        let committed = self.committed_rx.take();
        let expired = self.expired.clone();
        async move {
            let (Some(deadline), Some(committed)) = (deadline, committed) else {
                return std::future::pending().await;
            };
            let sleep = tokio::time::sleep(deadline);
            tokio::pin!(sleep);
            tokio::select! {
                () = &mut sleep => {}
                sent = committed => {
                    if sent.is_ok() {
                        return std::future::pending().await;
                    }
                    // The session dropped its end without committing: the
                    // deadline holds.
                    sleep.await;
                }
            }
            expired.store(true, Ordering::SeqCst);
        }
    }

    /// After the session: the trial's deadline error when it passed (the
    /// launcher then falls back), `Ok` otherwise.
    pub fn outcome(&self) -> Result<(), TrialError> {
        match &self.gate {
            Some(gate) if self.expired.load(Ordering::SeqCst) => Err(gate.expired()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selfupdate::agent_dir;
    use crate::selfupdate::state::{AgentState, Trial};

    /// A trial of `deadline_secs` written to a new state folder.
    fn on_trial(
        deadline_secs: u64,
    ) -> Result<(tempfile::TempDir, Arc<Gate>), Box<dyn std::error::Error>> {
        let state = tempfile::tempdir()?;
        let mut trial = Trial::staged_by("u-7", "9.9.9", "1.0.0");
        trial.deadline_secs = deadline_secs;
        AgentState {
            trial: Some(trial.clone()),
            ..AgentState::default()
        }
        .save(&agent_dir(state.path()))?;
        let gate = Arc::new(Gate::new(state.path(), trial, None));
        Ok((state, gate))
    }

    /// Whether `future` is still pending when first polled.
    async fn is_pending(future: impl std::future::Future<Output = ()>) -> bool {
        tokio::select! {
            biased;
            () = future => false,
            () = std::future::ready(()) => true,
        }
    }

    #[tokio::test]
    async fn a_trial_past_its_deadline_ends_with_the_deadline_error_recorded()
    -> Result<(), Box<dyn std::error::Error>> {
        let (state, gate) = on_trial(0)?;
        let mut at_start = AtStart::with_gate(state.path(), Some(gate));
        let (_gate, _committed) = at_start.trial_for_session().ok_or("a trial")?;
        assert!(at_start.trial_for_session().is_none(), "given once");
        at_start.deadline().await;
        let error = at_start.outcome().err().ok_or("the deadline passed")?;
        let expected =
            "the new agent 9.9.9 did not authenticate with the central server within 0 s";
        assert_eq!(error.to_string(), expected);
        let after = AgentState::load(&agent_dir(state.path()))?.unwrap_or_default();
        assert_eq!(
            after.trial.and_then(|t| t.last_error).as_deref(),
            Some(expected),
            "recorded for the launcher"
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_committed_trial_or_an_agent_not_on_trial_has_no_deadline()
    -> Result<(), Box<dyn std::error::Error>> {
        let (state, gate) = on_trial(3600)?;
        let mut at_start = AtStart::with_gate(state.path(), Some(gate));
        let (_gate, committed) = at_start.trial_for_session().ok_or("a trial")?;
        committed.send(()).map_err(|()| "the deadline listens")?;
        assert!(
            is_pending(at_start.deadline()).await,
            "a committed trial's deadline passed"
        );
        assert!(at_start.outcome().is_ok());
        let mut not_on_trial = AtStart::with_gate(state.path(), None);
        assert!(not_on_trial.trial_for_session().is_none());
        assert!(
            is_pending(not_on_trial.deadline()).await,
            "no trial, yet a deadline"
        );
        assert!(not_on_trial.outcome().is_ok());
        Ok(())
    }
}
