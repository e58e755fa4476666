//! Shared by the integration tests: the Python peers, the JSON encoding of
//! keys and values the Python drivers use, and for the mounted tests a real `diskcachefs mount` in the
//! foreground, in its own temporary directories, torn down on drop (SIGTERM,
//! then a lazy unmount and SIGKILL if needed) even when the test panics, so
//! no mount, process or directory is left behind.

#![allow(dead_code)]

pub mod flyte;
pub mod remote;
pub mod serve;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Hex of bytes (the Python drivers' encoding of bytes and pickles).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A key, value or tag as tests/py/diskcache_ops.py encodes them: `[type, data]`.
pub fn enc_key(key: &diskcachefs::cache::Key) -> serde_json::Value {
    use diskcachefs::cache::Key;
    match key {
        Key::Str(s) => serde_json::json!(["str", s]),
        Key::Bytes(b) => serde_json::json!(["bytes", hex(b)]),
        Key::Int(i) => serde_json::json!(["int", i]),
        Key::Float(f) => serde_json::json!(["float", f]),
        Key::Pickled(p) => serde_json::json!(["pickle", hex(p)]),
    }
}

pub fn enc_value(value: &diskcachefs::cache::Value) -> serde_json::Value {
    use diskcachefs::cache::Value;
    match value {
        Value::Str(s) => serde_json::json!(["str", s]),
        Value::Bytes(b) => serde_json::json!(["bytes", hex(b)]),
        Value::Int(i) => serde_json::json!(["int", i]),
        Value::Float(f) => serde_json::json!(["float", f]),
        Value::Pickle(p) => serde_json::json!(["pickle", hex(p)]),
        Value::None => serde_json::json!(["none", null]),
    }
}

pub fn enc_tag(tag: &Option<diskcachefs::cache::Scalar>) -> serde_json::Value {
    use diskcachefs::cache::Scalar;
    match tag {
        None => serde_json::Value::Null,
        Some(Scalar::Str(s)) => serde_json::json!(["str", s]),
        Some(Scalar::Int(i)) => serde_json::json!(["int", i]),
        Some(Scalar::Float(f)) => serde_json::json!(["float", f]),
        Some(Scalar::Bytes(b)) => serde_json::json!(["bytes", hex(b)]),
    }
}

/// A `get(expire_time=True, tag=True)` result: `[value, expire, tag]` or null.
pub fn enc_entry(entry: Option<diskcachefs::cache::Entry>) -> serde_json::Value {
    match entry {
        None => serde_json::Value::Null,
        Some(e) => serde_json::json!([enc_value(&e.value), e.expire_time, enc_tag(&e.tag)]),
    }
}

/// A queue or peekitem result: `[key, value, expire, tag]` or null.
pub fn enc_item(item: Option<(diskcachefs::cache::Key, diskcachefs::cache::Entry)>) -> serde_json::Value {
    match item {
        None => serde_json::Value::Null,
        Some((k, e)) => serde_json::json!([enc_key(&k), enc_value(&e.value), e.expire_time, enc_tag(&e.tag)]),
    }
}

/// The project's Python (the pinned peers), or DISKCACHEFS_PYTHON.
pub fn python() -> PathBuf {
    std::env::var_os("DISKCACHEFS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// Runs a Python snippet with `sys.argv[1:]` = args; panics with its stderr
/// on failure; returns stdout.
pub fn py(script: &str, args: &[&str]) -> String {
    let out = Command::new(python()).arg("-c").arg(script).args(args).output().expect("run python");
    assert!(out.status.success(), "python failed:\n{script}\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The count of requests of each kind in a daemon's log (the line it
/// logs when its session ends).
pub fn requests_in_log(log: &str) -> std::collections::HashMap<String, u64> {
    let line = log.lines().find_map(|l| l.split_once("requests served: ").map(|(_, r)| r.to_string()));
    let line = line.unwrap_or_else(|| panic!("no request counts in the log:\n{log}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// The names in `dir`, sorted (every name the mount shows is UTF-8).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

pub fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let target = path.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(4) == Some(&target))
}

pub struct Mounted {
    pub root: tempfile::TempDir,
    pub cache: PathBuf,
    pub mnt: PathBuf,
    pub child: Option<Child>,
    log: PathBuf,
    /// Environment variables the daemon gets beyond the test's.
    pub env: Vec<(String, String)>,
    /// What went wrong in the daemons this mount ran (a panic, an internal
    /// error in its log, an exit status other than 0): the test fails at
    /// drop, unless it said it expects it ([`Mounted::expect_faults`]).
    faults: Vec<String>,
    faults_expected: bool,
}

/// The lines of a daemon's log that say it failed inside: a panic (the
/// panic hook's line, and the request guard's "internal error").
pub fn daemon_faults(log: &str) -> Vec<String> {
    log.lines().filter(|l| l.contains("panicked at") || l.contains("internal error")).map(str::to_string).collect()
}

impl Mounted {
    /// Mounts a new (empty) cache.
    pub fn new() -> Mounted {
        Mounted::with(|_| {}, &[])
    }

    /// Prepares the cache directory with `prepare`, then mounts with `args`.
    pub fn with(prepare: impl FnOnce(&Path), args: &[&str]) -> Mounted {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let mnt = root.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        prepare(&cache);
        let log = root.path().join("daemon.log");
        let mut m =
            Mounted { root, cache, mnt, child: None, log, env: Vec::new(), faults: Vec::new(), faults_expected: false };
        m.start(args);
        m
    }

    /// Mounts an existing cache directory (the mount point and log in a
    /// temporary directory of their own).
    pub fn on(cache: &Path, args: &[&str]) -> Mounted {
        Mounted::on_with_env(cache, args, &[])
    }

    /// [`Mounted::on`] with environment variables for the daemon.
    pub fn on_with_env(cache: &Path, args: &[&str], env: &[(String, String)]) -> Mounted {
        let root = tempfile::tempdir().unwrap();
        let mnt = root.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let log = root.path().join("daemon.log");
        let mut m = Mounted {
            root,
            cache: cache.to_path_buf(),
            mnt,
            child: None,
            log,
            env: env.to_vec(),
            faults: Vec::new(),
            faults_expected: false,
        };
        m.start(args);
        m
    }

    pub fn keys(&self) -> PathBuf {
        self.mnt.join("keys")
    }

    pub fn start(&mut self, args: &[&str]) {
        // The log of a daemon the test stopped itself (killed by pid, its
        // child taken) is read before the new daemon's replaces it.
        self.note_log_faults();
        let pass_args = std::env::var("DISKCACHEFS_TEST_MOUNT_ARGS").unwrap_or_default();
        // io_uring is the daemon's default where the kernel offers it, and
        // tests/fs_uring.rs offers it for a while as other tests run: each
        // pass says its transport (/dev/fuse unless it is the io_uring
        // pass, or the test chose).
        let transport_chosen =
            pass_args.split_whitespace().chain(args.iter().copied()).any(|a| a == "--io-uring" || a == "--no-io-uring");
        let child = Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
            .arg("mount")
            .arg(&self.cache)
            .arg(&self.mnt)
            .args(args)
            .args((!transport_chosen).then_some("--no-io-uring"))
            // scripts/test runs the semantics tests a second time with
            // `--no-passthrough` here (both read modes of a read-write mount).
            .args(pass_args.split_whitespace())
            // DISKCACHEFS_TEST_RUST_LOG=debug to see every request in a
            // test's daemon log.
            .env("RUST_LOG", std::env::var("DISKCACHEFS_TEST_RUST_LOG").unwrap_or("info".into()))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.log).unwrap())
            .spawn()
            .expect("spawn diskcachefs mount");
        self.child = Some(child);
        let start = Instant::now();
        while !is_mounted(&self.mnt) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("diskcachefs exited before mounting ({status}):\n{}", self.log());
            }
            // Not a latency promise (a loaded CI machine can be slow to mount).
            assert!(start.elapsed() < Duration::from_secs(30), "mount not ready in 30 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        // The pass without passthrough (scripts/test) must be one: the
        // daemon says its mode at INIT.
        if std::env::var("DISKCACHEFS_TEST_MOUNT_ARGS")
            .is_ok_and(|a| a.split_whitespace().any(|a| a == "--no-passthrough"))
        {
            let start = Instant::now();
            let mode = loop {
                if let Some(line) = self.log().lines().find(|l| l.contains("passthrough: ")) {
                    break line.to_string();
                }
                assert!(start.elapsed() < Duration::from_secs(10), "no passthrough mode logged:\n{}", self.log());
                std::thread::sleep(Duration::from_millis(20));
            };
            assert!(mode.contains("passthrough: off (not asked for)"), "--no-passthrough not in effect: {mode}");
        }
        // The io_uring pass likewise: the daemon says so at INIT.
        if std::env::var("DISKCACHEFS_TEST_MOUNT_ARGS").is_ok_and(|a| a.split_whitespace().any(|a| a == "--io-uring")) {
            let start = Instant::now();
            while !self.log().contains("FUSE over io_uring: ") {
                assert!(start.elapsed() < Duration::from_secs(10), "--io-uring not in effect:\n{}", self.log());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's peak resident set (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Unmounts (as `stop`), then the daemon's count of requests of each
    /// kind, from the line it logs when the session ends.
    pub fn requests_served(&mut self) -> std::collections::HashMap<String, u64> {
        assert!(self.stop().unwrap().success());
        requests_in_log(&self.log())
    }

    /// SIGTERM and wait (bounded); returns the exit status. A status
    /// other than 0 is a fault (see `faults`), as is a daemon that had to
    /// be killed.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if start.elapsed() > Duration::from_secs(10) {
                self.faults.push("the daemon did not exit within 10 s of SIGTERM: killed".into());
                let _ = child.kill();
                break child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(status) = status.filter(|s| !s.success()) {
            self.faults.push(format!("the daemon exited with {status}"));
        }
        self.note_log_faults();
        status
    }

    /// This test provokes daemon faults on purpose (a planted panic): they
    /// do not fail it at drop.
    pub fn expect_faults(&mut self) {
        self.faults_expected = true;
    }

    fn note_log_faults(&mut self) {
        for line in daemon_faults(&self.log()) {
            if !self.faults.contains(&line) {
                self.faults.push(line);
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.stop();
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        self.note_log_faults();
        // (Not while the test is failing already: a second panic aborts.)
        if !self.faults.is_empty() && !self.faults_expected && !std::thread::panicking() {
            panic!("the daemon failed while the test passed:\n{}\n\nits log:\n{}", self.faults.join("\n"), self.log());
        }
    }
}

/// Runs the `diskcachefs` binary with `args`, `stdin` as its standard
/// input (closed at once when `None`); returns its output.
pub fn cli(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_diskcachefs"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        input.write_all(data).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// Runs a shell command line; returns its output.
pub fn sh(line: &str) -> Output {
    Command::new("sh").arg("-c").arg(line).output().unwrap()
}

pub fn errno_of(result: std::io::Result<impl Sized>) -> i32 {
    match result {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

pub fn getxattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

pub fn setxattr(path: &Path, name: &str, value: &[u8]) -> Result<(), i32> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let r = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r < 0 { Err(std::io::Error::last_os_error().raw_os_error().unwrap()) } else { Ok(()) }
}

/// Writes `data` to `path` and closes it with close(2), returning its
/// errno: a commit happens at close, and `std::fs::write` (like a shell's
/// `>`) drops what close says.
pub fn write_closed(path: &Path, data: &[u8]) -> Result<(), i32> {
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    let mut f = std::fs::File::create(path).map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    f.write_all(data).map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    // SAFETY: the descriptor is ours, closed once.
    if unsafe { libc::close(f.into_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1));
    }
    Ok(())
}

/// A small tmpfs of its own (a full disk on demand), in a temporary
/// directory; unmounted (lazily) and removed on drop.
pub struct SmallTmpfs {
    pub path: PathBuf,
    _root: tempfile::TempDir,
}

impl SmallTmpfs {
    /// `size`: as mount(8)'s tmpfs takes it (`4m`).
    pub fn mount(size: &str) -> SmallTmpfs {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("small");
        std::fs::create_dir_all(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a {size} tmpfs");
        SmallTmpfs { path, _root: root }
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Unmounts the path (lazily) on drop if it is still mounted: for mounts
/// made by `--daemon` or mount(8), whose daemon then exits by itself, so
/// that a failing test leaves no mount behind.
pub struct UnmountOnDrop(pub PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// The FUSE dispatch threads of process `pid` (fuser names them `fuser-N`),
/// waiting up to 10 s for the count to reach `want` (they start just after
/// the mount is ready).
pub fn fuse_threads(pid: u32, want: usize) -> usize {
    let count = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks
                    .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                    .filter(|comm| comm.starts_with("fuser-"))
                    .count()
            })
            .unwrap_or(0)
    };
    let start = Instant::now();
    let mut n = count();
    while n != want && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
        n = count();
    }
    n
}

/// How many of the keys `k0` .. `k{n-1}` in `keys` the daemon keeps an
/// inode for after looking up each of them once: the number of its key
/// inode table, seen from outside. Inode numbers are never reused within a
/// daemon's life (src/fs/inode.rs), so a name whose number has changed was
/// forgotten (past `--max-inodes`) and made anew. The second pass goes
/// newest first: the names it looks up anew push out only names it has
/// already counted.
pub fn key_inodes_kept(keys: &Path, n: usize) -> usize {
    use std::os::unix::fs::MetadataExt;
    let ino = |i: usize| std::fs::symlink_metadata(keys.join(format!("k{i}"))).unwrap().ino();
    let first: Vec<u64> = (0..n).map(ino).collect();
    // The kernel's FORGETs for the names the daemon asked it to drop.
    std::thread::sleep(Duration::from_millis(500));
    (0..n).rev().filter(|&i| ino(i) == first[i]).count()
}

/// Every file below `root` (not directories), as paths relative to it.
pub fn walk_files(root: &Path, out: &mut Vec<String>) {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
            let e = e.unwrap();
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    walk(root, root, out);
}

/// Bytes from hex (the Python drivers' encoding of bytes and pickles).
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// A key from its `[type, data]` encoding ([`enc_key`]'s inverse).
pub fn dec_key(enc: &serde_json::Value) -> diskcachefs::cache::Key {
    use diskcachefs::cache::Key;
    let data = &enc[1];
    match enc[0].as_str().unwrap() {
        "str" => Key::Str(data.as_str().unwrap().to_string()),
        "bytes" => Key::Bytes(unhex(data.as_str().unwrap())),
        "int" => Key::Int(data.as_i64().unwrap()),
        "float" => Key::Float(data.as_f64().unwrap()),
        "pickle" => Key::Pickled(unhex(data.as_str().unwrap())),
        other => panic!("key type {other}"),
    }
}

/// A child process killed (and reaped) when dropped: a test that panics
/// leaves no peer running, nor a pipe held open that its runner waits on.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    /// Waits for the child to end by itself; its output.
    pub fn finish(mut self) -> std::process::Output {
        let child = std::mem::replace(&mut self.0, Command::new("true").spawn().unwrap());
        std::mem::forget(self);
        child.wait_with_output().unwrap()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
