//! A real InfluxDB 3 Core server (`../shared/bin/influxdb3`, see `influxdb3.md` there) for one
//! test: free loopback port, its own temporary directory, stopped by PID when dropped.
//!
//! Without `../shared` the tests that need it fail under `CI=true` and otherwise say plainly
//! that they skipped.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one start may take (the first one unpacks the binary).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Start attempts on fresh ports.
const START_ATTEMPTS: usize = 3;

/// A running InfluxDB 3 Core server.
pub struct Influx3 {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    token: Option<String>,
    agent: ureq::Agent,
}

/// The launcher, if `../shared` is there.
fn launcher() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/bin/influxdb3");
    p.is_file().then_some(p)
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to pick a free port");
    l.local_addr().expect("local addr").port()
}

impl Influx3 {
    /// Starts a server (with token authentication when `auth`), or returns `None` after saying
    /// that the test skipped because `../shared/bin/influxdb3` is missing (a failure under
    /// `CI=true`).
    pub fn start_or_skip(auth: bool) -> Option<Influx3> {
        let Some(bin) = launcher() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "../shared/bin/influxdb3 is missing: CI must provide the real InfluxDB 3 server"
            );
            eprintln!("skipped: ../shared/bin/influxdb3 not found (the real InfluxDB 3 server)");
            return None;
        };
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&bin, auth) {
                Ok(s) => return Some(s),
                Err(e) => failures.push(e),
            }
        }
        panic!(
            "influxdb3 did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    fn try_start(bin: &PathBuf, auth: bool) -> Result<Influx3, String> {
        let dir = tempfile::Builder::new()
            .prefix("vmtel-influxdb3-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("influxdb3.log"))
            .map_err(|e| format!("log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("log: {e}"))?;
        let mut cmd = Command::new(bin);
        cmd.args([
            "serve",
            "--node-id",
            "t1",
            "--object-store",
            "file",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .args(["--http-bind", &format!("127.0.0.1:{port}")])
        .arg("--disable-telemetry-upload");
        if !auth {
            cmd.arg("--without-auth");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        let mut s = Influx3 {
            child,
            port,
            dir,
            token: None,
            agent,
        };
        s.wait_ready()
            .map_err(|e| format!("{e}\n{}", s.log_tail()))?;
        if auth {
            s.token = Some(s.create_admin_token(bin)?);
        }
        Ok(s)
    }

    /// Polls `/health` until this process answers (401 counts with auth on), exits, or the
    /// time is up.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let probe = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!("influxdb3 exited with {st} before serving"));
            }
            match probe.get(&format!("{}/health", self.url())).call() {
                Ok(_) | Err(ureq::Error::Status(401, _)) => return Ok(()),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => return Err(format!("no /health answer in {START_TIMEOUT:?}: {e}")),
            }
        }
    }

    fn create_admin_token(&self, bin: &PathBuf) -> Result<String, String> {
        let out = Command::new(bin)
            .args(["create", "token", "--admin", "--host", &self.url()])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("create token: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .find(|w| w.starts_with("apiv3_"))
            .map(str::to_owned)
            .ok_or_else(|| {
                format!(
                    "no token in the output of `influxdb3 create token --admin`: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    }

    /// Base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The admin token, with authentication on.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("influxdb3.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "influxdb3 log (last lines):\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }

    /// `SELECT ...` over `/api/v3/query_sql` as JSON rows; a missing table gives no rows.
    pub fn sql(&self, db: &str, q: &str) -> Vec<Value> {
        let mut req = self
            .agent
            .get(&format!("{}/api/v3/query_sql", self.url()))
            .query("db", db)
            .query("q", q)
            .query("format", "json");
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let (status, body) = match req.call() {
            Ok(r) => (r.status(), read(r)),
            Err(ureq::Error::Status(s, r)) => (s, read(r)),
            Err(e) => panic!("{q}: {e}\n{}", self.log_tail()),
        };
        if status != 200 && (body.contains("not found") || body.contains("table")) {
            return Vec::new();
        }
        assert_eq!(status, 200, "{q}: {body}");
        match serde_json::from_str::<Value>(&body) {
            Ok(Value::Array(rows)) => rows,
            _ => panic!("{q}: not a JSON array: {body}"),
        }
    }
}

fn read(r: ureq::Response) -> String {
    let mut s = String::new();
    let _ = r.into_reader().take(64 << 20).read_to_string(&mut s);
    s
}

impl Drop for Influx3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
