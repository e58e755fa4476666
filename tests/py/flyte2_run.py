"""Runs a cached Flyte 2 task locally, so tests get a real Flyte 2 `task_cache` row.

Usage (with the .venv-flyte2 interpreter from scripts/setup-venv-flyte2):

    HOME=$tmp; cd $tmp
    .venv-flyte2/bin/python tests/py/flyte2_run.py [--persist-runs] SIDE_EFFECT_FILE X

Defines `square(x: int) -> int` with `cache="auto"`, whose body appends one line to
SIDE_EFFECT_FILE each time it really runs (a cache hit adds none), runs it in local mode
(`flyte.init()`, no cluster) with `flyte.with_runcontext(mode="local", ...).run(square, x=X)`
(what `flyte.run(square, x=X)` does, plus a raw-data folder inside HOME), and prints one JSON line:
{"result": X*X, "cache_db": "<the cache.db Flyte used>"}.

The caller sets HOME to an empty folder and runs from there, so no config.yaml is found
elsewhere: the cache is then $HOME/.flyte/local-cache/cache.db.

DISKCACHEFS_FLYTE2_EDITED=1 in the environment defines `square` with another body (the same
task, edited): Flyte 2's "auto" cache version then differs, so equal inputs miss.

--persist-runs turns on Flyte 2's local run records (`flyte.init(local_persistence=True)`,
the same as `local: {persistence: true}` in a config file read by `flyte.init_from_config`):
each run then also writes rows to the `runs` table of the same cache.db (two per run: the
run's `a0` and the task's action, with `cache_enabled`/`cache_hit`). Without it, Flyte 2.12.1
creates the `runs` table but leaves it empty. The env var FLYTE_LOCAL_PERSISTENCE is read only
by `flyte.init_from_config()` and only when a config file was found, and it is taken as a raw
string (so even "false" turns it on).
"""

import argparse
import json
import os
from pathlib import Path

import flyte

env = flyte.TaskEnvironment(name="diskcachefs_flyte2")


if not os.environ.get("DISKCACHEFS_FLYTE2_EDITED"):

    @env.task(cache="auto")
    def square(x: int) -> int:
        # The path comes through the environment, not an input, so it is not part
        # of the cache key; and not a global default, so the source (the cache
        # version) stays the same whatever file the caller names.
        with open(os.environ["DISKCACHEFS_FLYTE2_SIDE_EFFECT"], "a") as f:
            f.write(f"square({x}) ran\n")
        return x * x

else:
    # The same task edited (DISKCACHEFS_FLYTE2_EDITED set): another source,
    # so another cache version ("auto" hashes the source), equal inputs.
    @env.task(cache="auto")
    def square(x: int) -> int:
        with open(os.environ["DISKCACHEFS_FLYTE2_SIDE_EFFECT"], "a") as f:
            f.write(f"square({x}) ran\n")
        result = x * x
        return result


def cache_db_path() -> str:
    try:
        from flyte._persistence._db import CACHE_LOCATION, LocalDB

        return str(LocalDB._get_cache_dir() / Path(CACHE_LOCATION).name)
    except Exception:  # private API moved: fall back to the documented default
        return str(Path("~/.flyte/local-cache/cache.db").expanduser())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persist-runs", action="store_true", help="also record local runs in the `runs` table")
    ap.add_argument("side_effect_file")
    ap.add_argument("x", type=int)
    args = ap.parse_args()

    os.environ["DISKCACHEFS_FLYTE2_SIDE_EFFECT"] = os.path.abspath(args.side_effect_file)
    flyte.init(local_persistence=args.persist_runs)
    # Local mode writes the task's raw data under raw_data_path (default: a fresh
    # /tmp/tmpXXXXXXXX folder per run, never removed): keep it inside HOME.
    # Flyte still makes empty /tmp/flyte/metadata/<run>/<action> folders; that
    # path is hard-coded (no public setting moves it).
    raw = Path.home() / ".flyte-run-data"
    run = flyte.with_runcontext(mode="local", raw_data_path=str(raw)).run(square, x=args.x)
    run.wait()
    out = run.outputs()
    result = out[0] if isinstance(out, (tuple, list)) else out
    print(json.dumps({"result": int(result), "cache_db": cache_db_path()}))


if __name__ == "__main__":
    main()
