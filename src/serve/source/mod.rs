//! Where the dashboard's data comes from: one query interface, two backends.
//!
//! * [`embedded`]: this agent's own history file (the default).
//! * [`influxdb3`]: a central InfluxDB 3 that many agents write to, queried with SQL
//!   (time-bounded and aggregated in the database; only latest rows and chart buckets travel).
//!
//! Both answer with the same typed values ([`crate::store::query`]'s `Fleet`, `VmDetail`,
//! `AgentHistory`); the charts of a VM are built by the same code from the same kind of frames,
//! so one VM and range chart the same from either. Every call is blocking: the web server runs
//! it on its blocking pool.

pub mod config;
pub mod embedded;
pub mod hosts;
pub mod influxdb3;
pub mod problems;

use serde::Serialize;

pub use config::{SourceConfig, SourceKind};

use crate::store::overview::{TopBy, TopVm};
use crate::store::query::{AgentHistory, Fleet, VmDetail};
use hosts::HostSummary;
use problems::{Problem, ProblemsConfig};

/// Runs `a` and `b` at the same time (two queries to a database, say) and returns both.
pub fn both<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    std::thread::scope(|scope| {
        let other = scope.spawn(b);
        let first = a();
        match other.join() {
            Ok(second) => (first, second),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Buckets of a host's CPU trend over the last hour.
const TREND_BUCKETS: i64 = 30;
/// The trend's range.
const TREND_RANGE_MS: i64 = 3_600_000;

/// Why a query failed, as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// The data is not there to read (history disabled or not created yet, database server
    /// not answering): 503.
    Unavailable(String),
    /// The database server answered, but refused or failed (token refused, no such database,
    /// a failed query, an answer cut short): 502.
    Upstream(String),
}

impl QueryError {
    /// The message, with the fix.
    pub fn message(&self) -> &str {
        match self {
            QueryError::Unavailable(m) | QueryError::Upstream(m) => m,
        }
    }

    /// The HTTP status the API answers with.
    pub fn status(&self) -> axum::http::StatusCode {
        match self {
            QueryError::Unavailable(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE,
            QueryError::Upstream(_) => axum::http::StatusCode::BAD_GATEWAY,
        }
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// Which source a page reads, for the page to say so.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SourceInfo {
    /// `embedded` or `influxdb3`.
    pub kind: &'static str,
    /// The history file, or the server's URL and database.
    pub location: String,
}

/// The dashboard's data source.
pub enum Source {
    /// This agent's history file.
    Embedded(embedded::Embedded),
    /// A central InfluxDB 3.
    InfluxDb3(Box<influxdb3::InfluxDb3>),
}

impl Source {
    /// The backend `config` asks for; `live` says where the embedded history is and the
    /// collection interval (the agents', for InfluxDB 3).
    pub fn from_config(config: &SourceConfig, live: super::SharedLive) -> Result<Source, String> {
        match config.kind {
            SourceKind::Embedded => Ok(Source::Embedded(embedded::Embedded::new(live))),
            SourceKind::Influxdb3 => {
                let interval = live
                    .read()
                    .map(|l| l.interval)
                    .unwrap_or(std::time::Duration::from_secs(10));
                Ok(Source::InfluxDb3(Box::new(influxdb3::InfluxDb3::new(
                    config, interval,
                )?)))
            }
        }
    }

    /// What it reads.
    pub fn info(&self) -> SourceInfo {
        match self {
            Source::Embedded(e) => e.info(),
            Source::InfluxDb3(i) => i.info(),
        }
    }

    /// Every host and VM seen within the last hour, with their latest values.
    pub fn fleet(&self, now_ms: i64) -> Result<Fleet, QueryError> {
        match self {
            Source::Embedded(e) => e.fleet(now_ms),
            Source::InfluxDb3(i) => i.fleet(now_ms),
        }
    }

    /// One VM's charts over `range_ms` ending at `now_ms`; None if the source has no such VM.
    pub fn vm_detail(
        &self,
        host: &str,
        uuid: &str,
        now_ms: i64,
        range_ms: i64,
    ) -> Result<Option<VmDetail>, QueryError> {
        match self {
            Source::Embedded(e) => e.vm_detail(host, uuid, now_ms, range_ms),
            Source::InfluxDb3(i) => i.vm_detail(host, uuid, now_ms, range_ms),
        }
    }

    /// vmtel's own health over the last hour (`vmtel_internal`).
    pub fn agent(&self, now_ms: i64) -> Result<AgentHistory, QueryError> {
        match self {
            Source::Embedded(e) => e.agent(now_ms),
            Source::InfluxDb3(i) => i.agent(now_ms),
        }
    }

    /// Every host with its VMs by state, allocation, use now and a CPU trend; a host silent
    /// for more than `cfg.silent_intervals` intervals of `interval_ms` is flagged.
    pub fn hosts(
        &self,
        now_ms: i64,
        interval_ms: i64,
        cfg: &ProblemsConfig,
    ) -> Result<Vec<HostSummary>, QueryError> {
        let ((fleet, capacity), trends) = both(
            || {
                both(
                    || self.fleet(now_ms),
                    || match self {
                        Source::Embedded(e) => e.host_capacity(now_ms),
                        Source::InfluxDb3(i) => i.host_capacity(now_ms),
                    },
                )
            },
            || match self {
                Source::Embedded(e) => e.cpu_trends(now_ms, TREND_RANGE_MS, TREND_BUCKETS),
                Source::InfluxDb3(i) => i.cpu_trends(now_ms, TREND_RANGE_MS, TREND_BUCKETS),
            },
        );
        let (fleet, capacity, trends) = (fleet?, capacity?, trends?);
        let silent_after = interval_ms.max(1000) * i64::from(cfg.silent_intervals);
        Ok(hosts::summarise(
            &fleet,
            trends,
            &capacity,
            now_ms,
            silent_after,
        ))
    }

    /// The VMs and hosts that need a look now (see [`problems`]), most urgent first.
    pub fn problems(
        &self,
        now_ms: i64,
        interval_ms: i64,
        cfg: &ProblemsConfig,
    ) -> Result<Vec<Problem>, QueryError> {
        let presence = || match self {
            Source::Embedded(e) => e.fleet(now_ms),
            Source::InfluxDb3(i) => i.presence(now_ms),
        };
        let (fleet, hits) = both(presence, || match self {
            Source::Embedded(e) => e
                .vm_windows(now_ms, now_ms - cfg.window_ms())
                .map(|w| problems::vm_rules(&w, cfg)),
            Source::InfluxDb3(i) => i.vm_problems(now_ms, cfg),
        });
        let fleet = fleet?;
        let mut list = problems::current_only(hits?, &fleet);
        list.extend(problems::silence(&fleet, cfg, now_ms, interval_ms));
        problems::sort(&mut list);
        Ok(list)
    }

    /// The 10 VMs with the highest mean of `by` over `range_ms` ending at `now_ms` (of host
    /// `only`, if given).
    pub fn top(
        &self,
        now_ms: i64,
        by: TopBy,
        range_ms: i64,
        only: Option<&str>,
    ) -> Result<Vec<TopVm>, QueryError> {
        match self {
            Source::Embedded(e) => e.top(now_ms, by, range_ms, only),
            Source::InfluxDb3(i) => i.top(now_ms, by, range_ms, only),
        }
    }
}
