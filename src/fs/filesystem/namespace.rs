//! Changes to names: mkdir, rmdir, unlink and rename across the tree (keys
//! within keys/, a key into `tags/T/`, the edit rule of a rename over a
//! key: docs/SEMANTICS.md, "Write").

use super::*;

impl DiskCacheFs {
    /// mkdir: a directory in `keys/` (keydirs.rs) or `tags/T` (an empty
    /// tag directory, kept in memory until an entry gets the tag);
    /// everywhere else the tree is fixed.
    pub fn mkdir(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let attr = self.make_dir(parent, name)?;
        self.given(&attr);
        Ok(attr)
    }

    pub(super) fn make_dir(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        self.check_writable(&name_str(name))?;
        if Self::is_key_dir(parent) {
            let made = self.mkdir_in_keys(parent, name)?;
            // The kernel's entry for the name is the directory's now.
            self.negative_replaced(parent, name);
            return Ok(made);
        }
        if is_view_ino(parent) {
            // Every queue and task directory exists already.
            self.view_lookup(parent, name)?;
            return Err(FsError::Exists(name_str(name)));
        }
        if parent != TAGS_DIR {
            return Err(FsError::NotPermitted(format!("mkdir {}: the tree's directories are fixed", name_str(name))));
        }
        let tag = Self::parse_tag_name(name)?;
        let c = self.reader()?;
        let mut st = self.state(&c);
        if self.tag_in_use(&mut st, &tag)? {
            return Err(FsError::Exists(format!("tags/{}", name_str(name))));
        }
        st.made_tags.push(tag.clone());
        let ino = Self::tag_dir_ino(&mut st, &tag);
        Ok(self.dir_attr(ino))
    }

    /// rmdir: an empty directory in `keys/`, or `tags/T`, which is
    /// `evict(T)` (`rm -r tags/T` removes its entries one by one first;
    /// whatever is left is evicted).
    pub fn rmdir(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        self.check_writable(&name_str(name))?;
        if Self::is_key_dir(parent) {
            return self.rmdir_in_keys(parent, name);
        }
        if is_view_ino(parent) {
            return self.view_rmdir(parent, name);
        }
        if parent != TAGS_DIR {
            return Err(FsError::NotPermitted(format!("rmdir {}: the tree's directories are fixed", name_str(name))));
        }
        let tag = {
            let c = self.reader()?;
            let mut st = self.state(&c);
            // A directory this daemon has shown may have been emptied already
            // (rm -r removes the entries first): removing it still succeeds.
            let known = Self::parse_tag_name(name).ok().filter(|t| st.tag_dirs.find(&Self::tag_name(t)).is_some());
            match self.find_tag(&mut st, name)? {
                Some(tag) => tag,
                None => known.ok_or_else(|| FsError::NotFound(format!("tags/{}", name_str(name))))?,
            }
        };
        // evict is a transaction of its own per batch (as core.py's), so it
        // runs on a writer handle with the tables unlocked.
        self.writer()?.evict(&tag).map_err(|e| FsError::cache(format!("tags/{}", name_str(name)), e))?;
        self.tables().made_tags.retain(|t| *t != tag);
        Ok(())
    }

    pub fn unlink(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        if is_view_ino(parent) {
            return self.view_unlink(parent, name);
        }
        if classify(parent) == Node::Flyte2 {
            return self.flyte2_unlink(parent, name);
        }
        if is_tag_ino(parent) {
            // Removing an entry from tags/T/ evicts it (rm -r tags/T is evict(T)).
            self.check_writable(&name_str(name))?;
            let c = self.reader()?;
            let mut st = self.state(&c);
            let tag = Self::tag_of_dir(&st, parent).ok_or_else(|| FsError::NotDirectory(format!("inode {parent}")))?;
            let key = self.resolve_flat(&mut st, name)?;
            let meta = st.cache.entry_meta(&key).map_err(|e| FsError::cache(name_str(name), e))?;
            if meta.and_then(|m| m.tag) != Some(tag) {
                return Err(FsError::NotFound(format!("tags/.../{}", name_str(name))));
            }
            drop(st);
            return self.unlink_key(&key);
        }
        if !Self::is_key_dir(parent) {
            self.check_writable(&name_str(name))?;
            return Err(FsError::NotPermitted(format!("{}: only keys in keys/ can be removed", name_str(name))));
        }
        self.check_writable(&format!("keys/{}", name_str(name)))?;
        let key = {
            let c = self.reader()?;
            let mut st = self.state(&c);
            let prefix = Self::key_dir_prefix(&st, parent)?;
            match self.resolve_child(&mut st, &prefix, name) {
                Ok(Resolved::Key(key)) => key,
                Ok(Resolved::Dir(dir)) => {
                    return Err(FsError::IsDirectory(format!("keys/{}", crate::fs::paths::dir_path(&dir))));
                }
                Err(FsError::InvalidName { .. }) => return Err(FsError::NotFound(format!("keys/{}", name_str(name)))),
                Err(e) => return Err(e),
            }
        };
        self.unlink_key(&key)
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), FsError> {
        self.check_writable(&name_str(name))?;
        if is_view_ino(parent) {
            return self.view_rename(parent, name, new_parent, new_name, no_replace);
        }
        if Self::is_key_dir(parent) && !Self::is_key_dir(new_parent) && self.is_key_subdir(parent, name)? {
            // A directory of keys goes nowhere but keys/: refused before
            // anything happens. (EXDEV would have mv copy it, making tags
            // or pushing items file by file, then fail half way.)
            return Err(FsError::NotPermitted(format!(
                "{}: a directory of keys can only be renamed within keys/",
                name_str(name)
            )));
        }
        if is_view_ino(new_parent) {
            // mv falls back to copy and delete: a copy into queues/P/ pushes.
            return Err(FsError::CrossDevice(name_str(name)));
        }
        if Self::is_key_dir(parent) && is_tag_ino(new_parent) {
            // mv keys/.../X tags/T/[Y]: tag the entry T (renaming it first
            // to the key whose flat name is Y, if Y is another name); it
            // stays in keys/.
            let tag = {
                let st = self.tables();
                Self::tag_of_dir(&st, new_parent).ok_or_else(|| FsError::NotDirectory(format!("inode {new_parent}")))?
            };
            let what = format!("keys/{}", name_str(new_name));
            return self.change(&what, None, |st| {
                let prefix = Self::key_dir_prefix(st, parent)?;
                let mut key = match self.resolve_child(st, &prefix, name)? {
                    Resolved::Key(k) => k,
                    Resolved::Dir(_) => {
                        return Err(FsError::NotPermitted(format!("{}: a directory has no tag", name_str(name))));
                    }
                };
                if name != new_name {
                    let new_key = self.resolve_flat(st, new_name)?;
                    self.rename_key(st, &key, &new_key, no_replace)?;
                    key = new_key;
                }
                if !st.cache.set_tag(&key, Some(&tag)).map_err(|e| FsError::cache(&what, e))? {
                    return Err(FsError::NotFound(what.clone()));
                }
                Ok(())
            });
        }
        if !Self::is_key_dir(parent) || !Self::is_key_dir(new_parent) {
            if Self::is_key_dir(parent) || Self::is_key_dir(new_parent) {
                return Err(FsError::CrossDevice(name_str(name)));
            }
            return Err(FsError::NotPermitted(format!("rename {}", name_str(name))));
        }
        // The kernel moves its entry onto the new name (it holds the
        // directory, so no LOOKUP of the name comes meanwhile): a miss of
        // it kept is forgotten before the commit, which would find it.
        let kept = self.negative_replaced(new_parent, new_name);
        let renamed = self.change_named_by_kernel(&format!("keys/{}", name_str(name)), |st| {
            let old_prefix = Self::key_dir_prefix(st, parent)?;
            let new_prefix = Self::key_dir_prefix(st, new_parent)?;
            match self.resolve_child(st, &old_prefix, name) {
                Err(FsError::InvalidName { .. }) => Err(FsError::NotFound(format!("keys/{}", name_str(name)))),
                Err(e) => Err(e),
                Ok(Resolved::Dir(dir)) => {
                    let new_dir = match crate::fs::paths::parse_child(new_name.as_bytes(), &new_prefix) {
                        Ok(crate::fs::paths::ChildName::Part(p)) => format!("{new_prefix}{p}/"),
                        Err(NameError::TooLong) => return Err(FsError::NameTooLong(name_str(new_name))),
                        _ => {
                            return Err(FsError::InvalidName {
                                name: name_str(new_name),
                                reason: "a directory's name is a part of str keys".into(),
                            });
                        }
                    };
                    self.rename_dir(st, &dir, &new_dir, no_replace)
                }
                Ok(Resolved::Key(old_key)) => {
                    let new_key = self.rename_target(st, &old_key, &new_prefix, new_name)?;
                    self.rename_key(st, &old_key, &new_key, no_replace)
                }
            }
        });
        if renamed.is_err() && kept {
            // The kernel keeps its miss: a key made elsewhere meanwhile
            // would not have raised the epoch.
            self.raise_epoch();
        }
        renamed
    }

    /// Whether `name` in the key directory `parent` is a directory of keys.
    pub(super) fn is_key_subdir(&self, parent: u64, name: &OsStr) -> Result<bool, FsError> {
        let c = self.reader()?;
        let mut st = self.state(&c);
        let prefix = Self::key_dir_prefix(&st, parent)?;
        Ok(matches!(self.resolve_child(&mut st, &prefix, name), Ok(Resolved::Dir(_))))
    }

    /// The key a file renamed to `new_name` in the directory `prefix` gets.
    pub(super) fn rename_target(
        &self,
        st: &mut State,
        old_key: &Key,
        prefix: &str,
        new_name: &OsStr,
    ) -> Result<Key, FsError> {
        use crate::fs::paths::{ChildName, leaf_of, parse_child};
        let intended = st.inodes.by_name(&key_to_name(old_key)).and_then(|i| st.inodes.get(i)?.intended_key.clone());
        match parse_child(new_name.as_bytes(), prefix) {
            // A long key's name: the key user.diskcache.key gave the file
            // (how a backup restores it), else the existing key.
            Ok(ChildName::Hashed(_)) => {
                if let Some(k) = intended {
                    let (p, leaf) = leaf_of(&k);
                    if p == prefix && OsStr::new(&leaf) == new_name {
                        return Ok(k);
                    }
                }
            }
            Err(e) => return Err(bad_name(new_name, e)),
            Ok(_) => {}
        }
        match self.resolve_child(st, prefix, new_name)? {
            Resolved::Key(k) => Ok(k),
            Resolved::Dir(dir) => Err(FsError::IsDirectory(format!("keys/{}", crate::fs::paths::dir_path(&dir)))),
        }
    }

    /// Renames a key's file to `new_key`, in the caller's transaction.
    pub(super) fn rename_key(
        &self,
        st: &mut State,
        old_key: &Key,
        new_key: &Key,
        no_replace: bool,
    ) -> Result<(), FsError> {
        let (old_key, new_key) = (old_key.clone(), new_key.clone());
        let old_name = key_to_name(&old_key);
        let new_name = key_to_name(&new_key);
        if old_name == new_name {
            // A rename onto itself: nothing to do, if there is something.
            let pending = st.inodes.is_pending_create(&old_name);
            let exists = st.cache.entry_meta(&old_key).map_err(|e| FsError::cache(format!("keys/{old_name}"), e))?;
            return if exists.is_some() || pending {
                Ok(())
            } else {
                Err(FsError::NotFound(format!("keys/{old_name}")))
            };
        }
        let source_ino = st.inodes.by_name(&old_name);
        let source_pending = source_ino.and_then(|i| st.inodes.get(i)).is_some_and(|i| i.pending_create);
        let target_pending = st.inodes.is_pending_create(&new_name);
        // A file made through the mount, with none of our attributes set,
        // renamed over an existing entry is a rewrite of that entry (how
        // sed -i and editors save): the entry's type, tag and expiry are
        // kept (docs/SEMANTICS.md, "Edits keep the entry's type, tag and
        // expiry").
        let rewrite = match source_ino.and_then(|i| st.inodes.get(i)) {
            Some(i) if i.made_here && !i.attrs_set && i.pending_create => true,
            // Still the version this mount stored (not a peer's since).
            Some(i) if i.made_here && !i.attrs_set => {
                let meta = st.cache.entry_meta(&old_key).map_err(|e| FsError::cache(format!("keys/{old_name}"), e))?;
                meta.map(|m| m.store_time.to_bits()) == i.committed_version
            }
            _ => false,
        };
        let replaced = if rewrite && !no_replace {
            st.cache.entry_meta(&new_key).map_err(|e| FsError::cache(format!("keys/{new_name}"), e))?
        } else {
            None
        };
        if source_pending {
            // Not in the cache yet: the rename is the inode's alone (its
            // commit will store under the new key). Replace any target.
            let target_exists =
                st.cache.entry_meta(&new_key).map_err(|e| FsError::cache(format!("keys/{new_name}"), e))?.is_some();
            if no_replace && (target_exists || target_pending) {
                return Err(FsError::Exists(format!("keys/{new_name}")));
            }
            if target_exists {
                st.cache.delete(&new_key).map_err(|e| FsError::cache(format!("keys/{new_name}"), e))?;
            }
        } else {
            match st
                .cache
                .rename(&old_key, &new_key, !no_replace)
                .map_err(|e| FsError::cache(format!("keys/{old_name}"), e))?
            {
                RenameOutcome::Renamed => {}
                RenameOutcome::SourceMissing => return Err(FsError::NotFound(format!("keys/{old_name}"))),
                RenameOutcome::TargetExists => return Err(FsError::Exists(format!("keys/{new_name}"))),
            }
        }
        st.inodes.unlink_name(&new_name);
        if let Some(ino) = source_ino {
            st.inodes.rename(ino, &new_name, &new_key);
        }
        if let Some(old) = replaced {
            self.keep_replaced_attributes(st, source_ino, source_pending, &new_key, &new_name, old)?;
        }
        if !source_pending {
            Self::apply_pending_tag(st, &new_name, &new_key)?;
        }
        Self::keep_dir_of(st, &old_key);
        for key in [&old_key, &new_key] {
            self.key_dir_changed(st, key);
        }
        Ok(())
    }

    /// After a rewrite by rename (see `rename_key`): the moved entry takes
    /// the replaced entry's tag, expiry and type (the type if its content
    /// is valid for it; else it stays bytes). A copy still being written
    /// gets them at its commit.
    pub(super) fn keep_replaced_attributes(
        &self,
        st: &mut State,
        ino: Option<u64>,
        pending: bool,
        key: &Key,
        name: &str,
        old: EntryMeta,
    ) -> Result<(), FsError> {
        let what = format!("keys/{name}");
        if pending {
            if let Some(inode) = ino.and_then(|i| st.inodes.get_mut(i)) {
                // (Over what an earlier rename of this copy kept: it now
                // rewrites this entry.)
                inode.pending.tag = Some(old.tag.clone());
                inode.pending.expire_time = Some(old.expire_time);
                inode.inherited_type = Some(old.value_type());
            }
            return Ok(());
        }
        st.cache.set_tag(key, old.tag.as_ref()).map_err(|e| FsError::cache(what.clone(), e))?;
        st.cache.touch_at(key, old.expire_time).map_err(|e| FsError::cache(what.clone(), e))?;
        match self.convert_stored(st, key, name, old.value_type()) {
            Err(FsError::InvalidValue { .. }) => Ok(()),
            other => other,
        }
    }
}
