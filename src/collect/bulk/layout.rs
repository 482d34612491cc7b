//! Parameter layouts: where each parameter of a record goes, worked out once per shape.
//!
//! libvirt returns a domain's parameters with the same names in the same order cycle after
//! cycle (and VMs with the same number of vCPUs, NICs and disks share one order), until a device
//! is added or removed. A [`Layout`] is the parsed form of one such name list: for parameter `i`,
//! the field it fills ([`Target`]). Applying a layout costs a few word comparisons per name (to
//! check the record still has that shape, see [`Names`]) and one store per value; the names are
//! parsed only when a new shape appears.

use super::super::ffi::RawParam;
use super::names::Names;
use super::Groups;
use crate::model::{DiskStats, DomainSample, MemoryStats, NicStats};

/// Highest device index accepted: a bogus index cannot make vmtel allocate without limit.
const MAX_DEVICES: usize = 4096;

/// `balloon.<key>` names, in the order of [`mem_field`].
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

/// `net.N.<key>` counter names, in the order of [`nic_field`].
const NIC_KEYS: [&str; 8] = [
    "rx.bytes", "rx.pkts", "rx.errs", "rx.drop", "tx.bytes", "tx.pkts", "tx.errs", "tx.drop",
];

/// `block.N.<key>` counter names, in the order of [`disk_field`].
const DISK_KEYS: [&str; 5] = ["rd.reqs", "rd.bytes", "wr.reqs", "wr.bytes", "errors"];

fn mem_field(m: &mut MemoryStats, k: u8) -> &mut Option<u64> {
    match k {
        0 => &mut m.current,
        1 => &mut m.maximum,
        2 => &mut m.rss,
        3 => &mut m.available,
        4 => &mut m.usable,
        5 => &mut m.unused,
        6 => &mut m.swap_in,
        7 => &mut m.swap_out,
        8 => &mut m.major_fault,
        9 => &mut m.minor_fault,
        _ => &mut m.disk_caches,
    }
}

fn nic_field(n: &mut NicStats, k: u8) -> &mut Option<u64> {
    match k {
        0 => &mut n.rx_bytes,
        1 => &mut n.rx_pkts,
        2 => &mut n.rx_errs,
        3 => &mut n.rx_drop,
        4 => &mut n.tx_bytes,
        5 => &mut n.tx_pkts,
        6 => &mut n.tx_errs,
        _ => &mut n.tx_drop,
    }
}

fn disk_field(d: &mut DiskStats, k: u8) -> &mut Option<u64> {
    match k {
        0 => &mut d.rd_reqs,
        1 => &mut d.rd_bytes,
        2 => &mut d.wr_reqs,
        3 => &mut d.wr_bytes,
        _ => &mut d.errors,
    }
}

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
    targets: Vec<Target>,
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
            .collect();
        Layout {
            names: Names::new(&names),
            targets,
            groups,
            nic_index,
            disk_index,
            cacheable,
            used: 0,
        }
    }

    /// Number of parameters.
    pub(super) fn len(&self) -> usize {
        self.targets.len()
    }

    /// True when `params` have exactly this layout's names, in order.
    pub(super) fn matches<'a>(&self, params: impl ExactSizeIterator<Item = RawParam<'a>>) -> bool {
        self.names.matches(params)
    }

    /// Writes the values of `params` (which must match this layout) into `sample`: only what
    /// the record has; the NIC and disk lists are replaced only when their group is present.
    pub(super) fn apply<'a>(
        &self,
        sample: &mut DomainSample,
        params: impl Iterator<Item = RawParam<'a>>,
    ) {
        if self.groups.contains(Groups::INTERFACE) {
            sample.nics.clear();
            sample
                .nics
                .resize_with(self.nic_index.len(), NicStats::default);
        }
        if self.groups.contains(Groups::BLOCK) {
            sample.disks.clear();
            sample
                .disks
                .resize_with(self.disk_index.len(), DiskStats::default);
        }
        let mut delay_sum: Option<u64> = None;
        for (p, t) in params.zip(&self.targets) {
            match *t {
                Target::Skip => {}
                Target::State => sample.state = p.as_i64(),
                Target::CpuTime => sample.cpu.time = p.as_u64(),
                Target::CpuUser => sample.cpu.user = p.as_u64(),
                Target::CpuSystem => sample.cpu.system = p.as_u64(),
                Target::Mem(k) => *mem_field(&mut sample.mem, k) = p.as_u64(),
                Target::VcpuCurrent => {
                    sample.vcpu.current = p.as_u64().and_then(|v| u32::try_from(v).ok());
                }
                Target::VcpuMaximum => {
                    sample.vcpu.maximum = p.as_u64().and_then(|v| u32::try_from(v).ok());
                }
                Target::VcpuDelay => {
                    if let Some(d) = p.as_u64() {
                        delay_sum = Some(delay_sum.unwrap_or(0).saturating_add(d));
                    }
                }
                Target::NicName(at) => {
                    if let Some(n) = sample.nics.get_mut(usize::from(at)) {
                        n.name.clear();
                        n.name.push_str(&p.as_str().unwrap_or_default());
                    }
                }
                Target::Nic(at, k) => {
                    if let Some(n) = sample.nics.get_mut(usize::from(at)) {
                        *nic_field(n, k) = p.as_u64();
                    }
                }
                Target::DiskName(at) => {
                    if let Some(d) = sample.disks.get_mut(usize::from(at)) {
                        d.name.clear();
                        d.name.push_str(&p.as_str().unwrap_or_default());
                    }
                }
                Target::DiskPath(at) => {
                    if let Some(d) = sample.disks.get_mut(usize::from(at)) {
                        d.path = p.as_str().map(|s| s.into_owned());
                    }
                }
                Target::Disk(at, k) => {
                    if let Some(d) = sample.disks.get_mut(usize::from(at)) {
                        *disk_field(d, k) = p.as_u64();
                    }
                }
            }
        }
        if delay_sum.is_some() {
            sample.vcpu.delay_sum = delay_sum;
        }
        if self.groups.contains(Groups::INTERFACE) {
            for (n, idx) in sample.nics.iter_mut().zip(&self.nic_index) {
                if n.name.is_empty() {
                    n.name = format!("net{idx}");
                }
            }
        }
        if self.groups.contains(Groups::BLOCK) {
            for (d, idx) in sample.disks.iter_mut().zip(&self.disk_index) {
                if d.name.is_empty() {
                    d.name = format!("block{idx}");
                }
            }
        }
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
