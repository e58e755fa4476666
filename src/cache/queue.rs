//! Queues and the first or last item: `Cache.push`, `Cache.pull`,
//! `Cache.peek` and `Cache.peekitem`. A queue named `P` is the keys
//! `P-000000000000000` to `P-999999999999999` (integers 0 to
//! 999999999999999 without a name), strictly between those bounds;
//! pushes start at the middle and step outwards, as core.py's do.

use std::io::Read;

use rusqlite::types::Value as SqlValue;
use rusqlite::{OptionalExtension, params};

use super::core::Cache;
use super::error::{Error, Result};
use super::row::{Row, Stored, read_row};
use super::types::{Entry, Key, Scalar, Side, Value};

impl Cache {
    /// The keys a queue's items lie strictly between.
    pub(crate) fn queue_bounds(prefix: Option<&str>) -> (Key, Key) {
        match prefix {
            None => (Key::Int(0), Key::Int(999_999_999_999_999)),
            Some(p) => (Key::Str(format!("{p}-000000000000000")), Key::Str(format!("{p}-999999999999999"))),
        }
    }

    /// Pushes onto the `side` of the queue named `prefix` (integer keys
    /// when `None`) and returns the new key (`Cache.push`).
    pub fn push(
        &self,
        value: &Value,
        prefix: Option<&str>,
        side: Side,
        expire: Option<f64>,
        tag: Option<&Scalar>,
    ) -> Result<Key> {
        let stored = self.store(value)?;
        self.push_stored(stored, prefix, side, expire, tag)
    }

    /// Pushes the bytes of `reader` as a file-backed value.
    pub fn push_reader(
        &self,
        reader: &mut dyn Read,
        prefix: Option<&str>,
        side: Side,
        expire: Option<f64>,
        tag: Option<&Scalar>,
    ) -> Result<Key> {
        let stored = self.store_reader(reader)?;
        self.push_stored(stored, prefix, side, expire, tag)
    }

    fn push_stored(
        &self,
        stored: Stored,
        prefix: Option<&str>,
        side: Side,
        expire: Option<f64>,
        tag: Option<&Scalar>,
    ) -> Result<Key> {
        if let Some(name) = &stored.filename {
            self.written.borrow_mut().push(name.clone());
        }
        let (min_key, max_key) = Self::queue_bounds(prefix);
        let now = self.now();
        let expire_time = expire.map(|e| now + e);
        let select = match side {
            Side::Back => "SELECT key FROM Cache WHERE ? < key AND key < ? AND raw = ? ORDER BY key DESC LIMIT 1",
            Side::Front => "SELECT key FROM Cache WHERE ? < key AND key < ? AND raw = ? ORDER BY key ASC LIMIT 1",
        };
        let step: i64 = if side == Side::Back { 1 } else { -1 };
        self.in_transaction(|| {
            let last: Option<SqlValue> = self
                .conn
                .prepare_cached(select)?
                .query_row(params![min_key, max_key, true], |r| r.get(0))
                .optional()?;
            let db_key = match (last, prefix) {
                (None, None) => Key::Int(500_000_000_000_000),
                (None, Some(p)) => Key::Str(format!("{p}-{:015}", 500_000_000_000_000i64)),
                (Some(SqlValue::Integer(n)), None) => Key::Int(n + step),
                (Some(SqlValue::Real(n)), None) => Key::Float(n + step as f64),
                (Some(SqlValue::Text(k)), Some(p)) => {
                    let num: i64 = k[k.rfind('-').map_or(0, |i| i + 1)..].parse().map_err(|_| Error::CorruptRow {
                        rowid: 0,
                        reason: format!("queue key {k:?} does not end in a number"),
                    })?;
                    Key::Str(format!("{p}-{:015}", num + step))
                }
                (Some(other), _) => {
                    return Err(Error::CorruptRow { rowid: 0, reason: format!("unexpected queue key {other:?}") });
                }
            };
            self.row_insert(&db_key, now, expire_time, tag, &stored)?;
            self.cull_in_transaction(now, None)?;
            Ok(db_key)
        })
    }

    /// Removes and returns the item at the `side` of the queue (`Cache.pull`).
    /// Expired items met on the way are deleted. `None` when empty.
    pub fn pull(&self, prefix: Option<&str>, side: Side) -> Result<Option<(Key, Entry)>> {
        self.take_from_queue(prefix, side, true)
    }

    /// Returns the item at the `side` of the queue without removing it
    /// (`Cache.peek`); expired items met on the way are deleted.
    pub fn peek(&self, prefix: Option<&str>, side: Side) -> Result<Option<(Key, Entry)>> {
        self.take_from_queue(prefix, side, false)
    }

    fn take_from_queue(&self, prefix: Option<&str>, side: Side, remove: bool) -> Result<Option<(Key, Entry)>> {
        let (min_key, max_key) = Self::queue_bounds(prefix);
        let order = if side == Side::Front { "ASC" } else { "DESC" };
        // A read-only handle cannot delete expired items on the way, so it
        // skips them in the query instead.
        let live = if self.read_only { "AND (expire_time IS NULL OR expire_time > ?3)" } else { "AND ?3 = ?3" };
        let select = format!(
            "SELECT rowid, expire_time, tag, mode, filename, value, key FROM Cache \
             WHERE ? < key AND key < ? AND raw = 1 {live} ORDER BY key {order} LIMIT 1"
        );
        self.first_live(remove, || {
            let mut stmt = self.conn.prepare_cached(&select)?;
            let mut rows = stmt.query(params![min_key, max_key, self.now()])?;
            match rows.next()? {
                Some(r) => {
                    let row = read_row(r)?;
                    let key = Key::from_sql(r.get_ref(6)?, true)
                        .map_err(|reason| Error::CorruptRow { rowid: row.rowid, reason })?;
                    Ok(Some((key, row)))
                }
                None => Ok(None),
            }
        })
    }

    /// The first or last entry in insertion order (`Cache.peekitem`);
    /// expired entries met on the way are deleted. `None` when empty.
    pub fn peekitem(&self, last: bool) -> Result<Option<(Key, Entry)>> {
        let order = if last { "DESC" } else { "ASC" };
        let live = if self.read_only { "WHERE expire_time IS NULL OR expire_time > ?1" } else { "WHERE ?1 = ?1" };
        let select = format!(
            "SELECT rowid, expire_time, tag, mode, filename, value, key, raw FROM Cache {live} ORDER BY rowid {order} LIMIT 1"
        );
        self.first_live(false, || {
            let mut stmt = self.conn.prepare_cached(&select)?;
            let mut rows = stmt.query(params![self.now()])?;
            match rows.next()? {
                Some(r) => {
                    let row = read_row(r)?;
                    let raw: i64 = r.get(7)?;
                    let key = Key::from_sql(r.get_ref(6)?, raw != 0)
                        .map_err(|reason| Error::CorruptRow { rowid: row.rowid, reason })?;
                    Ok(Some((key, row)))
                }
                None => Ok(None),
            }
        })
    }

    /// The loop shared by pull, peek and peekitem: in a transaction, select
    /// the first row; delete it if expired (and look again) or if pulling;
    /// then read its value outside the transaction. A value file that
    /// vanished makes the loop look again, as in core.py. Where core.py
    /// would spin forever on a peeked row whose file is gone, we delete
    /// that row: it can never be read.
    fn first_live(
        &self,
        remove: bool,
        select: impl Fn() -> Result<Option<(Key, Row)>>,
    ) -> Result<Option<(Key, Entry)>> {
        if self.read_only {
            if remove {
                return Err(Error::ReadOnly);
            }
            // The query already skips expired rows; nothing is deleted.
            let Some((key, row)) = select()? else { return Ok(None) };
            return Ok(self
                .fetch(&row)?
                .map(|value| (key, Entry { value, expire_time: row.expire_time, tag: row.tag })));
        }
        loop {
            let found = self.in_transaction(|| {
                loop {
                    let Some((key, row)) = select()? else { return Ok(None) };
                    let expired = row.expire_time.is_some_and(|t| t < self.now());
                    if remove || expired {
                        self.conn.prepare_cached("DELETE FROM Cache WHERE rowid = ?")?.execute([row.rowid])?;
                    }
                    if expired {
                        self.cleanup_later(row.filename.clone());
                        continue;
                    }
                    return Ok(Some((key, row)));
                }
            })?;
            let Some((key, row)) = found else { return Ok(None) };
            let value = self.fetch(&row);
            if remove && let Some(name) = &row.filename {
                self.disk.remove(name);
            }
            match value? {
                Some(value) => {
                    return Ok(Some((key, Entry { value, expire_time: row.expire_time, tag: row.tag })));
                }
                None if !remove => {
                    // The row's file is gone: drop the unreadable row.
                    self.in_transaction(|| {
                        self.conn.prepare_cached("DELETE FROM Cache WHERE rowid = ?")?.execute([row.rowid])?;
                        Ok(())
                    })?;
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{TestCache, key};

    fn int(n: i64) -> Value {
        Value::Int(n)
    }

    fn pulled(item: Option<(Key, Entry)>) -> (Key, Value) {
        let (k, e) = item.expect("an item");
        (k, e.value)
    }

    #[test]
    fn pushes_step_out_from_the_middle_and_pulls_take_from_either_end() {
        let t = TestCache::new();
        let q = Some("jobs");
        assert_eq!(t.push(&int(1), q, Side::Back, None, None).unwrap(), key("jobs-500000000000000"));
        assert_eq!(t.push(&int(2), q, Side::Back, None, None).unwrap(), key("jobs-500000000000001"));
        assert_eq!(t.push(&int(0), q, Side::Front, None, None).unwrap(), key("jobs-499999999999999"));
        assert_eq!(t.push(&int(3), q, Side::Back, None, None).unwrap(), key("jobs-500000000000002"));
        // Other keys, and the integer queue, are not this queue.
        t.set(&key("jobs"), &int(99), None, None).unwrap();
        assert_eq!(t.push(&int(7), None, Side::Back, None, None).unwrap(), Key::Int(500_000_000_000_000));

        assert_eq!(pulled(t.peek(q, Side::Front).unwrap()), (key("jobs-499999999999999"), int(0)));
        assert_eq!(pulled(t.pull(q, Side::Front).unwrap()).1, int(0));
        assert_eq!(pulled(t.pull(q, Side::Back).unwrap()).1, int(3));
        assert_eq!(pulled(t.pull(q, Side::Front).unwrap()).1, int(1));
        assert_eq!(pulled(t.pull(q, Side::Front).unwrap()).1, int(2));
        assert!(t.pull(q, Side::Front).unwrap().is_none());
        assert_eq!(pulled(t.pull(None, Side::Front).unwrap()), (Key::Int(500_000_000_000_000), int(7)));
        assert_eq!(t.get(&key("jobs")).unwrap(), Some(int(99)));
    }

    #[test]
    fn expired_items_are_deleted_on_the_way_and_file_values_removed_when_pulled() {
        let t = TestCache::new();
        let q = Some("q");
        t.push(&int(1), q, Side::Back, Some(1.0), None).unwrap();
        t.push(&Value::Bytes(vec![5; 40_000]), q, Side::Back, None, None).unwrap();
        t.advance(2.0);
        assert_eq!(t.len().unwrap(), 2);
        let (k, v) = pulled(t.pull(q, Side::Front).unwrap());
        assert_eq!((k, v), (key("q-500000000000001"), Value::Bytes(vec![5; 40_000])));
        assert_eq!(t.len().unwrap(), 0, "the expired item was deleted");
        assert!(t.value_files().is_empty());
    }

    #[test]
    fn peekitem_is_the_first_or_last_in_insertion_order() {
        let t = TestCache::new();
        assert!(t.peekitem(false).unwrap().is_none());
        t.set(&key("b"), &int(1), None, None).unwrap();
        t.set(&key("a"), &int(2), Some(1.0), None).unwrap();
        t.set(&key("c"), &int(3), None, None).unwrap();
        assert_eq!(pulled(t.peekitem(false).unwrap()), (key("b"), int(1)));
        assert_eq!(pulled(t.peekitem(true).unwrap()), (key("c"), int(3)));
        t.delete(&key("c")).unwrap();
        t.advance(2.0);
        assert_eq!(pulled(t.peekitem(true).unwrap()), (key("b"), int(1)), "expired \"a\" skipped");
        assert_eq!(t.len().unwrap(), 1, "and deleted");
    }
}
