//! The grammar of names in the view directories (docs/SEMANTICS.md,
//! "Queues" and "Flyte task cache"): queue and task directory names, queue
//! item names, resolver file names, task cache keys. Pure functions, so the
//! fuzz targets and tests can drive them without a mount.

use crate::cache::Key;
use crate::fs::names::{ParsedName, key_to_name, name_to_key, percent_decode};

/// A str used as a directory name: named as a str key is.
pub fn str_name(s: &str) -> String {
    key_to_name(&Key::Str(s.to_string()))
}

/// An item's name in its queue directory: the key's part after `P-` (the
/// 15-digit number for what `push` made); for the integer queue the number
/// with 15 digits.
pub fn item_name(queue: &Option<String>, key: &Key) -> Option<String> {
    match (queue, key) {
        (Some(p), Key::Str(s)) => Some(str_name(s.strip_prefix(p.as_str())?.strip_prefix('-')?)),
        (None, Key::Int(n)) => Some(format!("{n:015}")),
        (None, other) => Some(key_to_name(other)),
        _ => None,
    }
}

/// Whether a key lies strictly between the queue's bounds, where
/// diskcache's `pull` and `peek` look.
pub fn in_queue(queue: &Option<String>, key: &Key) -> bool {
    match (queue, key) {
        (Some(p), Key::Str(s)) => {
            s.as_str() > format!("{p}-000000000000000").as_str() && s.as_str() < format!("{p}-999999999999999").as_str()
        }
        (None, Key::Int(n)) => 0 < *n && *n < 999_999_999_999_999,
        (None, Key::Float(f)) => 0.0 < *f && *f < 999_999_999_999_999.0,
        _ => false,
    }
}

/// The item key a name in a queue directory stands for.
pub fn item_key(queue: &Option<String>, name: &str) -> Option<Key> {
    item_key_unchecked(queue, name).filter(|k| in_queue(queue, k))
}

fn item_key_unchecked(queue: &Option<String>, name: &str) -> Option<Key> {
    match queue {
        Some(p) => match name_to_key(name.as_bytes()) {
            Ok(ParsedName::Key(Key::Str(suffix))) => Some(Key::Str(format!("{p}-{suffix}"))),
            _ => None,
        },
        None if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) => name.parse().ok().map(Key::Int),
        None => match name_to_key(name.as_bytes()) {
            Ok(ParsedName::Key(k @ (Key::Int(_) | Key::Float(_)))) => Some(k),
            _ => None,
        },
    }
}

/// What a resolver file in `task/T/V/` answers for the inputs written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolverAnswer {
    /// `.resolve`: the cached outputs, or a miss.
    Outputs,
    /// `.key`: the cache key.
    Key,
    /// `.explain`: why the lookup hits or misses, as JSON.
    Explain,
}

/// `.resolve`, `.key`, `.explain`, optionally followed by `.ignore=a,b`:
/// the input names to leave out of the key, comma-separated, each
/// percent-encoded as key names are (any byte may be `%XX`; `,`, `%`, `/`
/// must be).
pub fn parse_resolver(name: &str) -> Option<(ResolverAnswer, Vec<String>)> {
    let (base, ignore) = match name.split_once(".ignore=") {
        Some((b, list)) => {
            let mut names = Vec::new();
            for part in list.split(',').filter(|v| !v.is_empty()) {
                names.push(String::from_utf8(percent_decode(part)?).ok()?);
            }
            (b, names)
        }
        None => (name, Vec::new()),
    };
    match base {
        ".resolve" => Some((ResolverAnswer::Outputs, ignore)),
        ".key" => Some((ResolverAnswer::Key, ignore)),
        ".explain" => Some((ResolverAnswer::Explain, ignore)),
        _ => None,
    }
}

pub fn is_md5_hex(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Splits a task cache key `T-V-HASH` at its first `-` and its last:
/// task names (Python module paths) have no `-`; versions may.
pub fn split_task_key(key: &str) -> Option<(&str, &str, &str)> {
    let (rest, hash) = key.rsplit_once('-')?;
    let (task, version) = rest.split_once('-')?;
    (is_md5_hex(hash) && !task.is_empty() && !version.is_empty()).then_some((task, version, hash))
}
