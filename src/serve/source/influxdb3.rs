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
    /// A reader for `config` (checked: URL, database, token, TLS roots).
    pub fn new(config: &SourceConfig) -> Result<InfluxDb3, String> {
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
        let window = format!(
            "time >= {} AND time <= {}",
            at(now - FLEET_WINDOW_MS),
            at(now)
        );
        let totals = self.rows(
            &format!(
                "SELECT DISTINCT ON (host, uuid) host, uuid, name, \"VMID\" AS vmid, CAST(time AS BIGINT) AS t, {}, {}, {} \
                 FROM vm_totals WHERE {filter}{window} ORDER BY host, uuid, time DESC",
                opt("vm_totals", "state"),
                opt("vm_totals", "cpus"),
                opt("vm_totals", "memactual"),
            ),
            &params,
        )?;
        let feature_cols = [
            "cpu_pct",
            "mem_used_pct",
            "net_rx_bps",
            "net_tx_bps",
            "disk_rd_bps",
            "disk_wr_bps",
        ];
        let features = self.rows(
            &format!(
                "SELECT DISTINCT ON (host, uuid) host, uuid, CAST(time AS BIGINT) AS t, {} \
                 FROM vm_features WHERE {filter}{window} ORDER BY host, uuid, time DESC",
                feature_cols
                    .iter()
                    .map(|c| opt("vm_features", c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            &params,
        )?;
        let mut feat: HashMap<(String, String), (i64, Row)> = HashMap::new();
        for r in features {
            if let (Some(h), Some(u), Some(t)) = (text(&r, "host"), text(&r, "uuid"), ms(&r, "t")) {
                feat.insert((h, u), (t, r));
            }
        }
        let mut newest: BTreeMap<String, i64> = BTreeMap::new();
        let mut vms = Vec::with_capacity(totals.len());
        for r in totals {
            let (Some(host), Some(uuid), Some(t)) =
                (text(&r, "host"), text(&r, "uuid"), ms(&r, "t"))
            else {
                continue;
            };
            let e = newest.entry(host.clone()).or_insert(t);
            *e = (*e).max(t);
            let f = feat
                .get(&(host.clone(), uuid.clone()))
                .filter(|(ft, _)| *ft == t)
                .map(|(_, r)| r);
            let fv = |k: &str| f.and_then(|r| num(r, k));
            vms.push(VmRow {
                name: text(&r, "name").unwrap_or_default(),
                vmid: text(&r, "vmid"),
                state: int(&r, "state"),
                vcpus: num(&r, "cpus"),
                mem_kib: num(&r, "memactual"),
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
        let (mut vms, newest) = self.latest_vms(now, None)?;
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
        let vm = self
            .frames(
                "vm_totals",
                Kind::Vm,
                vm_filter,
                &params,
                None,
                (from, now, step),
            )?
            .into_iter()
            .next()
            .map(|(_, f, _)| f);
        let mut device_frames = Vec::new();
        let mut devices = Vec::new();
        for (kind, devtype) in [(Kind::Nic, "nic"), (Kind::Disk, "disk")] {
            let filter = format!("{vm_filter} AND devtype = '{devtype}'");
            for (name, f, last) in self.frames(
                "vm_devices",
                kind,
                &filter,
                &params,
                Some("device"),
                (from, now, step),
            )? {
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
        let (latest_rows, newest) = self.latest_vms(now, Some((host, uuid)))?;
        let host_newest = self
            .rows(
                &format!(
                    "SELECT CAST(max(time) AS BIGINT) AS t FROM vm_totals WHERE host = $host AND time >= {} AND time <= {}",
                    at(now - FLEET_WINDOW_MS),
                    at(now)
                ),
                &[("host", host)],
            )?
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
        let rows = self.rows(
            &format!(
                "SELECT host, CAST(date_bin(INTERVAL '{step} milliseconds', time, TIMESTAMP '1970-01-01T00:00:00Z') AS BIGINT) AS b, avg(cpu_pct) AS v \
                 FROM vm_features WHERE time >= {} AND time <= {} GROUP BY host, b ORDER BY host, b",
                at(now - range),
                at(now)
            ),
            &[],
        )?;
        let mut out: BTreeMap<String, Trend> = BTreeMap::new();
        for r in rows {
            let (Some(h), Some(b)) = (text(&r, "host"), ms(&r, "b")) else {
                continue;
            };
            let t = out.entry(h).or_default();
            t.t.push(b);
            t.cpu_pct.push(num(&r, "v"));
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
    /// `window`: only the VMs that fire come back.
    pub fn vm_problems(
        &self,
        now: i64,
        fleet: &Fleet,
        cfg: &ProblemsConfig,
    ) -> Result<Vec<Problem>, QueryError> {
        let columns = self.columns()?;
        let has = |t: &str, c: &str| columns.get(t).is_some_and(|s| s.contains(c));
        let range = format!(
            "time >= {} AND time <= {}",
            at(now - cfg.window_ms()),
            at(now)
        );
        let current: HashSet<(&str, &str)> = fleet
            .vms
            .iter()
            .filter(|v| v.current)
            .map(|v| (v.host.as_str(), v.uuid.as_str()))
            .collect();
        let mut out = Vec::new();
        let mut keep = |rows: Vec<Row>, rule: &'static str, why: &dyn Fn(f64, i64) -> String| {
            for r in rows {
                let (Some(host), Some(uuid), Some(since)) =
                    (text(&r, "host"), text(&r, "uuid"), ms(&r, "since"))
                else {
                    continue;
                };
                if !current.contains(&(host.as_str(), uuid.as_str())) {
                    continue;
                }
                let v = num(&r, "v");
                out.push(Problem {
                    rule,
                    why: why(v.unwrap_or_default(), int(&r, "n").unwrap_or_default()),
                    name: text(&r, "name"),
                    uuid: Some(uuid),
                    host,
                    since_ms: since,
                    value: v,
                });
            }
        };
        // Streaks: the rows after the VM's last row where the condition did not hold.
        let streak = |table: &str, cond: &str, value: &str, min: u32| {
            format!(
                "WITH w AS (SELECT host, uuid, name, time, coalesce({cond}, false) AS bad, {value} AS v FROM {table} WHERE {range}), \
                 s AS (SELECT host, uuid, max(time) FILTER (WHERE NOT bad) AS ok FROM w GROUP BY host, uuid) \
                 SELECT w.host AS host, w.uuid AS uuid, last_value(w.name ORDER BY w.time) AS name, CAST(min(w.time) AS BIGINT) AS since, \
                 count(*) AS n, last_value(w.v ORDER BY w.time) AS v \
                 FROM w JOIN s ON w.host = s.host AND w.uuid = s.uuid \
                 WHERE w.bad AND (s.ok IS NULL OR w.time > s.ok) GROUP BY w.host, w.uuid HAVING count(*) >= {min}"
            )
        };
        if has("vm_totals", "state") {
            for (rule, code, word) in [("crashed", 6, "crashed"), ("paused", 3, "paused")] {
                let q = streak("vm_totals", &format!("state = {code}"), "state", 1);
                keep(self.rows(&q, &[])?, rule, &|_, _| {
                    format!("the VM is {word}")
                });
            }
        }
        if has("vm_features", "cpu_steal_pct") {
            let q = streak(
                "vm_features",
                &format!("cpu_steal_pct > {:?}", cfg.steal_pct),
                "cpu_steal_pct",
                cfg.cycles,
            );
            let thr = cfg.steal_pct;
            keep(self.rows(&q, &[])?, "steal", &|v, n| {
                format!("vCPU steal {v:.1} % (above {thr} % for {n} cycles)")
            });
        }
        if has("vm_features", "mem_used_pct") {
            let q = streak(
                "vm_features",
                &format!("mem_used_pct >= {:?}", cfg.mem_used_pct),
                "mem_used_pct",
                cfg.cycles,
            );
            let thr = cfg.mem_used_pct;
            keep(self.rows(&q, &[])?, "mem_full", &|v, n| {
                format!("guest memory {v:.1} % in use (at or above {thr} % for {n} cycles)")
            });
        }
        let window = super::problems::humantime_window(cfg);
        let rising: [(&'static str, &[&str], &str); 4] = [
            (
                "swapping",
                &["memswap_in", "memswap_out"],
                "KiB swapped in and out",
            ),
            ("disk_errors", &["disk_errors"], "disk errors"),
            (
                "nic_errors",
                &["net_rxerrors", "net_txerrors"],
                "NIC errors",
            ),
            ("nic_drops", &["net_rxdrops", "net_txdrops"], "NIC drops"),
        ];
        for (rule, keys, what) in rising {
            let keys: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|k| has("vm_totals", k))
                .collect();
            if keys.is_empty() {
                continue;
            }
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
            let q = format!(
                "WITH w AS (SELECT host, uuid, name, time, CAST({x} AS DOUBLE) AS x FROM vm_totals WHERE ({any}) AND {range}), \
                 f AS (SELECT host, uuid, first_value(x ORDER BY time) AS x0, last_value(x ORDER BY time) AS x1 FROM w GROUP BY host, uuid) \
                 SELECT w.host AS host, w.uuid AS uuid, last_value(w.name ORDER BY w.time) AS name, \
                 CAST(min(w.time) FILTER (WHERE w.x > f.x0) AS BIGINT) AS since, max(f.x1 - f.x0) AS v \
                 FROM w JOIN f ON w.host = f.host AND w.uuid = f.uuid WHERE f.x1 > f.x0 GROUP BY w.host, w.uuid"
            );
            keep(self.rows(&q, &[])?, rule, &|v, _| {
                format!("{v:.0} {what} within the last {window}")
            });
        }
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
