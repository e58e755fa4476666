//! A per-handle cache of small values that is exactly as fresh as SQLite.
//!
//! Why: on this machine a `get` is ~2.5 us of which ~1.6 us is SQLite
//! taking and releasing the WAL read lock (two `fcntl` calls), a floor no
//! query can avoid. Repeated gets of the same key can skip SQLite entirely
//! if we can tell, without a lock, that nobody committed since we read it.
//!
//! How: in WAL mode every commit, by any process, rewrites the WAL-index
//! header at the start of `cache.db-shm` (its frame count and change
//! counter grow; a WAL restart changes its salts). We map that file
//! read-only and compare the header to the one seen when the cache was
//! filled: equal means no commit happened, so every cached value is still
//! what SQLite would return. A different or torn header (two copies that
//! disagree while a writer updates them) empties the cache.
//!
//! Safety of the mapping: SQLite only truncates or recreates the -shm file
//! when a connection finds itself the only one (it takes the file's
//! exclusive "DMS" lock), which it cannot while our own connection is open;
//! the mapping is made only after our connection has opened the file.
//!
//! Ordering: the header is read *before* the SQL that fills an entry, so
//! an entry is never tagged with a header newer than the data it holds; a
//! commit in between only makes the next comparison fail (a spurious miss).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::types::{Entry, Key, Scalar};

/// The first WAL-index header copy is 48 bytes; the second follows it.
const HEADER_LEN: usize = 48;
/// Byte 12 of the header is `isInit`.
const IS_INIT: usize = 12;
/// Values larger than this are not cached (files are never cached).
const MAX_VALUE: usize = 64 * 1024;
/// The cache empties itself when it holds more than this many bytes.
const MAX_BYTES: usize = 64 << 20;

pub(crate) type Header = [u8; HEADER_LEN];

/// A read-only mapping of the start of `cache.db-shm`.
pub(crate) struct WalWatch {
    base: *const u8,
    len: usize,
    _file: File,
}

// SAFETY: the mapping is read-only and only read with volatile loads.
unsafe impl Send for WalWatch {}

impl WalWatch {
    /// Maps `<db>-shm`; `None` when the cache is not in WAL mode (no -shm)
    /// or the file is not initialized yet.
    pub(crate) fn open(db_path: &Path) -> Option<WalWatch> {
        let mut shm = db_path.as_os_str().to_owned();
        shm.push("-shm");
        let file = File::open(&shm).ok()?;
        let len = 4096usize;
        if file.metadata().ok()?.len() < len as u64 {
            return None;
        }
        // SAFETY: a fresh read-only shared mapping of an open file.
        let base =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        if base == libc::MAP_FAILED {
            return None;
        }
        Some(WalWatch { base: base as *const u8, len, _file: file })
    }

    /// The current header, or `None` while a writer is updating it.
    pub(crate) fn header(&self) -> Option<Header> {
        let mut first = [0u8; HEADER_LEN];
        let mut second = [0u8; HEADER_LEN];
        for i in 0..HEADER_LEN {
            // SAFETY: both copies lie within the mapped page.
            unsafe {
                first[i] = std::ptr::read_volatile(self.base.add(i));
                second[i] = std::ptr::read_volatile(self.base.add(HEADER_LEN + i));
            }
        }
        (first == second && first[IS_INIT] != 0).then_some(first)
    }
}

impl Drop for WalWatch {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// Cached entries, valid for one WAL-index header.
#[derive(Default)]
pub(crate) struct ValueCache {
    header: Option<Header>,
    /// By key hash; each bucket holds the (rarely several) keys with it.
    /// (An int and a float key that SQL treats as equal are simply cached
    /// twice, consistently.)
    entries: HashMap<u64, Vec<(Key, Entry)>>,
    bytes: usize,
    /// Gets served from here, for diagnostics and tests.
    pub(crate) hits: u64,
}

/// FNV-1a over a key's type and bytes: no allocation on the lookup path.
fn key_hash(key: &Key) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    match key {
        Key::Str(s) => {
            eat(&[0]);
            eat(s.as_bytes());
        }
        Key::Bytes(b) => {
            eat(&[1]);
            eat(b);
        }
        Key::Int(i) => {
            eat(&[2]);
            eat(&i.to_le_bytes());
        }
        Key::Float(f) => {
            eat(&[3]);
            eat(&f.to_bits().to_le_bytes());
        }
        Key::Pickled(p) => {
            eat(&[4]);
            eat(p);
        }
    }
    h
}

fn entry_size(entry: &Entry) -> usize {
    use super::types::Value;
    let value = match &entry.value {
        Value::Bytes(b) | Value::Pickle(b) => b.len(),
        Value::Str(s) => s.len(),
        Value::Int(_) | Value::Float(_) | Value::None => 8,
    };
    let tag = match &entry.tag {
        Some(Scalar::Str(s)) => s.len(),
        Some(Scalar::Bytes(b)) => b.len(),
        _ => 8,
    };
    value + tag + 64
}

impl ValueCache {
    /// Starts a lookup under `header`: forgets everything if the database
    /// changed since the entries were cached.
    pub(crate) fn validate(&mut self, header: Header) {
        if self.header != Some(header) {
            self.clear();
            self.header = Some(header);
        }
    }

    pub(crate) fn get(&self, key: &Key) -> Option<&Entry> {
        self.entries.get(&key_hash(key))?.iter().find(|(k, _)| k == key).map(|(_, e)| e)
    }

    /// Remembers a value read by SQL after [`ValueCache::validate`] with
    /// the header read before that SQL.
    pub(crate) fn insert(&mut self, key: &Key, entry: &Entry) {
        let size = entry_size(entry);
        if size > MAX_VALUE {
            return;
        }
        if self.bytes + size > MAX_BYTES {
            let header = self.header;
            self.clear();
            self.header = header;
        }
        self.bytes += size;
        let bucket = self.entries.entry(key_hash(key)).or_default();
        match bucket.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = entry.clone(),
            None => bucket.push((key.clone(), entry.clone())),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.header = None;
    }
}
