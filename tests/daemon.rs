//! `vmtel run` as a process: the schedule, an unreachable source next to a healthy one, a
//! libvirtd that is killed and restarted, signals, config reload and `check-config`.
//!
//! The daemon writes to a file sink; tests wait for conditions on that file with bounded polls.

#[path = "harness/libvirtd.rs"]
mod libvirtd;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use influxdb_line_protocol::{parse_lines, FieldValue};

const VMTEL: &str = env!("CARGO_BIN_EXE_vmtel");

/// One parsed line, owned.
#[derive(Debug, Clone)]
struct Line {
    measurement: String,
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, FieldValue<'static>>,
    ts: i64,
}

fn parse(text: &str) -> Vec<Line> {
    // Only complete lines: the sink may be in the middle of a write.
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
                            FieldValue::I64(i) => FieldValue::I64(*i),
                            FieldValue::U64(u) => FieldValue::U64(*u),
                            FieldValue::F64(f) => FieldValue::F64(*f),
                            FieldValue::Boolean(b) => FieldValue::Boolean(*b),
                            FieldValue::String(_) => panic!("vmtel writes no string fields"),
                        };
                        (k.to_string(), v)
                    })
                    .collect(),
                ts: l.timestamp.expect("every line has a timestamp"),
            }
        })
        .collect()
}

fn int(l: &Line, f: &str) -> Option<i64> {
    match l.fields.get(f) {
        Some(FieldValue::I64(i)) => Some(*i),
        _ => None,
    }
}

struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn config_path(&self) -> PathBuf {
        self.dir.path().join("vmtel.toml")
    }

    fn out_path(&self) -> PathBuf {
        self.dir.path().join("out.lp")
    }

    /// Writes a config with `body` plus a file sink, and starts `vmtel run` on it.
    fn start(body: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        write_config(dir.path(), body);
        let child = Command::new(VMTEL)
            .args(["run", "--config"])
            .arg(dir.path().join("vmtel.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"))
            .spawn()
            .expect("start vmtel run");
        Daemon { child, dir }
    }

    fn write_config(&self, body: &str) {
        write_config(self.dir.path(), body);
    }

    fn lines(&self) -> Vec<Line> {
        parse(&std::fs::read_to_string(self.out_path()).unwrap_or_default())
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Polls the output until `cond` holds, for at most `secs` seconds.
    fn wait_for(&self, secs: u64, what: &str, cond: impl Fn(&[Line]) -> bool) -> Vec<Line> {
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

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits (bounded) for the process to exit.
    fn wait_exit(&mut self, secs: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "vmtel did not exit within {secs}s after the signal"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Writes `dir/vmtel.toml`: `body` plus a file sink at `dir/out.lp`.
fn write_config(dir: &Path, body: &str) {
    // History in the test's own directory; no dashboard (tests run in parallel).
    let text = format!(
        "state_dir = \"{}\"\n{body}\n[[outputs.file]]\npath = \"{}\"\n[web]\nenabled = false\n",
        dir.display(),
        dir.join("out.lp").display()
    );
    std::fs::write(dir.join("vmtel.toml"), text).expect("write config");
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn timestamps(lines: &[Line], measurement: &str, source_host: Option<&str>) -> Vec<i64> {
    let mut ts: Vec<i64> = lines
        .iter()
        .filter(|l| l.measurement == measurement)
        .filter(|l| source_host.is_none_or(|h| l.tags.get("host").map(String::as_str) == Some(h)))
        .map(|l| l.ts)
        .collect();
    ts.dedup();
    ts
}

fn internal<'a>(lines: &'a [Line], source: &str) -> Vec<&'a Line> {
    lines
        .iter()
        .filter(|l| l.measurement == "vmtel_internal")
        .filter(|l| l.tags.get("source").map(String::as_str) == Some(source))
        .collect()
}

fn assert_no_negative_rates(lines: &[Line]) {
    for l in lines.iter().filter(|l| l.measurement == "vm_features") {
        for (k, v) in &l.fields {
            if let FieldValue::F64(f) = v {
                assert!(*f >= 0.0, "negative {k} = {f} at {}", l.ts);
            }
        }
    }
}

const BAD_URI: &str = "test+unix:///default?socket=/nonexistent/vmtel-test/sock";

#[test]
fn healthy_source_keeps_collecting_next_to_an_unreachable_one_and_sigterm_flushes() {
    let mut d = Daemon::start(&format!(
        "interval = \"1s\"\n[[sources]]\nuri = \"test:///default\"\nhost = \"good\"\n\
         [[sources]]\nuri = \"{BAD_URI}\"\nhost = \"bad\"\n"
    ));
    let lines = d.wait_for(30, "4 cycles from the healthy source", |l| {
        timestamps(l, "vm_metrics", Some("good")).len() >= 4
    });
    // Grid: one timestamp per cycle, whole seconds (precision s, interval 1s), increasing.
    let ts = timestamps(&lines, "vm_metrics", Some("good"));
    assert!(
        ts.windows(2).all(|w| w[1] > w[0]),
        "timestamps increase: {ts:?}"
    );
    // Every line of one cycle carries the same grid timestamp.
    let first = ts[1];
    let cycle: Vec<_> = lines.iter().filter(|l| l.ts == first).collect();
    assert!(cycle.iter().any(|l| l.measurement == "vm_totals"));
    assert!(cycle.iter().any(|l| l.measurement == "vm_devices"));
    // The unreachable source is reported, not fatal.
    let bad = internal(&lines, BAD_URI);
    assert!(
        !bad.is_empty(),
        "vmtel_internal has a line for the bad source"
    );
    let last = bad.last().expect("line");
    assert!(int(last, "errors").unwrap_or(0) >= 1, "{last:?}");
    assert_eq!(int(last, "connected"), Some(0));
    assert!(lines
        .iter()
        .all(|l| l.tags.get("host").map(String::as_str) != Some("bad")
            || l.measurement == "vmtel_internal"));
    let good = internal(&lines, "test:///default");
    assert_eq!(int(good.last().expect("line"), "errors"), Some(0));
    assert_no_negative_rates(&lines);

    d.signal("TERM");
    let status = d.wait_exit(15);
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    let text = std::fs::read_to_string(d.out_path()).expect("output");
    assert!(
        text.ends_with('\n'),
        "the sink was flushed with whole lines"
    );
    parse(&text);
    // The failing source was logged once, not once per cycle.
    let err = d.stderr();
    let reports = err
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("nonexistent/vmtel-test/sock"))
        .count();
    assert_eq!(reports, 1, "{err}");
}

#[test]
fn survives_a_libvirtd_restart_without_bogus_rates() {
    let mut lvd = libvirtd::Libvirtd::start();
    let uri = lvd.test_uri();
    let d = Daemon::start(&format!(
        "interval = \"1s\"\n[[sources]]\nuri = \"{uri}\"\nhost = \"hv\"\n"
    ));
    d.wait_for(30, "rates before the restart", |l| {
        l.iter().any(|l| l.measurement == "vm_features")
    });
    lvd.kill();
    let down = d.wait_for(30, "the outage to be seen", |l| {
        internal(l, &uri)
            .last()
            .is_some_and(|i| int(i, "errors").unwrap_or(0) >= 1)
    });
    let last_before = *timestamps(&down, "vm_metrics", Some("hv"))
        .last()
        .expect("ts");
    lvd.restart();
    let lines = d.wait_for(60, "two cycles after the restart", |l| {
        timestamps(l, "vm_metrics", Some("hv"))
            .iter()
            .filter(|&&t| t > last_before)
            .count()
            >= 3
    });
    let after: Vec<i64> = timestamps(&lines, "vm_metrics", Some("hv"))
        .into_iter()
        .filter(|&t| t > last_before)
        .collect();
    let features_at = |t: i64| {
        lines
            .iter()
            .any(|l| l.measurement == "vm_features" && l.ts == t)
    };
    assert!(
        !features_at(after[0]),
        "the first cycle after a reconnect has raw counters only"
    );
    assert!(features_at(after[2]), "rates resume after the reconnect");
    assert_no_negative_rates(&lines);
}

#[test]
fn sighup_reloads_a_valid_config_and_keeps_running_on_an_invalid_one() {
    let base = "interval = \"1s\"\n[[sources]]\nuri = \"test:///default\"\n";
    let d = Daemon::start(&format!("{base}[global_tags]\nrev = \"one\"\n"));
    d.wait_for(30, "lines with rev=one", |l| {
        l.iter()
            .any(|l| l.tags.get("rev").map(String::as_str) == Some("one"))
    });
    d.write_config(&format!("{base}[global_tags]\nrev = \"two\"\n"));
    d.signal("HUP");
    d.wait_for(30, "lines with rev=two", |l| {
        l.iter()
            .any(|l| l.tags.get("rev").map(String::as_str) == Some("two"))
    });
    std::fs::write(d.config_path(), "interval = \"bogus\"\n").expect("break the config");
    d.signal("HUP");
    let count_two = |l: &[Line]| {
        timestamps(
            &l.iter()
                .filter(|l| l.tags.get("rev").map(String::as_str) == Some("two"))
                .cloned()
                .collect::<Vec<_>>(),
            "vm_metrics",
            None,
        )
        .len()
    };
    let seen = count_two(&d.lines());
    d.wait_for(30, "collection to go on after a bad reload", |l| {
        count_two(l) >= seen + 2 && d.stderr().contains("keeping the running configuration")
    });
}

fn check_config(text: &str) -> (bool, String, String, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.keep().join("c.toml");
    std::fs::write(&path, text).expect("write");
    let out = Command::new(VMTEL)
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path,
    )
}

#[test]
fn check_config_reports_every_problem_with_its_place() {
    let (ok, stdout, _, _) = check_config("[[sources]]\nuri = \"test:///default\"\n");
    assert!(ok);
    assert!(stdout.contains("ok"), "{stdout}");

    let (ok, _, stderr, path) = check_config(
        "interval = \"0s\"\nballoon_period = 0\n[global_tags]\nuuid = \"x\"\n\
         [[sources]]\nuri = \"\"\n[[outputs.file]]\npath = \"/tmp/x.lp\"\nmax_size = \"1 KiB\"\n",
    );
    assert!(!ok);
    let problems: Vec<&str> = stderr.lines().collect();
    assert_eq!(problems.len(), 5, "one line per problem:\n{stderr}");
    for (line, key) in problems.iter().zip([
        "interval",
        "sources[0].uri",
        "balloon_period",
        "outputs.file[0].max_size",
        "global_tags.uuid",
    ]) {
        assert!(line.starts_with(&path.display().to_string()), "{line}");
        assert!(line.contains(key), "{line} should name {key}");
    }

    let (ok, _, stderr, _) = check_config("interval = \"10s\"\n[sources]\nuri = 1\n");
    assert!(!ok);
    assert!(stderr.contains("line 2"), "{stderr}");
}

#[test]
fn unreadable_config_is_a_clear_error() {
    let out = Command::new(VMTEL)
        .args(["run", "--config", "/nonexistent/vmtel.toml"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/vmtel.toml"), "{err}");
}

#[test]
fn a_stuck_hypervisor_does_not_delay_the_others_and_its_ticks_are_skipped() {
    let lvd = libvirtd::Libvirtd::start();
    let stuck_uri = lvd.test_uri();
    let d = Daemon::start(&format!(
        "interval = \"1s\"\n[[sources]]\nuri = \"test:///default\"\nhost = \"good\"\n\
         [[sources]]\nuri = \"{stuck_uri}\"\nhost = \"stuck\"\n"
    ));
    d.wait_for(30, "both sources collecting", |l| {
        timestamps(l, "vm_metrics", Some("stuck")).len() >= 2
            && timestamps(l, "vm_metrics", Some("good")).len() >= 2
    });
    // Freeze the daemon: calls on its connection now block.
    lvd.signal("STOP");
    let frozen_at = *timestamps(&d.lines(), "vm_metrics", Some("good"))
        .last()
        .expect("ts");
    let lines = d.wait_for(
        30,
        "the healthy source to go on while the other is stuck",
        |l| {
            timestamps(l, "vm_metrics", Some("good"))
                .iter()
                .filter(|&&t| t > frozen_at)
                .count()
                >= 4
        },
    );
    let stuck_last = *timestamps(&lines, "vm_metrics", Some("stuck"))
        .last()
        .expect("ts");
    assert!(
        stuck_last <= frozen_at + 1,
        "no new cycle from the frozen hypervisor"
    );
    let good: Vec<i64> = timestamps(&lines, "vm_metrics", Some("good"))
        .into_iter()
        .filter(|&t| t > frozen_at)
        .collect();
    assert!(
        good.windows(2).all(|w| w[1] - w[0] == 1),
        "the healthy source missed no tick while the other was stuck: {good:?}"
    );
    lvd.signal("CONT");
    let lines = d.wait_for(30, "the stuck source to report skipped ticks", |l| {
        internal(l, &stuck_uri)
            .last()
            .is_some_and(|i| int(i, "skipped_ticks").unwrap_or(0) >= 2)
    });
    // The cycle that hung finished after its deadline: counted, and stamped with the grid point
    // of its read rather than the long-gone tick it started on.
    let late = internal(&lines, &stuck_uri)
        .into_iter()
        .find(|i| int(i, "late_cycles").unwrap_or(0) >= 1)
        .expect("a late cycle is counted");
    let stuck_after: Vec<i64> = timestamps(&lines, "vm_metrics", Some("stuck"))
        .into_iter()
        .filter(|&t| t > stuck_last)
        .collect();
    assert!(
        stuck_after
            .first()
            .is_some_and(|&t| t >= frozen_at + 4 && t <= late.ts),
        "late cycle stamped at its read: {stuck_after:?}, frozen at {frozen_at}"
    );
    assert!(d.stderr().contains("tick skipped"), "{}", d.stderr());
}

/// A host larger than one chunk (the collector hands on 16 domains at a time and the worker a
/// batch every 32 KiB): every cycle still has every domain exactly once, all under the cycle's
/// grid timestamp, with rates from the second cycle on and `domains` counting them all.
#[test]
fn a_large_host_is_collected_whole_in_every_cycle() {
    use vmtel::demo::{uuid_for, write_node, Vm};
    const N: usize = 150;
    let dir = tempfile::tempdir().expect("temp dir");
    let vms: Vec<Vm> = (0..N)
        .map(|i| Vm::standard(i, &format!("big {i}, ü")))
        .collect();
    let (_, uri) = write_node(dir.path(), "big.xml", &vms).expect("write fleet");
    let d = Daemon::start(&format!(
        "interval = \"1s\"\n[[sources]]\nuri = \"{uri}\"\nhost = \"big\"\n"
    ));
    let lines = d.wait_for(60, "4 complete cycles of the large host", |l| {
        internal(l, &uri).len() >= 4
    });
    let cycles: Vec<i64> = internal(&lines, &uri).iter().map(|l| l.ts).collect();
    let want: std::collections::BTreeSet<String> = (0..N).map(uuid_for).collect();
    for (k, &t) in cycles.iter().enumerate() {
        let at = |m: &str| -> Vec<&Line> {
            lines
                .iter()
                .filter(|l| l.ts == t && l.measurement == m)
                .collect()
        };
        let metrics = at("vm_metrics");
        let uuids: std::collections::BTreeSet<String> = metrics
            .iter()
            .filter_map(|l| l.tags.get("uuid").cloned())
            .collect();
        assert_eq!(
            metrics.len(),
            N,
            "cycle {k} at {t}: one vm_metrics line per domain"
        );
        assert_eq!(uuids, want, "cycle {k}: every domain once");
        assert_eq!(at("vm_totals").len(), N);
        assert_eq!(at("vm_devices").len(), 4 * N, "2 NICs + 2 disks each");
        let features = at("vm_features").len();
        if k == 0 {
            assert_eq!(features, 0, "no rates in the first cycle");
        } else {
            assert_eq!(features, N, "cycle {k}: rates for every domain");
        }
        let own = internal(&lines, &uri)[k];
        assert_eq!(int(own, "domains"), Some(N as i64), "{own:?}");
        assert_eq!(int(own, "errors"), Some(0));
    }
    assert_no_negative_rates(&lines);
    // Names survive escaping through the chunks.
    assert!(lines
        .iter()
        .any(|l| l.tags.get("name").map(String::as_str) == Some("big 149, ü")));
}

#[test]
fn sighup_to_a_config_that_cannot_start_keeps_the_running_pipeline() {
    let base = "interval = \"1s\"\n[[sources]]\nuri = \"test:///default\"\n";
    let mut d = Daemon::start(base);
    d.wait_for(30, "first lines", |l| {
        !timestamps(l, "vm_metrics", None).is_empty()
    });
    // Valid as a config (check-config cannot know), but the output cannot be opened: its path
    // is a directory.
    let blocker = d.dir.path().join("a-directory");
    std::fs::create_dir(&blocker).expect("mkdir");
    d.write_config(&format!(
        "{base}[[outputs.file]]\npath = \"{}\"\n",
        blocker.display()
    ));
    d.signal("HUP");
    let seen = timestamps(&d.lines(), "vm_metrics", None).len();
    d.wait_for(30, "collection to go on after the failed reload", |l| {
        timestamps(l, "vm_metrics", None).len() >= seen + 2
            && d.stderr().contains("keeping the running configuration")
    });
    assert!(
        d.child.try_wait().expect("try_wait").is_none(),
        "still running"
    );
    d.signal("TERM");
    assert!(d.wait_exit(30).success());
}

#[test]
fn a_second_agent_on_the_same_state_dir_exits_naming_the_first() {
    let base = "interval = \"1s\"\n[[sources]]\nuri = \"test:///default\"\n";
    let d = Daemon::start(base);
    d.wait_for(30, "first lines", |l| {
        !timestamps(l, "vm_metrics", None).is_empty()
    });
    let out = Command::new(VMTEL)
        .args(["run", "--config"])
        .arg(d.config_path())
        .stdin(Stdio::null())
        .output()
        .expect("run a second vmtel");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the second agent must not run");
    assert!(
        stderr.contains(&format!("PID {}", d.child.id())),
        "names the first agent's PID: {stderr}"
    );
    assert!(
        stderr.contains(&d.dir.path().display().to_string()),
        "names the state_dir: {stderr}"
    );
}

#[test]
fn check_config_runs_the_checks_of_start_and_echoes_no_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let not_pem = dir.path().join("ca.txt");
    std::fs::write(&not_pem, "this is not a certificate\n").expect("write");
    let (ok, _, stderr, _) = check_config(&format!(
        "[[outputs.influxdb]]\nurl = \"https://influx.example.org:8181\"\ndatabase = \"d\"\ntls_ca_file = \"{}\"\n",
        not_pem.display()
    ));
    assert!(!ok);
    assert!(
        stderr.contains("tls_ca_file") && stderr.contains("no PEM certificate"),
        "{stderr}"
    );

    let (ok, _, stderr, _) = check_config(&format!(
        "[[outputs.file]]\npath = \"{}/missing/out.lp\"\n",
        dir.path().display()
    ));
    assert!(!ok);
    assert!(stderr.contains("does not exist"), "{stderr}");

    let (ok, _, stderr, _) = check_config(
        "[[outputs.influxdb]]\nurl = \"http://admin:hunter2-secret@influx.example.org:8181\"\ndatabase = \"d\"\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains("password_env"),
        "points to the fix: {stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the password is not printed: {stderr}"
    );

    let (ok, _, stderr, _) = check_config("interval = \"10000years\"\n");
    assert!(!ok);
    assert!(stderr.contains("maximum"), "{stderr}");

    let (ok, _, stderr, _) = check_config("token = \"hunter2-secret\"\n");
    assert!(!ok);
    assert!(
        stderr.contains("line 1") && stderr.contains("token_file"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the value is not printed: {stderr}"
    );
}
