//! Benchmark scenarios (a) and (b): one collector strategy against one libvirt URI, measured
//! per cycle in this process, with libvirtd's CPU over the same cycles when its PID is given.
//!
//! Modes:
//! * `floor-bulk`: the bare bulk call, `virConnectGetAllDomainStats` with the groups and flags
//!   vmtel asks for (active domains, `NOWAIT` when the driver takes it), records freed unread.
//! * `floor-perdomain`: the bare per-domain calls vmtel falls back to on drivers whose bulk call
//!   lacks groups (libvirt's test driver): `virConnectListAllDomains`, then per domain
//!   `virDomainGetInfo`, `virDomainGetCPUStats`, `virDomainMemoryStats`, and
//!   `virDomainInterfaceStats`/`virDomainBlockStats` per device (device names read from the XML
//!   once, before the measured cycles).
//! * `vmtel`: vmtel's whole cycle as the daemon's worker and one text output run it:
//!   `Collector::collect_chunks`, and per chunk `Deriver::update_chunk` and
//!   `Encoder::encode_host` into a reused buffer (the output's thread encodes each typed batch).
//! * `connect`: opening and closing a connection (what a collector that reconnects every cycle
//!   adds; the test driver re-reads its node XML on every open).
//! * `dump`: one bulk call; prints every parameter of the first record with its type.
//! * `fleet N FILE`: writes a test-driver node file of N running domains with 2 vCPUs, 2 NICs
//!   and 2 disks each (`vmtel::demo::Vm::standard`) and prints its absolute path.
//!
//! Usage: `bench_collect MODE URI [--cycles N] [--warmup W] [--min-seconds S]
//! [--daemon-pid PID] [--qemu-pids PID,PID...] [--pause-ms MS] [--event-loop]`. Prints one JSON
//! object. `--event-loop` starts libvirt's event loop thread first, as `vmtel run` does (for
//! keepalive on remote connections).
//!
//! `--qemu-pids`: QEMU processes whose monitor threads' CPU to report (scenario (a)); the
//! main-loop thread, which answers the QEMU monitor, and any `IO mon_iothread` are summed,
//! vCPU threads are not. `--pause-ms` sleeps between cycles (outside the timed part) so that a
//! baseline of the same length can be measured for the QEMU threads.

#[path = "../bench/common.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{arg, proc_cpu, proc_cpu_ns, process_cpu, rss_kib, stats_ms, Allocs};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;
use vmtel::collect::bulk::Groups;
use vmtel::collect::devices::parse_domain_xml;
use vmtel::collect::ffi::{StatsList, Value};
use vmtel::collect::{Collector, SourceSpec};
use vmtel::derive::Deriver;
use vmtel::encode::Encoder;

#[global_allocator]
static ALLOC: common::Counting = common::Counting;

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench_collect: {msg}");
    std::process::exit(1)
}

/// One strategy's cycle; returns the number of domains it saw.
trait Strategy {
    fn cycle(&mut self) -> usize;
    /// Lines and bytes of line protocol the last cycle produced (vmtel only).
    fn output(&self) -> (usize, usize) {
        (0, 0)
    }
}

struct FloorBulk {
    conn: Connect,
    flags: u32,
}

impl FloorBulk {
    fn new(uri: &str) -> Self {
        let conn = Connect::open(Some(uri)).unwrap_or_else(|e| die(e));
        let active = sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE;
        let nowait = active | sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT;
        let flags = match StatsList::fetch(&conn, Groups::ALL.0, nowait) {
            Ok(_) => nowait,
            Err(_) => active,
        };
        FloorBulk { conn, flags }
    }
}

impl Strategy for FloorBulk {
    fn cycle(&mut self) -> usize {
        let list = StatsList::fetch(&self.conn, Groups::ALL.0, self.flags)
            .unwrap_or_else(|e| die(format!("bulk call: {e}")));
        list.len()
    }
}

struct FloorPerDomain {
    conn: Connect,
    /// Device names per domain UUID, read once.
    devices: std::collections::HashMap<String, (Vec<String>, Vec<String>)>,
}

impl FloorPerDomain {
    fn new(uri: &str) -> Self {
        let conn = Connect::open(Some(uri)).unwrap_or_else(|e| die(e));
        let mut devices = std::collections::HashMap::new();
        let doms = conn
            .list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            .unwrap_or_else(|e| die(e));
        for d in &doms {
            let xml = d.xml_desc(0).unwrap_or_default();
            if let Ok(devs) = parse_domain_xml(&xml) {
                devices.insert(
                    d.uuid_string().unwrap_or_default(),
                    (
                        devs.nics().map(|n| n.target.to_owned()).collect(),
                        devs.disks().map(|d| d.target.to_owned()).collect(),
                    ),
                );
            }
        }
        FloorPerDomain { conn, devices }
    }

    fn domain(&self, d: &Domain) -> u64 {
        let mut sum = 0u64;
        let _ = d.name();
        let uuid = d.uuid_string().unwrap_or_default();
        if let Ok(i) = d.info() {
            sum = sum.wrapping_add(i.cpu_time);
        }
        if let Ok(s) = d.cpu_stats(-1, 1, 0) {
            sum = sum.wrapping_add(s.len() as u64);
        }
        if let Ok(m) = d.memory_stats(0) {
            sum = sum.wrapping_add(m.len() as u64);
        }
        if let Some((nics, disks)) = self.devices.get(&uuid) {
            for n in nics {
                if let Ok(s) = d.interface_stats(n) {
                    sum = sum.wrapping_add(s.rx_bytes as u64);
                }
            }
            for k in disks {
                if let Ok(s) = d.block_stats(k) {
                    sum = sum.wrapping_add(s.rd_bytes as u64);
                }
            }
        }
        sum
    }
}

impl Strategy for FloorPerDomain {
    fn cycle(&mut self) -> usize {
        let doms = self
            .conn
            .list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            .unwrap_or_else(|e| die(e));
        let mut sum = 0u64;
        for d in &doms {
            sum = sum.wrapping_add(self.domain(d));
        }
        std::hint::black_box(sum);
        doms.len()
    }
}

struct Vmtel {
    collector: Collector,
    deriver: Deriver,
    encoder: Encoder,
    out: String,
    features: Vec<Option<vmtel::model::Features>>,
    lines: usize,
    bytes: usize,
}

impl Strategy for Vmtel {
    fn cycle(&mut self) -> usize {
        let (deriver, encoder, out, features) = (
            &mut self.deriver,
            &self.encoder,
            &mut self.out,
            &mut self.features,
        );
        let (mut lines, mut bytes) = (0, 0);
        deriver.begin_cycle();
        let summary = self
            .collector
            .collect_chunks(|chunk| {
                deriver.update_chunk(&chunk.domains, features);
                out.clear();
                lines += encoder.encode_host(chunk, features, out);
                bytes += out.len();
                std::hint::black_box(&*out);
            })
            .unwrap_or_else(|e| die(format!("vmtel cycle: {e}")));
        deriver.end_cycle();
        self.lines = lines;
        self.bytes = bytes;
        summary.domains
    }
    fn output(&self) -> (usize, usize) {
        (self.lines, self.bytes)
    }
}

struct Reconnect {
    uri: String,
}

impl Strategy for Reconnect {
    fn cycle(&mut self) -> usize {
        let conn = Connect::open(Some(&self.uri)).unwrap_or_else(|e| die(e));
        drop(conn);
        0
    }
}

fn dump(uri: &str) {
    let conn = Connect::open(Some(uri)).unwrap_or_else(|e| die(e));
    let list = StatsList::fetch(
        &conn,
        Groups::ALL.0,
        sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
            | sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT,
    )
    .unwrap_or_else(|e| die(e));
    let mut total = 0;
    for (i, rec) in list.records().enumerate() {
        let params: Vec<_> = rec.params().collect();
        total += params.len();
        if i == 0 {
            let name = rec.domain().and_then(|d| d.name().ok()).unwrap_or_default();
            println!("# {name}: {} params", params.len());
            for p in &params {
                let ty = match &p.value {
                    Value::Int(_) => "int",
                    Value::UInt(_) => "uint",
                    Value::LLong(_) => "llong",
                    Value::ULLong(_) => "ullong",
                    Value::Double(_) => "double",
                    Value::Bool(_) => "boolean",
                    Value::Str(_) => "string",
                    Value::Unknown(_) => "unknown",
                };
                println!("{}\t{ty}\t{:?}", p.name, p.value);
            }
        }
    }
    println!("# {} records, {total} params", list.len());
}

/// CPU time of the threads of a QEMU process that answer its monitor: the main loop (the
/// thread whose TID is the PID) and `IO mon_iothread` when QEMU has one.
fn qemu_monitor_cpu(pid: u32) -> Duration {
    let mut total = Duration::ZERO;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return total;
    };
    for t in tasks.flatten() {
        let tid: u32 = t.file_name().to_string_lossy().parse().unwrap_or(0);
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if tid == pid || comm.trim() == "IO mon_iothread" {
            if let Some(c) = common::stat_cpu(&format!("/proc/{pid}/task/{tid}/stat")) {
                total += c;
            }
        }
    }
    total
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(mode), Some(uri)) = (args.first(), args.get(1)) else {
        die("usage: bench_collect floor-bulk|floor-perdomain|vmtel|connect|dump URI [options]");
    };
    vmtel::collect::quiet_libvirt_errors();
    if mode == "fleet" {
        let n: usize = uri.parse().unwrap_or_else(|_| die("fleet N FILE"));
        let file = args.get(2).unwrap_or_else(|| die("fleet N FILE"));
        let path = std::path::Path::new(file);
        let vms: Vec<_> = (0..n)
            .map(|i| vmtel::demo::Vm::standard(i, &format!("bench-{i:05}")))
            .collect();
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        let name = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("node.xml");
        let (abs, _) = vmtel::demo::write_node(dir, name, &vms).unwrap_or_else(|e| die(e));
        println!("{}", abs.display());
        return;
    }
    if mode == "dump" {
        dump(uri);
        return;
    }
    let cycles: usize = arg(&args, "--cycles", 20);
    let warmup: usize = arg(&args, "--warmup", 2);
    let min_secs: f64 = arg(&args, "--min-seconds", 0.0);
    let pause = Duration::from_millis(arg(&args, "--pause-ms", 0));
    let daemon: u32 = arg(&args, "--daemon-pid", 0);
    let qemu: Vec<u32> = arg(&args, "--qemu-pids", String::new())
        .split(',')
        .filter_map(|p| p.parse().ok())
        .collect();

    if args.iter().any(|a| a == "--event-loop") {
        vmtel::collect::start_event_loop().unwrap_or_else(|e| die(e));
    }
    let base_live = Allocs::now().live;
    let setup_start = Instant::now();
    let mut strategy: Box<dyn Strategy> = match mode.as_str() {
        "floor-bulk" => Box::new(FloorBulk::new(uri)),
        "floor-perdomain" => Box::new(FloorPerDomain::new(uri)),
        "vmtel" => Box::new(Vmtel {
            collector: Collector::new(
                SourceSpec {
                    uri: uri.clone(),
                    host: Some("bench".into()),
                },
                Duration::from_secs(300),
            ),
            deriver: Deriver::new(),
            encoder: Encoder::default(),
            out: String::new(),
            features: Vec::new(),
            lines: 0,
            bytes: 0,
        }),
        "connect" => Box::new(Reconnect { uri: uri.clone() }),
        other => die(format!("unknown mode {other}")),
    };
    let mut first = Vec::new();
    let mut domains = 0;
    for _ in 0..warmup {
        let t = Instant::now();
        domains = strategy.cycle();
        first.push(t.elapsed());
    }
    let setup = setup_start.elapsed();

    let d0 = if daemon > 0 { proc_cpu(daemon) } else { None };
    let dn0 = if daemon > 0 {
        proc_cpu_ns(daemon)
    } else {
        None
    };
    let q0: Vec<Duration> = qemu.iter().map(|&p| qemu_monitor_cpu(p)).collect();
    let c0 = process_cpu();
    let (u0, s0) = common::rusage(false);
    let a0 = Allocs::now();
    let w0 = Instant::now();
    let mut walls = Vec::new();
    let mut busy = Duration::ZERO;
    while walls.len() < cycles || w0.elapsed().as_secs_f64() < min_secs {
        let t = Instant::now();
        domains = strategy.cycle();
        let e = t.elapsed();
        busy += e;
        walls.push(e);
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    let window = w0.elapsed();
    let allocs = Allocs::now().since(a0);
    let (u1, s1) = common::rusage(false);
    let cpu = process_cpu() - c0;
    let d1 = if daemon > 0 { proc_cpu(daemon) } else { None };
    let dn1 = if daemon > 0 {
        proc_cpu_ns(daemon)
    } else {
        None
    };
    let q1: Vec<Duration> = qemu.iter().map(|&p| qemu_monitor_cpu(p)).collect();
    let n = walls.len();
    let per = |d: Duration| d.as_secs_f64() * 1e3 / n as f64;
    let (wmin, wmed, wmean) = stats_ms(&walls);
    let (rss, hwm) = rss_kib(0);
    // libvirtd: /proc/PID/stat (every thread, 10 ms ticks) and the per-thread schedstat sum
    // (nanoseconds, live threads only). The schedstat figure is used when it is not below the
    // tick-based one by more than a tick per window (a worker thread exited), else stat.
    let daemon_stat_ms = match (d0, d1) {
        (Some(a), Some(b)) => Some(per(b - a)),
        _ => None,
    };
    let daemon_ns_ms = match (dn0, dn1) {
        (Some(a), Some(b)) if b >= a => Some(per(b - a)),
        _ => None,
    };
    let daemon_ms = match (daemon_stat_ms, daemon_ns_ms) {
        (Some(s), Some(p)) if p + per(Duration::from_millis(20)) >= s => Some(p),
        (s, _) => s,
    };
    let qemu_ms: Vec<f64> = q0.iter().zip(&q1).map(|(a, b)| per(*b - *a)).collect();
    let (lines, bytes) = strategy.output();
    // Rust heap kept between cycles (vmtel: the device cache and the deriver's state), beyond
    // what was allocated before the strategy was created.
    let kept = Allocs::now().live - base_live;
    let v = serde_json::json!({
        "mode": mode,
        "uri": uri,
        "domains": domains,
        "cycles": n,
        "window_s": window.as_secs_f64(),
        "busy_s": busy.as_secs_f64(),
        "wall_ms": {"min": wmin, "median": wmed, "mean": wmean},
        "warmup_ms": first.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>(),
        "setup_s": setup.as_secs_f64(),
        "cpu_ms": per(cpu),
        "user_ms": per(u1 - u0),
        "sys_ms": per(s1 - s0),
        "daemon_cpu_ms": daemon_ms,
        "daemon_cpu_ms_stat": daemon_stat_ms,
        "daemon_cpu_ms_schedstat": daemon_ns_ms,
        "qemu_monitor_cpu_ms": qemu_ms,
        "allocs_per_cycle": allocs.calls as f64 / n as f64,
        "alloc_bytes_per_cycle": allocs.bytes as f64 / n as f64,
        "heap_kept_bytes": kept,
        "lines": lines,
        "bytes": bytes,
        "rss_kib": rss,
        "hwm_kib": hwm,
    });
    println!("{v}");
}
