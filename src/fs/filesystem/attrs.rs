//! The attributes of what the tree shows that no row holds: directories
//! and links take the cache's time (`tree_time`: when `cache.db` last
//! changed, so that it is stable while nothing changes), a directory of
//! keys/ the times set on it; files their entry's times.

use super::*;

/// Rounds a time to the microsecond, so that it survives the round trip
/// through a REAL column and back unchanged (rsync compares mtimes).
pub(super) fn system_time(t: f64) -> SystemTime {
    let micros = (t * 1e6).round();
    if micros.is_finite() && micros >= 0.0 { UNIX_EPOCH + Duration::from_micros(micros as u64) } else { UNIX_EPOCH }
}

pub(super) fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

impl DiskCacheFs {
    /// The time of the directories and links: when the cache last changed
    /// (`cache.db` or its WAL written), so that it is stable while nothing
    /// changes (rsync and tar see nothing new) and moves when anything
    /// does. Read at most every 100 ms.
    pub(super) fn tree_time(&self) -> SystemTime {
        let mut cached = self.tree_time.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, time)) = *cached
            && at.elapsed() < Duration::from_millis(100)
        {
            return time;
        }
        let wal = format!("{DBNAME}-wal");
        let time = (0..self.store.shard_count())
            .flat_map(|s| [DBNAME, &wal].map(|name| self.store.disk(s).modified(name)))
            .flatten()
            .max()
            .unwrap_or(UNIX_EPOCH);
        *cached = Some((Instant::now(), time));
        time
    }

    /// A link's attributes: the time of the entry it stands for (its
    /// `store_time`), so that a link changes only when its entry does;
    /// the cache's time for a link whose entry is not there yet.
    pub(super) fn symlink_attr(&self, ino: u64, target_len: usize, store_time: Option<f64>) -> Attr {
        let mut attr = self.dir_attr(ino);
        if let Some(t) = store_time {
            let t = system_time(t);
            (attr.atime, attr.mtime, attr.ctime) = (t, t, t);
        }
        attr.kind = Kind::Symlink;
        attr.size = target_len as u64;
        attr.perm = 0o777;
        attr.nlink = 1;
        attr
    }

    /// A link's attributes at its entry's `store_time` (as
    /// [`Self::symlink_attr`] makes them, without the tree's time).
    pub(super) fn stored_link_attr(&self, ino: u64, target_len: usize, store_time: f64) -> Attr {
        let t = system_time(store_time);
        Attr {
            kind: Kind::Symlink,
            size: target_len as u64,
            perm: 0o777,
            nlink: 1,
            atime: t,
            mtime: t,
            ctime: t,
            ..self.plain_dir_attr(ino, t)
        }
    }

    pub(super) fn dir_attr(&self, ino: u64) -> Attr {
        let now = self.tree_time();
        if let Some(&(atime, mtime)) = self.dir_times.lock().unwrap_or_else(|e| e.into_inner()).get(&ino) {
            let mut attr = Attr { atime, mtime, ..self.plain_dir_attr(ino, now) };
            attr.ctime = now;
            return attr;
        }
        self.plain_dir_attr(ino, now)
    }

    /// Records times set on a directory of keys/ (see `dir_times`).
    pub(super) fn set_dir_times(&self, ino: u64, atime: Option<SystemTime>, mtime: Option<SystemTime>) {
        let now = self.tree_time();
        let mut times = self.dir_times.lock().unwrap_or_else(|e| e.into_inner());
        let (a0, m0) = times.get(&ino).copied().unwrap_or((now, now));
        times.insert(ino, (atime.unwrap_or(a0), mtime.unwrap_or(m0)));
    }

    /// Something was added to or removed from the directory `ino`: it shows
    /// the cache's time again, as a native directory's mtime moves.
    pub(super) fn dir_changed(&self, ino: u64) {
        self.note_local_change();
        self.dir_times.lock().unwrap_or_else(|e| e.into_inner()).remove(&ino);
    }

    pub(super) fn plain_dir_attr(&self, ino: u64, now: SystemTime) -> Attr {
        Attr {
            ino,
            kind: Kind::Directory,
            size: 0,
            perm: if self.config.read_only { 0o555 } else { 0o755 },
            nlink: 2,
            uid: self.config.uid,
            gid: self.config.gid,
            atime: now,
            mtime: now,
            ctime: now,
        }
    }

    pub(super) fn file_attr(&self, ino: u64, size: u64, store_time: f64, access_time: f64) -> Attr {
        Attr {
            ino,
            kind: Kind::File,
            size,
            perm: if self.config.read_only { 0o444 } else { 0o644 },
            nlink: 1,
            uid: self.config.uid,
            gid: self.config.gid,
            atime: system_time(access_time),
            mtime: system_time(store_time),
            ctime: system_time(store_time),
        }
    }
}
