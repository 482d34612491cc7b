//! Shared by the line-protocol tests: an independent statement of the escaping rule and of the
//! seed schema, an oracle that says which lines a sample must produce, strategies for tricky
//! strings, and (in [`influxdb`]) a real InfluxDB 1.x server.
//!
//! Nothing here calls into `vmtel::encode` on purpose: these are the expectations the encoder's
//! output is checked against.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod capture;
pub mod influxdb;
pub mod influxdb3;
pub mod sink;
pub mod victoria;

use std::collections::BTreeMap;
use std::fmt;

use proptest::prelude::*;
use vmtel::model::{DomainSample, Features, HostSample};

// ---------------------------------------------------------------------------------------------
// The escaping rule, written again from the module docs of `src/encode/line.rs`.
// ---------------------------------------------------------------------------------------------

/// U+FF3C FULLWIDTH REVERSE SOLIDUS, written for a backslash no server reads back the same way.
pub const FULLWIDTH_BACKSLASH: char = '\u{FF3C}';
/// U+FFFD REPLACEMENT CHARACTER, written for a control character.
pub const REPLACEMENT: char = '\u{FFFD}';

/// The string a server stores for `s` when it is written as a measurement, tag key, tag value or
/// field key:
///
/// * C0 control characters (U+0000..=U+001F) and DEL (U+007F) become U+FFFD;
/// * a backslash followed by a backslash, `,`, `=`, a space, or nothing (end of string) becomes
///   U+FF3C (the *following* character is judged on the original string);
/// * every other character is kept.
pub fn stored(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let is_control = (c as u32) < 0x20 || c as u32 == 0x7f;
        let next = chars.get(i + 1).copied();
        if is_control {
            out.push(REPLACEMENT);
        } else if c == '\\' && matches!(next, None | Some('\\') | Some(',') | Some('=') | Some(' '))
        {
            out.push(FULLWIDTH_BACKSLASH);
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The seed schema, written out literally.
// ---------------------------------------------------------------------------------------------

/// The four measurements vmtel writes.
pub const MEASUREMENTS: [&str; 4] = ["vm_metrics", "vm_totals", "vm_devices", "vm_features"];

/// `vm_host` fields (tag `host` only), as docs/metrics.md lists them.
pub const HOST_FIELDS: [&str; 10] = [
    "cpus",
    "mhz",
    "memtotal",
    "memfree",
    "membuffers",
    "memcached",
    "cpu_user",
    "cpu_kernel",
    "cpu_idle",
    "cpu_iowait",
];

/// Tags every line carries (before the global tags).
pub const ID_TAGS: [&str; 4] = ["host", "VMID", "name", "uuid"];

/// Extra tags of `vm_devices`.
pub const DEVICE_TAGS: [&str; 2] = ["devtype", "device"];

/// `vm_metrics` fields.
pub const VM_METRICS_FIELDS: [&str; 5] = ["state", "cpus", "cputime", "memmax", "mem"];

/// `vm_totals` fields (the seed changelog's 27).
pub const VM_TOTALS_FIELDS: [&str; 28] = [
    "net_rxbytes",
    "net_rxpackets",
    "net_rxerrors",
    "net_rxdrops",
    "net_txbytes",
    "net_txpackets",
    "net_txerrors",
    "net_txdrops",
    "disk_rd_req",
    "disk_rd_bytes",
    "disk_wr_reqs",
    "disk_wr_bytes",
    "disk_errors",
    "memactual",
    "memrss",
    "memavailable",
    "memusable",
    "memswap_in",
    "memswap_out",
    "memmajor_fault",
    "memminor_fault",
    "memdisk_cache",
    "timeusr",
    "timesys",
    "cpus",
    "cputime",
    "state",
    "vcpu_delay",
];

/// `vm_devices` fields of a `devtype=nic` line.
pub const NIC_FIELDS: [&str; 8] = [
    "rxbytes",
    "rxpackets",
    "rxerrors",
    "rxdrops",
    "txbytes",
    "txpackets",
    "txerrors",
    "txdrops",
];

/// `vm_devices` fields of a `devtype=disk` line.
pub const DISK_FIELDS: [&str; 5] = ["rd_req", "rd_bytes", "wr_reqs", "wr_bytes", "errors"];

/// `vm_features` fields (all floats).
pub const FEATURE_FIELDS: [&str; 13] = [
    "cpu_pct",
    "cpu_usr_pct",
    "cpu_sys_pct",
    "cpu_steal_pct",
    "mem_used_pct",
    "net_rx_bps",
    "net_tx_bps",
    "net_rx_pps",
    "net_tx_pps",
    "disk_rd_bps",
    "disk_wr_bps",
    "disk_rd_iops",
    "disk_wr_iops",
];

/// Tag keys vmtel writes itself (a global tag may not reuse them).
pub fn reserved_tag_keys() -> Vec<&'static str> {
    ID_TAGS.iter().chain(DEVICE_TAGS.iter()).copied().collect()
}

/// Every field key of the schema.
pub fn all_field_keys() -> Vec<&'static str> {
    let mut v: Vec<&str> = VM_METRICS_FIELDS
        .iter()
        .chain(VM_TOTALS_FIELDS.iter())
        .chain(NIC_FIELDS.iter())
        .chain(DISK_FIELDS.iter())
        .chain(FEATURE_FIELDS.iter())
        .chain(HOST_FIELDS.iter())
        .copied()
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Drops global tags a valid configuration cannot hold, so that the rest is a well-defined
/// input: a key whose stored form is a tag vmtel writes itself, a schema field key (InfluxDB 3
/// refuses a tag and a field of the same name), `time` (InfluxDB 1.x refuses it), or the stored
/// form of an earlier key (the line would carry the same tag twice). Empty keys and values are
/// kept: the encoder must leave those tags out.
pub fn valid_globals(globals: Vec<(String, String)>) -> Vec<(String, String)> {
    let reserved = reserved_tag_keys();
    let fields = all_field_keys();
    let mut seen = Vec::<String>::new();
    globals
        .into_iter()
        .filter(|(k, _)| {
            if k.is_empty() {
                return true;
            }
            let s = stored(k);
            if reserved.contains(&s.as_str())
                || fields.contains(&s.as_str())
                || s == "time"
                || seen.contains(&s)
            {
                return false;
            }
            seen.push(s);
            true
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Lines in a comparable form, and the oracle.
// ---------------------------------------------------------------------------------------------

/// A field value as a reader sees it. Floats are kept as bits so that comparison is exact.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Val {
    /// An `i`-suffixed integer.
    Int(i64),
    /// A float, by its bits.
    Float(u64),
}

impl Val {
    pub fn float(v: f64) -> Val {
        Val::Float(v.to_bits())
    }
}

impl fmt::Debug for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Int(v) => write!(f, "{v}i"),
            Val::Float(b) => write!(f, "{:?}", f64::from_bits(*b)),
        }
    }
}

/// One line of line protocol as a reader sees it (unescaped strings).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Point {
    pub measurement: String,
    pub tags: BTreeMap<String, String>,
    pub fields: BTreeMap<String, Val>,
    pub time: i64,
}

/// Converts lines parsed by InfluxDB 3's parser, failing on anything vmtel must never write
/// (duplicate keys, string/bool/unsigned fields, a missing timestamp).
pub fn points_from_parsed(lines: &[influxdb_line_protocol::ParsedLine<'_>]) -> Vec<Point> {
    use influxdb_line_protocol::FieldValue;
    lines
        .iter()
        .map(|l| {
            let raw_tags = l.series.tag_set.clone().unwrap_or_default();
            let tags: BTreeMap<String, String> = raw_tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(tags.len(), raw_tags.len(), "duplicate tag key in {l}");
            let fields: BTreeMap<String, Val> = l
                .field_set
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        FieldValue::I64(i) => Val::Int(*i),
                        FieldValue::F64(f) => Val::float(*f),
                        other => panic!("unexpected field type {other:?} in {l}"),
                    };
                    (k.to_string(), v)
                })
                .collect();
            assert_eq!(
                fields.len(),
                l.field_set.len(),
                "duplicate field key in {l}"
            );
            assert!(!fields.is_empty(), "line without fields: {l}");
            Point {
                measurement: l.series.measurement.to_string(),
                tags,
                fields,
                time: l.timestamp.unwrap_or_else(|| panic!("no timestamp in {l}")),
            }
        })
        .collect()
}

/// Parses `body` with `influxdb_line_protocol`, failing with the offending line on any error.
pub fn parse_all(body: &str) -> Vec<Point> {
    let mut parsed = Vec::new();
    for (line, res) in body.lines().zip(influxdb_line_protocol::parse_lines(body)) {
        match res {
            Ok(p) => parsed.push(p),
            Err(e) => panic!("InfluxDB 3's parser rejects {line:?}: {e}"),
        }
    }
    let points = points_from_parsed(&parsed);
    assert_eq!(
        points.len(),
        body.lines().count(),
        "parser and newline count disagree on {body:?}"
    );
    points
}

/// A counter as an integer field: absent when above `i64::MAX`.
fn int(v: Option<u64>) -> Option<Val> {
    v.and_then(|v| i64::try_from(v).ok()).map(Val::Int)
}

/// The sum over devices of the counters they report: absent when none reports it or the sum
/// does not fit in an `i64`.
fn total<T>(devs: &[T], get: impl Fn(&T) -> Option<u64>) -> Option<Val> {
    let vals: Vec<u128> = devs.iter().filter_map(&get).map(u128::from).collect();
    if vals.is_empty() {
        return None;
    }
    let s: u128 = vals.iter().sum();
    i64::try_from(s).ok().map(Val::Int)
}

fn float(v: Option<f64>) -> Option<Val> {
    v.filter(|v| v.is_finite())
        .map(|v| Val::float(float_as_written(v)))
}

/// What a reader gets back for a float field, per docs/metrics.md: rounded to six decimal
/// places (so `-0.0` and tiny values read as `0.0`), except values of 9·10⁹ or more, written in
/// full.
pub fn float_as_written(v: f64) -> f64 {
    let scaled = v * 1e6;
    if scaled.abs() >= 9e15 {
        v
    } else {
        // `+ 0.0` turns a rounded -0.0 into 0.0.
        scaled.round() / 1e6 + 0.0
    }
}

fn point(
    measurement: &str,
    tags: &[(&str, &str)],
    globals: &[(String, String)],
    fields: Vec<(&str, Option<Val>)>,
    time: i64,
) -> Option<Point> {
    let tags = tags
        .iter()
        .map(|(k, v)| (*k, *v))
        .chain(globals.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| (stored(k), stored(v)))
        .collect();
    let fields: BTreeMap<String, Val> = fields
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v?)))
        .collect();
    if fields.is_empty() {
        return None;
    }
    Some(Point {
        measurement: measurement.to_owned(),
        tags,
        fields,
        time,
    })
}

/// Every point one host sample must produce, in the seed's schema (`divisor`: nanoseconds per
/// timestamp unit).
pub fn expected_points(
    sample: &HostSample,
    features: &[Option<Features>],
    globals: &[(String, String)],
    divisor: i64,
) -> Vec<Point> {
    let t = sample.timestamp_ns.div_euclid(divisor);
    let mut out = Vec::new();
    for (i, d) in sample.domains.iter().enumerate() {
        out.extend(expected_domain(
            &sample.host,
            d,
            features.get(i).copied().flatten(),
            globals,
            t,
        ));
    }
    out
}

fn expected_domain(
    host: &str,
    d: &DomainSample,
    f: Option<Features>,
    globals: &[(String, String)],
    t: i64,
) -> Vec<Point> {
    let vmid = d.id.map(|i| i.to_string()).unwrap_or_default();
    let ids = [
        ("host", host),
        ("VMID", vmid.as_str()),
        ("name", d.name.as_str()),
        ("uuid", d.uuid.as_str()),
    ];
    let state = d.state.map(Val::Int);
    let cpus = int(d.vcpu.current.map(u64::from));
    let (m, c, n, k) = (&d.mem, &d.cpu, &d.nics, &d.disks);
    let mut out = Vec::new();
    out.extend(point(
        "vm_metrics",
        &ids,
        globals,
        vec![
            ("state", state),
            ("cpus", cpus),
            ("cputime", int(c.time)),
            ("memmax", int(m.maximum)),
            ("mem", int(m.current)),
        ],
        t,
    ));
    out.extend(point(
        "vm_totals",
        &ids,
        globals,
        vec![
            ("net_rxbytes", total(n, |x| x.rx_bytes)),
            ("net_rxpackets", total(n, |x| x.rx_pkts)),
            ("net_rxerrors", total(n, |x| x.rx_errs)),
            ("net_rxdrops", total(n, |x| x.rx_drop)),
            ("net_txbytes", total(n, |x| x.tx_bytes)),
            ("net_txpackets", total(n, |x| x.tx_pkts)),
            ("net_txerrors", total(n, |x| x.tx_errs)),
            ("net_txdrops", total(n, |x| x.tx_drop)),
            ("disk_rd_req", total(k, |x| x.rd_reqs)),
            ("disk_rd_bytes", total(k, |x| x.rd_bytes)),
            ("disk_wr_reqs", total(k, |x| x.wr_reqs)),
            ("disk_wr_bytes", total(k, |x| x.wr_bytes)),
            ("disk_errors", total(k, |x| x.errors)),
            ("memactual", int(m.current)),
            ("memrss", int(m.rss)),
            ("memavailable", int(m.available)),
            ("memusable", int(m.usable)),
            ("memswap_in", int(m.swap_in)),
            ("memswap_out", int(m.swap_out)),
            ("memmajor_fault", int(m.major_fault)),
            ("memminor_fault", int(m.minor_fault)),
            ("memdisk_cache", int(m.disk_caches)),
            ("timeusr", int(c.user)),
            ("timesys", int(c.system)),
            ("cpus", cpus),
            ("cputime", int(c.time)),
            ("state", state),
            ("vcpu_delay", int(d.vcpu.delay_sum)),
        ],
        t,
    ));
    for nic in n {
        let tags = [
            ids[0],
            ids[1],
            ids[2],
            ids[3],
            ("devtype", "nic"),
            ("device", &nic.name),
        ];
        out.extend(point(
            "vm_devices",
            &tags,
            globals,
            vec![
                ("rxbytes", int(nic.rx_bytes)),
                ("rxpackets", int(nic.rx_pkts)),
                ("rxerrors", int(nic.rx_errs)),
                ("rxdrops", int(nic.rx_drop)),
                ("txbytes", int(nic.tx_bytes)),
                ("txpackets", int(nic.tx_pkts)),
                ("txerrors", int(nic.tx_errs)),
                ("txdrops", int(nic.tx_drop)),
            ],
            t,
        ));
    }
    for disk in k {
        let tags = [
            ids[0],
            ids[1],
            ids[2],
            ids[3],
            ("devtype", "disk"),
            ("device", &disk.name),
        ];
        out.extend(point(
            "vm_devices",
            &tags,
            globals,
            vec![
                ("rd_req", int(disk.rd_reqs)),
                ("rd_bytes", int(disk.rd_bytes)),
                ("wr_reqs", int(disk.wr_reqs)),
                ("wr_bytes", int(disk.wr_bytes)),
                ("errors", int(disk.errors)),
            ],
            t,
        ));
    }
    if let Some(f) = f {
        out.extend(point(
            "vm_features",
            &ids,
            globals,
            vec![
                ("cpu_pct", float(f.cpu_pct)),
                ("cpu_usr_pct", float(f.cpu_usr_pct)),
                ("cpu_sys_pct", float(f.cpu_sys_pct)),
                ("cpu_steal_pct", float(f.cpu_steal_pct)),
                ("mem_used_pct", float(f.mem_used_pct)),
                ("net_rx_bps", float(f.net_rx_bps)),
                ("net_tx_bps", float(f.net_tx_bps)),
                ("net_rx_pps", float(f.net_rx_pps)),
                ("net_tx_pps", float(f.net_tx_pps)),
                ("disk_rd_bps", float(f.disk_rd_bps)),
                ("disk_wr_bps", float(f.disk_wr_bps)),
                ("disk_rd_iops", float(f.disk_rd_iops)),
                ("disk_wr_iops", float(f.disk_wr_iops)),
            ],
            t,
        ));
    }
    out
}

/// Sorts points so that two lists can be compared regardless of line order.
pub fn sorted(mut v: Vec<Point>) -> Vec<Point> {
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------------------------

/// Characters that matter to line protocol, XML, JSON or terminals, plus some ordinary ones.
pub const TRICKY_CHARS: &[char] = &[
    ' ', ',', '=', '"', '\'', '\\', '\n', '\t', '\r', '\0', '\x01', '\x1b', '\x1f', '\x7f', '#',
    '<', '>', '&', '/', '\u{85}', '\u{a0}', '\u{2028}', '\u{feff}', '\u{FF3C}', '\u{FFFD}', 'é',
    '名', '🦀',
];

/// One character, biased towards the ones that matter (and especially backslashes).
pub fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => Just('\\'),
        6 => proptest::sample::select(TRICKY_CHARS),
        4 => proptest::char::range('a', 'z'),
        1 => any::<char>(),
    ]
}

/// A string of tricky characters (possibly empty), or now and then any string at all.
pub fn tricky_string() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => proptest::collection::vec(tricky_char(), 0..10)
            .prop_map(|v| v.into_iter().collect::<String>()),
        1 => any::<String>(),
    ]
}
