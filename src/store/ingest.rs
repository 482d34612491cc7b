//! The store sink: line protocol in, rows out, one transaction per batch.
//!
//! Every numeric field of every line becomes a point (measurement and tag set → `series`,
//! field name → `fields`). All lines of a batch carry the batch's grid timestamp, so points are
//! stamped with it (ms) whatever the configured line precision. A cycle may arrive as several
//! batches with the same timestamp. 1-minute roll-ups are computed from the raw points when
//! their minute closes, in the same transaction as the batch that closed it (see [`rollup`]).
//!
//! What the sink keeps in memory does not grow with the points: a compact id per live series
//! ([`SeriesCache`]), the field names, and the set of open minutes.
//!
//! [`rollup`]: super::rollup

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use influxdb_line_protocol::{parse_lines, FieldValue};
use rusqlite::{params, Connection, Transaction};

use super::rollup::{OpenMinutes, MINUTE_MS};
use super::schema::{self, is_corrupt, is_full};
use super::series::SeriesCache;
use super::{retention, StoreSettings};
use crate::deliver::{Batch, Sink};

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
}

/// The embedded history as a sink (see the module docs).
pub struct StoreSink {
    settings: StoreSettings,
    db: Option<Db>,
    retry_at: Option<Instant>,
    /// Batches of the current cycle not written yet (see [`GATHER_BYTES`]).
    pending: Option<Batch>,
}

/// A cycle reaches the store as many small batches; they are gathered (up to this much text, or
/// until the cycle's last batch) and written in one transaction, since a transaction per batch
/// costs far more than its rows.
const GATHER_BYTES: usize = 512 * 1024;

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
            pending: None,
        }
    }

    /// Opens the file now (so that start-up reports a problem at once); errors are also kept in
    /// the status.
    pub fn open_now(&mut self) {
        let _ = self.db();
    }

    fn db(&mut self) -> Result<&mut Db, String> {
        if self.db.is_none() {
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                return Err(self
                    .settings
                    .status
                    .view()
                    .last_error
                    .unwrap_or_else(|| "history store unavailable".into()));
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
                    });
                    tracing::info!(path = %self.settings.path.display(), "history store open");
                }
                Err(e) => {
                    self.retry_at = Some(Instant::now() + REOPEN_AFTER);
                    let msg = format!("{e} (collection goes on; retrying in 30s)");
                    self.settings.status.fail(msg.clone());
                    return Err(msg);
                }
            }
        }
        self.db
            .as_mut()
            .ok_or_else(|| "history store unavailable".into())
    }

    fn ingest(&mut self, batch: &Batch) -> Result<(), String> {
        let ts = batch.timestamp_ns.div_euclid(1_000_000);
        let settings = self.settings.clone();
        let db = self.db()?;
        let result = write_batch(db, &settings, batch, ts);
        match result {
            Ok(points) => {
                let st = &settings.status;
                st.batches.fetch_add(1, Ordering::Relaxed);
                st.points.fetch_add(points, Ordering::Relaxed);
                let minute = ts.div_euclid(MINUTE_MS);
                if minute - db.generation_minute >= SERIES_GENERATION_MINUTES
                    || minute < db.generation_minute
                {
                    db.generation_minute = minute;
                    db.series.rotate();
                }
                let mut maintain = Ok(());
                if minute != db.swept_minute {
                    db.swept_minute = minute;
                    maintain = retention::expire(&db.conn, ts, &settings);
                }
                let size = maintain.and_then(|()| retention::bound_size(&db.conn, &settings));
                match size {
                    Ok(()) => st.ok(),
                    Err(e) => st.fail(format!(
                        "history store {}: retention failed: {e}; collection goes on",
                        settings.path.display()
                    )),
                }
                Ok(())
            }
            Err(e) => {
                let path = settings.path.display();
                let msg = if is_full(&e) {
                    // Make room for the next batches.
                    let _ = retention::bound_size(&db.conn, &settings);
                    format!(
                        "history store {path} is full ({e}; [store] max_size = {}): a batch was not kept and the oldest data is being removed; raise max_size or free disk space. Collection goes on",
                        bytesize::ByteSize::b(settings.max_size)
                    )
                } else if is_corrupt(&e) {
                    self.db = None;
                    format!("history store {path} is damaged ({e}): it will be moved aside and a new one started. Collection goes on")
                } else {
                    format!("history store {path}: cannot write ({e}); collection goes on")
                };
                settings.status.fail(msg.clone());
                Err(msg)
            }
        }
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
    tx: &Transaction,
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

/// Writes one batch in one transaction; returns the number of points.
fn write_batch(
    db: &mut Db,
    settings: &StoreSettings,
    batch: &Batch,
    ts: i64,
) -> rusqlite::Result<u64> {
    let minute = ts.div_euclid(MINUTE_MS);
    let tx = db.conn.transaction()?;
    // Minutes before this batch's close first (their points are all in).
    let closed = db.open.close_before(&tx, Some(minute))?;
    let mut points = 0u64;
    let mut touched: Vec<i64> = Vec::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO points (series_id, ts, field_id, value) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for line in parse_lines(&batch.lines) {
            let Ok(line) = line else {
                // vmtel's own encoder wrote it; a line it cannot parse back is skipped, not fatal.
                continue;
            };
            let sid = db.series.id(&tx, &line.series, ts)?;
            touched.push(sid);
            for (k, v) in &line.field_set {
                let Some(v) = value(v) else { continue };
                let fid = field_id(&tx, &mut db.fields, k)?;
                match v {
                    Value::Int(i) => insert.execute(params![sid, ts, fid, i])?,
                    Value::Real(f) => insert.execute(params![sid, ts, fid, f])?,
                };
                points += 1;
            }
        }
    }
    touched.sort_unstable();
    touched.dedup();
    {
        let mut seen =
            tx.prepare_cached("UPDATE series SET last_ts = ?2 WHERE id = ?1 AND last_ts < ?2")?;
        for sid in touched {
            seen.execute(params![sid, ts])?;
        }
    }
    for ((host, uuid), devs) in settings.identity.take_changed() {
        for d in devs {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO devices (host, uuid, devtype, device, mac, path, last_ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![host, uuid, d.devtype, d.device, d.mac, d.path, ts])?;
        }
    }
    tx.commit()?;
    db.open.closed(&closed);
    if points > 0 {
        db.open.touch(minute);
    }
    Ok(points)
}

impl StoreSink {
    /// Writes the gathered batches, if any.
    fn write_pending(&mut self) -> Result<(), String> {
        match self.pending.take() {
            Some(p) => self.ingest(&p),
            None => Ok(()),
        }
    }
}

impl Sink for StoreSink {
    fn name(&self) -> String {
        "store".into()
    }

    fn write(&mut self, batch: &Batch) -> std::io::Result<()> {
        let mut result = Ok(());
        if let Some(p) = &self.pending {
            if p.timestamp_ns != batch.timestamp_ns
                || p.source != batch.source
                || p.lines.len() + batch.lines.len() > GATHER_BYTES
            {
                result = self.write_pending();
            }
        }
        match &mut self.pending {
            Some(p) => {
                p.lines.push_str(&batch.lines);
                p.line_count += batch.line_count;
            }
            None => self.pending = Some(batch.clone()),
        }
        if batch.end_of_cycle {
            let last = self.write_pending();
            result = result.and(last);
        }
        result.map_err(std::io::Error::other)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Batches wait for the end of their cycle (or GATHER_BYTES), not for an empty queue.
        Ok(())
    }
}

impl Drop for StoreSink {
    fn drop(&mut self) {
        if let Err(e) = self.write_pending() {
            tracing::warn!("history store: cannot write the last batches: {e}");
        }
        self.close_minutes();
    }
}
