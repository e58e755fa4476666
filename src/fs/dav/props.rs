//! WebDAV properties. Ours, in [`PROP_NAMESPACE`], are the entry's
//! `user.diskcache.*` attributes (tag, expiry, type): read and set through
//! the tree as `getxattr`/`setxattr` are. Any other property a client sets
//! (Windows Explorer's `Win32LastModifiedTime`, an editor's own) is a
//! "dead" property in RFC 4918's words: the cache has no place for it, so
//! the server keeps it in memory, by path, until the resource is deleted
//! or the server stops ([`DeadProps`]). A PROPPATCH is all or nothing, as
//! RFC 4918 has it: when one change fails, those applied before it are
//! undone and the others answered `424 Failed Dependency`.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dav_server::davpath::DavPath;
use dav_server::fs::DavProp;
use http::StatusCode;

use crate::fs::error::FsError;
use crate::fs::tree::Tree;

/// Our WebDAV properties' namespace: the attribute `user.diskcache.NAME`
/// is the property `NAME` in it (docs/SEMANTICS.md, "Over HTTP and
/// WebDAV").
pub const PROP_NAMESPACE: &str = "urn:diskcachefs:";
/// The attributes shown as properties, and settable by PROPPATCH.
pub const PROPS: [&str; 3] = ["tag", "expire_time", "type"];

/// Most bytes of dead properties held (names and values); a PROPPATCH
/// past it is `507 Insufficient Storage` and changes nothing.
const MAX_DEAD_BYTES: usize = 16 << 20;

pub fn xattr_of(prop: &DavProp) -> Option<String> {
    (prop.namespace.as_deref() == Some(PROP_NAMESPACE) && PROPS.contains(&prop.name.as_str()))
        .then(|| format!("user.diskcache.{}", prop.name))
}

pub fn prop_with(name: &str, value: &[u8]) -> DavProp {
    let text = String::from_utf8_lossy(value);
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    DavProp::new(name.to_string(), "dc".into(), PROP_NAMESPACE.into(), escaped)
}

/// Our properties of the entry at `ino`, as PROPFIND shows them.
pub fn ours<T: Tree>(tree: &T, ino: u64) -> Vec<DavProp> {
    PROPS
        .iter()
        .filter_map(|name| {
            let value = tree.getxattr(ino, OsStr::new(&format!("user.diskcache.{name}"))).ok()?;
            Some(prop_with(name, &value))
        })
        .collect()
}

/// The text inside a PROPPATCH's property element (`<dc:tag ...>grp</dc:tag>`,
/// or empty for `<dc:tag/>`); `None` when it holds elements.
fn prop_text(xml: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(xml).ok()?.trim_start();
    // dav-server writes the element as a document, declaration first.
    let s = match s.strip_prefix("<?") {
        Some(rest) => rest.split_once("?>")?.1.trim_start(),
        None => s,
    };
    let open_end = s.find('>')?;
    if s[..open_end].ends_with('/') {
        return Some(String::new());
    }
    let close = s.rfind("</")?;
    let inner = s.get(open_end + 1..close)?;
    if inner.contains('<') {
        return None;
    }
    Some(
        inner
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// A path as the dead properties are kept: without a trailing `/` (a
/// collection is named both ways).
fn path_key(path: &DavPath) -> Vec<u8> {
    let bytes = path.as_bytes();
    bytes.strip_suffix(b"/").unwrap_or(bytes).to_vec()
}

fn same(a: &DavProp, b: &DavProp) -> bool {
    a.name == b.name && a.namespace == b.namespace
}

fn size_of(prop: &DavProp) -> usize {
    prop.name.len() + prop.namespace.as_ref().map_or(0, String::len) + prop.xml.as_ref().map_or(0, Vec::len)
}

/// Other namespaces' properties, by path, in memory.
#[derive(Clone, Default)]
pub struct DeadProps {
    inner: Arc<Mutex<Dead>>,
}

#[derive(Default)]
struct Dead {
    by_path: BTreeMap<Vec<u8>, Vec<DavProp>>,
    bytes: usize,
}

impl Dead {
    /// The paths `key` and every path below it.
    fn subtree(&self, key: &[u8]) -> Vec<Vec<u8>> {
        let mut below = key.to_vec();
        below.push(b'/');
        let mut paths: Vec<Vec<u8>> = self
            .by_path
            .range(below.clone()..)
            .map(|(p, _)| p)
            .take_while(|p| p.starts_with(&below))
            .cloned()
            .collect();
        if self.by_path.contains_key(key) {
            paths.push(key.to_vec());
        }
        paths
    }

    fn take(&mut self, key: &[u8]) -> Option<Vec<DavProp>> {
        let props = self.by_path.remove(key)?;
        self.bytes -= props.iter().map(size_of).sum::<usize>();
        Some(props)
    }

    fn put(&mut self, key: Vec<u8>, props: Vec<DavProp>) {
        if props.is_empty() {
            return;
        }
        self.bytes += props.iter().map(size_of).sum::<usize>();
        self.by_path.insert(key, props);
    }
}

impl DeadProps {
    fn lock(&self) -> std::sync::MutexGuard<'_, Dead> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, path: &DavPath) -> Vec<DavProp> {
        self.lock().by_path.get(&path_key(path)).cloned().unwrap_or_default()
    }

    /// A MOVE: the properties of `from` and below go with it (those at
    /// `to` were the overwritten resource's).
    pub fn moved(&self, from: &DavPath, to: &DavPath) {
        let (from, to) = (path_key(from), path_key(to));
        let mut dead = self.lock();
        for path in dead.subtree(&to) {
            dead.take(&path);
        }
        for path in dead.subtree(&from) {
            let props = dead.take(&path).unwrap_or_default();
            let mut new = to.clone();
            new.extend_from_slice(&path[from.len()..]);
            dead.put(new, props);
        }
    }

    /// A COPY of one resource (dav-server walks a collection).
    pub fn copied(&self, from: &DavPath, to: &DavPath) {
        let mut dead = self.lock();
        let props = dead.by_path.get(&path_key(from)).cloned().unwrap_or_default();
        if dead.bytes + props.iter().map(size_of).sum::<usize>() <= MAX_DEAD_BYTES {
            dead.take(&path_key(to));
            dead.put(path_key(to), props);
        }
    }

    /// A DELETE: `path` and everything below it.
    pub fn removed(&self, path: &DavPath) {
        let mut dead = self.lock();
        for path in dead.subtree(&path_key(path)) {
            dead.take(&path);
        }
    }
}

/// Our properties of a listing's entries, read with the listing (one
/// batch on the blocking pool, the entries' lookups held) and taken by
/// the PROPFIND that asked for the listing: dav-server asks `get_props`
/// of every entry, and a walk from the root for each cost 6x the listing
/// itself (docs/PERFORMANCE.md). Taken once, dropped by this server's own
/// changes to the path; unused ones go after [`LISTED_FOR`] (a mount's
/// attribute timeout: another process's change shows within it, as in a
/// mount) or past [`MAX_LISTED`].
#[derive(Clone, Default)]
pub struct ListedProps {
    inner: Arc<Mutex<HashMap<Vec<u8>, Listed>>>,
}

/// When a listing read them, and the properties.
type Listed = (Instant, Vec<DavProp>);

const LISTED_FOR: Duration = Duration::from_secs(1);
const MAX_LISTED: usize = 100_000;

impl ListedProps {
    /// Keeps `props` of entry `name` of the directory `parts`.
    pub fn put(&self, parts: &[Vec<u8>], name: &[u8], props: Vec<DavProp>) {
        let mut key = Vec::new();
        for part in parts.iter().map(Vec::as_slice).chain([name]) {
            key.push(b'/');
            key.extend_from_slice(part);
        }
        let mut held = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() >= MAX_LISTED {
            let now = Instant::now();
            held.retain(|_, (at, _)| now.duration_since(*at) < LISTED_FOR);
            if held.len() >= MAX_LISTED {
                held.clear();
            }
        }
        held.insert(key, (Instant::now(), props));
    }

    /// The properties kept for `path` by a listing just made, if any.
    pub fn take(&self, path: &DavPath) -> Option<Vec<DavProp>> {
        let (at, props) = self.inner.lock().unwrap_or_else(|e| e.into_inner()).remove(&path_key(path))?;
        (at.elapsed() < LISTED_FOR).then_some(props)
    }
}

/// Applies a PROPPATCH's changes in order, all or nothing: ours through
/// the tree's attributes of `ino`, the others to `dead`.
pub fn patch<T: Tree>(
    tree: &T,
    ino: u64,
    dead: &DeadProps,
    path: &DavPath,
    changes: Vec<(bool, DavProp)>,
) -> Vec<(StatusCode, DavProp)> {
    // What each of our attributes was before, to put back on failure.
    let mut undo: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    let mut failed: Option<(usize, StatusCode)> = None;
    let mut dead_after = dead.get(path);
    for (i, (set, prop)) in changes.iter().enumerate() {
        let status = match xattr_of(prop) {
            Some(xattr) => {
                let before = tree.getxattr(ino, OsStr::new(&xattr)).ok();
                match set_ours(tree, ino, &xattr, *set, prop) {
                    Ok(()) => {
                        undo.push((xattr, before));
                        StatusCode::OK
                    }
                    Err(status) => status,
                }
            }
            // Our namespace's other names are not settable.
            None if prop.namespace.as_deref() == Some(PROP_NAMESPACE) => StatusCode::FORBIDDEN,
            None => {
                dead_after.retain(|p| !same(p, prop));
                if *set {
                    dead_after.push(prop.clone());
                }
                StatusCode::OK
            }
        };
        if status != StatusCode::OK {
            failed = Some((i, status));
            break;
        }
    }
    let dead_bytes: usize = dead_after.iter().map(size_of).sum();
    if failed.is_none() {
        let mut held = dead.lock();
        let key = path_key(path);
        let now = held.by_path.get(&key).map_or(0, |p| p.iter().map(size_of).sum::<usize>());
        if held.bytes - now + dead_bytes > MAX_DEAD_BYTES {
            failed = Some((
                changes.iter().position(|(_, p)| xattr_of(p).is_none()).unwrap_or(0),
                StatusCode::INSUFFICIENT_STORAGE,
            ));
        } else {
            held.take(&key);
            held.put(key, dead_after);
        }
    }
    if let Some((at, status)) = failed {
        for (xattr, before) in undo.into_iter().rev() {
            let name = OsStr::new(&xattr);
            let restored = match before {
                Some(value) => tree.setxattr(ino, name, &value, false, false),
                None => tree.removexattr(ino, name),
            };
            if let Err(e) = restored {
                log::warn!("webdav: PROPPATCH could not undo {xattr}: {e}");
            }
        }
        return changes
            .into_iter()
            .enumerate()
            .map(|(i, (_, prop))| {
                let status = if i == at { status } else { StatusCode::FAILED_DEPENDENCY };
                (status, DavProp { xml: None, ..prop })
            })
            .collect();
    }
    changes.into_iter().map(|(_, prop)| (StatusCode::OK, DavProp { xml: None, ..prop })).collect()
}

fn set_ours<T: Tree>(tree: &T, ino: u64, xattr: &str, set: bool, prop: &DavProp) -> Result<(), StatusCode> {
    let name = OsStr::new(xattr);
    let done = if set {
        match prop.xml.as_deref().and_then(prop_text) {
            Some(value) => tree.setxattr(ino, name, value.as_bytes(), false, false),
            None => Err(FsError::InvalidValue { what: xattr.to_string(), reason: "not text".into() }),
        }
    } else {
        match tree.removexattr(ino, name) {
            Err(FsError::NoAttribute(_)) => Ok(()),
            other => other,
        }
    };
    done.map_err(|e| match e.errno() {
        // A value the cache cannot take: RFC 4918's 409.
        libc::EINVAL | libc::ERANGE => StatusCode::CONFLICT,
        libc::ENOENT => StatusCode::NOT_FOUND,
        libc::EACCES | libc::EPERM | libc::EROFS => StatusCode::FORBIDDEN,
        _ => {
            log::warn!("webdav: PROPPATCH {xattr}: {e}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_text() {
        assert_eq!(prop_text(br#"<dc:tag xmlns:dc="urn:diskcachefs:">a &amp; b</dc:tag>"#).as_deref(), Some("a & b"));
        assert_eq!(prop_text(br#"<dc:tag xmlns:dc="urn:diskcachefs:"/>"#).as_deref(), Some(""));
        let doc = br#"<?xml version="1.0" encoding="utf-8"?><dc:tag xmlns:dc="urn:diskcachefs:">grp</dc:tag>"#;
        assert_eq!(prop_text(doc).as_deref(), Some("grp"));
        assert_eq!(prop_text(br#"<dc:tag xmlns:dc="urn:diskcachefs:"><x/></dc:tag>"#), None);
    }

    fn dead(name: &str) -> DavProp {
        DavProp::new(name.into(), "x".into(), "http://example.com/".into(), "v".into())
    }

    #[test]
    fn dead_properties_follow_moves_and_deletes() {
        let props = DeadProps::default();
        let path = |p: &str| DavPath::new(p).unwrap();
        props.lock().put(path_key(&path("/keys/a/b")), vec![dead("one")]);
        props.lock().put(path_key(&path("/keys/a")), vec![dead("two")]);
        props.lock().put(path_key(&path("/keys/ab")), vec![dead("three")]);
        props.moved(&path("/keys/a/"), &path("/keys/c/"));
        assert_eq!(props.get(&path("/keys/c/b"))[0].name, "one");
        assert_eq!(props.get(&path("/keys/c"))[0].name, "two");
        assert!(props.get(&path("/keys/a/b")).is_empty());
        // A sibling whose name only starts the same stays.
        assert_eq!(props.get(&path("/keys/ab"))[0].name, "three");
        props.copied(&path("/keys/ab"), &path("/keys/d"));
        assert_eq!(props.get(&path("/keys/d"))[0].name, "three");
        props.removed(&path("/keys/c"));
        assert!(props.get(&path("/keys/c/b")).is_empty());
        assert_eq!(props.lock().by_path.len(), 2);
        assert_eq!(props.lock().bytes, 2 * size_of(&dead("three")));
    }
}
