//! Which stored value of an entry a reader, the kernel or a passthrough
//! backing file holds: the leaf both the inode table (`inode.rs`) and open
//! files (`handle.rs`) name, so that neither imports the other.

use crate::cache::EntryMeta;

/// Identifies one stored value of an entry: a new `set` (by anyone) makes
/// a new version. Used to decide whether the kernel's cached pages and
/// size of a file are still right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentVersion {
    rowid: i64,
    store_time_bits: u64,
    len: u64,
}

impl ContentVersion {
    pub fn of(meta: &EntryMeta, len: u64) -> ContentVersion {
        ContentVersion { rowid: meta.rowid, store_time_bits: meta.store_time.to_bits(), len }
    }
}

/// What a reader's snapshot was when it opened.
#[derive(Clone, Copy, Debug)]
pub struct ReadView {
    pub version: ContentVersion,
    pub len: u64,
    pub store_time: f64,
    pub access_time: f64,
}

/// An inode's backing file as the tree sees it: the version it holds and
/// how many passthrough opens share it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backing {
    pub version: ContentVersion,
    pub opens: u32,
}
