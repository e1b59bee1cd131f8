//! Reconnect delays: capped exponential backoff with *full* jitter, reset
//! after a stable connection, never below a floor (so no failure mode can
//! spin).
//!
//! Full jitter (a delay drawn over the whole window, the first attempt
//! after a drop included) spreads a fleet that lost its server at the same
//! moment: with a window of 5 s doubling to 15 s, 200 agents come back with
//! at most ~20 % of them authenticating in any one second and 90 % within
//! 15 s of the server's return, after a 5-second as after a 2-minute outage
//! (the real server checks each key with bcrypt, 100-250 ms: a burst stalls
//! it). See docs/benchmarks.md ("A fleet coming back").

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Spreads nearby seeds (clock ticks apart) over the whole state space.
fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The shortest delay: no failure mode retries without waiting.
pub const FLOOR: Duration = Duration::from_millis(10);

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Window of the first retry (the delay is drawn in `[floor, initial]`).
    pub initial: Duration,
    /// Largest window.
    pub max: Duration,
    /// A connection that lasted this long resets the backoff.
    pub stable_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(15),
            stable_after: Duration::from_secs(60),
        }
    }
}

/// Backoff state: attempt count and a small PRNG for jitter.
#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
    rng: u64,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        // Time, pid and a per-process counter: distinct boxes and distinct
        // links in one process draw different delays.
        static LINKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nth = LINKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15)
            ^ u64::from(std::process::id()).rotate_left(32)
            ^ nth.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Backoff {
            policy,
            failures: 0,
            rng: splitmix64(seed) | 1,
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: plenty for jitter.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// The delay before the next attempt: uniform over the window
    /// `initial * 2^failures` (capped at `max`), so a fleet does not
    /// reconnect in lockstep after a server restart.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.failures.min(16);
        let window = self
            .policy
            .initial
            .saturating_mul(1u32 << exp)
            .min(self.policy.max);
        self.failures = self.failures.saturating_add(1);
        let factor = (self.next_random() % 10_001) as f64 / 10_000.0;
        window.mul_f64(factor).max(FLOOR)
    }

    /// Called when a connection ends; a long one resets the backoff.
    pub fn connection_lasted(&mut self, lasted: Duration) {
        if lasted >= self.policy.stable_after {
            self.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_grow_to_the_cap_and_reset_after_a_stable_link() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let delays: Vec<Duration> = (0..400).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= Duration::from_secs(5));
        assert!(
            delays
                .iter()
                .all(|d| *d >= FLOOR && *d <= Duration::from_secs(15))
        );
        // Full jitter: the capped delays cover the whole window.
        let late = &delays[2..];
        assert!(late.iter().any(|d| *d < Duration::from_secs(3)), "{late:?}");
        assert!(
            late.iter().any(|d| *d > Duration::from_secs(12)),
            "{late:?}"
        );
        b.connection_lasted(Duration::from_secs(5));
        assert!(b.next_delay() <= Duration::from_secs(15));
        b.connection_lasted(Duration::from_secs(61));
        assert!(b.next_delay() <= Duration::from_secs(5));
    }

    #[test]
    fn a_fleet_is_spread_over_the_first_window() {
        // 200 agents that lost the server at the same moment: their first
        // retries spread over the whole 5-s window (40 a second expected;
        // the old ×0.5–1 jitter of a 1-s window put all 200 in the first).
        let mut counts = [0usize; 6];
        for _ in 0..200 {
            let mut b = Backoff::new(BackoffPolicy::default());
            counts[b.next_delay().as_secs() as usize] += 1;
        }
        assert!(
            counts[..5].iter().all(|c| (15..=65).contains(c)),
            "{counts:?}"
        );
    }
}
