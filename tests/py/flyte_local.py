"""What the flytekit test scripts share: flytekit's LocalTaskCache pointed
at the cache directory in sys.argv[1], and `ran(line)`, which appends a
line to the side-effect file in sys.argv[2] (a task body ran: no cache hit).
"""
import sys
from diskcache import Cache
from flytekit.core.local_cache import LocalTaskCache

LocalTaskCache._cache = Cache(sys.argv[1])
LocalTaskCache._initialized = True
SIDE = sys.argv[2]


def ran(line):
    with open(SIDE, 'a') as f:
        f.write(line + '\n')
