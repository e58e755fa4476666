//! `stats` and `settings/` through the mount (docs/SEMANTICS.md, "Stats
//! and settings"), with python-diskcache as the peer that must see them.

mod support;

use support::{Mounted, errno_of, py, sh};

#[test]
fn stats_report_the_cache_and_refuse_writes() {
    let m = Mounted::with(
        |c| {
            py(
                "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nc['a'] = b'x' * 50000\nc['b'] = 1",
                &[c.to_str().unwrap()],
            );
        },
        &[],
    );
    let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(m.mnt.join("stats")).unwrap()).unwrap();
    assert_eq!(stats["count"], 2);
    assert_eq!(stats["size"], 50000);
    assert_eq!(stats["settings"]["eviction_policy"], "least-recently-stored");
    assert!(stats["volume"].as_i64().unwrap() > 50000);
    // It follows the cache: another entry from Python shows at the next read.
    py("import sys, diskcache; diskcache.Cache(sys.argv[1])['c'] = 2", &[m.cache.to_str().unwrap()]);
    let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(m.mnt.join("stats")).unwrap()).unwrap();
    assert_eq!(stats["count"], 3);
    assert_eq!(errno_of(std::fs::write(m.mnt.join("stats"), b"{}")), libc::EACCES);
    // Hidden from the root's listing (a whole-tree rsync never restores them).
    let names: Vec<String> =
        std::fs::read_dir(&m.mnt).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names, ["keys", "tags", "queues", "task", "flyte2"]);
}

#[test]
fn settings_read_and_reset_as_files() {
    let m = Mounted::new();
    let s = m.mnt.join("settings");
    let mut names: Vec<String> =
        std::fs::read_dir(&s).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert!(names.contains(&"size_limit".to_string()) && names.contains(&"eviction_policy".to_string()), "{names:?}");
    assert!(!names.contains(&"count".to_string()), "counters are not settings");
    assert_eq!(std::fs::read_to_string(s.join("size_limit")).unwrap(), "1073741824\n");

    // echo VALUE > settings/NAME is reset(NAME, VALUE), seen by Python.
    let out = sh(&format!(
        "echo 100000000 > '{}' && echo least-recently-used > '{}'",
        s.join("size_limit").display(),
        s.join("eviction_policy").display()
    ));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen = py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nprint(c.reset('size_limit'), c.reset('eviction_policy'))",
        &[m.cache.to_str().unwrap()],
    );
    assert_eq!(seen.trim(), "100000000 least-recently-used");
    assert_eq!(std::fs::read_to_string(s.join("size_limit")).unwrap(), "100000000\n");

    // Invalid values: the write fails with EINVAL and nothing changes.
    for (name, bad) in [("eviction_policy", "bogus"), ("size_limit", "-1"), ("statistics", "7")] {
        assert_eq!(errno_of(std::fs::write(s.join(name), format!("{bad}\n"))), libc::EINVAL, "{name}={bad} accepted");
        let out = sh(&format!("echo {bad} > '{}'", s.join(name).display()));
        assert!(!out.status.success(), "the shell's echo {name}={bad} exited 0");
    }
    let seen = py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nprint(c.reset('size_limit'), c.reset('eviction_policy'), c.reset('statistics'))",
        &[m.cache.to_str().unwrap()],
    );
    assert_eq!(seen.trim(), "100000000 least-recently-used 0");
    // No new files there, and statistics can be turned on.
    assert_eq!(errno_of(std::fs::write(s.join("new_setting"), b"1\n")), libc::EPERM);
    std::fs::write(s.join("statistics"), b"1\n").unwrap();
    assert_eq!(
        py(
            "import sys, diskcache; print(diskcache.Cache(sys.argv[1]).reset('statistics'))",
            &[m.cache.to_str().unwrap()]
        )
        .trim(),
        "1"
    );
}

#[test]
fn settings_are_read_only_on_a_read_only_mount() {
    let m = Mounted::with(
        |c| drop(py("import sys, diskcache; diskcache.Cache(sys.argv[1])", &[c.to_str().unwrap()])),
        &["--read-only"],
    );
    let s = m.mnt.join("settings");
    assert_eq!(std::fs::read_to_string(s.join("cull_limit")).unwrap(), "10\n");
    assert_eq!(errno_of(std::fs::write(s.join("cull_limit"), b"5\n")), libc::EROFS);
}
