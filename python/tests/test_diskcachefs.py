"""The wheel as its users get it: installed by pip in a fresh venv, no Rust.

Run by scripts/test-wheel, which builds the wheel with scripts/wheel,
installs it with python/requirements-test.txt in a new venv, and runs this
suite with every directory holding cargo or rustc taken off PATH and
$DISKCACHEFS_WHEEL naming the wheel. Mounts for real (root and /dev/fuse).
After every test no mount is left under the test's directories and no
process runs the installed binary.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskcache  # type: ignore[import-untyped]
import pytest

import diskcachefs
import diskcachefs.__main__

SOURCE = Path(__file__).resolve().parents[1] / "diskcachefs"


def fuse_mounts() -> list[str]:
    """The mount points of every FUSE file system in this mount namespace."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        fstype = fields[fields.index("-", 6) + 1]
        if fstype == "fuse" or fstype.startswith("fuse."):
            points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
    return points


def running_binaries(binary: str) -> list[int]:
    """The processes whose executable is ``binary``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "exe") == binary:
                    pids.append(int(entry.name))
            except OSError:  # gone meanwhile, or a kernel thread
                pass
    return pids


@pytest.fixture(scope="session")
def binary() -> str:
    return os.path.realpath(diskcachefs.find_bin())


@pytest.fixture(autouse=True)
def nothing_left_behind(binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test leaves no mount under the test directories and no daemon."""
    base = str(tmp_path_factory.getbasetemp().resolve())
    yield
    assert [p for p in fuse_mounts() if p.startswith(base)] == []
    assert running_binaries(binary) == []


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A python-diskcache cache with a bytes value and a str value in it."""
    directory = tmp_path / "cache"
    with diskcache.Cache(str(directory)) as cache:
        cache.set("report.csv", b"a,b\n1,2\n")
        cache.set("greeting", "hello from diskcache")
    return directory


@pytest.fixture
def mnt(tmp_path: Path) -> Path:
    directory = tmp_path / "mnt"
    directory.mkdir()
    return directory


def test_no_rust_toolchain_is_on_path() -> None:
    assert shutil.which("cargo") is None
    assert shutil.which("rustc") is None


def test_the_package_and_binary_are_the_venvs(binary: str) -> None:
    assert sys.prefix != sys.base_prefix
    assert Path(diskcachefs.__file__).resolve().is_relative_to(Path(sysconfig.get_path("purelib")).resolve())
    assert diskcachefs.find_bin() == os.path.join(sysconfig.get_path("scripts"), "diskcachefs")
    assert Path(binary).is_relative_to(Path(sys.prefix).resolve())


def test_python_m_runs_the_binary_with_its_exit_status(cache_dir: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "diskcachefs", "--version"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"diskcachefs {diskcachefs.__version__}\n")
    got = subprocess.run([sys.executable, "-m", "diskcachefs", "get", str(cache_dir), "report.csv"], capture_output=True)
    assert (got.returncode, got.stdout) == (0, b"a,b\n1,2\n")
    miss = subprocess.run([sys.executable, "-m", "diskcachefs", "get", str(cache_dir), "absent"], capture_output=True)
    assert miss.returncode == 1
    bad = subprocess.run(
        [sys.executable, "-m", "diskcachefs", "get", str(cache_dir / "none"), "k"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr == f"diskcachefs: {cache_dir / 'none'}: no python-diskcache cache here (no cache.db)\n"


def test_python_m_execs_the_binary_in_its_own_process(cache_dir: Path, mnt: Path, tmp_path: Path) -> None:
    """The daemon that `python -m diskcachefs mount` starts has the Python
    process's pid (os.execv), and its exit status is the command's."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(30)
        process = subprocess.Popen(
            [sys.executable, "-m", "diskcachefs", "mount", str(cache_dir), str(mnt)],
            env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")},
        )
        try:
            message = sock.recv(4096).decode()
            assert f"\nMAINPID={process.pid}" in message
            assert message.startswith("READY=1\n")
            assert (mnt / "keys" / "report.csv").read_bytes() == b"a,b\n1,2\n"
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
    assert str(mnt) not in fuse_mounts()


def test_reads_a_key_diskcache_wrote(cache_dir: Path, mnt: Path) -> None:
    with diskcachefs.mount(cache_dir, mnt) as m:
        assert (m.cache_dir, m.mountpoint, m.read_only) == (cache_dir, mnt, False)
        assert m.status == f"serving {cache_dir} at {mnt}"
        assert str(mnt) in fuse_mounts()
        assert Path(f"/proc/{m.pid}").exists()
        assert (m.mountpoint / "keys" / "report.csv").read_bytes() == b"a,b\n1,2\n"
        assert (m.mountpoint / "keys" / "greeting").read_text() == "hello from diskcache"
        pid = m.pid
    assert str(mnt) not in fuse_mounts()
    assert not Path(f"/proc/{pid}").exists()


def test_a_file_written_through_the_mount_is_read_by_diskcache(cache_dir: Path, mnt: Path) -> None:
    with diskcachefs.mount(str(cache_dir), str(mnt)) as m:
        (m.mountpoint / "keys" / "reply").write_bytes(b"written as a file\n")
        # Stored as a bytes value when the file is closed.
        with diskcache.Cache(str(cache_dir)) as cache:
            assert cache.get("reply") == b"written as a file\n"
            assert cache.check() == []
    with diskcache.Cache(str(cache_dir)) as cache:
        assert cache.get("reply") == b"written as a file\n"


def test_a_read_only_mount_refuses_writes(cache_dir: Path, mnt: Path) -> None:
    with diskcachefs.mount(cache_dir, mnt, read_only=True) as m:
        assert m.read_only
        assert b"--read-only" in Path(f"/proc/{m.pid}/cmdline").read_bytes().split(b"\0")
        assert (m.mountpoint / "keys" / "report.csv").read_bytes() == b"a,b\n1,2\n"
        for name in ("new", "report.csv"):
            with pytest.raises(OSError) as refused:
                (m.mountpoint / "keys" / name).write_bytes(b"x")
            assert refused.value.errno == errno.EROFS
    with diskcache.Cache(str(cache_dir)) as cache:
        assert "new" not in cache
        assert cache.get("report.csv") == b"a,b\n1,2\n"


def test_a_missing_mount_point_raises_the_daemons_message(cache_dir: Path, tmp_path: Path) -> None:
    absent = tmp_path / "absent"
    with pytest.raises(diskcachefs.MountError) as failed:
        with diskcachefs.mount(cache_dir, absent):
            pytest.fail("the block ran without a mount")
    assert isinstance(failed.value, OSError)
    assert str(failed.value) == f"mount point {absent}: no such directory"
    assert failed.value.message == str(failed.value)
    assert failed.value.returncode == 2
    assert failed.value.log == f"diskcachefs: mount point {absent}: no such directory\n"


def test_a_refused_option_value_raises_the_command_lines_message(cache_dir: Path, mnt: Path) -> None:
    """No readiness message comes (the command line is refused before any
    mount): the message is what the daemon printed before exiting."""
    with pytest.raises(diskcachefs.MountError) as failed:
        with diskcachefs.mount(cache_dir, mnt, threads=0):
            pytest.fail("the block ran without a mount")
    assert "invalid value '0' for '--threads <THREADS>': must be between 1 and 1024" in str(failed.value)
    assert failed.value.returncode == 2
    with pytest.raises(
        diskcachefs.MountError,
        match=r"invalid value '-1' for '--attr-timeout <ATTR_TIMEOUT>': must be a number of seconds from 0 to 86400",
    ):
        with diskcachefs.mount(cache_dir, mnt, attr_timeout=-1):
            pytest.fail("the block ran without a mount")


def test_options_become_the_mount_commands_flags(cache_dir: Path, mnt: Path) -> None:
    with diskcachefs.mount(
        cache_dir,
        mnt,
        attr_timeout=0.5,
        max_inodes=500,
        threads=2,
        timeout=5,
        allow_other=True,
        no_passthrough=True,
        stale_as_miss=True,
        open_requests=False,
        log_file=None,
    ) as m:
        argv = Path(f"/proc/{m.pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        assert argv[1:] == [
            "mount",
            "--attr-timeout=0.5",
            "--max-inodes=500",
            "--threads=2",
            "--timeout=5",
            "--allow-other",
            "--no-passthrough",
            "--stale-as-miss",
            "--",
            str(cache_dir),
            str(mnt),
        ]
        assert (m.mountpoint / "keys" / "report.csv").read_bytes() == b"a,b\n1,2\n"


def test_remote_options_reach_the_daemon_and_ops_remote_shows_them(cache_dir: Path, mnt: Path) -> None:
    # A port nothing listens on: the mount still serves (a remote problem
    # is a miss), and ops/remote counts the refused calls.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    with diskcachefs.mount(
        cache_dir, mnt, remote=url, remote_prefix=["team/", "shared/"], remote_pull_interval=0.2, log_file=None
    ) as m:
        argv = Path(f"/proc/{m.pid}/cmdline").read_bytes().decode().split("\0")[:-1]
        assert argv[2:7] == [
            f"--remote={url}",
            "--remote-prefix=team/",
            "--remote-prefix=shared/",
            "--remote-pull-interval=0.2",
            "--",
        ]
        assert (m.mountpoint / "keys" / "report.csv").read_bytes() == b"a,b\n1,2\n"
        assert not (m.mountpoint / "keys" / "team" / "missing").exists()
        deadline = time.monotonic() + 10
        while True:
            status = json.loads((m.mountpoint / "ops" / "remote").read_text())
            if status["errors"] >= 1:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
        assert status["url"] == url
        assert "cannot reach the server" in status["last_error"]["message"]


def test_syslog_sends_the_daemons_log_to_the_socket_given(
    cache_dir: Path, mnt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUST_LOG", "info")
    path = tmp_path / "syslog.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    try:
        with diskcachefs.mount(cache_dir, mnt, syslog=path) as m:
            argv = Path(f"/proc/{m.pid}/cmdline").read_bytes().decode().split("\0")[:-1]
            assert f"--syslog={path}" in argv
            records: list[str] = []
            while not any("passthrough:" in r for r in records):
                records.append(sock.recv(65536).decode())
            line = next(r for r in records if "passthrough:" in r)
            # <PRI>diskcachefs[PID]: ..., facility daemon (3), level info (6).
            assert line.startswith(f"<{3 * 8 + 6}>") and f"diskcachefs[{m.pid}]: " in line, line
    finally:
        sock.close()


def test_the_option_table_is_the_mount_commands(binary: str) -> None:
    help_text = subprocess.run([binary, "mount", "--help"], capture_output=True, text=True, check=True).stdout
    flags = {name.replace("-", "_") for name in re.findall(r"--([a-z][a-z0-9-]*)", help_text)} - {"help"}
    assert flags == set(diskcachefs.MOUNT_OPTIONS) | {"read_only", "daemon"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"colour": True}, "unexpected keyword argument 'colour'; its options are read_only, no_passthrough"),
        ({"daemon": True}, "unexpected keyword argument 'daemon': it runs the daemon itself"),
        ({"allow_other": 1}, "allow_other= is a flag: True or False, not 1"),
        ({"attr_timeout": True}, "attr_timeout= takes a value, not True"),
        ({"threads": [2]}, r"threads= takes a value, not \[2\]"),
        ({"log_file": 3}, "log_file= is a path, not 3"),
    ],
)
def test_a_bad_option_raises_type_error_before_anything_starts(
    cache_dir: Path, mnt: Path, binary: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        diskcachefs.mount(cache_dir, mnt, **options)
    assert running_binaries(binary) == []


def test_a_bad_timeout_raises_value_error(cache_dir: Path, mnt: Path) -> None:
    with pytest.raises(ValueError, match="ready_timeout= must be a positive number of seconds, not 0"):
        diskcachefs.mount(cache_dir, mnt, ready_timeout=0)


def test_an_exception_in_the_block_unmounts(cache_dir: Path, mnt: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        with diskcachefs.mount(cache_dir, mnt) as m:
            pid = m.pid
            assert str(mnt) in fuse_mounts()
            1 / 0
    assert str(mnt) not in fuse_mounts()
    assert not Path(f"/proc/{pid}").exists()


def test_a_killed_daemons_mount_is_cleared_on_exit(cache_dir: Path, mnt: Path) -> None:
    with diskcachefs.mount(cache_dir, mnt) as m:
        os.kill(m.pid, signal.SIGKILL)
        while Path(f"/proc/{m.pid}/exe").exists():  # a zombie has no exe
            time.sleep(0.01)
        assert str(mnt) in fuse_mounts()  # stale: the kernel answers ENOTCONN
    assert str(mnt) not in fuse_mounts()


def test_a_daemon_not_ready_in_time_is_killed(cache_dir: Path, mnt: Path, tmp_path: Path) -> None:
    """A daemon that hangs before it is ready (its cache directory lies in
    a mount whose daemon is stopped) is killed after ready_timeout."""
    stuck_mnt = tmp_path / "stuck-mnt"
    stuck_mnt.mkdir()
    with diskcachefs.mount(cache_dir, stuck_mnt) as stuck:
        os.kill(stuck.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(diskcachefs.MountError, match=f"^mount point {mnt}: not ready within 1 s$"):
                with diskcachefs.mount(stuck_mnt / "keys" / "sub", mnt, ready_timeout=1, stop_timeout=1):
                    pytest.fail("the block ran without a mount")
            assert time.monotonic() - started < 10
            assert running_binaries(os.path.realpath(diskcachefs.find_bin())) == [stuck.pid]
        finally:
            os.kill(stuck.pid, signal.SIGCONT)
        assert (stuck.mountpoint / "keys" / "report.csv").read_bytes() == b"a,b\n1,2\n"


def test_log_file_takes_the_daemons_log(
    cache_dir: Path, mnt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "daemon.log"
    log.write_text("an earlier line\n")
    monkeypatch.setenv("RUST_LOG", "info")
    with diskcachefs.mount(cache_dir, mnt, log_file=log) as m:
        assert (m.mountpoint / "keys" / "report.csv").read_bytes() == b"a,b\n1,2\n"
    text = log.read_text()
    assert text.startswith("an earlier line\n")
    assert "requests served: " in text


def test_a_missing_binary_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no binary in any scripts directory nor on PATH, find_bin says
    where it looked, and `python -m diskcachefs` says so with status 2."""
    empty = tmp_path / "empty"
    empty.mkdir()
    real_get_path = sysconfig.get_path

    def get_path(name: str, scheme: str | None = None) -> str:
        return str(empty) if name == "scripts" else real_get_path(name, scheme) if scheme else real_get_path(name)

    monkeypatch.setattr(sysconfig, "get_path", get_path)
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(FileNotFoundError) as missing:
        diskcachefs.find_bin()
    assert missing.value.errno == errno.ENOENT
    assert missing.value.strerror == (
        f"the diskcachefs binary is not installed: not in {empty}, {empty}, "
        f"{Path(diskcachefs.__file__).parents[1] / 'bin'} nor on PATH (`pip install diskcachefs` installs it)"
    )
    monkeypatch.setattr(sys, "argv", ["diskcachefs", "--version"])
    with pytest.raises(SystemExit) as exited:
        diskcachefs.__main__.main()
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"diskcachefs: {missing.value.strerror}\n"


def wheel_path() -> Path:
    wheel = os.environ.get("DISKCACHEFS_WHEEL")
    assert wheel, "DISKCACHEFS_WHEEL names the wheel under test (scripts/test-wheel sets it)"
    return Path(wheel)


def test_the_wheel_holds_only_the_binary_the_package_and_its_metadata(binary: str) -> None:
    wheel = wheel_path()
    version = diskcachefs.__version__
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        shipped_binary = z.read(f"diskcachefs-{version}.data/scripts/diskcachefs")
    package = {n for n in names if n.startswith("diskcachefs/")}
    data = {n for n in names if n.startswith(f"diskcachefs-{version}.data/")}
    metadata = {n for n in names if n.startswith(f"diskcachefs-{version}.dist-info/")}
    assert data == {f"diskcachefs-{version}.data/scripts/diskcachefs"}
    source = {f"diskcachefs/{p.name}" for p in SOURCE.iterdir() if p.is_file()}
    assert package == source
    assert {"diskcachefs/py.typed", "diskcachefs/__init__.py", "diskcachefs/__main__.py"} <= package
    assert names == package | data | metadata
    assert {f"diskcachefs-{version}.dist-info/{n}" for n in ("METADATA", "WHEEL", "RECORD")} <= metadata
    assert not [n for n in names if "stress" in n or "tests/" in n]
    assert hashlib.sha256(shipped_binary).digest() == hashlib.sha256(Path(binary).read_bytes()).digest()


# The libraries every manylinux policy lets a wheel take from the system.
MANYLINUX_LIBRARIES = {
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
    "ld-linux-x86-64.so.2",
}


def test_auditwheel_finds_no_external_library() -> None:
    wheel = wheel_path()
    tag = wheel.name.removesuffix(".whl").split("-")[-1]
    assert re.fullmatch(r"manylinux_2_\d+_x86_64", tag), tag
    auditwheel = Path(sys.executable).parent / "auditwheel"
    shown = subprocess.run([str(auditwheel), "show", str(wheel)], capture_output=True, text=True, check=True)
    text = " ".join(shown.stdout.split())
    assert f'is consistent with the following platform tag: "{tag}"' in text, shown.stdout
    assert "external shared libraries are required" not in text, shown.stdout
    assert set(re.findall(r"(\S+\.so\.\d+) with versions", text)) <= MANYLINUX_LIBRARIES, shown.stdout


def test_the_binary_links_no_fuse_or_sqlite_library(binary: str) -> None:
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libraries = {line.split()[0].rsplit("/", 1)[-1] for line in ldd.splitlines() if line.strip()}
    assert libraries <= MANYLINUX_LIBRARIES | {"linux-vdso.so.1"}, ldd
