//! Results the server keeps refusing by dropping the link.
//!
//! Why: a result is re-sent after every re-authentication until delivery is
//! proven. If the server closes the connection each time it reads one (a
//! limit the agent does not know of), that loop would keep the box offline
//! for every other result and command (issue 28.2). The server reads in
//! order and stops at the frame it refuses, so at a drop the earliest result
//! still unproven, sent within [`SOON`], is blamed; after [`LIMIT`] such
//! drops it is replaced by a small error result under the same id. (An
//! innocent result may be blamed on a flaky link; it takes [`LIMIT`] drops
//! in a row right after it, and the alternative is a loop that never ends.)

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A drop this soon after a result was sent is blamed on it.
pub(super) const SOON: Duration = Duration::from_secs(5);
/// Drops after the same result before it is replaced.
pub(super) const LIMIT: u32 = 3;
/// Results tracked at most (the oldest counts are forgotten).
const MAX_TRACKED: usize = 256;

#[derive(Debug, Default)]
pub(super) struct RefusedResults {
    /// Results sent on this connection and not proven delivered, in order.
    unproven: std::collections::VecDeque<(String, Instant)>,
    drops: HashMap<String, u32>,
}

impl RefusedResults {
    /// A result went out.
    pub(super) fn sent(&mut self, id: &str) {
        if self.unproven.len() >= MAX_TRACKED {
            self.unproven.pop_front();
        }
        self.unproven.push_back((id.to_owned(), Instant::now()));
    }

    /// The link dropped: blames the earliest unproven result sent just
    /// before.
    pub(super) fn link_dropped(&mut self) {
        let blamed = self
            .unproven
            .iter()
            .find(|(_, at)| at.elapsed() <= SOON)
            .map(|(id, _)| id.clone());
        self.unproven.clear();
        let Some(id) = blamed else {
            return;
        };
        if self.drops.len() >= MAX_TRACKED && !self.drops.contains_key(&id) {
            self.drops.clear();
        }
        *self.drops.entry(id).or_default() += 1;
    }

    /// The server has it: forget its count.
    pub(super) fn delivered(&mut self, id: &str) {
        self.drops.remove(id);
        self.unproven.retain(|(sent, _)| sent != id);
    }

    /// Whether `id` should be replaced by an error result; how many drops.
    pub(super) fn refused(&self, id: &str) -> Option<u32> {
        self.drops.get(id).copied().filter(|n| *n >= LIMIT)
    }
}

/// The error result sent instead of a result the server kept refusing.
pub(super) fn replacement(drops: u32, bytes: usize) -> String {
    format!(
        "The central server closed the connection right after this result {drops} times; it was replaced by this error ({bytes} bytes were refused) so that the box stays online for other commands"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_unproven_result_is_blamed_for_each_drop() {
        let mut refused = RefusedResults::default();
        for _ in 0..LIMIT - 1 {
            refused.sent("proven");
            refused.delivered("proven");
            refused.sent("big");
            refused.sent("after");
            refused.link_dropped();
        }
        assert_eq!(refused.refused("big"), None);
        refused.sent("big");
        refused.link_dropped();
        assert_eq!(refused.refused("big"), Some(LIMIT));
        assert_eq!(refused.refused("after"), None);
        assert_eq!(refused.refused("proven"), None);
        // A drop with nothing unproven blames nobody.
        refused.link_dropped();
        refused.delivered("big");
        assert_eq!(refused.refused("big"), None);
        assert!(replacement(3, 10).contains("3 times"));
    }
}
