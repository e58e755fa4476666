//! The file-system tree over the engine (docs/SEMANTICS.md).
//!
//! - [`names`]: keys to file names and back (pure, property-tested).
//! - [`content`], [`xattr`]: values as file content and
//!   attributes as text; [`control`]: `stats` and `settings/` files.
//! - [`inode`], [`handle`]: inode numbers and open files; [`intern`]:
//!   the names that get inode numbers of their own.
//! - [`store`]: the tree's one door to the engine: one cache, or a
//!   FanoutCache's shards routed by key and merged in listings;
//!   [`engine`]: each shard's handles (readers, writers, deferred
//!   bookkeeping), so that no request waits behind another.
//! - [`filesystem`]: the semantics, as plain methods returning
//!   `Result<_, FsError>` ([`error`]).
//! - [`tree`]: what the adapter asks of a tree; [`substores`]: a
//!   FanoutCache's tree with its sub-stores (`cache/NAME`, ...) beside it.
//! - [`readable`]: `json/` (each value as JSON, pickles read as data) and
//!   the `user.diskcache.imports` attribute, over any tree.
//! - [`fuse`]: the `fuser::Filesystem` adapter, which only translates
//!   (and asks [`pickle_writers`] whether a request may store a pickle).
//! - [`mount`]: mounting, signals, daemonizing, unmounting.
//! - [`dav`]: the WebDAV front end over a tree (translates, as `fuse`
//!   does); [`serve`]: `diskcachefs serve`, it on an HTTP server.

pub mod content;
pub mod control;
pub mod dav;
pub mod engine;
pub mod error;
pub mod filesystem;
pub mod fuse;
pub mod grammar;
pub mod handle;
pub mod inode;
pub mod intern;
pub mod invalidator;
pub mod mount;
pub mod names;
pub mod paths;
pub mod pickle_check;
pub mod pickle_writers;
pub mod readable;
pub mod request_stats;
pub mod serve;
pub mod store;
pub mod substores;
pub mod tree;
pub mod types;
pub mod version;
pub mod xattr;
