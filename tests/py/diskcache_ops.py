"""python-diskcache side of tests/engine_vs_python.rs.

  diskcache_ops.py pool                      -> JSON pools of pickled keys/values
  diskcache_ops.py run DIR SETTINGS OPS OUT  -> runs OPS (JSON list) on a cache at DIR
  diskcache_ops.py dump DIR                  -> the Cache and Settings tables as JSON

Keys and values are encoded as [type, data]: str as text, bytes/pickle as
hex, int/float as numbers. All operations of one step share a fake clock
(`now` in the op), patched into diskcache.core.time, so that expiry and
every stored time are deterministic.
"""
import json, os, pickle, pickletools, sqlite3, sys, time as real_time
import diskcache
import diskcache.core as core


class FakeTime:
    now = 0.0

    def time(self):
        return self.now

    def sleep(self, seconds):
        real_time.sleep(seconds)


CLOCK = FakeTime()
core.time = CLOCK


def decode(item):
    kind, data = item
    if kind == 'str':
        return data
    if kind == 'bytes':
        return bytes.fromhex(data)
    if kind in ('int', 'float'):
        return data
    if kind == 'pickle':
        return pickle.loads(bytes.fromhex(data))
    raise ValueError(kind)


def encode_value(v):
    if type(v) is bytes:
        return ['bytes', v.hex()]
    if type(v) is str:
        return ['str', v]
    if type(v) is int and -2**63 <= v < 2**63:
        return ['int', v]
    if type(v) is float:
        return ['float', v]
    # What diskcache pickles (including ints beyond 64 bits).
    return ['pickle', pickle.dumps(v, protocol=5).hex()]


def encode_key(k):
    if type(k) in (bytes, str, int, float):
        return encode_value(k)
    return ['pickle', pickletools.optimize(pickle.dumps(k, protocol=5)).hex()]


MISS = object()


def entry(result):
    if result[0] is MISS:
        return None
    value, expire, tag = result
    return [encode_value(value), expire, None if tag is None else encode_value(tag)]


def queue_item(result):
    (key, value), expire, tag = result
    if key is None:
        return None
    return [encode_key(key), encode_value(value), expire, None if tag is None else encode_value(tag)]


def run(directory, settings, ops):
    cache = diskcache.Cache(directory, **settings)
    out = []
    for op in ops:
        CLOCK.now = op['now']
        name = op['op']
        key = decode(op['key']) if 'key' in op else None
        value = decode(op['value']) if 'value' in op else None
        tag = decode(op['tag']) if op.get('tag') is not None else None
        try:
            if name == 'set':
                r = cache.set(key, value, expire=op['expire'], tag=tag)
            elif name == 'add':
                r = cache.add(key, value, expire=op['expire'], tag=tag)
            elif name == 'get':
                r = entry(cache.get(key, default=MISS, expire_time=True, tag=True))
            elif name == 'pop':
                r = entry(cache.pop(key, default=MISS, expire_time=True, tag=True))
            elif name == 'delete':
                r = cache.delete(key)
            elif name == 'contains':
                r = key in cache
            elif name in ('incr', 'decr'):
                n = getattr(cache, name)(key, op['delta'], default=op['default'])
                r = encode_value(n)
            elif name == 'touch':
                r = cache.touch(key, expire=op['expire'])
            elif name == 'expire':
                r = cache.expire()
            elif name == 'evict':
                r = cache.evict(tag)
            elif name == 'cull':
                r = cache.cull()
            elif name == 'clear':
                r = cache.clear()
            elif name == 'push':
                r = encode_key(cache.push(value, prefix=op['prefix'], side=op['side'], expire=op['expire'], tag=tag))
            elif name in ('pull', 'peek'):
                r = queue_item(getattr(cache, name)(prefix=op['prefix'], side=op['side'], expire_time=True, tag=True))
            elif name == 'peekitem':
                try:
                    (k, v), e, t = cache.peekitem(last=op['last'], expire_time=True, tag=True)
                    r = [encode_key(k), encode_value(v), e, None if t is None else encode_value(t)]
                except KeyError:
                    r = None
            elif name == 'len':
                r = len(cache)
            elif name == 'stats':
                r = list(cache.stats(enable=True))
            elif name == 'iterkeys':
                r = [encode_key(k) for k in cache.iterkeys(reverse=op['reverse'])]
            else:
                raise ValueError(name)
        except KeyError:
            r = {'error': 'KeyError'}
        except TypeError:
            r = {'error': 'TypeError'}
        out.append(r)
    cache.close()
    return out


def dump(directory):
    con = sqlite3.connect(os.path.join(directory, 'cache.db'))
    rows = []
    for row in con.execute(
        'SELECT rowid, key, raw, store_time, expire_time, access_time, access_count, tag, size, mode, '
        'filename, value FROM Cache ORDER BY rowid'
    ):
        rowid, key, raw, store, expire, access, count, tag, size, mode, filename, value = row

        def enc(v):
            return v.hex() if isinstance(v, bytes) else v

        content = None
        if filename is not None:
            with open(os.path.join(directory, filename), 'rb') as f:
                content = f.read().hex()
        rows.append([rowid, enc(key), type(key).__name__, raw, store, expire, access, count, enc(tag),
                     type(tag).__name__, size, mode, filename is not None, enc(value), type(value).__name__, content])
    settings = sorted(con.execute('SELECT key, value FROM Settings'))
    return {'rows': rows, 'settings': settings, 'page_count': con.execute('PRAGMA page_count').fetchone()[0]}


def fill(directory):
    """Stores every kind of key, value, tag and expiry python-diskcache has."""
    cache = diskcache.Cache(directory, statistics=1)
    CLOCK.now = real_time.time()
    cache.set('plain', b'bytes value')
    cache.set('a/b', 'str value é')
    cache.set(b'\x00raw', 42, tag='t-str')
    cache.set(-7, 3.25, tag=7)   # negative: 0..999999999999999 is the int queue's
    cache.set(-1.5, {'dict': [1, 2]}, tag=2.5)
    cache.set(('tuple', 1), b'x' * 100_000, tag=b'tb')               # file-backed bytes
    cache.set('big-str', 'line\r\nnext ' * 5000)                      # file-backed str (\r\n)
    cache.set('big-pickle', list(range(20_000)))                       # file-backed pickle
    cache.set('none', None)
    cache.set('bigint', 2**80)
    cache.set('expiring', b'soon', expire=3600)
    cache.set('empty', b'')
    for i in range(3):
        cache.push(f'job-{i}', prefix='jobs')
        cache.push(i * 10)
    cache.push('urgent', prefix='jobs', side='front')
    cache.get('plain')
    cache.get('missing')
    # Live when stored (a set culls what has already expired), expired by
    # the time anyone reads it: stored "10 s ago" with a 5 s expiry.
    CLOCK.now = real_time.time() - 10
    cache.set('expired', b'gone', expire=5)
    cache.close()


def read(directory):
    """Everything python-diskcache sees in a cache, encoded."""
    cache = diskcache.Cache(directory)
    CLOCK.now = real_time.time()
    entries = []
    for k in cache.iterkeys():
        got = cache.get(k, default=MISS, expire_time=True, tag=True)
        entries.append([encode_key(k), entry(got)])
    queues = {}
    for prefix in (None, 'jobs'):
        for side in ('front', 'back'):
            queues[f'{prefix}-{side}'] = queue_item(cache.peek(prefix=prefix, side=side, expire_time=True, tag=True))
    out = {
        'entries': entries,
        'queues': queues,
        'len': len(cache),
        'stats': [cache.reset('hits'), cache.reset('misses')],
        'check': [str(w.message) for w in cache.check()],
    }
    cache.close()
    return out


if __name__ == '__main__':
    if sys.argv[1] == 'pool':
        # Only objects diskcache pickles (not str, bytes, int in i64, float).
        values = [[], (1, 2), {'a': 1, 'b': [1, 2, 3]}, None, True, 2**70, list(range(400))]
        keys = [(1, 2), ('t', 'u'), (None,), (1.5, 'x'), frozenset()]
        print(json.dumps({
            'sqlite': sqlite3.sqlite_version,
            'values': [pickle.dumps(v, protocol=5).hex() for v in values],
            'keys': [pickletools.optimize(pickle.dumps(k, protocol=5)).hex() for k in keys],
        }))
    elif sys.argv[1] == 'run':
        with open(sys.argv[4]) as f:
            ops = json.load(f)
        with open(sys.argv[5], 'w') as f:
            json.dump(run(sys.argv[2], json.loads(sys.argv[3]), ops), f)
    elif sys.argv[1] == 'fill':
        fill(sys.argv[2])
    elif sys.argv[1] == 'read':
        print(json.dumps(read(sys.argv[2])))
    elif sys.argv[1] == 'dump':
        print(json.dumps(dump(sys.argv[2])))
