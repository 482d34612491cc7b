//! Benchmark scenario (c): synthetic VMs replayed through decode, derive and encode alone —
//! vmtel's own cost per cycle, with no libvirt call.
//!
//! Each cycle builds, outside the timed region, one bulk-stats record per VM shaped like what
//! libvirt returns for a QEMU guest (`virsh domstats` of a real guest: `state`, `cpu-total`,
//! `balloon` with guest statistics, `vcpu`, `interface`, `block`; about 80 typed parameters with
//! 2 vCPUs, 2 NICs and 2 disks; names and paths as strings) with counters that move between
//! cycles. The timed part is what `Collector::collect_chunks` and the daemon's worker do with such
//! a list, chunk by chunk (`CHUNK_DOMAINS` VMs): decode (recycled `DomainSample`s, the name and
//! UUID copied as libvirt's accessors return new strings, `bulk::Decoder::decode` with its layout
//! cache), derive (`Deriver::update_chunk`), encode (`Encoder::encode_host` of each chunk into a
//! reused buffer, as one text output does on its own thread).
//!
//! Usage: `bench_replay [--vms N] [--cycles C] [--vcpus V] [--nics K] [--disks D] [--json]`
//! (defaults 10000 VMs, 12 cycles, 2/2/2). The first cycle (no previous sample, so no
//! `vm_features`) and the second are warm-up; the rest are reported. Run it pinned to one core
//! (`taskset -c 0`). Prints a table, or one JSON object with `--json`.

#[path = "../bench/common.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{arg, stats_ms, thread_cpu, Allocs};
use vmtel::collect::bulk::Decoder;
use vmtel::collect::ffi::{OwnedParams, OwnedValue};
use vmtel::collect::CHUNK_DOMAINS;
use vmtel::derive::Deriver;
use vmtel::encode::Encoder;
use vmtel::model::{DomainSample, HostSample};

#[global_allocator]
static ALLOC: common::Counting = common::Counting;

struct Shape {
    vcpus: u32,
    nics: usize,
    disks: usize,
}

/// A VM's identity, fixed across cycles.
struct Vm {
    name: String,
    uuid: String,
    id: u32,
    nics: Vec<String>,
    disks: Vec<(String, String)>,
}

fn fleet(n: usize, shape: &Shape) -> Vec<Vm> {
    (0..n)
        .map(|i| {
            // Mostly plain names, some with characters that need escaping.
            let name = match i % 50 {
                7 => format!("web {i}, eu"),
                13 => format!("db-{i}-ünïcode"),
                _ => format!("instance-{i:08x}"),
            };
            Vm {
                name,
                uuid: vmtel::demo::uuid_for(i),
                id: u32::try_from(i + 1).unwrap_or(u32::MAX),
                nics: (0..shape.nics)
                    .map(|k| format!("vnet{}", i * shape.nics + k))
                    .collect(),
                disks: (0..shape.disks)
                    .map(|k| {
                        let dev = format!("vd{}", char::from(b'a' + (k % 26) as u8));
                        let path = format!("/var/lib/libvirt/images/instance-{i:08x}-{dev}.qcow2");
                        (dev, path)
                    })
                    .collect(),
            }
        })
        .collect()
}

/// One record as libvirt 9 returns it for a running QEMU guest, at cycle `c` (10 s apart).
fn record(i: usize, vm: &Vm, shape: &Shape, c: u64) -> OwnedParams {
    use OwnedValue::{Int, Str, UInt, ULLong};
    let mut p = OwnedParams::new();
    let k = i as u64 % 97 + 1; // per-VM activity factor
    let t = c * 10; // seconds since start
    p.push("state.state", Int(1));
    p.push("state.reason", Int(1));
    let cpu = 1_000_000_000 * k + t * 150_000_000 * k / 10;
    p.push("cpu.time", ULLong(cpu));
    p.push("cpu.user", ULLong(cpu / 10 * 8));
    p.push("cpu.system", ULLong(cpu / 10 * 2));
    p.push("cpu.cache.monitor.count", UInt(0));
    p.push("cpu.haltpoll.success.time", ULLong(0));
    p.push("cpu.haltpoll.fail.time", ULLong(0));
    let mem = 2 * 1024 * 1024;
    for (key, v) in [
        ("current", mem),
        ("maximum", mem),
        ("swap_in", 0),
        ("swap_out", 0),
        ("major_fault", 120 + k),
        ("minor_fault", 160_000 + t * 37 * k),
        ("unused", mem / 3 + (t % 7) * 1024),
        ("available", mem - 60_000),
        ("usable", mem / 2 + (t % 11) * 1024),
        ("last-update", 1_795_644_568 + t),
        ("disk_caches", 250_000 + k * 100),
        ("hugetlb_pgalloc", 0),
        ("hugetlb_pgfail", 0),
        ("rss", mem + 200_000 + k * 512),
    ] {
        p.push(&format!("balloon.{key}"), ULLong(v));
    }
    p.push("vcpu.current", UInt(shape.vcpus));
    p.push("vcpu.maximum", UInt(shape.vcpus));
    for v in 0..u64::from(shape.vcpus) {
        p.push(&format!("vcpu.{v}.state"), Int(1));
        p.push(&format!("vcpu.{v}.time"), ULLong(cpu / 2 + v * 1000));
        p.push(&format!("vcpu.{v}.wait"), ULLong(0));
        p.push(
            &format!("vcpu.{v}.delay"),
            ULLong(5_000_000 * k + t * 1_000_000 * (v + 1)),
        );
    }
    p.push("net.count", UInt(vm.nics.len() as u32));
    for (n, name) in vm.nics.iter().enumerate() {
        let n64 = n as u64 + 1;
        p.push(&format!("net.{n}.name"), Str(name.clone()));
        for (key, v) in [
            ("rx.bytes", 1_000_000 * k + t * 125_000 * n64 * k),
            ("rx.pkts", 10_000 * k + t * 120 * n64 * k),
            ("rx.errs", 0),
            ("rx.drop", k % 3),
            ("tx.bytes", 900_000 * k + t * 100_000 * n64 * k),
            ("tx.pkts", 9_000 * k + t * 100 * n64 * k),
            ("tx.errs", 0),
            ("tx.drop", 0),
        ] {
            p.push(&format!("net.{n}.{key}"), ULLong(v));
        }
    }
    p.push("block.count", UInt(vm.disks.len() as u32));
    for (d, (name, path)) in vm.disks.iter().enumerate() {
        let d64 = d as u64 + 1;
        p.push(&format!("block.{d}.name"), Str(name.clone()));
        p.push(&format!("block.{d}.path"), Str(path.clone()));
        p.push(&format!("block.{d}.backingIndex"), UInt(d as u32 + 1));
        for (key, v) in [
            ("rd.reqs", 5_000 * k + t * 40 * d64 * k),
            ("rd.bytes", 300_000_000 * k + t * 160_000 * d64 * k),
            ("rd.times", 4_000_000_000 * k + t * 1_000_000),
            ("wr.reqs", 2_000 * k + t * 20 * d64 * k),
            ("wr.bytes", 150_000_000 * k + t * 80_000 * d64 * k),
            ("wr.times", 30_000_000_000 * k + t * 3_000_000),
            ("fl.reqs", 100 * k + t),
            ("fl.times", 1_000_000 * k + t * 10_000),
            ("allocation", 1_769_472 * k),
            ("capacity", 21_474_836_480),
            ("physical", 1_712_128 * k),
        ] {
            p.push(&format!("block.{d}.{key}"), ULLong(v));
        }
    }
    p
}

#[derive(Default, Clone, Copy)]
struct Phase {
    wall: Duration,
    cpu: Duration,
    allocs: Allocs,
}

impl Phase {
    /// Runs `f`, adding its time and allocations to this phase. Phases alternate chunk by
    /// chunk (hundreds of times per cycle), so they are timed with the monotonic clock (vDSO, no
    /// system call); on a pinned, otherwise idle thread that is its CPU time. The cycle's total
    /// is the thread's CPU clock.
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let a0 = Allocs::now();
        let w0 = Instant::now();
        let out = f();
        let elapsed = w0.elapsed();
        self.wall += elapsed;
        self.cpu += elapsed;
        let a = Allocs::now().since(a0);
        self.allocs.calls += a.calls;
        self.allocs.bytes += a.bytes;
        self.allocs.live += a.live;
        out
    }
}

struct Cycle {
    decode: Phase,
    derive: Phase,
    encode: Phase,
    total_wall: Duration,
    total_cpu: Duration,
    user: Duration,
    sys: Duration,
    lines: usize,
    bytes: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = arg(&args, "--vms", 10_000);
    let cycles: usize = arg(&args, "--cycles", 12).max(3);
    let shape = Shape {
        vcpus: arg(&args, "--vcpus", 2),
        nics: arg(&args, "--nics", 2),
        disks: arg(&args, "--disks", 2),
    };
    let json = args.iter().any(|a| a == "--json");

    let vms = fleet(n, &shape);
    let mut deriver = Deriver::new();
    let mut decoder = Decoder::new();
    let encoder = Encoder::default();
    let params_per_vm = record(0, &vms[0], &shape, 0).len();
    // The worker's buffers, kept across cycles as the worker keeps them.
    let mut spare: Vec<DomainSample> = Vec::new();
    let mut features = Vec::new();
    // A text output's buffer, reused from batch to batch (as `TextEncoder` does).
    let mut lines = String::new();
    let mut chunk = HostSample {
        host: "hv-bench-01".into(),
        timestamp_ns: 0,
        domains: Vec::with_capacity(CHUNK_DOMAINS),
    };
    let base_live = Allocs::now().live;
    let mut results = Vec::with_capacity(cycles);
    let mut sample_bytes = 0i64;
    for c in 0..cycles as u64 {
        // Untimed: libvirt's side of the call (the record list it would return).
        let records: Vec<OwnedParams> = vms
            .iter()
            .enumerate()
            .map(|(i, vm)| record(i, vm, &shape, c))
            .collect();
        let mut batches = 0usize;
        let (ru0, rs0) = common::rusage(true);
        let c0 = thread_cpu();
        let w0 = Instant::now();
        let mono = c * 10_000_000_000 + 1;
        chunk.timestamp_ns = 1_795_644_568_000_000_000 + c as i64 * 10_000_000_000;
        let (mut decode, mut derive, mut encode) =
            (Phase::default(), Phase::default(), Phase::default());
        let mut line_count = 0;
        let mut bytes = 0;
        deriver.begin_cycle();
        for (vms, recs) in vms.chunks(CHUNK_DOMAINS).zip(records.chunks(CHUNK_DOMAINS)) {
            // Decode: what Collector::collect_chunks does with each record of the list.
            let live0 = Allocs::now().live;
            decode.time(|| {
                for (vm, rec) in vms.iter().zip(recs) {
                    let mut sample = spare.pop().unwrap_or_default();
                    decoder.recycle(&mut sample);
                    sample.name = vm.name.clone();
                    sample.uuid = vm.uuid.clone();
                    sample.id = Some(vm.id);
                    sample.mono_ns = mono;
                    decoder.decode(&mut sample, rec.raw_params());
                    chunk.domains.push(sample);
                }
            });
            sample_bytes = sample_bytes.max(Allocs::now().live - live0);
            // Derive and encode: the worker's chunk callback.
            derive.time(|| deriver.update_chunk(&chunk.domains, &mut features));
            encode.time(|| {
                lines.clear();
                line_count += encoder.encode_host(&chunk, &features, &mut lines);
                bytes += lines.len();
                batches += 1;
                std::hint::black_box(&lines);
            });
            spare.append(&mut chunk.domains);
        }
        derive.time(|| deriver.end_cycle());
        let total_wall = w0.elapsed();
        let total_cpu = thread_cpu() - c0;
        let (ru1, rs1) = common::rusage(true);
        results.push(Cycle {
            decode,
            derive,
            encode,
            total_wall,
            total_cpu,
            user: ru1 - ru0,
            sys: rs1 - rs0,
            lines: line_count,
            bytes,
        });
        debug_assert!(batches > 0);
        drop(records);
    }
    // What stays allocated between cycles: the deriver's per-VM state, the decoder's layouts and
    // the worker's chunk buffers (and this program's fixed fleet description, allocated before
    // `base_live`).
    let steady_live = Allocs::now().live - base_live;
    let measured = &results[2..];
    let ms = |f: &dyn Fn(&Cycle) -> Duration| stats_ms(&measured.iter().map(f).collect::<Vec<_>>());
    let total = ms(&|c| c.total_wall);
    let cpu = ms(&|c| c.total_cpu);
    let user = ms(&|c| c.user);
    let sys = ms(&|c| c.sys);
    let dec = ms(&|c| c.decode.cpu);
    let der = ms(&|c| c.derive.cpu);
    let enc = ms(&|c| c.encode.cpu);
    let last = measured.last().expect("at least one measured cycle");
    let first = &results[0];
    let (rss, hwm) = common::rss_kib(0);
    let nf = n.max(1) as f64;
    let per_chunk = CHUNK_DOMAINS.min(n).max(1) as f64;
    if json {
        let phase = |p: &Phase| {
            serde_json::json!({
                "wall_ms": p.wall.as_secs_f64() * 1e3,
                "cpu_ms": p.cpu.as_secs_f64() * 1e3,
                "allocs": p.allocs.calls,
                "alloc_bytes": p.allocs.bytes,
            })
        };
        let v = serde_json::json!({
            "scenario": "replay",
            "vms": n,
            "params_per_vm": params_per_vm,
            "cycles_measured": measured.len(),
            "wall_ms": {"min": total.0, "median": total.1, "mean": total.2},
            "cpu_ms": {"min": cpu.0, "median": cpu.1, "mean": cpu.2},
            "user_ms_median": user.1,
            "sys_ms_median": sys.1,
            "cpu_ms_median_by_phase": {"decode": dec.1, "derive": der.1, "encode": enc.1},
            "per_vm_us_median": cpu.1 * 1e3 / nf,
            "last_cycle": {"decode": phase(&last.decode), "derive": phase(&last.derive), "encode": phase(&last.encode)},
            "first_cycle": {"wall_ms": first.total_wall.as_secs_f64() * 1e3, "cpu_ms": first.total_cpu.as_secs_f64() * 1e3},
            "lines": last.lines,
            "bytes": last.bytes,
            "sample_bytes_per_vm": sample_bytes as f64 / per_chunk,
            "steady_heap_bytes_per_vm": steady_live as f64 / nf,
            "rss_kib": rss,
            "hwm_kib": hwm,
        });
        println!("{v}");
        return;
    }
    println!(
        "replay: {n} VMs, {params_per_vm} params each, {} measured cycles (after 2 warm-up)",
        measured.len()
    );
    println!(
        "cycle wall ms  min {:.2}  median {:.2}  mean {:.2}",
        total.0, total.1, total.2
    );
    println!(
        "cycle CPU ms   min {:.2}  median {:.2}  mean {:.2}  (getrusage user {:.1} + sys {:.1})",
        cpu.0, cpu.1, cpu.2, user.1, sys.1
    );
    println!(
        "per VM: {:.2} us CPU; phases (median CPU ms): decode {:.2}, derive {:.2}, encode {:.2}",
        cpu.1 * 1e3 / nf,
        dec.1,
        der.1,
        enc.1
    );
    for (name, p) in [
        ("decode", &last.decode),
        ("derive", &last.derive),
        ("encode", &last.encode),
    ] {
        println!(
            "  {name}: {} allocations ({:.1}/VM), {} bytes requested",
            p.allocs.calls,
            p.allocs.calls as f64 / nf,
            p.allocs.bytes
        );
    }
    println!(
        "output: {} lines, {} bytes per cycle; first cycle {:.2} ms",
        last.lines,
        last.bytes,
        first.total_wall.as_secs_f64() * 1e3
    );
    println!(
        "memory: samples {:.0} B/VM allocated by decode (largest chunk), state {:.0} B/VM between cycles; RSS {} KiB, peak {} KiB",
        sample_bytes as f64 / per_chunk,
        steady_live as f64 / nf,
        rss,
        hwm
    );
}
