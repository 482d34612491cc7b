//! The durable spool: batches accepted for one output, on disk until the server acknowledges
//! them.
//!
//! It is an SQLite database in WAL mode (one file per output): a table of rows
//! `(id, created_ns, lines, bytes, body, precision)` in acceptance order. Each row records the
//! timestamp precision its lines were written with, so a row is sent with the precision it was
//! written in even when `precision` changed in between (a spool from before that column has
//! its rows' precision read from the magnitude of their timestamps). The sink thread appends rows and
//! commits them in groups (one fsync per group with `synchronous = FULL`); the sender thread
//! reads the oldest rows and deletes them once the server has acknowledged them. SQLite's WAL
//! makes every commit atomic: a `kill -9` (or a torn write) at any moment leaves the rows of
//! the last completed commit and nothing half-written.
//!
//! Bounds: beyond `max_bytes` of line protocol, or for rows older than `max_age`, the oldest
//! rows are dropped, counted and logged.
//!
//! A file that fails `PRAGMA quick_check` (or is not a database at all) is moved aside as
//! `NAME.corrupt-<unix time>`; every row that can still be read from it is copied, in order, into
//! a fresh spool, and the loss is reported. vmtel never panics on a bad spool.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::config::SpoolSync;
use super::stats::DeliveryStats;
use crate::encode::Precision;

/// How long a connection waits for the other one's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Consecutive unreadable ids after which salvaging a corrupt file stops.
const SALVAGE_GAP: i64 = 100_000;

/// Limits and durability of a spool.
#[derive(Debug, Clone, Copy)]
pub struct SpoolOptions {
    /// Most bytes of line protocol kept; the oldest rows are dropped beyond it.
    pub max_bytes: u64,
    /// Rows older than this are dropped.
    pub max_age: Option<Duration>,
    /// SQLite `synchronous` level.
    pub sync: SpoolSync,
}

/// One spooled batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Position in acceptance order.
    pub id: i64,
    /// When it was accepted, ns since the epoch.
    pub created_ns: i64,
    /// Number of lines in `body`.
    pub lines: u64,
    /// Line protocol, newline-terminated lines.
    pub body: String,
    /// The precision of the timestamps in `body`.
    pub precision: Precision,
}

/// A batch to append.
#[derive(Debug, Clone, Copy)]
pub struct NewRow<'a> {
    /// When it was accepted, ns since the epoch.
    pub created_ns: i64,
    /// Line protocol, newline-terminated lines.
    pub body: &'a str,
    /// Number of lines in `body`.
    pub lines: u64,
    /// The precision of the timestamps in `body`.
    pub precision: Precision,
}

/// What happened to a spool file that failed its check at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvage {
    /// Why the file was judged corrupt.
    pub reason: String,
    /// Where the damaged file was moved.
    pub moved_to: PathBuf,
    /// Rows copied into the fresh spool.
    pub rows: u64,
    /// Lines in those rows.
    pub lines: u64,
    /// Ids that could not be read (an estimate of the rows lost).
    pub unreadable: u64,
}

/// A connection to a spool file. The sink thread and the sender thread each hold one.
pub struct Spool {
    conn: Connection,
    path: PathBuf,
    options: SpoolOptions,
    stats: Arc<DeliveryStats>,
    in_tx: bool,
    pending_rows: i64,
    pending_bytes: i64,
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("spool {}: {what}: {e}", path.display()))
}

fn connect(path: &Path, options: &SpoolOptions) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Must precede the first table of a new file; ignored on an existing one.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode=WAL refused (the file system may not support it; got {mode})"
        )));
    }
    let sync = match options.sync {
        SpoolSync::Full => "FULL",
        SpoolSync::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS batch (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             created_ns INTEGER NOT NULL,
             lines INTEGER NOT NULL,
             bytes INTEGER NOT NULL,
             body BLOB NOT NULL,
             precision TEXT
         );",
    )?;
    if !has_precision_column(&conn)? {
        // A spool written before rows recorded their precision: NULL until sent.
        conn.execute_batch("ALTER TABLE batch ADD COLUMN precision TEXT")?;
    }
    Ok(conn)
}

fn has_precision_column(conn: &Connection) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('batch')")?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
    for n in names {
        if n? == "precision" {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The precision a row was written with: the recorded one, else (a row spooled before rows
/// recorded it) read from the magnitude of its first timestamp, as InfluxDB 3's `auto` does.
fn row_precision(recorded: Option<&str>, body: &str) -> Precision {
    match recorded {
        Some("s") => return Precision::Seconds,
        Some("ms") => return Precision::Millis,
        Some("us") => return Precision::Micros,
        Some("ns") => return Precision::Nanos,
        _ => {}
    }
    let ts = body
        .lines()
        .next()
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, t)| t.trim().parse::<i64>().ok())
        .unwrap_or(0)
        .unsigned_abs();
    match ts {
        0..100_000_000_000 => Precision::Seconds,
        100_000_000_000..100_000_000_000_000 => Precision::Millis,
        100_000_000_000_000..100_000_000_000_000_000 => Precision::Micros,
        _ => Precision::Nanos,
    }
}

/// `Ok(())` if `path` is a healthy spool, else why not.
fn check(path: &Path) -> Result<(), String> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| e.to_string())?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| e.to_string())?;
    let mut stmt = conn
        .prepare("PRAGMA quick_check")
        .map_err(|e| e.to_string())?;
    let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let s: String = row.get(0).map_err(|e| e.to_string())?;
        if s != "ok" {
            problems.push(s);
        }
        if problems.len() >= 3 {
            break;
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let has_table: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'batch'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| e.to_string())?;
    if has_table.is_none() {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if tables > 0 {
            return Err("an SQLite file without vmtel's batch table (not a vmtel spool)".into());
        }
    }
    Ok(())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn now_ns() -> i64 {
    crate::collect::wall_ns()
}

impl Spool {
    /// Opens (creating if needed) the spool at `path` for appending, checking it first. A
    /// corrupt file is moved aside and what can be read of it is copied into a fresh spool;
    /// the returned [`Salvage`] says what happened. Loads the backlog into `stats`.
    pub fn open(
        path: &Path,
        options: SpoolOptions,
        stats: Arc<DeliveryStats>,
    ) -> io::Result<(Spool, Option<Salvage>)> {
        let mut salvage = None;
        if path.exists() {
            if let Err(reason) = check(path) {
                salvage = Some(Self::salvage(path, &options, reason)?);
            }
        }
        let spool = Self::attach(path, options, Arc::clone(&stats))?;
        spool.load_backlog()?;
        Ok((spool, salvage))
    }

    /// A second connection to an already opened spool (for the sender thread).
    pub fn attach(
        path: &Path,
        options: SpoolOptions,
        stats: Arc<DeliveryStats>,
    ) -> io::Result<Spool> {
        let conn = connect(path, &options).map_err(|e| err(path, "cannot open", e))?;
        Ok(Spool {
            conn,
            path: path.to_owned(),
            options,
            stats,
            in_tx: false,
            pending_rows: 0,
            pending_bytes: 0,
        })
    }

    /// The spool file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets the backlog counters from the file, while this connection holds the write lock:
    /// no commit of the sink can fall between the count and the setting (a sink's commit
    /// changes the counters under the same lock). For a sender that takes over a spool the
    /// previous pipeline's sink and sender were still changing (a reload).
    pub fn recount_backlog(&self) -> io::Result<()> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| err(&self.path, "cannot recount the backlog", e))?;
        let counted = self.load_backlog();
        let _ = self.conn.execute_batch("ROLLBACK");
        counted
    }

    /// Sets the backlog counters from the file (at open, before anything else uses them).
    pub fn load_backlog(&self) -> io::Result<()> {
        let (rows, bytes, oldest): (i64, i64, Option<i64>) = self
            .conn
            .query_row(
                "SELECT count(*), COALESCE(sum(bytes), 0), min(created_ns) FROM batch",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| err(&self.path, "cannot read the backlog", e))?;
        self.stats
            .backlog_batches
            .store(u64::try_from(rows).unwrap_or(0), Ordering::Relaxed);
        self.stats
            .backlog_bytes
            .store(u64::try_from(bytes).unwrap_or(0), Ordering::Relaxed);
        self.stats
            .oldest_ns
            .store(oldest.unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }

    fn salvage(path: &Path, options: &SpoolOptions, reason: String) -> io::Result<Salvage> {
        let stamp = now_ns() / 1_000_000_000;
        let moved_to = sibling(path, &format!(".corrupt-{stamp}"));
        std::fs::rename(path, &moved_to).map_err(|e| {
            err(
                path,
                &format!(
                    "is corrupt ({reason}) and cannot be moved aside to {}",
                    moved_to.display()
                ),
                e,
            )
        })?;
        for suffix in ["-wal", "-shm"] {
            let from = sibling(path, suffix);
            if from.exists() {
                let _ = std::fs::rename(&from, sibling(&moved_to, suffix));
            }
        }
        let fresh = connect(path, options).map_err(|e| err(path, "cannot create", e))?;
        let mut report = Salvage {
            reason,
            moved_to: moved_to.clone(),
            rows: 0,
            lines: 0,
            unreadable: 0,
        };
        // Anything readable from the damaged file, in id order; a read error skips one id.
        if let Ok(old) = Connection::open_with_flags(
            &moved_to,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ) {
            let max_id: i64 = old
                .query_row("SELECT max(id) FROM batch", [], |r| r.get(0))
                .ok()
                .flatten()
                .unwrap_or(i64::MAX);
            let mut cursor = 0i64;
            let mut gap = 0i64;
            let tx = fresh
                .unchecked_transaction()
                .map_err(|e| err(path, "cannot write the salvaged rows", e))?;
            while cursor < max_id && gap < SALVAGE_GAP {
                let res = copy_from(&old, &tx, cursor, &mut report);
                match res {
                    Ok(None) => break,
                    Ok(Some(last)) => {
                        cursor = last;
                        gap = 0;
                    }
                    Err(last) => {
                        // Skip the id after the last good one.
                        cursor = last.max(cursor) + 1;
                        gap += 1;
                        report.unreadable += 1;
                    }
                }
            }
            tx.commit()
                .map_err(|e| err(path, "cannot write the salvaged rows", e))?;
        }
        Ok(report)
    }

    /// Appends `rows` (created time, line protocol, line count) in one transaction, applies
    /// the size and age bounds and commits: once this returns `Ok`, the rows survive a crash
    /// (and, with `synchronous = FULL`, a power loss). On error nothing was added. Returns the
    /// lines dropped to respect the bounds.
    pub fn append(&mut self, rows: &[NewRow<'_>]) -> io::Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| err(&self.path, "cannot begin a transaction", e))?;
        self.in_tx = true;
        self.pending_rows = 0;
        self.pending_bytes = 0;
        for row in rows {
            let bytes = row.body.len() as i64;
            let res = self.conn.execute(
                "INSERT INTO batch (created_ns, lines, bytes, body, precision) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    row.created_ns,
                    row.lines as i64,
                    bytes,
                    row.body.as_bytes(),
                    row.precision.as_str()
                ],
            );
            if let Err(e) = res {
                self.rollback();
                return Err(err(&self.path, "cannot append", e));
            }
            self.pending_rows += 1;
            self.pending_bytes += bytes;
        }
        self.commit()
    }

    fn rollback(&mut self) {
        if self.in_tx {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.in_tx = false;
        }
    }

    fn commit(&mut self) -> io::Result<u64> {
        if !self.in_tx {
            return Ok(0);
        }
        let dropped = match self.enforce_bounds() {
            Ok(d) => d,
            Err(e) => {
                self.rollback();
                return Err(e);
            }
        };
        // The counters change while this connection holds the write lock, so that a recount
        // ([`Spool::recount_backlog`], which takes the lock too) sees either the rows and the
        // counters of this commit or neither.
        let was_empty = self.stats.backlog_batches.load(Ordering::Relaxed) == 0;
        let added = (
            self.pending_rows - dropped.0,
            self.pending_bytes - dropped.2,
        );
        self.stats.backlog_add(added.0, added.1);
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            self.stats.backlog_add(-added.0, -added.1);
            self.rollback();
            return Err(err(&self.path, "cannot commit", e));
        }
        self.in_tx = false;
        if was_empty || dropped.0 > 0 {
            self.refresh_oldest();
        }
        self.stats
            .dropped_lines
            .fetch_add(dropped.1, Ordering::Relaxed);
        Ok(dropped.1)
    }

    /// Deletes the oldest rows beyond the size bound and rows past the age bound; returns
    /// (rows, lines, bytes) deleted that were committed before (not the pending ones).
    fn enforce_bounds(&mut self) -> io::Result<(i64, u64, i64)> {
        let mut dropped = (0i64, 0u64, 0i64);
        if let Some(age) = self.options.max_age {
            let cutoff = now_ns().saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX));
            let oldest: Option<i64> = self
                .conn
                .query_row(
                    "SELECT created_ns FROM batch ORDER BY id LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| err(&self.path, "cannot read", e))?;
            if oldest.is_some_and(|o| o < cutoff) {
                let d = self.delete_where("created_ns < ?1", cutoff)?;
                dropped = (dropped.0 + d.0, dropped.1 + d.1, dropped.2 + d.2);
            }
        }
        let committed = self.stats.backlog_bytes.load(Ordering::Relaxed) as i64 - dropped.2;
        let mut excess = committed + self.pending_bytes - self.options.max_bytes as i64;
        if excess > 0 {
            // The newest id whose deletion (with everything older) frees enough.
            let mut stmt = self
                .conn
                .prepare_cached("SELECT id, bytes FROM batch ORDER BY id")
                .map_err(|e| err(&self.path, "cannot read", e))?;
            let mut rows = stmt
                .query([])
                .map_err(|e| err(&self.path, "cannot read", e))?;
            let mut upto = None;
            while let Some(r) = rows.next().map_err(|e| err(&self.path, "cannot read", e))? {
                let id: i64 = r.get(0).map_err(|e| err(&self.path, "cannot read", e))?;
                let b: i64 = r.get(1).map_err(|e| err(&self.path, "cannot read", e))?;
                excess -= b;
                upto = Some(id);
                if excess <= 0 {
                    break;
                }
            }
            drop(rows);
            drop(stmt);
            if let Some(id) = upto {
                let d = self.delete_where("id <= ?1", id)?;
                dropped = (dropped.0 + d.0, dropped.1 + d.1, dropped.2 + d.2);
            }
        }
        Ok(dropped)
    }

    fn delete_where(&self, cond: &str, arg: i64) -> io::Result<(i64, u64, i64)> {
        let sql = format!("DELETE FROM batch WHERE {cond} RETURNING lines, bytes");
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(|e| err(&self.path, "cannot delete", e))?;
        let mut rows = stmt
            .query(params![arg])
            .map_err(|e| err(&self.path, "cannot delete", e))?;
        let mut d = (0i64, 0u64, 0i64);
        while let Some(r) = rows
            .next()
            .map_err(|e| err(&self.path, "cannot delete", e))?
        {
            let lines: i64 = r.get(0).map_err(|e| err(&self.path, "cannot delete", e))?;
            let bytes: i64 = r.get(1).map_err(|e| err(&self.path, "cannot delete", e))?;
            d.0 += 1;
            d.1 += u64::try_from(lines).unwrap_or(0);
            d.2 += bytes;
        }
        Ok(d)
    }

    fn refresh_oldest(&self) {
        let oldest: Option<i64> = self
            .conn
            .query_row(
                "SELECT created_ns FROM batch ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .ok()
            .flatten();
        self.stats
            .oldest_ns
            .store(oldest.unwrap_or(0), Ordering::Relaxed);
    }

    /// The oldest committed rows, in order, as many as fit in `max_lines` and `max_bytes`
    /// (always at least one row if any waits), all of the first row's precision; the flag is
    /// true when a row of another precision stopped the list.
    pub fn oldest(&self, max_lines: u64, max_bytes: u64) -> io::Result<(Vec<Row>, bool)> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, created_ns, lines, body, precision FROM batch ORDER BY id")
            .map_err(|e| err(&self.path, "cannot read", e))?;
        let mut rows = stmt
            .query([])
            .map_err(|e| err(&self.path, "cannot read", e))?;
        let mut out: Vec<Row> = Vec::new();
        let (mut lines, mut bytes) = (0u64, 0u64);
        while let Some(r) = rows.next().map_err(|e| err(&self.path, "cannot read", e))? {
            let row_lines = u64::try_from(r.get::<_, i64>(2).unwrap_or(0)).unwrap_or(0);
            let body: Vec<u8> = r.get(3).map_err(|e| err(&self.path, "cannot read", e))?;
            let len = body.len() as u64;
            if !out.is_empty() && (lines + row_lines > max_lines || bytes + len > max_bytes) {
                break;
            }
            // Rows are written from `&str`; a damaged one is repaired, not fatal.
            let body = String::from_utf8(body)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            let recorded: Option<String> = r.get(4).unwrap_or(None);
            let precision = row_precision(recorded.as_deref(), &body);
            if out.first().is_some_and(|f: &Row| f.precision != precision) {
                return Ok((out, true));
            }
            lines += row_lines;
            bytes += len;
            out.push(Row {
                id: r.get(0).map_err(|e| err(&self.path, "cannot read", e))?,
                created_ns: r.get(1).map_err(|e| err(&self.path, "cannot read", e))?,
                lines: row_lines,
                body,
                precision,
            });
        }
        Ok((out, false))
    }

    /// Deletes the rows `first..=last` (acknowledged by the server); returns the lines deleted
    /// (rows already dropped by the size bound are not counted twice).
    pub fn delete(&self, first: i64, last: i64) -> io::Result<u64> {
        // Under the write lock, like a commit: the sink's size bound never reads counters
        // that still hold rows already gone.
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| err(&self.path, "cannot delete", e))?;
        let deleted = self.delete_rows(first, last);
        let (n, lines, bytes) = match deleted {
            Ok(d) => d,
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        self.stats.backlog_add(-n, -bytes);
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            self.stats.backlog_add(n, bytes);
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(err(&self.path, "cannot delete", e));
        }
        self.refresh_oldest();
        if self.stats.backlog_batches.load(Ordering::Relaxed) == 0 {
            self.compact();
        }
        Ok(lines)
    }

    /// Deletes rows `first..=last` in the open transaction: (rows, lines, bytes).
    fn delete_rows(&self, first: i64, last: i64) -> io::Result<(i64, u64, i64)> {
        let sql = "DELETE FROM batch WHERE id BETWEEN ?1 AND ?2 RETURNING lines, bytes";
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| err(&self.path, "cannot delete", e))?;
        let mut rows = stmt
            .query(params![first, last])
            .map_err(|e| err(&self.path, "cannot delete", e))?;
        let (mut n, mut lines, mut bytes) = (0i64, 0u64, 0i64);
        while let Some(r) = rows
            .next()
            .map_err(|e| err(&self.path, "cannot delete", e))?
        {
            n += 1;
            lines += u64::try_from(r.get::<_, i64>(0).unwrap_or(0)).unwrap_or(0);
            bytes += r.get::<_, i64>(1).unwrap_or(0);
        }
        Ok((n, lines, bytes))
    }

    /// Gives free pages back to the file system and truncates the WAL when the spool is
    /// empty. Best effort: a busy database is simply left as it is.
    fn compact(&self) {
        // Each step of incremental_vacuum frees one page: step it to the end.
        if let Ok(mut stmt) = self.conn.prepare("PRAGMA incremental_vacuum") {
            if let Ok(mut rows) = stmt.query([]) {
                while let Ok(Some(_)) = rows.next() {}
            }
        }
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }

    /// Rows waiting (from the database, not the counters).
    pub fn count(&self) -> io::Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM batch", [], |r| r.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| err(&self.path, "cannot count", e))
    }
}

/// Copies rows with id > `after` from `old` to `new` until the end (`Ok(None)` if there was
/// nothing, else `Ok(Some(last id))`) or a read error (`Err(last good id)`).
fn copy_from(
    old: &Connection,
    new: &rusqlite::Transaction<'_>,
    after: i64,
    report: &mut Salvage,
) -> Result<Option<i64>, i64> {
    let mut last = after;
    let precision = if has_precision_column(old).unwrap_or(false) {
        "precision"
    } else {
        "NULL"
    };
    let mut stmt = old
        .prepare(&format!(
            "SELECT id, created_ns, lines, bytes, body, {precision} FROM batch WHERE id > ?1 ORDER BY id"
        ))
        .map_err(|_| last)?;
    let mut rows = stmt.query(params![after]).map_err(|_| last)?;
    let mut any = false;
    loop {
        let r = match rows.next() {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(if any { Some(last) } else { None }),
            Err(_) => return Err(last),
        };
        type Cols = (i64, i64, i64, i64, Vec<u8>, Option<String>);
        let row: rusqlite::Result<Cols> = (|| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })();
        let Ok((id, created, lines, bytes, body, precision)) = row else {
            return Err(last);
        };
        last = id;
        any = true;
        let Ok(text) = std::str::from_utf8(&body) else {
            report.unreadable += 1;
            continue;
        };
        if bytes != body.len() as i64 {
            report.unreadable += 1;
            continue;
        }
        let precision = row_precision(precision.as_deref(), text).as_str();
        if new
            .execute(
                "INSERT INTO batch (id, created_ns, lines, bytes, body, precision) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, created, lines, bytes, body, precision],
            )
            .is_ok()
        {
            report.rows += 1;
            report.lines += u64::try_from(lines).unwrap_or(0);
        }
    }
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
