//! InfluxDB line protocol: escaping and a small allocation-free line builder.
//!
//! # Encoding rules
//!
//! The same bytes must read back as the same strings on every server vmtel writes to. Servers
//! disagree on backslashes: InfluxDB 1.x unescapes only `\,`, `\ ` and `\=` (so `\\` stays two
//! backslashes) and treats any character after a backslash as escaped, while InfluxDB 3 (the
//! `influxdb-line-protocol` crate) also reads `\\` as one backslash and rejects a value that ends
//! in a backslash. vmtel therefore writes only sequences both read identically:
//!
//! * `,`, `=` and space are escaped with a backslash in measurement names, tag keys, tag values and
//!   field keys (both servers unescape these three).
//! * A backslash followed by an ordinary character is written as it is: both servers keep it.
//! * A backslash that is followed by another backslash, a comma, `=`, a space or the end of the
//!   string cannot be written so that both servers read it back the same way. It is replaced by
//!   U+FF3C FULLWIDTH REVERSE SOLIDUS (`＼`).
//! * Control characters (newline, carriage return, tab and the rest of C0 and DEL) would end the
//!   line or the value; each is replaced by U+FFFD REPLACEMENT CHARACTER.
//! * An empty tag value is not allowed by line protocol: the tag is left out of that line.
//! * Integer fields carry the `i` suffix (InfluxDB 1.x has no unsigned type). A counter above
//!   `i64::MAX` cannot be written as such and is left out of the line; a float that is NaN or
//!   infinite is left out too. A line with no field left is not written at all.
//!
//! [`canonical`] returns the string a server will store for a given input, so callers (and the
//! dashboard) can show the same identity everywhere.

/// What a server stores for `s` once it has gone through [`escape_into`]; see the module docs.
pub fn canonical(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                None | Some('\\' | ',' | '=' | ' ') => out.push('\u{FF3C}'),
                Some(_) => out.push('\\'),
            },
            c if c.is_ascii_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The bytes [`escape_into`] changes: `,`, `=`, space, backslash and the control characters.
const SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == 0x7f || matches!(b as u8, b',' | b'=' | b' ' | b'\\');
        b += 1;
    }
    table
};

/// Appends `s` to `out`, escaped for use as a measurement, tag key, tag value or field key.
pub fn escape_into(out: &mut String, s: &str) {
    if !s.bytes().any(|b| SPECIAL[usize::from(b)]) {
        out.push_str(s);
        return;
    }
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' | '=' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\\' => match chars.peek() {
                None | Some('\\' | ',' | '=' | ' ') => out.push('\u{FF3C}'),
                Some(_) => out.push('\\'),
            },
            c if c.is_ascii_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// Decimal places float fields are written with. vmtel's floats are rates and percentages
/// computed from counters: digits beyond the sixth decimal are noise, and writing a fixed number
/// of decimals costs a fraction of the shortest round-trip form.
pub const FLOAT_DECIMALS: u32 = 6;

/// Appends `v` (finite) rounded to [`FLOAT_DECIMALS`] places, trailing zeros dropped (`12.5`,
/// `0.000125`, `3.0`). Values too large for that in 53 bits (above about 9·10⁹) are written in
/// full by `ryu`.
fn push_float(buf: &mut String, v: f64) {
    const SCALE: f64 = 1e6;
    let scaled = (v * SCALE).round();
    // Also false for NaN, which callers filter out anyway.
    if scaled.abs() >= 9.0e15 || scaled.is_nan() {
        buf.push_str(ryu::Buffer::new().format_finite(v));
        return;
    }
    let scaled = scaled as i64;
    let abs = scaled.unsigned_abs();
    if scaled < 0 {
        buf.push('-');
    }
    itoap::write_to_string(buf, abs / 1_000_000);
    let mut frac = abs % 1_000_000;
    if frac == 0 {
        buf.push_str(".0");
        return;
    }
    let mut one = 1_000_000; // 10^width: a leading 1 that keeps the fraction's leading zeros
    while frac.is_multiple_of(10) {
        frac /= 10;
        one /= 10;
    }
    buf.push('.');
    buf.push_str(&itoa::Buffer::new().format(one + frac)[1..]);
}

/// A field key as it is written after the previous field: `,key=`. Made with [`key!`] from a
/// literal: vmtel's field keys are its own constants and need no escaping.
#[derive(Debug, Clone, Copy)]
pub struct Key(&'static str);

impl Key {
    /// `comma_key_eq` is `,key=` with a non-empty key that needs no escaping; [`key!`] makes it
    /// and checks it when the program is compiled.
    ///
    /// # Panics
    /// If `comma_key_eq` is not of that form (at compile time through [`key!`]).
    pub const fn new(comma_key_eq: &'static str) -> Key {
        let b = comma_key_eq.as_bytes();
        assert!(b.len() > 2 && b[0] == b',' && b[b.len() - 1] == b'=');
        let mut i = 1;
        while i < b.len() - 1 {
            assert!(
                !SPECIAL[b[i] as usize] && b[i] < 0x80,
                "a field key needs escaping"
            );
            i += 1;
        }
        Key(comma_key_eq)
    }
}

/// A field [`Key`] from a literal: `key!("cputime")` is written `,cputime=`. A key that would
/// need escaping does not compile:
///
/// ```compile_fail
/// let _ = vmtel::key!("cpu time");
/// ```
///
/// ```
/// let _ = vmtel::key!("cpu_time");
/// ```
#[macro_export]
macro_rules! key {
    ($k:literal) => {{
        const KEY: $crate::encode::line::Key =
            $crate::encode::line::Key::new(concat!(",", $k, "="));
        KEY
    }};
}

/// Builds one line of line protocol in a caller-owned buffer.
///
/// Tags must be added before fields. If no field was added when [`Line::finish`] is called,
/// everything the builder wrote is removed again, so the buffer never holds an invalid line.
pub struct Line<'b> {
    buf: &'b mut String,
    start: usize,
    /// No field written yet: the next one follows a space, not a comma.
    first: bool,
}

impl<'b> Line<'b> {
    /// Starts a line for `measurement` at the end of `buf`.
    pub fn new(buf: &'b mut String, measurement: &str) -> Self {
        let start = buf.len();
        escape_into(buf, measurement);
        Line {
            buf,
            start,
            first: true,
        }
    }

    /// Starts a line whose measurement (and any tags that follow it) is already escaped.
    #[inline]
    pub fn new_escaped(buf: &'b mut String, escaped: &str) -> Self {
        let start = buf.len();
        buf.push_str(escaped);
        Line {
            buf,
            start,
            first: true,
        }
    }

    /// Adds a tag. An empty value (after escaping) leaves the tag out.
    pub fn tag(&mut self, key: &str, value: &str) -> &mut Self {
        debug_assert!(self.first, "tags go before fields");
        if value.is_empty() || key.is_empty() {
            return self;
        }
        self.buf.push(',');
        escape_into(self.buf, key);
        self.buf.push('=');
        escape_into(self.buf, value);
        self
    }

    /// Adds a tag whose key is vmtel's own, written with its separators (`,device=`): only the
    /// value is escaped. An empty value leaves the tag out.
    #[inline]
    pub fn tag_with_key(&mut self, comma_key_eq: &str, value: &str) -> &mut Self {
        debug_assert!(self.first, "tags go before fields");
        if !value.is_empty() {
            self.buf.push_str(comma_key_eq);
            escape_into(self.buf, value);
        }
        self
    }

    /// Appends tags that are already escaped (`,k=v,k2=v2`).
    #[inline]
    pub fn raw_tags(&mut self, escaped: &str) -> &mut Self {
        self.buf.push_str(escaped);
        self
    }

    // The field methods are inlined so that a literal key is copied without a call.
    #[inline(always)]
    fn field_key(&mut self, key: Key) {
        if self.first {
            self.first = false;
            self.buf.push(' ');
            self.buf.push_str(&key.0[1..]);
        } else {
            self.buf.push_str(key.0);
        }
    }

    /// Adds an integer field from an unsigned counter; `None` or a value above `i64::MAX` is
    /// left out.
    #[inline(always)]
    pub fn field_u64(&mut self, key: Key, value: Option<u64>) -> &mut Self {
        if let Some(v) = value.filter(|&v| v <= i64::MAX as u64) {
            self.field_key(key);
            itoap::write_to_string(self.buf, v);
            self.buf.push('i');
        }
        self
    }

    /// Adds an integer field; `None` is left out.
    #[inline(always)]
    pub fn field_i64(&mut self, key: Key, value: Option<i64>) -> &mut Self {
        if let Some(v) = value {
            self.field_key(key);
            itoap::write_to_string(self.buf, v);
            self.buf.push('i');
        }
        self
    }

    /// Adds a float field, rounded to [`FLOAT_DECIMALS`] decimal places; `None`, NaN and
    /// infinities are left out.
    #[inline(always)]
    pub fn field_f64(&mut self, key: Key, value: Option<f64>) -> &mut Self {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            self.field_key(key);
            push_float(self.buf, v);
        }
        self
    }

    /// Ends the line with `timestamp` and a newline. Returns `false`, and removes the partial
    /// line, if it has no field.
    pub fn finish(self, timestamp: i64) -> bool {
        if self.first {
            self.buf.truncate(self.start);
            return false;
        }
        self.buf.push(' ');
        self.buf.push_str(itoa::Buffer::new().format(timestamp));
        self.buf.push('\n');
        true
    }

    /// Like [`Line::finish`], with the end of the line already formatted (a space, the
    /// timestamp and a newline), so that the many lines of one cycle format it once.
    #[inline]
    pub fn finish_with(self, tail: &str) -> bool {
        if self.first {
            self.buf.truncate(self.start);
            return false;
        }
        self.buf.push_str(tail);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str) -> String {
        let mut out = String::new();
        escape_into(&mut out, s);
        out
    }

    #[test]
    fn escapes_separators() {
        assert_eq!(esc("a b,c=d"), r"a\ b\,c\=d");
    }

    #[test]
    fn keeps_backslash_before_ordinary_character() {
        assert_eq!(esc(r"dom\vm"), r"dom\vm");
        assert_eq!(canonical(r"dom\vm"), r"dom\vm");
    }

    #[test]
    fn replaces_ambiguous_backslashes() {
        assert_eq!(esc(r"a\"), "a\u{FF3C}");
        assert_eq!(esc(r"a\\b"), "a\u{FF3C}\\b");
        assert_eq!(esc(r"a\,b"), "a\u{FF3C}\\,b");
    }

    #[test]
    fn replaces_control_characters() {
        assert_eq!(esc("a\nb\tc"), "a\u{FFFD}b\u{FFFD}c");
    }

    fn float(v: f64) -> String {
        let mut out = String::new();
        push_float(&mut out, v);
        out
    }

    #[test]
    fn floats_have_at_most_six_decimals() {
        assert_eq!(float(1.5), "1.5");
        assert_eq!(float(3.0), "3.0");
        assert_eq!(float(0.0), "0.0");
        assert_eq!(float(-0.0), "0.0");
        assert_eq!(float(-2.25), "-2.25");
        assert_eq!(float(0.000125), "0.000125");
        assert_eq!(float(1.0 / 3.0), "0.333333");
        assert_eq!(float(2.0 / 3.0), "0.666667");
        assert_eq!(float(99.9999996), "100.0");
        assert_eq!(float(0.0000004), "0.0");
        assert_eq!(float(-0.0000004), "0.0");
        assert_eq!(float(1e12), "1000000000000.0");
    }

    proptest::proptest! {
        #[test]
        fn floats_read_back_within_half_a_unit_of_the_last_decimal(v in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            let s = float(v);
            let back: f64 = s.parse().map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{s:?}: {e}")))?;
            let tolerance = 0.5e-6 + v.abs() * 1e-15;
            proptest::prop_assert!((back - v).abs() <= tolerance, "{} -> {} -> {}", v, s, back);
            proptest::prop_assert!(s.contains('.') || s.contains('e') || s.contains('E'), "{} is not a float literal", s);
        }
    }

    #[test]
    fn line_without_fields_is_removed() {
        let mut buf = String::from("x 1i 1\n");
        let mut line = Line::new(&mut buf, "m");
        line.tag("t", "v")
            .field_u64(key!("f"), None)
            .field_f64(key!("g"), Some(f64::NAN));
        assert!(!line.finish(5));
        assert_eq!(buf, "x 1i 1\n");
    }

    #[test]
    fn empty_tag_is_left_out_and_big_counter_dropped() {
        let mut buf = String::new();
        let mut line = Line::new(&mut buf, "m");
        line.tag("a", "")
            .tag("b", "x")
            .field_u64(key!("big"), Some(u64::MAX))
            .field_u64(key!("ok"), Some(7))
            .field_f64(key!("f"), Some(1.5));
        assert!(line.finish(42));
        assert_eq!(buf, "m,b=x ok=7i,f=1.5 42\n");
    }
}
