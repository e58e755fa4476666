//! The directories of `keys/` (docs/SEMANTICS.md, "Keys as paths"): what
//! a name in one stands for, listings, `mkdir`, `rmdir` and directory
//! renames. The naming rules themselves are in `paths.rs`.
//!
//! A directory exists while a live str key lies under its prefix, or
//! while it is in `made_dirs`: made by `mkdir`, or kept because a key in
//! it was removed or renamed away through the mount (a directory does not
//! vanish under the user who emptied it), until `rmdir` or unmount.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::ops::Bound;
use std::os::unix::ffi::OsStrExt;

use super::{Attr, DirReplier, DiskCacheFs, FsError, Kind, ListingBatches, State, Tables, bad_name, name_str};
use crate::cache::{EntryMeta, Key, KeyFrom};
use crate::fs::inode::{KEY_DIR_BASE, KEYS_DIR, Node, classify};
use crate::fs::names::key_to_name;
use crate::fs::paths::{
    ChildName, DirPrefix, Hashed, SELF_NAME, digest_of, dir_path, leaf_of, parse_child, part_name, prefix_end,
    self_key, unhashed_name,
};
use crate::fs::version::ContentVersion;

/// What a name in a directory of `keys/` is.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Resolved {
    /// A key's file (the key may not exist).
    Key(Key),
    /// A directory, by its prefix.
    Dir(String),
}

/// Where a listing of a directory resumes.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Pos {
    Start,
    /// After the directory's own key (`%self`).
    AfterSelf,
    /// After this key's row.
    AfterKey(Key),
    /// After everything under this directory prefix.
    AfterDir(String),
}

/// One entry of a listing.
pub(super) enum DirEntry {
    File { name: String, meta: EntryMeta },
    Dir { name: String, prefix: String },
}

/// Readdir offsets: `3 + (cookie << 16) + n` resumes `n` entries after the
/// position the cookie stands for. A cookie is made per READDIR request
/// that starts somewhere new, so a listing holds no state of its own and
/// resumes after any entry (the kernel may stop in the middle of a reply).
/// The oldest are forgotten past `MAX_COOKIES`.
#[derive(Default)]
pub(super) struct DirCookies {
    by_id: HashMap<u64, Cookie>,
    order: VecDeque<u64>,
    next: u64,
}

struct Cookie {
    dir: u64,
    start: Pos,
    /// The last entry a request gave under this cookie, and the position
    /// after it: where the next request almost always resumes, so it need
    /// not list those entries again to find its place.
    last: Option<(u64, Pos)>,
}

const MAX_COOKIES: usize = 1 << 16;
const PER_COOKIE: u64 = 0xFFFF;

impl DirCookies {
    fn make(&mut self, dir: u64, pos: Pos) -> u64 {
        self.next += 1;
        let id = self.next;
        self.by_id.insert(id, Cookie { dir, start: pos, last: None });
        self.order.push_back(id);
        while self.order.len() > MAX_COOKIES {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
        id
    }

    fn set_last(&mut self, id: u64, n: u64, pos: Pos) {
        if let Some(c) = self.by_id.get_mut(&id) {
            c.last = Some((n, pos));
        }
    }

    /// The position and count an offset of directory `dir` stands for.
    fn resume(&self, dir: u64, offset: u64) -> Option<(Pos, u64)> {
        let rel = offset.checked_sub(3)?;
        let cookie = self.by_id.get(&(rel >> 16))?;
        if cookie.dir != dir {
            return None;
        }
        let n = rel & PER_COOKIE;
        match &cookie.last {
            Some((last, pos)) if *last == n => Some((pos.clone(), 0)),
            _ => Some((cookie.start.clone(), n)),
        }
    }
}

/// Whether `key` sorts at or after the str `s` (numbers sort before every
/// str, bytes and pickles after).
fn at_or_after(key: &Key, s: &str) -> bool {
    match key {
        Key::Str(k) => k.as_str() >= s,
        Key::Int(_) | Key::Float(_) => false,
        Key::Bytes(_) | Key::Pickled(_) => true,
    }
}

impl DiskCacheFs {
    pub(super) fn is_key_dir(ino: u64) -> bool {
        ino == KEYS_DIR || classify(ino) == Node::KeyDir
    }

    /// The prefix of a directory of `keys/` (`keys/` itself is empty).
    pub(super) fn key_dir_prefix(st: &Tables, ino: u64) -> Result<String, FsError> {
        if ino == KEYS_DIR {
            return Ok(String::new());
        }
        ino.checked_sub(KEY_DIR_BASE)
            .and_then(|i| st.key_dirs.prefix(i as usize))
            .map(str::to_string)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))
    }

    pub(super) fn key_dir_ino(st: &mut Tables, prefix: &DirPrefix) -> u64 {
        if prefix.is_empty() { KEYS_DIR } else { KEY_DIR_BASE + st.key_dirs.index_of(prefix) as u64 }
    }

    /// Whether the directory `prefix` exists (see the module doc).
    pub(super) fn dir_exists(st: &State, prefix: &DirPrefix) -> Result<bool, FsError> {
        if prefix.is_empty() || Self::made_under(st, prefix, true) {
            return Ok(true);
        }
        let end = prefix_end(prefix);
        st.cache.has_live_str_key_in(prefix, &end).map_err(|e| FsError::cache(format!("keys/{}", dir_path(prefix)), e))
    }

    /// Whether `made_dirs` holds `prefix` (if `itself`) or a directory
    /// below it.
    fn made_under(st: &Tables, prefix: &DirPrefix, itself: bool) -> bool {
        let lower = if itself { Bound::Included(prefix.to_string()) } else { Bound::Excluded(prefix.to_string()) };
        st.made_dirs.range((lower, Bound::Unbounded)).next().is_some_and(|m| m.starts_with(prefix))
    }

    /// Keeps the directory of `key` in place after the key leaves it
    /// through the mount (removed, or renamed elsewhere).
    pub(super) fn keep_dir_of(st: &mut Tables, key: &Key) {
        let (prefix, _) = leaf_of(key);
        if !prefix.is_empty() {
            st.made_dirs.insert(prefix.to_string());
        }
    }

    /// A directory's attributes, while it exists.
    pub(super) fn key_dir_attr(&self, ino: u64) -> Result<Attr, FsError> {
        let c = self.reader()?;
        let st = self.state(&c);
        let prefix = Self::key_dir_prefix(&st, ino)?;
        if !Self::dir_exists(&st, &prefix)? {
            return Err(FsError::NotFound(format!("keys/{}", dir_path(&prefix))));
        }
        Ok(self.dir_attr(ino))
    }

    /// The directory that shows `key`'s file changed (its parent, or the
    /// directory the key itself is, where it is that directory's `%self`).
    pub(super) fn key_dir_changed(&self, st: &mut State, key: &Key) {
        self.key_dir_changed_known(st, key, false)
    }

    /// [`Self::key_dir_changed`]; `no_own_dir`: the caller knows there is
    /// no directory `key/` (its name was just resolved to a key).
    pub(super) fn key_dir_changed_known(&self, st: &mut State, key: &Key, no_own_dir: bool) {
        let own = match key {
            Key::Str(s) if !no_own_dir => Some(format!("{s}/")),
            _ => None,
        };
        let prefix = match own {
            Some(own) if Self::dir_exists(st, &own).unwrap_or(false) => own,
            _ => leaf_of(key).0.to_string(),
        };
        let ino = Self::key_dir_ino(st, &prefix);
        self.dir_changed(ino);
    }

    /// What the name `name` in the directory `prefix` stands for.
    pub(super) fn resolve_child(&self, st: &mut State, prefix: &DirPrefix, name: &OsStr) -> Result<Resolved, FsError> {
        let child = parse_child(name.as_bytes(), prefix).map_err(|e| bad_name(name, e))?;
        let part = match child {
            ChildName::SelfKey => return Ok(Resolved::Key(self_key(prefix).unwrap_or(Key::Str(String::new())))),
            ChildName::Flat(key) => return Ok(Resolved::Key(key)),
            ChildName::Part(part) => part,
            ChildName::Hashed(digest) => match self.find_hashed(st, prefix, &digest)? {
                Some(Hashed::Part(part)) => part,
                Some(Hashed::Flat(key)) => return Ok(Resolved::Key(key)),
                None => return Err(FsError::NotFound(format!("keys/{}{}", dir_path(prefix), name_str(name)))),
            },
        };
        let dir = format!("{prefix}{part}/");
        if Self::dir_exists(st, &dir)? {
            return Ok(Resolved::Dir(dir));
        }
        Ok(Resolved::Key(Key::Str(format!("{prefix}{part}"))))
    }

    /// The part or key a `%sha256:` name in `prefix` stands for: known
    /// from a listing, else found by listing the directory once.
    fn find_hashed(&self, st: &mut State, prefix: &DirPrefix, digest: &[u8; 32]) -> Result<Option<Hashed>, FsError> {
        if let Some(h) = st.hashed_parts.get(digest) {
            return Ok(Some(h.clone()));
        }
        let mut pos = Pos::Start;
        loop {
            let batch = Self::list_children(st, prefix, &pos, 1024)?;
            let Some((_, last)) = batch.last() else { return Ok(None) };
            pos = last.clone();
            if let Some(found) = st.hashed_parts.get(digest) {
                return Ok(Some(found.clone()));
            }
        }
    }

    /// Remembers what a `%sha256:` name shown in a listing stands for.
    fn remember_hashed_child(st: &mut Tables, name: &str, child: Hashed) {
        if name.starts_with(crate::fs::names::HASHED_PREFIX) {
            let digest = digest_of(&unhashed_name(&child));
            st.hashed_parts.entry(digest).or_insert(child);
        }
    }

    /// The first directory `made_dirs` adds to `prefix`'s listing after
    /// `pos`: the child of `prefix` that holds it.
    fn next_made_child(st: &Tables, prefix: &DirPrefix, pos: &Pos) -> Option<String> {
        let lower = match pos {
            Pos::Start | Pos::AfterSelf => Bound::Excluded(prefix.to_string()),
            Pos::AfterKey(Key::Str(k)) => Bound::Excluded(k.clone()),
            Pos::AfterKey(Key::Int(_) | Key::Float(_)) => Bound::Excluded(prefix.to_string()),
            Pos::AfterKey(_) => return None,
            Pos::AfterDir(d) => Bound::Included(prefix_end(d)),
        };
        let made = st.made_dirs.range((lower, Bound::Unbounded)).next()?;
        let rest = made.strip_prefix(prefix)?;
        let part = &rest[..rest.find('/')?];
        Some(format!("{prefix}{part}/"))
    }

    /// Up to `limit` entries of the directory `prefix` after `pos`, each
    /// with the position after it, in the cache's order of keys: the
    /// directory's own key first, then each key's file or the directory
    /// holding it (once: a listing skips over a directory's keys in one
    /// query), with the directories of `made_dirs` in their place.
    pub(super) fn list_children(
        st: &mut State,
        prefix: &DirPrefix,
        pos: &Pos,
        limit: usize,
    ) -> Result<Vec<(DirEntry, Pos)>, FsError> {
        let err = |e| FsError::cache(format!("listing keys/{}", dir_path(prefix)), e);
        let mut out = Vec::new();
        let mut pos = pos.clone();
        if let (Some(own), Pos::Start) = (self_key(prefix), &pos) {
            pos = Pos::AfterSelf;
            if let Some(meta) = st.cache.entry_meta(&own).map_err(err)? {
                out.push((DirEntry::File { name: SELF_NAME.into(), meta }, Pos::AfterSelf));
            }
        }
        let below = (!prefix.is_empty()).then(|| prefix_end(prefix));
        // Rows are read in batches that grow while they are all files, and
        // start small again after a directory, whose keys are skipped by
        // the next query (reading a big batch there would read its keys).
        let mut batches = ListingBatches::new();
        'batches: while out.len() < limit {
            let from = match &pos {
                Pos::Start if prefix.is_empty() => KeyFrom::Start,
                Pos::Start | Pos::AfterSelf => KeyFrom::AtOrAfter(prefix.to_string()),
                Pos::AfterKey(k) => KeyFrom::After(k.clone()),
                Pos::AfterDir(d) => KeyFrom::AtOrAfter(prefix_end(d)),
            };
            let n = batches.next().min(limit - out.len() + 1);
            let batch = st.cache.list_meta_by_key(&from, below.as_deref(), n).map_err(err)?;
            let made = Self::next_made_child(st, prefix, &pos);
            if batch.is_empty() {
                let Some(dir) = made else { break };
                Self::push_dir(st, &mut out, prefix, dir.clone());
                pos = Pos::AfterDir(dir);
                continue;
            }
            for (i, meta) in batch.iter().enumerate() {
                if let Some(dir) = &made
                    && at_or_after(&meta.key, dir)
                {
                    Self::push_dir(st, &mut out, prefix, dir.clone());
                    pos = Pos::AfterDir(dir.clone());
                    batches = ListingBatches::small();
                    continue 'batches;
                }
                let Key::Str(s) = &meta.key else {
                    let name = key_to_name(&meta.key);
                    Self::remember_hashed_child(st, &name, Hashed::Flat(meta.key.clone()));
                    pos = Pos::AfterKey(meta.key.clone());
                    out.push((DirEntry::File { name, meta: meta.clone() }, pos.clone()));
                    if out.len() >= limit {
                        break 'batches;
                    }
                    continue;
                };
                let rest = &s[prefix.len()..];
                if let Some(j) = rest.find('/') {
                    let dir = format!("{prefix}{}", &rest[..=j]);
                    Self::push_dir(st, &mut out, prefix, dir.clone());
                    pos = Pos::AfterDir(dir);
                    batches = ListingBatches::small();
                    continue 'batches;
                }
                // A key that is also a directory is that directory's %self.
                let own = format!("{s}/");
                let own_end = prefix_end(&own);
                let collides = Self::made_under(st, &own, true)
                    || match batch[i + 1..].iter().find(|m| at_or_after(&m.key, &own)) {
                        Some(next) => !at_or_after(&next.key, &own_end),
                        None => st.cache.has_live_str_key_in(&own, &own_end).map_err(err)?,
                    };
                pos = Pos::AfterKey(meta.key.clone());
                if !collides {
                    let name = part_name(rest);
                    Self::remember_hashed_child(st, &name, Hashed::Part(rest.to_string()));
                    out.push((DirEntry::File { name, meta: meta.clone() }, pos.clone()));
                    if out.len() >= limit {
                        break 'batches;
                    }
                }
            }
            if batch.len() < n && made.is_none() {
                break;
            }
        }
        Ok(out)
    }

    fn push_dir(st: &mut Tables, out: &mut Vec<(DirEntry, Pos)>, prefix: &DirPrefix, dir: String) {
        let part = &dir[prefix.len()..dir.len() - 1];
        let name = part_name(part);
        Self::remember_hashed_child(st, &name, Hashed::Part(part.to_string()));
        out.push((DirEntry::Dir { name, prefix: dir.clone() }, Pos::AfterDir(dir)));
    }

    /// Lists a directory of `keys/` from `offset` (past `.` and `..`).
    pub(super) fn readdir_keys(
        &self,
        ino: u64,
        offset: u64,
        plus: bool,
        out: &mut dyn DirReplier,
    ) -> Result<(), FsError> {
        let c = self.reader()?;
        let (prefix, mut pos, mut skip) = {
            let st = self.tables();
            let prefix = Self::key_dir_prefix(&st, ino)?;
            if offset <= 2 {
                (prefix, Pos::Start, 0)
            } else {
                match st.dir_cookies.resume(ino, offset) {
                    Some((pos, skip)) => (prefix, pos, skip),
                    None => {
                        log::warn!("keys/{}: a listing resumed at an offset it never gave", dir_path(&prefix));
                        return Err(FsError::InvalidValue {
                            what: format!("readdir keys/{}", dir_path(&prefix)),
                            reason: "stale directory offset".into(),
                        });
                    }
                }
            }
        };
        let mut cookie: Option<(u64, u64)> = None;
        // A reply holds a few dozen entries (4 KiB): ask for about that
        // many first, and more while they all fit.
        let mut want = 32;
        loop {
            let mut st = self.state(&c);
            let entries = Self::list_children(&mut st, &prefix, &pos, want + skip as usize)?;
            want = (want * 2).min(1024);
            if entries.is_empty() {
                if let Some((id, n)) = cookie {
                    st.dir_cookies.set_last(id, n, pos);
                }
                return Ok(());
            }
            for (entry, after) in entries {
                if skip > 0 {
                    skip -= 1;
                    pos = after;
                    continue;
                }
                let (id, n) = match cookie {
                    Some((id, n)) if n < PER_COOKIE => (id, n + 1),
                    _ => (st.dir_cookies.make(ino, pos.clone()), 1),
                };
                cookie = Some((id, n));
                let next = 3 + (id << 16) + n;
                if self.add_key_entry(&mut st, entry, next, plus, out) {
                    if n > 1 {
                        st.dir_cookies.set_last(id, n - 1, pos);
                    }
                    return Ok(());
                }
                pos = after;
            }
        }
    }

    /// Adds one entry to a reply; true when the reply is full.
    fn add_key_entry(&self, st: &mut State, entry: DirEntry, next: u64, plus: bool, out: &mut dyn DirReplier) -> bool {
        match entry {
            DirEntry::Dir { name, prefix } => {
                let ino = Self::key_dir_ino(st, &prefix);
                let attr = self.dir_attr(ino);
                out.add(ino, next, Kind::Directory, OsStr::new(&name), plus.then_some(&attr))
            }
            DirEntry::File { name, meta } => {
                let flat = key_to_name(&meta.key);
                Self::remember_hashed(st, &flat, &meta.key);
                if !plus {
                    // d_ino is informational; a known inode's number when
                    // there is one, else one outside our range.
                    let ino = st.inodes.by_name(&flat).unwrap_or(u64::MAX / 2 + meta.rowid as u64);
                    return out.add(ino, next, Kind::File, OsStr::new(&name), None);
                }
                let len = Self::entry_len(st.cache, &meta);
                let mut ino = st.inodes.ensure(&flat, &meta.key);
                if Self::note_version(st, ino, ContentVersion::of(&meta, len)).is_some() {
                    ino = st.inodes.ensure(&flat, &meta.key);
                }
                let attr = self.file_attr(ino, len, meta.store_time, meta.access_time);
                if out.add(ino, next, Kind::File, OsStr::new(&name), Some(&attr)) {
                    st.inodes.drop_if_unused(ino);
                    return true;
                }
                st.inodes.looked_up(ino);
                if let Some(inode) = st.inodes.get_mut(ino) {
                    inode.kernel_version = Some(ContentVersion::of(&meta, len));
                }
                self.trim_inodes(st);
                false
            }
        }
    }

    /// lookup in a directory of `keys/`.
    pub(super) fn lookup_in_keys(&self, st: &mut State, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let prefix = Self::key_dir_prefix(st, parent)?;
        let key = match self.resolve_child(st, &prefix, name) {
            Ok(Resolved::Key(k)) => k,
            Ok(Resolved::Dir(dir)) => {
                let ino = Self::key_dir_ino(st, &dir);
                return Ok(self.dir_attr(ino));
            }
            // A name that cannot be a key's does not exist.
            Err(FsError::InvalidName { .. }) => {
                return Err(FsError::NotFound(format!("keys/{}{}", dir_path(&prefix), name_str(name))));
            }
            Err(e) => return Err(e),
        };
        let meta = st.cache.entry_meta(&key).map_err(|e| FsError::cache(format!("keys/{}", key_to_name(&key)), e))?;
        let row = meta.map(|m| {
            let len = Self::entry_len(st.cache, &m);
            (m, len)
        });
        self.give_key(st, &key, row)
    }

    /// LOOKUP in a directory of `keys/`, its SQL and value-file `stat` run
    /// with the tables unlocked: they are locked to read the directory's
    /// prefix, and again to give the inode. (A `%sha256:` name, which may
    /// need a listing to resolve, goes the way of [`Self::lookup_in_keys`].)
    /// The row read is the entry as of this request, as any LOOKUP's is.
    pub(super) fn lookup_in_keys_unlocked(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let c = self.reader()?;
        let pass = self.watch_passes.load(std::sync::atomic::Ordering::Acquire);
        let (prefix, child, made) = {
            let st = self.tables();
            let prefix = Self::key_dir_prefix(&st, parent)?;
            let child = parse_child(name.as_bytes(), &prefix);
            let made = match &child {
                Ok(ChildName::Part(part)) => Self::made_under(&st, &format!("{prefix}{part}/"), true),
                _ => false,
            };
            (prefix, child, made)
        };
        let key = match child {
            Ok(ChildName::Part(part)) => {
                let dir = format!("{prefix}{part}/");
                let what = || format!("keys/{}", dir_path(&dir));
                let live = || c.has_live_str_key_in(&dir, &prefix_end(&dir)).map_err(|e| FsError::cache(what(), e));
                if made || live()? {
                    let mut st = self.tables();
                    // As for a key below: a watcher pass since, re-read.
                    let passed = self.watch_passes.load(std::sync::atomic::Ordering::Acquire) != pass;
                    if !passed || made || live()? {
                        let ino = Self::key_dir_ino(&mut st, &dir);
                        drop(st);
                        return Ok(self.dir_attr(ino));
                    }
                }
                Key::Str(format!("{prefix}{part}"))
            }
            Ok(ChildName::SelfKey) => self_key(&prefix).unwrap_or(Key::Str(String::new())),
            Ok(ChildName::Flat(key)) => key,
            Ok(ChildName::Hashed(_)) | Err(_) => {
                let mut st = self.state(&c);
                return self.lookup_in_keys(&mut st, parent, name);
            }
        };
        let what = || format!("keys/{}", key_to_name(&key));
        let meta = c.entry_meta(&key).map_err(|e| FsError::cache(what(), e))?;
        let mut row = meta.map(|m| {
            let len = Self::entry_len(&c, &m);
            (m, len)
        });
        let mut st = self.state(&c);
        if self.watch_passes.load(std::sync::atomic::Ordering::Acquire) != pass {
            // The change watcher compared the kernel's keys meanwhile,
            // without this one: the row read may be older than its pass.
            row = st.cache.entry_meta(&key).map_err(|e| FsError::cache(what(), e))?.map(|m| {
                let len = Self::entry_len(st.cache, &m);
                (m, len)
            });
        }
        self.give_key(&mut st, &key, row)
    }

    /// The reply of a LOOKUP that found `key` (its `row` as read): its
    /// inode, counted as given to the kernel.
    fn give_key(&self, st: &mut State, key: &Key, row: Option<(EntryMeta, u64)>) -> Result<Attr, FsError> {
        let name = key_to_name(key);
        let known = st.inodes.by_name(&name);
        let pending = known.and_then(|ino| st.inodes.get(ino)).is_some_and(|i| i.pending_create);
        if row.is_none() && !pending {
            return Err(FsError::NotFound(format!("keys/{}", crate::fs::paths::key_path(key))));
        }
        let mut ino = st.inodes.ensure(&name, key);
        let mut attr = self.key_attr_with(st, ino, Some(row.clone()))?;
        if st.inodes.get(ino).is_some_and(|i| i.superseded.is_some()) {
            // Its readers keep the old inode; the name gets a new one.
            ino = st.inodes.ensure(&name, key);
            attr = self.key_attr_with(st, ino, Some(row))?;
        }
        st.inodes.looked_up(ino);
        self.trim_inodes(st);
        Ok(attr)
    }

    /// The key a new file named `name` in the directory `parent` of
    /// `keys/` is stored under: an error when the name is a directory's
    /// or cannot name a new key.
    pub(super) fn new_key_for(&self, st: &mut State, parent: u64, name: &OsStr) -> Result<Key, FsError> {
        let prefix = Self::key_dir_prefix(st, parent)?;
        if matches!(parse_child(name.as_bytes(), &prefix), Ok(ChildName::Hashed(_))) {
            return Err(FsError::InvalidName {
                name: name_str(name),
                reason: "a %sha256: name can only name an existing key".into(),
            });
        }
        match self.resolve_child(st, &prefix, name)? {
            Resolved::Key(k) => Ok(k),
            Resolved::Dir(dir) => Err(FsError::IsDirectory(format!("keys/{}", dir_path(&dir)))),
        }
    }

    /// mkdir in `keys/`: a directory that holds no key yet.
    pub(super) fn mkdir_in_keys(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let c = self.reader()?;
        let mut st = self.state(&c);
        let prefix = Self::key_dir_prefix(&st, parent)?;
        let part = match parse_child(name.as_bytes(), &prefix).map_err(|e| bad_name(name, e))? {
            ChildName::Part(p) => p,
            _ => {
                return Err(FsError::InvalidName {
                    name: name_str(name),
                    reason: "a directory is a part of str keys: %self, %sha256: and non-str names are files".into(),
                });
            }
        };
        let dir = format!("{prefix}{part}/");
        let key = Key::Str(format!("{prefix}{part}"));
        let pending = st.inodes.is_pending_create(&key_to_name(&key));
        let is_file = pending || st.cache.entry_meta(&key).map_err(|e| FsError::cache(name_str(name), e))?.is_some();
        if is_file || Self::dir_exists(&st, &dir)? {
            return Err(FsError::Exists(format!("keys/{}", dir_path(&dir))));
        }
        st.made_dirs.insert(dir.clone());
        let ino = Self::key_dir_ino(&mut st, &dir);
        Ok(self.dir_attr(ino))
    }

    /// Makes `name` in the directory `parent` of `keys/` a directory of
    /// this daemon's even where a key has that name (the key is then its
    /// `%self`): how a tree over several caches shows a key named like a
    /// directory whose keys are in other caches.
    pub fn keep_dir(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let c = self.reader()?;
        let mut st = self.state(&c);
        let prefix = Self::key_dir_prefix(&st, parent)?;
        let Ok(ChildName::Part(part)) = parse_child(name.as_bytes(), &prefix) else {
            return Err(FsError::InvalidName { name: name_str(name), reason: "not a directory's name".into() });
        };
        let dir = format!("{prefix}{part}/");
        st.made_dirs.insert(dir.clone());
        self.dir_changed(parent);
        let ino = Self::key_dir_ino(&mut st, &dir);
        Ok(self.dir_attr(ino))
    }

    /// rmdir in `keys/`: an empty directory (no key under it, no `%self`,
    /// no directory made in it).
    pub(super) fn rmdir_in_keys(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        let c = self.reader()?;
        let mut st = self.state(&c);
        let prefix = Self::key_dir_prefix(&st, parent)?;
        let dir = match self.resolve_child(&mut st, &prefix, name) {
            Ok(Resolved::Dir(dir)) => dir,
            Ok(Resolved::Key(key)) => {
                let what = format!("keys/{}", crate::fs::paths::key_path(&key));
                return if st.cache.entry_meta(&key).map_err(|e| FsError::cache(&what, e))?.is_some() {
                    Err(FsError::NotDirectory(what))
                } else {
                    Err(FsError::NotFound(what))
                };
            }
            Err(FsError::InvalidName { .. }) => return Err(FsError::NotFound(name_str(name))),
            Err(e) => return Err(e),
        };
        Self::check_empty(&st, &dir)?;
        st.made_dirs.remove(&dir);
        self.dir_changed(parent);
        // Its parent stays (rm -r removes it next).
        if let Some(own) = self_key(&dir) {
            Self::keep_dir_of(&mut st, &own);
        }
        Ok(())
    }

    /// ENOTEMPTY unless the directory `dir` holds nothing.
    fn check_empty(st: &State, dir: &DirPrefix) -> Result<(), FsError> {
        let what = || format!("keys/{}", dir_path(dir));
        let own = self_key(dir).unwrap_or(Key::Str(String::new()));
        let has_self = st.cache.entry_meta(&own).map_err(|e| FsError::cache(what(), e))?.is_some()
            || st.inodes.is_pending_create(&key_to_name(&own));
        let has_keys = st.cache.has_live_str_key_in(dir, &prefix_end(dir)).map_err(|e| FsError::cache(what(), e))?;
        let pending_under =
            st.inodes.iter().any(|(_, i)| i.pending_create && matches!(&i.key, Key::Str(s) if s.starts_with(dir)));
        if has_self || has_keys || pending_under || Self::made_under(st, dir, false) {
            return Err(FsError::NotEmpty(what()));
        }
        Ok(())
    }

    /// Renames the directory `old` to `new` (both prefixes) in the caller's
    /// transaction: every key under it and its own key, the directories
    /// made in it, and the inodes the kernel holds, all at once.
    pub(super) fn rename_dir(&self, st: &mut State, old: &str, new: &str, no_replace: bool) -> Result<(), FsError> {
        let what = || format!("keys/{}", dir_path(old));
        if old == new {
            return Ok(());
        }
        if new.starts_with(old) {
            return Err(FsError::InvalidValue { what: what(), reason: "a directory cannot move into itself".into() });
        }
        let new_own = self_key(new).unwrap_or(Key::Str(String::new()));
        if st.cache.entry_meta(&new_own).map_err(|e| FsError::cache(what(), e))?.is_some()
            && !Self::dir_exists(st, new)?
        {
            return Err(FsError::NotDirectory(format!("keys/{}", dir_path(new))));
        }
        if Self::dir_exists(st, new)? {
            if no_replace {
                return Err(FsError::Exists(format!("keys/{}", dir_path(new))));
            }
            Self::check_empty(st, new)?;
            st.made_dirs.remove(new);
        }
        // Every live key under `old`, and its own key.
        let mut moving: Vec<Key> = Vec::new();
        let end = prefix_end(old);
        let mut from = KeyFrom::AtOrAfter(old.to_string());
        loop {
            let batch = st.cache.list_meta_by_key(&from, Some(&end), 4096).map_err(|e| FsError::cache(what(), e))?;
            let Some(last) = batch.last() else { break };
            from = KeyFrom::After(last.key.clone());
            moving.extend(batch.into_iter().map(|m| m.key));
        }
        let old_own = self_key(old).unwrap_or(Key::Str(String::new()));
        if st.cache.entry_meta(&old_own).map_err(|e| FsError::cache(what(), e))?.is_some() {
            moving.push(old_own.clone());
        }
        let renamed = |key: &Key| -> Option<Key> {
            match key {
                Key::Str(s) if s.starts_with(old) => Some(Key::Str(format!("{new}{}", &s[old.len()..]))),
                k if *k == old_own => Some(new_own.clone()),
                _ => None,
            }
        };
        for key in &moving {
            let Some(target) = renamed(key) else { continue };
            match st.cache.rename(key, &target, false).map_err(|e| FsError::cache(what(), e))? {
                crate::cache::RenameOutcome::Renamed => {}
                _ => return Err(FsError::Exists(format!("keys/{}", crate::fs::paths::key_path(&target)))),
            }
        }
        // The tables follow: inodes (also of files not committed yet),
        // tags waiting for their key, made directories, directory inodes.
        let inodes: Vec<(u64, Key)> = st
            .inodes
            .iter()
            .filter(|(_, i)| !i.unlinked)
            .filter_map(|(ino, i)| renamed(&i.key).map(|k| (ino, k)))
            .collect();
        for (ino, key) in inodes {
            let old_name = st.inodes.get(ino).map(|i| i.name.clone()).unwrap_or_default();
            let new_name = key_to_name(&key);
            st.inodes.unlink_name(&new_name);
            st.inodes.rename(ino, &new_name, &key);
            if let Some(tag) = st.pending_tags.remove(&old_name) {
                st.pending_tags.insert(new_name, tag);
            }
        }
        let made: Vec<String> = st.made_dirs.iter().filter(|m| m.starts_with(old)).cloned().collect();
        for m in made {
            st.made_dirs.remove(&m);
            st.made_dirs.insert(format!("{new}{}", &m[old.len()..]));
        }
        st.made_dirs.insert(new.to_string());
        Self::keep_dir_of(st, &old_own);
        st.key_dirs.rename(old, new);
        for own in [&old_own, &new_own] {
            let (parent, _) = leaf_of(own);
            self.dir_changed(Self::key_dir_ino(st, parent));
        }
        Ok(())
    }
}
