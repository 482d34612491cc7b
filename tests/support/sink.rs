//! An InfluxDB output driven in process, for the delivery tests: its config from TOML, batches
//! of literal lines, and a token file.

use std::path::Path;
use std::sync::Arc;

use vmtel::deliver::influxdb::{DeliveryStats, InfluxOutput, InfluxSink};
use vmtel::deliver::{Batch, Sink};
use vmtel::encode::Precision;

/// An `[[outputs.influxdb]]` entry from its TOML text.
pub fn output(toml_text: &str) -> InfluxOutput {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"))
}

/// A batch (the end of a cycle) holding `lines`.
pub fn batch(lines: &str) -> Batch {
    Batch {
        end_of_cycle: true,
        source: "test".into(),
        timestamp_ns: 0,
        lines: lines.into(),
        line_count: lines.lines().count(),
    }
}

/// Starts a sink for `cfg` in `state` (lines encoded in seconds), writes each of `batches`
/// and flushes (commits to the spool).
pub fn start_and_write<S: AsRef<str>>(
    cfg: &InfluxOutput,
    state: &Path,
    batches: &[S],
) -> (InfluxSink, Arc<DeliveryStats>) {
    let mut sink = InfluxSink::start(cfg, state, Precision::Seconds).expect("start sink");
    for b in batches {
        sink.write(&batch(b.as_ref())).expect("write");
    }
    sink.flush().expect("flush");
    let stats = sink.delivery_stats().expect("stats");
    (sink, stats)
}

/// Writes `token` to `dir/token` and returns the file's path.
pub fn token_file(dir: &Path, token: &str) -> String {
    let p = dir.join("token");
    std::fs::write(&p, format!("{token}\n")).expect("token file");
    p.display().to_string()
}
