//! FUSE over io_uring (issue 26; docs/SEMANTICS.md, "Transports"): the
//! transport, its fallbacks and its teardown, through the real mount. The
//! kernel's `enable_uring` parameter is global, so this is one test that
//! sets it for each case and puts it back after (scripts/test leaves this
//! binary out of its io_uring pass, which sets it for the whole pass).

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Mounted, is_mounted, py};

const PARAM: &str = "/sys/module/fuse/parameters/enable_uring";

/// Sets the kernel's parameter; puts back the value it found on drop.
struct EnableUring(String);

impl EnableUring {
    fn new() -> EnableUring {
        EnableUring(std::fs::read_to_string(PARAM).expect("Linux 6.14+ with CONFIG_FUSE_IO_URING").trim().into())
    }

    fn set(&self, on: bool) {
        std::fs::write(PARAM, if on { "1" } else { "0" }).unwrap();
    }
}

impl Drop for EnableUring {
    fn drop(&mut self) {
        let _ = std::fs::write(PARAM, if self.0 == "Y" || self.0 == "1" { "1" } else { "0" });
    }
}

fn transport(mnt: &Path) -> serde_json::Value {
    let stats: serde_json::Value = serde_json::from_slice(&std::fs::read(mnt.join("stats")).unwrap()).unwrap();
    stats["transport"].clone()
}

/// Writes, reads back and lists through the mount, and has Python read
/// what was written: the mount serves, whatever the transport.
fn serves(m: &Mounted, tag: &str) {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(m.keys().join("big"), &big).unwrap();
    for i in 0..50 {
        std::fs::write(m.keys().join(format!("{tag}{i}")), format!("{tag} {i}")).unwrap();
    }
    assert_eq!(std::fs::read(m.keys().join("big")).unwrap(), big);
    assert_eq!(std::fs::read_to_string(m.keys().join(format!("{tag}7"))).unwrap(), format!("{tag} 7"));
    let names: Vec<String> =
        std::fs::read_dir(m.keys()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| n.starts_with(tag)).count(), 50, "{names:?}");
    assert!(names.iter().any(|n| n == "big") && names.iter().any(|n| n == "seed"), "{names:?}");
    let python = py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nprint(len(c[sys.argv[2] + '9']), len(c['big']))",
        &[m.cache.to_str().unwrap(), tag],
    );
    assert_eq!(python.trim(), format!("{} 3000000", format!("{tag} 9").len()));
}

#[test]
fn io_uring_serves_falls_back_and_tears_down() {
    let param = EnableUring::new();
    let prepare = |cache: &Path| {
        py("import sys, diskcache\ndiskcache.Cache(sys.argv[1])['seed'] = b'x'", &[cache.to_str().unwrap()]);
    };

    // Offered: the rings serve, and stats says so.
    param.set(true);
    let m = Mounted::with(prepare, &["--io-uring"]);
    serves(&m, "ring");
    let t = transport(&m.mnt);
    assert_eq!(t["kind"], "io_uring", "{t}");
    assert!(t["queues"].as_u64().unwrap() >= 1, "{t}");
    assert!(t["ring_requests"].as_u64().unwrap() > 100, "the requests went through the rings: {t}");
    assert!(m.log().contains("FUSE over io_uring: "), "{}", m.log());
    drop(m);

    // The default where the kernel offers it, without --io-uring.
    let root = tempfile::tempdir().unwrap();
    let plain = root.path().join("plain");
    prepare(&plain);
    let mnt = root.path().join("m");
    std::fs::create_dir(&mnt).unwrap();
    let bin = env!("CARGO_BIN_EXE_diskcachefs");
    let log = root.path().join("log");
    let out = Command::new(bin).arg("mount").arg(&plain).arg(&mnt).arg("--daemon").arg("--log-file").arg(&log).output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = transport(&mnt);
    let out = Command::new(bin).arg("umount").arg(&mnt).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(t["kind"], "io_uring", "the default where the kernel offers it: {t}");
    drop(root);

    // Not asked for: /dev/fuse, and stats says why.
    let m = Mounted::with(prepare, &["--no-io-uring"]);
    serves(&m, "dev");
    let t = transport(&m.mnt);
    assert_eq!((t["kind"].as_str(), t["ring_requests"].as_u64()), (Some("/dev/fuse"), Some(0)), "{t}");
    assert!(t["note"].as_str().unwrap().contains("not asked for"), "{t}");
    drop(m);

    // The kernel refuses the rings (made to, as a kernel that rejects the
    // registration would): it falls back to /dev/fuse, which serves.
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    prepare(&cache);
    let refuse = [("DISKCACHEFS_TEST_URING_REFUSE".to_string(), "1".to_string())];
    let m = Mounted::on_with_env(&cache, &["--io-uring"], &refuse);
    serves(&m, "refused");
    let t = transport(&m.mnt);
    assert_eq!((t["kind"].as_str(), t["ring_requests"].as_u64()), (Some("/dev/fuse"), Some(0)), "{t}");
    assert!(t["note"].as_str().unwrap().contains("refused"), "{t}");
    drop(m);

    // Not offered by the kernel (the parameter off): /dev/fuse.
    param.set(false);
    let m = Mounted::on(&cache, &["--io-uring"]);
    serves(&m, "off");
    let t = transport(&m.mnt);
    assert_eq!(t["kind"], "/dev/fuse", "{t}");
    assert!(t["note"].as_str().unwrap().contains("does not offer"), "{t}");
    drop(m);

    // The daemon killed while requests are in its rings: the mount is
    // left answering ENOTCONN, `diskcachefs umount` clears it, and it
    // mounts again.
    param.set(true);
    let mut m = Mounted::on(&cache, &["--io-uring"]);
    assert_eq!(transport(&m.mnt)["kind"], "io_uring");
    let keys = m.keys();
    let reader = std::thread::spawn(move || {
        let start = Instant::now();
        let mut reads = 0;
        while start.elapsed() < Duration::from_secs(3) {
            match std::fs::read(keys.join("refused7")) {
                Ok(_) => reads += 1,
                Err(e) => return (reads, e.raw_os_error()),
            }
        }
        (reads, None)
    });
    std::thread::sleep(Duration::from_millis(300));
    let pid = m.pid();
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    let (reads, ended) = reader.join().unwrap();
    assert!(reads > 0, "the reader read through the rings before the kill");
    // ECONNABORTED for a request the daemon had taken, ENOTCONN after.
    assert!(
        matches!(ended, Some(libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED)),
        "a read after the kill: {ended:?}"
    );
    m.expect_faults();
    m.stop();
    let out = Command::new(env!("CARGO_BIN_EXE_diskcachefs")).arg("umount").arg(&m.mnt).output().unwrap();
    assert!(out.status.success(), "diskcachefs umount: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!is_mounted(&m.mnt), "cleared");
    m.start(&["--io-uring"]);
    assert_eq!(std::fs::read_to_string(m.keys().join("refused7")).unwrap(), "refused 7");
    assert_eq!(transport(&m.mnt)["kind"], "io_uring");
}
