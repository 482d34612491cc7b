//! The embedded history: roll-ups and retention (on the store sink directly, with synthetic
//! batches over weeks of time), and as a process: restart keeps history, a full store and a
//! corrupt file give clear errors while collection goes on.

#[path = "browser/harness.rs"]
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{vms_with_cpu, Vmtel};
use rusqlite::Connection;
use vmtel::daemon::internal::SourceCounters;
use vmtel::deliver::batch::{Internal, Payload, Subject, VmChunk};
use vmtel::deliver::{Batch, Sink};
use vmtel::model::{DomainSample, HostSample};
use vmtel::store::{StoreSettings, StoreSink, StoreStatus};

const MIN: i64 = 60_000;
const DAY: i64 = 86_400_000;
/// A minute boundary, ms.
const T0: i64 = 1_800_000_000_000 / MIN * MIN;

/// One cycle: VM "a b" with its CPU time and state, and a source's `vmtel_internal` record.
fn write_cycle(sink: &mut StoreSink, ts_ms: i64, cputime: i64) {
    let ts = ts_ms * 1_000_000;
    let mut vm = DomainSample {
        name: "a b".into(),
        uuid: "u".into(),
        id: Some(1),
        state: Some(1),
        ..DomainSample::default()
    };
    vm.cpu.time = u64::try_from(cputime).ok();
    let sample = HostSample {
        host: "h".into(),
        timestamp_ns: ts,
        domains: vec![vm],
    };
    let vms = Batch {
        end_of_cycle: false,
        source: "test:///default".into(),
        timestamp_ns: ts,
        payload: Payload::Vms(VmChunk::new(sample, Vec::new(), None)),
    };
    let internal = Batch {
        end_of_cycle: true,
        source: "test:///default".into(),
        timestamp_ns: ts,
        payload: Payload::Internal(vec![Internal {
            host: "x".into(),
            subject: Subject::Source {
                uri: "test:///default".into(),
                counters: SourceCounters {
                    cycles: u64::try_from(cputime).unwrap_or(0),
                    ..SourceCounters::default()
                },
            },
        }]),
    };
    sink.write(&vms).expect("write");
    sink.write(&internal).expect("write");
}

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).expect(sql)
}

#[test]
fn rollups_and_retention_by_age() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("history.db");
    let status = Arc::new(StoreStatus::default());
    let mut sink = StoreSink::new(StoreSettings {
        path: path.clone(),
        retention_raw: Duration::from_secs(7 * 86_400),
        retention_rollup: Duration::from_secs(30 * 86_400),
        max_size: 1 << 30,
        status: Arc::clone(&status),
    });
    // Three minutes at 10 s: cputime 0, 10, 20, ... 170, and one cycle of minute 3.
    for i in 0..18 {
        write_cycle(&mut sink, T0 + i * 10_000, i * 10);
    }
    write_cycle(&mut sink, T0 + 3 * MIN, 180);
    let c = Connection::open(&path).expect("open");
    assert_eq!(
        count(&c, "SELECT COUNT(*) FROM series WHERE kind = 3"),
        1,
        "one source"
    );
    assert_eq!(
        count(&c, "SELECT COUNT(DISTINCT ts) FROM head"),
        19,
        "one head row per cycle"
    );
    assert_eq!(status.view().errors, 0);

    // Eight days later: the old cycles are compacted, their raw chunks (older than 7 days)
    // deleted, their roll-ups kept.
    write_cycle(&mut sink, T0 + 8 * DAY, 1000);
    assert_eq!(
        count(
            &c,
            &format!("SELECT COUNT(*) FROM head WHERE ts < {}", T0 + DAY)
        ),
        0
    );
    assert_eq!(
        count(
            &c,
            &format!("SELECT COUNT(*) FROM chunks WHERE start_ts < {}", T0 + DAY)
        ),
        0
    );
    assert!(
        count(&c, "SELECT COUNT(*) FROM rollups") >= 2,
        "VM and source roll-ups"
    );
    assert_eq!(
        status.view().oldest_raw_ms,
        Some(u64::try_from(T0 + 8 * DAY).expect("ts"))
    );

    // 31 days later: the roll-ups of the first minutes go too.
    write_cycle(&mut sink, T0 + 31 * DAY, 2000);
    assert_eq!(
        count(
            &c,
            &format!("SELECT COUNT(*) FROM rollups WHERE start_ts < {}", T0 + DAY)
        ),
        0
    );
    drop(sink);

    // A clean stop compacted the head: the last cycle is in a chunk and rolled up.
    assert_eq!(count(&c, "SELECT COUNT(*) FROM head"), 0);
    assert!(
        count(
            &c,
            &format!(
                "SELECT COUNT(*) FROM rollups WHERE start_ts = {}",
                T0 + 31 * DAY
            )
        ) > 0
    );
    assert!(
        count(
            &c,
            &format!(
                "SELECT COUNT(*) FROM chunks WHERE end_ts = {}",
                T0 + 31 * DAY
            )
        ) > 0
    );
}

#[test]
fn restart_keeps_history() {
    let v = Vmtel::run("", &[]);
    let fleet = v.wait_json("/api/fleet", 60, "CPU values", |f| vms_with_cpu(f) == 16);
    let uuid = fleet["vms"][0]["uuid"].as_str().expect("uuid").to_owned();
    let host = fleet["vms"][0]["host"].as_str().expect("host").to_owned();
    let path = format!("/api/vm?host={host}&uuid={uuid}&range=15m");
    let before = v.wait_json(&path, 30, "three CPU points", |d| {
        d["charts"][0]["t"].as_array().is_some_and(|t| t.len() >= 3)
    });
    let first = before["charts"][0]["t"][0].as_i64().expect("first point");
    let v = v.restart();
    let after = v.wait_json(&path, 60, "new points after the restart", |d| {
        d["latest"]["current"] == true
            && d["charts"][0]["t"]
                .as_array()
                .and_then(|t| t.last())
                .and_then(|t| t.as_i64())
                .is_some_and(|t| t > first + 3000)
    });
    assert_eq!(
        after["charts"][0]["t"][0].as_i64(),
        Some(first),
        "points from before the restart are still there"
    );
}

fn file_len(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Polls until the file output grows past `len`: collection goes on.
fn output_grows(v: &Vmtel, len: u64) {
    let out = v.dir.join("out.lp");
    let deadline = Instant::now() + Duration::from_secs(30);
    while file_len(&out) <= len {
        assert!(
            Instant::now() < deadline,
            "collection stopped:\n{}",
            v.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn full_store_is_a_clear_error_and_collection_goes_on() {
    let v = Vmtel::run("[store]\nmax_size = \"64 KiB\"\n", &[]);
    let status = v.wait_json("/api/status", 60, "the store to report it is full", |s| {
        s["store"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("full"))
    });
    let msg = status["store"]["last_error"].as_str().unwrap_or_default();
    assert!(msg.contains("max_size"), "the error names the fix: {msg}");
    assert!(msg.contains("Collection goes on"), "{msg}");
    assert!(status["store"]["errors"].as_u64().unwrap_or(0) > 0);
    output_grows(&v, file_len(&v.dir.join("out.lp")));
    // The agent page shows the same error.
    let agent = v.json("/api/agent");
    assert!(agent["store"]["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("full")));
    assert!(
        std::fs::metadata(v.dir.join("history.db"))
            .map(|m| m.len())
            .unwrap_or(0)
            <= 64 * 1024,
        "the file stays within max_size"
    );
}

#[test]
fn corrupt_file_is_moved_aside_and_history_goes_on() {
    let tmp = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        tmp.path().join("history.db"),
        "this is not a SQLite database\n".repeat(2000),
    )
    .expect("garbage");
    let v = Vmtel::run_in(tmp, "", &[]);
    v.wait_json("/api/fleet", 60, "history in a new file", |f| {
        vms_with_cpu(f) == 16
    });
    let err = v.stderr();
    assert!(
        err.contains("was damaged")
            && err.contains("moved it to")
            && err.contains("started a new one"),
        "{err}"
    );
    let moved = std::fs::read_dir(&v.dir)
        .expect("dir")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("history.db.corrupt-")
        });
    assert!(moved, "the damaged file is kept aside");
    output_grows(&v, file_len(&v.dir.join("out.lp")));
}

/// The cycle times of one VM of the history at `db`, read like the dashboard reads them (head
/// and chunks), from a connection of our own while vmtel may be writing.
fn cycle_times(db: &std::path::Path) -> std::collections::BTreeSet<i64> {
    let Ok(c) = vmtel::store::schema::open_ro(db) else {
        return Default::default();
    };
    let Ok(series) = vmtel::store::read::series_where(&c, "kind = 0 ORDER BY id LIMIT 1", [])
    else {
        return Default::default();
    };
    let Some(s) = series.first() else {
        return Default::default();
    };
    let head = vmtel::store::read::head_rows(&c, i64::MIN, i64::MAX, None).unwrap_or_default();
    let rows =
        vmtel::store::read::raw(&c, s.id, i64::MIN, i64::MAX, head.get(&s.id)).expect("raw rows");
    rows.ts.into_iter().collect()
}

#[test]
fn kill_9_loses_nothing_committed() {
    let mut v = Vmtel::run("", &[]);
    let db = v.dir.join("history.db");
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..3 {
        // Wait for a few more committed cycles (read by a reader of our own), then kill -9.
        let deadline = Instant::now() + Duration::from_secs(60);
        let committed = loop {
            let now = cycle_times(&db);
            if now.len() >= seen.len() + 3 {
                break now;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: no new cycles\n{}",
                v.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            seen.is_subset(&committed),
            "round {round}: every cycle committed before the last kill is still there"
        );
        seen = committed;
        v.child.kill().expect("kill -9");
        v.child.wait().expect("reaped");
        v = v.restart();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while cycle_times(&db).len() < seen.len() + 2 {
        assert!(
            Instant::now() < deadline,
            "no cycles after the last restart\n{}",
            v.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    v.stop();
    let after = cycle_times(&db);
    assert!(
        seen.is_subset(&after),
        "a clean stop (compaction) keeps every cycle"
    );
    assert!(!v.stderr().contains("panicked"), "{}", v.stderr());
}
