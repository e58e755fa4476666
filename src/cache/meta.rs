//! What a file-system view needs beyond diskcache's API: an entry's
//! metadata without its value (for `stat` and listings), its stored bytes
//! without decoding (for reading as a file), renaming a key in place,
//! setting its times, and replacing its value while keeping its tag and
//! expiry. Same transaction rules as `core.rs`.

use std::collections::HashMap;
use std::fs::File;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{OptionalExtension, params};

use super::core::{Attr, Cache, Stored, scalar_from_owned};
use super::disk::FetchError;
use super::error::{Error, Result};
use super::settings::{EvictionPolicy, MODE_BINARY, MODE_PICKLE, MODE_RAW, MODE_TEXT};
use super::types::{Key, Scalar};

/// The inline `value` column, described without copying a large one.
#[derive(Clone, Debug, PartialEq)]
pub enum InlineMeta {
    /// NULL: the value is in a file.
    None,
    Int(i64),
    Float(f64),
    /// TEXT of this many UTF-8 bytes.
    Text(u64),
    /// BLOB of this many bytes.
    Blob(u64),
}

/// One live entry's columns, value aside.
#[derive(Clone, Debug, PartialEq)]
pub struct EntryMeta {
    pub rowid: i64,
    pub key: Key,
    pub store_time: f64,
    pub expire_time: Option<f64>,
    pub access_time: f64,
    pub tag: Option<Scalar>,
    /// The `size` column: bytes in the value file (0 when inline).
    pub size: i64,
    pub mode: i64,
    pub filename: Option<String>,
    pub inline: InlineMeta,
}

/// The Python type of the value `mode` and `value` describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    Bytes,
    Str,
    Int,
    Float,
    Pickle,
    /// A raw NULL (python-diskcache's `float('nan')`, read back as `None`).
    None,
}

impl ValueType {
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Bytes => "bytes",
            ValueType::Str => "str",
            ValueType::Int => "int",
            ValueType::Float => "float",
            ValueType::Pickle => "pickle",
            ValueType::None => "none",
        }
    }

    pub fn from_name(name: &str) -> Option<ValueType> {
        Some(match name {
            "bytes" => ValueType::Bytes,
            "str" => ValueType::Str,
            "int" => ValueType::Int,
            "float" => ValueType::Float,
            "pickle" => ValueType::Pickle,
            "none" => ValueType::None,
            _ => return None,
        })
    }
}

impl EntryMeta {
    /// The length of the entry's content as a file shows it (an int or
    /// float as Python writes it), from the columns alone.
    pub fn content_len(&self) -> u64 {
        match self.inline {
            InlineMeta::None => self.size.max(0) as u64,
            InlineMeta::Int(i) => i.to_string().len() as u64,
            InlineMeta::Float(f) => super::pyrepr::python_float_repr(f).len() as u64,
            InlineMeta::Text(n) | InlineMeta::Blob(n) => n,
        }
    }

    pub fn value_type(&self) -> ValueType {
        match (self.mode, &self.inline) {
            (MODE_RAW, InlineMeta::Int(_)) => ValueType::Int,
            (MODE_RAW, InlineMeta::Float(_)) => ValueType::Float,
            (MODE_RAW, InlineMeta::Text(_)) | (MODE_TEXT, _) => ValueType::Str,
            (MODE_RAW, InlineMeta::None) => ValueType::None,
            (MODE_PICKLE, _) => ValueType::Pickle,
            _ => ValueType::Bytes,
        }
    }
}

/// An entry's stored bytes: inline (the column's value) or its value file,
/// opened. A file stays readable after the entry changes or is deleted.
pub enum RawContent {
    Inline(Scalar),
    File(File),
    /// A raw NULL: no content (see [`ValueType::None`]).
    Null,
}

/// The new value for [`Cache::replace_value`], already in its final form.
pub enum NewValue {
    /// Any value the engine stores itself (inline or in a new file).
    Value(super::types::Value),
    /// A str kept in the row whatever its length. python-diskcache reads a
    /// str value file with universal newlines (`\r` and `\r\n` become
    /// `\n`), so a str holding `\r` round-trips exactly only inline; any
    /// reader takes a long inline str.
    InlineStr(String),
    /// A value file the caller wrote in the cache directory (see
    /// [`super::disk::Disk::create_exclusive`]) holding `size` bytes of a
    /// value of this type (bytes, str as UTF-8, or a pickle).
    File { filename: String, size: u64, value_type: ValueType },
}

/// Where [`Cache::list_meta_by_key`] starts.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyFrom {
    Start,
    /// Just after this key.
    After(Key),
    /// At this str or after it.
    AtOrAfter(String),
}

const META_COLUMNS: &str = "rowid, key, raw, store_time, expire_time, access_time, tag, size, mode, filename, \
     typeof(value), CASE WHEN typeof(value) IN ('integer', 'real') THEN value END, length(CAST(value AS BLOB))";

fn read_meta(r: &rusqlite::Row<'_>) -> Result<EntryMeta> {
    let rowid: i64 = r.get(0)?;
    let corrupt = |reason: String| Error::CorruptRow { rowid, reason };
    let raw: i64 = r.get(2)?;
    let key = Key::from_sql(r.get_ref(1)?, raw != 0).map_err(corrupt)?;
    let real = |i: usize| -> Result<Option<f64>> {
        Ok(match r.get_ref(i)? {
            ValueRef::Null => None,
            ValueRef::Real(f) => Some(f),
            ValueRef::Integer(n) => Some(n as f64),
            other => return Err(corrupt(format!("column {i} is {:?}", other.data_type()))),
        })
    };
    let tag = Scalar::from_sql(r.get_ref(6)?).map_err(|e| corrupt(format!("tag: {e}")))?;
    let kind: String = r.get(10)?;
    let len = r.get::<_, Option<i64>>(12)?.unwrap_or(0).max(0) as u64;
    let inline = match kind.as_str() {
        "null" => InlineMeta::None,
        "integer" => InlineMeta::Int(r.get(11)?),
        "real" => InlineMeta::Float(r.get(11)?),
        "text" => InlineMeta::Text(len),
        _ => InlineMeta::Blob(len),
    };
    let filename = match r.get_ref(9)? {
        ValueRef::Null => None,
        ValueRef::Text(t) => Some(String::from_utf8(t.to_vec()).map_err(|_| corrupt("filename is not UTF-8".into()))?),
        other => return Err(corrupt(format!("filename is {:?}", other.data_type()))),
    };
    Ok(EntryMeta {
        rowid,
        key,
        store_time: real(3)?.unwrap_or(0.0),
        expire_time: real(4)?,
        access_time: real(5)?.unwrap_or(0.0),
        tag,
        size: r.get::<_, Option<i64>>(7)?.unwrap_or(0),
        mode: r.get::<_, Option<i64>>(8)?.unwrap_or(0),
        filename,
        inline,
    })
}

impl Cache {
    /// A live entry's metadata, or `None` when missing or expired.
    pub fn entry_meta(&self, key: &Key) -> Result<Option<EntryMeta>> {
        let sql = format!(
            "SELECT {META_COLUMNS} FROM Cache WHERE key = ? AND raw = ? AND (expire_time IS NULL OR expire_time > ?)"
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let mut rows = stmt.query(params![key, key.raw(), self.now()])?;
        match rows.next()? {
            Some(r) => Ok(Some(read_meta(r)?)),
            None => Ok(None),
        }
    }

    /// The entries of a listing's rows: a row that cannot be decoded is
    /// logged and skipped.
    fn listing(&self, mut rows: rusqlite::Rows<'_>) -> Result<Vec<EntryMeta>> {
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            match read_meta(r) {
                Ok(m) => out.push(m),
                Err(e) => log::error!("{}: skipping a row in a listing: {e}", self.directory().display()),
            }
        }
        Ok(out)
    }

    /// Up to `limit` live entries with rowid above `after`, in rowid order:
    /// a listing that streams and resumes from the last rowid it returned.
    /// A row that cannot be decoded is logged and skipped.
    pub fn list_meta(&self, after: i64, limit: usize) -> Result<Vec<EntryMeta>> {
        let sql = format!(
            "SELECT {META_COLUMNS} FROM Cache WHERE rowid > ? AND (expire_time IS NULL OR expire_time > ?) \
             ORDER BY rowid LIMIT ?"
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query(params![after, self.now(), limit as i64])?;
        self.listing(rows)
    }

    /// The highest rowid in the table (0 when empty): rows added later
    /// are above it (SQLite gives a new row the highest rowid plus one).
    pub fn max_rowid(&self) -> Result<i64> {
        Ok(self.conn().query_row("SELECT COALESCE(MAX(rowid), 0) FROM Cache", [], |r| r.get(0))?)
    }

    /// Up to `limit` live entries stored at or after `since` (diskcache's
    /// `store_time`, the time of the last `set`), in (`store_time`, rowid)
    /// order after (`since`, `after_rowid`): a listing of what was set
    /// since a time, which resumes from its last entry (diskcache's
    /// `Cache_store_time` index serves it).
    pub fn list_meta_stored_since(&self, since: f64, after_rowid: i64, limit: usize) -> Result<Vec<EntryMeta>> {
        let sql = format!(
            "SELECT {META_COLUMNS} FROM Cache WHERE (store_time > ?1 OR (store_time = ?1 AND rowid > ?2)) \
             AND (expire_time IS NULL OR expire_time > ?3) ORDER BY store_time, rowid LIMIT ?4"
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query(params![since, after_rowid, self.now(), limit as i64])?;
        self.listing(rows)
    }

    /// Up to `limit` live entries in SQLite's order of keys (numbers, then
    /// str bytewise, then bytes and pickles; a raw key before a pickled one
    /// of the same bytes), from `from`, and below the str `below` if given:
    /// a listing of the keys that share a prefix, which resumes from the
    /// last key it returned (the mount's directories under `keys/`).
    pub fn list_meta_by_key(&self, from: &KeyFrom, below: Option<&str>, limit: usize) -> Result<Vec<EntryMeta>> {
        let start = match from {
            KeyFrom::Start => "1",
            KeyFrom::After(_) => "(key, raw) > (?4, ?5)",
            KeyFrom::AtOrAfter(_) => "key >= ?4",
        };
        let end = if below.is_some() { "key < ?3" } else { "?3 IS NULL" };
        let sql = format!(
            "SELECT {META_COLUMNS} FROM Cache WHERE {start} AND {end} AND (expire_time IS NULL OR expire_time > ?1) \
             ORDER BY key, raw LIMIT ?2"
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let now = self.now();
        let rows = match from {
            KeyFrom::Start => stmt.query(params![now, limit as i64, below])?,
            KeyFrom::After(k) => stmt.query(params![now, limit as i64, below, k, k.raw()])?,
            KeyFrom::AtOrAfter(s) => stmt.query(params![now, limit as i64, below, s])?,
        };
        self.listing(rows)
    }

    /// Whether a live str key lies in `[from, below)` (a directory of the
    /// mount's `keys/` has something in it).
    /// The earliest `expire_time` after `t`, if any (through diskcache's
    /// `Cache_expire_time` index): when the next entry stops being live.
    pub fn next_expiry_after(&self, t: f64) -> Result<Option<f64>> {
        let mut stmt = self.conn().prepare_cached("SELECT min(expire_time) FROM Cache WHERE expire_time > ?")?;
        Ok(stmt.query_row(params![t], |r| r.get(0))?)
    }

    pub fn has_live_str_key_in(&self, from: &str, below: &str) -> Result<bool> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT 1 FROM Cache WHERE key >= ? AND key < ? AND (expire_time IS NULL OR expire_time > ?) LIMIT 1",
        )?;
        Ok(stmt.exists(params![from, below, self.now()])?)
    }

    /// Whether a live entry carries `tag` (`tags/T` exists): stops at the
    /// first one, through `Cache_tag_rowid` when the tag index is on.
    pub fn tag_in_use(&self, tag: &Scalar) -> Result<bool> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT 1 FROM Cache WHERE tag = ? AND (expire_time IS NULL OR expire_time > ?) LIMIT 1")?;
        Ok(stmt.exists(params![tag, self.now()])?)
    }

    /// The distinct tags of live entries (`tags/` in the mount).
    pub fn live_tags(&self) -> Result<Vec<Scalar>> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT DISTINCT tag FROM Cache WHERE tag IS NOT NULL AND (expire_time IS NULL OR expire_time > ?)",
        )?;
        let mut rows = stmt.query([self.now()])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            if let Ok(Some(tag)) = Scalar::from_sql(r.get_ref(0)?) {
                out.push(tag);
            }
        }
        Ok(out)
    }

    /// Up to `limit` live entries tagged `tag` with rowid above `after`, in
    /// rowid order (a listing of `tags/TAG/`).
    pub fn list_tagged(&self, tag: &Scalar, after: i64, limit: usize) -> Result<Vec<EntryMeta>> {
        let sql = format!(
            "SELECT {META_COLUMNS} FROM Cache WHERE tag = ? AND rowid > ? \
             AND (expire_time IS NULL OR expire_time > ?) ORDER BY rowid LIMIT ?"
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query(params![tag, after, self.now(), limit as i64])?;
        self.listing(rows)
    }

    /// Up to `limit` live keys of the queue `prefix` (the integer queue when
    /// `None`) after `after`, in queue (key) order: the keys diskcache's
    /// `pull` and `peek` consider, strictly between the queue's bounds.
    pub fn queue_keys(&self, prefix: Option<&str>, after: Option<&Key>, limit: usize) -> Result<Vec<Key>> {
        let (min, max) = Cache::queue_bounds(prefix);
        let low = after.unwrap_or(&min);
        let mut stmt = self.conn().prepare_cached(
            "SELECT key FROM Cache WHERE ? < key AND key < ? AND raw = 1 \
             AND (expire_time IS NULL OR expire_time > ?) ORDER BY key LIMIT ?",
        )?;
        let mut rows = stmt.query(params![low, max, self.now(), limit as i64])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            match Key::from_sql(r.get_ref(0)?, true) {
                Ok(k) => out.push(k),
                Err(e) => log::error!("{}: skipping a queue key: {e}", self.directory().display()),
            }
        }
        Ok(out)
    }

    /// The queues that live entries form: the prefixes `P` of str keys
    /// `P-NNNNNNNNNNNNNNN` (15 digits, as `push` makes them), sorted, and
    /// whether the integer queue has items.
    pub fn queue_names(&self) -> Result<(Vec<String>, bool)> {
        let glob = format!("*-{}", "[0-9]".repeat(15));
        let now = self.now();
        let mut stmt = self.conn().prepare_cached(
            "SELECT DISTINCT substr(key, 1, length(key) - 16) FROM Cache WHERE raw = 1 AND typeof(key) = 'text' \
             AND key GLOB ? AND (expire_time IS NULL OR expire_time > ?) ORDER BY 1",
        )?;
        let prefixes =
            stmt.query_map(params![glob, now], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<_>>()?;
        let ints: Option<i64> = self
            .conn()
            .prepare_cached(
                "SELECT 1 FROM Cache WHERE 0 < key AND key < 999999999999999 AND raw = 1 AND typeof(key) = 'integer' \
                 AND (expire_time IS NULL OR expire_time > ?) LIMIT 1",
            )?
            .query_row([now], |r| r.get(0))
            .optional()?;
        Ok((prefixes, ints.is_some()))
    }

    /// Live str keys that look like Flyte task cache keys: they end in `-`
    /// and 32 lowercase hex digits (`{task}-{version}-{md5}`), sorted.
    pub fn task_keys(&self) -> Result<Vec<String>> {
        let glob = format!("*?-?*-{}", "[0-9a-f]".repeat(32));
        let mut stmt = self.conn().prepare_cached(
            "SELECT key FROM Cache WHERE raw = 1 AND typeof(key) = 'text' AND key GLOB ? \
             AND (expire_time IS NULL OR expire_time > ?) ORDER BY key",
        )?;
        let keys =
            stmt.query_map(params![glob, self.now()], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(keys)
    }

    /// A live entry's metadata and stored bytes, counted as a `get` (a hit
    /// or miss with statistics on, and the eviction policy's access
    /// update), for reading it as a file. `None` when missing, expired, or
    /// its value file vanished (a miss, as in diskcache).
    pub fn open_raw(&self, key: &Key) -> Result<Option<(EntryMeta, RawContent)>> {
        // The row and its file can change between the SELECT and the open
        // (a peer replaces the value); look again once before calling it a miss.
        for _ in 0..3 {
            let Some(meta) = self.entry_meta(key)? else {
                self.record_access(None)?;
                return Ok(None);
            };
            if !(MODE_RAW..=MODE_PICKLE).contains(&meta.mode) {
                // python-diskcache's fetch knows modes 1 to 4 only.
                return Err(Error::CorruptRow { rowid: meta.rowid, reason: format!("unknown mode {}", meta.mode) });
            }
            if meta.filename.is_none() && (meta.mode == MODE_BINARY || meta.mode == MODE_TEXT) {
                // core.py would open a file named None: nothing it wrote.
                return Err(Error::CorruptRow {
                    rowid: meta.rowid,
                    reason: format!("mode {} without a value file", meta.mode),
                });
            }
            if meta.filename.is_none() && meta.mode == MODE_PICKLE && !matches!(meta.inline, InlineMeta::Blob(_)) {
                return Err(Error::CorruptRow {
                    rowid: meta.rowid,
                    reason: "an inline pickle that is not a BLOB".into(),
                });
            }
            let content = match (&meta.filename, meta.mode) {
                (Some(name), MODE_BINARY | MODE_TEXT | MODE_PICKLE) => match self.disk().open_value(name) {
                    Ok(f) => RawContent::File(f),
                    Err(FetchError::Missing) => continue,
                    Err(FetchError::Unsafe) => return Err(self.unsafe_filename(meta.rowid, name)),
                    Err(FetchError::Io(e)) => return Err(self.io_err(name, e)),
                },
                _ => {
                    // The value of the version `meta` describes, or none: a
                    // peer may have updated the row (python-diskcache's
                    // `set` of an existing key rewrites it in place, a new
                    // store_time each time) or deleted it since; then look
                    // again, never serve one version's value under
                    // another's columns (an empty read, a wrong size).
                    let value: Option<SqlValue> = self
                        .conn()
                        .prepare_cached(
                            "SELECT value FROM Cache WHERE rowid = ? AND store_time = ? AND mode = ? \
                             AND filename IS NULL AND size = ?",
                        )?
                        .query_row(params![meta.rowid, meta.store_time, meta.mode, meta.size], |r| r.get(0))
                        .optional()?;
                    let Some(value) = value else { continue };
                    match scalar_from_owned(value) {
                        Some(v) => RawContent::Inline(v),
                        None if meta.mode == MODE_RAW => RawContent::Null,
                        None if meta.mode == MODE_PICKLE => {
                            return Err(Error::CorruptRow { rowid: meta.rowid, reason: "inline value is NULL".into() });
                        }
                        None => {
                            return Err(Error::CorruptRow {
                                rowid: meta.rowid,
                                reason: format!("mode {} without a value file", meta.mode),
                            });
                        }
                    }
                }
            };
            self.record_access(Some(meta.rowid))?;
            return Ok(Some((meta, content)));
        }
        self.record_access(None)?;
        Ok(None)
    }

    /// The bookkeeping of a `get`: statistics and the policy's access column.
    fn record_access(&self, hit: Option<i64>) -> Result<()> {
        let (policy, statistics) = self.policy_and_statistics();
        let update = policy.get_update_sql();
        if self.is_read_only() || (!statistics && update.is_none()) {
            return Ok(());
        }
        self.in_transaction(|| {
            if statistics {
                let which = if hit.is_some() { "hits" } else { "misses" };
                self.conn().prepare_cached("UPDATE Settings SET value = value + 1 WHERE key = ?")?.execute([which])?;
            }
            if let (Some(rowid), Some(sql)) = (hit, update) {
                self.conn().prepare_cached(sql)?.execute(params![self.now(), rowid])?;
            }
            Ok(())
        })
    }

    /// Replaces `key`'s value (creating the entry if needed), with each of
    /// expiry and tag either given or kept from the live entry. Returns the
    /// `store_time` it wrote (the version a caller may remember without
    /// reading the row again).
    pub fn replace_value(
        &self,
        key: &Key,
        value: NewValue,
        expire_time: Attr<Option<f64>>,
        tag: Attr<Option<Scalar>>,
    ) -> Result<f64> {
        let stored = match value {
            NewValue::Value(v) => self.store(&v)?,
            NewValue::InlineStr(s) => Stored { size: 0, mode: MODE_RAW, filename: None, inline: Some(Scalar::Str(s)) },
            NewValue::File { filename, size, value_type } => {
                let mode = match value_type {
                    ValueType::Str => MODE_TEXT,
                    ValueType::Pickle => MODE_PICKLE,
                    _ => MODE_BINARY,
                };
                Stored { size: size as i64, mode, filename: Some(filename), inline: None }
            }
        };
        let now = self.now();
        self.set_stored_with(key, now, expire_time, tag, stored)?;
        Ok(now)
    }

    /// Renames a live entry in place, keeping its value, tag, expiry, times
    /// and rowid. An existing `new` entry is replaced (its value file
    /// removed) unless `replace` is false.
    pub fn rename(&self, old: &Key, new: &Key, replace: bool) -> Result<RenameOutcome> {
        let now = self.now();
        self.in_transaction(|| {
            const LIVE: &str = "SELECT rowid FROM Cache WHERE key = ? AND raw = ? \
                 AND (expire_time IS NULL OR expire_time > ?)";
            let Some(rowid): Option<i64> =
                self.conn().prepare_cached(LIVE)?.query_row(params![old, old.raw(), now], |r| r.get(0)).optional()?
            else {
                return Ok(RenameOutcome::SourceMissing);
            };
            // Any row under the new key, live or expired, must go (the key
            // index is unique); a live one only if replacing is allowed.
            let target: Option<(i64, Option<String>, Option<f64>)> = self
                .conn()
                .prepare_cached("SELECT rowid, filename, expire_time FROM Cache WHERE key = ? AND raw = ?")?
                .query_row(params![new, new.raw()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            if let Some((target_rowid, filename, expire)) = target {
                if target_rowid == rowid {
                    return Ok(RenameOutcome::Renamed);
                }
                if !replace && expire.is_none_or(|t| t > now) {
                    return Ok(RenameOutcome::TargetExists);
                }
                self.conn().prepare_cached("DELETE FROM Cache WHERE rowid = ?")?.execute([target_rowid])?;
                self.cleanup_later(filename);
            }
            self.conn().prepare_cached("UPDATE Cache SET key = ?, raw = ? WHERE rowid = ?")?.execute(params![
                new,
                new.raw(),
                rowid
            ])?;
            Ok(RenameOutcome::Renamed)
        })
    }

    /// Sets a live entry's store and access times (`utimensat`); false when
    /// missing or expired.
    pub fn set_times(&self, key: &Key, store_time: Option<f64>, access_time: Option<f64>) -> Result<bool> {
        let now = self.now();
        self.in_transaction(|| {
            let n = self
                .conn()
                .prepare_cached(
                    "UPDATE Cache SET store_time = COALESCE(?, store_time), access_time = COALESCE(?, access_time) \
                     WHERE key = ? AND raw = ? AND (expire_time IS NULL OR expire_time > ?)",
                )?
                .execute(params![store_time, access_time, key, key.raw(), now])?;
            Ok(n > 0)
        })
    }
}

/// The bookkeeping of gets made without it (a file system's readers):
/// applied later in one transaction by [`Cache::apply_accesses`].
#[derive(Clone, Debug, Default)]
pub struct AccessLog {
    pub hits: u64,
    pub misses: u64,
    /// By rowid: the latest access time and the number of gets.
    pub rows: HashMap<i64, (f64, u64)>,
}

impl AccessLog {
    pub fn is_empty(&self) -> bool {
        self.hits == 0 && self.misses == 0
    }

    /// Adds another log's counts (a batch that could not be applied yet).
    pub fn merge(&mut self, other: AccessLog) {
        self.hits += other.hits;
        self.misses += other.misses;
        for (rowid, (time, count)) in other.rows {
            let row = self.rows.entry(rowid).or_insert((time, 0));
            row.0 = row.0.max(time);
            row.1 += count;
        }
    }
}

impl Cache {
    /// Applies gets' bookkeeping gathered while they ran without the write
    /// lock: the statistics counters (with statistics on) and the eviction
    /// policy's access column, as each get would have (`Cache.get`'s
    /// `'get'` clause). A row deleted since is skipped by its UPDATE.
    pub fn apply_accesses(&self, log: &AccessLog) -> Result<()> {
        let (policy, statistics) = self.policy_and_statistics();
        if self.is_read_only() || (!statistics && policy.get_update_sql().is_none()) {
            return Ok(());
        }
        self.in_transaction(|| {
            if statistics {
                let mut stmt = self.conn().prepare_cached("UPDATE Settings SET value = value + ? WHERE key = ?")?;
                stmt.execute(params![log.hits as i64, "hits"])?;
                stmt.execute(params![log.misses as i64, "misses"])?;
            }
            match policy {
                EvictionPolicy::LeastRecentlyUsed => {
                    let mut stmt = self.conn().prepare_cached("UPDATE Cache SET access_time = ? WHERE rowid = ?")?;
                    for (rowid, (time, _)) in &log.rows {
                        stmt.execute(params![*time, *rowid])?;
                    }
                }
                EvictionPolicy::LeastFrequentlyUsed => {
                    let mut stmt = self
                        .conn()
                        .prepare_cached("UPDATE Cache SET access_count = access_count + ? WHERE rowid = ?")?;
                    for (rowid, (_, count)) in &log.rows {
                        stmt.execute(params![*count as i64, *rowid])?;
                    }
                }
                EvictionPolicy::None | EvictionPolicy::LeastRecentlyStored => {}
            }
            Ok(())
        })
    }
}

/// What [`Cache::rename`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameOutcome {
    Renamed,
    SourceMissing,
    TargetExists,
}
