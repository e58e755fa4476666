//! The engine's errors: one enum for opening a cache, one for operations on
//! it. Errno is not this layer's concern; `src/fs/` maps these once.

use std::path::PathBuf;

use thiserror::Error;

/// Why a cache directory could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error("cache directory {path}: {source}")]
    Directory { path: PathBuf, source: std::io::Error },
    #[error("{path} is not an SQLite database (corrupt, encrypted or another file): {source}")]
    NotADatabase { path: PathBuf, source: rusqlite::Error },
    #[error("{path} is an SQLite database but not a python-diskcache cache: {reason}")]
    Foreign { path: PathBuf, reason: String },
    /// A cache that cannot be read as it is (read-only media whose WAL
    /// holds changes).
    #[error("{path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path}: invalid setting {name} = {value}: {reason}")]
    BadSetting { path: PathBuf, name: String, value: String, reason: String },
    #[error("{path}: database is locked by another process (waited {seconds} s)")]
    Timeout { path: PathBuf, seconds: f64 },
    #[error("{path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
}

/// Why an operation on an open cache failed.
#[derive(Debug, Error)]
pub enum Error {
    /// The database stayed locked past the timeout (diskcache's `Timeout`).
    /// `removed` counts rows an iterative operation (clear, evict, expire,
    /// cull) removed before it gave up, as `Timeout.args[0]` does.
    #[error("database timeout: another process holds the cache's write lock (removed {removed} before giving up)")]
    Timeout { removed: u64 },
    /// A row's `filename` leaves the cache directory (absolute, `..`, or
    /// through a symbolic link). It is never opened, written or deleted.
    #[error("row {rowid}: value file name {filename:?} points outside the cache directory; refused")]
    UnsafeFilename { rowid: i64, filename: String },
    /// A row that python-diskcache could not have written.
    #[error("row {rowid}: {reason}")]
    CorruptRow { rowid: i64, reason: String },
    /// `incr`/`decr` of a value that is not an int or float.
    #[error("value of key {key} is a {type_name}, not a number")]
    NotANumber { key: String, type_name: &'static str },
    /// `incr`/`decr` past i64 (Python would overflow the SQLite column too).
    #[error("incrementing key {key} overflows a 64-bit integer")]
    Overflow { key: String },
    /// `incr`/`decr` with no default on a missing key (Python's KeyError).
    #[error("key {key} is not in the cache")]
    KeyNotFound { key: String },
    /// `reset` with a value the setting cannot take.
    #[error("invalid setting {name} = {value}: {reason}")]
    BadSetting { name: String, value: String, reason: String },
    /// The handle was opened read-only.
    #[error("the cache was opened read-only")]
    ReadOnly,
    /// The caller of a transaction gave up on it (its own error is the
    /// one to report); everything in it was rolled back.
    #[error("the transaction was rolled back by its caller")]
    Aborted,
    #[error("value file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A handle on one of a FanoutCache's shards could not be opened for
    /// the operation (the file system's sharded store opens them lazily).
    #[error("{0}")]
    Shard(Box<OpenError>),
    /// A change of a FanoutCache tried to write a shard it had not locked
    /// (its key moved to another shard since the change began); nothing
    /// was written, and trying again locks the right one.
    #[error("key {key} moved to another shard during the change; try again")]
    ShardNotLocked { key: String },
}

impl Error {
    /// True when the error means "the database was busy": a retryable state.
    pub(crate) fn is_busy(err: &rusqlite::Error) -> bool {
        matches!(
            err,
            rusqlite::Error::SqliteFailure(e, _)
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    || e.code == rusqlite::ErrorCode::DatabaseLocked
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
