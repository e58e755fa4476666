"""`scripts/bench edits OLD_BIN`: the write path of this build against another
(OLD_BIN, e.g. the previous release), side by side in one run: each binary
mounts a cache of its own with the same keys, and the workloads alternate
between the two mounts within each round.

    edits.py WORK NEW_BIN OLD_BIN [ROUNDS]

Workloads (N operations each, microseconds per operation, the median of
the rounds): a new 1 KiB key (O_CREAT|O_EXCL, write, close), a rewrite of a
1 KiB bytes key in place (O_TRUNC), a rewrite of an int key in place (`18\\n`:
the edit rule keeps it an int), and an editor's save (a new file renamed
over a str key with a tag: the edit rule keeps its type and tag).
"""
import os
import statistics
import subprocess
import sys
import time

import diskcache

N = 400


def mount(binary, cache, mnt):
    os.makedirs(mnt, exist_ok=True)
    subprocess.run([binary, 'mount', '--daemon', '--log-file', mnt + '.log', cache, mnt], check=True)


def fill(cache):
    c = diskcache.Cache(cache)
    for i in range(N):
        c[f'b{i}'] = b'x' * 1024
        c[f'n{i}'] = i
        c.set(f's{i}', 'text ' * 200, tag='t')
    c.close()


def new_keys(keys, r):
    for i in range(N):
        fd = os.open(f'{keys}/new{r}-{i}', os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        os.write(fd, b'y' * 1024)
        os.close(fd)


def rewrite_bytes(keys, r):
    for i in range(N):
        fd = os.open(f'{keys}/b{i}', os.O_WRONLY | os.O_TRUNC)
        os.write(fd, b'z' * 1024)
        os.close(fd)


def rewrite_int(keys, r):
    for i in range(N):
        fd = os.open(f'{keys}/n{i}', os.O_WRONLY | os.O_TRUNC)
        os.write(fd, b'%d\n' % (i + r))
        os.close(fd)


def editor_save(keys, r):
    for i in range(N):
        tmp = f'{keys}/.s{i}.swp'
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        os.write(fd, b'edit ' * 200)
        os.close(fd)
        os.rename(tmp, f'{keys}/s{i}')


WORKLOADS = [
    ('a new 1 KiB key (create, write, close)', new_keys),
    ('a 1 KiB bytes key rewritten in place (O_TRUNC)', rewrite_bytes),
    ('an int key rewritten in place (`18\\n`)', rewrite_int),
    ("an editor's save over a tagged str key (new file, rename)", editor_save),
]


def main():
    work, new_bin, old_bin = sys.argv[1:4]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    targets = {'this build': new_bin, 'OLD_BIN': old_bin}
    mnts = {}
    for label, binary in targets.items():
        cache = os.path.join(work, label.replace(' ', '-') + '-cache')
        mnt = os.path.join(work, label.replace(' ', '-') + '-mnt')
        fill(cache)
        mount(binary, cache, mnt)
        mnts[label] = mnt
    times = {(w, t): [] for w, _ in WORKLOADS for t in targets}
    try:
        for r in range(rounds):
            for w, fn in WORKLOADS:
                for t in targets:
                    start = time.perf_counter()
                    fn(os.path.join(mnts[t], 'keys'), r)
                    times[(w, t)].append((time.perf_counter() - start) / N * 1e6)
    finally:
        for mnt in mnts.values():
            subprocess.run([new_bin, 'umount', mnt])
    print(f'| workload ({N} a round, {rounds} rounds, median us/op) | OLD_BIN | this build | ratio |')
    print('|---|---:|---:|---:|')
    for w, _ in WORKLOADS:
        old = statistics.median(times[(w, 'OLD_BIN')])
        new = statistics.median(times[(w, 'this build')])
        print(f'| {w} | {old:.0f} | {new:.0f} | {new / old:.2f}x |')
    ranges = '; '.join(
        f'{w.split(" (")[0]} {t}: {min(v):.0f}-{max(v):.0f}' for (w, t), v in times.items()
    )
    print(f'\n(Ranges over the rounds, us/op: {ranges}.)')


if __name__ == '__main__':
    main()
