//! A directory's entries as HTTP clients see them: read from the tree a
//! batch at a time (READDIRPLUS), each link as what it points to, and
//! with the names a mount leaves out of `ls` (see [`list_batch`]).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::walk::Walk;
use crate::fs::error::FsError;
use crate::fs::filesystem::{Attr, DirReplier, Kind};
use crate::fs::tree::Tree;

/// Entries read from the tree at a time for a listing.
const LISTING_BATCH: usize = 1024;

/// One readdir's names, with their attributes where the tree gave them
/// (then they count as lookups).
#[derive(Default)]
struct Batch {
    entries: Vec<(Vec<u8>, Option<Attr>)>,
    next: u64,
}

impl DirReplier for Batch {
    fn add(&mut self, _ino: u64, next_offset: u64, _kind: Kind, name: &OsStr, attr: Option<&Attr>) -> bool {
        if self.entries.len() >= LISTING_BATCH {
            // Full, as a kernel's buffer is: this entry is not taken.
            return true;
        }
        self.next = next_offset;
        if name != "." && name != ".." {
            self.entries.push((name.as_bytes().to_vec(), attr.copied()));
        }
        false
    }
}

/// A listed name and what it is (a link's target).
pub(super) type Listed = (Vec<u8>, Attr);

/// One batch of the directory `dir` (at `parts`) from `offset`: its
/// entries, each link as what it points to (a dangling one left out), and
/// the offset after them (`offset` again at the end). Every entry's
/// lookup is held by `walk`.
///
/// The mount leaves some names out of `ls` (the root's `json/` and
/// `stats`, a Flyte entry's `HASH.json`) so that `rsync -a` of it holds
/// each value once; a WebDAV client (davfs2, Finder) can open only what it
/// was shown, so here they are listed.
pub(super) fn list_batch<T: Tree>(
    walk: &mut Walk<T>,
    dir: u64,
    parts: &[Vec<u8>],
    offset: u64,
) -> Result<(Vec<Listed>, u64), FsError> {
    let mut batch = Batch { next: offset, ..Batch::default() };
    walk.tree().readdir(dir, offset, true, &mut batch)?;
    let mut entries = Vec::with_capacity(batch.entries.len());
    for (name, attr) in batch.entries {
        if let Some(attr) = attr {
            walk.hold(attr.ino);
        }
        let attr = match attr {
            Some(attr) if attr.kind != Kind::Symlink => attr,
            // A link, or a name the tree listed without attributes.
            _ => match walk.follow(with(parts, &name)) {
                Ok((_, target)) => target,
                Err(_) => continue,
            },
        };
        let rendered = (attr.kind == Kind::File && renders_values(parts)).then(|| [&name[..], b".json"].concat());
        entries.push((name, attr));
        if let Some(json) = rendered {
            shown_unlisted(walk, parts, json, &mut entries);
        }
    }
    if offset == 0 && is_root(parts) {
        for name in ["json", "stats"] {
            shown_unlisted(walk, parts, name.as_bytes().to_vec(), &mut entries);
        }
    }
    Ok((entries, batch.next))
}

fn with(parts: &[Vec<u8>], name: &[u8]) -> Vec<Vec<u8>> {
    let mut path = parts.to_vec();
    path.push(name.to_vec());
    path
}

/// Whether `parts` is a tree's root: the served root, or a FanoutCache's
/// sub-store `cache/NAME`.
pub(super) fn is_root(parts: &[Vec<u8>]) -> bool {
    parts.is_empty() || (parts.len() == 2 && parts[0] == b"cache")
}

/// Whether `parts` is a directory whose entries have `NAME.json`
/// renderings: `task/T/V/`, `flyte2/`.
pub(super) fn renders_values(parts: &[Vec<u8>]) -> bool {
    let n = parts.len();
    (n >= 3 && parts[n - 3] == b"task") || parts.last().is_some_and(|p| p == b"flyte2")
}

/// Adds `name` in `parts` to a listing when it exists.
fn shown_unlisted<T: Tree>(walk: &mut Walk<T>, parts: &[Vec<u8>], name: Vec<u8>, out: &mut Vec<Listed>) {
    if let Ok((_, attr)) = walk.follow(with(parts, &name)) {
        out.push((name, attr));
    }
}
