//! The JSON API, `/metrics` and the security rules, against a running `vmtel run` on a
//! test-driver fleet (2 hosts, 8 VMs each, one named `db=<script>alert(7)`).

#[path = "browser/harness.rs"]
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::{vms_with_cpu, Vmtel};

const SCRIPT_VM: &str = "db=<script>alert(7)";

fn script_vm(fleet: &serde_json::Value) -> serde_json::Value {
    fleet["vms"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|v| v["name"] == SCRIPT_VM && v["host"] == "hv0")
        })
        .cloned()
        .expect("the <script> VM is in the fleet")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn fleet_vm_agent_and_metrics() {
    let v = Vmtel::run("", &[]);
    // 8 VMs per host, of which index 7 is running; 2 hosts. Wait for rates (two cycles).
    let fleet = v.wait_json("/api/fleet", 60, "CPU values for every VM", |f| {
        vms_with_cpu(f) == 16
    });
    assert_eq!(fleet["hosts"].as_array().map(Vec::len), Some(2), "{fleet}");
    let vm = script_vm(&fleet);
    assert_eq!(vm["state"], 1);
    assert_eq!(vm["vcpus"], 8.0);
    assert!(vm["net_rx_bps"].as_f64().unwrap_or(0.0) > 0.0, "{vm}");
    let uuid = vm["uuid"].as_str().expect("uuid").to_owned();

    // One VM: charts with data, per-device charts, devices with identity.
    let path = format!("/api/vm?host=hv0&uuid={}&range=15m", enc(&uuid));
    let d = v.wait_json(&path, 30, "NIC rates on the VM page", |d| {
        d["charts"].as_array().is_some_and(|c| {
            c.iter().any(|c| {
                c["id"] == "nic:tap7a"
                    && c["lines"][0]["values"]
                        .as_array()
                        .is_some_and(|v| v.iter().any(|x| x.as_f64().unwrap_or(0.0) > 0.0))
            })
        })
    });
    assert_eq!(d["name"], SCRIPT_VM);
    let ids: Vec<&str> = d["charts"]
        .as_array()
        .expect("charts")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    for want in [
        "cpu",
        "mem",
        "memact",
        "nic:tap7a",
        "nicpkt:tap7b",
        "disk:vda",
        "diskops:vdb",
    ] {
        assert!(ids.contains(&want), "chart {want} missing: {ids:?}");
    }
    let cpu = &d["charts"][0];
    assert!(
        cpu["lines"][0]["values"]
            .as_array()
            .is_some_and(|v| v.iter().any(|x| x.is_number())),
        "{cpu}"
    );
    let devices = d["devices"].as_array().expect("devices");
    assert!(
        devices
            .iter()
            .any(|x| x["device"] == "tap7a" && x["mac"] == "52:54:00:00:07:00"),
        "{devices:?}"
    );
    assert!(
        devices
            .iter()
            .any(|x| x["device"] == "vda" && x["path"] == "/var/lib/vmtel-demo/7-0.qcow2"),
        "{devices:?}"
    );
    for range in ["1h", "6h", "24h", "7d"] {
        let d = v.json(&format!(
            "/api/vm?host=hv0&uuid={}&range={range}",
            enc(&uuid)
        ));
        assert_eq!(d["name"], SCRIPT_VM);
    }

    // Errors are explained.
    let (code, body, _) = v.get(
        &format!("/api/vm?host=hv0&uuid={}&range=2y", enc(&uuid)),
        &[],
    );
    assert_eq!(code, 400);
    assert!(body.contains("15m, 1h, 6h, 24h, 7d"), "{body}");
    let (code, body, _) = v.get("/api/vm?host=hv0&uuid=nope", &[]);
    assert_eq!(code, 404);
    assert!(body.contains("fleet page"), "{body}");

    // Agent: both sources, the store and the file output.
    let a = v.json("/api/agent");
    assert_eq!(a["sources"].as_array().map(Vec::len), Some(2), "{a}");
    assert!(a["sources"][0]["cycles"].as_u64().unwrap_or(0) >= 2, "{a}");
    let sinks: Vec<&str> = a["sinks"]
        .as_array()
        .expect("sinks")
        .iter()
        .filter_map(|s| s["sink"].as_str())
        .collect();
    assert!(sinks.contains(&"store"), "{sinks:?}");
    assert!(a["store"]["points"].as_u64().unwrap_or(0) > 0, "{a}");
    assert!(a["history"]["cycle_time"]["lines"]
        .as_array()
        .is_some_and(|l| l.len() == 2));

    // Pages are static shells: no VM-supplied text is in the HTML at all.
    for page in ["/", "/agent", &format!("/vm/hv0/{}", enc(&uuid))] {
        let (code, html, _) = v.get(page, &[]);
        assert_eq!(code, 200, "{page}");
        assert!(
            !html.contains("alert(7)") && !html.contains("<script>alert"),
            "{page}"
        );
        assert!(html.contains("/assets/uplot.js"), "{page}");
    }
    let (code, js, _) = v.get("/assets/uplot.js", &[]);
    assert_eq!(code, 200);
    assert!(js.contains("uPlot"), "the bundled chart library is served");

    // /metrics: names, labels escaped, and promtool's lint.
    let (code, text, _) = v.get("/metrics", &[]);
    assert_eq!(code, 200);
    for name in [
        "vmtel_vm_cpu_seconds_total{",
        "vmtel_vm_network_receive_bytes_total{",
        "vmtel_vm_disk_read_bytes_total{",
        "vmtel_vm_vcpus{",
        "vmtel_source_cycles_total{",
        "vmtel_store_used_bytes",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    assert!(
        text.contains(r#"name="queue 03, \"eu\"""#),
        "quotes in label values are escaped"
    );
    assert!(text.contains(r#"device="tap7a""#));
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/deps test installs it)");
    {
        use std::io::Write;
        let mut stdin = promtool.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn non_loopback_without_token_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "state_dir = \"{}\"\n[[sources]]\nuri = \"test:///default\"\n[web]\nlisten = \"0.0.0.0:0\"\n",
        dir.path().display()
    );
    std::fs::write(dir.path().join("vmtel.toml"), &config).expect("config");
    let mut child = Vmtel::spawn(dir.path(), &["run", "--config", "vmtel.toml"], &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        assert!(Instant::now() < deadline, "vmtel did not refuse to start");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let err = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    assert!(
        err.contains("auth_token_env") && err.contains("insecure"),
        "{err}"
    );

    // check-config says the same.
    let out = Command::new(harness::VMTEL)
        .arg("check-config")
        .arg(dir.path().join("vmtel.toml"))
        .output()
        .expect("check-config");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("web.listen"));

    // insecure = true is an explicit choice: accepted.
    let ok = config.replace(
        "listen = \"0.0.0.0:0\"",
        "listen = \"0.0.0.0:0\"\ninsecure = true",
    );
    std::fs::write(dir.path().join("ok.toml"), ok).expect("config");
    let out = Command::new(harness::VMTEL)
        .arg("check-config")
        .arg(dir.path().join("ok.toml"))
        .output()
        .expect("check-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A token exposes the dashboard only if it is long enough to resist guessing.
    let short = config.replace(
        "listen = \"0.0.0.0:0\"",
        "listen = \"0.0.0.0:0\"\nauth_token_env = \"VMTEL_TEST_SHORT\"",
    );
    std::fs::write(dir.path().join("short.toml"), short).expect("config");
    for (token, ok) in [("short-token", false), ("a-token-of-24-characters", true)] {
        let out = Command::new(harness::VMTEL)
            .arg("check-config")
            .arg(dir.path().join("short.toml"))
            .env("VMTEL_TEST_SHORT", token)
            .output()
            .expect("check-config");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "{token}: {err}");
        if !ok {
            assert!(err.contains("at least 16"), "{err}");
            assert!(!err.contains(token), "the token is not printed: {err}");
        }
    }
}

#[test]
fn token_is_required_when_configured() {
    const TOKEN: &str = "t0ken-for-the-test";
    let v = Vmtel::run(
        "[web]\nlisten = \"127.0.0.1:0\"\nauth_token_env = \"VMTEL_TEST_TOKEN\"\n",
        &[("VMTEL_TEST_TOKEN", TOKEN)],
    );
    for path in ["/api/fleet", "/api/status", "/metrics"] {
        let (code, body, _) = v.get(path, &[]);
        assert_eq!(code, 401, "{path} without a token: {body}");
        let (code, _, _) = v.get(path, &[("Authorization", "Bearer wrong")]);
        assert_eq!(code, 401, "{path} with a wrong token");
        let (code, _, _) = v.get(path, &[("Authorization", &format!("Bearer {TOKEN}"))]);
        assert_eq!(code, 200, "{path} with the token");
    }
    // Pages send the browser to the sign-in form; assets are open.
    let (code, _, loc) = v.get("/", &[]);
    assert_eq!((code, loc.as_deref()), (303, Some("/login")));
    assert_eq!(v.get("/login", &[]).0, 200);
    assert_eq!(v.get("/assets/app.css", &[]).0, 200);
    // The form sets a cookie that opens the pages.
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let r = agent
        .post(&format!("{}/login", v.base))
        .send_form(&[("token", "wrong")]);
    assert!(matches!(r, Err(ureq::Error::Status(401, _))));
    let r = agent
        .post(&format!("{}/login", v.base))
        .send_form(&[("token", TOKEN)])
        .expect("login");
    assert_eq!(r.status(), 303);
    let cookie = r
        .header("set-cookie")
        .expect("cookie")
        .split(';')
        .next()
        .unwrap_or("")
        .to_owned();
    assert!(r.header("set-cookie").unwrap_or("").contains("HttpOnly"));
    let (code, _, _) = v.get("/api/fleet", &[("Cookie", &cookie)]);
    assert_eq!(code, 200);
    // The cookie is a session id, not the token in any spelling.
    let hex: String = TOKEN.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(
        !cookie.contains(TOKEN) && !cookie.contains(&hex),
        "the cookie carries the token: {cookie}"
    );
    let forged = format!("vmtel_session={hex}");
    assert_eq!(v.get("/api/fleet", &[("Cookie", &forged)]).0, 401);
    assert!(r.header("set-cookie").unwrap_or("").contains("Max-Age="));
    // /login has the pages' security headers.
    let r = agent
        .get(&format!("{}/login", v.base))
        .call()
        .expect("login page");
    let csp = r.header("content-security-policy").unwrap_or("");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    // Repeated failures pause sign-in, even for the right token, with Retry-After.
    let mut paused = None;
    for _ in 0..10 {
        match agent
            .post(&format!("{}/login", v.base))
            .send_form(&[("token", "wrong")])
        {
            Err(ureq::Error::Status(401, _)) => {}
            Err(ureq::Error::Status(429, r)) => {
                paused = r.header("retry-after").map(str::to_owned);
                break;
            }
            other => panic!("unexpected answer to a wrong token: {other:?}"),
        }
    }
    let paused = paused.expect("sign-in pauses after repeated failures");
    assert!(paused.parse::<u64>().is_ok_and(|s| s >= 1), "{paused}");
    let r = agent
        .post(&format!("{}/login", v.base))
        .send_form(&[("token", TOKEN)]);
    assert!(
        matches!(r, Err(ureq::Error::Status(429, _))),
        "paused for everyone: {r:?}"
    );
    // Guessing through the API is throttled the same way; the right token still works.
    assert_eq!(
        v.get("/metrics", &[("Authorization", "Bearer guess")]).0,
        429
    );
    assert_eq!(
        v.get("/metrics", &[("Authorization", &format!("Bearer {TOKEN}"))])
            .0,
        200
    );
    // The token is never logged.
    assert!(!v.stderr().contains(TOKEN), "the token appears in the log");
}

/// Sends `request` (raw HTTP/1.1) and returns the status code of the answer.
fn raw_status(base: &str, request: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

#[test]
fn a_loopback_server_without_token_answers_only_loopback_host_names() {
    let v = Vmtel::run("", &[]);
    let port = v.base.rsplit(':').next().expect("port").to_owned();
    for (host, want) in [
        (format!("127.0.0.1:{port}"), 200),
        (format!("localhost:{port}"), 200),
        (format!("evil.example:{port}"), 421),
        ("rebind.attacker.example".to_owned(), 421),
    ] {
        for path in ["/api/status", "/metrics"] {
            let code = raw_status(
                &v.base,
                &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            );
            assert_eq!(code, want, "{path} with Host: {host}");
        }
    }
}

#[test]
fn idle_and_half_sent_connections_do_not_stop_the_api() {
    use std::io::{Read, Write};
    let v = Vmtel::run("", &[]);
    let addr = v.base.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for i in 0..300 {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        if i % 2 == 1 {
            // Half a request line, never finished.
            s.write_all(b"GET /api/fleet HTTP/1.1\r\nHo").expect("send");
        }
        idle.push(s);
    }
    let (code, body, _) = v.get("/api/fleet", &[]);
    assert_eq!(code, 200, "{body}");
    // The server closes them (header read timeout) instead of holding them for ever.
    for s in idle.iter_mut().take(4) {
        s.set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        // read_to_end returns at the server's close; a left-open socket times out instead.
        let mut rest = Vec::new();
        if let Err(e) = s.read_to_end(&mut rest) {
            assert!(
                e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut,
                "the connection was left open: {e}"
            );
        }
    }
}
