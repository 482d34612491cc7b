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
use crate::store::overview::TopBy;
use crate::store::query::VmRow;

/// Now, ms since the epoch.
pub fn now_ms() -> i64 {
    crate::collect::wall_ns() / 1_000_000
}

/// An error answer: `{"error": msg, "source": ...}` (every answer names the source it read).
fn error(status: StatusCode, state: &AppState, msg: impl Into<String>) -> Response {
    let body = json!({ "error": msg.into(), "source": state.source.info() });
    (status, Json(body)).into_response()
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
            state,
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

/// The columns `/api/fleet?sort=` accepts.
const SORTS: &[&str] = &[
    "host",
    "name",
    "state",
    "vcpus",
    "cpu_pct",
    "mem_used_pct",
    "net",
    "net_rx_bps",
    "net_tx_bps",
    "disk",
    "disk_rd_bps",
    "disk_wr_bps",
    "last_seen",
];

/// Longest filter text accepted.
const MAX_FILTER: usize = 200;

/// A fleet row's value for sorting by `key` (one of [`SORTS`]).
fn sort_value(v: &VmRow, key: &str) -> Option<f64> {
    let sum = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    };
    match key {
        "state" => v.state.map(|s| s as f64),
        "vcpus" => v.vcpus,
        "cpu_pct" => v.cpu_pct,
        "mem_used_pct" => v.mem_used_pct,
        "net" => sum(v.net_rx_bps, v.net_tx_bps),
        "net_rx_bps" => v.net_rx_bps,
        "net_tx_bps" => v.net_tx_bps,
        "disk" => sum(v.disk_rd_bps, v.disk_wr_bps),
        "disk_rd_bps" => v.disk_rd_bps,
        "disk_wr_bps" => v.disk_wr_bps,
        "last_seen" => Some(v.last_seen_ms as f64),
        _ => None,
    }
}

/// Filters, sorts and pages the fleet's VMs as `q` asks (`host`, `state`, `q`, `sort`, `dir`,
/// `offset`, `limit`); returns the page and how many VMs matched.
fn page_of(
    mut vms: Vec<VmRow>,
    q: &HashMap<String, String>,
) -> Result<(Vec<VmRow>, usize), String> {
    if let Some(host) = q.get("host").filter(|h| !h.is_empty()) {
        vms.retain(|v| &v.host == host);
    }
    match q.get("state").map(String::as_str) {
        None | Some("") => {}
        Some("running") => vms.retain(|v| v.current && matches!(v.state, Some(1 | 2))),
        Some("paused") => vms.retain(|v| v.current && v.state == Some(3)),
        Some("other") => vms.retain(|v| v.current && !matches!(v.state, Some(1..=3))),
        Some("gone") => vms.retain(|v| !v.current),
        Some(s) => {
            return Err(format!(
                "state {s:?} is not one of running, paused, other, gone"
            ))
        }
    }
    if let Some(text) = q.get("q").map(|t| t.trim()).filter(|t| !t.is_empty()) {
        if text.chars().count() > MAX_FILTER {
            return Err(format!(
                "q is longer than {MAX_FILTER} characters; shorten the filter"
            ));
        }
        let t = text.to_lowercase();
        vms.retain(|v| {
            v.name.to_lowercase().contains(&t)
                || v.host.to_lowercase().contains(&t)
                || v.uuid.contains(&t)
        });
    }
    let key = q.get("sort").map(String::as_str).unwrap_or("host");
    if !SORTS.contains(&key) {
        return Err(format!("sort {key:?} is not one of {}", SORTS.join(", ")));
    }
    let desc = match q.get("dir").map(String::as_str) {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(d) => return Err(format!("dir {d:?} is not asc or desc")),
    };
    let by_name =
        |a: &VmRow, b: &VmRow| (&a.host, &a.name, &a.uuid).cmp(&(&b.host, &b.name, &b.uuid));
    // Descending reverses the sort key only: ties stay by host and name, missing values last.
    let dir = |o: std::cmp::Ordering| if desc { o.reverse() } else { o };
    match key {
        "host" => vms.sort_by(|a, b| dir(by_name(a, b))),
        "name" => {
            vms.sort_by(|a, b| dir((&a.name, &a.host, &a.uuid).cmp(&(&b.name, &b.host, &b.uuid))))
        }
        k => vms.sort_by(|a, b| match (sort_value(a, k), sort_value(b, k)) {
            (Some(x), Some(y)) => dir(x.total_cmp(&y)).then_with(|| by_name(a, b)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => by_name(a, b),
        }),
    }
    let total = vms.len();
    let number = |name: &str, default: usize, max: usize| -> Result<usize, String> {
        match q.get(name) {
            None => Ok(default),
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("{name} {s:?} is not a number from 0 to {max}")),
        }
    };
    let offset = number("offset", 0, usize::MAX / 2)?;
    let limit = number("limit", usize::MAX / 2, 10_000)?;
    let page = vms.into_iter().skip(offset).take(limit).collect();
    Ok((page, total))
}

/// `GET /api/fleet`: every host and VM with its latest values; `?host=&q=&sort=&dir=&offset=&limit=`
/// filter, sort and page the VMs on the server.
pub async fn fleet(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let now = now_ms();
    match with_source(&state, move |s| s.fleet(now)).await {
        Ok(f) => {
            let (vms, total) = match page_of(f.vms, &q) {
                Ok(p) => p,
                Err(msg) => return error(StatusCode::BAD_REQUEST, &state, msg),
            };
            Json(json!({
                "source": state.source.info(),
                "now_ms": now,
                "interval_ms": interval_ms(&state),
                "store": store_view(&state),
                "hosts": f.hosts,
                "total": total,
                "vms": vms,
            }))
            .into_response()
        }
        Err(r) => r,
    }
}

/// `GET /api/hosts`: every host with its VMs by state, allocation, use and CPU trend.
pub async fn hosts(State(state): State<AppState>) -> Response {
    let now = now_ms();
    let interval = interval_ms(&state) as i64;
    let cfg = Arc::clone(&state.problems);
    match with_source(&state, move |s| s.hosts(now, interval, &cfg)).await {
        Ok(h) => Json(json!({
            "source": state.source.info(),
            "now_ms": now,
            "interval_ms": interval,
            "silent_intervals": state.problems.silent_intervals,
            "hosts": h,
        }))
        .into_response(),
        Err(r) => r,
    }
}

/// `GET /api/problems`: VMs and hosts that need a look now, with why and since when.
pub async fn problems(State(state): State<AppState>) -> Response {
    let now = now_ms();
    let interval = interval_ms(&state) as i64;
    let cfg = Arc::clone(&state.problems);
    match with_source(&state, move |s| s.problems(now, interval, &cfg)).await {
        Ok(p) => Json(json!({
            "source": state.source.info(),
            "now_ms": now,
            "interval_ms": interval,
            "thresholds": {
                "steal_pct": state.problems.steal_pct,
                "mem_used_pct": state.problems.mem_used_pct,
                "cycles": state.problems.cycles,
                "window_ms": state.problems.window_ms(),
                "silent_intervals": state.problems.silent_intervals,
            },
            "problems": p,
        }))
        .into_response(),
        Err(r) => r,
    }
}

/// `GET /api/top?by=cpu_pct|cpu_steal_pct|net|disk|mem&range=1h[&host=H]`: the 10 VMs with the
/// highest mean over the range (of one host, with `host`).
pub async fn top(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let by_name = q.get("by").map(String::as_str).unwrap_or("cpu_pct");
    let Some(by) = TopBy::parse(by_name) else {
        let names: Vec<&str> = TopBy::ALL.iter().map(|(n, _)| *n).collect();
        return error(
            StatusCode::BAD_REQUEST,
            &state,
            format!("by {by_name:?} is not one of {}", names.join(", ")),
        );
    };
    let range_name = q.get("range").map(String::as_str).unwrap_or("1h");
    let Some((_, range)) = RANGES.iter().find(|(n, _)| *n == range_name) else {
        return error(
            StatusCode::BAD_REQUEST,
            &state,
            format!("range {range_name:?} is not one of 15m, 1h, 6h, 24h, 7d"),
        );
    };
    let (range, by_name) = (*range, by_name.to_owned());
    let host = q.get("host").filter(|h| !h.is_empty()).cloned();
    let now = now_ms();
    let only = host.clone();
    match with_source(&state, move |s| s.top(now, by, range, only.as_deref())).await {
        Ok(list) => Json(json!({
            "source": state.source.info(),
            "now_ms": now,
            "host": host,
            "by": by_name,
            "unit": by.unit(),
            "range_ms": range,
            "vms": list,
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
            &state,
            "give the VM as ?host=HOST&uuid=UUID (both as in /api/fleet)",
        );
    };
    let range_name = q.get("range").map(String::as_str).unwrap_or("1h");
    let Some((_, range)) = RANGES.iter().find(|(n, _)| *n == range_name) else {
        return error(
            StatusCode::BAD_REQUEST,
            &state,
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
            &state,
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
    let store = store_view(&state);
    let errors = sources
        .iter()
        .filter_map(|s| s.last_error.as_deref())
        .chain(store.as_ref().and_then(|s| s.last_error.as_deref()))
        .chain(history_error.as_deref());
    let help = help_links(errors);
    Json(json!({
        "source": state.source.info(),
        "version": env!("CARGO_PKG_VERSION"),
        "now_ms": now,
        "interval_ms": interval_ms(&state),
        "store": store,
        "sources": sources,
        "sinks": sinks,
        "history": history,
        "history_error": history_error,
        "help": help,
    }))
    .into_response()
}

/// For each of `errors` that the troubleshooting guide has an entry for: the error text →
/// the link to that entry (`/help/troubleshooting#anchor`).
fn help_links<'a>(
    errors: impl Iterator<Item = &'a str>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut help = serde_json::Map::new();
    for e in errors {
        if help.contains_key(e) {
            continue;
        }
        if let Some(link) = super::help::link_for(e) {
            help.insert(e.to_owned(), link.into());
        }
    }
    help
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
        "simulated": simulated(&state),
    }))
    .into_response()
}

/// True when this agent collects from a simulated source (`vmtel demo`): the pages say so.
fn simulated(state: &AppState) -> bool {
    state.live.read().is_ok_and(|l| {
        l.sources
            .iter()
            .any(|(uri, _)| crate::collect::simulated::is_simulated(uri))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(host: &str, name: &str, cpu: Option<f64>, state: i64, current: bool) -> VmRow {
        VmRow {
            host: host.into(),
            uuid: format!("{host}/{name}"),
            name: name.into(),
            vmid: None,
            state: Some(state),
            vcpus: Some(1.0),
            mem_kib: None,
            cpu_pct: cpu,
            mem_used_pct: None,
            net_rx_bps: None,
            net_tx_bps: None,
            disk_rd_bps: None,
            disk_wr_bps: None,
            last_seen_ms: 0,
            current,
        }
    }

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn names(page: &[VmRow]) -> Vec<String> {
        page.iter()
            .map(|v| format!("{}:{}", v.host, v.name))
            .collect()
    }

    fn fleet() -> Vec<VmRow> {
        vec![
            vm("h2", "b", Some(50.0), 1, true),
            vm("h1", "a", Some(50.0), 1, true),
            vm("h1", "c", None, 3, true),
            vm("h1", "d", Some(90.0), 1, false),
            vm("h2", "e", Some(10.0), 1, true),
        ]
    }

    #[test]
    fn sorting_either_way_keeps_ties_by_host_and_missing_values_last() {
        let (page, total) =
            page_of(fleet(), &query(&[("sort", "cpu_pct"), ("dir", "desc")])).expect("valid");
        assert_eq!(total, 5);
        assert_eq!(names(&page), ["h1:d", "h1:a", "h2:b", "h2:e", "h1:c"]);
        let (page, _) = page_of(fleet(), &query(&[("sort", "cpu_pct")])).expect("valid");
        assert_eq!(names(&page), ["h2:e", "h1:a", "h2:b", "h1:d", "h1:c"]);
        let (page, _) =
            page_of(fleet(), &query(&[("sort", "name"), ("dir", "desc")])).expect("valid");
        assert_eq!(names(&page), ["h2:e", "h1:d", "h1:c", "h2:b", "h1:a"]);
    }

    #[test]
    fn filters_and_pages() {
        let page = |pairs: &[(&str, &str)]| page_of(fleet(), &query(pairs)).expect("valid");
        assert_eq!(names(&page(&[("state", "paused")]).0), ["h1:c"]);
        assert_eq!(names(&page(&[("state", "gone")]).0), ["h1:d"]);
        assert_eq!(page(&[("state", "running")]).1, 3);
        assert_eq!(names(&page(&[("host", "h2")]).0), ["h2:b", "h2:e"]);
        assert_eq!(names(&page(&[("q", "H2")]).0), ["h2:b", "h2:e"]);
        let (p, total) = page(&[("offset", "1"), ("limit", "2")]);
        assert_eq!(
            (names(&p), total),
            (vec!["h1:c".to_owned(), "h1:d".to_owned()], 5)
        );
        for bad in [
            ("sort", "cpu"),
            ("dir", "up"),
            ("state", "asleep"),
            ("limit", "-1"),
            ("limit", "10001"),
        ] {
            let e = page_of(fleet(), &query(&[bad])).expect_err("refused");
            assert!(e.contains(bad.1), "{e}");
        }
    }

    #[test]
    fn errors_the_guide_explains_get_a_link_to_their_entry() {
        let connect = crate::collect::CollectError::Connect {
            uri: "qemu+ssh://vmtel@hv01/system".into(),
            message: "Cannot recv data: Host key verification failed.: Connection reset by peer"
                .into(),
        }
        .to_string();
        let unknown = "an error no guide has heard of";
        let help = help_links([connect.as_str(), unknown, connect.as_str()].into_iter());
        assert_eq!(help.len(), 1, "{help:?}");
        let link = help[connect.as_str()].as_str().unwrap_or_default();
        assert_eq!(
            Some(link.to_owned()),
            super::super::help::link_for(&connect)
        );
        // The anchor is a heading of the guide that quotes the ssh text.
        let anchor = link
            .strip_prefix("/help/troubleshooting#")
            .unwrap_or_default();
        assert!(super::super::help::Guide::builtin()
            .entries
            .iter()
            .any(|e| e.anchor == anchor
                && e.messages
                    .iter()
                    .any(|m| m.text.contains("Host key verification failed"))));
    }
}
