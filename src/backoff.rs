//! Capped exponential backoff with jitter, honouring a server's `Retry-After`: the one retry
//! schedule of vmtel (an output's sender after a failed request, a source's worker after a
//! failed connection or cycle).

use std::time::Duration;

/// First wait after a failure.
pub const BASE: Duration = Duration::from_secs(1);
/// Longest wait between two attempts (unless the server asks for longer with `Retry-After`).
pub const CAP: Duration = Duration::from_secs(60);

/// Waits between attempts: `BASE`, doubling per consecutive failure up to `CAP`, each scaled
/// by a random factor in [0.5, 1) so that many agents do not retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    failures: u32,
    base: Duration,
    cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(BASE, CAP)
    }
}

impl Backoff {
    /// A backoff from `base` doubling up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            failures: 0,
            base,
            cap,
        }
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The wait after one more failure: never shorter than `retry_after`.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1u32 << exp.min(31)).min(self.cap);
        let jittered = full.mul_f64(0.5 + fastrand::f64() * 0.5);
        match retry_after {
            Some(ra) => jittered.max(ra),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for n in 1..=12u32 {
            let d = b.next_delay(None);
            let full = Duration::from_secs((1u64 << (n - 1)).min(60));
            assert!(
                d >= full / 2 && d <= full,
                "failure {n}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
        assert_eq!(b.failures(), 12);
        b.reset();
        assert!(b.next_delay(None) <= Duration::from_secs(1));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut b = Backoff::default();
        assert!(b.next_delay(Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert!(b.next_delay(Some(Duration::ZERO)) <= Duration::from_secs(2));
    }
}
