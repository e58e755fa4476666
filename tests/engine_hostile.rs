//! Bad input for the engine. A `cache.db` is input we do not trust: a row's
//! `filename` may point outside the cache directory (absolute, `..`, or
//! through a symbolic link), and the file may not be a cache at all. The
//! engine must never read, write or delete outside the directory, must say
//! clearly what is wrong, and must treat a vanished value file as a miss,
//! as python-diskcache does.

use std::os::unix::fs::symlink;
use std::path::Path;

use diskcachefs::cache::{Cache, CacheOptions, CheckKind, Error, Key, OpenError, Value};
use rusqlite::Connection;

fn key(s: &str) -> Key {
    Key::Str(s.into())
}

/// A cache with one file-backed entry per name, whose filename column is
/// then rewritten to `target`; returns the cache directory.
fn crafted(dir: &Path, rows: &[(&str, &str)]) {
    let cache = Cache::open(dir).unwrap();
    for (name, _) in rows {
        cache.set(&key(name), &Value::Bytes(vec![b'v'; 50_000]), None, None).unwrap();
    }
    drop(cache);
    let conn = Connection::open(dir.join("cache.db")).unwrap();
    for (name, target) in rows {
        conn.execute("UPDATE Cache SET filename = ? WHERE key = ?", rusqlite::params![target, name]).unwrap();
    }
}

#[test]
fn file_names_outside_the_directory_are_never_read_written_or_deleted() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    let outside = root.path().join("secret.txt");
    std::fs::write(&outside, b"do not touch").unwrap();
    let outside_dir = root.path().join("elsewhere");
    std::fs::create_dir_all(outside_dir.join("ab")).unwrap();
    std::fs::write(outside_dir.join("ab/victim.val"), b"victim").unwrap();

    std::fs::create_dir_all(dir.join("zz")).unwrap();
    // A value file that is a symlink to the outside file, and a directory
    // that is a symlink to an outside directory.
    symlink(&outside, dir.join("zz/link.val")).unwrap();
    symlink(&outside_dir, dir.join("yy")).unwrap();
    let absolute = outside.to_str().unwrap().to_string();
    crafted(
        &dir,
        &[
            ("absolute", &absolute),
            ("dotdot", "../secret.txt"),
            ("file-link", "zz/link.val"),
            ("dir-link", "yy/ab/victim.val"),
        ],
    );
    let cache = Cache::open(&dir).unwrap();
    for name in ["absolute", "dotdot", "file-link", "dir-link"] {
        match cache.get(&key(name)) {
            Err(Error::UnsafeFilename { filename, .. }) => assert!(!filename.is_empty()),
            other => panic!("{name}: expected UnsafeFilename, got {other:?}"),
        }
    }
    // check() reports each row, without touching what they name.
    let warnings = cache.check(false).unwrap();
    let unsafe_rows = warnings.iter().filter(|w| w.kind == CheckKind::UnsafeFilename).count();
    assert_eq!(unsafe_rows, 4, "{warnings:?}");
    // Overwriting, deleting, clearing: the old "value files" are cleaned up
    // after commit; none of them may be the outside files.
    cache.set(&key("absolute"), &Value::Bytes(b"new".to_vec()), None, None).unwrap();
    assert!(cache.delete(&key("dotdot")).unwrap());
    cache.clear().unwrap();
    assert_eq!(std::fs::read(&outside).unwrap(), b"do not touch");
    assert_eq!(std::fs::read(outside_dir.join("ab/victim.val")).unwrap(), b"victim");
    // check(fix) removes the remaining bad rows (none left after clear) and
    // the cache is usable.
    let fixed = cache.check(true).unwrap();
    assert!(fixed.iter().all(|w| w.kind != CheckKind::UnsafeFilename), "bad rows left after clear: {fixed:?}");
    assert_eq!(cache.check(false).unwrap().len(), 0, "check(fix) left problems");
    cache.set(&key("fine"), &Value::Bytes(vec![1; 40_000]), None, None).unwrap();
    assert_eq!(cache.get(&key("fine")).unwrap(), Some(Value::Bytes(vec![1; 40_000])));
    assert_eq!(std::fs::read(&outside).unwrap(), b"do not touch");
}

#[test]
fn check_fix_deletes_unsafe_rows_and_leaves_their_targets() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache");
    let outside = root.path().join("secret.txt");
    std::fs::write(&outside, b"do not touch").unwrap();
    crafted(&dir, &[("bad", "../secret.txt"), ("good", "")]);
    // "good" got an empty filename: also not a usable value file name.
    let cache = Cache::open(&dir).unwrap();
    let warnings = cache.check(true).unwrap();
    assert!(warnings.iter().any(|w| w.kind == CheckKind::UnsafeFilename), "{warnings:?}");
    assert_eq!(cache.get(&key("bad")).unwrap(), None, "the fixed row is gone");
    assert!(cache.check(false).unwrap().iter().all(|w| w.kind != CheckKind::UnsafeFilename));
    assert_eq!(std::fs::read(&outside).unwrap(), b"do not touch");
}

#[test]
fn a_corrupt_database_fails_to_open_and_another_programs_tables_are_left_alone() {
    let root = tempfile::tempdir().unwrap();

    let corrupt = root.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    std::fs::write(corrupt.join("cache.db"), vec![0xA5u8; 16384]).unwrap();
    match Cache::open(&corrupt) {
        Err(e @ OpenError::NotADatabase { .. }) => assert!(e.to_string().contains("corrupt")),
        Err(e) => panic!("wrong error for a corrupt file: {e}"),
        Ok(_) => panic!("a corrupt cache.db opened"),
    }
    assert_eq!(std::fs::read(corrupt.join("cache.db")).unwrap(), vec![0xA5u8; 16384], "left as it was");

    let foreign = root.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    let conn = Connection::open(foreign.join("cache.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5);",
    )
    .unwrap();
    drop(conn);
    // Another program's tables (Flyte 2 keeps its own in the Flyte local
    // cache's cache.db): a read-only open reads an empty cache and adds
    // nothing; a read-write one adds diskcache's tables beside them, as
    // python-diskcache does, and leaves theirs as they were.
    let tables = |dir: &std::path::Path| -> Vec<String> {
        let conn = Connection::open(dir.join("cache.db")).unwrap();
        let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    };
    let ro = Cache::open_with(&foreign, CacheOptions { read_only: true, ..CacheOptions::default() }).unwrap();
    assert_eq!(ro.len().unwrap(), 0);
    assert!(ro.check(false).unwrap().is_empty());
    drop(ro);
    assert_eq!(tables(&foreign), ["invoices"], "a read-only open adds nothing");
    let rw = Cache::open(&foreign).unwrap();
    rw.set(&key("k"), &Value::Bytes(b"v".to_vec()), None, None).unwrap();
    assert!(rw.check(true).unwrap().is_empty());
    drop(rw);
    assert_eq!(tables(&foreign), ["Cache", "Settings", "invoices"]);
    let conn = Connection::open(foreign.join("cache.db")).unwrap();
    let invoice: (i64, f64) =
        conn.query_row("SELECT id, total FROM invoices", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(invoice, (1, 9.5), "their rows are untouched");

    // A Cache table missing diskcache's columns is foreign too.
    let odd = root.path().join("odd");
    std::fs::create_dir(&odd).unwrap();
    Connection::open(odd.join("cache.db")).unwrap().execute_batch("CREATE TABLE Cache (key TEXT)").unwrap();
    assert!(matches!(Cache::open(&odd), Err(OpenError::Foreign { .. })));
}

#[test]
fn a_value_file_deleted_on_disk_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    cache.set(&key("k"), &Value::Bytes(vec![3; 100_000]), None, None).unwrap();
    let filename: String = Connection::open(dir.path().join("cache.db"))
        .unwrap()
        .query_row("SELECT filename FROM Cache WHERE key = 'k'", [], |r| r.get(0))
        .unwrap();
    std::fs::remove_file(dir.path().join(&filename)).unwrap();
    assert_eq!(cache.get(&key("k")).unwrap(), None);
    assert!(cache.read(&key("k")).unwrap().is_none());
    assert_eq!(cache.pop(&key("k")).unwrap(), None);
}
