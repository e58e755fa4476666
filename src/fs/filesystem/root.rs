//! The root's names as one datum (docs/SEMANTICS.md, "The tree"): what is
//! there, which are listed (`stats`, `settings/` and `ops/` are there but
//! hidden), and which a FanoutCache's root has (no queues, no Flyte task
//! cache, no Flyte 2 tables: "FanoutCache directories").

use std::ffi::OsStr;

use super::DiskCacheFs;
use crate::fs::inode::{FLYTE2_DIR, KEYS_DIR, OPS_DIR, QUEUES_DIR, SETTINGS_DIR, STATS, TAGS_DIR, TASK_DIR};

pub(super) struct RootName {
    pub name: &'static str,
    pub ino: u64,
    /// Shown by `ls`.
    pub listed: bool,
    /// In a FanoutCache's root too.
    pub in_fanout: bool,
}

const fn root(name: &'static str, ino: u64, listed: bool, in_fanout: bool) -> RootName {
    RootName { name, ino, listed, in_fanout }
}

/// In listing order; a listed name's readdir offset is its position + 3.
pub(super) const ROOT_NAMES: [RootName; 8] = [
    root("keys", KEYS_DIR, true, true),
    root("tags", TAGS_DIR, true, true),
    root("queues", QUEUES_DIR, true, false),
    root("task", TASK_DIR, true, false),
    root("flyte2", FLYTE2_DIR, true, false),
    root("stats", STATS, false, true),
    root("settings", SETTINGS_DIR, false, true),
    root("ops", OPS_DIR, false, true),
];

impl DiskCacheFs {
    /// The root's entry called `name`, if this tree's root has it.
    pub(super) fn root_name(&self, name: &OsStr) -> Option<&'static RootName> {
        ROOT_NAMES.iter().find(|r| name == r.name && self.root_has(r))
    }

    /// Whether this tree's root has `entry` (a FanoutCache's lacks some).
    pub(super) fn root_has(&self, entry: &RootName) -> bool {
        entry.in_fanout || !self.store.is_sharded()
    }
}
