//! `GET /metrics`: the Prometheus text format (0.0.4), built on each scrape from the latest
//! cycle in the history and from the live counters. Names and labels are listed in
//! `docs/metrics.md`; label values are escaped by the `prometheus` crate's encoder.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::{CounterVec, Encoder, GaugeVec, Opts, Registry, TextEncoder};

use super::api::{now_ms, with_db};
use super::AppState;
use crate::store::query::{latest_vm_series, Latest};

/// How a stored field becomes a Prometheus metric.
struct Map {
    measurement: &'static str,
    field: &'static str,
    name: &'static str,
    help: &'static str,
    counter: bool,
    scale: f64,
}

const fn g(
    m: &'static str,
    f: &'static str,
    name: &'static str,
    help: &'static str,
    scale: f64,
) -> Map {
    Map {
        measurement: m,
        field: f,
        name,
        help,
        counter: false,
        scale,
    }
}

const fn c(
    m: &'static str,
    f: &'static str,
    name: &'static str,
    help: &'static str,
    scale: f64,
) -> Map {
    Map {
        measurement: m,
        field: f,
        name,
        help,
        counter: true,
        scale,
    }
}

const KIB: f64 = 1024.0;

/// Per-VM metrics (labels host, name, uuid).
const VM: &[Map] = &[
    g(
        "vm_metrics",
        "state",
        "vmtel_vm_state",
        "libvirt domain state (1 running, 3 paused, ...).",
        1.0,
    ),
    g(
        "vm_metrics",
        "cpus",
        "vmtel_vm_vcpus",
        "Virtual CPUs online.",
        1.0,
    ),
    c(
        "vm_metrics",
        "cputime",
        "vmtel_vm_cpu_seconds_total",
        "CPU time used by the VM.",
        1e-9,
    ),
    c(
        "vm_totals",
        "timeusr",
        "vmtel_vm_cpu_user_seconds_total",
        "User CPU time used by the VM.",
        1e-9,
    ),
    c(
        "vm_totals",
        "timesys",
        "vmtel_vm_cpu_system_seconds_total",
        "System CPU time used by the VM.",
        1e-9,
    ),
    g(
        "vm_metrics",
        "memmax",
        "vmtel_vm_memory_max_bytes",
        "Maximum memory.",
        KIB,
    ),
    g(
        "vm_totals",
        "memactual",
        "vmtel_vm_memory_actual_bytes",
        "Current balloon size.",
        KIB,
    ),
    g(
        "vm_totals",
        "memrss",
        "vmtel_vm_memory_rss_bytes",
        "Resident set size of the VM's process on the host.",
        KIB,
    ),
    g(
        "vm_totals",
        "memavailable",
        "vmtel_vm_memory_available_bytes",
        "Memory the guest sees as total.",
        KIB,
    ),
    g(
        "vm_totals",
        "memusable",
        "vmtel_vm_memory_usable_bytes",
        "Memory usable by the guest without swapping.",
        KIB,
    ),
    g(
        "vm_totals",
        "memdisk_cache",
        "vmtel_vm_memory_disk_caches_bytes",
        "Guest disk caches that can be reclaimed.",
        KIB,
    ),
    c(
        "vm_totals",
        "memswap_in",
        "vmtel_vm_memory_swap_in_bytes_total",
        "Memory swapped in by the guest.",
        KIB,
    ),
    c(
        "vm_totals",
        "memswap_out",
        "vmtel_vm_memory_swap_out_bytes_total",
        "Memory swapped out by the guest.",
        KIB,
    ),
    c(
        "vm_totals",
        "memmajor_fault",
        "vmtel_vm_memory_major_faults_total",
        "Major page faults in the guest.",
        1.0,
    ),
    c(
        "vm_totals",
        "memminor_fault",
        "vmtel_vm_memory_minor_faults_total",
        "Minor page faults in the guest.",
        1.0,
    ),
    g(
        "vm_features",
        "cpu_pct",
        "vmtel_vm_cpu_usage_percent",
        "CPU use over the last interval, percent of the VM's vCPUs.",
        1.0,
    ),
    g(
        "vm_features",
        "cpu_steal_pct",
        "vmtel_vm_cpu_steal_percent",
        "Time vCPUs waited for a host CPU over the last interval, percent.",
        1.0,
    ),
    g(
        "vm_features",
        "mem_used_pct",
        "vmtel_vm_memory_used_percent",
        "Guest memory in use, percent of what the guest sees.",
        1.0,
    ),
];

/// Per-NIC metrics (labels host, name, uuid, device).
const NIC: &[Map] = &[
    c(
        "vm_devices",
        "rxbytes",
        "vmtel_vm_network_receive_bytes_total",
        "Bytes received by the NIC.",
        1.0,
    ),
    c(
        "vm_devices",
        "rxpackets",
        "vmtel_vm_network_receive_packets_total",
        "Packets received by the NIC.",
        1.0,
    ),
    c(
        "vm_devices",
        "rxerrors",
        "vmtel_vm_network_receive_errors_total",
        "Receive errors of the NIC.",
        1.0,
    ),
    c(
        "vm_devices",
        "rxdrops",
        "vmtel_vm_network_receive_drops_total",
        "Received packets dropped.",
        1.0,
    ),
    c(
        "vm_devices",
        "txbytes",
        "vmtel_vm_network_transmit_bytes_total",
        "Bytes transmitted by the NIC.",
        1.0,
    ),
    c(
        "vm_devices",
        "txpackets",
        "vmtel_vm_network_transmit_packets_total",
        "Packets transmitted by the NIC.",
        1.0,
    ),
    c(
        "vm_devices",
        "txerrors",
        "vmtel_vm_network_transmit_errors_total",
        "Transmit errors of the NIC.",
        1.0,
    ),
    c(
        "vm_devices",
        "txdrops",
        "vmtel_vm_network_transmit_drops_total",
        "Transmitted packets dropped.",
        1.0,
    ),
];

/// Per-disk metrics (labels host, name, uuid, device).
const DISK: &[Map] = &[
    c(
        "vm_devices",
        "rd_bytes",
        "vmtel_vm_disk_read_bytes_total",
        "Bytes read from the disk.",
        1.0,
    ),
    c(
        "vm_devices",
        "rd_req",
        "vmtel_vm_disk_reads_total",
        "Read requests to the disk.",
        1.0,
    ),
    c(
        "vm_devices",
        "wr_bytes",
        "vmtel_vm_disk_written_bytes_total",
        "Bytes written to the disk.",
        1.0,
    ),
    c(
        "vm_devices",
        "wr_reqs",
        "vmtel_vm_disk_writes_total",
        "Write requests to the disk.",
        1.0,
    ),
    c(
        "vm_devices",
        "errors",
        "vmtel_vm_disk_errors_total",
        "I/O errors of the disk.",
        1.0,
    ),
];

enum Family {
    Gauge(GaugeVec),
    Counter(CounterVec),
}

struct Families {
    registry: Registry,
    by_name: HashMap<&'static str, Family>,
}

impl Families {
    fn new() -> Families {
        Families {
            registry: Registry::new(),
            by_name: HashMap::new(),
        }
    }

    fn set(
        &mut self,
        name: &'static str,
        help: &str,
        counter: bool,
        labels: &[&str],
        values: &[&str],
        v: f64,
    ) {
        if !v.is_finite() || (counter && v < 0.0) {
            return;
        }
        if !self.by_name.contains_key(name) {
            let opts = Opts::new(name, help);
            let fam = if counter {
                CounterVec::new(opts, labels).map(Family::Counter)
            } else {
                GaugeVec::new(opts, labels).map(Family::Gauge)
            };
            let Ok(fam) = fam else { return };
            let registered = match &fam {
                Family::Counter(c) => self.registry.register(Box::new(c.clone())),
                Family::Gauge(g) => self.registry.register(Box::new(g.clone())),
            };
            if registered.is_err() {
                return;
            }
            self.by_name.insert(name, fam);
        }
        match self.by_name.get(name) {
            Some(Family::Counter(c)) => {
                if let Ok(m) = c.get_metric_with_label_values(values) {
                    m.inc_by(v);
                }
            }
            Some(Family::Gauge(g)) => {
                if let Ok(m) = g.get_metric_with_label_values(values) {
                    m.set(v);
                }
            }
            None => {}
        }
    }
}

fn export_vm(f: &mut Families, series: &[Latest]) {
    for s in series {
        let vm_labels = [s.host.as_str(), s.name.as_str(), s.uuid.as_str()];
        let (maps, dev): (&[Map], Option<&str>) =
            match (s.measurement.as_str(), s.devtype.as_deref()) {
                ("vm_devices", Some("nic")) => (NIC, s.device.as_deref()),
                ("vm_devices", Some("disk")) => (DISK, s.device.as_deref()),
                ("vm_devices", _) => continue,
                _ => (VM, None),
            };
        for m in maps.iter().filter(|m| m.measurement == s.measurement) {
            let Some(v) = s.fields.get(m.field) else {
                continue;
            };
            match dev {
                Some(d) => f.set(
                    m.name,
                    m.help,
                    m.counter,
                    &["host", "name", "uuid", "device"],
                    &[vm_labels[0], vm_labels[1], vm_labels[2], d],
                    v * m.scale,
                ),
                None => f.set(
                    m.name,
                    m.help,
                    m.counter,
                    &["host", "name", "uuid"],
                    &vm_labels,
                    v * m.scale,
                ),
            }
        }
    }
}

fn export_self(f: &mut Families, state: &AppState) {
    let Ok(live) = state.live.read() else { return };
    f.set(
        "vmtel_build_info",
        "vmtel's version (always 1).",
        false,
        &["version"],
        &[env!("CARGO_PKG_VERSION")],
        1.0,
    );
    for (uri, s) in &live.sources {
        let l = &["source"];
        let v = &[uri.as_str()];
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        f.set(
            "vmtel_source_cycles_total",
            "Collection cycles run.",
            true,
            l,
            v,
            n(&s.cycles),
        );
        f.set(
            "vmtel_source_errors_total",
            "Collection cycles that failed.",
            true,
            l,
            v,
            n(&s.errors),
        );
        f.set(
            "vmtel_source_skipped_ticks_total",
            "Ticks skipped (previous cycle still running, or backing off).",
            true,
            l,
            v,
            n(&s.skipped_ticks),
        );
        f.set(
            "vmtel_source_cycle_seconds",
            "Duration of the last cycle.",
            false,
            l,
            v,
            n(&s.last_cycle_ns) / 1e9,
        );
        f.set(
            "vmtel_source_domains",
            "VMs in the last successful cycle.",
            false,
            l,
            v,
            n(&s.domains),
        );
        f.set(
            "vmtel_source_connected",
            "1 when the libvirt connection is up.",
            false,
            l,
            v,
            f64::from(u8::from(s.connected.load(Ordering::Relaxed))),
        );
    }
    for (name, s) in &live.sinks {
        let l = &["sink"];
        let v = &[name.as_str()];
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        f.set(
            "vmtel_sink_batches_total",
            "Batches written by the output.",
            true,
            l,
            v,
            n(&s.batches),
        );
        f.set(
            "vmtel_sink_lines_total",
            "Lines written by the output.",
            true,
            l,
            v,
            n(&s.lines),
        );
        f.set(
            "vmtel_sink_dropped_batches_total",
            "Batches dropped because the output's queue was full.",
            true,
            l,
            v,
            n(&s.dropped),
        );
        f.set(
            "vmtel_sink_errors_total",
            "Write errors of the output.",
            true,
            l,
            v,
            n(&s.errors),
        );
    }
    if let Some(st) = &live.store {
        let view = st.view();
        f.set(
            "vmtel_store_used_bytes",
            "Bytes the history file uses.",
            false,
            &[],
            &[],
            view.used_bytes as f64,
        );
        f.set(
            "vmtel_store_points_total",
            "Points written to the history.",
            true,
            &[],
            &[],
            view.points as f64,
        );
        f.set(
            "vmtel_store_errors_total",
            "Batches the history could not keep.",
            true,
            &[],
            &[],
            view.errors as f64,
        );
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let now = now_ms();
    let has_store = state
        .live
        .read()
        .map(|l| l.store_path.is_some())
        .unwrap_or(false);
    let series = if has_store {
        // No history yet (or unreadable): vmtel's own metrics are still exported.
        with_db(&state, move |c| latest_vm_series(c, now))
            .await
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut f = Families::new();
    export_vm(&mut f, &series);
    export_self(&mut f, &state);
    let mut out = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&f.registry.gather(), &mut out) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}\n"),
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
        out,
    )
        .into_response()
}
