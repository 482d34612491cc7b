//! Derive: rates and utilisation (`vm_features`) from two consecutive samples of the same VM.
//!
//! A [`Deriver`] keeps, per VM (by UUID), the counters of the previous sample, compactly: about
//! 260 to 290 bytes per VM with up to four devices (a 232-byte slot and its index entry), in two
//! large allocations for the whole fleet, nothing allocated per VM. A rate is
//! computed only from a pair of readings that are comparable: the same VMID (a destroyed and
//! restarted VM gets a new one), a positive time step, and a counter that did not go backwards.
//! Anything else yields no value for that interval, never a negative number or a spike. Per-NIC
//! and per-disk counters are compared device by device (by name), so hot-plugged or removed
//! devices do not distort the totals.

use std::collections::HashMap;

use crate::model::{uuid_key, DiskStats, DomainSample, Features, HostSample, NicStats};

/// How many updates a VM may be missing from before its state is dropped.
const KEEP_UNSEEN: u64 = 3;

/// The four counters a device contributes to rates, in a fixed order.
type Counters = [Option<u64>; 4];

fn nic_counters(n: &NicStats) -> Counters {
    [n.rx_bytes, n.tx_bytes, n.rx_pkts, n.tx_pkts]
}

fn disk_counters(d: &DiskStats) -> Counters {
    [d.rd_bytes, d.wr_bytes, d.rd_reqs, d.wr_reqs]
}

/// Counters as they are kept between cycles: values and a presence bit each (33 bytes rather
/// than 64).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Kept {
    values: [u64; 4],
    present: u8,
}

impl Kept {
    fn new(c: Counters) -> Kept {
        let mut k = Kept::default();
        for (i, v) in c.iter().enumerate() {
            if let Some(v) = v {
                k.values[i] = *v;
                k.present |= 1 << i;
            }
        }
        k
    }

    fn get(&self, i: usize) -> Option<u64> {
        (self.present & (1 << i) != 0).then(|| self.values[i])
    }
}

/// The bits of a [`PrevDevice`] tag that hold the hash of the device name; the top bits hold the
/// presence of its four counters and whether it is a NIC.
const NAME_BITS: u64 = (1 << 59) - 1;
const NIC_BIT: u64 = 1 << 59;
const PRESENT_SHIFT: u32 = 60;

/// A 59-bit hash of a device name: a VM's previous device counters are matched by name, and
/// keeping the hash instead of the name saves an allocation per device. Two names of one VM
/// colliding is a 2⁻⁵⁹ event.
fn name_key(name: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x766d_7465_6c00).hash_one(name) & NAME_BITS
}

/// One device's previous counters (40 bytes): the name hash, NIC flag and presence bits packed
/// in one word, then the four counters.
#[derive(Debug, Default, Clone, Copy)]
struct PrevDevice {
    tag: u64,
    values: [u64; 4],
}

impl PrevDevice {
    fn new(name: &str, nic: bool, counters: Counters) -> PrevDevice {
        let k = Kept::new(counters);
        let nic = if nic { NIC_BIT } else { 0 };
        PrevDevice {
            tag: name_key(name) | nic | (u64::from(k.present) << PRESENT_SHIFT),
            values: k.values,
        }
    }

    fn is(&self, name: u64, nic: bool) -> bool {
        self.tag & NAME_BITS == name && (self.tag & NIC_BIT != 0) == nic
    }

    fn counters(&self) -> Kept {
        Kept {
            values: self.values,
            // Four bits: fits.
            present: (self.tag >> PRESENT_SHIFT) as u8,
        }
    }
}

/// Devices kept in a VM's slot itself; a VM with more keeps the rest in a vector.
const INLINE_DEVICES: usize = 4;

/// What a VM's previous sample left behind.
/// (232 bytes: a slot holds this for every VM of the fleet.)
#[derive(Debug, Default)]
struct Prev {
    id: Option<u32>,
    mono_ns: u64,
    /// The CPU counters (see [`Prev::cpu`]) and their presence bits.
    cpu_values: [u64; 4],
    cpu_present: u8,
    /// Generation of the last update; 0 for a free slot.
    seen: u64,
    inline: [PrevDevice; INLINE_DEVICES],
    count: u8,
    /// Devices beyond the inline ones. Rare, so boxed: a slot pays 8 bytes for it instead of a
    /// vector's 24, and a VM that has them reuses the vector every cycle.
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<PrevDevice>>>,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Prev>() <= 232);

impl Prev {
    fn cpu(&self) -> Kept {
        Kept {
            values: self.cpu_values,
            present: self.cpu_present,
        }
    }

    fn devices(&self) -> impl Iterator<Item = &PrevDevice> {
        let n = usize::from(self.count).min(INLINE_DEVICES);
        let more = self.more.as_deref().map(Vec::as_slice).unwrap_or_default();
        self.inline[..n].iter().chain(more.iter())
    }

    fn set_devices(&mut self, devices: impl Iterator<Item = PrevDevice>) {
        self.count = 0;
        let mut more = self.more.take();
        if let Some(m) = more.as_mut() {
            m.clear();
        }
        for d in devices {
            match self.inline.get_mut(usize::from(self.count)) {
                Some(slot) => {
                    *slot = d;
                    self.count += 1;
                }
                None => more.get_or_insert_with(Box::default).push(d),
            }
        }
        self.more = more.filter(|m| !m.is_empty());
    }
}

/// Per-VM state for derived values. One per source.
///
/// The VMs' states live in one vector of slots (freed slots are reused) found through an index
/// by UUID: the whole fleet's state is two allocations, which the allocator can keep compact,
/// rather than one or more small ones per VM scattered among each cycle's short-lived memory.
#[derive(Debug, Default)]
pub struct Deriver {
    /// UUID (as two words: 24-byte entries where a `u128` key would take 32) → slot.
    index: HashMap<[u64; 2], u32, foldhash::fast::RandomState>,
    slots: Vec<Prev>,
    free: Vec<u32>,
    generation: u64,
}

fn delta(now: Option<u64>, before: Option<u64>) -> Option<u64> {
    now?.checked_sub(before?)
}

/// Per-field sums of counter deltas over devices present in both samples. A field is `None`
/// when no device has both readings, or when any device's counter went backwards.
fn device_deltas<T>(
    now: &[T],
    before: &Prev,
    nic: bool,
    name: impl Fn(&T) -> &str,
    counters: impl Fn(&T) -> Counters,
) -> [Option<u64>; 4] {
    let mut out: [Option<u64>; 4] = [None; 4];
    let mut backwards = [false; 4];
    for dev in now {
        let key = name_key(name(dev));
        let Some(old) = before.devices().find(|d| d.is(key, nic)) else {
            continue;
        };
        let new = counters(dev);
        for k in 0..4 {
            if let (Some(a), Some(b)) = (new[k], old.counters().get(k)) {
                match a.checked_sub(b) {
                    Some(d) => out[k] = Some(out[k].unwrap_or(0).saturating_add(d)),
                    None => backwards[k] = true,
                }
            }
        }
    }
    for k in 0..4 {
        if backwards[k] {
            out[k] = None;
        }
    }
    out
}

impl Deriver {
    /// Creates an empty deriver.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of VMs whose previous sample is kept.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no VM state is kept.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Forgets every VM, e.g. after a reconnect, so that the next cycle emits no rates.
    pub fn reset(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.free.clear();
    }

    /// The slot of the VM with UUID key `key`, a new (empty) one if it has none.
    fn slot(&mut self, key: u128) -> &mut Prev {
        let key = [key as u64, (key >> 64) as u64];
        let next = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        let free = &mut self.free;
        let i = *self
            .index
            .entry(key)
            .or_insert_with(|| free.pop().unwrap_or(next));
        let i = i as usize;
        if i >= self.slots.len() {
            // Grow by a quarter, not double: the table is most of the deriver's memory.
            if self.slots.len() == self.slots.capacity() {
                self.slots.reserve_exact(self.slots.len() / 4 + 16);
            }
            self.slots.resize_with(i + 1, Prev::default);
        }
        &mut self.slots[i]
    }

    /// Computes the features of every VM in `host` against its previous sample and remembers
    /// this sample: one whole cycle. The result is parallel to `host.domains`.
    pub fn update(&mut self, host: &HostSample) -> Vec<Option<Features>> {
        let mut out = Vec::with_capacity(host.domains.len());
        self.begin_cycle();
        self.update_chunk(&host.domains, &mut out);
        self.end_cycle();
        out
    }

    /// Starts a cycle that arrives in chunks ([`Deriver::update_chunk`], then
    /// [`Deriver::end_cycle`]).
    pub fn begin_cycle(&mut self) {
        self.generation += 1;
    }

    /// Computes the features of `domains` (part of the current cycle) into `out` (cleared
    /// first; parallel to `domains`) and remembers these samples.
    pub fn update_chunk(&mut self, domains: &[DomainSample], out: &mut Vec<Option<Features>>) {
        if self.generation == 0 {
            // A slot's generation 0 means "free": a cycle always has a later one.
            self.generation = 1;
        }
        let generation = self.generation;
        out.clear();
        out.extend(domains.iter().map(|dom| {
            let prev = self.slot(uuid_key(&dom.uuid));
            let features = (prev.seen != 0).then(|| features(prev, dom)).flatten();
            remember(prev, dom, generation);
            features
        }));
    }

    /// Ends the current cycle: forgets VMs missing from the last few cycles (their slots are
    /// reused).
    pub fn end_cycle(&mut self) {
        let generation = self.generation;
        let (slots, free) = (&mut self.slots, &mut self.free);
        self.index.retain(|_, i| {
            let Some(p) = slots.get_mut(*i as usize) else {
                return false;
            };
            let keep = generation.saturating_sub(p.seen) < KEEP_UNSEEN;
            if !keep {
                *p = Prev::default();
                free.push(*i);
            }
            keep
        });
        // A fleet that shrank for good gives its slots back.
        while self.slots.last().is_some_and(|p| p.seen == 0) {
            self.slots.pop();
        }
        let len = self.slots.len();
        self.free.retain(|i| (*i as usize) < len);
        if self.slots.capacity() > 2 * len + 64 {
            self.slots.shrink_to_fit();
        }
    }
}

fn remember(prev: &mut Prev, dom: &DomainSample, generation: u64) {
    prev.id = dom.id;
    prev.mono_ns = dom.mono_ns;
    let cpu = Kept::new([
        dom.cpu.time,
        dom.cpu.user,
        dom.cpu.system,
        dom.vcpu.delay_sum,
    ]);
    prev.cpu_values = cpu.values;
    prev.cpu_present = cpu.present;
    let nics = dom
        .nics
        .iter()
        .map(|n| PrevDevice::new(&n.name, true, nic_counters(n)));
    let disks = dom
        .disks
        .iter()
        .map(|d| PrevDevice::new(&d.name, false, disk_counters(d)));
    prev.set_devices(nics.chain(disks));
    prev.seen = generation;
}

/// Features of `dom` against `prev`; `None` when the two samples are not comparable.
fn features(prev: &Prev, dom: &DomainSample) -> Option<Features> {
    if prev.id != dom.id || dom.mono_ns <= prev.mono_ns {
        return None;
    }
    let secs = (dom.mono_ns - prev.mono_ns) as f64 / 1e9;
    let per_sec = |d: Option<u64>| d.map(|d| d as f64 / secs);
    let cpus = dom.vcpu.current.filter(|&c| c > 0).map(f64::from);
    let cpu_pct = |now: Option<u64>, before: Option<u64>| {
        let d = delta(now, before)? as f64;
        Some(d / (secs * 1e9 * cpus?) * 100.0)
    };
    let net = device_deltas(&dom.nics, prev, true, |n| &n.name, nic_counters);
    let disk = device_deltas(&dom.disks, prev, false, |d| &d.name, disk_counters);
    let mem_used_pct = match (dom.mem.available, dom.mem.usable) {
        (Some(avail), Some(usable)) if avail > 0 && usable <= avail => {
            Some((avail - usable) as f64 / avail as f64 * 100.0)
        }
        _ => None,
    };
    Some(Features {
        cpu_pct: cpu_pct(dom.cpu.time, prev.cpu().get(0)),
        cpu_usr_pct: cpu_pct(dom.cpu.user, prev.cpu().get(1)),
        cpu_sys_pct: cpu_pct(dom.cpu.system, prev.cpu().get(2)),
        cpu_steal_pct: cpu_pct(dom.vcpu.delay_sum, prev.cpu().get(3)),
        mem_used_pct,
        net_rx_bps: per_sec(net[0]),
        net_tx_bps: per_sec(net[1]),
        net_rx_pps: per_sec(net[2]),
        net_tx_pps: per_sec(net[3]),
        disk_rd_bps: per_sec(disk[0]),
        disk_wr_bps: per_sec(disk[1]),
        disk_rd_iops: per_sec(disk[2]),
        disk_wr_iops: per_sec(disk[3]),
    })
}

#[cfg(test)]
mod tests;
