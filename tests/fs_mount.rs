//! The mount, for real, against python-diskcache 5.6.3 as the peer: what
//! docs/SEMANTICS.md promises, checked with the tools people use (cat, ls,
//! stat, getfattr, cp, rsync, fsx, Python's open()).

mod support;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{
    Mounted, UnmountOnDrop, errno_of, fuse_threads, getxattr, is_mounted, key_inodes_kept, py, requests_in_log,
    setxattr, sh,
};

const FILL: &str = r#"
import sys, diskcache
c = diskcache.Cache(sys.argv[1])
c['plain'] = b'bytes value'
c['a/b'] = 'str value é'
c['%x'] = 'percent'
c['.'] = 'dot'
c[b'\x00raw'] = 42
c[-7] = 1e16
c[2.5] = 'float key'
c[('tuple', 1)] = {'dict': 1}
c['big'] = b'y' * 100_000
c['bigstr'] = 'é' * 40_000
c.set('tagged', b'v', tag='grp', expire=3600)
c.set('gone', b'v', expire=0.01)
"#;

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn python_entries_appear_with_their_documented_names_content_and_xattrs() {
    let m = Mounted::with(
        |c| {
            py(FILL, &[c.to_str().unwrap()]);
            std::thread::sleep(Duration::from_millis(50)); // let 'gone' expire
        },
        &[],
    );
    let k = m.keys();
    let names: std::collections::BTreeSet<String> =
        std::fs::read_dir(&k).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    for want in
        ["plain", "a", "%str:%25x", "%str:.", "%bytes:%00raw", "%int:-7", "%float:2.5", "big", "bigstr", "tagged"]
    {
        assert!(names.contains(want), "{want} missing from {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("%pickle:")), "{names:?}");
    assert!(!names.contains("gone"), "an expired entry is listed");
    assert_eq!(names.len(), 11);

    assert_eq!(read(&k.join("plain")), b"bytes value");
    assert!(k.join("a").is_dir(), "the key a/b is the file b in the directory a");
    assert_eq!(read(&k.join("a/b")), "str value é".as_bytes());
    assert_eq!(read(&k.join("%bytes:%00raw")), b"42");
    assert_eq!(read(&k.join("%int:-7")), b"1e+16");
    assert_eq!(read(&k.join("big")), vec![b'y'; 100_000]);
    assert_eq!(read(&k.join("bigstr")), "é".repeat(40_000).as_bytes());
    let pickled = py("import pickle; print(pickle.dumps({'dict': 1}, protocol=5).hex())", &[]);
    let pickle_name = names.iter().find(|n| n.starts_with("%pickle:")).unwrap();
    let hex: String = read(&k.join(pickle_name)).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, pickled.trim());
    assert_eq!(std::fs::metadata(k.join("gone")).err().and_then(|e| e.raw_os_error()), Some(libc::ENOENT));

    // stat: exact size, mode, mtime = store_time.
    let meta = std::fs::metadata(k.join("bigstr")).unwrap();
    assert_eq!(meta.len(), 80_000);
    assert_eq!(meta.mode() & 0o777, 0o644);
    let store_time: f64 = py("import sys, diskcache; c = diskcache.Cache(sys.argv[1]); print(c._sql(\"SELECT store_time FROM Cache WHERE key = 'plain'\").fetchone()[0])", &[m.cache.to_str().unwrap()]).trim().parse().unwrap();
    let mtime = std::fs::metadata(k.join("plain")).unwrap().mtime() as f64
        + std::fs::metadata(k.join("plain")).unwrap().mtime_nsec() as f64 / 1e9;
    assert!((mtime - store_time).abs() < 1e-5, "mtime {mtime} store_time {store_time}");

    // xattrs, through libc and through getfattr.
    assert_eq!(getxattr(&k.join("tagged"), "user.diskcache.tag").unwrap(), b"grp");
    let expire: f64 =
        String::from_utf8(getxattr(&k.join("tagged"), "user.diskcache.expire_time").unwrap()).unwrap().parse().unwrap();
    assert!(expire > store_time + 3500.0);
    assert_eq!(getxattr(&k.join("plain"), "user.diskcache.expire_time"), Err(libc::ENODATA));
    assert_eq!(getxattr(&k.join("%int:-7"), "user.diskcache.type").unwrap(), b"float");
    assert_eq!(getxattr(&k.join("%int:-7"), "user.diskcache.key_type").unwrap(), b"int");
    assert_eq!(getxattr(&k.join("bigstr"), "user.diskcache.type").unwrap(), b"str");
    assert_eq!(getxattr(&k.join(pickle_name), "user.diskcache.type").unwrap(), b"pickle");
    let out = sh(&format!("getfattr -d -m - '{}'", k.join("tagged").display()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("user.diskcache.tag=\"grp\"") && text.contains("user.diskcache.type=\"bytes\""), "{text}");
    let out = sh(&format!("ls -l '{}' && cat '{}'", k.display(), k.join("plain").display()));
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("bytes value"));
    let out = sh(&format!("stat -c '%s %a %F %Y' '{}'", k.join("bigstr").display()));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("80000 644 regular file {}", meta.mtime()));
    // Python's open() through the mount.
    assert_eq!(py("import sys; print(open(sys.argv[1]).read())", &[k.join("%str:.").to_str().unwrap()]).trim(), "dot");
}

#[test]
fn writes_renames_and_deletes_through_the_mount_are_seen_by_python() {
    let m = Mounted::new();
    let k = m.keys();
    let c = m.cache.to_str().unwrap();
    sh(&format!("echo hello > '{}'", k.join("greeting").display()));
    sh(&format!("echo world >> '{}'", k.join("greeting").display()));
    std::fs::write(k.join("big"), vec![7u8; 300_000]).unwrap();
    sh(&format!("truncate -s 100000 '{}'", k.join("big").display()));
    {
        let mut f = std::fs::OpenOptions::new().read(true).write(true).open(k.join("big")).unwrap();
        f.seek(SeekFrom::Start(50_000)).unwrap();
        f.write_all(b"XYZ").unwrap();
        f.seek(SeekFrom::Start(150_000)).unwrap(); // past the end: a hole of zeros
        f.write_all(b"end").unwrap();
    }
    std::fs::write(k.join("old"), b"moved").unwrap();
    sh(&format!("setfattr -n user.diskcache.tag -v keep '{}'", k.join("old").display()));
    std::fs::rename(k.join("old"), k.join("new")).unwrap();
    std::fs::write(k.join("doomed"), b"x").unwrap();
    std::fs::remove_file(k.join("doomed")).unwrap();
    let out = py(
        r#"
import sys, json, diskcache
c = diskcache.Cache(sys.argv[1])
big = c.get('big')
print(json.dumps({'greeting': c.get('greeting').decode(), 'big_len': len(big), 'xyz': big[50000:50003].decode(),
  'hole': big[100000:150000] == bytes(50000), 'head': big[:100000].count(7), 'end': big[-3:].decode(),
  'new': [c.get('new', tag=True)[0].decode(), c.get('new', tag=True)[1]], 'old': c.get('old'), 'doomed': c.get('doomed'),
  'check': [str(w.message) for w in c.check()]}))
"#,
        &[c],
    );
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["greeting"], "hello\nworld\n");
    assert_eq!(r["big_len"], 150_003);
    assert_eq!(r["xyz"], "XYZ");
    assert_eq!(r["hole"], true);
    assert_eq!(r["head"], 99_997);
    assert_eq!(r["end"], "end");
    assert_eq!(r["new"], serde_json::json!(["moved", "keep"]), "rename keeps the value and the tag");
    assert!(r["old"].is_null() && r["doomed"].is_null());
    assert_eq!(r["check"], serde_json::json!([]));
}

#[test]
fn a_gibibyte_is_copied_in_and_read_back_in_bounded_memory() {
    // A 4 GiB size limit: with diskcache's default of 1 GiB, a 1 GiB value
    // is culled at once, exactly as cache.set would cull it.
    let m = Mounted::with(
        |c| {
            py("import sys, diskcache; diskcache.Cache(sys.argv[1], size_limit=2**32)", &[c.to_str().unwrap()]);
        },
        &[],
    );
    let src = m.root.path().join("big.src");
    let out = sh(&format!("head -c 1073741824 /dev/urandom > '{}'", src.display()));
    assert!(out.status.success());
    let out = sh(&format!("cp '{}' '{}'", src.display(), m.keys().join("gib").display()));
    assert!(out.status.success(), "cp: {}", String::from_utf8_lossy(&out.stderr));
    let out = sh(&format!("cmp '{}' '{}'", src.display(), m.keys().join("gib").display()));
    assert!(out.status.success(), "read back differs: {}", String::from_utf8_lossy(&out.stdout));
    let rss = m.peak_rss_kib();
    assert!(rss < 100 * 1024, "daemon peak RSS {rss} KiB");
    let out = py(
        "import sys, hashlib, diskcache\nc = diskcache.Cache(sys.argv[1])\nh = hashlib.sha256()\nf = c.read('gib')\nfor b in iter(lambda: f.read(1 << 20), b''): h.update(b)\nprint(h.hexdigest(), c.check())",
        &[m.cache.to_str().unwrap()],
    );
    let want = sh(&format!("sha256sum '{}'", src.display()));
    let want = String::from_utf8_lossy(&want.stdout).split_whitespace().next().unwrap().to_string();
    assert_eq!(out.trim(), format!("{want} []"));
}

fn fsx_binary() -> std::path::PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').map(std::path::PathBuf::from).chain([
        std::path::PathBuf::from(
            std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap())),
        )
        .join("bin"),
    ]) {
        if dir.join("fsx").is_file() {
            return dir.join("fsx");
        }
    }
    panic!("fsx not found: install it with `cargo install fsx --version 0.3.2 --locked` (scripts/test does)");
}

#[test]
fn fsx_runs_ten_thousand_operations_without_error() {
    let m = Mounted::new();
    let out = std::process::Command::new(fsx_binary())
        .args(["-N", "10000", "-S", "7", "-P"])
        .arg(m.root.path())
        .arg(m.keys().join("fsxfile"))
        .current_dir(m.root.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsx failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let check = py("import sys, diskcache; print(diskcache.Cache(sys.argv[1]).check())", &[m.cache.to_str().unwrap()]);
    assert_eq!(check.trim(), "[]");
}

/// fsx with the operations that make this file system commit and reopen:
/// close/reopen (each close commits; the reopen reads the committed value
/// back), fsync and fdatasync (commit while open), mmap reads and writes,
/// truncation, sendfile and copy_file_range, over a file that crosses the
/// inline/value-file boundary (fsx's default 256 KiB).
#[test]
fn fsx_with_reopens_fsync_and_mmap_runs_ten_thousand_operations() {
    let m = Mounted::new();
    let config = m.root.path().join("fsx.toml");
    std::fs::write(
        &config,
        "[weights]\nclose_open = 2\nread = 10\nwrite = 10\nmapread = 5\nmapwrite = 5\ninvalidate = 1\ntruncate = 3\n\
         fsync = 1\nfdatasync = 1\nsendfile = 1\nposix_fadvise = 1\ncopy_file_range = 1\n",
    )
    .unwrap();
    let out = std::process::Command::new(fsx_binary())
        .args(["-N", "10000", "-S", "11", "-f"])
        .arg(&config)
        .arg("-P")
        .arg(m.root.path())
        .arg(m.keys().join("fsxfile"))
        .current_dir(m.root.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsx failed:\n{}{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        m.log()
    );
    // fsx has exited: every descriptor is closed, so the cache checks clean
    // (docs/SEMANTICS.md, tenet 2). A later second check tells a leak from
    // a window after close().
    let c = m.cache.to_str().unwrap();
    let check = "import sys, diskcache; print([str(w.message) for w in diskcache.Cache(sys.argv[1]).check()])";
    let now = py(check, &[c]);
    std::thread::sleep(Duration::from_secs(2));
    let later = py(check, &[c]);
    assert_eq!((now.trim(), later.trim()), ("[]", "[]"), "check() right after fsx exited, and 2 s later");
}

/// Tenet 2: "Cache.check() stays clean" -- also while a writer is open
/// (its private copy may be staged as a file in the cache directory), so
/// that a python-diskcache user's `check(fix=True)` cannot delete a
/// writer's data.
#[test]
fn cache_check_stays_clean_while_a_writer_is_open() {
    let m = Mounted::new();
    let c = m.cache.to_str().unwrap();
    let k = m.keys();
    std::fs::write(k.join("v"), vec![b'x'; 100_000]).unwrap();
    // One Python process does it all: a process that spawned the checks
    // while holding the writers would close the child's inherited copies of
    // the descriptors at exec, and each such close is a FLUSH (a commit).
    let script = r#"
import os, sys, json, diskcache
c = diskcache.Cache(sys.argv[1])
keys = sys.argv[2]
seen = []
def check(label, fix=False):
    seen.append([label, [str(w.message) for w in c.check(fix=fix)]])
w = os.open(os.path.join(keys, 'v'), os.O_RDWR)
os.write(w, b'AB')
check('written, open')
os.fsync(w)
os.write(w, b'CD')
check('fsynced, written again, open')
n = os.open(os.path.join(keys, 'new'), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
os.write(n, b'n' * 100000)
check('a new 100 KB file, open')
check('check(fix=True), what a python-diskcache user may run at any time', fix=True)
os.close(w)
os.close(n)
check('all closed')
v, new = c.get('v'), c.get('new')
print(json.dumps({'seen': seen, 'v': None if v is None else v[:6].decode(), 'new': None if new is None else len(new)}))
"#;
    let out: serde_json::Value = serde_json::from_str(&py(script, &[c, k.to_str().unwrap()])).unwrap();
    let dirty: Vec<String> = out["seen"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s[1] != serde_json::json!([]))
        .map(|s| format!("\n  {}: {}", s[0].as_str().unwrap(), s[1]))
        .collect();
    let values = (out["v"].clone(), out["new"].clone());
    assert!(
        dirty.is_empty() && values == (serde_json::json!("ABCDxx"), serde_json::json!(100_000)),
        "Cache.check() not clean:{}\nthe writers' values after check(fix=True) and close: {values:?} \
         (expected \"ABCDxx\", 100000)",
        dirty.concat()
    );
}

#[test]
fn sigint_unmounts_cleanly_too() {
    let mut m = Mounted::new();
    std::fs::write(m.keys().join("k"), b"v").unwrap();
    let mut child = m.child.take().unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("diskcachefs still running 10 s after SIGINT:\n{}", m.log());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status after SIGINT: {status}\n{}", m.log());
    assert!(!is_mounted(&m.mnt), "still mounted after SIGINT");
    assert_eq!(
        py("import sys, diskcache; print(diskcache.Cache(sys.argv[1]).get('k'))", &[m.cache.to_str().unwrap()]).trim(),
        "b'v'"
    );
}

#[test]
fn rsync_backs_up_and_restores_keys_values_tags_and_expiry() {
    let a = Mounted::with(
        |c| {
            py(FILL, &[c.to_str().unwrap()]);
        },
        &[],
    );
    let b = Mounted::new();
    let backup = a.root.path().join("backup");
    let out = sh(&format!("rsync -aX '{}/' '{}/'", a.keys().display(), backup.display()));
    assert!(out.status.success(), "rsync out: {}", String::from_utf8_lossy(&out.stderr));
    let out = sh(&format!("rsync -aX '{}/' '{}/'", backup.display(), b.keys().display()));
    assert!(out.status.success(), "rsync in: {}", String::from_utf8_lossy(&out.stderr));
    let dump = r#"
import sys, json, pickle, diskcache
c = diskcache.Cache(sys.argv[1])
out = {}
MISS = object()
for k in c.iterkeys():
    v, e, t = c.get(k, default=MISS, expire_time=True, tag=True)
    if v is MISS:
        continue  # expired: iterkeys still lists it, nobody can read it
    out[repr(k)] = [type(v).__name__, repr(v)[:80], None if e is None else round(e, 5), t]
print(json.dumps(out, sort_keys=True))
"#;
    let left: serde_json::Value = serde_json::from_str(&py(dump, &[a.cache.to_str().unwrap()])).unwrap();
    let right: serde_json::Value = serde_json::from_str(&py(dump, &[b.cache.to_str().unwrap()])).unwrap();
    assert_eq!(left, right, "the restored cache differs");
    assert!(left.as_object().unwrap().len() >= 11);
    let check = py("import sys, diskcache; print(diskcache.Cache(sys.argv[1]).check())", &[b.cache.to_str().unwrap()]);
    assert_eq!(check.trim(), "[]");
    for (from, to) in [(a.keys(), backup.clone()), (backup.clone(), b.keys())] {
        let out = sh(&format!("rsync -aX --stats '{}/' '{}/'", from.display(), to.display()));
        let stats = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stats.contains("Number of regular files transferred: 0"),
            "second rsync:\n{stats}"
        );
    }
}

#[test]
fn other_processes_and_the_mount_see_each_others_writes() {
    let m = Mounted::new();
    let c = m.cache.to_str().unwrap();
    // A value written through the mount is in python-diskcache as soon as
    // close() returns.
    let out = py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nfor i in range(20):\n    with open(sys.argv[2], 'wb') as f:\n        f.write(b'v%d' % i)\n    assert c.get('k') == b'v%d' % i, (i, c.get('k'))\nprint('ok')",
        &[c, m.keys().join("k").to_str().unwrap()],
    );
    assert_eq!(out.trim(), "ok");
    // A value set by python-diskcache reads through the mount within 1 s.
    for i in 0..3 {
        py(
            "import sys, diskcache; diskcache.Cache(sys.argv[1]).set('k', sys.argv[2].encode())",
            &[c, &format!("peer-{i}")],
        );
        let start = Instant::now();
        loop {
            if std::fs::read(m.keys().join("k")).ok().as_deref() == Some(format!("peer-{i}").as_bytes()) {
                break;
            }
            assert!(start.elapsed() < Duration::from_millis(1000), "peer write not visible within 1 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn bad_input_gets_a_clear_errno_and_the_daemon_keeps_running() {
    let m = Mounted::new();
    let k = m.keys();
    std::fs::write(k.join("ok"), b"fine").unwrap();
    // Each refused operation, then a read: the daemon is still serving.
    let after = |what: &str, got: i32, want: i32| {
        assert_eq!(got, want, "{what}: errno {got}, expected {want}");
        assert_eq!(read(&k.join("ok")), b"fine", "the daemon stopped serving after {what}");
        assert!(
            m.child.as_ref().is_some_and(|c| unsafe { libc::kill(c.id() as i32, 0) } == 0),
            "daemon gone after {what}"
        );
    };
    let xerr = |r: Result<_, i32>| r.err().unwrap_or(0);
    after("a 256-byte name", errno_of(std::fs::write(k.join("n".repeat(256)), b"x")), libc::ENAMETOOLONG);
    after("expire_time=abc", xerr(setxattr(&k.join("ok"), "user.diskcache.expire_time", b"abc")), libc::EINVAL);
    after("type=nonsense", xerr(setxattr(&k.join("ok"), "user.diskcache.type", b"nonsense")), libc::EINVAL);
    after("getxattr user.other", xerr(getxattr(&k.join("ok"), "user.other").map(drop)), libc::ENODATA);
    after("mkdir keys/%int:3", errno_of(std::fs::create_dir(k.join("%int:3"))), libc::EINVAL);
    after("mkdir over a key's file", errno_of(std::fs::create_dir(k.join("ok"))), libc::EEXIST);
    after("rmdir of a key's file", errno_of(std::fs::remove_dir(k.join("ok"))), libc::ENOTDIR);
    after("mkdir in settings/", errno_of(std::fs::create_dir(m.mnt.join("settings/x"))), libc::EPERM);
    after("create in the root", errno_of(std::fs::write(m.mnt.join("at-root"), b"x")), libc::EPERM);
    after("create %int:notanumber", errno_of(std::fs::write(k.join("%int:notanumber"), b"x")), libc::EINVAL);
    after("symlink in keys/", errno_of(std::os::unix::fs::symlink("ok", k.join("link"))), libc::EPERM);
    // A value that cannot be converted to the type asked for.
    std::fs::write(k.join("word"), b"not a number").unwrap();
    assert_eq!(setxattr(&k.join("word"), "user.diskcache.type", b"int"), Err(libc::EINVAL));
    std::fs::write(k.join("num"), b" 42 ").unwrap();
    setxattr(&k.join("num"), "user.diskcache.type", b"int").unwrap();
    assert_eq!(
        py("import sys, diskcache; print(repr(diskcache.Cache(sys.argv[1]).get('num')))", &[m.cache.to_str().unwrap()])
            .trim(),
        "42"
    );
}

#[test]
fn a_read_only_mount_refuses_writes_and_leaves_the_directory_as_it_was() {
    // Every path, and each file's size and mtime, taken before mounting.
    // Directories' own mtimes are left out: SQLite creates and removes
    // cache.db-wal/-shm for any reader of a WAL database
    // (docs/SEMANTICS.md, "Read-only mounts").
    let snapshot = |dir: &Path| -> Vec<(String, u64, i64, i64)> {
        let mut v: Vec<_> = walk(dir)
            .into_iter()
            .map(|p| {
                if p.is_dir() {
                    return (p.display().to_string(), 0, 0, 0);
                }
                let md = std::fs::symlink_metadata(&p).unwrap();
                (p.display().to_string(), md.len(), md.mtime(), md.mtime_nsec())
            })
            .collect();
        v.sort();
        v
    };
    let before = std::cell::RefCell::new(Vec::new());
    let db = std::cell::RefCell::new(Vec::new());
    let mut m = Mounted::with(
        |c| {
            py(FILL, &[c.to_str().unwrap()]);
            *before.borrow_mut() = snapshot(c);
            *db.borrow_mut() = std::fs::read(c.join("cache.db")).unwrap();
        },
        &["--read-only"],
    );
    let (before, db) = (before.into_inner(), db.into_inner());
    let k = m.keys();
    assert_eq!(read(&k.join("plain")), b"bytes value");
    let mut buf = Vec::new();
    std::fs::File::open(k.join("big")).unwrap().read_to_end(&mut buf).unwrap();
    assert_eq!(errno_of(std::fs::write(k.join("plain"), b"x")), libc::EROFS);
    assert_eq!(errno_of(std::fs::write(k.join("new"), b"x")), libc::EROFS);
    assert_eq!(errno_of(std::fs::remove_file(k.join("plain"))), libc::EROFS);
    assert_eq!(setxattr(&k.join("plain"), "user.diskcache.tag", b"t"), Err(libc::EROFS));
    // While mounted: nothing but SQLite's WAL coordination files is new,
    // and no file that was there changed (size, mtime).
    let during: Vec<_> = snapshot(&m.cache)
        .into_iter()
        .filter(|e| !e.0.ends_with("/cache.db-wal") && !e.0.ends_with("/cache.db-shm"))
        .collect();
    assert_eq!(during, before, "the cache directory changed while mounted read-only");
    let status = m.stop().unwrap();
    assert!(status.success());
    let after = snapshot(&m.cache);
    let changed: Vec<_> =
        after.iter().filter(|e| !before.contains(e)).chain(before.iter().filter(|e| !after.contains(e))).collect();
    assert_eq!(after, before, "the cache directory changed: {changed:?}");
    assert_eq!(std::fs::read(m.cache.join("cache.db")).unwrap(), db);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn sigterm_unmounts_cleanly_and_umount_clears_a_killed_daemons_mount() {
    let mut m = Mounted::new();
    std::fs::write(m.keys().join("k"), b"v").unwrap();
    let status = m.stop().unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(!is_mounted(&m.mnt), "still mounted after SIGTERM");

    m.start(&[]);
    unsafe { libc::kill(m.pid() as i32, libc::SIGKILL) };
    let _ = m.child.take().unwrap().wait();
    // ENOTCONN; ECONNABORTED or ECANCELED when the daemon took requests
    // through io_uring (the kernel aborts the connection as it tears the
    // rings down, and cancels what was queued on them).
    let stale = errno_of(std::fs::read_dir(&m.mnt));
    assert!(
        matches!(stale, libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED),
        "a killed daemon leaves a stale mount: {stale}"
    );
    // Mounting again over it is refused, as a dead mount (with the hint
    // to unmount it), not as a live one.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
        .arg("mount")
        .arg(&m.cache)
        .arg(&m.mnt)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{said}");
    assert!(said.contains("a dead mount is there"), "{said}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diskcachefs")).arg("umount").arg(&m.mnt).output().unwrap();
    assert!(out.status.success(), "umount: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!is_mounted(&m.mnt));
    m.start(&[]);
    assert_eq!(read(&m.keys().join("k")), b"v", "a new mount works");
}

#[test]
fn daemon_mode_returns_once_the_mount_is_ready() {
    let root = tempfile::tempdir().unwrap();
    let (cache, mnt) = (root.path().join("c"), root.path().join("m"));
    std::fs::create_dir(&mnt).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
        .arg("mount")
        .arg(&cache)
        .arg(&mnt)
        .arg("--daemon")
        .arg("--log-file")
        .arg(test_log(&mnt))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ready = is_mounted(&mnt) && std::fs::metadata(mnt.join("keys")).is_ok();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diskcachefs")).arg("umount").arg(&mnt).output().unwrap();
    assert!(ready, "--daemon returned before the mount was ready");
    assert!(out.status.success());
    wait_for_daemon_exit(&cache);
}

/// `k0` .. `k{n-1}` in a new cache at `cache`.
fn fill_keys(cache: &Path, n: usize) {
    py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nwith c.transact():\n    \
         for i in range(int(sys.argv[2])): c[f'k{i}'] = b'v'",
        &[cache.to_str().unwrap(), &n.to_string()],
    );
}

/// Where a test's daemon in the background logs: beside its mount point,
/// in the test's directory (without `--log-file` it would be the default
/// log file, outside it; tests/service.rs tests that one).
fn test_log(mnt: &Path) -> std::path::PathBuf {
    mnt.with_extension("log")
}

/// `diskcachefs mount --daemon ARGS CACHE MNT`, asserting it succeeded
/// (logging to [`test_log`] unless ARGS has a `--log-file`).
fn mount_daemon(cache: &Path, mnt: &Path, args: &[&str]) {
    let log = test_log(mnt);
    let default_log = ["--log-file", log.to_str().unwrap()];
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
        .arg("mount")
        .arg("--daemon")
        .args(args)
        .args(if args.contains(&"--log-file") { &[][..] } else { &default_log[..] })
        .arg(cache)
        .arg(mnt)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success(), "mount --daemon: {}", String::from_utf8_lossy(&out.stderr));
}

/// `pgrep -f` for the daemon serving `cache`, options before it or not
/// ("[d]" keeps pgrep from matching the shell running it).
fn daemon_pattern(cache: &Path) -> String {
    format!("'[d]iskcachefs mount (.* )?{} '", cache.display())
}

/// The daemon serving `cache` (started by `--daemon` or mount(8)).
fn daemon_pid(cache: &Path) -> u32 {
    let out = sh(&format!("pgrep -f {}", daemon_pattern(cache)));
    let pids: Vec<u32> = String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(pids.len(), 1, "one daemon for {}: {pids:?}", cache.display());
    pids[0]
}

/// The LOOKUP and GETATTR requests the daemon serving `mnt` has counted
/// (`requests` in its `stats`).
fn names_and_attributes_asked(mnt: &Path) -> (u64, u64) {
    let stats: serde_json::Value = serde_json::from_slice(&read(&mnt.join("stats"))).unwrap();
    let count = |op: &str| stats["requests"]["operations"][op]["count"].as_u64().unwrap_or(0);
    (count("lookup"), count("getattr"))
}

/// What the kernel asks the daemon serving `mnt` for a second `stat` of
/// the key `k0` made 1.5 s after the first, past the default
/// `--attr-timeout` (1 s): (LOOKUPs, GETATTRs), the second `stats` read
/// that counts them included.
fn asked_again_after_a_second_and_a_half(mnt: &Path) -> (u64, u64) {
    let key = mnt.join("keys/k0");
    std::fs::metadata(&key).unwrap();
    let before = names_and_attributes_asked(mnt);
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::metadata(&key).unwrap();
    let after = names_and_attributes_asked(mnt);
    (after.0 - before.0, after.1 - before.1)
}

/// `--daemon` (which mount(8) and fstab lines always go through) used to
/// rebuild the daemon's command line by hand and dropped `--max-inodes`:
/// the daemon must run with every option given. Checked by what the
/// daemon does: after 3,000 lookups it keeps at most about 500 key inodes
/// (before, the option fell back to its default of 100,000 and all 3,000
/// stayed; and a foreground `--max-inodes 500` was raised to 1,000). Fewer
/// than 500 may stay: the daemon asks the kernel to forget names faster
/// than the kernel's FORGETs come back. `--attr-timeout 30`: a key stat'ed
/// again 1.5 s later costs no request (with the default of 1 s the kernel
/// asks again; the daemon does not log its timeout). `--log-file`: the
/// daemon logs there.
#[test]
fn daemon_mode_runs_the_daemon_with_every_option() {
    let root = tempfile::tempdir().unwrap();
    let (cache, mnt, log) = (root.path().join("c"), root.path().join("m"), root.path().join("daemon.log"));
    std::fs::create_dir(&mnt).unwrap();
    fill_keys(&cache, 3000);
    let log_arg = log.to_str().unwrap();
    mount_daemon(&cache, &mnt, &["--max-inodes", "500", "--attr-timeout", "30", "--log-file", log_arg]);
    let guard = UnmountOnDrop(mnt.clone());
    let asked = asked_again_after_a_second_and_a_half(&mnt);
    let kept = key_inodes_kept(&mnt.join("keys"), 3000);
    drop(guard);
    wait_for_daemon_exit(&cache);
    eprintln!("--daemon --max-inodes 500: {kept} key inodes kept of 3000");
    assert!(kept <= 600, "--max-inodes 500 did not reach the daemon: {kept} key inodes kept");
    assert_eq!(asked, (0, 0), "--attr-timeout 30 did not reach the daemon: (LOOKUP, GETATTR) after 1.5 s");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("serving"), "--log-file did not reach the daemon: {log:?}");
}

/// `--threads N` sets the FUSE dispatch threads, in the foreground and
/// through `--daemon`; the daemon logs the number.
#[test]
fn threads_sets_the_dispatch_threads_in_the_foreground_and_as_a_daemon() {
    let m = Mounted::with(|_| {}, &["--threads", "3"]);
    std::fs::write(m.keys().join("k"), b"three").unwrap();
    assert_eq!(read(&m.keys().join("k")), b"three");
    assert_eq!(fuse_threads(m.pid(), 3), 3, "{}", m.log());
    assert!(m.log().contains("3 FUSE threads"), "{}", m.log());
    drop(m);

    let root = tempfile::tempdir().unwrap();
    let (cache, mnt) = (root.path().join("c"), root.path().join("m"));
    std::fs::create_dir(&mnt).unwrap();
    mount_daemon(&cache, &mnt, &["--threads", "3"]);
    let guard = UnmountOnDrop(mnt.clone());
    std::fs::write(mnt.join("keys/k"), b"daemon").unwrap();
    let value = std::fs::read(mnt.join("keys/k")).unwrap();
    let threads = fuse_threads(daemon_pid(&cache), 3);
    drop(guard);
    wait_for_daemon_exit(&cache);
    assert_eq!(value, b"daemon");
    assert_eq!(threads, 3, "--threads 3 did not reach the daemon");
}

/// Every mount option can be given as a mount(8) / fstab `-o` option, its
/// name with `_` for `-`: `max_inodes=500,threads=3,attr_timeout=30` take
/// effect (the timeout told as in the test above); a bad value is refused
/// with the option's own message and mounts nothing.
#[test]
fn mount_8_passes_every_mount_option() {
    let root = tempfile::tempdir().unwrap();
    let (cache, mnt) = (root.path().join("c"), root.path().join("m"));
    std::fs::create_dir(&mnt).unwrap();
    fill_keys(&cache, 3000);
    let source = format!("{}#{}", env!("CARGO_BIN_EXE_diskcachefs"), cache.display());
    let mount8 = |options: &str| {
        std::process::Command::new("mount")
            .args(["-t", "fuse", &source])
            .arg(&mnt)
            .args(["-o", &format!("{options},log_file={}", test_log(&mnt).display())])
            .output()
            .unwrap()
    };

    let out = mount8("nodev,threads=0");
    assert!(!out.status.success(), "threads=0 mounted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!is_mounted(&mnt));

    let out = mount8("nodev,max_inodes=500,threads=3,attr_timeout=30");
    assert!(out.status.success(), "mount(8): {}", String::from_utf8_lossy(&out.stderr));
    let guard = UnmountOnDrop(mnt.clone());
    let threads = fuse_threads(daemon_pid(&cache), 3);
    let asked = asked_again_after_a_second_and_a_half(&mnt);
    let kept = key_inodes_kept(&mnt.join("keys"), 3000);
    drop(guard);
    wait_for_daemon_exit(&cache);
    eprintln!("-o max_inodes=500: {kept} key inodes kept of 3000");
    assert_eq!(threads, 3, "-o threads=3 did not reach the daemon");
    assert!(kept <= 600, "-o max_inodes=500 did not reach the daemon: {kept} key inodes kept");
    assert_eq!(asked, (0, 0), "-o attr_timeout=30 did not reach the daemon: (LOOKUP, GETATTR) after 1.5 s");
}

/// The read modes' options (`--no-passthrough`, `--open-requests` with
/// `--read-only`) reach the daemon through `--daemon` and through mount(8)
/// `-o`, told by what the daemon logs: its passthrough mode, and how many
/// OPEN requests three reads of a read-only mount cost (one answered
/// ENOSYS without `--open-requests`, one per read with it).
#[test]
fn the_read_modes_reach_the_daemon_through_daemon_and_mount_8() {
    let root = tempfile::tempdir().unwrap();
    let (cache, mnt) = (root.path().join("c"), root.path().join("m"));
    std::fs::create_dir(&mnt).unwrap();
    py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nfor k in 'abc': c[k] = k.encode() * 40000",
        &[cache.to_str().unwrap()],
    );
    let source = format!("{}#{}", env!("CARGO_BIN_EXE_diskcachefs"), cache.display());
    // Mounts one way, reads the three keys, unmounts; the daemon's log.
    let run = |how: &str, options: &str| -> String {
        let log = root.path().join(format!("{how}-{}.log", options.replace(',', "_")));
        let log_arg = log.to_str().unwrap();
        if how == "daemon" {
            let mut args: Vec<&str> = options.split(',').filter(|o| !o.is_empty()).collect();
            args.extend(["--log-file", log_arg]);
            mount_daemon(&cache, &mnt, &args);
        } else {
            let out = std::process::Command::new("mount")
                .args(["-t", "fuse", &source])
                .arg(&mnt)
                .args(["-o", &format!("{options},log_file={log_arg}")])
                .env("RUST_LOG", "info")
                .output()
                .unwrap();
            assert!(out.status.success(), "mount(8) -o {options}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let guard = UnmountOnDrop(mnt.clone());
        for k in ["a", "b", "c"] {
            assert_eq!(read(&mnt.join("keys").join(k)).len(), 40000);
        }
        drop(guard);
        wait_for_daemon_exit(&cache);
        std::fs::read_to_string(&log).unwrap()
    };
    let opens = |log: &str| requests_in_log(log).get("open").copied().unwrap_or(0);
    let log = run("daemon", "--no-passthrough");
    assert!(log.contains("passthrough: off (not asked for)"), "{log}");
    let log = run("mount8", "no_passthrough");
    assert!(log.contains("passthrough: off (not asked for)"), "{log}");
    let log = run("mount8", "nodev");
    assert!(log.contains("passthrough: on"), "{log}");
    let log = run("daemon", "--read-only");
    assert!(opens(&log) <= 1, "{log}");
    let log = run("daemon", "--read-only,--open-requests");
    assert!(opens(&log) >= 3, "{log}");
    let log = run("mount8", "ro,open_requests");
    assert!(opens(&log) >= 3, "{log}");
}

/// The daemon serving `cache` exits once unmounted (within 10 s).
fn wait_for_daemon_exit(cache: &Path) {
    let start = Instant::now();
    while sh(&format!("pgrep -f {}", daemon_pattern(cache))).status.success() {
        assert!(start.elapsed() < Duration::from_secs(10), "daemon still running after umount");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Issue 5: usable from mount(8) and /etc/fstab the way sshfs is. mount(8)
/// runs mount.fuse3, which runs `diskcachefs CACHE MNT -o OPTS`; `ro` and
/// `allow_other` must take effect, the rest be ignored, and the daemon
/// must be in the background by the time mount(8) returns. The fstab line
/// is read from a file of its own (`mount -T`), so the machine's is
/// untouched; `fuse.diskcachefs` needs the binary in mount's PATH, so the
/// `fuse` type with `BINARY#CACHE` names it instead.
#[test]
fn mount_8_and_an_fstab_line_mount_it() {
    let root = tempfile::tempdir().unwrap();
    let (cache, mnt) = (root.path().join("c"), root.path().join("m"));
    std::fs::create_dir(&mnt).unwrap();
    py("import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nc['hello'] = b'world'", &[cache.to_str().unwrap()]);
    let source = format!("{}#{}", env!("CARGO_BIN_EXE_diskcachefs"), cache.display());

    // mount -t fuse ... -o ro,allow_other,nodev,nofail
    let out = std::process::Command::new("mount")
        .args(["-t", "fuse", &source])
        .arg(&mnt)
        .args(["-o", &format!("ro,allow_other,nodev,nofail,log_file={}", test_log(&mnt).display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "mount(8): {}", String::from_utf8_lossy(&out.stderr));
    let mounted = is_mounted(&mnt);
    let hello = std::fs::read(mnt.join("keys/hello"));
    let write = errno_of(std::fs::write(mnt.join("keys/new"), b"x"));
    let options = std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(mnt.to_str().unwrap()))
        .unwrap_or_default()
        .to_string();
    let umount = std::process::Command::new("umount").arg(&mnt).status().unwrap();
    assert!(mounted, "mount(8) returned before the mount was there");
    assert_eq!(hello.unwrap(), b"world");
    assert_eq!(write, libc::EROFS, "ro was ignored");
    assert!(options.contains("allow_other") && options.contains(" ro,"), "{options}");
    assert!(umount.success());
    wait_for_daemon_exit(&cache);

    // The same as a line of an fstab, writable this time.
    let fstab = root.path().join("fstab");
    let log = test_log(&mnt);
    std::fs::write(&fstab, format!("{source} {} fuse defaults,nofail,log_file={} 0 0\n", mnt.display(), log.display()))
        .unwrap();
    let out = std::process::Command::new("mount").arg("-T").arg(&fstab).arg(&mnt).output().unwrap();
    assert!(out.status.success(), "mount -T fstab: {}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::write(mnt.join("keys/new"), b"from fstab");
    let umount = std::process::Command::new("umount").arg(&mnt).status().unwrap();
    written.unwrap();
    assert!(umount.success());
    wait_for_daemon_exit(&cache);
    let out = py("import sys, diskcache\nprint(diskcache.Cache(sys.argv[1])['new'])", &[cache.to_str().unwrap()]);
    assert_eq!(out.trim(), "b'from fstab'");
}
