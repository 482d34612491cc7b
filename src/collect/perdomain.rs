//! The per-domain fallback: fills the groups a driver's bulk call does not return (the test
//! driver returns only `state`) from `virDomainGetInfo`, `virDomainGetCPUStats`,
//! `virDomainMemoryStats`, `virDomainInterfaceStats` and `virDomainBlockStats`.

use std::time::Instant;

use virt::domain::Domain;
use virt::error::{Error, ErrorNumber};
use virt::sys;

use super::bulk::Groups;
use super::device_cache::DeviceCache;
use super::devices::{parse_domain_xml, Devices};
use super::warn::Warnings;
use crate::model::{DiskStats, DomainSample, NicStats};

/// Converts libvirt's `-1` ("not supported") and other negatives to `None`.
fn nonneg(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

/// True when `e` says the domain is gone or stopped since the bulk call (destroyed, undefined
/// or shut down mid-cycle): not a failure worth a warning.
pub fn is_gone(e: &Error) -> bool {
    e.code()
        .is_any(vec![ErrorNumber::NoDomain, ErrorNumber::OperationInvalid])
}

/// Fills `missing` groups of `sample` with per-domain calls on `dom`.
pub fn fill(
    dom: &Domain,
    sample: &mut DomainSample,
    missing: Groups,
    cache: &mut DeviceCache,
    warn: &mut Warnings,
) {
    let uuid = sample.uuid.clone();
    let needs_info = missing.contains(Groups::STATE)
        || missing.contains(Groups::BALLOON)
        || missing.contains(Groups::VCPU)
        || missing.contains(Groups::CPU);
    if needs_info {
        match dom.info() {
            Ok(info) => {
                if missing.contains(Groups::STATE) {
                    sample.state = Some(i64::from(info.state.to_raw()));
                }
                if missing.contains(Groups::BALLOON) {
                    sample.mem.maximum = Some(info.max_mem);
                    sample.mem.current = Some(info.memory);
                }
                if missing.contains(Groups::VCPU) {
                    sample.vcpu.current = Some(info.nr_virt_cpu);
                }
                if missing.contains(Groups::CPU) {
                    sample.cpu.time = Some(info.cpu_time);
                }
            }
            Err(e) if is_gone(&e) => return,
            Err(e) => {
                warn.once(&format!("info:{uuid}"), || {
                    format!("virDomainGetInfo failed for VM {:?}: {e}", sample.name)
                });
            }
        }
    }
    if missing.contains(Groups::CPU) {
        match dom.cpu_stats(-1, 1, 0) {
            Ok(stats) => {
                if let Some(s) = stats.first() {
                    // GetInfo's cpuTime (what `virsh dominfo` shows) is kept when present.
                    sample.cpu.time = sample.cpu.time.or(s.cpu_time);
                    sample.cpu.user = s.user_time;
                    sample.cpu.system = s.system_time;
                }
            }
            Err(e) if is_gone(&e) => return,
            Err(e) => {
                warn.once(&format!("cpustats:{uuid}"), || {
                    format!("virDomainGetCPUStats failed for VM {:?}: {e}", sample.name)
                });
            }
        }
    }
    if missing.contains(Groups::BALLOON) {
        match dom.memory_stats(0) {
            Ok(stats) => {
                let m = &mut sample.mem;
                for s in stats {
                    let v = Some(s.val);
                    match s.tag {
                        sys::VIR_DOMAIN_MEMORY_STAT_SWAP_IN => m.swap_in = v,
                        sys::VIR_DOMAIN_MEMORY_STAT_SWAP_OUT => m.swap_out = v,
                        sys::VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT => m.major_fault = v,
                        sys::VIR_DOMAIN_MEMORY_STAT_MINOR_FAULT => m.minor_fault = v,
                        sys::VIR_DOMAIN_MEMORY_STAT_UNUSED => m.unused = v,
                        sys::VIR_DOMAIN_MEMORY_STAT_AVAILABLE => m.available = v,
                        sys::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON => m.current = v,
                        sys::VIR_DOMAIN_MEMORY_STAT_RSS => m.rss = v,
                        sys::VIR_DOMAIN_MEMORY_STAT_USABLE => m.usable = v,
                        sys::VIR_DOMAIN_MEMORY_STAT_DISK_CACHES => m.disk_caches = v,
                        _ => {}
                    }
                }
            }
            Err(e) if is_gone(&e) => return,
            Err(e) => {
                warn.once(&format!("memstats:{uuid}"), || {
                    format!("virDomainMemoryStats failed for VM {:?}: {e}", sample.name)
                });
            }
        }
    }
    if !(missing.contains(Groups::INTERFACE) || missing.contains(Groups::BLOCK)) {
        return;
    }
    let now = Instant::now();
    let read = if cache.is_fresh(&uuid, sample.id, now) {
        None
    } else {
        match read_devices(dom) {
            Ok(Some(d)) => Some(d),
            Ok(None) => return,
            Err(msg) => {
                warn.once(&format!("xml:{uuid}"), || {
                    format!("cannot read the device list of VM {:?}: {msg}", sample.name)
                });
                return;
            }
        }
    };
    // A list just read is used this cycle whatever the TTL (even 0).
    let devices = match &read {
        Some(d) => cache.put(&uuid, sample.id, now, d),
        None => match cache.get(&uuid, sample.id, now) {
            Some(list) => list,
            None => return,
        },
    };
    let mut stale = false;
    if missing.contains(Groups::INTERFACE) {
        sample.nics = Vec::with_capacity(devices.nics().len());
        for nic in devices.nics() {
            match dom.interface_stats(nic.target) {
                Ok(s) => sample.nics.push(NicStats {
                    name: nic.target.to_owned(),
                    mac: nic.mac.map(str::to_owned),
                    rx_bytes: nonneg(s.rx_bytes),
                    rx_pkts: nonneg(s.rx_packets),
                    rx_errs: nonneg(s.rx_errs),
                    rx_drop: nonneg(s.rx_drop),
                    tx_bytes: nonneg(s.tx_bytes),
                    tx_pkts: nonneg(s.tx_packets),
                    tx_errs: nonneg(s.tx_errs),
                    tx_drop: nonneg(s.tx_drop),
                }),
                Err(e) if is_gone(&e) => return,
                Err(e) => {
                    stale = true;
                    warn.once(&format!("nic:{uuid}:{}", nic.target), || {
                        format!(
                            "interface stats failed for VM {:?} NIC {:?}: {e}",
                            sample.name, nic.target
                        )
                    });
                }
            }
        }
    }
    if missing.contains(Groups::BLOCK) {
        sample.disks = Vec::with_capacity(devices.disks().len());
        for disk in devices.disks() {
            match dom.block_stats(disk.target) {
                Ok(s) => sample.disks.push(DiskStats {
                    name: disk.target.to_owned(),
                    path: disk.source.map(str::to_owned),
                    rd_reqs: nonneg(s.rd_req),
                    rd_bytes: nonneg(s.rd_bytes),
                    wr_reqs: nonneg(s.wr_req),
                    wr_bytes: nonneg(s.wr_bytes),
                    errors: nonneg(s.errs),
                }),
                Err(e) if is_gone(&e) => return,
                Err(e) => {
                    stale = true;
                    warn.once(&format!("disk:{uuid}:{}", disk.target), || {
                        format!(
                            "block stats failed for VM {:?} disk {:?}: {e}",
                            sample.name, disk.target
                        )
                    });
                }
            }
        }
    }
    if stale {
        // A device may have been unplugged: read the XML again next cycle.
        cache.invalidate(&uuid);
    }
}

/// Reads and parses the domain XML's device list (one libvirt call).
/// `Ok(None)` when the domain is gone (destroyed since the bulk call): nothing to report.
pub fn read_devices(dom: &Domain) -> Result<Option<Devices>, String> {
    let xml = match dom.xml_desc(0) {
        Ok(xml) => xml,
        Err(e) if is_gone(&e) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    parse_domain_xml(&xml)
        .map(Some)
        .map_err(|e| format!("invalid domain XML: {e}"))
}
