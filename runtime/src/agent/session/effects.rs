//! What the session's deciding modules — the command intake
//! ([`super::intake`]) and the maintenance-window glue ([`super::window`]) —
//! ask the event loop to do: record and send a result, start a command, ask
//! a component to check one, send a kept command's "scheduled" progress,
//! queue journal work. They return these as values and own no link, journal
//! writer or task, so their unit tests read exactly what they decided; the
//! loop carries them out in order (`Session::apply`).

pub(super) use super::journal_steps::Command;
use super::journal_steps::Step;
use crate::agent::maintenance_window::ScheduledUpdate;
use crate::journal::{FinalProgress, Journal, Outcome};

/// Journal work; its [`Step`] comes back through the loop.
pub(super) type JournalJob = Box<dyn FnOnce(&Journal) -> Step + Send>;

/// One thing for the event loop to do.
pub(super) enum Effect {
    /// Journal the outcome, then send it (kept for a retry when the write
    /// fails).
    RecordAndSend { id: String, outcome: Outcome },
    /// Send a result the journal already holds.
    Send { id: String, outcome: Outcome },
    /// Re-send a deployment's closing progress event read from the journal,
    /// unless it went out on this session already (it must precede the
    /// result: the server completes a deployment from it).
    FinalProgress(FinalProgress),
    /// Run the command now.
    Start(Command),
    /// Ask the command's component to check it (`check-before-window`);
    /// the answer comes back as [`Step::Checked`].
    Check(Command),
    /// The "scheduled" progress of a kept command, under the progress
    /// event of `command_type`'s manifest.
    Scheduled {
        update: ScheduledUpdate,
        command_type: String,
    },
    /// Journal work, queued off the loop.
    Journal(JournalJob),
}

impl std::fmt::Debug for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Effect::RecordAndSend { id, outcome } => {
                write!(f, "RecordAndSend({id}, {outcome:?})")
            }
            Effect::Send { id, outcome } => write!(f, "Send({id}, {outcome:?})"),
            Effect::FinalProgress(p) => write!(f, "FinalProgress({})", p.event),
            Effect::Start(c) => write!(f, "Start({})", c.id),
            Effect::Check(c) => write!(f, "Check({})", c.id),
            Effect::Scheduled {
                update,
                command_type,
            } => write!(f, "Scheduled({}, {command_type})", update.id),
            Effect::Journal(_) => f.write_str("Journal(..)"),
        }
    }
}
