//! Self-telemetry: the `vmtel_internal` measurement, written like any other.
//!
//! One line per source per cycle (tags `host` = where vmtel runs, `source` = the libvirt URI)
//! and one line per sink per cycle (tags `host`, `sink`). Counters are cumulative since start.
//! The counters are snapshotted into typed records ([`Internal`]) that go to the sinks like a
//! VM's values; their fields and order are the schema table's ([`crate::schema`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::deliver::batch::{Internal, Subject};
use crate::deliver::influxdb::DeliveryStats;
use crate::deliver::SinkStats;

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
    /// Records handed to the sinks (excluding self-telemetry): one per VM measurement, device
    /// and derived features.
    pub records: AtomicU64,
    /// Whether the connection is up.
    pub connected: AtomicBool,
    /// The last error, if any.
    pub last_error: Mutex<Option<String>>,
}

impl SourceStats {
    /// The counters as of now.
    pub fn snapshot(&self) -> SourceCounters {
        SourceCounters {
            cycle_ns: get(&self.last_cycle_ns),
            domains: get(&self.domains),
            cycles: get(&self.cycles),
            errors: get(&self.errors),
            skipped_ticks: get(&self.skipped_ticks),
            late_cycles: get(&self.late_cycles),
            records: get(&self.records),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// A source's counters at one moment (the fields of its `vmtel_internal` record).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounters {
    /// Duration of the last cycle, ns.
    pub cycle_ns: u64,
    /// Domains in the last successful cycle.
    pub domains: u64,
    /// Cycles run.
    pub cycles: u64,
    /// Failed cycles.
    pub errors: u64,
    /// Ticks skipped.
    pub skipped_ticks: u64,
    /// Cycles that finished after their deadline.
    pub late_cycles: u64,
    /// Records handed to the sinks (self-telemetry excluded).
    pub records: u64,
    /// Whether the connection is up.
    pub connected: bool,
}

/// A sink's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounters {
    /// Batches written.
    pub batches: u64,
    /// Lines (records) written.
    pub lines: u64,
    /// Bytes written (text sinks).
    pub bytes: u64,
    /// Batches dropped because the queue was full.
    pub dropped: u64,
    /// Write errors.
    pub errors: u64,
}

impl SinkStats {
    /// The counters as of now.
    pub fn snapshot(&self) -> SinkCounters {
        SinkCounters {
            batches: get(&self.batches),
            lines: get(&self.lines),
            bytes: get(&self.bytes),
            dropped: get(&self.dropped),
            errors: get(&self.errors),
        }
    }
}

/// An InfluxDB output's spool and delivery counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounters {
    /// Spooled batches waiting.
    pub backlog_batches: u64,
    /// Bytes waiting.
    pub backlog_bytes: u64,
    /// Age of the oldest waiting batch, ns.
    pub oldest_age_ns: u64,
    /// Lines the server stored.
    pub delivered_lines: u64,
    /// Requests settled.
    pub delivered_requests: u64,
    /// Requests retried.
    pub retried: u64,
    /// Lines dropped.
    pub dropped_lines: u64,
    /// Of those, dropped from memory.
    pub memory_dropped_lines: u64,
    /// Lines the server refused.
    pub rejected_lines: u64,
}

impl DeliveryStats {
    /// The counters as of `now_ns` (ns since the epoch).
    pub fn snapshot(&self, now_ns: i64) -> DeliveryCounters {
        DeliveryCounters {
            backlog_batches: get(&self.backlog_batches),
            backlog_bytes: get(&self.backlog_bytes),
            oldest_age_ns: self.oldest_age_ns(now_ns),
            delivered_lines: get(&self.delivered_lines),
            delivered_requests: get(&self.delivered_requests),
            retried: get(&self.retried),
            dropped_lines: get(&self.dropped_lines),
            memory_dropped_lines: get(&self.memory_dropped_lines),
            rejected_lines: get(&self.rejected_lines),
        }
    }
}

/// The record of source `uri`.
pub fn source_record(agent_host: &str, uri: &str, stats: &SourceStats) -> Internal {
    Internal {
        host: agent_host.to_owned(),
        subject: Subject::Source {
            uri: uri.to_owned(),
            counters: stats.snapshot(),
        },
    }
}

/// One record per sink.
pub fn sink_records(
    agent_host: &str,
    sinks: &[(String, std::sync::Arc<SinkStats>)],
    now_ns: i64,
) -> Vec<Internal> {
    sinks
        .iter()
        .map(|(name, s)| Internal {
            host: agent_host.to_owned(),
            subject: Subject::Sink {
                name: name.clone(),
                counters: s.snapshot(),
                delivery: s.delivery.get().map(|d| d.snapshot(now_ns)),
            },
        })
        .collect()
}
