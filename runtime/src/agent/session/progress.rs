//! Where a running command's progress events go: to the server, with the
//! rules the real server and its dashboard need (issue 18.3, 18.4). The
//! event's name and whether it needs a deployment come from the
//! component's manifest; nothing here names an event.
//!
//! - A report of a component whose manifest says `progress-needs-deployment`
//!   is not sent without a `deploymentId`: the server then matches by
//!   `videoId`, ignores `completed` / `error` and puts every deployment of
//!   that video back to in progress (a finished one reads 0 %).
//! - The closing event of a deployment (completed or failed, with its
//!   `deploymentId`) is recorded in the command's journal entry: the
//!   deployment service completes a deployment only from it, so the session
//!   re-sends it before the result until the result is delivered.
//! - The server applies each progress event on its own pooled database
//!   connection, so two events a few ms apart can land in either order
//!   (issue 28.4: a failure overtaken by the 0 % before it left the
//!   deployment in progress for good). So a deployment's 0 % start is held
//!   back [`START_HOLD`] and dropped when the closing event comes meanwhile,
//!   and the closing event goes out once more [`RESEND_AFTER`] later: the
//!   server's update is idempotent, and by then nothing older is in flight.

use crate::host::ProgressSink;
use crate::journal::{FinalProgress, Journal};
use crate::link::LinkHandle;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a deployment's 0 % start waits for a later event.
pub(super) const START_HOLD: Duration = Duration::from_millis(500);
/// When the closing event is sent again.
pub(super) const RESEND_AFTER: Duration = Duration::from_secs(2);

/// One command's progress sink.
pub(super) struct LinkProgress {
    link: LinkHandle,
    journal: Arc<Journal>,
    command_id: String,
    /// The session's authenticated-session number (0: not authenticated).
    session_no: Arc<AtomicU64>,
    /// A 0 % start not sent yet: (event, payload, when it was emitted).
    held: Mutex<Option<(String, Value, Instant)>>,
    /// Where the closing event's re-send is scheduled (the session's
    /// runtime; progress comes from command threads).
    runtime: Option<tokio::runtime::Handle>,
    /// The manifest's `progress-needs-deployment`.
    needs_deployment: bool,
}

impl LinkProgress {
    pub(super) fn new(
        link: LinkHandle,
        journal: Arc<Journal>,
        command_id: String,
        session_no: Arc<AtomicU64>,
        needs_deployment: bool,
    ) -> Self {
        LinkProgress {
            link,
            journal,
            command_id,
            session_no,
            held: Mutex::new(None),
            runtime: tokio::runtime::Handle::try_current().ok(),
            needs_deployment,
        }
    }

    /// Emits a deployment's event now; whether it went out.
    fn send(&self, event: &str, payload: &Value) -> bool {
        self.session_no.load(Ordering::SeqCst) != 0
            && self.link.emit(event, std::slice::from_ref(payload)).is_ok()
    }

    /// Holds a 0 % start; before any other event, sends a held start that
    /// waited [`START_HOLD`], or drops it when `closing`.
    /// `true` when `payload` itself is held.
    fn hold_or_release(&self, event: &str, payload: &Value, closing: bool) -> bool {
        let Ok(mut held) = self.held.lock() else {
            return false;
        };
        if let Some((e, p, at)) = held.take()
            && !closing
            && at.elapsed() >= START_HOLD
        {
            let _ = self.send(&e, &p);
        }
        let is_start = !closing && payload.get("progress").and_then(Value::as_f64) == Some(0.0);
        if is_start {
            *held = Some((event.to_owned(), payload.clone(), Instant::now()));
        }
        is_start
    }

    /// Sends the closing event once more, [`RESEND_AFTER`] from now.
    fn resend_later(&self, event: &str, payload: &Value) {
        let Some(runtime) = &self.runtime else {
            return;
        };
        let (link, event, payload) = (self.link.clone(), event.to_owned(), payload.clone());
        let session_no = self.session_no.clone();
        let session = session_no.load(Ordering::SeqCst);
        runtime.spawn(async move {
            tokio::time::sleep(RESEND_AFTER).await;
            // A new session re-sends it from the journal anyway.
            if session != 0 && session_no.load(Ordering::SeqCst) == session {
                let _ = link.emit(&event, &[payload]);
            }
        });
    }
}

/// The deployment an event belongs to, if it names one.
fn deployment_id(payload: &Value) -> Option<&str> {
    payload
        .get("deploymentId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
}

/// Whether this event closes its deployment: an `error`, `completed`, or
/// the `status` the host puts on every event (`completed` at 100 %,
/// `failed` with an error). A `status` the component set itself is taken
/// as it says; without one, 100 % closes (the central completes an update
/// at 100 %).
pub(super) fn is_final(payload: &Value) -> bool {
    let failed = payload.get("error").is_some_and(|e| !e.is_null());
    let completed = payload.get("completed").and_then(Value::as_bool) == Some(true);
    let by_status = match payload.get("status").and_then(Value::as_str) {
        Some(status) => matches!(status, "completed" | "failed"),
        None => payload.get("progress").and_then(Value::as_u64) >= Some(100),
    };
    failed || completed || by_status
}

impl ProgressSink for LinkProgress {
    fn emit(&self, event: &str, payload: Value) {
        let Some(_) = deployment_id(&payload) else {
            if self.needs_deployment {
                tracing::debug!(
                    "command {}: {event} not sent (the command carries no deploymentId)",
                    self.command_id
                );
                return;
            }
            let _ = self.link.emit(event, &[payload]);
            return;
        };
        let session = self.session_no.load(Ordering::SeqCst);
        let closing = is_final(&payload);
        if self.hold_or_release(event, &payload, closing) {
            return;
        }
        let sent = self.send(event, &payload);
        if closing {
            if sent {
                self.resend_later(event, &payload);
            }
            let record = FinalProgress {
                event: event.to_owned(),
                payload,
                sent_in: sent.then_some(session),
            };
            if let Err(e) = self.journal.set_final_progress(&self.command_id, record) {
                tracing::warn!("{e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_final;
    use serde_json::json;

    #[test]
    fn closing_events_are_recognised() {
        assert!(is_final(&json!({"completed": true, "progress": 100})));
        assert!(is_final(&json!({"error": "disk full", "progress": 0})));
        assert!(is_final(&json!({"progress": 100})));
        assert!(is_final(&json!({"progress": 0, "status": "failed"})));
        assert!(is_final(&json!({"progress": 100, "status": "completed"})));
        assert!(!is_final(
            &json!({"progress": 100, "status": "in_progress"})
        ));
        assert!(!is_final(&json!({"progress": 60, "status": "in_progress"})));
        assert!(!is_final(&json!({"progress": 60})));
        assert!(!is_final(&json!({"progress": 0, "error": null})));
    }
}
