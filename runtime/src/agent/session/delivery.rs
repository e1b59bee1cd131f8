//! What goes to the server about a command's end, and when: a result only
//! once the session is authenticated and never for a command kept for the
//! maintenance window (it has none before it has run); a deployment's
//! closing progress event before its result (the server completes a
//! deployment from it, never from the result), once per authenticated
//! session; after each authentication, every result the journal still
//! holds undelivered. The [`Outbox`] fits what goes out and proves it
//! delivered.

use super::blocking::off_worker;
use super::journal_steps::final_progress_of;
use super::outbox::Outbox;
use crate::journal::{FinalProgress, Journal, Outcome};
use crate::link::LinkHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub(super) struct Delivery {
    link: LinkHandle,
    /// The authenticated session's number (0: none yet).
    session_no: Arc<AtomicU64>,
    /// Results sent and not proven delivered; outcomes not yet recorded.
    pub(super) outbox: Outbox,
}

impl Delivery {
    pub(super) fn new(link: LinkHandle, session_no: Arc<AtomicU64>) -> Self {
        Delivery {
            link,
            session_no,
            outbox: Outbox::default(),
        }
    }

    /// Emits a closing progress event read from the journal, unless it
    /// already went out on this session (or no session is authenticated).
    pub(super) fn final_progress(&self, final_progress: Option<FinalProgress>) {
        let Some(final_progress) = final_progress else {
            return;
        };
        let session = self.session_no.load(Ordering::SeqCst);
        if session == 0 || final_progress.sent_in == Some(session) {
            return;
        }
        let _ = self
            .link
            .emit(&final_progress.event, &[final_progress.payload]);
    }

    /// Sends `id`'s result when `open` (authenticated, not kept for the
    /// window); otherwise it waits in the journal for the next
    /// authentication.
    pub(super) fn result(&mut self, id: &str, outcome: &Outcome, open: bool) {
        if open {
            self.outbox.send(&self.link, id, outcome);
        }
    }

    /// After an authentication: every undelivered result again, each after
    /// its closing event, one stored outcome in memory at a time; not the
    /// ones in flight on this connection, nor the `kept` ones.
    pub(super) fn undelivered(&mut self, journal: &Journal, kept: impl Fn(&str) -> bool) {
        for id in journal.undelivered_ids() {
            if self.outbox.in_flight(&id) {
                continue;
            }
            if let Some(outcome) = off_worker(|| journal.outcome(&id)) {
                self.final_progress(off_worker(|| final_progress_of(journal, &id)));
                self.result(&id, &outcome, !kept(&id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::test_peer;
    use serde_json::json;

    fn fixture() -> Result<(tempfile::TempDir, Journal), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let journal = Journal::open(&dir.path().join("journal"))?;
        Ok((dir, journal))
    }

    fn closing(sent_in: Option<u64>) -> FinalProgress {
        FinalProgress {
            event: "install_progress".to_owned(),
            payload: json!({"deploymentId": "d-1", "status": "completed"}),
            sent_in,
        }
    }

    #[test]
    fn after_authentication_each_result_goes_again_after_its_closing_event()
    -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, journal) = fixture()?;
        for id in ["u-1", "c-2", "kept-3"] {
            journal.admit(id, "change")?;
        }
        journal.set_final_progress("u-1", closing(None))?;
        journal.complete("u-1", Outcome::Success { result: json!(1) })?;
        journal.complete("c-2", Outcome::Success { result: json!(2) })?;
        journal.complete(
            "kept-3",
            Outcome::Error {
                error: "interrupted".into(),
            },
        )?;
        let (link, mut server) = test_peer::connected(25_000, 0);
        let mut delivery = Delivery::new(link, Arc::new(AtomicU64::new(1)));
        delivery.undelivered(&journal, |id| id == "kept-3");
        let sent: Vec<(String, serde_json::Value)> = server
            .emitted()
            .into_iter()
            .map(|(name, args)| (name, args[0].clone()))
            .collect();
        let mut expected = vec![
            (
                "install_progress".to_owned(),
                json!({"deploymentId": "d-1", "status": "completed"}),
            ),
            (
                "command_result".to_owned(),
                json!({"commandId": "u-1", "status": "success", "result": 1}),
            ),
            (
                "command_result".to_owned(),
                json!({"commandId": "c-2", "status": "success", "result": 2}),
            ),
        ];
        expected.sort_by_key(|(_, p)| p["commandId"].as_str().map(str::to_owned));
        let mut got = sent.clone();
        got.sort_by_key(|(_, p)| p["commandId"].as_str().map(str::to_owned));
        assert_eq!(got, expected, "{sent:?}");
        let closing_at = sent.iter().position(|(n, _)| n == "install_progress");
        let result_at = sent.iter().position(|(_, p)| p["commandId"] == "u-1");
        assert!(closing_at < result_at, "the closing event first: {sent:?}");
        // In flight on this connection: not sent twice.
        delivery.undelivered(&journal, |id| id == "kept-3");
        let again = server.emitted();
        assert!(
            again.iter().all(|(name, _)| name != "command_result"),
            "{again:?}"
        );
        Ok(())
    }

    #[test]
    fn a_closing_event_goes_once_per_session_and_nothing_before_one() {
        let (link, mut server) = test_peer::connected(25_000, 0);
        let session = Arc::new(AtomicU64::new(0));
        let mut delivery = Delivery::new(link, session.clone());
        delivery.final_progress(Some(closing(None)));
        assert!(server.emitted().is_empty(), "not authenticated yet");
        session.store(2, Ordering::SeqCst);
        delivery.final_progress(Some(closing(Some(2))));
        assert!(server.emitted().is_empty(), "went out on this session");
        delivery.final_progress(Some(closing(Some(1))));
        assert_eq!(server.emitted().len(), 1, "an earlier session's");
        // A result that may not go yet waits in the journal.
        let outcome = Outcome::Success { result: json!({}) };
        delivery.result("c-1", &outcome, false);
        assert!(server.emitted().is_empty());
        delivery.result("c-1", &outcome, true);
        assert_eq!(server.emitted().len(), 1);
    }
}
