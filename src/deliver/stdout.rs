//! The `stdout` sink: line protocol on standard output (for pipes, `--test`-style runs and
//! journald).

use std::io::Write;

use super::text::TextEncoder;
use super::{Batch, Sink, Written};
use crate::encode::Encoder;

/// Writes batches to standard output.
#[derive(Debug, Default)]
pub struct StdoutSink {
    text: TextEncoder,
}

impl StdoutSink {
    /// Writes lines encoded with `encoder`.
    pub fn new(encoder: Encoder) -> StdoutSink {
        StdoutSink {
            text: TextEncoder::new(encoder),
        }
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> String {
        "stdout".into()
    }

    fn write(&mut self, batch: &Batch) -> std::io::Result<Written> {
        self.text.with_text(batch, |text, lines| {
            std::io::stdout().lock().write_all(text.as_bytes())?;
            Ok(Written {
                lines: lines as u64,
                bytes: text.len() as u64,
            })
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().lock().flush()
    }
}
