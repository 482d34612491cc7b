//! The compressed chunk format of the history store: the rows of one series over a span of
//! time, as columns.
//!
//! A [`Chunk`] holds `n` timestamps and any number of columns of `n` values each, integers
//! (counters stay exact) or floats (bit-exact), where a row may lack a value (a gap). Numbers are
//! compressed with [pco](https://docs.rs/pco) (a well-kept numeric codec that picks delta
//! orders and bins per column); a column whose present values are all the same is stored as
//! that value alone, integers that rise by the same step every row (a regular grid of
//! timestamps, the test driver's counters) as the first value and the step, and gaps as a
//! bitmap.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! chunk    = "VC1" rows:u32 columns:u32 values(timestamps) column*
//! column   = kind:u8 (0 integer, 1 float) presence values(present values)
//! presence = 0 (every row has a value) | 1 bitmap (ceil(rows / 8) bytes, bit r of byte r/8)
//! values   = 0 len:u32 pco-bytes | 1 constant:8 bytes | 2 (no value at all)
//!          | 3 first:8 bytes step:8 bytes (integers rising by a fixed step)
//!          | 4 len:u32 varints (integers: the first, then each difference to the one
//!            before, zigzag varints; what [`encode_fast`] writes)
//! ```
//!
//! [`encode`] compresses with pco (for chunks that are kept); [`encode_fast`] writes integer
//! differences as varints, about a tenth of the CPU for two to three times the size (for the
//! short-lived chunks of a compaction, merged and compressed with pco later).
//!
//! Decoding damaged bytes returns an error naming what is wrong; it never panics.

use pco::standalone::{simple_compress, simple_decompress_into};
use pco::ChunkConfig;

/// The format's magic and version.
const MAGIC: &[u8; 3] = b"VC1";
/// Most rows in a chunk (bounds what a damaged header can make the decoder allocate).
pub const MAX_ROWS: usize = 1 << 20;
/// Most columns in a chunk.
pub const MAX_COLUMNS: usize = 4096;
/// Most values (rows × columns) in a chunk: bounds what a damaged header can make the decoder
/// allocate (a few bytes of header could otherwise announce gigabytes of constants).
pub const MAX_CELLS: usize = 1 << 22;

/// One column of a chunk: one value (or none) per row.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Integers: counters and codes, exact.
    Int(Vec<Option<i64>>),
    /// Floats, bit-exact.
    Float(Vec<Option<f64>>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Int(v) => v.len(),
            Column::Float(v) => v.len(),
        }
    }
}

/// The rows of one series over a span of time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chunk {
    /// Row timestamps (any unit; the store uses ms), in row order.
    pub ts: Vec<i64>,
    /// The columns, each with one entry per row.
    pub columns: Vec<Column>,
}

/// Why a chunk could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The chunk to encode is not rectangular or too large.
    #[error("invalid chunk: {0}")]
    Invalid(String),
    /// The bytes are not a chunk (damaged, truncated, another format).
    #[error("damaged chunk: {0}")]
    Damaged(String),
}

fn damaged(what: impl Into<String>) -> CodecError {
    CodecError::Damaged(what.into())
}

/// Encodes `chunk`, compressed with pco.
pub fn encode(chunk: &Chunk) -> Result<Vec<u8>, CodecError> {
    encode_with(chunk, false)
}

/// Encodes `chunk` fast: integers as varint differences (floats still with pco).
pub fn encode_fast(chunk: &Chunk) -> Result<Vec<u8>, CodecError> {
    encode_with(chunk, true)
}

fn encode_with(chunk: &Chunk, fast: bool) -> Result<Vec<u8>, CodecError> {
    let rows = chunk.ts.len();
    if rows > MAX_ROWS
        || chunk.columns.len() > MAX_COLUMNS
        || rows.saturating_mul(chunk.columns.len() + 1) > MAX_CELLS
    {
        return Err(CodecError::Invalid(format!(
            "{rows} rows and {} columns (at most {MAX_ROWS} and {MAX_COLUMNS}, {MAX_CELLS} values)",
            chunk.columns.len()
        )));
    }
    if let Some(c) = chunk.columns.iter().find(|c| c.len() != rows) {
        return Err(CodecError::Invalid(format!(
            "a column has {} values for {rows} rows",
            c.len()
        )));
    }
    let mut out = Vec::with_capacity(16 + rows / 2);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, rows);
    put_u32(&mut out, chunk.columns.len());
    put_ints(&mut out, &chunk.ts, fast)?;
    for c in &chunk.columns {
        match c {
            Column::Int(v) => {
                out.push(0);
                let present = put_presence(&mut out, v);
                put_ints(&mut out, &present, fast)?;
            }
            Column::Float(v) => {
                out.push(1);
                let present = put_presence(&mut out, v);
                put_values(&mut out, &present, |x| x.to_bits().to_le_bytes())?;
            }
        }
    }
    Ok(out)
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

/// Writes the presence of `values` and returns the present ones.
fn put_presence<T: Copy>(out: &mut Vec<u8>, values: &[Option<T>]) -> Vec<T> {
    let present: Vec<T> = values.iter().flatten().copied().collect();
    if present.len() == values.len() {
        out.push(0);
    } else {
        out.push(1);
        let mut bits = vec![0u8; values.len().div_ceil(8)];
        for (r, v) in values.iter().enumerate() {
            if v.is_some() {
                bits[r / 8] |= 1 << (r % 8);
            }
        }
        out.extend_from_slice(&bits);
    }
    present
}

/// Writes integers: as a fixed step when they have one, else as varint differences (`fast`)
/// or as [`put_values`] does.
fn put_ints(out: &mut Vec<u8>, values: &[i64], fast: bool) -> Result<(), CodecError> {
    if let [first, second, ..] = values {
        let step = second.wrapping_sub(*first);
        if step != 0 && values.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step) {
            out.push(3);
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(&step.to_le_bytes());
            return Ok(());
        }
    }
    if fast && values.len() > 1 && !values.iter().all(|v| *v == values[0]) {
        use integer_encoding::VarInt;
        out.push(4);
        let at = out.len();
        put_u32(out, 0);
        let mut prev = 0i64;
        let mut buf = [0u8; 10];
        for v in values {
            let n = v.wrapping_sub(prev).encode_var(&mut buf);
            out.extend_from_slice(&buf[..n]);
            prev = *v;
        }
        let len = out.len() - at - 4;
        out[at..at + 4].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
        return Ok(());
    }
    put_values(out, values, |x| x.to_le_bytes())
}

fn put_values<T: pco::data_types::Number>(
    out: &mut Vec<u8>,
    values: &[T],
    bytes: impl Fn(T) -> [u8; 8],
) -> Result<(), CodecError> {
    let Some(&first) = values.first() else {
        out.push(2);
        return Ok(());
    };
    if values.iter().all(|&v| bytes(v) == bytes(first)) {
        out.push(1);
        out.extend_from_slice(&bytes(first));
        return Ok(());
    }
    let packed =
        simple_compress(values, &config()).map_err(|e| CodecError::Invalid(format!("pco: {e}")))?;
    out.push(0);
    put_u32(out, packed.len());
    out.extend_from_slice(&packed);
    Ok(())
}

/// pco's settings: level 4 and first-order deltas (counters and timestamps rise by similar
/// steps). Measured on the simulated fleet (`bench_store`, 100 VMs, 2 h): the same size as
/// pco's defaults (level 8, delta order searched) within 0.5 %, for half the store's CPU.
fn config() -> ChunkConfig {
    let mut c = ChunkConfig::default();
    c.compression_level = 4;
    c.delta_spec = pco::DeltaSpec::TryConsecutive(1);
    c
}

/// Reads bytes from a chunk.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CodecError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| damaged(format!("truncated in {what}")))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<usize, CodecError> {
        let b = self.take(4, what)?;
        let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        usize::try_from(n).map_err(|_| damaged(format!("{what} out of range")))
    }

    fn eight(&mut self, what: &str) -> Result<[u8; 8], CodecError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(a)
    }

    /// `count` integers written by [`put_ints`].
    fn ints(&mut self, count: usize, what: &str) -> Result<Vec<i64>, CodecError> {
        if self.bytes.get(self.at) == Some(&3) {
            self.at += 1;
            let first = i64::from_le_bytes(self.eight(what)?);
            let step = i64::from_le_bytes(self.eight(what)?);
            let mut v = Vec::with_capacity(count);
            let mut x = first;
            for _ in 0..count {
                v.push(x);
                x = x.wrapping_add(step);
            }
            return Ok(v);
        }
        if self.bytes.get(self.at) == Some(&4) {
            use integer_encoding::VarInt;
            self.at += 1;
            let len = self.u32(what)?;
            let mut bytes = self.take(len, what)?;
            let mut v = Vec::with_capacity(count.min(bytes.len()));
            let mut x = 0i64;
            while !bytes.is_empty() {
                let (d, n) =
                    i64::decode_var(bytes).ok_or_else(|| damaged(format!("{what}: varint")))?;
                bytes = &bytes[n..];
                x = x.wrapping_add(d);
                v.push(x);
                if v.len() > count {
                    break;
                }
            }
            if v.len() != count {
                return Err(damaged(format!(
                    "{what}: {} values where {count} were announced",
                    v.len()
                )));
            }
            return Ok(v);
        }
        self.values(count, i64::from_le_bytes, what)
    }

    /// `count` values written by [`put_values`].
    fn values<T: pco::data_types::Number>(
        &mut self,
        count: usize,
        from: impl Fn([u8; 8]) -> T,
        what: &str,
    ) -> Result<Vec<T>, CodecError> {
        let values = match self.u8(what)? {
            2 => Vec::new(),
            1 => vec![from(self.eight(what)?); count],
            0 => {
                let len = self.u32(what)?;
                let packed = self.take(len, what)?;
                // Into a buffer of the announced size: a damaged pco header cannot make the
                // decoder allocate more, and must fill exactly that.
                let mut v = vec![T::default(); count];
                let done = simple_decompress_into(packed, &mut v)
                    .map_err(|e| damaged(format!("{what}: {e}")))?;
                if !done.finished {
                    return Err(damaged(format!(
                        "{what}: more values than the {count} announced"
                    )));
                }
                v.truncate(done.n_processed);
                v
            }
            k => return Err(damaged(format!("{what}: unknown encoding {k}"))),
        };
        if values.len() != count {
            return Err(damaged(format!(
                "{what}: {} values where {count} were announced",
                values.len()
            )));
        }
        Ok(values)
    }

    /// The presence of `rows` values: `None` for "every row", else one flag per row.
    fn presence(&mut self, rows: usize, what: &str) -> Result<Option<Vec<bool>>, CodecError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => {
                let bits = self.take(rows.div_ceil(8), what)?;
                Ok(Some(
                    (0..rows)
                        .map(|r| bits[r / 8] & (1 << (r % 8)) != 0)
                        .collect(),
                ))
            }
            k => Err(damaged(format!("{what}: unknown presence {k}"))),
        }
    }
}

/// Spreads `present` over the rows flagged in `flags` (all rows when `None`).
fn spread<T: Copy>(flags: Option<Vec<bool>>, present: Vec<T>, rows: usize) -> Vec<Option<T>> {
    match flags {
        None => present.into_iter().map(Some).collect(),
        Some(flags) => {
            let mut it = present.into_iter();
            let out: Vec<Option<T>> = flags
                .iter()
                .map(|&f| if f { it.next() } else { None })
                .collect();
            debug_assert_eq!(out.len(), rows);
            out
        }
    }
}

/// Decodes a chunk written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Chunk, CodecError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(3, "magic")? != MAGIC {
        return Err(damaged("not a vmtel chunk (bad magic)"));
    }
    let rows = r.u32("row count")?;
    let cols = r.u32("column count")?;
    if rows > MAX_ROWS || cols > MAX_COLUMNS || rows.saturating_mul(cols + 1) > MAX_CELLS {
        return Err(damaged(format!("{rows} rows, {cols} columns: too many")));
    }
    let ts = r.ints(rows, "timestamps")?;
    let mut columns = Vec::with_capacity(cols);
    for c in 0..cols {
        let what = format!("column {c}");
        let kind = r.u8(&what)?;
        let flags = r.presence(rows, &what)?;
        let count = flags
            .as_ref()
            .map_or(rows, |f| f.iter().filter(|&&x| x).count());
        columns.push(match kind {
            0 => Column::Int(spread(flags, r.ints(count, &what)?, rows)),
            1 => Column::Float(spread(
                flags,
                r.values(count, |b| f64::from_bits(u64::from_le_bytes(b)), &what)?,
                rows,
            )),
            k => return Err(damaged(format!("{what}: unknown kind {k}"))),
        });
    }
    if r.at != bytes.len() {
        return Err(damaged(format!(
            "{} bytes after the last column",
            bytes.len() - r.at
        )));
    }
    Ok(Chunk { ts, columns })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn int_column(rows: usize) -> impl Strategy<Value = Column> {
        prop_oneof![
            // Arbitrary values with gaps.
            proptest::collection::vec(proptest::option::weighted(0.8, any::<i64>()), rows),
            // A counter with resets (a reboot) and gaps.
            proptest::collection::vec(
                (
                    0u64..1_000_000,
                    proptest::bool::weighted(0.05),
                    proptest::bool::weighted(0.9)
                ),
                rows
            )
            .prop_map(|steps| {
                let mut c = 0i64;
                steps
                    .into_iter()
                    .map(|(d, reset, present)| {
                        c = if reset { 0 } else { c.saturating_add(d as i64) };
                        present.then_some(c)
                    })
                    .collect()
            }),
            // A constant.
            any::<i64>().prop_map(move |v| vec![Some(v); rows]),
        ]
        .prop_map(Column::Int)
    }

    fn float_column(rows: usize) -> impl Strategy<Value = Column> {
        let finite = prop_oneof![
            any::<f64>().prop_filter("NaN-free", |x| !x.is_nan()),
            (0.0f64..100.0),
            Just(0.0),
            Just(-0.0),
        ];
        proptest::collection::vec(proptest::option::weighted(0.85, finite), rows)
            .prop_map(Column::Float)
    }

    fn chunk() -> impl Strategy<Value = Chunk> {
        (0usize..300)
            .prop_flat_map(|rows| {
                (
                    proptest::collection::vec(any::<i64>(), rows),
                    (0i64..10_000, 1i64..60_000),
                    proptest::bool::ANY,
                    proptest::collection::vec(
                        prop_oneof![int_column(rows), float_column(rows)],
                        0..6,
                    ),
                )
            })
            .prop_map(|(arbitrary, (start, step), regular, columns)| Chunk {
                ts: if regular {
                    (0..arbitrary.len() as i64)
                        .map(|i| start + i * step)
                        .collect()
                } else {
                    arbitrary
                },
                columns,
            })
    }

    fn same(a: &Chunk, b: &Chunk) -> bool {
        // Bit-exact floats (-0.0 stays -0.0).
        let bits = |c: &Chunk| -> Vec<Vec<Option<u64>>> {
            c.columns
                .iter()
                .map(|col| match col {
                    Column::Int(v) => v.iter().map(|x| x.map(|x| x as u64)).collect(),
                    Column::Float(v) => v.iter().map(|x| x.map(f64::to_bits)).collect(),
                })
                .collect()
        };
        a.ts == b.ts
            && bits(a) == bits(b)
            && a.columns.iter().zip(&b.columns).all(|(x, y)| {
                matches!(
                    (x, y),
                    (Column::Int(_), Column::Int(_)) | (Column::Float(_), Column::Float(_))
                )
            })
    }

    proptest! {
        #[test]
        fn round_trips_exactly(c in chunk()) {
            let bytes = encode(&c).expect("encode");
            let back = decode(&bytes).expect("decode");
            prop_assert!(same(&c, &back), "{c:?}\n{back:?}");
            let fast = encode_fast(&c).expect("encode fast");
            let back = decode(&fast).expect("decode fast");
            prop_assert!(same(&c, &back), "fast: {c:?}\n{back:?}");
        }

        #[test]
        fn damaged_bytes_give_an_error_never_a_panic(
            c in chunk(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut bytes = if cut % 2 == 0 { encode(&c) } else { encode_fast(&c) }.expect("encode");
            for (at, x) in flips {
                if !bytes.is_empty() {
                    let i = at % bytes.len();
                    bytes[i] ^= x | 1;
                }
            }
            let _ = decode(&bytes);
            let n = if bytes.is_empty() { 0 } else { cut % bytes.len() };
            let _ = decode(&bytes[..n]);
        }
    }

    #[test]
    fn a_regular_grid_and_a_steady_counter_cost_a_few_bits_a_row() {
        let rows = 120;
        let c = Chunk {
            ts: (0..rows).map(|i| 1_795_000_000_000 + i * 10_000).collect(),
            columns: vec![
                Column::Int((0..rows).map(|i| Some(1_000_000 + i * 1_250_000)).collect()),
                Column::Int(vec![Some(131_072); rows as usize]),
            ],
        };
        let bytes = encode(&c).expect("encode");
        assert!(
            bytes.len() < 120,
            "{} bytes for 120 rows of 2 columns",
            bytes.len()
        );
        assert!(same(&c, &decode(&bytes).expect("decode")));
    }

    #[test]
    fn a_header_announcing_huge_columns_is_refused_before_allocating() {
        let mut b = b"VC1".to_vec();
        b.extend_from_slice(&(1u32 << 20).to_le_bytes());
        b.extend_from_slice(&4096u32.to_le_bytes());
        assert!(matches!(decode(&b), Err(CodecError::Damaged(m)) if m.contains("too many")));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(decode(b"XYZ"), Err(CodecError::Damaged(m)) if m.contains("magic")));
        assert!(
            matches!(decode(b"VC1\x01"), Err(CodecError::Damaged(m)) if m.contains("truncated"))
        );
        let bad = Chunk {
            ts: vec![1, 2],
            columns: vec![Column::Int(vec![Some(1)])],
        };
        assert!(matches!(encode(&bad), Err(CodecError::Invalid(_))));
    }
}
