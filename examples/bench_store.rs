//! Benchmark of the history store on a realistic workload: the simulated fleet of
//! `vmtel::sim` (heavy-tailed, bursty, daily rhythm; the test driver's linear counters would
//! compress to nothing) goes through the real decoder, deriver and encoder into the store, a
//! cycle every `--interval` seconds of simulated time, as fast as the store takes it.
//!
//! Reports the points written (one per field value, as in line protocol), the bytes of every
//! file the store keeps (`history.db` and its `-wal`), bytes per point, and the store's CPU
//! time per VM per cycle (the thread's CPU clock around its writes).
//!
//! Also reports the bytes of raw rows and of roll-ups apart, per simulated day, and from them
//! what `retention_raw = 7d` and `retention_rollup = 30d` take (the sizing of
//! `docs/dashboard.md`), and the time of the dashboard's queries on the result: the fleet and
//! one VM's charts over the whole span.
//!
//! Usage: `bench_store [--vms N] [--hours H] [--interval S] [--nics K] [--disks D] [--seed K]
//! [--keep FILE] [--json]` (defaults 100 VMs with 2 NICs and 2 disks, 6 hours, 10 s). Run it
//! pinned to one core (`taskset -c 0`).

#[path = "../bench/common.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{arg, thread_cpu};
use vmtel::collect::bulk::Decoder;
use vmtel::collect::CHUNK_DOMAINS;
use vmtel::deliver::batch::{Payload, VmChunk};
use vmtel::deliver::{Batch, Sink};
use vmtel::derive::Deriver;
use vmtel::model::{DomainSample, HostSample};
use vmtel::schema::{vm_devices_disk, vm_devices_nic, vm_features, vm_metrics, vm_totals};
use vmtel::sim::{host_name, SimFleet, SimOptions};
use vmtel::store::{StoreSettings, StoreSink, StoreStatus};

#[global_allocator]
static ALLOC: common::Counting = common::Counting;

/// Field values a VM's lines carry this cycle (what "points" counts).
fn points(d: &DomainSample, f: Option<&vmtel::model::Features>) -> u64 {
    let mut n = 0u64;
    let mut count = |_: &'static vmtel::schema::Field, _| n += 1;
    vm_metrics::for_each(d, &mut count);
    vm_totals::for_each(d, &mut count);
    for nic in &d.nics {
        vm_devices_nic::for_each(nic, &mut count);
    }
    for disk in &d.disks {
        vm_devices_disk::for_each(disk, &mut count);
    }
    if let Some(f) = f {
        vm_features::for_each(f, &mut count);
    }
    n
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let vms: usize = arg(&args, "--vms", 100);
    let hours: f64 = arg(&args, "--hours", 6.0);
    let interval: u64 = arg(&args, "--interval", 10);
    let seed: u64 = arg(&args, "--seed", 1);
    let nics: usize = arg(&args, "--nics", 2);
    let disks: usize = arg(&args, "--disks", 2);
    let json = args.iter().any(|a| a == "--json");
    let cycles = (hours * 3600.0 / interval as f64).round() as u64;

    let dir = tempfile::tempdir().expect("tempdir");
    // `--keep FILE`: write the history there (kept, for a look inside) instead of a temp dir.
    let keep = args
        .iter()
        .position(|a| a == "--keep")
        .and_then(|i| args.get(i + 1));
    let path = match keep {
        Some(p) => std::path::PathBuf::from(p),
        None => dir.path().join("history.db"),
    };
    let status = Arc::new(StoreStatus::default());
    let mut store = StoreSink::new(StoreSettings {
        path: path.clone(),
        retention_raw: Duration::from_secs(7 * 86_400),
        retention_rollup: Duration::from_secs(30 * 86_400),
        max_size: 64 << 30,
        status: Arc::clone(&status),
    });
    let mut fleet = SimFleet::new(SimOptions {
        seed,
        hosts: 1,
        vms_per_host: vms,
        reboot_every_days: Some(14.0),
        devices: Some((nics, disks)),
    });
    let mut decoder = Decoder::new();
    let mut deriver = Deriver::new();
    let mut features = Vec::new();
    let step_ns = interval as i64 * 1_000_000_000;
    // The simulated span ends now, so that retention keeps all of it.
    let now = vmtel::collect::wall_ns();
    let start = now - now.rem_euclid(step_ns) - cycles as i64 * step_ns;
    let (mut total_points, mut store_cpu) = (0u64, Duration::ZERO);
    let mut last_cpu = Duration::ZERO;
    // The most Rust heap one store write (a compaction or a merge included) held beyond what
    // was allocated before it (SQLite's own memory is not counted: its page cache is bounded).
    let mut write_peak = 0i64;
    let source = "sim:///bench";
    for c in 1..=cycles {
        let t = start + c as i64 * step_ns;
        fleet.step(t, Duration::from_secs(interval));
        deriver.begin_cycle();
        let chunks = vms.div_ceil(CHUNK_DOMAINS);
        for k in 0..chunks {
            let mut chunk = HostSample {
                host: host_name(0),
                timestamp_ns: t,
                domains: Vec::new(),
            };
            let mono = u64::try_from(t - start).unwrap_or(0);
            for i in k * CHUNK_DOMAINS..((k + 1) * CHUNK_DOMAINS).min(vms) {
                chunk.domains.push(fleet.sample(i, t, mono, &mut decoder));
            }
            deriver.update_chunk(&chunk.domains, &mut features);
            for (i, d) in chunk.domains.iter().enumerate() {
                total_points += points(d, features.get(i).and_then(Option::as_ref));
            }
            let batch = Batch {
                source: source.into(),
                timestamp_ns: t,
                payload: Payload::Vms(VmChunk::new(chunk, std::mem::take(&mut features), None)),
                end_of_cycle: k + 1 == chunks,
            };
            let last = batch.end_of_cycle;
            common::reset_peak();
            let live0 = common::Allocs::now().live;
            let c0 = thread_cpu();
            store.write(&batch).expect("store write");
            let d = thread_cpu() - c0;
            write_peak = write_peak.max(common::peak_live() - live0);
            store_cpu += d;
            if last {
                last_cpu += d;
            }
        }
        deriver.end_cycle();
        if !json && c % 360 == 0 {
            eprintln!("  {c} of {cycles} cycles");
        }
    }
    let c0 = thread_cpu();
    drop(store);
    let stop_cpu = thread_cpu() - c0;
    store_cpu += stop_cpu;
    if std::env::var("BENCH_SPLIT").is_ok() {
        eprintln!(
            "cpu: total {:?}, last batches (commit, compaction, merge, retention) {:?}, stop {:?}",
            store_cpu, last_cpu, stop_cpu
        );
    }
    let size = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    };
    let bytes = size("") + size("-wal") + size("-shm");
    // Raw rows and roll-ups apart (the blobs; the file adds SQLite's pages around them).
    let (raw_blobs, rollup_blobs) = {
        let c = rusqlite::Connection::open(&path).expect("open");
        let sum = |sql: &str| -> f64 {
            c.query_row(sql, [], |r| r.get::<_, Option<f64>>(0))
                .expect(sql)
                .unwrap_or(0.0)
        };
        (
            sum("SELECT SUM(length(data)) FROM chunks") + sum("SELECT SUM(length(data)) FROM head"),
            sum("SELECT SUM(length(data)) FROM rollups"),
        )
    };
    let days = hours / 24.0;
    let overhead = bytes as f64 / (raw_blobs + rollup_blobs).max(1.0);
    let projected = (raw_blobs / days * 7.0 + rollup_blobs / days * 30.0) * overhead;
    let stored = status.points.load(std::sync::atomic::Ordering::Relaxed);
    let per_point = bytes as f64 / total_points.max(1) as f64;
    let per_stored = bytes as f64 / stored.max(1) as f64;
    let us_per_vm_cycle = store_cpu.as_secs_f64() * 1e6 / (vms as f64 * cycles as f64);
    // Queries on the compressed store, as the dashboard makes them.
    let conn = vmtel::store::schema::open_ro(&path).expect("open");
    let end_ms = (start + cycles as i64 * step_ns) / 1_000_000;
    let timed = |f: &dyn Fn()| {
        let t0 = std::time::Instant::now();
        for _ in 0..5 {
            f();
        }
        t0.elapsed().as_secs_f64() * 1000.0 / 5.0
    };
    let fleet_ms = timed(&|| {
        let f = vmtel::store::query::fleet(&conn, end_ms).expect("fleet");
        assert_eq!(f.vms.len(), vms);
    });
    let uuid = fleet.vms[0].uuid.clone();
    let range = (hours * 3_600_000.0) as i64;
    let chart_ms = timed(&|| {
        let d = vmtel::store::query::vm_detail(&conn, &host_name(0), &uuid, end_ms, range)
            .expect("vm")
            .expect("known");
        assert!(!d.charts.is_empty());
    });
    if json {
        println!(
            "{{\"vms\":{vms},\"hours\":{hours},\"interval_s\":{interval},\"cycles\":{cycles},\"points\":{total_points},\"stored_values\":{stored},\"bytes\":{bytes},\"bytes_per_point\":{per_point:.3},\"bytes_per_stored_value\":{per_stored:.3},\"raw_bytes_per_day\":{:.0},\"rollup_bytes_per_day\":{:.0},\"file_overhead\":{overhead:.3},\"projected_7d_raw_30d_rollups\":{projected:.0},\"store_cpu_us_per_vm_cycle\":{us_per_vm_cycle:.2},\"fleet_ms\":{fleet_ms:.2},\"vm_chart_ms\":{chart_ms:.2},\"write_heap_peak_bytes\":{write_peak}}}",
            raw_blobs / days,
            rollup_blobs / days
        );
    } else {
        println!("| VMs | span | interval | points written | values stored | bytes on disk | bytes/point | bytes/stored value | store CPU per VM per cycle | fleet query | VM chart over the span |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
        println!(
            "| {vms} | {hours} h | {interval} s | {total_points} | {stored} | {bytes} | {per_point:.2} | {per_stored:.2} | {us_per_vm_cycle:.1} µs | {fleet_ms:.1} ms | {chart_ms:.1} ms |"
        );
        println!(
            "\nstore heap: at most {:.1} MiB held during one write (compaction or merge included)",
            write_peak as f64 / 1048576.0
        );
        println!(
            "\nper simulated day: raw rows {:.1} MiB, roll-ups {:.1} MiB (file/blobs {overhead:.2}); 7 days raw + 30 days of roll-ups: {:.0} MiB",
            raw_blobs / days / 1048576.0,
            rollup_blobs / days / 1048576.0,
            projected / 1048576.0
        );
    }
}
