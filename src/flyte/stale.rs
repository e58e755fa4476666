//! Stale entries of the Flyte local caches (docs/FLYTE.md, "Stale
//! entries"): a cached entry whose outputs name local files or
//! directories (a FlyteFile's or FlyteDirectory's blob, a
//! StructuredDataset, a schema, an offloaded literal: as a `file://` URI
//! or an absolute path, anywhere in the outputs, in collections, maps and
//! unions) that no longer exist. flytekit and Flyte 2 answer such an
//! entry as a hit, and the run then fails or reads the wrong data
//! (flyte#4672, #6393, flytekit#3469); the fix is to treat it as a miss.
//! A relative path or another scheme (`s3://`, `gs://`) is not judged.

use std::path::{Path, PathBuf};

use prost::Message;

use crate::cache::error::Result;
use crate::cache::{Cache, Key, Value};
use crate::flyte::flyte2::{Flyte2Cache, Outputs};
use crate::flyte::idl::{Literal, LiteralMap, literal, scalar};

/// The local paths the outputs name, in the order they appear.
pub fn local_paths(outputs: &LiteralMap) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for literal in outputs.literals.values() {
        visit(literal, &mut out);
    }
    out
}

fn visit(literal: &Literal, out: &mut Vec<PathBuf>) {
    // Iteratively: a literal nests as deep as its producer made it.
    let mut stack = vec![literal];
    while let Some(l) = stack.pop() {
        match &l.value {
            Some(literal::Value::Scalar(s)) => match &s.value {
                Some(scalar::Value::Blob(b)) => push_local(&b.uri, out),
                Some(scalar::Value::StructuredDataset(d)) => push_local(&d.uri, out),
                Some(scalar::Value::Schema(sc)) => push_local(&sc.uri, out),
                Some(scalar::Value::Union(u)) => stack.extend(u.value.as_ref()),
                _ => {}
            },
            Some(literal::Value::Collection(c)) => stack.extend(c.literals.iter().rev()),
            Some(literal::Value::Map(m)) => stack.extend(m.literals.values().rev()),
            Some(literal::Value::OffloadedMetadata(o)) => push_local(&o.uri, out),
            None => {}
        }
    }
}

/// `uri` as a local path, when it is one: `file://PATH` or `/PATH`.
fn push_local(uri: &str, out: &mut Vec<PathBuf>) {
    let path = match uri.strip_prefix("file://") {
        // file:///tmp/x and file://localhost/tmp/x.
        Some(rest) => rest.strip_prefix("localhost").unwrap_or(rest),
        None => uri,
    };
    if path.starts_with('/') {
        out.push(PathBuf::from(percent_decoded(path)));
    }
}

/// `%XX` sequences decoded (a URI's path); anything else as it is.
fn percent_decoded(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b)))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| path.to_string())
}

/// The local paths of `outputs` that do not exist (a dangling link counts
/// as missing: its target is gone).
pub fn missing_paths(outputs: &LiteralMap) -> Vec<PathBuf> {
    local_paths(outputs).into_iter().filter(|p| !Path::new(p).exists()).collect()
}

/// Which cache an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    /// flytekit's `LocalTaskCache`: a key `TASK-VERSION-HASH` of the cache.
    Flytekit,
    /// Flyte 2's `task_cache` table.
    Flyte2,
}

/// A stale entry: where it is, and the paths its outputs name that are
/// gone.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StaleEntry {
    pub owner: Owner,
    pub key: String,
    pub missing: Vec<PathBuf>,
}

/// Flyte 2's stored outputs as a literal map.
pub fn flyte2_outputs(bytes: &[u8]) -> std::result::Result<LiteralMap, prost::DecodeError> {
    let outputs = Outputs::decode(bytes)?;
    Ok(LiteralMap { literals: outputs.literals.into_iter().map(|n| (n.name, n.value.unwrap_or_default())).collect() })
}

/// The paths gone of flytekit entry `key` (`TASK-VERSION-HASH`); empty
/// when it is fresh, absent, or its value is not outputs (another
/// program's key that looks like one).
pub fn flytekit_missing(cache: &Cache, key: &str) -> Result<Vec<PathBuf>> {
    Ok(cache.get(&Key::Str(key.to_string()))?.map_or(Vec::new(), |v| flytekit_value_missing(&v)))
}

/// The paths gone of a flytekit entry's value; empty when it is fresh or
/// not outputs.
pub fn flytekit_value_missing(value: &Value) -> Vec<PathBuf> {
    match value {
        Value::Bytes(bytes) => LiteralMap::decode(bytes.as_slice()).map_or(Vec::new(), |o| missing_paths(&o)),
        _ => Vec::new(),
    }
}

/// The paths gone of Flyte 2 entry `key`; empty as for
/// [`flytekit_missing`].
pub fn flyte2_missing(cache: &Cache, key: &str) -> Result<Vec<PathBuf>> {
    Ok(Flyte2Cache::new(cache)
        .get(key)?
        .and_then(|b| flyte2_outputs(&b).ok())
        .map_or(Vec::new(), |o| missing_paths(&o)))
}

/// The stale entries among flytekit's keys `keys`.
pub fn stale_flytekit_entries<'k>(
    cache: &Cache,
    keys: impl IntoIterator<Item = &'k String>,
) -> Result<Vec<StaleEntry>> {
    let mut stale = Vec::new();
    for key in keys {
        let missing = flytekit_missing(cache, key)?;
        if !missing.is_empty() {
            stale.push(StaleEntry { owner: Owner::Flytekit, key: key.clone(), missing });
        }
    }
    Ok(stale)
}

/// Flyte 2's stale entries.
pub fn stale_flyte2_entries(cache: &Cache) -> Result<Vec<StaleEntry>> {
    let mut stale = Vec::new();
    for (key, _) in Flyte2Cache::new(cache).entries()? {
        let missing = flyte2_missing(cache, &key)?;
        if !missing.is_empty() {
            stale.push(StaleEntry { owner: Owner::Flyte2, key, missing });
        }
    }
    Ok(stale)
}

/// Every stale entry of the cache: flytekit's, then Flyte 2's.
pub fn find_stale(cache: &Cache) -> Result<Vec<StaleEntry>> {
    let mut stale = stale_flytekit_entries(cache, &cache.task_keys()?)?;
    stale.extend(stale_flyte2_entries(cache)?);
    Ok(stale)
}

/// Removes every stale entry (what [`find_stale`] finds, each checked
/// again just before it goes); returns those removed.
pub fn prune_stale(cache: &Cache) -> Result<Vec<StaleEntry>> {
    let mut removed = Vec::new();
    for entry in find_stale(cache)? {
        // Another process may have stored fresh outputs since.
        let gone = match entry.owner {
            Owner::Flytekit => {
                !flytekit_missing(cache, &entry.key)?.is_empty() && cache.delete(&Key::Str(entry.key.clone()))?
            }
            Owner::Flyte2 => {
                !flyte2_missing(cache, &entry.key)?.is_empty() && Flyte2Cache::new(cache).delete(&entry.key)?
            }
        };
        if gone {
            removed.push(entry);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flyte::idl::{Blob, LiteralCollection, Scalar, StructuredDataset};

    fn blob(uri: &str) -> Literal {
        Literal {
            value: Some(literal::Value::Scalar(Scalar {
                value: Some(scalar::Value::Blob(Blob { uri: uri.into(), ..Default::default() })),
            })),
            ..Default::default()
        }
    }

    #[test]
    fn local_paths_anywhere_in_the_outputs() {
        let dataset = Literal {
            value: Some(literal::Value::Scalar(Scalar {
                value: Some(scalar::Value::StructuredDataset(StructuredDataset {
                    uri: "file:///data/df".into(),
                    metadata: None,
                })),
            })),
            ..Default::default()
        };
        let nested = Literal {
            value: Some(literal::Value::Collection(LiteralCollection {
                literals: vec![
                    blob("/tmp/a b"),
                    blob("s3://bucket/x"),
                    Literal {
                        value: Some(literal::Value::Map(LiteralMap {
                            literals: [("k".to_string(), blob("file://localhost/tmp/c%20d"))].into(),
                        })),
                        ..Default::default()
                    },
                ],
            })),
            ..Default::default()
        };
        let outputs = LiteralMap {
            literals: [("o0".to_string(), nested), ("o1".to_string(), dataset), ("o2".to_string(), blob("rel/x"))]
                .into(),
        };
        let paths: Vec<String> = local_paths(&outputs).iter().map(|p| p.display().to_string()).collect();
        assert_eq!(paths, ["/tmp/a b", "/tmp/c d", "/data/df"]);
    }

    #[test]
    fn only_paths_that_are_gone_are_missing() {
        let dir = tempfile::tempdir().unwrap();
        let here = dir.path().join("here");
        std::fs::write(&here, b"x").unwrap();
        let gone = dir.path().join("gone");
        let outputs = LiteralMap {
            literals: [
                ("a".to_string(), blob(here.to_str().unwrap())),
                ("b".to_string(), blob(&format!("file://{}", gone.display()))),
            ]
            .into(),
        };
        assert_eq!(missing_paths(&outputs), [gone]);
    }
}
