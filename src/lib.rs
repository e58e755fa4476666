//! diskcachefs: python-diskcache 5.6 caches (and flytekit's local task cache in
//! them) as a library, a command line and a FUSE file system.
//!
//! Three layers, each usable without the one above it:
//! - [`cache`]: the diskcache-compatible engine (no FUSE, no Flyte).
//! - [`flyte`]: flyteidl literal messages, flytekit's cache key, `LocalTaskCache`.
//! - `fs`: the file-system tree over the engine.

pub mod cache;
pub mod flyte;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
