//! Bundles the dashboard's charting library (uPlot, from npm) into the binary.
//!
//! `web/package-lock.json` pins it; when `web/node_modules` lacks it, this runs `npm ci` in
//! `web/`. The files are copied to `OUT_DIR` and embedded with `include_str!`
//! (`src/serve/pages.rs`). No third-party file is committed.

use std::path::{Path, PathBuf};
use std::process::Command;

const FILES: [&str; 2] = ["uPlot.iife.min.js", "uPlot.min.css"];

fn main() {
    println!("cargo:rerun-if-changed=web/package.json");
    println!("cargo:rerun-if-changed=web/package-lock.json");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let web = manifest.join("web");
    let dist = web.join("node_modules/uplot/dist");
    for f in FILES {
        println!("cargo:rerun-if-changed={}", dist.join(f).display());
    }
    if !FILES.iter().all(|f| dist.join(f).is_file()) {
        npm_ci(&web);
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    for f in FILES {
        let from = dist.join(f);
        if let Err(e) = std::fs::copy(&from, out.join(f)) {
            fail(&format!(
                "cannot copy {} into the build ({e}); run `npm ci` in web/ and build again",
                from.display()
            ));
        }
    }
}

fn npm_ci(web: &Path) {
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(web)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "`npm ci` in {} failed ({s}); the dashboard's charting library (uPlot) comes from npm: check network access to the npm registry and run it by hand",
            web.display()
        )),
        Err(e) => fail(&format!(
            "cannot run npm ({e}): building vmtel needs Node.js and npm to fetch the dashboard's charting library (on Debian: apt-get install nodejs npm), or a web/node_modules from `npm ci`"
        )),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}
