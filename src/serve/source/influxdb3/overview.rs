//! The hosts' CPU trend, the top VMs and vmtel's own health, from InfluxDB 3.

use super::*;

/// The hosts' CPU trend as read so far: per bucket start, each host's mean CPU %.
#[derive(Debug, Default)]
pub(super) struct TrendCache {
    /// The bucket width the buckets are of.
    step: i64,
    buckets: BTreeMap<i64, BTreeMap<String, Option<f64>>>,
    /// When the range was last read in full, ms.
    full_at: i64,
}

impl InfluxDb3 {
    /// Each host's newest `vm_host` values within the last few intervals (the window of the
    /// fleet's latest values; see [`crate::store::overview::host_capacity`]); empty where no
    /// agent writes `vm_host` yet.
    pub fn host_capacity(&self, now: i64) -> Result<BTreeMap<String, Capacity>, QueryError> {
        let columns = self.columns()?;
        let Some(have) = columns.get("vm_host") else {
            return Ok(BTreeMap::new());
        };
        let col = |key: &str| {
            if have.contains(key) {
                format!("CAST({} AS DOUBLE) AS {}", ident(key), ident(key))
            } else {
                format!("CAST(NULL AS DOUBLE) AS {}", ident(key))
            }
        };
        // Each host's two newest lines: the capacity from the newest, the CPU busy share from
        // the counters of both.
        let cpu_cols: Vec<String> = HOST_CPU_KEYS.iter().map(|k| col(k)).collect();
        let rows = self.rows(
            &format!(
                "SELECT host, t, rn, cpus, memtotal, memfree, {} FROM (\
                 SELECT host, CAST(time AS BIGINT) AS t, {}, {}, {}, {}, \
                 row_number() OVER (PARTITION BY host ORDER BY time DESC) AS rn FROM vm_host \
                 WHERE time >= {} AND time <= {}) WHERE rn <= 2 ORDER BY host, rn",
                HOST_CPU_KEYS.map(ident).join(", "),
                col("cpus"),
                col("memtotal"),
                col("memfree"),
                cpu_cols.join(", "),
                at(now - self.recent_ms),
                at(now)
            ),
            &[],
        )?;
        let cpu = |r: &Row| HOST_CPU_KEYS.map(|k| num(r, k));
        let mut out: BTreeMap<String, Capacity> = BTreeMap::new();
        let mut newest: Option<&Row> = None;
        for r in &rows {
            let Some(host) = text(r, "host") else {
                continue;
            };
            if int(r, "rn") == Some(1) {
                let Some(last_ms) = ms(r, "t") else { continue };
                newest = Some(r);
                out.insert(
                    host,
                    Capacity {
                        last_ms,
                        cpus: num(r, "cpus"),
                        mem_total_kib: num(r, "memtotal"),
                        mem_free_kib: num(r, "memfree"),
                        cpu_busy_pct: None,
                    },
                );
            } else if let (Some(c), Some(n)) = (out.get_mut(&host), newest) {
                if text(n, "host").as_deref() == Some(host.as_str()) {
                    c.cpu_busy_pct = host_busy_pct(cpu(r), cpu(n));
                }
            }
        }
        Ok(out)
    }

    /// The mean CPU % of each host's VMs per bucket over `range` ms ending at `now`, in about
    /// `buckets` buckets (see [`crate::store::overview::cpu_trends`]).
    pub fn cpu_trends(
        &self,
        now: i64,
        range: i64,
        buckets: i64,
    ) -> Result<BTreeMap<String, Trend>, QueryError> {
        let columns = self.columns()?;
        if !columns
            .get("vm_features")
            .is_some_and(|c| c.contains("cpu_pct"))
        {
            return Ok(BTreeMap::new());
        }
        let step = (range / buckets.max(1)).max(1000);
        let from = now - range;
        // Buckets before the newest two that were read are kept between requests (a page
        // refreshing every interval then reads minutes, not the hour); the rest is read again.
        // The whole range is read again every FULL_READ_MS, so that lines which arrived late
        // for an older bucket (an agent's spool after an outage) count within minutes.
        let mut cache = self.trends.lock().unwrap_or_else(|poisoned| {
            let mut g = poisoned.into_inner();
            *g = TrendCache::default();
            g
        });
        if cache.step != step || now - cache.full_at >= FULL_READ_MS {
            *cache = TrendCache {
                step,
                buckets: BTreeMap::new(),
                full_at: now,
            };
        }
        cache
            .buckets
            .retain(|b, _| *b >= from.div_euclid(step) * step);
        let keep_before = cache
            .buckets
            .keys()
            .next_back()
            .map_or(i64::MIN, |newest| newest - step);
        let read_from = from.max(keep_before);
        let rows = self.rows(
            &format!(
                "SELECT host, CAST(date_bin(INTERVAL '{step} milliseconds', time, TIMESTAMP '1970-01-01T00:00:00Z') AS BIGINT) AS b, avg(cpu_pct) AS v \
                 FROM vm_features WHERE time >= {} AND time <= {} GROUP BY host, b ORDER BY host, b",
                at(read_from),
                at(now)
            ),
            &[],
        )?;
        cache.buckets.retain(|b, _| *b < keep_before);
        for r in rows {
            let (Some(h), Some(b)) = (text(&r, "host"), ms(&r, "b")) else {
                continue;
            };
            cache.buckets.entry(b).or_default().insert(h, num(&r, "v"));
        }
        let mut out: BTreeMap<String, Trend> = BTreeMap::new();
        for (b, hosts) in &cache.buckets {
            for (h, v) in hosts {
                let t = out.entry(h.clone()).or_default();
                t.t.push(*b);
                t.cpu_pct.push(*v);
            }
        }
        Ok(out)
    }

    /// The 10 VMs (of host `only`, if given) with the highest mean of `by` over `range` ms
    /// ending at `now` (the mean of their `vm_features` values).
    pub fn top(
        &self,
        now: i64,
        by: TopBy,
        range: i64,
        only: Option<&str>,
    ) -> Result<Vec<TopVm>, QueryError> {
        let columns = self.columns()?;
        let Some(present) = columns.get("vm_features") else {
            return Ok(Vec::new());
        };
        let keys: &[&str] = match by {
            TopBy::Cpu => &["cpu_pct"],
            TopBy::Steal => &["cpu_steal_pct"],
            TopBy::Mem => &["mem_used_pct"],
            TopBy::Net => &["net_rx_bps", "net_tx_bps"],
            TopBy::Disk => &["disk_rd_bps", "disk_wr_bps"],
        };
        let keys: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| present.contains(*k))
            .collect();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let (sum, any) = (sum_of(&keys), any_of(&keys));
        let (filter, params): (&str, Vec<Param>) = match only {
            Some(h) => ("host = $host AND ", vec![("host", h)]),
            None => ("", Vec::new()),
        };
        let rows = self.rows(
            &format!(
                "SELECT host, uuid, last_value(name ORDER BY time) AS name, avg({sum}) AS v FROM vm_features \
                 WHERE {filter}({any}) AND time >= {} AND time <= {} GROUP BY host, uuid ORDER BY v DESC, host, name LIMIT 10",
                at(now - range),
                at(now)
            ),
            &params,
        )?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(TopVm {
                    host: text(r, "host")?,
                    uuid: text(r, "uuid")?,
                    name: text(r, "name").unwrap_or_default(),
                    value: num(r, "v")?,
                })
            })
            .collect())
    }

    /// The newest `vmtel_internal` row per agent host and `tag` (`source` or `sink`) within
    /// the last hour.
    pub(super) fn internal_rows(
        &self,
        kind: Kind,
        tag: &str,
        now: i64,
    ) -> Result<Vec<InternalRow>, QueryError> {
        let columns = self.columns()?;
        let Some(present) = columns.get("vmtel_internal") else {
            return Ok(Vec::new());
        };
        let cols: Vec<&str> = kind
            .columns()
            .iter()
            .map(|c| c.key)
            .filter(|k| present.contains(*k))
            .collect();
        let t = ident(tag);
        let mut select = vec![
            format!("{t} AS k"),
            "host".to_owned(),
            "CAST(time AS BIGINT) AS t".to_owned(),
        ];
        select.extend(cols.iter().map(|c| ident(c)));
        let rows = self.rows(
            &format!(
                "SELECT DISTINCT ON (host, {t}) {} FROM vmtel_internal WHERE {t} IS NOT NULL AND time >= {} AND time <= {} ORDER BY host, {t}, time DESC",
                select.join(", "),
                at(now - FLEET_WINDOW_MS),
                at(now)
            ),
            &[],
        )?;
        let mut out: Vec<InternalRow> = rows
            .iter()
            .filter_map(|r| {
                Some(InternalRow {
                    key: text(r, "k")?,
                    host: text(r, "host").unwrap_or_default(),
                    last_ms: ms(r, "t")?,
                    fields: cols
                        .iter()
                        .filter_map(|c| Some(((*c).to_owned(), num(r, c)?)))
                        .collect(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.key, &a.host).cmp(&(&b.key, &b.host)));
        Ok(out)
    }

    /// See [`super::Source::agent`].
    pub fn agent(&self, now: i64) -> Result<AgentHistory, QueryError> {
        let sources = self.internal_rows(Kind::Source, "source", now)?;
        let sinks = self.internal_rows(Kind::Sink, "sink", now)?;
        let (from, step, _) = query::window(now, FLEET_WINDOW_MS);
        let hosts: HashSet<&str> = sources.iter().map(|s| s.host.as_str()).collect();
        // One agent: one line per source. Several agents share source URIs (qemu:///system),
        // so their lines are not told apart here (their latest rows above are, by host), and
        // the chart is left empty.
        let frames = if hosts.len() <= 1 {
            self.frames(
                "vmtel_internal",
                Kind::Source,
                "source IS NOT NULL",
                &[],
                Some("source"),
                (from, now, step),
            )?
        } else {
            Vec::new()
        };
        let mut axis: Vec<i64> = frames
            .iter()
            .flat_map(|(_, f, _)| f.t.iter().copied())
            .collect();
        axis.sort_unstable();
        axis.dedup();
        let align = |f: &Frame, v: Vec<Option<f64>>| -> Vec<Option<f64>> {
            let m: HashMap<i64, Option<f64>> = f.t.iter().copied().zip(v).collect();
            axis.iter().map(|x| m.get(x).copied().flatten()).collect()
        };
        let mut cycle = Vec::new();
        let mut problems = Vec::new();
        for (key, f, _) in &frames {
            let key = key.clone().unwrap_or_default();
            let ms_values = f
                .col(Kind::Source, "cycle_ns")
                .iter()
                .map(|v| v.map(|x| x * 1e-6))
                .collect();
            cycle.push(Line {
                label: key.clone(),
                values: align(f, ms_values),
            });
            for (what, k) in [("failed", "errors"), ("skipped", "skipped_ticks")] {
                let per_min = f
                    .rate(Kind::Source, k, 1.0)
                    .iter()
                    .map(|v| v.map(|x| x * 60.0))
                    .collect();
                problems.push(Line {
                    label: format!("{key}: {what}"),
                    values: align(f, per_min),
                });
            }
        }
        Ok(AgentHistory {
            sources,
            sinks,
            cycle_time: Chart {
                id: "cycle".into(),
                title: "Cycle time per source (ms)".into(),
                unit: "ms".into(),
                t: axis.clone(),
                lines: cycle,
            },
            problems: Chart {
                id: "problems".into(),
                title: "Failed cycles and skipped ticks per minute".into(),
                unit: "/min".into(),
                t: axis,
                lines: problems,
            },
        })
    }
}
