//! `FanoutCache` (diskcache/fanout.py): a directory of shard caches `000/`,
//! `001/`, ..., each a whole [`Cache`], with no `cache.db` at the top (the
//! layout of dspy's and Django's caches). A key lives in the shard
//! `Disk.hash(key) % shards`, so that python-diskcache's `FanoutCache`
//! finds what is stored here and never sees a key twice. The number of
//! shards is recorded only by the folder names.

use std::path::{Path, PathBuf};

use super::core::{Cache, CacheOptions, CheckWarning};
use super::error::{OpenError, Result};
use super::meta::RenameOutcome;
use super::settings::DBNAME;
use super::types::{Key, Scalar, Value};

/// `zlib.adler32`.
fn adler32(bytes: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in bytes.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// `Disk.hash(key)`: adler32 of a str's UTF-8, of bytes, of a pickled key's
/// pickle, or of a float's big-endian IEEE bytes; an int modulo
/// 0xFFFFFFFF (Python's modulo: never negative).
pub fn disk_hash(key: &Key) -> u64 {
    const MASK: i128 = 0xFFFF_FFFF;
    match key {
        Key::Str(s) => u64::from(adler32(s.as_bytes())),
        Key::Bytes(b) | Key::Pickled(b) => u64::from(adler32(b)),
        Key::Int(i) => i128::from(*i).rem_euclid(MASK) as u64,
        Key::Float(f) => u64::from(adler32(&f.to_be_bytes())),
    }
}

/// The shard a key lives in among `count` (`FanoutCache._hash(key) % count`).
pub fn shard_of(key: &Key, count: usize) -> usize {
    (disk_hash(key) % count.max(1) as u64) as usize
}

/// Whether `directory` is a FanoutCache's: no `cache.db` of its own, and
/// a shard `000/` that has one.
pub fn is_fanout_directory(directory: &Path) -> bool {
    !directory.join(DBNAME).exists() && directory.join("000").join(DBNAME).is_file()
}

/// A FanoutCache directory's shard directories, `000`, `001`, ... as long
/// as each holds a `cache.db` (how [`FanoutCache::open_existing`] counts
/// them); `None` when `directory` is not a FanoutCache's.
pub fn shard_directories(directory: &Path) -> Option<Vec<PathBuf>> {
    if !is_fanout_directory(directory) {
        return None;
    }
    let mut dirs = Vec::new();
    loop {
        let shard = directory.join(format!("{:03}", dirs.len()));
        if !shard.join(DBNAME).is_file() {
            return Some(dirs);
        }
        dirs.push(shard);
    }
}

pub struct FanoutCache {
    directory: PathBuf,
    shards: Vec<Cache>,
}

impl FanoutCache {
    /// Opens the FanoutCache in `directory`, with as many shards as it has
    /// consecutive folders `000`, `001`, ... holding a `cache.db`.
    pub fn open_existing(directory: &Path, options: CacheOptions) -> std::result::Result<FanoutCache, OpenError> {
        let mut count = 0;
        while directory.join(format!("{count:03}")).join(DBNAME).is_file() {
            count += 1;
        }
        if count == 0 {
            return Err(OpenError::Unreadable {
                path: directory.to_path_buf(),
                reason: "no FanoutCache shard (000/cache.db) here".into(),
            });
        }
        FanoutCache::open_with(directory, count, options)
    }

    /// `FanoutCache(directory, shards)`: each shard opened (created if
    /// needed) as a `Cache` with `options`.
    pub fn open_with(
        directory: &Path,
        shards: usize,
        options: CacheOptions,
    ) -> std::result::Result<FanoutCache, OpenError> {
        let shards = (0..shards.max(1))
            .map(|n| Cache::open_with(&directory.join(format!("{n:03}")), options.clone()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(FanoutCache { directory: directory.to_path_buf(), shards })
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    pub fn shards(&self) -> &[Cache] {
        &self.shards
    }

    /// The shards' caches, in shard order (`000` first).
    pub fn into_shards(self) -> Vec<Cache> {
        self.shards
    }

    /// The shard `key` lives in (`FanoutCache._hash(key) % count`).
    pub fn shard_index(&self, key: &Key) -> usize {
        shard_of(key, self.shards.len())
    }

    pub fn shard(&self, key: &Key) -> &Cache {
        &self.shards[self.shard_index(key)]
    }

    pub fn get(&self, key: &Key) -> Result<Option<Value>> {
        self.shard(key).get(key)
    }

    pub fn set(&self, key: &Key, value: &Value, expire: Option<f64>, tag: Option<&Scalar>) -> Result<bool> {
        self.shard(key).set(key, value, expire, tag)
    }

    pub fn delete(&self, key: &Key) -> Result<bool> {
        self.shard(key).delete(key)
    }

    /// Entries in all shards (`len(FanoutCache)`).
    pub fn len(&self) -> Result<i64> {
        self.shards.iter().map(Cache::len).sum()
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// `FanoutCache.volume()`: the shards' volumes added.
    pub fn volume(&self) -> Result<i64> {
        self.shards.iter().map(Cache::volume).sum()
    }

    /// `FanoutCache.check(fix)`: every shard's warnings, in shard order.
    pub fn check(&self, fix: bool) -> Result<Vec<CheckWarning>> {
        let mut out = Vec::new();
        for shard in &self.shards {
            out.extend(shard.check(fix)?);
        }
        Ok(out)
    }
}

/// Moves a live entry from one shard to another (a rename whose new key
/// hashes to another shard): the row is copied into `to` under `new`, its
/// value file copied into `to`'s directory, then the row is deleted from
/// `from`. Both transactions nest here, `to`'s inside `from`'s, so the
/// target commits first: a crash between the two COMMITs leaves the entry
/// under both keys, never under neither. A live `new` is replaced unless
/// `replace` is false. Times, tag, expiry, access count and type are kept;
/// the rowid is `to`'s next.
pub fn move_entry(from: &Cache, to: &Cache, old: &Key, new: &Key, replace: bool) -> Result<RenameOutcome> {
    use rusqlite::OptionalExtension;
    use rusqlite::params;
    use rusqlite::types::Value as SqlValue;
    let now = from.now();
    from.in_transaction(|| {
        to.in_transaction(|| {
            type Row = (i64, f64, Option<f64>, f64, i64, SqlValue, i64, i64, Option<String>, SqlValue);
            let row: Option<Row> = from
                .conn()
                .prepare_cached(
                    "SELECT rowid, store_time, expire_time, access_time, access_count, tag, size, mode, filename, \
                     value FROM Cache WHERE key = ? AND raw = ? AND (expire_time IS NULL OR expire_time > ?)",
                )?
                .query_row(params![old, old.raw(), now], |r| {
                    Ok((
                        r.get(0)?,
                        r.get::<_, Option<f64>>(1)?.unwrap_or(0.0),
                        r.get(2)?,
                        r.get::<_, Option<f64>>(3)?.unwrap_or(0.0),
                        r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                        r.get(5)?,
                        r.get::<_, Option<i64>>(6)?.unwrap_or(0),
                        r.get::<_, Option<i64>>(7)?.unwrap_or(0),
                        r.get(8)?,
                        r.get(9)?,
                    ))
                })
                .optional()?;
            let Some((rowid, store_time, expire_time, access_time, access_count, tag, size, mode, filename, value)) =
                row
            else {
                return Ok(RenameOutcome::SourceMissing);
            };
            let target: Option<(i64, Option<String>, Option<f64>)> = to
                .conn()
                .prepare_cached("SELECT rowid, filename, expire_time FROM Cache WHERE key = ? AND raw = ?")?
                .query_row(params![new, new.raw()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            if let Some((target_rowid, target_file, target_expire)) = target {
                if !replace && target_expire.is_none_or(|t| t > now) {
                    return Ok(RenameOutcome::TargetExists);
                }
                to.conn().prepare_cached("DELETE FROM Cache WHERE rowid = ?")?.execute([target_rowid])?;
                to.cleanup_later(target_file);
            }
            let new_file = match &filename {
                Some(name) => {
                    let mut source = match from.disk().open_value(name) {
                        Ok(f) => f,
                        Err(super::disk::FetchError::Missing) => return Ok(RenameOutcome::SourceMissing),
                        Err(super::disk::FetchError::Unsafe) => return Err(from.unsafe_filename(rowid, name)),
                        Err(super::disk::FetchError::Io(e)) => return Err(from.io_err(name, e)),
                    };
                    let (made, _) = to
                        .disk()
                        .write_new(|f| std::io::copy(&mut source, f))
                        .map_err(|e| to.io_err("a moved value file", e))?;
                    to.written.borrow_mut().push(made.clone());
                    Some(made)
                }
                None => None,
            };
            to.conn()
                .prepare_cached(
                    "INSERT INTO Cache(key, raw, store_time, expire_time, access_time, access_count, tag, size, \
                     mode, filename, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    new,
                    new.raw(),
                    store_time,
                    expire_time,
                    access_time,
                    access_count,
                    tag,
                    size,
                    mode,
                    new_file,
                    value
                ])?;
            from.conn().prepare_cached("DELETE FROM Cache WHERE rowid = ?")?.execute([rowid])?;
            from.cleanup_later(filename);
            Ok(RenameOutcome::Renamed)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_is_zlibs() {
        // zlib.adler32(b'') == 1, (b'a') == 0x00620062, (b'Wikipedia') == 0x11E60398.
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"a"), 0x0062_0062);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        let long = vec![0xFFu8; 100_000];
        let (mut a, mut b) = (1u64, 0u64);
        for &x in &long {
            a = (a + u64::from(x)) % 65_521;
            b = (b + a) % 65_521;
        }
        assert_eq!(u64::from(adler32(&long)), (b << 16) | a);
    }

    #[test]
    fn int_keys_hash_as_pythons_modulo() {
        assert_eq!(disk_hash(&Key::Int(5)), 5);
        assert_eq!(disk_hash(&Key::Int(-1)), 0xFFFF_FFFE);
        assert_eq!(disk_hash(&Key::Int(0xFFFF_FFFF)), 0);
        assert_eq!(disk_hash(&Key::Int(i64::MIN)), (i128::from(i64::MIN).rem_euclid(0xFFFF_FFFF)) as u64);
    }
}
