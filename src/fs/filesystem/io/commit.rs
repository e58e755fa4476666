//! Committing a writer's copy as its entry's new value (docs/SEMANTICS.md,
//! "Writing"), and truncate(2) of a key's file, which commits at once.

use super::*;

impl DiskCacheFs {
    /// Commits a writer's copy as the entry's new value, atomically, with
    /// the attributes set while it was open (else the entry's own): value,
    /// times and tag in one transaction. The copy is prepared (linked or
    /// converted) before the write lock is asked for, and the tables are
    /// locked only once it is held. With `fh`, the open handle's state in
    /// the tables is updated in the same lock (returns true when it was).
    pub(super) fn commit(&self, w: &mut WriteHandle, fh: Option<u64>) -> Result<bool, FsError> {
        let (name, key, unlinked, chosen, pending_create, committed_version) = {
            let st = self.tables();
            let inode = st.inodes.get(w.ino).ok_or_else(|| FsError::NotFound(format!("inode {}", w.ino)))?;
            // The type: as the writer set it; else, the writer having set
            // no attribute, the type of the entry it rewrites (kept if the
            // content is valid for it, docs/SEMANTICS.md "Edits keep the
            // entry's type, tag and expiry"); else bytes.
            let chosen = match (inode.pending.value_type, inode.attrs_set, inode.inherited_type) {
                (Some(t), _, _) => Chosen::Set(t),
                (None, true, _) => Chosen::Set(ValueType::Bytes),
                (None, false, Some(t)) => Chosen::Kept(t),
                (None, false, None) if inode.pending_create => Chosen::Set(ValueType::Bytes),
                (None, false, None) => Chosen::OfEntry,
            };
            (
                inode.name.clone(),
                inode.key.clone(),
                inode.unlinked,
                chosen,
                inode.pending_create,
                inode.committed_version,
            )
        };
        if unlinked {
            // Writes to an unlinked file vanish with it.
            w.dirty = false;
            return Ok(false);
        }
        let what = format!("keys/{name}");
        let c = self.writer()?;
        let of_entry = |meta: Option<&crate::cache::EntryMeta>| match meta {
            Some(meta) if meta.value_type() != ValueType::Bytes => Chosen::Kept(meta.value_type()),
            _ => Chosen::Set(ValueType::Bytes),
        };
        let chosen = match chosen {
            Chosen::OfEntry => of_entry(c.entry_meta(&key).map_err(|e| FsError::cache(what.clone(), e))?.as_ref()),
            // A type kept from this inode's own empty commit holds while
            // the entry is still that commit's version.
            Chosen::Kept(t) if !pending_create => {
                let meta = c.entry_meta(&key).map_err(|e| FsError::cache(what.clone(), e))?;
                if meta.as_ref().map(|m| m.store_time.to_bits()) == committed_version {
                    Chosen::Kept(t)
                } else {
                    of_entry(meta.as_ref())
                }
            }
            other => other,
        };
        let value_type = match chosen {
            Chosen::Set(t) | Chosen::Kept(t) => t,
            Chosen::OfEntry => ValueType::Bytes,
        };
        let spill = Self::spill_size(&c);
        self.materialize(spill, w).map_err(|e| FsError::io(what.clone(), e))?;
        // The copy becomes a value file of the key's shard: one staged in
        // another's (the key renamed across shards while open) is copied
        // over first.
        let shard = self.store.shard_of(&key);
        if shard != w.shard {
            if let Some(Staging::File { filename, committed, .. }) = w.staging.as_mut() {
                let uncommitted = (!*committed).then(|| filename.clone()).flatten();
                *committed = true;
                let staging = w.staging.as_mut().expect("a file");
                staging.detach(self.store.disk(shard)).map_err(|e| FsError::io(what.clone(), e))?;
                if let Some(name) = uncommitted {
                    self.store.disk(w.shard).remove(&name);
                }
            }
            w.shard = shard;
        }
        let disk = self.store.disk(shard);
        let staging = w.staging.as_mut().expect("materialized");
        // A previous commit of this copy failed after the engine removed
        // its file: commit a fresh copy, never a row pointing at nothing.
        staging.detach(disk).map_err(|e| FsError::io(what.clone(), e))?;
        let invalid =
            |reason: String| FsError::InvalidValue { what: format!("{what} as {}", value_type.name()), reason };
        let mut keep_for_next = None;
        // A large copy kept as a pickle must be one; else it is bytes.
        let value_type = match (chosen, &*staging) {
            (Chosen::Kept(ValueType::Pickle), Staging::File { len, .. }) if *len >= spill => {
                let data = staging.read_at(0, staging.len() as usize).map_err(|e| FsError::io(what.clone(), e))?;
                if crate::fs::pickle_check::check_pickle(&data).is_ok() { ValueType::Pickle } else { ValueType::Bytes }
            }
            _ => value_type,
        };
        let new_value = match staging {
            Staging::File { len, .. }
                if *len >= spill && matches!(value_type, ValueType::Bytes | ValueType::Pickle) =>
            {
                // The staging file becomes the value file: no copy.
                let size = *len;
                let filename = staging.link(disk).map_err(|e| FsError::io(what.clone(), e))?;
                if let Staging::File { committed, .. } = staging {
                    *committed = true;
                }
                NewValue::File { filename, size, value_type }
            }
            _ => {
                let data = staging.read_at(0, staging.len() as usize).map_err(|e| FsError::io(what.clone(), e))?;
                match (convert(data, value_type), chosen) {
                    // What was written is what Python reads: a str with a
                    // `\r` stays in the row (meta.rs, `InlineStr`).
                    (Ok(crate::cache::Value::Str(s)), _) if s.contains('\r') => NewValue::InlineStr(s),
                    (Ok(value), _) => NewValue::Value(value),
                    // Content not valid for the type it would keep: bytes,
                    // as any content is.
                    (Err(_), Chosen::Kept(t)) => {
                        let data =
                            staging.read_at(0, staging.len() as usize).map_err(|e| FsError::io(what.clone(), e))?;
                        // An empty copy is where `>` and O_TRUNC begin (the
                        // kernel truncates before the write): the type is
                        // kept for the commit of what is written next.
                        keep_for_next = data.is_empty().then_some(t);
                        NewValue::Value(crate::cache::Value::Bytes(data))
                    }
                    (Err(reason), _) => return Err(invalid(reason)),
                }
            }
        };
        let empty = staging.is_empty();
        let staged_len = Some(staging.len());
        let ino = w.ino;
        // The open handle as the tables show it (`stat` through the mount):
        // clean once committed.
        let mirror_clean = |st: &mut Tables| {
            if let Some(Handle::Write(slot)) = fh.and_then(|fh| st.handles.get_mut(&fh)) {
                slot.dirty = false;
                slot.staged_len = staged_len;
            }
        };
        let stored = self.change_with(&c, &what, Some(&[&key]), |st| {
            let inode = st.inodes.get(ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
            let (key, name, pending) = (inode.key.clone(), inode.name.clone(), inode.pending.clone());
            // Unlinked through the mount while this commit waited, or, for
            // an entry it did not create, missing now (deleted by a peer,
            // or expired): the copy is dropped (docs/SEMANTICS.md,
            // "Writing").
            let deleted = !inode.unlinked
                && !inode.pending_create
                && st.cache.entry_meta(&key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?.is_none();
            if inode.unlinked || deleted {
                if let NewValue::File { filename, .. } = &new_value {
                    disk.remove(filename);
                }
                if deleted && !inode.unlinked {
                    log::info!("keys/{name}: deleted while open for writing; the write is dropped");
                }
                mirror_clean(st);
                return Ok(());
            }
            let expire = pending.expire_time.map_or(Keep::Keep, Keep::Set);
            let tag = pending.tag.clone().map_or(Keep::Keep, Keep::Set);
            let what = format!("keys/{name}");
            let mut store_time =
                st.cache.replace_value(&key, new_value, expire, tag).map_err(|e| FsError::cache(what.clone(), e))?;
            // A file created and closed unwritten keeps the times it was
            // shown with since the create.
            let created = inode.created_at.filter(|_| inode.pending_create && empty);
            if let Some((store, access)) = pending.times.or(created.map(|t| (Some(t), Some(t)))) {
                st.cache.set_times(&key, store, access).map_err(|e| FsError::cache(what.clone(), e))?;
                store_time = store.unwrap_or(store_time);
            }
            Self::apply_pending_tag(st, &name, &key)?;
            self.record_seen_inputs(st, &key);
            if let Some(inode) = st.inodes.get_mut(ino) {
                // The version just stored (its store_time as written).
                inode.committed_version = Some(store_time.to_bits());
                inode.pending_create = false;
                inode.created_at = None;
                inode.pending = Default::default();
                inode.inherited_type = keep_for_next;
            }
            mirror_clean(st);
            Ok(())
        });
        match stored {
            Ok(()) => {
                w.dirty = false;
                Ok(fh.is_some())
            }
            // Logged by the adapter with the request, the inode and the
            // errno; said here what it means for the value.
            Err(e) => Err(e.in_context("commit failed, the old value stays")),
        }
    }

    /// A Flyte task entry whose inputs were looked up through `task/`
    /// (`.key`, a `.resolve` that missed): their digests go into the side
    /// record in the entry's own transaction (flyte/input_record.rs). A
    /// record that cannot be written is logged; the value is stored anyway.
    fn record_seen_inputs(&self, st: &mut State, key: &Key) {
        let Key::Str(k) = key else { return };
        let Some(record) = st.seen_inputs.get(k).cloned() else { return };
        let recorded = st.cache.of(key).and_then(|cache| crate::flyte::input_record::record(cache, &record));
        match recorded {
            Ok(()) => drop(st.seen_inputs.take(k)),
            Err(e) => log::warn!("keys/{}: the inputs' record was not written: {e}", crate::fs::grammar::str_name(k)),
        }
    }

    /// truncate(2)/ftruncate(2) of a key's file: through the open writer
    /// `fh`, or (a path) a one-shot writer committed at once.
    pub(in crate::fs::filesystem) fn truncate_key(&self, ino: u64, fh: Option<u64>, size: u64) -> Result<(), FsError> {
        let (writer, key, name) = {
            let st = self.tables();
            let inode = st.inodes.get(ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
            let writer = fh.and_then(|fh| match st.handles.get(&fh) {
                Some(Handle::Write(slot)) => Some(slot.io.clone()),
                _ => None,
            });
            (writer, inode.key.clone(), inode.name.clone())
        };
        let what = || format!("keys/{name}");
        let c = self.reader()?;
        let spill = Self::spill_size(&c);
        match (writer, fh) {
            (Some(io), Some(fh)) => {
                let mut w = lock_writer(&io);
                self.materialize(spill, &mut w).map_err(|e| FsError::io(what(), e))?;
                let disk = self.store.disk(w.shard);
                let staging = w.staging.as_mut().expect("materialized");
                staging.truncate(disk, size, spill).map_err(|e| FsError::io(what(), e))?;
                w.dirty = true;
                self.mirror(fh, &w);
                Ok(())
            }
            _ => {
                let base = Self::snapshot(&c, &key, &name)?;
                let shard = self.store.shard_of(&key);
                let mut w = WriteHandle { ino, shard, append: false, base: Some(base), staging: None, dirty: true };
                let result = (|| {
                    self.materialize(spill, &mut w).map_err(|e| FsError::io(what(), e))?;
                    let staging = w.staging.as_mut().expect("materialized");
                    staging.truncate(self.store.disk(shard), size, spill).map_err(|e| FsError::io(what(), e))?;
                    self.commit(&mut w, None).map(drop)
                })();
                if let Some(staging) = w.staging.take() {
                    staging.discard(self.store.disk(w.shard));
                }
                result
            }
        }
    }
}
