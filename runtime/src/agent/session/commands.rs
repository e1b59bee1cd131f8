//! The session's command path: what the intake and the window glue decided
//! carried out — journal work queued and its steps taken back, commands and
//! checks started on the dispatcher, outcomes recorded, then sent when they
//! may go. The event loop (`mod.rs`) calls in here; nothing here loops.

use super::Session;
use super::effects::{Command, Effect, JournalJob};
use super::intake;
use super::journal_steps::{Step, final_progress_of};
use super::outbox::RECORD_RETRY;
use super::progress::LinkProgress;
use super::window;
use crate::host::ProgressSink;
use crate::journal::{FinalProgress, JournalError, Outcome};
use std::sync::Arc;

impl Session {
    /// Carries out what the intake and the window glue decided, in order.
    pub(super) fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::RecordAndSend { id, outcome } => self.record_and_send(id, outcome),
                Effect::Send { id, outcome } => self.send_result(&id, &outcome),
                Effect::FinalProgress(final_progress) => {
                    self.delivery.final_progress(Some(final_progress))
                }
                Effect::Start(command) => self.spawn_command(command),
                Effect::Check(command) => self.spawn_check(command),
                Effect::Scheduled {
                    update,
                    command_type,
                } => self.send_scheduled_progress(&update, &command_type),
                Effect::Journal(job) => self.journal_job(job),
            }
        }
    }

    /// Queues journal work; its [`Step`] comes back through the loop.
    pub(super) fn journal_job(&mut self, job: JournalJob) {
        self.journal_pending += 1;
        let journal = self.journal.clone();
        let steps = self.steps_tx.clone();
        self.queue.submit(move || {
            let _ = steps.send(job(&journal));
        });
    }

    pub(super) fn on_step(&mut self, step: Step) {
        self.journal_pending = self.journal_pending.saturating_sub(1);
        match step {
            Step::Looked {
                command,
                known,
                final_progress,
            } => self.apply(intake::looked(command, known, final_progress)),
            Step::Admitted {
                command,
                admission,
                final_progress,
            } => {
                let facts = window::Live::of(&self.dispatcher, &self.journal, &self.config);
                let effects = intake::admitted(
                    command,
                    admission,
                    final_progress,
                    &*self.dispatcher,
                    &mut self.window,
                    &facts,
                );
                self.apply(effects);
            }
            Step::Recorded {
                id,
                outcome,
                written,
                final_progress,
            } => self.on_recorded(id, outcome, written, final_progress),
            Step::Send { id, outcome } => {
                if let Some(outcome) = outcome {
                    self.send_result(&id, &outcome);
                }
            }
            Step::Checked { command, answer } => {
                let facts = window::Live::of(&self.dispatcher, &self.journal, &self.config);
                let effects = self.window.checked(command, answer, &facts);
                self.apply(effects);
            }
        }
    }

    pub(super) fn spawn_command(&mut self, command: Command) {
        let Command {
            id,
            command_type,
            data,
        } = command;
        let dispatcher = self.dispatcher.clone();
        let done = self.done_tx.clone();
        let progress: Arc<dyn ProgressSink> = Arc::new(LinkProgress::new(
            self.link.clone(),
            self.journal.clone(),
            id.clone(),
            self.auth.session_no(),
            dispatcher.progress_needs_deployment(&command_type),
        ));
        self.running += 1;
        tokio::spawn(async move {
            let outcome = dispatcher
                .run(&id, &command_type, &data, Some(progress))
                .await;
            let _ = done.send((id, outcome));
        });
    }

    /// Asks a command's component to check it before it is kept for the
    /// window (`check-before-window`), off the loop; the answer comes back
    /// as [`Step::Checked`] (counted as pending: a stop waits for it).
    pub(super) fn spawn_check(&mut self, command: Command) {
        self.journal_pending += 1;
        let dispatcher = self.dispatcher.clone();
        let steps = self.steps_tx.clone();
        tokio::spawn(async move {
            let answer = dispatcher
                .check(&command.id, &command.command_type, &command.data)
                .await;
            let _ = steps.send(Step::Checked { command, answer });
        });
    }

    pub(super) fn on_done(&mut self, id: String, outcome: Outcome) {
        self.running = self.running.saturating_sub(1);
        match &outcome {
            Outcome::Success { .. } => tracing::info!("command {id} succeeded"),
            Outcome::Error { error } => tracing::warn!("command {id} failed: {error}"),
        }
        let succeeded = matches!(outcome, Outcome::Success { .. });
        // An agent release was staged: the new agent sends this result.
        if self.follow_up.finished(&id, succeeded) {
            return;
        }
        self.record_and_send(id, outcome);
    }

    /// Journals an outcome, then sends it. A failed write keeps the outcome
    /// for a retry instead of sending it: were it sent, a restart before the
    /// write succeeds would report the command "interrupted" after the
    /// server had its real result.
    pub(super) fn record_and_send(&mut self, id: String, outcome: Outcome) {
        self.journal_job(Box::new(move |journal| {
            let written = journal.complete(&id, outcome.clone());
            let final_progress = written
                .is_ok()
                .then(|| final_progress_of(journal, &id))
                .flatten();
            Step::Recorded {
                id,
                outcome,
                written,
                final_progress,
            }
        }));
    }

    pub(super) fn on_recorded(
        &mut self,
        id: String,
        outcome: Outcome,
        written: Result<(), JournalError>,
        final_progress: Option<FinalProgress>,
    ) {
        if let Err(e) = written {
            tracing::error!(
                "{e}; the result of command {id} is kept and sent once it is recorded (retried every {} s)",
                RECORD_RETRY.as_secs()
            );
            self.delivery.outbox.keep_unrecorded(id, outcome);
            return;
        }
        // Journaled: a scheduled update can be forgotten now, not before (a
        // restart in between finds it and its result).
        let joined = self.window.finished(&id, &outcome);
        self.apply(joined);
        // Its closing progress event went out while the link was down, or
        // on a session that ended since.
        self.delivery.final_progress(final_progress);
        self.send_result(&id, &outcome);
        self.status
            .results_waiting(self.journal.undelivered_count());
    }

    /// Emits a result if it may go; otherwise it waits in the journal. A
    /// kept command has no result until it has run ("interrupted" after a
    /// restart while it waited is not one).
    pub(super) fn send_result(&mut self, id: &str, outcome: &Outcome) {
        let open = self.auth.is_authenticated() && !self.window.holds(id);
        self.delivery.result(id, outcome, open);
    }
}
