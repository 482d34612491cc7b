//! An InfluxDB output whose spool cannot be written (its file system is full): lines wait in
//! memory up to 64 MiB, the oldest are then dropped, counted in `memory_dropped_lines` (and
//! `dropped_lines`) and logged, and once the disk has room again the kept lines are spooled.
//!
//! The full file system is a 100 MiB tmpfs the test mounts (root only; CI runs as root) and
//! unmounts when done.

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use support::capture::{Capture, Reply};
use vmtel::deliver::influxdb::{InfluxOutput, InfluxSink};
use vmtel::deliver::text::TextSink;
use vmtel::deliver::Sink;
use vmtel::encode::Encoder;

/// A tmpfs mounted for one test, unmounted (lazily, so an open file cannot keep it) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(Tmpfs(at.to_owned()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Log lines written by the code under test on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    }
}

/// Fills the file system holding `dir` until a write fails for lack of space.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.flush();
    path
}

#[test]
fn an_unwritable_spool_keeps_64_mib_in_memory_then_drops_counts_and_logs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let _fs = match Tmpfs::mount(&tmp.path().join("state"), "100m") {
        Ok(m) => m,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("cannot mount a tmpfs (this test needs root): {e}")
        }
        Err(e) => {
            eprintln!("skipped: cannot mount a tmpfs (this test needs root): {e}");
            return;
        }
    };
    let state = tmp.path().join("state");
    // The server never takes anything, so every accepted line stays with vmtel.
    let server = Capture::start(|_| Reply::status(503).with_header("Retry-After", "600"));
    let cfg: InfluxOutput = toml::from_str(&format!(
        "url = \"{}\"\ndatabase = \"d\"\nflush_interval = \"0s\"\n",
        server.url()
    ))
    .expect("output");
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut sink = InfluxSink::start(&cfg, &state, &Encoder::default()).expect("sink");
    let stats = sink.delivery_stats().expect("stats");
    let filler = fill(&state);
    // 80 batches of 1 MiB (1,024 lines of 1 KiB): more than the 64 MiB kept in memory.
    let pad = "x".repeat(1000);
    let mut failures = 0;
    for b in 0..80u64 {
        let lines: String = (0..1024u64)
            .map(|i| format!("m,b={b} i={i}i,p=\"{pad}\" {}\n", 1_700_000_000 + b))
            .collect();
        if sink
            .write_lines(&lines)
            .and_then(|()| sink.flush())
            .is_err()
        {
            failures += 1;
        }
    }
    assert!(
        failures > 0,
        "the full file system refused the spool's writes"
    );
    let dropped = stats.memory_dropped_lines.load(Ordering::Relaxed);
    assert!(
        dropped >= 1024,
        "lines beyond 64 MiB are dropped: {dropped}"
    );
    assert!(
        dropped <= 20 * 1024,
        "only what exceeds 64 MiB is dropped: {dropped}"
    );
    assert!(stats.dropped_lines.load(Ordering::Relaxed) >= dropped);
    let text = log.text();
    let reports = text
        .lines()
        .filter(|l| l.contains("the spool cannot be written"))
        .count();
    assert_eq!(reports, 1, "one summary for the episode so far:\n{text}");
    assert!(text.contains("dropped the oldest"), "{text}");
    // Room again: every line kept in memory is spooled; none is lost without being counted.
    std::fs::remove_file(filler).expect("free the space");
    sink.flush()
        .expect("the spool takes the lines once there is room");
    let conn = rusqlite::Connection::open(state.join(cfg.spool_file_name())).expect("spool");
    let spooled: i64 = conn
        .query_row("SELECT COALESCE(sum(lines), 0) FROM batch", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(
        spooled as u64 + dropped,
        80 * 1024,
        "every line spooled or counted"
    );
    drop(sink);
}
