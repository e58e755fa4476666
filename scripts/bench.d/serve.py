"""`scripts/bench serve`: `diskcachefs serve` of a python-diskcache cache
against `rclone serve webdav` of a native directory holding the same files
(keys as files), side by side in one run, both started here on 127.0.0.1
with a free port and stopped by pid. Both are driven by the same client,
Python's http.client over one keep-alive HTTP/1.1 connection (a server
closing it is reported):

  GET 1 KiB      the same 1 KiB key GET_N times: median, p99 and mean us a
                 request, and the share of requests over 10 ms (stalls)
  GET 1 GiB      a 1 GiB key (a file value, python-diskcache's `read=True`)
                 read in full 3 times, MB/s of the best; its first and last
                 MiB are then fetched with Range and compared
  PROPFIND       Depth: 1 of the directory of all the keys (10,001 entries:
                 10,000 1 KiB keys and the 1 GiB one), PROPFIND_N times,
                 median ms; as an allprop (an empty body) and asking for
                 the properties a file manager lists (resourcetype,
                 getcontentlength, getlastmodified); every response's
                 entries are counted
  PUT 1 KiB      PUT_N new keys of 1 KiB: median and p99 us a request;
                 afterwards every value is read back through
                 python-diskcache (ours) or from the directory (rclone)

The last column is the floor without HTTP: the same on the native files,
in Python (open/read/close, open/write/close, scandir and a stat of each).

    serve.py WORK BIN
"""
import http.client
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

import diskcache

WORK, BIN = sys.argv[1], sys.argv[2]
KEYS = 10_000
GET_N = 1000
PUT_N = 1000
PROPFIND_N = 7
BIG = 1 << 30
MIB = 1 << 20
SMALL = bytes(range(256)) * 4
# What a file manager asks for (davfs2, Finder and rclone ask for these
# and a few more).
NAMED = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
         b'<D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>')
odd = []  # statuses or answers other than expected


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc):
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(('127.0.0.1', port), 0.2).close()
            return
        except OSError:
            assert proc.poll() is None, f'server exited with {proc.returncode}'
            assert time.time() < deadline, f'port {port} never opened'
            time.sleep(0.05)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(10)
        if code not in (0, -signal.SIGTERM):
            odd.append(f'{proc.args[0]} exited with {code} on SIGTERM')
    except subprocess.TimeoutExpired:
        odd.append(f'{proc.args[0]} ignored SIGTERM for 10 s; killed')
        proc.kill()
        proc.wait()


def fill():
    """The cache and the native directory, the same files in both; the
    big value is written once, natively, then stored from that file."""
    cache, native = os.path.join(WORK, 'cache'), os.path.join(WORK, 'native')
    os.makedirs(native)
    block = os.urandom(MIB)
    big = os.path.join(native, 'big')
    with open(big, 'wb') as f:
        for _ in range(BIG // MIB):
            f.write(block)
    # Above the default size limit (1 GiB), which would evict the small
    # keys to make room for the big one.
    c = diskcache.Cache(cache, size_limit=1 << 40)
    with c.transact():
        for i in range(KEYS):
            c.set(f'k{i:05d}', SMALL)
    with open(big, 'rb') as f:
        c.set('big', f, read=True)
    assert len(c) == KEYS + 1 and c.get('k00000') == SMALL, 'the cache is not what was written'
    c.close()
    for i in range(KEYS):
        with open(os.path.join(native, f'k{i:05d}'), 'wb') as f:
            f.write(SMALL)
    return cache, native, block


def check(name, resp, want):
    if resp.status != want:
        odd.append(f'{name}: status {resp.status}, not {want}')


def pct(times, p):
    return sorted(times)[min(len(times) - 1, int(len(times) * p))]


def stalled(times):
    """The share of requests over 10 ms, in percent (a stall: on loopback a
    request takes well under a millisecond)."""
    return 100 * sum(t > 10_000 for t in times) / len(times)


def get_small(conn, path):
    times = []
    for i in range(GET_N + 50):
        t = time.perf_counter()
        conn.request('GET', path)
        resp = conn.getresponse()
        body = resp.read()
        dt = time.perf_counter() - t
        check('GET 1 KiB', resp, 200)
        assert body == SMALL, f'GET {path}: {len(body)} bytes, not the value'
        if i >= 50:  # the first 50 warm up
            times.append(dt * 1e6)
    return statistics.median(times), pct(times, 0.99), statistics.mean(times), stalled(times)


def get_big(conn, path, block):
    buf = bytearray(MIB)
    mv = memoryview(buf)
    best = None
    for _ in range(3):
        t = time.perf_counter()
        conn.request('GET', path)
        resp = conn.getresponse()
        check('GET 1 GiB', resp, 200)
        n = 0
        while True:
            got = resp.readinto(mv)
            if not got:
                break
            n += got
        dt = time.perf_counter() - t
        assert n == BIG, f'GET {path}: {n} bytes, not {BIG}'
        best = dt if best is None else min(best, dt)
    for start in (0, BIG - MIB):
        conn.request('GET', path, headers={'Range': f'bytes={start}-{start + MIB - 1}'})
        resp = conn.getresponse()
        check('GET 1 GiB, a Range', resp, 206)
        assert resp.read() == block, f'GET {path} bytes {start}-: not the value'
    return BIG / MIB / best


def propfind(conn, path, body):
    times = []
    for _ in range(PROPFIND_N):
        t = time.perf_counter()
        conn.request('PROPFIND', path, body=body, headers={'Depth': '1', 'Content-Type': 'application/xml'})
        resp = conn.getresponse()
        xml = resp.read()
        times.append((time.perf_counter() - t) * 1000)
        check('PROPFIND', resp, 207)
        # The directory and each entry.
        n = len(re.findall(rb'<(?:[A-Za-z]+:)?response[ >]', xml))
        if n != KEYS + 2:
            odd.append(f'PROPFIND {path}: {n} responses, not {KEYS + 2}')
    return statistics.median(times)


def put_small(conn, prefix):
    times = []
    for i in range(PUT_N):
        t = time.perf_counter()
        conn.request('PUT', f'{prefix}p{i:05d}', body=SMALL)
        resp = conn.getresponse()
        resp.read()
        times.append((time.perf_counter() - t) * 1e6)
        check('PUT 1 KiB', resp, 201)
    return statistics.median(times), pct(times, 0.99)


class Connection(http.client.HTTPConnection):
    """Counts the connections opened (http.client opens another when the
    server closed the last)."""
    opened = 0

    def connect(self):
        self.opened += 1
        super().connect()


def workloads(port, prefix, block):
    conn = Connection('127.0.0.1', port, timeout=120)
    row = {}
    row['get'] = get_small(conn, f'{prefix}k00000')
    row['big'] = get_big(conn, f'{prefix}big', block)
    row['allprop'] = propfind(conn, prefix, b'')
    row['named'] = propfind(conn, prefix, NAMED)
    row['put'] = put_small(conn, prefix)
    conn.close()
    if conn.opened != 1:
        odd.append(f'port {port}: {conn.opened} connections opened, not 1 (the server closed them)')
    return row


def ours(cache, block):
    log = open(os.path.join(WORK, 'serve.log'), 'wb')
    proc = subprocess.Popen([BIN, 'serve', cache, '--listen', '127.0.0.1:0'], stdout=subprocess.PIPE, stderr=log)
    try:
        line = proc.stdout.readline().decode()
        m = re.fullmatch(r'http://127\.0\.0\.1:(\d+)/\n', line)
        assert m, f'diskcachefs serve printed {line!r}, not its URL'
        row = workloads(int(m.group(1)), '/keys/', block)
    finally:
        stop(proc)
    # What the PUTs stored is what python-diskcache reads.
    c = diskcache.Cache(cache)
    bad = [i for i in range(PUT_N) if c.get(f'p{i:05d}') != SMALL]
    c.close()
    assert not bad, f'{len(bad)} PUT values missing or wrong in the cache (first p{bad[0]:05d})'
    return row


def rclone(native, block):
    port = free_port()
    log = open(os.path.join(WORK, 'rclone.log'), 'wb')
    proc = subprocess.Popen(['rclone', 'serve', 'webdav', native, '--addr', f'127.0.0.1:{port}'],
                            stdout=log, stderr=log)
    try:
        wait_port(port, proc)
        row = workloads(port, '/', block)
    finally:
        stop(proc)
    bad = []
    for i in range(PUT_N):
        try:
            with open(os.path.join(native, f'p{i:05d}'), 'rb') as f:
                if f.read() != SMALL:
                    bad.append(i)
        except FileNotFoundError:
            bad.append(i)
    assert not bad, f'{len(bad)} PUT files missing or wrong in the directory (first p{bad[0]:05d})'
    return row


def native_floor(native):
    """The same on the native files, in Python, no HTTP."""
    row = {}
    path = os.path.join(native, 'k00000')
    times = []
    for i in range(GET_N + 50):
        t = time.perf_counter()
        with open(path, 'rb') as f:
            f.read()
        if i >= 50:
            times.append((time.perf_counter() - t) * 1e6)
    row['get'] = statistics.median(times), pct(times, 0.99), statistics.mean(times), stalled(times)
    buf = bytearray(MIB)
    best = None
    for _ in range(3):
        t = time.perf_counter()
        with open(os.path.join(native, 'big'), 'rb', buffering=0) as f:
            while f.readinto(buf):
                pass
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    row['big'] = BIG / MIB / best
    times = []
    for _ in range(PROPFIND_N):
        t = time.perf_counter()
        n = sum(1 for e in os.scandir(native) if e.stat())
        times.append((time.perf_counter() - t) * 1000)
    assert n == KEYS + 1
    row['allprop'] = row['named'] = statistics.median(times)
    times = []
    put = os.path.join(WORK, 'native-put')
    os.makedirs(put)
    for i in range(PUT_N):
        t = time.perf_counter()
        with open(os.path.join(put, f'p{i:05d}'), 'wb') as f:
            f.write(SMALL)
        times.append((time.perf_counter() - t) * 1e6)
    row['put'] = statistics.median(times), pct(times, 0.99)
    return row


def main():
    t0 = time.perf_counter()
    cache, native, block = fill()
    fill_s = time.perf_counter() - t0
    c = native_floor(native)
    a = ours(cache, block)
    b = rclone(native, block)
    rclone_version = subprocess.run(['rclone', 'version'], capture_output=True, text=True).stdout.split()[1]
    print(f'127.0.0.1, one keep-alive connection (Python http.client); rclone {rclone_version}; '
          f'setup {fill_s:.0f} s, all {time.perf_counter() - t0:.0f} s. Ratio: ours over rclone (above 1: '
          f'ours takes longer; for MB/s, below 1: ours is slower).\n')
    print('| workload | diskcachefs serve | rclone serve webdav (native dir) | ratio (ours/rclone) '
          '| native files in Python, no HTTP |')
    print('|---|---:|---:|---:|---:|')
    rows = [
        ('get', f'GET 1 KiB key, median us ({GET_N} requests)', 0, '{:.0f}'),
        ('get', 'GET 1 KiB key, p99 us', 1, '{:.0f}'),
        ('get', 'GET 1 KiB key, mean us', 2, '{:.0f}'),
        ('get', 'GET 1 KiB key, % of requests over 10 ms', 3, '{:.1f}'),
        ('big', 'GET 1 GiB key, MB/s (best of 3)', None, '{:.0f}'),
        ('put', f'PUT 1 KiB new key, median us ({PUT_N} keys)', 0, '{:.0f}'),
        ('put', 'PUT 1 KiB new key, p99 us', 1, '{:.0f}'),
        ('allprop', f'PROPFIND Depth:1 allprop, {KEYS + 1} entries, median ms', None, '{:.1f}'),
        ('named', f'PROPFIND Depth:1 3 named props, {KEYS + 1} entries, median ms', None, '{:.1f}'),
    ]
    for key, name, i, fmt in rows:
        x, y, z = (r[key] if i is None else r[key][i] for r in (a, b, c))
        ratio = f'{x / y:.2f}x' if y else '-'
        print(f'| {name} | {fmt.format(x)} | {fmt.format(y)} | {ratio} | {fmt.format(z)} |')
    if odd:
        print('\nUnexpected:')
        for o in sorted(set(odd)):
            print(f'- {o} (x{odd.count(o)})')


if __name__ == '__main__':
    main()
