//! The lab as the tests see it: `scripts/lab` (brought up once per test binary), its guest list,
//! extra guests for tests that mutate a guest, `virsh`, a process-wide lock around libvirt stats
//! queries, and a capture of vmtel's log.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use vmtel::collect::{Collector, SourceSpec};
use vmtel::model::{DomainSample, HostSample};

/// The lab's libvirt URI.
pub const URI: &str = "qemu:///system";

/// Regular lab guests the tests use (`scripts/lab up 3`).
pub const GUESTS: usize = 3;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn lab_dir() -> PathBuf {
    std::env::var_os("LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/vmtel-lab"))
}

/// One guest as `scripts/lab` lists it (`guests.tsv`, or the row `extra up` prints).
#[derive(Debug, Clone)]
pub struct Guest {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    /// Host tap names: `nets[0]` is the guest's `eth0`, `nets[1]` its `eth1`.
    pub nets: [String; 2],
    /// Guest disk names (`vda`, `vdb`), the same on both sides.
    pub disks: [String; 2],
    pub disk_paths: [String; 2],
    pub console: PathBuf,
    pub vcpus: u32,
    pub vcpus_max: u32,
    pub memory_kib: u64,
    pub xml: PathBuf,
    /// MAC addresses of `nets[0]`, `nets[1]`.
    pub macs: [String; 2],
}

fn parse_guests(tsv: &str) -> Vec<Guest> {
    let mut lines = tsv.lines().filter(|l| !l.is_empty());
    let header: Vec<&str> = lines
        .next()
        .expect("empty guest list")
        .split('\t')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("guest list has no column {name:?}: {header:?}"))
    };
    let cols = [
        "index",
        "name",
        "uuid",
        "net0",
        "net1",
        "disk0",
        "disk1",
        "disk0_path",
        "disk1_path",
        "console",
        "vcpus",
        "vcpus_max",
        "memory_kib",
        "xml",
        "mac0",
        "mac1",
    ]
    .map(col);
    lines
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let get = |i: usize| f[cols[i]].to_owned();
            let num = |i: usize| get(i).parse::<u64>().expect("number in guest list");
            Guest {
                index: num(0) as u32,
                name: get(1),
                uuid: get(2),
                nets: [get(3), get(4)],
                disks: [get(5), get(6)],
                disk_paths: [get(7), get(8)],
                console: PathBuf::from(get(9)),
                vcpus: num(10) as u32,
                vcpus_max: num(11) as u32,
                memory_kib: num(12),
                xml: PathBuf::from(get(13)),
                macs: [get(14), get(15)],
            }
        })
        .collect()
}

/// Runs `scripts/lab ARGS` and returns its stdout; panics with its log on failure.
pub fn lab_script(args: &[&str]) -> String {
    let out = Command::new(repo().join("scripts/lab"))
        .args(args)
        .output()
        .expect("cannot run scripts/lab");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        panic!(
            "scripts/lab {} failed ({}):\n{}\n{}",
            args.join(" "),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
}

/// The regular lab guests, after making sure the lab is up with exactly [`GUESTS`] of them
/// (`scripts/lab up 3`, once per test binary; idempotent and about 1 s when the lab is up).
pub fn lab() -> &'static [Guest] {
    static LAB: OnceLock<Vec<Guest>> = OnceLock::new();
    LAB.get_or_init(|| {
        let t0 = Instant::now();
        lab_script(&["up", &GUESTS.to_string()]);
        let tsv = std::fs::read_to_string(lab_dir().join("guests.tsv"))
            .expect("scripts/lab up wrote no guests.tsv");
        let guests = parse_guests(&tsv);
        assert_eq!(guests.len(), GUESTS, "guests.tsv:\n{tsv}");
        eprintln!("lab up in {:.1} s", t0.elapsed().as_secs_f64());
        guests
    })
}

/// An extra guest of the lab for one test (`scripts/lab extra up K`): fresh (re-created if a
/// previous run left it), removed again on drop unless `LAB_KEEP_EXTRA` is set.
pub struct Extra {
    pub guest: Guest,
    k: u32,
}

impl Extra {
    pub fn up(k: u32) -> Extra {
        lab();
        let t0 = Instant::now();
        let out = lab_script(&["extra", "up", &k.to_string()]);
        let guest = parse_guests(&out)
            .pop()
            .unwrap_or_else(|| panic!("scripts/lab extra up {k} printed no guest:\n{out}"));
        eprintln!(
            "extra guest {k} ({:?}) up in {:.1} s",
            guest.name,
            t0.elapsed().as_secs_f64()
        );
        Extra { guest, k }
    }
}

impl Drop for Extra {
    fn drop(&mut self) {
        if std::env::var_os("LAB_KEEP_EXTRA").is_some() {
            return;
        }
        let _ = Command::new(repo().join("scripts/lab"))
            .args(["extra", "down", &self.k.to_string()])
            .output();
    }
}

// ---------------------------------------------------------------------------------------------
// virsh

/// `virsh -q -c qemu:///system ARGS`: stdout, or stderr as the error.
pub fn virsh_try(args: &[&str]) -> Result<String, String> {
    let out = Command::new("timeout")
        .args(["120", "virsh", "-q", "-c", URI])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run virsh: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "virsh {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub fn virsh(args: &[&str]) -> String {
    virsh_try(args).unwrap_or_else(|e| panic!("{e}"))
}

/// `virsh domstats --raw` of the given domains: domain name -> key -> value.
pub fn domstats(doms: &[&str]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut args = vec!["domstats", "--raw"];
    args.extend_from_slice(doms);
    let text = virsh(&args);
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Domain: '") {
            let name = rest.strip_suffix('\'').expect("Domain: 'name'").to_owned();
            out.entry(name.clone()).or_default();
            current = Some(name);
        } else if let Some((k, v)) = line.trim().split_once('=') {
            let name = current.as_ref().expect("stats before a Domain: line");
            out.get_mut(name)
                .unwrap()
                .insert(k.to_owned(), v.to_owned());
        }
    }
    out
}

/// Polls `cond` every 50 ms until it returns `Some`, for at most `limit`; panics with `what`.
pub fn wait_for<T>(limit: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Stats queries, one at a time

/// A FIFO lock around every libvirt stats query the tests make (vmtel's cycles, `vmtel once`,
/// `virsh domstats`).
///
/// vmtel asks with `VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT`: when another query holds a
/// domain's job (its QEMU monitor), libvirt returns that domain without the monitor's data
/// (no block counters, no balloon guest statistics) instead of waiting. Two tests sampling at
/// once would then see partial records by design. Seen here: 7 of 40 `--nowait` calls
/// concurrent with a `virsh domstats` loop came back partial. Tests in this binary therefore
/// query one at a time; FIFO so a test looping over cycles does not starve the others.
/// (Anybody else querying the same libvirtd at the same time can still cause this; see
/// docs/lab.md.)
pub struct QueryLock {
    state: Mutex<LockState>,
    cv: Condvar,
}

struct LockState {
    held: bool,
    queue: VecDeque<u64>,
    next: u64,
}

pub struct QueryGuard<'a> {
    lock: &'a QueryLock,
}

impl QueryLock {
    const fn new() -> Self {
        QueryLock {
            state: Mutex::new(LockState {
                held: false,
                queue: VecDeque::new(),
                next: 0,
            }),
            cv: Condvar::new(),
        }
    }

    fn inner(&self) -> MutexGuard<'_, LockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn lock(&self) -> QueryGuard<'_> {
        self.lock_at(false)
    }

    /// Like [`QueryLock::lock`], but ahead of everybody waiting: for samples that must be taken
    /// promptly.
    pub fn lock_first(&self) -> QueryGuard<'_> {
        self.lock_at(true)
    }

    fn lock_at(&self, first: bool) -> QueryGuard<'_> {
        let mut s = self.inner();
        let me = s.next;
        s.next += 1;
        if first {
            s.queue.push_front(me);
        } else {
            s.queue.push_back(me);
        }
        while s.held || s.queue.front() != Some(&me) {
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.queue.pop_front();
        s.held = true;
        QueryGuard { lock: self }
    }
}

impl Drop for QueryGuard<'_> {
    fn drop(&mut self) {
        self.lock.inner().held = false;
        self.lock.cv.notify_all();
    }
}

pub static QUERIES: QueryLock = QueryLock::new();

/// A collector for the lab. The device cache TTL is an hour: on the bulk path the device list
/// comes with the stats, so nothing in these tests may depend on the cache expiring.
pub fn collector() -> Collector {
    // As `vmtel run` does: libvirt's event loop (keepalive) and no libvirt error printer.
    vmtel::collect::start_event_loop().expect("libvirt event loop");
    vmtel::collect::quiet_libvirt_errors();
    Collector::new(
        SourceSpec {
            uri: URI.into(),
            host: None,
        },
        Duration::from_secs(3600),
    )
}

/// One cycle, under [`QUERIES`], and how long the cycle itself took (mostly libvirt's bulk
/// call; not counting the wait for the lock).
pub fn collect_timed(c: &mut Collector) -> (HostSample, Duration) {
    let _q = QUERIES.lock();
    collect_locked(c)
}

/// One cycle, ahead of other tests' queries (see [`QueryLock::lock_first`]).
pub fn collect_first(c: &mut Collector) -> HostSample {
    let _q = QUERIES.lock_first();
    collect_locked(c).0
}

/// [`collect_timed`] for a caller that holds [`QUERIES`].
pub fn collect_locked(c: &mut Collector) -> (HostSample, Duration) {
    let t0 = Instant::now();
    let sample = c
        .collect()
        .unwrap_or_else(|e| panic!("collection cycle failed: {e}"));
    (sample, t0.elapsed())
}

pub fn collect(c: &mut Collector) -> HostSample {
    collect_timed(c).0
}

/// The sample of the domain with `uuid`, if the cycle saw it.
pub fn dom<'a>(s: &'a HostSample, uuid: &str) -> Option<&'a DomainSample> {
    s.domains.iter().find(|d| d.uuid == uuid)
}

// ---------------------------------------------------------------------------------------------
// vmtel's log

#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` with a tracing subscriber (INFO and up) on this thread and returns what vmtel
/// logged, one event per line, starting with the level (`INFO`, `WARN`, `ERROR`).
pub fn with_log<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    let buf = LogBuf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .without_time()
        .finish();
    let r = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    (r, text.lines().map(|l| l.trim().to_owned()).collect())
}

/// The WARN and ERROR lines of a captured log, except those about another test's extra guest.
///
/// Other tests create, restart and destroy their extra guests (`lab-x<K>`) at any time, and a
/// cycle of this test may see one vanish; whatever vmtel logs about those is that scenario's,
/// which the test owning it checks. `mine` are the extra guests this test owns.
pub fn problems<'a>(log: &'a [String], mine: &[&str]) -> Vec<&'a String> {
    log.iter()
        .filter(|l| l.starts_with("WARN") || l.starts_with("ERROR"))
        .filter(|l| !about_other_extra(l, mine))
        .collect()
}

/// True if `line` names (`VM "lab-xK"`) an extra guest that is not in `mine`.
pub fn about_other_extra(line: &str, mine: &[&str]) -> bool {
    line.match_indices("\"lab-x").any(|(i, _)| {
        let name = line[i + 1..].split('"').next().unwrap_or_default();
        !mine.contains(&name)
    })
}
