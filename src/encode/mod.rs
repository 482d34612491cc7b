//! Encode: samples and derived features → InfluxDB line protocol, with the schema of the seed
//! changelog (`vm_metrics`, `vm_totals`, `vm_devices`, `vm_features`).
//!
//! The measurement, tag and field names are a contract with existing dashboards, declared once
//! in [`crate::schema`]; the tests assert the exact sets. See `docs/metrics.md` for every field
//! with its type, unit and source.

mod encoder;
pub mod line;

pub use crate::schema::{FIELD_KEYS, TAG_KEYS};
pub use encoder::{Encoder, GlobalTags};

use serde::Deserialize;

/// Timestamp precision of written lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Precision {
    /// Seconds (`s`), the default: one point per series per interval is all vmtel writes.
    #[default]
    #[serde(rename = "s")]
    Seconds,
    /// Milliseconds (`ms`).
    #[serde(rename = "ms")]
    Millis,
    /// Microseconds (`us`).
    #[serde(rename = "us")]
    Micros,
    /// Nanoseconds (`ns`).
    #[serde(rename = "ns")]
    Nanos,
}

impl Precision {
    /// Converts a timestamp in nanoseconds since the epoch to this precision (truncating).
    pub fn convert(self, ns: i64) -> i64 {
        ns.div_euclid(self.divisor())
    }

    /// Nanoseconds per unit.
    pub fn divisor(self) -> i64 {
        match self {
            Precision::Seconds => 1_000_000_000,
            Precision::Millis => 1_000_000,
            Precision::Micros => 1_000,
            Precision::Nanos => 1,
        }
    }

    /// The name servers use in the `precision` query parameter (`s`, `ms`, `us`, `ns`).
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Seconds => "s",
            Precision::Millis => "ms",
            Precision::Micros => "us",
            Precision::Nanos => "ns",
        }
    }
}
