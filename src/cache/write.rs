//! Writing entries: `Cache.set` (and its streaming forms), `add`, `incr`,
//! `decr`, `touch`, `delete`, and the row writes they share
//! (`Cache._row_update`, `Cache._row_insert`). Each begins, as in core.py,
//! by looking up the key's row ([`Cache::key_row`], the one
//! `SELECT ... WHERE key = ? AND raw = ?`) inside its transaction.

use std::io::{self, Read};
use std::path::PathBuf;

use rusqlite::types::Value as SqlValue;
use rusqlite::{OptionalExtension, params};

use super::core::Cache;
use super::error::{Error, Result};
use super::row::{Stored, scalar_from_owned};
use super::settings::MODE_BINARY;
use super::types::{Key, Number, Scalar, Value};

/// For an attribute of an entry being replaced: a new value, or the one
/// the live entry had.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr<T> {
    Set(T),
    Keep,
}

/// A key's row, live or expired, with what the write paths decide by.
/// Read leniently (no value, no mode): a row the read paths would call
/// corrupt can still be replaced or deleted.
pub(super) struct KeyRow {
    pub rowid: i64,
    pub expire_time: Option<f64>,
    pub filename: Option<String>,
    pub tag: SqlValue,
    /// The inline value if it is an INTEGER or a REAL, else NULL.
    pub number: SqlValue,
    /// `typeof(value)`: `integer`, `real`, `text`, `blob` or `null`.
    pub value_type: String,
}

impl KeyRow {
    /// Neither expired nor expiring now (`expire_time IS NULL OR expire_time > now`).
    pub fn is_live(&self, now: f64) -> bool {
        self.expire_time.is_none_or(|t| t > now)
    }
}

impl Cache {
    /// The row stored under `key`, live or expired (core.py's
    /// `SELECT rowid, ... FROM Cache WHERE key = ? AND raw = ?`, one per
    /// writer; the `Cache_key_raw` index makes it one lookup).
    pub(super) fn key_row(&self, key: &Key) -> Result<Option<KeyRow>> {
        const SELECT: &str = "SELECT rowid, expire_time, filename, tag, \
             CASE WHEN typeof(value) IN ('integer', 'real') THEN value END, typeof(value) \
             FROM Cache WHERE key = ? AND raw = ?";
        Ok(self
            .conn
            .prepare_cached(SELECT)?
            .query_row(params![key, key.raw()], |r| {
                Ok(KeyRow {
                    rowid: r.get(0)?,
                    expire_time: r.get(1)?,
                    filename: r.get(2)?,
                    tag: r.get(3)?,
                    number: r.get(4)?,
                    value_type: r.get(5)?,
                })
            })
            .optional()?)
    }

    pub(super) fn row_update(
        &self,
        rowid: i64,
        now: f64,
        expire_time: Option<f64>,
        tag: Option<&Scalar>,
        s: &Stored,
    ) -> Result<()> {
        const UPDATE: &str = "UPDATE Cache SET store_time = ?, expire_time = ?, access_time = ?, \
             access_count = ?, tag = ?, size = ?, mode = ?, filename = ?, value = ? WHERE rowid = ?";
        self.conn.prepare_cached(UPDATE)?.execute(params![
            now,
            expire_time,
            now,
            0,
            tag,
            s.size,
            s.mode,
            s.filename,
            s.inline,
            rowid
        ])?;
        Ok(())
    }

    pub(super) fn row_insert(
        &self,
        key: &Key,
        now: f64,
        expire_time: Option<f64>,
        tag: Option<&Scalar>,
        s: &Stored,
    ) -> Result<()> {
        const INSERT: &str = "INSERT INTO Cache( key, raw, store_time, expire_time, access_time, \
             access_count, tag, size, mode, filename, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        self.conn.prepare_cached(INSERT)?.execute(params![
            key,
            key.raw(),
            now,
            expire_time,
            now,
            0,
            tag,
            s.size,
            s.mode,
            s.filename,
            s.inline
        ])?;
        Ok(())
    }

    /// Sets `key` to `value` (`Cache.set`). `expire` is seconds from now;
    /// `tag` any SQL scalar. Always returns true, as diskcache does.
    pub fn set(&self, key: &Key, value: &Value, expire: Option<f64>, tag: Option<&Scalar>) -> Result<bool> {
        let now = self.now();
        let stored = self.store(value)?;
        self.set_stored(key, now, expire.map(|e| now + e), tag, stored)
    }

    /// Sets `key` to the bytes read from `reader`, streamed to a value file
    /// whatever its size (`Cache.set(read=True)`).
    pub fn set_reader(
        &self,
        key: &Key,
        reader: &mut dyn Read,
        expire: Option<f64>,
        tag: Option<&Scalar>,
    ) -> Result<bool> {
        let now = self.now();
        let stored = self.store_reader(reader)?;
        self.set_stored(key, now, expire.map(|e| now + e), tag, stored)
    }

    /// Sets `key` to the bytes read from `reader`, stored exactly as
    /// `set(key, data)` of a Python `bytes` would be (inline below
    /// `disk_min_file_size`, else a binary value file) but without ever
    /// holding more than `disk_min_file_size` bytes in memory.
    pub fn set_bytes_from_reader(
        &self,
        key: &Key,
        reader: &mut dyn Read,
        expire: Option<f64>,
        tag: Option<&Scalar>,
    ) -> Result<bool> {
        let min = self.settings.borrow().min_file_size().max(0) as u64;
        let mut head = Vec::new();
        reader
            .take(min)
            .read_to_end(&mut head)
            .map_err(|source| Error::Io { path: PathBuf::from("(input)"), source })?;
        if (head.len() as u64) < min {
            return self.set(key, &Value::Bytes(head), expire, tag);
        }
        let mut chained = io::Cursor::new(head).chain(reader);
        self.set_reader(key, &mut chained, expire, tag)
    }

    /// Commits a value file the caller has already written in the cache
    /// directory (with [`Disk::create_exclusive`] on a
    /// [`Disk::new_filename`]) as `key`'s binary value. On failure the
    /// file is removed. `expire_time` is absolute.
    pub fn set_value_file(
        &self,
        key: &Key,
        filename: String,
        size: u64,
        expire_time: Option<f64>,
        tag: Option<&Scalar>,
    ) -> Result<bool> {
        let stored = Stored { size: size as i64, mode: MODE_BINARY, filename: Some(filename), inline: None };
        self.set_stored(key, self.now(), expire_time, tag, stored)
    }

    /// Sets a value with an absolute expiry time (the file system restores
    /// `user.diskcache.expire_time` this way).
    pub fn set_at(&self, key: &Key, value: &Value, expire_time: Option<f64>, tag: Option<&Scalar>) -> Result<bool> {
        let stored = self.store(value)?;
        self.set_stored(key, self.now(), expire_time, tag, stored)
    }

    fn set_stored(
        &self,
        key: &Key,
        now: f64,
        expire_time: Option<f64>,
        tag: Option<&Scalar>,
        stored: Stored,
    ) -> Result<bool> {
        self.set_stored_with(key, now, Attr::Set(expire_time), Attr::Set(tag.cloned()), stored)
    }

    /// `set_stored`, where each attribute is either given or kept from the
    /// live entry being replaced (none when it is missing or expired).
    pub(crate) fn set_stored_with(
        &self,
        key: &Key,
        now: f64,
        expire_time: Attr<Option<f64>>,
        tag: Attr<Option<Scalar>>,
        stored: Stored,
    ) -> Result<bool> {
        if let Some(name) = &stored.filename {
            self.written.borrow_mut().push(name.clone());
        }
        // SELECT then UPDATE or INSERT, not INSERT OR REPLACE: the old value
        // file must be found to be removed (core.py explains the order).
        self.in_transaction(|| {
            let old = self.key_row(key)?;
            let live = old.as_ref().filter(|o| o.is_live(now));
            let expire_time = match expire_time {
                Attr::Set(v) => v,
                Attr::Keep => live.and_then(|o| o.expire_time),
            };
            let tag = match tag {
                Attr::Set(v) => v,
                Attr::Keep => live.and_then(|o| scalar_from_owned(o.tag.clone())),
            };
            if let Some(old) = old {
                self.cleanup_later(old.filename);
                self.row_update(old.rowid, now, expire_time, tag.as_ref(), &stored)?;
            } else {
                self.row_insert(key, now, expire_time, tag.as_ref(), &stored)?;
            }
            self.cull_in_transaction(now, None)?;
            Ok(true)
        })
    }

    /// Adds `key` only if it is missing or expired (`Cache.add`); false if
    /// a live entry was there.
    pub fn add(&self, key: &Key, value: &Value, expire: Option<f64>, tag: Option<&Scalar>) -> Result<bool> {
        let now = self.now();
        let stored = self.store(value)?;
        if let Some(name) = &stored.filename {
            self.written.borrow_mut().push(name.clone());
        }
        let expire_time = expire.map(|e| now + e);
        let new_file = stored.filename.clone();
        self.in_transaction(|| {
            match self.key_row(key)? {
                Some(old) if old.is_live(now) => {
                    self.cleanup_later(new_file.clone());
                    return Ok(false);
                }
                Some(old) => {
                    self.cleanup_later(old.filename);
                    self.row_update(old.rowid, now, expire_time, tag, &stored)?;
                }
                None => self.row_insert(key, now, expire_time, tag, &stored)?,
            }
            self.cull_in_transaction(now, None)?;
            Ok(true)
        })
    }

    /// Adds `delta` to the int or float value of `key` (`Cache.incr`). A
    /// missing or expired key starts from `default`; with no default it is
    /// [`Error::KeyNotFound`].
    pub fn incr(&self, key: &Key, delta: i64, default: Option<i64>) -> Result<Number> {
        let now = self.now();
        let policy = self.settings.borrow().eviction_policy();
        self.in_transaction(|| {
            let start_over = |rowid: Option<i64>| -> Result<Number> {
                let Some(default) = default else {
                    return Err(Error::KeyNotFound { key: key.to_string() });
                };
                let value = default.checked_add(delta).ok_or_else(|| Error::Overflow { key: key.to_string() })?;
                let stored = self.store(&Value::Int(value))?;
                match rowid {
                    Some(rowid) => self.row_update(rowid, now, None, None, &stored)?,
                    None => self.row_insert(key, now, None, None, &stored)?,
                }
                self.cull_in_transaction(now, None)?;
                Ok(Number::Int(value))
            };
            let Some(row) = self.key_row(key)? else {
                return start_over(None);
            };
            if row.expire_time.is_some_and(|t| t < now) {
                let n = start_over(Some(row.rowid))?;
                self.cleanup_later(row.filename);
                return Ok(n);
            }
            let (new, stored): (Number, SqlValue) = match row.number {
                SqlValue::Integer(i) => {
                    let n = i.checked_add(delta).ok_or_else(|| Error::Overflow { key: key.to_string() })?;
                    (Number::Int(n), SqlValue::Integer(n))
                }
                SqlValue::Real(f) => {
                    let n = f + delta as f64;
                    (Number::Float(n), SqlValue::Real(n))
                }
                _ => {
                    let type_name = match row.value_type.as_str() {
                        "text" => "str",
                        "blob" => "bytes or pickle",
                        _ => "value stored in a file",
                    };
                    return Err(Error::NotANumber { key: key.to_string(), type_name });
                }
            };
            self.conn.prepare_cached(policy.incr_update_sql())?.execute(params![now, stored, row.rowid])?;
            Ok(new)
        })
    }

    /// `incr` by `-delta` (`Cache.decr`).
    pub fn decr(&self, key: &Key, delta: i64, default: Option<i64>) -> Result<Number> {
        let neg = delta.checked_neg().ok_or_else(|| Error::Overflow { key: key.to_string() })?;
        self.incr(key, neg, default)
    }

    /// Sets a live entry's expiry to `expire` seconds from now, or to never
    /// (`Cache.touch`). False when the key is missing or expired.
    pub fn touch(&self, key: &Key, expire: Option<f64>) -> Result<bool> {
        let now = self.now();
        self.touch_at(key, expire.map(|e| now + e))
    }

    /// `touch` with an absolute expiry time.
    pub fn touch_at(&self, key: &Key, expire_time: Option<f64>) -> Result<bool> {
        let now = self.now();
        self.in_transaction(|| {
            let Some(row) = self.key_row(key)?.filter(|r| r.is_live(now)) else { return Ok(false) };
            self.conn
                .prepare_cached("UPDATE Cache SET expire_time = ? WHERE rowid = ?")?
                .execute(params![expire_time, row.rowid])?;
            Ok(true)
        })
    }

    /// Sets a live entry's tag, keeping its value and times (ours; the file
    /// system's `user.diskcache.tag`). False when missing or expired.
    pub fn set_tag(&self, key: &Key, tag: Option<&Scalar>) -> Result<bool> {
        let now = self.now();
        self.in_transaction(|| {
            let n = self
                .conn
                .prepare_cached(
                    "UPDATE Cache SET tag = ? WHERE key = ? AND raw = ? \
                     AND (expire_time IS NULL OR expire_time > ?)",
                )?
                .execute(params![tag, key, key.raw(), now])?;
            Ok(n > 0)
        })
    }

    /// Deletes a live entry (`Cache.delete`); false when missing or expired.
    pub fn delete(&self, key: &Key) -> Result<bool> {
        let now = self.now();
        self.in_transaction(|| {
            let Some(row) = self.key_row(key)?.filter(|r| r.is_live(now)) else { return Ok(false) };
            self.conn.prepare_cached("DELETE FROM Cache WHERE rowid = ?")?.execute([row.rowid])?;
            self.cleanup_later(row.filename);
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{START, TestCache, key};

    #[test]
    fn the_key_row_lookup_matches_key_and_raw_and_sees_expired_rows() {
        let t = TestCache::new();
        assert!(t.key_row(&key("a")).unwrap().is_none());
        t.set(&key("a"), &Value::Int(1), Some(10.0), Some(&Scalar::Str("t".into()))).unwrap();
        t.set(&Key::Bytes(b"a".to_vec()), &Value::Str("text".into()), None, None).unwrap();
        t.set(&Key::Pickled(b"a".to_vec()), &Value::Bytes(vec![0; 40_000]), None, None).unwrap();

        let a = t.key_row(&key("a")).unwrap().unwrap();
        assert_eq!(a.expire_time, Some(START + 10.0));
        assert_eq!((a.number.clone(), a.value_type.as_str()), (SqlValue::Integer(1), "integer"));
        assert_eq!(a.tag, SqlValue::Text("t".into()));
        assert!(a.filename.is_none() && a.is_live(START));
        let bytes = t.key_row(&Key::Bytes(b"a".to_vec())).unwrap().unwrap();
        assert_ne!(bytes.rowid, a.rowid, "a str key and a bytes key are different rows");
        assert_eq!((bytes.number, bytes.value_type.as_str()), (SqlValue::Null, "text"));
        let pickled = t.key_row(&Key::Pickled(b"a".to_vec())).unwrap().unwrap();
        assert!(pickled.filename.is_some() && pickled.value_type == "null");
        assert!(pickled.rowid != a.rowid && pickled.rowid != bytes.rowid, "raw = 0 is another key");

        t.advance(10.0);
        let expired = t.key_row(&key("a")).unwrap().unwrap();
        assert_eq!(expired.rowid, a.rowid, "expired rows are found too");
        assert!(!expired.is_live(START + 10.0), "expiring now is expired");
        assert!(!t.contains(&key("a")).unwrap());
        assert!(t.contains(&Key::Bytes(b"a".to_vec())).unwrap());
    }

    #[test]
    fn writers_decide_by_liveness() {
        let t = TestCache::new();
        assert!(t.add(&key("a"), &Value::Int(1), Some(5.0), None).unwrap());
        assert!(!t.add(&key("a"), &Value::Int(2), None, None).unwrap(), "live: add refuses");
        assert!(t.touch(&key("a"), Some(20.0)).unwrap());
        t.advance(10.0);
        assert_eq!(t.get(&key("a")).unwrap(), Some(Value::Int(1)), "touch moved the expiry");
        t.advance(20.0);
        assert!(!t.touch(&key("a"), None).unwrap(), "expired: nothing to touch");
        assert!(!t.delete(&key("a")).unwrap(), "expired: nothing to delete");
        assert!(t.add(&key("a"), &Value::Int(3), None, None).unwrap(), "expired: add replaces");
        assert_eq!(t.get(&key("a")).unwrap(), Some(Value::Int(3)));
        assert_eq!(t.len().unwrap(), 1, "replaced in place");
        assert!(t.delete(&key("a")).unwrap());
        assert!(!t.delete(&key("a")).unwrap());
    }

    #[test]
    fn incr_counts_from_the_default_and_refuses_non_numbers() {
        let t = TestCache::new();
        assert!(matches!(t.incr(&key("n"), 1, None), Err(Error::KeyNotFound { .. })));
        assert_eq!(t.incr(&key("n"), 5, Some(10)).unwrap(), Number::Int(15));
        assert_eq!(t.decr(&key("n"), 3, None).unwrap(), Number::Int(12));
        t.set(&key("f"), &Value::Float(0.5), None, None).unwrap();
        assert_eq!(t.incr(&key("f"), 1, None).unwrap(), Number::Float(1.5));
        t.set(&key("s"), &Value::Str("x".into()), None, None).unwrap();
        assert!(matches!(t.incr(&key("s"), 1, None), Err(Error::NotANumber { type_name: "str", .. })));
        t.set(&key("file"), &Value::Bytes(vec![0; 40_000]), None, None).unwrap();
        assert!(matches!(
            t.incr(&key("file"), 1, None),
            Err(Error::NotANumber { type_name: "value stored in a file", .. })
        ));
        t.set(&key("max"), &Value::Int(i64::MAX), None, None).unwrap();
        assert!(matches!(t.incr(&key("max"), 1, None), Err(Error::Overflow { .. })));
        // An expired number starts over from the default, its file removed.
        t.set(&key("old"), &Value::Bytes(vec![0; 40_000]), Some(1.0), None).unwrap();
        t.advance(2.0);
        assert_eq!(t.incr(&key("old"), 1, Some(0)).unwrap(), Number::Int(1));
        assert_eq!(t.value_files().len(), 1, "only \"file\"'s value file is left");
    }

    #[test]
    fn replacing_keeps_or_sets_each_attribute() {
        let t = TestCache::new();
        let tag = Scalar::Str("grp".into());
        t.set(&key("a"), &Value::Int(1), Some(100.0), Some(&tag)).unwrap();
        let keep = t.store(&Value::Int(2)).unwrap();
        t.set_stored_with(&key("a"), t.now(), Attr::Keep, Attr::Keep, keep).unwrap();
        let entry = t.get_entry(&key("a")).unwrap().unwrap();
        assert_eq!((entry.value, entry.expire_time, entry.tag), (Value::Int(2), Some(START + 100.0), Some(tag)));
        let set = t.store(&Value::Int(3)).unwrap();
        t.set_stored_with(&key("a"), t.now(), Attr::Set(None), Attr::Keep, set).unwrap();
        assert_eq!(t.get_entry(&key("a")).unwrap().unwrap().expire_time, None);
        // An expired entry has nothing to keep.
        t.set(&key("b"), &Value::Int(1), Some(1.0), Some(&Scalar::Int(7))).unwrap();
        t.advance(2.0);
        let keep = t.store(&Value::Int(2)).unwrap();
        t.set_stored_with(&key("b"), t.now(), Attr::Keep, Attr::Keep, keep).unwrap();
        let entry = t.get_entry(&key("b")).unwrap().unwrap();
        assert_eq!((entry.expire_time, entry.tag), (None, None));
    }
}
