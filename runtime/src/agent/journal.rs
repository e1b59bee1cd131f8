//! The command journal and result outbox, persisted under `STATE_PATH/journal`.
//!
//! A command id is written to disk *before* its component runs, so a command
//! delivered twice (the server re-sends on reconnect) runs once; its stored
//! result is sent again instead. A result stays "undelivered" until the link
//! proves the server received it, and undelivered results are re-sent after
//! every re-authentication (the server's result write is idempotent).
//! A command found accepted-but-unfinished at start-up (the agent died while
//! running it) is closed with an error result rather than run again.

use crate::store::atomic;
use cap_std::fs::Dir;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// The journal cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot open the command journal {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot record command {id} in the journal: {source}")]
    Write { id: String, source: std::io::Error },
}

/// The outcome of a command, as reported in `command_result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    Success { result: Value },
    Error { error: String },
}

impl Outcome {
    /// The `command_result` payload.
    pub fn to_result_payload(&self, command_id: &str) -> Value {
        match self {
            Outcome::Success { result } => serde_json::json!({
                "commandId": command_id, "status": "success", "result": result,
            }),
            Outcome::Error { error } => serde_json::json!({
                "commandId": command_id, "status": "error", "error": error,
            }),
        }
    }
}

/// One journaled command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub id: String,
    pub command_type: String,
    pub accepted_at_ms: u64,
    #[serde(default)]
    pub completed_seq: Option<u64>,
    #[serde(default)]
    pub outcome: Option<Outcome>,
    #[serde(default)]
    pub delivered: bool,
}

/// What to do with an incoming command id.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// New: recorded; run it.
    Run,
    /// Already running (a re-delivery during the run): ignore.
    Running,
    /// Already done: send this outcome again.
    Done(Outcome),
}

/// Message of the result recorded for a command the agent was running when
/// it stopped.
pub const INTERRUPTED: &str =
    "Command interrupted: the agent stopped while it was running; it was not run again";

/// Delivered entries older than this are forgotten.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug)]
struct State {
    entries: BTreeMap<String, Entry>,
    next_seq: u64,
}

/// The journal; shared between the session and running commands.
#[derive(Debug)]
pub struct Journal {
    dir: Dir,
    path: PathBuf,
    state: Mutex<State>,
}

/// File name for a command id: ids are UUIDs upstream; anything else is hashed
/// so that no id can name a path.
fn file_name(id: &str) -> String {
    let plain = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        format!("{id}.json")
    } else {
        format!("h-{}.json", crate::store::hash::sha256_hex(id.as_bytes()))
    }
}

fn now_ms() -> u64 {
    crate::platform::clock::unix_millis(SystemTime::now())
}

impl Journal {
    /// Opens the journal folder, closing commands a previous run left
    /// unfinished and forgetting delivered ones past [`RETENTION`].
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let open_error = |source| JournalError::Open {
            path: path.to_owned(),
            source,
        };
        let dir = atomic::open_state_dir(path).map_err(open_error)?;
        let mut entries = BTreeMap::new();
        for item in dir.entries().map_err(open_error)? {
            let Ok(item) = item else { continue };
            let name = item.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            let parsed = dir
                .read(&name)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Entry>(&bytes).ok());
            match parsed {
                Some(entry) => {
                    entries.insert(entry.id.clone(), entry);
                }
                None => tracing::warn!("ignoring unreadable journal entry {name}"),
            }
        }
        let next_seq = entries
            .values()
            .filter_map(|e| e.completed_seq)
            .max()
            .map_or(0, |s| s + 1);
        let journal = Journal {
            dir,
            path: path.to_owned(),
            state: Mutex::new(State { entries, next_seq }),
        };
        journal.recover()?;
        journal.prune(RETENTION);
        Ok(journal)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn persist(&self, entry: &Entry) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec(entry).map_err(|e| JournalError::Write {
            id: entry.id.clone(),
            source: std::io::Error::other(e),
        })?;
        atomic::write(&self.dir, Path::new(&file_name(&entry.id)), &bytes).map_err(|source| {
            JournalError::Write {
                id: entry.id.clone(),
                source,
            }
        })
    }

    fn recover(&self) -> Result<(), JournalError> {
        let unfinished: Vec<String> = self
            .lock()
            .entries
            .values()
            .filter(|e| e.outcome.is_none())
            .map(|e| e.id.clone())
            .collect();
        for id in unfinished {
            tracing::warn!(
                "command {id} was running when the agent stopped; reporting it as interrupted"
            );
            self.complete(
                &id,
                Outcome::Error {
                    error: INTERRUPTED.to_owned(),
                },
            )?;
        }
        Ok(())
    }

    /// Records a command before it runs; tells whether to run it.
    pub fn admit(&self, id: &str, command_type: &str) -> Result<Admission, JournalError> {
        let entry = {
            let state = self.lock();
            if let Some(existing) = state.entries.get(id) {
                return Ok(match &existing.outcome {
                    Some(outcome) => Admission::Done(outcome.clone()),
                    None => Admission::Running,
                });
            }
            Entry {
                id: id.to_owned(),
                command_type: command_type.to_owned(),
                accepted_at_ms: now_ms(),
                completed_seq: None,
                outcome: None,
                delivered: false,
            }
        };
        self.persist(&entry)?;
        self.lock().entries.insert(id.to_owned(), entry);
        Ok(Admission::Run)
    }

    /// Records a command's outcome (undelivered).
    pub fn complete(&self, id: &str, outcome: Outcome) -> Result<(), JournalError> {
        let entry = {
            let mut state = self.lock();
            let seq = state.next_seq;
            state.next_seq += 1;
            let entry = state.entries.entry(id.to_owned()).or_insert_with(|| Entry {
                id: id.to_owned(),
                command_type: String::new(),
                accepted_at_ms: now_ms(),
                completed_seq: None,
                outcome: None,
                delivered: false,
            });
            entry.outcome = Some(outcome);
            entry.completed_seq = Some(seq);
            entry.delivered = false;
            entry.clone()
        };
        self.persist(&entry)
    }

    /// Results not yet known to have reached the server, oldest first.
    pub fn undelivered(&self) -> Vec<(String, Outcome)> {
        let state = self.lock();
        let mut list: Vec<&Entry> = state
            .entries
            .values()
            .filter(|e| !e.delivered && e.outcome.is_some())
            .collect();
        list.sort_by_key(|e| e.completed_seq);
        list.into_iter()
            .filter_map(|e| Some((e.id.clone(), e.outcome.clone()?)))
            .collect()
    }

    /// Marks a result as received by the server.
    pub fn mark_delivered(&self, id: &str) -> Result<(), JournalError> {
        let entry = {
            let mut state = self.lock();
            match state.entries.get_mut(id) {
                Some(e) if !e.delivered => {
                    e.delivered = true;
                    e.clone()
                }
                _ => return Ok(()),
            }
        };
        self.persist(&entry)
    }

    /// A journaled entry, if any.
    pub fn get(&self, id: &str) -> Option<Entry> {
        self.lock().entries.get(id).cloned()
    }

    /// Forgets delivered entries older than `keep`.
    pub fn prune(&self, keep: Duration) {
        let cutoff = now_ms().saturating_sub(keep.as_millis() as u64);
        let old: Vec<String> = self
            .lock()
            .entries
            .values()
            .filter(|e| e.delivered && e.accepted_at_ms < cutoff)
            .map(|e| e.id.clone())
            .collect();
        for id in old {
            if self.dir.remove_file(file_name(&id)).is_ok() {
                self.lock().entries.remove(&id);
            }
        }
    }

    /// Where the journal lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(v: Value) -> Outcome {
        Outcome::Success { result: v }
    }

    #[test]
    fn a_command_is_admitted_once_and_its_result_is_kept() -> Result<(), JournalError> {
        let dir = tempfile::tempdir().map_err(|source| JournalError::Open {
            path: PathBuf::new(),
            source,
        })?;
        let journal = Journal::open(dir.path())?;
        assert_eq!(journal.admit("c1", "get_config")?, Admission::Run);
        assert!(
            dir.path().join("c1.json").is_file(),
            "persisted before running"
        );
        assert_eq!(journal.admit("c1", "get_config")?, Admission::Running);
        journal.complete("c1", ok(json!({"success": true})))?;
        assert_eq!(
            journal.admit("c1", "get_config")?,
            Admission::Done(ok(json!({"success": true})))
        );
        assert_eq!(
            journal.undelivered(),
            vec![("c1".to_owned(), ok(json!({"success": true})))]
        );
        journal.mark_delivered("c1")?;
        assert!(journal.undelivered().is_empty());

        // A new process sees the same journal.
        let again = Journal::open(dir.path())?;
        assert_eq!(
            again.admit("c1", "get_config")?,
            Admission::Done(ok(json!({"success": true})))
        );
        assert!(again.undelivered().is_empty());
        Ok(())
    }

    #[test]
    fn unfinished_commands_are_reported_interrupted_after_a_restart() -> Result<(), JournalError> {
        let dir = tempfile::tempdir().map_err(|source| JournalError::Open {
            path: PathBuf::new(),
            source,
        })?;
        {
            let journal = Journal::open(dir.path())?;
            journal.admit("c1", "get_logs")?;
            journal.admit("c2", "get_config")?;
            journal.complete("c2", ok(json!(2)))?;
        }
        let journal = Journal::open(dir.path())?;
        let pending = journal.undelivered();
        assert_eq!(
            pending,
            vec![
                ("c2".to_owned(), ok(json!(2))),
                (
                    "c1".to_owned(),
                    Outcome::Error {
                        error: INTERRUPTED.to_owned()
                    }
                ),
            ]
        );
        Ok(())
    }

    #[test]
    fn odd_ids_cannot_name_paths() -> Result<(), JournalError> {
        let dir = tempfile::tempdir().map_err(|source| JournalError::Open {
            path: PathBuf::new(),
            source,
        })?;
        let journal = Journal::open(&dir.path().join("journal"))?;
        assert_eq!(journal.admit("../../escape", "x")?, Admission::Run);
        assert!(!dir.path().join("escape.json").exists());
        let names: Vec<String> = std::fs::read_dir(dir.path().join("journal"))
            .map_err(|source| JournalError::Open {
                path: PathBuf::new(),
                source,
            })?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        assert_eq!(names.len(), 1);
        assert!(names[0].starts_with("h-"));
        Ok(())
    }

    #[test]
    fn result_payloads_match_upstream() {
        assert_eq!(
            ok(json!({"a": 1})).to_result_payload("id1"),
            json!({"commandId": "id1", "status": "success", "result": {"a": 1}})
        );
        assert_eq!(
            Outcome::Error {
                error: "Unknown command type: x".to_owned()
            }
            .to_result_payload("id2"),
            json!({"commandId": "id2", "status": "error", "error": "Unknown command type: x"})
        );
    }
}
