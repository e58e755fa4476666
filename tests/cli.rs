//! The engine's command line, run as a user would, with python-diskcache
//! as the peer that wrote or reads the cache.

mod support;

use support::{cli, python};

use std::path::Path;
use std::process::Command;

fn py(script: &str, dir: &Path) -> String {
    let out = Command::new(python()).args(["-c", script]).arg(dir).output().unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn keys_lists_escaped_names_of_a_python_cache_in_database_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("c");
    py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nfor k in ['b', 'a/b', 3, 1.5, b'\\x00z', ('t', 1), '%x']: c[k] = 1",
        &d,
    );
    let out = cli(&["keys", d.to_str().unwrap()], None);
    assert!(out.status.success());
    // SQLite order: numbers, then text, then blobs (bytes and pickled keys).
    let listed = String::from_utf8(out.stdout).unwrap();
    let want = py("import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nprint(len(list(c.iterkeys())))", &d);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len().to_string(), want.trim());
    assert_eq!(&lines[..5], &["%float:1.5", "%int:3", "%str:%25x", "%str:a%2Fb", "b"]);
    assert!(lines.contains(&"%bytes:%00z"));
    assert!(lines.iter().any(|l| l.starts_with("%pickle:")));
}

#[test]
fn set_get_delete_round_trip_with_python_as_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("c");
    let ds = d.to_str().unwrap();
    // Small (inline) and large (file-backed) values, from stdin and a file.
    assert!(cli(&["set", ds, "small", "--tag", "t1", "--expire", "3600"], Some(b"hello")).status.success());
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &big).unwrap();
    assert!(cli(&["set", ds, "big", file.to_str().unwrap()], None).status.success());

    let seen = py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\n\
         v, e, t = c.get('small', expire_time=True, tag=True)\n\
         b = c.get('big')\n\
         print(repr(v), t, e is not None, len(b), sum(b) % 1000003, c.check())",
        &d,
    );
    let expected_sum = big.iter().map(|b| *b as u64).sum::<u64>() % 1_000_003;
    assert_eq!(seen.trim(), format!("b'hello' t1 True 200000 {expected_sum} []"));

    let out = cli(&["get", ds, "big"], None);
    assert!(out.status.success());
    assert_eq!(out.stdout, big);
    assert_eq!(cli(&["get", ds, "small"], None).stdout, b"hello");

    assert_eq!(cli(&["delete", ds, "small"], None).status.code(), Some(0));
    assert_eq!(cli(&["delete", ds, "small"], None).status.code(), Some(1));
    assert_eq!(cli(&["get", ds, "small"], None).status.code(), Some(1), "a miss exits 1");
    assert_eq!(py("import sys, diskcache\nprint(diskcache.Cache(sys.argv[1]).get('small'))", &d).trim(), "None");
}

#[test]
fn values_of_every_python_type_print_as_python_str_prints_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("c");
    let ds = d.to_str().unwrap();
    py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nc['i'] = -42\nc['f'] = 1e16\nc['s'] = 'é'\nc['t'] = 'x' * 40000\nc[7] = 'seven'",
        &d,
    );
    assert_eq!(cli(&["get", ds, "i"], None).stdout, b"-42");
    assert_eq!(cli(&["get", ds, "f"], None).stdout, b"1e+16");
    assert_eq!(cli(&["get", ds, "s"], None).stdout, "é".as_bytes());
    assert_eq!(cli(&["get", ds, "t"], None).stdout, "x".repeat(40000).as_bytes());
    assert_eq!(cli(&["get", ds, "--name", "%int:7"], None).stdout, b"seven");
}

#[test]
fn stats_reports_counts_and_settings_and_check_exits_1_on_problems() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("c");
    let ds = d.to_str().unwrap();
    py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1], size_limit=12345678)\nc['a'] = b'x' * 50000\nc['b'] = 1",
        &d,
    );
    let out = cli(&["stats", ds], None);
    assert!(out.status.success());
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["count"], 2);
    assert_eq!(stats["size"], 50000);
    assert_eq!(stats["settings"]["size_limit"], 12345678);
    assert_eq!(stats["settings"]["eviction_policy"], "least-recently-stored");
    assert!(stats["volume"].as_i64().unwrap() > 50000);

    assert_eq!(cli(&["check", ds], None).status.code(), Some(0));
    // Remove the value file behind Python's back: check finds it, --fix repairs.
    let value_file = py(
        "import sys, diskcache, os\nc = diskcache.Cache(sys.argv[1])\nprint(c._sql('SELECT filename FROM Cache WHERE filename IS NOT NULL').fetchone()[0])",
        &d,
    );
    std::fs::remove_file(d.join(value_file.trim())).unwrap();
    let out = cli(&["check", ds], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("file not found"));
    assert_eq!(cli(&["check", ds, "--fix"], None).status.code(), Some(1), "fix still reports what it fixed");
    assert_eq!(cli(&["check", ds], None).status.code(), Some(0));
    assert_eq!(py("import sys, diskcache\nprint(diskcache.Cache(sys.argv[1]).check())", &d).trim(), "[]");
}

#[test]
fn bad_input_gets_a_message_and_exit_2_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let out = cli(&["get", missing.to_str().unwrap(), "k"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no python-diskcache cache here"));
    assert!(!missing.exists(), "a read must not create a cache");

    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("cache.db"), vec![0x5a; 8192]).unwrap();
    let out = cli(&["keys", bad.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an SQLite database"), "{out:?}");

    let good = dir.path().join("good");
    let gs = good.to_str().unwrap();
    assert!(cli(&["set", gs, "k"], Some(b"v")).status.success());
    for args in [
        vec!["get", gs, "--name", "%int:notanumber"],
        vec!["get", gs, "--name", "%bogus:1"],
        vec!["set", gs, "k", "--expire", "nan"],
        vec!["set", gs, "k", "/nonexistent/file"],
    ] {
        let out = cli(&args, Some(b""));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty());
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

#[test]
fn mount_refuses_zero_threads_and_zero_max_inodes_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, mnt) = (dir.path().join("c"), dir.path().join("m"));
    std::fs::create_dir(&mnt).unwrap();
    let (cs, ms) = (cache.to_str().unwrap(), mnt.to_str().unwrap());
    for (args, option) in [
        (vec!["mount", cs, ms, "--threads", "0"], "--threads"),
        (vec!["mount", cs, ms, "--daemon", "--threads", "0"], "--threads"),
        (vec!["mount", cs, ms, "--threads", "2000"], "--threads"),
        (vec!["mount", cs, ms, "--threads", "many"], "--threads"),
        (vec!["mount", cs, ms, "--max-inodes", "0"], "--max-inodes"),
    ] {
        let out = cli(&args, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(stderr.contains(option), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let out = cli(&["mount", cs, ms, "--threads", "0"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be between 1 and 1024"));
    assert!(!cache.exists(), "a refused mount must not create the cache");
}

#[test]
fn completions_for_bash_zsh_and_fish_come_from_the_command_line_definition() {
    let dir = tempfile::tempdir().unwrap();
    let bash = cli(&["completions", "bash"], None);
    assert!(bash.status.success());
    let script = dir.path().join("diskcachefs.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let checked = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(checked.status.success(), "bash -n: {}", String::from_utf8_lossy(&checked.stderr));
    let text = String::from_utf8(bash.stdout).unwrap();
    assert!(text.contains("--read-only") && text.contains("--no-passthrough") && text.contains("umount"));
    let zsh = String::from_utf8(cli(&["completions", "zsh"], None).stdout).unwrap();
    assert!(zsh.starts_with("#compdef diskcachefs") && zsh.contains("--attr-timeout"));
    let fish = String::from_utf8(cli(&["completions", "fish"], None).stdout).unwrap();
    assert!(fish.contains("complete -c diskcachefs") && fish.contains("max-inodes"));
    let bad = cli(&["completions", "tcsh"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid value 'tcsh'"));
}

#[test]
fn the_man_pages_render_with_man() {
    let dir = tempfile::tempdir().unwrap();
    for (args, page, wants) in [
        (&["manpage"][..], "diskcachefs.1", &["diskcachefs-mount(1)", "SUBCOMMANDS"][..]),
        (&["manpage", "mount"][..], "diskcachefs-mount.1", &["--read-only", "--max-inodes", "MOUNTPOINT"][..]),
    ] {
        let out = cli(args, None);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let path = dir.path().join(page);
        std::fs::write(&path, &out.stdout).unwrap();
        let shown =
            Command::new("man").arg("-l").arg(&path).env("MANWIDTH", "80").env("MANPAGER", "cat").output().unwrap();
        assert!(shown.status.success(), "man -l {page}: {}", String::from_utf8_lossy(&shown.stderr));
        let text = String::from_utf8_lossy(&shown.stdout).replace('\u{2010}', "-");
        for want in wants {
            assert!(text.contains(want), "{page} lacks {want:?}:\n{text}");
        }
    }
    let bad = cli(&["manpage", "nosuch"], None);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no subcommand \"nosuch\""));
}

#[test]
fn version_says_what_the_build_carries() {
    let long = String::from_utf8(cli(&["--version"], None).stdout).unwrap();
    assert!(long.starts_with(&format!("diskcachefs {}\n", env!("CARGO_PKG_VERSION"))), "{long}");
    assert!(long.contains("SQLite bundled") && long.contains("passthrough"), "{long}");
    let short = String::from_utf8(cli(&["-V"], None).stdout).unwrap();
    assert_eq!(short.trim(), format!("diskcachefs {}", env!("CARGO_PKG_VERSION")));
}
