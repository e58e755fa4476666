"""The tag-listing cells of `scripts/bench fs`: `os.listdir` of tags/T
through a diskcachefs mount against native directories of the same sizes.
Prints one JSON object: {"diskcachefs": {size: us/entry}, "diskcachefs,
tag index": {...}, "native": {...}, "rounds": n}, each the median of the
rounds.

usage: tags.py CACHE_DIR MOUNT NATIVE_DIR ROUNDS

The cache holds the three tags in one table, set by python-diskcache with
tag='T5000' etc. in one transaction, interleaved (entry i of T80000, every
4th of them also one of T20000, every 16th one of T5000), as tags
accumulate in a real cache. diskcache's default is no tag index; after the
first pass, `cache.create_tag_index()` and a second pass."""
import json, os, statistics, sys, time
import diskcache

cache_dir, mount, native, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
SIZES = (5_000, 20_000, 80_000)

cache = diskcache.Cache(cache_dir)
with cache.transact():
    for i in range(80_000):
        cache.set(f'a{i:06d}', b'v', tag='T80000')
        if i % 4 == 0:
            cache.set(f'b{i:06d}', b'v', tag='T20000')
        if i % 16 == 0:
            cache.set(f'c{i:06d}', b'v', tag='T5000')
for n in SIZES:
    d = os.path.join(native, f'T{n}')
    os.makedirs(d)
    for i in range(n):
        fd = os.open(os.path.join(d, f'k{i:06d}'), os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b'v')
        os.close(fd)


def listing_us_per_entry(d, n):
    t0 = time.perf_counter()
    names = os.listdir(d)
    dt = time.perf_counter() - t0
    if len(names) != n:
        raise SystemExit(f'{d}: {len(names)} entries, expected {n}')
    return dt * 1e6 / n


def passes():
    got = {n: [] for n in SIZES}
    for _ in range(rounds):
        # The kernel's attributes and entries from the last listing expire
        # after the mount's 1 s attr timeout.
        time.sleep(1.1)
        for n in SIZES:
            got[n].append(listing_us_per_entry(os.path.join(mount, 'tags', f'T{n}'), n))
    return {n: statistics.median(v) for n, v in got.items()}


result = {'rounds': rounds}
result['diskcachefs'] = passes()
native_got = {n: [] for n in SIZES}
for _ in range(rounds):
    for n in SIZES:
        native_got[n].append(listing_us_per_entry(os.path.join(native, f'T{n}'), n))
result['native'] = {n: statistics.median(v) for n, v in native_got.items()}
cache.create_tag_index()
result['diskcachefs, tag index'] = passes()
cache.close()
print(json.dumps(result))
