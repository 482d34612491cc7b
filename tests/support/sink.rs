//! An InfluxDB output driven in process, for the delivery tests: its config from TOML, batches
//! of literal lines (its text entry point), and a token file.

use std::path::Path;
use std::sync::Arc;

use vmtel::deliver::influxdb::{DeliveryStats, InfluxOutput, InfluxSink};
use vmtel::deliver::text::TextSink;
use vmtel::deliver::Sink;
use vmtel::encode::Encoder;

/// An `[[outputs.influxdb]]` entry from its TOML text.
pub fn output(toml_text: &str) -> InfluxOutput {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"))
}

/// Starts a sink for `cfg` in `state`, writes each of `batches` (lines with timestamps in the
/// output's precision: seconds unless it sets one) and flushes (commits to the spool).
pub fn start_and_write<S: AsRef<str>>(
    cfg: &InfluxOutput,
    state: &Path,
    batches: &[S],
) -> (InfluxSink, Arc<DeliveryStats>) {
    let mut sink = InfluxSink::start(cfg, state, &Encoder::default()).expect("start sink");
    for b in batches {
        sink.write_lines(b.as_ref()).expect("write");
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
