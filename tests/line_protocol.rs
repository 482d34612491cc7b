//! The encoder's line protocol, read back by an independent parser.
//!
//! `influxdb_line_protocol::parse_lines` is InfluxDB 3's own parser. Every sample here is encoded
//! with `vmtel::encode::Encoder::encode_host`, parsed, and compared with what
//! `support::expected_points` (an independent statement of the schema and of the escaping rule
//! in the module docs of `src/encode/line.rs`) says a server must store.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use vmtel::deliver::batch::NodeRecord;
use vmtel::encode::{Encoder, Precision};
use vmtel::model::{
    CpuStats, DiskStats, DomainSample, Features, HostSample, MemoryStats, NicStats, NodeStats,
    VcpuStats,
};

use support::{
    expected_points, parse_all, sorted, stored, tricky_string, valid_globals, Point, Val,
    DEVICE_TAGS, DISK_FIELDS, FEATURE_FIELDS, HOST_FIELDS, ID_TAGS, MEASUREMENTS, NIC_FIELDS,
    VM_METRICS_FIELDS, VM_TOTALS_FIELDS,
};

const I64_MAX: u64 = i64::MAX as u64;

/// Nanoseconds per timestamp unit, written here rather than taken from `Precision::divisor`.
fn divisor(p: Precision) -> i64 {
    match p {
        Precision::Seconds => 1_000_000_000,
        Precision::Millis => 1_000_000,
        Precision::Micros => 1_000,
        Precision::Nanos => 1,
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn counter() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..1_000_000,
        2 => any::<u64>(),
        2 => (I64_MAX - 3)..=(I64_MAX + 3),
        1 => Just(u64::MAX),
        1 => Just(0u64),
    ]
}

fn opt_counter() -> impl Strategy<Value = Option<u64>> {
    proptest::option::weighted(0.8, counter())
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<f64>(),
        2 => 0.0f64..1e6,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(-0.0f64),
        1 => Just(f64::MIN_POSITIVE),
        1 => Just(5e-324f64),
        1 => Just(f64::MAX),
        1 => Just(f64::MIN),
    ]
}

fn features() -> impl Strategy<Value = Features> {
    proptest::array::uniform13(proptest::option::weighted(0.8, float())).prop_map(|f| Features {
        cpu_pct: f[0],
        cpu_usr_pct: f[1],
        cpu_sys_pct: f[2],
        cpu_steal_pct: f[3],
        mem_used_pct: f[4],
        net_rx_bps: f[5],
        net_tx_bps: f[6],
        net_rx_pps: f[7],
        net_tx_pps: f[8],
        disk_rd_bps: f[9],
        disk_wr_bps: f[10],
        disk_rd_iops: f[11],
        disk_wr_iops: f[12],
    })
}

fn nic(
    name: impl Strategy<Value = String>,
    c: BoxedStrategy<Option<u64>>,
) -> impl Strategy<Value = NicStats> {
    (name, proptest::array::uniform8(c)).prop_map(|(name, c)| NicStats {
        name,
        mac: None,
        rx_bytes: c[0],
        rx_pkts: c[1],
        rx_errs: c[2],
        rx_drop: c[3],
        tx_bytes: c[4],
        tx_pkts: c[5],
        tx_errs: c[6],
        tx_drop: c[7],
    })
}

fn disk(
    name: impl Strategy<Value = String>,
    c: BoxedStrategy<Option<u64>>,
) -> impl Strategy<Value = DiskStats> {
    (
        name,
        proptest::option::of(tricky_string()),
        proptest::array::uniform5(c),
    )
        .prop_map(|(name, path, c)| DiskStats {
            name,
            path,
            rd_reqs: c[0],
            rd_bytes: c[1],
            wr_reqs: c[2],
            wr_bytes: c[3],
            errors: c[4],
        })
}

fn memory(c: BoxedStrategy<Option<u64>>) -> impl Strategy<Value = MemoryStats> {
    proptest::array::uniform11(c).prop_map(|m| MemoryStats {
        maximum: m[0],
        current: m[1],
        rss: m[2],
        available: m[3],
        usable: m[4],
        unused: m[5],
        swap_in: m[6],
        swap_out: m[7],
        major_fault: m[8],
        minor_fault: m[9],
        disk_caches: m[10],
    })
}

/// Knobs shared by the "anything goes" and the "everything present" strategies.
#[derive(Clone)]
struct Shape {
    name: BoxedStrategy<String>,
    counter: BoxedStrategy<Option<u64>>,
    id: BoxedStrategy<Option<u32>>,
    state: BoxedStrategy<Option<i64>>,
    vcpus: BoxedStrategy<Option<u32>>,
    devices: std::ops::Range<usize>,
}

fn domain(s: Shape) -> impl Strategy<Value = DomainSample> {
    let c = s.counter.clone();
    (
        (
            s.name.clone(),
            s.name.clone(),
            s.id.clone(),
            any::<u64>(),
            s.state.clone(),
        ),
        proptest::array::uniform3(c.clone()),
        (s.vcpus.clone(), s.vcpus.clone(), c.clone()),
        memory(c.clone()),
        proptest::collection::vec(nic(s.name.clone(), c.clone()), s.devices.clone()),
        proptest::collection::vec(disk(s.name.clone(), c), s.devices.clone()),
    )
        .prop_map(
            |(
                (name, uuid, id, mono_ns, state),
                cpu,
                (current, maximum, delay_sum),
                mem,
                nics,
                disks,
            )| {
                DomainSample {
                    name,
                    uuid,
                    id,
                    mono_ns,
                    state,
                    cpu: CpuStats {
                        time: cpu[0],
                        user: cpu[1],
                        system: cpu[2],
                    },
                    vcpu: VcpuStats {
                        current,
                        maximum,
                        delay_sum,
                    },
                    mem,
                    nics,
                    disks,
                }
            },
        )
}

fn any_shape() -> Shape {
    Shape {
        name: tricky_string().boxed(),
        counter: opt_counter().boxed(),
        id: proptest::option::weighted(0.8, any::<u32>()).boxed(),
        state: proptest::option::weighted(
            0.8,
            prop_oneof![0i64..8, any::<i64>(), Just(i64::MIN), Just(i64::MAX)],
        )
        .boxed(),
        vcpus: proptest::option::weighted(0.8, any::<u32>()).boxed(),
        devices: 0..4,
    }
}

fn host_sample(s: Shape, domains: std::ops::Range<usize>) -> impl Strategy<Value = HostSample> {
    (
        s.name.clone(),
        prop_oneof![
            any::<i64>(),
            1_500_000_000_000_000_000i64..1_900_000_000_000_000_000
        ],
        proptest::collection::vec(domain(s), domains),
    )
        .prop_map(|(host, timestamp_ns, domains)| HostSample {
            host,
            timestamp_ns,
            domains,
        })
}

fn globals() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((tricky_string(), tricky_string()), 0..4).prop_map(valid_globals)
}

fn precision() -> impl Strategy<Value = Precision> {
    proptest::sample::select(vec![
        Precision::Seconds,
        Precision::Millis,
        Precision::Micros,
        Precision::Nanos,
    ])
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// What is already in the caller's buffer must stay there.
const PREFIX: &str = "keep,me=1 f=1i 1\n";

/// Encodes, checks the shape of the output, parses it and returns the points and the count the
/// encoder returned.
fn encode(
    sample: &HostSample,
    features: &[Option<Features>],
    globals: &[(String, String)],
    precision: Precision,
) -> (Vec<Point>, usize, String) {
    let enc = Encoder {
        global_tags: globals.to_vec(),
        precision,
    };
    let mut out = String::from(PREFIX);
    let n = enc.encode_host(sample, features, &mut out);
    assert!(
        out.starts_with(PREFIX),
        "encode_host changed what was in the buffer: {out:?}"
    );
    let body = out[PREFIX.len()..].to_owned();
    assert!(
        body.is_empty() || body.ends_with('\n'),
        "last line not terminated: {body:?}"
    );
    assert!(!body.contains('\r'), "carriage return in output: {body:?}");
    assert_eq!(
        body.matches('\n').count(),
        n,
        "encoder returned {n} for {body:?}"
    );
    let points = parse_all(&body);
    assert_eq!(
        points.len(),
        n,
        "parsed lines vs encoder count for {body:?}"
    );
    (points, n, body)
}

/// The schema's field keys for a point's measurement (and device type).
fn schema_fields(p: &Point) -> BTreeSet<&'static str> {
    let v: &[&str] = match p.measurement.as_str() {
        "vm_metrics" => &VM_METRICS_FIELDS,
        "vm_totals" => &VM_TOTALS_FIELDS,
        "vm_features" => &FEATURE_FIELDS,
        "vm_devices" => match p.tags.get("devtype").map(String::as_str) {
            Some("nic") => &NIC_FIELDS,
            Some("disk") => &DISK_FIELDS,
            other => panic!("vm_devices line with devtype {other:?}"),
        },
        other => panic!("unknown measurement {other:?}"),
    };
    v.iter().copied().collect()
}

/// The schema's tag keys for a point's measurement, with the given global keys.
fn schema_tags(p: &Point, globals: &[(String, String)]) -> BTreeSet<String> {
    let mut keys: BTreeSet<String> = ID_TAGS.iter().map(|s| s.to_string()).collect();
    if p.measurement == "vm_devices" {
        keys.extend(DEVICE_TAGS.iter().map(|s| s.to_string()));
    }
    keys.extend(
        globals
            .iter()
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .map(|(k, _)| stored(k)),
    );
    keys
}

/// Checks, independently of the oracle, that keys stay within the schema and that integer and
/// float fields are where the schema puts them.
fn check_schema_bounds(points: &[Point], globals: &[(String, String)]) {
    for p in points {
        assert!(MEASUREMENTS.contains(&p.measurement.as_str()), "{p:?}");
        let fields = schema_fields(p);
        for (k, v) in &p.fields {
            assert!(
                fields.contains(k.as_str()),
                "field {k:?} not in schema: {p:?}"
            );
            let is_float = matches!(v, Val::Float(_));
            assert_eq!(
                is_float,
                p.measurement == "vm_features",
                "field type of {k}: {p:?}"
            );
        }
        let tags = schema_tags(p, globals);
        for k in p.tags.keys() {
            assert!(tags.contains(k), "tag {k:?} not in schema: {p:?}");
        }
        assert!(
            p.tags.values().all(|v| !v.is_empty()),
            "empty tag value: {p:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any sample: every line parses, the count is right, and the parser reads back exactly the
    /// points the documented rules promise (tags, integer and float fields, timestamps).
    #[test]
    fn any_sample_reads_back_as_documented(
        sample in host_sample(any_shape(), 0..4),
        features in proptest::collection::vec(proptest::option::weighted(0.8, features()), 0..5),
        globals in globals(),
        precision in precision(),
    ) {
        let (got, n, body) = encode(&sample, &features, &globals, precision);
        check_schema_bounds(&got, &globals);
        let want = expected_points(&sample, &features, &globals, divisor(precision));
        prop_assert_eq!(n, want.len(), "line count; output:\n{}", body);
        prop_assert_eq!(sorted(got), sorted(want), "output:\n{}", body);
    }
}

proptest! {
    /// The host's `vm_host` line: tag `host` (any string, stored form) and the global tags,
    /// each field present exactly when it has a value that fits (an unsigned value above
    /// `i64::MAX` is left out), in `HOST_FIELDS`' names.
    #[test]
    fn any_host_line_reads_back(
        host in tricky_string(),
        globals in globals(),
        values in proptest::collection::vec(opt_counter(), 10),
        precision in precision(),
    ) {
        let stats = NodeStats {
            cpus: values[0],
            mhz: values[1],
            mem_total: values[2],
            mem_free: values[3],
            mem_buffers: values[4],
            mem_cached: values[5],
            cpu_user: values[6],
            cpu_kernel: values[7],
            cpu_idle: values[8],
            cpu_iowait: values[9],
        };
        let globals = valid_globals(globals);
        let encoder = Encoder { global_tags: globals.clone(), precision };
        let node = NodeRecord { host: host.clone(), stats };
        let mut body = String::new();
        let wrote = encoder.encode_node(&node, 1_700_000_000_123_456_789, &mut body);
        let want: BTreeMap<String, Val> = HOST_FIELDS
            .iter()
            .zip(&values)
            .filter_map(|(k, v)| {
                v.filter(|&v| v <= I64_MAX).map(|v| ((*k).to_owned(), Val::Int(v as i64)))
            })
            .collect();
        prop_assert_eq!(wrote, !want.is_empty(), "{}", body);
        let got = parse_all(&body);
        if want.is_empty() {
            prop_assert!(got.is_empty(), "{}", body);
        } else {
            prop_assert_eq!(got.len(), 1, "{}", body);
            let p = &got[0];
            prop_assert_eq!(p.measurement.as_str(), "vm_host");
            prop_assert_eq!(&p.fields, &want);
            prop_assert_eq!(p.time, 1_700_000_000_123_456_789 / divisor(precision));
            let mut tags = BTreeMap::new();
            if !host.is_empty() {
                tags.insert("host".to_owned(), stored(&host));
            }
            for (k, v) in &globals {
                if !k.is_empty() && !v.is_empty() {
                    tags.insert(stored(k), stored(v));
                }
            }
            prop_assert_eq!(&p.tags, &tags, "{}", body);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Escaping alone, over many more cases: host, name, uuid, device names and global tags all
    /// read back as their stored form.
    #[test]
    fn any_strings_read_back_as_stored(
        host in tricky_string(),
        name in tricky_string(),
        uuid in tricky_string(),
        nic_name in tricky_string(),
        disk_name in tricky_string(),
        globals in globals(),
    ) {
        let sample = HostSample {
            host: host.clone(),
            timestamp_ns: 1_700_000_000_000_000_000,
            domains: vec![DomainSample {
                name: name.clone(),
                uuid: uuid.clone(),
                id: Some(7),
                state: Some(1),
                nics: vec![NicStats {
                    name: nic_name.clone(),
                    rx_bytes: Some(1),
                    ..NicStats::default()
                }],
                disks: vec![DiskStats {
                    name: disk_name.clone(),
                    errors: Some(0),
                    ..DiskStats::default()
                }],
                ..DomainSample::default()
            }],
        };
        let (got, n, body) = encode(&sample, &[], &globals, Precision::Seconds);
        // vm_metrics, vm_totals (state), one NIC, one disk.
        prop_assert_eq!(n, 4, "{}", body);
        let opt = |s: &str| (!s.is_empty()).then(|| stored(s));
        for p in &got {
            prop_assert_eq!(p.tags.get("host").cloned(), opt(&host));
            prop_assert_eq!(p.tags.get("name").cloned(), opt(&name));
            prop_assert_eq!(p.tags.get("uuid").cloned(), opt(&uuid));
            prop_assert_eq!(p.tags.get("VMID").map(String::as_str), Some("7"));
            for (k, v) in &globals {
                if !k.is_empty() {
                    prop_assert_eq!(p.tags.get(&stored(k)).cloned(), opt(v), "global {:?}", k);
                }
            }
        }
        let dev = |t: &str| {
            got.iter()
                .find(|p| p.tags.get("devtype").map(String::as_str) == Some(t))
                .map(|p| p.tags.get("device").cloned())
        };
        prop_assert_eq!(dev("nic"), Some(opt(&nic_name)));
        prop_assert_eq!(dev("disk"), Some(opt(&disk_name)));
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A complete sample (every value present, in range, finite) carries exactly the seed's
    /// measurements, tag keys and field keys.
    #[test]
    fn complete_sample_has_exactly_the_seed_schema(
        sample in host_sample(
            Shape {
                name: proptest::collection::vec(support::tricky_char(), 1..10)
                    .prop_map(|v| v.into_iter().collect::<String>())
                    .boxed(),
                // Small enough that the sum over three devices fits in an i64.
                counter: (0..=I64_MAX / 4).prop_map(Some).boxed(),
                id: any::<u32>().prop_map(Some).boxed(),
                state: (0i64..8).prop_map(Some).boxed(),
                vcpus: (1u32..512).prop_map(Some).boxed(),
                devices: 1..4,
            },
            1..4,
        ),
        finite in proptest::array::uniform13(
            proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO
        ),
        globals in globals(),
    ) {
        let f = Features {
            cpu_pct: Some(finite[0]),
            cpu_usr_pct: Some(finite[1]),
            cpu_sys_pct: Some(finite[2]),
            cpu_steal_pct: Some(finite[3]),
            mem_used_pct: Some(finite[4]),
            net_rx_bps: Some(finite[5]),
            net_tx_bps: Some(finite[6]),
            net_rx_pps: Some(finite[7]),
            net_tx_pps: Some(finite[8]),
            disk_rd_bps: Some(finite[9]),
            disk_wr_bps: Some(finite[10]),
            disk_rd_iops: Some(finite[11]),
            disk_wr_iops: Some(finite[12]),
        };
        let features = vec![Some(f); sample.domains.len()];
        let (got, n, body) = encode(&sample, &features, &globals, Precision::Seconds);
        let per_vm: usize = sample.domains.iter().map(|d| 3 + d.nics.len() + d.disks.len()).sum();
        prop_assert_eq!(n, per_vm, "{}", body);
        let measurements: BTreeSet<&str> = got.iter().map(|p| p.measurement.as_str()).collect();
        prop_assert_eq!(measurements, MEASUREMENTS.iter().copied().collect::<BTreeSet<_>>());
        for p in &got {
            let fields: BTreeSet<&str> = p.fields.keys().map(String::as_str).collect();
            prop_assert_eq!(&fields, &schema_fields(p), "{:?}", p);
            let tags: BTreeSet<String> = p.tags.keys().cloned().collect();
            prop_assert_eq!(&tags, &schema_tags(p, &globals), "{:?}", p);
        }
        let want = expected_points(&sample, &features, &globals, 1_000_000_000);
        prop_assert_eq!(sorted(got), sorted(want), "output:\n{}", body);
    }
}

// ---------------------------------------------------------------------------------------------
// Examples
// ---------------------------------------------------------------------------------------------

/// Tricky inputs and the string a server must store for each, worked out by hand from the rule.
const EXAMPLES: &[(&str, &str)] = &[
    ("plain", "plain"),
    ("a b", "a b"),
    ("a,b", "a,b"),
    ("a=b", "a=b"),
    (" lead", " lead"),
    ("trail ", "trail "),
    ("=", "="),
    (",", ","),
    (" ", " "),
    ("a b, c=d", "a b, c=d"),
    (r#"q"u'o"#, r#"q"u'o"#),
    ("\"", "\""),
    (r"a\b", r"a\b"),
    (r"dom\vm", r"dom\vm"),
    (r#"a\"b"#, r#"a\"b"#),
    (r"a\\b", "a\u{FF3C}\\b"),
    (r"a\\\b", "a\u{FF3C}\u{FF3C}\\b"),
    (r"a\", "a\u{FF3C}"),
    (r"\", "\u{FF3C}"),
    (r"\\", "\u{FF3C}\u{FF3C}"),
    (r"a\,b", "a\u{FF3C},b"),
    (r"a\=b", "a\u{FF3C}=b"),
    (r"a\ b", "a\u{FF3C} b"),
    (r"\ ", "\u{FF3C} "),
    (r"\,", "\u{FF3C},"),
    ("a\\\n", "a\\\u{FFFD}"),
    ("a\\\t,", "a\\\u{FFFD},"),
    (
        "a\nb\tc\rd\0e\x7f",
        "a\u{FFFD}b\u{FFFD}c\u{FFFD}d\u{FFFD}e\u{FFFD}",
    ),
    ("\n", "\u{FFFD}"),
    ("\x1b[31mred", "\u{FFFD}[31mred"),
    ("\u{85}x\u{2028}y\u{a0}", "\u{85}x\u{2028}y\u{a0}"),
    ("ünïcode 名前 🦀", "ünïcode 名前 🦀"),
    ("\u{FF3C}", "\u{FF3C}"),
    ("\u{FFFD}", "\u{FFFD}"),
    ("#hash", "#hash"),
    ("<script>alert(1)</script>", "<script>alert(1)</script>"),
    ("web 03, \"eu\"", "web 03, \"eu\""),
];

#[test]
fn examples_match_the_documented_rule() {
    for (input, want) in EXAMPLES {
        assert_eq!(
            &stored(input),
            want,
            "the test's own rule disagrees on {input:?}"
        );
    }
}

#[test]
fn examples_read_back_exactly_everywhere() {
    for (i, (input, want)) in EXAMPLES.iter().enumerate() {
        let key = format!("k{input}");
        let sample = HostSample {
            host: input.to_string(),
            timestamp_ns: 1_700_000_000_000_000_000,
            domains: vec![DomainSample {
                name: input.to_string(),
                uuid: input.to_string(),
                id: Some(i as u32),
                state: Some(1),
                nics: vec![NicStats {
                    name: input.to_string(),
                    rx_bytes: Some(1),
                    ..NicStats::default()
                }],
                disks: vec![DiskStats {
                    name: input.to_string(),
                    rd_reqs: Some(1),
                    ..DiskStats::default()
                }],
                ..DomainSample::default()
            }],
        };
        let globals = vec![
            ("g".to_owned(), input.to_string()),
            (key.clone(), "v".to_owned()),
        ];
        let (got, n, body) = encode(&sample, &[], &globals, Precision::Seconds);
        assert_eq!(n, 4, "{body}");
        let want_key = format!("k{want}");
        for p in &got {
            for k in ["host", "name", "uuid", "g"] {
                assert_eq!(
                    p.tags.get(k),
                    Some(&want.to_string()),
                    "{k} of {input:?} in {body}"
                );
            }
            assert_eq!(
                p.tags.get(&want_key).map(String::as_str),
                Some("v"),
                "key {key:?} in {body}"
            );
            if p.measurement == "vm_devices" {
                assert_eq!(p.tags.get("device"), Some(&want.to_string()), "{body}");
            }
        }
    }
}

#[test]
fn examples_as_exact_bytes() {
    // The exact text for a few inputs, so that a change of escaping shows up here first.
    let cases: &[(&str, &str)] = &[
        ("a b,c=d", r"a\ b\,c\=d"),
        (r"a\b", r"a\b"),
        (r"a\", "a\u{FF3C}"),
        (r"a\\b", "a\u{FF3C}\\b"),
        (r"a\,b", "a\u{FF3C}\\,b"),
        (r"a\ b", "a\u{FF3C}\\ b"),
        ("a\tb", "a\u{FFFD}b"),
        (r#"q"x"#, r#"q"x"#),
    ];
    for (input, escaped) in cases {
        let sample = HostSample {
            host: "h".into(),
            timestamp_ns: 2_000_000_000,
            domains: vec![DomainSample {
                name: input.to_string(),
                state: Some(1),
                ..DomainSample::default()
            }],
        };
        let mut out = String::new();
        let n = Encoder::default().encode_host(&sample, &[], &mut out);
        assert_eq!(n, 2);
        let first = out.lines().next().unwrap();
        assert_eq!(
            first,
            format!("vm_metrics,host=h,name={escaped} state=1i 2"),
            "{input:?}"
        );
    }
}

#[test]
fn empty_strings_leave_tags_out() {
    let sample = HostSample {
        host: String::new(),
        timestamp_ns: 0,
        domains: vec![DomainSample {
            state: Some(3),
            nics: vec![NicStats {
                tx_drop: Some(0),
                ..NicStats::default()
            }],
            ..DomainSample::default()
        }],
    };
    let globals = vec![
        ("".to_owned(), "x".to_owned()),
        ("e".to_owned(), "".to_owned()),
    ];
    let (got, n, body) = encode(&sample, &[], &globals, Precision::Seconds);
    assert_eq!(n, 3, "{body}");
    let tag_sets: Vec<BTreeMap<String, String>> = got.iter().map(|p| p.tags.clone()).collect();
    assert_eq!(tag_sets[0], BTreeMap::new(), "{body}");
    assert_eq!(tag_sets[1], BTreeMap::new(), "{body}");
    assert_eq!(
        tag_sets[2],
        BTreeMap::from([("devtype".to_owned(), "nic".to_owned())]),
        "{body}"
    );
}

#[test]
fn counters_above_i64_max_and_non_finite_floats_are_left_out() {
    let sample = HostSample {
        host: "h".into(),
        timestamp_ns: 5_000_000_000,
        domains: vec![DomainSample {
            name: "vm".into(),
            cpu: CpuStats {
                time: Some(I64_MAX),
                user: Some(I64_MAX + 1),
                system: Some(u64::MAX),
            },
            mem: MemoryStats {
                maximum: Some(u64::MAX),
                ..MemoryStats::default()
            },
            // Each fits, the sum does not: the total is left out, the devices are not.
            nics: vec![
                NicStats {
                    name: "a".into(),
                    rx_bytes: Some(I64_MAX),
                    ..NicStats::default()
                },
                NicStats {
                    name: "b".into(),
                    rx_bytes: Some(1),
                    ..NicStats::default()
                },
            ],
            ..DomainSample::default()
        }],
    };
    let f = Features {
        cpu_pct: Some(f64::NAN),
        cpu_usr_pct: Some(f64::INFINITY),
        cpu_sys_pct: Some(f64::NEG_INFINITY),
        cpu_steal_pct: Some(-0.0),
        mem_used_pct: Some(5e-324),
        net_rx_bps: Some(1e300),
        ..Features::default()
    };
    let (got, n, body) = encode(&sample, &[Some(f)], &[], Precision::Seconds);
    assert_eq!(n, 5, "{body}");
    let by = |m: &str| {
        got.iter()
            .filter(|p| p.measurement == m)
            .collect::<Vec<_>>()
    };
    let metrics = &by("vm_metrics")[0].fields;
    assert_eq!(
        metrics,
        &BTreeMap::from([("cputime".to_owned(), Val::Int(i64::MAX))])
    );
    let totals = &by("vm_totals")[0].fields;
    assert_eq!(totals.get("cputime"), Some(&Val::Int(i64::MAX)));
    assert_eq!(totals.get("timeusr"), None, "{body}");
    assert_eq!(totals.get("timesys"), None, "{body}");
    assert_eq!(totals.get("net_rxbytes"), None, "{body}");
    let feats = &by("vm_features")[0].fields;
    let want: BTreeMap<String, Val> = [
        ("cpu_steal_pct", -0.0f64),
        ("mem_used_pct", 5e-324),
        ("net_rx_bps", 1e300),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Val::float(support::float_as_written(v))))
    .collect();
    assert_eq!(feats, &want, "{body}");
    assert_eq!(by("vm_devices").len(), 2);
}

#[test]
fn nothing_to_write_writes_nothing() {
    let sample = HostSample {
        host: "h".into(),
        timestamp_ns: 1,
        domains: vec![DomainSample {
            name: "idle".into(),
            cpu: CpuStats {
                time: Some(u64::MAX),
                ..CpuStats::default()
            },
            nics: vec![NicStats {
                name: "n".into(),
                ..NicStats::default()
            }],
            disks: vec![DiskStats {
                name: "d".into(),
                rd_bytes: Some(I64_MAX + 1),
                ..DiskStats::default()
            }],
            ..DomainSample::default()
        }],
    };
    let f = Features {
        cpu_pct: Some(f64::NAN),
        ..Features::default()
    };
    let (got, n, body) = encode(
        &sample,
        &[Some(f)],
        &[("g".into(), "v".into())],
        Precision::Nanos,
    );
    assert_eq!((n, got.len(), body.as_str()), (0, 0, ""));
}

#[test]
fn timestamps_follow_the_precision() {
    let ns = 1_700_000_123_456_789_012i64;
    for (p, want) in [
        (Precision::Seconds, 1_700_000_123i64),
        (Precision::Millis, 1_700_000_123_456),
        (Precision::Micros, 1_700_000_123_456_789),
        (Precision::Nanos, ns),
    ] {
        let sample = HostSample {
            host: "h".into(),
            timestamp_ns: ns,
            domains: vec![DomainSample {
                state: Some(1),
                ..DomainSample::default()
            }],
        };
        let (got, _, _) = encode(&sample, &[], &[], p);
        assert!(got.iter().all(|pt| pt.time == want), "{p:?}: {got:?}");
    }
}
