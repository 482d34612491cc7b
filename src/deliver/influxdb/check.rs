//! `vmtel check-output`: is each InfluxDB output reachable, are its credentials accepted and
//! does its database or bucket exist? Writes nothing.
//!
//! | api | reachability | credentials and target |
//! |---|---|---|
//! | v1 | `GET /ping` | `GET /query?q=SHOW DATABASES` |
//! | v2 | `GET /health` | `GET /api/v2/buckets?name=&org=` |
//! | v3 | `GET /health` | `GET /api/v3/configure/database?format=json` |

use std::time::Instant;

use serde_json::Value;

use super::config::{Api, InfluxOutput};
use super::request::{agent, Answer, Endpoint};
use super::response::{server_message, shorten};
use crate::encode::Precision;

/// The verdict on one output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The output's display name.
    pub name: String,
    /// True when the output can be written to as configured.
    pub ok: bool,
    /// One finding per line (`reachable: ...`, `credentials: ...`, `database: ...`).
    pub findings: Vec<String>,
}

/// Checks one output.
pub fn check(cfg: &InfluxOutput, global: Precision) -> Report {
    let mut r = Report {
        name: cfg.display_name(),
        ok: true,
        findings: Vec::new(),
    };
    let (ep, agent) = match Endpoint::new(cfg, global).and_then(|e| Ok((e, agent(cfg)?))) {
        Ok(x) => x,
        Err(e) => {
            r.ok = false;
            r.findings.push(format!("configuration: {e}"));
            return r;
        }
    };
    let health = ep.health_path();
    let started = Instant::now();
    match ep.get(&agent, health, &[]) {
        Err(e) => {
            r.ok = false;
            r.findings
                .push(format!("reachable: no: GET {}{health}: {e}", ep.base));
            return r;
        }
        Ok(a) if a.status == 401 || a.status == 403 => {
            r.ok = false;
            r.findings.push(format!(
                "reachable: yes, but GET {health} answered {}: the credentials are refused ({}); check token_env/token_file",
                a.status,
                server_message(&a.body)
            ));
            return r;
        }
        Ok(a) if !(200..300).contains(&a.status) => {
            r.ok = false;
            r.findings.push(format!(
                "reachable: the server answered GET {health} with {}: {}; check url and api = \"{}\"",
                a.status,
                server_message(&a.body),
                ep.api.as_str()
            ));
            return r;
        }
        Ok(a) => r.findings.push(format!(
            "reachable: yes ({} {} in {} ms)",
            health,
            a.status,
            started.elapsed().as_millis()
        )),
    }
    let (what, answer) = match ep.api {
        Api::V1 => (
            "database",
            ep.get(&agent, "/query", &[("q", "SHOW DATABASES")]),
        ),
        Api::V2 => {
            let mut q = vec![("name", ep.target.as_str())];
            if let Some(org) = ep.org.as_deref() {
                q.push(("org", org));
            }
            ("bucket", ep.get(&agent, "/api/v2/buckets", &q))
        }
        Api::V3 => (
            "database",
            ep.get(&agent, "/api/v3/configure/database", &[("format", "json")]),
        ),
    };
    match answer {
        Err(e) => {
            r.ok = false;
            r.findings.push(format!("credentials: cannot check: {e}"));
        }
        Ok(a) if a.status == 401 || a.status == 403 => {
            r.ok = false;
            r.findings.push(format!(
                "credentials: refused ({} {}); check token_env/token_file{}",
                a.status,
                server_message(&a.body),
                if ep.api == Api::V1 {
                    " or username/password_env"
                } else {
                    ""
                }
            ));
        }
        Ok(a) if (200..300).contains(&a.status) => {
            r.findings.push(format!(
                "credentials: {}",
                if ep.authorization().is_some() {
                    "accepted"
                } else {
                    "none configured; the server did not ask for any"
                }
            ));
            match exists(ep.api, &a, &ep.target) {
                Some(true) => r.findings.push(format!("{what}: {:?} exists", ep.target)),
                Some(false) if ep.api == Api::V3 => r.findings.push(format!(
                    "{what}: {:?} does not exist yet; InfluxDB 3 creates it on the first write",
                    ep.target
                )),
                Some(false) if cfg.create_database => r.findings.push(format!(
                    "{what}: {:?} does not exist; vmtel will create it (create_database = true)",
                    ep.target
                )),
                Some(false) => {
                    r.ok = false;
                    r.findings.push(format!(
                        "{what}: {:?} does not exist; create it on the server{}",
                        ep.target,
                        if ep.api == Api::V2 {
                            ""
                        } else {
                            " or set create_database = true"
                        }
                    ));
                }
                None => r.findings.push(format!(
                    "{what}: cannot tell from the answer ({})",
                    shorten(a.body.trim(), 200)
                )),
            }
        }
        Ok(a) => r.findings.push(format!(
            "{what}: not checked: the server has no such API ({} {}); writes will tell",
            a.status,
            shorten(&server_message(&a.body), 200)
        )),
    }
    r
}

/// Whether `target` is listed in a database or bucket listing (None: unknown shape).
fn exists(api: Api, a: &Answer, target: &str) -> Option<bool> {
    let v: Value = serde_json::from_str(&a.body).ok()?;
    match api {
        Api::V1 => {
            let result = v.get("results")?.get(0)?;
            if let Some(e) = result.get("error").and_then(Value::as_str) {
                // A user without admin rights may not list databases.
                return if e.contains("authoriz") {
                    None
                } else {
                    Some(false)
                };
            }
            let Some(series) = result.get("series") else {
                return Some(false);
            };
            let values = series.get(0)?.get("values")?.as_array()?;
            Some(
                values
                    .iter()
                    .any(|row| row.get(0).and_then(Value::as_str) == Some(target)),
            )
        }
        Api::V2 => {
            let buckets = v.get("buckets")?.as_array()?;
            Some(
                buckets
                    .iter()
                    .any(|b| b.get("name").and_then(Value::as_str) == Some(target)),
            )
        }
        Api::V3 => {
            let rows = v.as_array()?;
            Some(rows.iter().any(|row| {
                row.as_object()
                    .is_some_and(|o| o.values().any(|x| x.as_str() == Some(target)))
            }))
        }
    }
}
