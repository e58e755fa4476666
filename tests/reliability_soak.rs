//! Concurrency soak (issue 7, item 2), bounded: 8 clients on one cache at
//! once, 3 through python-diskcache, 3 through the mount with plain file
//! I/O (and rsync), 2 Rust engine processes, mixing set, get, delete,
//! rename, incr, push/pull. No client sees an error, no update is lost (the
//! shared counter is exact, every pushed item is pulled once or still
//! queued) and the daemon's RSS stays flat (its second half within 12 MiB
//! of its first: less than the values written through the mount
//! meanwhile). `DISKCACHEFS_SOAK_SECONDS` sets the length (20 s here;
//! `scripts/reliability soak` runs 300).

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::{Mounted, py, python};

/// The daemon's resident set; a /proc that cannot be read fails the test
/// (a 0 would make any growth look flat).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the daemon's /proc status");
    let kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    assert!(kib > 0, "an RSS of 0 KiB is no reading");
    kib
}

/// Bytes a single-threaded process has written itself with write(2) and
/// friends (`wchar` of its thread: /proc/PID/io would add its reaped
/// children's, `rsync`'s): for a mount client, what it wrote through the
/// mount, and its report at the end. 0 once it is gone.
fn written_bytes(pid: u32) -> u64 {
    let Ok(io) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/io")) else { return 0 };
    io.lines().find_map(|l| l.strip_prefix("wchar: ")?.trim().parse().ok()).unwrap_or(0)
}

#[test]
fn eight_mixed_clients_soak_without_errors_or_lost_updates() {
    let seconds: f64 = std::env::var("DISKCACHEFS_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20.0);
    let m = Mounted::new();
    let client = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/soak_client.py");
    let dir = m.root.path();
    let mut children: Vec<(String, Child)> = Vec::new();
    let mut reports = Vec::new();
    for (kind, count) in [("py", 3), ("mount", 3)] {
        for i in 0..count {
            let name = format!("{kind}{i}");
            let out = dir.join(format!("{name}.json"));
            let child = Command::new(python())
                .arg(&client)
                .args([kind, &name])
                .arg(&m.cache)
                .arg(&m.mnt)
                .arg(seconds.to_string())
                .arg(&out)
                .spawn()
                .unwrap();
            children.push((name, child));
            reports.push(out);
        }
    }
    // The Rust engine: incrs of the same counter and sets, sized to last
    // about as long.
    let engine_incrs = (seconds * 150.0) as u64;
    for i in 0..2 {
        let child = Command::new(env!("CARGO_BIN_EXE_diskcachefs-stress"))
            .arg(&m.cache)
            .args(["--name", &format!("rust{i}"), "--incr-key", "hits"])
            .args(["--incrs", &engine_incrs.to_string(), "--sets", &engine_incrs.to_string()])
            .spawn()
            .unwrap();
        children.push((format!("rust{i}"), child));
    }
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut failed = Vec::new();
    // The most each mount client had written by the half and by the end.
    let mut through_mount: HashMap<String, (u64, u64)> = HashMap::new();
    while !children.is_empty() {
        let t = start.elapsed().as_secs_f64();
        samples.push((t, rss_kib(m.pid())));
        for (name, child) in children.iter().filter(|(name, _)| name.starts_with("mount")) {
            let w = written_bytes(child.id());
            let (half, end) = through_mount.entry(name.clone()).or_default();
            if t <= seconds / 2.0 {
                *half = (*half).max(w);
            }
            *end = (*end).max(w);
        }
        children.retain_mut(|(name, child)| match child.try_wait().unwrap() {
            Some(status) => {
                if !status.success() {
                    failed.push(format!("{name}: {status}"));
                }
                false
            }
            None => true,
        });
        assert!(start.elapsed() < Duration::from_secs_f64(seconds * 3.0 + 120.0), "clients did not finish");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(failed.is_empty(), "clients failed: {failed:?}\n{}", m.log());

    let mut errors = Vec::new();
    let mut incrs = 2 * engine_incrs;
    let mut ops = 0;
    let mut pushed: Vec<String> = Vec::new();
    let mut pulled: HashMap<String, usize> = HashMap::new();
    for path in &reports {
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        errors.extend(r["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()));
        incrs += r["incrs"].as_u64().unwrap();
        ops += r["ops"].as_u64().unwrap();
        pushed.extend(r["pushed"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()));
        for p in r["pulled"].as_array().unwrap() {
            *pulled.entry(p.as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    if !errors.is_empty() {
        // Which requests failed, with which errno (the mount's `stats`):
        // the clients' own messages do not say.
        let stats: serde_json::Value =
            serde_json::from_slice(&std::fs::read(m.mnt.join("stats")).unwrap_or_default()).unwrap_or_default();
        let failing: serde_json::Map<String, serde_json::Value> = stats["requests"]["operations"]
            .as_object()
            .map(|ops| {
                ops.iter()
                    .filter(|(_, o)| o["errors"].as_u64().unwrap_or(0) > 0)
                    .map(|(name, o)| (name.clone(), o["errnos"].clone()))
                    .collect()
            })
            .unwrap_or_default();
        panic!(
            "clients saw errors: {errors:#?}\nthe mount's failing requests by errno: {failing:?}\ndaemon log:\n{}",
            m.log()
        );
    }
    let twice: Vec<&String> = pulled.iter().filter(|(_, n)| **n > 1).map(|(p, _)| p).collect();
    assert!(twice.is_empty(), "items pulled twice: {twice:?}");
    let remaining = py(
        "import sys, json, diskcache\nc = diskcache.Cache(sys.argv[1])\nout = []\n\
         while True:\n    k, v = c.pull(prefix='soak')\n    if k is None: break\n    out.append(v.decode())\n\
         print(json.dumps([c['hits'], out, c.check()]))",
        &[m.cache.to_str().unwrap()],
    );
    let remaining: serde_json::Value = serde_json::from_str(remaining.trim()).unwrap();
    assert_eq!(remaining[0].as_u64().unwrap(), incrs, "the shared counter lost updates");
    for p in remaining[1].as_array().unwrap() {
        *pulled.entry(p.as_str().unwrap().to_string()).or_default() += 1;
    }
    let lost: Vec<&String> = pushed.iter().filter(|p| !pulled.contains_key(*p)).take(10).collect();
    assert!(lost.is_empty(), "pushed items never pulled nor queued: {lost:?}");
    assert_eq!(pulled.len(), pushed.len(), "items pulled that nobody pushed");
    assert_eq!(remaining[2], serde_json::json!([]), "check() after the soak");
    let half: Vec<u64> = samples.iter().filter(|(t, _)| *t > seconds / 2.0).map(|(_, r)| *r).collect();
    let first: u64 = samples.iter().filter(|(t, _)| *t <= seconds / 2.0).map(|(_, r)| *r).max().unwrap_or(0);
    let last = half.iter().copied().max().unwrap_or(0);
    eprintln!(
        "soak {seconds} s: {ops} file and python ops + {} engine ops, {incrs} incrs, {} pushes; daemon RSS max {first} KiB in the first half, {last} KiB in the second",
        4 * engine_incrs,
        pushed.len()
    );
    let trace: Vec<String> = samples.iter().step_by(8).map(|(t, r)| format!("{t:.0}s:{}M", r / 1024)).collect();
    eprintln!("daemon RSS over time: {}", trace.join(" "));
    let second_half: u64 = through_mount.values().map(|(half, end)| end - half).sum();
    eprintln!(
        "written through the mount: {} KiB in the first half, {} KiB in the second; RSS grew {} KiB",
        through_mount.values().map(|(half, _)| half).sum::<u64>() / 1024,
        second_half / 1024,
        last as i64 - first as i64
    );
    // RSS flat: the second half's most is within the allowance of the
    // first's. Measured on 2 vCPUs shared with builds (24 runs, 3 with a
    // CPU hog on the other vCPU): the second half grew 0.7 to 2.3 MiB,
    // except 7.8 MiB once, when the daemon's one-time heap step (one
    // anonymous mapping growing by 5 to 7 MiB, seen between 4 s and 10 s)
    // fell just after the half. 12 MiB is that worst case plus half again.
    // A daemon that kept the values written through it would grow by what
    // the mount clients wrote in the second half: 17.2 to 25.4 MiB in the
    // 12 of those runs that measured it (printed above), past 12 MiB in
    // each (a planted fault keeping every written value grew 20.7 MiB);
    // the old 32 MiB let all of it through.
    const ALLOWANCE_KIB: u64 = 12 * 1024;
    if second_half / 1024 <= ALLOWANCE_KIB {
        eprintln!("note: the second half wrote no more than the allowance: a daemon keeping values would pass");
    }
    assert!(
        last <= first + ALLOWANCE_KIB,
        "daemon RSS grew from {first} KiB to {last} KiB in the second half, with {} KiB written through the mount",
        second_half / 1024
    );
}
