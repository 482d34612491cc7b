//! A real cycle written to a real InfluxDB 1.x server, and every name read back.
//!
//! The fleet runs on libvirt's test driver, with names that need every kind of escaping. What the
//! server returns is compared with the samples (through the independent rule and schema in
//! `support`) and with what InfluxDB 3's parser (`influxdb_line_protocol`) reads from the same
//! bytes: the two servers must agree on every tag value.
//!
//! `influxd` must be installed (`scripts/deps test`); without it these tests fail.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::Value;
use vmtel::collect::{Collector, SourceSpec};
use vmtel::demo::{uuid_for, write_node, RunState, Vm};
use vmtel::derive::Deriver;
use vmtel::encode::{Encoder, Precision};
use vmtel::model::{DomainSample, Features, HostSample, NicStats};

use support::influxdb::{quote_ident, InfluxDb};
use support::{
    expected_points, parse_all, sorted, stored, tricky_string, valid_globals, Point, Val,
};

const SECOND: i64 = 1_000_000_000;

// ---------------------------------------------------------------------------------------------
// Reading a measurement back
// ---------------------------------------------------------------------------------------------

fn series(v: &Value) -> Vec<Value> {
    v["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn as_str(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_owned()
}

/// `SHOW FIELD KEYS`: field key → type (`integer`, `float`, ...).
fn field_types(db: &InfluxDb, name: &str, m: &str) -> BTreeMap<String, String> {
    let v = db.query(name, &format!("SHOW FIELD KEYS FROM {}", quote_ident(m)));
    series(&v)
        .iter()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .map(|row| (as_str(&row[0]), as_str(&row[1])))
        .collect()
}

/// `SHOW TAG KEYS`.
fn tag_keys(db: &InfluxDb, name: &str, m: &str) -> BTreeSet<String> {
    let v = db.query(name, &format!("SHOW TAG KEYS FROM {}", quote_ident(m)));
    series(&v)
        .iter()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .map(|row| as_str(&row[0]))
        .collect()
}

/// `SHOW TAG VALUES ... WITH KEY =~ /.*/`: every (key, value) pair of a measurement.
fn tag_pairs(db: &InfluxDb, name: &str, m: &str) -> BTreeSet<(String, String)> {
    let v = db.query(
        name,
        &format!("SHOW TAG VALUES FROM {} WITH KEY =~ /.*/", quote_ident(m)),
    );
    series(&v)
        .iter()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .map(|row| (as_str(&row[0]), as_str(&row[1])))
        .collect()
}

/// `SHOW TAG VALUES FROM m WITH KEY = "key"`.
fn tag_values(db: &InfluxDb, name: &str, m: &str, key: &str) -> BTreeSet<String> {
    let v = db.query(
        name,
        &format!(
            "SHOW TAG VALUES FROM {} WITH KEY = {}",
            quote_ident(m),
            quote_ident(key)
        ),
    );
    series(&v)
        .iter()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .map(|row| {
            assert_eq!(as_str(&row[0]), key);
            as_str(&row[1])
        })
        .collect()
}

/// `SELECT * FROM m GROUP BY *` as points (`epoch=s`). Empty tag values (tags a series lacks)
/// and null fields are left out; floats come from JSON and may be off by an ulp.
fn server_points(db: &InfluxDb, name: &str, m: &str) -> Vec<Point> {
    let types = field_types(db, name, m);
    let v = db.query(
        name,
        &format!("SELECT * FROM {} GROUP BY *", quote_ident(m)),
    );
    let mut out = Vec::new();
    for s in series(&v) {
        assert_eq!(s["name"], m);
        let tags: BTreeMap<String, String> = s["tags"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), as_str(v)))
                    .filter(|(_, v)| !v.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let cols: Vec<String> = s["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(as_str)
            .collect();
        assert_eq!(cols[0], "time");
        for row in s["values"].as_array().unwrap() {
            let row = row.as_array().unwrap();
            let mut fields = BTreeMap::new();
            for (c, val) in cols.iter().zip(row).skip(1) {
                if val.is_null() {
                    continue;
                }
                let v = match types.get(c).map(String::as_str) {
                    Some("integer") => {
                        Val::Int(val.as_i64().unwrap_or_else(|| panic!("{c}: {val}")))
                    }
                    Some("float") => {
                        Val::float(val.as_f64().unwrap_or_else(|| panic!("{c}: {val}")))
                    }
                    other => panic!("field {c} of {m} has type {other:?}"),
                };
                fields.insert(c.clone(), v);
            }
            out.push(Point {
                measurement: m.to_owned(),
                tags: tags.clone(),
                fields,
                time: row[0].as_i64().unwrap(),
            });
        }
    }
    out
}

/// Floats equal to within 2 ulps (JSON readers are not always correctly rounded).
fn close(a: f64, b: f64) -> bool {
    if a == b {
        return true;
    }
    if a.is_sign_negative() != b.is_sign_negative() {
        return false;
    }
    a.to_bits().abs_diff(b.to_bits()) <= 2
}

/// Compares points read from the server with the points written: same series and times, same
/// field keys, integers exact, floats to within 2 ulps.
fn assert_same_points(server: &[Point], written: &[Point], what: &str) {
    type Key = (String, BTreeMap<String, String>, i64);
    let index = |v: &[Point]| -> BTreeMap<Key, BTreeMap<String, Val>> {
        let mut map = BTreeMap::new();
        for p in v {
            let key = (p.measurement.clone(), p.tags.clone(), p.time);
            let old = map.insert(key.clone(), p.fields.clone());
            assert!(old.is_none(), "{what}: two points for {key:?}");
        }
        map
    };
    let (s, w) = (index(server), index(written));
    let sk: Vec<_> = s.keys().collect();
    let wk: Vec<_> = w.keys().collect();
    assert_eq!(
        sk, wk,
        "{what}: series and times differ between server and written lines"
    );
    for (key, wf) in &w {
        let sf = &s[key];
        assert_eq!(
            sf.keys().collect::<Vec<_>>(),
            wf.keys().collect::<Vec<_>>(),
            "{what}: field keys of {key:?}"
        );
        for (k, wv) in wf {
            let ok = match (sf[k], *wv) {
                (Val::Int(a), Val::Int(b)) => a == b,
                (Val::Float(a), Val::Float(b)) => close(f64::from_bits(a), f64::from_bits(b)),
                _ => false,
            };
            assert!(
                ok,
                "{what}: {k} of {key:?}: server {:?}, written {wv:?}",
                sf[k]
            );
        }
    }
}

/// Checks everything the server holds in `name` against `written` (the points of the lines
/// that were posted, as InfluxDB 3's parser reads them).
fn assert_server_holds(db: &InfluxDb, name: &str, written: &[Point]) {
    let measurements: BTreeSet<&str> = written.iter().map(|p| p.measurement.as_str()).collect();
    let v = db.query(name, "SHOW MEASUREMENTS");
    let on_server: BTreeSet<String> = series(&v)
        .iter()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .map(|row| as_str(&row[0]))
        .collect();
    assert_eq!(
        on_server,
        measurements
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
    );
    for m in measurements {
        let mine: Vec<&Point> = written.iter().filter(|p| p.measurement == m).collect();
        // InfluxDB 1.x and InfluxDB 3's parser agree on every tag key and value.
        let parsed_pairs: BTreeSet<(String, String)> = mine
            .iter()
            .flat_map(|p| p.tags.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect();
        assert_eq!(tag_pairs(db, name, m), parsed_pairs, "tag values of {m}");
        let parsed_keys: BTreeSet<String> = parsed_pairs.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(tag_keys(db, name, m), parsed_keys, "tag keys of {m}");
        // Field keys and types: integers everywhere, floats in vm_features.
        let want_types: BTreeMap<String, String> = mine
            .iter()
            .flat_map(|p| p.fields.iter())
            .map(|(k, v)| {
                let t = match v {
                    Val::Int(_) => "integer",
                    Val::Float(_) => "float",
                };
                (k.clone(), t.to_owned())
            })
            .collect();
        assert_eq!(field_types(db, name, m), want_types, "field keys of {m}");
        let mine: Vec<Point> = mine.into_iter().cloned().collect();
        assert_same_points(&server_points(db, name, m), &mine, m);
    }
}

/// Exact float check through CSV (the server's own decimal text): every `vm_features` value,
/// by `uuid` and time. UUIDs must not need CSV quoting.
fn assert_features_exact(db: &InfluxDb, name: &str, written: &[Point]) {
    let csv = db.query_csv(name, r#"SELECT *::field, "uuid"::tag FROM "vm_features""#);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("CSV header").split(',').collect();
    assert_eq!(&header[..3], &["name", "tags", "time"]);
    let mut got: BTreeMap<(String, i64), BTreeMap<String, Val>> = BTreeMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), header.len(), "CSV row {line:?}");
        let mut uuid = String::new();
        let mut fields = BTreeMap::new();
        for (h, c) in header.iter().zip(&cells).skip(3) {
            if *h == "uuid" {
                uuid = c.to_string();
            } else if !c.is_empty() {
                let v: f64 = c.parse().unwrap_or_else(|e| panic!("{h}={c:?}: {e}"));
                fields.insert(h.to_string(), Val::float(v));
            }
        }
        got.insert((uuid, cells[2].parse().unwrap()), fields);
    }
    let want: BTreeMap<(String, i64), BTreeMap<String, Val>> = written
        .iter()
        .filter(|p| p.measurement == "vm_features")
        .map(|p| ((p.tags["uuid"].clone(), p.time), p.fields.clone()))
        .collect();
    assert!(!want.is_empty(), "no vm_features line was written");
    assert_eq!(got, want, "vm_features values (exact, via CSV)");
}

// ---------------------------------------------------------------------------------------------
// The real cycle
// ---------------------------------------------------------------------------------------------

/// Domain names that need escaping somewhere; `true` when the name has a backslash the rule
/// replaces (so that what is stored differs from the name).
const NAMES: &[(&str, bool)] = &[
    ("web 01, \"eu\"", false),
    ("a=b,c d", false),
    ("it's 'single' and \"double\"", false),
    (r"back\slash", false),
    (r"dbl\\back", true),
    (r"trail\", true),
    (r"comma\,x", true),
    (r"eq\=x sp\ y", true),
    ("ünïcode ✓ 名前 🦀", false),
    ("x & y <script>alert(1)", false),
    (" lead and trail ", false),
    ("#not a comment", false),
    ("=", false),
    ("tab\there", false), // a control character: stored as U+FFFD
    (r"paused, =\", true),
];

/// NIC target names (disk names cannot be tested here: libvirt derives a disk's address from its
/// name and refuses anything but `vda`-like names).
fn nics_for(i: usize) -> Vec<String> {
    match i {
        0 => vec!["tap 0,a=b".into(), "tap\"q'".into()],
        1 => vec![r"tap\x".into(), r"tap\".into()],
        2 => vec![r"tap\\y".into(), "tapü 名".into()],
        3 => vec![r"tap\,z".into(), "#tap=".into()],
        _ => vec![format!("tap{i}a"), format!("tap{i}b")],
    }
}

fn fleet() -> Vec<Vm> {
    let mut vms: Vec<Vm> = NAMES
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let mut vm = Vm::standard(i, name);
            vm.nics = nics_for(i);
            vm
        })
        .collect();
    vms.last_mut().unwrap().state = RunState::Paused;
    let mut off = Vm::standard(NAMES.len(), "shut off, not collected");
    off.state = RunState::ShutOff;
    vms.push(off);
    vms
}

const HOST: &str = r#"hv 1, rack="a=b" \"#;

fn global_tags() -> Vec<(String, String)> {
    vec![
        ("dc name".into(), "eu west, 1=a".into()),
        (r"rack\".into(), r"r\\7 \".into()),
        ("team,=".into(), "ops \"core\" 'x'".into()),
        ("ctl".into(), "a\tb\u{1b}".into()),
        ("uni ✓".into(), "名前".into()),
    ]
}

/// Waits (bounded) until the wall clock is in a later second than `ns`, so that two cycles
/// written with second precision do not share a timestamp.
fn wait_next_second(ns: i64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while vmtel::collect::wall_ns().div_euclid(SECOND) <= ns.div_euclid(SECOND) {
        assert!(Instant::now() < deadline, "wall clock did not advance");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn collect_two_cycles(dir: &Path) -> Vec<(HostSample, Vec<Option<Features>>)> {
    vmtel::collect::quiet_libvirt_errors();
    let (_, uri) = write_node(dir, "node.xml", &fleet()).expect("write node XML");
    let spec = SourceSpec {
        uri,
        host: Some(HOST.into()),
    };
    let mut collector = Collector::new(spec, Duration::from_secs(300));
    let mut deriver = Deriver::new();
    let mut cycles = Vec::new();
    for i in 0..2 {
        let sample = collector
            .collect()
            .unwrap_or_else(|e| panic!("cycle {i}: {e}"));
        let features = deriver.update(&sample);
        if i == 0 {
            wait_next_second(sample.timestamp_ns);
        }
        cycles.push((sample, features));
    }
    cycles
}

#[test]
fn real_cycle_reads_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let cycles = collect_two_cycles(dir.path());

    // The fixture made it through libvirt unchanged: every active domain, its NICs, the host.
    let vms = fleet();
    for (sample, _) in &cycles {
        assert_eq!(sample.host, HOST);
        let got: BTreeMap<&str, &DomainSample> = sample
            .domains
            .iter()
            .map(|d| (d.name.as_str(), d))
            .collect();
        let want: BTreeSet<&str> = vms
            .iter()
            .filter(|v| v.state != RunState::ShutOff)
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(got.keys().copied().collect::<BTreeSet<_>>(), want);
        for (i, vm) in vms.iter().enumerate() {
            if vm.state == RunState::ShutOff {
                continue;
            }
            let d = got[vm.name.as_str()];
            assert_eq!(d.uuid, uuid_for(i));
            let nics: Vec<&str> = d.nics.iter().map(|n| n.name.as_str()).collect();
            assert_eq!(nics, vm.nics.iter().map(String::as_str).collect::<Vec<_>>());
        }
        let paused = got[NAMES.last().unwrap().0];
        assert_eq!(paused.state, Some(3), "paused domain state");
    }
    assert!(
        cycles[1].1.iter().any(Option::is_some),
        "the second cycle derived no features"
    );

    // Encode both cycles; InfluxDB 3's parser reads exactly what the rules promise.
    let globals = global_tags();
    let encoder = Encoder {
        global_tags: globals.clone(),
        precision: Precision::Seconds,
    };
    let mut body = String::new();
    let mut want = Vec::new();
    for (sample, features) in &cycles {
        encoder.encode_host(sample, features, &mut body);
        want.extend(expected_points(sample, features, &globals, SECOND));
    }
    let parsed = parse_all(&body);
    assert_eq!(sorted(parsed.clone()), sorted(want));

    // Write it.
    let db = InfluxDb::start();
    db.create_db("vmtel");
    let (status, resp) = db.write("vmtel", &body, "s");
    assert_eq!(status, 204, "write: {resp}\n{}", db.log_tail());

    // Names read back exactly: the original name unless it has a backslash the rule replaces.
    let names = tag_values(&db, "vmtel", "vm_metrics", "name");
    let want_names: BTreeSet<String> = NAMES.iter().map(|(n, _)| stored(n)).collect();
    assert_eq!(names, want_names);
    for (name, replaced) in NAMES {
        let control = name.chars().any(|c| c.is_ascii_control());
        assert_eq!(
            names.contains(*name),
            !replaced && !control,
            "{name:?} should be stored {}",
            if *replaced || control {
                "changed"
            } else {
                "as it is"
            }
        );
    }
    assert!(names.contains("tab\u{FFFD}here"));
    assert!(names.contains("trail\u{FF3C}"));
    assert!(names.contains("dbl\u{FF3C}\\back"));

    let devices = tag_values(&db, "vmtel", "vm_devices", "device");
    let want_devices: BTreeSet<String> = vms
        .iter()
        .filter(|v| v.state != RunState::ShutOff)
        .flat_map(|v| v.nics.iter().chain(&v.disks).map(|n| stored(n)))
        .collect();
    assert_eq!(devices, want_devices);
    assert!(devices.contains("tap 0,a=b") && devices.contains("tap\u{FF3C}"));

    for m in support::MEASUREMENTS {
        assert_eq!(
            tag_values(&db, "vmtel", m, "host"),
            BTreeSet::from([stored(HOST)]),
            "host of {m}"
        );
        for (k, v) in &globals {
            let values = tag_values(&db, "vmtel", m, &stored(k));
            assert_eq!(values, BTreeSet::from([stored(v)]), "global {k:?} of {m}");
        }
    }
    assert_eq!(stored(HOST), "hv 1, rack=\"a=b\" \u{FF3C}");

    // Every tag pair equals what InfluxDB 3's parser read; every field and value is there.
    assert_server_holds(&db, "vmtel", &parsed);
    assert_features_exact(&db, "vmtel", &parsed);
}

// ---------------------------------------------------------------------------------------------
// A batch of nothing but weird names
// ---------------------------------------------------------------------------------------------

/// Hosts of weird domains with weird NICs, disks and global tags, from a fixed seed.
fn weird_batch() -> (Vec<HostSample>, Vec<(String, String)>) {
    let mut runner = TestRunner::deterministic();
    let strategy = tricky_string();
    let mut weird = || strategy.new_tree(&mut runner).unwrap().current();
    let mut globals = Vec::new();
    for _ in 0..6 {
        globals.push((weird(), weird()));
    }
    let globals = valid_globals(globals);
    let now = vmtel::collect::wall_ns();
    let mut hosts = Vec::new();
    let mut id = 0u32;
    for h in 0..4 {
        let mut domains = Vec::new();
        for _ in 0..60 {
            id += 1;
            // Two NICs of one VM must not share a name (they would be one series); a digit
            // in front keeps them apart and leaves the weird end of the name as it is.
            let nics = (0..2)
                .map(|k| NicStats {
                    name: format!("{k}{}", weird()),
                    rx_bytes: Some(u64::from(id) * 1000),
                    tx_drop: Some(0),
                    ..NicStats::default()
                })
                .collect();
            let disks = vec![vmtel::model::DiskStats {
                name: weird(),
                wr_bytes: Some(u64::from(id)),
                ..Default::default()
            }];
            domains.push(DomainSample {
                name: weird(),
                uuid: weird(),
                id: Some(id),
                state: Some(1),
                nics,
                disks,
                ..DomainSample::default()
            });
        }
        hosts.push(HostSample {
            host: if h == 0 { String::new() } else { weird() },
            timestamp_ns: now - i64::from(h) * SECOND,
            domains,
        });
    }
    (hosts, globals)
}

#[test]
fn batch_of_weird_names_is_accepted_and_reads_back() {
    let (hosts, globals) = weird_batch();
    let encoder = Encoder {
        global_tags: globals.clone(),
        precision: Precision::Seconds,
    };
    let mut body = String::new();
    let mut want = Vec::new();
    for h in &hosts {
        encoder.encode_host(h, &[], &mut body);
        want.extend(expected_points(h, &[], &globals, SECOND));
    }
    let parsed = parse_all(&body);
    assert_eq!(sorted(parsed.clone()), sorted(want));

    let db = InfluxDb::start();
    db.create_db("weird");
    let (status, resp) = db.write("weird", &body, "s");
    assert_eq!(
        status,
        204,
        "write of weird names: {resp}\n{}",
        db.log_tail()
    );

    let names = tag_values(&db, "weird", "vm_metrics", "name");
    let want_names: BTreeSet<String> = hosts
        .iter()
        .flat_map(|h| &h.domains)
        .filter(|d| !d.name.is_empty())
        .map(|d| stored(&d.name))
        .collect();
    assert_eq!(names, want_names);
    assert_server_holds(&db, "weird", &parsed);
}

// ---------------------------------------------------------------------------------------------
// The harness itself
// ---------------------------------------------------------------------------------------------

#[test]
fn missing_influxd_fails_naming_scripts_deps() {
    let err = std::panic::catch_unwind(|| {
        InfluxDb::start_with_binary(Path::new("/nonexistent/vmtel-test/influxd"))
    })
    .err()
    .expect("starting a missing influxd must fail");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.contains("scripts/deps test"), "{msg}");
}

#[test]
fn server_answers_and_reports_errors_like_influxdb_1() {
    let db = InfluxDb::start();
    let pid = db.pid();
    assert!(db.url().starts_with("http://127.0.0.1:"));
    db.create_db("h");
    // A line without fields is a 400 with an "unable to parse" error.
    let (status, body) = db.write("h", "m,t=a\n", "s");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unable to parse"), "{body}");
    // A tag value ending in a backslash: InfluxDB 1.x refuses it, as InfluxDB 3 does.
    let (status, body) = db.write("h", "m,t=a\\ f=1i 1\n", "s");
    assert_eq!(status, 400, "{body}");
    // Unknown database.
    let (status, _) = db.write("nope", "m f=1i 1\n", "s");
    assert_eq!(status, 404);
    // `\\` stays two backslashes in InfluxDB 1.x (InfluxDB 3 reads one): why vmtel never writes it.
    let (status, body) = db.write("h", "m,t=a\\\\b f=1i 1\n", "s");
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        tag_values(&db, "h", "m", "t"),
        BTreeSet::from(["a\\\\b".to_owned()])
    );
    let p3 = parse_all("m,t=a\\\\b f=1i 1\n");
    assert_eq!(p3[0].tags["t"], "a\\b");
    drop(db);
    // Dropped: the process is gone (reaped, so no /proc entry either).
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "influxd {pid} still running"
    );
}

#[test]
fn two_servers_run_side_by_side() {
    let a = InfluxDb::start();
    let b = InfluxDb::start();
    assert_ne!(a.url(), b.url());
    assert_ne!(a.pid(), b.pid());
    a.create_db("x");
    let (status, _) = b.write("x", "m f=1i 1\n", "s");
    assert_eq!(status, 404, "database created on a must not exist on b");
}
