//! The collection grid: ticks at wall-clock multiples of the interval.

use std::time::Duration;

/// The first grid point strictly after `now_ns` (ns since the epoch) for `interval`.
pub fn next_tick(now_ns: i64, interval: Duration) -> i64 {
    let step = i64::try_from(interval.as_nanos())
        .unwrap_or(i64::MAX)
        .max(1);
    (now_ns.div_euclid(step) + 1).saturating_mul(step)
}

/// The last grid point at or before `ns` for `interval`.
pub fn tick_at_or_before(ns: i64, interval: Duration) -> i64 {
    let step = i64::try_from(interval.as_nanos())
        .unwrap_or(i64::MAX)
        .max(1);
    ns.div_euclid(step).saturating_mul(step)
}

/// How long to wait from `now_ns` until `tick_ns` (zero if it has passed).
pub fn until(now_ns: i64, tick_ns: i64) -> Duration {
    Duration::from_nanos(u64::try_from(tick_ns.saturating_sub(now_ns)).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn ticks_are_aligned_to_multiples_of_the_interval() {
        let ten = Duration::from_secs(10);
        assert_eq!(next_tick(1_700_000_003 * S, ten), 1_700_000_010 * S);
        assert_eq!(next_tick(1_700_000_010 * S, ten), 1_700_000_020 * S);
        assert_eq!(next_tick(1_700_000_009 * S + 999, ten), 1_700_000_010 * S);
        let minute = Duration::from_secs(60);
        assert_eq!(next_tick(125 * S, minute) % (60 * S), 0);
    }

    #[test]
    fn floor_of_the_grid() {
        let ten = Duration::from_secs(10);
        assert_eq!(tick_at_or_before(1_700_000_019 * S, ten), 1_700_000_010 * S);
        assert_eq!(tick_at_or_before(1_700_000_010 * S, ten), 1_700_000_010 * S);
    }

    #[test]
    fn wait_never_negative() {
        assert_eq!(until(10, 5), Duration::ZERO);
        assert_eq!(until(5, 10), Duration::from_nanos(5));
    }
}
