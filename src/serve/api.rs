//! The JSON API under `/api/` (see `docs/api.md`). Every error is an object
//! `{"error": "what is wrong and what to do"}` with a 4xx/5xx status.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rusqlite::Connection;
use serde::Serialize;
use serde_json::json;

use super::AppState;
use crate::store::{query, schema};

/// Now, ms since the epoch.
pub fn now_ms() -> i64 {
    crate::collect::wall_ns() / 1_000_000
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "error": msg.into() }))).into_response()
}

/// Runs `f` on a read-only connection to the history file, off the async threads.
pub async fn with_db<T, F>(state: &AppState, f: F) -> Result<T, Response>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
{
    let path = state.live.read().ok().and_then(|l| l.store_path.clone());
    let Some(path) = path else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "history is disabled ([store] enabled = false), so there is nothing to chart; enable [store] to keep history",
        ));
    };
    let shown = path.display().to_string();
    let joined = tokio::task::spawn_blocking(move || {
        if !path.exists() {
            return Err(format!(
                "no history yet: {shown} does not exist; it is created with the first collection cycle"
            ));
        }
        let conn = schema::open_ro(&path)
            .map_err(|e| format!("cannot read the history store {shown}: {e}"))?;
        f(&conn).map_err(|e| format!("cannot read the history store {shown}: {e}"))
    })
    .await;
    match joined {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(msg)) => Err(error(StatusCode::SERVICE_UNAVAILABLE, msg)),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error reading the history: {e}"),
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
    match with_db(&state, move |c| query::fleet(c, now)).await {
        Ok(f) => Json(json!({
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
    match with_db(&state, move |c| query::vm_detail(c, &h, &u, now, range)).await {
        Ok(Some(d)) => Json(d).into_response(),
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
    let (history, history_error) = match with_db(&state, move |c| query::agent(c, now)).await {
        Ok(h) => (Some(h), None),
        Err(r) => (None, Some(error_text(r).await)),
    };
    Json(json!({
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
    }))
    .into_response()
}
