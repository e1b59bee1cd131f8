//! `progress`: monotonic, throttled progress reports, emitted as the event
//! the component's manifest names.
//!
//! Every event carries `status` (the dashboard reads it: in_progress,
//! completed, failed) unless the component set one. A report whose detail
//! names a new `stage` (downloaded, backed_up, stopped, installed, started,
//! healthy …) is a milestone: it is never dropped by the rate limit, so a
//! fast update does not read `2 → 100` on the dashboard (issue 18.5).

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
    last_stage: Option<String>,
}

impl ProgressState {
    pub fn new(sink: Option<Arc<dyn ProgressSink>>) -> Self {
        ProgressState {
            sink,
            last_percent: None,
            last_sent: None,
            last_stage: None,
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
        let stage = payload
            .get("stage")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        let milestone = stage.is_some() && stage != state.last_stage;
        // A milestone may repeat the last percentage, never go below it.
        let percent = match state.last_percent {
            Some(last) if milestone => percent.max(last),
            _ => percent,
        };
        if !is_error && !milestone && state.last_percent.is_some_and(|last| percent <= last) {
            return;
        }
        let too_soon = state.last_sent.is_some_and(|t| t.elapsed() < MIN_INTERVAL);
        if !is_error && !milestone && too_soon && percent < 100 {
            return;
        }
        state.last_percent = Some(percent);
        state.last_sent = Some(Instant::now());
        if milestone {
            state.last_stage = stage;
        }
        if let Some(sink) = &state.sink {
            if !payload.contains_key("status") {
                let completed = payload
                    .get("completed")
                    .and_then(serde_json::Value::as_bool)
                    == Some(true);
                let status = if is_error {
                    "failed"
                } else if completed || percent == 100 {
                    "completed"
                } else {
                    "in_progress"
                };
                payload.insert("status".to_owned(), status.into());
            }
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
