//! The store sink: line protocol in, rows out, one transaction per cycle.
//!
//! Every numeric field of every line becomes a point (measurement and tag set → `series`,
//! field name → `fields`). All lines of a batch carry the batch's grid timestamp, so points are
//! stamped with it (ms) whatever the configured line precision. A cycle arrives as several
//! batches with the same timestamp; each is written as it arrives, into a transaction that is
//! committed with the cycle's last batch (see [`TX_BYTES`]). 1-minute roll-ups are computed from
//! the raw points when their minute closes, in the transaction of the cycle that closed it (see
//! [`rollup`]).
//!
//! What the sink keeps in memory does not grow with the points or the cycle: a compact id per
//! live series ([`SeriesCache`]), the field names, the set of open minutes, and SQLite's bounded
//! page cache.
//!
//! [`rollup`]: super::rollup

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use influxdb_line_protocol::{parse_lines, FieldValue};
use rusqlite::{params, Connection};

use super::error::{Error, ErrorKind};
use super::rollup::{OpenMinutes, MINUTE_MS};
use super::schema::{self, is_corrupt, is_full};
use super::series::SeriesCache;
use super::{retention, StoreSettings};
use crate::deliver::{Batch, Sink, Written};

/// How long a store that failed to open waits before trying again.
const REOPEN_AFTER: Duration = Duration::from_secs(30);

/// Minutes between generations of the series cache: a series not seen for 10 to 20 minutes is
/// forgotten (and looked up again in the table if it comes back).
const SERIES_GENERATION_MINUTES: i64 = 10;

struct Db {
    conn: Connection,
    series: SeriesCache,
    fields: HashMap<String, i64>,
    open: OpenMinutes,
    swept_minute: i64,
    generation_minute: i64,
    /// The transaction the current cycle's batches go into.
    tx: Option<OpenTx>,
    /// Series of the batch being written (reused).
    touched: Vec<i64>,
}

/// The embedded history as a sink (see the module docs).
pub struct StoreSink {
    settings: StoreSettings,
    db: Option<Db>,
    retry_at: Option<Instant>,
}

/// A value as SQLite stores it: integers stay exact.
enum Value {
    Int(i64),
    Real(f64),
}

fn value(v: &FieldValue) -> Option<Value> {
    match v {
        FieldValue::I64(i) => Some(Value::Int(*i)),
        FieldValue::U64(u) => Some(match i64::try_from(*u) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Real(*u as f64),
        }),
        FieldValue::F64(f) if f.is_finite() => Some(Value::Real(*f)),
        FieldValue::Boolean(b) => Some(Value::Int(i64::from(*b))),
        _ => None,
    }
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
                Ok((conn, warning)) => {
                    if let Some(w) = warning {
                        tracing::error!("{w}");
                    }
                    self.retry_at = None;
                    let mut open = OpenMinutes::default();
                    // The newest minute may have been left open by a stop without a clean
                    // shutdown: close it again with the next minute (it is recomputed, so a
                    // roll-up written at shutdown is not counted twice).
                    if let Ok(Some(last)) = newest_ts(&conn) {
                        open.touch(last.div_euclid(MINUTE_MS));
                    }
                    self.db = Some(Db {
                        conn,
                        series: SeriesCache::default(),
                        fields: HashMap::new(),
                        open,
                        swept_minute: 0,
                        generation_minute: 0,
                        tx: None,
                        touched: Vec::new(),
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
        // Interim, until the typed store: the batch as line protocol.
        let mut text = String::new();
        crate::encode::Encoder::default().encode_batch(batch, &mut text);
        let db = self.db()?;
        let result = db.write(batch, &text);
        result.map_err(|e| self.failed(e))
    }

    /// Commits the open transaction, if any, then runs retention.
    fn commit(&mut self) -> Result<(), Error> {
        let Some(db) = self.db.as_mut() else {
            return Ok(());
        };
        let Some(tx) = db.tx.take() else {
            return Ok(());
        };
        let settings = self.settings.clone();
        let result = db.commit(&tx, &settings);
        match result {
            Ok(()) => {
                let st = &settings.status;
                st.batches.fetch_add(1, Ordering::Relaxed);
                st.points.fetch_add(tx.points, Ordering::Relaxed);
                let size = db.maintain(tx.ts(), &settings);
                match size {
                    Ok(()) => st.ok(),
                    Err(e) => st.fail(format!(
                        "history store {}: retention failed: {e}; collection goes on",
                        settings.path.display()
                    )),
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
                "history store {path} is full ({e}; [store] max_size = {}): the points of this cycle written so far were not kept and the oldest data is being removed; raise max_size or free disk space. Collection goes on",
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
            // The transaction is gone (rolled back here, or by SQLite itself on errors such as
            // a full file), and with it the rows of series and fields first seen in it, whose
            // ids SQLite hands out again: forget every cached id (they are looked up again), or
            // two series would share one.
            db.series = SeriesCache::default();
            db.fields.clear();
            if is_full(&e) {
                // Make room for the next cycles.
                let _ = retention::bound_size(&db.conn, settings);
            }
        }
        if is_corrupt(&e) {
            self.db = None;
        }
        settings.status.fail(msg.clone());
        Error::new(kind, msg)
    }

    /// Writes the roll-ups of minutes still open (at shutdown).
    fn close_minutes(&mut self) {
        let Some(db) = self.db.as_mut() else { return };
        if db.open.is_empty() {
            return;
        }
        let r = db.conn.transaction().and_then(|tx| {
            let closed = db.open.close_before(&tx, None)?;
            tx.commit()?;
            Ok(closed)
        });
        match r {
            Ok(closed) => db.open.closed(&closed),
            Err(e) => tracing::warn!("history store: cannot write the last minute's roll-ups: {e}"),
        }
    }
}

/// The newest time any series was seen, ms.
fn newest_ts(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT MAX(last_ts) FROM series", [], |r| r.get(0))
}

fn field_id(
    tx: &Connection,
    cache: &mut HashMap<String, i64>,
    name: &str,
) -> rusqlite::Result<i64> {
    if let Some(id) = cache.get(name) {
        return Ok(*id);
    }
    tx.execute("INSERT OR IGNORE INTO fields (name) VALUES (?1)", [name])?;
    let id: i64 = tx.query_row("SELECT id FROM fields WHERE name = ?1", [name], |r| {
        r.get(0)
    })?;
    cache.insert(name.to_owned(), id);
    Ok(id)
}

/// The transaction a cycle's batches are written into (see [`TX_BYTES`]).
struct OpenTx {
    /// The batches' grid timestamp, ns (all batches of a transaction share it).
    timestamp_ns: i64,
    /// Minutes rolled up in this transaction (closed once it commits).
    closed: Vec<i64>,
    /// Points written.
    points: u64,
    /// Text written, bytes.
    bytes: usize,
}

impl OpenTx {
    /// The batches' timestamp, ms (what points are stamped with).
    fn ts(&self) -> i64 {
        self.timestamp_ns.div_euclid(1_000_000)
    }
}

/// A cycle reaches the store as many small batches; they are written into one transaction,
/// committed with the cycle's last batch (or once this much text went in, or a twentieth of
/// `max_size`), since a transaction
/// per batch costs far more than its rows. The batches are written as they arrive: nothing of
/// the cycle is held in memory but SQLite's (bounded) page cache.
const TX_BYTES: usize = 4 * 1024 * 1024;

impl Db {
    /// Writes one batch into the open transaction, beginning one (and rolling up the minutes
    /// before the batch's) if none is open.
    fn write(&mut self, batch: &Batch, text: &str) -> rusqlite::Result<()> {
        let ts = batch.timestamp_ns.div_euclid(1_000_000);
        if self.tx.is_none() {
            self.conn.execute_batch("BEGIN")?;
            self.tx = Some(OpenTx {
                timestamp_ns: batch.timestamp_ns,
                closed: Vec::new(),
                points: 0,
                bytes: 0,
            });
            // Minutes before this batch's close first (their points are all in).
            let closed = self
                .open
                .close_before(&self.conn, Some(ts.div_euclid(MINUTE_MS)))?;
            if let Some(tx) = self.tx.as_mut() {
                tx.closed = closed;
            }
        }
        let points = self.insert(text, ts)?;
        if let Some(tx) = self.tx.as_mut() {
            tx.points += points;
            tx.bytes += text.len();
        }
        Ok(())
    }

    /// Inserts the points of one batch (in the open transaction); returns how many.
    fn insert(&mut self, text: &str, ts: i64) -> rusqlite::Result<u64> {
        let conn = &self.conn;
        let mut points = 0u64;
        self.touched.clear();
        {
            let mut insert = conn.prepare_cached(
                "INSERT OR REPLACE INTO points (series_id, ts, field_id, value) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for line in parse_lines(text) {
                let Ok(line) = line else {
                    // vmtel's own encoder wrote it; a line it cannot parse back is skipped.
                    continue;
                };
                let sid = self.series.id(conn, &line.series, ts)?;
                self.touched.push(sid);
                for (k, v) in &line.field_set {
                    let Some(v) = value(v) else { continue };
                    let fid = field_id(conn, &mut self.fields, k)?;
                    match v {
                        Value::Int(i) => insert.execute(params![sid, ts, fid, i])?,
                        Value::Real(f) => insert.execute(params![sid, ts, fid, f])?,
                    };
                    points += 1;
                }
            }
        }
        self.touched.sort_unstable();
        self.touched.dedup();
        let mut seen =
            conn.prepare_cached("UPDATE series SET last_ts = ?2 WHERE id = ?1 AND last_ts < ?2")?;
        for sid in &self.touched {
            seen.execute(params![sid, ts])?;
        }
        Ok(points)
    }

    /// Writes the device identities that changed and commits `tx` (already taken out of
    /// `self.tx`).
    fn commit(&mut self, tx: &OpenTx, settings: &StoreSettings) -> rusqlite::Result<()> {
        for ((host, uuid), devs) in settings.identity.take_changed() {
            for d in devs {
                self.conn.prepare_cached(
                    "INSERT OR REPLACE INTO devices (host, uuid, devtype, device, mac, path, last_ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![host, uuid, d.devtype, d.device, d.mac, d.path, tx.ts()])?;
            }
        }
        self.conn.execute_batch("COMMIT")?;
        self.open.closed(&tx.closed);
        if tx.points > 0 {
            self.open.touch(tx.ts().div_euclid(MINUTE_MS));
        }
        Ok(())
    }

    /// After a commit: series cache generations, retention once a minute, the size bound.
    fn maintain(&mut self, ts: i64, settings: &StoreSettings) -> rusqlite::Result<()> {
        let minute = ts.div_euclid(MINUTE_MS);
        if minute - self.generation_minute >= SERIES_GENERATION_MINUTES
            || minute < self.generation_minute
        {
            self.generation_minute = minute;
            self.series.rotate();
        }
        if minute != self.swept_minute {
            self.swept_minute = minute;
            retention::expire(&self.conn, ts, settings)?;
        }
        retention::bound_size(&self.conn, settings)?;
        // Between cycles the page cache holds nothing worth its memory: the next cycle touches
        // the newest page of every series, far more than the cache holds, and reads the few
        // upper pages of the trees again from the OS's cache. The freed pages go back to the
        // system now (the worker's own release ran when its cycle ended, before this commit).
        // Releasing is an optimisation: SQLite reports no failure worth stopping for.
        let _ = self.conn.release_memory();
        crate::collect::ffi::release_free_memory();
        Ok(())
    }
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
        if let Err(e) = self.commit() {
            tracing::warn!("history store: cannot write the last batches: {e}");
        }
        self.close_minutes();
    }
}
