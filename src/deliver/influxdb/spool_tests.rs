//! Spool: order, bounds, crash snapshots, torn WAL tails and corrupt files.

use super::*;

fn opts(max_bytes: u64) -> SpoolOptions {
    SpoolOptions {
        max_bytes,
        max_age: None,
        sync: SpoolSync::Full,
    }
}

fn body(tag: &str, n: usize, pad: usize) -> String {
    (0..n)
        .map(|i| format!("m,t={tag} f={i}i,p=\"{}\" {i}\n", "x".repeat(pad)))
        .collect()
}

fn append(s: &mut Spool, created_ns: i64, text: &str) -> u64 {
    s.append(&[NewRow {
        created_ns,
        body: text,
        lines: text.lines().count() as u64,
        precision: Precision::Seconds,
    }])
    .expect("append")
}

fn open(path: &Path, o: SpoolOptions) -> (Spool, Option<Salvage>, Arc<DeliveryStats>) {
    let stats = Arc::new(DeliveryStats::default());
    let (s, salvage) = Spool::open(path, o, Arc::clone(&stats)).expect("open");
    (s, salvage, stats)
}

fn bodies(s: &Spool) -> Vec<String> {
    s.oldest(u64::MAX, u64::MAX)
        .expect("read")
        .0
        .into_iter()
        .map(|r| r.body)
        .collect()
}

#[test]
fn rows_come_back_in_order_within_limits_and_go_after_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, salvage, stats) = open(&dir.path().join("s.sqlite"), opts(1 << 20));
    assert!(salvage.is_none());
    let (a, b, c) = (body("a", 3, 0), body("b", 2, 0), body("c", 4, 0));
    append(&mut s, 10, &a);
    // One transaction for several rows.
    s.append(&[
        NewRow {
            created_ns: 11,
            body: &b,
            lines: 2,
            precision: Precision::Seconds,
        },
        NewRow {
            created_ns: 12,
            body: &c,
            lines: 4,
            precision: Precision::Seconds,
        },
    ])
    .expect("group");
    assert_eq!(stats.backlog_batches.load(Ordering::Relaxed), 3);
    assert_eq!(
        stats.backlog_bytes.load(Ordering::Relaxed),
        (a.len() + b.len() + c.len()) as u64
    );
    assert_eq!(stats.oldest_ns.load(Ordering::Relaxed), 10);
    // Limits: 5 lines fit a and b, not c; a single row over the limit still comes alone.
    let (rows, precision_break) = s.oldest(5, u64::MAX).expect("read");
    assert!(!precision_break);
    assert_eq!(
        rows.iter().map(|r| r.body.clone()).collect::<Vec<_>>(),
        [a.clone(), b.clone()]
    );
    assert_eq!(s.oldest(1, 1).expect("read").0.len(), 1);
    // The sender's own connection sees the same rows and deletes them.
    let reader = Spool::attach(s.path(), opts(1 << 20), Arc::clone(&stats)).expect("attach");
    assert_eq!(reader.delete(rows[0].id, rows[1].id).expect("delete"), 5);
    assert_eq!(bodies(&s), std::slice::from_ref(&c));
    assert_eq!(stats.backlog_batches.load(Ordering::Relaxed), 1);
    assert_eq!(stats.backlog_bytes.load(Ordering::Relaxed), c.len() as u64);
    assert_eq!(stats.oldest_ns.load(Ordering::Relaxed), 12);
    // Deleting again (a row dropped meanwhile) counts nothing twice.
    assert_eq!(reader.delete(rows[0].id, rows[1].id).expect("delete"), 0);
    assert_eq!(stats.backlog_batches.load(Ordering::Relaxed), 1);
    // Reopening resumes the backlog.
    drop((s, reader));
    let (s, _, stats) = open(&dir.path().join("s.sqlite"), opts(1 << 20));
    assert_eq!(bodies(&s), [c]);
    assert_eq!(stats.backlog_batches.load(Ordering::Relaxed), 1);
}

#[test]
fn a_full_spool_drops_the_oldest_rows_and_counts_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _, stats) = open(&dir.path().join("s.sqlite"), opts(1 << 20));
    let rows: Vec<String> = (0..15)
        .map(|i| body(&format!("r{i}"), 10, 10_000))
        .collect();
    let row_bytes = rows[0].len() as u64;
    let mut dropped = 0;
    for (i, r) in rows.iter().enumerate() {
        dropped += append(&mut s, i as i64 + 1, r);
    }
    let kept = bodies(&s);
    let cap = (1u64 << 20) / row_bytes;
    assert_eq!(kept.len() as u64, cap, "as many rows as fit in 1 MiB");
    assert_eq!(
        kept,
        rows[rows.len() - kept.len()..],
        "the newest are kept, in order"
    );
    assert_eq!(dropped, (15 - cap) * 10);
    assert_eq!(stats.dropped_lines.load(Ordering::Relaxed), dropped);
    assert!(stats.backlog_bytes.load(Ordering::Relaxed) <= 1 << 20);
    assert_eq!(stats.backlog_batches.load(Ordering::Relaxed), cap);
}

#[test]
fn rows_past_the_age_bound_are_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.sqlite");
    let now = now_ns();
    // Accepted an hour ago by a run without the bound.
    let (mut s, _, _) = open(&path, opts(1 << 20));
    append(&mut s, now - 3_600_000_000_000, &body("old", 2, 0));
    drop(s);
    let mut o = opts(1 << 20);
    o.max_age = Some(Duration::from_secs(60));
    let (mut s, _, stats) = open(&path, o);
    // The next commit applies the bound.
    let dropped = append(&mut s, now, &body("new", 3, 0));
    assert_eq!(dropped, 2);
    assert_eq!(bodies(&s), [body("new", 3, 0)]);
    assert_eq!(stats.dropped_lines.load(Ordering::Relaxed), 2);
    assert_eq!(stats.oldest_ns.load(Ordering::Relaxed), now);
}

/// Copies the spool's files as a crash would leave them (the connection still open).
fn snapshot(from: &Path, to: &Path) {
    std::fs::copy(from, to).expect("copy db");
    let wal = sibling(from, "-wal");
    if wal.exists() {
        std::fs::copy(&wal, sibling(to, "-wal")).expect("copy wal");
    }
}

#[test]
fn a_crash_snapshot_opens_with_every_committed_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("live.sqlite");
    let (mut s, _, _) = open(&live, opts(1 << 20));
    let rows: Vec<String> = (0..20).map(|i| body(&format!("c{i}"), 5, 20)).collect();
    for (i, r) in rows.iter().enumerate() {
        append(&mut s, i as i64 + 1, r);
    }
    let crashed = dir.path().join("crashed.sqlite");
    snapshot(&live, &crashed);
    assert!(
        sibling(&crashed, "-wal").exists(),
        "the commits are in the WAL"
    );
    let (c, salvage, stats) = open(&crashed, opts(1 << 20));
    assert!(salvage.is_none());
    assert_eq!(bodies(&c), rows);
    assert_eq!(stats.backlog_batches.load(Ordering::Relaxed), 20);
}

#[test]
fn a_torn_wal_tail_loses_only_the_unfinished_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("live.sqlite");
    let (mut s, _, _) = open(&live, opts(1 << 20));
    let first = body("first", 5, 20);
    append(&mut s, 1, &first);
    let wal = sibling(&live, "-wal");
    let after_first = std::fs::metadata(&wal).expect("wal").len();
    append(&mut s, 2, &body("second", 5, 20));
    let crashed = dir.path().join("crashed.sqlite");
    snapshot(&live, &crashed);
    // Cut the WAL in the middle of the second commit's frames: a write torn by a crash.
    let wal_len = std::fs::metadata(sibling(&crashed, "-wal"))
        .expect("wal")
        .len();
    assert!(wal_len > after_first + 100, "{wal_len} {after_first}");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(sibling(&crashed, "-wal"))
        .expect("open wal");
    f.set_len(after_first + (wal_len - after_first) / 2)
        .expect("truncate");
    drop(f);
    let (c, salvage, _) = open(&crashed, opts(1 << 20));
    assert!(
        salvage.is_none(),
        "a torn tail is not corruption: {salvage:?}"
    );
    assert_eq!(bodies(&c), [first]);
}

#[test]
fn a_corrupt_file_is_moved_aside_and_its_readable_rows_salvaged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.sqlite");
    let rows: Vec<String> = (0..400).map(|i| body(&format!("k{i:03}"), 2, 60)).collect();
    {
        let (mut s, _, _) = open(&path, opts(1 << 30));
        for (i, r) in rows.iter().enumerate() {
            append(&mut s, i as i64 + 1, r);
        }
    } // closed: checkpointed into the main file
    let mut bytes = std::fs::read(&path).expect("read");
    let page = 4096;
    let pages = bytes.len() / page;
    assert!(pages > 20, "{pages} pages");
    let bad = pages / 2;
    bytes[bad * page..(bad + 1) * page].fill(0xA5);
    std::fs::write(&path, &bytes).expect("corrupt");

    let (s, salvage, stats) = open(&path, opts(1 << 30));
    let salvage = salvage.expect("corruption is detected and reported");
    assert!(salvage.moved_to.exists(), "{salvage:?}");
    assert!(!salvage.reason.is_empty());
    let kept = bodies(&s);
    assert_eq!(kept.len() as u64, salvage.rows);
    assert!(
        kept.len() > rows.len() / 2 && kept.len() < rows.len(),
        "most rows, not all: {} of {}",
        kept.len(),
        rows.len()
    );
    // Salvaged rows are intact and in their original order.
    let mut it = rows.iter();
    for k in &kept {
        assert!(it.any(|r| r == k), "row out of order or damaged: {k:?}");
    }
    assert_eq!(stats.backlog_batches.load(Ordering::Relaxed), salvage.rows);
    // The fresh spool is healthy and takes new rows.
    drop(s);
    let (mut s, again, _) = open(&path, opts(1 << 30));
    assert!(again.is_none());
    append(&mut s, 1, "m f=1i 1\n");
}

#[test]
fn a_file_that_is_not_a_database_is_replaced_with_a_clear_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.sqlite");
    std::fs::write(&path, "this is not SQLite\n".repeat(500)).expect("write");
    let (mut s, salvage, _) = open(&path, opts(1 << 20));
    let salvage = salvage.expect("reported");
    assert_eq!(salvage.rows, 0);
    assert!(
        salvage.reason.contains("not a database"),
        "{}",
        salvage.reason
    );
    assert_eq!(
        std::fs::read_to_string(&salvage.moved_to).expect("kept aside"),
        "this is not SQLite\n".repeat(500)
    );
    append(&mut s, 1, "m f=1i 1\n");
    assert_eq!(s.count().expect("count"), 1);
}

#[test]
fn an_emptied_spool_gives_its_space_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.sqlite");
    let (mut s, _, _) = open(&path, opts(1 << 30));
    let rows: Vec<String> = (0..50).map(|i| body(&format!("g{i}"), 100, 100)).collect();
    for r in &rows {
        append(&mut s, 1, r);
    }
    let size = |p: &Path| {
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
            + std::fs::metadata(sibling(p, "-wal"))
                .map(|m| m.len())
                .unwrap_or(0)
    };
    let full = size(&path);
    assert!(full > 500_000, "{full}");
    let (all, _) = s.oldest(u64::MAX, u64::MAX).expect("read");
    s.delete(all[0].id, all[all.len() - 1].id).expect("delete");
    let empty = size(&path);
    assert!(empty < full / 10, "{empty} bytes left of {full}");
}

#[test]
fn a_request_holds_rows_of_one_precision_in_acceptance_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut s, _, _) = open(&dir.path().join("s.sqlite"), opts(1 << 20));
    let rows = [
        ("a f=1i 1700000000\n", Precision::Seconds),
        ("b f=1i 1700000001\n", Precision::Seconds),
        ("c f=1i 1700000002000\n", Precision::Millis),
        ("d f=1i 1700000003\n", Precision::Seconds),
    ];
    for (body, precision) in rows {
        s.append(&[NewRow {
            created_ns: 1,
            body,
            lines: 1,
            precision,
        }])
        .expect("append");
    }
    let mut sent = Vec::new();
    loop {
        let (batch, precision_break) = s.oldest(100, u64::MAX).expect("read");
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            break;
        };
        assert!(batch.iter().all(|r| r.precision == first.precision));
        let more = s.count().expect("count") > batch.len() as u64;
        assert_eq!(
            precision_break, more,
            "a break only when rows of another precision wait"
        );
        sent.push((
            batch.iter().map(|r| r.body.as_str()).collect::<String>(),
            first.precision,
        ));
        s.delete(first.id, last.id).expect("delete");
    }
    assert_eq!(
        sent,
        [
            (
                "a f=1i 1700000000\nb f=1i 1700000001\n".to_owned(),
                Precision::Seconds
            ),
            ("c f=1i 1700000002000\n".to_owned(), Precision::Millis),
            ("d f=1i 1700000003\n".to_owned(), Precision::Seconds),
        ]
    );
}

#[test]
fn a_spool_from_before_the_precision_column_is_read_by_timestamp_magnitude() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.sqlite");
    {
        let conn = Connection::open(&path).expect("create");
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE batch (id INTEGER PRIMARY KEY AUTOINCREMENT, created_ns INTEGER NOT NULL,
                 lines INTEGER NOT NULL, bytes INTEGER NOT NULL, body BLOB NOT NULL);",
        )
        .expect("old schema");
        for body in [
            "m f=1i 1700000000\n",
            "m f=1i 1700000000123\n",
            "m f=1i 1700000000123456\n",
            "m f=1i 1700000000123456789\n",
        ] {
            conn.execute(
                "INSERT INTO batch (created_ns, lines, bytes, body) VALUES (1, 1, ?1, ?2)",
                params![body.len() as i64, body.as_bytes()],
            )
            .expect("old row");
        }
    }
    let (s, salvage, stats) = open(&path, opts(1 << 20));
    assert!(salvage.is_none(), "an old spool is not corrupt");
    assert_eq!(stats.backlog_batches.load(Ordering::Relaxed), 4);
    let mut seen = Vec::new();
    loop {
        let (batch, _) = s.oldest(100, u64::MAX).expect("read");
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            break;
        };
        seen.push(first.precision);
        s.delete(first.id, last.id).expect("delete");
    }
    assert_eq!(
        seen,
        [
            Precision::Seconds,
            Precision::Millis,
            Precision::Micros,
            Precision::Nanos
        ]
    );
}

#[test]
fn a_recount_while_the_sink_commits_leaves_the_counters_equal_to_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.sqlite");
    let opts = SpoolOptions {
        sync: SpoolSync::Normal,
        ..opts(1 << 30)
    };
    let (mut sink, _, stats) = open(&path, opts);
    let reader = Spool::attach(&path, opts, Arc::clone(&stats)).expect("attach");
    let recounts = std::thread::spawn(move || {
        for _ in 0..300 {
            reader.recount_backlog().expect("recount");
        }
    });
    for i in 0..300 {
        append(&mut sink, i, "m f=1i 1\n");
    }
    recounts.join().expect("recount thread");
    assert_eq!(
        stats.backlog_batches.load(Ordering::Relaxed),
        sink.count().expect("count")
    );
    assert_eq!(stats.backlog_bytes.load(Ordering::Relaxed), 300 * 9);
}
