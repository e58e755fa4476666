//! Flyte 2's local task cache: the tables the Flyte 2 SDK (`flyte` 2.x,
//! `flyte._persistence`) keeps in the very `cache.db` where flytekit keeps
//! diskcache's (../shared/notes/real-caches.md):
//!
//! - `task_cache (key TEXT PRIMARY KEY, value BLOB)`: `value` is a
//!   serialized `flyteidl2.task.Outputs`; `key` is base64 of a sha256 that
//!   cannot be computed from the inputs alone.
//! - `runs (...)`: local run records, when Flyte 2 keeps them.
//!
//! Read, rendered and deleted here; Flyte 2's schema is never changed, and
//! a cache without these tables simply has no Flyte 2 entries.

use std::collections::BTreeMap;

use prost::Message;
use rusqlite::{OptionalExtension, params};
use serde_json::Value as Json;

use crate::cache::Cache;
use crate::cache::error::Result;
use crate::flyte::idl::{Literal, LiteralMap};
use crate::flyte::render::literal_map_to_json;

/// `flyteidl2.task.Outputs`: field 1 the named output literals (field 3,
/// produced artifacts, is not read). `flyteidl2.core.Literal` keeps
/// flyteidl's field numbers and adds 9 (`artifact_id`), which decoding
/// skips.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Outputs {
    #[prost(message, repeated, tag = "1")]
    pub literals: Vec<NamedLiteral>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedLiteral {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Literal>,
}

/// Stored outputs as readable JSON (as `literals` renders flytekit's).
pub fn outputs_json(bytes: &[u8]) -> Result<Json, prost::DecodeError> {
    let outputs = Outputs::decode(bytes)?;
    let literals: BTreeMap<String, Literal> =
        outputs.literals.into_iter().map(|n| (n.name, n.value.unwrap_or_default())).collect();
    Ok(literal_map_to_json(&LiteralMap { literals }))
}

/// `task_cache` as Flyte 2 2.12.1 creates it (read from its `sqlite_master`).
const TASK_CACHE_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS task_cache (\n    key TEXT PRIMARY KEY,\n    value BLOB\n)";

/// Flyte 2's task cache in a cache directory's `cache.db`.
pub struct Flyte2Cache<'a> {
    cache: &'a Cache,
}

impl<'a> Flyte2Cache<'a> {
    pub fn new(cache: &'a Cache) -> Flyte2Cache<'a> {
        Flyte2Cache { cache }
    }

    fn has_table(&self, name: &str) -> Result<bool> {
        let n: i64 = self.cache.conn().query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
            [name],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Every entry's key and stored length, in key order.
    pub fn entries(&self) -> Result<Vec<(String, u64)>> {
        if !self.has_table("task_cache")? {
            return Ok(Vec::new());
        }
        let mut stmt = self.cache.conn().prepare_cached("SELECT key, length(value) FROM task_cache ORDER BY key")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0))))?;
        Ok(rows.map(|r| r.map(|(k, n)| (k, n.max(0) as u64))).collect::<rusqlite::Result<_>>()?)
    }

    /// An entry's stored `Outputs` bytes.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        if !self.has_table("task_cache")? {
            return Ok(None);
        }
        let value: Option<Option<Vec<u8>>> = self
            .cache
            .conn()
            .prepare_cached("SELECT value FROM task_cache WHERE key = ?")?
            .query_row([key], |r| r.get(0))
            .optional()?;
        Ok(value.map(Option::unwrap_or_default))
    }

    /// Up to `limit` rows with rowid above `after`: (rowid, key, value), in
    /// rowid order. Flyte 2 replaces a row to change it, which gives it a
    /// new rowid, so a scan from the last rowid seen finds every new entry.
    pub fn rows_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, String, Vec<u8>)>> {
        if !self.has_table("task_cache")? {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .cache
            .conn()
            .prepare_cached("SELECT rowid, key, value FROM task_cache WHERE rowid > ? ORDER BY rowid LIMIT ?")?;
        let rows = stmt.query_map(params![after, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, Option<Vec<u8>>>(2)?.unwrap_or_default()))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Stores an entry unless the key has one (an entry from another
    /// machine, docs/REMOTE.md): true when stored. A cache where Flyte 2
    /// never ran gets the table as Flyte 2 2.12 creates it (`CREATE TABLE
    /// IF NOT EXISTS` on both sides, so whoever is first makes the same).
    pub fn insert_if_absent(&self, key: &str, value: &[u8]) -> Result<bool> {
        self.cache.transact(|c| {
            c.conn().execute_batch(TASK_CACHE_SCHEMA)?;
            Ok(c.conn().execute("INSERT OR IGNORE INTO task_cache (key, value) VALUES (?, ?)", params![key, value])?
                > 0)
        })
    }

    /// Deletes an entry (the next Flyte 2 run of that task computes
    /// again); false when it was not there.
    pub fn delete(&self, key: &str) -> Result<bool> {
        if !self.has_table("task_cache")? {
            return Ok(false);
        }
        self.cache.transact(|c| Ok(c.conn().execute("DELETE FROM task_cache WHERE key = ?", params![key])? > 0))
    }

    /// Deletes every entry; returns how many there were.
    pub fn clear(&self) -> Result<u64> {
        if !self.has_table("task_cache")? {
            return Ok(0);
        }
        self.cache.transact(|c| Ok(c.conn().execute("DELETE FROM task_cache", [])? as u64))
    }

    /// The `runs` records, each a JSON object of its columns (the `inputs`
    /// and `outputs` columns, JSON text, parsed), by run and action name.
    pub fn runs(&self) -> Result<Vec<((String, String), Json)>> {
        if !self.has_table("runs")? {
            return Ok(Vec::new());
        }
        let mut stmt = self.cache.conn().prepare("SELECT * FROM runs")?;
        let names: Vec<String> = stmt.column_names().map(str::to_string).collect();
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut object = serde_json::Map::new();
            for (i, name) in names.iter().enumerate() {
                let value = match row.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => Json::Null,
                    rusqlite::types::ValueRef::Integer(n) => Json::from(n),
                    rusqlite::types::ValueRef::Real(f) => Json::from(f),
                    rusqlite::types::ValueRef::Text(t) => {
                        let text = String::from_utf8_lossy(t).into_owned();
                        match serde_json::from_str::<Json>(&text) {
                            Ok(j @ (Json::Object(_) | Json::Array(_))) => j,
                            _ => Json::String(text),
                        }
                    }
                    rusqlite::types::ValueRef::Blob(b) => Json::String(b.iter().map(|x| format!("{x:02x}")).collect()),
                };
                object.insert(name.clone(), value);
            }
            let id = |k: &str| object.get(k).and_then(Json::as_str).unwrap_or_default().to_string();
            out.push(((id("run_name"), id("action_name")), Json::Object(object)));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notes_example_row_renders_its_output() {
        // `square(x=2) -> int` from a Flyte 2 local run: output o0 = 4.
        let bytes = [0x0A, 0x0C, 0x0A, 0x02, 0x6F, 0x30, 0x12, 0x06, 0x0A, 0x04, 0x0A, 0x02, 0x08, 0x04];
        let json = outputs_json(&bytes).unwrap();
        assert_eq!(json, serde_json::json!({"o0": {"integer": 4}}), "rendered as `literals` renders flytekit's");
    }
}
