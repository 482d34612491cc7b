//! The problem rules: VMs and hosts that need a look now, each with why and since when.
//!
//! | rule | fires when |
//! |---|---|
//! | `host_silent` | a host sent no cycle for more than `silent_intervals` intervals |
//! | `crashed`, `paused` | a VM's latest state is crashed (6) or paused (3) |
//! | `steal` | vCPU steal above `steal_pct` for the last `cycles` cycles in a row |
//! | `mem_full` | guest memory in use at or above `mem_used_pct` for the last `cycles` cycles |
//! | `swapping` | the guest's swap in/out counters rose within `window` |
//! | `disk_errors`, `nic_errors`, `nic_drops` | those counters rose within `window` |
//! | `vm_silent` | a VM seen within the hour is missing from its host's latest cycle |
//!
//! The streak rules' "since" is the first cycle of the current streak within `window` (or the
//! window's start); the rising rules' is the first cycle whose counter is above the window's
//! first value. The embedded backend evaluates them here from each VM's recent rows
//! ([`VmWindow`]); the InfluxDB 3 backend runs the same rules as SQL in the database.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::overview::VmWindow;
use crate::store::query::Fleet;

/// `[web.problems]`: the rules' thresholds.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProblemsConfig {
    /// vCPU steal (%) above which a VM is flagged (default 10).
    #[serde(default = "default_steal")]
    pub steal_pct: f64,
    /// Guest memory in use (%) at or above which a VM is flagged (default 90).
    #[serde(default = "default_mem")]
    pub mem_used_pct: f64,
    /// Cycles in a row a steal or memory threshold must hold (default 3).
    #[serde(default = "default_cycles")]
    pub cycles: u32,
    /// How far back the rules look (counters rising, streaks; default 10m).
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// Intervals without a cycle after which a host is flagged as silent (default 3).
    #[serde(default = "default_silent")]
    pub silent_intervals: u32,
}

fn default_steal() -> f64 {
    10.0
}
fn default_mem() -> f64 {
    90.0
}
fn default_cycles() -> u32 {
    3
}
fn default_window() -> Duration {
    Duration::from_secs(600)
}
fn default_silent() -> u32 {
    3
}

impl Default for ProblemsConfig {
    fn default() -> Self {
        ProblemsConfig {
            steal_pct: default_steal(),
            mem_used_pct: default_mem(),
            cycles: default_cycles(),
            window: default_window(),
            silent_intervals: default_silent(),
        }
    }
}

impl ProblemsConfig {
    /// Every problem with these options, phrased with a fix.
    pub fn problems(&self) -> Vec<String> {
        let k = "web.problems";
        let mut p = Vec::new();
        if !(self.steal_pct.is_finite() && (0.0..=100.0).contains(&self.steal_pct)) {
            p.push(format!(
                "{k}.steal_pct must be a percentage (0 to 100), e.g. 10"
            ));
        }
        if !(self.mem_used_pct.is_finite() && (0.0..=100.0).contains(&self.mem_used_pct)) {
            p.push(format!(
                "{k}.mem_used_pct must be a percentage (0 to 100), e.g. 90"
            ));
        }
        if self.cycles == 0 || self.cycles > 1000 {
            p.push(format!("{k}.cycles must be 1 to 1000, e.g. 3"));
        }
        if self.silent_intervals == 0 || self.silent_intervals > 1000 {
            p.push(format!("{k}.silent_intervals must be 1 to 1000, e.g. 3"));
        }
        if self.window < Duration::from_secs(10) || self.window > Duration::from_secs(3600) {
            p.push(format!(
                "{k}.window must be between 10s and 1h, e.g. \"10m\""
            ));
        }
        p
    }

    /// The window in ms.
    pub fn window_ms(&self) -> i64 {
        i64::try_from(self.window.as_millis()).unwrap_or(3_600_000)
    }
}

/// The rules, most urgent first (the order of the problems list).
pub const RULES: [&str; 10] = [
    "host_silent",
    "crashed",
    "paused",
    "steal",
    "mem_full",
    "swapping",
    "disk_errors",
    "nic_errors",
    "nic_drops",
    "vm_silent",
];

/// One VM or host that needs a look.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    /// The rule that fired (one of [`RULES`]).
    pub rule: &'static str,
    /// The host tag.
    pub host: String,
    /// The VM's UUID (none for a host problem).
    pub uuid: Option<String>,
    /// The VM's name (none for a host problem).
    pub name: Option<String>,
    /// Why, in words, with the value.
    pub why: String,
    /// Since when, ms.
    pub since_ms: i64,
    /// The value that fired the rule (%, or how much a counter rose).
    pub value: Option<f64>,
}

/// Sorts `list` by rule urgency, then oldest first, then host and name.
pub fn sort(list: &mut [Problem]) {
    let rank = |r: &str| RULES.iter().position(|x| *x == r).unwrap_or(RULES.len());
    list.sort_by(|a, b| {
        rank(a.rule)
            .cmp(&rank(b.rule))
            .then(a.since_ms.cmp(&b.since_ms))
            .then_with(|| (&a.host, &a.name).cmp(&(&b.host, &b.name)))
    });
}

/// Host and VM silence, from the fleet: a host whose newest cycle is older than
/// `silent_intervals` intervals, a VM missing from its host's latest cycle.
pub fn silence(fleet: &Fleet, cfg: &ProblemsConfig, now: i64, interval_ms: i64) -> Vec<Problem> {
    let mut out = Vec::new();
    let limit = interval_ms.max(1000) * i64::from(cfg.silent_intervals);
    for h in &fleet.hosts {
        if now - h.last_ms > limit {
            out.push(Problem {
                rule: "host_silent",
                host: h.host.clone(),
                uuid: None,
                name: None,
                why: format!(
                    "no cycle for {} s (more than {} intervals of {} s)",
                    (now - h.last_ms) / 1000,
                    cfg.silent_intervals,
                    interval_ms / 1000
                ),
                since_ms: h.last_ms,
                value: None,
            });
        }
    }
    for v in fleet.vms.iter().filter(|v| !v.current) {
        out.push(Problem {
            rule: "vm_silent",
            host: v.host.clone(),
            uuid: Some(v.uuid.clone()),
            name: Some(v.name.clone()),
            why: "missing from its host's latest cycle (shut off, migrated or gone)".into(),
            since_ms: v.last_seen_ms,
            value: None,
        });
    }
    out
}

/// The current streak at the end of `values` where `pred` holds: (index of its first sample,
/// its length).
fn streak<T: Copy>(values: &[T], pred: impl Fn(T) -> bool) -> Option<(usize, usize)> {
    let n = values.iter().rev().take_while(|v| pred(**v)).count();
    (n > 0).then(|| (values.len() - n, n))
}

/// A counter that rose within the samples: (index of the first sample above the first value,
/// how much it rose from first to last). A counter that went backwards (reset) does not count.
fn rising(values: &[Option<f64>]) -> Option<(usize, f64)> {
    let first = values.iter().flatten().next().copied()?;
    let last = values.iter().rev().flatten().next().copied()?;
    if last <= first {
        return None;
    }
    let at = values.iter().position(|v| v.is_some_and(|x| x > first))?;
    Some((at, last - first))
}

/// The VM problems of VMs in their host's latest cycle only (the others are [`silence`]'s).
pub fn current_only(list: Vec<Problem>, fleet: &Fleet) -> Vec<Problem> {
    let current: std::collections::HashSet<(&str, &str)> = fleet
        .vms
        .iter()
        .filter(|v| v.current)
        .map(|v| (v.host.as_str(), v.uuid.as_str()))
        .collect();
    list.into_iter()
        .filter(|p| {
            p.uuid
                .as_deref()
                .is_some_and(|u| current.contains(&(p.host.as_str(), u)))
        })
        .collect()
}

/// The VM rules over each VM's recent rows (see [`current_only`] for which VMs count).
pub fn vm_rules(windows: &[VmWindow], cfg: &ProblemsConfig) -> Vec<Problem> {
    let cycles = cfg.cycles as usize;
    let mut out = Vec::new();
    for w in windows {
        let mut push = |rule: &'static str, why: String, at: usize, value: Option<f64>| {
            out.push(Problem {
                rule,
                host: w.host.clone(),
                uuid: Some(w.uuid.clone()),
                name: Some(w.name.clone()),
                why,
                since_ms: w.t.get(at).copied().unwrap_or_default(),
                value,
            });
        };
        let last = |v: &[Option<f64>]| v.last().copied().flatten();
        for (rule, code, word) in [("crashed", 6, "crashed"), ("paused", 3, "paused")] {
            if let Some((at, _)) = streak(&w.state, |s| s == Some(code)) {
                push(rule, format!("the VM is {word}"), at, None);
            }
        }
        if let Some((at, n)) = streak(&w.steal_pct, |s| s.is_some_and(|x| x > cfg.steal_pct)) {
            if n >= cycles {
                let v = last(&w.steal_pct);
                push(
                    "steal",
                    format!(
                        "vCPU steal {:.1} % (above {} % for {n} cycles)",
                        v.unwrap_or_default(),
                        cfg.steal_pct
                    ),
                    at,
                    v,
                );
            }
        }
        if let Some((at, n)) = streak(&w.mem_used_pct, |s| {
            s.is_some_and(|x| x >= cfg.mem_used_pct)
        }) {
            if n >= cycles {
                let v = last(&w.mem_used_pct);
                push(
                    "mem_full",
                    format!(
                        "guest memory {:.1} % in use (at or above {} % for {n} cycles)",
                        v.unwrap_or_default(),
                        cfg.mem_used_pct
                    ),
                    at,
                    v,
                );
            }
        }
        let rising_rules: [(&'static str, &[Option<f64>], &str); 4] = [
            ("swapping", &w.swap, "KiB swapped in and out"),
            ("disk_errors", &w.disk_errors, "disk errors"),
            ("nic_errors", &w.nic_errors, "NIC errors"),
            ("nic_drops", &w.nic_drops, "NIC drops"),
        ];
        for (rule, values, what) in rising_rules {
            if let Some((at, by)) = rising(values) {
                push(
                    rule,
                    format!("{by:.0} {what} within the last {}", humantime_window(cfg)),
                    at,
                    Some(by),
                );
            }
        }
    }
    out
}

/// The window for messages (`10m`).
pub fn humantime_window(cfg: &ProblemsConfig) -> String {
    humantime::format_duration(cfg.window).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::query::VmRow;

    fn fleet_of(vms: &[(&str, &str, bool)]) -> Fleet {
        Fleet {
            hosts: Vec::new(),
            vms: vms
                .iter()
                .map(|(h, u, current)| VmRow {
                    host: (*h).into(),
                    uuid: (*u).into(),
                    name: format!("vm {u}"),
                    vmid: None,
                    state: None,
                    vcpus: None,
                    mem_kib: None,
                    cpu_pct: None,
                    mem_used_pct: None,
                    net_rx_bps: None,
                    net_tx_bps: None,
                    disk_rd_bps: None,
                    disk_wr_bps: None,
                    last_seen_ms: 1000,
                    current: *current,
                })
                .collect(),
        }
    }

    fn window(uuid: &str, n: usize) -> VmWindow {
        VmWindow {
            host: "h".into(),
            uuid: uuid.into(),
            name: format!("vm {uuid}"),
            t: (0..n as i64).map(|i| i * 10_000).collect(),
            steal_pct: vec![None; n],
            mem_used_pct: vec![None; n],
            state: vec![Some(1); n],
            swap: vec![None; n],
            nic_drops: vec![None; n],
            nic_errors: vec![None; n],
            disk_errors: vec![None; n],
        }
    }

    #[test]
    fn streaks_need_their_cycles_and_start_where_the_streak_starts() {
        let cfg = ProblemsConfig::default();
        let mut w = window("a", 6);
        w.steal_pct = vec![
            Some(50.0),
            Some(1.0),
            Some(20.0),
            Some(30.0),
            Some(25.0),
            Some(12.0),
        ];
        let fleet = fleet_of(&[("h", "a", true)]);
        let p = current_only(vm_rules(&[w.clone()], &cfg), &fleet);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].rule, "steal");
        assert_eq!(
            p[0].since_ms, 20_000,
            "the streak starts at the third sample"
        );
        assert_eq!(p[0].value, Some(12.0));
        // Two cycles are not enough; a good last cycle clears it.
        w.steal_pct = vec![None, None, None, None, Some(20.0), Some(30.0)];
        assert!(current_only(vm_rules(&[w.clone()], &cfg), &fleet).is_empty());
        w.steal_pct = vec![Some(20.0); 5].into_iter().chain([Some(5.0)]).collect();
        assert!(current_only(vm_rules(&[w], &cfg), &fleet).is_empty());
    }

    #[test]
    fn rising_counters_fire_and_resets_do_not() {
        let cfg = ProblemsConfig::default();
        let fleet = fleet_of(&[("h", "a", true), ("h", "b", true)]);
        let mut a = window("a", 5);
        a.nic_drops = vec![Some(7.0), Some(7.0), Some(9.0), None, Some(12.0)];
        let mut b = window("b", 5);
        b.nic_drops = vec![Some(7.0), Some(9.0), Some(1.0), Some(2.0), Some(3.0)];
        b.state = vec![Some(1), Some(1), Some(3), Some(3), Some(3)];
        let p = current_only(vm_rules(&[a, b], &cfg), &fleet);
        let drops: Vec<_> = p.iter().filter(|p| p.rule == "nic_drops").collect();
        assert_eq!(drops.len(), 1, "{p:?}");
        assert_eq!(drops[0].uuid.as_deref(), Some("a"));
        assert_eq!((drops[0].since_ms, drops[0].value), (20_000, Some(5.0)));
        let paused: Vec<_> = p.iter().filter(|p| p.rule == "paused").collect();
        assert_eq!(paused.len(), 1);
        assert_eq!(paused[0].since_ms, 20_000);
    }

    #[test]
    fn silent_hosts_and_vms_and_only_current_vms_are_judged() {
        let cfg = ProblemsConfig::default();
        let mut fleet = fleet_of(&[("h", "a", false)]);
        fleet.hosts.push(crate::store::query::HostRow {
            host: "h".into(),
            last_ms: 1000,
            vms: 0,
        });
        let mut w = window("a", 3);
        w.state = vec![Some(3); 3];
        assert!(
            current_only(vm_rules(&[w], &cfg), &fleet).is_empty(),
            "a gone VM is only silent"
        );
        let p = silence(&fleet, &cfg, 1000 + 30_001, 10_000);
        let rules: Vec<&str> = p.iter().map(|p| p.rule).collect();
        assert_eq!(rules, ["host_silent", "vm_silent"]);
        assert!(silence(&fleet, &cfg, 1000 + 30_000, 10_000)
            .iter()
            .all(|p| p.rule != "host_silent"));
    }

    #[test]
    fn bad_thresholds_are_refused_with_the_fix() {
        let c: ProblemsConfig =
            toml::from_str("steal_pct = 120.0\ncycles = 0\nwindow = \"2s\"").expect("toml");
        let p = c.problems();
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p.iter().all(|m| m.starts_with("web.problems.")));
        assert!(ProblemsConfig::default().problems().is_empty());
    }
}
