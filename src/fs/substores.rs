//! [`WithSubStores`]: a FanoutCache's tree with its sub-stores mounted
//! in it (docs/SEMANTICS.md, "FanoutCache directories").
//!
//! A FanoutCache directory holds, beside its shards, the named caches of
//! `FanoutCache.cache(name)`, `.deque(name)` and `.index(name)`: plain
//! caches in `cache/NAME/`, `deque/NAME/`, `index/NAME/` (a name may hold
//! `/`). They are not shards of the FanoutCache but caches of their own,
//! so each is a tree of its own ([`DiskCacheFs`] over one cache), opened
//! when first looked up and shown at the same path in the mount. The main
//! tree (over the shards, `store.rs`) serves everything else.
//!
//! This type only routes: inode numbers and file handles of the main tree
//! pass unchanged (they are below 2^48: `inode.rs`); a sub-store tree's
//! are tagged with the tree above [`TREE_SHIFT`]; the directories on the
//! way to a sub-store (`cache/`, `cache/a/` for `cache/a/b`) are this
//! type's own, from [`STORE_DIR_BASE`].

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::SystemTime;

use crate::cache::settings::DBNAME;
use crate::cache::{Cache, CacheOptions};
use crate::fs::error::FsError;
use crate::fs::filesystem::{Attr, DirReplier, DiskCacheFs, FsConfig, Invalidation, Kind, OpenFlags, StatFs};
use crate::fs::readable::Readable;
use crate::fs::request_stats::RequestStats;
use crate::fs::tree::Tree;

/// A sub-store's tree: one cache, with its own `json/` (readable.rs).
type SubTree = Readable<DiskCacheFs>;

/// A sub-store tree's inodes and handles carry its number (1 up) here.
const TREE_SHIFT: u32 = 52;
const LOCAL_MASK: u64 = (1 << TREE_SHIFT) - 1;
/// This type's own directories.
const STORE_DIR_BASE: u64 = 1 << 48;
// The main tree's inodes stay below this type's own.
const _: () = assert!(crate::fs::inode::KEY_DIR_END <= STORE_DIR_BASE);
/// Root listing offsets of the sub-store kinds, after the main tree's.
const ROOT_OFFSET_BASE: u64 = 1 << 40;
const ROOT: u64 = crate::fs::inode::ROOT;
/// The root directories that hold sub-stores.
const STORE_KINDS: [&str; 3] = ["cache", "deque", "index"];

#[derive(Default)]
struct StoreDirs {
    /// Inode `STORE_DIR_BASE + i` is `dirs[i]`, relative to the cache
    /// directory.
    dirs: Vec<PathBuf>,
    by_path: HashMap<PathBuf, u64>,
}

pub struct WithSubStores {
    main: DiskCacheFs,
    directory: PathBuf,
    options: CacheOptions,
    /// Sub-store trees; tree `t` (1 up) is `subs[t - 1]`.
    subs: RwLock<Vec<Arc<SubTree>>>,
    /// Sub-store trees by directory relative to the cache directory.
    opened: Mutex<HashMap<PathBuf, usize>>,
    dirs: Mutex<StoreDirs>,
    forget_requests: Mutex<Option<Sender<Invalidation>>>,
    request_stats: std::sync::OnceLock<Arc<RequestStats>>,
    passthrough: std::sync::atomic::AtomicBool,
}

/// Where an inode (or handle) of the mount lives.
enum Route {
    Main(u64),
    Sub(Arc<SubTree>, usize, u64),
    StoreDir(PathBuf),
}

fn tagged(tree: usize, local: u64) -> u64 {
    ((tree as u64) << TREE_SHIFT) | (local & LOCAL_MASK)
}

fn with_ino(mut attr: Attr, ino: u64) -> Attr {
    attr.ino = ino;
    attr
}

impl WithSubStores {
    /// `main` (the tree over the shards of the FanoutCache in its
    /// directory), with sub-stores opened with `options` when looked up.
    pub fn new(main: DiskCacheFs, options: CacheOptions) -> WithSubStores {
        let directory = main.cache_directory().to_path_buf();
        WithSubStores {
            main,
            directory,
            options,
            subs: RwLock::new(Vec::new()),
            opened: Mutex::new(HashMap::new()),
            dirs: Mutex::new(StoreDirs::default()),
            forget_requests: Mutex::new(None),
            request_stats: std::sync::OnceLock::new(),
            passthrough: Default::default(),
        }
    }

    pub fn main(&self) -> &DiskCacheFs {
        &self.main
    }

    /// Where to send what the kernel should drop: the main tree's as they
    /// are, each sub-store's translated to the mount's inodes.
    pub fn set_forget_requests(&self, tx: Sender<Invalidation>) {
        self.main.set_forget_requests(tx.clone());
        *self.forget_requests.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    fn dirs(&self) -> MutexGuard<'_, StoreDirs> {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn route(&self, ino: u64) -> Result<Route, FsError> {
        let tree = (ino >> TREE_SHIFT) as usize;
        if tree > 0 {
            let sub = self.subs.read().unwrap_or_else(|e| e.into_inner()).get(tree - 1).cloned();
            return sub.map(|s| Route::Sub(s, tree, ino & LOCAL_MASK)).ok_or(FsError::NotFound(format!("inode {ino}")));
        }
        if ino >= STORE_DIR_BASE {
            let dirs = self.dirs();
            let rel = dirs.dirs.get((ino - STORE_DIR_BASE) as usize).cloned();
            return rel.map(Route::StoreDir).ok_or(FsError::NotFound(format!("inode {ino}")));
        }
        Ok(Route::Main(ino))
    }

    /// The tree a handle belongs to, and its own handle.
    fn route_fh(&self, fh: u64) -> Result<(Option<Arc<SubTree>>, u64), FsError> {
        let tree = (fh >> TREE_SHIFT) as usize;
        if tree == 0 {
            return Ok((None, fh));
        }
        let sub = self.subs.read().unwrap_or_else(|e| e.into_inner()).get(tree - 1).cloned();
        sub.map(|s| (Some(s), fh & LOCAL_MASK)).ok_or(FsError::BadHandle(fh))
    }

    /// `cache/`, `deque/`, `index/` and what is in them.
    fn lookup_store_path(&self, rel: &Path) -> Result<Attr, FsError> {
        let path = self.directory.join(rel);
        if path.join(DBNAME).is_file() {
            let (sub, t) = self.open_sub(rel)?;
            let attr = sub.getattr(ROOT)?;
            return Ok(with_ino(attr, tagged(t, attr.ino)));
        }
        if !path.is_dir() {
            return Err(FsError::NotFound(rel.display().to_string()));
        }
        let ino = {
            let mut dirs = self.dirs();
            match dirs.by_path.get(rel) {
                Some(&ino) => ino,
                None => {
                    dirs.dirs.push(rel.to_path_buf());
                    let ino = STORE_DIR_BASE + dirs.dirs.len() as u64 - 1;
                    dirs.by_path.insert(rel.to_path_buf(), ino);
                    ino
                }
            }
        };
        Ok(self.store_dir_attr(ino))
    }

    fn store_dir_attr(&self, ino: u64) -> Attr {
        let root = self.main.getattr(ROOT).ok();
        let now = SystemTime::now();
        Attr {
            ino,
            kind: Kind::Directory,
            size: 0,
            perm: if self.main.config().read_only { 0o555 } else { 0o755 },
            nlink: 2,
            uid: self.main.config().uid,
            gid: self.main.config().gid,
            atime: root.map_or(now, |a| a.atime),
            mtime: root.map_or(now, |a| a.mtime),
            ctime: root.map_or(now, |a| a.ctime),
        }
    }

    /// The tree of the sub-store in `rel` (a plain Cache), opened now if
    /// it is not open yet.
    fn open_sub(&self, rel: &Path) -> Result<(Arc<SubTree>, usize), FsError> {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&t) = opened.get(rel) {
            let sub = self.subs.read().unwrap_or_else(|e| e.into_inner())[t - 1].clone();
            return Ok((sub, t));
        }
        let path = self.directory.join(rel);
        let what = || path.display().to_string();
        let cache = Cache::open_with(&path, self.options.clone()).map_err(|e| FsError::open(what(), e))?;
        let sub = Arc::new(Readable::new(
            DiskCacheFs::new(cache, self.main.config().clone()).map_err(|e| FsError::io(what(), e))?,
        ));
        if let Some(stats) = self.request_stats.get() {
            sub.set_request_stats(stats.clone());
        }
        sub.set_passthrough(self.passthrough.load(std::sync::atomic::Ordering::Acquire));
        let t = {
            let mut subs = self.subs.write().unwrap_or_else(|e| e.into_inner());
            subs.push(sub.clone());
            subs.len()
        };
        opened.insert(rel.to_path_buf(), t);
        self.connect_forgets(sub.inner(), t);
        Ok((sub, t))
    }

    /// Passes a sub-store tree's invalidations on with its inodes tagged.
    fn connect_forgets(&self, sub: &DiskCacheFs, t: usize) {
        let Some(tx) = self.forget_requests.lock().unwrap_or_else(|e| e.into_inner()).clone() else { return };
        let (local_tx, local_rx) = std::sync::mpsc::channel::<Invalidation>();
        sub.set_forget_requests(local_tx);
        // Without signals: made before the mount blocks SIGTERM, a thread
        // of its own would take it and end the daemon unmounted.
        let spawned = crate::service::spawn_without_signals(&format!("forget-{t}"), move || {
            for request in local_rx {
                let request = match request {
                    Invalidation::Entry { parent, name } => Invalidation::Entry { parent: tagged(t, parent), name },
                    Invalidation::Inode(ino) => Invalidation::Inode(tagged(t, ino)),
                };
                let _ = tx.send(request);
            }
        });
        if let Err(e) = spawned {
            log::warn!("no forget thread for sub-store {t}: {e}");
        }
    }

    fn sub_attr(t: usize, attr: Attr) -> Attr {
        with_ino(attr, tagged(t, attr.ino))
    }

    fn no_store_change(what: &OsStr) -> FsError {
        FsError::NotPermitted(format!(
            "{}: sub-stores are made by FanoutCache.cache(), .deque() and .index()",
            what.to_string_lossy()
        ))
    }
}

/// Passes a sub-store tree's entries on with their inodes tagged.
struct Tagging<'a> {
    out: &'a mut dyn DirReplier,
    tree: usize,
}

impl DirReplier for Tagging<'_> {
    fn add(&mut self, ino: u64, next_offset: u64, kind: Kind, name: &OsStr, attr: Option<&Attr>) -> bool {
        let attr = attr.map(|a| with_ino(*a, tagged(self.tree, a.ino)));
        self.out.add(tagged(self.tree, ino), next_offset, kind, name, attr.as_ref())
    }
}

/// Passes the main tree's root entries on and tells whether it filled.
struct Counting<'a> {
    out: &'a mut dyn DirReplier,
    full: bool,
}

impl DirReplier for Counting<'_> {
    fn add(&mut self, ino: u64, next_offset: u64, kind: Kind, name: &OsStr, attr: Option<&Attr>) -> bool {
        self.full = self.out.add(ino, next_offset, kind, name, attr);
        self.full
    }
}

impl Tree for WithSubStores {
    fn config(&self) -> &FsConfig {
        self.main.config()
    }

    fn set_request_stats(&self, stats: Arc<RequestStats>) {
        self.main.set_request_stats(stats.clone());
        for sub in self.subs.read().unwrap_or_else(|e| e.into_inner()).iter() {
            sub.set_request_stats(stats.clone());
        }
        let _ = self.request_stats.set(stats);
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        match self.route(parent)? {
            Route::Main(ROOT) if STORE_KINDS.iter().any(|k| name == *k) => self.lookup_store_path(Path::new(name)),
            Route::Main(p) => self.main.lookup(p, name),
            Route::StoreDir(rel) => self.lookup_store_path(&rel.join(name)),
            Route::Sub(sub, t, p) => sub.lookup(p, name).map(|a| Self::sub_attr(t, a)),
        }
    }

    fn negative_ttl(&self, parent: u64, name: &OsStr) -> Option<std::time::Duration> {
        // The sub-stores keep no misses (they have no epoch to raise).
        match self.route(parent) {
            Ok(Route::Main(p)) if p != ROOT => self.main.negative_ttl(p, name),
            _ => None,
        }
    }

    fn set_epoch_bump(&self, bump: Arc<dyn Fn() -> bool + Send + Sync>) {
        self.main.set_epoch_bump(bump)
    }

    fn forget(&self, ino: u64, nlookup: u64) {
        match self.route(ino) {
            Ok(Route::Main(i)) => self.main.forget(i, nlookup),
            Ok(Route::Sub(sub, _, i)) => sub.forget(i, nlookup),
            // Bounded by the directories on disk: kept.
            Ok(Route::StoreDir(_)) | Err(_) => {}
        }
    }

    fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        match self.route(ino)? {
            Route::Main(i) => self.main.getattr(i),
            Route::Sub(sub, t, i) => sub.getattr(i).map(|a| Self::sub_attr(t, a)),
            Route::StoreDir(_) => Ok(self.store_dir_attr(ino)),
        }
    }

    fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        size: Option<u64>,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> Result<Attr, FsError> {
        match self.route(ino)? {
            Route::Main(i) => self.main.setattr(i, fh, size, atime, mtime),
            Route::Sub(sub, t, i) => {
                let fh = fh.map(|f| f & LOCAL_MASK);
                sub.setattr(i, fh, size, atime, mtime).map(|a| Self::sub_attr(t, a))
            }
            Route::StoreDir(_) => Ok(self.store_dir_attr(ino)),
        }
    }

    fn readdir(&self, ino: u64, offset: u64, plus: bool, out: &mut dyn DirReplier) -> Result<(), FsError> {
        match self.route(ino)? {
            Route::Main(ROOT) => {
                if offset < ROOT_OFFSET_BASE {
                    let mut counting = Counting { out, full: false };
                    self.main.readdir(ROOT, offset, plus, &mut counting)?;
                    if counting.full {
                        return Ok(());
                    }
                    return self.readdir_kinds(ROOT_OFFSET_BASE, plus, counting.out);
                }
                self.readdir_kinds(offset, plus, out)
            }
            Route::Main(i) => self.main.readdir(i, offset, plus, out),
            Route::Sub(sub, t, i) => sub.readdir(i, offset, plus, &mut Tagging { out, tree: t }),
            Route::StoreDir(rel) => {
                for (next, name) in [(1u64, "."), (2u64, "..")] {
                    if offset < next && out.add(ino, next, Kind::Directory, OsStr::new(name), None) {
                        return Ok(());
                    }
                }
                let mut names: Vec<OsString> = std::fs::read_dir(self.directory.join(&rel))
                    .map_err(|e| FsError::io(rel.display().to_string(), e))?
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.file_name())
                    .collect();
                names.sort();
                for (i, name) in names.iter().enumerate() {
                    let next = i as u64 + 3;
                    if offset >= next {
                        continue;
                    }
                    let Ok(attr) = self.lookup_store_path(&rel.join(name)) else { continue };
                    let full = out.add(attr.ino, next, attr.kind, name, plus.then_some(&attr));
                    if full || !plus {
                        // Not passed on as a lookup: the sub-store's root
                        // count stays as the kernel holds it.
                        self.forget(attr.ino, 1);
                    }
                    if full {
                        return Ok(());
                    }
                }
                Ok(())
            }
        }
    }

    fn mknod_regular(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        match self.route(parent)? {
            Route::Main(ROOT) if STORE_KINDS.iter().any(|k| name == *k) => Err(Self::no_store_change(name)),
            Route::Main(p) => self.main.mknod_regular(p, name),
            Route::Sub(sub, t, p) => sub.mknod_regular(p, name).map(|a| Self::sub_attr(t, a)),
            Route::StoreDir(_) => Err(Self::no_store_change(name)),
        }
    }

    fn mkdir(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        match self.route(parent)? {
            Route::Main(ROOT) if STORE_KINDS.iter().any(|k| name == *k) => Err(Self::no_store_change(name)),
            Route::Main(p) => self.main.mkdir(p, name),
            Route::Sub(sub, t, p) => sub.mkdir(p, name).map(|a| Self::sub_attr(t, a)),
            Route::StoreDir(_) => Err(Self::no_store_change(name)),
        }
    }

    fn rmdir(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        match self.route(parent)? {
            Route::Main(ROOT) if STORE_KINDS.iter().any(|k| name == *k) => Err(Self::no_store_change(name)),
            Route::Main(p) => self.main.rmdir(p, name),
            Route::Sub(sub, _, p) => sub.rmdir(p, name),
            Route::StoreDir(_) => Err(Self::no_store_change(name)),
        }
    }

    fn unlink(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        match self.route(parent)? {
            Route::Main(p) => self.main.unlink(p, name),
            Route::Sub(sub, _, p) => sub.unlink(p, name),
            Route::StoreDir(_) => Err(Self::no_store_change(name)),
        }
    }

    fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), FsError> {
        match (self.route(parent)?, self.route(new_parent)?) {
            (Route::Main(p), Route::Main(np)) => self.main.rename(p, name, np, new_name, no_replace),
            (Route::Sub(sub, t, p), Route::Sub(_, nt, np)) if t == nt => sub.rename(p, name, np, new_name, no_replace),
            (Route::StoreDir(_), _) | (_, Route::StoreDir(_)) => Err(Self::no_store_change(name)),
            // Another cache: mv copies and deletes instead.
            _ => Err(FsError::CrossDevice(name.to_string_lossy().into_owned())),
        }
    }

    fn symlink(&self, parent: u64, name: &OsStr, target: &Path) -> Result<Attr, FsError> {
        match self.route(parent)? {
            Route::Main(p) => self.main.symlink(p, name, target),
            Route::Sub(sub, t, p) => sub.symlink(p, name, target).map(|a| Self::sub_attr(t, a)),
            Route::StoreDir(_) => Err(Self::no_store_change(name)),
        }
    }

    fn readlink(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        match self.route(ino)? {
            Route::Main(i) => self.main.readlink(i),
            Route::Sub(sub, _, i) => sub.readlink(i),
            Route::StoreDir(_) => {
                Err(FsError::InvalidValue { what: format!("inode {ino}"), reason: "a directory".into() })
            }
        }
    }

    fn create(
        &self,
        parent: u64,
        name: &OsStr,
        exclusive: bool,
        truncate: bool,
        append: bool,
    ) -> Result<(Attr, u64, OpenFlags), FsError> {
        match self.route(parent)? {
            Route::Main(ROOT) if STORE_KINDS.iter().any(|k| name == *k) => Err(Self::no_store_change(name)),
            Route::Main(p) => self.main.create(p, name, exclusive, truncate, append),
            Route::Sub(sub, t, p) => sub
                .create(p, name, exclusive, truncate, append)
                .map(|(a, fh, flags)| (Self::sub_attr(t, a), tagged(t, fh), flags)),
            Route::StoreDir(_) => Err(Self::no_store_change(name)),
        }
    }

    fn open(&self, ino: u64, write: bool, truncate: bool, append: bool) -> Result<(u64, OpenFlags), FsError> {
        match self.route(ino)? {
            Route::Main(i) => self.main.open(i, write, truncate, append),
            Route::Sub(sub, t, i) => sub.open(i, write, truncate, append).map(|(fh, f)| (tagged(t, fh), f)),
            Route::StoreDir(_) if write => Err(FsError::IsDirectory(format!("inode {ino}"))),
            Route::StoreDir(_) => Ok((0, OpenFlags::default())),
        }
    }

    fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        match self.route(ino)? {
            Route::Main(i) => self.main.read(i, fh, offset, size),
            Route::Sub(sub, _, i) => sub.read(i, fh & LOCAL_MASK, offset, size),
            Route::StoreDir(_) => Err(FsError::IsDirectory(format!("inode {ino}"))),
        }
    }

    fn write(&self, ino: u64, fh: u64, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        match self.route(ino)? {
            Route::Main(i) => self.main.write(i, fh, offset, data),
            Route::Sub(sub, _, i) => sub.write(i, fh & LOCAL_MASK, offset, data),
            Route::StoreDir(_) => Err(FsError::IsDirectory(format!("inode {ino}"))),
        }
    }

    fn flush(&self, fh: u64) -> Result<(), FsError> {
        match self.route_fh(fh)? {
            (None, fh) => self.main.flush(fh),
            (Some(sub), fh) => sub.flush(fh),
        }
    }

    fn fsync(&self, fh: u64) -> Result<(), FsError> {
        match self.route_fh(fh)? {
            (None, fh) => self.main.fsync(fh),
            (Some(sub), fh) => sub.fsync(fh),
        }
    }

    fn release(&self, fh: u64) -> Result<(), FsError> {
        match self.route_fh(fh)? {
            (None, fh) => self.main.release(fh),
            (Some(sub), fh) => sub.release(fh),
        }
    }

    fn statfs(&self) -> Result<StatFs, FsError> {
        self.main.statfs()
    }

    fn getxattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>, FsError> {
        match self.route(ino)? {
            Route::Main(i) => self.main.getxattr(i, name),
            Route::Sub(sub, _, i) => sub.getxattr(i, name),
            Route::StoreDir(_) => Err(FsError::NoAttribute(name.to_string_lossy().into_owned())),
        }
    }

    fn listxattr(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        match self.route(ino)? {
            Route::Main(i) => self.main.listxattr(i),
            Route::Sub(sub, _, i) => sub.listxattr(i),
            Route::StoreDir(_) => Ok(Vec::new()),
        }
    }

    fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], create: bool, replace: bool) -> Result<(), FsError> {
        match self.route(ino)? {
            Route::Main(i) => self.main.setxattr(i, name, value, create, replace),
            Route::Sub(sub, _, i) => sub.setxattr(i, name, value, create, replace),
            Route::StoreDir(_) => Err(FsError::AttributeNotSupported(name.to_string_lossy().into_owned())),
        }
    }

    fn removexattr(&self, ino: u64, name: &OsStr) -> Result<(), FsError> {
        match self.route(ino)? {
            Route::Main(i) => self.main.removexattr(i, name),
            Route::Sub(sub, _, i) => sub.removexattr(i, name),
            Route::StoreDir(_) => Err(FsError::NoAttribute(name.to_string_lossy().into_owned())),
        }
    }

    fn ttl_for(&self, ino: u64) -> std::time::Duration {
        match self.route(ino) {
            Ok(Route::Main(i)) => self.main.ttl_for(i),
            Ok(Route::Sub(sub, _, i)) => sub.ttl_for(i),
            _ => self.main.config().ttl,
        }
    }

    fn listing_cache(&self, ino: u64) -> (bool, bool) {
        match self.route(ino) {
            Ok(Route::Main(i)) => self.main.listing_cache(i),
            Ok(Route::Sub(sub, _, i)) => sub.listing_cache(i),
            _ => (false, false),
        }
    }

    fn set_passthrough(&self, on: bool) {
        self.passthrough.store(on, std::sync::atomic::Ordering::Release);
        self.main.set_passthrough(on);
        for sub in self.subs.read().unwrap_or_else(|e| e.into_inner()).iter() {
            sub.set_passthrough(on);
        }
    }

    fn backing_file(&self, fh: u64) -> Option<std::fs::File> {
        match self.route_fh(fh).ok()? {
            (None, fh) => self.main.backing_file(fh),
            (Some(sub), fh) => sub.backing_file(fh),
        }
    }

    fn content_len(&self, fh: u64) -> Option<u64> {
        match self.route_fh(fh).ok()? {
            (None, fh) => self.main.content_len(fh),
            (Some(sub), fh) => sub.content_len(fh),
        }
    }

    fn passthrough_refused(&self, fh: u64) {
        match self.route_fh(fh) {
            Ok((None, fh)) => self.main.passthrough_refused(fh),
            Ok((Some(sub), fh)) => sub.passthrough_refused(fh),
            Err(_) => {}
        }
    }

    fn watch(&self) -> bool {
        let subs: Vec<Arc<SubTree>> = self.subs.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut watched = self.main.watch();
        for sub in subs {
            watched |= sub.watch();
        }
        watched
    }
}

impl WithSubStores {
    /// The root's `cache/`, `deque/`, `index/` present on disk, at
    /// offsets from [`ROOT_OFFSET_BASE`].
    fn readdir_kinds(&self, offset: u64, plus: bool, out: &mut dyn DirReplier) -> Result<(), FsError> {
        for (i, kind) in STORE_KINDS.iter().enumerate() {
            let next = ROOT_OFFSET_BASE + i as u64 + 1;
            if offset >= next || !self.directory.join(kind).is_dir() {
                continue;
            }
            let Ok(attr) = self.lookup_store_path(Path::new(kind)) else { continue };
            if out.add(attr.ino, next, Kind::Directory, OsStr::new(kind), plus.then_some(&attr)) {
                return Ok(());
            }
        }
        Ok(())
    }
}
