//! A simulated fleet of QEMU guests whose counters move like real ones, for benchmarks of the
//! history store (a week of data in minutes) and for a demo that looks like a fleet.
//!
//! libvirt's test driver reports counters that grow linearly with the wall clock and are the
//! same for every VM: they compress to nothing and make every chart a flat line. Here each VM
//! has a role (web, database, batch, build, idle) and a heavy-tailed intensity; its activity
//! follows a daily rhythm, switches between busy and idle spells of random length, and each
//! interval's rates are drawn around that level with log-normal noise. A few VMs misbehave on
//! purpose ([`Trouble`]): one whose vCPUs wait for host CPUs (steal), one swapping, one
//! dropping packets, one paused. VMs may reboot (counters restart from zero, the domain ID
//! changes), as real ones do.
//!
//! [`SimFleet::record`] returns what libvirt's bulk stats call returns for such a guest (the
//! keys and types of `virsh domstats` on QEMU), so the data goes through vmtel's real decoder;
//! [`SimFleet::node`] what the host calls return for its host (capacity sized to its VMs, CPU
//! times that add up what its VMs used).
//! Everything is deterministic for a seed.

use std::time::Duration;

use crate::collect::bulk::Decoder;
use crate::collect::ffi::{OwnedParams, OwnedValue};
use crate::model::{DomainSample, NodeStats};

/// What a VM does, which sets its rates at full activity and its daily rhythm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A web server: CPU and network in the daytime.
    Web,
    /// A database: CPU, disk reads and writes.
    Database,
    /// Night-time batch jobs: CPU and disk reads.
    Batch,
    /// A build machine: CPU and disk writes in bursts.
    Build,
    /// Almost nothing: a little background traffic.
    Idle,
}

/// A problem a VM has on purpose, so that problem views have something to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// None.
    None,
    /// Its vCPUs wait for host CPUs (high steal).
    Steal,
    /// The guest swaps.
    Swapping,
    /// Its first NIC drops received packets.
    NicDrops,
    /// Paused: state 3, counters frozen.
    Paused,
}

impl Trouble {
    /// The dashboard's problem rule this trouble is made to trigger, if any.
    pub fn problem_rule(self) -> Option<&'static str> {
        match self {
            Trouble::None => None,
            Trouble::Steal => Some("steal"),
            Trouble::Swapping => Some("swapping"),
            Trouble::NicDrops => Some("nic_drops"),
            Trouble::Paused => Some("paused"),
        }
    }
}

/// Options of a simulated fleet.
#[derive(Debug, Clone, Copy)]
pub struct SimOptions {
    /// Seed of every random draw.
    pub seed: u64,
    /// Number of hosts.
    pub hosts: usize,
    /// VMs per host.
    pub vms_per_host: usize,
    /// Mean days between two reboots of one VM (`None`: never).
    pub reboot_every_days: Option<f64>,
    /// NICs and disks of every VM (`None`: one or two of each, drawn per VM).
    pub devices: Option<(usize, usize)>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 1,
            hosts: 3,
            vms_per_host: 12,
            reboot_every_days: Some(14.0),
            devices: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Nic {
    rx_bytes: u64,
    rx_pkts: u64,
    rx_drop: u64,
    tx_bytes: u64,
    tx_pkts: u64,
}

#[derive(Debug, Clone, Default)]
struct Disk {
    rd_reqs: u64,
    rd_bytes: u64,
    rd_times: u64,
    wr_reqs: u64,
    wr_bytes: u64,
    wr_times: u64,
    fl_reqs: u64,
}

/// The counters of one VM since its last boot.
#[derive(Debug, Clone, Default)]
struct Counters {
    cpu_ns: u64,
    user_ns: u64,
    system_ns: u64,
    vcpu_ns: Vec<u64>,
    delay_ns: Vec<u64>,
    swap_in: u64,
    swap_out: u64,
    major_fault: u64,
    minor_fault: u64,
    nics: Vec<Nic>,
    disks: Vec<Disk>,
}

/// One simulated VM.
#[derive(Debug, Clone)]
pub struct SimVm {
    /// Index of its host.
    pub host: usize,
    /// Domain name.
    pub name: String,
    /// Domain UUID.
    pub uuid: String,
    /// Domain ID (changes at a reboot).
    pub id: u32,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in KiB.
    pub mem_kib: u64,
    /// What it does.
    pub role: Role,
    /// Its problem, if any.
    pub trouble: Trouble,
    /// NIC target names.
    pub nics: Vec<String>,
    /// Disk targets and their image paths.
    pub disks: Vec<(String, String)>,
    /// Reboots so far.
    pub reboots: u32,
    /// Scale of its activity (heavy-tailed across VMs).
    intensity: f64,
    /// In a busy spell.
    busy: bool,
    /// Seconds left in the current spell.
    spell_left: f64,
    /// Guest memory in use, fraction of `mem_kib` (a slow random walk).
    used: f64,
    c: Counters,
}

/// One simulated host's CPU time counters, ns summed over its CPUs.
#[derive(Debug, Clone, Copy, Default)]
struct HostCpu {
    user: u64,
    kernel: u64,
    idle: u64,
    iowait: u64,
}

/// A simulated fleet.
#[derive(Debug, Clone)]
pub struct SimFleet {
    /// Every VM, host by host.
    pub vms: Vec<SimVm>,
    /// Per host: its CPU time counters since it booted.
    hosts: Vec<HostCpu>,
    options: SimOptions,
    rng: fastrand::Rng,
    next_id: u32,
}

/// Host names of a simulated fleet.
pub fn host_name(h: usize) -> String {
    format!("sim-hv{}", h + 1)
}

const ROLES: [Role; 8] = [
    Role::Web,
    Role::Web,
    Role::Database,
    Role::Idle,
    Role::Batch,
    Role::Web,
    Role::Build,
    Role::Idle,
];

/// Full-activity rates of a role: CPU fraction of its vCPUs, bytes/s received and sent,
/// bytes/s read and written, and the hour of its daily peak.
struct Rates {
    cpu: f64,
    rx: f64,
    tx: f64,
    rd: f64,
    wr: f64,
    peak_hour: f64,
}

fn rates(role: Role) -> Rates {
    let r = |cpu, rx, tx, rd, wr, peak_hour| Rates {
        cpu,
        rx,
        tx,
        rd,
        wr,
        peak_hour,
    };
    match role {
        Role::Web => r(0.30, 1.5e6, 6.0e6, 2.0e5, 8.0e5, 15.0),
        Role::Database => r(0.45, 1.0e6, 1.5e6, 1.5e7, 6.0e6, 14.0),
        Role::Batch => r(0.85, 2.0e5, 1.0e5, 3.0e7, 4.0e6, 2.0),
        Role::Build => r(0.70, 5.0e5, 2.0e5, 5.0e6, 1.2e7, 11.0),
        Role::Idle => r(0.01, 2.0e3, 1.0e3, 0.0, 4.0e3, 12.0),
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u = rng.f64().max(f64::MIN_POSITIVE);
    let v = rng.f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A log-normal factor with median 1.
fn jitter(rng: &mut fastrand::Rng, sigma: f64) -> f64 {
    (sigma * normal(rng)).exp()
}

/// A Pareto draw (minimum 1, tail index `alpha`): most values near 1, a few far above.
fn pareto(rng: &mut fastrand::Rng, alpha: f64) -> f64 {
    (1.0 - rng.f64()).max(1e-9).powf(-1.0 / alpha)
}

/// The daily rhythm at `t_ns` for a peak at `peak_hour` (UTC): 0.15 at night to 1.0 at the peak.
fn rhythm(t_ns: i64, peak_hour: f64) -> f64 {
    let hour = (t_ns.rem_euclid(86_400_000_000_000) as f64) / 3.6e12;
    0.15 + 0.85 * (0.5 + 0.5 * (std::f64::consts::TAU * (hour - peak_hour) / 24.0).cos())
}

/// `x` rounded to an integer count, never negative.
fn count(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        x.round() as u64
    } else {
        0
    }
}

impl SimFleet {
    /// A fleet of `options.hosts` hosts with `options.vms_per_host` VMs each. On every host
    /// with at least 8 VMs, VMs 1 to 4 have (in that order) [`Trouble::Steal`],
    /// [`Trouble::Swapping`], [`Trouble::NicDrops`] and [`Trouble::Paused`] on the first
    /// host, and none elsewhere.
    pub fn new(options: SimOptions) -> SimFleet {
        let mut rng = fastrand::Rng::with_seed(options.seed);
        let mut vms = Vec::with_capacity(options.hosts * options.vms_per_host);
        for h in 0..options.hosts {
            for i in 0..options.vms_per_host {
                let n = vms.len();
                let role = ROLES[(n * 5 + h) % ROLES.len()];
                let trouble = match (h, i, options.vms_per_host >= 8) {
                    (0, 1, true) => Trouble::Steal,
                    (0, 2, true) => Trouble::Swapping,
                    (0, 3, true) => Trouble::NicDrops,
                    (0, 4, true) => Trouble::Paused,
                    _ => Trouble::None,
                };
                let name = match role {
                    // One name that needs quoting and escaping everywhere it goes.
                    Role::Web if n + 1 == 17 => "web 17, \"eu\"".to_owned(),
                    Role::Web => format!("web-{:02}", n + 1),
                    Role::Database => format!("db-{:02}", n + 1),
                    Role::Batch => format!("batch-{:02}", n + 1),
                    Role::Build => format!("ci runner {:02}", n + 1),
                    Role::Idle => format!("spare-{:02}", n + 1),
                };
                let vcpus = [1, 2, 2, 4, 4, 8][rng.usize(0..6)];
                let mem_kib = u64::from(vcpus) * [1, 2, 4][rng.usize(0..3)] * 1024 * 1024;
                let (nic_count, disk_count) = match options.devices {
                    Some(d) => d,
                    None => (1 + rng.usize(0..2), 1 + rng.usize(0..2)),
                };
                let nics = (0..nic_count)
                    .map(|k| format!("vnet{}", n * 2 + k))
                    .collect();
                let disks = (0..disk_count)
                    .map(|k| {
                        let dev = format!("vd{}", char::from(b'a' + k as u8));
                        let path = format!("/var/lib/libvirt/images/{}-{dev}.qcow2", n + 1);
                        (dev, path)
                    })
                    .collect();
                let mut vm = SimVm {
                    host: h,
                    name,
                    uuid: format!("51a00000-0000-4000-8000-{:012x}", n + 1),
                    id: 0,
                    vcpus,
                    mem_kib,
                    role,
                    trouble,
                    nics,
                    disks,
                    reboots: 0,
                    intensity: pareto(&mut rng, 1.6).min(20.0) / 3.0,
                    busy: rng.bool(),
                    spell_left: 0.0,
                    used: 0.3 + 0.4 * rng.f64(),
                    c: Counters::default(),
                };
                vm.boot(&mut rng);
                vms.push(vm);
            }
        }
        let next_id = u32::try_from(vms.len()).unwrap_or(u32::MAX);
        let mut fleet = SimFleet {
            vms,
            hosts: vec![HostCpu::default(); options.hosts],
            options,
            rng,
            next_id,
        };
        for i in 0..fleet.vms.len() {
            fleet.vms[i].id = u32::try_from(i + 1).unwrap_or(u32::MAX);
        }
        for h in 0..fleet.hosts.len() {
            // Up for 40 days before the fleet's first step, mostly idle.
            let idle = fleet.host_cpus(h) * 40 * 86_400 * 1_000_000_000;
            fleet.hosts[h].idle = idle;
        }
        fleet
    }

    /// Advances every VM by `dt`, ending at wall-clock `t_ns` (ns since the epoch).
    pub fn step(&mut self, t_ns: i64, dt: Duration) {
        let secs = dt.as_secs_f64();
        let reboot_p = self
            .options
            .reboot_every_days
            .map_or(0.0, |d| secs / (d * 86_400.0));
        let mut used_ns = vec![0u64; self.options.hosts];
        for i in 0..self.vms.len() {
            if self.vms[i].trouble != Trouble::Paused && self.rng.f64() < reboot_p {
                self.reboot(i);
            }
            let vm = &mut self.vms[i];
            let before = vm.c.cpu_ns;
            vm.advance(&mut self.rng, t_ns, secs);
            if let Some(u) = used_ns.get_mut(vm.host) {
                *u += vm.c.cpu_ns.saturating_sub(before);
            }
        }
        // The hosts' CPUs: their VMs' time (mostly user), some of their own, the rest idle.
        for (h, used) in used_ns.into_iter().enumerate() {
            let total = count(self.host_cpus(h) as f64 * secs * 1e9);
            let own = count(0.02 * total as f64 * jitter(&mut self.rng, 0.3));
            let iowait = count(0.004 * total as f64 * jitter(&mut self.rng, 0.8));
            let user = count(0.85 * used as f64) + own / 2;
            let kernel = used.saturating_sub(count(0.85 * used as f64)) + own / 2;
            let idle = total.saturating_sub(user + kernel + iowait);
            if let Some(c) = self.hosts.get_mut(h) {
                c.user += user;
                c.kernel += kernel;
                c.iowait += iowait;
                c.idle += idle;
            }
        }
    }

    /// The VMs of host `h`.
    fn vms_of(&self, h: usize) -> impl Iterator<Item = &SimVm> {
        self.vms.iter().filter(move |v| v.host == h)
    }

    /// Host `h`'s logical CPUs: a multiple of 16, about 0.75 of its VMs' vCPUs (hosts are
    /// overcommitted on vCPUs, as most are).
    fn host_cpus(&self, h: usize) -> u64 {
        let vcpus: u64 = self.vms_of(h).map(|v| u64::from(v.vcpus)).sum();
        (vcpus * 3 / 4).div_ceil(16).max(1) * 16
    }

    /// What libvirt's host calls return for host `h` (`virNodeGetInfo`, `virNodeGetCPUStats`,
    /// `virNodeGetMemoryStats`): memory a multiple of 64 GiB with room for its VMs, free what
    /// their processes and the page cache leave.
    pub fn node(&self, h: usize) -> NodeStats {
        const GIB: u64 = 1024 * 1024;
        let vm_kib: u64 = self.vms_of(h).map(|v| v.mem_kib).sum();
        let total = (vm_kib + vm_kib / 6).div_ceil(64 * GIB).max(1) * 64 * GIB;
        let rss: u64 = self
            .vms_of(h)
            .map(|v| (v.mem_kib * 3 / 4).max(count(v.used * v.mem_kib as f64)) + 180_000)
            .sum();
        let cached = total / 12;
        let buffers = total / 200;
        let c = self.hosts.get(h).copied().unwrap_or_default();
        NodeStats {
            cpus: Some(self.host_cpus(h)),
            mhz: Some(2_900),
            mem_total: Some(total),
            mem_free: Some(total.saturating_sub(rss + cached + buffers + 2 * GIB)),
            mem_buffers: Some(buffers),
            mem_cached: Some(cached),
            cpu_user: Some(c.user),
            cpu_kernel: Some(c.kernel),
            cpu_idle: Some(c.idle),
            cpu_iowait: Some(c.iowait),
        }
    }

    /// Restarts VM `i` now, as a random reboot in [`SimFleet::step`] does: a new domain ID
    /// and its counters from zero (the next step advances them by one interval).
    pub fn reboot(&mut self, i: usize) {
        let Some(vm) = self.vms.get_mut(i) else {
            return;
        };
        self.next_id = self.next_id.saturating_add(1);
        vm.id = self.next_id;
        vm.reboots += 1;
        vm.boot(&mut self.rng);
    }

    /// VM `i`'s sample as the collector makes it: the domain's name, UUID and ID, and its
    /// [`SimFleet::record`] at `t_ns` read by `decoder`, stamped with monotonic time `mono_ns`.
    pub fn sample(&self, i: usize, t_ns: i64, mono_ns: u64, decoder: &mut Decoder) -> DomainSample {
        let mut s = DomainSample {
            mono_ns,
            ..DomainSample::default()
        };
        if let Some(vm) = self.vms.get(i) {
            s.name.clone_from(&vm.name);
            s.uuid.clone_from(&vm.uuid);
            s.id = Some(vm.id);
            decoder.decode(&mut s, self.record(i, t_ns).raw_params());
        }
        s
    }

    /// The libvirt state code of VM `i` (1 running, 3 paused).
    pub fn state(&self, i: usize) -> i32 {
        match self.vms.get(i).map(|v| v.trouble) {
            Some(Trouble::Paused) => 3,
            _ => 1,
        }
    }

    /// VM `i`'s bulk stats record as libvirt 9 returns it for a QEMU guest (`virsh domstats`:
    /// state, cpu-total, balloon with guest statistics, vcpu, interface, block).
    pub fn record(&self, i: usize, t_ns: i64) -> OwnedParams {
        use OwnedValue::{Int, Str, UInt, ULLong};
        let mut p = OwnedParams::new();
        let Some(vm) = self.vms.get(i) else {
            return p;
        };
        let c = &vm.c;
        p.push("state.state", Int(self.state(i)));
        p.push("state.reason", Int(1));
        p.push("cpu.time", ULLong(c.cpu_ns));
        p.push("cpu.user", ULLong(c.user_ns));
        p.push("cpu.system", ULLong(c.system_ns));
        let mem = vm.mem_kib;
        let used = count(vm.used * mem as f64);
        let caches = count(0.15 * (mem - used.min(mem)) as f64);
        for (key, v) in [
            ("current", mem),
            ("maximum", mem),
            ("swap_in", c.swap_in),
            ("swap_out", c.swap_out),
            ("major_fault", c.major_fault),
            ("minor_fault", c.minor_fault),
            ("unused", mem.saturating_sub(used + caches)),
            ("available", mem.saturating_sub(60_000)),
            ("usable", mem.saturating_sub(60_000 + used)),
            (
                "last-update",
                u64::try_from(t_ns / 1_000_000_000).unwrap_or(0),
            ),
            ("disk_caches", caches),
            ("rss", (mem * 3 / 4).max(used) + 180_000),
        ] {
            p.push(&format!("balloon.{key}"), ULLong(v));
        }
        p.push("vcpu.current", UInt(vm.vcpus));
        p.push("vcpu.maximum", UInt(vm.vcpus));
        for v in 0..vm.vcpus as usize {
            p.push(&format!("vcpu.{v}.state"), Int(1));
            p.push(
                &format!("vcpu.{v}.time"),
                ULLong(c.vcpu_ns.get(v).copied().unwrap_or(0)),
            );
            p.push(&format!("vcpu.{v}.wait"), ULLong(0));
            p.push(
                &format!("vcpu.{v}.delay"),
                ULLong(c.delay_ns.get(v).copied().unwrap_or(0)),
            );
        }
        p.push("net.count", UInt(vm.nics.len() as u32));
        for (n, (name, k)) in vm.nics.iter().zip(&c.nics).enumerate() {
            p.push(&format!("net.{n}.name"), Str(name.clone()));
            for (key, v) in [
                ("rx.bytes", k.rx_bytes),
                ("rx.pkts", k.rx_pkts),
                ("rx.errs", 0),
                ("rx.drop", k.rx_drop),
                ("tx.bytes", k.tx_bytes),
                ("tx.pkts", k.tx_pkts),
                ("tx.errs", 0),
                ("tx.drop", 0),
            ] {
                p.push(&format!("net.{n}.{key}"), ULLong(v));
            }
        }
        p.push("block.count", UInt(vm.disks.len() as u32));
        for (d, ((name, path), k)) in vm.disks.iter().zip(&c.disks).enumerate() {
            p.push(&format!("block.{d}.name"), Str(name.clone()));
            p.push(&format!("block.{d}.path"), Str(path.clone()));
            p.push(&format!("block.{d}.backingIndex"), UInt(d as u32 + 1));
            for (key, v) in [
                ("rd.reqs", k.rd_reqs),
                ("rd.bytes", k.rd_bytes),
                ("rd.times", k.rd_times),
                ("wr.reqs", k.wr_reqs),
                ("wr.bytes", k.wr_bytes),
                ("wr.times", k.wr_times),
                ("fl.reqs", k.fl_reqs),
                ("fl.times", k.fl_reqs * 40_000),
                ("allocation", 2_147_483_648),
                ("capacity", 21_474_836_480),
                ("physical", 2_147_483_648),
            ] {
                p.push(&format!("block.{d}.{key}"), ULLong(v));
            }
        }
        p
    }
}

impl SimVm {
    /// Starts from zero: what a boot does to the counters.
    fn boot(&mut self, rng: &mut fastrand::Rng) {
        let vcpus = self.vcpus as usize;
        self.c = Counters {
            vcpu_ns: vec![0; vcpus],
            delay_ns: vec![0; vcpus],
            nics: vec![Nic::default(); self.nics.len()],
            disks: vec![Disk::default(); self.disks.len()],
            // A boot reads the image and faults pages in.
            major_fault: 800 + rng.u64(0..400),
            minor_fault: 150_000 + rng.u64(0..50_000),
            ..Counters::default()
        };
    }

    /// Moves the counters by `secs` of activity ending at `t_ns`.
    fn advance(&mut self, rng: &mut fastrand::Rng, t_ns: i64, secs: f64) {
        if self.trouble == Trouble::Paused {
            return;
        }
        // Busy and idle spells: busy ones last minutes to hours, idle ones longer.
        self.spell_left -= secs;
        if self.spell_left <= 0.0 {
            self.busy = !self.busy;
            let mean = if self.busy { 1800.0 } else { 3600.0 };
            self.spell_left = mean * pareto(rng, 1.5) / 3.0;
        }
        let r = rates(self.role);
        let level = rhythm(t_ns, r.peak_hour)
            * if self.busy { 1.0 } else { 0.03 }
            * self.intensity
            * jitter(rng, 0.6);
        self.used = (self.used + 0.002 * normal(rng) * secs.sqrt()).clamp(0.15, 0.92);
        let c = &mut self.c;
        let vcpus = f64::from(self.vcpus);

        // CPU: a fraction of the vCPUs' time, split user/system; steal as vCPU delay.
        let busy_frac = (r.cpu * level).clamp(0.002, 0.97);
        let cpu = busy_frac * vcpus * secs * 1e9;
        let user = cpu * (0.6 + 0.3 * rng.f64());
        c.cpu_ns += count(cpu);
        c.user_ns += count(user);
        c.system_ns += count(cpu - user);
        let steal = match self.trouble {
            Trouble::Steal => 0.2 + 0.15 * rng.f64(),
            _ => 0.004 * busy_frac * jitter(rng, 0.5),
        };
        for v in 0..self.vcpus as usize {
            let share = jitter(rng, 0.2) / vcpus;
            if let Some(x) = c.vcpu_ns.get_mut(v) {
                *x += count(cpu * share);
            }
            if let Some(x) = c.delay_ns.get_mut(v) {
                *x += count(steal * secs * 1e9 * jitter(rng, 0.2));
            }
        }
        c.minor_fault += count(cpu / 1e9 * 4000.0 * jitter(rng, 0.5));
        c.major_fault += count(level * secs * 0.5 * jitter(rng, 1.0) * rng.f64());
        if self.trouble == Trouble::Swapping {
            let swap = 2e3 + 4e4 * rng.f64() * rng.f64();
            c.swap_in += count(swap * secs * 0.6);
            c.swap_out += count(swap * secs);
            c.major_fault += count(swap * secs / 4.0);
        }

        // Network: the first NIC carries most of the traffic; packets of 80 to 1,400 bytes.
        let nics = c.nics.len().max(1) as f64;
        for (n, k) in c.nics.iter_mut().enumerate() {
            let share = if n == 0 {
                0.8
            } else {
                0.2 / (nics - 1.0).max(1.0)
            };
            let rx = r.rx * level * share * secs * jitter(rng, 0.4) + 60.0 * secs;
            let tx = r.tx * level * share * secs * jitter(rng, 0.4) + 40.0 * secs;
            let rx_size = 300.0 + 900.0 * rng.f64();
            let tx_size = 500.0 + 900.0 * rng.f64();
            let rx_pkts = count(rx / rx_size).max(1);
            k.rx_bytes += count(rx);
            k.rx_pkts += rx_pkts;
            k.tx_bytes += count(tx);
            k.tx_pkts += count(tx / tx_size).max(1);
            if self.trouble == Trouble::NicDrops && n == 0 {
                k.rx_drop += count(rx_pkts as f64 * (0.005 + 0.03 * rng.f64())).max(1);
            }
        }

        // Disks: the first disk takes most; requests of 4 to 128 KiB; latency grows with load.
        let disks = c.disks.len().max(1) as f64;
        for (d, k) in c.disks.iter_mut().enumerate() {
            let share = if d == 0 {
                0.85
            } else {
                0.15 / (disks - 1.0).max(1.0)
            };
            let rd = r.rd * level * share * secs * jitter(rng, 0.7);
            let wr = r.wr * level * share * secs * jitter(rng, 0.7) + 2_000.0 * secs;
            let size = 4096.0 * f64::from(1u32 << rng.u32(0..6));
            let rd_reqs = count(rd / size);
            let wr_reqs = count(wr / size).max(1);
            k.rd_reqs += rd_reqs;
            k.rd_bytes += rd_reqs * size as u64;
            k.wr_reqs += wr_reqs;
            k.wr_bytes += wr_reqs * size as u64;
            let latency = 150_000.0 * (1.0 + 4.0 * level.min(3.0));
            k.rd_times += count(rd_reqs as f64 * latency);
            k.wr_times += count(wr_reqs as f64 * latency * 1.5);
            k.fl_reqs += count(secs / 5.0 * jitter(rng, 0.5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::bulk::Decoder;
    use crate::model::DomainSample;

    const DAY_NS: i64 = 86_400_000_000_000;

    /// A host's CPU times add up to its CPUs' time, its user and kernel time covers what its
    /// VMs used, and its memory holds its VMs' with some free.
    #[test]
    fn hosts_account_for_their_vms() {
        let mut f = SimFleet::new(SimOptions::default());
        let t0 = 1_800_000_000_000_000_000;
        f.step(t0, Duration::from_secs(10));
        let before: Vec<NodeStats> = (0..3).map(|h| f.node(h)).collect();
        let vm_before: Vec<u64> = f.vms.iter().map(|v| v.c.cpu_ns).collect();
        f.step(t0 + 10_000_000_000, Duration::from_secs(10));
        for (h, b) in before.iter().enumerate() {
            let a = f.node(h);
            let d = |x: Option<u64>, y: Option<u64>| x.unwrap_or(0) - y.unwrap_or(0);
            let cpus = a.cpus.unwrap_or(0);
            assert!(cpus >= 16 && cpus.is_multiple_of(16), "{cpus}");
            let all = d(a.cpu_user, b.cpu_user)
                + d(a.cpu_kernel, b.cpu_kernel)
                + d(a.cpu_idle, b.cpu_idle)
                + d(a.cpu_iowait, b.cpu_iowait);
            let want = cpus * 10_000_000_000;
            assert!(all.abs_diff(want) <= 4, "{all} vs {want}");
            let vms: u64 = f
                .vms
                .iter()
                .zip(&vm_before)
                .filter(|(v, _)| v.host == h)
                .map(|(v, b)| v.c.cpu_ns.saturating_sub(*b))
                .sum();
            let busy = d(a.cpu_user, b.cpu_user) + d(a.cpu_kernel, b.cpu_kernel);
            assert!(busy >= vms, "host {h}: busy {busy} < its VMs' {vms}");
            let vm_kib: u64 = f
                .vms
                .iter()
                .filter(|v| v.host == h)
                .map(|v| v.mem_kib)
                .sum();
            let (total, free) = (a.mem_total.unwrap_or(0), a.mem_free.unwrap_or(0));
            assert!(
                total > vm_kib && free > 0 && free < total - vm_kib / 2,
                "{a:?}"
            );
        }
    }
    const T0: i64 = 1_795_000_000 * 1_000_000_000 - (1_795_000_000 * 1_000_000_000) % DAY_NS;

    fn decode(fleet: &SimFleet, i: usize, t: i64) -> DomainSample {
        let mut d = Decoder::new();
        let mut s = DomainSample::default();
        let rec = fleet.record(i, t);
        d.decode(&mut s, rec.raw_params());
        s
    }

    #[test]
    fn the_same_seed_gives_the_same_fleet() {
        let run = |seed| {
            let mut f = SimFleet::new(SimOptions {
                seed,
                ..SimOptions::default()
            });
            for k in 1..=30 {
                f.step(T0 + k * 60_000_000_000, Duration::from_secs(60));
            }
            (0..f.vms.len())
                .map(|i| decode(&f, i, T0))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn records_decode_into_every_group_and_counters_only_restart_at_a_reboot() {
        let mut f = SimFleet::new(SimOptions {
            seed: 3,
            reboot_every_days: Some(0.5),
            ..SimOptions::default()
        });
        let n = f.vms.len();
        let mut prev: Vec<DomainSample> = (0..n).map(|i| decode(&f, i, T0)).collect();
        let mut reboots = vec![0; n];
        for k in 1..=24 * 12 {
            let t = T0 + k * 300_000_000_000;
            f.step(t, Duration::from_secs(300));
            for i in 0..n {
                let s = decode(&f, i, t);
                assert!(
                    s.cpu.time.is_some() && s.mem.usable.is_some() && s.vcpu.delay_sum.is_some()
                );
                assert_eq!(s.nics.len(), f.vms[i].nics.len());
                assert_eq!(s.disks.len(), f.vms[i].disks.len());
                assert!(s
                    .nics
                    .iter()
                    .all(|x| x.rx_bytes.is_some() && x.tx_pkts.is_some()));
                assert!(s
                    .disks
                    .iter()
                    .all(|x| x.rd_bytes.is_some() && x.wr_reqs.is_some()));
                let rebooted = f.vms[i].reboots != reboots[i];
                reboots[i] = f.vms[i].reboots;
                let p = &prev[i];
                let grew = |a: Option<u64>, b: Option<u64>| a <= b;
                let all_grew =
                    grew(p.cpu.time, s.cpu.time)
                        && grew(p.vcpu.delay_sum, s.vcpu.delay_sum)
                        && grew(p.mem.swap_out, s.mem.swap_out)
                        && p.nics.iter().zip(&s.nics).all(|(a, b)| {
                            grew(a.rx_bytes, b.rx_bytes) && grew(a.rx_drop, b.rx_drop)
                        })
                        && p.disks.iter().zip(&s.disks).all(|(a, b)| {
                            grew(a.wr_bytes, b.wr_bytes) && grew(a.rd_reqs, b.rd_reqs)
                        });
                assert!(
                    rebooted || all_grew,
                    "VM {i} went backwards without a reboot"
                );
                if rebooted {
                    // Booted within this step: at most one step of CPU time since.
                    let most = 300e9 * f64::from(f.vms[i].vcpus);
                    assert!(
                        s.cpu.time.is_some_and(|t| (t as f64) <= most),
                        "a reboot restarts the counters"
                    );
                }
                prev[i] = s;
            }
        }
        assert!(
            reboots.iter().any(|&r| r > 0),
            "with a reboot every half day some VM rebooted"
        );
    }

    #[test]
    fn a_reboot_gives_a_new_id_and_restarts_the_counters() {
        let mut f = SimFleet::new(SimOptions {
            seed: 2,
            reboot_every_days: None,
            ..SimOptions::default()
        });
        let ids: Vec<u32> = f.vms.iter().map(|v| v.id).collect();
        for k in 1..=10 {
            f.step(T0 + k * 60_000_000_000, Duration::from_secs(60));
        }
        let before = decode(&f, 5, T0);
        f.reboot(5);
        f.step(T0 + 11 * 60_000_000_000, Duration::from_secs(60));
        let after = decode(&f, 5, T0);
        assert_eq!(f.vms[5].reboots, 1);
        assert!(!ids.contains(&f.vms[5].id), "a new domain ID");
        assert!(ids
            .iter()
            .enumerate()
            .all(|(i, id)| i == 5 || f.vms[i].id == *id));
        assert!(after.cpu.time < before.cpu.time);
        assert!(after.nics[0].rx_bytes < before.nics[0].rx_bytes);
        assert!(after.disks[0].wr_bytes < before.disks[0].wr_bytes);
    }

    /// Per-VM CPU fraction of each 10-minute interval over a day.
    fn day_of_cpu(seed: u64) -> (SimFleet, Vec<Vec<f64>>) {
        let mut f = SimFleet::new(SimOptions {
            seed,
            hosts: 3,
            vms_per_host: 12,
            reboot_every_days: None,
            ..SimOptions::default()
        });
        let n = f.vms.len();
        let mut last: Vec<u64> = (0..n).map(|i| f.vms[i].c.cpu_ns).collect();
        let mut out = vec![Vec::new(); n];
        for k in 1..=144 {
            f.step(T0 + k * 600_000_000_000, Duration::from_secs(600));
            for i in 0..n {
                let now = f.vms[i].c.cpu_ns;
                out[i].push((now - last[i]) as f64 / (600e9 * f64::from(f.vms[i].vcpus)));
                last[i] = now;
            }
        }
        (f, out)
    }

    #[test]
    fn activity_is_heavy_tailed_with_idle_spells_and_a_daily_rhythm() {
        let (f, cpu) = day_of_cpu(11);
        // Across VMs: the busiest VM's mean is many times the median VM's.
        let mut means: Vec<f64> = cpu
            .iter()
            .map(|v| v.iter().sum::<f64>() / v.len() as f64)
            .collect();
        means.sort_by(f64::total_cmp);
        let median = means[means.len() / 2];
        let max = means[means.len() - 1];
        assert!(max > 5.0 * median, "max {max} vs median {median}");
        // Within a busy VM: idle intervals (under a tenth of its own peak) and busy ones.
        let busiest = cpu
            .iter()
            .max_by(|a, b| a.iter().sum::<f64>().total_cmp(&b.iter().sum::<f64>()))
            .cloned()
            .unwrap_or_default();
        let peak = busiest.iter().copied().fold(0.0, f64::max);
        let idle = busiest.iter().filter(|&&x| x < peak / 10.0).count();
        assert!(
            idle >= 5 && idle < busiest.len(),
            "{idle} idle of {}",
            busiest.len()
        );
        // The daytime roles are busier in the afternoon than at night, fleet-wide.
        let day_roles: Vec<usize> = (0..f.vms.len())
            .filter(|&i| matches!(f.vms[i].role, Role::Web | Role::Database))
            .collect();
        let at = |hour: usize| -> f64 {
            day_roles
                .iter()
                .map(|&i| cpu[i][hour * 6..hour * 6 + 6].iter().sum::<f64>())
                .sum()
        };
        assert!(at(14) > 2.0 * at(3), "14h {} vs 3h {}", at(14), at(3));
    }

    #[test]
    fn the_troubled_vms_show_their_trouble() {
        let mut f = SimFleet::new(SimOptions {
            seed: 5,
            reboot_every_days: None,
            ..SimOptions::default()
        });
        let find = |f: &SimFleet, t: Trouble| {
            f.vms
                .iter()
                .position(|v| v.trouble == t)
                .unwrap_or_else(|| panic!("no {t:?} VM"))
        };
        let (steal, swap, drops, paused) = (
            find(&f, Trouble::Steal),
            find(&f, Trouble::Swapping),
            find(&f, Trouble::NicDrops),
            find(&f, Trouble::Paused),
        );
        let before: Vec<DomainSample> = (0..f.vms.len()).map(|i| decode(&f, i, T0)).collect();
        f.step(T0 + 60_000_000_000, Duration::from_secs(60));
        let after: Vec<DomainSample> = (0..f.vms.len()).map(|i| decode(&f, i, T0)).collect();
        let d = |i: usize, get: fn(&DomainSample) -> Option<u64>| {
            get(&after[i]).unwrap_or(0) - get(&before[i]).unwrap_or(0)
        };
        let steal_pct =
            d(steal, |s| s.vcpu.delay_sum) as f64 / (60e9 * f64::from(f.vms[steal].vcpus)) * 100.0;
        assert!(steal_pct > 10.0, "steal {steal_pct} %");
        assert!(d(swap, |s| s.mem.swap_out) > 0 && d(swap, |s| s.mem.swap_in) > 0);
        assert!(d(drops, |s| s.nics[0].rx_drop) > 0);
        assert_eq!(after[paused].state, Some(3));
        assert_eq!(d(paused, |s| s.cpu.time), 0, "a paused VM does not run");
        for i in (0..f.vms.len()).filter(|&i| f.vms[i].trouble == Trouble::None) {
            assert_eq!(d(i, |s| s.mem.swap_out), 0);
            assert_eq!(after[i].state, Some(1));
        }
    }
}
