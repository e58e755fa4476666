//! A new user's first hour (issue 20): the mistakes a first try makes are
//! refused before anything is mounted or created, with a message that says
//! what to do; ordinary edits keep what Python reads back; a read-only
//! mount never pretends to pull; a rename that cannot happen is refused
//! before `mv` copies anything.
//!
//! No test here lists or stats a path that could hang: a refused mount
//! point is checked through /proc/self/mountinfo only.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{Mounted, UnmountOnDrop, is_mounted, py, sh};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_diskcachefs")
}

/// Runs diskcachefs in `cwd` with `args`; its output and how long it took.
fn run_in(cwd: &Path, args: &[&str]) -> (Output, Duration) {
    let start = Instant::now();
    let out = Command::new(bin()).args(args).current_dir(cwd).env("RUST_LOG", "info").output().unwrap();
    (out, start.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A directory with a python-diskcache cache `c` (one key) and an empty
/// mount point `m`.
fn workspace() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let (cache, mnt) = (root.path().join("c"), root.path().join("m"));
    std::fs::create_dir(&mnt).unwrap();
    py("import sys, diskcache\ndiskcache.Cache(sys.argv[1])['k'] = b'v'", &[cache.to_str().unwrap()]);
    (root, cache, mnt)
}

/// The entries of `dir`, sorted (to show nothing was created).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Asserts a refusal: exit 2, no panic, `needle` in the message, nothing
/// mounted at any of `places`, within a second (it never waited on a
/// mount).
fn assert_refused(out: &Output, took: Duration, needle: &str, places: &[&Path]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "exit 2 expected: {err}");
    assert!(!err.contains("panicked"), "a panic: {err}");
    assert!(err.contains(needle), "the message should say {needle:?}: {err}");
    assert!(took < Duration::from_secs(1), "took {took:?}: {err}");
    for place in places {
        assert!(!is_mounted(place), "{} was mounted: {err}", place.display());
    }
}

#[test]
fn a_mount_point_that_is_or_holds_or_lies_in_the_cache_is_refused() {
    let (root, cache, _) = workspace();
    let (c, r) = (cache.to_str().unwrap(), root.path().to_str().unwrap());
    let inside = cache.join("inner");
    std::fs::create_dir(&inside).unwrap();
    for (mountpoint, needle) in [(c, "is the cache directory"), (r, "holds the cache directory")] {
        let (out, took) = run_in(root.path(), &["mount", c, mountpoint]);
        assert_refused(&out, took, needle, &[&cache, root.path()]);
        let (out, took) = run_in(root.path(), &["mount", "--daemon", c, mountpoint]);
        assert_refused(&out, took, needle, &[&cache, root.path()]);
    }
    // The relative forms a first try uses (`diskcachefs mount c .`).
    let (out, took) = run_in(root.path(), &["mount", "c", "."]);
    assert_refused(&out, took, "holds the cache directory", &[root.path()]);
    let (out, took) = run_in(root.path(), &["mount", "c", "c/inner"]);
    assert_refused(&out, took, "lies in the cache directory", &[&inside]);
    // And a log file the daemon would write through its own mount.
    let (_other, _, mnt) = workspace();
    let log = mnt.join("x.log");
    let (out, took) =
        run_in(root.path(), &["mount", "--daemon", "--log-file", log.to_str().unwrap(), c, mnt.to_str().unwrap()]);
    assert_refused(&out, took, "inside the mount point", &[&mnt]);
    assert_eq!(py("import sys, diskcache\nprint(diskcache.Cache(sys.argv[1])['k'])", &[c]).trim(), "b'v'");
}

#[test]
fn a_word_that_is_not_a_command_mounts_and_creates_nothing() {
    let (root, cache, mnt) = workspace();
    let before = entries(root.path());
    let (c, m) = (cache.to_str().unwrap(), mnt.to_str().unwrap());
    for args in [vec!["mout", c], vec!["mout", c, m], vec!["statz", c], vec!["srve", c, "--listen", "127.0.0.1:1"]] {
        let (out, took) = run_in(root.path(), &args);
        assert_refused(&out, took, "unrecognized subcommand", &[&cache, &mnt]);
        assert_eq!(entries(root.path()), before, "{args:?} created something");
    }
    // The mount(8) form still works as mount.fuse3 runs it: tested with
    // mount(8) itself in tests/fs_mount.rs; here, its shape alone.
    let (out, took) = run_in(root.path(), &["c", "m", "-o", "ro"]);
    assert_refused(&out, took, "unrecognized subcommand", &[&mnt]);
}

#[test]
fn every_option_is_checked_before_anything_starts() {
    let (root, cache, mnt) = workspace();
    let (c, m) = (cache.to_str().unwrap(), mnt.to_str().unwrap());
    let file = root.path().join("afile");
    std::fs::write(&file, b"x").unwrap();
    let stranger = root.path().join("photos");
    std::fs::create_dir(&stranger).unwrap();
    std::fs::write(stranger.join("a.jpg"), b"jpeg").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["mount", "--attr-timeout", "1e30", c, m], "--attr-timeout"),
        (vec!["mount", "--timeout", "1e30", c, m], "--timeout"),
        (vec!["mount", "--attr-timeout=-1", c, m], "--attr-timeout"),
        (vec!["mount", "--daemon", "--log-file", "/missing/dir/x.log", c, m], "no such directory /missing/dir"),
        (vec!["mount", "--log-file", "x.log", c, m], "--daemon"),
        (vec!["mount", "--open-requests", c, m], "--read-only"),
        (vec!["mount", file.to_str().unwrap(), m], "not a directory"),
        (vec!["mount", stranger.to_str().unwrap(), m], "--create"),
        (vec!["mount", "--daemon", stranger.to_str().unwrap(), m], "--create"),
    ];
    for (args, needle) in cases {
        let (out, took) = run_in(root.path(), &args);
        assert_refused(&out, took, needle, &[&mnt]);
    }
    assert!(!Path::new("/missing").exists(), "a log directory was made");
    assert_eq!(entries(&stranger), ["a.jpg"], "a cache.db was made in a directory that is not a cache");
    // --create makes the cache there, as asked.
    let mut made = Mounted::on(&stranger, &["--create"]);
    std::fs::write(made.keys().join("new"), b"1").unwrap();
    assert!(made.stop().unwrap().success());
    assert!(stranger.join("cache.db").is_file());
    assert!(stranger.join("a.jpg").is_file());
}

#[test]
fn a_live_or_dead_mount_point_is_named_as_such() {
    let (root, cache, mnt) = workspace();
    let (c, m) = (cache.to_str().unwrap(), mnt.to_str().unwrap());
    let log = root.path().join("d.log");
    let (out, _) = run_in(root.path(), &["mount", "--daemon", "--log-file", log.to_str().unwrap(), c, m]);
    assert!(out.status.success(), "{}", stderr(&out));
    let _guard = UnmountOnDrop(mnt.clone());
    let daemons = |pattern: &str| -> Vec<i32> {
        let out = sh(&format!("pgrep -f '[d]iskcachefs mount --daemon --log-file {pattern}'"));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().parse().unwrap()).collect()
    };
    let pids = daemons(log.to_str().unwrap());
    assert_eq!(pids.len(), 1, "{pids:?}");
    // A second mount on the live one: refused, no second daemon.
    for args in [vec!["mount", c, m], vec!["mount", "--daemon", c, m]] {
        let (out, took) = run_in(root.path(), &args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("already mounted: diskcachefs umount"), "{err}");
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
    assert_eq!(daemons(log.to_str().unwrap()), pids, "a second daemon was stacked");
    assert_eq!(std::fs::read(mnt.join("keys/k")).unwrap(), b"v");
    // The daemon killed: the retry says what is there and what to run.
    unsafe { libc::kill(pids[0], libc::SIGKILL) };
    let start = Instant::now();
    while !daemons(log.to_str().unwrap()).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "the daemon did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (out, took) = run_in(root.path(), &["mount", c, m]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("a dead mount is there") && err.contains("diskcachefs umount"), "{err}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // What it says to run works, and then the mount does.
    let (out, _) = run_in(root.path(), &["umount", m]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut again = Mounted::on(&cache, &[]);
    assert_eq!(std::fs::read(again.keys().join("k")).unwrap(), b"v");
    assert!(again.stop().unwrap().success());
}

/// `get(key, expire_time=True, tag=True)` as Python prints it, the
/// expiry rounded to whole seconds from now.
fn got(cache: &Path, key: &str) -> String {
    py(
        "import sys, time, diskcache\nc = diskcache.Cache(sys.argv[1])\n\
         v, e, t = c.get(sys.argv[2], expire_time=True, tag=True)\n\
         print(repr(v), None if e is None else round(e - time.time(), -1), repr(t))",
        &[cache.to_str().unwrap(), key],
    )
    .trim()
    .to_string()
}

#[test]
fn edits_keep_the_type_tag_and_expiry_python_expects() {
    let m = Mounted::with(
        |c| {
            py(
                "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\n\
                 c['count'] = 17\nc['ratio'] = 0.5\n\
                 c.set('greeting', 'hello world', expire=3600, tag='t1')\n\
                 c.set('notes', 'abc def', expire=7200, tag='t2')\n\
                 c.set('big', 'x' * 100000, tag='t3')\n\
                 c['blob'] = b'raw'",
                &[c.to_str().unwrap()],
            );
        },
        &[],
    );
    let k = m.keys();
    let q = |name: &str| format!("'{}'", k.join(name).display());
    // In place, through the shell (the kernel truncates, the shell's dup2
    // flushes the empty file, then the write): int 17 becomes int 18.
    assert!(sh(&format!("echo 18 > {}", q("count"))).status.success());
    assert_eq!(got(&m.cache, "count"), "18 None None");
    // Python's float() rules.
    assert!(sh(&format!("echo ' 2.25 ' > {}", q("ratio"))).status.success());
    assert_eq!(got(&m.cache, "ratio"), "2.25 None None");
    // sed -i: a new file renamed over the key.
    let out = sh(&format!("sed -i 's/hello/howdy/' {}", q("greeting")));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(got(&m.cache, "greeting"), "'howdy world' 3600.0 't1'");
    // vim, in ex mode (a new file, and xattrs copied where vim can).
    let out = sh(&format!("vim -es -c '%s/abc/xyz/' -c 'wq' {}", q("notes")));
    assert!(out.status.success(), "vim: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(got(&m.cache, "notes"), "'xyz def\\n' 7200.0 't2'");
    // A large str in a value file stays a str.
    assert!(sh(&format!("sed -i 's/x/y/' {}", q("big"))).status.success());
    let big = py(
        "import sys, diskcache\nv = diskcache.Cache(sys.argv[1])['big']\nprint(type(v).__name__, v[:2], len(v))",
        &[m.cache.to_str().unwrap()],
    );
    assert_eq!(big.trim(), "str yx 100000");
    // Content not valid for the type: bytes, as any content is.
    assert!(sh(&format!("printf 'not a number' > {}", q("count"))).status.success());
    assert_eq!(got(&m.cache, "count"), "b'not a number' None None");
    // A new key is bytes, as before.
    std::fs::write(k.join("fresh"), b"42").unwrap();
    assert_eq!(got(&m.cache, "fresh"), "b'42' None None");
    // A peer's own rename-free rewrite is untouched by any of this.
    assert_eq!(got(&m.cache, "blob"), "b'raw' None None");
    let check = py("import sys, diskcache\nprint(diskcache.Cache(sys.argv[1]).check())", &[m.cache.to_str().unwrap()]);
    assert_eq!(check.trim(), "[]");
}

/// What a backup restores is exact: rsync -aX sets the attributes on its
/// new file, and then they are the whole truth, a missing tag included.
#[test]
fn an_rsync_restore_over_edited_keys_is_exact() {
    let m = Mounted::with(
        |c| {
            py(
                "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\n\
                 c.set('doc', 'version one', expire=3600, tag='t1')\nc['plain'] = b'plain bytes'\nc['n'] = 5",
                &[c.to_str().unwrap()],
            );
        },
        &[],
    );
    let backup = tempfile::tempdir().unwrap();
    let rsync = |from: &Path, to: &Path| {
        let out = Command::new("rsync").arg("-aX").arg(format!("{}/", from.display())).arg(to).output().unwrap();
        assert!(out.status.success(), "rsync: {}", String::from_utf8_lossy(&out.stderr));
    };
    rsync(&m.keys(), backup.path());
    let before: Vec<String> = ["doc", "plain", "n"].iter().map(|k| got(&m.cache, k)).collect();
    // Edits after the backup: new content, a tag where there was none,
    // a type change. (Each changes the size: rsync's quick check compares
    // sizes and whole-second times, and this all happens within a second.)
    let k = m.keys();
    assert!(sh(&format!("sed -i 's/one/three/' '{}'", k.join("doc").display())).status.success());
    std::fs::write(k.join("plain"), b"changed, and longer").unwrap();
    support::setxattr(&k.join("plain"), "user.diskcache.tag", b"late").unwrap();
    assert!(sh(&format!("echo 61 > '{}'", k.join("n").display())).status.success());
    assert_eq!(got(&m.cache, "n"), "61 None None");
    assert_eq!(got(&m.cache, "doc"), "'version three' 3600.0 't1'");
    rsync(backup.path(), &m.keys());
    let after: Vec<String> = ["doc", "plain", "n"].iter().map(|k| got(&m.cache, k)).collect();
    assert_eq!(after, before, "the restore is exact");
    // And a second run has nothing to do.
    let out =
        Command::new("rsync").arg("-aXi").arg(format!("{}/", backup.path().display())).arg(m.keys()).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "a second rsync -aXi prints nothing");
}

#[test]
fn pull_on_a_read_only_mount_is_erofs() {
    let m = Mounted::with(
        |c| {
            drop(py(
                "import sys, diskcache\ndiskcache.Cache(sys.argv[1]).push(b'job', prefix='jobs')",
                &[c.to_str().unwrap()],
            ))
        },
        &["--read-only"],
    );
    for file in [".pull", ".pull-back"] {
        let path = m.mnt.join("queues/jobs").join(file);
        let read = std::fs::read(&path);
        assert_eq!(read.as_ref().err().and_then(|e| e.raw_os_error()), Some(libc::EROFS), "{file}: {read:?}");
        // The shell loop a user writes ends at once.
        let out = sh(&format!(
            "n=0; while item=$(cat '{}'); do n=$((n+1)); [ $n -gt 3 ] && break; done; echo $n",
            path.display()
        ));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    }
    let left = py("import sys, diskcache\nprint(len(diskcache.Cache(sys.argv[1])))", &[m.cache.to_str().unwrap()]);
    assert_eq!(left.trim(), "1", "nothing was pulled");
}

#[test]
fn a_directory_moved_where_it_cannot_go_leaves_everything_as_it_was() {
    let m = Mounted::with(
        |c| {
            py(
                "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\n\
                 c['dir/a'] = b'1'\nc['dir/sub/b'] = b'2'\nc.set('t', b'x', tag='grp')\nc.push(b'j', prefix='q')",
                &[c.to_str().unwrap()],
            );
        },
        &[],
    );
    let tree = || {
        let out = sh(&format!("cd '{}' && find keys tags queues | sort", m.mnt.display()));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = tree();
    let snapshot =
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nprint(sorted((k, c.get(k, tag=True)) for k in c))";
    let python_before = py(snapshot, &[m.cache.to_str().unwrap()]);
    let dir = m.keys().join("dir");
    for target in ["tags/x", "tags/grp/", "queues/q/"] {
        let out = Command::new("mv").arg(&dir).arg(m.mnt.join(target)).output().unwrap();
        assert!(!out.status.success(), "mv into {target} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Operation not permitted"), "{target}: {err}");
        assert_eq!(tree(), before, "mv keys/dir {target} changed the tree");
    }
    assert_eq!(py(snapshot, &[m.cache.to_str().unwrap()]), python_before);
}
