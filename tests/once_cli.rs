//! `vmtel once` end to end: the real binary against libvirt's test driver (`test:///default` and
//! generated node-XML fixtures), its stdout read back with the `influxdb-line-protocol` crate and
//! compared with the seed schema and with what `virsh` reports for the same fixture.
//!
//! Facts about the test driver these tests rely on (libvirt 9.0, `../shared/notes/lab.md` §1):
//! the bulk call returns only the `state` group, so everything else comes from per-domain calls;
//! interface/block counters grow with the wall clock; `virsh dommemstat` on a node-XML fixture
//! domain reports nothing, while `test:///default`'s domain `test` reports every balloon stat;
//! no per-domain call gives `vcpu.N.delay` (steal).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use influxdb_line_protocol::{parse_lines, FieldValue};
use vmtel::demo::{self, uuid_for, write_node, RunState, Vm};

const BIN: &str = env!("CARGO_BIN_EXE_vmtel");
const GAP: &str = "300ms";
const DEFAULT_URI: &str = "test:///default";

// ---------------------------------------------------------------------------------------------
// The schema: the literal copy in tests/support (written out from
// ../shared/seed/telemetry-changelog-v2.0.md), the independent oracle of every test.

const BASE_TAGS: &[&str] = &support::ID_TAGS;
const VM_METRICS: &[&str] = &support::VM_METRICS_FIELDS;
const VM_TOTALS: &[&str] = &support::VM_TOTALS_FIELDS;
const NIC_FIELDS: &[&str] = &support::NIC_FIELDS;
const DISK_FIELDS: &[&str] = &support::DISK_FIELDS;
const VM_FEATURES: &[&str] = &support::FEATURE_FIELDS;

/// `vm_totals` fields fed by guest balloon statistics, with the `virsh dommemstat` tag each comes
/// from. (`memactual` is also `virDomainGetInfo`'s memory, so it is always there.)
const MEMSTAT_FIELDS: &[(&str, &str)] = &[
    ("rss", "memrss"),
    ("available", "memavailable"),
    ("usable", "memusable"),
    ("swap_in", "memswap_in"),
    ("swap_out", "memswap_out"),
    ("major_fault", "memmajor_fault"),
    ("minor_fault", "memminor_fault"),
    ("disk_caches", "memdisk_cache"),
];

/// `virsh domifstat` / `domblkstat` names → `vm_devices` field names.
const IFSTAT_FIELDS: &[(&str, &str)] = &[
    ("rx_bytes", "rxbytes"),
    ("rx_packets", "rxpackets"),
    ("rx_errs", "rxerrors"),
    ("rx_drop", "rxdrops"),
    ("tx_bytes", "txbytes"),
    ("tx_packets", "txpackets"),
    ("tx_errs", "txerrors"),
    ("tx_drop", "txdrops"),
];
const BLKSTAT_FIELDS: &[(&str, &str)] = &[
    ("rd_req", "rd_req"),
    ("rd_bytes", "rd_bytes"),
    ("wr_req", "wr_reqs"),
    ("wr_bytes", "wr_bytes"),
    ("errs", "errors"),
];

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn minus(items: &[&str], drop: &[&str]) -> BTreeSet<String> {
    items
        .iter()
        .filter(|s| !drop.contains(s))
        .map(|s| s.to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Running the binary and reading its output.

fn vmtel(args: &[&str]) -> Output {
    vmtel_env(args, &[])
}

fn vmtel_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run vmtel")
}

fn stdout(o: &Output) -> &str {
    std::str::from_utf8(&o.stdout).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_success(o: &Output) {
    assert!(
        o.status.success(),
        "vmtel failed ({:?})\nstderr:\n{}\nstdout:\n{}",
        o.status,
        stderr(o),
        stdout(o)
    );
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Val {
    I(i64),
    F(f64),
}

impl Val {
    fn int(self) -> i64 {
        match self {
            Val::I(v) => v,
            Val::F(v) => panic!("expected an integer field, got float {v}"),
        }
    }
    fn float(self) -> f64 {
        match self {
            Val::F(v) => v,
            Val::I(v) => panic!("expected a float field, got integer {v}"),
        }
    }
}

/// One line as an independent parser read it.
#[derive(Debug, Clone)]
struct Point {
    raw: String,
    measurement: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, Val>,
    ts: i64,
}

impl Point {
    fn tag(&self, k: &str) -> &str {
        self.tags
            .get(k)
            .unwrap_or_else(|| panic!("no tag {k} in {}", self.raw))
    }
    fn int(&self, k: &str) -> i64 {
        self.fields
            .get(k)
            .unwrap_or_else(|| panic!("no field {k} in {}", self.raw))
            .int()
    }
    fn float(&self, k: &str) -> f64 {
        self.fields
            .get(k)
            .unwrap_or_else(|| panic!("no field {k} in {}", self.raw))
            .float()
    }
    fn tag_keys(&self) -> BTreeSet<String> {
        self.tags.keys().cloned().collect()
    }
    fn field_keys(&self) -> BTreeSet<String> {
        self.fields.keys().cloned().collect()
    }
}

/// Parses every line of `text` with the `influxdb-line-protocol` crate; any line it rejects, a
/// blank line, a missing final newline, a duplicate key or a string/bool/unsigned field fails.
fn parse(text: &str) -> Vec<Point> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "output does not end with a newline"
    );
    text.lines()
        .map(|raw| {
            assert!(!raw.trim().is_empty(), "blank line in output:\n{text}");
            let mut parsed: Vec<_> = parse_lines(raw).collect();
            assert_eq!(parsed.len(), 1, "{raw}");
            let line = parsed
                .pop()
                .unwrap()
                .unwrap_or_else(|e| panic!("invalid line protocol: {e}\n{raw}"));
            let mut tags = BTreeMap::new();
            for (k, v) in line.series.tag_set.iter().flatten() {
                let dup = tags.insert(k.to_string(), v.to_string());
                assert!(dup.is_none(), "tag {k} twice in {raw}");
            }
            let mut fields = BTreeMap::new();
            for (k, v) in &line.field_set {
                let v = match v {
                    FieldValue::I64(i) => Val::I(*i),
                    FieldValue::F64(f) => Val::F(*f),
                    other => {
                        panic!("field {k} has type {other:?}; vmtel writes i64 and f64 only: {raw}")
                    }
                };
                let dup = fields.insert(k.to_string(), v);
                assert!(dup.is_none(), "field {k} twice in {raw}");
            }
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

/// The lines of one VM, by measurement.
#[derive(Debug, Default)]
struct VmLines {
    metrics: Vec<Point>,
    totals: Vec<Point>,
    nics: Vec<Point>,
    disks: Vec<Point>,
    features: Vec<Point>,
}

/// The host's `vm_host` lines and the VMs' lines, apart.
fn split_host(points: Vec<Point>) -> (Vec<Point>, Vec<Point>) {
    points.into_iter().partition(|p| p.measurement == "vm_host")
}

/// The VMs' lines (all but `vm_host`).
fn vm_only(points: &[Point]) -> Vec<Point> {
    points
        .iter()
        .filter(|p| p.measurement != "vm_host")
        .cloned()
        .collect()
}

/// Groups points by their `uuid` tag; fails on an unknown measurement or devtype.
fn by_vm(points: &[Point]) -> BTreeMap<String, VmLines> {
    let mut out: BTreeMap<String, VmLines> = BTreeMap::new();
    for p in points {
        let e = out.entry(p.tag("uuid").to_owned()).or_default();
        match (
            p.measurement.as_str(),
            p.tags.get("devtype").map(String::as_str),
        ) {
            ("vm_metrics", None) => e.metrics.push(p.clone()),
            ("vm_totals", None) => e.totals.push(p.clone()),
            ("vm_devices", Some("nic")) => e.nics.push(p.clone()),
            ("vm_devices", Some("disk")) => e.disks.push(p.clone()),
            ("vm_features", None) => e.features.push(p.clone()),
            other => panic!("unexpected measurement/devtype {other:?}: {}", p.raw),
        }
    }
    out
}

fn wall_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Every line shares one timestamp, written in seconds (the default precision), taken while
/// vmtel ran.
#[track_caller]
fn assert_one_timestamp(points: &[Point], start_ns: i64, end_ns: i64) {
    let stamps: BTreeSet<i64> = points.iter().map(|p| p.ts).collect();
    assert_eq!(stamps.len(), 1, "timestamps {stamps:?}");
    let ts = *stamps.iter().next().unwrap();
    let (lo, hi) = (start_ns / 1_000_000_000, end_ns / 1_000_000_000);
    assert!(
        (lo..=hi).contains(&ts),
        "timestamp {ts} is not a second within the run [{lo}, {hi}]"
    );
}

/// Integers carry the `i` suffix: the counters of the first three measurements parse as i64,
/// the derived values as floats. (The parser already typed each value from its suffix.)
#[track_caller]
fn assert_types(points: &[Point]) {
    for p in points {
        for (k, v) in &p.fields {
            match (p.measurement.as_str(), v) {
                ("vm_features", Val::F(_)) => {}
                ("vm_metrics" | "vm_totals" | "vm_devices" | "vm_host", Val::I(_)) => {}
                _ => panic!("field {k} has the wrong type in {}", p.raw),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// virsh, the independent view of the same fixture.

fn virsh(uri: &str, args: &[&str]) -> String {
    let out = Command::new("virsh")
        .arg("-c")
        .arg(uri)
        .args(args)
        .env_remove("LIBVIRT_DEFAULT_URI")
        .output()
        .expect("run virsh (apt-get install libvirt-clients)");
    assert!(
        out.status.success(),
        "virsh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("virsh output is UTF-8")
}

/// `Key: value` lines of `virsh dominfo`.
fn dominfo(uri: &str, dom: &str) -> BTreeMap<String, String> {
    virsh(uri, &["dominfo", dom])
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// `tag value` lines of `virsh dommemstat`.
fn dommemstat(uri: &str, dom: &str) -> BTreeMap<String, i64> {
    virsh(uri, &["dommemstat", dom])
        .lines()
        .filter_map(|l| {
            let (k, v) = l.trim().split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// `dev tag value` lines of `virsh domifstat`/`domblkstat`, mapped to vmtel's field names, and
/// the time the call was made (the midpoint of the virsh run).
fn devstat(
    uri: &str,
    cmd: &str,
    dom: &str,
    dev: &str,
    map: &[(&str, &str)],
) -> (BTreeMap<String, i64>, Instant) {
    let t0 = Instant::now();
    let text = virsh(uri, &[cmd, dom, dev]);
    let t1 = Instant::now();
    let mut out = BTreeMap::new();
    for l in text.lines() {
        let parts: Vec<_> = l.split_whitespace().collect();
        if parts.len() != 3 {
            continue;
        }
        assert_eq!(parts[0], dev, "{cmd} output: {l}");
        if let Some((_, field)) = map.iter().find(|(v, _)| *v == parts[1]) {
            out.insert((*field).to_owned(), parts[2].parse().expect("integer"));
        }
    }
    (out, t0 + (t1 - t0) / 2)
}

/// libvirt's `virDomainState` for the words `virsh dominfo` prints.
fn state_code(word: &str) -> i64 {
    match word {
        "running" => 1,
        "blocked" => 2,
        "paused" => 3,
        "in shutdown" => 4,
        "shut off" => 5,
        other => panic!("unknown state {other:?}"),
    }
}

fn kib(v: &str) -> i64 {
    v.strip_suffix(" KiB")
        .unwrap_or_else(|| panic!("not KiB: {v}"))
        .parse()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The main fixture.

/// A VM of the main fixture and the `name` tag a line-protocol reader must get back for it,
/// written out by hand from the encoding rules of `src/encode/line.rs`: `,`, `=` and space are
/// escaped; a backslash before an ordinary character stays; a backslash before another
/// backslash, a separator or the end becomes U+FF3C; a control character becomes U+FFFD.
struct FixtureVm {
    vm: Vm,
    read_back: &'static str,
}

fn fixture_vms() -> Vec<FixtureVm> {
    let mut out = Vec::new();
    let mut add = |vm: Vm, read_back: &'static str| out.push(FixtureVm { vm, read_back });

    add(Vm::standard(1, "web 01"), "web 01");

    let mut db = Vm::standard(2, r#"db, "primary""#);
    db.vcpus = 4;
    db.memory_kib = 8 * 1024 * 1024;
    db.current_kib = 6 * 1024 * 1024;
    db.nics = vec!["eth0".into(), "eth1".into(), "eth2".into()];
    db.disks = vec!["vda".into(), "vdb".into(), "sdc".into()];
    add(db, r#"db, "primary""#);

    add(Vm::standard(3, r"k=v\path"), r"k=v\path");
    add(Vm::standard(4, "ünïcødé 名前 🚀"), "ünïcødé 名前 🚀");
    add(
        Vm::standard(5, r"back\\slash\"),
        "back\u{FF3C}\\slash\u{FF3C}",
    );
    add(
        Vm::standard(6, "line\nbreak\ttab"),
        "line\u{FFFD}break\u{FFFD}tab",
    );

    let mut bare = Vm::standard(7, "bare");
    bare.nics.clear();
    bare.disks.clear();
    add(bare, "bare");

    let mut paused = Vm::standard(8, "paused 'vm'");
    paused.state = RunState::Paused;
    paused.vcpus = 1;
    paused.nics = vec!["eth0".into()];
    paused.disks = vec!["sda".into()];
    add(paused, "paused 'vm'");

    let mut off = Vm::standard(9, "stopped, off");
    off.state = RunState::ShutOff;
    add(off, "stopped, off");
    out
}

/// Counters `virsh` read for every device of every VM.
type Snapshot = BTreeMap<(String, String), (BTreeMap<String, i64>, Instant)>;

fn snapshot(uri: &str, vms: &[FixtureVm]) -> Snapshot {
    let mut s = Snapshot::new();
    for f in vms.iter().filter(|f| f.vm.state != RunState::ShutOff) {
        for n in &f.vm.nics {
            let r = devstat(uri, "domifstat", &f.vm.uuid, n, IFSTAT_FIELDS);
            s.insert((f.vm.uuid.clone(), n.clone()), r);
        }
        for d in &f.vm.disks {
            let r = devstat(uri, "domblkstat", &f.vm.uuid, d, BLKSTAT_FIELDS);
            s.insert((f.vm.uuid.clone(), d.clone()), r);
        }
    }
    s
}

/// One `vmtel once` run over the main fixture, with virsh's view before and after it.
struct MainRun {
    vms: Vec<FixtureVm>,
    output: Output,
    /// The VMs' lines.
    points: Vec<Point>,
    /// The `vm_host` lines.
    host_points: Vec<Point>,
    /// `virsh nodeinfo` and `nodecpustats` after the run.
    node: BTreeMap<String, String>,
    start_ns: i64,
    end_ns: i64,
    before: Snapshot,
    after: Snapshot,
    dominfo: BTreeMap<String, BTreeMap<String, String>>,
    dommemstat: BTreeMap<String, BTreeMap<String, i64>>,
    hostname: String,
    shut_off_in_virsh: bool,
}

fn main_run() -> &'static MainRun {
    static RUN: OnceLock<MainRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let vms = fixture_vms();
        let plain: Vec<Vm> = vms.iter().map(|f| f.vm.clone()).collect();
        let (_, uri) = write_node(dir.path(), "node.xml", &plain).expect("write fixture");

        let before = snapshot(&uri, &vms);
        let start_ns = wall_ns();
        // The default gap (1 s): long enough that scheduling noise on a busy machine stays
        // small against it in the rate check.
        let output = vmtel(&["once", "--uri", &uri]);
        let end_ns = wall_ns();
        let after = snapshot(&uri, &vms);

        let mut info = BTreeMap::new();
        let mut mem = BTreeMap::new();
        for f in vms.iter().filter(|f| f.vm.state != RunState::ShutOff) {
            info.insert(f.vm.uuid.clone(), dominfo(&uri, &f.vm.uuid));
            mem.insert(f.vm.uuid.clone(), dommemstat(&uri, &f.vm.uuid));
        }
        let list = virsh(&uri, &["list", "--all", "--uuid", "--state-shutoff"]);
        let hostname = virsh(&uri, &["hostname"]).trim().to_owned();
        let (host_points, points) = if output.status.success() {
            split_host(parse(stdout(&output)))
        } else {
            (Vec::new(), Vec::new())
        };
        let mut node = BTreeMap::new();
        for args in [&["nodeinfo"][..], &["nodecpustats"]] {
            for line in virsh(&uri, args).lines() {
                if let Some((k, v)) = line.split_once(':') {
                    node.insert(k.trim().to_owned(), v.trim().to_owned());
                }
            }
        }
        MainRun {
            host_points,
            node,
            shut_off_in_virsh: list.contains(&uuid_for(9)),
            vms,
            output,
            points,
            start_ns,
            end_ns,
            before,
            after,
            dominfo: info,
            dommemstat: mem,
            hostname,
        }
    })
}

fn active(run: &MainRun) -> impl Iterator<Item = &FixtureVm> {
    run.vms.iter().filter(|f| f.vm.state != RunState::ShutOff)
}

#[test]
fn fixture_run_succeeds_quietly_and_every_line_parses() {
    let run = main_run();
    assert_success(&run.output);
    assert!(
        run.output.stderr.is_empty(),
        "a healthy source logs nothing:\n{}",
        stderr(&run.output)
    );
    assert!(!run.points.is_empty());
    assert_types(&run.points);
    assert_types(&run.host_points);
    let all: Vec<Point> = run.points.iter().chain(&run.host_points).cloned().collect();
    assert_one_timestamp(&all, run.start_ns, run.end_ns);
}

/// The host's line: tag `host` only, capacity as `virsh nodeinfo` says, CPU times as
/// `virsh nodecpustats` (the test driver's are fixed). A test driver read from a file has no
/// free memory (`virsh freecell` fails too) and no host memory statistics, so `memfree`,
/// `membuffers` and `memcached` are left out, never written as 0.
#[test]
fn fixture_host_line_agrees_with_virsh_nodeinfo() {
    let run = main_run();
    assert_success(&run.output);
    assert_eq!(run.host_points.len(), 1, "one vm_host line per host");
    let h = &run.host_points[0];
    assert_eq!(h.tag_keys(), set(&["host"]), "{}", h.raw);
    assert_eq!(h.tag("host"), run.hostname);
    let node = |k: &str| -> i64 {
        let v = run
            .node
            .get(k)
            .unwrap_or_else(|| panic!("virsh printed no {k}: {:?}", run.node));
        v.split_whitespace().next().unwrap().parse().unwrap()
    };
    assert_eq!(h.int("cpus"), node("CPU(s)"));
    assert_eq!(h.int("mhz"), node("CPU frequency"));
    assert_eq!(h.int("memtotal"), node("Memory size"));
    assert_eq!(h.int("cpu_user"), node("user"));
    assert_eq!(
        h.int("cpu_kernel"),
        node("system"),
        "virsh prints kernel as system"
    );
    assert_eq!(h.int("cpu_idle"), node("idle"));
    assert_eq!(h.int("cpu_iowait"), node("iowait"));
    assert_eq!(
        h.field_keys(),
        set(&[
            "cpus",
            "mhz",
            "memtotal",
            "cpu_user",
            "cpu_kernel",
            "cpu_idle",
            "cpu_iowait"
        ]),
        "{}",
        h.raw
    );
}

#[test]
fn fixture_has_the_exact_measurements_and_tag_keys() {
    let run = main_run();
    assert_success(&run.output);
    let measurements: BTreeSet<_> = run.points.iter().map(|p| p.measurement.as_str()).collect();
    assert_eq!(
        measurements,
        BTreeSet::from(["vm_metrics", "vm_totals", "vm_devices", "vm_features"])
    );
    for p in &run.points {
        let want = if p.measurement == "vm_devices" {
            set(&support::reserved_tag_keys())
        } else {
            set(BASE_TAGS)
        };
        assert_eq!(p.tag_keys(), want, "{}", p.raw);
        assert_eq!(
            p.tag("host"),
            run.hostname,
            "host is libvirt's host name: {}",
            p.raw
        );
    }
}

#[test]
fn fixture_lists_active_vms_only_with_their_names_and_ids() {
    let run = main_run();
    assert_success(&run.output);
    assert!(
        run.shut_off_in_virsh,
        "the fixture's shut-off VM exists in libvirt"
    );
    let vms = by_vm(&run.points);
    let want: BTreeSet<String> = active(run).map(|f| f.vm.uuid.clone()).collect();
    let got: BTreeSet<String> = vms.keys().cloned().collect();
    assert_eq!(got, want, "paused VMs are collected, shut-off ones are not");
    assert!(!run.points.iter().any(|p| p.tag("name").contains("stopped")));

    for f in active(run) {
        let info = &run.dominfo[&f.vm.uuid];
        for p in run.points.iter().filter(|p| p.tag("uuid") == f.vm.uuid) {
            assert_eq!(p.tag("name"), f.read_back, "{}", p.raw);
            assert_eq!(
                p.tag("VMID"),
                info["Id"],
                "VMID is the libvirt ID: {}",
                p.raw
            );
        }
    }
}

#[test]
fn fixture_vm_metrics_agree_with_the_fixture_and_virsh() {
    let run = main_run();
    assert_success(&run.output);
    let vms = by_vm(&run.points);
    for f in active(run) {
        let v = &vms[&f.vm.uuid];
        assert_eq!(v.metrics.len(), 1, "{}", f.vm.uuid);
        let m = &v.metrics[0];
        assert_eq!(m.field_keys(), set(VM_METRICS), "{}", m.raw);

        let want_state = match f.vm.state {
            RunState::Running => 1,
            RunState::Paused => 3,
            RunState::ShutOff => unreachable!(),
        };
        assert_eq!(m.int("state"), want_state, "{}", m.raw);
        assert_eq!(m.int("cpus"), i64::from(f.vm.vcpus), "{}", m.raw);
        assert_eq!(m.int("memmax"), f.vm.memory_kib as i64, "{}", m.raw);
        assert_eq!(m.int("mem"), f.vm.current_kib as i64, "{}", m.raw);
        assert!(m.int("cputime") >= 0);

        // The same values as virsh sees them.
        let info = &run.dominfo[&f.vm.uuid];
        assert_eq!(m.int("state"), state_code(&info["State"]), "{}", m.raw);
        assert_eq!(m.int("cpus"), info["CPU(s)"].parse::<i64>().unwrap());
        assert_eq!(m.int("memmax"), kib(&info["Max memory"]));
        assert_eq!(m.int("mem"), kib(&info["Used memory"]));
    }
}

#[test]
fn fixture_vm_totals_have_the_fields_the_driver_can_provide() {
    let run = main_run();
    assert_success(&run.output);
    let vms = by_vm(&run.points);
    // What `virsh dommemstat` gives for a node-XML domain: nothing. So the guest memory fields
    // are absent (never 0); memactual comes from virDomainGetInfo.
    let no_guest_mem = [
        "memrss",
        "memavailable",
        "memusable",
        "memswap_in",
        "memswap_out",
        "memmajor_fault",
        "memminor_fault",
        "memdisk_cache",
    ];
    for f in active(run) {
        let v = &vms[&f.vm.uuid];
        assert_eq!(v.totals.len(), 1);
        let t = &v.totals[0];

        // The test driver reports no vCPU delay (it lacks the bulk `vcpu` group).
        let mut absent: Vec<&str> = no_guest_mem.to_vec();
        absent.push("vcpu_delay");
        if f.vm.nics.is_empty() {
            absent.extend(VM_TOTALS.iter().filter(|k| k.starts_with("net_")));
        }
        if f.vm.disks.is_empty() {
            absent.extend(VM_TOTALS.iter().filter(|k| k.starts_with("disk_")));
        }
        assert_eq!(t.field_keys(), minus(VM_TOTALS, &absent), "{}", t.raw);

        // Cross-check with dommemstat: a balloon stat is present iff libvirt reports it.
        let mem = &run.dommemstat[&f.vm.uuid];
        for (tag, field) in MEMSTAT_FIELDS {
            assert_eq!(
                t.fields.contains_key(*field),
                mem.contains_key(*tag),
                "{field} vs dommemstat {tag}: {}",
                t.raw
            );
        }

        let m = &v.metrics[0];
        for k in ["state", "cpus", "cputime"] {
            assert_eq!(t.int(k), m.int(k), "vm_totals.{k} = vm_metrics.{k}");
        }
        assert_eq!(t.int("memactual"), f.vm.current_kib as i64);
        assert!(t.int("timeusr") >= 0 && t.int("timesys") >= 0);
        assert!(
            t.int("timeusr") + t.int("timesys") <= t.int("cputime"),
            "user + system CPU time within total: {}",
            t.raw
        );
    }
}

#[test]
fn fixture_has_one_device_line_per_nic_and_disk() {
    let run = main_run();
    assert_success(&run.output);
    let vms = by_vm(&run.points);
    for f in active(run) {
        let v = &vms[&f.vm.uuid];
        let nics: Vec<&str> = v.nics.iter().map(|p| p.tag("device")).collect();
        let want: Vec<&str> = f.vm.nics.iter().map(String::as_str).collect();
        assert_eq!(nics, want, "NIC lines of {}", f.vm.uuid);
        let disks: Vec<&str> = v.disks.iter().map(|p| p.tag("device")).collect();
        let want: Vec<&str> = f.vm.disks.iter().map(String::as_str).collect();
        assert_eq!(disks, want, "disk lines of {}", f.vm.uuid);
        for p in &v.nics {
            assert_eq!(p.field_keys(), set(NIC_FIELDS), "{}", p.raw);
        }
        for p in &v.disks {
            assert_eq!(p.field_keys(), set(DISK_FIELDS), "{}", p.raw);
        }
    }
}

#[test]
fn fixture_device_counters_agree_with_virsh() {
    let run = main_run();
    assert_success(&run.output);
    let vms = by_vm(&run.points);
    for f in active(run) {
        let v = &vms[&f.vm.uuid];
        for p in v.nics.iter().chain(&v.disks) {
            let key = (f.vm.uuid.clone(), p.tag("device").to_owned());
            let (lo, _) = &run.before[&key];
            let (hi, _) = &run.after[&key];
            // The same fields as libvirt reports for the device...
            let names: BTreeSet<String> = lo.keys().cloned().collect();
            assert_eq!(p.field_keys(), names, "{}", p.raw);
            // ...each read between virsh's two readings (the counters only grow).
            for (k, got) in &p.fields {
                let got = got.int();
                assert!(
                    lo[k] <= got && got <= hi[k],
                    "{k} = {got} not within virsh's [{}, {}]: {}",
                    lo[k],
                    hi[k],
                    p.raw
                );
            }
        }
    }
}

#[test]
fn fixture_totals_are_sums_over_devices() {
    let run = main_run();
    assert_success(&run.output);
    let vms = by_vm(&run.points);
    let pairs: [(&str, &str, bool); 13] = [
        ("net_rxbytes", "rxbytes", true),
        ("net_rxpackets", "rxpackets", true),
        ("net_rxerrors", "rxerrors", true),
        ("net_rxdrops", "rxdrops", true),
        ("net_txbytes", "txbytes", true),
        ("net_txpackets", "txpackets", true),
        ("net_txerrors", "txerrors", true),
        ("net_txdrops", "txdrops", true),
        ("disk_rd_req", "rd_req", false),
        ("disk_rd_bytes", "rd_bytes", false),
        ("disk_wr_reqs", "wr_reqs", false),
        ("disk_wr_bytes", "wr_bytes", false),
        ("disk_errors", "errors", false),
    ];
    for f in active(run) {
        let v = &vms[&f.vm.uuid];
        let t = &v.totals[0];
        for (total, dev, is_nic) in pairs {
            let devs = if is_nic { &v.nics } else { &v.disks };
            if devs.is_empty() {
                assert!(
                    !t.fields.contains_key(total),
                    "{total} without devices: {}",
                    t.raw
                );
                continue;
            }
            let sum: i64 = devs.iter().map(|p| p.int(dev)).sum();
            assert_eq!(t.int(total), sum, "{total} of {}", f.vm.uuid);
        }
    }
}

#[test]
fn fixture_features_are_present_and_sane() {
    let run = main_run();
    assert_success(&run.output);
    let vms = by_vm(&run.points);
    for f in active(run) {
        let v = &vms[&f.vm.uuid];
        assert_eq!(v.features.len(), 1, "vm_features of {}", f.vm.uuid);
        let p = &v.features[0];
        // No steal (no per-domain call gives vcpu.N.delay) and no mem_used_pct (no guest
        // memory stats) on the test driver; no net/disk rates without devices.
        let mut absent = vec!["cpu_steal_pct", "mem_used_pct"];
        if f.vm.nics.is_empty() {
            absent.extend(["net_rx_bps", "net_tx_bps", "net_rx_pps", "net_tx_pps"]);
        }
        if f.vm.disks.is_empty() {
            absent.extend(["disk_rd_bps", "disk_wr_bps", "disk_rd_iops", "disk_wr_iops"]);
        }
        assert_eq!(p.field_keys(), minus(VM_FEATURES, &absent), "{}", p.raw);
        // The test driver's cputime follows the wall clock, so a 1-vCPU VM reads 100 % give or
        // take the jitter between vmtel's clock read and the driver's (well under 0.1 %).
        for k in ["cpu_pct", "cpu_usr_pct", "cpu_sys_pct"] {
            let x = p.float(k);
            assert!((0.0..=100.1).contains(&x), "{k} = {x}: {}", p.raw);
        }
        for (k, x) in &p.fields {
            if k.starts_with("net_") || k.starts_with("disk_") {
                assert!(
                    x.float() > 0.0,
                    "{k}: the test driver's counters always grow: {}",
                    p.raw
                );
            }
        }
    }
}

/// The rates match the slope of the counters virsh read before and after vmtel ran. The test
/// driver's counters are linear in the wall clock, so both see the same slope; the bounds allow
/// for scheduling noise on a busy machine while catching a wrong unit or a wrong counter.
#[test]
fn fixture_rates_match_the_counters_slope() {
    let run = main_run();
    assert_success(&run.output);
    let vms = by_vm(&run.points);
    let rates: [(&str, &str, bool); 8] = [
        ("net_rx_bps", "rxbytes", true),
        ("net_tx_bps", "txbytes", true),
        ("net_rx_pps", "rxpackets", true),
        ("net_tx_pps", "txpackets", true),
        ("disk_rd_bps", "rd_bytes", false),
        ("disk_wr_bps", "wr_bytes", false),
        ("disk_rd_iops", "rd_req", false),
        ("disk_wr_iops", "wr_reqs", false),
    ];
    for f in active(run) {
        let p = &vms[&f.vm.uuid].features[0];
        for (feature, counter, is_nic) in rates {
            let devs = if is_nic { &f.vm.nics } else { &f.vm.disks };
            if devs.is_empty() {
                continue;
            }
            let slope: f64 = devs
                .iter()
                .map(|d| {
                    let key = (f.vm.uuid.clone(), d.clone());
                    let (lo, t0) = &run.before[&key];
                    let (hi, t1) = &run.after[&key];
                    (hi[counter] - lo[counter]) as f64 / (*t1 - *t0).as_secs_f64()
                })
                .sum();
            let got = p.float(feature);
            assert!(
                got > slope * 0.5 && got < slope * 2.0,
                "{feature} = {got}, counters grew at {slope}/s: {}",
                p.raw
            );
        }
    }
}

#[test]
fn fixture_paused_vm_is_reported_with_state_3() {
    let run = main_run();
    assert_success(&run.output);
    let paused = &run
        .vms
        .iter()
        .find(|f| f.vm.state == RunState::Paused)
        .expect("the fixture has a paused VM")
        .vm;
    let lines: Vec<_> = run
        .points
        .iter()
        .filter(|p| p.tag("uuid") == paused.uuid)
        .collect();
    // metrics, totals, 1 NIC, 1 disk, features
    assert_eq!(lines.len(), 5, "{lines:#?}");
    for p in lines.iter().filter(|p| p.fields.contains_key("state")) {
        assert_eq!(p.int("state"), 3, "{}", p.raw);
    }
}

// ---------------------------------------------------------------------------------------------
// test:///default

#[test]
fn default_test_driver_gives_every_field() {
    let start = wall_ns();
    let out = vmtel(&["once", "--uri", DEFAULT_URI, "--gap", GAP]);
    let end = wall_ns();
    assert_success(&out);
    let points = parse(stdout(&out));
    assert_types(&points);
    assert_one_timestamp(&points, start, end);
    let points = vm_only(&points);
    let uuid = virsh(DEFAULT_URI, &["domuuid", "test"]).trim().to_owned();
    let info = dominfo(DEFAULT_URI, "test");
    let mem = dommemstat(DEFAULT_URI, "test");
    let host = virsh(DEFAULT_URI, &["hostname"]).trim().to_owned();

    let vms = by_vm(&points);
    assert_eq!(
        vms.keys().collect::<Vec<_>>(),
        [&uuid],
        "one domain, `test`"
    );
    let v = &vms[&uuid];
    for p in &points {
        assert_eq!(p.tag("name"), "test");
        assert_eq!(p.tag("host"), host);
        assert_eq!(p.tag("VMID"), info["Id"]);
    }
    assert_eq!(v.metrics.len(), 1);
    let m = &v.metrics[0];
    assert_eq!(m.field_keys(), set(VM_METRICS));
    assert_eq!(m.int("state"), state_code(&info["State"]));
    assert_eq!(m.int("cpus"), info["CPU(s)"].parse::<i64>().unwrap());
    assert_eq!(m.int("memmax"), kib(&info["Max memory"]));
    assert_eq!(m.int("mem"), kib(&info["Used memory"]));

    // `test` has every balloon stat, so all 27 fields are there, the static ones equal to virsh.
    assert_eq!(v.totals.len(), 1);
    let t = &v.totals[0];
    // The test driver reports no vCPU delay (it lacks the bulk `vcpu` group).
    assert_eq!(
        t.field_keys(),
        minus(VM_TOTALS, &["vcpu_delay"]),
        "{}",
        t.raw
    );
    for (tag, field) in MEMSTAT_FIELDS {
        assert_eq!(t.int(field), mem[*tag], "{field} vs dommemstat {tag}");
    }
    assert_eq!(t.int("memactual"), mem["actual"]);

    let nics: Vec<_> = v.nics.iter().map(|p| p.tag("device")).collect();
    assert_eq!(nics, ["testnet0"]);
    let disks: Vec<_> = v.disks.iter().map(|p| p.tag("device")).collect();
    assert_eq!(disks, ["vda"]);
    assert_eq!(v.nics[0].field_keys(), set(NIC_FIELDS));
    assert_eq!(v.disks[0].field_keys(), set(DISK_FIELDS));

    assert_eq!(v.features.len(), 1);
    let f = &v.features[0];
    assert_eq!(
        f.field_keys(),
        minus(VM_FEATURES, &["cpu_steal_pct"]),
        "{}",
        f.raw
    );
    // (available − usable) / available · 100, from dommemstat.
    let want = (mem["available"] - mem["usable"]) as f64 / mem["available"] as f64 * 100.0;
    assert!((f.float("mem_used_pct") - want).abs() < 1e-9, "{}", f.raw);
    assert!((0.0..=100.0).contains(&f.float("cpu_pct")));
    for k in ["net_rx_bps", "net_tx_bps", "disk_rd_iops", "disk_wr_bps"] {
        assert!(f.float(k) > 0.0, "{k}: {}", f.raw);
    }
}

#[test]
fn libvirt_default_uri_is_used_without_uri_or_config() {
    let out = vmtel_env(
        &["once", "--gap", "100ms"],
        &[("LIBVIRT_DEFAULT_URI", DEFAULT_URI)],
    );
    assert_success(&out);
    let points = vm_only(&parse(stdout(&out)));
    let uuid = virsh(DEFAULT_URI, &["domuuid", "test"]).trim().to_owned();
    assert!(!points.is_empty());
    assert!(points
        .iter()
        .all(|p| p.tag("uuid") == uuid && p.tag("name") == "test"));

    // --uri wins over the environment.
    let out = vmtel_env(
        &["once", "--uri", DEFAULT_URI, "--gap", "100ms"],
        &[(
            "LIBVIRT_DEFAULT_URI",
            "test:///nonexistent-vmtel-test/absent.node",
        )],
    );
    assert_success(&out);
    assert!(vm_only(&parse(stdout(&out)))
        .iter()
        .all(|p| p.tag("uuid") == uuid));
}

// ---------------------------------------------------------------------------------------------
// Several sources, config file

fn small_fleet(first: usize, names: &[&str]) -> Vec<Vm> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| Vm::standard(first + i, n))
        .collect()
}

#[test]
fn config_host_override_and_global_tags_on_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let a = small_fleet(100, &["alpha", "beta gamma"]);
    let (_, uri_a) = write_node(dir.path(), "a.xml", &a).unwrap();
    let config = dir.path().join("vmtel.toml");
    std::fs::write(
        &config,
        format!(
            "[global_tags]\ndc = \"eu west\"\nrack = \"r=1,b\"\n\n\
             [[sources]]\nuri = \"{uri_a}\"\nhost = \"hv-x\"\n\n\
             [[sources]]\nuri = \"{DEFAULT_URI}\"\nhost = \"hv y\"\n"
        ),
    )
    .unwrap();
    let start = wall_ns();
    let out = vmtel(&[
        "once",
        "--config",
        config.to_str().unwrap(),
        "--gap",
        "200ms",
    ]);
    let end = wall_ns();
    assert_success(&out);
    let points = parse(stdout(&out));
    assert_types(&points);
    for p in &points {
        assert_eq!(p.tag("dc"), "eu west", "{}", p.raw);
        assert_eq!(p.tag("rack"), "r=1,b", "{}", p.raw);
        let mut want = if p.measurement == "vm_devices" {
            set(&support::reserved_tag_keys())
        } else if p.measurement == "vm_host" {
            set(&["host"])
        } else {
            set(BASE_TAGS)
        };
        want.extend(["dc".to_owned(), "rack".to_owned()]);
        assert_eq!(p.tag_keys(), want, "{}", p.raw);
    }
    let default_uuid = virsh(DEFAULT_URI, &["domuuid", "test"]).trim().to_owned();
    let hosts: BTreeSet<&str> = points.iter().map(|p| p.tag("host")).collect();
    assert_eq!(hosts, BTreeSet::from(["hv-x", "hv y"]));
    for host in &hosts {
        let n = points
            .iter()
            .filter(|p| p.measurement == "vm_host" && p.tag("host") == *host)
            .count();
        assert_eq!(n, 1, "one vm_host line for {host}");
    }
    let points = vm_only(&points);
    for (host, uuids) in [
        (
            "hv-x",
            a.iter().map(|v| v.uuid.clone()).collect::<BTreeSet<_>>(),
        ),
        ("hv y", BTreeSet::from([default_uuid])),
    ] {
        let mine: Vec<Point> = points
            .iter()
            .filter(|p| p.tag("host") == host)
            .cloned()
            .collect();
        let got: BTreeSet<String> = mine.iter().map(|p| p.tag("uuid").to_owned()).collect();
        assert_eq!(got, uuids, "VMs of {host}");
        assert_one_timestamp(&mine, start, end);
        assert_eq!(
            mine.iter()
                .filter(|p| p.measurement == "vm_features")
                .count(),
            uuids.len(),
            "vm_features for every VM of {host}"
        );
    }
}

#[test]
fn several_uris_give_lines_from_each_in_source_order() {
    let dir = tempfile::tempdir().unwrap();
    let a = small_fleet(200, &["a-one", "a two"]);
    let b = small_fleet(300, &["b,one"]);
    let (_, uri_a) = write_node(dir.path(), "a.xml", &a).unwrap();
    let (_, uri_b) = write_node(dir.path(), "b.xml", &b).unwrap();
    let out = vmtel(&[
        "once",
        "--uri",
        &uri_a,
        "--uri",
        DEFAULT_URI,
        "--uri",
        &uri_b,
        "--gap",
        "200ms",
    ]);
    assert_success(&out);
    let points = vm_only(&parse(stdout(&out)));
    let default_uuid = virsh(DEFAULT_URI, &["domuuid", "test"]).trim().to_owned();
    let source_of = |uuid: &str| -> usize {
        if a.iter().any(|v| v.uuid == uuid) {
            0
        } else if uuid == default_uuid {
            1
        } else if b.iter().any(|v| v.uuid == uuid) {
            2
        } else {
            panic!("unknown VM {uuid}")
        }
    };
    let order: Vec<usize> = points.iter().map(|p| source_of(p.tag("uuid"))).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(
        order, sorted,
        "lines grouped in the order of the --uri options"
    );
    let uuids: BTreeSet<String> = points.iter().map(|p| p.tag("uuid").to_owned()).collect();
    let mut want: BTreeSet<String> = a.iter().chain(&b).map(|v| v.uuid.clone()).collect();
    want.insert(default_uuid.clone());
    assert_eq!(uuids, want);
    for src in 0..3 {
        let n = points
            .iter()
            .filter(|p| p.measurement == "vm_features" && source_of(p.tag("uuid")) == src)
            .count();
        assert!(n > 0, "vm_features from source {src}");
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// The `vmtel:` lines of stderr that name `what`.
fn error_lines<'a>(err: &'a str, what: &str) -> Vec<&'a str> {
    err.lines()
        .filter(|l| l.starts_with("vmtel: ") && l.contains(what))
        .collect()
}

#[test]
fn unknown_uri_scheme_fails_naming_uri_and_cause() {
    let uri = "bogus-vmtel:///nowhere";
    let out = vmtel(&["once", "--uri", uri, "--gap", "50ms"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    let err = stderr(&out);
    let lines = error_lines(&err, &format!("\"{uri}\""));
    assert_eq!(lines.len(), 1, "one error naming the URI:\n{err}");
    // The URI is followed by libvirt's reason.
    let after = lines[0].split(&format!("\"{uri}\"")).nth(1).unwrap();
    assert!(
        after.starts_with(": ") && after.len() > 10,
        "no cause after the URI: {}",
        lines[0]
    );
}

#[test]
fn missing_fixture_file_fails_naming_uri_and_cause() {
    // A path with no "xml" in it, so that the word in the message comes from libvirt's reason.
    let uri = "test:///nonexistent-vmtel-test/absent.node";
    let out = vmtel(&["once", "--uri", uri, "--gap", "50ms"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    let lines = error_lines(&err, uri);
    assert_eq!(lines.len(), 1, "one error naming the URI:\n{err}");
    assert!(
        lines[0].to_lowercase().contains("xml"),
        "the cause (the file cannot be read as XML) is named: {}",
        lines[0]
    );
}

#[test]
fn healthy_sources_still_print_when_another_fails() {
    let dir = tempfile::tempdir().unwrap();
    let a = small_fleet(400, &["ok one", "ok=two"]);
    let (_, uri_a) = write_node(dir.path(), "a.xml", &a).unwrap();
    let bad = "test:///nonexistent-vmtel-test/absent.node";
    let out = vmtel(&[
        "once",
        "--uri",
        "bogus-vmtel:///x",
        "--uri",
        &uri_a,
        "--uri",
        bad,
        "--gap",
        "200ms",
    ]);
    assert!(
        !out.status.success(),
        "a failed source makes the exit status non-zero"
    );
    let err = stderr(&out);
    assert_eq!(error_lines(&err, "bogus-vmtel:///x").len(), 1, "{err}");
    assert_eq!(error_lines(&err, bad).len(), 1, "{err}");
    assert!(
        !err.contains(&uri_a),
        "the healthy source is not reported: {err}"
    );

    let points = vm_only(&parse(stdout(&out)));
    let vms = by_vm(&points);
    let want: BTreeSet<String> = a.iter().map(|v| v.uuid.clone()).collect();
    assert_eq!(vms.keys().cloned().collect::<BTreeSet<_>>(), want);
    for (uuid, v) in &vms {
        assert_eq!(
            (
                v.metrics.len(),
                v.totals.len(),
                v.nics.len(),
                v.disks.len(),
                v.features.len()
            ),
            (1, 1, 2, 2, 1),
            "complete lines for {uuid}"
        );
    }
}

fn write_config(dir: &Path, text: &str) -> String {
    let p = dir.join("bad config.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[track_caller]
fn assert_config_error(path: &str, out: &Output, needles: &[&str]) {
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{}", stdout(out));
    let err = stderr(out);
    assert!(err.contains(path), "names the file {path}:\n{err}");
    for n in needles {
        assert!(err.contains(n), "mentions {n:?}:\n{err}");
    }
}

#[test]
fn config_with_unknown_key_fails_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "# vmtel\ninterval = \"10s\"\nintervall = \"5s\"\n",
    );
    let out = vmtel(&["once", "--config", &path]);
    assert_config_error(&path, &out, &["line 3", "intervall"]);

    let path = write_config(
        dir.path(),
        "[[sources]]\nuri = \"test:///default\"\nhots = \"x\"\n",
    );
    let out = vmtel(&["once", "--config", &path]);
    assert_config_error(&path, &out, &["line 3", "hots"]);
}

#[test]
fn config_with_bad_duration_fails_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "\ninterval = \"10 parsecs\"\n");
    let out = vmtel(&["once", "--config", &path]);
    assert_config_error(&path, &out, &["line 2", "interval", "expected a duration"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("parsecs"),
        "the value is not echoed (it could be a secret pasted into the wrong key)"
    );

    let path = write_config(dir.path(), "device_cache_ttl = 300\n");
    let out = vmtel(&["once", "--config", &path]);
    assert_config_error(&path, &out, &["line 1", "device_cache_ttl"]);

    let path = write_config(dir.path(), "interval = \"0s\"\n");
    let out = vmtel(&["once", "--config", &path]);
    assert_config_error(&path, &out, &["interval"]);
}

#[test]
fn missing_config_file_fails_naming_it() {
    let path = "/nonexistent-vmtel-test/vmtel.toml";
    let out = vmtel(&["once", "--config", path]);
    assert_config_error(path, &out, &["No such file"]);
}

#[test]
fn bad_gap_fails() {
    for gap in ["0s", "soon"] {
        let out = vmtel(&["once", "--uri", DEFAULT_URI, "--gap", gap]);
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        assert!(stderr(&out).contains("--gap"), "{}", stderr(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// Help, version, demo

#[test]
fn help_and_version() {
    let out = vmtel(&["--version"]);
    assert_success(&out);
    assert_eq!(
        stdout(&out),
        format!("vmtel {}\n", env!("CARGO_PKG_VERSION"))
    );

    let out = vmtel(&["--help"]);
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.contains("Usage: vmtel"), "{text}");
    assert!(text.contains("once"), "{text}");

    let out = vmtel(&["once", "--help"]);
    assert_success(&out);
    let text = stdout(&out);
    for opt in [
        "--uri",
        "--config",
        "--gap",
        "--demo",
        "LIBVIRT_DEFAULT_URI",
    ] {
        assert!(text.contains(opt), "once --help mentions {opt}:\n{text}");
    }

    let out = vmtel(&[]);
    assert!(!out.status.success(), "a subcommand is required");
}

#[test]
fn demo_prints_three_hosts() {
    let start = wall_ns();
    let out = vmtel(&["once", "--demo", "--gap", "100ms"]);
    let end = wall_ns();
    assert_success(&out);
    let points = parse(stdout(&out));
    assert_types(&points);
    let fleet = demo::demo_fleet(demo::DEMO_VMS_PER_HOST);
    let names: BTreeSet<String> = fleet
        .iter()
        .filter(|v| v.state != RunState::ShutOff)
        .map(|v| {
            assert!(!v.name.contains('\\') && !v.name.chars().any(char::is_control));
            v.name.clone()
        })
        .collect();
    assert!(
        names.len() < fleet.len(),
        "the demo fleet has a shut-off VM"
    );
    let hosts: BTreeSet<&str> = points.iter().map(|p| p.tag("host")).collect();
    assert_eq!(hosts, BTreeSet::from(["demo-hv1", "demo-hv2", "demo-hv3"]));
    let mut all_uuids = BTreeSet::new();
    for h in hosts {
        let mine: Vec<Point> = points
            .iter()
            .filter(|p| p.tag("host") == h)
            .cloned()
            .collect();
        assert_one_timestamp(&mine, start, end);
        let mine = vm_only(&mine);
        let got: BTreeSet<String> = mine.iter().map(|p| p.tag("name").to_owned()).collect();
        assert_eq!(got, names, "VMs of {h}");
        let vms = by_vm(&mine);
        assert_eq!(vms.len(), names.len());
        for (uuid, v) in &vms {
            assert!(all_uuids.insert(uuid.clone()), "UUID {uuid} on two hosts");
            assert_eq!(v.features.len(), 1, "vm_features of {uuid} on {h}");
            assert_eq!(v.metrics.len(), 1);
            assert_eq!(v.totals.len(), 1);
            assert!(!v.nics.is_empty() && !v.disks.is_empty());
        }
    }
}
