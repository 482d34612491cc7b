//! A real InfluxDB 3 Core server (`../shared/bin/influxdb3`, see `../shared/bin/influxdb3.md`)
//! for one test, on a free loopback port, in its own temporary directory. It is killed (by PID)
//! and reaped when the value is dropped.
//!
//! A missing binary skips the test ([`InfluxDb3::start_or_skip`] prints why and returns `None`),
//! except when `CI=true`, where it is a failure.

use std::fs;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one start attempt may take before `/health` answers (the first launch on a machine
/// unpacks the binary and may install libpython3.11).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How many times a start is retried on a fresh port when the server does not come up.
const START_ATTEMPTS: usize = 5;
/// Interval between two polls of a starting server or a helper command.
const POLL: Duration = Duration::from_millis(20);
/// How long the `create token` command may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// The server's WAL flush interval: a write is answered after the next flush (default 1s).
const WAL_FLUSH: &str = "10ms";

/// A running `influxdb3 serve`.
pub struct InfluxDb3 {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    agent: ureq::Agent,
    token: Option<String>,
}

/// Why one start attempt failed.
#[derive(Debug)]
enum StartError {
    /// The launcher cannot be run at all.
    NotRunnable(String),
    /// The server did not come up (port taken, crash, timeout); worth a retry on a new port.
    Failed(String),
}

/// `<CARGO_MANIFEST_DIR>/../shared/bin/influxdb3`.
pub fn binary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bin/influxdb3")
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to pick a free port");
    l.local_addr().expect("local addr").port()
}

/// A command for the launcher with no `INFLUXDB3_*` variables of the caller's environment
/// (they configure the server and the CLI).
fn command(binary: &Path) -> Command {
    let mut c = Command::new(binary);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("INFLUXDB3_") {
            c.env_remove(k);
        }
    }
    c.stdin(Stdio::null());
    c
}

/// Runs `cmd` with stdout and stderr in files under `dir`; kills it after `timeout`.
fn run(
    mut cmd: Command,
    dir: &Path,
    name: &str,
    timeout: Duration,
) -> Result<(ExitStatus, String), String> {
    let out_path = dir.join(format!("{name}.out"));
    let out = fs::File::create(&out_path).map_err(|e| format!("{name}: output file: {e}"))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{name}: output file: {e}"))?;
    let mut child = cmd
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{name}: cannot run: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let text = fs::read_to_string(&out_path).unwrap_or_default();
                return Err(format!(
                    "{name}: no answer within {timeout:?}; output:\n{text}"
                ));
            }
            Err(e) => return Err(format!("{name}: wait: {e}")),
        }
    };
    Ok((status, fs::read_to_string(&out_path).unwrap_or_default()))
}

/// Runs `influxdb3 --version` once per test binary, so that concurrent tests do not all
/// unpack the binary (or run apt-get) at the same time on a first launch.
fn prepare(binary: &Path) -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("vmtel-influxdb3-version-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let mut cmd = command(binary);
        cmd.arg("--version");
        let (status, text) = run(cmd, dir.path(), "version", START_TIMEOUT)?;
        if !status.success() || !text.contains("InfluxDB 3") {
            return Err(format!(
                "`{} --version` exited with {status}: {}",
                binary.display(),
                text.trim()
            ));
        }
        Ok(())
    })
    .clone()
}

/// The text with ANSI colour sequences (`ESC [ ... m`) removed.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl InfluxDb3 {
    /// Starts a server (with authentication when `auth`); `None` if the binary is missing and
    /// `CI` is not `true`. Panics if the server cannot be started.
    pub fn start_or_skip(auth: bool) -> Option<InfluxDb3> {
        let binary = binary();
        if !binary.exists() {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "{} not found: CI=true, so the InfluxDB 3 tests may not be skipped; provide ../shared/bin/influxdb3 next to the repository",
                    binary.display()
                );
            }
            eprintln!("skipped: ../shared/bin/influxdb3 not found");
            return None;
        }
        Some(Self::start(&binary, auth))
    }

    /// Starts the given launcher; panics if it cannot be run or the server never comes up.
    pub fn start(binary: &Path, auth: bool) -> InfluxDb3 {
        prepare(binary).unwrap_or_else(|e| panic!("{e}"));
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(binary, auth) {
                Ok(db) => return db,
                Err(StartError::NotRunnable(m)) => panic!("{m}"),
                Err(StartError::Failed(m)) => failures.push(m),
            }
        }
        panic!(
            "influxdb3 did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    fn try_start(binary: &Path, auth: bool) -> Result<InfluxDb3, StartError> {
        let dir = tempfile::Builder::new()
            .prefix("vmtel-influxdb3-")
            .tempdir()
            .map_err(|e| StartError::Failed(format!("tempdir: {e}")))?;
        let port = free_port();
        let log_path = dir.path().join("influxdb3.log");
        let log = fs::File::create(&log_path)
            .map_err(|e| StartError::Failed(format!("log file: {e}")))?;
        let log2 = log
            .try_clone()
            .map_err(|e| StartError::Failed(format!("log file: {e}")))?;
        let mut cmd = command(binary);
        cmd.args([
            "serve",
            "--node-id",
            "t1",
            "--object-store",
            "file",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--http-bind")
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "--disable-telemetry-upload",
            "--wal-flush-interval",
            WAL_FLUSH,
        ]);
        if !auth {
            cmd.arg("--without-auth");
        }
        let child = cmd.stdout(log).stderr(log2).spawn().map_err(|e| {
            StartError::NotRunnable(format!("cannot run {}: {e}", binary.display()))
        })?;
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        // From here on, dropping `db` kills the child.
        let mut db = InfluxDb3 {
            child,
            port,
            dir,
            agent,
            token: None,
        };
        db.wait_serving()
            .and_then(|()| {
                if auth {
                    db.create_token(binary)
                } else {
                    Ok(())
                }
            })
            .and_then(|()| db.check_health())
            .map_err(|m| StartError::Failed(format!("{m}\n{}", db.log_tail())))?;
        Ok(db)
    }

    /// Polls `/health` until *this* process answers it (200 without auth, 401 with), the
    /// process exits, or the time is up. A server is known as ours by the `cluster-uuid` header
    /// matching the catalog UUID our process logged, so one that won a port race is not taken
    /// for ours.
    fn wait_serving(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let probe = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "influxdb3 exited with {status} before answering on port {}",
                    self.port
                ));
            }
            let answer = match probe.get(&format!("{}/health", self.url())).call() {
                Ok(r) => Some(r),
                Err(ureq::Error::Status(_, r)) => Some(r),
                Err(_) => None,
            };
            if let Some(r) = answer {
                let theirs = r.header("cluster-uuid").unwrap_or("").to_owned();
                if let Some(ours) = self.catalog_uuid() {
                    if theirs == ours {
                        return Ok(());
                    }
                    return Err(format!(
                        "port {} is answered by another server (cluster-uuid {theirs:?}, ours {ours})",
                        self.port
                    ));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "influxdb3 did not answer /health within {START_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The catalog UUID from the server's log (`catalog initialized catalog_uuid=...`).
    fn catalog_uuid(&self) -> Option<String> {
        let text = fs::read_to_string(self.dir.path().join("influxdb3.log")).ok()?;
        let at = text.find("catalog_uuid=")? + "catalog_uuid=".len();
        let uuid: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit() || *c == '-')
            .collect();
        (uuid.len() == 36).then_some(uuid)
    }

    /// Runs `influxdb3 create token --admin` and keeps the token it prints.
    fn create_token(&mut self, binary: &Path) -> Result<(), String> {
        let mut cmd = command(binary);
        cmd.args(["create", "token", "--admin", "--host"])
            .arg(self.url());
        let (status, text) = run(cmd, self.dir.path(), "create-token", CLI_TIMEOUT)?;
        let text = strip_ansi(&text);
        // The command exits with 0 even when it fails; only a printed token counts.
        let token = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Token:"))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        match token {
            Some(t) => {
                self.token = Some(t.to_owned());
                Ok(())
            }
            None => Err(format!(
                "`influxdb3 create token --admin` ({status}) printed no token:\n{text}"
            )),
        }
    }

    /// `/health` (with the token, if any) must answer 200 `OK`.
    fn check_health(&self) -> Result<(), String> {
        let (status, body) = self.get("/health", &[]);
        if status == 200 && body.trim() == "OK" {
            Ok(())
        } else {
            Err(format!("/health answered {status}: {body}"))
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The admin token (servers started with authentication only).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("influxdb3.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(30);
        format!("influxdb3 log (last lines):\n{}", lines[start..].join("\n"))
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, String) {
        let mut req = self.agent.get(&format!("{}{path}", self.url()));
        for (k, v) in query {
            req = req.query(k, v);
        }
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        status_and_body(req.call())
    }

    /// `POST /api/v3/write_lp?db=DB&precision=P` with `body` (and the admin token, if any);
    /// returns the status and the response body.
    pub fn write_lp(&self, db: &str, body: &str, precision: &str) -> (u16, String) {
        let mut req = self
            .agent
            .post(&format!("{}/api/v3/write_lp", self.url()))
            .query("db", db)
            .query("precision", precision)
            .set("Content-Type", "text/plain; charset=utf-8");
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        status_and_body(req.send_string(body))
    }

    /// Runs `sql` on `db` (`/api/v3/query_sql`, `format=json`): the array of row objects, or
    /// the status and body of a refused query.
    pub fn try_query_sql(&self, db: &str, sql: &str) -> Result<Value, String> {
        let (status, body) = self.get(
            "/api/v3/query_sql",
            &[("db", db), ("q", sql), ("format", "json")],
        );
        if status != 200 {
            return Err(format!("HTTP {status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("bad JSON ({e}): {body}"))
    }

    /// Runs `q` on `db` at `endpoint` (`/api/v3/query_sql` or `/api/v3/query_influxql`) with
    /// `format` (`json`, `pretty`, ...): the body, or the status and body of a refused query.
    pub fn try_query_text(
        &self,
        endpoint: &str,
        db: &str,
        q: &str,
        format: &str,
    ) -> Result<String, String> {
        let (status, body) = self.get(endpoint, &[("db", db), ("q", q), ("format", format)]);
        if status != 200 {
            return Err(format!("HTTP {status}: {body}"));
        }
        Ok(body)
    }

    /// Runs the InfluxQL query `q` on `db` (`/api/v3/query_influxql`, `format=json`): the array
    /// of row objects, or the status and body of a refused query.
    pub fn try_query_influxql(&self, db: &str, q: &str) -> Result<Value, String> {
        let body = self.try_query_text("/api/v3/query_influxql", db, q, "json")?;
        serde_json::from_str(&body).map_err(|e| format!("bad JSON ({e}): {body}"))
    }

    /// Runs `sql` on `db`; panics (with the log tail) if the server refuses it.
    pub fn query_sql(&self, db: &str, sql: &str) -> Value {
        self.try_query_sql(db, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}\n{}", self.log_tail()))
    }
}

impl Drop for InfluxDb3 {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this PID only (the launcher execs the server, so it is
        // the server's); wait reaps it before the tempdir goes.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_and_body(r: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    let resp = match r {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("HTTP request to influxdb3 failed: {e}"),
    };
    let status = resp.status();
    let mut body = String::new();
    resp.into_reader()
        .take(64 << 20)
        .read_to_string(&mut body)
        .expect("read influxdb3 response");
    (status, body)
}
