//! The series of a line (measurement + tag set) → its row id in `series`, remembered compactly.
//!
//! A line's series is identified in memory by a keyed 64-bit hash of its measurement and tags
//! as parsed (SipHash-1-3 with a random key, over length-delimited strings), so a cache hit
//! allocates nothing and an entry costs 16 bytes whatever the names. Two live series share a
//! hash with a probability of about n²/2⁶⁵ (3·10⁻¹⁰ for 100,000 series); the key is drawn anew at
//! every start. Only on a miss is the tag map built and the `series` table read (and written
//! for a new series).
//!
//! Entries not used for a while are dropped: every entry carries the generation in which it was
//! last used, and [`SeriesCache::rotate`] (every few minutes) keeps only the entries used in the
//! current or the previous generation. A series that stops reporting is forgotten, so memory
//! follows the live series, not every series ever seen; one that comes back is found again in
//! the table.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use influxdb_line_protocol::Series;
use rusqlite::{params, Connection, OptionalExtension};

/// A series' in-memory key: 64 bits of keyed hash.
type Key = u64;

/// Hashes a [`Key`] as itself: the key is a keyed hash already.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for `u64` keys; kept correct.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 ^= i;
    }

    fn write_usize(&mut self, _: usize) {}
}

/// An entry's value: the generation in its top 8 bits, the row id below.
type Packed = u64;

const ID_BITS: u32 = 56;
const ID_MASK: u64 = (1 << ID_BITS) - 1;

type Map = HashMap<Key, Packed, BuildHasherDefault<KeyHasher>>;

/// Series ids by series, for the live series only (see the module docs).
pub struct SeriesCache {
    seed: RandomState,
    map: Map,
    generation: u8,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache {
            seed: RandomState::new(),
            map: Map::default(),
            generation: 0,
        }
    }
}

impl SeriesCache {
    fn key(&self, series: &Series<'_>) -> Key {
        let mut h = self.seed.build_hasher();
        // `str` hashes as its bytes then 0xff, which UTF-8 never contains: unambiguous.
        series.measurement.as_str().hash(&mut h);
        for (k, v) in series.tag_set.iter().flatten() {
            k.as_str().hash(&mut h);
            v.as_str().hash(&mut h);
        }
        h.finish()
    }

    /// The id of `series`, creating its row (first and last seen at `ts`) if it is new.
    pub fn id(&mut self, tx: &Connection, series: &Series<'_>, ts: i64) -> rusqlite::Result<i64> {
        let key = self.key(series);
        let tag = u64::from(self.generation) << ID_BITS;
        if let Some(v) = self.map.get_mut(&key) {
            *v = (*v & ID_MASK) | tag;
            // Fits: only such ids are kept.
            return Ok((*v & ID_MASK) as i64);
        }
        let id = lookup_or_insert(tx, series, ts)?;
        // An id that does not fit (never in practice: ids count up from 1) is not remembered.
        if let Ok(small) = u64::try_from(id) {
            if small <= ID_MASK {
                self.map.insert(key, small | tag);
            }
        }
        Ok(id)
    }

    /// Starts a new generation, forgetting the series not used in this one or the one before.
    pub fn rotate(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        let now = self.generation;
        self.map.retain(|_, v| {
            // Top 8 bits: a u8.
            let used = (*v >> ID_BITS) as u8;
            now.wrapping_sub(used) <= 1
        });
        if self.map.capacity() > 2 * self.map.len() + 64 {
            self.map.shrink_to_fit();
        }
    }

    /// Series remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Finds the row of `series` in the table, or adds it.
fn lookup_or_insert(tx: &Connection, series: &Series<'_>, ts: i64) -> rusqlite::Result<i64> {
    let measurement = series.measurement.as_str();
    let tags: BTreeMap<&str, &str> = series
        .tag_set
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let tag_text = serde_json::to_string(&tags).unwrap_or_default();
    let found: Option<i64> = tx
        .prepare_cached("SELECT id FROM series WHERE measurement = ?1 AND tags = ?2")?
        .query_row(params![measurement, tag_text], |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    let t = |k: &str| tags.get(k).copied();
    tx.prepare_cached(
        "INSERT INTO series (measurement, tags, host, name, uuid, vmid, devtype, device, source, sink, first_ts, last_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
    )?
    .execute(params![
        measurement,
        tag_text,
        t("host"),
        t("name"),
        t("uuid"),
        t("VMID"),
        t("devtype"),
        t("device"),
        t("source"),
        t("sink"),
        ts
    ])?;
    Ok(tx.last_insert_rowid())
}
