//! Who may store pickles through the mount (docs/SEMANTICS.md, "No new
//! pickles from other users").
//!
//! A pickle runs code in every Python process that reads it
//! (CVE-2025-69872), so storing one is handing code to the cache's users.
//! On a mount shared with `--allow-other`, the kernel's mode checks stop
//! most other users; this stops the rest (root on a user's mount, a
//! process with `CAP_DAC_OVERRIDE`): only the user who mounted and the
//! owner the files show may make a row a pickle. The fuser adapter, which
//! knows each request's uid, asks before the tree acts.

use std::ffi::OsStr;

use crate::fs::error::FsError;
use crate::fs::tree::Tree;
use crate::fs::xattr::TYPE;

#[derive(Clone, Copy, Debug)]
pub struct PickleWriters {
    /// `None`: everyone who can reach the mount (only its user, without
    /// `--allow-other`).
    allowed: Option<[u32; 2]>,
}

impl PickleWriters {
    /// `mounter`: the daemon's uid; `owner`: the uid the files show.
    pub fn new(allow_other: bool, mounter: u32, owner: u32) -> PickleWriters {
        PickleWriters { allowed: allow_other.then_some([mounter, owner]) }
    }

    fn may(&self, uid: u32) -> bool {
        self.allowed.is_none_or(|a| a.contains(&uid))
    }

    fn refused(uid: u32, what: &str) -> FsError {
        FsError::NotPermitted(format!("{what}: only the mount's user may store pickles (uid {uid} is not)"))
    }

    /// `setxattr user.diskcache.type pickle`.
    pub fn check_setxattr(&self, uid: u32, name: &OsStr, value: &[u8]) -> Result<(), FsError> {
        if !self.may(uid) && name == TYPE && value.trim_ascii() == b"pickle" {
            return Err(Self::refused(uid, "setxattr user.diskcache.type pickle"));
        }
        Ok(())
    }

    /// Writing (or truncating) `ino`, whose commit would keep its pickle
    /// type (docs/SEMANTICS.md, "Edits keep the entry's type").
    pub fn check_write<T: Tree + ?Sized>(&self, uid: u32, tree: &T, ino: u64) -> Result<(), FsError> {
        if self.may(uid) || !Self::is_pickle(tree, ino) {
            return Ok(());
        }
        Err(Self::refused(uid, "writing a pickled value"))
    }

    /// A rename onto `new_name`, which makes the renamed file a rewrite of
    /// the entry there (keeping a pickle type).
    pub fn check_rename<T: Tree + ?Sized>(
        &self,
        uid: u32,
        tree: &T,
        new_parent: u64,
        new_name: &OsStr,
    ) -> Result<(), FsError> {
        if self.may(uid) {
            return Ok(());
        }
        let Ok(attr) = tree.lookup(new_parent, new_name) else { return Ok(()) };
        let pickle = Self::is_pickle(tree, attr.ino);
        tree.forget(attr.ino, 1);
        if pickle {
            return Err(Self::refused(uid, "renaming onto a pickled value"));
        }
        Ok(())
    }

    fn is_pickle<T: Tree + ?Sized>(tree: &T, ino: u64) -> bool {
        tree.getxattr(ino, OsStr::new(TYPE)).is_ok_and(|t| t == b"pickle")
    }
}
