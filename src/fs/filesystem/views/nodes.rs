//! The attributes and content of the views' nodes: queue items and task
//! entries as links, task entries' JSON, counters' text.

use super::*;
use crate::cache::EntryMeta;
use crate::flyte::stale::flytekit_value_missing;

impl DiskCacheFs {
    pub(super) fn view_dir_attr(&self, ino: u64) -> Attr {
        self.dir_attr(ino)
    }

    pub(super) fn view_link_attr(&self, ino: u64, target: &str, store_time: Option<f64>) -> Attr {
        self.symlink_attr(ino, target.len(), store_time)
    }

    pub(super) fn view_file_attr(&self, ino: u64, len: usize, writable: bool) -> Attr {
        self.control_attr(ino, len, writable)
    }

    pub(super) fn queue_link_target(key: &Key) -> String {
        format!("../../keys/{}", crate::fs::paths::key_path(key))
    }

    pub(super) fn task_link_target(key: &str) -> String {
        format!("../../../keys/{}", crate::fs::paths::key_path(&Key::Str(key.to_string())))
    }

    pub(super) fn stale_link_target(key: &str) -> String {
        format!("../{}", Self::task_link_target(key))
    }

    /// The paths gone that flytekit entry `key`'s outputs name (none when it
    /// is fresh, absent, or not outputs).
    pub(super) fn stale_paths(st: &State, key: &str) -> Result<Vec<std::path::PathBuf>, FsError> {
        let what = || format!("keys/{}", str_name(key));
        let value = st.cache.get(&Key::Str(key.to_string())).map_err(|e| FsError::cache(what(), e))?;
        Ok(value.map_or(Vec::new(), |v| flytekit_value_missing(&v)))
    }

    /// A live entry's columns; `None` when it is not there.
    pub(super) fn entry_meta(st: &State, key: &Key) -> Result<Option<EntryMeta>, FsError> {
        st.cache.entry_meta(key).map_err(|e| FsError::cache(format!("keys/{}", key_to_name(key)), e))
    }

    /// A live entry's store time; `None` when it is not there.
    pub(super) fn store_time(st: &State, key: &Key) -> Result<Option<f64>, FsError> {
        Ok(Self::entry_meta(st, key)?.map(|m| m.store_time))
    }

    /// The JSON rendering of a task entry's outputs (`HASH.json`).
    pub(super) fn task_json(st: &State, key: &str) -> Result<Vec<u8>, FsError> {
        let what = format!("keys/{}", str_name(key));
        let value = st
            .cache
            .get(&Key::Str(key.to_string()))
            .map_err(|e| FsError::cache(what.clone(), e))?
            .ok_or_else(|| FsError::NotFound(what.clone()))?;
        let bytes = match value {
            Value::Bytes(b) => b,
            other => {
                return Err(FsError::InvalidValue {
                    what,
                    reason: format!("a {} value, not serialized outputs", other.type_name()),
                });
            }
        };
        let map = decode_literal_map(&bytes)
            .map_err(|e| FsError::InvalidValue { what: what.clone(), reason: e.to_string() })?;
        let mut text = serde_json::to_vec_pretty(&literal_map_to_json(&map)).unwrap_or_default();
        text.push(b'\n');
        Ok(text)
    }

    /// A node's attributes, `ENOENT` when it does not exist (now).
    pub(super) fn node_attr(&self, st: &mut State, ino: u64, parent: u64, name: &str) -> Result<Attr, FsError> {
        let gone = || FsError::NotFound(name.to_string());
        match Self::classify(st, parent, name)? {
            Node::QueueItem { key } => match Self::store_time(st, &key)? {
                Some(t) => Ok(self.view_link_attr(ino, &Self::queue_link_target(&key), Some(t))),
                None if st.views.restored_links.contains(&ino) => {
                    Ok(self.view_link_attr(ino, &Self::queue_link_target(&key), None))
                }
                None => Err(gone()),
            },
            // An entry's link is the size of its entry's value (its outputs),
            // not of its target's text: so `du -sb task/T` is the task's
            // bytes (docs/FLYTE.md, "Size per task"). The kernel does not
            // cache this mount's links (no FUSE_CACHE_SYMLINKS), the one
            // place it would read a link's size as its length.
            Node::TaskEntry { key } => match Self::entry_meta(st, &Key::Str(key.clone()))? {
                Some(m) => {
                    let mut attr = self.view_link_attr(ino, &Self::task_link_target(&key), Some(m.store_time));
                    attr.size = m.content_len();
                    Ok(attr)
                }
                None if st.views.restored_links.contains(&ino) => {
                    Ok(self.view_link_attr(ino, &Self::task_link_target(&key), None))
                }
                None => Err(gone()),
            },
            Node::StaleEntry { key } => match Self::entry_meta(st, &Key::Str(key.clone()))? {
                Some(m) if !Self::stale_paths(st, &key)?.is_empty() => {
                    let mut attr = self.view_link_attr(ino, &Self::stale_link_target(&key), Some(m.store_time));
                    attr.size = m.content_len();
                    Ok(attr)
                }
                _ => Err(gone()),
            },
            Node::TaskJson { key } => Ok(self.view_file_attr(ino, Self::task_json(st, &key)?.len(), false)),
            Node::Pull { .. } => Ok(self.view_file_attr(ino, 0, false)),
            Node::PushFile { .. } => {
                let pushing = st.handles.values().any(|h| matches!(h, Handle::Push { ino: i, .. } if *i == ino));
                if pushing { Ok(self.view_file_attr(ino, 0, true)) } else { Err(gone()) }
            }
            Node::Resolver { .. } => Ok(self.view_file_attr(ino, 0, true)),
            Node::Counter { key, .. } => {
                let len = match Self::counter_text(st, &key) {
                    Ok(text) => text.len(),
                    Err(FsError::NotFound(_)) => 0,
                    Err(e) => return Err(e),
                };
                Ok(self.view_file_attr(ino, len, true))
            }
        }
    }

    /// A counter's value as its key's file shows it.
    pub(super) fn counter_text(st: &State, key: &Key) -> Result<Vec<u8>, FsError> {
        let what = format!("keys/{}", key_to_name(key));
        let value = st.cache.get(key).map_err(|e| FsError::cache(what.clone(), e))?.ok_or(FsError::NotFound(what))?;
        Ok(value_content(&value))
    }
}
