//! Keys as paths (docs/SEMANTICS.md, "Keys as paths"), through a real
//! mount and python-diskcache: trees copied in with cp, tar and rsync,
//! the hard cases of naming, directory lifecycles, and a directory rename
//! that a Python reader sees happen all at once.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Mounted, errno_of, py, sh, walk_files};

fn pyc(m: &Mounted, code: &str, args: &[&str]) -> String {
    let mut all = vec![m.cache.to_str().unwrap()];
    all.extend_from_slice(args);
    py(&format!("import sys, json, diskcache\nc = diskcache.Cache(sys.argv[1])\n{code}"), &all).trim().to_string()
}

fn ok(out: std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tree of `n` files in nested directories: `dNN/sNN/fNNNN`, content
/// the path itself.
fn make_tree(root: &Path, n: usize) -> Vec<String> {
    let mut paths = Vec::new();
    for i in 0..n {
        let rel = format!("d{:02}/s{:02}/f{i:04}", i % 10, (i / 10) % 7);
        let p = root.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, rel.as_bytes()).unwrap();
        paths.push(rel);
    }
    paths
}

#[test]
fn a_tree_copied_in_with_cp_or_tar_is_one_key_per_file() {
    let m = Mounted::new();
    let src = m.root.path().join("src");
    let paths = make_tree(&src.join("tree"), 1000);
    ok(sh(&format!("cp -r '{}' '{}/'", src.join("tree").display(), m.keys().display())), "cp -r");
    let got = pyc(&m, "print(json.dumps({k: c[k].decode() for k in c}))", &[]);
    let got: std::collections::BTreeMap<String, String> = serde_json::from_str(&got).unwrap();
    assert_eq!(got.len(), 1000, "one key per file");
    for rel in &paths {
        assert_eq!(got.get(&format!("tree/{rel}")).map(String::as_str), Some(rel.as_str()), "key tree/{rel}");
    }
    // The tree reads back the same (diff -r walks every directory).
    ok(sh(&format!("diff -r '{}' '{}'", src.join("tree").display(), m.keys().join("tree").display())), "diff -r");

    // tar -x into keys/ (directories first, times and modes set after).
    let tarball = m.root.path().join("t.tar");
    ok(sh(&format!("tar -C '{}' -cf '{}' tree", src.display(), tarball.display())), "tar -c");
    std::fs::create_dir(m.keys().join("untarred")).unwrap();
    ok(sh(&format!("tar -C '{}' -xf '{}'", m.keys().join("untarred").display(), tarball.display())), "tar -x");
    let n = pyc(&m, "print(sum(1 for k in c if k.startswith('untarred/tree/d')))", &[]);
    assert_eq!(n, "1000");
    // rsync -aX of a native tree (its files have no xattrs, so rsync removes
    // the ones the new files show: the values stay bytes).
    ok(
        sh(&format!("rsync -aX '{}/' '{}/'", src.join("tree").display(), m.keys().join("rsynced").display())),
        "rsync -aX in",
    );
    let got = pyc(&m, "print(sum(1 for k in c if k.startswith('rsynced/') and type(c[k]) is bytes))", &[]);
    assert_eq!(got, "1000", "rsync -aX of a native tree stores each file as bytes");
    // mkdir -p of a new path, and a file in it.
    ok(sh(&format!("mkdir -p '{0}/x/y/z' && echo hi > '{0}/x/y/z/f'", m.keys().display())), "mkdir -p");
    assert_eq!(pyc(&m, "print(c['x/y/z/f'])", &[]), "b'hi\\n'");
    assert_eq!(pyc(&m, "print(c.check())", &[]), "[]");
}

/// Python stores the hard cases; each reads at its documented path, the
/// walk of keys/ finds every key once, and nothing else.
const HARD: &str = r#"
import sys, diskcache
c = diskcache.Cache(sys.argv[1])
for k in ['a', 'a/b', 'a/b/c', '/home/u/x.py', 'https://host//p', 'a/', '', 'e//', 'q/' + 'p' * 300,
          'plain', 'dir/.hidden', 'dir/%pct', 'dir/sp ace', 'é/ü']:
    c[k] = ('v:' + k).encode()
c[7] = b'v:int'
c[b'by/tes'] = b'v:bytes'
"#;

#[test]
fn the_hard_cases_each_have_one_path_and_none_is_hidden() {
    let m = Mounted::with(|c| drop(py(HARD, &[c.to_str().unwrap()])), &[]);
    let k = m.keys();
    let long = format!("q/{}", "p".repeat(300));
    let long_name = {
        use sha2::Digest;
        let d = sha2::Sha256::digest("p".repeat(300).as_bytes());
        format!("q/%sha256:{}", d.iter().map(|b| format!("{b:02x}")).collect::<String>())
    };
    let expected: Vec<(&str, String)> = vec![
        ("a", "a/%self".into()),
        ("a/b", "a/b/%self".into()),
        ("a/b/c", "a/b/c".into()),
        ("/home/u/x.py", "%str:/home/u/x.py".into()),
        ("https://host//p", "https:/%str:/host/%str:/p".into()),
        ("a/", "a/%str:".into()),
        // '' is also the directory of '/home/u/x.py' (its first part is empty).
        ("", "%str:/%self".into()),
        ("e//", "e/%str:/%str:".into()),
        (long.as_str(), long_name.clone()),
        ("plain", "plain".into()),
        ("dir/.hidden", "dir/.hidden".into()),
        ("dir/%pct", "dir/%str:%25pct".into()),
        ("dir/sp ace", "dir/sp ace".into()),
        ("é/ü", "é/ü".into()),
    ];
    for (key, path) in &expected {
        let got = std::fs::read(k.join(path)).unwrap_or_else(|e| panic!("key {key:?} at {path:?}: {e}"));
        assert_eq!(got, format!("v:{key}").into_bytes(), "key {key:?} at {path:?}");
    }
    assert_eq!(std::fs::read(k.join("%int:7")).unwrap(), b"v:int");
    assert_eq!(std::fs::read(k.join("%bytes:by%2Ftes")).unwrap(), b"v:bytes");
    let mut walked = Vec::new();
    walk_files(&k, &mut walked);
    walked.sort();
    let mut want: Vec<String> = expected.iter().map(|(_, p)| p.clone()).collect();
    want.extend(["%int:7".to_string(), "%bytes:by%2Ftes".to_string()]);
    want.sort();
    assert_eq!(walked, want, "every key once, nothing else");
    // The long part's file names its key in user.diskcache.key.
    let xattr = support::getxattr(&k.join(&long_name), "user.diskcache.key").unwrap();
    assert_eq!(String::from_utf8(xattr).unwrap(), format!("%str:q%2F{}", "p".repeat(300)));
    // Non-canonical spellings do not exist.
    for bad in ["%str:a%2Fb", "a/%str:b", "%str:plain"] {
        assert_eq!(errno_of(std::fs::metadata(k.join(bad))), libc::ENOENT, "{bad}");
    }
    // Once nothing is under a, the key a is keys/a again.
    pyc(&m, "for x in ('a/b', 'a/b/c', 'a/'): del c[x]", &[]);
    std::thread::sleep(Duration::from_millis(1100)); // the kernel's entry TTL
    assert_eq!(std::fs::read(k.join("a")).unwrap(), b"v:a");
}

#[test]
fn directories_are_made_removed_and_kept_as_documented() {
    let m = Mounted::new();
    let k = m.keys();
    std::fs::create_dir(k.join("d")).unwrap();
    assert!(k.join("d").is_dir());
    assert_eq!(errno_of(std::fs::create_dir(k.join("d"))), libc::EEXIST);
    std::fs::write(k.join("d/f"), b"1").unwrap();
    assert_eq!(pyc(&m, "print(c['d/f'])", &[]), "b'1'");
    assert_eq!(errno_of(std::fs::remove_dir(k.join("d"))), libc::ENOTEMPTY);
    assert_eq!(errno_of(std::fs::remove_file(k.join("d"))), libc::EISDIR);
    // Emptied through the mount, the directory stays until rmdir.
    std::fs::remove_file(k.join("d/f")).unwrap();
    assert!(k.join("d").is_dir(), "a directory emptied through the mount stays");
    assert_eq!(std::fs::read_dir(k.join("d")).unwrap().count(), 0);
    std::fs::remove_dir(k.join("d")).unwrap();
    assert_eq!(errno_of(std::fs::metadata(k.join("d"))), libc::ENOENT);
    // A file and a directory cannot share a name through the mount.
    std::fs::write(k.join("f"), b"x").unwrap();
    assert_eq!(errno_of(std::fs::create_dir(k.join("f"))), libc::EEXIST);
    assert_eq!(errno_of(std::fs::write(k.join("f/g"), b"x")), libc::ENOTDIR);
    // A directory Python fills appears; rm -r removes every key under it.
    pyc(&m, "for i in range(50): c['py/sub%d/k' % (i % 5)] = b'v'", &[]);
    assert_eq!(std::fs::read_dir(k.join("py")).unwrap().count(), 5);
    ok(sh(&format!("rm -r '{}'", k.join("py").display())), "rm -r");
    assert_eq!(pyc(&m, "print(sum(1 for x in c if x.startswith('py/')))", &[]), "0");
    assert_eq!(errno_of(std::fs::metadata(k.join("py"))), libc::ENOENT);
    // Renaming a file across directories renames the key.
    std::fs::create_dir_all(k.join("p/q")).unwrap();
    std::fs::write(k.join("p/one"), b"1").unwrap();
    std::fs::rename(k.join("p/one"), k.join("p/q/two")).unwrap();
    assert_eq!(pyc(&m, "print(sorted(c))", &[]), "['f', 'p/q/two']");
    // Into itself is EINVAL; onto a non-empty directory ENOTEMPTY; onto a file ENOTDIR.
    std::fs::create_dir(k.join("other")).unwrap();
    std::fs::write(k.join("other/x"), b"x").unwrap();
    assert_eq!(errno_of(std::fs::rename(k.join("p"), k.join("p/q/inner"))), libc::EINVAL);
    assert_eq!(errno_of(std::fs::rename(k.join("p"), k.join("other"))), libc::ENOTEMPTY);
    assert_eq!(errno_of(std::fs::rename(k.join("p"), k.join("f"))), libc::ENOTDIR);
    // Onto an empty directory: replaced.
    std::fs::create_dir(k.join("empty")).unwrap();
    std::fs::rename(k.join("p"), k.join("empty")).unwrap();
    assert_eq!(pyc(&m, "print(sorted(c))", &[]), "['empty/q/two', 'f', 'other/x']");
    assert_eq!(pyc(&m, "print(c.check())", &[]), "[]");
}

#[test]
fn renaming_a_directory_of_1000_keys_is_one_transaction() {
    let m = Mounted::with(
        |c| {
            drop(py(
                "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nfor i in range(1000): c['old/s%d/k%04d' % (i % 10, i)] = b'v'",
                &[c.to_str().unwrap()],
            ))
        },
        &[],
    );
    // A Python reader counts old and new keys in one transaction each,
    // until the rename is seen; every snapshot is all old or all new.
    let reader = Command::new(support::python())
        .arg("-c")
        .arg(
            "import sys, time, diskcache\nc = diskcache.Cache(sys.argv[1])\nseen = set()\ndeadline = time.time() + 60\n\
             while time.time() < deadline:\n    with c.transact():\n        ks = list(c)\n    old = sum(k.startswith('old/') for k in ks)\n    new = sum(k.startswith('new/') for k in ks)\n    seen.add((old, new))\n    if new == 1000: break\nprint(sorted(seen))",
        )
        .arg(&m.cache)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    std::fs::rename(m.keys().join("old"), m.keys().join("new")).unwrap();
    let took = start.elapsed();
    let out = reader.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(seen, "[(0, 1000), (1000, 0)]", "a reader saw a half-done rename (rename took {took:?})");
    assert_eq!(std::fs::read_dir(m.keys().join("new")).unwrap().count(), 10);
    assert_eq!(errno_of(std::fs::metadata(m.keys().join("old"))), libc::ENOENT);
    assert_eq!(std::fs::read(m.keys().join("new/s3/k0013")).unwrap(), b"v");
    assert_eq!(pyc(&m, "print(c.check())", &[]), "[]");
}

#[test]
fn an_rsync_round_trip_of_nested_keys_is_exact_and_a_second_run_prints_nothing() {
    let a = Mounted::with(|c| drop(py(HARD, &[c.to_str().unwrap()])), &[]);
    pyc(&a, "c.set('tagged/x', b't', tag='grp', expire=3600)", &[]);
    // Directories show the cache's last change within a second (the
    // kernel's attribute timeout): let that write settle before copying.
    std::thread::sleep(Duration::from_millis(1200));
    let b = Mounted::new();
    let backup = a.root.path().join("backup");
    ok(sh(&format!("rsync -aX '{}/' '{}/'", a.keys().display(), backup.display())), "rsync out");
    ok(sh(&format!("rsync -aX '{}/' '{}/'", backup.display(), b.keys().display())), "rsync in");
    // Run twice, as users do: the second run changes nothing. (Before
    // anything opens the caches from Python: python-diskcache rewrites its
    // Settings when it opens a cache, which is a change of the cache and
    // so of its directories' times.) After the kernel's attribute timeout,
    // so that what the mounts answer now is compared.
    std::thread::sleep(Duration::from_millis(1200));
    for (from, to) in [(a.keys(), backup.clone()), (backup.clone(), b.keys())] {
        let out = sh(&format!("rsync -aXi '{}/' '{}/'", from.display(), to.display()));
        ok(out.clone(), "second rsync");
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            printed.trim().is_empty(),
            "a second rsync -aXi {} -> {} printed:\n{printed}",
            from.display(),
            to.display()
        );
    }
    let dump = "out = {}\nfor k in c:\n    v, e, t = c.get(k, expire_time=True, tag=True)\n    out[repr(k)] = [repr(v), None if e is None else round(e, 5), t]\nprint(json.dumps(out, sort_keys=True))";
    let left = pyc(&a, dump, &[]);
    let right = pyc(&b, dump, &[]);
    assert_eq!(left, right, "the restored cache differs");
    assert!(left.contains("'a/b/c'") && left.contains("'https://host//p'"), "{left}");
    assert_eq!(pyc(&b, "print(c.check())", &[]), "[]");
}
