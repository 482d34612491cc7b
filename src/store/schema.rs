//! The tables of the history file, and opening it.
//!
//! ```text
//! meta    schema version
//! series  one row per series: kind (VM, NIC, disk, source, sink), host, key (a VM's UUID, a
//!         source's URI, a sink's name), device; the VM's name, a NIC's MAC, a disk's path;
//!         first and last time seen
//! head    the cycles not compacted yet: (ts, records of every series of one batch)
//! chunks  raw rows of one series over a span of time (codec.rs): level 0 as compacted from
//!         the head (fast encoding, not rolled up yet), level 1 merged and compressed
//! rollups compressed 1-minute roll-ups of one series over a span of time
//! ```
//!
//! Times are ms since the epoch. A file of the first format (one SQLite row per point) is moved
//! aside with one log line and a new file started.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

/// The writer's page cache, KiB (SQLite's default is 2000 per connection). A cycle appends one
/// head row per batch and compaction appends chunks, both at the end of their tables, so a small
/// cache serves them; it counts in vmtel's RSS.
pub const WRITER_CACHE_KIB: i64 = 256;

/// The page cache of each reader connection (one per web request), KiB: the dashboard's
/// queries are point and range lookups that read each page about once.
pub const READER_CACHE_KIB: i64 = 256;

/// Bumped when the tables change incompatibly.
pub const SCHEMA_VERSION: i64 = 2;

const DDL: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    host TEXT NOT NULL,
    key TEXT NOT NULL,
    device TEXT NOT NULL,
    name TEXT, mac TEXT, path TEXT,
    first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    UNIQUE (kind, host, key, device)
);
CREATE TABLE IF NOT EXISTS head (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS head_ts ON head (ts);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL, start_ts INTEGER NOT NULL,
    end_ts INTEGER NOT NULL, rows INTEGER NOT NULL, level INTEGER NOT NULL, data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_series ON chunks (series_id, start_ts);
CREATE INDEX IF NOT EXISTS chunks_end ON chunks (end_ts);
CREATE INDEX IF NOT EXISTS chunks_level ON chunks (level, start_ts);
CREATE TABLE IF NOT EXISTS rollups (
    id INTEGER PRIMARY KEY, series_id INTEGER NOT NULL, start_ts INTEGER NOT NULL,
    end_ts INTEGER NOT NULL, rows INTEGER NOT NULL, data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS rollups_series ON rollups (series_id, start_ts);
CREATE INDEX IF NOT EXISTS rollups_end ON rollups (end_ts);
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
    /// The file was written by an older vmtel in a format this one does not read; it was moved
    /// aside (not an error: one notice).
    #[error("history store {path} is in the format of an older vmtel (version {version}, one row per point); moved it to {moved} and started a new, compressed one (delete the old file once it is no longer needed)")]
    OldFormat {
        /// The file.
        path: String,
        /// Its schema version.
        version: i64,
        /// Where it went.
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
    let mut notice = None;
    if let Some(version) = old_format(path) {
        let moved = aside_name(path, &format!("v{version}"));
        move_aside(path, &moved).map_err(|e| {
            other(
                path,
                format!("it is in the format of an older vmtel ({version}) and moving it aside failed: {e}"),
                "move or delete the old file by hand",
            )
        })?;
        notice = Some(OpenError::OldFormat {
            path: path.display().to_string(),
            version,
            moved: moved.display().to_string(),
        });
    }
    match try_open(path, max_size) {
        Ok(c) => Ok((c, notice)),
        Err(e) if is_corrupt(&e) => {
            let moved = aside_name(path, "corrupt");
            move_aside(path, &moved).map_err(|re| {
                other(
                    path,
                    format!("{e}, and moving it aside failed: {re}"),
                    "move or delete the damaged file by hand",
                )
            })?;
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

fn aside_name(path: &Path, why: &str) -> PathBuf {
    let ms = crate::collect::wall_ns() / 1_000_000;
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{why}-{ms}"));
    PathBuf::from(s)
}

/// Moves the file to `to`, with its WAL (renamed beside it, so nothing committed is lost).
fn move_aside(path: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(path, to)?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        if suffix == "-wal" && side.exists() {
            let mut dest = to.as_os_str().to_owned();
            dest.push(suffix);
            let _ = std::fs::rename(&side, PathBuf::from(dest));
        } else {
            let _ = std::fs::remove_file(side);
        }
    }
    Ok(())
}

/// The schema version of an existing file written by an older vmtel, if it is one.
fn old_format(path: &Path) -> Option<i64> {
    if !path.exists() {
        return None;
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
    let v: String = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
            r.get(0)
        })
        .ok()?;
    v.parse::<i64>().ok().filter(|&v| v < SCHEMA_VERSION)
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

/// Gives free pages back to the file system (`PRAGMA incremental_vacuum`, stepped until done:
/// run as one step it frees a single page).
pub fn vacuum(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached("PRAGMA incremental_vacuum")?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
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
