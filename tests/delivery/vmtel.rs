//! `vmtel run` as a process for the delivery tests: a config with the test's outputs plus a file
//! sink (the record of every line vmtel produced), a state directory for the spools, and
//! bounded polls on the file.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use influxdb_line_protocol::{parse_lines, FieldValue};

pub const VMTEL: &str = env!("CARGO_BIN_EXE_vmtel");

/// A field value as written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val {
    Int(i64),
    Float(f64),
}

impl Val {
    pub fn as_f64(self) -> f64 {
        match self {
            Val::Int(i) => i as f64,
            Val::Float(f) => f,
        }
    }
}

/// One line vmtel wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub measurement: String,
    pub tags: BTreeMap<String, String>,
    pub fields: BTreeMap<String, Val>,
    pub ts: i64,
}

/// Parses the complete lines of `text`.
pub fn parse(text: &str) -> Vec<Line> {
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    parse_lines(complete)
        .map(|l| {
            let l = l.unwrap_or_else(|e| panic!("invalid line protocol from vmtel: {e}"));
            Line {
                measurement: l.series.measurement.to_string(),
                tags: l
                    .series
                    .tag_set
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                fields: l
                    .field_set
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            FieldValue::I64(i) => Val::Int(*i),
                            FieldValue::F64(f) => Val::Float(*f),
                            other => panic!("unexpected field type {other:?}"),
                        };
                        (k.to_string(), v)
                    })
                    .collect(),
                ts: l.timestamp.expect("timestamp"),
            }
        })
        .collect()
}

/// A `vmtel run` process and its directory.
pub struct Vmtel {
    child: Option<Child>,
    pub dir: PathBuf,
    _keep: tempfile::TempDir,
}

impl Vmtel {
    /// Writes `vmtel.toml` (`body`, a file sink, `state_dir`) and starts `vmtel run`.
    pub fn start(body: &str) -> Vmtel {
        let keep = tempfile::tempdir().expect("tempdir");
        let dir = keep.path().to_owned();
        let text = format!(
            "state_dir = \"{}\"\n{body}\n[[outputs.file]]\npath = \"{}\"\n",
            dir.join("state").display(),
            dir.join("out.lp").display()
        );
        std::fs::write(dir.join("vmtel.toml"), text).expect("config");
        let mut v = Vmtel {
            child: None,
            dir,
            _keep: keep,
        };
        v.spawn();
        v
    }

    fn spawn(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr"))
            .expect("stderr file");
        let child = Command::new(VMTEL)
            .args(["run", "--config"])
            .arg(self.dir.join("vmtel.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start vmtel run");
        self.child = Some(child);
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn lines(&self) -> Vec<Line> {
        parse(&std::fs::read_to_string(self.dir.join("out.lp")).unwrap_or_default())
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// Polls the file sink until `cond` holds, for at most `secs` seconds.
    pub fn wait_for(&self, secs: u64, what: &str, cond: impl Fn(&[Line]) -> bool) -> Vec<Line> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let lines = self.lines();
            if cond(&lines) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {secs}s waiting for: {what}\nstderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts `vmtel run` again on the same config and state.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        self.spawn();
    }

    /// SIGTERM and a bounded wait for a clean exit.
    pub fn term(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = c.try_wait().expect("try_wait") {
                assert!(s.success(), "exit after SIGTERM: {s:?}\n{}", self.stderr());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "vmtel did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Vmtel {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Distinct timestamps of `measurement` lines, in order of appearance.
pub fn cycle_times(lines: &[Line], measurement: &str) -> Vec<i64> {
    let mut ts: Vec<i64> = lines
        .iter()
        .filter(|l| l.measurement == measurement)
        .map(|l| l.ts)
        .collect();
    ts.dedup();
    ts
}

/// The newest `vmtel_internal` line of sink `sink`.
pub fn sink_stats<'a>(lines: &'a [Line], sink: &str) -> Option<&'a Line> {
    lines
        .iter()
        .filter(|l| l.measurement == "vmtel_internal")
        .rfind(|l| l.tags.get("sink").map(String::as_str) == Some(sink))
}

/// An integer field of `line`, 0 if absent.
pub fn int(line: Option<&Line>, field: &str) -> i64 {
    match line.and_then(|l| l.fields.get(field)) {
        Some(Val::Int(i)) => *i,
        _ => 0,
    }
}

/// The lines with `ts < before` (every sink receives the same batches, so the file sink's
/// lines are exactly what the InfluxDB output accepted).
pub fn deliverable(lines: &[Line], before: i64) -> Vec<Line> {
    lines.iter().filter(|l| l.ts < before).cloned().collect()
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
