//! Reads for the web server and `/metrics`: the fleet's latest cycle, one VM's charts over a
//! range, and vmtel's own health. All times are ms since the epoch.
//!
//! Ranges up to [`RAW_LIMIT_MS`] read raw points; longer ones read the 1-minute roll-ups. Both
//! are averaged into about [`TARGET_POINTS`] buckets. Per-device and per-second values of
//! counters (bytes, packets, requests, faults) are computed here, as Δcounter/Δt between
//! consecutive buckets; a counter that went backwards (VM restarted, device replaced) yields no
//! value for that step.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::schema::{vm_devices_disk, vm_devices_nic, vm_features, vm_totals, Measurement};

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

fn fields_at(conn: &Connection, series: i64, ts: i64) -> rusqlite::Result<HashMap<String, f64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT f.name, p.value FROM points p JOIN fields f ON f.id = p.field_id
         WHERE p.series_id = ?1 AND p.ts = ?2",
    )?;
    let rows = stmt.query_map(params![series, ts], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<f64>>(1)?))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (k, v) = row?;
        if let Some(v) = v {
            out.insert(k, v);
        }
    }
    Ok(out)
}

struct SeriesRef {
    id: i64,
    measurement: String,
    host: String,
    uuid: String,
    name: String,
    vmid: Option<String>,
    devtype: Option<String>,
    device: Option<String>,
    last_ts: i64,
}

fn series_where(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> rusqlite::Result<Vec<SeriesRef>> {
    let sql = format!(
        "SELECT id, measurement, COALESCE(host, ''), COALESCE(uuid, ''), COALESCE(name, ''), vmid, devtype, device, last_ts
         FROM series WHERE {filter}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(args, |r| {
        Ok(SeriesRef {
            id: r.get(0)?,
            measurement: r.get(1)?,
            host: r.get(2)?,
            uuid: r.get(3)?,
            name: r.get(4)?,
            vmid: r.get(5)?,
            devtype: r.get(6)?,
            device: r.get(7)?,
            last_ts: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// The latest series per `(host, uuid, measurement)`.
fn latest_per_vm(series: Vec<SeriesRef>) -> HashMap<(String, String, String), SeriesRef> {
    let mut best: HashMap<(String, String, String), SeriesRef> = HashMap::new();
    for s in series {
        let key = (s.host.clone(), s.uuid.clone(), s.measurement.clone());
        match best.get(&key) {
            Some(b) if b.last_ts >= s.last_ts => {}
            _ => {
                best.insert(key, s);
            }
        }
    }
    best
}

/// Newest cycle per host (from `vm_metrics`).
fn host_newest(best: &HashMap<(String, String, String), SeriesRef>) -> BTreeMap<String, i64> {
    let mut newest: BTreeMap<String, i64> = BTreeMap::new();
    for ((host, _, m), s) in best {
        if m == "vm_metrics" {
            let e = newest.entry(host.clone()).or_insert(s.last_ts);
            *e = (*e).max(s.last_ts);
        }
    }
    newest
}

/// The fleet as of `now`: VMs seen within [`FLEET_WINDOW_MS`].
pub fn fleet(conn: &Connection, now: i64) -> rusqlite::Result<Fleet> {
    let series = series_where(
        conn,
        "measurement IN ('vm_metrics', 'vm_features') AND last_ts >= ?1",
        [now - FLEET_WINDOW_MS],
    )?;
    let best = latest_per_vm(series);
    let newest = host_newest(&best);
    let mut vms = Vec::new();
    for ((host, uuid, m), s) in &best {
        if m != "vm_metrics" {
            continue;
        }
        let metrics = fields_at(conn, s.id, s.last_ts)?;
        let features = match best.get(&(host.clone(), uuid.clone(), "vm_features".into())) {
            Some(f) if f.last_ts == s.last_ts => fields_at(conn, f.id, f.last_ts)?,
            _ => HashMap::new(),
        };
        let g = |k: &str| features.get(k).copied();
        vms.push(VmRow {
            host: host.clone(),
            uuid: uuid.clone(),
            name: s.name.clone(),
            vmid: s.vmid.clone(),
            state: metrics.get("state").map(|v| *v as i64),
            vcpus: metrics.get("cpus").copied(),
            cpu_pct: g("cpu_pct"),
            mem_used_pct: g("mem_used_pct"),
            net_rx_bps: g("net_rx_bps"),
            net_tx_bps: g("net_tx_bps"),
            disk_rd_bps: g("disk_rd_bps"),
            disk_wr_bps: g("disk_wr_bps"),
            last_seen_ms: s.last_ts,
            current: newest.get(host).is_some_and(|n| *n <= s.last_ts),
        });
    }
    vms.sort_by(|a, b| (&a.host, &a.name, &a.uuid).cmp(&(&b.host, &b.name, &b.uuid)));
    let hosts = newest
        .iter()
        .map(|(h, t)| HostRow {
            host: h.clone(),
            last_ms: *t,
            vms: vms.iter().filter(|v| &v.host == h && v.current).count(),
        })
        .collect();
    Ok(Fleet { hosts, vms })
}

/// Bucket start times, and one column of values per field.
type Columns = (Vec<i64>, Vec<Vec<Option<f64>>>);

/// Bucketed averages of `fields` over several series (merged by time).
fn bucketed(
    conn: &Connection,
    ids: &[i64],
    fields: &[&str],
    from: i64,
    step: i64,
    rollup: bool,
) -> rusqlite::Result<Columns> {
    let sql = if rollup {
        "SELECT (r.ts / ?2) * ?2 AS b, f.name, SUM(r.sum) / SUM(r.n) FROM rollup_1m r JOIN fields f ON f.id = r.field_id
         WHERE r.series_id = ?1 AND r.ts >= ?3 GROUP BY b, f.name"
    } else {
        "SELECT (p.ts / ?2) * ?2 AS b, f.name, AVG(p.value) FROM points p JOIN fields f ON f.id = p.field_id
         WHERE p.series_id = ?1 AND p.ts >= ?3 GROUP BY b, f.name"
    };
    let mut by_t: BTreeMap<i64, Vec<Option<f64>>> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(sql)?;
    for id in ids {
        let rows = stmt.query_map(params![id, step, from], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<f64>>(2)?,
            ))
        })?;
        for row in rows {
            let (t, name, v) = row?;
            let Some(i) = fields.iter().position(|f| *f == name) else {
                continue;
            };
            let slot = by_t.entry(t).or_insert_with(|| vec![None; fields.len()]);
            if let Some(s) = slot.get_mut(i) {
                *s = v;
            }
        }
    }
    let t: Vec<i64> = by_t.keys().copied().collect();
    let mut cols = vec![Vec::with_capacity(t.len()); fields.len()];
    for row in by_t.values() {
        for (c, v) in cols.iter_mut().zip(row) {
            c.push(*v);
        }
    }
    Ok((t, cols))
}

/// Per-second rate of a counter column: Δv/Δt between consecutive values, none when the
/// counter went backwards or a value is missing.
pub fn rate(t: &[i64], v: &[Option<f64>], scale: f64) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(v.len());
    let mut prev: Option<(i64, f64)> = None;
    for (ti, vi) in t.iter().zip(v) {
        let r = match (prev, vi) {
            (Some((tp, vp)), Some(x)) if *ti > tp && *x >= vp => {
                Some((x - vp) * scale * 1000.0 / (*ti - tp) as f64)
            }
            _ => None,
        };
        out.push(r);
        if let Some(x) = vi {
            prev = Some((*ti, *x));
        }
    }
    out
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

/// One VM's charts over `range` ms ending at `now`, or None if the store has never seen it.
pub fn vm_detail(
    conn: &Connection,
    host: &str,
    uuid: &str,
    now: i64,
    range: i64,
) -> rusqlite::Result<Option<VmDetail>> {
    let series = series_where(conn, "host = ?1 AND uuid = ?2", params![host, uuid])?;
    let Some(newest) = series.iter().max_by_key(|s| s.last_ts) else {
        return Ok(None);
    };
    let name = newest.name.clone();
    let (from, step, rollup) = window(now, range);
    let ids = |m: &str, dev: Option<(&str, &str)>| -> Vec<i64> {
        series
            .iter()
            .filter(|s| s.measurement == m)
            .filter(|s| match dev {
                Some((t, d)) => s.devtype.as_deref() == Some(t) && s.device.as_deref() == Some(d),
                None => true,
            })
            .map(|s| s.id)
            .collect()
    };
    let mut charts = Vec::new();
    let line = |label: &str, values: Vec<Option<f64>>| Line {
        label: label.into(),
        values,
    };

    let (t, c) = bucketed(
        conn,
        &ids("vm_features", None),
        &CPU_FIELDS,
        from,
        step,
        rollup,
    )?;
    charts.push(Chart {
        id: "cpu".into(),
        title: "CPU (percent of the VM's vCPUs)".into(),
        unit: "%".into(),
        t,
        lines: CPU_FIELDS
            .iter()
            .zip(c)
            .map(|(k, values)| line(label(&vm_features::MEASUREMENT, k), values))
            .collect(),
    });

    let totals = &vm_totals::MEASUREMENT;
    let (t, c) = bucketed(
        conn,
        &ids("vm_totals", None),
        &MEM_FIELDS,
        from,
        step,
        rollup,
    )?;
    let col = |i: usize| c.get(i).cloned().unwrap_or_default();
    charts.push(Chart {
        id: "mem".into(),
        title: "Memory".into(),
        unit: "B".into(),
        t: t.clone(),
        lines: (0..4)
            .map(|i| line(label(totals, MEM_FIELDS[i]), scaled(&col(i), 1024.0)))
            .collect(),
    });
    charts.push(Chart {
        id: "memact".into(),
        title: "Swap and page faults".into(),
        unit: "/s".into(),
        lines: [(4, 1024.0), (5, 1024.0), (6, 1.0), (7, 1.0)]
            .iter()
            .map(|&(i, scale)| line(label(totals, MEM_FIELDS[i]), rate(&t, &col(i), scale)))
            .collect(),
        t,
    });

    let mut devices = devices_of(conn, host, uuid)?;
    for s in &series {
        if let (Some(dt), Some(d)) = (&s.devtype, &s.device) {
            if !devices.iter().any(|x| &x.devtype == dt && &x.device == d) {
                devices.push(Device {
                    devtype: dt.clone(),
                    device: d.clone(),
                    mac: None,
                    path: None,
                    last_seen_ms: s.last_ts,
                });
            } else if let Some(x) = devices
                .iter_mut()
                .find(|x| &x.devtype == dt && &x.device == d)
            {
                x.last_seen_ms = x.last_seen_ms.max(s.last_ts);
            }
        }
    }
    devices.sort_by(|a, b| (&a.devtype, &a.device).cmp(&(&b.devtype, &b.device)));
    for d in &devices {
        let dev_ids = ids("vm_devices", Some((&d.devtype, &d.device)));
        if dev_ids.is_empty() {
            continue;
        }
        if d.devtype == "nic" {
            let keys = NIC_FIELDS;
            let nic = &vm_devices_nic::MEASUREMENT;
            let (t, c) = bucketed(conn, &dev_ids, &keys, from, step, rollup)?;
            let col = |i: usize| c.get(i).cloned().unwrap_or_default();
            charts.push(Chart {
                id: format!("nic:{}", d.device),
                title: format!("NIC {}", d.device),
                unit: "B/s".into(),
                lines: vec![
                    line(label(nic, keys[0]), rate(&t, &col(0), 1.0)),
                    line(label(nic, keys[1]), rate(&t, &col(1), 1.0)),
                ],
                t: t.clone(),
            });
            charts.push(Chart {
                id: format!("nicpkt:{}", d.device),
                title: format!("NIC {} packets", d.device),
                unit: "/s".into(),
                lines: vec![
                    line(label(nic, keys[2]), rate(&t, &col(2), 1.0)),
                    line(label(nic, keys[3]), rate(&t, &col(3), 1.0)),
                ],
                t,
            });
        } else if d.devtype == "disk" {
            let keys = DISK_FIELDS;
            let disk = &vm_devices_disk::MEASUREMENT;
            let (t, c) = bucketed(conn, &dev_ids, &keys, from, step, rollup)?;
            let col = |i: usize| c.get(i).cloned().unwrap_or_default();
            charts.push(Chart {
                id: format!("disk:{}", d.device),
                title: format!("Disk {}", d.device),
                unit: "B/s".into(),
                lines: vec![
                    line(label(disk, keys[0]), rate(&t, &col(0), 1.0)),
                    line(label(disk, keys[1]), rate(&t, &col(1), 1.0)),
                ],
                t: t.clone(),
            });
            charts.push(Chart {
                id: format!("diskops:{}", d.device),
                title: format!("Disk {} IOPS", d.device),
                unit: "/s".into(),
                lines: vec![
                    line(label(disk, keys[2]), rate(&t, &col(2), 1.0)),
                    line(label(disk, keys[3]), rate(&t, &col(3), 1.0)),
                ],
                t,
            });
        }
    }
    let latest = fleet(conn, now)?
        .vms
        .into_iter()
        .find(|v| v.host == host && v.uuid == uuid);
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
        devices,
    }))
}

fn devices_of(conn: &Connection, host: &str, uuid: &str) -> rusqlite::Result<Vec<Device>> {
    let mut stmt = conn.prepare_cached(
        "SELECT devtype, device, mac, path, last_ts FROM devices WHERE host = ?1 AND uuid = ?2",
    )?;
    let rows = stmt.query_map(params![host, uuid], |r| {
        Ok(Device {
            devtype: r.get(0)?,
            device: r.get(1)?,
            mac: r.get(2)?,
            path: r.get(3)?,
            last_seen_ms: r.get(4)?,
        })
    })?;
    rows.collect()
}

fn internal_rows(conn: &Connection, tag: &str) -> rusqlite::Result<Vec<(InternalRow, i64)>> {
    let sql = format!(
        "SELECT id, {tag}, COALESCE(host, ''), last_ts FROM series
         WHERE measurement = 'vmtel_internal' AND {tag} IS NOT NULL ORDER BY last_ts DESC"
    );
    let mut stmt = conn.prepare(&sql)?;
    let found = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out: Vec<(InternalRow, i64)> = Vec::new();
    for (id, key, host, last) in found {
        if out.iter().any(|(r, _)| r.key == key) {
            continue;
        }
        let fields = fields_at(conn, id, last)?.into_iter().collect();
        out.push((
            InternalRow {
                key,
                host,
                last_ms: last,
                fields,
            },
            id,
        ));
    }
    out.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    Ok(out)
}

/// vmtel's own health over the last hour, from `vmtel_internal`.
pub fn agent(conn: &Connection, now: i64) -> rusqlite::Result<AgentHistory> {
    let sources = internal_rows(conn, "source")?;
    let sinks = internal_rows(conn, "sink")?;
    let (from, step, _) = window(now, 3_600_000);
    let mut cycle = Chart {
        id: "cycle".into(),
        title: "Cycle time per source (ms)".into(),
        unit: "ms".into(),
        t: Vec::new(),
        lines: Vec::new(),
    };
    let mut problems = Chart {
        id: "problems".into(),
        title: "Failed cycles and skipped ticks per minute".into(),
        unit: "/min".into(),
        t: Vec::new(),
        lines: Vec::new(),
    };
    // Align every source on one time axis.
    let mut per: Vec<(String, Columns)> = Vec::new();
    for (row, _) in &sources {
        let ids: Vec<i64> = series_where(
            conn,
            "measurement = 'vmtel_internal' AND source = ?1",
            [&row.key],
        )?
        .iter()
        .map(|s| s.id)
        .collect();
        let (t, c) = bucketed(
            conn,
            &ids,
            &["cycle_ns", "errors", "skipped_ticks"],
            from,
            step,
            false,
        )?;
        per.push((row.key.clone(), (t, c)));
    }
    let mut axis: Vec<i64> = per
        .iter()
        .flat_map(|(_, (t, _))| t.iter().copied())
        .collect();
    axis.sort_unstable();
    axis.dedup();
    for (key, (t, c)) in &per {
        let align = |v: &[Option<f64>]| -> Vec<Option<f64>> {
            let m: HashMap<i64, Option<f64>> = t.iter().copied().zip(v.iter().copied()).collect();
            axis.iter().map(|x| m.get(x).copied().flatten()).collect()
        };
        let col = |i: usize| c.get(i).cloned().unwrap_or_default();
        cycle
            .lines
            .push(line_of(key, scaled(&align(&col(0)), 1e-6)));
        let per_min = |v: Vec<Option<f64>>| scaled(&rate(&axis, &align(&v), 1.0), 60.0);
        problems
            .lines
            .push(line_of(&format!("{key}: failed"), per_min(col(1))));
        problems
            .lines
            .push(line_of(&format!("{key}: skipped"), per_min(col(2))));
    }
    cycle.t = axis.clone();
    problems.t = axis;
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

/// Every VM series of each host's latest cycle (VMs and devices present now).
pub fn latest_vm_series(conn: &Connection, now: i64) -> rusqlite::Result<Vec<Latest>> {
    let series = series_where(
        conn,
        "measurement IN ('vm_metrics', 'vm_totals', 'vm_devices', 'vm_features') AND last_ts >= ?1",
        [now - FLEET_WINDOW_MS],
    )?;
    let mut newest: HashMap<String, i64> = HashMap::new();
    for s in &series {
        let e = newest.entry(s.host.clone()).or_insert(s.last_ts);
        *e = (*e).max(s.last_ts);
    }
    let mut out = Vec::new();
    for s in series {
        if newest.get(&s.host) != Some(&s.last_ts) {
            continue;
        }
        let fields = fields_at(conn, s.id, s.last_ts)?;
        out.push(Latest {
            measurement: s.measurement,
            host: s.host,
            name: s.name,
            uuid: s.uuid,
            devtype: s.devtype,
            device: s.device,
            fields,
        });
    }
    Ok(out)
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
