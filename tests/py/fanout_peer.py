"""The Python side of tests/fs_fanout.rs: python-diskcache's own FanoutCache.

    fanout_peer.py fill DIR        fill a 16-shard FanoutCache, its sub-stores too
    fanout_peer.py fresh DIR       an empty one with the same sub-stores
    fanout_peer.py dump DIR        every shard's and sub-store's entries, as JSON
    fanout_peer.py apply DIR OPS   run a JSON list of operations with FanoutCache's API
    fanout_peer.py drop-prefix DIR P   delete every str key that starts with P
"""
import json
import os
import pickle
import pickletools
import sys

import diskcache

SHARDS = 16


def enc(x, proto=5):
    if type(x) is str:
        return ['str', x]
    if type(x) is bytes:
        return ['bytes', x.hex()]
    if type(x) is int and -2**63 <= x < 2**63:
        return ['int', x]
    if type(x) is float:
        return ['float', x]
    return ['pickle', pickletools.optimize(pickle.dumps(x, protocol=proto)).hex()]


def dec(e):
    kind, data = e
    return {'str': lambda: data, 'bytes': lambda: bytes.fromhex(data), 'int': lambda: data,
            'float': lambda: data}[kind]()


def dump_cache(cache):
    out = []
    for k in cache:
        got = cache.get(k, expire_time=True, tag=True)
        if k not in cache:
            continue
        value, expire, tag = got
        out.append([enc(k), enc(value), expire, None if tag is None else enc(tag)])
    return sorted(out, key=json.dumps)


def sub_stores(d):
    found = {}
    for kind in ('cache', 'deque', 'index'):
        top = os.path.join(d, kind)
        for root, dirs, files in os.walk(top):
            if 'cache.db' in files:
                found[os.path.relpath(root, d)] = root
                dirs[:] = []
    return found


def fill(d):
    fc = diskcache.FanoutCache(d, shards=SHARDS)
    keys = [f'key-{i}' for i in range(120)] + ['ünïcode', b'\x00raw', 0, 7, -5, 2**40, 1.5, ('tuple', 1)]
    for i, k in enumerate(keys):
        tag = 'even' if i % 2 == 0 else (3 if i % 5 == 0 else None)
        expire = 3600 if i % 7 == 0 else None
        fc.set(k, f'value of {k!r}'.encode() * (1 + i % 3), expire=expire, tag=tag)
    fc.set('big', b'x' * 100_000)
    fc.set('an-int', 42)
    fc.set('a-str', 'text ü')
    sub = fc.cache('sub/name')
    sub.set('inner', b'inner value', tag='t')
    dq = fc.deque('jobs')
    dq.extend([b'job-1', b'job-2', b'job-3'])
    ix = fc.index('ix')
    ix['a'] = b'index a'
    fc.close()


def fresh(d):
    fc = diskcache.FanoutCache(d, shards=SHARDS)
    fc.cache('sub/name')
    fc.deque('jobs')
    fc.index('ix')
    fc.close()


def dump(d):
    n = 0
    while os.path.isfile(os.path.join(d, '%03d' % n, 'cache.db')):
        n += 1
    shards = [dump_cache(diskcache.Cache(os.path.join(d, '%03d' % i))) for i in range(n)]
    subs = {rel: dump_cache(diskcache.Cache(path)) for rel, path in sub_stores(d).items()}
    # Where FanoutCache looks for each key, and whether any is in two shards.
    fc = diskcache.FanoutCache(d, shards=n)
    misplaced = [repr(k) for i, s in enumerate(fc._shards) for k in s if fc._hash(k) % n != i]
    print(json.dumps({'shards': shards, 'subs': subs, 'misplaced': misplaced, 'check': fc.check()}))


def apply(d, ops):
    fc = diskcache.FanoutCache(d, shards=SHARDS)
    # The edit rule (docs/SEMANTICS.md, "Write"): a file made through the
    # mount, with none of our attributes set on it since, renamed over an
    # existing key rewrites it, keeping its tag, whichever shards the two
    # keys are in. What each key's file was: made here, and whether an
    # attribute was set on it.
    made, attrs = set(), set()
    for op in ops:
        kind = op[0]
        if kind == 'set':
            _, k, v = op
            k = dec(k)
            if k not in fc:
                made.add(k)
                attrs.discard(k)
            # A write through the mount keeps the entry's tag.
            _, tag = fc.get(k, tag=True)
            fc.set(k, bytes.fromhex(v), tag=tag)
        elif kind == 'delete':
            fc.delete(dec(op[1]))
            made.discard(dec(op[1]))
            attrs.discard(dec(op[1]))
        elif kind == 'rename':
            a, b = dec(op[1]), dec(op[2])
            got = fc.get(a, expire_time=True, tag=True)
            if a in fc and a != b:
                tag = got[2]
                if a in made and a not in attrs and b in fc:
                    tag = fc.get(b, tag=True)[1]
                fc.set(b, got[0], tag=tag)
                fc.delete(a)
                was_made, had_attrs = a in made, a in attrs
                made.discard(a)
                attrs.discard(a)
                made.discard(b)
                attrs.discard(b)
                if was_made:
                    made.add(b)
                if had_attrs:
                    attrs.add(b)
        elif kind == 'tag':
            k = dec(op[1])
            if k in fc:
                v, e, _ = fc.get(k, expire_time=True, tag=True)
                fc.set(k, v, tag=op[2])
                if k in made:
                    attrs.add(k)
    fc.close()


if __name__ == '__main__':
    cmd, d = sys.argv[1], sys.argv[2]
    if cmd == 'fill':
        fill(d)
    elif cmd == 'fresh':
        fresh(d)
    elif cmd == 'dump':
        dump(d)
    elif cmd == 'apply':
        apply(d, json.load(open(sys.argv[3])))
    elif cmd == 'drop-prefix':
        fc = diskcache.FanoutCache(d, shards=SHARDS)
        for k in [k for k in fc if isinstance(k, str) and k.startswith(sys.argv[3])]:
            del fc[k]
        fc.close()
