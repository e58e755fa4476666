"""`scripts/bench counts [OLD_BIN]`: what three everyday commands cost the
daemon, counted (not timed): FUSE requests, SQL statements, tables-lock
takes and engine handles checked out, per command, on a plain cache and on a
16-shard FanoutCache, for this build and (if given) another build, side by
side in one run.

    counts.py WORK NEW_BIN [OLD_BIN]

The commands, each run N times on names the kernel has not seen (so every
LOOKUP reaches the daemon, as after the attribute timeout):
- `cat keys/aI/b` (python's open/read/close of a 100-byte value),
- `echo x > keys/newI` (open with O_CREAT|O_TRUNC, write, close),
- `ls -l tags/gI` (a tag of 10 entries; `ls` itself, one process per run).

The counts come from the mount's `stats` file (its `requests` section, and
the `internals` section the daemon adds with DISKCACHEFS_COUNT_SQL set),
read before and after each batch; what one read of `stats` costs is
measured the same way and taken off.
"""
import json
import os
import subprocess
import sys
import time

import diskcache

N = 50


def fill(cache, shards):
    c = diskcache.FanoutCache(cache, shards=shards) if shards else diskcache.Cache(cache)
    for i in range(N):
        c[f'a{i}/b'] = b'v' * 100
        for j in range(10):
            c.set(f't{i}-{j}', b'w', tag=f'g{i}')
    c.close()


def mount(binary, cache, mnt):
    os.makedirs(mnt, exist_ok=True)
    env = dict(os.environ, DISKCACHEFS_COUNT_SQL='1')
    subprocess.run([binary, 'mount', '--daemon', '--log-file', mnt + '.log', cache, mnt], check=True, env=env)


def unmount(binary, mnt):
    subprocess.run([binary, 'umount', mnt], check=True)
    for _ in range(100):
        if not os.path.ismount(mnt):
            return
        time.sleep(0.05)


def snapshot(mnt):
    with open(f'{mnt}/stats') as f:
        stats = json.load(f)
    ops = stats['requests']['operations']
    counts = {'requests': sum(o['count'] for o in ops.values())}
    counts.update(stats['internals'])
    return counts


def minus(a, b):
    return {k: a[k] - b[k] for k in a}


def cat(mnt, i):
    fd = os.open(f'{mnt}/keys/a{i}/b', os.O_RDONLY)
    assert os.read(fd, 4096) == b'v' * 100
    os.close(fd)


def echo(mnt, i):
    fd = os.open(f'{mnt}/keys/new{i}', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    os.write(fd, b'x\n')
    os.close(fd)


def ls_l(mnt, i):
    out = subprocess.run(['ls', '-l', f'{mnt}/tags/g{i}'], capture_output=True, check=True, text=True)
    assert sum(1 for line in out.stdout.splitlines() if line.startswith('l')) == 10


COMMANDS = [('cat keys/a/b', cat), ('echo x > keys/new', echo), ('ls -l tags/grp (10 entries)', ls_l)]


def measure(binary, work, label, shards):
    cache, mnt = f'{work}/{label}-cache', f'{work}/{label}-mnt'
    fill(cache, shards)
    mount(binary, cache, mnt)
    try:
        # One read of `stats` on its own: its own cost, taken off below.
        a = snapshot(mnt)
        b = snapshot(mnt)
        read_cost = minus(b, a)
        out = {}
        for name, command in COMMANDS:
            before = snapshot(mnt)
            for i in range(N):
                command(mnt, i)
            after = snapshot(mnt)
            delta = minus(minus(after, before), read_cost)
            out[name] = {k: v / N for k, v in delta.items()}
        return out
    finally:
        unmount(binary, mnt)


def main():
    work, binaries = sys.argv[1], [('this build', sys.argv[2])]
    if len(sys.argv) > 3:
        binaries.insert(0, ('before', sys.argv[3]))
    results = {}
    for kind, shards in [('plain cache', 0), ('FanoutCache (16 shards)', 16)]:
        for build, binary in binaries:
            label = f'{len(results)}'
            results[(kind, build)] = measure(binary, work, label, shards)
    print('| command | cache | build | FUSE requests | SQL statements | tables-lock takes | handles checked out |')
    print('|---|---|---|---:|---:|---:|---:|')
    for name, _ in COMMANDS:
        for (kind, build), res in results.items():
            r = res[name]
            print(f"| `{name}` | {kind} | {build} | {r['requests']:.1f} | {r['sql_statements']:.1f} | "
                  f"{r['tables_locks']:.1f} | {r['handle_checkouts']:.1f} |")


if __name__ == '__main__':
    main()
