//! The `fuser::Filesystem` adapter. It only translates: each request
//! becomes one call into a [`Tree`] (the tree over one cache,
//! `DiskCacheFs`, or the union over a FanoutCache's shards), and its result
//! one reply. Every error is logged once, here, where it becomes an errno,
//! and every request is counted and timed here (request_stats.rs).

use std::ffi::OsStr;
use std::io;
use std::time::{Instant, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner,
    OpenAccMode, OpenFlags as FuseOpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};

use crate::fs::error::{FsError, errno_name};
use crate::fs::filesystem::{Attr, DirReplier, Kind, OpenFlags};
use crate::fs::pickle_writers::PickleWriters;
use crate::fs::request_stats::{Operation, RequestStats};
use crate::fs::tree::Tree;

pub struct FuseAdapter<T: Tree> {
    fs: std::sync::Arc<T>,
    requests: std::sync::Arc<RequestStats>,
    backings: std::sync::Mutex<Backings>,
    /// Who may store pickles (pickle_writers.rs): the one policy that
    /// needs the request's uid.
    pickle_writers: PickleWriters,
}

impl<T: Tree> FuseAdapter<T> {
    pub fn new(
        fs: std::sync::Arc<T>,
        requests: std::sync::Arc<RequestStats>,
        pickle_writers: PickleWriters,
    ) -> FuseAdapter<T> {
        FuseAdapter { fs, requests, backings: Default::default(), pickle_writers }
    }
}

/// The backing files registered with the kernel for passthrough opens
/// (filesystem/passthrough.rs): the kernel wants one per inode, shared by
/// all its passthrough opens, so each is kept, by inode, until the last
/// of them is released.
#[derive(Default)]
struct Backings {
    by_ino: std::collections::HashMap<u64, (std::sync::Arc<fuser::BackingId>, u32)>,
    /// The inode of each passthrough open.
    by_fh: std::collections::HashMap<u64, u64>,
}

impl<T: Tree> FuseAdapter<T> {
    /// The inode's backing file for passthrough open `fh`, registered if
    /// it has none; `None` when the kernel refuses it (then the open goes
    /// through the daemon, and passthrough is turned off if the refusal
    /// is for good).
    fn backing_for(&self, reply: &ReplyOpen, ino: u64, fh: u64) -> Option<std::sync::Arc<fuser::BackingId>> {
        let mut backings = self.backings.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((id, opens)) = backings.by_ino.get_mut(&ino) {
            *opens += 1;
            let id = id.clone();
            backings.by_fh.insert(fh, ino);
            return Some(id);
        }
        let file = self.fs.backing_file(fh)?;
        match reply.open_backing(&file) {
            Ok(id) => {
                let id = std::sync::Arc::new(id);
                backings.by_ino.insert(ino, (id.clone(), 1));
                backings.by_fh.insert(fh, ino);
                Some(id)
            }
            Err(e) => {
                let for_good =
                    matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTTY | libc::EINVAL | libc::ENOSYS));
                if for_good {
                    log::warn!("passthrough: off (the kernel refuses backing files: {e})");
                    self.fs.set_passthrough(false);
                } else {
                    log::warn!("passthrough: inode {ino}: {e}; read through the daemon");
                }
                None
            }
        }
    }

    /// A released handle's share of its inode's backing file.
    fn release_backing(&self, fh: u64) {
        let mut backings = self.backings.lock().unwrap_or_else(|e| e.into_inner());
        let Some(ino) = backings.by_fh.remove(&fh) else { return };
        if let Some((_, opens)) = backings.by_ino.get_mut(&ino) {
            *opens -= 1;
            if *opens == 0 {
                backings.by_ino.remove(&ino);
            }
        }
    }
}

impl<T: Tree> FuseAdapter<T> {
    /// Runs a request's handler (see [`run_guarded`]) and counts it with
    /// the time it took, its reply included.
    fn guarded(&self, op: Operation, handler: impl FnOnce()) {
        let start = Instant::now();
        self.requests.started(op);
        run_guarded(op.name(), handler);
        self.requests.finished(op, start.elapsed());
    }

    /// A failure's errno, counted and logged once: the operation, the
    /// inode (the directory, for a request about a name in it), the
    /// caller, the error and its errno, at the error's level.
    fn fail(&self, op: Operation, ino: u64, req: &Request, e: &FsError) -> Errno {
        let errno = e.errno();
        self.requests.failed(op, errno);
        log::log!(e.level(), "{} ino={ino} (pid {}): {e} ({})", op.name(), req.pid(), errno_name(errno));
        Errno::from_i32(errno)
    }
}

/// Runs one request's handler; a panic (a bug) is logged and the request
/// answered with EIO (fuser replies EIO for a reply dropped unsent), so the
/// daemon keeps serving every other request.
fn run_guarded(op: &str, handler: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(handler)) {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        log::error!("{op}: internal error (answered EIO): {what}");
    }
}

/// The attributes of a negative entry (inode 0): the kernel reads only
/// the inode number and the timeout.
fn negative_attr() -> FileAttr {
    let epoch = std::time::UNIX_EPOCH;
    file_attr(&Attr {
        ino: 0,
        kind: Kind::File,
        size: 0,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        atime: epoch,
        mtime: epoch,
        ctime: epoch,
    })
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Directory => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
    }
}

fn fopen_flags(f: OpenFlags) -> FopenFlags {
    let mut flags = FopenFlags::empty();
    if f.keep_cache {
        flags |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if f.direct_io {
        flags |= FopenFlags::FOPEN_DIRECT_IO;
    }
    if f.no_flush {
        flags |= FopenFlags::FOPEN_NOFLUSH;
    }
    flags
}

fn time_of(t: Option<TimeOrNow>) -> Option<SystemTime> {
    t.map(|t| match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    })
}

struct Plain<'a>(&'a mut ReplyDirectory);

impl DirReplier for Plain<'_> {
    fn add(&mut self, ino: u64, next_offset: u64, kind: Kind, name: &OsStr, _attr: Option<&Attr>) -> bool {
        self.0.add(INodeNo(ino), next_offset, file_type(kind), name)
    }
}

struct Plus<'a> {
    reply: &'a mut ReplyDirectoryPlus,
    ttl: &'a dyn Fn(u64) -> std::time::Duration,
}

impl DirReplier for Plus<'_> {
    fn add(&mut self, ino: u64, next_offset: u64, kind: Kind, name: &OsStr, attr: Option<&Attr>) -> bool {
        let attr = attr.copied().unwrap_or(Attr {
            ino,
            kind,
            size: 0,
            perm: 0o755,
            nlink: 2,
            uid: 0,
            gid: 0,
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
        });
        // `.` and `..` carry no attributes: a zero TTL keeps the kernel
        // from trusting the placeholder.
        let ttl = if name == "." || name == ".." { std::time::Duration::ZERO } else { (self.ttl)(ino) };
        self.reply.add(INodeNo(ino), next_offset, name, &ttl, &file_attr(&attr), Generation(0))
    }
}

impl<T: Tree> fuser::Filesystem for FuseAdapter<T> {
    // Deliberately unsupported, answered without fuser's "not implemented"
    // warning: no ioctls (ENOTTY, as for a plain file), no preallocation
    // (EOPNOTSUPP: cp and rsync carry on), and lseek/copy_file_range
    // ENOSYS, which makes the kernel use its generic versions.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        self.guarded(Operation::Ioctl, || {
            reply.error(Errno::from_i32(libc::ENOTTY));
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        self.guarded(Operation::Fallocate, || {
            reply.error(Errno::from_i32(libc::EOPNOTSUPP));
        });
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: fuser::ReplyLseek,
    ) {
        self.guarded(Operation::Lseek, || {
            reply.error(Errno::from_i32(libc::ENOSYS));
        });
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        self.guarded(Operation::CopyFileRange, || {
            reply.error(Errno::from_i32(libc::ENOSYS));
        });
    }

    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let wanted = [
            // O_TRUNC arrives with OPEN, not as a separate truncate.
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            // Drop cached pages when a file's mtime or size changes.
            InitFlags::FUSE_AUTO_INVAL_DATA,
            // `ls -l` in one pass.
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_BIG_WRITES,
            InitFlags::FUSE_MAX_PAGES,
            // Files opened with direct I/O (see `open`) can still be mmapped.
            InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP,
            // We have no setuid bits or capabilities to clear. (Kernel 6.18
            // still asks for security.capability once per new file.)
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
            // The kernel checks and caches ACLs itself: `ls -l` asks for
            // `system.posix_acl_access` once per file, not at every listing
            // (keys have none: the answer is ENODATA, and setting one is
            // EOPNOTSUPP).
            InitFlags::FUSE_POSIX_ACL,
        ];
        for flag in wanted {
            if config.add_capabilities(flag).is_err() {
                log::info!("kernel lacks {flag:?}");
            }
        }
        // Passthrough (Linux 6.9+, and backing files need root): readers of
        // value files read them without the daemon.
        if self.fs.config().passthrough {
            // SAFETY: geteuid cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            let accepted = root
                && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                && config.set_max_stack_depth(1).is_ok();
            self.fs.set_passthrough(accepted);
            if accepted {
                log::info!("passthrough: on (value files are read by the kernel)");
            } else if root {
                log::info!("passthrough: off (the kernel lacks it; reads go through the daemon)");
            } else {
                log::info!("passthrough: off (backing files need root; reads go through the daemon)");
            }
        } else {
            log::info!("passthrough: off (not asked for)");
        }
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.guarded(Operation::Lookup, || {
            log::debug!("lookup parent={} name={name:?} pid={}", parent.0, req.pid());
            match self.fs.lookup(parent.0, name) {
                Ok(attr) => reply.entry(&self.fs.ttl_for(attr.ino), &file_attr(&attr), Generation(0)),
                Err(e) => {
                    let errno = self.fail(Operation::Lookup, parent.0, req, &e);
                    match self.fs.negative_ttl(parent.0, name).filter(|_| matches!(e, FsError::NotFound(_))) {
                        // A miss the kernel keeps: inode 0 with a timeout
                        // (filesystem/negatives.rs).
                        Some(ttl) => reply.entry(&ttl, &negative_attr(), Generation(0)),
                        None => reply.error(errno),
                    }
                }
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.guarded(Operation::Forget, || {
            self.fs.forget(ino.0, nlookup);
        });
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.guarded(Operation::Getattr, || {
            log::debug!("getattr ino={} fh={fh:?} pid={}", ino.0, req.pid());
            match self.fs.getattr(ino.0) {
                Ok(attr) => reply.attr(&self.fs.ttl_for(attr.ino), &file_attr(&attr)),
                Err(e) => reply.error(self.fail(Operation::Getattr, ino.0, req, &e)),
            }
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.guarded(Operation::Setattr, || {
            log::debug!("setattr ino={} size={size:?} pid={}", ino.0, req.pid());
            let allowed = match size {
                Some(_) => self.pickle_writers.check_write(req.uid(), &*self.fs, ino.0),
                None => Ok(()),
            };
            match allowed.and_then(|()| self.fs.setattr(ino.0, fh.map(|f| f.0), size, time_of(atime), time_of(mtime))) {
                Ok(attr) => reply.attr(&self.fs.ttl_for(attr.ino), &file_attr(&attr)),
                Err(e) => reply.error(self.fail(Operation::Setattr, ino.0, req, &e)),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        self.guarded(Operation::Mknod, || {
            // A regular file is a new empty entry; nothing else exists here.
            let result = if mode & libc::S_IFMT == libc::S_IFREG || mode & libc::S_IFMT == 0 {
                self.fs.mknod_regular(parent.0, name)
            } else {
                Err(FsError::NotPermitted(format!("mknod {name:?}: only regular files")))
            };
            match result {
                Ok(attr) => reply.entry(&self.fs.ttl_for(attr.ino), &file_attr(&attr), Generation(0)),
                Err(e) => reply.error(self.fail(Operation::Mknod, parent.0, req, &e)),
            }
        });
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        self.guarded(Operation::Mkdir, || match self.fs.mkdir(parent.0, name) {
            Ok(attr) => reply.entry(&self.fs.ttl_for(attr.ino), &file_attr(&attr), Generation(0)),
            Err(e) => reply.error(self.fail(Operation::Mkdir, parent.0, req, &e)),
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.guarded(Operation::Unlink, || {
            log::debug!("unlink parent={} name={name:?} pid={}", parent.0, req.pid());
            match self.fs.unlink(parent.0, name) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(self.fail(Operation::Unlink, parent.0, req, &e)),
            }
        });
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.guarded(Operation::Rmdir, || match self.fs.rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail(Operation::Rmdir, parent.0, req, &e)),
        });
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &std::path::Path, reply: ReplyEntry) {
        self.guarded(Operation::Symlink, || match self.fs.symlink(parent.0, link_name, target) {
            Ok(attr) => reply.entry(&self.fs.ttl_for(attr.ino), &file_attr(&attr), Generation(0)),
            Err(e) => reply.error(self.fail(Operation::Symlink, parent.0, req, &e)),
        });
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        self.guarded(Operation::Readlink, || match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(self.fail(Operation::Readlink, ino.0, req, &e)),
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.guarded(Operation::Rename, || {
            log::debug!("rename {name:?} -> {newname:?} pid={}", req.pid());
            let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
            if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                // No tree can swap two names atomically: refused for all here.
                let e = FsError::InvalidValue {
                    what: format!("rename {}", name.to_string_lossy()),
                    reason: "RENAME_EXCHANGE is not supported".into(),
                };
                reply.error(self.fail(Operation::Rename, parent.0, req, &e));
                return;
            }
            let allowed = self.pickle_writers.check_rename(req.uid(), &*self.fs, newparent.0, newname);
            match allowed.and_then(|()| self.fs.rename(parent.0, name, newparent.0, newname, no_replace)) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(self.fail(Operation::Rename, parent.0, req, &e)),
            }
        });
    }

    fn link(&self, req: &Request, ino: INodeNo, _newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        self.guarded(Operation::Link, || {
            reply.error(self.fail(Operation::Link, ino.0, req, &FsError::NotPermitted(format!("link {newname:?}"))));
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: FuseOpenFlags, reply: ReplyOpen) {
        self.guarded(Operation::Open, || {
            if self.fs.config().reads_unopened {
                // The kernel then opens files itself from now on
                // (filesystem/unopened.rs).
                reply.error(Errno::from_i32(libc::ENOSYS));
                return;
            }
            log::debug!("open ino={} flags={:#x} pid={}", ino.0, flags.0, req.pid());
            let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
            let truncate = flags.0 & libc::O_TRUNC != 0;
            let append = flags.0 & libc::O_APPEND != 0;
            if write && let Err(e) = self.pickle_writers.check_write(req.uid(), &*self.fs, ino.0) {
                reply.error(self.fail(Operation::Open, ino.0, req, &e));
                return;
            }
            match self.fs.open(ino.0, write, truncate, append) {
                Ok((fh, f)) if f.passthrough => match self.backing_for(&reply, ino.0, fh) {
                    Some(id) => reply.opened_passthrough(FileHandle(fh), fopen_flags(f), &id),
                    None => {
                        self.fs.passthrough_refused(fh);
                        // The kernel's pages may be of another version.
                        reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NOFLUSH)
                    }
                },
                Ok((fh, f)) => reply.opened(FileHandle(fh), fopen_flags(f)),
                Err(e) => reply.error(self.fail(Operation::Open, ino.0, req, &e)),
            }
        });
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.guarded(Operation::Read, || match self.fs.read(ino.0, fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(self.fail(Operation::Read, ino.0, req, &e)),
        });
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.guarded(Operation::Write, || match self.fs.write(ino.0, fh.0, offset, data) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(self.fail(Operation::Write, ino.0, req, &e)),
        });
    }

    fn flush(&self, req: &Request, ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        self.guarded(Operation::Flush, || {
            if self.fs.config().reads_unopened {
                // Nothing to commit on a read-only mount: no FLUSH again.
                reply.error(Errno::from_i32(libc::ENOSYS));
                return;
            }
            log::debug!("flush ino={} fh={} pid={}", ino.0, fh.0, req.pid());
            match self.fs.flush(fh.0) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(self.fail(Operation::Flush, ino.0, req, &e)),
            }
        });
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.guarded(Operation::Release, || {
            let result = self.fs.release(fh.0);
            self.release_backing(fh.0);
            match result {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(self.fail(Operation::Release, ino.0, req, &e)),
            }
        });
    }

    fn fsync(&self, req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.guarded(Operation::Fsync, || match self.fs.fsync(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail(Operation::Fsync, ino.0, req, &e)),
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: FuseOpenFlags, reply: ReplyOpen) {
        self.guarded(Operation::Opendir, || {
            if self.fs.config().reads_unopened {
                // The kernel then keeps every listing it reads until the
                // change watcher drops it (filesystem/watch.rs).
                reply.error(Errno::from_i32(libc::ENOSYS));
            } else {
                let mut flags = FopenFlags::empty();
                let (cache, current) = self.fs.listing_cache(ino.0);
                if cache {
                    flags |= FopenFlags::FOPEN_CACHE_DIR;
                }
                if current {
                    flags |= FopenFlags::FOPEN_KEEP_CACHE;
                }
                reply.opened(FileHandle(0), flags);
            }
        });
    }

    fn readdir(&self, req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        self.guarded(Operation::Readdir, || match self.fs.readdir(ino.0, offset, false, &mut Plain(&mut reply)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail(Operation::Readdir, ino.0, req, &e)),
        });
    }

    fn readdirplus(&self, req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        self.guarded(Operation::Readdirplus, || {
            let ttl = |ino| self.fs.ttl_for(ino);
            match self.fs.readdir(ino.0, offset, true, &mut Plus { reply: &mut reply, ttl: &ttl }) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(self.fail(Operation::Readdirplus, ino.0, req, &e)),
            }
        });
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        self.guarded(Operation::Statfs, || match self.fs.statfs() {
            Ok(s) => reply.statfs(s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize),
            Err(e) => reply.error(self.fail(Operation::Statfs, ino.0, req, &e)),
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.guarded(Operation::Setxattr, || {
            log::debug!("setxattr ino={} name={name:?} pid={}", ino.0, req.pid());
            let create = flags & libc::XATTR_CREATE != 0;
            let replace = flags & libc::XATTR_REPLACE != 0;
            let allowed = self.pickle_writers.check_setxattr(req.uid(), name, value);
            match allowed.and_then(|()| self.fs.setxattr(ino.0, name, value, create, replace)) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(self.fail(Operation::Setxattr, ino.0, req, &e)),
            }
        });
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.guarded(Operation::Getxattr, || match self.fs.getxattr(ino.0, name) {
            Ok(value) => self.reply_xattr(Operation::Getxattr, ino.0, reply, &value, size, req),
            Err(e) => reply.error(self.fail(Operation::Getxattr, ino.0, req, &e)),
        });
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.guarded(Operation::Listxattr, || match self.fs.listxattr(ino.0) {
            Ok(value) => self.reply_xattr(Operation::Listxattr, ino.0, reply, &value, size, req),
            Err(e) => reply.error(self.fail(Operation::Listxattr, ino.0, req, &e)),
        });
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.guarded(Operation::Removexattr, || match self.fs.removexattr(ino.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.fail(Operation::Removexattr, ino.0, req, &e)),
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.guarded(Operation::Create, || {
            log::debug!("create parent={} name={name:?} flags={flags:#x} pid={}", parent.0, req.pid());
            let exclusive = flags & libc::O_EXCL != 0;
            let truncate = flags & libc::O_TRUNC != 0;
            let append = flags & libc::O_APPEND != 0;
            match self.fs.create(parent.0, name, exclusive, truncate, append) {
                Ok((attr, fh, f)) => reply.created(
                    &self.fs.ttl_for(attr.ino),
                    &file_attr(&attr),
                    Generation(0),
                    FileHandle(fh),
                    fopen_flags(f),
                ),
                Err(e) => reply.error(self.fail(Operation::Create, parent.0, req, &e)),
            }
        });
    }
}

impl<T: Tree> FuseAdapter<T> {
    /// getxattr/listxattr's size protocol: 0 asks for the size.
    fn reply_xattr(&self, op: Operation, ino: u64, reply: ReplyXattr, value: &[u8], size: u32, req: &Request) {
        if size == 0 {
            reply.size(value.len() as u32);
        } else if value.len() > size as usize {
            reply.error(self.fail(op, ino, req, &FsError::Range));
        } else {
            reply.data(value);
        }
    }
}
