//! Keys to file names and back: a pure, documented, reversible escaping.
//!
//! A str key that is a usable file name is its own name. Every other key
//! gets a name that starts with `%`, names its type, and encodes the key:
//!
//! | key                                   | name                         |
//! |---------------------------------------|------------------------------|
//! | str `report.csv`                      | `report.csv`                 |
//! | str `a/b`, `.`, `..`, `%x`, empty     | `%str:a%2Fb`, `%str:.`, ...  |
//! | bytes `b"\x00ab"`                     | `%bytes:%00ab`               |
//! | int `42`                              | `%int:42`                    |
//! | float `1.5`                           | `%float:1.5` (Python repr)   |
//! | pickled key (tuple, ...)              | `%pickle:<percent-encoded>`  |
//! | any of the above over 255 bytes       | `%sha256:<64 hex>`           |
//!
//! Percent-encoding keeps bytes `0x21..=0x7e` except `%` and `/` as they are
//! (so names stay readable) and writes every other byte as `%XX`. A str key
//! starting with `%` is always escaped, so a name starting with `%` is never
//! a plain key and the mapping is one-to-one. `%sha256:` names hash the
//! full escaped name; they are resolved by looking the key up (the only
//! irreversible-by-itself case, needed because names are limited to 255
//! bytes).

use sha2::{Digest, Sha256};

use crate::cache::Key;
use crate::cache::pyrepr::python_float_repr;

/// Longest file name the kernel passes (NAME_MAX).
pub const NAME_MAX: usize = 255;

/// What a file name says about its key.
#[derive(Clone, Debug, PartialEq)]
pub enum ParsedName {
    /// The key itself.
    Key(Key),
    /// A `%sha256:` name: the key must be found by hashing candidates.
    Hashed([u8; 32]),
}

/// Why a name is not a key's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameError {
    TooLong,
    Invalid(String),
}

/// The file name of a key. Always a valid name: non-empty, at most
/// [`NAME_MAX`] bytes, no `/` or NUL, never `.` or `..`.
pub fn key_to_name(key: &Key) -> String {
    let name = full_name(key);
    if name.len() <= NAME_MAX { name } else { hashed_name(&name) }
}

/// The unhashed name (may exceed NAME_MAX): also the escaped text of a tag
/// in `user.diskcache.tag`.
pub fn full_name(key: &Key) -> String {
    match key {
        Key::Str(s) if is_plain(s) => s.clone(),
        Key::Str(s) => format!("%str:{}", percent_encode(s.as_bytes())),
        Key::Bytes(b) => format!("%bytes:{}", percent_encode(b)),
        Key::Int(i) => format!("%int:{i}"),
        Key::Float(f) => format!("%float:{}", python_float_repr(*f)),
        Key::Pickled(p) => format!("%pickle:{}", percent_encode(p)),
    }
}

fn hashed_name(full: &str) -> String {
    let digest = Sha256::digest(full.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{HASHED_PREFIX}{hex}")
}

/// How the name of a key too long to be a name begins.
pub const HASHED_PREFIX: &str = "%sha256:";

/// Whether a long key's name is this `%sha256:` digest.
pub fn matches_hash(key: &Key, digest: &[u8; 32]) -> bool {
    let full = full_name(key);
    full.len() > NAME_MAX && Sha256::digest(full.as_bytes()).as_slice() == digest
}

/// A str key used as its own name: valid as a file name and not taken by
/// the escaping (`%...`).
fn is_plain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= NAME_MAX
        && s != "."
        && s != ".."
        && !s.starts_with('%')
        && !s.contains('/')
        && !s.contains('\0')
}

/// Parses a file name back to its key.
pub fn name_to_key(name: &[u8]) -> Result<ParsedName, NameError> {
    if name.len() > NAME_MAX {
        return Err(NameError::TooLong);
    }
    parse_unbounded(name)
}

/// Parses [`full_name`]'s output of any length (a tag's escaped text).
pub fn parse_unbounded(name: &[u8]) -> Result<ParsedName, NameError> {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(NameError::Invalid("empty, or contains / or NUL".into()));
    }
    if name[0] != b'%' {
        let s = std::str::from_utf8(name).map_err(|_| {
            NameError::Invalid("not UTF-8: a str key's name must be UTF-8 (bytes keys are %bytes:...)".into())
        })?;
        if s == "." || s == ".." {
            return Err(NameError::Invalid("'.' and '..' are not keys".into()));
        }
        return Ok(ParsedName::Key(Key::Str(s.to_string())));
    }
    let text = std::str::from_utf8(name).map_err(|_| NameError::Invalid("escaped name is not ASCII".into()))?;
    let (kind, body) = text[1..]
        .split_once(':')
        .ok_or_else(|| NameError::Invalid(format!("{text:?}: escaped names are %TYPE:VALUE")))?;
    let bad = |what: &str| NameError::Invalid(format!("{text:?}: {what}"));
    let key = match kind {
        "str" => {
            let bytes = percent_decode(body).ok_or_else(|| bad("bad %XX escape"))?;
            let s = String::from_utf8(bytes).map_err(|_| bad("str key is not UTF-8"))?;
            if is_plain(&s) {
                // Canonical form only: a plain key has exactly one name.
                return Err(bad("this key's name is not escaped"));
            }
            Key::Str(s)
        }
        "bytes" => Key::Bytes(percent_decode(body).ok_or_else(|| bad("bad %XX escape"))?),
        "pickle" => Key::Pickled(percent_decode(body).ok_or_else(|| bad("bad %XX escape"))?),
        "int" => Key::Int(body.parse().map_err(|_| bad("not a 64-bit integer"))?),
        "float" => {
            let f: f64 = body.parse().map_err(|_| bad("not a float"))?;
            Key::Float(f)
        }
        "sha256" => {
            // Lowercase hex only: the canonical spelling, and ASCII (so the
            // slicing below is on character boundaries).
            if body.len() != 64 || !body.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                return Err(bad("a sha256 name has 64 lowercase hex digits"));
            }
            let mut digest = [0u8; 32];
            for (i, d) in digest.iter_mut().enumerate() {
                *d = u8::from_str_radix(&body[2 * i..2 * i + 2], 16).map_err(|_| bad("not hex"))?;
            }
            return Ok(ParsedName::Hashed(digest));
        }
        _ => return Err(bad("unknown key type (str, bytes, int, float, pickle, sha256)")),
    };
    // Only the canonical spelling names a key (e.g. `%int:007` does not).
    if full_name(&key).as_bytes() != name {
        return Err(bad("not the canonical spelling of this key's name"));
    }
    Ok(ParsedName::Key(key))
}

/// Percent-encodes bytes, keeping printable ASCII except `%` and `/`.
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x21..=0x7e).contains(&b) && b != b'%' && b != b'/' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes [`percent_encode`]'s output (hex digits in either case).
pub fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(key: Key) {
        let name = key_to_name(&key);
        assert!(name.len() <= NAME_MAX && !name.contains('/') && name != "." && name != "..", "{name:?}");
        match name_to_key(name.as_bytes()).unwrap() {
            ParsedName::Key(k) => match (&k, &key) {
                (Key::Float(a), Key::Float(b)) if a.is_nan() && b.is_nan() => {}
                _ => assert_eq!(k, key, "name {name:?}"),
            },
            ParsedName::Hashed(d) => assert!(matches_hash(&key, &d)),
        }
    }

    #[test]
    fn examples_from_the_table() {
        assert_eq!(key_to_name(&Key::Str("report.csv".into())), "report.csv");
        assert_eq!(key_to_name(&Key::Str("a/b".into())), "%str:a%2Fb");
        assert_eq!(key_to_name(&Key::Str(".".into())), "%str:.");
        assert_eq!(key_to_name(&Key::Str("".into())), "%str:");
        assert_eq!(key_to_name(&Key::Str("%x".into())), "%str:%25x");
        assert_eq!(key_to_name(&Key::Bytes(b"\x00ab".to_vec())), "%bytes:%00ab");
        assert_eq!(key_to_name(&Key::Int(42)), "%int:42");
        assert_eq!(key_to_name(&Key::Float(1.5)), "%float:1.5");
        assert_eq!(key_to_name(&Key::Float(1e16)), "%float:1e+16");
        assert!(key_to_name(&Key::Str("x".repeat(300))).starts_with("%sha256:"));
        assert_eq!(key_to_name(&Key::Str("é".repeat(127))).len(), 254);
    }

    #[test]
    fn non_canonical_names_are_rejected() {
        for name in ["%int:007", "%str:abc", "%float:1.50", "%nope:1", "%int", ".", ".."] {
            assert!(name_to_key(name.as_bytes()).is_err(), "{name}");
        }
        assert_eq!(name_to_key(&[b'a'; 256]), Err(NameError::TooLong));
    }

    proptest! {
        #[test]
        fn str_keys_round_trip(s in "\\PC{0,300}") { round_trip(Key::Str(s)); }
        #[test]
        fn bytes_keys_round_trip(b in proptest::collection::vec(any::<u8>(), 0..300)) { round_trip(Key::Bytes(b)); }
        #[test]
        fn pickled_keys_round_trip(b in proptest::collection::vec(any::<u8>(), 0..300)) { round_trip(Key::Pickled(b)); }
        #[test]
        fn int_keys_round_trip(i in any::<i64>()) { round_trip(Key::Int(i)); }
        #[test]
        fn float_keys_round_trip(f in any::<f64>()) { round_trip(Key::Float(f)); }
        #[test]
        fn any_name_parses_or_errors(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            // Never panics; a parsed key names itself again.
            if let Ok(ParsedName::Key(k)) = name_to_key(&b) {
                let again = key_to_name(&k);
                prop_assert_eq!(again.as_bytes(), &b[..]);
            }
        }
    }
}
