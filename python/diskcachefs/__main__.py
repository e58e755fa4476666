"""``python -m diskcachefs ARGS...``: the installed binary, run with ARGS.

On POSIX the binary replaces this process (``os.execv``), so its exit status,
signals and standard streams are the caller's, exactly as if
``diskcachefs ARGS...`` had been run.
"""

from __future__ import annotations

import os
import subprocess
import sys

from diskcachefs._bin import find_bin


def main() -> None:
    """Run ``diskcachefs`` with this process's arguments; never returns."""
    try:
        binary = find_bin()
    except FileNotFoundError as e:
        print(f"diskcachefs: {e.strerror}", file=sys.stderr)
        sys.exit(2)
    argv = [binary, *sys.argv[1:]]
    if os.name == "posix":
        os.execv(binary, argv)
    sys.exit(subprocess.call(argv))


if __name__ == "__main__":
    main()
