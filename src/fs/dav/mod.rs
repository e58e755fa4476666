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
mod listing;
mod page;
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
use crate::fs::filesystem::{Attr, Kind};
use crate::fs::tree::Tree;
use file::{Open, TreeFile, body_file};
pub use page::{Answer, Page, constant_time_eq};
pub use props::PROP_NAMESPACE;
use props::{DeadProps, ListedProps, xattr_of};
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
    /// Our properties of entries just listed, for the PROPFIND (props.rs).
    listed: ListedProps,
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
            listed: self.listed.clone(),
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
        DavTree {
            tree,
            read_only,
            max_body,
            made: Default::default(),
            dead: DeadProps::default(),
            listed: ListedProps::default(),
        }
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
        self.listed.take(&path);
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

impl<T: Tree> DavFileSystem for DavTree<T> {
    fn open<'a>(&'a self, path: &'a DavPath, options: OpenOptions) -> FsFuture<'a, Box<dyn DavFile>> {
        let path = path.clone();
        if options.write || options.create || options.create_new || options.truncate {
            self.listed.take(&path);
        }
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
            // A value replaced between the lookup and the open (ESTALE,
            // as the kernel gets it) is looked up again, as the kernel
            // does, a few times before giving up.
            let mut tries = 0;
            let (attr, fh) = loop {
                let attr = walk.resolve(&path).map_err(dav_error)?;
                if attr.kind == Kind::Directory {
                    return Err(DavError::Forbidden);
                }
                match tree.open(attr.ino, false, false, false) {
                    Ok((fh, _)) => break (attr, fh),
                    Err(FsError::Stale(_)) if tries < 5 => tries += 1,
                    Err(FsError::Stale(_)) => return Err(DavError::NotFound),
                    Err(e) => return Err(dav_error(e)),
                }
            };
            // The size of what this handle reads: a peer may have replaced
            // the value since the lookup, and a GET's Content-Length must
            // be the snapshot's (dav-server pads a short one with zeros).
            let attr = Attr { size: tree.content_len(fh).unwrap_or(attr.size), ..attr };
            let open = Open::Read { ino: attr.ino, fh, pos: 0, attr };
            Ok(Box::new(TreeFile { tree: tree.clone(), open: Some(open), _held: None }))
        })
    }

    /// A listing, read from the tree a batch at a time as the response is
    /// written (a directory of a million keys costs one batch of memory).
    fn read_dir<'a>(&'a self, path: &'a DavPath, _meta: ReadDirMeta) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        let path = path.clone();
        let (tree, listed) = (self.tree.clone(), self.listed.clone());
        self.blocking(move |first| {
            // The directory's walk is held as long as the stream is: its
            // inode lives while looked up.
            let mut held = Walk::new(first);
            let dir = held.resolve(&path).map_err(dav_error)?;
            let held = Arc::new(held);
            let parts = walk::components(path.as_bytes());
            // (offset, done): where the next batch starts.
            let batches = futures_util::stream::unfold((0u64, false), move |(offset, done)| {
                let (tree, parts, _held, listed) = (tree.clone(), parts.clone(), held.clone(), listed.clone());
                async move {
                    if done {
                        return None;
                    }
                    let batch = tokio::task::spawn_blocking(move || {
                        let mut walk = Walk::new(&tree);
                        let batch = listing::list_batch(&mut walk, dir.ino, &parts, offset)?;
                        // While the walk holds the entries' lookups.
                        for (name, attr) in &batch.0 {
                            listed.put(&parts, name, props::ours(&*tree, attr.ino));
                        }
                        Ok(batch)
                    })
                    .await;
                    Some(match batch {
                        Ok(Ok((entries, next))) => {
                            let entries: Vec<FsResult<Box<dyn DavDirEntry>>> = entries
                                .into_iter()
                                .map(|(name, attr)| {
                                    Ok(Box::new(Entry { name, meta: Meta(attr) }) as Box<dyn DavDirEntry>)
                                })
                                .collect();
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
        let finish = move |mut props: Vec<DavProp>, path: &DavPath| {
            props.extend(dead.get(path));
            if !do_content {
                props.iter_mut().for_each(|p| p.xml = None);
            }
            props
        };
        // An entry of a listing just made: read with it.
        if let Some(props) = self.listed.take(&path) {
            return Box::pin(std::future::ready(Ok(finish(props, &path))));
        }
        self.blocking(move |tree| {
            // The walk holds the lookups until the attributes are read.
            let mut walk = Walk::new(tree);
            let attr = walk.resolve(&path).map_err(dav_error)?;
            Ok(finish(props::ours(&**tree, attr.ino), &path))
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
        self.listed.take(&path);
        self.blocking(move |tree| {
            writable?;
            let mut walk = Walk::new(tree);
            let attr = walk.resolve(&path).map_err(dav_error)?;
            Ok(props::patch(&**tree, attr.ino, &dead, &path, patch))
        })
    }

    fn copy<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        let (from, to) = (from.clone(), to.clone());
        self.listed.take(&to);
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
        self.listed.take(&from);
        self.listed.take(&to);
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
