//! InfluxDB outputs against a local capture server: the exact request of each API (path, query,
//! headers, gzip body), and answers a real server cannot be made to give on demand: 401 until
//! the token is fixed, 413, a proxy's HTML 400, refusal bodies, 503 with `Retry-After`, an
//! outage while the spool drops rows. (The real InfluxDB 3 server is in
//! `delivery_influxdb3.rs`.)

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::capture::{Capture, Reply, Request};
use support::sink::{output, start_and_write, token_file};
use vmtel::deliver::batch::{Payload, VmChunk};
use vmtel::deliver::influxdb::DeliveryStats;
use vmtel::deliver::influxdb::InfluxSink;
use vmtel::deliver::text::TextSink;
use vmtel::deliver::{Batch, Sink};
use vmtel::encode::Encoder;
use vmtel::encode::Precision;
use vmtel::model::{DomainSample, Features, HostSample};

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

#[test]
fn v3_request_has_the_documented_path_query_headers_and_gzip_body() {
    let server = Capture::start(|_| Reply::status(204));
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = token_file(dir.path(), "s3cr3t-token");
    let cfg = output(&format!(
        "url = \"{}/\"\ndatabase = \"vm tel&x\"\ntoken_file = \"{tok}\"\nprecision = \"ms\"\nflush_interval = \"0s\"\n",
        server.url()
    ));
    // A typed batch, encoded by the output in its own precision (ms; the global one is s).
    let ts = 1_700_000_000 * 1_000_000_000;
    let vm = DomainSample {
        name: "a=b".into(),
        state: Some(1),
        ..DomainSample::default()
    };
    let features = Features {
        cpu_pct: Some(12.5),
        ..Features::default()
    };
    let sample = HostSample {
        host: "h 1".into(),
        timestamp_ns: ts,
        domains: vec![vm],
    };
    let batch = Batch {
        source: "test".into(),
        timestamp_ns: ts,
        payload: Payload::Vms(VmChunk::new(sample, vec![Some(features)], None)),
        end_of_cycle: true,
    };
    let mut sink = InfluxSink::start(&cfg, dir.path(), &Encoder::default()).expect("sink");
    sink.write(&batch).expect("write");
    sink.flush().expect("flush");
    let stats = sink.delivery_stats().expect("stats");
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
        "vm_metrics,host=h\\ 1,name=a\\=b state=1i 1700000000000\n\
         vm_totals,host=h\\ 1,name=a\\=b state=1i 1700000000000\n\
         vm_features,host=h\\ 1,name=a\\=b cpu_pct=12.5 1700000000000\n",
        "the gzip body decompresses to exactly the lines, timestamps in the output's ms"
    );
    wait_stat(10, "the rows to be deleted", || {
        stats.backlog_batches.load(Ordering::Relaxed) == 0
    });
    assert_eq!(stats.delivered_lines.load(Ordering::Relaxed), 3);
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
    let (_sink, stats) = start_and_write::<&str>(&cfg, dir.path(), &[]);
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

#[test]
fn a_400_that_is_not_an_influxdb_refusal_keeps_the_lines_and_retries() {
    // A proxy or WAF in front of the server answers 400 with its own page for a while.
    let server = Capture::start(|_| Reply {
        status: 400,
        headers: vec![("Content-Type".into(), "text/html".into())],
        body: "<html><body><h1>400 Bad Request</h1></body></html>".into(),
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = output(&format!(
        "url = \"{}\"\ndatabase = \"d\"\nflush_interval = \"0s\"\n",
        server.url()
    ));
    let lines = "m f=1i 1\nm f=2i 2\nm f=3i 3\n";
    let (_sink, stats) = start_and_write(&cfg, dir.path(), &[lines]);
    server.wait_for(30, "a retry after the proxy's 400", |r| {
        writes(r).len() >= 2
    });
    assert_eq!(stats.backlog_batches.load(Ordering::Relaxed), 1, "kept");
    assert_eq!(stats.delivered_lines.load(Ordering::Relaxed), 0);
    assert_eq!(stats.rejected_lines.load(Ordering::Relaxed), 0);
    server.respond_with(|_| Reply::status(204));
    wait_stat(30, "delivery once the proxy lets it through", || {
        stats.backlog_batches.load(Ordering::Relaxed) == 0
    });
    assert_eq!(stats.delivered_lines.load(Ordering::Relaxed), 3);
    assert_eq!(stats.rejected_lines.load(Ordering::Relaxed), 0);
    assert_eq!(
        writes(&server.requests()).last().map(|r| r.body()),
        Some(lines.to_owned())
    );
}

#[test]
fn a_whole_request_refusal_counts_every_line_as_rejected() {
    // InfluxDB 2 refuses a whole request that holds one bad line.
    let server = Capture::start(|_| {
        Reply::json(
            400,
            r#"{"code":"invalid","message":"unable to parse 'm f= 2': missing field value"}"#,
        )
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = output(&format!(
        "url = \"{}\"\napi = \"v2\"\nbucket = \"b\"\norg = \"o\"\nflush_interval = \"0s\"\n",
        server.url()
    ));
    let (_sink, stats) = start_and_write(&cfg, dir.path(), &["m f=1i 1\nm f= 2\nm f=3i 3\n"]);
    wait_stat(30, "the request to be settled", || {
        stats.backlog_batches.load(Ordering::Relaxed) == 0
    });
    assert_eq!(stats.rejected_lines.load(Ordering::Relaxed), 3);
    assert_eq!(stats.delivered_lines.load(Ordering::Relaxed), 0);
    assert_eq!(writes(&server.requests()).len(), 1, "not resent");
}

#[test]
fn spooled_rows_are_sent_with_the_precision_they_were_written_in() {
    // The server is down while the first run spools a cycle in seconds, then the operator
    // changes precision to ms and restarts.
    let server = Capture::start(|_| Reply::status(503).with_header("Retry-After", "600"));
    let dir = tempfile::tempdir().expect("tempdir");
    let base = format!(
        "url = \"{}\"\nname = \"out\"\ndatabase = \"d\"\nflush_interval = \"0s\"\n",
        server.url()
    );
    let (sink, stats) = start_and_write(&output(&base), dir.path(), &["m f=1i 1700000000\n"]);
    server.wait_for(30, "the first attempt", |r| !writes(r).is_empty());
    assert_eq!(stats.backlog_batches.load(Ordering::Relaxed), 1);
    drop(sink);
    server.respond_with(|_| Reply::status(204));
    let ms = output(&format!("{base}precision = \"ms\"\n"));
    let (_sink, stats) = start_and_write(&ms, dir.path(), &["m f=2i 1700000010000\n"]);
    wait_stat(30, "both rows delivered", || {
        stats.backlog_batches.load(Ordering::Relaxed) == 0
    });
    let sent: Vec<(String, String)> = writes(&server.requests())
        .into_iter()
        .skip(1)
        .map(|r| {
            (
                r.query.get("precision").cloned().unwrap_or_default(),
                r.body(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("s".to_owned(), "m f=1i 1700000000\n".to_owned()),
            ("ms".to_owned(), "m f=2i 1700000010000\n".to_owned()),
        ],
        "each row with the precision it was written in"
    );
}

#[test]
fn rows_dated_in_the_future_wait_at_most_flush_interval() {
    // After the clock was stepped back by ten minutes, the spooled rows look accepted in the
    // future; they still go out after flush_interval, not after ten minutes.
    let server = Capture::start(|_| Reply::status(204));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = output(&format!(
        "url = \"{}\"\ndatabase = \"d\"\nflush_interval = \"1s\"\n",
        server.url()
    ));
    {
        let stats = Arc::new(DeliveryStats::default());
        let opts = vmtel::deliver::influxdb::spool::SpoolOptions {
            max_bytes: 1 << 30,
            max_age: None,
            sync: Default::default(),
        };
        let path = dir.path().join(cfg.spool_file_name());
        let (mut spool, _) =
            vmtel::deliver::influxdb::spool::Spool::open(&path, opts, stats).expect("spool");
        let ahead = vmtel::collect::wall_ns() + 600_000_000_000;
        spool
            .append(&[vmtel::deliver::influxdb::spool::NewRow {
                created_ns: ahead,
                body: "m f=1i 1700000000\n",
                lines: 1,
                precision: Precision::Seconds,
            }])
            .expect("append");
    }
    let (_sink, stats) = start_and_write::<&str>(&cfg, dir.path(), &[]);
    wait_stat(60, "the future-dated row to be sent", || {
        stats.backlog_batches.load(Ordering::Relaxed) == 0
    });
    assert_eq!(writes(&server.requests())[0].body(), "m f=1i 1700000000\n");
}

#[test]
fn a_dropping_spool_probes_the_servers_health_and_resumes_when_it_answers() {
    let server = Capture::start(|_| Reply::status(503));
    let dir = tempfile::tempdir().expect("tempdir");
    // A small spool (below what check-config allows) so that it fills at once.
    let cfg = output(&format!(
        "url = \"{}\"\ndatabase = \"d\"\nflush_interval = \"0s\"\nspool_max_size = \"8 KiB\"\n",
        server.url()
    ));
    let (mut sink, stats) = start_and_write(&cfg, dir.path(), &["m f=0i 0\n"]);
    server.wait_for(30, "two failed attempts", |r| writes(r).len() >= 2);
    let probes = |r: &[Request]| r.iter().filter(|r| r.path == "/health").count();
    assert_eq!(
        probes(&server.requests()),
        0,
        "no probing while the spool has room"
    );
    // The outage goes on until the spool drops rows.
    let pad = "x".repeat(1000);
    for i in 1..=20 {
        sink.write_lines(&format!("m f={i}i,p=\"{pad}\" {i}\n"))
            .expect("write");
        sink.flush().expect("flush");
    }
    assert!(
        stats.dropped_lines.load(Ordering::Relaxed) > 0,
        "the spool dropped rows"
    );
    server.wait_for(60, "a health probe", |r| probes(r) > 0);
    server.respond_with(|_| Reply::status(204));
    wait_stat(60, "delivery of what the spool kept", || {
        stats.backlog_batches.load(Ordering::Relaxed) == 0
    });
    let reqs = server.requests();
    let last_probe = reqs
        .iter()
        .rposition(|r| r.path == "/health")
        .expect("a probe");
    assert!(
        reqs[last_probe..].iter().any(|r| r.method == "POST"),
        "the write follows the probe"
    );
    assert!(stats.delivered_lines.load(Ordering::Relaxed) > 0);
}

#[test]
fn the_smallest_size_refused_with_413_is_kept() {
    // The server takes requests of at most 10,000 bytes.
    let server = Capture::start(|r| {
        if r.body().len() > 10_000 {
            Reply::json(413, r#"{"error":"Request Entity Too Large"}"#)
        } else {
            Reply::status(204)
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = output(&format!(
        "url = \"{}\"\ndatabase = \"d\"\nflush_interval = \"0s\"\n",
        server.url()
    ));
    let line = |i: usize, len: usize| {
        let head = format!("m f={i}i,p=\"");
        let tail = format!("\" {i}\n");
        format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()))
    };
    // 4 lines of 3,750 bytes then 4 of 4,500: the request (33,000) is refused, then its first
    // half (15,000: learned 7,500), then its second half (18,000: half of it is 9,000).
    let first: String = (0..4)
        .map(|i| line(i, 3750))
        .chain((4..8).map(|i| line(i, 4500)))
        .collect();
    let (mut sink, stats) = start_and_write(&cfg, dir.path(), &[&first]);
    wait_stat(30, "the first request to be delivered in parts", || {
        stats.backlog_batches.load(Ordering::Relaxed) == 0
    });
    let refused: Vec<usize> = writes(&server.requests())
        .into_iter()
        .map(|r| r.body().len())
        .filter(|&n| n > 10_000)
        .collect();
    assert_eq!(refused, [33_000, 15_000, 18_000]);
    let seen = writes(&server.requests()).len();
    // Later rows of 4,500 bytes each: a request holds one, not two (9,000 > 7,500).
    for i in 8..14 {
        sink.write_lines(&line(i, 4500)).expect("write");
    }
    sink.flush().expect("flush");
    wait_stat(30, "the later rows", || {
        stats.backlog_batches.load(Ordering::Relaxed) == 0
    });
    let later: Vec<usize> = writes(&server.requests())[seen..]
        .iter()
        .map(|r| r.body().len())
        .collect();
    assert!(!later.is_empty());
    assert!(
        later.iter().all(|&n| n <= 7_500),
        "requests stay under half the smallest refused size: {later:?}"
    );
    assert_eq!(stats.delivered_lines.load(Ordering::Relaxed), 14);
}
