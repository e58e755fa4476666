//! The remote tier against a real Redis (Debian's `redis-server`, started
//! per test on a free port and stopped by pid): the scenarios of
//! tests/support/remote.rs.

mod support;

use support::remote::{self, Server};

#[test]
fn put_if_absent_first_writer_wins_redis() {
    remote::first_writer_wins(&Server::redis());
}

#[test]
fn signed_records_tampered_in_the_store_are_rejected_and_counted_redis() {
    remote::tampered_objects_are_rejected(&Server::redis());
}

#[test]
fn read_only_mode_writes_nothing_redis() {
    remote::read_only_writes_nothing(&Server::redis());
}

#[test]
fn queue_items_and_counters_never_reach_the_remote_redis() {
    remote::queues_and_counters_stay(&Server::redis());
}

#[test]
fn a_flytekit_run_on_one_cache_is_a_hit_on_another_after_sync_redis() {
    remote::flytekit_runs_hit_across_caches(&Server::redis());
}

#[test]
fn a_frozen_server_fails_sync_within_its_deadline_redis() {
    remote::frozen_server_fails_within_deadline(&Server::redis());
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_2() {
    let server = Server::redis();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let empty = tmp.path().join("empty-key");
    std::fs::write(&empty, "\n").unwrap();
    let missing = tmp.path().join("no-such-key");
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("redis://127.0.0.1:{}/0", l.local_addr().unwrap().port())
    };
    for (args, want) in [
        (vec!["--remote", "ftp://host/x"], "expected s3://BUCKET/PREFIX or redis://HOST:PORT/DB"),
        (vec!["--remote", "s3:///p"], "no bucket"),
        (vec!["--remote", &server.url, "--namespace", "a/b"], "namespace \"a/b\""),
        (vec!["--remote", &server.url, "--signing-key-file", empty.to_str().unwrap()], "the file is empty"),
        (vec!["--remote", &server.url, "--signing-key-file", missing.to_str().unwrap()], "No such file"),
        (vec!["--remote", &server.url, "--timeout", "0"], "--timeout 0"),
        (vec!["--remote", &refused], "cannot reach the server"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
            .arg("sync")
            .arg(&dir)
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("diskcachefs: sync ") && stderr.contains(want), "{args:?}: {stderr}");
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["errors"], 1, "{args:?}: {summary}");
        assert!(summary["error"].as_str().unwrap().contains(want), "{summary}");
    }
    assert!(server.all_names().is_empty(), "nothing was written on any of the failures");

    // A damaged cursor file is named, with what to do about it.
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cache.db.remote-cursor.json"), "{half").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
        .arg("sync")
        .arg(&dir)
        .args(["--remote", &server.url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cache.db.remote-cursor.json: not JSON") && stderr.contains("remove it"), "{stderr}");
}

#[test]
fn mounts_share_flytekit_entries_and_values_across_machines_redis() {
    remote::mounts_share_across_machines(&Server::redis());
}

#[test]
fn a_mount_survives_a_frozen_and_a_stopped_server_redis() {
    remote::mounted_survives_a_frozen_and_a_stopped_server(&mut Server::redis());
}

#[test]
fn mounts_reject_tampered_records_and_ro_writes_nothing_redis() {
    remote::mounted_trust_and_read_only(&Server::redis());
}

/// `mount --remote` with bad options fails before mounting, exit 2 and a
/// message naming the option; the fstab form (`-o remote=...`, as
/// mount(8) runs it, daemonized) mounts with the tier on.
#[test]
fn mount_remote_options_are_checked_and_pass_through_fstab() {
    let server = Server::redis();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, mnt) = (tmp.path().join("c"), tmp.path().join("m"));
    std::fs::create_dir_all(&mnt).unwrap();
    let url = server.url.as_str();
    for (args, want) in [
        (vec!["--remote", "ftp://host/x"], "expected s3://BUCKET/PREFIX or redis://HOST:PORT/DB"),
        (vec!["--remote", url, "--remote-timeout", "0"], "--remote-timeout 0"),
        (vec!["--remote", url, "--remote-queue", "0"], "--remote-queue 0"),
        (vec!["--remote", url, "--remote-namespace", "a/b"], "namespace \"a/b\""),
        (vec!["--remote", url, "--remote-signing-key-file", "/nonexistent/key"], "--remote-signing-key-file"),
        (vec!["--remote", url, "--read-only"], "needs a read-write mount"),
        (vec!["--remote-mode", "ro"], "--remote"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
            .arg("mount")
            .arg(&dir)
            .arg(&mnt)
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!support::is_mounted(&mnt), "{args:?} mounted");
    }

    let log = tmp.path().join("daemon.log");
    let opts = format!("remote={url},remote_prefix=shared/,remote_pull_interval=0.5,log_file={}", log.display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
        .arg(&dir)
        .arg(&mnt)
        .args(["-o", &opts])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _unmount = support::UnmountOnDrop(mnt.clone());
    let status: serde_json::Value = serde_json::from_slice(&std::fs::read(mnt.join("ops/remote")).unwrap()).unwrap();
    assert_eq!(status["url"], url, "{status}");
    std::fs::write(mnt.join("keys/shared/x"), "x").unwrap();
    let start = std::time::Instant::now();
    while !server.all_names().iter().any(|n| n.contains("/records/") && !n.ends_with('/')) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "not pushed: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn flyte2_entries_are_shared_through_mounts_and_sync_redis() {
    remote::flyte2_entries_are_shared(&Server::redis());
}

/// `serve --remote` shares entries as `mount --remote` does: a key PUT to
/// one server (prefix shared/) is read through another on another cache,
/// and python-diskcache finds it in that cache; a key outside the prefix
/// stays where it was written; `--read-only` with `--remote` is refused.
#[test]
fn serve_shares_keys_through_the_remote_redis() {
    let server = Server::redis();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for dir in [&a, &b] {
        support::py("import sys, diskcache\ndiskcache.Cache(sys.argv[1])", &[dir.to_str().unwrap()]);
    }
    let args = ["--remote", &server.url, "--remote-prefix", "shared/", "--remote-pull-interval", "0.5"];
    let sa = support::serve::Server::start(&a, &args);
    let sb = support::serve::Server::start(&b, &args);
    // The shared prefix's directory is there from the start, as in a mount.
    assert_eq!(sa.request("MKCOL", "/keys/shared/", &[], b"").0, 405);
    assert_eq!(sa.put("/keys/shared/report", b"from A\n"), 201);
    assert_eq!(sa.put("/keys/private", b"only A\n"), 201);
    let start = std::time::Instant::now();
    loop {
        match sb.get("/keys/shared/report") {
            (200, body) => {
                assert_eq!(body, b"from A\n");
                break;
            }
            (status, _) => assert!(start.elapsed().as_secs() < 15, "not through B in 15 s: {status}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = support::py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nprint(c.get('shared/report'), c.get('private'), c.check())",
        &[b.to_str().unwrap()],
    );
    assert_eq!(out.trim(), "b'from A\\n' None []");
    assert_eq!(sb.get("/keys/private").0, 404);
    assert_eq!(sa.stop(), 0);
    assert_eq!(sb.stop(), 0);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
        .args(["serve", a.to_str().unwrap(), "--read-only", "--remote", &server.url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--remote: needs a server that writes"), "{out:?}");
}
