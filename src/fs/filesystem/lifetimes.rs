//! How long the inodes of names other than keys live (intern.rs): tag
//! directories and links, settings, view directories and nodes, flyte2
//! files, directories of keys/ (`paths::DirInodes`). Each counts the lookups the kernel was given of it and goes when
//! the kernel forgets them all; names shown but never given (a plain
//! READDIR) are dropped in bulk past [`UNHELD_NAMES`]. Key inodes have a
//! policy of their own (`InodeTable`, with `--max-inodes`).

use std::ffi::OsStr;

use super::{Attr, DirReplier, DiskCacheFs, Invalidation, Kind, Tables};
use crate::cache::Scalar;
use crate::fs::inode::{
    FIRST_SETTING, FLYTE2_NODE_BASE, KEY_DIR_BASE, Node, TAG_DIR_BASE, TAG_LINK_BASE, VIEW_DIR_BASE, classify,
};

/// Names of each kind kept while the kernel holds none of them, before
/// they are dropped together.
pub(super) const UNHELD_NAMES: usize = 4096;

impl DiskCacheFs {
    /// The kernel was given `ino` once more (a LOOKUP's, MKDIR's,
    /// SYMLINK's or CREATE's reply, a READDIRPLUS entry).
    pub(super) fn note_given(st: &mut Tables, ino: u64) {
        match classify(ino) {
            Node::TagDir => st.tag_dirs.looked_up((ino - TAG_DIR_BASE) as usize),
            Node::TagLink => st.tag_links.looked_up((ino - TAG_LINK_BASE) as usize),
            Node::Setting => st.settings.looked_up((ino - FIRST_SETTING) as usize),
            Node::Flyte2 if ino >= FLYTE2_NODE_BASE => st.flyte2.looked_up((ino - FLYTE2_NODE_BASE) as usize),
            Node::View if ino >= VIEW_DIR_BASE => st.views.looked_up(ino),
            Node::KeyDir => st.key_dirs.looked_up((ino - KEY_DIR_BASE) as usize),
            _ => {}
        }
    }

    /// The kernel forgot `n` lookups of `ino`.
    pub(super) fn note_forgotten(st: &mut Tables, ino: u64, n: u64) {
        match classify(ino) {
            Node::TagDir => st.tag_dirs.forget((ino - TAG_DIR_BASE) as usize, n),
            Node::TagLink => st.tag_links.forget((ino - TAG_LINK_BASE) as usize, n),
            Node::Setting => st.settings.forget((ino - FIRST_SETTING) as usize, n),
            Node::Flyte2 if ino >= FLYTE2_NODE_BASE => st.flyte2.forget((ino - FLYTE2_NODE_BASE) as usize, n),
            Node::View if ino >= VIEW_DIR_BASE => st.views.forget(ino, n),
            Node::KeyDir => st.key_dirs.forget((ino - KEY_DIR_BASE) as usize, n),
            _ => {}
        }
    }

    /// Keeps the tag links the kernel holds near `--max-inodes`, as
    /// `trim_inodes` keeps key inodes: the kernel is asked to forget the
    /// links it was given longest ago (a listing of a churning `tags/T/`
    /// would otherwise leave the kernel, and so this table, holding every
    /// name it ever showed). Bounded work per call.
    pub(super) fn trim_links(&self, st: &mut Tables) {
        let excess = st.tag_links.held().saturating_sub(self.config.max_inodes).min(256);
        if excess == 0 {
            return;
        }
        if !self.invalidator.is_connected() {
            return;
        }
        let oldest: Vec<(Scalar, String)> = st.tag_links.oldest_held(excess).into_iter().cloned().collect();
        let requests: Vec<Invalidation> = oldest
            .into_iter()
            .map(|(tag, name)| Invalidation::Entry { parent: Self::tag_dir_ino(st, &tag), name })
            .collect();
        self.invalidator.send(requests);
    }

    /// Drops the names nobody holds, past the bound (see the module doc).
    pub(super) fn trim_names(st: &mut Tables) {
        st.tag_links.trim(UNHELD_NAMES);
        st.tag_dirs.trim(UNHELD_NAMES);
        st.settings.trim(UNHELD_NAMES);
        st.flyte2.trim(UNHELD_NAMES);
        st.views.trim(UNHELD_NAMES);
        st.key_dirs.trim(UNHELD_NAMES);
        // What `%sha256:` names stand for, learnt from listings: a cache,
        // found again by a search when dropped.
        if st.hashed_names.len() + st.hashed_parts.len() > 16 * UNHELD_NAMES {
            st.hashed_names.clear();
            st.hashed_parts.clear();
        }
    }

    /// Notes what a reply gave the kernel (see [`Self::note_given`]).
    pub(super) fn given(&self, attr: &Attr) {
        if matches!(
            classify(attr.ino),
            Node::TagDir | Node::TagLink | Node::Setting | Node::Flyte2 | Node::View | Node::KeyDir
        ) {
            let mut st = self.tables();
            Self::note_given(&mut st, attr.ino);
            self.trim_links(&mut st);
        }
    }
}

/// A READDIRPLUS reply that notes each entry it passes on to the kernel
/// (`.` and `..` are not lookups).
pub(super) struct Given<'a> {
    pub out: &'a mut dyn DirReplier,
    pub given: Vec<u64>,
}

impl DirReplier for Given<'_> {
    fn add(&mut self, ino: u64, next_offset: u64, kind: Kind, name: &OsStr, attr: Option<&Attr>) -> bool {
        let full = self.out.add(ino, next_offset, kind, name, attr);
        if !full && attr.is_some() && name != "." && name != ".." {
            self.given.push(ino);
        }
        full
    }
}
