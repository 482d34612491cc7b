//! Maps the typed parameters of one bulk stats record (`virConnectGetAllDomainStats`) onto a
//! [`DomainSample`].
//!
//! Keys follow libvirt's documented names (`state.state`, `cpu.time`, `balloon.rss`,
//! `vcpu.N.delay`, `net.N.rx.bytes`, `block.N.wr.reqs`, ...). Unknown keys are ignored, negative
//! values (QEMU's `-1` for "unsupported") are treated as missing, and gaps in the `net.N` and
//! `block.N` indices (an interface with no statistics) are skipped.

use super::ffi::{Param, Value};
use crate::model::{DiskStats, DomainSample, NicStats};

/// Bit set of libvirt stats groups, using libvirt's own `VIR_DOMAIN_STATS_*` bit values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Groups(pub u32);

impl Groups {
    /// `state`: state and reason.
    pub const STATE: Groups = Groups(virt::sys::VIR_DOMAIN_STATS_STATE);
    /// `cpu-total`: total, user and system CPU time.
    pub const CPU: Groups = Groups(virt::sys::VIR_DOMAIN_STATS_CPU_TOTAL);
    /// `balloon`: current and maximum memory and guest memory statistics.
    pub const BALLOON: Groups = Groups(virt::sys::VIR_DOMAIN_STATS_BALLOON);
    /// `vcpu`: vCPU counts and per-vCPU times.
    pub const VCPU: Groups = Groups(virt::sys::VIR_DOMAIN_STATS_VCPU);
    /// `interface`: per-NIC counters.
    pub const INTERFACE: Groups = Groups(virt::sys::VIR_DOMAIN_STATS_INTERFACE);
    /// `block`: per-disk counters.
    pub const BLOCK: Groups = Groups(virt::sys::VIR_DOMAIN_STATS_BLOCK);
    /// Every group vmtel asks for.
    pub const ALL: Groups = Groups(
        Self::STATE.0
            | Self::CPU.0
            | Self::BALLOON.0
            | Self::VCPU.0
            | Self::INTERFACE.0
            | Self::BLOCK.0,
    );
    /// No group.
    pub const NONE: Groups = Groups(0);

    /// True if every group of `other` is in `self`.
    pub fn contains(self, other: Groups) -> bool {
        self.0 & other.0 == other.0
    }

    /// Groups in `self` or `other`.
    pub fn union(self, other: Groups) -> Groups {
        Groups(self.0 | other.0)
    }

    /// Groups in `self` but not in `other`.
    pub fn minus(self, other: Groups) -> Groups {
        Groups(self.0 & !other.0)
    }

    /// libvirt's names of the groups in `self`, for messages.
    pub fn names(self) -> Vec<&'static str> {
        [
            (Self::STATE, "state"),
            (Self::CPU, "cpu-total"),
            (Self::BALLOON, "balloon"),
            (Self::VCPU, "vcpu"),
            (Self::INTERFACE, "interface"),
            (Self::BLOCK, "block"),
        ]
        .into_iter()
        .filter(|(g, _)| self.contains(*g))
        .map(|(_, n)| n)
        .collect()
    }
}

/// Splits `net.3.rx.bytes` into (3, "rx.bytes").
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

/// Gets or creates slot `idx` of a device table, bounding the index so a bogus one cannot make
/// vmtel allocate without limit.
fn slot<T: Default>(table: &mut Vec<Option<T>>, idx: usize) -> Option<&mut T> {
    const MAX_DEVICES: usize = 4096;
    if idx >= MAX_DEVICES {
        return None;
    }
    if table.len() <= idx {
        table.resize_with(idx + 1, || None);
    }
    Some(table[idx].get_or_insert_with(T::default))
}

/// Fills `sample` from the parameters of one record and returns the groups that were present.
pub fn apply<'a>(sample: &mut DomainSample, params: impl Iterator<Item = Param<'a>>) -> Groups {
    let mut seen = Groups::NONE;
    let mut nics: Vec<Option<NicStats>> = Vec::new();
    let mut disks: Vec<Option<DiskStats>> = Vec::new();
    let mut delay_sum: Option<u64> = None;
    for Param { name, value } in params {
        let Some(dot) = name.bytes().position(|b| b == b'.') else {
            continue;
        };
        let (group, rest) = (&name[..dot], &name[dot + 1..]);
        let u = value.as_u64();
        match group {
            "state" => {
                seen = seen.union(Groups::STATE);
                if rest == "state" {
                    sample.state = value.as_i64();
                }
            }
            "cpu" => {
                seen = seen.union(Groups::CPU);
                match rest {
                    "time" => sample.cpu.time = u,
                    "user" => sample.cpu.user = u,
                    "system" => sample.cpu.system = u,
                    _ => {}
                }
            }
            "balloon" => {
                seen = seen.union(Groups::BALLOON);
                let m = &mut sample.mem;
                match rest {
                    "current" => m.current = u,
                    "maximum" => m.maximum = u,
                    "rss" => m.rss = u,
                    "available" => m.available = u,
                    "usable" => m.usable = u,
                    "unused" => m.unused = u,
                    "swap_in" => m.swap_in = u,
                    "swap_out" => m.swap_out = u,
                    "major_fault" => m.major_fault = u,
                    "minor_fault" => m.minor_fault = u,
                    "disk_caches" => m.disk_caches = u,
                    _ => {}
                }
            }
            "vcpu" => {
                seen = seen.union(Groups::VCPU);
                match rest {
                    "current" => sample.vcpu.current = u.and_then(|v| u32::try_from(v).ok()),
                    "maximum" => sample.vcpu.maximum = u.and_then(|v| u32::try_from(v).ok()),
                    _ => {
                        if let Some((_, "delay")) = indexed(rest) {
                            if let Some(d) = u {
                                delay_sum = Some(delay_sum.unwrap_or(0).saturating_add(d));
                            }
                        }
                    }
                }
            }
            "net" => {
                seen = seen.union(Groups::INTERFACE);
                let Some((idx, key)) = indexed(rest) else {
                    continue;
                };
                let Some(nic) = slot(&mut nics, idx) else {
                    continue;
                };
                match key {
                    "name" => nic.name = str_value(&value),
                    "rx.bytes" => nic.rx_bytes = u,
                    "rx.pkts" => nic.rx_pkts = u,
                    "rx.errs" => nic.rx_errs = u,
                    "rx.drop" => nic.rx_drop = u,
                    "tx.bytes" => nic.tx_bytes = u,
                    "tx.pkts" => nic.tx_pkts = u,
                    "tx.errs" => nic.tx_errs = u,
                    "tx.drop" => nic.tx_drop = u,
                    _ => {}
                }
            }
            "block" => {
                seen = seen.union(Groups::BLOCK);
                let Some((idx, key)) = indexed(rest) else {
                    continue;
                };
                let Some(disk) = slot(&mut disks, idx) else {
                    continue;
                };
                match key {
                    "name" => disk.name = str_value(&value),
                    "path" => disk.path = value.as_str().map(str::to_owned),
                    "rd.reqs" => disk.rd_reqs = u,
                    "rd.bytes" => disk.rd_bytes = u,
                    "wr.reqs" => disk.wr_reqs = u,
                    "wr.bytes" => disk.wr_bytes = u,
                    "errors" => disk.errors = u,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if delay_sum.is_some() {
        sample.vcpu.delay_sum = delay_sum;
    }
    if seen.contains(Groups::INTERFACE) {
        sample.nics = compact(nics, "net", |n| &mut n.name);
    }
    if seen.contains(Groups::BLOCK) {
        sample.disks = compact(disks, "block", |d| &mut d.name);
    }
    seen
}

fn str_value(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// Drops empty slots and names unnamed devices after their index (`net2`).
fn compact<T>(table: Vec<Option<T>>, prefix: &str, name: impl Fn(&mut T) -> &mut String) -> Vec<T> {
    table
        .into_iter()
        .enumerate()
        .filter_map(|(i, d)| {
            let mut d = d?;
            let n = name(&mut d);
            if n.is_empty() {
                *n = format!("{prefix}{i}");
            }
            Some(d)
        })
        .collect()
}

#[cfg(test)]
mod tests;
