//! Every entry of a cache python-diskcache filled with every key, value and
//! tag type, checked through the mount against an independent reading of
//! docs/SEMANTICS.md (tests/py/fs_oracle.py reads cache.db with sqlite3 and
//! applies the documented naming, content and xattr rules), with the tools
//! people use: `cat`, `ls -l`, `stat`, `getfattr -d -m -` and Python's
//! `open()`.

mod support;

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Mounted, getxattr, python, unhex};

fn oracle() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/fs_oracle.py")
}

fn run_oracle(cmd: &str, dir: &Path) -> String {
    let out = Command::new(python()).arg(oracle()).arg(cmd).arg(dir).output().expect("run fs_oracle.py");
    assert!(out.status.success(), "fs_oracle.py {cmd}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

struct Expected {
    key: String,
    name: String,
    content: Vec<u8>,
    xattrs: BTreeMap<String, String>,
    store_time_us: i64,
    access_time_us: i64,
}

fn expected(m: &Mounted) -> Vec<Expected> {
    let described: serde_json::Value = serde_json::from_str(&run_oracle("describe", &m.cache)).unwrap();
    described
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut xattrs = BTreeMap::new();
            for (field, xattr) in [
                ("type", "user.diskcache.type"),
                ("key_type", "user.diskcache.key_type"),
                ("expire_time", "user.diskcache.expire_time"),
                ("tag", "user.diskcache.tag"),
                ("full_key", "user.diskcache.key"),
            ] {
                if let Some(v) = e[field].as_str() {
                    xattrs.insert(xattr.to_string(), v.to_string());
                }
            }
            Expected {
                key: e["key"].as_str().unwrap().to_string(),
                // The file's path below keys/ ("Keys as paths").
                name: e["path"].as_str().unwrap().to_string(),
                content: unhex(e["content"].as_str().unwrap()),
                xattrs,
                store_time_us: e["store_time_us"].as_i64().unwrap(),
                access_time_us: e["access_time_us"].as_i64().unwrap(),
            }
        })
        .collect()
}

fn micros(secs: i64, nsec: i64) -> i64 {
    secs * 1_000_000 + nsec / 1000
}

/// `getfattr -d -m - -e hex FILE` as a map of name to decoded value.
fn getfattr_dump(path: &Path) -> BTreeMap<String, String> {
    let out = Command::new("getfattr").args(["-d", "-m", "-", "-e", "hex", "--absolute-names"]).arg(path).output();
    let out = out.expect("getfattr (package attr) must be installed");
    assert!(out.status.success(), "getfattr -d {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.strip_prefix("0x").unwrap_or_else(|| panic!("getfattr -e hex printed {v:?}"));
            (k.to_string(), String::from_utf8(unhex(v)).unwrap())
        })
        .collect()
}

#[test]
fn every_key_value_and_tag_type_reads_as_documented() {
    let m = Mounted::with(|c| drop(run_oracle("fill", c)), &[]);
    let want = expected(&m);
    let k = m.keys();

    // The listing: exactly the live entries, in the cache's order of keys
    // (a directory where its first key is).
    let listed: Vec<String> =
        std::fs::read_dir(&k).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let mut names: Vec<String> = Vec::new();
    for e in &want {
        let first = e.name.split('/').next().unwrap().to_string();
        if !names.contains(&first) {
            names.push(first);
        }
    }
    assert_eq!(listed, names, "keys/ listing (left) differs from the documented names in key order (right)");
    let mut walked = Vec::new();
    support::walk_files(&k, &mut walked);
    let mut paths: Vec<String> = want.iter().map(|e| e.name.clone()).collect();
    walked.sort();
    paths.sort();
    assert_eq!(walked, paths, "the files under keys/ (left) differ from the documented paths (right)");
    assert!(names.len() >= 29, "the oracle describes {} live entries", names.len());
    assert_eq!(support::errno_of(std::fs::metadata(k.join("expired"))), libc::ENOENT, "stat of an expired key");

    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    for e in &want {
        let path = k.join(&e.name);
        let what = format!("key {} as {:?}", e.key, e.name);
        // std::fs::read and cat.
        let data = std::fs::read(&path).unwrap_or_else(|err| panic!("{what}: read: {err}"));
        assert!(data == e.content, "{what}: read {} bytes, expected {} bytes", data.len(), e.content.len());
        let cat = Command::new("cat").arg(&path).output().unwrap();
        assert!(cat.status.success() && cat.stdout == e.content, "{what}: cat differs");
        // stat(2).
        let md = std::fs::metadata(&path).unwrap();
        assert_eq!(md.len(), e.content.len() as u64, "{what}: st_size");
        assert_eq!(md.mode(), libc::S_IFREG | 0o644, "{what}: st_mode {:o}", md.mode());
        assert_eq!((md.uid(), md.gid()), (uid, gid), "{what}: owner");
        let mtime = micros(md.mtime(), md.mtime_nsec());
        assert!((mtime - e.store_time_us).abs() <= 1, "{what}: mtime {mtime} us, store_time {} us", e.store_time_us);
        let ctime = micros(md.ctime(), md.ctime_nsec());
        assert!((ctime - e.store_time_us).abs() <= 1, "{what}: ctime {ctime} us, store_time {} us", e.store_time_us);
        let atime = micros(md.atime(), md.atime_nsec());
        assert!((atime - e.access_time_us).abs() <= 1, "{what}: atime {atime} us, access_time {}", e.access_time_us);
        // stat(1) and ls -l.
        let out = Command::new("stat").args(["-c", "%s %a %F %u %g %Y"]).arg(&path).output().unwrap();
        let kind = if e.content.is_empty() { "regular empty file" } else { "regular file" };
        let line = format!("{} 644 {kind} {uid} {gid} {}", e.content.len(), md.mtime());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), line, "{what}: stat(1)");
        let out = Command::new("ls").args(["-ln", "--"]).arg(&path).output().unwrap();
        let ls = String::from_utf8_lossy(&out.stdout).to_string();
        let fields: Vec<&str> = ls.split_whitespace().collect();
        assert!(
            out.status.success()
                && fields.len() > 5
                && fields[0] == "-rw-r--r--"
                && fields[4] == e.content.len().to_string(),
            "{what}: ls -ln printed {ls:?}"
        );
        // Each xattr through getxattr(2), and the whole set through getfattr.
        for name in
            ["user.diskcache.type", "user.diskcache.key_type", "user.diskcache.expire_time", "user.diskcache.tag"]
        {
            let got = getxattr(&path, name).map(|v| String::from_utf8_lossy(&v).to_string());
            let exp = e.xattrs.get(name).cloned().ok_or(libc::ENODATA);
            assert_eq!(got, exp, "{what}: getxattr {name} (Err is an errno; ENODATA = {})", libc::ENODATA);
        }
        assert_eq!(getfattr_dump(&path), e.xattrs, "{what}: getfattr -d -m - (left) vs documented xattrs (right)");
    }

    // Python's open() on every file, in one process.
    let script = "import sys\nfor p in sys.argv[1:]:\n    with open(p, 'rb') as f:\n        print(f.read().hex())";
    let out = Command::new(python()).arg("-c").arg(script).args(want.iter().map(|e| k.join(&e.name))).output().unwrap();
    assert!(out.status.success(), "python open(): {}", String::from_utf8_lossy(&out.stderr));
    let read: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect();
    assert_eq!(read.len(), want.len());
    for (e, hex) in want.iter().zip(&read) {
        assert!(unhex(hex) == e.content, "key {} as {:?}: Python open().read() differs", e.key, e.name);
    }

    // Spot checks of the oracle itself against the doc's own examples, so
    // a bug shared by the oracle and the mount cannot pass unseen.
    let by_key: BTreeMap<&str, &Expected> = want.iter().map(|e| (e.key.as_str(), e)).collect();
    for (key, name, content) in [
        ("'a/b'", "a/b", &b"slash"[..]),
        ("'%x'", "%str:%25x", b"percent"),
        ("'.'", "%str:.", b"dot"),
        ("''", "%str:", b"empty key"),
        ("b'\\x00ab/%\\xff'", "%bytes:%00ab%2F%25%FF", b"bytes key"),
        ("42", "%int:42", b"42"),
        ("-7", "%int:-7", b"1e+16"),
        ("1.5", "%float:1.5", b"0.1"),
        ("1e+16", "%float:1e+16", b"-2.5"),
    ] {
        let e = by_key.get(key).unwrap_or_else(|| panic!("oracle lacks {key}"));
        assert_eq!((e.name.as_str(), e.content.as_slice()), (name, content), "oracle for {key}");
    }
    assert_eq!(by_key["'tag int'"].xattrs["user.diskcache.tag"], "%int:3");
    assert_eq!(by_key["'tag pct'"].xattrs["user.diskcache.tag"], "%str:%25t%2Fx");
    assert_eq!(by_key["'tag bytes'"].xattrs["user.diskcache.tag"], "%bytes:%01t");
    assert!(by_key["'big str'"].content.windows(2).any(|w| w == b"\r\n"), "a file-backed str is shown as stored");
    assert_eq!(by_key["'big pickle'"].xattrs["user.diskcache.type"], "pickle");
    assert_eq!(by_key["frozenset()"].xattrs["user.diskcache.type"], "pickle");
    let hashed = &by_key[format!("'{}'", "y".repeat(300)).as_str()].name;
    assert!(hashed.starts_with("%sha256:") && hashed.len() == 8 + 64, "{hashed}");
    assert_eq!(by_key[format!("'{}'", "x".repeat(255)).as_str()].name, "x".repeat(255));
    assert!(Path::new(std::ffi::OsStr::from_bytes(hashed.as_bytes())).file_name().is_some());
}

const DUMP: &str = r#"
import sys, json, diskcache
c = diskcache.Cache(sys.argv[1])
MISS = object()
out = {}
for k in c.iterkeys():
    v, e, t = c.get(k, default=MISS, expire_time=True, tag=True)
    if v is MISS:
        continue  # expired
    st = c._sql('SELECT store_time FROM Cache WHERE rowid = (SELECT MAX(rowid) FROM Cache WHERE key = ?)',
                (c._disk.put(k)[0],)).fetchone()
    out[repr(k)] = [type(v).__name__, repr(v)[:100], len(repr(v)), e, repr(t), round(st[0] * 1e6) if st else None]
print(json.dumps(out, sort_keys=True))
"#;

/// "Whole-tree backups: `rsync -aX MOUNT/ backup/` and back into an empty
/// cache's mount recreate the same cache", for every key, value and tag
/// type the oracle fills in (long keys with `%sha256:` names included):
/// same keys, value types and values, expiry, tags, and store_time (the
/// mtime rsync -a carries, to the microsecond).
#[test]
fn rsync_round_trips_every_key_value_and_tag_type() {
    let a = Mounted::with(|c| drop(run_oracle("fill", c)), &[]);
    let b = Mounted::new();
    let backup = a.root.path().join("backup");
    let out = Command::new("rsync").arg("-aX").arg(format!("{}/", a.mnt.display())).arg(&backup).output().unwrap();
    assert!(out.status.success(), "rsync out: {}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("rsync").arg("-aX").arg(format!("{}/", backup.display())).arg(&b.mnt).output().unwrap();
    let restore_err = String::from_utf8_lossy(&out.stderr).to_string();
    let dump = |m: &Mounted| -> BTreeMap<String, serde_json::Value> {
        let out = Command::new(python()).arg("-c").arg(DUMP).arg(&m.cache).output().unwrap();
        assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (left, right) = (dump(&a), dump(&b));
    // Long keys' %sha256: names do not carry the key: checked last.
    let hashed: Vec<String> =
        expected(&a).into_iter().filter(|e| e.name.starts_with("%sha256:")).map(|e| e.key).collect();
    let missing: Vec<&String> = left.keys().filter(|k| !right.contains_key(*k) && !hashed.contains(k)).collect();
    let extra: Vec<&String> = right.keys().filter(|k| !left.contains_key(*k)).collect();
    // store_time is the last field: equal to the microsecond (mtime is
    // store_time rounded to the microsecond), the rest exactly.
    let same = |l: &serde_json::Value, r: &serde_json::Value| {
        let (l, r) = (l.as_array().unwrap(), r.as_array().unwrap());
        l[..5] == r[..5] && (l[5].as_i64().unwrap() - r[5].as_i64().unwrap()).abs() <= 1
    };
    let differ: Vec<String> = left
        .iter()
        .filter(|(k, v)| right.get(*k).is_some_and(|r| !same(v, r)))
        .map(|(k, v)| format!("\n  {k}: {v} -> {}", right[k]))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "restore: rsync exit {:?} {restore_err}\nkeys not restored: {missing:?}\nkeys not in the original: {extra:?}\n\
         entries that differ ([type, repr, repr length, expire_time, tag, store_time us], original -> restored):{}",
        out.status.code(),
        differ.concat()
    );
    let check = Command::new(python())
        .arg("-c")
        .arg("import sys, diskcache; print(diskcache.Cache(sys.argv[1]).check())")
        .arg(&b.cache)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "[]");
    let lost: Vec<String> = hashed
        .iter()
        .filter(|k| !right.contains_key(*k))
        .map(|k| format!("{}...", k.chars().take(12).collect::<String>()))
        .collect();
    assert!(
        out.status.success() && lost.is_empty(),
        "keys named %sha256: (over 255 bytes) are not restored: {lost:?}; rsync exit {:?}: {restore_err}",
        out.status.code()
    );
}
