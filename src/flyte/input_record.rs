//! The side record of flytekit entries' inputs (docs/FLYTE.md, "The side
//! record"): flytekit's key is a hash of all inputs and its value the
//! outputs, so an entry does not say what its inputs were. For the entries
//! this tool sees being written with their inputs known (outputs stored
//! through the mount's `task/T/V/HASH` or `keys/` after a `.key` or
//! `.resolve` of the same inputs, or [`super::LocalTaskCache::set`]), the
//! per-input digests ([`super::input_digest`]) are kept in a table of
//! their own in the same `cache.db`:
//!
//! ```sql
//! CREATE TABLE diskcachefs_flyte_inputs (
//!     key TEXT PRIMARY KEY,    -- flytekit's TASK-VERSION-HASH
//!     task TEXT NOT NULL,
//!     version TEXT NOT NULL,
//!     inputs TEXT NOT NULL,    -- JSON: {"inputs": {NAME: {bytes, content, kind, hashed}}, "ignored": [...]}
//!     recorded REAL NOT NULL   -- Unix time
//! )
//! ```
//!
//! python-diskcache, flytekit and Flyte 2 never read it and `Cache.check()`
//! leaves it alone (it checks `Cache` and `Settings`). A record is written
//! in the entry's own transaction, so it exists only beside an entry that
//! was stored; records whose entry is gone are skipped when read and
//! dropped once the table holds more than [`MAX_RECORDS`].

use std::collections::{HashMap, VecDeque};

use rusqlite::params;

use super::input_digest::{InputDigests, digest_inputs};
use super::key::cache_key;
use crate::cache::Cache;
use crate::cache::error::Result;

pub const TABLE: &str = "diskcachefs_flyte_inputs";

/// Past this many records, those whose entry is gone are dropped.
pub const MAX_RECORDS: i64 = 100_000;

/// The inputs of one entry, as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct InputRecord {
    pub key: String,
    pub task: String,
    pub version: String,
    pub digests: InputDigests,
    pub recorded: f64,
}

fn has_table(cache: &Cache) -> Result<bool> {
    let n: i64 = cache.conn().query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
        [TABLE],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// The record of inputs a caller looked up (`task/T/V/.key`, a `.resolve`
/// that missed); `None` when they are not inputs flytekit could key.
pub fn seen_inputs(task: &str, version: &str, inputs: &[u8], ignore: &[String], now: f64) -> Option<InputRecord> {
    let key = cache_key(task, version, inputs, ignore).ok()?;
    let digests = digest_inputs(inputs, ignore).ok()?;
    Some(InputRecord { key, task: task.to_string(), version: version.to_string(), digests, recorded: now })
}

/// Inputs looked up through the mount whose outputs may be stored next,
/// by key, until they are (then they go into the side record, in the
/// entry's transaction) or until [`SeenInputs::LIMIT`] newer ones push
/// them out.
#[derive(Default)]
pub struct SeenInputs {
    by_key: HashMap<String, InputRecord>,
    order: VecDeque<String>,
}

impl SeenInputs {
    pub const LIMIT: usize = 4096;

    pub fn insert(&mut self, record: InputRecord) {
        if self.by_key.insert(record.key.clone(), record.clone()).is_none() {
            self.order.push_back(record.key);
        }
        while self.order.len() > Self::LIMIT {
            if let Some(old) = self.order.pop_front() {
                self.by_key.remove(&old);
            }
        }
    }

    /// The record of `key`, taken out.
    pub fn take(&mut self, key: &str) -> Option<InputRecord> {
        let record = self.by_key.remove(key)?;
        self.order.retain(|k| k != key);
        Some(record)
    }

    /// The record of `key`, left in (a commit that may still fail).
    pub fn get(&self, key: &str) -> Option<&InputRecord> {
        self.by_key.get(key)
    }
}

/// Records `record`, in the caller's transaction when there is one.
pub fn record(cache: &Cache, record: &InputRecord) -> Result<()> {
    cache.transact(|c| {
        let conn = c.conn();
        conn.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (key TEXT PRIMARY KEY, task TEXT NOT NULL, \
             version TEXT NOT NULL, inputs TEXT NOT NULL, recorded REAL NOT NULL); \
             CREATE INDEX IF NOT EXISTS {TABLE}_task ON {TABLE} (task)"
        ))?;
        let inputs = serde_json::to_string(&record.digests).unwrap_or_default();
        conn.execute(
            &format!("INSERT OR REPLACE INTO {TABLE} (key, task, version, inputs, recorded) VALUES (?, ?, ?, ?, ?)"),
            params![record.key, record.task, record.version, inputs, record.recorded],
        )?;
        let count: i64 = conn.query_row(&format!("SELECT count(*) FROM {TABLE}"), [], |r| r.get(0))?;
        if count > MAX_RECORDS {
            conn.execute(
                &format!(
                    "DELETE FROM {TABLE} WHERE NOT EXISTS \
                     (SELECT 1 FROM Cache WHERE Cache.key = {TABLE}.key AND Cache.raw = 1)"
                ),
                [],
            )?;
        }
        Ok(())
    })
}

/// The records of `task` whose entry is live, any version.
pub fn records_of_task(cache: &Cache, task: &str) -> Result<Vec<InputRecord>> {
    if !has_table(cache)? {
        return Ok(Vec::new());
    }
    let mut stmt = cache.conn().prepare(&format!(
        "SELECT r.key, r.version, r.inputs, r.recorded FROM {TABLE} r \
         JOIN Cache c ON c.key = r.key AND c.raw = 1 \
         WHERE r.task = ? AND (c.expire_time IS NULL OR c.expire_time > ?) ORDER BY r.recorded DESC"
    ))?;
    let rows = stmt.query_map(params![task, cache.now()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, f64>(3)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (key, version, inputs, recorded) = row?;
        // A record this version cannot read (a later format) is skipped.
        let Ok(digests) = serde_json::from_str(&inputs) else { continue };
        out.push(InputRecord { key, task: task.to_string(), version, digests, recorded });
    }
    Ok(out)
}
