//! Summaries of a recurring event: the first occurrence of an episode is reported at once,
//! later ones are counted and reported as one total per window, so a condition that lasts (a
//! full spool dropping rows at every commit) costs one log line a minute, not one per cycle.

use std::time::{Duration, Instant};

/// Counts occurrences of one event between two summaries.
#[derive(Debug, Clone)]
pub struct Tally {
    window: Duration,
    count: u64,
    last_report: Option<Instant>,
}

impl Tally {
    /// A tally that reports at most once per `window`.
    pub fn new(window: Duration) -> Tally {
        Tally {
            window,
            count: 0,
            last_report: None,
        }
    }

    /// Adds `n` occurrences at `now` (0 is fine: it lets a due total out, or ends an episode
    /// after a quiet window). Returns the total to report now, if a report is due: at once for
    /// the first occurrence of an episode, then at most once per window.
    pub fn add(&mut self, n: u64, now: Instant) -> Option<u64> {
        self.count = self.count.saturating_add(n);
        let due = match self.last_report {
            None => true,
            Some(at) => now.saturating_duration_since(at) >= self.window,
        };
        if !due {
            return None;
        }
        if self.count == 0 {
            // A whole window without an occurrence: the episode is over.
            self.last_report = None;
            return None;
        }
        self.last_report = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_at_once_then_one_total_per_window_and_a_new_episode_after_quiet() {
        let t0 = Instant::now();
        let s = |n| Duration::from_secs(n);
        let mut t = Tally::new(s(60));
        assert_eq!(t.add(0, t0), None, "nothing happened");
        assert_eq!(t.add(5, t0), Some(5), "the first drop is reported at once");
        assert_eq!(t.add(3, t0 + s(10)), None);
        assert_eq!(t.add(4, t0 + s(59)), None);
        assert_eq!(
            t.add(0, t0 + s(60)),
            Some(7),
            "the window's total, even on a quiet call"
        );
        assert_eq!(t.add(0, t0 + s(119)), None);
        assert_eq!(
            t.add(0, t0 + s(120)),
            None,
            "a quiet window ends the episode"
        );
        assert_eq!(
            t.add(2, t0 + s(121)),
            Some(2),
            "a new episode reports at once"
        );
    }
}
