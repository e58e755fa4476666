//! [`FanoutFs`]: a FanoutCache directory (shards `000/`, `001/`, ...) as
//! one tree (docs/SEMANTICS.md, "FanoutCache directories"; docs/DESIGN.md,
//! "The FanoutCache union").
//!
//! A union over one [`DiskCacheFs`] per shard, which stay as they are:
//! - **Directories present in several shards are one directory** (the
//!   root, `keys/` and every directory below it, `tags/`, `tags/T/`,
//!   `settings/`, `ops/`, `ops/incr/`, `ops/decr/`): a *merged* node of
//!   the union, which remembers each shard's inode for it; its listing is
//!   the shards' listings one after the other, a directory listed once.
//! - **A file or link belongs to one shard**: the key's, `Disk.hash(key) %
//!   shards`, as python-diskcache's `FanoutCache` puts it. Its inode is the
//!   shard's, tagged with the tree it is in: `(tree + 1) << 52 | local`
//!   (a tree's own inodes are below 2^48). New files, link targets and
//!   counters go to the key's shard; a rename to a key of another shard
//!   moves the entry (the target written first, then the source deleted).
//! - **Control files** (`stats`, `settings/NAME`, `ops/expire|cull|clear|
//!   check`) are the union's: an open opens the file in every shard; writes
//!   go to each (`size_limit` divided among them), reads combine their
//!   answers (sums, as `FanoutCache` adds its shards' up).
//! - **Sub-stores** (`cache/NAME`, `deque/NAME`, `index/NAME`, each a plain
//!   `Cache` in python-diskcache 5.6.3) are trees of their own, mounted at
//!   those paths, opened when first looked up.
//!
//! Readdir offsets: 1 and 2 are `.` and `..`; a shard's entry is
//! `(shard + 1) << 56 | the shard's offset` (a tree's offsets are below
//! 2^56), so a listing resumes in the right shard with no state kept.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::SystemTime;

use serde_json::Value as Json;

use crate::cache::fanout::disk_hash;
use crate::cache::settings::DBNAME;
use crate::cache::{Cache, CacheOptions, FanoutCache, Key, OpenError};
use crate::fs::error::FsError;
use crate::fs::filesystem::{Attr, DirReplier, DiskCacheFs, FsConfig, Invalidation, Kind, OpenFlags, StatFs};
use crate::fs::names::{ParsedName, name_to_key};
use crate::fs::pyrepr::python_float_repr;
use crate::fs::request_stats::RequestStats;
use crate::fs::tree::Tree;

/// A tree's own inodes are below this; the union tags them with the tree.
const TREE_SHIFT: u32 = 52;
const LOCAL_MASK: u64 = (1 << TREE_SHIFT) - 1;
/// A tree's readdir offsets are below 2^56; the shard goes above.
const OFFSET_SHIFT: u32 = 56;
const OFFSET_MASK: u64 = (1 << OFFSET_SHIFT) - 1;
/// Shards a listing's offset can name (the top bit stays clear: offsets
/// are signed to the kernel).
pub const MAX_SHARDS: usize = 127;
const ROOT: u64 = 1;
/// The root directories that hold sub-stores (`FanoutCache.cache`,
/// `.deque`, `.index`).
const STORE_KINDS: [&str; 3] = ["cache", "deque", "index"];
/// Views of one cache that a FanoutCache does not have (no push, pull or
/// peek; no Flyte cache in shards): not in the union's root.
const NOT_IN_UNION: [&str; 3] = ["queues", "task", "flyte2"];

/// What a merged directory's names are, which decides the shard a new name
/// goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Root,
    /// `keys/` and every directory below it: names are (parts of) keys.
    Keys,
    Tags,
    /// `tags/T/`: links named by keys' flat names.
    TagDir,
    Settings,
    Ops,
    /// `ops/incr/`, `ops/decr/`: counters named by keys' flat names.
    Counter,
}

impl Role {
    fn child(self, name: &OsStr) -> Role {
        match (self, name.as_bytes()) {
            (Role::Root, b"tags") => Role::Tags,
            (Role::Root, b"settings") => Role::Settings,
            (Role::Root, b"ops") => Role::Ops,
            (Role::Tags, _) => Role::TagDir,
            (Role::Ops, _) => Role::Counter,
            _ => Role::Keys,
        }
    }

    /// Whether a file here is a control file of every shard.
    fn holds_controls(self) -> bool {
        matches!(self, Role::Root | Role::Settings | Role::Ops)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Control {
    Stats,
    SizeLimit,
    Setting,
    Removed,
    Check,
}

enum Node {
    /// A directory of every shard that has it; `locals[s]` is shard s's
    /// inode for it, `counts[s]` how many lookups shard s has answered
    /// for it that the kernel has not forgotten.
    Merged { parent: u64, name: OsString, role: Role, locals: Vec<Option<u64>>, counts: Vec<u64>, lookups: u64 },
    /// A control file of every shard.
    Control { what: Control, locals: Vec<u64>, counts: Vec<u64>, lookups: u64 },
    /// `cache/`, `deque/`, `index/` and the directories of nested
    /// sub-store names (`cache/a/` for `cache/a/b`), relative to the
    /// FanoutCache's directory.
    StoreDir { rel: PathBuf },
}

#[derive(Default)]
struct Nodes {
    /// Union inode `i + 1` is `nodes[i]`.
    nodes: Vec<Node>,
    by_path: HashMap<(u64, OsString), u64>,
    /// (shard, shard's inode) of merged directories to the union's inode.
    by_local: HashMap<(usize, u64), u64>,
    /// Entries moved to another shard by a rename, by the inode the kernel
    /// still has (the source's): the target's inode.
    moved: HashMap<u64, u64>,
}

impl Nodes {
    fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(ino.checked_sub(1)? as usize)
    }

    fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.nodes.get_mut(ino.checked_sub(1)? as usize)
    }

    fn intern(&mut self, parent: u64, name: &OsStr, make: impl FnOnce() -> Node) -> u64 {
        if let Some(&ino) = self.by_path.get(&(parent, name.to_os_string())) {
            return ino;
        }
        self.nodes.push(make());
        let ino = self.nodes.len() as u64;
        self.by_path.insert((parent, name.to_os_string()), ino);
        ino
    }
}

enum UHandle {
    /// A file of one tree, its handle there.
    Owned { tree: usize, ino: u64, fh: u64 },
    /// A control file open in every shard: (shard's inode, shard's handle).
    Fan { what: Control, parts: Vec<(u64, u64)>, written: Vec<u8>, content: Option<Vec<u8>> },
}

pub struct FanoutFs {
    config: FsConfig,
    directory: PathBuf,
    options: CacheOptions,
    shard_count: usize,
    /// The shards (trees 0..shard_count), then the sub-stores opened so far.
    trees: RwLock<Vec<Arc<DiskCacheFs>>>,
    /// Sub-store trees by their directory relative to the FanoutCache's.
    stores: Mutex<HashMap<PathBuf, usize>>,
    /// Shared with the threads that translate the trees' forget requests.
    nodes: Arc<Mutex<Nodes>>,
    handles: Mutex<HashMap<u64, UHandle>>,
    next_fh: AtomicU64,
    /// Where names the kernel should forget go, as union inodes.
    forget_requests: Mutex<Option<Sender<Invalidation>>>,
    /// What the mount has served, shown in `stats` once the mount sets it
    /// (the union's requests; the shards' trees serve none of their own).
    request_stats: std::sync::OnceLock<Arc<RequestStats>>,
}

fn global(tree: usize, local: u64) -> u64 {
    ((tree as u64 + 1) << TREE_SHIFT) | (local & LOCAL_MASK)
}

fn split(ino: u64) -> Option<(usize, u64)> {
    let tree = ino >> TREE_SHIFT;
    (tree > 0).then(|| ((tree - 1) as usize, ino & LOCAL_MASK))
}

fn name_str(name: &OsStr) -> String {
    String::from_utf8_lossy(name.as_bytes()).into_owned()
}

fn with_ino(mut attr: Attr, ino: u64) -> Attr {
    attr.ino = ino;
    attr
}

/// Collects a batch of a tree's entries, which the union then passes on
/// with its own inodes and offsets (it may need to look a directory up in
/// the other shards first). Returning true tells the tree the entry was
/// not taken: it undoes that entry's lookup itself.
#[derive(Default)]
struct Batch {
    entries: Vec<(u64, u64, Kind, OsString, Option<Attr>)>,
}

impl DirReplier for Batch {
    fn add(&mut self, ino: u64, next_offset: u64, kind: Kind, name: &OsStr, attr: Option<&Attr>) -> bool {
        if self.entries.len() >= 64 {
            return true;
        }
        self.entries.push((ino, next_offset, kind, name.to_os_string(), attr.copied()));
        false
    }
}

/// The whole content of a tree's file, read through a handle of its own.
fn read_all(tree: &DiskCacheFs, ino: u64, fh: u64) -> Result<Vec<u8>, FsError> {
    let mut out = Vec::new();
    loop {
        let chunk = tree.read(ino, fh, out.len() as u64, 1 << 16)?;
        if chunk.is_empty() {
            return Ok(out);
        }
        out.extend_from_slice(&chunk);
    }
}

/// A number as a setting's file shows it: an integral value as an int.
fn number_text(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 9.0e15 { format!("{}\n", x as i64) } else { format!("{}\n", python_float_repr(x)) }
}

impl FanoutFs {
    /// Opens the FanoutCache in `directory` (every shard, with `options`)
    /// and the union over it.
    pub fn open(directory: &Path, options: CacheOptions, config: FsConfig) -> Result<FanoutFs, OpenError> {
        let fanout = FanoutCache::open_existing(directory, options.clone())?;
        let count = fanout.shards().len();
        if count > MAX_SHARDS {
            return Err(OpenError::Unreadable {
                path: directory.to_path_buf(),
                reason: format!("{count} shards: a mount takes at most {MAX_SHARDS}"),
            });
        }
        let trees: Vec<Arc<DiskCacheFs>> =
            fanout.into_shards().into_iter().map(|cache| Arc::new(DiskCacheFs::new(cache, config.clone()))).collect();
        let mut nodes = Nodes::default();
        let root = Node::Merged {
            parent: 0,
            name: OsString::new(),
            role: Role::Root,
            locals: vec![Some(ROOT); count],
            counts: vec![0; count],
            lookups: 0,
        };
        nodes.nodes.push(root);
        for s in 0..count {
            nodes.by_local.insert((s, ROOT), ROOT);
        }
        Ok(FanoutFs {
            config,
            directory: directory.to_path_buf(),
            options,
            shard_count: count,
            trees: RwLock::new(trees),
            stores: Mutex::new(HashMap::new()),
            nodes: Arc::new(Mutex::new(nodes)),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            forget_requests: Mutex::new(None),
            request_stats: std::sync::OnceLock::new(),
        })
    }

    pub fn shard_count(&self) -> usize {
        self.shard_count
    }

    /// Where to send the (directory inode, name) pairs the kernel should
    /// forget: each tree's requests, translated to the union's inodes.
    pub fn set_forget_requests(&self, tx: Sender<Invalidation>) {
        *self.forget_requests.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        for t in 0..self.trees().len() {
            self.connect_forgets(t);
        }
    }

    /// Passes tree `t`'s forget requests on, its directory inodes
    /// translated to the union's (a shard's directory is a merged node; a
    /// sub-store's inodes are its own, tagged).
    fn connect_forgets(&self, t: usize) {
        let Some(tx) = self.forget_requests.lock().unwrap_or_else(|e| e.into_inner()).clone() else { return };
        let (local_tx, local_rx) = std::sync::mpsc::channel::<Invalidation>();
        self.tree(t).set_forget_requests(local_tx);
        let nodes = Arc::clone(&self.nodes);
        let shard = t < self.shard_count;
        // Without signals: made before the mount blocks SIGTERM, a thread
        // of its own would take it and end the daemon unmounted (no clean
        // unmount, no commits finished: the harness saw exit by SIGTERM).
        let spawned = crate::service::spawn_without_signals(&format!("forget-{t}"), move || {
            let to_union = |local: u64| {
                if shard {
                    nodes.lock().unwrap_or_else(|e| e.into_inner()).by_local.get(&(t, local)).copied()
                } else {
                    Some(global(t, local))
                }
            };
            for request in local_rx {
                let request = match request {
                    Invalidation::Entry { parent, name } => {
                        to_union(parent).map(|parent| Invalidation::Entry { parent, name })
                    }
                    // A file's inode is the shard's own, tagged.
                    Invalidation::Inode(ino) => Some(Invalidation::Inode(global(t, ino))),
                };
                if let Some(request) = request {
                    let _ = tx.send(request);
                }
            }
        });
        if let Err(e) = spawned {
            log::warn!("no forget thread for tree {t}: {e}");
        }
    }

    fn trees(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<DiskCacheFs>>> {
        self.trees.read().unwrap_or_else(|e| e.into_inner())
    }

    fn tree(&self, t: usize) -> Arc<DiskCacheFs> {
        self.trees()[t].clone()
    }

    fn nodes(&self) -> MutexGuard<'_, Nodes> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handles(&self) -> MutexGuard<'_, HashMap<u64, UHandle>> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_handle(&self, h: UHandle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles().insert(fh, h);
        fh
    }

    fn check_writable(&self, what: &str) -> Result<(), FsError> {
        if self.config.read_only { Err(FsError::ReadOnly(what.to_string())) } else { Ok(()) }
    }

    /// The tree and inode an inode of a single tree stands for (following
    /// a move to another shard).
    fn owned(&self, ino: u64) -> Option<(usize, u64)> {
        let ino = self.nodes().moved.get(&ino).copied().unwrap_or(ino);
        split(ino)
    }

    fn merged(&self, ino: u64) -> Option<(Role, Vec<Option<u64>>)> {
        match self.nodes().get(ino)? {
            Node::Merged { role, locals, .. } => Some((*role, locals.clone())),
            _ => None,
        }
    }

    // -----------------------------------------------------------------------
    // Shards of names.

    /// The shard python-diskcache's FanoutCache keeps `key` in.
    fn shard_of_key(&self, key: &Key) -> usize {
        (disk_hash(key) % self.shard_count as u64) as usize
    }

    /// The shard a name in merged directory `parent` belongs to, when the
    /// name says (a key's part in `keys/`, a flat key name in `tags/T/`
    /// and the counters); `None` for a `%sha256:` name nobody has shown.
    fn shard_of_name(&self, parent: u64, role: Role, locals: &[Option<u64>], name: &OsStr) -> Option<usize> {
        match role {
            Role::Keys => {
                let (s, local) = locals.iter().enumerate().find_map(|(s, l)| l.map(|l| (s, l)))?;
                let key = self.tree(s).key_of_name(local, name).ok()?;
                let _ = parent;
                Some(self.shard_of_key(&key))
            }
            Role::TagDir | Role::Counter => match name_to_key(name.as_bytes()) {
                Ok(ParsedName::Key(k)) => Some(self.shard_of_key(&k)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Shard `s`'s inode for merged directory `ino`, made there if it has
    /// none yet (a new key's directories in its shard: in memory, as
    /// `mkdir` there makes them; a tag directory likewise).
    fn ensure_local(&self, ino: u64, s: usize) -> Result<u64, FsError> {
        let (parent, name) = match self.nodes().get(ino) {
            Some(Node::Merged { locals, parent, name, .. }) => {
                if let Some(l) = locals[s] {
                    return Ok(l);
                }
                (*parent, name.clone())
            }
            _ => return Err(FsError::NotDirectory(format!("inode {ino}"))),
        };
        let parent_local = self.ensure_local(parent, s)?;
        let tree = self.tree(s);
        let attr = match tree.lookup(parent_local, &name) {
            Ok(a) if a.kind == Kind::Directory => a,
            Ok(a) => {
                tree.forget(a.ino, 1);
                return Err(FsError::NotDirectory(name_str(&name)));
            }
            Err(_) => tree.mkdir(parent_local, &name)?,
        };
        let mut nodes = self.nodes();
        nodes.by_local.insert((s, attr.ino), ino);
        if let Some(Node::Merged { locals, counts, .. }) = nodes.get_mut(ino) {
            locals[s] = Some(attr.ino);
            counts[s] += 1;
        }
        Ok(attr.ino)
    }

    // -----------------------------------------------------------------------
    // Lookups.

    /// Looks `name` up in merged directory `parent`: one kernel lookup of
    /// the answer's inode, counted.
    fn lookup_merged(&self, parent: u64, role: Role, locals: &[Option<u64>], name: &OsStr) -> Result<Attr, FsError> {
        self.lookup_merged_at(parent, role, locals, name).map(|(attr, _)| attr)
    }

    /// [`Self::lookup_merged`], and for a directory the first shard that
    /// has it now (the one whose listing shows it).
    fn lookup_merged_at(
        &self,
        parent: u64,
        role: Role,
        locals: &[Option<u64>],
        name: &OsStr,
    ) -> Result<(Attr, Option<usize>), FsError> {
        if role == Role::Root {
            if NOT_IN_UNION.iter().any(|n| OsStr::new(n) == name) {
                return Err(FsError::NotFound(name_str(name)));
            }
            if STORE_KINDS.iter().any(|n| OsStr::new(n) == name) {
                return self.lookup_store_dir(parent, Path::new(name)).map(|a| (a, None));
            }
        }
        let asked: Vec<usize> = match role {
            Role::TagDir | Role::Counter => match self.shard_of_name(parent, role, locals, name) {
                Some(s) => vec![s],
                None => (0..self.shard_count).collect(),
            },
            _ => (0..self.shard_count).collect(),
        };
        let mut answers: Vec<(usize, Attr)> = Vec::new();
        let mut failure = None;
        for s in asked {
            // A shard without the directory has nothing in it.
            let Some(local) = locals[s] else { continue };
            match self.tree(s).lookup(local, name) {
                Ok(attr) => answers.push((s, attr)),
                Err(e @ FsError::NotFound(_)) => {
                    failure.get_or_insert(e);
                }
                Err(e) => failure = Some(e),
            }
        }
        if answers.is_empty() {
            return Err(failure.unwrap_or_else(|| FsError::NotFound(name_str(name))));
        }
        if answers.iter().any(|(_, a)| a.kind == Kind::Directory) {
            let mut first = None;
            let child_role = role.child(name);
            let n = self.shard_count;
            let mut nodes = self.nodes();
            let ino = nodes.intern(parent, name, || Node::Merged {
                parent,
                name: name.to_os_string(),
                role: child_role,
                locals: vec![None; n],
                counts: vec![0; n],
                lookups: 0,
            });
            for (s, attr) in &mut answers {
                if attr.kind != Kind::Directory {
                    // A key named like another shard's directory: its shard
                    // keeps a directory of that name too, where the key is
                    // `%self` (docs/SEMANTICS.md, "Keys as paths").
                    self.tree(*s).forget(attr.ino, 1);
                    let Some(local) = locals[*s] else { continue };
                    match self.tree(*s).keep_dir(local, name) {
                        Ok(dir) => *attr = dir,
                        Err(_) => continue,
                    }
                }
                first.get_or_insert(*attr);
                nodes.by_local.insert((*s, attr.ino), ino);
                if let Some(Node::Merged { locals, counts, .. }) = nodes.get_mut(ino) {
                    locals[*s] = Some(attr.ino);
                    counts[*s] += 1;
                }
            }
            if let Some(Node::Merged { lookups, .. }) = nodes.get_mut(ino) {
                *lookups += 1;
            }
            let first_shard = answers.iter().find(|(_, a)| a.kind == Kind::Directory).map(|(s, _)| *s);
            return Ok((with_ino(first.expect("a directory answered"), ino), first_shard));
        }
        if role.holds_controls() && answers.len() == self.shard_count {
            return self.control_entry(parent, name, &answers).map(|a| (a, None));
        }
        // A file or link of one shard: the key's (another shard's copy of
        // the same key, which FanoutCache would never read, is not shown).
        let owner = self.shard_of_name(parent, role, locals, name);
        let pick = answers.iter().position(|(s, _)| Some(*s) == owner).unwrap_or(0);
        let (s, attr) = answers.swap_remove(pick);
        for (other, a) in answers {
            self.tree(other).forget(a.ino, 1);
        }
        Ok((with_ino(attr, global(s, attr.ino)), None))
    }

    fn control_entry(&self, parent: u64, name: &OsStr, answers: &[(usize, Attr)]) -> Result<Attr, FsError> {
        let parent_role = self.merged(parent).map(|(r, _)| r);
        let what = match (parent_role, name.as_bytes()) {
            (Some(Role::Root), b"stats") => Control::Stats,
            (Some(Role::Settings), b"size_limit") => Control::SizeLimit,
            (Some(Role::Settings), _) => Control::Setting,
            (Some(Role::Ops), b"check") => Control::Check,
            _ => Control::Removed,
        };
        let locals: Vec<u64> = answers.iter().map(|(_, a)| a.ino).collect();
        let ino = {
            let mut nodes = self.nodes();
            let n = self.shard_count;
            let ino = nodes.intern(parent, name, || Node::Control {
                what,
                locals: locals.clone(),
                counts: vec![0; n],
                lookups: 0,
            });
            if let Some(Node::Control { locals: l, counts, lookups, .. }) = nodes.get_mut(ino) {
                *l = locals;
                for c in counts.iter_mut() {
                    *c += 1;
                }
                *lookups += 1;
            }
            ino
        };
        self.getattr(ino)
    }

    /// `cache/`, `deque/`, `index/` and what is in them.
    fn lookup_store_dir(&self, parent: u64, rel: &Path) -> Result<Attr, FsError> {
        let path = self.directory.join(rel);
        if path.join(DBNAME).is_file() {
            let t = self.open_store(rel)?;
            let attr = self.tree(t).getattr(ROOT)?;
            return Ok(with_ino(attr, global(t, attr.ino)));
        }
        if !path.is_dir() {
            return Err(FsError::NotFound(rel.display().to_string()));
        }
        let name = rel.file_name().unwrap_or_default().to_os_string();
        let rel = rel.to_path_buf();
        let ino = self.nodes().intern(parent, &name, || Node::StoreDir { rel });
        self.getattr(ino)
    }

    /// The tree of the sub-store in `rel` (a plain Cache), opened now if
    /// it is not open yet.
    fn open_store(&self, rel: &Path) -> Result<usize, FsError> {
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&t) = stores.get(rel) {
            return Ok(t);
        }
        let path = self.directory.join(rel);
        let cache =
            Cache::open_with(&path, self.options.clone()).map_err(|e| FsError::open(path.display().to_string(), e))?;
        let tree = Arc::new(DiskCacheFs::new(cache, self.config.clone()));
        let t = {
            let mut trees = self.trees.write().unwrap_or_else(|e| e.into_inner());
            trees.push(tree);
            trees.len() - 1
        };
        stores.insert(rel.to_path_buf(), t);
        self.connect_forgets(t);
        Ok(t)
    }

    fn store_dir_of(&self, ino: u64) -> Option<PathBuf> {
        match self.nodes().get(ino)? {
            Node::StoreDir { rel } => Some(rel.clone()),
            _ => None,
        }
    }

    /// A directory's attributes as the first shard shows its root's.
    fn own_dir_attr(&self, ino: u64) -> Result<Attr, FsError> {
        Ok(with_ino(self.tree(0).getattr(ROOT)?, ino))
    }

    // -----------------------------------------------------------------------
    // Control files.

    fn control(&self, ino: u64) -> Option<(Control, Vec<u64>)> {
        match self.nodes().get(ino)? {
            Node::Control { what, locals, .. } => Some((*what, locals.clone())),
            _ => None,
        }
    }

    /// What the shards' answers read as one (`parts`: each shard's content).
    fn combine(&self, what: Control, parts: &[Vec<u8>]) -> Vec<u8> {
        let json = |b: &Vec<u8>| serde_json::from_slice::<Json>(b).unwrap_or(Json::Null);
        let sum = |docs: &[Json], field: &str| docs.iter().map(|d| d[field].as_i64().unwrap_or(0)).sum::<i64>();
        let mut text = match what {
            Control::Setting => return parts.first().cloned().unwrap_or_default(),
            Control::SizeLimit => {
                let total: f64 =
                    parts.iter().map(|p| String::from_utf8_lossy(p).trim().parse::<f64>().unwrap_or(0.0)).sum();
                return number_text(total).into_bytes();
            }
            Control::Stats => {
                let docs: Vec<Json> = parts.iter().map(json).collect();
                let mut settings = docs.first().map(|d| d["settings"].clone()).unwrap_or(Json::Null);
                let limit: f64 = docs.iter().map(|d| d["settings"]["size_limit"].as_f64().unwrap_or(0.0)).sum();
                if let Some(map) = settings.as_object_mut() {
                    let limit = if limit.fract() == 0.0 { Json::from(limit as i64) } else { Json::from(limit) };
                    map.insert("size_limit".into(), limit);
                }
                let mut doc = serde_json::json!({
                    "directory": self.directory,
                    "fanout_shards": self.shard_count,
                    "count": sum(&docs, "count"),
                    "size": sum(&docs, "size"),
                    "volume": sum(&docs, "volume"),
                    "hits": sum(&docs, "hits"),
                    "misses": sum(&docs, "misses"),
                    "settings": settings,
                });
                if let Some(requests) = self.request_stats.get() {
                    doc["requests"] = requests.to_json();
                }
                let mut text = crate::fs::control::stats_text(&doc);
                text.pop(); // the newline added below
                text
            }
            Control::Removed => {
                if parts.iter().all(|p| p.is_empty()) {
                    return Vec::new();
                }
                let docs: Vec<Json> = parts.iter().map(json).collect();
                serde_json::to_vec_pretty(&serde_json::json!({"removed": sum(&docs, "removed")})).unwrap_or_default()
            }
            Control::Check => {
                let docs: Vec<Json> = parts.iter().map(json).collect();
                let fixed = docs.iter().any(|d| d["fixed"].as_bool() == Some(true));
                let warnings: Vec<Json> =
                    docs.iter().flat_map(|d| d["warnings"].as_array().cloned().unwrap_or_default()).collect();
                serde_json::to_vec_pretty(&serde_json::json!({"fixed": fixed, "warnings": warnings}))
                    .unwrap_or_default()
            }
        };
        text.push(b'\n');
        text
    }

    /// Reads every shard's control file through handles of its own.
    fn control_content(&self, what: Control, locals: &[u64]) -> Result<Vec<u8>, FsError> {
        let mut parts = Vec::new();
        for (s, &local) in locals.iter().enumerate() {
            let tree = self.tree(s);
            let (fh, _) = tree.open(local, false, false, false)?;
            let content = read_all(&tree, local, fh);
            tree.release(fh)?;
            parts.push(content?);
        }
        Ok(self.combine(what, &parts))
    }

    /// What a write to `size_limit` means for each shard: its share.
    fn share_of(&self, text: &[u8]) -> Vec<u8> {
        let trimmed = String::from_utf8_lossy(text).trim().to_string();
        match trimmed.parse::<f64>() {
            Ok(x) if x.is_finite() && !trimmed.is_empty() => {
                // As FanoutCache(size_limit=X) stores it: X / shards, a float.
                let mut share = python_float_repr(x / self.shard_count as f64);
                if text.ends_with(b"\n") {
                    share.push('\n');
                }
                share.into_bytes()
            }
            _ => text.to_vec(),
        }
    }

    fn forget_node(&self, ino: u64, nlookup: u64) {
        let release = {
            let mut nodes = self.nodes();
            match nodes.get_mut(ino) {
                Some(Node::Merged { locals, counts, lookups, .. }) => {
                    *lookups = lookups.saturating_sub(nlookup);
                    (*lookups == 0).then(|| {
                        let out: Vec<(usize, u64, u64)> = counts
                            .iter()
                            .enumerate()
                            .filter_map(|(s, &c)| Some((s, locals[s]?, c)).filter(|x| x.2 > 0))
                            .collect();
                        counts.iter_mut().for_each(|c| *c = 0);
                        out
                    })
                }
                Some(Node::Control { locals, counts, lookups, .. }) => {
                    *lookups = lookups.saturating_sub(nlookup);
                    (*lookups == 0).then(|| {
                        let out: Vec<(usize, u64, u64)> =
                            counts.iter().enumerate().filter(|x| *x.1 > 0).map(|(s, &c)| (s, locals[s], c)).collect();
                        counts.iter_mut().for_each(|c| *c = 0);
                        out
                    })
                }
                _ => None,
            }
        };
        for (s, local, n) in release.unwrap_or_default() {
            self.tree(s).forget(local, n);
        }
    }

    // -----------------------------------------------------------------------
    // Renames across shards.

    /// Moves a file entry to a key of another shard: the target is written
    /// in its shard first (content, type, tag, expiry, times), then the
    /// source deleted, so that nothing is lost if the daemon stops between
    /// the two (a FanoutCache has no transaction across shards).
    fn move_entry(
        &self,
        from: (usize, u64, &OsStr),
        to: (usize, u64, &OsStr),
        source_ino: u64,
        no_replace: bool,
    ) -> Result<(), FsError> {
        let (s1, parent1, name1) = from;
        let (s2, parent2, name2) = to;
        let src = self.tree(s1);
        let dst = self.tree(s2);
        let attr = src.lookup(parent1, name1)?;
        let result = (|| {
            if attr.kind != Kind::File {
                return Err(FsError::CrossDevice(name_str(name1)));
            }
            if no_replace {
                match dst.lookup(parent2, name2) {
                    Ok(a) => {
                        dst.forget(a.ino, 1);
                        return Err(FsError::Exists(name_str(name2)));
                    }
                    Err(FsError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            let mut xattrs = Vec::new();
            for name in src.listxattr(attr.ino)?.split(|&b| b == 0).filter(|n| !n.is_empty()) {
                let name = OsStr::from_bytes(name);
                if name == "user.diskcache.key_type" || name == "user.diskcache.key" {
                    continue;
                }
                xattrs.push((name.to_os_string(), src.getxattr(attr.ino, name)?));
            }
            let (rfh, _) = src.open(attr.ino, false, false, false)?;
            let copied = (|| {
                // A target being replaced goes first: a rewrite would keep
                // its tag and expiry, which the source's replace.
                match dst.unlink(parent2, name2) {
                    Ok(()) | Err(FsError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
                let (new, wfh, _) = dst.create(parent2, name2, false, true, false)?;
                let written = (|| {
                    let mut offset = 0u64;
                    loop {
                        let chunk = src.read(attr.ino, rfh, offset, 1 << 20)?;
                        if chunk.is_empty() {
                            break;
                        }
                        dst.write(new.ino, wfh, offset, &chunk)?;
                        offset += chunk.len() as u64;
                    }
                    for (name, value) in &xattrs {
                        dst.setxattr(new.ino, name, value, false, false)?;
                    }
                    dst.setattr(new.ino, Some(wfh), None, Some(attr.atime), Some(attr.mtime))?;
                    dst.flush(wfh)
                })();
                let released = dst.release(wfh);
                written.and(released)?;
                Ok(new.ino)
            })();
            let _ = src.release(rfh);
            let new_local = copied?;
            src.unlink(parent1, name1)?;
            Ok(new_local)
        })();
        src.forget(attr.ino, 1);
        let new_local = result?;
        // The kernel keeps the source's inode for the new name: it leads to
        // the target until forgotten (one lookup of the target, kept).
        let target = global(s2, new_local);
        let mut nodes = self.nodes();
        for v in nodes.moved.values_mut() {
            if *v == source_ino {
                *v = target;
            }
        }
        nodes.moved.insert(source_ino, target);
        Ok(())
    }

    /// The tree, parent inode there and name of the file `name` in union
    /// directory `parent`, and the union inode the kernel has for it.
    fn file_owner(&self, parent: u64, name: &OsStr) -> Result<(usize, u64, u64), FsError> {
        if let Some((t, local)) = split(parent) {
            let attr = self.tree(t).lookup(local, name)?;
            self.tree(t).forget(attr.ino, 1);
            return Ok((t, local, global(t, attr.ino)));
        }
        let (role, locals) = self.merged(parent).ok_or_else(|| FsError::NotDirectory(format!("inode {parent}")))?;
        let attr = self.lookup_merged(parent, role, &locals, name)?;
        let ino = attr.ino;
        // Not a lookup the kernel will forget: undo its count.
        self.forget(ino, 1);
        match self.owned(ino) {
            Some((t, _)) => {
                let parent_local = self.ensure_local(parent, t)?;
                Ok((t, parent_local, ino))
            }
            None if attr.kind == Kind::Directory => Err(FsError::IsDirectory(name_str(name))),
            None => Err(FsError::NotPermitted(name_str(name))),
        }
    }

    /// The tree a new name in `parent` goes to, and its inode for `parent`.
    fn new_name_home(&self, parent: u64, name: &OsStr) -> Result<(usize, u64), FsError> {
        if let Some((t, local)) = split(parent) {
            return Ok((t, local));
        }
        let (role, locals) = match self.merged(parent) {
            Some(m) => m,
            None if self.store_dir_of(parent).is_some() => {
                return Err(FsError::NotPermitted(format!(
                    "{}: sub-stores are made by python-diskcache (FanoutCache.cache, .deque, .index)",
                    name_str(name)
                )));
            }
            None => return Err(FsError::NotDirectory(format!("inode {parent}"))),
        };
        let s = match role {
            Role::Keys | Role::TagDir | Role::Counter => {
                self.shard_of_name(parent, role, &locals, name).ok_or_else(|| FsError::InvalidName {
                    name: name_str(name),
                    reason: "a %sha256: name names an existing key only".into(),
                })?
            }
            // The root, settings/, ops/ and tags/: the shard's own answer
            // (EPERM, EEXIST, ...) is the union's.
            _ => 0,
        };
        Ok((s, self.ensure_local(parent, s)?))
    }

    fn merged_or_store(&self, parent: u64) -> bool {
        self.merged(parent).is_some() || self.store_dir_of(parent).is_some()
    }
}

impl Tree for FanoutFs {
    fn config(&self) -> &FsConfig {
        &self.config
    }

    fn set_request_stats(&self, stats: Arc<RequestStats>) {
        let _ = self.request_stats.set(stats);
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        if let Some((t, local)) = split(parent) {
            let attr = self.tree(t).lookup(local, name)?;
            return Ok(with_ino(attr, global(t, attr.ino)));
        }
        if let Some(rel) = self.store_dir_of(parent) {
            return self.lookup_store_dir(parent, &rel.join(name));
        }
        let (role, locals) = self.merged(parent).ok_or_else(|| FsError::NotDirectory(format!("inode {parent}")))?;
        self.lookup_merged(parent, role, &locals, name)
    }

    fn forget(&self, ino: u64, nlookup: u64) {
        if split(ino).is_some() {
            let moved = self.nodes().moved.remove(&ino);
            if let Some((t, local)) = split(ino) {
                self.tree(t).forget(local, nlookup);
            }
            if let Some((t, local)) = moved.and_then(split) {
                self.tree(t).forget(local, 1);
            }
            return;
        }
        self.forget_node(ino, nlookup);
    }

    fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        if let Some((t, local)) = self.owned(ino) {
            return Ok(with_ino(self.tree(t).getattr(local)?, ino));
        }
        if let Some((_, locals)) = self.merged(ino) {
            let mut failure = None;
            for (s, local) in locals.iter().enumerate() {
                if let Some(local) = local {
                    match self.tree(s).getattr(*local) {
                        Ok(a) => return Ok(with_ino(a, ino)),
                        Err(e) => failure = Some(e),
                    }
                }
            }
            return Err(failure.unwrap_or_else(|| FsError::NotFound(format!("inode {ino}"))));
        }
        if let Some((what, locals)) = self.control(ino) {
            let mut attr = with_ino(self.tree(0).getattr(locals[0])?, ino);
            if matches!(what, Control::Stats | Control::Setting | Control::SizeLimit) {
                attr.size = self.control_content(what, &locals)?.len() as u64;
            }
            return Ok(attr);
        }
        if self.store_dir_of(ino).is_some() {
            return self.own_dir_attr(ino);
        }
        Err(FsError::NotFound(format!("inode {ino}")))
    }

    fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        size: Option<u64>,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> Result<Attr, FsError> {
        if let Some((t, local)) = self.owned(ino) {
            let local_fh = fh.and_then(|fh| match self.handles().get(&fh) {
                Some(UHandle::Owned { fh, .. }) => Some(*fh),
                _ => None,
            });
            return Ok(with_ino(self.tree(t).setattr(local, local_fh, size, atime, mtime)?, ino));
        }
        if let Some(size) = size {
            // A control file being written (`echo V > settings/NAME`
            // truncates it first): truncate it in every shard.
            let parts = fh.and_then(|fh| match self.handles().get(&fh) {
                Some(UHandle::Fan { parts, .. }) => Some(parts.clone()),
                _ => None,
            });
            let Some(parts) = parts else {
                // No control file open: the first shard's refusal (EISDIR,
                // EACCES for stats, EINVAL for a setting) is the union's.
                let (s, local) = self.xattr_target(ino)?;
                self.tree(s).setattr(local, None, Some(size), atime, mtime)?;
                return Err(FsError::IsDirectory(format!("inode {ino}")));
            };
            if let Some(fh) = fh
                && let Some(UHandle::Fan { written, .. }) = self.handles().get_mut(&fh)
            {
                written.resize(size as usize, b' ');
            }
            for (s, (local, lfh)) in parts.iter().enumerate() {
                self.tree(s).setattr(*local, Some(*lfh), Some(size), None, None)?;
            }
        }
        // A merged directory's times are set in every shard that has it
        // (each keeps them while nothing changes in it); control files'
        // times are not kept.
        if (atime.is_some() || mtime.is_some())
            && let Some((_, locals)) = self.merged(ino)
        {
            for (s, local) in locals.iter().enumerate() {
                if let Some(local) = local {
                    self.tree(s).setattr(*local, None, None, atime, mtime)?;
                }
            }
        }
        self.getattr(ino)
    }

    fn readdir(&self, ino: u64, offset: u64, plus: bool, out: &mut dyn DirReplier) -> Result<(), FsError> {
        if let Some((t, local)) = split(ino) {
            let tree = self.tree(t);
            let mut relay = Batch::default();
            let mut offset = offset;
            loop {
                tree.readdir(local, offset, plus, &mut relay)?;
                let entries = std::mem::take(&mut relay.entries);
                if entries.is_empty() {
                    return Ok(());
                }
                for (i, (eino, next, kind, name, attr)) in entries.iter().enumerate() {
                    let g = global(t, *eino);
                    if out.add(g, *next, *kind, name, attr.map(|a| with_ino(a, g)).as_ref()) {
                        // Not taken: the tree's lookups for the rest are undone.
                        if plus {
                            for (eino, _, _, name, _) in &entries[i..] {
                                if name != "." && name != ".." {
                                    tree.forget(*eino, 1);
                                }
                            }
                        }
                        return Ok(());
                    }
                    offset = *next;
                }
            }
        }
        for (next, name) in [(1u64, "."), (2u64, "..")] {
            if offset < next && out.add(ino, next, Kind::Directory, OsStr::new(name), None) {
                return Ok(());
            }
        }
        if let Some(rel) = self.store_dir_of(ino) {
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
                let Ok(attr) = self.lookup(ino, name) else { continue };
                if out.add(attr.ino, next, attr.kind, name, plus.then_some(&attr)) {
                    self.forget(attr.ino, 1);
                    return Ok(());
                }
                if !plus {
                    self.forget(attr.ino, 1);
                }
            }
            return Ok(());
        }
        let (role, locals) = self.merged(ino).ok_or_else(|| FsError::NotDirectory(format!("inode {ino}")))?;
        if role == Role::Root {
            let mut names = vec!["keys", "tags"];
            names.extend(STORE_KINDS.iter().copied().filter(|n| self.directory.join(n).is_dir()));
            for (i, name) in names.iter().enumerate() {
                let next = i as u64 + 3;
                if offset >= next {
                    continue;
                }
                let attr = self.lookup(ino, OsStr::new(name))?;
                if out.add(attr.ino, next, attr.kind, OsStr::new(name), plus.then_some(&attr)) {
                    self.forget(attr.ino, 1);
                    return Ok(());
                }
                if !plus {
                    self.forget(attr.ino, 1);
                }
            }
            return Ok(());
        }
        // The shards' listings one after the other, from where `offset` says.
        let (mut shard, mut local_offset) = match offset >> OFFSET_SHIFT {
            0 => (0, 2),
            s => ((s - 1) as usize, offset & OFFSET_MASK),
        };
        while shard < self.shard_count {
            let Some(local) = locals[shard] else {
                (shard, local_offset) = (shard + 1, 2);
                continue;
            };
            let tree = self.tree(shard);
            let mut relay = Batch::default();
            match tree.readdir(local, local_offset, plus, &mut relay) {
                Ok(()) => {}
                // Gone from this shard since: the others still list.
                Err(FsError::NotFound(_) | FsError::NotDirectory(_)) => {}
                Err(e) => return Err(e),
            }
            let entries = std::mem::take(&mut relay.entries);
            if entries.is_empty() {
                (shard, local_offset) = (shard + 1, 2);
                continue;
            }
            for (i, (eino, next, kind, name, attr)) in entries.iter().enumerate() {
                local_offset = *next;
                if name == "." || name == ".." {
                    continue;
                }
                let union_offset = ((shard as u64 + 1) << OFFSET_SHIFT) | (*next & OFFSET_MASK);
                let (uino, uattr) = if *kind == Kind::Directory {
                    if plus {
                        tree.forget(*eino, 1);
                    }
                    // Listed once, by the first shard that has it.
                    let Ok((attr, first)) = self.lookup_merged_at(ino, role, &locals, name) else { continue };
                    if first != Some(shard) {
                        self.forget(attr.ino, 1);
                        continue;
                    }
                    (attr.ino, Some(attr))
                } else {
                    let g = global(shard, *eino);
                    (g, attr.map(|a| with_ino(a, g)))
                };
                if out.add(uino, union_offset, *kind, name, if plus { uattr.as_ref() } else { None }) {
                    if *kind == Kind::Directory {
                        self.forget(uino, 1);
                    }
                    if plus {
                        for (eino, _, _, name, _) in &entries[i + 1..] {
                            if name != "." && name != ".." {
                                tree.forget(*eino, 1);
                            }
                        }
                        if *kind != Kind::Directory {
                            tree.forget(*eino, 1);
                        }
                    }
                    return Ok(());
                }
                if *kind == Kind::Directory && !plus {
                    self.forget(uino, 1);
                }
            }
        }
        Ok(())
    }

    fn mknod_regular(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let (t, local) = self.new_name_home(parent, name)?;
        let attr = self.tree(t).mknod_regular(local, name)?;
        Ok(with_ino(attr, global(t, attr.ino)))
    }

    fn mkdir(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        if let Some((t, local)) = split(parent) {
            let attr = self.tree(t).mkdir(local, name)?;
            return Ok(with_ino(attr, global(t, attr.ino)));
        }
        let Some((role, locals)) = self.merged(parent) else {
            return Err(FsError::NotPermitted(format!(
                "mkdir {}: sub-stores are made by python-diskcache (FanoutCache.cache, .deque, .index)",
                name_str(name)
            )));
        };
        if role == Role::Root && STORE_KINDS.iter().any(|n| OsStr::new(n) == name) {
            return Err(FsError::Exists(name_str(name)));
        }
        if let Ok(attr) = self.lookup_merged(parent, role, &locals, name) {
            self.forget(attr.ino, 1);
            return Err(FsError::Exists(name_str(name)));
        }
        // A directory of the union is one in every shard (in memory there,
        // as mkdir makes it in one cache), so that a key of any shard can go
        // in it. The first shard's refusal (EPERM where the tree is fixed)
        // is the union's.
        let first = self.ensure_local(parent, 0)?;
        self.tree(0).mkdir(first, name).map(|a| self.tree(0).forget(a.ino, 1))?;
        for s in 1..self.shard_count {
            let local = self.ensure_local(parent, s)?;
            if let Ok(a) = self.tree(s).mkdir(local, name) {
                self.tree(s).forget(a.ino, 1);
            }
        }
        let locals = self.merged(parent).map(|m| m.1).unwrap_or(locals);
        self.lookup_merged(parent, role, &locals, name)
    }

    fn rmdir(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        if let Some((t, local)) = split(parent) {
            return self.tree(t).rmdir(local, name);
        }
        self.check_writable(&name_str(name))?;
        let Some((_, locals)) = self.merged(parent) else {
            return Err(FsError::NotPermitted(format!("rmdir {}", name_str(name))));
        };
        // Each shard's: `rm -r tags/T` evicts T in every shard; an empty
        // directory of keys/ goes from each.
        let mut removed = false;
        let mut failure = None;
        for (s, local) in locals.iter().enumerate() {
            let Some(local) = local else { continue };
            match self.tree(s).rmdir(*local, name) {
                Ok(()) => removed = true,
                Err(FsError::NotFound(m)) => {
                    failure.get_or_insert(FsError::NotFound(m));
                }
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            Some(FsError::NotFound(_)) if removed => Ok(()),
            Some(e) => Err(e),
            None if removed => Ok(()),
            None => Err(FsError::NotFound(name_str(name))),
        }
    }

    fn unlink(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        self.check_writable(&name_str(name))?;
        if !self.merged_or_store(parent) && split(parent).is_none() {
            return Err(FsError::NotDirectory(format!("inode {parent}")));
        }
        let (t, local, _) = self.file_owner(parent, name)?;
        self.tree(t).unlink(local, name)
    }

    fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), FsError> {
        self.check_writable(&name_str(name))?;
        if let (Some((t1, l1)), Some((t2, l2))) = (split(parent), split(new_parent)) {
            if t1 != t2 {
                return Err(FsError::CrossDevice(name_str(name)));
            }
            return self.tree(t1).rename(l1, name, l2, new_name, no_replace);
        }
        let (Some((role1, _)), Some((role2, _))) = (self.merged(parent), self.merged(new_parent)) else {
            return Err(FsError::CrossDevice(name_str(name)));
        };
        // A directory's keys change shard when their names change: mv copies
        // and deletes instead (docs/SEMANTICS.md).
        let (s1, local1, source_ino) = match self.file_owner(parent, name) {
            Err(FsError::IsDirectory(_)) => return Err(FsError::CrossDevice(name_str(name))),
            other => other?,
        };
        let (s2, local2) = self.new_name_home(new_parent, new_name)?;
        if s1 == s2 {
            return self.tree(s1).rename(local1, name, local2, new_name, no_replace);
        }
        if role1 != Role::Keys || role2 != Role::Keys {
            return Err(FsError::CrossDevice(name_str(name)));
        }
        self.move_entry((s1, local1, name), (s2, local2, new_name), source_ino, no_replace)
    }

    fn symlink(&self, parent: u64, name: &OsStr, target: &Path) -> Result<Attr, FsError> {
        let (t, local) = self.new_name_home(parent, name)?;
        let attr = self.tree(t).symlink(local, name, target)?;
        Ok(with_ino(attr, global(t, attr.ino)))
    }

    fn readlink(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        let (t, local) = self
            .owned(ino)
            .ok_or_else(|| FsError::InvalidValue { what: format!("inode {ino}"), reason: "not a link".into() })?;
        self.tree(t).readlink(local)
    }

    fn create(
        &self,
        parent: u64,
        name: &OsStr,
        exclusive: bool,
        truncate: bool,
        append: bool,
    ) -> Result<(Attr, u64, OpenFlags), FsError> {
        let (t, local) = self.new_name_home(parent, name)?;
        let tree = self.tree(t);
        let (attr, fh, flags) = tree.create(local, name, exclusive, truncate, append)?;
        let ufh = self.new_handle(UHandle::Owned { tree: t, ino: attr.ino, fh });
        Ok((with_ino(attr, global(t, attr.ino)), ufh, flags))
    }

    fn open(&self, ino: u64, write: bool, truncate: bool, append: bool) -> Result<(u64, OpenFlags), FsError> {
        if let Some((t, local)) = self.owned(ino) {
            let (fh, flags) = self.tree(t).open(local, write, truncate, append)?;
            return Ok((self.new_handle(UHandle::Owned { tree: t, ino: local, fh }), flags));
        }
        let Some((what, locals)) = self.control(ino) else {
            return Err(FsError::IsDirectory(format!("inode {ino}")));
        };
        let mut parts = Vec::new();
        for (s, &local) in locals.iter().enumerate() {
            match self.tree(s).open(local, write, truncate, append) {
                Ok((fh, _)) => parts.push((local, fh)),
                Err(e) => {
                    for (s, (_, fh)) in parts.iter().enumerate() {
                        let _ = self.tree(s).release(*fh);
                    }
                    return Err(e);
                }
            }
        }
        let flags = OpenFlags { direct_io: true, ..OpenFlags::default() };
        Ok((self.new_handle(UHandle::Fan { what, parts, written: Vec::new(), content: None }), flags))
    }

    fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        let handle = match self.handles().get(&fh) {
            Some(UHandle::Owned { tree, ino, fh }) => Ok((*tree, *ino, *fh)),
            Some(UHandle::Fan { what, parts, content, .. }) => Err((*what, parts.clone(), content.clone())),
            None => return Err(FsError::BadHandle(fh)),
        };
        let _ = ino;
        match handle {
            Ok((t, local, lfh)) => self.tree(t).read(local, lfh, offset, size),
            Err((what, parts, content)) => {
                let content = match content.filter(|_| offset > 0) {
                    Some(c) => c,
                    None => {
                        let mut each = Vec::new();
                        for (s, (local, lfh)) in parts.iter().enumerate() {
                            each.push(read_all(&self.tree(s), *local, *lfh)?);
                        }
                        let c = self.combine(what, &each);
                        if let Some(UHandle::Fan { content, .. }) = self.handles().get_mut(&fh) {
                            *content = Some(c.clone());
                        }
                        c
                    }
                };
                let start = (offset as usize).min(content.len());
                let end = start.saturating_add(size as usize).min(content.len());
                Ok(content[start..end].to_vec())
            }
        }
    }

    fn write(&self, ino: u64, fh: u64, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        let _ = ino;
        let handle = match self.handles().get_mut(&fh) {
            Some(UHandle::Owned { tree, ino, fh }) => Ok((*tree, *ino, *fh)),
            Some(UHandle::Fan { what, parts, written, content }) => {
                let end = offset as usize + data.len();
                if written.len() < end {
                    written.resize(end, 0);
                }
                written[offset as usize..end].copy_from_slice(data);
                *content = None;
                Err((*what, parts.clone(), written.clone()))
            }
            None => return Err(FsError::BadHandle(fh)),
        };
        match handle {
            Ok((t, local, lfh)) => self.tree(t).write(local, lfh, offset, data),
            Err((what, parts, written)) => {
                for (s, (local, lfh)) in parts.iter().enumerate() {
                    let tree = self.tree(s);
                    if what == Control::SizeLimit {
                        // Each shard holds its share of the whole text.
                        let share = self.share_of(&written);
                        tree.setattr(*local, Some(*lfh), Some(0), None, None)?;
                        tree.write(*local, *lfh, 0, &share)?;
                    } else {
                        tree.write(*local, *lfh, offset, data)?;
                    }
                }
                Ok(data.len())
            }
        }
    }

    fn flush(&self, fh: u64) -> Result<(), FsError> {
        match self.fan_or_owned(fh)? {
            Ok((t, lfh)) => self.tree(t).flush(lfh),
            Err(parts) => self.on_every_part(&parts, |tree, lfh| tree.flush(lfh)),
        }
    }

    fn fsync(&self, fh: u64) -> Result<(), FsError> {
        match self.fan_or_owned(fh)? {
            Ok((t, lfh)) => self.tree(t).fsync(lfh),
            Err(parts) => {
                for (s, (_, lfh)) in parts.iter().enumerate() {
                    self.tree(s).fsync(*lfh)?;
                }
                Ok(())
            }
        }
    }

    fn release(&self, fh: u64) -> Result<(), FsError> {
        let handle = self.handles().remove(&fh).ok_or(FsError::BadHandle(fh))?;
        match handle {
            UHandle::Owned { tree, fh, .. } => self.tree(tree).release(fh),
            UHandle::Fan { parts, .. } => self.on_every_part(&parts, |tree, lfh| tree.release(lfh)),
        }
    }

    fn statfs(&self) -> Result<StatFs, FsError> {
        self.tree(0).statfs()
    }

    fn getxattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>, FsError> {
        // Names that are not ours (security.selinux, security.capability,
        // ACLs: the kernel asks on every `ls -l` and write) without a lock.
        if crate::fs::xattr::XattrName::parse(name).is_none() {
            return Err(FsError::NoAttribute(name_str(name)));
        }
        let (t, local) = self.xattr_target(ino)?;
        self.tree(t).getxattr(local, name)
    }

    fn listxattr(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        let (t, local) = self.xattr_target(ino)?;
        self.tree(t).listxattr(local)
    }

    fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], create: bool, replace: bool) -> Result<(), FsError> {
        let (t, local) = self.xattr_target(ino)?;
        self.tree(t).setxattr(local, name, value, create, replace)
    }

    fn removexattr(&self, ino: u64, name: &OsStr) -> Result<(), FsError> {
        let (t, local) = self.xattr_target(ino)?;
        self.tree(t).removexattr(local, name)
    }
}

impl FanoutFs {
    /// Runs `op` on every shard's part of a fanned handle, each whatever
    /// the others gave; the first error is the answer.
    fn on_every_part(
        &self,
        parts: &[(u64, u64)],
        op: impl Fn(&DiskCacheFs, u64) -> Result<(), FsError>,
    ) -> Result<(), FsError> {
        let mut result = Ok(());
        for (s, (_, lfh)) in parts.iter().enumerate() {
            let r = op(&self.tree(s), *lfh);
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// An open file's tree and handle there, or a control file's parts.
    #[allow(clippy::type_complexity)]
    fn fan_or_owned(&self, fh: u64) -> Result<Result<(usize, u64), Vec<(u64, u64)>>, FsError> {
        match self.handles().get(&fh) {
            Some(UHandle::Owned { tree, fh, .. }) => Ok(Ok((*tree, *fh))),
            Some(UHandle::Fan { parts, .. }) => Ok(Err(parts.clone())),
            None => Err(FsError::BadHandle(fh)),
        }
    }

    /// Where an inode's attributes are: its tree's, or for a directory or
    /// control file of the union, the first shard's.
    fn xattr_target(&self, ino: u64) -> Result<(usize, u64), FsError> {
        if let Some(owned) = self.owned(ino) {
            return Ok(owned);
        }
        if let Some((_, locals)) = self.merged(ino)
            && let Some((s, l)) = locals.iter().enumerate().find_map(|(s, l)| l.map(|l| (s, l)))
        {
            return Ok((s, l));
        }
        if let Some((_, locals)) = self.control(ino) {
            return Ok((0, locals[0]));
        }
        Ok((0, ROOT))
    }
}
