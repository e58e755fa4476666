"""The workloads of `scripts/bench fs`, run from Python against three
targets: files through a diskcachefs mount, python-diskcache's get/set on
the same kind of cache, and plain files in a native directory. Prints one
JSON object: workload -> {target: microseconds per op (or seconds)}.

usage: fs.py MOUNT_KEYS_DIR DISKCACHE_DIR NATIVE_DIR"""
import json, os, sys, time
import diskcache

mount_keys, cache_dir, native = sys.argv[1:4]
N = 2000
value = b'x' * 1024
results = {}

def per_op(fn, n):
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) * 1e6 / n

def write_file(d):
    def f(i):
        with open(os.path.join(d, f'k{i}'), 'wb') as fh:
            fh.write(value)
    return f

def read_file(d):
    def f(i):
        with open(os.path.join(d, f'k{i % N}'), 'rb') as fh:
            assert len(fh.read()) == 1024
    return f

cache = diskcache.Cache(cache_dir)
results['write 1 KiB (open, write, close)'] = {
    'diskcachefs': per_op(write_file(mount_keys), N),
    'python-diskcache': per_op(lambda i: cache.set(f'k{i}', value), N),
    'native': per_op(write_file(native), N),
}
# Repeated reads: the second and later reads of a file are what caching
# (attribute timeouts, the page cache) is for; each key is read 5 times.
results['read 1 KiB (open, read, close)'] = {
    'diskcachefs': per_op(read_file(mount_keys), 5 * N),
    'python-diskcache': per_op(lambda i: cache.get(f'k{i % N}'), 5 * N),
    'native': per_op(read_file(native), 5 * N),
}
print(json.dumps(results))
