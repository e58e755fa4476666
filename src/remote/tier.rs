//! The remote tier under a mounted cache (`diskcachefs mount --remote`):
//! what `sync` does once, done all the time, without ever holding up a
//! request for longer than its deadline (docs/REMOTE.md, "Mounted").
//!
//! - **Miss**: a lookup in `keys/` or `task/`, or a `.resolve`, that finds
//!   nothing locally asks [`RemoteTier::fetch`], which reads the key's
//!   record and value from the store and writes them to the cache before
//!   the request answers. The whole miss is bounded by the deadline: each
//!   of its two calls gets 40% of it, the local write 20% (a peer holding
//!   SQLite's write lock makes the miss a miss, not a wait).
//! - **Push**: a thread finds new shareable entries in `cache.db` (written
//!   through the mount or by Python directly) every second, queues them in
//!   a bounded queue, and uploads them. A full queue drops what does not
//!   fit, counting it; a dropped entry stays in `cache.db` and is queued
//!   again once the queue drains (the persisted cursor never passes it).
//! - **Pull**: a thread lists the store's log every `pull_interval` and
//!   writes new entries to the cache, so flytekit's own lookups hit.
//! - **Failures**: a failed call makes the store "backing off" for 0.5 s,
//!   doubling per consecutive failure up to 10 s; while it backs off a miss
//!   does not ask (it is counted as `not_asked`) and the threads wait. The
//!   next successful call ends it. [`RemoteTier::status`] is what `stats`
//!   and `ops/remote` show.
//!
//! The background threads and the request path use separate store
//! connections, so a frozen server costs a request at most its own
//! deadline, never another thread's.
//!
//! This file is the tier's lifecycle, health and status; its three jobs
//! are modules of their own: `miss`, `push` and `pull`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value as Json, json};

use crate::cache::{Cache, Key, Value};

use super::share::is_flyte_key;
use super::store::{self, RemoteError, RemoteStore, StoreOptions};
use super::sync::{Cursor, CursorFile, Mode, Summary, SyncError, SyncOptions};

mod miss;
mod pull;
mod push;

/// How often the pusher looks for new local entries.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// The default interval of the background pull (one LIST per interval on
/// S3: about 17,000 a day per machine).
pub const DEFAULT_PULL_INTERVAL: Duration = Duration::from_secs(5);
/// Uploads written to the store at once (each a thread for its calls).
pub const UPLOADS_AT_ONCE: usize = 8;
/// The default capacity of the upload queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1000;
/// The first pause after a failed call; doubled per failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a key the store did not have is not asked for again.
const NEGATIVE_TTL: Duration = Duration::from_secs(1);
const NEGATIVE_MAX: usize = 4096;
/// Most key ids remembered as having come from the remote (past it the
/// set is cleared: the pusher then only checks a few more of them).
const ARRIVED_MAX: usize = 100_000;
/// Rows the pusher reads from `cache.db` per scan (the rest next second).
const SCAN_ROWS: usize = 5000;
/// A `set` takes its `store_time` before it waits for the write lock, so
/// it can commit after newer entries were scanned: new keys are also found
/// by rowid, and the persisted cursor stays this far behind.
const STORE_TIME_MARGIN: f64 = 1.0;

/// How the tier runs (built from `mount --remote*` by the CLI).
#[derive(Clone, Debug)]
pub struct TierConfig {
    pub url: String,
    /// `deadline` bounds a whole miss (default 2 s) and each background call.
    pub store: StoreOptions,
    pub sync: SyncOptions,
    /// `None`: no background pull (misses still ask).
    pub pull_interval: Option<Duration>,
    pub queue_capacity: usize,
}

/// What a miss found.
#[derive(Debug, PartialEq)]
pub enum Fetched {
    /// The store had it: now in the cache (the value is returned too, for
    /// a caller that cannot wait to read it back).
    Stored(Value),
    /// The cache has it now (another process or thread wrote it meanwhile).
    Local,
    /// Not in the store, not asked (backing off, not a key this mount
    /// shares), refused, or not stored in time: a miss.
    Miss,
}

#[derive(Debug, Default)]
struct Health {
    failures: u32,
    retry_at: Option<Instant>,
    retry_at_wall: Option<f64>,
    last_error: Option<(String, f64)>,
}

#[derive(Debug, Default)]
struct Counters {
    /// Misses the store answered.
    hits: u64,
    /// Misses the store did not have (or that were refused).
    misses: u64,
    /// Misses not asked because the store was backing off.
    not_asked: u64,
    /// Entries brought by the background pull.
    pulled: u64,
    /// sync's counters for push and pull (pushed = uploads).
    summary: Summary,
    /// Failed calls to the store, and those of them that timed out.
    errors: u64,
    timeouts: u64,
    /// New entries that found the upload queue full.
    dropped: u64,
    /// Local failures (a cache that could not be opened or written in time).
    local_errors: u64,
    queue_depth: usize,
    last_push: Option<f64>,
    last_pull: Option<f64>,
}

fn wall() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A cursor file and this store's cursor in it (shared by the threads).
type SharedCursor = Arc<Mutex<(CursorFile, Cursor)>>;

/// The remote tier of one mounted cache directory: one `Cache`, or a
/// FanoutCache's shards (`000/`, `001/`, ...). Over a FanoutCache each
/// shard is scanned for new entries with its own `pushed_until` (kept in
/// the shard's cursor file, as one cache keeps it), the log is pulled once
/// (its cursor in the cursor file at the top), and what comes from the
/// store goes to the shard of its key, `Disk.hash(key) % shards`, where
/// python-diskcache's `FanoutCache` looks for it. What is stored remotely
/// does not depend on shards: two FanoutCaches of different shard counts,
/// and a plain cache, share one store.
pub struct RemoteTier {
    config: TierConfig,
    /// The cache directory, or the FanoutCache's shard directories in
    /// shard order.
    shards: Vec<PathBuf>,
    /// For misses: calls of 40% of the deadline each.
    foreground: Box<dyn RemoteStore>,
    /// For the threads: the whole deadline per call.
    background: Box<dyn RemoteStore>,
    /// Cache handles for misses (a short lock wait), reused; per shard.
    writers: Vec<Mutex<Vec<Cache>>>,
    health: Mutex<Health>,
    counters: Mutex<Counters>,
    /// Key ids the store lacked, and when it said so.
    absent: Mutex<HashMap<String, Instant>>,
    /// This cache's cursor in the store: the puller's `log_after`.
    cursor: SharedCursor,
    /// Each shard's `pushed_until`, in its own cursor file. For one cache,
    /// the one cursor above (the same file).
    push_cursors: Vec<SharedCursor>,
    /// Key ids this mount pushed: the puller need not read them back.
    pushed_ids: Mutex<HashSet<String>>,
    /// Key ids this mount brought from the remote: the pusher need not
    /// offer them back.
    arrived_ids: Mutex<HashSet<String>>,
    stopping: Mutex<bool>,
    wake: Condvar,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl RemoteTier {
    /// Checks the configuration and the cursor file, opens the stores
    /// (no call yet: a dead server shows in `status`, not as a failed
    /// mount) and starts the threads.
    pub fn start(dir: &Path, config: TierConfig) -> Result<Arc<RemoteTier>, SyncError> {
        if !super::layout::valid_namespace(&config.sync.namespace) {
            return Err(SyncError::Usage(format!(
                "namespace {:?}: one name of letters, digits and -_. (not . or ..)",
                config.sync.namespace
            )));
        }
        let mut fg = config.store.clone();
        fg.deadline = config.store.deadline.mul_f64(0.4);
        let foreground = store::open(&config.url, &fg)?;
        let background = store::open(&config.url, &config.store)?;
        let id = format!("{}#{}", background.url(), config.sync.namespace);
        let cursor = Arc::new(Mutex::new(CursorFile::load(dir, id.clone())?));
        let (shards, push_cursors) = match crate::cache::fanout::shard_directories(dir) {
            None => (vec![dir.to_path_buf()], vec![cursor.clone()]),
            Some(shards) => {
                let cursors = shards
                    .iter()
                    .map(|shard| Ok(Arc::new(Mutex::new(CursorFile::load(shard, id.clone())?))))
                    .collect::<Result<Vec<_>, SyncError>>()?;
                (shards, cursors)
            }
        };
        let tier = Arc::new(RemoteTier {
            config,
            writers: shards.iter().map(|_| Mutex::new(Vec::new())).collect(),
            shards,
            foreground,
            background,
            health: Mutex::new(Health::default()),
            counters: Mutex::new(Counters::default()),
            absent: Mutex::new(HashMap::new()),
            cursor,
            push_cursors,
            pushed_ids: Mutex::new(HashSet::new()),
            arrived_ids: Mutex::new(HashSet::new()),
            stopping: Mutex::new(false),
            wake: Condvar::new(),
            threads: Mutex::new(Vec::new()),
        });
        let mut threads = Vec::new();
        if tier.config.sync.mode == Mode::ReadWrite {
            let t = tier.clone();
            threads.push(spawn("remote-push", move || t.push_loop())?);
        }
        if let Some(interval) = tier.config.pull_interval {
            let t = tier.clone();
            threads.push(spawn("remote-pull", move || t.pull_loop(interval))?);
        }
        *lock(&tier.threads) = threads;
        log::info!(
            "remote {} (namespace {}, {}{}): misses ask it within {:?}{}",
            tier.background.url(),
            tier.config.sync.namespace,
            if tier.config.sync.mode == Mode::ReadWrite { "read-write" } else { "read-only" },
            if Arc::ptr_eq(&tier.cursor, &tier.push_cursors[0]) {
                String::new()
            } else {
                format!(", over a FanoutCache's {} shards", tier.shards.len())
            },
            tier.config.store.deadline,
            match tier.config.pull_interval {
                Some(i) => format!(", new entries pulled every {i:?}"),
                None => ", no background pull".into(),
            }
        );
        Ok(tier)
    }

    /// Stops the threads (the pusher saves its cursor first); queued
    /// uploads not done are found again by the next mount's scan.
    pub fn stop(&self) {
        *lock(&self.stopping) = true;
        self.wake.notify_all();
        for t in std::mem::take(&mut *lock(&self.threads)) {
            let _ = t.join();
        }
    }

    fn stopped(&self) -> bool {
        *lock(&self.stopping)
    }

    /// Waits `d`, or less if the tier is stopping; whether it is.
    fn sleep(&self, d: Duration) -> bool {
        let guard = lock(&self.stopping);
        let (guard, _) = self.wake.wait_timeout_while(guard, d, |s| !*s).unwrap_or_else(|e| e.into_inner());
        *guard
    }

    /// Whether a miss of `key` asks the store: keys this mount would share
    /// by name (flytekit's, `--remote-prefix`). Entries shared by tag come
    /// with the background pull: a name does not tell its tag.
    pub fn asks_for(&self, key: &Key) -> bool {
        match key {
            Key::Str(s) => is_flyte_key(s) || self.config.sync.selection.prefixes.iter().any(|p| s.starts_with(p)),
            _ => false,
        }
    }

    /// The str key prefixes shared (`--remote-prefix`).
    pub fn shared_prefixes(&self) -> &[String] {
        &self.config.sync.selection.prefixes
    }

    fn allows_call(&self) -> bool {
        lock(&self.health).retry_at.is_none_or(|t| Instant::now() >= t)
    }

    fn succeeded(&self) {
        let mut h = lock(&self.health);
        if h.failures > 0 {
            log::warn!("remote {}: answering again after {} failed calls", self.background.url(), h.failures);
        }
        h.failures = 0;
        h.retry_at = None;
        h.retry_at_wall = None;
    }

    fn failed(&self, e: &RemoteError) {
        let mut h = lock(&self.health);
        h.failures += 1;
        let pause = FIRST_BACKOFF.saturating_mul(1 << (h.failures - 1).min(6)).min(MAX_BACKOFF);
        h.retry_at = Some(Instant::now() + pause);
        h.retry_at_wall = Some(wall() + pause.as_secs_f64());
        h.last_error = Some((e.to_string(), wall()));
        drop(h);
        let mut c = lock(&self.counters);
        c.errors += 1;
        if matches!(e, RemoteError::Timeout { .. }) {
            c.timeouts += 1;
        }
        drop(c);
        log::warn!("remote: {e}; not asked again for {pause:?}");
    }

    /// Notes a key id that came from the remote, so the pusher skips it.
    fn arrived(&self, id: String) {
        let mut ids = lock(&self.arrived_ids);
        if ids.len() >= ARRIVED_MAX {
            ids.clear();
        }
        ids.insert(id);
    }

    /// A local failure of the tier's own work (logged, counted).
    fn local_failure(&self, what: &str, e: &dyn std::fmt::Display) {
        lock(&self.counters).local_errors += 1;
        log::warn!("remote tier: {what}: {e}");
    }

    fn add_summary(&self, s: &Summary) {
        let mut c = lock(&self.counters);
        let t = &mut c.summary;
        t.pushed += s.pushed;
        t.pulled += s.pulled;
        t.already_remote += s.already_remote;
        t.already_local += s.already_local;
        t.skipped_unshareable += s.skipped_unshareable;
        t.rejected += s.rejected;
        t.errors += s.errors;
    }

    /// A thread's own cache handles (one per shard), tried again every
    /// 5 s (each failure logged and counted) until they open; `None` when
    /// the tier stops first.
    fn open_caches(&self, to: &str) -> Option<Vec<Cache>> {
        loop {
            match self.shards.iter().map(|d| Cache::open(d)).collect::<Result<Vec<_>, _>>() {
                Ok(c) => return Some(c),
                Err(e) => self.local_failure(&format!("opening the cache to {to}"), &e),
            }
            if self.sleep(Duration::from_secs(5)) {
                return None;
            }
        }
    }

    /// The tier's state as `stats` (its `remote` section) and `ops/remote`
    /// show it.
    pub fn status(&self) -> Json {
        let h = lock(&self.health);
        let c = lock(&self.counters);
        let backing_off = h.retry_at.is_some_and(|t| Instant::now() < t);
        json!({
            "url": self.background.url(),
            "namespace": self.config.sync.namespace,
            "mode": if self.config.sync.mode == Mode::ReadWrite { "rw" } else { "ro" },
            "signed": self.config.sync.signing_key.is_some(),
            "state": if backing_off { "backing off" } else if h.failures > 0 { "retrying" } else { "ok" },
            "deadline_seconds": self.config.store.deadline.as_secs_f64(),
            "hits": c.hits,
            "misses": c.misses,
            "not_asked": c.not_asked,
            "pulled": c.pulled,
            "uploads": c.summary.pushed,
            "already_remote": c.summary.already_remote,
            "already_local": c.summary.already_local,
            "unshareable": c.summary.skipped_unshareable,
            "rejected": c.summary.rejected,
            "errors": c.errors,
            "timeouts": c.timeouts,
            "local_errors": c.local_errors + c.summary.errors,
            "queue_depth": c.queue_depth,
            "queue_capacity": self.config.queue_capacity,
            "dropped": c.dropped,
            "failures_in_a_row": h.failures,
            "retry_at": if backing_off { h.retry_at_wall } else { None },
            "last_error": h.last_error.as_ref().map(|(m, t)| json!({"message": m, "at": t})),
            "last_push": c.last_push,
            "last_pull": c.last_pull,
        })
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, SyncError> {
    // Shutdown signals go to the daemon's signal thread, never to these.
    crate::service::spawn_without_signals(name, f)
        .map_err(|e| SyncError::Usage(format!("starting the {name} thread: {e}")))
}
