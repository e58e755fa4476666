"""Cached flytekit tasks that return local files, run by the real flytekit
against the cache directory given (LocalTaskCache pointed at it), for the
stale-entry tests (tests/flyte_stale.rs). Task bodies append to SIDE, so a
run (a line) tells from a cache hit (none).

  flyte_files.py DIR SIDE file N     -> JSON: the returned file's local path and content
  flyte_files.py DIR SIDE square N   -> JSON: square(n) (no file in its outputs)
"""
import json, os, sys, tempfile
from flytekit import task
from flytekit.types.file import FlyteFile

from flyte_local import ran  # sets LocalTaskCache up (sys.argv[1], [2])


@task(cache=True, cache_version="1")
def make_file(n: int) -> FlyteFile:
    ran(f'make_file {n}')
    path = os.path.join(tempfile.mkdtemp(prefix='made-'), f'out{n}.txt')
    with open(path, 'w') as f:
        f.write('x' * n)
    return FlyteFile(path)


@task(cache=True, cache_version="1")
def square(n: int) -> int:
    ran(f'square {n}')
    return n * n


cmd, n = sys.argv[3], int(sys.argv[4])
if cmd == 'file':
    f = make_file(n=n)
    path = f.path
    try:
        with open(path) as r:
            content = r.read()
    except OSError as e:
        content = None
    print(json.dumps({'path': path, 'content': content}))
elif cmd == 'square':
    print(json.dumps(square(n=n)))
