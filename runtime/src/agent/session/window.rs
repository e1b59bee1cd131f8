//! The maintenance-window glue of the session: what becomes of a command
//! its manifest lists under `maintenance-window` once admitted — run now,
//! refused, kept for the window after its component checked it
//! (`check-before-window`), joined to a kept copy — and of the kept ones
//! when the window opens or their result is journaled.
//!
//! The books are [`WindowQueue`]'s; this module adds the order of things
//! around them (one check at a time, the copies that arrive meanwhile
//! handled after it, the ids that joined an entry answered with its
//! result) and returns what the session must do as [`Effect`]s.

use super::effects::{Command, Effect};
use super::window_queue::{Arrival, WindowQueue};
use crate::agent::maintenance_window::ScheduledUpdate;
use crate::config::UpdateWindow;
use crate::journal::Outcome;
use serde_json::Value;
use std::collections::VecDeque;
use std::path::Path;

/// What the glue reads of the world: the hour, the manifests, the
/// journal, the agent's own release. The session's is [`Live`]; tests
/// answer from a table.
pub(super) trait Facts {
    /// The box's local hour (`None` when unknown: run at once).
    fn hour(&self) -> Option<u8>;
    /// Whether `command_type`'s manifest lists it under
    /// `check-before-window`.
    fn checks_before_window(&self, command_type: &str) -> bool;
    /// The command types the manifests list under `maintenance-window`.
    fn window_commands(&self) -> Vec<String>;
    /// An id's final journaled outcome.
    fn final_outcome(&self, id: &str) -> Option<Outcome>;
    /// The success to answer when `data` is the update this very agent
    /// came from, sent again by the server.
    fn already_installed(&self, data: &Value) -> Option<Value>;
}

/// The session's facts: the dispatcher's manifests, the journal, the
/// agent's state folder.
pub(super) struct Live<'a> {
    dispatcher: &'a crate::agent::dispatch::Dispatcher,
    journal: &'a crate::journal::Journal,
    state_path: &'a Path,
}

impl<'a> Live<'a> {
    pub(super) fn of(
        dispatcher: &'a crate::agent::dispatch::Dispatcher,
        journal: &'a crate::journal::Journal,
        config: &'a crate::config::SiteConfig,
    ) -> Self {
        Live {
            dispatcher,
            journal,
            state_path: &config.state_path,
        }
    }
}

impl Facts for Live<'_> {
    fn hour(&self) -> Option<u8> {
        crate::agent::maintenance_window::local_hour()
    }

    fn checks_before_window(&self, command_type: &str) -> bool {
        self.dispatcher.checks_before_window(command_type)
    }

    fn window_commands(&self) -> Vec<String> {
        self.dispatcher.maintenance_window_commands()
    }

    fn final_outcome(&self, id: &str) -> Option<Outcome> {
        super::blocking::off_worker(|| super::journal_steps::final_outcome(self.journal, id))
    }

    fn already_installed(&self, data: &Value) -> Option<Value> {
        super::blocking::off_worker(|| {
            crate::selfupdate::reinstall::already_installed(
                self.state_path,
                &crate::selfupdate::own_version(),
                data,
            )
        })
    }
}

/// The kept commands and the check under way.
pub(super) struct Window {
    queue: WindowQueue,
    /// A component is checking a command (one at a time).
    checking: bool,
    /// Commands that arrived during that check, handled after it: a copy of
    /// the deployment being checked must find the kept entry to join it.
    arrived_meanwhile: VecDeque<Command>,
}

impl Window {
    pub(super) fn new(state_path: &Path, window: UpdateWindow) -> Self {
        Window {
            queue: WindowQueue::new(state_path, window),
            checking: false,
            arrived_meanwhile: VecDeque::new(),
        }
    }

    /// Whether `id` is kept (waiting or running): it has no result to send
    /// before it has run ("interrupted" after a restart is not one).
    pub(super) fn holds(&self, id: &str) -> bool {
        self.queue.contains(id)
    }

    /// A kept command delivered again under its own id: its "scheduled"
    /// progress again while it waits, nothing else. None when `id` is not
    /// kept.
    pub(super) fn redelivered(&self, id: &str, facts: &impl Facts) -> Option<Vec<Effect>> {
        if !self.queue.contains(id) {
            return None;
        }
        tracing::info!("update {id} is already scheduled for the maintenance window");
        Some(
            self.queue
                .waiting_entry(id)
                .and_then(|update| scheduled(update, facts))
                .into_iter()
                .collect(),
        )
    }

    /// The "scheduled" progress of every waiting command (the dashboard
    /// shows them in progress until their final result comes).
    pub(super) fn waiting(&self, facts: &impl Facts) -> Vec<Effect> {
        self.queue
            .waiting()
            .into_iter()
            .filter_map(|update| scheduled(update, facts))
            .collect()
    }

    /// An admitted maintenance-window command: run now, answered, joined to
    /// a kept copy, checked by its component, or kept.
    pub(super) fn arrive(&mut self, command: Command, facts: &impl Facts) -> Vec<Effect> {
        if self.checking {
            self.arrived_meanwhile.push_back(command);
            return Vec::new();
        }
        // The server's copy of the update this agent came from: success,
        // never a refusal that would flip the completed deployment.
        if let Some(result) = facts.already_installed(&command.data) {
            tracing::info!(
                "update {}: this agent release is already installed under this deployment (the server sent it again)",
                command.id
            );
            return vec![Effect::RecordAndSend {
                id: command.id,
                outcome: Outcome::Success { result },
            }];
        }
        let arrival = self
            .queue
            .arrive(&command.id, &command.data, facts.hour(), |id| {
                facts.final_outcome(id)
            });
        match arrival {
            Arrival::RunNow => vec![Effect::Start(command)],
            Arrival::ToKeep if facts.checks_before_window(&command.command_type) => {
                self.checking = true;
                vec![Effect::Check(command)]
            }
            Arrival::ToKeep => self.keep(command, facts),
            Arrival::Kept(update) => scheduled(update, facts).into_iter().collect(),
            Arrival::Joined { .. } => Vec::new(),
            Arrival::Answered(outcome) => vec![Effect::RecordAndSend {
                id: command.id,
                outcome,
            }],
        }
    }

    /// The component's answer to its check (None: no component handles
    /// the command any more; it is kept, and its run will say so): kept,
    /// or refused with the component's message. Then the commands that
    /// arrived meanwhile.
    pub(super) fn checked(
        &mut self,
        command: Command,
        answer: Option<Outcome>,
        facts: &impl Facts,
    ) -> Vec<Effect> {
        self.checking = false;
        let mut effects = match answer {
            Some(Outcome::Error { error }) => {
                tracing::info!(
                    "update {} refused by its component's check: {error}",
                    command.id
                );
                vec![Effect::RecordAndSend {
                    id: command.id,
                    outcome: Outcome::Error { error },
                }]
            }
            Some(Outcome::Success { .. }) | None => self.keep(command, facts),
        };
        while !self.checking
            && let Some(next) = self.arrived_meanwhile.pop_front()
        {
            effects.extend(self.arrive(next, facts));
        }
        effects
    }

    fn keep(&mut self, command: Command, facts: &impl Facts) -> Vec<Effect> {
        match self
            .queue
            .keep(&command.id, &command.command_type, &command.data)
        {
            Arrival::Kept(update) => scheduled(update, facts).into_iter().collect(),
            Arrival::Answered(outcome) => vec![Effect::RecordAndSend {
                id: command.id,
                outcome,
            }],
            _ => Vec::new(),
        }
    }

    /// Kept commands whose final result is already journaled (a restart
    /// after they finished, or after the resume at start completed or
    /// rolled them back) are forgotten: that result is sent, to them and
    /// to the ids that joined them.
    pub(super) fn settle(&mut self, facts: &impl Facts) -> Vec<Effect> {
        let mut effects = Vec::new();
        for (update, outcome) in self.queue.settle(|id| facts.final_outcome(id)) {
            let also = joined(&update.also, &outcome);
            effects.push(Effect::Send {
                id: update.id,
                outcome,
            });
            effects.extend(also);
        }
        effects
    }

    /// When the window is open: the kept commands to start. Each stays kept
    /// until its final result is journaled ([`Window::finished`]).
    pub(super) fn due(&mut self, facts: &impl Facts) -> Vec<Effect> {
        let mut effects = self.settle(facts);
        for update in self.queue.due(facts.hour()) {
            match command_type_of(&update, facts) {
                Some(command_type) => {
                    tracing::info!("maintenance window: running scheduled update {}", update.id);
                    effects.push(Effect::Start(Command {
                        id: update.id,
                        command_type,
                        data: update.data,
                    }));
                }
                None => effects.extend(self.unrunnable(&update, facts)),
            }
        }
        effects
    }

    /// An entry written before the type was recorded, when the manifests
    /// do not list exactly one maintenance-window command: it and the ids
    /// that joined it get an error result.
    fn unrunnable(&mut self, update: &ScheduledUpdate, facts: &impl Facts) -> Vec<Effect> {
        let found = facts.window_commands();
        let error = format!(
            "scheduled command {} names no command type, and the components list {} maintenance-window commands ({}); it cannot be run",
            update.id,
            found.len(),
            found.join(", ")
        );
        tracing::error!("{error}");
        let also = self.queue.abandon(&update.id);
        let outcome = Outcome::Error { error };
        let mut effects = vec![Effect::RecordAndSend {
            id: update.id.clone(),
            outcome: outcome.clone(),
        }];
        effects.extend(joined(&also, &outcome));
        effects
    }

    /// `id`'s final result is journaled: when it is a kept command this
    /// process ran, it is forgotten now (not before: a restart in between
    /// finds it and its result), and the ids that joined it get `outcome`.
    pub(super) fn finished(&mut self, id: &str, outcome: &Outcome) -> Vec<Effect> {
        joined(&self.queue.finished(id), outcome)
    }
}

/// The ids that joined a kept command (the same deployment sent again) get
/// its final outcome, each under its own id: the server keeps one command
/// row per id.
fn joined(ids: &[String], outcome: &Outcome) -> Vec<Effect> {
    ids.iter()
        .map(|id| Effect::RecordAndSend {
            id: id.clone(),
            outcome: outcome.clone(),
        })
        .collect()
}

/// The command a kept entry runs: its own, or for an entry written before
/// the type was recorded, the one command the manifests list under
/// `maintenance-window` (None when that is not one command).
fn command_type_of(update: &ScheduledUpdate, facts: &impl Facts) -> Option<String> {
    if !update.command_type.is_empty() {
        return Some(update.command_type.clone());
    }
    match facts.window_commands().as_slice() {
        [only] => Some(only.clone()),
        _ => None,
    }
}

fn scheduled(update: ScheduledUpdate, facts: &impl Facts) -> Option<Effect> {
    let command_type = command_type_of(&update, facts)?;
    Some(Effect::Scheduled {
        update,
        command_type,
    })
}

#[cfg(test)]
mod tests;
