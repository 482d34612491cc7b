//! docs/queries.md, executed: every query of the page runs exactly as printed there against real
//! servers, and every answer is checked against rows computed here from the lines written.
//!
//! * The page is read at run time. Each numbered section (`## N. Title`) holds a ```` ```sql ````
//!   block, run on a real InfluxDB 3 Core (`../shared/bin/influxdb3`, `/api/v3/query_sql`), and
//!   an ```` ```influxql ```` block, run on the same server (`/api/v3/query_influxql`) and on a
//!   real InfluxDB 1.x (`/query`). A query in any other language, or outside a numbered
//!   section, fails the test: there is nothing here to check it with.
//! * The data, the same lines on both servers: 100 minutes of the simulated fleet
//!   ([`vmtel::sim`], seed 1: 3 hosts × 12 VMs, one VM with steal, one swapping, one dropping
//!   packets, one paused) up to now, one cycle every 30 s, through vmtel's decoder, deriver and
//!   encoder. `web 17, "eu"` of `sim-hv2` has a name that needs quoting. Four
//!   VMs restart (a new VMID, counters from zero): `web-10`, the one that drops packets, the one
//!   that swaps, and `web 17, "eu"` 2 minutes before the end; `web-36` shuts down 10 minutes
//!   before the end. Each host's agent adds its `vmtel_internal` lines (a source and an output),
//!   whose counters are made up.
//! * Each section has a check here, keyed by its number and title, that computes from the
//!   written lines (parsed back with InfluxDB 3's line-protocol parser) the rows each dialect and
//!   server must answer: which VMs, in which order, with which values (to float rounding and the
//!   query's own `round()`). A section without a check, a check without a section, a query the
//!   server refuses and an answer that differs all fail, naming the section, the server and the
//!   query.
//! * The ranges are relative to `now()`, which the server reads somewhere between the request
//!   and the answer: a check computes its rows for every `now()` of that span that changes which
//!   cycles are in range, and one of them must match.
//!
//! Skips (with a note on stderr) when `../shared/bin/influxdb3` is missing, unless `CI=true`.
//! The InfluxDB 1.x server must be installed (`scripts/deps test`).
//!
//! With `VMTEL_QUERIES_SAMPLES=1`, once every answer is right, the page's sample outputs
//! ("Output (SQL)", "Output (InfluxQL)") are rewritten with what InfluxDB 3 printed.

mod support;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::influxdb::InfluxDb;
use support::influxdb3::InfluxDb3;
use support::{parse_all, Point, Val};
use vmtel::collect::bulk::Decoder;
use vmtel::collect::wall_ns;
use vmtel::daemon::internal::{DeliveryCounters, SinkCounters, SourceCounters};
use vmtel::deliver::batch::{Internal, Subject};
use vmtel::derive::Deriver;
use vmtel::encode::{Encoder, Precision};
use vmtel::model::HostSample;
use vmtel::sim::{host_name, SimFleet, SimOptions, Trouble};

const NS: i64 = 1_000_000_000;
const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// The database both servers hold the lines in (the page's `db=vmtel`).
const DB: &str = "vmtel";

// ---------------------------------------------------------------------------------------------
// The data
// ---------------------------------------------------------------------------------------------

const HOSTS: usize = 3;
const VMS_PER_HOST: usize = 12;
/// Seconds between two cycles.
const STEP_S: i64 = 30;
/// Cycles written: 100 minutes.
const CYCLES: i64 = 200;
/// The simulated clock of the last cycle, a fixed 15:00 UTC (the sim's daily rhythm follows
/// it), so that the values do not depend on when the test runs; the lines carry recent times.
const SIM_END_S: i64 = 20_499 * DAY + 15 * HOUR;

/// The VM the page's one-VM sections (6, 10, 13) ask about: the sim's `web 17, "eu"` of
/// `sim-hv2` (2 NICs, 2 disks; the demo has it too).
const ODD_VM: usize = 16;
const ODD_HOST: &str = "sim-hv2";
const ODD_NAME: &str = "web 17, \"eu\"";
/// VMs restarted (index in the fleet, cycle of the restart): `web-10` 40 minutes before the
/// last cycle, `spare-04` (drops packets) 30 minutes and `db-03` (swaps) 20 minutes before it,
/// the odd VM 2 minutes before it (inside the 5-minute range of section 13).
const REBOOTS: [(usize, i64); 4] = [
    (9, CYCLES - 80),
    (3, CYCLES - 60),
    (2, CYCLES - 40),
    (ODD_VM, CYCLES - 5),
];
/// A VM shut down (index, first cycle without it): `web-36` of `sim-hv3`, 10 minutes before the
/// last cycle, so that it counts in the hour's ranges and not in the last minute's.
const SHUT_DOWN: (usize, i64) = (35, CYCLES - 20);
/// The agents' source and output.
const SOURCE_URI: &str = "qemu:///system";
const SINK_NAME: &str = "influxdb:central";

/// Every line written: the sim fleet's cycles and the agents' `vmtel_internal` lines, the last
/// cycle at `end_s` (seconds since the epoch), in `s` precision.
fn fleet_lines(end_s: i64) -> String {
    let mut fleet = SimFleet::new(SimOptions {
        seed: 1,
        hosts: HOSTS,
        vms_per_host: VMS_PER_HOST,
        reboot_every_days: None,
        devices: None,
    });
    let chosen: Vec<(&str, Trouble)> = REBOOTS
        .iter()
        .map(|(i, _)| *i)
        .chain([SHUT_DOWN.0])
        .map(|i| (fleet.vms[i].name.as_str(), fleet.vms[i].trouble))
        .collect();
    assert_eq!(
        chosen,
        [
            ("web-10", Trouble::None),
            ("spare-04", Trouble::NicDrops),
            ("db-03", Trouble::Swapping),
            (ODD_NAME, Trouble::None),
            ("web-36", Trouble::None),
        ],
        "the simulated fleet changed: choose the VMs that restart and shut down again"
    );
    let odd = &fleet.vms[ODD_VM];
    assert_eq!(
        (
            host_name(odd.host).as_str(),
            odd.name.as_str(),
            odd.nics.len(),
            odd.disks.len()
        ),
        (ODD_HOST, ODD_NAME, 2, 2),
        "the simulated fleet changed: choose the VM with the odd name again, here and in docs/queries.md"
    );
    let encoder = Encoder {
        global_tags: Vec::new(),
        precision: Precision::Seconds,
    };
    let mut decoders: Vec<Decoder> = (0..HOSTS).map(|_| Decoder::new()).collect();
    let mut derivers: Vec<Deriver> = (0..HOSTS).map(|_| Deriver::new()).collect();
    // Per agent: VM lines handed on, lines and bytes its output wrote.
    let mut records = [0u64; HOSTS];
    let mut bytes = [0u64; HOSTS];
    let mut out = String::new();
    let mut features = Vec::new();
    for k in 0..CYCLES {
        let back = CYCLES - 1 - k;
        let t_ns = (end_s - back * STEP_S) * NS;
        let sim_ns = (SIM_END_S - back * STEP_S) * NS;
        for &(vm, at) in &REBOOTS {
            if at == k {
                fleet.reboot(vm);
            }
        }
        fleet.step(sim_ns, Duration::from_secs(STEP_S.unsigned_abs()));
        let cycle = u64::try_from(k).expect("cycle");
        for h in 0..HOSTS {
            let mut sample = HostSample {
                host: host_name(h),
                timestamp_ns: t_ns,
                domains: Vec::new(),
            };
            let active = |i: usize| i != SHUT_DOWN.0 || k < SHUT_DOWN.1;
            for (i, _) in fleet
                .vms
                .iter()
                .enumerate()
                .filter(|(i, v)| v.host == h && active(*i))
            {
                let mono = cycle * STEP_S.unsigned_abs() * 1_000_000_000;
                sample
                    .domains
                    .push(fleet.sample(i, sim_ns, mono, &mut decoders[h]));
            }
            derivers[h].begin_cycle();
            derivers[h].update_chunk(&sample.domains, &mut features);
            derivers[h].end_cycle();
            let start = out.len();
            let lines = encoder.encode_host(&sample, &features, &mut out);
            records[h] += lines as u64;
            bytes[h] += (out.len() - start) as u64;
            // The agent's health: its source (sim-hv2's agent had a late cycle early on,
            // sim-hv3's lost its connection once 10 minutes ago) and its output.
            let late = u64::from(h == 1 && k >= 50);
            let failed = u64::from(h == 2 && k >= CYCLES - 20);
            let source = SourceCounters {
                cycle_ns: 8_000_000 + (cycle * 7_919 + h as u64 * 104_729) % 9_000 * 1_000,
                domains: sample.domains.len() as u64,
                cycles: cycle + 1,
                errors: failed,
                skipped_ticks: 2 * failed,
                late_cycles: late,
                records: records[h],
                connected: true,
            };
            let sink = SinkCounters {
                batches: cycle + 1,
                lines: records[h],
                bytes: bytes[h],
                dropped: 0,
                errors: 0,
            };
            let delivery = DeliveryCounters {
                delivered_lines: records[h],
                delivered_requests: cycle + 1,
                ..DeliveryCounters::default()
            };
            for subject in [
                Subject::Source {
                    uri: SOURCE_URI.to_owned(),
                    counters: source,
                },
                Subject::Sink {
                    name: SINK_NAME.to_owned(),
                    counters: sink,
                    delivery: Some(delivery),
                },
            ] {
                let record = Internal {
                    host: host_name(h),
                    subject,
                };
                assert!(encoder.encode_internal(&record, t_ns, &mut out));
            }
        }
    }
    out
}

/// The lines as the servers store them, by measurement, each in time order.
struct Data {
    points: BTreeMap<String, Vec<Point>>,
    /// Every timestamp written, seconds.
    times: BTreeSet<i64>,
}

impl Data {
    fn new(points: Vec<Point>) -> Data {
        let times = points.iter().map(|p| p.time).collect();
        let mut by: BTreeMap<String, Vec<Point>> = BTreeMap::new();
        for p in points {
            by.entry(p.measurement.clone()).or_default().push(p);
        }
        for v in by.values_mut() {
            v.sort_by_key(|p| p.time);
        }
        Data { points: by, times }
    }

    /// The points of `m` within `w`, in time order.
    fn of(&self, m: &str, w: Window) -> Vec<&Point> {
        self.points
            .get(m)
            .map(|v| v.iter().filter(|p| w.contains(p.time)).collect())
            .unwrap_or_default()
    }

    /// How many points of `m` have field `f`.
    fn count(&self, m: &str, f: &str) -> usize {
        self.points
            .get(m)
            .map_or(0, |v| v.iter().filter(|p| p.fields.contains_key(f)).count())
    }
}

/// A range relative to `now()`: SQL's `time >= now() - INTERVAL ...` or InfluxQL's
/// `time > now() - ...`.
#[derive(Debug, Clone, Copy)]
struct Window {
    now_ns: i64,
    secs: i64,
    strict: bool,
}

impl Window {
    fn contains(&self, t_s: i64) -> bool {
        let start = self.now_ns - self.secs * NS;
        if self.strict {
            t_s * NS > start
        } else {
            t_s * NS >= start
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Lang {
    Sql,
    InfluxQl,
}

/// A numbered section of the page and its queries.
#[derive(Debug)]
struct Section {
    number: u32,
    title: String,
    queries: Vec<(Lang, String)>,
}

fn page_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/queries.md")
}

fn read_page() -> String {
    let path = page_path();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The numbered sections (`## N. Title`) and the queries of their ```` ```sql ```` and
/// ```` ```influxql ```` blocks. Fails on a query outside a numbered section, a fenced block
/// in a language nothing here runs, and a section without a query in each dialect.
fn parse_page(text: &str) -> Result<Vec<Section>, String> {
    let mut sections: Vec<Section> = Vec::new();
    let mut in_numbered = false;
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if let Some(heading) = line.strip_prefix("## ") {
            in_numbered = false;
            if let Some((num, title)) = heading.split_once(". ") {
                if let Ok(number) = num.parse::<u32>() {
                    sections.push(Section {
                        number,
                        title: title.trim().to_owned(),
                        queries: Vec::new(),
                    });
                    in_numbered = true;
                }
            }
            continue;
        }
        let Some(lang) = line.strip_prefix("```") else {
            continue;
        };
        let lang = lang.trim();
        let mut body = Vec::new();
        let mut closed = false;
        for (_, l) in lines.by_ref() {
            if l.trim_end() == "```" {
                closed = true;
                break;
            }
            body.push(l);
        }
        if !closed {
            return Err(format!("line {}: unclosed ``` block", n + 1));
        }
        let lang = match lang {
            "sql" => Lang::Sql,
            "influxql" => Lang::InfluxQl,
            "text" | "sh" => continue,
            other => {
                return Err(format!(
                    "line {}: a ```{other} block: this test runs only sql (InfluxDB 3) and influxql (InfluxDB 3 and 1.x) blocks, so nothing would check it",
                    n + 1
                ))
            }
        };
        match sections.last_mut() {
            Some(s) if in_numbered => s.queries.push((lang, body.join("\n"))),
            _ => {
                return Err(format!(
                    "line {}: a query outside a numbered section (## N. Title) has no check",
                    n + 1
                ))
            }
        }
    }
    for s in &sections {
        for lang in [Lang::Sql, Lang::InfluxQl] {
            let k = s.queries.iter().filter(|(l, _)| *l == lang).count();
            if k != 1 {
                return Err(format!(
                    "section {}. {}: {k} {lang:?} queries, expected one",
                    s.number, s.title
                ));
            }
        }
    }
    Ok(sections)
}

// ---------------------------------------------------------------------------------------------
// Running a query
// ---------------------------------------------------------------------------------------------

/// Where a query runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// SQL on InfluxDB 3 (`/api/v3/query_sql`).
    Sql,
    /// InfluxQL on InfluxDB 3 (`/api/v3/query_influxql`).
    InfluxQl3,
    /// InfluxQL on InfluxDB 1.x (`/query`).
    InfluxQl1,
}

impl Run {
    fn describe(self) -> &'static str {
        match self {
            Run::Sql => "SQL on InfluxDB 3 (/api/v3/query_sql)",
            Run::InfluxQl3 => "InfluxQL on InfluxDB 3 (/api/v3/query_influxql)",
            Run::InfluxQl1 => "InfluxQL on InfluxDB 1.x (/query)",
        }
    }
}

/// A value of an answer.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Num(f64),
    Str(String),
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Null => write!(f, "NULL"),
            Cell::Num(v) => write!(f, "{v}"),
            Cell::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// One row of an answer: column → value.
type Row = BTreeMap<String, Cell>;

fn cell(v: &Value) -> Cell {
    match v {
        Value::Null => Cell::Null,
        Value::Number(n) => Cell::Num(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Cell::Str(s.clone()),
        Value::Bool(b) => Cell::Num(f64::from(u8::from(*b))),
        other => Cell::Str(other.to_string()),
    }
}

/// InfluxDB 3's `format=json`: an array of row objects.
fn rows_of_v3(v: &Value) -> Result<Vec<Row>, String> {
    let rows = v
        .as_array()
        .ok_or_else(|| format!("not an array of rows: {v}"))?;
    rows.iter()
        .map(|r| {
            r.as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), cell(v))).collect())
                .ok_or_else(|| format!("not a row object: {r}"))
        })
        .collect()
}

/// InfluxDB 1.x's answer: one result with series of `columns` and `values`, the `GROUP BY`
/// tags in `tags`.
fn rows_of_v1(v: &Value) -> Result<Vec<Row>, String> {
    let results = v["results"]
        .as_array()
        .ok_or_else(|| format!("no results: {v}"))?;
    if results.len() != 1 {
        return Err(format!("{} results, expected one: {v}", results.len()));
    }
    let result = &results[0];
    if let Some(e) = result.get("error") {
        return Err(format!("error: {e}"));
    }
    let mut rows = Vec::new();
    for series in result["series"].as_array().into_iter().flatten() {
        let columns: Vec<&str> = series["columns"]
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for values in series["values"].as_array().into_iter().flatten() {
            let mut row: Row = columns
                .iter()
                .zip(values.as_array().into_iter().flatten())
                .map(|(c, v)| ((*c).to_owned(), cell(v)))
                .collect();
            if let Some(tags) = series["tags"].as_object() {
                for (k, v) in tags {
                    row.insert(k.clone(), cell(v));
                }
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

struct Servers {
    v3: InfluxDb3,
    v1: InfluxDb,
}

impl Servers {
    fn query(&self, run: Run, q: &str) -> Result<Vec<Row>, String> {
        match run {
            Run::Sql => rows_of_v3(&self.v3.try_query_sql(DB, q)?),
            Run::InfluxQl3 => rows_of_v3(&self.v3.try_query_influxql(DB, q)?),
            Run::InfluxQl1 => rows_of_v1(&self.v1.try_query(DB, q)?),
        }
    }

    /// Writes `body` to both servers, in requests of at most about 4 MiB.
    fn write(&self, body: &str) {
        let mut rest = body;
        while !rest.is_empty() {
            let mut end = rest.len().min(4 << 20);
            if end < rest.len() {
                end = rest[..end].rfind('\n').map_or(rest.len(), |i| i + 1);
            }
            let (chunk, tail) = rest.split_at(end);
            let (status, text) = self.v3.write_lp(DB, chunk, "second");
            assert_eq!(status, 204, "InfluxDB 3 write: {text}");
            let (status, text) = self.v1.write(DB, chunk, "s");
            assert_eq!(status, 204, "InfluxDB 1.x write: {text}");
            rest = tail;
        }
    }

    /// Waits until both servers answer with every point written.
    fn wait_for(&self, data: &Data) {
        let fields = [
            ("vm_metrics", "state"),
            ("vm_totals", "state"),
            ("vm_devices", "rxbytes"),
            ("vm_devices", "rd_req"),
            ("vm_features", "cpu_pct"),
            ("vmtel_internal", "cycles"),
            ("vmtel_internal", "sink_lines"),
        ];
        let deadline = Instant::now() + Duration::from_secs(60);
        for run in [Run::InfluxQl3, Run::InfluxQl1] {
            for (m, f) in fields {
                let want = data.count(m, f) as f64;
                let q = format!("SELECT count(\"{f}\") FROM \"{m}\"");
                loop {
                    let got = self
                        .query(run, &q)
                        .ok()
                        .and_then(|rows| rows.first().and_then(|r| r.get("count").cloned()));
                    if got == Some(Cell::Num(want)) {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{}: {q} answers {got:?}, {want} points were written",
                        run.describe()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Expected rows and the comparison
// ---------------------------------------------------------------------------------------------

/// What one column of a row must hold.
#[derive(Debug, Clone)]
enum Want {
    Str(String),
    /// A number within `tol`.
    Num(f64, f64),
    /// NULL or absent.
    Null,
    /// A time, seconds since the epoch: a number of seconds (InfluxDB 1.x, `epoch=s`) or
    /// ISO 8601 text without a zone (InfluxDB 3).
    Time(i64),
}

impl std::fmt::Display for Want {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Want::Str(s) => write!(f, "{s:?}"),
            Want::Num(v, tol) if *tol == 0.0 => write!(f, "{v}"),
            Want::Num(v, tol) => write!(f, "{v}±{tol:e}"),
            Want::Null => write!(f, "NULL"),
            Want::Time(t) => write!(f, "{}", iso(*t)),
        }
    }
}

type WantRow = Vec<(&'static str, Want)>;

/// The rows a query must answer.
struct Expected {
    rows: Vec<WantRow>,
    /// In this order (an `ORDER BY`), or in any order (matched by their text and time columns).
    ordered: bool,
}

impl Expected {
    fn ordered(rows: Vec<WantRow>) -> Expected {
        Expected {
            rows,
            ordered: true,
        }
    }

    fn any_order(rows: Vec<WantRow>) -> Expected {
        Expected {
            rows,
            ordered: false,
        }
    }
}

fn s(v: &str) -> Want {
    Want::Str(v.to_owned())
}

/// A float as computed here, to float rounding (the server sums in another order).
fn x(v: Option<f64>) -> Want {
    v.map_or(Want::Null, |v| Want::Num(v, 1e-9 * v.abs().max(1.0)))
}

/// A value the query rounds to `d` decimals (`round(v, d)`); `v` is the unrounded value.
fn r(v: Option<f64>, d: i32) -> Want {
    v.map_or(Want::Null, |v| {
        Want::Num(v, 0.5 * 10f64.powi(-d) + 1e-9 * v.abs().max(1.0))
    })
}

/// An integer, exactly.
fn n(v: Option<i64>) -> Want {
    v.map_or(Want::Null, |v| Want::Num(v as f64, 0.0))
}

fn t(secs: i64) -> Want {
    Want::Time(secs)
}

/// `round(v, d)` as DataFusion computes it (half away from zero), for sorting like the query.
fn rd(v: Option<f64>, d: i32) -> Option<f64> {
    let m = 10f64.powi(d);
    v.map(|v| (v * m).round() / m)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-12-04T21:18:40[.541412044]` (UTC) → ns since the epoch.
fn parse_iso(text: &str) -> Option<i64> {
    let (date, time) = text.trim_end_matches('Z').split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut h = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (h.next()??, h.next()??, h.next()??);
    let mut ns = 0i64;
    if !frac.is_empty() {
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        ns = digits.parse().ok()?;
    }
    Some(((days_from_civil(y, mo, da) * DAY + hh * HOUR + mm * MINUTE + ss) * NS) + ns)
}

/// Seconds since the epoch as InfluxDB 3 prints them.
fn iso(secs: i64) -> String {
    let days = secs.div_euclid(DAY);
    let rem = secs.rem_euclid(DAY);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / HOUR,
        rem % HOUR / MINUTE,
        rem % MINUTE
    )
}

/// The time an answer's cell holds, ns since the epoch.
fn cell_time(c: &Cell) -> Option<i64> {
    match c {
        Cell::Num(v) => Some((*v as i64) * NS),
        Cell::Str(s) => parse_iso(s),
        Cell::Null => None,
    }
}

fn matches(want: &Want, got: Option<&Cell>) -> bool {
    match (want, got) {
        (Want::Null, None | Some(Cell::Null)) => true,
        (Want::Str(w), Some(Cell::Str(g))) => w == g,
        (Want::Num(w, tol), Some(Cell::Num(g))) => (g - w).abs() <= *tol,
        (Want::Time(w), Some(c)) => cell_time(c) == Some(w * NS),
        _ => false,
    }
}

/// The text and time columns of a row, to match rows of an answer in any order.
fn want_key(row: &WantRow) -> Vec<String> {
    row.iter()
        .filter_map(|(c, w)| match w {
            Want::Str(v) => Some(format!("{c}={v}")),
            Want::Time(v) => Some(format!("{c}@{v}")),
            _ => None,
        })
        .collect()
}

fn got_key(proto: &WantRow, row: &Row) -> Vec<String> {
    proto
        .iter()
        .filter_map(|(c, w)| match w {
            Want::Str(_) => Some(format!(
                "{c}={}",
                match row.get(*c) {
                    Some(Cell::Str(v)) => v.clone(),
                    other => format!("{other:?}"),
                }
            )),
            Want::Time(_) => Some(format!(
                "{c}@{}",
                row.get(*c)
                    .and_then(cell_time)
                    .map_or("?".to_owned(), |t| (t.div_euclid(NS)).to_string())
            )),
            _ => None,
        })
        .collect()
}

fn show_want(rows: &[WantRow]) -> String {
    rows.iter()
        .map(|r| {
            let cols: Vec<String> = r.iter().map(|(c, w)| format!("{c}: {w}")).collect();
            format!("  {{{}}}", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn show_rows(rows: &[Row]) -> String {
    rows.iter()
        .map(|r| {
            let cols: Vec<String> = r.iter().map(|(c, v)| format!("{c}: {v}")).collect();
            format!("  {{{}}}", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Columns an InfluxQL answer has besides the selected ones.
const INFLUXQL_EXTRA: [&str; 2] = ["time", "iox::measurement"];

/// Compares an answer with the expected rows; the differences, if any.
fn compare(exp: &Expected, got: &[Row], run: Run) -> Result<(), String> {
    if exp.rows.len() != got.len() {
        return Err(format!("{} rows, expected {}", got.len(), exp.rows.len()));
    }
    let mut pairs: Vec<(&WantRow, &Row)> = Vec::new();
    if exp.ordered {
        pairs.extend(exp.rows.iter().zip(got));
    } else {
        let mut want: Vec<&WantRow> = exp.rows.iter().collect();
        want.sort_by_key(|r| want_key(r));
        let mut have: Vec<&Row> = got.iter().collect();
        if let Some(proto) = exp.rows.first() {
            have.sort_by_key(|r| got_key(proto, r));
        }
        pairs.extend(want.into_iter().zip(have));
    }
    let mut diffs = Vec::new();
    for (i, (w, g)) in pairs.iter().enumerate() {
        for (c, want) in w.iter() {
            if !matches(want, g.get(*c)) {
                diffs.push(format!(
                    "row {i}, column {c}: got {}, expected {want}",
                    g.get(*c).map_or("(absent)".to_owned(), ToString::to_string)
                ));
            }
        }
        for c in g.keys() {
            let extra = run != Run::Sql && INFLUXQL_EXTRA.contains(&c.as_str());
            if !extra && !w.iter().any(|(wc, _)| wc == c) {
                diffs.push(format!("row {i}: unexpected column {c}"));
            }
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("\n"))
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers of the checks
// ---------------------------------------------------------------------------------------------

fn tag<'a>(p: &'a Point, k: &str) -> &'a str {
    p.tags.get(k).map_or("", String::as_str)
}

fn num(p: &Point, k: &str) -> Option<f64> {
    p.fields.get(k).map(|v| match v {
        Val::Int(i) => *i as f64,
        Val::Float(b) => f64::from_bits(*b),
    })
}

fn int(p: &Point, k: &str) -> Option<i64> {
    match p.fields.get(k) {
        Some(Val::Int(i)) => Some(*i),
        _ => None,
    }
}

/// A VM: host, name, uuid.
type Vm = (String, String, String);

fn vm_of(p: &Point) -> Vm {
    (
        tag(p, "host").to_owned(),
        tag(p, "name").to_owned(),
        tag(p, "uuid").to_owned(),
    )
}

/// Points grouped by `key`, each group in time order.
fn group<'a, K: Ord>(
    points: impl IntoIterator<Item = &'a Point>,
    key: impl Fn(&Point) -> K,
) -> BTreeMap<K, Vec<&'a Point>> {
    let mut out: BTreeMap<K, Vec<&Point>> = BTreeMap::new();
    for p in points {
        out.entry(key(p)).or_default().push(p);
    }
    out
}

fn avg_of(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.into_iter().flatten().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// `avg(k)` / `mean(k)`: absent values skipped, NULL when none.
fn avg(ps: &[&Point], k: &str) -> Option<f64> {
    avg_of(ps.iter().map(|p| num(p, k)))
}

fn max_of(ps: &[&Point], k: &str) -> Option<f64> {
    ps.iter().filter_map(|p| num(p, k)).reduce(f64::max)
}

/// The value of `k` in the latest point that has it (`last()`, `last_value(k ORDER BY time)`).
fn last(ps: &[&Point], k: &str) -> Option<f64> {
    ps.iter().rev().find_map(|p| num(p, k))
}

fn last_int(ps: &[&Point], k: &str) -> Option<i64> {
    ps.iter().rev().find_map(|p| int(p, k))
}

fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? + b?)
}

fn add_i(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    Some(a? + b?)
}

fn sum_i(v: impl IntoIterator<Item = Option<i64>>) -> Option<i64> {
    v.into_iter().flatten().reduce(|a, b| a + b)
}

/// `v - lag(v)` over points in time order (NULL for the first).
fn diffs(ps: &[&Point], v: impl Fn(&Point) -> Option<i64>) -> Vec<Option<i64>> {
    let vals: Vec<Option<i64>> = ps.iter().map(|p| v(p)).collect();
    (0..vals.len())
        .map(|i| {
            if i == 0 {
                None
            } else {
                Some(vals[i]? - vals[i - 1]?)
            }
        })
        .collect()
}

/// Seconds since the previous point (NULL for the first).
fn gaps(ps: &[&Point]) -> Vec<Option<f64>> {
    (0..ps.len())
        .map(|i| (i > 0).then(|| (ps[i].time - ps[i - 1].time) as f64))
        .collect()
}

fn nonneg(d: Option<i64>) -> Option<i64> {
    d.filter(|d| *d >= 0)
}

/// `ORDER BY v DESC NULLS LAST`.
fn desc_nulls_last(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b.total_cmp(&a),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// `ORDER BY v DESC` (DataFusion puts NULLs first).
fn desc(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b.total_cmp(&a),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => Ordering::Equal,
    }
}

/// InfluxQL's `top(v, tags..., n)`: per distinct value of the tags the row with the largest
/// `v` (rows without `v` skipped), then the `n` largest of those.
fn top<T, K: Ord>(
    rows: Vec<T>,
    tags: impl Fn(&T) -> K,
    v: impl Fn(&T) -> Option<f64>,
    n: usize,
) -> Vec<T> {
    let mut best: BTreeMap<K, T> = BTreeMap::new();
    for row in rows {
        let Some(val) = v(&row) else { continue };
        let k = tags(&row);
        match best.get(&k) {
            Some(b) if v(b).is_some_and(|bv| bv >= val) => {}
            _ => {
                best.insert(k, row);
            }
        }
    }
    let mut out: Vec<T> = best.into_values().collect();
    out.sort_by(|a, b| desc_nulls_last(v(a), v(b)));
    out.truncate(n);
    out
}

/// Is the odd VM's point on its host?
fn odd_vm(p: &Point) -> bool {
    tag(p, "host") == ODD_HOST && tag(p, "name") == ODD_NAME
}

// ---------------------------------------------------------------------------------------------
// The checks, one per section of the page
// ---------------------------------------------------------------------------------------------

struct Check {
    number: u32,
    title: &'static str,
    /// The range of the section's queries, seconds back from `now()`.
    range_s: i64,
    expect: fn(&Data, Run, Window) -> Expected,
}

const CHECKS: [Check; 17] = [
    Check {
        number: 1,
        title: "CPU and steal per VM",
        range_s: HOUR,
        expect: cpu_and_steal,
    },
    Check {
        number: 2,
        title: "Top 10 VMs by CPU",
        range_s: HOUR,
        expect: top_cpu,
    },
    Check {
        number: 3,
        title: "Top 10 VMs by network traffic",
        range_s: HOUR,
        expect: top_network,
    },
    Check {
        number: 4,
        title: "Top 10 VMs by disk I/O",
        range_s: HOUR,
        expect: top_disk,
    },
    Check {
        number: 5,
        title: "NICs whose drop or error counters rise",
        range_s: HOUR,
        expect: nic_drops,
    },
    Check {
        number: 6,
        title: "Disk throughput and IOPS per device of one VM",
        range_s: 15 * MINUTE,
        expect: disk_per_device,
    },
    Check {
        number: 7,
        title: "Memory used in the guest vs the balloon",
        range_s: 5 * MINUTE,
        expect: memory,
    },
    Check {
        number: 8,
        title: "Guests that swap",
        range_s: HOUR,
        expect: swapping,
    },
    Check {
        number: 9,
        title: "VMs per host and state",
        range_s: MINUTE,
        expect: states,
    },
    Check {
        number: 10,
        title: "A VM's devices",
        range_s: 5 * MINUTE,
        expect: devices,
    },
    Check {
        number: 11,
        title: "Capacity per host: VMs, vCPUs, memory",
        range_s: MINUTE,
        expect: capacity,
    },
    Check {
        number: 12,
        title: "Traffic per host",
        range_s: MINUTE,
        expect: traffic_per_host,
    },
    Check {
        number: 13,
        title: "Rates from the raw counters of vm_totals",
        range_s: 5 * MINUTE,
        expect: raw_rates,
    },
    Check {
        number: 14,
        title: "Bytes per VM over 24 hours, across reboots",
        range_s: DAY,
        expect: bytes_per_day,
    },
    Check {
        number: 15,
        title: "VMs that restarted",
        range_s: DAY,
        expect: restarts,
    },
    Check {
        number: 16,
        title: "Downsampling a long range",
        range_s: DAY,
        expect: hourly,
    },
    Check {
        number: 17,
        title: "Agent health: vmtel_internal",
        range_s: 15 * MINUTE,
        expect: agent_health,
    },
];

/// Per VM over the range, the mean (`avg`/`mean`) of each field and the maximum of the last.
fn per_vm_means(d: &Data, w: Window, means: &[&str], max: &str) -> Vec<(Vm, Vec<Option<f64>>)> {
    group(d.of("vm_features", w), vm_of)
        .into_iter()
        .map(|(vm, ps)| {
            let mut v: Vec<Option<f64>> = means.iter().map(|k| avg(&ps, k)).collect();
            v.push(max_of(&ps, max));
            (vm, v)
        })
        .collect()
}

fn by_host_name(a: &Vm, b: &Vm) -> Ordering {
    (&a.0, &a.1).cmp(&(&b.0, &b.1))
}

fn host_and_name(vm: &Vm) -> (String, String) {
    (vm.0.clone(), vm.1.clone())
}

/// 1: mean CPU and steal per VM over the hour, the most steal first.
fn cpu_and_steal(d: &Data, run: Run, w: Window) -> Expected {
    // [cpu, steal, max steal]
    let rows = per_vm_means(d, w, &["cpu_pct", "cpu_steal_pct"], "cpu_steal_pct");
    if run == Run::Sql {
        let mut rows = rows;
        rows.sort_by(|(a, va), (b, vb)| {
            desc_nulls_last(rd(va[1], 2), rd(vb[1], 2))
                .then(desc(rd(va[0], 2), rd(vb[0], 2)))
                .then_with(|| by_host_name(a, b))
        });
        rows.truncate(10);
        Expected::ordered(
            rows.iter()
                .map(|(vm, v)| {
                    vec![
                        ("host", s(&vm.0)),
                        ("name", s(&vm.1)),
                        ("cpu_pct", r(v[0], 2)),
                        ("steal_pct", r(v[1], 2)),
                        ("steal_pct_max", r(v[2], 2)),
                    ]
                })
                .collect(),
        )
    } else {
        let rows = top(rows, |(vm, _)| host_and_name(vm), |(_, v)| v[1], 10);
        Expected::any_order(
            rows.iter()
                .map(|(vm, v)| {
                    vec![
                        ("host", s(&vm.0)),
                        ("name", s(&vm.1)),
                        ("steal_pct", x(v[1])),
                        ("cpu_pct", x(v[0])),
                        ("steal_pct_max", x(v[2])),
                    ]
                })
                .collect(),
        )
    }
}

/// 2: the 10 VMs with the most CPU over the hour.
fn top_cpu(d: &Data, run: Run, w: Window) -> Expected {
    // [cpu, usr, sys, max cpu]
    let rows = per_vm_means(d, w, &["cpu_pct", "cpu_usr_pct", "cpu_sys_pct"], "cpu_pct");
    let (rows, ordered, f): (_, _, fn(Option<f64>) -> Want) = if run == Run::Sql {
        let mut rows = rows;
        rows.sort_by(|(a, va), (b, vb)| {
            desc(rd(va[0], 2), rd(vb[0], 2)).then_with(|| by_host_name(a, b))
        });
        rows.truncate(10);
        (rows, true, |v| r(v, 2))
    } else {
        (
            top(rows, |(vm, _)| host_and_name(vm), |(_, v)| v[0], 10),
            false,
            x,
        )
    };
    let rows = rows
        .iter()
        .map(|(vm, v)| {
            vec![
                ("host", s(&vm.0)),
                ("name", s(&vm.1)),
                ("cpu_pct", f(v[0])),
                ("usr_pct", f(v[1])),
                ("sys_pct", f(v[2])),
                ("cpu_pct_max", f(v[3])),
            ]
        })
        .collect();
    Expected { rows, ordered }
}

/// 3 and 4: the 10 VMs with the most traffic over the hour, `a + b` of the means first.
/// `cols`: the output columns of [a + b, a, b, c + d] (3) or [a + b, a, b, c, d] (4).
fn top_traffic(
    d: &Data,
    run: Run,
    w: Window,
    fields: [&str; 4],
    cols: &[(&'static str, i32)],
    sum_cd: bool,
) -> Expected {
    let rows: Vec<(Vm, Vec<Option<f64>>)> = group(d.of("vm_features", w), vm_of)
        .into_iter()
        .map(|(vm, ps)| {
            let m: Vec<Option<f64>> = fields.iter().map(|k| avg(&ps, k)).collect();
            let mut v = vec![add(m[0], m[1]), m[0], m[1]];
            if sum_cd {
                v.push(add(m[2], m[3]));
            } else {
                v.extend([m[2], m[3]]);
            }
            (vm, v)
        })
        .collect();
    let ordered = run == Run::Sql;
    let rows = if ordered {
        let mut rows = rows;
        rows.sort_by(|(a, va), (b, vb)| {
            desc_nulls_last(rd(va[0], 0), rd(vb[0], 0)).then_with(|| by_host_name(a, b))
        });
        rows.truncate(10);
        rows
    } else {
        top(rows, |(vm, _)| host_and_name(vm), |(_, v)| v[0], 10)
    };
    let rows = rows
        .iter()
        .map(|(vm, v)| {
            let mut row = vec![("host", s(&vm.0)), ("name", s(&vm.1))];
            for (i, (c, digits)) in cols.iter().enumerate() {
                row.push((c, if ordered { r(v[i], *digits) } else { x(v[i]) }));
            }
            row
        })
        .collect();
    Expected { rows, ordered }
}

fn top_network(d: &Data, run: Run, w: Window) -> Expected {
    top_traffic(
        d,
        run,
        w,
        ["net_rx_bps", "net_tx_bps", "net_rx_pps", "net_tx_pps"],
        &[("bps", 0), ("rx_bps", 0), ("tx_bps", 0), ("pps", 0)],
        true,
    )
}

fn top_disk(d: &Data, run: Run, w: Window) -> Expected {
    top_traffic(
        d,
        run,
        w,
        ["disk_rd_bps", "disk_wr_bps", "disk_rd_iops", "disk_wr_iops"],
        &[
            ("bps", 0),
            ("rd_bps", 0),
            ("wr_bps", 0),
            ("rd_iops", 1),
            ("wr_iops", 1),
        ],
        false,
    )
}

/// 5: NICs whose drop or error counters rose within the hour.
fn nic_drops(d: &Data, run: Run, w: Window) -> Expected {
    let nics: Vec<&Point> = d
        .of("vm_devices", w)
        .into_iter()
        .filter(|p| tag(p, "devtype") == "nic")
        .collect();
    // Per NIC (host, name, uuid, device): per interval, the differences of drops and errors.
    type Nic = (String, String, String, String);
    /// Differences of drops and of errors over one interval.
    type Deltas = (Option<i64>, Option<i64>);
    let mut intervals: BTreeMap<Nic, Vec<Deltas>> = BTreeMap::new();
    let parts = group(nics, |p| {
        (tag(p, "uuid").to_owned(), tag(p, "device").to_owned())
    });
    for ps in parts.values() {
        let pair = |a: &str, b: &str| -> Vec<Option<i64>> {
            if run == Run::Sql {
                // lag(a + b)
                diffs(ps, |p| add_i(int(p, a), int(p, b)))
            } else {
                // non_negative_difference(a) + non_negative_difference(b)
                let (da, db) = (diffs(ps, |p| int(p, a)), diffs(ps, |p| int(p, b)));
                da.iter()
                    .zip(&db)
                    .map(|(x, y)| add_i(nonneg(*x), nonneg(*y)))
                    .collect()
            }
        };
        let drops = pair("rxdrops", "txdrops");
        let errors = pair("rxerrors", "txerrors");
        for (i, p) in ps.iter().enumerate() {
            let nic = (
                tag(p, "host").to_owned(),
                tag(p, "name").to_owned(),
                tag(p, "uuid").to_owned(),
                tag(p, "device").to_owned(),
            );
            intervals
                .entry(nic)
                .or_default()
                .push((drops[i], errors[i]));
        }
    }
    let rose = |v: &[Deltas]| {
        v.iter()
            .any(|(d, e)| d.is_some_and(|d| d > 0) || e.is_some_and(|e| e > 0))
    };
    let mut rows: Vec<(Nic, Option<i64>, Option<i64>)> = Vec::new();
    for (nic, v) in intervals {
        if run == Run::Sql {
            if rose(&v) {
                let drops = sum_i(v.iter().map(|(d, _)| nonneg(*d)));
                let errors = sum_i(v.iter().map(|(_, e)| nonneg(*e)));
                rows.push((nic, drops, errors));
            }
        } else {
            // WHERE drops > 0 OR errors > 0, then sum().
            let kept: Vec<_> = v.iter().filter(|row| rose(&[**row])).collect();
            if !kept.is_empty() {
                let drops = sum_i(kept.iter().map(|(d, _)| *d));
                let errors = sum_i(kept.iter().map(|(_, e)| *e));
                rows.push((nic, drops, errors));
            }
        }
    }
    let f = |v: Option<i64>| v.map(|v| v as f64);
    let ordered = run == Run::Sql;
    let rows = if ordered {
        rows.sort_by(|a, b| {
            desc(f(a.1), f(b.1))
                .then(desc(f(a.2), f(b.2)))
                .then_with(|| (&a.0 .0, &a.0 .1, &a.0 .3).cmp(&(&b.0 .0, &b.0 .1, &b.0 .3)))
        });
        rows.truncate(10);
        rows
    } else {
        top(
            rows,
            |(nic, _, _)| (nic.0.clone(), nic.1.clone(), nic.3.clone()),
            |row| f(row.1),
            10,
        )
    };
    let rows = rows
        .iter()
        .map(|(nic, drops, errors)| {
            vec![
                ("host", s(&nic.0)),
                ("name", s(&nic.1)),
                ("device", s(&nic.3)),
                ("drops", n(*drops)),
                ("errors", n(*errors)),
            ]
        })
        .collect();
    Expected { rows, ordered }
}

/// 6: per disk of the odd VM, the mean of its per-interval rates over 15 minutes.
fn disk_per_device(d: &Data, run: Run, w: Window) -> Expected {
    let disks: Vec<&Point> = d
        .of("vm_devices", w)
        .into_iter()
        .filter(|p| odd_vm(p) && tag(p, "devtype") == "disk")
        .collect();
    let fields = ["rd_bytes", "wr_bytes", "rd_req", "wr_reqs"];
    // Per device, per field: the rates of every interval without a reset.
    let mut rates: BTreeMap<String, Vec<Vec<Option<f64>>>> = BTreeMap::new();
    let parts = group(disks, |p| {
        (tag(p, "uuid").to_owned(), tag(p, "device").to_owned())
    });
    for ((_, device), ps) in &parts {
        let dt = gaps(ps);
        let per_field = rates
            .entry(device.clone())
            .or_insert_with(|| vec![Vec::new(); fields.len()]);
        for (k, f) in fields.iter().enumerate() {
            let dv = diffs(ps, |p| int(p, f));
            per_field[k].extend(
                dv.iter()
                    .zip(&dt)
                    .map(|(dv, dt)| Some(nonneg(*dv)? as f64 / (*dt)?)),
            );
        }
    }
    let ordered = run == Run::Sql;
    let digits = [0, 0, 1, 1];
    let cols = ["rd_bps", "wr_bps", "rd_iops", "wr_iops"];
    let rows = rates
        .iter()
        .map(|(device, per_field)| {
            let mut row = vec![("device", s(device))];
            for k in 0..fields.len() {
                let mean = avg_of(per_field[k].iter().copied());
                row.push((cols[k], if ordered { r(mean, digits[k]) } else { x(mean) }));
            }
            row
        })
        .collect();
    Expected { rows, ordered }
}

/// 7: each VM's latest balloon, guest memory and RSS; the most used first.
fn memory(d: &Data, run: Run, w: Window) -> Expected {
    let ordered = run == Run::Sql;
    let points: Vec<&Point> = d
        .of("vm_totals", w)
        .into_iter()
        .filter(|p| {
            let avail = int(p, "memavailable");
            if ordered {
                avail.is_some()
            } else {
                avail.is_some_and(|a| a > 0)
            }
        })
        .collect();
    // [balloon, available, used, rss, used %]
    let rows: Vec<(Vm, [Option<i64>; 4], Option<f64>)> = group(points, vm_of)
        .into_iter()
        .map(|(vm, ps)| {
            let actual = last_int(&ps, "memactual");
            let avail = last_int(&ps, "memavailable");
            let used = avail.zip(last_int(&ps, "memusable")).map(|(a, u)| a - u);
            let pct = used.zip(actual).map(|(u, a)| 100.0 * u as f64 / a as f64);
            (vm, [actual, avail, used, last_int(&ps, "memrss")], pct)
        })
        .collect();
    let rows = if ordered {
        let mut rows = rows;
        rows.sort_by(|(a, _, pa), (b, _, pb)| {
            desc(rd(*pa, 1), rd(*pb, 1)).then_with(|| by_host_name(a, b))
        });
        rows.truncate(10);
        rows
    } else {
        top(rows, |(vm, _, _)| host_and_name(vm), |(_, _, pct)| *pct, 10)
    };
    let rows = rows
        .iter()
        .map(|(vm, v, pct)| {
            vec![
                ("host", s(&vm.0)),
                ("name", s(&vm.1)),
                ("balloon_kib", n(v[0])),
                ("available_kib", n(v[1])),
                ("used_kib", n(v[2])),
                ("rss_kib", n(v[3])),
                (
                    "used_pct_of_balloon",
                    if ordered { r(*pct, 1) } else { x(*pct) },
                ),
            ]
        })
        .collect();
    Expected { rows, ordered }
}

/// 8: guests that swapped within the hour: KiB in and out, major faults.
fn swapping(d: &Data, run: Run, w: Window) -> Expected {
    let fields = ["memswap_in", "memswap_out", "memmajor_fault"];
    let cols = ["swap_in_kib", "swap_out_kib", "major_faults"];
    let points: Vec<&Point> = d
        .of("vm_totals", w)
        .into_iter()
        .filter(|p| run != Run::Sql || p.fields.contains_key("memswap_in"))
        .collect();
    // Per VM (partitioned by uuid in SQL, a series of host, name, uuid in InfluxQL), per
    // interval: the differences of the three counters.
    let key = |p: &Point| {
        if run == Run::Sql {
            (String::new(), String::new(), tag(p, "uuid").to_owned())
        } else {
            vm_of(p)
        }
    };
    let mut per_vm: BTreeMap<(String, String), Vec<[Option<i64>; 3]>> = BTreeMap::new();
    let mut per_uuid: BTreeMap<Vm, Vec<[Option<i64>; 3]>> = BTreeMap::new();
    for ps in group(points, key).values() {
        let dv: Vec<Vec<Option<i64>>> = fields.iter().map(|f| diffs(ps, |p| int(p, f))).collect();
        for (i, p) in ps.iter().enumerate() {
            let row = [dv[0][i], dv[1][i], dv[2][i]];
            if run == Run::Sql {
                per_uuid.entry(vm_of(p)).or_default().push(row);
            } else {
                per_vm
                    .entry((tag(p, "host").to_owned(), tag(p, "name").to_owned()))
                    .or_default()
                    .push(row.map(nonneg));
            }
        }
    }
    let positive = |v: Option<i64>| v.is_some_and(|v| v > 0);
    if run == Run::Sql {
        let mut rows: Vec<(Vm, Vec<Option<i64>>)> = per_uuid
            .into_iter()
            .filter(|(_, v)| v.iter().any(|r| positive(r[0]) || positive(r[1])))
            .map(|(vm, v)| {
                let sums = (0..3)
                    .map(|k| sum_i(v.iter().map(|r| nonneg(r[k]))))
                    .collect();
                (vm, sums)
            })
            .collect();
        rows.sort_by(|(_, a), (_, b)| desc(a[1].map(|v| v as f64), b[1].map(|v| v as f64)));
        Expected::ordered(
            rows.iter()
                .map(|(vm, v)| {
                    let mut row = vec![("host", s(&vm.0)), ("name", s(&vm.1))];
                    row.extend(cols.iter().zip(v).map(|(c, v)| (*c, n(*v))));
                    row
                })
                .collect(),
        )
    } else {
        // WHERE swap_in > 0 OR swap_out > 0, then sum() per host and name.
        Expected::any_order(
            per_vm
                .into_iter()
                .filter_map(|((host, name), v)| {
                    let kept: Vec<_> = v
                        .iter()
                        .filter(|r| positive(r[0]) || positive(r[1]))
                        .collect();
                    if kept.is_empty() {
                        return None;
                    }
                    let mut row = vec![("host", s(&host)), ("name", s(&name))];
                    for (k, c) in cols.iter().enumerate() {
                        row.push((*c, n(sum_i(kept.iter().map(|r| r[k])))));
                    }
                    Some(row)
                })
                .collect(),
        )
    }
}

/// Per host and VM (uuid) seen within the range, its latest point of `m`.
fn latest_per_vm<'a>(d: &'a Data, m: &str, w: Window) -> BTreeMap<String, Vec<Vec<&'a Point>>> {
    let mut out: BTreeMap<String, Vec<Vec<&Point>>> = BTreeMap::new();
    for ((host, _), ps) in group(d.of(m, w), |p| {
        (tag(p, "host").to_owned(), tag(p, "uuid").to_owned())
    }) {
        out.entry(host).or_default().push(ps);
    }
    out
}

/// 9: per host, VMs by their latest state within the minute.
fn states(d: &Data, run: Run, w: Window) -> Expected {
    let rows = latest_per_vm(d, "vm_metrics", w)
        .into_iter()
        .map(|(host, vms)| {
            let states: Vec<Option<i64>> = vms.iter().map(|ps| last_int(ps, "state")).collect();
            let count = |f: &dyn Fn(i64) -> bool| {
                let k = states.iter().flatten().filter(|s| f(**s)).count() as i64;
                // InfluxDB 1.x counts nothing as an empty column.
                if k == 0 && run == Run::InfluxQl1 {
                    None
                } else {
                    Some(k)
                }
            };
            vec![
                ("host", s(&host)),
                ("running", n(count(&|s| s == 1))),
                ("paused", n(count(&|s| s == 3))),
                ("other", n(count(&|s| s != 1 && s != 3))),
            ]
        })
        .collect();
    Expected {
        rows,
        ordered: run == Run::Sql,
    }
}

/// 10: the odd VM's devices within 5 minutes with their latest counters.
fn devices(d: &Data, run: Run, w: Window) -> Expected {
    let ps: Vec<&Point> = d
        .of("vm_devices", w)
        .into_iter()
        .filter(|p| odd_vm(p))
        .collect();
    let rows = group(ps, |p| {
        (tag(p, "devtype").to_owned(), tag(p, "device").to_owned())
    })
    .into_iter()
    .map(|((devtype, device), ps)| {
        let mut row = vec![("devtype", s(&devtype)), ("device", s(&device))];
        if run == Run::Sql {
            row.push(("last_seen", t(ps.iter().map(|p| p.time).max().unwrap_or(0))));
        }
        for f in ["rxbytes", "txbytes", "rd_bytes", "wr_bytes"] {
            row.push((f, n(last_int(&ps, f))));
        }
        row
    })
    .collect();
    Expected {
        rows,
        ordered: run == Run::Sql,
    }
}

/// 11: per host, VMs, vCPUs and memory of the latest line of each VM within the minute.
fn capacity(d: &Data, run: Run, w: Window) -> Expected {
    let rows = latest_per_vm(d, "vm_metrics", w)
        .into_iter()
        .map(|(host, vms)| {
            let sum = |f: &str| sum_i(vms.iter().map(|ps| last_int(ps, f)));
            let gib = |f: &str| sum(f).map(|v| v as f64 / 1_048_576.0);
            let vms_with_cpus = vms
                .iter()
                .filter(|ps| last_int(ps, "cpus").is_some())
                .count();
            let (memmax, balloon) = if run == Run::Sql {
                (r(gib("memmax"), 1), r(gib("mem"), 1))
            } else {
                (x(gib("memmax")), x(gib("mem")))
            };
            vec![
                ("host", s(&host)),
                ("vms", n(Some(vms_with_cpus as i64))),
                ("vcpus", n(sum("cpus"))),
                ("memmax_gib", memmax),
                ("balloon_gib", balloon),
            ]
        })
        .collect();
    Expected {
        rows,
        ordered: run == Run::Sql,
    }
}

/// 12: per host, the sum of each VM's latest rates within the minute.
fn traffic_per_host(d: &Data, run: Run, w: Window) -> Expected {
    let rows = latest_per_vm(d, "vm_features", w)
        .into_iter()
        .map(|(host, vms)| {
            let sum = |a: &str, b: &str| {
                let v: Vec<f64> = vms
                    .iter()
                    .filter_map(|ps| add(last(ps, a), last(ps, b)))
                    .collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>())
            };
            let f = |v| if run == Run::Sql { r(v, 0) } else { x(v) };
            vec![
                ("host", s(&host)),
                ("net_bps", f(sum("net_rx_bps", "net_tx_bps"))),
                ("disk_bps", f(sum("disk_rd_bps", "disk_wr_bps"))),
                ("disk_iops", f(sum("disk_rd_iops", "disk_wr_iops"))),
            ]
        })
        .collect();
    Expected {
        rows,
        ordered: run == Run::Sql,
    }
}

/// 13: the odd VM's rates interval by interval over 5 minutes, from its counters; none for
/// the interval of its restart.
fn raw_rates(d: &Data, run: Run, w: Window) -> Expected {
    let ps: Vec<&Point> = d
        .of("vm_totals", w)
        .into_iter()
        .filter(|p| odd_vm(p))
        .collect();
    let mut rows = Vec::new();
    for part in group(ps, |p| tag(p, "uuid").to_owned()).values() {
        let dt = gaps(part);
        let d_cpu = diffs(part, |p| int(p, "cputime"));
        let d_rx = diffs(part, |p| int(p, "net_rxbytes"));
        let d_wr = diffs(part, |p| int(p, "disk_wr_bytes"));
        for (i, p) in part.iter().enumerate() {
            let Some(dt) = dt[i] else { continue };
            let rate = |d: Option<i64>| nonneg(d).map(|d| d as f64 / dt);
            if run == Run::Sql {
                let cpus = int(p, "cpus");
                let cpu = nonneg(d_cpu[i])
                    .zip(cpus)
                    .map(|(d, c)| d as f64 / (dt * 1e9 * c as f64) * 100.0);
                rows.push(vec![
                    ("time", t(p.time)),
                    ("VMID", s(tag(p, "VMID"))),
                    ("cpu_pct", r(cpu, 2)),
                    ("rx_bps", r(rate(d_rx[i]), 0)),
                    ("disk_wr_bps", r(rate(d_wr[i]), 0)),
                ]);
            } else {
                let values = [
                    rate(d_cpu[i]).map(|v| v / 1e9),
                    rate(d_rx[i]),
                    rate(d_wr[i]),
                ];
                // A time at which every derivative was negative has no row.
                if values.iter().any(Option::is_some) {
                    rows.push(vec![
                        ("time", t(p.time)),
                        ("uuid", s(tag(p, "uuid"))),
                        ("cpu_cores", x(values[0])),
                        ("rx_bps", x(values[1])),
                        ("disk_wr_bps", x(values[2])),
                    ]);
                }
            }
        }
    }
    Expected::ordered(rows)
}

/// 14: bytes received and sent per VM within the day, resets skipped.
fn bytes_per_day(d: &Data, run: Run, w: Window) -> Expected {
    struct Acc {
        vmids: BTreeSet<String>,
        resets: i64,
        rx: Option<i64>,
        tx: Option<i64>,
    }
    let key = |p: &Point| {
        if run == Run::Sql {
            (String::new(), String::new(), tag(p, "uuid").to_owned())
        } else {
            vm_of(p)
        }
    };
    let mut per_vm: BTreeMap<Vm, Acc> = BTreeMap::new();
    for ps in group(d.of("vm_totals", w), key).values() {
        let d_rx = diffs(ps, |p| int(p, "net_rxbytes"));
        let d_tx = diffs(ps, |p| int(p, "net_txbytes"));
        for (i, p) in ps.iter().enumerate() {
            let acc = per_vm.entry(vm_of(p)).or_insert(Acc {
                vmids: BTreeSet::new(),
                resets: 0,
                rx: None,
                tx: None,
            });
            acc.vmids.insert(tag(p, "VMID").to_owned());
            acc.resets += i64::from(d_rx[i].is_some_and(|d| d < 0));
            acc.rx = sum_i([acc.rx, nonneg(d_rx[i])]);
            acc.tx = sum_i([acc.tx, nonneg(d_tx[i])]);
        }
    }
    let total = |a: &Acc| add_i(a.rx, a.tx).map(|v| v as f64);
    let mut rows: Vec<(Vm, Acc)> = per_vm.into_iter().collect();
    if run == Run::Sql {
        rows.sort_by(|(va, a), (vb, b)| {
            desc_nulls_last(total(a), total(b)).then_with(|| by_host_name(va, vb))
        });
        rows.truncate(10);
        Expected::ordered(
            rows.iter()
                .map(|(vm, a)| {
                    vec![
                        ("host", s(&vm.0)),
                        ("name", s(&vm.1)),
                        ("vmids", n(Some(a.vmids.len() as i64))),
                        ("resets", n(Some(a.resets))),
                        ("rx_bytes", n(a.rx)),
                        ("tx_bytes", n(a.tx)),
                    ]
                })
                .collect(),
        )
    } else {
        let rows = top(rows, |(vm, _)| host_and_name(vm), |(_, a)| total(a), 10);
        Expected::any_order(
            rows.iter()
                .map(|(vm, a)| {
                    vec![
                        ("host", s(&vm.0)),
                        ("name", s(&vm.1)),
                        ("total_bytes", n(add_i(a.rx, a.tx))),
                        ("rx_bytes", n(a.rx)),
                        ("tx_bytes", n(a.tx)),
                    ]
                })
                .collect(),
        )
    }
}

/// 15: VMs whose CPU time went down or whose VMID changed within the day.
fn restarts(d: &Data, run: Run, w: Window) -> Expected {
    // Per VM: VMIDs seen, times of the resets.
    let mut per_vm: BTreeMap<Vm, (BTreeSet<String>, Vec<i64>)> = BTreeMap::new();
    let key = |p: &Point| {
        if run == Run::Sql {
            (String::new(), String::new(), tag(p, "uuid").to_owned())
        } else {
            vm_of(p)
        }
    };
    for ps in group(d.of("vm_metrics", w), key).values() {
        let d_cpu = diffs(ps, |p| int(p, "cputime"));
        for (i, p) in ps.iter().enumerate() {
            let acc = per_vm.entry(vm_of(p)).or_default();
            acc.0.insert(tag(p, "VMID").to_owned());
            if d_cpu[i].is_some_and(|d| d < 0) {
                acc.1.push(p.time);
            }
        }
    }
    if run == Run::Sql {
        let mut rows: Vec<(Vm, usize, Vec<i64>)> = per_vm
            .into_iter()
            .filter(|(_, (ids, resets))| !resets.is_empty() || ids.len() > 1)
            .map(|(vm, (ids, resets))| (vm, ids.len(), resets))
            .collect();
        let last = |r: &[i64]| r.iter().max().map(|t| *t as f64);
        rows.sort_by(|a, b| desc(last(&a.2), last(&b.2)).then_with(|| by_host_name(&a.0, &b.0)));
        Expected::ordered(
            rows.iter()
                .map(|(vm, ids, resets)| {
                    vec![
                        ("host", s(&vm.0)),
                        ("name", s(&vm.1)),
                        ("uuid", s(&vm.2)),
                        ("vmids", n(Some(*ids as i64))),
                        ("resets", n(Some(resets.len() as i64))),
                        (
                            "last_reset",
                            resets.iter().max().map_or(Want::Null, |t| Want::Time(*t)),
                        ),
                    ]
                })
                .collect(),
        )
    } else {
        Expected::any_order(
            per_vm
                .into_iter()
                .filter(|(_, (_, resets))| !resets.is_empty())
                .map(|(vm, (_, resets))| {
                    vec![
                        ("host", s(&vm.0)),
                        ("name", s(&vm.1)),
                        ("uuid", s(&vm.2)),
                        ("resets", n(Some(resets.len() as i64))),
                    ]
                })
                .collect(),
        )
    }
}

/// 16: per host and hour of the day, mean and peak CPU and mean network rate.
fn hourly(d: &Data, run: Run, w: Window) -> Expected {
    let groups = group(d.of("vm_features", w), |p| {
        (tag(p, "host").to_owned(), p.time - p.time.rem_euclid(HOUR))
    });
    let rows = groups
        .into_iter()
        .map(|((host, hour), ps)| {
            let cpu = avg(&ps, "cpu_pct");
            let max = max_of(&ps, "cpu_pct");
            let (time, cpu, max, net) = if run == Run::Sql {
                let net = avg_of(
                    ps.iter()
                        .map(|p| add(num(p, "net_rx_bps"), num(p, "net_tx_bps"))),
                );
                ("hour", r(cpu, 2), r(max, 2), r(net, 0))
            } else {
                let net = add(avg(&ps, "net_rx_bps"), avg(&ps, "net_tx_bps"));
                ("time", x(cpu), x(max), x(net))
            };
            vec![
                (time, t(hour)),
                ("host", s(&host)),
                ("cpu_pct", cpu),
                ("cpu_pct_max", max),
                ("net_bps", net),
            ]
        })
        .collect();
    Expected {
        rows,
        ordered: run == Run::Sql,
    }
}

/// 17: per agent and source within 15 minutes: connected, VMs, cycle time, counters.
fn agent_health(d: &Data, run: Run, w: Window) -> Expected {
    let sources = d
        .of("vmtel_internal", w)
        .into_iter()
        .filter(|p| p.fields.contains_key("cycles"));
    let rows = group(sources, |p| {
        (tag(p, "host").to_owned(), tag(p, "source").to_owned())
    })
    .into_iter()
    .map(|((host, source), ps)| {
        let ms = |v: Option<f64>| v.map(|v| v / 1e6);
        let (mean, max) = (ms(avg(&ps, "cycle_ns")), ms(max_of(&ps, "cycle_ns")));
        let (mean, max) = if run == Run::Sql {
            (r(mean, 1), r(max, 1))
        } else {
            (x(mean), x(max))
        };
        let mut row = vec![("host", s(&host)), ("source", s(&source))];
        row.push(("connected", n(last_int(&ps, "connected"))));
        row.push(("domains", n(last_int(&ps, "domains"))));
        row.push(("cycle_ms", mean));
        row.push(("cycle_ms_max", max));
        for f in ["cycles", "errors", "skipped_ticks", "late_cycles"] {
            row.push((f, n(last_int(&ps, f))));
        }
        row
    })
    .collect();
    Expected {
        rows,
        ordered: run == Run::Sql,
    }
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

fn check_of(section: &Section) -> Option<&'static Check> {
    CHECKS
        .iter()
        .find(|c| c.number == section.number && c.title == section.title)
}

/// Without any server: the page parses, and its numbered sections and the checks here are
/// the same, by number and title.
#[test]
fn every_section_of_the_page_has_a_check() {
    let sections = parse_page(&read_page()).unwrap_or_else(|e| panic!("docs/queries.md: {e}"));
    let mut problems = Vec::new();
    for s in &sections {
        if check_of(s).is_none() {
            problems.push(format!(
                "section {}. {} has no check in tests/docs_queries.rs",
                s.number, s.title
            ));
        }
    }
    for c in &CHECKS {
        if !sections
            .iter()
            .any(|s| s.number == c.number && s.title == c.title)
        {
            problems.push(format!(
                "the check of section {}. {} has no section in docs/queries.md",
                c.number, c.title
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The `now()` values within `[t0, t1]` (ns) that give every distinct set of cycles within
/// `range_s`: `t0`, and just after each moment a cycle leaves the range.
fn candidate_nows(times: &BTreeSet<i64>, range_s: i64, t0: i64, t1: i64) -> Vec<i64> {
    let mut nows = vec![t0];
    for c in times {
        let leaves = (c + range_s) * NS;
        if leaves >= t0 && leaves <= t1 {
            nows.push(leaves + NS / 2);
        }
    }
    nows
}

#[test]
fn every_query_of_the_page_answers_what_the_lines_written_say() {
    let sections = parse_page(&read_page()).unwrap_or_else(|e| panic!("docs/queries.md: {e}"));
    let Some(v3) = InfluxDb3::start_or_skip(false) else {
        return;
    };
    let v1 = InfluxDb::start();
    v1.create_db(DB);
    let servers = Servers { v3, v1 };

    let started = Instant::now();
    let end_s = wall_ns().div_euclid(NS) - 1;
    let body = fleet_lines(end_s);
    let data = Data::new(parse_all(&body));
    servers.write(&body);
    servers.wait_for(&data);
    eprintln!(
        "wrote {} lines ({} bytes) to both servers in {:.1} s",
        body.lines().count(),
        body.len(),
        started.elapsed().as_secs_f64()
    );

    let mut failures = Vec::new();
    let mut answered = 0;
    for section in &sections {
        let Some(check) = check_of(section) else {
            failures.push(format!(
                "section {}. {}: no check (see every_section_of_the_page_has_a_check)",
                section.number, section.title
            ));
            continue;
        };
        for (lang, q) in &section.queries {
            let runs: &[Run] = match lang {
                Lang::Sql => &[Run::Sql],
                Lang::InfluxQl => &[Run::InfluxQl3, Run::InfluxQl1],
            };
            for &run in runs {
                let t0 = wall_ns();
                let got = servers.query(run, q);
                let t1 = wall_ns();
                let head = format!(
                    "section {}. {}, {}:\n{q}\n",
                    section.number,
                    section.title,
                    run.describe()
                );
                let got = match got {
                    Ok(rows) => rows,
                    Err(e) => {
                        failures.push(format!("{head}refused: {e}"));
                        continue;
                    }
                };
                let nows = candidate_nows(&data.times, check.range_s, t0, t1);
                let expected: Vec<Expected> = nows
                    .iter()
                    .map(|&now_ns| {
                        let w = Window {
                            now_ns,
                            secs: check.range_s,
                            strict: run != Run::Sql,
                        };
                        (check.expect)(&data, run, w)
                    })
                    .collect();
                if expected.iter().any(|e| e.rows.is_empty()) {
                    failures.push(format!(
                        "{head}the data gives this query no rows: the test must write data it answers (the last cycle is {} s old)",
                        (t0 - end_s * NS) / NS
                    ));
                    continue;
                }
                match expected
                    .iter()
                    .map(|e| compare(e, &got, run))
                    .find_map(Result::ok)
                {
                    Some(()) => answered += 1,
                    None => {
                        let why = compare(&expected[0], &got, run).err().unwrap_or_default();
                        failures.push(format!(
                            "{head}{why}\nexpected:\n{}\ngot:\n{}",
                            show_want(&expected[0].rows),
                            show_rows(&got)
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} answers are wrong:\n\n{}",
        failures.len(),
        failures.len() + answered,
        failures.join("\n\n")
    );
    eprintln!(
        "{answered} answers right, {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    if std::env::var("VMTEL_QUERIES_SAMPLES").as_deref() == Ok("1") {
        let page = read_page();
        let pretty = |endpoint: &str, q: &str| {
            let text = servers
                .v3
                .try_query_text(endpoint, DB, q, "pretty")
                .unwrap_or_else(|e| panic!("{q}: {e}"));
            cut(&text, SAMPLE_ROWS)
        };
        let mut outputs = BTreeMap::new();
        for section in &sections {
            for (lang, q) in &section.queries {
                let text = match lang {
                    Lang::Sql => pretty("/api/v3/query_sql", q),
                    Lang::InfluxQl => pretty("/api/v3/query_influxql", q),
                };
                outputs.insert((section.number, *lang), text);
            }
        }
        let page = with_samples(&page, &outputs).unwrap_or_else(|e| panic!("docs/queries.md: {e}"));
        std::fs::write(page_path(), page).expect("write docs/queries.md");
        eprintln!("rewrote the sample outputs of docs/queries.md");
    }
}

/// Data rows kept of a sample output.
const SAMPLE_ROWS: usize = 8;

/// A `format=pretty` table cut after its first `rows` data rows.
fn cut(table: &str, rows: usize) -> String {
    let lines: Vec<&str> = table.trim_end().lines().collect();
    // Border, header, border, rows..., border.
    if lines.len() <= rows + 4 {
        return lines.join("\n");
    }
    let mut kept: Vec<&str> = lines[..3 + rows].to_vec();
    kept.push(lines[lines.len() - 1]);
    kept.join("\n")
}

/// The page with the ```text block after each section's "Output (SQL):" and
/// "Output (InfluxQL):" replaced by `outputs`.
fn with_samples(page: &str, outputs: &BTreeMap<(u32, Lang), String>) -> Result<String, String> {
    let mut out: Vec<String> = Vec::new();
    let mut section = None;
    let mut replaced = BTreeSet::new();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        out.push(line.to_owned());
        if let Some(heading) = line.strip_prefix("## ") {
            section = heading
                .split_once(". ")
                .and_then(|(n, _)| n.parse::<u32>().ok());
            continue;
        }
        let lang = match line {
            "Output (SQL):" => Lang::Sql,
            "Output (InfluxQL):" => Lang::InfluxQl,
            _ => continue,
        };
        let number = section.ok_or_else(|| format!("{line:?} outside a numbered section"))?;
        let text = outputs
            .get(&(number, lang))
            .ok_or_else(|| format!("section {number}: no {lang:?} query for {line:?}"))?;
        // A blank line, the ```text block: replace what it holds.
        for expect in ["", "```text"] {
            let l = lines.next().unwrap_or_default();
            if l != expect {
                return Err(format!(
                    "section {number}: {expect:?} expected after {line:?}, found {l:?}"
                ));
            }
            out.push(l.to_owned());
        }
        for l in lines.by_ref() {
            if l == "```" {
                break;
            }
        }
        out.push(text.clone());
        out.push("```".to_owned());
        replaced.insert((number, lang));
    }
    if let Some(missing) = outputs.keys().find(|k| !replaced.contains(k)) {
        return Err(format!(
            "section {}: no sample output for {:?}",
            missing.0, missing.1
        ));
    }
    Ok(out.join("\n") + "\n")
}
