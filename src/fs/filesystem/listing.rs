//! READDIR and READDIRPLUS: the root, `tags/`, `tags/T/` and `settings/`
//! here; keys/, the views and flyte2/ in their own modules.

use super::*;

/// Sizes of the batches a listing reads from the cache: a READDIR reply
/// holds a few dozen entries (4 KiB), and what does not fit is read again
/// by the next request, so start small and grow while the reply takes
/// whole batches.
pub(super) struct ListingBatches(usize);

impl ListingBatches {
    pub(super) fn new() -> ListingBatches {
        ListingBatches(32)
    }

    /// After a directory in a listing of keys/ (see keydirs.rs).
    pub(super) fn small() -> ListingBatches {
        ListingBatches(4)
    }

    pub(super) fn next(&mut self) -> usize {
        let n = self.0;
        self.0 = (self.0 * 2).min(1024);
        n
    }
}

impl DiskCacheFs {
    /// Lists a directory from `offset` (0 at the start). Offsets: 1 after
    /// `.`, 2 after `..`, then each key's rowid + 2, so a listing resumes
    /// where it stopped without holding any state between calls.
    pub fn readdir(&self, ino: u64, offset: u64, plus: bool, out: &mut dyn DirReplier) -> Result<(), FsError> {
        if !plus {
            let listed = self.list(ino, offset, plus, out);
            Self::trim_names(&mut self.tables());
            return listed;
        }
        let mut given = lifetimes::Given { out, given: Vec::new() };
        let listed = self.list(ino, offset, plus, &mut given);
        let mut st = self.tables();
        for ino in given.given {
            Self::note_given(&mut st, ino);
        }
        Self::trim_names(&mut st);
        self.trim_links(&mut st);
        listed
    }

    /// The listing of directory `ino` from `offset` (see [`Self::readdir`]).
    pub(super) fn list(&self, ino: u64, offset: u64, plus: bool, out: &mut dyn DirReplier) -> Result<(), FsError> {
        let dots = [(1u64, "."), (2u64, "..")];
        for (next, name) in dots {
            if offset < next && out.add(ino, next, Kind::Directory, OsStr::new(name), None) {
                return Ok(());
            }
        }
        if is_view_ino(ino) {
            return self.view_readdir(ino, offset, plus, out);
        }
        if classify(ino) == Node::Flyte2 {
            return self.flyte2_readdir(ino, offset, plus, out);
        }
        if Self::is_key_dir(ino) {
            if offset == 0 {
                self.listing_begins(ino);
            }
            return self.readdir_keys(ino, offset, plus, out);
        }
        match ino {
            ROOT => {
                for (i, entry) in root::ROOT_NAMES.iter().enumerate() {
                    let next = i as u64 + 3;
                    if !entry.listed || !self.root_has(entry) || offset >= next {
                        continue;
                    }
                    let attr = self.dir_attr(entry.ino);
                    if out.add(entry.ino, next, Kind::Directory, OsStr::new(entry.name), plus.then_some(&attr)) {
                        return Ok(());
                    }
                }
                Ok(())
            }
            TAGS_DIR => {
                let c = self.reader()?;
                let mut st = self.state(&c);
                for (i, tag) in Self::visible_tags(&st)?.iter().enumerate() {
                    let next = i as u64 + 3;
                    if offset >= next {
                        continue;
                    }
                    let ino = Self::tag_dir_ino(&mut st, tag);
                    let attr = self.dir_attr(ino);
                    if out.add(ino, next, Kind::Directory, OsStr::new(&Self::tag_name(tag)), plus.then_some(&attr)) {
                        return Ok(());
                    }
                }
                Ok(())
            }
            _ if is_tag_ino(ino) => {
                let tag = Self::tag_of_dir(&self.tables(), ino)
                    .ok_or_else(|| FsError::NotDirectory(format!("inode {ino}")))?;
                let c = self.reader()?;
                // Offsets are the store's cursors plus 2.
                let mut after = offset.saturating_sub(2);
                let mut batches = ListingBatches::new();
                loop {
                    // Read with the tables unlocked; locked once per batch
                    // to name its links.
                    let batch = c.list_tagged(&tag, after, batches.next()).map_err(|e| FsError::cache("tags/", e))?;
                    if batch.is_empty() {
                        return Ok(());
                    }
                    let mut st = self.tables();
                    for (cursor, meta) in &batch {
                        let name = key_to_name(&meta.key);
                        Self::remember_hashed(&mut st, &name, &meta.key);
                        let link = Self::tag_link_ino(&mut st, &tag, &name);
                        let target_len = Self::link_target(&st, &name).len();
                        let attr = self.stored_link_attr(link, target_len, meta.store_time);
                        if out.add(link, cursor + 2, Kind::Symlink, OsStr::new(&name), plus.then_some(&attr)) {
                            return Ok(());
                        }
                        after = *cursor;
                    }
                }
            }
            SETTINGS_DIR => {
                let c = self.reader()?;
                let mut st = self.state(&c);
                let settings = st.cache.read_settings().map_err(|e| FsError::cache("settings/", e))?;
                let names: Vec<String> = settings.values.keys().filter(|n| !is_metadata(n)).cloned().collect();
                for (i, name) in names.iter().enumerate() {
                    let next = i as u64 + 3;
                    if offset >= next {
                        continue;
                    }
                    let ino = Self::setting_ino(&mut st, name);
                    let len = settings.values.get(name).map_or(0, |v| setting_text(v).len());
                    let attr = self.control_attr(ino, len, true);
                    if out.add(ino, next, Kind::File, OsStr::new(name), plus.then_some(&attr)) {
                        return Ok(());
                    }
                }
                Ok(())
            }
            _ => Err(FsError::NotDirectory(format!("inode {ino}"))),
        }
    }
}
