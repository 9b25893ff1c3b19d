//! A small JSON writer for events: strings escaped once, numbers with `itoa`-like
//! formatting from std, keys written as constants by the callers.

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

/// Appends a float as JSON: `-inf` becomes [`NEG_INF_LOGPROB`], NaN and `+inf`
/// (which JSON lacks and callers reject first) become `null`.
pub fn push_f64(out: &mut String, v: f64) {
    use std::fmt::Write as _;
    let v = if v == f64::NEG_INFINITY {
        NEG_INF_LOGPROB
    } else {
        v
    };
    if v.is_finite() {
        if v == v.trunc() && v.abs() < 1e15 {
            let _ = write!(out, "{v:.1}");
        } else {
            let _ = write!(out, "{v}");
        }
    } else {
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
}
