//! The engine serves repeated gets from a per-handle value cache that is
//! valid only while nobody has committed (src/cache/read_cache.rs). These
//! tests try to make it return something stale: a python-diskcache peer
//! process, another Rust handle, WAL checkpoints and restarts, expiry, and
//! writes inside a transaction all change a key between two gets, and the
//! second get must always see the change.

mod support;

use support::python;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use diskcachefs::cache::{Cache, CacheOptions, Key, Value, system_clock};

/// A python-diskcache process taking one command a line and answering
/// "ok" once it has committed.
const PEER: &str = r#"
import sys, diskcache
c = diskcache.Cache(sys.argv[1])
for line in sys.stdin:
    op, _, arg = line.rstrip('\n').partition(' ')
    if op == 'set':
        key, _, value = arg.partition('=')
        c.set(key, value.encode())
    elif op == 'setexp':
        key, _, value = arg.partition('=')
        c.set(key, value.encode(), expire=3600)
    elif op == 'delete':
        c.delete(arg)
    elif op == 'checkpoint':
        c._sql('PRAGMA wal_checkpoint(%s)' % arg).fetchall()
    elif op == 'bulk':
        with c.transact():
            for i in range(int(arg)):
                c.set(f'bulk-{i}', b'x' * 100)
    print('ok', flush=True)
"#;

struct Peer {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Peer {
    fn start(dir: &std::path::Path) -> Peer {
        let mut child = Command::new(python())
            .args(["-c", PEER])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python peer");
        let out = BufReader::new(child.stdout.take().unwrap());
        Peer { child, out }
    }

    fn send(&mut self, command: &str) {
        writeln!(self.child.stdin.as_mut().unwrap(), "{command}").unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok", "peer failed on {command:?}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(cache: &Cache, key: &str) -> Option<Vec<u8>> {
    match cache.get(&Key::Str(key.into())).unwrap() {
        Some(Value::Bytes(b)) => Some(b),
        None => None,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_python_peers_every_commit_is_seen_by_the_next_get() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let mut peer = Peer::start(dir.path());
    for round in 0..300 {
        let value = format!("v{round}");
        peer.send(&format!("set k={value}"));
        // Twice: the second get is the one the value cache would serve.
        assert_eq!(get(&cache, "k"), Some(value.clone().into_bytes()), "round {round}");
        assert_eq!(get(&cache, "k"), Some(value.into_bytes()), "round {round}, repeated");
        match round % 5 {
            0 => {
                peer.send("delete k");
                assert_eq!(get(&cache, "k"), None, "round {round}: delete not seen");
            }
            1 => peer.send("checkpoint TRUNCATE"),
            2 => peer.send("checkpoint RESTART"),
            3 => peer.send("bulk 50"),
            _ => {}
        }
    }
    // The repeated gets must actually have exercised the value cache.
    assert!(cache.value_cache_hits() >= 250, "value cache hits: {}", cache.value_cache_hits());
}

#[test]
fn expiry_is_checked_on_every_get_even_when_cached() {
    // The handle reads the time from a clock the test moves: the entry
    // expires when the test says, not after a sleep a loaded machine could
    // stretch past the first get.
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(system_clock()().to_bits()));
    let clock = now.clone();
    let options = CacheOptions { clock: Arc::new(move || f64::from_bits(clock.load(SeqCst))), ..Default::default() };
    let cache = Cache::open_with(dir.path(), options).unwrap();
    let mut peer = Peer::start(dir.path());
    peer.send("setexp e=soon"); // expires an hour after python's now
    let key = Key::Str("e".into());
    let expire = cache.get_entry(&key).unwrap().unwrap().expire_time.expect("an expiry time");
    // Nobody commits from here on: every get below may come from the value
    // cache. Just before the expiry time it is served (from the cache) ...
    now.store((expire - 0.001).to_bits(), SeqCst);
    let hits = cache.value_cache_hits();
    assert_eq!(get(&cache, "e"), Some(b"soon".to_vec()));
    assert_eq!(cache.value_cache_hits(), hits + 1, "the get before the expiry came from the value cache");
    // ... and at it (python-diskcache: live while expire_time > now) it is
    // gone, though still in the value cache.
    now.store(expire.to_bits(), SeqCst);
    assert_eq!(get(&cache, "e"), None, "an expired entry was served from the cache");
    now.store((expire + 3600.0).to_bits(), SeqCst);
    assert_eq!(get(&cache, "e"), None, "an expired entry was served from the cache");
}

#[test]
fn another_handle_and_this_handles_own_transactions_are_seen() {
    let dir = tempfile::tempdir().unwrap();
    let a = Cache::open(dir.path()).unwrap();
    let b = a.try_clone().unwrap();
    let key = Key::Str("k".into());
    for i in 0..200i64 {
        b.set(&key, &Value::Int(i), None, None).unwrap();
        assert_eq!(a.get(&key).unwrap(), Some(Value::Int(i)));
        assert_eq!(a.get(&key).unwrap(), Some(Value::Int(i)));
    }
    a.transact(|c| {
        c.set(&key, &Value::Int(-1), None, None)?;
        assert_eq!(c.get(&key)?, Some(Value::Int(-1)), "own uncommitted write not seen inside the transaction");
        Ok(())
    })
    .unwrap();
    assert_eq!(a.get(&key).unwrap(), Some(Value::Int(-1)));
    a.delete(&key).unwrap();
    assert_eq!(a.get(&key).unwrap(), None);
    assert!(a.value_cache_hits() >= 200, "value cache hits: {}", a.value_cache_hits());
}
