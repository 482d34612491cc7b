//! End-to-end tests against real QEMU guests through libvirtd: the lab of `scripts/lab`
//! (docs/lab.md, "End-to-end tests"). Run alone with `cargo test --test lab`; the first test to
//! need the lab runs `scripts/lab up 3` (idempotent, ~1 s when the lab is up). Tests that pause,
//! restart, destroy or hot-plug a guest boot an extra guest of their own (`scripts/lab extra up
//! K`, K = 1..5) and remove it afterwards, so the three regular guests only ever run their
//! workload and other tests (and other users of the lab) can read them meanwhile.
//!
//! What the lab guarantees and these tests rely on (scripts/lab.d/init, docs/lab.md):
//! * Each guest runs one synchronous workload round at every even second of its uptime (per
//!   disk: 4 O_DIRECT reads and 2 writes of 64 KiB; per NIC: one IPv6 link-local multicast ping
//!   of a 1262-byte frame and the host's reply), then prints its own `/proc/net/dev` and
//!   `/proc/diskstats` to the serial console, stamped with its uptime. From the end of a round
//!   to the next even second its NIC and disk counters stand still, so a host-side reading
//!   taken right after a block appears equals the block's values.
//! * Nothing else moves them: the host has a permanent neighbour entry for each guest NIC (no
//!   neighbour discovery), and neither side sends router solicitations.
//! * Libvirt reports a `type='ethernet'` tap from the guest's side: `net.N.rx` = the guest's
//!   receive counters (`eth<N>`). Disks: `rd.reqs` = reads completed, `rd.bytes` = sectors read
//!   × 512.
//! * One difference is left from boot: on each NIC the host counts exactly one received packet
//!   more than the guest, the first one the host sent on the new tap (a DAD solicitation or an
//!   MLD report, 86 or 90 bytes) before the guest's driver was up: QEMU takes it off the tap,
//!   the guest never sees it (`BOOT_RX_*`). Taps also count drops the guest never sees
//!   (`rx.drop`), so drops are not compared with the guest. The lab boots with no bootable disk,
//!   so the firmware reads no sector before the guest kernel counts disk I/O.

#[path = "lab/console.rs"]
mod console;
#[path = "lab/harness.rs"]
mod harness;
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use influxdb_line_protocol::{parse_lines, FieldValue};
use vmtel::collect::bulk::Groups;
use vmtel::derive::Deriver;
use vmtel::encode::Encoder;
use vmtel::model::{DomainSample, Features, HostSample};

use console::{Block, Console};
use harness::*;

const BIN: &str = env!("CARGO_BIN_EXE_vmtel");

// ---------------------------------------------------------------------------------------------
// The schema (seed changelog v2.0, docs/metrics.md), written out.

// The schema: the literal copy in tests/support, the independent oracle of every test.
const VM_METRICS: &[&str] = &support::VM_METRICS_FIELDS;
const NIC_FIELDS: &[&str] = &support::NIC_FIELDS;
const VM_FEATURES: &[&str] = &support::FEATURE_FIELDS;

/// Every `vm_totals` field except `disk_errors`: QEMU has no block error counter (libvirt's
/// bulk call gives no `block.N.errors` key for QEMU, and vmtel must leave the field out rather
/// than write 0).
fn vm_totals_qemu() -> Vec<&'static str> {
    support::VM_TOTALS_FIELDS
        .into_iter()
        .filter(|f| *f != "disk_errors")
        .collect()
}

/// Every disk field except `errors` (see [`vm_totals_qemu`]).
fn disk_fields_qemu() -> Vec<&'static str> {
    support::DISK_FIELDS
        .into_iter()
        .filter(|f| *f != "errors")
        .collect()
}

/// Where each field's value comes from in `virsh domstats --raw`.
#[derive(Clone, Copy)]
enum Src {
    /// One key.
    Key(&'static str),
    /// The sum of `net.N.<suffix>` over the NICs.
    Nets(&'static str),
    /// The sum of `block.N.<suffix>` over the disks.
    Blocks(&'static str),
}
use Src::{Blocks, Key, Nets};

const METRICS_SRC: &[(&str, Src)] = &[
    ("state", Key("state.state")),
    ("cpus", Key("vcpu.current")),
    ("cputime", Key("cpu.time")),
    ("memmax", Key("balloon.maximum")),
    ("mem", Key("balloon.current")),
];

const TOTALS_SRC: &[(&str, Src)] = &[
    ("net_rxbytes", Nets("rx.bytes")),
    ("net_rxpackets", Nets("rx.pkts")),
    ("net_rxerrors", Nets("rx.errs")),
    ("net_rxdrops", Nets("rx.drop")),
    ("net_txbytes", Nets("tx.bytes")),
    ("net_txpackets", Nets("tx.pkts")),
    ("net_txerrors", Nets("tx.errs")),
    ("net_txdrops", Nets("tx.drop")),
    ("disk_rd_req", Blocks("rd.reqs")),
    ("disk_rd_bytes", Blocks("rd.bytes")),
    ("disk_wr_reqs", Blocks("wr.reqs")),
    ("disk_wr_bytes", Blocks("wr.bytes")),
    ("memactual", Key("balloon.current")),
    ("memrss", Key("balloon.rss")),
    ("memavailable", Key("balloon.available")),
    ("memusable", Key("balloon.usable")),
    ("memswap_in", Key("balloon.swap_in")),
    ("memswap_out", Key("balloon.swap_out")),
    ("memmajor_fault", Key("balloon.major_fault")),
    ("memminor_fault", Key("balloon.minor_fault")),
    ("memdisk_cache", Key("balloon.disk_caches")),
    ("timeusr", Key("cpu.user")),
    ("timesys", Key("cpu.system")),
    ("cpus", Key("vcpu.current")),
    ("cputime", Key("cpu.time")),
    ("state", Key("state.state")),
];

/// `vm_devices` NIC field -> `net.N.<key>`.
const NIC_SRC: &[(&str, &str)] = &[
    ("rxbytes", "rx.bytes"),
    ("rxpackets", "rx.pkts"),
    ("rxerrors", "rx.errs"),
    ("rxdrops", "rx.drop"),
    ("txbytes", "tx.bytes"),
    ("txpackets", "tx.pkts"),
    ("txerrors", "tx.errs"),
    ("txdrops", "tx.drop"),
];

/// `vm_devices` disk field -> `block.N.<key>`.
const DISK_SRC: &[(&str, &str)] = &[
    ("rd_req", "rd.reqs"),
    ("rd_bytes", "rd.bytes"),
    ("wr_reqs", "wr.reqs"),
    ("wr_bytes", "wr.bytes"),
];

// ---------------------------------------------------------------------------------------------
// Line protocol

#[derive(Debug, Clone)]
struct Point {
    raw: String,
    measurement: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, f64>,
    ts: i64,
}

impl Point {
    fn field_names(&self) -> Vec<&str> {
        self.fields.keys().map(String::as_str).collect()
    }
}

fn parse(text: &str) -> Vec<Point> {
    text.lines()
        .map(|raw| {
            let mut parsed: Vec<_> = parse_lines(raw).collect();
            assert_eq!(parsed.len(), 1, "{raw}");
            let line = parsed
                .pop()
                .unwrap()
                .unwrap_or_else(|e| panic!("invalid line protocol: {e}\n{raw}"));
            let tags = line
                .series
                .tag_set
                .iter()
                .flatten()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let fields = line
                .field_set
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        FieldValue::I64(i) => *i as f64,
                        FieldValue::F64(f) => *f,
                        other => panic!("field {k} is {other:?}: {raw}"),
                    };
                    (k.to_string(), v)
                })
                .collect();
            Point {
                raw: raw.to_owned(),
                measurement: line.series.measurement.to_string(),
                tags,
                fields,
                ts: line
                    .timestamp
                    .unwrap_or_else(|| panic!("no timestamp: {raw}")),
            }
        })
        .collect()
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Encodes one cycle the way `vmtel once` and `vmtel run` do.
fn encode(sample: &HostSample, features: &[Option<Features>]) -> Vec<Point> {
    let mut out = String::new();
    Encoder::default().encode_host(sample, features, &mut out);
    parse(&out)
}

fn wall_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// Checks shared by several tests

/// Every group's data is there for a running lab guest: what a complete bulk record gives.
fn complete(g: &Guest, d: &DomainSample) -> Result<(), String> {
    let mut missing = Vec::new();
    let mut need = |what: &str, ok: bool| {
        if !ok {
            missing.push(what.to_owned());
        }
    };
    need("state=1", d.state == Some(1));
    need("id", d.id.is_some());
    need("cpu.time", d.cpu.time.is_some());
    need("cpu.user", d.cpu.user.is_some());
    need("cpu.system", d.cpu.system.is_some());
    need("vcpu.current", d.vcpu.current == Some(g.vcpus));
    need("vcpu.maximum", d.vcpu.maximum == Some(g.vcpus_max));
    need("vcpu.N.delay", d.vcpu.delay_sum.is_some());
    let m = &d.mem;
    need("balloon.maximum", m.maximum == Some(g.memory_kib));
    need("balloon.current", m.current.is_some());
    need("balloon.rss", m.rss.is_some());
    need("balloon.available", m.available.is_some());
    need("balloon.usable", m.usable.is_some());
    need("balloon.unused", m.unused.is_some());
    need("balloon.swap_in", m.swap_in.is_some());
    need("balloon.swap_out", m.swap_out.is_some());
    need("balloon.major_fault", m.major_fault.is_some());
    need("balloon.minor_fault", m.minor_fault.is_some());
    need("balloon.disk_caches", m.disk_caches.is_some());
    let nics: Vec<&str> = d.nics.iter().map(|n| n.name.as_str()).collect();
    need(&format!("nics {:?} (got {nics:?})", g.nets), nics == g.nets);
    let macs: Vec<Option<&str>> = d.nics.iter().map(|n| n.mac.as_deref()).collect();
    need(
        &format!("MACs {:?} (got {macs:?})", g.macs),
        macs == [Some(g.macs[0].as_str()), Some(g.macs[1].as_str())],
    );
    for n in &d.nics {
        let all = [
            n.rx_bytes, n.rx_pkts, n.rx_errs, n.rx_drop, n.tx_bytes, n.tx_pkts, n.tx_errs,
            n.tx_drop,
        ];
        need(
            &format!("every counter of NIC {}", n.name),
            all.iter().all(Option::is_some),
        );
    }
    let disks: Vec<&str> = d.disks.iter().map(|k| k.name.as_str()).collect();
    need(
        &format!("disks {:?} (got {disks:?})", g.disks),
        disks == g.disks,
    );
    for (k, path) in d.disks.iter().zip(&g.disk_paths) {
        need(
            &format!("path of {}", k.name),
            k.path.as_deref() == Some(path),
        );
        let all = [k.rd_reqs, k.rd_bytes, k.wr_reqs, k.wr_bytes];
        need(
            &format!("every counter of disk {}", k.name),
            all.iter().all(Option::is_some),
        );
        need(
            &format!("no error counter on {}", k.name),
            k.errors.is_none(),
        );
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("guest {:?} lacks: {}", g.name, missing.join(", ")))
    }
}

/// Physical and workload bounds on derived values: never negative, never a spike.
///
/// CPU percentages are shares of the VM's vCPUs, and QEMU's threads cannot use more than the
/// host's CPUs, so `cpu_pct <= 100 * host CPUs / vCPUs` whatever the guest does; steal is per
/// vCPU, at most 100 %. vmtel stamps each cycle once, after libvirt's bulk call returns, while
/// libvirt read a domain somewhere during the call: the counters may span up to the previous
/// call's duration more than vmtel's interval, so the bounds are widened by `slack` = 1 +
/// previous call / interval (see [`Cycler`]). The byte and packet rates are far above anything
/// a lab guest does (well under 1 MB/s) and far below what a counter reset compared with an
/// older reading would give.
fn sane(sample: &HostSample, features: &[Option<Features>], slack: f64) -> Result<(), String> {
    let host_cpus = std::thread::available_parallelism().map_or(64, |n| n.get()) as f64;
    let mut bad = Vec::new();
    for (d, f) in sample.domains.iter().zip(features) {
        let Some(f) = f else { continue };
        let vcpus = f64::from(d.vcpu.current.unwrap_or(1).max(1));
        let cpu_max = 100.0 * host_cpus / vcpus * slack * 1.005;
        let checks: [(&str, Option<f64>, f64); 13] = [
            ("cpu_pct", f.cpu_pct, cpu_max),
            ("cpu_usr_pct", f.cpu_usr_pct, cpu_max),
            ("cpu_sys_pct", f.cpu_sys_pct, cpu_max),
            ("cpu_steal_pct", f.cpu_steal_pct, 100.0 * slack * 1.005),
            ("mem_used_pct", f.mem_used_pct, 100.0),
            ("net_rx_bps", f.net_rx_bps, 10e6),
            ("net_tx_bps", f.net_tx_bps, 10e6),
            ("net_rx_pps", f.net_rx_pps, 10e3),
            ("net_tx_pps", f.net_tx_pps, 10e3),
            ("disk_rd_bps", f.disk_rd_bps, 100e6),
            ("disk_wr_bps", f.disk_wr_bps, 100e6),
            ("disk_rd_iops", f.disk_rd_iops, 10e3),
            ("disk_wr_iops", f.disk_wr_iops, 10e3),
        ];
        for (name, v, max) in checks {
            if let Some(v) = v {
                if !(v.is_finite() && (0.0..=max).contains(&v)) {
                    bad.push(format!("{:?} {name}={v} (allowed 0..={max:.1})", d.name));
                }
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

/// A collector and a deriver run cycle after cycle, every cycle's features checked with
/// [`sane`].
struct Cycler {
    collector: vmtel::collect::Collector,
    deriver: Deriver,
    /// vmtel's stamp and the duration of the previous cycle's call.
    prev: Option<(u64, Duration)>,
    cycles: usize,
    /// The largest slack [`sane`] needed so far.
    max_slack: f64,
}

impl Cycler {
    fn new() -> Self {
        Cycler {
            collector: collector(),
            deriver: Deriver::new(),
            prev: None,
            cycles: 0,
            max_slack: 1.0,
        }
    }

    fn cycle(&mut self) -> (HostSample, Vec<Option<Features>>) {
        let _q = QUERIES.lock();
        self.cycle_locked()
    }

    /// [`Cycler::cycle`] for a caller that holds [`QUERIES`].
    fn cycle_locked(&mut self) -> (HostSample, Vec<Option<Features>>) {
        let (s, took) = collect_locked(&mut self.collector);
        let f = self.deriver.update(&s);
        let mono = s.domains.first().map_or(0, |d| d.mono_ns);
        // Samples are stamped with the middle of their bulk call, but each VM was read at some
        // point during it: the true interval is at least the stamped one less half of each of
        // the two calls (a call slowed by a guest destroyed during it takes seconds).
        let slack = match self.prev {
            Some((before, took_before)) if mono > before => {
                let stamped = (mono - before) as f64;
                let spread = (took_before.as_nanos() + took.as_nanos()) as f64 / 2.0;
                stamped / (stamped - spread).max(stamped * 0.05)
            }
            _ => 1.0,
        };
        self.max_slack = self.max_slack.max(slack);
        sane(&s, &f, slack)
            .unwrap_or_else(|e| panic!("cycle {}: vm_features out of bounds: {e}", self.cycles));
        self.prev = Some((mono, took));
        self.cycles += 1;
        (s, f)
    }
}

// ---------------------------------------------------------------------------------------------
// Host and guest counters, side by side

/// (device, counter) -> value. Devices by their host-side names (tap, disk target).
type Counters = BTreeMap<(String, &'static str), u64>;

const NIC_COUNTERS: [&str; 6] = [
    "rx_bytes", "rx_pkts", "rx_errs", "tx_bytes", "tx_pkts", "tx_errs",
];
const DISK_COUNTERS: [&str; 4] = ["rd_reqs", "rd_bytes", "wr_reqs", "wr_bytes"];

/// vmtel's counters for the guest's two NICs and two disks; `None` if any is missing (a
/// partial record).
fn host_counters(g: &Guest, d: &DomainSample) -> Option<Counters> {
    let mut c = Counters::new();
    for tap in &g.nets {
        let n = d.nics.iter().find(|n| &n.name == tap)?;
        let v = [
            n.rx_bytes, n.rx_pkts, n.rx_errs, n.tx_bytes, n.tx_pkts, n.tx_errs,
        ];
        for (k, v) in NIC_COUNTERS.iter().zip(v) {
            c.insert((tap.clone(), k), v?);
        }
    }
    for disk in &g.disks {
        let k = d.disks.iter().find(|k| &k.name == disk)?;
        let v = [k.rd_reqs, k.rd_bytes, k.wr_reqs, k.wr_bytes];
        for (name, v) in DISK_COUNTERS.iter().zip(v) {
            c.insert((disk.clone(), name), v?);
        }
    }
    Some(c)
}

/// The guest's own counters from a console block, keyed like [`host_counters`]: `eth<N>` is
/// the guest side of tap `nets[N]` (libvirt reports a tap from the guest's side, so rx is rx);
/// diskstats sectors are 512 bytes.
fn guest_counters(g: &Guest, b: &Block) -> Counters {
    let mut c = Counters::new();
    for (i, tap) in g.nets.iter().enumerate() {
        let n = b
            .net
            .get(&format!("eth{i}"))
            .unwrap_or_else(|| panic!("block {} has no eth{i}", b.seq));
        let v = [
            n.rx_bytes,
            n.rx_packets,
            n.rx_errs,
            n.tx_bytes,
            n.tx_packets,
            n.tx_errs,
        ];
        for (k, v) in NIC_COUNTERS.iter().zip(v) {
            c.insert((tap.clone(), k), v);
        }
    }
    for disk in &g.disks {
        let k = b
            .disks
            .get(disk)
            .unwrap_or_else(|| panic!("block {} has no {disk}", b.seq));
        let v = [
            k.reads,
            k.read_sectors * 512,
            k.writes,
            k.write_sectors * 512,
        ];
        for (name, v) in DISK_COUNTERS.iter().zip(v) {
            c.insert((disk.clone(), name), v);
        }
    }
    c
}

/// host - guest, per counter.
type Offset = BTreeMap<(String, &'static str), i128>;

fn offset(host: &Counters, guest: &Counters) -> Offset {
    host.iter()
        .map(|(k, &h)| (k.clone(), i128::from(h) - i128::from(guest[k])))
        .collect()
}

/// The packet QEMU drops at boot (see the module docs): at most one, and a small one.
const BOOT_RX_PKTS: i128 = 1;
const BOOT_RX_BYTES: i128 = 128;

/// Whether a host-minus-guest offset is what boot leaves: nothing, or one small packet
/// received on a NIC.
fn boot_offset_ok(off: &Offset) -> Result<(), String> {
    let mut bad = Vec::new();
    for ((dev, k), &v) in off {
        let ok = match *k {
            "rx_pkts" => (0..=BOOT_RX_PKTS).contains(&v),
            "rx_bytes" => {
                let pkts = off[&(dev.clone(), "rx_pkts")];
                (0..=BOOT_RX_BYTES * pkts.max(0)).contains(&v) && (v == 0) == (pkts == 0)
            }
            _ => v == 0,
        };
        if !ok {
            bad.push(format!("{dev}.{k} host-guest={v}"));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join(", "))
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The bulk path, `vmtel once` and `virsh domstats`

/// The bulk call returns every group for the real guests, so vmtel makes no per-domain call;
/// `vmtel once` writes the four measurements with exactly the fields QEMU provides, and its
/// values lie between two `virsh domstats` readings taken just before and just after it.
/// The host's own fields of `/proc/stat` (`cpu` line, USER_HZ ticks) and `/proc/meminfo` (KiB).
fn proc_host() -> (Vec<u64>, BTreeMap<String, u64>) {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let cpu: Vec<u64> = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .expect("cpu line")
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().expect("tick count"))
        .collect();
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    let mem = meminfo
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_owned(), v.split_whitespace().next()?.parse().ok()?))
        })
        .collect();
    (cpu, mem)
}

/// The host's `vm_host` values from libvirtd (which runs on this machine) agree with the
/// kernel's: memory as `/proc/meminfo` says, CPUs as online, and the CPU times (libvirt sums
/// user+nice as user and system+irq+softirq as kernel, ns) between two `/proc/stat` readings
/// taken around the call.
#[test]
fn host_line_agrees_with_the_kernel() {
    lab();
    let mut c = collector();
    let (before, mem_before) = proc_host();
    let _ = collect(&mut c);
    let n = c.node_stats().expect("vm_host values from qemu:///system");
    let (after, mem_after) = proc_host();
    let tick_ns = 1_000_000_000 / 100; // USER_HZ is 100 on Linux
    let within = |what: &str, got: Option<u64>, lo: u64, hi: u64| {
        let got = got.unwrap_or_else(|| panic!("no {what}: {n:?}"));
        // A tick of slack each side: the kernel and libvirt round the same counters.
        assert!(
            got + tick_ns >= lo * tick_ns && got <= hi * tick_ns + tick_ns,
            "{what} {got} ns outside [{}, {}] ns from /proc/stat",
            lo * tick_ns,
            hi * tick_ns
        );
    };
    within(
        "cpu_user",
        n.cpu_user,
        before[0] + before[1],
        after[0] + after[1],
    );
    within(
        "cpu_kernel",
        n.cpu_kernel,
        before[2] + before[5] + before[6],
        after[2] + after[5] + after[6],
    );
    within("cpu_idle", n.cpu_idle, before[3], after[3]);
    within("cpu_iowait", n.cpu_iowait, before[4], after[4]);
    assert_eq!(n.mem_total, mem_before.get("MemTotal").copied(), "memtotal");
    assert_eq!(mem_before.get("MemTotal"), mem_after.get("MemTotal"));
    let free = n.mem_free.expect("memfree");
    let (a, b) = (mem_before["MemFree"], mem_after["MemFree"]);
    // Free memory moves while the guests run: within what it was around the call, give or
    // take 64 MiB of churn.
    assert!(
        free + 65_536 >= a.min(b) && free <= a.max(b) + 65_536,
        "memfree {free} KiB, /proc/meminfo said {a} and {b}"
    );
    let online = Command::new("getconf")
        .arg("_NPROCESSORS_ONLN")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u64>()
                .ok()
        });
    assert_eq!(
        n.cpus, online,
        "logical CPUs online (getconf _NPROCESSORS_ONLN)"
    );
    assert!(n.mhz.is_some_and(|m| m > 0), "{n:?}");
}

#[test]
fn bulk_path_complete_and_once_agrees_with_virsh() {
    let guests = lab();
    let mut c = collector();
    let (sample, log) = with_log(|| collect(&mut c));
    assert_eq!(
        c.bulk_groups(),
        Some(Groups::ALL),
        "bulk call groups {:?}, expected all six: vmtel falls back to per-domain calls",
        c.bulk_groups().map(|g| g.names())
    );
    assert!(
        !log.iter().any(|l| l.contains("per-domain")),
        "fallback announced: {log:?}"
    );
    assert!(problems(&log, &[]).is_empty(), "vmtel logged: {log:?}");
    for g in guests {
        let d = dom(&sample, &g.uuid).unwrap_or_else(|| panic!("no sample for {:?}", g.name));
        assert_eq!(d.name, g.name);
        complete(g, d).unwrap();
    }

    let host = virsh(&["hostname"]).trim().to_owned();
    let ids: BTreeMap<&str, String> = guests
        .iter()
        .map(|g| {
            (
                g.uuid.as_str(),
                virsh(&["domid", &g.uuid]).trim().to_owned(),
            )
        })
        .collect();
    // Gauges (balloon statistics refreshed every second, QEMU's RSS) may move once between the
    // two virsh readings; a reading can then fall outside them. Such a run is repeated; a wrong
    // value or field fails every attempt.
    let mut failures = Vec::new();
    for attempt in 1..=3 {
        match once_vs_virsh(guests, &host, &ids) {
            Ok(()) => {
                eprintln!("vmtel once agrees with virsh domstats (attempt {attempt})");
                return;
            }
            Err(e) => failures.push(format!("attempt {attempt}:\n  {}", e.join("\n  "))),
        }
    }
    panic!("vmtel once vs virsh domstats:\n{}", failures.join("\n"));
}

type Stats = BTreeMap<String, String>;

fn value(s: &Stats, key: &str) -> Option<f64> {
    s.get(key).and_then(|v| v.parse::<f64>().ok())
}

/// Reads `src` from one `virsh domstats` reading.
fn read(s: &Stats, src: Src) -> Option<f64> {
    match src {
        Key(k) => value(s, k),
        Nets(suffix) => (0..2).map(|i| value(s, &format!("net.{i}.{suffix}"))).sum(),
        Blocks(suffix) => (0..2)
            .map(|i| value(s, &format!("block.{i}.{suffix}")))
            .sum(),
    }
}

fn once_vs_virsh(
    guests: &[Guest],
    host: &str,
    ids: &BTreeMap<&str, String>,
) -> Result<(), Vec<String>> {
    let uuids: Vec<&str> = guests.iter().map(|g| g.uuid.as_str()).collect();
    let (t_a, before, out, after, t_b) = {
        let _q = QUERIES.lock();
        let t_a = wall_secs();
        let before = domstats(&uuids);
        let out = Command::new(BIN)
            .args(["once", "--uri", URI, "--gap", "200ms"])
            .output()
            .expect("run vmtel once");
        let after = domstats(&uuids);
        (t_a, before, out, after, wall_secs())
    };
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vmtel once: {}\n{stderr}", out.status);
    let logged: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !about_other_extra(l, &[]))
        .collect();
    assert!(logged.is_empty(), "vmtel once logged:\n{stderr}");
    let points = parse(&stdout);
    let mut errs = Vec::new();

    for g in guests {
        let (a, b) = (&before[&g.name], &after[&g.name]);
        for s in [a, b] {
            if s.keys()
                .any(|k| k.starts_with("block.") && k.ends_with(".errors"))
            {
                errs.push(format!(
                    "{:?}: domstats has block errors now; update the test",
                    g.name
                ));
            }
        }
        let mine: Vec<&Point> = points
            .iter()
            .filter(|p| p.tags.get("uuid") == Some(&g.uuid))
            .collect();
        let ctx = |p: &Point| format!("{:?} {}", g.name, p.raw);
        for p in &mine {
            let mut want_tags = vec!["host", "VMID", "name", "uuid"];
            if p.measurement == "vm_devices" {
                want_tags.extend(["devtype", "device"]);
            }
            let tags: Vec<&str> = p.tags.keys().map(String::as_str).collect();
            if sorted(&tags) != sorted(&want_tags) {
                errs.push(format!("tags {tags:?}: {}", ctx(p)));
            }
            if p.tags["host"] != host
                || p.tags["name"] != g.name
                || p.tags["VMID"] != ids[g.uuid.as_str()]
            {
                errs.push(format!(
                    "host/name/VMID tags wrong (want {host:?}, {:?}, {}): {}",
                    g.name,
                    ids[g.uuid.as_str()],
                    ctx(p)
                ));
            }
            if !(t_a.floor() as i64..=t_b.ceil() as i64).contains(&p.ts) {
                errs.push(format!(
                    "timestamp {} not within [{t_a}, {t_b}]: {}",
                    p.ts,
                    ctx(p)
                ));
            }
        }
        let check = |p: &Point, field: &str, x: Option<f64>, y: Option<f64>| {
            let v = p.fields[field];
            match (x, y) {
                (Some(x), Some(y)) if x.min(y) <= v && v <= x.max(y) => None,
                (x, y) => Some(format!(
                    "{:?} {} {field}={v} not between virsh's {x:?} and {y:?}",
                    g.name, p.measurement
                )),
            }
        };
        let one =
            |m: &str| -> Vec<&&Point> { mine.iter().filter(|p| p.measurement == m).collect() };

        let totals = vm_totals_qemu();
        for (m, want) in [
            ("vm_metrics", VM_METRICS),
            ("vm_totals", totals.as_slice()),
            ("vm_features", VM_FEATURES),
        ] {
            let lines = one(m);
            if lines.len() != 1 {
                errs.push(format!("{:?}: {} {m} lines", g.name, lines.len()));
                continue;
            }
            if sorted(&lines[0].field_names()) != sorted(want) {
                errs.push(format!(
                    "{m} fields {:?}, expected exactly {want:?}: {}",
                    lines[0].field_names(),
                    ctx(lines[0])
                ));
            }
        }
        if let [p] = one("vm_metrics")[..] {
            for &(f, src) in METRICS_SRC {
                if p.fields.contains_key(f) {
                    errs.extend(check(p, f, read(a, src), read(b, src)));
                }
            }
        }
        if let [p] = one("vm_totals")[..] {
            for &(f, src) in TOTALS_SRC {
                if p.fields.contains_key(f) {
                    errs.extend(check(p, f, read(a, src), read(b, src)));
                }
            }
        }
        if let [p] = one("vm_features")[..] {
            for (f, &v) in &p.fields {
                // Only the sign and mem_used_pct here: over `once`'s 200 ms gap the bulk call's
                // own duration makes CPU shares imprecise (see `sane`).
                let max = if f == "mem_used_pct" { 100.0 } else { f64::MAX };
                if !(0.0..=max).contains(&v) {
                    errs.push(format!("{f}={v} out of range: {}", ctx(p)));
                }
            }
        }
        let devices = one("vm_devices");
        let names = |t: &str| -> Vec<String> {
            let mut v: Vec<String> = devices
                .iter()
                .filter(|p| p.tags["devtype"] == t)
                .map(|p| p.tags["device"].clone())
                .collect();
            v.sort();
            v
        };
        if names("nic") != sorted(&[&g.nets[0], &g.nets[1]])
            || names("disk") != sorted(&[&g.disks[0], &g.disks[1]])
        {
            errs.push(format!(
                "{:?}: device lines for nics {:?} disks {:?}",
                g.name,
                names("nic"),
                names("disk")
            ));
        }
        let disk_fields = disk_fields_qemu();
        for p in &devices {
            let dev = &p.tags["device"];
            let (prefix, want, src): (&str, &[&str], &[(&str, &str)]) =
                if p.tags["devtype"] == "nic" {
                    ("net", NIC_FIELDS, NIC_SRC)
                } else {
                    ("block", disk_fields.as_slice(), DISK_SRC)
                };
            if sorted(&p.field_names()) != sorted(want) {
                errs.push(format!(
                    "fields {:?}, expected exactly {want:?}: {}",
                    p.field_names(),
                    ctx(p)
                ));
            }
            let Some(idx) = (0..8).find(|i| a.get(&format!("{prefix}.{i}.name")) == Some(dev))
            else {
                errs.push(format!("virsh has no {prefix} named {dev}"));
                continue;
            };
            for &(f, key) in src {
                if p.fields.contains_key(f) {
                    let key = format!("{prefix}.{idx}.{key}");
                    errs.extend(check(p, f, value(a, &key), value(b, &key)));
                }
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Truth: the guests' own counters

/// Shortest interval over which rates are compared, and the tolerance.
///
/// Both sides' rates are taken between the same two "anchors" (below), where the counter deltas
/// agree exactly, so what is left is the difference between the two interval lengths: the
/// guest's, from its uptime stamps (10 ms resolution; guest clock = TSC calibrated against the
/// HPET at boot, within 0.1-0.4 % of the host's here), and vmtel's, from its sample stamps
/// (`DomainSample::mono_ns`). Using only prompt anchors (`MAX_LAG`, `MAX_STAMP_DELAY`), the two
/// differ by at most ~0.3 s, 1 % of 30 s; measured: within 0.15 %. 2 % is what the issue
/// allows; a rate over the wrong interval, in the wrong unit or from the wrong device is off by
/// far more.
const RATE_SPAN_SECS: f64 = 30.0;
const RATE_TOLERANCE: f64 = 0.02;

/// A vmtel sample taken right after a console block appeared.
struct Anchor {
    /// Index of that block in the console.
    block: usize,
    /// The block's uptime stamp.
    uptime: f64,
    sample: HostSample,
    host: Counters,
    /// host - guest at this block.
    off: Offset,
    /// When the test saw the block's END line (its own clock, seconds) minus the block's
    /// uptime stamp: a constant (the clocks' offset) plus how long the guest took to print the
    /// block and virtlogd to write it.
    lag: f64,
    /// vmtel's stamp of the sample minus when the test saw the block: waiting for other tests'
    /// queries, then libvirt's bulk call (vmtel stamps a cycle once, after the call returns,
    /// however long it took).
    stamp_delay: f64,
}

/// An anchor is "prompt" when the test saw its block at most `MAX_LAG` later than the
/// quickest-seen blocks around it (within `LAG_WINDOW` s of guest time) and vmtel stamped its
/// sample at most `MAX_STAMP_DELAY` after that. When the host is busy (other guests booting),
/// a TCG guest can take over half a second to get a block out, and libvirt's bulk call can
/// take as long (QEMU monitors answer late); vmtel's stamp is then that much later than the
/// instant the counters belong to. Such anchors still have to agree with the guest's counters,
/// but they are not used as the ends of the rate interval.
const MAX_LAG: f64 = 0.1;
const LAG_WINDOW: f64 = 10.0;
const MAX_STAMP_DELAY: f64 = 0.2;

/// For every lab guest: vmtel's per-NIC and per-disk counters equal the guest's own
/// `/proc/net/dev` and `/proc/diskstats` (up to the packet QEMU drops at boot, and to what moved
/// between the two readings), and vmtel's rates, per device and in `vm_features`, are within
/// 2 % of the guest's over the same interval of at least 30 s.
///
/// How: each time a guest's console shows a new stats block, vmtel samples at once (an
/// "anchor"). Thanks to the synchronous workload the anchor falls where the guest's counters
/// stand still, so host - guest is the same at every anchor: the boot offset. An anchor where
/// something moved in between (a late sample, a router solicitation) shows a different offset;
/// it still has to lie between the block and the next one, but rates are taken between the
/// first and last anchors with the common offset, over the guest's uptime stamps on one side
/// and vmtel's own sample times (`DomainSample::mono_ns`, as `vm_features` uses) on the other.
#[test]
fn counters_and_rates_match_the_guests_own() {
    let guests = lab();
    let reports: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = guests.iter().map(|g| s.spawn(move || truth(g))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in reports {
        eprintln!("{r}");
    }
}

fn truth(g: &Guest) -> String {
    let mut console = Console::open(&g.console);
    let wl = console.workload.unwrap_or_else(|| {
        panic!(
            "{:?}: console has no @@VMTEL-WORKLOAD line (old guest?)",
            g.name
        )
    });
    assert!(
        wl.direct,
        "{:?}: the guest's disk I/O is not O_DIRECT",
        g.name
    );
    let mut c = collector();
    let mut anchors: Vec<Anchor> = Vec::new();
    let mut partial = 0;
    // Under load (extra guests booting) prompt anchors can be rare for a minute or two.
    let deadline = Instant::now() + Duration::from_secs(300);
    let pair = loop {
        assert!(
            Instant::now() < deadline,
            "{:?}: no two clean, prompt anchors {RATE_SPAN_SECS} s apart within 300 s ({} anchors, {partial} partial)",
            g.name,
            anchors.len()
        );
        let block = console.wait_next(Duration::from_secs(30));
        // vmtel's own monotonic clock, so that its sample stamps compare with it.
        let seen = vmtel::collect::mono_ns();
        let lag = seen as f64 / 1e9 - console.blocks[block].uptime;
        let sample = collect_first(&mut c);
        let d = dom(&sample, &g.uuid)
            .unwrap_or_else(|| panic!("{:?} missing from the cycle", g.name))
            .clone();
        let Some(host) = host_counters(g, &d) else {
            partial += 1;
            continue;
        };
        let off = offset(&host, &guest_counters(g, &console.blocks[block]));
        let stamp_delay = d.mono_ns.saturating_sub(seen) as f64 / 1e9;
        anchors.push(Anchor {
            block,
            uptime: console.blocks[block].uptime,
            sample: HostSample {
                domains: vec![d],
                ..sample
            },
            host,
            off,
            lag,
            stamp_delay,
        });
        if let Some(p) = clean_pair(&anchors, &console) {
            break p;
        }
    };
    let mode = mode(&anchors);
    boot_offset_ok(&mode).unwrap_or_else(|e| {
        panic!(
            "{:?}: host and guest counters differ by more than boot explains: {e}",
            g.name
        )
    });

    // Counters agree, allowing for what moved between the two readings: at every anchor,
    // guest(block) <= vmtel - boot offset <= guest(a block surely stamped after vmtel's read).
    // In guest time vmtel read at most (print delay + stamp delay) after the block's stamp; the
    // print delay exceeds this block's lag beyond the quickest one by at most the quickest
    // print (well under `PRINT_MARGIN`).
    const PRINT_MARGIN: f64 = 0.5;
    let quickest = anchors.iter().map(|a| a.lag).fold(f64::INFINITY, f64::min);
    let read_by = |a: &Anchor| a.uptime + (a.lag - quickest) + a.stamp_delay + PRINT_MARGIN;
    let last = anchors.iter().map(read_by).fold(0.0, f64::max);
    wait_for(
        Duration::from_secs(60),
        "a block after vmtel's last read",
        || {
            console.poll();
            console
                .blocks
                .last()
                .filter(|b| b.uptime > last)
                .map(|_| ())
        },
    );
    for a in &anchors {
        let lo = &console.blocks[a.block];
        let hi = console.blocks[a.block..]
            .iter()
            .find(|b| b.uptime > read_by(a))
            .unwrap();
        let (glo, ghi) = (guest_counters(g, lo), guest_counters(g, hi));
        for (k, &h) in &a.host {
            let h = i128::from(h) - mode[k];
            assert!(
                i128::from(glo[k]) <= h && h <= i128::from(ghi[k]),
                "{:?} {}.{}: vmtel {h} (boot offset removed) not between the guest's {} (uptime {}) and {} (uptime {}); \
                 vmtel stamped its sample {:.3} s after the test saw the block",
                g.name,
                k.0,
                k.1,
                glo[k],
                lo.uptime,
                ghi[k],
                hi.uptime,
                a.stamp_delay
            );
        }
    }
    let clean = anchors.iter().filter(|a| a.off == mode).count();

    // Rates over the same interval.
    let (i, j) = pair;
    let (ai, aj) = (&anchors[i], &anchors[j]);
    let (bi, bj) = (&console.blocks[ai.block], &console.blocks[aj.block]);
    let guest_secs = bj.uptime - bi.uptime;
    let host_secs = (aj.sample.domains[0].mono_ns - ai.sample.domains[0].mono_ns) as f64 / 1e9;
    let (gi, gj) = (guest_counters(g, bi), guest_counters(g, bj));
    let guest_rate = |k: &(String, &'static str)| (gj[k] - gi[k]) as f64 / guest_secs;
    let mut errs = Vec::new();
    let mut close = |what: String, vmtel: f64, guest: f64| {
        let ok = if guest == 0.0 {
            vmtel == 0.0
        } else {
            ((vmtel - guest) / guest).abs() <= RATE_TOLERANCE
        };
        if !ok {
            errs.push(format!("{what}: vmtel {vmtel:.3}/s, guest {guest:.3}/s"));
        }
    };
    for k in gi.keys() {
        let vmtel = (aj.host[k] - ai.host[k]) as f64 / host_secs;
        close(format!("{}.{}", k.0, k.1), vmtel, guest_rate(k));
    }
    let mut deriver = Deriver::new();
    deriver.update(&ai.sample);
    let f = deriver.update(&aj.sample)[0]
        .unwrap_or_else(|| panic!("{:?}: no vm_features between the two samples", g.name));
    let sum = |devs: &[String], counter: &'static str| -> f64 {
        devs.iter().map(|d| guest_rate(&(d.clone(), counter))).sum()
    };
    let features = [
        ("net_rx_bps", f.net_rx_bps, sum(&g.nets, "rx_bytes")),
        ("net_tx_bps", f.net_tx_bps, sum(&g.nets, "tx_bytes")),
        ("net_rx_pps", f.net_rx_pps, sum(&g.nets, "rx_pkts")),
        ("net_tx_pps", f.net_tx_pps, sum(&g.nets, "tx_pkts")),
        ("disk_rd_bps", f.disk_rd_bps, sum(&g.disks, "rd_bytes")),
        ("disk_wr_bps", f.disk_wr_bps, sum(&g.disks, "wr_bytes")),
        ("disk_rd_iops", f.disk_rd_iops, sum(&g.disks, "rd_reqs")),
        ("disk_wr_iops", f.disk_wr_iops, sum(&g.disks, "wr_reqs")),
    ];
    let mut summary = Vec::new();
    for (name, vmtel, guest) in features {
        let vmtel = vmtel.unwrap_or_else(|| panic!("{:?}: vm_features has no {name}", g.name));
        summary.push(format!("{name} {vmtel:.1}"));
        close(format!("vm_features {name}"), vmtel, guest);
    }
    assert!(
        errs.is_empty(),
        "{:?}: rates over guest uptime {:.2}..{:.2} ({guest_secs:.2} s; vmtel's samples {host_secs:.3} s apart) differ by more than {}%:\n  {}",
        g.name,
        bi.uptime,
        bj.uptime,
        RATE_TOLERANCE * 100.0,
        errs.join("\n  ")
    );
    let slow = anchors
        .iter()
        .filter(|a| a.stamp_delay > MAX_STAMP_DELAY)
        .count();
    format!(
        "{:?}: {} anchors ({clean} clean, {slow} stamped >{MAX_STAMP_DELAY} s late, {partial} partial), boot offset {:?}; rates over {guest_secs:.2} s guest / {host_secs:.3} s vmtel (interval error {:+.2}%; block seen {:+.3} s, stamps {:.3}/{:.3} s after): {}",
        g.name,
        anchors.len(),
        mode.iter().filter(|(_, &v)| v != 0).map(|(k, v)| format!("{}.{}={v}", k.0, k.1)).collect::<Vec<_>>(),
        (host_secs / guest_secs - 1.0) * 100.0,
        aj.lag - ai.lag,
        ai.stamp_delay,
        aj.stamp_delay,
        summary.join(", ")
    )
}

/// The most common host-minus-guest offset among the anchors whose offset boot can explain (a
/// sample that caught the next round under way differs by a round's I/O, and such samples can
/// be many when the host is busy); the most common one overall if none is.
fn mode(anchors: &[Anchor]) -> Offset {
    let explained: Vec<&Anchor> = anchors
        .iter()
        .filter(|a| boot_offset_ok(&a.off).is_ok())
        .collect();
    let pool: Vec<&Anchor> = if explained.is_empty() {
        anchors.iter().collect()
    } else {
        explained
    };
    let mut best: Option<(&Offset, usize)> = None;
    for a in &pool {
        let n = pool.iter().filter(|b| b.off == a.off).count();
        if !matches!(best, Some((_, m)) if m >= n) {
            best = Some((&a.off, n));
        }
    }
    best.map(|(o, _)| o.clone()).unwrap_or_default()
}

/// The first and last anchors with the common offset that are prompt, once they are far
/// enough apart.
fn clean_pair(anchors: &[Anchor], console: &Console) -> Option<(usize, usize)> {
    let mode = mode(anchors);
    let up = |a: &Anchor| console.blocks[a.block].uptime;
    let prompt = |a: &Anchor| {
        let quickest = anchors
            .iter()
            .filter(|b| (up(b) - up(a)).abs() <= LAG_WINDOW)
            .map(|b| b.lag)
            .fold(f64::INFINITY, f64::min);
        a.lag - quickest <= MAX_LAG && a.stamp_delay <= MAX_STAMP_DELAY
    };
    let ok = |a: &&Anchor| a.off == mode && prompt(a);
    let i = anchors.iter().position(|a| ok(&a))?;
    let j = anchors.iter().rposition(|a| ok(&a))?;
    (up(&anchors[j]) - up(&anchors[i]) >= RATE_SPAN_SECS).then_some((i, j))
}

// ---------------------------------------------------------------------------------------------
// 3. Counters move

/// After a few workload rounds, every lab guest's disk and NIC rates are positive and match
/// what its rounds moved (per round and device: the reads, writes and ping frames of
/// `@@VMTEL-WORKLOAD`), and `cpu_pct` is positive and at most 100.
#[test]
fn rates_move_with_the_workload() {
    const ROUNDS: usize = 5;
    let guests = lab();
    let mut consoles: Vec<Console> = guests.iter().map(|g| Console::open(&g.console)).collect();
    let mut cy = Cycler::new();
    // Console positions read right before the first sample and right after the second, with
    // the query lock held so that no other test's query comes in between.
    let blocks = |consoles: &mut Vec<Console>| -> Vec<usize> {
        consoles
            .iter_mut()
            .map(|k| {
                k.poll();
                k.blocks.len()
            })
            .collect()
    };
    let (before, s1) = {
        let _q = QUERIES.lock();
        (blocks(&mut consoles), cy.cycle_locked().0)
    };
    for (k, &n) in consoles.iter_mut().zip(&before) {
        k.wait_blocks(n + ROUNDS, Duration::from_secs(60));
    }
    let (s2, f2, after) = {
        let _q = QUERIES.lock();
        let (s2, f2) = cy.cycle_locked();
        (s2, f2, blocks(&mut consoles))
    };
    for (((g, k), &n1), &n2) in guests.iter().zip(&consoles).zip(&before).zip(&after) {
        let wl = k.workload.expect("@@VMTEL-WORKLOAD");
        assert!(wl.direct);
        // The rounds of the blocks that appeared between the two readings: the first of them
        // may have been over before the first sample (its block still on its way to the
        // console), the last may have been under way at the second sample, and one more round
        // may have begun before the second sample.
        let rounds = (n2 - n1) as f64;
        let (lo, hi) = (rounds - 2.0, rounds + 1.0);
        let i = s2
            .domains
            .iter()
            .position(|d| d.uuid == g.uuid)
            .expect("guest sampled");
        let d1 = dom(&s1, &g.uuid).expect("guest sampled");
        let secs = (s2.domains[i].mono_ns - d1.mono_ns) as f64 / 1e9;
        let f = f2[i].unwrap_or_else(|| panic!("{:?}: no vm_features", g.name));
        let cpu = f.cpu_pct.expect("cpu_pct");
        assert!(cpu > 0.0 && cpu <= 100.0, "{:?}: cpu_pct {cpu}", g.name);
        for (name, v) in [
            ("cpu_usr_pct", f.cpu_usr_pct),
            ("cpu_sys_pct", f.cpu_sys_pct),
        ] {
            let v = v.unwrap_or_else(|| panic!("{:?}: no {name}", g.name));
            // libvirt's user and system times count clock ticks (10 ms).
            assert!(
                (0.0..=cpu * 1.01 + 0.5).contains(&v),
                "{:?}: {name} {v}, cpu_pct {cpu}",
                g.name
            );
        }
        // Steal (time the vCPUs waited for a host CPU) is bounded by `sane` in `Cycler`: on a
        // busy host it can be near 100 % on its own.
        f.cpu_steal_pct
            .unwrap_or_else(|| panic!("{:?}: no cpu_steal_pct", g.name));
        let mem = f.mem_used_pct.expect("mem_used_pct");
        assert!(mem > 0.0 && mem < 100.0, "{:?}: mem_used_pct {mem}", g.name);
        let (disks, nics) = (2.0, 2.0);
        let frame = wl.ping_frame_bytes as f64;
        // (name, rate, per-round amount over all devices, slack for traffic outside rounds)
        let expect = [
            (
                "disk_rd_bps",
                f.disk_rd_bps,
                disks * wl.disk_rd_bytes as f64,
                0.0,
            ),
            (
                "disk_wr_bps",
                f.disk_wr_bps,
                disks * wl.disk_wr_bytes as f64,
                0.0,
            ),
            (
                "disk_rd_iops",
                f.disk_rd_iops,
                disks * wl.disk_rd_reqs as f64,
                0.0,
            ),
            (
                "disk_wr_iops",
                f.disk_wr_iops,
                disks * wl.disk_wr_reqs as f64,
                0.0,
            ),
            // Router solicitations (70 bytes, with back-off) may come on top.
            ("net_tx_bps", f.net_tx_bps, nics * frame, 4.0 * 90.0),
            ("net_rx_bps", f.net_rx_bps, nics * frame, 4.0 * 90.0),
            ("net_tx_pps", f.net_tx_pps, nics, 4.0),
            ("net_rx_pps", f.net_rx_pps, nics, 4.0),
        ];
        let mut report = Vec::new();
        for (name, rate, per_round, slack) in expect {
            let rate = rate.unwrap_or_else(|| panic!("{:?}: no {name}", g.name));
            let moved = rate * secs;
            assert!(
                rate > 0.0,
                "{:?}: {name} is {rate} after {rounds} rounds",
                g.name
            );
            assert!(
                moved >= lo * per_round * (1.0 - 1e-9) && moved <= hi * per_round + slack + 1e-6,
                "{:?}: {name} {rate:.1}/s over {secs:.2} s = {moved:.0}, but {rounds} rounds move {:.0}..{:.0}",
                g.name,
                lo * per_round,
                hi * per_round + slack
            );
            report.push(format!("{name} {rate:.0}"));
        }
        eprintln!(
            "{:?}: {rounds} rounds in {secs:.2} s: cpu_pct {cpu:.1}, {}",
            g.name,
            report.join(", ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Hot-plug

/// A disk and a NIC attached with `virsh attach-device --live` are in the very next cycle
/// (the collector's device cache TTL is an hour: the bulk path must not depend on it), with
/// their counters and their `vm_devices` lines; once `virsh` no longer lists them after
/// `detach-device --live`, the next cycle no longer has them; nothing is logged.
#[test]
fn hotplugged_devices_appear_and_vanish_in_the_next_cycle() {
    const HOT_MAC: &str = "52:54:00:78:01:10";
    let x = Extra::up(1);
    let g = &x.guest;
    let image = g.disk_paths[0].replace("-vda.qcow2", "-vdc.qcow2");
    assert_ne!(image, g.disk_paths[0]);
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", &image, "16M"])
        .status()
        .expect("qemu-img");
    assert!(st.success());
    // lx1a -> lx1h: a name libvirt does not generate (not vnet*), that `scripts/lab down` knows.
    let tap = format!("{}h", &g.nets[0][..g.nets[0].len() - 1]);
    assert!(!tap.starts_with("vnet") && tap != g.nets[0]);
    let dir = tempfile::tempdir().unwrap();
    let disk_xml = dir.path().join("disk.xml");
    let nic_xml = dir.path().join("nic.xml");
    std::fs::write(
        &disk_xml,
        format!(
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
             <source file='{image}'/><target dev='vdc' bus='virtio'/></disk>"
        ),
    )
    .unwrap();
    std::fs::write(
        &nic_xml,
        format!(
            "<interface type='ethernet'><mac address='{}'/>\
             <target dev='{tap}' managed='yes'/><model type='virtio'/><rom enabled='no'/></interface>",
            HOT_MAC
        ),
    )
    .unwrap();
    let (disk_xml, nic_xml) = (disk_xml.to_str().unwrap(), nic_xml.to_str().unwrap());

    let mut cy = Cycler::new();
    let cycle = |cy: &mut Cycler| {
        let (s, f) = cy.cycle();
        let points = encode(&s, &f);
        let d = dom(&s, &g.uuid).expect("hot-plug guest sampled").clone();
        let lines: Vec<(String, String)> = points
            .iter()
            .filter(|p| p.measurement == "vm_devices" && p.tags["uuid"] == g.uuid)
            .map(|p| (p.tags["devtype"].clone(), p.tags["device"].clone()))
            .collect();
        (d, lines)
    };
    let names = |d: &DomainSample| {
        (
            d.nics.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
            d.disks.iter().map(|k| k.name.clone()).collect::<Vec<_>>(),
        )
    };
    let listed = |cmd: &str, dev: &str| {
        virsh(&[cmd, &g.uuid])
            .lines()
            .any(|l| l.split_whitespace().next() == Some(dev))
    };
    let base = (g.nets.to_vec(), g.disks.to_vec());
    let ((), log) = with_log(|| {
        let (d, _) = cycle(&mut cy);
        assert_eq!(names(&d), base);

        virsh(&["attach-device", &g.uuid, disk_xml, "--live"]);
        wait_for(Duration::from_secs(30), "virsh to list vdc", || {
            listed("domblklist", "vdc").then_some(())
        });
        let (d, lines) = cycle(&mut cy);
        assert_eq!(
            names(&d).1,
            ["vda", "vdb", "vdc"],
            "disk not in the next cycle"
        );
        let vdc = &d.disks[2];
        assert_eq!(vdc.path.as_deref(), Some(image.as_str()));
        assert!(vdc.rd_reqs.is_some() && vdc.wr_bytes.is_some(), "{vdc:?}");
        assert!(lines.contains(&("disk".into(), "vdc".into())), "{lines:?}");

        virsh(&["attach-device", &g.uuid, nic_xml, "--live"]);
        wait_for(Duration::from_secs(30), "virsh to list the new tap", || {
            listed("domiflist", &tap).then_some(())
        });
        let (d, lines) = cycle(&mut cy);
        assert_eq!(
            names(&d).0,
            [g.nets[0].clone(), g.nets[1].clone(), tap.clone()],
            "NIC not in the next cycle"
        );
        assert!(
            d.nics[2].rx_bytes.is_some() && d.nics[2].tx_pkts.is_some(),
            "{:?}",
            d.nics[2]
        );
        assert_eq!(
            d.nics[2].mac.as_deref(),
            Some(HOT_MAC),
            "hot-plugged NIC's MAC"
        );
        assert!(lines.contains(&("nic".into(), tap.clone())), "{lines:?}");

        // Detaching needs the guest's cooperation (ACPI PCI hot-unplug): wait until libvirt
        // has removed the device from the live definition.
        virsh(&["detach-device", &g.uuid, disk_xml, "--live"]);
        wait_for(Duration::from_secs(60), "virsh to drop vdc", || {
            (!listed("domblklist", "vdc")).then_some(())
        });
        let (d, lines) = cycle(&mut cy);
        assert_eq!(names(&d).1, base.1, "detached disk still in the next cycle");
        assert!(!lines.iter().any(|(_, n)| n == "vdc"), "{lines:?}");

        virsh(&["detach-device", &g.uuid, nic_xml, "--live"]);
        wait_for(Duration::from_secs(60), "virsh to drop the tap", || {
            (!listed("domiflist", &tap)).then_some(())
        });
        let (d, lines) = cycle(&mut cy);
        assert_eq!(names(&d), base, "detached NIC still in the next cycle");
        assert!(!lines.iter().any(|(_, n)| n == &tap), "{lines:?}");
    });
    assert!(
        problems(&log, &[&g.name]).is_empty(),
        "vmtel logged: {log:#?}"
    );
    let _ = std::fs::remove_file(&image);
}

// ---------------------------------------------------------------------------------------------
// 5. Reset, destroy and start

/// `vm_features` stays sane across a guest reset (same QEMU process, same VMID: features in
/// every cycle, none negative or absurd) and across destroy + create (a new VMID: the first
/// cycle after has no features for that VM, the next ones sane ones).
#[test]
fn features_stay_sane_across_reset_and_restart() {
    let x = Extra::up(2);
    let g = &x.guest;
    let mut console = Console::open(&g.console);
    let mut cy = Cycler::new();
    let cycle = |cy: &mut Cycler| {
        let (s, f) = cy.cycle();
        let i = s.domains.iter().position(|d| d.uuid == g.uuid);
        i.map(|i| (s.domains[i].clone(), f[i]))
    };
    let pace = Duration::from_secs(1);
    let ((), log) = with_log(|| {
        cycle(&mut cy).expect("guest sampled");
        let (d0, f) = cycle(&mut cy).expect("guest sampled");
        assert!(f.is_some(), "no features for a running guest");
        let id0 = d0.id.expect("VMID");

        // virsh reset: the guest reboots inside the same QEMU process.
        console.poll();
        let boot = console.boots;
        virsh(&["reset", &g.uuid]);
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (d, f) = cycle(&mut cy).expect("guest sampled during reset");
            assert_eq!(d.id, Some(id0), "reset changed the VMID");
            assert!(
                f.is_some(),
                "no features across a reset (same VMID, same process)"
            );
            n += 1;
            console.poll();
            if console.blocks.iter().any(|b| b.boot > boot) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "guest did not come back from reset"
            );
            std::thread::sleep(pace); // a sampling interval, not a synchronisation
        }
        let b = console.blocks.len();
        console.wait_blocks(b + 1, Duration::from_secs(30)); // a round after the reboot
        let (_, f) = cycle(&mut cy).expect("guest sampled");
        assert!(f.is_some());
        eprintln!(
            "reset: {n} cycles until the guest printed stats again, all sane (bounds widened by up to {:.0}% for slow bulk calls)",
            (cy.max_slack - 1.0) * 100.0
        );

        // destroy + create: a new domain instance with the same UUID and a new VMID.
        console.poll();
        let boot = console.boots;
        virsh(&["destroy", &g.uuid]);
        virsh(&["create", g.xml.to_str().unwrap()]);
        lab_script(&["pin", &g.index.to_string()]);
        let (d, f) = cycle(&mut cy).expect("re-created guest sampled");
        let id1 = d.id.expect("VMID");
        assert_ne!(id1, id0, "destroy + create kept the VMID");
        assert!(f.is_none(), "features across a destroy/create: {f:?}");
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let (d, f) = cycle(&mut cy).expect("guest sampled");
            assert_eq!(d.id, Some(id1));
            assert!(
                f.is_some(),
                "no features between two samples of the new instance"
            );
            n += 1;
            console.poll();
            if console.blocks.iter().any(|b| b.boot > boot) {
                break;
            }
            assert!(Instant::now() < deadline, "re-created guest did not boot");
            std::thread::sleep(pace);
        }
        eprintln!("destroy + create: VMID {id0} -> {id1}, no features in the first cycle, {n} sane ones until the guest printed stats");
    });
    assert!(
        problems(&log, &[&g.name]).is_empty(),
        "vmtel logged: {log:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Paused and destroyed guests

/// A paused guest reports state 3 and keeps its counters (identical while paused, while the
/// lab's guest 0 completes two workload rounds); resumed, it runs and counts again.
#[test]
fn paused_guest_reports_state_and_keeps_counters() {
    let x = Extra::up(3);
    let g = &x.guest;
    let mut console = Console::open(&g.console);
    let mut clock = Console::open(&lab()[0].console);
    let mut cy = Cycler::new();
    let cycle = |cy: &mut Cycler| {
        let (s, f) = cy.cycle();
        let points = encode(&s, &f);
        let i = s
            .domains
            .iter()
            .position(|d| d.uuid == g.uuid)
            .expect("guest sampled");
        let state = |m: &str| {
            points
                .iter()
                .find(|p| p.measurement == m && p.tags["uuid"] == g.uuid)
                .map(|p| p.fields["state"])
        };
        (
            s.domains[i].clone(),
            f[i],
            state("vm_metrics"),
            state("vm_totals"),
        )
    };
    let ((), log) = with_log(|| {
        cycle(&mut cy);
        let (d, f, ..) = cycle(&mut cy);
        assert_eq!(d.state, Some(1));
        assert!(f.is_some());

        virsh(&["suspend", &g.uuid]);
        wait_for(Duration::from_secs(30), "virsh domstate paused", || {
            virsh(&["domstate", &g.uuid])
                .trim()
                .eq("paused")
                .then_some(())
        });
        let (p1, _, m1, t1) = cycle(&mut cy);
        assert_eq!(p1.state, Some(3), "paused guest's state");
        assert_eq!(
            (m1, t1),
            (Some(3.0), Some(3.0)),
            "state field of vm_metrics, vm_totals"
        );
        clock.poll();
        let n = clock.blocks.len();
        clock.wait_blocks(n + 2, Duration::from_secs(30));
        let (p2, f2, m2, _) = cycle(&mut cy);
        assert_eq!(p2.state, Some(3));
        assert_eq!(m2, Some(3.0));
        assert_eq!(p2.id, p1.id);
        assert_eq!(p2.nics, p1.nics, "NIC counters moved while paused");
        assert_eq!(p2.disks, p1.disks, "disk counters moved while paused");
        assert_eq!(p2.vcpu, p1.vcpu, "vCPU counters moved while paused");
        let mem = |d: &DomainSample| {
            let m = d.mem;
            [
                m.maximum,
                m.current,
                m.available,
                m.usable,
                m.unused,
                m.swap_in,
                m.swap_out,
                m.major_fault,
                m.minor_fault,
                m.disk_caches,
            ]
        };
        assert_eq!(
            mem(&p2),
            mem(&p1),
            "guest memory statistics moved while paused"
        );
        assert!(
            host_counters(g, &p2).is_some(),
            "counters missing while paused: {p2:?}"
        );
        let f2 = f2.expect("features between two paused samples");
        for (name, v) in [
            ("net_rx_bps", f2.net_rx_bps),
            ("net_tx_bps", f2.net_tx_bps),
            ("disk_rd_bps", f2.disk_rd_bps),
            ("disk_wr_iops", f2.disk_wr_iops),
            ("cpu_steal_pct", f2.cpu_steal_pct),
        ] {
            assert_eq!(v, Some(0.0), "{name} while paused");
        }
        // cpu.time is QEMU's whole process: its main loop still answers the monitor while the
        // vCPUs are stopped (measured: ~0.2 % of a CPU).
        let cpu = f2.cpu_pct.expect("cpu_pct");
        assert!(cpu < 5.0, "cpu_pct {cpu} while paused");

        virsh(&["resume", &g.uuid]);
        // The guest may have been paused while printing a block: the first block to complete
        // after the resume need not follow a round, the second one does.
        console.poll();
        let b = console.blocks.len();
        console.wait_blocks(b + 2, Duration::from_secs(60));
        let (r, _, m, _) = cycle(&mut cy);
        assert_eq!((r.state, m), (Some(1), Some(1.0)), "resumed guest's state");
        assert!(
            r.disks[0].rd_reqs > p2.disks[0].rd_reqs,
            "resumed guest does not count I/O: {:?} then {:?}",
            p2.disks[0],
            r.disks[0]
        );
    });
    assert!(
        problems(&log, &[&g.name]).is_empty(),
        "vmtel logged: {log:#?}"
    );
}

/// A guest destroyed from another thread while cycles run back to back (libvirt's bulk call
/// then waits for the destroy, so a cycle is in flight while libvirt tears the guest down),
/// three times (the guest is started again in between): every cycle returns Ok, every lab guest
/// is complete in every cycle, the destroyed guest disappears, nothing is logged.
#[test]
fn guest_destroyed_mid_cycle_does_not_fail_the_others() {
    const ROUNDS: usize = 3;
    let x = Extra::up(4);
    let g = x.guest.clone();
    let guests = lab();
    let mut cy = Cycler::new();
    let mut cycles: Vec<(Instant, Instant, bool)> = Vec::new();
    let mut destroys: Vec<(Instant, Instant)> = Vec::new();
    let ((), log) = with_log(|| {
        let t_start = Instant::now();
        for round in 0..ROUNDS {
            let (go, wait) = mpsc::channel::<()>();
            let uuid = g.uuid.clone();
            let destroyer = std::thread::spawn(move || {
                wait.recv().unwrap();
                let t0 = Instant::now();
                virsh(&["destroy", &uuid]);
                (t0, Instant::now())
            });
            let (mut present_for, mut absent_for, mut sent) = (0, 0, false);
            while absent_for < 2 {
                let start = Instant::now();
                let (s, _) = cy.cycle(); // panics if the cycle fails
                let end = Instant::now();
                let n = cycles.len();
                for lg in guests {
                    let d = dom(&s, &lg.uuid)
                        .unwrap_or_else(|| panic!("cycle {n}: {:?} missing", lg.name));
                    complete(lg, d).unwrap_or_else(|e| panic!("cycle {n}: {e}"));
                }
                let present = dom(&s, &g.uuid).is_some();
                cycles.push((start, end, present));
                present_for += usize::from(present);
                if present_for >= 3 && !sent {
                    go.send(()).unwrap();
                    sent = true;
                }
                if destroyer.is_finished() && !present {
                    absent_for += 1;
                }
                assert!(
                    t_start.elapsed() < Duration::from_secs(180),
                    "round {round}: guest not listed, or not gone after its destroy, after {n} cycles"
                );
            }
            destroys.push(destroyer.join().unwrap());
            if round + 1 < ROUNDS {
                // Started again (no need to wait for its boot) for the next round.
                virsh(&["create", g.xml.to_str().unwrap()]);
            }
        }
    });
    let during =
        |(s, e, _): &&(Instant, Instant, bool)| destroys.iter().any(|(t0, t1)| s < t1 && e > t0);
    let overlapping = cycles.iter().filter(during).count();
    let listing = cycles.iter().filter(during).filter(|c| c.2).count();
    assert!(
        destroys
            .iter()
            .all(|(t0, t1)| cycles.iter().any(|(s, e, _)| s < t1 && e > t0)),
        "a destroy overlapped no cycle"
    );
    assert!(
        problems(&log, &[&g.name]).is_empty(),
        "vmtel logged: {log:#?}"
    );
    eprintln!(
        "{ROUNDS} destroys ({:?} s); {} cycles, {overlapping} of them during a destroy ({listing} still listing the guest)",
        destroys
            .iter()
            .map(|(a, b)| format!("{:.2}", (*b - *a).as_secs_f64()))
            .collect::<Vec<_>>(),
        cycles.len()
    );
}

/// Like the test above, but the guest is destroyed while collectors see it for the first time:
/// each cycle uses a new collector, which reads every domain's XML once (for the NICs' MACs).
/// A domain that vanished between the bulk call and that read must not cause a warning.
#[test]
fn guest_destroyed_as_a_collector_first_sees_it_logs_nothing() {
    let x = Extra::up(5);
    let g = x.guest.clone();
    let guests = lab();
    let mut listed_during = 0;
    let mut cycles = 0;
    let ((), log) = with_log(|| {
        for _ in 0..3 {
            let uuid = g.uuid.clone();
            let destroyer = std::thread::spawn(move || virsh(&["destroy", &uuid]));
            while !destroyer.is_finished() {
                let mut c = collector();
                let (s, _) = collect_timed(&mut c);
                cycles += 1;
                for lg in guests {
                    let d = dom(&s, &lg.uuid).expect("lab guest sampled");
                    complete(lg, d).unwrap_or_else(|e| panic!("cycle {cycles}: {e}"));
                }
                listed_during += usize::from(dom(&s, &g.uuid).is_some());
            }
            destroyer.join().unwrap();
            // Started again (no need to wait for its boot) for the next round.
            virsh(&["create", g.xml.to_str().unwrap()]);
        }
    });
    eprintln!(
        "{cycles} cycles with new collectors, {listed_during} listing the guest being destroyed"
    );
    assert!(
        problems(&log, &[&g.name]).is_empty(),
        "vmtel logged: {log:#?}"
    );
}
