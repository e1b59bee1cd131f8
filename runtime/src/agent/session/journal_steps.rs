//! The journal's side of the session's steps: what a job on the journal
//! queue found ([`Step`], handled back in the session loop), and the reads
//! and writes those jobs make — a refused command recorded once, a kept
//! command's final outcome, the closing progress a result must follow.

use crate::journal::{Admission, FinalProgress, Journal, JournalError, Outcome};
use serde_json::Value;

/// A command as the session's steps and deciding modules pass it on.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Command {
    pub id: String,
    pub command_type: String,
    /// Its `data` (null when absent).
    pub data: Value,
}

/// What a job on the journal queue found, handled back in the session loop.
#[derive(Debug)]
pub(super) enum Step {
    /// A read-only command looked up: the outcome it already has, if it ran.
    Looked {
        command: Command,
        known: Option<Outcome>,
        final_progress: Option<FinalProgress>,
    },
    /// A state-changing command recorded (or found already known).
    Admitted {
        command: Command,
        admission: Result<Admission, JournalError>,
        final_progress: Option<FinalProgress>,
    },
    /// An outcome written (or not: disk full) to the journal.
    Recorded {
        id: String,
        outcome: Outcome,
        written: Result<(), JournalError>,
        final_progress: Option<FinalProgress>,
    },
    /// A result to send as it is (a refused command), if any.
    Send {
        id: String,
        outcome: Option<Outcome>,
    },
    /// A maintenance-window command's component answered the agent's
    /// check (`check-before-window`; None: no component handles it). Not
    /// journal work, but it comes back through the same loop, so that a
    /// stop waits for it like for a journal job.
    Checked {
        command: Command,
        answer: Option<Outcome>,
    },
}

/// The closing progress event a result must be preceded by (read from disk).
pub(super) fn final_progress_of(journal: &Journal, id: &str) -> Option<FinalProgress> {
    journal.get(id).and_then(|e| e.final_progress)
}

/// The command's `data` (null when absent), taken out of its message.
pub(super) fn data_of(mut command: Value) -> Value {
    command
        .as_object_mut()
        .and_then(|c| c.remove("data"))
        .unwrap_or(Value::Null)
}

/// Records a command refused before it ran with `refusal` as its outcome;
/// the result to send: the refusal, the outcome a copy already has, or none
/// while a copy runs.
pub(super) fn refuse_once(
    journal: &Journal,
    id: &str,
    command_type: &str,
    refusal: Outcome,
) -> Option<Outcome> {
    match journal.admit(id, command_type) {
        Ok(Admission::Run) => {
            if let Err(e) = journal.complete(id, refusal.clone()) {
                tracing::error!("{e}");
            }
            Some(refusal)
        }
        Ok(Admission::Done(done)) => Some(done),
        Ok(Admission::Running) => None,
        Err(e) => {
            tracing::error!("{e}");
            Some(refusal)
        }
    }
}

/// The journaled outcome of a scheduled update when it is final: not
/// the "interrupted" a restart records for an update that was waiting
/// (or had not really started), which must run instead, nor the
/// `{scheduled: true}` answer older agents journaled.
pub(super) fn final_outcome(journal: &Journal, id: &str) -> Option<Outcome> {
    match journal.get(id).and_then(|e| e.outcome) {
        Some(outcome) => {
            let waiting = match &outcome {
                Outcome::Error { error } => error == crate::journal::INTERRUPTED,
                Outcome::Success { result } => result.get("scheduled") == Some(&Value::Bool(true)),
            };
            (!waiting).then_some(outcome)
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal() -> Outcome {
        Outcome::Error {
            error: "Command too large".to_owned(),
        }
    }

    #[test]
    fn a_refused_command_is_recorded_once_and_its_copies_get_the_same_answer()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let journal = Journal::open(&dir.path().join("journal"))?;
        assert_eq!(
            refuse_once(&journal, "c-1", "deploy_video", refusal()),
            Some(refusal())
        );
        // Recorded on disk: a reopened journal has it, and a re-sent copy
        // gets it whatever this copy would have been refused for.
        let journal = Journal::open(&dir.path().join("journal"))?;
        assert_eq!(journal.outcome("c-1"), Some(refusal()));
        let other = Outcome::Error {
            error: "undecodable".to_owned(),
        };
        assert_eq!(
            refuse_once(&journal, "c-1", "deploy_video", other),
            Some(refusal())
        );
        // A copy of a command that runs: nothing to send yet.
        journal.admit("c-2", "deploy_video")?;
        assert_eq!(
            refuse_once(&journal, "c-2", "deploy_video", refusal()),
            None
        );
        assert_eq!(journal.outcome("c-2"), None);
        Ok(())
    }

    #[test]
    fn only_a_final_outcome_settles_a_kept_command() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let journal = Journal::open(&dir.path().join("journal"))?;
        assert_eq!(final_outcome(&journal, "u-0"), None, "never seen");
        let cases = [
            (
                "u-1",
                Outcome::Error {
                    error: crate::journal::INTERRUPTED.to_owned(),
                },
                false,
            ),
            (
                "u-2",
                Outcome::Success {
                    result: json!({"scheduled": true}),
                },
                false,
            ),
            (
                "u-3",
                Outcome::Success {
                    result: json!({"version": "2.0.0"}),
                },
                true,
            ),
            (
                "u-4",
                Outcome::Error {
                    error: "rolled back".to_owned(),
                },
                true,
            ),
        ];
        for (id, outcome, _) in &cases {
            journal.admit(id, "update_software")?;
            journal.complete(id, outcome.clone())?;
        }
        for (id, outcome, is_final) in cases {
            assert_eq!(
                final_outcome(&journal, id),
                is_final.then_some(outcome),
                "{id}"
            );
        }
        Ok(())
    }

    #[test]
    fn data_is_taken_out_of_its_command() {
        assert_eq!(
            data_of(json!({"id": "c", "type": "t", "data": {"a": 1}})),
            json!({"a": 1})
        );
        assert_eq!(data_of(json!({"id": "c"})), Value::Null);
        assert_eq!(data_of(json!("not an object")), Value::Null);
    }
}
