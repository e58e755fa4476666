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
//! [`SWEEP_FLOOR`] inodes, so a small cache costs nothing.
//!
//! Dropping a name is always safe: at worst (the key came back meanwhile)
//! the kernel's next access looks it up again. Read-only mounts need none
//! of this: their watcher compares every name the kernel holds whenever
//! the cache changes (watch.rs).

use super::{DiskCacheFs, Invalidation};

/// Below this many key inodes the sweep does nothing.
pub(super) const SWEEP_FLOOR: usize = 1024;
/// Inodes checked per sweep at most: 4,096 indexed lookups, a few
/// milliseconds, once a second.
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
        let candidates = {
            let mut st = self.tables();
            if st.inodes.len() <= SWEEP_FLOOR {
                return 0;
            }
            let n = (st.inodes.len() - SWEEP_FLOOR).min(SWEEP_BATCH);
            st.inodes.sweep_candidates(n)
        };
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
                let (prefix, leaf) = crate::fs::paths::leaf_of(&key);
                requests.push(Invalidation::Entry { parent: Self::key_dir_ino(&mut st, prefix), name: leaf });
            }
        }
        drop(st);
        let n = requests.len();
        self.invalidator.send(requests);
        n
    }
}
