//! Hostile caches through the mount (issue 7, item 5). A `cache.db` is
//! input we do not trust: crafted with value-file names outside the cache
//! directory, symbolic links, huge or negative sizes, wrong column types,
//! an unknown mode, a duplicate key, a missing Settings table. Whatever is
//! done through the mount (list, stat, read, xattrs, write, rename,
//! delete, check, clear), nothing outside CACHE_DIR is read, written or
//! deleted, the daemon never panics, each bad entry gets a clear errno, and
//! the rest of the cache stays usable.

mod support;

use std::collections::HashMap;
use std::os::unix::fs::symlink;
use std::path::Path;

use support::{Mounted, errno_of, getxattr, py};

const CRAFT: &str = r#"
import sys, diskcache
c = diskcache.Cache(sys.argv[1])
big = b'v' * 50000
for k in ('absolute', 'dotdot', 'file-link', 'dir-link', 'huge', 'negative', 'textvalue',
          'realvalue', 'badmode', 'texttime', 'dup'):
    c[k] = big
c['fine'] = b'ok'
c['fine-big'] = b'F' * 50000
S = c._sql
# The value files diskcache wrote, before the edits below orphan some.
import json
print(json.dumps(dict(S("SELECT key, filename FROM Cache WHERE filename IS NOT NULL").fetchall())))
S("UPDATE Cache SET filename = ? WHERE key = 'absolute'", (sys.argv[2],))
S("UPDATE Cache SET filename = '../secret.txt' WHERE key = 'dotdot'")
S("UPDATE Cache SET filename = 'zz/link.val' WHERE key = 'file-link'")
S("UPDATE Cache SET filename = 'yy/ab/victim.val' WHERE key = 'dir-link'")
S("UPDATE Cache SET size = 9223372036854775807 WHERE key = 'huge'")
S("UPDATE Cache SET size = -5 WHERE key = 'negative'")
# (The size trigger added those to Settings.size; put it back, or every
# write would cull the cache as diskcache would with such a volume.)
S("UPDATE Settings SET value = 50000 * 11 + 2 WHERE key = 'size'")
S("UPDATE Cache SET filename = NULL, mode = 2, value = 'text, not a blob' WHERE key = 'textvalue'")
S("UPDATE Cache SET filename = NULL, mode = 3, value = 2.5 WHERE key = 'realvalue'")
S("UPDATE Cache SET mode = 9 WHERE key = 'badmode'")
S("UPDATE Cache SET store_time = 'yesterday' WHERE key = 'texttime'")
# A duplicate key: drop the unique index and copy the row.
S("DROP INDEX Cache_key_raw")
S("INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count, tag, size, mode, filename, value) "
  "SELECT key, raw, store_time, expire_time, access_time, access_count, tag, 2, 1, NULL, X'6475' FROM Cache WHERE key = 'dup'")
"#;

/// Crafts the cache; returns each key's value file as diskcache wrote it
/// (relative to the cache directory), before the edits.
fn craft(cache: &Path, outside: &Path) -> HashMap<String, String> {
    std::fs::create_dir_all(cache.join("zz")).unwrap();
    let root = cache.parent().unwrap();
    symlink(outside, cache.join("zz/link.val")).unwrap();
    symlink(root.join("elsewhere"), cache.join("yy")).unwrap();
    serde_json::from_str(&py(CRAFT, &[cache.to_str().unwrap(), outside.to_str().unwrap()])).unwrap()
}

fn outside_files(root: &Path) -> Vec<(String, Vec<u8>)> {
    ["secret.txt", "elsewhere/ab/victim.val"]
        .iter()
        .map(|p| (p.to_string(), std::fs::read(root.join(p)).unwrap_or_else(|e| panic!("{p} is gone: {e}"))))
        .collect()
}

/// `ops/check`'s report (`{"fixed": false, "warnings": [{"kind", "message"}]}`):
/// each warning's kind and message.
fn check_report(mnt: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(mnt.join("ops/check")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("ops/check: {e}: {text}"));
    assert_eq!(doc["fixed"], serde_json::json!(false), "{text}");
    let warnings = doc["warnings"].as_array().unwrap_or_else(|| panic!("no warnings list: {text}"));
    warnings
        .iter()
        .map(|w| match (w["kind"].as_str(), w["message"].as_str()) {
            (Some(kind), Some(message)) => (kind.to_string(), message.to_string()),
            _ => panic!("a warning without kind and message: {w}"),
        })
        .collect()
}

#[test]
fn a_crafted_cache_never_reaches_outside_and_stays_usable() {
    let mut written = HashMap::new();
    let m = Mounted::with(
        |cache| {
            let root = cache.parent().unwrap();
            std::fs::write(root.join("secret.txt"), b"do not touch").unwrap();
            std::fs::create_dir_all(root.join("elsewhere/ab")).unwrap();
            std::fs::write(root.join("elsewhere/ab/victim.val"), b"victim").unwrap();
            written = craft(cache, &root.join("secret.txt"));
        },
        &[],
    );
    let root = m.root.path().to_path_buf();
    let before = outside_files(&root);
    let k = m.keys();

    // Listing works and shows every row (the duplicate once or twice, never a crash).
    let names: Vec<String> =
        std::fs::read_dir(&k).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    for name in ["absolute", "fine", "fine-big", "badmode", "huge", "negative"] {
        assert!(names.contains(&name.to_string()), "ls keys/ lacks {name}: {names:?}");
    }
    // Reads: outside names are EACCES, rows python-diskcache could not
    // have written EIO; never the outside content.
    let expect = [
        ("absolute", libc::EACCES),
        ("dotdot", libc::EACCES),
        ("file-link", libc::EACCES),
        ("dir-link", libc::EACCES),
        ("badmode", libc::EIO),
        ("textvalue", libc::EIO),
        ("realvalue", libc::EIO),
    ];
    let mut wrong = Vec::new();
    for (name, errno) in expect {
        let got = std::fs::read(k.join(name));
        let e = got.as_ref().err().map_or(0, |e| e.raw_os_error().unwrap_or(-1));
        if e != errno {
            wrong.push(format!("{name}: wanted errno {errno}, got {:?}", got.map(|c| c.len())));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Sizes the file does not have (RELIABILITY.md: "stat shows the value
    // file's own length; the read returns the file").
    let big = vec![b'v'; 50000];
    for name in ["huge", "negative"] {
        let md = std::fs::metadata(k.join(name)).unwrap_or_else(|e| panic!("stat {name}: {e}"));
        assert_eq!(md.len(), 50000, "{name}: stat size");
        let got = std::fs::read(k.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"));
        assert!(got == big, "{name}: read {} bytes, not the file's 50000 v", got.len());
    }
    // A malformed time and a duplicate key: readable (one row's value,
    // whole), or EIO.
    let dup_values = [big.clone(), b"du".to_vec()];
    for (name, values) in [("texttime", &[big.clone()][..]), ("dup", &dup_values[..])] {
        match std::fs::read(k.join(name)) {
            Ok(c) => assert!(values.contains(&c), "{name}: read {} bytes, no row's value", c.len()),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{name}: {e}"),
        }
    }
    // The xattrs come from the row alone: the value file outside is never
    // opened for them, and the type is the row's (a bytes value in a file).
    assert_eq!(getxattr(&k.join("absolute"), "user.diskcache.type"), Ok(b"bytes".to_vec()), "{}", m.log());

    // Writes, renames and deletes of the bad entries replace or remove the
    // rows, never the files they name.
    std::fs::write(k.join("absolute"), b"replaced").unwrap_or_else(|e| panic!("write: {e}\n{}", m.log()));
    assert_eq!(std::fs::read(k.join("absolute")).unwrap(), b"replaced");
    std::fs::remove_file(k.join("dotdot")).unwrap();
    std::fs::rename(k.join("file-link"), k.join("renamed-link")).unwrap();
    std::fs::remove_file(k.join("renamed-link")).unwrap();
    // rm removes the row (a row through a linked directory too, and a row
    // whose value cannot be read: deleting needs no value), never a file
    // outside; the name is gone after.
    for name in ["dir-link", "dup", "badmode"] {
        std::fs::remove_file(k.join(name)).unwrap_or_else(|e| panic!("rm {name}: {e}\n{}", m.log()));
    }
    for name in ["dotdot", "file-link", "renamed-link", "dir-link", "badmode"] {
        assert_eq!(errno_of(std::fs::metadata(k.join(name))), libc::ENOENT, "{name} is still there");
    }
    // (rm of the duplicated key removes one of its rows: the other one,
    // the copy, stays and reads whole, as before: readable, or EIO.)
    match std::fs::read(k.join("dup")) {
        Ok(c) => assert!(dup_values.contains(&c), "dup after rm: {} bytes, no row's value", c.len()),
        Err(e) => assert!(matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EIO)), "dup after rm: {e}"),
    }
    assert_eq!(outside_files(&root), before, "something outside CACHE_DIR changed");

    // check through the mount reports, as diskcache's check would: the two
    // rows whose size is not their file's, the value files the edits
    // orphaned (the rows now name another file or none), the linked
    // directory as a file of its own (never followed), and Settings.size
    // against the (saturated) sum; nothing outside CACHE_DIR. fix repairs
    // all of it; outside files stay.
    let full = |rel: &str| m.cache.join(rel).display().to_string();
    let mut want: Vec<(String, String)> = vec![
        ("WrongFileSize".into(), format!("wrong file size: {}, 50000 != 9223372036854775807", full(&written["huge"]))),
        ("WrongFileSize".into(), format!("wrong file size: {}, 50000 != -5", full(&written["negative"]))),
        ("UnknownFile".into(), format!("unknown file: {}", full("yy"))),
    ];
    for orphan in ["absolute", "dotdot", "file-link", "dir-link", "textvalue", "realvalue"] {
        want.push(("UnknownFile".into(), format!("unknown file: {}", full(&written[orphan]))));
    }
    let mut report = check_report(&m.mnt);
    let size = report.iter().position(|w| w.0 == "SizeMismatch");
    let size = size.map(|i| report.remove(i)).unwrap_or_else(|| panic!("no SizeMismatch: {report:#?}"));
    assert!(
        size.1.starts_with("Settings.size != SUM(Cache.size); ") && size.1.ends_with(" != 9223372036854775807"),
        "{size:?}"
    );
    report.sort();
    want.sort();
    assert_eq!(report, want, "ops/check's warnings");
    std::fs::write(m.mnt.join("ops/check"), b"fix\n").unwrap();
    assert_eq!(outside_files(&root), before);
    assert_eq!(check_report(&m.mnt), [], "ops/check after fix");

    // The rest is usable: the good entries, new ones, python-diskcache.
    assert_eq!(std::fs::read(k.join("fine")).unwrap(), b"ok");
    assert_eq!(std::fs::read(k.join("fine-big")).unwrap(), vec![b'F'; 50000]);
    std::fs::write(k.join("new"), vec![b'n'; 70000]).unwrap();
    assert_eq!(std::fs::read(k.join("new")).unwrap().len(), 70000);
    let out = py(
        "import sys, diskcache; c = diskcache.Cache(sys.argv[1]); print(c['fine'], len(c['new']))",
        &[m.cache.to_str().unwrap()],
    );
    assert_eq!(out.trim(), "b'ok' 70000");
    std::fs::write(m.mnt.join("ops/clear"), b"\n").unwrap();
    assert_eq!(outside_files(&root), before, "clear removed something outside");
    assert!(m.log().lines().all(|l| !l.contains("panicked")), "the daemon panicked:\n{}", m.log());
}

#[test]
fn a_cache_without_its_settings_table_mounts_with_the_defaults() {
    let m = Mounted::with(
        |cache| {
            py(
                "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nc['k'] = b'v'\nc._sql('DROP TABLE Settings')",
                &[cache.to_str().unwrap()],
            );
        },
        &[],
    );
    assert_eq!(std::fs::read(m.keys().join("k")).unwrap(), b"v");
    assert_eq!(std::fs::read_to_string(m.mnt.join("settings/size_limit")).unwrap(), "1073741824\n");
    std::fs::write(m.keys().join("k2"), b"v2").unwrap();
    // As with python-diskcache, the recreated Settings start counting from
    // zero: check reports the count until fixed.
    let want = [("CountMismatch".to_string(), "Settings.count != COUNT(Cache.key); 1 != 2".to_string())];
    assert_eq!(check_report(&m.mnt), want);
    std::fs::write(m.mnt.join("ops/check"), b"fix\n").unwrap();
    let out = py(
        "import sys, diskcache; c = diskcache.Cache(sys.argv[1]); print(c['k'], c['k2'], c.check())",
        &[m.cache.to_str().unwrap()],
    );
    assert_eq!(out.trim(), "b'v' b'v2' []");
}
