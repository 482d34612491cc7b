//! One warning per cause: a failing device or a missing group is logged when it first happens,
//! not once per cycle.

use std::collections::HashSet;

/// Most causes remembered at once; past this the set is cleared (and causes may be logged again)
/// so memory stays bounded on a fleet with churn.
const MAX_CAUSES: usize = 10_000;

/// Remembers which causes were already logged.
#[derive(Debug, Default)]
pub struct Warnings {
    logged: HashSet<String>,
    source: String,
}

impl Warnings {
    /// Warnings for the source `source` (its URI, as it appears in log lines).
    pub fn new(source: &str) -> Self {
        Warnings {
            logged: HashSet::new(),
            source: source.to_owned(),
        }
    }

    /// Logs `message()` at WARN the first time `cause` is seen. Returns true if it logged.
    pub fn once(&mut self, cause: &str, message: impl FnOnce() -> String) -> bool {
        if self.logged.contains(cause) {
            return false;
        }
        if self.logged.len() >= MAX_CAUSES {
            self.logged.clear();
        }
        self.logged.insert(cause.to_owned());
        tracing::warn!(source = %self.source, "{}", message());
        true
    }

    /// Forgets `cause`, so that it is logged again if it recurs (e.g. after it cleared up).
    pub fn clear(&mut self, cause: &str) {
        self.logged.remove(cause);
    }

    /// Number of causes logged so far (bounded).
    pub fn len(&self) -> usize {
        self.logged.len()
    }

    /// True when nothing was logged.
    pub fn is_empty(&self) -> bool {
        self.logged.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_each_cause_once() {
        let mut w = Warnings::new("test:///default");
        assert!(w.once("a", || "first".into()));
        assert!(!w.once("a", || "again".into()));
        assert!(w.once("b", || "other".into()));
        w.clear("a");
        assert!(w.once("a", || "recurred".into()));
    }
}
