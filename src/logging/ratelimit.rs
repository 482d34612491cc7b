//! Rate limiting of repeated identical log events: the same message from the same place is
//! let through at most once per window; repeats inside the window are dropped. Warnings and
//! errors about a persistent condition then show up once a window instead of once a cycle.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata};
use tracing_subscriber::layer::{Context, Filter};

/// Most distinct messages remembered; the table is cleared past this (bounded memory).
const MAX_KEYS: usize = 4096;

/// A per-layer filter that drops repeats of identical WARN and ERROR events within `window`.
pub struct RateLimit {
    window: Duration,
    seen: Mutex<HashMap<u64, Instant>>,
}

impl RateLimit {
    /// Lets each distinct warning or error through at most once per `window`.
    pub fn new(window: Duration) -> Self {
        RateLimit {
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// True if an event with this key should be logged now.
    fn allow(&self, key: u64, now: Instant) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return true;
        };
        if let Some(&last) = seen.get(&key) {
            if now.saturating_duration_since(last) < self.window {
                return false;
            }
        }
        if seen.len() >= MAX_KEYS {
            seen.clear();
        }
        seen.insert(key, now);
        true
    }
}

/// Collects an event's field values into a string for hashing.
struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?};", field.name(), value);
    }
}

impl<S> Filter<S> for RateLimit {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        let level = *event.metadata().level();
        if level > Level::WARN {
            return true; // INFO and below are not rate limited
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let mut h = DefaultHasher::new();
        event.metadata().callsite().hash(&mut h);
        fields.0.hash(&mut h);
        self.allow(h.finish(), Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_inside_the_window_are_dropped() {
        let rl = RateLimit::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(rl.allow(1, t0));
        assert!(!rl.allow(1, t0 + Duration::from_secs(59)));
        assert!(rl.allow(2, t0 + Duration::from_secs(1)));
        assert!(rl.allow(1, t0 + Duration::from_secs(61)));
    }
}
