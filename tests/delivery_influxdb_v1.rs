//! `vmtel run` → InfluxDB 1.x (Debian's `influxd`, started on loopback) through the v1 API:
//! every line of N cycles arrives with its values; a frozen server delays but loses nothing;
//! a field type conflict is a partial write that is logged and not resent; a replay after a
//! crash between send and delete adds no duplicate; `check-output` writes nothing.

#[path = "delivery/vmtel.rs"]
mod daemon;
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use daemon::{cycle_times, deliverable, int, sink_stats, Line, Val, Vmtel};
use serde_json::Value;
use support::influxdb::InfluxDb;

/// Every point of database `db` as (measurement, tags, fields, time in s).
fn points(db: &InfluxDb, name: &str) -> Vec<Line> {
    let v = db.query(name, "SELECT * FROM /.*/ GROUP BY *");
    let mut out = Vec::new();
    let Some(series) = v["results"][0]["series"].as_array() else {
        return out;
    };
    for s in series {
        let measurement = s["name"].as_str().expect("name").to_owned();
        let tags: BTreeMap<String, String> = s["tags"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .filter(|(_, v)| !v.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let cols: Vec<&str> = s["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c.as_str().expect("column"))
            .collect();
        for row in s["values"].as_array().expect("values") {
            let row = row.as_array().expect("row");
            let mut fields = BTreeMap::new();
            let mut ts = 0;
            for (c, v) in cols.iter().zip(row) {
                if *c == "time" {
                    ts = v.as_i64().expect("time");
                } else if let Some(i) = v.as_i64() {
                    fields.insert(c.to_string(), Val::Int(i));
                } else if let Some(f) = v.as_f64() {
                    fields.insert(c.to_string(), Val::Float(f));
                }
            }
            out.push(Line {
                measurement: measurement.clone(),
                tags: tags.clone(),
                fields,
                ts,
            });
        }
    }
    out
}

/// Whether a stored point equals a written line. JSON shows a float such as 0.0 as 0, and
/// serde_json (without `float_roundtrip`) may parse a float 1 ulp off, so floats are compared
/// to within 2 ulp; integers exactly.
fn same(stored: &Line, written: &Line) -> bool {
    stored.measurement == written.measurement
        && stored.tags == written.tags
        && stored.ts == written.ts
        && stored.fields.len() == written.fields.len()
        && written
            .fields
            .iter()
            .all(|(k, w)| match (stored.fields.get(k), w) {
                (Some(Val::Int(a)), Val::Int(b)) => a == b,
                (Some(s), Val::Float(b)) => {
                    let a = s.as_f64();
                    (a - b).abs() <= 2.0 * f64::EPSILON * a.abs().max(b.abs())
                }
                _ => false,
            })
}

/// Lines of `want` missing from `got`, and points of `got` stored twice.
fn missing<'a>(want: &'a [Line], got: &[Line]) -> Vec<&'a Line> {
    want.iter()
        .filter(|w| !got.iter().any(|g| same(g, w)))
        .collect()
}

fn config(db: &InfluxDb, extra: &str) -> String {
    format!(
        "interval = \"1s\"\n[[sources]]\nuri = \"test:///default\"\nhost = \"hv\"\n\
         [[outputs.influxdb]]\nname = \"central\"\napi = \"v1\"\nurl = \"{}\"\ndatabase = \"vmtel\"\n\
         flush_interval = \"100ms\"\n{extra}\n",
        db.url()
    )
}

/// Waits until every line the file sink holds before its newest cycle is stored in InfluxDB.
fn wait_delivered(d: &Vmtel, db: &InfluxDb, secs: u64) -> (Vec<Line>, Vec<Line>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let lines = d.lines();
        let newest = *cycle_times(&lines, "vm_metrics")
            .last()
            .unwrap_or(&i64::MAX);
        let want = deliverable(&lines, newest);
        let got = points(db, "vmtel");
        let gap = missing(&want, &got);
        if !want.is_empty() && gap.is_empty() {
            return (want, got);
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} lines not in InfluxDB after {secs}s, e.g. {:?}\nstderr:\n{}",
            gap.len(),
            want.len(),
            gap.first(),
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_line_of_n_cycles_arrives_with_its_values_and_the_database_is_created() {
    let db = InfluxDb::start();
    // No database yet: the first write is a 404, create_database makes it.
    let mut d = Vmtel::start(&config(&db, "create_database = true"));
    d.wait_for(60, "6 cycles", |l| cycle_times(l, "vm_metrics").len() >= 6);
    let (want, got) = wait_delivered(&d, &db, 60);
    assert!(cycle_times(&want, "vm_metrics").len() >= 5);
    // Every measurement vmtel writes is there, each point exactly once (InfluxDB keys points by
    // series and time, so a duplicate would show up as a count above one per key).
    for m in [
        "vm_metrics",
        "vm_totals",
        "vm_devices",
        "vm_features",
        "vmtel_internal",
    ] {
        assert!(want.iter().any(|l| l.measurement == m), "no {m} written");
    }
    let mut keys: Vec<_> = got
        .iter()
        .map(|p| (&p.measurement, &p.tags, p.ts))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "a point is stored twice");
    let stats = sink_stats(&d.lines(), "influxdb:central").cloned();
    assert!(int(stats.as_ref(), "delivered_lines") > 0, "{stats:?}");
    assert_eq!(int(stats.as_ref(), "dropped_lines"), 0);
    assert_eq!(
        stats
            .as_ref()
            .and_then(|s| s.fields.get("memory_dropped_lines"))
            .map(|v| v.as_f64()),
        Some(0.0),
        "vmtel_internal reports drops from memory (none here): {stats:?}"
    );
    d.term();
}

#[test]
fn a_frozen_server_delays_delivery_but_loses_and_duplicates_nothing() {
    let db = InfluxDb::start();
    db.create_db("vmtel");
    let d = Vmtel::start(&config(&db, "timeout = \"1s\""));
    d.wait_for(60, "2 cycles", |l| cycle_times(l, "vm_metrics").len() >= 2);
    let stop = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &db.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig}");
    };
    stop("-STOP");
    let frozen = d.wait_for(60, "timeouts to be retried", |l| {
        int(sink_stats(l, "influxdb:central"), "retried") >= 2
            && int(sink_stats(l, "influxdb:central"), "backlog_batches") >= 2
    });
    stop("-CONT");
    let before = cycle_times(&frozen, "vm_metrics").len();
    d.wait_for(60, "collection went on", |l| {
        cycle_times(l, "vm_metrics").len() >= before + 2
    });
    let (_, got) = wait_delivered(&d, &db, 120);
    let mut keys: Vec<_> = got
        .iter()
        .map(|p| (&p.measurement, &p.tags, p.ts))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "a point is stored twice");
    let times = cycle_times(&got, "vm_metrics");
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
}

#[test]
fn a_field_type_conflict_is_a_partial_write_logged_and_not_resent() {
    let db = InfluxDb::start();
    db.create_db("vmtel");
    // `cpus` is an integer in vmtel's lines; make it a float in this shard first.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let (status, body) = db.write(
        "vmtel",
        &format!("vm_metrics,host=other cpus=1.5 {now}\n"),
        "s",
    );
    assert_eq!(status, 204, "{body}");
    let d = Vmtel::start(&config(&db, ""));
    let lines = d.wait_for(60, "3 requests settled with refused lines", |l| {
        let s = sink_stats(l, "influxdb:central");
        int(s, "rejected_lines") >= 3 && int(s, "delivered_requests") >= 3
    });
    // The good lines of the same requests are stored.
    let times = cycle_times(&lines, "vm_totals");
    let got = points(&db, "vmtel");
    let first = times[0];
    let want: Vec<Line> = lines
        .iter()
        .filter(|l| l.ts == first && l.measurement == "vm_totals")
        .cloned()
        .collect();
    assert!(!want.is_empty());
    assert!(
        missing(&want, &got).is_empty(),
        "good lines of a partial write are stored"
    );
    // The conflicting lines are not stored and were not retried.
    assert!(
        !got.iter().any(|p| p.measurement == "vm_metrics"
            && p.tags.get("host").map(String::as_str) == Some("hv")),
        "vm_metrics with an integer cpus cannot be stored"
    );
    let s = sink_stats(&lines, "influxdb:central");
    assert_eq!(int(s, "retried"), 0, "a refused line is never resent");
    let err = d.stderr();
    let warnings = err
        .lines()
        .filter(|l| l.contains("the server refused"))
        .count();
    assert!(warnings >= 1, "{err}");
    assert!(err.contains("field type conflict"), "{err}");
    assert!(err.contains("not resent"), "{err}");
    // One warning per refused request at most (identical ones are rate-limited), never per retry.
    assert!(
        warnings as i64 <= int(s, "delivered_requests"),
        "{warnings} warnings for {} requests",
        int(s, "delivered_requests")
    );
}

#[test]
fn a_replay_after_a_crash_between_send_and_delete_stores_no_duplicate() {
    use vmtel::deliver::influxdb::spool::{NewRow, Spool, SpoolOptions};
    use vmtel::deliver::influxdb::{DeliveryStats, InfluxOutput, InfluxSink};
    let db = InfluxDb::start();
    db.create_db("vmtel");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg: InfluxOutput = toml::from_str(&format!(
        "name = \"r\"\napi = \"v1\"\nurl = \"{}\"\ndatabase = \"vmtel\"\nflush_interval = \"0s\"\n",
        db.url()
    ))
    .expect("config");
    let path = dir.path().join(cfg.spool_file_name());
    // Spool 50 batches of 20 lines, without a sender.
    let bodies: Vec<String> = (0..50)
        .map(|b| {
            (0..20)
                .map(|i| format!("replay,vm=v{i} n={b}i {}\n", 1_700_000_000 + b))
                .collect()
        })
        .collect();
    {
        let opts = SpoolOptions {
            max_bytes: 1 << 30,
            max_age: None,
            sync: Default::default(),
        };
        let (mut s, _) =
            Spool::open(&path, opts, std::sync::Arc::new(DeliveryStats::default())).expect("spool");
        let rows: Vec<NewRow<'_>> = bodies
            .iter()
            .map(|b| NewRow {
                created_ns: 1,
                body: b,
                lines: 20,
                precision: vmtel::encode::Precision::Seconds,
            })
            .collect();
        s.append(&rows).expect("append");
    }
    // The files as they are before sending = what a crash after the send but before the delete
    // leaves behind.
    let snapshot = dir.path().join("snapshot");
    std::fs::copy(&path, &snapshot).expect("snapshot");
    let deliver = || {
        let sink =
            InfluxSink::start(&cfg, dir.path(), &vmtel::encode::Encoder::default()).expect("sink");
        let stats = vmtel::deliver::Sink::delivery_stats(&sink).expect("stats");
        let deadline = Instant::now() + Duration::from_secs(60);
        while stats.backlog_batches.load(Ordering::Relaxed) > 0 {
            assert!(Instant::now() < deadline, "spool not delivered");
            std::thread::sleep(Duration::from_millis(20));
        }
        stats.delivered_lines.load(Ordering::Relaxed)
    };
    assert_eq!(deliver(), 1000);
    std::fs::copy(&snapshot, &path).expect("restore the pre-delete state");
    assert_eq!(deliver(), 1000, "the whole spool is sent again");
    let v = db.query("vmtel", "SELECT count(n) FROM replay GROUP BY vm");
    let series = v["results"][0]["series"].as_array().expect("series");
    assert_eq!(series.len(), 20);
    for s in series {
        assert_eq!(s["values"][0][1], Value::from(50), "each point once: {s}");
    }
}

#[test]
fn check_output_reports_reachability_auth_and_database_and_writes_nothing() {
    let db = InfluxDb::start();
    db.create_db("present");
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |database: &str, url: &str| {
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            format!(
                "[[outputs.influxdb]]\napi = \"v1\"\nurl = \"{url}\"\ndatabase = \"{database}\"\n"
            ),
        )
        .expect("write");
        let out = Command::new(daemon::VMTEL)
            .args(["check-output", "--config"])
            .arg(&p)
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run("present", &db.url());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(": ok")
            && out.contains("reachable: yes")
            && out.contains("\"present\" exists"),
        "{out}"
    );
    let (code, out) = run("absent", &db.url());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAILED") && out.contains("\"absent\" does not exist"),
        "{out}"
    );
    let (code, out) = run("present", "http://127.0.0.1:9");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("reachable: no"), "{out}");
    // Nothing was written or created.
    let v = db.query("", "SHOW DATABASES");
    let names: Vec<&str> = v["results"][0]["series"][0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .filter_map(|r| r[0].as_str())
        .collect();
    assert!(!names.contains(&"absent"), "{names:?}");
    assert!(db.query("present", "SHOW MEASUREMENTS")["results"][0]["series"].is_null());
}
