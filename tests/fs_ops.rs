//! `ops/` and the rest of the reference API through the mount
//! (docs/SEMANTICS.md, "Operations"), with python-diskcache as the peer:
//! expire, cull, clear and check run by writing their files; incr/decr by
//! writing deltas, racing python-diskcache's own `incr` without losing one;
//! the tag index through `settings/tag_index`; peekitem as the ends of a
//! `keys/` listing; memoize as get-or-compute with plain files.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{Mounted, errno_of, py, python, sh};

fn pyc(m: &Mounted, code: &str) -> String {
    py(&format!("import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\n{code}"), &[m.cache.to_str().unwrap()])
        .trim()
        .to_string()
}

fn json(bytes: Vec<u8>) -> serde_json::Value {
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn expire_cull_clear_and_check_run_by_writing_their_files() {
    let m = Mounted::new();
    let ops = m.mnt.join("ops");
    let mut names: Vec<String> =
        std::fs::read_dir(&ops).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["check", "clear", "cull", "decr", "expire", "incr"]);

    // expire: three entries past their expiry are removed, the rest stay.
    pyc(&m, "import time\nfor i in range(3): c.set(f'old{i}', b'x', expire=0.05)\nc['keep'] = b'y'\ntime.sleep(0.1)");
    assert_eq!(pyc(&m, "print(c._sql('SELECT COUNT(*) FROM Cache').fetchone()[0])"), "4", "expired rows still there");
    std::fs::write(ops.join("expire"), b"\n").unwrap();
    assert_eq!(json(std::fs::read(ops.join("expire")).unwrap())["removed"], 3);
    assert_eq!(pyc(&m, "print(c._sql('SELECT COUNT(*) FROM Cache').fetchone()[0], c['keep'])"), "1 b'y'");

    // cull: above a lowered size_limit, down to it, as Cache.cull does.
    pyc(&m, "for i in range(40): c.set(f'big{i}', bytes(100_000))");
    std::fs::write(m.mnt.join("settings/cull_limit"), b"0\n").unwrap();
    std::fs::write(m.mnt.join("settings/size_limit"), b"1000000\n").unwrap();
    assert!(pyc(&m, "print(c.volume())").parse::<u64>().unwrap() > 1_000_000);
    std::fs::write(ops.join("cull"), b"\n").unwrap();
    assert!(json(std::fs::read(ops.join("cull")).unwrap())["removed"].as_u64().unwrap() > 0);
    assert!(pyc(&m, "print(c.volume())").parse::<u64>().unwrap() <= 1_000_000, "volume after cull");

    // check: reading checks; writing `fix` fixes; python agrees.
    std::fs::create_dir_all(m.cache.join("ab/cd")).unwrap();
    std::fs::write(m.cache.join("ab/cd/stray.val"), b"junk").unwrap();
    let report = json(std::fs::read(ops.join("check")).unwrap());
    assert_eq!(report["fixed"], false);
    assert!(report["warnings"].to_string().contains("stray.val"), "{report}");
    assert!(m.cache.join("ab/cd/stray.val").exists(), "reading check changes nothing");
    std::fs::write(ops.join("check"), b"fix\n").unwrap();
    assert!(!m.cache.join("ab/cd/stray.val").exists(), "check fix removed the unknown file");
    assert_eq!(json(std::fs::read(ops.join("check")).unwrap())["warnings"], serde_json::json!([]));
    assert_eq!(pyc(&m, "print(c.check())"), "[]");
    assert_eq!(errno_of(std::fs::write(ops.join("check"), b"please\n")), libc::EINVAL);

    // clear: everything goes.
    std::fs::write(ops.join("clear"), b"\n").unwrap();
    assert_eq!(pyc(&m, "print(len(c))"), "0");
    assert!(json(std::fs::read(ops.join("clear")).unwrap())["removed"].as_u64().unwrap() > 0);
    // Files in ops/ are not created, removed or listed in the root.
    assert_eq!(errno_of(std::fs::write(ops.join("new"), b"x")), libc::EPERM);
    assert_eq!(errno_of(std::fs::remove_file(ops.join("clear"))), libc::EPERM);
}

const PY_INCR: &str = r#"
import sys, diskcache
c = diskcache.Cache(sys.argv[1])
for _ in range(int(sys.argv[2])):
    c.incr('hits')
"#;

#[test]
fn incr_and_decr_through_files_race_python_without_losing_one() {
    let m = Mounted::new();
    let incr = m.mnt.join("ops/incr/hits");
    let decr = m.mnt.join("ops/decr/hits");
    // A shell loop and a Rust loop writing deltas, python-diskcache's incr
    // at the same time: every increment counts.
    let py_child = Command::new(python()).arg("-c").arg(PY_INCR).arg(&m.cache).arg("500").spawn().unwrap();
    let shell = format!("for i in $(seq 500); do echo 1 > '{}' || exit 1; done", incr.display());
    let sh_child = Command::new("sh").arg("-c").arg(&shell).spawn().unwrap();
    for _ in 0..250 {
        std::fs::write(&incr, b"2\n").unwrap();
    }
    let start = Instant::now();
    for mut child in [py_child, sh_child] {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success());
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(120));
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_eq!(pyc(&m, "print(c['hits'])"), "1500");
    assert_eq!(std::fs::read(&incr).unwrap(), b"1500", "reading the counter's file reads the value");
    std::fs::write(&decr, b"499\n").unwrap();
    std::fs::write(&decr, b"\n").unwrap(); // nothing written but a newline: 1
    assert_eq!(std::fs::read(m.keys().join("hits")).unwrap(), b"1000");
    std::fs::write(m.mnt.join("ops/incr/%int:7"), b"-3\n").unwrap();
    assert_eq!(pyc(&m, "print(c[7])"), "-3", "counters of any key type, created from 0");

    // Bad input: a delta that is not an integer, a value that is not a number.
    assert_eq!(errno_of(std::fs::write(&incr, b"one\n")), libc::EINVAL);
    pyc(&m, "c['text'] = 'abc'");
    assert_eq!(errno_of(std::fs::write(m.mnt.join("ops/incr/text"), b"1\n")), libc::EINVAL);
    assert_eq!(pyc(&m, "print(c['hits'], c['text'])"), "1000 abc");
    // The stats file refuses writes; an invalid setting is EINVAL.
    assert_eq!(errno_of(std::fs::write(m.mnt.join("stats"), b"{}")), libc::EACCES);
    assert_eq!(errno_of(std::fs::write(m.mnt.join("settings/eviction_policy"), b"most-loved\n")), libc::EINVAL);
}

#[test]
fn tag_index_listing_order_and_memoize_through_files() {
    let m = Mounted::new();
    let index = "print(c._sql(\"SELECT COUNT(*) FROM sqlite_master WHERE name = 'Cache_tag_rowid'\").fetchone()[0], \
                 c.tag_index)";
    assert_eq!(pyc(&m, index), "0 0");
    std::fs::write(m.mnt.join("settings/tag_index"), b"1\n").unwrap();
    assert_eq!(pyc(&m, index), "1 1", "create_tag_index");
    std::fs::write(m.mnt.join("settings/tag_index"), b"0\n").unwrap();
    assert_eq!(pyc(&m, index), "0 0", "drop_tag_index");
    assert_eq!(errno_of(std::fs::write(m.mnt.join("settings/tag_index"), b"2\n")), libc::EINVAL);

    // A keys/ listing is in the cache's order of keys (bytewise for str
    // keys), whatever the insertion order: what `sorted(cache)` gives.
    pyc(&m, "for k in ('b', 'a', 'c'): c[k] = k.encode()");
    let out = sh(&format!("ls -f '{}' | grep -v '^\\.'", m.keys().display()));
    let listed: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
    assert_eq!(listed.join(" "), pyc(&m, "print(' '.join(sorted(c)))"));
    assert_eq!(pyc(&m, "print(c.peekitem(last=False)[0], c.peekitem()[0])"), "b c", "peekitem goes by insertion");

    // memoize: get or compute, with files (the second call does not compute).
    let script = format!(
        "f='{}/slow'; cat \"$f\" 2>/dev/null || {{ echo computed >> '{}/runs'; echo 42 | tee \"$f\"; }}",
        m.keys().display(),
        m.root.path().display()
    );
    for _ in 0..3 {
        let out = sh(&script);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    }
    assert_eq!(std::fs::read_to_string(m.root.path().join("runs")).unwrap(), "computed\n");
    assert_eq!(pyc(&m, "print(c['slow'])"), "b'42\\n'");
}
