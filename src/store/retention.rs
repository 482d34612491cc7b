//! Retention: by age (raw chunks whose last row is older than `retention_raw`, roll-up chunks
//! older than `retention_rollup`) and by size (the oldest chunks go first whenever the file
//! holds more than 90% of `max_size`: raw rows first, roll-ups once little raw history is
//! left). Whole chunks are deleted; freed pages go back to the file system with
//! `PRAGMA incremental_vacuum`.

use std::sync::atomic::Ordering;

use rusqlite::Connection;

use super::schema::used_bytes;
use super::StoreSettings;

/// Deletes raw chunks and head rows that end before `raw_cut`, roll-ups that end before
/// `rollup_cut` (ms), and series with nothing left that were last seen before `rollup_cut`.
/// Returns rows deleted.
pub fn delete_before(conn: &Connection, raw_cut: i64, rollup_cut: i64) -> rusqlite::Result<u64> {
    let tx = conn.unchecked_transaction()?;
    let mut n = 0u64;
    n += tx.execute("DELETE FROM chunks WHERE end_ts < ?1", [raw_cut])? as u64;
    n += tx.execute("DELETE FROM head WHERE ts < ?1", [raw_cut])? as u64;
    n += tx.execute("DELETE FROM rollups WHERE end_ts < ?1", [rollup_cut])? as u64;
    n += tx.execute(
        "DELETE FROM series WHERE last_ts < ?1
           AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.series_id = series.id)
           AND NOT EXISTS (SELECT 1 FROM rollups r WHERE r.series_id = series.id)",
        [rollup_cut],
    )? as u64;
    tx.commit()?;
    Ok(n)
}

/// The oldest raw row kept, ms (None when there is none).
pub fn oldest_raw(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    // Per level, so that each minimum is read from the (level, start_ts) index.
    conn.query_row(
        "SELECT MIN(t) FROM (SELECT MIN(start_ts) AS t FROM chunks WHERE level = 0
                             UNION ALL SELECT MIN(start_ts) FROM chunks WHERE level = 1
                             UNION ALL SELECT MIN(ts) FROM head)",
        [],
        |r| r.get(0),
    )
}

fn oldest_end(conn: &Connection, table: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row(&format!("SELECT MIN(end_ts) FROM {table}"), [], |r| {
        r.get(0)
    })
}

fn newest(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT MAX(t) FROM (SELECT MAX(end_ts) AS t FROM chunks UNION ALL SELECT MAX(ts) FROM head
                            UNION ALL SELECT MAX(end_ts) FROM rollups)",
        [],
        |r| Ok(r.get::<_, Option<i64>>(0)?.unwrap_or(0)),
    )
}

/// Age-based retention at `now` (ms).
pub fn expire(conn: &Connection, now: i64, s: &StoreSettings) -> rusqlite::Result<()> {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let raw_cut = now.saturating_sub(ms(s.retention_raw));
    let rollup_cut = now.saturating_sub(ms(s.retention_rollup));
    if delete_before(conn, raw_cut, rollup_cut)? > 0 {
        super::schema::vacuum(conn)?;
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
    for _ in 0..16 {
        if used <= high {
            break;
        }
        let newest = newest(conn)?;
        let cut = |oldest: i64| oldest + ((newest - oldest) / 10).max(60_000);
        let (raw_cut, rollup_cut) = match oldest_end(conn, "chunks")? {
            Some(o) if newest - o > 120_000 => (cut(o), i64::MIN),
            _ => match oldest_end(conn, "rollups")? {
                Some(o) => (newest - 60_000, cut(o)),
                None => (newest - 60_000, i64::MIN),
            },
        };
        let deleted = delete_before(conn, raw_cut, rollup_cut)?;
        super::schema::vacuum(conn)?;
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
