//! Opening the caches the subcommands name (never creating one where there was none), and a FanoutCache's shards.

use std::path::{Path, PathBuf};

use diskcachefs::cache::{Cache, CacheOptions};

use super::exit::Failure;

/// Opens a cache that must already exist, without writing to it.
pub(crate) fn open_existing(dir: &Path) -> Result<Cache, Failure> {
    require_cache(dir)?;
    Ok(Cache::open_with(dir, CacheOptions { read_only: true, ..CacheOptions::default() })?)
}

/// Opens a cache that must already exist, for use (a get counts as a hit
/// or miss and updates access times, as in python-diskcache).
/// A cache this user may not write (read-only media, another user's
/// directory) is opened read-only instead: its gets are then not counted.
pub(crate) fn open_existing_rw(dir: &Path) -> Result<Cache, Failure> {
    require_cache(dir)?;
    if !may_write(dir) {
        return open_existing(dir);
    }
    Ok(Cache::open(dir)?)
}

/// Whether this process may write the cache directory and its `cache.db`
/// (access(2) with W_OK: EROFS on read-only media, EACCES on another's).
pub(crate) fn may_write(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    [dir.to_path_buf(), dir.join(diskcachefs::cache::settings::DBNAME)].iter().all(|p| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            // SAFETY: a NUL-terminated path; access reads it only.
            .is_ok_and(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0)
    })
}

/// Reading commands never create a cache where there was none.
pub(crate) fn require_cache(dir: &Path) -> Result<(), Failure> {
    if !dir.join(diskcachefs::cache::settings::DBNAME).is_file() {
        return Err(Failure(format!("{}: no python-diskcache cache here (no cache.db)", dir.display())));
    }
    Ok(())
}

/// A FanoutCache's shard directories (`000`, `001`, ...), or `None` for a
/// plain cache directory.
pub(crate) fn shard_dirs(dir: &Path) -> Option<Vec<PathBuf>> {
    if !diskcachefs::cache::fanout::is_fanout_directory(dir) {
        return None;
    }
    let mut dirs = Vec::new();
    while dir.join(format!("{:03}", dirs.len())).join(diskcachefs::cache::settings::DBNAME).is_file() {
        dirs.push(dir.join(format!("{:03}", dirs.len())));
    }
    Some(dirs)
}
