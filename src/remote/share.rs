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
/// flytekit keys with bytes values are; tags and prefixes opt in. `None`:
/// not shared. An entry selected as [`ShareKind::Flyte`] still needs
/// [`local_uri`] on its value (unshareable when it names a local file).
pub fn select(meta: &EntryMeta, sel: &Selection) -> Option<ShareKind> {
    if is_queue_key(&meta.key) || meta.value_type() == ValueType::Int {
        return None;
    }
    if let Key::Str(s) = &meta.key
        && is_flyte_key(s)
        && meta.value_type() == ValueType::Bytes
    {
        return Some(ShareKind::Flyte);
    }
    if let Some(Scalar::Str(t)) = &meta.tag
        && sel.tags.iter().any(|x| x == t)
    {
        return Some(ShareKind::Tag);
    }
    if let Key::Str(s) = &meta.key
        && sel.prefixes.iter().any(|p| s.starts_with(p.as_str()))
    {
        return Some(ShareKind::Prefix);
    }
    None
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

/// The same for a Flyte 2 `task_cache` value (`flyteidl2.task.Outputs`).
pub fn flyte2_local_uri(outputs: &[u8]) -> Result<Option<String>, prost::DecodeError> {
    let outputs = crate::flyte::flyte2::Outputs::decode(outputs)?;
    Ok(outputs.literals.iter().filter_map(|n| n.value.as_ref()).find_map(literal_local_uri))
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
    fn selection_never_takes_queues_or_counters() {
        let meta = |key: Key, mode: i64, inline: crate::cache::InlineMeta, tag: Option<&str>| EntryMeta {
            rowid: 1,
            key,
            store_time: 0.0,
            expire_time: None,
            access_time: 0.0,
            tag: tag.map(|t| Scalar::Str(t.into())),
            size: 0,
            mode,
            filename: None,
            inline,
        };
        use crate::cache::InlineMeta::{Blob, Int};
        let sel = Selection { tags: vec!["t".into()], prefixes: vec!["p/".into(), "jobs".into()] };
        let flyte = "wf.square-1-0123456789abcdef0123456789abcdef";
        assert_eq!(select(&meta(Key::Str(flyte.into()), 1, Blob(3), None), &sel), Some(ShareKind::Flyte));
        assert_eq!(select(&meta(Key::Str("x".into()), 1, Blob(3), Some("t")), &sel), Some(ShareKind::Tag));
        assert_eq!(select(&meta(Key::Str("p/x".into()), 1, Blob(3), None), &sel), Some(ShareKind::Prefix));
        assert_eq!(select(&meta(Key::Str("q".into()), 1, Blob(3), Some("other")), &sel), None);
        // A queue item and a counter, even when a prefix or tag opts them in.
        assert_eq!(select(&meta(Key::Str("jobs-500000000000000".into()), 1, Blob(3), Some("t")), &sel), None);
        assert_eq!(select(&meta(Key::Int(500000000000000), 1, Blob(3), Some("t")), &sel), None);
        assert_eq!(select(&meta(Key::Str("p/hits".into()), 1, Int(5), Some("t")), &sel), None);
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
