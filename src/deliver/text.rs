//! What every text sink (stdout, files, InfluxDB outputs) shares: its own [`Encoder`] (global
//! tags, and the sink's precision) and a buffer reused from batch to batch.

use super::{Batch, Written};
use crate::encode::Encoder;

/// A sink that writes text: [`write_text`] encodes a batch with its encoder and hands the text
/// to [`TextSink::write_lines`].
pub trait TextSink {
    /// The sink's encoder.
    fn text(&mut self) -> &mut TextEncoder;
    /// Writes newline-terminated line protocol.
    fn write_lines(&mut self, lines: &str) -> std::io::Result<()>;
}

/// Encodes `batch` with the sink's encoder and writes it; what [`super::Sink::write`] of a
/// text sink does.
pub fn write_text<S: TextSink>(sink: &mut S, batch: &Batch) -> std::io::Result<Written> {
    let mut text = std::mem::take(sink.text());
    let r = text.with_text(batch, |lines, n| {
        sink.write_lines(lines).map(|()| Written {
            lines: n as u64,
            bytes: lines.len() as u64,
        })
    });
    *sink.text() = text;
    r
}

/// A buffer larger than this is not kept between batches (a one-off large batch does not pin
/// its memory).
const KEEP_CAPACITY: usize = 256 * 1024;

/// Encodes batches for one text sink.
#[derive(Debug, Clone, Default)]
pub struct TextEncoder {
    encoder: Encoder,
    buf: String,
}

impl TextEncoder {
    /// Encodes with `encoder`.
    pub fn new(encoder: Encoder) -> TextEncoder {
        TextEncoder {
            encoder,
            buf: String::new(),
        }
    }

    /// The encoder's settings.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// Encodes `batch` and hands its text and line count to `write`.
    pub fn with_text<T>(&mut self, batch: &Batch, write: impl FnOnce(&str, usize) -> T) -> T {
        self.buf.clear();
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = String::new();
        }
        let n = self.encoder.encode_batch(batch, &mut self.buf);
        write(&self.buf, n)
    }
}
