//! `Cache`: python-diskcache 5.6's `Cache` over the same directory. This
//! module defines the handle and what every operation relies on: its
//! fields, its accessors and the transaction contract (`Cache._transact`,
//! `Cache.close`). The operations are `impl Cache` blocks in sibling
//! modules, each mirroring a part of core.py with its SQL in plain sight:
//!
//! | module | holds | core.py |
//! |---|---|---|
//! | `open.rs` | schema, pragmas, opening | `Cache.__init__`, `_con` |
//! | `row.rs` | a row's value columns, encoded and decoded | `Disk.store`, `Disk.fetch` |
//! | `write.rs` | writing entries, the key-row lookup | `set`, `add`, `incr`, `touch`, `delete`, `_row_*` |
//! | `read.rs` | reading entries | `get`, `read`, `__contains__`, `pop`, `memoize` |
//! | `queue.rs` | queues and first/last items | `push`, `pull`, `peek`, `peekitem` |
//! | `bulk.rs` | removal in batches | `evict`, `expire`, `clear`, `cull`, `_cull`, `_select_delete` |
//! | `check.rs` | consistency | `check` |
//! | `config.rs` | the Settings table at run time | `reset`, `stats`, `volume`, `__len__`, tag index |
//! | `iter.rs` | iteration | `iterkeys`, `_iter` |
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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};

use super::disk::Disk;
use super::error::{Error, Result};
use super::read_cache::{ValueCache, WalWatch};
use super::settings::{DBNAME, EvictionPolicy, Settings};
use super::types::Scalar;

// The types each part of the API uses, defined beside it; re-exported so
// that `cache::core::X` keeps naming them.
pub use super::check::{CheckKind, CheckWarning};
pub use super::iter::{KeyIter, RowidIter};
pub use super::read::ReadHandle;
pub(crate) use super::row::{Stored, scalar_from_owned};
pub use super::write::Attr;

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

/// An open cache directory.
pub struct Cache {
    pub(super) directory: PathBuf,
    pub(super) disk: Disk,
    pub(super) conn: Connection,
    pub(super) settings: RefCell<Settings>,
    pub(super) page_size: i64,
    pub(super) timeout: Duration,
    pub(super) retry: bool,
    pub(super) read_only: bool,
    pub(super) clock: Clock,
    /// Nesting depth of transactions on this handle; 0 outside.
    pub(super) txn_depth: Cell<u32>,
    /// Old value files to remove after the outermost COMMIT.
    pub(super) cleanup: RefCell<Vec<String>>,
    /// New value files written for the current transaction, removed if it
    /// rolls back (core.py leaks them; we do not).
    pub(super) written: RefCell<Vec<String>>,
    /// Small values from recent gets, valid while nobody commits
    /// (`read_cache.rs`); `None` watch when not in WAL mode.
    pub(super) wal_watch: Option<WalWatch>,
    pub(super) value_cache: RefCell<ValueCache>,
    /// A read-only handle whose opening made SQLite create `cache.db-wal`
    /// and `cache.db-shm` (every reader of a WAL database needs them):
    /// closing removes them again, see `Drop`.
    pub(super) created_wal_files: bool,
    /// Opened with SQLite's `immutable` flag: a read-only cache where no
    /// `-shm` could be made (read-only media); see `open.rs`.
    pub(super) immutable: bool,
}

impl Cache {
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

    /// Whether the cache was opened as immutable (read-only media: no
    /// other process's change is seen; docs/SEMANTICS.md, "Read-only mounts").
    pub fn is_immutable(&self) -> bool {
        self.immutable
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

    /// Replaces SQLite's busy handler (which backs off to 100 ms between
    /// tries) for a user with a lock-wait policy of its own; the handler
    /// decides when to give up, after which a write fails with
    /// [`Error::Timeout`](super::Error::Timeout).
    pub fn set_busy_handler(&mut self, handler: fn(i32) -> bool) -> rusqlite::Result<()> {
        self.conn.busy_handler(Some(handler))
    }

    pub fn min_file_size(&self) -> i64 {
        self.settings.borrow().min_file_size()
    }

    /// Whether the tag index is on, as this handle last read the settings.
    pub fn has_tag_index(&self) -> bool {
        self.settings.borrow().tag_index()
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

    /// Begins a transaction that [`Cache::end`] ends: for a caller that
    /// holds several caches' transactions at once and chooses the order of
    /// their COMMITs (a FanoutCache's moves across shards commit the
    /// target first). Operations inside nest in it as in [`Cache::transact`].
    pub fn begin(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        // A caller's bug, not the cache's: refused rather than nested,
        // since `end` could not tell whose transaction it ends.
        assert_eq!(self.txn_depth.get(), 0, "Cache::begin inside a transaction");
        if let Err(e) = self.begin_immediate() {
            self.discard_written();
            return Err(e);
        }
        self.txn_depth.set(1);
        Ok(())
    }

    /// Ends the transaction [`Cache::begin`] began: COMMIT (then removes
    /// the value files it replaced) when `commit`, else ROLLBACK (and
    /// removes the value files it wrote).
    pub fn end(&self, commit: bool) -> Result<()> {
        self.txn_depth.set(0);
        if !commit {
            self.rollback();
            return Ok(());
        }
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => {
                self.written.borrow_mut().clear();
                let names = std::mem::take(&mut *self.cleanup.borrow_mut());
                for name in names {
                    self.disk.remove(&name);
                }
                Ok(())
            }
            Err(e) => {
                self.rollback();
                Err(e.into())
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

    /// SQLite's `PRAGMA data_version`: changes whenever another connection
    /// commits. Lets a long-lived reader notice peers' writes cheaply.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self.conn.prepare_cached("PRAGMA data_version")?.query_row([], |r| r.get(0))?)
    }
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

/// Every value of a one-column query (schema and check queries).
pub(super) fn query_column<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<T>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{TestCache, key};
    use crate::cache::types::Value;

    fn big(n: u8) -> Value {
        Value::Bytes(vec![n; 40_000])
    }

    #[test]
    fn nested_transactions_commit_once_at_the_outermost() {
        let t = TestCache::new();
        let peer = t.try_clone().unwrap();
        t.transact(|c| {
            c.set(&key("a"), &Value::Int(1), None, None)?;
            c.transact(|c| c.set(&key("b"), &Value::Int(2), None, None))?;
            // The inner block ended without committing: a peer sees nothing.
            assert_eq!(peer.get(&key("b")).unwrap(), None);
            assert_eq!(c.get(&key("b")).unwrap(), Some(Value::Int(2)));
            Ok(())
        })
        .unwrap();
        assert_eq!(peer.get(&key("a")).unwrap(), Some(Value::Int(1)));
        assert_eq!(peer.get(&key("b")).unwrap(), Some(Value::Int(2)));
    }

    #[test]
    fn a_rollback_removes_the_value_files_it_wrote_and_keeps_the_old_ones() {
        let t = TestCache::new();
        t.set(&key("kept"), &big(1), None, None).unwrap();
        let before = t.value_files();
        assert_eq!(before.len(), 1);
        let result: Result<()> = t.transact(|c| {
            c.set(&key("kept"), &big(2), None, None)?;
            c.transact(|c| c.set(&key("new"), &big(3), None, None))?;
            assert_eq!(c.disk().directory(), t.path());
            Err(Error::KeyNotFound { key: "stop".into() })
        });
        assert!(matches!(result, Err(Error::KeyNotFound { .. })));
        assert_eq!(t.value_files(), before, "files written in the transaction are gone, the old one stays");
        assert_eq!(t.get(&key("kept")).unwrap(), Some(big(1)));
        assert_eq!(t.get(&key("new")).unwrap(), None);
        // The lock was released: the next write goes through.
        t.set(&key("after"), &Value::Int(1), None, None).unwrap();
        assert_eq!(t.check(false).unwrap(), vec![]);
    }

    #[test]
    fn old_value_files_go_only_after_the_outermost_commit() {
        let t = TestCache::new();
        t.set(&key("a"), &big(1), None, None).unwrap();
        let old = t.value_files();
        t.transact(|c| {
            c.transact(|c| c.set(&key("a"), &big(2), None, None))?;
            assert!(t.path().join(&old[0]).exists(), "removed before the outer COMMIT");
            Ok(())
        })
        .unwrap();
        assert!(!t.path().join(&old[0]).exists());
        assert_eq!(t.value_files().len(), 1);
        assert_eq!(t.get(&key("a")).unwrap(), Some(big(2)));
    }

    #[test]
    fn a_read_only_handle_has_no_transactions() {
        let t = TestCache::new();
        t.set(&key("a"), &Value::Int(1), None, None).unwrap();
        let ro = Cache::open_with(t.path(), CacheOptions { read_only: true, ..CacheOptions::default() }).unwrap();
        assert!(ro.is_read_only());
        assert!(matches!(ro.transact(|_| Ok(())), Err(Error::ReadOnly)));
        assert!(matches!(ro.set(&key("b"), &Value::Int(2), None, None), Err(Error::ReadOnly)));
        assert_eq!(ro.get(&key("a")).unwrap(), Some(Value::Int(1)));
    }
}
