//! Iteration over keys: `Cache.iterkeys` (database sort order) and
//! `Cache._iter` (`iter(cache)`, `reversed(cache)`: insertion order),
//! each streamed 100 rows at a time; expired entries are included, as in
//! diskcache.

use std::collections::VecDeque;

use rusqlite::params;
use rusqlite::types::{Value as SqlValue, ValueRef};

use super::core::Cache;
use super::error::{Error, Result};
use super::types::Key;

impl Cache {
    /// Keys in database sort order (`Cache.iterkeys`), streamed 100 rows
    /// at a time; expired entries included, as in diskcache.
    pub fn iterkeys(&self, reverse: bool) -> KeyIter<'_> {
        KeyIter { cache: self, reverse, last: None, batch: VecDeque::new(), done: false }
    }

    /// Keys in insertion (rowid) order, expired included (`iter(cache)` /
    /// `reversed(cache)`), streamed.
    pub fn keys_by_rowid(&self, ascending: bool) -> RowidIter<'_> {
        RowidIter { cache: self, ascending, cursor: None, bound: None, batch: VecDeque::new(), done: false }
    }
}

/// Iterator of [`Cache::iterkeys`].
pub struct KeyIter<'a> {
    cache: &'a Cache,
    reverse: bool,
    last: Option<(SqlValue, i64)>,
    batch: VecDeque<(SqlValue, i64)>,
    done: bool,
}

impl Iterator for KeyIter<'_> {
    type Item = Result<Key>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.batch.is_empty()
            && !self.done
            && let Err(e) = self.fill()
        {
            self.done = true;
            return Some(Err(e));
        }
        let (key, raw) = self.batch.pop_front()?;
        self.last = Some((key.clone(), raw));
        Some(Key::from_sql(ValueRef::from(&key), raw != 0).map_err(|reason| Error::CorruptRow { rowid: 0, reason }))
    }
}

impl KeyIter<'_> {
    fn fill(&mut self) -> Result<()> {
        let (first, iterate) = if self.reverse {
            (
                "SELECT key, raw FROM Cache ORDER BY key DESC, raw DESC LIMIT 100",
                "SELECT key, raw FROM Cache WHERE key = ?1 AND raw < ?2 OR key < ?1 ORDER BY key DESC, raw DESC LIMIT 100",
            )
        } else {
            (
                "SELECT key, raw FROM Cache ORDER BY key ASC, raw ASC LIMIT 100",
                "SELECT key, raw FROM Cache WHERE key = ?1 AND raw > ?2 OR key > ?1 ORDER BY key ASC, raw ASC LIMIT 100",
            )
        };
        let mut stmt;
        let rows: Vec<(SqlValue, i64)> = match &self.last {
            None => {
                stmt = self.cache.conn.prepare_cached(first)?;
                let mapped = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                mapped.collect::<rusqlite::Result<_>>()?
            }
            Some((key, raw)) => {
                stmt = self.cache.conn.prepare_cached(iterate)?;
                let mapped = stmt.query_map(params![key, raw], |r| Ok((r.get(0)?, r.get(1)?)))?;
                mapped.collect::<rusqlite::Result<_>>()?
            }
        };
        if rows.len() < 100 {
            self.done = true;
        }
        self.batch.extend(rows);
        Ok(())
    }
}

/// Iterator of [`Cache::keys_by_rowid`]: bounded by the largest rowid when
/// it started, like `Cache._iter`.
pub struct RowidIter<'a> {
    cache: &'a Cache,
    ascending: bool,
    cursor: Option<i64>,
    bound: Option<i64>,
    batch: VecDeque<(i64, SqlValue, i64)>,
    done: bool,
}

impl Iterator for RowidIter<'_> {
    type Item = Result<Key>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.batch.is_empty()
            && !self.done
            && let Err(e) = self.fill()
        {
            self.done = true;
            return Some(Err(e));
        }
        let (rowid, key, raw) = self.batch.pop_front()?;
        self.cursor = Some(rowid);
        Some(Key::from_sql(ValueRef::from(&key), raw != 0).map_err(|reason| Error::CorruptRow { rowid, reason }))
    }
}

impl RowidIter<'_> {
    fn fill(&mut self) -> Result<()> {
        let conn = &self.cache.conn;
        let bound = match self.bound {
            Some(b) => b,
            None => {
                let max: Option<i64> = conn.query_row("SELECT MAX(rowid) FROM Cache", [], |r| r.get(0))?;
                let Some(max) = max else {
                    self.done = true;
                    return Ok(());
                };
                self.bound = Some(max + 1);
                max + 1
            }
        };
        let (sql, lo, hi) = if self.ascending {
            (
                "SELECT rowid, key, raw FROM Cache WHERE ? < rowid AND rowid < ? ORDER BY rowid ASC LIMIT 100",
                self.cursor.unwrap_or(0),
                bound,
            )
        } else {
            (
                "SELECT rowid, key, raw FROM Cache WHERE ? < rowid AND rowid < ? ORDER BY rowid DESC LIMIT 100",
                0,
                self.cursor.unwrap_or(bound),
            )
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let rows: Vec<(i64, SqlValue, i64)> = stmt
            .query_map(params![lo, hi], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        if rows.len() < 100 {
            self.done = true;
        }
        self.batch.extend(rows);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::cache::testing::{TestCache, key};
    use crate::cache::types::{Key, Value};

    #[test]
    fn keys_stream_in_sort_order_or_insertion_order_across_batches() {
        let t = TestCache::new();
        // 250 keys: three batches; inserted in reverse of their sort order.
        let names: Vec<String> = (0..250).rev().map(|i| format!("k{i:03}")).collect();
        for n in &names {
            t.set(&key(n), &Value::Int(1), None, None).unwrap();
        }
        t.set(&Key::Int(5), &Value::Int(1), None, None).unwrap();
        let sorted: Vec<Key> = t.iterkeys(false).map(Result::unwrap).collect();
        let mut expect: Vec<Key> = vec![Key::Int(5)];
        expect.extend(names.iter().rev().map(|n| key(n)));
        assert_eq!(sorted, expect, "integers sort before text, as in SQLite");
        let reverse: Vec<Key> = t.iterkeys(true).map(Result::unwrap).collect();
        assert_eq!(reverse, expect.iter().rev().cloned().collect::<Vec<_>>());

        let mut inserted: Vec<Key> = names.iter().map(|n| key(n)).collect();
        inserted.push(Key::Int(5));
        let mut by_rowid = t.keys_by_rowid(true);
        let first = by_rowid.next().unwrap().unwrap();
        // Bounded by the largest rowid when it started.
        t.set(&key("later"), &Value::Int(1), None, None).unwrap();
        let rest: Vec<Key> = by_rowid.map(Result::unwrap).collect();
        assert_eq!([vec![first], rest].concat(), inserted);
        inserted.push(key("later"));
        inserted.reverse();
        assert_eq!(t.keys_by_rowid(false).map(Result::unwrap).collect::<Vec<_>>(), inserted);
    }
}
