//! `[[outputs.influxdb]]`: InfluxDB 3, 2 and 1.x writers (and compatible servers such as
//! VictoriaMetrics) with a durable spool, batching, gzip and retries.
//!
//! Flow of one output:
//!
//! 1. The hub's sink thread ([`InfluxSink`]) encodes each typed batch in the output's precision,
//!    cuts the lines into rows that fit one
//!    request and appends them to the output's spool ([`spool`]), committing whatever is queued
//!    in one transaction. A batch is *accepted* once committed: from then on neither a crash nor
//!    an outage loses it.
//! 2. The output's sender thread ([`sender`]) reads the oldest rows, sends them ([`request`]),
//!    and deletes them once the answer settles them ([`response`]); failures are retried with
//!    backoff ([`crate::backoff`]). Order is kept per output.
//!
//! `docs/delivery.md` describes the guarantees, the retry rules and sizing.

pub mod check;
pub mod config;
pub mod error;
pub mod request;
pub mod response;
pub mod sender;
pub mod spool;
pub mod stats;

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

pub use self::config::{Api, InfluxOutput};
pub use self::error::{Error, ErrorKind};
use self::sender::{SenderHandle, SenderSettings};
use self::spool::{NewRow, Spool, SpoolOptions};
pub use self::stats::DeliveryStats;
use super::text::{write_text, TextEncoder, TextSink};
use super::{Batch, Sink, Written};
use crate::encode::{Encoder, Precision};
use crate::logging::tally::Tally;

/// Appended rows kept in memory before a commit is forced even though more batches are queued.
const GROUP_ROWS: usize = 256;
/// Longest time appended rows wait in memory for their group commit.
const GROUP_AGE: Duration = Duration::from_secs(1);
/// Most bytes kept in memory when the spool cannot be written (disk full, I/O error).
const MEMORY_LIMIT: usize = 64 << 20;
/// Lines dropped (spool full, or the memory limit above) are logged as one total per window.
const DROP_SUMMARY: Duration = Duration::from_secs(60);

/// The sink side of one InfluxDB output: appends to the spool; a sender thread delivers.
pub struct InfluxSink {
    name: String,
    spool: Spool,
    stats: Arc<DeliveryStats>,
    wake: Sender<()>,
    sender: Option<SenderHandle>,
    max_lines: usize,
    max_bytes: usize,
    /// Encodes batches with the output's precision (what the spooled rows are written in).
    text: TextEncoder,
    /// Rows not yet committed: (accepted at, line protocol, lines).
    pending: Vec<(i64, String, u64)>,
    pending_bytes: usize,
    pending_since: Option<Instant>,
    /// Lines the spool dropped (full or too old), for the per-minute summary.
    spool_drops: Tally,
    /// Lines dropped from memory while the spool could not be written.
    memory_drops: Tally,
}

impl InfluxSink {
    /// Opens the output's spool in `state_dir` (creating the directory), reads its secrets and
    /// starts its sender. Batches are encoded with `encoder`'s global tags, in the output's
    /// precision (`precision`, else `encoder`'s).
    pub fn start(
        cfg: &InfluxOutput,
        state_dir: &Path,
        encoder: &Encoder,
    ) -> io::Result<InfluxSink> {
        let global = encoder.precision;
        let name = cfg.display_name();
        std::fs::create_dir_all(state_dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{name}: cannot create state_dir {} for the spool: {e}; create it writable by vmtel or set state_dir",
                    state_dir.display()
                ),
            )
        })?;
        let path = state_dir.join(cfg.spool_file_name());
        let options = SpoolOptions {
            max_bytes: cfg.spool_max_size.as_u64(),
            max_age: cfg.spool_max_age,
            sync: cfg.spool_sync,
        };
        let stats = Arc::new(DeliveryStats::default());
        let (spool, salvage) = Spool::open(&path, options, Arc::clone(&stats))
            .map_err(|e| io::Error::other(format!("{name}: {e}")))?;
        if let Some(s) = salvage {
            tracing::error!(
                output = %name,
                "spool {} was damaged ({}): moved to {}; {} batches ({} lines) recovered into a fresh spool, {} unreadable",
                path.display(), s.reason, s.moved_to.display(), s.rows, s.lines, s.unreadable
            );
        }
        let backlog = stats.backlog_batches.load(Ordering::Relaxed);
        if backlog > 0 {
            tracing::info!(output = %name, "resuming delivery of {backlog} spooled batches from {}", path.display());
        }
        let endpoint = request::Endpoint::new(cfg, global)
            .map_err(|e| io::Error::other(format!("{name}: {e}")))?;
        let agent = request::agent(cfg).map_err(|e| io::Error::other(format!("{name}: {e}")))?;
        if cfg.insecure_skip_verify {
            tracing::warn!(
                output = %name,
                "insecure_skip_verify = true: the server's TLS certificate is NOT checked; anyone on the path can read and change the data and the token"
            );
        }
        let (wake, wake_rx) = crossbeam_channel::bounded(1);
        let reader = Spool::attach(&path, options, Arc::clone(&stats))?;
        let max_lines = cfg.batch_max_lines.max(1);
        let max_bytes = usize::try_from(cfg.batch_max_bytes.as_u64()).unwrap_or(usize::MAX);
        let settings = SenderSettings {
            name: name.clone(),
            endpoint,
            agent,
            max_lines: max_lines as u64,
            max_bytes: max_bytes as u64,
            flush_interval: cfg.flush_interval,
            create_database: cfg.create_database,
            spool_max_bytes: cfg.spool_max_size.as_u64(),
        };
        let sender = sender::spawn(reader, settings, Arc::clone(&stats), wake_rx)?;
        // Deliver what a previous run left behind without waiting for the first cycle.
        let _ = wake.try_send(());
        let to = cfg.precision.unwrap_or(global);
        Ok(InfluxSink {
            name,
            spool,
            stats,
            wake,
            sender: Some(sender),
            max_lines,
            max_bytes,
            text: TextEncoder::new(Encoder {
                global_tags: encoder.global_tags.clone(),
                precision: to,
            }),
            pending: Vec::new(),
            pending_bytes: 0,
            pending_since: None,
            spool_drops: Tally::new(DROP_SUMMARY),
            memory_drops: Tally::new(DROP_SUMMARY),
        })
    }

    /// Commits the pending rows to the spool and wakes the sender.
    fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows: Vec<NewRow<'_>> = self
            .pending
            .iter()
            .map(|(created_ns, body, lines)| NewRow {
                created_ns: *created_ns,
                body,
                lines: *lines,
                precision: self.text.encoder().precision,
            })
            .collect();
        let dropped = self.spool.append(&rows)?;
        self.pending.clear();
        self.pending_bytes = 0;
        self.pending_since = None;
        if let Some(n) = self.spool_drops.add(dropped, Instant::now()) {
            tracing::warn!(
                output = %self.name,
                "spool full (spool_max_size or spool_max_age reached): dropped the oldest {n} lines since the last report (total {}); the server has not taken data for a while: check it, or raise spool_max_size",
                self.stats.dropped_lines.load(Ordering::Relaxed)
            );
        }
        let _ = self.wake.try_send(());
        Ok(())
    }
}

impl Sink for InfluxSink {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn write(&mut self, batch: &Batch) -> io::Result<Written> {
        write_text(self, batch)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.commit()
    }

    fn delivery_stats(&self) -> Option<Arc<DeliveryStats>> {
        Some(Arc::clone(&self.stats))
    }
}

impl InfluxSink {
    /// The output's precision: what its lines' timestamps are in.
    pub fn precision(&self) -> Precision {
        self.text.encoder().precision
    }
}

impl TextSink for InfluxSink {
    fn text(&mut self) -> &mut TextEncoder {
        &mut self.text
    }

    /// Accepts newline-terminated `lines` whose timestamps are in [`InfluxSink::precision`]:
    /// cut into spool rows and committed with the next group (see [`Sink::flush`]).
    fn write_lines(&mut self, lines: &str) -> io::Result<()> {
        let now = crate::collect::wall_ns();
        for (chunk, n) in chunks(lines, self.max_lines, self.max_bytes) {
            self.pending_bytes += chunk.len();
            self.pending.push((now, chunk.to_owned(), n));
        }
        // Never hold unbounded memory while the disk refuses writes.
        let mut dropped = 0;
        while self.pending_bytes > MEMORY_LIMIT && self.pending.len() > 1 {
            let (_, body, n) = self.pending.remove(0);
            self.pending_bytes -= body.len();
            dropped += n;
        }
        if dropped > 0 {
            self.stats
                .dropped_lines
                .fetch_add(dropped, Ordering::Relaxed);
            self.stats
                .memory_dropped_lines
                .fetch_add(dropped, Ordering::Relaxed);
        }
        if let Some(n) = self.memory_drops.add(dropped, Instant::now()) {
            tracing::error!(
                output = %self.name,
                "the spool cannot be written and {} MiB wait in memory: dropped the oldest {n} lines since the last report (total {}); free space or fix the state_dir",
                MEMORY_LIMIT >> 20,
                self.stats.memory_dropped_lines.load(Ordering::Relaxed)
            );
        }
        self.pending_since.get_or_insert_with(Instant::now);
        if self.pending.len() >= GROUP_ROWS
            || self.pending_since.is_some_and(|t| t.elapsed() >= GROUP_AGE)
        {
            self.commit()?;
        }
        Ok(())
    }
}

impl Drop for InfluxSink {
    fn drop(&mut self) {
        if let Err(e) = self.commit() {
            tracing::error!(output = %self.name, "cannot write {} batches to the spool at exit: {e}", self.pending.len());
        }
        if let Some(mut s) = self.sender.take() {
            s.stop(Duration::from_secs(2));
        }
    }
}

/// Cuts newline-terminated `lines` into pieces of at most `max_lines` lines and `max_bytes`
/// bytes (a single longer line is a piece of its own); yields each piece and its line count.
pub fn chunks(lines: &str, max_lines: usize, max_bytes: usize) -> Vec<(&str, u64)> {
    let mut out = Vec::new();
    let (mut start, mut n) = (0usize, 0usize);
    let mut pos = 0usize;
    for line in lines.split_inclusive('\n') {
        let end = pos + line.len();
        if n > 0 && (n + 1 > max_lines || end - start > max_bytes) {
            out.push((&lines[start..pos], n as u64));
            start = pos;
            n = 0;
        }
        n += 1;
        pos = end;
    }
    if n > 0 {
        out.push((&lines[start..pos], n as u64));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_both_limits_and_keep_every_byte() {
        let text = "a 1\nbb 2\nccc 3\nd 4\n";
        let c = chunks(text, 2, 1000);
        assert_eq!(c, vec![("a 1\nbb 2\n", 2), ("ccc 3\nd 4\n", 2)]);
        let c = chunks(text, 100, 10);
        assert_eq!(c, vec![("a 1\nbb 2\n", 2), ("ccc 3\nd 4\n", 2)]);
        let c = chunks(text, 100, 9);
        assert_eq!(c, vec![("a 1\nbb 2\n", 2), ("ccc 3\n", 1), ("d 4\n", 1)]);
        // A line longer than the byte limit stands alone.
        let c = chunks("x 1\nyyyyyyyyyy 2\nz 3\n", 100, 5);
        assert_eq!(c, vec![("x 1\n", 1), ("yyyyyyyyyy 2\n", 1), ("z 3\n", 1)]);
        let joined: String = chunks(text, 3, 7).iter().map(|(s, _)| *s).collect();
        assert_eq!(joined, text);
        assert!(chunks("", 10, 10).is_empty());
    }
}
