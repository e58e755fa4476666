//! Caches as users have them (docs/SEMANTICS.md, "Caches diskcachefs
//! opens"; issue 11, item 1): a `cache.db` that another program (Flyte 2)
//! keeps its own tables in, and a cache on read-only media.
//!
//! The bugs: a `cache.db` holding only Flyte 2's tables failed to open
//! ("an SQLite database but not a python-diskcache cache"), although
//! python-diskcache opens it and adds its tables beside them; and a cache
//! on a read-only bind mount failed with "unable to open database file",
//! because SQLite's WAL mode needs to make `cache.db-shm` beside it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{is_mounted, listing, py};

fn cli(args: &[&str]) -> Output {
    support::cli(args, None)
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "exit {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Flyte 2's tables as its SDK creates them (../shared/notes/real-caches.md),
/// with one cached task's outputs (`square(x=2) -> 4`) and one run record.
const FLYTE2: &str = r#"
import sqlite3, sys
con = sqlite3.connect(sys.argv[1] + '/cache.db')
con.executescript('''
CREATE TABLE task_cache (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE runs (run_name TEXT, action_name TEXT, task_name TEXT, status TEXT, inputs TEXT,
                   outputs TEXT, error TEXT, start_time REAL, end_time REAL, cache_enabled INTEGER,
                   cache_hit INTEGER, PRIMARY KEY (run_name, action_name));
CREATE TABLE image_cache (key TEXT PRIMARY KEY, image_uri TEXT, created_at REAL);
''')
con.execute("INSERT INTO task_cache VALUES (?, ?)", ('k/Yp+4bW==', bytes.fromhex('0A0C0A026F3012060A040A020804')))
con.execute("INSERT INTO runs VALUES ('r1', 'a0', 'square', 'SUCCEEDED', '{\"x\": 2}', '{\"o0\": 4}', NULL, 1.0, 2.0, 1, 0)")
con.commit()
con.close()
"#;

/// Flyte 2's tables, schema and rows, as text.
const DUMP_FLYTE2: &str = r#"
import sqlite3, sys
con = sqlite3.connect(sys.argv[1] + '/cache.db')
for t in ('task_cache', 'runs', 'image_cache'):
    print(con.execute("SELECT sql FROM sqlite_master WHERE name = ?", (t,)).fetchone()[0])
    for row in con.execute(f'SELECT * FROM {t} ORDER BY 1'):
        print(repr(row))
"#;

#[test]
fn a_cache_db_with_another_programs_tables_opens_as_python_diskcache_opens_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("local-cache");
    std::fs::create_dir(&dir).unwrap();
    py(FLYTE2, &[dir.to_str().unwrap()]);
    let flyte2 = py(DUMP_FLYTE2, &[dir.to_str().unwrap()]);
    let bytes = std::fs::read(dir.join("cache.db")).unwrap();
    let d = dir.to_str().unwrap();

    // Read-only: an empty cache, and nothing created or changed.
    assert_eq!(ok(&cli(&["keys", d])), "");
    let stats: serde_json::Value = serde_json::from_str(&ok(&cli(&["stats", d]))).unwrap();
    assert_eq!(stats["count"], 0);
    let mnt = root.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // (The daemon's log in the test's directory, not the default log file.)
    let log = root.path().join("daemon.log");
    ok(&cli(&["mount", d, mnt.to_str().unwrap(), "--read-only", "--daemon", "--log-file", log.to_str().unwrap()]));
    let keys = std::fs::read_dir(mnt.join("keys")).unwrap().count();
    ok(&cli(&["umount", mnt.to_str().unwrap()]));
    assert_eq!(keys, 0);
    assert_eq!(listing(&dir), ["cache.db"], "a read-only open creates nothing");
    assert_eq!(std::fs::read(dir.join("cache.db")).unwrap(), bytes, "nor changes a byte");

    // Read-write: diskcache's tables beside Flyte 2's, as python-diskcache
    // would add them; a write through the mount is python-diskcache's.
    let m = MountedAt::new(&dir, &mnt, &[]);
    std::fs::write(mnt.join("keys/from-the-mount"), b"hello").unwrap();
    drop(m);
    let got =
        py("import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nprint(c.get('from-the-mount'), c.check())", &[d]);
    assert_eq!(got.trim(), "b'hello' []");
    ok(&cli(&["check", d, "--fix"]));
    assert_eq!(py(DUMP_FLYTE2, &[d]), flyte2, "Flyte 2's tables and rows are untouched");
    assert_eq!(ok(&cli(&["keys", d])), "from-the-mount\n");
}

/// A mount of `cache` on `mnt` (foreground), torn down on drop.
struct MountedAt {
    child: Child,
    mnt: PathBuf,
}

impl MountedAt {
    fn new(cache: &Path, mnt: &Path, args: &[&str]) -> MountedAt {
        let child = Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
            .arg("mount")
            .arg(cache)
            .arg(mnt)
            .args(args)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !is_mounted(mnt) {
            // Not a latency promise: a loaded CI machine once took more than 10 s.
            assert!(start.elapsed() < Duration::from_secs(30), "not mounted in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        MountedAt { child, mnt: mnt.to_path_buf() }
    }
}

impl Drop for MountedAt {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

/// A read-only bind mount of `source` on `target`, undone on drop.
struct ReadOnlyBind(PathBuf);

impl ReadOnlyBind {
    fn new(source: &Path, target: &Path) -> ReadOnlyBind {
        std::fs::create_dir_all(target).unwrap();
        let bind = Command::new("mount").arg("--bind").arg(source).arg(target).status().unwrap();
        assert!(bind.success());
        let guard = ReadOnlyBind(target.to_path_buf());
        let ro = Command::new("mount").args(["-o", "remount,bind,ro"]).arg(target).status().unwrap();
        assert!(ro.success());
        guard
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_cache_on_read_only_media_reads_and_nothing_is_created_there() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nc['small'] = b'tiny'\nc.set('big', b'x' * 100000, tag='t')\nc.close()",
        &[data.to_str().unwrap()],
    );
    let before = listing(&data);
    assert!(!before.iter().any(|n| n.ends_with("-shm") || n.ends_with("-wal")), "closed cleanly: {before:?}");
    let media = root.path().join("media");
    let _bind = ReadOnlyBind::new(&data, &media);
    assert!(std::fs::write(media.join("probe"), b"").is_err(), "the bind mount is read-only");
    let d = media.to_str().unwrap();

    assert_eq!(ok(&cli(&["keys", d])), "big\nsmall\n", "in key order, as diskcache iterates");
    assert_eq!(ok(&cli(&["get", d, "small"])), "tiny");
    let stats: serde_json::Value = serde_json::from_str(&ok(&cli(&["stats", d]))).unwrap();
    assert_eq!(stats["count"], 2);
    assert_eq!(ok(&cli(&["check", d])), "");
    let fix = cli(&["check", d, "--fix"]);
    assert_eq!(fix.status.code(), Some(2), "fixing needs a write: a clear error");
    assert!(!String::from_utf8_lossy(&fix.stderr).contains("panicked"));

    let mnt = root.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    {
        let _m = MountedAt::new(&media, &mnt, &["--read-only"]);
        assert_eq!(std::fs::read(mnt.join("keys/small")).unwrap(), b"tiny");
        assert_eq!(std::fs::read(mnt.join("keys/big")).unwrap(), vec![b'x'; 100_000]);
        assert_eq!(std::fs::read_link(mnt.join("tags/t/big")).unwrap(), Path::new("../../keys/big"));
    }
    assert_eq!(listing(&data), before, "nothing was created on the media");
}
