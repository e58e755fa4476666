//! The extended attributes of a key's file (docs/SEMANTICS.md,
//! "Extended attributes"): names, and their values' text both ways.

use std::ffi::OsStr;

use crate::cache::pyrepr::python_float_repr;
use crate::cache::{Key, Scalar};
use crate::fs::names::{ParsedName, full_name, parse_unbounded};

pub const EXPIRE_TIME: &str = "user.diskcache.expire_time";
pub const TAG: &str = "user.diskcache.tag";
pub const TYPE: &str = "user.diskcache.type";
pub const KEY_TYPE: &str = "user.diskcache.key_type";
/// The key's full escaped name, unbounded: what a `%sha256:` name stands
/// for, so that a backup can restore a long key (see `rename`).
pub const KEY: &str = "user.diskcache.key";

/// The paths gone that a Flyte entry's outputs name (docs/FLYTE.md,
/// "Stale entries"): on flytekit's entries' `keys/` files and Flyte 2's
/// `flyte2/` files, read-only and not listed.
pub const FLYTE_STALE: &str = "user.flyte.stale";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrName {
    ExpireTime,
    Tag,
    Type,
    KeyType,
    Key,
}

impl XattrName {
    pub fn parse(name: &OsStr) -> Option<XattrName> {
        Some(match name.to_str()? {
            EXPIRE_TIME => XattrName::ExpireTime,
            TAG => XattrName::Tag,
            TYPE => XattrName::Type,
            KEY_TYPE => XattrName::KeyType,
            KEY => XattrName::Key,
            _ => return None,
        })
    }
}

/// An absolute Unix time as Python's float repr.
pub fn format_expire_time(t: f64) -> Vec<u8> {
    python_float_repr(t).into_bytes()
}

/// Parses an expiry time: a finite decimal number of seconds since 1970.
pub fn parse_expire_time(value: &[u8]) -> Result<f64, String> {
    let text = std::str::from_utf8(value).map_err(|_| "not text".to_string())?;
    let t: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !t.is_finite() {
        return Err(format!("{text:?} is not a finite time"));
    }
    Ok(t)
}

/// A tag as text: a str tag as itself unless it starts with `%`, any other
/// tag escaped as a key name is (`%int:3`, `%bytes:...`).
pub fn format_tag(tag: &Scalar) -> Vec<u8> {
    match tag {
        Scalar::Str(s) if !s.starts_with('%') => s.as_bytes().to_vec(),
        Scalar::Str(s) => full_name(&Key::Str(s.clone())).into_bytes(),
        Scalar::Bytes(b) => full_name(&Key::Bytes(b.clone())).into_bytes(),
        Scalar::Int(i) => full_name(&Key::Int(*i)).into_bytes(),
        Scalar::Float(f) => full_name(&Key::Float(*f)).into_bytes(),
    }
}

/// Parses [`format_tag`]'s text.
pub fn parse_tag(value: &[u8]) -> Result<Scalar, String> {
    if value.first() != Some(&b'%') {
        return String::from_utf8(value.to_vec()).map(Scalar::Str).map_err(|_| "a str tag must be UTF-8".to_string());
    }
    match parse_unbounded(value) {
        Ok(ParsedName::Key(Key::Str(s))) => Ok(Scalar::Str(s)),
        Ok(ParsedName::Key(Key::Bytes(b))) => Ok(Scalar::Bytes(b)),
        Ok(ParsedName::Key(Key::Int(i))) => Ok(Scalar::Int(i)),
        Ok(ParsedName::Key(Key::Float(f))) => Ok(Scalar::Float(f)),
        Ok(_) => Err("a tag is a str, bytes, int or float".into()),
        Err(e) => Err(format!("{e:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        for tag in [
            Scalar::Str("plain".into()),
            Scalar::Str("%starts".into()),
            Scalar::Str("".into()),
            Scalar::Bytes(vec![0, 1, 255]),
            Scalar::Int(-3),
            Scalar::Float(2.5),
        ] {
            assert_eq!(parse_tag(&format_tag(&tag)).unwrap(), tag);
        }
        assert!(parse_tag(b"%nope:1").is_err());
        assert!(parse_tag(&[0xff]).is_err());
    }

    #[test]
    fn expire_times_parse_strictly() {
        assert_eq!(parse_expire_time(b"1795572677.5").unwrap(), 1795572677.5);
        assert_eq!(parse_expire_time(&format_expire_time(1.7e9)).unwrap(), 1.7e9);
        for bad in [&b"abc"[..], b"", b"nan", b"inf", &[0xff]] {
            assert!(parse_expire_time(bad).is_err());
        }
    }
}
