//! Keys, values and tags as the Cache table stores them.
//!
//! python-diskcache stores a key `raw` (str, bytes, int in i64, float go
//! straight into the `key` column) or pickled (`raw = 0`, any other Python
//! object). We keep pickled keys and pickled values as opaque bytes, so an
//! existing cache is never unreadable and nothing is lost on a round trip.

use std::fmt;

use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};

/// A cache key (`Disk.put` / `Disk.get`).
#[derive(Clone, Debug, PartialEq)]
pub enum Key {
    /// Python `str`, stored as TEXT.
    Str(String),
    /// Python `bytes`, stored as BLOB.
    Bytes(Vec<u8>),
    /// Python `int` within i64, stored as INTEGER.
    Int(i64),
    /// Python `float`, stored as REAL.
    Float(f64),
    /// Any other Python object: `pickletools.optimize(pickle.dumps(key))`,
    /// stored as a BLOB with `raw = 0`.
    Pickled(Vec<u8>),
}

impl Key {
    /// The `raw` column: 1 for keys stored as themselves, 0 for pickles.
    pub fn raw(&self) -> bool {
        !matches!(self, Key::Pickled(_))
    }

    /// Reads the `(key, raw)` columns of a row.
    pub fn from_sql(key: ValueRef<'_>, raw: bool) -> Result<Key, String> {
        if !raw {
            return match key {
                ValueRef::Blob(b) => Ok(Key::Pickled(b.to_vec())),
                other => Err(format!("pickled key is not a BLOB but {:?}", other.data_type())),
            };
        }
        Ok(match key {
            ValueRef::Text(t) => {
                Key::Str(String::from_utf8(t.to_vec()).map_err(|_| "key TEXT is not UTF-8".to_string())?)
            }
            ValueRef::Blob(b) => Key::Bytes(b.to_vec()),
            ValueRef::Integer(i) => Key::Int(i),
            ValueRef::Real(f) => Key::Float(f),
            ValueRef::Null => return Err("key is NULL".into()),
        })
    }

    /// The key's Python type name, as `user.diskcache.key_type` reports it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Key::Str(_) => "str",
            Key::Bytes(_) => "bytes",
            Key::Int(_) => "int",
            Key::Float(_) => "float",
            Key::Pickled(_) => "pickle",
        }
    }
}

impl ToSql for Key {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Key::Str(s) => ValueRef::Text(s.as_bytes()),
            Key::Bytes(b) | Key::Pickled(b) => ValueRef::Blob(b),
            Key::Int(i) => ValueRef::Integer(*i),
            Key::Float(f) => ValueRef::Real(*f),
        }))
    }
}

impl fmt::Display for Key {
    /// A short human description for log lines and error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Str(s) => write!(f, "{s:?}"),
            Key::Bytes(b) => write!(f, "bytes[{}]", b.len()),
            Key::Int(i) => write!(f, "{i}"),
            Key::Float(x) => write!(f, "{x:?}"),
            Key::Pickled(b) => write!(f, "pickled[{}]", b.len()),
        }
    }
}

/// A cached value (`Disk.store` / `Disk.fetch`).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `bytes`: inline BLOB below `disk_min_file_size`, else a binary file.
    Bytes(Vec<u8>),
    /// `str`: inline TEXT below `disk_min_file_size` characters, else a
    /// UTF-8 text file.
    Str(String),
    /// `int` within i64, always inline.
    Int(i64),
    /// `float`, always inline.
    Float(f64),
    /// Any other Python object, as its pickle bytes (inline or file).
    Pickle(Vec<u8>),
    /// A raw NULL, which python-diskcache reads as `None`. Python writes
    /// one for a NaN float (SQLite binds NaN as NULL); `None` itself it
    /// pickles.
    None,
}

impl Value {
    /// The value's Python type name, as `user.diskcache.type` reports it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bytes(_) => "bytes",
            Value::Str(_) => "str",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Pickle(_) => "pickle",
            Value::None => "none",
        }
    }
}

/// An SQL scalar as diskcache binds it: the type of `tag` values and of
/// Settings values. (Python's `None` is `Option::None` around it.)
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Str(String),
    Bytes(Vec<u8>),
    Int(i64),
    Float(f64),
}

impl Scalar {
    /// Reads a column; NULL is `None`.
    pub fn from_sql(value: ValueRef<'_>) -> Result<Option<Scalar>, String> {
        Ok(Some(match value {
            ValueRef::Null => return Ok(None),
            ValueRef::Integer(i) => Scalar::Int(i),
            ValueRef::Real(f) => Scalar::Float(f),
            ValueRef::Text(t) => {
                Scalar::Str(String::from_utf8(t.to_vec()).map_err(|_| "TEXT is not UTF-8".to_string())?)
            }
            ValueRef::Blob(b) => Scalar::Bytes(b.to_vec()),
        }))
    }
}

impl ToSql for Scalar {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Scalar::Str(s) => ValueRef::Text(s.as_bytes()),
            Scalar::Bytes(b) => ValueRef::Blob(b),
            Scalar::Int(i) => ValueRef::Integer(*i),
            Scalar::Float(f) => ValueRef::Real(*f),
        }))
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Str(s) => write!(f, "{s}"),
            Scalar::Bytes(b) => write!(f, "bytes[{}]", b.len()),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x:?}"),
        }
    }
}

/// A value with the columns `get(expire_time=True, tag=True)` returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub value: Value,
    /// Absolute Unix time, `None` when the entry never expires.
    pub expire_time: Option<f64>,
    pub tag: Option<Scalar>,
}

/// The result of `incr`/`decr`: Python's `value + delta` on an int or float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

/// Which end of a queue (`push`, `pull`, `peek`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Front,
    Back,
}
