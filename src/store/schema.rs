//! The tables of the history file, and opening it.
//!
//! ```text
//! series    one row per measurement + tag set (host, name, uuid, device... pulled out for queries)
//! fields    field names, numbered
//! points    raw values:        (series_id, ts, field_id) -> value          (ts: ms since the epoch)
//! rollup_1m 1-minute roll-ups: (series_id, ts, field_id) -> sum, n, min, max
//! devices   device identity:   (host, uuid, devtype, device) -> mac, path, last_ts
//! ```
//!
//! `points` and `rollup_1m` are clustered by series then time, so one VM's chart over a range
//! and the retention of one series are both range scans.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

/// The writer's page cache, KiB (SQLite's default is 2000 per connection). A batch touches the
/// newest leaf page of every series, spread over the whole `points` tree, far more than any
/// affordable cache holds, so the cache serves the upper levels of the trees and pages touched
/// twice within a batch; a larger one buys little CPU (measured at 1,000 VMs: 2 MiB vs 512 KiB
/// under 10 % of the store's CPU, 512 vs 256 KiB 297 vs 294 ms per cycle; 128 KiB costs 15 %
/// more, 328 vs 286 ms) for memory that counts in vmtel's RSS.
pub const WRITER_CACHE_KIB: i64 = 256;

/// The page cache of each reader connection (one per web request), KiB: the dashboard's
/// queries are point and range lookups that read each page about once.
pub const READER_CACHE_KIB: i64 = 256;

/// Bumped when the tables change incompatibly.
pub const SCHEMA_VERSION: i64 = 1;

const DDL: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL,
    tags TEXT NOT NULL,
    host TEXT, name TEXT, uuid TEXT, vmid TEXT, devtype TEXT, device TEXT, source TEXT, sink TEXT,
    first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    UNIQUE (measurement, tags)
);
CREATE INDEX IF NOT EXISTS series_vm ON series (host, uuid, measurement);
CREATE INDEX IF NOT EXISTS series_last ON series (measurement, last_ts);
CREATE TABLE IF NOT EXISTS fields (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS points (
    series_id INTEGER NOT NULL, ts INTEGER NOT NULL, field_id INTEGER NOT NULL, value,
    PRIMARY KEY (series_id, ts, field_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_1m (
    series_id INTEGER NOT NULL, ts INTEGER NOT NULL, field_id INTEGER NOT NULL,
    sum REAL NOT NULL, n INTEGER NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
    PRIMARY KEY (series_id, ts, field_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (
    host TEXT NOT NULL, uuid TEXT NOT NULL, devtype TEXT NOT NULL, device TEXT NOT NULL,
    mac TEXT, path TEXT, last_ts INTEGER NOT NULL,
    PRIMARY KEY (host, uuid, devtype, device)
) WITHOUT ROWID;
";

/// Why the history file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file is not a SQLite database (or is damaged); it was moved aside.
    #[error(
        "history store {path} was damaged ({cause}); moved it to {moved} and started a new one"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// What SQLite said.
        cause: String,
        /// Where the damaged file went.
        moved: String,
    },
    /// Anything else, with a fix.
    #[error("cannot open history store {path}: {cause}; {fix}")]
    Other {
        /// The file.
        path: String,
        /// What failed.
        cause: String,
        /// What to do.
        fix: &'static str,
    },
}

fn other(path: &Path, cause: impl ToString, fix: &'static str) -> OpenError {
    OpenError::Other {
        path: path.display().to_string(),
        cause: cause.to_string(),
        fix,
    }
}

const FIX_DIR: &str =
    "check that the directory exists and is writable by vmtel, or set [store] path";

/// Opens (creating if needed) the history file for writing, with the schema in place and the
/// file bounded to `max_size` bytes. A file SQLite cannot read is moved to `PATH.corrupt-<ms>`
/// and a new one started: the error says so, and history goes on.
pub fn open_rw(path: &Path, max_size: u64) -> Result<(Connection, Option<OpenError>), OpenError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| other(path, e, FIX_DIR))?;
    }
    match try_open(path, max_size) {
        Ok(c) => Ok((c, None)),
        Err(e) if is_corrupt(&e) => {
            let moved = corrupt_name(path);
            std::fs::rename(path, &moved).map_err(|re| {
                other(
                    path,
                    format!("{e}, and moving it aside failed: {re}"),
                    "move or delete the damaged file by hand",
                )
            })?;
            for suffix in ["-wal", "-shm"] {
                let mut side = path.as_os_str().to_owned();
                side.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(side));
            }
            let warning = OpenError::Corrupt {
                path: path.display().to_string(),
                cause: e.to_string(),
                moved: moved.display().to_string(),
            };
            let c = try_open(path, max_size).map_err(|e| other(path, e, FIX_DIR))?;
            Ok((c, Some(warning)))
        }
        Err(e) if is_full(&e) => Err(other(path, e, "free disk space or raise [store] max_size")),
        Err(e) => Err(other(path, e, FIX_DIR)),
    }
}

fn corrupt_name(path: &Path) -> PathBuf {
    let ms = crate::collect::wall_ns() / 1_000_000;
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".corrupt-{ms}"));
    PathBuf::from(s)
}

/// True for SQLite's "not a database" and "malformed" errors.
pub fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

/// True for "database or disk is full" (the size bound, or the disk itself).
pub fn is_full(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull))
}

fn try_open(path: &Path, max_size: u64) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Must precede the first table; ignored on an existing file.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    // Reading the schema fails here on a file that is not a database.
    conn.execute_batch(DDL)?;
    let version: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
            r.get(0)
        })
        .ok();
    match version {
        None => {
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?1)",
                [SCHEMA_VERSION.to_string()],
            )?;
        }
        Some(v) if v == SCHEMA_VERSION.to_string() => {}
        Some(v) => {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB),
                Some(format!(
                    "schema version {v}, this vmtel reads version {SCHEMA_VERSION}"
                )),
            ))
        }
    }
    set_max_size(&conn, max_size)?;
    Ok(conn)
}

/// Bounds the main file to `max_size` bytes (SQLite then answers "database or disk is full").
pub fn set_max_size(conn: &Connection, max_size: u64) -> rusqlite::Result<()> {
    let page = pragma_u64(conn, "page_size")?;
    let pages = (max_size / page.max(512)).max(16);
    conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
    Ok(())
}

/// Opens the history file read-only, for the web server.
pub fn open_ro(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(2))?;
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
    Ok(conn)
}

/// Bytes in use: pages that hold data (not free pages waiting for reuse).
pub fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let page = pragma_u64(conn, "page_size")?;
    let count = pragma_u64(conn, "page_count")?;
    let free = pragma_u64(conn, "freelist_count")?;
    Ok(count.saturating_sub(free) * page)
}

fn pragma_u64(conn: &Connection, name: &str) -> rusqlite::Result<u64> {
    let v: i64 = conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?;
    Ok(u64::try_from(v).unwrap_or(0))
}
