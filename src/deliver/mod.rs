//! Deliver: typed cycles ([`batch`]) go to the configured sinks, off the collection path.
//!
//! Every sink runs on its own thread behind a bounded queue ([`Hub`]). Collection hands a
//! [`Batch`] to the hub and never waits: when a sink's queue is full the batch is dropped *for
//! that sink*, counted and logged, and collection goes on. (The durable InfluxDB outputs keep
//! their own on-disk spool, so for them "accepted" means "on disk".)

pub mod batch;
pub mod file;
pub mod influxdb;
pub mod stdout;
pub mod text;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

pub use batch::Batch;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender, TrySendError};

/// What one [`Sink::write`] wrote, for the sink's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Lines (records, for a sink that stores values rather than text).
    pub lines: u64,
    /// Bytes of text (0 for a sink that stores values).
    pub bytes: u64,
}

/// A destination for batches. Runs on its own thread; may block.
pub trait Sink: Send {
    /// A short name for logs and self-telemetry (`stdout`, `file:/var/lib/vmtel/out.lp`).
    fn name(&self) -> String;
    /// Writes one batch.
    fn write(&mut self, batch: &Batch) -> std::io::Result<Written>;
    /// Makes everything written so far durable or visible.
    fn flush(&mut self) -> std::io::Result<()>;
    /// Backlog and delivery counters, for sinks that deliver from a spool (InfluxDB).
    fn delivery_stats(&self) -> Option<Arc<influxdb::DeliveryStats>> {
        None
    }
}

/// Counters of one sink, shared with self-telemetry.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Batches written.
    pub batches: AtomicU64,
    /// Lines written.
    pub lines: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
    /// Batches dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Write errors.
    pub errors: AtomicU64,
    /// Spool and delivery counters of an InfluxDB output (set once at start).
    pub delivery: OnceLock<Arc<influxdb::DeliveryStats>>,
}

struct Lane {
    name: String,
    tx: Mutex<Option<Sender<Arc<Batch>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<SinkStats>,
}

/// Fans batches out to every sink, each behind its own bounded queue and thread.
pub struct Hub {
    lanes: Vec<Lane>,
    /// Each sink thread sends its lane index here when it has flushed and exits.
    done: crossbeam_channel::Receiver<usize>,
}

/// Batches a sink may have queued before new ones are dropped for it.
pub const QUEUE_BATCHES: usize = 1024;

impl Hub {
    /// Starts one thread per sink.
    pub fn start(sinks: Vec<Box<dyn Sink>>) -> std::io::Result<Hub> {
        let mut lanes = Vec::with_capacity(sinks.len());
        let (done_tx, done) = crossbeam_channel::unbounded();
        for (index, mut sink) in sinks.into_iter().enumerate() {
            let done_tx = done_tx.clone();
            let name = sink.name();
            let (tx, rx) = bounded::<Arc<Batch>>(QUEUE_BATCHES);
            let stats = Arc::new(SinkStats::default());
            if let Some(d) = sink.delivery_stats() {
                let _ = stats.delivery.set(d);
            }
            let st = Arc::clone(&stats);
            let thread_name = format!("sink {name}");
            let log_name = name.clone();
            let thread = std::thread::Builder::new()
                .name(thread_name)
                .spawn(move || {
                    let mut failing = crate::logging::episode::Episode::default();
                    for batch in rx.iter() {
                        match sink.write(&batch).and_then(|w| {
                            if rx.is_empty() {
                                sink.flush()?;
                            }
                            Ok(w)
                        }) {
                            Ok(written) => {
                                if failing.end().is_some() {
                                    tracing::info!(sink = %log_name, "sink writes again");
                                }
                                st.batches.fetch_add(1, Ordering::Relaxed);
                                st.lines.fetch_add(written.lines, Ordering::Relaxed);
                                st.bytes.fetch_add(written.bytes, Ordering::Relaxed);
                            }
                            Err(e) => {
                                st.errors.fetch_add(1, Ordering::Relaxed);
                                let msg = e.to_string();
                                if failing.occur(&msg) {
                                    tracing::error!(sink = %log_name, "cannot write: {msg}");
                                }
                            }
                        }
                    }
                    if let Err(e) = sink.flush() {
                        tracing::error!(sink = %log_name, "cannot flush: {e}");
                    }
                    let _ = done_tx.send(index);
                })?;
            lanes.push(Lane {
                name,
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                stats,
            });
        }
        Ok(Hub { lanes, done })
    }

    /// Queues `batch` for every sink without waiting.
    pub fn send(&self, batch: Batch) {
        let batch = Arc::new(batch);
        for lane in &self.lanes {
            let Ok(guard) = lane.tx.lock() else { continue };
            let Some(tx) = guard.as_ref() else { continue };
            match tx.try_send(Arc::clone(&batch)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    let n = lane.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    if n.is_power_of_two() || n == 0 {
                        tracing::warn!(
                            sink = %lane.name,
                            dropped = n + 1,
                            "sink is too slow: its queue of {QUEUE_BATCHES} batches is full, batch dropped"
                        );
                    }
                }
                Err(TrySendError::Disconnected(_)) => {
                    lane.stats.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Each sink's name and counters.
    pub fn stats(&self) -> Vec<(String, Arc<SinkStats>)> {
        self.lanes
            .iter()
            .map(|l| (l.name.clone(), Arc::clone(&l.stats)))
            .collect()
    }

    /// Closes the queues and waits up to `timeout` for every sink to write what it has and
    /// flush. Returns the names of sinks that did not finish in time. Batches sent after this
    /// are dropped.
    pub fn shutdown(&self, timeout: Duration) -> Vec<String> {
        for lane in &self.lanes {
            if let Ok(mut tx) = lane.tx.lock() {
                *tx = None;
            }
        }
        let deadline = Instant::now() + timeout;
        let running = |l: &Lane| l.thread.lock().map(|t| t.is_some()).unwrap_or(false);
        let mut pending = self.lanes.iter().filter(|l| running(l)).count();
        while pending > 0 {
            let Ok(i) = self.done.recv_deadline(deadline) else {
                break;
            };
            let thread = self
                .lanes
                .get(i)
                .and_then(|l| l.thread.lock().ok().and_then(|mut t| t.take()));
            if let Some(t) = thread {
                let _ = t.join();
                pending -= 1;
            }
        }
        self.lanes
            .iter()
            .filter(|l| running(l))
            .map(|l| l.name.clone())
            .collect()
    }
}
