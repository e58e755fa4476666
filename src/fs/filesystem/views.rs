//! The views beside `keys/` and `tags/` (docs/SEMANTICS.md, "Queues",
//! "Flyte task cache", "Operations"):
//!
//! - `queues/P/`: diskcache's queue with prefix `P` (`%int` is the integer
//!   queue), items as links to `../../keys/NAME` in queue order; a new file
//!   pushes, `.pull` pulls.
//! - `task/T/V/`: flytekit's local task cache entries of task `T`, version
//!   `V`, as links to `../../../keys/T-V-HASH`; `HASH.json` renders the
//!   outputs; `.resolve` and `.key` take inputs and answer; `.stale/`
//!   (not listed) holds the links of the version's stale entries, those
//!   whose outputs name local files that are gone (docs/FLYTE.md).
//! - `ops/`: `expire`, `cull`, `clear`, `check` run on write; `incr/NAME`
//!   and `decr/NAME` add to a counter on write.
//!
//! Every queue and every task directory exists (a lookup of any valid name
//! succeeds), so pushing to a new queue or resolving for a new task needs no
//! `mkdir`; listings show those with live entries.

use std::collections::{HashMap, HashSet};

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use std::sync::Arc;

use super::{Attr, DirReplier, DiskCacheFs, Kind, OpenFlags, State, Tables, name_str};
use crate::cache::{Key, RawContent, Scalar, Side, Value, ValueType};
use crate::flyte::input_record::seen_inputs;
use crate::flyte::key::{cache_key, decode_literal_map};
use crate::flyte::render::literal_map_to_json;
use crate::fs::content::value_content;
use crate::fs::error::FsError;
use crate::fs::grammar::{ResolverAnswer, is_md5_hex, item_key, item_name, parse_resolver, split_task_key, str_name};
use crate::fs::handle::{Handle, Op, ResolveHandle, Snapshot};
use crate::fs::inode::{
    DECR_DIR, INCR_DIR, OPS_CHECK, OPS_CLEAR, OPS_CULL, OPS_DIR, OPS_EXPIRE, OPS_REMOTE, QUEUES_DIR, TASK_DIR,
    VIEW_DIR_BASE, VIEW_END, VIEW_NODE_BASE,
};
use crate::fs::intern::Interner;
use crate::fs::names::{NameError, ParsedName, key_to_name, name_to_key};
use crate::fs::store::StoreConn;

mod actions;
mod nodes;

/// The reserved name of the integer queue (`push(prefix=None)`).
pub const INT_QUEUE: &str = "%int";

/// A directory of a view.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ViewDir {
    /// `queues/P/`; `None` is the integer queue.
    Queue(Option<String>),
    /// `task/T/`.
    Task(String),
    /// `task/T/V/`.
    TaskVersion(String, String),
    /// `task/T/V/.stale/`.
    TaskStale(String, String),
}

/// The name of a task version's directory of stale entries.
pub const STALE_NAME: &str = ".stale";

/// What a name in a view directory is.
#[derive(Clone, Debug)]
pub(super) enum Node {
    QueueItem {
        key: Key,
    },
    Pull {
        queue: Option<String>,
        side: Side,
    },
    /// Any other name in a queue: a file being pushed.
    PushFile {
        queue: Option<String>,
        side: Side,
    },
    TaskEntry {
        key: String,
    },
    /// A link in `task/T/V/.stale/`: there while the entry is stale.
    StaleEntry {
        key: String,
    },
    TaskJson {
        key: String,
    },
    Resolver {
        task: String,
        version: String,
        ignore: Vec<String>,
        answer: ResolverAnswer,
    },
    Counter {
        key: Key,
        decr: bool,
    },
}

/// The daemon's tables for the views. Directories and nodes get inode
/// numbers the first time they are seen and keep them for the daemon's
/// life (bounded by what was looked up or listed).
#[derive(Default)]
pub struct ViewTable {
    /// Directories by inode - VIEW_DIR_BASE.
    dirs: Interner<ViewDir, ViewDir>,
    /// (parent directory inode, name) by node inode - VIEW_NODE_BASE.
    nodes: Interner<(u64, String), (u64, String)>,
    /// Links made by `symlink` (a restore), shown until their key arrives.
    restored_links: HashSet<u64>,
    /// The last listing of each view directory, served to the readdir
    /// calls that continue it (offsets are positions in it).
    listings: HashMap<u64, Vec<(String, u64, Kind)>>,
    /// What `ops/expire`, `ops/cull`, `ops/clear` last reported.
    last_results: HashMap<u64, Vec<u8>>,
}

impl ViewTable {
    /// The kernel was given view inode `ino` (lifetimes.rs).
    pub(super) fn looked_up(&mut self, ino: u64) {
        match ino {
            VIEW_DIR_BASE..VIEW_NODE_BASE => self.dirs.looked_up((ino - VIEW_DIR_BASE) as usize),
            VIEW_NODE_BASE..VIEW_END => self.nodes.looked_up((ino - VIEW_NODE_BASE) as usize),
            _ => {}
        }
    }

    pub(super) fn forget(&mut self, ino: u64, n: u64) {
        match ino {
            VIEW_DIR_BASE..VIEW_NODE_BASE => self.dirs.forget((ino - VIEW_DIR_BASE) as usize, n),
            VIEW_NODE_BASE..VIEW_END => self.nodes.forget((ino - VIEW_NODE_BASE) as usize, n),
            _ => {}
        }
    }

    /// Drops the directories and nodes nobody holds past `unheld`; the
    /// stashed listings go with them (their inode numbers may be reused).
    pub(super) fn trim(&mut self, unheld: usize) {
        let dropped = self.nodes.trim(unheld) | self.dirs.trim(unheld);
        if dropped {
            self.listings.clear();
        }
    }

    fn dir_ino(&mut self, dir: ViewDir) -> u64 {
        VIEW_DIR_BASE + self.dirs.intern(dir.clone(), || dir) as u64
    }

    fn dir(&self, ino: u64) -> Option<&ViewDir> {
        if !(VIEW_DIR_BASE..VIEW_NODE_BASE).contains(&ino) {
            return None;
        }
        self.dirs.get((ino - VIEW_DIR_BASE) as usize)
    }

    fn node_ino(&mut self, parent: u64, name: &str) -> u64 {
        let id = (parent, name.to_string());
        VIEW_NODE_BASE + self.nodes.intern(id.clone(), || id) as u64
    }

    fn node(&self, ino: u64) -> Option<(u64, &str)> {
        let (parent, name) = self.nodes.get(ino.checked_sub(VIEW_NODE_BASE)? as usize)?;
        Some((*parent, name.as_str()))
    }
}

fn parse_str_name(name: &OsStr) -> Result<String, FsError> {
    match name_to_key(name.as_bytes()) {
        Ok(ParsedName::Key(Key::Str(s))) => Ok(s),
        Ok(_) => Err(FsError::InvalidName { name: name_str(name), reason: "names a str, named as a str key".into() }),
        Err(e) => Err(super::bad_name(name, e)),
    }
}

impl DiskCacheFs {
    pub(super) fn classify(st: &Tables, parent: u64, name: &str) -> Result<Node, FsError> {
        let invalid = |reason: &str| FsError::InvalidName { name: name.to_string(), reason: reason.to_string() };
        if parent == INCR_DIR || parent == DECR_DIR {
            let key = match name_to_key(name.as_bytes()) {
                Ok(ParsedName::Key(k)) => k,
                Ok(ParsedName::Hashed(_)) => return Err(invalid("a counter is named by its key, not a %sha256: name")),
                Err(NameError::TooLong) => return Err(FsError::NameTooLong(name.to_string())),
                Err(NameError::Invalid(reason)) => return Err(invalid(&reason)),
            };
            return Ok(Node::Counter { key, decr: parent == DECR_DIR });
        }
        match st.views.dir(parent) {
            Some(ViewDir::Queue(queue)) => Ok(match name {
                ".pull" => Node::Pull { queue: queue.clone(), side: Side::Front },
                ".pull-back" => Node::Pull { queue: queue.clone(), side: Side::Back },
                _ => match item_key(queue, name) {
                    Some(key) if item_name(queue, &key).as_deref() == Some(name) => Node::QueueItem { key },
                    _ => {
                        let side = if name.starts_with(".front") { Side::Front } else { Side::Back };
                        Node::PushFile { queue: queue.clone(), side }
                    }
                },
            }),
            Some(ViewDir::TaskVersion(task, version)) => {
                let full = |hash: &str| format!("{task}-{version}-{hash}");
                if is_md5_hex(name) {
                    return Ok(Node::TaskEntry { key: full(name) });
                }
                if let Some(hash) = name.strip_suffix(".json")
                    && is_md5_hex(hash)
                {
                    return Ok(Node::TaskJson { key: full(hash) });
                }
                if let Some((answer, ignore)) = parse_resolver(name) {
                    return Ok(Node::Resolver { task: task.clone(), version: version.clone(), ignore, answer });
                }
                Err(FsError::NotFound(format!("task/.../{name}")))
            }
            Some(ViewDir::TaskStale(task, version)) if is_md5_hex(name) => {
                Ok(Node::StaleEntry { key: format!("{task}-{version}-{name}") })
            }
            Some(ViewDir::TaskStale(..)) => Err(FsError::NotFound(format!("task/.../{STALE_NAME}/{name}"))),
            Some(ViewDir::Task(_)) => Err(FsError::NotPermitted(format!("{name}: task/T/ holds versions only"))),
            None if matches!(parent, OPS_DIR | QUEUES_DIR | TASK_DIR) => {
                Err(FsError::NotPermitted(format!("{name}: this directory's entries are fixed")))
            }
            None => Err(FsError::NotDirectory(format!("inode {parent}"))),
        }
    }

    pub(super) fn view_lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let c = self.reader()?;
        let mut st = self.state(&c);
        let text = name.to_str().ok_or_else(|| FsError::NotFound(name_str(name)))?;
        match parent {
            QUEUES_DIR => {
                let queue = if text == INT_QUEUE { None } else { Some(parse_str_name(name)?) };
                let ino = st.views.dir_ino(ViewDir::Queue(queue));
                Ok(self.view_dir_attr(ino))
            }
            TASK_DIR => {
                let task = parse_str_name(name)?;
                let ino = st.views.dir_ino(ViewDir::Task(task));
                Ok(self.view_dir_attr(ino))
            }
            OPS_DIR => match text {
                "expire" | "cull" | "clear" | "check" => {
                    let ino = match text {
                        "expire" => OPS_EXPIRE,
                        "cull" => OPS_CULL,
                        "clear" => OPS_CLEAR,
                        _ => OPS_CHECK,
                    };
                    Ok(self.view_file_attr(ino, 0, true))
                }
                "incr" => Ok(self.view_dir_attr(INCR_DIR)),
                "decr" => Ok(self.view_dir_attr(DECR_DIR)),
                "remote" if self.remote().is_some() => Ok(self.view_file_attr(OPS_REMOTE, 0, false)),
                _ => Err(FsError::NotFound(format!("ops/{text}"))),
            },
            _ => {
                if let Some(ViewDir::Task(task)) = st.views.dir(parent) {
                    let task = task.clone();
                    let version = parse_str_name(name)?;
                    let ino = st.views.dir_ino(ViewDir::TaskVersion(task, version));
                    return Ok(self.view_dir_attr(ino));
                }
                if text == STALE_NAME
                    && let Some(ViewDir::TaskVersion(task, version)) = st.views.dir(parent)
                {
                    let dir = ViewDir::TaskStale(task.clone(), version.clone());
                    return Ok(self.view_dir_attr(st.views.dir_ino(dir)));
                }
                Self::classify(&st, parent, text)?;
                let ino = st.views.node_ino(parent, text);
                self.node_attr(&mut st, ino, parent, text)
            }
        }
    }

    pub(super) fn view_getattr(&self, ino: u64) -> Result<Attr, FsError> {
        let c = self.reader()?;
        let mut st = self.state(&c);
        match ino {
            QUEUES_DIR | TASK_DIR | OPS_DIR | INCR_DIR | DECR_DIR => Ok(self.view_dir_attr(ino)),
            OPS_EXPIRE | OPS_CULL | OPS_CLEAR | OPS_CHECK => {
                let len = st.views.last_results.get(&ino).map_or(0, Vec::len);
                Ok(self.view_file_attr(ino, len, true))
            }
            OPS_REMOTE if self.remote().is_some() => Ok(self.view_file_attr(ino, 0, false)),
            _ if st.views.dir(ino).is_some() => Ok(self.view_dir_attr(ino)),
            _ => {
                let (parent, name) = st.views.node(ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
                let name = name.to_string();
                self.node_attr(&mut st, ino, parent, &name)
            }
        }
    }

    pub(super) fn view_readdir(
        &self,
        ino: u64,
        offset: u64,
        plus: bool,
        out: &mut dyn DirReplier,
    ) -> Result<(), FsError> {
        let c = self.reader()?;
        let mut st = self.state(&c);
        // offset 2 is where a listing starts (after . and ..): list anew.
        if offset <= 2 || !st.views.listings.contains_key(&ino) {
            let listing = self.view_listing(&mut st, ino)?;
            st.views.listings.insert(ino, listing);
        }
        let listing = st.views.listings.get(&ino).cloned().unwrap_or_default();
        for (i, (name, child, kind)) in listing.iter().enumerate() {
            let next = i as u64 + 3;
            if offset >= next {
                continue;
            }
            let attr = match kind {
                Kind::Directory => self.view_dir_attr(*child),
                _ => match self.view_attr_of_listed(&mut st, *child, ino, name) {
                    Some(a) => a,
                    None => continue,
                },
            };
            if out.add(*child, next, *kind, OsStr::new(name), plus.then_some(&attr)) {
                return Ok(());
            }
        }
        Ok(())
    }

    fn view_attr_of_listed(&self, st: &mut State, ino: u64, parent: u64, name: &str) -> Option<Attr> {
        if parent == OPS_DIR {
            return Some(self.view_file_attr(ino, 0, ino != OPS_REMOTE));
        }
        self.node_attr(st, ino, parent, name).ok()
    }

    /// The entries of a view directory, in order.
    fn view_listing(&self, st: &mut State, ino: u64) -> Result<Vec<(String, u64, Kind)>, FsError> {
        let mut out = Vec::new();
        match ino {
            QUEUES_DIR => {
                let (prefixes, ints) = st.cache.queue_names().map_err(|e| FsError::cache("queues/", e))?;
                if ints {
                    out.push((INT_QUEUE.to_string(), st.views.dir_ino(ViewDir::Queue(None)), Kind::Directory));
                }
                for p in prefixes {
                    let name = str_name(&p);
                    out.push((name, st.views.dir_ino(ViewDir::Queue(Some(p))), Kind::Directory));
                }
            }
            TASK_DIR => {
                let keys = st.cache.task_keys().map_err(|e| FsError::cache("task/", e))?;
                let mut tasks: Vec<&str> = keys.iter().filter_map(|k| split_task_key(k).map(|t| t.0)).collect();
                tasks.dedup();
                tasks.sort();
                tasks.dedup();
                for t in tasks {
                    out.push((str_name(t), st.views.dir_ino(ViewDir::Task(t.to_string())), Kind::Directory));
                }
            }
            OPS_DIR => {
                for (name, ino) in
                    [("check", OPS_CHECK), ("clear", OPS_CLEAR), ("cull", OPS_CULL), ("expire", OPS_EXPIRE)]
                {
                    out.push((name.to_string(), ino, Kind::File));
                }
                out.push(("decr".to_string(), DECR_DIR, Kind::Directory));
                out.push(("incr".to_string(), INCR_DIR, Kind::Directory));
                if self.remote().is_some() {
                    out.push(("remote".to_string(), OPS_REMOTE, Kind::File));
                }
            }
            INCR_DIR | DECR_DIR => {}
            _ => match st.views.dir(ino).cloned() {
                Some(ViewDir::Queue(queue)) => {
                    let mut after: Option<Key> = None;
                    loop {
                        let batch = Self::single(st.cache)?
                            .queue_keys(queue.as_deref(), after.as_ref(), 1000)
                            .map_err(|e| FsError::cache("queues/", e))?;
                        let Some(last) = batch.last().cloned() else { break };
                        for key in batch {
                            if let Some(name) = item_name(&queue, &key) {
                                let node = st.views.node_ino(ino, &name);
                                out.push((name, node, Kind::Symlink));
                            }
                        }
                        after = Some(last);
                    }
                }
                Some(ViewDir::Task(task)) => {
                    let keys = st.cache.task_keys().map_err(|e| FsError::cache("task/", e))?;
                    let prefix = format!("{task}-");
                    let mut versions: Vec<String> = keys
                        .iter()
                        .filter_map(|k| k.strip_prefix(&prefix))
                        .filter_map(|rest| rest.rsplit_once('-').map(|(v, _)| v.to_string()))
                        .filter(|v| !v.is_empty())
                        .collect();
                    versions.sort();
                    versions.dedup();
                    for v in versions {
                        let dir = st.views.dir_ino(ViewDir::TaskVersion(task.clone(), v.clone()));
                        out.push((str_name(&v), dir, Kind::Directory));
                    }
                }
                Some(ViewDir::TaskVersion(task, version)) => {
                    let keys = st.cache.task_keys().map_err(|e| FsError::cache("task/", e))?;
                    let prefix = format!("{task}-{version}-");
                    for k in &keys {
                        if let Some(hash) = k.strip_prefix(&prefix).filter(|h| is_md5_hex(h)) {
                            let node = st.views.node_ino(ino, hash);
                            out.push((hash.to_string(), node, Kind::Symlink));
                        }
                    }
                }
                Some(ViewDir::TaskStale(task, version)) => {
                    let keys = st.cache.task_keys().map_err(|e| FsError::cache("task/", e))?;
                    let prefix = format!("{task}-{version}-");
                    for k in &keys {
                        if let Some(hash) = k.strip_prefix(&prefix).filter(|h| is_md5_hex(h))
                            && !Self::stale_paths(st, k)?.is_empty()
                        {
                            let node = st.views.node_ino(ino, hash);
                            out.push((hash.to_string(), node, Kind::Symlink));
                        }
                    }
                }
                None => return Err(FsError::NotDirectory(format!("inode {ino}"))),
            },
        }
        Ok(out)
    }

    pub(super) fn view_readlink(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        let st = self.tables();
        let (parent, name) = st.views.node(ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        match Self::classify(&st, parent, name)? {
            Node::QueueItem { key } => Ok(Self::queue_link_target(&key).into_bytes()),
            Node::TaskEntry { key } => Ok(Self::task_link_target(&key).into_bytes()),
            Node::StaleEntry { key } => Ok(Self::stale_link_target(&key).into_bytes()),
            _ => Err(FsError::InvalidValue { what: format!("inode {ino}"), reason: "not a symbolic link".into() }),
        }
    }

    /// `symlink` in a queue or task directory: how rsync restores the
    /// links. The link must be the one the view would show; the entry
    /// itself comes through `keys/`.
    pub(super) fn view_symlink(&self, parent: u64, name: &OsStr, target: &Path) -> Result<Attr, FsError> {
        self.check_writable(&name_str(name))?;
        let mut st = self.tables();
        let text = name.to_str().ok_or_else(|| FsError::NotPermitted(name_str(name)))?;
        let want = match Self::classify(&st, parent, text) {
            Ok(Node::QueueItem { key }) => Self::queue_link_target(&key),
            Ok(Node::TaskEntry { key }) => Self::task_link_target(&key),
            _ => return Err(FsError::NotPermitted(format!("symlink {text}: not an item or entry name here"))),
        };
        if target.as_os_str() != OsStr::new(&want) {
            return Err(FsError::InvalidValue {
                what: format!("symlink {text}"),
                reason: format!("it points to {want}"),
            });
        }
        let ino = st.views.node_ino(parent, text);
        st.views.restored_links.insert(ino);
        Ok(self.view_link_attr(ino, &want, None))
    }

    pub(super) fn view_open(&self, ino: u64, write: bool) -> Result<(u64, OpenFlags), FsError> {
        let flags = OpenFlags { direct_io: true, ..OpenFlags::default() };
        if ino == OPS_REMOTE && self.remote().is_some() {
            if write {
                return Err(FsError::AccessDenied("ops/remote: read only (the remote tier's state)".into()));
            }
            let output = self.remote_status_text();
            return Ok((Self::new_handle(&mut self.tables(), Handle::Op { ino, op: Op::Remote, output }), flags));
        }
        if matches!(ino, OPS_EXPIRE | OPS_CULL | OPS_CLEAR | OPS_CHECK) {
            let op = match ino {
                OPS_EXPIRE => Op::Expire,
                OPS_CULL => Op::Cull,
                OPS_CLEAR => Op::Clear,
                _ => Op::Check,
            };
            let output = if ino == OPS_CHECK && !write {
                // A check runs on a handle of its own, the tables unlocked.
                Self::run_check(&self.writer()?, false)?
            } else {
                self.tables().views.last_results.get(&ino).cloned().unwrap_or_default()
            };
            if write {
                self.check_writable(&format!("ops/{op:?}"))?;
            }
            return Ok((Self::new_handle(&mut self.tables(), Handle::Op { ino, op, output }), flags));
        }
        let node = {
            let st = self.tables();
            let (parent, name) = st.views.node(ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
            (name.to_string(), Self::classify(&st, parent, name)?)
        };
        let (name, node) = node;
        if let Node::Pull { queue, side } = &node {
            if write {
                return Err(FsError::AccessDenied(format!("queues/.../{name}: open it for reading to pull")));
            }
            self.check_writable(&format!("queues/.../{name}"))?;
            let what = format!("queues/{}/{name}", queue.as_deref().map_or(INT_QUEUE.to_string(), str_name));
            // A pull is its own transaction: it waits for the write lock
            // with the tables unlocked.
            let (_, entry) = Self::single(&self.writer()?)?
                .pull(queue.as_deref(), *side)
                .map_err(|e| FsError::cache(what.clone(), e))?
                .ok_or_else(|| FsError::NotFound(format!("{what}: the queue is empty")))?;
            let snapshot = Arc::new(Snapshot::Inline(value_content(&entry.value)));
            return Ok((Self::new_handle(&mut self.tables(), Handle::Read { ino, snapshot, view: None }), flags));
        }
        let c = self.reader()?;
        let mut st = self.state(&c);
        match node {
            Node::Pull { .. } => unreachable!("pulled above"),
            Node::TaskJson { key } => {
                if write {
                    return Err(FsError::AccessDenied(format!("{name}: a rendering is read-only")));
                }
                let snapshot = Arc::new(Snapshot::Inline(Self::task_json(&st, &key)?));
                Ok((Self::new_handle(&mut st, Handle::Read { ino, snapshot, view: None }), flags))
            }
            Node::Resolver { task, version, ignore, answer } => {
                let handle =
                    ResolveHandle { ino, task, version, ignore, answer, input: Vec::new(), output: None, cursor: 0 };
                Ok((Self::new_handle(&mut st, Handle::Resolve(handle)), flags))
            }
            Node::Counter { key, decr } => {
                if !write {
                    let snapshot = Arc::new(Snapshot::Inline(Self::counter_text(&st, &key)?));
                    return Ok((Self::new_handle(&mut st, Handle::Read { ino, snapshot, view: None }), flags));
                }
                self.check_writable(&format!("ops/incr/{name}"))?;
                let op = if decr { Op::Decr(key) } else { Op::Incr(key) };
                Ok((Self::new_handle(&mut st, Handle::Op { ino, op, output: Vec::new() }), flags))
            }
            // Opening for writing a name the kernel still caches from an
            // earlier push (`open(O_CREAT)` on a known name is an open): a
            // new push.
            Node::PushFile { queue, side } if write => {
                self.check_writable(&name)?;
                let handle = Handle::Push { ino, queue, side, data: Vec::new(), dirty: false, pushed: false };
                Ok((Self::new_handle(&mut st, handle), flags))
            }
            Node::PushFile { .. } => Err(FsError::NotFound(name)),
            Node::QueueItem { .. } | Node::TaskEntry { .. } | Node::StaleEntry { .. } => {
                Err(FsError::InvalidValue { what: name, reason: "a symbolic link".into() })
            }
        }
    }

    /// `create` in a view directory: a push in `queues/P/`, a new entry
    /// (outputs) as `task/T/V/HASH`, or the resolver files.
    pub(super) fn view_create(
        &self,
        parent: u64,
        name: &OsStr,
        exclusive: bool,
    ) -> Result<(Attr, u64, OpenFlags), FsError> {
        let text = name.to_str().ok_or_else(|| FsError::NotPermitted(name_str(name)))?.to_string();
        let node = {
            let st = self.tables();
            Self::classify(&st, parent, &text)?
        };
        match node {
            Node::PushFile { queue, side } => {
                self.check_writable(&text)?;
                let mut st = self.tables();
                let ino = st.views.node_ino(parent, &text);
                // Nothing is pushed before something is written: a shell's
                // `echo x > queues/P/f` closes the file once before writing.
                let handle = Handle::Push { ino, queue, side, data: Vec::new(), dirty: false, pushed: false };
                let fh = Self::new_handle(&mut st, handle);
                Ok((self.view_file_attr(ino, 0, true), fh, OpenFlags { direct_io: true, ..OpenFlags::default() }))
            }
            Node::TaskEntry { key } => {
                // The entry is the key's file in keys/.
                self.create_key(&Key::Str(key), None, exclusive, true, false)
            }
            Node::Resolver { .. } | Node::Counter { .. } => {
                if exclusive {
                    return Err(FsError::Exists(text));
                }
                let attr = self.view_lookup(parent, name)?;
                let (fh, flags) = self.view_open(attr.ino, true)?;
                Ok((attr, fh, flags))
            }
            _ => Err(FsError::NotPermitted(format!("{text}: cannot be created"))),
        }
    }

    pub(super) fn view_read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        let mut st = self.tables();
        match st.handles.get_mut(&fh) {
            Some(Handle::Op { output, .. }) => {
                Snapshot::Inline(output.clone()).read_at(offset, size as usize).map_err(|e| FsError::io("ops", e))
            }
            Some(Handle::Push { data, .. }) => {
                let start = (offset as usize).min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                Ok(data[start..end].to_vec())
            }
            Some(Handle::Resolve(r)) => {
                if r.output.is_none() {
                    // Resolved with the tables unlocked: decoding inputs and
                    // reading the outputs take their time.
                    let request = (r.task.clone(), r.version.clone(), r.input.clone(), r.ignore.clone(), r.answer);
                    drop(st);
                    let after_miss = |key: &str| self.resolve_after_miss(key);
                    let stale_as_miss = self.config.stale_as_miss;
                    let result =
                        Self::resolve(&self.reader()?, &self.store, request.clone(), stale_as_miss, after_miss);
                    // Inputs whose outputs may be stored next (a key asked
                    // for, a miss): kept until they are, for the side record.
                    let (task, version, input, ignore, answer) = request;
                    let seen = match (answer, &result) {
                        (ResolverAnswer::Key, Ok(_)) | (ResolverAnswer::Outputs, Err(FsError::NotFound(_))) => {
                            seen_inputs(&task, &version, &input, &ignore, self.reader()?.now())
                        }
                        _ => None,
                    };
                    st = self.tables();
                    if let Some(record) = seen {
                        st.seen_inputs.insert(record);
                    }
                    let Some(Handle::Resolve(r)) = st.handles.get_mut(&fh) else { return Err(FsError::BadHandle(fh)) };
                    r.output = Some(result?);
                    r.cursor = 0;
                }
                let Some(Handle::Resolve(r)) = st.handles.get_mut(&fh) else { return Err(FsError::BadHandle(fh)) };
                let output = r.output.as_deref().unwrap_or_default();
                let start = r.cursor.min(output.len());
                let end = start.saturating_add(size as usize).min(output.len());
                r.cursor = end;
                Ok(output[start..end].to_vec())
            }
            _ => Err(FsError::BadHandle(fh)),
        }
    }

    pub(super) fn view_write(&self, fh: u64, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        let write_at = |buf: &mut Vec<u8>, offset: u64, data: &[u8]| -> Result<(), FsError> {
            let end = (offset as usize).checked_add(data.len()).filter(|e| *e <= 1 << 30).ok_or_else(|| {
                FsError::InvalidValue { what: "a view file".into(), reason: "larger than 1 GiB".into() }
            })?;
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[offset as usize..end].copy_from_slice(data);
            Ok(())
        };
        let mut st = self.tables();
        match st.handles.get_mut(&fh) {
            Some(Handle::Push { data: buf, dirty, .. }) => {
                write_at(buf, offset, data)?;
                *dirty = true;
                Ok(data.len())
            }
            Some(Handle::Resolve(r)) => {
                write_at(&mut r.input, offset, data)?;
                r.output = None;
                Ok(data.len())
            }
            Some(Handle::Op { ino, op, .. }) => {
                let (ino, op) = (*ino, op.clone());
                // The operation (a check, a clear, a cull of a large cache)
                // runs on a writer handle of its own with the tables unlocked.
                drop(st);
                let output = Self::run_op(&self.writer()?, &op, data)?;
                if let Op::Incr(key) | Op::Decr(key) = &op {
                    // It may have made the key (negatives.rs).
                    self.negatives_after_commit(Some(&[key]));
                }
                let mut st = self.tables();
                if matches!(op, Op::Expire | Op::Cull | Op::Clear | Op::Check) {
                    st.views.last_results.insert(ino, output.clone());
                }
                if let Some(Handle::Op { output: o, .. }) = st.handles.get_mut(&fh) {
                    *o = output;
                }
                Ok(data.len())
            }
            _ => Err(FsError::BadHandle(fh)),
        }
    }

    /// Pushes a pushed file's content: at each close after writes (FLUSH),
    /// and at release if nothing was pushed yet (an empty item).
    /// The push waits for the write lock with the tables unlocked.
    pub(super) fn view_flush(&self, fh: u64, releasing: bool) -> Result<(), FsError> {
        let item = match self.tables().handles.get(&fh) {
            Some(Handle::Push { queue, side, data, dirty, pushed, .. }) if *dirty || (releasing && !*pushed) => {
                (queue.clone(), *side, data.clone())
            }
            _ => return Ok(()),
        };
        let (queue, side, data) = item;
        let what = format!("queues/{}", queue.as_deref().map_or(INT_QUEUE.to_string(), str_name));
        let key = Self::single(&self.writer()?)?
            .push(&Value::Bytes(data), queue.as_deref(), side, None, None)
            .map_err(|e| FsError::cache(what, e))?;
        // A new key (negatives.rs).
        self.negatives_after_commit(Some(&[&key]));
        if let Some(Handle::Push { dirty, pushed, .. }) = self.tables().handles.get_mut(&fh) {
            *dirty = false;
            *pushed = true;
        }
        Ok(())
    }

    pub(super) fn view_unlink(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        self.check_writable(&name_str(name))?;
        let key = {
            let st = self.tables();
            let text = name.to_str().ok_or_else(|| FsError::NotFound(name_str(name)))?;
            match Self::classify(&st, parent, text) {
                Ok(Node::QueueItem { key }) => key,
                Ok(Node::TaskEntry { key } | Node::StaleEntry { key }) => Key::Str(key),
                Ok(_) | Err(FsError::NotFound(_)) => {
                    return Err(FsError::NotPermitted(format!("{text}: only items and entries can be removed")));
                }
                Err(e) => return Err(e),
            }
        };
        self.unlink_key(&key)
    }

    /// `rmdir`: a queue or task directory with nothing left in it (they
    /// exist as long as anything does; empty, they simply stop being
    /// listed).
    pub(super) fn view_rmdir(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        self.check_writable(&name_str(name))?;
        let attr = self.view_lookup(parent, name)?;
        let c = self.reader()?;
        let mut st = self.state(&c);
        if !self.view_listing(&mut st, attr.ino)?.is_empty() {
            return Err(FsError::NotEmpty(name_str(name)));
        }
        Ok(())
    }

    /// `rename` out of a queue into `keys/`: takes the item as that key, or
    /// fails with ENOENT if another consumer took it first.
    pub(super) fn view_rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), FsError> {
        let key = {
            let st = self.tables();
            let text = name.to_str().ok_or_else(|| FsError::NotFound(name_str(name)))?;
            match Self::classify(&st, parent, text)? {
                Node::QueueItem { key } => key,
                Node::TaskEntry { key } => Key::Str(key),
                _ => return Err(FsError::NotPermitted(format!("rename {text}"))),
            }
        };
        if !Self::is_key_dir(new_parent) {
            return Err(FsError::CrossDevice(name_str(name)));
        }
        let what = format!("keys/{}", name_str(new_name));
        self.change(&what, None, |st| {
            let prefix = Self::key_dir_prefix(st, new_parent)?;
            let new_key = self.rename_target(st, &key, &prefix, new_name)?;
            self.rename_key(st, &key, &new_key, no_replace)
        })
    }
}
