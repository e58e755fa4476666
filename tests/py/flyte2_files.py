"""Cached Flyte 2 tasks that return a `flyte.io.File`, run locally by the real SDK, for the
stale-entry test of Flyte 2 (tests/flyte2_stale.rs). Modelled on flyte2_run.py (how the run is
made and where its cache is) and flyte_files.py (flytekit's counterpart).

Usage (with the .venv-flyte2 interpreter from scripts/setup-venv-flyte2):

    HOME=$tmp; TMPDIR=$tmp; cd $tmp
    .venv-flyte2/bin/python tests/py/flyte2_files.py SIDE_EFFECT_FILE local N
    .venv-flyte2/bin/python tests/py/flyte2_files.py SIDE_EFFECT_FILE raw N

`local N` runs `local_file(n: int) -> File` (`cache="auto"`): the body writes 'x' * N to a file
in a fresh `tempfile.mkdtemp()` folder (so under TMPDIR) and returns `File.from_local_sync(path)`.
`raw N` runs `raw_file(n: int) -> File`, whose body writes 'y' * N to `File.new_remote()`, a file
under the run's raw_data_path ($HOME/.flyte-run-data). Each body appends one line to
SIDE_EFFECT_FILE when it really runs (`local_file(N) ran`, `raw_file(N) ran`); a cache hit adds
none. Prints one JSON line:
{"path": the returned File's path, "content": its text or null, "error": why it could not be
read or null}.

What Flyte 2.12.1 stores (local mode, a `file` raw_data_path): both tasks' `task_cache` rows
hold outputs `{"o0": {"blob": {"uri": PATH, "format": "", "dimensionality": "SINGLE"}}}`
where PATH is a plain absolute path (no `file://`), and no copy is made: `from_local_sync`
keeps the task's own file (no upload when the raw data path is local), `new_remote` names
`RAW_DATA_PATH/<32 hex>/outN.txt`. With that file deleted, the next run is still a cache hit:
the run succeeds, the body does not run, and the File it returns names the deleted path;
reading it raises FileNotFoundError (or reads whatever file is now at that path).
"""

import argparse
import json
import os
import tempfile
from pathlib import Path

import flyte
from flyte.io import File

env = flyte.TaskEnvironment(name="diskcachefs_flyte2_files")


def ran(what: str) -> None:
    # The path comes through the environment (as in flyte2_run.py): not part of
    # the cache key, and the source (the cache version) stays the same.
    with open(os.environ["DISKCACHEFS_FLYTE2_SIDE_EFFECT"], "a") as f:
        f.write(f"{what} ran\n")


@env.task(cache="auto")
def local_file(n: int) -> File:
    ran(f"local_file({n})")
    path = os.path.join(tempfile.mkdtemp(prefix="made-"), f"out{n}.txt")
    with open(path, "w") as f:
        f.write("x" * n)
    return File.from_local_sync(path)


@env.task(cache="auto")
def raw_file(n: int) -> File:
    ran(f"raw_file({n})")
    out = File.new_remote(f"out{n}.txt")
    with out.open_sync("wb") as f:
        f.write(b"y" * n)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("side_effect_file")
    ap.add_argument("task", choices=["local", "raw"])
    ap.add_argument("n", type=int)
    args = ap.parse_args()

    os.environ["DISKCACHEFS_FLYTE2_SIDE_EFFECT"] = os.path.abspath(args.side_effect_file)
    flyte.init()
    raw = Path.home() / ".flyte-run-data"
    task = {"local": local_file, "raw": raw_file}[args.task]
    run = flyte.with_runcontext(mode="local", raw_data_path=str(raw)).run(task, n=args.n)
    run.wait()
    out = run.outputs()
    result = out[0] if isinstance(out, (tuple, list)) else out
    content, error = None, None
    try:
        with result.open_sync("rb") as f:
            content = f.read().decode()
    except OSError as e:
        error = f"{type(e).__name__}: {e}"
    print(json.dumps({"path": result.path, "content": content, "error": error}))


if __name__ == "__main__":
    main()
