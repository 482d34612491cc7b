//! The data model shared by every stage: what one collection cycle knows about one VM.
//!
//! Every value is an `Option`: `None` means "the source did not provide it" (a group the
//! driver lacks, a `-1` from QEMU, a device call that failed). Encoders omit `None` values;
//! they are never written as 0.

/// All VMs of one host, sampled in one cycle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSample {
    /// The hypervisor's host name (from libvirt, or the source's `host` override).
    pub host: String,
    /// Wall-clock time of the cycle, nanoseconds since the Unix epoch. One per host per cycle.
    pub timestamp_ns: i64,
    /// The VMs that were active (running or paused) at that time.
    pub domains: Vec<DomainSample>,
}

/// Everything one cycle learned about one VM.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainSample {
    /// libvirt domain name.
    pub name: String,
    /// libvirt domain UUID, lower-case hyphenated.
    pub uuid: String,
    /// libvirt domain ID (`VMID`), present for active domains.
    pub id: Option<u32>,
    /// Monotonic time the values were read, in nanoseconds since an arbitrary origin. Only
    /// differences between two samples of the same process are meaningful.
    pub mono_ns: u64,
    /// `virDomainState` code (1 running, 3 paused, 5 shut off, ...).
    pub state: Option<i64>,
    /// CPU time of the whole domain.
    pub cpu: CpuStats,
    /// Virtual CPUs.
    pub vcpu: VcpuStats,
    /// Memory and guest balloon statistics.
    pub mem: MemoryStats,
    /// One entry per network interface.
    pub nics: Vec<NicStats>,
    /// One entry per disk.
    pub disks: Vec<DiskStats>,
}

/// A compact key for a VM: its UUID as 128 bits (`8c1f…-…` parsed), or, for a string that is not
/// a UUID, two 64-bit hashes of it. Per-VM state is kept under this key rather than the
/// 36-character string.
pub fn uuid_key(uuid: &str) -> u128 {
    use std::hash::{Hash, Hasher};
    if let Some(v) = parse_uuid(uuid.as_bytes()) {
        return v;
    }
    let hash = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        (salt, uuid).hash(&mut h);
        u128::from(h.finish())
    };
    (hash(0) << 64) | hash(1)
}

/// The 128 bits of a UUID in its 36-character form (`8-4-4-4-12` hex digits, either case).
fn parse_uuid(s: &[u8]) -> Option<u128> {
    if s.len() != 36 {
        return None;
    }
    uuid::Uuid::try_parse_ascii(s).ok().map(|u| u.as_u128())
}

impl DomainSample {
    /// Empties the sample for reuse by another VM, keeping its allocations (the name, UUID and
    /// device lists), so a collector can recycle samples from cycle to cycle.
    pub fn recycle(&mut self) {
        self.name.clear();
        self.uuid.clear();
        self.id = None;
        self.mono_ns = 0;
        self.state = None;
        self.cpu = CpuStats::default();
        self.vcpu = VcpuStats::default();
        self.mem = MemoryStats::default();
        self.nics.clear();
        self.disks.clear();
    }
}

/// CPU time in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Total CPU time (`cpu.time`).
    pub time: Option<u64>,
    /// User CPU time (`cpu.user`).
    pub user: Option<u64>,
    /// System CPU time (`cpu.system`).
    pub system: Option<u64>,
}

/// Virtual CPU counts and wait times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VcpuStats {
    /// Number of vCPUs currently online (`vcpu.current`).
    pub current: Option<u32>,
    /// Maximum number of vCPUs (`vcpu.maximum`).
    pub maximum: Option<u32>,
    /// Sum over all vCPUs of the time spent waiting for a host CPU (`vcpu.N.delay`, ns):
    /// the steal time the guest sees.
    pub delay_sum: Option<u64>,
}

/// Memory in KiB and guest memory statistics, as the balloon driver reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Maximum memory (`balloon.maximum`, KiB).
    pub maximum: Option<u64>,
    /// Current balloon size (`balloon.current`, KiB).
    pub current: Option<u64>,
    /// Resident set size of the QEMU process (`balloon.rss`, KiB).
    pub rss: Option<u64>,
    /// Memory the guest sees as total (`balloon.available`, KiB).
    pub available: Option<u64>,
    /// Memory usable by the guest without swapping (`balloon.usable`, KiB).
    pub usable: Option<u64>,
    /// Memory completely unused by the guest (`balloon.unused`, KiB).
    pub unused: Option<u64>,
    /// Swapped in (`balloon.swap_in`, KiB).
    pub swap_in: Option<u64>,
    /// Swapped out (`balloon.swap_out`, KiB).
    pub swap_out: Option<u64>,
    /// Major page faults (`balloon.major_fault`, count).
    pub major_fault: Option<u64>,
    /// Minor page faults (`balloon.minor_fault`, count).
    pub minor_fault: Option<u64>,
    /// Disk caches that can be reclaimed (`balloon.disk_caches`, KiB).
    pub disk_caches: Option<u64>,
}

/// Counters of one network interface, from the guest's point of view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NicStats {
    /// Target device name on the host (`vnet0`, `tap1`), or a positional `net<N>` name when the
    /// interface has none.
    pub name: String,
    /// MAC address, where known (from the domain XML).
    pub mac: Option<String>,
    /// Bytes received.
    pub rx_bytes: Option<u64>,
    /// Packets received.
    pub rx_pkts: Option<u64>,
    /// Receive errors.
    pub rx_errs: Option<u64>,
    /// Received packets dropped.
    pub rx_drop: Option<u64>,
    /// Bytes transmitted.
    pub tx_bytes: Option<u64>,
    /// Packets transmitted.
    pub tx_pkts: Option<u64>,
    /// Transmit errors.
    pub tx_errs: Option<u64>,
    /// Transmitted packets dropped.
    pub tx_drop: Option<u64>,
}

/// Counters of one disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Target device name in the guest (`vda`, `sdb`), or a positional `block<N>` name.
    pub name: String,
    /// Source path on the host, where known.
    pub path: Option<String>,
    /// Read requests.
    pub rd_reqs: Option<u64>,
    /// Bytes read.
    pub rd_bytes: Option<u64>,
    /// Write requests.
    pub wr_reqs: Option<u64>,
    /// Bytes written.
    pub wr_bytes: Option<u64>,
    /// I/O errors.
    pub errors: Option<u64>,
}

/// What one cycle learned about the hypervisor itself (`vm_host`): its capacity
/// (`virNodeGetInfo`) and what it uses (`virNodeGetCPUStats`, `virNodeGetMemoryStats`, or
/// `virNodeGetFreeMemory` where a driver lacks memory statistics).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeStats {
    /// Logical CPUs online.
    pub cpus: Option<u64>,
    /// Expected CPU frequency, MHz (0 from libvirt means unknown and is left out).
    pub mhz: Option<u64>,
    /// Physical memory, KiB.
    pub mem_total: Option<u64>,
    /// Free memory, KiB.
    pub mem_free: Option<u64>,
    /// Memory in the kernel's buffers, KiB.
    pub mem_buffers: Option<u64>,
    /// Memory in the page cache, KiB.
    pub mem_cached: Option<u64>,
    /// CPU time in user mode, summed over the host's CPUs, ns.
    pub cpu_user: Option<u64>,
    /// CPU time in the kernel, summed over the host's CPUs, ns.
    pub cpu_kernel: Option<u64>,
    /// Idle CPU time, summed over the host's CPUs, ns.
    pub cpu_idle: Option<u64>,
    /// CPU time waiting for I/O, summed over the host's CPUs, ns.
    pub cpu_iowait: Option<u64>,
}

/// Rates and utilisation derived from two samples of the same VM (`vm_features`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Features {
    /// Total CPU time as a share of the VM's vCPUs, percent.
    pub cpu_pct: Option<f64>,
    /// User CPU time, percent of the VM's vCPUs.
    pub cpu_usr_pct: Option<f64>,
    /// System CPU time, percent of the VM's vCPUs.
    pub cpu_sys_pct: Option<f64>,
    /// Time vCPUs waited for a host CPU (steal), percent of the VM's vCPUs.
    pub cpu_steal_pct: Option<f64>,
    /// Guest memory in use, percent of what the guest sees.
    pub mem_used_pct: Option<f64>,
    /// Received bytes per second over all NICs.
    pub net_rx_bps: Option<f64>,
    /// Transmitted bytes per second over all NICs.
    pub net_tx_bps: Option<f64>,
    /// Received packets per second over all NICs.
    pub net_rx_pps: Option<f64>,
    /// Transmitted packets per second over all NICs.
    pub net_tx_pps: Option<f64>,
    /// Bytes read per second over all disks.
    pub disk_rd_bps: Option<f64>,
    /// Bytes written per second over all disks.
    pub disk_wr_bps: Option<f64>,
    /// Read requests per second over all disks.
    pub disk_rd_iops: Option<f64>,
    /// Write requests per second over all disks.
    pub disk_wr_iops: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A UUID string's key is its 128 bits, whatever the case of its digits.
        #[test]
        fn a_uuid_is_keyed_by_its_bits(v in any::<u128>(), upper in any::<bool>()) {
            let h = format!("{v:032x}");
            let s = format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]);
            let s = if upper { s.to_uppercase() } else { s };
            prop_assert_eq!(uuid_key(&s), v);
        }

        /// Any other string gets a key of its own.
        #[test]
        fn other_strings_are_hashed(a in ".{0,40}", b in ".{0,40}") {
            prop_assume!(parse_uuid(a.as_bytes()).is_none() && parse_uuid(b.as_bytes()).is_none());
            prop_assert_eq!(uuid_key(&a) == uuid_key(&b), a == b);
        }
    }

    #[test]
    fn near_uuids_are_not_parsed() {
        let ok = "8c1f0e2a-1b2c-4d5e-8f90-0123456789ab";
        assert!(parse_uuid(ok.as_bytes()).is_some());
        for bad in [
            "8c1f0e2a-1b2c-4d5e-8f90-0123456789a",   // 35 characters
            "8c1f0e2a-1b2c-4d5e-8f90-0123456789abc", // 37
            "8c1f0e2a-1b2c-4d5e-8f90-0123456789ag",  // not hex
            "8c1f0e2a11b2c-4d5e-8f90-0123456789ab",  // 33 digits
            "8c1f0e2a--b2c-4d5e-8f90-0123456789ab",  // 31 digits
            "8c1f0e2-a1b2c-4d5e-8f90-0123456789ab",  // a hyphen out of place
        ] {
            assert_eq!(parse_uuid(bad.as_bytes()), None, "{bad}");
        }
    }
}
