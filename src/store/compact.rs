//! Compaction and merging, each one transaction (so a `kill -9` at any moment leaves either
//! the rows before or after it, never neither and never both):
//!
//! * compaction: head rows → one chunk per series and 2-hour period, encoded fast
//!   ([`codec::encode_fast`]; level 0);
//! * merging of raw chunks, once their 2-hour period has passed (and at a clean stop): the
//!   level-0 chunks of a series and period → chunks of up to [`RAW_ROWS_MAX`] rows compressed
//!   with pco (level 1), and their 1-minute roll-ups;
//! * merging of roll-up chunks, once their day has passed: one chunk per series and day.
//!
//! Roll-up rows hold, per minute: the number of rows, then per column a counter's last value
//! (rates over a long range are differences of these) or a gauge's minimum, maximum and sum
//! (the average is the sum over the number of rows); all exact integers.

use std::collections::BTreeMap;

use rusqlite::{params, Connection};

use super::codec::{self, Chunk, Column as CodecColumn};
use super::head;
use super::layout::Kind;
use super::series::Registry;

/// A chunk of raw rows is not merged further once it holds this many rows.
pub const RAW_ROWS_MAX: usize = 720;
/// Raw chunks are merged only within one such period (2 hours), so retention, which deletes
/// whole chunks, keeps to its bound within it.
pub const RAW_PERIOD_MS: i64 = 2 * 3_600_000;
/// A chunk of roll-ups is not merged further once it holds this many minutes (a day).
pub const ROLLUP_ROWS_MAX: usize = 1440;
/// Roll-up chunks are merged only within one UTC day.
pub const ROLLUP_PERIOD_MS: i64 = 86_400_000;
/// A minute, ms.
pub const MINUTE_MS: i64 = 60_000;

/// The rows of one series, by timestamp, kept flat (8 bytes a cell) so that compacting a large
/// head stays small in memory.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rows {
    /// Timestamps.
    pub ts: Vec<i64>,
    /// Values per row.
    pub width: usize,
    /// `ts.len() * width` cells, row by row; [`NONE`] where a row has no value.
    cells: Vec<i64>,
}

/// The cell of a missing value (`i64::MIN`, which no stored field takes: a counter is at most
/// `i64::MAX` and a state code small).
const NONE: i64 = i64::MIN;

impl Rows {
    /// Empty rows of `width` values.
    pub fn with_width(width: usize) -> Rows {
        Rows {
            ts: Vec::new(),
            width,
            cells: Vec::new(),
        }
    }

    /// Value `c` of row `r`.
    pub fn get(&self, r: usize, c: usize) -> Option<i64> {
        if c >= self.width {
            return None;
        }
        self.cells
            .get(r * self.width + c)
            .copied()
            .filter(|&v| v != NONE)
    }

    /// Row `r` as options.
    pub fn row(&self, r: usize) -> Vec<Option<i64>> {
        (0..self.width).map(|c| self.get(r, c)).collect()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Adds a row (values beyond `width` are dropped, missing ones empty); a row with the
    /// timestamp of the last one replaces it.
    pub fn push(&mut self, ts: i64, row: &[Option<i64>]) {
        if self.ts.last() == Some(&ts) {
            let start = self.cells.len() - self.width;
            self.cells.truncate(start);
            self.ts.pop();
        }
        self.ts.push(ts);
        for c in 0..self.width {
            self.cells
                .push(row.get(c).copied().flatten().unwrap_or(NONE));
        }
    }

    /// Adds row `r` of `other` (as [`Rows::push`] does, without building the row).
    pub fn push_row(&mut self, other: &Rows, r: usize) {
        let t = other.ts[r];
        if self.ts.last() == Some(&t) {
            let start = self.cells.len() - self.width;
            self.cells.truncate(start);
            self.ts.pop();
        }
        self.ts.push(t);
        let from = r * other.width;
        let n = self.width.min(other.width);
        self.cells.extend_from_slice(&other.cells[from..from + n]);
        for _ in n..self.width {
            self.cells.push(NONE);
        }
    }

    /// Sorts the rows by time (of two rows with one timestamp the later one stays).
    pub fn sort(&mut self) {
        if self.ts.windows(2).all(|w| w[0] < w[1]) {
            return;
        }
        let mut order: Vec<usize> = (0..self.ts.len()).collect();
        order.sort_by_key(|&i| (self.ts[i], i));
        let old = std::mem::replace(self, Rows::with_width(self.width));
        for i in order {
            self.push_row(&old, i);
        }
    }

    /// The rows cut where their time crosses a multiple of `period` (ms); sorted rows stay
    /// sorted.
    pub fn split_by(&self, period: i64) -> Vec<Rows> {
        let mut out: Vec<Rows> = Vec::new();
        let mut current: Option<i64> = None;
        for r in 0..self.len() {
            let p = self.ts[r].div_euclid(period);
            if current != Some(p) {
                out.push(Rows::with_width(self.width));
                current = Some(p);
            }
            if let Some(part) = out.last_mut() {
                part.push_row(self, r);
            }
        }
        out
    }

    /// As a codec chunk of integer columns.
    pub fn to_chunk(&self) -> Chunk {
        let columns = (0..self.width)
            .map(|c| CodecColumn::Int((0..self.len()).map(|r| self.get(r, c)).collect()))
            .collect();
        Chunk {
            ts: self.ts.clone(),
            columns,
        }
    }

    /// From a codec chunk of integer columns (float columns read as empty).
    pub fn from_chunk(chunk: &Chunk) -> Rows {
        Rows::from_chunk_tail(chunk, usize::MAX)
    }

    /// The last `n` rows of a codec chunk.
    pub fn from_chunk_tail(chunk: &Chunk, n: usize) -> Rows {
        let mut rows = Rows::with_width(chunk.columns.len());
        let mut row = vec![None; rows.width];
        let skip = chunk.ts.len().saturating_sub(n);
        for (r, &t) in chunk.ts.iter().enumerate().skip(skip) {
            for (c, col) in chunk.columns.iter().enumerate() {
                row[c] = match col {
                    CodecColumn::Int(v) => v.get(r).copied().flatten(),
                    CodecColumn::Float(_) => None,
                };
            }
            rows.push(t, &row);
        }
        rows
    }
}

/// What one compaction did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Head rows (batches) compacted.
    pub head_rows: usize,
    /// Chunks written.
    pub chunks: usize,
    /// Head rows that could not be read (logged, dropped).
    pub damaged: usize,
}

/// Values decoded at once while compacting (8 bytes each: 2 MiB); a larger head is compacted
/// in several passes, each over a share of the series.
const PASS_CELLS: usize = 1 << 18;

/// Compacts every head row older than `cut` (ms) into chunks and roll-ups, in the open
/// transaction of `conn`.
pub fn compact(
    conn: &Connection,
    registry: &mut Registry,
    cut: i64,
) -> rusqlite::Result<Compacted> {
    let bytes: i64 = conn.query_row(
        "SELECT COALESCE(SUM(length(data)), 0) FROM head WHERE ts < ?1",
        [cut],
        |r| r.get(0),
    )?;
    // A value takes about two bytes in the head.
    let passes = (usize::try_from(bytes).unwrap_or(0) / 2)
        .div_ceil(PASS_CELLS)
        .max(1);
    let mut done = Compacted::default();
    for pass in 0..passes {
        compact_pass(conn, registry, cut, (pass, passes), &mut done)?;
    }
    conn.prepare_cached("DELETE FROM head WHERE ts < ?1")?
        .execute([cut])?;
    Ok(done)
}

/// One pass: the series whose id is `pass.0` modulo `pass.1`.
fn compact_pass(
    conn: &Connection,
    registry: &mut Registry,
    cut: i64,
    pass: (usize, usize),
    done: &mut Compacted,
) -> rusqlite::Result<()> {
    let mut per: BTreeMap<i64, Rows> = BTreeMap::new();
    let modulo = pass.1 as i64;
    let mine = |id: i64| id.rem_euclid(modulo) == pass.0 as i64;
    {
        let mut stmt =
            conn.prepare_cached("SELECT ts, data FROM head WHERE ts < ?1 ORDER BY ts, id")?;
        let mut rows = stmt.query([cut])?;
        while let Some(r) = rows.next()? {
            let ts: i64 = r.get(0)?;
            let data = r.get_ref(1)?.as_blob().unwrap_or(&[]);
            if pass.0 == 0 {
                done.head_rows += 1;
            }
            let read = head::read_some(data, mine, |id, row| {
                per.entry(id)
                    .or_insert_with(|| Rows::with_width(row.len()))
                    .push(ts, row);
            });
            if let Err(e) = read {
                if pass.0 == 0 {
                    done.damaged += 1;
                    tracing::error!("history store: a head row at {ts} ms cannot be read ({e}); its values are dropped");
                }
            }
        }
    }
    let mut insert_chunk = conn.prepare_cached(
        "INSERT INTO chunks (series_id, start_ts, end_ts, rows, level, data) VALUES (?1, ?2, ?3, ?4, 0, ?5)",
    )?;
    while let Some((id, mut rows)) = per.pop_first() {
        let Some(kind) = registry.kind_of(conn, id)? else {
            continue;
        };
        rows.sort();
        let _ = kind;
        // One chunk per merge period (2 hours; a day holds 12 of them).
        for part in rows.split_by(RAW_PERIOD_MS) {
            let (Some(&first), Some(&last)) = (part.ts.first(), part.ts.last()) else {
                continue;
            };
            if let Ok(bytes) = codec::encode_fast(&part.to_chunk()) {
                insert_chunk.execute(params![id, first, last, part.len() as i64, bytes])?;
                done.chunks += 1;
            }
        }
    }
    Ok(())
}

/// The 1-minute roll-ups of `rows` of a series of `kind`: per minute the number of rows, then
/// a counter's last value, a gauge's minimum, maximum and sum.
pub fn rollup(kind: Kind, rows: &Rows) -> Chunk {
    let cols = kind.columns();
    let mut out = Chunk::default();
    let width = 1 + cols
        .iter()
        .map(|c| if c.counter { 1 } else { 3 })
        .sum::<usize>();
    let mut columns: Vec<Vec<Option<i64>>> = vec![Vec::new(); width];
    let mut i = 0;
    while i < rows.ts.len() {
        let minute = rows.ts[i].div_euclid(MINUTE_MS) * MINUTE_MS;
        let mut j = i;
        while j < rows.ts.len() && rows.ts[j].div_euclid(MINUTE_MS) * MINUTE_MS == minute {
            j += 1;
        }
        out.ts.push(minute);
        columns[0].push(Some((j - i) as i64));
        let mut at = 1;
        for (c, col) in cols.iter().enumerate() {
            let mut values = (i..j).filter_map(|r| rows.get(r, c));
            if col.counter {
                columns[at].push(values.next_back());
                at += 1;
            } else {
                let (mut min, mut max, mut sum, mut n) = (i64::MAX, i64::MIN, 0i64, 0u32);
                for v in values {
                    min = min.min(v);
                    max = max.max(v);
                    sum = sum.saturating_add(v);
                    n += 1;
                }
                let some = n > 0;
                columns[at].push(some.then_some(min));
                columns[at + 1].push(some.then_some(max));
                columns[at + 2].push(some.then_some(sum));
                at += 3;
            }
        }
        i = j;
    }
    out.columns = columns.into_iter().map(CodecColumn::Int).collect();
    out
}

/// Merges the level-0 chunks of every series whose 2-hour period ended before `before` (ms;
/// `i64::MAX` at a clean stop): per series and period, their rows → level-1 chunks of up to
/// [`RAW_ROWS_MAX`] rows compressed with pco, and one chunk of their 1-minute roll-ups. Chunks
/// that cannot be read are left as they are (and logged). Returns the chunks merged.
pub fn merge_raw(
    conn: &Connection,
    registry: &mut Registry,
    before: i64,
) -> rusqlite::Result<usize> {
    let cut = before
        .div_euclid(RAW_PERIOD_MS)
        .saturating_mul(RAW_PERIOD_MS);
    let level0: Vec<(i64, i64, i64)> = conn
        .prepare_cached(
            "SELECT id, series_id, start_ts FROM chunks WHERE level = 0 AND start_ts < ?1 ORDER BY series_id, start_ts, id",
        )?
        .query_map([cut], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut merged = 0;
    let mut i = 0;
    while i < level0.len() {
        let (series, period) = (level0[i].1, level0[i].2.div_euclid(RAW_PERIOD_MS));
        let mut j = i;
        while j < level0.len()
            && level0[j].1 == series
            && level0[j].2.div_euclid(RAW_PERIOD_MS) == period
        {
            j += 1;
        }
        let ids: Vec<i64> = level0[i..j].iter().map(|c| c.0).collect();
        merged += merge_period(conn, registry, series, &ids)?;
        i = j;
    }
    Ok(merged)
}

fn merge_period(
    conn: &Connection,
    registry: &mut Registry,
    series: i64,
    ids: &[i64],
) -> rusqlite::Result<usize> {
    let Some(kind) = registry.kind_of(conn, series)? else {
        return Ok(0);
    };
    let mut rows = Rows::with_width(kind.columns().len());
    let mut used = Vec::with_capacity(ids.len());
    let mut get = conn.prepare_cached("SELECT data FROM chunks WHERE id = ?1")?;
    for id in ids {
        let data: Vec<u8> = get.query_row([id], |r| r.get(0))?;
        match codec::decode(&data) {
            Ok(c) => {
                let part = Rows::from_chunk(&c);
                for r in 0..part.len() {
                    rows.push_row(&part, r);
                }
                used.push(*id);
            }
            Err(e) => tracing::error!(
                "history store: chunk {id} of series {series} cannot be read ({e}); left as it is, skipped by reads"
            ),
        }
    }
    if used.is_empty() {
        return Ok(0);
    }
    rows.sort();
    let mut insert = conn.prepare_cached(
        "INSERT INTO chunks (series_id, start_ts, end_ts, rows, level, data) VALUES (?1, ?2, ?3, ?4, 1, ?5)",
    )?;
    let mut start = 0;
    while start < rows.len() {
        let end = (start + RAW_ROWS_MAX).min(rows.len());
        let mut piece = Rows::with_width(rows.width);
        for r in start..end {
            piece.push_row(&rows, r);
        }
        let bytes = codec::encode(&piece.to_chunk())
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        insert.execute(params![
            series,
            rows.ts[start],
            rows.ts[end - 1],
            piece.len() as i64,
            bytes
        ])?;
        start = end;
    }
    let rolled = rollup(kind, &rows);
    if let (Some(&f), Some(&l)) = (rolled.ts.first(), rolled.ts.last()) {
        let bytes = codec::encode(&rolled)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        conn.prepare_cached(
            "INSERT INTO rollups (series_id, start_ts, end_ts, rows, data) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![series, f, l, rolled.ts.len() as i64, bytes])?;
    }
    let mut del = conn.prepare_cached("DELETE FROM chunks WHERE id = ?1")?;
    for id in &used {
        del.execute([id])?;
    }
    Ok(used.len())
}

/// One stored chunk's place.
struct Stored {
    id: i64,
    series: i64,
    rows: usize,
    /// The merge period the chunk lies in.
    period: Option<i64>,
}

/// Merges the roll-up chunks of one series within one day that ended before `before` (ms;
/// `i64::MAX` at a clean stop) into one chunk, in the open transaction. A day still being
/// written is left alone, so a growing chunk is not compressed again and again. Chunks that
/// cannot be read are left as they are (and logged). Returns the number of chunks merged away.
pub fn merge_rollups(conn: &Connection, before: i64) -> rusqlite::Result<usize> {
    let (name, max_rows, period) = ("rollups", ROLLUP_ROWS_MAX, ROLLUP_PERIOD_MS);
    let candidates: Vec<Stored> = conn
        .prepare(&format!(
            "SELECT id, series_id, rows, start_ts, end_ts FROM {name} WHERE rows < ?1 AND start_ts < ?2 ORDER BY series_id, start_ts, id"
        ))?
        .query_map([max_rows as i64, before.div_euclid(period).saturating_mul(period)], |r| {
            let (start, end): (i64, i64) = (r.get(3)?, r.get(4)?);
            Ok(Stored {
                id: r.get(0)?,
                series: r.get(1)?,
                rows: usize::try_from(r.get::<_, i64>(2)?).unwrap_or(usize::MAX),
                // A chunk spanning two periods (from before this rule) is merged with none.
                period: (start.div_euclid(period) == end.div_euclid(period))
                    .then(|| start.div_euclid(period)),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut merged_away = 0;
    let mut run: Vec<&Stored> = Vec::new();
    let mut run_rows = 0;
    let mut flush = |run: &mut Vec<&Stored>| -> rusqlite::Result<()> {
        if run.len() >= 2 {
            merged_away += merge_run(conn, name, run)?;
        }
        run.clear();
        Ok(())
    };
    for c in &candidates {
        let same = run
            .first()
            .is_some_and(|f| f.series == c.series && f.period.is_some() && f.period == c.period);
        if !same || run_rows + c.rows > max_rows {
            flush(&mut run)?;
            run_rows = 0;
        }
        run.push(c);
        run_rows += c.rows;
    }
    flush(&mut run)?;
    Ok(merged_away)
}

fn merge_run(conn: &Connection, table: &str, run: &[&Stored]) -> rusqlite::Result<usize> {
    let mut chunks = Vec::with_capacity(run.len());
    let mut used = Vec::with_capacity(run.len());
    let mut get = conn.prepare_cached(&format!("SELECT data FROM {table} WHERE id = ?1"))?;
    for s in run {
        let data: Vec<u8> = get.query_row([s.id], |r| r.get(0))?;
        match codec::decode(&data) {
            Ok(c) => {
                chunks.push(c);
                used.push(s.id);
            }
            Err(e) => tracing::error!(
                "history store: chunk {} of series {} in {table} cannot be read ({e}); left as it is, skipped by reads",
                s.id,
                s.series
            ),
        }
    }
    if chunks.len() < 2 {
        return Ok(0);
    }
    let Some(merged) = concat(chunks) else {
        return Ok(0);
    };
    let (Some(&first), Some(&last)) = (merged.ts.first(), merged.ts.last()) else {
        return Ok(0);
    };
    let Ok(bytes) = codec::encode(&merged) else {
        return Ok(0);
    };
    let series = run.first().map(|s| s.series).unwrap_or(0);
    conn.prepare_cached(&format!(
        "INSERT INTO {table} (series_id, start_ts, end_ts, rows, data) VALUES (?1, ?2, ?3, ?4, ?5)"
    ))?
    .execute(params![series, first, last, merged.ts.len() as i64, bytes])?;
    let mut del = conn.prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))?;
    for id in &used {
        del.execute([id])?;
    }
    Ok(used.len() - 1)
}

/// Concatenates chunks (in the given order) into one sorted by time; None if their columns
/// differ in type. Chunks with fewer columns (an older vmtel) get empty ones.
fn concat(chunks: Vec<Chunk>) -> Option<Chunk> {
    let width = chunks.iter().map(|c| c.columns.len()).max()?;
    let template: Vec<Option<bool>> = (0..width)
        .map(|i| {
            chunks.iter().find_map(|c| {
                c.columns
                    .get(i)
                    .map(|col| matches!(col, CodecColumn::Float(_)))
            })
        })
        .collect();
    let mut order: Vec<(i64, usize, usize)> = Vec::new();
    for (ci, c) in chunks.iter().enumerate() {
        for (r, t) in c.ts.iter().enumerate() {
            order.push((*t, ci, r));
        }
    }
    order.sort_by_key(|&(t, ci, _)| (t, ci));
    // Of rows with one timestamp, the one from the later chunk stays.
    let mut keep: Vec<(i64, usize, usize)> = Vec::with_capacity(order.len());
    for o in order {
        if keep.last().is_some_and(|k| k.0 == o.0) {
            keep.pop();
        }
        keep.push(o);
    }
    let mut out = Chunk {
        ts: keep.iter().map(|k| k.0).collect(),
        columns: Vec::with_capacity(width),
    };
    for (i, is_float) in template.iter().enumerate() {
        let col = if is_float.unwrap_or(false) {
            let mut v = Vec::with_capacity(keep.len());
            for &(_, ci, r) in &keep {
                v.push(match chunks[ci].columns.get(i) {
                    Some(CodecColumn::Float(x)) => x.get(r).copied().flatten(),
                    Some(CodecColumn::Int(_)) => return None,
                    None => None,
                });
            }
            CodecColumn::Float(v)
        } else {
            let mut v = Vec::with_capacity(keep.len());
            for &(_, ci, r) in &keep {
                v.push(match chunks[ci].columns.get(i) {
                    Some(CodecColumn::Int(x)) => x.get(r).copied().flatten(),
                    Some(CodecColumn::Float(_)) => return None,
                    None => None,
                });
            }
            CodecColumn::Int(v)
        };
        out.columns.push(col);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollup_keeps_the_row_count_a_counters_last_value_and_a_gauges_min_max_sum() {
        let cols = Kind::Nic.columns();
        assert!(cols.iter().all(|c| c.counter));
        let mut rows = Rows::with_width(cols.len());
        for (t, v) in [(0, 1), (20_000, 5), (59_999, 7), (60_000, 8), (130_000, 9)] {
            rows.push(t, &vec![Some(v); cols.len()]);
        }
        let r = rollup(Kind::Nic, &rows);
        assert_eq!(r.ts, vec![0, 60_000, 120_000]);
        assert_eq!(
            r.columns[0],
            CodecColumn::Int(vec![Some(3), Some(1), Some(1)])
        );
        assert_eq!(
            r.columns[1],
            CodecColumn::Int(vec![Some(7), Some(8), Some(9)])
        );
        // A VM's state is a gauge: min, max, average.
        let vm = Kind::Vm;
        let state = vm.column("state").expect("state");
        let mut rows = Rows::with_width(vm.columns().len());
        for (t, s) in [(0, 1), (10_000, 3), (20_000, 1), (30_000, 1)] {
            let mut row = vec![None; vm.columns().len()];
            row[state] = Some(s);
            rows.push(t, &row);
        }
        let r = rollup(vm, &rows);
        let at: usize = 1 + vm.columns()[..state]
            .iter()
            .map(|c| if c.counter { 1 } else { 3 })
            .sum::<usize>();
        assert_eq!(r.columns[0], CodecColumn::Int(vec![Some(4)]));
        assert_eq!(r.columns[at], CodecColumn::Int(vec![Some(1)]));
        assert_eq!(r.columns[at + 1], CodecColumn::Int(vec![Some(3)]));
        assert_eq!(r.columns[at + 2], CodecColumn::Int(vec![Some(6)]));
    }

    #[test]
    fn concat_sorts_and_keeps_the_later_of_two_rows_at_one_time() {
        let a = Chunk {
            ts: vec![10, 20],
            columns: vec![CodecColumn::Int(vec![Some(1), Some(2)])],
        };
        let b = Chunk {
            ts: vec![5, 20, 30],
            columns: vec![
                CodecColumn::Int(vec![Some(0), Some(9), None]),
                CodecColumn::Int(vec![Some(4), None, Some(6)]),
            ],
        };
        let c = concat(vec![a, b]).expect("same types");
        assert_eq!(c.ts, vec![5, 10, 20, 30]);
        assert_eq!(
            c.columns,
            vec![
                CodecColumn::Int(vec![Some(0), Some(1), Some(9), None]),
                CodecColumn::Int(vec![Some(4), None, None, Some(6)]),
            ]
        );
    }
}
