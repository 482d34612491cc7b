//! The embedded backend: this agent's history file, read through read-only SQLite connections
//! (never a lock the collection path holds).

use rusqlite::Connection;

use super::{QueryError, SourceInfo};
use crate::serve::SharedLive;
use crate::store::overview::{self, Capacity, TopBy, TopVm, Trend, VmWindow};
use crate::store::query::{self, AgentHistory, Fleet, VmDetail};
use crate::store::schema;

/// Reads the history file the running pipeline writes (found through the live view, which a
/// reload replaces).
pub struct Embedded {
    live: SharedLive,
}

impl Embedded {
    /// A reader of the history file `live` names.
    pub fn new(live: SharedLive) -> Embedded {
        Embedded { live }
    }

    /// The history file.
    pub fn info(&self) -> SourceInfo {
        let location = self
            .live
            .read()
            .ok()
            .and_then(|l| l.store_path.clone())
            .map_or_else(
                || "history disabled".to_owned(),
                |p| p.display().to_string(),
            );
        SourceInfo {
            kind: "embedded",
            location,
        }
    }

    /// Runs `f` on a read-only connection to the history file.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, QueryError> {
        let path = self.live.read().ok().and_then(|l| l.store_path.clone());
        let Some(path) = path else {
            return Err(QueryError::Unavailable(
                "history is disabled ([store] enabled = false), so there is nothing to chart; enable [store] to keep history, or read a central InfluxDB 3 with [web.source]".into(),
            ));
        };
        let shown = path.display().to_string();
        if !path.exists() {
            return Err(QueryError::Unavailable(format!(
                "no history yet: {shown} does not exist; it is created with the first collection cycle"
            )));
        }
        let conn = schema::open_ro(&path).map_err(|e| {
            QueryError::Unavailable(format!("cannot read the history store {shown}: {e}"))
        })?;
        f(&conn).map_err(|e| {
            QueryError::Unavailable(format!("cannot read the history store {shown}: {e}"))
        })
    }

    /// Each host's newest `vm_host` values.
    pub fn host_capacity(
        &self,
        now: i64,
    ) -> Result<std::collections::BTreeMap<String, Capacity>, QueryError> {
        self.with_db(|c| overview::host_capacity(c, now))
    }

    /// See [`super::Source::fleet`].
    pub fn fleet(&self, now: i64) -> Result<Fleet, QueryError> {
        self.with_db(|c| query::fleet(c, now))
    }

    /// See [`super::Source::vm_detail`].
    pub fn vm_detail(
        &self,
        host: &str,
        uuid: &str,
        now: i64,
        range: i64,
    ) -> Result<Option<VmDetail>, QueryError> {
        self.with_db(|c| query::vm_detail(c, host, uuid, now, range))
    }

    /// Every VM series of each host's latest cycle and each host's newest `vm_host` line, for
    /// `/metrics`.
    pub fn latest_vm_series(&self, now: i64) -> Result<Vec<query::Latest>, QueryError> {
        self.with_db(|c| {
            let mut out = query::latest_vm_series(c, now)?;
            for (host, (_, values)) in overview::latest_hosts(c, now)? {
                out.push(query::Latest {
                    measurement: crate::schema::vm_host::MEASUREMENT.name.into(),
                    host,
                    name: String::new(),
                    uuid: String::new(),
                    devtype: None,
                    device: None,
                    fields: values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                });
            }
            Ok(out)
        })
    }

    /// See [`super::Source::agent`].
    pub fn agent(&self, now: i64) -> Result<AgentHistory, QueryError> {
        self.with_db(|c| query::agent(c, now))
    }

    /// See [`overview::cpu_trends`].
    pub fn cpu_trends(
        &self,
        now: i64,
        range: i64,
        buckets: i64,
    ) -> Result<std::collections::BTreeMap<String, Trend>, QueryError> {
        self.with_db(|c| overview::cpu_trends(c, now, range, buckets))
    }

    /// See [`overview::vm_windows`].
    pub fn vm_windows(&self, now: i64, from: i64) -> Result<Vec<VmWindow>, QueryError> {
        self.with_db(|c| overview::vm_windows(c, now, from))
    }

    /// See [`overview::top`].
    pub fn top(
        &self,
        now: i64,
        by: TopBy,
        range: i64,
        only: Option<&str>,
    ) -> Result<Vec<TopVm>, QueryError> {
        self.with_db(|c| overview::top(c, now, by, range, only))
    }
}
