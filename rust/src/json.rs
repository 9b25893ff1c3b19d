//! A small JSON writer for events: strings escaped once, integers with `itoa`,
//! floats in their shortest round-trip form, keys written as constants by the callers.

/// Bytes that need escaping in a JSON string: controls, `"` and `\\`.
const ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Appends `s` as a JSON string literal (with quotes). Runs of plain bytes are
/// copied at once; UTF-8 passes through unchanged.
pub fn push_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !ESCAPE[b as usize] {
            continue;
        }
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends an optional string (`null` for `None`).
pub fn push_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.push_str("null"),
    }
}

/// Appends an unsigned integer.
#[inline]
pub fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// The value written for a log probability of `-inf` (what vLLM writes too).
pub const NEG_INF_LOGPROB: f64 = -9999.0;

/// Appends a finite float in the shortest form that reads back as the same
/// `f64` (`0.5`, `1.0`, `-0.0`, `1e+308`, `5e-324`), and returns `true`. NaN and
/// the infinities, which JSON lacks, append nothing and return `false`.
///
/// The digits come from serde_json's float formatter (dtolnay's `zmij`, the
/// successor of `ryu`): already a dependency, and its output is JSON by design.
pub fn push_finite_f64(out: &mut String, v: f64) -> bool {
    use std::fmt::Write as _;
    match serde_json::Number::from_f64(v) {
        Some(n) => {
            let _ = write!(out, "{n}");
            true
        }
        None => false,
    }
}

/// Appends a log probability as JSON: `-inf` becomes [`NEG_INF_LOGPROB`], NaN and
/// `+inf` (which JSON lacks and callers reject first) become `null`.
pub fn push_f64(out: &mut String, v: f64) {
    let v = if v == f64::NEG_INFINITY {
        NEG_INF_LOGPROB
    } else {
        v
    };
    if !push_finite_f64(out, v) {
        out.push_str("null");
    }
}

/// Appends `"key":` (key must not need escaping).
#[inline]
pub fn key(out: &mut String, k: &str) {
    out.push('"');
    out.push_str(k);
    out.push_str("\":");
}

/// Appends `"key":"value"` (the value escaped).
#[inline]
pub fn str_member(out: &mut String, k: &str, value: &str) {
    key(out, k);
    push_str(out, value);
}

/// Appends `,"key":"value"`: a member after the first.
#[inline]
pub fn next_str_member(out: &mut String, k: &str, value: &str) {
    out.push(',');
    str_member(out, k, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_serde_json() {
        for s in [
            "plain",
            "quote\" back\\slash",
            "ctl\u{1}\u{1f}\n\r\t\u{8}\u{c}",
            "é🌸 \u{2028}",
            "",
        ] {
            let mut out = String::new();
            push_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
    }

    #[test]
    fn numbers() {
        let mut out = String::new();
        push_f64(&mut out, -0.5);
        out.push(',');
        push_f64(&mut out, 3.0);
        out.push(',');
        push_f64(&mut out, f64::NAN);
        out.push(',');
        push_f64(&mut out, f64::NEG_INFINITY);
        out.push(',');
        push_u64(&mut out, 42);
        assert_eq!(out, "-0.5,3.0,null,-9999.0,42");
    }

    fn finite(v: f64) -> String {
        let mut out = String::new();
        assert!(push_finite_f64(&mut out, v));
        out
    }

    #[test]
    fn floats_are_short_and_read_back_the_same() {
        // Not 309 digits for 1e308, nor 300 zeros for 1e-300.
        for (v, text) in [
            (1e308, "1e+308"),
            (-1e308, "-1e+308"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (5e-324, "5e-324"),
            (1e-300, "1e-300"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (0.1, "0.1"),
            (-1.5, "-1.5"),
            (1e16, "1e+16"),
            (123_456_789.0, "123456789.0"),
        ] {
            assert_eq!(finite(v), text, "{v:e}");
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..100_000 {
            // xorshift over the bit patterns: every kind of finite double.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if !v.is_finite() {
                continue;
            }
            let text = finite(v);
            // Valid JSON (a number), and std's correctly rounded parser reads back
            // the same bits (serde_json's default parser is not correctly rounded).
            assert!(serde_json::from_str::<serde_json::Value>(&text)
                .unwrap()
                .is_number());
            assert_eq!(
                text.parse::<f64>().unwrap().to_bits(),
                v.to_bits(),
                "{text}"
            );
            assert!(text.len() <= 24, "{text}");
        }
    }

    #[test]
    fn non_finite_is_refused() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -f64::NAN] {
            let mut out = String::from("x");
            assert!(!push_finite_f64(&mut out, v));
            assert_eq!(out, "x");
        }
        let mut out = String::new();
        push_f64(&mut out, f64::INFINITY);
        assert_eq!(out, "null");
    }
}
