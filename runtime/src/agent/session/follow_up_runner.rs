//! The follow-up runner: what must wait until a command's outcome is known
//! and its result has reached the central server — a reboot, a unit's
//! restart ([`crate::follow_up`]), the restart into an agent release the
//! command staged — and what the agent itself owes once it authenticates:
//! a new version on trial commits, a committed slot reports its health.
//!
//! Handed the pieces it needs (the follow-up registry, where the staging
//! call registers its restart too, and the service manager) rather than the
//! whole host: the session calls it at a command's end, at each proof of
//! delivery and at authentication.

use super::blocking::off_worker;
use crate::follow_up::{Action, FollowUps, Settled};
use crate::journal::Journal;
use crate::platform::systemctl::ServiceManager;
use crate::selfupdate::trial::Gate;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// A command that staged an agent release whose self-restart failed: its
/// id and the error it answers instead.
pub(super) type RestartFailed = (String, String);

/// Runs follow-ups and the agent's own start-up commitments.
pub(super) struct FollowUpRunner {
    follow_ups: Arc<FollowUps>,
    manager: ServiceManager,
    state_path: PathBuf,
    restart_failed_tx: mpsc::UnboundedSender<RestartFailed>,
    restart_failed_rx: mpsc::UnboundedReceiver<RestartFailed>,
    /// This agent is a new version on trial: it commits once authenticated
    /// and says so on the channel (which stops its deadline).
    trial: Option<(Arc<Gate>, oneshot::Sender<()>)>,
    /// Told at the first authentication (a committed slot's health).
    first_authentication: Option<oneshot::Sender<()>>,
}

impl FollowUpRunner {
    pub(super) fn new(
        follow_ups: Arc<FollowUps>,
        manager: ServiceManager,
        state_path: PathBuf,
    ) -> Self {
        let (restart_failed_tx, restart_failed_rx) = mpsc::unbounded_channel();
        FollowUpRunner {
            follow_ups,
            manager,
            state_path,
            restart_failed_tx,
            restart_failed_rx,
            trial: None,
            first_authentication: None,
        }
    }

    /// `tx` is told when the session first authenticates.
    pub(super) fn on_first_authentication(&mut self, tx: oneshot::Sender<()>) {
        self.first_authentication = Some(tx);
    }

    /// Makes this agent the trial of a new version.
    pub(super) fn with_trial(&mut self, gate: Arc<Gate>, committed: oneshot::Sender<()>) {
        self.trial = Some((gate, committed));
    }

    /// A new connection's `pingInterval`: two server pings prove delivery,
    /// so a reboot or self-restart waits that long (plus a margin) before
    /// going ahead anyway.
    pub(super) fn set_ping_interval(&self, ping: Option<Duration>) {
        if let Some(ping) = ping {
            self.follow_ups
                .set_delivery_wait(ping.saturating_mul(2) + Duration::from_secs(5));
        }
    }

    /// Command `id` finished. A failed command's follow-up is dropped (and
    /// the trial of a release it staged cancelled). When it staged an agent
    /// release and succeeded, the agent restarts into it now and the new
    /// agent reports the result: returns `true` (nothing to record here).
    pub(super) fn finished(&self, id: &str, succeeded: bool) -> bool {
        match self.follow_ups.settle(id, succeeded) {
            Settled::Waits => false,
            Settled::RunNow(Action::IntoRelease(unit)) => {
                tracing::warn!(
                    "command {id} staged a new agent; restarting into it (it reports the result)"
                );
                self.restart_into_staged(id.to_owned(), unit);
                true
            }
            Settled::RunNow(action) => {
                drop(self.run(id.to_owned(), action));
                false
            }
            Settled::Dropped(Action::IntoRelease(_)) => {
                crate::selfupdate::trial::cancel(&self.state_path, id);
                false
            }
            Settled::Dropped(action) => {
                tracing::warn!("command {id} failed: {action} it asked for is cancelled");
                false
            }
        }
    }

    /// Whether a follow-up waits for delivery (only then is it worth
    /// checking for overdue ones).
    pub(super) fn waiting(&self) -> bool {
        !self.follow_ups.is_empty()
    }

    /// `id`'s result is proven delivered: its follow-up runs now.
    pub(super) fn delivered(&self, id: &str) -> Option<JoinHandle<()>> {
        let action = self.follow_ups.take(id)?;
        Some(self.run(id.to_owned(), action))
    }

    /// A reboot or self-restart whose result could not be confirmed
    /// delivered in time runs anyway; the result stays in the outbox.
    pub(super) fn run_overdue(&self) -> Vec<JoinHandle<()>> {
        self.follow_ups
            .take_overdue()
            .into_iter()
            .map(|(id, action)| {
                tracing::warn!("the result of command {id} was not confirmed delivered in time");
                self.run(id, action)
            })
            .collect()
    }

    /// The next command whose self-restart into a staged release failed
    /// (see [`Self::finished`]): the session records its error.
    pub(super) async fn restart_failed(&mut self) -> Option<RestartFailed> {
        self.restart_failed_rx.recv().await
    }

    /// Authenticated: the first time, tells whoever waits for it; a new
    /// agent on trial is healthy now and commits (the journal gets the
    /// update's success, for the session to send).
    pub(super) fn authenticated(&mut self, journal: &Journal) {
        if let Some(tx) = self.first_authentication.take() {
            let _ = tx.send(());
        }
        if let Some((gate, committed)) = self.trial.take() {
            if off_worker(|| gate.commit(journal)) {
                let _ = committed.send(());
            } else {
                self.trial = Some((gate, committed));
            }
        }
    }

    fn run(&self, id: String, action: Action) -> JoinHandle<()> {
        let manager = self.manager.clone();
        let state_path = self.state_path.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = crate::follow_up::run(&manager, &id, &action) {
                tracing::error!("{e}");
                // Its success was already sent: tell the server with the
                // next heartbeats.
                crate::follow_up::record_failure(
                    &state_path,
                    &id,
                    &action.to_string(),
                    &e.to_string(),
                );
            }
        })
    }

    /// Restarts the agent's unit into the release command `id` staged. If
    /// that fails, nothing would ever run the trial nor send the command's
    /// result, and every later agent update would be refused as "not
    /// finished": the trial is cancelled (its slot removed) and the command
    /// answers the error.
    fn restart_into_staged(&self, id: String, unit: String) {
        let manager = self.manager.clone();
        let state_path = self.state_path.clone();
        let failed = self.restart_failed_tx.clone();
        tokio::task::spawn_blocking(move || {
            let action = Action::IntoRelease(unit.clone());
            if let Err(e) = crate::follow_up::run(&manager, &id, &action) {
                tracing::error!(
                    "command {id}: the agent release is staged but {action} failed ({e}); update cancelled"
                );
                crate::selfupdate::trial::cancel(&state_path, &id);
                let _ = failed.send((
                    id,
                    format!(
                        "the agent release was staged but the agent could not restart into it: {e}. The update is cancelled and this agent stays; send the update again once `systemctl restart {unit}` works"
                    ),
                ));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Outcome;
    use crate::platform::systemctl::double;
    use crate::selfupdate::state::{AgentState, Trial};
    use std::path::Path;

    /// A runner over `state` whose systemctl is `manager`.
    fn runner(
        state: &Path,
        manager: ServiceManager,
    ) -> Result<FollowUpRunner, Box<dyn std::error::Error>> {
        Ok(FollowUpRunner::new(
            Arc::new(FollowUps::new(state.to_owned())),
            manager,
            state.to_owned(),
        ))
    }

    /// A state folder, a systemctl double's folder, and a runner over them
    /// whose command `c-1` asked for a reboot (waiting `wait` at most).
    fn asked_to_reboot(
        wait: Duration,
    ) -> Result<(tempfile::TempDir, tempfile::TempDir, FollowUpRunner), Box<dyn std::error::Error>>
    {
        let state = tempfile::tempdir()?;
        let systemctl = tempfile::tempdir()?;
        let runner = runner(state.path(), double::fake(systemctl.path())?)?;
        runner.follow_ups.add("c-1", Action::Reboot, wait)?;
        Ok((state, systemctl, runner))
    }

    #[tokio::test]
    async fn a_reboot_runs_once_its_result_is_delivered_never_before()
    -> Result<(), Box<dyn std::error::Error>> {
        let (_state, systemctl, runner) = asked_to_reboot(Duration::from_secs(600))?;
        assert!(
            !runner.finished("c-1", true),
            "the agent records the result"
        );
        assert!(runner.waiting());
        assert!(runner.run_overdue().is_empty(), "its deadline is far off");
        assert_eq!(double::calls(systemctl.path()), "", "not before delivery");
        runner.delivered("c-1").ok_or("a follow-up to run")?.await?;
        assert_eq!(double::calls(systemctl.path()), "reboot --no-block\n");
        assert!(runner.delivered("c-1").is_none(), "once");
        assert!(!runner.waiting());
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_command_drops_the_reboot_it_asked_for()
    -> Result<(), Box<dyn std::error::Error>> {
        let (state, systemctl, runner) = asked_to_reboot(Duration::ZERO)?;
        assert!(state.path().join(crate::follow_up::REBOOT_FILE).is_file());
        assert!(!runner.finished("c-1", false));
        assert!(!runner.waiting());
        assert!(runner.delivered("c-1").is_none() && runner.run_overdue().is_empty());
        assert!(!state.path().join(crate::follow_up::REBOOT_FILE).exists());
        assert_eq!(double::calls(systemctl.path()), "");
        Ok(())
    }

    #[tokio::test]
    async fn an_overdue_restart_runs_anyway_and_its_failure_is_kept_for_the_heartbeat()
    -> Result<(), Box<dyn std::error::Error>> {
        let state = tempfile::tempdir()?;
        // No systemctl at all: the restart fails as on a broken box.
        let missing = ServiceManager::new(PathBuf::from("/nonexistent/systemctl"));
        let runner = runner(state.path(), missing)?;
        runner
            .follow_ups
            .add("c-2", Action::Restart("neopro-app".into()), Duration::ZERO)?;
        assert!(runner.run_overdue().is_empty(), "not before its outcome");
        assert!(!runner.finished("c-2", true));
        for run in runner.run_overdue() {
            run.await?;
        }
        let failure = crate::follow_up::recent_failure(state.path()).ok_or("a failure kept")?;
        assert_eq!(
            (failure.command_id.as_str(), failure.action.as_str()),
            ("c-2", "the restart of neopro-app")
        );
        assert!(
            failure.error.contains("/nonexistent/systemctl"),
            "{}",
            failure.error
        );
        Ok(())
    }

    #[tokio::test]
    async fn the_first_authentication_commits_a_trial_and_is_told_once()
    -> Result<(), Box<dyn std::error::Error>> {
        let state = tempfile::tempdir()?;
        let trial = Trial::staged_by("u-1", "9.9.9", "1.0.0");
        let agent_dir = crate::selfupdate::agent_dir(state.path());
        AgentState {
            trial: Some(trial.clone()),
            ..AgentState::default()
        }
        .save(&agent_dir)?;
        let journal = Journal::open(&state.path().join("journal"))?;
        journal.admit("u-1", "update_software")?;
        let systemctl = tempfile::tempdir()?;
        let mut runner = runner(state.path(), double::fake(systemctl.path())?)?;
        let (first_tx, mut first) = oneshot::channel();
        let (committed_tx, mut committed) = oneshot::channel();
        runner.on_first_authentication(first_tx);
        runner.with_trial(Arc::new(Gate::new(state.path(), trial, None)), committed_tx);
        runner.authenticated(&journal);
        assert_eq!((first.try_recv(), committed.try_recv()), (Ok(()), Ok(())));
        let Some(Outcome::Success { result }) = journal.outcome("u-1") else {
            return Err(format!("u-1: {:?}", journal.outcome("u-1")).into());
        };
        assert_eq!(result["version"], serde_json::json!("9.9.9"));
        let after = AgentState::load(&agent_dir)?.unwrap_or_default();
        assert_eq!(
            (after.committed.as_deref(), after.trial),
            (Some("9.9.9"), None)
        );
        // Later authentications owe nothing more.
        runner.authenticated(&journal);
        assert!(runner.trial.is_none() && runner.first_authentication.is_none());
        Ok(())
    }
}
