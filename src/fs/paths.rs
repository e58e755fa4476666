//! Str keys as paths in `keys/` (docs/SEMANTICS.md, "Keys as paths").
//!
//! A str key is split at each `/` into parts, and each part is one name:
//! the key `a/b/c` is the file `keys/a/b/c`. A part that is not usable as
//! a name by itself gets the escaped name `%str:...` ([`part_name`]), so
//! every str key has a path and two keys never share one:
//!
//! | key                  | path in `keys/`                  |
//! |----------------------|----------------------------------|
//! | `a/b/c`              | `a/b/c`                          |
//! | `/home/u/x.py`       | `%str:/home/u/x.py`              |
//! | `https://host//p`    | `https:/%str:/host/%str:/p`      |
//! | `a/` , `''`          | `a/%str:`, `%str:`               |
//! | a part over 255 bytes| its `%sha256:` name              |
//!
//! A directory is a key prefix ending in `/` ([`DirPrefix`]); `keys/`
//! itself is the empty prefix. When a key is also a directory (keys `a`
//! and `a/b` both present), the directory keeps the name and the key is
//! the file [`SELF_NAME`] inside it (`keys/a/%self`). Keys of the other
//! types (bytes, int, float, pickled) are files in `keys/` itself under
//! their flat names (`names.rs`).

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::cache::Key;
use crate::fs::names::{HASHED_PREFIX, NAME_MAX, NameError, ParsedName, key_to_name, percent_decode, percent_encode};

/// Inside a directory that is also a key: that key's file.
pub const SELF_NAME: &str = "%self";

/// How the escaped name of a part begins.
const STR_PREFIX: &str = "%str:";

/// A directory in `keys/`: the key prefix its keys share, ending in `/`,
/// or empty for `keys/` itself.
pub type DirPrefix = str;

/// A part usable as its own name.
fn is_plain_part(part: &str) -> bool {
    !part.is_empty() && part != "." && part != ".." && !part.starts_with('%') && !part.contains('\0')
}

/// The name of a part before any hashing (may exceed NAME_MAX).
pub fn full_part_name(part: &str) -> String {
    if is_plain_part(part) { part.to_string() } else { format!("{STR_PREFIX}{}", percent_encode(part.as_bytes())) }
}

/// The name of one part of a str key (the text between two slashes).
pub fn part_name(part: &str) -> String {
    let name = full_part_name(part);
    if name.len() <= NAME_MAX { name } else { hashed(&name) }
}

fn hashed(full: &str) -> String {
    let digest = Sha256::digest(full.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{HASHED_PREFIX}{hex}")
}

/// The digest a `%sha256:` name carries for this unhashed name.
pub fn digest_of(full: &str) -> [u8; 32] {
    Sha256::digest(full.as_bytes()).into()
}

/// The name a key has in the directory that holds it, and that
/// directory: `a/b/c` is `c` in `a/b/`; a key of another type is its flat
/// name in `keys/`.
pub fn leaf_of(key: &Key) -> (&DirPrefix, String) {
    match key {
        Key::Str(s) => match s.rfind('/') {
            Some(i) => (&s[..=i], part_name(&s[i + 1..])),
            None => ("", part_name(s)),
        },
        other => ("", key_to_name(other)),
    }
}

/// The key's path below `keys/` (each part named by [`part_name`]),
/// without regard to a directory of the same name.
pub fn key_path(key: &Key) -> String {
    match key {
        Key::Str(s) => s.split('/').map(part_name).collect::<Vec<_>>().join("/"),
        other => key_to_name(other),
    }
}

/// The display path of a directory prefix (`a/b/` is `a/b`).
pub fn dir_path(prefix: &DirPrefix) -> String {
    match prefix.strip_suffix('/') {
        Some(p) => p.split('/').map(part_name).collect::<Vec<_>>().join("/"),
        None => String::new(),
    }
}

/// The smallest str that sorts after every key under `prefix` (SQLite
/// compares text bytewise, and `0` follows `/`).
pub fn prefix_end(prefix: &DirPrefix) -> String {
    debug_assert!(prefix.ends_with('/'));
    format!("{}0", &prefix[..prefix.len() - 1])
}

/// The key a directory is when it is also a key (`a/` is `a`).
pub fn self_key(prefix: &DirPrefix) -> Option<Key> {
    prefix.strip_suffix('/').map(|s| Key::Str(s.to_string()))
}

/// What a name in a directory of `keys/` stands for.
#[derive(Clone, Debug, PartialEq)]
pub enum ChildName {
    /// One part of a str key: the prefix plus it is a key, a directory,
    /// or nothing yet.
    Part(String),
    /// [`SELF_NAME`]: the key the directory itself is.
    SelfKey,
    /// A key of another type, by its flat name (only in `keys/`).
    Flat(Key),
    /// A `%sha256:` name, found by hashing the directory's names.
    Hashed([u8; 32]),
}

/// Parses a name in the directory `prefix`. Only canonical names parse:
/// each thing has exactly one name.
pub fn parse_child(name: &[u8], prefix: &DirPrefix) -> Result<ChildName, NameError> {
    if name.len() > NAME_MAX {
        return Err(NameError::TooLong);
    }
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(NameError::Invalid("empty, or contains / or NUL".into()));
    }
    let text = std::str::from_utf8(name).map_err(|_| {
        NameError::Invalid("not UTF-8: a str key's name must be UTF-8 (bytes keys are %bytes:...)".into())
    })?;
    if text == "." || text == ".." {
        return Err(NameError::Invalid("'.' and '..' are not keys".into()));
    }
    if !text.starts_with('%') {
        return Ok(ChildName::Part(text.to_string()));
    }
    let bad = |what: &str| NameError::Invalid(format!("{text:?}: {what}"));
    if text == SELF_NAME {
        return if prefix.is_empty() { Err(bad("keys/ itself is no key")) } else { Ok(ChildName::SelfKey) };
    }
    if let Some(body) = text.strip_prefix(STR_PREFIX) {
        let bytes = percent_decode(body).ok_or_else(|| bad("bad %XX escape"))?;
        let part = String::from_utf8(bytes).map_err(|_| bad("str key is not UTF-8"))?;
        if part.contains('/') {
            return Err(bad("a / in a key is a directory: this key's path has one name per part"));
        }
        if part_name(&part) != text {
            return Err(bad("not the canonical spelling of this part's name"));
        }
        return Ok(ChildName::Part(part));
    }
    match crate::fs::names::name_to_key(name)? {
        ParsedName::Hashed(digest) => Ok(ChildName::Hashed(digest)),
        ParsedName::Key(Key::Str(_)) => Err(bad("not the canonical spelling of this key's name")),
        ParsedName::Key(_) if !prefix.is_empty() => {
            Err(bad("keys that are not str are in keys/ itself, not in a directory"))
        }
        ParsedName::Key(key) => Ok(ChildName::Flat(key)),
    }
}

/// A path below `keys/` as the key it names (for the command line, which
/// takes keys by their path): `a/b/c` is the str key `a/b/c`, `a/%self` the
/// key `a`, `%int:3` the int key 3. A `%sha256:` last part is returned as
/// its directory and digest, for the caller to look up
/// ([`hashed_leaf_matches`]).
pub fn path_to_key(path: &str) -> Result<PathKey, NameError> {
    let mut prefix = String::new();
    let mut parts = path.split('/').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        match (parse_child(part.as_bytes(), &prefix)?, last) {
            (ChildName::Part(p), false) => {
                prefix.push_str(&p);
                prefix.push('/');
            }
            (ChildName::Part(p), true) => return Ok(PathKey::Key(Key::Str(format!("{prefix}{p}")))),
            (ChildName::SelfKey, true) => return Ok(PathKey::Key(self_key(&prefix).expect("not keys/ itself"))),
            (ChildName::Flat(key), true) => return Ok(PathKey::Key(key)),
            (ChildName::Hashed(digest), true) => return Ok(PathKey::Hashed { prefix, digest }),
            (_, false) => return Err(NameError::Invalid(format!("{part:?} is not a directory name"))),
        }
    }
    Err(NameError::Invalid("empty path".into()))
}

/// What [`path_to_key`] found.
#[derive(Clone, Debug, PartialEq)]
pub enum PathKey {
    Key(Key),
    /// A `%sha256:` name in the directory `prefix`.
    Hashed {
        prefix: String,
        digest: [u8; 32],
    },
}

/// Whether `key` is the one a `%sha256:` name with `digest` in the
/// directory `prefix` stands for.
pub fn hashed_leaf_matches(key: &Key, prefix: &DirPrefix, digest: &[u8; 32]) -> bool {
    if prefix.is_empty() && crate::fs::names::matches_hash(key, digest) {
        return true;
    }
    match key {
        Key::Str(s) => s
            .strip_prefix(prefix)
            .is_some_and(|leaf| !leaf.contains('/') && digest_of(&full_part_name(leaf)) == *digest),
        _ => false,
    }
}

/// The unhashed name of what a `%sha256:` name may stand for in a
/// listing: a part's name, or a flat key's name.
pub fn unhashed_name(child: &Hashed) -> String {
    match child {
        Hashed::Part(part) => full_part_name(part),
        Hashed::Flat(key) => crate::fs::names::full_name(key),
    }
}

/// What a `%sha256:` name was found to stand for.
#[derive(Clone, Debug, PartialEq)]
pub enum Hashed {
    Part(String),
    Flat(Key),
}

/// Inode numbers of the directories under `keys/`: an index per prefix,
/// moved by directory renames, kept while the kernel holds the inode (as
/// the interner's names are: src/fs/intern.rs), and reused once freed.
#[derive(Debug, Default)]
pub struct DirInodes {
    /// By index; `None` once replaced by a rename onto it, or freed.
    prefixes: Vec<Option<String>>,
    index: HashMap<String, usize>,
    /// Lookups the kernel holds, by index.
    lookups: Vec<u64>,
    /// Indexes free for reuse.
    free: Vec<usize>,
    /// Whether each index is in `free`: an index released twice (a
    /// forget after a trim freed it) must be free once, or two
    /// directories would share it.
    is_free: Vec<bool>,
}

impl DirInodes {
    /// Every directory's index and prefix.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &str)> {
        self.prefixes.iter().enumerate().filter_map(|(i, p)| Some((i, p.as_deref()?)))
    }

    /// The index of `prefix`, made the first time.
    pub fn index_of(&mut self, prefix: &DirPrefix) -> usize {
        if let Some(&i) = self.index.get(prefix) {
            return i;
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.prefixes[i] = Some(prefix.to_string());
                self.lookups[i] = 0;
                self.is_free[i] = false;
                i
            }
            None => {
                self.prefixes.push(Some(prefix.to_string()));
                self.lookups.push(0);
                self.is_free.push(false);
                self.prefixes.len() - 1
            }
        };
        self.index.insert(prefix.to_string(), i);
        i
    }

    /// The kernel was given directory `index`'s inode once more.
    pub fn looked_up(&mut self, index: usize) {
        if let Some(n) = self.lookups.get_mut(index) {
            *n += 1;
        }
    }

    /// The kernel forgot `n` lookups of directory `index`; its number is
    /// free once none are left.
    pub fn forget(&mut self, index: usize, n: u64) {
        let Some(count) = self.lookups.get_mut(index) else { return };
        if *count == 0 {
            return;
        }
        *count = count.saturating_sub(n);
        if *count == 0 {
            self.release(index);
        }
    }

    fn release(&mut self, index: usize) {
        if let Some(prefix) = self.prefixes[index].take()
            && self.index.get(&prefix) == Some(&index)
        {
            self.index.remove(&prefix);
        }
        if !self.is_free[index] {
            self.is_free[index] = true;
            self.free.push(index);
        }
    }

    /// Frees every directory the kernel does not hold once more than
    /// `unheld` gathered (see src/fs/intern.rs).
    pub fn trim(&mut self, unheld: usize) {
        // Every idle index is one not free: none to look for below that.
        if self.prefixes.len().saturating_sub(self.free.len()) <= unheld {
            return;
        }
        let idle: Vec<usize> = (0..self.prefixes.len()).filter(|&i| self.lookups[i] == 0 && !self.is_free[i]).collect();
        if idle.len() <= unheld {
            return;
        }
        for i in idle {
            self.release(i);
        }
    }

    pub fn prefix(&self, index: usize) -> Option<&str> {
        self.prefixes.get(index).and_then(|p| p.as_deref())
    }

    /// A directory rename: `old` and every directory under it now live
    /// under `new` (their inodes follow, as the kernel expects). A
    /// directory known by one of the new names before (an empty one the
    /// rename replaced) is no longer reachable.
    pub fn rename(&mut self, old: &DirPrefix, new: &DirPrefix) {
        let moved: Vec<(usize, String)> = self
            .prefixes
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().filter(|p| p.starts_with(old)).map(|p| (i, p.clone())))
            .collect();
        for (_, prefix) in &moved {
            self.index.remove(prefix);
        }
        for (i, prefix) in moved {
            let renamed = format!("{new}{}", &prefix[old.len()..]);
            if let Some(stale) = self.index.insert(renamed.clone(), i) {
                self.prefixes[stale] = None;
            }
            self.prefixes[i] = Some(renamed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_of_the_hard_cases() {
        let p = |s: &str| key_path(&Key::Str(s.into()));
        assert_eq!(p("a/b/c"), "a/b/c");
        assert_eq!(p("/home/u/x.py"), "%str:/home/u/x.py");
        assert_eq!(p("https://host//p"), "https:/%str:/host/%str:/p");
        assert_eq!(p("a/"), "a/%str:");
        assert_eq!(p(""), "%str:");
        assert_eq!(p("a/./%x/.."), "a/%str:./%str:%25x/%str:..");
        assert!(p(&format!("d/{}", "x".repeat(300))).starts_with("d/%sha256:"));
        assert_eq!(key_path(&Key::Int(3)), "%int:3");
        assert_eq!(leaf_of(&Key::Str("a/b/c".into())), ("a/b/", "c".to_string()));
        assert_eq!(dir_path("https:/"), "https:");
        assert_eq!(dir_path("/"), "%str:");
        assert_eq!(prefix_end("a/"), "a0");
    }

    #[test]
    fn names_parse_in_their_directory_only() {
        assert_eq!(parse_child(b"%self", "a/"), Ok(ChildName::SelfKey));
        assert!(parse_child(b"%self", "").is_err());
        assert_eq!(parse_child(b"%int:3", ""), Ok(ChildName::Flat(Key::Int(3))));
        assert!(parse_child(b"%int:3", "a/").is_err());
        assert_eq!(parse_child(b"%str:", "a/"), Ok(ChildName::Part(String::new())));
        // The old flat spelling of a key with a slash is not its name.
        assert!(parse_child(b"%str:a%2Fb", "").is_err());
        // Plain parts have no escaped spelling.
        assert!(parse_child(b"%str:abc", "").is_err());
        assert!(parse_child(b"..", "a/").is_err());
    }

    proptest! {
        #[test]
        fn every_part_name_parses_back(part in "[^/]{0,300}") {
            let name = part_name(&part);
            prop_assert!(name.len() <= NAME_MAX && !name.contains('/') && name != "." && name != "..");
            match parse_child(name.as_bytes(), "d/").unwrap() {
                ChildName::Part(p) => prop_assert_eq!(p, part),
                ChildName::Hashed(d) => prop_assert_eq!(d, digest_of(&full_part_name(&part))),
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn any_name_parses_or_errors(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(ChildName::Part(p)) = parse_child(&b, "") {
                let again = part_name(&p);
                prop_assert_eq!(again.as_bytes(), &b[..]);
            }
        }
    }
}
