//! The file system's semantics (docs/SEMANTICS.md), as plain methods that
//! return `Result<_, FsError>`. Nothing here knows fuser: `fuse.rs` only
//! translates requests to these calls and results to replies.
//!
//! This module is the namespace (names, inodes, attributes, listings and
//! changes to names); `io` is open files; `tags`, `views` and `xattrs` are
//! the trees beside `keys/` and the attributes.
//!
//! Concurrency (docs/DESIGN.md, "Concurrency"): requests run on several
//! threads at once. Each takes an engine handle of its own from
//! [`Engine`] (a read-only one to read, a read-write one to change the
//! cache), then the [`Tables`] lock for the in-memory tables. Lock order:
//! a writer's staging lock (`WriterSlot::io`), then SQLite's write lock
//! (`BEGIN IMMEDIATE`, waited for with nothing else held), then the
//! tables. The tables are never held while waiting for SQLite's write lock
//! or while reading or writing a value's bytes: a read-only handle cannot
//! wait for the write lock (WAL readers never do), and a change takes the
//! tables only once its transaction holds the lock ([`DiskCacheFs::change`]).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::ops::{Deref, DerefMut};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cache::settings::{DBNAME, MODE_RAW};
use crate::cache::{self, Cache, EntryMeta, Key, RenameOutcome, Scalar};
use crate::fs::content::content_len;
use crate::fs::control::{is_metadata, parse_setting, setting_text, stats_text};
use crate::fs::error::FsError;
use crate::fs::handle::{Handle, ReadView, WriterSlot};
use crate::fs::inode::FLYTE2_DIR;
use crate::fs::inode::{
    ContentVersion, FIRST_KEY_INODE, FIRST_SETTING, InodeTable, KEYS_DIR, Node, OPS_DIR, QUEUES_DIR, ROOT,
    SETTINGS_DIR, STATS, TAGS_DIR, TASK_DIR, classify, is_tag_ino, is_view_ino,
};
use crate::fs::intern::Interner;
use crate::fs::names::{HASHED_PREFIX, NAME_MAX, NameError, ParsedName, key_to_name, matches_hash, name_to_key};
use crate::fs::request_stats::RequestStats;
use crate::fs::store::{Store, StoreConn};

/// Names in the root reserved for views (docs/SEMANTICS.md, "The tree").
pub const RESERVED_ROOT_NAMES: [&str; 7] = ["tags", "queues", "task", "flyte2", "settings", "stats", "ops"];

mod flyte2;
mod io;
mod keydirs;
mod lifetimes;
mod listing_cache;
mod passthrough;
mod remote;
mod tags;
mod unopened;
mod views;
mod watch;
pub use passthrough::Backing;
pub use watch::WATCH_INTERVAL;
mod xattrs;
use keydirs::{DirCookies, Resolved};
use views::ViewTable;

/// How the tree behaves; built by the CLI (which owns clap).
#[derive(Clone, Debug)]
pub struct FsConfig {
    pub read_only: bool,
    /// How long the kernel may trust names and attributes (peer changes
    /// show within this time).
    pub ttl: Duration,
    pub uid: u32,
    pub gid: u32,
    /// Most key inodes kept: past it, the kernel is asked to forget the
    /// oldest unused ones (an inode must live while the kernel holds it).
    pub max_inodes: usize,
    /// READ comes without OPEN, FLUSH or RELEASE (a read-only mount
    /// answers OPEN with ENOSYS): see filesystem/unopened.rs.
    pub reads_unopened: bool,
    /// Readers of value files read through passthrough where the kernel
    /// allows it (filesystem/passthrough.rs).
    pub passthrough: bool,
    /// How long the kernel may trust names and attributes in `keys/` when
    /// the change watcher invalidates them (filesystem/watch.rs); `ttl`
    /// elsewhere.
    pub watched_ttl: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File,
    Symlink,
}

/// A file's attributes, as `stat` shows them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

/// How the kernel should treat an opened file's pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenFlags {
    /// The kernel's cached pages are of this very content: keep them.
    pub keep_cache: bool,
    /// The kernel's idea of the size may be stale: bypass the page cache.
    pub direct_io: bool,
    /// Closing needs no FLUSH (a reader).
    pub no_flush: bool,
    /// The kernel reads the handle's value file itself
    /// (filesystem/passthrough.rs).
    pub passthrough: bool,
}

/// What the kernel is asked to drop from its caches. Sent to a thread of
/// its own (mount.rs): a notification from inside a request could wait on
/// a lock the kernel holds for that request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// The name `name` in directory `parent` (`inval_entry`): the next
    /// path walk looks it up again.
    Entry { parent: u64, name: String },
    /// An inode's attributes and cached pages, or a directory's cached
    /// listing (`inval_inode`).
    Inode(u64),
}

/// Receives directory entries; returns true when full (stop adding).
pub trait DirReplier {
    fn add(&mut self, ino: u64, next_offset: u64, kind: Kind, name: &OsStr, attr: Option<&Attr>) -> bool;
}

/// A `statfs` answer.
#[derive(Clone, Copy, Debug)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// The tree's in-memory tables, behind one lock that is held only for
/// in-memory work and reads that cannot wait (see the module doc).
struct Tables {
    inodes: InodeTable,
    /// Setting names by inode (`FIRST_SETTING + index`).
    settings: Interner<String, String>,
    /// Tags by `tags/T/` inode (`TAG_DIR_BASE + index`), by name.
    tag_dirs: Interner<String, Scalar>,
    /// Tag directories made by mkdir that no entry carries yet.
    made_tags: Vec<Scalar>,
    /// (tag, key name) by `tags/T/NAME` inode (`TAG_LINK_BASE + index`),
    /// by (tag's name, key name).
    tag_links: Interner<(String, String), (Scalar, String)>,
    /// Tag links made before their key exists (rsync creates links before
    /// files): tag by key name, applied when the key is committed or
    /// renamed into place.
    pending_tags: HashMap<String, Scalar>,
    /// The names of the tags in use as of the cache's time and the count
    /// of this daemon's changes then (see `tag_in_use`).
    tags_in_use: Option<(SystemTime, u64, std::collections::HashSet<String>)>,
    /// Keys of the flat `%sha256:` names (tags/T/) this daemon has shown,
    /// by digest.
    hashed_names: HashMap<[u8; 32], Key>,
    /// What the `%sha256:` names in keys/ shown so far stand for.
    hashed_parts: HashMap<[u8; 32], crate::fs::paths::Hashed>,
    /// Directories under keys/ by inode (`KEY_DIR_BASE + index`).
    key_dirs: crate::fs::paths::DirInodes,
    /// Directories of keys/ that exist without a key under them
    /// (keydirs.rs), by prefix.
    made_dirs: std::collections::BTreeSet<String>,
    /// Where listings of keys/ resume.
    dir_cookies: DirCookies,
    /// queues/, task/ and ops/ (views.rs).
    views: ViewTable,
    /// Files in flyte2/ by inode (`FLYTE2_NODE_BASE + index`).
    flyte2: Interner<flyte2::Flyte2Node, flyte2::Flyte2Node>,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    /// Read handles held by inodes read without OPEN, by inode
    /// (filesystem/unopened.rs).
    pins: HashMap<u64, u64>,
    /// Handles opened through passthrough (filesystem/passthrough.rs).
    passthrough_fhs: std::collections::HashSet<u64>,
}

/// What a request works with: its handles on the store and the locked
/// tables.
struct State<'c, 't> {
    cache: &'c StoreConn<'c>,
    tables: MutexGuard<'t, Tables>,
}

impl Deref for State<'_, '_> {
    type Target = Tables;
    fn deref(&self) -> &Tables {
        &self.tables
    }
}

impl DerefMut for State<'_, '_> {
    fn deref_mut(&mut self) -> &mut Tables {
        &mut self.tables
    }
}

pub struct DiskCacheFs {
    config: FsConfig,
    /// Where names to forget go (a thread sends the notifications).
    forget_requests: Mutex<Option<std::sync::mpsc::Sender<Invalidation>>>,
    /// What the mount has served, shown in `stats` once the mount sets it.
    request_stats: std::sync::OnceLock<std::sync::Arc<RequestStats>>,
    directory: PathBuf,
    /// The cache (one, or a FanoutCache's shards): the tree's only door to
    /// the engine. What the tree stats while serving goes through the
    /// shards' directory descriptors it holds, never by path (a path could
    /// lead through a mount).
    store: Store,
    /// Lock order: after a writer's staging lock and SQLite's write lock.
    tables: Mutex<Tables>,
    /// The directories' and links' time, read at most every 100 ms.
    tree_time: Mutex<Option<(Instant, SystemTime)>>,
    /// (atime, mtime) set on directories of keys/ (rsync and tar set them
    /// after filling a directory), by inode; dropped when something is
    /// added to or removed from the directory through the mount. A leaf
    /// lock: nothing is taken while it is held.
    dir_times: Mutex<HashMap<u64, (SystemTime, SystemTime)>>,
    /// The change watcher's handle and position (watch.rs); only its
    /// thread takes this lock.
    watch_state: Mutex<Option<watch::WatchState>>,
    /// Bumped by every change through the mount (listing_cache.rs).
    generation: std::sync::atomic::AtomicU64,
    /// The state each directory's last listing began from, by inode
    /// (listing_cache.rs). A leaf lock.
    listed: Mutex<HashMap<u64, listing_cache::ListingToken>>,
    /// Times the tables lock was taken (`stats`' `internals`).
    tables_locks: std::sync::atomic::AtomicU64,
    /// Passthrough is on (the kernel took it at INIT).
    passthrough: std::sync::atomic::AtomicBool,
    /// The remote tier misses ask (`mount --remote`; filesystem/remote.rs).
    remote: std::sync::OnceLock<std::sync::Arc<crate::remote::RemoteTier>>,
}

/// Sizes of the batches a listing reads from the cache: a READDIR reply
/// holds a few dozen entries (4 KiB), and what does not fit is read again
/// by the next request, so start small and grow while the reply takes
/// whole batches.
struct ListingBatches(usize);

impl ListingBatches {
    fn new() -> ListingBatches {
        ListingBatches(32)
    }

    /// After a directory in a listing of keys/ (see keydirs.rs).
    fn small() -> ListingBatches {
        ListingBatches(4)
    }

    fn next(&mut self) -> usize {
        let n = self.0;
        self.0 = (self.0 * 2).min(1024);
        n
    }
}

/// Rounds a time to the microsecond, so that it survives the round trip
/// through a REAL column and back unchanged (rsync compares mtimes).
fn system_time(t: f64) -> SystemTime {
    let micros = (t * 1e6).round();
    if micros.is_finite() && micros >= 0.0 { UNIX_EPOCH + Duration::from_micros(micros as u64) } else { UNIX_EPOCH }
}

fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// The error for a name that names nothing: too long, or not a
/// canonical name (with the reason).
fn bad_name(name: &OsStr, e: NameError) -> FsError {
    match e {
        NameError::TooLong => FsError::NameTooLong(name_str(name)),
        NameError::Invalid(reason) => FsError::InvalidName { name: name_str(name), reason },
    }
}

fn name_str(name: &OsStr) -> String {
    String::from_utf8_lossy(name.as_bytes()).into_owned()
}

impl DiskCacheFs {
    /// The tree over `cache`'s directory. `cache` becomes the engine's
    /// primary handle; the requests' handles are opened beside it.
    pub fn new(cache: Cache, config: FsConfig) -> std::io::Result<DiskCacheFs> {
        Ok(Self::over(Store::one(cache)?, config))
    }

    /// The tree over `store` (one cache, or a FanoutCache's shards).
    pub fn over(store: Store, config: FsConfig) -> DiskCacheFs {
        let directory = store.directory().to_path_buf();
        // Opened before any request (see `watch::open_watch_state`); a
        // failure is tried again, and logged, by the watcher.
        let watch_state = if config.reads_unopened { Self::open_watch_state(&store).ok() } else { None };
        DiskCacheFs {
            forget_requests: Mutex::new(None),
            request_stats: std::sync::OnceLock::new(),
            directory,
            config,
            store,
            tables: Mutex::new(Tables {
                inodes: InodeTable::new(),
                settings: Interner::default(),
                tag_dirs: Interner::default(),
                made_tags: Vec::new(),
                tag_links: Interner::default(),
                pending_tags: HashMap::new(),
                tags_in_use: None,
                hashed_names: HashMap::new(),
                hashed_parts: HashMap::new(),
                key_dirs: Default::default(),
                made_dirs: Default::default(),
                dir_cookies: DirCookies::default(),
                views: ViewTable::default(),
                flyte2: Interner::default(),
                handles: HashMap::new(),
                next_fh: 1,
                pins: HashMap::new(),
                passthrough_fhs: Default::default(),
            }),
            tree_time: Mutex::new(None),
            dir_times: Mutex::new(HashMap::new()),
            watch_state: Mutex::new(watch_state),
            generation: Default::default(),
            listed: Mutex::new(HashMap::new()),
            tables_locks: Default::default(),
            passthrough: Default::default(),
            remote: std::sync::OnceLock::new(),
        }
    }

    /// Where to send the (directory inode, name) pairs the kernel should
    /// forget (`inval_entry`).
    pub fn set_forget_requests(&self, tx: std::sync::mpsc::Sender<Invalidation>) {
        *self.forget_requests.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    /// The requests `stats` reports (see [`Tree::set_request_stats`]).
    pub fn set_request_stats(&self, stats: std::sync::Arc<RequestStats>) {
        let _ = self.request_stats.set(stats);
    }

    /// Keeps the key inode table near `max_inodes`: asks the kernel to
    /// forget the oldest inodes nobody has open (their `forget` then
    /// removes them). Bounded work per call.
    fn trim_inodes(&self, st: &mut Tables) {
        // Inodes already asked for count as going: asking again for as many
        // would undershoot the bound (the kernel answers later).
        let excess = st.inodes.excess_over(self.config.max_inodes).min(256);
        if excess == 0 {
            return;
        }
        let tx = self.forget_requests.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(tx) = tx else { return };
        for key in st.inodes.forget_candidates(excess) {
            let (prefix, leaf) = crate::fs::paths::leaf_of(&key);
            let dir = Self::key_dir_ino(st, prefix);
            let _ = tx.send(Invalidation::Entry { parent: dir, name: leaf });
        }
    }

    /// Asks the kernel to drop what it caches of `ino` (see
    /// [`Invalidation`]).
    fn request_invalidation(&self, ino: u64) {
        let tx = self.forget_requests.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(tx) = tx {
            let _ = tx.send(Invalidation::Inode(ino));
        }
    }

    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    pub fn cache_directory(&self) -> &Path {
        &self.directory
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock is a bug; the tables are still
        // usable (every change is applied before the next may fail).
        self.tables_locks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Read-only handles for this request (each shard's checked out when
    /// first used).
    fn reader(&self) -> Result<StoreConn<'_>, FsError> {
        Ok(self.store.reader())
    }

    /// Read-write handles for this request. (Never called with the tables
    /// locked.) A change may change the tags in use: the set kept for
    /// `tag_in_use` is made again at the next miss.
    fn writer(&self) -> Result<StoreConn<'_>, FsError> {
        self.note_local_change();
        Ok(self.store.writer())
    }

    /// The request's handles with the tables locked.
    fn state<'c>(&self, cache: &'c StoreConn<'c>) -> State<'c, '_> {
        State { cache, tables: self.tables() }
    }

    /// Runs a change of the cache as one transaction on writer handles:
    /// SQLite's write lock on the shards of `keys` (every shard when
    /// `None`, for a change whose keys are found inside it) is waited for
    /// first, with nothing else held, then `f` runs with the tables locked
    /// until after the COMMIT. A lock not had within the cache's timeout
    /// is `EBUSY` (`cache::Error::Timeout`); an error from `f` rolls back.
    /// `f` changes entries of those keys only (store.rs).
    fn change<T>(
        &self,
        what: &str,
        keys: Option<&[&Key]>,
        f: impl FnOnce(&mut State) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        let c = self.writer()?;
        self.change_with(&c, what, keys, f)
    }

    /// [`Self::change`] on writer handles the caller already has.
    fn change_with<T>(
        &self,
        c: &StoreConn,
        what: &str,
        keys: Option<&[&Key]>,
        f: impl FnOnce(&mut State) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        let mut failure = None;
        let outcome = c.transact_on(keys, || {
            let mut st = self.state(c);
            match f(&mut st) {
                // The tables stay locked through the COMMIT, so nobody sees
                // the change in them before it is in the cache.
                Ok(value) => Ok((value, st.tables)),
                Err(e) => {
                    failure = Some(e);
                    Err(cache::Error::Aborted)
                }
            }
        });
        match (outcome, failure) {
            (_, Some(e)) => Err(e),
            (Ok((value, tables)), None) => {
                drop(tables);
                // The cache changed: directories show it at once (the
                // kernel asks again after a change it made).
                *self.tree_time.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(value)
            }
            (Err(e), None) => {
                log::warn!("{what}: {e}");
                Err(FsError::cache(what, e))
            }
        }
    }

    /// The time of the directories and links: when the cache last changed
    /// (`cache.db` or its WAL written), so that it is stable while nothing
    /// changes (rsync and tar see nothing new) and moves when anything
    /// does. Read at most every 100 ms.
    fn tree_time(&self) -> SystemTime {
        let mut cached = self.tree_time.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, time)) = *cached
            && at.elapsed() < Duration::from_millis(100)
        {
            return time;
        }
        let wal = format!("{DBNAME}-wal");
        let time = (0..self.store.shard_count())
            .flat_map(|s| [DBNAME, &wal].map(|name| self.store.disk(s).modified(name)))
            .flatten()
            .max()
            .unwrap_or(UNIX_EPOCH);
        *cached = Some((Instant::now(), time));
        time
    }

    /// A link's attributes: the time of the entry it stands for (its
    /// `store_time`), so that a link changes only when its entry does;
    /// the cache's time for a link whose entry is not there yet.
    fn symlink_attr(&self, ino: u64, target_len: usize, store_time: Option<f64>) -> Attr {
        let mut attr = self.dir_attr(ino);
        if let Some(t) = store_time {
            let t = system_time(t);
            (attr.atime, attr.mtime, attr.ctime) = (t, t, t);
        }
        attr.kind = Kind::Symlink;
        attr.size = target_len as u64;
        attr.perm = 0o777;
        attr.nlink = 1;
        attr
    }

    /// A link's attributes at its entry's `store_time` (as
    /// [`Self::symlink_attr`] makes them, without the tree's time).
    fn stored_link_attr(&self, ino: u64, target_len: usize, store_time: f64) -> Attr {
        let t = system_time(store_time);
        Attr {
            kind: Kind::Symlink,
            size: target_len as u64,
            perm: 0o777,
            nlink: 1,
            atime: t,
            mtime: t,
            ctime: t,
            ..self.plain_dir_attr(ino, t)
        }
    }

    fn dir_attr(&self, ino: u64) -> Attr {
        let now = self.tree_time();
        if let Some(&(atime, mtime)) = self.dir_times.lock().unwrap_or_else(|e| e.into_inner()).get(&ino) {
            let mut attr = Attr { atime, mtime, ..self.plain_dir_attr(ino, now) };
            attr.ctime = now;
            return attr;
        }
        self.plain_dir_attr(ino, now)
    }

    /// Records times set on a directory of keys/ (see `dir_times`).
    fn set_dir_times(&self, ino: u64, atime: Option<SystemTime>, mtime: Option<SystemTime>) {
        let now = self.tree_time();
        let mut times = self.dir_times.lock().unwrap_or_else(|e| e.into_inner());
        let (a0, m0) = times.get(&ino).copied().unwrap_or((now, now));
        times.insert(ino, (atime.unwrap_or(a0), mtime.unwrap_or(m0)));
    }

    /// Something was added to or removed from the directory `ino`: it shows
    /// the cache's time again, as a native directory's mtime moves.
    fn dir_changed(&self, ino: u64) {
        self.note_local_change();
        self.dir_times.lock().unwrap_or_else(|e| e.into_inner()).remove(&ino);
    }

    fn plain_dir_attr(&self, ino: u64, now: SystemTime) -> Attr {
        Attr {
            ino,
            kind: Kind::Directory,
            size: 0,
            perm: if self.config.read_only { 0o555 } else { 0o755 },
            nlink: 2,
            uid: self.config.uid,
            gid: self.config.gid,
            atime: now,
            mtime: now,
            ctime: now,
        }
    }

    fn file_attr(&self, ino: u64, size: u64, store_time: f64, access_time: f64) -> Attr {
        Attr {
            ino,
            kind: Kind::File,
            size,
            perm: if self.config.read_only { 0o444 } else { 0o644 },
            nlink: 1,
            uid: self.config.uid,
            gid: self.config.gid,
            atime: system_time(access_time),
            mtime: system_time(store_time),
            ctime: system_time(store_time),
        }
    }

    /// Whether the root shows `name`: a FanoutCache has no queues (no
    /// push or pull), no Flyte task cache and no Flyte 2 tables, so its
    /// root has no `queues/`, `task/` or `flyte2/`.
    fn in_root(&self, name: &OsStr) -> bool {
        !(self.store.is_sharded() && [&"queues", &"task", &"flyte2"].iter().any(|n| name == **n))
    }

    /// The one cache of a plain store (see [`StoreConn::single`]).
    fn single<'c>(cache: &'c StoreConn) -> Result<&'c Cache, FsError> {
        cache.single().map_err(|e| FsError::cache("the cache", e))
    }

    fn check_writable(&self, what: &str) -> Result<(), FsError> {
        if self.config.read_only { Err(FsError::ReadOnly(what.to_string())) } else { Ok(()) }
    }

    // -----------------------------------------------------------------------
    // `stats` and `settings/` (docs/SEMANTICS.md, "Stats and settings").

    fn control_attr(&self, ino: u64, len: usize, writable: bool) -> Attr {
        let mut attr = self.file_attr(ino, len as u64, 0.0, 0.0);
        let now = self.tree_time();
        (attr.atime, attr.mtime, attr.ctime) = (now, now, now);
        attr.perm = if writable && !self.config.read_only { 0o644 } else { 0o444 };
        attr
    }

    fn stats_bytes(&self, st: &State) -> Result<Vec<u8>, FsError> {
        let mut stats = st.cache.stats_json(&self.directory).map_err(|e| FsError::cache("stats", e))?;
        if let Some(requests) = self.request_stats.get() {
            stats["requests"] = requests.to_json();
        }
        if let Some(tier) = self.remote() {
            stats["remote"] = tier.status();
        }
        if let Some(statements) = crate::cache::statements_run() {
            // Counted with DISKCACHEFS_COUNT_SQL set (scripts/bench counts).
            let locks = self.tables_locks.load(std::sync::atomic::Ordering::Relaxed);
            stats["internals"] = serde_json::json!({
                "sql_statements": statements,
                "tables_locks": locks,
                "handle_checkouts": self.store.checkouts(),
            });
        }
        Ok(stats_text(&stats))
    }

    /// A setting's file content, `None` when there is no such setting.
    fn setting_bytes(st: &State, name: &str) -> Result<Option<Vec<u8>>, FsError> {
        if is_metadata(name) {
            return Ok(None);
        }
        let settings = st.cache.read_settings().map_err(|e| FsError::cache(format!("settings/{name}"), e))?;
        Ok(settings.values.get(name).map(setting_text))
    }

    fn setting_ino(st: &mut Tables, name: &str) -> u64 {
        FIRST_SETTING + st.settings.intern(name.to_string(), || name.to_string()) as u64
    }

    fn setting_name(st: &Tables, ino: u64) -> Option<String> {
        if !(FIRST_SETTING..FIRST_KEY_INODE).contains(&ino) {
            return None;
        }
        st.settings.get((ino - FIRST_SETTING) as usize).cloned()
    }

    /// Attributes of `stats` or a setting's file.
    fn control_getattr(&self, st: &State, ino: u64) -> Result<Attr, FsError> {
        if ino == STATS {
            return Ok(self.control_attr(ino, self.stats_bytes(st)?.len(), false));
        }
        let name = Self::setting_name(st, ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        let text = Self::setting_bytes(st, &name)?.ok_or_else(|| FsError::NotFound(format!("settings/{name}")))?;
        Ok(self.control_attr(ino, text.len(), true))
    }

    /// Applies what was written to a setting's file: `reset(name, value)`.
    /// Nothing written (only white space) changes nothing: a shell's
    /// `echo V > settings/NAME` closes the file once before writing to it.
    /// Runs on a writer handle of its own with the tables unlocked (a
    /// setting may be a pragma, which SQLite refuses inside a transaction).
    fn apply_setting(&self, name: &str, text: &[u8]) -> Result<(), FsError> {
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let what = format!("settings/{name}");
        let value = parse_setting(text).map_err(|reason| FsError::InvalidValue { what: what.clone(), reason })?;
        let c = self.writer()?;
        match (name, &value) {
            // The tag index is the setting and the index itself: writing
            // 1 or 0 is create_tag_index() or drop_tag_index().
            ("tag_index", Scalar::Int(1)) => c.create_tag_index(),
            ("tag_index", Scalar::Int(0)) => c.drop_tag_index(),
            ("tag_index", _) => {
                return Err(FsError::InvalidValue { what, reason: "tag_index is 0 or 1".into() });
            }
            _ => c.reset(name, Some(value.clone())).map(drop),
        }
        .map_err(|e| FsError::cache(what, e))?;
        self.store.settings_changed();
        Ok(())
    }

    /// A complete line written to a setting's file is checked at once, so
    /// that the write itself fails (errors at close are often ignored).
    fn check_setting_line(st: &State, name: &str, text: &[u8]) -> Result<(), FsError> {
        if !text.ends_with(b"\n") || text.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let what = format!("settings/{name}");
        let value = parse_setting(text).map_err(|reason| FsError::InvalidValue { what: what.clone(), reason })?;
        st.cache.check_setting(name, &value).map_err(|e| FsError::cache(what, e))
    }

    // -----------------------------------------------------------------------
    // Names and attributes.

    /// Parses a key's flat name (as in `tags/T/`) to its key (a
    /// `%sha256:` name is looked up).
    fn resolve_flat(&self, st: &mut State, name: &OsStr) -> Result<Key, FsError> {
        match name_to_key(name.as_bytes()) {
            Ok(ParsedName::Key(k)) => Ok(k),
            Ok(ParsedName::Hashed(digest)) => {
                if let Some(key) = st.hashed_names.get(&digest) {
                    return Ok(key.clone());
                }
                // Not shown by this daemon yet (a name typed, or a key a
                // peer added): look for it once, and remember it.
                let mut after = 0;
                loop {
                    let batch = st.cache.list_meta(after, 1000).map_err(|e| FsError::cache("listing keys", e))?;
                    let Some(last) = batch.last() else { break };
                    after = last.0;
                    if let Some((_, m)) = batch.iter().find(|(_, m)| matches_hash(&m.key, &digest)) {
                        st.hashed_names.insert(digest, m.key.clone());
                        return Ok(m.key.clone());
                    }
                }
                Err(FsError::NotFound(format!("keys/{}", name_str(name))))
            }
            Err(NameError::TooLong) => Err(FsError::NameTooLong(format!("keys/{}", name_str(name)))),
            Err(NameError::Invalid(reason)) => Err(FsError::InvalidName { name: name_str(name), reason }),
        }
    }

    /// Remembers the key of a `%sha256:` name this daemon shows, so that
    /// looking the name up again is a map lookup, not a scan of the cache.
    fn remember_hashed(st: &mut Tables, name: &str, key: &Key) {
        if name.starts_with(HASHED_PREFIX)
            && let Ok(ParsedName::Hashed(digest)) = name_to_key(name.as_bytes())
        {
            st.hashed_names.entry(digest).or_insert_with(|| key.clone());
        }
    }

    /// The attributes of a key inode, from the cache or its open writer.
    fn key_attr(&self, st: &mut State, ino: u64) -> Result<Attr, FsError> {
        self.key_attr_with(st, ino, None)
    }

    /// [`Self::key_attr`], with the entry's row when the caller has just
    /// read it under the same lock (`Some(None)`: there is none).
    fn key_attr_with(&self, st: &mut State, ino: u64, read: Option<Option<EntryMeta>>) -> Result<Attr, FsError> {
        let inode = st.inodes.get(ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        if let Some(view) = inode.superseded {
            return Ok(self.file_attr(ino, view.len, view.store_time, view.access_time));
        }
        let key = inode.key.clone();
        let name = inode.name.clone();
        let pending_create = inode.pending_create;
        let unlinked = inode.unlinked;
        let staged = Self::writer_of(st, ino).and_then(|w| w.staged_len.map(|len| (len, w.dirty)));
        let meta = match read {
            _ if unlinked => None,
            Some(meta) => meta,
            None => st.cache.entry_meta(&key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?,
        };
        let now = st.cache.now();
        let mut attr = match (meta, staged) {
            (_, Some((len, true))) => {
                // A dirty writer: its copy is what this file is now (a new
                // file, until written to, has the time of its create).
                let inode = st.inodes.get(ino);
                let (store, access) = inode.and_then(|i| i.pending.times).unwrap_or((None, None));
                let base = inode.and_then(|i| i.created_at).filter(|_| len == 0).unwrap_or(now);
                self.file_attr(ino, len, store.unwrap_or(base), access.unwrap_or(base))
            }
            (Some(meta), _) => {
                let len = Self::entry_len(st.cache, &meta);
                if let Some(view) = Self::note_version(st, ino, ContentVersion::of(&meta, len)) {
                    return Ok(self.file_attr(ino, view.len, view.store_time, view.access_time));
                }
                self.file_attr(ino, len, meta.store_time, meta.access_time)
            }
            (None, Some((len, false))) if pending_create || unlinked => self.file_attr(ino, len, now, now),
            (None, None) if pending_create => {
                let created = st.inodes.get(ino).and_then(|i| i.created_at).unwrap_or(now);
                self.file_attr(ino, 0, created, created)
            }
            (None, _) => {
                // Deleted while open: like an unlinked file, it still stats
                // for its readers (fstat), with their snapshot's size.
                match Self::readers_views(st, ino).next() {
                    Some(v) => self.file_attr(ino, v.len, v.store_time, v.access_time),
                    None => return Err(FsError::NotFound(format!("keys/{name}"))),
                }
            }
        };
        if unlinked {
            // Open, but no longer reachable by any name.
            attr.nlink = 0;
        }
        Ok(attr)
    }

    /// What the readers of key inode `ino` hold open (their versions).
    fn readers_views<'t>(st: &'t Tables, ino: u64) -> impl Iterator<Item = ReadView> + 't {
        st.handles.values().filter_map(move |h| match h {
            Handle::Read { ino: i, view: Some(v), .. } if *i == ino => Some(*v),
            _ => None,
        })
    }

    /// Records that the kernel is about to get `version`'s size for `ino`.
    /// If the kernel holds another version's size and pages and readers of
    /// that version still have the file open, the inode is superseded
    /// instead (it keeps their version; the name gets a new inode) and
    /// their view is returned: a reader sees its whole snapshot.
    fn note_version(st: &mut Tables, ino: u64, version: ContentVersion) -> Option<ReadView> {
        let held = st.inodes.get(ino)?.kernel_version;
        if let Some(held) = held
            && held != version
        {
            let readers_view = Self::readers_views(st, ino).find(|v| v.version == held);
            let writer_open = st.handles.values().any(|h| matches!(h, Handle::Write(w) if w.ino == ino));
            if let Some(view) = readers_view
                && !writer_open
            {
                st.inodes.supersede(ino, view);
                return Some(view);
            }
        }
        if let Some(inode) = st.inodes.get_mut(ino) {
            inode.kernel_version = Some(version);
        }
        None
    }

    /// An entry's content length: a value file's own length (the `size`
    /// column may be wrong in a damaged or crafted cache; an unreadable or
    /// vanished file counts as empty, and reading it gives the error).
    fn entry_len(cache: &StoreConn, meta: &EntryMeta) -> u64 {
        match (&meta.filename, meta.mode) {
            (Some(name), m) if m != MODE_RAW => {
                cache.disk_of(&meta.key).ok().and_then(|d| d.file_size(name).ok().flatten()).unwrap_or(0)
            }
            _ => content_len(meta),
        }
    }

    fn writer_of(st: &Tables, ino: u64) -> Option<&WriterSlot> {
        st.handles.values().find_map(|h| match h {
            Handle::Write(w) if w.ino == ino && w.dirty => Some(w),
            _ => None,
        })
    }

    fn has_dirty_writer(st: &Tables, ino: u64) -> bool {
        Self::writer_of(st, ino).is_some()
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let found = match self.lookup_attr(parent, name) {
            Err(miss @ FsError::NotFound(_)) => {
                self.lookup_after_miss(parent, name, miss, || self.lookup_attr(parent, name))
            }
            other => other,
        };
        let attr = self.made_content_attr(found?);
        self.given(&attr);
        Ok(attr)
    }

    fn lookup_attr(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong(name_str(name)));
        }
        if is_view_ino(parent) {
            return self.view_lookup(parent, name);
        }
        if classify(parent) == Node::Flyte2 {
            return self.flyte2_lookup(parent, name);
        }
        if parent == ROOT && !self.in_root(name) {
            return Err(FsError::NotFound(name_str(name)));
        }
        if parent == ROOT && Self::is_flyte2_name(name) {
            return Ok(self.dir_attr(FLYTE2_DIR));
        }
        // The root's directories are constants: no handle, no lock.
        let fixed = [("keys", KEYS_DIR), ("queues", QUEUES_DIR), ("task", TASK_DIR), ("ops", OPS_DIR)];
        let fixed = fixed.into_iter().chain([("settings", SETTINGS_DIR), ("tags", TAGS_DIR)]);
        if parent == ROOT
            && let Some((_, ino)) = fixed.clone().find(|(n, _)| name == *n)
        {
            return Ok(self.dir_attr(ino));
        }
        let c = self.reader()?;
        let mut st = self.state(&c);
        match parent {
            ROOT if name == "stats" => self.control_getattr(&st, STATS),
            TAGS_DIR => {
                let tag = self
                    .find_tag(&mut st, name)?
                    .ok_or_else(|| FsError::NotFound(format!("tags/{}", name_str(name))))?;
                let ino = Self::tag_dir_ino(&mut st, &tag);
                Ok(self.dir_attr(ino))
            }
            _ if is_tag_ino(parent) => {
                let tag =
                    Self::tag_of_dir(&st, parent).ok_or_else(|| FsError::NotDirectory(format!("inode {parent}")))?;
                let ino = Self::tag_link_ino(&mut st, &tag, &name_str(name));
                self.tag_getattr(&mut st, ino)
            }
            ROOT => Err(FsError::NotFound(name_str(name))),
            SETTINGS_DIR => {
                let text = name.to_str().map(|n| Self::setting_bytes(&st, n)).transpose()?.flatten();
                let text = text.ok_or_else(|| FsError::NotFound(format!("settings/{}", name_str(name))))?;
                let ino = Self::setting_ino(&mut st, &name_str(name));
                Ok(self.control_attr(ino, text.len(), true))
            }
            _ if Self::is_key_dir(parent) => self.lookup_in_keys(&mut st, parent, name),
            _ => Err(FsError::NotDirectory(format!("inode {parent}"))),
        }
    }

    /// `forget`. An inode read without OPEN drops its pin with the last
    /// reference (filesystem/unopened.rs).
    pub fn forget(&self, ino: u64, nlookup: u64) {
        let unpin = {
            let mut st = self.tables();
            st.inodes.forget(ino, nlookup);
            Self::note_forgotten(&mut st, ino, nlookup);
            let forgotten = match classify(ino) {
                Node::Key => st.inodes.get(ino).is_none_or(|i| i.nlookup == 0),
                _ => true,
            };
            forgotten && st.pins.contains_key(&ino)
        };
        if unpin {
            self.unpin(ino);
        }
    }

    /// `getattr`. (`fstat` sends no file handle, so a reader's snapshot
    /// size comes from its inode: see `note_version`.)
    pub fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        self.current_attr(ino).map(|a| self.made_content_attr(a))
    }

    fn current_attr(&self, ino: u64) -> Result<Attr, FsError> {
        match classify(ino) {
            Node::FixedDir => Ok(self.dir_attr(ino)),
            Node::View => self.view_getattr(ino),
            Node::Flyte2 => self.flyte2_getattr(ino),
            Node::TagDir | Node::TagLink => {
                let c = self.reader()?;
                let mut st = self.state(&c);
                self.tag_getattr(&mut st, ino)
            }
            Node::Stats | Node::Setting => {
                let c = self.reader()?;
                let st = self.state(&c);
                self.control_getattr(&st, ino)
            }
            Node::Key => {
                let c = self.reader()?;
                let mut st = self.state(&c);
                self.key_attr(&mut st, ino)
            }
            Node::KeyDir => self.key_dir_attr(ino),
            Node::Unknown => Err(FsError::NotFound(format!("inode {ino}"))),
        }
    }

    /// `setattr`: size (truncate), times; mode and owner are accepted and
    /// ignored (modes are fixed), so `cp -p` and `rsync -a` work.
    pub fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        size: Option<u64>,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> Result<Attr, FsError> {
        // Times set on any directory are kept in memory (see `dir_times`),
        // so that a second rsync or tar of the tree finds them as it set
        // them; those of keys/ until something changes in the directory.
        if (atime.is_some() || mtime.is_some()) && size.is_none() && !self.config.read_only {
            let is_dir = match classify(ino) {
                Node::FixedDir | Node::KeyDir | Node::TagDir => true,
                Node::View | Node::Flyte2 => self.getattr(ino).is_ok_and(|a| a.kind == Kind::Directory),
                _ => false,
            };
            if is_dir {
                self.set_dir_times(ino, atime, mtime);
            }
        }
        match classify(ino) {
            Node::Key => {}
            // Times and modes of view files and links are not kept (rsync
            // sets them after a restore); sizes do not apply.
            Node::View => return self.view_getattr(ino),
            Node::Flyte2 if size.is_some() => return Err(FsError::AccessDenied(format!("inode {ino}"))),
            Node::Flyte2 => return self.flyte2_getattr(ino),
            Node::TagDir | Node::TagLink => {
                // Tag directories and links: times and modes are not kept.
                let c = self.reader()?;
                let mut st = self.state(&c);
                if size.is_some() {
                    return Err(FsError::NotPermitted("tags: no size to change".into()));
                }
                return self.tag_getattr(&mut st, ino);
            }
            Node::FixedDir | Node::KeyDir if size.is_some() => {
                return Err(FsError::IsDirectory(format!("inode {ino}")));
            }
            Node::FixedDir => return Ok(self.dir_attr(ino)),
            Node::KeyDir => return self.key_dir_attr(ino),
            Node::Unknown => return Err(FsError::NotFound(format!("inode {ino}"))),
            Node::Stats | Node::Setting => {}
        }
        if classify(ino) != Node::Key {
            // stats and settings: times are ignored; a setting being written
            // may be truncated through its open handle.
            let c = self.reader()?;
            let mut st = self.state(&c);
            if let Some(size) = size {
                if ino == STATS {
                    return Err(FsError::AccessDenied("stats".into()));
                }
                self.check_writable("settings")?;
                match fh.and_then(|fh| st.handles.get_mut(&fh)) {
                    Some(Handle::Setting { text, dirty, .. }) => {
                        text.resize(size as usize, b' ');
                        *dirty = true;
                    }
                    _ => {
                        return Err(FsError::InvalidValue {
                            what: "a setting".into(),
                            reason: "write the new value (echo VALUE > settings/NAME) instead of truncating".into(),
                        });
                    }
                }
            }
            return self.control_getattr(&st, ino);
        }
        let (name, key) = {
            let st = self.tables();
            let inode = st.inodes.get(ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
            (inode.name.clone(), inode.key.clone())
        };
        if let Some(size) = size {
            self.check_writable(&format!("keys/{name}"))?;
            self.truncate_key(ino, fh, size)?;
        }
        if atime.is_some() || mtime.is_some() {
            self.check_writable(&format!("keys/{name}"))?;
            let store = mtime.map(unix_seconds);
            let access = atime.map(unix_seconds);
            self.change(&format!("keys/{name}"), Some(&[&key]), |st| {
                let key = st.inodes.get(ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?.key.clone();
                let pending = st.inodes.get(ino).is_some_and(|i| i.pending_create) || Self::has_dirty_writer(st, ino);
                if pending && let Some(inode) = st.inodes.get_mut(ino) {
                    let (s0, a0) = inode.pending.times.unwrap_or((None, None));
                    inode.pending.times = Some((store.or(s0), access.or(a0)));
                }
                let before = st.cache.entry_meta(&key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?;
                st.cache.set_times(&key, store, access).map_err(|e| FsError::cache(format!("keys/{name}"), e))?;
                let after = st.cache.entry_meta(&key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?;
                if let (Some(before), Some(after)) = (before, after) {
                    // Same content, new store_time: not a new version for the
                    // readers that have it open (else they would be superseded).
                    let len = Self::entry_len(st.cache, &after);
                    Self::retime_version(st, ino, ContentVersion::of(&before, len), ContentVersion::of(&after, len));
                }
                Ok(())
            })?;
        }
        let c = self.reader()?;
        let mut st = self.state(&c);
        self.key_attr(&mut st, ino)
    }

    /// Renames a content version after a change of times alone.
    fn retime_version(st: &mut Tables, ino: u64, old: ContentVersion, new: ContentVersion) {
        for h in st.handles.values_mut() {
            if let Handle::Read { ino: i, view: Some(v), .. } = h
                && *i == ino
                && v.version == old
            {
                v.version = new;
            }
        }
        if let Some(inode) = st.inodes.get_mut(ino)
            && inode.kernel_version == Some(old)
        {
            inode.kernel_version = Some(new);
        }
    }

    // -----------------------------------------------------------------------
    // Directories.

    /// Lists a directory from `offset` (0 at the start). Offsets: 1 after
    /// `.`, 2 after `..`, then each key's rowid + 2, so a listing resumes
    /// where it stopped without holding any state between calls.
    pub fn readdir(&self, ino: u64, offset: u64, plus: bool, out: &mut dyn DirReplier) -> Result<(), FsError> {
        if !plus {
            let listed = self.list(ino, offset, plus, out);
            Self::trim_names(&mut self.tables());
            return listed;
        }
        let mut given = lifetimes::Given { out, given: Vec::new() };
        let listed = self.list(ino, offset, plus, &mut given);
        let mut st = self.tables();
        for ino in given.given {
            Self::note_given(&mut st, ino);
        }
        Self::trim_names(&mut st);
        self.trim_links(&mut st);
        listed
    }

    /// The listing of directory `ino` from `offset` (see [`Self::readdir`]).
    fn list(&self, ino: u64, offset: u64, plus: bool, out: &mut dyn DirReplier) -> Result<(), FsError> {
        let dots = [(1u64, "."), (2u64, "..")];
        for (next, name) in dots {
            if offset < next && out.add(ino, next, Kind::Directory, OsStr::new(name), None) {
                return Ok(());
            }
        }
        if is_view_ino(ino) {
            return self.view_readdir(ino, offset, plus, out);
        }
        if classify(ino) == Node::Flyte2 {
            return self.flyte2_readdir(ino, offset, plus, out);
        }
        if Self::is_key_dir(ino) {
            if offset == 0 {
                self.listing_begins(ino);
            }
            return self.readdir_keys(ino, offset, plus, out);
        }
        match ino {
            ROOT => {
                for (next, ino, name) in [
                    (3, KEYS_DIR, "keys"),
                    (4, TAGS_DIR, "tags"),
                    (5, QUEUES_DIR, "queues"),
                    (6, TASK_DIR, "task"),
                    (7, FLYTE2_DIR, "flyte2"),
                ] {
                    if !self.in_root(OsStr::new(name)) {
                        continue;
                    }
                    let attr = self.dir_attr(ino);
                    if offset < next && out.add(ino, next, Kind::Directory, OsStr::new(name), plus.then_some(&attr)) {
                        return Ok(());
                    }
                }
                Ok(())
            }
            TAGS_DIR => {
                let c = self.reader()?;
                let mut st = self.state(&c);
                for (i, tag) in Self::visible_tags(&st)?.iter().enumerate() {
                    let next = i as u64 + 3;
                    if offset >= next {
                        continue;
                    }
                    let ino = Self::tag_dir_ino(&mut st, tag);
                    let attr = self.dir_attr(ino);
                    if out.add(ino, next, Kind::Directory, OsStr::new(&Self::tag_name(tag)), plus.then_some(&attr)) {
                        return Ok(());
                    }
                }
                Ok(())
            }
            _ if is_tag_ino(ino) => {
                let tag = Self::tag_of_dir(&self.tables(), ino)
                    .ok_or_else(|| FsError::NotDirectory(format!("inode {ino}")))?;
                let c = self.reader()?;
                // Offsets are the store's cursors plus 2.
                let mut after = offset.saturating_sub(2);
                let mut batches = ListingBatches::new();
                loop {
                    // Read with the tables unlocked; locked once per batch
                    // to name its links.
                    let batch = c.list_tagged(&tag, after, batches.next()).map_err(|e| FsError::cache("tags/", e))?;
                    if batch.is_empty() {
                        return Ok(());
                    }
                    let mut st = self.tables();
                    for (cursor, meta) in &batch {
                        let name = key_to_name(&meta.key);
                        Self::remember_hashed(&mut st, &name, &meta.key);
                        let link = Self::tag_link_ino(&mut st, &tag, &name);
                        let target_len = Self::link_target(&st, &name).len();
                        let attr = self.stored_link_attr(link, target_len, meta.store_time);
                        if out.add(link, cursor + 2, Kind::Symlink, OsStr::new(&name), plus.then_some(&attr)) {
                            return Ok(());
                        }
                        after = *cursor;
                    }
                }
            }
            SETTINGS_DIR => {
                let c = self.reader()?;
                let mut st = self.state(&c);
                let settings = st.cache.read_settings().map_err(|e| FsError::cache("settings/", e))?;
                let names: Vec<String> = settings.values.keys().filter(|n| !is_metadata(n)).cloned().collect();
                for (i, name) in names.iter().enumerate() {
                    let next = i as u64 + 3;
                    if offset >= next {
                        continue;
                    }
                    let ino = Self::setting_ino(&mut st, name);
                    let len = settings.values.get(name).map_or(0, |v| setting_text(v).len());
                    let attr = self.control_attr(ino, len, true);
                    if out.add(ino, next, Kind::File, OsStr::new(name), plus.then_some(&attr)) {
                        return Ok(());
                    }
                }
                Ok(())
            }
            _ => Err(FsError::NotDirectory(format!("inode {ino}"))),
        }
    }

    /// mkdir: a directory in `keys/` (keydirs.rs) or `tags/T` (an empty
    /// tag directory, kept in memory until an entry gets the tag);
    /// everywhere else the tree is fixed.
    pub fn mkdir(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let attr = self.make_dir(parent, name)?;
        self.given(&attr);
        Ok(attr)
    }

    fn make_dir(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        self.check_writable(&name_str(name))?;
        if Self::is_key_dir(parent) {
            return self.mkdir_in_keys(parent, name);
        }
        if is_view_ino(parent) {
            // Every queue and task directory exists already.
            self.view_lookup(parent, name)?;
            return Err(FsError::Exists(name_str(name)));
        }
        if parent != TAGS_DIR {
            return Err(FsError::NotPermitted(format!("mkdir {}: the tree's directories are fixed", name_str(name))));
        }
        let tag = Self::parse_tag_name(name)?;
        let c = self.reader()?;
        let mut st = self.state(&c);
        if self.tag_in_use(&mut st, &tag)? {
            return Err(FsError::Exists(format!("tags/{}", name_str(name))));
        }
        st.made_tags.push(tag.clone());
        let ino = Self::tag_dir_ino(&mut st, &tag);
        Ok(self.dir_attr(ino))
    }

    /// rmdir: an empty directory in `keys/`, or `tags/T`, which is
    /// `evict(T)` (`rm -r tags/T` removes its entries one by one first;
    /// whatever is left is evicted).
    pub fn rmdir(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        self.check_writable(&name_str(name))?;
        if Self::is_key_dir(parent) {
            return self.rmdir_in_keys(parent, name);
        }
        if is_view_ino(parent) {
            return self.view_rmdir(parent, name);
        }
        if parent != TAGS_DIR {
            return Err(FsError::NotPermitted(format!("rmdir {}: the tree's directories are fixed", name_str(name))));
        }
        let tag = {
            let c = self.reader()?;
            let mut st = self.state(&c);
            // A directory this daemon has shown may have been emptied already
            // (rm -r removes the entries first): removing it still succeeds.
            let known = Self::parse_tag_name(name).ok().filter(|t| st.tag_dirs.find(&Self::tag_name(t)).is_some());
            match self.find_tag(&mut st, name)? {
                Some(tag) => tag,
                None => known.ok_or_else(|| FsError::NotFound(format!("tags/{}", name_str(name))))?,
            }
        };
        // evict is a transaction of its own per batch (as core.py's), so it
        // runs on a writer handle with the tables unlocked.
        self.writer()?.evict(&tag).map_err(|e| FsError::cache(format!("tags/{}", name_str(name)), e))?;
        self.tables().made_tags.retain(|t| *t != tag);
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Namespace changes.

    pub fn unlink(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        if is_view_ino(parent) {
            return self.view_unlink(parent, name);
        }
        if classify(parent) == Node::Flyte2 {
            return self.flyte2_unlink(parent, name);
        }
        if is_tag_ino(parent) {
            // Removing an entry from tags/T/ evicts it (rm -r tags/T is evict(T)).
            self.check_writable(&name_str(name))?;
            let c = self.reader()?;
            let mut st = self.state(&c);
            let tag = Self::tag_of_dir(&st, parent).ok_or_else(|| FsError::NotDirectory(format!("inode {parent}")))?;
            let key = self.resolve_flat(&mut st, name)?;
            let meta = st.cache.entry_meta(&key).map_err(|e| FsError::cache(name_str(name), e))?;
            if meta.and_then(|m| m.tag) != Some(tag) {
                return Err(FsError::NotFound(format!("tags/.../{}", name_str(name))));
            }
            drop(st);
            return self.unlink_key(&key);
        }
        if !Self::is_key_dir(parent) {
            self.check_writable(&name_str(name))?;
            return Err(FsError::NotPermitted(format!("{}: only keys in keys/ can be removed", name_str(name))));
        }
        self.check_writable(&format!("keys/{}", name_str(name)))?;
        let key = {
            let c = self.reader()?;
            let mut st = self.state(&c);
            let prefix = Self::key_dir_prefix(&st, parent)?;
            match self.resolve_child(&mut st, &prefix, name) {
                Ok(Resolved::Key(key)) => key,
                Ok(Resolved::Dir(dir)) => {
                    return Err(FsError::IsDirectory(format!("keys/{}", crate::fs::paths::dir_path(&dir))));
                }
                Err(FsError::InvalidName { .. }) => return Err(FsError::NotFound(format!("keys/{}", name_str(name)))),
                Err(e) => return Err(e),
            }
        };
        self.unlink_key(&key)
    }

    /// Removes a key's entry (rm of its file), keeping its directory.
    fn unlink_key(&self, key: &Key) -> Result<(), FsError> {
        self.change(&format!("keys/{}", crate::fs::paths::key_path(key)), Some(&[key]), |st| {
            let name = key_to_name(key);
            let deleted = st.cache.delete(key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?;
            let pending = st.inodes.is_pending_create(&name);
            if !deleted && !pending {
                return Err(FsError::NotFound(format!("keys/{name}")));
            }
            st.inodes.unlink_name(&name);
            Self::keep_dir_of(st, key);
            self.key_dir_changed(st, key);
            Ok(())
        })
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), FsError> {
        self.check_writable(&name_str(name))?;
        if is_view_ino(parent) {
            return self.view_rename(parent, name, new_parent, new_name, no_replace);
        }
        if Self::is_key_dir(parent) && !Self::is_key_dir(new_parent) && self.is_key_subdir(parent, name)? {
            // A directory of keys goes nowhere but keys/: refused before
            // anything happens. (EXDEV would have mv copy it, making tags
            // or pushing items file by file, then fail half way.)
            return Err(FsError::NotPermitted(format!(
                "{}: a directory of keys can only be renamed within keys/",
                name_str(name)
            )));
        }
        if is_view_ino(new_parent) {
            // mv falls back to copy and delete: a copy into queues/P/ pushes.
            return Err(FsError::CrossDevice(name_str(name)));
        }
        if Self::is_key_dir(parent) && is_tag_ino(new_parent) {
            // mv keys/.../X tags/T/[Y]: tag the entry T (renaming it first
            // to the key whose flat name is Y, if Y is another name); it
            // stays in keys/.
            let tag = {
                let st = self.tables();
                Self::tag_of_dir(&st, new_parent).ok_or_else(|| FsError::NotDirectory(format!("inode {new_parent}")))?
            };
            let what = format!("keys/{}", name_str(new_name));
            return self.change(&what, None, |st| {
                let prefix = Self::key_dir_prefix(st, parent)?;
                let mut key = match self.resolve_child(st, &prefix, name)? {
                    Resolved::Key(k) => k,
                    Resolved::Dir(_) => {
                        return Err(FsError::NotPermitted(format!("{}: a directory has no tag", name_str(name))));
                    }
                };
                if name != new_name {
                    let new_key = self.resolve_flat(st, new_name)?;
                    self.rename_key(st, &key, &new_key, no_replace)?;
                    key = new_key;
                }
                if !st.cache.set_tag(&key, Some(&tag)).map_err(|e| FsError::cache(&what, e))? {
                    return Err(FsError::NotFound(what.clone()));
                }
                Ok(())
            });
        }
        if !Self::is_key_dir(parent) || !Self::is_key_dir(new_parent) {
            if Self::is_key_dir(parent) || Self::is_key_dir(new_parent) {
                return Err(FsError::CrossDevice(name_str(name)));
            }
            return Err(FsError::NotPermitted(format!("rename {}", name_str(name))));
        }
        self.change(&format!("keys/{}", name_str(name)), None, |st| {
            let old_prefix = Self::key_dir_prefix(st, parent)?;
            let new_prefix = Self::key_dir_prefix(st, new_parent)?;
            match self.resolve_child(st, &old_prefix, name) {
                Err(FsError::InvalidName { .. }) => Err(FsError::NotFound(format!("keys/{}", name_str(name)))),
                Err(e) => Err(e),
                Ok(Resolved::Dir(dir)) => {
                    let new_dir = match crate::fs::paths::parse_child(new_name.as_bytes(), &new_prefix) {
                        Ok(crate::fs::paths::ChildName::Part(p)) => format!("{new_prefix}{p}/"),
                        Err(NameError::TooLong) => return Err(FsError::NameTooLong(name_str(new_name))),
                        _ => {
                            return Err(FsError::InvalidName {
                                name: name_str(new_name),
                                reason: "a directory's name is a part of str keys".into(),
                            });
                        }
                    };
                    self.rename_dir(st, &dir, &new_dir, no_replace)
                }
                Ok(Resolved::Key(old_key)) => {
                    let new_key = self.rename_target(st, &old_key, &new_prefix, new_name)?;
                    self.rename_key(st, &old_key, &new_key, no_replace)
                }
            }
        })
    }

    /// Whether `name` in the key directory `parent` is a directory of keys.
    fn is_key_subdir(&self, parent: u64, name: &OsStr) -> Result<bool, FsError> {
        let c = self.reader()?;
        let mut st = self.state(&c);
        let prefix = Self::key_dir_prefix(&st, parent)?;
        Ok(matches!(self.resolve_child(&mut st, &prefix, name), Ok(Resolved::Dir(_))))
    }

    /// The key a file renamed to `new_name` in the directory `prefix` gets.
    fn rename_target(&self, st: &mut State, old_key: &Key, prefix: &str, new_name: &OsStr) -> Result<Key, FsError> {
        use crate::fs::paths::{ChildName, leaf_of, parse_child};
        let intended = st.inodes.by_name(&key_to_name(old_key)).and_then(|i| st.inodes.get(i)?.intended_key.clone());
        match parse_child(new_name.as_bytes(), prefix) {
            // A long key's name: the key user.diskcache.key gave the file
            // (how a backup restores it), else the existing key.
            Ok(ChildName::Hashed(_)) => {
                if let Some(k) = intended {
                    let (p, leaf) = leaf_of(&k);
                    if p == prefix && OsStr::new(&leaf) == new_name {
                        return Ok(k);
                    }
                }
            }
            Err(e) => return Err(bad_name(new_name, e)),
            Ok(_) => {}
        }
        match self.resolve_child(st, prefix, new_name)? {
            Resolved::Key(k) => Ok(k),
            Resolved::Dir(dir) => Err(FsError::IsDirectory(format!("keys/{}", crate::fs::paths::dir_path(&dir)))),
        }
    }

    /// Renames a key's file to `new_key`, in the caller's transaction.
    fn rename_key(&self, st: &mut State, old_key: &Key, new_key: &Key, no_replace: bool) -> Result<(), FsError> {
        let (old_key, new_key) = (old_key.clone(), new_key.clone());
        let old_name = key_to_name(&old_key);
        let new_name = key_to_name(&new_key);
        if old_name == new_name {
            // A rename onto itself: nothing to do, if there is something.
            let pending = st.inodes.is_pending_create(&old_name);
            let exists = st.cache.entry_meta(&old_key).map_err(|e| FsError::cache(format!("keys/{old_name}"), e))?;
            return if exists.is_some() || pending {
                Ok(())
            } else {
                Err(FsError::NotFound(format!("keys/{old_name}")))
            };
        }
        let source_ino = st.inodes.by_name(&old_name);
        let source_pending = source_ino.and_then(|i| st.inodes.get(i)).is_some_and(|i| i.pending_create);
        let target_pending = st.inodes.is_pending_create(&new_name);
        // A file made through the mount, with none of our attributes set,
        // renamed over an existing entry is a rewrite of that entry (how
        // sed -i and editors save): the entry's type, tag and expiry are
        // kept (docs/SEMANTICS.md, "Edits keep the entry's type, tag and
        // expiry").
        let rewrite = match source_ino.and_then(|i| st.inodes.get(i)) {
            Some(i) if i.made_here && !i.attrs_set && i.pending_create => true,
            // Still the version this mount stored (not a peer's since).
            Some(i) if i.made_here && !i.attrs_set => {
                let meta = st.cache.entry_meta(&old_key).map_err(|e| FsError::cache(format!("keys/{old_name}"), e))?;
                meta.map(|m| m.store_time.to_bits()) == i.committed_version
            }
            _ => false,
        };
        let replaced = if rewrite && !no_replace {
            st.cache.entry_meta(&new_key).map_err(|e| FsError::cache(format!("keys/{new_name}"), e))?
        } else {
            None
        };
        if source_pending {
            // Not in the cache yet: the rename is the inode's alone (its
            // commit will store under the new key). Replace any target.
            let target_exists =
                st.cache.entry_meta(&new_key).map_err(|e| FsError::cache(format!("keys/{new_name}"), e))?.is_some();
            if no_replace && (target_exists || target_pending) {
                return Err(FsError::Exists(format!("keys/{new_name}")));
            }
            if target_exists {
                st.cache.delete(&new_key).map_err(|e| FsError::cache(format!("keys/{new_name}"), e))?;
            }
        } else {
            match st
                .cache
                .rename(&old_key, &new_key, !no_replace)
                .map_err(|e| FsError::cache(format!("keys/{old_name}"), e))?
            {
                RenameOutcome::Renamed => {}
                RenameOutcome::SourceMissing => return Err(FsError::NotFound(format!("keys/{old_name}"))),
                RenameOutcome::TargetExists => return Err(FsError::Exists(format!("keys/{new_name}"))),
            }
        }
        st.inodes.unlink_name(&new_name);
        if let Some(ino) = source_ino {
            st.inodes.rename(ino, &new_name, &new_key);
        }
        if let Some(old) = replaced {
            self.keep_replaced_attributes(st, source_ino, source_pending, &new_key, &new_name, old)?;
        }
        if !source_pending {
            Self::apply_pending_tag(st, &new_name, &new_key)?;
        }
        Self::keep_dir_of(st, &old_key);
        for key in [&old_key, &new_key] {
            self.key_dir_changed(st, key);
        }
        Ok(())
    }

    /// After a rewrite by rename (see `rename_key`): the moved entry takes
    /// the replaced entry's tag, expiry and type (the type if its content
    /// is valid for it; else it stays bytes). A copy still being written
    /// gets them at its commit.
    fn keep_replaced_attributes(
        &self,
        st: &mut State,
        ino: Option<u64>,
        pending: bool,
        key: &Key,
        name: &str,
        old: EntryMeta,
    ) -> Result<(), FsError> {
        let what = format!("keys/{name}");
        if pending {
            if let Some(inode) = ino.and_then(|i| st.inodes.get_mut(i)) {
                // (Over what an earlier rename of this copy kept: it now
                // rewrites this entry.)
                inode.pending.tag = Some(old.tag.clone());
                inode.pending.expire_time = Some(old.expire_time);
                inode.inherited_type = Some(old.value_type());
            }
            return Ok(());
        }
        st.cache.set_tag(key, old.tag.as_ref()).map_err(|e| FsError::cache(what.clone(), e))?;
        st.cache.touch_at(key, old.expire_time).map_err(|e| FsError::cache(what.clone(), e))?;
        match self.convert_stored(st, key, name, old.value_type()) {
            Err(FsError::InvalidValue { .. }) => Ok(()),
            other => other,
        }
    }

    pub fn statfs(&self) -> Result<StatFs, FsError> {
        let buf = self.store.disk(0).statvfs().map_err(|e| FsError::io(self.directory.display().to_string(), e))?;
        Ok(StatFs {
            blocks: buf.f_blocks,
            bfree: buf.f_bfree,
            bavail: buf.f_bavail,
            files: buf.f_files,
            ffree: buf.f_ffree,
            bsize: buf.f_bsize as u32,
            namelen: NAME_MAX as u32,
            frsize: buf.f_frsize as u32,
        })
    }

    /// The key a file named `name` in the directory `parent` of `keys/`
    /// stands for, whether or not it exists (how a tree over several
    /// caches picks the cache a new file goes to).
    pub fn key_of_name(&self, parent: u64, name: &OsStr) -> Result<Key, FsError> {
        if !Self::is_key_dir(parent) {
            return Err(FsError::NotDirectory(format!("inode {parent}")));
        }
        let c = self.reader()?;
        let mut st = self.state(&c);
        self.new_key_for(&mut st, parent, name)
    }

    /// How many inodes the kernel is holding (for tests and logs).
    pub fn inode_count(&self) -> usize {
        self.tables().inodes.len()
    }

    /// The root's reserved names (creating them is refused).
    pub fn is_reserved(name: &OsStr) -> bool {
        RESERVED_ROOT_NAMES.iter().any(|r| OsStr::new(r) == name) || name == "keys"
    }
}

impl Drop for DiskCacheFs {
    fn drop(&mut self) {
        // Unmounting with writers still open: commit what they wrote, as a
        // close would have, rather than lose it.
        let fhs: Vec<u64> = self.tables().handles.keys().copied().collect();
        for fh in fhs {
            if let Err(e) = self.release(fh) {
                log::error!("committing an open file at unmount: {e}");
            }
        }
        // The watcher's read-only handle closes before the engine's: the
        // last connection to close removes cache.db-wal and -shm, which a
        // read-only one cannot do.
        self.watch_state.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
