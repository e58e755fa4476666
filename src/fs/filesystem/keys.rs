//! Files of keys/ (docs/SEMANTICS.md, "Keys"): a flat name to its key, a
//! key inode's attributes (from the cache, or its open writer), and the
//! content versions the kernel and readers hold.

use super::*;

impl DiskCacheFs {
    /// Parses a key's flat name (as in `tags/T/`) to its key (a
    /// `%sha256:` name is looked up).
    pub(super) fn resolve_flat(&self, st: &mut State, name: &OsStr) -> Result<Key, FsError> {
        match name_to_key(name.as_bytes()) {
            Ok(ParsedName::Key(k)) => Ok(k),
            Ok(ParsedName::Hashed(digest)) => {
                if let Some(key) = st.hashed_names.get(&digest) {
                    return Ok(key.clone());
                }
                // Not shown by this daemon yet (a name typed, or a key a
                // peer added): look for it once, and remember it.
                let mut after = 0;
                loop {
                    let batch = st.cache.list_meta(after, 1000).map_err(|e| FsError::cache("listing keys", e))?;
                    let Some(last) = batch.last() else { break };
                    after = last.0;
                    if let Some((_, m)) = batch.iter().find(|(_, m)| matches_hash(&m.key, &digest)) {
                        st.hashed_names.insert(digest, m.key.clone());
                        return Ok(m.key.clone());
                    }
                }
                Err(FsError::NotFound(format!("keys/{}", name_str(name))))
            }
            Err(NameError::TooLong) => Err(FsError::NameTooLong(format!("keys/{}", name_str(name)))),
            Err(NameError::Invalid(reason)) => Err(FsError::InvalidName { name: name_str(name), reason }),
        }
    }

    /// Remembers the key of a `%sha256:` name this daemon shows, so that
    /// looking the name up again is a map lookup, not a scan of the cache.
    pub(super) fn remember_hashed(st: &mut Tables, name: &str, key: &Key) {
        if name.starts_with(HASHED_PREFIX)
            && let Ok(ParsedName::Hashed(digest)) = name_to_key(name.as_bytes())
        {
            st.hashed_names.entry(digest).or_insert_with(|| key.clone());
        }
    }

    /// The attributes of a key inode, from the cache or its open writer.
    pub(super) fn key_attr(&self, st: &mut State, ino: u64) -> Result<Attr, FsError> {
        self.key_attr_with(st, ino, None)
    }

    /// [`Self::key_attr`], with the entry's row and content length as the
    /// caller read them for this request (`Some(None)`: there is none).
    pub(super) fn key_attr_with(
        &self,
        st: &mut State,
        ino: u64,
        read: Option<Option<(EntryMeta, u64)>>,
    ) -> Result<Attr, FsError> {
        let inode = st.inodes.get(ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        if let Some(view) = inode.superseded {
            return Ok(self.file_attr(ino, view.len, view.store_time, view.access_time));
        }
        let key = inode.key.clone();
        let name = inode.name.clone();
        let pending_create = inode.pending_create;
        let unlinked = inode.unlinked;
        let staged = Self::writer_of(st, ino).and_then(|w| w.staged_len.map(|len| (len, w.dirty)));
        let row = match read {
            _ if unlinked => None,
            Some(row) => row,
            None => {
                let meta = st.cache.entry_meta(&key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?;
                meta.map(|m| {
                    let len = Self::entry_len(st.cache, &m);
                    (m, len)
                })
            }
        };
        let now = st.cache.now();
        let mut attr = match (row, staged) {
            (_, Some((len, true))) => {
                // A dirty writer: its copy is what this file is now (a new
                // file, until written to, has the time of its create).
                let inode = st.inodes.get(ino);
                let (store, access) = inode.and_then(|i| i.pending.times).unwrap_or((None, None));
                let base = inode.and_then(|i| i.created_at).filter(|_| len == 0).unwrap_or(now);
                self.file_attr(ino, len, store.unwrap_or(base), access.unwrap_or(base))
            }
            (Some((meta, len)), _) => {
                if let Some(view) = Self::note_version(st, ino, ContentVersion::of(&meta, len)) {
                    return Ok(self.file_attr(ino, view.len, view.store_time, view.access_time));
                }
                self.file_attr(ino, len, meta.store_time, meta.access_time)
            }
            (None, Some((len, false))) if pending_create || unlinked => self.file_attr(ino, len, now, now),
            (None, None) if pending_create => {
                let created = st.inodes.get(ino).and_then(|i| i.created_at).unwrap_or(now);
                self.file_attr(ino, 0, created, created)
            }
            (None, _) => {
                // Deleted while open: like an unlinked file, it still stats
                // for its readers (fstat), with their snapshot's size.
                match Self::readers_views(st, ino).next() {
                    Some(v) => self.file_attr(ino, v.len, v.store_time, v.access_time),
                    None => return Err(FsError::NotFound(format!("keys/{name}"))),
                }
            }
        };
        if unlinked {
            // Open, but no longer reachable by any name.
            attr.nlink = 0;
        }
        Ok(attr)
    }

    /// What the readers of key inode `ino` hold open (their versions).
    pub(super) fn readers_views<'t>(st: &'t Tables, ino: u64) -> impl Iterator<Item = ReadView> + 't {
        st.handles.values().filter_map(move |h| match h {
            Handle::Read { ino: i, view: Some(v), .. } if *i == ino => Some(*v),
            _ => None,
        })
    }

    /// Records that the kernel is about to get `version`'s size for `ino`.
    /// If the kernel holds another version's size and pages and readers of
    /// that version still have the file open, the inode is superseded
    /// instead (it keeps their version; the name gets a new inode) and
    /// their view is returned: a reader sees its whole snapshot.
    pub(super) fn note_version(st: &mut Tables, ino: u64, version: ContentVersion) -> Option<ReadView> {
        let held = st.inodes.get(ino)?.kernel_version;
        if let Some(held) = held
            && held != version
        {
            let readers_view = Self::readers_views(st, ino).find(|v| v.version == held);
            let writer_open = st.handles.values().any(|h| matches!(h, Handle::Write(w) if w.ino == ino));
            if let Some(view) = readers_view
                && !writer_open
            {
                st.inodes.supersede(ino, view);
                return Some(view);
            }
        }
        if let Some(inode) = st.inodes.get_mut(ino) {
            inode.kernel_version = Some(version);
        }
        None
    }

    /// An entry's content length: a value file's own length (the `size`
    /// column may be wrong in a damaged or crafted cache; an unreadable or
    /// vanished file counts as empty, and reading it gives the error).
    pub(super) fn entry_len(cache: &StoreConn, meta: &EntryMeta) -> u64 {
        match (&meta.filename, meta.mode) {
            (Some(name), m) if m != MODE_RAW => {
                cache.disk_of(&meta.key).ok().and_then(|d| d.file_size(name).ok().flatten()).unwrap_or(0)
            }
            _ => content_len(meta),
        }
    }

    pub(super) fn writer_of(st: &Tables, ino: u64) -> Option<&WriterSlot> {
        st.handles.values().find_map(|h| match h {
            Handle::Write(w) if w.ino == ino && w.dirty => Some(w),
            _ => None,
        })
    }

    pub(super) fn has_dirty_writer(st: &Tables, ino: u64) -> bool {
        Self::writer_of(st, ino).is_some()
    }

    /// Renames a content version after a change of times alone.
    pub(super) fn retime_version(st: &mut Tables, ino: u64, old: ContentVersion, new: ContentVersion) {
        for h in st.handles.values_mut() {
            if let Handle::Read { ino: i, view: Some(v), .. } = h
                && *i == ino
                && v.version == old
            {
                v.version = new;
            }
        }
        if let Some(inode) = st.inodes.get_mut(ino)
            && inode.kernel_version == Some(old)
        {
            inode.kernel_version = Some(new);
        }
    }

    /// Removes a key's entry (rm of its file), keeping its directory.
    pub(super) fn unlink_key(&self, key: &Key) -> Result<(), FsError> {
        self.change(&format!("keys/{}", crate::fs::paths::key_path(key)), Some(&[key]), |st| {
            let name = key_to_name(key);
            let deleted = st.cache.delete(key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?;
            let pending = st.inodes.is_pending_create(&name);
            if !deleted && !pending {
                return Err(FsError::NotFound(format!("keys/{name}")));
            }
            st.inodes.unlink_name(&name);
            Self::keep_dir_of(st, key);
            self.key_dir_changed(st, key);
            Ok(())
        })
    }
}
