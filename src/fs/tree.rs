//! [`Tree`]: what the fuser adapter (`fuse.rs`) asks of a file-system
//! tree, so that one adapter serves both the tree over a store
//! ([`DiskCacheFs`]) and a FanoutCache's tree with its sub-stores beside
//! it ([`crate::fs::substores::WithSubStores`]). Each method is the request of the
//! same name, with the contract documented on `DiskCacheFs`'s method;
//! inode numbers and file handles are the tree's own.

use std::ffi::OsStr;
use std::path::Path;
use std::time::SystemTime;

use crate::fs::error::FsError;
use crate::fs::filesystem::{Attr, DirReplier, DiskCacheFs, FsConfig, OpenFlags, StatFs};
use crate::fs::request_stats::RequestStats;

pub trait Tree: Send + Sync + 'static {
    fn config(&self) -> &FsConfig;
    fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError>;
    /// After a LOOKUP of `name` in `parent` missed: how long the kernel may
    /// keep the miss (filesystem/negatives.rs); `None`: not at all.
    fn negative_ttl(&self, _parent: u64, _name: &OsStr) -> Option<std::time::Duration> {
        None
    }
    /// How the tree has the kernel drop every entry it looked up
    /// (filesystem/negatives.rs); given at mount where the kernel takes it.
    fn set_epoch_bump(&self, _bump: std::sync::Arc<dyn Fn() -> bool + Send + Sync>) {}
    fn forget(&self, ino: u64, nlookup: u64);
    fn getattr(&self, ino: u64) -> Result<Attr, FsError>;
    fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        size: Option<u64>,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> Result<Attr, FsError>;
    fn readdir(&self, ino: u64, offset: u64, plus: bool, out: &mut dyn DirReplier) -> Result<(), FsError>;
    fn mknod_regular(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError>;
    fn mkdir(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError>;
    fn rmdir(&self, parent: u64, name: &OsStr) -> Result<(), FsError>;
    fn unlink(&self, parent: u64, name: &OsStr) -> Result<(), FsError>;
    fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), FsError>;
    fn symlink(&self, parent: u64, name: &OsStr, target: &Path) -> Result<Attr, FsError>;
    fn readlink(&self, ino: u64) -> Result<Vec<u8>, FsError>;
    fn create(
        &self,
        parent: u64,
        name: &OsStr,
        exclusive: bool,
        truncate: bool,
        append: bool,
    ) -> Result<(Attr, u64, OpenFlags), FsError>;
    fn open(&self, ino: u64, write: bool, truncate: bool, append: bool) -> Result<(u64, OpenFlags), FsError>;
    fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, FsError>;
    fn write(&self, ino: u64, fh: u64, offset: u64, data: &[u8]) -> Result<usize, FsError>;
    fn flush(&self, fh: u64) -> Result<(), FsError>;
    fn fsync(&self, fh: u64) -> Result<(), FsError>;
    fn release(&self, fh: u64) -> Result<(), FsError>;
    fn statfs(&self) -> Result<StatFs, FsError>;
    fn getxattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>, FsError>;
    fn listxattr(&self, ino: u64) -> Result<Vec<u8>, FsError>;
    fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], create: bool, replace: bool) -> Result<(), FsError>;
    fn removexattr(&self, ino: u64, name: &OsStr) -> Result<(), FsError>;
    /// How long the kernel may keep `ino`'s name and attributes.
    fn ttl_for(&self, _ino: u64) -> std::time::Duration {
        self.config().ttl
    }
    /// OPENDIR's answer: (the kernel may cache the listing, what it
    /// cached is still right).
    fn listing_cache(&self, _ino: u64) -> (bool, bool) {
        (false, false)
    }
    /// Passthrough accepted (or refused) by the kernel.
    fn set_passthrough(&self, _on: bool) {}
    /// The value file a passthrough open `fh` reads.
    fn backing_file(&self, _fh: u64) -> Option<std::fs::File> {
        None
    }
    /// The kernel could not take `fh` through passthrough.
    fn passthrough_refused(&self, _fh: u64) {}
    /// The length of what a reader of `fh` reads, where fixed at open (a
    /// value's snapshot, a rendering): the size to announce for it, which
    /// a lookup made before the open may not match (a peer replaced the
    /// value in between). `None` for other handles.
    fn content_len(&self, _fh: u64) -> Option<u64> {
        None
    }
    /// Where the adapter counts the requests it serves, for `stats` to
    /// report (request_stats.rs).
    fn set_request_stats(&self, stats: std::sync::Arc<RequestStats>);
    /// One look for other processes' changes (filesystem/watch.rs); false
    /// when the tree is not watched.
    fn watch(&self) -> bool {
        false
    }
}

/// Forwards each request to the inherent method of the same name.
macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(fn $name(&self, $($arg: $ty),*) -> $ret { DiskCacheFs::$name(self, $($arg),*) })*
    };
}

impl Tree for DiskCacheFs {
    forward! {
        config() -> &FsConfig;
        lookup(parent: u64, name: &OsStr) -> Result<Attr, FsError>;
        negative_ttl(parent: u64, name: &OsStr) -> Option<std::time::Duration>;
        set_epoch_bump(bump: std::sync::Arc<dyn Fn() -> bool + Send + Sync>) -> ();
        forget(ino: u64, nlookup: u64) -> ();
        getattr(ino: u64) -> Result<Attr, FsError>;
        setattr(ino: u64, fh: Option<u64>, size: Option<u64>, atime: Option<SystemTime>, mtime: Option<SystemTime>)
            -> Result<Attr, FsError>;
        readdir(ino: u64, offset: u64, plus: bool, out: &mut dyn DirReplier) -> Result<(), FsError>;
        mknod_regular(parent: u64, name: &OsStr) -> Result<Attr, FsError>;
        mkdir(parent: u64, name: &OsStr) -> Result<Attr, FsError>;
        rmdir(parent: u64, name: &OsStr) -> Result<(), FsError>;
        unlink(parent: u64, name: &OsStr) -> Result<(), FsError>;
        rename(parent: u64, name: &OsStr, new_parent: u64, new_name: &OsStr, no_replace: bool)
            -> Result<(), FsError>;
        symlink(parent: u64, name: &OsStr, target: &Path) -> Result<Attr, FsError>;
        readlink(ino: u64) -> Result<Vec<u8>, FsError>;
        create(parent: u64, name: &OsStr, exclusive: bool, truncate: bool, append: bool)
            -> Result<(Attr, u64, OpenFlags), FsError>;
        open(ino: u64, write: bool, truncate: bool, append: bool) -> Result<(u64, OpenFlags), FsError>;
        read(ino: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, FsError>;
        write(ino: u64, fh: u64, offset: u64, data: &[u8]) -> Result<usize, FsError>;
        flush(fh: u64) -> Result<(), FsError>;
        fsync(fh: u64) -> Result<(), FsError>;
        release(fh: u64) -> Result<(), FsError>;
        statfs() -> Result<StatFs, FsError>;
        getxattr(ino: u64, name: &OsStr) -> Result<Vec<u8>, FsError>;
        listxattr(ino: u64) -> Result<Vec<u8>, FsError>;
        setxattr(ino: u64, name: &OsStr, value: &[u8], create: bool, replace: bool) -> Result<(), FsError>;
        removexattr(ino: u64, name: &OsStr) -> Result<(), FsError>;
        ttl_for(ino: u64) -> std::time::Duration;
        watch() -> bool;
        listing_cache(ino: u64) -> (bool, bool);
        set_passthrough(on: bool) -> ();
        backing_file(fh: u64) -> Option<std::fs::File>;
        content_len(fh: u64) -> Option<u64>;
        passthrough_refused(fh: u64) -> ();
        set_request_stats(stats: std::sync::Arc<RequestStats>) -> ();
    }
}
