//! The on-disk format's constants, in the order `diskcache/core.py` declares
//! them: the database name, the value modes, the default settings (with
//! units) and each eviction policy's SQL, kept as data rather than branches.

use std::collections::BTreeMap;

use super::types::Scalar;

/// The SQLite database inside every cache directory (`core.py` `DBNAME`).
pub const DBNAME: &str = "cache.db";

/// `Cache.mode` column values (`core.py` `MODE_*`).
pub const MODE_NONE: i64 = 0;
/// Value inline in `Cache.value`: TEXT, BLOB, INTEGER or REAL.
pub const MODE_RAW: i64 = 1;
/// Bytes in a value file.
pub const MODE_BINARY: i64 = 2;
/// UTF-8 text in a value file.
pub const MODE_TEXT: i64 = 3;
/// A pickle, inline in `Cache.value` or in a value file.
pub const MODE_PICKLE: i64 = 4;

/// The Settings rows that are counters kept by triggers and statistics, not
/// settings (`core.py` `METADATA`), with their initial values.
pub const METADATA: [(&str, i64); 4] = [("count", 0), ("size", 0), ("hits", 0), ("misses", 0)];

/// python-diskcache's `DEFAULT_SETTINGS`, used for a new cache and for any
/// setting an existing cache lacks.
pub fn default_settings() -> BTreeMap<String, Scalar> {
    let int = |v: i64| Scalar::Int(v);
    [
        ("statistics", int(0)), // False
        ("tag_index", int(0)),  // False
        ("eviction_policy", Scalar::Str("least-recently-stored".into())),
        ("size_limit", int(1 << 30)),        // 1 GiB
        ("cull_limit", int(10)),             // rows per cull
        ("sqlite_auto_vacuum", int(1)),      // FULL
        ("sqlite_cache_size", int(1 << 13)), // 8,192 pages
        ("sqlite_journal_mode", Scalar::Str("wal".into())),
        ("sqlite_mmap_size", int(1 << 26)),   // 64 MiB
        ("sqlite_synchronous", int(1)),       // NORMAL
        ("disk_min_file_size", int(1 << 15)), // 32 KiB
        // pickle.HIGHEST_PROTOCOL on the Pythons diskcache 5.6 supports (3.8+).
        ("disk_pickle_protocol", int(5)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// One of diskcache's four eviction policies (`core.py` `EVICTION_POLICY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictionPolicy {
    None,
    LeastRecentlyStored,
    LeastRecentlyUsed,
    LeastFrequentlyUsed,
}

impl EvictionPolicy {
    /// Parses the `eviction_policy` setting; `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "none" => Self::None,
            "least-recently-stored" => Self::LeastRecentlyStored,
            "least-recently-used" => Self::LeastRecentlyUsed,
            "least-frequently-used" => Self::LeastFrequentlyUsed,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::LeastRecentlyStored => "least-recently-stored",
            Self::LeastRecentlyUsed => "least-recently-used",
            Self::LeastFrequentlyUsed => "least-frequently-used",
        }
    }

    /// The index the policy needs, created when a cache is opened (`'init'`).
    pub fn init_sql(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::LeastRecentlyStored => Some("CREATE INDEX IF NOT EXISTS Cache_store_time ON Cache (store_time)"),
            Self::LeastRecentlyUsed => Some("CREATE INDEX IF NOT EXISTS Cache_access_time ON Cache (access_time)"),
            Self::LeastFrequentlyUsed => Some("CREATE INDEX IF NOT EXISTS Cache_access_count ON Cache (access_count)"),
        }
    }

    /// What a hit updates (`'get'`): `?1` is the time of the access. Bound
    /// as a parameter where core.py formats the float into the SQL; the
    /// stored REAL is the same.
    pub fn get_update_sql(self) -> Option<&'static str> {
        match self {
            Self::None | Self::LeastRecentlyStored => None,
            Self::LeastRecentlyUsed => Some("UPDATE Cache SET access_time = ?1 WHERE rowid = ?2"),
            Self::LeastFrequentlyUsed => Some("UPDATE Cache SET access_count = access_count + 1 WHERE rowid = ?2"),
        }
    }

    /// The column `incr` also updates on a live entry, as core.py appends the
    /// `'get'` clause to its UPDATE.
    pub fn incr_update_sql(self) -> &'static str {
        match self {
            Self::None | Self::LeastRecentlyStored => "UPDATE Cache SET store_time = ?1, value = ?2 WHERE rowid = ?3",
            Self::LeastRecentlyUsed => {
                "UPDATE Cache SET store_time = ?1, value = ?2, access_time = ?1 WHERE rowid = ?3"
            }
            Self::LeastFrequentlyUsed => {
                "UPDATE Cache SET store_time = ?1, value = ?2, access_count = access_count + 1 \
                 WHERE rowid = ?3"
            }
        }
    }

    /// The culling order (`'cull'`): rows selected first are evicted first.
    /// Returns (select filenames, delete) with `?1` the row limit.
    pub fn cull_sql(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::None => None,
            Self::LeastRecentlyStored => Some((
                "SELECT filename FROM Cache ORDER BY store_time LIMIT ?1",
                "DELETE FROM Cache WHERE rowid IN \
                 (SELECT rowid FROM Cache ORDER BY store_time LIMIT ?1)",
            )),
            Self::LeastRecentlyUsed => Some((
                "SELECT filename FROM Cache ORDER BY access_time LIMIT ?1",
                "DELETE FROM Cache WHERE rowid IN \
                 (SELECT rowid FROM Cache ORDER BY access_time LIMIT ?1)",
            )),
            Self::LeastFrequentlyUsed => Some((
                "SELECT filename FROM Cache ORDER BY access_count LIMIT ?1",
                "DELETE FROM Cache WHERE rowid IN \
                 (SELECT rowid FROM Cache ORDER BY access_count LIMIT ?1)",
            )),
        }
    }
}

/// A cache's settings as read from (and written to) its Settings table.
///
/// Every row is kept, known or not, so that settings we do not interpret
/// (written by a newer diskcache or by a caller's `**settings`) survive.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub values: BTreeMap<String, Scalar>,
}

impl Settings {
    fn int(&self, name: &str) -> i64 {
        match self.values.get(name) {
            Some(Scalar::Int(v)) => *v,
            Some(Scalar::Float(v)) => *v as i64,
            _ => 0,
        }
    }

    /// Python truthiness of an integer setting, as `if self.statistics:`.
    pub fn statistics(&self) -> bool {
        self.int("statistics") != 0
    }

    pub fn tag_index(&self) -> bool {
        self.int("tag_index") != 0
    }

    pub fn size_limit(&self) -> i64 {
        self.int("size_limit")
    }

    /// The size limit as Python compares with it (`volume < size_limit`):
    /// a FanoutCache shard's is a float with a fraction.
    pub fn size_limit_f64(&self) -> f64 {
        match self.values.get("size_limit") {
            Some(Scalar::Int(v)) => *v as f64,
            Some(Scalar::Float(v)) => *v,
            _ => 0.0,
        }
    }

    pub fn cull_limit(&self) -> i64 {
        self.int("cull_limit")
    }

    pub fn min_file_size(&self) -> i64 {
        self.int("disk_min_file_size")
    }

    /// The eviction policy; opening validates it, so an unknown name here
    /// can only come from a `reset` we refused, and reads as `none`.
    pub fn eviction_policy(&self) -> EvictionPolicy {
        match self.values.get("eviction_policy") {
            Some(Scalar::Str(name)) => EvictionPolicy::from_name(name).unwrap_or(EvictionPolicy::None),
            _ => EvictionPolicy::None,
        }
    }
}
