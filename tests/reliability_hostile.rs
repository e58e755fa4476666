//! Hostile caches through the mount (issue 7, item 5). A `cache.db` is
//! input we do not trust: crafted with value-file names outside the cache
//! directory, symbolic links, huge or negative sizes, wrong column types,
//! an unknown mode, a duplicate key, a missing Settings table. Whatever is
//! done through the mount (list, stat, read, xattrs, write, rename,
//! delete, check, clear), nothing outside CACHE_DIR is read, written or
//! deleted, the daemon never panics, each bad entry gets a clear errno, and
//! the rest of the cache stays usable.

mod support;

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

fn craft(cache: &Path, outside: &Path) {
    std::fs::create_dir_all(cache.join("zz")).unwrap();
    let root = cache.parent().unwrap();
    symlink(outside, cache.join("zz/link.val")).unwrap();
    symlink(root.join("elsewhere"), cache.join("yy")).unwrap();
    py(CRAFT, &[cache.to_str().unwrap(), outside.to_str().unwrap()]);
}

fn outside_files(root: &Path) -> Vec<(String, Vec<u8>)> {
    ["secret.txt", "elsewhere/ab/victim.val"]
        .iter()
        .map(|p| (p.to_string(), std::fs::read(root.join(p)).unwrap_or_else(|e| panic!("{p} is gone: {e}"))))
        .collect()
}

#[test]
fn a_crafted_cache_never_reaches_outside_and_stays_usable() {
    let m = Mounted::with(
        |cache| {
            let root = cache.parent().unwrap();
            std::fs::write(root.join("secret.txt"), b"do not touch").unwrap();
            std::fs::create_dir_all(root.join("elsewhere/ab")).unwrap();
            std::fs::write(root.join("elsewhere/ab/victim.val"), b"victim").unwrap();
            craft(cache, &root.join("secret.txt"));
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
    // Sizes the file does not have: the read gives what the file holds or an
    // error, and stat never claims an absurd size.
    for name in ["huge", "negative"] {
        let md = std::fs::metadata(k.join(name));
        if let Ok(md) = &md {
            assert!(md.len() < 1 << 40, "{name}: stat size {}", md.len());
        }
        let got = std::fs::read(k.join(name));
        assert!(got.as_ref().map_or(true, |c| c.iter().all(|b| *b == b'v')), "{name}: {:?}", got.map(|c| c.len()));
    }
    // A malformed time and a duplicate key: readable, or a clear error.
    for name in ["texttime", "dup"] {
        let e = errno_of(std::fs::read(k.join(name)));
        assert!(e == 0 || e == libc::EIO, "{name}: errno {e}");
    }
    let _ = getxattr(&k.join("absolute"), "user.diskcache.type");

    // Writes, renames and deletes of the bad entries replace or remove the
    // rows, never the files they name.
    std::fs::write(k.join("absolute"), b"replaced").unwrap_or_else(|e| panic!("write: {e}\n{}", m.log()));
    assert_eq!(std::fs::read(k.join("absolute")).unwrap(), b"replaced");
    std::fs::remove_file(k.join("dotdot")).unwrap();
    std::fs::rename(k.join("file-link"), k.join("renamed-link")).unwrap();
    std::fs::remove_file(k.join("renamed-link")).unwrap();
    let _ = std::fs::remove_file(k.join("dir-link"));
    let _ = std::fs::remove_file(k.join("dup"));
    let _ = std::fs::remove_file(k.join("badmode"));
    assert_eq!(outside_files(&root), before, "something outside CACHE_DIR changed");

    // check through the mount reports, fix repairs; outside files stay.
    let report = std::fs::read_to_string(m.mnt.join("ops/check")).unwrap();
    assert!(report.contains("warnings"), "{report}");
    std::fs::write(m.mnt.join("ops/check"), b"fix\n").unwrap();
    assert_eq!(outside_files(&root), before);

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
    let report = std::fs::read_to_string(m.mnt.join("ops/check")).unwrap();
    assert!(report.contains("Settings.count"), "{report}");
    std::fs::write(m.mnt.join("ops/check"), b"fix\n").unwrap();
    let out = py(
        "import sys, diskcache; c = diskcache.Cache(sys.argv[1]); print(c['k'], c['k2'], c.check())",
        &[m.cache.to_str().unwrap()],
    );
    assert_eq!(out.trim(), "b'v' b'v2' []");
}
