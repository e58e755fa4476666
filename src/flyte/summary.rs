//! What the Flyte local caches hold, per task and cache version: entries,
//! bytes, the oldest and newest store time (`diskcachefs flyte ls`;
//! docs/FLYTE.md, "Size per task"). flytekit's keys are
//! `TASK-VERSION-HASH`, split at the first `-` (task names are Python
//! paths) and the last (the 32-hex-digit hash), as `task/` splits them;
//! Flyte 2's rows name no task, so they are counted together.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cache::error::Result;
use crate::cache::{Cache, Key};
use crate::flyte::flyte2::Flyte2Cache;

/// Entries of one task version, or of a whole task.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    pub entries: u64,
    /// The stored outputs' bytes, as python-diskcache returns them.
    pub bytes: u64,
    /// Store times (seconds since the epoch), `None` when there are no
    /// entries.
    pub oldest: Option<f64>,
    pub newest: Option<f64>,
}

impl Totals {
    pub(crate) fn add(&mut self, bytes: u64, time: f64) {
        self.entries += 1;
        self.bytes += bytes;
        self.oldest = Some(self.oldest.map_or(time, |t| t.min(time)));
        self.newest = Some(self.newest.map_or(time, |t| t.max(time)));
    }

    fn merge(&mut self, other: &Totals) {
        self.entries += other.entries;
        self.bytes += other.bytes;
        for (mine, theirs, pick) in [
            (&mut self.oldest, other.oldest, f64::min as fn(f64, f64) -> f64),
            (&mut self.newest, other.newest, f64::max),
        ] {
            if let Some(t) = theirs {
                *mine = Some(mine.map_or(t, |m| pick(m, t)));
            }
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TaskSummary {
    #[serde(flatten)]
    pub totals: Totals,
    pub versions: BTreeMap<String, Totals>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// flytekit's entries by task.
    pub flytekit: BTreeMap<String, TaskSummary>,
    /// Flyte 2's entries (its rows keep no time: `oldest` and `newest`
    /// stay empty).
    pub flyte2: Totals,
}

/// `TASK-VERSION-HASH` split into (task, version).
pub fn task_and_version(key: &str) -> Option<(&str, &str)> {
    let (task, rest) = key.split_once('-')?;
    let (version, hash) = rest.rsplit_once('-')?;
    (!task.is_empty() && !version.is_empty() && hash.len() == 32).then_some((task, version))
}

pub fn summarize(cache: &Cache) -> Result<Summary> {
    let mut summary = Summary::default();
    for key in cache.task_keys()? {
        let Some((task, version)) = task_and_version(&key) else { continue };
        let Some(meta) = cache.entry_meta(&Key::Str(key.clone()))? else { continue };
        let bytes = meta.content_len();
        let entry = summary.flytekit.entry(task.to_string()).or_default();
        entry.versions.entry(version.to_string()).or_default().add(bytes, meta.store_time);
    }
    for task in summary.flytekit.values_mut() {
        let mut totals = Totals::default();
        for version in task.versions.values() {
            totals.merge(version);
        }
        task.totals = totals;
    }
    for (_, len) in Flyte2Cache::new(cache).entries()? {
        summary.flyte2.entries += 1;
        summary.flyte2.bytes += len;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_as_task_splits_them() {
        let hash = "0123456789abcdef0123456789abcdef";
        assert_eq!(task_and_version(&format!("wf.t-v1-{hash}")), Some(("wf.t", "v1")));
        assert_eq!(task_and_version(&format!("wf.t-1-2-3-{hash}")), Some(("wf.t", "1-2-3")));
        assert_eq!(task_and_version("wf.t-v1-short"), None);
        assert_eq!(task_and_version(&format!("wf.t-{hash}")), None);
    }

    #[test]
    fn totals_merge_times() {
        let mut a = Totals::default();
        a.add(3, 10.0);
        a.add(4, 5.0);
        let mut b = Totals::default();
        b.add(1, 20.0);
        a.merge(&b);
        assert_eq!(a, Totals { entries: 3, bytes: 8, oldest: Some(5.0), newest: Some(20.0) });
    }
}
