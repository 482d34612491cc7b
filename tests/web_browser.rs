//! The dashboard in a real headless Chromium (Debian's `chromium`, driven by `playwright-core`
//! from npm): `tests/browser/dashboard.mjs` against a running `vmtel run`, `login.mjs` against
//! one with a token, `source_down.mjs` against a `vmtel serve` whose InfluxDB 3 does not
//! answer. Screenshots go to `target/screenshots/`.

#[path = "browser/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::{vms_with_cpu, Vmtel};

/// The repository root, with Chromium and playwright-core ready.
fn browser_ready() -> &'static Path {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is needed for the browser test: run scripts/deps test"
    );
    if !root.join("web/node_modules/playwright-core").is_dir() {
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(root.join("web"))
            .status()
            .expect("npm (Node.js) is needed for the browser test");
        assert!(st.success(), "npm ci in web/ failed");
    }
    root
}

/// Runs `tests/browser/SCRIPT` against `v` with `args` then the screenshot directory, and
/// fails with its output unless every check passed; returns the screenshot directory.
fn run_script(root: &Path, script: &str, v: &Vmtel, args: &[&str]) -> PathBuf {
    let shots = root.join("target/screenshots");
    let out = Command::new("node")
        .arg(root.join("tests/browser").join(script))
        .arg(&v.base)
        .args(args)
        .arg(&shots)
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser checks of {script} failed:\n{stdout}\n{}\nvmtel stderr:\n{}",
        String::from_utf8_lossy(&out.stderr),
        v.stderr()
    );
    shots
}

#[test]
fn sign_in_in_headless_chromium() {
    const TOKEN: &str = "a-dashboard-token-for-chromium";
    let root = browser_ready();
    let v = Vmtel::run(
        "[web]\nlisten = \"127.0.0.1:0\"\nauth_token_env = \"VMTEL_TEST_TOKEN\"\n",
        &[("VMTEL_TEST_TOKEN", TOKEN)],
    );
    run_script(root, "login.mjs", &v, &[TOKEN]);
}

#[test]
fn dashboard_in_headless_chromium() {
    let root = browser_ready();
    let v = Vmtel::run("", &[]);
    v.wait_json("/api/fleet", 60, "CPU values for every VM", |f| {
        vms_with_cpu(f) == 16
    });
    let shots = run_script(root, "dashboard.mjs", &v, &[]);
    for f in [
        "hosts.png",
        "fleet.png",
        "problems.png",
        "top.png",
        "vm.png",
        "agent.png",
    ] {
        assert!(shots.join(f).is_file(), "screenshot {f} missing");
    }
}

/// A loopback port with nothing listening on it (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

#[test]
fn source_down_in_headless_chromium() {
    let root = browser_ready();
    let tmp = tempfile::tempdir().expect("temp dir");
    let port = closed_port();
    std::fs::write(
        tmp.path().join("vmtel.toml"),
        format!(
            "[web]\nlisten = \"127.0.0.1:0\"\n[web.source]\nkind = \"influxdb3\"\nurl = \"http://127.0.0.1:{port}\"\ndatabase = \"vmtel\"\n"
        ),
    )
    .expect("config");
    let v = Vmtel::start_in(tmp, &["serve", "--config", "vmtel.toml"], &[]);
    let (code, body, _) = v.get("/api/hosts", &[]);
    assert_eq!(code, 503, "{body}");
    run_script(root, "source_down.mjs", &v, &[]);
}
