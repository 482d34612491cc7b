//! The store sink: line protocol in, rows out, one transaction per batch.
//!
//! Every numeric field of every line becomes a point (measurement and tag set → `series`,
//! field name → `fields`). All lines of a batch carry the batch's grid timestamp, so points are
//! stamped with it (ms) whatever the configured line precision. 1-minute roll-ups are kept in
//! memory per series and field while their minute is open and written (added to what is there)
//! when it closes, in the same transaction as the batch that closed it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use influxdb_line_protocol::{parse_lines, FieldValue};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::schema::{self, is_corrupt, is_full};
use super::{retention, StoreSettings};
use crate::deliver::{Batch, Sink};

/// How long a store that failed to open waits before trying again.
const REOPEN_AFTER: Duration = Duration::from_secs(30);

/// One minute of one field of one series.
#[derive(Debug, Clone, Copy)]
struct Acc {
    minute: i64,
    sum: f64,
    n: i64,
    min: f64,
    max: f64,
}

struct Db {
    conn: Connection,
    series: HashMap<(String, String), i64>,
    fields: HashMap<String, i64>,
    open: HashMap<(i64, i64), Acc>,
    swept_minute: i64,
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

impl Value {
    fn as_f64(&self) -> f64 {
        match self {
            Value::Int(i) => *i as f64,
            Value::Real(f) => *f,
        }
    }
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
                    self.db = Some(Db {
                        conn,
                        series: HashMap::new(),
                        fields: HashMap::new(),
                        open: HashMap::new(),
                        swept_minute: 0,
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
                let minute = ts.div_euclid(60_000);
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
        let pending: Vec<_> = db.open.drain().collect();
        if pending.is_empty() {
            return;
        }
        let r = db.conn.transaction().and_then(|tx| {
            for ((series, field), acc) in &pending {
                write_rollup(&tx, *series, *field, acc)?;
            }
            tx.commit()
        });
        if let Err(e) = r {
            tracing::warn!("history store: cannot write the last minute's roll-ups: {e}");
        }
    }
}

fn series_id(
    tx: &Transaction,
    cache: &mut HashMap<(String, String), i64>,
    measurement: &str,
    tags: &BTreeMap<String, String>,
    ts: i64,
) -> rusqlite::Result<i64> {
    let tag_text = serde_json::to_string(tags).unwrap_or_default();
    let key = (measurement.to_owned(), tag_text);
    if let Some(id) = cache.get(&key) {
        return Ok(*id);
    }
    let found: Option<i64> = tx
        .query_row(
            "SELECT id FROM series WHERE measurement = ?1 AND tags = ?2",
            params![key.0, key.1],
            |r| r.get(0),
        )
        .optional()?;
    let id = match found {
        Some(id) => id,
        None => {
            let t = |k: &str| tags.get(k).map(String::as_str);
            tx.execute(
                "INSERT INTO series (measurement, tags, host, name, uuid, vmid, devtype, device, source, sink, first_ts, last_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
                params![
                    key.0,
                    key.1,
                    t("host"),
                    t("name"),
                    t("uuid"),
                    t("VMID"),
                    t("devtype"),
                    t("device"),
                    t("source"),
                    t("sink"),
                    ts
                ],
            )?;
            tx.last_insert_rowid()
        }
    };
    cache.insert(key, id);
    Ok(id)
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

fn write_rollup(tx: &Transaction, series: i64, field: i64, acc: &Acc) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO rollup_1m (series_id, ts, field_id, sum, n, min, max) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (series_id, ts, field_id) DO UPDATE SET
           sum = rollup_1m.sum + excluded.sum, n = rollup_1m.n + excluded.n,
           min = MIN(rollup_1m.min, excluded.min), max = MAX(rollup_1m.max, excluded.max)",
    )?
    .execute(params![series, acc.minute * 60_000, field, acc.sum, acc.n, acc.min, acc.max])?;
    Ok(())
}

/// Writes one batch in one transaction; returns the number of points.
fn write_batch(
    db: &mut Db,
    settings: &StoreSettings,
    batch: &Batch,
    ts: i64,
) -> rusqlite::Result<u64> {
    let minute = ts.div_euclid(60_000);
    let tx = db.conn.transaction()?;
    let mut points = 0u64;
    let mut touched: Vec<i64> = Vec::new();
    let mut closed: Vec<((i64, i64), Acc)> = Vec::new();
    for line in parse_lines(&batch.lines) {
        let Ok(line) = line else {
            // vmtel's own encoder wrote it; a line it cannot parse back is skipped, not fatal.
            continue;
        };
        let tags: BTreeMap<String, String> = line
            .series
            .tag_set
            .iter()
            .flatten()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sid = series_id(&tx, &mut db.series, &line.series.measurement, &tags, ts)?;
        touched.push(sid);
        for (k, v) in &line.field_set {
            let Some(v) = value(v) else { continue };
            let fid = field_id(&tx, &mut db.fields, k)?;
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO points (series_id, ts, field_id, value) VALUES (?1, ?2, ?3, ?4)",
            )?;
            match v {
                Value::Int(i) => stmt.execute(params![sid, ts, fid, i])?,
                Value::Real(f) => stmt.execute(params![sid, ts, fid, f])?,
            };
            points += 1;
            let x = v.as_f64();
            let acc = db.open.entry((sid, fid)).or_insert(Acc {
                minute,
                sum: 0.0,
                n: 0,
                min: x,
                max: x,
            });
            if acc.minute != minute {
                closed.push(((sid, fid), *acc));
                *acc = Acc {
                    minute,
                    sum: 0.0,
                    n: 0,
                    min: x,
                    max: x,
                };
            }
            acc.sum += x;
            acc.n += 1;
            acc.min = acc.min.min(x);
            acc.max = acc.max.max(x);
        }
    }
    touched.sort_unstable();
    touched.dedup();
    for sid in touched {
        tx.prepare_cached("UPDATE series SET last_ts = ?2 WHERE id = ?1 AND last_ts < ?2")?
            .execute(params![sid, ts])?;
    }
    // Minutes of series that stopped reporting close too.
    if minute != db.swept_minute {
        let stale: Vec<(i64, i64)> = db
            .open
            .iter()
            .filter(|(_, a)| a.minute < minute)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            if let Some(a) = db.open.remove(&k) {
                closed.push((k, a));
            }
        }
    }
    for ((sid, fid), acc) in &closed {
        write_rollup(&tx, *sid, *fid, acc)?;
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
    Ok(points)
}

impl Sink for StoreSink {
    fn name(&self) -> String {
        "store".into()
    }

    fn write(&mut self, batch: &Batch) -> std::io::Result<()> {
        self.ingest(batch).map_err(std::io::Error::other)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for StoreSink {
    fn drop(&mut self) {
        self.close_minutes();
    }
}
