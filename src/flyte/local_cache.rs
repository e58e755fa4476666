//! flytekit's `LocalTaskCache` on the engine: outputs of cached tasks run
//! locally, stored in a diskcache directory (`~/.flyte/local-cache` by
//! default) under `{task}-{version}-{md5}` as the serialized outputs
//! `LiteralMap` (a bytes value), exactly as flytekit stores them.

use std::path::{Path, PathBuf};

use prost::Message;
use thiserror::Error;

use super::idl::LiteralMap;
use super::input_digest::digest_inputs;
use super::input_record::{self, InputRecord};
use super::key::{KeyError, cache_key};
use crate::cache::{Cache, Key, OpenError, Value};

/// flytekit's `CACHE_LOCATION`.
pub const CACHE_LOCATION: &str = "~/.flyte/local-cache";

#[derive(Debug, Error)]
pub enum LocalCacheError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Cache(#[from] crate::cache::Error),
    #[error("inputs: {0}")]
    Key(#[from] KeyError),
    #[error("outputs are not a serialized LiteralMap: {0}")]
    Outputs(prost::DecodeError),
    #[error(
        "the entry {key} holds a {type_name} value; flytekit 1.16 stores serialized LiteralMap bytes \
             (a pickled model comes from an older flytekit)"
    )]
    NotBytes { key: String, type_name: &'static str },
}

pub struct LocalTaskCache {
    cache: Cache,
}

impl LocalTaskCache {
    /// Opens the cache at `directory`, or at flytekit's default location.
    pub fn initialize(directory: Option<&Path>) -> Result<LocalTaskCache, LocalCacheError> {
        let dir = directory.map_or_else(|| PathBuf::from(CACHE_LOCATION), Path::to_path_buf);
        Ok(LocalTaskCache { cache: Cache::open(&dir)? })
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The serialized outputs `LiteralMap` cached for these inputs.
    pub fn get(
        &self,
        task: &str,
        version: &str,
        inputs: &[u8],
        ignore: &[String],
    ) -> Result<Option<Vec<u8>>, LocalCacheError> {
        let key = cache_key(task, version, inputs, ignore)?;
        match self.cache.get(&Key::Str(key.clone()))? {
            None => Ok(None),
            Some(Value::Bytes(b)) => Ok(Some(b)),
            Some(other) => Err(LocalCacheError::NotBytes { key, type_name: other.type_name() }),
        }
    }

    /// Stores serialized outputs for these inputs, as flytekit's `set`,
    /// and, in the same transaction, the inputs' digests in the side record
    /// (`input_record`), so that `explain` can compare them.
    pub fn set(
        &self,
        task: &str,
        version: &str,
        inputs: &[u8],
        ignore: &[String],
        outputs: &[u8],
    ) -> Result<String, LocalCacheError> {
        LiteralMap::decode(outputs).map_err(LocalCacheError::Outputs)?;
        let key = cache_key(task, version, inputs, ignore)?;
        let digests = digest_inputs(inputs, ignore)?;
        let record = InputRecord {
            key: key.clone(),
            task: task.to_string(),
            version: version.to_string(),
            digests,
            recorded: self.cache.now(),
        };
        self.cache.transact(|c| {
            c.set(&Key::Str(key.clone()), &Value::Bytes(outputs.to_vec()), None, None)?;
            input_record::record(c, &record)
        })?;
        Ok(key)
    }

    /// Empties the whole cache directory's cache, as flytekit's `clear`.
    pub fn clear(&self) -> Result<u64, LocalCacheError> {
        Ok(self.cache.clear()?)
    }
}
