//! Reading the store: series by identity, raw rows from chunks and the head, roll-ups, and
//! rows bucketed for a chart. A chunk that cannot be decoded is skipped and logged (at most
//! once a minute), never a panic.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, Connection};

use super::codec::{self, Chunk, Column as CodecColumn};
use super::compact::{Rows, MINUTE_MS};
use super::head;
use super::layout::Kind;

/// One series as the `series` table holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesInfo {
    /// Row id.
    pub id: i64,
    /// What it is.
    pub kind: Kind,
    /// The `host` tag.
    pub host: String,
    /// A VM's UUID, a source's URI, a sink's name.
    pub key: String,
    /// A device's name (empty for other kinds).
    pub device: String,
    /// A VM's name.
    pub name: String,
    /// A NIC's MAC.
    pub mac: Option<String>,
    /// A disk's path.
    pub path: Option<String>,
    /// Last time seen as of the last compaction (the head may hold later rows), ms.
    pub last_ts: i64,
}

/// The series matching `filter` (an SQL condition over the `series` columns).
pub fn series_where(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> rusqlite::Result<Vec<SeriesInfo>> {
    let sql = format!(
        "SELECT id, kind, host, key, device, COALESCE(name, ''), mac, path, last_ts FROM series WHERE {filter}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(args, |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            SeriesInfo {
                id: 0,
                kind: Kind::Vm,
                host: r.get(2)?,
                key: r.get(3)?,
                device: r.get(4)?,
                name: r.get(5)?,
                mac: r.get(6)?,
                path: r.get(7)?,
                last_ts: r.get(8)?,
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, kind, mut s) = row?;
        let Some(kind) = Kind::from_code(kind) else {
            continue;
        };
        s.id = id;
        s.kind = kind;
        out.push(s);
    }
    Ok(out)
}

/// The minute damage was last logged in (a damaged chunk is met on every read of its range).
static DAMAGED_LOGGED: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(i64::MIN);

struct Damaged;

impl Damaged {
    /// True at most once a minute.
    fn allow(&self) -> bool {
        let minute = crate::collect::wall_ns().div_euclid(60_000_000_000);
        DAMAGED_LOGGED.swap(minute, std::sync::atomic::Ordering::Relaxed) != minute
    }
}

const DAMAGED: Damaged = Damaged;

fn decode(data: &[u8], what: &str, series: i64) -> Option<Chunk> {
    match codec::decode(data) {
        Ok(c) => Some(c),
        Err(e) => {
            if DAMAGED.allow() {
                tracing::error!(
                    "history store: a {what} chunk of series {series} cannot be read ({e}); skipped"
                );
            }
            None
        }
    }
}

/// Calls `each` with every chunk of series `id` in `table` (`chunks`, `chunks` of level 0, or
/// `rollups`) overlapping `[from, to]`, in time order; damaged ones are skipped (and logged).
fn each_chunk(
    conn: &Connection,
    table: ChunkTable,
    id: i64,
    (from, to): (i64, i64),
    mut each: impl FnMut(Chunk),
) -> rusqlite::Result<()> {
    let (sql, what) = match table {
        ChunkTable::Raw => (
            "SELECT data FROM chunks WHERE series_id = ?1 AND end_ts >= ?2 AND start_ts <= ?3 ORDER BY start_ts, id",
            "raw",
        ),
        ChunkTable::RawLevel0 => (
            "SELECT data FROM chunks WHERE series_id = ?1 AND level = 0 AND end_ts >= ?2 AND start_ts <= ?3 ORDER BY start_ts, id",
            "raw",
        ),
        ChunkTable::Rollups => (
            "SELECT data FROM rollups WHERE series_id = ?1 AND end_ts >= ?2 AND start_ts <= ?3 ORDER BY start_ts, id",
            "roll-up",
        ),
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params![id, from, to])?;
    while let Some(r) = rows.next()? {
        let data = r.get_ref(0)?.as_blob().unwrap_or(&[]);
        if let Some(chunk) = decode(data, what, id) {
            each(chunk);
        }
    }
    Ok(())
}

/// Which chunks [`each_chunk`] reads.
#[derive(Clone, Copy)]
enum ChunkTable {
    Raw,
    RawLevel0,
    Rollups,
}

/// Head rows with `from <= ts <= to`, of the series in `wanted` (all when None).
pub fn head_rows(
    conn: &Connection,
    from: i64,
    to: i64,
    wanted: Option<&HashSet<i64>>,
) -> rusqlite::Result<HashMap<i64, Rows>> {
    let mut out: HashMap<i64, Rows> = HashMap::new();
    let mut stmt = conn
        .prepare_cached("SELECT ts, data FROM head WHERE ts >= ?1 AND ts <= ?2 ORDER BY ts, id")?;
    let mut rows = stmt.query(params![from, to])?;
    while let Some(r) = rows.next()? {
        let ts: i64 = r.get(0)?;
        let data = r.get_ref(1)?.as_blob().unwrap_or(&[]);
        let keep = |id: i64| wanted.is_none_or(|w| w.contains(&id));
        let read = head::read_some(data, keep, |id, row| {
            out.entry(id)
                .or_insert_with(|| Rows::with_width(row.len()))
                .push(ts, row);
        });
        if let Err(e) = read {
            if DAMAGED.allow() {
                tracing::error!(
                    "history store: a head row at {ts} ms cannot be read ({e}); skipped"
                );
            }
        }
    }
    Ok(out)
}

/// The raw rows of series `id` with `from <= ts <= to`: its chunks, then `head` (its head rows,
/// read by the caller once for many series).
pub fn raw(
    conn: &Connection,
    id: i64,
    from: i64,
    to: i64,
    head: Option<&Rows>,
) -> rusqlite::Result<Rows> {
    let mut out = Rows::default();
    each_chunk(conn, ChunkTable::Raw, id, (from, to), |chunk| {
        append(&mut out, &Rows::from_chunk(&chunk), from, to);
    })?;
    if let Some(h) = head {
        append(&mut out, h, from, to);
    }
    out.sort();
    Ok(out)
}

fn append(out: &mut Rows, rows: &Rows, from: i64, to: i64) {
    if rows.width > out.width {
        let old = std::mem::replace(out, Rows::with_width(rows.width));
        for r in 0..old.len() {
            out.push_row(&old, r);
        }
    }
    for r in 0..rows.len() {
        let t = rows.ts[r];
        if t >= from && t <= to {
            out.push_row(rows, r);
        }
    }
}

/// The last rows (at most `n`) of series `id`: from `head` if it has them, else from the
/// series' newest chunk.
pub fn last_rows(
    conn: &Connection,
    id: i64,
    head: Option<&Rows>,
    n: usize,
) -> rusqlite::Result<Rows> {
    let mut out = Rows::default();
    let in_head = head.map_or(0, Rows::len);
    if in_head < n {
        // In index order (series, start), so SQLite reads one blob, not every chunk's.
        let data: Option<Vec<u8>> = conn
            .prepare_cached(
                "SELECT data FROM chunks WHERE series_id = ?1 ORDER BY start_ts DESC, id DESC LIMIT 1",
            )?
            .query_row([id], |r| r.get(0))
            .ok();
        if let Some(chunk) = data.as_deref().and_then(|d| decode(d, "raw", id)) {
            let rows = Rows::from_chunk_tail(&chunk, n);
            append(&mut out, &rows, i64::MIN, i64::MAX);
        }
    }
    if let Some(h) = head {
        append(&mut out, h, i64::MIN, i64::MAX);
    }
    out.sort();
    let keep = out.len().saturating_sub(n);
    let mut last = Rows::with_width(out.width);
    for r in keep..out.len() {
        last.push_row(&out, r);
    }
    Ok(last)
}

/// Values of one column bucketed by time: a counter's last value in each bucket, a gauge's
/// average.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    /// Bucket start times, increasing.
    pub t: Vec<i64>,
    /// Per column of the kind, one value per bucket.
    pub cols: Vec<Vec<Option<f64>>>,
    /// Per column, the time of a counter's value in each bucket (its last sample).
    pub times: Vec<Vec<Option<i64>>>,
}

impl Frame {
    /// The column `key` of `kind` (empty when absent).
    pub fn col(&self, kind: Kind, key: &str) -> Vec<Option<f64>> {
        kind.column(key)
            .and_then(|i| self.cols.get(i).cloned())
            .unwrap_or_else(|| vec![None; self.t.len()])
    }

    /// The per-second rate of counter `key`, times `scale`, per bucket: the difference to the
    /// previous bucket's value over the time between the two samples; none where the counter
    /// went backwards or a value is missing.
    pub fn rate(&self, kind: Kind, key: &str, scale: f64) -> Vec<Option<f64>> {
        let Some(c) = kind.column(key) else {
            return vec![None; self.t.len()];
        };
        let (Some(v), Some(t)) = (self.cols.get(c), self.times.get(c)) else {
            return vec![None; self.t.len()];
        };
        let mut out = Vec::with_capacity(v.len());
        let mut prev: Option<(i64, f64)> = None;
        for (vi, ti) in v.iter().zip(t) {
            let r = match (prev, vi, ti) {
                (Some((tp, vp)), Some(x), Some(tx)) if *tx > tp && *x >= vp => {
                    Some((x - vp) * scale * 1000.0 / (*tx - tp) as f64)
                }
                _ => None,
            };
            out.push(r);
            if let (Some(x), Some(tx)) = (vi, ti) {
                prev = Some((*tx, *x));
            }
        }
        out
    }
}

/// One contribution to a bucket: (time, column, value, weight as an average of n).
struct Acc {
    /// Per column: (time of the last counter value, its value) or (sum, n) of a gauge.
    last: Vec<Option<(i64, f64)>>,
    sum: Vec<(f64, u32)>,
}

/// Rows of series `id` of `kind` over `[from, to]`, bucketed by `step` ms: raw rows (chunks and
/// head) when `rollup` is false, else 1-minute roll-ups followed by the head's raw rows.
pub fn frame(
    conn: &Connection,
    id: i64,
    kind: Kind,
    range: (i64, i64, i64),
    rollup: bool,
    head: Option<&Rows>,
) -> rusqlite::Result<Frame> {
    let (from, to, step) = range;
    let step = step.max(1);
    let cols = kind.columns();
    let width = cols.len();
    let mut buckets: std::collections::BTreeMap<i64, Acc> = std::collections::BTreeMap::new();
    let mut add = |t: i64, c: usize, v: f64, counter: bool| {
        let b = t.div_euclid(step) * step;
        let acc = buckets.entry(b).or_insert_with(|| Acc {
            last: vec![None; width],
            sum: vec![(0.0, 0); width],
        });
        if counter {
            if let Some(slot) = acc.last.get_mut(c) {
                if slot.is_none_or(|(lt, _)| lt <= t) {
                    *slot = Some((t, v));
                }
            }
        } else if let Some(s) = acc.sum.get_mut(c) {
            s.0 += v;
            s.1 += 1;
        }
    };
    let add_rows = |rows: &Rows, add: &mut dyn FnMut(i64, usize, f64, bool)| {
        for r in 0..rows.len() {
            let t = rows.ts[r];
            if t < from || t > to {
                continue;
            }
            for (c, col) in cols.iter().enumerate() {
                if let Some(v) = rows.get(r, c) {
                    add(t, c, v as f64, col.counter);
                }
            }
        }
    };
    if rollup {
        each_chunk(
            conn,
            ChunkTable::Rollups,
            id,
            (from - MINUTE_MS, to),
            |chunk| {
                add_rollup(&chunk, kind, (from, to), &mut add);
            },
        )?;
        // Rows not rolled up yet: the level-0 chunks (their period has not passed).
        each_chunk(conn, ChunkTable::RawLevel0, id, (from, to), |chunk| {
            add_rows(&Rows::from_chunk(&chunk), &mut add);
        })?;
    } else {
        let rows = raw(conn, id, from, to, None)?;
        add_rows(&rows, &mut add);
    }
    if let Some(h) = head {
        add_rows(h, &mut add);
    }
    let mut frame = Frame {
        t: Vec::with_capacity(buckets.len()),
        cols: vec![Vec::with_capacity(buckets.len()); width],
        times: vec![Vec::with_capacity(buckets.len()); width],
    };
    for (t, acc) in buckets {
        frame.t.push(t);
        for (c, col) in cols.iter().enumerate() {
            let (v, at) = if col.counter {
                (acc.last[c].map(|x| x.1), acc.last[c].map(|x| x.0))
            } else {
                let (s, n) = acc.sum[c];
                ((n > 0).then(|| s / f64::from(n)), None)
            };
            frame.cols[c].push(v);
            frame.times[c].push(at);
        }
    }
    Ok(frame)
}

/// Adds the rows of a roll-up chunk ([`super::compact::rollup`]): a counter's last value, a
/// gauge's average (its sum over the minute's rows).
fn add_rollup(
    chunk: &Chunk,
    kind: Kind,
    (from, to): (i64, i64),
    add: &mut dyn FnMut(i64, usize, f64, bool),
) {
    let int = |col: usize, r: usize| match chunk.columns.get(col) {
        Some(CodecColumn::Int(v)) => v.get(r).copied().flatten(),
        _ => None,
    };
    let mut at = 1;
    for (c, col) in kind.columns().iter().enumerate() {
        let source = if col.counter { at } else { at + 2 };
        at += if col.counter { 1 } else { 3 };
        for (r, &t) in chunk.ts.iter().enumerate() {
            // A minute's roll-up stands for its last moment (a counter's last value).
            let stamp = t + MINUTE_MS - 1;
            if stamp < from || t > to {
                continue;
            }
            let v = if col.counter {
                int(source, r).map(|x| x as f64)
            } else {
                match (int(source, r), int(0, r)) {
                    (Some(sum), Some(n)) if n > 0 => Some(sum as f64 / n as f64),
                    _ => None,
                }
            };
            if let Some(v) = v {
                add(stamp.min(to), c, v, col.counter);
            }
        }
    }
}

/// The distinct times of the head's newest `n` cycles (newest first).
pub fn newest_head_times(conn: &Connection, n: usize) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT ts FROM head ORDER BY ts DESC LIMIT ?1")?;
    let rows = stmt.query_map([n as i64], |r| r.get(0))?;
    rows.collect()
}
