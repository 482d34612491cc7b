//! `vmtel run` → VictoriaMetrics (Debian's `victoria-metrics`, started on loopback) through the
//! InfluxDB v2 write API: every line of N cycles arrives with its values; an outage (the server
//! killed under load and started again) loses nothing and duplicates nothing, also when vmtel
//! itself is killed with SIGKILL during the outage and restarted.
//!
//! VictoriaMetrics keeps every sample it receives (no deduplication by default), so a batch sent
//! twice would show up as two samples with the same timestamp: these tests see duplicates that
//! InfluxDB would hide by overwriting.

#[path = "delivery/vmtel.rs"]
mod daemon;
mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use daemon::{cycle_times, int, sink_stats, Line, Vmtel};
use support::victoria::{Series, Victoria};

fn config(vm: &Victoria) -> String {
    format!(
        "interval = \"1s\"\n[[sources]]\nuri = \"test:///default\"\nhost = \"hv\"\n\
         [[outputs.influxdb]]\nname = \"vm\"\napi = \"v2\"\nurl = \"{}\"\nbucket = \"vmtel\"\norg = \"lab\"\n\
         flush_interval = \"100ms\"\ntimeout = \"2s\"\n",
        vm.url()
    )
}

type Key = (String, BTreeMap<String, String>);

/// Samples by (series name, labels without VictoriaMetrics' own `db`).
fn by_series(series: Vec<Series>) -> HashMap<Key, Vec<(i64, f64)>> {
    let mut m: HashMap<Key, Vec<(i64, f64)>> = HashMap::new();
    for mut s in series {
        let name = s.labels.remove("__name__").unwrap_or_default();
        s.labels.remove("db");
        m.entry((name, s.labels)).or_default().extend(s.samples);
    }
    m
}

/// (line, field) pairs of `want` with no matching sample.
fn missing(want: &[Line], got: &HashMap<Key, Vec<(i64, f64)>>) -> Vec<String> {
    let mut out = Vec::new();
    for l in want {
        for (f, v) in &l.fields {
            let key = (format!("{}_{f}", l.measurement), l.tags.clone());
            let v = v.as_f64();
            let ok = got.get(&key).is_some_and(|samples| {
                samples.iter().any(|(t, x)| {
                    *t == l.ts * 1000 && (x - v).abs() <= 1e-12 * v.abs().max(x.abs()).max(1.0)
                })
            });
            if !ok {
                out.push(format!("{key:?} at {} = {v}", l.ts));
            }
        }
    }
    out
}

/// Series that hold a timestamp more than once.
fn duplicates(got: &HashMap<Key, Vec<(i64, f64)>>) -> Vec<String> {
    got.iter()
        .filter_map(|(k, s)| {
            let mut ts: Vec<i64> = s.iter().map(|(t, _)| *t).collect();
            let n = ts.len();
            ts.sort_unstable();
            ts.dedup();
            (ts.len() != n).then(|| format!("{k:?}: {n} samples, {} timestamps", ts.len()))
        })
        .collect()
}

/// Waits until every line of `want` is in VictoriaMetrics; returns its samples.
fn wait_delivered(
    d: &Vmtel,
    vm: &Victoria,
    secs: u64,
    want: impl Fn(&[Line]) -> Vec<Line>,
) -> HashMap<Key, Vec<(i64, f64)>> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let want = want(&d.lines());
        let got = by_series(vm.export(".+"));
        let gap = missing(&want, &got);
        if !want.is_empty() && gap.is_empty() {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} values of {} lines not in VictoriaMetrics after {secs}s, e.g. {:?}\nstderr:\n{}",
            gap.len(),
            want.len(),
            gap.first(),
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Every line but the newest cycle's (which may still be on its way).
fn settled(lines: &[Line]) -> Vec<Line> {
    let newest = *cycle_times(lines, "vm_metrics").last().unwrap_or(&i64::MAX);
    daemon::deliverable(lines, newest)
}

#[test]
fn every_line_of_n_cycles_arrives_through_the_v2_api() {
    let vm = Victoria::start();
    let d = Vmtel::start(&config(&vm));
    d.wait_for(60, "6 cycles", |l| cycle_times(l, "vm_metrics").len() >= 6);
    let got = wait_delivered(&d, &vm, 60, settled);
    assert_eq!(duplicates(&got), Vec::<String>::new());
    let lines = d.lines();
    for m in ["vm_metrics", "vm_totals", "vm_devices", "vm_features"] {
        assert!(lines.iter().any(|l| l.measurement == m), "no {m}");
    }
    assert_eq!(int(sink_stats(&lines, "influxdb:vm"), "retried"), 0);
}

/// Stops the server under load and waits until vmtel has retried and collected on.
fn outage(d: &Vmtel, vm: &mut Victoria) -> usize {
    d.wait_for(60, "3 delivered cycles", |l| {
        cycle_times(l, "vm_metrics").len() >= 3
            && int(sink_stats(l, "influxdb:vm"), "delivered_requests") >= 2
    });
    vm.flush();
    vm.stop();
    let lines = d.wait_for(60, "retries during the outage", |l| {
        let s = sink_stats(l, "influxdb:vm");
        int(s, "retried") >= 2 && int(s, "backlog_batches") >= 3
    });
    cycle_times(&lines, "vm_metrics").len()
}

#[test]
fn an_outage_loses_nothing_and_duplicates_nothing() {
    let mut vm = Victoria::start();
    let d = Vmtel::start(&config(&vm));
    let cycles = outage(&d, &mut vm);
    vm.restart();
    d.wait_for(60, "cycles after the outage", |l| {
        cycle_times(l, "vm_metrics").len() >= cycles + 2
    });
    let got = wait_delivered(&d, &vm, 120, settled);
    assert_eq!(duplicates(&got), Vec::<String>::new());
    // Every cycle of the outage is there, in order.
    let times = cycle_times(&settled(&d.lines()), "vm_metrics");
    let key = got
        .keys()
        .find(|(n, t)| n == "vm_metrics_state" && t.get("host").map(String::as_str) == Some("hv"))
        .cloned()
        .expect("state series");
    let mut stored: Vec<i64> = got[&key].iter().map(|(t, _)| t / 1000).collect();
    stored.sort_unstable();
    assert!(
        times.iter().all(|t| stored.contains(t)),
        "{times:?} vs {stored:?}"
    );
}

#[test]
fn vmtel_killed_during_an_outage_delivers_its_spool_after_a_restart() {
    let mut vm = Victoria::start();
    let mut d = Vmtel::start(&config(&vm));
    outage(&d, &mut vm);
    d.kill9();
    let before_kill = d.lines();
    let last_before_kill = *cycle_times(&before_kill, "vm_metrics")
        .last()
        .expect("cycles");
    assert!(
        d.state_dir().read_dir().expect("state dir").count() >= 1,
        "the spool file is there"
    );
    d.restart();
    vm.restart();
    // The cycle being written at the kill may not have been committed (not accepted); every
    // other line must arrive, including those of the outage before the kill.
    let want = move |lines: &[Line]| -> Vec<Line> {
        settled(lines)
            .into_iter()
            .filter(|l| l.ts != last_before_kill)
            .collect()
    };
    d.wait_for(60, "cycles after the restart", |l| {
        cycle_times(l, "vm_metrics").len() >= cycle_times(&before_kill, "vm_metrics").len() + 2
    });
    let got = wait_delivered(&d, &vm, 120, want);
    assert_eq!(duplicates(&got), Vec::<String>::new());
    assert!(
        d.stderr().contains("resuming delivery of"),
        "{}",
        d.stderr()
    );
}
