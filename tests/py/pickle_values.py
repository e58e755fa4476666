"""The Python side of tests/fs_json_view.rs: caches of pickled values, and
what the mount's `json/` view must show for each (docs/SEMANTICS.md,
"Values as JSON (`json/`)").

    pickle_values.py CACHE_DIR OUT_JSON [--fanout] [MODE] [--meta META_JSON]
    pickle_values.py --compare EXPECTED_JSON ACTUAL_JSON

MODE (default: the values of the issue, with this module's classes and
numpy):
    --data-only            only standard-library values (must audit clean)
    --malicious MARKER     hand-assembled pickles that would each run
                           `touch MARKER` if unpickled (stored raw, never
                           unpickled here), and pickles the reader refuses
    --random SEED N        N random nested values, random protocols 0..5

The cache is python-diskcache 5.6.3's `Cache(CACHE_DIR)`, or with
`--fanout` its `FanoutCache(CACHE_DIR, shards=4)`. OUT_JSON maps each
entry's name in `keys/` (a str key is its path, `dir/sub/nested_model`; a
pickled key its `%pickle:` name) to the JSON document its `json/` file must
hold, computed here from the Python object by the spec's tables (never by
unpickling with a renderer under test). Two patterns stand where the spec
leaves the text open: `{"__expect_any_str__": true}` (any string) and
`{"__expect_one_of__": [A, B]}` (A or B).

META_JSON says what `audit` and `user.diskcache.imports` must say:
    {"entries": N, "substore_entries": S (of the N, those in sub-stores),
     "pickles": [{"name": NAME, "flat": FLAT, "in": "key" | "value",
                  "imports": [...] | null,   # null: not checked
                  "not_allowed": [...], "error": bool,
                  "substore": true (only on an entry of a FanoutCache's
                                    sub-store, named by its path in the
                                    mount: cache/sub/evil)}, ...]}
`imports` are the distinct names in the order the pickle names them (as
Python 3 names them: a protocol 0-2 pickle's `__builtin__` is `builtins`),
recorded by a `find_class` that sees every name Python's own unpickler
looks up; `not_allowed` those outside the spec's built-in allow-list.

--compare reads EXPECTED_JSON (as OUT_JSON) and ACTUAL_JSON (a map of name
to the text the view served) and prints a JSON list of mismatches (empty:
all equal). A text must be exactly `json.dumps(doc, indent=2,
ensure_ascii=False) + "\\n"` of the document it parses to (so Python's
layout, float repr and escapes), and the document must equal the expected
one with strict types (1 is not 1.0 nor true); an object's keys must be the
same, and those that are not `__dunder__` keys in the same order (a dict's
items in the pickle's order; a model's fields, then its extra fields).
"""
import base64
import collections
import copyreg
import datetime
import decimal
import enum
import fractions
import hashlib
import io
import json
import math
import os
import pathlib
import pickle
import pickletools
import random
import sqlite3
import sys
import uuid
import zoneinfo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import diskcache  # noqa: E402
from diskcache.core import MODE_PICKLE, UNKNOWN  # noqa: E402

UNIQUE = 'ZEBRA-ONLY-INSIDE-PICKLE-7731'

# ---------------------------------------------------------------------------
# The expected rendering, from the object pickle writes (docs/SEMANTICS.md's
# tables).


def path_of(obj):
    return obj.__module__ + '.' + obj.__qualname__


def class_path(o):
    return path_of(type(o))


def r_float(x):
    if math.isnan(x):
        return 'nan'
    if math.isinf(x):
        return 'inf' if x > 0 else '-inf'
    return x


def _no_constants(name):
    raise ValueError('not JSON: ' + name)


def parse_json_text(s):
    """The object or array a str holds (after white space), else None."""
    t = s.strip(' \t\n\r')
    if t[:1] not in ('{', '['):
        return None
    try:
        doc = json.loads(t, parse_constant=_no_constants)
    except ValueError:
        return None
    return doc if isinstance(doc, (dict, list)) else None


def r_parsed(doc):
    """A document parsed from a str: its strings holding JSON objects or
    arrays parsed too."""
    if isinstance(doc, dict):
        return {k: r_parsed(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [r_parsed(v) for v in doc]
    if isinstance(doc, str):
        return r_str(doc)
    if isinstance(doc, float):
        return r_float(doc)
    return doc


def r_str(s):
    doc = parse_json_text(s)
    return s if doc is None else r_parsed(doc)


def r_bytes(b, text_key, base64_key):
    try:
        return {text_key: bytes(b).decode('utf-8')}
    except UnicodeDecodeError:
        return {base64_key: base64.b64encode(bytes(b)).decode('ascii')}


def dict_key(k, active):
    if type(k) is str:
        return k
    return json.dumps(render(k, active), separators=(',', ':'), ensure_ascii=False)


def r_items(items, active):
    out = {}
    for k, v in items:
        # A repeated key keeps its first place and its last value (Python's
        # dict assignment).
        out[dict_key(k, active)] = render(v, active)
    return out


def r_numpy(a):
    import numpy as np

    if isinstance(a, np.ndarray):
        doc = {'__class__': 'numpy.ndarray', 'dtype': str(a.dtype), 'shape': list(a.shape)}
        if a.dtype.kind in 'biuf' and a.size <= 1000:
            doc['values'] = render(a.tolist(), set())
        return doc
    return render(a.item(), set())


def r_datetime(d):
    if isinstance(d.tzinfo, zoneinfo.ZoneInfo):
        return d.replace(tzinfo=None).isoformat() + '[' + d.tzinfo.key + ']'
    return d.isoformat()


def r_state(doc, state, active):
    """An object's state, as the spec's objects row says."""
    if state is None:
        return doc
    if isinstance(state, dict) and '__pydantic_fields_set__' in state and '__dict__' in state:
        doc.update(r_items(state['__dict__'].items(), active))
        doc.update(r_items((state.get('__pydantic_extra__') or {}).items(), active))
        private = state.get('__pydantic_private__')
        if private:
            doc['__private__'] = r_items(private.items(), active)
        return doc
    if isinstance(state, dict):
        doc.update(r_items(state.items(), active))
        return doc
    if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
        for part in state:
            doc.update(r_items((part or {}).items(), active))
        return doc
    doc['__state__'] = render(state, active)
    return doc


def r_reduce(o, proto, active):
    """What `o.__reduce_ex__(proto)` makes pickle write, rendered: for the
    classes the spec names no row of its own for."""
    # As pickle does: copyreg's table first (complex is registered there).
    reducer = copyreg.dispatch_table.get(type(o))
    rv = reducer(o) if reducer is not None else o.__reduce_ex__(proto)
    rv = tuple(rv) + (None,) * (5 - len(rv))
    func, args, state, listitems, dictitems = rv
    if func is copyreg.__newobj__:
        doc = {'__class__': path_of(args[0])}
        if args[1:]:
            doc['__args__'] = [render(a, active) for a in args[1:]]
    elif func is copyreg.__newobj_ex__:
        cls, a, kw = args
        doc = {'__class__': path_of(cls)}
        if a:
            doc['__args__'] = [render(x, active) for x in a]
        if kw:
            doc['__kwargs__'] = r_items(kw.items(), active)
    else:
        doc = {'__reduce__': path_of(func), '__args__': [render(a, active) for a in args]}
    r_state(doc, state, active)
    if listitems is not None:
        doc['__items__'] = [render(x, active) for x in listitems]
    if dictitems is not None:
        doc['__entries__'] = r_items(dictitems, active)
    return doc


def render(o, active=None, proto=5):
    """The JSON document the spec shows for object `o` inside a pickle."""
    import dataclasses

    import pydantic

    active = set() if active is None else active
    t = type(o)
    if o is None or t is bool or t is int:
        return o
    if t is float:
        return r_float(o)
    if t is str:
        return r_str(o)
    if t is bytes:
        return r_bytes(o, '__bytes__', '__base64__')
    if t is bytearray:
        return r_bytes(o, '__bytearray__', '__bytearray_base64__')
    if t is datetime.datetime:
        return r_datetime(o)
    if t in (datetime.date, datetime.time):
        return o.isoformat()
    if t in (datetime.timedelta, datetime.timezone, decimal.Decimal, uuid.UUID, fractions.Fraction):
        return str(o)
    if t.__module__ == 'numpy' or t.__module__.startswith('numpy.'):
        return r_numpy(o)
    # Containers: an object inside itself is {"__cycle__": true} where it
    # recurs.
    if id(o) in active:
        return {'__cycle__': True}
    active.add(id(o))
    try:
        if t in (list, tuple, set, frozenset, collections.deque):
            return [render(x, active) for x in o]
        if t in (dict, collections.OrderedDict, collections.defaultdict, collections.Counter):
            return r_items(o.items(), active)
        if isinstance(o, pydantic.BaseModel):
            doc = {'__class__': class_path(o)}
            return r_state(doc, o.__getstate__(), active)
        if isinstance(o, enum.Enum):
            return {'__reduce__': class_path(o), '__args__': [render(o.value, active)]}
        if dataclasses.is_dataclass(o):
            return r_state({'__class__': class_path(o)}, vars(o), active)
        if isinstance(o, tuple) and hasattr(t, '_fields'):
            return {'__class__': class_path(o), '__args__': [render(x, active) for x in o]}
        return r_reduce(o, proto, active)
    finally:
        active.discard(id(o))


def render_top(v):
    """An entry's value: python-diskcache stores str, bytes, 64-bit ints and
    floats natively (a NaN float is SQLite's NULL, which reads as None),
    everything else pickled."""
    if type(v) is float and math.isnan(v):
        return None
    return render(v)


# ---------------------------------------------------------------------------
# Names in keys/ and what a pickle names.


def percent_encode(b):
    return ''.join(chr(c) if 0x21 <= c <= 0x7E and c not in (0x25, 0x2F) else '%%%02X' % c for c in b)


def bounded(name):
    if len(name.encode('utf-8')) > 255:
        return '%sha256:' + hashlib.sha256(name.encode('utf-8')).hexdigest()
    return name


def key_pickle(key, proto):
    """The bytes python-diskcache's Disk.put stores for a pickled key."""
    return pickletools.optimize(pickle.dumps(key, protocol=proto))


def names_of(key, raw_key_pickle=None):
    """(name in keys/, flat name) of a key (the simple keys of this script)."""
    if raw_key_pickle is not None:
        n = bounded('%pickle:' + percent_encode(raw_key_pickle))
        return n, n
    assert type(key) is str and key and not key.startswith('%') and '\0' not in key, key
    parts = key.split('/')
    assert all(p not in ('', '.', '..') and len(p.encode()) <= 255 for p in parts), key
    flat = key if len(parts) == 1 else bounded('%str:' + percent_encode(key.encode('utf-8')))
    return key, flat


ALLOWED = {
    'builtins.' + n
    for n in 'bool bytearray bytes complex dict float frozenset int list object range set slice str tuple'.split()
} | {
    'copyreg._reconstructor',
    'copyreg.__newobj__',
    'copyreg.__newobj_ex__',
    '_codecs.encode',
    'collections.OrderedDict',
    'collections.defaultdict',
    'collections.deque',
    'collections.Counter',
    'datetime.date',
    'datetime.datetime',
    'datetime.time',
    'datetime.timedelta',
    'datetime.timezone',
    'decimal.Decimal',
    'fractions.Fraction',
    'uuid.UUID',
    'uuid.SafeUUID',
    'zoneinfo.ZoneInfo._unpickle',
    'pathlib.PurePosixPath',
    'pathlib.PosixPath',
    'pathlib.PureWindowsPath',
    'pathlib.WindowsPath',
}


class Recorder(pickle._Unpickler):
    """Python's own (pure Python) unpickler, noting each name it looks up,
    mapped as it maps Python 2's names. Run on this script's own pickles
    only."""

    def __init__(self, data):
        super().__init__(io.BytesIO(data))
        self.names = []

    def find_class(self, module, name):
        import _compat_pickle

        m, n = module, name
        if self.proto < 3 and self.fix_imports:
            if (m, n) in _compat_pickle.NAME_MAPPING:
                m, n = _compat_pickle.NAME_MAPPING[(m, n)]
            elif m in _compat_pickle.IMPORT_MAPPING:
                m = _compat_pickle.IMPORT_MAPPING[m]
        self.names.append(m + '.' + n)
        return super().find_class(module, name)


def distinct(names):
    out = []
    for n in names:
        if n not in out:
            out.append(n)
    return out


def audit_record(name, flat, where, data):
    """What audit and user.diskcache.imports must say of a pickle this
    script made (it is unpickled here to watch which names it looks up)."""
    rec = Recorder(data)
    rec.load()
    names = distinct(rec.names)
    if 'builtins.getattr' in names:
        # A ZoneInfo pickles as getattr(zoneinfo.ZoneInfo, '_unpickle')(key,
        # 1): the spec allows it as `zoneinfo.ZoneInfo._unpickle` but does
        # not say how the list spells the getattr, so the list is not
        # checked; everything else must be allowed.
        assert names == distinct(names) and 'zoneinfo.ZoneInfo' in names, names
        folded = ['zoneinfo.ZoneInfo._unpickle' if n == 'zoneinfo.ZoneInfo' else n for n in names]
        folded.remove('builtins.getattr')
        return {'name': name, 'flat': flat, 'in': where, 'imports': None,
                'not_allowed': [n for n in folded if n not in ALLOWED], 'error': False}
    return {'name': name, 'flat': flat, 'in': where, 'imports': names,
            'not_allowed': [n for n in names if n not in ALLOWED], 'error': False}


# ---------------------------------------------------------------------------
# Filling a cache.


class Raw:
    """Pickle bytes to store as they are (a key or a MODE_PICKLE value)."""

    def __init__(self, data):
        self.data = data


class RawDisk(diskcache.Disk):
    """python-diskcache's Disk, but a `Raw` key or value is stored as the
    pickle bytes it holds, never unpickled nor pickled again."""

    def put(self, key):
        if type(key) is Raw:
            return sqlite3.Binary(key.data), False
        return super().put(key)

    def store(self, value, read, key=UNKNOWN):
        if type(value) is Raw:
            return 0, MODE_PICKLE, None, sqlite3.Binary(value.data)
        return super().store(value, read, key=key)


class Filler:
    def __init__(self, directory, fanout):
        if fanout:
            self.cache = diskcache.FanoutCache(directory, shards=4, disk=RawDisk, timeout=60)
        else:
            self.cache = diskcache.Cache(directory, disk=RawDisk)
        self.proto = None
        self.expected = {}
        self.meta = []
        self.entries = 0
        self.substore_entries = 0

    def protocol(self, proto):
        if proto != self.proto:
            # disk_pickle_protocol is the setting python-diskcache pickles
            # with (reset() sets the Disk's attribute, in every shard of a
            # FanoutCache).
            self.cache.reset('disk_pickle_protocol', proto)
            self.proto = proto

    def put(self, key, value, proto=pickle.HIGHEST_PROTOCOL, expected=UNKNOWN):
        """Stores `value` under the str or pickled key `key` as
        python-diskcache does with pickle protocol `proto`."""
        self.protocol(proto)
        raw_key = None
        if type(key) is not str:
            raw_key = key_pickle(key, proto)
        name, flat = names_of(key, raw_key)
        assert name not in self.expected, name
        assert self.cache.set(key, value)
        self.entries += 1
        self.expected[name] = render_top(value) if expected is UNKNOWN else expected
        if raw_key is not None:
            self.meta.append(audit_record(name, flat, 'key', raw_key))
        stored = self.stored_value(key)
        if stored is not None:
            self.meta.append(audit_record(name, flat, 'value', stored))
        return name

    def stored_value(self, key):
        """The pickle python-diskcache stored for `key`'s value, if it pickled
        it (read from the row, not unpickled)."""
        cache = self.cache
        if isinstance(cache, diskcache.FanoutCache):
            cache = cache._shards[cache._hash(key) % cache._count]
        db_key, raw = cache._disk.put(key)
        ((mode, filename, value),) = cache._sql(
            'SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = ?', (db_key, raw)).fetchall()
        if mode != MODE_PICKLE:
            return None
        if filename is not None:
            with open(os.path.join(cache.directory, filename), 'rb') as f:
                return f.read()
        return bytes(value)

    def put_raw(self, key, data, expected, meta):
        """Stores pickle bytes `data` as the value of `key` (a str, or a
        `Raw` pickled key), never unpickling them."""
        if type(key) is Raw:
            name, flat = names_of(None, key.data)
        else:
            name, flat = names_of(key)
        value = Raw(data) if data is not None else 'harmless'
        assert self.cache.set(key, value)
        self.entries += 1
        self.expected[name] = expected
        for m in meta:
            self.meta.append(dict({'name': name, 'flat': flat, 'imports': None, 'not_allowed': [], 'error': False}, **m))
        return name

    def close(self, out_json, meta_json):
        self.protocol(pickle.HIGHEST_PROTOCOL)
        self.cache.close()
        with open(out_json, 'w') as f:
            json.dump(self.expected, f, ensure_ascii=False, indent=1)
        if meta_json:
            with open(meta_json, 'w') as f:
                json.dump({'entries': self.entries, 'substore_entries': self.substore_entries, 'pickles': self.meta},
                          f, ensure_ascii=False, indent=1)


# ---------------------------------------------------------------------------
# The values.

TZ1 = datetime.timezone(datetime.timedelta(hours=1))


def stdlib_values(classes):
    """A dict of the standard library's data types (and, with `classes`,
    an Enum member)."""
    shared = [1, 2]
    d = {
        'datetime': datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=TZ1),
        'naive': datetime.datetime(1999, 12, 31, 23, 59, 59),
        'utc': datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.timezone.utc),
        'date': datetime.date(2026, 5, 6),
        'time': datetime.time(3, 4, 5, 6),
        'timedelta': datetime.timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=5),
        'negative_timedelta': datetime.timedelta(days=-1, seconds=5),
        'timezone_utc': datetime.timezone.utc,
        'timezone_offset': datetime.timezone(datetime.timedelta(hours=5, minutes=30)),
        'timezone_named': datetime.timezone(datetime.timedelta(hours=-5), 'EST'),
        'decimal': decimal.Decimal('1.10'),
        'decimal_exp': decimal.Decimal('-1E+3'),
        'uuid': uuid.UUID('12345678-1234-5678-1234-567812345678'),
        'fraction': fractions.Fraction(1, 3),
        'set': {3, 1, 2, 100, -7},
        'frozenset': frozenset({'a'}),
        'tuple': (1, 'two', 3.0),
        'empty_tuple': (),
        'bytes': 'hello ✓'.encode('utf-8'),
        'binary': b'\x00\xff\x10',
        'empty_bytes': b'',
        'bytearray': bytearray(b'mutable'),
        'bytearray_binary': bytearray(b'\xff\xfe'),
        'big': 2**70,
        'negative_big': -2**100,
        'int64_max': 2**63 - 1,
        'inf': float('inf'),
        'negative_inf': float('-inf'),
        'nan': float('nan'),
        'negative_zero': -0.0,
        'tiny': 5e-324,
        'huge': 1e16,
        'tenth': 0.1,
        'none': None,
        'true': True,
        'false': False,
        'deque': collections.deque([1, 'b']),
        'counter': collections.Counter({'a': 2, 'b': 1}),
        'ordered': collections.OrderedDict([('z', 1), ('a', 2)]),
        'default': collections.defaultdict(list, {'k': [1]}),
        'other_keys': {1: 'one', None: 'nil', (1, 'a'): 'pair', 2.5: 'float', b'k': 'bytes'},
        'repeated_key': {1: 'int-one', 'x': 0, '1': 'str-one'},
        'shared': [shared, shared],
        'unicode': 'héllo ✓ 😀 "quoted" \\ \n\t\x01\x7f\u2028',
    }
    if classes:
        from pickle_classes import Color, Mood

        d['enum'] = Color.RED
        d['str_enum'] = Mood.STORMY
    return d


def stdlib_more():
    """Standard-library classes with no row of their own: REDUCE and NEWOBJ
    calls (pickled with protocol 5)."""
    return {
        'complex': complex(1, 2),
        'range': range(0, 10, 2),
        'slice': slice(1, 5, None),
        'path': pathlib.PurePosixPath('a/b'),
    }


def nested_data(classes):
    """The same nested data for every protocol."""
    d = {
        'when': datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=TZ1),
        'day': datetime.date(2026, 5, 6),
        'delta': datetime.timedelta(hours=36, microseconds=1),
        'price': decimal.Decimal('19.99'),
        'id': uuid.UUID('87654321-4321-8765-4321-876543218765'),
        'tags': {1, 2, 3},
        'frozen': frozenset({9}),
        'pair': (1, 'a'),
        'blob': b'\x00\x01\xfe',
        'text_bytes': b'abc',
        'empty_bytes': b'',
        'array': bytearray(b'xy'),
        'big': 2**70,
        'negative': -5,
        'int32': 2**31 - 1,
        'int40': 2**40,
        'f': 0.1,
        'none': None,
        'flags': [True, False],
        'od': collections.OrderedDict([('b', 1), ('a', [2])]),
        'dd': collections.defaultdict(list, {'k': [1]}),
        'empty': [],
        'empty_dict': {},
        'unicode': 'héllo ✓ 😀\nline',
        'int_keys': {1: 'one', 2: 'two'},
        'deep': [[[['bottom']]]],
    }
    if classes:
        from pickle_classes import Color, Job

        d['job'] = Job('build', 3, datetime.date(2026, 5, 6), ['x', 'y'], Color.GREEN)
        d['color'] = Color.GREEN
    return d


def litellm_entry():
    response = {
        'id': 'chatcmpl-1',
        'object': 'chat.completion',
        'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': 'hi', 'tool_calls': None}}],
        'usage': {'prompt_tokens': 5, 'completion_tokens': 7, 'total_tokens': 12},
        'created': 1767225600,
        'temperature': 0.7,
    }
    return {'timestamp': 1.5, 'response': json.dumps(response)}


def instructor_entry():
    raw = {'id': 'msg_1', 'content': [{'type': 'tool_use', 'input': {'a': 1}}], 'inner': json.dumps([1, {'b': 2}])}
    return {'model': json.dumps({'name': 'x', 'score': 0.25}), 'raw': json.dumps(raw, indent=2)}


def fill_values(f, classes):
    """The issue's values (`classes`: also pydantic, dataclass, namedtuple,
    Enum and numpy)."""
    # Natively stored values (the first table).
    f.put('json_str', '  {"a": 1, "nested": "[1, 2]", "list": [{"b": null}], "s": "{\\"c\\": [true]}"}\n')
    f.put('plain_str', 'just text, not JSON')
    f.put('number_str', '42')
    f.put('raw_bytes', 'utf-8 text ✓'.encode('utf-8'))
    f.put('raw_binary', b'\x80\x81\x00')
    f.put('raw_int', 42)
    f.put('raw_negative_int', -7)
    f.put('raw_float', 1.5)
    f.put('raw_float_exponent', 1e16)
    f.put('raw_inf', float('inf'))
    f.put('raw_nan_is_none', float('nan'))
    f.put('raw_true', True)
    f.put('big_text', 'lorem ipsum ' * 4000)
    f.put('big_json_text', json.dumps({'items': list(range(8000)), 'inner': json.dumps({'deep': True})}))
    # Pickled.
    f.put('stdlib_dict', stdlib_values(classes))
    f.put('zoneinfo_datetime', {'paris': datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=zoneinfo.ZoneInfo('Europe/Paris')),
                                'utc': datetime.datetime(2026, 7, 1, 12, 0, tzinfo=zoneinfo.ZoneInfo('UTC'))})
    f.put('stdlib_more', stdlib_more(), expected={k: render(v, proto=5) for k, v in stdlib_more().items()})
    f.put('ordered_dict', collections.OrderedDict([('z', 1), ('a', 2), ('m', [3])]))
    f.put('default_dict', collections.defaultdict(list, {'a': [1], 'b': []}))
    f.put('litellm', litellm_entry())
    f.put('instructor', instructor_entry())
    f.put('strings', ['[not json', '{"a": }', ' 42 ', '"quoted"', '{}', '[]', '\t[1, "[2]"]\n', 'null', '[NaN]'])
    f.put('big_pickle', [{'i': i, 's': 'row-%d' % i} for i in range(3000)])
    cyc = [1]
    cyc.append(cyc)
    selfdict = {'a': 1}
    selfdict['self'] = selfdict
    f.put('cycle', {'list': cyc, 'dict': selfdict})
    f.put(('tuple', 'key', 1), 'a value under a pickled key')
    for proto in range(6):
        f.put('proto%d' % proto, nested_data(classes), proto=proto)
    f.put('dir/sub/other', 'plain')
    f.put('dir/top', {'x': 1})
    if not classes:
        return
    import numpy as np
    from pickle_classes import Color, Inner, Job, Mood, Outer, Point, Registry

    model = Outer(
        id=7,
        inner=Inner(name='inner-1', when=datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=TZ1), tags=['a', 'b']),
        note=UNIQUE,
        ratio=0.1,
        extra_field={'k': [1, 2.5]},
    )
    model._secret = 's3cr3t'
    f.put('pydantic_model', model)
    f.put('dataclass', Job('build', 3, datetime.date(2026, 5, 6), ['x', 'y'], Color.GREEN))
    f.put('namedtuple', Point(1, -2.5, 'p'))
    f.put('enum', Color.RED)
    f.put('dir/sub/nested_model', Registry.Entry(key='k1', size=3, mood=Mood.CALM))
    f.put('numpy_small', np.array([[0.5, 1.25, -2.0], [3.0, 1e-3, float('nan')]], dtype=np.float64))
    f.put('numpy_int32', np.array([1, -2, 3, 2**31 - 1], dtype=np.int32))
    f.put('numpy_proto2', np.array([[0.5, 1.25, -2.0], [3.0, 1e-3, 7.0]]), proto=2)
    f.put('numpy_large', np.arange(1001, dtype=np.int64))
    f.put('numpy_scalars', {
        'f64': np.float64(2.5),
        'f32': np.float32(0.1),
        'i32': np.int32(-7),
        'u8': np.uint8(200),
        'bools': np.array([True, False]),
        'uint': np.array([[1], [2]], dtype=np.uint16),
    })


# ---------------------------------------------------------------------------
# Malicious pickles: each would run `touch MARKER` if unpickled.


def short_str(s):
    """SHORT_BINUNICODE."""
    b = s.encode('utf-8')
    assert len(b) < 256
    return b'\x8c' + bytes([len(b)]) + b


def bin_str(s):
    """BINUNICODE."""
    b = s.encode('utf-8')
    return b'X' + len(b).to_bytes(4, 'little') + b


def malicious_pickles(marker):
    """name -> (pickle bytes, expected rendering, names it calls).
    Hand-assembled: Python's pickler never writes some of these forms."""
    cmd = 'touch ' + marker
    assert "'" not in cmd and '\n' not in cmd
    out = {}
    # (a) The classic: protocol 0 GLOBAL and REDUCE.
    out['os_system_proto0'] = (
        b"cos\nsystem\n(S'" + cmd.encode() + b"'\ntR.",
        {'__reduce__': 'os.system', '__args__': [cmd]},
        ['os.system'],
    )
    # (b) Memo confusion: MEMOIZE stores at len(memo), BINPUT at the index
    # it names. After BINPUT 0 and four MEMOIZEs the memo is {0: 'pad',
    # 1: 'os', 2: 'datetime', 3: 'system', 4: 'date'}; a scanner that counts
    # MEMOIZEs from 0 by itself (forgetting the BINPUT) has {0: 'os',
    # 1: 'datetime', 2: 'system', 3: 'date'} and reads BINGET 1, BINGET 3
    # as the harmless datetime.date.
    out['memo_confusion'] = (
        b'\x80\x04('
        + short_str('pad') + b'q\x00'
        + short_str('os') + b'\x94'
        + short_str('datetime') + b'\x94'
        + short_str('system') + b'\x94'
        + short_str('date') + b'\x94'
        + b'1'  # POP_MARK: the strings leave the stack, stay in the memo
        + b'h\x01h\x03\x93'  # BINGET 1, BINGET 3, STACK_GLOBAL
        + short_str(cmd) + b'\x85R.',
        {'__reduce__': 'os.system', '__args__': [cmd]},
        ['os.system'],
    )
    # (c) The global itself through the memo: STACK_GLOBAL, MEMOIZE, POP;
    # later BINGET and REDUCE, the result appended to a list.
    out['memoized_global'] = (
        b'\x80\x04]\x94'
        + short_str('posix') + short_str('system') + b'\x93\x94'
        + b'0'  # POP
        + b'h\x01' + short_str(cmd) + b'\x85R'
        + b'a.',
        [{'__reduce__': 'posix.system', '__args__': [cmd]}],
        ['posix.system'],
    )
    # (d) builtins.eval through protocol 2's GLOBAL.
    code = "__import__('os').system('%s')" % cmd
    out['builtins_eval'] = (
        b'\x80\x02cbuiltins\neval\nq\x00' + bin_str(code) + b'q\x01\x85q\x02Rq\x03.',
        {'__reduce__': 'builtins.eval', '__args__': [code]},
        ['builtins.eval'],
    )
    # (e) subprocess.Popen deep in a list: [1, [2, Popen(['touch', MARKER])]].
    out['popen_nested'] = (
        b'\x80\x02](K\x01](K\x02csubprocess\nPopen\n](' + bin_str('touch') + bin_str(marker) + b'e\x85Ree.',
        [1, [2, {'__reduce__': 'subprocess.Popen', '__args__': [['touch', marker]]}]],
        ['subprocess.Popen'],
    )
    # (f) Python 2's module name: `__builtin__` is `builtins` to Python 3.
    code = "import os; os.system('%s')" % cmd
    out['py2_builtin_exec'] = (
        b'\x80\x02c__builtin__\nexec\n' + bin_str(code) + b'\x85R.',
        {'__reduce__': {'__expect_one_of__': ['builtins.exec', '__builtin__.exec']}, '__args__': [code]},
        ['builtins.exec'],
    )
    # (g) The dangerous call beside allowed ones: only it is not allowed.
    out['mixed'] = (
        b'\x80\x02}(' + bin_str('ok') + b'ccollections\nOrderedDict\n)R'
        + bin_str('bad') + b'cos\nsystem\n' + bin_str(cmd) + b'\x85Ru.',
        {'ok': {}, 'bad': {'__reduce__': 'os.system', '__args__': [cmd]}},
        ['collections.OrderedDict', 'os.system'],
    )
    return out


def malicious_key(marker):
    """A pickled key that would run `touch MARKER`."""
    return b'cposix\nsystem\n(Vtouch ' + marker.encode() + b'\ntR.'


# Pickles the reader refuses (name -> bytes).
REFUSED = {
    'truncated': b'\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x05ab',
    'persistent_id': b'\x80\x04' + short_str('abc') + b'\x94Q.',
    'out_of_band_buffer': b'\x80\x05\x97.',
}


def fill_malicious(f, marker):
    for name, (data, expected, calls) in malicious_pickles(marker).items():
        not_allowed = [n for n in calls if n not in ALLOWED]
        f.put_raw(name, data, expected, [{'in': 'value', 'imports': calls, 'not_allowed': not_allowed}])
    f.put_raw(Raw(malicious_key(marker)), None, 'harmless',
              [{'in': 'key', 'imports': ['posix.system'], 'not_allowed': ['posix.system']}])
    for name, data in REFUSED.items():
        f.put_raw(name, data, {'__error__': {'__expect_any_str__': True}, '__pickle_bytes__': len(data)},
                  [{'in': 'value', 'error': True}])
    # And a harmless pickle beside them.
    f.put('harmless_pickle', {'a': [1, 2]}, proto=5)
    if isinstance(f.cache, diskcache.FanoutCache):
        # A FanoutCache's sub-store (a plain Cache in DIR/cache/sub): the
        # audit reads it too, and names its entries by their paths in the
        # mount. Its entries are not in OUT_JSON (the top-level json/).
        sub = f.cache.cache('sub')
        data, expected, calls = malicious_pickles(marker)['os_system_proto0']
        assert sub.set('evil', Raw(data))
        assert sub.set('fine', 'a str')
        f.entries += 2
        f.substore_entries += 2
        f.meta.append({'name': 'cache/sub/evil', 'flat': 'cache/sub/evil', 'in': 'value', 'imports': calls,
                       'not_allowed': calls, 'error': False, 'substore': True})


# ---------------------------------------------------------------------------
# Random values.

JSON_WS = ' \t\n\r'


class RandomValues:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.made = []

    def text(self, n_max=12):
        rng = self.rng
        pools = [
            'abcxyz0123 _-',
            'é✓😀中文ßΩ',
            '"\\/\n\t\r\x00\x01\x1f\x7f\u2028\u00a0',
        ]
        s = ''.join(rng.choice(rng.choice(pools)) for _ in range(rng.randrange(n_max)))
        if s.strip()[:1] in ('{', '['):
            s = 'x' + s
        return s

    def json_doc(self, depth):
        rng = self.rng
        kind = rng.randrange(8 if depth < 3 else 5)
        if kind == 0:
            return None
        if kind == 1:
            return rng.choice([True, False])
        if kind == 2:
            return rng.choice([rng.randrange(-2**53, 2**53), rng.randrange(-100, 100)])
        if kind == 3:
            return rng.choice([rng.uniform(-1e6, 1e6), 0.5, -0.0, 1e-7, 1e22])
        if kind == 4:
            if rng.random() < 0.2 and depth < 3:
                return self.json_text(depth + 1)
            return self.text()
        if kind == 5:
            return [self.json_doc(depth + 1) for _ in range(rng.randrange(4))]
        return {self.text(6) + str(i): self.json_doc(depth + 1) for i in range(rng.randrange(4))}

    def json_text(self, depth=0):
        rng = self.rng
        doc = self.json_doc(depth + 1)
        doc = [doc] if rng.random() < 0.5 else {'k': doc}
        text = json.dumps(doc, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 2]))
        lead = ''.join(rng.choice(JSON_WS) for _ in range(rng.randrange(3)))
        trail = ''.join(rng.choice(JSON_WS) for _ in range(rng.randrange(3)))
        return lead + text + trail

    def scalar(self):
        rng = self.rng
        kind = rng.choice(['none', 'bool', 'int', 'int', 'float', 'float', 'float', 'str', 'str', 'json', 'bytes',
                           'bytearray', 'datetime', 'date', 'decimal', 'uuid'])
        if kind == 'none':
            return None
        if kind == 'bool':
            return rng.random() < 0.5
        if kind == 'int':
            return rng.choice([rng.randrange(-300, 300), rng.randrange(-2**63, 2**63), -2**63, 2**63 - 1,
                               rng.randrange(-2**80, 2**80), 2**64, -2**31, 2**31])
        if kind == 'float':
            return rng.choice([rng.uniform(-1e3, 1e3), rng.gauss(0, 1e10), float('nan'), float('inf'),
                               float('-inf'), -0.0, 0.0, 1e16, 1e-7, 5e-324, 1.7976931348623157e308,
                               float(rng.randrange(-10**6, 10**6)), 0.1 * rng.randrange(100)])
        if kind == 'str':
            return self.text()
        if kind == 'json':
            return self.json_text()
        if kind == 'bytes':
            if rng.random() < 0.5:
                return self.text().encode('utf-8')
            return bytes(rng.randrange(256) for _ in range(rng.randrange(20)))
        if kind == 'bytearray':
            return bytearray(bytes(rng.randrange(256) for _ in range(rng.randrange(10))))
        if kind == 'datetime':
            tz = None
            if rng.random() < 0.5:
                tz = datetime.timezone(datetime.timedelta(minutes=rng.randrange(-23 * 60, 23 * 60)))
            return datetime.datetime(rng.randrange(1, 10000), rng.randrange(1, 13), rng.randrange(1, 29),
                                     rng.randrange(24), rng.randrange(60), rng.randrange(60),
                                     rng.choice([0, rng.randrange(10**6)]), tzinfo=tz)
        if kind == 'date':
            return datetime.date(rng.randrange(1, 10000), rng.randrange(1, 13), rng.randrange(1, 29))
        if kind == 'decimal':
            return decimal.Decimal(rng.choice(['0', '-0', '1.10', '-12.340', '1E+3', '3.14159265358979323846',
                                               'NaN', 'Infinity', '-Infinity',
                                               str(rng.randrange(-10**30, 10**30)) + '.' + str(rng.randrange(100))]))
        return uuid.UUID(int=rng.getrandbits(128))

    def value(self, depth=0):
        rng = self.rng
        if self.made and rng.random() < 0.05:
            return rng.choice(self.made)  # a shared reference (the memo)
        if depth >= 4 or rng.random() < (0.2 if depth == 0 else 0.4):
            return self.scalar()
        kind = rng.randrange(6)
        n = rng.randrange(7)
        if kind == 0:
            v = [self.value(depth + 1) for _ in range(n)]
        elif kind == 1:
            v = tuple(self.value(depth + 1) for _ in range(n))
        elif kind == 2:
            v = {}
            for _ in range(n):
                k = self.text(8) if rng.random() < 0.6 else rng.choice(
                    [rng.randrange(-100, 100), rng.randrange(-2**63, 2**63), 2**70])
                v[k] = self.value(depth + 1)
        elif kind == 3:
            v = {rng.choice([rng.randrange(-50, 50), rng.randrange(-2**62, 2**62), 2**65]) for _ in range(n)}
        elif kind == 4:
            v = frozenset(rng.randrange(-1000, 1000) for _ in range(n))
        else:
            v = [self.scalar() for _ in range(n)]
        if isinstance(v, list):
            self.made.append(v)
        return v


def fill_random(f, seed, n):
    values = RandomValues(seed)
    for i in range(n):
        v = values.value()
        f.put('r/%04d' % i, v, proto=values.rng.randrange(6))


# ---------------------------------------------------------------------------
# Comparing what the view served with what it must.


def matches(actual, expected, path, problems):
    """Appends to `problems` the first difference below `path`; returns
    whether there is none."""
    if isinstance(expected, dict) and set(expected) == {'__expect_any_str__'}:
        if isinstance(actual, str):
            return True
        problems.append('%s: %s, expected a string' % (path, json.dumps(actual, ensure_ascii=False)[:200]))
        return False
    if isinstance(expected, dict) and set(expected) == {'__expect_one_of__'}:
        for alternative in expected['__expect_one_of__']:
            if matches(actual, alternative, path, []):
                return True
        problems.append('%s: %s, expected one of %s' % (path, json.dumps(actual, ensure_ascii=False)[:200],
                                                        json.dumps(expected['__expect_one_of__'])))
        return False
    if type(actual) is not type(expected):
        problems.append('%s: %s (%s), expected %s (%s)' % (
            path, json.dumps(actual, ensure_ascii=False)[:200], type(actual).__name__,
            json.dumps(expected, ensure_ascii=False)[:200], type(expected).__name__))
        return False
    if isinstance(expected, dict):
        if set(actual) != set(expected):
            problems.append('%s: keys %s, expected %s (missing %s, unexpected %s)' % (
                path, list(actual)[:20], list(expected)[:20], sorted(set(expected) - set(actual))[:10],
                sorted(set(actual) - set(expected))[:10]))
            return False
        plain = [k for k in actual if not (k.startswith('__') and k.endswith('__'))]
        plain_expected = [k for k in expected if not (k.startswith('__') and k.endswith('__'))]
        if plain != plain_expected:
            problems.append('%s: keys in the order %s, expected %s' % (path, plain[:20], plain_expected[:20]))
            return False
        return all(matches(actual[k], expected[k], '%s/%s' % (path, k), problems) for k in expected)
    if isinstance(expected, list):
        if len(actual) != len(expected):
            problems.append('%s: %d items, expected %d: %s vs %s' % (
                path, len(actual), len(expected), json.dumps(actual, ensure_ascii=False)[:200],
                json.dumps(expected, ensure_ascii=False)[:200]))
            return False
        return all(matches(a, e, '%s[%d]' % (path, i), problems) for i, (a, e) in enumerate(zip(actual, expected)))
    if actual != expected or (type(expected) is float and repr(actual) != repr(expected)):
        problems.append('%s: %s, expected %s' % (path, json.dumps(actual, ensure_ascii=False)[:200],
                                                  json.dumps(expected, ensure_ascii=False)[:200]))
        return False
    return True


def compare(expected_json, actual_json):
    with open(expected_json) as f:
        expected = json.load(f)
    with open(actual_json) as f:
        actual = json.load(f)
    problems = []
    for name in expected:
        if name not in actual:
            problems.append('%s: not served' % name)
    for name in actual:
        if name not in expected:
            problems.append('%s: served, but no such entry' % name)
    for name in expected:
        if name not in actual:
            continue
        text = actual[name]
        try:
            doc = json.loads(text, parse_constant=_no_constants)
        except ValueError as e:
            problems.append('%s: not one JSON document (%s): %r' % (name, e, text[:300]))
            continue
        layout = json.dumps(doc, indent=2, ensure_ascii=False) + '\n'
        if text != layout:
            at = next((i for i, (a, b) in enumerate(zip(text, layout)) if a != b), min(len(text), len(layout)))
            problems.append('%s: not laid out as json.dumps(doc, indent=2, ensure_ascii=False) and a newline; '
                            'first difference at character %d: served %r, expected %r' % (
                                name, at, text[max(0, at - 40):at + 40], layout[max(0, at - 40):at + 40]))
        matches(doc, expected[name], name, problems)
    print(json.dumps(problems, ensure_ascii=False, indent=1))


# ---------------------------------------------------------------------------


def main(argv):
    if argv[:1] == ['--compare']:
        compare(argv[1], argv[2])
        return
    cache_dir, out_json, rest = argv[0], argv[1], argv[2:]
    fanout = '--fanout' in rest
    meta_json = rest[rest.index('--meta') + 1] if '--meta' in rest else None
    f = Filler(cache_dir, fanout)
    if '--malicious' in rest:
        fill_malicious(f, rest[rest.index('--malicious') + 1])
    elif '--random' in rest:
        i = rest.index('--random')
        fill_random(f, int(rest[i + 1]), int(rest[i + 2]))
    elif '--data-only' in rest:
        fill_values(f, classes=False)
    else:
        fill_values(f, classes=True)
    f.close(out_json, meta_json)


if __name__ == '__main__':
    main(sys.argv[1:])
