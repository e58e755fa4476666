//! A FanoutCache directory (dspy's and Django's layout: shards `000/` ...
//! `015/`, sub-stores `cache/NAME`, `deque/NAME`, `index/NAME`) mounted as
//! one tree (issue 11, item 3), against python-diskcache 5.6.3's own
//! `FanoutCache`. The bug: such a directory could not be mounted at all (as
//! a plain cache it showed nothing, and a write made a `cache.db` beside
//! the shards that no FanoutCache reads). The fix: a union of one tree per
//! shard (docs/SEMANTICS.md, "FanoutCache directories").

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use diskcachefs::cache::fanout::disk_hash;
use support::{Mounted, errno_of, getxattr, python, sh, unhex};

const SHARDS: u64 = 16;

fn peer(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/fanout_peer.py");
    let out = std::process::Command::new(python()).arg(script).args(args).output().expect("run python");
    assert!(out.status.success(), "fanout_peer.py {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn dump(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&peer(&["dump", dir.to_str().unwrap()])).unwrap()
}

/// A value's file content, as docs/SEMANTICS.md's table says.
fn content_of(enc: &serde_json::Value) -> Vec<u8> {
    match enc[0].as_str().unwrap() {
        "bytes" => unhex(enc[1].as_str().unwrap()),
        "str" => enc[1].as_str().unwrap().as_bytes().to_vec(),
        "int" => enc[1].to_string().into_bytes(),
        other => panic!("no {other} values in these tests"),
    }
}

/// A tag as `user.diskcache.tag` shows it.
fn tag_text(enc: &serde_json::Value) -> Option<String> {
    match enc[0].as_str()? {
        "str" => Some(enc[1].as_str().unwrap().to_string()),
        "int" => Some(format!("%int:{}", enc[1])),
        other => panic!("no {other} tags in these tests"),
    }
}

fn fanout_dir(root: &Path, name: &str, how: &str) -> PathBuf {
    let dir = root.join(name);
    peer(&[how, dir.to_str().unwrap()]);
    dir
}

fn ls(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Percent-encoding as docs/SEMANTICS.md ("Keys to names") says: bytes
/// 0x21 to 0x7E but `%` and `/` as they are, every other byte `%XX`.
fn percent(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if (0x21..=0x7e).contains(&b) && b != b'%' && b != b'/' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A key's path below `keys/`, from its encoding by the Python peer
/// (`[type, data]`), by the rule of docs/SEMANTICS.md ("Keys to names",
/// "Keys as paths"), not by the code under test: each part of a str key
/// that is a usable file name is itself, any other part `%str:` and its
/// percent-encoding; bytes `%bytes:`, an int `%int:`, a float `%float:`
/// and its repr, a pickled key `%pickle:` and its pickle, percent-encoded.
fn doc_name(enc: &serde_json::Value) -> String {
    let data = &enc[1];
    match enc[0].as_str().unwrap() {
        "str" => data
            .as_str()
            .unwrap()
            .split('/')
            .map(|part| {
                assert!(part.len() <= 200, "no %sha256: names written out here: {part}");
                if part.is_empty() || part == "." || part == ".." || part.starts_with('%') || part.contains('\0') {
                    format!("%str:{}", percent(part.as_bytes()))
                } else {
                    part.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("/"),
        "bytes" => format!("%bytes:{}", percent(&unhex(data.as_str().unwrap()))),
        "int" => format!("%int:{}", data.as_i64().unwrap()),
        // Python's repr of the floats these tests use (1.5): Rust's
        // shortest round trip, where it needs no exponent.
        "float" => {
            let repr = format!("{:?}", data.as_f64().unwrap());
            assert!(!repr.contains('e'), "no float repr with an exponent written out here: {repr}");
            format!("%float:{repr}")
        }
        "pickle" => format!("%pickle:{}", percent(&unhex(data.as_str().unwrap()))),
        other => panic!("no {other} keys in these tests"),
    }
}

/// Every entry of every shard, as (shard, name, value, tag, expire).
fn entries(d: &serde_json::Value) -> Vec<(u64, String, serde_json::Value, serde_json::Value, serde_json::Value)> {
    let mut out = Vec::new();
    for (s, shard) in d["shards"].as_array().unwrap().iter().enumerate() {
        for e in shard.as_array().unwrap() {
            out.push((s as u64, doc_name(&e[0]), e[1].clone(), e[3].clone(), e[2].clone()));
        }
    }
    out
}

#[test]
fn python_s_fanout_cache_reads_through_the_mount_and_reads_what_the_mount_writes() {
    let root = tempfile::tempdir().unwrap();
    let dir = fanout_dir(root.path(), "dspy_cache", "fill");
    let before = dump(&dir);
    let all = entries(&before);
    assert!(all.len() > 130);
    // The names written out for the keys of every other type fill() stores.
    for name in ["%bytes:%00raw", "%int:0", "%int:7", "%int:-5", "%int:1099511627776", "%float:1.5", "ünïcode"] {
        assert!(all.iter().any(|e| e.1 == name), "no {name} among {:?}", all.iter().map(|e| &e.1).collect::<Vec<_>>());
    }
    assert_eq!(all.iter().filter(|e| e.1.starts_with("%pickle:")).count(), 1, "the tuple key");
    let m = Mounted::on(&dir, &[]);
    let keys = m.keys();

    // Every key once, each value, tag and expiry as Python stored them.
    let listed = ls(&keys);
    let mut names: Vec<String> = all.iter().map(|e| e.1.clone()).collect();
    names.sort();
    assert_eq!(listed, names, "keys/ is the union of the shards, each key once");
    for (shard, name, value, tag, expire) in &all {
        let key = diskcachefs::fs::names::name_to_key(name.as_bytes()).unwrap();
        if let diskcachefs::fs::names::ParsedName::Key(k) = key {
            assert_eq!(disk_hash(&k) % SHARDS, *shard, "{name} is in FanoutCache's shard");
        }
        let path = keys.join(name);
        assert_eq!(std::fs::read(&path).unwrap(), content_of(value), "{name}");
        let got_tag = getxattr(&path, "user.diskcache.tag").ok().map(|t| String::from_utf8(t).unwrap());
        assert_eq!(got_tag, if tag.is_null() { None } else { tag_text(tag) }, "tag of {name}");
        let got_expire = getxattr(&path, "user.diskcache.expire_time").ok();
        let got_expire = got_expire.map(|t| String::from_utf8(t).unwrap().parse::<f64>().unwrap());
        assert_eq!(got_expire, expire.as_f64(), "expiry of {name}");
    }
    assert_eq!(ls(&m.mnt.join("tags")), ["%int:3", "even"]);
    let even: Vec<&String> = all.iter().filter(|e| tag_text(&e.3).as_deref() == Some("even")).map(|e| &e.1).collect();
    assert_eq!(ls(&m.mnt.join("tags/even")).len(), even.len());
    assert_eq!(ls(&m.mnt), ["cache", "deque", "index", "keys", "tags"]);
    let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(m.mnt.join("stats")).unwrap()).unwrap();
    assert_eq!((stats["count"].as_u64(), stats["fanout_shards"].as_u64()), (Some(all.len() as u64), Some(16)));
    // size_limit is the FanoutCache's: each shard holds a sixteenth.
    assert_eq!(std::fs::read_to_string(m.mnt.join("settings/size_limit")).unwrap(), "1073741824\n");
    // The sub-stores are trees of their own.
    assert_eq!(std::fs::read(m.mnt.join("cache/sub/name/keys/inner")).unwrap(), b"inner value");
    assert_eq!(ls(&m.mnt.join("cache/sub/name/tags")), ["t"]);
    assert_eq!(ls(&m.mnt.join("deque/jobs/queues/%int")).len(), 3);
    assert_eq!(std::fs::read(m.mnt.join("index/ix/keys/a")).unwrap(), b"index a");

    // Writes, renames (most to another shard) and deletes through the mount.
    for i in 0..40 {
        std::fs::write(keys.join(format!("new-{i}")), format!("new value {i}")).unwrap();
    }
    for i in 0..30 {
        let (from, to) = (keys.join(format!("key-{i}")), keys.join(format!("moved-{i}")));
        std::fs::rename(&from, &to).unwrap();
        // The new name reads at once, with the old one's tag.
        assert_eq!(std::fs::read(&to).unwrap(), content_of(&all.iter().find(|e| e.1 == format!("key-{i}")).unwrap().2));
        let old_tag = &all.iter().find(|e| e.1 == format!("key-{i}")).unwrap().3;
        let want = if old_tag.is_null() { None } else { tag_text(old_tag).map(String::into_bytes) };
        assert_eq!(getxattr(&to, "user.diskcache.tag").ok(), want, "moved-{i}");
        assert!(!from.exists());
    }
    for i in 30..40 {
        std::fs::remove_file(keys.join(format!("key-{i}"))).unwrap();
    }
    std::fs::write(m.mnt.join("cache/sub/name/keys/from-mount"), b"sub write").unwrap();
    assert_eq!(std::fs::read(m.mnt.join("deque/jobs/queues/%int/.pull")).unwrap(), b"job-1");
    std::fs::write(m.mnt.join("ops/incr/hits"), b"5\n").unwrap();
    std::fs::write(m.mnt.join("settings/size_limit"), b"160000000\n").unwrap();
    assert_eq!(std::fs::read_to_string(m.mnt.join("settings/size_limit")).unwrap(), "160000000\n");
    // (Read from a shard as a Cache: FanoutCache() itself writes its own
    // size_limit / shards to every shard when it opens.)
    let shard_limit = support::py(
        "import sys, diskcache; print(diskcache.Cache(sys.argv[1] + '/007').size_limit)",
        &[dir.to_str().unwrap()],
    );
    assert_eq!(shard_limit.trim(), "10000000.0", "writing size_limit gives each shard its share");
    // `rm -r tags/T` evicts T in every shard.
    assert!(sh(&format!("rm -r '{}'", m.mnt.join("tags/%int:3").display())).status.success());
    assert!(!m.mnt.join("tags/%int:3").exists());
    // Nothing beside the shards.
    assert!(!dir.join("cache.db").exists());

    let after = dump(&dir);
    assert_eq!(after["misplaced"], serde_json::json!([]), "every key in FanoutCache's shard for it");
    assert_eq!(after["check"], serde_json::json!([]), "FanoutCache.check() passes");
    let now = entries(&after);
    let find = |name: &str| now.iter().find(|e| e.1 == name);
    for i in 0..40 {
        let e = find(&format!("new-{i}")).unwrap_or_else(|| panic!("new-{i}"));
        assert_eq!(content_of(&e.2), format!("new value {i}").into_bytes());
    }
    for i in 0..30 {
        let old = all.iter().find(|e| e.1 == format!("key-{i}")).unwrap();
        if old.3 == serde_json::json!(["int", 3]) {
            assert!(find(&format!("moved-{i}")).is_none(), "evicted with tag 3");
            continue;
        }
        let e = find(&format!("moved-{i}")).unwrap_or_else(|| panic!("moved-{i}"));
        assert_eq!((&e.2, &e.3, &e.4), (&old.2, &old.3, &old.4), "moved-{i} keeps value, tag and expiry");
        assert!(find(&format!("key-{i}")).is_none());
    }
    for i in 30..40 {
        assert!(find(&format!("key-{i}")).is_none());
    }
    assert!(now.iter().all(|e| e.3 != serde_json::json!(["int", 3])), "tag 3 evicted everywhere");
    assert_eq!(find("hits").map(|e| e.2.clone()), Some(serde_json::json!(["int", 5])));
    let sub = &after["subs"]["cache/sub/name"];
    assert!(sub.as_array().unwrap().iter().any(|e| e[0] == serde_json::json!(["str", "from-mount"])));
    assert_eq!(after["subs"]["deque/jobs"].as_array().unwrap().len(), 2, "one job pulled");
}

#[test]
fn rsync_copies_a_mounted_fanout_cache_into_a_fresh_one_exactly() {
    let root = tempfile::tempdir().unwrap();
    let src_dir = fanout_dir(root.path(), "src", "fill");
    let dst_dir = fanout_dir(root.path(), "dst", "fresh");
    {
        let src = Mounted::on(&src_dir, &[]);
        let dst = Mounted::on(&dst_dir, &[]);
        let out = sh(&format!("rsync -aX '{}/' '{}/'", src.mnt.display(), dst.mnt.display()));
        assert!(out.status.success(), "rsync: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(1200));
        // The union's own directories (its root, cache/, deque/, index/)
        // show the first shard's time and keep none set on them: -O.
        let again = sh(&format!("rsync -aXiO '{}/' '{}/'", src.mnt.display(), dst.mnt.display()));
        assert!(again.status.success(), "rsync: {}", String::from_utf8_lossy(&again.stderr));
        assert_eq!(String::from_utf8_lossy(&again.stdout), "", "a second run transfers nothing");
    }
    let (a, b) = (dump(&src_dir), dump(&dst_dir));
    assert_eq!(b["misplaced"], serde_json::json!([]));
    assert_eq!(b["check"], serde_json::json!([]));
    assert_eq!(a["shards"], b["shards"], "the same entries in the same shards");
    assert_eq!(a["subs"], b["subs"], "and in the sub-stores");
}

/// rsync into `tags/` while the kernel is made to drop every name again
/// and again (a kept miss of a key another path then makes raises the
/// kernel's epoch: src/fs/filesystem/negatives.rs): each FORGET of a tag
/// directory's previous life can land between a LOOKUP's interning of its
/// name and the count of that lookup. Before src/fs/intern.rs left
/// forgotten entries for a later trim, one run in three failed with
/// ENOTDIR on `tags/even/...` (the daemon had freed an inode number the
/// kernel held).
#[test]
fn rsync_into_tags_while_every_name_is_made_stale_copies_exactly() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let root = tempfile::tempdir().unwrap();
    let src_dir = fanout_dir(root.path(), "src", "fill");
    let dst_dir = fanout_dir(root.path(), "dst", "fresh");
    {
        let src = Mounted::on(&src_dir, &[]);
        let dst = Mounted::on(&dst_dir, &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let (mnt, stopped) = (dst.mnt.clone(), stop.clone());
        // A missing name looked up, then made through ops/incr: each time
        // the kernel drops every name it holds.
        let churn = std::thread::spawn(move || {
            let mut n = 0u64;
            while !stopped.load(Ordering::Relaxed) {
                let name = format!("zz{n}");
                assert!(std::fs::metadata(mnt.join("keys").join(&name)).is_err());
                std::fs::write(mnt.join("ops/incr").join(&name), b"1\n").unwrap();
                n += 1;
            }
            n
        });
        let out = sh(&format!("rsync -aX '{}/' '{}/'", src.mnt.display(), dst.mnt.display()));
        stop.store(true, Ordering::Relaxed);
        let raised = churn.join().unwrap();
        assert!(out.status.success(), "rsync: {}", String::from_utf8_lossy(&out.stderr));
        let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(dst.mnt.join("stats")).unwrap()).unwrap();
        let epochs = stats["negative_entries"]["epochs_raised"].as_u64().unwrap();
        assert!(epochs >= raised / 2, "{epochs} epochs raised for {raised} keys made elsewhere");
    }
    // The churn's own keys out, the copy is the source.
    peer(&["drop-prefix", dst_dir.to_str().unwrap(), "zz"]);
    let (a, b) = (dump(&src_dir), dump(&dst_dir));
    assert_eq!(b["check"], serde_json::json!([]));
    assert_eq!(a["shards"], b["shards"], "the same entries in the same shards");
}

/// A seeded generator for the random operations (SplitMix64).
struct Ops(u64);

impl Ops {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }

    fn key(&mut self) -> serde_json::Value {
        match self.below(5) {
            0 => serde_json::json!(["int", self.below(20)]),
            _ => serde_json::json!(["str", format!("k{}", self.below(40))]),
        }
    }

    /// One operation on a small set of keys, as JSON for the peer.
    fn next(&mut self) -> serde_json::Value {
        match self.below(10) {
            0..4 => {
                let len = self.below(3000);
                let value: Vec<u8> = (0..len).map(|_| self.below(256) as u8).collect();
                serde_json::json!(["set", self.key(), support::hex(&value)])
            }
            4..6 => serde_json::json!(["delete", self.key()]),
            6..9 => serde_json::json!(["rename", self.key(), self.key()]),
            _ => serde_json::json!(["tag", self.key(), format!("t{}", self.below(3))]),
        }
    }
}

#[test]
fn random_operations_end_the_same_through_the_mount_and_through_fanout_cache() {
    let seed: u64 = std::env::var("DISKCACHEFS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand_seed);
    eprintln!("DISKCACHEFS_SEED={seed}");
    let mut ops_gen = Ops(seed);
    let ops: Vec<serde_json::Value> = (0..300).map(|_| ops_gen.next()).collect();
    let root = tempfile::tempdir().unwrap();
    let through_mount = fanout_dir(root.path(), "a", "fresh");
    let through_python = fanout_dir(root.path(), "b", "fresh");
    let ops_file = root.path().join("ops.json");
    std::fs::write(&ops_file, serde_json::to_vec(&ops).unwrap()).unwrap();
    peer(&["apply", through_python.to_str().unwrap(), ops_file.to_str().unwrap()]);
    // Which keys FanoutCache holds before each operation (the peer's apply
    // acts only on a key `in fc`: nothing expires or is culled here), so
    // each operation's outcome through the mount is known: a set always
    // succeeds; rm, mv and a tag of a missing key are ENOENT
    // (docs/SEMANTICS.md: "Deleting an expired or missing entry: ENOENT");
    // of a present one they succeed, mv onto itself too.
    let mut present = std::collections::BTreeSet::new();
    let mut wrong = Vec::new();
    {
        let m = Mounted::on(&through_mount, &[]);
        let keys = m.keys();
        let path = |k: &serde_json::Value| keys.join(doc_name(k));
        for (i, op) in ops.iter().enumerate() {
            let key = op[1].to_string();
            let (errno, want) = match op[0].as_str().unwrap() {
                "set" => {
                    present.insert(key);
                    (errno_of(std::fs::write(path(&op[1]), unhex(op[2].as_str().unwrap()))), 0)
                }
                "delete" => {
                    let want = if present.remove(&key) { 0 } else { libc::ENOENT };
                    (errno_of(std::fs::remove_file(path(&op[1]))), want)
                }
                "rename" => {
                    let want = if present.remove(&key) {
                        present.insert(op[2].to_string());
                        0
                    } else {
                        libc::ENOENT
                    };
                    (errno_of(std::fs::rename(path(&op[1]), path(&op[2]))), want)
                }
                _ => {
                    let got =
                        support::setxattr(&path(&op[1]), "user.diskcache.tag", op[2].as_str().unwrap().as_bytes());
                    (got.err().unwrap_or(0), if present.contains(&key) { 0 } else { libc::ENOENT })
                }
            };
            if errno != want {
                wrong.push(format!("op {i} {op}: errno {errno}, wanted {want}"));
            }
        }
        assert!(
            wrong.is_empty(),
            "seed {seed}: {} operations gave another outcome:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
        let listed = ls(&keys);
        let mut unique = listed.clone();
        unique.dedup();
        assert_eq!(listed, unique);
        let mut names: Vec<String> = present.iter().map(|k| doc_name(&serde_json::from_str(k).unwrap())).collect();
        names.sort();
        assert_eq!(listed, names, "keys/ after the operations, seed {seed}");
    }
    let (a, b) = (dump(&through_mount), dump(&through_python));
    // The model of which keys are there is FanoutCache's.
    let held: std::collections::BTreeSet<String> = b["shards"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s.as_array().unwrap().iter().map(|e| e[0].to_string()))
        .collect();
    assert_eq!(held, present, "the keys FanoutCache holds after the operations, seed {seed}");
    assert_eq!(a["misplaced"], serde_json::json!([]));
    assert_eq!(a["check"], serde_json::json!([]));
    for (s, (x, y)) in a["shards"].as_array().unwrap().iter().zip(b["shards"].as_array().unwrap()).enumerate() {
        let (x, y) = (x.as_array().unwrap(), y.as_array().unwrap());
        let only = |p: &[serde_json::Value], q: &[serde_json::Value]| -> Vec<String> {
            p.iter()
                .filter(|e| !q.contains(e))
                .map(|e| format!("{} {} tag {}", e[0], e[1].to_string().len(), e[3]))
                .collect()
        };
        assert_eq!(
            (only(x, y), only(y, x)),
            (vec![], vec![]),
            "shard {s}: (through the mount only, through FanoutCache only), seed {seed}"
        );
    }
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[test]
fn a_read_only_mount_of_a_fanout_cache_reads_and_refuses_writes() {
    let root = tempfile::tempdir().unwrap();
    let dir = fanout_dir(root.path(), "c", "fill");
    let m = Mounted::on(&dir, &["--read-only"]);
    assert_eq!(std::fs::read(m.keys().join("an-int")).unwrap(), b"42");
    let err = std::fs::write(m.keys().join("x"), b"y").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert!(!dir.join("cache.db").exists());
}

#[test]
fn keys_as_paths_are_one_tree_across_the_shards() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("paths");
    support::py(
        "import sys, diskcache\nfc = diskcache.FanoutCache(sys.argv[1], shards=16)\n\
         for i in range(40): fc.set(f'src/app/f{i}.py', f'v{i}'.encode())\nfc.set('top', b't')\n\
         fc.set('src/app', b'the key src/app')",
        &[dir.to_str().unwrap()],
    );
    let m = Mounted::on(&dir, &[]);
    let keys = m.keys();
    // One directory src/app/ although its keys are in most shards.
    assert_eq!(ls(&keys), ["src", "top"]);
    assert_eq!(ls(&keys.join("src")), ["app"]);
    // The key src/app, in a shard of its own, is the directory's %self
    // (none is hidden), listed once among the directory's 40 keys.
    let app = ls(&keys.join("src/app"));
    assert_eq!(app.len(), 41, "{app:?}");
    assert_eq!(app.iter().filter(|n| *n == "%self").count(), 1, "{app:?}");
    assert_eq!(std::fs::read(keys.join("src/app/%self")).unwrap(), b"the key src/app");
    assert_eq!(std::fs::read(keys.join("src/app/f7.py")).unwrap(), b"v7");
    // mkdir -p and a file in it: the key in its own shard.
    assert!(sh(&format!("mkdir -p '{0}/x/y' && echo hi > '{0}/x/y/z'", keys.display())).status.success());
    // A directory's keys change shard with their names: mv copies them.
    assert!(sh(&format!("mv '{0}/src/app' '{0}/src/lib'", keys.display())).status.success());
    assert_eq!(ls(&keys.join("src")), ["lib"]);
    assert_eq!(ls(&keys.join("src/lib")).len(), 41);
    let seen = support::py(
        "import sys, diskcache\nfc = diskcache.FanoutCache(sys.argv[1], shards=16)\n\
         print(fc.get('x/y/z'), fc.get('src/lib/f7.py'), fc.get('src/app/f7.py'), fc.get('src/lib'), len(fc))",
        &[dir.to_str().unwrap()],
    );
    assert_eq!(seen.trim(), "b'hi\\n' b'v7' None b'the key src/app' 43");
    let after = dump(&dir);
    assert_eq!((after["misplaced"].clone(), after["check"].clone()), (serde_json::json!([]), serde_json::json!([])));
}
