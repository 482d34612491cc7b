//! The sink on synthetic typed batches: exact values back from the head and from compressed
//! chunks, compaction and merging, restarts (clean and not), damaged chunks, odd names, and a
//! full file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rusqlite::Connection;

use super::compact::{self, Rows};
use super::layout::Kind;
use super::read;
use super::series::Registry;
use super::{query, StoreSettings, StoreSink, StoreStatus};
use crate::deliver::batch::{Payload, VmChunk};
use crate::deliver::{Batch, Sink};
use crate::model::{DiskStats, DomainSample, HostSample, NicStats};

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

/// VM `name` (UUID `u-name`, ID 1) with CPU time `cputime` on 2 vCPUs, one NIC and one disk.
fn vm(name: &str, cputime: u64) -> DomainSample {
    let mut d = DomainSample {
        name: name.into(),
        uuid: format!("u-{name}"),
        id: Some(1),
        state: Some(1),
        ..DomainSample::default()
    };
    d.cpu.time = Some(cputime);
    d.vcpu.current = Some(2);
    d.nics.push(NicStats {
        name: "vnet0".into(),
        mac: Some("52:54:00:00:00:01".into()),
        rx_bytes: Some(cputime.saturating_mul(3)),
        ..NicStats::default()
    });
    d.disks.push(DiskStats {
        name: "vda".into(),
        path: Some("/var/lib/x.qcow2".into()),
        wr_bytes: Some(cputime / 2),
        ..DiskStats::default()
    });
    d
}

/// A counter that moves irregularly (what compresses worst).
fn wiggle(i: i64) -> u64 {
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    (i as u64) * 1_000_000 + x
}

fn count(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0)).expect(sql)
}

/// The VM series' raw rows of `name` over all time, as (ts, cputime).
fn cputimes(path: &Path, name: &str) -> Vec<(i64, Option<i64>)> {
    let c = Connection::open(path).expect("open");
    let s = read::series_where(&c, "kind = 0 AND key = ?1", [format!("u-{name}")]).expect("series");
    let Some(s) = s.first() else {
        return Vec::new();
    };
    let head = read::head_rows(&c, i64::MIN, i64::MAX, None).expect("head");
    let rows = read::raw(&c, s.id, i64::MIN, i64::MAX, head.get(&s.id)).expect("raw");
    let col = Kind::Vm.column("cputime").expect("cputime");
    (0..rows.len())
        .map(|r| (rows.ts[r], rows.get(r, col)))
        .collect()
}

#[test]
fn values_read_back_exactly_from_the_head_and_from_compressed_chunks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, status) = sink(&path);
    let n = 200; // 200 cycles at 10 s: several compactions and a merge.
    for i in 0..n {
        let ts = T0 + i * 10_000;
        s.write(&batch(
            ts,
            vec![
                vm("a", wiggle(i)),
                vm("b", i64::MAX as u64 - 1000 + i as u64),
            ],
        ))
        .expect("write");
    }
    let c = Connection::open(&path).expect("open");
    assert!(
        count(&c, "SELECT COUNT(*) FROM chunks") > 0,
        "compacted while running"
    );
    assert!(
        count(&c, "SELECT COUNT(*) FROM head") > 0,
        "the last minutes stay in the head"
    );
    let want: Vec<(i64, Option<i64>)> = (0..n)
        .map(|i| (T0 + i * 10_000, Some(wiggle(i) as i64)))
        .collect();
    assert_eq!(cputimes(&path, "a"), want, "while running");
    drop(s);
    assert_eq!(
        count(&c, "SELECT COUNT(*) FROM head"),
        0,
        "a clean stop compacts the head"
    );
    assert_eq!(cputimes(&path, "a"), want, "after a clean stop");
    let big = cputimes(&path, "b");
    assert_eq!(
        big.last(),
        Some(&(T0 + (n - 1) * 10_000, Some(i64::MAX - 1000 + n - 1)))
    );
    assert_eq!(status.view().errors, 0);
    // Device identity is kept beside the series.
    let (mac, p): (String, String) = c
        .query_row(
            "SELECT (SELECT mac FROM series WHERE kind = 1), (SELECT path FROM series WHERE kind = 2 LIMIT 1)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("identity");
    assert_eq!(
        (mac.as_str(), p.as_str()),
        ("52:54:00:00:00:01", "/var/lib/x.qcow2")
    );
}

#[test]
fn a_restart_without_a_clean_stop_keeps_the_head_and_compacts_it_later() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, _) = sink(&path);
    for i in 0..30 {
        s.write(&batch(T0 + i * 10_000, vec![vm("a", wiggle(i))]))
            .expect("write");
    }
    // What kill -9 leaves: the committed head, no compaction at stop.
    std::mem::forget(s);
    let c = Connection::open(&path).expect("open");
    assert_eq!(count(&c, "SELECT COUNT(DISTINCT ts) FROM head"), 30);
    let (mut s, status) = sink(&path);
    for i in 30..100 {
        s.write(&batch(T0 + i * 10_000, vec![vm("a", wiggle(i))]))
            .expect("write");
    }
    drop(s);
    let want: Vec<(i64, Option<i64>)> = (0..100)
        .map(|i| (T0 + i * 10_000, Some(wiggle(i) as i64)))
        .collect();
    assert_eq!(cputimes(&path, "a"), want);
    assert_eq!(status.view().errors, 0);
}

#[test]
fn a_compaction_cut_short_loses_nothing_committed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, _) = sink(&path);
    for i in 0..50 {
        s.write(&batch(T0 + i * 10_000, vec![vm("a", wiggle(i))]))
            .expect("write");
    }
    std::mem::forget(s);
    // A compaction that writes its chunks and deletes the head rows, then dies before its
    // commit (as under kill -9: SQLite never sees the COMMIT).
    {
        let c = Connection::open(&path).expect("open");
        c.execute_batch("BEGIN IMMEDIATE").expect("begin");
        let done = compact::compact(&c, &mut Registry::default(), i64::MAX).expect("compact");
        assert!(done.chunks > 0);
        assert_eq!(count(&c, "SELECT COUNT(*) FROM head"), 0);
        // Dropped without COMMIT.
    }
    let want: Vec<(i64, Option<i64>)> = (0..50)
        .map(|i| (T0 + i * 10_000, Some(wiggle(i) as i64)))
        .collect();
    assert_eq!(cputimes(&path, "a"), want, "the head is whole again");
    let c = Connection::open(&path).expect("open");
    assert_eq!(
        count(&c, "SELECT COUNT(*) FROM chunks"),
        0,
        "no half compaction"
    );
}

#[test]
fn a_damaged_chunk_is_skipped_and_the_rest_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, _) = sink(&path);
    for i in 0..120 {
        s.write(&batch(T0 + i * 10_000, vec![vm("a", wiggle(i))]))
            .expect("write");
    }
    drop(s);
    let c = Connection::open(&path).expect("open");
    let chunks = count(&c, "SELECT COUNT(*) FROM chunks");
    assert!(chunks >= 3, "{chunks} chunks");
    // Damage the VM series' chunk and every roll-up chunk.
    c.execute(
        "UPDATE chunks SET data = X'564331FFFF' WHERE series_id = (SELECT id FROM series WHERE kind = 0)",
        [],
    )
    .expect("damage");
    c.execute("UPDATE rollups SET data = substr(data, 1, 7)", [])
        .expect("damage");
    assert_eq!(
        cputimes(&path, "a"),
        Vec::new(),
        "the damaged rows are skipped"
    );
    let now = T0 + 120 * 10_000;
    for range in [3_600_000, 7 * 86_400_000] {
        let d = query::vm_detail(&c, "h", "u-a", now, range)
            .expect("query")
            .expect("the VM is known");
        // The NIC's chunks are intact: its chart has values.
        let nic = d
            .charts
            .iter()
            .find(|c| c.id == "nic:vnet0")
            .expect("nic chart");
        if range == 3_600_000 {
            assert!(nic.lines[0].values.iter().any(Option::is_some), "{nic:?}");
        }
    }
    let fleet = query::fleet(&c, now).expect("fleet");
    assert_eq!(fleet.vms.len(), 1);
}

#[test]
fn merging_keeps_every_row_and_makes_fewer_chunks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, _) = sink(&path);
    // Three hours at 10 s: merged when each hour turns and at stop.
    let n = 3 * 360;
    for i in 0..n {
        s.write(&batch(T0 + i * 10_000, vec![vm("a", wiggle(i))]))
            .expect("write");
    }
    drop(s);
    let c = Connection::open(&path).expect("open");
    let vm_chunks = count(
        &c,
        "SELECT COUNT(*) FROM chunks WHERE series_id = (SELECT id FROM series WHERE kind = 0)",
    );
    let periods: std::collections::HashSet<i64> = (0..n)
        .map(|i| (T0 + i * 10_000).div_euclid(compact::RAW_PERIOD_MS))
        .collect();
    assert_eq!(
        vm_chunks as usize,
        periods.len(),
        "one chunk per 2-hour period"
    );
    assert_eq!(cputimes(&path, "a").len() as i64, n);
    let rollup_chunks = count(
        &c,
        "SELECT COUNT(*) FROM rollups WHERE series_id = (SELECT id FROM series WHERE kind = 0)",
    );
    assert_eq!(rollup_chunks, 1, "a day's roll-ups in one chunk");
}

#[test]
fn rollups_keep_a_counters_last_value_per_minute_and_charts_read_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, _) = sink(&path);
    // 2 vCPUs, +10 s of CPU time every 10 s: 50 %.
    for i in 0..(8 * 360) {
        s.write(&batch(
            T0 + i * 10_000,
            vec![vm("a", i as u64 * 10_000_000_000)],
        ))
        .expect("write");
    }
    drop(s);
    let c = Connection::open(&path).expect("open");
    let now = T0 + 8 * 3_600_000;
    let d = query::vm_detail(&c, "h", "u-a", now, 7 * 86_400_000)
        .expect("query")
        .expect("known");
    assert_eq!(d.resolution, "rollup_1m");
    let cpu = &d.charts[0];
    let values: Vec<f64> = cpu.lines[0].values.iter().flatten().copied().collect();
    assert!(values.len() > 10, "{} values", values.len());
    for v in values {
        assert!((v - 50.0).abs() < 1e-6, "cpu {v}");
    }
    let d = query::vm_detail(&c, "h", "u-a", now, 3_600_000)
        .expect("query")
        .expect("known");
    assert_eq!(d.resolution, "raw");
    let values: Vec<f64> = d.charts[0].lines[0]
        .values
        .iter()
        .flatten()
        .copied()
        .collect();
    assert!(!values.is_empty());
    assert!(values.iter().all(|v| (v - 50.0).abs() < 1e-6), "{values:?}");
}

#[test]
fn retention_by_age_and_by_size_removes_the_oldest_chunks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let status = Arc::new(StoreStatus::default());
    let mut s = StoreSink::new(StoreSettings {
        path: path.clone(),
        retention_raw: Duration::from_secs(3_600),
        retention_rollup: Duration::from_secs(4 * 3_600),
        max_size: 1 << 30,
        status: Arc::clone(&status),
    });
    for i in 0..(6 * 360) {
        s.write(&batch(T0 + i * 10_000, vec![vm("a", wiggle(i))]))
            .expect("write");
    }
    drop(s);
    let c = Connection::open(&path).expect("open");
    let newest = T0 + (6 * 360 - 1) * 10_000;
    let oldest_raw: i64 = c
        .query_row("SELECT MIN(start_ts) FROM chunks", [], |r| r.get(0))
        .expect("oldest");
    assert!(
        newest - oldest_raw <= 3_600_000 + 2 * 7_200_000,
        "raw kept about an hour"
    );
    let oldest_rollup: i64 = c
        .query_row("SELECT MIN(end_ts) FROM rollups", [], |r| r.get(0))
        .expect("oldest");
    assert!(
        newest - oldest_rollup <= 4 * 3_600_000,
        "roll-ups kept 4 hours"
    );
    assert!(oldest_raw > T0, "the first hours are gone");

    // By size: a small bound keeps the file under it and the newest rows.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, status) = sink_of_size(&path, 256 * 1024);
    let vms = |i: i64| {
        (0..20)
            .map(|v| vm(&format!("vm{v}"), wiggle(i * 31 + v)))
            .collect()
    };
    for i in 0..(4 * 360) {
        let _ = s.write(&batch(T0 + i * 10_000, vms(i)));
    }
    drop(s);
    let c = Connection::open(&path).expect("open");
    let used = super::schema::used_bytes(&c).expect("used");
    assert!(used <= 256 * 1024, "{used} bytes");
    assert!(count(&c, "SELECT COUNT(*) FROM chunks") > 0);
    let last = cputimes(&path, "vm0");
    assert_eq!(last.last().map(|r| r.0), Some(T0 + (4 * 360 - 1) * 10_000));
    assert!(status.view().oldest_raw_ms.is_some());
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
        let doms = names.iter().map(|n| vm(n, 7)).collect();
        s.write(&batch(ts, doms)).expect("write");
    }
    drop(s);
    assert_eq!(status.view().errors, 0);
    let c = Connection::open(&path).expect("open");
    let fleet = query::fleet(&c, T0 + 20_000).expect("fleet");
    let mut got: Vec<&str> = fleet.vms.iter().map(|v| v.name.as_str()).collect();
    let mut want = names.to_vec();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "every name exactly as libvirt gave it");
    for n in names {
        assert_eq!(cputimes(&path, n).len(), 2, "{n:?}");
    }
}

#[test]
fn a_rolled_back_cycle_leaves_no_series_sharing_an_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("h.db");
    let (mut s, status) = sink_of_size(&path, 64 * 1024);
    // A cycle whose first batch brings VM "a", then more than the file may hold: the whole
    // cycle is rolled back, "a"'s new series row with it.
    let mut first = batch(T0, vec![vm("a", 1)]);
    first.end_of_cycle = false;
    s.write(&first).expect("first batch");
    let filler: Vec<DomainSample> = (0..3000)
        .map(|i| vm(&format!("filler-{i:04}-{}", "x".repeat(100)), i))
        .collect();
    assert!(s.write(&batch(T0, filler)).is_err(), "the file is full");
    assert!(status.view().last_error.is_some_and(|e| e.contains("full")));
    // The next cycle: a VM never seen, then "a" again.
    let ts = T0 + 10_000;
    s.write(&batch(ts, vec![vm("b", 2), vm("a", 3)]))
        .expect("next cycle");
    drop(s);
    assert_eq!(cputimes(&path, "a"), vec![(ts, Some(3))]);
    assert_eq!(cputimes(&path, "b"), vec![(ts, Some(2))]);
    let c = Connection::open(&path).expect("open");
    assert_eq!(
        count(
            &c,
            "SELECT COUNT(DISTINCT id) FROM series WHERE kind = 0 AND key IN ('u-a', 'u-b')"
        ),
        2
    );
}

#[test]
fn a_file_of_the_first_format_is_moved_aside() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("history.db");
    {
        let c = Connection::open(&path).expect("create");
        c.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES ('schema', '1');
             CREATE TABLE points (series_id INTEGER, ts INTEGER, field_id INTEGER, value);",
        )
        .expect("old schema");
    }
    let (mut s, status) = sink(&path);
    s.write(&batch(T0, vec![vm("a", 1)])).expect("write");
    drop(s);
    assert_eq!(status.view().errors, 0, "not an error");
    assert_eq!(cputimes(&path, "a"), vec![(T0, Some(1))]);
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("history.db.v1-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let old = Connection::open(dir.path().join(&aside[0])).expect("old file");
    assert_eq!(
        count(&old, "SELECT COUNT(*) FROM points"),
        0,
        "the old file is intact"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any VM name is stored and listed exactly.
    #[test]
    fn any_vm_name_is_stored(name in "\\PC{1,40}") {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("h.db");
        let (mut s, _) = sink(&path);
        prop_assert!(s.write(&batch(T0, vec![vm(&name, 1)])).is_ok());
        drop(s);
        let c = Connection::open(&path).expect("open");
        let fleet = query::fleet(&c, T0).expect("fleet");
        prop_assert_eq!(fleet.vms.len(), 1);
        prop_assert_eq!(&fleet.vms[0].name, &name);
    }

    /// Rows with gaps and counter resets read back exactly through the head and the chunks.
    #[test]
    fn rows_round_trip_through_head_and_chunks(
        values in proptest::collection::vec(proptest::option::of(0u64..=(i64::MAX as u64)), 1..150),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("h.db");
        let (mut s, _) = sink(&path);
        for (i, v) in values.iter().enumerate() {
            let mut d = vm("a", 0);
            d.cpu.time = *v;
            prop_assert!(s.write(&batch(T0 + i as i64 * 10_000, vec![d])).is_ok());
        }
        drop(s);
        let want: Vec<(i64, Option<i64>)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (T0 + i as i64 * 10_000, v.map(|x| x as i64)))
            .collect();
        prop_assert_eq!(cputimes(&path, "a"), want);
    }
}

#[test]
fn rows_sort_and_keep_the_later_of_two_rows_at_one_time() {
    let mut r = Rows::with_width(2);
    r.push(20, &[Some(2), None]);
    r.push(10, &[Some(1), Some(1)]);
    r.push(20, &[Some(3), Some(3)]);
    r.sort();
    assert_eq!(r.ts, vec![10, 20]);
    assert_eq!(r.row(1), vec![Some(3), Some(3)]);
}

/// The problem rules' rows: the window's first row has its steal (from the row before the
/// window, as the agent's `vm_features` line of that cycle has it), and a VM not seen within
/// the window is not read.
#[test]
fn problem_windows_have_steal_from_the_first_row_and_skip_vms_gone_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("history.db");
    let (mut store, _) = sink(&path);
    for i in 0..6i64 {
        let mut d = vm("busy", wiggle(i));
        // 2 vCPUs waiting half of every second: 1e9 ns of delay per second in all, 50 %.
        d.vcpu.delay_sum = Some(u64::try_from(i).unwrap_or(0) * 10_000_000_000);
        let mut domains = vec![d];
        if i == 0 {
            domains.push(vm("gone", 1));
        }
        store
            .write(&batch(T0 + i * 10_000, domains))
            .expect("write");
    }
    drop(store);
    let c = Connection::open(&path).expect("open");
    let now = T0 + 50_000;
    let windows = super::overview::vm_windows(&c, now, T0 + 25_000).expect("windows");
    let names: Vec<&str> = windows.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["busy"], "only the VM with rows in the window");
    let w = &windows[0];
    assert_eq!(w.t, [T0 + 30_000, T0 + 40_000, T0 + 50_000]);
    assert_eq!(w.steal_pct.len(), 3);
    for s in &w.steal_pct {
        let s = s.expect("steal on every row of the window, the first included");
        assert!((s - 50.0).abs() < 1e-9, "{s}");
    }
}
