//! Removal in bulk: `Cache.evict` (by tag), `Cache.expire`, `Cache.clear`
//! and `Cache.cull`, which delete in batches through `_select_delete`, and
//! `Cache._cull`, the culling every write runs in its own transaction.

use rusqlite::params;
use rusqlite::types::Value as SqlValue;

use super::core::Cache;
use super::error::{Error, Result};
use super::row::scalar_to_owned;
use super::types::Scalar;

impl Cache {
    /// `Cache._cull`, inside a write's transaction: up to `limit` (default
    /// `cull_limit`) expired entries, then, when the volume has reached
    /// `size_limit`, up to the rest of the limit in eviction-policy order.
    pub(super) fn cull_in_transaction(&self, now: f64, limit: Option<i64>) -> Result<()> {
        let mut cull_limit = limit.unwrap_or_else(|| self.settings.borrow().cull_limit());
        if cull_limit <= 0 {
            return Ok(());
        }
        // Evict expired keys.
        const SELECT_EXPIRED: &str = "SELECT filename FROM Cache WHERE expire_time IS NOT NULL \
             AND expire_time < ?1 ORDER BY expire_time LIMIT ?2";
        const DELETE_EXPIRED: &str = "DELETE FROM Cache WHERE rowid IN (SELECT rowid FROM Cache \
             WHERE expire_time IS NOT NULL AND expire_time < ?1 ORDER BY expire_time LIMIT ?2)";
        let names = self.filenames(SELECT_EXPIRED, params![now, cull_limit])?;
        if !names.is_empty() {
            self.conn.prepare_cached(DELETE_EXPIRED)?.execute(params![now, cull_limit])?;
            cull_limit -= names.len() as i64;
            for name in names {
                self.cleanup_later(name);
            }
            if cull_limit == 0 {
                return Ok(());
            }
        }
        // Evict keys by policy.
        let policy = self.settings.borrow().eviction_policy();
        let Some((select, delete)) = policy.cull_sql() else { return Ok(()) };
        if (self.volume()? as f64) < self.settings.borrow().size_limit_f64() {
            return Ok(());
        }
        let names = self.filenames(select, params![cull_limit])?;
        if !names.is_empty() {
            self.conn.prepare_cached(delete)?.execute(params![cull_limit])?;
            for name in names {
                self.cleanup_later(name);
            }
        }
        Ok(())
    }

    /// The `filename` column of the rows `sql` selects.
    fn filenames(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Option<String>>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params, |r| r.get::<_, Option<String>>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes every entry tagged `tag` (`Cache.evict`); returns the count.
    pub fn evict(&self, tag: &Scalar) -> Result<u64> {
        const SELECT: &str = "SELECT rowid, rowid, filename FROM Cache WHERE tag = ?1 AND rowid > ?2 \
             ORDER BY rowid LIMIT ?3";
        self.select_delete(SELECT, vec![scalar_to_owned(tag)], SqlValue::Integer(0))
    }

    /// Removes entries that expired before `now` (default: the clock's now)
    /// (`Cache.expire`); returns the count.
    pub fn expire(&self, now: Option<f64>) -> Result<u64> {
        const SELECT: &str = "SELECT rowid, expire_time, filename FROM Cache \
             WHERE ?2 < expire_time AND expire_time < ?1 ORDER BY expire_time LIMIT ?3";
        let now = now.filter(|n| *n != 0.0).unwrap_or_else(|| self.now());
        self.select_delete(SELECT, vec![SqlValue::Real(now)], SqlValue::Integer(0))
    }

    /// Removes every entry (`Cache.clear`); returns the count.
    pub fn clear(&self) -> Result<u64> {
        const SELECT: &str = "SELECT rowid, rowid, filename FROM Cache WHERE rowid > ?1 ORDER BY rowid LIMIT ?2";
        self.select_delete(SELECT, vec![], SqlValue::Integer(0))
    }

    /// Deletes in batches of 100, one transaction each, so that other
    /// processes can write between batches. `select` takes the `fixed`
    /// parameters, then the cursor, then the limit, and returns
    /// `(rowid, next cursor, filename)`.
    fn select_delete(&self, select: &str, fixed: Vec<SqlValue>, mut cursor: SqlValue) -> Result<u64> {
        let mut count = 0u64;
        loop {
            let batch = self.in_transaction(|| {
                let mut args = fixed.clone();
                args.push(cursor.clone());
                args.push(SqlValue::Integer(100));
                let rows: Vec<(i64, SqlValue, Option<String>)> = {
                    let mut stmt = self.conn.prepare_cached(select)?;
                    let mapped = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?;
                    mapped.collect::<rusqlite::Result<_>>()?
                };
                if rows.is_empty() {
                    return Ok(None);
                }
                let ids: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
                self.conn.execute(&format!("DELETE FROM Cache WHERE rowid IN ({})", ids.join(",")), [])?;
                let next = rows.last().map(|r| r.1.clone());
                let n = rows.len() as u64;
                for (_, _, name) in rows {
                    self.cleanup_later(name);
                }
                Ok(next.map(|c| (c, n)))
            });
            match batch {
                Ok(Some((next, n))) => {
                    cursor = next;
                    count += n;
                }
                Ok(None) => return Ok(count),
                Err(Error::Timeout { .. }) => return Err(Error::Timeout { removed: count }),
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes expired entries, then entries in eviction-policy order until
    /// the volume is below `size_limit` (`Cache.cull`); returns the count.
    pub fn cull(&self) -> Result<u64> {
        let now = self.now();
        let mut count = self.expire(Some(now))?;
        let policy = self.settings.borrow().eviction_policy();
        let Some((select, delete)) = policy.cull_sql() else { return Ok(0) };
        while (self.volume()? as f64) > self.settings.borrow().size_limit_f64() {
            let n = self.in_transaction(|| {
                let names = self.filenames(select, params![10])?;
                if names.is_empty() {
                    return Ok(0);
                }
                self.conn.prepare_cached(delete)?.execute(params![10])?;
                let n = names.len() as u64;
                for name in names {
                    self.cleanup_later(name);
                }
                Ok(n)
            });
            match n {
                Ok(0) => break,
                Ok(n) => count += n,
                Err(Error::Timeout { .. }) => return Err(Error::Timeout { removed: count }),
                Err(e) => return Err(e),
            }
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{TestCache, int, key};
    use crate::cache::types::Value;

    fn file(n: u8) -> Value {
        Value::Bytes(vec![n; 40_000])
    }

    #[test]
    fn expire_evict_and_clear_count_what_they_remove() {
        let t = TestCache::new();
        let tag = Scalar::Str("grp".into());
        for i in 0..3 {
            t.set(&key(&format!("short{i}")), &file(i), Some(10.0), None).unwrap();
        }
        for i in 0..2 {
            t.set(&key(&format!("tagged{i}")), &Value::Int(i.into()), None, Some(&tag)).unwrap();
        }
        for i in 0..150 {
            t.set(&key(&format!("plain{i}")), &Value::Int(i), None, None).unwrap();
        }
        assert_eq!(t.expire(None).unwrap(), 0, "nothing has expired yet");
        t.advance(10.5);
        assert_eq!(t.expire(None).unwrap(), 3);
        assert!(t.value_files().is_empty(), "their files went with them");
        assert_eq!(t.evict(&tag).unwrap(), 2);
        assert_eq!(t.evict(&tag).unwrap(), 0);
        // More than one batch of 100.
        assert_eq!(t.clear().unwrap(), 150);
        assert_eq!(t.len().unwrap(), 0);
        assert_eq!(t.check(false).unwrap(), vec![]);
    }

    #[test]
    fn every_write_culls_up_to_cull_limit_expired_entries() {
        let t = TestCache::with(&[("cull_limit", int(2))]);
        for i in 0..5 {
            t.set(&key(&format!("old{i}")), &Value::Int(i), Some(1.0), None).unwrap();
        }
        t.advance(2.0);
        t.set(&key("new"), &Value::Int(0), None, None).unwrap();
        assert_eq!(t.len().unwrap(), 4, "two of five expired entries culled, one added");
    }

    #[test]
    fn cull_removes_expired_entries_then_oldest_in_batches_until_under_the_limit() {
        // cull_limit 0: the writes themselves never cull.
        let t = TestCache::with(&[("cull_limit", int(0)), ("disk_min_file_size", int(1000))]);
        for i in 0..2 {
            t.set(&key(&format!("expiring{i}")), &file(1), Some(1.0), None).unwrap();
        }
        for i in 0..25u8 {
            t.advance(1.0);
            t.set(&key(&format!("k{i:02}")), &Value::Bytes(vec![i; 10_000]), None, None).unwrap();
        }
        assert_eq!(t.cull().unwrap(), 2, "under the default size limit only the expired go");
        // 150,000 bytes over: a batch of 10 (100,000) is not enough, two are.
        let limit = t.volume().unwrap() - 150_000;
        t.reset("size_limit", Some(int(limit))).unwrap();
        assert_eq!(t.cull().unwrap(), 20);
        assert!(t.volume().unwrap() <= limit);
        // least-recently-stored: the oldest went first.
        assert_eq!(t.get(&key("k19")).unwrap(), None);
        assert_eq!(t.get(&key("k20")).unwrap(), Some(Value::Bytes(vec![20; 10_000])));
        assert_eq!(t.value_files().len(), 5, "the files of k20 to k24");
    }
}
