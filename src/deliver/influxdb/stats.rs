//! Counters of one InfluxDB output, shared by its spool, its sender and `vmtel_internal`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Backlog and delivery counters of one output. Counters are cumulative since start; the
/// backlog figures are the spool's current content.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Batches (spool rows) waiting to be sent.
    pub backlog_batches: AtomicU64,
    /// Bytes of line protocol waiting to be sent.
    pub backlog_bytes: AtomicU64,
    /// When the oldest waiting batch was accepted, ns since the epoch (0: nothing waits).
    pub oldest_ns: AtomicI64,
    /// Lines acknowledged by the server.
    pub delivered_lines: AtomicU64,
    /// Requests acknowledged by the server.
    pub delivered_requests: AtomicU64,
    /// Requests that failed and will be (or were) tried again.
    pub retried: AtomicU64,
    /// Lines dropped by vmtel: from the spool because it was full or they were too old, or
    /// from memory (below).
    pub dropped_lines: AtomicU64,
    /// Of `dropped_lines`, those dropped from memory while the spool could not be written
    /// (past 64 MiB waiting).
    pub memory_dropped_lines: AtomicU64,
    /// Lines the server refused (bad line, type conflict, a single line over its size limit).
    pub rejected_lines: AtomicU64,
}

impl DeliveryStats {
    /// Adds `batches` and `bytes` to the backlog (negative to remove).
    pub fn backlog_add(&self, batches: i64, bytes: i64) {
        add(&self.backlog_batches, batches);
        add(&self.backlog_bytes, bytes);
    }

    /// Age of the oldest waiting batch at `now_ns`, in ns (0 when nothing waits).
    pub fn oldest_age_ns(&self, now_ns: i64) -> u64 {
        let oldest = self.oldest_ns.load(Ordering::Relaxed);
        if oldest == 0 || self.backlog_batches.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        u64::try_from(now_ns.saturating_sub(oldest)).unwrap_or(0)
    }
}

fn add(a: &AtomicU64, d: i64) {
    if d >= 0 {
        a.fetch_add(d.unsigned_abs(), Ordering::Relaxed);
    } else {
        // Saturating: never wrap below zero even if two threads race on the last rows.
        let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(d.unsigned_abs()))
        });
    }
}
