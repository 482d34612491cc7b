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

/// One row per host of `fleet`, silent when its newest cycle is older than `silent_after` ms,
/// with its capacity where `capacity` has it.
pub fn summarise(
    fleet: &Fleet,
    mut trends: BTreeMap<String, Trend>,
    capacity: &BTreeMap<String, Capacity>,
    now: i64,
    silent_after: i64,
) -> Vec<HostSummary> {
    fleet
        .hosts
        .iter()
        .map(|h| {
            let mut s = HostSummary {
                host: h.host.clone(),
                last_seen_ms: h.last_ms,
                silent: now - h.last_ms > silent_after,
                running: 0,
                paused: 0,
                other: 0,
                vcpus: 0.0,
                mem_bytes: None,
                host_cpus: None,
                host_mem_bytes: None,
                host_mem_free_bytes: None,
                cpu_pct: None,
                net_bps: None,
                disk_bps: None,
                trend: trends.remove(&h.host).unwrap_or_default(),
            };
            let (mut used, mut weight) = (0.0, 0.0);
            for v in fleet.vms.iter().filter(|v| v.host == h.host && v.current) {
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
            if let Some(c) = capacity.get(&h.host) {
                s.host_cpus = c.cpus;
                s.host_mem_bytes = c.mem_total_kib.map(|k| k * 1024.0);
                s.host_mem_free_bytes = c.mem_free_kib.map(|k| k * 1024.0);
            }
            s
        })
        .collect()
}
