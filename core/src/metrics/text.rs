//! The Prometheus text exposition format 0.0.4, written straight into a byte buffer.
//!
//! Byte for byte what `prometheus::TextEncoder` wrote for the same families (the format
//! the exporter pipeline produced before, see `testdata/exposition.txt`): `# HELP` with
//! `\` and newline escaped, `# TYPE` in lower case, label values with `\`, `"` and
//! newline escaped, values as Rust's `f64` `Display` prints them (`100`, `0.875`,
//! `18446744073709552000`, `-0`). No per-sample allocation: integers, the common
//! case, are printed by hand; other values go through `Display` once.

use std::borrow::Cow;
use std::io::Write as _;

/// `# TYPE` of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The exposition being written.
pub struct Writer {
    buf: Vec<u8>,
    /// Where the family being written starts, and where its samples start.
    family: (usize, usize),
}

impl From<Vec<u8>> for Writer {
    /// Writes after what `buf` holds.
    fn from(buf: Vec<u8>) -> Self {
        Self {
            buf,
            family: (0, 0),
        }
    }
}

impl Writer {
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Starts a family: `# HELP` (when `help` is not empty) and `# TYPE`. Call
    /// [`Writer::end_family`] after its samples.
    pub fn begin_family(&mut self, name: &str, help: &str, kind: Kind) {
        let start = self.buf.len();
        if !help.is_empty() {
            self.raw("# HELP ");
            self.raw(name);
            self.buf.push(b' ');
            escape(&mut self.buf, help, false);
            self.buf.push(b'\n');
        }
        self.raw("# TYPE ");
        self.raw(name);
        self.buf.push(b' ');
        self.raw(kind.as_str());
        self.buf.push(b'\n');
        self.family = (start, self.buf.len());
    }

    /// Ends a family; one without samples is removed (HELP and TYPE included), as the
    /// Prometheus registry prunes empty families.
    pub fn end_family(&mut self) {
        let (start, samples) = self.family;
        if self.buf.len() == samples {
            self.buf.truncate(start);
        }
    }

    /// `name{labels} value`: `labels` are `(name, unescaped value)` pairs, in order.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.raw(name);
        self.labels(labels);
        self.value(value);
    }

    /// `head` `value` `tail` ` value`: a sample whose label text is assembled by the
    /// caller around one label value, `label`, escaped already ([`escaped`]). pgdog's
    /// families write every line this way: `pgdog_pool_clients{database="` + name +
    /// `"}`, three copies instead of one per piece.
    pub fn line(&mut self, head: &str, label: &str, tail: &str, value: f64) {
        self.raw(head);
        self.raw(label);
        self.raw(tail);
        self.value(value);
    }

    fn labels(&mut self, labels: &[(&str, &str)]) {
        if labels.is_empty() {
            return;
        }
        let mut separator = b'{';
        for (name, value) in labels {
            self.buf.push(separator);
            self.raw(name);
            self.raw("=\"");
            escape(&mut self.buf, value, true);
            self.buf.push(b'"');
            separator = b',';
        }
        self.buf.push(b'}');
    }

    /// ` value\n`.
    fn value(&mut self, value: f64) {
        self.buf.push(b' ');
        write_f64(&mut self.buf, value);
        self.buf.push(b'\n');
    }

    fn raw(&mut self, s: &str) {
        self.buf.extend_from_slice(s.as_bytes());
    }
}

/// Appends `s` with `\` and newline escaped, and `"` too when `quote` (label values).
pub fn escape(out: &mut Vec<u8>, s: &str, quote: bool) {
    let special = |b: u8| b == b'\\' || b == b'\n' || (quote && b == b'"');
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| special(b)) {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b if special(b) => out.extend_from_slice(&[b'\\', b]),
            b => out.push(b),
        }
    }
}

/// `s` escaped as a label value (borrowed when there is nothing to escape).
pub fn escaped(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| matches!(b, b'\\' | b'\n' | b'"')) {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len() + 8);
    escape(&mut out, s, true);
    // Escaping inserts ASCII before ASCII bytes only: still UTF-8.
    Cow::Owned(String::from_utf8(out).expect("escaping keeps UTF-8"))
}

/// Largest magnitude below which every integral `f64` prints as its integer digits
/// (2^53: beyond it `Display` prints the shortest round-trip digits padded with zeros).
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// `value` as `f64`'s `Display` prints it.
pub fn write_f64(out: &mut Vec<u8>, value: f64) {
    let magnitude = value.abs();
    let integral = magnitude < EXACT_INTEGERS && (magnitude as u64) as f64 == magnitude;
    // `-0.0` prints `-0`: the slow way, with the fractions, NaN and infinities.
    if integral && (value != 0.0 || value.is_sign_positive()) {
        if value < 0.0 {
            out.push(b'-');
        }
        write_u64(out, magnitude as u64);
    } else {
        display(out, value);
    }
}

fn display(out: &mut Vec<u8>, value: f64) {
    // Cannot fail on a Vec.
    let _ = write!(out, "{value}");
}

/// "00" to "99".
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Decimal digits of `n`, two at a time.
pub fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        digits[i] = b'0' + n as u8;
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> String {
        let mut out = Vec::new();
        write_f64(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_print_like_display() {
        for v in [
            0.0,
            -0.0,
            1.0,
            -1.5,
            100.345,
            0.1 + 0.2,
            1e-7,
            1e300,
            -1e300,
            42.0,
            -42.0,
            -0.5,
            0.5,
            -1e300 / 1e300,
            -9_007_199_254_740_991.0,
            9_007_199_254_740_991.0,
            9_007_199_254_740_992.0,
            9_007_199_254_740_994.0,
            u64::MAX as f64,
            u64::MAX as f64 / 2.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            assert_eq!(f(v), v.to_string(), "{v:e}");
        }
        for n in [
            0u64,
            7,
            10,
            99,
            100,
            101,
            999,
            1000,
            123_456_789,
            (1 << 53) - 1,
        ] {
            assert_eq!(f(n as f64), n.to_string());
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        let mut out = Vec::new();
        write_u64(&mut out, u64::MAX);
        assert_eq!(out, u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn escaping() {
        let esc = |s: &str, quote: bool| {
            let mut out = Vec::new();
            escape(&mut out, s, quote);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(esc("plain", true), "plain");
        assert_eq!(esc("a\"b\\c\nd", true), r#"a\"b\\c\nd"#);
        assert_eq!(esc("a\"b\\c\nd", false), r#"a"b\\c\nd"#);
        assert_eq!(esc("é\"", true), "é\\\"");
        assert_eq!(escaped("plain"), Cow::Borrowed("plain"));
        assert_eq!(escaped("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }

    #[test]
    fn empty_families_are_dropped() {
        let mut w = Writer::from(Vec::new());
        w.begin_family("a", "help", Kind::Gauge);
        w.end_family();
        w.begin_family("b", "", Kind::Counter);
        w.sample("b", &[("x", "1")], 2.0);
        w.end_family();
        w.begin_family("c", "h", Kind::Histogram);
        w.line("c_bucket{le=\"", "+Inf", "\"}", 3.0);
        w.end_family();
        assert_eq!(
            String::from_utf8(w.into_bytes()).unwrap(),
            "# TYPE b counter\nb{x=\"1\"} 2\n# HELP c h\n# TYPE c histogram\nc_bucket{le=\"+Inf\"} 3\n"
        );
    }
}
