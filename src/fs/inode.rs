//! Inodes: what an inode number refers to, and when it is reused.
//!
//! - Inodes 1 (the root), 2 (`keys/`), 3 (`stats`) and 4 (`settings/`) are
//!   fixed; a setting's file gets one from 100 up, kept for the daemon's
//!   life.
//! - A key's file gets a number from 1000 up the first time the kernel
//!   learns its name (lookup, create, readdirplus), and keeps it while the
//!   kernel holds a reference (`nlookup` > 0) or a file handle is open on
//!   it. `forget` drops references; an inode with none is removed, and its
//!   number is never reused within the daemon's life.
//! - The inode of a key follows the key through renames; an unlinked inode
//!   keeps living (for open handles) but is no longer reachable by name.

use std::collections::HashMap;

use crate::cache::{Key, Scalar, ValueType};
use crate::fs::version::{Backing, ContentVersion, ReadView};

pub const ROOT: u64 = 1;
pub const KEYS_DIR: u64 = 2;
/// `stats` in the root.
pub const STATS: u64 = 3;
/// `settings/` in the root.
pub const SETTINGS_DIR: u64 = 4;
/// `settings/<name>` files get 100, 101, ... in the order first seen.
pub const FIRST_SETTING: u64 = 100;
pub const FIRST_KEY_INODE: u64 = 1000;
/// `tags/` in the root.
pub const TAGS_DIR: u64 = 5;
/// `tags/T/` directories: this plus their index in the daemon's tag table.
pub const TAG_DIR_BASE: u64 = 1 << 40;
/// `tags/T/NAME` links: this plus their index in the daemon's link table.
pub const TAG_LINK_BASE: u64 = 1 << 41;
/// `queues/` in the root.
pub const QUEUES_DIR: u64 = 6;
/// `task/` in the root.
pub const TASK_DIR: u64 = 7;
/// `ops/` in the root (hidden), its files, and `ops/incr/`, `ops/decr/`.
pub const OPS_DIR: u64 = 8;
pub const OPS_EXPIRE: u64 = 9;
pub const OPS_CULL: u64 = 10;
pub const OPS_CLEAR: u64 = 11;
pub const OPS_CHECK: u64 = 12;
pub const INCR_DIR: u64 = 13;
pub const DECR_DIR: u64 = 14;
/// `queues/P/`, `task/T/`, `task/T/V/`: this plus their index in the
/// daemon's view-directory table.
pub const VIEW_DIR_BASE: u64 = 1 << 42;
/// Everything in those directories and in `ops/incr/`, `ops/decr/`: this
/// plus the index of (directory, name) in the daemon's view-node table.
pub const VIEW_NODE_BASE: u64 = 1 << 43;
pub const VIEW_END: u64 = 1 << 44;
/// `flyte2/` in the root and its `.runs/` (filesystem/flyte2.rs).
pub const FLYTE2_DIR: u64 = 15;
pub const FLYTE2_RUNS_DIR: u64 = 16;
/// `ops/remote` (a mount with `--remote`; filesystem/remote.rs).
pub const OPS_REMOTE: u64 = 17;
/// `flyte2/.stale/` (filesystem/flyte2.rs).
pub const FLYTE2_STALE_DIR: u64 = 18;
/// Files in those two: this plus their index in the daemon's table.
pub const FLYTE2_NODE_BASE: u64 = 1 << 44;
pub const FLYTE2_END: u64 = 1 << 45;
/// Directories under `keys/` (str keys with a `/`): this plus their index
/// in the daemon's directory table (paths.rs).
pub const KEY_DIR_BASE: u64 = 1 << 45;
pub const KEY_DIR_END: u64 = 1 << 46;

/// What an inode number refers to: the one place that knows the ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// The root, `keys/`, `settings/` or `tags/`.
    FixedDir,
    Stats,
    /// `settings/NAME`.
    Setting,
    /// A key's file (in `keys/` or one of its directories).
    Key,
    /// A directory under `keys/`.
    KeyDir,
    /// `tags/T/`.
    TagDir,
    /// `tags/T/NAME`.
    TagLink,
    /// `queues/`, `task/`, `ops/` and everything in them (views.rs).
    View,
    /// `flyte2/` and everything in it.
    Flyte2,
    /// A number this daemon never hands out.
    Unknown,
}

pub fn classify(ino: u64) -> Node {
    match ino {
        ROOT | KEYS_DIR | SETTINGS_DIR | TAGS_DIR => Node::FixedDir,
        STATS => Node::Stats,
        QUEUES_DIR..=DECR_DIR | OPS_REMOTE => Node::View,
        FLYTE2_DIR | FLYTE2_RUNS_DIR | FLYTE2_STALE_DIR => Node::Flyte2,
        FIRST_SETTING..FIRST_KEY_INODE => Node::Setting,
        FIRST_KEY_INODE..TAG_DIR_BASE => Node::Key,
        TAG_DIR_BASE..TAG_LINK_BASE => Node::TagDir,
        TAG_LINK_BASE..VIEW_DIR_BASE => Node::TagLink,
        VIEW_DIR_BASE..VIEW_END => Node::View,
        FLYTE2_NODE_BASE..FLYTE2_END => Node::Flyte2,
        KEY_DIR_BASE..KEY_DIR_END => Node::KeyDir,
        _ => Node::Unknown,
    }
}

/// `tags/T/` and its links.
pub fn is_tag_ino(ino: u64) -> bool {
    matches!(classify(ino), Node::TagDir | Node::TagLink)
}

/// The queues/, task/ and ops/ views.
pub fn is_view_ino(ino: u64) -> bool {
    classify(ino) == Node::View
}

/// Inodes of keys' files.
pub fn is_key_ino(ino: u64) -> bool {
    classify(ino) == Node::Key
}

/// Attribute changes made while a file is being written, applied when its
/// content is committed (rsync sets xattrs on its still-open temporary file).
#[derive(Clone, Debug, Default)]
pub struct Pending {
    pub expire_time: Option<Option<f64>>,
    pub tag: Option<Option<Scalar>>,
    pub value_type: Option<ValueType>,
    /// store_time, access_time from utimensat.
    pub times: Option<(Option<f64>, Option<f64>)>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.expire_time.is_none() && self.tag.is_none() && self.value_type.is_none() && self.times.is_none()
    }
}

#[derive(Debug)]
pub struct KeyInode {
    pub name: String,
    pub key: Key,
    /// References the kernel holds (lookups not yet forgotten).
    pub nlookup: u64,
    /// Open file handles on this inode.
    pub open_handles: u32,
    /// The content version whose size (and pages) the kernel last got.
    pub kernel_version: Option<ContentVersion>,
    /// Created through the mount and not yet committed: exists only here.
    pub pending_create: bool,
    /// When it was created through the mount: the time its attributes
    /// show, and an empty commit stores, so that a file closed unwritten
    /// keeps the times the kernel got at create.
    pub created_at: Option<f64>,
    /// Removed by unlink or replaced by a rename: commits are dropped.
    pub unlinked: bool,
    /// Made by a create through the mount (committed or not): renamed over
    /// an existing key, it is a rewrite of that key (docs/SEMANTICS.md,
    /// "Edits keep the entry's type, tag and expiry").
    pub made_here: bool,
    /// The writer set or removed a `user.diskcache.*` attribute on it
    /// since it was made: what it set is then the whole truth, and nothing
    /// is kept from an entry it replaces (an `rsync -aX` restore).
    pub attrs_set: bool,
    /// The type the next commit keeps if the content is valid for it: of
    /// the entry this file replaced by a rename while it was still being
    /// written, or of the entry an empty commit (the start of `>`) could
    /// not keep.
    pub inherited_type: Option<ValueType>,
    /// The `store_time` (bits) of the version this inode's last commit
    /// stored: `made_here` and `inherited_type` hold only while the entry
    /// is still that version (a peer's set since makes them moot).
    pub committed_version: Option<u64>,
    pub pending: Pending,
    /// A peer stored a new version while readers relied on the kernel's
    /// size and pages of this one: the name now leads to a new inode, and
    /// this one keeps showing the readers' version until they are done.
    pub superseded: Option<ReadView>,
    /// The key given by `user.diskcache.key`: a rename of this file to
    /// that key's `%sha256:` name stores it under that key.
    pub intended_key: Option<Key>,
    /// The backing file its passthrough opens share
    /// (filesystem/passthrough.rs).
    pub backing: Option<Backing>,
    /// Holds a pinned read handle (filesystem/unopened.rs): one of its
    /// `open_handles` that does not keep the kernel from forgetting it.
    pub pinned: bool,
    /// The kernel was asked to forget it (not asked again until it answers
    /// or looks the name up anew).
    pub forget_requested: bool,
}

#[derive(Debug, Default)]
pub struct InodeTable {
    inodes: HashMap<u64, KeyInode>,
    /// Reachable names in `keys/`.
    by_name: HashMap<String, u64>,
    next: u64,
    /// Inodes in the order they were made: where forget candidates come from.
    age: std::collections::VecDeque<u64>,
    /// Inodes the kernel was asked to forget and has not answered for.
    forget_pending: usize,
}

impl InodeTable {
    pub fn new() -> InodeTable {
        InodeTable {
            inodes: HashMap::new(),
            by_name: HashMap::new(),
            next: FIRST_KEY_INODE,
            age: Default::default(),
            forget_pending: 0,
        }
    }

    pub fn get(&self, ino: u64) -> Option<&KeyInode> {
        self.inodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut KeyInode> {
        self.inodes.get_mut(&ino)
    }

    pub fn by_name(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    /// Whether the file named `name` was created through the mount and is
    /// not committed yet (it exists only here).
    pub fn is_pending_create(&self, name: &str) -> bool {
        self.by_name(name).and_then(|i| self.get(i)).is_some_and(|i| i.pending_create)
    }

    /// The inode for a name in `keys/`, made if new.
    pub fn ensure(&mut self, name: &str, key: &Key) -> u64 {
        if let Some(ino) = self.by_name(name) {
            return ino;
        }
        let ino = self.next;
        self.next += 1;
        self.inodes.insert(
            ino,
            KeyInode {
                name: name.to_string(),
                key: key.clone(),
                nlookup: 0,
                open_handles: 0,
                kernel_version: None,
                pending_create: false,
                created_at: None,
                unlinked: false,
                made_here: false,
                attrs_set: false,
                inherited_type: None,
                committed_version: None,
                pending: Pending::default(),
                superseded: None,
                intended_key: None,
                pinned: false,
                backing: None,
                forget_requested: false,
            },
        );
        self.by_name.insert(name.to_string(), ino);
        self.age.push_back(ino);
        ino
    }

    /// The keys of up to `n` of the oldest inodes that could be forgotten: the
    /// kernel may drop them (nobody has them open, nothing is pending).
    /// Each is moved to the back, so repeated calls walk the whole table.
    pub fn forget_candidates(&mut self, n: usize) -> Vec<Key> {
        let mut out = Vec::new();
        for _ in 0..self.age.len().min(n * 4) {
            let Some(ino) = self.age.pop_front() else { break };
            let Some(inode) = self.inodes.get_mut(&ino) else { continue };
            self.age.push_back(ino);
            if inode.open_handles == u32::from(inode.pinned)
                && !inode.pending_create
                && !inode.forget_requested
                && inode.superseded.is_none()
                && inode.nlookup > 0
            {
                inode.forget_requested = true;
                self.forget_pending += 1;
                out.push(inode.key.clone());
                if out.len() == n {
                    break;
                }
            }
        }
        out
    }

    /// Up to `n` of the oldest inodes that nothing but the kernel's name
    /// holds (no open handle, pin, pending create or change, no request
    /// to forget under way), with their keys: what the sweep checks
    /// against the cache (filesystem/sweep.rs). Each is moved to the back.
    pub fn sweep_candidates(&mut self, n: usize) -> Vec<(u64, Key)> {
        let mut out = Vec::new();
        for _ in 0..self.age.len().min(n) {
            let Some(ino) = self.age.pop_front() else { break };
            let Some(inode) = self.inodes.get(&ino) else { continue };
            self.age.push_back(ino);
            if Self::idle(inode) && self.by_name.get(&inode.name) == Some(&ino) {
                out.push((ino, inode.key.clone()));
            }
        }
        out
    }

    /// Marks `ino` as asked to be forgotten if it is still idle and still
    /// stands for `key`; whether it was.
    pub fn request_forget_if_idle(&mut self, ino: u64, key: &Key) -> bool {
        let Some(inode) = self.inodes.get_mut(&ino) else { return false };
        if !Self::idle(inode) || &inode.key != key || self.by_name.get(&inode.name) != Some(&ino) {
            return false;
        }
        inode.forget_requested = true;
        self.forget_pending += 1;
        true
    }

    fn idle(inode: &KeyInode) -> bool {
        inode.open_handles == 0
            && !inode.pinned
            && !inode.pending_create
            && !inode.forget_requested
            && !inode.unlinked
            && inode.superseded.is_none()
            && inode.intended_key.is_none()
            && inode.pending.is_empty()
            && inode.nlookup > 0
    }

    /// Every inode, with its number.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &KeyInode)> {
        self.inodes.iter().map(|(&ino, i)| (ino, i))
    }

    /// Makes a name unreachable (unlink, or replaced by a rename).
    pub fn unlink_name(&mut self, name: &str) {
        if let Some(ino) = self.by_name.remove(name) {
            if let Some(inode) = self.inodes.get_mut(&ino) {
                inode.unlinked = true;
                inode.pending_create = false;
            }
            self.drop_if_unused(ino);
        }
    }

    /// Moves an inode to a new name (rename); the new name must be free.
    pub fn rename(&mut self, ino: u64, new_name: &str, new_key: &Key) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            self.by_name.remove(&inode.name);
            inode.name = new_name.to_string();
            inode.key = new_key.clone();
            inode.intended_key = None;
            self.by_name.insert(new_name.to_string(), ino);
        }
    }

    /// Takes the name away from an inode whose readers keep an older
    /// version (see [`KeyInode::superseded`]); the next lookup of the name
    /// makes a new inode.
    pub fn supersede(&mut self, ino: u64, view: ReadView) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.superseded = Some(view);
            if self.by_name.get(&inode.name) == Some(&ino) {
                self.by_name.remove(&inode.name);
            }
        }
    }

    pub fn forget(&mut self, ino: u64, n: u64) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.nlookup = inode.nlookup.saturating_sub(n);
            if std::mem::take(&mut inode.forget_requested) {
                self.forget_pending -= 1;
            }
        }
        self.drop_if_unused(ino);
    }

    /// The kernel learned the name again (a lookup): one more reference,
    /// and any request to forget it is void.
    pub fn looked_up(&mut self, ino: u64) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.nlookup += 1;
            if std::mem::take(&mut inode.forget_requested) {
                self.forget_pending -= 1;
            }
        }
    }

    /// Inodes past `max` that no request to forget covers yet: how many
    /// more to ask the kernel to forget.
    pub fn excess_over(&self, max: usize) -> usize {
        self.inodes.len().saturating_sub(max).saturating_sub(self.forget_pending)
    }

    /// Removes an inode nothing refers to any more.
    pub fn drop_if_unused(&mut self, ino: u64) {
        let unused = self.inodes.get(&ino).is_some_and(|i| i.nlookup == 0 && i.open_handles == 0);
        if unused && let Some(inode) = self.inodes.remove(&ino) {
            if inode.forget_requested {
                self.forget_pending -= 1;
            }
            if self.by_name.get(&inode.name) == Some(&ino) {
                self.by_name.remove(&inode.name);
            }
            // `age` drops gone inodes lazily, in forget_candidates, which
            // runs only past --max-inodes: below it, compact it once it is
            // twice the table, or it would keep every inode ever made.
            if self.age.len() > 2 * self.inodes.len() + 1024 {
                let inodes = &self.inodes;
                self.age.retain(|ino| inodes.contains_key(ino));
                self.age.shrink_to(2 * self.age.len() + 1024);
            }
        }
    }

    /// The length of the walk over every inode (the age queue, which may
    /// still hold some gone ones).
    pub fn age_len(&self) -> usize {
        self.age.len()
    }

    /// Inodes asked to be forgotten that the kernel has not answered for.
    pub fn forget_pending(&self) -> usize {
        self.forget_pending
    }

    pub fn len(&self) -> usize {
        self.inodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inodes.is_empty()
    }
}
