//! The store sink: typed batches in, head rows out, one transaction per cycle; compaction into
//! compressed chunks and roll-ups as the head fills, merging of small chunks every hour and at a
//! clean stop, retention after commits.
//!
//! A batch becomes one head row ([`super::head`]): one record per series (a VM, each of its
//! NICs and disks, a source or sink of `vmtel_internal`), stamped with the batch's grid time
//! (ms). The batches of a cycle go into one transaction, committed with the cycle's last batch;
//! a `kill -9` loses at most that cycle.
//!
//! The head is compacted ([`super::compact`]) once it spans [`HEAD_SPAN_MS`] or holds
//! [`HEAD_CYCLES`] cycles, keeping the last full minute (the fleet page reads its latest two
//! cycles there), and entirely at a clean stop (`SIGTERM`: the sink is dropped). With each
//! compaction the chunks of 2-hour periods that have passed are merged and compressed (and
//! rolled up), and the roll-ups of days that have passed; at a clean stop, all of them.
//!
//! Memory does not grow with history: the series registry (48 bytes per live series), one
//! reused row and head buffer, and SQLite's bounded page cache.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};

use super::compact::{self, MINUTE_MS};
use super::error::{Error, ErrorKind};
use super::head;
use super::layout::{Kind, RowFiller};
use super::schema::{self, is_corrupt, is_full};
use super::series::{Extra, Registry, SeriesKey};
use super::{retention, StoreSettings};
use crate::deliver::batch::{Internal, Payload, Subject};
use crate::deliver::{Batch, Sink, Written};
use crate::schema::{
    internal_delivery, internal_sink, internal_source, vm_devices_disk, vm_devices_nic, vm_host,
    vm_metrics, vm_totals, Field, Measurement, Value,
};

/// How long a store that failed to open waits before trying again.
const REOPEN_AFTER: Duration = Duration::from_secs(30);
/// The head is compacted once its oldest row is this old (10 minutes).
pub const HEAD_SPAN_MS: i64 = 600_000;
/// ... or once it holds this many cycles.
pub const HEAD_CYCLES: usize = 120;

struct Db {
    conn: Connection,
    registry: Registry,
    /// The transaction the current cycle's batches go into.
    tx: Option<OpenTx>,
    /// The oldest head row's time and the number of distinct cycle times in the head.
    head_first: Option<i64>,
    head_cycles: usize,
    head_last: Option<i64>,
    swept_minute: i64,
    /// Reused buffers: one head row, one series row.
    buf: Vec<u8>,
    row: Vec<Option<i64>>,
}

/// The transaction a cycle's batches are written into.
struct OpenTx {
    /// The batches' grid timestamp, ns.
    timestamp_ns: i64,
    /// Values written.
    points: u64,
    /// Head bytes written.
    bytes: usize,
}

/// A transaction is committed once this many head bytes went in (or a twentieth of
/// `max_size`), even before its cycle's last batch, so a huge cycle never needs more room than
/// retention keeps free.
const TX_BYTES: usize = 4 * 1024 * 1024;

/// The embedded history as a sink (see the module docs).
pub struct StoreSink {
    settings: StoreSettings,
    db: Option<Db>,
    retry_at: Option<Instant>,
}

impl StoreSink {
    /// A sink writing to `settings.path`. The file is opened on the first batch; if that fails
    /// the error is reported and opening is retried every 30 s.
    pub fn new(settings: StoreSettings) -> StoreSink {
        if let Ok(mut p) = settings.status.path.lock() {
            *p = Some(settings.path.clone());
        }
        StoreSink {
            settings,
            db: None,
            retry_at: None,
        }
    }

    /// Opens the file now (so that start-up reports a problem at once); errors are also kept in
    /// the status.
    pub fn open_now(&mut self) {
        let _ = self.db();
    }

    fn db(&mut self) -> Result<&mut Db, Error> {
        if self.db.is_none() {
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    self.settings
                        .status
                        .last_error()
                        .unwrap_or_else(|| "history store unavailable".into()),
                ));
            }
            match schema::open_rw(&self.settings.path, self.settings.max_size) {
                Ok((conn, notice)) => {
                    match notice {
                        Some(n @ schema::OpenError::OldFormat { .. }) => tracing::warn!("{n}"),
                        Some(n) => tracing::error!("{n}"),
                        None => {}
                    }
                    self.retry_at = None;
                    let (first, last, cycles) = head_extent(&conn).unwrap_or((None, None, 0));
                    self.db = Some(Db {
                        conn,
                        registry: Registry::default(),
                        tx: None,
                        head_first: first,
                        head_last: last,
                        head_cycles: cycles,
                        swept_minute: 0,
                        buf: Vec::new(),
                        row: Vec::new(),
                    });
                    tracing::info!(path = %self.settings.path.display(), "history store open");
                }
                Err(e) => {
                    self.retry_at = Some(Instant::now() + REOPEN_AFTER);
                    let msg = format!("{e} (collection goes on; retrying in 30s)");
                    self.settings.status.fail(msg.clone());
                    return Err(Error::new(ErrorKind::Unavailable, msg));
                }
            }
        }
        self.db
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Unavailable, "history store unavailable"))
    }

    /// Writes `batch` into the open transaction (beginning one if none is open).
    fn write_batch(&mut self, batch: &Batch) -> Result<(), Error> {
        let db = self.db()?;
        let result = db.write(batch);
        result.map_err(|e| self.failed(e))
    }

    /// Commits the open transaction, if any, then compacts, merges and runs retention as due.
    fn commit(&mut self) -> Result<(), Error> {
        let Some(db) = self.db.as_mut() else {
            return Ok(());
        };
        let Some(tx) = db.tx.take() else {
            return Ok(());
        };
        let settings = self.settings.clone();
        match db.conn.execute_batch("COMMIT") {
            Ok(()) => {
                let st = &settings.status;
                st.batches.fetch_add(1, Ordering::Relaxed);
                st.points.fetch_add(tx.points, Ordering::Relaxed);
                let ts = tx.timestamp_ns.div_euclid(1_000_000);
                db.committed(ts);
                match db.maintain(ts, &settings) {
                    Ok(()) => st.ok(),
                    Err(e) => {
                        if !db.conn.is_autocommit() {
                            let _ = db.conn.execute_batch("ROLLBACK");
                        }
                        db.registry.clear();
                        st.fail(format!(
                            "history store {}: compaction or retention failed: {e}; collection goes on",
                            settings.path.display()
                        ));
                        if is_full(&e) {
                            let _ = retention::bound_size(&db.conn, &settings);
                        }
                    }
                }
                Ok(())
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Rolls back what the open transaction holds and reports `e` (with a fix).
    fn failed(&mut self, e: rusqlite::Error) -> Error {
        let settings = &self.settings;
        let path = settings.path.display();
        let (kind, msg) = if is_full(&e) {
            (ErrorKind::Full, format!(
                "history store {path} is full ({e}; [store] max_size = {}): the values of this cycle were not kept and the oldest data is being removed; raise max_size or free disk space. Collection goes on",
                bytesize::ByteSize::b(settings.max_size)
            ))
        } else if is_corrupt(&e) {
            (ErrorKind::Damaged, format!("history store {path} is damaged ({e}): it will be moved aside and a new one started. Collection goes on"))
        } else {
            (
                ErrorKind::Write,
                format!("history store {path}: cannot write ({e}); collection goes on"),
            )
        };
        if let Some(db) = self.db.as_mut() {
            db.tx = None;
            if !db.conn.is_autocommit() {
                let _ = db.conn.execute_batch("ROLLBACK");
            }
            // The transaction is gone, and with it the rows of series first seen in it, whose
            // ids SQLite hands out again: forget every cached id (they are looked up again), or
            // two series would share one.
            db.registry.clear();
            if is_full(&e) {
                let _ = retention::bound_size(&db.conn, settings);
            }
        }
        if is_corrupt(&e) {
            self.db = None;
        }
        settings.status.fail(msg.clone());
        Error::new(kind, msg)
    }

    /// At a clean stop: compacts the whole head and merges small chunks.
    fn close(&mut self) {
        if let Err(e) = self.commit() {
            tracing::warn!("history store: cannot write the last batches: {e}");
        }
        let Some(db) = self.db.as_mut() else { return };
        let now = db.head_last.unwrap_or(0);
        let r = db.in_tx(|conn, registry| {
            compact::compact(conn, registry, i64::MAX)?;
            compact::merge_raw(conn, registry, i64::MAX)?;
            compact::merge_rollups(conn, i64::MAX)?;
            registry.flush(conn, now)
        });
        match r {
            Ok(()) => {
                db.head_first = None;
                db.head_last = None;
                db.head_cycles = 0;
                let _ = schema::vacuum(&db.conn);
            }
            Err(e) => tracing::warn!(
                "history store: cannot compact the head at stop ({e}); it stays as it is and is compacted later"
            ),
        }
    }
}

/// The head's oldest and newest time and its number of cycles.
fn head_extent(conn: &Connection) -> rusqlite::Result<(Option<i64>, Option<i64>, usize)> {
    conn.query_row(
        "SELECT MIN(ts), MAX(ts), COUNT(DISTINCT ts) FROM head",
        [],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                usize::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
            ))
        },
    )
}

impl Db {
    /// Writes one batch into the open transaction, beginning one if none is open.
    fn write(&mut self, batch: &Batch) -> rusqlite::Result<()> {
        let ts = batch.timestamp_ns.div_euclid(1_000_000);
        if self.tx.is_none() {
            self.conn.execute_batch("BEGIN")?;
            self.tx = Some(OpenTx {
                timestamp_ns: batch.timestamp_ns,
                points: 0,
                bytes: 0,
            });
        }
        self.buf.clear();
        let mut points = 0u64;
        match &batch.payload {
            Payload::Vms(chunk) => {
                let host = chunk.sample.host.as_str();
                for dom in &chunk.sample.domains {
                    let key = if dom.uuid.is_empty() {
                        dom.name.as_str()
                    } else {
                        dom.uuid.as_str()
                    };
                    let series = |kind, device| SeriesKey {
                        kind,
                        host,
                        key,
                        device,
                    };
                    let name = Extra {
                        name: Some(dom.name.as_str()),
                        ..Extra::default()
                    };
                    let id = self
                        .registry
                        .id(&self.conn, series(Kind::Vm, ""), name, ts)?;
                    start_row(&mut self.row, Kind::Vm);
                    self.row[0] = dom.id.map(i64::from);
                    fill(&mut self.row, &vm_metrics::MEASUREMENT, |f| {
                        vm_metrics::for_each(dom, f)
                    });
                    fill(&mut self.row, &vm_totals::MEASUREMENT, |f| {
                        vm_totals::for_each(dom, f)
                    });
                    points += put(&mut self.buf, id, &self.row);
                    for nic in &dom.nics {
                        let extra = Extra {
                            mac: nic.mac.as_deref(),
                            ..Extra::default()
                        };
                        let id = self.registry.id(
                            &self.conn,
                            series(Kind::Nic, &nic.name),
                            extra,
                            ts,
                        )?;
                        start_row(&mut self.row, Kind::Nic);
                        fill(&mut self.row, &vm_devices_nic::MEASUREMENT, |f| {
                            vm_devices_nic::for_each(nic, f)
                        });
                        points += put(&mut self.buf, id, &self.row);
                    }
                    for disk in &dom.disks {
                        let extra = Extra {
                            path: disk.path.as_deref(),
                            ..Extra::default()
                        };
                        let id = self.registry.id(
                            &self.conn,
                            series(Kind::Disk, &disk.name),
                            extra,
                            ts,
                        )?;
                        start_row(&mut self.row, Kind::Disk);
                        fill(&mut self.row, &vm_devices_disk::MEASUREMENT, |f| {
                            vm_devices_disk::for_each(disk, f)
                        });
                        points += put(&mut self.buf, id, &self.row);
                    }
                }
            }
            Payload::Node(node) => {
                let key = SeriesKey {
                    kind: Kind::Host,
                    host: &node.host,
                    key: "",
                    device: "",
                };
                let id = self.registry.id(&self.conn, key, Extra::default(), ts)?;
                start_row(&mut self.row, Kind::Host);
                fill(&mut self.row, &vm_host::MEASUREMENT, |f| {
                    vm_host::for_each(&node.stats, f)
                });
                points += put(&mut self.buf, id, &self.row);
            }
            Payload::Internal(records) => {
                for r in records {
                    points += self.internal(r, ts)?;
                }
            }
        }
        if !self.buf.is_empty() {
            self.conn
                .prepare_cached("INSERT INTO head (ts, data) VALUES (?1, ?2)")?
                .execute(params![ts, self.buf])?;
        }
        if let Some(tx) = self.tx.as_mut() {
            tx.points += points;
            tx.bytes += self.buf.len();
        }
        Ok(())
    }

    fn internal(&mut self, r: &Internal, ts: i64) -> rusqlite::Result<u64> {
        let (tag, value) = r.subject.tag();
        let kind = if tag == "source" {
            Kind::Source
        } else {
            Kind::Sink
        };
        let key = SeriesKey {
            kind,
            host: &r.host,
            key: value,
            device: "",
        };
        let id = self.registry.id(&self.conn, key, Extra::default(), ts)?;
        start_row(&mut self.row, kind);
        match &r.subject {
            Subject::Source { counters, .. } => {
                fill(&mut self.row, &internal_source::MEASUREMENT, |f| {
                    internal_source::for_each(counters, f)
                });
            }
            Subject::Sink {
                counters, delivery, ..
            } => {
                fill(&mut self.row, &internal_sink::MEASUREMENT, |f| {
                    internal_sink::for_each(counters, f)
                });
                if let Some(d) = delivery {
                    fill(&mut self.row, &internal_delivery::MEASUREMENT, |f| {
                        internal_delivery::for_each(d, f)
                    });
                }
            }
        }
        Ok(put(&mut self.buf, id, &self.row))
    }

    /// Notes a committed cycle at `ts` in the head's extent.
    fn committed(&mut self, ts: i64) {
        if self.head_last != Some(ts) {
            self.head_cycles += 1;
        }
        self.head_first = Some(self.head_first.map_or(ts, |f| f.min(ts)));
        self.head_last = Some(self.head_last.map_or(ts, |l| l.max(ts)));
    }

    /// Runs `f` in a transaction of its own.
    fn in_tx(
        &mut self,
        f: impl FnOnce(&Connection, &mut Registry) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match f(&self.conn, &mut self.registry) {
            Ok(()) => self.conn.execute_batch("COMMIT"),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.registry.clear();
                Err(e)
            }
        }
    }

    /// After a commit at `ts`: compaction when the head is due, merging when the hour turned,
    /// retention once a minute, the size bound.
    fn maintain(&mut self, ts: i64, settings: &StoreSettings) -> rusqlite::Result<()> {
        let mut churned = false;
        let due = self
            .head_first
            .is_some_and(|f| ts - f >= HEAD_SPAN_MS || self.head_cycles >= HEAD_CYCLES);
        if due {
            // Keep the last full minute and the current one in the head.
            let cut = ts.div_euclid(MINUTE_MS) * MINUTE_MS - MINUTE_MS;
            if self.head_first.is_some_and(|f| f < cut) {
                self.in_tx(|conn, registry| {
                    compact::compact(conn, registry, cut)?;
                    // Periods (2 hours, days) that have passed: merged and compressed.
                    compact::merge_raw(conn, registry, cut)?;
                    compact::merge_rollups(conn, cut)?;
                    registry.flush(conn, ts)
                })?;
                let (first, last, cycles) = head_extent(&self.conn)?;
                self.head_first = first;
                self.head_last = last;
                self.head_cycles = cycles;
                churned = true;
            }
        }
        let minute = ts.div_euclid(MINUTE_MS);
        if minute != self.swept_minute {
            self.swept_minute = minute;
            retention::expire(&self.conn, ts, settings)?;
            // The file is bounded by SQLite (max_page_count) at max_size; this keeps a tenth
            // of it free, checked once a minute and whenever a write finds the file full.
            retention::bound_size(&self.conn, settings)?;
        }
        // After a compaction (many chunks decoded and encoded, many pages touched) the page
        // cache and the freed heap go back to the system. Between other cycles SQLite keeps
        // its few pages (at most 256 KiB): the next cycle writes the same ones.
        if churned {
            let _ = self.conn.release_memory();
            crate::collect::ffi::release_free_memory();
        }
        Ok(())
    }
}

/// Clears `row` to the width of `kind`.
fn start_row(row: &mut Vec<Option<i64>>, kind: Kind) {
    row.clear();
    row.resize(kind.columns().len(), None);
}

/// Puts the typed values `for_each` yields for measurement `m` into `row`.
fn fill(
    row: &mut [Option<i64>],
    m: &'static Measurement,
    for_each: impl FnOnce(&mut dyn FnMut(&'static Field, Value)),
) {
    let mut filler = RowFiller::new(m);
    for_each(&mut |f, v| filler.put(row, f, v));
}

/// Appends `row` as a record of series `id`; returns the number of values.
fn put(buf: &mut Vec<u8>, id: i64, row: &[Option<i64>]) -> u64 {
    head::put(buf, id, row);
    row.iter().filter(|v| v.is_some()).count() as u64
}

impl Sink for StoreSink {
    fn name(&self) -> String {
        "store".into()
    }

    fn write(&mut self, batch: &Batch) -> std::io::Result<Written> {
        let mut result = Ok(());
        let open = self.db.as_ref().and_then(|db| db.tx.as_ref());
        // A transaction must also fit in the room retention keeps free (a tenth of max_size).
        let limit = TX_BYTES.min(usize::try_from(self.settings.max_size / 20).unwrap_or(TX_BYTES));
        if open.is_some_and(|tx| tx.timestamp_ns != batch.timestamp_ns || tx.bytes >= limit) {
            result = self.commit();
        }
        result = result.and(self.write_batch(batch));
        if batch.end_of_cycle {
            result = result.and(self.commit());
        }
        result.map_err(std::io::Error::other).map(|()| Written {
            lines: batch.records() as u64,
            bytes: 0,
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // A cycle's transaction is committed with its last batch, not when the queue is empty.
        Ok(())
    }
}

impl Drop for StoreSink {
    fn drop(&mut self) {
        self.close();
    }
}
