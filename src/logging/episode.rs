//! A condition that can last (a server that refuses writes, a source that cannot be reached, a
//! cycle that overruns): reported when it begins and whenever its description changes, not
//! while it repeats, and its end noticed once. Every "log once until it recovers" in vmtel is
//! one of these.

/// One lasting condition's state.
#[derive(Debug, Clone, Default)]
pub struct Episode {
    current: Option<String>,
    count: u32,
}

impl Episode {
    /// Records one occurrence described by `what`. True when it should be reported: it begins
    /// an episode, or its description differs from the last one reported.
    pub fn occur(&mut self, what: &str) -> bool {
        self.count = self.count.saturating_add(1);
        if self.current.as_deref() == Some(what) {
            return false;
        }
        self.current = Some(what.to_owned());
        true
    }

    /// Ends the episode. Returns how many occurrences it had if one was running (to report
    /// the recovery), else `None`.
    pub fn end(&mut self) -> Option<u32> {
        self.current.take()?;
        Some(std::mem::take(&mut self.count))
    }

    /// The description of the running episode, if any.
    pub fn current(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// Occurrences in the running episode (0 when none runs).
    pub fn count(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_at_its_start_and_changes_and_ended_once() {
        let mut e = Episode::default();
        assert_eq!(e.end(), None, "nothing to end");
        assert!(e.occur("refused"));
        assert!(!e.occur("refused"));
        assert!(!e.occur("refused"));
        assert!(e.occur("timeout"), "a new cause is reported");
        assert_eq!(e.current(), Some("timeout"));
        assert_eq!(e.count(), 4);
        assert_eq!(e.end(), Some(4));
        assert_eq!(e.end(), None);
        assert_eq!(e.count(), 0);
        assert!(e.occur("refused"), "a new episode is reported again");
    }
}
