//! The mount's side of the remote tier (`mount --remote`,
//! src/remote/tier.rs): which names a miss asks the remote for, and
//! `ops/remote`. A lookup in `keys/` or `task/T/V/` that finds nothing, and
//! a `.resolve` whose key has no entry, ask [`RemoteTier::fetch`] with the
//! tables unlocked (the fetch is bounded by the remote's deadline) and look
//! again when it stored the entry.

use std::ffi::OsStr;
use std::sync::Arc;

use crate::cache::{Key, Value};
use crate::fs::error::FsError;
use crate::fs::inode::is_view_ino;
use crate::remote::{Fetched, RemoteTier};

use super::views::Node;
use super::{Attr, DiskCacheFs};

impl DiskCacheFs {
    /// Gives the tree its remote tier (once, before the mount serves).
    /// The directories of the shared prefixes (`--remote-prefix team/`)
    /// exist from the start, as if made by mkdir, so that a path into one
    /// reaches the miss of its key on a machine that has none yet. (A
    /// deeper directory shows once a key under it is here.)
    pub fn set_remote(&self, tier: Arc<RemoteTier>) {
        let mut st = self.tables();
        for prefix in tier.shared_prefixes() {
            for (i, _) in prefix.match_indices('/') {
                st.made_dirs.insert(prefix[..=i].to_string());
            }
        }
        drop(st);
        let _ = self.remote.set(tier);
    }

    pub(super) fn remote(&self) -> Option<&RemoteTier> {
        self.remote.get().map(|t| &**t)
    }

    /// The key a missing name stands for, if a miss of it may ask the
    /// remote: a key's file in `keys/`, an entry (or its `.json`) in
    /// `task/T/V/`.
    fn missing_key(&self, parent: u64, name: &OsStr) -> Option<Key> {
        if Self::is_key_dir(parent) {
            return self.key_of_name(parent, name).ok();
        }
        if is_view_ino(parent) {
            let st = self.tables();
            return match Self::classify(&st, parent, name.to_str()?) {
                Ok(Node::TaskEntry { key } | Node::TaskJson { key }) => Some(Key::Str(key)),
                _ => None,
            };
        }
        None
    }

    /// A lookup that found nothing: asks the remote, and looks again if it
    /// had the entry.
    pub(super) fn lookup_after_miss(
        &self,
        parent: u64,
        name: &OsStr,
        miss: FsError,
        again: impl FnOnce() -> Result<Attr, FsError>,
    ) -> Result<Attr, FsError> {
        let Some(tier) = self.remote() else { return Err(miss) };
        let Some(key) = self.missing_key(parent, name) else { return Err(miss) };
        match tier.fetch(&key) {
            Fetched::Stored(_) | Fetched::Local => again(),
            Fetched::Miss => Err(miss),
        }
    }

    /// A `.resolve` whose key has no entry: the remote's outputs, if it
    /// has them (stored in the cache on the way).
    pub(super) fn resolve_after_miss(&self, key: &str) -> Option<Vec<u8>> {
        match self.remote()?.fetch(&Key::Str(key.to_string())) {
            Fetched::Stored(Value::Bytes(outputs)) => Some(outputs),
            _ => None,
        }
    }

    /// `ops/remote`'s content: the tier's state and counters (JSON).
    pub(super) fn remote_status_text(&self) -> Vec<u8> {
        match self.remote() {
            Some(t) => crate::fs::control::stats_text(&t.status()),
            None => b"null\n".to_vec(),
        }
    }
}
