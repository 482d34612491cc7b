//! Retention: by age (raw points after `retention_raw`, roll-ups after `retention_rollup`) and
//! by size (the oldest data goes first whenever the file holds more than 90% of `max_size`).
//!
//! Deletes run per series over the clustered key, so they touch only the rows they remove.
//! Freed pages are handed back to the file system with `PRAGMA incremental_vacuum`.

use std::sync::atomic::Ordering;

use rusqlite::{params, Connection};

use super::schema::used_bytes;
use super::StoreSettings;

fn series_ids(conn: &Connection) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached("SELECT id FROM series")?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(ids)
}

/// Deletes raw points before `raw_cut` and roll-ups before `rollup_cut` (ms), series and
/// devices not seen since `rollup_cut`. Returns rows deleted.
pub fn delete_before(conn: &Connection, raw_cut: i64, rollup_cut: i64) -> rusqlite::Result<u64> {
    let tx = conn.unchecked_transaction()?;
    let mut n = 0u64;
    for id in series_ids(&tx)? {
        n += tx
            .prepare_cached("DELETE FROM points WHERE series_id = ?1 AND ts < ?2")?
            .execute(params![id, raw_cut])? as u64;
        n += tx
            .prepare_cached("DELETE FROM rollup_1m WHERE series_id = ?1 AND ts < ?2")?
            .execute(params![id, rollup_cut])? as u64;
    }
    n += tx.execute("DELETE FROM series WHERE last_ts < ?1", [rollup_cut])? as u64;
    n += tx.execute("DELETE FROM devices WHERE last_ts < ?1", [rollup_cut])? as u64;
    tx.commit()?;
    Ok(n)
}

/// The oldest raw point, ms (None when there is none).
pub fn oldest_raw(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT MIN((SELECT MIN(ts) FROM points WHERE series_id = s.id)) FROM series s",
        [],
        |r| r.get(0),
    )
}

fn oldest_rollup(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT MIN((SELECT MIN(ts) FROM rollup_1m WHERE series_id = s.id)) FROM series s",
        [],
        |r| r.get(0),
    )
}

/// Age-based retention at `now` (ms).
pub fn expire(conn: &Connection, now: i64, s: &StoreSettings) -> rusqlite::Result<()> {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let raw_cut = now.saturating_sub(ms(s.retention_raw));
    let rollup_cut = now.saturating_sub(ms(s.retention_rollup));
    if delete_before(conn, raw_cut, rollup_cut)? > 0 {
        conn.execute_batch("PRAGMA incremental_vacuum;")?;
    }
    let oldest = oldest_raw(conn)?.unwrap_or(0);
    s.status
        .oldest_raw_ms
        .store(u64::try_from(oldest).unwrap_or(0), Ordering::Relaxed);
    Ok(())
}

/// Size-based retention: while the file holds more than 90% of `max_size`, removes the oldest
/// tenth of the raw history (at least a minute), then of the roll-ups once raw history is down
/// to its last minutes.
pub fn bound_size(conn: &Connection, s: &StoreSettings) -> rusqlite::Result<()> {
    let high = s.max_size / 10 * 9;
    let mut used = used_bytes(conn)?;
    for _ in 0..8 {
        if used <= high {
            break;
        }
        let newest: i64 =
            conn.query_row("SELECT COALESCE(MAX(last_ts), 0) FROM series", [], |r| {
                r.get(0)
            })?;
        let cut = |oldest: i64| oldest + ((newest - oldest) / 10).max(60_000);
        let (raw_cut, rollup_cut) = match oldest_raw(conn)? {
            Some(o) if newest - o > 120_000 => (cut(o), i64::MIN),
            _ => match oldest_rollup(conn)? {
                Some(o) => (newest - 60_000, cut(o)),
                None => (newest - 60_000, i64::MIN),
            },
        };
        let deleted = delete_before(conn, raw_cut, rollup_cut)?;
        conn.execute_batch("PRAGMA incremental_vacuum;")?;
        used = used_bytes(conn)?;
        if deleted == 0 {
            break;
        }
    }
    s.status.used_bytes.store(used, Ordering::Relaxed);
    if let Some(o) = oldest_raw(conn)? {
        s.status
            .oldest_raw_ms
            .store(u64::try_from(o).unwrap_or(0), Ordering::Relaxed);
    }
    Ok(())
}
