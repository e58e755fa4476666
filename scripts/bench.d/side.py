"""Part 0 of `scripts/bench fs` ("side by side"): the same workloads on
native files, bindfs over a native copy of them, a read-write diskcachefs
mount (through /dev/fuse, and a second one through FUSE over io_uring) and a
read-only one, each target's root holding the same names and
bytes (f0000..f1999 of 1 KiB, and `big` of 1 GiB). scripts/bench-fs makes
the targets and mounts them; this file runs the workloads and prints the
tables.

usage:
  side.py time CONFIG_JSON        medians of the rounds, as JSON on stdout
  side.py count WORKLOAD ROOT PHASE CLEAN_ROOT
                                  one pass for request counting: PHASE
                                  `prepare` runs the workload's warm-up only,
                                  `both` the warm-up then the measured pass;
                                  prints the number of operations measured;
                                  written files are removed under CLEAN_ROOT
  side.py count-list TARGET       the workloads that apply to TARGET
  side.py count-diff WORKLOAD TARGET PREPARE_LOG BOTH_LOG N
                                  requests per operation from the two
                                  passes' logs, one JSON line
  side.py report TIME_JSON COUNTS_JSON
                                  the two markdown tables

CONFIG_JSON: {"targets": {name: root}, "diskcache": DIR, "rounds": R}.
Targets are native, bindfs, rw, uring (rw with --io-uring), ro; ro takes no
writes.
"""
import json, os, re, statistics, subprocess, sys, time

N = 2000
VALUE = b'x' * 1024
GIB = 1 << 30
TARGETS = ('native', 'bindfs', 'rw', 'uring', 'ro')
HEADINGS = {'native': 'native', 'bindfs': 'bindfs', 'rw': 'diskcachefs rw', 'uring': 'diskcachefs rw io_uring',
            'ro': 'diskcachefs ro'}
NAMES = [f'f{i:04d}' for i in range(N)]


def drop_caches(what):
    """`what` 3: the page cache too (cold reads); 2: dentries and inodes
    only, so the kernel forgets every name and attribute of a FUSE mount
    while the disk blocks under native files and cache.db stay in memory."""
    os.sync()
    with open('/proc/sys/vm/drop_caches', 'w') as f:
        f.write(f'{what}\n')


def run(*argv):
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Ctx:
    def __init__(self, root, tag):
        self.root, self.tag = root, tag
        self.paths = [os.path.join(root, n) for n in NAMES]
        self.new = [os.path.join(root, f'w-{tag}-{i:04d}') for i in range(N)]
        self.missing = [os.path.join(root, f'missing-{i:04d}') for i in range(N)]


# Each workload: prepare(ctx) (untimed warm-up), measure(ctx) (timed),
# after(ctx, clean_root) (untimed: removes what measure wrote), the count
# of operations measure did (for the per-op figure), its unit, and whether
# it writes (not run on the read-only mount).

def warm_py(ctx):
    for p in ctx.paths:
        with open(p, 'rb') as f:
            assert len(f.read()) == 1024, p

def py_read(ctx):
    for p in ctx.paths:
        with open(p, 'rb') as f:
            f.read()

def warm_os(ctx):
    for p in ctx.paths:
        fd = os.open(p, os.O_RDONLY)
        assert len(os.read(fd, 1024)) == 1024, p
        os.close(fd)

def os_read(ctx):
    for p in ctx.paths:
        fd = os.open(p, os.O_RDONLY)
        os.read(fd, 1024)
        os.close(fd)

def warm_stat(ctx):
    for p in ctx.paths:
        assert os.stat(p).st_size == 1024, p

def stat(ctx):
    for p in ctx.paths:
        os.stat(p)

def stat_missing(ctx):
    # Every name asked twice in a row is the second look (a search path,
    # a probe before a cache is filled): the first pass is the warm-up.
    for p in ctx.missing:
        try:
            os.stat(p)
            raise SystemExit(f'{p} exists')
        except FileNotFoundError:
            pass

def write_new(ctx):
    for p in ctx.new:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, VALUE)
        os.close(fd)

def remove_new(ctx, clean_root):
    for p in ctx.new:
        os.unlink(os.path.join(clean_root, os.path.basename(p)))

def ls(ctx):
    run('ls', '-l', ctx.root)

def entries(ctx):
    return len(os.listdir(ctx.root))

def dd_read(ctx):
    run('dd', f'if={ctx.root}/big', 'of=/dev/null', 'bs=1M')

def dd_write(ctx):
    run('dd', 'if=/dev/zero', f'of={ctx.root}/bigw-{ctx.tag}', 'bs=1M', f'count={GIB >> 20}', 'conv=fsync')

def remove_bigw(ctx, clean_root):
    os.unlink(os.path.join(clean_root, f'bigw-{ctx.tag}'))

def nothing(*_):
    pass

MIB = GIB >> 20
WORKLOADS = {
    # name: (row label, unit, prepare, measure, after, ops, writes)
    'py-read': ('read 1 KiB, Python `open().read()`, warm', 'us', warm_py, py_read, nothing, N, False),
    'os-read': ('read 1 KiB, `os.open/os.read/os.close`, warm', 'us', warm_os, os_read, nothing, N, False),
    'write': ('a new 1 KiB file, `os.open(O_CREAT\\|O_EXCL)/os.write/os.close`', 'us', nothing, write_new,
              remove_new, N, True),
    'stat': ('`os.stat`, warm', 'us', warm_stat, stat, nothing, N, False),
    'stat-missing': ('`os.stat` of a missing name, asked again', 'us', stat_missing, stat_missing, nothing, N,
                     False),
    'ls-first': ('`ls -l`, first listing (after dropping dentries and inodes), per entry', 'us',
                 lambda ctx: drop_caches(2), ls, nothing, entries, False),
    'ls-repeat': ('`ls -l`, repeat listing, per entry', 'us', ls, ls, nothing, entries, False),
    'cold-read': ('read 1 GiB sequential, cold page cache (dd bs=1M)', 'GB/s', lambda ctx: drop_caches(3),
                  dd_read, nothing, MIB, False),
    'warm-read': ('read 1 GiB sequential, warm page cache (dd bs=1M)', 'GB/s', dd_read, dd_read, nothing, MIB,
                  False),
    'big-write': ('write 1 GiB sequential (dd bs=1M conv=fsync)', 'GB/s', nothing, dd_write, remove_bigw, MIB,
                  True),
}


def applies(workload, target):
    return target != 'ro' or not WORKLOADS[workload][6]


def ops(workload, ctx):
    n = WORKLOADS[workload][5]
    return n(ctx) if callable(n) else n


def per_op(workload, seconds, n):
    """us per op, or GB/s for the 1 GiB rows (n is then MiB)."""
    if WORKLOADS[workload][1] == 'GB/s':
        return n * (1 << 20) / seconds / 1e9
    return seconds * 1e6 / n


def time_all(config):
    """Each round runs every workload on every target, one target after
    another, the targets' order rotated each round so that none is always
    first after a slow neighbour (the machine is shared and noisy: ratios
    within a round are what counts). python-diskcache's `Cache.set` of the
    same 1 KiB runs with the write workload, as the write row's reference."""
    import diskcache
    targets, rounds = config['targets'], config['rounds']
    cache = diskcache.Cache(config['diskcache'])
    results = {w: {t: [] for t in TARGETS} for w in WORKLOADS}
    results['set'] = {'python-diskcache': []}
    counted = {}
    for r in range(rounds):
        order = TARGETS[r % len(TARGETS):] + TARGETS[:r % len(TARGETS)]
        for w, (_, _, prepare, measure, after, _, _) in WORKLOADS.items():
            for t in order:
                if not applies(w, t):
                    continue
                ctx = Ctx(targets[t], f'{t}-{r}')
                prepare(ctx)
                start = time.perf_counter()
                measure(ctx)
                seconds = time.perf_counter() - start
                n = ops(w, ctx)  # after measure: listing to count entries would warm the kernel
                counted.setdefault(w, {})[t] = n
                results[w][t].append(per_op(w, seconds, n))
                after(ctx, ctx.root)
            if w == 'write':
                keys = [f'w-{r}-{i:04d}' for i in range(N)]
                start = time.perf_counter()
                for k in keys:
                    cache.set(k, VALUE)
                results['set']['python-diskcache'].append((time.perf_counter() - start) * 1e6 / N)
                cache.clear()
        print(f'side.py: round {r + 1} of {rounds} done', file=sys.stderr)
    cache.close()
    # The listings must be of the same number of entries everywhere.
    for w in ('ls-first', 'ls-repeat'):
        assert len(set(counted[w].values())) == 1, counted[w]
    return {'rounds': rounds, 'entries': counted['ls-first']['native'],
            'medians': {w: {t: statistics.median(v) for t, v in ts.items() if v} for w, ts in results.items()},
            'ranges': {w: {t: [min(v), max(v)] for t, v in ts.items() if v} for w, ts in results.items()}}


def count(workload, root, phase, clean_root):
    _, _, prepare, measure, after, _, _ = WORKLOADS[workload]
    ctx = Ctx(root, f'count-{phase}')
    prepare(ctx)
    if phase == 'both':
        measure(ctx)
        after(ctx, clean_root)
    # Entries are counted in CLEAN_ROOT, another mount of the same files:
    # through ROOT the listing would be counted too, in one phase only.
    print(ops(workload, Ctx(clean_root, ctx.tag)))


def report(times, counts):
    med, rounds = times['medians'], times['rounds']
    print(f"Side by side ({rounds} rounds, targets alternating within each round in a rotated order; "
          f"each cell the median of the rounds; {N:,} files of 1 KiB, each read or stat-ed once before the timed "
          f"pass; listings of {times['entries']:,} entries; ratios are time against native's, "
          "so 2.0x is half native's speed):")
    print()
    print('| workload | ' + ' | '.join(HEADINGS[t] for t in TARGETS) + ' | '
          + ' | '.join(f'{HEADINGS[t]} / native' for t in TARGETS[1:]) + ' |')
    print('|---|' + '---:|' * (2 * len(TARGETS) - 1))
    for w, (label, unit, *_) in WORKLOADS.items():
        cells, ratios = [], []
        nat = med[w]['native']
        for t in TARGETS:
            v = med[w].get(t)
            cells.append('—' if v is None else f'{v:.2f}' if unit == 'GB/s' else f'{v:.1f}')
            if t != 'native':
                ratios.append('—' if v is None else f'{(nat / v if unit == "GB/s" else v / nat):.1f}x')
        print(f'| {label}, {unit} | ' + ' | '.join(cells + ratios) + ' |')
        if w == 'write':
            s = med['set']['python-diskcache']
            print(f'| python-diskcache `Cache.set` of the same 1 KiB (a cache on the native disk), us '
                  f'| {s:.1f} |' + ' |' * (2 * len(TARGETS) - 2))
    rw, uring, s = med['write']['rw'], med['write']['uring'], med['set']['python-diskcache']
    print()
    print(f'A new 1 KiB file through the read-write mount: {rw / s:.1f}x python-diskcache\'s `Cache.set` '
          f'through /dev/fuse, {uring / s:.1f}x through io_uring (aim: at most 1.5x).')
    print()
    ranges = times['ranges']
    spread = '; '.join(f"{w} {t} {lo:.3g}-{hi:.3g}" for w in ('py-read', 'os-read', 'write', 'ls-first')
                       for t, (lo, hi) in ranges[w].items())
    print(f'(Ranges over the rounds: {spread}.)')

    if not counts:
        return
    print()
    print('Requests per operation (what the kernel sent the file system, counted by diskcachefs at unmount, '
          'by bindfs -d for bindfs; per entry for listings, per MiB for the 1 GiB rows). For each (target, '
          'workload), two fresh mounts: one runs the warm-up only, the other the warm-up and then the '
          'measured pass; the figure is their difference over the number of operations measured, so mounting, '
          'unmounting and the warm-up cancel out:')
    print()
    kinds = sorted({k for c in counts for k in c['per_op'] if abs(c['per_op'][k]) >= 0.005 and k != 'init'},
                   key=lambda k: (KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER), k))
    print('| workload | target | ' + ' | '.join(kinds) + ' | total |')
    print('|---|---|' + '---:|' * (len(kinds) + 1))
    for c in counts:
        per = c['per_op']
        cells = [f'{per[k]:.2f}' if abs(per.get(k, 0)) >= 0.005 else '' for k in kinds]
        total = sum(v for k, v in per.items() if k != 'init')
        print(f"| {c['workload']} | {HEADINGS[c['target']]} | " + ' | '.join(cells) + f' | {total:.2f} |')


KIND_ORDER = ['lookup', 'forget', 'batch_forget', 'getattr', 'setattr', 'open', 'create', 'read', 'write',
              'flush', 'fsync', 'release', 'opendir', 'readdir', 'readdirplus', 'releasedir', 'getxattr',
              'listxattr', 'ioctl', 'unlink', 'statfs']


def parse_counts(log):
    """{kind: n} from a diskcachefs log (its `requests served: ...` line at
    unmount) or from bindfs -d output (one `opcode: NAME` per request)."""
    text = open(log, errors='replace').read()
    served = re.findall(r'requests served: (.*)', text)
    if served:
        return {k: int(v) for k, v in (kv.split('=') for kv in served[-1].split())}
    kinds = {}
    for op in re.findall(r'opcode: ([A-Z_]+)', text):
        kinds[op.lower()] = kinds.get(op.lower(), 0) + 1
    return kinds


def main():
    cmd = sys.argv[1]
    if cmd == 'time':
        print(json.dumps(time_all(json.load(open(sys.argv[2])))))
    elif cmd == 'count':
        count(*sys.argv[2:6])
    elif cmd == 'count-list':
        print(' '.join(w for w in WORKLOADS if applies(w, sys.argv[2])))
    elif cmd == 'count-diff':
        w, t, a_log, b_log, n = sys.argv[2:7]
        a, b = parse_counts(a_log), parse_counts(b_log)
        if not b:
            print(f'side.py: no request counts in {b_log}', file=sys.stderr)
        print(json.dumps({'workload': w, 'target': t, 'per_op': {
            k: (b.get(k, 0) - a.get(k, 0)) / int(n) for k in set(a) | set(b)}}))
    elif cmd == 'report':
        counts = [json.loads(line) for line in open(sys.argv[3])] if len(sys.argv) > 3 else []
        report(json.load(open(sys.argv[2])), counts)
    else:
        sys.exit(f'side.py: unknown command {cmd}')


if __name__ == '__main__':
    main()
