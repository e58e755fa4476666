//! Who may use a mount (issue 7, item 6): by default only the user who
//! mounted it; with `--allow-other` everyone, with file permissions
//! enforced by the kernel (`default_permissions`): files are `0644` and
//! directories `0755`, owned by the mounting user. A second, unprivileged
//! user (`nobody`) tries both.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use support::{Mounted, py};

const NOBODY: u32 = 65534;

/// Runs a shell line as `nobody`; returns (exit code, stderr).
fn as_nobody(line: &str) -> (i32, String) {
    let out = Command::new("sh").arg("-c").arg(line).uid(NOBODY).gid(NOBODY).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
}

fn mounted(args: &[&str]) -> Mounted {
    let m = Mounted::with(
        |c| drop(py("import sys, diskcache; diskcache.Cache(sys.argv[1])['x'] = b'secret'", &[c.to_str().unwrap()])),
        args,
    );
    // The temporary directory is 0700: let nobody reach the mount point.
    std::fs::set_permissions(m.root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    m
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

#[test]
fn by_default_only_the_mounting_user_gets_in() {
    let m = mounted(&[]);
    let (code, err) = as_nobody(&format!("cat {}", q(&m.keys().join("x"))));
    assert_ne!(code, 0, "nobody read a private mount");
    assert!(err.contains("Permission denied"), "{err}");
    let (code, _) = as_nobody(&format!("ls {}", q(&m.mnt)));
    assert_ne!(code, 0, "nobody listed a private mount");
    assert_eq!(std::fs::read(m.keys().join("x")).unwrap(), b"secret", "the owner still gets in");
}

#[test]
fn with_allow_other_the_kernel_enforces_the_modes() {
    let m = mounted(&["--allow-other"]);
    let k = m.keys();
    // Reading is allowed (0644, 0755).
    let (code, err) = as_nobody(&format!("cat {} && ls {} >/dev/null", q(&k.join("x")), q(&k)));
    assert_eq!(code, 0, "nobody could not read: {err}");
    // Writing, creating, deleting, renaming and xattrs are not.
    for (what, line) in [
        ("overwrite", format!("echo nope > {}", q(&k.join("x")))),
        ("create", format!("echo nope > {}", q(&k.join("new")))),
        ("delete", format!("rm -f {}", q(&k.join("x")))),
        ("rename", format!("mv {} {}", q(&k.join("x")), q(&k.join("y")))),
        ("push", format!("echo nope > {}", q(&m.mnt.join("queues/jobs/item")))),
        ("setting", format!("echo 1 > {}", q(&m.mnt.join("settings/size_limit")))),
        ("clear", format!("echo > {}", q(&m.mnt.join("ops/clear")))),
    ] {
        let (code, err) = as_nobody(&line);
        assert_ne!(code, 0, "nobody could {what}");
        assert!(err.contains("Permission denied"), "{what}: {err}");
    }
    let (code, _) = as_nobody(&format!("setfattr -n user.diskcache.tag -v t {}", q(&k.join("x"))));
    assert_ne!(code, 0, "nobody set an xattr");
    let out = py(
        "import sys, diskcache; c = diskcache.Cache(sys.argv[1]); print(list(c), c['x'], c.get('new'), len(c), c.check())",
        &[m.cache.to_str().unwrap()],
    );
    assert_eq!(out.trim(), "['x'] b'secret' None 1 []", "nothing changed");
    // The owner still may.
    std::fs::write(k.join("x"), b"changed").unwrap();
    assert_eq!(std::fs::read(k.join("x")).unwrap(), b"changed");
}
