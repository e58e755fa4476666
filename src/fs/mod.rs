//! The file-system tree over the engine: path grammar and name escaping,
//! inodes, open handles, xattrs, and a thin `fuser::Filesystem` adapter.

pub mod names;
pub mod pyrepr;
