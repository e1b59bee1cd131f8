//! Reconnect delays: capped exponential backoff with jitter, reset after a
//! stable connection, never zero (so no failure mode can spin).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// A connection that lasted this long resets the backoff.
    pub stable_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
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
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15)
            ^ u64::from(std::process::id()).rotate_left(32);
        Backoff {
            policy,
            failures: 0,
            rng: seed | 1,
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

    /// The delay before the next attempt: `initial * 2^failures`, capped,
    /// scaled by a random factor in [0.5, 1.0] so a fleet does not reconnect
    /// in lockstep after a server restart.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.failures.min(16);
        let base = self
            .policy
            .initial
            .saturating_mul(1u32 << exp)
            .min(self.policy.max);
        self.failures = self.failures.saturating_add(1);
        let factor = 0.5 + (self.next_random() % 1001) as f64 / 2000.0;
        base.mul_f64(factor).max(Duration::from_millis(10))
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
    fn grows_to_the_cap_with_jitter_and_resets_after_a_stable_link() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(500) && delays[0] <= Duration::from_secs(1));
        assert!(delays[3] >= Duration::from_secs(4) && delays[3] <= Duration::from_secs(8));
        for d in &delays[5..] {
            assert!(
                *d >= Duration::from_secs(15) && *d <= Duration::from_secs(30),
                "{d:?}"
            );
        }
        b.connection_lasted(Duration::from_secs(5));
        assert!(b.next_delay() >= Duration::from_secs(15));
        b.connection_lasted(Duration::from_secs(61));
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
