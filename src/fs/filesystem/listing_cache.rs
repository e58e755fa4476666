//! Whether the kernel may keep a directory's listing, on a read-write
//! mount (docs/SEMANTICS.md, "Listings"). There OPENDIR still reaches the
//! daemon, and its answer says whether the listing the kernel cached at
//! the last listing of that directory is still right (`FOPEN_KEEP_CACHE`
//! with `FOPEN_CACHE_DIR`); a repeat `ls -l` then sends no READDIRPLUS,
//! which would make the kernel drop the ACLs it caches for every entry,
//! and costs one GETXATTR per entry (`security.selinux`, which no LSM
//! answers here) instead of three requests.
//!
//! A listing is still right while nothing changed since it began: no
//! commit by any process (SQLite's `data_version` on a handle of its own,
//! which changes with every other connection's commit, the daemon's own
//! writers' included), no change through the mount that commits nothing
//! yet (a counter bumped whenever a writer handle is taken and whenever a
//! directory changes), and no entry expired (the next expiry time, read
//! when the listing began). Only `keys/` and its directories are cached;
//! the views' listings are made anew each time.
//!
//! A read-only mount answers OPENDIR with ENOSYS instead and its change
//! watcher drops the listings that change (watch.rs).

use std::sync::atomic::Ordering;

use super::DiskCacheFs;

/// The state of the cache a listing was made from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct ListingToken {
    data_version: i64,
    generation: u64,
    /// When the next entry expires, as of then.
    next_expiry: Option<f64>,
    /// The cache's time then.
    now: f64,
}

impl DiskCacheFs {
    /// Something changed, or may have, through the mount.
    pub(super) fn note_local_change(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Changes through the mount so far (see [`Self::note_local_change`]).
    pub(super) fn local_changes(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Whether the cache may have changed since `seen` (the value this
    /// returned before; `None` at first): any commit, by another process
    /// or through the mount. The new value to keep.
    pub(super) fn changed_since(&self, seen: Option<(i64, u64)>) -> (bool, Option<(i64, u64)>) {
        let now = self.listing_token().map(|t| (t.data_version, t.generation));
        (now.is_none() || now != seen, now)
    }

    /// The cache's state now; `None` when it cannot be told (then no
    /// listing is kept).
    fn listing_token(&self) -> Option<ListingToken> {
        let generation = self.generation.load(Ordering::Relaxed);
        let mut guard = self.watch_state.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Self::open_watch_state(&self.store).map_err(|e| log::debug!("no listing cache: {e}")).ok();
        }
        let (data_version, next_expiry, now) = guard.as_ref()?.versions()?;
        Some(ListingToken { data_version, generation, next_expiry, now })
    }

    /// A listing of directory `ino` begins (READDIR at its start).
    pub(super) fn listing_begins(&self, ino: u64) {
        if self.reads_unopened() || !Self::is_key_dir(ino) {
            return;
        }
        let token = self.listing_token();
        let mut listed = self.listed.lock().unwrap_or_else(|e| e.into_inner());
        match token {
            Some(token) => listed.insert(ino, token),
            None => listed.remove(&ino),
        };
    }

    /// OPENDIR's answer: whether the kernel may cache this directory's
    /// listing, and whether what it cached is still right.
    pub fn listing_cache(&self, ino: u64) -> (bool, bool) {
        if self.reads_unopened() || !Self::is_key_dir(ino) {
            return (false, false);
        }
        let then = self.listed.lock().unwrap_or_else(|e| e.into_inner()).get(&ino).copied();
        let Some(then) = then else { return (true, false) };
        let Some(now) = self.listing_token() else { return (false, false) };
        let expired = then.next_expiry.is_some_and(|t| t <= now.now);
        let current = now.data_version == then.data_version && now.generation == then.generation && !expired;
        (true, current)
    }
}
