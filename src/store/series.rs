//! The series registry: a series' identity (kind, host, key, device) → its row id, with the
//! VM's name, a NIC's MAC or a disk's path kept up to date in the `series` table.
//!
//! In memory it keeps 48 bytes per live series (a 128-bit hash of the identity, the id, a
//! fingerprint of the name/MAC/path, and the last time seen); a series not seen for an hour is
//! forgotten and looked up again if it comes back. `last_ts` is written to the table when the
//! head is compacted (the head holds the exact latest times until then).

use std::collections::HashMap;
use std::hash::Hash;

use rusqlite::{params, Connection, OptionalExtension};

use super::layout::Kind;

/// A series' identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesKey<'a> {
    /// What it is.
    pub kind: Kind,
    /// The `host` tag (where vmtel runs, for sources and sinks).
    pub host: &'a str,
    /// A VM's UUID (also for its devices), a source's URI or a sink's name.
    pub key: &'a str,
    /// A device's name (empty for other kinds).
    pub device: &'a str,
}

/// What is kept beside a series' identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Extra<'a> {
    /// A VM's name.
    pub name: Option<&'a str>,
    /// A NIC's MAC address.
    pub mac: Option<&'a str>,
    /// A disk's source path.
    pub path: Option<&'a str>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: i64,
    extra: u64,
    last_ts: i64,
    stored_last_ts: i64,
}

/// Forget series not seen for this long (ms).
const FORGET_MS: i64 = 3_600_000;

/// The registry (see the module docs).
#[derive(Debug, Default)]
pub struct Registry {
    by_key: HashMap<u128, Entry>,
    kinds: HashMap<i64, Kind>,
}

/// 128 bits of two fixed-seed hashes (foldhash: fast, and the same in every run).
fn hash128<T: Hash>(v: &T) -> u128 {
    use std::hash::BuildHasher;
    let half = |seed: u64| u128::from(foldhash::fast::FixedState::with_seed(seed).hash_one(v));
    (half(0x9e37_79b9_7f4a_7c15) << 64) | half(0xc2b2_ae3d_27d4_eb4f)
}

impl Registry {
    /// The id of series `key` seen at `ts`, creating its row if needed and updating its
    /// name/MAC/path if they changed.
    pub fn id(
        &mut self,
        conn: &Connection,
        key: SeriesKey<'_>,
        extra: Extra<'_>,
        ts: i64,
    ) -> rusqlite::Result<i64> {
        let h = hash128(&key);
        let fingerprint = hash128(&extra) as u64;
        if let Some(e) = self.by_key.get_mut(&h) {
            e.last_ts = e.last_ts.max(ts);
            if e.extra != fingerprint {
                update_extra(conn, e.id, extra)?;
                e.extra = fingerprint;
            }
            return Ok(e.id);
        }
        let found = conn
            .prepare_cached(
                "SELECT id, last_ts FROM series WHERE kind = ?1 AND host = ?2 AND key = ?3 AND device = ?4",
            )?
            .query_row(
                params![key.kind.code(), key.host, key.key, key.device],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()?;
        let (id, stored) = match found {
            Some((id, last)) => {
                update_extra(conn, id, extra)?;
                (id, last)
            }
            None => {
                conn.prepare_cached(
                    "INSERT INTO series (kind, host, key, device, name, mac, path, first_ts, last_ts)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
                )?
                .execute(params![
                    key.kind.code(),
                    key.host,
                    key.key,
                    key.device,
                    extra.name,
                    extra.mac,
                    extra.path,
                    ts
                ])?;
                (conn.last_insert_rowid(), ts)
            }
        };
        self.by_key.insert(
            h,
            Entry {
                id,
                extra: fingerprint,
                last_ts: ts.max(stored),
                stored_last_ts: stored,
            },
        );
        self.kinds.insert(id, key.kind);
        Ok(id)
    }

    /// The kind of series `id`, from memory or the table.
    pub fn kind_of(&mut self, conn: &Connection, id: i64) -> rusqlite::Result<Option<Kind>> {
        if let Some(k) = self.kinds.get(&id) {
            return Ok(Some(*k));
        }
        let code: Option<i64> = conn
            .prepare_cached("SELECT kind FROM series WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        let kind = code.and_then(Kind::from_code);
        if let Some(k) = kind {
            self.kinds.insert(id, k);
        }
        Ok(kind)
    }

    /// Writes the last time each series was seen into the table, and forgets series not seen
    /// for an hour before `now`.
    pub fn flush(&mut self, conn: &Connection, now: i64) -> rusqlite::Result<()> {
        let mut stmt =
            conn.prepare_cached("UPDATE series SET last_ts = ?2 WHERE id = ?1 AND last_ts < ?2")?;
        for e in self.by_key.values_mut() {
            if e.last_ts > e.stored_last_ts {
                stmt.execute(params![e.id, e.last_ts])?;
                e.stored_last_ts = e.last_ts;
            }
        }
        let kinds = &mut self.kinds;
        self.by_key.retain(|_, e| {
            let keep = now - e.last_ts < FORGET_MS;
            if !keep {
                kinds.remove(&e.id);
            }
            keep
        });
        Ok(())
    }

    /// Forgets everything (after a rolled-back transaction: rows it created are gone).
    pub fn clear(&mut self) {
        self.by_key.clear();
        self.kinds.clear();
    }
}

fn update_extra(conn: &Connection, id: i64, extra: Extra<'_>) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE series SET name = COALESCE(?2, name), mac = COALESCE(?3, mac), path = COALESCE(?4, path) WHERE id = ?1",
    )?
    .execute(params![id, extra.name, extra.mac, extra.path])?;
    Ok(())
}
