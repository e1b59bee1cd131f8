//! Reading logs: a systemd unit's journal or a log file.

use crate::bindings::neopro::agent::logs as host;
use crate::{Error, Root};

/// Last `lines` lines of a unit's journal.
pub fn journal_tail(unit: &str, lines: u32) -> Result<String, Error> {
    host::journal_tail(unit, lines)
}

/// Last `lines` lines of the agent's own log file (LOG_PATH).
pub fn agent_log_tail(lines: u32) -> Result<String, Error> {
    host::agent_log_tail(lines)
}

/// Last `lines` lines of a text file under a root.
pub fn file_tail(root: Root, path: &str, lines: u32) -> Result<String, Error> {
    host::file_tail(root, path, lines)
}

/// True when `name` is a plausible systemd unit name: ASCII letters, digits
/// and `:-_.@\`, 1..=255 characters, not starting with `-` (so it can never be
/// taken for an option). The host checks again; checking here lets a
/// component reject bad input before any host call.
pub fn is_valid_unit_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":-_.@\\".contains(&b))
}
