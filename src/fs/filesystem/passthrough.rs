//! Reads through passthrough on a read-write mount (docs/SEMANTICS.md,
//! "Passthrough"). A reader of a value kept in a value file gets that
//! file as its open's backing file: the kernel then reads it (and maps
//! it) itself, at native speed, and no READ reaches the daemon. The
//! reader's snapshot is the open value file, as before.
//!
//! The kernel's rules (fs/fuse/iomode.c, passthrough.c, 6.18): every open
//! of an inode that has a backing file must be a passthrough open of that
//! same backing file, and an inode with cached opens cannot take one. So:
//! - an inode gets a backing file only when nothing else has it open, and
//!   keeps it until its last passthrough open is released;
//! - a later reader of the same version shares it; a reader of another
//!   version, or a writer, makes the inode superseded (it keeps its
//!   readers and their version, `supersede`) and is answered ESTALE, which
//!   makes the kernel look the name up again and open a new inode;
//! - where the kernel or the caller cannot do passthrough (kernel before
//!   6.9, not root), reads go through the daemon as before.
//!
//! The fuser side (registering backing files, one per inode, and their
//! release) is the adapter's (`fuse.rs`); here are the decisions, made
//! under the tables lock with the versions they depend on.

use std::sync::atomic::Ordering;

use super::{DiskCacheFs, FsError, Tables};
use crate::fs::handle::{Handle, Snapshot};
pub use crate::fs::version::Backing;
use crate::fs::version::{ContentVersion, ReadView};

/// What `open` does for a reader, given the inode's backing file.
pub(super) enum ReaderPath {
    /// A passthrough open (a new backing file, or the inode's).
    Passthrough,
    /// Through the daemon, as without passthrough.
    Daemon,
}

impl DiskCacheFs {
    /// Turns passthrough on once the kernel accepted it (at INIT), or off
    /// when the kernel refuses backing files (not root).
    pub fn set_passthrough(&self, on: bool) {
        self.passthrough.store(on && self.config.passthrough, Ordering::Relaxed);
    }

    pub fn passthrough_enabled(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }

    /// Whether a reader of `version` (in a value file) opens `ino` through
    /// passthrough; `Err(Stale)` when the inode holds another version's
    /// backing file (see the module doc).
    pub(super) fn reader_path(
        &self,
        st: &mut Tables,
        ino: u64,
        version: ContentVersion,
        in_file: bool,
    ) -> Result<ReaderPath, FsError> {
        let Some(inode) = st.inodes.get(ino) else { return Ok(ReaderPath::Daemon) };
        match inode.backing {
            Some(b) if b.version == version => Ok(ReaderPath::Passthrough),
            Some(_) => {
                let name = inode.name.clone();
                Self::supersede_backed(st, ino);
                Err(FsError::Stale(format!("keys/{name}")))
            }
            None if in_file && self.passthrough_enabled() && inode.open_handles == 0 => Ok(ReaderPath::Passthrough),
            None => Ok(ReaderPath::Daemon),
        }
    }

    /// Before a writer opens `ino`: an inode with a backing file cannot
    /// take a writer's open, so it is superseded and the writer is
    /// answered ESTALE (it opens a new inode).
    pub(super) fn make_way_for_writer(st: &mut Tables, ino: u64) -> Result<(), FsError> {
        let Some(inode) = st.inodes.get(ino) else { return Ok(()) };
        if inode.backing.is_none() {
            return Ok(());
        }
        let name = inode.name.clone();
        Self::supersede_backed(st, ino);
        Err(FsError::Stale(format!("keys/{name}")))
    }

    /// Takes the name from an inode with a backing file; its readers keep
    /// it, with their version.
    pub(super) fn supersede_backed(st: &mut Tables, ino: u64) {
        let view = Self::readers_views(st, ino).next();
        if let Some(view) = view {
            st.inodes.supersede(ino, view);
        }
    }

    /// Records a passthrough open `fh` of `ino` at `view`'s version.
    pub(super) fn note_passthrough_open(st: &mut Tables, ino: u64, fh: u64, view: &ReadView) {
        if let Some(inode) = st.inodes.get_mut(ino) {
            let opens = inode.backing.map_or(0, |b| b.opens);
            inode.backing = Some(Backing { version: view.version, opens: opens + 1 });
        }
        st.passthrough_fhs.insert(fh);
    }

    /// The end of a passthrough open (released, or refused by the kernel).
    pub(super) fn note_passthrough_closed(st: &mut Tables, ino: u64, fh: u64) {
        if !st.passthrough_fhs.remove(&fh) {
            return;
        }
        if let Some(inode) = st.inodes.get_mut(ino)
            && let Some(b) = &mut inode.backing
        {
            b.opens -= 1;
            if b.opens == 0 {
                inode.backing = None;
            }
        }
    }

    /// A copy of the descriptor of the value file a passthrough open reads
    /// (the adapter registers it as the backing file).
    pub fn backing_file(&self, fh: u64) -> Option<std::fs::File> {
        match self.tables().handles.get(&fh) {
            Some(Handle::Read { snapshot, .. }) => match &**snapshot {
                Snapshot::File(f) => f.try_clone().ok(),
                Snapshot::Inline(_) => None,
            },
            _ => None,
        }
    }

    /// The length a reader of `fh` reads, where fixed (tree.rs).
    pub fn content_len(&self, fh: u64) -> Option<u64> {
        self.tables().handles.get(&fh).and_then(|h| h.content_len())
    }

    /// The kernel could not take `fh` as a passthrough open (the adapter
    /// answered it as a plain one instead).
    pub fn passthrough_refused(&self, fh: u64) {
        let mut st = self.tables();
        let Some(ino) = st.handles.get(&fh).map(Handle::ino) else { return };
        Self::note_passthrough_closed(&mut st, ino, fh);
    }
}
