//! One blocking worker thread per source: collect → derive → hand the typed cycle to the sinks
//! (which encode or store it).
//!
//! A worker owns its libvirt connection, so a slow or dead hypervisor only ever delays its own
//! thread. After a failure it backs off exponentially (1 s doubling to 60 s, with jitter:
//! [`crate::backoff`]); while it waits, or
//! while a cycle is still running when the next tick comes, ticks for this source are skipped
//! and counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::internal::SourceStats;
use super::schedule::tick_at_or_before;
use crate::backoff::Backoff;
use crate::collect::{Collector, SourceSpec};
use crate::deliver::batch::{NodeRecord, Payload, SamplePool, VmChunk};
use crate::deliver::{Batch, Hub};
use crate::derive::Deriver;
use crate::logging::episode::Episode;
use crate::model::HostSample;

/// Longest wait between reconnect attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// A request to run one cycle.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    /// The grid point: every line of this cycle carries it as its timestamp.
    pub grid_ns: i64,
}

/// Settings a worker needs besides its source.
#[derive(Clone)]
pub struct WorkerSettings {
    /// Device-list cache TTL of the per-domain fallback.
    pub device_cache_ttl: Duration,
    /// Guest balloon statistics period to enable, if any.
    pub balloon_period: Option<u32>,
    /// The host tag of vmtel's own measurement.
    pub agent_host: String,
    /// The collection interval (the grid step).
    pub interval: Duration,
}

/// The scheduler's handle on a worker.
pub struct Worker {
    /// The source URI.
    pub uri: String,
    tx: Option<Sender<Tick>>,
    busy: Arc<AtomicBool>,
    /// Counters for self-telemetry.
    pub stats: Arc<SourceStats>,
    thread: Option<JoinHandle<()>>,
    /// Ticks skipped because the previous cycle still ran.
    overrun: Episode,
}

impl Worker {
    /// Starts the worker thread for `spec`.
    pub fn start(
        spec: SourceSpec,
        settings: WorkerSettings,
        hub: Arc<Hub>,
    ) -> std::io::Result<Worker> {
        let (tx, rx) = crossbeam_channel::bounded::<Tick>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(SourceStats::default());
        let uri = spec.uri.clone();
        let thread = {
            let busy = Arc::clone(&busy);
            let stats = Arc::clone(&stats);
            std::thread::Builder::new()
                .name(format!("source {uri}"))
                .spawn(move || run(spec, settings, hub, rx, busy, stats))?
        };
        Ok(Worker {
            uri,
            tx: Some(tx),
            busy,
            stats,
            thread: Some(thread),
            overrun: Episode::default(),
        })
    }

    /// Asks for a cycle at `tick`. If the previous cycle is still running the tick is skipped,
    /// counted and logged once per overrun streak; returns false then.
    pub fn tick(&mut self, tick: Tick) -> bool {
        let Some(tx) = &self.tx else { return false };
        if self.busy.swap(true, Ordering::AcqRel) {
            self.stats.skipped_ticks.fetch_add(1, Ordering::Relaxed);
            if self.overrun.occur("overrun") {
                tracing::warn!(
                    source = %self.uri,
                    "previous cycle still running at the next tick: tick skipped (logged once per overrun streak)"
                );
            }
            return false;
        }
        self.overrun.end();
        if tx.try_send(tick).is_err() {
            self.busy.store(false, Ordering::Release);
            return false;
        }
        true
    }

    /// True while a cycle is running.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Stops sending ticks; the thread exits after its current cycle. Returns the thread if it
    /// is still running, so the caller can wait for it with a deadline.
    pub fn stop(&mut self) -> Option<JoinHandle<()>> {
        self.tx = None;
        self.thread.take()
    }
}

fn run(
    spec: SourceSpec,
    settings: WorkerSettings,
    hub: Arc<Hub>,
    rx: Receiver<Tick>,
    busy: Arc<AtomicBool>,
    stats: Arc<SourceStats>,
) {
    let uri = spec.uri.clone();
    let mut collector = Collector::new(spec, settings.device_cache_ttl);
    collector.set_balloon_period(settings.balloon_period);
    let mut deriver = Deriver::new();
    let mut connects = 0;
    // Failures of this source: reported when they begin and change, and at recovery.
    let mut failing = Episode::default();
    let mut backoff = Backoff::new(Duration::from_secs(1), BACKOFF_CAP);
    let mut retry_at: Option<Instant> = None;
    let mut late = Episode::default();
    let pool = Arc::new(SamplePool::default());
    {
        let pool = Arc::clone(&pool);
        collector.set_returns(move || pool.take_all());
    }
    for tick in rx.iter() {
        let started = Instant::now();
        if retry_at.is_some_and(|t| started < t) {
            stats.skipped_ticks.fetch_add(1, Ordering::Relaxed);
            stats.backoff_skips.fetch_add(1, Ordering::Relaxed);
            busy.store(false, Ordering::Release);
            continue;
        }
        let mut stamp: Option<i64> = None;
        // Normally the tick's grid point. A cycle that overran past the next grid point is
        // stamped with the last grid point before its read (a tick that was skipped for this
        // source), so its counters are never dated more than one interval early.
        let mut stamp_for = |read_ns: i64| -> i64 {
            let read_at = tick_at_or_before(read_ns, settings.interval);
            if read_at > tick.grid_ns {
                stats.late_cycles.fetch_add(1, Ordering::Relaxed);
                if late.occur("late") {
                    tracing::warn!(source = %uri, "cycle finished after its deadline (the next tick); stamped with the grid point of its read (logged once per streak)");
                }
            } else {
                late.end();
            }
            read_at.max(tick.grid_ns)
        };
        let result = collector.connect().and_then(|()| {
            if collector.connects() != connects {
                // New connection: counters may have restarted; no rates against old ones.
                deriver.reset();
                connects = collector.connects();
            }
            deriver.begin_cycle();
            let summary = collector.collect_chunks(|chunk| {
                let ts = *stamp.get_or_insert_with(|| stamp_for(chunk.timestamp_ns));
                chunk.timestamp_ns = ts;
                let mut features = pool.features();
                deriver.update_chunk(&chunk.domains, &mut features);
                // The chunk's samples go to the sinks; they come back through the pool.
                let sample = HostSample {
                    host: chunk.host.clone(),
                    timestamp_ns: ts,
                    domains: std::mem::take(&mut chunk.domains),
                };
                let batch = Batch {
                    source: uri.clone(),
                    timestamp_ns: ts,
                    payload: Payload::Vms(VmChunk::new(sample, features, Some(Arc::clone(&pool)))),
                    end_of_cycle: false,
                };
                stats
                    .records
                    .fetch_add(batch.records() as u64, Ordering::Relaxed);
                hub.send(batch);
            })?;
            deriver.end_cycle();
            if stamp.is_none() {
                stamp = Some(stamp_for(summary.timestamp_ns));
            }
            if let (Some(node), Some(ts)) = (collector.node_stats(), stamp) {
                let batch = Batch {
                    source: uri.clone(),
                    timestamp_ns: ts,
                    payload: Payload::Node(NodeRecord {
                        host: collector.host().to_owned(),
                        stats: node,
                    }),
                    end_of_cycle: false,
                };
                stats
                    .records
                    .fetch_add(batch.records() as u64, Ordering::Relaxed);
                hub.send(batch);
            }
            Ok(summary)
        });
        match result {
            Ok(summary) => {
                stats
                    .domains
                    .store(summary.domains as u64, Ordering::Relaxed);
                stats.connected.store(true, Ordering::Relaxed);
                if let Some(n) = failing.end() {
                    tracing::info!(source = %uri, "source is back after {n} failed attempts");
                }
                backoff.reset();
                retry_at = None;
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                stats
                    .connected
                    .store(collector.is_connected(), Ordering::Relaxed);
                let wait = backoff.next_delay(None);
                retry_at = Some(Instant::now() + wait);
                let msg = e.to_string();
                if failing.occur(&msg) {
                    tracing::error!(source = %uri, "{msg}; retrying in {:.1}s (backoff doubles up to {}s)", wait.as_secs_f64(), BACKOFF_CAP.as_secs());
                }
                set_last_error(&stats.last_error, msg);
            }
        }
        let stamp = stamp.unwrap_or(tick.grid_ns);
        let elapsed = started.elapsed();
        stats.cycles.fetch_add(1, Ordering::Relaxed);
        stats.last_cycle_ns.store(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let record = super::internal::source_record(&settings.agent_host, &uri, &stats);
        hub.send(Batch {
            source: uri.clone(),
            timestamp_ns: stamp,
            payload: Payload::Internal(vec![record]),
            end_of_cycle: true,
        });
        crate::collect::ffi::release_free_memory();
        busy.store(false, Ordering::Release);
    }
}

fn set_last_error(slot: &Mutex<Option<String>>, msg: String) {
    if let Ok(mut g) = slot.lock() {
        *g = Some(msg);
    }
}
