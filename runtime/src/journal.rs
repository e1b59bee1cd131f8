//! The command journal and result outbox, persisted under `STATE_PATH/journal`.
//!
//! A command id is written to disk *before* its component runs, so a command
//! delivered twice (the server re-sends on reconnect) runs once; its stored
//! result is sent again instead. A result stays "undelivered" until the link
//! proves the server received it, and undelivered results are re-sent after
//! every re-authentication (the server's result write is idempotent).
//! A command found accepted-but-unfinished at start-up (the agent died while
//! running it) is closed with an error result rather than run again.
//!
//! SD card and power cuts: a state-changing command costs the append of its
//! id to `admitted.log`, flushed before it runs; its outcome file, written
//! atomically and flushed before the result is sent; and the delivery mark,
//! appended to `delivered.log` and flushed once per batch. The last two were
//! unsynced once, on the grounds that a lost outcome only means the command
//! reported interrupted and a lost mark a result sent again — but after a
//! power cut the server then had two different final results for one
//! command (its success, then "interrupted"), or a result it had
//! acknowledged sent again (the power-cut rig found the second:
//! `docs/power-cuts.md`, checks `one-final-result` and `ack-not-resent`).
//! Read-only commands (manifest `read-only = true`) are not admitted at
//! all, and write nothing to the card: their outcome is kept in the
//! runtime folder (the unit's tmpfs, [`Journal::keep_read_only_in`]) until
//! the server has it, then forgotten — a re-delivered one simply runs
//! again. It survives the agent's restarts (the unit keeps the folder) and
//! is re-sent like any other; a reboot or a power cut forgets it, as a
//! read-only command still running then was always forgotten (never
//! admitted, nothing to report "interrupted" for, nothing it changed).
//!
//! Memory: only ids and delivery state are kept in RAM; outcomes (a
//! `get_logs` result can be 4 MiB) live in their files and are read back
//! when they must be sent again. The folder is bounded by [`MAX_ENTRIES`]
//! and [`MAX_BYTES`]: the oldest delivered entries go first.

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
    /// The last progress event of a server deployment (`deploy_progress` /
    /// `update_progress` with a `deploymentId`, completed or failed). Only
    /// that event completes a deployment on the server, so it is re-sent
    /// before the result until the result is delivered (issue 18.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_progress: Option<FinalProgress>,
}

/// A deployment's closing progress event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalProgress {
    pub event: String,
    pub payload: Value,
    /// The authenticated session it was emitted on (not persisted: after a
    /// restart it always goes again).
    #[serde(skip)]
    pub sent_in: Option<u64>,
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
/// Most entries kept on disk.
pub const MAX_ENTRIES: usize = 2_000;
/// Most bytes of entries kept on disk.
pub const MAX_BYTES: u64 = 64 << 20;

/// What stays in memory of an entry: no outcome.
#[derive(Debug, Clone, PartialEq)]
struct Meta {
    command_type: String,
    accepted_at_ms: u64,
    completed_seq: Option<u64>,
    done: bool,
    delivered: bool,
    /// Size of its file.
    bytes: u64,
    /// The session its closing progress event (kept in the file) went out
    /// on: not persisted, so after a restart it always goes again.
    final_sent_in: Option<u64>,
    /// A read-only command's outcome (never admitted): kept in the runtime
    /// folder when there is one, forgotten once delivered.
    volatile: bool,
}

impl Meta {
    /// The entry of a command still running, from memory alone (it has no
    /// file yet, or only one for its closing progress event).
    fn running_entry(self, id: &str) -> Entry {
        Entry {
            id: id.to_owned(),
            command_type: self.command_type,
            accepted_at_ms: self.accepted_at_ms,
            completed_seq: None,
            outcome: None,
            delivered: false,
            final_progress: None,
        }
    }

    fn of(entry: &Entry, bytes: u64, volatile: bool) -> Self {
        Meta {
            volatile,
            command_type: entry.command_type.clone(),
            accepted_at_ms: entry.accepted_at_ms,
            completed_seq: entry.completed_seq,
            done: entry.outcome.is_some(),
            delivered: entry.delivered,
            bytes,
            final_sent_in: entry.final_progress.as_ref().and_then(|f| f.sent_in),
        }
    }
}

#[derive(Debug)]
struct State {
    entries: BTreeMap<String, Meta>,
    next_seq: u64,
    bytes: u64,
}

/// Where an entry's file goes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kept {
    /// The card, flushed before the result is sent (an admitted command).
    Durable,
    /// The card, unsynced (a closing progress event of a running command).
    Unsynced,
    /// The runtime folder when there is one (a read-only command's outcome).
    Volatile,
}

/// Ids of admitted commands, one per line, appended and fsynced before each
/// runs.
const ADMITTED_LOG: &str = "admitted.log";
/// Ids whose result the server has, one per line, appended and flushed per batch.
const DELIVERED_LOG: &str = "delivered.log";

/// The journal; shared between the session and running commands.
#[derive(Debug)]
pub struct Journal {
    dir: Dir,
    path: PathBuf,
    /// Where read-only commands' outcomes go (the runtime folder); `None`:
    /// beside the others, unsynced.
    volatile: Option<Dir>,
    state: Mutex<State>,
    logs: Mutex<Logs>,
}

/// The two append-only logs, open for appending.
#[derive(Debug)]
struct Logs {
    admitted: cap_std::fs::File,
    admitted_lines: usize,
    /// Ids appended to `admitted.log` since it was last rewritten: forgetting
    /// one of them means rewriting the log, or the next start would think
    /// it was interrupted.
    admitted_since: std::collections::HashSet<String>,
    delivered: cap_std::fs::File,
    delivered_lines: usize,
}

fn append_options() -> cap_std::fs::OpenOptions {
    let mut options = cap_std::fs::OpenOptions::new();
    options.append(true).create(true);
    options
}

/// A journal file read whole, up to the journal's whole budget
/// ([`MAX_BYTES`]): a larger one is not one the agent wrote, and reading it
/// would cost the agent its memory. No link, no FIFO. `None` (logged) when
/// missing, too large or unreadable.
fn read_file(dir: &Dir, name: &str) -> Option<Vec<u8>> {
    let shown = Path::new("journal").join(name);
    match crate::store::untrusted_file::read_bounded_in(dir, Path::new(name), &shown, MAX_BYTES) {
        Ok(bytes) => Some(bytes),
        Err(crate::store::untrusted_file::UntrustedFileError::NotFound(_)) => None,
        Err(e) => {
            tracing::warn!("{e}");
            None
        }
    }
}

/// The ids listed in a log (missing file: none). A torn last line is dropped.
fn read_ids(dir: &Dir, name: &str) -> Vec<String> {
    let Some(bytes) = read_file(dir, name) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// An id as one log line (ids with line breaks are hashed like file names).
fn log_line(id: &str) -> String {
    if id.contains(['\n', '\r']) {
        format!("{}\n", file_name(id))
    } else {
        format!("{id}\n")
    }
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
        let none = std::collections::HashSet::new();
        Self::open_with_waiting(path, &none, &none)
    }

    /// Opens the journal; the unfinished commands in `waiting` (updates
    /// kept for the maintenance window) are recorded as interrupted like the
    /// others — the session runs them again — but without the warning,
    /// since nothing of them was running; so are those in `handed_over`
    /// (the agent update or rollback whose result the agent now starting
    /// sends: the previous agent ended on purpose, leaving it open).
    pub fn open_with_waiting(
        path: &Path,
        waiting: &std::collections::HashSet<String>,
        handed_over: &std::collections::HashSet<String>,
    ) -> Result<Self, JournalError> {
        let open_error = |source| JournalError::Open {
            path: path.to_owned(),
            source,
        };
        let dir = atomic::open_state_dir(path).map_err(open_error)?;
        let mut entries = BTreeMap::new();
        let mut bytes = 0u64;
        for item in dir.entries().map_err(open_error)? {
            let Ok(item) = item else { continue };
            let name = item.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            let raw = read_file(&dir, &name);
            let parsed = raw
                .as_deref()
                .and_then(|bytes| serde_json::from_slice::<Entry>(bytes).ok());
            match parsed {
                Some(entry) if file_name(&entry.id) == name => {
                    let size = raw.map_or(0, |r| r.len() as u64);
                    bytes += size;
                    entries.insert(entry.id.clone(), Meta::of(&entry, size, false));
                }
                _ => tracing::warn!("ignoring unreadable journal entry {name}"),
            }
        }
        // Flush the outcome files a previous run wrote unsynced before the
        // logs that point at them are rewritten.
        if let Err(e) = atomic::sync_filesystem(&dir) {
            tracing::warn!("cannot flush the journal's folder to disk: {e}");
        }
        let delivered_ids = read_ids(&dir, DELIVERED_LOG);
        for id in &delivered_ids {
            if let Some(meta) = entries.get_mut(id) {
                meta.delivered = true;
            }
        }
        // Admitted without an outcome file: it was running when the agent
        // stopped (or its outcome was lost in a power cut).
        let mut unfinished = Vec::new();
        for id in read_ids(&dir, ADMITTED_LOG) {
            if !entries.contains_key(&id) && !unfinished.contains(&id) {
                unfinished.push(id);
            }
        }
        let next_seq = entries
            .values()
            .filter_map(|e| e.completed_seq)
            .max()
            .map_or(0, |s| s + 1);
        let open_log = |name: &str| dir.open_with(name, &append_options()).map_err(open_error);
        let logs = Logs {
            admitted: open_log(ADMITTED_LOG)?,
            admitted_lines: 0,
            admitted_since: Default::default(),
            delivered: open_log(DELIVERED_LOG)?,
            delivered_lines: 0,
        };
        let journal = Journal {
            path: path.to_owned(),
            volatile: None,
            state: Mutex::new(State {
                entries,
                next_seq,
                bytes,
            }),
            logs: Mutex::new(logs),
            dir,
        };
        for id in unfinished {
            if waiting.contains(&id) {
                tracing::info!("update {id} still waits for the maintenance window");
            } else if handed_over.contains(&id) {
                tracing::info!(
                    "command {id} switched agents; this agent sends its result (agent update or rollback)"
                );
            } else {
                tracing::warn!(
                    "command {id} was running when the agent stopped; reporting it as interrupted"
                );
            }
            journal.interrupted(&id)?;
        }
        journal.recover()?;
        journal.prune(RETENTION);
        journal.compact_logs();
        Ok(journal)
    }

    /// Keeps read-only commands' outcomes under `path` (the runtime folder's
    /// `journal`, a tmpfs on a box: nothing on the card), taking back those
    /// a previous run of the agent left there undelivered (it restarted;
    /// the unit keeps the folder) to send them again. A folder that cannot
    /// be opened leaves them beside the others, unsynced, as before.
    pub fn keep_read_only_in(mut self, path: &Path) -> Self {
        let dir = match atomic::open_state_dir(path) {
            Ok(dir) => dir,
            Err(e) => {
                tracing::warn!(
                    "cannot open {} for read-only commands' results ({e}); they go to the card",
                    path.display()
                );
                return self;
            }
        };
        crate::store::temp_sweep::sweep(path, 0);
        let mut found = Vec::new();
        if let Ok(items) = dir.entries() {
            for item in items.flatten() {
                let name = item.file_name().to_string_lossy().into_owned();
                if !name.ends_with(".json") || name.starts_with('.') {
                    continue;
                }
                let raw = read_file(&dir, &name).unwrap_or_default();
                match serde_json::from_slice::<Entry>(&raw) {
                    Ok(entry) if file_name(&entry.id) == name && entry.outcome.is_some() => {
                        found.push((entry, raw.len() as u64));
                    }
                    _ => {
                        tracing::warn!("removing unreadable read-only result {name}");
                        let _ = dir.remove_file(&name);
                    }
                }
            }
        }
        {
            let mut state = self.lock();
            for (entry, size) in found {
                if state.entries.contains_key(&entry.id) {
                    continue;
                }
                let seq = entry.completed_seq.unwrap_or(0);
                state.next_seq = state.next_seq.max(seq + 1);
                state.bytes = state.bytes.saturating_add(size);
                let mut meta = Meta::of(&entry, size, true);
                meta.delivered = false;
                state.entries.insert(entry.id, meta);
            }
        }
        self.volatile = Some(dir);
        self
    }

    /// Records the "interrupted" outcome of a command admitted by a previous
    /// run, durably (it is rare, and must not be lost a second time).
    fn interrupted(&self, id: &str) -> Result<(), JournalError> {
        let seq = {
            let mut state = self.lock();
            let seq = state.next_seq;
            state.next_seq += 1;
            seq
        };
        // Keep what a previous run stored (a closing progress event).
        let prior = self.load(id);
        let entry = Entry {
            id: id.to_owned(),
            command_type: prior
                .as_ref()
                .map(|e| e.command_type.clone())
                .unwrap_or_default(),
            accepted_at_ms: prior.as_ref().map_or_else(now_ms, |e| e.accepted_at_ms),
            completed_seq: Some(seq),
            outcome: Some(Outcome::Error {
                error: INTERRUPTED.to_owned(),
            }),
            delivered: false,
            final_progress: prior.and_then(|e| e.final_progress),
        };
        self.persist_with(&entry, true)
    }

    fn logs(&self) -> std::sync::MutexGuard<'_, Logs> {
        match self.logs.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Rewrites both logs with only what they still need to say: admitted
    /// ids still running, delivered ids still journaled.
    fn compact_logs(&self) {
        let (running, delivered): (Vec<String>, Vec<String>) = {
            let state = self.lock();
            (
                state
                    .entries
                    .iter()
                    .filter(|(_, e)| !e.done)
                    .map(|(id, _)| log_line(id))
                    .collect(),
                state
                    .entries
                    .iter()
                    .filter(|(_, e)| e.delivered)
                    .map(|(id, _)| log_line(id))
                    .collect(),
            )
        };
        let mut logs = self.logs();
        for (name, lines) in [(ADMITTED_LOG, &running), (DELIVERED_LOG, &delivered)] {
            if let Err(e) =
                atomic::write_private(&self.dir, Path::new(name), lines.concat().as_bytes())
            {
                tracing::warn!("cannot compact the journal's {name}: {e}");
                continue;
            }
            match self.dir.open_with(name, &append_options()) {
                Ok(file) if name == ADMITTED_LOG => {
                    logs.admitted = file;
                    logs.admitted_lines = lines.len();
                    logs.admitted_since.clear();
                }
                Ok(file) => {
                    logs.delivered = file;
                    logs.delivered_lines = lines.len();
                }
                Err(e) => tracing::warn!("cannot reopen the journal's {name}: {e}"),
            }
        }
    }

    /// Compacts the logs once they hold many more lines than entries.
    fn compact_if_long(&self) {
        let long = {
            let logs = self.logs();
            logs.admitted_lines > MAX_ENTRIES || logs.delivered_lines > 2 * MAX_ENTRIES
        };
        if long {
            self.compact_logs();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Writes an entry's file (flushed to disk when `durable`) and its
    /// memory record.
    fn persist_with(&self, entry: &Entry, durable: bool) -> Result<(), JournalError> {
        self.persist_to(
            entry,
            if durable {
                Kept::Durable
            } else {
                Kept::Unsynced
            },
        )
    }

    /// Writes an entry's file where `kept` says, and its memory record.
    fn persist_to(&self, entry: &Entry, kept: Kept) -> Result<(), JournalError> {
        let bytes = serde_json::to_vec(entry).map_err(|e| JournalError::Write {
            id: entry.id.clone(),
            source: std::io::Error::other(e),
        })?;
        let name = file_name(&entry.id);
        let written = match (kept, &self.volatile) {
            (Kept::Durable, _) => atomic::write_private(&self.dir, Path::new(&name), &bytes),
            (Kept::Volatile, Some(dir)) => atomic::write_unsynced(dir, &name, &bytes),
            _ => atomic::write_unsynced(&self.dir, &name, &bytes),
        };
        written.map_err(|source| JournalError::Write {
            id: entry.id.clone(),
            source,
        })?;
        let mut state = self.lock();
        let size = bytes.len() as u64;
        if let Some(old) = state.entries.insert(
            entry.id.clone(),
            Meta::of(entry, size, kept == Kept::Volatile),
        ) {
            state.bytes = state.bytes.saturating_sub(old.bytes);
        }
        state.bytes = state.bytes.saturating_add(size);
        Ok(())
    }

    /// The folder holding `id`'s file: the runtime folder for a read-only
    /// command's outcome.
    fn dir_of(&self, id: &str) -> &Dir {
        let volatile = self.lock().entries.get(id).is_some_and(|m| m.volatile);
        match &self.volatile {
            Some(dir) if volatile => dir,
            _ => &self.dir,
        }
    }

    /// An entry as stored, read back from its file.
    fn load(&self, id: &str) -> Option<Entry> {
        let bytes = self.dir_of(id).read(file_name(id)).ok()?;
        serde_json::from_slice::<Entry>(&bytes)
            .ok()
            .filter(|e| e.id == id)
    }

    /// Entries of an older journal format written at admission (no
    /// outcome yet): they too were running when the agent stopped.
    fn recover(&self) -> Result<(), JournalError> {
        let unfinished: Vec<String> = self
            .lock()
            .entries
            .iter()
            .filter(|(_, e)| !e.done)
            .map(|(id, _)| id.clone())
            .collect();
        for id in unfinished {
            self.interrupted(&id)?;
        }
        Ok(())
    }

    /// Records a command before it runs (one fsync); tells whether to run it.
    pub fn admit(&self, id: &str, command_type: &str) -> Result<Admission, JournalError> {
        if let Some(known) = self.lookup(id) {
            return Ok(known);
        }
        let write_error = |source| JournalError::Write {
            id: id.to_owned(),
            source,
        };
        {
            let mut logs = self.logs();
            use std::io::Write;
            logs.admitted
                .write_all(log_line(id).as_bytes())
                .map_err(write_error)?;
            atomic::count_fsync();
            logs.admitted.sync_data().map_err(write_error)?;
            logs.admitted_lines += 1;
            logs.admitted_since.insert(id.to_owned());
        }
        self.lock().entries.insert(
            id.to_owned(),
            Meta {
                command_type: command_type.to_owned(),
                accepted_at_ms: now_ms(),
                completed_seq: None,
                done: false,
                delivered: false,
                bytes: 0,
                final_sent_in: None,
                volatile: false,
            },
        );
        self.compact_if_long();
        Ok(Admission::Run)
    }

    /// What is known of `id`: running, or done with this outcome.
    fn lookup(&self, id: &str) -> Option<Admission> {
        let done = self.lock().entries.get(id)?.done;
        if !done {
            return Some(Admission::Running);
        }
        Some(Admission::Done(
            match self.load(id).and_then(|e| e.outcome) {
                Some(outcome) => outcome,
                None => Outcome::Error {
                    error: format!(
                        "this command already ran, but its stored result cannot be read from {}",
                        self.path.join(file_name(id)).display()
                    ),
                },
            },
        ))
    }

    /// Records a command's outcome (undelivered). The file is written
    /// before memory changes: when the write fails (disk full) nothing
    /// changes, so the caller can keep the outcome and retry, and the
    /// journal never holds in memory a result that a restart would
    /// contradict with "interrupted".
    pub fn complete(&self, id: &str, outcome: Outcome) -> Result<(), JournalError> {
        let (seq, meta) = {
            let state = self.lock();
            (state.next_seq, state.entries.get(id).cloned())
        };
        // A running command has a file only once it recorded a closing
        // progress event; keep that event with the outcome.
        let mut entry = self.load_full(id).unwrap_or_else(|| Entry {
            id: id.to_owned(),
            command_type: meta
                .as_ref()
                .map(|m| m.command_type.clone())
                .unwrap_or_default(),
            accepted_at_ms: meta.as_ref().map_or_else(now_ms, |m| m.accepted_at_ms),
            completed_seq: None,
            outcome: None,
            delivered: false,
            final_progress: None,
        });
        entry.outcome = Some(outcome);
        entry.completed_seq = Some(seq);
        entry.delivered = false;
        // An admitted command's outcome is durable before the result goes
        // out: once the server has it, a power cut must not turn it into
        // "interrupted". A read-only one was never admitted: it goes to
        // the runtime folder, nothing on the card (lost, it is simply not
        // sent again).
        self.persist_to(
            &entry,
            if meta.is_some() {
                Kept::Durable
            } else {
                Kept::Volatile
            },
        )?;
        {
            let mut state = self.lock();
            state.next_seq = state.next_seq.max(seq + 1);
        }
        self.enforce_bounds();
        Ok(())
    }

    /// Ids of the results not yet known to have reached the server, oldest
    /// first. Their outcomes are read with [`Journal::outcome`], one at a time.
    pub fn undelivered_ids(&self) -> Vec<String> {
        let state = self.lock();
        let mut list: Vec<(&String, &Meta)> = state
            .entries
            .iter()
            .filter(|(_, e)| !e.delivered && e.done)
            .collect();
        list.sort_by_key(|(_, e)| e.completed_seq);
        list.into_iter().map(|(id, _)| id.clone()).collect()
    }

    /// Results not yet known to have reached the server, oldest first (all
    /// read into memory: for tests and small journals).
    pub fn undelivered(&self) -> Vec<(String, Outcome)> {
        self.undelivered_ids()
            .into_iter()
            .filter_map(|id| Some((id.clone(), self.outcome(&id)?)))
            .collect()
    }

    /// A stored outcome, read from disk.
    pub fn outcome(&self, id: &str) -> Option<Outcome> {
        self.load(id)?.outcome
    }

    /// Marks a result as received by the server.
    pub fn mark_delivered(&self, id: &str) -> Result<(), JournalError> {
        self.mark_all_delivered(&[id.to_owned()])
    }

    /// Marks results as received by the server: one append for the batch,
    /// flushed (a mark lost in a power cut would send an acknowledged
    /// result again). A read-only command's outcome is forgotten instead:
    /// no mark, nothing on the card.
    pub fn mark_all_delivered(&self, ids: &[String]) -> Result<(), JournalError> {
        let (fresh, read_only): (Vec<&String>, Vec<&String>) = {
            let mut state = self.lock();
            let mut fresh = Vec::new();
            let mut read_only = Vec::new();
            for id in ids {
                match state.entries.get_mut(id.as_str()) {
                    Some(e) if e.done && !e.delivered => {
                        e.delivered = true;
                        if e.volatile {
                            read_only.push(id);
                        } else {
                            fresh.push(id);
                        }
                    }
                    _ => {}
                }
            }
            (fresh, read_only)
        };
        for id in read_only {
            self.forget(id);
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let text: String = fresh.iter().map(|id| log_line(id)).collect();
        {
            use std::io::Write;
            let mut logs = self.logs();
            let write_error = |source| JournalError::Write {
                id: fresh[0].clone(),
                source,
            };
            logs.delivered
                .write_all(text.as_bytes())
                .map_err(write_error)?;
            atomic::count_fsync();
            logs.delivered.sync_data().map_err(write_error)?;
            logs.delivered_lines += fresh.len();
        }
        self.compact_if_long();
        Ok(())
    }

    /// Records a deployment's closing progress event for command `id`, in
    /// the entry's file (unsynced, like outcomes: a command whose file is
    /// lost is reported interrupted); memory keeps only the session it went
    /// out on.
    pub fn set_final_progress(
        &self,
        id: &str,
        progress: FinalProgress,
    ) -> Result<(), JournalError> {
        let Some(meta) = self.lock().entries.get(id).cloned() else {
            return Ok(());
        };
        let mut entry = match self.load_full(id) {
            Some(entry) => entry,
            // A done entry whose file cannot be read: nothing to add to.
            None if meta.done => return Ok(()),
            None => meta.running_entry(id),
        };
        entry.final_progress = Some(progress);
        self.persist_with(&entry, false)
    }

    /// How many results wait for delivery.
    pub fn undelivered_count(&self) -> usize {
        self.lock()
            .entries
            .values()
            .filter(|e| e.done && !e.delivered)
            .count()
    }

    /// An entry as stored, with what only memory knows (delivery, the
    /// session its closing progress event went out on).
    fn load_full(&self, id: &str) -> Option<Entry> {
        let meta = self.lock().entries.get(id)?.clone();
        let mut entry = self.load(id)?;
        entry.delivered = meta.delivered;
        if let Some(progress) = entry.final_progress.as_mut() {
            progress.sent_in = meta.final_sent_in;
        }
        Some(entry)
    }

    /// A journaled entry, if any (read from disk; a running command has
    /// no file until it records a closing progress event).
    pub fn get(&self, id: &str) -> Option<Entry> {
        let meta = self.lock().entries.get(id)?.clone();
        if !meta.done && self.load(id).is_none() {
            return Some(meta.running_entry(id));
        }
        self.load_full(id)
    }

    /// Entries and bytes on disk.
    pub fn usage(&self) -> (usize, u64) {
        let state = self.lock();
        (state.entries.len(), state.bytes)
    }

    /// Forgets delivered entries older than `keep`.
    pub fn prune(&self, keep: Duration) {
        let cutoff = now_ms().saturating_sub(keep.as_millis() as u64);
        let old: Vec<String> = self
            .lock()
            .entries
            .iter()
            .filter(|(_, e)| e.delivered && e.accepted_at_ms < cutoff)
            .map(|(id, _)| id.clone())
            .collect();
        for id in old {
            self.forget(&id);
        }
    }

    /// Keeps the folder within [`MAX_ENTRIES`] and [`MAX_BYTES`]: oldest
    /// delivered entries first; undelivered ones only if they alone exceed
    /// the bounds (oldest first, with a warning); running ones never.
    fn enforce_bounds(&self) {
        self.enforce(MAX_ENTRIES, MAX_BYTES);
    }

    fn enforce(&self, max_entries: usize, max_bytes: u64) {
        let victims: Vec<(String, bool)> = {
            let state = self.lock();
            if state.entries.len() <= max_entries && state.bytes <= max_bytes {
                return;
            }
            let mut order: Vec<(&String, &Meta)> =
                state.entries.iter().filter(|(_, e)| e.done).collect();
            // Delivered before undelivered, then oldest first.
            order.sort_by_key(|(_, e)| (!e.delivered, e.completed_seq, e.accepted_at_ms));
            let (mut count, mut bytes) = (state.entries.len(), state.bytes);
            let mut victims = Vec::new();
            for (id, meta) in order {
                if count <= max_entries && bytes <= max_bytes {
                    break;
                }
                count -= 1;
                bytes = bytes.saturating_sub(meta.bytes);
                victims.push((id.clone(), meta.delivered));
            }
            victims
        };
        for (id, delivered) in victims {
            if !delivered {
                tracing::warn!(
                    "command journal full: dropping the undelivered result of command {id}"
                );
            }
            self.forget(&id);
        }
    }

    fn forget(&self, id: &str) {
        if self.dir_of(id).remove_file(file_name(id)).is_ok() {
            let mut state = self.lock();
            if let Some(meta) = state.entries.remove(id) {
                state.bytes = state.bytes.saturating_sub(meta.bytes);
            }
        }
        let listed = self.logs().admitted_since.contains(id);
        if listed {
            self.compact_logs();
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

    /// A private temporary folder, its error in the journal's terms.
    fn temp_dir() -> Result<tempfile::TempDir, JournalError> {
        tempfile::tempdir().map_err(|source| JournalError::Open {
            path: PathBuf::new(),
            source,
        })
    }

    fn ok(v: Value) -> Outcome {
        Outcome::Success { result: v }
    }

    #[test]
    fn a_command_is_admitted_once_and_its_result_is_kept() -> Result<(), JournalError> {
        let dir = temp_dir()?;
        let journal = Journal::open(dir.path())?;
        assert_eq!(journal.admit("c1", "get_config")?, Admission::Run);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("admitted.log")).ok(),
            Some("c1\n".to_owned()),
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

    fn mkfifo(path: &Path) -> std::io::Result<()> {
        let fifo = rustix::fs::FileType::Fifo;
        let mode = rustix::fs::Mode::from_raw_mode(0o600);
        Ok(rustix::fs::mknodat(rustix::fs::CWD, path, fifo, mode, 0)?)
    }

    #[test]
    fn a_huge_file_or_a_fifo_in_the_journal_is_skipped_not_read()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = temp_dir()?;
        {
            let journal = Journal::open(dir.path())?;
            journal.admit("c1", "get_config")?;
            journal.complete("c1", ok(json!({"success": true})))?;
        }
        // Larger than the whole journal's budget: not one the agent wrote
        // (sparse: no disk used), and reading it whole would cost memory.
        std::fs::File::create(dir.path().join("c2.json"))?.set_len(MAX_BYTES + 1)?;
        // A FIFO would block an open for reading for ever.
        mkfifo(&dir.path().join("c3.json"))?;
        let journal = Journal::open(dir.path())?;
        assert_eq!(journal.outcome("c1"), Some(ok(json!({"success": true}))));
        assert!(journal.get("c2").is_none() && journal.get("c3").is_none());

        // The read-only results' folder: both are removed.
        let volatile = temp_dir()?;
        std::fs::File::create(volatile.path().join("r1.json"))?.set_len(MAX_BYTES + 1)?;
        mkfifo(&volatile.path().join("r2.json"))?;
        let journal = journal.keep_read_only_in(volatile.path());
        assert!(journal.get("r1").is_none() && journal.get("r2").is_none());
        assert!(!volatile.path().join("r1.json").exists());
        assert!(std::fs::symlink_metadata(volatile.path().join("r2.json")).is_err());
        Ok(())
    }

    #[test]
    fn unfinished_commands_are_reported_interrupted_after_a_restart() -> Result<(), JournalError> {
        let dir = temp_dir()?;
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
    fn a_result_that_cannot_be_written_is_not_taken_as_recorded() -> Result<(), JournalError> {
        let dir = temp_dir()?;
        let path = dir.path().join("journal");
        let journal = Journal::open(&path)?;
        journal.admit("c1", "get_config")?;
        // The folder goes away under the open journal: every write fails,
        // as on a full disk (root ignores permissions, so no chmod here).
        std::fs::remove_dir_all(&path).map_err(|source| JournalError::Open {
            path: path.clone(),
            source,
        })?;
        assert!(journal.complete("c1", ok(json!(1))).is_err());
        assert_eq!(
            journal.admit("c1", "get_config")?,
            Admission::Running,
            "still running: no result to re-send that a restart would contradict"
        );
        assert!(journal.undelivered().is_empty());
        Ok(())
    }

    #[test]
    fn odd_ids_cannot_name_paths() -> Result<(), JournalError> {
        let dir = temp_dir()?;
        let journal = Journal::open(&dir.path().join("journal"))?;
        assert_eq!(journal.admit("../../escape", "x")?, Admission::Run);
        journal.complete("../../escape", ok(json!(1)))?;
        assert!(!dir.path().join("escape.json").exists());
        let names: Vec<String> = std::fs::read_dir(dir.path().join("journal"))
            .map_err(|source| JournalError::Open {
                path: PathBuf::new(),
                source,
            })?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".json"))
            .collect();
        assert_eq!(names.len(), 1);
        assert!(names[0].starts_with("h-"));
        Ok(())
    }

    #[test]
    fn a_closing_progress_event_is_kept_on_disk_with_its_entry() -> Result<(), JournalError> {
        let dir = temp_dir()?;
        let progress = FinalProgress {
            event: "deploy_progress".to_owned(),
            payload: json!({"deploymentId": "d-1", "status": "completed"}),
            sent_in: Some(3),
        };
        {
            let journal = Journal::open(dir.path())?;
            journal.admit("d1", "deploy_video")?;
            // Recorded while the command runs, kept when it completes.
            journal.set_final_progress("d1", progress.clone())?;
            assert_eq!(
                journal.get("d1").and_then(|e| e.final_progress),
                Some(progress.clone())
            );
            journal.complete("d1", ok(json!(1)))?;
            let entry = journal.get("d1");
            assert_eq!(
                entry.as_ref().and_then(|e| e.final_progress.clone()),
                Some(progress.clone())
            );
            assert_eq!(entry.and_then(|e| e.outcome), Some(ok(json!(1))));
            assert_eq!(journal.undelivered_count(), 1);
        }
        let text = std::fs::read_to_string(dir.path().join(file_name("d1"))).unwrap_or_default();
        assert!(text.contains("\"deploymentId\":\"d-1\""), "{text}");
        // After a restart the session it went out on is unknown: it goes again.
        let journal = Journal::open(dir.path())?;
        assert_eq!(
            journal.get("d1").and_then(|e| e.final_progress),
            Some(FinalProgress {
                sent_in: None,
                ..progress
            })
        );
        Ok(())
    }

    #[test]
    fn the_folder_is_bounded_oldest_delivered_first() -> Result<(), JournalError> {
        let dir = temp_dir()?;
        let journal = Journal::open(dir.path())?;
        for i in 0..6 {
            let id = format!("c{i}");
            journal.admit(&id, "get_config")?;
            journal.complete(&id, ok(json!(i)))?;
            if i < 3 {
                journal.mark_delivered(&id)?;
            }
        }
        journal.admit("running", "deploy_video")?;
        journal.enforce(4, u64::MAX);
        let left: Vec<String> = (0..6)
            .map(|i| format!("c{i}"))
            .filter(|id| journal.get(id).is_some())
            .collect();
        assert_eq!(left, ["c3", "c4", "c5"], "delivered ones went first");
        assert!(journal.get("running").is_some(), "a running command stays");
        assert_eq!(journal.usage().0, 4);
        // Bytes too: only undelivered left, the oldest goes.
        journal.enforce(usize::MAX, journal.usage().1 - 1);
        assert!(journal.get("c3").is_none());
        assert!(journal.get("c4").is_some());
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
