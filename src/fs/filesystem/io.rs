//! Open files (docs/SEMANTICS.md, "Reading", "Writing"): opening, reading,
//! writing, and committing a writer's copy as the entry's new value.
//!
//! A reader's snapshot is shared (`Arc`), so a read copies it out of the
//! tables and reads without their lock. A writer's staging copy has a lock
//! of its own ([`WriterSlot::io`]): writes and commits hold it, never the
//! tables, while they move bytes or wait for SQLite's write lock.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::passthrough::ReaderPath;
use super::{Attr, DiskCacheFs, FsError, OpenFlags, State, Tables};
use crate::cache::{Attr as Keep, Key, NewValue, RawContent, ValueType};
use crate::fs::content::{content_len, convert, inline_bytes};
use crate::fs::handle::{Handle, ReadView, Snapshot, Staging, WriteHandle, WriterSlot};
use crate::fs::inode::{Node, ROOT, SETTINGS_DIR, STATS, classify, is_view_ino};
use crate::fs::names::{ParsedName, key_to_name, name_to_key};
use crate::fs::store::StoreConn;
use crate::fs::version::ContentVersion;

mod commit;

/// What a read or write of an open file works on, taken out of the tables.
enum Target {
    Snapshot(Arc<Snapshot>),
    Writer(Arc<Mutex<WriteHandle>>),
    Setting,
    View,
}

/// The type a commit stores its copy as.
#[derive(Clone, Copy)]
enum Chosen {
    /// Set by the writer (or bytes, the default): content not valid for it
    /// is refused.
    Set(ValueType),
    /// Kept from the entry the copy rewrites: content not valid for it is
    /// stored as bytes.
    Kept(ValueType),
    /// The entry's own type, read once the write lock is held.
    OfEntry,
}

fn lock_writer(io: &Mutex<WriteHandle>) -> MutexGuard<'_, WriteHandle> {
    io.lock().unwrap_or_else(|e| e.into_inner())
}

impl DiskCacheFs {
    pub(super) fn snapshot(cache: &StoreConn, key: &Key, name: &str) -> Result<Snapshot, FsError> {
        match cache.open_raw(key).map_err(|e| FsError::cache(format!("keys/{name}"), e))? {
            Some((_, RawContent::File(f))) => Ok(Snapshot::File(f)),
            Some((_, RawContent::Inline(v))) => Ok(Snapshot::Inline(inline_bytes(&v))),
            Some((_, RawContent::Null)) => Ok(Snapshot::Inline(Vec::new())),
            None => Err(FsError::NotFound(format!("keys/{name}"))),
        }
    }

    /// Writers keep their copy in memory below this size (diskcache's
    /// `disk_min_file_size`, below which a bytes value is stored inline).
    fn spill_size(cache: &StoreConn) -> u64 {
        // python-diskcache's default (2**15) if no handle could be had: a
        // copy spilled early or late is still the same bytes.
        cache.min_file_size().unwrap_or(1 << 15).max(1) as u64
    }

    pub(super) fn new_handle(st: &mut Tables, handle: Handle) -> u64 {
        let fh = st.next_fh;
        st.next_fh += 1;
        let ino = handle.ino();
        if let Some(inode) = st.inodes.get_mut(ino) {
            inode.open_handles += 1;
        }
        st.handles.insert(fh, handle);
        fh
    }

    fn target(st: &Tables, fh: u64) -> Result<Target, FsError> {
        match st.handles.get(&fh) {
            Some(Handle::Read { snapshot, .. }) => Ok(Target::Snapshot(snapshot.clone())),
            Some(Handle::Write(slot)) => Ok(Target::Writer(slot.io.clone())),
            Some(Handle::Setting { .. }) => Ok(Target::Setting),
            Some(Handle::Push { .. } | Handle::Resolve(_) | Handle::Op { .. }) => Ok(Target::View),
            None => Err(FsError::BadHandle(fh)),
        }
    }

    /// Copies a writer's state into its slot in the tables.
    fn mirror(&self, fh: u64, w: &WriteHandle) {
        if let Some(Handle::Write(slot)) = self.tables().handles.get_mut(&fh) {
            slot.mirror(w);
        }
    }

    /// Opens a key's file. `write`: opened for writing; `truncate`: O_TRUNC;
    /// `append`: O_APPEND.
    pub fn open(&self, ino: u64, write: bool, truncate: bool, append: bool) -> Result<(u64, OpenFlags), FsError> {
        if is_view_ino(ino) {
            return self.view_open(ino, write);
        }
        if classify(ino) == Node::Flyte2 {
            return self.flyte2_open(ino, write);
        }
        if ino == ROOT || Self::is_key_dir(ino) || ino == SETTINGS_DIR {
            if write {
                return Err(FsError::IsDirectory(format!("inode {ino}")));
            }
            return Ok((0, OpenFlags::default()));
        }
        let c = self.reader()?;
        let mut st = self.state(&c);
        if matches!(classify(ino), Node::Stats | Node::Setting) {
            return self.open_control(&mut st, ino, write, truncate);
        }
        let inode = st.inodes.get(ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        if inode.superseded.is_some() {
            // A path through a dentry the kernel still caches: ESTALE makes
            // it look the name up again and open the current version.
            return Err(FsError::Stale(format!("keys/{}", inode.name)));
        }
        let (key, name, pending_create, kernel_version) =
            (inode.key.clone(), inode.name.clone(), inode.pending_create, inode.kernel_version);
        if !write {
            if pending_create {
                // Created through the mount, not committed yet: empty.
                let snapshot = Arc::new(Snapshot::Inline(Vec::new()));
                let fh = Self::new_handle(&mut st, Handle::Read { ino, snapshot, view: None });
                return Ok((fh, OpenFlags { direct_io: true, no_flush: true, ..OpenFlags::default() }));
            }
            // A read-only handle: the get's bookkeeping is noted, not done
            // here (it would wait for a peer's write lock).
            let opened = st.cache.open_raw(&key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?;
            self.store.note_get(st.cache, &key, opened.as_ref().map(|(meta, _)| meta.rowid));
            let (meta, content) = opened.ok_or_else(|| FsError::Stale(format!("keys/{name}")))?;
            let len = match &content {
                // The file's own length: the size column is not trusted.
                RawContent::File(f) => f.metadata().map_err(|e| FsError::io(format!("keys/{name}"), e))?.len(),
                _ => content_len(&meta),
            };
            let version = ContentVersion::of(&meta, len);
            let in_file = matches!(content, RawContent::File(_));
            let path = self.reader_path(&mut st, ino, version, in_file)?;
            let snapshot = Arc::new(match content {
                RawContent::File(f) => Snapshot::File(f),
                RawContent::Inline(v) => Snapshot::Inline(inline_bytes(&v)),
                RawContent::Null => Snapshot::Inline(Vec::new()),
            });
            // If the kernel's size for this file is of another version (a
            // peer changed it within the attribute timeout), bypass the page
            // cache for this open so the reader gets the whole new value.
            let current = kernel_version == Some(version);
            let view = ReadView { version, len, store_time: meta.store_time, access_time: meta.access_time };
            let fh = Self::new_handle(&mut st, Handle::Read { ino, snapshot, view: Some(view) });
            if let ReaderPath::Passthrough = path {
                Self::note_passthrough_open(&mut st, ino, fh, &view);
                return Ok((fh, OpenFlags { no_flush: true, passthrough: true, ..OpenFlags::default() }));
            }
            let flags = OpenFlags { keep_cache: current, direct_io: !current, no_flush: true, passthrough: false };
            return Ok((fh, flags));
        }
        self.check_writable(&format!("keys/{name}"))?;
        Self::make_way_for_writer(&mut st, ino)?;
        let shard = self.store.shard_of(&key);
        let mut handle = WriteHandle { ino, shard, append, base: None, staging: None, dirty: false };
        // The entry went away (a peer deleted it) while the kernel still
        // had the name: ESTALE makes it look the name up again, so
        // `open(O_CREAT)` creates the key anew and a plain open is ENOENT
        // (with O_TRUNC too: truncating is no reason to bring it back).
        let gone = |what: String| FsError::Stale(what);
        if truncate {
            if !pending_create
                && st.cache.entry_meta(&key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?.is_none()
            {
                return Err(gone(format!("keys/{name}")));
            }
            handle.staging = Some(Staging::Memory(Vec::new()));
            handle.dirty = true;
        } else if !pending_create {
            let base = match Self::snapshot(st.cache, &key, &name) {
                Err(FsError::NotFound(what)) => return Err(gone(what)),
                other => other?,
            };
            handle.base = Some(base);
        } else {
            handle.staging = Some(Staging::Memory(Vec::new()));
        }
        let fh = Self::new_handle(&mut st, Handle::Write(WriterSlot::new(handle)));
        Ok((fh, OpenFlags::default()))
    }

    /// `stats` or a setting's file. The content is made at open; its size
    /// may differ from the kernel's idea of it, so reads bypass the page
    /// cache.
    fn open_control(&self, st: &mut State, ino: u64, write: bool, truncate: bool) -> Result<(u64, OpenFlags), FsError> {
        let flags = OpenFlags { direct_io: true, ..OpenFlags::default() };
        if ino == STATS {
            if write {
                return Err(FsError::AccessDenied("stats".into()));
            }
            let snapshot = Arc::new(Snapshot::Inline(self.stats_bytes(st)?));
            return Ok((Self::new_handle(st, Handle::Read { ino, snapshot, view: None }), flags));
        }
        let name = Self::setting_name(st, ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        let current = Self::setting_bytes(st, &name)?.ok_or_else(|| FsError::NotFound(format!("settings/{name}")))?;
        if !write {
            let snapshot = Arc::new(Snapshot::Inline(current));
            return Ok((Self::new_handle(st, Handle::Read { ino, snapshot, view: None }), flags));
        }
        self.check_writable(&format!("settings/{name}"))?;
        let text = if truncate { Vec::new() } else { current };
        let handle = Handle::Setting { ino, name, text, dirty: truncate };
        Ok((Self::new_handle(st, handle), flags))
    }

    /// mknod of a regular file: a new empty entry (EEXIST if the key
    /// exists), committed at once, as create-then-close would.
    pub fn mknod_regular(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let (attr, fh, _) = self.create(parent, name, true, true, false)?;
        let committed = self.flush(fh);
        let released = self.release(fh);
        committed.and(released)?;
        let c = self.reader()?;
        let mut st = self.state(&c);
        self.key_attr(&mut st, attr.ino)
    }

    /// Creates a key's file (O_CREAT) and opens it for writing. The entry
    /// is committed on close (an empty value if nothing was written).
    pub fn create(
        &self,
        parent: u64,
        name: &OsStr,
        exclusive: bool,
        truncate: bool,
        append: bool,
    ) -> Result<(Attr, u64, OpenFlags), FsError> {
        if is_view_ino(parent) {
            // A CREATE's reply is a lookup the kernel will forget: counted
            // (lifetimes.rs), or a FORGET of the name's previous inode that
            // arrives after it (over io_uring, FORGET comes on /dev/fuse)
            // would drop the node the kernel now holds.
            let created = self.view_create(parent, name, exclusive)?;
            self.given(&created.0);
            return Ok(created);
        }
        if classify(parent) == Node::Flyte2 {
            return Err(FsError::NotPermitted(format!(
                "{}: flyte2/ holds what Flyte 2 stored; only rm changes it",
                super::name_str(name)
            )));
        }
        // A file created in tags/T/ is a key created with tag T.
        if crate::fs::inode::is_tag_ino(parent) {
            self.check_writable(&super::name_str(name))?;
            let c = self.reader()?;
            let mut st = self.state(&c);
            let tag = Self::tag_of_dir(&st, parent).ok_or_else(|| FsError::NotDirectory(format!("inode {parent}")))?;
            if matches!(name_to_key(name.as_bytes()), Ok(ParsedName::Hashed(_))) {
                return Err(FsError::InvalidName {
                    name: super::name_str(name),
                    reason: "a %sha256: name can only name an existing key".into(),
                });
            }
            let key = self.resolve_flat(&mut st, name)?;
            drop(st);
            return self.create_key(&key, Some(tag), exclusive, truncate, append);
        }
        if !Self::is_key_dir(parent) {
            if parent == ROOT || parent == SETTINGS_DIR || parent == crate::fs::inode::TAGS_DIR {
                self.check_writable(&super::name_str(name))?;
                return Err(FsError::NotPermitted(format!("{}: only keys/ holds new files", super::name_str(name))));
            }
            return Err(FsError::NotDirectory(format!("inode {parent}")));
        }
        self.check_writable(&format!("keys/{}", super::name_str(name)))?;
        // One set of handles and one lock for resolving the name and
        // creating the key.
        let c = self.reader()?;
        let mut st = self.state(&c);
        let key = self.new_key_for(&mut st, parent, name)?;
        let prefix = Self::key_dir_prefix(&st, parent)?;
        let no_own_dir =
            matches!(crate::fs::paths::parse_child(name.as_bytes(), &prefix), Ok(crate::fs::paths::ChildName::Part(_)));
        let created = self.create_key_in(&mut st, &key, None, (exclusive, truncate, append), no_own_dir)?;
        drop(st);
        // The kernel's entry for the name is the new file's now.
        self.negative_replaced(parent, name);
        Ok(created)
    }

    /// Creates (or opens, unless `exclusive`) the file of `key` for
    /// writing, with the tag `new_tag` to give it at commit.
    pub(super) fn create_key(
        &self,
        key: &Key,
        new_tag: Option<crate::cache::Scalar>,
        exclusive: bool,
        truncate: bool,
        append: bool,
    ) -> Result<(Attr, u64, OpenFlags), FsError> {
        let c = self.reader()?;
        let mut st = self.state(&c);
        self.create_key_in(&mut st, key, new_tag, (exclusive, truncate, append), false)
    }

    /// [`Self::create_key`] with the request's handles and tables the
    /// caller already has; `no_own_dir`: the caller resolved the name to
    /// a key, so no directory `key/` exists.
    fn create_key_in(
        &self,
        st: &mut State,
        key: &Key,
        new_tag: Option<crate::cache::Scalar>,
        (exclusive, truncate, append): (bool, bool, bool),
        no_own_dir: bool,
    ) -> Result<(Attr, u64, OpenFlags), FsError> {
        let key = key.clone();
        let name = key_to_name(&key);
        let meta = st.cache.entry_meta(&key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?;
        let exists = meta.is_some();
        if let Some(backed) =
            st.inodes.by_name(&name).filter(|&i| st.inodes.get(i).is_some_and(|i| i.backing.is_some()))
        {
            // Its readers read through passthrough: the writer gets an
            // inode of its own (passthrough.rs).
            Self::supersede_backed(st, backed);
        }
        let known = st.inodes.by_name(&name);
        let pending = known.and_then(|i| st.inodes.get(i)).is_some_and(|i| i.pending_create);
        if exclusive && (exists || pending) {
            return Err(FsError::Exists(format!("keys/{name}")));
        }
        let ino = st.inodes.ensure(&name, &key);
        st.inodes.looked_up(ino);
        if !exists {
            self.key_dir_changed_known(st, &key, no_own_dir);
        }
        let now = st.cache.now();
        if let Some(inode) = st.inodes.get_mut(ino) {
            if !exists {
                inode.pending_create = true;
                inode.unlinked = false;
                inode.created_at = Some(now);
                inode.made_here = true;
                inode.attrs_set = false;
                inode.inherited_type = None;
            }
            if let Some(tag) = &new_tag {
                inode.pending.tag = Some(Some(tag.clone()));
            }
        }
        let shard = self.store.shard_of(&key);
        let mut handle = WriteHandle { ino, shard, append, base: None, staging: None, dirty: false };
        if exists && !truncate {
            handle.base = Some(Self::snapshot(st.cache, &key, &name)?);
        } else {
            handle.staging = Some(Staging::Memory(Vec::new()));
            handle.dirty = true;
        }
        let fh = Self::new_handle(st, Handle::Write(WriterSlot::new(handle)));
        // The row as read above: nothing committed since, the tables held.
        let row = meta.map(|m| {
            let len = Self::entry_len(st.cache, &m);
            (m, len)
        });
        let attr = self.key_attr_with(st, ino, Some(row))?;
        Ok((attr, fh, OpenFlags::default()))
    }

    /// Copies a writer's base content into its staging copy (first change).
    fn materialize(&self, spill: u64, w: &mut WriteHandle) -> std::io::Result<()> {
        if w.staging.is_some() {
            return Ok(());
        }
        let disk = self.store.disk(w.shard);
        let mut staging = Staging::Memory(Vec::new());
        match w.base.take() {
            Some(Snapshot::Inline(data)) if !data.is_empty() => {
                staging.write_at(disk, 0, &data, spill)?;
            }
            Some(Snapshot::File(file)) => {
                // Stream the value file in, chunk by chunk.
                let mut offset = 0u64;
                let chunk = 1 << 20;
                loop {
                    let data = Snapshot::File(file.try_clone()?).read_at(offset, chunk)?;
                    if data.is_empty() {
                        break;
                    }
                    staging.write_at(disk, offset, &data, spill)?;
                    offset += data.len() as u64;
                }
            }
            Some(Snapshot::Inline(_)) | None => {}
        }
        w.staging = Some(staging);
        Ok(())
    }

    pub fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        if fh == 0 && self.reads_unopened() {
            return self.read_unopened(ino, offset, size);
        }
        let what = || format!("inode {ino}");
        let target = Self::target(&self.tables(), fh)?;
        match target {
            Target::View => self.view_read(fh, offset, size),
            Target::Snapshot(snapshot) => snapshot.read_at(offset, size as usize).map_err(|e| FsError::io(what(), e)),
            Target::Setting => match self.tables().handles.get(&fh) {
                Some(Handle::Setting { text, .. }) => {
                    let start = (offset as usize).min(text.len());
                    let end = start.saturating_add(size as usize).min(text.len());
                    Ok(text[start..end].to_vec())
                }
                _ => Err(FsError::BadHandle(fh)),
            },
            Target::Writer(io) => {
                let w = lock_writer(&io);
                match (&w.staging, &w.base) {
                    (Some(staging), _) => staging.read_at(offset, size as usize).map_err(|e| FsError::io(what(), e)),
                    (None, Some(base)) => base.read_at(offset, size as usize).map_err(|e| FsError::io(what(), e)),
                    (None, None) => Ok(Vec::new()),
                }
            }
        }
    }

    pub fn write(&self, ino: u64, fh: u64, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        let target = Self::target(&self.tables(), fh)?;
        match target {
            Target::View => self.view_write(fh, offset, data),
            Target::Setting => self.write_setting(fh, offset, data),
            Target::Snapshot(_) => Err(FsError::BadHandle(fh)),
            Target::Writer(io) => {
                let what = || format!("inode {ino}");
                let mut w = lock_writer(&io);
                // Only the spill size is read (a read-only handle serves);
                // the staging copy is in the shard's directory.
                let spill = Self::spill_size(&self.reader()?);
                self.materialize(spill, &mut w).map_err(|e| FsError::io(what(), e))?;
                let append = w.append;
                let disk = self.store.disk(w.shard);
                let staging = w.staging.as_mut().expect("materialized");
                let offset = if append { staging.len() } else { offset };
                staging.write_at(disk, offset, data, spill).map_err(|e| FsError::io(what(), e))?;
                w.dirty = true;
                self.mirror(fh, &w);
                Ok(data.len())
            }
        }
    }

    fn write_setting(&self, fh: u64, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        let c = self.reader()?;
        let mut st = self.state(&c);
        let Some(Handle::Setting { name, text, .. }) = st.handles.get(&fh) else {
            return Err(FsError::BadHandle(fh));
        };
        let end = offset as usize + data.len();
        if end > 4096 {
            return Err(FsError::InvalidValue { what: "a setting".into(), reason: "longer than 4 KiB".into() });
        }
        let mut new = text.clone();
        if new.len() < end {
            new.resize(end, b' ');
        }
        new[offset as usize..end].copy_from_slice(data);
        Self::check_setting_line(&st, &name.clone(), &new)?;
        if let Some(Handle::Setting { text, dirty, .. }) = st.handles.get_mut(&fh) {
            *text = new;
            *dirty = true;
        }
        Ok(data.len())
    }

    /// FLUSH (each close of a writer): commit if changed. A commit that
    /// fails (the write lock not had within the timeout: EBUSY) leaves the
    /// old value and drops this copy, so that nothing is stored later
    /// behind the back of a `close()` that reported the failure.
    pub fn flush(&self, fh: u64) -> Result<(), FsError> {
        self.commit_handle(fh, false)
    }

    /// fsync: commit if changed; on failure the copy stays, and the next
    /// fsync or close tries again.
    /// The bytes of a value kept in a file are flushed to the disk first
    /// (a value kept in the database is as durable as its commit, which
    /// SQLite's `synchronous` setting decides, as for python-diskcache).
    pub fn fsync(&self, fh: u64) -> Result<(), FsError> {
        let io = match self.tables().handles.get(&fh) {
            Some(Handle::Write(slot)) => Some(slot.io.clone()),
            _ => None,
        };
        if let Some(io) = io {
            let w = lock_writer(&io);
            if let Some(Staging::File { file, .. }) = &w.staging {
                file.sync_data().map_err(|e| FsError::io(format!("inode {}", w.ino), e))?;
            }
        }
        self.commit_handle(fh, true)
    }

    fn commit_handle(&self, fh: u64, keep_on_failure: bool) -> Result<(), FsError> {
        let setting = {
            let st = self.tables();
            match st.handles.get(&fh) {
                Some(Handle::Push { .. }) => None,
                Some(Handle::Setting { name, text, dirty: true, .. }) => Some((name.clone(), text.clone())),
                Some(Handle::Write(slot)) => {
                    let io = slot.io.clone();
                    drop(st);
                    return self.commit_open(fh, &io, keep_on_failure);
                }
                // Readers, resolvers and ops have nothing to flush.
                _ => return Ok(()),
            }
        };
        match setting {
            None => self.view_flush(fh, false),
            Some((name, text)) => {
                self.apply_setting(&name, &text)?;
                if let Some(Handle::Setting { dirty, .. }) = self.tables().handles.get_mut(&fh) {
                    *dirty = false;
                }
                Ok(())
            }
        }
    }

    /// Commits an open writer's copy if it changed.
    fn commit_open(&self, fh: u64, io: &Mutex<WriteHandle>, keep_on_failure: bool) -> Result<(), FsError> {
        let mut w = lock_writer(io);
        if !w.dirty {
            return Ok(());
        }
        let result = self.commit(&mut w, Some(fh));
        if result.is_err() && !keep_on_failure {
            w.dirty = false;
        }
        if !matches!(result, Ok(true)) {
            self.mirror(fh, &w);
        }
        result.map(drop)
    }

    pub fn release(&self, fh: u64) -> Result<(), FsError> {
        let handle = {
            let mut st = self.tables();
            match st.handles.get(&fh) {
                None => return Ok(()),
                // A view's handle stays in the tables while it finishes.
                Some(Handle::Push { .. } | Handle::Resolve(_) | Handle::Op { .. }) => None,
                Some(Handle::Read { ino, .. }) => {
                    // Nothing to finish: closed in this one lock.
                    let ino = *ino;
                    let handle = st.handles.remove(&fh);
                    Self::closed(&mut st, ino, fh);
                    // Its value file is closed with the tables unlocked.
                    drop(st);
                    drop(handle);
                    return Ok(());
                }
                Some(_) => st.handles.remove(&fh),
            }
        };
        let Some(handle) = handle else {
            let result = self.view_flush(fh, true);
            self.tables().handles.remove(&fh);
            return result;
        };
        let (ino, result) = match handle {
            Handle::Read { ino, .. } => (ino, Ok(())),
            // Handled by the views above.
            other @ (Handle::Push { .. } | Handle::Resolve(_) | Handle::Op { .. }) => (other.ino(), Ok(())),
            Handle::Setting { ino, name, text, dirty } => {
                (ino, if dirty { self.apply_setting(&name, &text) } else { Ok(()) })
            }
            Handle::Write(slot) => {
                let mut w = lock_writer(&slot.io);
                let result = if w.dirty { self.commit(&mut w, None).map(drop) } else { Ok(()) };
                if let Some(staging) = w.staging.take() {
                    staging.discard(self.store.disk(w.shard));
                }
                (slot.ino, result)
            }
        };
        Self::closed(&mut self.tables(), ino, fh);
        result
    }

    /// What closing handle `fh` of inode `ino` changes in the tables.
    fn closed(st: &mut Tables, ino: u64, fh: u64) {
        Self::note_passthrough_closed(st, ino, fh);
        if let Some(inode) = st.inodes.get_mut(ino) {
            inode.open_handles = inode.open_handles.saturating_sub(1);
            if inode.open_handles == 0 && inode.pending_create {
                // Closed without a successful commit: it never existed.
                inode.pending_create = false;
            }
        }
        st.inodes.drop_if_unused(ino);
    }
}
