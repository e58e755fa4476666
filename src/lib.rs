//! diskcachefs: python-diskcache 5.6 caches (and flytekit's local task cache in
//! them) as a library, a command line and a FUSE file system.
//!
//! Three layers, each usable without the one above it:
//! - [`cache`]: the diskcache-compatible engine (no FUSE, no Flyte).
//! - [`flyte`]: flyteidl literal messages, flytekit's cache key, `LocalTaskCache`.
//! - `fs`: the file-system tree over the engine.
//! - [`remote`]: sharing entries through S3 or Redis (`diskcachefs sync`), over the engine.
//!
//! [`service`] speaks to a service manager (systemd's readiness protocol);
//! [`logging`] sends the log to standard error, the journal or syslog.

// Lint policy, beyond rustc's and clippy's defaults (scripts/test runs
// clippy with `-D warnings`): every unsafe block says why it is sound
// (`// SAFETY:`), unsafe operations inside unsafe fns are blocks of their
// own, and no `dbg!`, `todo!` or `unimplemented!` is left behind.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::dbg_macro, clippy::todo, clippy::unimplemented)]

pub mod cache;
pub mod flyte;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
pub mod logging;
pub mod remote;
pub mod service;
