//! `tags/` (docs/SEMANTICS.md, "Tags"): one directory per tag in use, its
//! entries links to `../../keys/NAME`; creating or linking a file there tags
//! the key, `rm -r` is `evict(tag)`. Tags of other types than str are named
//! as keys are.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{Attr, DiskCacheFs, State, Tables, name_str};
use crate::cache::{Key, Scalar};
use crate::fs::error::FsError;
use crate::fs::inode::{TAG_DIR_BASE, TAG_LINK_BASE, is_view_ino};
use crate::fs::names::{ParsedName, key_to_name, name_to_key};

impl DiskCacheFs {
    /// A tag as a key, for naming it like one.
    pub(super) fn tag_key(tag: &Scalar) -> Key {
        match tag {
            Scalar::Str(s) => Key::Str(s.clone()),
            Scalar::Bytes(b) => Key::Bytes(b.clone()),
            Scalar::Int(i) => Key::Int(*i),
            Scalar::Float(f) => Key::Float(*f),
        }
    }

    pub(super) fn tag_name(tag: &Scalar) -> String {
        key_to_name(&Self::tag_key(tag))
    }

    /// The tags `tags/` shows: those of live entries, and those made by mkdir.
    pub(super) fn visible_tags(st: &State) -> Result<Vec<Scalar>, FsError> {
        let mut tags = st.cache.live_tags().map_err(|e| FsError::cache("tags/", e))?;
        for t in &st.made_tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        tags.sort_by_key(Self::tag_name);
        Ok(tags)
    }

    /// The tag `tags/NAME` shows, if it is in use: one indexed query, not
    /// a listing (a name that is not a tag's own spelling shows nothing).
    pub(super) fn find_tag(&self, st: &mut State, name: &OsStr) -> Result<Option<Scalar>, FsError> {
        let Ok(tag) = Self::parse_tag_name(name) else { return Ok(None) };
        if OsStr::new(&Self::tag_name(&tag)) != name || !self.tag_in_use(st, &tag)? {
            return Ok(None);
        }
        Ok(Some(tag))
    }

    /// Whether a live entry carries `tag`, or mkdir made its directory.
    /// One query that stops at the first entry; without diskcache's tag
    /// index a tag nobody uses would scan the whole table every time, so
    /// a miss is answered from the set of tags in use, made once per
    /// change of the cache (`tree_time`) by that same scan.
    pub(super) fn tag_in_use(&self, st: &mut State, tag: &Scalar) -> Result<bool, FsError> {
        if st.made_tags.contains(tag) {
            return Ok(true);
        }
        let err = |e| FsError::cache(format!("tags/{}", Self::tag_name(tag)), e);
        let name = Self::tag_name(tag);
        let now = self.tree_time();
        let changes = self.local_changes();
        let indexed = st.cache.has_tag_index().map_err(err)?;
        if !indexed
            && let Some((at, seen, tags)) = &st.tags_in_use
            && (*at, *seen) == (now, changes)
        {
            return Ok(tags.contains(&name));
        }
        if st.cache.tag_in_use(tag).map_err(err)? {
            return Ok(true);
        }
        if !indexed {
            let tags = st.cache.live_tags().map_err(err)?;
            st.tags_in_use = Some((now, changes, tags.iter().map(Self::tag_name).collect()));
        }
        Ok(false)
    }

    /// Parses a new tag directory's name (mkdir): named as keys are named.
    pub(super) fn parse_tag_name(name: &OsStr) -> Result<Scalar, FsError> {
        let invalid = |reason: String| FsError::InvalidName { name: name_str(name), reason };
        match name_to_key(name.as_bytes()) {
            Ok(ParsedName::Key(Key::Str(s))) => Ok(Scalar::Str(s)),
            Ok(ParsedName::Key(Key::Bytes(b))) => Ok(Scalar::Bytes(b)),
            Ok(ParsedName::Key(Key::Int(i))) => Ok(Scalar::Int(i)),
            Ok(ParsedName::Key(Key::Float(f))) => Ok(Scalar::Float(f)),
            Ok(_) => Err(invalid("a tag is a str, bytes, int or float".into())),
            Err(e) => Err(super::bad_name(name, e)),
        }
    }

    pub(super) fn tag_dir_ino(st: &mut Tables, tag: &Scalar) -> u64 {
        TAG_DIR_BASE + st.tag_dirs.intern(Self::tag_name(tag), || tag.clone()) as u64
    }

    pub(super) fn tag_of_dir(st: &Tables, ino: u64) -> Option<Scalar> {
        if !(TAG_DIR_BASE..TAG_LINK_BASE).contains(&ino) {
            return None;
        }
        st.tag_dirs.get((ino - TAG_DIR_BASE) as usize).cloned()
    }

    pub(super) fn tag_link_ino(st: &mut Tables, tag: &Scalar, name: &str) -> u64 {
        let id = (Self::tag_name(tag), name.to_string());
        TAG_LINK_BASE + st.tag_links.intern(id, || (tag.clone(), name.to_string())) as u64
    }

    pub(super) fn link_of(st: &Tables, ino: u64) -> Option<(Scalar, String)> {
        if !(TAG_LINK_BASE..crate::fs::inode::VIEW_DIR_BASE).contains(&ino) {
            return None;
        }
        st.tag_links.get((ino - TAG_LINK_BASE) as usize).cloned()
    }

    /// The target of the link named `name` (a key's flat name): the
    /// key's path in keys/.
    pub(super) fn link_target(st: &Tables, name: &str) -> String {
        let key = match name_to_key(name.as_bytes()) {
            Ok(ParsedName::Key(k)) => Some(k),
            Ok(ParsedName::Hashed(digest)) => st.hashed_names.get(&digest).cloned(),
            Err(_) => None,
        };
        match key {
            Some(k) => format!("../../keys/{}", crate::fs::paths::key_path(&k)),
            None => format!("../../keys/{name}"),
        }
    }

    pub(super) fn link_attr(&self, st: &Tables, ino: u64, name: &str, store_time: Option<f64>) -> Attr {
        self.symlink_attr(ino, Self::link_target(st, name).len(), store_time)
    }

    /// The attributes of `tags/T/` or of a link in it, if it still exists.
    pub(super) fn tag_getattr(&self, st: &mut State, ino: u64) -> Result<Attr, FsError> {
        if let Some(tag) = Self::tag_of_dir(st, ino) {
            if self.tag_in_use(st, &tag)? {
                return Ok(self.dir_attr(ino));
            }
            return Err(FsError::NotFound(format!("tags/{}", Self::tag_name(&tag))));
        }
        let (tag, name) = Self::link_of(st, ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        let gone = || FsError::NotFound(format!("tags/{}/{name}", Self::tag_name(&tag)));
        let key = match name_to_key(name.as_bytes()) {
            Ok(ParsedName::Key(k)) => k,
            _ => return Err(gone()),
        };
        let meta = st.cache.entry_meta(&key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?;
        match meta {
            Some(m) if m.tag.as_ref() == Some(&tag) => Ok(self.link_attr(st, ino, &name, Some(m.store_time))),
            _ if st.pending_tags.get(&name) == Some(&tag) => Ok(self.link_attr(st, ino, &name, None)),
            _ => Err(gone()),
        }
    }

    /// The target of a `tags/T/NAME` link: `../../keys/NAME`.
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        if is_view_ino(ino) {
            return self.view_readlink(ino);
        }
        let st = self.tables();
        let (_, name) = Self::link_of(&st, ino).ok_or_else(|| FsError::InvalidValue {
            what: format!("inode {ino}"),
            reason: "not a symbolic link".into(),
        })?;
        Ok(Self::link_target(&st, &name).into_bytes())
    }

    /// `ln -s ../../keys/NAME tags/T/NAME` (how rsync restores a tag link):
    /// tags the existing entry NAME with T.
    pub fn symlink(&self, parent: u64, name: &OsStr, target: &Path) -> Result<Attr, FsError> {
        let attr = self.make_symlink(parent, name, target)?;
        self.given(&attr);
        Ok(attr)
    }

    fn make_symlink(&self, parent: u64, name: &OsStr, target: &Path) -> Result<Attr, FsError> {
        if is_view_ino(parent) {
            return self.view_symlink(parent, name, target);
        }
        self.check_writable(&name_str(name))?;
        let Some(tag) = Self::tag_of_dir(&self.tables(), parent) else {
            return Err(FsError::NotPermitted(format!("symlink {}: only tags/T/ holds links", name_str(name))));
        };
        let name_s = name_str(name);
        let want = Self::link_target(&self.tables(), &name_s);
        if target.as_os_str() != OsStr::new(&want) {
            return Err(FsError::InvalidValue {
                what: format!("symlink {name_s}"),
                reason: format!("a tag link points to {want}"),
            });
        }
        let key = {
            let c = self.reader()?;
            let mut st = self.state(&c);
            self.resolve_flat(&mut st, name)?
        };
        let ino = self.change(&format!("keys/{name_s}"), Some(&[&key]), |st| {
            if !st.cache.set_tag(&key, Some(&tag)).map_err(|e| FsError::cache(format!("keys/{name_s}"), e))? {
                // The key is not there yet: tag it when it arrives.
                st.pending_tags.insert(name_s.clone(), tag.clone());
            }
            Ok(Self::tag_link_ino(st, &tag, &name_s))
        })?;
        Ok(self.link_attr(&self.tables(), ino, &name_s, None))
    }

    /// Applies a tag waiting for the key named `name` (see `pending_tags`),
    /// in the caller's transaction.
    pub(super) fn apply_pending_tag(st: &mut State, name: &str, key: &Key) -> Result<(), FsError> {
        if let Some(tag) = st.pending_tags.remove(name) {
            st.cache.set_tag(key, Some(&tag)).map_err(|e| FsError::cache(format!("keys/{name}"), e))?;
        }
        Ok(())
    }
}
