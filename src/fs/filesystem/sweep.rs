//! Names of keys that other processes removed, dropped from the kernel.
//!
//! On a read-write mount the kernel keeps a name it was given (by a
//! LOOKUP, or by each entry of a READDIRPLUS) until it is short of memory;
//! the daemon keeps an inode for it as long (about 1 KiB). When a peer
//! removes the key (python-diskcache's `pull`, `delete`, culling), nothing
//! tells the kernel, so a churning cache listed now and then (a queue that
//! rsync or `ls -l` walks) would leave the daemon holding an inode for
//! every key it ever listed, up to `--max-inodes`. Once a second the
//! watcher thread (mount.rs) checks a batch of the oldest idle inodes
//! against the cache, one indexed lookup each, with the tables unlocked,
//! and asks the kernel to forget the names whose key is gone; its FORGET
//! then frees the inode. Only when the table holds more than
//! [`SWEEP_FLOOR`] inodes, so a small cache costs nothing, and only until
//! a whole round of the table has been checked since the cache last
//! changed (a key goes only with a commit), so an idle mount costs one
//! `PRAGMA data_version` a second.
//!
//! Dropping a name is always safe: at worst (the key came back meanwhile)
//! the kernel's next access looks it up again. Read-only mounts need none
//! of this: their watcher compares every name the kernel holds whenever
//! the cache changes (watch.rs).

use super::DiskCacheFs;

/// Where the sweep stands: the cache's state when it last looked, and how
/// many inodes it has checked since that state began.
#[derive(Default)]
pub(super) struct SweepState {
    seen: Option<(i64, u64)>,
    checked: usize,
}

/// Below this many key inodes the sweep does nothing.
pub(super) const SWEEP_FLOOR: usize = 1024;
/// Inodes walked per sweep at most (each idle one an indexed lookup): a
/// few milliseconds, once a second.
const SWEEP_BATCH: usize = 4096;
/// Watcher ticks (`WATCH_INTERVAL`, 100 ms) between sweeps.
const SWEEP_EVERY: u64 = 10;

impl DiskCacheFs {
    /// One tick of the read-write watcher: a sweep every [`SWEEP_EVERY`].
    pub(super) fn sweep_tick(&self) {
        let tick = self.sweep_ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if tick % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep_gone_keys();
        }
    }

    /// Checks up to [`SWEEP_BATCH`] of the oldest idle key inodes and asks
    /// the kernel to forget those whose key no longer exists; how many.
    pub fn sweep_gone_keys(&self) -> usize {
        if !self.invalidator.is_connected() {
            return 0;
        }
        let (len, walk) = {
            let st = self.tables();
            (st.inodes.len(), st.inodes.age_len())
        };
        if len <= SWEEP_FLOOR {
            return 0;
        }
        {
            let seen = self.sweep_state.lock().unwrap_or_else(|e| e.into_inner()).seen;
            // Asked with no lock held (it takes the watcher's handle).
            let (changed, now) = self.changed_since(seen);
            let mut state = self.sweep_state.lock().unwrap_or_else(|e| e.into_inner());
            if changed {
                *state = SweepState { seen: now, checked: 0 };
            } else if state.checked >= walk {
                // Every inode checked since the last change.
                return 0;
            }
            state.checked += SWEEP_BATCH;
        }
        let candidates = self.tables().inodes.sweep_candidates(SWEEP_BATCH);
        let Ok(c) = self.reader() else { return 0 };
        // A database error keeps the name: it is only a cache.
        let gone: Vec<_> = candidates.into_iter().filter(|(_, key)| matches!(c.entry_meta(key), Ok(None))).collect();
        if gone.is_empty() {
            return 0;
        }
        let mut st = self.tables();
        let mut requests = Vec::with_capacity(gone.len());
        for (ino, key) in gone {
            // Looked up, opened or renamed meanwhile: left alone.
            if st.inodes.request_forget_if_idle(ino, &key) {
                requests.push(Self::name_of_key(&mut st, &key));
            }
        }
        drop(st);
        let n = requests.len();
        self.invalidator.send(requests);
        n
    }
}
