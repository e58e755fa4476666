//! Why a flytekit cache lookup missed, as far as it can be known
//! (docs/FLYTE.md, "Why a lookup missed"): `task/T/V/.explain` and
//! `diskcachefs flyte explain`.
//!
//! What is known for certain: the key looked up and its parts; whether an
//! entry has that key; whether entries with the same inputs hash exist
//! under other cache versions of the task (then the version is what
//! differs); which versions exist. What is known only for some entries:
//! their inputs. flytekit stores a hash of all inputs, never the inputs, so
//! inputs are compared only with the entries this tool saw being written
//! with their inputs (the side record, [`super::input_record`]); for any
//! other entry the answer says plainly that its inputs are unknown.

use std::collections::BTreeMap;

use serde::Serialize;

use super::input_digest::{InputDigest, InputDigests, digest_inputs};
use super::input_record::{InputRecord, records_of_task};
use super::key::{KeyError, cache_key};
use super::stale::flytekit_value_missing;
use super::summary::{Totals, task_and_version};
use crate::cache::{Cache, Key};

/// How many entries with known inputs are compared in an answer.
const NEAREST: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// An entry has the key (flytekit would hit).
    Hit,
    /// An entry has the key, but its outputs name local files that are gone.
    Stale,
    /// The same inputs are cached under another cache version.
    VersionDiffers,
    /// The task has entries, none under this version.
    NoSuchVersion,
    /// The task has no entries at all.
    NoEntries,
    /// The version has entries with known inputs, and the inputs differ.
    InputsDiffer,
    /// The version has entries, none with known inputs.
    InputsUnknown,
}

/// How one input differs between the lookup and an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InputDifference {
    pub input: String,
    /// `value differs`, `equal content, different bytes`, `only in the
    /// lookup`, `only in the entry`.
    pub how: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup_kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_kind: Option<String>,
}

/// An entry whose inputs are known, compared with the lookup's.
#[derive(Clone, Debug, Serialize)]
pub struct Compared {
    pub key: String,
    pub version: String,
    /// When its inputs were recorded (Unix seconds).
    pub recorded: f64,
    pub differs: Vec<InputDifference>,
}

/// An entry with the same inputs hash under another version.
#[derive(Clone, Debug, Serialize)]
pub struct SameInputs {
    pub version: String,
    pub key: String,
    pub stored: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub verdict: Verdict,
    /// The verdict in one plain sentence.
    pub reason: String,
    pub key: String,
    pub task: String,
    pub version: String,
    /// The last part of the key: flytekit's hash of all inputs.
    pub inputs_hash: String,
    /// The looked-up inputs, each digested.
    pub inputs: BTreeMap<String, InputDigest>,
    /// Inputs left out of the key (`cache_ignore_input_vars`).
    pub ignored: Vec<String>,
    /// Paths the entry's outputs name that are gone (verdict `stale`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    pub same_inputs_under: Vec<SameInputs>,
    /// The task's versions that have entries.
    pub versions: BTreeMap<String, Totals>,
    /// The nearest entries whose inputs are known: this version's first,
    /// then by how many inputs differ.
    pub nearest: Vec<Compared>,
    /// Entries of the task whose inputs are known, and those whose are not.
    pub known_inputs: u64,
    pub unknown_inputs: u64,
    /// Said when inputs cannot be compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The comparison of the lookup's inputs with an entry's.
pub fn differences(lookup: &InputDigests, entry: &InputDigests) -> Vec<InputDifference> {
    let mut out = Vec::new();
    for (name, mine) in &lookup.inputs {
        let how = match entry.inputs.get(name) {
            Some(theirs) if theirs.bytes == mine.bytes => continue,
            Some(theirs) if theirs.content == mine.content => "equal content, different bytes",
            Some(_) => "value differs",
            None if entry.ignored.contains(name) => continue,
            None => "only in the lookup",
        };
        let entry_kind = entry.inputs.get(name).map(|d| d.kind.clone());
        out.push(InputDifference { input: name.clone(), how, lookup_kind: Some(mine.kind.clone()), entry_kind });
    }
    for (name, theirs) in &entry.inputs {
        if !lookup.inputs.contains_key(name) && !lookup.ignored.contains(name) {
            let how = "only in the entry";
            out.push(InputDifference {
                input: name.clone(),
                how,
                lookup_kind: None,
                entry_kind: Some(theirs.kind.clone()),
            });
        }
    }
    out
}

fn plural(n: u64, one: &str) -> String {
    match (n, one) {
        (1, _) => format!("1 {one}"),
        (_, "entry") => format!("{n} entries"),
        _ => format!("{n} {one}s"),
    }
}

fn versions_text(versions: &BTreeMap<String, Totals>) -> String {
    let each: Vec<String> = versions.iter().map(|(v, t)| format!("{v} ({})", plural(t.entries, "entry"))).collect();
    each.join(", ")
}

/// Explains the lookup of `inputs` (a serialized `LiteralMap`) for `task`
/// at cache version `version`, ignoring `ignore`.
pub fn explain(
    cache: &Cache,
    task: &str,
    version: &str,
    inputs: &[u8],
    ignore: &[String],
) -> Result<Explanation, ExplainError> {
    let key = cache_key(task, version, inputs, ignore)?;
    let digests = digest_inputs(inputs, ignore)?;
    let inputs_hash = key.rsplit('-').next().unwrap_or_default().to_string();

    // The task's entries by version, and those with the same inputs hash.
    let mut versions: BTreeMap<String, Totals> = BTreeMap::new();
    let mut same_inputs_under = Vec::new();
    let mut found = None;
    let prefix = format!("{task}-");
    for k in cache.task_keys()? {
        let Some((t, v)) = task_and_version(&k) else { continue };
        if t != task || !k.starts_with(&prefix) {
            continue;
        }
        let Some(meta) = cache.entry_meta(&Key::Str(k.clone()))? else { continue };
        versions.entry(v.to_string()).or_default().add(meta.content_len(), meta.store_time);
        if k == key {
            found = Some(k.clone());
        } else if k.ends_with(&format!("-{inputs_hash}")) {
            same_inputs_under.push(SameInputs { version: v.to_string(), key: k.clone(), stored: meta.store_time });
        }
    }
    let total: u64 = versions.values().map(|t| t.entries).sum();

    // The entries whose inputs are known, nearest first.
    let records: Vec<InputRecord> = records_of_task(cache, task)?;
    let known_inputs = records.len() as u64;
    let mut nearest: Vec<Compared> = records
        .into_iter()
        .filter(|r| r.key != key)
        .map(|r| Compared {
            differs: differences(&digests, &r.digests),
            key: r.key,
            version: r.version,
            recorded: r.recorded,
        })
        .collect();
    nearest.sort_by(|a, b| {
        ((a.version != version), a.differs.len(), b.recorded.to_bits()).cmp(&(
            (b.version != version),
            b.differs.len(),
            a.recorded.to_bits(),
        ))
    });
    nearest.truncate(NEAREST);

    let mut missing = Vec::new();
    let in_version = versions.get(version).map_or(0, |t| t.entries);
    let known_here = nearest.iter().filter(|c| c.version == version).count();
    let (verdict, reason) = if let Some(k) = &found {
        missing = match cache.get(&Key::Str(k.clone()))? {
            Some(v) => flytekit_value_missing(&v).iter().map(|p| p.display().to_string()).collect(),
            None => Vec::new(),
        };
        if missing.is_empty() {
            (Verdict::Hit, format!("an entry has this key: flytekit finds the outputs ({key})"))
        } else {
            let reason = format!(
                "an entry has this key, but its outputs name {} that {} gone: flytekit takes it as a hit and the \
                 run then fails or reads other data",
                plural(missing.len() as u64, "local path"),
                if missing.len() == 1 { "is" } else { "are" }
            );
            (Verdict::Stale, reason)
        }
    } else if !same_inputs_under.is_empty() {
        let those: Vec<&str> = same_inputs_under.iter().map(|s| s.version.as_str()).collect();
        let mut reason = format!(
            "the cache version differs: these inputs are cached under version {} of {task}, not {version}",
            those.join(", ")
        );
        if in_version == 0 {
            reason +=
                &format!("; version {version} has no entries (the versions that do: {})", versions_text(&versions));
        }
        (Verdict::VersionDiffers, reason)
    } else if total == 0 {
        (Verdict::NoEntries, format!("{task} has no entries in this cache (under any version)"))
    } else if in_version == 0 {
        let reason =
            format!("version {version} of {task} has no entries; the versions that do: {}", versions_text(&versions));
        (Verdict::NoSuchVersion, reason)
    } else if known_here > 0 {
        let first = &nearest[0];
        let said: Vec<String> = first.differs.iter().map(|d| format!("{} ({})", d.input, d.how)).collect();
        let reason = format!(
            "the inputs differ: the nearest entry of version {version} whose inputs are known ({}) differs in {}",
            first.key,
            if said.is_empty() {
                "no input (its ignored inputs differ from the lookup's)".into()
            } else {
                said.join(", ")
            }
        );
        (Verdict::InputsDiffer, reason)
    } else {
        let reason = format!(
            "the inputs differ from those of all {} of version {version}, whose inputs are unknown",
            plural(in_version, "entry")
        );
        (Verdict::InputsUnknown, reason)
    };
    let unknown_inputs = total.saturating_sub(known_inputs);
    let note = (unknown_inputs > 0 && !matches!(verdict, Verdict::Hit | Verdict::Stale)).then(|| {
        format!(
            "the inputs of {} of {task} are unknown: flytekit stores only a hash of all inputs; inputs are known \
             only for entries stored through diskcachefs (task/ after .key or .resolve, or LocalTaskCache::set)",
            plural(unknown_inputs, "entry")
        )
    });
    Ok(Explanation {
        verdict,
        reason,
        key,
        task: task.to_string(),
        version: version.to_string(),
        inputs_hash,
        inputs: digests.inputs,
        ignored: digests.ignored,
        missing,
        same_inputs_under,
        versions,
        nearest,
        known_inputs,
        unknown_inputs,
        note,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("inputs: {0}")]
    Key(#[from] KeyError),
    #[error(transparent)]
    Cache(#[from] crate::cache::Error),
}
