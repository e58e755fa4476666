//! The file system's semantics (docs/SEMANTICS.md), as plain methods that
//! return `Result<_, FsError>`. Nothing here knows fuser: `fuse.rs` only
//! translates requests to these calls and results to replies.
//!
//! All state (the cache handle, inodes, open files) sits behind one mutex;
//! requests are served one at a time, in arrival order.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cache::Scalar;
use crate::cache::settings::MODE_RAW;
use crate::cache::{Attr as Keep, Cache, EntryMeta, Key, NewValue, RawContent, RenameOutcome, ValueType};
use crate::fs::content::{content_len, convert, inline_bytes};
use crate::fs::control::{is_metadata, parse_setting, setting_text, stats_json};
use crate::fs::error::FsError;
use crate::fs::handle::{Handle, ReadView, Snapshot, Staging, WriteHandle};
use crate::fs::inode::{
    ContentVersion, FIRST_KEY_INODE, FIRST_SETTING, InodeTable, KEYS_DIR, OPS_DIR, QUEUES_DIR, ROOT, SETTINGS_DIR,
    STATS, TAG_DIR_BASE, TAGS_DIR, TASK_DIR, is_tag_ino, is_view_ino,
};
use crate::fs::names::{NAME_MAX, NameError, ParsedName, key_to_name, matches_hash, name_to_key};

/// Names in the root reserved for views (docs/SEMANTICS.md, "The tree").
pub const RESERVED_ROOT_NAMES: [&str; 6] = ["tags", "queues", "task", "settings", "stats", "ops"];

mod tags;
mod views;
mod xattrs;
use views::ViewTable;

/// How the tree behaves; built by the CLI (which owns clap).
#[derive(Clone, Debug)]
pub struct FsConfig {
    pub read_only: bool,
    /// How long the kernel may trust names and attributes (peer changes
    /// show within this time).
    pub ttl: Duration,
    pub uid: u32,
    pub gid: u32,
    /// Most key inodes kept: past it, the kernel is asked to forget the
    /// oldest unused ones (an inode must live while the kernel holds it).
    pub max_inodes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File,
    Symlink,
}

/// A file's attributes, as `stat` shows them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

/// How the kernel should treat an opened file's pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenFlags {
    /// The kernel's cached pages are of this very content: keep them.
    pub keep_cache: bool,
    /// The kernel's idea of the size may be stale: bypass the page cache.
    pub direct_io: bool,
    /// Closing needs no FLUSH (a reader).
    pub no_flush: bool,
}

/// Receives directory entries; returns true when full (stop adding).
pub trait DirReplier {
    fn add(&mut self, ino: u64, next_offset: u64, kind: Kind, name: &OsStr, attr: Option<&Attr>) -> bool;
}

/// A `statfs` answer.
#[derive(Clone, Copy, Debug)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

struct State {
    cache: Cache,
    inodes: InodeTable,
    /// Setting names by inode (`FIRST_SETTING + index`).
    setting_inos: Vec<String>,
    /// Tags by `tags/T/` inode (`TAG_DIR_BASE + index`).
    tag_dirs: Vec<Scalar>,
    /// Tag directories made by mkdir that no entry carries yet.
    made_tags: Vec<Scalar>,
    /// (tag index, key name) by `tags/T/NAME` inode (`TAG_LINK_BASE + index`).
    tag_links: Vec<(usize, String)>,
    /// Tag links made before their key exists (rsync creates links before
    /// files): (key name, tag), applied when the key is committed or
    /// renamed into place.
    pending_tags: Vec<(String, Scalar)>,
    /// queues/, task/ and ops/ (views.rs).
    views: ViewTable,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
}

pub struct DiskCacheFs {
    config: FsConfig,
    /// Where names to forget go (a thread sends the notifications).
    forget_requests: Mutex<Option<std::sync::mpsc::Sender<String>>>,
    directory: PathBuf,
    state: Mutex<State>,
}

/// Rounds a time to the microsecond, so that it survives the round trip
/// through a REAL column and back unchanged (rsync compares mtimes).
fn system_time(t: f64) -> SystemTime {
    let micros = (t * 1e6).round();
    if micros.is_finite() && micros >= 0.0 { UNIX_EPOCH + Duration::from_micros(micros as u64) } else { UNIX_EPOCH }
}

fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Inodes of keys' files (not fixed files, settings, or tag inodes).
fn is_key_ino(ino: u64) -> bool {
    (FIRST_KEY_INODE..TAG_DIR_BASE).contains(&ino)
}

fn name_str(name: &OsStr) -> String {
    String::from_utf8_lossy(name.as_bytes()).into_owned()
}

impl DiskCacheFs {
    pub fn new(cache: Cache, config: FsConfig) -> DiskCacheFs {
        DiskCacheFs {
            forget_requests: Mutex::new(None),
            directory: cache.directory().to_path_buf(),
            config,
            state: Mutex::new(State {
                cache,
                inodes: InodeTable::new(),
                setting_inos: Vec::new(),
                tag_dirs: Vec::new(),
                made_tags: Vec::new(),
                tag_links: Vec::new(),
                pending_tags: Vec::new(),
                views: ViewTable::default(),
                handles: HashMap::new(),
                next_fh: 1,
            }),
        }
    }

    pub fn set_forget_requests(&self, tx: std::sync::mpsc::Sender<String>) {
        *self.forget_requests.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    /// Keeps the key inode table near `max_inodes`: asks the kernel to
    /// forget the oldest inodes nobody has open (their `forget` then
    /// removes them). Bounded work per call.
    fn trim_inodes(&self, st: &mut State) {
        if st.inodes.len() <= self.config.max_inodes {
            return;
        }
        let tx = self.forget_requests.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(tx) = tx else { return };
        let excess = (st.inodes.len() - self.config.max_inodes).min(256);
        for name in st.inodes.forget_candidates(excess) {
            let _ = tx.send(name);
        }
    }

    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    pub fn cache_directory(&self) -> &Path {
        &self.directory
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; the state is still
        // usable (every change is applied before the next may fail).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dir_attr(&self, ino: u64) -> Attr {
        let now = SystemTime::now();
        Attr {
            ino,
            kind: Kind::Directory,
            size: 0,
            perm: if self.config.read_only { 0o555 } else { 0o755 },
            nlink: 2,
            uid: self.config.uid,
            gid: self.config.gid,
            atime: now,
            mtime: now,
            ctime: now,
        }
    }

    fn file_attr(&self, ino: u64, size: u64, store_time: f64, access_time: f64) -> Attr {
        Attr {
            ino,
            kind: Kind::File,
            size,
            perm: if self.config.read_only { 0o444 } else { 0o644 },
            nlink: 1,
            uid: self.config.uid,
            gid: self.config.gid,
            atime: system_time(access_time),
            mtime: system_time(store_time),
            ctime: system_time(store_time),
        }
    }

    fn check_writable(&self, what: &str) -> Result<(), FsError> {
        if self.config.read_only { Err(FsError::ReadOnly(what.to_string())) } else { Ok(()) }
    }

    // -----------------------------------------------------------------------
    // `stats` and `settings/` (docs/SEMANTICS.md, "Stats and settings").

    fn control_attr(&self, ino: u64, len: usize, writable: bool) -> Attr {
        let mut attr = self.file_attr(ino, len as u64, 0.0, 0.0);
        let now = SystemTime::now();
        (attr.atime, attr.mtime, attr.ctime) = (now, now, now);
        attr.perm = if writable && !self.config.read_only { 0o644 } else { 0o444 };
        attr
    }

    fn stats_bytes(st: &State) -> Result<Vec<u8>, FsError> {
        let stats = stats_json(&st.cache).map_err(|e| FsError::cache("stats", e))?;
        let mut text = serde_json::to_vec_pretty(&stats).unwrap_or_default();
        text.push(b'\n');
        Ok(text)
    }

    /// A setting's file content, `None` when there is no such setting.
    fn setting_bytes(st: &State, name: &str) -> Result<Option<Vec<u8>>, FsError> {
        if is_metadata(name) {
            return Ok(None);
        }
        let settings = st.cache.read_settings().map_err(|e| FsError::cache(format!("settings/{name}"), e))?;
        Ok(settings.values.get(name).map(setting_text))
    }

    fn setting_ino(st: &mut State, name: &str) -> u64 {
        let index = match st.setting_inos.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                st.setting_inos.push(name.to_string());
                st.setting_inos.len() - 1
            }
        };
        FIRST_SETTING + index as u64
    }

    fn setting_name(st: &State, ino: u64) -> Option<String> {
        if !(FIRST_SETTING..FIRST_KEY_INODE).contains(&ino) {
            return None;
        }
        st.setting_inos.get((ino - FIRST_SETTING) as usize).cloned()
    }

    /// Attributes of `stats` or a setting's file.
    fn control_getattr(&self, st: &State, ino: u64) -> Result<Attr, FsError> {
        if ino == STATS {
            return Ok(self.control_attr(ino, Self::stats_bytes(st)?.len(), false));
        }
        let name = Self::setting_name(st, ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        let text = Self::setting_bytes(st, &name)?.ok_or_else(|| FsError::NotFound(format!("settings/{name}")))?;
        Ok(self.control_attr(ino, text.len(), true))
    }

    /// Applies what was written to a setting's file: `reset(name, value)`.
    /// Nothing written (only white space) changes nothing: a shell's
    /// `echo V > settings/NAME` closes the file once before writing to it.
    fn apply_setting(&self, st: &State, name: &str, text: &[u8]) -> Result<(), FsError> {
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let what = format!("settings/{name}");
        let value = parse_setting(text).map_err(|reason| FsError::InvalidValue { what: what.clone(), reason })?;
        match (name, &value) {
            // The tag index is the setting and the index itself: writing
            // 1 or 0 is create_tag_index() or drop_tag_index().
            ("tag_index", Scalar::Int(1)) => st.cache.create_tag_index(),
            ("tag_index", Scalar::Int(0)) => st.cache.drop_tag_index(),
            ("tag_index", _) => {
                return Err(FsError::InvalidValue { what, reason: "tag_index is 0 or 1".into() });
            }
            _ => st.cache.reset(name, Some(value.clone())).map(drop),
        }
        .map_err(|e| FsError::cache(what, e))?;
        Ok(())
    }

    /// A complete line written to a setting's file is checked at once, so
    /// that the write itself fails (errors at close are often ignored).
    fn check_setting_line(st: &State, name: &str, text: &[u8]) -> Result<(), FsError> {
        if !text.ends_with(b"\n") || text.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let what = format!("settings/{name}");
        let value = parse_setting(text).map_err(|reason| FsError::InvalidValue { what: what.clone(), reason })?;
        st.cache.check_setting(name, &value).map_err(|e| FsError::cache(what, e))
    }

    // -----------------------------------------------------------------------
    // Names and attributes.

    /// Parses a name in `keys/` to its key (a `%sha256:` name is looked up).
    fn resolve_name(&self, st: &State, name: &OsStr) -> Result<Key, FsError> {
        match name_to_key(name.as_bytes()) {
            Ok(ParsedName::Key(k)) => Ok(k),
            Ok(ParsedName::Hashed(digest)) => {
                let mut after = 0;
                loop {
                    let batch = st.cache.list_meta(after, 1000).map_err(|e| FsError::cache("listing keys", e))?;
                    let Some(last) = batch.last() else { break };
                    after = last.rowid;
                    if let Some(m) = batch.iter().find(|m| matches_hash(&m.key, &digest)) {
                        return Ok(m.key.clone());
                    }
                }
                Err(FsError::NotFound(format!("keys/{}", name_str(name))))
            }
            Err(NameError::TooLong) => Err(FsError::NameTooLong(format!("keys/{}", name_str(name)))),
            Err(NameError::Invalid(reason)) => Err(FsError::InvalidName { name: name_str(name), reason }),
        }
    }

    /// The attributes of a key inode, from the cache or its open writer.
    fn key_attr(&self, st: &mut State, ino: u64) -> Result<Attr, FsError> {
        let inode = st.inodes.get(ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        if let Some(view) = inode.superseded {
            return Ok(self.file_attr(ino, view.len, view.store_time, view.access_time));
        }
        let key = inode.key.clone();
        let name = inode.name.clone();
        let pending_create = inode.pending_create;
        let unlinked = inode.unlinked;
        let staged = Self::writer_of(st, ino).and_then(|w| w.staging.as_ref().map(|s| (s.len(), w.dirty)));
        let meta = if unlinked {
            None
        } else {
            st.cache.entry_meta(&key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?
        };
        let now = st.cache.now();
        let attr = match (meta, staged) {
            (_, Some((len, true))) => {
                // A dirty writer: its copy is what this file is now.
                let (store, access) = st.inodes.get(ino).and_then(|i| i.pending.times).unwrap_or((None, None));
                self.file_attr(ino, len, store.unwrap_or(now), access.unwrap_or(now))
            }
            (Some(meta), _) => {
                let len = Self::entry_len(&st.cache, &meta);
                if let Some(view) = Self::note_version(st, ino, ContentVersion::of(&meta, len)) {
                    return Ok(self.file_attr(ino, view.len, view.store_time, view.access_time));
                }
                self.file_attr(ino, len, meta.store_time, meta.access_time)
            }
            (None, Some((len, false))) if pending_create || unlinked => self.file_attr(ino, len, now, now),
            (None, None) if pending_create => self.file_attr(ino, 0, now, now),
            (None, _) => {
                // Deleted while open: like an unlinked file, it still stats
                // for its readers (fstat), with their snapshot's size.
                let view = st.handles.values().find_map(|h| match h {
                    Handle::Read { ino: i, view: Some(v), .. } if *i == ino => Some(*v),
                    _ => None,
                });
                match view {
                    Some(v) => self.file_attr(ino, v.len, v.store_time, v.access_time),
                    None => return Err(FsError::NotFound(format!("keys/{name}"))),
                }
            }
        };
        Ok(attr)
    }

    /// Records that the kernel is about to get `version`'s size for `ino`.
    /// If the kernel holds another version's size and pages and readers of
    /// that version still have the file open, the inode is superseded
    /// instead (it keeps their version; the name gets a new inode) and
    /// their view is returned: a reader sees its whole snapshot.
    fn note_version(st: &mut State, ino: u64, version: ContentVersion) -> Option<ReadView> {
        let held = st.inodes.get(ino)?.kernel_version;
        if let Some(held) = held
            && held != version
        {
            let readers_view = st.handles.values().find_map(|h| match h {
                Handle::Read { ino: i, view: Some(v), .. } if *i == ino && v.version == held => Some(*v),
                _ => None,
            });
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
    fn entry_len(cache: &Cache, meta: &EntryMeta) -> u64 {
        match (&meta.filename, meta.mode) {
            (Some(name), m) if m != MODE_RAW => cache.disk().file_size(name).ok().flatten().unwrap_or(0),
            _ => content_len(meta),
        }
    }

    fn writer_of(st: &State, ino: u64) -> Option<&WriteHandle> {
        st.handles.values().find_map(|h| match h {
            Handle::Write(w) if w.ino == ino && w.dirty => Some(w),
            _ => None,
        })
    }

    fn has_dirty_writer(st: &State, ino: u64) -> bool {
        Self::writer_of(st, ino).is_some()
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong(name_str(name)));
        }
        if is_view_ino(parent) {
            return self.view_lookup(parent, name);
        }
        let mut st = self.lock();
        match parent {
            ROOT if name == "keys" => Ok(self.dir_attr(KEYS_DIR)),
            ROOT if name == "queues" => Ok(self.dir_attr(QUEUES_DIR)),
            ROOT if name == "task" => Ok(self.dir_attr(TASK_DIR)),
            ROOT if name == "ops" => Ok(self.dir_attr(OPS_DIR)),
            ROOT if name == "settings" => Ok(self.dir_attr(SETTINGS_DIR)),
            ROOT if name == "stats" => self.control_getattr(&st, STATS),
            ROOT if name == "tags" => Ok(self.dir_attr(TAGS_DIR)),
            TAGS_DIR => {
                let tag =
                    Self::find_tag(&st, name)?.ok_or_else(|| FsError::NotFound(format!("tags/{}", name_str(name))))?;
                let ino = Self::tag_dir_ino(&mut st, &tag);
                Ok(self.dir_attr(ino))
            }
            _ if is_tag_ino(parent) => {
                let tag =
                    Self::tag_of_dir(&st, parent).ok_or_else(|| FsError::NotDirectory(format!("inode {parent}")))?;
                let ino = Self::tag_link_ino(&mut st, &tag, &name_str(name));
                self.tag_getattr(&st, ino)
            }
            ROOT => Err(FsError::NotFound(name_str(name))),
            SETTINGS_DIR => {
                let text = name.to_str().map(|n| Self::setting_bytes(&st, n)).transpose()?.flatten();
                let text = text.ok_or_else(|| FsError::NotFound(format!("settings/{}", name_str(name))))?;
                let ino = Self::setting_ino(&mut st, &name_str(name));
                Ok(self.control_attr(ino, text.len(), true))
            }
            KEYS_DIR => {
                let key = match self.resolve_name(&st, name) {
                    Ok(k) => k,
                    // A name that cannot be a key's does not exist.
                    Err(FsError::InvalidName { .. }) => {
                        return Err(FsError::NotFound(format!("keys/{}", name_str(name))));
                    }
                    Err(e) => return Err(e),
                };
                let name = key_to_name(&key);
                let known = st.inodes.by_name(&name);
                let exists =
                    st.cache.entry_meta(&key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?.is_some();
                let pending = known.and_then(|ino| st.inodes.get(ino)).is_some_and(|i| i.pending_create);
                if !exists && !pending {
                    return Err(FsError::NotFound(format!("keys/{name}")));
                }
                let mut ino = st.inodes.ensure(&name, &key);
                let mut attr = self.key_attr(&mut st, ino)?;
                if st.inodes.get(ino).is_some_and(|i| i.superseded.is_some()) {
                    // Its readers keep the old inode; the name gets a new one.
                    ino = st.inodes.ensure(&name, &key);
                    attr = self.key_attr(&mut st, ino)?;
                }
                if let Some(inode) = st.inodes.get_mut(ino) {
                    inode.nlookup += 1;
                    inode.forget_requested = false;
                }
                self.trim_inodes(&mut st);
                Ok(attr)
            }
            _ => Err(FsError::NotDirectory(format!("inode {parent}"))),
        }
    }

    pub fn forget(&self, ino: u64, nlookup: u64) {
        self.lock().inodes.forget(ino, nlookup);
    }

    /// `getattr`. (`fstat` sends no file handle, so a reader's snapshot
    /// size comes from its inode: see `note_version`.)
    pub fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        if is_view_ino(ino) {
            return self.view_getattr(ino);
        }
        match ino {
            ROOT | KEYS_DIR | SETTINGS_DIR | TAGS_DIR => Ok(self.dir_attr(ino)),
            _ if is_tag_ino(ino) => {
                let st = self.lock();
                self.tag_getattr(&st, ino)
            }
            _ if ino < FIRST_KEY_INODE => {
                let st = self.lock();
                self.control_getattr(&st, ino)
            }
            _ => {
                let mut st = self.lock();
                self.key_attr(&mut st, ino)
            }
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
        if is_view_ino(ino) {
            // Times and modes of view files and links are not kept (rsync
            // sets them after a restore); sizes do not apply.
            return self.view_getattr(ino);
        }
        if is_tag_ino(ino) {
            // Tag directories and links: times and modes are not kept.
            let st = self.lock();
            if size.is_some() {
                return Err(FsError::NotPermitted("tags: no size to change".into()));
            }
            if let Some((_, name)) = Self::link_of(&st, ino) {
                return Ok(self.link_attr(ino, &name));
            }
            return self.tag_getattr(&st, ino);
        }
        if ino == ROOT || ino == KEYS_DIR || ino == SETTINGS_DIR || ino == TAGS_DIR {
            if size.is_some() {
                return Err(FsError::IsDirectory(format!("inode {ino}")));
            }
            return Ok(self.dir_attr(ino));
        }
        if ino < FIRST_KEY_INODE {
            // stats and settings: times are ignored; a setting being written
            // may be truncated through its open handle.
            let mut st = self.lock();
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
        let mut st = self.lock();
        let (key, name) = {
            let inode = st.inodes.get(ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
            (inode.key.clone(), inode.name.clone())
        };
        if let Some(size) = size {
            self.check_writable(&format!("keys/{name}"))?;
            let spill = self.spill_size(&st);
            let disk_dir = st.cache.directory().to_path_buf();
            match fh.and_then(|fh| match st.handles.get(&fh) {
                Some(Handle::Write(_)) => Some(fh),
                _ => None,
            }) {
                Some(fh) => {
                    let State { cache, handles, .. } = &mut *st;
                    let Some(Handle::Write(w)) = handles.get_mut(&fh) else { unreachable!("checked above") };
                    Self::materialize(cache, w).map_err(|e| FsError::io(format!("keys/{name}"), e))?;
                    let staging = w.staging.as_mut().expect("materialized");
                    staging.truncate(cache.disk(), size, spill).map_err(|e| FsError::io(format!("keys/{name}"), e))?;
                    w.dirty = true;
                }
                None => {
                    // truncate(1) on a path: a one-shot writer, committed now.
                    let base = Self::snapshot(&st.cache, &key, &name)?;
                    let mut w = WriteHandle { ino, append: false, base: Some(base), staging: None, dirty: true };
                    let result = (|| {
                        Self::materialize(&st.cache, &mut w).map_err(|e| FsError::io(format!("keys/{name}"), e))?;
                        let staging = w.staging.as_mut().expect("materialized");
                        staging
                            .truncate(st.cache.disk(), size, spill)
                            .map_err(|e| FsError::io(format!("keys/{name}"), e))?;
                        self.commit(&mut st, &mut w)
                    })();
                    if let Some(staging) = w.staging.take() {
                        staging.discard(st.cache.disk());
                    }
                    result?;
                }
            }
            let _ = disk_dir;
        }
        if atime.is_some() || mtime.is_some() {
            self.check_writable(&format!("keys/{name}"))?;
            let store = mtime.map(unix_seconds);
            let access = atime.map(unix_seconds);
            let pending = st.inodes.get(ino).is_some_and(|i| i.pending_create) || Self::has_dirty_writer(&st, ino);
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
                let len = Self::entry_len(&st.cache, &after);
                Self::retime_version(&mut st, ino, ContentVersion::of(&before, len), ContentVersion::of(&after, len));
            }
        }
        self.key_attr(&mut st, ino)
    }

    /// Renames a content version after a change of times alone.
    fn retime_version(st: &mut State, ino: u64, old: ContentVersion, new: ContentVersion) {
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

    // -----------------------------------------------------------------------
    // Directories.

    /// Lists a directory from `offset` (0 at the start). Offsets: 1 after
    /// `.`, 2 after `..`, then each key's rowid + 2, so a listing resumes
    /// where it stopped without holding any state between calls.
    pub fn readdir(&self, ino: u64, offset: u64, plus: bool, out: &mut dyn DirReplier) -> Result<(), FsError> {
        let dots = [(1u64, "."), (2u64, "..")];
        for (next, name) in dots {
            if offset < next && out.add(ino, next, Kind::Directory, OsStr::new(name), None) {
                return Ok(());
            }
        }
        if is_view_ino(ino) {
            return self.view_readdir(ino, offset, plus, out);
        }
        match ino {
            ROOT => {
                for (next, ino, name) in
                    [(3, KEYS_DIR, "keys"), (4, TAGS_DIR, "tags"), (5, QUEUES_DIR, "queues"), (6, TASK_DIR, "task")]
                {
                    let attr = self.dir_attr(ino);
                    if offset < next && out.add(ino, next, Kind::Directory, OsStr::new(name), plus.then_some(&attr)) {
                        return Ok(());
                    }
                }
                Ok(())
            }
            TAGS_DIR => {
                let mut st = self.lock();
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
                let mut st = self.lock();
                let tag = Self::tag_of_dir(&st, ino).ok_or_else(|| FsError::NotDirectory(format!("inode {ino}")))?;
                let mut after = offset.saturating_sub(2) as i64;
                loop {
                    let batch = st.cache.list_tagged(&tag, after, 256).map_err(|e| FsError::cache("tags/", e))?;
                    if batch.is_empty() {
                        return Ok(());
                    }
                    for meta in &batch {
                        let name = key_to_name(&meta.key);
                        let link = Self::tag_link_ino(&mut st, &tag, &name);
                        let attr = self.link_attr(link, &name);
                        if out.add(link, meta.rowid as u64 + 2, Kind::Symlink, OsStr::new(&name), plus.then_some(&attr))
                        {
                            return Ok(());
                        }
                        after = meta.rowid;
                    }
                }
            }
            SETTINGS_DIR => {
                let mut st = self.lock();
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
            KEYS_DIR => {
                let mut after = offset.saturating_sub(2) as i64;
                loop {
                    let mut st = self.lock();
                    let batch = st.cache.list_meta(after, 256).map_err(|e| FsError::cache("listing keys/", e))?;
                    if batch.is_empty() {
                        return Ok(());
                    }
                    for meta in &batch {
                        let name = key_to_name(&meta.key);
                        let next = meta.rowid as u64 + 2;
                        if plus {
                            let len = Self::entry_len(&st.cache, meta);
                            let mut ino = st.inodes.ensure(&name, &meta.key);
                            if Self::note_version(&mut st, ino, ContentVersion::of(meta, len)).is_some() {
                                ino = st.inodes.ensure(&name, &meta.key);
                            }
                            let attr = self.file_attr(ino, len, meta.store_time, meta.access_time);
                            if out.add(ino, next, Kind::File, OsStr::new(&name), Some(&attr)) {
                                st.inodes.drop_if_unused(ino);
                                return Ok(());
                            }
                            if let Some(inode) = st.inodes.get_mut(ino) {
                                inode.nlookup += 1;
                                inode.kernel_version = Some(ContentVersion::of(meta, len));
                            }
                            self.trim_inodes(&mut st);
                        } else {
                            // d_ino is informational; a known inode's number
                            // when there is one, else one outside our range.
                            let ino = st.inodes.by_name(&name).unwrap_or(u64::MAX / 2 + meta.rowid as u64);
                            if out.add(ino, next, Kind::File, OsStr::new(&name), None) {
                                return Ok(());
                            }
                        }
                        after = meta.rowid;
                    }
                }
            }
            _ => Err(FsError::NotDirectory(format!("inode {ino}"))),
        }
    }

    /// mkdir: only `tags/T` (an empty tag directory, kept in memory until
    /// an entry gets the tag); everywhere else the tree is fixed.
    pub fn mkdir(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        self.check_writable(&name_str(name))?;
        if is_view_ino(parent) {
            // Every queue and task directory exists already.
            self.view_lookup(parent, name)?;
            return Err(FsError::Exists(name_str(name)));
        }
        if parent != TAGS_DIR {
            return Err(FsError::NotPermitted(format!("mkdir {}: the tree's directories are fixed", name_str(name))));
        }
        let tag = Self::parse_tag_name(name)?;
        let mut st = self.lock();
        if Self::visible_tags(&st)?.contains(&tag) {
            return Err(FsError::Exists(format!("tags/{}", name_str(name))));
        }
        st.made_tags.push(tag.clone());
        let ino = Self::tag_dir_ino(&mut st, &tag);
        Ok(self.dir_attr(ino))
    }

    /// rmdir: only `tags/T`, which is `evict(T)` (`rm -r tags/T` removes its
    /// entries one by one first; whatever is left is evicted).
    pub fn rmdir(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        self.check_writable(&name_str(name))?;
        if is_view_ino(parent) {
            return self.view_rmdir(parent, name);
        }
        if parent != TAGS_DIR {
            return Err(FsError::NotPermitted(format!("rmdir {}: the tree's directories are fixed", name_str(name))));
        }
        let mut st = self.lock();
        // A directory this daemon has shown may have been emptied already
        // (rm -r removes the entries first): removing it still succeeds.
        let known = Self::parse_tag_name(name).ok().filter(|t| st.tag_dirs.contains(t));
        let tag = match Self::find_tag(&st, name)? {
            Some(tag) => tag,
            None => known.ok_or_else(|| FsError::NotFound(format!("tags/{}", name_str(name))))?,
        };
        st.cache.evict(&tag).map_err(|e| FsError::cache(format!("tags/{}", name_str(name)), e))?;
        st.made_tags.retain(|t| *t != tag);
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Opening, reading, writing.

    fn snapshot(cache: &Cache, key: &Key, name: &str) -> Result<Snapshot, FsError> {
        match cache.open_raw(key).map_err(|e| FsError::cache(format!("keys/{name}"), e))? {
            Some((_, RawContent::File(f))) => Ok(Snapshot::File(f)),
            Some((_, RawContent::Inline(v))) => Ok(Snapshot::Inline(inline_bytes(&v))),
            Some((_, RawContent::Null)) => Ok(Snapshot::Inline(Vec::new())),
            None => Err(FsError::NotFound(format!("keys/{name}"))),
        }
    }

    /// Writers keep their copy in memory below this size (diskcache's
    /// `disk_min_file_size`, below which a bytes value is stored inline).
    fn spill_size(&self, st: &State) -> u64 {
        st.cache.min_file_size().max(1) as u64
    }

    fn new_handle(st: &mut State, handle: Handle) -> u64 {
        let fh = st.next_fh;
        st.next_fh += 1;
        let ino = handle.ino();
        if let Some(inode) = st.inodes.get_mut(ino) {
            inode.open_handles += 1;
        }
        st.handles.insert(fh, handle);
        fh
    }

    /// Opens a key's file. `write`: opened for writing; `truncate`: O_TRUNC;
    /// `append`: O_APPEND.
    pub fn open(&self, ino: u64, write: bool, truncate: bool, append: bool) -> Result<(u64, OpenFlags), FsError> {
        if is_view_ino(ino) {
            return self.view_open(ino, write);
        }
        if ino == ROOT || ino == KEYS_DIR || ino == SETTINGS_DIR {
            if write {
                return Err(FsError::IsDirectory(format!("inode {ino}")));
            }
            return Ok((0, OpenFlags::default()));
        }
        let mut st = self.lock();
        if ino < FIRST_KEY_INODE {
            // The content is made at open; its size may differ from the
            // kernel's idea of it, so reads bypass the page cache.
            let flags = OpenFlags { direct_io: true, ..OpenFlags::default() };
            if ino == STATS {
                if write {
                    return Err(FsError::AccessDenied("stats".into()));
                }
                let text = Self::stats_bytes(&st)?;
                return Ok((
                    Self::new_handle(&mut st, Handle::Read { ino, snapshot: Snapshot::Inline(text), view: None }),
                    flags,
                ));
            }
            let name = Self::setting_name(&st, ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
            let current =
                Self::setting_bytes(&st, &name)?.ok_or_else(|| FsError::NotFound(format!("settings/{name}")))?;
            if !write {
                return Ok((
                    Self::new_handle(&mut st, Handle::Read { ino, snapshot: Snapshot::Inline(current), view: None }),
                    flags,
                ));
            }
            self.check_writable(&format!("settings/{name}"))?;
            let text = if truncate { Vec::new() } else { current };
            let handle = Handle::Setting { ino, name, text, dirty: truncate };
            return Ok((Self::new_handle(&mut st, handle), flags));
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
                let fh =
                    Self::new_handle(&mut st, Handle::Read { ino, snapshot: Snapshot::Inline(Vec::new()), view: None });
                return Ok((fh, OpenFlags { direct_io: true, no_flush: true, ..OpenFlags::default() }));
            }
            let (meta, content) = st
                .cache
                .open_raw(&key)
                .map_err(|e| FsError::cache(format!("keys/{name}"), e))?
                .ok_or_else(|| FsError::Stale(format!("keys/{name}")))?;
            let len = match &content {
                // The file's own length: the size column is not trusted.
                RawContent::File(f) => f.metadata().map_err(|e| FsError::io(format!("keys/{name}"), e))?.len(),
                _ => content_len(&meta),
            };
            let version = ContentVersion::of(&meta, len);
            let snapshot = match content {
                RawContent::File(f) => Snapshot::File(f),
                RawContent::Inline(v) => Snapshot::Inline(inline_bytes(&v)),
                RawContent::Null => Snapshot::Inline(Vec::new()),
            };
            // If the kernel's size for this file is of another version (a
            // peer changed it within the attribute timeout), bypass the page
            // cache for this open so the reader gets the whole new value.
            let current = kernel_version == Some(version);
            let flags = OpenFlags { keep_cache: current, direct_io: !current, no_flush: true };
            let view = ReadView { version, len, store_time: meta.store_time, access_time: meta.access_time };
            let fh = Self::new_handle(&mut st, Handle::Read { ino, snapshot, view: Some(view) });
            return Ok((fh, flags));
        }
        self.check_writable(&format!("keys/{name}"))?;
        let mut handle = WriteHandle { ino, append, base: None, staging: None, dirty: false };
        if truncate {
            handle.staging = Some(Staging::Memory(Vec::new()));
            handle.dirty = true;
        } else if !pending_create {
            // The entry went away (a peer deleted it) while the kernel still
            // had the name: ESTALE makes it look the name up again, so
            // `open(O_CREAT)` creates the key anew and a plain open is ENOENT.
            let base = match Self::snapshot(&st.cache, &key, &name) {
                Err(FsError::NotFound(what)) => return Err(FsError::Stale(what)),
                other => other?,
            };
            handle.base = Some(base);
        } else {
            handle.staging = Some(Staging::Memory(Vec::new()));
        }
        let fh = Self::new_handle(&mut st, Handle::Write(handle));
        Ok((fh, OpenFlags::default()))
    }

    /// mknod of a regular file: a new empty entry (EEXIST if the key
    /// exists), committed at once, as create-then-close would.
    pub fn mknod_regular(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        let (_, fh, _) = self.create(parent, name, true, true, false)?;
        let committed = self.flush(fh);
        let released = self.release(fh);
        committed.and(released)?;
        let mut st = self.lock();
        let ino = st
            .inodes
            .by_name(&key_to_name(&self.resolve_name(&st, name)?))
            .ok_or_else(|| FsError::NotFound(name_str(name)))?;
        self.key_attr(&mut st, ino)
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
            return self.view_create(parent, name, exclusive);
        }
        // A file created in tags/T/ is a key created with tag T.
        let new_tag = if is_tag_ino(parent) {
            let st = self.lock();
            Some(Self::tag_of_dir(&st, parent).ok_or_else(|| FsError::NotDirectory(format!("inode {parent}")))?)
        } else {
            None
        };
        let parent = if new_tag.is_some() { KEYS_DIR } else { parent };
        if parent != KEYS_DIR {
            if parent == ROOT || parent == SETTINGS_DIR || parent == TAGS_DIR {
                self.check_writable(&name_str(name))?;
                return Err(FsError::NotPermitted(format!("{}: only keys/ holds new files", name_str(name))));
            }
            return Err(FsError::NotDirectory(format!("inode {parent}")));
        }
        self.check_writable(&format!("keys/{}", name_str(name)))?;
        let mut st = self.lock();
        let key = match self.resolve_name(&st, name)? {
            k if matches!(name_to_key(name.as_bytes()), Ok(ParsedName::Hashed(_))) => {
                let _ = k;
                return Err(FsError::InvalidName {
                    name: name_str(name),
                    reason: "a %sha256: name can only name an existing key".into(),
                });
            }
            k => k,
        };
        let name = key_to_name(&key);
        let exists = st.cache.entry_meta(&key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?.is_some();
        let known = st.inodes.by_name(&name);
        let pending = known.and_then(|i| st.inodes.get(i)).is_some_and(|i| i.pending_create);
        if exclusive && (exists || pending) {
            return Err(FsError::Exists(format!("keys/{name}")));
        }
        let ino = st.inodes.ensure(&name, &key);
        if let Some(inode) = st.inodes.get_mut(ino) {
            inode.nlookup += 1;
            if !exists {
                inode.pending_create = true;
                inode.unlinked = false;
            }
            if let Some(tag) = &new_tag {
                inode.pending.tag = Some(Some(tag.clone()));
            }
        }
        let mut handle = WriteHandle { ino, append, base: None, staging: None, dirty: false };
        if exists && !truncate {
            handle.base = Some(Self::snapshot(&st.cache, &key, &name)?);
        } else {
            handle.staging = Some(Staging::Memory(Vec::new()));
            handle.dirty = true;
        }
        let fh = Self::new_handle(&mut st, Handle::Write(handle));
        let attr = self.key_attr(&mut st, ino)?;
        Ok((attr, fh, OpenFlags::default()))
    }

    /// Copies a writer's base content into its staging copy (first change).
    fn materialize(cache: &Cache, w: &mut WriteHandle) -> std::io::Result<()> {
        if w.staging.is_some() {
            return Ok(());
        }
        let spill = cache.min_file_size().max(1) as u64;
        let mut staging = Staging::Memory(Vec::new());
        match w.base.take() {
            Some(Snapshot::Inline(data)) if !data.is_empty() => {
                staging.write_at(cache.disk(), 0, &data, spill)?;
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
                    staging.write_at(cache.disk(), offset, &data, spill)?;
                    offset += data.len() as u64;
                }
            }
            Some(Snapshot::Inline(_)) | None => {}
        }
        w.staging = Some(staging);
        Ok(())
    }

    pub fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
        let mut st = self.lock();
        if matches!(st.handles.get(&fh), Some(Handle::Push { .. } | Handle::Resolve(_) | Handle::Op { .. })) {
            return self.view_read(&mut st, fh, offset, size);
        }
        let what = || format!("inode {ino}");
        match st.handles.get(&fh) {
            Some(Handle::Read { snapshot, .. }) => {
                snapshot.read_at(offset, size as usize).map_err(|e| FsError::io(what(), e))
            }
            Some(Handle::Setting { text, .. }) => {
                Snapshot::Inline(text.clone()).read_at(offset, size as usize).map_err(|e| FsError::io(what(), e))
            }
            Some(Handle::Write(w)) => match (&w.staging, &w.base) {
                (Some(staging), _) => staging.read_at(offset, size as usize).map_err(|e| FsError::io(what(), e)),
                (None, Some(base)) => base.read_at(offset, size as usize).map_err(|e| FsError::io(what(), e)),
                (None, None) => Ok(Vec::new()),
            },
            Some(_) | None => Err(FsError::BadHandle(fh)),
        }
    }

    pub fn write(&self, ino: u64, fh: u64, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        let mut st = self.lock();
        if matches!(st.handles.get(&fh), Some(Handle::Push { .. } | Handle::Resolve(_) | Handle::Op { .. })) {
            return self.view_write(&mut st, fh, offset, data);
        }
        let spill = self.spill_size(&st);
        if let Some(Handle::Setting { name, text, .. }) = st.handles.get(&fh) {
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
            return Ok(data.len());
        }
        let State { cache, handles, .. } = &mut *st;
        let Some(Handle::Write(w)) = handles.get_mut(&fh) else {
            return Err(FsError::BadHandle(fh));
        };
        let what = || format!("inode {ino}");
        Self::materialize(cache, w).map_err(|e| FsError::io(what(), e))?;
        let staging = w.staging.as_mut().expect("materialized");
        let offset = if w.append { staging.len() } else { offset };
        staging.write_at(cache.disk(), offset, data, spill).map_err(|e| FsError::io(what(), e))?;
        w.dirty = true;
        Ok(data.len())
    }

    /// FLUSH (each close of a writer) and fsync: commit if changed.
    pub fn flush(&self, fh: u64) -> Result<(), FsError> {
        let mut st = self.lock();
        match st.handles.get(&fh) {
            Some(Handle::Push { .. }) => return self.view_flush(&mut st, fh, false),
            Some(Handle::Resolve(_) | Handle::Op { .. }) => return Ok(()),
            _ => {}
        }
        if let Some(Handle::Setting { name, text, dirty, .. }) = st.handles.get(&fh)
            && *dirty
        {
            let (name, text) = (name.clone(), text.clone());
            self.apply_setting(&st, &name, &text)?;
            if let Some(Handle::Setting { dirty, .. }) = st.handles.get_mut(&fh) {
                *dirty = false;
            }
            return Ok(());
        }
        let Some(Handle::Write(mut w)) = st.handles.remove(&fh) else {
            return Ok(()); // readers have nothing to flush
        };
        let result = if w.dirty { self.commit(&mut st, &mut w) } else { Ok(()) };
        st.handles.insert(fh, Handle::Write(w));
        result
    }

    pub fn release(&self, fh: u64) -> Result<(), FsError> {
        let mut st = self.lock();
        if matches!(st.handles.get(&fh), Some(Handle::Push { .. } | Handle::Resolve(_) | Handle::Op { .. })) {
            let result = self.view_flush(&mut st, fh, true);
            st.handles.remove(&fh);
            return result;
        }
        let Some(handle) = st.handles.remove(&fh) else { return Ok(()) };
        let (ino, result) = match handle {
            Handle::Read { ino, .. } => (ino, Ok(())),
            // Handled by the views above.
            other @ (Handle::Push { .. } | Handle::Resolve(_) | Handle::Op { .. }) => (other.ino(), Ok(())),
            Handle::Setting { ino, name, text, dirty } => {
                (ino, if dirty { self.apply_setting(&st, &name, &text) } else { Ok(()) })
            }
            Handle::Write(mut w) => {
                let result = if w.dirty { self.commit(&mut st, &mut w) } else { Ok(()) };
                if let Some(staging) = w.staging.take() {
                    staging.discard(st.cache.disk());
                }
                (w.ino, result)
            }
        };
        if let Some(inode) = st.inodes.get_mut(ino) {
            inode.open_handles = inode.open_handles.saturating_sub(1);
            if inode.open_handles == 0 && inode.pending_create {
                // Closed without a successful commit: it never existed.
                inode.pending_create = false;
            }
        }
        st.inodes.drop_if_unused(ino);
        result
    }

    /// Commits a writer's copy as the entry's new value, atomically, with
    /// the attributes set while it was open (else the entry's own).
    fn commit(&self, st: &mut State, w: &mut WriteHandle) -> Result<(), FsError> {
        let (key, name, unlinked, pending) = {
            let inode = st.inodes.get(w.ino).ok_or_else(|| FsError::NotFound(format!("inode {}", w.ino)))?;
            (inode.key.clone(), inode.name.clone(), inode.unlinked, inode.pending.clone())
        };
        if unlinked {
            // Writes to an unlinked file vanish with it.
            w.dirty = false;
            return Ok(());
        }
        let what = format!("keys/{name}");
        Self::materialize(&st.cache, w).map_err(|e| FsError::io(what.clone(), e))?;
        let value_type = pending.value_type.unwrap_or(ValueType::Bytes);
        let spill = self.spill_size(st);
        let staging = w.staging.as_mut().expect("materialized");
        // A previous commit of this copy failed after the engine removed
        // its file: commit a fresh copy, never a row pointing at nothing.
        staging.detach(st.cache.disk()).map_err(|e| FsError::io(what.clone(), e))?;
        let invalid =
            |reason: String| FsError::InvalidValue { what: format!("{what} as {}", value_type.name()), reason };
        let new_value = match staging {
            Staging::File { len, .. }
                if *len >= spill && matches!(value_type, ValueType::Bytes | ValueType::Pickle) =>
            {
                // The staging file becomes the value file: no copy.
                let size = *len;
                let filename = staging.link(st.cache.disk()).map_err(|e| FsError::io(what.clone(), e))?;
                if let Staging::File { committed, .. } = staging {
                    *committed = true;
                }
                NewValue::File { filename, size, value_type }
            }
            _ => {
                let data = staging.read_at(0, staging.len() as usize).map_err(|e| FsError::io(what.clone(), e))?;
                NewValue::Value(convert(data, value_type).map_err(invalid)?)
            }
        };
        let expire = pending.expire_time.map_or(Keep::Keep, Keep::Set);
        let tag = pending.tag.clone().map_or(Keep::Keep, Keep::Set);
        st.cache.replace_value(&key, new_value, expire, tag).map_err(|e| FsError::cache(what.clone(), e))?;
        if let Some((store, access)) = pending.times {
            st.cache.set_times(&key, store, access).map_err(|e| FsError::cache(what.clone(), e))?;
        }
        Self::apply_pending_tag(st, &name, &key)?;
        w.dirty = false;
        if let Some(inode) = st.inodes.get_mut(w.ino) {
            inode.pending_create = false;
            inode.pending = Default::default();
        }
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Namespace changes.

    pub fn unlink(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        if is_view_ino(parent) {
            return self.view_unlink(parent, name);
        }
        if is_tag_ino(parent) {
            // Removing an entry from tags/T/ evicts it (rm -r tags/T is evict(T)).
            self.check_writable(&name_str(name))?;
            let st = self.lock();
            let tag = Self::tag_of_dir(&st, parent).ok_or_else(|| FsError::NotDirectory(format!("inode {parent}")))?;
            let key = self.resolve_name(&st, name)?;
            let meta = st.cache.entry_meta(&key).map_err(|e| FsError::cache(name_str(name), e))?;
            if meta.and_then(|m| m.tag) != Some(tag) {
                return Err(FsError::NotFound(format!("tags/.../{}", name_str(name))));
            }
            drop(st);
            return self.unlink(KEYS_DIR, name);
        }
        if parent != KEYS_DIR {
            self.check_writable(&name_str(name))?;
            return Err(FsError::NotPermitted(format!("{}: only keys in keys/ can be removed", name_str(name))));
        }
        self.check_writable(&format!("keys/{}", name_str(name)))?;
        let mut st = self.lock();
        let key = match self.resolve_name(&st, name) {
            Err(FsError::InvalidName { .. }) => return Err(FsError::NotFound(format!("keys/{}", name_str(name)))),
            other => other?,
        };
        let name = key_to_name(&key);
        let deleted = st.cache.delete(&key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?;
        let pending = st.inodes.by_name(&name).and_then(|i| st.inodes.get(i)).is_some_and(|i| i.pending_create);
        if !deleted && !pending {
            return Err(FsError::NotFound(format!("keys/{name}")));
        }
        st.inodes.unlink_name(&name);
        Ok(())
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
        exchange: bool,
    ) -> Result<(), FsError> {
        self.check_writable(&name_str(name))?;
        if exchange {
            return Err(FsError::InvalidValue {
                what: format!("rename {}", name_str(name)),
                reason: "RENAME_EXCHANGE is not supported".into(),
            });
        }
        if is_view_ino(parent) {
            return self.view_rename(parent, name, new_parent, new_name, no_replace);
        }
        if is_view_ino(new_parent) {
            // mv falls back to copy and delete: a copy into queues/P/ pushes.
            return Err(FsError::CrossDevice(name_str(name)));
        }
        if parent == KEYS_DIR && is_tag_ino(new_parent) {
            // mv keys/X tags/T/[Y]: tag the entry T (renaming it to Y first);
            // it stays in keys/.
            let tag = {
                let st = self.lock();
                Self::tag_of_dir(&st, new_parent).ok_or_else(|| FsError::NotDirectory(format!("inode {new_parent}")))?
            };
            if name != new_name {
                self.rename(KEYS_DIR, name, KEYS_DIR, new_name, no_replace, false)?;
            }
            let st = self.lock();
            let key = self.resolve_name(&st, new_name)?;
            if !st.cache.set_tag(&key, Some(&tag)).map_err(|e| FsError::cache(name_str(new_name), e))? {
                return Err(FsError::NotFound(format!("keys/{}", name_str(new_name))));
            }
            return Ok(());
        }
        if parent != KEYS_DIR || new_parent != KEYS_DIR {
            if parent == KEYS_DIR || new_parent == KEYS_DIR {
                return Err(FsError::CrossDevice(name_str(name)));
            }
            return Err(FsError::NotPermitted(format!("rename {}", name_str(name))));
        }
        let mut st = self.lock();
        let old_key = match self.resolve_name(&st, name) {
            Err(FsError::InvalidName { .. }) => return Err(FsError::NotFound(format!("keys/{}", name_str(name)))),
            other => other?,
        };
        let intended = st.inodes.by_name(&key_to_name(&old_key)).and_then(|i| st.inodes.get(i)?.intended_key.clone());
        let new_key = match name_to_key(new_name.as_bytes()) {
            Ok(ParsedName::Key(k)) => k,
            // A long key's name: the key user.diskcache.key gave the file
            // (how a backup restores it), else the existing key.
            Ok(ParsedName::Hashed(digest)) => match intended {
                Some(k) if matches_hash(&k, &digest) => k,
                _ => self.resolve_name(&st, new_name)?,
            },
            Err(NameError::TooLong) => return Err(FsError::NameTooLong(name_str(new_name))),
            Err(NameError::Invalid(reason)) => return Err(FsError::InvalidName { name: name_str(new_name), reason }),
        };
        let old_name = key_to_name(&old_key);
        let new_name = key_to_name(&new_key);
        if old_name == new_name {
            // A rename onto itself: nothing to do, if there is something.
            let pending = st.inodes.by_name(&old_name).and_then(|i| st.inodes.get(i)).is_some_and(|i| i.pending_create);
            let exists = st.cache.entry_meta(&old_key).map_err(|e| FsError::cache(format!("keys/{old_name}"), e))?;
            return if exists.is_some() || pending {
                Ok(())
            } else {
                Err(FsError::NotFound(format!("keys/{old_name}")))
            };
        }
        let source_ino = st.inodes.by_name(&old_name);
        let source_pending = source_ino.and_then(|i| st.inodes.get(i)).is_some_and(|i| i.pending_create);
        let target_pending =
            st.inodes.by_name(&new_name).and_then(|i| st.inodes.get(i)).is_some_and(|i| i.pending_create);
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
        if !source_pending {
            Self::apply_pending_tag(&mut st, &new_name, &new_key)?;
        }
        Ok(())
    }

    pub fn statfs(&self) -> Result<StatFs, FsError> {
        let c = std::ffi::CString::new(self.directory.as_os_str().as_bytes())
            .map_err(|_| FsError::NotFound(self.directory.display().to_string()))?;
        // SAFETY: c is NUL-terminated; buf is written by statvfs.
        let mut buf: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut buf) } != 0 {
            return Err(FsError::io(self.directory.display().to_string(), std::io::Error::last_os_error()));
        }
        Ok(StatFs {
            blocks: buf.f_blocks,
            bfree: buf.f_bfree,
            bavail: buf.f_bavail,
            files: buf.f_files,
            ffree: buf.f_ffree,
            bsize: buf.f_bsize as u32,
            namelen: NAME_MAX as u32,
            frsize: buf.f_frsize as u32,
        })
    }

    /// How many inodes the kernel is holding (for tests and logs).
    pub fn inode_count(&self) -> usize {
        self.lock().inodes.len()
    }

    /// The root's reserved names (creating them is refused).
    pub fn is_reserved(name: &OsStr) -> bool {
        RESERVED_ROOT_NAMES.iter().any(|r| OsStr::new(r) == name) || name == "keys"
    }
}

impl Drop for DiskCacheFs {
    fn drop(&mut self) {
        // Unmounting with writers still open: commit what they wrote, as a
        // close would have, rather than lose it.
        let fhs: Vec<u64> = self.lock().handles.keys().copied().collect();
        for fh in fhs {
            if let Err(e) = self.release(fh) {
                log::error!("committing an open file at unmount: {e}");
            }
        }
    }
}
