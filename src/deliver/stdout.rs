//! The `stdout` sink: line protocol on standard output (for pipes, `--test`-style runs and
//! journald).

use std::io::Write;

use super::{Batch, Sink};

/// Writes batches to standard output.
#[derive(Debug, Default)]
pub struct StdoutSink;

impl Sink for StdoutSink {
    fn name(&self) -> String {
        "stdout".into()
    }

    fn write(&mut self, batch: &Batch) -> std::io::Result<()> {
        std::io::stdout().lock().write_all(batch.lines.as_bytes())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}
