//! One cache, two mounts (issue 21, item 6): the promises that hold between
//! the mount and Python hold between two daemons on the same directory as
//! well, since each is only another process using python-diskcache's
//! format: `incr` adds every increment once, `.pull` hands each item to
//! exactly one reader, a rename through one is what the other shows, and
//! a read-only mount's watcher tells its kernel of the other's changes.
//! `sync` beside a mount shares and brings entries the mount then serves.
//! And a disk too full for SQLite's WAL: small inline values, `incr` and
//! rename fail with ENOSPC, the old values stay, and the cache recovers.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{Mounted, errno_of, py, sh, write_closed};

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// `cache[key]` as Python prints it.
fn python_get(cache: &Path, key: &str) -> String {
    py(
        "import sys, diskcache\nprint(repr(diskcache.Cache(sys.argv[1]).get(sys.argv[2])))",
        &[cache.to_str().unwrap(), key],
    )
    .trim()
    .to_string()
}

/// Polls `check` until it holds, for a promise with a deadline (`within a
/// second`); `limit` is that deadline with a margin for a loaded machine.
fn within(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn incr_through_two_mounts_and_python_counts_every_increment_once() {
    let a = Mounted::new();
    let b = Mounted::on(&a.cache, &[]);
    let n = 150;
    let loop_in = |m: &Mounted| {
        let line = format!("for i in $(seq {n}); do echo 1 > {} || exit 1; done", q(&m.mnt.join("ops/incr/hits")));
        std::thread::spawn(move || sh(&line))
    };
    let (ta, tb) = (loop_in(&a), loop_in(&b));
    let cache = a.cache.to_str().unwrap().to_string();
    let tp = std::thread::spawn(move || {
        py(
            &format!("import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nfor i in range({n}): c.incr('hits')"),
            &[&cache],
        )
    });
    for t in [ta, tb] {
        let out = t.join().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    tp.join().unwrap();
    assert_eq!(python_get(&a.cache, "hits"), (3 * n).to_string());
    for m in [&a, &b] {
        assert_eq!(std::fs::read_to_string(m.keys().join("hits")).unwrap(), (3 * n).to_string());
    }
}

#[test]
fn pull_through_two_mounts_hands_each_item_to_exactly_one_reader() {
    let items = 300;
    let a = Mounted::with(
        |c| {
            py(
                &format!(
                    "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nfor i in range({items}): c.push(f'item-{{i}}'.encode(), prefix='jobs')"
                ),
                &[c.to_str().unwrap()],
            );
        },
        &[],
    );
    let b = Mounted::on(&a.cache, &[]);
    let consumer = |m: &Mounted, out: std::path::PathBuf| {
        // Until the queue is empty (ENOENT): one item a line.
        let line = format!(
            "while item=$(cat {} 2>/dev/null); do echo \"$item\" >> {}; done",
            q(&m.mnt.join("queues/jobs/.pull")),
            q(&out)
        );
        std::thread::spawn(move || sh(&line))
    };
    let outs = [a.root.path().join("a.out"), b.root.path().join("b.out")];
    let threads = [consumer(&a, outs[0].clone()), consumer(&b, outs[1].clone())];
    let python = py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nwhile True:\n    k, v = c.pull(prefix='jobs')\n    if k is None: break\n    print(v.decode())",
        &[a.cache.to_str().unwrap()],
    );
    for t in threads {
        t.join().unwrap();
    }
    let mut got: Vec<String> = python.lines().map(str::to_string).collect();
    let mut per_reader = vec![got.len()];
    for out in &outs {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        per_reader.push(text.lines().count());
        got.extend(text.lines().map(str::to_string));
    }
    got.sort();
    let mut want: Vec<String> = (0..items).map(|i| format!("item-{i}")).collect();
    want.sort();
    assert_eq!(got, want, "each item exactly once (python, mount A, mount B took {per_reader:?})");
    assert_eq!(python_get(&a.cache, "nothing"), "None");
    let left = py("import sys, diskcache\nprint(len(diskcache.Cache(sys.argv[1])))", &[a.cache.to_str().unwrap()]);
    assert_eq!(left.trim(), "0");
}

#[test]
fn a_rename_through_one_mount_is_what_the_other_shows() {
    let a = Mounted::with(
        |c| {
            py(
                "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nc.set('x', 'the value', tag='t')\nc['dir/inner'] = b'1'",
                &[c.to_str().unwrap()],
            );
        },
        &[],
    );
    // B trusts nothing: every name is looked up again.
    let b = Mounted::on(&a.cache, &["--attr-timeout", "0"]);
    assert_eq!(std::fs::read(b.keys().join("x")).unwrap(), b"the value");
    // A reader open in B keeps its snapshot across the rename.
    let mut reader = std::fs::File::open(b.keys().join("x")).unwrap();
    std::fs::rename(a.keys().join("x"), a.keys().join("y")).unwrap();
    std::fs::rename(a.keys().join("dir"), a.keys().join("moved")).unwrap();
    assert_eq!(errno_of(std::fs::metadata(b.keys().join("x"))), libc::ENOENT);
    assert_eq!(std::fs::read(b.keys().join("y")).unwrap(), b"the value");
    assert_eq!(std::fs::read(b.keys().join("moved/inner")).unwrap(), b"1");
    assert_eq!(errno_of(std::fs::metadata(b.keys().join("dir"))), libc::ENOENT);
    assert_eq!(support::getxattr(&b.keys().join("y"), "user.diskcache.tag").unwrap(), b"t");
    let mut snapshot = String::new();
    std::io::Read::read_to_string(&mut reader, &mut snapshot).unwrap();
    assert_eq!(snapshot, "the value");
    // And back through B, seen by A once its kernel asks again.
    std::fs::rename(b.keys().join("y"), b.keys().join("x")).unwrap();
    within(Duration::from_secs(5), "A sees B's rename (attr timeout 1 s)", || {
        std::fs::read(a.keys().join("x")).is_ok() && std::fs::metadata(a.keys().join("y")).is_err()
    });
    assert_eq!(python_get(&a.cache, "x"), "'the value'");
}

/// A read-only mount beside a writing one: its watcher tells its kernel of
/// every change within a second (docs/SEMANTICS.md, "Read-only mounts"),
/// though its kernel keeps names, attributes and pages for a day.
#[test]
fn a_read_only_mount_sees_the_other_mounts_changes_within_a_second() {
    let a = Mounted::with(
        |c| {
            py(
                "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nc['k'] = b'one'\nc['old'] = b'o'\nc['gone'] = b'g'",
                &[c.to_str().unwrap()],
            );
        },
        &[],
    );
    let ro = Mounted::on(&a.cache, &["--read-only"]);
    let k = ro.keys();
    // Cached in the read-only mount's kernel.
    assert_eq!(std::fs::read(k.join("k")).unwrap(), b"one");
    assert!(std::fs::metadata(k.join("old")).is_ok() && std::fs::metadata(k.join("gone")).is_ok());
    std::fs::write(a.keys().join("k"), b"two, longer").unwrap();
    std::fs::rename(a.keys().join("old"), a.keys().join("new")).unwrap();
    std::fs::remove_file(a.keys().join("gone")).unwrap();
    // The watcher's promise is a second; 5 s leaves room for a loaded machine.
    let limit = Duration::from_secs(5);
    within(limit, "the new value", || std::fs::read(k.join("k")).is_ok_and(|v| v == b"two, longer"));
    within(limit, "the rename", || {
        std::fs::metadata(k.join("old")).is_err() && std::fs::read(k.join("new")).is_ok_and(|v| v == b"o")
    });
    within(limit, "the delete", || errno_of(std::fs::metadata(k.join("gone"))) == libc::ENOENT);
    assert_eq!(errno_of(std::fs::write(k.join("k"), b"x")), libc::EROFS);
}

/// `diskcachefs sync` on a directory that is mounted: it pushes what the
/// mount wrote, and what it pulls the mount serves.
#[test]
fn sync_beside_a_mount_shares_what_the_mount_wrote_and_brings_what_it_serves() {
    let server = support::remote::Server::redis();
    let a = Mounted::new();
    std::fs::create_dir_all(a.keys().join("team")).unwrap();
    std::fs::write(a.keys().join("team/report"), b"from the mount").unwrap();
    std::fs::write(a.keys().join("private"), b"not shared").unwrap();
    let pushed = server.sync_ok(&a.cache, &["--prefix", "team/"]);
    assert_eq!(support::remote::counts(&pushed)[0], 1, "one entry pushed: {pushed}");
    // Another machine's cache gets it, and adds one of its own.
    let other = tempfile::tempdir().unwrap();
    let c = other.path().join("cache");
    py("import sys, diskcache\ndiskcache.Cache(sys.argv[1])['team/plan'] = b'from elsewhere'", &[c.to_str().unwrap()]);
    let there = server.sync_ok(&c, &["--prefix", "team/"]);
    assert_eq!(python_get(&c, "team/report"), "b'from the mount'", "{there}");
    assert_eq!(python_get(&c, "private"), "None");
    // Back beside the mount: pulled into the mounted cache, served by it.
    let back = server.sync_ok(&a.cache, &["--prefix", "team/"]);
    assert_eq!(support::remote::counts(&back)[1], 1, "one entry pulled: {back}");
    within(Duration::from_secs(5), "the pulled entry through the mount", || {
        std::fs::read(a.keys().join("team/plan")).is_ok_and(|v| v == b"from elsewhere")
    });
    assert_eq!(std::fs::read(a.keys().join("team/report")).unwrap(), b"from the mount");
    assert_eq!(support::remote::python_check(&a.cache), "[]");
}

/// A file system too full for SQLite's WAL to grow: small values kept in
/// `cache.db` fail at `close()`, and `incr` and a rename fail, all with
/// ENOSPC; the old values stay; with space again everything works and
/// python-diskcache checks the cache clean.
#[test]
fn a_disk_too_full_for_the_wal_is_enospc_for_inline_values_incr_and_rename() {
    let tmpfs = support::SmallTmpfs::mount("4m");
    let small = tmpfs.path.clone();
    let cache = small.join("cache");
    py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nc['kept'] = b'k' * 100\nc['n'] = 5",
        &[cache.to_str().unwrap()],
    );
    let m = Mounted::on(&cache, &[]);
    let k = m.keys();
    // Fill the rest of the file system with a file of our own, beside the
    // cache, so that the next page SQLite needs is not there.
    let filler = small.join("filler");
    drop(sh(&format!("dd if=/dev/zero of={} bs=4k 2>/dev/null", q(&filler))));
    // Small values (inline in cache.db) until one fails at close(): it
    // must be ENOSPC, and what failed is not stored.
    let mut failed = None;
    for i in 0..10_000 {
        if let Err(errno) = write_closed(&k.join(format!("s{i}")), &[b's'; 200]) {
            failed = Some((i, errno));
            break;
        }
    }
    let (i, errno) = failed.expect("10,000 values fit on a full disk");
    assert_eq!(errno, libc::ENOSPC, "an inline value on a full disk\n{}", m.log());
    // (Python itself cannot open the cache now: diskcache writes its
    // settings at every open.)
    assert_eq!(errno_of(std::fs::metadata(k.join(format!("s{i}")))), libc::ENOENT, "the failed value was stored");
    // With the WAL unable to grow, incr and rename fail the same way.
    let incr = write_closed(&m.mnt.join("ops/incr/n"), b"1");
    let rename = std::fs::rename(k.join("kept"), k.join("renamed")).map_err(|e| e.raw_os_error().unwrap_or(-1));
    assert_eq!(incr, Err(libc::ENOSPC), "incr on a full disk\n{}", m.log());
    assert_eq!(rename, Err(libc::ENOSPC), "rename on a full disk\n{}", m.log());
    assert_eq!(std::fs::read(k.join("kept")).unwrap(), vec![b'k'; 100], "the old value stays");
    assert_eq!(std::fs::read_to_string(k.join("n")).unwrap(), "5", "the counter stays");
    // Space again: everything works.
    std::fs::remove_file(&filler).unwrap();
    std::fs::write(k.join("after"), b"fine").unwrap();
    write_closed(&m.mnt.join("ops/incr/n"), b"1").unwrap();
    let want_n = 6;
    assert_eq!(std::fs::read_to_string(k.join("n")).unwrap(), want_n.to_string());
    std::fs::rename(k.join("kept"), k.join("final")).unwrap();
    drop(m);
    let out = py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nprint(c['final'] == b'k' * 100, c['after'], c['n'], c.check())",
        &[cache.to_str().unwrap()],
    );
    assert_eq!(out.trim(), format!("True b'fine' {want_n} []"));
}
