//! What every text sink (stdout, files, InfluxDB outputs) shares: its own [`Encoder`] (global
//! tags, and the sink's precision) and a buffer reused from batch to batch.

use super::Batch;
use crate::encode::Encoder;

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
