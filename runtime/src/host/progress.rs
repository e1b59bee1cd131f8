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

impl Host for HostState {
    fn report(&mut self, percent: u8, detail: String) -> Result<(), WitError> {
        let Some(event) = self.call.manifest.progress_event.clone() else {
            return Err(WitError::NotPermitted(format!(
                "component '{}' declares no progress-event in its manifest",
                self.call.manifest.name
            )));
        };
        let mut payload = if detail.trim().is_empty() {
            serde_json::Map::new()
        } else {
            match serde_json::from_str::<serde_json::Value>(&detail) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => {
                    return Err(WitError::InvalidInput(
                        "progress detail must be a JSON object".to_owned(),
                    ));
                }
            }
        };
        let percent = percent.min(100);
        let state = &mut self.call.progress;
        // Never backwards, at most one per percent, at most 4 per second.
        if state.last_percent.is_some_and(|last| percent <= last) {
            return Ok(());
        }
        let too_soon = state.last_sent.is_some_and(|t| t.elapsed() < MIN_INTERVAL);
        if too_soon && percent < 100 {
            return Ok(());
        }
        state.last_percent = Some(percent);
        state.last_sent = Some(Instant::now());
        if let Some(sink) = &state.sink {
            payload.insert("progress".to_owned(), percent.into());
            sink.emit(&event, serde_json::Value::Object(payload));
        }
        Ok(())
    }
}
