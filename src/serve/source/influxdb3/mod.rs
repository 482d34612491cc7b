//! The InfluxDB 3 backend: SQL over `/api/v3/query_sql`, every query bounded in time and
//! aggregated in the database (`DISTINCT ON` for latest rows, `date_bin` … `GROUP BY` for chart
//! buckets), so only the answer travels, never the fleet's raw rows.
//!
//! Values from a request (host, UUID) reach the server only as statement parameters (`$host`),
//! never as SQL text; times and bucket widths are integers vmtel computes; column names come
//! from the schema table and are quoted.
//!
//! * `client`: one query (errors that name the fix), the tables' columns, chart frames.
//! * `fleet`: the fleet's latest rows (the hour of VMs seen kept between requests) and a VM's
//!   page.
//! * `overview`: the hosts' CPU trend (closed buckets kept), the top VMs, vmtel's own health.
//! * `rules`: the problem rules, one query per table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::problems::{Problem, ProblemsConfig};
use super::{QueryError, SourceConfig, SourceInfo};
use crate::deliver::influxdb::config::{without_userinfo, Secret};
use crate::store::layout::Kind;
use crate::store::overview::{host_busy_pct, Capacity, TopBy, TopVm, Trend, HOST_CPU_KEYS};
use crate::store::query::{
    self, AgentHistory, Chart, Device, Fleet, InternalRow, Line, VmDetail, VmRow, FLEET_WINDOW_MS,
};
use crate::store::read::Frame;

/// How long the list of tables and columns is reused.
const COLUMNS_TTL: Duration = Duration::from_secs(30);
/// The longest window the fleet's latest values are read from (a VM in its host's latest cycle
/// has a row within it; VMs last seen earlier in the hour are listed without values).
const RECENT_MS: i64 = 5 * 60_000;
/// How far back a VM that is not in the range is looked for before answering "no such VM".
const LOOKUP_MS: i64 = 30 * 24 * 3_600_000;

/// One answer row.
type Row = Map<String, Value>;

/// A statement parameter.
type Param<'a> = (&'a str, &'a str);

/// Numeric columns per table, as the server's `information_schema` lists them.
type Columns = HashMap<String, HashSet<String>>;

/// A reader of the database the agents write to.
pub struct InfluxDb3 {
    agent: ureq3::Agent,
    endpoint: String,
    shown: String,
    database: String,
    token: Option<Secret>,
    columns: Mutex<Option<(Instant, Columns)>>,
    /// The hosts' CPU trend buckets read so far.
    trends: Mutex<TrendCache>,
    /// The VMs seen within the hour, as read so far.
    seen: Mutex<SeenCache>,
    /// The agents' collection interval (the serving vmtel's `interval`), ms.
    interval_ms: i64,
    /// How far back the fleet's latest values are read: three of the agents' intervals (the
    /// serving vmtel's `interval`) and 30 s for delivery, at least a minute, at most
    /// [`RECENT_MS`].
    recent_ms: i64,
}

/// `"name"`, with any `"` doubled.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SQL sum of columns `keys` as floats, a missing value counting as 0.
fn sum_of(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("coalesce(CAST({} AS DOUBLE), 0)", ident(k)))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The SQL condition "any of columns `keys` has a value".
fn any_of(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("{} IS NOT NULL", ident(k)))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// The SQL expression of a time in ms since the epoch.
fn at(ms: i64) -> String {
    format!("to_timestamp_millis({ms})")
}

fn text(r: &Row, k: &str) -> Option<String> {
    r.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn num(r: &Row, k: &str) -> Option<f64> {
    r.get(k).and_then(Value::as_f64)
}

fn int(r: &Row, k: &str) -> Option<i64> {
    r.get(k)
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

/// A time column (ns, cast to an integer in the query) in ms.
fn ms(r: &Row, k: &str) -> Option<i64> {
    int(r, k).map(|ns| ns.div_euclid(1_000_000))
}

mod client;
use fleet::{SeenCache, FULL_READ_MS};
use overview::TrendCache;
mod fleet;
mod overview;
mod rules;

impl InfluxDb3 {
    /// A reader for `config` (checked: URL, database, token, TLS roots); `interval` is the
    /// agents' collection interval.
    pub fn new(config: &SourceConfig, interval: Duration) -> Result<InfluxDb3, String> {
        let problems = config.problems();
        if let Some(p) = problems.into_iter().next() {
            return Err(p);
        }
        let agent = crate::deliver::influxdb::request::agent_with(
            config.tls_ca_file.as_deref(),
            config.insecure_skip_verify,
            config.timeout,
        )
        .map_err(|e| format!("web.source.{e}"))?;
        let base = config.base_url();
        Ok(InfluxDb3 {
            agent,
            endpoint: format!("{base}/api/v3/query_sql"),
            shown: without_userinfo(base).into_owned(),
            database: config.database.clone().unwrap_or_default(),
            token: config.token()?,
            columns: Mutex::new(None),
            trends: Mutex::new(TrendCache::default()),
            seen: Mutex::new(SeenCache::default()),
            interval_ms: i64::try_from(interval.as_millis()).unwrap_or(RECENT_MS),
            recent_ms: i64::try_from(interval.as_millis())
                .unwrap_or(RECENT_MS)
                .saturating_mul(3)
                .saturating_add(30_000)
                .clamp(60_000, RECENT_MS),
        })
    }

    /// The server and database.
    pub fn info(&self) -> SourceInfo {
        SourceInfo {
            kind: "influxdb3",
            location: format!("{} database {}", self.shown, self.database),
        }
    }

    /// Checks the read side: the server answers, accepts the token and has the database.
    /// Returns what it found (which of vmtel's measurements the database holds).
    pub fn check(&self) -> Result<String, QueryError> {
        if let Ok(mut g) = self.columns.lock() {
            *g = None;
        }
        let columns = self.columns()?;
        let ours = [
            "vm_metrics",
            "vm_totals",
            "vm_devices",
            "vm_features",
            "vmtel_internal",
        ];
        let found: Vec<&str> = ours
            .iter()
            .copied()
            .filter(|t| columns.contains_key(*t))
            .collect();
        if found.is_empty() {
            Ok(format!(
                "reads {}: yes, but it holds none of vmtel's measurements yet (an agent's [[outputs.influxdb]] with database = {:?} fills it)",
                self.info().location,
                self.database
            ))
        } else {
            Ok(format!(
                "reads {}: yes ({})",
                self.info().location,
                found.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_quotes_doubled() {
        assert_eq!(ident("VMID"), "\"VMID\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
