//! 1-minute roll-ups, computed in SQL from the raw points when a minute closes.
//!
//! Nothing per series or field is held in memory: the store only remembers which minutes have
//! raw points not yet rolled up ([`OpenMinutes`]). A minute closes when a batch of a later
//! minute arrives (any source's), and at shutdown; closing it writes, for every series seen
//! since the minute began, `sum`, `n`, `min` and `max` of each field's raw points in that
//! minute. One statement per series reads its points over the clustered key
//! `(series_id, ts, field_id)`, so closing touches only that minute's rows.
//!
//! A roll-up is the aggregate of all the minute's raw points, so closing a minute again (a
//! batch that arrives late, a restart within the minute after a roll-up written at shutdown)
//! replaces it with the complete figure. A roll-up is never replaced by one over fewer points
//! (raw points already removed by retention).

use std::collections::BTreeSet;

use rusqlite::{params, Connection};

/// Milliseconds in a minute.
pub const MINUTE_MS: i64 = 60_000;

/// The minutes (ms / 60 000) with raw points whose roll-up is not written yet.
#[derive(Debug, Default)]
pub struct OpenMinutes {
    open: BTreeSet<i64>,
}

impl OpenMinutes {
    /// Notes that `minute` has (new) raw points.
    pub fn touch(&mut self, minute: i64) {
        self.open.insert(minute);
    }

    /// Writes (within the caller's transaction) the roll-ups of every open minute before
    /// `minute` (all of them with `None`) and returns those minutes: pass them to
    /// [`OpenMinutes::closed`] once the transaction is committed.
    pub fn close_before(
        &self,
        conn: &Connection,
        minute: Option<i64>,
    ) -> rusqlite::Result<Vec<i64>> {
        let closing: Vec<i64> = self
            .open
            .iter()
            .copied()
            .take_while(|m| minute.is_none_or(|limit| *m < limit))
            .collect();
        for m in &closing {
            close_minute(conn, *m)?;
        }
        Ok(closing)
    }

    /// Forgets minutes whose roll-ups are committed.
    pub fn closed(&mut self, minutes: &[i64]) {
        for m in minutes {
            self.open.remove(m);
        }
    }

    /// True when no minute is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// Writes the roll-ups of `minute` from its raw points.
fn close_minute(conn: &Connection, minute: i64) -> rusqlite::Result<()> {
    let from = minute.saturating_mul(MINUTE_MS);
    let to = from.saturating_add(MINUTE_MS);
    let ids: Vec<i64> = conn
        .prepare_cached("SELECT id FROM series WHERE last_ts >= ?1 AND first_ts < ?2")?
        .query_map(params![from, to], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    // TOTAL, not SUM: a float that cannot overflow (cumulative counters near 2^63 are common).
    // `WHERE` in the SELECT also keeps the upsert's ON CONFLICT unambiguous.
    let mut roll = conn.prepare_cached(
        "INSERT INTO rollup_1m (series_id, ts, field_id, sum, n, min, max)
         SELECT ?1, ?2, field_id, TOTAL(value), COUNT(value), MIN(value), MAX(value)
         FROM points WHERE series_id = ?1 AND ts >= ?2 AND ts < ?3 AND value IS NOT NULL
         GROUP BY field_id
         ON CONFLICT (series_id, ts, field_id) DO UPDATE SET
           sum = excluded.sum, n = excluded.n, min = excluded.min, max = excluded.max
         WHERE excluded.n >= rollup_1m.n",
    )?;
    for id in ids {
        roll.execute(params![id, from, to])?;
    }
    Ok(())
}
