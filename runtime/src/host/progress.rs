//! `progress`: monotonic, throttled progress reports, emitted as the event
//! the component's manifest names.

use super::bindings::neopro::agent::progress::Host;
use super::{HostState, ProgressSink, WitError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// At most four reports a second reach the server (a 100 % always does).
const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// Where one command's progress goes, and what was last sent.
pub struct ProgressState {
    sink: Option<Arc<dyn ProgressSink>>,
    last_percent: Option<u8>,
    last_sent: Option<Instant>,
}

impl ProgressState {
    pub fn new(sink: Option<Arc<dyn ProgressSink>>) -> Self {
        ProgressState {
            sink,
            last_percent: None,
            last_sent: None,
        }
    }
}

impl HostState {
    /// Sends a progress event if it moves forward and is not too soon after
    /// the previous one (100 % and errors always go out). Used by `progress.report`
    /// and by downloads.
    pub(crate) fn emit_progress(
        &mut self,
        event: &str,
        percent: u8,
        mut payload: serde_json::Map<String, serde_json::Value>,
    ) {
        let percent = percent.min(100);
        let state = &mut self.call.progress;
        // A report carrying an error always goes out: the server marks the
        // deployment failed with it.
        let is_error = payload.contains_key("error");
        if !is_error && state.last_percent.is_some_and(|last| percent <= last) {
            return;
        }
        let too_soon = state.last_sent.is_some_and(|t| t.elapsed() < MIN_INTERVAL);
        if !is_error && too_soon && percent < 100 {
            return;
        }
        state.last_percent = Some(percent);
        state.last_sent = Some(Instant::now());
        if let Some(sink) = &state.sink {
            payload.insert("progress".to_owned(), percent.into());
            sink.emit(event, serde_json::Value::Object(payload));
        }
    }

    /// The manifest's progress event, or the `not-permitted` error.
    pub(crate) fn progress_event(&self) -> Result<String, WitError> {
        self.call.manifest.progress_event.clone().ok_or_else(|| {
            WitError::NotPermitted(format!(
                "component '{}' declares no progress-event in its manifest",
                self.call.manifest.name
            ))
        })
    }
}

/// A progress detail: empty, or a JSON object.
pub(crate) fn parse_detail(
    detail: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, WitError> {
    if detail.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str::<serde_json::Value>(detail) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(WitError::InvalidInput(
            "progress detail must be a JSON object".to_owned(),
        )),
    }
}

impl Host for HostState {
    fn report(&mut self, percent: u8, detail: String) -> Result<(), WitError> {
        let event = self.progress_event()?;
        let payload = parse_detail(&detail)?;
        self.emit_progress(&event, percent, payload);
        Ok(())
    }
}
