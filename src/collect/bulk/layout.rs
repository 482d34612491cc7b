//! Parameter layouts: where each parameter of a record goes, worked out once per shape.
//!
//! libvirt returns a domain's parameters with the same names in the same order cycle after
//! cycle (and VMs with the same number of vCPUs, NICs and disks share one order), until a device
//! is added or removed. A [`Layout`] is the parsed form of one such name list: for each field of
//! a sample, the position of the parameter that fills it ([`Sources`]). Applying a layout costs
//! a few word comparisons per name (to check the record still has that shape, see [`Names`]) and
//! one read per field vmtel uses, with no branch on what each parameter is; the names are parsed
//! only when a new shape appears.

use super::super::ffi::{RawParam, RawParams};
use super::names::Names;
use super::Groups;
use crate::model::{DiskStats, DomainSample, NicStats};

/// Highest device index accepted: a bogus index cannot make vmtel allocate without limit.
const MAX_DEVICES: usize = 4096;

/// `balloon.<key>` names, in the order [`Layout::apply`] reads them.
const MEM_KEYS: [&str; 11] = [
    "current",
    "maximum",
    "rss",
    "available",
    "usable",
    "unused",
    "swap_in",
    "swap_out",
    "major_fault",
    "minor_fault",
    "disk_caches",
];

/// `net.N.<key>` counter names, in the order [`Layout::apply`] reads them.
const NIC_KEYS: [&str; 8] = [
    "rx.bytes", "rx.pkts", "rx.errs", "rx.drop", "tx.bytes", "tx.pkts", "tx.errs", "tx.drop",
];

/// `block.N.<key>` counter names, in the order [`Layout::apply`] reads them.
const DISK_KEYS: [&str; 5] = ["rd.reqs", "rd.bytes", "wr.reqs", "wr.bytes", "errors"];

/// What one parameter fills. Device positions are after compaction (gaps in libvirt's indices
/// removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Skip,
    State,
    CpuTime,
    CpuUser,
    CpuSystem,
    Mem(u8),
    VcpuCurrent,
    VcpuMaximum,
    VcpuDelay,
    NicName(u16),
    Nic(u16, u8),
    DiskName(u16),
    DiskPath(u16),
    Disk(u16, u8),
}

/// Splits `3.rx.bytes` into (3, "rx.bytes").
fn indexed(rest: &str) -> Option<(usize, &str)> {
    let b = rest.as_bytes();
    let mut idx: usize = 0;
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        idx = idx.checked_mul(10)?.checked_add(usize::from(b[i] - b'0'))?;
        i += 1;
    }
    if i == 0 || i >= b.len() || b[i] != b'.' {
        return None;
    }
    Some((idx, &rest[i + 1..]))
}

/// A parsed name: its group and, for device groups, the device index and key.
enum Parsed<'n> {
    Other,
    Group(Groups, &'n str),
    Device(Groups, usize, &'n str),
}

fn parse(name: &str) -> Parsed<'_> {
    let Some((group, rest)) = name.split_once('.') else {
        return Parsed::Other;
    };
    let g = match group {
        "state" => Groups::STATE,
        "cpu" => Groups::CPU,
        "balloon" => Groups::BALLOON,
        "vcpu" => Groups::VCPU,
        "net" => Groups::INTERFACE,
        "block" => Groups::BLOCK,
        _ => return Parsed::Other,
    };
    if g == Groups::INTERFACE || g == Groups::BLOCK {
        return match indexed(rest) {
            Some((idx, key)) if idx < MAX_DEVICES => Parsed::Device(g, idx, key),
            _ => Parsed::Group(g, ""),
        };
    }
    Parsed::Group(g, rest)
}

/// One parameter while a layout is built: its group, its device (index and key) if any, and its
/// target when it is not a device's.
type ParsedParam = (Groups, Option<(usize, String)>, Target);

/// The parsed shape of one record's parameter names.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// The parameters' names, to check that a record has this shape.
    names: Names,
    /// Which parameter fills each field.
    sources: Sources,
    /// Groups with at least one parameter.
    pub(super) groups: Groups,
    /// libvirt's index of each NIC, by position (for naming unnamed ones `net<N>`).
    nic_index: Vec<u16>,
    /// libvirt's index of each disk, by position.
    disk_index: Vec<u16>,
    /// False when a name was unreadable: such a layout is used once, not kept.
    pub(super) cacheable: bool,
    /// When the layout was last used (for eviction).
    pub(super) used: u64,
}

impl Layout {
    /// Parses the names of `params`.
    pub(super) fn build<'a>(params: impl Iterator<Item = RawParam<'a>>) -> Layout {
        let mut names = Vec::new();
        let mut parsed: Vec<ParsedParam> = Vec::new();
        let mut cacheable = true;
        let mut groups = Groups::NONE;
        let mut nic_seen = Vec::new();
        let mut disk_seen = Vec::new();
        for p in params {
            let bytes = p.name_bytes();
            names.push(bytes);
            let Some(name) = bytes.and_then(|b| std::str::from_utf8(b).ok()) else {
                cacheable = false;
                parsed.push((Groups::NONE, None, Target::Skip));
                continue;
            };
            let entry = match parse(name) {
                Parsed::Other => (Groups::NONE, None, Target::Skip),
                Parsed::Group(g, key) => (g, None, scalar_target(g, key)),
                Parsed::Device(g, idx, key) => {
                    let seen = if g == Groups::INTERFACE {
                        &mut nic_seen
                    } else {
                        &mut disk_seen
                    };
                    if seen.len() <= idx {
                        seen.resize(idx + 1, false);
                    }
                    seen[idx] = true;
                    (g, Some((idx, key.to_owned())), Target::Skip)
                }
            };
            groups = groups.union(entry.0);
            parsed.push(entry);
        }
        let positions = |seen: &[bool]| -> (Vec<u16>, Vec<Option<u16>>) {
            let mut index = Vec::new();
            let mut pos = vec![None; seen.len()];
            for (i, present) in seen.iter().enumerate() {
                if *present {
                    pos[i] = u16::try_from(index.len()).ok();
                    index.push(u16::try_from(i).unwrap_or(u16::MAX));
                }
            }
            (index, pos)
        };
        let (nic_index, nic_pos) = positions(&nic_seen);
        let (disk_index, disk_pos) = positions(&disk_seen);
        let targets = parsed
            .into_iter()
            .map(|(g, dev, t)| match dev {
                None => t,
                Some((idx, key)) => {
                    let nic = g == Groups::INTERFACE;
                    let pos = if nic { &nic_pos } else { &disk_pos };
                    match pos.get(idx).copied().flatten() {
                        Some(at) => device_target(nic, at, &key),
                        None => Target::Skip,
                    }
                }
            })
            .collect::<Vec<Target>>();
        Layout {
            names: Names::new(&names),
            sources: Sources::new(&targets, nic_index.len(), disk_index.len()),
            groups,
            nic_index,
            disk_index,
            cacheable,
            used: 0,
        }
    }

    /// Number of parameters.
    pub(super) fn len(&self) -> usize {
        self.names.len()
    }

    /// True when `params` have exactly this layout's names, in order.
    pub(super) fn matches<'a>(&self, params: impl ExactSizeIterator<Item = RawParam<'a>>) -> bool {
        self.names.matches(params)
    }

    /// Writes the values of `params` (which must match this layout) into `sample`: only what
    /// the record has; the NIC and disk lists are replaced only when their group is present.
    pub(super) fn apply(
        &self,
        sample: &mut DomainSample,
        params: RawParams<'_>,
        spares: &mut Spares,
    ) {
        let src = &self.sources;
        let at = |i: u32| params.get(i as usize);
        let u64_at = |field: &mut Option<u64>, i: u32| {
            if let Some(p) = at(i) {
                *field = p.as_u64();
            }
        };
        if let Some(p) = at(src.state) {
            sample.state = p.as_i64();
        }
        let [time, user, system] = src.cpu;
        u64_at(&mut sample.cpu.time, time);
        u64_at(&mut sample.cpu.user, user);
        u64_at(&mut sample.cpu.system, system);
        // In the order of MEM_KEYS.
        let [current, maximum, rss, available, usable, unused, swap_in, swap_out, major, minor, caches] =
            src.mem;
        let m = &mut sample.mem;
        u64_at(&mut m.current, current);
        u64_at(&mut m.maximum, maximum);
        u64_at(&mut m.rss, rss);
        u64_at(&mut m.available, available);
        u64_at(&mut m.usable, usable);
        u64_at(&mut m.unused, unused);
        u64_at(&mut m.swap_in, swap_in);
        u64_at(&mut m.swap_out, swap_out);
        u64_at(&mut m.major_fault, major);
        u64_at(&mut m.minor_fault, minor);
        u64_at(&mut m.disk_caches, caches);
        let count = |i: u32| at(i).map(|p| p.as_u64().and_then(|v| u32::try_from(v).ok()));
        if let Some(v) = count(src.vcpu_current) {
            sample.vcpu.current = v;
        }
        if let Some(v) = count(src.vcpu_maximum) {
            sample.vcpu.maximum = v;
        }
        let delays = src.delays.iter().filter_map(|&i| at(i)?.as_u64());
        if let Some(sum) = delays.reduce(u64::saturating_add) {
            sample.vcpu.delay_sum = Some(sum);
        }
        if self.groups.contains(Groups::INTERFACE) {
            spares
                .nics
                .refill(&mut sample.nics, src.nics.len(), reset_nic);
            for ((n, s), idx) in sample.nics.iter_mut().zip(&src.nics).zip(&self.nic_index) {
                // In the order of NIC_KEYS.
                let [rx_bytes, rx_pkts, rx_errs, rx_drop, tx_bytes, tx_pkts, tx_errs, tx_drop] =
                    s.counters;
                u64_at(&mut n.rx_bytes, rx_bytes);
                u64_at(&mut n.rx_pkts, rx_pkts);
                u64_at(&mut n.rx_errs, rx_errs);
                u64_at(&mut n.rx_drop, rx_drop);
                u64_at(&mut n.tx_bytes, tx_bytes);
                u64_at(&mut n.tx_pkts, tx_pkts);
                u64_at(&mut n.tx_errs, tx_errs);
                u64_at(&mut n.tx_drop, tx_drop);
                set_name(&mut n.name, at(s.name), "net", *idx);
            }
        }
        if self.groups.contains(Groups::BLOCK) {
            spares
                .disks
                .refill(&mut sample.disks, src.disks.len(), reset_disk);
            for ((d, s), idx) in sample
                .disks
                .iter_mut()
                .zip(&src.disks)
                .zip(&self.disk_index)
            {
                // In the order of DISK_KEYS.
                let [rd_reqs, rd_bytes, wr_reqs, wr_bytes, errors] = s.counters;
                u64_at(&mut d.rd_reqs, rd_reqs);
                u64_at(&mut d.rd_bytes, rd_bytes);
                u64_at(&mut d.wr_reqs, wr_reqs);
                u64_at(&mut d.wr_bytes, wr_bytes);
                u64_at(&mut d.errors, errors);
                set_name(&mut d.name, at(s.name), "block", *idx);
                match at(s.path).and_then(|p| p.as_str()) {
                    Some(path) => {
                        let buf = d.path.get_or_insert_with(String::new);
                        buf.clear();
                        buf.push_str(&path);
                    }
                    None => d.path = None,
                }
            }
        }
    }
}

/// Most device entries of each kind a [`Spares`] keeps: a sample is recycled just before the
/// next one is decoded, so a few VMs' worth is all it needs. (On drivers whose bulk call lacks
/// the device groups, the per-domain path builds the lists and nothing is taken back out.)
const MAX_SPARES: usize = 64;

/// Device entries of earlier samples, taken back so that their strings (names, paths) keep their
/// allocations: a VM's devices are decoded into reused entries rather than new strings.
#[derive(Debug, Default)]
pub(super) struct Spares {
    pub(super) nics: Pool<NicStats>,
    pub(super) disks: Pool<DiskStats>,
}

/// Spare entries of one kind (at most [`MAX_SPARES`]).
#[derive(Debug)]
pub(super) struct Pool<T>(Vec<T>);

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool(Vec::new())
    }
}

impl<T: Default> Pool<T> {
    /// Takes `items` for reuse, leaving the vector empty.
    pub(super) fn keep(&mut self, items: &mut Vec<T>) {
        self.0.append(items);
        self.0.truncate(MAX_SPARES);
    }

    /// Replaces the entries of `list` with `n` entries made by `reset` from spare ones (or from
    /// defaults when there are none left).
    fn refill(&mut self, list: &mut Vec<T>, n: usize, reset: impl Fn(T) -> T) {
        self.keep(list);
        list.extend((0..n).map(|_| reset(self.0.pop().unwrap_or_default())));
    }
}

/// An empty NIC entry that keeps `old`'s name buffer.
fn reset_nic(old: NicStats) -> NicStats {
    let mut name = old.name;
    name.clear();
    NicStats {
        name,
        ..NicStats::default()
    }
}

/// An empty disk entry that keeps `old`'s name buffer and, as `Some("")`, its path buffer:
/// [`Layout::apply`] sets the path.
fn reset_disk(old: DiskStats) -> DiskStats {
    let (mut name, mut path) = (old.name, old.path);
    name.clear();
    if let Some(p) = &mut path {
        p.clear();
    }
    DiskStats {
        name,
        path,
        ..DiskStats::default()
    }
}

/// A device's name from its parameter, or `<kind><libvirt index>` when it has none (or an
/// empty one, or one that is not a string).
fn set_name(name: &mut String, param: Option<RawParam<'_>>, kind: &str, index: u16) {
    name.clear();
    if let Some(s) = param.and_then(|p| p.as_str()) {
        name.push_str(&s);
    }
    if name.is_empty() {
        name.push_str(kind);
        name.push_str(itoa::Buffer::new().format(index));
    }
}

/// No parameter: the field is left as it is.
const NO_PARAM: u32 = u32::MAX;

/// Which parameter (by position) fills a device's fields.
#[derive(Debug, Clone)]
struct DeviceSources<const N: usize> {
    name: u32,
    path: u32,
    counters: [u32; N],
}

impl<const N: usize> Default for DeviceSources<N> {
    fn default() -> Self {
        DeviceSources {
            name: NO_PARAM,
            path: NO_PARAM,
            counters: [NO_PARAM; N],
        }
    }
}

/// Which parameter (by position) fills each field of a sample: worked out when a layout is
/// built, so that applying it reads only the parameters vmtel uses, with no branch on what each
/// one is. Where several parameters have the same name, the last one counts.
#[derive(Debug, Clone)]
struct Sources {
    state: u32,
    cpu: [u32; 3],
    mem: [u32; MEM_KEYS.len()],
    vcpu_current: u32,
    vcpu_maximum: u32,
    /// Every `vcpu.N.delay`, summed.
    delays: Vec<u32>,
    nics: Vec<DeviceSources<{ NIC_KEYS.len() }>>,
    disks: Vec<DeviceSources<{ DISK_KEYS.len() }>>,
}

impl Sources {
    fn new(targets: &[Target], nics: usize, disks: usize) -> Sources {
        let mut s = Sources {
            state: NO_PARAM,
            cpu: [NO_PARAM; 3],
            mem: [NO_PARAM; MEM_KEYS.len()],
            vcpu_current: NO_PARAM,
            vcpu_maximum: NO_PARAM,
            delays: Vec::new(),
            nics: vec![DeviceSources::default(); nics],
            disks: vec![DeviceSources::default(); disks],
        };
        for (i, t) in targets.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(NO_PARAM);
            let slot = match *t {
                Target::Skip => None,
                Target::State => Some(&mut s.state),
                Target::CpuTime => s.cpu.get_mut(0),
                Target::CpuUser => s.cpu.get_mut(1),
                Target::CpuSystem => s.cpu.get_mut(2),
                Target::Mem(k) => s.mem.get_mut(usize::from(k)),
                Target::VcpuCurrent => Some(&mut s.vcpu_current),
                Target::VcpuMaximum => Some(&mut s.vcpu_maximum),
                Target::VcpuDelay => {
                    s.delays.push(i);
                    None
                }
                Target::NicName(at) => s.nics.get_mut(usize::from(at)).map(|d| &mut d.name),
                Target::Nic(at, k) => s
                    .nics
                    .get_mut(usize::from(at))
                    .and_then(|d| d.counters.get_mut(usize::from(k))),
                Target::DiskName(at) => s.disks.get_mut(usize::from(at)).map(|d| &mut d.name),
                Target::DiskPath(at) => s.disks.get_mut(usize::from(at)).map(|d| &mut d.path),
                Target::Disk(at, k) => s
                    .disks
                    .get_mut(usize::from(at))
                    .and_then(|d| d.counters.get_mut(usize::from(k))),
            };
            if let Some(slot) = slot {
                *slot = i;
            }
        }
        s
    }
}

fn scalar_target(g: Groups, key: &str) -> Target {
    match g {
        Groups::STATE if key == "state" => Target::State,
        Groups::CPU => match key {
            "time" => Target::CpuTime,
            "user" => Target::CpuUser,
            "system" => Target::CpuSystem,
            _ => Target::Skip,
        },
        Groups::BALLOON => MEM_KEYS
            .iter()
            .position(|k| *k == key)
            .map_or(Target::Skip, |i| Target::Mem(i as u8)),
        Groups::VCPU => match key {
            "current" => Target::VcpuCurrent,
            "maximum" => Target::VcpuMaximum,
            _ => match indexed(key) {
                Some((_, "delay")) => Target::VcpuDelay,
                _ => Target::Skip,
            },
        },
        _ => Target::Skip,
    }
}

fn device_target(nic: bool, at: u16, key: &str) -> Target {
    if nic {
        match key {
            "name" => Target::NicName(at),
            _ => NIC_KEYS
                .iter()
                .position(|k| *k == key)
                .map_or(Target::Skip, |i| Target::Nic(at, i as u8)),
        }
    } else {
        match key {
            "name" => Target::DiskName(at),
            "path" => Target::DiskPath(at),
            _ => DISK_KEYS
                .iter()
                .position(|k| *k == key)
                .map_or(Target::Skip, |i| Target::Disk(at, i as u8)),
        }
    }
}
