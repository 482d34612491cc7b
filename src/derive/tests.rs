//! Unit tests of [`Deriver`]: every expected value is computed here from the inputs with the
//! formulas of the schema (`cpu_pct = Δcputime / (Δt · cpus) · 100`, rates = Δcounter / Δt,
//! `mem_used_pct = (available − usable) / available · 100`).

use proptest::prelude::*;

use super::{Deriver, KEEP_UNSEEN};
use crate::model::{DiskStats, DomainSample, Features, HostSample, NicStats};

const SEC: u64 = 1_000_000_000;

// A VM must survive at least one missed update (the test below relies on it).
const _: () = assert!(KEEP_UNSEEN >= 2);

fn nic(name: &str, rx_bytes: u64, tx_bytes: u64, rx_pkts: u64, tx_pkts: u64) -> NicStats {
    NicStats {
        name: name.into(),
        rx_bytes: Some(rx_bytes),
        tx_bytes: Some(tx_bytes),
        rx_pkts: Some(rx_pkts),
        tx_pkts: Some(tx_pkts),
        ..NicStats::default()
    }
}

fn disk(name: &str, rd_bytes: u64, wr_bytes: u64, rd_reqs: u64, wr_reqs: u64) -> DiskStats {
    DiskStats {
        name: name.into(),
        rd_bytes: Some(rd_bytes),
        wr_bytes: Some(wr_bytes),
        rd_reqs: Some(rd_reqs),
        wr_reqs: Some(wr_reqs),
        ..DiskStats::default()
    }
}

/// A VM with `cpus` vCPUs, read at `mono_ns`, with no counters yet.
fn vm(uuid: &str, id: u32, mono_ns: u64, cpus: u32) -> DomainSample {
    let mut d = DomainSample {
        name: format!("vm-{uuid}"),
        uuid: uuid.into(),
        id: Some(id),
        mono_ns,
        state: Some(1),
        ..DomainSample::default()
    };
    d.vcpu.current = Some(cpus);
    d
}

fn host(domains: Vec<DomainSample>) -> HostSample {
    HostSample {
        host: "hv1".into(),
        timestamp_ns: 1,
        domains,
    }
}

/// Feeds `a` then `b` (one VM each) to a fresh deriver; returns the features of `b`.
fn pair(a: DomainSample, b: DomainSample) -> Option<Features> {
    let mut d = Deriver::new();
    let first = d.update(&host(vec![a]));
    assert_eq!(
        first,
        vec![None],
        "the first sample of a VM has no features"
    );
    let mut second = d.update(&host(vec![b]));
    assert_eq!(second.len(), 1);
    second.pop().unwrap()
}

#[track_caller]
fn close(got: Option<f64>, want: f64) {
    let got = got.unwrap_or_else(|| panic!("expected {want}, got None"));
    let tol = 1e-9 * want.abs().max(1.0);
    assert!((got - want).abs() <= tol, "expected {want}, got {got}");
}

/// Every value of `f`, with its field name.
fn all_values(f: &Features) -> [(&'static str, Option<f64>); 13] {
    [
        ("cpu_pct", f.cpu_pct),
        ("cpu_usr_pct", f.cpu_usr_pct),
        ("cpu_sys_pct", f.cpu_sys_pct),
        ("cpu_steal_pct", f.cpu_steal_pct),
        ("mem_used_pct", f.mem_used_pct),
        ("net_rx_bps", f.net_rx_bps),
        ("net_tx_bps", f.net_tx_bps),
        ("net_rx_pps", f.net_rx_pps),
        ("net_tx_pps", f.net_tx_pps),
        ("disk_rd_bps", f.disk_rd_bps),
        ("disk_wr_bps", f.disk_wr_bps),
        ("disk_rd_iops", f.disk_rd_iops),
        ("disk_wr_iops", f.disk_wr_iops),
    ]
}

/// Two samples 2.5 s apart of a 4-vCPU VM with two NICs and two disks.
fn busy_pair() -> (DomainSample, DomainSample) {
    let mut a = vm("u1", 3, 10 * SEC, 4);
    a.cpu.time = Some(100 * SEC);
    a.cpu.user = Some(60 * SEC);
    a.cpu.system = Some(30 * SEC);
    a.vcpu.delay_sum = Some(5 * SEC);
    a.mem.available = Some(4_000_000);
    a.mem.usable = Some(3_000_000);
    a.nics = vec![
        nic("tap0", 1_000, 2_000, 10, 20),
        nic("tap1", 50_000, 60_000, 500, 600),
    ];
    a.disks = vec![
        disk("vda", 1 << 20, 2 << 20, 100, 200),
        disk("vdb", 0, 0, 0, 0),
    ];

    let mut b = vm("u1", 3, 12 * SEC + SEC / 2, 4);
    b.cpu.time = Some(100 * SEC + 5 * SEC); // Δ 5 s of CPU
    b.cpu.user = Some(60 * SEC + 3 * SEC); // Δ 3 s
    b.cpu.system = Some(30 * SEC + SEC); // Δ 1 s
    b.vcpu.delay_sum = Some(5 * SEC + SEC / 2); // Δ 0.5 s
    b.mem.available = Some(4_000_000);
    b.mem.usable = Some(1_000_000);
    b.nics = vec![
        nic("tap0", 1_000 + 2_500, 2_000 + 5_000, 10 + 25, 20 + 50),
        nic("tap1", 50_000 + 7_500, 60_000 + 10_000, 500 + 75, 600 + 100),
    ];
    b.disks = vec![
        disk(
            "vda",
            (1 << 20) + 250_000,
            (2 << 20) + 500_000,
            100 + 250,
            200 + 500,
        ),
        disk("vdb", 2_500, 5_000, 25, 50),
    ];
    (a, b)
}

#[test]
fn first_sample_of_a_vm_yields_none() {
    let (a, _) = busy_pair();
    let mut d = Deriver::new();
    assert_eq!(d.update(&host(vec![a])), vec![None]);
    assert_eq!(d.len(), 1);
    assert!(!d.is_empty());
}

#[test]
fn empty_deriver() {
    let mut d = Deriver::new();
    assert!(d.is_empty());
    assert_eq!(d.update(&host(vec![])), Vec::<Option<Features>>::new());
    assert!(d.is_empty());
}

#[test]
fn cpu_percentages_follow_the_schema_formula() {
    let (a, b) = busy_pair();
    let f = pair(a, b).expect("comparable samples");
    let dt = 2.5; // seconds
    let cpus = 4.0;
    // Δcputime / (Δt · cpus) · 100, with times in ns.
    close(f.cpu_pct, 5e9 / (dt * 1e9 * cpus) * 100.0); // 50 %
    close(f.cpu_usr_pct, 3e9 / (dt * 1e9 * cpus) * 100.0); // 30 %
    close(f.cpu_sys_pct, 1e9 / (dt * 1e9 * cpus) * 100.0); // 10 %
    close(f.cpu_steal_pct, 0.5e9 / (dt * 1e9 * cpus) * 100.0); // 5 %
}

#[test]
fn cpu_pct_of_a_single_vcpu_vm_running_flat_out_is_100() {
    let mut a = vm("u1", 1, SEC, 1);
    a.cpu.time = Some(7 * SEC);
    let mut b = vm("u1", 1, 3 * SEC, 1);
    b.cpu.time = Some(9 * SEC);
    close(pair(a, b).unwrap().cpu_pct, 100.0);
}

#[test]
fn mem_used_pct_is_available_minus_usable_over_available() {
    let (a, b) = busy_pair();
    let f = pair(a, b).unwrap();
    // From the second sample: (4e6 − 1e6) / 4e6 · 100.
    close(f.mem_used_pct, 75.0);
}

#[test]
fn mem_used_pct_needs_sane_guest_stats() {
    let cases = [
        (None, Some(1)),
        (Some(100), None),
        (Some(0), Some(0)),
        (Some(100), Some(101)), // usable above available: inconsistent, no value
    ];
    for (available, usable) in cases {
        let a = vm("u1", 1, SEC, 1);
        let mut b = vm("u1", 1, 2 * SEC, 1);
        b.mem.available = available;
        b.mem.usable = usable;
        let f = pair(a, b).unwrap();
        assert_eq!(
            f.mem_used_pct, None,
            "available {available:?} usable {usable:?}"
        );
    }
    let a = vm("u1", 1, SEC, 1);
    let mut b = vm("u1", 1, 2 * SEC, 1);
    b.mem.available = Some(2048);
    b.mem.usable = Some(2048);
    close(pair(a, b).unwrap().mem_used_pct, 0.0);
}

#[test]
fn net_and_disk_rates_sum_devices_over_the_interval() {
    let (a, b) = busy_pair();
    let f = pair(a, b).unwrap();
    let dt = 2.5;
    close(f.net_rx_bps, (2_500.0 + 7_500.0) / dt);
    close(f.net_tx_bps, (5_000.0 + 10_000.0) / dt);
    close(f.net_rx_pps, (25.0 + 75.0) / dt);
    close(f.net_tx_pps, (50.0 + 100.0) / dt);
    close(f.disk_rd_bps, (250_000.0 + 2_500.0) / dt);
    close(f.disk_wr_bps, (500_000.0 + 5_000.0) / dt);
    close(f.disk_rd_iops, (250.0 + 25.0) / dt);
    close(f.disk_wr_iops, (500.0 + 50.0) / dt);
}

#[test]
fn idle_vm_has_zero_rates_not_missing_ones() {
    let (a, _) = busy_pair();
    let mut b = a.clone();
    b.mono_ns += SEC;
    let f = pair(a, b).unwrap();
    for (name, v) in all_values(&f) {
        if name == "mem_used_pct" {
            continue;
        }
        assert_eq!(v, Some(0.0), "{name}");
    }
}

#[test]
fn counter_that_went_backwards_gives_no_value_for_that_field_only() {
    let (a, mut b) = busy_pair();
    b.cpu.time = Some(SEC); // e.g. the QEMU process was restarted
    b.nics[1].rx_bytes = Some(10); // below tap1's previous 50_000
    b.disks[0].wr_reqs = Some(1); // below vda's previous 200
    let f = pair(a, b).unwrap();
    assert_eq!(f.cpu_pct, None);
    assert_eq!(
        f.net_rx_bps, None,
        "one NIC went backwards: no total, not a partial sum"
    );
    assert_eq!(f.disk_wr_iops, None);
    // Everything else is still derived.
    close(f.cpu_usr_pct, 30.0);
    close(f.net_tx_bps, 15_000.0 / 2.5);
    close(f.disk_wr_bps, 505_000.0 / 2.5);
}

#[test]
fn reboot_resetting_every_counter_gives_no_negative_values() {
    let (a, _) = busy_pair();
    let mut b = vm("u1", 3, 11 * SEC, 4);
    b.cpu.time = Some(1);
    b.cpu.user = Some(1);
    b.cpu.system = Some(1);
    b.vcpu.delay_sum = Some(1);
    b.nics = vec![nic("tap0", 1, 1, 1, 1), nic("tap1", 1, 1, 1, 1)];
    b.disks = vec![disk("vda", 1, 1, 1, 1), disk("vdb", 0, 0, 0, 0)];
    let f = pair(a, b).unwrap();
    for (name, v) in all_values(&f) {
        if name == "mem_used_pct" {
            continue;
        }
        assert_eq!(v, None, "{name}");
    }
}

#[test]
fn vmid_change_gives_no_features_then_resumes() {
    let (a, mut b) = busy_pair();
    b.id = Some(4); // destroyed and started again between the samples
    let mut d = Deriver::new();
    d.update(&host(vec![a]));
    assert_eq!(d.update(&host(vec![b.clone()])), vec![None]);
    // The next sample with the new ID is compared with the one just taken.
    let mut c = b.clone();
    c.mono_ns += 2 * SEC;
    c.cpu.time = Some(b.cpu.time.unwrap() + 4 * SEC);
    let f = d
        .update(&host(vec![c]))
        .pop()
        .unwrap()
        .expect("same ID again");
    close(f.cpu_pct, 4e9 / (2.0 * 1e9 * 4.0) * 100.0);
}

#[test]
fn vm_losing_its_id_gives_no_features() {
    let (a, mut b) = busy_pair();
    b.id = None;
    assert_eq!(pair(a, b), None);
}

#[test]
fn zero_or_negative_time_step_gives_no_features() {
    for later in [10 * SEC, 10 * SEC - 1, 0] {
        let (a, mut b) = busy_pair();
        b.mono_ns = later; // a was read at 10 s
        assert_eq!(pair(a, b), None, "Δt ending at {later} ns");
    }
}

#[test]
fn hot_plugged_nic_is_not_counted() {
    let mut a = vm("u1", 1, SEC, 1);
    a.nics = vec![nic("tap0", 100, 100, 1, 1)];
    let mut b = vm("u1", 1, 2 * SEC, 1);
    b.nics = vec![
        nic("tap0", 300, 500, 3, 5),
        // Plugged in between: its whole counter would be a spike.
        nic("tap9", 1 << 40, 1 << 40, 1 << 30, 1 << 30),
    ];
    let f = pair(a, b).unwrap();
    close(f.net_rx_bps, 200.0);
    close(f.net_tx_bps, 400.0);
    close(f.net_rx_pps, 2.0);
    close(f.net_tx_pps, 4.0);
}

#[test]
fn hot_plugged_disk_is_not_counted() {
    let mut a = vm("u1", 1, SEC, 1);
    a.disks = vec![disk("vda", 0, 0, 0, 0)];
    let mut b = vm("u1", 1, 3 * SEC, 1);
    b.disks = vec![
        disk("sdz", 1 << 40, 1 << 40, 1 << 30, 1 << 30),
        disk("vda", 30, 60, 3, 6),
    ];
    let f = pair(a, b).unwrap();
    close(f.disk_rd_bps, 15.0);
    close(f.disk_wr_bps, 30.0);
    close(f.disk_rd_iops, 1.5);
    close(f.disk_wr_iops, 3.0);
}

#[test]
fn only_new_device_gives_no_rate_rather_than_zero() {
    let a = vm("u1", 1, SEC, 1);
    let mut b = vm("u1", 1, 2 * SEC, 1);
    b.nics = vec![nic("tap0", 10, 10, 1, 1)];
    b.disks = vec![disk("vda", 10, 10, 1, 1)];
    let f = pair(a, b).unwrap();
    assert_eq!(f.net_rx_bps, None);
    assert_eq!(f.disk_wr_iops, None);
}

#[test]
fn unplugged_nic_is_ignored() {
    let mut a = vm("u1", 1, SEC, 1);
    a.nics = vec![
        nic("tap0", 100, 100, 1, 1),
        nic("tap1", 5_000, 5_000, 50, 50),
    ];
    let mut b = vm("u1", 1, 2 * SEC, 1);
    b.nics = vec![nic("tap0", 150, 170, 2, 3)];
    let f = pair(a, b).unwrap();
    close(f.net_rx_bps, 50.0);
    close(f.net_tx_bps, 70.0);
    close(f.net_rx_pps, 1.0);
    close(f.net_tx_pps, 2.0);
}

#[test]
fn replaced_nic_with_lower_counters_gives_none() {
    let mut a = vm("u1", 1, SEC, 1);
    a.nics = vec![nic("tap0", 1_000_000, 1_000_000, 1_000, 1_000)];
    let mut b = vm("u1", 1, 2 * SEC, 1);
    b.nics = vec![nic("tap0", 10, 20, 1, 2)];
    let f = pair(a, b).unwrap();
    assert_eq!(f.net_rx_bps, None);
    assert_eq!(f.net_tx_bps, None);
    assert_eq!(f.net_rx_pps, None);
    assert_eq!(f.net_tx_pps, None);
}

#[test]
fn devices_are_matched_by_name_not_position() {
    let mut a = vm("u1", 1, SEC, 1);
    a.nics = vec![nic("tap0", 100, 0, 0, 0), nic("tap1", 10_000, 0, 0, 0)];
    let mut b = vm("u1", 1, 2 * SEC, 1);
    // Same NICs, listed in the other order.
    b.nics = vec![nic("tap1", 10_001, 0, 0, 0), nic("tap0", 102, 0, 0, 0)];
    close(pair(a, b).unwrap().net_rx_bps, 3.0);
}

#[test]
fn device_counter_missing_in_one_sample_is_skipped() {
    let mut a = vm("u1", 1, SEC, 1);
    a.nics = vec![nic("tap0", 100, 100, 1, 1), nic("tap1", 100, 100, 1, 1)];
    a.nics[1].rx_bytes = None;
    let mut b = vm("u1", 1, 2 * SEC, 1);
    b.nics = vec![nic("tap0", 110, 100, 1, 1), nic("tap1", 999, 100, 1, 1)];
    // tap1 has no previous rx_bytes: only tap0 contributes.
    close(pair(a, b).unwrap().net_rx_bps, 10.0);
}

#[test]
fn missing_cpus_gives_no_cpu_fields_but_keeps_rates() {
    for cpus in [None, Some(0)] {
        let (mut a, mut b) = busy_pair();
        a.vcpu.current = cpus;
        b.vcpu.current = cpus;
        let f = pair(a, b).unwrap();
        assert_eq!(f.cpu_pct, None, "cpus {cpus:?}");
        assert_eq!(f.cpu_usr_pct, None);
        assert_eq!(f.cpu_sys_pct, None);
        assert_eq!(f.cpu_steal_pct, None);
        close(f.net_rx_bps, 10_000.0 / 2.5);
        close(f.mem_used_pct, 75.0);
    }
}

#[test]
fn missing_cpu_counters_give_no_cpu_fields() {
    let (mut a, mut b) = busy_pair();
    a.cpu.user = None; // missing before
    b.cpu.system = None; // missing now
    a.vcpu.delay_sum = None; // no vcpu.N.delay (e.g. the test driver)
    b.vcpu.delay_sum = None;
    let f = pair(a, b).unwrap();
    assert_eq!(f.cpu_usr_pct, None);
    assert_eq!(f.cpu_sys_pct, None);
    assert_eq!(f.cpu_steal_pct, None);
    close(f.cpu_pct, 50.0);
}

#[test]
fn vcpu_hotplug_uses_the_current_count() {
    let mut a = vm("u1", 1, SEC, 2);
    a.cpu.time = Some(0);
    let mut b = vm("u1", 1, 2 * SEC, 4);
    b.cpu.time = Some(2 * SEC);
    close(pair(a, b).unwrap().cpu_pct, 2e9 / (1e9 * 4.0) * 100.0);
}

#[test]
fn results_are_parallel_to_the_domains_and_independent_per_vm() {
    let mut d = Deriver::new();
    let mut a1 = vm("a", 1, SEC, 1);
    a1.cpu.time = Some(0);
    d.update(&host(vec![a1]));
    let mut a2 = vm("a", 1, 2 * SEC, 1);
    a2.cpu.time = Some(SEC / 2);
    let mut b1 = vm("b", 2, 2 * SEC, 1);
    b1.cpu.time = Some(0);
    let out = d.update(&host(vec![b1, a2]));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], None, "b is new");
    close(out[1].unwrap().cpu_pct, 50.0);
    assert_eq!(d.len(), 2);
}

#[test]
fn vm_missing_for_a_few_updates_is_kept_then_dropped() {
    let other = |t: u64| vm("other", 9, t * SEC, 1);
    let mut d = Deriver::new();
    let mut a = vm("a", 1, SEC, 1);
    a.cpu.time = Some(0);
    d.update(&host(vec![a, other(1)]));
    // Missing from KEEP_UNSEEN − 1 updates: still remembered.
    let mut t = 1;
    for _ in 0..KEEP_UNSEEN - 1 {
        t += 1;
        d.update(&host(vec![other(t)]));
        assert_eq!(d.len(), 2, "after update {t}");
    }
    // Back: compared with its last sample, over the whole gap.
    t += 1;
    let mut back = vm("a", 1, t * SEC, 1);
    back.cpu.time = Some((t - 1) * SEC / 4);
    let f = d.update(&host(vec![back, other(t)]))[0].expect("kept state");
    close(f.cpu_pct, 25.0);

    // Now missing from KEEP_UNSEEN updates: dropped.
    for _ in 0..KEEP_UNSEEN {
        t += 1;
        d.update(&host(vec![other(t)]));
    }
    assert_eq!(d.len(), 1, "only `other` is left");
    t += 1;
    let again = vm("a", 1, t * SEC, 1);
    assert_eq!(
        d.update(&host(vec![again, other(t)]))[0],
        None,
        "starts afresh"
    );
    assert_eq!(d.len(), 2);
}

#[test]
fn state_stays_bounded_under_churn() {
    let mut d = Deriver::new();
    for i in 0..1_000u64 {
        let v = vm(&format!("vm{i}"), i as u32, i * SEC, 1);
        d.update(&host(vec![v]));
        assert!(
            d.len() as u64 <= KEEP_UNSEEN,
            "{} VMs kept at step {i}",
            d.len()
        );
    }
    assert!(
        d.slots.len() as u64 <= KEEP_UNSEEN + 1,
        "freed slots are reused: {} slots",
        d.slots.len()
    );
    d.update(&host(vec![]));
    d.update(&host(vec![]));
    d.update(&host(vec![]));
    assert!(d.is_empty());
    assert!(d.slots.is_empty(), "an empty fleet keeps no slots");
}

#[test]
fn a_vm_in_a_reused_slot_starts_fresh() {
    let mut d = Deriver::new();
    let mut a = vm("a", 1, SEC, 1);
    a.cpu.time = Some(50 * SEC);
    a.nics = vec![nic("vnet0", 1_000_000, 0, 0, 0)];
    d.update(&host(vec![a]));
    for _ in 0..KEEP_UNSEEN {
        d.update(&host(vec![]));
    }
    assert!(d.is_empty());
    // b takes a's slot: its first sample has nothing to compare with, whatever a left there.
    let mut b = vm("b", 1, 2 * SEC, 1);
    b.cpu.time = Some(SEC);
    b.nics = vec![nic("vnet0", 10, 0, 0, 0)];
    assert_eq!(d.update(&host(vec![b.clone()])), vec![None]);
    b.mono_ns += SEC;
    b.cpu.time = Some(SEC + SEC / 2);
    b.nics = vec![nic("vnet0", 110, 0, 0, 0)];
    let f = d.update(&host(vec![b])).pop().flatten().expect("features");
    close(f.cpu_pct, 50.0);
    close(f.net_rx_bps, 100.0);
}

#[test]
fn a_slot_freed_between_others_goes_to_a_new_vm_only() {
    // a at 50 % and c at 25 % CPU every second; b only at first; n arrives after b is gone.
    let at = |uuid: &str, t: u64| {
        let mut v = vm(uuid, 1, t * SEC, 1);
        let pct = match uuid {
            "a" => 50,
            "c" => 25,
            _ => 90,
        };
        v.cpu.time = Some(t * SEC * pct / 100);
        v
    };
    let mut d = Deriver::new();
    d.update(&host(vec![at("a", 1), at("b", 1), at("c", 1)]));
    let mut t = 2;
    for _ in 0..KEEP_UNSEEN {
        let f = d.update(&host(vec![at("a", t), at("c", t)]));
        close(f[0].as_ref().and_then(|f| f.cpu_pct), 50.0);
        close(f[1].as_ref().and_then(|f| f.cpu_pct), 25.0);
        t += 1;
    }
    assert_eq!(d.len(), 2, "b is forgotten");
    assert_eq!(d.slots.len(), 3, "its slot stays, between a's and c's");
    let f = d.update(&host(vec![at("a", t), at("n", t), at("c", t)]));
    assert!(f[1].is_none(), "n's first sample: nothing to compare with");
    close(f[0].as_ref().and_then(|f| f.cpu_pct), 50.0);
    close(f[2].as_ref().and_then(|f| f.cpu_pct), 25.0);
    assert_eq!(d.slots.len(), 3, "n took b's slot");
    t += 1;
    let f = d.update(&host(vec![at("n", t), at("c", t), at("a", t)]));
    close(f[0].as_ref().and_then(|f| f.cpu_pct), 90.0);
    close(f[1].as_ref().and_then(|f| f.cpu_pct), 25.0);
    close(f[2].as_ref().and_then(|f| f.cpu_pct), 50.0);
}

#[test]
fn every_device_of_a_vm_with_many_counts() {
    // More devices than a slot holds inline; then fewer, then more again.
    let nics = |k: u64, n: usize| -> Vec<NicStats> {
        (0..n)
            .map(|i| nic(&format!("tap{i}"), k * (i as u64 + 1), 0, 0, 0))
            .collect()
    };
    let disks = |k: u64, n: usize| -> Vec<DiskStats> {
        (0..n)
            .map(|i| disk(&format!("vd{i}"), 0, k * (i as u64 + 1), 0, 0))
            .collect()
    };
    let mut d = Deriver::new();
    let mut t = SEC;
    let mut step = |k: u64, n_nics: usize, n_disks: usize| {
        let mut v = vm("m", 1, t, 1);
        t += SEC;
        v.nics = nics(k, n_nics);
        v.disks = disks(k, n_disks);
        d.update(&host(vec![v])).pop().flatten()
    };
    assert!(step(100, 6, 3).is_none());
    let f = step(200, 6, 3).expect("features");
    // Each device moved by 100·(i+1) in one second.
    close(f.net_rx_bps, 100.0 * (1..=6).sum::<u64>() as f64);
    close(f.disk_wr_bps, 100.0 * (1..=3).sum::<u64>() as f64);
    let f = step(300, 2, 1).expect("features");
    close(f.net_rx_bps, 100.0 * 3.0);
    close(f.disk_wr_bps, 100.0);
    // Devices back: only those present in both samples count.
    let f = step(400, 7, 3).expect("features");
    close(f.net_rx_bps, 100.0 * 3.0);
    close(f.disk_wr_bps, 100.0);
}

#[test]
fn reset_forgets_every_vm() {
    let (a, b) = busy_pair();
    let mut d = Deriver::new();
    d.update(&host(vec![a, vm("x", 5, SEC, 1)]));
    assert_eq!(d.len(), 2);
    d.reset();
    assert!(d.is_empty());
    assert_eq!(d.update(&host(vec![b.clone()])), vec![None]);
    assert_eq!(d.len(), 1);
    let mut c = b.clone();
    c.mono_ns += SEC;
    assert!(d.update(&host(vec![c]))[0].is_some());
}

fn arb_counter() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        Just(None),
        any::<u64>().prop_map(Some),
        (0u64..1_000).prop_map(Some)
    ]
}

prop_compose! {
    fn arb_vm(mono: u64)(
        cpus in prop_oneof![Just(None), (0u32..64).prop_map(Some)],
        cpu in proptest::array::uniform4(arb_counter()),
        mem in proptest::array::uniform2(arb_counter()),
        nic_c in proptest::array::uniform4(arb_counter()),
        disk_c in proptest::array::uniform4(arb_counter()),
        dt in 0u64..10 * SEC,
        names in proptest::sample::subsequence(vec!["a", "b", "c"], 0..=3),
    ) -> DomainSample {
        let mut d = vm("p", 1, mono + dt, 1);
        d.vcpu.current = cpus;
        d.cpu.time = cpu[0];
        d.cpu.user = cpu[1];
        d.cpu.system = cpu[2];
        d.vcpu.delay_sum = cpu[3];
        d.mem.available = mem[0];
        d.mem.usable = mem[1];
        for n in &names {
            d.nics.push(NicStats {
                name: (*n).into(),
                rx_bytes: nic_c[0], tx_bytes: nic_c[1], rx_pkts: nic_c[2], tx_pkts: nic_c[3],
                ..NicStats::default()
            });
            d.disks.push(DiskStats {
                name: (*n).into(),
                rd_bytes: disk_c[0], wr_bytes: disk_c[1], rd_reqs: disk_c[2], wr_reqs: disk_c[3],
                ..DiskStats::default()
            });
        }
        d
    }
}

proptest! {
    /// Whatever two samples look like, a derived value is finite and never negative, and
    /// mem_used_pct stays within 0–100.
    #[test]
    fn derived_values_are_finite_and_never_negative(
        a in arb_vm(SEC),
        b in arb_vm(SEC),
    ) {
        if let Some(f) = pair(a, b) {
            for (name, v) in all_values(&f) {
                if let Some(v) = v {
                    prop_assert!(v.is_finite() && v >= 0.0, "{} = {}", name, v);
                }
            }
            if let Some(m) = f.mem_used_pct {
                prop_assert!(m <= 100.0, "mem_used_pct = {}", m);
            }
        }
    }
}
