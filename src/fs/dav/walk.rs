//! A request's walk from the root to a path: each name looked up through
//! the tree, and every lookup forgotten when the request is done.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use dav_server::davpath::DavPath;

use crate::fs::error::FsError;
use crate::fs::filesystem::{Attr, Kind};
use crate::fs::inode::ROOT;
use crate::fs::tree::Tree;

/// The inodes a request looked up, forgotten when it is done (the tree
/// counts lookups as the kernel's). Keep the walk alive while its inodes
/// are used: once it is dropped, an inode of `keys/` may be gone.
pub(super) struct Walk<T: Tree> {
    tree: Arc<T>,
    looked_up: Vec<u64>,
}

impl<T: Tree> Walk<T> {
    pub(super) fn new(tree: &Arc<T>) -> Walk<T> {
        Walk { tree: tree.clone(), looked_up: Vec::new() }
    }

    pub(super) fn tree(&self) -> &Arc<T> {
        &self.tree
    }

    /// Holds (and forgets at the end) a lookup the tree counted elsewhere,
    /// as READDIRPLUS counts its entries.
    pub(super) fn hold(&mut self, ino: u64) {
        self.looked_up.push(ino);
    }

    pub(super) fn lookup(&mut self, parent: u64, name: &[u8]) -> Result<Attr, FsError> {
        let attr = self.tree.lookup(parent, OsStr::from_bytes(name))?;
        self.looked_up.push(attr.ino);
        Ok(attr)
    }

    /// The inode of `path`'s directory and `path`'s last name (`None` for
    /// the root).
    pub(super) fn parent_of<'p>(&mut self, path: &'p DavPath) -> Result<(u64, Option<&'p [u8]>), FsError> {
        let parts: Vec<&[u8]> = path.as_bytes().split(|b| *b == b'/').filter(|p| !p.is_empty()).collect();
        let Some((last, dirs)) = parts.split_last() else { return Ok((ROOT, None)) };
        Ok((self.dir(dirs)?, Some(last)))
    }

    /// The inode of the directory `dirs` names from the root.
    pub(super) fn dir(&mut self, dirs: &[impl AsRef<[u8]>]) -> Result<u64, FsError> {
        let mut ino = ROOT;
        for dir in dirs {
            ino = self.lookup(ino, dir.as_ref())?.ino;
        }
        Ok(ino)
    }

    fn at(&mut self, parts: &[Vec<u8>]) -> Result<Attr, FsError> {
        match parts.split_last() {
            Some((name, dirs)) => {
                let parent = self.dir(dirs)?;
                self.lookup(parent, name)
            }
            None => self.tree.getattr(ROOT),
        }
    }

    /// What `path` names, a link followed to what it points to.
    pub(super) fn resolve(&mut self, path: &DavPath) -> Result<Attr, FsError> {
        Ok(self.follow(components(path.as_bytes()))?.1)
    }

    /// The entry `parts` names and its path, a symbolic link replaced by
    /// its target (WebDAV has no links; `tags/` and `task/` are made of
    /// them, each relative and within the tree). At most [`MAX_LINKS`]
    /// links are followed; one pointing out of the tree is not found.
    pub(super) fn follow(&mut self, mut parts: Vec<Vec<u8>>) -> Result<(Vec<Vec<u8>>, Attr), FsError> {
        for _ in 0..=MAX_LINKS {
            let attr = self.at(&parts)?;
            if attr.kind != Kind::Symlink {
                return Ok((parts, attr));
            }
            let target = self.tree.readlink(attr.ino)?;
            let outside = || FsError::NotFound(String::from_utf8_lossy(&target).into_owned());
            if target.starts_with(b"/") {
                return Err(outside());
            }
            parts.pop();
            for part in target.split(|b| *b == b'/') {
                match part {
                    b"" | b"." => {}
                    b".." => {
                        parts.pop().ok_or_else(outside)?;
                    }
                    name => parts.push(name.to_vec()),
                }
            }
        }
        Err(FsError::InvalidName {
            name: String::from_utf8_lossy(&parts.join(&b'/')).into_owned(),
            reason: "too many links".into(),
        })
    }
}

/// Most links followed for one path (the tree's are one deep).
const MAX_LINKS: usize = 8;

/// A path's names.
pub(super) fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|b| *b == b'/').filter(|p| !p.is_empty()).map(<[u8]>::to_vec).collect()
}

impl<T: Tree> Drop for Walk<T> {
    fn drop(&mut self) {
        for ino in self.looked_up.drain(..) {
            self.tree.forget(ino, 1);
        }
    }
}
