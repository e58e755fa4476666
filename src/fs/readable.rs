//! [`Readable`]: values readable by people, over any [`Tree`]
//! (docs/SEMANTICS.md, "Values as JSON (`json/`)"):
//!
//! - `json/`, hidden in the root, mirrors `keys/`: inode `JSON_BASE + x`
//!   is key file or directory `x` of `keys/` (names, directories and
//!   lookups counted by the tree below), each file its value rendered by
//!   [`crate::cache::render`]. Read-only; the attributes of its files are
//!   never cached by the kernel (TTL 0) and their content is read with
//!   direct I/O, so the view is current without invalidations of its own;
//!   its directories have the mount's TTL, as `keys/`'s do.
//! - `user.diskcache.imports` on a `keys/` file of a pickled value: what
//!   the pickle would import ([`crate::cache::pickle`]).
//!
//! Values are read through the tree below as a reader would (`open`,
//! `read`, `release`), so this layer knows nothing of the store; renderings
//! are kept per (inode, size, times) while memory allows.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::cache::Value;
use crate::cache::pickle;
use crate::cache::render::json::Json;
use crate::cache::render::render_value;
use crate::fs::error::FsError;
use crate::fs::filesystem::{Attr, DirReplier, FsConfig, Kind, OpenFlags, StatFs};
use crate::fs::inode::{KEY_DIR_END, KEYS_DIR, Node, ROOT, classify};
use crate::fs::request_stats::RequestStats;
use crate::fs::tree::Tree;

/// `json/`'s inodes: this plus the inode of what they mirror in `keys/`.
pub const JSON_BASE: u64 = 1 << 47;
/// `json/` itself (the mirror of `keys/`).
pub const JSON_DIR: u64 = JSON_BASE + KEYS_DIR;
// Above the tree's own inodes, below a FanoutCache's sub-store routes.
const _: () = assert!(KEY_DIR_END <= JSON_BASE && 2 * JSON_BASE <= 1 << 48);
/// The name in the root.
pub const JSON_NAME: &str = "json";
/// The attribute naming what a pickle would import.
pub const IMPORTS_XATTR: &str = "user.diskcache.imports";
/// Handles of `json/` files carry this bit (the trees below count far
/// less; a FanoutCache's sub-store handles are tagged from 2^52 up).
const JSON_FH: u64 = 1 << 50;
/// Values larger than this are not read for `json/` (their document says
/// so instead).
pub const MAX_RENDERED_VALUE: u64 = 64 << 20;
/// Renderings kept, in bytes.
const CACHE_BYTES: usize = 32 << 20;

/// What a kept rendering was made from: a later version differs in size or
/// times.
type Stamp = (u64, SystemTime, SystemTime);

pub struct Readable<T: Tree> {
    inner: T,
    handles: Mutex<HashMap<u64, Arc<Vec<u8>>>>,
    next_fh: AtomicU64,
    rendered: Mutex<Rendered>,
}

#[derive(Default)]
struct Rendered {
    by_ino: HashMap<u64, (Stamp, Arc<Vec<u8>>)>,
    bytes: usize,
}

/// A handle of this layer's (a FanoutCache's sub-store handles, tagged
/// above 2^52, may carry the sub-store's own JSON_FH bit).
fn is_json_fh(fh: u64) -> bool {
    fh >> 50 == 1
}

/// The `keys/` inode a `json/` inode mirrors.
fn mirrored(ino: u64) -> Option<u64> {
    (JSON_BASE..2 * JSON_BASE).contains(&ino).then(|| ino - JSON_BASE)
}

/// A `keys/` inode as `json/` shows it.
fn mirror(ino: u64) -> u64 {
    if ino == ROOT || ino >= KEY_DIR_END { ino } else { JSON_BASE + ino }
}

fn stamp(a: &Attr) -> Stamp {
    (a.size, a.mtime, a.ctime)
}

fn read_only(what: &str) -> FsError {
    FsError::NotPermitted(format!("json/ is read-only ({what})"))
}

/// `readdir` of a `keys/` directory, answered as its `json/` mirror.
struct Mirror<'a> {
    out: &'a mut dyn DirReplier,
}

impl DirReplier for Mirror<'_> {
    fn add(&mut self, ino: u64, next_offset: u64, kind: Kind, name: &OsStr, attr: Option<&Attr>) -> bool {
        // Sizes are the stored ones here (rendering inside a listing would
        // hold it up); json/'s attributes have a TTL of 0, so `stat` asks.
        let attr = attr.map(|a| mirror_attr(*a, a.size));
        self.out.add(mirror(ino), next_offset, kind, name, attr.as_ref())
    }
}

fn mirror_attr(mut a: Attr, size: u64) -> Attr {
    a.ino = mirror(a.ino);
    a.size = size;
    a.perm = if a.kind == Kind::Directory { 0o555 } else { 0o444 };
    a
}

impl<T: Tree> Readable<T> {
    pub fn new(inner: T) -> Readable<T> {
        Readable { inner, handles: Mutex::default(), next_fh: AtomicU64::new(1), rendered: Mutex::default() }
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    fn handles(&self) -> MutexGuard<'_, HashMap<u64, Arc<Vec<u8>>>> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `x`'s attributes as `json/` shows them (a file's size is its
    /// rendering's).
    fn json_attr(&self, x: u64, attr: Attr) -> Result<Attr, FsError> {
        if attr.kind != Kind::File {
            return Ok(mirror_attr(attr, attr.size));
        }
        let doc = self.rendering(x, &attr)?;
        Ok(mirror_attr(attr, doc.len() as u64))
    }

    /// The value of key file `x`, read as a reader reads it, with the
    /// stamp it was read at.
    fn value(&self, x: u64) -> Result<(Value, Stamp), FsError> {
        let mut last = None;
        for _ in 0..3 {
            let before = self.inner.getattr(x)?;
            if before.size > MAX_RENDERED_VALUE {
                return Err(FsError::InvalidValue {
                    what: format!("inode {x}"),
                    reason: format!("{} bytes: larger than json/ reads ({MAX_RENDERED_VALUE})", before.size),
                });
            }
            let kind = self.inner.getxattr(x, OsStr::new(crate::fs::xattr::TYPE))?;
            let data = self.read_all(x)?;
            let after = self.inner.getattr(x)?;
            let value = as_value(&kind, data);
            if stamp(&before) == stamp(&after) {
                return Ok((value, stamp(&after)));
            }
            // A peer changed it while it was read: again.
            last = Some((value, stamp(&after)));
        }
        Ok(last.expect("three tries"))
    }

    fn read_all(&self, x: u64) -> Result<Vec<u8>, FsError> {
        let (fh, flags) = self.inner.open(x, false, false, false)?;
        if flags.passthrough {
            self.inner.passthrough_refused(fh);
        }
        let mut data = Vec::new();
        let read = loop {
            match self.inner.read(x, fh, data.len() as u64, 1 << 20) {
                Ok(chunk) if chunk.is_empty() => break Ok(()),
                Ok(chunk) if data.len() as u64 + chunk.len() as u64 > MAX_RENDERED_VALUE => {
                    break Err(FsError::InvalidValue {
                        what: format!("inode {x}"),
                        reason: format!("larger than json/ reads ({MAX_RENDERED_VALUE})"),
                    });
                }
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(e) => break Err(e),
            }
        };
        let released = self.inner.release(fh);
        read?;
        released?;
        Ok(data)
    }

    /// Key file `x`'s document: kept while its stamp holds.
    /// `now`: `x`'s attributes, just asked for.
    fn rendering(&self, x: u64, now: &Attr) -> Result<Arc<Vec<u8>>, FsError> {
        {
            let kept = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((s, doc)) = kept.by_ino.get(&x)
                && *s == stamp(now)
            {
                return Ok(doc.clone());
            }
        }
        let (doc, at) = match self.value(x) {
            Ok((value, at)) => (Arc::new(render_value(&value).into_bytes()), at),
            Err(FsError::InvalidValue { reason, .. }) => {
                let doc = Json::object(vec![("__error__", Json::Str(reason))]);
                (Arc::new(format!("{}\n", doc.pretty()).into_bytes()), stamp(now))
            }
            Err(e) => return Err(e),
        };
        let mut kept = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if kept.bytes + doc.len() > CACHE_BYTES {
            kept.by_ino.clear();
            kept.bytes = 0;
        }
        if doc.len() <= CACHE_BYTES {
            kept.bytes += doc.len();
            if let Some((_, old)) = kept.by_ino.insert(x, (at, doc.clone())) {
                kept.bytes -= old.len();
            }
        }
        Ok(doc)
    }

    /// `user.diskcache.imports` of key file `ino`.
    fn imports(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        let kind = self.inner.getxattr(ino, OsStr::new(crate::fs::xattr::TYPE))?;
        if kind != b"pickle" {
            return Err(FsError::NoAttribute(IMPORTS_XATTR.into()));
        }
        let (value, _) = self.value(ino)?;
        let Value::Pickle(data) = value else { return Err(FsError::NoAttribute(IMPORTS_XATTR.into())) };
        let names = pickle::read(&data).imports;
        Ok(Json::Array(names.into_iter().map(Json::Str).collect()).compact().into_bytes())
    }

    fn is_json_root(parent: u64, name: &OsStr) -> bool {
        parent == ROOT && name == JSON_NAME
    }

    /// A key's file of this tree (a sub-store's tree answers for its own).
    fn is_key_file(ino: u64) -> bool {
        classify(ino) == Node::Key
    }
}

/// File content of the given `user.diskcache.type` as the value it is.
fn as_value(kind: &[u8], data: Vec<u8>) -> Value {
    let text = |d: Vec<u8>| String::from_utf8(d).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    match kind {
        b"pickle" => Value::Pickle(data),
        b"str" => Value::Str(text(data)),
        b"none" => Value::None,
        b"int" => match text(data.clone()).trim().parse() {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Bytes(data),
        },
        b"float" => match text(data.clone()).trim().parse() {
            Ok(f) => Value::Float(f),
            Err(_) => Value::Bytes(data),
        },
        _ => Value::Bytes(data),
    }
}

impl<T: Tree> Tree for Readable<T> {
    fn config(&self) -> &FsConfig {
        self.inner.config()
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        if Self::is_json_root(parent, name) {
            let attr = self.inner.lookup(ROOT, OsStr::new("keys"))?;
            return Ok(mirror_attr(attr, attr.size));
        }
        let Some(p) = mirrored(parent) else { return self.inner.lookup(parent, name) };
        let attr = self.inner.lookup(p, name)?;
        self.json_attr(attr.ino, attr).inspect_err(|_| self.inner.forget(attr.ino, 1))
    }

    fn negative_ttl(&self, parent: u64, name: &OsStr) -> Option<std::time::Duration> {
        // Misses in the JSON mirror are not kept.
        if mirrored(parent).is_some() || Self::is_json_root(parent, name) {
            return None;
        }
        self.inner.negative_ttl(parent, name)
    }

    fn set_epoch_bump(&self, bump: Arc<dyn Fn() -> bool + Send + Sync>) {
        self.inner.set_epoch_bump(bump)
    }

    fn forget(&self, ino: u64, nlookup: u64) {
        self.inner.forget(mirrored(ino).unwrap_or(ino), nlookup)
    }

    fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        match mirrored(ino) {
            Some(x) => {
                let attr = self.inner.getattr(x)?;
                self.json_attr(x, attr)
            }
            None => self.inner.getattr(ino),
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
        match mirrored(ino) {
            Some(_) if size.is_some() => Err(FsError::AccessDenied("json/ is read-only".into())),
            Some(_) if atime.is_some() || mtime.is_some() => Err(read_only("times")),
            // chmod, chown: accepted and ignored, as in keys/.
            Some(_) => self.getattr(ino),
            None => self.inner.setattr(ino, fh, size, atime, mtime),
        }
    }

    fn readdir(&self, ino: u64, offset: u64, plus: bool, out: &mut dyn DirReplier) -> Result<(), FsError> {
        match mirrored(ino) {
            Some(x) => self.inner.readdir(x, offset, plus, &mut Mirror { out }),
            None => self.inner.readdir(ino, offset, plus, out),
        }
    }

    fn mknod_regular(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        if Self::is_json_root(parent, name) {
            return Err(FsError::Exists(JSON_NAME.into()));
        }
        if mirrored(parent).is_some() {
            return Err(read_only("create"));
        }
        self.inner.mknod_regular(parent, name)
    }

    fn mkdir(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        if Self::is_json_root(parent, name) {
            return Err(FsError::Exists(JSON_NAME.into()));
        }
        if mirrored(parent).is_some() {
            return Err(read_only("mkdir"));
        }
        self.inner.mkdir(parent, name)
    }

    fn rmdir(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        if Self::is_json_root(parent, name) || mirrored(parent).is_some() {
            return Err(read_only("rmdir"));
        }
        self.inner.rmdir(parent, name)
    }

    fn unlink(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        if Self::is_json_root(parent, name) || mirrored(parent).is_some() {
            return Err(read_only("unlink"));
        }
        self.inner.unlink(parent, name)
    }

    fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), FsError> {
        let touches = Self::is_json_root(parent, name)
            || Self::is_json_root(new_parent, new_name)
            || mirrored(parent).is_some()
            || mirrored(new_parent).is_some();
        if touches {
            return Err(read_only("rename"));
        }
        self.inner.rename(parent, name, new_parent, new_name, no_replace)
    }

    fn symlink(&self, parent: u64, name: &OsStr, target: &Path) -> Result<Attr, FsError> {
        if Self::is_json_root(parent, name) {
            return Err(FsError::Exists(JSON_NAME.into()));
        }
        if mirrored(parent).is_some() {
            return Err(read_only("symlink"));
        }
        self.inner.symlink(parent, name, target)
    }

    fn readlink(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        match mirrored(ino) {
            Some(_) => {
                Err(FsError::InvalidValue { what: format!("inode {ino}"), reason: "not a symbolic link".into() })
            }
            None => self.inner.readlink(ino),
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
        if Self::is_json_root(parent, name) {
            return Err(FsError::Exists(JSON_NAME.into()));
        }
        if mirrored(parent).is_some() {
            return Err(read_only("create"));
        }
        self.inner.create(parent, name, exclusive, truncate, append)
    }

    fn open(&self, ino: u64, write: bool, truncate: bool, append: bool) -> Result<(u64, OpenFlags), FsError> {
        let Some(x) = mirrored(ino) else { return self.inner.open(ino, write, truncate, append) };
        let attr = self.inner.getattr(x)?;
        if attr.kind == Kind::Directory {
            return if write {
                Err(FsError::IsDirectory(format!("inode {ino}")))
            } else {
                Ok((0, OpenFlags::default()))
            };
        }
        if write {
            return Err(FsError::AccessDenied("json/ is read-only".into()));
        }
        let doc = self.rendering(x, &attr)?;
        let fh = JSON_FH | self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles().insert(fh, doc);
        // The size the kernel has may be of an older rendering.
        Ok((fh, OpenFlags { direct_io: true, no_flush: true, ..OpenFlags::default() }))
    }

    fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        let doc = if is_json_fh(fh) {
            self.handles().get(&fh).cloned().ok_or(FsError::BadHandle(fh))?
        } else if let (0, Some(x)) = (fh, mirrored(ino)) {
            // A read-only mount's READ without OPEN (filesystem/unopened.rs).
            self.rendering(x, &self.inner.getattr(x)?)?
        } else {
            return self.inner.read(ino, fh, offset, size);
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(doc.len());
        let end = start.saturating_add(size as usize).min(doc.len());
        Ok(doc[start..end].to_vec())
    }

    fn write(&self, ino: u64, fh: u64, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        if is_json_fh(fh) || mirrored(ino).is_some() {
            return Err(FsError::AccessDenied("json/ is read-only".into()));
        }
        self.inner.write(ino, fh, offset, data)
    }

    fn flush(&self, fh: u64) -> Result<(), FsError> {
        if is_json_fh(fh) { Ok(()) } else { self.inner.flush(fh) }
    }

    fn fsync(&self, fh: u64) -> Result<(), FsError> {
        if is_json_fh(fh) { Ok(()) } else { self.inner.fsync(fh) }
    }

    fn release(&self, fh: u64) -> Result<(), FsError> {
        if is_json_fh(fh) {
            self.handles().remove(&fh);
            return Ok(());
        }
        self.inner.release(fh)
    }

    fn statfs(&self) -> Result<StatFs, FsError> {
        self.inner.statfs()
    }

    fn getxattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>, FsError> {
        if mirrored(ino).is_some() {
            return Err(FsError::NoAttribute(name.to_string_lossy().into_owned()));
        }
        if name == IMPORTS_XATTR && Self::is_key_file(ino) {
            return self.imports(ino);
        }
        self.inner.getxattr(ino, name)
    }

    fn listxattr(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        // The imports are not listed: rsync -aX would copy them, and could
        // not set them back.
        if mirrored(ino).is_some() { Ok(Vec::new()) } else { self.inner.listxattr(ino) }
    }

    fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], create: bool, replace: bool) -> Result<(), FsError> {
        if mirrored(ino).is_some() {
            return Err(read_only("setxattr"));
        }
        if name == IMPORTS_XATTR {
            return Err(FsError::NotPermitted(format!("{IMPORTS_XATTR} is what the pickle says, read-only")));
        }
        self.inner.setxattr(ino, name, value, create, replace)
    }

    fn removexattr(&self, ino: u64, name: &OsStr) -> Result<(), FsError> {
        if mirrored(ino).is_some() {
            return Err(read_only("removexattr"));
        }
        if name == IMPORTS_XATTR {
            return Err(FsError::NotPermitted(format!("{IMPORTS_XATTR} is what the pickle says, read-only")));
        }
        self.inner.removexattr(ino, name)
    }

    fn ttl_for(&self, ino: u64) -> Duration {
        match mirrored(ino) {
            // A file's size is its rendering's, which any change of the
            // value changes: asked for at each use. A directory changes as
            // keys/'s do, within the mount's TTL (not the watcher's longer
            // one: it invalidates keys/ names, not these).
            Some(x) if x == KEYS_DIR || classify(x) == Node::KeyDir => self.inner.config().ttl,
            Some(_) => Duration::ZERO,
            None => self.inner.ttl_for(ino),
        }
    }

    fn listing_cache(&self, ino: u64) -> (bool, bool) {
        if mirrored(ino).is_some() { (false, false) } else { self.inner.listing_cache(ino) }
    }

    fn set_passthrough(&self, on: bool) {
        self.inner.set_passthrough(on)
    }

    fn backing_file(&self, fh: u64) -> Option<std::fs::File> {
        if is_json_fh(fh) { None } else { self.inner.backing_file(fh) }
    }

    fn content_len(&self, fh: u64) -> Option<u64> {
        if is_json_fh(fh) { self.handles().get(&fh).map(|doc| doc.len() as u64) } else { self.inner.content_len(fh) }
    }

    fn passthrough_refused(&self, fh: u64) {
        if !is_json_fh(fh) {
            self.inner.passthrough_refused(fh)
        }
    }

    fn set_request_stats(&self, stats: Arc<RequestStats>) {
        self.inner.set_request_stats(stats)
    }

    fn watch(&self) -> bool {
        self.inner.watch()
    }
}
