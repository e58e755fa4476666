//! The engine handles that the file system's requests use, so that no
//! request waits behind another one's SQLite lock (docs/DESIGN.md,
//! "Concurrency").
//!
//! - **Readers** are read-only connections. In WAL mode a reader never
//!   waits for the write lock, and a read-only handle cannot write by
//!   mistake (it fails with `ReadOnly`, EROFS, instead of queueing behind a
//!   peer's transaction while the tree's lock is held).
//! - **Writers** are read-write connections; each request that changes the
//!   cache checks one out, so two commits wait for SQLite's lock side by
//!   side, each with the cache's own timeout, and neither holds anything a
//!   reader needs while it waits.
//! - Both are pooled: a handle is checked out for one request and returned
//!   when its guard drops. There are never more than requests in flight.
//! - **Bookkeeping** that python-diskcache does on every `get` (the hit
//!   and miss counters with statistics on; `access_time`/`access_count`
//!   under the least-recently/frequently-used policies) is gathered in
//!   memory and applied by a thread of its own whenever the write lock is
//!   free, instead of making the read wait for it.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cache::{AccessLog, Cache, CacheOptions, OpenError};

/// How long the bookkeeping thread lets SQLite wait for the write lock
/// each time it tries; a busy cache just means trying again later.
const BOOKKEEPING_BUSY_TIMEOUT: Duration = Duration::from_millis(50);
/// How often pending bookkeeping is applied.
const BOOKKEEPING_PERIOD: Duration = Duration::from_millis(250);
/// Distinct rows of bookkeeping kept while the lock stays busy; past it,
/// new accesses of other rows are dropped (counted in the log).
const BOOKKEEPING_MAX_ROWS: usize = 100_000;

/// How often a writer waiting for another process's write lock tries
/// again. SQLite's own busy handler backs off to 100 ms between tries,
/// while a python-diskcache writer in a loop takes the lock back within
/// microseconds of releasing it: measured, a commit through the mount then
/// waited up to 1.2 s (100 commits/s) while two Python processes wrote.
const LOCK_POLL: Duration = Duration::from_micros(500);

thread_local! {
    /// The timeout of the writer handle this thread last checked out, and
    /// when the current wait for the lock began (see [`poll_for_lock`]).
    static LOCK_WAIT: std::cell::Cell<(Duration, Option<std::time::Instant>)> =
        const { std::cell::Cell::new((Duration::from_secs(60), None)) };
}

/// SQLite busy handler of the writer handles: try again every
/// [`LOCK_POLL`] until the cache's timeout has passed since the first try.
/// (SQLite calls it on the thread running the statement, which is the
/// thread that checked the handle out.)
fn poll_for_lock(attempt: i32) -> bool {
    LOCK_WAIT.with(|wait| {
        let (timeout, started) = wait.get();
        let started = match (attempt, started) {
            (0, _) | (_, None) => {
                let now = std::time::Instant::now();
                wait.set((timeout, Some(now)));
                now
            }
            (_, Some(t)) => t,
        };
        if started.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(LOCK_POLL);
        true
    })
}

/// A pool of idle handles, each with the settings generation it last read.
type Idle = Mutex<Vec<(Cache, u64)>>;

pub struct Engine {
    directory: PathBuf,
    read_only: bool,
    timeout: Duration,
    readers: Idle,
    writers: Idle,
    /// Bumped whenever this daemon changes a setting, so that pooled
    /// handles re-read the Settings table before their next use.
    settings_generation: AtomicU64,
    bookkeeping: Arc<Bookkeeping>,
    bookkeeper: Mutex<Option<JoinHandle<()>>>,
    /// The handle the engine was made from: writers are cloned from it
    /// (same clock, no settings rewritten). Dropped last: a read-only
    /// handle that created `cache.db-wal` removes it when it closes.
    primary: Mutex<Cache>,
}

/// A checked-out handle; goes back to its pool when dropped.
pub struct Conn {
    engine: Arc<Engine>,
    cache: Option<Cache>,
    writer: bool,
    generation: u64,
}

impl Deref for Conn {
    type Target = Cache;
    fn deref(&self) -> &Cache {
        self.cache.as_ref().expect("a checked-out handle is present until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.take() {
            let pool = if self.writer { &self.engine.writers } else { &self.engine.readers };
            pool.lock().unwrap_or_else(|e| e.into_inner()).push((cache, self.generation));
        }
    }
}

impl Engine {
    /// The engine over `primary`'s directory. Starts the bookkeeping thread
    /// for a writable cache.
    pub fn new(primary: Cache) -> Engine {
        let bookkeeping = Arc::new(Bookkeeping::default());
        let bookkeeper = if primary.is_read_only() {
            None
        } else {
            match primary.try_clone() {
                Ok(handle) => {
                    let _ = handle.conn().busy_timeout(BOOKKEEPING_BUSY_TIMEOUT);
                    let shared = bookkeeping.clone();
                    crate::service::spawn_without_signals("bookkeeping", move || shared.run(handle))
                        .map_err(|e| log::error!("no bookkeeping thread: {e}; gets are not counted"))
                        .ok()
                }
                Err(e) => {
                    log::error!("no bookkeeping handle: {e}; gets are not counted");
                    None
                }
            }
        };
        Engine {
            directory: primary.directory().to_path_buf(),
            read_only: primary.is_read_only(),
            timeout: primary.timeout(),
            readers: Mutex::new(Vec::new()),
            writers: Mutex::new(Vec::new()),
            settings_generation: AtomicU64::new(0),
            bookkeeping,
            bookkeeper: Mutex::new(bookkeeper),
            primary: Mutex::new(primary),
        }
    }

    /// A read-only handle (for a read-only mount, the only kind there is).
    pub fn reader(self: &Arc<Self>) -> Result<Conn, OpenError> {
        self.checkout(false)
    }

    /// A read-write handle, for a request that changes the cache.
    pub fn writer(self: &Arc<Self>) -> Result<Conn, OpenError> {
        self.checkout(!self.read_only)
    }

    fn checkout(self: &Arc<Self>, writer: bool) -> Result<Conn, OpenError> {
        let generation = self.settings_generation.load(Ordering::Acquire);
        let pool = if writer { &self.writers } else { &self.readers };
        let idle = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let cache = match idle {
            Some((cache, seen)) => {
                if seen != generation {
                    // Another request changed a setting (min_file_size,
                    // the eviction policy, ...): read them again.
                    if let Err(e) = cache.read_settings() {
                        log::warn!("{}: re-reading settings: {e}", self.directory.display());
                    }
                }
                cache
            }
            None => self.open_handle(writer)?,
        };
        if writer {
            LOCK_WAIT.with(|wait| wait.set((self.timeout, None)));
        }
        Ok(Conn { engine: self.clone(), cache: Some(cache), writer, generation })
    }

    fn open_handle(&self, writer: bool) -> Result<Cache, OpenError> {
        let primary = self.primary.lock().unwrap_or_else(|e| e.into_inner());
        if writer && !primary.is_read_only() {
            let mut handle = primary.try_clone()?;
            if let Err(e) = handle.set_busy_handler(poll_for_lock) {
                log::warn!("{}: SQLite's own busy handler stays: {e}", self.directory.display());
            }
            return Ok(handle);
        }
        if primary.is_read_only() {
            return primary.try_clone();
        }
        drop(primary);
        let options = CacheOptions { read_only: true, timeout: self.timeout, ..CacheOptions::default() };
        Cache::open_with(&self.directory, options)
    }

    /// Call after changing a setting: every pooled handle re-reads them.
    pub fn settings_changed(&self) {
        self.settings_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Notes a `get` through the mount (a read of a key's file): a hit on
    /// `rowid`, or a miss. Applied later; see the module doc.
    pub fn note_get(&self, reader: &Cache, hit: Option<i64>) {
        let (policy, statistics) = reader.policy_and_statistics();
        if !statistics && policy.get_update_sql().is_none() {
            return;
        }
        let now = reader.now();
        self.bookkeeping.note(hit, now);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.bookkeeping.stop.store(true, Ordering::Release);
        self.bookkeeping.wake.notify_all();
        if let Some(thread) = self.bookkeeper.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

#[derive(Default)]
struct Bookkeeping {
    pending: Mutex<AccessLog>,
    wake: Condvar,
    stop: AtomicBool,
    dropped: AtomicU64,
}

impl Bookkeeping {
    fn note(&self, hit: Option<i64>, now: f64) {
        let mut log = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match hit {
            Some(rowid) => {
                if log.rows.len() >= BOOKKEEPING_MAX_ROWS && !log.rows.contains_key(&rowid) {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    log.hits += 1;
                    return;
                }
                log.hits += 1;
                let row = log.rows.entry(rowid).or_insert((now, 0));
                row.0 = row.0.max(now);
                row.1 += 1;
            }
            None => log.misses += 1,
        }
    }

    /// The thread's loop: apply what is pending every period, and once
    /// more (allowing a second for the lock) when the engine goes away.
    fn run(&self, handle: Cache) {
        loop {
            let stopping = {
                let log = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                let (_log, _) = self.wake.wait_timeout(log, BOOKKEEPING_PERIOD).unwrap_or_else(|e| e.into_inner());
                self.stop.load(Ordering::Acquire)
            };
            if stopping {
                let _ = handle.conn().busy_timeout(Duration::from_secs(1));
            }
            self.apply(&handle, stopping);
            if stopping {
                return;
            }
        }
    }

    fn apply(&self, handle: &Cache, last: bool) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if batch.is_empty() {
            return;
        }
        if let Err(e) = handle.read_settings() {
            log::debug!("bookkeeping: reading settings: {e}");
        }
        match handle.apply_accesses(&batch) {
            Ok(()) => {}
            Err(e) if last => {
                log::warn!(
                    "{}: {} gets not counted at unmount: {e}",
                    handle.directory().display(),
                    batch.hits + batch.misses
                );
            }
            Err(e) => {
                // Busy (a peer's transaction): keep it for the next round.
                log::debug!("bookkeeping deferred: {e}");
                let mut log = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                log.merge(batch);
            }
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            log::warn!("{dropped} access-time updates dropped while the cache stayed locked");
        }
    }
}
