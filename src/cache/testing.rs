//! Helpers for the engine's unit tests (compiled for tests only): a cache in
//! a temporary directory, on a clock the test moves, and a look at what is
//! on disk. No Python: these tests are the fast tier.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::core::{Cache, CacheOptions};
use super::types::{Key, Scalar};

/// The clock's reading when a test starts.
pub const START: f64 = 1_000_000.0;

/// A [`Cache`] in its own temporary directory, on a test clock.
pub struct TestCache {
    pub cache: Cache,
    clock: Arc<Mutex<f64>>,
    // Last: removed after the cache is closed.
    dir: tempfile::TempDir,
}

impl TestCache {
    /// A new cache with diskcache's defaults.
    pub fn new() -> TestCache {
        TestCache::with(&[])
    }

    /// A new cache with these settings given at open.
    pub fn with(settings: &[(&str, Scalar)]) -> TestCache {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(Mutex::new(START));
        let cache = Cache::open_with(dir.path(), options(&clock, settings)).unwrap();
        TestCache { cache, clock, dir }
    }

    /// Moves the clock forward.
    pub fn advance(&self, seconds: f64) {
        *self.clock.lock().unwrap() += seconds;
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Another handle on the same directory and clock, opened afresh.
    pub fn reopen(&self, settings: &[(&str, Scalar)]) -> Cache {
        Cache::open_with(self.dir.path(), options(&self.clock, settings)).unwrap()
    }

    /// Every `.val` file under the directory, relative, sorted.
    pub fn value_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out.sort();
        out
    }

    /// A column of `key`'s row, whatever its type, as SQLite has it.
    pub fn column(&self, key: &str, column: &str) -> rusqlite::types::Value {
        self.cache.conn.query_row(&format!("SELECT {column} FROM Cache WHERE key = ?"), [key], |r| r.get(0)).unwrap()
    }
}

impl Deref for TestCache {
    type Target = Cache;
    fn deref(&self) -> &Cache {
        &self.cache
    }
}

fn options(clock: &Arc<Mutex<f64>>, settings: &[(&str, Scalar)]) -> CacheOptions {
    let clock = clock.clone();
    CacheOptions {
        settings: settings.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        clock: Arc::new(move || *clock.lock().unwrap()),
        ..CacheOptions::default()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            walk(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "val") {
            out.push(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}

/// A str key.
pub fn key(s: &str) -> Key {
    Key::Str(s.into())
}

/// An int setting.
pub fn int(n: i64) -> Scalar {
    Scalar::Int(n)
}
