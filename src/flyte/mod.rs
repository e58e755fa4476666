//! The Flyte local task cache: flyteidl literal messages ([`idl`]),
//! flytekit's cache key, byte-identical to flytekit 1.16's ([`key`],
//! [`canonical`], reading its input in place with `borrowed`), a readable
//! JSON rendering ([`render`]), and `LocalTaskCache` on the engine ([`local_cache`]); Flyte 2's own task
//! cache in the same `cache.db` ([`flyte2`]). Housekeeping: stale entries ([`stale`]), sizes per task
//! ([`summary`]), and why a lookup missed ([`explain`], from per-input digests, [`input_digest`], kept
//! for the entries written here in a side record, [`input_record`]).

mod borrowed;
pub mod canonical;
pub mod explain;
pub mod flyte2;
pub mod flyte2_explain;
pub mod idl;
pub mod input_digest;
pub mod input_record;
pub mod key;
pub mod local_cache;
pub mod msgpack;
pub mod render;
pub mod stale;
pub mod summary;

pub use key::{
    KeyError, cache_key, canonical_bytes, canonical_bytes_borrowed, canonical_bytes_prost, decode_literal_map,
    joblib_hash,
};
pub use local_cache::{LocalCacheError, LocalTaskCache};
