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

/// Appends `s` to `out`, escaped for use as a measurement, tag key, tag value or field key.
pub fn escape_into(out: &mut String, s: &str) {
    if !s
        .bytes()
        .any(|b| matches!(b, b',' | b'=' | b' ' | b'\\') || b < 0x20 || b == 0x7f)
    {
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

/// Builds one line of line protocol in a caller-owned buffer.
///
/// Tags must be added before fields. If no field was added when [`Line::finish`] is called,
/// everything the builder wrote is removed again, so the buffer never holds an invalid line.
pub struct Line<'b> {
    buf: &'b mut String,
    start: usize,
    fields: usize,
}

impl<'b> Line<'b> {
    /// Starts a line for `measurement` at the end of `buf`.
    pub fn new(buf: &'b mut String, measurement: &str) -> Self {
        let start = buf.len();
        escape_into(buf, measurement);
        Line {
            buf,
            start,
            fields: 0,
        }
    }

    /// Adds a tag. An empty value (after escaping) leaves the tag out.
    pub fn tag(&mut self, key: &str, value: &str) -> &mut Self {
        debug_assert_eq!(self.fields, 0, "tags go before fields");
        if value.is_empty() || key.is_empty() {
            return self;
        }
        self.buf.push(',');
        escape_into(self.buf, key);
        self.buf.push('=');
        escape_into(self.buf, value);
        self
    }

    /// Appends tags that are already escaped (`,k=v,k2=v2`).
    pub fn raw_tags(&mut self, escaped: &str) -> &mut Self {
        self.buf.push_str(escaped);
        self
    }

    fn field_key(&mut self, key: &str) {
        self.buf.push(if self.fields == 0 { ' ' } else { ',' });
        // Field keys are vmtel's own constants: nothing to escape.
        self.buf.push_str(key);
        self.buf.push('=');
        self.fields += 1;
    }

    /// Adds an integer field from an unsigned counter; `None` or a value above `i64::MAX` is
    /// left out.
    pub fn field_u64(&mut self, key: &str, value: Option<u64>) -> &mut Self {
        if let Some(v) = value.and_then(|v| i64::try_from(v).ok()) {
            self.field_i64(key, Some(v));
        }
        self
    }

    /// Adds an integer field; `None` is left out.
    pub fn field_i64(&mut self, key: &str, value: Option<i64>) -> &mut Self {
        if let Some(v) = value {
            self.field_key(key);
            self.buf.push_str(itoa::Buffer::new().format(v));
            self.buf.push('i');
        }
        self
    }

    /// Adds a float field; `None`, NaN and infinities are left out.
    pub fn field_f64(&mut self, key: &str, value: Option<f64>) -> &mut Self {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            self.field_key(key);
            self.buf.push_str(ryu::Buffer::new().format_finite(v));
        }
        self
    }

    /// Ends the line with `timestamp` and a newline. Returns `false`, and removes the partial
    /// line, if it has no field.
    pub fn finish(self, timestamp: i64) -> bool {
        if self.fields == 0 {
            self.buf.truncate(self.start);
            return false;
        }
        self.buf.push(' ');
        self.buf.push_str(itoa::Buffer::new().format(timestamp));
        self.buf.push('\n');
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

    #[test]
    fn line_without_fields_is_removed() {
        let mut buf = String::from("x 1i 1\n");
        let mut line = Line::new(&mut buf, "m");
        line.tag("t", "v")
            .field_u64("f", None)
            .field_f64("g", Some(f64::NAN));
        assert!(!line.finish(5));
        assert_eq!(buf, "x 1i 1\n");
    }

    #[test]
    fn empty_tag_is_left_out_and_big_counter_dropped() {
        let mut buf = String::new();
        let mut line = Line::new(&mut buf, "m");
        line.tag("a", "")
            .tag("b", "x")
            .field_u64("big", Some(u64::MAX))
            .field_u64("ok", Some(7))
            .field_f64("f", Some(1.5));
        assert!(line.finish(42));
        assert_eq!(buf, "m,b=x ok=7i,f=1.5 42\n");
    }
}
