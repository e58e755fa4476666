"""The concurrency cells of `scripts/bench fs`: small reads and small writes
from several processes at once, through diskcachefs mounts and on native
files, each alone and while two Python processes write with
python-diskcache; and 8 readers against mounts with --threads 2, 4, 8, 16,
alone, while Python writes, and while 2 more processes also write files
through that mount. Prints one JSON object (`report` in `main`), which
scripts/bench.d/fs_report.py turns into tables.

usage: concurrency.py CONFIG_JSON

CONFIG_JSON (written by scripts/bench-fs):
  main        keys/ dir of the mount with the default --threads
  threads     {"2": keys/ dir, "4": ..., ...}: mounts of the same cache
  cache       the mounted cache directory (the Python writers' target)
  native      a native directory (reads from native/r, writes into native/w)
  bg_native   a python-diskcache directory on the native file system, the
              background writers' target during native cells
  seconds     length of one cell's measurement
  rounds      rounds; every cell runs once a round, cells interleaved

Each cell: the background writers (if any) start and do 50 sets each
before the measured processes are released together by a barrier; each
measured process then loops for `seconds`, timing every open+read+close
(or open+write+close) with perf_counter_ns; the writers stop when the last
measured process ends. A request under way at the end of the cell
finishes (a write through the mount can wait for the write lock up to the
daemon's --timeout, 60 s by default, then fails with EBUSY, counted).
Every process also has a hard deadline (seconds + 30 s) checked between
requests, so nothing outlives the run even if this driver is killed."""
import json, multiprocessing as mp, os, statistics, sys, time
from array import array

import diskcache

READ_KEYS = 50_000          # distinct 1 KiB keys the readers walk
VALUE = b'x' * 1024
BG_RING = 2_000             # each background writer overwrites its own 2,000 keys
MAX_OPS = 2_000_000         # per process and cell, a bound besides the clock

ctx = mp.get_context('fork')


def read_name(i):
    return f'r{i:06d}'


def setup(cfg):
    """50,000 keys of 1 KiB set by python-diskcache in the mounted cache,
    the same as native files."""
    cache = diskcache.Cache(cfg['cache'])
    with cache.transact():
        for i in range(READ_KEYS):
            cache.set(read_name(i), VALUE)
    cache.close()
    for sub in ('r', 'w'):
        os.makedirs(os.path.join(cfg['native'], sub), exist_ok=True)
    for i in range(READ_KEYS):
        fd = os.open(os.path.join(cfg['native'], 'r', read_name(i)), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, VALUE)
        os.close(fd)
    diskcache.Cache(cfg['bg_native']).close()


def measured(kind, d, tag, p, nprocs, seconds, barrier, out):
    """One measured process: reads walk all keys from a start of their own
    (so processes read different keys at any moment); writes create new
    names of their own."""
    hard = time.monotonic() + seconds + 30
    lat = array('q')
    barrier.wait(timeout=60)
    t0 = time.perf_counter_ns()
    end = t0 + int(seconds * 1e9)
    now = t0
    n = errors = 0
    if kind == 'read':
        i = (p * READ_KEYS) // nprocs + int(tag.split('-')[0]) * 7919
        while now < end and n < MAX_OPS and time.monotonic() < hard:
            path = os.path.join(d, read_name(i % READ_KEYS))
            s = time.perf_counter_ns()
            fd = os.open(path, os.O_RDONLY)
            got = os.read(fd, 4096)
            os.close(fd)
            now = time.perf_counter_ns()
            lat.append(now - s)
            if len(got) != 1024:
                raise SystemExit(f'{path}: read {len(got)} bytes')
            i += 1
            n += 1
    else:
        while now < end and n < MAX_OPS and time.monotonic() < hard:
            path = os.path.join(d, f'w{tag}-{p}-{n}')
            s = time.perf_counter_ns()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, VALUE)
            try:
                os.close(fd)   # the commit; EBUSY past the daemon's --timeout
            except OSError:
                errors += 1
            now = time.perf_counter_ns()
            lat.append(now - s)
            n += 1
    out.put(('measured', (now - t0) / 1e9, lat.tobytes(), errors))


def background(cache_dir, w, ready, stop, seconds, out):
    """A python-diskcache writer: cache.set of 1 KiB values in a loop,
    overwriting a ring of keys of its own, until told to stop."""
    hard = time.monotonic() + seconds + 30
    cache = diskcache.Cache(cache_dir)
    n = 0
    worst = 0
    t0 = time.perf_counter_ns()
    while not stop.value and time.monotonic() < hard:
        s = time.perf_counter_ns()
        cache.set(f'bg{w}-{n % BG_RING}', VALUE)
        worst = max(worst, time.perf_counter_ns() - s)
        n += 1
        if n == 50:
            ready.release()
    if n < 50:
        ready.release()
    cache.close()
    out.put(('background', n, (time.perf_counter_ns() - t0) / 1e9, worst))


def file_writer(d, w, tag, ready, stop, seconds, out):
    """An unmeasured process writing new 1 KiB files (open, write, close)
    in a loop into `d`, until told to stop: through a mount, each such
    write holds one of the daemon's threads while it waits for the write
    lock."""
    hard = time.monotonic() + seconds + 30
    n = worst = 0
    ready.release()
    t0 = time.perf_counter_ns()
    while not stop.value and time.monotonic() < hard:
        s = time.perf_counter_ns()
        fd = os.open(os.path.join(d, f'f{tag}-{w}-{n}'), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, VALUE)
        try:
            os.close(fd)
        except OSError:
            pass
        worst = max(worst, time.perf_counter_ns() - s)
        n += 1
    out.put(('files', n, (time.perf_counter_ns() - t0) / 1e9, worst))


def run_cell(kind, d, nprocs, bg_dir, seconds, tag, file_writers=0):
    out = ctx.Queue()
    stop = ctx.RawValue('b', 0)
    ready = ctx.Semaphore(0)
    writers = []
    if bg_dir:
        for w in range(2):
            pr = ctx.Process(target=background, args=(bg_dir, w, ready, stop, seconds, out), daemon=True)
            pr.start()
            writers.append(pr)
    for w in range(file_writers):
        pr = ctx.Process(target=file_writer, args=(d, w, tag, ready, stop, seconds, out), daemon=True)
        pr.start()
        writers.append(pr)
    if writers:
        for _ in writers:
            if not ready.acquire(timeout=60):
                raise SystemExit('a background writer did not start')
    barrier = ctx.Barrier(nprocs)
    procs = [
        ctx.Process(target=measured, args=(kind, d, tag, p, nprocs, seconds, barrier, out), daemon=True)
        for p in range(nprocs)
    ]
    for pr in procs:
        pr.start()
    rate, lats, bg, files, errors = 0.0, array('q'), [], [], 0
    try:
        for _ in procs:
            # A write can wait for the write lock up to the daemon's
            # --timeout (60 s by default) before its EBUSY.
            _, elapsed, raw, e = out.get(timeout=seconds + 90)
            errors += e
            got = array('q')
            got.frombytes(raw)
            rate += len(got) / elapsed
            lats.extend(got)
    finally:
        stop.value = 1
        for _ in writers:
            # A file writer may be waiting for the write lock (see above).
            what, n, elapsed, worst = out.get(timeout=90)
            (bg if what == 'background' else files).append((n / elapsed, worst))
        for pr in procs + writers:
            pr.join(timeout=30)
            if pr.is_alive():
                pr.kill()
            if pr.exitcode not in (0, None, -9):
                raise SystemExit(f'{kind} cell {tag}: a process exited with {pr.exitcode}')
    srt = sorted(lats)
    return {
        'ops': rate,
        'max_ms': srt[-1] / 1e6,
        'p99_ms': srt[int(len(srt) * 0.99)] / 1e6,
        'bg_sets': sum(r for r, _ in bg),
        'bg_max_ms': max((m for _, m in bg), default=0) / 1e6,
        'files': sum(r for r, _ in files),
        'files_max_ms': max((m for _, m in files), default=0) / 1e6,
        'errors': errors,
    }


def main():
    cfg = json.load(open(sys.argv[1]))
    seconds, rounds = cfg['seconds'], cfg['rounds']
    setup(cfg)
    native_r = os.path.join(cfg['native'], 'r')
    native_w = os.path.join(cfg['native'], 'w')
    cells = []   # (table, key, kind, dir, procs, background dir, file writers)
    for bg in (False, True):
        for side, rd, wd, bgd in (('diskcachefs', cfg['main'], cfg['main'], cfg['cache']),
                                  ('native', native_r, native_w, cfg['bg_native'])):
            for n in (1, 4, 8):
                cells.append(('main', ('read', n, bg, side), 'read', rd, n, bgd if bg else None, 0))
            for n in (1, 4):
                cells.append(('main', ('write', n, bg, side), 'write', wd, n, bgd if bg else None, 0))
        for t, keys in cfg['threads'].items():
            cells.append(('threads', (int(t), int(bg)), 'read', keys, 8, cfg['cache'] if bg else None, 0))
    # And while 2 more processes write files through the same mount, whose
    # commits wait for the write lock in the daemon's threads.
    for t, keys in cfg['threads'].items():
        cells.append(('threads', (int(t), 2), 'read', keys, 8, cfg['cache'], 2))
    # Warm-up, not counted: every reading target once, 8 processes.
    for d in [cfg['main'], native_r, *cfg['threads'].values()]:
        run_cell('read', d, 8, None, min(seconds, 0.5), '9999-0')
    got = {}
    for r in range(rounds):
        t0 = time.monotonic()
        for c, (table, key, kind, d, n, bgd, fw) in enumerate(cells):
            res = run_cell(kind, d, n, bgd, seconds, f'{r}-{c}', fw)
            got.setdefault((table, key), []).append(res)
        print(f'concurrency: round {r + 1}/{rounds} took {time.monotonic() - t0:.0f} s', file=sys.stderr)

    def med(results):
        out = {f: statistics.median(x[f] for x in results) for f in results[0]}
        out['max_ms_all'] = max(x['max_ms'] for x in results)
        out['errors'] = sum(x['errors'] for x in results)
        out['ops_range'] = [min(x['ops'] for x in results), max(x['ops'] for x in results)]
        return out

    report = {'seconds': seconds, 'rounds': rounds, 'main': [], 'threads': []}
    for (table, key), results in got.items():
        report[table].append({'key': list(key), **med(results)})
    print(json.dumps(report))


if __name__ == '__main__':
    main()
