//! `flyte2/` (docs/SEMANTICS.md, "Flyte 2 task cache"): Flyte 2's own
//! task cache, the `task_cache` table it keeps in the same `cache.db`
//! ([`crate::flyte::flyte2`]).
//!
//! - `flyte2/NAME`: one file per entry, NAME its key as keys are named
//!   (Flyte 2's keys are base64, so most carry a `/` and read as
//!   `%str:...`); the content is the stored `Outputs` bytes; `rm` deletes
//!   the entry, so the next Flyte 2 run of that task computes again.
//! - `flyte2/NAME.json` (not listed, as `task/`'s renderings): the outputs
//!   as JSON.
//! - `flyte2/.runs/RUN-ACTION.json`: the `runs` records Flyte 2 keeps.
//! - `flyte2/.stale/NAME` (not listed): the stale entries, those whose
//!   outputs name local files that are gone (docs/FLYTE.md, "Stale
//!   entries"), the same files as in `flyte2/`; `rm` deletes them.
//!
//! Files have inode numbers from [`FLYTE2_NODE_BASE`], interned by
//! (directory, name) for the daemon's life.

use std::ffi::OsStr;
use std::sync::Arc;

use super::{Attr, DirReplier, DiskCacheFs, Kind, OpenFlags, Tables, name_str};
use crate::cache::{Cache, Key};
use crate::flyte::flyte2::{Flyte2Cache, outputs_json};
use crate::flyte::stale::{flyte2_missing, stale_flyte2_entries};
use crate::fs::error::FsError;
use crate::fs::handle::{Handle, Snapshot};
use crate::fs::inode::{FLYTE2_DIR, FLYTE2_NODE_BASE, FLYTE2_RUNS_DIR, FLYTE2_STALE_DIR};
use crate::fs::names::{ParsedName, key_to_name, name_to_key};

/// The name of the directory of run records in `flyte2/` (a key, base64,
/// never starts with a dot).
pub const RUNS_NAME: &str = ".runs";

/// The name of the directory of stale entries in `flyte2/`.
pub const STALE_NAME: &str = ".stale";

/// What a name in `flyte2/` or `flyte2/.runs/` stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Flyte2Node {
    Entry(String),
    Json(String),
    /// A run record: (run name, action name).
    Run(String, String),
}

fn run_file_name(run: &str, action: &str) -> String {
    format!("{}.json", key_to_name(&Key::Str(format!("{run}-{action}"))))
}

fn json_bytes(json: &serde_json::Value) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(json).unwrap_or_default();
    text.push(b'\n');
    text
}

impl DiskCacheFs {
    fn flyte2_ino(st: &mut Tables, node: Flyte2Node) -> u64 {
        FLYTE2_NODE_BASE + st.flyte2.intern(node.clone(), || node) as u64
    }

    pub(super) fn flyte2_node(st: &Tables, ino: u64) -> Option<Flyte2Node> {
        st.flyte2.get(ino.checked_sub(FLYTE2_NODE_BASE)? as usize).cloned()
    }

    /// A node's content, `ENOENT` when it is not there (now).
    fn flyte2_content(cache: &Cache, node: &Flyte2Node) -> Result<Vec<u8>, FsError> {
        let flyte2 = Flyte2Cache::new(cache);
        let what = || format!("flyte2/{node:?}");
        match node {
            Flyte2Node::Entry(key) => {
                flyte2.get(key).map_err(|e| FsError::cache(what(), e))?.ok_or_else(|| FsError::NotFound(what()))
            }
            Flyte2Node::Json(key) => {
                let bytes =
                    flyte2.get(key).map_err(|e| FsError::cache(what(), e))?.ok_or_else(|| FsError::NotFound(what()))?;
                let json = outputs_json(&bytes)
                    .map_err(|e| FsError::InvalidValue { what: what(), reason: format!("not Outputs: {e}") })?;
                Ok(json_bytes(&json))
            }
            Flyte2Node::Run(run, action) => {
                let runs = flyte2.runs().map_err(|e| FsError::cache(what(), e))?;
                let (_, json) = runs
                    .into_iter()
                    .find(|((r, a), _)| r == run && a == action)
                    .ok_or_else(|| FsError::NotFound(what()))?;
                Ok(json_bytes(&json))
            }
        }
    }

    fn flyte2_attr(&self, ino: u64, node: &Flyte2Node, len: usize) -> Attr {
        // Entries can be removed, renderings and records only read.
        self.control_attr(ino, len, matches!(node, Flyte2Node::Entry(_)))
    }

    /// What `name` in `flyte2/`, `flyte2/.runs/` or `flyte2/.stale/` names.
    fn flyte2_parse(parent: u64, name: &OsStr) -> Result<Flyte2Node, FsError> {
        let text = name.to_str().ok_or_else(|| FsError::NotFound(name_str(name)))?;
        let str_key = |n: &str| match name_to_key(n.as_bytes()) {
            Ok(ParsedName::Key(Key::Str(k))) => Some(k),
            _ => None,
        };
        let missing = || FsError::NotFound(format!("flyte2/{text}"));
        match parent {
            FLYTE2_DIR => match (str_key(text), text.strip_suffix(".json").and_then(str_key)) {
                (Some(key), _) if !text.ends_with(".json") => Ok(Flyte2Node::Entry(key)),
                (_, Some(key)) => Ok(Flyte2Node::Json(key)),
                (Some(key), None) => Ok(Flyte2Node::Entry(key)),
                (None, None) => Err(missing()),
            },
            FLYTE2_STALE_DIR => str_key(text).map(Flyte2Node::Entry).ok_or_else(missing),
            _ => {
                let id = text.strip_suffix(".json").and_then(str_key).ok_or_else(missing)?;
                let (run, action) = id.rsplit_once('-').ok_or_else(missing)?;
                Ok(Flyte2Node::Run(run.to_string(), action.to_string()))
            }
        }
    }

    pub(super) fn flyte2_lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, FsError> {
        if parent == FLYTE2_DIR && name == RUNS_NAME {
            return Ok(self.dir_attr(FLYTE2_RUNS_DIR));
        }
        if parent == FLYTE2_DIR && name == STALE_NAME {
            return Ok(self.dir_attr(FLYTE2_STALE_DIR));
        }
        let node = Self::flyte2_parse(parent, name)?;
        let c = self.reader()?;
        let content = Self::flyte2_content(Self::single(&c)?, &node)?;
        if parent == FLYTE2_STALE_DIR && !Self::flyte2_is_stale(&c, &node)? {
            return Err(FsError::NotFound(format!("flyte2/{STALE_NAME}/{}", name_str(name))));
        }
        let ino = Self::flyte2_ino(&mut self.tables(), node.clone());
        Ok(self.flyte2_attr(ino, &node, content.len()))
    }

    pub(super) fn flyte2_getattr(&self, ino: u64) -> Result<Attr, FsError> {
        if matches!(ino, FLYTE2_DIR | FLYTE2_RUNS_DIR | FLYTE2_STALE_DIR) {
            return Ok(self.dir_attr(ino));
        }
        let node = Self::flyte2_node(&self.tables(), ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        let content = Self::flyte2_content(Self::single(&self.reader()?)?, &node)?;
        Ok(self.flyte2_attr(ino, &node, content.len()))
    }

    /// Lists `flyte2/` (the entries, then `.runs`), `flyte2/.runs/` or
    /// `flyte2/.stale/`.
    /// Offsets are positions in the listing, which is made anew each call.
    pub(super) fn flyte2_readdir(
        &self,
        ino: u64,
        offset: u64,
        plus: bool,
        out: &mut dyn DirReplier,
    ) -> Result<(), FsError> {
        let c = self.reader()?;
        let flyte2 = Flyte2Cache::new(Self::single(&c)?);
        let listing: Vec<(Flyte2Node, String, usize)> = if ino == FLYTE2_DIR {
            let entries = flyte2.entries().map_err(|e| FsError::cache("flyte2/", e))?;
            entries
                .into_iter()
                .map(|(key, len)| (key_to_name(&Key::Str(key.clone())), key, len))
                .map(|(name, key, len)| (Flyte2Node::Entry(key), name, len as usize))
                .collect()
        } else if ino == FLYTE2_STALE_DIR {
            let cache = Self::single(&c)?;
            let stale = stale_flyte2_entries(cache).map_err(|e| FsError::cache("flyte2/.stale/", e))?;
            let mut listing = Vec::new();
            for entry in stale {
                let Ok(Some(bytes)) = flyte2.get(&entry.key) else { continue };
                listing.push((Flyte2Node::Entry(entry.key.clone()), key_to_name(&Key::Str(entry.key)), bytes.len()));
            }
            listing
        } else {
            let runs = flyte2.runs().map_err(|e| FsError::cache("flyte2/.runs/", e))?;
            runs.into_iter()
                .map(|((run, action), json)| {
                    let name = run_file_name(&run, &action);
                    (Flyte2Node::Run(run, action), name, json_bytes(&json).len())
                })
                .collect()
        };
        let mut st = self.tables();
        let mut next = 3;
        for (node, name, len) in listing {
            if offset < next {
                let child = Self::flyte2_ino(&mut st, node.clone());
                let attr = self.flyte2_attr(child, &node, len);
                if out.add(child, next, Kind::File, OsStr::new(&name), plus.then_some(&attr)) {
                    return Ok(());
                }
            }
            next += 1;
        }
        if ino == FLYTE2_DIR && offset < next {
            let attr = self.dir_attr(FLYTE2_RUNS_DIR);
            out.add(FLYTE2_RUNS_DIR, next, Kind::Directory, OsStr::new(RUNS_NAME), plus.then_some(&attr));
        }
        Ok(())
    }

    pub(super) fn flyte2_open(&self, ino: u64, write: bool) -> Result<(u64, OpenFlags), FsError> {
        if matches!(ino, FLYTE2_DIR | FLYTE2_RUNS_DIR | FLYTE2_STALE_DIR) {
            if write {
                return Err(FsError::IsDirectory(format!("inode {ino}")));
            }
            return Ok((0, OpenFlags::default()));
        }
        if write {
            return Err(FsError::AccessDenied("flyte2/: Flyte 2 writes its cache; remove an entry with rm".into()));
        }
        let node = Self::flyte2_node(&self.tables(), ino).ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        let content = Self::flyte2_content(Self::single(&self.reader()?)?, &node)?;
        let snapshot = Arc::new(Snapshot::Inline(content));
        let fh = Self::new_handle(&mut self.tables(), Handle::Read { ino, snapshot, view: None });
        Ok((fh, OpenFlags { direct_io: true, no_flush: true, ..OpenFlags::default() }))
    }

    /// `rm flyte2/NAME` (or `flyte2/.stale/NAME`): deletes the entry
    /// (Flyte 2 computes it again).
    pub(super) fn flyte2_unlink(&self, parent: u64, name: &OsStr) -> Result<(), FsError> {
        self.check_writable(&format!("flyte2/{}", name_str(name)))?;
        match (parent, Self::flyte2_parse(parent, name)) {
            (FLYTE2_DIR | FLYTE2_STALE_DIR, Ok(Flyte2Node::Entry(key))) => {
                let deleted = Flyte2Cache::new(Self::single(&self.writer()?)?)
                    .delete(&key)
                    .map_err(|e| FsError::cache(format!("flyte2/{}", name_str(name)), e))?;
                if deleted { Ok(()) } else { Err(FsError::NotFound(format!("flyte2/{}", name_str(name)))) }
            }
            (_, Err(e)) => Err(e),
            _ => Err(FsError::NotPermitted(format!("flyte2/{}: only entries can be removed", name_str(name)))),
        }
    }

    /// Whether `node` is an entry whose outputs name paths that are gone.
    pub(super) fn flyte2_is_stale(c: &crate::fs::store::StoreConn, node: &Flyte2Node) -> Result<bool, FsError> {
        Ok(!Self::flyte2_stale_paths(c, node)?.is_empty())
    }

    /// The paths gone that entry `node` names (none for other nodes).
    pub(super) fn flyte2_stale_paths(
        c: &crate::fs::store::StoreConn,
        node: &Flyte2Node,
    ) -> Result<Vec<std::path::PathBuf>, FsError> {
        let Flyte2Node::Entry(key) = node else { return Ok(Vec::new()) };
        flyte2_missing(Self::single(c)?, key).map_err(|e| FsError::cache(format!("flyte2/{key}"), e))
    }
}
