//! The remote tier over FanoutCache directories (python-diskcache's
//! `FanoutCache`: shards `000/`, `001/`, ..., a key in shard
//! `Disk.hash(key) % shards`), against a real Redis and a real S3 server
//! (SeaweedFS), with the real python-diskcache 5.6.3 filling and checking
//! the caches: entries of every shard are pushed, and an entry from the
//! store lands in the shard python's `FanoutCache` looks in, whatever the
//! writer's number of shards (the store keys entries by key, not by shard).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use diskcachefs::cache::Key;
use diskcachefs::cache::fanout::disk_hash;
use support::remote::{Server, counts, mount_remote, n, record_names, remote_status, wait_until};

/// The shard counts of the caches: A (Python's entry, mounted), B (empty,
/// mounted: misses), C (empty, mounted: the background pull), D (`sync`).
const A: u64 = 16;
const B: u64 = 8;
const C: u64 = 5;
const D: u64 = 3;

fn shard(key: &str, shards: u64) -> u64 {
    disk_hash(&Key::Str(key.into())) % shards
}

/// A key under the shared prefix that is in shard 0 of none of the caches
/// (an entry put in the wrong shard shows), and in another shard number in
/// A (16 shards) than in B (8).
fn pick(what: &str) -> String {
    (0..)
        .map(|i| format!("shared/{what}-{i}"))
        .find(|k| [A, B, C, D].iter().all(|&s| shard(k, s) != 0) && shard(k, A) != shard(k, B))
        .unwrap()
}

/// Python makes a FanoutCache of `shards` shards in `dir`, with `entries`
/// (str keys, bytes values).
fn python_fanout(dir: &Path, shards: u64, entries: &[(&str, &str)]) {
    let mut args = vec![dir.to_str().unwrap().to_string(), shards.to_string()];
    for (k, v) in entries {
        args.extend([k.to_string(), v.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    support::py(
        "import sys, diskcache\n\
         c = diskcache.FanoutCache(sys.argv[1], shards=int(sys.argv[2]))\n\
         for k, v in zip(sys.argv[3::2], sys.argv[4::2]):\n    c.set(k, v.encode())\n\
         c.close()",
        &args,
    );
}

/// Where Python finds `key` in the FanoutCache of `shards` shards in
/// `dir`: the shards whose own `Cache` has it, and what
/// `FanoutCache(dir, shards)[key]` reads.
fn python_where(dir: &Path, shards: u64, key: &str) -> (Vec<u64>, String) {
    let out = support::py(
        "import sys, json, diskcache\n\
         d, n, k = sys.argv[1], int(sys.argv[2]), sys.argv[3]\n\
         where = [i for i in range(n) if diskcache.Cache('%s/%03d' % (d, i)).get(k) is not None]\n\
         print(json.dumps([where, diskcache.FanoutCache(d, shards=n)[k].decode()]))",
        &[dir.to_str().unwrap(), &shards.to_string(), key],
    );
    serde_json::from_str(out.trim()).unwrap()
}

/// python-diskcache's `FanoutCache(dir, shards).check()`: its warnings.
fn python_fanout_check(dir: &Path, shards: u64) -> String {
    support::py(
        "import sys, warnings, diskcache\n\
         with warnings.catch_warnings(record=True) as w:\n    warnings.simplefilter('always')\n    \
         diskcache.FanoutCache(sys.argv[1], shards=int(sys.argv[2])).check()\n\
         print([str(x.message) for x in w])",
        &[dir.to_str().unwrap(), &shards.to_string()],
    )
    .trim()
    .to_string()
}

/// Reads `path` until it reads, for up to 10 s (a miss that the store
/// could not answer yet is not asked again for 1 s).
fn read_within(path: &Path) -> Vec<u8> {
    let start = Instant::now();
    loop {
        match std::fs::read(path) {
            Ok(v) => return v,
            Err(e) => assert!(start.elapsed() < Duration::from_secs(10), "{}: not within 10 s: {e}", path.display()),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn fanouts_share_across_shard_counts(server: &Server) {
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| tmp.path().join(n));
    let (from_python, through_mount, from_sync) = (pick("python"), pick("mount"), pick("sync"));
    assert!(from_python != through_mount && through_mount != from_sync);
    python_fanout(&a, A, &[(&from_python, "from Python on A")]);
    python_fanout(&b, B, &[]);
    python_fanout(&c, C, &[]);

    // A pushes the entry Python put in one of its shards.
    let misses_only = ["--remote-prefix", "shared/", "--remote-pull-interval", "0"];
    let ma = mount_remote(server, &a, &misses_only);
    wait_until(&ma, "A uploads Python's entry", Duration::from_secs(15), |s| n(s, "uploads") >= 1);

    // B (8 shards, no background pull): the miss asks the store, and the
    // entry lands in B's shard of the key.
    let mb = mount_remote(server, &b, &misses_only);
    let mc = mount_remote(server, &c, &["--remote-prefix", "shared/", "--remote-pull-interval", "0.5"]);
    assert_eq!(std::fs::read(mb.keys().join(&from_python)).unwrap(), b"from Python on A");
    let status = remote_status(&mb);
    assert_eq!((n(&status, "hits"), n(&status, "pulled")), (1, 0), "a hit after a miss: {status}");
    assert_eq!(
        python_where(&b, B, &from_python),
        (vec![shard(&from_python, B)], "from Python on A".to_string()),
        "in B's shard of the key, which FanoutCache(B, shards={B}) reads"
    );

    // A file written through A's mount (stored in A's shard of its key)
    // reaches B.
    std::fs::write(ma.keys().join(&through_mount), "written through A").unwrap();
    assert_eq!(python_where(&a, A, &through_mount).0, [shard(&through_mount, A)]);
    assert_eq!(read_within(&mb.keys().join(&through_mount)), b"written through A");
    assert_eq!(python_where(&b, B, &through_mount), (vec![shard(&through_mount, B)], "written through A".into()));

    // C (5 shards): the background pull puts both in their shards, with
    // nothing read through C's mount.
    wait_until(&mc, "C pulls both entries", Duration::from_secs(15), |s| n(s, "pulled") >= 2);
    for (key, value) in [(&from_python, "from Python on A"), (&through_mount, "written through A")] {
        assert_eq!(python_where(&c, C, key), (vec![shard(key, C)], value.to_string()), "{key} in C");
    }

    // `sync` of a FanoutCache (3 shards): pushes what Python put in a
    // shard, pulls both into their shards; B then reads what it pushed.
    python_fanout(&d, D, &[(&from_sync, "synced from D")]);
    let synced = server.sync_ok(&d, &["--prefix", "shared/"]);
    assert_eq!(counts(&synced), [1, 2, 0, 0, 0, 0, 0], "{synced}");
    for (key, value) in [(&from_python, "from Python on A"), (&through_mount, "written through A")] {
        assert_eq!(python_where(&d, D, key), (vec![shard(key, D)], value.to_string()), "{key} in D");
    }
    assert_eq!(std::fs::read(mb.keys().join(&from_sync)).unwrap(), b"synced from D");
    assert_eq!(python_where(&b, B, &from_sync).0, [shard(&from_sync, B)]);
    let again = server.sync_ok(&d, &["--prefix", "shared/"]);
    assert_eq!(counts(&again)[..2], [0, 0], "nothing new either way: {again}");
    // The cursors: the log's at the top, each shard's push in its own.
    assert!(d.join("cache.db.remote-cursor.json").is_file());
    assert!((0..D).all(|i| d.join(format!("{i:03}/cache.db.remote-cursor.json")).is_file()));

    // The store holds the three entries by key, once each.
    assert_eq!(record_names(server).len(), 3, "{:?}", record_names(server));
    for m in [&ma, &mb, &mc] {
        let s = remote_status(m);
        assert_eq!((n(&s, "errors"), n(&s, "rejected"), n(&s, "local_errors")), (0, 0, 0), "{s}");
    }
    drop((ma, mb, mc));
    for (dir, shards) in [(&a, A), (&b, B), (&c, C), (&d, D)] {
        assert_eq!(python_fanout_check(dir, shards), "[]", "{}", dir.display());
    }
}

#[test]
fn fanout_caches_of_different_shard_counts_share_through_the_remote_redis() {
    fanouts_share_across_shard_counts(&Server::redis());
}

#[test]
fn fanout_caches_of_different_shard_counts_share_through_the_remote_s3() {
    fanouts_share_across_shard_counts(&Server::s3());
}
