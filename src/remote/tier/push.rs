//! Pushing: per shard, a scan of `cache.db` past its cursor for new shareable entries, and the upload queue.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::cache::{Cache, Key};
use crate::flyte::flyte2::Flyte2Cache;
use crate::remote::layout::{FLYTE2_KEY_PREFIX, ShareKind, key_id};
use crate::remote::share::select;
use crate::remote::store::RemoteError;
use crate::remote::sync::{Summary, SyncError, SyncOptions, Upload, prepare_entry, prepare_flyte2_row};

use super::{RemoteTier, SCAN_INTERVAL, SCAN_ROWS, STORE_TIME_MARGIN, SharedCursor, UPLOADS_AT_ONCE, lock, wall};

impl RemoteTier {
    pub(super) fn push_loop(&self) {
        let Some(caches) = self.open_caches("push") else { return };
        // The queue's capacity shared among the shards.
        let capacity = self.config.queue_capacity.div_ceil(caches.len());
        let mut shards: Vec<PushShard> = caches
            .into_iter()
            .zip(&self.push_cursors)
            .map(|(cache, cursor)| {
                let pusher = Pusher::new(&cache, lock(cursor).1.pushed_until, capacity);
                PushShard { cache, pusher, cursor: cursor.clone() }
            })
            .collect();
        let queued = |shards: &[PushShard]| shards.iter().map(|s| s.pusher.queue.len()).sum::<usize>();
        let mut saved = Instant::now();
        loop {
            for shard in &mut shards {
                if let Err(e) = shard.pusher.scan(&shard.cache, &self.config.sync) {
                    self.local_failure("looking for new entries to push", &e);
                }
                lock(&self.counters).dropped += std::mem::take(&mut shard.pusher.dropped);
            }
            let until = Instant::now() + SCAN_INTERVAL;
            while Instant::now() < until && !self.stopped() && self.allows_call() && queued(&shards) > 0 {
                self.upload_some(&mut shards);
            }
            lock(&self.counters).queue_depth = queued(&shards);
            let stopping = self.stopped();
            if stopping || saved.elapsed() >= Duration::from_secs(2) {
                for shard in &mut shards {
                    let until = shard.pusher.watermark() - STORE_TIME_MARGIN;
                    let mut cur = lock(&shard.cursor);
                    let (file, cursor) = &mut *cur;
                    if until > cursor.pushed_until {
                        cursor.pushed_until = until;
                        if let Err(e) = file.save(cursor) {
                            self.local_failure("saving the cursor", &e);
                        }
                    }
                    drop(cur);
                    shard.pusher.prune(until - STORE_TIME_MARGIN);
                }
                saved = Instant::now();
            }
            if stopping {
                return;
            }
            let busy = queued(&shards) > 0 && self.allows_call();
            if !busy && self.sleep(SCAN_INTERVAL) {
                // One more pass to save the cursor.
                continue;
            }
        }
    }

    /// Uploads up to [`UPLOADS_AT_ONCE`] entries from the fronts of the
    /// shards' queues (one from each in turn), at once: each is read here
    /// (the cache handles are this thread's), then written to the store by
    /// a thread of its own. What failed goes back to the front of its
    /// queue, in order.
    fn upload_some(&self, shards: &mut [PushShard]) {
        let mut summary = Summary::default();
        let mut work = Vec::new();
        let mut taking = true;
        while taking && work.len() < UPLOADS_AT_ONCE {
            taking = false;
            for (n, shard) in shards.iter_mut().enumerate() {
                if work.len() >= UPLOADS_AT_ONCE {
                    break;
                }
                let Some(item) = shard.pusher.queue.pop_front() else { continue };
                taking = true;
                let done = (item.rowid, item.store_time.to_bits());
                if lock(&self.arrived_ids).remove(&key_id(&item.key)) {
                    shard.pusher.handled.insert(done);
                    continue;
                }
                match self.prepare(&shard.cache, &item, &mut summary) {
                    Ok(Some(upload)) => work.push((n, item, upload)),
                    Ok(None) => {
                        shard.pusher.handled.insert(done);
                    }
                    Err(e) => {
                        self.local_failure(&format!("{}: reading it to push", item.key), &e);
                        shard.pusher.handled.insert(done);
                    }
                }
            }
        }
        self.add_summary(&summary);
        let (store, opts) = (self.background.as_ref(), &self.config.sync);
        let results: Vec<_> = std::thread::scope(|scope| {
            let running: Vec<_> = work
                .into_iter()
                .map(|(n, item, upload)| {
                    scope.spawn(move || {
                        let mut summary = Summary::default();
                        let result = upload.push(store, opts, &mut summary);
                        (n, item, summary, result)
                    })
                })
                .collect();
            running.into_iter().filter_map(|t| t.join().ok()).collect()
        });
        let mut failed = Vec::new();
        let mut first_error = None;
        let mut answered = false;
        for (n, item, summary, result) in results {
            self.add_summary(&summary);
            let pusher = &mut shards[n].pusher;
            match result {
                Ok(pushed) => {
                    answered = true;
                    lock(&self.counters).last_push = Some(wall());
                    if let Some(id) = pushed {
                        lock(&self.pushed_ids).insert(id);
                    }
                    pusher.handled.insert((item.rowid, item.store_time.to_bits()));
                }
                Err(SyncError::Remote(e)) => {
                    if first_error.is_none() {
                        first_error = Some(e);
                    } else {
                        // Counted, but one back-off step per round.
                        let mut c = lock(&self.counters);
                        c.errors += 1;
                        c.timeouts += u64::from(matches!(e, RemoteError::Timeout { .. }));
                    }
                    failed.push((n, item));
                }
                Err(e) => {
                    self.local_failure(&format!("{}: pushing", item.key), &e);
                    pusher.handled.insert((item.rowid, item.store_time.to_bits()));
                }
            }
        }
        match first_error {
            Some(e) => self.failed(&e),
            None if answered => self.succeeded(),
            None => {}
        }
        for (n, item) in failed.into_iter().rev() {
            shards[n].pusher.queue.push_front(item);
        }
    }

    /// Reads a queued entry for upload (a Flyte 2 row from its table).
    fn prepare(&self, cache: &Cache, item: &Queued, summary: &mut Summary) -> Result<Option<Upload>, SyncError> {
        Ok(match (&item.key, item.kind) {
            (Key::Str(k), ShareKind::Flyte2) => {
                let row_key = k.strip_prefix(FLYTE2_KEY_PREFIX).unwrap_or(k);
                match Flyte2Cache::new(cache).get(row_key)? {
                    Some(outputs) => prepare_flyte2_row(row_key, &outputs, summary),
                    None => None, // deleted since
                }
            }
            _ => prepare_entry(cache, &item.key, item.kind, summary),
        })
    }
}

/// The pusher's state for one shard (one cache: the only one).
struct PushShard {
    /// The pusher thread's handle of this shard.
    cache: Cache,
    pusher: Pusher,
    /// Where its `pushed_until` is kept.
    cursor: SharedCursor,
}

/// One local entry waiting for upload.
#[derive(Debug)]
struct Queued {
    key: Key,
    kind: ShareKind,
    rowid: i64,
    store_time: f64,
}

/// The pusher's view of `cache.db`: where its scan is, what it queued.
struct Pusher {
    /// The (store_time, rowid) the next scan starts after.
    pos: (f64, i64),
    /// The highest rowid seen: rows above it are new keys, whatever their
    /// store_time says.
    max_rowid: i64,
    /// The highest rowid of Flyte 2's `task_cache` seen (a changed row is
    /// a new row there). From 0 at each start: one existence check a row.
    flyte2_rowid: i64,
    queue: VecDeque<Queued>,
    capacity: usize,
    /// Entries that found the queue full: scanned again from this time
    /// once it drains.
    rescan_from: Option<f64>,
    dropped: u64,
    /// Shareable entries handled (rowid, store_time bits) at or after the
    /// prune time, so a rescan does not queue them again.
    handled: HashSet<(i64, u64)>,
}

impl Pusher {
    fn new(cache: &Cache, pushed_until: f64, capacity: usize) -> Pusher {
        Pusher {
            pos: (pushed_until, -1),
            max_rowid: cache.max_rowid().unwrap_or(0),
            flyte2_rowid: 0,
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            rescan_from: None,
            dropped: 0,
            handled: HashSet::new(),
        }
    }

    fn offer(&mut self, meta: &crate::cache::EntryMeta, opts: &SyncOptions) {
        let Some(kind) = select(meta, &opts.selection) else { return };
        self.offer_item(Queued { key: meta.key.clone(), kind, rowid: meta.rowid, store_time: meta.store_time });
    }

    /// Queues an item unless it was handled or is queued; a full queue
    /// drops it (counted; scanned again from `rescan_from` once it drains).
    fn offer_item(&mut self, item: Queued) {
        let id = (item.rowid, item.store_time.to_bits());
        if self.handled.contains(&id) || self.queue.iter().any(|q| (q.rowid, q.store_time.to_bits()) == id) {
            return;
        }
        if self.queue.len() >= self.capacity {
            self.dropped += 1;
            self.rescan_from = Some(self.rescan_from.map_or(item.store_time, |t| t.min(item.store_time)));
            return;
        }
        self.queue.push_back(item);
    }

    /// Queues the shareable entries set since the last scan.
    fn scan(&mut self, cache: &Cache, opts: &SyncOptions) -> Result<(), crate::cache::Error> {
        if self.queue.is_empty()
            && let Some(t) = self.rescan_from.take()
        {
            self.pos = (t, -1);
        }
        let mut rows = 0;
        while rows < SCAN_ROWS {
            let batch = cache.list_meta_stored_since(self.pos.0, self.pos.1, 500)?;
            rows += batch.len();
            for meta in &batch {
                self.pos = (meta.store_time, meta.rowid);
                self.max_rowid = self.max_rowid.max(meta.rowid);
                self.offer(meta, opts);
            }
            if batch.len() < 500 {
                break;
            }
        }
        // New keys whose store_time is older than the scan (their `set`
        // waited for the write lock).
        loop {
            let batch = cache.list_meta(self.max_rowid, 500)?;
            for meta in &batch {
                self.max_rowid = self.max_rowid.max(meta.rowid);
                self.offer(meta, opts);
            }
            if batch.len() < 500 {
                break;
            }
        }
        // Flyte 2's rows (negative rowids in the queue keep them apart from
        // the Cache table's; their time is never the watermark's).
        let flyte2 = Flyte2Cache::new(cache);
        loop {
            let rows = flyte2.rows_after(self.flyte2_rowid, 500)?;
            for (rowid, key, _) in &rows {
                if self.queue.len() >= self.capacity {
                    // Not past it: the next scan offers it again.
                    self.dropped += 1;
                    return Ok(());
                }
                self.flyte2_rowid = *rowid;
                let key = Key::Str(format!("{FLYTE2_KEY_PREFIX}{key}"));
                self.offer_item(Queued { key, kind: ShareKind::Flyte2, rowid: -rowid, store_time: f64::INFINITY });
            }
            if rows.len() < 500 {
                return Ok(());
            }
        }
    }

    /// Every entry stored before this time was handled.
    fn watermark(&self) -> f64 {
        let queued = self.queue.iter().map(|q| q.store_time).fold(f64::INFINITY, f64::min);
        self.pos.0.min(queued).min(self.rescan_from.unwrap_or(f64::INFINITY))
    }

    fn prune(&mut self, below: f64) {
        // Flyte 2 rows (infinite time) are kept: the rowid scan never
        // offers them again, but a drop sets it back.
        self.handled.retain(|(_, bits)| f64::from_bits(*bits) >= below);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Value;
    use crate::remote::share::Selection;
    use crate::remote::sync::Mode;

    fn opts() -> SyncOptions {
        SyncOptions {
            mode: Mode::ReadWrite,
            namespace: "default".into(),
            signing_key: None,
            selection: Selection { tags: vec![], prefixes: vec!["p/".into()] },
        }
    }

    fn set(cache: &Cache, key: &str) {
        cache.set(&Key::Str(key.into()), &Value::Bytes(b"v".to_vec()), None, None).unwrap();
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_queues_the_entry_again_once_it_drains() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let mut pusher = Pusher::new(&cache, 0.0, 2);
        for k in ["p/1", "p/2", "p/3", "other", "p/4"] {
            set(&cache, k);
        }
        pusher.scan(&cache, &opts()).unwrap();
        let keys = |p: &Pusher| p.queue.iter().map(|q| q.key.clone()).collect::<Vec<_>>();
        let k = |s: &str| Key::Str(s.into());
        assert_eq!(keys(&pusher), [k("p/1"), k("p/2")]);
        assert_eq!(pusher.dropped, 2, "p/3 and p/4 found the queue full; `other` is not shared");
        let watermark = pusher.watermark();
        assert!(watermark <= pusher.queue[0].store_time, "the cursor never passes a queued entry");
        // Nothing is queued twice while it waits.
        pusher.scan(&cache, &opts()).unwrap();
        assert_eq!(keys(&pusher), [k("p/1"), k("p/2")]);
        // Uploaded (handled): the next scan after the queue drained finds
        // the dropped ones again, and only them.
        while let Some(q) = pusher.queue.pop_front() {
            pusher.handled.insert((q.rowid, q.store_time.to_bits()));
        }
        pusher.scan(&cache, &opts()).unwrap();
        assert_eq!(keys(&pusher), [k("p/3"), k("p/4")]);
    }

    #[test]
    fn a_set_that_committed_late_is_found_by_its_rowid() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        set(&cache, "p/early");
        let mut pusher = Pusher::new(&cache, 0.0, 10);
        pusher.scan(&cache, &opts()).unwrap();
        assert_eq!(pusher.queue.len(), 1);
        // A new key whose store_time is older than what was scanned (its
        // `set` took the time, then waited for the write lock).
        set(&cache, "p/late");
        cache.set_times(&Key::Str("p/late".into()), Some(1.0), None).unwrap();
        pusher.scan(&cache, &opts()).unwrap();
        assert_eq!(pusher.queue.back().map(|q| q.key.clone()), Some(Key::Str("p/late".into())));
    }
}
