//! Reads for the web server and `/metrics`: the fleet's latest cycle, one VM's charts over a
//! range, and vmtel's own health. All times are ms since the epoch.
//!
//! Ranges up to [`RAW_LIMIT_MS`] read raw rows; longer ones read the 1-minute roll-ups (and
//! the head's raw rows after them). Both are bucketed into about [`TARGET_POINTS`] buckets: a
//! gauge's average, a counter's last value. Rates and percentages (the `vm_features`, bytes and
//! packets per second) are computed here, as Δcounter/Δt between consecutive buckets; a counter
//! that went backwards (VM restarted, device replaced) yields no value for that step.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::Connection;
use serde::Serialize;

use super::compact::Rows;
use super::derived;
use super::layout::{is_device_sum, Kind, VMID};
use super::read::{self, SeriesInfo};
use crate::schema::{
    vm_devices_disk, vm_devices_nic, vm_features, vm_metrics, vm_totals, Measurement,
};

/// Ranges longer than this read roll-ups (6 hours).
pub const RAW_LIMIT_MS: i64 = 6 * 3_600_000;
/// Buckets per chart, about.
pub const TARGET_POINTS: i64 = 360;
/// VMs not seen for this long drop off the fleet page (1 hour).
pub const FLEET_WINDOW_MS: i64 = 3_600_000;

/// One VM in the fleet table (latest values).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VmRow {
    /// The host tag.
    pub host: String,
    /// Domain UUID.
    pub uuid: String,
    /// Domain name (as libvirt reports it: display it as text).
    pub name: String,
    /// libvirt domain ID.
    pub vmid: Option<String>,
    /// `virDomainState` code.
    pub state: Option<i64>,
    /// vCPUs.
    pub vcpus: Option<f64>,
    /// Current balloon size, KiB (`memactual`).
    pub mem_kib: Option<f64>,
    /// CPU use, percent of the VM's vCPUs.
    pub cpu_pct: Option<f64>,
    /// Memory used, percent.
    pub mem_used_pct: Option<f64>,
    /// Received bytes/s.
    pub net_rx_bps: Option<f64>,
    /// Transmitted bytes/s.
    pub net_tx_bps: Option<f64>,
    /// Disk bytes read/s.
    pub disk_rd_bps: Option<f64>,
    /// Disk bytes written/s.
    pub disk_wr_bps: Option<f64>,
    /// When vmtel last saw the VM.
    pub last_seen_ms: i64,
    /// False when the VM was missing from its host's latest cycle (shut off, gone).
    pub current: bool,
}

/// One host in the fleet.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostRow {
    /// The host tag.
    pub host: String,
    /// The host's latest cycle.
    pub last_ms: i64,
    /// VMs in its latest cycle.
    pub vms: usize,
}

/// The fleet page's data.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Fleet {
    /// Hosts, by name.
    pub hosts: Vec<HostRow>,
    /// VMs seen in the last hour, by host then name.
    pub vms: Vec<VmRow>,
}

/// One line on a chart.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Line {
    /// Legend label.
    pub label: String,
    /// One value per `t` (null: no value there).
    pub values: Vec<Option<f64>>,
}

/// One chart.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Chart {
    /// Stable id (`cpu`, `mem`, `nic:tap0`...).
    pub id: String,
    /// Title.
    pub title: String,
    /// Unit of the values: `%`, `B`, `B/s`, `/s`.
    pub unit: String,
    /// Bucket start times.
    pub t: Vec<i64>,
    /// The lines.
    pub lines: Vec<Line>,
}

/// A device of a VM with its identity.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Device {
    /// `nic` or `disk`.
    pub devtype: String,
    /// Device name (`tap0`, `vda`).
    pub device: String,
    /// MAC address (NICs), where known.
    pub mac: Option<String>,
    /// Source path (disks), where known.
    pub path: Option<String>,
    /// Last time the device was seen.
    pub last_seen_ms: i64,
}

/// The VM page's data.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VmDetail {
    /// The host tag.
    pub host: String,
    /// Domain UUID.
    pub uuid: String,
    /// Latest name.
    pub name: String,
    /// The latest fleet row of this VM, if seen within the last hour.
    pub latest: Option<VmRow>,
    /// Range start.
    pub from_ms: i64,
    /// Range end.
    pub to_ms: i64,
    /// Bucket width.
    pub step_ms: i64,
    /// `raw` or `rollup_1m`.
    pub resolution: &'static str,
    /// Charts: cpu, memory, memory activity, then one per NIC and one per disk.
    pub charts: Vec<Chart>,
    /// Devices with identity.
    pub devices: Vec<Device>,
}

/// The latest `vmtel_internal` line of one source or sink.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InternalRow {
    /// The `source` or `sink` tag.
    pub key: String,
    /// The `host` tag (where vmtel runs).
    pub host: String,
    /// Time of the line.
    pub last_ms: i64,
    /// Every field.
    pub fields: BTreeMap<String, f64>,
}

/// vmtel's own health, from the store.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgentHistory {
    /// Per source.
    pub sources: Vec<InternalRow>,
    /// Per sink (output).
    pub sinks: Vec<InternalRow>,
    /// Cycle time (ms) of every source over the last hour.
    pub cycle_time: Chart,
    /// Errors and skipped ticks per minute over the last hour.
    pub problems: Chart,
}

/// A VM of the latest cycles, with its devices' rows.
pub(crate) struct VmNow {
    pub(crate) vm: SeriesInfo,
    pub(crate) rows: Rows,
    pub(crate) nics: Vec<(SeriesInfo, Rows)>,
    pub(crate) disks: Vec<(SeriesInfo, Rows)>,
}

impl VmNow {
    fn last_ts(&self) -> i64 {
        self.rows.ts.last().copied().unwrap_or(self.vm.last_ts)
    }

    fn value(&self, key: &str) -> Option<i64> {
        let r = self.rows.len().checked_sub(1)?;
        self.rows.get(r, Kind::Vm.column(key)?)
    }

    /// Devices whose latest row is the VM's latest cycle.
    fn current<'a>(&self, devices: &'a [(SeriesInfo, Rows)]) -> Vec<&'a Rows> {
        let t = self.rows.ts.last().copied();
        devices
            .iter()
            .filter(|(_, r)| r.ts.last().copied() == t)
            .map(|(_, r)| r)
            .collect()
    }

    fn features(&self) -> Option<crate::model::Features> {
        derived::features(
            &self.rows,
            &self.current(&self.nics),
            &self.current(&self.disks),
        )
    }
}

/// Every VM (with its devices) seen within [`FLEET_WINDOW_MS`] of `now`, with its last two
/// rows: from the head's newest cycles, else from its newest chunk.
pub(crate) fn vms_now(
    conn: &Connection,
    now: i64,
    only: Option<(&str, &str)>,
) -> rusqlite::Result<Vec<VmNow>> {
    let series = match only {
        Some((host, uuid)) => read::series_where(
            conn,
            "kind IN (0, 1, 2) AND host = ?1 AND key = ?2",
            rusqlite::params![host, uuid],
        )?,
        None => read::series_where(conn, "kind IN (0, 1, 2)", [])?,
    };
    let times = read::newest_head_times(conn, 3)?;
    let head = match times.last() {
        Some(&oldest) => read::head_rows(conn, oldest, i64::MAX, None)?,
        None => HashMap::new(),
    };
    let newest = |s: &SeriesInfo| {
        head.get(&s.id)
            .and_then(|r| r.ts.last().copied())
            .unwrap_or(s.last_ts)
            .max(s.last_ts)
    };
    let mut vms: HashMap<(String, String), VmNow> = HashMap::new();
    let mut devices = Vec::new();
    for s in series {
        if newest(&s) < now - FLEET_WINDOW_MS {
            continue;
        }
        if s.kind != Kind::Vm {
            devices.push(s);
            continue;
        }
        let rows = read::last_rows(conn, s.id, head.get(&s.id), 2)?;
        vms.insert(
            (s.host.clone(), s.key.clone()),
            VmNow {
                vm: s,
                rows,
                nics: Vec::new(),
                disks: Vec::new(),
            },
        );
    }
    for d in devices {
        let Some(vm) = vms.get_mut(&(d.host.clone(), d.key.clone())) else {
            continue;
        };
        // Only devices of the VM's latest cycle count; their rows are in the head then.
        let Some(rows) = head.get(&d.id) else {
            continue;
        };
        let rows = read::last_rows(conn, d.id, Some(rows), 2)?;
        if d.kind == Kind::Nic {
            vm.nics.push((d, rows));
        } else {
            vm.disks.push((d, rows));
        }
    }
    let mut out: Vec<VmNow> = vms.into_values().collect();
    out.sort_by(|a, b| {
        (&a.vm.host, &a.vm.name, &a.vm.key).cmp(&(&b.vm.host, &b.vm.name, &b.vm.key))
    });
    Ok(out)
}

/// Newest cycle per host.
fn host_newest(vms: &[VmNow]) -> BTreeMap<String, i64> {
    let mut newest: BTreeMap<String, i64> = BTreeMap::new();
    for v in vms {
        let e = newest.entry(v.vm.host.clone()).or_insert(v.last_ts());
        *e = (*e).max(v.last_ts());
    }
    newest
}

/// The fleet as of `now`: VMs seen within [`FLEET_WINDOW_MS`].
pub fn fleet(conn: &Connection, now: i64) -> rusqlite::Result<Fleet> {
    fleet_of(conn, now, None)
}

/// The fleet, or one VM of it (its host's newest cycle then taken from the head).
fn fleet_of(conn: &Connection, now: i64, only: Option<(&str, &str)>) -> rusqlite::Result<Fleet> {
    let now_vms = vms_now(conn, now, only)?;
    let mut newest = host_newest(&now_vms);
    if let Some((host, _)) = only {
        // Whether the VM is current is judged against its host's newest cycle in the head.
        let ids: HashSet<i64> = read::series_where(conn, "kind = 0 AND host = ?1", [host])?
            .iter()
            .map(|s| s.id)
            .collect();
        if let Some(&oldest) = read::newest_head_times(conn, 3)?.last() {
            let head = read::head_rows(conn, oldest, i64::MAX, Some(&ids))?;
            let t = head.values().filter_map(|r| r.ts.last().copied()).max();
            if let (Some(t), Some(n)) = (t, newest.get_mut(host)) {
                *n = (*n).max(t);
            }
        }
    }
    let vms: Vec<VmRow> = now_vms
        .iter()
        .map(|v| {
            let f = v.features().unwrap_or_default();
            let current = newest.get(&v.vm.host).is_some_and(|n| *n <= v.last_ts());
            VmRow {
                host: v.vm.host.clone(),
                uuid: v.vm.key.clone(),
                name: v.vm.name.clone(),
                vmid: v.value(VMID).map(|i| i.to_string()),
                state: v.value("state"),
                vcpus: v.value("cpus").map(|c| c as f64),
                mem_kib: v.value("memactual").map(|c| c as f64),
                cpu_pct: f.cpu_pct,
                mem_used_pct: derived::mem_used_pct(&v.rows),
                net_rx_bps: f.net_rx_bps,
                net_tx_bps: f.net_tx_bps,
                disk_rd_bps: f.disk_rd_bps,
                disk_wr_bps: f.disk_wr_bps,
                last_seen_ms: v.last_ts(),
                current,
            }
        })
        .collect();
    Ok(Fleet::of(vms, &newest))
}

impl Fleet {
    /// The fleet of `vms` (sorted as given) and one row per host of `newest` (host → its newest
    /// cycle), counting the host's VMs of that cycle.
    pub fn of(vms: Vec<VmRow>, newest: &BTreeMap<String, i64>) -> Fleet {
        let hosts = newest
            .iter()
            .map(|(h, t)| HostRow {
                host: h.clone(),
                last_ms: *t,
                vms: vms.iter().filter(|v| &v.host == h && v.current).count(),
            })
            .collect();
        Fleet { hosts, vms }
    }
}

fn scaled(v: &[Option<f64>], k: f64) -> Vec<Option<f64>> {
    v.iter().map(|x| x.map(|x| x * k)).collect()
}

/// Range and resolution for a chart window of `range` ms ending at `now`.
pub fn window(now: i64, range: i64) -> (i64, i64, bool) {
    let rollup = range > RAW_LIMIT_MS;
    let min_step = if rollup { 60_000 } else { 1_000 };
    let step = (range / TARGET_POINTS).max(min_step);
    let step = if rollup {
        step / 60_000 * 60_000
    } else {
        step / 1000 * 1000
    };
    (now - range, step, rollup)
}

/// The fields of the VM page's CPU chart (`vm_features`).
const CPU_FIELDS: [&str; 4] = ["cpu_pct", "cpu_usr_pct", "cpu_sys_pct", "cpu_steal_pct"];
/// The fields of its memory charts (`vm_totals`): four levels, then four counters.
const MEM_FIELDS: [&str; 8] = [
    "memactual",
    "memrss",
    "memusable",
    "memavailable",
    "memswap_in",
    "memswap_out",
    "memmajor_fault",
    "memminor_fault",
];
/// The fields of a NIC's charts: bytes, then packets.
const NIC_FIELDS: [&str; 4] = ["rxbytes", "txbytes", "rxpackets", "txpackets"];
/// The fields of a disk's charts: bytes, then requests.
const DISK_FIELDS: [&str; 4] = ["rd_bytes", "wr_bytes", "rd_req", "wr_reqs"];

/// The chart legend of field `key` of `m` (the schema's `label`, else the key itself).
fn label(m: &Measurement, key: &str) -> &'static str {
    match m.field(key) {
        Some(f) => f.label.unwrap_or(f.key),
        None => "?",
    }
}

/// Rate of counter column `key` of a frame, per second, times `scale`.
fn frame_rate(f: &read::Frame, kind: Kind, key: &str, scale: f64) -> Vec<Option<f64>> {
    f.rate(kind, key, scale)
}

/// CPU percentages from a VM's frame: the rate of a CPU-time counter (ns) over its vCPUs.
pub(crate) fn cpu_pct(f: &read::Frame, key: &str) -> Vec<Option<f64>> {
    let r = frame_rate(f, Kind::Vm, key, 1.0);
    let cpus = f.col(Kind::Vm, "cpus");
    r.iter()
        .zip(cpus)
        .map(|(r, c)| match (r, c) {
            (Some(r), Some(c)) if c > 0.0 => Some(r / (c * 1e9) * 100.0),
            _ => None,
        })
        .collect()
}

fn line(label: &str, values: Vec<Option<f64>>) -> Line {
    Line {
        label: label.into(),
        values,
    }
}

/// A VM page's charts from its frames, whichever backend read them: the VM's (columns of
/// [`Kind::Vm`]), then each device's (`kind` [`Kind::Nic`] or [`Kind::Disk`], its name, its
/// frame), in the order given. CPU percentages and every rate are computed here, from the
/// counters' last value per bucket and its time.
pub fn vm_charts(vm: &read::Frame, devices: &[(Kind, String, read::Frame)]) -> Vec<Chart> {
    let f = vm;
    let mut charts = Vec::new();
    let features = &vm_features::MEASUREMENT;
    let cpu_keys = ["cputime", "timeusr", "timesys", "vcpu_delay"];
    charts.push(Chart {
        id: "cpu".into(),
        title: "CPU (percent of the VM's vCPUs)".into(),
        unit: "%".into(),
        t: f.t.clone(),
        lines: CPU_FIELDS
            .iter()
            .zip(cpu_keys)
            .map(|(k, counter)| line(label(features, k), cpu_pct(f, counter)))
            .collect(),
    });
    let totals = &vm_totals::MEASUREMENT;
    charts.push(Chart {
        id: "mem".into(),
        title: "Memory".into(),
        unit: "B".into(),
        t: f.t.clone(),
        lines: MEM_FIELDS[..4]
            .iter()
            .map(|k| line(label(totals, k), scaled(&f.col(Kind::Vm, k), 1024.0)))
            .collect(),
    });
    charts.push(Chart {
        id: "memact".into(),
        title: "Swap and page faults".into(),
        unit: "/s".into(),
        lines: [(4, 1024.0), (5, 1024.0), (6, 1.0), (7, 1.0)]
            .iter()
            .map(|&(i, scale)| {
                line(
                    label(totals, MEM_FIELDS[i]),
                    frame_rate(f, Kind::Vm, MEM_FIELDS[i], scale),
                )
            })
            .collect(),
        t: f.t.clone(),
    });
    for (kind, device, f) in devices {
        let (m, keys, titles) = if *kind == Kind::Nic {
            (
                &vm_devices_nic::MEASUREMENT,
                NIC_FIELDS,
                [("nic", "NIC {}"), ("nicpkt", "NIC {} packets")],
            )
        } else {
            (
                &vm_devices_disk::MEASUREMENT,
                DISK_FIELDS,
                [("disk", "Disk {}"), ("diskops", "Disk {} IOPS")],
            )
        };
        for (half, (id, title)) in titles.iter().enumerate() {
            let pair = &keys[half * 2..half * 2 + 2];
            charts.push(Chart {
                id: format!("{id}:{device}"),
                title: title.replace("{}", device),
                unit: if half == 0 { "B/s" } else { "/s" }.into(),
                lines: pair
                    .iter()
                    .map(|k| line(label(m, k), frame_rate(f, *kind, k, 1.0)))
                    .collect(),
                t: f.t.clone(),
            });
        }
    }
    charts
}

/// One VM's charts over `range` ms ending at `now`, or None if the store has never seen it.
pub fn vm_detail(
    conn: &Connection,
    host: &str,
    uuid: &str,
    now: i64,
    range: i64,
) -> rusqlite::Result<Option<VmDetail>> {
    let series = read::series_where(
        conn,
        "kind IN (0, 1, 2) AND host = ?1 AND key = ?2",
        rusqlite::params![host, uuid],
    )?;
    let Some(vm) = series.iter().find(|s| s.kind == Kind::Vm) else {
        return Ok(None);
    };
    let (from, step, rollup) = window(now, range);
    let ids: HashSet<i64> = series.iter().map(|s| s.id).collect();
    let head = read::head_rows(conn, from, now, Some(&ids))?;
    let frame = |s: &SeriesInfo| {
        read::frame(
            conn,
            s.id,
            s.kind,
            (from, now, step),
            rollup,
            head.get(&s.id),
        )
    };
    let vm_frame = frame(vm)?;
    let mut devices: Vec<(Device, &SeriesInfo)> = series
        .iter()
        .filter(|s| s.kind != Kind::Vm)
        .map(|s| {
            let last = head
                .get(&s.id)
                .and_then(|r| r.ts.last().copied())
                .unwrap_or(s.last_ts)
                .max(s.last_ts);
            (
                Device {
                    devtype: if s.kind == Kind::Nic { "nic" } else { "disk" }.into(),
                    device: s.device.clone(),
                    mac: s.mac.clone(),
                    path: s.path.clone(),
                    last_seen_ms: last,
                },
                s,
            )
        })
        .collect();
    devices.sort_by(|a, b| (&a.0.devtype, &a.0.device).cmp(&(&b.0.devtype, &b.0.device)));
    let mut device_frames = Vec::with_capacity(devices.len());
    for (d, s) in &devices {
        device_frames.push((s.kind, d.device.clone(), frame(s)?));
    }
    let charts = vm_charts(&vm_frame, &device_frames);
    let latest = fleet_of(conn, now, Some((host, uuid)))?
        .vms
        .into_iter()
        .find(|v| v.host == host && v.uuid == uuid);
    let name = latest
        .as_ref()
        .map_or_else(|| vm.name.clone(), |l| l.name.clone());
    Ok(Some(VmDetail {
        host: host.into(),
        uuid: uuid.into(),
        name,
        latest,
        from_ms: from,
        to_ms: now,
        step_ms: step,
        resolution: if rollup { "rollup_1m" } else { "raw" },
        charts,
        devices: devices.into_iter().map(|(d, _)| d).collect(),
    }))
}

/// The latest row of every source or sink.
fn internal_rows(
    conn: &Connection,
    kind: Kind,
) -> rusqlite::Result<Vec<(InternalRow, SeriesInfo)>> {
    let series = read::series_where(conn, "kind = ?1", [kind.code()])?;
    let ids: HashSet<i64> = series.iter().map(|s| s.id).collect();
    let head = read::head_rows(conn, i64::MIN, i64::MAX, Some(&ids))?;
    let mut out: Vec<(InternalRow, SeriesInfo)> = Vec::new();
    for s in series {
        let rows = read::last_rows(conn, s.id, head.get(&s.id), 1)?;
        let Some(r) = rows.len().checked_sub(1) else {
            continue;
        };
        let fields = kind
            .columns()
            .iter()
            .enumerate()
            .filter_map(|(c, col)| Some((col.key.to_owned(), rows.get(r, c)? as f64)))
            .collect();
        let row = InternalRow {
            key: s.key.clone(),
            host: s.host.clone(),
            last_ms: rows.ts[r],
            fields,
        };
        // One row per key: the newest (another agent host may have written the same key).
        if let Some(i) = out.iter().position(|(o, _)| o.key == row.key) {
            if out[i].0.last_ms < row.last_ms {
                out[i] = (row, s);
            }
        } else {
            out.push((row, s));
        }
    }
    out.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    Ok(out)
}

/// vmtel's own health over the last hour, from `vmtel_internal`.
pub fn agent(conn: &Connection, now: i64) -> rusqlite::Result<AgentHistory> {
    let sources = internal_rows(conn, Kind::Source)?;
    let sinks = internal_rows(conn, Kind::Sink)?;
    let (from, step, _) = window(now, 3_600_000);
    let ids: HashSet<i64> = sources.iter().map(|s| s.1.id).collect();
    let head = read::head_rows(conn, from, now, Some(&ids))?;
    let mut per = Vec::new();
    for (row, s) in &sources {
        let f = read::frame(
            conn,
            s.id,
            Kind::Source,
            (from, now, step),
            false,
            head.get(&s.id),
        )?;
        per.push((row.key.clone(), f));
    }
    let mut axis: Vec<i64> = per.iter().flat_map(|(_, f)| f.t.iter().copied()).collect();
    axis.sort_unstable();
    axis.dedup();
    let mut cycle = Chart {
        id: "cycle".into(),
        title: "Cycle time per source (ms)".into(),
        unit: "ms".into(),
        t: axis.clone(),
        lines: Vec::new(),
    };
    let mut problems = Chart {
        id: "problems".into(),
        title: "Failed cycles and skipped ticks per minute".into(),
        unit: "/min".into(),
        t: axis.clone(),
        lines: Vec::new(),
    };
    for (key, f) in &per {
        let align = |v: Vec<Option<f64>>| -> Vec<Option<f64>> {
            let m: HashMap<i64, Option<f64>> = f.t.iter().copied().zip(v).collect();
            axis.iter().map(|x| m.get(x).copied().flatten()).collect()
        };
        cycle.lines.push(line_of(
            key,
            scaled(&align(f.col(Kind::Source, "cycle_ns")), 1e-6),
        ));
        let per_min = |k: &str| scaled(&align(f.rate(Kind::Source, k, 1.0)), 60.0);
        problems
            .lines
            .push(line_of(&format!("{key}: failed"), per_min("errors")));
        problems.lines.push(line_of(
            &format!("{key}: skipped"),
            per_min("skipped_ticks"),
        ));
    }
    Ok(AgentHistory {
        sources: sources.into_iter().map(|r| r.0).collect(),
        sinks: sinks.into_iter().map(|r| r.0).collect(),
        cycle_time: cycle,
        problems,
    })
}

fn line_of(label: &str, values: Vec<Option<f64>>) -> Line {
    Line {
        label: label.into(),
        values,
    }
}

/// The latest values of one VM series, for `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    /// Measurement.
    pub measurement: String,
    /// Tags.
    pub host: String,
    /// Domain name.
    pub name: String,
    /// Domain UUID.
    pub uuid: String,
    /// `nic` or `disk` for `vm_devices`.
    pub devtype: Option<String>,
    /// Device name for `vm_devices`.
    pub device: Option<String>,
    /// Field values.
    pub fields: HashMap<String, f64>,
}

/// Every VM series of each host's latest cycle (VMs and devices present now), as the lines of
/// that cycle would carry them: `vm_metrics`, `vm_totals` (device sums added), `vm_devices`,
/// and `vm_features` computed from the last two rows.
pub fn latest_vm_series(conn: &Connection, now: i64) -> rusqlite::Result<Vec<Latest>> {
    let vms = vms_now(conn, now, None)?;
    let newest = host_newest(&vms);
    let mut out = Vec::new();
    for v in &vms {
        if newest.get(&v.vm.host) != Some(&v.last_ts()) {
            continue;
        }
        let Some(r) = v.rows.len().checked_sub(1) else {
            continue;
        };
        let base = |measurement: &str, devtype: Option<&str>, device: Option<&str>| Latest {
            measurement: measurement.into(),
            host: v.vm.host.clone(),
            name: v.vm.name.clone(),
            uuid: v.vm.key.clone(),
            devtype: devtype.map(str::to_owned),
            device: device.map(str::to_owned),
            fields: HashMap::new(),
        };
        let vm_value = |key: &str| Kind::Vm.column(key).and_then(|c| v.rows.get(r, c));
        let mut metrics = base(vm_metrics::MEASUREMENT.name, None, None);
        for f in vm_metrics::MEASUREMENT.fields {
            if let Some(x) = vm_value(f.key) {
                metrics.fields.insert(f.key.into(), x as f64);
            }
        }
        out.push(metrics);
        let nics = v.current(&v.nics);
        let disks = v.current(&v.disks);
        let mut totals = base(vm_totals::MEASUREMENT.name, None, None);
        for f in vm_totals::MEASUREMENT.fields {
            let x = if is_device_sum(f) {
                device_sum(f.key, &nics, &disks)
            } else {
                vm_value(f.key).map(|x| x as f64)
            };
            if let Some(x) = x {
                totals.fields.insert(f.key.into(), x);
            }
        }
        out.push(totals);
        for (kind, list) in [(Kind::Nic, &v.nics), (Kind::Disk, &v.disks)] {
            for (s, rows) in list.iter() {
                let Some(dr) = rows.len().checked_sub(1) else {
                    continue;
                };
                if rows.ts.last() != v.rows.ts.last() {
                    continue;
                }
                let devtype = if kind == Kind::Nic { "nic" } else { "disk" };
                let mut l = base("vm_devices", Some(devtype), Some(&s.device));
                for (c, col) in kind.columns().iter().enumerate() {
                    if let Some(x) = rows.get(dr, c) {
                        l.fields.insert(col.key.into(), x as f64);
                    }
                }
                out.push(l);
            }
        }
        if let Some(f) = v.features() {
            let mut l = base(vm_features::MEASUREMENT.name, None, None);
            vm_features::for_each(&f, |field, value| {
                if let crate::schema::Value::Float(x) = value {
                    l.fields.insert(field.key.into(), x);
                }
            });
            out.push(l);
        }
    }
    Ok(out)
}

/// A `vm_totals` device sum (`net_rxbytes` = Σ `rxbytes` of the NICs, `disk_rd_req` = Σ
/// `rd_req` of the disks) over the devices' latest rows.
fn device_sum(key: &str, nics: &[&Rows], disks: &[&Rows]) -> Option<f64> {
    let (kind, list, field) = if let Some(k) = key.strip_prefix("net_") {
        (Kind::Nic, nics, k)
    } else if let Some(k) = key.strip_prefix("disk_") {
        (Kind::Disk, disks, k)
    } else {
        return None;
    };
    let c = kind.column(field)?;
    let mut total: Option<f64> = None;
    for rows in list {
        let Some(r) = rows.len().checked_sub(1) else {
            continue;
        };
        if let Some(x) = rows.get(r, c) {
            total = Some(total.unwrap_or(0.0) + x as f64);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_charted_field_has_a_legend_in_the_schema() {
        let charted: [(&Measurement, &[&str]); 4] = [
            (&vm_features::MEASUREMENT, &CPU_FIELDS),
            (&vm_totals::MEASUREMENT, &MEM_FIELDS),
            (&vm_devices_nic::MEASUREMENT, &NIC_FIELDS),
            (&vm_devices_disk::MEASUREMENT, &DISK_FIELDS),
        ];
        for (m, keys) in charted {
            for k in keys {
                let f = m
                    .field(k)
                    .unwrap_or_else(|| panic!("{} has no {k}", m.name));
                assert!(f.label.is_some(), "{}.{k} has no chart label", m.name);
            }
        }
    }
}
