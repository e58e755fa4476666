"""The python-diskcache side of `scripts/bench engine`: the workloads of
examples/engine_bench.rs, same sizes and settings, each in a fresh cache.
Prints one JSON object: workload name -> microseconds per operation."""
import json, os, shutil, sys, time
import diskcache

work = sys.argv[1]
results = {}

def fresh(name):
    d = os.path.join(work, 'python-' + name)
    shutil.rmtree(d, ignore_errors=True)
    return diskcache.Cache(d)

def index(i, n):
    return ((i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) % n

def per_op(start, ops):
    return (time.perf_counter() - start) * 1e6 / ops

small = b'x' * 1024
large = b'y' * (1 << 20)

cache = fresh('small')
n = 10_000
start = time.perf_counter()
for i in range(n):
    cache.set(f'key-{i}', small)
results['set 1 KiB'] = per_op(start, n)
start = time.perf_counter()
for i in range(n):
    assert cache.get(f'key-{i}') is not None
results['get 1 KiB, first read of each key'] = per_op(start, n)
gets = 100_000
start = time.perf_counter()
for i in range(gets):
    assert cache.get(f'key-{index(i, n)}') is not None
results['get 1 KiB, repeated reads'] = per_op(start, gets)

cache = fresh('large')
n = 50
start = time.perf_counter()
for i in range(n):
    cache.set(f'big-{i}', large)
results['set 1 MiB (file)'] = per_op(start, n)
gets = 500
start = time.perf_counter()
for i in range(gets):
    assert cache.get(f'big-{index(i, n)}') is not None
results['get 1 MiB (file)'] = per_op(start, gets)

cache = fresh('incr')
n = 10_000
start = time.perf_counter()
for _ in range(n):
    cache.incr('counter', 1, default=0)
results['incr'] = per_op(start, n)

cache = fresh('queue')
n = 5_000
start = time.perf_counter()
for _ in range(n):
    cache.push(small, prefix='q')
    cache.pull(prefix='q')
results['push+pull'] = per_op(start, n)

cache = fresh('iter')
n = 100_000
with cache.transact():
    for i in range(n):
        cache.set(f'k{i:06d}', i)
start = time.perf_counter()
count = sum(1 for _ in cache.iterkeys())
assert count == n
results['iterkeys 100,000 (per key)'] = per_op(start, n)

print(json.dumps(results))
