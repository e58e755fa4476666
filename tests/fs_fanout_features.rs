//! A FanoutCache directory is mounted by the same tree as one cache
//! (src/fs/store.rs routes each key to its shard), so it gets every
//! feature a one-cache mount has, against python-diskcache 5.6.3's own
//! `FanoutCache`: reads without OPEN and the change watcher on a read-only
//! mount (docs/SEMANTICS.md, "Read-only mounts"), passthrough on a
//! read-write one ("Passthrough"), and keys as paths with directory
//! renames and `%self` ("Keys as paths") whichever shards the keys are in.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use support::{Mounted, errno_of, listing, py, write_closed};

const SHARDS: usize = 16;
const KEYS: usize = 2000;

/// Key `i`'s value as the fill script below makes it: every 25th is 40,000
/// bytes (a value file: over `disk_min_file_size`, 32 KiB), the others
/// about 100 bytes (in `cache.db`).
fn value_of(i: usize) -> Vec<u8> {
    let unit = format!("v{i}-");
    if i.is_multiple_of(25) { unit.repeat(20_000).as_bytes()[..40_000].to_vec() } else { unit.repeat(20).into_bytes() }
}

/// Opens, reads to the end and closes `path` (open(2), read(2) until 0,
/// close(2)).
fn read_whole(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

/// Each operation's count in the mount's `stats` (its `requests` section),
/// read with open, read and close.
fn request_counts(m: &Mounted) -> BTreeMap<String, i64> {
    let text = read_whole(&m.mnt.join("stats")).unwrap();
    let stats: Json =
        serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&text)));
    assert_eq!(stats["fanout_shards"], SHARDS, "the mount of a FanoutCache: {stats}");
    let ops = stats["requests"]["operations"].as_object().expect("stats has requests.operations");
    ops.iter().map(|(k, v)| (k.clone(), v["count"].as_i64().unwrap())).collect()
}

/// The counts of `stats` once they differ from `prev`: on a read-only
/// mount the kernel keeps what it read of `stats` until the watcher drops
/// it (a second old, requests since), so the poll reads the kept copy
/// (costing no request) until a new one is made.
fn next_counts(
    m: &Mounted,
    prev: &BTreeMap<String, i64>,
    also: impl Fn(&BTreeMap<String, i64>) -> bool,
) -> BTreeMap<String, i64> {
    let start = Instant::now();
    loop {
        let now = request_counts(m);
        if now != *prev && also(&now) {
            return now;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "stats not made anew in 5 s: {now:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn n(c: &BTreeMap<String, i64>, op: &str) -> i64 {
    c.get(op).copied().unwrap_or(0)
}

/// `later - earlier`, per operation.
fn minus(later: &BTreeMap<String, i64>, earlier: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    later.keys().chain(earlier.keys()).map(|op| (op.clone(), n(later, op) - n(earlier, op))).collect()
}

/// One pass over every key: open, read to the end, close, checking each
/// content.
fn read_pass(keys: &Path) {
    for i in 0..KEYS {
        let got = read_whole(&keys.join(format!("k{i:04}"))).unwrap();
        assert!(got == value_of(i), "k{i:04}: {} bytes, not its value", got.len());
    }
}

/// Every key's file mapped (and each page touched), unmapped on drop.
struct Mapped(Vec<(*mut libc::c_void, usize)>);

impl Mapped {
    fn all(keys: &Path) -> Mapped {
        let mut maps = Vec::new();
        for i in 0..KEYS {
            let file = std::fs::File::open(keys.join(format!("k{i:04}"))).unwrap();
            let len = value_of(i).len();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
            // SAFETY: a new read-only mapping of the open file, unmapped once.
            let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, fd, 0) };
            assert_ne!(p, libc::MAP_FAILED, "mmap k{i:04}: {}", std::io::Error::last_os_error());
            for at in (0..len).step_by(4096) {
                // SAFETY: within the mapping.
                unsafe { std::ptr::read_volatile((p as *const u8).add(at)) };
            }
            maps.push((p, len));
        }
        Mapped(maps)
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        for &(p, len) in &self.0 {
            // SAFETY: mapped by `all`, unmapped once.
            unsafe { libc::munmap(p, len) };
        }
    }
}

#[test]
fn a_read_only_fanout_mount_reads_warm_files_with_no_request_and_shows_a_peer_s_change_within_a_second() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("fanout");
    // Python's FanoutCache fills it; it says each key's shard.
    let shards: Vec<usize> = serde_json::from_str(&py(
        r#"
import json, sys, diskcache
fc = diskcache.FanoutCache(sys.argv[1], shards=16)
def value(i):
    unit = f'v{i}-'
    return (unit * 20000)[:40000].encode() if i % 25 == 0 else (unit * 20).encode()
for i in range(int(sys.argv[2])):
    fc.set(f'k{i:04}', value(i))
assert sum(1 for _ in fc) == int(sys.argv[2])
print(json.dumps([fc._hash(f'k{i:04}') % 16 for i in range(int(sys.argv[2]))]))
"#,
        &[dir.to_str().unwrap(), &KEYS.to_string()],
    ))
    .unwrap();
    assert_eq!(shards.iter().copied().collect::<std::collections::BTreeSet<_>>().len(), SHARDS, "keys in every shard");
    // Value files in every shard but shard 0 too (i % 25 == 0), checked.
    let m = Mounted::on(&dir, &["--read-only"]);
    let keys = m.keys();
    let start = request_counts(&m);

    // The warm-up pass: the first OPEN is answered ENOSYS, after which the
    // kernel opens and closes by itself; each file is read from the daemon
    // once.
    read_pass(&keys);
    // The pages stay in the kernel's page cache; but proactive reclaim
    // (here DAMON's `pageout` of page cache no process maps, which the
    // machines these tests run on have) may drop any of them at any time,
    // and the kernel then reads that page again: not the daemon's doing.
    // Mapped, they are not reclaimed: the count below is the daemon's
    // alone. (Mapping them sends no request: their pages are in memory.)
    let held = Mapped::all(&keys);
    let warmed = next_counts(&m, &start, |c| n(c, "read") - n(&start, "read") >= KEYS as i64);
    assert!(n(&warmed, "open") <= 1 && n(&warmed, "release") == 0, "reads without OPEN: {warmed:?}");
    // What reading `stats` costs between two of its versions, with nothing
    // else in between (the READ of the last version, its GETATTRs...).
    let quiet = next_counts(&m, &warmed, |_| true);
    let overhead = minus(&quiet, &warmed);
    // The second, identical pass: names, attributes and pages are the
    // kernel's now, so no OPEN, READ or RELEASE reaches the daemon.
    read_pass(&keys);
    let second = next_counts(&m, &quiet, |_| true);
    let pass = minus(&minus(&second, &quiet), &overhead);
    for op in ["open", "read", "release", "flush"] {
        assert_eq!(n(&pass, op), 0, "{op} in the second pass: {pass:?} (overhead {overhead:?}, after it {second:?})");
    }
    drop(held);

    // A Python peer changes a value file's key and deletes a small key,
    // both in shards other than 000 and in two different ones, both read
    // (so held by the kernel) just now.
    let changed = (0..KEYS).find(|&i| i % 25 == 0 && shards[i] != 0).unwrap();
    let deleted = (0..KEYS).find(|&i| i % 25 != 0 && shards[i] != 0 && shards[i] != shards[changed]).unwrap();
    let (changed_path, deleted_path) = (keys.join(format!("k{changed:04}")), keys.join(format!("k{deleted:04}")));
    let new_value = b"the peer's new value\n".repeat(3000);
    py(
        "import sys, diskcache\nfc = diskcache.FanoutCache(sys.argv[1], shards=16)\n\
         fc.set(sys.argv[2], sys.argv[4].encode() * 3000)\ndel fc[sys.argv[3]]",
        &[dir.to_str().unwrap(), &format!("k{changed:04}"), &format!("k{deleted:04}"), "the peer's new value\n"],
    );
    // Both are committed when Python returns: from then on, within a
    // second (the watcher's promise; 200 ms of margin for this poll), a
    // new open reads the new value whole, and the deleted key is gone.
    let since = Instant::now();
    loop {
        let now = read_whole(&changed_path).unwrap();
        assert!(now == value_of(changed) || now == new_value, "a mix of two versions: {} bytes", now.len());
        let gone = errno_of(std::fs::metadata(&deleted_path)) == libc::ENOENT;
        if now == new_value && gone {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_millis(1200),
            "not within a second: k{changed:04} (shard {}) new: {}, k{deleted:04} (shard {}) gone: {gone}",
            shards[changed],
            now == new_value,
            shards[deleted]
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("the peer's change seen after {:?}", since.elapsed());
    assert_eq!(errno_of(read_whole(&deleted_path)), libc::ENOENT);
    assert!(!listing(&keys).contains(&format!("k{deleted:04}")));
}

/// Whether this is scripts/test's pass without passthrough (every mount of
/// the harness gets `--no-passthrough`, and checks it is in effect).
fn no_passthrough_pass() -> bool {
    std::env::var("DISKCACHEFS_TEST_MOUNT_ARGS").is_ok_and(|a| a.split_whitespace().any(|a| a == "--no-passthrough"))
}

fn sha256_of_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    loop {
        let got = f.read(&mut buf).unwrap();
        if got == 0 {
            break;
        }
        total += got;
        hasher.update(&buf[..got]);
    }
    format!("{total} {}", support::hex(&hasher.finalize()))
}

#[test]
fn a_read_write_fanout_mount_reads_value_files_through_passthrough() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("fanout");
    // 256 MiB set by Python (a size limit that keeps it: FanoutCache's
    // default, 1 GiB over 16 shards, would cull it at once).
    let out = py(
        r#"
import hashlib, random, sys, diskcache
fc = diskcache.FanoutCache(sys.argv[1], shards=16, size_limit=2**36)
r = random.Random(7)
v = b''.join(r.randbytes(1 << 20) for _ in range(256))
fc.set('huge', v)
fc.set('small', b's')
print(len(v), hashlib.sha256(v).hexdigest(), fc._hash('huge') % 16, fc._hash('written') % 16)
"#,
        &[dir.to_str().unwrap()],
    );
    let fields: Vec<&str> = out.split_whitespace().collect();
    let huge_hash = format!("{} {}", fields[0], fields[1]);
    assert_eq!(fields[0], (256usize << 20).to_string());
    assert!(fields[2] != "0" && fields[3] != "0" && fields[2] != fields[3], "two shards other than 000: {out}");
    let mut m = Mounted::on(&dir, &[]);
    let keys = m.keys();
    assert_eq!(sha256_of_file(&keys.join("huge")), huge_hash, "keys/huge read through the mount");
    // (Said at INIT, which the first request waited for.)
    let passthrough = !no_passthrough_pass();
    let mode = if passthrough { "passthrough: on" } else { "passthrough: off" };
    assert!(m.log().contains(mode), "{mode} expected:\n{}", m.log());
    // A value written through the mount (into its own shard, other than
    // 000's and huge's), then read back by a new open.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let written: Vec<u8> = (0..(40usize << 20) / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    write_closed(&keys.join("written"), &written).unwrap();
    let written_hash = format!("{} {}", written.len(), support::hex(&Sha256::digest(&written)));
    assert_eq!(sha256_of_file(&keys.join("written")), written_hash, "keys/written read back");
    assert_eq!(sha256_of_file(&keys.join("huge")), huge_hash, "keys/huge again");
    let seen = py(
        "import hashlib, sys, diskcache\nfc = diskcache.FanoutCache(sys.argv[1], shards=16, size_limit=2**36)\n\
         for k in ('huge', 'written'):\n    v = fc[k]\n    print(len(v), hashlib.sha256(v).hexdigest())",
        &[dir.to_str().unwrap()],
    );
    assert_eq!(seen.lines().collect::<Vec<_>>(), [huge_hash.as_str(), written_hash.as_str()], "FanoutCache reads both");
    // Every byte read above came from the kernel reading the value files:
    // no READ reached the daemon (without passthrough, all of them did).
    let counts = m.requests_served();
    let reads = counts.get("read").copied().unwrap_or(0);
    if passthrough {
        assert_eq!(reads, 0, "READs reached the daemon with passthrough on: {counts:?}");
    } else {
        assert!(reads > 0, "without passthrough the reads are the daemon's: {counts:?}");
    }
}

/// Python's view of a cache (`fanout`: a 16-shard FanoutCache, else a
/// Cache), after `ops` (`["set", key, text]`, `["del", key]`): each entry as
/// (shard, key, what `FanoutCache[key]` or `Cache[key]` reads), the keys
/// outside their `Disk.hash` shard, and `check()`'s warnings.
fn python_view(dir: &Path, fanout: bool, ops: Json) -> Json {
    let out = py(
        r#"
import json, sys, diskcache
d, fanout, ops = sys.argv[1], sys.argv[2] == 'fanout', json.loads(sys.argv[3])
c = diskcache.FanoutCache(d, shards=16) if fanout else diskcache.Cache(d)
for op in ops:
    if op[0] == 'set':
        c.set(op[1], op[2].encode())
    else:
        del c[op[1]]
shards = c._shards if fanout else [c]
entries = sorted([i, k, c.get(k, b'<not found>').decode()] for i, s in enumerate(shards) for k in s)
misplaced = [k for i, s in enumerate(shards) for k in s if fanout and c._hash(k) % 16 != i]
print(json.dumps({'entries': entries, 'misplaced': misplaced, 'check': [str(w.message) for w in c.check()]}))
"#,
        &[dir.to_str().unwrap(), if fanout { "fanout" } else { "plain" }, &ops.to_string()],
    );
    serde_json::from_str(&out).unwrap()
}

/// The keys and values of a view, without shards (the same for both
/// layouts), checking the rest: no key outside its shard, `check()` clean.
fn key_values(view: &Json) -> BTreeMap<String, String> {
    assert_eq!(view["misplaced"], serde_json::json!([]), "{view}");
    assert_eq!(view["check"], serde_json::json!([]), "{view}");
    view["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[1].as_str().unwrap().to_string(), e[2].as_str().unwrap().to_string()))
        .collect()
}

fn kv(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Every file below `keys` with its content, as `path=content`.
fn tree(keys: &Path) -> Vec<String> {
    let mut files = Vec::new();
    support::walk_files(keys, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| format!("{f}={}", String::from_utf8(std::fs::read(keys.join(&f)).unwrap()).unwrap()))
        .collect()
}

/// The shard each key is in (one entry per key).
fn shard_of(view: &Json, key: &str) -> u64 {
    let found: Vec<u64> =
        view["entries"].as_array().unwrap().iter().filter(|e| e[1] == key).map(|e| e[0].as_u64().unwrap()).collect();
    assert_eq!(found.len(), 1, "{key} in one shard: {view}");
    found[0]
}

/// Keys as paths through a mount of `dir`, each step checked against what
/// docs/SEMANTICS.md says and against Python; returns what was seen at
/// each step (the listings and Python's keys), to compare the two layouts.
fn keys_as_paths(dir: &Path, fanout: bool) -> Vec<String> {
    let mut seen = Vec::new();
    let m = Mounted::on(dir, &[]);
    let k = m.keys();
    let view = |ops: Json| -> (Json, BTreeMap<String, String>) {
        let v = python_view(dir, fanout, ops);
        let kv = key_values(&v);
        (v, kv)
    };
    // mkdir -p and files in it: a key each, in its own shard.
    std::fs::create_dir_all(k.join("a/b")).unwrap();
    write_closed(&k.join("a/b/x"), b"x").unwrap();
    write_closed(&k.join("a/y"), b"y").unwrap();
    let (v, now) = view(serde_json::json!([]));
    assert_eq!(now, kv(&[("a/b/x", "x"), ("a/y", "y")]), "{v}");
    let old_shards = [shard_of(&v, "a/b/x"), shard_of(&v, "a/y")];
    seen.push(format!("{:?} {now:?}", tree(&k)));
    // The key `a` too: the directory's `%self`.
    write_closed(&k.join("a/%self"), b"self").unwrap();
    assert_eq!(listing(&k.join("a")), ["%self", "b", "y"]);
    let (_, now) = view(serde_json::json!([]));
    assert_eq!(now, kv(&[("a", "self"), ("a/b/x", "x"), ("a/y", "y")]));
    seen.push(format!("{:?} {now:?}", tree(&k)));
    // rmdir of a directory holding a key (its %self): ENOTEMPTY.
    assert_eq!(errno_of(std::fs::remove_dir(k.join("a"))), libc::ENOTEMPTY);
    // The directory renamed (rename(2), as `mv` does): every key under it
    // and its own key move, to other shards where the new keys hash there.
    std::fs::rename(k.join("a"), k.join("c")).unwrap();
    assert_eq!(listing(&k), ["c"]);
    assert_eq!(listing(&k.join("c")), ["%self", "b", "y"]);
    assert_eq!(std::fs::read(k.join("c/b/x")).unwrap(), b"x");
    assert_eq!(errno_of(std::fs::metadata(k.join("a"))), libc::ENOENT);
    let (v, now) = view(serde_json::json!([]));
    assert_eq!(now, kv(&[("c", "self"), ("c/b/x", "x"), ("c/y", "y")]), "no old key left: {v}");
    if fanout {
        let new_shards = [shard_of(&v, "c/b/x"), shard_of(&v, "c/y")];
        assert!(
            old_shards[0] != new_shards[0] && old_shards[1] != new_shards[1],
            "the keys changed shard: {old_shards:?} -> {new_shards:?}"
        );
    }
    seen.push(format!("{:?} {now:?}", tree(&k)));
    // A key and a key under it set by Python: `keys/p/%self` and `keys/p/q`.
    let (_, now) = view(serde_json::json!([["set", "p", "P"], ["set", "p/q", "Q"]]));
    assert_eq!(now, kv(&[("c", "self"), ("c/b/x", "x"), ("c/y", "y"), ("p", "P"), ("p/q", "Q")]));
    assert_eq!(listing(&k), ["c", "p"]);
    assert_eq!(listing(&k.join("p")), ["%self", "q"]);
    assert_eq!(std::fs::read(k.join("p/%self")).unwrap(), b"P");
    assert_eq!(std::fs::read(k.join("p/q")).unwrap(), b"Q");
    seen.push(format!("{:?} {now:?}", tree(&k)));
    // Emptied through the mount, the directory stays, its %self in it;
    // then %self removed, rmdir.
    std::fs::remove_file(k.join("p/q")).unwrap();
    assert_eq!(listing(&k.join("p")), ["%self"]);
    std::fs::remove_file(k.join("p/%self")).unwrap();
    std::fs::remove_dir(k.join("p")).unwrap();
    // An overwrite of the directory's own key, and a file renamed into
    // the directory as its %self's sibling.
    write_closed(&k.join("c/%self"), b"self 2").unwrap();
    write_closed(&k.join("top"), b"t").unwrap();
    std::fs::rename(k.join("top"), k.join("c/b/top")).unwrap();
    let (_, now) = view(serde_json::json!([]));
    assert_eq!(now, kv(&[("c", "self 2"), ("c/b/top", "t"), ("c/b/x", "x"), ("c/y", "y")]));
    assert_eq!(listing(&k), ["c"]);
    seen.push(format!("{:?} {now:?}", tree(&k)));
    seen
}

#[test]
fn keys_as_paths_renames_and_self_work_across_the_shards_as_in_one_cache() {
    let root = tempfile::tempdir().unwrap();
    let (plain, fanout) = (root.path().join("plain"), root.path().join("fanout"));
    py(
        "import sys, diskcache\ndiskcache.Cache(sys.argv[1]).close()\ndiskcache.FanoutCache(sys.argv[2], shards=16).close()",
        &[plain.to_str().unwrap(), fanout.to_str().unwrap()],
    );
    let one = keys_as_paths(&plain, false);
    let sharded = keys_as_paths(&fanout, true);
    assert_eq!(sharded, one, "a FanoutCache mount shows what a one-cache mount shows");
}
