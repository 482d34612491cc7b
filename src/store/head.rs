//! The head: what the store has not compacted yet, one SQLite row per batch (`head(ts, data)`),
//! committed with its cycle, so that `kill -9` loses at most the cycle being written.
//!
//! A row's `data` is a list of records, one per series of the batch:
//!
//! ```text
//! record   = series_id:varint columns:varint presence value*
//! presence = ceil(columns / 8) bytes, bit c of byte c/8 set when column c has a value
//! value    = zigzag varint, one per present column, in column order
//! ```
//!
//! Reading damaged bytes returns an error; it never panics.

use integer_encoding::VarInt;

/// The longest row a record may have (a kind's columns, with room for growth).
pub const MAX_COLUMNS: usize = 256;

/// Appends one record to `out`.
pub fn put(out: &mut Vec<u8>, series_id: i64, row: &[Option<i64>]) {
    let cols = row.len().min(MAX_COLUMNS);
    let mut buf = [0u8; 10];
    let n = series_id.encode_var(&mut buf);
    out.extend_from_slice(&buf[..n]);
    let n = (cols as u64).encode_var(&mut buf);
    out.extend_from_slice(&buf[..n]);
    let start = out.len();
    out.resize(start + cols.div_ceil(8), 0);
    for (c, v) in row.iter().take(cols).enumerate() {
        if v.is_some() {
            out[start + c / 8] |= 1 << (c % 8);
        }
    }
    for v in row.iter().take(cols).flatten() {
        let n = v.encode_var(&mut buf);
        out.extend_from_slice(&buf[..n]);
    }
}

/// Why head bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("damaged head row: {0}")]
pub struct HeadError(pub &'static str);

/// Reads the records of one head row: calls `each(series_id, row)` for every record (`row` is
/// reused between calls).
pub fn read(data: &[u8], each: impl FnMut(i64, &[Option<i64>])) -> Result<(), HeadError> {
    read_some(data, |_| true, each)
}

/// Like [`read`], for the records of the series `wanted` accepts only; the values of the others
/// are skipped without being decoded.
pub fn read_some(
    data: &[u8],
    wanted: impl Fn(i64) -> bool,
    mut each: impl FnMut(i64, &[Option<i64>]),
) -> Result<(), HeadError> {
    let mut at = 0usize;
    let mut row: Vec<Option<i64>> = Vec::new();
    while at < data.len() {
        let (id, n) = i64::decode_var(&data[at..]).ok_or(HeadError("series id"))?;
        at += n;
        let (cols, n) = u64::decode_var(&data[at..]).ok_or(HeadError("column count"))?;
        at += n;
        let cols = usize::try_from(cols)
            .ok()
            .filter(|&c| c <= MAX_COLUMNS)
            .ok_or(HeadError("too many columns"))?;
        let bitmap = data
            .get(at..at + cols.div_ceil(8))
            .ok_or(HeadError("presence bitmap"))?;
        at += bitmap.len();
        if !wanted(id) {
            // Skip the present values: each varint ends with a byte below 0x80.
            let present: u32 = bitmap.iter().map(|b| b.count_ones()).sum();
            let mut left = present;
            while left > 0 {
                let b = *data.get(at).ok_or(HeadError("value"))?;
                at += 1;
                if b < 0x80 {
                    left -= 1;
                }
            }
            continue;
        }
        row.clear();
        for c in 0..cols {
            if bitmap[c / 8] & (1 << (c % 8)) == 0 {
                row.push(None);
                continue;
            }
            let (v, n) =
                i64::decode_var(data.get(at..).unwrap_or(&[])).ok_or(HeadError("value"))?;
            at += n;
            row.push(Some(v));
        }
        each(id, &row);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Records read back exactly: ids, gaps and any integer.
        #[test]
        fn records_round_trip(records in proptest::collection::vec(
            (any::<i64>(), proptest::collection::vec(proptest::option::of(any::<i64>()), 0..40)),
            0..20,
        )) {
            let mut data = Vec::new();
            for (id, row) in &records {
                put(&mut data, *id, row);
            }
            let mut back = Vec::new();
            read(&data, |id, row| back.push((id, row.to_vec()))).expect("read");
            prop_assert_eq!(&back, &records);
            // Skipping the records of odd ids keeps the others exactly.
            let mut even = Vec::new();
            read_some(&data, |id| id % 2 == 0, |id, row| even.push((id, row.to_vec()))).expect("read");
            let want: Vec<_> = records.iter().filter(|(id, _)| id % 2 == 0).cloned().collect();
            prop_assert_eq!(even, want);
        }

        /// Damaged bytes give an error or records, never a panic.
        #[test]
        fn damaged_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = read(&data, |_, _| {});
            let _ = read_some(&data, |id| id % 3 == 0, |_, _| {});
        }
    }
}
