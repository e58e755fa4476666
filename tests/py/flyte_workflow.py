"""A workflow of cached tasks, run locally by the real flytekit against the
cache directory given (LocalTaskCache pointed at it), for
tests/flyte_interop.rs. Every task body appends a line to SIDE, so the test
can tell a cache hit (no line) from a run.

  flyte_workflow.py DIR SIDE run X NAME   -> JSON: task names and results
  flyte_workflow.py DIR SIDE square X     -> square(x=X) alone
  flyte_workflow.py DIR SIDE clear        -> LocalTaskCache.clear()
"""
import json, sys
from flytekit import task, workflow

from flytekit.core.local_cache import LocalTaskCache
from flyte_local import ran  # sets LocalTaskCache up (sys.argv[1], [2])


@task(cache=True, cache_version="1")
def square(x: int) -> int:
    ran(f'square {x}')
    return x * x


@task(cache=True, cache_version="2", cache_ignore_input_vars=("noise",))
def greet(name: str, noise: int) -> str:
    ran(f'greet {name}')
    return f'hello {name}'


@workflow
def wf(x: int, name: str) -> (int, str):
    return square(x=x), greet(name=name, noise=x)


cmd = sys.argv[3]
if cmd == 'run':
    s, g = wf(x=int(sys.argv[4]), name=sys.argv[5])
    print(json.dumps({'square': [square.name, s], 'greet': [greet.name, g]}))
elif cmd == 'square':
    print(json.dumps(square(x=int(sys.argv[4]))))
elif cmd == 'clear':
    LocalTaskCache.clear()
