"""`scripts/bench remote`: what the remote tier (mount --remote) adds, side
by side in one run, against a real Redis and a real S3 server (SeaweedFS
`weed mini`) started here on 127.0.0.1 and stopped by pid.

For each store, two caches are mounted with `--remote` (no background pull,
so that every remote hit is a miss answered by the store):
  local hit      `open/read/close` of a key cache B has (1 KiB)
  miss, no remote   the same of a key nobody has, on a mount without --remote
  miss asking    the same of a key nobody has, on B (one GET to the store)
  remote hit     the same of a key only the store has (pushed from A): the
                 record and value GETs, the checks and the local write
  upload         UPLOADS entries python-diskcache wrote into A's cache.db,
                 from mounting A until its pusher has uploaded them all
                 (entries/s; each is EXISTS/HEAD + 3 creates, 8 at once)

usage: remote.py BIN WORK WEED
"""
import json, os, socket, statistics, subprocess, sys, time

BIN, WORK, WEED = sys.argv[1], sys.argv[2], sys.argv[3]
N = 500
UPLOADS = 2000
VALUE = b'v' * 1024
KEY, SECRET = 'benchkey', 'benchsecret'


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_redis():
    port = free_ports(1)[0]
    d = os.path.join(WORK, 'redis')
    os.makedirs(d)
    p = subprocess.Popen(['redis-server', '--port', str(port), '--bind', '127.0.0.1', '--save', '',
                          '--appendonly', 'no', '--dir', d], stdout=subprocess.DEVNULL)
    wait_port(port)
    return p, f'redis://127.0.0.1:{port}/0', {}


def start_s3():
    d = os.path.join(WORK, 'weed')
    os.makedirs(os.path.join(d, 'data'))
    cfg = os.path.join(d, 's3.json')
    with open(cfg, 'w') as f:
        json.dump({'identities': [{'name': 'b', 'credentials': [{'accessKey': KEY, 'secretKey': SECRET}],
                                   'actions': ['Admin', 'Read', 'Write', 'List', 'Tagging']}]}, f)
    p = free_ports(10)
    names = ['master.port', 'master.port.grpc', 'volume.port', 'volume.port.grpc', 'filer.port',
             'filer.port.grpc', 's3.port', 's3.port.grpc', 'admin.port', 'admin.port.grpc']
    # -logdir: weed's log files go with its directory, not into /tmp.
    args = [WEED, f'-logdir={d}', 'mini', f'-dir={d}/data', '-ip=127.0.0.1', '-ip.bind=127.0.0.1', '-master.telemetry=false',
            '-admin.ui=false', '-webdav=false', f'-s3.config={cfg}', '-bucket=bench',
            '-s3.port.iceberg=0', '-s3.port.lance=0'] + [f'-{n}={port}' for n, port in zip(names, p)]
    proc = subprocess.Popen(args, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {'AWS_ENDPOINT_URL': f'http://127.0.0.1:{p[6]}', 'AWS_ACCESS_KEY_ID': KEY,
           'AWS_SECRET_ACCESS_KEY': SECRET, 'AWS_REGION': 'us-east-1'}
    wait_port(p[6])
    # The volume server takes writes a while after the port opens: sync
    # an empty cache until it succeeds.
    probe = os.path.join(WORK, 'probe')
    deadline = time.time() + 60
    while subprocess.run([BIN, 'sync', probe, '--remote', 's3://bench/x', '--prefix', 'p'],
                         env={**os.environ, **env}, capture_output=True).returncode != 0:
        assert time.time() < deadline, 'weed not ready'
        import diskcache
        diskcache.Cache(probe).set('p', b'1')
        time.sleep(0.5)
    return proc, 's3://bench/team', env


def wait_port(port):
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(('127.0.0.1', port), 0.2).close()
            return
        except OSError:
            assert time.time() < deadline, f'port {port} never opened'
            time.sleep(0.05)


def mount(cache, mnt, env, args):
    os.makedirs(mnt, exist_ok=True)
    log = mnt + '.log'
    subprocess.run([BIN, 'mount', cache, mnt, '--daemon', '--log-file', log] + args,
                   env={**os.environ, **env}, check=True)
    return mnt


def umount(mnt):
    subprocess.run([BIN, 'umount', mnt], check=True)


def status(mnt):
    with open(os.path.join(mnt, 'ops/remote')) as f:
        return json.load(f)


def read_us(paths, expect_missing):
    """Median microseconds of open/read/close of each path (once each)."""
    times = []
    for p in paths:
        t = time.perf_counter()
        try:
            fd = os.open(p, os.O_RDONLY)
            os.read(fd, 4096)
            os.close(fd)
            assert not expect_missing, p
        except FileNotFoundError:
            assert expect_missing, p
        times.append((time.perf_counter() - t) * 1e6)
    return statistics.median(times)


def bench(name, start):
    import diskcache
    proc, url, env = start()
    try:
        base = os.path.join(WORK, name)
        a, b, plain = (os.path.join(base, x) for x in ('a', 'b', 'plain'))
        remote = ['--remote', url, '--remote-prefix', 'shared/', '--remote-pull-interval', '0']
        # A's entries (uploaded by A's mount); B's own entries.
        ca = diskcache.Cache(a)
        for i in range(UPLOADS):
            ca.set(f'shared/r{i:04d}', VALUE)
        ca.close()
        t = time.perf_counter()
        ma = mount(a, a + '.mnt', env, remote)
        while status(ma)['uploads'] < UPLOADS:
            time.sleep(0.01)
        upload = UPLOADS / (time.perf_counter() - t)
        cb = diskcache.Cache(b)
        for i in range(N):
            cb.set(f'shared/l{i:04d}', VALUE)
        cb.close()
        diskcache.Cache(plain).set('shared/x', VALUE)
        mb = mount(b, b + '.mnt', env, remote)
        mp = mount(plain, plain + '.mnt', {}, [])
        k = lambda m, fmt: [os.path.join(m, 'keys', fmt % i) for i in range(N)]
        row = {
            'local hit': read_us(k(mb, 'shared/l%04d'), False),
            'miss, no remote': read_us(k(mp, 'shared/n%04d'), True),
            'miss asking the remote': read_us(k(mb, 'shared/n%04d'), True),
            'remote hit': read_us(k(mb, 'shared/r%04d'), False),
            'upload (entries/s)': upload,
        }
        s = status(mb)
        assert s['hits'] == N and s['errors'] == 0, s
        for m in (ma, mb, mp):
            umount(m)
        return row
    finally:
        proc.kill()
        proc.wait()


def main():
    rows = {'Redis 7 (Debian)': bench('redis', start_redis), 'S3 (SeaweedFS 4.48)': bench('s3', start_s3)}
    cols = list(rows)
    print(f'1 KiB values; reads: {N} keys each, the median of one open/read/close per key (us); '
          f'upload: {UPLOADS} entries, entries/s.\n')
    print('| operation | ' + ' | '.join(cols) + ' |')
    print('|---|' + '---:|' * len(cols))
    for op in next(iter(rows.values())):
        cells = []
        for c in cols:
            v = rows[c][op]
            if op.startswith('upload'):
                cells.append(f'{v:.0f}')
            else:
                cells.append(f'{v:.0f} ({v / rows[c]["local hit"]:.1f}x local hit)')
        print(f'| {op} | ' + ' | '.join(cells) + ' |')


main()
