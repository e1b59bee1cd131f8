//! The outbox and its delivery proof: the in-memory half of the journal's
//! outbox (every outcome not marked delivered).
//!
//! A result goes out fitted to the server's `maxPayload` ([`fit`]), or
//! replaced by a small error when the server keeps dropping the link right
//! after it ([`refused`]). It is proven delivered once two server pings came
//! after it: the server pings again only after our pong, and TCP keeps
//! order. A dropped link forgets what was not proven; the journal still has
//! it, and the session sends it again after the next authentication. An
//! outcome the journal could not record yet (disk full) waits here and goes
//! out only once recorded, so a restart never reports a second, different
//! outcome for a result the server already has.
//!
//! The session decides when a result may go (authenticated, not a command
//! waiting for the maintenance window) and marks the delivered ones in the
//! journal.

mod fit;
mod refused;

use crate::journal::Outcome;
use crate::link::{LinkError, LinkHandle};
use std::time::Duration;

/// How often an outcome the journal could not record is written again.
pub(super) const RECORD_RETRY: Duration = Duration::from_secs(5);

/// What went out on this connection and what waits to be recorded.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    /// Server pings received on the current connection.
    pings: u64,
    /// Results emitted and not yet proven received: (command id, pings then).
    in_flight: Vec<(String, u64)>,
    /// Results after which the server dropped the link, again and again.
    refused: refused::RefusedResults,
    /// Outcomes the journal could not record yet, in arrival order.
    unrecorded: Vec<(String, Outcome)>,
}

impl Outbox {
    /// A new connection: its pings count from zero.
    pub(super) fn connected(&mut self) {
        self.pings = 0;
    }

    /// The link dropped: nothing in flight is proven, and the result sent
    /// just before is blamed (see [`refused`]).
    pub(super) fn link_dropped(&mut self) {
        self.in_flight.clear();
        self.refused.link_dropped();
    }

    /// Emits `outcome` as `id`'s `command_result`, fitted to the link's
    /// `maxPayload` (or replaced, when the server kept refusing it). Not
    /// connected: nothing goes out; the journal keeps it for later.
    pub(super) fn send(&mut self, link: &LinkHandle, id: &str, outcome: &Outcome) {
        let replaced = self.refused.refused(id).map(|drops| {
            let bytes = fit::frame_len("command_result", &outcome.to_result_payload(id));
            let error = refused::replacement(drops, bytes);
            tracing::error!("command {id}: {error}");
            Outcome::Error { error }
        });
        let outcome = replaced.as_ref().unwrap_or(outcome);
        let fitted = fit::fit(id, outcome, link.max_payload());
        let outcome = match &fitted {
            Some((smaller, why)) => {
                tracing::warn!("{why}");
                smaller
            }
            None => outcome,
        };
        match link.emit("command_result", &[outcome.to_result_payload(id)]) {
            Ok(()) => {
                self.refused.sent(id);
                self.in_flight.push((id.to_owned(), self.pings));
            }
            Err(LinkError::TooLarge { .. }) => {
                // Unreachable once fitted; never retried, whatever happens.
                tracing::error!("the result of command {id} does not fit; not sent");
            }
            Err(_) => {}
        }
    }

    /// Whether `id`'s result went out on this connection, not yet proven.
    pub(super) fn in_flight(&self, id: &str) -> bool {
        self.in_flight.iter().any(|(f, _)| f == id)
    }

    /// A server ping: returns the results it proves delivered (the second
    /// ping after they went out), forgotten here.
    pub(super) fn server_ping(&mut self) -> Vec<String> {
        self.pings += 1;
        let pings = self.pings;
        let mut delivered = Vec::new();
        self.in_flight.retain(|(id, at)| {
            if pings >= at + 2 {
                delivered.push(id.clone());
                false
            } else {
                true
            }
        });
        for id in &delivered {
            self.refused.delivered(id);
        }
        delivered
    }

    /// Keeps an outcome the journal could not record, for a retry.
    pub(super) fn keep_unrecorded(&mut self, id: String, outcome: Outcome) {
        self.unrecorded.push((id, outcome));
    }

    /// Whether outcomes wait to be recorded (the retry timer runs only then).
    pub(super) fn has_unrecorded(&self) -> bool {
        !self.unrecorded.is_empty()
    }

    /// The outcomes to record again, in the order they came.
    pub(super) fn take_unrecorded(&mut self) -> Vec<(String, Outcome)> {
        std::mem::take(&mut self.unrecorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::test_peer;
    use serde_json::{Value, json};

    fn success(result: Value) -> Outcome {
        Outcome::Success { result }
    }

    #[test]
    fn a_result_is_proven_delivered_by_the_second_ping_after_it() {
        let (link, mut server) = test_peer::connected(25_000, 0);
        let mut outbox = Outbox::default();
        let first = success(json!({"videos": 3}));
        outbox.send(&link, "c-1", &first);
        assert_eq!(
            server.emitted(),
            vec![(
                "command_result".to_owned(),
                vec![json!({"commandId": "c-1", "status": "success", "result": {"videos": 3}})]
            )]
        );
        assert!(outbox.in_flight("c-1"));
        assert_eq!(
            outbox.server_ping(),
            Vec::<String>::new(),
            "one ping proves nothing"
        );
        outbox.send(&link, "c-2", &first);
        assert_eq!(outbox.server_ping(), vec!["c-1".to_owned()]);
        assert!(!outbox.in_flight("c-1") && outbox.in_flight("c-2"));
        assert_eq!(outbox.server_ping(), vec!["c-2".to_owned()]);
        // A new connection counts its own pings: a result sent on it needs
        // two of them.
        outbox.connected();
        outbox.send(&link, "c-3", &first);
        assert!(outbox.server_ping().is_empty());
        assert_eq!(outbox.server_ping(), vec!["c-3".to_owned()]);
    }

    #[test]
    fn a_dropped_link_proves_nothing_and_a_result_refused_three_times_is_replaced() {
        let (link, mut server) = test_peer::connected(25_000, 0);
        let mut outbox = Outbox::default();
        let big_result = json!({"configuration": "x".repeat(500)});
        let big = success(big_result.clone());
        for _ in 0..refused::LIMIT {
            outbox.send(&link, "big", &big);
            outbox.connected();
            outbox.link_dropped();
            assert!(!outbox.in_flight("big"));
            assert!(outbox.server_ping().is_empty() && outbox.server_ping().is_empty());
        }
        let sent = server.emitted();
        assert_eq!(sent.len(), refused::LIMIT as usize);
        assert!(sent.iter().all(|(_, args)| args[0]["result"] == big_result));
        // The fourth time: a small error under the same id instead.
        outbox.send(&link, "big", &big);
        let sent = server.emitted();
        let payload = &sent[0].1[0];
        assert_eq!(
            (payload["commandId"].as_str(), payload["status"].as_str()),
            (Some("big"), Some("error"))
        );
        let error = payload["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(
                "The central server closed the connection right after this result 3 times"
            ),
            "{error}"
        );
        // Delivered at last: the count is forgotten, the real result goes.
        outbox.server_ping();
        assert_eq!(outbox.server_ping(), vec!["big".to_owned()]);
        outbox.send(&link, "big", &big);
        assert_eq!(server.emitted()[0].1[0]["status"], json!("success"));
    }

    #[test]
    fn a_result_over_max_payload_goes_out_as_an_error_that_fits() {
        let (link, mut server) = test_peer::connected(25_000, 1_000);
        let mut outbox = Outbox::default();
        outbox.send(
            &link,
            "c-9",
            &success(json!({"configuration": "x".repeat(2_000)})),
        );
        let sent = server.emitted();
        assert_eq!(sent.len(), 1);
        let payload = &sent[0].1[0];
        assert_eq!(payload["status"], json!("error"));
        let error = payload["error"].as_str().unwrap_or_default();
        assert!(error.contains("more than the 1000 bytes"), "{error}");
        assert!(fit::frame_len("command_result", payload) <= 1_000);
        assert!(outbox.in_flight("c-9"));
    }

    #[test]
    fn nothing_goes_out_on_a_link_that_is_down_and_unrecorded_outcomes_wait_in_order() {
        let (link, mut server) = test_peer::connected(25_000, 0);
        server.set_connected(false);
        let mut outbox = Outbox::default();
        outbox.send(&link, "c-1", &success(json!(1)));
        assert!(server.emitted().is_empty());
        assert!(!outbox.in_flight("c-1"), "the journal keeps it for later");
        assert!(!outbox.has_unrecorded());
        outbox.keep_unrecorded("c-1".to_owned(), success(json!(1)));
        outbox.keep_unrecorded("c-2".to_owned(), success(json!(2)));
        assert!(outbox.has_unrecorded());
        let ids: Vec<String> = outbox
            .take_unrecorded()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["c-1", "c-2"]);
        assert!(!outbox.has_unrecorded());
    }
}
