//! A `vmtel run` or `vmtel demo` process for the web and store tests: temp dir, free loopback
//! port (the daemon binds port 0 and logs the address), bounded polls, stop by PID.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const VMTEL: &str = env!("CARGO_BIN_EXE_vmtel");

/// A running vmtel.
pub struct Vmtel {
    pub child: Child,
    pub dir: PathBuf,
    pub base: String,
    _tmp: Option<tempfile::TempDir>,
}

/// Wall-clock milliseconds since the epoch (what the API's `now_ms` and `since_ms` count).
pub fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}

/// Writes a small fleet (2 hosts, `per_host` VMs each, demo names including
/// `db=<script>alert(7)`) and returns `[[sources]]` entries for it.
pub fn fleet_sources(dir: &Path, per_host: usize) -> String {
    let mut out = String::new();
    for h in 0..2 {
        let mut vms = vmtel::demo::demo_fleet(per_host);
        for (i, vm) in vms.iter_mut().enumerate() {
            vm.uuid = vmtel::demo::uuid_for(h * 1000 + i);
        }
        let (_, uri) =
            vmtel::demo::write_node(dir, &format!("hv{h}.xml"), &vms).expect("write fleet");
        out.push_str(&format!("[[sources]]\nuri = \"{uri}\"\nhost = \"hv{h}\"\n"));
    }
    out
}

impl Vmtel {
    /// `vmtel run` with `interval = "1s"`, `state_dir` in a new temp dir, the web server on a
    /// free loopback port, a file output, and `body` (more options).
    pub fn run(body: &str, env: &[(&str, &str)]) -> Vmtel {
        Vmtel::run_in(tempfile::tempdir().expect("temp dir"), body, env)
    }

    /// [`Vmtel::run`] in a directory the caller prepared.
    pub fn run_in(tmp: tempfile::TempDir, body: &str, env: &[(&str, &str)]) -> Vmtel {
        let dir = tmp.path().to_path_buf();
        let sources = fleet_sources(&dir, 8);
        let config = format!(
            "interval = \"1s\"\nstate_dir = \"{}\"\n{sources}{body}\n[[outputs.file]]\npath = \"{}\"\n",
            dir.display(),
            dir.join("out.lp").display()
        );
        let config = if body.contains("[web]") {
            config
        } else {
            format!("{config}[web]\nlisten = \"127.0.0.1:0\"\n")
        };
        std::fs::write(dir.join("vmtel.toml"), config).expect("config");
        Vmtel::start_in(tmp, &["run", "--config", "vmtel.toml"], env)
    }

    /// Restarts `vmtel run` on the same directory and config.
    pub fn restart(mut self) -> Vmtel {
        self.stop();
        let tmp = self._tmp.take().expect("temp dir");
        Vmtel::start_in(tmp, &["run", "--config", "vmtel.toml"], &[])
    }

    /// Starts `vmtel ARGS` in `tmp` and waits (bounded) for its dashboard address.
    pub fn start_in(tmp: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> Vmtel {
        let dir = tmp.path().to_path_buf();
        let child = Vmtel::spawn(&dir, args, env);
        let mut v = Vmtel {
            child,
            dir,
            base: String::new(),
            _tmp: Some(tmp),
        };
        v.base = v.wait_address();
        v
    }

    /// Starts `vmtel ARGS` in `dir` without waiting.
    pub fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
        let mut cmd = Command::new(VMTEL);
        cmd.args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::fs::File::create(dir.join("stdout")).expect("stdout"))
            .stderr(std::fs::File::create(dir.join("stderr")).expect("stderr"))
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("start vmtel")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    fn wait_address(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let err = self.stderr();
            if let Some(i) = err.find("dashboard at http://") {
                let rest = &err[i + "dashboard at ".len()..];
                if let Some(j) = rest["http://".len()..].find('/') {
                    return rest[.."http://".len() + j].to_string();
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("vmtel exited ({st}) before serving:\n{err}");
            }
            assert!(
                Instant::now() < deadline,
                "no dashboard address after 30s:\n{err}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET `path`: status and body, following no redirect.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String, Option<String>) {
        let agent = ureq::AgentBuilder::new().redirects(0).build();
        let mut req = agent.get(&format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        match req.call() {
            Ok(r) => {
                let loc = r.header("location").map(str::to_owned);
                (r.status(), r.into_string().unwrap_or_default(), loc)
            }
            Err(ureq::Error::Status(code, r)) => {
                let loc = r.header("location").map(str::to_owned);
                (code, r.into_string().unwrap_or_default(), loc)
            }
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let (code, body, _) = self.get(path, &[]);
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Polls `path` until `cond` holds, for at most `secs` seconds.
    pub fn wait_json(
        &self,
        path: &str,
        secs: u64,
        what: &str,
        cond: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (code, body, _) = self.get(path, &[]);
            if code == 200 {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                    if cond(&v) {
                        return v;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {secs}s waiting for {what}; last answer {code}: {body}\nstderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, then a bounded wait.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        // Already gone (killed and reaped by the test): its PID may belong to another process.
        if let Ok(Some(st)) = self.child.try_wait() {
            return Some(st);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Vmtel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The VMs of `/api/fleet` that have CPU values (two cycles done).
pub fn vms_with_cpu(fleet: &serde_json::Value) -> usize {
    fleet["vms"]
        .as_array()
        .map(|a| a.iter().filter(|v| v["cpu_pct"].is_number()).count())
        .unwrap_or(0)
}
