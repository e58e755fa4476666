//! [`Store`]: the tree's one door to the engine (`src/cache`). A store is
//! either one python-diskcache `Cache` directory or a `FanoutCache`'s
//! shards (`000/`, `001/`, ...), and the tree above it never asks which:
//! - **By key** (an entry's metadata, value, times, tag, deletion): the
//!   shard python-diskcache's `FanoutCache` uses, `Disk.hash(key) % n`.
//! - **Listings** merge the shards: keys in SQLite's order of keys (a
//!   k-way merge), rowid listings by a cursor that names the shard above
//!   [`CURSOR_SHIFT`] and the rowid below it.
//! - **Aggregates** (volume, expire, cull, clear, check, stats) are the
//!   shards' summed, as `FanoutCache` sums them; settings are read from
//!   shard 0 (`size_limit` summed) and written to every shard
//!   (`size_limit` divided, as `FanoutCache(size_limit=X)` stores it).
//! - **Changes** ([`StoreConn::transact_on`]) lock the shards of the keys
//!   they touch and nothing else; a rename across shards moves the entry
//!   ([`crate::cache::fanout::move_entry`]).
//!
//! Each shard has an [`Engine`] (its pools of reader and writer handles
//! and its bookkeeping); a request's [`StoreConn`] checks a shard's handle
//! out the first time it touches that shard, so a request about one key
//! of a 16-shard cache costs one checkout, as on a one-cache mount.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value as Json;

use crate::cache::disk::Disk;
use crate::cache::{
    self, Cache, CheckWarning, EntryMeta, FanoutCache, Key, KeyFrom, Number, OpenError, RawContent, RenameOutcome,
    Scalar, Settings, Value,
};
use crate::fs::engine::{Conn, Engine};

/// A rowid listing's cursor: the shard above this bit, the rowid below.
pub const CURSOR_SHIFT: u32 = 56;
const ROWID_MASK: u64 = (1 << CURSOR_SHIFT) - 1;
/// Shards a cursor can name (the top bit stays clear: listing offsets are
/// signed to the kernel).
pub const MAX_SHARDS: usize = 127;

type Result<T> = std::result::Result<T, cache::Error>;

pub struct Store {
    directory: PathBuf,
    /// One engine per shard; one in all for a plain cache.
    engines: Vec<Arc<Engine>>,
    /// Each shard's value-file directory, held open: writers stage their
    /// copies there without checking out an SQLite handle.
    disks: Vec<Disk>,
    /// A FanoutCache's shards (even a one-shard one), not a plain cache.
    sharded: bool,
    /// Held by a change of several shards while it locks them
    /// ([`StoreConn::transact_on`]).
    several: std::sync::Mutex<()>,
    /// Handles checked out of the pools so far (`stats`' `internals`).
    checkouts: std::sync::atomic::AtomicU64,
}

impl Store {
    /// The store over one cache; `cache` becomes its engine's primary
    /// handle.
    pub fn one(cache: Cache) -> std::io::Result<Store> {
        let directory = cache.directory().to_path_buf();
        let disks = vec![cache.disk().try_clone()?];
        Ok(Store {
            directory,
            engines: vec![Arc::new(Engine::new(cache))],
            disks,
            sharded: false,
            several: Default::default(),
            checkouts: Default::default(),
        })
    }

    /// The store over a FanoutCache's shards.
    pub fn sharded(fanout: FanoutCache) -> std::io::Result<Store> {
        let directory = fanout.directory().to_path_buf();
        let shards = fanout.into_shards();
        if shards.len() > MAX_SHARDS {
            return Err(std::io::Error::other(format!(
                "{}: {} shards; at most {MAX_SHARDS} are served",
                directory.display(),
                shards.len()
            )));
        }
        let disks = shards.iter().map(|c| c.disk().try_clone()).collect::<std::io::Result<Vec<_>>>()?;
        let engines = shards.into_iter().map(|c| Arc::new(Engine::new(c))).collect();
        Ok(Store {
            directory,
            engines,
            disks,
            sharded: true,
            several: Default::default(),
            checkouts: Default::default(),
        })
    }

    /// Opens what `directory` holds: a FanoutCache's shards, or one cache.
    pub fn open(directory: &Path, options: cache::CacheOptions) -> std::result::Result<Store, OpenError> {
        let io = |source| OpenError::Directory { path: directory.to_path_buf(), source };
        if cache::fanout::is_fanout_directory(directory) {
            Store::sharded(FanoutCache::open_existing(directory, options)?).map_err(io)
        } else {
            Store::one(Cache::open_with(directory, options)?).map_err(io)
        }
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    pub fn is_sharded(&self) -> bool {
        self.sharded
    }

    pub fn shard_count(&self) -> usize {
        self.engines.len()
    }

    /// The shard `key` lives in.
    pub fn shard_of(&self, key: &Key) -> usize {
        shard_of(self.engines.len(), key)
    }

    /// The directory of shard `shard`'s value files.
    pub fn disk(&self, shard: usize) -> &Disk {
        &self.disks[shard]
    }

    /// The cache directory of shard `shard` (the store's own for a plain
    /// cache).
    pub fn shard_directory(&self, shard: usize) -> PathBuf {
        if self.sharded { self.directory.join(format!("{shard:03}")) } else { self.directory.clone() }
    }

    /// Read-only handles for a request.
    pub fn reader(&self) -> StoreConn<'_> {
        StoreConn::pooled(self, false)
    }

    /// Read-write handles for a request that changes the cache.
    pub fn writer(&self) -> StoreConn<'_> {
        StoreConn::pooled(self, true)
    }

    /// A handle per shard, opened read-only for a thread of its own (the
    /// change watcher).
    pub fn open_watch_handles(&self) -> std::result::Result<StoreConn<'static>, OpenError> {
        let options = || cache::CacheOptions { read_only: true, ..cache::CacheOptions::default() };
        let caches = (0..self.engines.len())
            .map(|s| Cache::open_with(&self.shard_directory(s), options()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(StoreConn {
            store: None,
            sharded: self.sharded,
            writer: false,
            handles: Handles::Owned(caches),
            locked: 0.into(),
            sources: 0.into(),
        })
    }

    /// Handles checked out of the pools so far.
    pub fn checkouts(&self) -> u64 {
        self.checkouts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Call after changing a setting: every pooled handle re-reads them.
    pub fn settings_changed(&self) {
        self.engines.iter().for_each(|e| e.settings_changed());
    }

    /// Notes a `get` through the mount (see [`Engine::note_get`]).
    pub fn note_get(&self, reader: &StoreConn, key: &Key, hit: Option<i64>) {
        let shard = self.shard_of(key);
        if let Ok(c) = reader.shard(shard) {
            self.engines[shard].note_get(c, hit);
        }
    }
}

/// A plain cache's one shard costs no hash.
fn shard_of(count: usize, key: &Key) -> usize {
    if count <= 1 { 0 } else { cache::fanout::shard_of(key, count) }
}

enum Handles {
    /// Checked out of the store's pools on first use, returned on drop.
    Pooled(Vec<OnceCell<Conn>>),
    /// Owned for good (a thread's own handles).
    Owned(Vec<Cache>),
}

/// A request's handles on the store: one per shard it touches. Not
/// `Sync`, like the SQLite handles it holds.
pub struct StoreConn<'a> {
    store: Option<&'a Store>,
    sharded: bool,
    writer: bool,
    handles: Handles,
    /// The shards the change running now has locked, a bit each (0 when
    /// no change runs): writes go to these only.
    locked: std::cell::Cell<u128>,
    /// The shards the change running now moved entries out of: they
    /// commit last.
    sources: std::cell::Cell<u128>,
}

impl<'a> StoreConn<'a> {
    fn pooled(store: &'a Store, writer: bool) -> StoreConn<'a> {
        let cells = (0..store.engines.len()).map(|_| OnceCell::new()).collect();
        StoreConn {
            store: Some(store),
            sharded: store.sharded,
            writer,
            handles: Handles::Pooled(cells),
            locked: 0.into(),
            sources: 0.into(),
        }
    }

    fn count(&self) -> usize {
        match &self.handles {
            Handles::Pooled(cells) => cells.len(),
            Handles::Owned(caches) => caches.len(),
        }
    }

    /// Shard `shard`'s handle, checked out now if this request has none.
    pub fn shard(&self, shard: usize) -> Result<&Cache> {
        match &self.handles {
            Handles::Owned(caches) => Ok(&caches[shard]),
            Handles::Pooled(cells) => {
                if let Some(c) = cells[shard].get() {
                    return Ok(c);
                }
                let engine = &self.store.expect("pooled handles have a store").engines[shard];
                let conn = if self.writer { engine.writer() } else { engine.reader() };
                let conn = conn.map_err(|e| cache::Error::Shard(Box::new(e)))?;
                self.store.expect("pooled").checkouts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = cells[shard].set(conn);
                Ok(cells[shard].get().expect("just set"))
            }
        }
    }

    /// The one cache of a plain store (shard 0 of a FanoutCache): for what
    /// only a plain `Cache` has (queues, Flyte 2's tables), which a
    /// FanoutCache's tree does not show.
    pub fn single(&self) -> Result<&Cache> {
        self.shard(0)
    }

    /// The handle of the shard `key` lives in.
    pub fn of(&self, key: &Key) -> Result<&Cache> {
        self.shard(shard_of(self.count(), key))
    }

    pub fn shard_of(&self, key: &Key) -> usize {
        shard_of(self.count(), key)
    }

    fn all(&self) -> impl Iterator<Item = Result<&Cache>> {
        (0..self.count()).map(|s| self.shard(s))
    }

    /// Runs `f` as one change of the shards of `keys` (all shards when
    /// `None`: a change whose keys are known only inside it, such as a
    /// rename of a directory of keys). Each shard is locked with `BEGIN
    /// IMMEDIATE` before `f` runs; after it, the shards commit one by one,
    /// those `f` moved entries out of ([`StoreConn::rename`]) last, so that
    /// a crash between two COMMITs leaves a moved entry under both keys,
    /// never under neither. Changes of several shards are one at a time
    /// in this daemon (the store's `several` lock, taken before any
    /// shard's), so two of them never wait for each other's shards; a
    /// change of one shard holds one lock and waits for nothing else of
    /// the daemon's before `f`. A plain cache has one shard, whatever the
    /// keys.
    pub fn transact_on<T>(&self, keys: Option<&[&Key]>, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let mut shards: Vec<usize> = match keys {
            Some(keys) => keys.iter().map(|k| self.shard_of(k)).collect(),
            None => (0..self.count()).collect(),
        };
        let mut seen = 0u128;
        shards.retain(|&s| {
            let new = seen & (1 << s) == 0;
            seen |= 1 << s;
            new
        });
        if shards.is_empty() {
            shards.push(0);
            seen = 1;
        }
        if let [only] = shards.as_slice() {
            let cache = self.shard(*only)?;
            let before = self.locked.replace(seen);
            let result = cache.transact(|_| f());
            self.locked.set(before);
            return result;
        }
        let _several = self.store.map(|store| store.several.lock().unwrap_or_else(|e| e.into_inner()));
        let mut begun = Vec::new();
        for &s in &shards {
            let began = self.shard(s).and_then(|c| c.begin().map(|()| c));
            match began {
                Ok(c) => begun.push((s, c)),
                Err(e) => {
                    for (_, c) in begun {
                        let _ = c.end(false);
                    }
                    return Err(e);
                }
            }
        }
        let before = self.locked.replace(seen);
        self.sources.set(0);
        let result = f();
        self.locked.set(before);
        let sources = self.sources.replace(0);
        if result.is_err() {
            for (_, c) in begun {
                let _ = c.end(false);
            }
            return result;
        }
        // Targets first, the shards moved out of last.
        begun.sort_by_key(|(s, _)| sources & (1 << s) != 0);
        let mut failed = None;
        for (_, c) in begun {
            let ended = if failed.is_none() { c.end(true) } else { c.end(false) };
            if let Err(e) = ended {
                failed.get_or_insert(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => result,
        }
    }

    /// The handle of `key`'s shard, to write: inside a change, only a
    /// shard the change locked (else [`cache::Error::ShardNotLocked`]: its
    /// own `BEGIN IMMEDIATE` would wait for a lock with the tables held).
    fn for_write(&self, key: &Key) -> Result<&Cache> {
        let shard = self.shard_of(key);
        let locked = self.locked.get();
        if locked != 0 && locked & (1 << shard) == 0 {
            return Err(cache::Error::ShardNotLocked { key: format!("{key:?}") });
        }
        self.shard(shard)
    }

    // -------------------------------------------------------------------
    // By key.

    pub fn entry_meta(&self, key: &Key) -> Result<Option<EntryMeta>> {
        self.of(key)?.entry_meta(key)
    }

    pub fn open_raw(&self, key: &Key) -> Result<Option<(EntryMeta, RawContent)>> {
        self.of(key)?.open_raw(key)
    }

    pub fn get(&self, key: &Key) -> Result<Option<Value>> {
        self.of(key)?.get(key)
    }

    pub fn replace_value(
        &self,
        key: &Key,
        value: cache::NewValue,
        expire_time: cache::Attr<Option<f64>>,
        tag: cache::Attr<Option<Scalar>>,
    ) -> Result<f64> {
        self.for_write(key)?.replace_value(key, value, expire_time, tag)
    }

    pub fn set_times(&self, key: &Key, store_time: Option<f64>, access_time: Option<f64>) -> Result<bool> {
        self.for_write(key)?.set_times(key, store_time, access_time)
    }

    pub fn set_tag(&self, key: &Key, tag: Option<&Scalar>) -> Result<bool> {
        self.for_write(key)?.set_tag(key, tag)
    }

    pub fn touch_at(&self, key: &Key, expire_time: Option<f64>) -> Result<bool> {
        self.for_write(key)?.touch_at(key, expire_time)
    }

    pub fn delete(&self, key: &Key) -> Result<bool> {
        self.for_write(key)?.delete(key)
    }

    pub fn incr(&self, key: &Key, delta: i64, default: Option<i64>) -> Result<Number> {
        self.for_write(key)?.incr(key, delta, default)
    }

    pub fn decr(&self, key: &Key, delta: i64, default: Option<i64>) -> Result<Number> {
        self.for_write(key)?.decr(key, delta, default)
    }

    /// Renames a live entry, keeping its value, tag, expiry and times; to
    /// a key of another shard, the entry moves there.
    pub fn rename(&self, old: &Key, new: &Key, replace: bool) -> Result<RenameOutcome> {
        let (from, to) = (self.for_write(old)?, self.for_write(new)?);
        if self.shard_of(old) == self.shard_of(new) {
            return from.rename(old, new, replace);
        }
        let moved = cache::fanout::move_entry(from, to, old, new, replace)?;
        if moved == RenameOutcome::Renamed {
            self.sources.set(self.sources.get() | 1 << self.shard_of(old));
        }
        Ok(moved)
    }

    /// The value-file directory of the shard `key` lives in.
    pub fn disk_of(&self, key: &Key) -> Result<&Disk> {
        Ok(self.of(key)?.disk())
    }

    // -------------------------------------------------------------------
    // Listings, merged over the shards.

    /// Up to `limit` live entries in SQLite's order of keys (see
    /// [`Cache::list_meta_by_key`]), merged over the shards. A key found
    /// outside its own shard (written there by hand) is left out: the
    /// key's own shard is where every reader looks for it.
    pub fn list_meta_by_key(&self, from: &KeyFrom, below: Option<&str>, limit: usize) -> Result<Vec<EntryMeta>> {
        if self.count() == 1 {
            return self.shard(0)?.list_meta_by_key(from, below, limit);
        }
        let mut all = Vec::new();
        for (s, c) in self.all().enumerate() {
            all.extend(c?.list_meta_by_key(from, below, limit)?.into_iter().filter(|m| self.shard_of(&m.key) == s));
        }
        all.sort_by(|a, b| sqlite_key_order(&a.key, &b.key));
        all.truncate(limit);
        Ok(all)
    }

    /// Up to `limit` live entries after `cursor` (0 to begin), in (shard,
    /// rowid) order, each with its own cursor.
    pub fn list_meta(&self, cursor: u64, limit: usize) -> Result<Vec<(u64, EntryMeta)>> {
        self.by_cursor(cursor, limit, |c, after, n| c.list_meta(after, n))
    }

    /// Up to `limit` live entries tagged `tag` after `cursor` (0 to
    /// begin), in (shard, rowid) order, each with its own cursor.
    pub fn list_tagged(&self, tag: &Scalar, cursor: u64, limit: usize) -> Result<Vec<(u64, EntryMeta)>> {
        self.by_cursor(cursor, limit, |c, after, n| c.list_tagged(tag, after, n))
    }

    fn by_cursor(
        &self,
        cursor: u64,
        limit: usize,
        list: impl Fn(&Cache, i64, usize) -> Result<Vec<EntryMeta>>,
    ) -> Result<Vec<(u64, EntryMeta)>> {
        let mut out = Vec::new();
        let (first, mut after) = ((cursor >> CURSOR_SHIFT) as usize, (cursor & ROWID_MASK) as i64);
        for s in first..self.count() {
            let batch = list(self.shard(s)?, after, limit - out.len())?;
            out.extend(batch.into_iter().map(|m| (((s as u64) << CURSOR_SHIFT) | (m.rowid as u64 & ROWID_MASK), m)));
            if out.len() >= limit {
                break;
            }
            after = 0;
        }
        Ok(out)
    }

    pub fn has_live_str_key_in(&self, from: &str, below: &str) -> Result<bool> {
        for c in self.all() {
            if c?.has_live_str_key_in(from, below)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub fn tag_in_use(&self, tag: &Scalar) -> Result<bool> {
        for c in self.all() {
            if c?.tag_in_use(tag)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub fn live_tags(&self) -> Result<Vec<Scalar>> {
        let mut out: Vec<Scalar> = Vec::new();
        for c in self.all() {
            for tag in c?.live_tags()? {
                if !out.contains(&tag) {
                    out.push(tag);
                }
            }
        }
        Ok(out)
    }

    pub fn queue_names(&self) -> Result<(Vec<String>, bool)> {
        let (mut names, mut ints) = (Vec::new(), false);
        for c in self.all() {
            let (n, i) = c?.queue_names()?;
            names.extend(n);
            ints |= i;
        }
        names.sort();
        names.dedup();
        Ok((names, ints))
    }

    pub fn task_keys(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for c in self.all() {
            out.extend(c?.task_keys()?);
        }
        out.sort();
        Ok(out)
    }

    // -------------------------------------------------------------------
    // The store as a whole.

    /// The cache's time (`time.time()` on the engine's clock).
    pub fn now(&self) -> f64 {
        self.shard(0).map_or_else(|_| cache::system_clock()(), Cache::now)
    }

    /// `PRAGMA data_version` of every shard, summed: it changes whenever
    /// another connection commits to any shard (each only grows).
    pub fn data_version(&self) -> Result<i64> {
        self.all().map(|c| c?.data_version()).sum()
    }

    pub fn next_expiry_after(&self, t: f64) -> Result<Option<f64>> {
        let mut next: Option<f64> = None;
        for c in self.all() {
            if let Some(x) = c?.next_expiry_after(t)? {
                next = Some(next.map_or(x, |n| n.min(x)));
            }
        }
        Ok(next)
    }

    pub fn min_file_size(&self) -> Result<i64> {
        Ok(self.shard(0)?.min_file_size())
    }

    pub fn has_tag_index(&self) -> Result<bool> {
        Ok(self.shard(0)?.has_tag_index())
    }

    pub fn volume(&self) -> Result<i64> {
        self.all().map(|c| c?.volume()).sum()
    }

    pub fn expire(&self, now: Option<f64>) -> Result<u64> {
        self.all().map(|c| c?.expire(now)).sum()
    }

    pub fn evict(&self, tag: &Scalar) -> Result<u64> {
        self.all().map(|c| c?.evict(tag)).sum()
    }

    pub fn cull(&self) -> Result<u64> {
        self.all().map(|c| c?.cull()).sum()
    }

    pub fn clear(&self) -> Result<u64> {
        self.all().map(|c| c?.clear()).sum()
    }

    pub fn check(&self, fix: bool) -> Result<Vec<CheckWarning>> {
        let mut out = Vec::new();
        for c in self.all() {
            out.extend(c?.check(fix)?);
        }
        Ok(out)
    }

    /// The settings, as `FanoutCache` shows them: shard 0's, with
    /// `size_limit` the shards' summed.
    pub fn read_settings(&self) -> Result<Settings> {
        let mut settings = self.shard(0)?.read_settings()?;
        if self.sharded {
            let mut total = 0.0;
            for c in self.all() {
                total += c?.read_settings()?.size_limit_f64();
            }
            let limit = if total.fract() == 0.0 && total.abs() < 9e15 {
                Scalar::Int(total as i64)
            } else {
                Scalar::Float(total)
            };
            settings.values.insert("size_limit".into(), limit);
        }
        Ok(settings)
    }

    pub fn check_setting(&self, name: &str, value: &Scalar) -> Result<()> {
        self.shard(0)?.check_setting(name, value)
    }

    /// `reset(name, value)` on every shard; a FanoutCache's `size_limit`
    /// is divided among them, as `FanoutCache(size_limit=X)` stores it.
    pub fn reset(&self, name: &str, value: Option<Scalar>) -> Result<()> {
        let value = match (&value, self.sharded) {
            (Some(Scalar::Int(x)), true) if name == "size_limit" => {
                Some(Scalar::Float(*x as f64 / self.count() as f64))
            }
            (Some(Scalar::Float(x)), true) if name == "size_limit" => Some(Scalar::Float(x / self.count() as f64)),
            _ => value,
        };
        for c in self.all() {
            c?.reset(name, value.clone())?;
        }
        Ok(())
    }

    pub fn create_tag_index(&self) -> Result<()> {
        self.all().try_for_each(|c| c?.create_tag_index())
    }

    pub fn drop_tag_index(&self) -> Result<()> {
        self.all().try_for_each(|c| c?.drop_tag_index())
    }

    /// count, size, volume, hits, misses and every setting, read now
    /// (`stats`); a FanoutCache's summed over its shards, with
    /// `fanout_shards`.
    pub fn stats_json(&self, directory: &Path) -> Result<Json> {
        if !self.sharded {
            return crate::fs::control::stats_json(self.shard(0)?);
        }
        let mut docs = Vec::new();
        for c in self.all() {
            docs.push(crate::fs::control::stats_json(c?)?);
        }
        let sum = |field: &str| docs.iter().map(|d| d[field].as_i64().unwrap_or(0)).sum::<i64>();
        let mut settings = docs[0]["settings"].clone();
        let limit: f64 = docs.iter().map(|d| d["settings"]["size_limit"].as_f64().unwrap_or(0.0)).sum();
        if let Some(map) = settings.as_object_mut() {
            let limit = if limit.fract() == 0.0 { Json::from(limit as i64) } else { Json::from(limit) };
            map.insert("size_limit".into(), limit);
        }
        Ok(serde_json::json!({
            "directory": directory,
            "fanout_shards": self.count(),
            "count": sum("count"),
            "size": sum("size"),
            "volume": sum("volume"),
            "hits": sum("hits"),
            "misses": sum("misses"),
            "settings": settings,
        }))
    }
}

/// SQLite's order of the `(key, raw)` columns: numbers (by value), then
/// text (bytewise), then blobs (bytewise); `raw` breaks ties (0 first).
pub fn sqlite_key_order(a: &Key, b: &Key) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn class(k: &Key) -> u8 {
        match k {
            Key::Int(_) | Key::Float(_) => 0,
            Key::Str(_) => 1,
            Key::Bytes(_) | Key::Pickled(_) => 2,
        }
    }
    let number = |k: &Key| match k {
        Key::Int(i) => *i as f64,
        Key::Float(f) => *f,
        _ => 0.0,
    };
    class(a).cmp(&class(b)).then_with(|| match (a, b) {
        (Key::Int(x), Key::Int(y)) => x.cmp(y),
        (Key::Str(x), Key::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Key::Bytes(x) | Key::Pickled(x), Key::Bytes(y) | Key::Pickled(y)) => {
            x.cmp(y).then_with(|| a.raw().cmp(&b.raw()))
        }
        _ => number(a).partial_cmp(&number(b)).unwrap_or(Ordering::Equal),
    })
}
