#!/usr/bin/env python3
"""Makes Flyte cache-key vectors with the real flytekit (the pinned version
in scripts/requirements.txt): random input LiteralMaps of every kind the
IDL has, plus inputs made by flytekit's type engine from Python values, and
the key flytekit's `_calculate_cache_key` gives for each (or that it raises).

    gen-flyte-vectors.py SEED COUNT > vectors.jsonl

One JSON object a line: task, version, ignore, inputs (base64 of the
serialized LiteralMap, map entries in random order, as a client writes
them), and key, or "error": flytekit's exception when it cannot compute one.
"""
import base64, datetime, json, random, sys

from flyteidl.core import literals_pb2 as L, types_pb2 as T
from google.protobuf import struct_pb2
from flytekit.core.local_cache import _calculate_cache_key
from flytekit.models.literals import LiteralMap as ModelLiteralMap

seed, count = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
NAMES = ['x', 'y', 'data', 'seed', '', 'a/b', 'é', '日本', '😀', 'long_' * 8, '\\', '%', 'A', 'z9']


def name():
    return rng.choice(NAMES) + (str(rng.randrange(100)) if rng.random() < 0.6 else '')


def text():
    return rng.choice(['', 'v', 's3://bucket/' + name(), name(), '€\x00/']) + name()


def struct(depth=0):
    s = struct_pb2.Struct()
    for _ in range(rng.randrange(4)):
        set_value(s.fields[name()], depth)
    return s


def set_value(v, depth):
    k = rng.randrange(7 if depth < 3 else 4)
    if k == 0:
        v.null_value = 0
    elif k == 1:
        v.number_value = rng.choice([0.0, -0.0, 1.5, 1e300, -7.0, rng.uniform(-1e6, 1e6)])
    elif k == 2:
        v.string_value = text()
    elif k == 3:
        v.bool_value = rng.random() < 0.5
    elif k == 4:
        v.struct_value.CopyFrom(struct(depth + 1))
    elif k == 5:
        for _ in range(rng.randrange(3)):
            set_value(v.list_value.values.add(), depth + 1)
    # k == 6: a Value with no kind set


def literal_type(depth=0):
    t = T.LiteralType()
    k = rng.randrange(9 if depth < 3 else 3)
    if k == 0:
        t.simple = rng.randrange(10)
    elif k == 1:
        t.blob.format = rng.choice(['', 'csv', 'parquet'])
        t.blob.dimensionality = rng.randrange(2)
    elif k == 2:
        pass  # no type set
    elif k == 3:
        t.collection_type.CopyFrom(literal_type(depth + 1))
    elif k == 4:
        t.map_value_type.CopyFrom(literal_type(depth + 1))
    elif k == 5:
        t.enum_type.values.extend(name() for _ in range(rng.randrange(3)))
    elif k == 6:
        t.union_type.variants.extend(literal_type(depth + 1) for _ in range(rng.randrange(3)))
    elif k == 7:
        t.structured_dataset_type.CopyFrom(sd_type(depth + 1))
    elif k == 8:
        for _ in range(rng.randrange(3)):
            c = t.schema.columns.add()
            c.name = name()
            c.type = rng.randrange(6)
    if rng.random() < 0.3:
        s = struct(2)
        if rng.random() < 0.05:
            # JSON cannot carry NaN: flytekit raises, and so must we.
            s.fields['nan'].number_value = float('nan')
        t.metadata.CopyFrom(s)
    if rng.random() < 0.2:
        if rng.random() < 0.7:
            t.annotation.annotations.CopyFrom(struct(2))
        else:
            t.annotation.SetInParent()
    if rng.random() < 0.2:
        t.structure.tag = text()
        if depth < 2:
            for _ in range(rng.randrange(2)):
                t.structure.dataclass_type[name()].CopyFrom(literal_type(depth + 2))
    return t


def sd_type(depth):
    s = T.StructuredDatasetType()
    for _ in range(rng.randrange(3)):
        c = s.columns.add()
        c.name = name()
        if rng.random() < 0.7:
            c.literal_type.CopyFrom(literal_type(depth + 1))
    s.format = rng.choice(['', 'parquet', 'csv'])
    if rng.random() < 0.3:
        s.external_schema_type = 'arrow'
    if rng.random() < 0.3:
        s.external_schema_bytes = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6)))
    return s


def primitive(p):
    k = rng.randrange(6)
    if k == 0:
        p.integer = rng.choice([0, -1, 2**63 - 1, -2**63, rng.randrange(-10**6, 10**6)])
    elif k == 1:
        p.float_value = rng.choice([0.0, -0.0, 3.25, float('inf'), 1e-300, rng.uniform(-1e9, 1e9)])
    elif k == 2:
        p.string_value = text()
    elif k == 3:
        p.boolean = rng.random() < 0.5
    elif k == 4:
        p.datetime.seconds = rng.randrange(-62135596800, 253402300799)
        p.datetime.nanos = rng.randrange(0, 10**9)
    else:
        s = rng.randrange(-10**7, 10**7)
        p.duration.seconds = s
        n = rng.randrange(0, 10**9)
        p.duration.nanos = -n if s < 0 else n


def scalar(s, depth):
    if rng.random() < 0.01:
        # flytekit's model keeps the raw pb2 Error and then fails on it.
        s.error.message = text()
        return
    k = rng.randrange(9 if depth < 4 else 7)
    if k == 0:
        primitive(s.primitive)
    elif k == 1:
        s.blob.uri = text()
        if rng.random() < 0.7:
            s.blob.metadata.type.format = rng.choice(['', 'csv'])
            s.blob.metadata.type.dimensionality = rng.randrange(2)
    elif k == 2:
        s.binary.value = bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
        s.binary.tag = rng.choice(['', 'msgpack', name()])
    elif k == 3:
        s.schema.uri = text()
        if rng.random() < 0.6:
            c = s.schema.type.columns.add()
            c.name = name()
            c.type = rng.randrange(6)
    elif k == 4:
        s.none_type.SetInParent()
    elif k == 5:
        s.generic.CopyFrom(struct())
    elif k == 6:
        s.structured_dataset.uri = text()
        if rng.random() < 0.7:
            s.structured_dataset.metadata.structured_dataset_type.CopyFrom(sd_type(depth))
    elif k == 7:
        s.union.value.CopyFrom(literal(depth + 1))
        if rng.random() < 0.8:
            s.union.type.CopyFrom(literal_type(depth + 1))
    else:
        s.union.SetInParent()


def literal(depth=0):
    lit = L.Literal()
    k = rng.randrange(10 if depth < 3 else 6)
    if k < 6:
        scalar(lit.scalar, depth)
    elif k < 8:
        lit.collection.SetInParent()
        for _ in range(rng.randrange(4)):
            lit.collection.literals.add().CopyFrom(literal(depth + 1))
    elif k == 8:
        lit.map.SetInParent()
        for _ in range(rng.randrange(4)):
            lit.map.literals[name()].CopyFrom(literal(depth + 1))
    else:
        lit.offloaded_metadata.uri = text()
        lit.offloaded_metadata.size_bytes = rng.randrange(2**40)
        if rng.random() < 0.5:
            lit.offloaded_metadata.inferred_type.CopyFrom(literal_type(depth + 1))
    if rng.random() < 0.15:
        lit.hash = rng.choice(['', 'abc', name()])
    if rng.random() < 0.15:
        for _ in range(rng.randrange(3)):
            lit.metadata[name()] = text()
    return lit


def literal_map():
    m = L.LiteralMap()
    for _ in range(rng.randrange(6)):
        m.literals[name()].CopyFrom(literal())
    return m


def type_engine_inputs():
    """Inputs as flytekit itself makes them from Python values."""
    import typing
    from flytekit import FlyteContextManager
    from flytekit.core.type_engine import TypeEngine
    ctx = FlyteContextManager.current_context()
    values = {
        'n': (rng.randrange(-1000, 1000), int),
        'f': (rng.uniform(-1, 1), float),
        's': (text(), str),
        'b': (rng.random() < 0.5, bool),
        'when': (datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(microseconds=rng.randrange(10**12)), datetime.datetime),
        'span': (datetime.timedelta(microseconds=rng.randrange(-10**12, 10**12)), datetime.timedelta),
        'xs': ([rng.randrange(100) for _ in range(rng.randrange(5))], typing.List[int]),
        'm': ({name(): rng.random() for _ in range(rng.randrange(4))}, typing.Dict[str, float]),
        'opt': (rng.choice([None, 3]), typing.Optional[int]),
    }
    chosen = {k: v for k, v in values.items() if rng.random() < 0.7}
    lm = TypeEngine.dict_to_literal_map(ctx, {k: v for k, (v, _) in chosen.items()}, {k: t for k, (_, t) in chosen.items()})
    return lm.to_flyte_idl()


for i in range(count):
    pb = type_engine_inputs() if rng.random() < 0.15 else literal_map()
    raw = pb.SerializeToString()  # map order as the client's protobuf writes it
    names = list(pb.literals.keys())
    ignore = rng.sample(names, rng.randrange(len(names) + 1)) if names and rng.random() < 0.3 else []
    if rng.random() < 0.1:
        ignore.append('absent')
    task = rng.choice(['t', 'wf.square', 'my_module.tasks.train', 'ünïcode.task'])
    version = rng.choice(['1.0', 'v2', 'abc123'])
    out = {'task': task, 'version': version, 'ignore': ignore, 'inputs': base64.b64encode(raw).decode()}
    try:
        model = ModelLiteralMap.from_flyte_idl(L.LiteralMap.FromString(raw))
        out['key'] = _calculate_cache_key(task, version, model, tuple(ignore))
    except Exception as e:  # flytekit cannot compute a key for these inputs
        out['error'] = f'{type(e).__name__}: {e}'
    print(json.dumps(out))
