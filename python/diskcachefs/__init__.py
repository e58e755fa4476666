"""diskcachefs from Python: the binary the wheel installs, and mounts.

``pip install diskcachefs`` installs the ``diskcachefs`` command (a Rust
binary that mounts a python-diskcache cache directory as files) and this
package, which finds it (:func:`find_bin`), runs it (``python -m diskcachefs
ARGS...``) and mounts with it (:func:`mount`)::

    import diskcache
    import diskcachefs

    diskcache.Cache("/tmp/cache").set("greeting", b"hello")
    with diskcachefs.mount("/tmp/cache", "/mnt/cache") as m:
        assert (m.mountpoint / "keys" / "greeting").read_bytes() == b"hello"
        (m.mountpoint / "keys" / "reply").write_bytes(b"hi")  # cache.set on close
    assert diskcache.Cache("/tmp/cache").get("reply") == b"hi"

Mounting needs ``/dev/fuse`` and, as a user other than root, ``fusermount3``
(Debian's and Ubuntu's ``fuse3`` package), which pip cannot install.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from diskcachefs._bin import find_bin
from diskcachefs._mount import MOUNT_OPTIONS, Mount, MountError, MountOption, mount

__all__ = ["MOUNT_OPTIONS", "Mount", "MountError", "MountOption", "__version__", "find_bin", "mount"]

try:
    __version__: str = version("diskcachefs")
except PackageNotFoundError:  # imported from a checkout, not installed
    __version__ = "0+unknown"
