"""Two cached tasks run locally by the real flytekit against the cache
directory given, for tests/remote_*.rs: `square` returns an int (shareable);
`write_file` returns a FlyteFile, which flytekit keeps under its local raw
output directory, so its cached outputs name a local path (unshareable).
Every task body appends a line to SIDE, so a cache hit leaves no line.

  remote_workflow.py DIR SIDE X   -> JSON: {"square": X*X, "file": text}
"""
import json, os, sys
from flytekit import task, workflow
from flytekit.types.file import FlyteFile

from flyte_local import ran  # sets LocalTaskCache up (sys.argv[1], [2])


@task(cache=True, cache_version="1")
def square(x: int) -> int:
    ran(f'square {x}')
    return x * x


@task(cache=True, cache_version="1")
def write_file(x: int) -> FlyteFile:
    ran(f'write {x}')
    path = os.path.join(flytekit_dir(), f'out-{x}.txt')
    with open(path, 'w') as f:
        f.write(f'file {x}\n')
    return FlyteFile(path)


def flytekit_dir():
    import flytekit
    return flytekit.current_context().working_directory


@workflow
def wf(x: int) -> (int, FlyteFile):
    return square(x=x), write_file(x=x)


s, f = wf(x=int(sys.argv[3]))
with open(f) as fh:
    text = fh.read()
print(json.dumps({'square': s, 'file': text}))
