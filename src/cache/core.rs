//! `Cache`: python-diskcache 5.6's `Cache` over the same directory, with the
//! SQL of `core.py` in plain sight beside each method that uses it.
//!
//! Concurrency contract (as core.py's):
//! - Every write runs in a `BEGIN IMMEDIATE` transaction; transactions nest
//!   on one handle and only the outermost commits.
//! - A new value file is written *before* its row is committed, and an old
//!   one removed only *after* the COMMIT that dropped its row, so a reader in
//!   another process never finds a row whose file is not yet there, and a
//!   file is never lost for a row that survives a rollback.
//! - A value file that vanishes between the SELECT and the read (a
//!   concurrent delete) is a miss, not an error.
//!
//! A `Cache` is one SQLite connection: `Send`, not `Sync`. Threads each open
//! their own handle (python-diskcache keeps one connection per thread too).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::disk::{Disk, FetchError, universal_newlines};
use super::error::{Error, OpenError, Result};
use super::read_cache::{ValueCache, WalWatch};
use super::settings::{
    DBNAME, EvictionPolicy, METADATA, MODE_BINARY, MODE_PICKLE, MODE_RAW, MODE_TEXT, Settings, default_settings,
};
use super::types::{Entry, Key, Number, Scalar, Side, Value};

/// The source of "now" in Unix seconds. Injectable so that tests can run
/// python-diskcache and this engine on one shared, deterministic clock.
pub type Clock = Arc<dyn Fn() -> f64 + Send + Sync>;

/// The system clock, as `time.time()`.
pub fn system_clock() -> Clock {
    Arc::new(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()))
}

/// How to open a cache (diskcache's `Cache(directory, timeout, **settings)`).
#[derive(Clone)]
pub struct CacheOptions {
    /// SQLite busy timeout: how long a write waits for another process's
    /// lock before failing with [`Error::Timeout`] (diskcache: 60 s).
    pub timeout: Duration,
    /// Settings to apply over the stored ones (diskcache's `**settings`).
    pub settings: Vec<(String, Scalar)>,
    /// When true, an operation whose transaction times out tries again
    /// instead of failing (diskcache's `retry=True`).
    pub retry: bool,
    /// Open without ever writing to the directory: no table creation, no
    /// settings written, no statistics or access-time updates, and every
    /// write operation fails with [`Error::ReadOnly`].
    pub read_only: bool,
    pub clock: Clock,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            timeout: Duration::from_secs(60),
            settings: Vec::new(),
            retry: false,
            read_only: false,
            clock: system_clock(),
        }
    }
}

/// Warnings from [`Cache::check`], one per problem, as diskcache warns.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckWarning {
    pub kind: CheckKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckKind {
    Integrity,
    WrongFileSize,
    FileNotFound,
    UnknownFile,
    EmptyDirectory,
    CountMismatch,
    SizeMismatch,
    /// Ours: a row whose filename leaves the cache directory.
    UnsafeFilename,
}

/// What [`Cache::read`] returns: an open value file, or the value itself
/// when it is stored inline (as diskcache's `get(read=True)` does).
pub enum ReadHandle {
    File(File),
    Inline(Value),
}

/// For an attribute of an entry being replaced: a new value, or the one
/// the live entry had.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr<T> {
    Set(T),
    Keep,
}

/// A row's stored form: the `size, mode, filename, value` columns.
pub(crate) struct Stored {
    pub size: i64,
    pub mode: i64,
    pub filename: Option<String>,
    pub inline: Option<Scalar>,
}

/// The columns the read paths select:
/// `rowid, expire_time, tag, mode, filename, value`.
struct Row {
    rowid: i64,
    expire_time: Option<f64>,
    tag: Option<Scalar>,
    mode: i64,
    filename: Option<String>,
    inline: Option<Scalar>,
}

/// An open cache directory.
pub struct Cache {
    directory: PathBuf,
    disk: Disk,
    conn: Connection,
    settings: RefCell<Settings>,
    page_size: i64,
    timeout: Duration,
    retry: bool,
    read_only: bool,
    clock: Clock,
    /// Nesting depth of transactions on this handle; 0 outside.
    txn_depth: Cell<u32>,
    /// Old value files to remove after the outermost COMMIT.
    cleanup: RefCell<Vec<String>>,
    /// New value files written for the current transaction, removed if it
    /// rolls back (core.py leaks them; we do not).
    written: RefCell<Vec<String>>,
    /// Small values from recent gets, valid while nobody commits
    /// (`read_cache.rs`); `None` watch when not in WAL mode.
    wal_watch: Option<WalWatch>,
    value_cache: RefCell<ValueCache>,
    /// A read-only handle whose opening made SQLite create `cache.db-wal`
    /// and `cache.db-shm` (every reader of a WAL database needs them):
    /// closing removes them again, see `Drop`.
    created_wal_files: bool,
}

// ---------------------------------------------------------------------------
// Opening: mirrors Cache.__init__ statement by statement.

const CREATE_SETTINGS: &str = "CREATE TABLE IF NOT EXISTS Settings ( key TEXT NOT NULL UNIQUE, value)";
const CREATE_CACHE: &str = "CREATE TABLE IF NOT EXISTS Cache ( rowid INTEGER PRIMARY KEY, key BLOB, \
     raw INTEGER, store_time REAL, expire_time REAL, access_time REAL, access_count INTEGER DEFAULT 0, \
     tag BLOB, size INTEGER DEFAULT 0, mode INTEGER DEFAULT 0, filename TEXT, value BLOB)";
const CREATE_KEY_INDEX: &str = "CREATE UNIQUE INDEX IF NOT EXISTS Cache_key_raw ON Cache(key, raw)";
const CREATE_EXPIRE_INDEX: &str = "CREATE INDEX IF NOT EXISTS Cache_expire_time ON Cache (expire_time)";
/// The count and size triggers, exactly as core.py writes them (the double
/// quoted "count" is a string literal to SQLite, as in the original).
const CREATE_TRIGGERS: [&str; 5] = [
    "CREATE TRIGGER IF NOT EXISTS Settings_count_insert AFTER INSERT ON Cache FOR EACH ROW BEGIN \
     UPDATE Settings SET value = value + 1 WHERE key = \"count\"; END",
    "CREATE TRIGGER IF NOT EXISTS Settings_count_delete AFTER DELETE ON Cache FOR EACH ROW BEGIN \
     UPDATE Settings SET value = value - 1 WHERE key = \"count\"; END",
    "CREATE TRIGGER IF NOT EXISTS Settings_size_insert AFTER INSERT ON Cache FOR EACH ROW BEGIN \
     UPDATE Settings SET value = value + NEW.size WHERE key = \"size\"; END",
    "CREATE TRIGGER IF NOT EXISTS Settings_size_update AFTER UPDATE ON Cache FOR EACH ROW BEGIN \
     UPDATE Settings SET value = value + NEW.size - OLD.size WHERE key = \"size\"; END",
    "CREATE TRIGGER IF NOT EXISTS Settings_size_delete AFTER DELETE ON Cache FOR EACH ROW BEGIN \
     UPDATE Settings SET value = value - OLD.size WHERE key = \"size\"; END",
];
const CREATE_TAG_INDEX: &str = "CREATE INDEX IF NOT EXISTS Cache_tag_rowid ON Cache(tag, rowid)";
const DROP_TAG_INDEX: &str = "DROP INDEX IF EXISTS Cache_tag_rowid";

/// The Cache table's columns; a table lacking one is not diskcache's.
const CACHE_COLUMNS: [&str; 12] = [
    "rowid",
    "key",
    "raw",
    "store_time",
    "expire_time",
    "access_time",
    "access_count",
    "tag",
    "size",
    "mode",
    "filename",
    "value",
];

impl Cache {
    /// Opens (creating if needed) a cache with diskcache's defaults.
    pub fn open(directory: &Path) -> Result<Cache, OpenError> {
        Cache::open_with(directory, CacheOptions::default())
    }

    /// Opens a cache as `Cache(directory, timeout, **settings)` does: the
    /// stored settings win over the defaults, and `options.settings` over
    /// both; all of them are then written back.
    pub fn open_with(directory: &Path, options: CacheOptions) -> Result<Cache, OpenError> {
        let directory = expand_user(directory);
        let path_err = |source| OpenError::Directory { path: directory.clone(), source };
        if !options.read_only && !directory.is_dir() {
            std::fs::create_dir_all(&directory).map_err(path_err)?;
        }
        let disk = Disk::open(&directory).map_err(path_err)?;
        let db_path = directory.join(DBNAME);
        let sqlite_err = |source| OpenError::Sqlite { path: db_path.clone(), source };
        let wal_files_absent = !wal_file(&db_path, "-wal").exists() && !wal_file(&db_path, "-shm").exists();

        let flags = if options.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open_with_flags(&db_path, flags).map_err(sqlite_err)?;
        conn.busy_timeout(options.timeout).map_err(sqlite_err)?;
        conn.set_prepared_statement_cache_capacity(64);

        // What is in the file? A non-database fails here with NOTADB.
        let tables: Vec<String> = query_column(&conn, "SELECT name FROM sqlite_master WHERE type = 'table'")
            .map_err(|source| classify_open_error(&db_path, source))?;
        let has = |t: &str| tables.iter().any(|n| n == t);
        if !tables.is_empty() && !has("Settings") && !has("Cache") {
            return Err(OpenError::Foreign {
                path: db_path,
                reason: format!("it has tables {tables:?} and neither Settings nor Cache"),
            });
        }
        if has("Cache") {
            let columns: Vec<String> =
                query_column(&conn, "SELECT name FROM pragma_table_info('Cache')").map_err(sqlite_err)?;
            if let Some(missing) = CACHE_COLUMNS.iter().skip(1).find(|c| !columns.iter().any(|n| n == *c)) {
                return Err(OpenError::Foreign {
                    path: db_path,
                    reason: format!("its Cache table has no column {missing}"),
                });
            }
        }
        if options.read_only && !(has("Settings") && has("Cache")) {
            return Err(OpenError::Foreign {
                path: db_path,
                reason: "no Settings and Cache tables, and a read-only open creates nothing".into(),
            });
        }

        // Settings: defaults, then what is stored, then the caller's.
        let mut sets = default_settings();
        if has("Settings") {
            let mut stmt = conn.prepare("SELECT key, value FROM Settings").map_err(sqlite_err)?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, SqlValue>(1)?))).map_err(sqlite_err)?;
            for row in rows {
                let (k, v) = row.map_err(sqlite_err)?;
                if let Some(v) = scalar_from_owned(v) {
                    sets.insert(k, v);
                }
            }
        }
        for (k, v) in &options.settings {
            sets.insert(k.clone(), v.clone());
        }
        for (name, _) in METADATA {
            sets.remove(name);
        }
        for (name, value) in &sets {
            validate_setting(name, value).map_err(|reason| OpenError::BadSetting {
                path: db_path.clone(),
                name: name.clone(),
                value: value.to_string(),
                reason,
            })?;
        }

        // Per-connection pragmas; persistent ones (journal mode, auto
        // vacuum) only when writing: core.py sets them before any table.
        for (name, value) in &sets {
            if let Some(pragma) = name.strip_prefix("sqlite_") {
                let persistent = matches!(pragma, "journal_mode" | "auto_vacuum");
                if options.read_only && persistent {
                    continue;
                }
                set_pragma(&conn, pragma, value, options.timeout).map_err(|e| match e {
                    PragmaError::Timeout => {
                        OpenError::Timeout { path: db_path.clone(), seconds: options.timeout.as_secs_f64() }
                    }
                    PragmaError::Sqlite(source) => OpenError::Sqlite { path: db_path.clone(), source },
                })?;
            }
        }

        if !options.read_only {
            let policy = policy_of(&sets);
            let tag_index = sets.get("tag_index").is_some_and(|v| *v != Scalar::Int(0));
            let start = Instant::now();
            loop {
                match Self::init_schema(&conn, &sets, policy, tag_index) {
                    Ok(()) => break,
                    Err(e) if Error::is_busy(&e) && start.elapsed() < options.timeout => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) if Error::is_busy(&e) => {
                        return Err(OpenError::Timeout { path: db_path, seconds: options.timeout.as_secs_f64() });
                    }
                    Err(source) => return Err(OpenError::Sqlite { path: db_path, source }),
                }
            }
        }

        // Read back every row, metadata included, as the handle's view.
        let mut values = BTreeMap::new();
        {
            let mut stmt = conn.prepare("SELECT key, value FROM Settings").map_err(sqlite_err)?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, SqlValue>(1)?))).map_err(sqlite_err)?;
            for row in rows {
                let (k, v) = row.map_err(sqlite_err)?;
                if let Some(v) = scalar_from_owned(v) {
                    values.insert(k, v);
                }
            }
        }
        for (k, v) in sets {
            values.entry(k).or_insert(v);
        }
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(sqlite_err)?;

        Ok(Cache {
            directory,
            disk,
            conn,
            settings: RefCell::new(Settings { values }),
            page_size,
            timeout: options.timeout,
            retry: options.retry,
            read_only: options.read_only,
            clock: options.clock,
            txn_depth: Cell::new(0),
            cleanup: RefCell::new(Vec::new()),
            written: RefCell::new(Vec::new()),
            // The connection has read the database, so in WAL mode its
            // -shm file exists and is initialized.
            wal_watch: WalWatch::open(&db_path),
            value_cache: RefCell::new(ValueCache::default()),
            created_wal_files: options.read_only && wal_files_absent,
        })
    }

    /// Tables, settings rows, indexes and triggers, in one transaction
    /// (core.py runs them one by one; the end state is the same).
    fn init_schema(
        conn: &Connection,
        sets: &BTreeMap<String, Scalar>,
        policy: EvictionPolicy,
        tag_index: bool,
    ) -> rusqlite::Result<()> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| {
            conn.execute(CREATE_SETTINGS, [])?;
            for (k, v) in sets {
                conn.execute("INSERT OR REPLACE INTO Settings VALUES (?, ?)", params![k, v])?;
            }
            for (k, v) in METADATA {
                conn.execute("INSERT OR IGNORE INTO Settings VALUES (?, ?)", params![k, v])?;
            }
            conn.execute(CREATE_CACHE, [])?;
            match conn.execute(CREATE_KEY_INDEX, []) {
                // A crafted or damaged cache with duplicate keys (python-
                // diskcache refuses to open it): serve it without the index;
                // check() reports the duplicates and check(fix) repairs them.
                Err(rusqlite::Error::SqliteFailure(e, msg)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                    log::error!("duplicate keys in Cache ({}): run check with fix", msg.unwrap_or_default());
                }
                other => drop(other?),
            }
            conn.execute(CREATE_EXPIRE_INDEX, [])?;
            if let Some(sql) = policy.init_sql() {
                conn.execute(sql, [])?;
            }
            for sql in CREATE_TRIGGERS {
                conn.execute(sql, [])?;
            }
            conn.execute(if tag_index { CREATE_TAG_INDEX } else { DROP_TAG_INDEX }, [])?;
            conn.execute("UPDATE Settings SET value = ? WHERE key = 'tag_index'", [i64::from(tag_index)])?;
            Ok(())
        })();
        match result {
            Ok(()) => conn.execute_batch("COMMIT"),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// A second handle on the same directory (for another thread), without
    /// rewriting the settings as a fresh `open` does.
    pub fn try_clone(&self) -> Result<Cache, OpenError> {
        let options = CacheOptions {
            timeout: self.timeout,
            settings: Vec::new(),
            retry: self.retry,
            read_only: self.read_only,
            clock: self.clock.clone(),
        };
        let db_path = self.directory.join(DBNAME);
        let sqlite_err = |source| OpenError::Sqlite { path: db_path.clone(), source };
        let flags = if options.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open_with_flags(&db_path, flags).map_err(sqlite_err)?;
        conn.busy_timeout(options.timeout).map_err(sqlite_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        let settings = self.settings.borrow().clone();
        for (name, value) in &settings.values {
            if let Some(pragma @ ("cache_size" | "mmap_size" | "synchronous")) = name.strip_prefix("sqlite_") {
                let _ = set_pragma(&conn, pragma, value, options.timeout);
            }
        }
        Ok(Cache {
            directory: self.directory.clone(),
            disk: Disk::open(&self.directory)
                .map_err(|source| OpenError::Directory { path: self.directory.clone(), source })?,
            conn,
            settings: RefCell::new(settings),
            page_size: self.page_size,
            timeout: options.timeout,
            retry: options.retry,
            read_only: options.read_only,
            clock: options.clock,
            txn_depth: Cell::new(0),
            cleanup: RefCell::new(Vec::new()),
            written: RefCell::new(Vec::new()),
            wal_watch: WalWatch::open(&db_path),
            value_cache: RefCell::new(ValueCache::default()),
            created_wal_files: false,
        })
    }

    /// Closes the database connection (`Cache.close`).
    pub fn close(self) {
        drop(self);
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// How many gets this handle served from its value cache without asking
    /// SQLite (see `read_cache.rs`); 0 when the cache is not in WAL mode.
    pub fn value_cache_hits(&self) -> u64 {
        self.value_cache.borrow().hits
    }

    /// The busy timeout (`Cache.timeout`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The value-file store under the directory.
    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    /// The connection, for the sibling modules' SQL (`meta.rs`).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn min_file_size(&self) -> i64 {
        self.settings.borrow().min_file_size()
    }

    pub(crate) fn policy_and_statistics(&self) -> (EvictionPolicy, bool) {
        let s = self.settings.borrow();
        (s.eviction_policy(), s.statistics())
    }

    /// This handle's view of the Settings table (refresh with [`Cache::reset`]).
    pub fn settings(&self) -> Settings {
        self.settings.borrow().clone()
    }

    /// The clock's "now", in Unix seconds.
    pub fn now(&self) -> f64 {
        (self.clock)()
    }

    // -----------------------------------------------------------------------
    // Transactions (Cache._transact).

    /// Runs `f` inside one transaction: atomic, with the cache's write lock
    /// held (`Cache.transact`). Nested calls join the outer transaction.
    pub fn transact<T>(&self, f: impl FnOnce(&Cache) -> Result<T>) -> Result<T> {
        self.in_transaction(|| f(self))
    }

    pub(crate) fn in_transaction<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let depth = self.txn_depth.get();
        if depth > 0 {
            self.txn_depth.set(depth + 1);
            let result = f();
            self.txn_depth.set(depth);
            return result;
        }
        if let Err(e) = self.begin_immediate() {
            self.discard_written();
            return Err(e);
        }
        self.txn_depth.set(1);
        let result = f();
        self.txn_depth.set(0);
        match result {
            Ok(value) => match self.conn.execute_batch("COMMIT") {
                Ok(()) => {
                    self.written.borrow_mut().clear();
                    let names = std::mem::take(&mut *self.cleanup.borrow_mut());
                    for name in names {
                        self.disk.remove(&name);
                    }
                    Ok(value)
                }
                Err(e) => {
                    self.rollback();
                    Err(e.into())
                }
            },
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    fn begin_immediate(&self) -> Result<()> {
        loop {
            match self.conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => return Ok(()),
                Err(e) if Error::is_busy(&e) => {
                    if !self.retry {
                        return Err(Error::Timeout { removed: 0 });
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn rollback(&self) {
        let _ = self.conn.execute_batch("ROLLBACK");
        self.cleanup.borrow_mut().clear();
        self.discard_written();
    }

    fn discard_written(&self) {
        let names = std::mem::take(&mut *self.written.borrow_mut());
        for name in names {
            self.disk.remove(&name);
        }
    }

    /// Schedules an old value file for removal after COMMIT.
    pub(crate) fn cleanup_later(&self, filename: Option<String>) {
        if let Some(name) = filename {
            self.cleanup.borrow_mut().push(name);
        }
    }

    // -----------------------------------------------------------------------
    // Serialization (Disk.store / Disk.fetch), on top of src/cache/disk.rs.

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
    fn store_reader(&self, reader: &mut dyn Read) -> Result<Stored> {
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
    fn fetch(&self, row: &Row) -> Result<Option<Value>> {
        let corrupt = |reason: String| Error::CorruptRow { rowid: row.rowid, reason };
        match row.mode {
            MODE_RAW => match &row.inline {
                Some(Scalar::Str(s)) => Ok(Some(Value::Str(s.clone()))),
                Some(Scalar::Bytes(b)) => Ok(Some(Value::Bytes(b.clone()))),
                Some(Scalar::Int(i)) => Ok(Some(Value::Int(*i))),
                Some(Scalar::Float(f)) => Ok(Some(Value::Float(*f))),
                // What python-diskcache stores for float('nan'); it reads None.
                None => Ok(Some(Value::None)),
            },
            MODE_PICKLE if row.filename.is_none() => match &row.inline {
                Some(Scalar::Bytes(b)) => Ok(Some(Value::Pickle(b.clone()))),
                _ => Err(corrupt("inline pickle is not a BLOB".into())),
            },
            MODE_BINARY | MODE_TEXT | MODE_PICKLE => {
                let Some(name) = row.filename.as_deref() else {
                    return Err(corrupt(format!("mode {} without a filename", row.mode)));
                };
                let data = match self.disk.read_value(name) {
                    Ok(d) => d,
                    Err(FetchError::Missing) => return Ok(None),
                    Err(FetchError::Unsafe) => return Err(self.unsafe_filename(row.rowid, name)),
                    Err(FetchError::Io(source)) => return Err(self.io_err(name, source)),
                };
                Ok(Some(match row.mode {
                    MODE_BINARY => Value::Bytes(data),
                    MODE_PICKLE => Value::Pickle(data),
                    _ => Value::Str(universal_newlines(
                        String::from_utf8(data).map_err(|_| corrupt(format!("text file {name} is not UTF-8")))?,
                    )),
                }))
            }
            other => Err(corrupt(format!("unknown mode {other}"))),
        }
    }

    pub(crate) fn unsafe_filename(&self, rowid: i64, name: &str) -> Error {
        let e = Error::UnsafeFilename { rowid, filename: name.to_string() };
        log::error!("{}: {e}", self.directory.display());
        e
    }

    // -----------------------------------------------------------------------
    // Rows (Cache._row_update / Cache._row_insert).

    fn row_update(
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

    fn row_insert(
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

    /// `SELECT rowid, expire_time, tag, mode, filename, value` plus `extra`
    /// leading parameters; reads at most one row.
    fn select_row(&self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<Option<Row>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        match rows.next()? {
            Some(r) => Ok(Some(read_row(r)?)),
            None => Ok(None),
        }
    }

    // -----------------------------------------------------------------------
    // Culling (Cache._cull).

    fn cull_in_transaction(&self, now: f64, limit: Option<i64>) -> Result<()> {
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
        if self.volume()? < self.settings.borrow().size_limit() {
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

    fn filenames(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Option<String>>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params, |r| r.get::<_, Option<String>>(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // -----------------------------------------------------------------------
    // Writing entries.

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
        const SELECT: &str = "SELECT rowid, filename, expire_time, tag FROM Cache WHERE key = ? AND raw = ?";
        self.in_transaction(|| {
            let old: Option<(i64, Option<String>, Option<f64>, SqlValue)> = self
                .conn
                .prepare_cached(SELECT)?
                .query_row(params![key, key.raw()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()?;
            let live = old.as_ref().filter(|o| o.2.is_none_or(|t| t > now));
            let expire_time = match expire_time {
                Attr::Set(v) => v,
                Attr::Keep => live.and_then(|o| o.2),
            };
            let tag = match tag {
                Attr::Set(v) => v,
                Attr::Keep => live.and_then(|o| scalar_from_owned(o.3.clone())),
            };
            if let Some((rowid, old_filename, _, _)) = old {
                self.cleanup_later(old_filename);
                self.row_update(rowid, now, expire_time, tag.as_ref(), &stored)?;
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
        const SELECT: &str = "SELECT rowid, filename, expire_time FROM Cache WHERE key = ? AND raw = ?";
        let new_file = stored.filename.clone();
        self.in_transaction(|| {
            let old: Option<(i64, Option<String>, Option<f64>)> = self
                .conn
                .prepare_cached(SELECT)?
                .query_row(params![key, key.raw()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            match old {
                Some((_, _, old_expire)) if old_expire.is_none_or(|t| t > now) => {
                    self.cleanup_later(new_file.clone());
                    return Ok(false);
                }
                Some((rowid, old_filename, _)) => {
                    self.cleanup_later(old_filename);
                    self.row_update(rowid, now, expire_time, tag, &stored)?;
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
        const SELECT: &str = "SELECT rowid, expire_time, filename, value FROM Cache WHERE key = ? AND raw = ?";
        let policy = self.settings.borrow().eviction_policy();
        self.in_transaction(|| {
            let row: Option<(i64, Option<f64>, Option<String>, SqlValue)> = self
                .conn
                .prepare_cached(SELECT)?
                .query_row(params![key, key.raw()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()?;
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
            let Some((rowid, expire_time, filename, value)) = row else {
                return start_over(None);
            };
            if expire_time.is_some_and(|t| t < now) {
                let n = start_over(Some(rowid))?;
                self.cleanup_later(filename);
                return Ok(n);
            }
            let (new, stored): (Number, SqlValue) = match value {
                SqlValue::Integer(i) => {
                    let n = i.checked_add(delta).ok_or_else(|| Error::Overflow { key: key.to_string() })?;
                    (Number::Int(n), SqlValue::Integer(n))
                }
                SqlValue::Real(f) => {
                    let n = f + delta as f64;
                    (Number::Float(n), SqlValue::Real(n))
                }
                other => {
                    let type_name = match other {
                        SqlValue::Text(_) => "str",
                        SqlValue::Blob(_) => "bytes or pickle",
                        _ => "value stored in a file",
                    };
                    return Err(Error::NotANumber { key: key.to_string(), type_name });
                }
            };
            self.conn.prepare_cached(policy.incr_update_sql())?.execute(params![now, stored, rowid])?;
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
        const SELECT: &str = "SELECT rowid, expire_time FROM Cache WHERE key = ? AND raw = ?";
        self.in_transaction(|| {
            let row: Option<(i64, Option<f64>)> = self
                .conn
                .prepare_cached(SELECT)?
                .query_row(params![key, key.raw()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((rowid, old)) = row
                && old.is_none_or(|t| t > now)
            {
                self.conn
                    .prepare_cached("UPDATE Cache SET expire_time = ? WHERE rowid = ?")?
                    .execute(params![expire_time, rowid])?;
                return Ok(true);
            }
            Ok(false)
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
        const SELECT: &str = "SELECT rowid, filename FROM Cache WHERE key = ? AND raw = ? \
             AND (expire_time IS NULL OR expire_time > ?)";
        self.in_transaction(|| {
            let row: Option<(i64, Option<String>)> = self
                .conn
                .prepare_cached(SELECT)?
                .query_row(params![key, key.raw(), now], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((rowid, filename)) = row else { return Ok(false) };
            self.conn.prepare_cached("DELETE FROM Cache WHERE rowid = ?")?.execute([rowid])?;
            self.cleanup_later(filename);
            Ok(true)
        })
    }

    // -----------------------------------------------------------------------
    // Reading entries.

    const SELECT_LIVE: &'static str = "SELECT rowid, expire_time, tag, mode, filename, value FROM Cache \
         WHERE key = ? AND raw = ? AND (expire_time IS NULL OR expire_time > ?)";

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
            let Some(row) = self.select_row(Self::SELECT_LIVE, params![key, key.raw(), self.now()])? else {
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
            let Some(row) = self.select_row(Self::SELECT_LIVE, params![key, key.raw(), self.now()])? else {
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
        let Some(row) = self.select_row(Self::SELECT_LIVE, params![key, key.raw(), self.now()])? else {
            return Ok(None);
        };
        if row.mode == MODE_BINARY
            && let Some(name) = row.filename.as_deref()
        {
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
        const SELECT: &str = "SELECT rowid FROM Cache WHERE key = ? AND raw = ? \
             AND (expire_time IS NULL OR expire_time > ?)";
        Ok(self
            .conn
            .prepare_cached(SELECT)?
            .query_row(params![key, key.raw(), self.now()], |r| r.get::<_, i64>(0))
            .optional()?
            .is_some())
    }

    /// Removes a live entry and returns it (`Cache.pop`).
    pub fn pop(&self, key: &Key) -> Result<Option<Entry>> {
        let row = self.in_transaction(|| {
            let row = self.select_row(Self::SELECT_LIVE, params![key, key.raw(), self.now()])?;
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

    // -----------------------------------------------------------------------
    // Queues (Cache.push / pull / peek) and peekitem.

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

    // -----------------------------------------------------------------------
    // Bulk removal (Cache.evict / expire / cull / clear and _select_delete).

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
        while self.volume()? > self.settings.borrow().size_limit() {
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

    // -----------------------------------------------------------------------
    // Iteration.

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

    /// Number of entries, expired included (`len(cache)`), from Settings.
    pub fn len(&self) -> Result<i64> {
        match self.reset("count", None)? {
            Scalar::Int(n) => Ok(n),
            other => Err(Error::BadSetting {
                name: "count".into(),
                value: other.to_string(),
                reason: "not an integer".into(),
            }),
        }
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    // -----------------------------------------------------------------------
    // Settings, statistics, volume.

    /// Estimated size on disk: database pages plus value files
    /// (`Cache.volume`).
    pub fn volume(&self) -> Result<i64> {
        let pages: i64 = self.conn.prepare_cached("PRAGMA page_count")?.query_row([], |r| r.get(0))?;
        let size = match self.reset("size", None)? {
            Scalar::Int(n) => n,
            Scalar::Float(f) => f as i64,
            _ => 0,
        };
        // Saturating: `size` comes from the Settings table, which a damaged
        // or crafted cache may set to anything (Python's ints never overflow).
        Ok(self.page_size.saturating_mul(pages).saturating_add(size))
    }

    /// Returns `(hits, misses)`, then turns statistics on or off and
    /// optionally zeroes them (`Cache.stats`).
    pub fn stats(&self, enable: bool, reset: bool) -> Result<(i64, i64)> {
        let int = |v: Scalar| if let Scalar::Int(n) = v { n } else { 0 };
        let result = (int(self.reset("hits", None)?), int(self.reset("misses", None)?));
        if reset {
            self.reset("hits", Some(Scalar::Int(0)))?;
            self.reset("misses", Some(Scalar::Int(0)))?;
        }
        self.reset("statistics", Some(Scalar::Int(i64::from(enable))))?;
        Ok(result)
    }

    /// Reads (`value = None`) or writes a Settings row (`Cache.reset`):
    /// `sqlite_*` settings also run their PRAGMA, `disk_*` ones change how
    /// values are stored. Values are validated (core.py does not, and then
    /// fails later); an invalid one is [`Error::BadSetting`].
    pub fn reset(&self, name: &str, value: Option<Scalar>) -> Result<Scalar> {
        let Some(value) = value else {
            let v: SqlValue = self
                .conn
                .prepare_cached("SELECT value FROM Settings WHERE key = ?")?
                .query_row([name], |r| r.get(0))
                .optional()?
                .ok_or_else(|| Error::BadSetting {
                    name: name.into(),
                    value: String::new(),
                    reason: "no such setting".into(),
                })?;
            let v = scalar_from_owned(v).ok_or_else(|| Error::BadSetting {
                name: name.into(),
                value: "NULL".into(),
                reason: "stored value is NULL".into(),
            })?;
            self.settings.borrow_mut().values.insert(name.to_string(), v.clone());
            return Ok(v);
        };
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        validate_setting(name, &value).map_err(|reason| Error::BadSetting {
            name: name.into(),
            value: value.to_string(),
            reason,
        })?;
        let start = Instant::now();
        loop {
            match self.conn.prepare_cached("UPDATE Settings SET value = ? WHERE key = ?")?.execute(params![value, name])
            {
                Ok(_) => break,
                Err(e) if Error::is_busy(&e) && (self.retry || start.elapsed() < self.timeout) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) if Error::is_busy(&e) => return Err(Error::Timeout { removed: 0 }),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(pragma) = name.strip_prefix("sqlite_") {
            set_pragma(&self.conn, pragma, &value, self.timeout).map_err(|e| match e {
                PragmaError::Timeout => Error::Timeout { removed: 0 },
                PragmaError::Sqlite(e) => Error::Sqlite(e),
            })?;
        }
        if name == "eviction_policy"
            && let Scalar::Str(p) = &value
            && let Some(sql) = EvictionPolicy::from_name(p).and_then(|p| p.init_sql())
        {
            // core.py creates a policy's index only when opening; creating it
            // now keeps culling fast after a reset.
            self.conn.execute(sql, [])?;
        }
        self.settings.borrow_mut().values.insert(name.to_string(), value.clone());
        Ok(value)
    }

    /// Every Settings row as stored now (another process may have reset
    /// some), refreshing this handle's view.
    pub fn read_settings(&self) -> Result<Settings> {
        let rows: Vec<(String, SqlValue)> = self
            .conn
            .prepare_cached("SELECT key, value FROM Settings")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let values: BTreeMap<String, Scalar> =
            rows.into_iter().filter_map(|(k, v)| scalar_from_owned(v).map(|v| (k, v))).collect();
        let settings = Settings { values };
        *self.settings.borrow_mut() = settings.clone();
        Ok(settings)
    }

    /// Whether `reset(name, value)` would accept the value, without
    /// changing anything.
    pub fn check_setting(&self, name: &str, value: &Scalar) -> Result<()> {
        validate_setting(name, value).map_err(|reason| Error::BadSetting {
            name: name.into(),
            value: value.to_string(),
            reason,
        })
    }

    /// `Cache.create_tag_index`.
    pub fn create_tag_index(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.conn.execute(CREATE_TAG_INDEX, [])?;
        self.reset("tag_index", Some(Scalar::Int(1)))?;
        Ok(())
    }

    /// `Cache.drop_tag_index`.
    pub fn drop_tag_index(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.conn.execute(DROP_TAG_INDEX, [])?;
        self.reset("tag_index", Some(Scalar::Int(0)))?;
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Consistency (Cache.check).

    /// Checks the database against the value files and the counters
    /// (`Cache.check`); with `fix`, repairs what it finds as diskcache does.
    /// A row whose filename leaves the directory is reported (and with
    /// `fix` deleted) without touching the path it names.
    pub fn check(&self, fix: bool) -> Result<Vec<CheckWarning>> {
        let mut warns = Vec::new();
        let mut warn = |kind, message: String| {
            log::warn!("check {}: {message}", self.directory.display());
            warns.push(CheckWarning { kind, message });
        };
        let integrity: Vec<String> = query_column(&self.conn, "PRAGMA integrity_check")?;
        if integrity.len() != 1 || integrity[0] != "ok" {
            for message in integrity {
                warn(CheckKind::Integrity, message);
            }
        }
        if fix {
            self.conn.execute_batch("VACUUM")?;
        }
        // Duplicate keys (only in a crafted or damaged cache: the unique
        // index forbids them): fix keeps the newest row of each.
        let duplicates: Vec<i64> = query_column(
            &self.conn,
            "SELECT c.rowid FROM Cache c JOIN (SELECT key, raw, MAX(rowid) AS last FROM Cache GROUP BY key, raw \
             HAVING COUNT(*) > 1) d ON c.key = d.key AND c.raw = d.raw AND c.rowid < d.last",
        )?;
        if !duplicates.is_empty() {
            warn(CheckKind::Integrity, format!("{} rows duplicate a newer row's key", duplicates.len()));
            if fix {
                self.in_transaction(|| {
                    for rowid in &duplicates {
                        let filename: Option<String> = self
                            .conn
                            .query_row("SELECT filename FROM Cache WHERE rowid = ?", [rowid], |r| r.get(0))
                            .optional()?
                            .flatten();
                        self.conn.execute("DELETE FROM Cache WHERE rowid = ?", [rowid])?;
                        // A copied row may share its file with the row kept.
                        let shared: i64 =
                            self.conn.query_row("SELECT COUNT(*) FROM Cache WHERE filename = ?", [&filename], |r| {
                                r.get(0)
                            })?;
                        if shared == 0 {
                            self.cleanup_later(filename);
                        }
                    }
                    self.conn.execute(CREATE_KEY_INDEX, [])?;
                    Ok(())
                })?;
            }
        }
        self.in_transaction(|| {
            let mut known: HashSet<PathBuf> = HashSet::new();
            let rows: Vec<(i64, i64, String)> = {
                let mut stmt =
                    self.conn.prepare("SELECT rowid, size, filename FROM Cache WHERE filename IS NOT NULL")?;
                let mapped =
                    stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0), r.get(2)?)))?;
                mapped.collect::<rusqlite::Result<_>>()?
            };
            for (rowid, size, filename) in rows {
                let full_path = self.disk.full_path(&filename);
                match self.disk.file_size(&filename) {
                    Ok(Some(real)) => {
                        known.insert(PathBuf::from(&filename));
                        if size != real as i64 {
                            warn(
                                CheckKind::WrongFileSize,
                                format!("wrong file size: {}, {real} != {size}", full_path.display()),
                            );
                            if fix {
                                self.conn.execute(
                                    "UPDATE Cache SET size = ? WHERE rowid = ?",
                                    params![real as i64, rowid],
                                )?;
                            }
                        }
                    }
                    Ok(None) => {
                        known.insert(PathBuf::from(&filename));
                        warn(CheckKind::FileNotFound, format!("file not found: {}", full_path.display()));
                        if fix {
                            self.conn.execute("DELETE FROM Cache WHERE rowid = ?", [rowid])?;
                        }
                    }
                    Err(FetchError::Unsafe) => {
                        warn(
                            CheckKind::UnsafeFilename,
                            format!("unsafe filename: row {rowid}, {filename:?} points outside the cache directory"),
                        );
                        if fix {
                            self.conn.execute("DELETE FROM Cache WHERE rowid = ?", [rowid])?;
                        }
                    }
                    Err(FetchError::Missing) => unreachable!("file_size maps Missing to None"),
                    Err(FetchError::Io(e)) => return Err(self.io_err(&filename, e)),
                }
            }
            // The file system against Cache.filename, then empty directories,
            // walked and removed through `Disk`: beneath the directory, never
            // following a symbolic link (a link is an unknown file itself).
            for rel in self.disk.walk().files {
                let path = self.disk.full_path(&rel);
                if known.contains(&rel) || path.to_string_lossy().contains(DBNAME) {
                    continue;
                }
                warn(CheckKind::UnknownFile, format!("unknown file: {}", path.display()));
                if fix {
                    let _ = self.disk.remove_entry(&rel);
                }
            }
            // Walk again, as core.py does: removing unknown files may have
            // emptied directories.
            for (rel, empty) in self.disk.walk().dirs {
                if empty {
                    warn(
                        CheckKind::EmptyDirectory,
                        format!("empty directory: {}", self.disk.full_path(&rel).display()),
                    );
                    if fix {
                        // Unlike core.py, also remove parents this emptied
                        // (`XX/` once its last `YY/` goes), so one fix
                        // leaves a cache that checks clean.
                        self.disk.remove_dirs(&rel);
                    }
                }
            }
            // Settings.count and Settings.size against the table.
            let int = |v: Scalar| if let Scalar::Int(n) = v { n } else { i64::MIN };
            let count = int(self.reset("count", None)?);
            let real_count: i64 = self.conn.query_row("SELECT COUNT(key) FROM Cache", [], |r| r.get(0))?;
            if count != real_count {
                warn(CheckKind::CountMismatch, format!("Settings.count != COUNT(Cache.key); {count} != {real_count}"));
                if fix {
                    self.conn.execute("UPDATE Settings SET value = ? WHERE key = ?", params![real_count, "count"])?;
                }
            }
            let size = int(self.reset("size", None)?);
            // SUM fails with "integer overflow" on absurd (crafted) sizes,
            // where core.py's check would fail too: TOTAL, saturated, then.
            let real_size: i64 = match self.conn.query_row("SELECT COALESCE(SUM(size), 0) FROM Cache", [], |r| r.get(0))
            {
                Ok(n) => n,
                Err(_) => {
                    let total: f64 = self.conn.query_row("SELECT TOTAL(size) FROM Cache", [], |r| r.get(0))?;
                    total as i64
                }
            };
            if size != real_size {
                warn(CheckKind::SizeMismatch, format!("Settings.size != SUM(Cache.size); {size} != {real_size}"));
                if fix {
                    self.conn.execute("UPDATE Settings SET value = ? WHERE key = ?", params![real_size, "size"])?;
                }
            }
            Ok(())
        })?;
        Ok(warns)
    }

    /// SQLite's `PRAGMA data_version`: changes whenever another connection
    /// commits. Lets a long-lived reader notice peers' writes cheaply.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self.conn.prepare_cached("PRAGMA data_version")?.query_row([], |r| r.get(0))?)
    }
}

/// `cache.db-wal` / `cache.db-shm` beside the database.
fn wal_file(db_path: &Path, suffix: &str) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl Drop for Cache {
    /// A read-only handle leaves the directory as it found it: if opening
    /// it created SQLite's WAL files, a brief read-write connection is
    /// opened and closed after ours, so that SQLite's own last-connection
    /// cleanup (checkpoint of the empty WAL, removal of both files) runs,
    /// which SQLite does only when no other process has the cache open.
    fn drop(&mut self) {
        if !self.created_wal_files {
            return;
        }
        self.wal_watch = None;
        let db_path = self.directory.join(DBNAME);
        let ours = std::mem::replace(
            &mut self.conn,
            match Connection::open_in_memory() {
                Ok(c) => c,
                Err(_) => return,
            },
        );
        drop(ours);
        if let Ok(conn) =
            Connection::open_with_flags(&db_path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        {
            let _ = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0));
            let _ = conn.close();
        }
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

// ---------------------------------------------------------------------------
// Helpers.

fn read_row(r: &rusqlite::Row<'_>) -> Result<Row> {
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

fn query_column<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<T>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

fn classify_open_error(path: &Path, source: rusqlite::Error) -> OpenError {
    match &source {
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(e.code, rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) =>
        {
            OpenError::NotADatabase { path: path.to_path_buf(), source }
        }
        _ => OpenError::Sqlite { path: path.to_path_buf(), source },
    }
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

fn scalar_to_owned(v: &Scalar) -> SqlValue {
    match v {
        Scalar::Int(i) => SqlValue::Integer(*i),
        Scalar::Float(f) => SqlValue::Real(*f),
        Scalar::Str(s) => SqlValue::Text(s.clone()),
        Scalar::Bytes(b) => SqlValue::Blob(b.clone()),
    }
}

fn policy_of(sets: &BTreeMap<String, Scalar>) -> EvictionPolicy {
    match sets.get("eviction_policy") {
        Some(Scalar::Str(p)) => EvictionPolicy::from_name(p).unwrap_or(EvictionPolicy::None),
        _ => EvictionPolicy::None,
    }
}

/// Rejects setting values diskcache would choke on later, and anything that
/// would be unsafe to format into a PRAGMA.
fn validate_setting(name: &str, value: &Scalar) -> std::result::Result<(), String> {
    match name {
        "eviction_policy" => match value {
            Scalar::Str(p) if EvictionPolicy::from_name(p).is_some() => Ok(()),
            _ => Err("must be one of none, least-recently-stored, least-recently-used, least-frequently-used".into()),
        },
        "statistics" | "tag_index" => match value {
            Scalar::Int(0 | 1) => Ok(()),
            _ => Err("must be 0 or 1".into()),
        },
        "size_limit" | "cull_limit" | "disk_min_file_size" | "count" | "size" | "hits" | "misses" => match value {
            Scalar::Int(n) if *n >= 0 || matches!(name, "count" | "size") => Ok(()),
            _ => Err("must be a non-negative integer".into()),
        },
        "disk_pickle_protocol" => match value {
            Scalar::Int(0..=5) => Ok(()),
            _ => Err("must be an integer from 0 to 5".into()),
        },
        _ if name.starts_with("sqlite_") => {
            let pragma = &name[7..];
            if pragma.is_empty() || !pragma.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                return Err("not a pragma name".into());
            }
            match value {
                Scalar::Int(_) => Ok(()),
                Scalar::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => Ok(()),
                _ => Err("a pragma value must be an integer or a plain word".into()),
            }
        }
        _ => Ok(()),
    }
}

enum PragmaError {
    Timeout,
    Sqlite(rusqlite::Error),
}

/// Sets `PRAGMA name = value` unless it already has that value (core.py's
/// `reset` for `sqlite_*`: journal mode and auto vacuum can be slow or
/// fail to change once tables exist), retrying while the database is locked.
fn set_pragma(
    conn: &Connection,
    pragma: &str,
    value: &Scalar,
    timeout: Duration,
) -> std::result::Result<(), PragmaError> {
    let start = Instant::now();
    loop {
        let attempt = (|| -> rusqlite::Result<()> {
            let current: Option<SqlValue> = conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0)).optional()?;
            let same = match (&current, value) {
                (Some(SqlValue::Integer(a)), Scalar::Int(b)) => a == b,
                (Some(SqlValue::Text(a)), Scalar::Str(b)) => a.eq_ignore_ascii_case(b),
                _ => false,
            };
            if !same {
                let mut stmt = conn.prepare(&format!("PRAGMA {pragma} = {value}"))?;
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
            }
            Ok(())
        })();
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) if Error::is_busy(&e) && start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(1)),
            Err(e) if Error::is_busy(&e) => return Err(PragmaError::Timeout),
            Err(e) => return Err(PragmaError::Sqlite(e)),
        }
    }
}

/// `os.path.expanduser` for a leading `~/`.
fn expand_user(path: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    path.to_path_buf()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn check_fix_never_follows_a_symlink_out_of_the_cache_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(outside.join("ab")).unwrap();
        std::fs::create_dir_all(outside.join("empty")).unwrap();
        std::fs::write(outside.join("ab/victim.val"), b"victim").unwrap();
        std::fs::write(outside.join("stray.txt"), b"stray").unwrap();

        let cache = Cache::open(&dir).unwrap();
        cache.set(&Key::Str("fine".into()), &Value::Bytes(vec![7; 50_000]), None, None).unwrap();
        symlink(&outside, dir.join("XX")).unwrap();
        // A row whose value file is reachable only through the link.
        cache.set(&Key::Str("through".into()), &Value::Int(1), None, None).unwrap();
        cache
            .conn
            .execute(
                "UPDATE Cache SET mode = ?, filename = 'XX/ab/victim.val', size = 6, value = NULL WHERE key = 'through'",
                [MODE_BINARY],
            )
            .unwrap();

        let warnings = cache.check(true).unwrap();
        assert_eq!(std::fs::read(outside.join("ab/victim.val")).unwrap(), b"victim");
        assert_eq!(std::fs::read(outside.join("stray.txt")).unwrap(), b"stray");
        assert!(outside.join("empty").is_dir(), "an outside empty directory is not ours to remove");
        // Nothing beyond the link is reported (but the row naming it); the
        // link itself may be.
        let link = dir.join("XX");
        for w in warnings.iter().filter(|w| w.kind != CheckKind::UnsafeFilename) {
            assert!(!w.message.contains("XX/") && !w.message.contains("outside"), "{w:?}");
            if w.kind == CheckKind::UnknownFile {
                assert_eq!(w.message, format!("unknown file: {}", link.display()));
            }
        }
        assert!(warnings.iter().any(|w| w.kind == CheckKind::UnsafeFilename), "{warnings:?}");
        assert!(std::fs::symlink_metadata(&link).is_err(), "fix removes the link itself");
        assert!(outside.is_dir());
        assert_eq!(cache.get(&Key::Str("fine".into())).unwrap(), Some(Value::Bytes(vec![7; 50_000])));
        assert_eq!(cache.check(false).unwrap(), vec![], "one fix checks clean");
    }
}
