//! A simulated source: `sim:///demo/1` to `sim:///demo/3`, the hosts of the demo fleet
//! ([`crate::sim`]: 3 hosts × 12 VMs that move like real ones, a few in trouble on purpose).
//!
//! Each cycle steps the simulation to the wall clock and hands its host's VMs on as the bulk
//! stats call would: each VM's record (the keys and types libvirt returns for a QEMU guest) goes
//! through the real [`Decoder`], and the worker derives, encodes and stores them like any
//! source's. `vmtel demo` back-fills the last hour through the same objects
//! ([`backfill`]) and leaves them for the collectors ([`prepare`]), so the live
//! cycles continue the history without a jump.

use std::sync::Mutex;
use std::time::Duration;

use super::bulk::Decoder;
use super::{mono_ns, wall_ns, CollectError, CycleSummary};
use crate::model::{HostSample, NodeStats};
use crate::sim::{host_name, SimFleet, SimOptions};

/// The URI scheme of simulated sources.
pub const SCHEME: &str = "sim:";

/// Hosts of the demo fleet.
pub const DEMO_HOSTS: usize = 3;

/// VMs per host of the demo fleet.
pub const DEMO_VMS: usize = 12;

/// The URI of demo host `n` (1-based).
pub fn demo_uri(n: usize) -> String {
    format!("sim:///demo/{n}")
}

/// True for a simulated source's URI.
pub fn is_simulated(uri: &str) -> bool {
    uri.starts_with(SCHEME)
}

/// One simulated host.
#[derive(Debug)]
pub struct SimSource {
    uri: String,
    /// The whole demo fleet (each source steps its own copy; the seed makes them equal).
    fleet: SimFleet,
    /// Which of its hosts this source reports.
    host: usize,
    decoder: Decoder,
    /// Wall-clock time the fleet was last stepped to, ns.
    at_ns: Option<i64>,
}

impl SimSource {
    /// The simulated host `uri` names, or why it names none.
    pub fn open(uri: &str) -> Result<SimSource, CollectError> {
        let host = uri
            .strip_prefix("sim:///demo/")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| (1..=DEMO_HOSTS).contains(n))
            .ok_or_else(|| CollectError::Connect {
                uri: uri.to_owned(),
                message: format!(
                    "no such simulated host: the simulated sources are {} to {}",
                    demo_uri(1),
                    demo_uri(DEMO_HOSTS)
                ),
            })?;
        Ok(SimSource {
            uri: uri.to_owned(),
            fleet: SimFleet::new(SimOptions {
                hosts: DEMO_HOSTS,
                vms_per_host: DEMO_VMS,
                ..SimOptions::default()
            }),
            host: host - 1,
            decoder: Decoder::new(),
            at_ns: None,
        })
    }

    /// The source's URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The `host` tag of its lines.
    pub fn host_name(&self) -> String {
        host_name(self.host)
    }

    /// Steps the fleet to `t_ns` (the first step covers `first_dt`) and returns its host's VMs
    /// as decoded samples stamped `mono`.
    fn sample_at(&mut self, t_ns: i64, first_dt: Duration, mono: u64) -> HostSample {
        let dt = match self.at_ns {
            Some(at) => Duration::from_nanos(u64::try_from(t_ns - at).unwrap_or(0)),
            None => first_dt,
        };
        if !dt.is_zero() {
            self.fleet.step(t_ns, dt);
        }
        self.at_ns = Some(t_ns);
        let mut sample = HostSample {
            host: self.host_name(),
            timestamp_ns: t_ns,
            domains: Vec::with_capacity(DEMO_VMS),
        };
        for (i, vm) in self.fleet.vms.iter().enumerate() {
            if vm.host == self.host {
                let s = self.fleet.sample(i, t_ns, mono, &mut self.decoder);
                sample.domains.push(s);
            }
        }
        sample
    }

    /// One live cycle: the fleet stepped to now, its host's VMs handed to `each` (one chunk).
    pub fn collect_chunks(
        &mut self,
        mut each: impl FnMut(&mut HostSample),
    ) -> Result<CycleSummary, CollectError> {
        let mut chunk = self.sample_at(wall_ns(), Duration::from_secs(10), mono_ns());
        let summary = CycleSummary {
            timestamp_ns: chunk.timestamp_ns,
            domains: chunk.domains.len(),
        };
        each(&mut chunk);
        Ok(summary)
    }

    /// What the host calls return for this host now.
    pub fn node_stats(&self) -> NodeStats {
        self.fleet.node(self.host)
    }
}

/// Steps `sources` together through `from_ns` to `to_ns` (on the grid of `step`), cycle by
/// cycle, and hands each host's samples and host values to `each` with the source's URI and
/// whether it is the cycle's last host: history for the demo's first screen. The samples'
/// monotonic times count from `from_ns`.
pub fn backfill(
    sources: &mut [SimSource],
    from_ns: i64,
    to_ns: i64,
    step: Duration,
    mut each: impl FnMut(&str, HostSample, NodeStats, bool),
) {
    let step_ns = i64::try_from(step.as_nanos()).unwrap_or(i64::MAX).max(1);
    let mut t = from_ns;
    while t <= to_ns {
        let mono = u64::try_from(t - from_ns).unwrap_or(0);
        let n = sources.len();
        for (k, s) in sources.iter_mut().enumerate() {
            let sample = s.sample_at(t, step, mono);
            each(&s.uri, sample, s.node_stats(), k + 1 == n);
        }
        t += step_ns;
    }
}

/// Simulated sources prepared (back-filled) for the collectors that will open their URIs.
static PREPARED: Mutex<Vec<SimSource>> = Mutex::new(Vec::new());

/// Leaves `source` for the collector that opens its URI next ([`take_or_open`]).
pub fn prepare(source: SimSource) {
    if let Ok(mut p) = PREPARED.lock() {
        p.retain(|s| s.uri != source.uri);
        p.push(source);
    }
}

/// The prepared source of `uri`, or a new one.
pub fn take_or_open(uri: &str) -> Result<SimSource, CollectError> {
    let prepared = PREPARED.lock().ok().and_then(|mut p| {
        let i = p.iter().position(|s| s.uri == uri)?;
        Some(p.swap_remove(i))
    });
    match prepared {
        Some(s) => Ok(s),
        None => SimSource::open(uri),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_uris_open_and_others_are_refused_naming_the_good_ones() {
        for n in 1..=DEMO_HOSTS {
            let s = SimSource::open(&demo_uri(n)).expect("demo host");
            assert_eq!(s.host_name(), host_name(n - 1));
        }
        for bad in ["sim:///demo/0", "sim:///demo/4", "sim:///x", "sim:"] {
            let e = SimSource::open(bad).expect_err(bad).to_string();
            assert!(e.contains("sim:///demo/1") && e.contains(bad), "{e}");
        }
    }

    /// Back-filled, then live: the live cycle continues the same VMs (same IDs, counters that
    /// did not go back), and the prepared source is the one a collector gets.
    #[test]
    fn a_backfilled_source_continues_live() {
        let mut s = [SimSource::open(&demo_uri(1)).expect("demo host")];
        let now = wall_ns();
        let step = Duration::from_secs(10);
        let mut last: Option<HostSample> = None;
        let mut cycles = 0;
        backfill(
            &mut s,
            now - 600_000_000_000,
            now - 1,
            step,
            |uri, h, n, end| {
                assert_eq!(uri, demo_uri(1));
                assert!(end, "one host: every cycle ends with it");
                assert_eq!(h.domains.len(), DEMO_VMS);
                assert!(n.cpus.is_some() && n.mem_total.is_some());
                cycles += 1;
                last = Some(h);
            },
        );
        assert_eq!(cycles, 60);
        let [s] = s;
        prepare(s);
        let mut live = take_or_open(&demo_uri(1)).expect("prepared");
        let last = last.expect("a cycle");
        live.collect_chunks(|h| {
            assert_eq!(h.domains.len(), DEMO_VMS);
            for (a, b) in last.domains.iter().zip(&h.domains) {
                assert_eq!(a.uuid, b.uuid);
                // Unless the VM rebooted just now (a new ID), its counters went on.
                assert!(
                    a.id != b.id || b.cpu.time >= a.cpu.time,
                    "{}: counter went back",
                    b.name
                );
            }
        })
        .expect("live cycle");
    }
}
