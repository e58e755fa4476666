"""Mounting from Python: :func:`mount`, a context manager around the daemon.

The daemon runs in the foreground as a child process (``diskcachefs mount
CACHE_DIR MOUNTPOINT [flags]``, never ``--daemon``). It learns where to
report readiness from ``$NOTIFY_SOCKET``, systemd's readiness protocol: a Unix
datagram socket this module binds in a private temporary directory. Once the
mount is visible the daemon sends ``READY=1`` with a ``STATUS=serving ...``
line; if the mount fails it sends ``STATUS=failed: MESSAGE``, prints
``diskcachefs: MESSAGE`` on its standard error and exits with status 2.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, Literal

from diskcachefs._bin import find_bin

__all__ = ["MOUNT_OPTIONS", "Mount", "MountError", "MountOption", "mount"]

StrPath = str | os.PathLike[str]

#: What a keyword option of :func:`mount` may be given as.
MountOption = bool | int | float | str | os.PathLike[str] | Sequence[str] | None

#: The options of ``diskcachefs mount`` that :func:`mount` takes as keyword
#: arguments (the flag's name with ``_`` for ``-``), and their kind: a
#: ``"flag"`` is given as ``True`` (the bare flag) or ``False``/``None``
#: (left out); a ``"flag_or_value"`` as either (``syslog=True`` logs to
#: ``/dev/log``, ``syslog="/run/my.sock"`` to that socket); a ``"value"`` as
#: a number or a string (``--name=VALUE``), or
#: ``None`` (left out, the daemon's default); a ``"values"`` as one string
#: or a list of them (each its own ``--name=VALUE``). ``read_only`` is a parameter of
#: its own; ``--daemon`` is never given (the helper runs the daemon itself).
#: ``log_file`` is the helper's: the daemon's standard error goes to that
#: file instead of a private one. The wheel's tests check this table
#: against ``diskcachefs mount --help``.
MOUNT_OPTIONS: Mapping[str, Literal["flag", "flag_or_value", "value", "values"]] = MappingProxyType(
    {
        "no_passthrough": "flag",
        "stale_as_miss": "flag",
        "io_uring": "flag",
        "no_io_uring": "flag",
        "open_requests": "flag",
        # A new cache in a directory that holds other files.
        "create": "flag",
        "allow_other": "flag",
        "attr_timeout": "value",
        "max_inodes": "value",
        "threads": "value",
        "timeout": "value",
        "log_file": "value",
        "syslog": "flag_or_value",
        # The remote tier (docs/REMOTE.md): remote="redis://host:6379/0".
        "remote": "value",
        "remote_mode": "value",
        "remote_namespace": "value",
        "remote_signing_key_file": "value",
        # One str, or a list of them: each is one --remote-tag.
        "remote_tag": "values",
        "remote_prefix": "values",
        "remote_endpoint": "value",
        "remote_region": "value",
        "remote_timeout": "value",
        "remote_pull_interval": "value",
        "remote_queue": "value",
    }
)

#: What is kept of the daemon's standard error for a :class:`MountError`.
_LOG_TAIL = 64 * 1024


class MountError(OSError):
    """A mount that failed, or that the daemon did not make ready in time.

    A subclass of :class:`OSError`, as the failure is the system's (a
    missing directory, no ``/dev/fuse``, no permission): code that handles
    file-system errors handles this one too. Its ``errno`` is ``None``: the
    daemon reports a message, not a number.

    Attributes:
        message: the daemon's own message (``str(error)`` is the same), e.g.
            ``"mount point /mnt/x: no such directory"``.
        returncode: the daemon's exit status, or ``None`` if it had to be
            killed.
        log: the end of what the daemon wrote on its standard error.
    """

    def __init__(self, message: str, *, returncode: int | None = None, log: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.returncode = returncode
        self.log = log

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Mount:
    """A mount made by :func:`mount`, valid inside its ``with`` block.

    Attributes:
        cache_dir: the cache directory served (absolute).
        mountpoint: where it is mounted (absolute); ``mountpoint / "keys"``
            holds one file per key.
        pid: the daemon's process id.
        read_only: whether it was mounted ``--read-only``.
        status: the daemon's status line, ``serving CACHE_DIR at MOUNTPOINT``.
    """

    cache_dir: Path
    mountpoint: Path
    pid: int
    read_only: bool
    status: str


def _flags(read_only: bool, options: Mapping[str, MountOption]) -> list[str]:
    """The command-line flags for ``options``; TypeError for a bad one."""
    flags = ["--read-only"] if read_only else []
    for name, value in options.items():
        kind = MOUNT_OPTIONS.get(name)
        if kind is None:
            if name == "daemon":
                raise TypeError("mount() got an unexpected keyword argument 'daemon': it runs the daemon itself")
            raise TypeError(
                f"mount() got an unexpected keyword argument {name!r}; "
                f"its options are read_only, {', '.join(MOUNT_OPTIONS)}"
            )
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if kind == "flag" or (kind == "flag_or_value" and value is True):
            if value is not True:
                raise TypeError(f"mount() option {name}= is a flag: True or False, not {value!r}")
            flags.append(flag)
        elif kind == "values":
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
                raise TypeError(f"mount() option {name}= takes a str or a list of str, not {value!r}")
            flags.extend(f"{flag}={v}" for v in items)
        elif name == "log_file":
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"mount() option log_file= is a path, not {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float, str, os.PathLike)):
            raise TypeError(f"mount() option {name}= takes a value, not {value!r}")
        else:
            # One argument, so that a negative number is not read as a flag.
            flags.append(f"{flag}={os.fspath(value) if isinstance(value, os.PathLike) else value}")
    return flags


def mount(
    cache_dir: StrPath,
    mountpoint: StrPath,
    read_only: bool = False,
    *,
    ready_timeout: float = 30.0,
    stop_timeout: float = 10.0,
    **options: MountOption,
) -> contextlib.AbstractContextManager[Mount]:
    """Mount ``cache_dir`` at ``mountpoint`` for the length of a ``with`` block.

    ::

        with diskcachefs.mount("~/.cache/myapp", "/mnt/cache") as m:
            print((m.mountpoint / "keys" / "report.csv").read_text())

    Entering the block starts ``diskcachefs mount`` in the foreground and
    returns (yields a :class:`Mount`) once the mount is ready; leaving it,
    by any way, unmounts: SIGTERM to the daemon, which unmounts cleanly
    once open files are closed; if it has not exited within
    ``stop_timeout`` seconds, or the mount is still there, ``diskcachefs
    umount`` and SIGKILL. The daemon runs in a session of its own, so a
    Ctrl-C reaches Python, which then unmounts on the way out. If the
    Python process dies without unwinding, the daemon keeps serving
    (``diskcachefs umount MOUNTPOINT`` ends it).

    Args:
        cache_dir: the python-diskcache directory (created with diskcache's
            defaults if missing, unless ``read_only``).
        mountpoint: an existing directory.
        read_only: mount ``--read-only``.
        ready_timeout: seconds to wait for the mount to be ready; past it
            the daemon is killed and :class:`MountError` raised.
        stop_timeout: seconds to wait for the daemon to exit on SIGTERM.
        **options: the flags of ``diskcachefs mount`` (see
            :data:`MOUNT_OPTIONS`), by name with ``_`` for ``-``:
            ``attr_timeout=1.0`` gives ``--attr-timeout=1.0``,
            ``allow_other=True`` gives ``--allow-other``, ``False`` or
            ``None`` leaves the flag out. ``log_file=PATH`` appends the
            daemon's standard error (its log; ``RUST_LOG`` in the
            environment sets the level) to PATH instead of a private
            temporary file.

    Raises:
        TypeError: an unknown option or a value of the wrong type (when
            ``mount()`` is called, before anything starts).
        ValueError: a timeout that is not a positive number.
        FileNotFoundError: the binary is not installed (:func:`find_bin`).
        MountError: on entering the block, if the daemon refused the mount,
            with the daemon's own message (``"mount point /mnt/x: no such
            directory"``), or if it was not ready in time.
    """
    flags = _flags(read_only, options)
    for name, seconds in (("ready_timeout", ready_timeout), ("stop_timeout", stop_timeout)):
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (0 < seconds < math.inf):
            raise ValueError(f"mount() {name}= must be a positive number of seconds, not {seconds!r}")
    log_file = options.get("log_file")
    log_path = Path(os.fspath(log_file)) if isinstance(log_file, (str, os.PathLike)) else None
    binary = find_bin()
    return _mounted(
        binary,
        Path(os.path.abspath(os.path.expanduser(os.fspath(cache_dir)))),
        Path(os.path.abspath(os.path.expanduser(os.fspath(mountpoint)))),
        read_only,
        flags,
        log_path,
        float(ready_timeout),
        float(stop_timeout),
    )


@contextlib.contextmanager
def _mounted(
    binary: str,
    cache_dir: Path,
    mountpoint: Path,
    read_only: bool,
    flags: list[str],
    log_file: Path | None,
    ready_timeout: float,
    stop_timeout: float,
) -> Iterator[Mount]:
    """The mount's whole life; see :func:`mount`."""
    # How the kernel will name the mount in /proc/self/mountinfo, resolved
    # before it exists (afterwards the path leads into the mount).
    target = os.path.realpath(mountpoint)
    with contextlib.ExitStack() as stack:
        private = stack.enter_context(tempfile.TemporaryDirectory(prefix="diskcachefs-mount-"))
        notify_path = os.path.join(private, "notify")
        if len(notify_path.encode()) > 100:  # past sun_path's 108 bytes
            private = stack.enter_context(tempfile.TemporaryDirectory(prefix="diskcachefs-mount-", dir="/tmp"))
            notify_path = os.path.join(private, "notify")
        sock = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
        sock.bind(notify_path)
        # A file, not a pipe: a pipe nobody reads would fill up over a long
        # mount and stall the daemon's logging.
        log = stack.enter_context(open(log_file if log_file is not None else os.path.join(private, "log"), "ab+"))
        log_start = os.fstat(log.fileno()).st_size
        env = {**os.environ, "NOTIFY_SOCKET": notify_path}
        argv = [binary, "mount", *flags, "--", str(cache_dir), str(mountpoint)]
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True
        )
        try:
            status = _wait_ready(process, sock, log, log_start, mountpoint, ready_timeout)
            yield Mount(cache_dir, mountpoint, process.pid, read_only, status)
        except BaseException:
            _stop(process, binary, mountpoint, target, stop_timeout)
            raise
        left = _stop(process, binary, mountpoint, target, stop_timeout)
        if left:
            raise MountError(left, returncode=process.returncode, log=_log_tail(log, log_start))


def _wait_ready(
    process: subprocess.Popen[bytes],
    sock: socket.socket,
    log: IO[bytes],
    log_start: int,
    mountpoint: Path,
    ready_timeout: float,
) -> str:
    """Waits for the daemon's readiness message; returns its status line.

    Raises :class:`MountError` with the daemon's message if it failed or
    exited first, or if it said nothing within ``ready_timeout`` seconds.
    """
    deadline = time.monotonic() + ready_timeout
    while True:
        # A message sent just before the daemon exited is still read first.
        readable, _, _ = select.select([sock], [], [], 0 if process.poll() is not None else 0.05)
        if readable:
            fields = _fields(sock.recv(65536))
            if fields.get("READY") == "1":
                return fields.get("STATUS", "")
            status = fields.get("STATUS", "")
            if status.startswith("failed: "):
                returncode = _reap(process, 5.0)
                raise MountError(status[len("failed: ") :], returncode=returncode, log=_log_tail(log, log_start))
            continue
        returncode = process.poll()
        if returncode is not None:
            text = _log_tail(log, log_start)
            raise MountError(_message(text, returncode), returncode=returncode, log=text)
        if time.monotonic() >= deadline:
            raise MountError(
                f"mount point {mountpoint}: not ready within {ready_timeout:g} s", log=_log_tail(log, log_start)
            )


def _fields(datagram: bytes) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of one sd_notify message."""
    fields = {}
    for line in datagram.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    return fields


def _message(log: str, returncode: int) -> str:
    """The daemon's message in what it wrote before exiting."""
    for line in reversed(log.splitlines()):
        if line.startswith("diskcachefs: "):
            return line[len("diskcachefs: ") :]
    if log.strip():  # the command line's own errors (clap's: "error: ...")
        return log.strip()
    return f"diskcachefs mount exited with status {returncode} before the mount was ready"


def _log_tail(log: IO[bytes], start: int) -> str:
    """What the daemon wrote since ``start``, its last ``_LOG_TAIL`` bytes."""
    size = os.fstat(log.fileno()).st_size
    offset = max(start, size - _LOG_TAIL)
    return os.pread(log.fileno(), size - offset, offset).decode(errors="replace")


def _reap(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The daemon's exit status once it exits, or None after ``timeout``."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def _stop(process: subprocess.Popen[bytes], binary: str, mountpoint: Path, target: str, timeout: float) -> str:
    """Ends the daemon and its mount; returns what is left ("" for nothing).

    SIGTERM first (the daemon detaches the mount and exits once open files
    are closed); then, if it is still running or its mount still listed,
    ``diskcachefs umount`` (which also clears the stale mount of a killed
    daemon) and SIGKILL.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        _reap(process, timeout)
    if process.poll() is not None and not _is_mounted(target):
        return ""
    _umount(binary, mountpoint)
    if _reap(process, 1.0) is None:
        process.kill()
        process.wait()
    if _is_mounted(target):
        _umount(binary, mountpoint)
    if _is_mounted(target):
        return f"mount point {mountpoint}: still mounted after the daemon was stopped"
    return ""


def _umount(binary: str, mountpoint: Path) -> None:
    """``diskcachefs umount MOUNTPOINT``, its failure left to the caller's check."""
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        subprocess.run(
            [binary, "umount", str(mountpoint)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )


def _is_mounted(target: str) -> bool:
    """Whether a FUSE file system is mounted at ``target`` (a resolved path)."""
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split(b" ")
        try:
            separator = fields.index(b"-", 6)
        except ValueError:
            continue
        fstype = fields[separator + 1] if separator + 1 < len(fields) else b""
        if _unescape(fields[4]) == os.fsencode(target) and (fstype == b"fuse" or fstype.startswith(b"fuse.")):
            return True
    return False


def _unescape(field: bytes) -> bytes:
    """A mountinfo path field with its octal escapes (``\\040``) decoded."""
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field)
