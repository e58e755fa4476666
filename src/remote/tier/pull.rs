//! Pulling: the reader of the store's log, storing each new entry into its key's shard.

use std::collections::HashMap;
use std::time::Duration;

use crate::cache::Cache;
use crate::remote::layout::{log_prefix, parse_log_name};
use crate::remote::sync::{CLOCK_SKEW_MICROS, Pulled, Summary, SyncError, pull_record};

use super::{RemoteTier, lock, wall};

impl RemoteTier {
    pub(super) fn pull_loop(&self, interval: Duration) {
        let Some(caches) = self.open_caches("pull") else { return };
        // Key ids seen in the log since a skew window before the cursor.
        let mut seen: HashMap<String, u64> = HashMap::new();
        loop {
            if self.allows_call() {
                match self.pull_new(&caches, &mut seen) {
                    Ok(()) => {
                        self.succeeded();
                        lock(&self.counters).last_pull = Some(wall());
                    }
                    Err(SyncError::Remote(e)) => self.failed(&e),
                    Err(e) => self.local_failure("pulling", &e),
                }
            }
            if self.sleep(interval) {
                return;
            }
        }
    }

    /// One pass over the log after the cursor (less the skew window); each
    /// entry into its key's shard of `caches` (one cache: itself).
    fn pull_new(&self, caches: &[Cache], seen: &mut HashMap<String, u64>) -> Result<(), SyncError> {
        let ns = &self.config.sync.namespace;
        let prefix = log_prefix(ns);
        let previous = lock(&self.cursor).1.log_after.clone();
        let window_start =
            previous.as_deref().and_then(|c| parse_log_name(ns, c)).map(|(t, _)| t.saturating_sub(CLOCK_SKEW_MICROS));
        if let Some(start) = window_start {
            seen.retain(|_, t| *t >= start);
        }
        let mut after = window_start.map(|t| format!("{prefix}{t:020}"));
        loop {
            if self.stopped() {
                return Ok(());
            }
            let names = self.background.list_after(&prefix, after.as_deref(), 500)?;
            let Some(last) = names.last().cloned() else { return Ok(()) };
            for name in &names {
                let Some((t, id)) = parse_log_name(ns, name) else {
                    log::warn!("{}: {name}: not a log entry name; ignored", self.background.url());
                    lock(&self.counters).summary.rejected += 1;
                    continue;
                };
                if seen.insert(id.clone(), t).is_some() || lock(&self.pushed_ids).remove(&id) {
                    continue;
                }
                let mut summary = Summary::default();
                let result = pull_record(caches, self.background.as_ref(), &self.config.sync, &id, &mut summary);
                self.add_summary(&summary);
                match result? {
                    Pulled::Stored(_) => {
                        self.arrived(id.clone());
                        let mut c = lock(&self.counters);
                        c.pulled += 1;
                        c.summary.pulled += 1;
                    }
                    Pulled::AlreadyLocal => lock(&self.counters).summary.already_local += 1,
                    Pulled::Absent => {
                        log::warn!("{}: {name}: rejected: its record is missing", self.background.url());
                        lock(&self.counters).summary.rejected += 1;
                    }
                    Pulled::Rejected | Pulled::Expired => {}
                }
            }
            let mut cur = lock(&self.cursor);
            let (file, cursor) = &mut *cur;
            if cursor.log_after.as_deref().is_none_or(|c| last.as_str() > c) {
                cursor.log_after = Some(last.clone());
                file.save(cursor)?;
            }
            drop(cur);
            after = Some(last);
        }
    }
}
