//! LOOKUP, FORGET, GETATTR and SETATTR: each classifies its inode once and
//! goes to the subtree that owns it.

use super::*;

impl DiskCacheFs {
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let candidate = self.negative_candidate(parent, name);
        let found = match self.lookup_attr(parent, name) {
            Err(miss @ FsError::NotFound(_)) => {
                self.lookup_after_miss(parent, name, miss, || self.lookup_attr(parent, name))
            }
            other => other,
        };
        if let (Err(FsError::NotFound(_)), Some(candidate)) = (&found, candidate) {
            self.note_miss(candidate);
        }
        let attr = self.made_content_attr(found?);
        self.given(&attr);
        Ok(attr)
    }

    pub(super) fn lookup_attr(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong(name_str(name)));
        }
        if is_view_ino(parent) {
            return self.view_lookup(parent, name);
        }
        if classify(parent) == Node::Flyte2 {
            return self.flyte2_lookup(parent, name);
        }
        if parent == ROOT {
            let entry = self.root_name(name).ok_or_else(|| FsError::NotFound(name_str(name)))?;
            if entry.ino != STATS {
                // The root's directories are constants: no handle, no lock.
                return Ok(self.dir_attr(entry.ino));
            }
            let c = self.reader()?;
            let st = self.state(&c);
            return self.control_getattr(&st, STATS);
        }
        if Self::is_key_dir(parent) {
            return self.lookup_in_keys_unlocked(parent, name);
        }
        let c = self.reader()?;
        let mut st = self.state(&c);
        match parent {
            TAGS_DIR => {
                let tag = self
                    .find_tag(&mut st, name)?
                    .ok_or_else(|| FsError::NotFound(format!("tags/{}", name_str(name))))?;
                let ino = Self::tag_dir_ino(&mut st, &tag);
                Ok(self.dir_attr(ino))
            }
            _ if is_tag_ino(parent) => {
                let tag =
                    Self::tag_of_dir(&st, parent).ok_or_else(|| FsError::NotDirectory(format!("inode {parent}")))?;
                let ino = Self::tag_link_ino(&mut st, &tag, &name_str(name));
                self.tag_getattr(&mut st, ino)
            }
            SETTINGS_DIR => {
                let text = name.to_str().map(|n| Self::setting_bytes(&st, n)).transpose()?.flatten();
                let text = text.ok_or_else(|| FsError::NotFound(format!("settings/{}", name_str(name))))?;
                let ino = Self::setting_ino(&mut st, &name_str(name));
                Ok(self.control_attr(ino, text.len(), true))
            }
            _ if Self::is_key_dir(parent) => self.lookup_in_keys(&mut st, parent, name),
            _ => Err(FsError::NotDirectory(format!("inode {parent}"))),
        }
    }

    /// `forget`. An inode read without OPEN drops its pin with the last
    /// reference (filesystem/unopened.rs).
    pub fn forget(&self, ino: u64, nlookup: u64) {
        let unpin = {
            let mut st = self.tables();
            st.inodes.forget(ino, nlookup);
            Self::note_forgotten(&mut st, ino, nlookup);
            let forgotten = match classify(ino) {
                Node::Key => st.inodes.get(ino).is_none_or(|i| i.nlookup == 0),
                _ => true,
            };
            forgotten && st.pins.contains_key(&ino)
        };
        if unpin {
            self.unpin(ino);
        }
    }

    /// `getattr`. (`fstat` sends no file handle, so a reader's snapshot
    /// size comes from its inode: see `note_version`.)
    pub fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        self.current_attr(ino).map(|a| self.made_content_attr(a))
    }

    pub(super) fn current_attr(&self, ino: u64) -> Result<Attr, FsError> {
        match classify(ino) {
            Node::FixedDir => Ok(self.dir_attr(ino)),
            Node::View => self.view_getattr(ino),
            Node::Flyte2 => self.flyte2_getattr(ino),
            Node::TagDir | Node::TagLink => {
                let c = self.reader()?;
                let mut st = self.state(&c);
                self.tag_getattr(&mut st, ino)
            }
            Node::Stats | Node::Setting => {
                let c = self.reader()?;
                let st = self.state(&c);
                self.control_getattr(&st, ino)
            }
            Node::Key => {
                let c = self.reader()?;
                let mut st = self.state(&c);
                self.key_attr(&mut st, ino)
            }
            Node::KeyDir => self.key_dir_attr(ino),
            Node::Unknown => Err(FsError::NotFound(format!("inode {ino}"))),
        }
    }

    /// `setattr`: size (truncate), times; mode and owner are accepted and
    /// ignored (modes are fixed), so `cp -p` and `rsync -a` work.
    pub fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        size: Option<u64>,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> Result<Attr, FsError> {
        // Times set on any directory are kept in memory (see `dir_times`),
        // so that a second rsync or tar of the tree finds them as it set
        // them; those of keys/ until something changes in the directory.
        if (atime.is_some() || mtime.is_some()) && size.is_none() && !self.config.read_only {
            let is_dir = match classify(ino) {
                Node::FixedDir | Node::KeyDir | Node::TagDir => true,
                Node::View | Node::Flyte2 => self.getattr(ino).is_ok_and(|a| a.kind == Kind::Directory),
                _ => false,
            };
            if is_dir {
                self.set_dir_times(ino, atime, mtime);
            }
        }
        match classify(ino) {
            Node::Key => {}
            // Times and modes of view files and links are not kept (rsync
            // sets them after a restore); sizes do not apply.
            Node::View => return self.view_getattr(ino),
            Node::Flyte2 if size.is_some() => return Err(FsError::AccessDenied(format!("inode {ino}"))),
            Node::Flyte2 => return self.flyte2_getattr(ino),
            Node::TagDir | Node::TagLink => {
                // Tag directories and links: times and modes are not kept.
                let c = self.reader()?;
                let mut st = self.state(&c);
                if size.is_some() {
                    return Err(FsError::NotPermitted("tags: no size to change".into()));
                }
                return self.tag_getattr(&mut st, ino);
            }
            Node::FixedDir | Node::KeyDir if size.is_some() => {
                return Err(FsError::IsDirectory(format!("inode {ino}")));
            }
            Node::FixedDir => return Ok(self.dir_attr(ino)),
            Node::KeyDir => return self.key_dir_attr(ino),
            Node::Unknown => return Err(FsError::NotFound(format!("inode {ino}"))),
            Node::Stats | Node::Setting => {}
        }
        if classify(ino) != Node::Key {
            // stats and settings: times are ignored; a setting being written
            // may be truncated through its open handle.
            let c = self.reader()?;
            let mut st = self.state(&c);
            if let Some(size) = size {
                if ino == STATS {
                    return Err(FsError::AccessDenied("stats".into()));
                }
                self.check_writable("settings")?;
                match fh.and_then(|fh| st.handles.get_mut(&fh)) {
                    Some(Handle::Setting { text, dirty, .. }) => {
                        text.resize(size as usize, b' ');
                        *dirty = true;
                    }
                    _ => {
                        return Err(FsError::InvalidValue {
                            what: "a setting".into(),
                            reason: "write the new value (echo VALUE > settings/NAME) instead of truncating".into(),
                        });
                    }
                }
            }
            return self.control_getattr(&st, ino);
        }
        let (name, key) = {
            let st = self.tables();
            let inode = st.inodes.get(ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
            (inode.name.clone(), inode.key.clone())
        };
        if let Some(size) = size {
            self.check_writable(&format!("keys/{name}"))?;
            self.truncate_key(ino, fh, size)?;
        }
        if atime.is_some() || mtime.is_some() {
            self.check_writable(&format!("keys/{name}"))?;
            let store = mtime.map(unix_seconds);
            let access = atime.map(unix_seconds);
            self.change(&format!("keys/{name}"), Some(&[&key]), |st| {
                let key = st.inodes.get(ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?.key.clone();
                let pending = st.inodes.get(ino).is_some_and(|i| i.pending_create) || Self::has_dirty_writer(st, ino);
                if pending && let Some(inode) = st.inodes.get_mut(ino) {
                    let (s0, a0) = inode.pending.times.unwrap_or((None, None));
                    inode.pending.times = Some((store.or(s0), access.or(a0)));
                }
                let before = st.cache.entry_meta(&key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?;
                st.cache.set_times(&key, store, access).map_err(|e| FsError::cache(format!("keys/{name}"), e))?;
                let after = st.cache.entry_meta(&key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?;
                if let (Some(before), Some(after)) = (before, after) {
                    // Same content, new store_time: not a new version for the
                    // readers that have it open (else they would be superseded).
                    let len = Self::entry_len(st.cache, &after);
                    Self::retime_version(st, ino, ContentVersion::of(&before, len), ContentVersion::of(&after, len));
                }
                Ok(())
            })?;
        }
        let c = self.reader()?;
        let mut st = self.state(&c);
        self.key_attr(&mut st, ino)
    }
}
