//! Mounting and unmounting: the session's life around the tree
//! ([`DiskCacheFs`] over a [`Store`]; for a FanoutCache directory, with
//! its sub-stores beside it: [`WithSubStores`]).
//!
//! - The daemon blocks SIGINT, SIGTERM and SIGHUP before any thread starts;
//!   one thread waits for them and detaches the mount (a lazy unmount), so
//!   open files still finish and commit before the session ends.
//! - `unmount` also clears a stale mount whose daemon was killed (the
//!   kernel answers ENOTCONN there).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::cache::{CacheOptions, OpenError};
use crate::fs::filesystem::{DiskCacheFs, FsConfig, Invalidation};
use crate::fs::fuse::FuseAdapter;
use crate::fs::pickle_writers::PickleWriters;
use crate::fs::readable::Readable;
use crate::fs::request_stats::RequestStats;
use crate::fs::store::Store;
use crate::fs::substores::WithSubStores;
use crate::fs::tree::Tree;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

/// FUSE dispatch threads when `--threads` is not given: each takes requests
/// from its own clone of /dev/fuse, so requests go on while one waits (a
/// commit waiting for a peer's write lock holds its thread up to the
/// timeout). Chosen by `scripts/bench fs` (docs/PERFORMANCE.md,
/// "Concurrency"): with 8 readers, 2 threads read as fast as 8 until two
/// writes through the mount wait for the lock, then fall to a fifth; 4 to
/// 16 do not; 16 costs the most latency on 2 CPUs. 8 leaves room for seven
/// waiting commits. Each thread costs up to 1 MiB of request buffer (the
/// `max_write` set at INIT).
pub const DEFAULT_THREADS: usize = 8;

/// What to mount, and how (built from the command line by `main.rs`).
#[derive(Clone, Debug)]
pub struct MountConfig {
    pub cache_dir: PathBuf,
    pub mountpoint: PathBuf,
    pub read_only: bool,
    /// Let other users in; the kernel then enforces file modes.
    pub allow_other: bool,
    /// Entry and attribute timeout: peers' changes show within it.
    pub ttl: Duration,
    /// The same in `keys/` of a read-only mount, whose change watcher
    /// tells the kernel of peers' changes (filesystem/watch.rs).
    pub watched_ttl: Duration,
    /// A read-only mount still takes OPEN, FLUSH, RELEASE and OPENDIR
    /// requests (as before reads without OPEN; to compare).
    pub open_requests: bool,
    /// `--stale-as-miss` (FsConfig).
    pub stale_as_miss: bool,
    /// `--io-uring`: take requests through FUSE over io_uring where the
    /// kernel offers it (vendor/fuser, uring.rs), else through /dev/fuse.
    pub io_uring: bool,
    /// Read value files through passthrough where the kernel allows it.
    pub passthrough: bool,
    /// See `FsConfig::max_inodes`.
    pub max_inodes: usize,
    /// FUSE dispatch threads (at least 1; 0 is taken as 1). See
    /// [`DEFAULT_THREADS`].
    pub threads: usize,
    /// How long a change waits for another process's write lock (the
    /// cache's `timeout`, diskcache's 60 s by default); past it, EBUSY.
    pub timeout: Duration,
    /// The service manager to tell `STOPPING=1` when the daemon begins to
    /// stop: at a shutdown signal, or when the session ends after an
    /// external unmount (whichever comes first; once).
    pub notifier: Option<crate::service::Notifier>,
    /// The remote tier under the cache (`--remote`; docs/REMOTE.md).
    pub remote: Option<crate::remote::TierConfig>,
    /// Make a cache in a CACHE_DIR that holds other files (`--create`).
    pub create: bool,
    /// Where a `--daemon`'s daemon logs, if given (never inside the mount).
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum MountError {
    #[error("mount point {0}: not a directory")]
    NotADirectory(PathBuf),
    #[error("mount point {0}: no such directory")]
    NoMountPoint(PathBuf),
    #[error("{0}: no cache to mount read-only (no cache.db), and a read-only mount creates nothing")]
    NoCache(PathBuf),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("mounting on {path}: {source}")]
    Mount { path: PathBuf, source: io::Error },
    #[error("unmounting {path}: {source}")]
    Unmount { path: PathBuf, source: io::Error },
    #[error("{0} is not a mount point")]
    NotMounted(PathBuf),
    #[error("--remote: {0}")]
    Remote(String),
    #[error("{0}: already mounted: diskcachefs umount {0} first")]
    AlreadyMounted(PathBuf),
    #[error("{0}: a dead mount is there (its daemon is gone): run diskcachefs umount {0}")]
    DeadMount(PathBuf),
    #[error("{cache_dir}: not a directory")]
    CacheNotADirectory { cache_dir: PathBuf },
    #[error(
        "{0}: not a python-diskcache cache (no cache.db) and not empty; give --create to make a new cache in it anyway"
    )]
    NotACache(PathBuf),
    #[error("mount point {mountpoint} {relation} the cache directory {cache_dir}: {why}")]
    Overlap { mountpoint: PathBuf, cache_dir: PathBuf, relation: &'static str, why: &'static str },
    #[error("--log-file {0}: inside the mount point, where the daemon would write through its own mount")]
    LogInsideMount(PathBuf),
}

/// Mounts and serves until unmounted (by a signal, `diskcachefs umount`,
/// or `umount`). `ready` is called once the mount is visible, or with the
/// error that prevented it.
pub fn run(config: &MountConfig, ready: impl FnOnce(Result<(), String>)) -> Result<(), MountError> {
    // Resolved before mounting: afterwards the path leads into the mount.
    let target = config.mountpoint.canonicalize().ok();
    if let Err(e) = prepare(config) {
        ready(Err(e.to_string()));
        return Err(e);
    }
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut fs_config = FsConfig {
        read_only: config.read_only,
        ttl: config.ttl,
        uid,
        gid,
        max_inodes: config.max_inodes,
        reads_unopened: false,
        passthrough: false,
        watched_ttl: config.watched_ttl,
        stale_as_miss: config.stale_as_miss,
    };
    let options = CacheOptions { read_only: config.read_only, timeout: config.timeout, ..CacheOptions::default() };
    // What the kernel should drop (names to forget, see
    // `FsConfig::max_inodes`; peers' changes, see filesystem/watch.rs),
    // sent by a thread of its own: a notification from inside a request
    // could wait on a lock the kernel holds for that request.
    let (forget_tx, forget_rx) = std::sync::mpsc::channel::<Invalidation>();
    // A read-only mount reads without OPEN, its change watcher telling the
    // kernel of other processes' changes (filesystem/unopened.rs,
    // watch.rs).
    fs_config.reads_unopened = config.read_only && !config.open_requests;
    // Readers of value files through passthrough where the kernel takes
    // it (filesystem/passthrough.rs; said in the log at INIT).
    fs_config.passthrough = !config.read_only && config.passthrough;
    // One cache, or a FanoutCache's shards (store.rs): one tree either way.
    let sharded = crate::cache::fanout::is_fanout_directory(&config.cache_dir);
    let store = match Store::open(&config.cache_dir, options.clone()) {
        Ok(store) => store,
        Err(e) => {
            let e = MountError::from(e);
            ready(Err(e.to_string()));
            return Err(e);
        }
    };
    let fs = DiskCacheFs::over(store, fs_config);
    let tier = match &config.remote {
        None => None,
        Some(remote) => match crate::remote::RemoteTier::start(&config.cache_dir, remote.clone()) {
            Ok(tier) => Some(tier),
            Err(e) => {
                let e = MountError::Remote(e.to_string());
                ready(Err(e.to_string()));
                return Err(e);
            }
        },
    };
    if let Some(tier) = &tier {
        fs.set_remote(tier.clone());
    }
    let served = if sharded {
        // Its sub-stores (cache/NAME, deque/NAME, index/NAME) beside it.
        let fs = WithSubStores::new(fs, options);
        fs.set_forget_requests(forget_tx);
        run_tree(Readable::new(fs), forget_rx, config, target, ready)
    } else {
        fs.set_forget_requests(forget_tx);
        run_tree(Readable::new(fs), forget_rx, config, target, ready)
    };
    if let Some(tier) = tier {
        // Its threads save the cursor; queued uploads not done are found
        // again by the next mount's scan.
        tier.stop();
        log::info!("remote at the end: {}", tier.status());
    }
    served
}

/// Mounts `fs` and serves it until unmounted.
fn run_tree<T: Tree>(
    fs: T,
    forget_rx: Receiver<Invalidation>,
    config: &MountConfig,
    target: Option<PathBuf>,
    ready: impl FnOnce(Result<(), String>),
) -> Result<(), MountError> {
    let requests = Arc::new(RequestStats::default());
    fs.set_request_stats(requests.clone());
    let fs = Arc::new(fs);
    let watched = Arc::downgrade(&fs);
    match mount(fs, forget_rx, config, requests.clone()) {
        Ok(session) => {
            let watcher = spawn_watcher(watched);
            if let Some(target) = &target {
                raise_readahead(target);
            }
            ready(Ok(()));
            let served = serve(session, config);
            // The tree (and the watcher's own database handle) must be
            // gone before the process exits, so that SQLite's last close
            // removes cache.db-wal and -shm as it found them.
            if let Some(watcher) = watcher {
                let _ = watcher.join();
            }
            log::info!("requests served: {}", requests.summary());
            served
        }
        Err(e) => {
            ready(Err(e.to_string()));
            Err(e)
        }
    }
}

/// Every open file through the mount may hold a value file open in the
/// daemon (a reader's snapshot): raise the soft limit on descriptors to the
/// hard one (commonly 1024 -> 1048576), so a thousand open files are fine.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                log::warn!("could not raise the open-file limit: {}", std::io::Error::last_os_error());
            }
        }
    }
}

/// What a request to a mount whose daemon died answers: ENOTCONN; over
/// FUSE over io_uring also ECONNABORTED or ECANCELED, for a while after the
/// death, as the kernel tears the rings down and ends what was queued on
/// them.
fn is_dead_mount(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED))
}

/// `path` made absolute with its parent's symbolic links resolved, without
/// looking at `path` itself: a mount point may be a dead mount (ENOTCONN)
/// or a live one whose daemon would be asked (and might not answer).
fn resolve_outside(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    // The nearest ancestor that exists, resolved, then the rest as given
    // (a cache directory not made yet).
    let mut rest = Vec::new();
    let mut dir = absolute.as_path();
    loop {
        let name = dir.file_name()?;
        rest.push(name.to_os_string());
        dir = dir.parent()?;
        if let Ok(resolved) = dir.canonicalize() {
            return Some(rest.iter().rev().fold(resolved, |p, n| p.join(n)));
        }
    }
}

/// Where the mount goes and what it serves, checked before anything
/// starts (also by a `--daemon` parent, so that it reports them): the
/// mount point is a directory with no diskcachefs (or other FUSE) mount on
/// it, live or dead; it is neither the cache directory, nor holds it, nor
/// lies in it (the daemon reaches `cache.db` and the value files by path,
/// and SQLite its `-wal` and `-shm`: through its own mount, it would wait
/// on itself for good); CACHE_DIR is a directory, and one that is not a
/// cache is only made one when empty, or with `create`; a log file is not
/// written through the mount.
pub fn check_places(config: &MountConfig) -> Result<(), MountError> {
    let (create, log_file) = (config.create, config.log_file.as_deref());
    let mountpoint = &config.mountpoint;
    let resolved = resolve_outside(mountpoint);
    if let Some(line) = resolved.as_deref().and_then(mountinfo_line)
        && mountinfo_is_fuse(&line)
    {
        // statfs always asks the daemon (a stat may be answered from the
        // kernel's cache for a while after the daemon died).
        let c = CString::new(mountpoint.as_os_str().as_bytes()).unwrap_or_default();
        // SAFETY: statfs is plain data; all zeroes is a valid value.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: the path is NUL-terminated; st is writable.
        let dead = unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 && is_dead_mount(&io::Error::last_os_error());
        return Err(if dead {
            MountError::DeadMount(mountpoint.clone())
        } else {
            MountError::AlreadyMounted(mountpoint.clone())
        });
    }
    match std::fs::metadata(mountpoint) {
        Ok(meta) if meta.is_dir() => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(MountError::NoMountPoint(mountpoint.clone())),
        Err(e) if is_dead_mount(&e) => return Err(MountError::DeadMount(mountpoint.clone())),
        _ => return Err(MountError::NotADirectory(mountpoint.clone())),
    }
    let cache_dir = &config.cache_dir;
    match std::fs::metadata(cache_dir) {
        Ok(meta) if !meta.is_dir() => return Err(MountError::CacheNotADirectory { cache_dir: cache_dir.clone() }),
        Ok(_)
            if !create
                && !config.read_only
                && !cache_dir.join(crate::cache::settings::DBNAME).exists()
                && !crate::cache::fanout::is_fanout_directory(cache_dir)
                && std::fs::read_dir(cache_dir).is_ok_and(|mut d| d.next().is_some()) =>
        {
            return Err(MountError::NotACache(cache_dir.clone()));
        }
        _ => {}
    }
    if let (Some(mnt), Some(cache)) = (resolved, cache_dir.canonicalize().ok().or_else(|| resolve_outside(cache_dir))) {
        let overlap = |relation, why| MountError::Overlap {
            mountpoint: mountpoint.clone(),
            cache_dir: cache_dir.clone(),
            relation,
            why,
        };
        if mnt == cache {
            return Err(overlap("is", "the mount would hide the cache it serves"));
        }
        if cache.starts_with(&mnt) {
            return Err(overlap("holds", "the mount would hide the cache it serves"));
        }
        if mnt.starts_with(&cache) {
            return Err(overlap("lies in", "the daemon and python-diskcache's check() walk it"));
        }
        if let Some(log) = log_file.and_then(resolve_outside)
            && log.starts_with(&mnt)
        {
            return Err(MountError::LogInsideMount(log_file.unwrap_or(&log).to_path_buf()));
        }
    }
    Ok(())
}

/// Whether a /proc/self/mountinfo line is a FUSE mount's (type `fuse`, or
/// `fuse.SUBTYPE` as mount.fuse3 and fuser name ours).
fn mountinfo_is_fuse(line: &[u8]) -> bool {
    // After the optional fields, " - " and then the file-system type.
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let dash = fields.iter().position(|f| *f == b"-");
    dash.and_then(|d| fields.get(d + 1)).is_some_and(|ty| *ty == b"fuse" || ty.starts_with(b"fuse."))
}

/// What is checked before any cache is opened.
fn prepare(config: &MountConfig) -> Result<(), MountError> {
    check_places(config)?;
    raise_open_file_limit();
    if config.remote.is_some() && config.read_only {
        return Err(MountError::Remote(
            "needs a read-write mount: what is pulled is written to the cache \
             (--remote-mode ro keeps the remote read-only)"
                .into(),
        ));
    }
    if config.read_only
        && !config.cache_dir.join(crate::cache::settings::DBNAME).is_file()
        && !crate::cache::fanout::is_fanout_directory(&config.cache_dir)
    {
        return Err(MountError::NoCache(config.cache_dir.clone()));
    }
    Ok(())
}

fn mount<T: Tree>(
    fs: Arc<T>,
    forget_rx: Receiver<Invalidation>,
    config: &MountConfig,
    requests: Arc<RequestStats>,
) -> Result<fuser::Session<FuseAdapter<T>>, MountError> {
    let mut options = vec![
        fuser::MountOption::FSName(config.cache_dir.display().to_string()),
        fuser::MountOption::Subtype("diskcachefs".into()),
        // The kernel checks file modes against the caller (matters with
        // allow_other; root passes anyway).
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        // Reads do not update the kernel's atime, which would otherwise
        // invalidate cached attributes after every read and cost a GETATTR
        // at the next open. (atime is the cache's access_time, which the
        // cache itself maintains.)
        fuser::MountOption::NoAtime,
    ];
    if config.read_only {
        options.push(fuser::MountOption::RO);
    }
    let mut fuse_config = fuser::Config::default();
    fuse_config.mount_options = options;
    fuse_config.acl = if config.allow_other { fuser::SessionACL::All } else { fuser::SessionACL::Owner };
    fuse_config.n_threads = Some(config.threads.max(1));
    fuse_config.clone_fd = true;
    if config.io_uring {
        fuse_config.io_uring = Some(fuser::UringOptions {
            threads: config.threads.max(1),
            // Tests make the kernel refuse the rings, to see the fallback.
            fail_registration: std::env::var_os("DISKCACHEFS_TEST_URING_REFUSE").is_some(),
        });
    }

    block_shutdown_signals();
    // SAFETY: getuid has no preconditions.
    let mounter = unsafe { libc::getuid() };
    let pickle_writers = PickleWriters::new(config.allow_other, mounter, fs.config().uid);
    let tree = fs.clone();
    let session =
        fuser::Session::new(FuseAdapter::new(fs, requests.clone(), pickle_writers), &config.mountpoint, &fuse_config)
            .map_err(|source| MountError::Mount { path: config.mountpoint.clone(), source })?;
    // Negative entries on a read-write mount need the kernel's epoch
    // (filesystem/negatives.rs): tried once now, when it holds no entry.
    let epochs = session.notifier();
    match epochs.inc_epoch() {
        Ok(()) => tree.set_epoch_bump(Arc::new(move || epochs.inc_epoch().is_ok())),
        Err(e) => log::info!("no FUSE_NOTIFY_INC_EPOCH ({e}): misses are not kept on a read-write mount"),
    }
    let status = session.uring_status();
    let asked = config.io_uring;
    requests.set_transport(Box::new(move || {
        let kind = status.transport();
        let note = match status.why_not() {
            Some(why) => Some(why),
            None if !asked => Some("io_uring not asked for (--no-io-uring)".to_string()),
            None => None,
        };
        serde_json::json!({
            "kind": kind,
            "queues": status.queues(),
            "ring_requests": status.served(),
            "note": note,
        })
    }));
    let notifier = session.notifier();
    std::thread::Builder::new()
        .name("forget".into())
        .spawn(move || {
            for request in forget_rx {
                // ENOENT: the kernel had already dropped it.
                let _ = match request {
                    Invalidation::Entry { parent, name } => {
                        notifier.inval_entry(fuser::INodeNo(parent), std::ffi::OsStr::new(&name))
                    }
                    Invalidation::Inode(ino) => notifier.inval_inode(fuser::INodeNo(ino), 0, 0),
                };
            }
        })
        .map_err(|source| MountError::Mount { path: config.mountpoint.clone(), source })?;
    Ok(session)
}

/// Calls the tree's change watcher every `WATCH_INTERVAL` while the tree
/// lives and wants it (filesystem/watch.rs). The thread ends within an
/// interval of the session's end.
fn spawn_watcher<T: Tree>(tree: std::sync::Weak<T>) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new().name("watch".into()).spawn(move || {
        loop {
            std::thread::sleep(crate::fs::filesystem::WATCH_INTERVAL);
            match tree.upgrade() {
                Some(tree) if tree.watch() => {}
                _ => break,
            }
        }
    });
    spawned.map_err(|e| log::error!("no change watcher: {e}")).ok()
}

/// The kernel offers FUSE at most 128 KiB of read-ahead at INIT; large
/// sequential reads go about twice as fast with 1 MiB. The mount's
/// backing-device setting can be raised after mounting (root only); best
/// effort. The device number comes from /proc/self/mountinfo, not from a
/// stat of the mount: a request of the daemon's own to the mount held it
/// busy for a moment, and an `umount` right after mounting could fail.
fn raise_readahead(target: &Path) {
    let Some((major, minor)) = mount_device(target) else {
        log::info!("could not raise read-ahead: {} not in /proc/self/mountinfo", target.display());
        return;
    };
    let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    match std::fs::write(&path, "1024") {
        Ok(()) => log::debug!("{path} = 1024"),
        Err(e) => log::info!("could not raise read-ahead ({path}): {e}"),
    }
}

/// The device (`major:minor`) of the topmost mount on `target`, an
/// absolute path without symlinks, as /proc/self/mountinfo lists it.
fn mount_device(target: &Path) -> Option<(u32, u32)> {
    let line = mountinfo_line(target)?;
    let dev = std::str::from_utf8(line.split(|&b| b == b' ').nth(2)?).ok()?;
    let (major, minor) = dev.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Whether `path` is where a diskcachefs mount is: its topmost mount is a
/// FUSE file system (type `fuse`, or `fuse.diskcachefs` through
/// mount.fuse3) with our `stats` file and `keys/` directory at its root.
/// `diskcachefs stats` then reads the mount's own `stats`.
pub fn is_mounted_here(path: &Path) -> bool {
    let Ok(target) = path.canonicalize() else { return false };
    let Some(line) = mountinfo_line(&target) else { return false };
    mountinfo_is_fuse(&line) && target.join("stats").is_file() && target.join("keys").is_dir()
}

/// The last /proc/self/mountinfo line whose mount point is `target`.
fn mountinfo_line(target: &Path) -> Option<Vec<u8>> {
    // mountinfo writes space, tab, newline and backslash as octal escapes.
    let mut escaped = Vec::new();
    for &b in target.as_os_str().as_bytes() {
        match b {
            b' ' | b'\t' | b'\n' | b'\\' => escaped.extend_from_slice(format!("\\{b:03o}").as_bytes()),
            _ => escaped.push(b),
        }
    }
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    info.split(|&b| b == b'\n').rfind(|l| l.split(|&b| b == b' ').nth(4) == Some(&escaped[..])).map(<[u8]>::to_vec)
}

/// Whether something is mounted on `path`, a stale mount (its daemon
/// killed) too. Symlinks are resolved; on a stale mount, whose root
/// cannot be looked at (ENOTCONN), in its parent only.
pub fn is_mount_point(path: &Path) -> bool {
    let resolved = path.canonicalize().ok().or_else(|| {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.canonicalize().ok()?,
            _ => std::env::current_dir().ok()?,
        };
        Some(parent.join(path.file_name()?))
    });
    resolved.is_some_and(|p| mountinfo_line(&p).is_some())
}

fn serve<T: Tree>(mut session: fuser::Session<FuseAdapter<T>>, config: &MountConfig) -> Result<(), MountError> {
    let mountpoint = &config.mountpoint;
    let target = mountpoint.to_path_buf();
    let unmounter = session.unmount_callable();
    let stopping = Arc::new(Stopping { notifier: config.notifier.clone(), told: std::sync::Once::new() });
    let signalled = stopping.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || wait_for_shutdown(&target, unmounter, &signalled))
        .map_err(|source| MountError::Mount { path: mountpoint.to_path_buf(), source })?;
    log::info!("serving {} with {} FUSE threads", mountpoint.display(), config.threads.max(1));
    let result = session.run().or_else(|e| ended_by_unmount(e, mountpoint));
    log::info!("unmounted {}", mountpoint.display());
    // Unmounted from outside (`diskcachefs umount`, umount(8)): the
    // daemon stops all the same.
    stopping.tell();
    result.map_err(|source| MountError::Mount { path: mountpoint.to_path_buf(), source })
}

/// A read of `/dev/fuse` that meets the connection's teardown can answer
/// ECONNABORTED instead of ENODEV: the kernel's reader had already taken a
/// request (a RELEASE, a FORGET) when the last unmount shut the connection
/// (fs/fuse/dev.c, `fuse_dev_do_read`). Once the mount is gone that is the
/// session's ordinary end; an abort through /sys/fs/fuse/connections, with
/// the mount still there, stays an error.
fn ended_by_unmount(e: io::Error, mountpoint: &Path) -> io::Result<()> {
    if e.raw_os_error() == Some(libc::ECONNABORTED) && !is_mount_point(mountpoint) {
        log::info!("the connection ended while a request was being read ({e}): the mount is gone");
        return Ok(());
    }
    Err(e)
}

/// `STOPPING=1` for the service manager, sent once.
struct Stopping {
    notifier: Option<crate::service::Notifier>,
    told: std::sync::Once,
}

impl Stopping {
    fn tell(&self) {
        self.told.call_once(|| {
            if let Some(notifier) = &self.notifier
                && let Err(e) = notifier.stopping()
            {
                log::warn!("could not tell ${} that the mount stops: {e}", crate::service::NOTIFY_SOCKET);
            }
        });
    }
}

fn shutdown_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Blocks the shutdown signals in this thread and every thread it starts.
fn block_shutdown_signals() {
    let set = shutdown_signals();
    // SAFETY: set is initialized.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

fn wait_for_shutdown(mountpoint: &Path, mut unmounter: fuser::SessionUnmounter, stopping: &Stopping) {
    let set = shutdown_signals();
    let mut signal = 0;
    // SAFETY: set is initialized; signal is written by sigwait.
    unsafe { libc::sigwait(&set, &mut signal) };
    log::info!("signal {signal}: unmounting {}", mountpoint.display());
    stopping.tell();
    if let Err(e) = unmounter.unmount() {
        // Busy (a shell's cwd in it, an open file): detach it instead;
        // the session ends when the last open file closes.
        log::info!("unmount: {e}; detaching instead");
        if let Err(e) = unmount(mountpoint, true) {
            log::error!("{e}");
            std::process::exit(1);
        }
    }
}

/// Unmounts `mountpoint`, stale or not. `lazy` detaches it at once even if
/// it is busy (open files keep working until closed).
pub fn unmount(mountpoint: &Path, lazy: bool) -> Result<(), MountError> {
    let err = |source| MountError::Unmount { path: mountpoint.to_path_buf(), source };
    let c =
        CString::new(mountpoint.as_os_str().as_bytes()).map_err(|_| err(io::Error::from_raw_os_error(libc::EINVAL)))?;
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        // fusermount3 says only that it failed; as root, umount2 tells.
        if !is_mount_point(mountpoint) {
            return Err(MountError::NotMounted(mountpoint.to_path_buf()));
        }
        let status = std::process::Command::new("fusermount3")
            .arg(if lazy { "-uz" } else { "-u" })
            .arg(mountpoint)
            .status()
            .map_err(err)?;
        return if status.success() { Ok(()) } else { Err(err(io::Error::other("fusermount3 -u failed"))) };
    }
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: c is a NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) => Err(MountError::NotMounted(mountpoint.to_path_buf())),
        // Busy (a shell's cwd, an open file): detach instead of failing.
        Some(libc::EBUSY) if !lazy => unmount(mountpoint, true),
        _ => Err(err(e)),
    }
}
