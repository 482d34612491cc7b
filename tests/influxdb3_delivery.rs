//! InfluxDB outputs against a real InfluxDB 3 Core server (`../shared/bin/influxdb3`): its v3,
//! v2 and v1 write endpoints, what it stores of a partial write and of a whole refused request
//! against what vmtel counts, precision, and tokens.

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::influx3::Influx3;
use vmtel::deliver::influxdb::{DeliveryStats, InfluxOutput, InfluxSink};
use vmtel::deliver::{Batch, Sink};
use vmtel::encode::{Encoder, Precision};
use vmtel::model::{DomainSample, HostSample};

fn output(text: &str) -> InfluxOutput {
    toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn batch(lines: &str) -> Batch {
    Batch {
        end_of_cycle: true,
        source: "test".into(),
        timestamp_ns: 0,
        lines: lines.into(),
        line_count: lines.lines().count(),
    }
}

fn start(cfg: &InfluxOutput, state: &Path, lines: &[&str]) -> (InfluxSink, Arc<DeliveryStats>) {
    let mut sink = InfluxSink::start(cfg, state, Precision::Seconds).expect("start sink");
    for l in lines {
        sink.write(&batch(l)).expect("write");
    }
    sink.flush().expect("flush");
    let stats = sink.delivery_stats().expect("stats");
    (sink, stats)
}

fn settle(stats: &DeliveryStats) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.backlog_batches.load(Ordering::Relaxed) > 0 {
        assert!(Instant::now() < deadline, "the spool did not drain in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn int(row: &Value, col: &str) -> i64 {
    row[col]
        .as_i64()
        .unwrap_or_else(|| panic!("{col} in {row}"))
}

/// One cycle of two VMs with names that need escaping, encoded by vmtel.
fn cycle(ts_s: i64, k: u64) -> String {
    let vm = |name: &str, uuid: &str| DomainSample {
        name: name.into(),
        uuid: uuid.into(),
        id: Some(7),
        state: Some(1),
        cpu: vmtel::model::CpuStats {
            time: Some(1_000_000_000 * k),
            user: Some(600_000_000 * k),
            system: Some(400_000_000 * k),
        },
        ..DomainSample::default()
    };
    let sample = HostSample {
        host: "hv 1".into(),
        timestamp_ns: ts_s * 1_000_000_000,
        domains: vec![
            vm("web 1, \"eu\"=x ü", "51a00000-0000-4000-8000-000000000001"),
            vm("db=<b>2</b>", "51a00000-0000-4000-8000-000000000002"),
        ],
    };
    let mut out = String::new();
    Encoder::default().encode_host(&sample, &[], &mut out);
    out
}

#[test]
fn every_line_is_stored_once_with_its_names_values_and_time_in_either_precision() {
    let Some(db) = Influx3::start_or_skip(false) else {
        return;
    };
    for precision in ["s", "ms"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = format!("vmtel_{precision}");
        let cfg = output(&format!(
            "url = \"{}\"\ndatabase = \"{name}\"\nprecision = \"{precision}\"\nflush_interval = \"0s\"\n",
            db.url()
        ));
        let cycles: Vec<String> = (0..3)
            .map(|c| cycle(1_795_000_000 + c * 10, c as u64 + 1))
            .collect();
        let refs: Vec<&str> = cycles.iter().map(String::as_str).collect();
        let (_sink, stats) = start(&cfg, dir.path(), &refs);
        settle(&stats);
        let lines: u64 = cycles.iter().map(|c| c.lines().count() as u64).sum();
        assert_eq!(stats.delivered_lines.load(Ordering::Relaxed), lines);
        assert_eq!(stats.rejected_lines.load(Ordering::Relaxed), 0);
        let rows = db.sql(
            &name,
            "SELECT host, name, uuid, cputime, timeusr, CAST(time AS BIGINT) AS t FROM vm_totals ORDER BY t, name",
        );
        assert_eq!(rows.len(), 6, "{rows:?}");
        for (i, r) in rows.iter().enumerate() {
            let c = (i / 2) as i64;
            assert_eq!(r["host"], "hv 1");
            assert_eq!(int(r, "t"), (1_795_000_000 + c * 10) * 1_000_000_000, "{r}");
            assert_eq!(int(r, "cputime"), 1_000_000_000 * (c + 1), "{r}");
            assert_eq!(int(r, "timeusr"), 600_000_000 * (c + 1), "{r}");
        }
        let names: Vec<&str> = rows[..2]
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert_eq!(names, ["db=<b>2</b>", "web 1, \"eu\"=x ü"]);
    }
}

#[test]
fn a_partial_write_is_counted_as_the_server_stored_it() {
    let Some(db) = Influx3::start_or_skip(false) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = output(&format!(
        "url = \"{}\"\ndatabase = \"partial\"\nflush_interval = \"0s\"\n",
        db.url()
    ));
    // `f` becomes an integer; then a batch with one float for it among three good lines.
    let (mut sink, stats) = start(&cfg, dir.path(), &["m f=1i 1795000000\n"]);
    settle(&stats);
    sink.write(&batch(
        "m f=2i 1795000001\nm f=2.5 1795000002\nm f=3i 1795000003\nm f=4i 1795000004\n",
    ))
    .expect("write");
    sink.flush().expect("flush");
    settle(&stats);
    assert_eq!(stats.rejected_lines.load(Ordering::Relaxed), 1);
    assert_eq!(stats.delivered_lines.load(Ordering::Relaxed), 4);
    let rows = db.sql("partial", "SELECT count(*) AS n FROM m");
    assert_eq!(
        int(&rows[0], "n"),
        4,
        "the server stored the four good lines"
    );
}

#[test]
fn a_whole_request_refused_on_the_v2_and_v1_endpoints_counts_every_line() {
    let Some(db) = Influx3::start_or_skip(false) else {
        return;
    };
    for api in ["v2", "v1"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = format!("whole_{api}");
        let target = if api == "v2" { "bucket" } else { "database" };
        let cfg = output(&format!(
            "url = \"{}\"\napi = \"{api}\"\n{target} = \"{name}\"\nflush_interval = \"0s\"\n",
            db.url()
        ));
        // First the integer, alone; then a request with a float for it among good lines.
        let (mut sink, stats) = start(&cfg, dir.path(), &["m f=1i 1795000000\n"]);
        settle(&stats);
        sink.write(&batch(
            "m f=2i 1795000001\nm f=2.5 1795000002\nm f=3i 1795000003\n",
        ))
        .expect("write");
        sink.flush().expect("flush");
        settle(&stats);
        assert_eq!(stats.rejected_lines.load(Ordering::Relaxed), 3, "{api}");
        assert_eq!(stats.delivered_lines.load(Ordering::Relaxed), 1, "{api}");
        let rows = db.sql(&name, "SELECT count(*) AS n FROM m");
        assert_eq!(
            int(&rows[0], "n"),
            1,
            "{api}: nothing of the refused request was stored"
        );
    }
}

#[test]
fn a_wrong_token_keeps_the_lines_until_the_right_one_delivers_them_once() {
    let Some(db) = Influx3::start_or_skip(true) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "apiv3_not-the-token\n").expect("token");
    let cfg = output(&format!(
        "url = \"{}\"\nname = \"i3\"\ndatabase = \"auth\"\ntoken_file = \"{}\"\nflush_interval = \"0s\"\n",
        db.url(),
        token.display()
    ));
    let lines: Vec<String> = (0..5)
        .map(|i| format!("m f={i}i {}\n", 1_795_000_000 + i))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (sink, stats) = start(&cfg, dir.path(), &refs);
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.retried.load(Ordering::Relaxed) < 1 {
        assert!(Instant::now() < deadline, "no retry after a refused token");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stats.backlog_batches.load(Ordering::Relaxed), 5, "kept");
    assert_eq!(stats.delivered_lines.load(Ordering::Relaxed), 0);
    drop(sink);
    std::fs::write(&token, format!("{}\n", db.token().expect("admin token"))).expect("token");
    let (_sink, stats) = start(&cfg, dir.path(), &[]);
    settle(&stats);
    let rows = db.sql("auth", "SELECT f FROM m ORDER BY time");
    let got: Vec<i64> = rows.iter().map(|r| int(r, "f")).collect();
    assert_eq!(got, [0, 1, 2, 3, 4], "every line once, in order");
}
