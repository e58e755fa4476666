//! Protocol 0's text arguments decoded as CPython 3.11 decodes them:
//! `FLOAT`'s `float()`, `STRING`'s bytes-literal escapes, `UNICODE`'s
//! `raw-unicode-escape`.

/// Python's `float(text)` for what pickle's `FLOAT` holds (`repr` of a
/// float, or `inf`/`nan` spelled as Python 2 did).
pub(super) fn parse_python_float(text: &str) -> Option<f64> {
    let t = text.trim().to_ascii_lowercase().replace('_', "");
    let t = t.replace("infinity", "inf");
    match t.trim_start_matches(['+', '-']) {
        "inf" | "nan" => {}
        rest if rest.bytes().any(|b| b.is_ascii_alphabetic() && b != b'e') => return None,
        _ => {}
    }
    t.parse().ok()
}

/// `codecs.escape_decode`: Python's bytes-literal escapes.
pub(super) fn escape_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let e = *s.get(i)?;
        i += 1;
        match e {
            b'\n' => {}
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match s.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let hex = std::str::from_utf8(s.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// `raw-unicode-escape` decoding (protocol 0's `UNICODE`): `\uXXXX` and
/// `\UXXXXXXXX` escapes, every other byte a Latin-1 character.
pub(super) fn raw_unicode_escape_decode(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        let width = match (b, s.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        // An odd run of backslashes before the u: Python's rule is that
        // the escape counts only after an even number of backslashes; a
        // pickle writer never doubles them, so the simple rule holds.
        let code = (width > 0)
            .then(|| s.get(i + 2..i + 2 + width))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok());
        match code {
            Some(c) => {
                out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                i += 2 + width;
            }
            None => {
                out.push(char::from(b));
                i += 1;
            }
        }
    }
    out
}
