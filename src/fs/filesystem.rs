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
use crate::fs::inode::{
    FIRST_KEY_INODE, FIRST_SETTING, InodeTable, Node, ROOT, SETTINGS_DIR, STATS, TAGS_DIR, classify, is_tag_ino,
    is_view_ino,
};
use crate::fs::intern::Interner;
use crate::fs::names::{HASHED_PREFIX, NAME_MAX, NameError, ParsedName, key_to_name, matches_hash, name_to_key};
use crate::fs::request_stats::RequestStats;
use crate::fs::store::{Store, StoreConn};
use crate::fs::version::ContentVersion;

mod attrs;
mod control_files;
mod flyte2;
mod io;
mod keydirs;
mod keys;
mod lifetimes;
mod listing;
mod listing_cache;
mod namespace;
mod negatives;
mod passthrough;
mod remote;
mod requests;
mod root;
mod sweep;
mod tags;
mod unopened;
mod views;
mod watch;
mod xattrs;
pub use crate::fs::types::{Attr, DirReplier, FsConfig, Invalidation, Kind, OpenFlags, StatFs};
use attrs::unix_seconds;
use keydirs::{DirCookies, Resolved};
use listing::ListingBatches;
pub use passthrough::Backing;
use views::ViewTable;
pub use watch::WATCH_INTERVAL;

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
    /// Flyte inputs looked up through `task/` whose outputs may be stored
    /// next: recorded with them (flyte/input_record.rs).
    seen_inputs: crate::flyte::input_record::SeenInputs,
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
    invalidator: crate::fs::invalidator::Invalidator,
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
    /// The change watcher's handle and position (watch.rs): its thread
    /// takes this lock, and so do OPENDIR and READDIR of keys/ on a
    /// read-write mount, for the listing token (listing_cache.rs). A leaf
    /// lock.
    watch_state: Mutex<Option<watch::WatchState>>,
    /// Bumped by every change through the mount (listing_cache.rs).
    generation: std::sync::atomic::AtomicU64,
    /// The state each directory's last listing began from, by inode
    /// (listing_cache.rs). A leaf lock.
    listed: Mutex<HashMap<u64, listing_cache::ListingToken>>,
    /// Comparisons the change watcher began (watch.rs).
    watch_passes: std::sync::atomic::AtomicU64,
    /// The read-write watcher's ticks and where its sweep stands
    /// (sweep.rs). A leaf lock.
    sweep_ticks: std::sync::atomic::AtomicU64,
    sweep_state: Mutex<sweep::SweepState>,
    /// Misses the kernel may keep (negatives.rs). A leaf lock.
    negatives: Mutex<negatives::Negatives>,
    /// Commits so far (negatives.rs).
    commits: std::sync::atomic::AtomicU64,
    /// Raises the kernel's epoch (negatives.rs); set at mount where the
    /// kernel takes it.
    epoch_bump: std::sync::OnceLock<std::sync::Arc<dyn Fn() -> bool + Send + Sync>>,
    /// No negative entries from now on (the kernel refused an epoch).
    negatives_off: std::sync::atomic::AtomicBool,
    /// (misses kept, epochs raised), for `stats`.
    negative_counts: (std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64),
    /// Times the tables lock was taken (`stats`' `internals`).
    tables_locks: std::sync::atomic::AtomicU64,
    /// Passthrough is on (the kernel took it at INIT).
    passthrough: std::sync::atomic::AtomicBool,
    /// The remote tier misses ask (`mount --remote`; filesystem/remote.rs).
    remote: std::sync::OnceLock<std::sync::Arc<crate::remote::RemoteTier>>,
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
            invalidator: Default::default(),
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
                seen_inputs: Default::default(),
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
            watch_passes: Default::default(),
            sweep_ticks: Default::default(),
            sweep_state: Default::default(),
            negatives: Default::default(),
            commits: Default::default(),
            epoch_bump: std::sync::OnceLock::new(),
            negatives_off: Default::default(),
            negative_counts: Default::default(),
            passthrough: Default::default(),
            remote: std::sync::OnceLock::new(),
        }
    }

    /// Where to send the (directory inode, name) pairs the kernel should
    /// forget (`inval_entry`).
    pub fn set_forget_requests(&self, tx: std::sync::mpsc::Sender<Invalidation>) {
        self.invalidator.connect(tx);
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
        if !self.invalidator.is_connected() {
            return;
        }
        let requests: Vec<Invalidation> =
            st.inodes.forget_candidates(excess).into_iter().map(|key| Self::name_of_key(st, &key)).collect();
        self.invalidator.send(requests);
    }

    /// The kernel's name of `key` in `keys/`, to ask it to forget.
    fn name_of_key(st: &mut Tables, key: &Key) -> Invalidation {
        let (prefix, leaf) = crate::fs::paths::leaf_of(key);
        Invalidation::Entry { parent: Self::key_dir_ino(st, prefix), name: leaf }
    }

    /// Asks the kernel to drop what it caches of `ino` (see
    /// [`Invalidation`]).
    fn request_invalidation(&self, ino: u64) {
        self.invalidator.send([Invalidation::Inode(ino)]);
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
        self.change_on(c, what, keys, false, f)
    }

    /// [`Self::change`] for a rename within `keys/`, whose only new names
    /// are the ones the kernel's RENAME itself makes (no miss the kernel
    /// keeps can hide them: negatives.rs).
    fn change_named_by_kernel<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut State) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        let c = self.writer()?;
        self.change_on(&c, what, None, true, f)
    }

    fn change_on<T>(
        &self,
        c: &StoreConn,
        what: &str,
        keys: Option<&[&Key]>,
        named_by_kernel: bool,
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
                self.negatives_after_commit(if named_by_kernel { Some(&[]) } else { keys });
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

    /// The one cache of a plain store (see [`StoreConn::single`]).
    fn single<'c>(cache: &'c StoreConn) -> Result<&'c Cache, FsError> {
        cache.single().map_err(|e| FsError::cache("the cache", e))
    }

    fn check_writable(&self, what: &str) -> Result<(), FsError> {
        if self.config.read_only { Err(FsError::ReadOnly(what.to_string())) } else { Ok(()) }
    }

    // -----------------------------------------------------------------------
    // `stats` and `settings/` (docs/SEMANTICS.md, "Stats and settings").

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
