//! Negative entries (docs/SEMANTICS.md, "Negative entries";
//! src/fs/filesystem/negatives.rs): a missing name in `keys/` looked up
//! again within the mount's timeout costs no request, and every way a key
//! can appear still shows: through `keys/` itself (the kernel's own entry
//! is replaced), through another path of the mount at once (`ops/incr`, a
//! tag directory: the kernel's epoch is raised before `close()` returns),
//! and from another process within the timeout. Plain caches and
//! FanoutCache directories; read-write and read-only mounts.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::{Mounted, py};

fn stats(m: &Mounted) -> Json {
    serde_json::from_slice(&std::fs::read(m.mnt.join("stats")).unwrap()).unwrap()
}

fn lookups(m: &Mounted) -> u64 {
    stats(m)["requests"]["operations"]["lookup"]["count"].as_u64().unwrap_or(0)
}

fn enoent(path: &Path) -> bool {
    std::fs::metadata(path).map_err(|e| e.raw_os_error()).err() == Some(Some(libc::ENOENT))
}

/// Misses kept, then a key made through every path the mount has: each
/// shows at once, and only a path other than the name's own raises the
/// kernel's epoch.
fn a_kept_miss_never_hides_a_key_made_through_the_mount(m: &Mounted) {
    let k = m.keys();
    // `stats` itself looked up once, out of the counts.
    stats(m);
    for name in ["n1", "n2", "n3", "d", "t1"] {
        assert!(enoent(&k.join(name)));
    }
    let before = lookups(m);
    for _ in 0..5 {
        for name in ["n1", "n2", "n3", "d", "t1"] {
            assert!(enoent(&k.join(name)), "{name}");
        }
    }
    assert_eq!(lookups(m), before, "misses asked again within the timeout reach the daemon");
    let kept = stats(m)["negative_entries"].clone();
    assert!(kept["kept"].as_u64().unwrap() >= 5, "{kept}");
    assert_eq!(kept["epochs_raised"], 0, "{kept}");

    // The name's own path: CREATE replaces the kernel's entry.
    std::fs::write(k.join("n1"), b"one").unwrap();
    assert_eq!(std::fs::read(k.join("n1")).unwrap(), b"one");
    std::fs::create_dir(k.join("d")).unwrap();
    assert!(std::fs::metadata(k.join("d")).unwrap().is_dir());
    std::fs::write(k.join("n1-tmp"), b"moved").unwrap();
    std::fs::rename(k.join("n1-tmp"), k.join("n3")).unwrap();
    assert_eq!(std::fs::read(k.join("n3")).unwrap(), b"moved");
    assert_eq!(
        stats(m)["negative_entries"]["epochs_raised"],
        0,
        "the kernel replaced those entries itself:\n{}",
        m.log()
    );
    // n2 and t1 are still kept.
    let before = lookups(m);
    assert!(enoent(&k.join("n2")) && enoent(&k.join("t1")));
    assert_eq!(lookups(m), before);

    // Another path: ops/incr/n2 makes the key n2. Once close() returned,
    // keys/n2 is there.
    std::fs::write(m.mnt.join("ops/incr/n2"), b"5\n").unwrap();
    assert_eq!(std::fs::read(k.join("n2")).unwrap(), b"5", "a key made through ops/incr hidden by a kept miss");
    assert_eq!(stats(m)["negative_entries"]["epochs_raised"], 1);
    // And a tag directory: a file made in tags/T/ is the key t1.
    assert!(enoent(&k.join("t1")));
    std::fs::create_dir_all(m.mnt.join("tags/T")).unwrap();
    std::fs::write(m.mnt.join("tags/T/t1"), b"tagged").unwrap();
    assert_eq!(std::fs::read(k.join("t1")).unwrap(), b"tagged", "a key made in tags/T/ hidden by a kept miss");
    assert_eq!(stats(m)["negative_entries"]["epochs_raised"], 2);
    // A directory kept missing, and a key under it made elsewhere.
    assert!(enoent(&k.join("sub")));
    std::fs::write(m.mnt.join("ops/incr/%str:sub%2Fx"), b"1\n").unwrap();
    assert_eq!(std::fs::read(k.join("sub/x")).unwrap(), b"1", "a directory hidden by a kept miss");
}

/// A miss kept on `m` shows another process's new key within `within`.
fn a_peer_key_shows_within(m: &Mounted, open: &str, within: Duration) {
    let name = "peer";
    assert!(enoent(&m.keys().join(name)));
    py(&format!("import sys, diskcache\nc = {open}\nc['{name}'] = b'p'"), &[m.cache.to_str().unwrap()]);
    let start = Instant::now();
    while enoent(&m.keys().join(name)) {
        assert!(start.elapsed() < within, "a peer's key still hidden after {:?}", start.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(std::fs::read(m.keys().join(name)).unwrap(), b"p");
}

#[test]
fn misses_are_kept_and_every_new_key_shows() {
    let m = Mounted::new();
    a_kept_miss_never_hides_a_key_made_through_the_mount(&m);
    // The timeout is 1 s: a peer's key within it, with room for a loaded
    // machine.
    a_peer_key_shows_within(&m, "diskcache.Cache(sys.argv[1])", Duration::from_secs(5));
    let out = py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\n\
         print(sorted(k for k in c.iterkeys()), c.check())",
        &[m.cache.to_str().unwrap()],
    );
    assert_eq!(out.trim(), "['n1', 'n2', 'n3', 'peer', 'sub/x', 't1'] []");
}

#[test]
fn misses_are_kept_and_every_new_key_shows_fanout() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("fc");
    py("import sys, diskcache\ndiskcache.FanoutCache(sys.argv[1], shards=4)['x'] = 1", &[dir.to_str().unwrap()]);
    let m = Mounted::on(&dir, &[]);
    a_kept_miss_never_hides_a_key_made_through_the_mount(&m);
    a_peer_key_shows_within(&m, "diskcache.FanoutCache(sys.argv[1], shards=4)", Duration::from_secs(5));
}

#[test]
fn a_read_only_mount_keeps_misses_for_the_timeout() {
    let mut m = Mounted::with(
        |c| {
            py("import sys, diskcache\ndiskcache.Cache(sys.argv[1])['x'] = b'x'", &[c.to_str().unwrap()]);
        },
        &["--read-only"],
    );
    stats(&m);
    assert!(enoent(&m.keys().join("gone")));
    let before = lookups(&m);
    for _ in 0..5 {
        assert!(enoent(&m.keys().join("gone")));
    }
    assert_eq!(lookups(&m), before, "misses asked again within the timeout reach the daemon");
    a_peer_key_shows_within(&m, "diskcache.Cache(sys.argv[1])", Duration::from_secs(5));
    m.stop();
}
