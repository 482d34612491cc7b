//! The JSON API under `/api/` (see `docs/api.md`). Every error is an object
//! `{"error": "what is wrong and what to do"}` with a 4xx/5xx status.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::source::{QueryError, Source};
use super::AppState;

/// Now, ms since the epoch.
pub fn now_ms() -> i64 {
    crate::collect::wall_ns() / 1_000_000
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

/// Runs `f` on the data source, off the async threads; a failure becomes the API's error
/// answer (503 or 502 with `{"error": ...}` and the source).
pub async fn with_source<T, F>(state: &AppState, f: F) -> Result<T, Response>
where
    T: Send + 'static,
    F: FnOnce(&Source) -> Result<T, QueryError> + Send + 'static,
{
    let source = Arc::clone(&state.source);
    let joined = tokio::task::spawn_blocking(move || f(&source)).await;
    match joined {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err((
            e.status(),
            Json(json!({ "error": e.message(), "source": state.source.info() })),
        )
            .into_response()),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error reading the data source: {e}"),
        )),
    }
}

fn interval_ms(state: &AppState) -> u64 {
    state
        .live
        .read()
        .map(|l| u64::try_from(l.interval.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn store_view(state: &AppState) -> Option<crate::store::StatusView> {
    state
        .live
        .read()
        .ok()
        .and_then(|l| l.store.as_ref().map(|s| s.view()))
}

/// `GET /api/fleet`: every host and VM with its latest values.
pub async fn fleet(State(state): State<AppState>) -> Response {
    let now = now_ms();
    match with_source(&state, move |s| s.fleet(now)).await {
        Ok(f) => Json(json!({
            "source": state.source.info(),
            "now_ms": now,
            "interval_ms": interval_ms(&state),
            "store": store_view(&state),
            "hosts": f.hosts,
            "vms": f.vms,
        }))
        .into_response(),
        Err(r) => r,
    }
}

/// The ranges the VM page offers, in ms.
pub const RANGES: &[(&str, i64)] = &[
    ("15m", 15 * 60_000),
    ("1h", 3_600_000),
    ("6h", 6 * 3_600_000),
    ("24h", 24 * 3_600_000),
    ("7d", 7 * 24 * 3_600_000),
];

/// `GET /api/vm?host=H&uuid=U&range=1h`: one VM's charts and devices.
pub async fn vm(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (Some(host), Some(uuid)) = (q.get("host").cloned(), q.get("uuid").cloned()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "give the VM as ?host=HOST&uuid=UUID (both as in /api/fleet)",
        );
    };
    let range_name = q.get("range").map(String::as_str).unwrap_or("1h");
    let Some((_, range)) = RANGES.iter().find(|(n, _)| *n == range_name) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("range {range_name:?} is not one of 15m, 1h, 6h, 24h, 7d"),
        );
    };
    let range = *range;
    let now = now_ms();
    let (h, u) = (host.clone(), uuid.clone());
    match with_source(&state, move |s| s.vm_detail(&h, &u, now, range)).await {
        Ok(Some(d)) => {
            let mut v = serde_json::to_value(d).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("source".into(), json!(state.source.info()));
            }
            Json(v).into_response()
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("the history has no VM with uuid {uuid:?} on host {host:?}; pick one from the fleet page"),
        ),
        Err(r) => r,
    }
}

/// One source's live counters.
#[derive(Serialize)]
struct LiveSource {
    source: String,
    connected: bool,
    cycles: u64,
    errors: u64,
    skipped_ticks: u64,
    backoff_skips: u64,
    last_cycle_ms: f64,
    domains: u64,
    last_error: Option<String>,
}

/// One sink's live counters.
#[derive(Serialize)]
struct LiveSink {
    sink: String,
    batches: u64,
    lines: u64,
    dropped: u64,
    errors: u64,
}

/// `GET /api/agent`: vmtel's own health, live and over the last hour.
pub async fn agent(State(state): State<AppState>) -> Response {
    let (sources, sinks) = match state.live.read() {
        Ok(l) => (
            l.sources
                .iter()
                .map(|(uri, s)| LiveSource {
                    source: uri.clone(),
                    connected: s.connected.load(Ordering::Relaxed),
                    cycles: s.cycles.load(Ordering::Relaxed),
                    errors: s.errors.load(Ordering::Relaxed),
                    skipped_ticks: s.skipped_ticks.load(Ordering::Relaxed),
                    backoff_skips: s.backoff_skips.load(Ordering::Relaxed),
                    last_cycle_ms: s.last_cycle_ns.load(Ordering::Relaxed) as f64 / 1e6,
                    domains: s.domains.load(Ordering::Relaxed),
                    last_error: s.last_error.lock().ok().and_then(|g| g.clone()),
                })
                .collect::<Vec<_>>(),
            l.sinks
                .iter()
                .map(|(name, s)| LiveSink {
                    sink: name.clone(),
                    batches: s.batches.load(Ordering::Relaxed),
                    lines: s.lines.load(Ordering::Relaxed),
                    dropped: s.dropped.load(Ordering::Relaxed),
                    errors: s.errors.load(Ordering::Relaxed),
                })
                .collect::<Vec<_>>(),
        ),
        Err(_) => (Vec::new(), Vec::new()),
    };
    let now = now_ms();
    let (history, history_error) = match with_source(&state, move |s| s.agent(now)).await {
        Ok(h) => (Some(h), None),
        Err(r) => (None, Some(error_text(r).await)),
    };
    Json(json!({
        "source": state.source.info(),
        "version": env!("CARGO_PKG_VERSION"),
        "now_ms": now,
        "interval_ms": interval_ms(&state),
        "store": store_view(&state),
        "sources": sources,
        "sinks": sinks,
        "history": history,
        "history_error": history_error,
    }))
    .into_response()
}

async fn error_text(r: Response) -> String {
    let body = axum::body::to_bytes(r.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "history unavailable".into())
}

/// `GET /api/status`: version, interval and the store's health.
pub async fn status(State(state): State<AppState>) -> Response {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "interval_ms": interval_ms(&state),
        "store": store_view(&state),
        "source": state.source.info(),
    }))
    .into_response()
}
