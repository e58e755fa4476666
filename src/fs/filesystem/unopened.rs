//! Reads without OPEN (docs/SEMANTICS.md, "Read-only mounts"). A
//! read-only mount answers the first OPEN and FLUSH with ENOSYS, after
//! which the kernel opens and closes files by itself: no OPEN, FLUSH or
//! RELEASE ever reaches the daemon, and READ comes with file handle 0.
//!
//! The daemon then never learns when a file is opened or closed, so the
//! snapshot a reader must keep is held by the inode: the first READ of an
//! inode opens a read handle for it (its *pin*), and every later READ of
//! that inode is served from the pin until the kernel forgets the inode.
//! An inode is one version of a value: when a peer stores a new one, the
//! pinned inode is superseded (`note_version`, the change watcher), keeps
//! serving the old bytes to whoever holds it open, and the name leads to a
//! new inode. An inode read for the first time after its value changed
//! (the kernel has the old size, the old bytes are gone) answers EIO and
//! has its attributes dropped, so the next open gets the new version
//! whole: a reader never sees a mix of two versions.
//!
//! Files whose content is made by the daemon (`stats`, `settings/NAME`,
//! renderings in `task/`, `ops/incr/`, `flyte2/`) are pinned when the
//! kernel gets their attributes, so the size it has is the content's; the
//! change watcher drops those pins (and the kernel's attributes and pages)
//! after every change to the cache.

use super::{DiskCacheFs, FsError};
use crate::fs::handle::Handle;
use crate::fs::inode::{Node, OPS_CHECK, OPS_CLEAR, OPS_CULL, OPS_EXPIRE, classify};

impl DiskCacheFs {
    /// Whether READ comes without OPEN on this mount (see the module doc).
    pub fn reads_unopened(&self) -> bool {
        self.config.reads_unopened
    }

    /// How long the kernel may keep `ino`'s name and attributes: long in
    /// `keys/` when the change watcher tells it of changes (watch.rs).
    pub fn ttl_for(&self, ino: u64) -> std::time::Duration {
        let watched = self.reads_unopened()
            && (ino == crate::fs::inode::KEYS_DIR || matches!(classify(ino), Node::Key | Node::KeyDir));
        if watched { self.config.watched_ttl } else { self.config.ttl }
    }

    /// READ with file handle 0: from the inode's pin, made at the first.
    pub(super) fn read_unopened(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        let fh = self.pin(ino)?;
        self.read(ino, fh, offset, size)
    }

    /// The inode's pinned read handle, opened if it has none.
    fn pin(&self, ino: u64) -> Result<u64, FsError> {
        if let Some(&fh) = self.tables().pins.get(&ino) {
            return Ok(fh);
        }
        let (fh, _) = self.open(ino, false, false, false)?;
        let mut st = self.tables();
        if let Some(&theirs) = st.pins.get(&ino) {
            // Another thread pinned it meanwhile: one pin per inode.
            drop(st);
            let _ = self.release(fh);
            return Ok(theirs);
        }
        if classify(ino) == Node::Key {
            let opened = match st.handles.get(&fh) {
                Some(Handle::Read { view: Some(view), .. }) => Some(view.version),
                _ => None,
            };
            let held = st.inodes.get(ino).and_then(|i| i.kernel_version);
            if let (Some(opened), Some(held)) = (opened, held)
                && opened != held
            {
                // The kernel has another version's size and the bytes of
                // that version are gone: refuse rather than mix, and have
                // the kernel ask for the attributes again.
                let name = st.inodes.get(ino).map(|i| i.name.clone()).unwrap_or_default();
                drop(st);
                let _ = self.release(fh);
                self.request_invalidation(ino);
                return Err(FsError::Changed(format!("keys/{name}")));
            }
            if let Some(inode) = st.inodes.get_mut(ino) {
                inode.pinned = true;
            }
        }
        st.pins.insert(ino, fh);
        Ok(fh)
    }

    /// Drops the inode's pin (the kernel forgot the inode, or the content
    /// it pins is made anew).
    pub(super) fn unpin(&self, ino: u64) {
        let fh = {
            let mut st = self.tables();
            if let Some(inode) = st.inodes.get_mut(ino) {
                inode.pinned = false;
            }
            st.pins.remove(&ino)
        };
        if let Some(fh) = fh
            && let Err(e) = self.release(fh)
        {
            log::warn!("inode {ino}: dropping its snapshot: {e}");
        }
    }

    /// The attributes the kernel gets for a file the daemon makes the
    /// content of: pinned now, with the pin's size (see the module doc).
    /// Keys' files and ops/ files (reading `ops/check` runs a check) are
    /// left as they are.
    pub(super) fn made_content_attr(&self, mut attr: super::Attr) -> super::Attr {
        if !self.reads_unopened() || attr.kind != super::Kind::File {
            return attr;
        }
        let made = matches!(classify(attr.ino), Node::Stats | Node::Setting | Node::View | Node::Flyte2);
        let ops = matches!(attr.ino, OPS_EXPIRE | OPS_CULL | OPS_CLEAR | OPS_CHECK);
        if !made || ops {
            return attr;
        }
        let fh = match self.pin(attr.ino) {
            Ok(fh) => fh,
            Err(super::FsError::ReadOnly(what)) => {
                // `.pull` on a read-only mount: with size 0 the kernel would
                // answer a read with end of file, never asking (a `while
                // item=$(cat .pull)` loop would spin). A size makes the read
                // reach the daemon, which answers EROFS.
                log::debug!("{what}: read-only; its reads are refused");
                attr.size = 1;
                return attr;
            }
            Err(e) => {
                log::debug!("inode {}: not pinned: {e}", attr.ino);
                return attr;
            }
        };
        if let Some(len) = self.tables().handles.get(&fh).and_then(Handle::content_len) {
            attr.size = len;
        }
        attr
    }

    /// Drops the pins of made content, returning their inodes (whose
    /// attributes and pages the kernel must drop too).
    pub(super) fn unpin_made_content(&self) -> Vec<u64> {
        let inos: Vec<u64> = self.tables().pins.keys().copied().filter(|&i| classify(i) != Node::Key).collect();
        for &ino in &inos {
            self.unpin(ino);
        }
        inos
    }
}
