//! A reference-model test of the file-system layer without FUSE (the
//! mountpoint-s3 reftest habit, /work/shared/STYLE.md): proptest generates
//! sequences of operations, some through `DiskCacheFs` as the kernel would
//! send them, some by a second engine handle playing the Python peer, and
//! each step is checked against a `BTreeMap` model of docs/SEMANTICS.md
//! ("Files in keys/", "Extended attributes", "Queues", "Expiry").
//!
//! The kernel is emulated, not skipped: a path is looked up before it is
//! used (or, within the entry timeout, its cached dentry is used as is),
//! every reference a lookup, create or readdirplus hands out is forgotten
//! once no dentry or open file needs it, a `close()` is FLUSH then RELEASE,
//! and `ESTALE` from OPEN makes the kernel look the name up again once.
//! No mount is made (tests/fs_model.rs drives the same rules through one).
//!
//! Every case runs over two stores (src/fs/store.rs): one plain cache, and
//! a 4-shard FanoutCache (docs/SEMANTICS.md, "FanoutCache directories"),
//! where the peer writes each key into its shard, `Disk.hash(key) % 4`, as
//! python-diskcache's `FanoutCache` does, with a handle of its own on each.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsStr;
use std::time::Duration;

use diskcachefs::cache::fanout::disk_hash;
use diskcachefs::cache::{Cache, CacheOptions, Entry as CacheEntry, FanoutCache, Key, Scalar, Side, Value};
use diskcachefs::fs::error::FsError;
use diskcachefs::fs::filesystem::{Attr, DirReplier, DiskCacheFs, FsConfig, Kind};
use diskcachefs::fs::inode::{KEYS_DIR, QUEUES_DIR, ROOT};
use diskcachefs::fs::names::key_to_name;
use diskcachefs::fs::store::Store;
use diskcachefs::fs::xattr::{EXPIRE_TIME, TAG, TYPE};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Keys whose names are plain, escaped and typed (docs/SEMANTICS.md, "Keys
/// to names"): `a`, `b c`, `%int:7`, `%str:%25x`. Few, so operations collide.
/// (Keys with a `/` are directories: tests/fs_paths.rs.)
fn key(k: usize) -> Key {
    match k {
        0 => Key::Str("a".into()),
        1 => Key::Str("b c".into()),
        2 => Key::Int(7),
        _ => Key::Str("%x".into()),
    }
}
const KEYS: usize = 4;
const TAGS: [&str; 2] = ["t1", "grp"];
/// The one queue the test uses: `queues/q/`, keys `q-NNNNNNNNNNNNNNN`.
const QUEUE: &str = "q";
/// Values from this size up live in value files (set at open), so both
/// inline and file-backed values, and writers' copies spilling to a file,
/// are exercised.
const MIN_FILE_SIZE: i64 = 16;
/// An expiry in the future and one in the past (absolute Unix times).
const FUTURE: f64 = 4_102_444_800.5;
const PAST: f64 = 1_000_000_000.0;

/// The store the tree is over.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// One python-diskcache `Cache` directory.
    Plain,
    /// A `FanoutCache` of [`SHARDS`] shards, `000/` to `003/`. It has no
    /// queues (no `queues/` at its root; python-diskcache's `FanoutCache`
    /// has no `push`/`pull`): the queue operations are skipped (see
    /// `Harness::step`), the rest run as over a plain cache.
    Fanout,
}
const SHARDS: usize = 4;

/// The shard python-diskcache's `FanoutCache` keeps `key` in. The test's
/// keys fall in two shards (`a`, `b c`, `%x` in 2, `7` in 3: see
/// `the_keys_fall_in_two_shards`), so renames both move entries across
/// shards and stay in one.
fn shard_of(key: &Key) -> usize {
    (disk_hash(key) % SHARDS as u64) as usize
}

fn name(k: usize) -> String {
    key_to_name(&key(k))
}

fn queue_key(n: i64) -> String {
    format!("{QUEUE}-{n:015}")
}

// ---------------------------------------------------------------------------
// The model.

/// What a key's file shows: content, `user.diskcache.type`, `.tag`,
/// `.expire_time`.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    content: Vec<u8>,
    vtype: &'static str,
    tag: Option<String>,
    expire: Option<f64>,
}

/// A writer that stays open: its private copy (docs/SEMANTICS.md, "Write").
#[derive(Clone, Debug)]
struct Writer {
    /// The key its file has now (it follows renames).
    k: usize,
    mode: Mode,
    copy: Vec<u8>,
    /// Something to commit at close.
    dirty: bool,
    /// Its name was unlinked or renamed over: its commits are dropped.
    unlinked: bool,
    /// A peer deleted the entry it is rewriting: its commit is dropped
    /// if the entry is still missing then (docs/SEMANTICS.md, "Writing").
    peer_deleted: bool,
    /// Created through the mount and not committed yet: the name exists
    /// for the mount (lookup, O_EXCL, unlink, rename) but not in the cache.
    pending: bool,
}

/// What the file system remembers of an inode for the edit rule
/// (docs/SEMANTICS.md, "Edits keep the entry's type, tag and expiry"),
/// while the kernel keeps the inode.
#[derive(Clone, Debug, Default)]
struct Hint {
    /// Made by a create through the mount.
    made: bool,
    /// One of our attributes was set or removed on it since.
    attrs_set: bool,
    /// The type its next commit keeps if the content is valid for it.
    kept_type: Option<&'static str>,
    /// The entry version its last commit stored.
    version: Option<u64>,
    /// Tag and expiry of the entry it replaced while still being created.
    pending_attrs: Option<(Option<String>, Option<f64>)>,
}

/// Content as a value of the type `t` an edit keeps, as Python would
/// parse it (`int()`: white space around, a sign, digits with single
/// underscores): the new content and type, or `None` when not valid.
fn as_type(content: &[u8], t: &'static str) -> Option<(Vec<u8>, &'static str)> {
    match t {
        // Any content is bytes: a file renamed over a bytes entry becomes
        // bytes, whatever type its own commit kept.
        "bytes" => Some((content.to_vec(), "bytes")),
        "str" => std::str::from_utf8(content).ok().map(|_| (content.to_vec(), "str")),
        "int" => {
            let text = std::str::from_utf8(content).ok()?.trim();
            let body = text.strip_prefix(['-', '+']).unwrap_or(text);
            let ok = !body.is_empty()
                && body.bytes().all(|b| b.is_ascii_digit() || b == b'_')
                && !body.starts_with('_')
                && !body.ends_with('_')
                && !body.contains("__");
            if !ok {
                return None;
            }
            let digits: String = text.chars().filter(|c| *c != '_' && *c != '+').collect();
            match digits.parse::<i64>() {
                Ok(i) => Some((i.to_string().into_bytes(), "int")),
                // Beyond 64 bits Python pickles an int.
                Err(_) => Some((diskcachefs::fs::content::pickle_big_int(&digits), "pickle")),
            }
        }
        _ => None,
    }
}

#[derive(Clone, Debug, Default)]
struct Model {
    keys: BTreeMap<usize, Entry>,
    /// Each entry's version (its store_time changes): a commit or a
    /// peer's set makes a new one; a rename keeps it.
    versions: BTreeMap<usize, u64>,
    next_version: u64,
    /// By inode number, while the kernel has the inode.
    hints: HashMap<u64, Hint>,
    /// The queue's items, front first: (number, content).
    queue: VecDeque<(i64, Vec<u8>)>,
    writer: Option<Writer>,
}

impl Model {
    /// A peer deleted `k`: a writer rewriting it will not store it again.
    fn peer_deleted(&mut self, k: usize) {
        if let Some(w) = self.writer.as_mut().filter(|w| w.k == k && !w.unlinked && !w.pending) {
            w.peer_deleted = true;
        }
    }

    /// The held writer, while its file still has a name.
    fn named_writer(&self) -> Option<&Writer> {
        self.writer.as_ref().filter(|w| !w.unlinked)
    }

    /// Whether keys/NAME exists for the mount: committed, or being created.
    fn exists(&self, k: usize) -> bool {
        self.keys.contains_key(&k) || self.named_writer().is_some_and(|w| w.k == k && w.pending)
    }

    /// A commit to `k` stores it in the cache: a create there is done.
    fn committed(&mut self, k: usize) {
        if let Some(w) = self.writer.as_mut().filter(|w| !w.unlinked && w.k == k) {
            w.pending = false;
        }
    }

    /// `k`'s name goes away (unlink, or a rename over it).
    fn unlinked(&mut self, k: usize) {
        self.keys.remove(&k);
        self.versions.remove(&k);
        if let Some(w) = self.writer.as_mut().filter(|w| !w.unlinked && w.k == k) {
            w.unlinked = true;
            w.pending = false;
        }
    }

    fn new_version(&mut self, k: usize) -> u64 {
        self.next_version += 1;
        self.versions.insert(k, self.next_version);
        self.next_version
    }

    /// A create through the mount made inode `ino` for a new key.
    fn made(&mut self, ino: u64) {
        self.hints.insert(ino, Hint { made: true, ..Hint::default() });
    }

    /// Commits `content` to `k` through inode `ino`, keeping its tag and
    /// expiry, and its type if the content is valid for it (else bytes).
    fn commit(&mut self, k: usize, content: Vec<u8>, ino: Option<u64>) {
        let old = self.keys.get(&k).cloned();
        let creation = old.is_none();
        let hint = ino.and_then(|i| self.hints.get(&i)).cloned().unwrap_or_default();
        let now = self.versions.get(&k).copied();
        let kept = if hint.attrs_set {
            None
        } else if let Some(t) = hint.kept_type.filter(|_| creation || now == hint.version) {
            Some(t)
        } else if creation {
            None
        } else {
            old.as_ref().map(|o| o.vtype).filter(|t| *t != "bytes")
        };
        let mut keep_next = None;
        let (content, vtype) = match kept {
            Some(t) => match as_type(&content, t) {
                Some(converted) => converted,
                None => {
                    keep_next = content.is_empty().then_some(t);
                    (content, "bytes")
                }
            },
            None => (content, "bytes"),
        };
        let (tag, expire) = match (&old, hint.pending_attrs) {
            (Some(e), _) => (e.tag.clone(), e.expire),
            (None, Some(attrs)) => attrs,
            (None, None) => (None, None),
        };
        self.keys.insert(k, Entry { content, vtype, tag, expire });
        let version = self.new_version(k);
        if let Some(h) = ino.and_then(|i| self.hints.get_mut(&i)) {
            h.version = Some(version);
            h.kept_type = keep_next;
            h.pending_attrs = None;
        }
        self.committed(k);
    }
    /// diskcache's push: the first item is number 500000000000000, the
    /// back is one past the last, the front one before the first.
    fn push(&mut self, data: Vec<u8>, front: bool) -> i64 {
        let n = match (front, self.queue.front(), self.queue.back()) {
            (_, None, _) => 500_000_000_000_000,
            (true, Some((first, _)), _) => first - 1,
            (false, _, Some((last, _))) => last + 1,
            (false, _, None) => unreachable!(),
        };
        if front {
            self.queue.push_front((n, data));
        } else {
            self.queue.push_back((n, data));
        }
        n
    }

    fn pull(&mut self, back: bool) -> Option<(i64, Vec<u8>)> {
        if back { self.queue.pop_back() } else { self.queue.pop_front() }
    }

    /// Every live name in keys/, sorted.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.keys.keys().map(|k| name(*k)).collect();
        names.extend(self.queue.iter().map(|(n, _)| queue_key(*n)));
        names.sort();
        names
    }
}

/// A peer's value: what `cache.set(key, value)` stores from Python.
#[derive(Clone, Debug)]
enum PeerValue {
    Bytes(Vec<u8>),
    Str(String),
    Int(i64),
}

impl PeerValue {
    fn value(&self) -> Value {
        match self {
            PeerValue::Bytes(b) => Value::Bytes(b.clone()),
            PeerValue::Str(s) => Value::Str(s.clone()),
            PeerValue::Int(i) => Value::Int(*i),
        }
    }
}

/// A value as its file shows it (docs/SEMANTICS.md, "Content (read)").
fn content_of(v: &Value) -> (Vec<u8>, &'static str) {
    match v {
        Value::Bytes(b) => (b.clone(), "bytes"),
        Value::Str(s) => (s.as_bytes().to_vec(), "str"),
        Value::Int(i) => (i.to_string().into_bytes(), "int"),
        other => panic!("the test stores no {other:?}"),
    }
}

fn entry_of(e: &CacheEntry) -> Entry {
    let (content, vtype) = content_of(&e.value);
    let tag = e.tag.as_ref().map(|t| match t {
        Scalar::Str(s) => s.clone(),
        other => panic!("the test sets no tag {other:?}"),
    });
    Entry { content, vtype, tag, expire: e.expire_time }
}

// ---------------------------------------------------------------------------
// Operations.

/// How a writer opens its file.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `O_CREAT|O_TRUNC` (a shell's `>`).
    Create,
    /// `O_CREAT|O_EXCL`.
    Excl,
    /// `O_TRUNC` without `O_CREAT`.
    Trunc,
    /// `O_CREAT|O_APPEND` (`>>`).
    Append,
    /// `O_CREAT`, then `pwrite` at this offset.
    At(u8),
}

#[derive(Clone, Copy, Debug)]
enum Expiry {
    Past,
    Future,
    Never,
}

#[derive(Clone, Debug)]
enum Op {
    /// Open (per `mode`), write `data` in two writes split at `split`, close.
    /// `cached`: the kernel still trusts its dentry (within the entry
    /// timeout) instead of looking the name up.
    Write {
        k: usize,
        mode: Mode,
        data: Vec<u8>,
        split: usize,
        cached: bool,
    },
    /// open, read to the end, the three xattrs, close.
    Read {
        k: usize,
        cached: bool,
    },
    /// stat: the size.
    Stat {
        k: usize,
        cached: bool,
    },
    Unlink {
        k: usize,
        cached: bool,
    },
    Rename {
        from: usize,
        to: usize,
        no_replace: bool,
        cached: bool,
    },
    SetTag {
        k: usize,
        tag: usize,
        cached: bool,
    },
    RemoveTag {
        k: usize,
        cached: bool,
    },
    /// `ls keys/` (readdirplus: `ls -l`).
    ReadDir {
        plus: bool,
    },
    /// A writer that stays open across later operations (one at a time).
    WriterOpen {
        k: usize,
        mode: Mode,
        cached: bool,
    },
    WriterWrite {
        data: Vec<u8>,
    },
    WriterClose,
    /// A reader that stays open across later operations.
    ReaderOpen {
        slot: usize,
        k: usize,
        cached: bool,
    },
    ReaderRead {
        slot: usize,
    },
    ReaderClose {
        slot: usize,
    },
    /// The kernel drops every dentry and forgets every unused inode.
    DropCaches,
    /// Create a file in `queues/q/` (`.front` when `front`), write, close.
    FsPush {
        data: Vec<u8>,
        front: bool,
    },
    /// `cat queues/q/.pull` (`.pull-back`).
    FsPull {
        back: bool,
    },
    /// `ls queues/q/`.
    QueueList,
    // The Python peer, through a second engine handle.
    PeerSet {
        k: usize,
        value: PeerValue,
        tag: Option<usize>,
    },
    PeerDelete {
        k: usize,
    },
    PeerTouch {
        k: usize,
        expiry: Expiry,
    },
    PeerPush {
        data: Vec<u8>,
        front: bool,
    },
    PeerPull {
        back: bool,
    },
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    // Both sides of MIN_FILE_SIZE.
    prop::collection::vec(any::<u8>(), 0..40)
}

fn op() -> impl Strategy<Value = Op> {
    let k = || 0..KEYS;
    let slot = || 0..2usize;
    let mode = || {
        prop_oneof![
            3 => Just(Mode::Create),
            1 => Just(Mode::Excl),
            1 => Just(Mode::Trunc),
            2 => Just(Mode::Append),
            2 => (0u8..24).prop_map(Mode::At),
        ]
    };
    let value = prop_oneof![
        3 => data().prop_map(PeerValue::Bytes),
        1 => "[a-z]{0,24}".prop_map(PeerValue::Str),
        1 => (-1000i64..1000).prop_map(PeerValue::Int),
    ];
    let expiry = prop_oneof![Just(Expiry::Past), Just(Expiry::Future), Just(Expiry::Never)];
    prop_oneof![
        6 => (k(), mode(), data(), 0usize..40, any::<bool>())
            .prop_map(|(k, mode, data, split, cached)| Op::Write { k, mode, data, split, cached }),
        4 => (k(), any::<bool>()).prop_map(|(k, cached)| Op::Read { k, cached }),
        2 => (k(), any::<bool>()).prop_map(|(k, cached)| Op::Stat { k, cached }),
        2 => (k(), any::<bool>()).prop_map(|(k, cached)| Op::Unlink { k, cached }),
        3 => (k(), k(), any::<bool>(), any::<bool>())
            .prop_map(|(from, to, no_replace, cached)| Op::Rename { from, to, no_replace, cached }),
        1 => (k(), 0..TAGS.len(), any::<bool>()).prop_map(|(k, tag, cached)| Op::SetTag { k, tag, cached }),
        1 => (k(), any::<bool>()).prop_map(|(k, cached)| Op::RemoveTag { k, cached }),
        2 => any::<bool>().prop_map(|plus| Op::ReadDir { plus }),
        2 => (k(), mode(), any::<bool>()).prop_map(|(k, mode, cached)| Op::WriterOpen { k, mode, cached }),
        2 => data().prop_map(|data| Op::WriterWrite { data }),
        2 => Just(Op::WriterClose),
        3 => (slot(), k(), any::<bool>()).prop_map(|(slot, k, cached)| Op::ReaderOpen { slot, k, cached }),
        2 => slot().prop_map(|slot| Op::ReaderRead { slot }),
        2 => slot().prop_map(|slot| Op::ReaderClose { slot }),
        1 => Just(Op::DropCaches),
        1 => (data(), any::<bool>()).prop_map(|(data, front)| Op::FsPush { data, front }),
        1 => any::<bool>().prop_map(|back| Op::FsPull { back }),
        1 => Just(Op::QueueList),
        5 => (k(), value, proptest::option::of(0..TAGS.len()))
            .prop_map(|(k, value, tag)| Op::PeerSet { k, value, tag }),
        2 => k().prop_map(|k| Op::PeerDelete { k }),
        2 => (k(), expiry).prop_map(|(k, expiry)| Op::PeerTouch { k, expiry }),
        1 => (data(), any::<bool>()).prop_map(|(data, front)| Op::PeerPush { data, front }),
        1 => any::<bool>().prop_map(|back| Op::PeerPull { back }),
    ]
}

// ---------------------------------------------------------------------------
// The harness: the file system, the emulated kernel, the peer, the model.

fn errno(e: FsError) -> i32 {
    e.errno()
}

/// What the emulated kernel holds for an inode.
#[derive(Debug, Default)]
struct KernelInode {
    /// References handed out by lookup, create and readdirplus.
    nlookup: u64,
    /// Open files on it.
    open: u32,
}

/// A reader that stays open: its handle and the snapshot it must read.
#[derive(Debug)]
struct Reader {
    fh: u64,
    ino: u64,
    snapshot: Vec<u8>,
}

/// Collects directory entries into a small buffer, as the kernel's page:
/// full after `cap` entries, so listings resume from an offset.
struct Page {
    cap: usize,
    entries: Vec<(u64, u64, String)>,
}

impl DirReplier for Page {
    fn add(&mut self, ino: u64, next_offset: u64, _kind: Kind, name: &OsStr, _attr: Option<&Attr>) -> bool {
        if self.entries.len() >= self.cap {
            return true;
        }
        self.entries.push((ino, next_offset, name.to_str().expect("UTF-8 names").to_string()));
        false
    }
}

struct Harness {
    fs: DiskCacheFs,
    layout: Layout,
    /// The peer's handles: the cache's, or one per shard.
    peers: Vec<Cache>,
    model: Model,
    /// The kernel's positive dentries in keys/: name -> inode.
    dentries: HashMap<String, u64>,
    inodes: HashMap<u64, KernelInode>,
    readers: [Option<Reader>; 2],
    /// The held writer's (inode, handle).
    writer: Option<(u64, u64)>,
    // Last, so the cache directory outlives both handles.
    dir: tempfile::TempDir,
}

impl Harness {
    fn new(layout: Layout) -> Harness {
        // In memory where there is a tmpfs: a case is a few hundred small
        // SQLite transactions, and the disk is shared.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
        let options = CacheOptions {
            settings: vec![("disk_min_file_size".into(), Scalar::Int(MIN_FILE_SIZE))],
            ..CacheOptions::default()
        };
        let store = match layout {
            Layout::Plain => Store::one(Cache::open_with(dir.path(), options).unwrap()).unwrap(),
            Layout::Fanout => Store::sharded(FanoutCache::open_with(dir.path(), SHARDS, options).unwrap()).unwrap(),
        };
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let fs = DiskCacheFs::over(
            store,
            FsConfig {
                read_only: false,
                ttl: Duration::ZERO,
                uid,
                gid,
                max_inodes: 1_000_000,
                reads_unopened: false,
                passthrough: false,
                watched_ttl: Duration::ZERO,
                stale_as_miss: false,
            },
        );
        // The stored settings win over the defaults: the peer sees 16 too.
        let peers = match layout {
            Layout::Plain => vec![Cache::open(dir.path()).unwrap()],
            Layout::Fanout => (0..SHARDS).map(|s| Cache::open(&dir.path().join(format!("{s:03}"))).unwrap()).collect(),
        };
        Harness {
            fs,
            layout,
            peers,
            model: Model::default(),
            dentries: HashMap::new(),
            inodes: HashMap::new(),
            readers: [None, None],
            writer: None,
            dir,
        }
    }

    /// The peer's handle on `key`'s cache (its shard's, for a FanoutCache).
    fn peer(&self, key: &Key) -> &Cache {
        match self.layout {
            Layout::Plain => &self.peers[0],
            Layout::Fanout => &self.peers[shard_of(key)],
        }
    }

    /// The peer's handle for the queue (a plain cache has one).
    fn queue_peer(&self) -> &Cache {
        assert_eq!(self.layout, Layout::Plain, "a FanoutCache has no queues");
        &self.peers[0]
    }

    // -- The emulated kernel. ----------------------------------------------

    /// A reference to `ino` handed out for `name` (lookup, create,
    /// readdirplus); the name's dentry now leads there.
    fn learn(&mut self, name: &str, ino: u64) {
        self.inodes.entry(ino).or_default().nlookup += 1;
        if let Some(old) = self.dentries.insert(name.to_string(), ino)
            && old != ino
        {
            self.evict_if_unused(old);
        }
    }

    fn drop_dentry(&mut self, name: &str) {
        if let Some(old) = self.dentries.remove(name) {
            self.evict_if_unused(old);
        }
    }

    /// An inode with neither a dentry nor an open file leaves the kernel's
    /// cache: FORGET with every reference it got.
    fn evict_if_unused(&mut self, ino: u64) {
        let in_use = self.dentries.values().any(|i| *i == ino) || self.inodes.get(&ino).is_some_and(|i| i.open > 0);
        if !in_use && let Some(inode) = self.inodes.remove(&ino) {
            self.model.hints.remove(&ino);
            self.fs.forget(ino, inode.nlookup);
        }
    }

    fn drop_caches(&mut self) {
        let inos: Vec<u64> = self.dentries.drain().map(|(_, ino)| ino).collect();
        for ino in inos {
            self.evict_if_unused(ino);
        }
    }

    /// LOOKUP in keys/: `None` for ENOENT (not cached: fuser answers
    /// ENOENT with an error, not a negative entry).
    fn lookup(&mut self, name: &str) -> Result<Option<Attr>, i32> {
        match self.fs.lookup(KEYS_DIR, OsStr::new(name)) {
            Ok(attr) => {
                self.learn(name, attr.ino);
                Ok(Some(attr))
            }
            Err(e) if e.errno() == libc::ENOENT => {
                self.drop_dentry(name);
                Ok(None)
            }
            Err(e) => Err(e.errno()),
        }
    }

    /// A path walk's last step: the cached dentry when `cached` (within the
    /// entry timeout), else a LOOKUP (revalidation).
    fn resolve(&mut self, name: &str, cached: bool) -> Result<Option<u64>, i32> {
        if cached && let Some(ino) = self.dentries.get(name) {
            return Ok(Some(*ino));
        }
        Ok(self.lookup(name)?.map(|a| a.ino))
    }

    fn opened(&mut self, ino: u64) {
        self.inodes.entry(ino).or_default().open += 1;
    }

    /// `close()` of a file the kernel opened: FLUSH (writers), RELEASE.
    fn close(&mut self, ino: u64, fh: u64, flush: bool) -> Result<(), i32> {
        let flushed = if flush { self.fs.flush(fh).map_err(errno) } else { Ok(()) };
        let released = self.fs.release(fh).map_err(errno);
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.open -= 1;
        }
        self.evict_if_unused(ino);
        flushed.and(released)
    }

    /// `open(2)` of keys/NAME as the kernel does it: a positive dentry
    /// gets OPEN (O_EXCL always revalidates, and then is EEXIST), a missing
    /// name with O_CREAT gets CREATE, and ESTALE from OPEN looks the name
    /// up again once.
    fn open(&mut self, name: &str, mode: Option<Mode>, cached: bool) -> Result<(u64, u64), i32> {
        let (write, create, excl, trunc, append) = match mode {
            None => (false, false, false, false, false),
            Some(Mode::Create) => (true, true, false, true, false),
            Some(Mode::Excl) => (true, true, true, false, false),
            Some(Mode::Trunc) => (true, false, false, true, false),
            Some(Mode::Append) => (true, true, false, false, true),
            Some(Mode::At(_)) => (true, true, false, false, false),
        };
        for attempt in 0..2 {
            // An O_TRUNC open through a dentry whose entry a peer deleted is
            // ESTALE (it used to succeed and store the key again).
            let use_dentry = cached && attempt == 0 && !excl;
            match self.resolve(name, use_dentry)? {
                None if create => {
                    let (attr, fh, _) =
                        self.fs.create(KEYS_DIR, OsStr::new(name), excl, trunc, append).map_err(errno)?;
                    self.learn(name, attr.ino);
                    self.opened(attr.ino);
                    return Ok((attr.ino, fh));
                }
                None => return Err(libc::ENOENT),
                Some(_) if excl => return Err(libc::EEXIST),
                Some(ino) => match self.fs.open(ino, write, trunc, append) {
                    Ok((fh, _)) => {
                        self.opened(ino);
                        return Ok((ino, fh));
                    }
                    Err(e) if e.errno() == libc::ESTALE && attempt == 0 => self.drop_dentry(name),
                    Err(e) => return Err(e.errno()),
                },
            }
        }
        unreachable!("the second attempt returns")
    }

    /// Reads a file handle to its end, in small reads.
    fn read_all(&self, ino: u64, fh: u64) -> Result<Vec<u8>, i32> {
        let mut out = Vec::new();
        loop {
            let chunk = self.fs.read(ino, fh, out.len() as u64, 7).map_err(errno)?;
            out.extend_from_slice(&chunk);
            if chunk.len() < 7 {
                return Ok(out);
            }
        }
    }

    fn xattr(&self, ino: u64, name: &str) -> Result<Option<Vec<u8>>, i32> {
        match self.fs.getxattr(ino, OsStr::new(name)) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.errno() == libc::ENODATA => Ok(None),
            Err(e) => Err(e.errno()),
        }
    }

    /// Lists a directory as the kernel does: pages of a few entries, each
    /// resuming at the last entry's offset. With `plus` (readdirplus) every
    /// entry is a reference the kernel now holds.
    fn list(&mut self, dir: u64, plus: bool) -> Result<Vec<(u64, String)>, i32> {
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let mut page = Page { cap: 3, entries: Vec::new() };
            self.fs.readdir(dir, offset, plus, &mut page).map_err(errno)?;
            let Some(last) = page.entries.last() else { return Ok(out) };
            offset = last.1;
            for (ino, _, name) in page.entries {
                if name == "." || name == ".." {
                    continue;
                }
                if plus && dir == KEYS_DIR {
                    self.learn(&name, ino);
                }
                out.push((ino, name));
            }
        }
    }

    fn queue_dir(&self) -> u64 {
        assert_eq!(self.fs.lookup(ROOT, OsStr::new("queues")).unwrap().ino, QUEUES_DIR);
        self.fs.lookup(QUEUES_DIR, OsStr::new(QUEUE)).unwrap().ino
    }

    // -- One step. -----------------------------------------------------------

    /// Operations the model leaves open, on the held writer's name: what
    /// a stat, read or xattr shows mid-write, and a peer's change to an
    /// entry being created, are not specified in docs/SEMANTICS.md. They
    /// are skipped, and so is expiring the entry being rewritten (see
    /// `Op::PeerTouch`). (A peer's delete of an entry being rewritten is
    /// specified: the writer's commit is dropped if the entry is still
    /// missing at the close.)
    fn unspecified(&self, op: &Op) -> bool {
        let Some(w) = self.model.named_writer() else { return false };
        match op {
            Op::Read { k, .. }
            | Op::Stat { k, .. }
            | Op::ReaderOpen { k, .. }
            | Op::SetTag { k, .. }
            | Op::RemoveTag { k, .. } => *k == w.k,
            Op::PeerDelete { k } | Op::PeerSet { k, .. } => *k == w.k && w.pending,
            // An expired row stays until a later set (of any key) culls it:
            // whether the writer's commit is dropped depends on that.
            Op::PeerTouch { k, expiry } => *k == w.k && (w.pending || matches!(expiry, Expiry::Past)),
            _ => false,
        }
    }

    /// The queue operations, which a FanoutCache cannot do: its root has
    /// no `queues/`, and python-diskcache's `FanoutCache` no `push`/`pull`.
    fn impossible(&self, op: &Op) -> bool {
        self.layout == Layout::Fanout
            && matches!(
                op,
                Op::FsPush { .. } | Op::FsPull { .. } | Op::QueueList | Op::PeerPush { .. } | Op::PeerPull { .. }
            )
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        if self.unspecified(op) || self.impossible(op) {
            return Ok(());
        }
        match op {
            Op::Write { k, mode, data, split, cached } => {
                let creates = !self.model.exists(*k);
                let got = self.fs_write(*k, *mode, data, *split, *cached);
                // The inode the write went through (the model's edit rule
                // is the inode's memory).
                let ino = self.dentries.get(&name(*k)).copied();
                if creates
                    && got.is_ok()
                    && let Some(ino) = ino
                {
                    self.model.made(ino);
                }
                let want = self.model_write(*k, *mode, data, ino);
                prop_assert_eq!(got, want);
            }
            Op::Read { k, cached } => {
                let want = self.model.keys.get(k).cloned().ok_or(libc::ENOENT);
                let got = self.fs_read(&name(*k), *cached);
                prop_assert_eq!(got, want);
            }
            Op::Stat { k, cached } => {
                let want = self.model.keys.get(k).map(|e| e.content.len() as u64).ok_or(libc::ENOENT);
                let name = name(*k);
                let mut readers_sizes = Vec::new();
                let got = match self.resolve(&name, *cached) {
                    Ok(Some(ino)) => {
                        // Through a dentry the kernel still trusts, an inode
                        // kept for its open readers reports their snapshot
                        // (docs/SEMANTICS.md, "Content (read)"): allowed
                        // until the entry timeout passes.
                        readers_sizes = self
                            .readers
                            .iter()
                            .flatten()
                            .filter(|r| r.ino == ino)
                            .map(|r| Ok(r.snapshot.len() as u64))
                            .collect();
                        self.fs.getattr(ino).map(|a| a.size).map_err(errno)
                    }
                    Ok(None) => Err(libc::ENOENT),
                    Err(e) => Err(e),
                };
                prop_assert!(got == want || readers_sizes.contains(&got), "stat {name}: got {got:?}, want {want:?}");
            }
            Op::Unlink { k, cached } => {
                let want = if self.model.exists(*k) { Ok(()) } else { Err(libc::ENOENT) };
                // An unlink that finds nothing (ENOENT) unlinks nothing.
                if want.is_ok() {
                    self.model.unlinked(*k);
                }
                let name = name(*k);
                let got = match self.resolve(&name, *cached) {
                    Ok(Some(_)) => {
                        let r = self.fs.unlink(KEYS_DIR, OsStr::new(&name)).map_err(errno);
                        if matches!(r, Ok(()) | Err(libc::ENOENT)) {
                            self.drop_dentry(&name);
                        }
                        r
                    }
                    Ok(None) => Err(libc::ENOENT),
                    Err(e) => Err(e),
                };
                prop_assert_eq!(got, want);
            }
            Op::Rename { from, to, no_replace, cached } => {
                // A file made through the mount, none of our attributes set,
                // renamed over an existing entry rewrites it (the source
                // still the version its commit stored): see after the rename.
                let source_pending = self.model.named_writer().is_some_and(|w| w.k == *from && w.pending);
                let source_version = self.model.versions.get(from).copied();
                let replaced = self.model.keys.get(to).cloned();
                let want = match (self.model.exists(*from), self.model.exists(*to)) {
                    (false, _) => Err(libc::ENOENT),
                    (true, true) if *no_replace => Err(libc::EEXIST),
                    _ if from == to => Ok(()),
                    _ => {
                        let e = self.model.keys.remove(from);
                        let version = self.model.versions.remove(from);
                        self.model.unlinked(*to);
                        if let Some(e) = e {
                            self.model.keys.insert(*to, e);
                        }
                        if let Some(v) = version {
                            self.model.versions.insert(*to, v);
                        }
                        // The writer's inode follows its name.
                        if let Some(w) = self.model.writer.as_mut().filter(|w| !w.unlinked && w.k == *from) {
                            w.k = *to;
                        }
                        Ok(())
                    }
                };
                let source_cached = *cached && self.dentries.contains_key(&name(*from));
                let got = self.fs_rename(&name(*from), &name(*to), *no_replace, *cached);
                let ino = self.dentries.get(&name(*to)).copied();
                let hint = ino.and_then(|i| self.model.hints.get(&i)).cloned().unwrap_or_default();
                let rewrite = hint.made
                    && !hint.attrs_set
                    && (source_pending || (source_version.is_some() && source_version == hint.version));
                if let (Ok(()), Some(old), true, false) = (&want, replaced, rewrite, from == to) {
                    if source_pending {
                        if let Some(h) = ino.and_then(|i| self.model.hints.get_mut(&i)) {
                            h.kept_type = Some(old.vtype);
                            h.pending_attrs = Some((old.tag.clone(), old.expire));
                        }
                    } else if let Some(e) = self.model.keys.get_mut(to) {
                        e.tag = old.tag.clone();
                        e.expire = old.expire;
                        if let Some((content, vtype)) = as_type(&e.content, old.vtype) {
                            (e.content, e.vtype) = (content, vtype);
                        }
                    }
                }
                // Within the entry timeout the VFS trusts a source dentry
                // whose entry a peer removed, and refuses RENAME_NOREPLACE
                // onto an existing target before asking the file system.
                let vfs_eexist = source_cached && *no_replace && got == Err(libc::EEXIST);
                if !(want == Err(libc::ENOENT) && vfs_eexist) {
                    prop_assert_eq!(got, want);
                }
            }
            Op::SetTag { k, tag, cached } => {
                let want = match self.model.keys.get_mut(k) {
                    Some(e) => {
                        e.tag = Some(TAGS[*tag].to_string());
                        Ok(())
                    }
                    None => Err(libc::ENOENT),
                };
                let got = match self.resolve(&name(*k), *cached) {
                    Ok(Some(ino)) => {
                        self.fs.setxattr(ino, OsStr::new(TAG), TAGS[*tag].as_bytes(), false, false).map_err(errno)
                    }
                    Ok(None) => Err(libc::ENOENT),
                    Err(e) => Err(e),
                };
                self.attrs_set(*k);
                prop_assert_eq!(got, want);
            }
            Op::RemoveTag { k, cached } => {
                let want = match self.model.keys.get_mut(k) {
                    Some(e) if e.tag.is_some() => {
                        e.tag = None;
                        Ok(())
                    }
                    Some(_) => Err(libc::ENODATA),
                    None => Err(libc::ENOENT),
                };
                let got = match self.resolve(&name(*k), *cached) {
                    Ok(Some(ino)) => self.fs.removexattr(ino, OsStr::new(TAG)).map_err(errno),
                    Ok(None) => Err(libc::ENOENT),
                    Err(e) => Err(e),
                };
                self.attrs_set(*k);
                prop_assert_eq!(got, want);
            }
            Op::ReadDir { plus } => self.check_listing(*plus)?,
            Op::WriterOpen { k, mode, cached } => {
                if self.writer.is_some() {
                    return Ok(());
                }
                let exists = self.model.exists(*k);
                let want = match mode {
                    Mode::Excl if exists => Err(libc::EEXIST),
                    Mode::Trunc if !exists => Err(libc::ENOENT),
                    _ => Ok(()),
                };
                let got = self.open(&name(*k), Some(*mode), *cached);
                prop_assert_eq!(got.map(drop), want);
                if let Ok((ino, fh)) = got {
                    if !exists {
                        self.model.made(ino);
                    }
                    let truncates = matches!(mode, Mode::Create | Mode::Excl | Mode::Trunc);
                    let base = self.model.keys.get(k).map(|e| e.content.clone()).unwrap_or_default();
                    let (copy, dirty) = if truncates || !exists { (Vec::new(), true) } else { (base, false) };
                    self.model.writer = Some(Writer {
                        k: *k,
                        mode: *mode,
                        copy,
                        dirty,
                        unlinked: false,
                        peer_deleted: false,
                        pending: !exists,
                    });
                    self.writer = Some((ino, fh));
                }
            }
            Op::WriterWrite { data } => {
                let (Some((ino, fh)), Some(w)) = (self.writer, self.model.writer.as_mut()) else { return Ok(()) };
                if data.is_empty() {
                    return Ok(());
                }
                let offset = match w.mode {
                    Mode::At(o) => o as usize,
                    Mode::Append => w.copy.len(),
                    _ => w.copy.len(),
                };
                let end = offset + data.len();
                if w.copy.len() < end {
                    w.copy.resize(end, 0);
                }
                w.copy[offset..end].copy_from_slice(data);
                w.dirty = true;
                let got = self.fs.write(ino, fh, offset as u64, data).map_err(errno);
                prop_assert_eq!(got, Ok(data.len()));
            }
            Op::WriterClose => {
                let (Some((ino, fh)), Some(w)) = (self.writer.take(), self.model.writer.take()) else { return Ok(()) };
                let still_deleted = w.peer_deleted && !self.model.keys.contains_key(&w.k);
                if w.dirty && !w.unlinked && !still_deleted {
                    self.model.commit(w.k, w.copy, Some(ino));
                }
                prop_assert_eq!(self.close(ino, fh, true), Ok(()));
            }
            Op::ReaderOpen { slot, k, cached } => {
                if self.readers[*slot].is_some() {
                    return Ok(());
                }
                let want = self.model.keys.get(k).map(|e| e.content.clone()).ok_or(libc::ENOENT);
                let got = self.open(&name(*k), None, *cached);
                prop_assert_eq!(got.map(drop), want.as_ref().map(drop).map_err(|e| *e));
                if let (Ok((ino, fh)), Ok(snapshot)) = (got, want) {
                    self.readers[*slot] = Some(Reader { fh, ino, snapshot });
                }
            }
            Op::ReaderRead { slot } => {
                if let Some(r) = &self.readers[*slot] {
                    // An open file is a snapshot (docs/SEMANTICS.md).
                    let got = self.read_all(r.ino, r.fh);
                    prop_assert_eq!(got, Ok(r.snapshot.clone()));
                }
            }
            Op::ReaderClose { slot } => {
                if let Some(r) = self.readers[*slot].take() {
                    prop_assert_eq!(self.close(r.ino, r.fh, false), Ok(()));
                }
            }
            Op::DropCaches => self.drop_caches(),
            Op::FsPush { data, front } => {
                let n = self.model.push(data.clone(), *front);
                let got = self.fs_push(data, *front);
                prop_assert_eq!(got, Ok(()), "push #{}", n);
            }
            Op::FsPull { back } => {
                let want = self.model.pull(*back).map(|(_, d)| d).ok_or(libc::ENOENT);
                let got = self.fs_pull(*back);
                prop_assert_eq!(got, want);
            }
            Op::QueueList => {
                let want: Vec<String> = self.model.queue.iter().map(|(n, _)| format!("{n:015}")).collect();
                let dir = self.queue_dir();
                let got: Vec<String> = self
                    .list(dir, false)
                    .map_err(|e| fail(format!("ls queues/q: {e}")))?
                    .into_iter()
                    .map(|(_, n)| n)
                    .collect();
                prop_assert_eq!(got, want);
            }
            Op::PeerSet { k, value, tag } => {
                let tag = tag.map(|t| Scalar::Str(TAGS[t].to_string()));
                self.peer(&key(*k)).set(&key(*k), &value.value(), None, tag.as_ref()).unwrap();
                let (content, vtype) = content_of(&value.value());
                self.model.keys.insert(*k, Entry { content, vtype, tag: tag.map(|t| t.to_string()), expire: None });
                self.model.new_version(*k);
            }
            Op::PeerDelete { k } => {
                self.model.peer_deleted(*k);
                self.model.versions.remove(k);
                let had = self.model.keys.remove(k).is_some();
                prop_assert_eq!(self.peer(&key(*k)).delete(&key(*k)).unwrap(), had);
            }
            Op::PeerTouch { k, expiry } => {
                let had = self.model.keys.contains_key(k);
                let at = match expiry {
                    Expiry::Past => Some(PAST),
                    Expiry::Future => Some(FUTURE),
                    Expiry::Never => None,
                };
                prop_assert_eq!(self.peer(&key(*k)).touch_at(&key(*k), at).unwrap(), had);
                match expiry {
                    Expiry::Past => {
                        drop(self.model.keys.remove(k));
                        self.model.versions.remove(k);
                    }
                    _ => {
                        if let Some(e) = self.model.keys.get_mut(k) {
                            e.expire = at;
                        }
                    }
                }
            }
            Op::PeerPush { data, front } => {
                let n = self.model.push(data.clone(), *front);
                let side = if *front { Side::Front } else { Side::Back };
                let got = self.queue_peer().push(&Value::Bytes(data.clone()), Some(QUEUE), side, None, None).unwrap();
                prop_assert_eq!(got, Key::Str(queue_key(n)));
            }
            Op::PeerPull { back } => {
                let want = self.model.pull(*back).map(|(n, d)| (Key::Str(queue_key(n)), d));
                let side = if *back { Side::Back } else { Side::Front };
                let got = self.queue_peer().pull(Some(QUEUE), side).unwrap().map(|(k, e)| (k, content_of(&e.value).0));
                prop_assert_eq!(got, want);
            }
        }
        self.check_peer_view()
    }

    // -- Model and fs halves of the compound operations. --------------------

    /// An attribute set or removed on `k`'s file marks a made inode (the
    /// one its dentry leads to; a lookup would find the same one).
    fn attrs_set(&mut self, k: usize) {
        if !self.model.keys.contains_key(&k) {
            return;
        }
        let ino = self.dentries.get(&name(k)).copied();
        if let Some(h) = ino.and_then(|i| self.model.hints.get_mut(&i))
            && h.made
        {
            h.attrs_set = true;
        }
    }

    fn model_write(&mut self, k: usize, mode: Mode, data: &[u8], ino: Option<u64>) -> Result<(), i32> {
        let exists = self.model.exists(k);
        match mode {
            Mode::Excl if exists => return Err(libc::EEXIST),
            Mode::Trunc if !exists => return Err(libc::ENOENT),
            _ => {}
        }
        // docs/SEMANTICS.md, "Write": a file opened for writing but never
        // written is not committed, except after O_TRUNC or create; a
        // commit stores bytes and keeps the tag and expiry.
        let truncates = matches!(mode, Mode::Create | Mode::Excl | Mode::Trunc);
        if data.is_empty() && !truncates && exists {
            return Ok(());
        }
        let base = self.model.keys.get(&k).map(|e| e.content.clone()).unwrap_or_default();
        let content = match mode {
            Mode::Create | Mode::Excl | Mode::Trunc => data.to_vec(),
            Mode::Append => [base, data.to_vec()].concat(),
            Mode::At(off) => {
                let mut c = base;
                if !data.is_empty() {
                    let (off, end) = (off as usize, off as usize + data.len());
                    if c.len() < end {
                        c.resize(end, 0);
                    }
                    c[off..end].copy_from_slice(data);
                }
                c
            }
        };
        self.model.commit(k, content, ino);
        Ok(())
    }

    fn fs_write(&mut self, k: usize, mode: Mode, data: &[u8], split: usize, cached: bool) -> Result<(), i32> {
        let (ino, fh) = self.open(&name(k), Some(mode), cached)?;
        let base = if let Mode::At(off) = mode { off as u64 } else { 0 };
        let split = split.min(data.len());
        let mut result = Ok(());
        // The kernel sends no WRITE for an empty write(2).
        for (off, part) in [(0, &data[..split]), (split, &data[split..])] {
            if !part.is_empty() && result.is_ok() {
                result = match self.fs.write(ino, fh, base + off as u64, part) {
                    Ok(n) if n == part.len() => Ok(()),
                    Ok(n) => Err(-(n as i32)),
                    Err(e) => Err(e.errno()),
                };
            }
        }
        let closed = self.close(ino, fh, true);
        result.and(closed)
    }

    fn fs_read(&mut self, name: &str, cached: bool) -> Result<Entry, i32> {
        let (ino, fh) = self.open(name, None, cached)?;
        let result = (|| -> Result<Entry, i32> {
            let content = self.read_all(ino, fh)?;
            let vtype = self.xattr(ino, TYPE)?.map(|t| String::from_utf8(t).unwrap());
            let vtype = match vtype.as_deref() {
                Some("bytes") => "bytes",
                Some("str") => "str",
                Some("int") => "int",
                other => panic!("{name}: type {other:?}"),
            };
            let tag = self.xattr(ino, TAG)?.map(|t| String::from_utf8(t).unwrap());
            let expire = self.xattr(ino, EXPIRE_TIME)?.map(|t| String::from_utf8(t).unwrap().parse::<f64>().unwrap());
            Ok(Entry { content, vtype, tag, expire })
        })();
        let closed = self.close(ino, fh, false);
        let entry = result?;
        closed.map(|()| entry)
    }

    /// rename(2) in keys/: the source through the path walk, the target
    /// always revalidated (LOOKUP_RENAME_TARGET); the VFS answers EEXIST
    /// for RENAME_NOREPLACE onto a positive target, and 0 for a rename of
    /// an inode onto itself, before the file system is asked.
    fn fs_rename(&mut self, from: &str, to: &str, no_replace: bool, cached: bool) -> Result<(), i32> {
        let Some(source) = self.resolve(from, cached)? else { return Err(libc::ENOENT) };
        let target = self.lookup(to)?.map(|a| a.ino);
        if no_replace && target.is_some() {
            // (With a stale source dentry this answers EEXIST where the
            // model says ENOENT: the caller allows it.)
            return Err(libc::EEXIST);
        }
        if target == Some(source) {
            return Ok(());
        }
        self.fs.rename(KEYS_DIR, OsStr::new(from), KEYS_DIR, OsStr::new(to), no_replace).map_err(errno)?;
        // d_move: the source's dentry now has the new name; the target's
        // old inode loses its dentry.
        let replaced = self.dentries.remove(to);
        self.dentries.remove(from);
        self.dentries.insert(to.to_string(), source);
        if let Some(old) = replaced
            && old != source
        {
            self.evict_if_unused(old);
        }
        Ok(())
    }

    fn fs_push(&mut self, data: &[u8], front: bool) -> Result<(), i32> {
        let dir = self.queue_dir();
        let file = OsStr::new(if front { ".front" } else { "item" });
        // The kernel looks the name up first: a push file does not exist.
        assert_eq!(self.fs.lookup(dir, file).map_err(errno).err(), Some(libc::ENOENT));
        let (attr, fh, _) = self.fs.create(dir, file, false, true, false).map_err(errno)?;
        let written = if data.is_empty() { Ok(0) } else { self.fs.write(attr.ino, fh, 0, data).map_err(errno) };
        let flushed = self.fs.flush(fh).map_err(errno);
        let released = self.fs.release(fh).map_err(errno);
        self.fs.forget(attr.ino, 1);
        written.map(drop).and(flushed).and(released)
    }

    fn fs_pull(&mut self, back: bool) -> Result<Vec<u8>, i32> {
        let dir = self.queue_dir();
        let file = OsStr::new(if back { ".pull-back" } else { ".pull" });
        let ino = self.fs.lookup(dir, file).map_err(errno)?.ino;
        let result = (|| {
            let (fh, _) = self.fs.open(ino, false, false, false).map_err(errno)?;
            let data = self.read_all(ino, fh);
            let released = self.fs.release(fh).map_err(errno);
            let data = data?;
            released.map(|()| data)
        })();
        self.fs.forget(ino, 1);
        result
    }

    // -- Whole-state checks. ---------------------------------------------------

    /// `ls keys/` names exactly the model's live keys and queue items, in
    /// the database's sort order, as the peer's `iterkeys()` gives them
    /// (over a FanoutCache: each shard's keys in its `iterkeys()` order,
    /// the shards merged in SQLite's order of keys).
    fn check_listing(&mut self, plus: bool) -> Result<(), TestCaseError> {
        let listed: Vec<String> = self
            .list(KEYS_DIR, plus)
            .map_err(|e| fail(format!("ls keys/: errno {e}")))?
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        let mut sorted = listed.clone();
        sorted.sort();
        prop_assert_eq!(&sorted, &self.model.names(), "ls keys/");
        let mut found = 0;
        for (s, peer) in self.peers.iter().enumerate() {
            let by_key: Vec<String> = peer
                .iterkeys(false)
                .map(|k| key_to_name(&k.unwrap()))
                .filter(|n| sorted.binary_search(n).is_ok())
                .collect();
            let in_shard: Vec<&String> = listed.iter().filter(|n| by_key.contains(n)).collect();
            prop_assert_eq!(
                in_shard,
                by_key.iter().collect::<Vec<_>>(),
                "ls keys/ is in iterkeys() order (shard {})",
                s
            );
            found += by_key.len();
        }
        // Every name listed once, and found in one cache (one shard).
        prop_assert_eq!(found, listed.len(), "ls keys/ against the peer's iterkeys(): {:?}", listed);
        if self.layout == Layout::Fanout {
            let keys: Vec<Key> =
                listed.iter().map(|n| key((0..KEYS).find(|k| name(*k) == *n).expect("a model key"))).collect();
            prop_assert!(
                keys.is_sorted_by(|a, b| sqlite_order(a, b).is_le()),
                "ls keys/ merges the shards: {:?}",
                listed
            );
        }
        Ok(())
    }

    /// What python-diskcache reads now is the model (cache.db is the truth).
    fn check_peer_view(&self) -> Result<(), TestCaseError> {
        for k in 0..KEYS {
            let got = self.peer(&key(k)).get_entry(&key(k)).unwrap().map(|e| entry_of(&e));
            prop_assert_eq!(got.as_ref(), self.model.keys.get(&k), "the peer's get({:?})", key(k));
        }
        Ok(())
    }

    /// At the end: every reader closed and every reference forgotten leaves
    /// no inode behind; the tree and python-diskcache agree with the model;
    /// `Cache.check()` is clean (each shard's, over a FanoutCache, and every
    /// key is in its own shard).
    fn finish(&mut self) -> Result<(), TestCaseError> {
        self.step(&Op::WriterClose)?;
        for slot in 0..2 {
            self.step(&Op::ReaderRead { slot })?;
            self.step(&Op::ReaderClose { slot })?;
        }
        for k in 0..KEYS {
            self.step(&Op::Read { k, cached: false })?;
        }
        self.step(&Op::QueueList)?;
        self.check_listing(true)?;
        self.drop_caches();
        prop_assert!(self.inodes.is_empty(), "kernel inodes left: {:?}", self.inodes);
        prop_assert_eq!(self.fs.inode_count(), 0, "inodes left after every forget");
        for (s, peer) in self.peers.iter().enumerate() {
            let warnings = peer.check(false).unwrap();
            prop_assert!(warnings.is_empty(), "Cache.check() (shard {}): {:?}", s, warnings);
        }
        if self.layout == Layout::Fanout {
            self.check_shards()?;
        }
        Ok(())
    }

    /// A FanoutCache stays one: every row (expired ones too) in the shard
    /// of its key, no `cache.db` beside the shards, no `queues/` at the root.
    fn check_shards(&self) -> Result<(), TestCaseError> {
        for (s, peer) in self.peers.iter().enumerate() {
            for k in peer.keys_by_rowid(true) {
                let k = k.unwrap();
                prop_assert_eq!(shard_of(&k), s, "{:?} is in shard {}, not its own", k, s);
            }
        }
        prop_assert!(!self.dir.path().join("cache.db").exists(), "a cache.db beside the shards");
        let queues = self.fs.lookup(ROOT, OsStr::new("queues")).map_err(errno).err();
        prop_assert_eq!(queues, Some(libc::ENOENT), "queues/ at a FanoutCache's root");
        Ok(())
    }
}

/// SQLite's order of the test's keys (the `key` column): integers by
/// value before text, text by its bytes.
fn sqlite_order(a: &Key, b: &Key) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Key::Int(a), Key::Int(b)) => a.cmp(b),
        (Key::Str(a), Key::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
        (Key::Int(_), Key::Str(_)) => Ordering::Less,
        (Key::Str(_), Key::Int(_)) => Ordering::Greater,
        other => panic!("the test has no key {other:?}"),
    }
}

fn fail(message: String) -> TestCaseError {
    TestCaseError::fail(message)
}

fn run(layout: Layout, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = Harness::new(layout);
    for (i, op) in ops.iter().enumerate() {
        h.step(op).map_err(|e| fail(format!("{layout:?}: op #{i} {op:?}: {e}")))?;
    }
    h.finish().map_err(|e| fail(format!("{layout:?}: at the end: {e}")))
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..50)
}

// Both tests draw the same operations, so each seed of
// fs_reftest.proptest-regressions replays in both.
proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_fs_layer_behaves_like_the_reference_model(ops in ops()) {
        run(Layout::Plain, &ops)?;
    }

    #[test]
    fn the_fs_layer_over_a_fanout_cache_behaves_like_the_reference_model(ops in ops()) {
        run(Layout::Fanout, &ops)?;
    }
}

#[test]
fn the_keys_fall_in_two_shards() {
    // zlib.adler32(b'a') % 4, ... as Python computes them: three keys share
    // shard 2 and `7` (an int: 7 % 0xFFFFFFFF) is alone in shard 3.
    let shards: Vec<usize> = (0..KEYS).map(|k| shard_of(&key(k))).collect();
    assert_eq!(shards, [2, 2, 3, 2]);
}

// ---------------------------------------------------------------------------
// The subtle rules, one plain test each.

/// Every cache's (every shard's) `Cache.check()` warnings.
fn peer_warnings(h: &Harness) -> Vec<diskcachefs::cache::CheckWarning> {
    h.peers.iter().flat_map(|p| p.check(false).unwrap()).collect()
}

const LAYOUTS: [Layout; 2] = [Layout::Plain, Layout::Fanout];

fn peer_bytes(h: &Harness, k: usize) -> Option<Vec<u8>> {
    h.peer(&key(k)).get(&key(k)).unwrap().map(|v| content_of(&v).0)
}

#[test]
fn a_reader_keeps_its_snapshot_after_a_peer_set() {
    // docs/SEMANTICS.md, "Content (read)": an open file is a snapshot: a
    // reader sees the whole value as it was when it opened the file, even if
    // another process replaces the entry meanwhile; its inode is superseded
    // (keeps reporting the reader's version) and the name leads to a new one.
    for (layout, old) in
        LAYOUTS.into_iter().flat_map(|l| [(l, b"old".to_vec()), (l, b"an old value stored in a value file".to_vec())])
    {
        let mut h = Harness::new(layout);
        h.peer(&key(0)).set(&key(0), &Value::Bytes(old.clone()), None, None).unwrap();
        let x = h.lookup("a").unwrap().unwrap().ino;
        let (fh, _) = h.fs.open(x, false, false, false).unwrap();
        h.peer(&key(0)).set(&key(0), &Value::Bytes(b"new".to_vec()), None, None).unwrap();

        assert_eq!(h.read_all(x, fh), Ok(old.clone()));
        // fstat: the snapshot's size, which the kernel's pages rely on.
        assert_eq!(h.fs.getattr(x).unwrap().size, old.len() as u64);
        // A second open through the dentry the kernel still has: ESTALE,
        // and the name looked up again is a new inode with the new value.
        assert_eq!(h.fs.open(x, false, false, false).map_err(errno).err(), Some(libc::ESTALE));
        let y = h.lookup("a").unwrap().unwrap();
        assert_ne!(y.ino, x);
        assert_eq!(y.size, 3);
        let (fh2, _) = h.fs.open(y.ino, false, false, false).unwrap();
        assert_eq!(h.read_all(y.ino, fh2), Ok(b"new".to_vec()));
        // Still the snapshot, to the end.
        assert_eq!(h.read_all(x, fh), Ok(old));
        h.fs.release(fh).unwrap();
        h.fs.release(fh2).unwrap();
        h.drop_caches();
        assert_eq!(h.fs.inode_count(), 0);
    }
}

#[test]
fn a_file_being_created_is_the_peers_only_once_closed() {
    // docs/SEMANTICS.md, "Write": the new value becomes visible atomically
    // when the file is closed (FLUSH); before that a peer's delete finds
    // nothing to delete and does not undo the create.
    for layout in LAYOUTS {
        let mut h = Harness::new(layout);
        let (attr, fh, _) = h.fs.create(KEYS_DIR, OsStr::new("a"), true, true, false).unwrap();
        h.learn("a", attr.ino);
        assert_eq!(h.fs.write(attr.ino, fh, 0, b"hello").unwrap(), 5);
        assert_eq!(peer_bytes(&h, 0), None);
        assert!(!h.peer(&key(0)).delete(&key(0)).unwrap());
        // The creating process still sees its file (and O_EXCL refuses it).
        assert!(h.lookup("a").unwrap().is_some());
        assert_eq!(h.fs.create(KEYS_DIR, OsStr::new("a"), true, true, false).map_err(errno).err(), Some(libc::EEXIST));
        h.fs.flush(fh).unwrap();
        assert_eq!(peer_bytes(&h, 0), Some(b"hello".to_vec()));
        h.fs.release(fh).unwrap();
        h.drop_caches();
        assert_eq!(h.fs.inode_count(), 0);
        assert_eq!(peer_warnings(&h), vec![]);
    }
}

#[test]
fn a_rename_onto_itself_keeps_everything_and_of_a_deleted_entry_is_enoent() {
    // docs/SEMANTICS.md, "Delete, rename, times, modes": mv keys/a keys/b
    // renames the key atomically, keeping value, tag, expiry and times; a
    // rename onto itself is a rename to the same key (nothing changes), and
    // of an entry a peer deleted is ENOENT, as for any missing file.
    for layout in LAYOUTS {
        let mut h = Harness::new(layout);
        let grp = Scalar::Str("grp".into());
        h.peer(&key(0)).set(&key(0), &Value::Str("v".into()), None, Some(&grp)).unwrap();
        assert!(h.peer(&key(0)).touch_at(&key(0), Some(FUTURE)).unwrap());
        let before = h.peer(&key(0)).entry_meta(&key(0)).unwrap().unwrap();
        h.lookup("a").unwrap().unwrap();
        h.fs.rename(KEYS_DIR, OsStr::new("a"), KEYS_DIR, OsStr::new("a"), false).unwrap();
        let after = h.peer(&key(0)).entry_meta(&key(0)).unwrap().unwrap();
        assert_eq!((after.rowid, after.store_time, after.expire_time), (before.rowid, before.store_time, Some(FUTURE)));
        let entry = h.peer(&key(0)).get_entry(&key(0)).unwrap().unwrap();
        assert_eq!((entry.value, entry.tag), (Value::Str("v".into()), Some(grp)));

        // The kernel still has the dentry; the peer deletes the entry.
        assert!(h.peer(&key(0)).delete(&key(0)).unwrap());
        for no_replace in [false, true] {
            let r = h.fs.rename(KEYS_DIR, OsStr::new("a"), KEYS_DIR, OsStr::new("a"), no_replace);
            assert_eq!(r.map_err(errno), Err(libc::ENOENT));
        }
        assert_eq!(peer_bytes(&h, 0), None);
        h.drop_caches();
        assert_eq!(h.fs.inode_count(), 0);
    }
}

#[test]
fn an_open_through_a_dentry_whose_entry_a_peer_deleted_is_estale() {
    // docs/SEMANTICS.md, "Content (read)": opening a name whose entry a peer
    // has deleted meanwhile (while the kernel still caches the name) makes
    // the kernel look the name up again (ESTALE inside the kernel): a plain
    // open is ENOENT, open(O_CREAT) creates the key anew.
    for layout in LAYOUTS {
        let mut h = Harness::new(layout);
        for k in [0, 1] {
            h.peer(&key(k)).set(&key(k), &Value::Bytes(b"old".to_vec()), None, None).unwrap();
            h.lookup(&name(k)).unwrap().unwrap();
            assert!(h.peer(&key(k)).delete(&key(k)).unwrap());
        }
        let x = h.dentries["a"];
        for write in [false, true] {
            assert_eq!(h.fs.open(x, write, false, false).map_err(errno).err(), Some(libc::ESTALE), "write={write}");
        }
        // Through the kernel (the dentries are still cached): a plain open is
        // ENOENT after the second look...
        assert_eq!(h.open("b c", None, true), Err(libc::ENOENT));
        // ...and O_CREAT creates the key anew, on a new inode.
        let (ino, fh) = h.open("a", Some(Mode::At(0)), true).unwrap();
        assert_ne!(ino, x);
        assert_eq!(h.fs.write(ino, fh, 0, b"new").unwrap(), 3);
        h.close(ino, fh, true).unwrap();
        assert_eq!(peer_bytes(&h, 0), Some(b"new".to_vec()));
        assert_eq!(peer_bytes(&h, 1), None);
        h.drop_caches();
        assert_eq!(h.fs.inode_count(), 0);
        assert_eq!(peer_warnings(&h), vec![]);
    }
}

fn run_both(ops: &[Op]) {
    for layout in LAYOUTS {
        run(layout, ops).unwrap();
    }
}

// Shrunk failures of the proptest above, kept as named cases (each was
// the harness's mistake, not the file system's; they pin the kernel
// emulation down).

/// A rename onto itself whose target lookup finds a new inode (the old one
/// superseded for its reader): the VFS asks the file system, and d_move
/// must drop the new inode's dentry, else the kernel never forgets it.
#[test]
fn regression_rename_onto_itself_of_a_superseded_inode() {
    run_both(&[
        Op::WriterOpen { k: 1, mode: Mode::Append, cached: false },
        Op::WriterClose,
        Op::ReaderOpen { slot: 0, k: 1, cached: false },
        Op::PeerSet { k: 1, value: PeerValue::Bytes(vec![]), tag: None },
        Op::Rename { from: 1, to: 1, no_replace: false, cached: true },
        Op::PeerDelete { k: 1 },
    ]);
}

/// A file made through the mount whose rewrite kept a peer's `str` type,
/// renamed over a bytes entry: an edit of that entry, so bytes (the model
/// kept `str`, as if no content were valid for bytes).
#[test]
fn regression_a_made_file_that_kept_str_renamed_over_bytes_is_bytes() {
    run_both(&[
        Op::Write { k: 3, mode: Mode::Append, data: vec![], split: 0, cached: false },
        Op::Write { k: 1, mode: Mode::Create, data: vec![], split: 0, cached: false },
        Op::WriterOpen { k: 3, mode: Mode::Create, cached: false },
        Op::PeerSet { k: 3, value: PeerValue::Str(String::new()), tag: None },
        Op::WriterClose,
        Op::Rename { from: 3, to: 1, no_replace: false, cached: false },
    ]);
}

/// RENAME_NOREPLACE through a source dentry whose entry expired: the VFS
/// answers EEXIST for the existing target before the file system sees it.
#[test]
fn regression_noreplace_rename_through_a_stale_source_dentry() {
    run_both(&[
        Op::Write { k: 2, mode: Mode::Create, data: vec![], split: 0, cached: false },
        Op::PeerTouch { k: 2, expiry: Expiry::Past },
        Op::Write { k: 1, mode: Mode::Append, data: vec![], split: 0, cached: false },
        Op::Rename { from: 2, to: 1, no_replace: true, cached: true },
    ]);
}
