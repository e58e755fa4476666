//! No request waits behind a peer's lock (docs/SEMANTICS.md, "Concurrency
//! with other processes"). The bug: while a python-diskcache process held
//! a write transaction for 8 s, `cat` of an unrelated key through the mount
//! took 7.0 s, because every request took one lock that a commit waiting
//! for SQLite's write lock was holding. The fix: reads use read-only
//! handles of their own (WAL readers never wait), and a change takes the
//! tree's tables only once SQLite's write lock is its own.
//!
//! Checked by the order of events, not by durations (which a busy CI
//! machine stretches): a Python peer takes the write lock and keeps it
//! until the test tells it to let go, and says, when told, whether it
//! still held it. Every request made before that answered while the lock
//! was held; a request that waited for the lock could not have answered.
//! A commit waiting meanwhile is seen by the daemon's own count of the
//! FLUSH requests that reached it (`stats`).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::IntoRawFd;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use diskcachefs::cache::{Cache, Key, Scalar, Value};
use diskcachefs::flyte::idl::primitive;
use support::flyte::{map, prim};
use support::{Mounted, getxattr, python};

/// How long the peer keeps the lock if the test never tells it to let go.
/// Only a hang guard: with a request that waits for the lock the test
/// would otherwise hang until nextest kills it (5 minutes). Past it the
/// peer lets go, the stuck request answers, and [`LockHolder::release`]
/// fails the test because the peer no longer held the lock when told. No
/// assertion depends on it: a passing run tells the peer within seconds.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// A python-diskcache process holding the cache's write lock (inside
/// `transact()`: SQLite's `BEGIN IMMEDIATE`, plus a `set` of its own)
/// from when it says so until the test tells it to let go.
struct LockHolder {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl LockHolder {
    /// Starts the peer and waits until it holds the lock.
    fn start(cache: &Path) -> LockHolder {
        let script = r#"
import select, sys, diskcache
cache = diskcache.Cache(sys.argv[1])
with cache.transact():
    cache.set('held-by-python', b'x')
    print('locked', flush=True)
    # Until told on stdin; end of file or the hang guard also end it.
    ready, _, _ = select.select([sys.stdin], [], [], float(sys.argv[2]))
    told = bool(ready) and sys.stdin.readline() == 'release\n'
    print('told' if told else 'not told', 'holding' if cache._con.in_transaction else 'not holding', flush=True)
print('released', flush=True)
cache.close()
"#;
        let mut child = Command::new(python())
            .arg("-c")
            .arg(script)
            .arg(cache)
            .arg(HANG_GUARD.as_secs().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).expect("python reports the lock");
        assert_eq!(line, "locked\n");
        LockHolder { child, out }
    }

    /// Tells the peer to let go, and asserts that it still held the lock
    /// when told (so everything the test did before answered while the
    /// lock was held) and that it committed and exited cleanly.
    fn release(mut self) {
        // A peer that gave up at the hang guard may be gone: its answer says so.
        let _ = self.child.stdin.as_mut().unwrap().write_all(b"release\n");
        let mut answer = String::new();
        self.out.read_to_string(&mut answer).unwrap();
        assert!(self.child.wait().unwrap().success(), "the peer failed: {answer:?}");
        assert_eq!(
            answer, "told holding\nreleased\n",
            "the peer let go before the test told it (after {HANG_GUARD:?}): a request waited for the lock"
        );
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        // A failing test: the peer's stdin closes, and it lets go at once.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The mount's `stats` (its `requests` section counts each request as it
/// arrives, and again in a latency histogram once answered).
fn stats(m: &Mounted) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(m.mnt.join("stats")).unwrap()).unwrap()
}

/// Requests of kind `op` that reached the daemon, and those it answered.
fn requests(stats: &serde_json::Value, op: &str) -> (u64, u64) {
    let o = &stats["requests"]["operations"][op];
    let answered = o["histogram_us"].as_array().map_or(0, |h| h.iter().map(|b| b[1].as_u64().unwrap()).sum());
    (o["count"].as_u64().unwrap_or(0), answered)
}

/// The count of FLUSH requests that reached the daemon, less those of the
/// test's own reads of `stats` (each closes its file: the next read
/// counts that FLUSH, unless the daemon opened the file without one).
struct Flushes {
    base: u64,
    per_stats_read: u64,
}

impl Flushes {
    /// Counts from now; measures what one read of `stats` adds (0 or 1).
    fn count(m: &Mounted) -> Flushes {
        let first = requests(&stats(m), "flush").0;
        let second = requests(&stats(m), "flush").0;
        Flushes { base: second, per_stats_read: second - first }
    }

    /// Waits until one more FLUSH (a writer's `close()`) has reached the
    /// daemon. The limit is a hang guard (a FLUSH that never arrives).
    fn wait_for_one(&self, m: &Mounted) {
        let start = Instant::now();
        for reads in 1.. {
            let (arrived, _) = requests(&stats(m), "flush");
            if arrived > self.base + reads * self.per_stats_read {
                return;
            }
            assert!(start.elapsed() < HANG_GUARD, "the writer's FLUSH never reached the daemon");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A cache with 300 small keys, 1,000 entries tagged `grp`, a 100 MiB
/// file-backed value and a flytekit task entry; returns the task entry's
/// inputs and outputs.
fn fill(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let cache = Cache::open(dir).unwrap();
    cache
        .transact(|c| {
            for i in 0..300 {
                c.set(&Key::Str(format!("k{i}")), &Value::Bytes(format!("value {i}").into_bytes()), None, None)?;
            }
            let grp = Scalar::Str("grp".into());
            for i in 0..1000 {
                c.set(&Key::Str(format!("t{i}")), &Value::Bytes(vec![b't'; 10]), None, Some(&grp))?;
            }
            Ok(())
        })
        .unwrap();
    let big: Vec<u8> = (0..100u32 << 20).map(|i| (i % 251) as u8).collect();
    cache.set(&Key::Str("big".into()), &Value::Bytes(big), None, None).unwrap();
    let inputs = map(vec![("a", prim(primitive::Value::Integer(7)))]);
    let outputs = b"serialized outputs".to_vec();
    let key = diskcachefs::flyte::key::cache_key("wf.t", "v1", &inputs, &[]).unwrap();
    cache.set(&Key::Str(key), &Value::Bytes(outputs.clone()), None, None).unwrap();
    (inputs, outputs)
}

/// Everything a reader does: reads of other keys, `ls -l`, `stat`,
/// `getfattr`, a tag's listing, a `task/` resolve, and the first MiB of a
/// 100 MiB value; each answer checked.
fn read_everything(m: &Mounted, inputs: &[u8], outputs: &[u8], reads: usize) {
    let keys = m.keys();
    for i in 0..reads {
        let value = std::fs::read(keys.join(format!("k{}", i % 300))).unwrap();
        assert_eq!(value, format!("value {}", i % 300).into_bytes());
    }
    let ls = Command::new("ls").arg("-l").arg(&keys).output().unwrap();
    assert!(ls.status.success());
    assert_eq!(String::from_utf8_lossy(&ls.stdout).lines().count(), 1 + 1302, "total line and every key");
    assert_eq!(std::fs::metadata(keys.join("k7")).unwrap().len(), 7);
    assert_eq!(getxattr(&keys.join("k8"), "user.diskcache.type").unwrap(), b"bytes");
    assert_eq!(std::fs::read_dir(m.mnt.join("tags/grp")).unwrap().count(), 1000);
    let answer = (|| {
        let mut f = std::fs::OpenOptions::new().read(true).write(true).open(m.mnt.join("task/wf.t/v1/.resolve"))?;
        f.write_all(inputs)?;
        let mut out = Vec::new();
        f.read_to_end(&mut out)?;
        std::io::Result::Ok(out)
    })();
    assert_eq!(answer.unwrap(), outputs);
    let mut f = std::fs::File::open(keys.join("big")).unwrap();
    let mut first = vec![0u8; 1 << 20];
    f.read_exact(&mut first).unwrap();
    assert!(first.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
}

fn python_get(cache: &Path, key: &str) -> String {
    support::py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nprint(repr(c.get(sys.argv[2])))\nassert c.check() == []",
        &[cache.to_str().unwrap(), key],
    )
    .trim()
    .to_string()
}

const WRITER_RETURNED: &str = "the writer's close() returned while python held the lock: it committed without \
     the lock, or it gave up at the mount's --timeout (60 s) while requests waited behind it";

#[test]
fn nothing_waits_while_python_holds_the_write_lock() {
    let mut data = None;
    let m = Mounted::with(|dir| data = Some(fill(dir)), &[]);
    let (inputs, outputs) = data.unwrap();
    // Once without the lock: the answers are right, and the kernel has
    // looked every name up once, as a user's shell has.
    read_everything(&m, &inputs, &outputs, 300);

    let peer = LockHolder::start(&m.cache);
    // A writer of another key: its close() commits, which must wait for
    // the lock without holding up anyone else. The reads start once its
    // FLUSH is in the daemon, waiting.
    let flushes = Flushes::count(&m);
    let new_key = m.keys().join("written-while-locked");
    let (closing, about_to_close) = mpsc::channel();
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::File::create(&new_key).unwrap();
        f.write_all(b"fresh").unwrap();
        closing.send(()).unwrap();
        // SAFETY: the descriptor is ours; close reports FLUSH's result.
        let rc = unsafe { libc::close(f.into_raw_fd()) };
        (rc, std::io::Error::last_os_error())
    });
    about_to_close.recv().unwrap();
    flushes.wait_for_one(&m);
    assert!(!writer.is_finished(), "{WRITER_RETURNED}");

    read_everything(&m, &inputs, &outputs, 200);

    // Every read above answered while the writer's commit waited ...
    assert!(!writer.is_finished(), "{WRITER_RETURNED}");
    // ... and while python held the lock (it says so when told to let go).
    peer.release();
    let (rc, err) = writer.join().unwrap();
    assert_eq!(rc, 0, "close() of the writer after the lock was released: {err}");
    assert_eq!(python_get(&m.cache, "written-while-locked"), "b'fresh'");
    assert_eq!(python_get(&m.cache, "held-by-python"), "b'x'");
}

#[test]
fn a_commit_past_the_timeout_is_ebusy_and_the_old_value_stays() {
    // 2 s: long enough for many rounds of reads during the commit's wait
    // (each takes milliseconds), short enough for a quick test.
    let timeout = Duration::from_secs(2);
    let m = Mounted::with(
        |dir| {
            let cache = Cache::open(dir).unwrap();
            cache.set(&Key::Str("victim".into()), &Value::Bytes(b"old".to_vec()), None, None).unwrap();
            cache.set(&Key::Str("other".into()), &Value::Bytes(b"other".to_vec()), None, None).unwrap();
        },
        &["--timeout", &timeout.as_secs().to_string()],
    );
    let victim = m.keys().join("victim");
    assert_eq!(std::fs::read(&victim).unwrap(), b"old");
    let peer = LockHolder::start(&m.cache);
    let flushes = Flushes::count(&m);
    let path = victim.clone();
    let (closing, about_to_close) = mpsc::channel();
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
        f.write_all(b"new").unwrap();
        closing.send(()).unwrap();
        let start = Instant::now();
        // SAFETY: the descriptor is ours.
        let rc = unsafe { libc::close(f.into_raw_fd()) };
        (rc, std::io::Error::last_os_error().raw_os_error(), start.elapsed())
    });
    about_to_close.recv().unwrap();
    flushes.wait_for_one(&m);
    // Nothing else waits while the commit does: rounds of reads answer
    // while it waits. (A read stuck behind the commit would answer only
    // when it gives up, about when close() returns: one such round could
    // still count, not three.)
    let mut rounds_while_waiting = 0;
    while !writer.is_finished() {
        assert_eq!(std::fs::read(m.keys().join("other")).unwrap(), b"other");
        assert_eq!(std::fs::metadata(&victim).unwrap().len(), 3);
        if !writer.is_finished() {
            rounds_while_waiting += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (rc, errno, waited) = writer.join().unwrap();
    assert_eq!((rc, errno), (-1, Some(libc::EBUSY)), "close() past the timeout");
    eprintln!("{rounds_while_waiting} rounds of reads answered while the commit waited {waited:?}");
    assert!(rounds_while_waiting >= 3, "reads waited for the commit: {rounds_while_waiting} rounds during its wait");
    // The commit waited for its timeout (a lower bound: a loaded machine
    // only makes it longer; SQLite's busy handler sleeps the whole of it).
    assert!(waited >= timeout.mul_f64(0.9), "gave up after {waited:?}, before the {timeout:?} timeout");
    assert_eq!(std::fs::read(&victim).unwrap(), b"old", "the old value stays whole");
    assert!(m.log().contains("commit failed"), "the daemon logs it:\n{}", m.log());
    // close() failed while python still held the lock: it gave up, it did
    // not wait for the lock to go.
    peer.release();

    // Nothing was stored later behind the failed close's back: once the
    // daemon has answered every RELEASE (the writer's handle is gone), the
    // old value is still there.
    let start = Instant::now();
    loop {
        let s = stats(&m);
        // This read's own OPEN is counted; its RELEASE is yet to come.
        let opened = requests(&s, "open").0 + requests(&s, "create").0 - 1;
        if requests(&s, "release").1 >= opened {
            break;
        }
        assert!(start.elapsed() < HANG_GUARD, "RELEASEs never answered: {:#}", s["requests"]);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(python_get(&m.cache, "victim"), "b'old'");
    // A retry once the lock is free succeeds.
    std::fs::write(&victim, b"new").unwrap();
    assert_eq!(python_get(&m.cache, "victim"), "b'new'");
}

#[test]
fn reads_count_as_gets_without_waiting_for_the_lock() {
    // With statistics on and the least-recently-used policy every get is
    // also a write (hits, access_time): through the mount it is gathered
    // and applied once the lock is free, never waited for.
    let m = Mounted::with(
        |dir| {
            support::py(
                "import sys, diskcache\nc = diskcache.Cache(sys.argv[1], statistics=1, \
                 eviction_policy='least-recently-used')\nc.set('a', b'apple')\nc.set('b', b'banana')\nc.close()",
                &[dir.to_str().unwrap()],
            );
        },
        &[],
    );
    let before: f64 = support::py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nprint(c._sql('SELECT access_time FROM Cache WHERE key = ?', ('a',)).fetchone()[0])",
        &[m.cache.to_str().unwrap()],
    )
    .trim()
    .parse()
    .unwrap();
    let peer = LockHolder::start(&m.cache);
    for _ in 0..20 {
        assert_eq!(std::fs::read(m.keys().join("a")).unwrap(), b"apple");
    }
    // The 20 reads answered while python held the lock.
    peer.release();
    assert!(!m.log().contains("ERROR"), "{}", m.log());
    // Applied once the lock is free (by the bookkeeping thread, every
    // 0.25 s). The 30 s limit is only a hang guard for gets never applied.
    let script = "import sys, time, diskcache\nc = diskcache.Cache(sys.argv[1])\n\
                  for _ in range(300):\n    hits, misses = c.stats()\n    t = c._sql('SELECT access_time FROM Cache WHERE key = ?', ('a',)).fetchone()[0]\n    \
                  if hits >= 20: break\n    time.sleep(0.1)\nprint(hits, t)";
    let out = support::py(script, &[m.cache.to_str().unwrap()]);
    let mut fields = out.split_whitespace();
    let hits: i64 = fields.next().unwrap().parse().unwrap();
    let access: f64 = fields.next().unwrap().parse().unwrap();
    assert_eq!(hits, 20, "each read through the mount is one hit");
    assert!(access > before, "the LRU access time moved: {before} -> {access}");
}
