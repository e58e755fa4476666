//! A row's value columns (`size, mode, filename, value`), both ways:
//! `Stored` is a value encoded for a row, written by `Cache::store`
//! (`Disk.store`); `Row` is what the read paths select, and `Row::source`
//! is the one place that decides what its mode, filename and value mean,
//! for `Cache::fetch` (`Disk.fetch`) and `Cache::read`.
//! (meta.rs, for file views, still decides this on its own in `open_raw`
//! and `EntryMeta::value_type`.)

use std::io::{self, Read};

use rusqlite::types::{Value as SqlValue, ValueRef};

use super::core::Cache;
use super::disk::{FetchError, universal_newlines};
use super::error::{Error, Result};
use super::settings::{MODE_BINARY, MODE_PICKLE, MODE_RAW, MODE_TEXT};
use super::types::{Scalar, Value};

/// A row's stored form: the `size, mode, filename, value` columns.
pub(crate) struct Stored {
    pub size: i64,
    pub mode: i64,
    pub filename: Option<String>,
    pub inline: Option<Scalar>,
}

/// The columns the read paths select, decoded by [`read_row`]:
/// `rowid, expire_time, tag, mode, filename, value`.
pub(super) struct Row {
    pub rowid: i64,
    pub expire_time: Option<f64>,
    pub tag: Option<Scalar>,
    pub mode: i64,
    pub filename: Option<String>,
    pub inline: Option<Scalar>,
}

/// Where a row's value is, as its mode, filename and value say.
pub(super) enum Source<'a> {
    /// Stored in the row: the value itself.
    Inline(Value),
    /// In the value file `name`, holding a value of this mode
    /// ([`MODE_BINARY`], [`MODE_TEXT`] or [`MODE_PICKLE`]).
    File { name: &'a str, mode: i64 },
}

impl Row {
    /// What the row's value columns mean, as `Disk.fetch` reads them;
    /// [`Error::CorruptRow`] for a combination python-diskcache never
    /// writes.
    pub(super) fn source(&self) -> Result<Source<'_>> {
        let corrupt = |reason: String| Error::CorruptRow { rowid: self.rowid, reason };
        match self.mode {
            MODE_RAW => Ok(Source::Inline(match &self.inline {
                Some(Scalar::Str(s)) => Value::Str(s.clone()),
                Some(Scalar::Bytes(b)) => Value::Bytes(b.clone()),
                Some(Scalar::Int(i)) => Value::Int(*i),
                Some(Scalar::Float(f)) => Value::Float(*f),
                // What python-diskcache stores for float('nan'); it reads None.
                None => Value::None,
            })),
            MODE_PICKLE if self.filename.is_none() => match &self.inline {
                Some(Scalar::Bytes(b)) => Ok(Source::Inline(Value::Pickle(b.clone()))),
                _ => Err(corrupt("inline pickle is not a BLOB".into())),
            },
            MODE_BINARY | MODE_TEXT | MODE_PICKLE => match self.filename.as_deref() {
                Some(name) => Ok(Source::File { name, mode: self.mode }),
                None => Err(corrupt(format!("mode {} without a filename", self.mode))),
            },
            other => Err(corrupt(format!("unknown mode {other}"))),
        }
    }
}

impl Cache {
    /// Stores a value as diskcache would: inline below `disk_min_file_size`
    /// (characters for str, bytes otherwise), else in a new value file.
    pub(crate) fn store(&self, value: &Value) -> Result<Stored> {
        let min = self.settings.borrow().min_file_size();
        let small = |n: usize| (n as i64) < min;
        let inline = |mode, v| Ok(Stored { size: 0, mode, filename: None, inline: Some(v) });
        match value {
            Value::Int(i) => inline(MODE_RAW, Scalar::Int(*i)),
            Value::Float(f) => inline(MODE_RAW, Scalar::Float(*f)),
            Value::None => Ok(Stored { size: 0, mode: MODE_RAW, filename: None, inline: None }),
            Value::Str(s) if small(s.chars().count()) => inline(MODE_RAW, Scalar::Str(s.clone())),
            Value::Bytes(b) if small(b.len()) => inline(MODE_RAW, Scalar::Bytes(b.clone())),
            Value::Pickle(p) if small(p.len()) => inline(MODE_PICKLE, Scalar::Bytes(p.clone())),
            Value::Str(s) => self.store_file(MODE_TEXT, s.as_bytes()),
            Value::Bytes(b) => self.store_file(MODE_BINARY, b),
            Value::Pickle(p) => self.store_file(MODE_PICKLE, p),
        }
    }

    fn store_file(&self, mode: i64, data: &[u8]) -> Result<Stored> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let name = self.disk.write_bytes(data).map_err(|source| self.io_err("(new value file)", source))?;
        Ok(Stored { size: data.len() as i64, mode, filename: Some(name), inline: None })
    }

    /// Streams a reader into a new binary value file (`read=True`).
    pub(super) fn store_reader(&self, reader: &mut dyn Read) -> Result<Stored> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let (name, size) =
            self.disk.write_new(|f| io::copy(reader, f)).map_err(|source| self.io_err("(new value file)", source))?;
        Ok(Stored { size: size as i64, mode: MODE_BINARY, filename: Some(name), inline: None })
    }

    pub(crate) fn io_err(&self, filename: &str, source: io::Error) -> Error {
        Error::Io { path: self.disk.full_path(filename), source }
    }

    /// Reads a row's value; `Ok(None)` when its file has vanished (a miss).
    pub(super) fn fetch(&self, row: &Row) -> Result<Option<Value>> {
        match row.source()? {
            Source::Inline(value) => Ok(Some(value)),
            Source::File { name, mode } => self.fetch_file(row.rowid, name, mode),
        }
    }

    /// Reads a value file of a row; `Ok(None)` when it has vanished.
    fn fetch_file(&self, rowid: i64, name: &str, mode: i64) -> Result<Option<Value>> {
        let data = match self.disk.read_value(name) {
            Ok(d) => d,
            Err(FetchError::Missing) => return Ok(None),
            Err(FetchError::Unsafe) => return Err(self.unsafe_filename(rowid, name)),
            Err(FetchError::Io(source)) => return Err(self.io_err(name, source)),
        };
        Ok(Some(match mode {
            MODE_BINARY => Value::Bytes(data),
            MODE_PICKLE => Value::Pickle(data),
            _ => Value::Str(universal_newlines(
                String::from_utf8(data)
                    .map_err(|_| Error::CorruptRow { rowid, reason: format!("text file {name} is not UTF-8") })?,
            )),
        }))
    }

    pub(crate) fn unsafe_filename(&self, rowid: i64, name: &str) -> Error {
        let e = Error::UnsafeFilename { rowid, filename: name.to_string() };
        log::error!("{}: {e}", self.directory.display());
        e
    }
}

pub(super) fn read_row(r: &rusqlite::Row<'_>) -> Result<Row> {
    let rowid: i64 = r.get(0)?;
    let corrupt = |reason: String| Error::CorruptRow { rowid, reason };
    let expire_time = match r.get_ref(1)? {
        ValueRef::Null => None,
        ValueRef::Real(f) => Some(f),
        ValueRef::Integer(i) => Some(i as f64),
        other => return Err(corrupt(format!("expire_time is {:?}", other.data_type()))),
    };
    let tag = Scalar::from_sql(r.get_ref(2)?).map_err(|e| corrupt(format!("tag: {e}")))?;
    let mode = match r.get_ref(3)? {
        ValueRef::Integer(m) => m,
        other => return Err(corrupt(format!("mode is {:?}", other.data_type()))),
    };
    let filename = match r.get_ref(4)? {
        ValueRef::Null => None,
        ValueRef::Text(t) => Some(String::from_utf8(t.to_vec()).map_err(|_| corrupt("filename is not UTF-8".into()))?),
        other => return Err(corrupt(format!("filename is {:?}", other.data_type()))),
    };
    let inline = Scalar::from_sql(r.get_ref(5)?).map_err(|e| corrupt(format!("value: {e}")))?;
    Ok(Row { rowid, expire_time, tag, mode, filename, inline })
}

pub(crate) fn scalar_from_owned(v: SqlValue) -> Option<Scalar> {
    match v {
        SqlValue::Null => None,
        SqlValue::Integer(i) => Some(Scalar::Int(i)),
        SqlValue::Real(f) => Some(Scalar::Float(f)),
        SqlValue::Text(s) => Some(Scalar::Str(s)),
        SqlValue::Blob(b) => Some(Scalar::Bytes(b)),
    }
}

pub(super) fn scalar_to_owned(v: &Scalar) -> SqlValue {
    match v {
        Scalar::Int(i) => SqlValue::Integer(*i),
        Scalar::Float(f) => SqlValue::Real(*f),
        Scalar::Str(s) => SqlValue::Text(s.clone()),
        Scalar::Bytes(b) => SqlValue::Blob(b.clone()),
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::types::Value as Sql;

    use super::*;
    use crate::cache::testing::{TestCache, int, key};

    /// (mode, whether it has a file, size) of `name`'s row.
    fn stored(t: &TestCache, name: &str) -> (Sql, bool, Sql) {
        (t.column(name, "mode"), t.column(name, "filename") != Sql::Null, t.column(name, "size"))
    }

    #[test]
    fn values_below_disk_min_file_size_are_inline_and_others_in_files() {
        let t = TestCache::with(&[("disk_min_file_size", int(10))]);
        let cases = [
            ("bytes9", Value::Bytes(vec![1; 9]), MODE_RAW, false, 0),
            ("bytes10", Value::Bytes(vec![1; 10]), MODE_BINARY, true, 10),
            // str is measured in characters (9 of them, 18 bytes: inline).
            ("str9", Value::Str("é".repeat(9)), MODE_RAW, false, 0),
            ("str10", Value::Str("é".repeat(10)), MODE_TEXT, true, 20),
            ("pickle9", Value::Pickle(vec![0x80; 9]), MODE_PICKLE, false, 0),
            ("pickle10", Value::Pickle(vec![0x80; 10]), MODE_PICKLE, true, 10),
            ("int", Value::Int(7), MODE_RAW, false, 0),
            ("float", Value::Float(0.5), MODE_RAW, false, 0),
            ("none", Value::None, MODE_RAW, false, 0),
        ];
        for (name, value, mode, file, size) in &cases {
            t.set(&key(name), value, None, None).unwrap();
            assert_eq!(stored(&t, name), (Sql::Integer(*mode), *file, Sql::Integer(*size)), "{name}");
            assert_eq!(t.get(&key(name)).unwrap().as_ref(), Some(value), "{name}");
        }
        assert_eq!(t.value_files().len(), 3);
        // A file-backed str reads back as Python reads it: universal newlines.
        t.set(&key("crlf"), &Value::Str("line\r\nmore\rend".into()), None, None).unwrap();
        assert_eq!(t.get(&key("crlf")).unwrap(), Some(Value::Str("line\nmore\nend".into())));
    }

    #[test]
    fn the_decoder_refuses_what_diskcache_never_writes() {
        let row = |mode, filename: Option<&str>, inline| Row {
            rowid: 9,
            expire_time: None,
            tag: None,
            mode,
            filename: filename.map(String::from),
            inline,
        };
        let corrupt = |r: &Row| matches!(r.source(), Err(Error::CorruptRow { rowid: 9, .. }));
        assert!(corrupt(&row(MODE_BINARY, None, None)), "a file mode without a file");
        assert!(corrupt(&row(MODE_TEXT, None, Some(Scalar::Str("x".into())))));
        assert!(corrupt(&row(MODE_PICKLE, None, Some(Scalar::Int(1)))), "an inline pickle that is not a BLOB");
        assert!(corrupt(&row(7, None, None)), "an unknown mode");
        assert!(matches!(row(MODE_RAW, None, None).source(), Ok(Source::Inline(Value::None))));
        assert!(matches!(
            row(MODE_PICKLE, None, Some(Scalar::Bytes(vec![1]))).source(),
            Ok(Source::Inline(Value::Pickle(p))) if p == [1]
        ));
        assert!(matches!(
            row(MODE_TEXT, Some("ab/cd/x.val"), None).source(),
            Ok(Source::File { name: "ab/cd/x.val", mode: MODE_TEXT })
        ));
    }

    #[test]
    fn a_vanished_value_file_is_a_miss() {
        let t = TestCache::new();
        t.set(&key("a"), &Value::Bytes(vec![1; 40_000]), None, None).unwrap();
        std::fs::remove_file(t.path().join(&t.value_files()[0])).unwrap();
        assert_eq!(t.get(&key("a")).unwrap(), None);
        assert!(t.read(&key("a")).unwrap().is_none());
    }
}
