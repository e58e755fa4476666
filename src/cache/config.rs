//! The Settings table at run time: reading and writing one setting
//! (`Cache.reset`, with its PRAGMA for `sqlite_*`), statistics
//! (`Cache.stats`), the counters (`Cache.volume`, `Cache.__len__`), the tag
//! index (`Cache.create_tag_index`, `Cache.drop_tag_index`), and the
//! validation and PRAGMA helpers opening shares.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params};

use super::core::Cache;
use super::error::{Error, Result};
use super::open::{CREATE_TAG_INDEX, DROP_TAG_INDEX};
use super::row::scalar_from_owned;
use super::settings::{EvictionPolicy, Settings};
use super::types::Scalar;

impl Cache {
    /// Number of entries, expired included (`len(cache)`), from Settings.
    pub fn len(&self) -> Result<i64> {
        match self.reset("count", None)? {
            Scalar::Int(n) => Ok(n),
            other => Err(Error::BadSetting {
                name: "count".into(),
                value: other.to_string(),
                reason: "not an integer".into(),
            }),
        }
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Estimated size on disk: database pages plus value files
    /// (`Cache.volume`).
    pub fn volume(&self) -> Result<i64> {
        let pages: i64 = self.conn.prepare_cached("PRAGMA page_count")?.query_row([], |r| r.get(0))?;
        let size = match self.reset("size", None)? {
            Scalar::Int(n) => n,
            Scalar::Float(f) => f as i64,
            _ => 0,
        };
        // Saturating: `size` comes from the Settings table, which a damaged
        // or crafted cache may set to anything (Python's ints never overflow).
        Ok(self.page_size.saturating_mul(pages).saturating_add(size))
    }

    /// Returns `(hits, misses)`, then turns statistics on or off and
    /// optionally zeroes them (`Cache.stats`).
    pub fn stats(&self, enable: bool, reset: bool) -> Result<(i64, i64)> {
        let int = |v: Scalar| if let Scalar::Int(n) = v { n } else { 0 };
        let result = (int(self.reset("hits", None)?), int(self.reset("misses", None)?));
        if reset {
            self.reset("hits", Some(Scalar::Int(0)))?;
            self.reset("misses", Some(Scalar::Int(0)))?;
        }
        self.reset("statistics", Some(Scalar::Int(i64::from(enable))))?;
        Ok(result)
    }

    /// Reads (`value = None`) or writes a Settings row (`Cache.reset`):
    /// `sqlite_*` settings also run their PRAGMA, `disk_*` ones change how
    /// values are stored. Values are validated (core.py does not, and then
    /// fails later); an invalid one is [`Error::BadSetting`].
    pub fn reset(&self, name: &str, value: Option<Scalar>) -> Result<Scalar> {
        let Some(value) = value else {
            let v: SqlValue = self
                .conn
                .prepare_cached("SELECT value FROM Settings WHERE key = ?")?
                .query_row([name], |r| r.get(0))
                .optional()?
                .ok_or_else(|| Error::BadSetting {
                    name: name.into(),
                    value: String::new(),
                    reason: "no such setting".into(),
                })?;
            let v = scalar_from_owned(v).ok_or_else(|| Error::BadSetting {
                name: name.into(),
                value: "NULL".into(),
                reason: "stored value is NULL".into(),
            })?;
            self.settings.borrow_mut().values.insert(name.to_string(), v.clone());
            return Ok(v);
        };
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.check_setting(name, &value)?;
        let start = Instant::now();
        loop {
            match self.conn.prepare_cached("UPDATE Settings SET value = ? WHERE key = ?")?.execute(params![value, name])
            {
                Ok(_) => break,
                Err(e) if Error::is_busy(&e) && (self.retry || start.elapsed() < self.timeout) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) if Error::is_busy(&e) => return Err(Error::Timeout { removed: 0 }),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(pragma) = name.strip_prefix("sqlite_") {
            set_pragma(&self.conn, pragma, &value, self.timeout).map_err(|e| match e {
                PragmaError::Timeout => Error::Timeout { removed: 0 },
                PragmaError::Sqlite(e) => Error::Sqlite(e),
            })?;
        }
        if name == "eviction_policy"
            && let Scalar::Str(p) = &value
            && let Some(sql) = EvictionPolicy::from_name(p).and_then(|p| p.init_sql())
        {
            // core.py creates a policy's index only when opening; creating it
            // now keeps culling fast after a reset.
            self.conn.execute(sql, [])?;
        }
        self.settings.borrow_mut().values.insert(name.to_string(), value.clone());
        Ok(value)
    }

    /// Every Settings row as stored now (another process may have reset
    /// some), refreshing this handle's view.
    pub fn read_settings(&self) -> Result<Settings> {
        let settings = Settings { values: settings_rows(&self.conn)? };
        *self.settings.borrow_mut() = settings.clone();
        Ok(settings)
    }

    /// Whether `reset(name, value)` would accept the value, without
    /// changing anything.
    pub fn check_setting(&self, name: &str, value: &Scalar) -> Result<()> {
        validate_setting(name, value).map_err(|reason| Error::BadSetting {
            name: name.into(),
            value: value.to_string(),
            reason,
        })
    }

    /// `Cache.create_tag_index`.
    pub fn create_tag_index(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.conn.execute(CREATE_TAG_INDEX, [])?;
        self.reset("tag_index", Some(Scalar::Int(1)))?;
        Ok(())
    }

    /// `Cache.drop_tag_index`.
    pub fn drop_tag_index(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.conn.execute(DROP_TAG_INDEX, [])?;
        self.reset("tag_index", Some(Scalar::Int(0)))?;
        Ok(())
    }
}

/// Every Settings row, NULL values left out (`SELECT key, value FROM
/// Settings`, read by opening and by [`Cache::read_settings`]).
pub(super) fn settings_rows(conn: &Connection) -> rusqlite::Result<BTreeMap<String, Scalar>> {
    let mut stmt = conn.prepare_cached("SELECT key, value FROM Settings")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, SqlValue>(1)?)))?;
    let mut values = BTreeMap::new();
    for row in rows {
        let (k, v) = row?;
        if let Some(v) = scalar_from_owned(v) {
            values.insert(k, v);
        }
    }
    Ok(values)
}

/// Rejects setting values diskcache would choke on later, and anything that
/// would be unsafe to format into a PRAGMA.
pub(super) fn validate_setting(name: &str, value: &Scalar) -> std::result::Result<(), String> {
    match name {
        "eviction_policy" => match value {
            Scalar::Str(p) if EvictionPolicy::from_name(p).is_some() => Ok(()),
            _ => Err("must be one of none, least-recently-stored, least-recently-used, least-frequently-used".into()),
        },
        "statistics" | "tag_index" => match value {
            Scalar::Int(0 | 1) => Ok(()),
            _ => Err("must be 0 or 1".into()),
        },
        "size_limit" | "cull_limit" | "disk_min_file_size" | "count" | "size" | "hits" | "misses" => match value {
            Scalar::Int(n) if *n >= 0 || matches!(name, "count" | "size") => Ok(()),
            // FanoutCache stores each shard's share of its size limit as a
            // float (`size_limit / shards`: 67108864.0 for dspy's 16 shards),
            // and python-diskcache takes any number.
            Scalar::Float(f)
                if f.is_finite() && *f >= 0.0 && matches!(name, "size_limit" | "cull_limit" | "disk_min_file_size") =>
            {
                Ok(())
            }
            _ => Err("must be a non-negative integer".into()),
        },
        "disk_pickle_protocol" => match value {
            Scalar::Int(0..=5) => Ok(()),
            _ => Err("must be an integer from 0 to 5".into()),
        },
        _ if name.starts_with("sqlite_") => {
            let pragma = &name[7..];
            if pragma.is_empty() || !pragma.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                return Err("not a pragma name".into());
            }
            match value {
                Scalar::Int(_) => Ok(()),
                Scalar::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => Ok(()),
                _ => Err("a pragma value must be an integer or a plain word".into()),
            }
        }
        _ => Ok(()),
    }
}

pub(super) enum PragmaError {
    Timeout,
    Sqlite(rusqlite::Error),
}

/// Sets `PRAGMA name = value` unless it already has that value (core.py's
/// `reset` for `sqlite_*`: journal mode and auto vacuum can be slow or
/// fail to change once tables exist), retrying while the database is locked.
pub(super) fn set_pragma(
    conn: &Connection,
    pragma: &str,
    value: &Scalar,
    timeout: Duration,
) -> std::result::Result<(), PragmaError> {
    let start = Instant::now();
    loop {
        let attempt = (|| -> rusqlite::Result<()> {
            let current: Option<SqlValue> = conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0)).optional()?;
            let same = match (&current, value) {
                (Some(SqlValue::Integer(a)), Scalar::Int(b)) => a == b,
                (Some(SqlValue::Text(a)), Scalar::Str(b)) => a.eq_ignore_ascii_case(b),
                _ => false,
            };
            if !same {
                let mut stmt = conn.prepare(&format!("PRAGMA {pragma} = {value}"))?;
                let mut rows = stmt.query([])?;
                while rows.next()?.is_some() {}
            }
            Ok(())
        })();
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) if Error::is_busy(&e) && start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(1)),
            Err(e) if Error::is_busy(&e) => return Err(PragmaError::Timeout),
            Err(e) => return Err(PragmaError::Sqlite(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{TestCache, int, key};
    use crate::cache::types::Value;

    #[test]
    fn reset_validates_writes_back_and_runs_pragmas() {
        let t = TestCache::new();
        assert!(matches!(t.reset("eviction_policy", Some(Scalar::Str("bogus".into()))), Err(Error::BadSetting { .. })));
        assert!(matches!(
            t.reset("sqlite_cache_size", Some(Scalar::Str("1; DROP".into()))),
            Err(Error::BadSetting { .. })
        ));
        assert!(matches!(t.reset("cull_limit", Some(int(-1))), Err(Error::BadSetting { .. })));
        assert!(matches!(t.reset("no_such_setting", None), Err(Error::BadSetting { .. })));
        assert_eq!(t.reset("cull_limit", Some(int(4))).unwrap(), int(4));
        assert_eq!(t.settings().cull_limit(), 4);
        assert_eq!(settings_rows(&t.conn).unwrap().get("cull_limit"), Some(&int(4)));
        t.reset("sqlite_cache_size", Some(int(777))).unwrap();
        let size: i64 = t.conn.query_row("PRAGMA cache_size", [], |r| r.get(0)).unwrap();
        assert_eq!(size, 777);
        // A peer's reset is seen by read_settings.
        let peer = t.try_clone().unwrap();
        peer.reset("size_limit", Some(int(5_000_000))).unwrap();
        assert_eq!(t.read_settings().unwrap().size_limit(), 5_000_000);
    }

    #[test]
    fn stats_count_hits_and_misses_and_len_and_volume_follow_the_counters() {
        let t = TestCache::new();
        assert_eq!(t.stats(true, false).unwrap(), (0, 0));
        t.set(&key("a"), &Value::Bytes(vec![0; 40_000]), None, None).unwrap();
        t.get(&key("a")).unwrap();
        t.get(&key("a")).unwrap();
        t.get(&key("b")).unwrap();
        assert_eq!(t.stats(false, true).unwrap(), (2, 1), "then zeroed and turned off");
        t.get(&key("b")).unwrap();
        assert_eq!(t.stats(false, false).unwrap(), (0, 0));
        assert_eq!(t.len().unwrap(), 1);
        assert!(!t.is_empty().unwrap());
        let pages: i64 = t.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        assert_eq!(t.volume().unwrap(), pages * t.page_size + 40_000);
    }

    #[test]
    fn the_tag_index_follows_its_setting() {
        let t = TestCache::new();
        let has_index = || -> bool {
            t.conn
                .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'Cache_tag_rowid'", [], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap()
                == 1
        };
        assert!(!has_index());
        t.create_tag_index().unwrap();
        assert!(has_index() && t.settings().tag_index());
        t.drop_tag_index().unwrap();
        assert!(!has_index() && !t.settings().tag_index());
    }
}
