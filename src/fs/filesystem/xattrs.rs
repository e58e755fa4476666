//! Extended attributes of a key's file (docs/SEMANTICS.md, "Extended
//! attributes"): `user.diskcache.expire_time`, `.tag`, `.type` and
//! `.key_type` (and `.key` for long names), read, listed, set and removed,
//! also on a file still being written (applied when it commits).

use std::ffi::OsStr;

use super::{DiskCacheFs, State, Tables, name_str};
use crate::cache::{Attr as Keep, EntryMeta, Key, NewValue, ValueType};
use crate::flyte::stale::flytekit_value_missing;
use crate::fs::content::convert;
use crate::fs::error::FsError;
use crate::fs::grammar::split_task_key;
use crate::fs::inode::KeyInode;
use crate::fs::inode::is_key_ino;
use crate::fs::names::{NAME_MAX, NameError, ParsedName, full_name, parse_unbounded};
use crate::fs::xattr::{self, XattrName};

impl DiskCacheFs {
    pub(super) fn key_inode(&self, st: &Tables, ino: u64) -> Result<(Key, String, bool), FsError> {
        let inode: &KeyInode = st.inodes.get(ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        Ok((inode.key.clone(), inode.name.clone(), inode.pending_create))
    }

    /// The attribute values of a key's file, by name.
    pub(super) fn xattrs(&self, st: &State, ino: u64) -> Result<Vec<(&'static str, Vec<u8>)>, FsError> {
        let (key, name, pending_create) = self.key_inode(st, ino)?;
        let inode = st.inodes.get(ino).expect("checked");
        let meta: Option<EntryMeta> = if pending_create {
            None
        } else {
            st.cache.entry_meta(&key).map_err(|e| FsError::cache(format!("keys/{name}"), e))?
        };
        if meta.is_none() && !pending_create {
            return Err(FsError::NotFound(format!("keys/{name}")));
        }
        let p = &inode.pending;
        let dirty = pending_create || Self::has_dirty_writer(st, ino);
        let expire = p.expire_time.unwrap_or_else(|| meta.as_ref().and_then(|m| m.expire_time));
        let tag = p.tag.clone().unwrap_or_else(|| meta.as_ref().and_then(|m| m.tag.clone()));
        let value_type = match (p.value_type, &meta) {
            (Some(t), _) => t,
            // A writer's copy is committed as bytes unless told otherwise.
            (None, _) if dirty => ValueType::Bytes,
            (None, Some(m)) => m.value_type(),
            (None, None) => ValueType::Bytes,
        };
        let mut out = vec![(xattr::KEY_TYPE, key.type_name().as_bytes().to_vec())];
        let full = full_name(&key);
        if full.len() > NAME_MAX {
            // Listed (so rsync -X carries it) only where the name cannot.
            out.push((xattr::KEY, full.into_bytes()));
        }
        out.push((xattr::TYPE, value_type.name().as_bytes().to_vec()));
        if let Some(t) = expire {
            out.push((xattr::EXPIRE_TIME, xattr::format_expire_time(t)));
        }
        if let Some(tag) = tag {
            out.push((xattr::TAG, xattr::format_tag(&tag)));
        }
        Ok(out)
    }

    pub fn getxattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>, FsError> {
        if name == xattr::FLYTE_STALE {
            return self.stale_xattr(ino);
        }
        // Names that are not ours (security.selinux, security.capability,
        // ACLs, which the kernel asks for on every `ls -l` and write) are
        // answered without touching the cache or a lock.
        if !is_key_ino(ino) || XattrName::parse(name).is_none() {
            return Err(FsError::NoAttribute(name_str(name)));
        }
        let c = self.reader()?;
        let st = self.state(&c);
        if name == xattr::KEY {
            // Readable on every key's file, listed only on long keys'.
            self.xattrs(&st, ino)?;
            let inode = st.inodes.get(ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
            return Ok(full_name(&inode.key).into_bytes());
        }
        let values = self.xattrs(&st, ino)?;
        values
            .into_iter()
            .find(|(n, _)| OsStr::new(n) == name)
            .map(|(_, v)| v)
            .ok_or_else(|| FsError::NoAttribute(name_str(name)))
    }

    /// `user.flyte.stale`: the paths gone that a Flyte entry's outputs
    /// name, as a JSON array, on flytekit's entries' `keys/` files (and so
    /// through `task/T/V/HASH`, which getfattr follows) and Flyte 2's
    /// `flyte2/` files; ENODATA for a fresh entry and any other file. Not
    /// listed: rsync -X would copy into a backup what is the mount's to
    /// tell. Read with the tables unlocked (it stats paths).
    fn stale_xattr(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        let none = || FsError::NoAttribute(xattr::FLYTE_STALE.into());
        let missing = if is_key_ino(ino) {
            let (key, _, pending_create) = self.key_inode(&self.tables(), ino)?;
            match key {
                Key::Str(k) if !pending_create && split_task_key(&k).is_some() => {
                    let value = self.reader()?.get(&Key::Str(k.clone())).map_err(|e| FsError::cache(k.clone(), e))?;
                    value.map_or(Vec::new(), |v| flytekit_value_missing(&v))
                }
                _ => return Err(none()),
            }
        } else if let Some(node) = Self::flyte2_node(&self.tables(), ino) {
            Self::flyte2_stale_paths(&self.reader()?, &node)?
        } else {
            return Err(none());
        };
        if missing.is_empty() {
            return Err(none());
        }
        let mut text = serde_json::to_vec(&missing).unwrap_or_default();
        text.push(b'\n');
        Ok(text)
    }

    pub fn listxattr(&self, ino: u64) -> Result<Vec<u8>, FsError> {
        if !is_key_ino(ino) {
            return Ok(Vec::new());
        }
        let c = self.reader()?;
        let st = self.state(&c);
        let mut out = Vec::new();
        for (name, _) in self.xattrs(&st, ino)? {
            out.extend_from_slice(name.as_bytes());
            out.push(0);
        }
        Ok(out)
    }

    /// `setxattr`; `create`/`replace` are XATTR_CREATE/XATTR_REPLACE.
    pub fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], create: bool, replace: bool) -> Result<(), FsError> {
        let attr = XattrName::parse(name).ok_or_else(|| FsError::AttributeNotSupported(name_str(name)))?;
        if !is_key_ino(ino) {
            return Err(FsError::AttributeNotSupported(name_str(name)));
        }
        let (key, fname, _) = self.key_inode(&self.tables(), ino)?;
        self.check_writable(&format!("{} on keys/{fname}", name_str(name)))?;
        self.change(&format!("keys/{fname}"), Some(&[&key]), |st| {
            self.setxattr_in(st, ino, name, attr, value, create, replace)
        })
    }

    /// `setxattr` in the caller's transaction.
    #[allow(clippy::too_many_arguments)]
    fn setxattr_in(
        &self,
        st: &mut State,
        ino: u64,
        name: &OsStr,
        attr: XattrName,
        value: &[u8],
        create: bool,
        replace: bool,
    ) -> Result<(), FsError> {
        let (key, fname, pending_create) = self.key_inode(st, ino)?;
        let what = format!("{} on keys/{fname}", name_str(name));
        Self::note_attrs_set(st, ino);
        let present = self.xattrs(st, ino)?.iter().any(|(n, _)| OsStr::new(n) == name);
        if create && present {
            return Err(FsError::Exists(what));
        }
        if replace && !present {
            return Err(FsError::NoAttribute(what));
        }
        let invalid = |reason: String| FsError::InvalidValue { what: what.clone(), reason };
        let staged = pending_create || Self::has_dirty_writer(st, ino);
        match attr {
            XattrName::KeyType => {
                let text = std::str::from_utf8(value).map_err(|_| invalid("not text".into()))?;
                if !["str", "bytes", "int", "float", "pickle"].contains(&text) {
                    return Err(invalid(format!("{text:?} is not a key type")));
                }
                // The name decides the key's type; nothing to change.
            }
            XattrName::Key => {
                let intended = match parse_unbounded(value) {
                    Ok(ParsedName::Key(k)) => k,
                    Ok(ParsedName::Hashed(_)) => return Err(invalid("a key, not a %sha256: name".into())),
                    Err(NameError::Invalid(reason)) => return Err(invalid(reason)),
                    Err(NameError::TooLong) => return Err(invalid("too long".into())),
                };
                // Remembered for a rename to this key's name; the file's own
                // key is decided by its name.
                if let Some(inode) = st.inodes.get_mut(ino) {
                    inode.intended_key = (intended != key).then_some(intended);
                }
            }
            XattrName::ExpireTime => {
                let t = xattr::parse_expire_time(value).map_err(invalid)?;
                if staged && let Some(inode) = st.inodes.get_mut(ino) {
                    inode.pending.expire_time = Some(Some(t));
                }
                if !pending_create {
                    st.cache.touch_at(&key, Some(t)).map_err(|e| FsError::cache(what.clone(), e))?;
                }
            }
            XattrName::Tag => {
                let tag = xattr::parse_tag(value).map_err(invalid)?;
                if staged && let Some(inode) = st.inodes.get_mut(ino) {
                    inode.pending.tag = Some(Some(tag.clone()));
                }
                if !pending_create {
                    st.cache.set_tag(&key, Some(&tag)).map_err(|e| FsError::cache(what.clone(), e))?;
                }
            }
            XattrName::Type => {
                let text = std::str::from_utf8(value).map_err(|_| invalid("not text".into()))?;
                let to = ValueType::from_name(text)
                    .ok_or_else(|| invalid(format!("{text:?}: one of bytes, str, int, float, pickle")))?;
                if staged {
                    if let Some(inode) = st.inodes.get_mut(ino) {
                        inode.pending.value_type = Some(to);
                    }
                } else {
                    self.convert_stored(st, &key, &fname, to)?;
                }
            }
        }
        Ok(())
    }

    /// A writer set or removed one of our attributes on a file made
    /// through the mount: it says the whole truth of its attributes from
    /// now on (see `KeyInode::attrs_set`).
    fn note_attrs_set(st: &mut State, ino: u64) {
        if let Some(inode) = st.inodes.get_mut(ino)
            && inode.made_here
        {
            inode.attrs_set = true;
        }
    }

    /// Converts a committed value to another type (setting
    /// `user.diskcache.type` on a file nobody is writing).
    pub(super) fn convert_stored(&self, st: &State, key: &Key, name: &str, to: ValueType) -> Result<(), FsError> {
        let what = format!("keys/{name}");
        let meta = st
            .cache
            .entry_meta(key)
            .map_err(|e| FsError::cache(what.clone(), e))?
            .ok_or_else(|| FsError::NotFound(what.clone()))?;
        if meta.value_type() == to {
            return Ok(());
        }
        let data = Self::snapshot(st.cache, key, name)?.read_all().map_err(|e| FsError::io(what.clone(), e))?;
        let value = convert(data, to).map_err(|reason| FsError::InvalidValue { what: what.clone(), reason })?;
        st.cache
            .replace_value(key, NewValue::Value(value), Keep::Keep, Keep::Keep)
            .map_err(|e| FsError::cache(what.clone(), e))?;
        // Keep the times: a type change is not a new value to rsync.
        st.cache.set_times(key, Some(meta.store_time), Some(meta.access_time)).map_err(|e| FsError::cache(what, e))?;
        Ok(())
    }

    pub fn removexattr(&self, ino: u64, name: &OsStr) -> Result<(), FsError> {
        let Some(attr) = XattrName::parse(name) else {
            return Err(FsError::NoAttribute(name_str(name)));
        };
        if !is_key_ino(ino) {
            return Err(FsError::NoAttribute(name_str(name)));
        }
        let (key, fname, _) = self.key_inode(&self.tables(), ino)?;
        self.check_writable(&format!("{} on keys/{fname}", name_str(name)))?;
        self.change(&format!("keys/{fname}"), Some(&[&key]), |st| self.removexattr_in(st, ino, name, attr))
    }

    /// `removexattr` in the caller's transaction.
    fn removexattr_in(&self, st: &mut State, ino: u64, name: &OsStr, attr: XattrName) -> Result<(), FsError> {
        let (key, fname, pending_create) = self.key_inode(st, ino)?;
        let what = format!("{} on keys/{fname}", name_str(name));
        Self::note_attrs_set(st, ino);
        let present = self.xattrs(st, ino)?.iter().any(|(n, _)| OsStr::new(n) == name);
        if !present {
            return Err(FsError::NoAttribute(what));
        }
        let staged = pending_create || Self::has_dirty_writer(st, ino);
        match attr {
            // Every value has a type: removing it is the default type,
            // bytes (what a copy of a file that has no such attribute
            // means: `rsync -aX` of a native tree removes it).
            XattrName::Type => {
                if staged {
                    if let Some(inode) = st.inodes.get_mut(ino) {
                        inode.pending.value_type = Some(ValueType::Bytes);
                    }
                } else {
                    self.convert_stored(st, &key, &fname, ValueType::Bytes)?;
                }
            }
            // The name decides the key: accepted and ignored, as setting is.
            XattrName::KeyType | XattrName::Key => {
                if let Some(inode) = st.inodes.get_mut(ino) {
                    inode.intended_key = None;
                }
            }
            XattrName::ExpireTime => {
                if staged && let Some(inode) = st.inodes.get_mut(ino) {
                    inode.pending.expire_time = Some(None);
                }
                if !pending_create {
                    st.cache.touch_at(&key, None).map_err(|e| FsError::cache(what.clone(), e))?;
                }
            }
            XattrName::Tag => {
                if staged && let Some(inode) = st.inodes.get_mut(ino) {
                    inode.pending.tag = Some(None);
                }
                if !pending_create {
                    st.cache.set_tag(&key, None).map_err(|e| FsError::cache(what.clone(), e))?;
                }
            }
        }
        Ok(())
    }
}
