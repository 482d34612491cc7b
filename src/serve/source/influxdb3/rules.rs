//! The problem rules as SQL, evaluated in the database.

use super::*;
use crate::serve::source::both;

impl InfluxDb3 {
    /// The VM rules of [`super::problems`] as SQL, evaluated in the database over the last
    /// `window`: one query per table (`vm_features`: steal, memory; `vm_totals`: state and the
    /// rising counters), each one pass over the window and one over its per-VM summary; only
    /// the VMs that fire come back.
    pub fn vm_problems(&self, now: i64, cfg: &ProblemsConfig) -> Result<Vec<Problem>, QueryError> {
        let columns = self.columns()?;
        let has = |t: &str, c: &str| columns.get(t).is_some_and(|s| s.contains(c));
        let range = format!(
            "time >= {} AND time <= {}",
            at(now - cfg.window_ms()),
            at(now)
        );
        let window = crate::serve::source::problems::humantime_window(cfg);
        // Per table: streak rules (id, condition, value column, cycles) and rising rules (id,
        // counter columns).
        type Streak<'a> = (&'static str, String, &'a str, u32);
        let features: Vec<Streak> = [
            (
                "steal",
                "cpu_steal_pct",
                format!("cpu_steal_pct > {:?}", cfg.steal_pct),
            ),
            (
                "mem_full",
                "mem_used_pct",
                format!("mem_used_pct >= {:?}", cfg.mem_used_pct),
            ),
        ]
        .into_iter()
        .filter(|(_, col, _)| has("vm_features", col))
        .map(|(id, col, cond)| (id, cond, col, cfg.cycles))
        .collect();
        let totals: Vec<Streak> = if has("vm_totals", "state") {
            vec![
                ("crashed", "state = 6".to_owned(), "state", 1),
                ("paused", "state = 3".to_owned(), "state", 1),
            ]
        } else {
            Vec::new()
        };
        let rising: Vec<(&'static str, Vec<&str>)> = [
            ("swapping", vec!["memswap_in", "memswap_out"]),
            ("disk_errors", vec!["disk_errors"]),
            ("nic_errors", vec!["net_rxerrors", "net_txerrors"]),
            ("nic_drops", vec!["net_rxdrops", "net_txdrops"]),
        ]
        .into_iter()
        .map(|(id, keys)| {
            (
                id,
                keys.into_iter()
                    .filter(|k| has("vm_totals", k))
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, keys)| !keys.is_empty())
        .collect();
        // One table's rules: its query, then the problems of the rows that come back.
        let run = |table: &str, streaks: &[Streak], rising: &[(&'static str, Vec<&str>)]| {
            let mut out = Vec::new();
            if streaks.is_empty() && rising.is_empty() {
                return Ok(out);
            }
            // w: the window's rows with each rule's input; s: per VM, the last time each
            // streak condition did not hold and each counter's first and last value.
            let mut w_cols = Vec::new();
            let mut s_cols = Vec::new();
            let mut out_cols = Vec::new();
            let mut fired = Vec::new();
            // Which VMs can fire at all, from the summary alone: only their rows are joined
            // back (the join is the costly part over a whole fleet's window).
            let mut may_fire = Vec::new();
            for (i, (_, cond, value, min)) in streaks.iter().enumerate() {
                w_cols.push(format!(
                    "coalesce({cond}, false) AS bad{i}, {} AS val{i}",
                    ident(value)
                ));
                s_cols.push(format!("max(time) FILTER (WHERE NOT bad{i}) AS ok{i}"));
                let inside = format!("w.bad{i} AND (s.ok{i} IS NULL OR w.time > s.ok{i})");
                out_cols.push(format!(
                    "CAST(min(w.time) FILTER (WHERE {inside}) AS BIGINT) AS since{i}, \
                     count(*) FILTER (WHERE {inside}) AS n{i}, last_value(w.val{i} ORDER BY w.time) AS v{i}"
                ));
                fired.push(format!("count(*) FILTER (WHERE {inside}) >= {min}"));
                may_fire.push(format!(
                    "(count(*) FILTER (WHERE bad{i}) >= {min} AND coalesce(max(time) FILTER (WHERE NOT bad{i}) < max(time), true))"
                ));
            }
            for (j, (_, keys)) in rising.iter().enumerate() {
                let (x, any) = (sum_of(keys), any_of(keys));
                w_cols.push(format!("CASE WHEN {any} THEN {x} END AS x{j}"));
                s_cols.push(format!(
                    "first_value(x{j} IGNORE NULLS ORDER BY time) AS f{j}, last_value(x{j} IGNORE NULLS ORDER BY time) AS l{j}"
                ));
                out_cols.push(format!(
                    "CAST(min(w.time) FILTER (WHERE w.x{j} > s.f{j}) AS BIGINT) AS rsince{j}, max(s.l{j} - s.f{j}) AS rv{j}"
                ));
                fired.push(format!("max(s.l{j}) > max(s.f{j})"));
                may_fire.push(format!(
                    "last_value(x{j} IGNORE NULLS ORDER BY time) > first_value(x{j} IGNORE NULLS ORDER BY time)"
                ));
            }
            let q = format!(
                "WITH w AS (SELECT host, uuid, name, time, {} FROM {} WHERE {range}), \
                 s AS (SELECT host, uuid, {} FROM w GROUP BY host, uuid HAVING {}) \
                 SELECT w.host AS host, w.uuid AS uuid, last_value(w.name ORDER BY w.time) AS name, {} \
                 FROM w JOIN s ON w.host = s.host AND w.uuid = s.uuid GROUP BY w.host, w.uuid HAVING {}",
                w_cols.join(", "),
                ident(table),
                s_cols.join(", "),
                may_fire.join(" OR "),
                out_cols.join(", "),
                fired.join(" OR "),
            );
            for r in self.rows(&q, &[])? {
                let (Some(host), Some(uuid)) = (text(&r, "host"), text(&r, "uuid")) else {
                    continue;
                };
                let name = text(&r, "name");
                let mut push = |rule: &'static str, why: String, since: i64, value: Option<f64>| {
                    out.push(Problem {
                        rule,
                        host: host.clone(),
                        uuid: Some(uuid.clone()),
                        name: name.clone(),
                        why,
                        since_ms: since,
                        value,
                    });
                };
                for (i, (rule, _, _, min)) in streaks.iter().enumerate() {
                    let n = int(&r, &format!("n{i}")).unwrap_or(0);
                    let Some(since) = ms(&r, &format!("since{i}")) else {
                        continue;
                    };
                    if n < i64::from(*min) {
                        continue;
                    }
                    let v = num(&r, &format!("v{i}"));
                    let x = v.unwrap_or_default();
                    let why = match *rule {
                        "steal" => format!(
                            "vCPU steal {x:.1} % (above {} % for {n} cycles)",
                            cfg.steal_pct
                        ),
                        "mem_full" => format!(
                            "guest memory {x:.1} % in use (at or above {} % for {n} cycles)",
                            cfg.mem_used_pct
                        ),
                        "crashed" => "the VM is crashed".to_owned(),
                        _ => "the VM is paused".to_owned(),
                    };
                    let value = if matches!(*rule, "steal" | "mem_full") {
                        v
                    } else {
                        None
                    };
                    push(rule, why, since, value);
                }
                for (j, (rule, _)) in rising.iter().enumerate() {
                    let (Some(since), Some(by)) =
                        (ms(&r, &format!("rsince{j}")), num(&r, &format!("rv{j}")))
                    else {
                        continue;
                    };
                    if by <= 0.0 {
                        continue;
                    }
                    let what = match *rule {
                        "swapping" => "KiB swapped in and out",
                        "disk_errors" => "disk errors",
                        "nic_errors" => "NIC errors",
                        _ => "NIC drops",
                    };
                    push(
                        rule,
                        format!("{by:.0} {what} within the last {window}"),
                        since,
                        Some(by),
                    );
                }
            }
            Ok::<_, QueryError>(out)
        };
        let (a, b) = both(
            || run("vm_features", &features, &[]),
            || run("vm_totals", &totals, &rising),
        );
        let mut out = a?;
        out.extend(b?);
        Ok(out)
    }
}
