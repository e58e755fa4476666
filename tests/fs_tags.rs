//! tags/ through the mount (docs/SEMANTICS.md, "Tags"), with
//! python-diskcache as the peer, and the whole tree backed up and restored
//! with rsync.

mod support;

use support::{Mounted, errno_of, listing, py, sh};

const FILL: &str = r#"
import sys, diskcache
c = diskcache.Cache(sys.argv[1])
c.set('x', b'vx', tag='grp')
c.set('y', b'vy', tag='grp')
c.set('z', b'vz', tag=7, expire=3600)
c['plain'] = b'p'
c['a/b'] = 'str'
"#;

/// FILL plus queue items and a Flyte task cache entry, for the whole tree.
const FILL_ALL: &str = r#"
import sys, diskcache
c = diskcache.Cache(sys.argv[1])
c.set('x', b'vx', tag='grp')
c.set('y', b'vy', tag='grp')
c.set('z', b'vz', tag=7, expire=3600)
c['plain'] = b'p'
c['a/b'] = 'str'
c.push(b'job 1', prefix='jobs')
c.push(b'job 2', prefix='jobs', tag='grp')
c.push(b'int item', expire=3600)
c['wf.square-1-0123456789abcdef0123456789abcdef'] = b'\x0a\x00'
"#;

const DUMP: &str = r#"
import sys, json, diskcache
c = diskcache.Cache(sys.argv[1])
MISS = object()
out = {}
for k in c.iterkeys():
    v, e, t = c.get(k, default=MISS, expire_time=True, tag=True)
    if v is not MISS:
        out[repr(k)] = [repr(v), e, t]
print(json.dumps(out, sort_keys=True))
"#;

#[test]
fn python_tags_are_directories_of_links_to_the_keys() {
    let m = Mounted::with(|c| drop(py(FILL, &[c.to_str().unwrap()])), &[]);
    let t = m.mnt.join("tags");
    assert_eq!(listing(&m.mnt), ["flyte2", "keys", "queues", "tags", "task"]);
    assert_eq!(listing(&t), ["%int:7", "grp"]);
    assert_eq!(listing(&t.join("grp")), ["x", "y"]);
    assert_eq!(std::fs::read_link(t.join("grp/x")).unwrap(), std::path::Path::new("../../keys/x"));
    assert_eq!(std::fs::read(t.join("grp/x")).unwrap(), b"vx", "reading through the link");
    assert_eq!(std::fs::read(t.join("%int:7/z")).unwrap(), b"vz");
    let errno = |r: std::io::Result<std::fs::Metadata>| r.err().and_then(|e| e.raw_os_error());
    assert_eq!(errno(std::fs::symlink_metadata(t.join("grp/plain"))), Some(libc::ENOENT), "an untagged key");
    assert_eq!(errno(std::fs::metadata(t.join("nothing"))), Some(libc::ENOENT), "no such tag");
}

#[test]
fn tagging_and_evicting_through_the_mount_is_seen_by_python() {
    let m = Mounted::with(|c| drop(py(FILL, &[c.to_str().unwrap()])), &[]);
    let t = m.mnt.join("tags");
    let c = m.cache.to_str().unwrap();
    // mv keys/X tags/T/ tags X with T (and X stays in keys/).
    std::fs::rename(m.keys().join("plain"), t.join("grp/plain")).unwrap();
    // mkdir a new tag, create a file in it: a new key with that tag.
    std::fs::create_dir(t.join("fresh")).unwrap();
    std::fs::write(t.join("fresh/new"), b"hello").unwrap();
    let seen: serde_json::Value = serde_json::from_str(&py(DUMP, &[c])).unwrap();
    assert_eq!(seen["'plain'"], serde_json::json!(["b'p'", null, "grp"]));
    assert_eq!(seen["'new'"], serde_json::json!(["b'hello'", null, "fresh"]));
    assert_eq!(std::fs::read(m.keys().join("plain")).unwrap(), b"p");
    assert_eq!(listing(&t.join("grp")), ["plain", "x", "y"]);
    // rm -r tags/T is evict(T).
    let out = sh(&format!("rm -r '{}'", t.join("grp").display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_str(&py(DUMP, &[c])).unwrap();
    let keys: Vec<&String> = seen.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["'a/b'", "'new'", "'z'"]);
    assert!(!listing(&t).contains(&"grp".to_string()));
    // Links elsewhere, or to something other than their key, are refused.
    assert_eq!(errno_of(std::os::unix::fs::symlink("../../keys/z", m.keys().join("l"))), libc::EPERM);
    assert_eq!(errno_of(std::os::unix::fs::symlink("/etc/passwd", t.join("%int:7/other"))), libc::EINVAL);
    let check = py("import sys, diskcache; print(diskcache.Cache(sys.argv[1]).check())", &[c]);
    assert_eq!(check.trim(), "[]");
}

#[test]
fn the_whole_tree_backs_up_with_rsync_and_restores_into_an_empty_cache() {
    let a = Mounted::with(|c| drop(py(FILL_ALL, &[c.to_str().unwrap()])), &[]);
    let b = Mounted::new();
    let backup = a.root.path().join("backup");
    let out = sh(&format!("rsync -aX '{}/' '{}/'", a.mnt.display(), backup.display()));
    assert!(out.status.success(), "backup: {}", String::from_utf8_lossy(&out.stderr));
    // Each value once (keys/), tags as links.
    assert!(std::fs::symlink_metadata(backup.join("tags/grp/x")).unwrap().file_type().is_symlink());
    assert!(!backup.join("stats").exists() && !backup.join("settings").exists() && !backup.join("ops").exists());
    // Queue items and task entries are links too; nothing was pulled.
    for link in [
        "queues/jobs/500000000000001",
        "queues/%int/500000000000000",
        "task/wf.square/1/0123456789abcdef0123456789abcdef",
    ] {
        assert!(std::fs::symlink_metadata(backup.join(link)).unwrap().file_type().is_symlink(), "{link}");
    }
    assert!(!backup.join("queues/jobs/.pull").exists());
    assert_eq!(
        py("import sys, diskcache; print(len(diskcache.Cache(sys.argv[1])))", &[a.cache.to_str().unwrap()]).trim(),
        "9"
    );
    let out = sh(&format!("rsync -aX '{}/' '{}/'", backup.display(), b.mnt.display()));
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    let left: serde_json::Value = serde_json::from_str(&py(DUMP, &[a.cache.to_str().unwrap()])).unwrap();
    let right: serde_json::Value = serde_json::from_str(&py(DUMP, &[b.cache.to_str().unwrap()])).unwrap();
    assert_eq!(left, right, "the restored cache differs");
    assert_eq!(left.as_object().unwrap().len(), 9);
    let count = py(
        "import sys, diskcache; c = diskcache.Cache(sys.argv[1]); print(len(c), c.check())",
        &[b.cache.to_str().unwrap()],
    );
    assert_eq!(count.trim(), "9 []", "each entry once, and the cache checks clean");
    let queue = py(
        "import sys, diskcache; c = diskcache.Cache(sys.argv[1]); print(c.peek(prefix='jobs'), c.peek(prefix='jobs', side='back'))",
        &[b.cache.to_str().unwrap()],
    );
    assert_eq!(
        queue.trim(),
        "('jobs-500000000000000', b'job 1') ('jobs-500000000000001', b'job 2')",
        "the queue, restored"
    );
    for (from, to) in [(&a.mnt, &backup), (&backup, &b.mnt)] {
        let out = sh(&format!("rsync -aX --stats '{}/' '{}/'", from.display(), to.display()));
        let stats = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && stats.contains("Number of regular files transferred: 0"), "rerun:\n{stats}");
    }
}
