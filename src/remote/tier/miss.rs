//! A miss's lookup: [`RemoteTier::fetch`] asks the store for a key within the deadline and stores what it has.

use std::time::Instant;

use crate::cache::fanout::shard_of;
use crate::cache::{Cache, CacheOptions, Key};
use crate::remote::layout::key_id;
use crate::remote::sync::{Pulled, Summary, SyncError, pull_record};

use super::{Fetched, NEGATIVE_MAX, NEGATIVE_TTL, RemoteTier, lock};

impl RemoteTier {
    /// A cache handle of `shard` for a miss: its lock wait is 20% of the
    /// deadline.
    fn take_writer(&self, shard: usize) -> Option<Cache> {
        if let Some(c) = lock(&self.writers[shard]).pop() {
            return Some(c);
        }
        let timeout = self.config.store.deadline.mul_f64(0.2);
        match Cache::open_with(&self.shards[shard], CacheOptions { timeout, ..CacheOptions::default() }) {
            Ok(c) => Some(c),
            Err(e) => {
                self.local_failure("opening the cache for a miss", &e);
                None
            }
        }
    }

    /// Asks the store for `key` after a local miss, and stores what it has
    /// in the cache (checked as `sync` checks it). Bounded by the deadline.
    pub fn fetch(&self, key: &Key) -> Fetched {
        if !self.asks_for(key) {
            return Fetched::Miss;
        }
        let id = key_id(key);
        {
            let mut absent = lock(&self.absent);
            if absent.get(&id).is_some_and(|t| t.elapsed() < NEGATIVE_TTL) {
                return Fetched::Miss;
            }
            if absent.len() >= NEGATIVE_MAX {
                absent.retain(|_, t| t.elapsed() < NEGATIVE_TTL);
            }
        }
        if !self.allows_call() {
            lock(&self.counters).not_asked += 1;
            return Fetched::Miss;
        }
        // The shard python-diskcache's FanoutCache keeps `key` in (the
        // record read is `key`'s: its key id is checked).
        let shard = shard_of(key, self.shards.len());
        let Some(cache) = self.take_writer(shard) else { return Fetched::Miss };
        let mut summary = Summary::default();
        let result =
            pull_record(std::slice::from_ref(&cache), self.foreground.as_ref(), &self.config.sync, &id, &mut summary);
        lock(&self.writers[shard]).push(cache);
        self.add_summary(&summary);
        let answer = match result {
            Ok(Pulled::Stored(value)) => {
                self.succeeded();
                lock(&self.counters).hits += 1;
                lock(&self.arrived_ids).insert(id);
                log::debug!("remote hit: {key}");
                return Fetched::Stored(value);
            }
            Ok(Pulled::AlreadyLocal) => {
                self.succeeded();
                return Fetched::Local;
            }
            Ok(Pulled::Absent) => {
                self.succeeded();
                lock(&self.absent).insert(id, Instant::now());
                Fetched::Miss
            }
            Ok(Pulled::Rejected | Pulled::Expired) => {
                self.succeeded();
                Fetched::Miss
            }
            Err(SyncError::Remote(e)) => {
                self.failed(&e);
                Fetched::Miss
            }
            Err(e) => {
                self.local_failure(&format!("{key}: storing what the remote has"), &e);
                Fetched::Miss
            }
        };
        lock(&self.counters).misses += 1;
        answer
    }
}
