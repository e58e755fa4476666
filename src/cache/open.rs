//! Opening a cache: the schema, the pragmas and the connection set-up
//! (`Cache.__init__`, and `Cache._con` for the second handle `try_clone`
//! makes). The schema statements are core.py's, in its order. Every
//! connection is made by `connect` and gets its pragmas from
//! `apply_pragmas`; every handle is built by `Cache::assemble`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, params};

use super::config::{PragmaError, set_pragma, settings_rows, validate_setting};
use super::core::{Cache, CacheOptions, query_column};
use super::disk::Disk;
use super::error::{Error, OpenError};
use super::read_cache::{ValueCache, WalWatch};
use super::settings::{DBNAME, EvictionPolicy, METADATA, Settings, default_settings};
use super::types::Scalar;

const CREATE_SETTINGS: &str = "CREATE TABLE IF NOT EXISTS Settings ( key TEXT NOT NULL UNIQUE, value)";
const CREATE_CACHE: &str = "CREATE TABLE IF NOT EXISTS Cache ( rowid INTEGER PRIMARY KEY, key BLOB, \
     raw INTEGER, store_time REAL, expire_time REAL, access_time REAL, access_count INTEGER DEFAULT 0, \
     tag BLOB, size INTEGER DEFAULT 0, mode INTEGER DEFAULT 0, filename TEXT, value BLOB)";
pub(super) const CREATE_KEY_INDEX: &str = "CREATE UNIQUE INDEX IF NOT EXISTS Cache_key_raw ON Cache(key, raw)";
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
pub(super) const CREATE_TAG_INDEX: &str = "CREATE INDEX IF NOT EXISTS Cache_tag_rowid ON Cache(tag, rowid)";
pub(super) const DROP_TAG_INDEX: &str = "DROP INDEX IF EXISTS Cache_tag_rowid";

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

        let db_existed = db_path.exists();
        let (conn, immutable) = connect_probed(&db_path, options.read_only, options.timeout)?;
        if !db_existed && !options.read_only {
            // Made by root in another user's directory: theirs, as the value
            // files are (SQLite then gives its -wal and -shm the same owner).
            disk.give_away_name(DBNAME);
        }
        let has_settings = inspect_tables(&conn, &db_path, options.read_only)?;
        let sets = merged_settings(&conn, &db_path, has_settings, &options.settings)?;
        // Persistent pragmas (journal mode, auto vacuum) only when writing:
        // core.py sets them before any table.
        apply_pragmas(&conn, &sets, !options.read_only, options.timeout)
            .map_err(|e| pragma_open_error(e, &db_path, options.timeout))?;
        if !options.read_only {
            create_schema(&conn, &sets, &db_path, options.timeout)?;
        }

        // Read back every row, metadata included, as the handle's view.
        let mut values = settings_rows(&conn).map_err(sqlite_err)?;
        for (k, v) in sets {
            values.entry(k).or_insert(v);
        }
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(sqlite_err)?;
        let created_wal_files = options.read_only && wal_files_absent && !immutable;
        let mut cache =
            Cache::assemble(directory, disk, conn, Settings { values }, page_size, options, created_wal_files);
        cache.immutable = immutable;
        Ok(cache)
    }

    /// A second handle on the same directory (for another thread), without
    /// rewriting the settings as a fresh `open` does. Like core.py's `_con`
    /// for a new thread, it sets the per-connection pragmas from this
    /// handle's settings.
    pub fn try_clone(&self) -> Result<Cache, OpenError> {
        let options = CacheOptions {
            timeout: self.timeout,
            settings: Vec::new(),
            retry: self.retry,
            read_only: self.read_only,
            clock: self.clock.clone(),
        };
        let db_path = self.directory.join(DBNAME);
        let conn = if self.immutable {
            connect_immutable(&db_path)?
        } else {
            connect(&db_path, options.read_only, false, options.timeout)?
        };
        if self.read_only {
            stand_in_tables(&conn).map_err(|source| OpenError::Sqlite { path: db_path.clone(), source })?;
        }
        let settings = self.settings.borrow().clone();
        apply_pragmas(&conn, &settings.values, false, options.timeout)
            .map_err(|e| pragma_open_error(e, &db_path, options.timeout))?;
        let disk = Disk::open(&self.directory)
            .map_err(|source| OpenError::Directory { path: self.directory.clone(), source })?;
        let mut cache = Cache::assemble(self.directory.clone(), disk, conn, settings, self.page_size, options, false);
        cache.immutable = self.immutable;
        Ok(cache)
    }

    /// The one place a handle is built, for `open_with` and `try_clone`.
    fn assemble(
        directory: PathBuf,
        disk: Disk,
        conn: Connection,
        settings: Settings,
        page_size: i64,
        options: CacheOptions,
        created_wal_files: bool,
    ) -> Cache {
        // The connection has read the database, so in WAL mode its -shm
        // file exists and is initialized.
        let wal_watch = WalWatch::open(&directory.join(DBNAME));
        Cache {
            directory,
            disk,
            conn,
            settings: RefCell::new(settings),
            page_size,
            timeout: options.timeout,
            retry: options.retry,
            read_only: options.read_only,
            clock: options.clock,
            txn_depth: Cell::new(0),
            cleanup: RefCell::new(Vec::new()),
            written: RefCell::new(Vec::new()),
            wal_watch,
            value_cache: RefCell::new(ValueCache::default()),
            created_wal_files,
            immutable: false,
        }
    }
}

/// SQL statements run on the connections this process opened, counted
/// only when `DISKCACHEFS_COUNT_SQL` is set (the request counts in
/// docs/PERFORMANCE.md, `scripts/bench counts`): a callback per statement.
static STATEMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn counting() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("DISKCACHEFS_COUNT_SQL").is_some())
}

/// The statements run so far, when counted (see [`STATEMENTS`]).
pub fn statements_run() -> Option<u64> {
    counting().then(|| STATEMENTS.load(std::sync::atomic::Ordering::Relaxed))
}

fn count_statements(conn: &mut Connection) {
    if counting() {
        let counted = conn.trace_v2(
            rusqlite::trace::TraceEventCodes::SQLITE_TRACE_STMT,
            Some(|_: rusqlite::trace::TraceEvent<'_>| {
                STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }),
        );
        if let Err(e) = counted {
            log::warn!("statements not counted: {e}");
        }
    }
}

/// The one way a connection to `cache.db` is opened: read-only, or
/// read-write (`create`: making the file if it is missing), with the busy
/// timeout and a statement cache for the `prepare_cached` SQL.
fn connect(db_path: &Path, read_only: bool, create: bool, timeout: Duration) -> Result<Connection, OpenError> {
    let sqlite_err = |source| OpenError::Sqlite { path: db_path.to_path_buf(), source };
    let flags = match (read_only, create) {
        (true, _) => OpenFlags::SQLITE_OPEN_READ_ONLY,
        (false, false) => OpenFlags::SQLITE_OPEN_READ_WRITE,
        (false, true) => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    };
    let mut conn = Connection::open_with_flags(db_path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(sqlite_err)?;
    conn.busy_timeout(timeout).map_err(sqlite_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    count_statements(&mut conn);
    Ok(conn)
}

/// A read-only connection, as [`connect`] makes it, that has read the
/// database once; on read-only media, where SQLite cannot make the `-shm`
/// file a WAL reader needs ("unable to open database file"), the same
/// database opened as immutable instead, if no WAL holds changes (they
/// would be missed). Returns whether it is immutable.
fn connect_probed(db_path: &Path, read_only: bool, timeout: Duration) -> Result<(Connection, bool), OpenError> {
    let conn = connect(db_path, read_only, true, timeout)?;
    if !read_only {
        return Ok((conn, false));
    }
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)) {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if matches!(e.code, rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly) =>
        {
            let wal = wal_file(db_path, "-wal");
            if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                return Err(OpenError::Unreadable {
                    path: db_path.to_path_buf(),
                    reason: format!(
                        "{} holds changes not yet in cache.db, and SQLite cannot read them without making \
                         cache.db-shm, which this directory does not allow",
                        wal.display()
                    ),
                });
            }
            log::info!("{}: read-only media; opened as immutable", db_path.display());
            Ok((connect_immutable(db_path)?, true))
        }
        _ => Ok((conn, false)),
    }
}

/// `cache.db` with SQLite's `immutable` flag: no locks, no `-wal` or
/// `-shm`, and no change by anyone else is noticed.
fn connect_immutable(db_path: &Path) -> Result<Connection, OpenError> {
    let sqlite_err = |source| OpenError::Sqlite { path: db_path.to_path_buf(), source };
    let mut uri = String::from("file:");
    for b in db_path.as_os_str().as_encoded_bytes() {
        match b {
            b'?' | b'#' | b'%' => uri.push_str(&format!("%{b:02X}")),
            _ if b.is_ascii() => uri.push(*b as char),
            _ => uri.push_str(&format!("%{b:02X}")),
        }
    }
    uri.push_str("?immutable=1");
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(&uri, flags).map_err(sqlite_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    count_statements(&mut conn);
    Ok(conn)
}

/// On a read-only handle, empty stand-ins (in SQLite's temporary schema,
/// which shadows nothing that exists and writes nothing to the directory)
/// for diskcache's tables where the file has none yet: a `cache.db` that
/// only another program (Flyte 2) has used reads as an empty cache.
fn stand_in_tables(conn: &Connection) -> rusqlite::Result<()> {
    let has = |t: &str| -> rusqlite::Result<bool> {
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", [t], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n > 0)
    };
    if !has("Settings")? {
        conn.execute(&CREATE_SETTINGS.replace("CREATE TABLE", "CREATE TEMP TABLE"), [])?;
        for (k, v) in default_settings() {
            conn.execute("INSERT OR REPLACE INTO temp.Settings VALUES (?, ?)", params![k, v])?;
        }
        for (k, v) in METADATA {
            conn.execute("INSERT OR IGNORE INTO temp.Settings VALUES (?, ?)", params![k, v])?;
        }
    }
    if !has("Cache")? {
        conn.execute(&CREATE_CACHE.replace("CREATE TABLE", "CREATE TEMP TABLE"), [])?;
    }
    Ok(())
}

/// What is in the file, before anything is written to it: a non-database
/// fails here with NOTADB; a Cache table that lacks one of diskcache's
/// columns is someone else's. Other tables (Flyte 2's `task_cache`,
/// `runs`, ...) are left alone, as python-diskcache leaves them: a
/// read-write open adds diskcache's tables beside them, a read-only one
/// reads empty stand-ins ([`stand_in_tables`]). Returns whether the
/// Settings table exists.
fn inspect_tables(conn: &Connection, db_path: &Path, read_only: bool) -> Result<bool, OpenError> {
    let foreign = |reason: String| OpenError::Foreign { path: db_path.to_path_buf(), reason };
    let tables: Vec<String> = query_column(conn, "SELECT name FROM sqlite_master WHERE type = 'table'")
        .map_err(|source| classify_open_error(db_path, source))?;
    let has = |t: &str| tables.iter().any(|n| n == t);
    if has("Cache") {
        let columns: Vec<String> = query_column(conn, "SELECT name FROM pragma_table_info('Cache')")
            .map_err(|source| OpenError::Sqlite { path: db_path.to_path_buf(), source })?;
        if let Some(missing) = CACHE_COLUMNS.iter().skip(1).find(|c| !columns.iter().any(|n| n == *c)) {
            return Err(foreign(format!("its Cache table has no column {missing}")));
        }
    }
    if read_only && !(has("Settings") && has("Cache")) {
        stand_in_tables(conn).map_err(|source| OpenError::Sqlite { path: db_path.to_path_buf(), source })?;
    }
    Ok(has("Settings"))
}

/// The settings to open with: defaults, then what is stored (when the
/// Settings table exists), then the caller's; without the counters
/// (`METADATA`), each one validated.
fn merged_settings(
    conn: &Connection,
    db_path: &Path,
    stored: bool,
    given: &[(String, Scalar)],
) -> Result<BTreeMap<String, Scalar>, OpenError> {
    let mut sets = default_settings();
    if stored {
        let rows = settings_rows(conn).map_err(|source| OpenError::Sqlite { path: db_path.to_path_buf(), source })?;
        sets.extend(rows);
    }
    for (k, v) in given {
        sets.insert(k.clone(), v.clone());
    }
    for (name, _) in METADATA {
        sets.remove(name);
    }
    for (name, value) in &sets {
        validate_setting(name, value).map_err(|reason| OpenError::BadSetting {
            path: db_path.to_path_buf(),
            name: name.clone(),
            value: value.to_string(),
            reason,
        })?;
    }
    Ok(sets)
}

/// Runs the `sqlite_*` settings' pragmas on a connection: the
/// per-connection ones always, the persistent ones (journal mode, auto
/// vacuum) only with `persistent`.
fn apply_pragmas(
    conn: &Connection,
    sets: &BTreeMap<String, Scalar>,
    persistent: bool,
    timeout: Duration,
) -> Result<(), PragmaError> {
    for (name, value) in sets {
        if let Some(pragma) = name.strip_prefix("sqlite_") {
            if !persistent && matches!(pragma, "journal_mode" | "auto_vacuum") {
                continue;
            }
            set_pragma(conn, pragma, value, timeout)?;
        }
    }
    Ok(())
}

fn pragma_open_error(e: PragmaError, db_path: &Path, timeout: Duration) -> OpenError {
    match e {
        PragmaError::Timeout => OpenError::Timeout { path: db_path.to_path_buf(), seconds: timeout.as_secs_f64() },
        PragmaError::Sqlite(source) => OpenError::Sqlite { path: db_path.to_path_buf(), source },
    }
}

/// [`init_schema`], tried again while another process holds the lock, up
/// to the busy timeout.
fn create_schema(
    conn: &Connection,
    sets: &BTreeMap<String, Scalar>,
    db_path: &Path,
    timeout: Duration,
) -> Result<(), OpenError> {
    let policy = policy_of(sets);
    let tag_index = sets.get("tag_index").is_some_and(|v| *v != Scalar::Int(0));
    let start = Instant::now();
    loop {
        match init_schema(conn, sets, policy, tag_index) {
            Ok(()) => return Ok(()),
            Err(e) if Error::is_busy(&e) && start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) if Error::is_busy(&e) => {
                return Err(OpenError::Timeout { path: db_path.to_path_buf(), seconds: timeout.as_secs_f64() });
            }
            Err(source) => return Err(OpenError::Sqlite { path: db_path.to_path_buf(), source }),
        }
    }
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

/// `cache.db-wal` / `cache.db-shm` beside the database.
fn wal_file(db_path: &Path, suffix: &str) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
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

fn policy_of(sets: &BTreeMap<String, Scalar>) -> EvictionPolicy {
    match sets.get("eviction_policy") {
        Some(Scalar::Str(p)) => EvictionPolicy::from_name(p).unwrap_or(EvictionPolicy::None),
        _ => EvictionPolicy::None,
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
    use super::*;
    use crate::cache::testing::{TestCache, int, key};
    use crate::cache::types::Value;

    fn names(conn: &Connection, kind: &str) -> Vec<String> {
        let mut v: Vec<String> =
            query_column(conn, &format!("SELECT name FROM sqlite_master WHERE type = '{kind}' AND sql IS NOT NULL"))
                .unwrap();
        v.sort();
        v
    }

    #[test]
    fn opening_creates_diskcaches_schema_and_settings() {
        let t = TestCache::with(&[("size_limit", int(1234)), ("tag_index", int(1))]);
        let conn = &t.conn;
        assert_eq!(names(conn, "table"), ["Cache", "Settings"]);
        // Cache_store_time: the default policy's (least-recently-stored).
        assert_eq!(names(conn, "index"), ["Cache_expire_time", "Cache_key_raw", "Cache_store_time", "Cache_tag_rowid"]);
        assert_eq!(
            names(conn, "trigger"),
            [
                "Settings_count_delete",
                "Settings_count_insert",
                "Settings_size_delete",
                "Settings_size_insert",
                "Settings_size_update"
            ]
        );
        let stored = settings_rows(conn).unwrap();
        for (name, value) in [("count", 0), ("size", 0), ("hits", 0), ("misses", 0), ("size_limit", 1234)] {
            assert_eq!(stored.get(name), Some(&int(value)), "{name}");
        }
        assert_eq!(stored.get("eviction_policy"), Some(&Scalar::Str("least-recently-stored".into())));
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(t.settings().values, stored, "the handle's view is the table");
    }

    #[test]
    fn stored_settings_win_over_defaults_and_given_ones_over_both() {
        let t = TestCache::with(&[("size_limit", int(1 << 40)), ("cull_limit", int(3))]);
        t.set(&key("a"), &Value::Int(1), None, None).unwrap();
        let again = t.reopen(&[]);
        assert_eq!(again.settings().size_limit(), 1 << 40);
        assert_eq!(again.settings().cull_limit(), 3);
        assert_eq!(again.get(&key("a")).unwrap(), Some(Value::Int(1)));
        let given = t.reopen(&[("size_limit", int(99))]);
        assert_eq!(given.settings().size_limit(), 99);
        assert_eq!(given.settings().cull_limit(), 3);
        assert_eq!(settings_rows(&t.conn).unwrap().get("size_limit"), Some(&int(99)), "written back");
        assert_eq!(given.len().unwrap(), 1, "the counters are the table's, never the caller's");
    }

    #[test]
    fn invalid_settings_and_foreign_tables_fail_to_open() {
        let t = TestCache::new();
        let bad = Cache::open_with(
            t.path(),
            CacheOptions {
                settings: vec![("eviction_policy".into(), Scalar::Str("bogus".into()))],
                ..CacheOptions::default()
            },
        );
        assert!(matches!(bad, Err(OpenError::BadSetting { ref name, .. }) if name == "eviction_policy"));

        let other = tempfile::tempdir().unwrap();
        let conn = Connection::open(other.path().join(DBNAME)).unwrap();
        conn.execute_batch("CREATE TABLE Cache (rowid INTEGER PRIMARY KEY, key BLOB)").unwrap();
        drop(conn);
        match Cache::open(other.path()) {
            Err(OpenError::Foreign { reason, .. }) => assert!(reason.contains("no column raw"), "{reason}"),
            other => panic!("expected Foreign, got {:?}", other.err()),
        }

        let empty = tempfile::tempdir().unwrap();
        let read_only = CacheOptions { read_only: true, ..CacheOptions::default() };
        assert!(Cache::open_with(empty.path(), read_only).is_err());
        assert!(!empty.path().join(DBNAME).exists(), "a read-only open creates nothing");
    }

    #[test]
    fn a_clone_shares_the_data_and_sets_the_connection_pragmas() {
        let t = TestCache::with(&[("sqlite_cache_size", int(1234)), ("sqlite_synchronous", int(2))]);
        let clone = t.try_clone().unwrap();
        t.set(&key("a"), &Value::Int(1), None, None).unwrap();
        assert_eq!(clone.get(&key("a")).unwrap(), Some(Value::Int(1)));
        let pragma = |name: &str| -> i64 { clone.conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0)).unwrap() };
        assert_eq!(pragma("cache_size"), 1234);
        assert_eq!(pragma("synchronous"), 2);
        assert_eq!(clone.settings(), t.settings());
        assert_eq!(clone.directory(), t.directory());
    }
}
