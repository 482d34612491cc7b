//! The hosts page's rows: per host its VMs by state, what they are allocated, what they use
//! now, when it was last heard from, and a CPU trend. Built from the fleet's latest rows and
//! the backend's per-host trend, so both backends summarise the same way.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::overview::{Capacity, Trend};
use crate::store::query::Fleet;

/// One host.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostSummary {
    /// The host tag.
    pub host: String,
    /// Its newest cycle, ms.
    pub last_seen_ms: i64,
    /// True when it sent no cycle for more than the configured number of intervals.
    pub silent: bool,
    /// VMs running (or blocked) in its latest cycle.
    pub running: usize,
    /// VMs paused.
    pub paused: usize,
    /// VMs in any other state (shutting down, crashed, suspended).
    pub other: usize,
    /// vCPUs of those VMs.
    pub vcpus: f64,
    /// Their current balloon sizes, bytes.
    pub mem_bytes: Option<f64>,
    /// The host's logical CPUs (its `vm_host` line), when known.
    pub host_cpus: Option<f64>,
    /// The host's physical memory, bytes, when known.
    pub host_mem_bytes: Option<f64>,
    /// The host's free memory, bytes, when known.
    pub host_mem_free_bytes: Option<f64>,
    /// The host's CPUs busy over its last interval, percent of all of them (its own counters:
    /// its VMs and everything else it runs), when known.
    pub host_cpu_pct: Option<f64>,
    /// CPU in use, percent of those vCPUs (each VM's CPU % weighted by its vCPUs).
    pub cpu_pct: Option<f64>,
    /// Network bytes/s, received plus transmitted, summed over the VMs.
    pub net_bps: Option<f64>,
    /// Disk bytes/s, read plus written, summed over the VMs.
    pub disk_bps: Option<f64>,
    /// Mean CPU % of its VMs over the last hour.
    pub trend: Trend,
}

fn add(slot: &mut Option<f64>, v: Option<f64>) {
    if let Some(v) = v {
        *slot = Some(slot.unwrap_or(0.0) + v);
    }
}

/// One row per host of `fleet` or of `capacity` (a host with no VM reports its `vm_host` line
/// alone), silent when its newest cycle is older than `silent_after` ms, with its capacity
/// where `capacity` has it.
pub fn summarise(
    fleet: &Fleet,
    mut trends: BTreeMap<String, Trend>,
    capacity: &BTreeMap<String, Capacity>,
    now: i64,
    silent_after: i64,
) -> Vec<HostSummary> {
    let mut last: BTreeMap<&str, i64> = fleet
        .hosts
        .iter()
        .map(|h| (h.host.as_str(), h.last_ms))
        .collect();
    // A host whose VMs all stopped still sends its own line: it is not silent.
    for (host, c) in capacity {
        let t = last.entry(host.as_str()).or_insert(c.last_ms);
        *t = (*t).max(c.last_ms);
    }
    last.into_iter()
        .map(|(host, last_ms)| {
            let mut s = HostSummary {
                host: host.to_owned(),
                last_seen_ms: last_ms,
                silent: now - last_ms > silent_after,
                running: 0,
                paused: 0,
                other: 0,
                vcpus: 0.0,
                mem_bytes: None,
                host_cpus: None,
                host_mem_bytes: None,
                host_mem_free_bytes: None,
                host_cpu_pct: None,
                cpu_pct: None,
                net_bps: None,
                disk_bps: None,
                trend: trends.remove(host).unwrap_or_default(),
            };
            let (mut used, mut weight) = (0.0, 0.0);
            for v in fleet.vms.iter().filter(|v| v.host == host && v.current) {
                match v.state {
                    Some(1 | 2) => s.running += 1,
                    Some(3) => s.paused += 1,
                    _ => s.other += 1,
                }
                let cpus = v.vcpus.unwrap_or(0.0);
                s.vcpus += cpus;
                add(&mut s.mem_bytes, v.mem_kib.map(|k| k * 1024.0));
                if let Some(c) = v.cpu_pct {
                    used += c * cpus;
                    weight += cpus;
                }
                add(&mut s.net_bps, v.net_rx_bps);
                add(&mut s.net_bps, v.net_tx_bps);
                add(&mut s.disk_bps, v.disk_rd_bps);
                add(&mut s.disk_bps, v.disk_wr_bps);
            }
            s.cpu_pct = (weight > 0.0).then(|| used / weight);
            if let Some(c) = capacity.get(host) {
                s.host_cpus = c.cpus;
                s.host_mem_bytes = c.mem_total_kib.map(|k| k * 1024.0);
                s.host_mem_free_bytes = c.mem_free_kib.map(|k| k * 1024.0);
                s.host_cpu_pct = c.cpu_busy_pct;
            }
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::query::{HostRow, VmRow};

    fn vm(host: &str, vcpus: f64, last: i64) -> VmRow {
        VmRow {
            host: host.into(),
            uuid: format!("{host}-{vcpus}"),
            name: "v".into(),
            vmid: None,
            state: Some(1),
            vcpus: Some(vcpus),
            mem_kib: Some(1024.0),
            cpu_pct: Some(50.0),
            mem_used_pct: None,
            net_rx_bps: None,
            net_tx_bps: None,
            disk_rd_bps: None,
            disk_wr_bps: None,
            last_seen_ms: last,
            current: true,
        }
    }

    fn cap(last_ms: i64, cpus: f64) -> Capacity {
        Capacity {
            last_ms,
            cpus: Some(cpus),
            mem_total_kib: Some(4.0 * 1024.0 * 1024.0),
            mem_free_kib: Some(1024.0 * 1024.0),
            cpu_busy_pct: Some(cpus),
        }
    }

    /// A host known only from its `vm_host` line is listed with no VM and its capacity; a host
    /// whose VM lines are old but whose own line is new is not silent; capacity joins by name.
    #[test]
    fn hosts_come_from_vm_lines_and_host_lines() {
        let now = 1_000_000;
        let fleet = Fleet {
            hosts: vec![
                HostRow {
                    host: "a".into(),
                    last_ms: now - 1_000,
                    vms: 1,
                },
                HostRow {
                    host: "b".into(),
                    last_ms: now - 600_000,
                    vms: 1,
                },
            ],
            vms: vec![vm("a", 4.0, now - 1_000), vm("b", 2.0, now - 600_000)],
        };
        let capacity = BTreeMap::from([
            ("a".to_owned(), cap(now - 1_000, 16.0)),
            ("b".to_owned(), cap(now - 2_000, 8.0)),
            ("c".to_owned(), cap(now - 3_000, 32.0)),
        ]);
        let rows = summarise(&fleet, BTreeMap::new(), &capacity, now, 30_000);
        let names: Vec<&str> = rows.iter().map(|r| r.host.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!((rows[0].vcpus, rows[0].host_cpus), (4.0, Some(16.0)));
        assert_eq!(rows[0].host_cpu_pct, Some(16.0));
        assert_eq!(rows[0].host_mem_bytes, Some(4.0 * 1024.0 * 1024.0 * 1024.0));
        assert!(!rows[1].silent, "b's own line is 2 s old: {:?}", rows[1]);
        assert_eq!(rows[1].last_seen_ms, now - 2_000);
        let c = &rows[2];
        assert_eq!((c.running, c.paused, c.other, c.vcpus), (0, 0, 0, 0.0));
        assert_eq!((c.host_cpus, c.silent), (Some(32.0), false));
        // Without capacity a host with only old VM lines is silent.
        let rows = summarise(&fleet, BTreeMap::new(), &BTreeMap::new(), now, 30_000);
        assert_eq!(rows.len(), 2);
        assert!(rows[1].silent);
    }
}
