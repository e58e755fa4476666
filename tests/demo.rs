//! scripts/demo, run for real as a newcomer runs it (with the dev profile,
//! which the tests have already built, so that its cargo build costs
//! nothing): it says what it does before each long step, fills a cache from
//! Python, uses it as files through a mount, ends with the command that
//! mounts one's own cache, and leaves nothing mounted; and with tools
//! missing, it names all of them in one message and builds and mounts
//! nothing.

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary the tests built, and so the one the demo builds and runs
/// with the same profile and target directory.
fn built_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_diskcachefs"))
}

/// Runs `cmd` with stdout and stderr into one file, as a terminal shows
/// them (in the order written); returns the exit code and that text.
fn run_combined(mut cmd: Command, dir: &Path) -> (Option<i32>, String) {
    let out = dir.join("demo.out");
    let file = File::create(&out).unwrap();
    let status =
        cmd.stdin(Stdio::null()).stdout(file.try_clone().unwrap()).stderr(file).status().expect("runs scripts/demo");
    (status.code(), std::fs::read_to_string(&out).unwrap())
}

/// Mount points in /proc/self/mountinfo at or under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == dir || m.starts_with(&format!("{dir}/")))
        .map(str::to_string)
        .collect()
}

/// The index of the first line containing `needle`, with the output in the
/// message if there is none.
fn line_of(lines: &[&str], needle: &str, out: &str) -> usize {
    lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle:?} in:\n{out}"))
}

/// Where a program is on the test's own PATH.
fn on_path(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}

/// A directory whose only programs are bash and dirname (what the demo
/// needs to get to its check), as links: no cargo, python3, getfattr or
/// fusermount3.
fn bare_path(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["bash", "dirname"] {
        std::os::unix::fs::symlink(on_path(tool), bin.join(tool)).unwrap();
    }
    bin
}

/// Takes off what cargo sets for a test process (CARGO, CARGO_PKG_NAME,
/// CARGO_MANIFEST_DIR, ...): a user's shell has none of it, and build
/// scripts that watch these variables (ring's) would make the demo's cargo
/// build rebuild them, and the next plain build rebuild them again.
fn without_cargos_test_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_tests = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_"].iter().any(|p| name.starts_with(p))
            || ["CARGO", "CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "CARGO_RUSTC_CURRENT_DIR"]
                .contains(&&*name);
        if set_for_tests {
            cmd.env_remove(&*name);
        }
    }
}

#[test]
fn the_demo_announces_each_long_step_uses_the_cache_as_files_and_leaves_nothing_mounted() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = built_binary();
    let profile_dir = bin.parent().unwrap();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev",
        other => other,
    };
    // A home with a Flyte local cache and no DSPy cache: the closing lines
    // name the one that exists only. (Cargo and rustup keep theirs.)
    let real_home = PathBuf::from(std::env::var_os("HOME").unwrap());
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".flyte/local-cache")).unwrap();
    let mut cmd = Command::new(repo().join("scripts/demo"));
    cmd.env("DISKCACHEFS_DEMO_PROFILE", profile)
        .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap())
        .env("HOME", &home)
        .env("CARGO_HOME", std::env::var_os("CARGO_HOME").unwrap_or_else(|| real_home.join(".cargo").into()))
        .env("RUSTUP_HOME", std::env::var_os("RUSTUP_HOME").unwrap_or_else(|| real_home.join(".rustup").into()))
        .env_remove("SUDO_USER");
    without_cargos_test_env(&mut cmd);
    let (code, out) = run_combined(cmd, tmp.path());
    assert_eq!(code, Some(0), "scripts/demo failed:\n{out}");
    let lines: Vec<&str> = out.lines().collect();

    // Each long step is announced before anything it prints, and both
    // before the mount.
    let venv = line_of(&lines, "setting up the pinned Python peers (python-diskcache, flytekit) in .venv", &out);
    let build = line_of(&lines, &format!("building diskcachefs ({profile} profile)"), &out);
    let finished = line_of(&lines, "Finished", &out);
    let mount = line_of(&lines, "scripts/demo: mounting ", &out);
    assert!(venv < build && build < finished && finished < mount, "steps out of order:\n{out}");
    if let Some(installed) = lines.iter().position(|l| l.starts_with("setup-venv:")) {
        assert!(venv < installed && installed < build, "the venv's output before its announcement:\n{out}");
    }
    assert!(lines[venv].contains("about 2 minutes the first time"), "{out}");
    assert!(lines[build].contains("a few minutes the first time"), "{out}");
    // Python filled the cache before the mount.
    let filled = line_of(&lines, "python-diskcache filled ", &out);
    assert!(filled < mount, "{out}");

    // The file operations happened, through the mount.
    let cat = line_of(&lines, "/keys/greeting", &out);
    assert!(lines[cat].starts_with("$ cat ") && cat > mount, "{out}");
    assert_eq!(lines[cat + 1], "hello from python-diskcache", "{out}");
    assert!(out.contains("user.diskcache.tag=\"auth\""), "getfattr showed the tag:\n{out}");
    assert!(out.contains("b'written as a file\\n'"), "python read the file written through the mount:\n{out}");
    assert!(out.contains("job-1   (pulled the front item)"), "{out}");
    assert!(out.contains("consistent: python-diskcache's Cache.check() finds nothing"), "{out}");

    // The closing lines: the command for one's own cache, with the binary
    // just built, and the Flyte cache that exists (and no DSPy one).
    let tail = &lines[lines.len().saturating_sub(5)..];
    let own = format!("{} mount ~/.cache/yourapp /mnt/cache --daemon", bin.display());
    assert!(tail.iter().any(|l| l.contains(&own)), "no {own:?} at the end:\n{out}");
    let flyte = format!("{} mount {}/.flyte/local-cache ", bin.display(), home.display());
    assert!(tail.iter().any(|l| l.contains(&flyte)), "no {flyte:?} at the end:\n{out}");
    assert!(!out.contains(".dspy_cache"), "a DSPy line for a cache that does not exist:\n{out}");

    // Unmounted and removed: the demo's directory, from its mount line
    // ("scripts/demo: mounting CACHE at WORK/mnt").
    let mnt = lines[mount].rsplit(" at ").next().unwrap();
    let work = Path::new(mnt).parent().unwrap();
    assert!(work.to_string_lossy().starts_with("/tmp/diskcachefs-demo."), "{out}");
    assert_eq!(mounts_under(work), Vec::<String>::new(), "the demo left a mount");
    assert!(!work.exists(), "the demo left {}", work.display());
}

#[test]
fn the_demo_names_every_missing_prerequisite_in_one_message_and_does_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let path = bare_path(tmp.path());
    let target = tmp.path().join("target");
    let mut cmd = Command::new(repo().join("scripts/demo"));
    cmd.env_clear()
        .env("PATH", &path)
        .env("HOME", tmp.path())
        .env("CARGO_TARGET_DIR", &target)
        // Within a test, $CARGO names cargo; the demo goes by PATH.
        .env("CARGO", on_path("cargo"));
    let (code, out) = run_combined(cmd, tmp.path());
    assert_eq!(code, Some(2), "{out}");
    // One message, naming each missing tool.
    assert_eq!(out.matches("scripts/demo: cannot run; missing:").count(), 1, "{out}");
    for tool in ["cargo", "python3 3.11 or newer", "getfattr", "apt-get install attr"] {
        assert!(out.contains(tool), "{tool} is not named:\n{out}");
    }
    // As root, neither /dev/fuse access nor fusermount3 is missing.
    assert!(!out.contains("fusermount3") && !out.contains("root, or"), "{out}");
    assert!(out.contains("nothing was built or mounted"), "{out}");
    assert!(!out.contains("scripts/demo: building") && !out.contains("scripts/demo: mounting"), "{out}");
    assert!(!target.exists(), "the demo built something");
}

/// The same as a user other than root (nobody, by setpriv), from a copy of
/// the script that user can read: mounting needs /dev/fuse access (where
/// the device is root's only) and fusermount3.
#[test]
fn as_a_user_the_demo_also_names_fuse_access_and_fusermount3() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = tmp.path().join("repo");
    std::fs::create_dir_all(copy.join("scripts")).unwrap();
    std::fs::copy(repo().join("scripts/demo"), copy.join("scripts/demo")).unwrap();
    let path = bare_path(tmp.path());
    let mut cmd = Command::new(on_path("setpriv"));
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(copy.join("scripts/demo"))
        .env_clear()
        .env("PATH", &path)
        .env("HOME", tmp.path());
    let (code, out) = run_combined(cmd, tmp.path());
    assert_eq!(code, Some(2), "{out}");
    assert_eq!(out.matches("scripts/demo: cannot run; missing:").count(), 1, "{out}");
    for tool in ["fusermount3", "apt-get install fuse3", "cargo", "python3 3.11 or newer", "getfattr"] {
        assert!(out.contains(tool), "{tool} is not named:\n{out}");
    }
    // Whether nobody may open /dev/fuse depends on the device's mode (read
    // after the run: tests/unprivileged.rs may make it 0666, never back).
    let mode = std::fs::metadata("/dev/fuse").unwrap().permissions().mode();
    if mode & 0o006 != 0o006 {
        assert!(out.contains("root, or read and write access to /dev/fuse"), "{out}");
    }
    assert_eq!(
        std::fs::read_dir(&copy).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>(),
        ["scripts"],
        "the demo made something"
    );
}
