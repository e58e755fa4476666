//! `diskcachefs serve` driven by real WebDAV clients from Debian's
//! packages (installed by .ci/run): `litmus`, the WebDAV compliance suite,
//! and `davfs2`, a kernel mount through WebDAV, with python-diskcache and
//! flytekit as the peers on the same directory. Each client is started
//! and stopped by the test; the server by pid.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::serve::Server;
use support::{py, walk_files};

fn pyc(cache: &Path, code: &str) -> String {
    py(&format!("import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\n{code}"), &[cache.to_str().unwrap()])
        .trim()
        .to_string()
}

fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/sbin", "/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("{name} is missing: .ci/run installs it (apt-get install litmus davfs2)");
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The failures litmus may report, by group, each with its reason in
/// docs/SEMANTICS.md ("Over HTTP and WebDAV"): none today.
const LITMUS_EXPECTED_FAILURES: &[(&str, &str)] = &[];

#[test]
fn litmus_basic_copymove_props_locks_and_http_pass() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    pyc(&cache, "c['kept'] = b'before'");
    let s = Server::start(&cache, &[]);
    // litmus writes debug.log and child.log in its working directory.
    let out = Command::new(tool("litmus"))
        .arg("--keep-going")
        .arg(format!("http://{}/keys/", s.addr))
        .env("TESTS", "basic copymove props locks http")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{text}");
    // "<- summary for `basic': of 16 tests run: 16 passed, 0 failed. 100.0%"
    let mut groups = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("<- summary for `")) {
        let group = line["<- summary for `".len()..].split('\'').next().unwrap().to_string();
        let number = |word: &str| -> usize {
            let before = line.split(&format!(" {word}")).next().unwrap();
            before.rsplit(' ').next().unwrap().parse().unwrap()
        };
        groups.push((group, number("tests run"), number("failed")));
    }
    let names: Vec<&str> = groups.iter().map(|(g, _, _)| g.as_str()).collect();
    assert_eq!(names, ["basic", "copymove", "props", "locks", "http"], "{text}");
    let failed: Vec<String> = text
        .lines()
        .filter(|l| l.contains(" FAIL "))
        .map(|l| l.split_whitespace().nth(1).unwrap_or(l).trim_end_matches('.').to_string())
        .collect();
    let unexpected: Vec<&String> =
        failed.iter().filter(|f| !LITMUS_EXPECTED_FAILURES.iter().any(|(_, name)| f.contains(name))).collect();
    assert!(unexpected.is_empty(), "litmus failures not in the expected list: {unexpected:?}\n{text}");
    for (group, ran, _) in &groups {
        assert!(*ran > 3, "{group} ran only {ran} tests");
    }
    // litmus removed what it made; the cache is whole and holds what it held.
    // Except, at times, `litmus/expect100`: litmus's http.c writes that PUT's
    // 100 zero bytes after the interim 100 response and closes the socket
    // without waiting for the final one, then deletes its collection; the
    // PUT can complete after that DELETE (seen once in CI). It is then
    // exactly those bytes, and is removed here before the check.
    let late = pyc(
        &cache,
        "k = 'litmus/expect100'\nif k not in c: print('absent')\n\
         elif c[k] == bytes(100):\n    del c[k]\n    print('late')\nelse: print('other')",
    );
    assert!(matches!(late.as_str(), "absent" | "late"), "litmus/expect100 holds something else: {late}");
    assert_eq!(pyc(&cache, "print(sorted(c), c['kept'], c.check())"), "['kept'] b'before' []");
    assert_eq!(s.stop(), 0);
}

/// A davfs2 mount of a server, unmounted (and so flushed: davfs2 uploads
/// what it holds before it exits) when dropped.
struct DavMount {
    point: PathBuf,
}

impl DavMount {
    fn new(server: &Server, path: &str, work: &Path) -> DavMount {
        let point = work.join(format!("dav{}", path.replace('/', "_")));
        std::fs::create_dir_all(&point).unwrap();
        let cache_dir = work.join("davfs2-cache");
        std::fs::create_dir_all(&cache_dir).unwrap();
        // mount.davfs works in it as its own user.
        std::fs::set_permissions(&cache_dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let conf = work.join("davfs2.conf");
        // buf_size 64: davfs2 before 1.7.2 answers every readdir EINVAL on
        // Linux 6.16 and later with its default (alisarctl/davfs2#22).
        // delay_upload 0: a closed file is uploaded at once.
        std::fs::write(
            &conf,
            format!(
                "cache_dir {}\nbuf_size 64\ndelay_upload 0\nuse_locks 1\ndir_refresh 1\nfile_refresh 1\n",
                cache_dir.display()
            ),
        )
        .unwrap();
        let mut child = Command::new(tool("mount.davfs"))
            .arg("-o")
            .arg(format!("conf={}", conf.display()))
            .arg(format!("http://{}{path}", server.addr))
            .arg(&point)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // No user name and no password: two empty answers.
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"\n\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "mount.davfs: {}", String::from_utf8_lossy(&out.stderr));
        assert!(support::is_mounted(&point), "davfs2 did not mount {}", point.display());
        DavMount { point }
    }

    fn unmount(self) {
        let point = self.point.clone();
        std::mem::forget(self);
        run(Command::new("umount").arg(&point));
    }
}

impl Drop for DavMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.point).status();
    }
}

#[test]
fn davfs2_mounts_the_server_both_ways_with_python() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let cache = work.join("cache");
    // A flytekit task entry to read as JSON, and keys Python wrote.
    let side = work.join("side");
    let ran = support::flyte::workflow(&cache, &side, &["square", "7"]);
    assert_eq!(ran, serde_json::json!(49));
    pyc(&cache, "c['py/text'] = 'from python'\nc['py/raw'] = bytes(range(256)) * 300");
    let s = Server::start(&cache, &[]);

    // `cp -r` of a tree in: every file a key python-diskcache reads.
    let tree = work.join("tree");
    std::fs::create_dir_all(tree.join("a/b/c")).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("top.txt", b"top\n".to_vec()),
        ("a/one.csv", b"x,y\n1,2\n".to_vec()),
        ("a/b/c/deep.bin", (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect()),
        ("a/b/empty", Vec::new()),
    ];
    for (name, data) in &files {
        std::fs::write(tree.join(name), data).unwrap();
    }
    let m = DavMount::new(&s, "/", work);
    run(Command::new("cp").arg("-r").arg(&tree).arg(m.point.join("keys/in")));
    // Python's keys, read through the davfs2 mount.
    assert_eq!(std::fs::read_to_string(m.point.join("keys/py/text")).unwrap(), "from python");
    let raw: Vec<u8> = (0..300).flat_map(|_| 0..=255u8).collect();
    assert_eq!(std::fs::read(m.point.join("keys/py/raw")).unwrap(), raw);
    // The Flyte entry's outputs as JSON (listed over WebDAV, unlike a mount).
    let only = |dir: &Path| -> PathBuf {
        let names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        names[0].clone()
    };
    let task = only(&m.point.join("task"));
    assert!(task.to_string_lossy().ends_with(".square"), "{task:?}");
    let versions = only(&task);
    assert!(versions.ends_with("1"), "{versions:?}");
    let mut names: Vec<String> =
        std::fs::read_dir(&versions).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[1].ends_with(".json") && names[1].starts_with(&names[0]), "{names:?}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(versions.join(&names[1])).unwrap()).unwrap();
    assert_eq!(json, serde_json::json!({"o0": {"integer": 49}}));
    m.unmount();
    let check =
        "import json\nprint(json.dumps({k: c[k].hex() for k in c if k.startswith('in/')}, sort_keys=True), c.check())";
    let out = pyc(&cache, check);
    let (json, rest) = out.rsplit_once(' ').unwrap();
    assert_eq!(rest, "[]");
    let stored: serde_json::Value = serde_json::from_str(json).unwrap();
    for (name, data) in &files {
        assert_eq!(stored[format!("in/{name}")], serde_json::json!(support::hex(data)), "{name}");
    }
    assert_eq!(stored.as_object().unwrap().len(), files.len(), "{stored}");

    // Python writes while nothing is mounted; a new davfs2 mount reads it,
    // and `rsync -a` makes a backup of keys/ holding every value.
    pyc(&cache, "c['py/later'] = 'written later'\nc['in/top.txt'] = b'changed by python\\n'");
    let m = DavMount::new(&s, "/keys/", work);
    assert_eq!(std::fs::read(m.point.join("in/top.txt")).unwrap(), b"changed by python\n");
    let backup = work.join("backup");
    run(Command::new("rsync")
        .arg("-a")
        .arg("--exclude=lost+found")
        .arg(format!("{}/", m.point.display()))
        .arg(&backup));
    // Run again, nothing has changed: rsync sends nothing.
    let again = run(Command::new("rsync")
        .arg("-ai")
        .arg("--exclude=lost+found")
        .arg(format!("{}/", m.point.display()))
        .arg(&backup));
    assert_eq!(String::from_utf8_lossy(&again.stdout), "", "a second rsync -ai copied again");
    let mut backed = Vec::new();
    walk_files(&backup, &mut backed);
    backed.sort();
    let out =
        pyc(&cache, "import json\nprint(json.dumps(sorted(k for k in c if isinstance(k, str) and '-' not in k)))");
    let mut keys: Vec<String> = serde_json::from_str(&out).unwrap();
    keys.sort();
    for key in &keys {
        assert!(backed.contains(key), "{key} not in the backup {backed:?}");
    }
    assert_eq!(std::fs::read(backup.join("py/raw")).unwrap(), raw);
    assert_eq!(std::fs::read_to_string(backup.join("py/later")).unwrap(), "written later");
    assert_eq!(std::fs::read(backup.join("in/a/b/c/deep.bin")).unwrap(), files[2].1);
    m.unmount();
    assert_eq!(s.stop(), 0);
}
