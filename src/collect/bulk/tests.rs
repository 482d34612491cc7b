//! Unit tests of [`super::Decoder`] (and [`super::apply`], a fresh decoder): bulk-stats records shaped like the ones libvirt's QEMU driver
//! returns (key names and types from libvirt's `virConnectGetAllDomainStats` documentation),
//! built with [`OwnedParams`] so that they go through the same decoder as real records.

use super::super::ffi::{OwnedParams, OwnedValue};
use super::{apply, Decoder, Groups};
use crate::model::{CpuStats, DiskStats, DomainSample, MemoryStats, NicStats, VcpuStats};

use OwnedValue::{Bool, Double, Int, LLong, Str, UInt, ULLong};

fn record(entries: Vec<(&str, OwnedValue)>) -> OwnedParams {
    let mut p = OwnedParams::new();
    for (name, value) in entries {
        p.push(name, value);
    }
    p
}

/// The identity fields the collector sets before `apply` runs; `apply` must leave them alone.
fn blank() -> DomainSample {
    DomainSample {
        name: "guest-1".into(),
        uuid: "0a0b0c0d-0000-4000-8000-000000000001".into(),
        id: Some(7),
        mono_ns: 123_456,
        ..DomainSample::default()
    }
}

fn run(p: &OwnedParams) -> (DomainSample, Groups) {
    let mut s = blank();
    let g = apply(&mut s, p.raw_params());
    (s, g)
}

/// Every key libvirt documents for the six groups vmtel requests, for a VM with 2 vCPUs, one
/// NIC and one disk, each with a distinct value so that a key mapped to the wrong field shows.
fn full_qemu_record() -> Vec<(&'static str, OwnedValue)> {
    vec![
        ("state.state", Int(1)),
        ("state.reason", Int(5)),
        ("cpu.time", ULLong(1_000_001)),
        ("cpu.user", ULLong(1_000_002)),
        ("cpu.system", ULLong(1_000_003)),
        ("balloon.current", ULLong(2_001)),
        ("balloon.maximum", ULLong(2_002)),
        ("balloon.swap_in", ULLong(2_003)),
        ("balloon.swap_out", ULLong(2_004)),
        ("balloon.major_fault", ULLong(2_005)),
        ("balloon.minor_fault", ULLong(2_006)),
        ("balloon.unused", ULLong(2_007)),
        ("balloon.available", ULLong(2_008)),
        ("balloon.usable", ULLong(2_009)),
        ("balloon.rss", ULLong(2_010)),
        ("balloon.last-update", ULLong(1_700_000_000)),
        ("balloon.disk_caches", ULLong(2_011)),
        ("vcpu.current", UInt(2)),
        ("vcpu.maximum", UInt(4)),
        ("vcpu.0.state", Int(1)),
        ("vcpu.0.time", ULLong(3_001)),
        ("vcpu.0.wait", ULLong(3_002)),
        ("vcpu.0.delay", ULLong(3_003)),
        ("vcpu.1.state", Int(1)),
        ("vcpu.1.time", ULLong(3_004)),
        ("vcpu.1.wait", ULLong(3_005)),
        ("vcpu.1.delay", ULLong(3_006)),
        ("net.count", UInt(1)),
        ("net.0.name", Str("tap0".into())),
        ("net.0.rx.bytes", ULLong(4_001)),
        ("net.0.rx.pkts", ULLong(4_002)),
        ("net.0.rx.errs", ULLong(4_003)),
        ("net.0.rx.drop", ULLong(4_004)),
        ("net.0.tx.bytes", ULLong(4_005)),
        ("net.0.tx.pkts", ULLong(4_006)),
        ("net.0.tx.errs", ULLong(4_007)),
        ("net.0.tx.drop", ULLong(4_008)),
        ("block.count", UInt(1)),
        ("block.0.name", Str("vda".into())),
        (
            "block.0.path",
            Str("/var/lib/libvirt/images/guest 1.qcow2".into()),
        ),
        ("block.0.rd.reqs", ULLong(5_001)),
        ("block.0.rd.bytes", ULLong(5_002)),
        ("block.0.rd.times", ULLong(5_003)),
        ("block.0.wr.reqs", ULLong(5_004)),
        ("block.0.wr.bytes", ULLong(5_005)),
        ("block.0.wr.times", ULLong(5_006)),
        ("block.0.fl.reqs", ULLong(5_007)),
        ("block.0.fl.times", ULLong(5_008)),
        ("block.0.errors", LLong(5_009)),
        ("block.0.allocation", ULLong(5_010)),
        ("block.0.capacity", ULLong(5_011)),
        ("block.0.physical", ULLong(5_012)),
    ]
}

/// What `full_qemu_record` must turn into, written out field by field.
fn full_expected() -> DomainSample {
    DomainSample {
        state: Some(1),
        cpu: CpuStats {
            time: Some(1_000_001),
            user: Some(1_000_002),
            system: Some(1_000_003),
        },
        vcpu: VcpuStats {
            current: Some(2),
            maximum: Some(4),
            delay_sum: Some(3_003 + 3_006),
        },
        mem: MemoryStats {
            current: Some(2_001),
            maximum: Some(2_002),
            swap_in: Some(2_003),
            swap_out: Some(2_004),
            major_fault: Some(2_005),
            minor_fault: Some(2_006),
            unused: Some(2_007),
            available: Some(2_008),
            usable: Some(2_009),
            rss: Some(2_010),
            disk_caches: Some(2_011),
        },
        nics: vec![NicStats {
            name: "tap0".into(),
            mac: None,
            rx_bytes: Some(4_001),
            rx_pkts: Some(4_002),
            rx_errs: Some(4_003),
            rx_drop: Some(4_004),
            tx_bytes: Some(4_005),
            tx_pkts: Some(4_006),
            tx_errs: Some(4_007),
            tx_drop: Some(4_008),
        }],
        disks: vec![DiskStats {
            name: "vda".into(),
            path: Some("/var/lib/libvirt/images/guest 1.qcow2".into()),
            rd_reqs: Some(5_001),
            rd_bytes: Some(5_002),
            wr_reqs: Some(5_004),
            wr_bytes: Some(5_005),
            errors: Some(5_009),
        }],
        ..blank()
    }
}

#[test]
fn every_documented_key_is_mapped_to_its_field() {
    let (s, g) = run(&record(full_qemu_record()));
    assert_eq!(s, full_expected());
    assert_eq!(g, Groups::ALL);
}

#[test]
fn a_repeated_name_takes_its_last_value() {
    let (s, _) = run(&record(vec![
        ("cpu.time", ULLong(1)),
        ("cpu.time", ULLong(2)),
    ]));
    assert_eq!(s.cpu.time, Some(2));
    let (s, _) = run(&record(vec![
        ("cpu.time", ULLong(1)),
        ("cpu.time", LLong(-1)),
    ]));
    assert_eq!(s.cpu.time, None);
    let (s, _) = run(&record(vec![
        ("net.0.name", Str("tap0".into())),
        ("net.0.name", Str(String::new())),
        ("block.0.path", Str("/a".into())),
        ("block.0.path", Int(3)),
    ]));
    assert_eq!(s.nics[0].name, "net0");
    assert_eq!(s.disks[0].path, None);
}

#[test]
fn parameter_order_does_not_matter() {
    let mut entries = full_qemu_record();
    entries.reverse();
    let (s, g) = run(&record(entries));
    assert_eq!(s, full_expected());
    assert_eq!(g, Groups::ALL);
}

#[test]
fn groups_returned_are_those_with_at_least_one_key() {
    let cases: Vec<(Vec<(&str, OwnedValue)>, Groups)> = vec![
        // What libvirt's test driver returns: only the state group.
        (
            vec![("state.state", Int(1)), ("state.reason", Int(1))],
            Groups::STATE,
        ),
        (vec![("cpu.time", ULLong(1))], Groups::CPU),
        // A guest without a balloon driver still has current/maximum.
        (vec![("balloon.current", ULLong(1))], Groups::BALLOON),
        (vec![("vcpu.current", UInt(1))], Groups::VCPU),
        // A VM with no NIC or disk: only the count keys, and they count as the group.
        (vec![("net.count", UInt(0))], Groups::INTERFACE),
        (vec![("block.count", UInt(0))], Groups::BLOCK),
        (
            vec![("state.state", Int(3)), ("block.count", UInt(0))],
            Groups::STATE.union(Groups::BLOCK),
        ),
    ];
    for (entries, want) in cases {
        let shown = format!("{entries:?}");
        let (_, g) = run(&record(entries));
        assert_eq!(g, want, "groups of {shown}");
    }
    let (s, g) = run(&record(vec![
        ("net.count", UInt(0)),
        ("block.count", UInt(0)),
    ]));
    assert!(s.nics.is_empty() && s.disks.is_empty());
    assert_eq!(g, Groups::INTERFACE.union(Groups::BLOCK));
}

#[test]
fn group_names_for_messages() {
    assert_eq!(
        Groups::ALL.minus(Groups::STATE).names(),
        ["cpu-total", "balloon", "vcpu", "interface", "block"]
    );
    assert!(Groups::NONE.names().is_empty());
    assert!(Groups::ALL.contains(Groups::BLOCK));
    assert!(!Groups::STATE.contains(Groups::ALL));
}

#[test]
fn empty_record_gives_no_group_and_changes_nothing() {
    let (s, g) = run(&OwnedParams::new());
    assert_eq!(g, Groups::NONE);
    assert_eq!(s, blank());
}

#[test]
fn minus_one_means_missing() {
    // QEMU reports what it cannot measure as -1 (block errors always): never a value.
    let (s, _) = run(&record(vec![
        ("state.state", Int(1)),
        ("cpu.time", LLong(-1)),
        ("cpu.user", ULLong(10)),
        ("balloon.rss", LLong(-1)),
        ("balloon.current", ULLong(1024)),
        ("vcpu.current", Int(-1)),
        ("vcpu.0.delay", LLong(-1)),
        ("vcpu.1.delay", LLong(-1)),
        ("net.count", UInt(1)),
        ("net.0.name", Str("tap0".into())),
        ("net.0.rx.bytes", ULLong(100)),
        ("net.0.rx.errs", LLong(-1)),
        ("net.0.tx.drop", Int(-1)),
        ("block.count", UInt(1)),
        ("block.0.name", Str("vda".into())),
        ("block.0.rd.reqs", ULLong(3)),
        ("block.0.errors", LLong(-1)),
        ("block.0.wr.bytes", LLong(-1)),
    ]));
    assert_eq!(s.cpu.time, None);
    assert_eq!(s.cpu.user, Some(10));
    assert_eq!(s.mem.rss, None);
    assert_eq!(s.mem.current, Some(1024));
    assert_eq!(s.vcpu.current, None);
    assert_eq!(
        s.vcpu.delay_sum, None,
        "only -1 delays: no steal value, not 0"
    );
    assert_eq!(
        s.nics,
        vec![NicStats {
            name: "tap0".into(),
            rx_bytes: Some(100),
            ..NicStats::default()
        }]
    );
    assert_eq!(
        s.disks,
        vec![DiskStats {
            name: "vda".into(),
            rd_reqs: Some(3),
            ..DiskStats::default()
        }]
    );
}

#[test]
fn every_integer_type_is_accepted_for_counters() {
    let (s, _) = run(&record(vec![
        ("cpu.time", Int(5)),
        ("cpu.user", UInt(6)),
        ("cpu.system", LLong(7)),
        ("balloon.current", ULLong(u64::MAX)),
    ]));
    assert_eq!(s.cpu.time, Some(5));
    assert_eq!(s.cpu.user, Some(6));
    assert_eq!(s.cpu.system, Some(7));
    assert_eq!(s.mem.current, Some(u64::MAX));
}

#[test]
fn non_integer_values_for_counters_are_missing() {
    let (s, _) = run(&record(vec![
        ("cpu.time", Double(1.5)),
        ("cpu.user", Bool(true)),
        ("cpu.system", Str("12".into())),
        ("state.state", Str("running".into())),
    ]));
    assert_eq!(s.cpu, CpuStats::default());
    assert_eq!(s.state, None);
}

#[test]
fn vcpu_delays_are_summed_and_other_vcpu_times_are_not() {
    let (s, _) = run(&record(vec![
        ("vcpu.current", UInt(4)),
        ("vcpu.maximum", UInt(8)),
        ("vcpu.0.time", ULLong(1_000_000)),
        ("vcpu.0.wait", ULLong(2_000_000)),
        ("vcpu.0.delay", ULLong(10)),
        ("vcpu.1.delay", ULLong(200)),
        // vCPU 2 is offline: QEMU omits its keys.
        ("vcpu.3.delay", ULLong(3_000)),
        ("vcpu.3.state", Int(1)),
        // An unsupported delay does not make the sum missing.
        ("vcpu.4.delay", LLong(-1)),
    ]));
    assert_eq!(s.vcpu.current, Some(4));
    assert_eq!(s.vcpu.maximum, Some(8));
    assert_eq!(s.vcpu.delay_sum, Some(10 + 200 + 3_000));
}

#[test]
fn vcpu_delay_sum_saturates_instead_of_wrapping() {
    let (s, _) = run(&record(vec![
        ("vcpu.0.delay", ULLong(u64::MAX - 1)),
        ("vcpu.1.delay", ULLong(5)),
    ]));
    assert_eq!(s.vcpu.delay_sum, Some(u64::MAX));
}

#[test]
fn gaps_in_net_indices_keep_each_nic_with_its_own_counters() {
    // A `type='user'` NIC counts in net.count but has no net.1.* keys.
    let (s, g) = run(&record(vec![
        ("net.count", UInt(3)),
        ("net.0.name", Str("tap0".into())),
        ("net.0.rx.bytes", ULLong(100)),
        ("net.0.tx.bytes", ULLong(101)),
        ("net.2.name", Str("tap2".into())),
        ("net.2.rx.bytes", ULLong(300)),
        ("net.2.tx.bytes", ULLong(301)),
        ("net.2.tx.pkts", ULLong(302)),
    ]));
    assert!(g.contains(Groups::INTERFACE));
    assert_eq!(
        s.nics,
        vec![
            NicStats {
                name: "tap0".into(),
                rx_bytes: Some(100),
                tx_bytes: Some(101),
                ..NicStats::default()
            },
            NicStats {
                name: "tap2".into(),
                rx_bytes: Some(300),
                tx_bytes: Some(301),
                tx_pkts: Some(302),
                ..NicStats::default()
            },
        ]
    );
}

#[test]
fn gaps_in_block_indices_are_skipped_too() {
    let (s, _) = run(&record(vec![
        ("block.count", UInt(4)),
        ("block.1.name", Str("vdb".into())),
        ("block.1.rd.bytes", ULLong(11)),
        ("block.3.name", Str("sda".into())),
        ("block.3.wr.bytes", ULLong(33)),
    ]));
    let got: Vec<_> = s
        .disks
        .iter()
        .map(|d| (d.name.as_str(), d.rd_bytes, d.wr_bytes))
        .collect();
    assert_eq!(got, [("vdb", Some(11), None), ("sda", None, Some(33))]);
}

#[test]
fn devices_without_a_name_are_named_after_their_index() {
    let (s, _) = run(&record(vec![
        ("net.count", UInt(2)),
        ("net.0.name", Str("eth0".into())),
        ("net.1.rx.bytes", ULLong(7)),
        ("net.1.tx.bytes", ULLong(8)),
        ("block.count", UInt(3)),
        ("block.2.rd.reqs", ULLong(9)),
        // A name of the wrong type is no name.
        ("block.0.name", UInt(5)),
        ("block.0.rd.reqs", ULLong(1)),
    ]));
    let nics: Vec<_> = s
        .nics
        .iter()
        .map(|n| (n.name.as_str(), n.rx_bytes))
        .collect();
    assert_eq!(nics, [("eth0", None), ("net1", Some(7))]);
    assert_eq!(s.nics[1].tx_bytes, Some(8));
    let disks: Vec<_> = s
        .disks
        .iter()
        .map(|d| (d.name.as_str(), d.rd_reqs))
        .collect();
    assert_eq!(disks, [("block0", Some(1)), ("block2", Some(9))]);
}

#[test]
fn unknown_keys_and_groups_are_ignored() {
    let mut entries = full_qemu_record();
    entries.extend([
        ("iothread.count", UInt(1)),
        ("iothread.1.poll-max-ns", ULLong(32_768)),
        ("perf.cmt", ULLong(1)),
        ("dirtyrate.calc_status", Int(2)),
        ("memory.bandwidth.monitor.count", UInt(0)),
        ("cpu.haltpoll.success.time", ULLong(99)),
        ("cpu.cache.monitor.count", UInt(0)),
        ("balloon.hugetlb_pgalloc", ULLong(99)),
        ("vcpu.0.halted", Bool(false)),
        ("vcpu.bogus", ULLong(99)),
        ("net.0.rx.future", ULLong(99)),
        ("block.0.threshold", ULLong(99)),
        ("block.0.backingIndex", UInt(1)),
        ("block.0.fl.future", ULLong(99)),
        ("state.future", Int(99)),
        ("nodot", ULLong(99)),
        ("", ULLong(99)),
        (".", ULLong(99)),
        ("net.notanumber.rx.bytes", ULLong(99)),
        ("net.-1.rx.bytes", ULLong(99)),
        ("net.1", ULLong(99)),
    ]);
    let (s, g) = run(&record(entries));
    // Malformed net keys (`net.1`, `net.notanumber.*`, `net.-1.*`) create no NIC.
    assert_eq!(s, full_expected());
    assert_eq!(g, Groups::ALL);
}

#[test]
fn unknown_groups_alone_give_no_group() {
    let (s, g) = run(&record(vec![
        ("iothread.count", UInt(1)),
        ("perf.cmt", ULLong(1)),
        ("dirtyrate.calc_rate", ULLong(1)),
    ]));
    assert_eq!(g, Groups::NONE);
    assert_eq!(s, blank());
}

#[test]
fn huge_bogus_indices_are_dropped_without_allocating() {
    // If any of these were used as a table index the test would abort on allocation
    // (4e9 slots of ~100 bytes each, or a capacity overflow for usize::MAX).
    let (s, g) = run(&record(vec![
        ("net.count", UInt(1)),
        ("net.0.name", Str("tap0".into())),
        ("net.0.rx.bytes", ULLong(1)),
        ("net.4294967295.rx.bytes", ULLong(2)),
        ("net.18446744073709551615.name", Str("evil".into())),
        ("net.99999999999999999999999999.rx.bytes", ULLong(3)),
        ("block.1000000000.rd.reqs", ULLong(4)),
        ("block.18446744073709551615.rd.reqs", ULLong(5)),
        ("vcpu.18446744073709551615.delay", ULLong(6)),
    ]));
    assert_eq!(
        s.nics,
        vec![NicStats {
            name: "tap0".into(),
            rx_bytes: Some(1),
            ..NicStats::default()
        }]
    );
    assert!(s.disks.is_empty());
    // A per-vCPU key does not index a table: its delay still counts.
    assert_eq!(s.vcpu.delay_sum, Some(6));
    assert!(g.contains(Groups::INTERFACE.union(Groups::BLOCK)));
}

#[test]
fn several_nics_and_disks_keep_libvirt_order() {
    let mut entries = vec![("net.count", UInt(3)), ("block.count", UInt(3))];
    let nic_names = ["tap0", "macvtap3", "eth9"];
    let disk_names = ["vda", "sdb", "hdc"];
    let mut owned: Vec<(String, OwnedValue)> = Vec::new();
    for (i, n) in nic_names.iter().enumerate() {
        owned.push((format!("net.{i}.name"), Str((*n).into())));
        owned.push((format!("net.{i}.rx.pkts"), ULLong(10 + i as u64)));
    }
    for (i, n) in disk_names.iter().enumerate() {
        owned.push((format!("block.{i}.name"), Str((*n).into())));
        owned.push((format!("block.{i}.wr.reqs"), ULLong(20 + i as u64)));
    }
    entries.extend(owned.iter().map(|(k, v)| (k.as_str(), v.clone())));
    let (s, _) = run(&record(entries));
    let nics: Vec<_> = s
        .nics
        .iter()
        .map(|n| (n.name.as_str(), n.rx_pkts))
        .collect();
    assert_eq!(
        nics,
        [
            ("tap0", Some(10)),
            ("macvtap3", Some(11)),
            ("eth9", Some(12))
        ]
    );
    let disks: Vec<_> = s
        .disks
        .iter()
        .map(|d| (d.name.as_str(), d.wr_reqs))
        .collect();
    assert_eq!(
        disks,
        [("vda", Some(20)), ("sdb", Some(21)), ("hdc", Some(22))]
    );
}

#[test]
fn groups_absent_from_the_record_leave_fields_untouched() {
    // apply writes only what the record has: a group it lacks is left for the per-domain
    // fallback, not cleared.
    let mut s = blank();
    s.nics = vec![NicStats {
        name: "keep".into(),
        ..NicStats::default()
    }];
    s.vcpu.delay_sum = Some(42);
    let g = apply(&mut s, record(vec![("state.state", Int(3))]).raw_params());
    assert_eq!(g, Groups::STATE);
    assert_eq!(s.state, Some(3));
    assert_eq!(s.nics.len(), 1);
    assert_eq!(s.vcpu.delay_sum, Some(42));
}

/// A record made of a random selection of `full_qemu_record`'s keys (in a random order, with
/// random values) and extra devices at random indices: shapes that share parameter counts but
/// not names, and names that move.
fn arbitrary_record() -> impl proptest::strategy::Strategy<Value = Vec<(String, OwnedValue)>> {
    use proptest::prelude::*;
    let keys: Vec<&'static str> = full_qemu_record().into_iter().map(|(k, _)| k).collect();
    let n = keys.len();
    (
        proptest::sample::subsequence(keys, 0..=n),
        proptest::collection::vec(any::<u64>(), n),
        proptest::collection::vec((0usize..6, 0usize..3, "[a-z]{0,3}"), 0..4),
        any::<u64>(),
    )
        .prop_map(|(picked, values, extra, seed)| {
            let mut out: Vec<(String, OwnedValue)> = picked
                .into_iter()
                .zip(values)
                .map(|(k, v)| {
                    let value = if k.ends_with(".name") || k.ends_with(".path") {
                        Str(format!("dev{}", v % 5))
                    } else if v % 7 == 0 {
                        LLong(-1)
                    } else {
                        ULLong(v % 1_000_000)
                    };
                    (k.to_owned(), value)
                })
                .collect();
            for (idx, kind, name) in extra {
                let group = if kind == 0 { "net" } else { "block" };
                out.push((format!("{group}.{idx}.name"), Str(name)));
                out.push((format!("{group}.{idx}.rx.bytes"), ULLong(idx as u64)));
                out.push((format!("{group}.{idx}.wr.reqs"), ULLong(idx as u64)));
            }
            // A deterministic shuffle, so that the same keys also come in other orders.
            let len = out.len().max(1);
            for i in 0..out.len() {
                let j = (seed.wrapping_mul(i as u64 + 1) % len as u64) as usize;
                out.swap(i, j);
            }
            out
        })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// A decoder that has seen other records (its layout cache) gives exactly what a fresh one
    /// gives, whatever the sequence of shapes.
    #[test]
    fn cached_layouts_decode_like_a_fresh_decoder(records in proptest::collection::vec(arbitrary_record(), 1..12), repeat in 1usize..3) {
        let mut shared = Decoder::new();
        for _ in 0..repeat {
            for entries in &records {
                let mut p = OwnedParams::new();
                for (k, v) in entries {
                    p.push(k, v.clone());
                }
                let mut cached = blank();
                let g1 = shared.decode(&mut cached, p.raw_params());
                let mut fresh = blank();
                let g2 = apply(&mut fresh, p.raw_params());
                proptest::prop_assert_eq!(g1, g2);
                proptest::prop_assert_eq!(&cached, &fresh);
            }
        }
        proptest::prop_assert!(shared.layouts() <= 64);
    }

    /// Samples recycled through the decoder (their device entries reused for other VMs' devices)
    /// decode exactly like new samples: nothing of an earlier VM is left behind.
    #[test]
    fn recycled_samples_decode_like_new_ones(records in proptest::collection::vec(arbitrary_record(), 1..12), keep in 1usize..4) {
        let mut shared = Decoder::new();
        let mut pool: Vec<DomainSample> = Vec::new();
        for entries in records.iter().chain(&records) {
            let mut p = OwnedParams::new();
            for (k, v) in entries {
                p.push(k, v.clone());
            }
            let mut reused = pool.pop().unwrap_or_default();
            shared.recycle(&mut reused);
            reused.name.push_str("guest-1");
            shared.decode(&mut reused, p.raw_params());
            let mut fresh = DomainSample { name: "guest-1".into(), ..DomainSample::default() };
            apply(&mut fresh, p.raw_params());
            proptest::prop_assert_eq!(&reused, &fresh);
            // Keep a few samples around, as the collector's chunk does, in another order.
            pool.insert(0, reused);
            pool.truncate(keep);
        }
    }
}

#[test]
fn a_renamed_parameter_with_the_same_count_is_not_taken_for_the_cached_layout() {
    let mut d = Decoder::new();
    let first = record(vec![
        ("state.state", Int(1)),
        ("net.0.name", Str("tap0".into())),
        ("net.0.rx.bytes", ULLong(10)),
    ]);
    let mut s = blank();
    d.decode(&mut s, first.raw_params());
    assert_eq!(s.nics[0].rx_bytes, Some(10));
    // Same number of parameters, one name changed: a disk where the NIC counter was.
    let second = record(vec![
        ("state.state", Int(1)),
        ("net.0.name", Str("tap0".into())),
        ("block.0.wr.reqs", ULLong(10)),
    ]);
    let mut s = blank();
    let g = d.decode(&mut s, second.raw_params());
    assert_eq!(
        g,
        Groups::STATE.union(Groups::INTERFACE).union(Groups::BLOCK)
    );
    assert_eq!(s.nics[0].rx_bytes, None);
    assert_eq!(s.disks.len(), 1);
    assert_eq!(s.disks[0].name, "block0");
    assert_eq!(s.disks[0].wr_reqs, Some(10));
    assert_eq!(d.layouts(), 2);
    // A name that differs only after a common prefix, and one that is longer.
    for name in ["net.0.rx.bytez", "net.0.rx.bytes2"] {
        let third = record(vec![
            ("state.state", Int(1)),
            ("net.0.name", Str("tap0".into())),
            (name, ULLong(10)),
        ]);
        let mut s = blank();
        d.decode(&mut s, third.raw_params());
        assert_eq!(s.nics[0].rx_bytes, None, "{name}");
    }
}

#[test]
fn many_shapes_keep_a_bounded_cache() {
    let mut d = Decoder::new();
    for vcpus in 0..200u64 {
        let mut entries = vec![("vcpu.current".to_owned(), UInt(vcpus as u32))];
        for v in 0..vcpus % 70 {
            entries.push((format!("vcpu.{v}.delay"), ULLong(1)));
        }
        let mut p = OwnedParams::new();
        for (k, v) in &entries {
            p.push(k, v.clone());
        }
        let mut s = blank();
        d.decode(&mut s, p.raw_params());
        assert_eq!(s.vcpu.current, Some(vcpus as u32));
        assert_eq!(s.vcpu.delay_sum, (vcpus % 70 > 0).then_some(vcpus % 70));
    }
    assert!(d.layouts() <= 64, "{} layouts", d.layouts());
}
