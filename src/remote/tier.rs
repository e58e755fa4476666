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

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value as Json, json};

use crate::cache::fanout::shard_of;
use crate::cache::{Cache, CacheOptions, Key, Value};

use super::layout::{FLYTE2_KEY_PREFIX, ShareKind, key_id, log_prefix, parse_log_name};
use super::share::{is_flyte_key, select};
use super::store::{self, RemoteError, RemoteStore, StoreOptions};
use super::sync::{
    CLOCK_SKEW_MICROS, Cursor, CursorFile, Mode, Pulled, Summary, SyncError, SyncOptions, Upload, prepare_entry,
    prepare_flyte2_row, pull_record,
};
use crate::flyte::flyte2::Flyte2Cache;

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

    /// A cache handle of `shard` for a miss: its lock wait is 20% of the
    /// deadline.
    fn take_writer(&self, shard: usize) -> Option<Cache> {
        if let Some(c) = lock(&self.writers[shard]).pop() {
            return Some(c);
        }
        let timeout = self.config.store.deadline.mul_f64(0.2);
        match Cache::open_with(&self.shards[shard], CacheOptions { timeout, ..CacheOptions::default() }) {
            Ok(c) => Some(c),
            Err(e) => {
                self.local_failure("opening the cache for a miss", &e);
                None
            }
        }
    }

    /// Asks the store for `key` after a local miss, and stores what it has
    /// in the cache (checked as `sync` checks it). Bounded by the deadline.
    pub fn fetch(&self, key: &Key) -> Fetched {
        if !self.asks_for(key) {
            return Fetched::Miss;
        }
        let id = key_id(key);
        {
            let mut absent = lock(&self.absent);
            if absent.get(&id).is_some_and(|t| t.elapsed() < NEGATIVE_TTL) {
                return Fetched::Miss;
            }
            if absent.len() >= NEGATIVE_MAX {
                absent.retain(|_, t| t.elapsed() < NEGATIVE_TTL);
            }
        }
        if !self.allows_call() {
            lock(&self.counters).not_asked += 1;
            return Fetched::Miss;
        }
        // The shard python-diskcache's FanoutCache keeps `key` in (the
        // record read is `key`'s: its key id is checked).
        let shard = shard_of(key, self.shards.len());
        let Some(cache) = self.take_writer(shard) else { return Fetched::Miss };
        let mut summary = Summary::default();
        let result =
            pull_record(std::slice::from_ref(&cache), self.foreground.as_ref(), &self.config.sync, &id, &mut summary);
        lock(&self.writers[shard]).push(cache);
        self.add_summary(&summary);
        let answer = match result {
            Ok(Pulled::Stored(value)) => {
                self.succeeded();
                lock(&self.counters).hits += 1;
                lock(&self.arrived_ids).insert(id);
                log::debug!("remote hit: {key}");
                return Fetched::Stored(value);
            }
            Ok(Pulled::AlreadyLocal) => {
                self.succeeded();
                return Fetched::Local;
            }
            Ok(Pulled::Absent) => {
                self.succeeded();
                lock(&self.absent).insert(id, Instant::now());
                Fetched::Miss
            }
            Ok(Pulled::Rejected | Pulled::Expired) => {
                self.succeeded();
                Fetched::Miss
            }
            Err(SyncError::Remote(e)) => {
                self.failed(&e);
                Fetched::Miss
            }
            Err(e) => {
                self.local_failure(&format!("{key}: storing what the remote has"), &e);
                Fetched::Miss
            }
        };
        lock(&self.counters).misses += 1;
        answer
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

    // -----------------------------------------------------------------
    // Push.

    fn push_loop(&self) {
        let Some(caches) = self.open_caches("push") else { return };
        // The queue's capacity shared among the shards.
        let capacity = self.config.queue_capacity.div_ceil(caches.len());
        let mut shards: Vec<PushShard> = caches
            .into_iter()
            .zip(&self.push_cursors)
            .map(|(cache, cursor)| {
                let pusher = Pusher::new(&cache, lock(cursor).1.pushed_until, capacity);
                PushShard { cache, pusher, cursor: cursor.clone() }
            })
            .collect();
        let queued = |shards: &[PushShard]| shards.iter().map(|s| s.pusher.queue.len()).sum::<usize>();
        let mut saved = Instant::now();
        loop {
            for shard in &mut shards {
                if let Err(e) = shard.pusher.scan(&shard.cache, &self.config.sync) {
                    self.local_failure("looking for new entries to push", &e);
                }
                lock(&self.counters).dropped += std::mem::take(&mut shard.pusher.dropped);
            }
            let until = Instant::now() + SCAN_INTERVAL;
            while Instant::now() < until && !self.stopped() && self.allows_call() && queued(&shards) > 0 {
                self.upload_some(&mut shards);
            }
            lock(&self.counters).queue_depth = queued(&shards);
            let stopping = self.stopped();
            if stopping || saved.elapsed() >= Duration::from_secs(2) {
                for shard in &mut shards {
                    let until = shard.pusher.watermark() - STORE_TIME_MARGIN;
                    let mut cur = lock(&shard.cursor);
                    let (file, cursor) = &mut *cur;
                    if until > cursor.pushed_until {
                        cursor.pushed_until = until;
                        if let Err(e) = file.save(cursor) {
                            self.local_failure("saving the cursor", &e);
                        }
                    }
                    drop(cur);
                    shard.pusher.prune(until - STORE_TIME_MARGIN);
                }
                saved = Instant::now();
            }
            if stopping {
                return;
            }
            let busy = queued(&shards) > 0 && self.allows_call();
            if !busy && self.sleep(SCAN_INTERVAL) {
                // One more pass to save the cursor.
                continue;
            }
        }
    }

    /// Uploads up to [`UPLOADS_AT_ONCE`] entries from the fronts of the
    /// shards' queues (one from each in turn), at once: each is read here
    /// (the cache handles are this thread's), then written to the store by
    /// a thread of its own. What failed goes back to the front of its
    /// queue, in order.
    fn upload_some(&self, shards: &mut [PushShard]) {
        let mut summary = Summary::default();
        let mut work = Vec::new();
        let mut taking = true;
        while taking && work.len() < UPLOADS_AT_ONCE {
            taking = false;
            for (n, shard) in shards.iter_mut().enumerate() {
                if work.len() >= UPLOADS_AT_ONCE {
                    break;
                }
                let Some(item) = shard.pusher.queue.pop_front() else { continue };
                taking = true;
                let done = (item.rowid, item.store_time.to_bits());
                if lock(&self.arrived_ids).remove(&key_id(&item.key)) {
                    shard.pusher.handled.insert(done);
                    continue;
                }
                match self.prepare(&shard.cache, &item, &mut summary) {
                    Ok(Some(upload)) => work.push((n, item, upload)),
                    Ok(None) => {
                        shard.pusher.handled.insert(done);
                    }
                    Err(e) => {
                        self.local_failure(&format!("{}: reading it to push", item.key), &e);
                        shard.pusher.handled.insert(done);
                    }
                }
            }
        }
        self.add_summary(&summary);
        let (store, opts) = (self.background.as_ref(), &self.config.sync);
        let results: Vec<_> = std::thread::scope(|scope| {
            let running: Vec<_> = work
                .into_iter()
                .map(|(n, item, upload)| {
                    scope.spawn(move || {
                        let mut summary = Summary::default();
                        let result = upload.push(store, opts, &mut summary);
                        (n, item, summary, result)
                    })
                })
                .collect();
            running.into_iter().filter_map(|t| t.join().ok()).collect()
        });
        let mut failed = Vec::new();
        let mut first_error = None;
        let mut answered = false;
        for (n, item, summary, result) in results {
            self.add_summary(&summary);
            let pusher = &mut shards[n].pusher;
            match result {
                Ok(pushed) => {
                    answered = true;
                    lock(&self.counters).last_push = Some(wall());
                    if let Some(id) = pushed {
                        lock(&self.pushed_ids).insert(id);
                    }
                    pusher.handled.insert((item.rowid, item.store_time.to_bits()));
                }
                Err(SyncError::Remote(e)) => {
                    if first_error.is_none() {
                        first_error = Some(e);
                    } else {
                        // Counted, but one back-off step per round.
                        let mut c = lock(&self.counters);
                        c.errors += 1;
                        c.timeouts += u64::from(matches!(e, RemoteError::Timeout { .. }));
                    }
                    failed.push((n, item));
                }
                Err(e) => {
                    self.local_failure(&format!("{}: pushing", item.key), &e);
                    pusher.handled.insert((item.rowid, item.store_time.to_bits()));
                }
            }
        }
        match first_error {
            Some(e) => self.failed(&e),
            None if answered => self.succeeded(),
            None => {}
        }
        for (n, item) in failed.into_iter().rev() {
            shards[n].pusher.queue.push_front(item);
        }
    }

    /// Reads a queued entry for upload (a Flyte 2 row from its table).
    fn prepare(&self, cache: &Cache, item: &Queued, summary: &mut Summary) -> Result<Option<Upload>, SyncError> {
        Ok(match (&item.key, item.kind) {
            (Key::Str(k), ShareKind::Flyte2) => {
                let row_key = k.strip_prefix(FLYTE2_KEY_PREFIX).unwrap_or(k);
                match Flyte2Cache::new(cache).get(row_key)? {
                    Some(outputs) => prepare_flyte2_row(row_key, &outputs, summary),
                    None => None, // deleted since
                }
            }
            _ => prepare_entry(cache, &item.key, item.kind, summary),
        })
    }

    // -----------------------------------------------------------------
    // Pull.

    fn pull_loop(&self, interval: Duration) {
        let Some(caches) = self.open_caches("pull") else { return };
        // Key ids seen in the log since a skew window before the cursor.
        let mut seen: HashMap<String, u64> = HashMap::new();
        loop {
            if self.allows_call() {
                match self.pull_new(&caches, &mut seen) {
                    Ok(()) => {
                        self.succeeded();
                        lock(&self.counters).last_pull = Some(wall());
                    }
                    Err(SyncError::Remote(e)) => self.failed(&e),
                    Err(e) => self.local_failure("pulling", &e),
                }
            }
            if self.sleep(interval) {
                return;
            }
        }
    }

    /// One pass over the log after the cursor (less the skew window); each
    /// entry into its key's shard of `caches` (one cache: itself).
    fn pull_new(&self, caches: &[Cache], seen: &mut HashMap<String, u64>) -> Result<(), SyncError> {
        let ns = &self.config.sync.namespace;
        let prefix = log_prefix(ns);
        let previous = lock(&self.cursor).1.log_after.clone();
        let window_start =
            previous.as_deref().and_then(|c| parse_log_name(ns, c)).map(|(t, _)| t.saturating_sub(CLOCK_SKEW_MICROS));
        if let Some(start) = window_start {
            seen.retain(|_, t| *t >= start);
        }
        let mut after = window_start.map(|t| format!("{prefix}{t:020}"));
        loop {
            if self.stopped() {
                return Ok(());
            }
            let names = self.background.list_after(&prefix, after.as_deref(), 500)?;
            let Some(last) = names.last().cloned() else { return Ok(()) };
            for name in &names {
                let Some((t, id)) = parse_log_name(ns, name) else {
                    log::warn!("{}: {name}: not a log entry name; ignored", self.background.url());
                    lock(&self.counters).summary.rejected += 1;
                    continue;
                };
                if seen.insert(id.clone(), t).is_some() || lock(&self.pushed_ids).remove(&id) {
                    continue;
                }
                let mut summary = Summary::default();
                let result = pull_record(caches, self.background.as_ref(), &self.config.sync, &id, &mut summary);
                self.add_summary(&summary);
                match result? {
                    Pulled::Stored(_) => {
                        self.arrived(id.clone());
                        let mut c = lock(&self.counters);
                        c.pulled += 1;
                        c.summary.pulled += 1;
                    }
                    Pulled::AlreadyLocal => lock(&self.counters).summary.already_local += 1,
                    Pulled::Absent => {
                        log::warn!("{}: {name}: rejected: its record is missing", self.background.url());
                        lock(&self.counters).summary.rejected += 1;
                    }
                    Pulled::Rejected | Pulled::Expired => {}
                }
            }
            let mut cur = lock(&self.cursor);
            let (file, cursor) = &mut *cur;
            if cursor.log_after.as_deref().is_none_or(|c| last.as_str() > c) {
                cursor.log_after = Some(last.clone());
                file.save(cursor)?;
            }
            drop(cur);
            after = Some(last);
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

/// The pusher's state for one shard (one cache: the only one).
struct PushShard {
    /// The pusher thread's handle of this shard.
    cache: Cache,
    pusher: Pusher,
    /// Where its `pushed_until` is kept.
    cursor: SharedCursor,
}

/// One local entry waiting for upload.
#[derive(Debug)]
struct Queued {
    key: Key,
    kind: ShareKind,
    rowid: i64,
    store_time: f64,
}

/// The pusher's view of `cache.db`: where its scan is, what it queued.
struct Pusher {
    /// The (store_time, rowid) the next scan starts after.
    pos: (f64, i64),
    /// The highest rowid seen: rows above it are new keys, whatever their
    /// store_time says.
    max_rowid: i64,
    /// The highest rowid of Flyte 2's `task_cache` seen (a changed row is
    /// a new row there). From 0 at each start: one existence check a row.
    flyte2_rowid: i64,
    queue: VecDeque<Queued>,
    capacity: usize,
    /// Entries that found the queue full: scanned again from this time
    /// once it drains.
    rescan_from: Option<f64>,
    dropped: u64,
    /// Shareable entries handled (rowid, store_time bits) at or after the
    /// prune time, so a rescan does not queue them again.
    handled: HashSet<(i64, u64)>,
}

impl Pusher {
    fn new(cache: &Cache, pushed_until: f64, capacity: usize) -> Pusher {
        Pusher {
            pos: (pushed_until, -1),
            max_rowid: cache.max_rowid().unwrap_or(0),
            flyte2_rowid: 0,
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            rescan_from: None,
            dropped: 0,
            handled: HashSet::new(),
        }
    }

    fn offer(&mut self, meta: &crate::cache::EntryMeta, opts: &SyncOptions) {
        let Some(kind) = select(meta, &opts.selection) else { return };
        self.offer_item(Queued { key: meta.key.clone(), kind, rowid: meta.rowid, store_time: meta.store_time });
    }

    /// Queues an item unless it was handled or is queued; a full queue
    /// drops it (counted; scanned again from `rescan_from` once it drains).
    fn offer_item(&mut self, item: Queued) {
        let id = (item.rowid, item.store_time.to_bits());
        if self.handled.contains(&id) || self.queue.iter().any(|q| (q.rowid, q.store_time.to_bits()) == id) {
            return;
        }
        if self.queue.len() >= self.capacity {
            self.dropped += 1;
            self.rescan_from = Some(self.rescan_from.map_or(item.store_time, |t| t.min(item.store_time)));
            return;
        }
        self.queue.push_back(item);
    }

    /// Queues the shareable entries set since the last scan.
    fn scan(&mut self, cache: &Cache, opts: &SyncOptions) -> Result<(), crate::cache::Error> {
        if self.queue.is_empty()
            && let Some(t) = self.rescan_from.take()
        {
            self.pos = (t, -1);
        }
        let mut rows = 0;
        while rows < SCAN_ROWS {
            let batch = cache.list_meta_stored_since(self.pos.0, self.pos.1, 500)?;
            rows += batch.len();
            for meta in &batch {
                self.pos = (meta.store_time, meta.rowid);
                self.max_rowid = self.max_rowid.max(meta.rowid);
                self.offer(meta, opts);
            }
            if batch.len() < 500 {
                break;
            }
        }
        // New keys whose store_time is older than the scan (their `set`
        // waited for the write lock).
        loop {
            let batch = cache.list_meta(self.max_rowid, 500)?;
            for meta in &batch {
                self.max_rowid = self.max_rowid.max(meta.rowid);
                self.offer(meta, opts);
            }
            if batch.len() < 500 {
                break;
            }
        }
        // Flyte 2's rows (negative rowids in the queue keep them apart from
        // the Cache table's; their time is never the watermark's).
        let flyte2 = Flyte2Cache::new(cache);
        loop {
            let rows = flyte2.rows_after(self.flyte2_rowid, 500)?;
            for (rowid, key, _) in &rows {
                if self.queue.len() >= self.capacity {
                    // Not past it: the next scan offers it again.
                    self.dropped += 1;
                    return Ok(());
                }
                self.flyte2_rowid = *rowid;
                let key = Key::Str(format!("{FLYTE2_KEY_PREFIX}{key}"));
                self.offer_item(Queued { key, kind: ShareKind::Flyte2, rowid: -rowid, store_time: f64::INFINITY });
            }
            if rows.len() < 500 {
                return Ok(());
            }
        }
    }

    /// Every entry stored before this time was handled.
    fn watermark(&self) -> f64 {
        let queued = self.queue.iter().map(|q| q.store_time).fold(f64::INFINITY, f64::min);
        self.pos.0.min(queued).min(self.rescan_from.unwrap_or(f64::INFINITY))
    }

    fn prune(&mut self, below: f64) {
        // Flyte 2 rows (infinite time) are kept: the rowid scan never
        // offers them again, but a drop sets it back.
        self.handled.retain(|(_, bits)| f64::from_bits(*bits) >= below);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Value;
    use crate::remote::share::Selection;

    fn opts() -> SyncOptions {
        SyncOptions {
            mode: Mode::ReadWrite,
            namespace: "default".into(),
            signing_key: None,
            selection: Selection { tags: vec![], prefixes: vec!["p/".into()] },
        }
    }

    fn set(cache: &Cache, key: &str) {
        cache.set(&Key::Str(key.into()), &Value::Bytes(b"v".to_vec()), None, None).unwrap();
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_queues_the_entry_again_once_it_drains() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mut pusher = Pusher::new(&cache, 0.0, 2);
        for k in ["p/1", "p/2", "p/3", "other", "p/4"] {
            set(&cache, k);
        }
        pusher.scan(&cache, &opts()).unwrap();
        let keys = |p: &Pusher| p.queue.iter().map(|q| q.key.clone()).collect::<Vec<_>>();
        let k = |s: &str| Key::Str(s.into());
        assert_eq!(keys(&pusher), [k("p/1"), k("p/2")]);
        assert_eq!(pusher.dropped, 2, "p/3 and p/4 found the queue full; `other` is not shared");
        let watermark = pusher.watermark();
        assert!(watermark <= pusher.queue[0].store_time, "the cursor never passes a queued entry");
        // Nothing is queued twice while it waits.
        pusher.scan(&cache, &opts()).unwrap();
        assert_eq!(keys(&pusher), [k("p/1"), k("p/2")]);
        // Uploaded (handled): the next scan after the queue drained finds
        // the dropped ones again, and only them.
        while let Some(q) = pusher.queue.pop_front() {
            pusher.handled.insert((q.rowid, q.store_time.to_bits()));
        }
        pusher.scan(&cache, &opts()).unwrap();
        assert_eq!(keys(&pusher), [k("p/3"), k("p/4")]);
    }

    #[test]
    fn a_set_that_committed_late_is_found_by_its_rowid() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        set(&cache, "p/early");
        let mut pusher = Pusher::new(&cache, 0.0, 10);
        pusher.scan(&cache, &opts()).unwrap();
        assert_eq!(pusher.queue.len(), 1);
        // A new key whose store_time is older than what was scanned (its
        // `set` took the time, then waited for the write lock).
        set(&cache, "p/late");
        cache.set_times(&Key::Str("p/late".into()), Some(1.0), None).unwrap();
        pusher.scan(&cache, &opts()).unwrap();
        assert_eq!(pusher.queue.back().map(|q| q.key.clone()), Some(Key::Str("p/late".into())));
    }
}
