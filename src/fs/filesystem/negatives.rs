//! Negative entries: a LOOKUP in `keys/` that finds nothing is answered
//! with an entry of inode 0 and the mount's timeout (`--attr-timeout`,
//! 1 s), so the kernel keeps the miss that long and asking again for the
//! same missing name (an import path, a tool probing for a key, a cache
//! checked before it is filled) costs no round trip (docs/SEMANTICS.md,
//! "Negative entries").
//!
//! What keeps it right:
//! - Another process's new key shows within the timeout, as every other
//!   change of theirs does.
//! - A name made through the mount by the kernel's own operation on that
//!   name (CREATE, MKDIR, RENAME onto it) replaces the kernel's negative
//!   entry: nothing to do but forget it here ([`DiskCacheFs::negative_replaced`]).
//! - A key made through the mount by another path (`ops/incr/NAME`,
//!   `queues/`, `task/`, a tag's rename, a `%` name of the same key) must
//!   show once the write's `close()` returns: every commit looks for its
//!   keys (and their directories) among the misses given and, for one, has
//!   the kernel drop every entry it looked up before
//!   (`FUSE_NOTIFY_INC_EPOCH`, Linux 6.16; no lock in the kernel, sent
//!   before the commit's request is answered). Dropping every entry costs
//!   a LOOKUP per name at its next use, which is why it is sent only then.
//! - A LOOKUP that raced with a commit: the kernel reads its epoch before
//!   sending LOOKUP, so an epoch raised meanwhile covers it; a miss read
//!   before a commit whose check ran before the miss was noted would not
//!   be covered, so a miss is kept only if no commit happened since the
//!   LOOKUP began (`commits`), else answered ENOENT as before.
//!
//! Only plain names (UTF-8, no `%`: every escaped or hashed name has one)
//! are kept, at most [`MAX_NEGATIVES`] at a time; read-write mounts only
//! where the kernel takes `FUSE_NOTIFY_INC_EPOCH` (tried at mount).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::DiskCacheFs;
use crate::cache::Key;

/// Misses kept at once; past it, misses are answered ENOENT uncached.
pub(super) const MAX_NEGATIVES: usize = 4096;

/// The misses given to the kernel, by path under `keys/`, with when the
/// kernel stops trusting each.
#[derive(Default)]
pub(super) struct Negatives {
    given: HashMap<String, Instant>,
}

impl Negatives {
    fn prune(&mut self, now: Instant) {
        self.given.retain(|_, until| *until > now);
    }
}

/// A LOOKUP that may be answered with a negative entry: where, and the
/// commits counted when it began.
pub(super) struct NegativeCandidate {
    parent: u64,
    name: String,
    commits: u64,
}

/// Whether the kernel may keep a miss of `name` (see the module doc).
fn plain(name: &OsStr) -> Option<&str> {
    let name = name.to_str()?;
    (!name.is_empty() && name != "." && name != ".." && !name.contains('%')).then_some(name)
}

impl DiskCacheFs {
    /// Has the kernel raise its epoch, in this thread (see the module doc).
    pub fn set_epoch_bump(&self, bump: std::sync::Arc<dyn Fn() -> bool + Send + Sync>) {
        let _ = self.epoch_bump.set(bump);
    }

    fn negatives_allowed(&self) -> bool {
        !self.config.ttl.is_zero()
            && !self.negatives_off.load(Ordering::Relaxed)
            && (self.config.read_only || self.epoch_bump.get().is_some())
    }

    /// Before a LOOKUP of `name` in the directory `parent` of `keys/`: what
    /// to note if it misses.
    pub(super) fn negative_candidate(&self, parent: u64, name: &OsStr) -> Option<NegativeCandidate> {
        if !Self::is_key_dir(parent) || !self.negatives_allowed() {
            return None;
        }
        let name = plain(name)?.to_string();
        Some(NegativeCandidate { parent, name, commits: self.commits.load(Ordering::SeqCst) })
    }

    /// The LOOKUP missed: kept as a negative entry unless a commit came
    /// since it began.
    pub(super) fn note_miss(&self, candidate: NegativeCandidate) {
        let Ok(prefix) = Self::key_dir_prefix(&self.tables(), candidate.parent) else { return };
        let mut negatives = self.negatives.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if negatives.given.len() >= MAX_NEGATIVES {
            negatives.prune(now);
        }
        if self.commits.load(Ordering::SeqCst) != candidate.commits || negatives.given.len() >= MAX_NEGATIVES {
            return;
        }
        negatives.given.insert(format!("{prefix}{}", candidate.name), now + self.config.ttl);
        self.negative_counts.0.fetch_add(1, Ordering::Relaxed);
    }

    /// How long the kernel may keep the miss of `name` in `parent`: what
    /// is left of the mount's timeout since it was noted (see
    /// [`Self::note_miss`]), so the kernel never keeps it past the time
    /// commits look for it.
    pub fn negative_ttl(&self, parent: u64, name: &OsStr) -> Option<Duration> {
        if !Self::is_key_dir(parent) || !self.negatives_allowed() {
            return None;
        }
        let name = plain(name)?;
        let prefix = Self::key_dir_prefix(&self.tables(), parent).ok()?;
        let path = format!("{prefix}{name}");
        let negatives = self.negatives.lock().unwrap_or_else(|e| e.into_inner());
        let until = *negatives.given.get(&path)?;
        until.checked_duration_since(Instant::now())
    }

    /// The kernel's own operation on `name` in `parent` (CREATE, MKDIR,
    /// RENAME onto it) replaces its negative entry: forgotten here; whether
    /// it was kept.
    pub(super) fn negative_replaced(&self, parent: u64, name: &OsStr) -> bool {
        if !Self::is_key_dir(parent) {
            return false;
        }
        let Some(name) = plain(name) else { return false };
        let Ok(prefix) = Self::key_dir_prefix(&self.tables(), parent) else { return false };
        let mut negatives = self.negatives.lock().unwrap_or_else(|e| e.into_inner());
        !negatives.given.is_empty() && negatives.given.remove(&format!("{prefix}{name}")).is_some()
    }

    /// After a commit of `keys` (`None`: not known before it ran): if the
    /// kernel may hold a miss of one of them or of a directory above one,
    /// every entry it holds is made stale before the commit's request is
    /// answered.
    pub(super) fn negatives_after_commit(&self, keys: Option<&[&Key]>) {
        self.commits.fetch_add(1, Ordering::SeqCst);
        let mut negatives = self.negatives.lock().unwrap_or_else(|e| e.into_inner());
        if negatives.given.is_empty() {
            return;
        }
        negatives.prune(Instant::now());
        // The kept misses this commit may have made wrong: of its keys, and
        // of the directories above them.
        let hits: Vec<String> = match keys {
            None => negatives.given.keys().cloned().collect(),
            Some(keys) => keys
                .iter()
                .filter_map(|key| match key {
                    Key::Str(s) => Some(s),
                    // Their names are escaped (`%`): never kept.
                    _ => None,
                })
                .flat_map(|s| s.match_indices('/').map(|(i, _)| &s[..i]).chain([s.as_str()]))
                .filter(|path| negatives.given.contains_key(*path))
                .map(str::to_string)
                .collect(),
        };
        drop(negatives);
        // Only one that now names something is wrong: a commit that tags,
        // deletes or leaves a key missing (a tag link made before its key,
        // as rsync makes them) changes nothing the kernel keeps.
        if !hits.iter().any(|path| self.names_something(path)) {
            return;
        }
        self.raise_epoch();
    }

    /// Whether `path` under `keys/` is a key or a directory now (a
    /// database error counts as yes: the epoch is raised).
    fn names_something(&self, path: &str) -> bool {
        let Ok(c) = self.reader() else { return true };
        let dir = format!("{path}/");
        match c.entry_meta(&Key::Str(path.to_string())) {
            Ok(Some(_)) => true,
            Ok(None) => c.has_live_str_key_in(&dir, &crate::fs::paths::prefix_end(&dir)).unwrap_or(true),
            Err(_) => true,
        }
    }

    /// Has the kernel drop every entry it looked up, now.
    pub(super) fn raise_epoch(&self) {
        log::debug!("a kept miss may hide a key now: every entry the kernel holds made stale");
        self.negatives.lock().unwrap_or_else(|e| e.into_inner()).given.clear();
        self.negative_counts.1.fetch_add(1, Ordering::Relaxed);
        match self.epoch_bump.get() {
            Some(bump) if bump() => {}
            // Read-only mounts commit nothing; a failed notification
            // leaves misses kept up to the timeout: none kept from now on.
            _ => {
                log::warn!("the kernel did not take FUSE_NOTIFY_INC_EPOCH: no more negative entries");
                self.negatives_off.store(true, Ordering::Relaxed);
            }
        }
    }

    /// (misses kept so far, times every entry was made stale): `stats`.
    pub(super) fn negative_stats(&self) -> (u64, u64) {
        (self.negative_counts.0.load(Ordering::Relaxed), self.negative_counts.1.load(Ordering::Relaxed))
    }
}
