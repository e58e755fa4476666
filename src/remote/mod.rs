//! The remote tier: sharing cache entries between machines through an
//! S3-compatible bucket or a Redis server (docs/REMOTE.md is the layout and
//! the threat model). A layer of its own over [`crate::cache`] and
//! [`crate::flyte`], usable without FUSE:
//! - [`store`]: the synchronous [`RemoteStore`] trait every backend
//!   implements, with a deadline on every call, and [`store::open`] for a URL;
//!   [`s3`] (`rusty-s3` + `ureq`) and [`redis`] (the `redis` crate) implement it.
//! - [`layout`]: object names, records, their envelope and HMAC signature.
//! - [`share`]: which entries may leave the machine.
//! - [`sync`]: `diskcachefs sync`, one push and one pull.
//! - [`tier`]: the same, all the time, under a mount (`mount --remote`):
//!   misses ask the store within a deadline, threads push and pull.

pub mod cli;
pub mod layout;
pub mod redis;
pub mod s3;
pub mod share;
pub mod store;
pub mod sync;
pub mod tier;

pub use store::{DEFAULT_DEADLINE, RemoteError, RemoteStore, StoreOptions};
pub use sync::{Mode, Summary, SyncError, SyncOptions, sync};
pub use tier::{Fetched, RemoteTier, TierConfig};
