"""The reference view of a cache for the mounted tests (tests/fs_entries.rs).

  fs_oracle.py fill DIR      -> fills DIR with every key, value and tag type
  fs_oracle.py describe DIR  -> JSON list, in key order, of every live entry
                                as docs/SEMANTICS.md says the mount shows it

`describe` is written from docs/SEMANTICS.md alone, independently of the
Rust code: it reads the Cache table with sqlite3 (not through diskcache's
get, which would translate a file-backed str's newlines) and applies the
documented rules for names ("Keys to names"), content and
`user.diskcache.type` ("Content (read)") and the xattrs ("Extended
attributes"). A name over 255 bytes is `%sha256:` + the hex SHA-256 of the
full escaped name (docs/ENGINE.md, "Keys as names").
"""
import hashlib, json, os, sqlite3, sys, time
import diskcache

MODE_RAW, MODE_BINARY, MODE_TEXT, MODE_PICKLE = 1, 2, 3, 4


def pct(data):
    """Printable ASCII (0x21..0x7e) except % and / as is, other bytes %XX."""
    return ''.join(chr(b) if 0x21 <= b <= 0x7e and b not in (0x25, 0x2f) else '%%%02X' % b for b in data)


def full_name(kind, key):
    if kind == 'str':
        plain = key not in ('', '.', '..') and not key.startswith('%') and '/' not in key and '\0' not in key
        if plain and len(key.encode()) <= 255:
            return key
        return '%str:' + pct(key.encode())
    if kind == 'bytes':
        return '%bytes:' + pct(key)
    if kind == 'int':
        return '%int:' + str(key)
    if kind == 'float':
        return '%float:' + repr(key)
    return '%pickle:' + pct(key)


def name(kind, key):
    full = full_name(kind, key)
    if len(full.encode()) <= 255:
        return full
    return '%sha256:' + hashlib.sha256(full.encode()).hexdigest()


def part_name(part):
    """One part of a str key between slashes ("Keys as paths")."""
    plain = part not in ('', '.', '..') and not part.startswith('%') and '\0' not in part
    full = part if plain else '%str:' + pct(part.encode())
    if len(full.encode()) <= 255:
        return full
    return '%sha256:' + hashlib.sha256(full.encode()).hexdigest()


def path(kind, key, dirs):
    """The file's path below keys/: a str key's parts, each named; a key
    that is also a directory (in `dirs`) is that directory's %self."""
    if kind != 'str':
        return name(kind, key)
    p = '/'.join(part_name(x) for x in key.split('/'))
    return p + '/%self' if key + '/' in dirs else p


def scalar_kind(v):
    return {bytes: 'bytes', str: 'str', int: 'int', float: 'float'}[type(v)]


def tag_text(tag):
    if tag is None:
        return None
    if type(tag) is str and not tag.startswith('%'):
        return tag
    return full_name(scalar_kind(tag), tag)


def fill(directory):
    c = diskcache.Cache(directory)
    # Key types, each with a value type.
    c['plain'] = b'bytes value'
    c['nan value'] = float('nan')  # stored as a raw NULL; python reads None
    c['with space and \u00e9'] = 'utf-8 str'
    c['a/b'] = 'slash'
    c['%x'] = 'percent'
    c['.'] = 'dot'
    c['..'] = 'dotdot'
    c[''] = 'empty key'
    c['x' * 255] = 'longest plain name'
    c['y' * 300] = 'hashed str'
    c['\u00e9' * 128] = 'hashed: 256 UTF-8 bytes'
    c[b'\x00ab/%\xff'] = b'bytes key'
    c[b'k' * 300] = b'hashed bytes key'
    c[42] = 42
    c[-7] = 1e16
    c[1.5] = 0.1
    c[1e16] = -2.5
    c[('tuple', 1)] = {'dict': [1, 2]}
    c[frozenset()] = 2 ** 70  # an int beyond 64 bits is pickled
    # Value types stored in files (>= disk_min_file_size, 32 KiB).
    c['big bytes'] = bytes(range(256)) * 200
    c['big str'] = '\u00e9\r\n' * 20000  # MODE_TEXT: shown as stored
    c['big pickle'] = list(range(20000))
    c['empty bytes'] = b''
    c['empty str'] = ''
    # Tags of every type, expiry.
    c.set('tag str', b'1', tag='grp')
    c.set('tag pct', b'2', tag='%t/x')
    c.set('tag int', b'3', tag=3)
    c.set('tag float', b'4', tag=2.5)
    c.set('tag bytes', b'5', tag=b'\x01t')
    c.set('future', b'6', expire=86400 * 365, tag='grp')
    c.set('expired', b'7', expire=0.001)
    c.set(('expired', 'tuple'), b'8', expire=0.001)
    time.sleep(0.01)


def describe(directory):
    db = sqlite3.connect(os.path.join(directory, 'cache.db'))
    now = time.time()
    rows = db.execute(
        'SELECT key, raw, store_time, expire_time, access_time, tag, mode, filename, value'
        ' FROM Cache ORDER BY key, raw').fetchall()
    live = [r for r in rows if r[3] is None or r[3] > now]
    # Every directory: each prefix ending in / of a live str key.
    dirs = set()
    for r in live:
        if r[1] and type(r[0]) is str:
            parts = r[0].split('/')
            for i in range(1, len(parts)):
                dirs.add('/'.join(parts[:i]) + '/')
    out = []
    for key, raw, store_time, expire_time, access_time, tag, mode, filename, value in rows:
        if expire_time is not None and expire_time <= now:
            continue
        key_kind = scalar_kind(key) if raw else 'pickle'
        if mode == MODE_RAW and value is None:
            kind, content = 'none', b''  # what python-diskcache stores for float('nan')
        elif mode == MODE_RAW:
            kind = scalar_kind(value)
            content = value if kind == 'bytes' else (value if kind == 'str' else str(value)).encode()
        elif mode in (MODE_BINARY, MODE_TEXT):
            kind = 'bytes' if mode == MODE_BINARY else 'str'
            with open(os.path.join(directory, filename), 'rb') as f:
                content = f.read()
        else:
            kind = 'pickle'
            if filename is not None:
                with open(os.path.join(directory, filename), 'rb') as f:
                    content = f.read()
            else:
                content = bytes(value)
        out.append({
            'key': repr(key) if raw else repr(__import__('pickle').loads(key)),
            'name': name(key_kind, key),
            'path': path(key_kind, key, dirs),
            'content': content.hex(),
            'size': len(content),
            'type': kind,
            'key_type': key_kind,
            # Only a long key's file carries its full name (the %sha256: name cannot).
            'full_key': full if len((full := full_name(key_kind, key)).encode()) > 255 else None,
            'expire_time': None if expire_time is None else repr(expire_time),
            'tag': tag_text(tag),
            'store_time_us': round(store_time * 1e6),
            'access_time_us': round(access_time * 1e6),
        })
    print(json.dumps(out))


if __name__ == '__main__':
    {'fill': fill, 'describe': describe}[sys.argv[1]](sys.argv[2])
