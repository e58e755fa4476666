"""Finding the ``diskcachefs`` binary that the wheel installed."""

from __future__ import annotations

import errno
import os
import shutil
import sysconfig

__all__ = ["find_bin"]


def _script_dirs() -> list[str]:
    """Where pip puts a wheel's scripts, most specific first."""
    dirs = [sysconfig.get_path("scripts")]
    try:
        dirs.append(sysconfig.get_path("scripts", scheme=sysconfig.get_preferred_scheme("user")))
    except KeyError:  # an interpreter built without a user scheme
        pass
    # `pip install --target DIR` puts the package in DIR and the scripts
    # in DIR/bin.
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dirs.append(os.path.join(package_root, "bin"))
    return dirs


def find_bin() -> str:
    """Return the path of the installed ``diskcachefs`` binary.

    It is looked for where pip installs a wheel's scripts, as ruff's
    ``find_ruff_bin`` does: the scripts directory of the running
    interpreter's scheme (a venv's ``bin/``, or the one ``pipx`` and
    ``uv tool`` make), then that of the user scheme (``pip install
    --user``: ``~/.local/bin``), then ``bin/`` beside the package (``pip
    install --target DIR``), and last every directory on ``PATH``.

    Raises:
        FileNotFoundError: none of them holds an executable
            ``diskcachefs``; the message names where it looked.
    """
    exe = "diskcachefs" + (sysconfig.get_config_var("EXE") or "")
    dirs = _script_dirs()
    for directory in dirs:
        path = os.path.join(directory, exe)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    found = shutil.which(exe)
    if found is not None:
        return os.path.abspath(found)
    raise FileNotFoundError(
        errno.ENOENT,
        f"the diskcachefs binary is not installed: not in {', '.join(dirs)} nor on PATH "
        "(`pip install diskcachefs` installs it)",
        exe,
    )
