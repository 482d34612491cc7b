//! InfluxDB outputs against a real InfluxDB 3 Core server (`../shared/bin/influxdb3`), in
//! process: what the server stores, read back by SQL, for tricky tags over gzip in `s` and `ms`
//! precision, a partial write on the v3 endpoint, whole-request refusals on the v2 and v1
//! endpoints, a wrong token fixed by a restart, and a database created on first write.
//!
//! Each test starts its own server and skips (with a note on stderr) when the binary is
//! missing, unless `CI=true`.

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::influxdb3::InfluxDb3;
use support::sink::{output, start_and_write, token_file};
use vmtel::deliver::influxdb::spool::{Spool, SpoolOptions};
use vmtel::deliver::influxdb::{DeliveryStats, InfluxOutput};
use vmtel::encode::line::Line;

/// Longest wait for a delivery condition.
const SETTLE: Duration = Duration::from_secs(20);

/// Polls `cond` on the stats until it holds; fails after `limit` with the stats and the
/// server's log.
fn wait_for(
    server: &InfluxDb3,
    stats: &DeliveryStats,
    limit: Duration,
    what: &str,
    cond: impl Fn(&DeliveryStats) -> bool,
) {
    let deadline = Instant::now() + limit;
    while !cond(stats) {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}; {stats:?}\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Batches in the spool file itself, counted on a connection of our own. The sink's
/// `backlog_batches` is not used for this: it can miss rows committed while the sender starts.
fn spooled(cfg: &InfluxOutput, state: &Path) -> u64 {
    let counts = Arc::new(DeliveryStats::default());
    let options = SpoolOptions {
        max_bytes: cfg.spool_max_size.as_u64(),
        max_age: None,
        sync: Default::default(),
    };
    let path = state.join(cfg.spool_file_name());
    let spool = Spool::attach(&path, options, Arc::clone(&counts)).expect("open the spool");
    spool.load_backlog().expect("count the spool");
    load(&counts.backlog_batches)
}

/// Waits until `lines` lines are settled (delivered or rejected) and the spool file is empty.
fn wait_settled(
    server: &InfluxDb3,
    stats: &DeliveryStats,
    cfg: &InfluxOutput,
    state: &Path,
    lines: u64,
) {
    wait_for(
        server,
        stats,
        SETTLE,
        "every line settled and an empty spool",
        |s| load(&s.delivered_lines) + load(&s.rejected_lines) >= lines && spooled(cfg, state) == 0,
    );
    assert_eq!(load(&stats.backlog_batches), 0, "{stats:?}");
}

fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn str_of<'a>(row: &'a Value, col: &str) -> &'a str {
    row[col]
        .as_str()
        .unwrap_or_else(|| panic!("column {col} is not a string in {row}"))
}

fn i64_of(row: &Value, col: &str) -> i64 {
    row[col]
        .as_i64()
        .unwrap_or_else(|| panic!("column {col} is not an integer in {row}"))
}

/// A float column read as `CAST(col AS VARCHAR)`: the server's own text, parsed exactly.
fn f64_of(row: &Value, col: &str) -> f64 {
    str_of(row, col)
        .parse()
        .unwrap_or_else(|e| panic!("column {col} is not a float ({e}) in {row}"))
}

fn rows(server: &InfluxDb3, db: &str, sql: &str) -> Vec<Value> {
    match server.query_sql(db, sql) {
        Value::Array(rows) => rows,
        other => panic!("{sql}: not an array of rows: {other}"),
    }
}

/// `(time in ns, f)` of every row of table `m`, in time order.
fn m_rows(server: &InfluxDb3, db: &str) -> Vec<(i64, i64)> {
    rows(
        server,
        db,
        "SELECT CAST(time AS BIGINT) AS t, f FROM m ORDER BY time",
    )
    .iter()
    .map(|r| (i64_of(r, "t"), i64_of(r, "f")))
    .collect()
}

// ---------------------------------------------------------------------------------------------
// a. Tricky tags, exact values, gzip, s and ms precision.
// ---------------------------------------------------------------------------------------------

/// Tag values with spaces, commas, equals signs, quotes, a backslash and non-ASCII text; each is
/// stored as it is (vmtel's escaping changes none of them).
const VMS: [(&str, &str); 4] = [
    ("hv 1,rack=2", "web \"front\" 'a'"),
    ("hv 1,rack=2", "é名🦀 x=y,z"),
    ("hv=2", "back\\slash ok"),
    ("hv=2", "plain"),
];

/// First cycle's timestamp, in seconds; cycles are 10 s apart.
const T0: i64 = 1_700_000_000;
const CYCLES: i64 = 3;

/// `state` and `mem` of one VM in one cycle; `mem` is above 2^53 or near `i64::MAX` (no float
/// holds these exactly), negative, or 2^40.
fn ints(vm: usize, cycle: i64) -> (i64, i64) {
    let mem = [9_007_199_254_740_993, i64::MAX, -42, 1 << 40][vm] - cycle;
    (vm as i64 * 10 + cycle, mem)
}

/// Percentages per cycle and VM, each with at most six decimals (what vmtel writes them with).
const PCT: [[f64; 4]; CYCLES as usize] = [
    [12.345678, 0.000125, 99.5, 0.1],
    [13.5, 0.000001, -7.25, 33.333333],
    [0.0, 100.0, 1.999999, 0.000005],
];

/// A percentage, and a rate of 4·10⁹ or more (above 9·10⁹ written in full).
fn floats(vm: usize, cycle: i64) -> (f64, f64) {
    let big = [123_456_789_012.5, 9.5e12, 1.0e15, 4.0e9][vm] * (cycle + 1) as f64;
    (PCT[cycle as usize][vm], big)
}

/// One cycle's lines, built with vmtel's line builder, timestamps in `precision` (`s`, `ms`).
fn cycle_lines(cycle: i64, precision: &str) -> String {
    let unit = if precision == "ms" { 1000 } else { 1 };
    let t = (T0 + 10 * cycle) * unit;
    let mut buf = String::new();
    for (i, (host, name)) in VMS.iter().enumerate() {
        let (state, mem) = ints(i, cycle);
        let mut l = Line::new(&mut buf, "vm_metrics");
        l.tag("host", host).tag("name", name);
        l.field_i64(vmtel::key!("state"), Some(state))
            .field_i64(vmtel::key!("mem"), Some(mem));
        assert!(l.finish(t));
        let (pct, big) = floats(i, cycle);
        let mut l = Line::new(&mut buf, "vm_features");
        l.tag("host", host).tag("name", name);
        l.field_f64(vmtel::key!("cpu_pct"), Some(pct))
            .field_f64(vmtel::key!("net_rx_bps"), Some(big));
        assert!(l.finish(t));
    }
    buf
}

fn tricky_lines_are_stored_once_with_exact_values(precision: &str) {
    let Some(server) = InfluxDb3::start_or_skip(false) else {
        return;
    };
    let db = format!("tricky_{precision}");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = output(&format!(
        "url = \"{}\"\ndatabase = \"{db}\"\nprecision = \"{precision}\"\ngzip = true\nflush_interval = \"0s\"\n",
        server.url()
    ));
    let batches: Vec<String> = (0..CYCLES).map(|c| cycle_lines(c, precision)).collect();
    let total: u64 = batches.iter().map(|b| b.lines().count() as u64).sum();
    let (_sink, stats) = start_and_write(&cfg, dir.path(), &batches);
    wait_settled(&server, &stats, &cfg, dir.path(), total);
    assert_eq!(load(&stats.delivered_lines), total, "{stats:?}");
    assert_eq!(load(&stats.rejected_lines), 0, "{stats:?}");
    assert_eq!(load(&stats.retried), 0, "{stats:?}");

    let mut want_metrics = Vec::new();
    let mut want_features = Vec::new();
    for cycle in 0..CYCLES {
        let ns = (T0 + 10 * cycle) * 1_000_000_000;
        for (i, (host, name)) in VMS.iter().enumerate() {
            let (state, mem) = ints(i, cycle);
            want_metrics.push((host.to_string(), name.to_string(), ns, state, mem));
            let (pct, big) = floats(i, cycle);
            want_features.push((
                host.to_string(),
                name.to_string(),
                ns,
                pct.to_bits(),
                big.to_bits(),
            ));
        }
    }
    want_metrics.sort();
    want_features.sort();

    let mut got_metrics: Vec<_> = rows(
        &server,
        &db,
        "SELECT host, name, CAST(time AS BIGINT) AS t, state, mem FROM vm_metrics",
    )
    .iter()
    .map(|r| {
        (
            str_of(r, "host").to_owned(),
            str_of(r, "name").to_owned(),
            i64_of(r, "t"),
            i64_of(r, "state"),
            i64_of(r, "mem"),
        )
    })
    .collect();
    got_metrics.sort();
    assert_eq!(got_metrics, want_metrics, "vm_metrics as stored");

    let mut got_features: Vec<_> = rows(
        &server,
        &db,
        "SELECT host, name, CAST(time AS BIGINT) AS t, CAST(cpu_pct AS VARCHAR) AS cpu_pct, \
         CAST(net_rx_bps AS VARCHAR) AS net_rx_bps FROM vm_features",
    )
    .iter()
    .map(|r| {
        (
            str_of(r, "host").to_owned(),
            str_of(r, "name").to_owned(),
            i64_of(r, "t"),
            f64_of(r, "cpu_pct").to_bits(),
            f64_of(r, "net_rx_bps").to_bits(),
        )
    })
    .collect();
    got_features.sort();
    assert_eq!(
        got_features, want_features,
        "vm_features as stored (float bits)"
    );
}

#[test]
fn v3_gzip_tricky_tags_exact_values_precision_s() {
    tricky_lines_are_stored_once_with_exact_values("s");
}

#[test]
fn v3_gzip_tricky_tags_exact_values_precision_ms() {
    tricky_lines_are_stored_once_with_exact_values("ms");
}

// ---------------------------------------------------------------------------------------------
// b, c. A field type conflict: partial on v3, the whole request on v2 and v1.
// ---------------------------------------------------------------------------------------------

/// Three good lines and, second, one whose float `f` conflicts with the integer column.
const CONFLICT_BATCH: &str = "m f=2i 1001\nm f=1.5 1002\nm f=3i 1003\nm f=4i 1004\n";
/// The row written first, so that `f` is an integer column.
const SEED: (i64, i64) = (1_000_000_000_000, 1);

/// Starts a server, seeds `m f=1i 1000` in `db`, and sends [`CONFLICT_BATCH`] through an output
/// with `api_toml`; returns the server and the settled stats.
fn send_conflict(db: &str, api_toml: &str) -> Option<(InfluxDb3, Arc<DeliveryStats>)> {
    let server = InfluxDb3::start_or_skip(false)?;
    let (status, body) = server.write_lp(db, "m f=1i 1000\n", "second");
    assert_eq!(status, 204, "seed write: {body}");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = output(&format!(
        "url = \"{}\"\n{api_toml}\nflush_interval = \"0s\"\n",
        server.url()
    ));
    let (sink, stats) = start_and_write(&cfg, dir.path(), &[CONFLICT_BATCH.to_owned()]);
    let lines = CONFLICT_BATCH.lines().count() as u64;
    wait_settled(&server, &stats, &cfg, dir.path(), lines);
    drop(sink);
    Some((server, stats))
}

#[test]
fn v3_partial_write_keeps_the_good_lines_and_is_not_resent() {
    let db = "partial_v3";
    let Some((server, stats)) = send_conflict(db, &format!("database = \"{db}\"")) else {
        return;
    };
    assert_eq!(load(&stats.rejected_lines), 1, "{stats:?}");
    assert_eq!(load(&stats.delivered_lines), 3, "{stats:?}");
    assert_eq!(load(&stats.delivered_requests), 1, "sent once: {stats:?}");
    assert_eq!(load(&stats.retried), 0, "{stats:?}");
    let s = 1_000_000_000;
    assert_eq!(
        m_rows(&server, db),
        [SEED, (1001 * s, 2), (1003 * s, 3), (1004 * s, 4)],
        "the seed and the three good lines"
    );
}

/// The v2 and v1 endpoints refuse the whole request: every line counts as rejected.
fn whole_request_refused(db: &str, api_toml: &str) {
    let Some((server, stats)) = send_conflict(db, api_toml) else {
        return;
    };
    let lines = CONFLICT_BATCH.lines().count() as u64;
    assert_eq!(load(&stats.rejected_lines), lines, "{stats:?}");
    assert_eq!(load(&stats.delivered_lines), 0, "{stats:?}");
    assert_eq!(load(&stats.delivered_requests), 1, "sent once: {stats:?}");
    assert_eq!(load(&stats.retried), 0, "{stats:?}");
    assert_eq!(m_rows(&server, db), [SEED], "none of the batch is stored");
}

#[test]
fn v2_endpoint_refuses_the_whole_request() {
    whole_request_refused("whole_v2", "api = \"v2\"\nbucket = \"whole_v2\"");
}

#[test]
fn v1_endpoint_refuses_the_whole_request() {
    whole_request_refused("whole_v1", "api = \"v1\"\ndatabase = \"whole_v1\"");
}

// ---------------------------------------------------------------------------------------------
// d. A wrong token, fixed by a restart.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_wrong_token_keeps_the_spool_until_a_restart_with_the_right_one() {
    let Some(server) = InfluxDb3::start_or_skip(true) else {
        return;
    };
    let db = "auth";
    let good = server
        .token()
        .expect("an auth server has a token")
        .to_owned();
    let (status, body) = server.write_lp(db, "m f=1i 1000\n", "second");
    assert_eq!(status, 204, "seed write with the admin token: {body}");
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = token_file(dir.path(), "apiv3_not-the-right-token");
    let cfg = output(&format!(
        "url = \"{}\"\ndatabase = \"{db}\"\ntoken_file = \"{tok}\"\nflush_interval = \"0s\"\n",
        server.url()
    ));
    let batches: Vec<String> = (1..=3)
        .map(|i| format!("m f={}i {}\n", i + 1, 1000 + i))
        .collect();
    let (sink, stats) = start_and_write(&cfg, dir.path(), &batches);
    wait_for(&server, &stats, SETTLE, "two refused attempts", |s| {
        s.retried.load(Ordering::Relaxed) >= 2
    });
    assert_eq!(spooled(&cfg, dir.path()), 3, "all kept: {stats:?}");
    assert_eq!(load(&stats.delivered_lines), 0, "{stats:?}");
    assert_eq!(load(&stats.rejected_lines), 0, "{stats:?}");
    assert_eq!(
        m_rows(&server, db),
        [SEED],
        "nothing stored with the wrong token"
    );

    // Fix the token and restart the output on the same spool.
    drop(sink);
    token_file(dir.path(), &good);
    let (_sink, stats) = start_and_write::<&str>(&cfg, dir.path(), &[]);
    wait_settled(&server, &stats, &cfg, dir.path(), 3);
    assert_eq!(load(&stats.delivered_lines), 3, "{stats:?}");
    assert_eq!(load(&stats.rejected_lines), 0, "{stats:?}");
    let s = 1_000_000_000;
    assert_eq!(
        m_rows(&server, db),
        [SEED, (1001 * s, 2), (1002 * s, 3), (1003 * s, 4)],
        "every spooled line once"
    );
}

// ---------------------------------------------------------------------------------------------
// e. A missing database with create_database = true.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_missing_database_with_create_database_gets_the_lines() {
    let Some(server) = InfluxDb3::start_or_skip(false) else {
        return;
    };
    let db = "created_on_demand";
    assert!(
        server.try_query_sql(db, "SELECT 1").is_err(),
        "the database must not exist yet"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = output(&format!(
        "url = \"{}\"\ndatabase = \"{db}\"\ncreate_database = true\nflush_interval = \"0s\"\n",
        server.url()
    ));
    let lines = "m f=1i 1000\nm f=2i 1001\nm f=3i 1002\n".to_owned();
    let (_sink, stats) = start_and_write(&cfg, dir.path(), &[lines]);
    wait_settled(&server, &stats, &cfg, dir.path(), 3);
    assert_eq!(load(&stats.delivered_lines), 3, "{stats:?}");
    assert_eq!(load(&stats.rejected_lines), 0, "{stats:?}");
    let s = 1_000_000_000;
    assert_eq!(
        m_rows(&server, db),
        [(1000 * s, 1), (1001 * s, 2), (1002 * s, 3)]
    );
}
