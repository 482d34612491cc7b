//! Faults during collection against libvirt's test driver: domains that vanish between the bulk
//! call and the per-domain calls, domains destroyed between cycles, a closed connection.
//!
//! `test:///default` is one shared in-process hypervisor for every connection of the process,
//! so a second connection can change what the collector sees.

use std::time::Duration;

use virt::connect::Connect;
use vmtel::collect::bulk::Groups;
use vmtel::collect::device_cache::DeviceCache;
use vmtel::collect::perdomain;
use vmtel::collect::warn::Warnings;
use vmtel::collect::{Collector, SourceSpec};
use vmtel::model::DomainSample;

const TRANSIENT: &str = "<domain type='test'><name>NAME</name><memory>1048576</memory>\
    <vcpu>1</vcpu><os><type>hvm</type></os><devices>\
    <disk type='file' device='disk'><source file='/x.img'/><target dev='vda'/></disk>\
    <interface type='ethernet'><target dev='tapx'/></interface></devices></domain>";

fn transient(conn: &Connect, name: &str) -> virt::domain::Domain {
    conn.create_domain_xml(&TRANSIENT.replace("NAME", name), 0)
        .expect("test driver creates a transient domain")
}

/// The per-domain fallback for every group but the state (what the test driver's bulk call
/// lacks).
fn fill_all(
    dom: &virt::domain::Domain,
    sample: &mut DomainSample,
    cache: &mut DeviceCache,
    warn: &mut Warnings,
) {
    perdomain::fill(dom, sample, Groups::ALL.minus(Groups::STATE), cache, warn);
}

#[test]
fn vanished_domain_is_skipped_without_warning() {
    vmtel::collect::quiet_libvirt_errors();
    let conn = Connect::open(Some("test:///default")).expect("test driver");
    let dom = transient(&conn, "vanishing");
    let mut sample = DomainSample {
        name: "vanishing".into(),
        uuid: dom.uuid_string().expect("uuid"),
        id: dom.id(),
        ..DomainSample::default()
    };
    dom.destroy().expect("destroy transient domain");
    let mut cache = DeviceCache::new(Duration::from_secs(300));
    let mut warn = Warnings::new("test:///default");
    fill_all(&dom, &mut sample, &mut cache, &mut warn);
    assert!(warn.is_empty(), "a vanished domain is not a warning");
    assert_eq!(sample.cpu.time, None);
    assert!(sample.nics.is_empty() && sample.disks.is_empty());
}

#[test]
fn domain_destroyed_between_cycles_does_not_fail_the_others() {
    vmtel::collect::quiet_libvirt_errors();
    let conn = Connect::open(Some("test:///default")).expect("test driver");
    let keep = transient(&conn, "keeper-between-cycles");
    let gone = transient(&conn, "goner-between-cycles");
    let mut collector = Collector::new(
        SourceSpec {
            uri: "test:///default".into(),
            host: None,
        },
        Duration::from_secs(300),
    );
    let first = collector.collect().expect("first cycle");
    let names = |s: &vmtel::model::HostSample| -> Vec<String> {
        s.domains.iter().map(|d| d.name.clone()).collect()
    };
    assert!(names(&first).contains(&"goner-between-cycles".to_string()));
    gone.destroy().expect("destroy");
    let second = collector.collect().expect("second cycle");
    let second_names = names(&second);
    assert!(!second_names.contains(&"goner-between-cycles".to_string()));
    let kept = second
        .domains
        .iter()
        .find(|d| d.name == "keeper-between-cycles")
        .expect("the other domain is still collected");
    assert_eq!(kept.nics.len(), 1);
    assert_eq!(kept.disks.len(), 1);
    assert!(kept.cpu.time.is_some());
    keep.destroy().expect("destroy");
}

#[test]
fn with_a_zero_device_cache_ttl_every_cycle_reads_and_uses_the_device_list() {
    vmtel::collect::quiet_libvirt_errors();
    let conn = Connect::open(Some("test:///default")).expect("test driver");
    let dom = transient(&conn, "zero-ttl");
    let mut cache = DeviceCache::new(Duration::ZERO);
    let mut warn = Warnings::new("test:///default");
    for cycle in 0..2 {
        let mut sample = DomainSample {
            name: "zero-ttl".into(),
            uuid: dom.uuid_string().expect("uuid"),
            id: dom.id(),
            ..DomainSample::default()
        };
        fill_all(&dom, &mut sample, &mut cache, &mut warn);
        let nics: Vec<&str> = sample.nics.iter().map(|n| n.name.as_str()).collect();
        let disks: Vec<&str> = sample.disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(nics, ["tapx"], "cycle {cycle}");
        assert_eq!(disks, ["vda"], "cycle {cycle}");
        assert_eq!(sample.disks[0].path.as_deref(), Some("/x.img"));
    }
    assert!(warn.is_empty());
    dom.destroy().expect("destroy");
}
