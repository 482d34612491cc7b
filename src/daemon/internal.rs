//! Self-telemetry: the `vmtel_internal` measurement, written like any other.
//!
//! One line per source per cycle (tags `host` = where vmtel runs, `source` = the libvirt URI)
//! and one line per sink per cycle (tags `host`, `sink`). Counters are cumulative since start.
//! The fields and their order are the schema table's ([`crate::schema`]).

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;

use crate::deliver::SinkStats;
use crate::encode::line::Line;
use crate::encode::Encoder;
use crate::schema::{internal_delivery, internal_sink, internal_source};

/// Counters of one source.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Cycles run (successful or not).
    pub cycles: AtomicU64,
    /// Cycles that failed (connect or bulk call).
    pub errors: AtomicU64,
    /// Ticks skipped: the previous cycle overran, or the source was backing off.
    pub skipped_ticks: AtomicU64,
    /// Of those, ticks skipped while backing off after a failure.
    pub backoff_skips: AtomicU64,
    /// Cycles that finished after their deadline (the next grid point).
    pub late_cycles: AtomicU64,
    /// Duration of the last cycle, ns.
    pub last_cycle_ns: AtomicU64,
    /// Domains in the last successful cycle.
    pub domains: AtomicU64,
    /// Lines emitted (excluding self-telemetry).
    pub lines: AtomicU64,
    /// Bytes of line protocol emitted (excluding self-telemetry).
    pub bytes: AtomicU64,
    /// Whether the connection is up.
    pub connected: AtomicBool,
    /// The last error, if any.
    pub last_error: Mutex<Option<String>>,
}

impl SourceStats {
    /// Appends this source's `vmtel_internal` line; returns the number of lines written.
    pub fn encode(
        &self,
        encoder: &Encoder,
        agent_host: &str,
        uri: &str,
        grid_ns: i64,
        out: &mut String,
    ) -> usize {
        let mut line = Line::new(out, "vmtel_internal");
        line.tag("host", agent_host).tag("source", uri);
        for (k, v) in &encoder.global_tags {
            line.tag(k, v);
        }
        internal_source::write_fields(&mut line, self);
        usize::from(line.finish(encoder.precision.convert(grid_ns)))
    }
}

/// Appends one `vmtel_internal` line per sink; returns the number of lines written.
pub fn encode_sinks(
    encoder: &Encoder,
    agent_host: &str,
    sinks: &[(String, std::sync::Arc<SinkStats>)],
    grid_ns: i64,
    out: &mut String,
) -> usize {
    let mut n = 0;
    for (name, s) in sinks {
        let mut line = Line::new(out, "vmtel_internal");
        line.tag("host", agent_host).tag("sink", name);
        for (k, v) in &encoder.global_tags {
            line.tag(k, v);
        }
        internal_sink::write_fields(&mut line, s);
        if let Some(d) = s.delivery.get() {
            internal_delivery::write_fields(&mut line, d);
        }
        n += usize::from(line.finish(encoder.precision.convert(grid_ns)));
    }
    n
}
