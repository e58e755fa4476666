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

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Buf, Bytes};
use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavFileSystem, DavMetaData, DavProp, FsError as DavError, FsFuture, FsResult, FsStream,
    OpenOptions, ReadDirMeta,
};
use http::StatusCode;

use crate::fs::error::FsError;
use crate::fs::filesystem::{Attr, DirReplier, Kind};
use crate::fs::inode::ROOT;
use crate::fs::tree::Tree;

/// Our WebDAV properties' namespace: the attribute `user.diskcache.NAME`
/// is the property `NAME` in it (docs/SEMANTICS.md, "Over HTTP and
/// WebDAV").
pub const PROP_NAMESPACE: &str = "urn:diskcachefs:";
/// The attributes shown as properties, and settable by PROPPATCH.
const PROPS: [&str; 3] = ["tag", "expire_time", "type"];

fn xattr_of(prop: &DavProp) -> Option<String> {
    (prop.namespace.as_deref() == Some(PROP_NAMESPACE) && PROPS.contains(&prop.name.as_str()))
        .then(|| format!("user.diskcache.{}", prop.name))
}

fn prop_with(name: &str, value: &[u8]) -> DavProp {
    let text = String::from_utf8_lossy(value);
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    DavProp::new(name.to_string(), "dc".into(), PROP_NAMESPACE.into(), escaped)
}

/// The text inside a PROPPATCH's property element (`<dc:tag ...>grp</dc:tag>`,
/// or empty for `<dc:tag/>`); `None` when it holds elements.
fn prop_text(xml: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(xml).ok()?.trim_start();
    // dav-server writes the element as a document, declaration first.
    let s = match s.strip_prefix("<?") {
        Some(rest) => rest.split_once("?>")?.1.trim_start(),
        None => s,
    };
    let open_end = s.find('>')?;
    if s[..open_end].ends_with('/') {
        return Some(String::new());
    }
    let close = s.rfind("</")?;
    let inner = s.get(open_end + 1..close)?;
    if inner.contains('<') {
        return None;
    }
    Some(
        inner
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

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
}

/// Most MKCOL directories held at once; the oldest go past it.
const MAX_MADE: usize = 10_000;

impl<T: Tree> Clone for DavTree<T> {
    fn clone(&self) -> Self {
        DavTree { tree: self.tree.clone(), read_only: self.read_only, max_body: self.max_body, made: self.made.clone() }
    }
}

/// What a tree error is in WebDAV (RFC 4918's status codes, through
/// dav-server's kinds).
fn dav_error(e: FsError) -> DavError {
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

/// The inodes a request looked up, forgotten when it is done (the tree
/// counts lookups as the kernel's).
struct Walk<T: Tree> {
    tree: Arc<T>,
    looked_up: Vec<u64>,
}

impl<T: Tree> Walk<T> {
    fn new(tree: &Arc<T>) -> Walk<T> {
        Walk { tree: tree.clone(), looked_up: Vec::new() }
    }

    fn lookup(&mut self, parent: u64, name: &[u8]) -> Result<Attr, FsError> {
        let attr = self.tree.lookup(parent, OsStr::from_bytes(name))?;
        self.looked_up.push(attr.ino);
        Ok(attr)
    }

    /// The inode of `path`'s directory and `path`'s last name (`None` for
    /// the root).
    fn parent_of<'p>(&mut self, path: &'p DavPath) -> Result<(u64, Option<&'p [u8]>), FsError> {
        let parts: Vec<&[u8]> = path.as_bytes().split(|b| *b == b'/').filter(|p| !p.is_empty()).collect();
        let Some((last, dirs)) = parts.split_last() else { return Ok((ROOT, None)) };
        let mut ino = ROOT;
        for dir in dirs {
            ino = self.lookup(ino, dir)?.ino;
        }
        Ok((ino, Some(last)))
    }

    fn resolve(&mut self, path: &DavPath) -> Result<Attr, FsError> {
        match self.parent_of(path)? {
            (parent, Some(name)) => self.lookup(parent, name),
            (_, None) => self.tree.getattr(ROOT),
        }
    }
}

impl<T: Tree> Drop for Walk<T> {
    fn drop(&mut self) {
        for ino in self.looked_up.drain(..) {
            self.tree.forget(ino, 1);
        }
    }
}

impl<T: Tree> DavTree<T> {
    pub fn new(tree: Arc<T>, read_only: bool, max_body: u64) -> DavTree<T> {
        DavTree { tree, read_only, max_body, made: Default::default() }
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
}

#[derive(Clone, Debug)]
struct Meta(Attr);

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
    entries: Vec<(Vec<u8>, Attr)>,
    next: u64,
}

impl DirReplier for Listing {
    fn add(&mut self, _ino: u64, next_offset: u64, _kind: Kind, name: &OsStr, attr: Option<&Attr>) -> bool {
        self.next = next_offset;
        if let Some(attr) = attr
            && name != "."
            && name != ".."
        {
            self.entries.push((name.as_bytes().to_vec(), *attr));
        }
        false
    }
}

/// An open value: reads through the tree's handle, or a PUT's body kept
/// aside until it is complete.
#[derive(Debug)]
enum Open {
    Read { ino: u64, fh: u64, pos: u64, attr: Attr },
    Put { parent: u64, name: Vec<u8>, body: std::fs::File, len: u64, attr: Attr, expected: Option<u64>, max: u64 },
}

struct TreeFile<T: Tree> {
    tree: Arc<T>,
    open: Option<Open>,
    /// A PUT's directories, looked up until it is done: a directory of
    /// `keys/` keeps its inode only while held.
    _held: Option<Walk<T>>,
}

impl<T: Tree> std::fmt::Debug for TreeFile<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TreeFile({:?})", self.open)
    }
}

impl<T: Tree> Drop for TreeFile<T> {
    fn drop(&mut self) {
        if let Some(Open::Read { fh, .. }) = self.open.take() {
            let tree = self.tree.clone();
            // A release commits nothing for a reader; off the async thread.
            std::thread::spawn(move || {
                let _ = tree.release(fh);
            });
        }
    }
}

/// An unnamed file for a PUT's body (gone with its descriptor).
fn body_file() -> std::io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    let dir = std::env::temp_dir();
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: a NUL-terminated path; the descriptor returned is ours.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor, owned by the File from here.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

impl<T: Tree> TreeFile<T> {
    fn blocking<'a, R: Send + 'static>(
        &'a mut self,
        f: impl FnOnce(&Arc<T>, &mut Open) -> FsResult<R> + Send + 'static,
    ) -> FsFuture<'a, R> {
        let tree = self.tree.clone();
        Box::pin(async move {
            let mut open = self.open.take().ok_or(DavError::GeneralFailure)?;
            let (open, result) = tokio::task::spawn_blocking(move || {
                let r = f(&tree, &mut open);
                (open, r)
            })
            .await
            .map_err(|_| DavError::GeneralFailure)?;
            self.open = Some(open);
            result
        })
    }
}

/// Writes a complete PUT body through the tree: create (or open and
/// truncate) the name, write, flush (the commit), release.
fn commit_put<T: Tree>(tree: &Arc<T>, parent: u64, name: &[u8], body: &mut std::fs::File) -> Result<Attr, FsError> {
    let name = OsStr::from_bytes(name);
    // The lookup (or create) is held until the end: the inode lives while
    // looked up or open.
    let (ino, fh) = match tree.lookup(parent, name) {
        Ok(attr) => match tree.open(attr.ino, true, true, false) {
            Ok((fh, _)) => (attr.ino, fh),
            Err(e) => {
                tree.forget(attr.ino, 1);
                return Err(e);
            }
        },
        Err(FsError::NotFound(_)) => {
            let (attr, fh, _) = tree.create(parent, name, false, true, false)?;
            (attr.ino, fh)
        }
        Err(e) => return Err(e),
    };
    let written = (|| {
        body.seek(SeekFrom::Start(0)).map_err(|e| FsError::io("a PUT body", e))?;
        let mut buf = vec![0; 1 << 20];
        let mut offset = 0;
        loop {
            let n = body.read(&mut buf).map_err(|e| FsError::io("a PUT body", e))?;
            if n == 0 {
                break;
            }
            let mut done = 0;
            while done < n {
                done += tree.write(ino, fh, offset + done as u64, &buf[done..n])?;
            }
            offset += n as u64;
        }
        tree.flush(fh)
    })();
    let released = tree.release(fh);
    let attr = written.and(released).and_then(|()| tree.getattr(ino));
    tree.forget(ino, 1);
    attr
}

impl<T: Tree> DavFile for TreeFile<T> {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let attr = match &self.open {
            Some(Open::Read { attr, .. }) => *attr,
            Some(Open::Put { attr, len, .. }) => Attr { size: *len, ..*attr },
            None => return Box::pin(std::future::ready(Err(DavError::GeneralFailure))),
        };
        let meta: Box<dyn DavMetaData> = Box::new(Meta(attr));
        Box::pin(std::future::ready(Ok(meta)))
    }

    fn write_buf(&mut self, mut buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        self.write_bytes(bytes)
    }

    fn write_bytes(&mut self, data: Bytes) -> FsFuture<'_, ()> {
        self.blocking(move |_, open| match open {
            Open::Put { body, len, max, .. } => {
                if *len + data.len() as u64 > *max {
                    return Err(DavError::TooLarge);
                }
                body.write_all(&data).map_err(|e| dav_error(FsError::io("a PUT body", e)))?;
                *len += data.len() as u64;
                Ok(())
            }
            Open::Read { .. } => Err(DavError::Forbidden),
        })
    }

    fn read_bytes(&mut self, count: usize) -> FsFuture<'_, Bytes> {
        self.blocking(move |tree, open| match open {
            Open::Read { ino, fh, pos, .. } => {
                let data = tree.read(*ino, *fh, *pos, count.min(1 << 20) as u32).map_err(dav_error)?;
                *pos += data.len() as u64;
                Ok(Bytes::from(data))
            }
            Open::Put { .. } => Err(DavError::Forbidden),
        })
    }

    fn seek(&mut self, to: SeekFrom) -> FsFuture<'_, u64> {
        self.blocking(move |_, open| match open {
            Open::Read { pos, attr, .. } => {
                let new = match to {
                    SeekFrom::Start(p) => Some(p),
                    SeekFrom::Current(d) => pos.checked_add_signed(d),
                    SeekFrom::End(d) => attr.size.checked_add_signed(d),
                };
                *pos = new.ok_or(DavError::GeneralFailure)?;
                Ok(*pos)
            }
            Open::Put { body, .. } => body.seek(to).map_err(|e| dav_error(FsError::io("a PUT body", e))),
        })
    }

    fn flush(&mut self) -> FsFuture<'_, ()> {
        self.blocking(move |tree, open| match open {
            // The body is complete: now it becomes the value.
            Open::Put { parent, name, body, attr, len, expected, .. } => {
                if expected.is_some_and(|n| n != *len) {
                    // A body shorter or longer than its Content-Length: not
                    // the value the client meant.
                    return Err(DavError::GeneralFailure);
                }
                *attr = commit_put(tree, *parent, name, body).map_err(dav_error)?;
                Ok(())
            }
            Open::Read { .. } => Ok(()),
        })
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
                let (parent, name) = walk.parent_of(&path).map_err(dav_error)?;
                let name = name.ok_or(DavError::Forbidden)?.to_vec();
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

    fn read_dir<'a>(&'a self, path: &'a DavPath, _meta: ReadDirMeta) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        let path = path.clone();
        self.blocking(move |tree| {
            let mut walk = Walk::new(tree);
            let dir = walk.resolve(&path).map_err(dav_error)?;
            let mut entries: Vec<FsResult<Box<dyn DavDirEntry>>> = Vec::new();
            let mut offset = 0;
            loop {
                let mut listing = Listing { next: offset, ..Listing::default() };
                tree.readdir(dir.ino, offset, true, &mut listing).map_err(dav_error)?;
                let done = listing.next == offset;
                for (name, attr) in listing.entries {
                    // Each entry of READDIRPLUS counts as a lookup.
                    tree.forget(attr.ino, 1);
                    entries.push(Ok(Box::new(Entry { name, meta: Meta(attr) })));
                }
                if done {
                    break;
                }
                offset = listing.next;
            }
            let stream: FsStream<Box<dyn DavDirEntry>> = Box::pin(futures_util::stream::iter(entries));
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
        let path = path.clone();
        let writable = self.writable();
        let made = self.made.clone();
        self.blocking(move |tree| {
            writable?;
            let mut walk = Walk::new(tree);
            let (parent, name) = walk.parent_of(&path).map_err(dav_error)?;
            let name = name.ok_or(DavError::Exists)?;
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
        self.blocking(move |tree| {
            // The walk holds the lookups until the attributes are read.
            let mut walk = Walk::new(tree);
            let attr = walk.resolve(&path).map_err(dav_error)?;
            let mut props = Vec::new();
            for name in PROPS {
                if let Ok(value) = tree.getxattr(attr.ino, OsStr::new(&format!("user.diskcache.{name}"))) {
                    let mut prop = prop_with(name, &value);
                    if !do_content {
                        prop.xml = None;
                    }
                    props.push(prop);
                }
            }
            Ok(props)
        })
    }

    fn get_prop<'a>(&'a self, path: &'a DavPath, prop: DavProp) -> FsFuture<'a, Vec<u8>> {
        let path = path.clone();
        self.blocking(move |tree| {
            let xattr = xattr_of(&prop).ok_or(DavError::NotFound)?;
            let mut walk = Walk::new(tree);
            let attr = walk.resolve(&path).map_err(dav_error)?;
            let value = tree.getxattr(attr.ino, OsStr::new(&xattr)).map_err(|_| DavError::NotFound)?;
            prop_with(&prop.name, &value).xml.ok_or(DavError::NotFound)
        })
    }

    /// PROPPATCH: our properties set and removed as the attributes are
    /// (a malformed value is 409, as RFC 4918 has it for a value the server
    /// cannot take); other properties are not kept (403). Each is applied
    /// in turn, not as one transaction.
    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
    ) -> FsFuture<'a, Vec<(StatusCode, DavProp)>> {
        let path = path.clone();
        let writable = self.writable();
        self.blocking(move |tree| {
            writable?;
            let mut walk = Walk::new(tree);
            let attr = walk.resolve(&path).map_err(dav_error)?;
            let mut out = Vec::new();
            for (set, prop) in patch {
                let status = match xattr_of(&prop) {
                    None => StatusCode::FORBIDDEN,
                    Some(xattr) => {
                        let name = OsStr::new(&xattr);
                        let done = if set {
                            match prop.xml.as_deref().and_then(prop_text) {
                                Some(value) => tree.setxattr(attr.ino, name, value.as_bytes(), false, false),
                                None => Err(FsError::InvalidValue { what: xattr.clone(), reason: "not text".into() }),
                            }
                        } else {
                            match tree.removexattr(attr.ino, name) {
                                Err(FsError::NoAttribute(_)) => Ok(()),
                                other => other,
                            }
                        };
                        match done {
                            Ok(()) => StatusCode::OK,
                            Err(e) if e.errno() == libc::EINVAL || e.errno() == libc::ERANGE => StatusCode::CONFLICT,
                            Err(e) => match dav_error(e) {
                                DavError::NotFound => StatusCode::NOT_FOUND,
                                DavError::Forbidden => StatusCode::FORBIDDEN,
                                _ => StatusCode::INTERNAL_SERVER_ERROR,
                            },
                        }
                    }
                };
                out.push((status, DavProp { xml: None, ..prop }));
            }
            Ok(out)
        })
    }

    fn rename<'a>(&'a self, from: &'a DavPath, to: &'a DavPath) -> FsFuture<'a, ()> {
        let (from, to) = (from.clone(), to.clone());
        let writable = self.writable();
        self.blocking(move |tree| {
            writable?;
            let mut walk = Walk::new(tree);
            let (parent, name) = walk.parent_of(&from).map_err(dav_error)?;
            let (new_parent, new_name) = walk.parent_of(&to).map_err(dav_error)?;
            let (name, new_name) = (name.ok_or(DavError::Forbidden)?, new_name.ok_or(DavError::Forbidden)?);
            tree.rename(parent, OsStr::from_bytes(name), new_parent, OsStr::from_bytes(new_name), false)
                .map_err(dav_error)
        })
    }
}

impl<T: Tree> DavTree<T> {
    fn remove<'a>(&'a self, path: &'a DavPath, dir: bool) -> FsFuture<'a, ()> {
        let path = path.clone();
        let writable = self.writable();
        self.blocking(move |tree| {
            writable?;
            let mut walk = Walk::new(tree);
            let (parent, name) = walk.parent_of(&path).map_err(dav_error)?;
            let name = OsStr::from_bytes(name.ok_or(DavError::Forbidden)?);
            if dir { tree.rmdir(parent, name) } else { tree.unlink(parent, name) }.map_err(dav_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_desktop_junk;

    #[test]
    fn property_text() {
        use super::prop_text;
        assert_eq!(prop_text(br#"<dc:tag xmlns:dc="urn:diskcachefs:">a &amp; b</dc:tag>"#).as_deref(), Some("a & b"));
        assert_eq!(prop_text(br#"<dc:tag xmlns:dc="urn:diskcachefs:"/>"#).as_deref(), Some(""));
        let doc = br#"<?xml version="1.0" encoding="utf-8"?><dc:tag xmlns:dc="urn:diskcachefs:">grp</dc:tag>"#;
        assert_eq!(prop_text(doc).as_deref(), Some("grp"));
        assert_eq!(prop_text(br#"<dc:tag xmlns:dc="urn:diskcachefs:"><x/></dc:tag>"#), None);
    }

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
