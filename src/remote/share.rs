//! What leaves the machine: flytekit task cache entries, and entries opted
//! in by tag or by a prefix of their str key; never queue items, counters
//! or anything else that is one machine's state; and no flytekit entry
//! whose outputs name files that exist only here.

use prost::Message;

use crate::cache::{EntryMeta, Key, Scalar, ValueType};
use crate::flyte::idl::{Literal, LiteralMap, literal, scalar};

use super::layout::ShareKind;

/// The opt-ins beyond flytekit's entries (`--tag`, `--prefix`).
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub tags: Vec<String>,
    pub prefixes: Vec<String>,
}

/// What to do with one local entry.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Not selected, or never shared (queues, counters).
    No,
    /// Shared, for this reason.
    Share(ShareKind),
    /// Selected, but its outputs point at a local file (the URI given).
    Unshareable(String),
}

/// Whether `s` ends in `-` and 32 lowercase hex digits after a
/// `{task}-{version}` (flytekit 1.x's `{task}-{version}-{md5}`).
pub fn is_flyte_key(s: &str) -> bool {
    let Some((head, md5)) = s.rsplit_once('-') else { return false };
    md5.len() == 32
        && md5.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && head.split_once('-').is_some_and(|(t, v)| !t.is_empty() && !v.is_empty())
}

/// A key as diskcache's `push` names queue items: an int, or
/// `{prefix}-{15 digits}`.
pub fn is_queue_key(key: &Key) -> bool {
    match key {
        Key::Int(_) => true,
        Key::Str(s) => s.rsplit_once('-').is_some_and(|(_, n)| n.len() == 15 && n.bytes().all(|b| b.is_ascii_digit())),
        _ => false,
    }
}

/// Which entries are shared, from their metadata: queue items and int
/// values (diskcache's counters: `incr`/`decr` store ints) never are;
/// flytekit keys with bytes values are; tags and prefixes opt in. An entry
/// returned as `Share(Flyte)` still needs [`local_uri`] on its value.
pub fn select(meta: &EntryMeta, sel: &Selection) -> Verdict {
    if is_queue_key(&meta.key) || meta.value_type() == ValueType::Int {
        return Verdict::No;
    }
    if let Key::Str(s) = &meta.key
        && is_flyte_key(s)
        && meta.value_type() == ValueType::Bytes
    {
        return Verdict::Share(ShareKind::Flyte);
    }
    if let Some(Scalar::Str(t)) = &meta.tag
        && sel.tags.iter().any(|x| x == t)
    {
        return Verdict::Share(ShareKind::Tag);
    }
    if let Key::Str(s) = &meta.key
        && sel.prefixes.iter().any(|p| s.starts_with(p.as_str()))
    {
        return Verdict::Share(ShareKind::Prefix);
    }
    Verdict::No
}

/// Whether a URI names something on this machine: an absolute or relative
/// path, or `file://`.
pub fn is_local_uri(uri: &str) -> bool {
    match uri.split_once("://") {
        Some((scheme, _)) => scheme.eq_ignore_ascii_case("file"),
        // No scheme: a path (flytekit's local raw outputs are
        // /tmp/flyte-XXXX/raw/...). An empty URI names nothing.
        None => !uri.is_empty(),
    }
}

/// The first local file a flytekit outputs LiteralMap refers to (a blob,
/// schema, structured dataset or offloaded literal whose URI is a local
/// path), or `None`. Outputs that do not decode are reported as such.
pub fn local_uri(outputs: &[u8]) -> Result<Option<String>, prost::DecodeError> {
    let map = LiteralMap::decode(outputs)?;
    Ok(map.literals.values().find_map(literal_local_uri))
}

fn literal_local_uri(lit: &Literal) -> Option<String> {
    let uri = match lit.value.as_ref()? {
        literal::Value::Collection(c) => return c.literals.iter().find_map(literal_local_uri),
        literal::Value::Map(m) => return m.literals.values().find_map(literal_local_uri),
        literal::Value::OffloadedMetadata(o) => &o.uri,
        literal::Value::Scalar(s) => match s.value.as_ref()? {
            scalar::Value::Blob(b) => &b.uri,
            scalar::Value::Schema(s) => &s.uri,
            scalar::Value::StructuredDataset(d) => &d.uri,
            scalar::Value::Union(u) => return u.value.as_ref().and_then(literal_local_uri),
            _ => return None,
        },
    };
    is_local_uri(uri).then(|| uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flyte::idl::{Blob, LiteralCollection};

    #[test]
    fn flyte_and_queue_keys_are_told_apart() {
        assert!(is_flyte_key("tests.py.flyte_workflow.square-1-0123456789abcdef0123456789abcdef"));
        assert!(!is_flyte_key("square-0123456789abcdef0123456789abcdef"));
        assert!(!is_flyte_key("square-1-0123456789ABCDEF0123456789abcdef"));
        assert!(is_queue_key(&Key::Int(500000000000000)));
        assert!(is_queue_key(&Key::Str("jobs-500000000000000".into())));
        assert!(!is_queue_key(&Key::Str("jobs-5".into())));
    }

    #[test]
    fn local_uris_are_found_anywhere_in_the_outputs() {
        assert!(is_local_uri("/tmp/flyte-abc/raw/x"));
        assert!(is_local_uri("file:///tmp/x"));
        assert!(is_local_uri("raw/x"));
        assert!(!is_local_uri("s3://bucket/x"));
        assert!(!is_local_uri(""));
        let blob = |uri: &str| Literal {
            value: Some(literal::Value::Scalar(crate::flyte::idl::Scalar {
                value: Some(scalar::Value::Blob(Blob { uri: uri.into(), ..Default::default() })),
            })),
            ..Default::default()
        };
        let nested = Literal {
            value: Some(literal::Value::Collection(LiteralCollection {
                literals: vec![blob("s3://b/k"), blob("/tmp/f")],
            })),
            ..Default::default()
        };
        let map = LiteralMap { literals: [("o0".to_string(), nested)].into() };
        assert_eq!(local_uri(&map.encode_to_vec()).unwrap().as_deref(), Some("/tmp/f"));
        let remote = LiteralMap { literals: [("o0".to_string(), blob("s3://b/k"))].into() };
        assert_eq!(local_uri(&remote.encode_to_vec()).unwrap(), None);
        assert!(local_uri(b"\xff\xff").is_err());
    }
}
