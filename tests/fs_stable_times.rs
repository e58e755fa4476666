//! Directories and links keep their times while nothing changes
//! (docs/SEMANTICS.md, "Times"). The bug: every directory and every link
//! of the views reported `mtime = now`, so each `rsync -aXi MOUNT/ backup/`
//! rerun on an unchanged mount itemized every directory and link (75
//! lines for 200 keys with one tag and one queue) and rewrote their times
//! in the backup, and `tar` warned "file changed as we read it" and exited
//! 1 on every run. The fix: they carry the time the cache last changed
//! (`cache.db` or its WAL written), which moves only when something does.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{Mounted, py, sh};

const FILL: &str = r#"
import sys, diskcache
c = diskcache.Cache(sys.argv[1])
for i in range(200):
    c.set(f'k{i}', f'value {i}'.encode(), tag='grp' if i % 10 == 0 else None)
c.push(b'job 1', prefix='jobs')
c.push(b'job 2', prefix='jobs')
c.set('wf.square-1-0123456789abcdef0123456789abcdef', b'outputs')
c.close()
"#;

fn run(line: &str) -> String {
    let out = sh(line);
    assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_unchanged_mount_looks_unchanged_to_rsync_tar_and_find() {
    let m = Mounted::with(|c| drop(py(FILL, &[c.to_str().unwrap()])), &[]);
    let backup = m.root.path().join("backup");
    let mnt = m.mnt.display();
    let first = run(&format!("rsync -aXi '{mnt}/' '{}/'", backup.display()));
    assert!(first.lines().count() > 200, "the first run copies everything:\n{first}");
    // Past the attribute timeout, so that the kernel asks the daemon again.
    std::thread::sleep(Duration::from_millis(1200));
    let second = run(&format!("rsync -aXi '{mnt}/' '{}/'", backup.display()));
    assert_eq!(second, "", "a rerun on an unchanged mount itemizes nothing");

    let tar = sh(&format!("tar cf '{}' -C '{mnt}' keys tags queues task", m.root.path().join("b.tar").display()));
    assert!(tar.status.success(), "tar: {}", String::from_utf8_lossy(&tar.stderr));

    let reference = m.root.path().join("ref");
    std::fs::write(&reference, b"").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let newer = |r: &Path| run(&format!("find '{mnt}' -newer '{}'", r.display()));
    assert_eq!(newer(&reference), "", "nothing changed after the reference");

    // A change shows: the value's file, and the directories (whose time is
    // the cache's); no other file and no link.
    py("import sys, diskcache; diskcache.Cache(sys.argv[1]).set('k5', b'changed')", &[m.cache.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(1200));
    let changed = newer(&reference);
    let not_dirs: Vec<&str> =
        changed.lines().filter(|l| !std::fs::symlink_metadata(l).unwrap().file_type().is_dir()).collect();
    assert_eq!(not_dirs, [format!("{mnt}/keys/k5")], "only the changed value's file is newer:\n{changed}");
    let third = run(&format!("rsync -aXi '{mnt}/' '{}/'", backup.display()));
    assert!(third.lines().any(|l| l.ends_with("keys/k5")), "the change is copied:\n{third}");
}
