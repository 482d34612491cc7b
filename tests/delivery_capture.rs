//! InfluxDB outputs against a local capture server: the InfluxDB 3 request format (no InfluxDB
//! 3 server can be installed here, so its endpoint is tested by its documented request format
//! only), and answers a real server cannot be made to give on demand: 401 until the token is
//! fixed, 413, a v3 partial write, 503 with `Retry-After`.

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::capture::{Capture, Reply, Request};
use vmtel::deliver::influxdb::{DeliveryStats, InfluxOutput, InfluxSink};
use vmtel::deliver::{Batch, Sink};
use vmtel::encode::Precision;

fn output(toml_text: &str) -> InfluxOutput {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"))
}

fn batch(lines: &str) -> Batch {
    Batch {
        end_of_cycle: true,
        source: "test".into(),
        timestamp_ns: 0,
        lines: lines.into(),
        line_count: lines.lines().count(),
    }
}

/// Starts a sink for `cfg` in `state`, writes `lines` and flushes (commits to the spool).
fn start_and_write(
    cfg: &InfluxOutput,
    state: &Path,
    lines: &[&str],
) -> (InfluxSink, Arc<DeliveryStats>) {
    let mut sink = InfluxSink::start(cfg, state, Precision::Seconds).expect("start sink");
    for l in lines {
        sink.write(&batch(l)).expect("write");
    }
    sink.flush().expect("flush");
    let stats = sink.delivery_stats().expect("stats");
    (sink, stats)
}

fn wait_stat(secs: u64, what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn writes(reqs: &[Request]) -> Vec<&Request> {
    reqs.iter().filter(|r| r.method == "POST").collect()
}

fn token_file(dir: &Path, token: &str) -> String {
    let p = dir.join("token");
    std::fs::write(&p, format!("{token}\n")).expect("token file");
    p.display().to_string()
}

#[test]
fn v3_request_has_the_documented_path_query_headers_and_gzip_body() {
    let server = Capture::start(|_| Reply::status(204));
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = token_file(dir.path(), "s3cr3t-token");
    let cfg = output(&format!(
        "url = \"{}/\"\ndatabase = \"vm tel&x\"\ntoken_file = \"{tok}\"\nprecision = \"ms\"\nflush_interval = \"0s\"\n",
        server.url()
    ));
    let lines = "vm_metrics,host=h\\ 1,name=a=b state=1i 1700000000\nvm_features,host=h\\ 1 cpu_pct=12.5 1700000000\n";
    let (_sink, stats) = start_and_write(&cfg, dir.path(), &[lines]);
    let reqs = server.wait_for(30, "one write", |r| !writes(r).is_empty());
    let w = writes(&reqs)[0];
    assert_eq!(w.path, "/api/v3/write_lp");
    assert_eq!(w.query.get("db").map(String::as_str), Some("vm tel&x"));
    assert_eq!(w.query.get("precision").map(String::as_str), Some("ms"));
    assert_eq!(w.query.len(), 2, "{:?}", w.query);
    assert_eq!(w.header("authorization"), Some("Bearer s3cr3t-token"));
    assert_eq!(w.header("content-encoding"), Some("gzip"));
    assert_eq!(w.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(w
        .header("user-agent")
        .is_some_and(|u| u.starts_with("vmtel/")));
    assert_eq!(
        w.body(),
        "vm_metrics,host=h\\ 1,name=a=b state=1i 1700000000000\nvm_features,host=h\\ 1 cpu_pct=12.5 1700000000000\n",
        "the gzip body decompresses to exactly the lines (timestamps in ms)"
    );
    wait_stat(10, "the rows to be deleted", || {
        stats.backlog_batches.load(Ordering::Relaxed) == 0
    });
    assert_eq!(stats.delivered_lines.load(Ordering::Relaxed), 2);
}

#[test]
fn v2_request_without_gzip() {
    let server = Capture::start(|_| Reply::status(204));
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = token_file(dir.path(), "t2");
    let cfg = output(&format!(
        "url = \"{}\"\napi = \"v2\"\nbucket = \"b/1\"\norg = \"my org\"\ntoken_file = \"{tok}\"\ngzip = false\nflush_interval = \"0s\"\n",
        server.url()
    ));
    let (_sink, _) = start_and_write(&cfg, dir.path(), &["m f=1i 1\n"]);
    let reqs = server.wait_for(30, "one write", |r| !writes(r).is_empty());
    let w = writes(&reqs)[0];
    assert_eq!(w.path, "/api/v2/write");
    assert_eq!(w.query.get("bucket").map(String::as_str), Some("b/1"));
    assert_eq!(w.query.get("org").map(String::as_str), Some("my org"));
    assert_eq!(w.query.get("precision").map(String::as_str), Some("s"));
    assert_eq!(w.header("authorization"), Some("Token t2"));
    assert_eq!(w.header("content-encoding"), None);
    assert_eq!(
        String::from_utf8(w.raw_body.clone()).expect("utf8"),
        "m f=1i 1\n"
    );
}

#[test]
fn a_refused_token_keeps_the_data_until_the_token_is_fixed() {
    let server = Capture::start(|r| {
        if r.header("authorization") == Some("Bearer good") {
            Reply::status(204)
        } else {
            Reply::json(401, r#"{"error": "the request was not authenticated"}"#)
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = token_file(dir.path(), "bad");
    let cfg = output(&format!(
        "url = \"{}\"\ndatabase = \"d\"\ntoken_file = \"{tok}\"\nflush_interval = \"0s\"\n",
        server.url()
    ));
    let batches: Vec<String> = (0..5).map(|i| format!("m f={i}i {}\n", 100 + i)).collect();
    let refs: Vec<&str> = batches.iter().map(String::as_str).collect();
    let (sink, stats) = start_and_write(&cfg, dir.path(), &refs);
    server.wait_for(30, "a retry after 401", |r| writes(r).len() >= 2);
    assert!(stats.retried.load(Ordering::Relaxed) >= 1);
    assert_eq!(
        stats.backlog_batches.load(Ordering::Relaxed),
        5,
        "nothing is dropped on 401"
    );
    assert_eq!(stats.delivered_lines.load(Ordering::Relaxed), 0);
    // Fix the token and restart the output (what SIGHUP does): the spool is delivered.
    drop(sink);
    token_file(dir.path(), "good");
    let (_sink, stats) = start_and_write(&cfg, dir.path(), &[]);
    wait_stat(30, "delivery with the fixed token", || {
        stats.backlog_batches.load(Ordering::Relaxed) == 0
    });
    let good: Vec<String> = writes(&server.requests())
        .into_iter()
        .filter(|r| r.header("authorization") == Some("Bearer good"))
        .map(Request::body)
        .collect();
    assert_eq!(good.concat(), batches.concat(), "every line once, in order");
}

#[test]
fn a_413_splits_the_request_and_a_single_oversized_line_is_dropped() {
    // The server takes at most 10 lines per request and no line with "huge" in it.
    let server = Capture::start(|r| {
        let body = r.body();
        if body.lines().count() > 10 || body.contains("huge") {
            Reply::json(413, r#"{"error":"Request Entity Too Large"}"#)
        } else {
            Reply::status(204)
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = output(&format!(
        "url = \"{}\"\napi = \"v1\"\ndatabase = \"d\"\nflush_interval = \"0s\"\nbatch_max_lines = 1000\n",
        server.url()
    ));
    let mut lines: String = (0..40).map(|i| format!("m f={i}i {i}\n")).collect();
    lines.push_str("m huge=1i 99\n");
    let (_sink, stats) = start_and_write(&cfg, dir.path(), &[&lines]);
    wait_stat(30, "the backlog to clear", || {
        stats.backlog_batches.load(Ordering::Relaxed) == 0
    });
    let stored: String = writes(&server.requests())
        .into_iter()
        .map(Request::body)
        .filter(|b| b.lines().count() <= 10 && !b.contains("huge"))
        .collect();
    let expected: String = (0..40).map(|i| format!("m f={i}i {i}\n")).collect();
    assert_eq!(
        stored, expected,
        "every line once, in order, in smaller requests"
    );
    assert_eq!(
        stats.rejected_lines.load(Ordering::Relaxed),
        1,
        "the huge line"
    );
    assert_eq!(stats.delivered_lines.load(Ordering::Relaxed), 40);
}

#[test]
fn a_v3_partial_write_is_not_resent() {
    let answer = r#"{"error":"partial write of line protocol occurred","data":[{"error_message":"invalid column type for column 'f', expected iox::column_type::field::integer, got iox::column_type::field::float","line_number":2,"original_line":"m f=1.5 2"}]}"#;
    let server = Capture::start(move |_| Reply::json(400, answer));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = output(&format!(
        "url = \"{}\"\ndatabase = \"d\"\nflush_interval = \"0s\"\n",
        server.url()
    ));
    let (_sink, stats) = start_and_write(&cfg, dir.path(), &["m f=1i 1\nm f=1.5 2\nm f=3i 3\n"]);
    wait_stat(30, "the request to be settled", || {
        stats.backlog_batches.load(Ordering::Relaxed) == 0
    });
    assert_eq!(stats.rejected_lines.load(Ordering::Relaxed), 1);
    assert_eq!(stats.delivered_lines.load(Ordering::Relaxed), 2);
    assert_eq!(stats.retried.load(Ordering::Relaxed), 0);
    // A later write goes out; the refused one never again.
    let w = writes(&server.requests()).len();
    assert_eq!(w, 1);
}

#[test]
fn a_503_with_retry_after_is_retried_then_delivered() {
    let server = Capture::start(|_| Reply::status(503).with_header("Retry-After", "1"));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = output(&format!(
        "url = \"{}\"\ndatabase = \"d\"\nflush_interval = \"0s\"\n",
        server.url()
    ));
    let (_sink, stats) = start_and_write(&cfg, dir.path(), &["m f=1i 1\n", "m f=2i 2\n"]);
    server.wait_for(30, "a retry", |r| writes(r).len() >= 2);
    assert_eq!(stats.backlog_batches.load(Ordering::Relaxed), 2);
    server.respond_with(|_| Reply::status(204));
    wait_stat(30, "delivery once the server is back", || {
        stats.backlog_batches.load(Ordering::Relaxed) == 0
    });
    assert!(stats.retried.load(Ordering::Relaxed) >= 2);
    let last = writes(&server.requests())
        .last()
        .map(|r| r.body())
        .unwrap_or_default();
    assert_eq!(last, "m f=1i 1\nm f=2i 2\n");
}
