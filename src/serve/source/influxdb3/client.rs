//! Talking to the server: one SQL query (statement parameters, JSON rows, errors that name the
//! fix), the tables' numeric columns, and chart frames bucketed in the database.

use super::*;

impl InfluxDb3 {
    /// Runs one SQL query; `Ok(None)` when a table it reads does not exist yet (nothing was
    /// written to it).
    pub(super) fn sql(&self, q: &str, params: &[Param]) -> Result<Option<Vec<Row>>, QueryError> {
        let params: Map<String, Value> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        let body = serde_json::json!({
            "db": self.database,
            "q": q,
            "format": "json",
            "params": params,
        });
        let mut req = self
            .agent
            .post(&self.endpoint)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {}", t.expose()));
        }
        let started = Instant::now();
        let resp = req.send(body.to_string().as_bytes()).map_err(|e| {
            QueryError::Unavailable(format!(
                "InfluxDB 3 at {} does not answer ({e}); check that it runs and [web.source] url",
                self.shown
            ))
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| match e {
                ureq3::Error::Timeout(_) => QueryError::Unavailable(format!(
                    "InfluxDB 3 at {} did not finish its answer in time ({e}); it may be overloaded: raise [web.source] timeout or look at the server",
                    self.shown
                )),
                e => QueryError::Upstream(format!(
                    "InfluxDB 3 at {} cut its answer short ({e}); see the server's log",
                    self.shown
                )),
            })?;
        tracing::debug!(
            status,
            ms = started.elapsed().as_millis() as u64,
            bytes = text.len(),
            "InfluxDB 3 query: {}",
            q.chars().take(160).collect::<String>()
        );
        let snippet = || text.chars().take(300).collect::<String>();
        match status {
            200..=299 => {}
            401 | 403 => {
                return Err(QueryError::Upstream(format!(
                    "InfluxDB 3 at {} refused the read token ({status}); check [web.source] token_file or token_env (a token that may read database {:?})",
                    self.shown, self.database
                )))
            }
            404 if text.contains("database not found") => {
                return Err(QueryError::Upstream(format!(
                    "InfluxDB 3 at {} has no database {:?}; check [web.source] database, and that the agents' [[outputs.influxdb]] write to it",
                    self.shown, self.database
                )))
            }
            _ if text.contains("table '") && text.contains("not found") => return Ok(None),
            _ => {
                return Err(QueryError::Upstream(format!(
                    "InfluxDB 3 at {} failed a query ({status}): {}",
                    self.shown,
                    snippet()
                )))
            }
        }
        if text.trim().is_empty() {
            return Ok(Some(Vec::new()));
        }
        serde_json::from_str::<Vec<Row>>(&text)
            .map(Some)
            .map_err(|e| {
                QueryError::Upstream(format!(
                    "InfluxDB 3 at {} gave an answer that is not a JSON array of rows ({e}): {}",
                    self.shown,
                    snippet()
                ))
            })
    }

    /// Rows of a query; none when its table does not exist yet.
    pub(super) fn rows(&self, q: &str, params: &[Param]) -> Result<Vec<Row>, QueryError> {
        Ok(self.sql(q, params)?.unwrap_or_default())
    }

    /// The numeric columns of every table (cached for [`COLUMNS_TTL`]).
    pub(super) fn columns(&self) -> Result<Columns, QueryError> {
        if let Ok(g) = self.columns.lock() {
            if let Some((when, c)) = g.as_ref() {
                if when.elapsed() < COLUMNS_TTL {
                    return Ok(c.clone());
                }
            }
        }
        let rows = self.rows(
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'iox'",
            &[],
        )?;
        let mut out: Columns = HashMap::new();
        for r in rows {
            let (Some(t), Some(c), Some(ty)) = (
                text(&r, "table_name"),
                text(&r, "column_name"),
                text(&r, "data_type"),
            ) else {
                continue;
            };
            let set = out.entry(t).or_default();
            if matches!(ty.as_str(), "Int64" | "UInt64" | "Float64") {
                set.insert(c);
            }
        }
        if let Ok(mut g) = self.columns.lock() {
            *g = Some((Instant::now(), out.clone()));
        }
        Ok(out)
    }

    /// Chart frames of `kind`'s columns read from `table`, one per value of the `group` tag
    /// (or one in all), bucketed by `step` ms over `[from, to]`: a counter's last value in each
    /// bucket and its time, a gauge's average. The same buckets as the embedded store's.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn frames(
        &self,
        table: &str,
        kind: Kind,
        filter: &str,
        params: &[Param],
        group: Option<&str>,
        (from, to, step): (i64, i64, i64),
    ) -> Result<Vec<(Option<String>, Frame, i64)>, QueryError> {
        let columns = self.columns()?;
        let Some(present) = columns.get(table) else {
            return Ok(Vec::new());
        };
        let step = step.max(1);
        let mut select = Vec::new();
        if let Some(g) = group {
            select.push(format!("{} AS g", ident(g)));
        }
        select.push(format!(
            "CAST(date_bin(INTERVAL '{step} milliseconds', time, TIMESTAMP '1970-01-01T00:00:00Z') AS BIGINT) AS b"
        ));
        select.push("CAST(max(time) AS BIGINT) AS lt".into());
        for (i, c) in kind.columns().iter().enumerate() {
            if !present.contains(c.key) {
                continue;
            }
            let col = ident(c.key);
            if c.counter {
                select.push(format!(
                    "last_value({col} IGNORE NULLS ORDER BY time) AS v{i}"
                ));
                select.push(format!(
                    "CAST(max(time) FILTER (WHERE {col} IS NOT NULL) AS BIGINT) AS t{i}"
                ));
            } else {
                select.push(format!("avg({col}) AS v{i}"));
            }
        }
        let by = if group.is_some() { "g, b" } else { "b" };
        let q = format!(
            "SELECT {} FROM {} WHERE {filter} AND time >= {} AND time <= {} GROUP BY {by} ORDER BY {by}",
            select.join(", "),
            ident(table),
            at(from),
            at(to),
        );
        let rows = self.rows(&q, params)?;
        let width = kind.columns().len();
        let mut out: Vec<(Option<String>, Frame, i64)> = Vec::new();
        for r in rows {
            let g = group.and_then(|_| text(&r, "g"));
            let Some(b) = ms(&r, "b") else { continue };
            if out.last().is_none_or(|(og, _, _)| *og != g) {
                out.push((
                    g.clone(),
                    Frame {
                        t: Vec::new(),
                        cols: vec![Vec::new(); width],
                        times: vec![Vec::new(); width],
                    },
                    i64::MIN,
                ));
            }
            let Some((_, f, last)) = out.last_mut() else {
                continue;
            };
            *last = (*last).max(ms(&r, "lt").unwrap_or(i64::MIN));
            f.t.push(b);
            for (i, c) in kind.columns().iter().enumerate() {
                f.cols[i].push(num(&r, &format!("v{i}")));
                f.times[i].push(if c.counter {
                    ms(&r, &format!("t{i}"))
                } else {
                    None
                });
            }
        }
        Ok(out)
    }
}
