//! The session's command intake: what becomes of a `command` event (or one
//! that could not be decoded, or was too large) — journaled before it runs
//! unless its component is read-only, answered from the journal when it ran
//! already, handed to the maintenance-window glue when its manifest says
//! so, refused once with a result a re-sent copy gets again. Decisions are
//! returned as [`Effect`]s for the event loop to carry out.

use super::effects::{Command, Effect};
use super::journal_steps::{Step, data_of, final_progress_of, refuse_once};
use super::window::{Facts, Window};
use crate::journal::{Admission, FinalProgress, JournalError, Outcome};
use serde_json::Value;

/// Broadcasts the server sends to every socket; not for us (§1.10).
pub(super) const IGNORED_BROADCASTS: &[&str] = &[
    "command_timeout",
    "command_completed",
    "site_config_updated",
    "deploy_progress",
    "update_progress",
    "match-info-updated",
    "score-update",
    "score-reset",
];

/// What the intake reads of the manifests (the dispatcher's answers).
pub(super) trait Kinds {
    /// Listed under `maintenance-window`: it may wait for the window.
    fn uses_maintenance_window(&self, command_type: &str) -> bool;
    /// Its component is `read-only`: no journal entry before it runs.
    fn is_read_only(&self, command_type: &str) -> bool;
}

impl Kinds for crate::agent::dispatch::Dispatcher {
    fn uses_maintenance_window(&self, command_type: &str) -> bool {
        crate::agent::dispatch::Dispatcher::uses_maintenance_window(self, command_type)
    }

    fn is_read_only(&self, command_type: &str) -> bool {
        crate::agent::dispatch::Dispatcher::is_read_only(self, command_type)
    }
}

/// A `command` event from the server.
pub(super) fn command(
    command: Value,
    kinds: &impl Kinds,
    window: &Window,
    facts: &impl Facts,
) -> Vec<Effect> {
    let Some(id) = command.get("id").and_then(Value::as_str).map(str::to_owned) else {
        tracing::warn!("ignoring a command without an id: {command}");
        return Vec::new();
    };
    let command_type = command
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("undefined")
        .to_owned();
    tracing::info!("command {id}: {command_type}");
    if kinds.uses_maintenance_window(&command_type)
        && let Some(effects) = window.redelivered(&id, facts)
    {
        return effects;
    }
    let read_only = kinds.is_read_only(&command_type);
    let command = Command {
        id,
        command_type,
        data: data_of(command),
    };
    if read_only {
        // Changes nothing: no journal entry (no fsync) before it runs; a
        // re-delivered one may simply run again. Its result is kept like
        // any other until delivered.
        return vec![Effect::Journal(Box::new(move |journal| Step::Looked {
            known: journal.get(&command.id).and_then(|e| e.outcome),
            final_progress: None,
            command,
        }))];
    }
    vec![Effect::Journal(Box::new(move |journal| {
        let admission = journal.admit(&command.id, &command.command_type);
        let final_progress = match &admission {
            Ok(Admission::Done(_)) => final_progress_of(journal, &command.id),
            _ => None,
        };
        Step::Admitted {
            command,
            admission,
            final_progress,
        }
    }))]
}

/// A read-only command looked up: its known result again, or run it.
pub(super) fn looked(
    command: Command,
    known: Option<Outcome>,
    final_progress: Option<FinalProgress>,
) -> Vec<Effect> {
    match known {
        Some(outcome) => answered_again(command.id, outcome, final_progress),
        None => vec![Effect::Start(command)],
    }
}

/// A state-changing command journaled (or found known).
pub(super) fn admitted(
    command: Command,
    admission: Result<Admission, JournalError>,
    final_progress: Option<FinalProgress>,
    kinds: &impl Kinds,
    window: &mut Window,
    facts: &impl Facts,
) -> Vec<Effect> {
    match admission {
        // Only the commands a manifest lists under maintenance-window wait
        // for it (an update does, a failed canary's rollback runs at once).
        Ok(Admission::Run) if kinds.uses_maintenance_window(&command.command_type) => {
            window.arrive(command, facts)
        }
        Ok(Admission::Run) => vec![Effect::Start(command)],
        Ok(Admission::Running) => {
            tracing::info!("command {} is already running", command.id);
            Vec::new()
        }
        Ok(Admission::Done(outcome)) => {
            tracing::info!(
                "command {} already done: sending its result again",
                command.id
            );
            answered_again(command.id, outcome, final_progress)
        }
        Err(e) => {
            tracing::error!("{e}");
            vec![Effect::Send {
                id: command.id,
                outcome: Outcome::Error {
                    error: format!(
                        "the agent cannot record this command, so it did not run it: {e}"
                    ),
                },
            }]
        }
    }
}

/// A known result sent again, after the deployment's closing event.
fn answered_again(
    id: String,
    outcome: Outcome,
    final_progress: Option<FinalProgress>,
) -> Vec<Effect> {
    let mut effects: Vec<Effect> = final_progress
        .map(Effect::FinalProgress)
        .into_iter()
        .collect();
    effects.push(Effect::Send { id, outcome });
    effects
}

/// A message too large to decode: a command gets an error result under
/// its id (recorded, so a re-sent copy gets the same answer); anything else
/// is logged and dropped.
pub(super) fn oversized(
    bytes: usize,
    limit: usize,
    skimmed: Option<crate::link::oversized::Skimmed>,
) -> Vec<Effect> {
    let Some(skimmed) = skimmed else {
        tracing::warn!("dropped a {bytes}-byte message from the server (limit {limit} bytes)");
        return Vec::new();
    };
    let (Some(id), "command") = (skimmed.id, skimmed.event.as_str()) else {
        tracing::warn!(
            "dropped a {bytes}-byte '{}' event from the server (limit {limit} bytes)",
            skimmed.event
        );
        return Vec::new();
    };
    let command_type = skimmed
        .command_type
        .unwrap_or_else(|| "undefined".to_owned());
    tracing::warn!("command {id} ({command_type}) refused: {bytes} bytes, limit {limit}");
    let outcome = Outcome::Error {
        error: format!(
            "Command too large: its message is {bytes} bytes, more than the {limit} bytes this box accepts (the server's maxPayload plus a margin); it was not run"
        ),
    };
    refused_once(id, command_type, outcome)
}

/// An event we could not decode is logged; a command whose id could be
/// read gets an error result (through the journal, like any other).
pub(super) fn undecodable(
    name: Option<String>,
    id: Option<String>,
    preview: &str,
    error: &str,
) -> Vec<Effect> {
    let name = name.unwrap_or_else(|| "<unreadable>".to_owned());
    tracing::warn!(
        "could not decode the event '{name}' from the central server ({error}): {preview}"
    );
    let (Some(id), "command") = (id, name.as_str()) else {
        return Vec::new();
    };
    let outcome = Outcome::Error {
        error: format!(
            "the agent could not decode this command, so it did not run it: {error} \
             (a lone UTF-16 surrogate such as \\ud800 in a string is a usual cause)"
        ),
    };
    refused_once(id, "undecodable".to_owned(), outcome)
}

fn refused_once(id: String, command_type: String, outcome: Outcome) -> Vec<Effect> {
    vec![Effect::Journal(Box::new(move |journal| {
        let outcome = refuse_once(journal, &id, &command_type, outcome);
        Step::Send { id, outcome }
    }))]
}

#[cfg(test)]
mod tests;
