"""One client of the concurrency soak (tests/reliability_soak.rs).

  soak_client.py py|mount NAME CACHE_DIR MOUNT SECONDS OUT

`py` uses python-diskcache on CACHE_DIR; `mount` uses plain file I/O on
MOUNT. Both mix set, get, delete, rename (mount) / pop (py), incr of the
shared counter `hits`, push to and pull from the queue `soak`, and (mount)
rsync of keys/. Every operation's failure is an error, except the expected
answers (a pull from an empty queue). Writes a JSON report to OUT: errors,
incrs made, items pushed and pulled.
"""
import json, os, random, subprocess, sys, time

kind, name, cache_dir, mnt, seconds, out = sys.argv[1:7]
seconds = float(seconds)
r = random.Random(hash(name))
report = {'errors': [], 'incrs': 0, 'pushed': [], 'pulled': [], 'ops': 0}


def err(op, e):
    if len(report['errors']) < 20:
        report['errors'].append(f'{name} {op}: {e!r}')


mine = {}  # key -> value this client last stored (its own keys only)
n = 0
end = time.time() + seconds
if kind == 'py':
    import diskcache
    c = diskcache.Cache(cache_dir)
keys = mnt + '/keys'
while time.time() < end:
    n += 1
    op = r.randrange(100)
    k = f'{name}-{r.randrange(20)}'
    try:
        if op < 30:
            v = (f'{name}:{n}:'.encode() + bytes([n % 256]) * r.choice([10, 200, 50_000]))
            if kind == 'py':
                c[k] = v
            else:
                with open(f'{keys}/{k}', 'wb') as f:
                    f.write(v)
            mine[k] = v
        elif op < 50:
            if k in mine:
                if kind == 'py':
                    got = c.get(k)
                else:
                    with open(f'{keys}/{k}', 'rb') as f:
                        got = f.read()
                if got != mine[k]:
                    err('get', f'{k}: {len(got or b"")} bytes {(got or b"")[:24]!r}, not the {len(mine[k])} bytes '
                               f'{mine[k][:24]!r} stored')
        elif op < 60:
            if k in mine:
                if kind == 'py':
                    c.delete(k)
                else:
                    os.unlink(f'{keys}/{k}')
                del mine[k]
        elif op < 65:
            k2 = f'{name}-{r.randrange(20)}'
            if k in mine and k2 != k:
                if kind == 'py':
                    c[k2] = c.pop(k)
                else:
                    os.rename(f'{keys}/{k}', f'{keys}/{k2}')
                mine[k2] = mine.pop(k)
        elif op < 80:
            if kind == 'py':
                c.incr('hits')
            else:
                with open(f'{mnt}/ops/incr/hits', 'wb') as f:
                    f.write(b'1\n')
            report['incrs'] += 1
        elif op < 90:
            item = f'{name}/{n}'.encode()
            if kind == 'py':
                c.push(item, prefix='soak')
            else:
                with open(f'{mnt}/queues/soak/new', 'wb') as f:
                    f.write(item)
            report['pushed'].append(item.decode())
        elif op < 99:
            if kind == 'py':
                key, item = c.pull(prefix='soak')
                if key is not None:
                    report['pulled'].append(item.decode())
            else:
                try:
                    with open(f'{mnt}/queues/soak/.pull', 'rb') as f:
                        report['pulled'].append(f.read().decode())
                except FileNotFoundError:
                    pass  # an empty queue
        elif kind == 'mount':
            dest = f'{out}.rsync'
            # This client's own keys (others change theirs meanwhile, which
            # rsync reports as vanished or changed files, on any file system).
            p = subprocess.run(['rsync', '-aX', f'--include={name}-*', '--exclude=*', f'{keys}/', dest + '/'],
                               capture_output=True)
            if p.returncode != 0:
                err('rsync', p.stderr.decode()[-300:])
        report['ops'] += 1
    except Exception as e:
        err(f'op {op} on {k}', e)
with open(out, 'w') as f:
    json.dump(report, f)
