//! diskcachefs as a service (issue 13, item 3): the systemd units in
//! dist/systemd pass `systemd-analyze verify`; the daemon started the way
//! the unit starts it (its ExecStart and environment file read from the
//! unit itself) says READY=1 on `$NOTIFY_SOCKET`, serves, and says
//! STOPPING=1 on SIGTERM; its log carries the journal's priorities under
//! systemd, and a `--daemon` logs to syslog or to its default log file
//! instead of nowhere; the README's fstab line with `x-systemd.automount`
//! makes valid units and mounts.
//!
//! Every daemon is killed by its pid and every mount cleared on drop, so
//! a failing test leaves nothing behind.

mod support;

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use diskcachefs::cache::{Cache, Key, Value};
use support::{UnmountOnDrop, errno_of, is_mounted};

const BIN: &str = env!("CARGO_BIN_EXE_diskcachefs");
/// Where the system unit expects the binary (the user unit: `%h/.local/bin`).
const SYSTEM_BIN: &str = "/usr/local/bin/diskcachefs";
const USER_BIN: &str = "%h/.local/bin/diskcachefs";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn system_unit() -> String {
    std::fs::read_to_string(repo("dist/systemd/diskcachefs@.service")).unwrap()
}

fn user_unit() -> String {
    std::fs::read_to_string(repo("dist/systemd/user/diskcachefs@.service")).unwrap()
}

/// The `[Service]` settings of a unit, in order (`KEY`, `VALUE`).
fn service_settings(unit: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(!line.ends_with('\\'), "continued lines are not parsed by this test: {line}");
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
        if section == "[Service]" {
            out.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    out
}

/// The one value of a `[Service]` setting.
fn setting(unit: &str, key: &str) -> String {
    let values: Vec<String> = service_settings(unit).into_iter().filter(|(k, _)| k == key).map(|(_, v)| v).collect();
    assert_eq!(values.len(), 1, "{key}= set {} times", values.len());
    values.into_iter().next().unwrap()
}

/// What a unit's specifiers stand for (systemd.unit(5), "Specifiers").
struct Specifiers {
    /// `%i`: the instance, as `systemd-escape --path` writes the mount point.
    instance: String,
    /// `%f`: the instance unescaped, with its leading `/`.
    mountpoint: PathBuf,
    /// `%h` and `%E`: the user's home and configuration directory.
    home: PathBuf,
    config: PathBuf,
}

impl Specifiers {
    fn expand(&self, word: &str) -> String {
        let mut out = String::new();
        let mut chars = word.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('i') => out.push_str(&self.instance),
                Some('f') => out.push_str(self.mountpoint.to_str().unwrap()),
                Some('h') => out.push_str(self.home.to_str().unwrap()),
                Some('E') => out.push_str(self.config.to_str().unwrap()),
                Some('%') => out.push('%'),
                other => panic!("specifier %{other:?} in {word:?} is not known to this test"),
            }
        }
        out
    }
}

/// A command line of the unit as systemd runs it (systemd.service(5),
/// "Command lines"): words split at spaces, specifiers expanded, then a
/// word `${NAME}` is the variable's value as one argument and a word
/// `$NAME` its value split at spaces (zero or more arguments). Returns
/// whether a `-` prefix lets it fail, and the arguments. Every variable
/// must be set (by the environment file).
fn command_line(value: &str, specifiers: &Specifiers, env: &HashMap<String, String>) -> (bool, Vec<String>) {
    assert!(!value.contains(['"', '\'', '\\', ';']), "quoting is not parsed by this test: {value}");
    let (may_fail, value) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    let var = |name: &str| {
        env.get(name)
            .unwrap_or_else(|| panic!("the unit uses ${name}, which the environment file does not set"))
            .clone()
    };
    let mut argv = Vec::new();
    for word in value.split_whitespace() {
        let word = specifiers.expand(word);
        if let Some(name) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
            argv.push(var(name));
        } else if let Some(name) = word.strip_prefix('$') {
            argv.extend(var(name).split_whitespace().map(String::from));
        } else {
            assert!(!word.contains('$'), "a variable inside a word is not parsed by this test: {word}");
            argv.push(word);
        }
    }
    (may_fail, argv)
}

/// An environment file's variables (systemd.exec(5), `EnvironmentFile=`):
/// `KEY=VALUE` lines, `#` and `;` comments.
fn environment_file(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(!line.contains(['"', '\'', '\\']), "quoting is not parsed by this test: {line}");
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
        vars.insert(key.trim().to_string(), value.trim().to_string());
    }
    vars
}

/// `systemd-escape ARGS`, its one line of output.
fn systemd_escape(args: &[&str]) -> String {
    let out = Command::new("systemd-escape").args(args).output().expect("systemd-escape (apt-get install systemd)");
    assert!(out.status.success(), "systemd-escape {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim_end_matches('\n').to_string()
}

/// A socket bound for the daemon's notifications (or syslog), with a
/// timeout on every read.
fn bind_socket(path: &Path) -> UnixDatagram {
    let socket = UnixDatagram::bind(path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    socket
}

/// The next datagram, as text; panics after the socket's timeout.
fn receive(socket: &UnixDatagram, what: &str) -> String {
    let mut buf = vec![0u8; 65536];
    let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("no {what} within 15 s: {e}"));
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// Datagrams until one contains `needle` (all of them returned), within 15 s.
fn receive_until(socket: &UnixDatagram, needle: &str) -> Vec<String> {
    receive_all_of(socket, &[needle])
}

/// Datagrams until each of `needles` was in one (all of them returned,
/// in order), within 15 s.
fn receive_all_of(socket: &UnixDatagram, needles: &[&str]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let start = Instant::now();
    while !needles.iter().all(|n| seen.iter().any(|m| m.contains(n))) {
        assert!(start.elapsed() < Duration::from_secs(15), "not all of {needles:?} in 15 s: {seen:#?}");
        seen.push(receive(socket, &format!("{needles:?}")));
    }
    seen
}

/// Waits up to 10 s for `child` to exit.
fn wait_exit(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "pid {} still running after 10 s", child.id());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon this test started (directly, or found as a `--daemon`'s
/// child by its pid), killed on drop, and its mount point cleared.
struct Daemon {
    child: Option<Child>,
    pid: Option<u32>,
    mnt: PathBuf,
}

impl Daemon {
    fn child(child: Child, mnt: &Path) -> Daemon {
        Daemon { pid: Some(child.id()), child: Some(child), mnt: mnt.to_path_buf() }
    }

    fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.pid.unwrap() as i32, signal) };
    }

    /// Waits (10 s at most) for the daemon to exit; its status when it is
    /// this test's child.
    fn wait(&mut self) -> Option<ExitStatus> {
        let status = match self.child.as_mut() {
            Some(child) => Some(wait_exit(child)),
            None => {
                let start = Instant::now();
                while running(self.pid.unwrap()) {
                    assert!(start.elapsed() < Duration::from_secs(10), "daemon {:?} still running", self.pid);
                    std::thread::sleep(Duration::from_millis(20));
                }
                None
            }
        };
        self.child = None;
        self.pid = None;
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = self.pid
            && running(pid)
        {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

/// Whether process `pid` runs (a zombie that no one reaps does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
}

/// The unit instance of `mnt`, its specifiers and the variables of the
/// example environment file with `CACHE_DIR` set to `cache`.
fn instance_of(mnt: &Path, cache: &Path) -> (Specifiers, HashMap<String, String>) {
    let instance = systemd_escape(&["--path", mnt.to_str().unwrap()]);
    let unescaped = systemd_escape(&["--unescape", "--path", &instance]);
    assert_eq!(Path::new(&unescaped), mnt, "%f is the mount point");
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()));
    let specifiers = Specifiers { instance, mountpoint: mnt.to_path_buf(), config: home.join(".config"), home };
    let mut env = environment_file(&std::fs::read_to_string(repo("dist/systemd/diskcachefs.env.example")).unwrap());
    assert!(env.contains_key("CACHE_DIR") && env.contains_key("OPTIONS"), "{env:?}");
    env.insert("CACHE_DIR".into(), cache.to_str().unwrap().into());
    (specifiers, env)
}

/// The system unit's commands for one instance, as systemd would run them.
struct UnitCommands {
    start: Vec<String>,
    stop_post: Vec<String>,
    /// ExecStopPost= has the `-` prefix (its failure does not fail the unit).
    stop_post_may_fail: bool,
    /// The environment file's variables.
    env: HashMap<String, String>,
}

/// The system unit's ExecStart and ExecStopPost for `mnt`, serving
/// `cache`, with the built binary for /usr/local/bin/diskcachefs.
fn unit_commands(mnt: &Path, cache: &Path) -> UnitCommands {
    let unit = system_unit();
    assert_eq!(setting(&unit, "Type"), "notify");
    let (specifiers, env) = instance_of(mnt, cache);
    assert_eq!(
        specifiers.expand(&setting(&unit, "EnvironmentFile")),
        format!("/etc/diskcachefs/{}.env", specifiers.instance),
        "the README names this environment file"
    );
    let built = |(may_fail, mut argv): (bool, Vec<String>)| {
        assert_eq!(argv[0], SYSTEM_BIN);
        argv[0] = BIN.into();
        (may_fail, argv)
    };
    let (start_may_fail, start) = built(command_line(&setting(&unit, "ExecStart"), &specifiers, &env));
    assert!(!start_may_fail);
    let (stop_post_may_fail, stop_post) = built(command_line(&setting(&unit, "ExecStopPost"), &specifiers, &env));
    UnitCommands { start, stop_post, stop_post_may_fail, env }
}

/// Runs `argv` as systemd runs a service: a clean environment with
/// systemd's PATH, the environment file's variables and `NOTIFY_SOCKET`.
fn start_as_the_unit(argv: &[String], env: &HashMap<String, String>, notify: &Path, stderr: &Path) -> Child {
    Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env)
        .env("NOTIFY_SOCKET", notify)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .unwrap()
}

fn run_quietly(argv: &[String]) -> Output {
    Command::new(&argv[0]).args(&argv[1..]).output().unwrap()
}

/// Copies `unit` into `dir` as `diskcachefs@.service` with `from` (the
/// binary it names) replaced by `to`, then verifies the instance of
/// `instance`: verify's output.
fn verify_copy(unit: &str, from: &str, to: &str, dir: &Path, instance: &str, user: bool) -> Output {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("diskcachefs@.service"), unit.replace(from, to)).unwrap();
    let runtime = dir.join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    let mut cmd = Command::new("systemd-analyze");
    if user {
        // The user manager's lookup paths need a runtime directory.
        cmd.arg("--user").env("XDG_RUNTIME_DIR", &runtime);
    }
    cmd.arg("verify").arg(dir.join(format!("diskcachefs@{instance}.service")));
    cmd.output().expect("systemd-analyze (apt-get install systemd)")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The must-show point: the units pass `systemd-analyze verify`. verify
/// wants ExecStart's binary to exist, so the copy verified is the real
/// file with only the binary's path changed to the built one; it must
/// print nothing (verify exits 0 after an unknown key, but says so).
/// Broken copies show the check can fail: a misspelled key, a binary that
/// is not there.
#[test]
fn the_units_pass_systemd_analyze_verify() {
    let root = tempfile::tempdir().unwrap();
    let instance = systemd_escape(&["--path", "/mnt/cache"]);
    assert_eq!(instance, "mnt-cache");
    for (name, unit, path, user) in
        [("system", system_unit(), SYSTEM_BIN, false), ("user", user_unit(), USER_BIN, true)]
    {
        for key in ["ExecStart", "ExecStopPost"] {
            assert!(setting(&unit, key).contains(path), "{name} unit: {key} does not run {path}");
        }
        let out = verify_copy(&unit, path, BIN, &root.path().join(name), &instance, user);
        assert!(
            out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
            "{name} unit: systemd-analyze verify: {}\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );

        let misspelled = unit.replace("Type=notify", "Tpye=notify");
        let out = verify_copy(&misspelled, path, BIN, &root.path().join(format!("{name}-key")), &instance, user);
        assert!(text(&out.stderr).contains("Unknown key"), "{name}: a misspelled key passed: {}", text(&out.stderr));
        let out = verify_copy(
            &unit,
            path,
            "/nonexistent/diskcachefs",
            &root.path().join(format!("{name}-bin")),
            &instance,
            user,
        );
        assert!(!out.status.success(), "{name}: a missing binary passed verify");
        assert!(text(&out.stderr).contains("/nonexistent/diskcachefs"), "{}", text(&out.stderr));
    }
    // The user unit runs the very same commands, with its own binary.
    let commands =
        |unit: &str, path: &str| ["ExecStart", "ExecStopPost"].map(|key| setting(unit, key).replace(path, "BIN"));
    assert_eq!(commands(&user_unit(), USER_BIN), commands(&system_unit(), SYSTEM_BIN));
    assert_eq!(setting(&user_unit(), "Type"), "notify");
    assert_eq!(setting(&user_unit(), "EnvironmentFile"), "%E/diskcachefs/%i.env");
}

/// The must-show point: the daemon started the way the unit starts it
/// (its ExecStart, with the example environment file's variables) says
/// READY=1 on `$NOTIFY_SOCKET` once the mount serves, with its pid and a
/// status; SIGTERM unmounts, STOPPING=1 arrives and it exits 0. Then the
/// restart after a crash: a SIGKILL leaves a stale mount, the unit's
/// ExecStopPost clears it, and ExecStart mounts again. After a clean stop
/// ExecStopPost says nothing.
#[test]
fn the_daemon_started_as_the_unit_says_ready_serves_and_stops() {
    let root = tempfile::tempdir().unwrap();
    let (cache, mnt) = (root.path().join("cache"), root.path().join("mnt"));
    std::fs::create_dir(&mnt).unwrap();
    let UnitCommands { start, stop_post, stop_post_may_fail, env } = unit_commands(&mnt, &cache);
    let notify_path = root.path().join("notify");
    let notify = bind_socket(&notify_path);
    let stderr = root.path().join("stderr");

    let mut daemon = Daemon::child(start_as_the_unit(&start, &env, &notify_path, &stderr), &mnt);
    let ready = receive(&notify, "READY=1");
    let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
    let lines: Vec<&str> = ready.lines().collect();
    assert_eq!(
        lines,
        [
            "READY=1",
            &format!("STATUS=serving {} at {}", cache.display(), mnt.display()),
            &format!("MAINPID={}", daemon.pid.unwrap())
        ],
        "{}",
        log()
    );
    assert!(is_mounted(&mnt), "READY=1 before the mount was there");
    // The environment file's OPTIONS reached the daemon (--allow-other).
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let line = mounts.lines().find(|l| l.split(' ').nth(1) == mnt.to_str()).unwrap();
    assert!(line.contains("allow_other"), "{line}");
    Cache::open(&cache)
        .unwrap()
        .set(&Key::Str("greeting".into()), &Value::Bytes(b"hello".to_vec()), None, None)
        .unwrap();
    assert_eq!(std::fs::read(mnt.join("keys/greeting")).unwrap(), b"hello");

    daemon.signal(libc::SIGTERM);
    assert_eq!(receive(&notify, "STOPPING=1"), "STOPPING=1");
    let status = daemon.wait().unwrap();
    assert!(status.success(), "exit status {status}:\n{}", log());
    assert!(!is_mounted(&mnt), "still mounted after SIGTERM");
    assert!(stop_post_may_fail, "ExecStopPost= has no '-': a failure there would fail the unit");
    let out = run_quietly(&stop_post);
    assert!(out.status.success() && out.stderr.is_empty(), "ExecStopPost after a clean stop: {}", text(&out.stderr));
    // Without --if-mounted it would have been an error (exit 2).
    let out = Command::new(BIN).arg("umount").arg(&mnt).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not a mount point"), "{}", text(&out.stderr));

    // A crash, and the restart systemd makes of it.
    let mut daemon = Daemon::child(start_as_the_unit(&start, &env, &notify_path, &stderr), &mnt);
    assert!(receive(&notify, "READY=1").starts_with("READY=1\n"));
    daemon.signal(libc::SIGKILL);
    daemon.wait();
    assert_eq!(errno_of(std::fs::read_dir(&mnt)), libc::ENOTCONN, "a killed daemon leaves a stale mount");
    let out = run_quietly(&stop_post);
    assert!(out.status.success(), "ExecStopPost after a crash: {}", text(&out.stderr));
    assert!(!is_mounted(&mnt), "ExecStopPost left the stale mount");
    let mut daemon = Daemon::child(start_as_the_unit(&start, &env, &notify_path, &stderr), &mnt);
    assert!(receive(&notify, "READY=1").starts_with("READY=1\n"), "{}", log());
    assert_eq!(std::fs::read(mnt.join("keys/greeting")).unwrap(), b"hello");
    daemon.signal(libc::SIGTERM);
    assert_eq!(receive(&notify, "STOPPING=1"), "STOPPING=1");
    assert!(daemon.wait().unwrap().success(), "{}", log());
}

/// A start that cannot mount (the mount point is missing) tells
/// `$NOTIFY_SOCKET` why, as the status systemctl shows, and exits 2 (which
/// the unit does not restart: RestartPreventExitStatus=2).
#[test]
fn a_failing_start_says_why_on_the_notify_socket_and_exits_2() {
    let root = tempfile::tempdir().unwrap();
    let (cache, mnt) = (root.path().join("cache"), root.path().join("missing"));
    let UnitCommands { start, env, .. } = unit_commands(&mnt, &cache);
    assert_eq!(setting(&system_unit(), "RestartPreventExitStatus"), "2");
    let notify_path = root.path().join("notify");
    let notify = bind_socket(&notify_path);
    let stderr = root.path().join("stderr");
    let mut daemon = Daemon::child(start_as_the_unit(&start, &env, &notify_path, &stderr), &mnt);
    let message = receive(&notify, "STATUS=failed");
    assert_eq!(message, format!("STATUS=failed: mount point {}: no such directory", mnt.display()));
    let status = daemon.wait().unwrap();
    assert_eq!(status.code(), Some(2), "{status}");
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(log.contains(&format!("diskcachefs: mount point {}: no such directory", mnt.display())), "{log}");
    notify.set_nonblocking(true).unwrap();
    assert!(notify.recv(&mut [0u8; 64]).is_err(), "a failed start said more than its status");
}

/// The device and inode of a file, as `$JOURNAL_STREAM` writes them.
fn stream_id(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    format!("{}:{}", meta.dev(), meta.ino())
}

/// Whether a line holds env_logger's time (`[2026-12-02T05:05:38Z ...`).
fn has_time(line: &str) -> bool {
    line.as_bytes()
        .windows(11)
        .any(|w| w[..4].iter().all(u8::is_ascii_digit) && w[4] == b'-' && w[7] == b'-' && w[10] == b'T')
}

/// Under systemd, with standard error connected to the journal
/// (`$JOURNAL_STREAM` naming it; here a file standing in for the
/// journal's stream), each line carries sd-daemon(3)'s priority and no
/// time: `<6>` for info, `<4>` for a warning (the notify socket is not
/// there), `<3>` for the failure the command ends with. With
/// `$JOURNAL_STREAM` naming another stream (a `--daemon`'s child inherits
/// the variable, not the stream), env_logger's own form.
#[test]
fn under_the_journal_log_lines_carry_priorities_and_no_times() {
    let root = tempfile::tempdir().unwrap();
    let (cache, mnt) = (root.path().join("cache"), root.path().join("mnt"));
    std::fs::create_dir(&mnt).unwrap();
    let stderr = root.path().join("journal");
    std::fs::write(&stderr, b"").unwrap();
    let journal = stream_id(&stderr);
    let run = |mnt: &Path, journal_stream: &str| {
        let file = std::fs::OpenOptions::new().append(true).open(&stderr).unwrap();
        let child = Command::new(BIN)
            .arg("mount")
            .arg(&cache)
            .arg(mnt)
            .env("RUST_LOG", "info")
            .env("JOURNAL_STREAM", journal_stream)
            .env("NOTIFY_SOCKET", root.path().join("nobody-listens"))
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Daemon::child(child, mnt)
    };

    let mut daemon = run(&mnt, &journal);
    let start = Instant::now();
    while !is_mounted(&mnt) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not mounted: {}",
            std::fs::read_to_string(&stderr).unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(mnt.join("keys/k"), b"v").unwrap();
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().unwrap().success());
    let missing = root.path().join("missing");
    let status = run(&missing, &journal).wait().unwrap();
    assert_eq!(status.code(), Some(2));

    let log = std::fs::read_to_string(&stderr).unwrap();
    for line in log.lines() {
        let priority = line.strip_prefix('<').and_then(|l| l.split_once('>')).map(|(p, _)| p);
        assert!(matches!(priority, Some("3" | "4" | "6" | "7")), "a line without a priority: {line:?}\n{log}");
        assert!(!has_time(line), "a time in a journal line: {line:?}");
    }
    let has = |want: &str| log.lines().any(|l| l.starts_with(want));
    assert!(has(&format!("<6>serving {} with", mnt.display())), "{log}");
    assert!(has("<6>passthrough: "), "{log}");
    assert!(has("<4>could not tell $NOTIFY_SOCKET of the mount"), "{log}");
    assert!(has("<6>signal 15: unmounting"), "{log}");
    assert!(has(&format!("<3>diskcachefs: mount point {}: no such directory", missing.display())), "{log}");

    // Another stream than the one $JOURNAL_STREAM names: no prefixes.
    std::fs::write(&stderr, b"").unwrap();
    let (dev, ino) = journal.split_once(':').unwrap();
    let other = format!("{dev}:{}", ino.parse::<u64>().unwrap() + 1);
    let status = run(&missing, &other).wait().unwrap();
    assert_eq!(status.code(), Some(2));
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(
        log.lines().any(|l| l == format!("diskcachefs: mount point {}: no such directory", missing.display())),
        "{log}"
    );
    assert!(log.lines().any(|l| l.contains(" WARN ") && has_time(l)), "env_logger's form: {log}");
    assert!(!log.contains("<3>") && !log.contains("<4>"), "{log}");
}

/// `mount --daemon ARGS CACHE MNT` with RUST_LOG=info (and `env`): its
/// output, and the daemon's pid from the line it logs once the mount is
/// ready.
fn mount_daemon(cache: &Path, mnt: &Path, args: &[&str], env: &[(&str, &Path)]) -> (Output, Option<u32>) {
    let out = Command::new(BIN)
        .arg("mount")
        .arg("--daemon")
        .args(args)
        .arg(cache)
        .arg(mnt)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let pid = text(&out.stderr)
        .lines()
        .find_map(|l| l.split_once(" daemon ").and_then(|(_, r)| r.split_once(' ')).and_then(|(p, _)| p.parse().ok()));
    (out, pid)
}

/// Removes a file (and its directory, if this test made it and it is
/// empty) on drop.
struct RemoveOnDrop(PathBuf, Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        if let Some(dir) = &self.1 {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A `--daemon` without `--log-file` used to send its log to /dev/null.
/// Now it goes to syslog when /dev/log is there, else to the default log
/// file the README names (/var/log/diskcachefs/NAME.log as root,
/// $XDG_STATE_HOME/diskcachefs/NAME.log otherwise, NAME the mount point
/// as `systemd-escape --path` writes it); the parent says where with
/// RUST_LOG=info. What the daemon logs at INIT (its passthrough mode)
/// and at its end must arrive there.
#[test]
fn a_daemon_without_a_log_file_logs_to_syslog_or_its_default_log_file() {
    let root = tempfile::tempdir().unwrap();
    let (cache, mnt) = (root.path().join("cache"), root.path().join("mnt"));
    std::fs::create_dir(&mnt).unwrap();
    let state = root.path().join("state");
    let name = systemd_escape(&["--path", mnt.to_str().unwrap()]);
    let syslog_here = diskcachefs::logging::is_socket(Path::new("/dev/log"));
    let as_root = unsafe { libc::geteuid() } == 0;
    let expected = if as_root {
        PathBuf::from(format!("/var/log/diskcachefs/{name}.log"))
    } else {
        state.join(format!("diskcachefs/{name}.log"))
    };
    let log_dir = expected.parent().unwrap().to_path_buf();
    let _remove = RemoveOnDrop(expected.clone(), (!log_dir.exists()).then(|| log_dir.clone()));

    let (out, pid) = mount_daemon(&cache, &mnt, &[], &[("XDG_STATE_HOME", &state)]);
    let _unmount = UnmountOnDrop(mnt.clone());
    let mut daemon = Daemon { child: None, pid, mnt: mnt.clone() };
    assert!(out.status.success(), "mount --daemon: {}", text(&out.stderr));
    let said = text(&out.stderr);
    let pid = pid.unwrap_or_else(|| panic!("no daemon pid in {said:?}"));
    std::fs::write(mnt.join("keys/k"), b"v").unwrap();
    let umount = Command::new(BIN).arg("umount").arg(&mnt).output().unwrap();
    assert!(umount.status.success(), "{}", text(&umount.stderr));
    daemon.wait();

    if syslog_here {
        // This machine has a syslog: the daemon was told to use it.
        assert!(said.contains("logging to syslog (/dev/log)"), "{said}");
        assert!(!expected.exists(), "a log file beside syslog: {}", expected.display());
    } else {
        assert!(said.contains(&format!("logging to {}", expected.display())), "{said}");
        let log = std::fs::read_to_string(&expected).unwrap_or_else(|e| panic!("{}: {e}", expected.display()));
        assert!(log.contains("passthrough: "), "no INIT line in the default log file:\n{log}");
        assert!(log.contains(&format!("unmounted {}", mnt.display())), "{log}");
        // The file is the daemon's (pid), not the parent's.
        assert!(!log.contains(&format!("daemon {pid} serving")), "{log}");
    }
}

/// `--syslog=SOCKET` (and `-o syslog=SOCKET` from mount(8) and fstab)
/// sends the daemon's log to a syslog socket, here one the test binds:
/// one datagram a record, `<PRI>diskcachefs[PID]: message` with facility
/// daemon (info 30, error 27) and the daemon's pid; a failed start's
/// reason arrives there too. A SOCKET that is no socket is refused
/// before anything starts.
#[test]
fn syslog_takes_the_log_as_datagrams_on_its_socket() {
    let root = tempfile::tempdir().unwrap();
    let (cache, mnt) = (root.path().join("cache"), root.path().join("mnt"));
    std::fs::create_dir(&mnt).unwrap();
    let socket_path = root.path().join("log");
    let syslog = bind_socket(&socket_path);
    let option = format!("--syslog={}", socket_path.display());

    let (out, pid) = mount_daemon(&cache, &mnt, &[&option], &[]);
    let _unmount = UnmountOnDrop(mnt.clone());
    let mut daemon = Daemon { child: None, pid, mnt: mnt.clone() };
    assert!(out.status.success(), "mount --daemon --syslog: {}", text(&out.stderr));
    let pid = pid.unwrap_or_else(|| panic!("no daemon pid in {:?}", text(&out.stderr)));
    assert!(text(&out.stderr).contains(&format!("logging to syslog ({})", socket_path.display())));
    let serving = format!("serving {} with 8 FUSE threads", mnt.display());
    let seen = receive_all_of(&syslog, &["passthrough: ", &serving]);
    let prefix = format!("diskcachefs[{pid}]: ");
    for message in &seen {
        assert!(message.starts_with("<30>") || message.starts_with("<28>"), "{message:?}");
        assert!(message[4..].starts_with(&prefix), "not the daemon's: {message:?}");
        assert!(!message.ends_with('\n') && !has_time(message), "{message:?}");
    }
    assert!(seen.iter().any(|m| m == &format!("<30>{prefix}{serving}")), "{seen:#?}");
    let umount = Command::new(BIN).arg("umount").arg(&mnt).output().unwrap();
    assert!(umount.status.success(), "{}", text(&umount.stderr));
    receive_until(&syslog, &format!("unmounted {}", mnt.display()));
    daemon.wait();

    // A failed start: the parent says why, and so does syslog.
    let missing = root.path().join("missing");
    let (out, _) = mount_daemon(&cache, &missing, &[&option], &[]);
    assert_eq!(out.status.code(), Some(2));
    let reason = format!("mount point {}: no such directory", missing.display());
    assert!(text(&out.stderr).contains(&reason), "{}", text(&out.stderr));
    let seen = receive_until(&syslog, &reason);
    assert!(seen.last().unwrap().starts_with("<27>diskcachefs["), "{seen:#?}");

    // From mount(8): -o syslog=SOCKET.
    let source = format!("{BIN}#{}", cache.display());
    let out = Command::new("mount")
        .args(["-t", "fuse", &source])
        .arg(&mnt)
        .args(["-o", &format!("nodev,syslog={}", socket_path.display())])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success(), "mount(8): {}", text(&out.stderr));
    receive_until(&syslog, &format!("serving {} with", mnt.display()));
    let umount = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(umount.success());
    receive_until(&syslog, &format!("unmounted {}", mnt.display()));

    // Not a socket: refused, nothing mounted.
    let not_socket = root.path().join("not-a-socket");
    std::fs::write(&not_socket, b"").unwrap();
    let (out, _) = mount_daemon(&cache, &mnt, &[&format!("--syslog={}", not_socket.display())], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("not a socket"), "{}", text(&out.stderr));
    assert!(!is_mounted(&mnt));
}

/// The log file's name is the unit's instance name: our escaping is
/// `systemd-escape --path`'s, on names that need it.
#[test]
fn the_log_file_name_escapes_the_mount_point_as_systemd_escape_does() {
    for path in [
        "/mnt/cache",
        "/",
        "/srv/my-cache",
        "/.hidden/x",
        "/a b/c\\d",
        "/caché/über",
        "/x/./y//z/",
        "/a:b_c.d",
        "/a/.b",
    ] {
        assert_eq!(
            diskcachefs::logging::escape_path(Path::new(path)),
            systemd_escape(&["--path", path]),
            "escaping {path:?}"
        );
    }
}

/// The README's fstab line with `x-systemd.automount`: systemd's fstab
/// generator makes a .mount and an .automount unit of it (pulled in by
/// local-fs.target), both pass `systemd-analyze verify`, and the line
/// mounts through mount(8) (what the .mount unit runs on first access).
#[test]
fn the_readme_fstab_line_makes_an_automount_and_mounts() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let mut lines = readme.lines().skip_while(|l| *l != "```fstab").skip(1);
    let line = lines.next().expect("a ```fstab block in the README");
    assert!(line.contains("x-systemd.automount"), "{line}");
    let root = tempfile::tempdir().unwrap();
    let (cache, mnt) = (root.path().join("cache"), root.path().join("mnt"));
    std::fs::create_dir(&mnt).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.len(), 6, "{line}");
    assert_eq!(fields[0], format!("{SYSTEM_BIN}#/var/cache/myapp"), "{line}");
    assert_eq!(fields[1], "/mnt/cache", "{line}");
    // The paths are the test's, and so is the log (a --daemon's default
    // log file is outside the test's directory).
    let log = root.path().join("daemon.log");
    let ours = line
        .replace(&format!("{SYSTEM_BIN}#/var/cache/myapp"), &format!("{BIN}#{}", cache.display()))
        .replace("/mnt/cache", mnt.to_str().unwrap())
        .replace("x-systemd.automount", &format!("x-systemd.automount,log_file={}", log.display()));
    let fstab = root.path().join("fstab");
    std::fs::write(&fstab, format!("{ours}\n")).unwrap();

    let out_dirs = ["normal", "early", "late"].map(|d| root.path().join(d));
    for d in &out_dirs {
        std::fs::create_dir(d).unwrap();
    }
    let generator = Command::new("/usr/lib/systemd/system-generators/systemd-fstab-generator")
        .args(&out_dirs)
        .env("SYSTEMD_FSTAB", &fstab)
        .output()
        .expect("systemd-fstab-generator (apt-get install systemd)");
    assert!(generator.status.success(), "{}", text(&generator.stderr));
    let name = systemd_escape(&["--path", mnt.to_str().unwrap()]);
    let units = &out_dirs[0];
    let mount_unit = std::fs::read_to_string(units.join(format!("{name}.mount"))).unwrap();
    let automount = std::fs::read_to_string(units.join(format!("{name}.automount"))).unwrap();
    assert!(mount_unit.contains(&format!("What={BIN}#{}", cache.display())), "{mount_unit}");
    assert!(mount_unit.contains("Type=fuse\n"), "{mount_unit}");
    assert!(automount.contains(&format!("Where={}", mnt.display())), "{automount}");
    assert!(
        units.join(format!("local-fs.target.wants/{name}.automount")).exists(),
        "the automount is not started at boot"
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join(format!("{name}.mount")))
        .arg(units.join(format!("{name}.automount")))
        .output()
        .unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "verify: {}{}", text(&out.stdout), text(&out.stderr));

    let out = Command::new("mount").arg("-T").arg(&fstab).arg(&mnt).output().unwrap();
    let _unmount = UnmountOnDrop(mnt.clone());
    assert!(out.status.success(), "mount -T: {}", text(&out.stderr));
    std::fs::write(mnt.join("keys/from-fstab"), b"automounted").unwrap();
    let options = std::fs::read_to_string("/proc/mounts").unwrap();
    let options = options.lines().find(|l| l.split(' ').nth(1) == mnt.to_str()).unwrap().to_string();
    let umount = Command::new("umount").arg(&mnt).status().unwrap();
    assert!(options.contains("allow_other"), "{options}");
    assert!(umount.success());
    assert!(std::fs::read_to_string(&log).is_ok(), "the line's daemon did not log to {}", log.display());
    let start = Instant::now();
    while Cache::open(&cache).unwrap().get(&Key::Str("from-fstab".into())).unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(10), "the write through the fstab mount is not in the cache");
        std::thread::sleep(Duration::from_millis(50));
    }
}
