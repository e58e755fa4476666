//! The vocabulary between the tree and its front ends (the FUSE adapter,
//! the mount): configuration, attributes, open flags, invalidations,
//! listings and `statfs`. Free of fuser, so front ends only translate.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

/// How the tree behaves; built by the CLI (which owns clap).
#[derive(Clone, Debug)]
pub struct FsConfig {
    pub read_only: bool,
    /// How long the kernel may trust names and attributes (peer changes
    /// show within this time).
    pub ttl: Duration,
    pub uid: u32,
    pub gid: u32,
    /// Most key inodes kept: past it, the kernel is asked to forget the
    /// oldest unused ones (an inode must live while the kernel holds it).
    pub max_inodes: usize,
    /// READ comes without OPEN, FLUSH or RELEASE (a read-only mount
    /// answers OPEN with ENOSYS): see filesystem/unopened.rs.
    pub reads_unopened: bool,
    /// Readers of value files read through passthrough where the kernel
    /// allows it (filesystem/passthrough.rs).
    pub passthrough: bool,
    /// How long the kernel may trust names and attributes in `keys/` when
    /// the change watcher invalidates them (filesystem/watch.rs); `ttl`
    /// elsewhere.
    pub watched_ttl: Duration,
    /// A `.resolve` answers a miss for an entry whose outputs name local
    /// files that are gone (`--stale-as-miss`; flyte/stale.rs).
    pub stale_as_miss: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File,
    Symlink,
}

/// A file's attributes, as `stat` shows them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

/// How the kernel should treat an opened file's pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenFlags {
    /// The kernel's cached pages are of this very content: keep them.
    pub keep_cache: bool,
    /// The kernel's idea of the size may be stale: bypass the page cache.
    pub direct_io: bool,
    /// Closing needs no FLUSH (a reader).
    pub no_flush: bool,
    /// The kernel reads the handle's value file itself
    /// (filesystem/passthrough.rs).
    pub passthrough: bool,
}

/// What the kernel is asked to drop from its caches. Sent to a thread of
/// its own (mount.rs): a notification from inside a request could wait on
/// a lock the kernel holds for that request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// The name `name` in directory `parent` (`inval_entry`): the next
    /// path walk looks it up again.
    Entry { parent: u64, name: String },
    /// An inode's attributes and cached pages, or a directory's cached
    /// listing (`inval_inode`).
    Inode(u64),
}

/// Receives directory entries; returns true when full (stop adding).
pub trait DirReplier {
    fn add(&mut self, ino: u64, next_offset: u64, kind: Kind, name: &OsStr, attr: Option<&Attr>) -> bool;
}

/// A `statfs` answer.
#[derive(Clone, Copy, Debug)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}
