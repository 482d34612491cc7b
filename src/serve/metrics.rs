//! `GET /metrics`: the Prometheus text format (0.0.4), built on each scrape from the latest
//! cycle in the history and from the live counters. The VM metrics' names, help and scale are
//! the schema's `prom` column ([`crate::schema`]); all are listed in `docs/metrics.md`; label
//! values are escaped by the `prometheus` crate's encoder.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::{CounterVec, Encoder, GaugeVec, Opts, Registry, TextEncoder};

use super::api::now_ms;
use super::AppState;
use crate::schema::{vm_host, Kind, MEASUREMENTS};
use crate::store::query::Latest;

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

/// Exports the latest values of every field the schema gives a Prometheus name (labels
/// `host`, `name`, `uuid`, and `device` for device lines; `host` alone for `vm_host`).
fn export_vm(f: &mut Families, series: &[Latest]) {
    for s in series {
        let Some(m) = MEASUREMENTS
            .iter()
            .find(|m| m.name == s.measurement && m.devtype == s.devtype.as_deref())
        else {
            continue;
        };
        let vm_labels = [s.host.as_str(), s.name.as_str(), s.uuid.as_str()];
        for field in m.fields {
            let (Some(p), Some(v)) = (field.prom, s.fields.get(field.key)) else {
                continue;
            };
            let counter = field.kind == Kind::Counter;
            if m.name == vm_host::MEASUREMENT.name {
                f.set(p.name, p.help, counter, &["host"], &[&s.host], v * p.scale);
                continue;
            }
            match (m.devtype, s.device.as_deref()) {
                (Some(_), Some(d)) => f.set(
                    p.name,
                    p.help,
                    counter,
                    &["host", "name", "uuid", "device"],
                    &[vm_labels[0], vm_labels[1], vm_labels[2], d],
                    v * p.scale,
                ),
                (Some(_), None) => {}
                (None, _) => f.set(
                    p.name,
                    p.help,
                    counter,
                    &["host", "name", "uuid"],
                    &vm_labels,
                    v * p.scale,
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
            "Values written to the history (counters and gauges; rates are computed when read).",
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
        // This agent's own VMs, whichever source the pages read.
        let embedded = super::source::embedded::Embedded::new(std::sync::Arc::clone(&state.live));
        tokio::task::spawn_blocking(move || embedded.latest_vm_series(now))
            .await
            .ok()
            .and_then(Result::ok)
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
