//! The mount used by an unprivileged user, and by root on a cache that
//! another user owns (issue 20, item 1): a value of 32 KiB or more written
//! through the mount goes into a value file made with `O_TMPFILE`, which
//! must get the mode `0666 & ~umask` (without one it is `0000`, and its
//! owner's `cat` and python-diskcache's `get()` fail), and a daemon running
//! as root in another user's cache directory must give that user every
//! value file, hash directory and `cache.db` it makes.
//!
//! The tests run as root (as every mounted test does) and make one
//! unprivileged user, [`USER`], once per machine. What they need of the
//! machine, checked before each test with a clear message:
//!
//! - `useradd` and `id` (passwd, coreutils); `fusermount3`, setuid root
//!   (fuse3): a user's `diskcachefs mount` mounts through it;
//! - `/dev/fuse` readable and writable by everyone, as Debian's udev rule
//!   makes it: fuser opens it itself before it turns to fusermount3, and a
//!   container's `/dev` may have it `0600` ([`dev_fuse_for_everyone`]
//!   makes it `0666` then);
//! - the `diskcachefs` binary executable by the user: every directory on
//!   the way to `target/debug` searchable by others (`0755`, as in a
//!   checkout under `/work`); otherwise the test runs a copy of it;
//! - a Python with python-diskcache the user can run: the project's venv
//!   (`support::python()`) when every directory on the way to it and to the
//!   interpreter it links to is searchable by others; when it is not (a
//!   pyenv interpreter under `/root`, `0700`), the system's `python3` with a
//!   copy of the venv's (pure Python) diskcache package on `PYTHONPATH`.
//!
//! Every command the user runs starts with umask 022, no supplementary
//! groups (std clears them when a root process sets `uid`), and an
//! environment of its own (`HOME` a directory of the test's).

mod support;

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::{Mounted, hex, is_mounted};

/// The unprivileged user, a system account made once and kept (no home,
/// no login shell).
const USER: &str = "dcfs-unpriv-test";

/// How long a mount, an unmount or a daemon's exit may take.
const WAIT: Duration = Duration::from_secs(10);

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// The sizes written through the mounts: below diskcache's 32 KiB
/// `disk_min_file_size` (in `cache.db`), above it (a value file), and large.
const SIZES: [(&str, usize); 3] = [("v1k", KIB), ("v100k", 100 * KIB), ("v10m", 10 * MIB)];

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn random(n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0; n];
    File::open("/dev/urandom").unwrap().read_exact(&mut buf).unwrap();
    buf
}

/// The uid (`-u`) or gid (`-g`) of [`USER`], if it exists.
fn id_of(flag: &str) -> Option<u32> {
    let out = Command::new("id").arg(flag).arg(USER).output().expect("run id");
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().parse().expect("a number from id"))
}

/// [`USER`]'s uid and gid, made if missing. The tests of this file run in
/// processes of their own, possibly at once: a lock file serializes them
/// here, and a name another process made meanwhile (useradd's status 9) is
/// as good as ours.
fn test_user() -> (u32, u32) {
    let lock_path = std::env::temp_dir().join("diskcachefs-unprivileged-useradd.lock");
    let lock = File::options().create(true).append(true).open(&lock_path).unwrap();
    // SAFETY: the descriptor is open; the lock goes with it when `lock` drops.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0, "flock {}", lock_path.display());
    if id_of("-u").is_none() {
        let out = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"])
            .args(["--shell", "/usr/sbin/nologin", USER])
            .output()
            .expect("run useradd (passwd)");
        assert!(
            out.status.success() || out.status.code() == Some(9),
            "useradd {USER} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ids = (id_of("-u").expect("the test user's uid"), id_of("-g").expect("the test user's gid"));
    drop(lock);
    ids
}

/// fuser opens `/dev/fuse` itself before it falls back to fusermount3
/// (mount(2) is root's), and gives up if it cannot: an unprivileged mount
/// needs it `0666`, as udev makes it on Debian. A container's static
/// `/dev` may have it `0600`; then it is made so, as udev would.
fn dev_fuse_for_everyone() {
    let meta = std::fs::metadata("/dev/fuse").expect("/dev/fuse (the fuse module)");
    if meta.permissions().mode() & 0o006 != 0o006 {
        std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).expect("chmod 0666 /dev/fuse");
        eprintln!("note: /dev/fuse was {:o}; made 0666 (Debian's udev default) for unprivileged mounts", meta.mode());
    }
}

/// A test's world: the user, a temporary directory they can reach (it and
/// `home` are the test's to remove, which tempfile does), and the binary
/// and Python they run.
struct Env {
    uid: u32,
    gid: u32,
    dir: tempfile::TempDir,
    /// The user's `HOME` and working directory, theirs.
    home: PathBuf,
    bin: PathBuf,
    python: PathBuf,
    /// A copy of the venv's diskcache package, when the venv's Python is
    /// out of the user's reach.
    pythonpath: Option<PathBuf>,
}

impl Env {
    fn new() -> Env {
        dev_fuse_for_everyone();
        let (uid, gid) = test_user();
        let dir = tempfile::tempdir().unwrap();
        // tempfile makes it 0700; the user needs to pass through it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut env = Env {
            uid,
            gid,
            home: dir.path().join("home"),
            dir,
            bin: PathBuf::from(env!("CARGO_BIN_EXE_diskcachefs")),
            python: support::python(),
            pythonpath: None,
        };
        env.home = env.mkdir_owned("home");
        if !env.sh(&format!("test -x {}", q(&env.bin))).status.success() {
            // A checkout in a directory the user cannot search: the same
            // bytes, where they can.
            let copy = env.dir.path().join("diskcachefs");
            std::fs::copy(&env.bin, &copy).unwrap();
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
            eprintln!("note: {} is out of {USER}'s reach; running a copy", env.bin.display());
            env.bin = copy;
        }
        env.find_python();
        env
    }

    /// The venv's Python if the user can run it with diskcache, else the
    /// system's with a copy of the venv's diskcache.
    fn find_python(&mut self) {
        let probe = "import sqlite3, diskcache";
        let runs = |env: &Env, python: &Path| {
            let mut c = env.command(python);
            if let Some(p) = &env.pythonpath {
                c.env("PYTHONPATH", p);
            }
            c.args(["-c", probe]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
        };
        if runs(self, &self.python) {
            return;
        }
        let venv = self.python.clone();
        let package = support::py("import diskcache, os; print(os.path.dirname(diskcache.__file__))", &[]);
        let lib = self.dir.path().join("pylib");
        let copy = lib.join("diskcache");
        std::fs::create_dir_all(&copy).unwrap();
        for e in std::fs::read_dir(package.trim()).unwrap() {
            let path = e.unwrap().path();
            if path.extension() == Some(OsStr::new("py")) {
                let to = copy.join(path.file_name().unwrap());
                std::fs::copy(&path, &to).unwrap();
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        for d in [&lib, &copy] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        self.pythonpath = Some(lib);
        for python in ["/usr/bin/python3", "/usr/local/bin/python3"] {
            if runs(self, Path::new(python)) {
                eprintln!("note: {} is out of {USER}'s reach; running {python} with its diskcache", venv.display());
                self.python = python.into();
                return;
            }
        }
        panic!(
            "no Python {USER} can run with diskcache: {} is out of its reach (a directory on the way, \
             or to the interpreter it links to, is not searchable by others), and neither \
             /usr/bin/python3 nor /usr/local/bin/python3 runs with a copy of its diskcache \
             (apt-get install python3)",
            venv.display()
        );
    }

    /// A new directory in the test's directory, the user's, `0755`.
    fn mkdir_owned(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(self.uid), Some(self.gid)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// `program` to run as the user: their uid and gid, no supplementary
    /// groups (std drops them when root sets `uid`), umask 022, `HOME`.
    fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(program);
        c.uid(self.uid)
            .gid(self.gid)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin")
            .env("HOME", &self.home)
            .env("USER", USER)
            .env("LOGNAME", USER)
            .env("LANG", "C")
            .current_dir(&self.home)
            .stdin(Stdio::null());
        // SAFETY: umask is async-signal-safe and cannot fail.
        unsafe {
            c.pre_exec(|| {
                libc::umask(0o022);
                Ok(())
            });
        }
        c
    }

    /// A shell line, as the user.
    fn sh(&self, line: &str) -> Output {
        self.command("sh").arg("-c").arg(line).output().expect("run sh as the test user")
    }

    /// A shell line, as the user, that must succeed; `log` (a daemon's)
    /// goes into the panic message.
    fn sh_ok(&self, line: &str, log: &str) -> String {
        let out = self.sh(line);
        assert!(
            out.status.success(),
            "as {USER}: `{line}` failed ({}):\n{}\n--- daemon log:\n{log}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A Python snippet, as the user, with `sys.argv[1:]` = args; returns
    /// its standard output.
    fn py(&self, script: &str, args: &[&str]) -> String {
        let mut c = self.command(&self.python);
        if let Some(p) = &self.pythonpath {
            c.env("PYTHONPATH", p);
        }
        let out = c.env("PYTHONDONTWRITEBYTECODE", "1").arg("-c").arg(script).args(args).output().unwrap();
        assert!(out.status.success(), "python as {USER} failed:\n{script}\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// `diskcachefs mount CACHE MNT ARGS` as the user, in the foreground,
    /// its standard error to `log`; returns once it is mounted.
    fn mount_as_user(&self, cache: &Path, mnt: &Path, args: &[&str]) -> UserMount {
        let log = self.dir.path().join("daemon.log");
        let child = self
            .command(&self.bin)
            .arg("mount")
            .arg(cache)
            .arg(mnt)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("spawn diskcachefs mount as the test user");
        let mut m = UserMount { mnt: mnt.to_path_buf(), log, child: Some(child) };
        let start = Instant::now();
        while !is_mounted(mnt) {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("diskcachefs mount as {USER} exited before mounting ({status}):\n{}", m.log());
            }
            assert!(start.elapsed() < WAIT, "mount as {USER} not ready in {WAIT:?}:\n{}", m.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    /// `diskcachefs umount MNT` as the user (fusermount3 -u).
    fn umount_as_user(&self, mnt: &Path, log: &str) {
        self.sh_ok(&format!("{} umount {}", q(&self.bin), q(mnt)), log);
    }

    /// The sha256 of each key's value as python-diskcache's `get` returns
    /// it, read by the user ("not bytes: ..." for anything else: None
    /// when it could not read the value file).
    fn python_shas(&self, cache: &Path, keys: &[&str]) -> Vec<String> {
        let script = "import hashlib, sys, diskcache\n\
                      c = diskcache.Cache(sys.argv[1])\n\
                      for k in sys.argv[2:]:\n    \
                          v = c.get(k)\n    \
                          print(hashlib.sha256(v).hexdigest() if isinstance(v, bytes) else 'not bytes: %r' % (v,))\n\
                      c.close()";
        let mut args = vec![cache.to_str().unwrap()];
        args.extend(keys);
        self.py(script, &args).lines().map(str::to_string).collect()
    }

    /// python-diskcache's `Cache(cache).check()`, run by the user: its
    /// warnings' messages (`[]` for none).
    fn python_check(&self, cache: &Path) -> String {
        let script = "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\n\
                      print([str(w.message) for w in c.check()])\nc.close()";
        self.py(script, &[cache.to_str().unwrap()]).trim().to_string()
    }
}

/// A foreground daemon the user started: on drop (a failed test) its mount
/// is cleared as root (`umount -l`) and the process waited for, killed by
/// its pid if it lingers.
struct UserMount {
    mnt: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl UserMount {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) for the daemon to exit once unmounted.
    fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(start.elapsed() < WAIT, "the daemon did not exit in {WAIT:?} after the unmount:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for UserMount {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        if let Some(mut child) = self.child.take() {
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(5) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The processes whose command line names `mnt` (a `--daemon`'s daemon,
/// which is no child of ours), but this one.
fn processes_naming(mnt: &Path) -> Vec<i32> {
    let needle = mnt.as_os_str().as_encoded_bytes();
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// A `--daemon` mount the user made: on drop, cleared as root if still
/// there, and the daemon (found by its command line) waited for, then
/// killed by pid if it lingers.
struct DaemonMount(PathBuf);

impl Drop for DaemonMount {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
        let start = Instant::now();
        while !processes_naming(&self.0).is_empty() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in processes_naming(&self.0) {
            // SAFETY: a plain signal to a process this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// fuser's ERROR for a reply the kernel no longer waits for (ENOENT: the
/// request was interrupted, or aborted by the unmount). The kernel sends a
/// file's RELEASE after close(2) has returned, so the last close before an
/// unmount races with it: about 3 in 100 runs of "write a file, unmount"
/// log this once, with nothing lost. libfuse ignores ENOENT there too.
const REPLY_TO_AN_ABORTED_REQUEST: &str = "ERROR fuser::reply] Failed to send FUSE reply: No such file or directory";

/// No panic and no ERROR line in a daemon's log (but
/// [`REPLY_TO_AN_ABORTED_REQUEST`]).
fn assert_clean_log(log: &str) {
    assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
    let errors: Vec<&str> =
        log.lines().filter(|l| l.contains("ERROR") && !l.contains(REPLY_TO_AN_ABORTED_REQUEST)).collect();
    assert!(errors.is_empty(), "errors in the daemon's log:\n{}\n--- whole log:\n{log}", errors.join("\n"));
}

/// Everything below `root` and `root` itself: (path relative to it, is a
/// directory, permission bits, uid, gid).
fn tree(root: &Path) -> Vec<(String, bool, u32, u32, u32)> {
    fn walk(root: &Path, path: &Path, out: &mut Vec<(String, bool, u32, u32, u32)>) {
        let meta = std::fs::symlink_metadata(path).unwrap();
        let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        out.push((rel, meta.is_dir(), meta.mode() & 0o7777, meta.uid(), meta.gid()));
        if meta.is_dir() {
            for e in std::fs::read_dir(path).unwrap() {
                walk(root, &e.unwrap().path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

/// Every file and directory of the cache is the user's.
fn assert_all_owned_by(cache: &Path, uid: u32, gid: u32) {
    let wrong: Vec<String> = tree(cache)
        .into_iter()
        .filter(|(_, _, _, u, g)| (*u, *g) != (uid, gid))
        .map(|(rel, _, mode, u, g)| format!("{rel:?}: {u}:{g} mode {mode:o}"))
        .collect();
    assert!(wrong.is_empty(), "not owned by {USER} ({uid}:{gid}):\n{}", wrong.join("\n"));
}

/// The value files (`*.val`) and hash directories of a cache the user
/// wrote with umask 022: `0644` and `0755`, the user's. Returns the number
/// of value files.
fn assert_value_file_modes(cache: &Path, uid: u32) -> usize {
    let mut values = 0;
    let mut wrong = Vec::new();
    for (rel, is_dir, mode, u, _) in tree(cache) {
        let want = if is_dir && !rel.is_empty() {
            0o755
        } else if rel.ends_with(".val") {
            values += 1;
            0o644
        } else {
            continue;
        };
        if mode != want || u != uid {
            wrong.push(format!("{rel}: mode {mode:o} (want {want:o}), uid {u} (want {uid})"));
        }
    }
    assert!(wrong.is_empty(), "value files and hash directories:\n{}", wrong.join("\n"));
    values
}

#[test]
fn a_user_mounts_their_cache_and_reads_back_values_of_every_size() {
    let env = Env::new();
    let cache = env.mkdir_owned("cache");
    let mnt = env.mkdir_owned("mnt");
    let mut m = env.mount_as_user(&cache, &mnt, &[]);
    let keys = mnt.join("keys");

    // The user writes each value through the mount, keeping the bytes.
    for (key, n) in SIZES {
        let orig = env.home.join(key);
        env.sh_ok(
            &format!("head -c {n} /dev/urandom > {o} && cat {o} > {v}", o = q(&orig), v = q(&keys.join(key))),
            &m.log(),
        );
    }
    // And reads each back through the mount (the daemon opens the value
    // file as the user).
    for (key, _) in SIZES {
        env.sh_ok(&format!("cmp {} {}", q(&env.home.join(key)), q(&keys.join(key))), &m.log());
    }
    // python-diskcache, run by the user, reads the very bytes.
    let want: Vec<String> = SIZES.iter().map(|(k, _)| sha256(&std::fs::read(env.home.join(k)).unwrap())).collect();
    let keys_named: Vec<&str> = SIZES.iter().map(|(k, _)| *k).collect();
    assert_eq!(env.python_shas(&cache, &keys_named), want, "python-diskcache's get() as {USER}");
    // The value files are 0644 and the hash directories 0755, the user's.
    assert_eq!(assert_value_file_modes(&cache, env.uid), 2, "a value file each for 100 KiB and 10 MiB");
    assert_all_owned_by(&cache, env.uid, env.gid);

    env.umount_as_user(&mnt, &m.log());
    let status = m.wait_exit();
    assert!(status.success(), "the daemon exited {status}:\n{}", m.log());
    assert!(!is_mounted(&mnt));
    assert_clean_log(&m.log());
    assert_eq!(env.python_check(&cache), "[]", "Cache.check() as {USER}");
}

#[test]
fn a_user_mounts_their_cache_read_only() {
    let env = Env::new();
    let cache = env.mkdir_owned("cache");
    let mnt = env.mkdir_owned("mnt");
    // The user fills the cache through python-diskcache.
    for (key, n) in &SIZES[..2] {
        env.sh_ok(&format!("head -c {n} /dev/urandom > {}", q(&env.home.join(key))), "");
    }
    env.py(
        "import sys, diskcache\n\
         c = diskcache.Cache(sys.argv[1])\n\
         for k in sys.argv[3:]:\n    c.set(k, open(sys.argv[2] + '/' + k, 'rb').read())\n\
         c.close()",
        &[cache.to_str().unwrap(), env.home.to_str().unwrap(), "v1k", "v100k"],
    );

    let mut m = env.mount_as_user(&cache, &mnt, &["--read-only"]);
    let keys = mnt.join("keys");
    for (key, _) in &SIZES[..2] {
        env.sh_ok(&format!("cat {} > {}.read", q(&keys.join(key)), q(&env.home.join(key))), &m.log());
        env.sh_ok(&format!("cmp {} {}.read", q(&env.home.join(key)), q(&env.home.join(key))), &m.log());
    }
    for (what, line) in [
        ("overwrite", format!("echo nope > {}", q(&keys.join("v1k")))),
        ("create", format!("echo nope > {}", q(&keys.join("new")))),
    ] {
        let out = env.sh(&line);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} on a read-only mount succeeded");
        assert!(err.contains("Read-only file system"), "{what}: {err}");
    }

    env.umount_as_user(&mnt, &m.log());
    let status = m.wait_exit();
    assert!(status.success(), "the daemon exited {status}:\n{}", m.log());
    assert_clean_log(&m.log());
    let want: Vec<String> = SIZES[..2].iter().map(|(k, _)| sha256(&std::fs::read(env.home.join(k)).unwrap())).collect();
    assert_eq!(env.python_shas(&cache, &["v1k", "v100k"]), want, "unchanged");
    assert_eq!(
        env.py("import sys, diskcache; print(len(diskcache.Cache(sys.argv[1])))", &[cache.to_str().unwrap()]).trim(),
        "2"
    );
    assert_eq!(env.python_check(&cache), "[]");
}

#[test]
fn a_user_mounts_with_daemon_and_unmounts() {
    let env = Env::new();
    let cache = env.mkdir_owned("cache");
    let mnt = env.mkdir_owned("mnt");
    let log = env.home.join("daemon.log");
    let parent_log = env.dir.path().join("parent.log");
    let _guard = DaemonMount(mnt.clone());
    let mut parent = env
        .command(&env.bin)
        .arg("mount")
        .arg(&cache)
        .arg(&mnt)
        .args(["--daemon", "--log-file"])
        .arg(&log)
        .env("RUST_LOG", "info")
        .stdout(File::create(&parent_log).unwrap())
        .stderr(File::create(&parent_log).unwrap())
        .spawn()
        .expect("spawn diskcachefs mount --daemon as the test user");
    let read_logs = || {
        format!(
            "{}\n--- daemon log:\n{}",
            std::fs::read_to_string(&parent_log).unwrap_or_default(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    let start = Instant::now();
    let status = loop {
        if let Some(status) = parent.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > WAIT {
            let _ = parent.kill();
            let _ = parent.wait();
            panic!("mount --daemon did not return in {WAIT:?}:\n{}", read_logs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "mount --daemon exited {status}:\n{}", read_logs());
    assert!(is_mounted(&mnt), "mount --daemon returned before the mount was there:\n{}", read_logs());
    assert_eq!(processes_naming(&mnt).len(), 1, "one daemon:\n{}", read_logs());

    let orig = env.home.join("v100k");
    let value = mnt.join("keys/v100k");
    env.sh_ok(
        &format!("head -c {} /dev/urandom > {o} && cat {o} > {v}", 100 * KIB, o = q(&orig), v = q(&value)),
        &read_logs(),
    );
    env.sh_ok(&format!("cmp {} {}", q(&orig), q(&value)), &read_logs());
    let want = sha256(&std::fs::read(&orig).unwrap());
    assert_eq!(env.python_shas(&cache, &["v100k"]), [want], "python-diskcache's get() as {USER}");
    assert_eq!(assert_value_file_modes(&cache, env.uid), 1);

    env.umount_as_user(&mnt, &read_logs());
    let start = Instant::now();
    while is_mounted(&mnt) || !processes_naming(&mnt).is_empty() {
        assert!(
            start.elapsed() < WAIT,
            "after umount, mounted: {}, daemon processes: {:?}\n{}",
            is_mounted(&mnt),
            processes_naming(&mnt),
            read_logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_clean_log(&read_logs());
    assert_eq!(env.python_check(&cache), "[]");
}

#[test]
fn root_mounting_a_users_cache_leaves_it_theirs() {
    let env = Env::new();
    let cache = env.mkdir_owned("cache");
    env.py("import sys, diskcache; diskcache.Cache(sys.argv[1])['seed'] = b'the owner'", &[cache.to_str().unwrap()]);

    let values: Vec<(&str, Vec<u8>)> = vec![
        ("v1k", random(KIB)),
        ("v100k", random(100 * KIB)),
        ("v10m", random(10 * MIB)),
        ("dir/sub/k", random(64 * KIB)),
    ];
    let mut m = Mounted::on(&cache, &[]);
    std::fs::create_dir_all(m.keys().join("dir/sub")).unwrap();
    for (key, bytes) in &values {
        std::fs::write(m.keys().join(key), bytes).unwrap_or_else(|e| panic!("write {key}: {e}\n{}", m.log()));
    }
    for (key, bytes) in &values {
        assert!(std::fs::read(m.keys().join(key)).unwrap() == *bytes, "{key} through root's mount");
    }
    let status = m.stop().unwrap();
    assert!(status.success(), "root's daemon exited {status}:\n{}", m.log());
    assert_clean_log(&m.log());
    drop(m);

    // Every value file, hash directory and SQLite file is the owner's.
    assert_all_owned_by(&cache, env.uid, env.gid);

    // The owner's python-diskcache reads what root wrote, overwrites one
    // of root's keys (its old value file goes from a hash directory root
    // made), deletes another, and adds its own.
    let mut keys: Vec<&str> = values.iter().map(|(k, _)| *k).collect();
    keys.push("seed");
    let mut want: Vec<String> = values.iter().map(|(_, v)| sha256(v)).collect();
    want.push(sha256(b"the owner"));
    assert_eq!(env.python_shas(&cache, &keys), want, "python-diskcache's get() as the owner");
    let out = env.py(
        "import hashlib, os, sys, diskcache\n\
         c = diskcache.Cache(sys.argv[1])\n\
         mine, theirs = os.urandom(100 * 1024), os.urandom(100 * 1024)\n\
         c.set('owner100k', mine)\n\
         c.set('v100k', theirs)\n\
         assert c.delete('v10m')\n\
         print(hashlib.sha256(mine).hexdigest())\n\
         print(hashlib.sha256(theirs).hexdigest())\n\
         c.close()",
        &[cache.to_str().unwrap()],
    );
    let written: Vec<String> = out.lines().map(str::to_string).collect();
    assert_eq!(env.python_shas(&cache, &["owner100k", "v100k", "v10m"])[..2], written[..]);
    assert_eq!(env.python_shas(&cache, &["v10m"]), ["not bytes: None"], "v10m deleted");
    assert_eq!(env.python_check(&cache), "[]", "Cache.check() as the owner");
    assert_all_owned_by(&cache, env.uid, env.gid);
}

#[test]
fn root_mounting_a_users_empty_directory_makes_cache_db_theirs() {
    let env = Env::new();
    let cache = env.mkdir_owned("cache");
    let value = random(100 * KIB);
    let mut m = Mounted::on(&cache, &[]);
    std::fs::write(m.keys().join("v100k"), &value).unwrap_or_else(|e| panic!("write: {e}\n{}", m.log()));
    std::fs::write(m.keys().join("small"), b"small").unwrap();
    let status = m.stop().unwrap();
    assert!(status.success(), "root's daemon exited {status}:\n{}", m.log());
    assert_clean_log(&m.log());
    drop(m);

    let db = std::fs::metadata(cache.join("cache.db")).expect("the daemon made cache.db");
    assert_eq!((db.uid(), db.gid()), (env.uid, env.gid), "cache.db is the owner's");
    assert_all_owned_by(&cache, env.uid, env.gid);

    env.py(
        "import sys, diskcache\nc = diskcache.Cache(sys.argv[1])\nc.set('owner', b'x' * 100000)\nc.close()",
        &[cache.to_str().unwrap()],
    );
    assert_eq!(
        env.python_shas(&cache, &["v100k", "small", "owner"]),
        [sha256(&value), sha256(b"small"), sha256(&[b'x'; 100000])],
        "python-diskcache's get() as the owner"
    );
    assert_eq!(env.python_check(&cache), "[]", "Cache.check() as the owner");
    assert_all_owned_by(&cache, env.uid, env.gid);
}

/// A value file the daemon may not open (root's Python wrote it into the
/// user's cache with a private mode): the read is EIO and the daemon's log
/// names the file, never a silent miss or an EACCES the mount's 0644 would
/// not explain.
#[test]
fn a_value_file_the_daemon_may_not_open_is_eio_named_in_the_log() {
    let env = Env::new();
    let cache = env.mkdir_owned("cache");
    let mnt = env.mkdir_owned("mnt");
    // Root's Python, with a umask that shuts others out.
    let out = Command::new(support::python())
        .args([
            "-c",
            "import os, sys, diskcache\nos.umask(0o077)\nc = diskcache.Cache(sys.argv[1])\n\
             c['private'] = b'p' * 100000\nc['small'] = b'fine'\n\
             print(c._sql('SELECT filename FROM Cache WHERE filename IS NOT NULL').fetchone()[0])",
            cache.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let filename = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // The directory and cache.db go back to the user (the value file and
    // its hash directories stay root's, 0600/0700).
    let give = |p: &Path| std::os::unix::fs::lchown(p, Some(env.uid), Some(env.gid)).unwrap();
    for name in ["cache.db", "cache.db-wal", "cache.db-shm"] {
        if cache.join(name).exists() {
            give(&cache.join(name));
        }
    }
    give(&cache);
    std::fs::set_permissions(cache.join(&filename), std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut m = env.mount_as_user(&cache, &mnt, &[]);
    let keys = mnt.join("keys");
    env.sh_ok(&format!("test \"$(cat {})\" = fine", q(&keys.join("small"))), &m.log());
    let out = env.sh(&format!("cat {} > /dev/null", q(&keys.join("private"))));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a value the daemon cannot open was read");
    assert!(err.contains("Input/output error"), "EIO expected: {err}");
    env.umount_as_user(&mnt, &m.log());
    let status = m.wait_exit();
    assert!(status.success(), "the daemon exited {status}:\n{}", m.log());
    let log = m.log();
    assert!(log.contains(&filename) && log.contains("ERROR"), "the log names the file:\n{log}");
}
