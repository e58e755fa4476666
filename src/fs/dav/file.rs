//! An open value over WebDAV: a GET reading through the tree's handle,
//! or a PUT whose body waits in an unnamed file until it is complete and
//! is then written through the tree and committed (never half a value);
//! and COPY, which is a read and such a commit.

use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use dav_server::davpath::DavPath;
use dav_server::fs::{DavFile, DavMetaData, FsError as DavError, FsFuture, FsResult};

use super::walk::Walk;
use super::{Meta, dav_error, is_desktop_junk};
use crate::fs::error::FsError;
use crate::fs::filesystem::{Attr, Kind};
use crate::fs::tree::Tree;

/// An open value: reads through the tree's handle, or a PUT's body kept
/// aside until it is complete.
#[derive(Debug)]
pub(super) enum Open {
    Read { ino: u64, fh: u64, pos: u64, attr: Attr },
    Put { parent: u64, name: Vec<u8>, body: std::fs::File, len: u64, attr: Attr, expected: Option<u64>, max: u64 },
}

pub(super) struct TreeFile<T: Tree> {
    pub(super) tree: Arc<T>,
    pub(super) open: Option<Open>,
    /// A PUT's directories, looked up until it is done: a directory of
    /// `keys/` keeps its inode only while held.
    pub(super) _held: Option<Walk<T>>,
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
            // A release commits nothing for a reader; off the async thread
            // (on the blocking pool, or a thread when there is no runtime).
            let release = move || {
                let _ = tree.release(fh);
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(release)),
                Err(_) => drop(std::thread::spawn(release)),
            }
        }
    }
}

/// An unnamed file for a PUT's body (gone with its descriptor).
pub(super) fn body_file() -> std::io::Result<std::fs::File> {
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
/// truncate) the name, write, flush (the commit), release. `attrs`
/// (`user.diskcache.*` names and values) are set on the open file first,
/// so the commit carries them: a COPY's type, tag and expiry arrive with
/// its value, never after it.
fn commit_put<T: Tree>(
    tree: &Arc<T>,
    parent: u64,
    name: &[u8],
    body: &mut std::fs::File,
    attrs: &[(String, Vec<u8>)],
) -> Result<Attr, FsError> {
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
        for (xattr, value) in attrs {
            tree.setxattr(ino, OsStr::new(xattr), value, false, false)?;
        }
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
                *attr = commit_put(tree, *parent, name, body, &[]).map_err(dav_error)?;
                Ok(())
            }
            Open::Read { .. } => Ok(()),
        })
    }
}

/// The attributes a COPY carries with a value (the type first: a tag or
/// expiry set on a converted value stays).
const COPIED: [&str; 3] = ["user.diskcache.type", "user.diskcache.tag", "user.diskcache.expire_time"];

/// COPY of one value: its content read through an open handle into an
/// unnamed file, then committed at `to` as a PUT is, with the source's
/// type, tag and expiry (dav-server makes a collection's directories and
/// copies its files one by one, as RFC 4918 allows: a collection's COPY
/// is not one transaction, a MOVE is).
pub(super) fn copy_value<T: Tree>(
    tree: &Arc<T>,
    walk: &mut Walk<T>,
    from: &DavPath,
    to: &DavPath,
) -> Result<(), FsError> {
    let source = walk.resolve(from)?;
    if source.kind != Kind::File {
        return Err(FsError::IsDirectory(String::from_utf8_lossy(from.as_bytes()).into_owned()));
    }
    let (parent, name) = walk.parent_of(to)?;
    let name = name.ok_or_else(|| FsError::Exists("/".into()))?.to_vec();
    if is_desktop_junk(&name) {
        return Err(FsError::NotPermitted(String::from_utf8_lossy(&name).into_owned()));
    }
    let mut attrs = Vec::new();
    for xattr in COPIED {
        match tree.getxattr(source.ino, OsStr::new(xattr)) {
            // A new value is bytes already.
            Ok(value) if !(xattr.ends_with(".type") && value == b"bytes") => attrs.push((xattr.to_string(), value)),
            Ok(_) | Err(FsError::NoAttribute(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let mut body = body_file().map_err(|e| FsError::io("a COPY's value", e))?;
    let (fh, _) = tree.open(source.ino, false, false, false)?;
    let copied = (|| {
        let mut offset = 0;
        loop {
            let data = tree.read(source.ino, fh, offset, 1 << 20)?;
            if data.is_empty() {
                return Ok(());
            }
            body.write_all(&data).map_err(|e| FsError::io("a COPY's value", e))?;
            offset += data.len() as u64;
        }
    })();
    let released = tree.release(fh);
    copied.and(released)?;
    commit_put(tree, parent, &name, &mut body, &attrs).map(|_| ())
}
