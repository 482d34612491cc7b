//! The embedded history: every cycle vmtel collects, kept compressed in a SQLite file so the
//! dashboard and `/metrics` work with no database server at all.
//!
//! The data flow, in modules:
//!
//! * [`layout`]: what is kept of a typed cycle: series (a VM, a NIC, a disk, a source, a sink)
//!   with integer columns from the schema table; counters only, rates computed when read.
//! * [`ingest`]: the [`StoreSink`]: typed batches into the uncompressed [`head`], one
//!   transaction per cycle.
//! * [`compact`]: the head into compressed per-series chunks ([`codec`]) and 1-minute roll-ups;
//!   small chunks merged into larger ones.
//! * [`retention`]: chunks older than `retention_raw` / `retention_rollup`, and the oldest
//!   whenever the file nears `max_size`.
//! * [`read`], [`derived`], [`query`]: what the web server reads (fleet, one VM's charts, vmtel's
//!   own health, `/metrics`).
//! * [`schema`]: the tables, opening the file, and what happens to a corrupt or old one.
//! * [`series`]: a series' identity → its row, in a few bytes per live series.
//!
//! The store is a [`crate::deliver::Sink`]: it runs on its own thread behind the hub's bounded
//! queue, so a slow or full disk never delays collection. Its problems are logged, counted in
//! [`StoreStatus`] and shown by the dashboard; collection goes on.

pub mod codec;
pub mod compact;
pub mod derived;
pub mod error;
pub mod head;
pub mod ingest;
pub mod layout;
pub mod overview;
pub mod query;
pub mod read;
pub mod retention;
pub mod schema;
pub mod series;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::logging::episode::Episode;

pub use ingest::StoreSink;

/// `[store]`: the embedded history.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Keep history at all (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The SQLite file (default `<state_dir>/history.db`).
    pub path: Option<PathBuf>,
    /// How long raw points are kept (default 7 days).
    #[serde(default = "default_raw", with = "humantime_serde")]
    pub retention_raw: Duration,
    /// How long 1-minute averages are kept (default 30 days).
    #[serde(default = "default_rollup", with = "humantime_serde")]
    pub retention_rollup: Duration,
    /// The most the file may use (default 1 GiB); the oldest data goes first.
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
}

fn yes() -> bool {
    true
}

fn default_raw() -> Duration {
    Duration::from_secs(7 * 86_400)
}

fn default_rollup() -> Duration {
    Duration::from_secs(30 * 86_400)
}

fn default_max_size() -> ByteSize {
    ByteSize::gib(1)
}

/// The smallest `max_size` accepted: the schema and a few cycles must fit.
pub const MIN_MAX_SIZE: u64 = 64 * 1024;

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            enabled: true,
            path: None,
            retention_raw: default_raw(),
            retention_rollup: default_rollup(),
            max_size: default_max_size(),
        }
    }
}

impl StoreConfig {
    /// The file to use: `path`, else `history.db` in `state_dir`.
    pub fn file(&self, state_dir: &Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| state_dir.join("history.db"))
    }

    /// Every problem with these options, phrased with a fix.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            p.push("store.path is empty; remove it (the default is history.db in state_dir) or set a file path".into());
        }
        if self.retention_raw < Duration::from_secs(60) {
            p.push("store.retention_raw is below 1 minute; use e.g. \"7d\"".into());
        }
        if self.retention_rollup < Duration::from_secs(3600) {
            p.push("store.retention_rollup is below 1 hour; use e.g. \"30d\"".into());
        }
        if self.max_size.as_u64() < MIN_MAX_SIZE {
            p.push(format!(
                "store.max_size = {} is too small; use at least \"64 KiB\", e.g. \"1 GiB\"",
                self.max_size
            ));
        }
        p
    }
}

/// The store's health, shared between its sink thread, the web server and `/metrics`.
#[derive(Debug, Default)]
pub struct StoreStatus {
    /// Transactions committed (about one per cycle of each source).
    pub batches: AtomicU64,
    /// Values written (one per stored column of a series' row).
    pub points: AtomicU64,
    /// Failures: writes (their transaction rolled back), opening the file, retention.
    pub errors: AtomicU64,
    /// Bytes the file uses (pages in use), as of the last check.
    pub used_bytes: AtomicU64,
    /// Oldest raw point kept, ms since the epoch (0: none).
    pub oldest_raw_ms: AtomicU64,
    /// The file in use.
    pub path: Mutex<Option<PathBuf>>,
    /// The failure running now (or within [`ERROR_HOLD`]), with a fix: see
    /// [`StoreStatus::last_error`].
    failing: Mutex<Episode>,
    /// When the last error happened.
    failed_at: Mutex<Option<Instant>>,
}

/// How long an error stays shown after it last happened, while writes succeed again.
pub const ERROR_HOLD: Duration = Duration::from_secs(60);

/// A snapshot of [`StoreStatus`], as the JSON API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// The file in use.
    pub path: Option<String>,
    /// Transactions committed.
    pub batches: u64,
    /// Points written.
    pub points: u64,
    /// Writes that failed.
    pub errors: u64,
    /// Bytes the file uses.
    pub used_bytes: u64,
    /// Oldest raw point kept, ms since the epoch.
    pub oldest_raw_ms: Option<u64>,
    /// The current error, if writing fails now.
    pub last_error: Option<String>,
}

impl StoreStatus {
    /// Records a failure (and logs it when it differs from the last one).
    pub fn fail(&self, msg: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut t) = self.failed_at.lock() {
            *t = Some(Instant::now());
        }
        if let Ok(mut g) = self.failing.lock() {
            if g.occur(&msg) {
                tracing::error!("{msg}");
            }
        }
    }

    /// The last error, with a fix, if the store is failing now (or failed within
    /// [`ERROR_HOLD`]).
    pub fn last_error(&self) -> Option<String> {
        self.failing
            .lock()
            .ok()
            .and_then(|g| g.current().map(str::to_owned))
    }

    /// Records that writing works (again). The last error stays shown until writes have
    /// succeeded for [`ERROR_HOLD`] since it happened: a store at its size bound fails a batch,
    /// frees room and succeeds with the next, and that must read as one lasting condition, not
    /// as an error that comes and goes (and is logged) every cycle.
    pub fn ok(&self) {
        self.ok_at(Instant::now());
    }

    fn ok_at(&self, now: Instant) {
        let recent = self
            .failed_at
            .lock()
            .ok()
            .and_then(|t| *t)
            .is_some_and(|t| now.saturating_duration_since(t) < ERROR_HOLD);
        if recent {
            return;
        }
        if let Ok(mut g) = self.failing.lock() {
            if g.end().is_some() {
                tracing::info!("history store writes again");
            }
        }
    }

    /// A snapshot for the API.
    pub fn view(&self) -> StatusView {
        let oldest = self.oldest_raw_ms.load(Ordering::Relaxed);
        StatusView {
            path: self
                .path
                .lock()
                .ok()
                .and_then(|p| p.as_ref().map(|p| p.display().to_string())),
            batches: self.batches.load(Ordering::Relaxed),
            points: self.points.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            used_bytes: self.used_bytes.load(Ordering::Relaxed),
            oldest_raw_ms: (oldest > 0).then_some(oldest),
            last_error: self.last_error(),
        }
    }
}

/// Everything the store sink needs, built from the configuration.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// The SQLite file.
    pub path: PathBuf,
    /// Raw retention.
    pub retention_raw: Duration,
    /// Roll-up retention.
    pub retention_rollup: Duration,
    /// Size bound in bytes.
    pub max_size: u64,
    /// Shared health.
    pub status: Arc<StoreStatus>,
}

#[cfg(test)]
mod status_tests {
    use super::{StoreStatus, ERROR_HOLD};
    use std::time::{Duration, Instant};

    fn shown(s: &StoreStatus) -> Option<String> {
        s.view().last_error
    }

    #[test]
    fn an_error_stays_shown_while_failures_recur_and_clears_after_the_hold() {
        let s = StoreStatus::default();
        s.fail("history store is full".into());
        // A success right after (room was made) does not hide the condition.
        s.ok();
        assert_eq!(shown(&s).as_deref(), Some("history store is full"));
        s.fail("history store is full".into());
        s.ok();
        assert_eq!(s.view().errors, 2);
        assert!(shown(&s).is_some());
        // Writes that keep succeeding for the hold period clear it.
        s.ok_at(Instant::now() + ERROR_HOLD + Duration::from_secs(1));
        assert_eq!(shown(&s), None);
    }

    #[test]
    fn success_without_a_failure_shows_nothing() {
        let s = StoreStatus::default();
        s.ok();
        assert_eq!(shown(&s), None);
    }
}
