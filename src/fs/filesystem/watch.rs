//! The change watcher of a read-only mount (docs/SEMANTICS.md, "Read-only
//! mounts"). There the kernel keeps names and attributes in `keys/` for
//! long (`FsConfig::watched_ttl`) and every listing it has read (no
//! OPENDIR reaches the daemon), so that warm reads and repeat listings
//! cost no round trip; what other processes change must still show
//! within a second. A thread (mount.rs) calls [`DiskCacheFs::watch`]
//! every 100 ms; each call costs one `PRAGMA data_version` on a handle of
//! the watcher's own (it changes with every commit by any other
//! connection) and one look at the next expiry time. When either says
//! something changed, the watcher compares every key the kernel knows
//! with the cache and asks the kernel to drop:
//! - the name and attributes of each key whose version changed or that is
//!   gone (a pinned inode is superseded at the next lookup, and keeps its
//!   readers' version: filesystem/unopened.rs);
//! - the name of each directory of `keys/` that no longer exists;
//! - the cached listing of every directory it knows;
//! - the pins, attributes and pages of files whose content the daemon
//!   makes (`stats`, settings, renderings).
//!
//! Each comparison is made once more at the next look, for a listing the
//! kernel was reading while the invalidations went out.
//!
//! A comparison costs one indexed lookup per inode the kernel holds (at
//! most `--max-inodes`); after a slow one the next waits four times as
//! long, so the watcher uses at most a fifth of a CPU whatever the load.

use std::time::{Duration, Instant};

use super::{DiskCacheFs, Invalidation, State};
use crate::cache::Key;
use crate::fs::inode::{KEY_DIR_BASE, KEYS_DIR, ROOT, SETTINGS_DIR, STATS, TAG_DIR_BASE, TAGS_DIR};
use crate::fs::paths::{leaf_of, self_key};
use crate::fs::store::{Store, StoreConn};
use crate::fs::version::ContentVersion;

/// How often the watcher looks for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// The watcher's own view of the cache.
pub(super) struct WatchState {
    /// Read-only handles of its own, one per shard.
    cache: StoreConn<'static>,
    data_version: i64,
    /// When the next entry expires (an expiry commits nothing).
    next_expiry: Option<f64>,
    /// No comparison before this (see the module doc).
    quiet_until: Instant,
    /// Compare once more at the next look: a listing the kernel was
    /// reading while the last invalidations went out may have been stored
    /// after them, with entries from before the change.
    again: bool,
    /// When `stats` was first seen pinned, and the requests counted at the
    /// look before (so at most those its content holds): its `requests`
    /// section changes with every request, not with the cache, so its pin
    /// is dropped once it is a second old and requests came since
    /// (`refresh_stats`).
    stats_pinned: Option<(Instant, u64)>,
    /// The requests counted at the last look.
    requests_seen: u64,
}

/// How old the kernel's copy of `stats` may grow on a read-only mount
/// while requests come.
const STATS_REFRESH: Duration = Duration::from_secs(1);

impl WatchState {
    /// `data_version`, the next expiry time and the cache's time, now
    /// (listing_cache.rs); `None` on a database error.
    pub(super) fn versions(&self) -> Option<(i64, Option<f64>, f64)> {
        let now = self.cache.now();
        let data_version = self.cache.data_version().ok()?;
        let next_expiry = self.cache.next_expiry_after(now).ok()?;
        Some((data_version, next_expiry, now))
    }
}

/// A key the kernel knows, as the watcher compares it.
struct KnownKey {
    ino: u64,
    key: Key,
    held: Option<ContentVersion>,
    dir: u64,
    leaf: String,
}

impl DiskCacheFs {
    /// One look for changes by other processes (see the module doc);
    /// false when this tree is not watched (the caller stops calling).
    pub fn watch(&self) -> bool {
        if !self.reads_unopened() {
            // Read-write: names of keys peers removed (sweep.rs).
            self.sweep_tick();
            return true;
        }
        let mut guard = self.watch_state.lock().unwrap_or_else(|e| e.into_inner());
        let mut opened_late = false;
        if guard.is_none() {
            match Self::open_watch_state(&self.store) {
                Ok(state) => *guard = Some(state),
                Err(e) => {
                    log::warn!("change watcher: {e}; trying again");
                    return true;
                }
            }
            // Changes since the mount began are not known: compare all.
            opened_late = true;
        }
        let Some(state) = &mut *guard else { return true };
        let now = Instant::now();
        if let Some(stale) = self.refresh_stats(state, now) {
            self.send_invalidations(vec![stale]);
        }
        if now < state.quiet_until {
            return true;
        }
        let version = match state.cache.data_version() {
            Ok(v) => v,
            Err(e) => {
                log::warn!("change watcher: {e}");
                return true;
            }
        };
        let cache_now = state.cache.now();
        let expired = state.next_expiry.is_some_and(|t| t <= cache_now);
        let changed = version != state.data_version || expired || opened_late;
        if !changed && !state.again {
            return true;
        }
        state.again = changed;
        state.data_version = version;
        state.next_expiry = state.cache.next_expiry_after(cache_now).unwrap_or(None);
        let requests = self.stale_in_kernel(&state.cache);
        let cost = now.elapsed();
        state.quiet_until = Instant::now() + cost * 4;
        drop(guard);
        log::debug!("change watcher: {} invalidations in {cost:?}", requests.len());
        self.send_invalidations(requests);
        true
    }

    fn send_invalidations(&self, requests: Vec<Invalidation>) {
        self.invalidator.send(requests);
    }

    /// `stats`' pin dropped, and its inode to invalidate, when the kernel's
    /// copy is [`STATS_REFRESH`] old and requests came since: the next read
    /// gets the counts of now.
    fn refresh_stats(&self, state: &mut WatchState, now: Instant) -> Option<Invalidation> {
        let served = self.request_stats.get()?.total();
        let before = std::mem::replace(&mut state.requests_seen, served);
        if !self.tables().pins.contains_key(&STATS) {
            state.stats_pinned = None;
            return None;
        }
        match state.stats_pinned {
            None => {
                state.stats_pinned = Some((now, before));
                None
            }
            Some((since, then)) if now.duration_since(since) >= STATS_REFRESH && served != then => {
                state.stats_pinned = None;
                self.unpin(STATS);
                Some(Invalidation::Inode(STATS))
            }
            Some(_) => None,
        }
    }

    /// The watcher's handle and the cache's state now. Made before the
    /// first request (`DiskCacheFs::new`), so that every change after
    /// anything the kernel got counts as a change.
    pub(super) fn open_watch_state(store: &Store) -> Result<WatchState, String> {
        let cache = store.open_watch_handles().map_err(|e| e.to_string())?;
        let data_version = cache.data_version().map_err(|e| e.to_string())?;
        let next_expiry = cache.next_expiry_after(cache.now()).map_err(|e| e.to_string())?;
        Ok(WatchState {
            cache,
            data_version,
            next_expiry,
            quiet_until: Instant::now(),
            again: false,
            stats_pinned: None,
            requests_seen: 0,
        })
    }

    /// What the kernel caches that the cache no longer says.
    fn stale_in_kernel(&self, cache: &StoreConn) -> Vec<Invalidation> {
        let (keys, dirs, tag_dirs) = {
            let mut st = State { cache, tables: self.tables() };
            // Counted with the tables held: a LOOKUP that read its row
            // before this pass and gives its inode after it reads the row
            // again (keydirs.rs, `lookup_in_keys_unlocked`).
            self.watch_passes.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            let known: Vec<(u64, Key, Option<ContentVersion>)> = st
                .inodes
                .iter()
                .filter(|(_, i)| i.nlookup > 0 && i.superseded.is_none() && !i.unlinked)
                .map(|(ino, i)| (ino, i.key.clone(), i.kernel_version))
                .collect();
            let keys: Vec<KnownKey> = known
                .into_iter()
                .map(|(ino, key, held)| {
                    let (prefix, leaf) = leaf_of(&key);
                    let prefix = prefix.to_string();
                    let dir = Self::key_dir_ino(&mut st, &prefix);
                    KnownKey { ino, key, held, dir, leaf }
                })
                .collect();
            let dirs: Vec<(u64, String)> =
                st.key_dirs.iter().map(|(index, prefix)| (KEY_DIR_BASE + index as u64, prefix.to_string())).collect();
            // Each directory that went, with its name in its parent (a
            // directory `a/b/` is where the key `a/b` would be).
            let dirs: Vec<(u64, Option<(u64, String)>)> = dirs
                .into_iter()
                .map(|(ino, prefix)| {
                    let gone = match Self::dir_exists(&st, &prefix) {
                        Ok(true) => None,
                        Ok(false) => self_key(&prefix).map(|own| {
                            let (parent, name) = leaf_of(&own);
                            (Self::key_dir_ino(&mut st, parent), name)
                        }),
                        Err(e) => {
                            log::warn!("change watcher: {e}");
                            None
                        }
                    };
                    (ino, gone)
                })
                .collect();
            (keys, dirs, st.tag_dirs.indexes().collect::<Vec<_>>())
        };
        let mut out = Vec::new();
        for known in keys {
            let now = match cache.entry_meta(&known.key) {
                Ok(meta) => meta.map(|m| ContentVersion::of(&m, Self::entry_len(cache, &m))),
                Err(e) => {
                    log::warn!("change watcher: keys/{}: {e}", known.leaf);
                    continue;
                }
            };
            if now != known.held {
                out.push(Invalidation::Entry { parent: known.dir, name: known.leaf });
                out.push(Invalidation::Inode(known.ino));
            }
        }
        for (ino, gone) in dirs {
            if let Some((parent, name)) = gone {
                out.push(Invalidation::Entry { parent, name });
            }
            out.push(Invalidation::Inode(ino));
        }
        for ino in [ROOT, KEYS_DIR, TAGS_DIR, SETTINGS_DIR] {
            out.push(Invalidation::Inode(ino));
        }
        out.extend(tag_dirs.into_iter().map(|i| Invalidation::Inode(TAG_DIR_BASE + i as u64)));
        out.extend(self.unpin_made_content().into_iter().map(Invalidation::Inode));
        out
    }
}
