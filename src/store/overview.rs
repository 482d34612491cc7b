//! Fleet overviews from the embedded history: hosts with a CPU trend and their capacity, the top
//! VMs over a range, and the recent rows the problem rules look at. The InfluxDB 3 backend answers the same
//! questions with SQL (`serve::source::influxdb3`); the types are shared.

use std::collections::{BTreeMap, HashMap};

use rusqlite::Connection;
use serde::Serialize;

use super::compact::Rows;
use super::layout::{Kind, VMID};
use super::query::{self, cpu_pct, FLEET_WINDOW_MS};
use super::read::{self, Frame, SeriesInfo};

/// One host's CPU trend: the mean CPU % of its VMs per bucket.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Trend {
    /// Bucket start times, ms.
    pub t: Vec<i64>,
    /// Mean CPU % of the host's VMs in each bucket.
    pub cpu_pct: Vec<Option<f64>>,
}

/// A host's capacity and use from its newest `vm_host` lines.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Capacity {
    /// The time of the newest line, ms.
    pub last_ms: i64,
    /// Logical CPUs online.
    pub cpus: Option<f64>,
    /// Physical memory, KiB.
    pub mem_total_kib: Option<f64>,
    /// Free memory, KiB.
    pub mem_free_kib: Option<f64>,
    /// The host's CPUs busy between its two newest lines, percent ([`host_busy_pct`]).
    pub cpu_busy_pct: Option<f64>,
}

/// The CPU time counters of a `vm_host` line, in the order [`host_busy_pct`] takes them.
pub const HOST_CPU_KEYS: [&str; 4] = ["cpu_user", "cpu_kernel", "cpu_idle", "cpu_iowait"];

/// The share of a host's CPU time that was busy between two readings of its counters
/// ([`HOST_CPU_KEYS`]: user, kernel, idle, iowait), percent: Δ(user + kernel) / Δ(all four) ·
/// 100, waiting for I/O counted as not busy. `None` when a counter is missing or went back
/// (the host rebooted) or no CPU time passed.
pub fn host_busy_pct(prev: [Option<f64>; 4], last: [Option<f64>; 4]) -> Option<f64> {
    let mut d = [0.0; 4];
    for i in 0..4 {
        let delta = last[i]? - prev[i]?;
        if delta < 0.0 {
            return None;
        }
        d[i] = delta;
    }
    let total: f64 = d.iter().sum();
    (total > 0.0).then(|| (d[0] + d[1]) / total * 100.0)
}

/// Each host's newest `n` rows of `vm_host` (oldest first), for hosts whose newest row is within
/// [`FLEET_WINDOW_MS`].
fn host_rows(conn: &Connection, now: i64, n: usize) -> rusqlite::Result<BTreeMap<String, Rows>> {
    let series = read::series_where(conn, "kind = ?1", [Kind::Host.code()])?;
    let mut out = BTreeMap::new();
    if series.is_empty() {
        return Ok(out);
    }
    let times = read::newest_head_times(conn, 3)?;
    let head = match times.last() {
        Some(&oldest) => read::head_rows(conn, oldest, i64::MAX, None)?,
        None => HashMap::new(),
    };
    for s in series {
        let rows = read::last_rows(conn, s.id, head.get(&s.id), n)?;
        if rows
            .ts
            .last()
            .is_some_and(|&ts| ts >= now - FLEET_WINDOW_MS)
        {
            out.insert(s.host, rows);
        }
    }
    Ok(out)
}

/// A host's newest `vm_host` line: its time (ms) and its fields' values by key.
pub type HostLine = (i64, HashMap<&'static str, f64>);

/// The values of row `r` of a host's rows, by field key.
fn host_values(rows: &Rows, r: usize) -> HashMap<&'static str, f64> {
    Kind::Host
        .columns()
        .iter()
        .enumerate()
        .filter_map(|(c, col)| rows.get(r, c).map(|v| (col.key, v as f64)))
        .collect()
}

/// Each host's newest `vm_host` line, for hosts heard from within [`FLEET_WINDOW_MS`].
pub fn latest_hosts(conn: &Connection, now: i64) -> rusqlite::Result<BTreeMap<String, HostLine>> {
    Ok(host_rows(conn, now, 1)?
        .into_iter()
        .filter_map(|(host, rows)| {
            let r = rows.len().checked_sub(1)?;
            Some((host, (*rows.ts.get(r)?, host_values(&rows, r))))
        })
        .collect())
}

/// Each host's capacity and use from its two newest `vm_host` lines.
pub fn host_capacity(conn: &Connection, now: i64) -> rusqlite::Result<BTreeMap<String, Capacity>> {
    Ok(host_rows(conn, now, 2)?
        .into_iter()
        .filter_map(|(host, rows)| {
            let r = rows.len().checked_sub(1)?;
            let last = host_values(&rows, r);
            let cpu = |v: &HashMap<&str, f64>| HOST_CPU_KEYS.map(|k| v.get(k).copied());
            let busy = r
                .checked_sub(1)
                .and_then(|p| host_busy_pct(cpu(&host_values(&rows, p)), cpu(&last)));
            let c = Capacity {
                last_ms: *rows.ts.get(r)?,
                cpus: last.get("cpus").copied(),
                mem_total_kib: last.get("memtotal").copied(),
                mem_free_kib: last.get("memfree").copied(),
                cpu_busy_pct: busy,
            };
            Some((host, c))
        })
        .collect())
}

/// What the top list ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopBy {
    /// `cpu_pct`.
    Cpu,
    /// `cpu_steal_pct`.
    Steal,
    /// Network bytes/s, received plus transmitted.
    Net,
    /// Disk bytes/s, read plus written.
    Disk,
    /// `mem_used_pct`.
    Mem,
}

impl TopBy {
    /// Every value of `?by=`, as the API names them.
    pub const ALL: [(&'static str, TopBy); 5] = [
        ("cpu_pct", TopBy::Cpu),
        ("cpu_steal_pct", TopBy::Steal),
        ("net", TopBy::Net),
        ("disk", TopBy::Disk),
        ("mem", TopBy::Mem),
    ];

    /// The `?by=` value named `s`, if it is one.
    pub fn parse(s: &str) -> Option<TopBy> {
        TopBy::ALL.iter().find(|(n, _)| *n == s).map(|(_, b)| *b)
    }

    /// Its unit.
    pub fn unit(self) -> &'static str {
        match self {
            TopBy::Cpu | TopBy::Steal | TopBy::Mem => "%",
            TopBy::Net | TopBy::Disk => "B/s",
        }
    }
}

/// One VM of a top list: its mean over the range.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TopVm {
    /// The host tag.
    pub host: String,
    /// Domain UUID.
    pub uuid: String,
    /// Domain name.
    pub name: String,
    /// The mean over the range.
    pub value: f64,
}

/// A VM's recent rows, as the problem rules read them: per sample time, the values each rule
/// looks at (`None` where a value is missing).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmWindow {
    /// The host tag.
    pub host: String,
    /// Domain UUID.
    pub uuid: String,
    /// Domain name.
    pub name: String,
    /// Sample times, ms, increasing.
    pub t: Vec<i64>,
    /// vCPU steal, % (from this and the previous sample).
    pub steal_pct: Vec<Option<f64>>,
    /// Guest memory in use, %.
    pub mem_used_pct: Vec<Option<f64>>,
    /// `virDomainState` code.
    pub state: Vec<Option<i64>>,
    /// Swap in plus swap out, KiB (counter).
    pub swap: Vec<Option<f64>>,
    /// NIC drops, received plus transmitted (counter, summed over NICs).
    pub nic_drops: Vec<Option<f64>>,
    /// NIC errors (counter, summed over NICs).
    pub nic_errors: Vec<Option<f64>>,
    /// Disk errors (counter, summed over disks).
    pub disk_errors: Vec<Option<f64>>,
}

/// How far before a problem window the row that gives its first cycle's steal is looked for.
const STEAL_LOOKBACK_MS: i64 = 5 * 60_000;

/// Device series by (host, VM key).
type DevicesOf = HashMap<(String, String), Vec<SeriesInfo>>;

/// VMs and devices with a row within `[from, now]`: in a compacted chunk (the registry's last
/// time) or in the head's rows of that span (`head`); VMs first, devices by (host, VM key).
fn recent_series(
    conn: &Connection,
    from: i64,
    now: i64,
    head: &HashMap<i64, Rows>,
) -> rusqlite::Result<(Vec<SeriesInfo>, DevicesOf)> {
    let series = read::series_where(conn, "kind IN (0, 1, 2)", [])?;
    let mut vms = Vec::new();
    let mut devices: DevicesOf = HashMap::new();
    for s in series {
        let in_chunks = s.last_ts >= from && s.last_ts <= now;
        if !in_chunks && !head.contains_key(&s.id) {
            continue;
        }
        if s.kind == Kind::Vm {
            vms.push(s);
        } else {
            devices
                .entry((s.host.clone(), s.key.clone()))
                .or_default()
                .push(s);
        }
    }
    Ok((vms, devices))
}

/// A frame of series `s` over `[from, now]` bucketed by `step` (roll-ups beyond 6 hours).
fn frame_of(
    conn: &Connection,
    s: &SeriesInfo,
    (from, now, step): (i64, i64, i64),
    head: &HashMap<i64, Rows>,
) -> rusqlite::Result<Frame> {
    let rollup = now - from > query::RAW_LIMIT_MS;
    read::frame(
        conn,
        s.id,
        s.kind,
        (from, now, step),
        rollup,
        head.get(&s.id),
    )
}

/// The mean CPU % of each host's VMs per bucket over `range` ms ending at `now`, in about
/// `buckets` buckets.
pub fn cpu_trends(
    conn: &Connection,
    now: i64,
    range: i64,
    buckets: i64,
) -> rusqlite::Result<BTreeMap<String, Trend>> {
    let from = now - range;
    let step = (range / buckets.max(1)).max(1000);
    let head = read::head_rows(conn, from, now, None)?;
    let (vms, _) = recent_series(conn, from, now, &head)?;
    let mut sums: BTreeMap<String, BTreeMap<i64, (f64, u32)>> = BTreeMap::new();
    for s in &vms {
        let f = frame_of(conn, s, (from, now, step), &head)?;
        let per = sums.entry(s.host.clone()).or_default();
        for (t, v) in f.t.iter().zip(cpu_pct(&f, "cputime")) {
            let e = per.entry(*t).or_insert((0.0, 0));
            if let Some(v) = v {
                e.0 += v;
                e.1 += 1;
            }
        }
    }
    Ok(sums
        .into_iter()
        .map(|(host, b)| {
            let (t, cpu_pct) = b
                .into_iter()
                .map(|(t, (s, n))| (t, (n > 0).then(|| s / f64::from(n))))
                .unzip();
            (host, Trend { t, cpu_pct })
        })
        .collect())
}

/// The mean of the values present.
fn mean(v: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let (s, n) = v
        .into_iter()
        .flatten()
        .fold((0.0, 0u32), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / f64::from(n))
}

/// The 10 VMs (of host `only`, if given) with the highest mean of `by` over `range` ms ending
/// at `now` (the mean of the
/// rates between the VM page's buckets for that range).
pub fn top(
    conn: &Connection,
    now: i64,
    by: TopBy,
    range: i64,
    only: Option<&str>,
) -> rusqlite::Result<Vec<TopVm>> {
    let (from, step, _) = query::window(now, range);
    let head = read::head_rows(conn, from, now, None)?;
    let (mut vms, devices) = recent_series(conn, from, now, &head)?;
    if let Some(h) = only {
        vms.retain(|s| s.host == h);
    }
    let mut out = Vec::new();
    for s in &vms {
        let f = frame_of(conn, s, (from, now, step), &head)?;
        let value = match by {
            TopBy::Cpu => mean(cpu_pct(&f, "cputime")),
            TopBy::Steal => mean(cpu_pct(&f, "vcpu_delay")),
            TopBy::Mem => {
                let a = f.col(Kind::Vm, "memavailable");
                let u = f.col(Kind::Vm, "memusable");
                mean(a.iter().zip(&u).map(|(a, u)| match (a, u) {
                    (Some(a), Some(u)) if *a > 0.0 && u <= a => Some((a - u) / a * 100.0),
                    _ => None,
                }))
            }
            TopBy::Net | TopBy::Disk => {
                let (kind, keys) = if by == TopBy::Net {
                    (Kind::Nic, ["rxbytes", "txbytes"])
                } else {
                    (Kind::Disk, ["rd_bytes", "wr_bytes"])
                };
                let mut total: BTreeMap<i64, f64> = BTreeMap::new();
                for d in devices
                    .get(&(s.host.clone(), s.key.clone()))
                    .into_iter()
                    .flatten()
                    .filter(|d| d.kind == kind)
                {
                    let df = frame_of(conn, d, (from, now, step), &head)?;
                    // Rates per device, summed per bucket over the VM's devices.
                    for k in keys {
                        for (t, r) in df.t.iter().zip(df.rate(kind, k, 1.0)) {
                            if let Some(r) = r {
                                *total.entry(*t).or_default() += r;
                            }
                        }
                    }
                }
                mean(total.values().map(|v| Some(*v)))
            }
        };
        if let Some(value) = value {
            out.push(TopVm {
                host: s.host.clone(),
                uuid: s.key.clone(),
                name: s.name.clone(),
                value,
            });
        }
    }
    out.sort_by(|a, b| {
        b.value
            .total_cmp(&a.value)
            .then_with(|| (&a.host, &a.name).cmp(&(&b.host, &b.name)))
    });
    out.truncate(10);
    Ok(out)
}

/// The rows of every VM seen within `[from, now]`, as the problem rules read them.
pub fn vm_windows(conn: &Connection, now: i64, from: i64) -> rusqlite::Result<Vec<VmWindow>> {
    let from = from.max(now - FLEET_WINDOW_MS);
    // The row before the window too, so that the window's first row has its steal (as the
    // agent's `vm_features` line of that cycle has).
    let lookback = from - STEAL_LOOKBACK_MS;
    let head = read::head_rows(conn, lookback, now, None)?;
    let (vms, devices) = recent_series(conn, from, now, &head)?;
    let mut out = Vec::with_capacity(vms.len());
    for s in &vms {
        let rows = read::raw(conn, s.id, lookback, now, head.get(&s.id))?;
        if rows.ts.last().is_none_or(|t| *t < from) {
            continue;
        }
        let col = |k: &str, r: usize| Kind::Vm.column(k).and_then(|c| rows.get(r, c));
        let mut w = VmWindow {
            host: s.host.clone(),
            uuid: s.key.clone(),
            name: s.name.clone(),
            ..VmWindow::default()
        };
        for r in 0..rows.len() {
            let t = rows.ts[r];
            if t < from {
                continue;
            }
            w.t.push(t);
            w.state.push(col("state", r));
            let (avail, usable) = (col("memavailable", r), col("memusable", r));
            w.mem_used_pct.push(match (avail, usable) {
                (Some(a), Some(u)) if a > 0 && u <= a => Some((a - u) as f64 / a as f64 * 100.0),
                _ => None,
            });
            let swap = match (col("memswap_in", r), col("memswap_out", r)) {
                (None, None) => None,
                (i, o) => Some(i.unwrap_or(0) as f64 + o.unwrap_or(0) as f64),
            };
            w.swap.push(swap);
            // Steal from this and the previous row of the same VM run.
            let steal = r.checked_sub(1).and_then(|p| {
                let dt = (t - rows.ts[p]) as f64 / 1000.0;
                let same_run = col(VMID, r) == col(VMID, p);
                let (d1, d0, cpus) = (
                    col("vcpu_delay", r)?,
                    col("vcpu_delay", p)?,
                    col("cpus", r)?,
                );
                (same_run && dt > 0.0 && d1 >= d0 && cpus > 0)
                    .then(|| (d1 - d0) as f64 / (dt * 1e9 * cpus as f64) * 100.0)
            });
            w.steal_pct.push(steal);
        }
        // Device counters summed per sample time.
        let mut sums: [BTreeMap<i64, f64>; 3] = Default::default();
        for d in devices
            .get(&(s.host.clone(), s.key.clone()))
            .into_iter()
            .flatten()
        {
            let drows = read::raw(conn, d.id, from, now, head.get(&d.id))?;
            let keys: &[(usize, &str)] = if d.kind == Kind::Nic {
                &[
                    (0, "rxdrops"),
                    (0, "txdrops"),
                    (1, "rxerrors"),
                    (1, "txerrors"),
                ]
            } else {
                &[(2, "errors")]
            };
            for r in 0..drows.len() {
                for (slot, k) in keys {
                    if let Some(v) = d.kind.column(k).and_then(|c| drows.get(r, c)) {
                        *sums[*slot].entry(drows.ts[r]).or_default() += v as f64;
                    }
                }
            }
        }
        let [drops, errors, disk] = sums;
        w.nic_drops = w.t.iter().map(|t| drops.get(t).copied()).collect();
        w.nic_errors = w.t.iter().map(|t| errors.get(t).copied()).collect();
        w.disk_errors = w.t.iter().map(|t| disk.get(t).copied()).collect();
        out.push(w);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::host_busy_pct;

    #[test]
    fn host_busy_share_of_the_counters_and_none_across_a_reboot() {
        let s = |u: f64, k: f64, i: f64, w: f64| [Some(u), Some(k), Some(i), Some(w)];
        // 30 user + 10 kernel of 100: 40 % (iowait counts as not busy).
        let got = host_busy_pct(s(100.0, 50.0, 1000.0, 5.0), s(130.0, 60.0, 1050.0, 15.0));
        assert_eq!(got, Some(40.0));
        // A counter went back (the host rebooted), one is missing, or no time passed: none.
        assert_eq!(
            host_busy_pct(s(100.0, 50.0, 1000.0, 5.0), s(1.0, 1.0, 1.0, 1.0)),
            None
        );
        let mut missing = s(130.0, 60.0, 1050.0, 15.0);
        missing[2] = None;
        assert_eq!(host_busy_pct(s(100.0, 50.0, 1000.0, 5.0), missing), None);
        let same = s(100.0, 50.0, 1000.0, 5.0);
        assert_eq!(host_busy_pct(same, same), None);
    }
}
