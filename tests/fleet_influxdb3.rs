//! The fleet dashboard over a real InfluxDB 3 Core server (`../shared/bin/influxdb3`): two
//! `vmtel run` agents write to it, `vmtel serve` reads it (`[web.source] kind = "influxdb3"`).
//!
//! * every VM of every agent is listed by `vmtel serve` with its exact name and host (names and
//!   a host tag with spaces, commas, quotes, backslashes, `=`, HTML, non-ASCII);
//! * one VM's charts read the same from the agent's embedded history and from InfluxDB 3;
//! * the hosts, problems and top answers agree between the two backends, on the test driver's
//!   fleet and on the simulated fleet's troubled VMs (steal, swapping, drops, paused);
//! * injection strings in every query parameter are answered 400/404, never run as SQL;
//! * a refused token, a missing database and a server that is down give 502/503 with an
//!   `{"error"}` that names the fix, and `check-output` reports the read side.
//!
//! Skips (with a note on stderr) when the InfluxDB 3 binary is missing, unless `CI=true`.

#[path = "browser/harness.rs"]
mod harness;
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use harness::{fleet_sources, vms_with_cpu, Vmtel, VMTEL};
use serde_json::Value;
use support::influxdb3::InfluxDb3;

const DB: &str = "fleet";

/// The odd agent's host tag.
const ODD_HOST: &str = "hv \"2\", x=y\\z";

/// VM names of the odd agent.
const ODD_NAMES: [&str; 5] = [
    "web 01, \"eu\"",
    "back\\slash=1",
    "<b>bold & <i>it &amp;",
    "ünïcode ✓ 名前",
    "db=<script>alert(7)",
];

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Percent-encodes everything but unreserved characters.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `[[outputs.influxdb]]` of an agent writing to `server`.
fn output(server: &InfluxDb3, token: &Path) -> String {
    format!(
        "[[outputs.influxdb]]\nurl = \"{}\"\ndatabase = \"{DB}\"\ntoken_file = \"{}\"\nflush_interval = \"100ms\"\n",
        server.url(),
        token.display()
    )
}

/// `[web]` of `vmtel serve` reading `database` on `url` with the token in `token`.
fn serve_config(dir: &Path, url: &str, database: &str, token: &Path) -> std::path::PathBuf {
    let label = token
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or("token");
    let path = dir.join(format!("serve-{database}-{label}.toml"));
    std::fs::write(
        &path,
        format!(
            "interval = \"1s\"\nstate_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:0\"\n[web.source]\nkind = \"influxdb3\"\nurl = \"{url}\"\ndatabase = \"{database}\"\ntoken_file = \"{}\"\ntimeout = \"5s\"\n",
            dir.join("serve-state").display(),
            token.display()
        ),
    )
    .expect("write serve config");
    path
}

fn serve(dir: &Path, config: &Path) -> Vmtel {
    let tmp = tempfile::tempdir_in(dir).expect("temp dir");
    std::fs::copy(config, tmp.path().join("serve.toml")).expect("copy config");
    Vmtel::start_in(tmp, &["serve", "--config", "serve.toml"], &[])
}

/// (host, uuid, name) of every VM of a fleet answer.
fn vms(fleet: &Value) -> BTreeSet<(String, String, String)> {
    fleet["vms"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| {
                    (
                        v["host"].as_str().unwrap_or_default().to_owned(),
                        v["uuid"].as_str().unwrap_or_default().to_owned(),
                        v["name"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The odd agent: one source whose host tag and VM names need escaping everywhere.
fn odd_agent(server: &InfluxDb3, token: &Path) -> Vmtel {
    let tmp = tempfile::tempdir().expect("temp dir");
    let vms: Vec<vmtel::demo::Vm> = ODD_NAMES
        .iter()
        .enumerate()
        .map(|(i, n)| vmtel::demo::Vm::standard(5000 + i, n))
        .collect();
    let (_, uri) = vmtel::demo::write_node(tmp.path(), "odd.xml", &vms).expect("write node");
    let config = format!(
        "interval = \"1s\"\nstate_dir = \"{}\"\n[[sources]]\nuri = \"{uri}\"\nhost = {}\n{}[web]\nlisten = \"127.0.0.1:0\"\n",
        tmp.path().display(),
        toml_str(ODD_HOST),
        output(server, token)
    );
    std::fs::write(tmp.path().join("vmtel.toml"), config).expect("config");
    Vmtel::start_in(tmp, &["run", "--config", "vmtel.toml"], &[])
}

/// One chart line: its label and its values by bucket time.
type Points = (String, Vec<(i64, Option<f64>)>);

/// Values of chart `id`'s lines by bucket time.
fn chart_points(detail: &Value, id: &str) -> Vec<Points> {
    let Some(chart) = detail["charts"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == id))
    else {
        return Vec::new();
    };
    let t: Vec<i64> = chart["t"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    chart["lines"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .map(|l| {
                    let vals = l["values"]
                        .as_array()
                        .map(|v| v.iter().map(Value::as_f64).collect::<Vec<_>>())
                        .unwrap_or_default();
                    (
                        l["label"].as_str().unwrap_or_default().to_owned(),
                        t.iter().copied().zip(vals).collect(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn agents_write_one_influxdb3_and_serve_reads_every_vm() {
    let Some(server) = InfluxDb3::start_or_skip(true) else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let token = work.path().join("token");
    std::fs::write(&token, server.token().expect("admin token")).expect("token file");

    // Agent A: the standard two-host test fleet; agent B: the odd names.
    let a_tmp = tempfile::tempdir().expect("temp dir");
    let a_sources = fleet_sources(a_tmp.path(), 4);
    let a_config = format!(
        "interval = \"1s\"\nstate_dir = \"{}\"\n{a_sources}{}[web]\nlisten = \"127.0.0.1:0\"\n",
        a_tmp.path().display(),
        output(&server, &token)
    );
    std::fs::write(a_tmp.path().join("vmtel.toml"), a_config).expect("config");
    // libvirt's own view of hv0's capacity, for the hosts page's "allocated / capacity".
    let nodeinfo = Command::new("virsh")
        .arg("-c")
        .arg(format!("test://{}", a_tmp.path().join("hv0.xml").display()))
        .arg("nodeinfo")
        .output()
        .expect("virsh nodeinfo");
    let nodeinfo = String::from_utf8_lossy(&nodeinfo.stdout).into_owned();
    let node = |k: &str| -> f64 {
        nodeinfo
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("virsh nodeinfo has no {k}: {nodeinfo}"))
    };
    let (host_cpus, host_mem_kib) = (node("CPU(s)"), node("Memory size"));
    let agent_a = Vmtel::start_in(a_tmp, &["run", "--config", "vmtel.toml"], &[]);
    let agent_b = odd_agent(&server, &token);

    let config = serve_config(work.path(), &server.url(), DB, &token);
    let out = Command::new(VMTEL)
        .args(["check-config"])
        .arg(&config)
        .output()
        .expect("check-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let central = serve(work.path(), &config);

    // Every running VM of both agents, with CPU values, as each agent sees itself.
    let a_fleet = agent_a.wait_json("/api/fleet", 60, "agent A's rates", |f| {
        vms_with_cpu(f) == 8
    });
    let b_fleet = agent_b.wait_json("/api/fleet", 60, "agent B's rates", |f| {
        vms_with_cpu(f) == ODD_NAMES.len()
    });
    let mut want = vms(&a_fleet);
    want.extend(vms(&b_fleet));
    assert!(
        vms(&b_fleet)
            .iter()
            .all(|(h, _, n)| h == ODD_HOST && ODD_NAMES.contains(&n.as_str())),
        "{b_fleet}"
    );
    let fleet = central.wait_json("/api/fleet", 60, "every agent's VMs in InfluxDB 3", |f| {
        vms(f) == want && vms_with_cpu(f) == want.len()
    });
    assert_eq!(fleet["source"]["kind"], "influxdb3", "{fleet}");
    let hosts: BTreeSet<&str> = fleet["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(|h| h["host"].as_str())
        .collect();
    assert_eq!(hosts, BTreeSet::from(["hv0", "hv1", ODD_HOST]), "{fleet}");

    // The odd VMs' pages: found by their exact host and UUID (statement parameters).
    for (host, uuid, name) in vms(&b_fleet) {
        let d = central.json(&format!(
            "/api/vm?host={}&uuid={}&range=15m",
            enc(&host),
            enc(&uuid)
        ));
        assert_eq!(d["name"], name.as_str(), "{d}");
        assert_eq!(d["host"], host.as_str());
    }

    // One VM, one range: the same chart values from the embedded history and from InfluxDB 3.
    let (host, uuid, _) = vms(&a_fleet).into_iter().next().expect("agent A has VMs");
    let path = format!("/api/vm?host={}&uuid={}&range=15m", enc(&host), enc(&uuid));
    // Wait until both hold a few buckets with CPU rates.
    let enough = |d: &Value| {
        chart_points(d, "cpu")
            .first()
            .is_some_and(|(_, p)| p.iter().filter(|(_, v)| v.is_some()).count() >= 4)
    };
    agent_a.wait_json(&path, 60, "CPU buckets in the embedded history", enough);
    central.wait_json(&path, 60, "CPU buckets in InfluxDB 3", enough);
    let local = agent_a.json(&path);
    let remote = central.json(&path);
    assert_eq!(local["step_ms"], remote["step_ms"]);
    let mut compared = 0;
    for id in [
        "cpu",
        "mem",
        "nic:tap0a",
        "nicpkt:tap0b",
        "disk:vda",
        "diskops:vdb",
    ] {
        let l = chart_points(&local, id);
        let r = chart_points(&remote, id);
        assert_eq!(l.len(), r.len(), "chart {id}: lines differ");
        for ((label, lp), (rlabel, rp)) in l.iter().zip(&r) {
            assert_eq!(label, rlabel);
            // Buckets both hold, away from either end (the newest may still be arriving, the
            // oldest may lack its predecessor in one of them).
            let common: Vec<i64> = lp
                .iter()
                .map(|(t, _)| *t)
                .filter(|t| rp.iter().any(|(rt, _)| rt == t))
                .collect();
            let inner = common.get(1..common.len().saturating_sub(2)).unwrap_or(&[]);
            for t in inner {
                let lv = lp.iter().find(|(x, _)| x == t).and_then(|p| p.1);
                let rv = rp.iter().find(|(x, _)| x == t).and_then(|p| p.1);
                match (lv, rv) {
                    (Some(a), Some(b)) => {
                        assert!(
                            (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
                            "{id} {label} at {t}: embedded {a}, InfluxDB 3 {b}"
                        );
                        compared += 1;
                    }
                    (None, None) => {}
                    other => panic!("{id} {label} at {t}: {other:?}"),
                }
            }
        }
    }
    assert!(compared >= 20, "only {compared} values compared");

    // Hosts, problems and top: the same from both backends for agent A's hosts.
    let local_hosts = agent_a.json("/api/hosts");
    let remote_hosts = central.json("/api/hosts");
    for h in ["hv0", "hv1"] {
        let pick = |v: &Value| {
            v["hosts"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["host"] == h))
                .cloned()
                .unwrap_or_else(|| panic!("host {h} missing: {v}"))
        };
        let (l, r) = (pick(&local_hosts), pick(&remote_hosts));
        for k in [
            "running",
            "paused",
            "other",
            "vcpus",
            "mem_bytes",
            "silent",
            "host_cpus",
            "host_mem_bytes",
            "host_mem_free_bytes",
            "host_cpu_pct",
        ] {
            assert_eq!(l[k], r[k], "host {h} {k}: embedded {l}, InfluxDB 3 {r}");
        }
        assert_eq!(r["host_cpus"].as_f64(), Some(host_cpus), "{r}");
        assert_eq!(
            r["host_mem_bytes"].as_f64(),
            Some(host_mem_kib * 1024.0),
            "{r}"
        );
        assert_eq!(l["running"], 4, "{l}");
        let (lc, rc) = (l["cpu_pct"].as_f64(), r["cpu_pct"].as_f64());
        assert!(
            matches!((lc, rc), (Some(a), Some(b)) if (a - b).abs() < 1.0),
            "host {h} CPU %: {lc:?} vs {rc:?}"
        );
    }
    // The CPU trend: read again, the buckets before the newest two are the same (they are kept
    // between requests), and each matches the mean of the host's vm_features lines in it.
    let again = central.json("/api/hosts");
    let trend = |v: &Value, h: &str| -> Vec<(i64, Option<f64>)> {
        let t = v["hosts"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["host"] == h))
            .map(|x| x["trend"].clone())
            .unwrap_or_default();
        t["t"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .zip(t["cpu_pct"].as_array().cloned().unwrap_or_default())
                    .filter_map(|(b, v)| Some((b.as_i64()?, v.as_f64())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (first, second) = (trend(&remote_hosts, "hv0"), trend(&again, "hv0"));
    assert!(!second.is_empty(), "no trend for hv0: {again}");
    let settled = first.len().saturating_sub(2);
    assert_eq!(first[..settled], second[..settled.min(second.len())]);
    if let Some((b, Some(v))) = second.first().copied().filter(|_| second.len() > 2) {
        let rows = server.query_sql(
            DB,
            &format!(
                "SELECT avg(cpu_pct) AS v FROM vm_features WHERE host = 'hv0' AND time >= to_timestamp_millis({b}) AND time < to_timestamp_millis({})",
                b + 120_000
            ),
        );
        let want = rows[0]["v"].as_f64().unwrap_or(f64::NAN);
        assert!(
            (want - v).abs() < 1e-6 * want.abs().max(1.0),
            "bucket {b}: {v} vs {want}"
        );
    }
    let odd = remote_hosts["hosts"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["host"] == ODD_HOST).cloned())
        .expect("the odd host on the hosts page");
    assert_eq!(odd["running"], ODD_NAMES.len(), "{odd}");
    // The test driver's drop and error counters grow with time: every running VM has them
    // rising, from either backend.
    let rules_of = |v: &Value, hosts: &[&str]| -> BTreeSet<(String, String)> {
        v["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .filter(|p| hosts.iter().any(|h| p["host"] == *h))
            .map(|p| {
                (
                    p["rule"].as_str().unwrap_or_default().to_owned(),
                    p["uuid"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let local_problems = agent_a.json("/api/problems");
    let remote_problems = central.json("/api/problems");
    let local_rules = rules_of(&local_problems, &["hv0", "hv1"]);
    assert_eq!(
        local_rules,
        rules_of(&remote_problems, &["hv0", "hv1"]),
        "embedded {local_problems}\nInfluxDB 3 {remote_problems}"
    );
    for rule in ["nic_drops", "nic_errors", "disk_errors"] {
        assert_eq!(
            local_rules.iter().filter(|(r, _)| r == rule).count(),
            8,
            "{rule} for every VM of agent A: {local_problems}"
        );
    }
    let odd_problems = rules_of(&remote_problems, &[ODD_HOST]);
    assert_eq!(
        odd_problems
            .iter()
            .filter(|(r, _)| r == "nic_drops")
            .count(),
        ODD_NAMES.len(),
        "{remote_problems}"
    );
    // Top by CPU: the test driver's VMs use 100 / vCPUs %, so the order is known.
    let names = |v: &Value| -> Vec<(String, String)> {
        v["vms"]
            .as_array()
            .expect("top")
            .iter()
            .map(|x| {
                (
                    x["host"].as_str().unwrap_or_default().to_owned(),
                    x["uuid"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let local_top = agent_a.json("/api/top?by=cpu_pct&range=15m");
    let remote_top = central.json("/api/top?by=cpu_pct&range=15m");
    assert_eq!(
        remote_top["vms"].as_array().map(Vec::len),
        Some(10),
        "{remote_top}"
    );
    let local_a = names(&local_top);
    assert_eq!(local_a.len(), 8, "{local_top}");
    // Of one host: hv0's four VMs, from both.
    let remote_a = names(&central.json("/api/top?by=cpu_pct&range=15m&host=hv0"));
    let local_hv0 = names(&agent_a.json("/api/top?by=cpu_pct&range=15m&host=hv0"));
    assert_eq!(remote_a, local_hv0);
    let odd_top = central.json(&format!("/api/top?by=net&range=15m&host={}", enc(ODD_HOST)));
    assert_eq!(
        odd_top["vms"].as_array().map(Vec::len),
        Some(ODD_NAMES.len()),
        "{odd_top}"
    );
    // Highest CPU first: the test driver's VMs use 100 / vCPUs %.
    let vcpus_of = |list: &[(String, String)]| -> Vec<f64> {
        list.iter()
            .map(|(h, u)| {
                a_fleet["vms"]
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .find(|v| v["host"] == h.as_str() && v["uuid"] == u.as_str())
                    })
                    .and_then(|v| v["vcpus"].as_f64())
                    .unwrap_or(f64::NAN)
            })
            .collect()
    };
    assert_eq!(vcpus_of(&remote_a), [1.0, 2.0, 4.0, 8.0]);
    assert_eq!(vcpus_of(&local_a), [1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 8.0, 8.0]);

    // Injection strings in every parameter: answered, never run.
    let nasty = [
        "' OR '1'='1",
        "x'; DROP TABLE vm_totals; --",
        "\" OR \"\"=\"",
        "$host",
        "\\' OR 1=1 --",
        "hv0' UNION SELECT * FROM vm_totals --",
        "%00",
        "😀'",
    ];
    for s in nasty {
        for path in [
            format!("/api/vm?host={}&uuid={}&range=15m", enc(s), enc(&uuid)),
            format!("/api/vm?host={}&uuid={}&range=15m", enc(&host), enc(s)),
            format!(
                "/api/vm?host={}&uuid={}&range={}",
                enc(&host),
                enc(&uuid),
                enc(s)
            ),
            format!("/api/top?by={}&range=1h", enc(s)),
            format!("/api/top?by=net&range={}", enc(s)),
            format!("/api/fleet?sort={}", enc(s)),
            format!("/api/fleet?dir={}", enc(s)),
            format!("/api/fleet?limit={}", enc(s)),
            format!("/api/fleet?state={}", enc(s)),
        ] {
            let (code, body, _) = central.get(&path, &[]);
            assert!(
                code == 404 || code == 400,
                "{path}: {code} {body}\n{}",
                central.stderr()
            );
            let v: Value = serde_json::from_str(&body).expect("JSON error");
            assert!(v["error"].is_string(), "{body}");
            assert_eq!(
                v["source"]["kind"], "influxdb3",
                "every answer names its source: {body}"
            );
        }
    }
    for s in nasty {
        // A filter, host or top host that matches nothing: an empty answer, not an error.
        for path in [
            format!("/api/fleet?q={}", enc(s)),
            format!("/api/fleet?host={}", enc(s)),
        ] {
            let v = central.json(&path);
            assert_eq!(v["total"], 0, "{path}: {v}");
        }
        let v = central.json(&format!("/api/top?by=cpu_pct&range=1h&host={}", enc(s)));
        assert_eq!(v["vms"].as_array().map(Vec::len), Some(0), "{v}");
    }
    let after = central.json("/api/fleet");
    assert_eq!(
        vms(&after),
        want,
        "the data is intact after the injection attempts"
    );

    // Filtering, sorting and paging on the server.
    let page = central.json("/api/fleet?sort=cpu_pct&dir=desc&offset=1&limit=3");
    assert_eq!(page["total"], want.len(), "{page}");
    let cpu: Vec<f64> = page["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .filter_map(|v| v["cpu_pct"].as_f64())
        .collect();
    assert_eq!(cpu.len(), 3, "{page}");
    assert!(cpu.windows(2).all(|w| w[0] >= w[1]), "{cpu:?}");
    let running = central.json("/api/fleet?state=running&limit=1");
    assert_eq!(running["total"], want.len(), "{running}");
    assert_eq!(running["vms"].as_array().map(Vec::len), Some(1));
    assert_eq!(central.json("/api/fleet?state=paused")["total"], 0);
    let by_rx = central.json("/api/fleet?sort=net_rx_bps&dir=desc");
    let rx: Vec<f64> = by_rx["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .filter_map(|v| v["net_rx_bps"].as_f64())
        .collect();
    assert!(
        rx.len() >= 2 && rx.windows(2).all(|w| w[0] >= w[1]),
        "{rx:?}"
    );
    let filtered = central.json(&format!("/api/fleet?q={}", enc("ÜNÏCODE")));
    assert_eq!(
        filtered["total"], 1,
        "case-insensitive name filter: {filtered}"
    );

    // A refused token, a missing database: 502 with the fix.
    let wrong = work.path().join("wrong-token");
    std::fs::write(&wrong, "apiv3_not-a-token").expect("write");
    let refused = serve(
        work.path(),
        &serve_config(work.path(), &server.url(), DB, &wrong),
    );
    let (code, body, _) = refused.get("/api/fleet", &[]);
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("refused the read token"), "{body}");
    assert!(
        !body.contains("apiv3_not-a-token"),
        "the token leaks: {body}"
    );
    let missing = serve(
        work.path(),
        &serve_config(work.path(), &server.url(), "nosuchdb", &token),
    );
    let (code, body, _) = missing.get("/api/fleet", &[]);
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("no database \\\"nosuchdb\\\""), "{body}");
    let out = Command::new(VMTEL)
        .args(["check-output", "--config"])
        .arg(serve_config(work.path(), &server.url(), "nosuchdb", &token))
        .output()
        .expect("check-output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("web.source (read): FAILED"), "{text}");
    let out = Command::new(VMTEL)
        .args(["check-output", "--config"])
        .arg(&config)
        .output()
        .expect("check-output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("web.source (read): ok"),
        "{text}"
    );

    // The server down: 503, and the page's API says so.
    let url = server.url();
    drop(server);
    let (code, body, _) = central.get("/api/fleet", &[]);
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("does not answer"), "{body}");
    assert!(body.contains(&url), "{body}");
    drop((agent_a, agent_b, refused, missing, central));
}

/// vmtel's InfluxDB 3 reader of `server`'s database [`DB`] (its token in a file of the returned
/// directory), as `vmtel serve` builds it.
fn reader_of(
    server: &InfluxDb3,
) -> (
    tempfile::TempDir,
    vmtel::serve::source::influxdb3::InfluxDb3,
) {
    use vmtel::serve::source::config::{SourceConfig, SourceKind};
    let work = tempfile::tempdir().expect("temp dir");
    let token = work.path().join("token");
    std::fs::write(&token, server.token().expect("admin token")).expect("token file");
    let reader = vmtel::serve::source::influxdb3::InfluxDb3::new(
        &SourceConfig {
            kind: SourceKind::Influxdb3,
            url: Some(server.url()),
            database: Some(DB.into()),
            token_file: Some(token),
            ..SourceConfig::default()
        },
        std::time::Duration::from_secs(10),
    )
    .expect("reader");
    (work, reader)
}

/// The hosts' CPU trend from InfluxDB 3 keeps the buckets it read between requests, and reads
/// the hour in full again every 5 minutes: a line that arrives late for an older bucket (an
/// agent's spool after an outage) is missed by the next refresh and counted within 5 minutes.
#[test]
fn late_lines_reach_the_hosts_trend_within_a_full_read() {
    let Some(server) = InfluxDb3::start_or_skip(true) else {
        return;
    };
    let (_work, reader) = reader_of(&server);
    const STEP: i64 = 120_000;
    let now = harness::now_ms().div_euclid(STEP) * STEP + 1_000;
    let line = |t_ms: i64, cpu: f64| {
        format!(
            "vm_features,host=late,uuid=u1,name=n1 cpu_pct={cpu} {}\n",
            t_ms * 1_000_000
        )
    };
    // Buckets 30 and 2 minutes back; then, late, one 20 minutes back.
    let (a, b, c) = (now - 30 * 60_000, now - 20 * 60_000, now - 2 * 60_000);
    let (code, body) = server.write_lp(DB, &(line(a, 10.0) + &line(c, 30.0)), "nanosecond");
    assert!(code < 300, "write: {code} {body}");
    let bucket_of = |t: i64| t.div_euclid(STEP) * STEP;
    let value_at = |now: i64, t: i64| -> Option<f64> {
        let trends = reader.cpu_trends(now, 3_600_000, 30).expect("trend");
        let trend = trends.get("late")?;
        let i = trend.t.iter().position(|&x| x == bucket_of(t))?;
        trend.cpu_pct[i]
    };
    assert_eq!(value_at(now, a), Some(10.0));
    assert_eq!(value_at(now, c), Some(30.0));
    let (code, body) = server.write_lp(DB, &line(b, 50.0), "nanosecond");
    assert!(code < 300, "write: {code} {body}");
    assert_eq!(
        value_at(now + 60_000, b),
        None,
        "a refresh reads only the newest buckets"
    );
    assert_eq!(
        value_at(now + 6 * 60_000, b),
        Some(50.0),
        "the full read after 5 minutes counts the late line"
    );
}

/// A host's capacity from InfluxDB 3: the newest `vm_host` line's CPUs and memory, and the busy
/// share of its CPUs between its two newest lines (user + kernel of all four counters' growth),
/// whatever lines came before or other hosts wrote.
#[test]
fn host_capacity_and_busy_share_from_the_two_newest_host_lines() {
    let Some(server) = InfluxDb3::start_or_skip(true) else {
        return;
    };
    let (_work, reader) = reader_of(&server);
    let now = harness::now_ms();
    let line = |host: &str, t_ms: i64, u: i64, k: i64, i: i64, w: i64, free: i64| {
        format!(
            "vm_host,host={host} cpus=32i,memtotal=134217728i,memfree={free}i,cpu_user={u}i,cpu_kernel={k}i,cpu_idle={i}i,cpu_iowait={w}i {}\n",
            t_ms * 1_000_000
        )
    };
    let body = [
        // hv a: an older line, then 30 user + 10 kernel of 100 between the two newest: 40 %.
        line("a", now - 30_000, 1, 1, 1, 1, 1),
        line("a", now - 20_000, 100, 50, 1000, 5, 7),
        line("a", now - 10_000, 130, 60, 1050, 15, 9),
        // hv b: one line only, so no busy share.
        line("b", now - 10_000, 5, 5, 5, 5, 11),
    ]
    .concat();
    let (code, text) = server.write_lp(DB, &body, "nanosecond");
    assert!(code < 300, "write: {code} {text}");
    let cap = reader.host_capacity(now).expect("capacity");
    let a = cap.get("a").expect("host a");
    assert_eq!(a.last_ms, now - 10_000);
    assert_eq!(
        (a.cpus, a.mem_total_kib, a.mem_free_kib),
        (Some(32.0), Some(134217728.0), Some(9.0))
    );
    assert_eq!(a.cpu_busy_pct, Some(40.0));
    let b = cap.get("b").expect("host b");
    assert_eq!((b.mem_free_kib, b.cpu_busy_pct), (Some(11.0), None));
}

/// (rule, host, uuid) → since (ms) of every problem in a problems answer.
fn problem_set(v: &Value) -> std::collections::BTreeMap<(String, String, String), i64> {
    v["problems"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let s = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
                    (
                        (s("rule"), s("host"), s("uuid")),
                        p["since_ms"].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The simulated fleet's troubles (a VM with high steal, one swapping, one dropping packets,
/// one paused), written by a `vmtel run` agent to InfluxDB 3: `vmtel serve` finds the same
/// problems, with the same "since", as the agent's own embedded history; and both lead the
/// steal list with the stealing VM. The expectations come from the simulation's description of
/// its fleet, not from either backend.
#[test]
fn simulated_troubles_are_the_same_problems_from_both_backends() {
    use vmtel::collect::simulated::{demo_uri, DEMO_HOSTS, DEMO_VMS};
    use vmtel::sim::{host_name, SimFleet, SimOptions};

    let Some(server) = InfluxDb3::start_or_skip(true) else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let token = work.path().join("token");
    std::fs::write(&token, server.token().expect("admin token")).expect("token file");
    let tmp = tempfile::tempdir().expect("temp dir");
    let sources: String = (1..=DEMO_HOSTS)
        .map(|n| format!("[[sources]]\nuri = \"{}\"\n", demo_uri(n)))
        .collect();
    // Milliseconds, so that "since" reads the same from the history and from InfluxDB 3.
    std::fs::write(
        tmp.path().join("vmtel.toml"),
        format!(
            "interval = \"1s\"\nprecision = \"ms\"\nstate_dir = \"{}\"\n{sources}{}[web]\nlisten = \"127.0.0.1:0\"\n",
            tmp.path().display(),
            output(&server, &token)
        ),
    )
    .expect("config");
    let agent = Vmtel::start_in(tmp, &["run", "--config", "vmtel.toml"], &[]);
    let central = serve(
        work.path(),
        &serve_config(work.path(), &server.url(), DB, &token),
    );

    let fleet = SimFleet::new(SimOptions {
        hosts: DEMO_HOSTS,
        vms_per_host: DEMO_VMS,
        ..SimOptions::default()
    });
    let troubled: Vec<(String, String, String)> = fleet
        .vms
        .iter()
        .filter_map(|x| {
            let rule = x.trouble.problem_rule()?;
            Some((rule.to_owned(), host_name(x.host), x.uuid.clone()))
        })
        .collect();
    assert_eq!(troubled.len(), 4, "the simulation has four troubled VMs");
    let all_troubles = |v: &Value| {
        let p = problem_set(v);
        troubled.iter().all(|k| p.contains_key(k))
    };
    agent.wait_json("/api/problems", 60, "the troubles, embedded", all_troubles);
    central.wait_json(
        "/api/problems",
        60,
        "the troubles, InfluxDB 3",
        all_troubles,
    );

    // Both backends judge the same lines: the same problems (every rule, every VM and host),
    // each since the same cycle. A cycle may land between the two requests, so ask again
    // until two answers in a row agree, for a bounded time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (local, remote) = loop {
        let local = problem_set(&agent.json("/api/problems"));
        let remote = problem_set(&central.json("/api/problems"));
        if local == remote || std::time::Instant::now() > deadline {
            break (local, remote);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(local, remote, "embedded vs InfluxDB 3");
    for k in &troubled {
        assert!(local.contains_key(k), "{k:?} missing: {local:?}");
    }

    let steal_vm = &troubled
        .iter()
        .find(|(r, _, _)| r == "steal")
        .expect("steal")
        .2;
    for v in [&agent, &central] {
        let top = v.json("/api/top?by=cpu_steal_pct&range=15m");
        assert_eq!(top["vms"][0]["uuid"], steal_vm.as_str(), "{top}");
    }
}
