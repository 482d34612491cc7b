//! A real VictoriaMetrics server (Debian's `victoria-metrics`) for one test, on a free loopback
//! port with its data in a temporary directory. It can be stopped and started again on the
//! same port and data (an outage), and is killed by PID when dropped.
//!
//! A missing binary is a test failure, never a skip: `scripts/deps test` installs it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read as _;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One exported series: labels, and (timestamp ms, value) samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<(i64, f64)>,
}

/// A running (or stopped) `victoria-metrics`.
pub struct Victoria {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    agent: ureq::Agent,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("addr").port()
}

impl Victoria {
    /// Starts a fresh server; panics (naming `scripts/deps test`) if the binary is missing.
    pub fn start() -> Victoria {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        let mut last = String::new();
        for _ in 0..5 {
            let mut v = Victoria {
                child: None,
                port: free_port(),
                dir: tempfile::Builder::new()
                    .prefix("vmtel-victoria-")
                    .tempdir()
                    .expect("tempdir"),
                agent: agent.clone(),
            };
            match v.spawn() {
                Ok(()) => return v,
                Err(e) => last = e,
            }
        }
        panic!("victoria-metrics did not start in 5 attempts: {last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("victoria.log"))
            .map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .arg(format!(
                "-storageDataPath={}",
                self.dir.path().join("data").display()
            ))
            .arg("-retentionPeriod=1d")
            .arg("-loggerLevel=ERROR")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run victoria-metrics ({e}); these tests need the real server: run `scripts/deps test` (installs the Debian package victoria-metrics)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let ping = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    return Err(format!("exited with {status}: {}", self.log_tail()));
                }
            }
            if let Ok(r) = ping.get(&format!("{}/health", self.url())).call() {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!(
                    "no /health within {START_TIMEOUT:?}: {}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM by PID, so that it writes what it holds in memory to disk;
    /// SIGKILL if it has not exited within 30 s) and reaps it: an outage.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running server");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "victoria-metrics did not come back on port {}: {e}",
                    self.port
                ),
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("victoria.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Makes everything received so far searchable.
    pub fn flush(&self) {
        let r = self
            .agent
            .get(&format!("{}/internal/force_flush", self.url()))
            .call();
        assert!(r.is_ok(), "force_flush: {r:?}");
    }

    /// Every series whose name matches the regex `name_re`, via `/api/v1/export`.
    pub fn export(&self, name_re: &str) -> Vec<Series> {
        self.flush();
        let r = self
            .agent
            .get(&format!("{}/api/v1/export", self.url()))
            .query("match[]", &format!("{{__name__=~\"{name_re}\"}}"))
            .call()
            .unwrap_or_else(|e| panic!("export: {e}\n{}", self.log_tail()));
        let mut text = String::new();
        r.into_reader()
            .take(256 << 20)
            .read_to_string(&mut text)
            .expect("read export");
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("export line is JSON");
                let labels = v["metric"]
                    .as_object()
                    .expect("metric")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                    .collect();
                let ts = v["timestamps"].as_array().expect("timestamps");
                let vals = v["values"].as_array().expect("values");
                let samples = ts
                    .iter()
                    .zip(vals)
                    .map(|(t, x)| (t.as_i64().expect("ts"), x.as_f64().expect("value")))
                    .collect();
                Series { labels, samples }
            })
            .collect()
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
