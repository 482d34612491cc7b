//! The InfluxDB 3 backend: SQL over `/api/v3/query_sql`, every query bounded in time and
//! aggregated in the database (`DISTINCT ON` for latest rows, `date_bin` … `GROUP BY` for chart
//! buckets), so only the answer travels, never the fleet's raw rows.
//!
//! Values from a request (host, UUID) reach the server only as statement parameters (`$host`),
//! never as SQL text; times and bucket widths are integers vmtel computes; column names come
//! from the schema table and are quoted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::problems::{Problem, ProblemsConfig};
use super::{QueryError, SourceConfig, SourceInfo};
use crate::deliver::influxdb::config::{without_userinfo, Secret};
use crate::store::layout::Kind;
use crate::store::overview::{TopBy, TopVm, Trend};
use crate::store::query::{
    self, AgentHistory, Chart, Device, Fleet, HostRow, InternalRow, Line, VmDetail, VmRow,
    FLEET_WINDOW_MS,
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

/// Per (host, UUID): the newest time a VM was seen and its name then.
type Seen = HashMap<(String, String), (i64, String)>;

/// The VMs seen within the hour as read so far.
#[derive(Debug, Default)]
struct SeenCache {
    /// Up to when it was read.
    read_to: i64,
    vms: Seen,
}

/// Adds rows of (host, uuid, name, t) to `seen`, keeping each VM's newest time and its name.
fn merge_seen(seen: &mut Seen, rows: &[Row]) {
    for r in rows {
        let (Some(h), Some(u), Some(t)) = (text(r, "host"), text(r, "uuid"), ms(r, "t")) else {
            continue;
        };
        let name = text(r, "name").unwrap_or_default();
        let e = seen.entry((h, u)).or_insert((t, name.clone()));
        if t > e.0 {
            *e = (t, name);
        }
    }
}

/// The hosts' CPU trend as read so far: per bucket start, each host's mean CPU %.
#[derive(Debug, Default)]
struct TrendCache {
    /// The bucket width the buckets are of.
    step: i64,
    buckets: BTreeMap<i64, BTreeMap<String, Option<f64>>>,
}

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

    /// Runs one SQL query; `Ok(None)` when a table it reads does not exist yet (nothing was
    /// written to it).
    fn sql(&self, q: &str, params: &[Param]) -> Result<Option<Vec<Row>>, QueryError> {
        let params: Map<String, Value> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        let body = serde_json::json!({
            "db": self.database,
            "q": q,
            "format": "json",
            "params": params,
        });
        let mut req = self
            .agent
            .post(&self.endpoint)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {}", t.expose()));
        }
        let started = Instant::now();
        let resp = req.send(body.to_string().as_bytes()).map_err(|e| {
            QueryError::Unavailable(format!(
                "InfluxDB 3 at {} does not answer ({e}); check that it runs and [web.source] url",
                self.shown
            ))
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| {
                QueryError::Upstream(format!(
                    "InfluxDB 3 at {} cut its answer short ({e}); see the server's log",
                    self.shown
                ))
            })?;
        tracing::debug!(
            status,
            ms = started.elapsed().as_millis() as u64,
            bytes = text.len(),
            "InfluxDB 3 query: {}",
            q.chars().take(160).collect::<String>()
        );
        let snippet = || text.chars().take(300).collect::<String>();
        match status {
            200..=299 => {}
            401 | 403 => {
                return Err(QueryError::Upstream(format!(
                    "InfluxDB 3 at {} refused the read token ({status}); check [web.source] token_file or token_env (a token that may read database {:?})",
                    self.shown, self.database
                )))
            }
            404 if text.contains("database not found") => {
                return Err(QueryError::Upstream(format!(
                    "InfluxDB 3 at {} has no database {:?}; check [web.source] database, and that the agents' [[outputs.influxdb]] write to it",
                    self.shown, self.database
                )))
            }
            _ if text.contains("table '") && text.contains("not found") => return Ok(None),
            _ => {
                return Err(QueryError::Upstream(format!(
                    "InfluxDB 3 at {} failed a query ({status}): {}",
                    self.shown,
                    snippet()
                )))
            }
        }
        if text.trim().is_empty() {
            return Ok(Some(Vec::new()));
        }
        serde_json::from_str::<Vec<Row>>(&text)
            .map(Some)
            .map_err(|e| {
                QueryError::Upstream(format!(
                    "InfluxDB 3 at {} gave an answer that is not a JSON array of rows ({e}): {}",
                    self.shown,
                    snippet()
                ))
            })
    }

    /// Rows of a query; none when its table does not exist yet.
    fn rows(&self, q: &str, params: &[Param]) -> Result<Vec<Row>, QueryError> {
        Ok(self.sql(q, params)?.unwrap_or_default())
    }

    /// The numeric columns of every table (cached for [`COLUMNS_TTL`]).
    fn columns(&self) -> Result<Columns, QueryError> {
        if let Ok(g) = self.columns.lock() {
            if let Some((when, c)) = g.as_ref() {
                if when.elapsed() < COLUMNS_TTL {
                    return Ok(c.clone());
                }
            }
        }
        let rows = self.rows(
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'iox'",
            &[],
        )?;
        let mut out: Columns = HashMap::new();
        for r in rows {
            let (Some(t), Some(c), Some(ty)) = (
                text(&r, "table_name"),
                text(&r, "column_name"),
                text(&r, "data_type"),
            ) else {
                continue;
            };
            let set = out.entry(t).or_default();
            if matches!(ty.as_str(), "Int64" | "UInt64" | "Float64") {
                set.insert(c);
            }
        }
        if let Ok(mut g) = self.columns.lock() {
            *g = Some((Instant::now(), out.clone()));
        }
        Ok(out)
    }

    /// Chart frames of `kind`'s columns read from `table`, one per value of the `group` tag
    /// (or one in all), bucketed by `step` ms over `[from, to]`: a counter's last value in each
    /// bucket and its time, a gauge's average. The same buckets as the embedded store's.
    #[allow(clippy::too_many_arguments)]
    fn frames(
        &self,
        table: &str,
        kind: Kind,
        filter: &str,
        params: &[Param],
        group: Option<&str>,
        (from, to, step): (i64, i64, i64),
    ) -> Result<Vec<(Option<String>, Frame, i64)>, QueryError> {
        let columns = self.columns()?;
        let Some(present) = columns.get(table) else {
            return Ok(Vec::new());
        };
        let step = step.max(1);
        let mut select = Vec::new();
        if let Some(g) = group {
            select.push(format!("{} AS g", ident(g)));
        }
        select.push(format!(
            "CAST(date_bin(INTERVAL '{step} milliseconds', time, TIMESTAMP '1970-01-01T00:00:00Z') AS BIGINT) AS b"
        ));
        select.push("CAST(max(time) AS BIGINT) AS lt".into());
        for (i, c) in kind.columns().iter().enumerate() {
            if !present.contains(c.key) {
                continue;
            }
            let col = ident(c.key);
            if c.counter {
                select.push(format!(
                    "last_value({col} IGNORE NULLS ORDER BY time) AS v{i}"
                ));
                select.push(format!(
                    "CAST(max(time) FILTER (WHERE {col} IS NOT NULL) AS BIGINT) AS t{i}"
                ));
            } else {
                select.push(format!("avg({col}) AS v{i}"));
            }
        }
        let by = if group.is_some() { "g, b" } else { "b" };
        let q = format!(
            "SELECT {} FROM {} WHERE {filter} AND time >= {} AND time <= {} GROUP BY {by} ORDER BY {by}",
            select.join(", "),
            ident(table),
            at(from),
            at(to),
        );
        let rows = self.rows(&q, params)?;
        let width = kind.columns().len();
        let mut out: Vec<(Option<String>, Frame, i64)> = Vec::new();
        for r in rows {
            let g = group.and_then(|_| text(&r, "g"));
            let Some(b) = ms(&r, "b") else { continue };
            if out.last().is_none_or(|(og, _, _)| *og != g) {
                out.push((
                    g.clone(),
                    Frame {
                        t: Vec::new(),
                        cols: vec![Vec::new(); width],
                        times: vec![Vec::new(); width],
                    },
                    i64::MIN,
                ));
            }
            let Some((_, f, last)) = out.last_mut() else {
                continue;
            };
            *last = (*last).max(ms(&r, "lt").unwrap_or(i64::MIN));
            f.t.push(b);
            for (i, c) in kind.columns().iter().enumerate() {
                f.cols[i].push(num(&r, &format!("v{i}")));
                f.times[i].push(if c.counter {
                    ms(&r, &format!("t{i}"))
                } else {
                    None
                });
            }
        }
        Ok(out)
    }

    /// The newest row per VM in `vm_totals` and `vm_features` within the fleet window,
    /// optionally of one VM only; with each host's newest time.
    fn latest_vms(
        &self,
        now: i64,
        only: Option<(&str, &str)>,
        values: bool,
    ) -> Result<(Vec<VmRow>, BTreeMap<String, i64>), QueryError> {
        let columns = self.columns()?;
        let has = |table: &str, col: &str| columns.get(table).is_some_and(|c| c.contains(col));
        let opt = |table: &str, col: &str| {
            if has(table, col) {
                ident(col)
            } else {
                format!("NULL AS {}", ident(col))
            }
        };
        let (filter, params): (&str, Vec<Param>) = match only {
            Some((h, u)) => (
                "host = $host AND uuid = $uuid AND ",
                vec![("host", h), ("uuid", u)],
            ),
            None => ("", Vec::new()),
        };
        // Latest values come from the last few minutes only (a VM in its host's latest cycle is
        // there); which VMs were seen within the hour, and when last, from one aggregate over
        // the hour that reads tags and times only.
        let seen_q = |from: i64| {
            format!(
                "SELECT host, uuid, name, CAST(max(time) AS BIGINT) AS t FROM vm_totals \
                 WHERE {filter}time >= {} AND time <= {} GROUP BY host, uuid, name",
                at(from),
                at(now)
            )
        };
        // Which VMs were seen within the hour: for the whole fleet, what earlier requests read
        // is kept, and only the time since (with a margin for lines still arriving) is read.
        let seen_of = || -> Result<Seen, QueryError> {
            if only.is_some() {
                let mut last = HashMap::new();
                merge_seen(
                    &mut last,
                    &self.rows(&seen_q(now - FLEET_WINDOW_MS), &params)?,
                );
                return Ok(last);
            }
            let mut cache = self.seen.lock().map_err(|_| {
                QueryError::Upstream("internal error: the fleet cache is poisoned".into())
            })?;
            let hour = now - FLEET_WINDOW_MS;
            let from = if cache.read_to > hour {
                (cache.read_to - 2 * self.interval_ms - 30_000).max(hour)
            } else {
                cache.vms.clear();
                hour
            };
            let rows = self.rows(&seen_q(from), &params)?;
            merge_seen(&mut cache.vms, &rows);
            cache.vms.retain(|_, (t, _)| *t >= hour);
            cache.read_to = now;
            Ok(cache.vms.clone())
        };
        let window = format!(
            "time >= {} AND time <= {}",
            at(now - self.recent_ms),
            at(now)
        );
        let totals_q = format!(
                "SELECT DISTINCT ON (host, uuid) host, uuid, name, \"VMID\" AS vmid, CAST(time AS BIGINT) AS t, {}, {}, {} \
                 FROM vm_totals WHERE {filter}{window} ORDER BY host, uuid, time DESC",
                opt("vm_totals", "state"),
                opt("vm_totals", "cpus"),
                opt("vm_totals", "memactual"),
            );
        let feature_cols = [
            "cpu_pct",
            "mem_used_pct",
            "net_rx_bps",
            "net_tx_bps",
            "disk_rd_bps",
            "disk_wr_bps",
        ];
        let features_q = format!(
            "SELECT DISTINCT ON (host, uuid) host, uuid, CAST(time AS BIGINT) AS t, {} \
                 FROM vm_features WHERE {filter}{window} ORDER BY host, uuid, time DESC",
            feature_cols
                .iter()
                .map(|c| opt("vm_features", c))
                .collect::<Vec<_>>()
                .join(", ")
        );
        // The three at once: the hour's aggregate takes about as long as the other two.
        let (seen, (totals, features)) = super::both(seen_of, || {
            if !values {
                return (Ok(Vec::new()), Ok(Vec::new()));
            }
            super::both(
                || self.rows(&totals_q, &params),
                || self.rows(&features_q, &params),
            )
        });
        let (seen, totals, features) = (seen?, totals?, features?);
        let mut feat: HashMap<(String, String), (i64, Row)> = HashMap::new();
        for r in features {
            if let (Some(h), Some(u), Some(t)) = (text(&r, "host"), text(&r, "uuid"), ms(&r, "t")) {
                feat.insert((h, u), (t, r));
            }
        }
        // Every VM seen within the hour, by its newest name; its latest row if recent.
        let last = seen;
        let mut latest: HashMap<(String, String), Row> = HashMap::new();
        for r in totals {
            if let (Some(h), Some(u)) = (text(&r, "host"), text(&r, "uuid")) {
                latest.insert((h, u), r);
            }
        }
        let mut newest: BTreeMap<String, i64> = BTreeMap::new();
        let mut vms = Vec::with_capacity(last.len());
        for ((host, uuid), (seen_t, seen_name)) in last {
            let empty = Row::new();
            let r = latest.get(&(host.clone(), uuid.clone())).unwrap_or(&empty);
            let t = ms(r, "t").unwrap_or(seen_t).max(seen_t);
            let e = newest.entry(host.clone()).or_insert(t);
            *e = (*e).max(t);
            // The rates of the same cycle, or of the one before while this cycle's
            // `vm_features` lines are still on their way (an agent's lines of one cycle can
            // arrive in more than one request).
            let f = feat
                .get(&(host.clone(), uuid.clone()))
                .filter(|(ft, _)| *ft <= t && *ft >= t - self.interval_ms)
                .map(|(_, r)| r);
            let fv = |k: &str| f.and_then(|r| num(r, k));
            vms.push(VmRow {
                name: text(r, "name").unwrap_or(seen_name),
                vmid: text(r, "vmid"),
                state: int(r, "state"),
                vcpus: num(r, "cpus"),
                mem_kib: num(r, "memactual"),
                cpu_pct: fv("cpu_pct"),
                mem_used_pct: fv("mem_used_pct"),
                net_rx_bps: fv("net_rx_bps"),
                net_tx_bps: fv("net_tx_bps"),
                disk_rd_bps: fv("disk_rd_bps"),
                disk_wr_bps: fv("disk_wr_bps"),
                last_seen_ms: t,
                current: false,
                host,
                uuid,
            });
        }
        Ok((vms, newest))
    }

    /// See [`super::Source::fleet`].
    pub fn fleet(&self, now: i64) -> Result<Fleet, QueryError> {
        self.fleet_of(now, true)
    }

    /// Which hosts and VMs are there and current, without their values (what the problem
    /// rules need: only the hour of VMs seen is read).
    pub fn presence(&self, now: i64) -> Result<Fleet, QueryError> {
        self.fleet_of(now, false)
    }

    fn fleet_of(&self, now: i64, values: bool) -> Result<Fleet, QueryError> {
        let (mut vms, newest) = self.latest_vms(now, None, values)?;
        for v in &mut vms {
            v.current = newest.get(&v.host).is_some_and(|n| *n <= v.last_seen_ms);
        }
        vms.sort_by(|a, b| (&a.host, &a.name, &a.uuid).cmp(&(&b.host, &b.name, &b.uuid)));
        let hosts = newest
            .iter()
            .map(|(h, t)| HostRow {
                host: h.clone(),
                last_ms: *t,
                vms: vms.iter().filter(|v| &v.host == h && v.current).count(),
            })
            .collect();
        Ok(Fleet { hosts, vms })
    }

    /// See [`super::Source::vm_detail`].
    pub fn vm_detail(
        &self,
        host: &str,
        uuid: &str,
        now: i64,
        range: i64,
    ) -> Result<Option<VmDetail>, QueryError> {
        let (from, step, _) = query::window(now, range);
        let params = [("host", host), ("uuid", uuid)];
        let vm_filter = "host = $host AND uuid = $uuid";
        let range_of = (from, now, step);
        let device_frames_of = |kind: Kind, devtype: &str| {
            let filter = format!("{vm_filter} AND devtype = '{devtype}'");
            self.frames(
                "vm_devices",
                kind,
                &filter,
                &params,
                Some("device"),
                range_of,
            )
        };
        let host_newest_of = || {
            self.rows(
                &format!(
                    "SELECT CAST(max(time) AS BIGINT) AS t FROM vm_totals WHERE host = $host AND time >= {} AND time <= {}",
                    at(now - self.recent_ms),
                    at(now)
                ),
                &[("host", host)],
            )
        };
        // Every query at once: each reads its own slice of the range.
        let ((vm, (nics, disks)), (latest_vms, host_newest)) = super::both(
            || {
                super::both(
                    || self.frames("vm_totals", Kind::Vm, vm_filter, &params, None, range_of),
                    || {
                        super::both(
                            || device_frames_of(Kind::Nic, "nic"),
                            || device_frames_of(Kind::Disk, "disk"),
                        )
                    },
                )
            },
            || {
                super::both(
                    || self.latest_vms(now, Some((host, uuid)), true),
                    host_newest_of,
                )
            },
        );
        let vm = vm?.into_iter().next().map(|(_, f, _)| f);
        let mut device_frames = Vec::new();
        let mut devices = Vec::new();
        for (kind, devtype, frames) in [(Kind::Nic, "nic", nics?), (Kind::Disk, "disk", disks?)] {
            for (name, f, last) in frames {
                let name = name.unwrap_or_default();
                devices.push(Device {
                    devtype: devtype.into(),
                    device: name.clone(),
                    mac: None,
                    path: None,
                    last_seen_ms: last,
                });
                device_frames.push((kind, name, f));
            }
        }
        let (latest_rows, newest) = latest_vms?;
        let host_newest = host_newest?
            .first()
            .and_then(|r| ms(r, "t"))
            .or_else(|| newest.get(host).copied());
        let latest = latest_rows.into_iter().next().map(|mut v| {
            v.current = host_newest.is_some_and(|n| n <= v.last_seen_ms);
            v
        });
        let name = match (&latest, &vm) {
            (Some(l), _) => l.name.clone(),
            _ => {
                let found = self.rows(
                    &format!(
                        "SELECT name FROM vm_totals WHERE host = $host AND uuid = $uuid AND time >= {} AND time <= {} ORDER BY time DESC LIMIT 1",
                        at(now - LOOKUP_MS.max(range)),
                        at(now)
                    ),
                    &params,
                )?;
                match found.first() {
                    Some(r) => text(r, "name").unwrap_or_default(),
                    None => return Ok(None),
                }
            }
        };
        let vm = vm.unwrap_or_default();
        Ok(Some(VmDetail {
            host: host.into(),
            uuid: uuid.into(),
            name,
            latest,
            from_ms: from,
            to_ms: now,
            step_ms: step,
            resolution: "raw",
            charts: query::vm_charts(&vm, &device_frames),
            devices,
        }))
    }

    /// The mean CPU % of each host's VMs per bucket over `range` ms ending at `now`, in about
    /// `buckets` buckets (see [`crate::store::overview::cpu_trends`]).
    pub fn cpu_trends(
        &self,
        now: i64,
        range: i64,
        buckets: i64,
    ) -> Result<BTreeMap<String, Trend>, QueryError> {
        let columns = self.columns()?;
        if !columns
            .get("vm_features")
            .is_some_and(|c| c.contains("cpu_pct"))
        {
            return Ok(BTreeMap::new());
        }
        let step = (range / buckets.max(1)).max(1000);
        let from = now - range;
        // Buckets before the newest two that were read are kept between requests (a page
        // refreshing every interval then reads minutes, not the hour); the rest is read again.
        let mut cache = self.trends.lock().map_err(|_| {
            QueryError::Upstream("internal error: the trend cache is poisoned".into())
        })?;
        if cache.step != step {
            *cache = TrendCache {
                step,
                buckets: BTreeMap::new(),
            };
        }
        cache
            .buckets
            .retain(|b, _| *b >= from.div_euclid(step) * step);
        let keep_before = cache
            .buckets
            .keys()
            .next_back()
            .map_or(i64::MIN, |newest| newest - step);
        let read_from = from.max(keep_before);
        let rows = self.rows(
            &format!(
                "SELECT host, CAST(date_bin(INTERVAL '{step} milliseconds', time, TIMESTAMP '1970-01-01T00:00:00Z') AS BIGINT) AS b, avg(cpu_pct) AS v \
                 FROM vm_features WHERE time >= {} AND time <= {} GROUP BY host, b ORDER BY host, b",
                at(read_from),
                at(now)
            ),
            &[],
        )?;
        cache.buckets.retain(|b, _| *b < keep_before);
        for r in rows {
            let (Some(h), Some(b)) = (text(&r, "host"), ms(&r, "b")) else {
                continue;
            };
            cache.buckets.entry(b).or_default().insert(h, num(&r, "v"));
        }
        let mut out: BTreeMap<String, Trend> = BTreeMap::new();
        for (b, hosts) in &cache.buckets {
            for (h, v) in hosts {
                let t = out.entry(h.clone()).or_default();
                t.t.push(*b);
                t.cpu_pct.push(*v);
            }
        }
        Ok(out)
    }

    /// The 10 VMs (of host `only`, if given) with the highest mean of `by` over `range` ms
    /// ending at `now` (the mean of their `vm_features` values).
    pub fn top(
        &self,
        now: i64,
        by: TopBy,
        range: i64,
        only: Option<&str>,
    ) -> Result<Vec<TopVm>, QueryError> {
        let columns = self.columns()?;
        let Some(present) = columns.get("vm_features") else {
            return Ok(Vec::new());
        };
        let keys: &[&str] = match by {
            TopBy::Cpu => &["cpu_pct"],
            TopBy::Steal => &["cpu_steal_pct"],
            TopBy::Mem => &["mem_used_pct"],
            TopBy::Net => &["net_rx_bps", "net_tx_bps"],
            TopBy::Disk => &["disk_rd_bps", "disk_wr_bps"],
        };
        let keys: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| present.contains(*k))
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sum = keys
            .iter()
            .map(|k| format!("coalesce({}, 0)", ident(k)))
            .collect::<Vec<_>>()
            .join(" + ");
        let any = keys
            .iter()
            .map(|k| format!("{} IS NOT NULL", ident(k)))
            .collect::<Vec<_>>()
            .join(" OR ");
        let (filter, params): (&str, Vec<Param>) = match only {
            Some(h) => ("host = $host AND ", vec![("host", h)]),
            None => ("", Vec::new()),
        };
        let rows = self.rows(
            &format!(
                "SELECT host, uuid, last_value(name ORDER BY time) AS name, avg({sum}) AS v FROM vm_features \
                 WHERE {filter}({any}) AND time >= {} AND time <= {} GROUP BY host, uuid ORDER BY v DESC, host, name LIMIT 10",
                at(now - range),
                at(now)
            ),
            &params,
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(TopVm {
                    host: text(r, "host")?,
                    uuid: text(r, "uuid")?,
                    name: text(r, "name").unwrap_or_default(),
                    value: num(r, "v")?,
                })
            })
            .collect())
    }

    /// The VM rules of [`super::problems`] as SQL, evaluated in the database over the last
    /// `window`: one query per table (`vm_features`: steal, memory; `vm_totals`: state and the
    /// rising counters), each one pass over the window and one over its per-VM summary; only
    /// the VMs that fire come back.
    pub fn vm_problems(&self, now: i64, cfg: &ProblemsConfig) -> Result<Vec<Problem>, QueryError> {
        let columns = self.columns()?;
        let has = |t: &str, c: &str| columns.get(t).is_some_and(|s| s.contains(c));
        let range = format!(
            "time >= {} AND time <= {}",
            at(now - cfg.window_ms()),
            at(now)
        );
        let window = super::problems::humantime_window(cfg);
        // Per table: streak rules (id, condition, value column, cycles) and rising rules (id,
        // counter columns).
        type Streak<'a> = (&'static str, String, &'a str, u32);
        let features: Vec<Streak> = [
            (
                "steal",
                "cpu_steal_pct",
                format!("cpu_steal_pct > {:?}", cfg.steal_pct),
            ),
            (
                "mem_full",
                "mem_used_pct",
                format!("mem_used_pct >= {:?}", cfg.mem_used_pct),
            ),
        ]
        .into_iter()
        .filter(|(_, col, _)| has("vm_features", col))
        .map(|(id, col, cond)| (id, cond, col, cfg.cycles))
        .collect();
        let totals: Vec<Streak> = if has("vm_totals", "state") {
            vec![
                ("crashed", "state = 6".to_owned(), "state", 1),
                ("paused", "state = 3".to_owned(), "state", 1),
            ]
        } else {
            Vec::new()
        };
        let rising: Vec<(&'static str, Vec<&str>)> = [
            ("swapping", vec!["memswap_in", "memswap_out"]),
            ("disk_errors", vec!["disk_errors"]),
            ("nic_errors", vec!["net_rxerrors", "net_txerrors"]),
            ("nic_drops", vec!["net_rxdrops", "net_txdrops"]),
        ]
        .into_iter()
        .map(|(id, keys)| {
            (
                id,
                keys.into_iter()
                    .filter(|k| has("vm_totals", k))
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, keys)| !keys.is_empty())
        .collect();
        // One table's rules: its query, then the problems of the rows that come back.
        let run = |table: &str, streaks: &[Streak], rising: &[(&'static str, Vec<&str>)]| {
            let mut out = Vec::new();
            if streaks.is_empty() && rising.is_empty() {
                return Ok(out);
            }
            // w: the window's rows with each rule's input; s: per VM, the last time each
            // streak condition did not hold and each counter's first and last value.
            let mut w_cols = Vec::new();
            let mut s_cols = Vec::new();
            let mut out_cols = Vec::new();
            let mut fired = Vec::new();
            // Which VMs can fire at all, from the summary alone: only their rows are joined
            // back (the join is the costly part over a whole fleet's window).
            let mut may_fire = Vec::new();
            for (i, (_, cond, value, min)) in streaks.iter().enumerate() {
                w_cols.push(format!(
                    "coalesce({cond}, false) AS bad{i}, {} AS val{i}",
                    ident(value)
                ));
                s_cols.push(format!("max(time) FILTER (WHERE NOT bad{i}) AS ok{i}"));
                let inside = format!("w.bad{i} AND (s.ok{i} IS NULL OR w.time > s.ok{i})");
                out_cols.push(format!(
                    "CAST(min(w.time) FILTER (WHERE {inside}) AS BIGINT) AS since{i}, \
                     count(*) FILTER (WHERE {inside}) AS n{i}, last_value(w.val{i} ORDER BY w.time) AS v{i}"
                ));
                fired.push(format!("count(*) FILTER (WHERE {inside}) >= {min}"));
                may_fire.push(format!(
                    "(count(*) FILTER (WHERE bad{i}) >= {min} AND coalesce(max(time) FILTER (WHERE NOT bad{i}) < max(time), true))"
                ));
            }
            for (j, (_, keys)) in rising.iter().enumerate() {
                let x = keys
                    .iter()
                    .map(|k| format!("coalesce({}, 0)", ident(k)))
                    .collect::<Vec<_>>()
                    .join(" + ");
                let any = keys
                    .iter()
                    .map(|k| format!("{} IS NOT NULL", ident(k)))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                w_cols.push(format!(
                    "CASE WHEN {any} THEN CAST({x} AS DOUBLE) END AS x{j}"
                ));
                s_cols.push(format!(
                    "first_value(x{j} IGNORE NULLS ORDER BY time) AS f{j}, last_value(x{j} IGNORE NULLS ORDER BY time) AS l{j}"
                ));
                out_cols.push(format!(
                    "CAST(min(w.time) FILTER (WHERE w.x{j} > s.f{j}) AS BIGINT) AS rsince{j}, max(s.l{j} - s.f{j}) AS rv{j}"
                ));
                fired.push(format!("max(s.l{j}) > max(s.f{j})"));
                may_fire.push(format!(
                    "last_value(x{j} IGNORE NULLS ORDER BY time) > first_value(x{j} IGNORE NULLS ORDER BY time)"
                ));
            }
            let q = format!(
                "WITH w AS (SELECT host, uuid, name, time, {} FROM {} WHERE {range}), \
                 s AS (SELECT host, uuid, {} FROM w GROUP BY host, uuid HAVING {}) \
                 SELECT w.host AS host, w.uuid AS uuid, last_value(w.name ORDER BY w.time) AS name, {} \
                 FROM w JOIN s ON w.host = s.host AND w.uuid = s.uuid GROUP BY w.host, w.uuid HAVING {}",
                w_cols.join(", "),
                ident(table),
                s_cols.join(", "),
                may_fire.join(" OR "),
                out_cols.join(", "),
                fired.join(" OR "),
            );
            for r in self.rows(&q, &[])? {
                let (Some(host), Some(uuid)) = (text(&r, "host"), text(&r, "uuid")) else {
                    continue;
                };
                let name = text(&r, "name");
                let mut push = |rule: &'static str, why: String, since: i64, value: Option<f64>| {
                    out.push(Problem {
                        rule,
                        host: host.clone(),
                        uuid: Some(uuid.clone()),
                        name: name.clone(),
                        why,
                        since_ms: since,
                        value,
                    });
                };
                for (i, (rule, _, _, min)) in streaks.iter().enumerate() {
                    let n = int(&r, &format!("n{i}")).unwrap_or(0);
                    let Some(since) = ms(&r, &format!("since{i}")) else {
                        continue;
                    };
                    if n < i64::from(*min) {
                        continue;
                    }
                    let v = num(&r, &format!("v{i}"));
                    let x = v.unwrap_or_default();
                    let why = match *rule {
                        "steal" => format!(
                            "vCPU steal {x:.1} % (above {} % for {n} cycles)",
                            cfg.steal_pct
                        ),
                        "mem_full" => format!(
                            "guest memory {x:.1} % in use (at or above {} % for {n} cycles)",
                            cfg.mem_used_pct
                        ),
                        "crashed" => "the VM is crashed".to_owned(),
                        _ => "the VM is paused".to_owned(),
                    };
                    let value = if matches!(*rule, "steal" | "mem_full") {
                        v
                    } else {
                        None
                    };
                    push(rule, why, since, value);
                }
                for (j, (rule, _)) in rising.iter().enumerate() {
                    let (Some(since), Some(by)) =
                        (ms(&r, &format!("rsince{j}")), num(&r, &format!("rv{j}")))
                    else {
                        continue;
                    };
                    if by <= 0.0 {
                        continue;
                    }
                    let what = match *rule {
                        "swapping" => "KiB swapped in and out",
                        "disk_errors" => "disk errors",
                        "nic_errors" => "NIC errors",
                        _ => "NIC drops",
                    };
                    push(
                        rule,
                        format!("{by:.0} {what} within the last {window}"),
                        since,
                        Some(by),
                    );
                }
            }
            Ok::<_, QueryError>(out)
        };
        let (a, b) = super::both(
            || run("vm_features", &features, &[]),
            || run("vm_totals", &totals, &rising),
        );
        let mut out = a?;
        out.extend(b?);
        Ok(out)
    }

    /// The newest `vmtel_internal` row per agent host and `tag` (`source` or `sink`) within
    /// the last hour.
    fn internal_rows(
        &self,
        kind: Kind,
        tag: &str,
        now: i64,
    ) -> Result<Vec<InternalRow>, QueryError> {
        let columns = self.columns()?;
        let Some(present) = columns.get("vmtel_internal") else {
            return Ok(Vec::new());
        };
        let cols: Vec<&str> = kind
            .columns()
            .iter()
            .map(|c| c.key)
            .filter(|k| present.contains(*k))
            .collect();
        let t = ident(tag);
        let mut select = vec![
            format!("{t} AS k"),
            "host".to_owned(),
            "CAST(time AS BIGINT) AS t".to_owned(),
        ];
        select.extend(cols.iter().map(|c| ident(c)));
        let rows = self.rows(
            &format!(
                "SELECT DISTINCT ON (host, {t}) {} FROM vmtel_internal WHERE {t} IS NOT NULL AND time >= {} AND time <= {} ORDER BY host, {t}, time DESC",
                select.join(", "),
                at(now - FLEET_WINDOW_MS),
                at(now)
            ),
            &[],
        )?;
        let mut out: Vec<InternalRow> = rows
            .iter()
            .filter_map(|r| {
                Some(InternalRow {
                    key: text(r, "k")?,
                    host: text(r, "host").unwrap_or_default(),
                    last_ms: ms(r, "t")?,
                    fields: cols
                        .iter()
                        .filter_map(|c| Some(((*c).to_owned(), num(r, c)?)))
                        .collect(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.key, &a.host).cmp(&(&b.key, &b.host)));
        Ok(out)
    }

    /// See [`super::Source::agent`].
    pub fn agent(&self, now: i64) -> Result<AgentHistory, QueryError> {
        let sources = self.internal_rows(Kind::Source, "source", now)?;
        let sinks = self.internal_rows(Kind::Sink, "sink", now)?;
        let (from, step, _) = query::window(now, FLEET_WINDOW_MS);
        let hosts: HashSet<&str> = sources.iter().map(|s| s.host.as_str()).collect();
        let frames = self.frames(
            "vmtel_internal",
            Kind::Source,
            "source IS NOT NULL",
            &[],
            Some("source"),
            (from, now, step),
        );
        // One agent: one line per source. Several agents share source URIs (qemu:///system),
        // so their lines are not told apart here; their latest rows above are, by host.
        let frames = if hosts.len() <= 1 {
            frames?
        } else {
            Vec::new()
        };
        let mut axis: Vec<i64> = frames
            .iter()
            .flat_map(|(_, f, _)| f.t.iter().copied())
            .collect();
        axis.sort_unstable();
        axis.dedup();
        let align = |f: &Frame, v: Vec<Option<f64>>| -> Vec<Option<f64>> {
            let m: HashMap<i64, Option<f64>> = f.t.iter().copied().zip(v).collect();
            axis.iter().map(|x| m.get(x).copied().flatten()).collect()
        };
        let mut cycle = Vec::new();
        let mut problems = Vec::new();
        for (key, f, _) in &frames {
            let key = key.clone().unwrap_or_default();
            let ms_values = f
                .col(Kind::Source, "cycle_ns")
                .iter()
                .map(|v| v.map(|x| x * 1e-6))
                .collect();
            cycle.push(Line {
                label: key.clone(),
                values: align(f, ms_values),
            });
            for (what, k) in [("failed", "errors"), ("skipped", "skipped_ticks")] {
                let per_min = f
                    .rate(Kind::Source, k, 1.0)
                    .iter()
                    .map(|v| v.map(|x| x * 60.0))
                    .collect();
                problems.push(Line {
                    label: format!("{key}: {what}"),
                    values: align(f, per_min),
                });
            }
        }
        Ok(AgentHistory {
            sources,
            sinks,
            cycle_time: Chart {
                id: "cycle".into(),
                title: "Cycle time per source (ms)".into(),
                unit: "ms".into(),
                t: axis.clone(),
                lines: cycle,
            },
            problems: Chart {
                id: "problems".into(),
                title: "Failed cycles and skipped ticks per minute".into(),
                unit: "/min".into(),
                t: axis,
                lines: problems,
            },
        })
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
