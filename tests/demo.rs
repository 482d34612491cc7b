//! `vmtel demo`: the simulated fleet (3 hosts × 12 VMs of `vmtel::sim` through the real decoder,
//! deriver and history store) serves a dashboard whose first screen already has an hour of
//! history, whose VMs differ from one another, and whose problems and top pages show the
//! simulation's troubled VMs; every page is told the data is simulated.
//!
//! The expectations come from the simulation's own description of the fleet
//! (`SimFleet::new`: names, hosts, which VM has which trouble), not from vmtel's answers.

#[path = "browser/harness.rs"]
mod web;

use std::collections::{BTreeMap, BTreeSet};

use vmtel::collect::simulated::{DEMO_HOSTS, DEMO_VMS};
use vmtel::sim::{host_name, SimFleet, SimOptions, Trouble};
use web::{now_ms, Vmtel};

/// The demo's fleet as the simulation describes it.
fn described() -> SimFleet {
    SimFleet::new(SimOptions {
        hosts: DEMO_HOSTS,
        vms_per_host: DEMO_VMS,
        ..SimOptions::default()
    })
}

#[test]
fn demo_serves_a_simulated_fleet_with_an_hour_of_history_and_its_troubles() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let v = Vmtel::start_in(
        tmp,
        &[
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            "state",
            "--interval",
            "1s",
        ],
        &[],
    );
    let fleet = described();

    let status = v.json("/api/status");
    assert_eq!(status["simulated"], true, "{status}");

    // Hosts: the three simulated hosts with their twelve VMs, live values and capacity.
    let hosts = v.wait_json("/api/hosts", 60, "hosts with live rates", |h| {
        h["hosts"]
            .as_array()
            .is_some_and(|a| a.len() == DEMO_HOSTS && a.iter().all(|x| x["net_bps"].is_number()))
    });
    for (h, row) in hosts["hosts"].as_array().expect("hosts").iter().enumerate() {
        assert_eq!(row["host"], host_name(h).as_str(), "{row}");
        let n: u64 = ["running", "paused", "other"]
            .iter()
            .map(|k| row[k].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(n, DEMO_VMS as u64, "{row}");
        let vcpus: u32 = fleet
            .vms
            .iter()
            .filter(|x| x.host == h)
            .map(|x| x.vcpus)
            .sum();
        assert_eq!(row["vcpus"].as_f64(), Some(f64::from(vcpus)), "{row}");
        assert!(row["host_cpus"].as_f64().is_some_and(|c| c > 0.0), "{row}");
        assert!(
            row["host_mem_bytes"].as_f64().is_some_and(|m| m > 0.0),
            "{row}"
        );
        assert!(row["silent"] == false, "{row}");
    }
    // The hosts' CPUs are busy with at least what their VMs use (each host's VM CPU % of their
    // vCPUs, in vCPUs, as a share of the host's CPUs), in one answer where both come from the
    // same cycles: the two reads can straddle a new cycle, so a few answers are allowed.
    let covers = |row: &serde_json::Value| -> Option<bool> {
        let busy = row["host_cpu_pct"].as_f64()?;
        let used = row["cpu_pct"].as_f64()? * row["vcpus"].as_f64()? / 100.0;
        let share = used / row["host_cpus"].as_f64()? * 100.0;
        Some((0.0..=100.0).contains(&busy) && busy + 0.5 >= share)
    };
    v.wait_json(
        "/api/hosts",
        60,
        "each host's CPU busy share covering its VMs' use",
        |h| {
            h["hosts"]
                .as_array()
                .is_some_and(|a| a.iter().all(|x| covers(x) == Some(true)))
        },
    );

    // The fleet: every VM by its name, and numbers that differ from VM to VM.
    let f = v.json("/api/fleet?limit=100");
    let got: BTreeSet<(String, String)> = f["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .map(|x| {
            (
                x["host"].as_str().unwrap_or_default().to_owned(),
                x["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = fleet
        .vms
        .iter()
        .map(|x| (host_name(x.host), x.name.clone()))
        .collect();
    assert_eq!(got, want);
    let distinct = |key: &str| -> usize {
        f["vms"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x[key].as_f64())
                    .map(|x| format!("{x:.3}"))
                    .collect::<BTreeSet<_>>()
                    .len()
            })
            .unwrap_or(0)
    };
    for key in ["cpu_pct", "mem_used_pct", "net_rx_bps"] {
        assert!(
            distinct(key) >= DEMO_VMS,
            "{key}: only {} distinct values over {} VMs",
            distinct(key),
            want.len()
        );
    }

    // History: a VM's hour-long chart starts about an hour ago (back-filled), not at start-up.
    let busy = fleet
        .vms
        .iter()
        .find(|x| x.trouble == Trouble::None)
        .expect("a VM without trouble");
    let uuid = busy.uuid.clone();
    let detail = v.json(&format!(
        "/api/vm?host={}&uuid={uuid}&range=1h",
        host_name(busy.host)
    ));
    let chart = detail["charts"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == "cpu"))
        .cloned()
        .unwrap_or_else(|| panic!("no cpu chart: {detail}"));
    let t = chart["t"].as_array().cloned().expect("chart times");
    let cpu = chart["lines"][0]["values"]
        .as_array()
        .cloned()
        .expect("cpu values");
    let first = t
        .iter()
        .zip(&cpu)
        .find(|(_, v)| v.is_number())
        .and_then(|(t, _)| t.as_i64())
        .expect("a CPU value");
    assert!(
        first <= now_ms() - 50 * 60_000,
        "the first CPU value is at {first}, not near an hour ago"
    );
    let values = cpu.iter().filter(|v| v.is_number()).count();
    assert!(values * 2 >= cpu.len(), "{values} values of {}", cpu.len());

    // Problems: the simulation's troubled VMs, each under its rule.
    let expect: BTreeMap<&str, &str> = fleet
        .vms
        .iter()
        .filter_map(|x| Some((x.trouble.problem_rule()?, x.uuid.as_str())))
        .collect();
    assert_eq!(expect.len(), 4, "the simulation has four troubled VMs");
    let p = v.wait_json("/api/problems", 60, "the troubled VMs", |p| {
        expect.iter().all(|(rule, uuid)| {
            p["problems"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["rule"] == *rule && x["uuid"] == *uuid))
        })
    });
    let steal = p["problems"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["rule"] == "steal"))
        .cloned()
        .expect("steal");
    assert!(
        steal["since_ms"]
            .as_i64()
            .is_some_and(|s| s < now_ms() - 60_000),
        "the steal streak began before start-up (back-filled): {steal}"
    );

    // Top: ten VMs by CPU, highest first, the steal list led by the stealing VM.
    let top = v.json("/api/top?by=cpu_pct&range=1h");
    let vals: Vec<f64> = top["vms"]
        .as_array()
        .expect("top")
        .iter()
        .filter_map(|x| x["value"].as_f64())
        .collect();
    assert_eq!(vals.len(), 10, "{top}");
    assert!(vals.windows(2).all(|w| w[0] >= w[1]), "{vals:?}");
    let steal_top = v.json("/api/top?by=cpu_steal_pct&range=1h");
    assert_eq!(steal_top["vms"][0]["uuid"], expect["steal"], "{steal_top}");
}
