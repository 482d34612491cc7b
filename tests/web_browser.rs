//! The dashboard in a real headless Chromium (Debian's `chromium`, driven by `playwright-core`
//! from npm): `tests/browser/dashboard.mjs` against a running `vmtel run`. Screenshots go to
//! `target/screenshots/`.

#[path = "browser/harness.rs"]
mod harness;

use std::path::Path;
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

#[test]
fn sign_in_in_headless_chromium() {
    const TOKEN: &str = "a-dashboard-token-for-chromium";
    let root = browser_ready();
    let v = Vmtel::run(
        "[web]\nlisten = \"127.0.0.1:0\"\nauth_token_env = \"VMTEL_TEST_TOKEN\"\n",
        &[("VMTEL_TEST_TOKEN", TOKEN)],
    );
    let shots = root.join("target/screenshots");
    let out = Command::new("node")
        .arg(root.join("tests/browser/login.mjs"))
        .arg(&v.base)
        .arg(TOKEN)
        .arg(&shots)
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser sign-in checks failed:\n{stdout}\n{}\nvmtel stderr:\n{}",
        String::from_utf8_lossy(&out.stderr),
        v.stderr()
    );
}

#[test]
fn dashboard_in_headless_chromium() {
    let root = browser_ready();
    let v = Vmtel::run("", &[]);
    v.wait_json("/api/fleet", 60, "CPU values for every VM", |f| {
        vms_with_cpu(f) == 16
    });
    let shots = root.join("target/screenshots");
    let out = Command::new("node")
        .arg(root.join("tests/browser/dashboard.mjs"))
        .arg(&v.base)
        .arg(&shots)
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser checks failed:\n{stdout}\n{}\nvmtel stderr:\n{}",
        String::from_utf8_lossy(&out.stderr),
        v.stderr()
    );
    for f in ["fleet.png", "vm.png", "agent.png"] {
        assert!(shots.join(f).is_file(), "screenshot {f} missing");
    }
}
