"""`scripts/bench readable`: reading a cache's pickles as people and tools do,
side by side in one run: Python's own way (python-diskcache unpickling every
value, then `json.dumps` of it: what a user writes today to look inside),
the raw bytes through the mount (`cat keys/...`: the floor for any reading
through FUSE), the `json/` view (first read renders, the second finds the
renderings kept), `grep -r` over it, `diskcachefs show` per key and
`diskcachefs audit` of the whole cache.

    readable.py WORK BIN

The values are N litellm-style responses: a pydantic v2 model nesting two
more and a tz-aware datetime (about 700 bytes pickled, protocol 5), the shape
dspy 3.0 caches. Each figure is the best of 3 runs, in milliseconds for all
N values, except the first read of `json/`, which renders every value once
(later reads find the renderings kept). `json/` has a TTL of 0 and direct
I/O: every read asks the daemon, whatever the kernel has cached.
"""
import datetime
import json
import os
import subprocess
import sys
import time

import diskcache
from pydantic import BaseModel

N = 1000


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class Message(BaseModel):
    role: str
    content: str


class Response(BaseModel):
    id: str
    created: datetime.datetime
    model: str
    choices: list[Message]
    usage: Usage


def fill(cache):
    c = diskcache.Cache(cache)
    for i in range(N):
        c[f'r{i:04}'] = Response(
            id=f'chatcmpl-{i}',
            created=datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
            model='gpt-5-mini',
            choices=[Message(role='assistant', content=f'answer number {i} ' + 'x' * 200)],
            usage=Usage(prompt_tokens=12, completion_tokens=40),
        )
    c.close()


def best(f, runs=3):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times) * 1000


def python_way(cache):
    c = diskcache.Cache(cache)
    for k in c:
        json.dumps(c[k].model_dump(mode='json'))
    c.close()


def cat_all(directory):
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), 'rb') as f:
            f.read()


def main():
    work, binary = sys.argv[1], sys.argv[2]
    cache, mnt = os.path.join(work, 'cache'), os.path.join(work, 'mnt')
    fill(cache)
    os.makedirs(mnt)
    subprocess.run([binary, 'mount', '--daemon', '--log-file', mnt + '.log', cache, mnt], check=True)
    try:
        rows = []
        rows.append(('python-diskcache: unpickle every value, json.dumps(model_dump())', best(lambda: python_way(cache))))
        rows.append(('cat keys/* (the pickles\' bytes through the mount)', best(lambda: cat_all(os.path.join(mnt, 'keys')))))
        # The first read renders; later ones find the renderings kept.
        subprocess.run(['sh', '-c', 'echo 3 > /proc/sys/vm/drop_caches'], check=False)
        t = time.perf_counter()
        cat_all(os.path.join(mnt, 'json'))
        rows.append(('cat json/* (first read: every value rendered)', (time.perf_counter() - t) * 1000))
        rows.append(('cat json/* (renderings kept)', best(lambda: cat_all(os.path.join(mnt, 'json')))))
        grep = lambda: subprocess.run(['grep', '-rlF', 'answer number 999 ', os.path.join(mnt, 'json')], check=True, capture_output=True)
        rows.append(('grep -rl TEXT json/', best(grep)))
        show = lambda: [subprocess.run([binary, 'show', cache, f'r{i:04}'], check=True, capture_output=True) for i in range(0, N, 10)]
        rows.append((f'diskcachefs show, {N // 10} keys (a process each) x10', best(show) * 10))
        audit = lambda: subprocess.run([binary, 'audit', cache, '--allow', '__main__.*'], check=True, capture_output=True)
        rows.append(('diskcachefs audit (every value read and judged)', best(audit)))
    finally:
        subprocess.run([binary, 'umount', mnt], check=True)
    base = rows[0][1]
    print(f'| {N} pydantic responses | ms for all | vs Python\'s own |')
    print('|---|---:|---:|')
    for name, ms in rows:
        print(f'| {name} | {ms:.0f} | {ms / base:.2f}x |')


if __name__ == '__main__':
    main()
