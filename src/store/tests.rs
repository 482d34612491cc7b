//! The sink on synthetic batches: roll-ups from raw points (split cycles, late batches, restarts
//! within a minute), the series cache, and input it must survive.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rusqlite::Connection;

use super::identity::DeviceBook;
use super::{StoreSettings, StoreSink, StoreStatus};
use crate::deliver::batch::{Payload, VmChunk};
use crate::deliver::{Batch, Sink};
use crate::model::{DomainSample, HostSample};

const MIN: i64 = 60_000;
/// A minute boundary, ms.
const T0: i64 = 1_800_000_000_000 / MIN * MIN;

fn sink(path: &Path) -> (StoreSink, Arc<StoreStatus>) {
    sink_of_size(path, 1 << 30)
}

fn sink_of_size(path: &Path, max_size: u64) -> (StoreSink, Arc<StoreStatus>) {
    let status = Arc::new(StoreStatus::default());
    let sink = StoreSink::new(StoreSettings {
        path: path.to_owned(),
        retention_raw: Duration::from_secs(7 * 86_400),
        retention_rollup: Duration::from_secs(30 * 86_400),
        max_size,
        status: Arc::clone(&status),
        identity: Arc::new(DeviceBook::default()),
    });
    (sink, status)
}

fn batch(ts_ms: i64, domains: Vec<DomainSample>) -> Batch {
    let sample = HostSample {
        host: "h".into(),
        timestamp_ns: ts_ms * 1_000_000,
        domains,
    };
    Batch {
        end_of_cycle: true,
        source: "test".into(),
        timestamp_ns: ts_ms * 1_000_000,
        payload: Payload::Vms(VmChunk::new(sample, Vec::new(), None)),
    }
}

/// VM `name` with only its CPU time.
fn vm_line(name: &str, cputime: i64, _ts_ms: i64) -> Vec<DomainSample> {
    let mut d = DomainSample {
        name: name.into(),
        uuid: format!("u-{name}"),
        ..DomainSample::default()
    };
    d.cpu.time = u64::try_from(cputime).ok();
    vec![d]
}

/// `(n, sum, min, max)` of the roll-up of `name`'s cputime at `minute_ts`.
fn rollup(c: &Connection, name: &str, minute_ts: i64) -> Option<(i64, f64, f64, f64)> {
    c.query_row(
        "SELECT r.n, r.sum, r.min, r.max FROM rollup_1m r JOIN fields f ON f.id = r.field_id
         JOIN series s ON s.id = r.series_id
         WHERE f.name = 'cputime' AND s.name = ?1 AND r.ts = ?2",
        rusqlite::params![name, minute_ts],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .ok()
}

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).expect(sql)
}

#[test]
fn a_cycle_split_into_several_batches_rolls_up_once_per_point() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, status) = sink(&path);
    for i in 0..6 {
        let ts = T0 + i * 10_000;
        // Two batches with the same timestamp: one VM each.
        s.write(&batch(ts, vm_line("a", i, ts))).expect("write");
        s.write(&batch(ts, vm_line("b", 100 + i, ts)))
            .expect("write");
    }
    s.write(&batch(T0 + MIN, vm_line("a", 6, T0 + MIN)))
        .expect("write");
    let c = Connection::open(&path).expect("open");
    assert_eq!(rollup(&c, "a", T0), Some((6, 15.0, 0.0, 5.0)));
    // "b" stopped reporting: its minute closes with the others.
    assert_eq!(rollup(&c, "b", T0), Some((6, 615.0, 100.0, 105.0)));
    assert_eq!(rollup(&c, "a", T0 + MIN), None, "minute 1 is still open");
    assert_eq!(status.view().errors, 0);
}

#[test]
fn a_late_batch_completes_its_minute() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, _) = sink(&path);
    s.write(&batch(T0, vm_line("a", 1, T0))).expect("write");
    // Another source's first batch of minute 1 closes minute 0 ...
    s.write(&batch(T0 + MIN, vm_line("b", 7, T0 + MIN)))
        .expect("write");
    let c = Connection::open(&path).expect("open");
    assert_eq!(rollup(&c, "a", T0), Some((1, 1.0, 1.0, 1.0)));
    // ... before a slow source's last batch of minute 0 arrives.
    s.write(&batch(T0 + 50_000, vm_line("a", 3, T0 + 50_000)))
        .expect("write");
    s.write(&batch(
        T0 + MIN + 10_000,
        vm_line("b", 8, T0 + MIN + 10_000),
    ))
    .expect("write");
    assert_eq!(rollup(&c, "a", T0), Some((2, 4.0, 1.0, 3.0)));
    drop(s);
    assert_eq!(rollup(&c, "b", T0 + MIN), Some((2, 15.0, 7.0, 8.0)));
}

#[test]
fn a_restart_within_a_minute_counts_each_point_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, _) = sink(&path);
    for i in 0..3 {
        let ts = T0 + i * 10_000;
        s.write(&batch(ts, vm_line("a", i, ts))).expect("write");
    }
    // Shutdown writes the open minute's roll-up so far.
    drop(s);
    let c = Connection::open(&path).expect("open");
    assert_eq!(rollup(&c, "a", T0), Some((3, 3.0, 0.0, 2.0)));
    let (mut s, _) = sink(&path);
    for i in 3..6 {
        let ts = T0 + i * 10_000;
        s.write(&batch(ts, vm_line("a", i, ts))).expect("write");
    }
    s.write(&batch(T0 + MIN, vm_line("a", 6, T0 + MIN)))
        .expect("write");
    assert_eq!(rollup(&c, "a", T0), Some((6, 15.0, 0.0, 5.0)));
}

#[test]
fn a_stop_without_shutdown_rolls_up_the_last_minute_after_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, _) = sink(&path);
    s.write(&batch(T0, vm_line("a", 4, T0))).expect("write");
    // As if killed: no shutdown, nothing rolled up.
    std::mem::forget(s);
    let c = Connection::open(&path).expect("open");
    assert_eq!(rollup(&c, "a", T0), None);
    let (mut s, _) = sink(&path);
    s.write(&batch(T0 + 5 * MIN, vm_line("a", 5, T0 + 5 * MIN)))
        .expect("write");
    assert_eq!(rollup(&c, "a", T0), Some((1, 4.0, 4.0, 4.0)));
}

#[test]
fn huge_counters_roll_up_as_floats() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, status) = sink(&path);
    let big = i64::MAX - 10;
    for i in 0..6 {
        let ts = T0 + i * 10_000;
        s.write(&batch(ts, vm_line("a", big, ts))).expect("write");
    }
    drop(s);
    let c = Connection::open(&path).expect("open");
    let (n, sum, min, max) = rollup(&c, "a", T0).expect("roll-up");
    assert_eq!((n, min, max), (6, big as f64, big as f64));
    assert_eq!(sum, 6.0 * big as f64);
    assert_eq!(status.view().errors, 0);
}

#[test]
fn odd_names_are_distinct_series_and_read_back() {
    let long = "x".repeat(2000);
    let names = [
        "plain",
        "a b",
        "a\\ b",
        "a,b=c",
        "a\\",
        "a\\\\b",
        "\"quoted\"",
        "tab\there",
        "new\nline",
        "ünïcødé ✓",
        "=",
        " ",
        long.as_str(),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, status) = sink(&path);
    for round in 0..2 {
        let ts = T0 + round * 10_000;
        let lines: Vec<DomainSample> = names
            .iter()
            .enumerate()
            .flat_map(|(i, n)| vm_line(n, i64::try_from(i).unwrap_or(0), ts))
            .collect();
        s.write(&batch(ts, lines)).expect("write");
    }
    drop(s);
    assert_eq!(status.view().errors, 0);
    let c = Connection::open(&path).expect("open");
    let stored: Vec<String> = c
        .prepare("SELECT name FROM series WHERE measurement = 'vm_metrics' ORDER BY id")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("names");
    assert_eq!(stored.len(), names.len(), "one series per name: {stored:?}");
    for (i, name) in names.iter().enumerate() {
        // As the encoder makes it round-trip (ambiguous backslashes and control characters
        // replaced).
        let want = crate::encode::line::canonical(name);
        assert_eq!(stored[i], want);
        assert_eq!(
            rollup(&c, &want, T0).map(|r| r.0),
            Some(2),
            "both points of {name:?} in one series"
        );
    }
}

#[test]
fn a_forgotten_series_keeps_its_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, _) = sink(&path);
    s.write(&batch(T0, vm_line("a", 1, T0))).expect("write");
    // "b" reports for an hour; "a" is forgotten by the cache meanwhile.
    for m in 1..60 {
        let ts = T0 + m * MIN;
        s.write(&batch(ts, vm_line("b", m, ts))).expect("write");
    }
    s.write(&batch(T0 + 60 * MIN, vm_line("a", 2, T0 + 60 * MIN)))
        .expect("write");
    drop(s);
    let c = Connection::open(&path).expect("open");
    assert_eq!(
        count(
            &c,
            "SELECT COUNT(*) FROM series WHERE name = 'a' AND measurement = 'vm_metrics'"
        ),
        1
    );
    assert_eq!(
        count(
            &c,
            "SELECT COUNT(*) FROM points p JOIN series s ON s.id = p.series_id WHERE s.name = 'a' AND s.measurement = 'vm_metrics'"
        ),
        2
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A line the encoder wrote for any VM name is stored under that name.
    #[test]
    fn any_vm_name_is_stored(name in "\\PC{1,40}") {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("h.db");
        let (mut s, _) = sink(&path);
        prop_assert!(s.write(&batch(T0, vm_line(&name, 1, T0))).is_ok());
        drop(s);
        let c = Connection::open(&path).expect("open");
        let want = crate::encode::line::canonical(&name);
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM series WHERE name = ?1 AND measurement = 'vm_metrics'", [&want], |r| r.get(0))
            .expect("count");
        prop_assert_eq!(n, 1);
    }
}

#[test]
fn a_cycle_is_one_transaction_committed_with_its_last_batch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, status) = sink(&path);
    let points = |c: &Connection| {
        count(
            c,
            "SELECT COUNT(*) FROM points p JOIN series s ON s.id = p.series_id WHERE s.measurement = 'vm_metrics'",
        )
    };
    // Open the file with a first, complete cycle.
    s.write(&batch(T0, vm_line("a", 1, T0))).expect("write");
    let c = Connection::open(&path).expect("open");
    let before = points(&c);
    assert_eq!(before, 1);
    // The next cycle in three batches: nothing is written until the last one.
    let ts = T0 + 10_000;
    for (i, name) in ["a", "b"].iter().enumerate() {
        let mut b = batch(ts, vm_line(name, 2 + i as i64, ts));
        b.end_of_cycle = false;
        s.write(&b).expect("write");
        assert_eq!(
            points(&c),
            before,
            "batch {i} is written but not committed yet"
        );
    }
    s.write(&batch(ts, vm_line("c", 9, ts))).expect("write");
    assert_eq!(
        points(&c),
        before + 3,
        "the cycle's last batch commits all three"
    );
    assert_eq!(status.view().batches, 2, "one transaction per cycle");
    // A cycle cut short (no last batch) is written when the next timestamp arrives, or on drop.
    let ts2 = T0 + 20_000;
    let mut b = batch(ts2, vm_line("a", 10, ts2));
    b.end_of_cycle = false;
    s.write(&b).expect("write");
    let mut b = batch(ts2 + 10_000, vm_line("a", 11, ts2 + 10_000));
    b.end_of_cycle = false;
    s.write(&b).expect("write");
    assert_eq!(points(&c), before + 4);
    drop(s);
    assert_eq!(
        points(&c),
        before + 5,
        "the open transaction is committed on drop"
    );
}

#[test]
fn a_rolled_back_cycle_leaves_no_series_sharing_an_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, status) = sink_of_size(&path, 64 * 1024);
    // A cycle whose first batch brings VM "a", then more than the file may hold: the whole
    // cycle is rolled back, "a"'s new series row with it.
    let mut first = batch(T0, vm_line("a", 1, T0));
    first.end_of_cycle = false;
    s.write(&first).expect("first batch");
    let filler: Vec<DomainSample> = (0..3000)
        .flat_map(|i| vm_line(&format!("filler-{i:04}-{}", "x".repeat(100)), i, T0))
        .collect();
    assert!(s.write(&batch(T0, filler)).is_err(), "the file is full");
    assert!(status.view().last_error.is_some_and(|e| e.contains("full")));
    // The next cycle: a VM never seen, then "a" again.
    let ts = T0 + 10_000;
    let mut lines = vm_line("b", 2, ts);
    lines.extend(vm_line("a", 3, ts));
    s.write(&batch(ts, lines)).expect("next cycle");
    drop(s);
    let c = Connection::open(&path).expect("open");
    let value = |name: &str| -> Vec<(i64, i64)> {
        let mut st = c
            .prepare(
                "SELECT s.id, p.value FROM points p JOIN series s ON s.id = p.series_id
                 WHERE s.name = ?1 AND p.ts = ?2 AND s.measurement = 'vm_metrics'",
            )
            .expect("prepare");
        st.query_map(rusqlite::params![name, ts], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let (a, b) = (value("a"), value("b"));
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(b.len(), 1, "{b:?}");
    assert_ne!(a[0].0, b[0].0, "two VMs, two series");
    assert_eq!((a[0].1, b[0].1), (3, 2), "each VM's own value");
}
