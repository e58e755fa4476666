//! Reading entries: `Cache.get` (with its fast path and, here, the value
//! cache of `read_cache.rs`), `Cache.read`, `Cache.__contains__`,
//! `Cache.pop` and `Cache.memoize`. A live row is found by
//! [`Cache::live_row`] and its value read by `Cache::fetch` (`row.rs`).

use std::fs::File;

use rusqlite::params;

use super::core::Cache;
use super::disk::FetchError;
use super::error::{Error, Result};
use super::row::{Row, Source, read_row};
use super::settings::MODE_BINARY;
use super::types::{Entry, Key, Scalar, Value};

/// What [`Cache::read`] returns: an open value file, or the value itself
/// when it is stored inline (as diskcache's `get(read=True)` does).
pub enum ReadHandle {
    File(File),
    Inline(Value),
}

impl Cache {
    /// A live entry's row, with the columns a read decodes (the
    /// `SELECT ... WHERE key = ? AND raw = ?` of core.py's `get`, `read`
    /// and `pop`, expired rows left out).
    pub(super) fn live_row(&self, key: &Key) -> Result<Option<Row>> {
        const SELECT_LIVE: &str = "SELECT rowid, expire_time, tag, mode, filename, value FROM Cache \
             WHERE key = ? AND raw = ? AND (expire_time IS NULL OR expire_time > ?)";
        let mut stmt = self.conn.prepare_cached(SELECT_LIVE)?;
        let mut rows = stmt.query(params![key, key.raw(), self.now()])?;
        match rows.next()? {
            Some(r) => Ok(Some(read_row(r)?)),
            None => Ok(None),
        }
    }

    /// The value of a live entry, or `None` (`Cache.get`).
    pub fn get(&self, key: &Key) -> Result<Option<Value>> {
        Ok(self.get_entry(key)?.map(|e| e.value))
    }

    /// The value with its expiry time and tag (`get(expire_time=True,
    /// tag=True)`). Counts a hit or miss when statistics are on and updates
    /// the access columns the eviction policy uses.
    pub fn get_entry(&self, key: &Key) -> Result<Option<Entry>> {
        let (statistics, policy) = {
            let s = self.settings.borrow();
            (s.statistics(), s.eviction_policy())
        };
        let update = policy.get_update_sql();
        if self.read_only || (!statistics && update.is_none()) {
            // Fast path, no transaction necessary. Repeated gets are served
            // from the value cache while the database is unchanged.
            let now = self.now();
            let header =
                if self.txn_depth.get() == 0 { self.wal_watch.as_ref().and_then(|w| w.header()) } else { None };
            if let Some(header) = header {
                let mut cached = self.value_cache.borrow_mut();
                cached.validate(header);
                if let Some(entry) = cached.get(key)
                    && entry.expire_time.is_none_or(|t| t > now)
                {
                    let entry = entry.clone();
                    cached.hits += 1;
                    return Ok(Some(entry));
                }
            }
            let Some(row) = self.live_row(key)? else {
                return Ok(None);
            };
            let entry = self.fetch(&row)?.map(|value| Entry { value, expire_time: row.expire_time, tag: row.tag });
            if header.is_some()
                && row.filename.is_none()
                && let Some(entry) = &entry
            {
                self.value_cache.borrow_mut().insert(key, entry);
            }
            return Ok(entry);
        }
        // Slow path, transaction required.
        const HIT: &str = "UPDATE Settings SET value = value + 1 WHERE key = \"hits\"";
        const MISS: &str = "UPDATE Settings SET value = value + 1 WHERE key = \"misses\"";
        self.in_transaction(|| {
            let count = |sql| -> Result<()> {
                if statistics {
                    self.conn.prepare_cached(sql)?.execute([])?;
                }
                Ok(())
            };
            let Some(row) = self.live_row(key)? else {
                count(MISS)?;
                return Ok(None);
            };
            let Some(value) = self.fetch(&row)? else {
                count(MISS)?;
                return Ok(None);
            };
            count(HIT)?;
            if let Some(sql) = update {
                self.conn.prepare_cached(sql)?.execute(params![self.now(), row.rowid])?;
            }
            Ok(Some(Entry { value, expire_time: row.expire_time, tag: row.tag }))
        })
    }

    /// A live entry's value as an open file when it is file-backed, else the
    /// value itself (`Cache.read` / `get(read=True)`).
    pub fn read(&self, key: &Key) -> Result<Option<ReadHandle>> {
        let Some(row) = self.live_row(key)? else {
            return Ok(None);
        };
        if let Source::File { name, mode: MODE_BINARY } = row.source()? {
            return match self.disk.open_value(name) {
                Ok(f) => Ok(Some(ReadHandle::File(f))),
                Err(FetchError::Missing) => Ok(None),
                Err(FetchError::Unsafe) => Err(self.unsafe_filename(row.rowid, name)),
                Err(FetchError::Io(e)) => Err(self.io_err(name, e)),
            };
        }
        Ok(self.fetch(&row)?.map(ReadHandle::Inline))
    }

    /// Whether a live entry exists (`key in cache`).
    pub fn contains(&self, key: &Key) -> Result<bool> {
        let now = self.now();
        Ok(self.key_row(key)?.is_some_and(|r| r.is_live(now)))
    }

    /// Removes a live entry and returns it (`Cache.pop`).
    pub fn pop(&self, key: &Key) -> Result<Option<Entry>> {
        let row = self.in_transaction(|| {
            let row = self.live_row(key)?;
            if let Some(r) = &row {
                self.conn.prepare_cached("DELETE FROM Cache WHERE rowid = ?")?.execute([r.rowid])?;
            }
            Ok(row)
        })?;
        let Some(row) = row else { return Ok(None) };
        let value = self.fetch(&row);
        if let Some(name) = &row.filename {
            self.disk.remove(name);
        }
        Ok(value?.map(|value| Entry { value, expire_time: row.expire_time, tag: row.tag }))
    }

    /// Get-or-compute (`Cache.memoize` without the decorator): returns the
    /// cached value of `key`, or runs `compute`, stores its result (unless
    /// `expire` is `Some(0.0)` or less, as diskcache skips storing) and
    /// returns it.
    pub fn memoize<E>(
        &self,
        key: &Key,
        expire: Option<f64>,
        tag: Option<&Scalar>,
        compute: impl FnOnce() -> std::result::Result<Value, E>,
    ) -> std::result::Result<Value, E>
    where
        E: From<Error>,
    {
        if let Some(value) = self.get(key)? {
            return Ok(value);
        }
        let value = compute()?;
        if expire.is_none_or(|e| e > 0.0) {
            self.set(key, &value, expire, tag)?;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::cache::testing::{TestCache, key};

    #[test]
    fn get_read_pop_and_memoize_agree_on_liveness() {
        let t = TestCache::new();
        let tag = Scalar::Str("t".into());
        t.set(&key("file"), &Value::Bytes(vec![3; 40_000]), Some(10.0), Some(&tag)).unwrap();
        t.set(&key("inline"), &Value::Str("small".into()), None, None).unwrap();
        let entry = t.get_entry(&key("file")).unwrap().unwrap();
        assert_eq!((entry.expire_time, entry.tag), (Some(crate::cache::testing::START + 10.0), Some(tag)));
        match t.read(&key("file")).unwrap() {
            Some(ReadHandle::File(mut f)) => {
                let mut data = Vec::new();
                f.read_to_end(&mut data).unwrap();
                assert_eq!(data, vec![3; 40_000]);
            }
            _ => panic!("a file-backed bytes value reads as its file"),
        }
        assert!(matches!(t.read(&key("inline")).unwrap(), Some(ReadHandle::Inline(Value::Str(s))) if s == "small"));
        assert!(t.contains(&key("file")).unwrap());
        t.advance(10.0);
        assert_eq!(t.get(&key("file")).unwrap(), None, "expired at its expire_time");
        assert!(t.read(&key("file")).unwrap().is_none());
        assert!(t.pop(&key("file")).unwrap().is_none());

        let popped = t.pop(&key("inline")).unwrap().unwrap();
        assert_eq!(popped.value, Value::Str("small".into()));
        assert!(t.get(&key("inline")).unwrap().is_none());

        let mut calls = 0;
        let mut compute = || -> Result<Value> {
            calls += 1;
            Ok(Value::Int(42))
        };
        assert_eq!(t.memoize(&key("m"), None, None, &mut compute).unwrap(), Value::Int(42));
        assert_eq!(t.memoize(&key("m"), None, None, &mut compute).unwrap(), Value::Int(42));
        assert_eq!(calls, 1, "the second call is served from the cache");
    }
}
