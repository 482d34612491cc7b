//! The fleet's latest rows and one VM's page, from InfluxDB 3.

use super::*;
use crate::serve::source::both;

/// How often the hour of VMs seen is read in full rather than from the last request on.
pub(super) const FULL_READ_MS: i64 = 5 * 60_000;

/// Per (host, UUID): the newest time a VM was seen and its name then.
pub(super) type Seen = HashMap<(String, String), (i64, String)>;

/// The VMs seen within the hour as read so far.
#[derive(Debug, Default)]
pub(super) struct SeenCache {
    /// Up to when it was read.
    read_to: i64,
    /// When the hour was last read in full.
    full_at: i64,
    vms: Seen,
}

/// Adds rows of (host, uuid, name, t) to `seen`, keeping each VM's newest time and its name.
pub(super) fn merge_seen(seen: &mut Seen, rows: &[Row]) {
    for r in rows {
        let (Some(h), Some(u), Some(t)) = (text(r, "host"), text(r, "uuid"), ms(r, "t")) else {
            continue;
        };
        let name = text(r, "name").unwrap_or_default();
        let e = seen.entry((h, u)).or_insert((t, name.clone()));
        if t > e.0 {
            *e = (t, name);
        }
    }
}

impl InfluxDb3 {
    /// The newest row per VM in `vm_totals` and `vm_features` within the fleet window,
    /// optionally of one VM only; with each host's newest time.
    pub(super) fn latest_vms(
        &self,
        now: i64,
        only: Option<(&str, &str)>,
        values: bool,
    ) -> Result<(Vec<VmRow>, BTreeMap<String, i64>), QueryError> {
        let columns = self.columns()?;
        let has = |table: &str, col: &str| columns.get(table).is_some_and(|c| c.contains(col));
        let opt = |table: &str, col: &str| {
            if has(table, col) {
                ident(col)
            } else {
                format!("NULL AS {}", ident(col))
            }
        };
        let (filter, params): (&str, Vec<Param>) = match only {
            Some((h, u)) => (
                "host = $host AND uuid = $uuid AND ",
                vec![("host", h), ("uuid", u)],
            ),
            None => ("", Vec::new()),
        };
        // Latest values come from the last few minutes only (a VM in its host's latest cycle is
        // there); which VMs were seen within the hour, and when last, from one aggregate over
        // the hour that reads tags and times only.
        let seen_q = |from: i64| {
            format!(
                "SELECT host, uuid, name, CAST(max(time) AS BIGINT) AS t FROM vm_totals \
                 WHERE {filter}time >= {} AND time <= {} GROUP BY host, uuid, name",
                at(from),
                at(now)
            )
        };
        // Which VMs were seen within the hour: for the whole fleet, what earlier requests read
        // is kept, and only the time since (with a margin for lines still arriving) is read.
        let seen_of = || -> Result<Seen, QueryError> {
            if only.is_some() {
                let mut last = HashMap::new();
                merge_seen(
                    &mut last,
                    &self.rows(&seen_q(now - FLEET_WINDOW_MS), &params)?,
                );
                return Ok(last);
            }
            // A panic elsewhere while the lock was held leaves nothing worth keeping.
            let mut cache = self.seen.lock().unwrap_or_else(|poisoned| {
                let mut g = poisoned.into_inner();
                *g = SeenCache::default();
                g
            });
            let hour = now - FLEET_WINDOW_MS;
            // The hour is read in full at first and every FULL_READ_MS (lines that arrived
            // late, e.g. an agent's spool after an outage, count from then on); in between
            // only the time since the last request, with a margin for lines still arriving.
            let from = if cache.read_to > hour && now - cache.full_at < FULL_READ_MS {
                (cache.read_to - 2 * self.interval_ms - 30_000).max(hour)
            } else {
                cache.vms.clear();
                cache.full_at = now;
                hour
            };
            let rows = self.rows(&seen_q(from), &params)?;
            merge_seen(&mut cache.vms, &rows);
            cache.vms.retain(|_, (t, _)| *t >= hour);
            cache.read_to = now;
            Ok(cache.vms.clone())
        };
        let window = format!(
            "time >= {} AND time <= {}",
            at(now - self.recent_ms),
            at(now)
        );
        let totals_q = format!(
                "SELECT DISTINCT ON (host, uuid) host, uuid, name, \"VMID\" AS vmid, CAST(time AS BIGINT) AS t, {}, {}, {} \
                 FROM vm_totals WHERE {filter}{window} ORDER BY host, uuid, time DESC",
                opt("vm_totals", "state"),
                opt("vm_totals", "cpus"),
                opt("vm_totals", "memactual"),
            );
        let feature_cols = [
            "cpu_pct",
            "mem_used_pct",
            "net_rx_bps",
            "net_tx_bps",
            "disk_rd_bps",
            "disk_wr_bps",
        ];
        let features_q = format!(
            "SELECT DISTINCT ON (host, uuid) host, uuid, CAST(time AS BIGINT) AS t, {} \
                 FROM vm_features WHERE {filter}{window} ORDER BY host, uuid, time DESC",
            feature_cols
                .iter()
                .map(|c| opt("vm_features", c))
                .collect::<Vec<_>>()
                .join(", ")
        );
        // The three at once: the hour's aggregate takes about as long as the other two.
        let (seen, (totals, features)) = both(seen_of, || {
            if !values {
                return (Ok(Vec::new()), Ok(Vec::new()));
            }
            both(
                || self.rows(&totals_q, &params),
                || self.rows(&features_q, &params),
            )
        });
        let (seen, totals, features) = (seen?, totals?, features?);
        let mut feat: HashMap<(String, String), (i64, Row)> = HashMap::new();
        for r in features {
            if let (Some(h), Some(u), Some(t)) = (text(&r, "host"), text(&r, "uuid"), ms(&r, "t")) {
                feat.insert((h, u), (t, r));
            }
        }
        // Every VM seen within the hour, by its newest name; its latest row if recent.
        let last = seen;
        let mut latest: HashMap<(String, String), Row> = HashMap::new();
        for r in totals {
            if let (Some(h), Some(u)) = (text(&r, "host"), text(&r, "uuid")) {
                latest.insert((h, u), r);
            }
        }
        let mut newest: BTreeMap<String, i64> = BTreeMap::new();
        let mut vms = Vec::with_capacity(last.len());
        for ((host, uuid), (seen_t, seen_name)) in last {
            let empty = Row::new();
            let r = latest.get(&(host.clone(), uuid.clone())).unwrap_or(&empty);
            let t = ms(r, "t").unwrap_or(seen_t).max(seen_t);
            let e = newest.entry(host.clone()).or_insert(t);
            *e = (*e).max(t);
            // The rates of the same cycle, or of the one before while this cycle's
            // `vm_features` lines are still on their way (an agent's lines of one cycle can
            // arrive in more than one request).
            let f = feat
                .get(&(host.clone(), uuid.clone()))
                .filter(|(ft, _)| *ft <= t && *ft >= t - self.interval_ms)
                .map(|(_, r)| r);
            let fv = |k: &str| f.and_then(|r| num(r, k));
            vms.push(VmRow {
                name: text(r, "name").unwrap_or(seen_name),
                vmid: text(r, "vmid"),
                state: int(r, "state"),
                vcpus: num(r, "cpus"),
                mem_kib: num(r, "memactual"),
                cpu_pct: fv("cpu_pct"),
                mem_used_pct: fv("mem_used_pct"),
                net_rx_bps: fv("net_rx_bps"),
                net_tx_bps: fv("net_tx_bps"),
                disk_rd_bps: fv("disk_rd_bps"),
                disk_wr_bps: fv("disk_wr_bps"),
                last_seen_ms: t,
                current: false,
                host,
                uuid,
            });
        }
        Ok((vms, newest))
    }

    /// See [`super::Source::fleet`].
    pub fn fleet(&self, now: i64) -> Result<Fleet, QueryError> {
        self.fleet_of(now, true)
    }

    /// Which hosts and VMs are there and current, without their values (what the problem
    /// rules need: only the hour of VMs seen is read).
    pub fn presence(&self, now: i64) -> Result<Fleet, QueryError> {
        self.fleet_of(now, false)
    }

    pub(super) fn fleet_of(&self, now: i64, values: bool) -> Result<Fleet, QueryError> {
        let (mut vms, newest) = self.latest_vms(now, None, values)?;
        for v in &mut vms {
            v.current = newest.get(&v.host).is_some_and(|n| *n <= v.last_seen_ms);
        }
        vms.sort_by(|a, b| (&a.host, &a.name, &a.uuid).cmp(&(&b.host, &b.name, &b.uuid)));
        Ok(Fleet::of(vms, &newest))
    }

    /// See [`super::Source::vm_detail`].
    pub fn vm_detail(
        &self,
        host: &str,
        uuid: &str,
        now: i64,
        range: i64,
    ) -> Result<Option<VmDetail>, QueryError> {
        let (from, step, _) = query::window(now, range);
        let params = [("host", host), ("uuid", uuid)];
        let vm_filter = "host = $host AND uuid = $uuid";
        let range_of = (from, now, step);
        let device_frames_of = |kind: Kind, devtype: &str| {
            let filter = format!("{vm_filter} AND devtype = '{devtype}'");
            self.frames(
                "vm_devices",
                kind,
                &filter,
                &params,
                Some("device"),
                range_of,
            )
        };
        let host_newest_of = || {
            self.rows(
                &format!(
                    "SELECT CAST(max(time) AS BIGINT) AS t FROM vm_totals WHERE host = $host AND time >= {} AND time <= {}",
                    at(now - self.recent_ms),
                    at(now)
                ),
                &[("host", host)],
            )
        };
        // Every query at once: each reads its own slice of the range.
        let ((vm, (nics, disks)), (latest_vms, host_newest)) = both(
            || {
                both(
                    || self.frames("vm_totals", Kind::Vm, vm_filter, &params, None, range_of),
                    || {
                        both(
                            || device_frames_of(Kind::Nic, "nic"),
                            || device_frames_of(Kind::Disk, "disk"),
                        )
                    },
                )
            },
            || {
                both(
                    || self.latest_vms(now, Some((host, uuid)), true),
                    host_newest_of,
                )
            },
        );
        let vm = vm?.into_iter().next().map(|(_, f, _)| f);
        let mut device_frames = Vec::new();
        let mut devices = Vec::new();
        for (kind, devtype, frames) in [(Kind::Nic, "nic", nics?), (Kind::Disk, "disk", disks?)] {
            for (name, f, last) in frames {
                let name = name.unwrap_or_default();
                devices.push(Device {
                    devtype: devtype.into(),
                    device: name.clone(),
                    mac: None,
                    path: None,
                    last_seen_ms: last,
                });
                device_frames.push((kind, name, f));
            }
        }
        let (latest_rows, newest) = latest_vms?;
        let host_newest = host_newest?
            .first()
            .and_then(|r| ms(r, "t"))
            .or_else(|| newest.get(host).copied());
        let latest = latest_rows.into_iter().next().map(|mut v| {
            v.current = host_newest.is_some_and(|n| n <= v.last_seen_ms);
            v
        });
        let name = match (&latest, &vm) {
            (Some(l), _) => l.name.clone(),
            _ => {
                let found = self.rows(
                    &format!(
                        "SELECT name FROM vm_totals WHERE host = $host AND uuid = $uuid AND time >= {} AND time <= {} ORDER BY time DESC LIMIT 1",
                        at(now - LOOKUP_MS.max(range)),
                        at(now)
                    ),
                    &params,
                )?;
                match found.first() {
                    Some(r) => text(r, "name").unwrap_or_default(),
                    None => return Ok(None),
                }
            }
        };
        let vm = vm.unwrap_or_default();
        Ok(Some(VmDetail {
            host: host.into(),
            uuid: uuid.into(),
            name,
            latest,
            from_ms: from,
            to_ms: now,
            step_ms: step,
            resolution: "raw",
            charts: query::vm_charts(&vm, &device_frames),
            devices,
        }))
    }
}
