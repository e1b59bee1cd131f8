//! `log`: guest log lines, tagged with the component and the command id.

use super::HostState;
use super::bindings::neopro::agent::log::{Host, Level};

/// Longest guest log line kept; a runaway guest cannot flood the journal.
const MAX_LINE: usize = 4096;

impl Host for HostState {
    fn write(&mut self, level: Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let component = self.call.manifest.name.as_str();
        let command = self.call.command_id.as_str();
        match level {
            Level::Trace => tracing::trace!(component, command, "{message}"),
            Level::Debug => tracing::debug!(component, command, "{message}"),
            Level::Info => tracing::info!(component, command, "{message}"),
            Level::Warn => tracing::warn!(component, command, "{message}"),
            Level::Error => tracing::error!(component, command, "{message}"),
        }
    }
}
