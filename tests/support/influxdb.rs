//! A real InfluxDB 1.x server (`influxd`) for one test, on free loopback ports, in its own
//! temporary directory. It is killed (by PID) and reaped when the value is dropped.
//!
//! A missing `influxd` is a test failure, never a skip: `scripts/deps test` installs it.

use std::fs;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long one start attempt may take before `/ping` answers.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a start is retried on fresh ports when the server does not come up.
const START_ATTEMPTS: usize = 5;
/// Interval between two `/ping` polls.
const POLL: Duration = Duration::from_millis(20);

/// A running `influxd`.
pub struct InfluxDb {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    agent: ureq::Agent,
}

/// Why one start attempt failed.
#[derive(Debug)]
enum StartError {
    /// The binary is not there (or cannot be executed).
    NotInstalled(String),
    /// The server did not come up (port taken, crash, timeout); worth a retry on new ports.
    Failed(String),
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to pick a free port");
    l.local_addr().expect("local addr").port()
}

fn not_installed(binary: &Path, why: &str) -> String {
    format!(
        "InfluxDB 1.x server `{}` is not available ({why}). These tests need a real influxd: \
         run `scripts/deps test` (installs the Debian packages influxdb and influxdb-client)",
        binary.display()
    )
}

impl InfluxDb {
    /// Starts `influxd` from `PATH`; panics (naming `scripts/deps test`) if it is missing.
    pub fn start() -> InfluxDb {
        Self::start_with_binary(Path::new("influxd"))
    }

    /// Starts the given `influxd` binary; panics if it is missing or never comes up.
    pub fn start_with_binary(binary: &Path) -> InfluxDb {
        check_version(binary).unwrap_or_else(|e| panic!("{e}"));
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(binary) {
                Ok(db) => return db,
                Err(StartError::NotInstalled(m)) => panic!("{m}"),
                Err(StartError::Failed(m)) => failures.push(m),
            }
        }
        panic!(
            "influxd did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    fn try_start(binary: &Path) -> Result<InfluxDb, StartError> {
        let dir = tempfile::Builder::new()
            .prefix("vmtel-influxdb-")
            .tempdir()
            .map_err(|e| StartError::Failed(format!("tempdir: {e}")))?;
        let port = free_port();
        let mut rpc_port = free_port();
        while rpc_port == port {
            rpc_port = free_port();
        }
        let config = config_file(dir.path(), port, rpc_port);
        let config_path = dir.path().join("influxdb.conf");
        fs::write(&config_path, config).map_err(|e| StartError::Failed(format!("config: {e}")))?;
        let log_path = dir.path().join("influxd.log");
        let log = fs::File::create(&log_path)
            .map_err(|e| StartError::Failed(format!("log file: {e}")))?;
        let log2 = log
            .try_clone()
            .map_err(|e| StartError::Failed(format!("log file: {e}")))?;
        let child = Command::new(binary)
            .arg("-config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    StartError::NotInstalled(not_installed(binary, &e.to_string()))
                }
                _ => StartError::Failed(format!("spawn {}: {e}", binary.display())),
            })?;
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        // From here on, dropping `db` kills the child.
        let mut db = InfluxDb {
            child,
            port,
            dir,
            agent,
        };
        db.wait_ready()
            .map_err(|m| StartError::Failed(format!("{m}\n{}", db.log_tail())))?;
        Ok(db)
    }

    /// Polls `/ping` until it answers 204 from *this* process (checked by PID, so that a server
    /// that won a port race is not mistaken for ours), the process exits, or the time is up.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let ping_agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "influxd exited with {status} before answering on port {}",
                    self.port
                ));
            }
            if let Ok(r) = ping_agent.get(&format!("{}/ping", self.url())).call() {
                if r.status() == 204 {
                    return match self.server_pid() {
                        Some(pid) if pid == self.child.id() => Ok(()),
                        other => Err(format!(
                            "port {} is answered by another influxd (pid {other:?}, ours {})",
                            self.port,
                            self.child.id()
                        )),
                    };
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "influxd did not answer /ping with 204 within {START_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The PID the server reports in `SHOW DIAGNOSTICS`.
    fn server_pid(&self) -> Option<u32> {
        let v = self.query_raw("", "SHOW DIAGNOSTICS").ok()?;
        let series = v["results"][0]["series"].as_array()?;
        let system = series.iter().find(|s| s["name"] == "system")?;
        let col = system["columns"]
            .as_array()?
            .iter()
            .position(|c| c == "PID")?;
        u32::try_from(system["values"][0][col].as_u64()?).ok()
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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
        let text = fs::read_to_string(self.dir.path().join("influxd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(30);
        format!("influxd log (last lines):\n{}", lines[start..].join("\n"))
    }

    /// `CREATE DATABASE "name"`; panics on failure.
    pub fn create_db(&self, name: &str) {
        let q = format!("CREATE DATABASE {}", quote_ident(name));
        let r = self
            .agent
            .post(&format!("{}/query", self.url()))
            .send_form(&[("q", q.as_str())]);
        let (status, body) = status_and_body(r);
        assert_eq!(status, 200, "{q}: {body}\n{}", self.log_tail());
        let v: Value = serde_json::from_str(&body).expect("CREATE DATABASE answer is JSON");
        assert!(v["results"][0]["error"].is_null(), "{q}: {body}");
    }

    /// `POST /write?db=DB&precision=P` with `body`; returns the status and the response body.
    pub fn write(&self, db: &str, body: &str, precision: &str) -> (u16, String) {
        let r = self
            .agent
            .post(&format!("{}/write", self.url()))
            .query("db", db)
            .query("precision", precision)
            .set("Content-Type", "text/plain; charset=utf-8")
            .send_string(body);
        status_and_body(r)
    }

    /// Runs an InfluxQL query with `epoch=s`; panics on an HTTP or statement error.
    pub fn query(&self, db: &str, q: &str) -> Value {
        let v = self
            .query_raw(db, q)
            .unwrap_or_else(|e| panic!("{q}: {e}\n{}", self.log_tail()));
        if let Some(results) = v["results"].as_array() {
            for r in results {
                assert!(r["error"].is_null(), "{q}: {r}");
            }
        }
        v
    }

    /// Runs an InfluxQL query with `epoch=s`: the JSON answer (whose `results` may hold a
    /// statement's `error`), or the status and body of a refused request.
    pub fn try_query(&self, db: &str, q: &str) -> Result<Value, String> {
        self.query_raw(db, q)
    }

    fn query_raw(&self, db: &str, q: &str) -> Result<Value, String> {
        let r = self
            .agent
            .get(&format!("{}/query", self.url()))
            .query("db", db)
            .query("epoch", "s")
            .query("q", q)
            .call();
        let (status, body) = status_and_body(r);
        if status != 200 {
            return Err(format!("HTTP {status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("bad JSON ({e}): {body}"))
    }

    /// Runs an InfluxQL query with `epoch=s` and `Accept: application/csv`; returns the CSV text.
    /// Numbers in it are the server's exact decimal text (JSON readers may round floats).
    pub fn query_csv(&self, db: &str, q: &str) -> String {
        let r = self
            .agent
            .get(&format!("{}/query", self.url()))
            .set("Accept", "application/csv")
            .query("db", db)
            .query("epoch", "s")
            .query("q", q)
            .call();
        let (status, body) = status_and_body(r);
        assert_eq!(status, 200, "{q}: {body}");
        body
    }
}

impl Drop for InfluxDb {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this PID only; wait reaps it before the tempdir goes.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails clearly when `binary` is missing or is not InfluxDB 1.x.
fn check_version(binary: &Path) -> Result<(), String> {
    let out = Command::new(binary)
        .arg("version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| not_installed(binary, &e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !text.contains("InfluxDB v1.") {
        return Err(format!(
            "`{} version` says {:?}: these tests need InfluxDB 1.x; run `scripts/deps test`",
            binary.display(),
            text.trim()
        ));
    }
    Ok(())
}

fn status_and_body(r: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    let resp = match r {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("HTTP request to influxd failed: {e}"),
    };
    let status = resp.status();
    let mut body = String::new();
    resp.into_reader()
        .take(64 << 20)
        .read_to_string(&mut body)
        .expect("read influxd response");
    (status, body)
}

/// Quotes an InfluxQL identifier.
pub fn quote_ident(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Quotes an InfluxQL string literal.
pub fn quote_str(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn config_file(dir: &Path, http_port: u16, rpc_port: u16) -> String {
    let p = |sub: &str| -> PathBuf { dir.join(sub) };
    format!(
        r#"# Written by tests/support/influxdb.rs
# Debian's build reads reporting-enabled; upstream builds read reporting-disabled.
reporting-enabled = false
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = {meta}
  logging-enabled = false

[data]
  dir = {data}
  wal-dir = {wal}
  query-log-enabled = false
  wal-fsync-delay = "0s"

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
  write-tracing = false
  pprof-enabled = false

[logging]
  level = "error"
  suppress-logo = true

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false

[retention]
  enabled = false
"#,
        meta = toml_str(&p("meta")),
        data = toml_str(&p("data")),
        wal = toml_str(&p("wal")),
    )
}

/// A TOML literal string holding `path` (temporary directories have no `'` or newline).
fn toml_str(path: &Path) -> String {
    let s = path.display().to_string();
    assert!(
        !s.contains('\'') && !s.contains('\n'),
        "unusual temporary directory {s:?}"
    );
    format!("'{s}'")
}
