//! [`DavTree`]: WebDAV (through the `dav-server` crate) over any [`Tree`],
//! the same namespace the FUSE adapter serves (docs/SEMANTICS.md, "Over
//! HTTP and WebDAV"). Like `fuse.rs` it only translates: a path is walked
//! from the root with `lookup` (each lookup forgotten when the request is
//! done), a listing is `readdir`, a GET reads an open handle, MOVE is
//! `rename`, DELETE `unlink`/`rmdir`, MKCOL `mkdir`.
//!
//! One difference is the protocol's: a PUT is a whole value or nothing. Its
//! body goes to an unnamed temporary file, and only once dav-server says the
//! body is complete (`flush`) is it written through the tree and committed;
//! a PUT cut off mid-body stores nothing (the FUSE side commits at close,
//! what a program wrote is what it meant).
//!
//! The tree's calls may wait on the disk or SQLite, so each runs on
//! tokio's blocking pool, never on the threads that serve connections.

mod file;
mod props;
mod walk;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::SystemTime;

use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, DavProp, FsError as DavError, FsFuture, FsResult, FsStream,
    OpenOptions, ReadDirMeta,
};
use http::StatusCode;

use crate::fs::error::FsError;
use crate::fs::filesystem::{Attr, DirReplier, Kind};
use crate::fs::tree::Tree;
use file::{Open, TreeFile, body_file};
pub use props::PROP_NAMESPACE;
use props::{DeadProps, xattr_of};
use walk::Walk;

/// Names desktop systems write beside files (Finder's AppleDouble `._*`
/// and `.DS_Store`, Explorer's `Thumbs.db` and `desktop.ini`): never keys.
pub fn is_desktop_junk(name: &[u8]) -> bool {
    name.starts_with(b"._")
        || [&b".DS_Store"[..], b"Thumbs.db", b"desktop.ini", b".localized", b".hidden"].contains(&name)
}

pub struct DavTree<T: Tree> {
    tree: Arc<T>,
    read_only: bool,
    /// The largest PUT body taken (`413` past it).
    max_body: u64,
    /// Directories made by MKCOL, whose lookup is kept: an empty directory
    /// in `keys/` lives while it is looked up (as it does in a mount while
    /// the kernel holds it), and a client PUTs into it in a later request.
    made: Arc<std::sync::Mutex<std::collections::VecDeque<u64>>>,
    /// Other namespaces' properties (props.rs).
    dead: DeadProps,
}

/// Most MKCOL directories held at once; the oldest go past it.
const MAX_MADE: usize = 10_000;

impl<T: Tree> Clone for DavTree<T> {
    fn clone(&self) -> Self {
        DavTree {
            tree: self.tree.clone(),
            read_only: self.read_only,
            max_body: self.max_body,
            made: self.made.clone(),
            dead: self.dead.clone(),
        }
    }
}

/// What a tree error is in WebDAV (RFC 4918's status codes, through
/// dav-server's kinds).
pub(super) fn dav_error(e: FsError) -> DavError {
    match e.errno() {
        libc::ENOENT | libc::ENOTDIR => DavError::NotFound,
        libc::EEXIST | libc::ENOTEMPTY => DavError::Exists,
        libc::EACCES | libc::EPERM | libc::EROFS | libc::EISDIR => DavError::Forbidden,
        libc::ENOSPC => DavError::InsufficientStorage,
        libc::ENAMETOOLONG => DavError::PathTooLong,
        libc::EXDEV => DavError::IsRemote,
        _ => {
            log::warn!("webdav: {e}");
            DavError::GeneralFailure
        }
    }
}

impl<T: Tree> DavTree<T> {
    pub fn new(tree: Arc<T>, read_only: bool, max_body: u64) -> DavTree<T> {
        DavTree { tree, read_only, max_body, made: Default::default(), dead: DeadProps::default() }
    }

    /// Runs `f` on the blocking pool.
    fn blocking<'a, R: Send + 'static>(
        &'a self,
        f: impl FnOnce(&Arc<T>) -> FsResult<R> + Send + 'static,
    ) -> FsFuture<'a, R> {
        let tree = self.tree.clone();
        Box::pin(
            async move { tokio::task::spawn_blocking(move || f(&tree)).await.map_err(|_| DavError::GeneralFailure)? },
        )
    }

    fn writable(&self) -> FsResult<()> {
        if self.read_only { Err(DavError::Forbidden) } else { Ok(()) }
    }

    /// A write to the name `path` ends in: `f` gets its directory's inode
    /// and the name, on the blocking pool, the directories held meanwhile.
    fn change<'a>(
        &'a self,
        path: &DavPath,
        f: impl FnOnce(&Arc<T>, u64, &[u8]) -> FsResult<()> + Send + 'static,
    ) -> FsFuture<'a, ()> {
        let path = path.clone();
        let writable = self.writable();
        self.blocking(move |tree| {
            writable?;
            let mut walk = Walk::new(tree);
            let (parent, name) = walk.parent_of(&path).map_err(dav_error)?;
            f(tree, parent, name.ok_or(DavError::Forbidden)?)
        })
    }
}

#[derive(Clone, Debug)]
pub(super) struct Meta(pub(super) Attr);

impl DavMetaData for Meta {
    fn len(&self) -> u64 {
        self.0.size
    }
    fn modified(&self) -> FsResult<SystemTime> {
        Ok(self.0.mtime)
    }
    fn accessed(&self) -> FsResult<SystemTime> {
        Ok(self.0.atime)
    }
    fn status_changed(&self) -> FsResult<SystemTime> {
        Ok(self.0.ctime)
    }
    fn is_dir(&self) -> bool {
        self.0.kind == Kind::Directory
    }
    fn is_symlink(&self) -> bool {
        self.0.kind == Kind::Symlink
    }
}

struct Entry {
    name: Vec<u8>,
    meta: Meta,
}

impl DavDirEntry for Entry {
    fn name(&self) -> Vec<u8> {
        self.name.clone()
    }
    fn metadata(&self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(self.meta.clone());
        Box::pin(std::future::ready(Ok(meta)))
    }
}

/// A listing's entries, collected (READDIRPLUS's: each comes with its
/// attributes and counts as a lookup).
#[derive(Default)]
struct Listing {
    /// Names, with their attributes where the tree gave them (then they
    /// count as lookups).
    entries: Vec<(Vec<u8>, Option<Attr>)>,
    next: u64,
}

/// Entries read from the tree at a time for a listing.
const LISTING_BATCH: usize = 1024;

impl DirReplier for Listing {
    fn add(&mut self, _ino: u64, next_offset: u64, _kind: Kind, name: &OsStr, attr: Option<&Attr>) -> bool {
        if self.entries.len() >= LISTING_BATCH {
            // Full, as a kernel's buffer is: this entry is not taken.
            return true;
        }
        self.next = next_offset;
        if name != "." && name != ".." {
            self.entries.push((name.as_bytes().to_vec(), attr.copied()));
        }
        false
    }
}

impl<T: Tree> DavFileSystem for DavTree<T> {
    fn open<'a>(&'a self, path: &'a DavPath, options: OpenOptions) -> FsFuture<'a, Box<dyn DavFile>> {
        let path = path.clone();
        let (read_only, max_body) = (self.read_only, self.max_body);
        self.blocking(move |tree| {
            let mut walk = Walk::new(tree);
            if options.write || options.append || options.truncate || options.create || options.create_new {
                if read_only {
                    return Err(DavError::Forbidden);
                }
                if options.append {
                    return Err(DavError::NotImplemented);
                }
                if options.size.is_some_and(|n| n > max_body) {
                    return Err(DavError::TooLarge);
                }
                // A link (`task/T/V/HASH`) is written through to its entry.
                let parts = match walk.follow(walk::components(path.as_bytes())) {
                    Ok((parts, _)) => parts,
                    Err(FsError::NotFound(_)) => walk::components(path.as_bytes()),
                    Err(e) => return Err(dav_error(e)),
                };
                let (name, dirs) = parts.split_last().ok_or(DavError::Forbidden)?;
                let (parent, name) = (walk.dir(dirs).map_err(dav_error)?, name.clone());
                if is_desktop_junk(&name) {
                    return Err(DavError::Forbidden);
                }
                let existing = walk.lookup(parent, &name);
                let attr = match existing {
                    Ok(_) if options.create_new => return Err(DavError::Exists),
                    Ok(a) if a.kind == Kind::Directory => return Err(DavError::Forbidden),
                    Ok(a) => a,
                    Err(FsError::NotFound(_)) if options.create || options.create_new => {
                        tree.getattr(parent).map_err(dav_error)?
                    }
                    Err(e) => return Err(dav_error(e)),
                };
                let body = body_file().map_err(|e| dav_error(FsError::io("a PUT body", e)))?;
                let attr = Attr { kind: Kind::File, size: 0, ..attr };
                let open = Open::Put { parent, name, body, len: 0, attr, expected: options.size, max: max_body };
                return Ok(
                    Box::new(TreeFile { tree: tree.clone(), open: Some(open), _held: Some(walk) }) as Box<dyn DavFile>
                );
            }
            let attr = walk.resolve(&path).map_err(dav_error)?;
            if attr.kind == Kind::Directory {
                return Err(DavError::Forbidden);
            }
            let (fh, _) = tree.open(attr.ino, false, false, false).map_err(dav_error)?;
            let open = Open::Read { ino: attr.ino, fh, pos: 0, attr };
            Ok(Box::new(TreeFile { tree: tree.clone(), open: Some(open), _held: None }))
        })
    }

    /// A listing, read from the tree a batch at a time as the response is
    /// written (a directory of a million keys costs one batch of memory).
    fn read_dir<'a>(&'a self, path: &'a DavPath, _meta: ReadDirMeta) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        let path = path.clone();
        let tree = self.tree.clone();
        self.blocking(move |first| {
            // The directory's walk is held as long as the stream is: its
            // inode lives while looked up.
            let mut held = Walk::new(first);
            let dir = held.resolve(&path).map_err(dav_error)?;
            let held = Arc::new(held);
            let parts = walk::components(path.as_bytes());
            // (offset, done): where the next batch starts.
            let batches = futures_util::stream::unfold((0u64, false), move |(offset, done)| {
                let (tree, parts, _held) = (tree.clone(), parts.clone(), held.clone());
                async move {
                    if done {
                        return None;
                    }
                    let batch = tokio::task::spawn_blocking(move || list_batch(&tree, dir.ino, &parts, offset)).await;
                    Some(match batch {
                        Ok(Ok((entries, next))) => {
                            let entries: Vec<FsResult<Box<dyn DavDirEntry>>> = entries.into_iter().map(Ok).collect();
                            (futures_util::stream::iter(entries), (next, next == offset))
                        }
                        Ok(Err(e)) => {
                            log::warn!("webdav: a listing: {e}");
                            (futures_util::stream::iter(vec![Err(dav_error(e))]), (offset, true))
                        }
                        Err(_) => (futures_util::stream::iter(vec![Err(DavError::GeneralFailure)]), (offset, true)),
                    })
                }
            });
            let stream: FsStream<Box<dyn DavDirEntry>> = Box::pin(futures_util::StreamExt::flatten(batches));
            Ok(stream)
        })
    }

    fn metadata<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, Box<dyn DavMetaData>> {
        let path = path.clone();
        self.blocking(move |tree| {
            let attr = Walk::new(tree).resolve(&path).map_err(dav_error)?;
            Ok(Box::new(Meta(attr)) as Box<dyn DavMetaData>)
        })
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        let made = self.made.clone();
        self.change(path, move |tree, parent, name| {
            if is_desktop_junk(name) {
                return Err(DavError::Forbidden);
            }
            let attr = tree.mkdir(parent, OsStr::from_bytes(name)).map_err(dav_error)?;
            let mut made = made.lock().unwrap_or_else(|e| e.into_inner());
            made.push_back(attr.ino);
            if made.len() > MAX_MADE
                && let Some(oldest) = made.pop_front()
            {
                tree.forget(oldest, 1);
            }
            Ok(())
        })
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        self.remove(path, true)
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath) -> FsFuture<'a, ()> {
        self.remove(path, false)
    }

    fn have_props<'a>(
        &'a self,
        _path: &'a DavPath,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        Box::pin(std::future::ready(true))
    }

    fn get_props<'a>(&'a self, path: &'a DavPath, do_content: bool) -> FsFuture<'a, Vec<DavProp>> {
        let path = path.clone();
        let dead = self.dead.clone();
        self.blocking(move |tree| {
            // The walk holds the lookups until the attributes are read.
            let mut walk = Walk::new(tree);
            let attr = walk.resolve(&path).map_err(dav_error)?;
            let mut props = props::ours(&**tree, attr.ino);
            props.extend(dead.get(&path));
            if !do_content {
                props.iter_mut().for_each(|p| p.xml = None);
            }
            Ok(props)
        })
    }

    fn get_prop<'a>(&'a self, path: &'a DavPath, prop: DavProp) -> FsFuture<'a, Vec<u8>> {
        let path = path.clone();
        let dead = self.dead.clone();
        self.blocking(move |tree| {
            let mut walk = Walk::new(tree);
            let attr = walk.resolve(&path).map_err(dav_error)?;
            let found = match xattr_of(&prop) {
                Some(_) => props::ours(&**tree, attr.ino).into_iter().find(|p| p.name == prop.name),
                None => dead.get(&path).into_iter().find(|p| p.name == prop.name && p.namespace == prop.namespace),
            };
            found.and_then(|p| p.xml).ok_or(DavError::NotFound)
        })
    }

    /// PROPPATCH: all or nothing (props.rs).
    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
    ) -> FsFuture<'a, Vec<(StatusCode, DavProp)>> {
        let path = path.clone();
        let writable = self.writable();
        let dead = self.dead.clone();
        self.blocking(move |tree| {
            writable?;
            let mut walk = Walk::new(tree);
            let attr = walk.resolve(&path).map_err(dav_error)?;
            Ok(props::patch(&**tree, attr.ino, &dead, &path, patch))
        })
    }

    fn copy<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        let (from, to) = (from.clone(), to.clone());
        let writable = self.writable();
        let dead = self.dead.clone();
        self.blocking(move |tree| {
            writable?;
            file::copy_value(tree, &mut Walk::new(tree), &from, &to).map_err(dav_error)?;
            dead.copied(&from, &to);
            Ok(())
        })
    }

    fn rename<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        let (from, to) = (from.clone(), to.clone());
        let writable = self.writable();
        let dead = self.dead.clone();
        self.blocking(move |tree| {
            writable?;
            let mut walk = Walk::new(tree);
            let (parent, name) = walk.parent_of(&from).map_err(dav_error)?;
            let (new_parent, new_name) = walk.parent_of(&to).map_err(dav_error)?;
            let (name, new_name) = (name.ok_or(DavError::Forbidden)?, new_name.ok_or(DavError::Forbidden)?);
            tree.rename(parent, OsStr::from_bytes(name), new_parent, OsStr::from_bytes(new_name), false)
                .map_err(dav_error)?;
            dead.moved(&from, &to);
            Ok(())
        })
    }
}

/// One READDIRPLUS batch of the directory `dir` (at `parts`) from
/// `offset`: its entries, each link as what it points to (a dangling one
/// left out), and the offset after them (`offset` again at the end).
fn list_batch<T: Tree>(
    tree: &Arc<T>,
    dir: u64,
    parts: &[Vec<u8>],
    offset: u64,
) -> Result<(Vec<Box<dyn DavDirEntry>>, u64), FsError> {
    let mut listing = Listing { next: offset, ..Listing::default() };
    tree.readdir(dir, offset, true, &mut listing)?;
    let mut walk = Walk::new(tree);
    let mut entries: Vec<Box<dyn DavDirEntry>> = Vec::with_capacity(listing.entries.len());
    for (name, attr) in listing.entries {
        if let Some(attr) = attr {
            // An entry of READDIRPLUS with attributes counts as a lookup.
            tree.forget(attr.ino, 1);
        }
        let attr = match attr {
            Some(attr) if attr.kind != Kind::Symlink => attr,
            // A link, or a name the tree listed without attributes.
            _ => {
                let mut path = parts.to_vec();
                path.push(name.clone());
                match walk.follow(path) {
                    Ok((_, target)) => target,
                    Err(_) => continue,
                }
            }
        };
        let rendered = (attr.kind == Kind::File && renders_values(parts)).then(|| [&name[..], b".json"].concat());
        entries.push(Box::new(Entry { name, meta: Meta(attr) }));
        if let Some(json) = rendered {
            shown_unlisted(&mut walk, parts, json, &mut entries);
        }
    }
    if offset == 0 && is_root(parts) {
        for name in ["json", "stats"] {
            shown_unlisted(&mut walk, parts, name.as_bytes().to_vec(), &mut entries);
        }
    }
    Ok((entries, listing.next))
}

/// Whether `parts` is a tree's root: the served root, or a FanoutCache's
/// sub-store `cache/NAME`.
fn is_root(parts: &[Vec<u8>]) -> bool {
    parts.is_empty() || (parts.len() == 2 && parts[0] == b"cache")
}

/// Whether `parts` is a directory whose entries have `NAME.json`
/// renderings: `task/T/V/`, `flyte2/`.
fn renders_values(parts: &[Vec<u8>]) -> bool {
    let n = parts.len();
    (n >= 3 && parts[n - 3] == b"task") || parts.last().is_some_and(|p| p == b"flyte2")
}

/// Adds `name` in `parts` to a listing when it exists. The mount leaves
/// some names out of `ls` (the root's `json/` and `stats`, a Flyte entry's
/// `.json`) so that `rsync -a` of it holds each value once; a WebDAV
/// client (davfs2, Finder) sees only what is listed, so here they are.
fn shown_unlisted<T: Tree>(walk: &mut Walk<T>, parts: &[Vec<u8>], name: Vec<u8>, out: &mut Vec<Box<dyn DavDirEntry>>) {
    let mut path = parts.to_vec();
    path.push(name.clone());
    if let Ok((_, attr)) = walk.follow(path) {
        out.push(Box::new(Entry { name, meta: Meta(attr) }));
    }
}

impl<T: Tree> DavTree<T> {
    fn remove<'a>(&'a self, path: &'a DavPath, dir: bool) -> FsFuture<'a, ()> {
        let (dead, removed) = (self.dead.clone(), path.clone());
        self.change(path, move |tree, parent, name| {
            let name = OsStr::from_bytes(name);
            if dir { tree.rmdir(parent, name) } else { tree.unlink(parent, name) }.map_err(dav_error)?;
            dead.removed(&removed);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_desktop_junk;

    #[test]
    fn desktop_junk() {
        for junk in ["._report.csv", ".DS_Store", "Thumbs.db", "desktop.ini"] {
            assert!(is_desktop_junk(junk.as_bytes()), "{junk}");
        }
        for key in ["report.csv", "_x", ".env", "DS_Store"] {
            assert!(!is_desktop_junk(key.as_bytes()), "{key}");
        }
    }
}
