//! Where a running command's progress events go: to the server, with the
//! rules the real server and its dashboard need (issue 18.3, 18.4).
//!
//! - `deploy_progress` without a `deploymentId` is not sent: the server then
//!   matches by `videoId`, ignores `completed` / `error` and puts every
//!   deployment of that video back to in progress (a finished one reads 0 %).
//! - The closing event of a deployment (completed or failed, with its
//!   `deploymentId`) is recorded in the command's journal entry: the
//!   deployment service completes a deployment only from it, so the session
//!   re-sends it before the result until the result is delivered.

use crate::agent::journal::{FinalProgress, Journal};
use crate::host::ProgressSink;
use crate::link::LinkHandle;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One command's progress sink.
pub(super) struct LinkProgress {
    link: LinkHandle,
    journal: Arc<Journal>,
    command_id: String,
    /// The session's authenticated-session number (0: not authenticated).
    session_no: Arc<AtomicU64>,
}

impl LinkProgress {
    pub(super) fn new(
        link: LinkHandle,
        journal: Arc<Journal>,
        command_id: String,
        session_no: Arc<AtomicU64>,
    ) -> Self {
        LinkProgress {
            link,
            journal,
            command_id,
            session_no,
        }
    }
}

/// The deployment an event belongs to, if it names one.
fn deployment_id(payload: &Value) -> Option<&str> {
    payload
        .get("deploymentId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
}

/// Whether this event closes its deployment (the host puts `status` on
/// every event; `completed` / `error` / 100 % are what the server reads).
pub(super) fn is_final(event: &str, payload: &Value) -> bool {
    let status = payload.get("status").and_then(Value::as_str);
    let failed = payload.get("error").is_some_and(|e| !e.is_null());
    let completed = payload.get("completed").and_then(Value::as_bool) == Some(true);
    let full =
        event == "update_progress" && payload.get("progress").and_then(Value::as_u64) >= Some(100);
    failed || completed || full || matches!(status, Some("completed" | "failed"))
}

impl ProgressSink for LinkProgress {
    fn emit(&self, event: &str, payload: Value) {
        let Some(_) = deployment_id(&payload) else {
            if event == "deploy_progress" {
                tracing::debug!(
                    "command {}: deploy_progress not sent (the command carries no deploymentId)",
                    self.command_id
                );
                return;
            }
            let _ = self.link.emit(event, &[payload]);
            return;
        };
        let session = self.session_no.load(Ordering::SeqCst);
        let sent = session != 0
            && self
                .link
                .emit(event, std::slice::from_ref(&payload))
                .is_ok();
        if is_final(event, &payload) {
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
        assert!(is_final(
            "deploy_progress",
            &json!({"completed": true, "progress": 100})
        ));
        assert!(is_final(
            "deploy_progress",
            &json!({"error": "disk full", "progress": 0})
        ));
        assert!(is_final("update_progress", &json!({"progress": 100})));
        assert!(is_final(
            "update_progress",
            &json!({"progress": 0, "status": "failed"})
        ));
        assert!(!is_final(
            "deploy_progress",
            &json!({"progress": 100, "status": "in_progress"})
        ));
        assert!(!is_final(
            "update_progress",
            &json!({"progress": 60, "status": "in_progress"})
        ));
    }
}
