//! Self-telemetry: the `vmtel_internal` measurement, written like any other.
//!
//! One line per source per cycle (tags `host` = where vmtel runs, `source` = the libvirt URI)
//! and one line per sink per cycle (tags `host`, `sink`). Counters are cumulative since start.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::deliver::SinkStats;
use crate::encode::line::Line;
use crate::encode::Encoder;
use crate::key;

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

fn get(a: &AtomicU64) -> Option<u64> {
    Some(a.load(Ordering::Relaxed))
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
        line.field_u64(key!("cycle_ns"), get(&self.last_cycle_ns))
            .field_u64(key!("domains"), get(&self.domains))
            .field_u64(key!("cycles"), get(&self.cycles))
            .field_u64(key!("errors"), get(&self.errors))
            .field_u64(key!("skipped_ticks"), get(&self.skipped_ticks))
            .field_u64(key!("late_cycles"), get(&self.late_cycles))
            .field_u64(key!("lines"), get(&self.lines))
            .field_u64(key!("bytes"), get(&self.bytes))
            .field_i64(
                key!("connected"),
                Some(i64::from(self.connected.load(Ordering::Relaxed))),
            );
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
        line.field_u64(key!("sink_batches"), get(&s.batches))
            .field_u64(key!("sink_lines"), get(&s.lines))
            .field_u64(key!("sink_bytes"), get(&s.bytes))
            .field_u64(key!("sink_dropped"), get(&s.dropped))
            .field_u64(key!("sink_errors"), get(&s.errors));
        if let Some(d) = s.delivery.get() {
            line.field_u64(key!("backlog_batches"), get(&d.backlog_batches))
                .field_u64(key!("backlog_bytes"), get(&d.backlog_bytes))
                .field_u64(
                    key!("oldest_age_ns"),
                    Some(d.oldest_age_ns(crate::collect::wall_ns())),
                )
                .field_u64(key!("delivered_lines"), get(&d.delivered_lines))
                .field_u64(key!("delivered_requests"), get(&d.delivered_requests))
                .field_u64(key!("retried"), get(&d.retried))
                .field_u64(key!("dropped_lines"), get(&d.dropped_lines))
                .field_u64(key!("memory_dropped_lines"), get(&d.memory_dropped_lines))
                .field_u64(key!("rejected_lines"), get(&d.rejected_lines));
        }
        n += usize::from(line.finish(encoder.precision.convert(grid_ns)));
    }
    n
}
