"""A cached flytekit task with a dataclass input, for `.explain` and
`diskcachefs flyte explain` (tests/flyte_explain.rs). The task's
cache_version is the environment's EXPLAIN_VERSION, so one task name has
entries under several versions, as after a bump of cache_version.

  flyte_explain.py DIR SIDE run X A B      -> runs score(x=X, cfg=Cfg(a=A, b=B)); JSON: task name, result
  flyte_explain.py DIR SIDE inputs X A B   -> the serialized inputs LiteralMap flytekit builds, hex
  flyte_explain.py DIR SIDE reordered X A B
      -> the same inputs with the dataclass's MessagePack map written in
         reversed key order: equal content, different bytes (flyte#5837)

The body appends `score X A B` to SIDE when it really runs (no cache hit).
"""
import json, os, sys
from dataclasses import dataclass

import msgpack
from flytekit import task
from flytekit.core.context_manager import FlyteContextManager
from flytekit.core.type_engine import TypeEngine
from flytekit.models.literals import Binary, Literal, LiteralMap, Scalar

from flyte_local import ran  # sets LocalTaskCache up (sys.argv[1], [2])


@dataclass
class Cfg:
    a: int
    b: str


@task(cache=True, cache_version=os.environ.get('EXPLAIN_VERSION', '1'))
def score(x: int, cfg: Cfg) -> int:
    ran(f'score {x} {cfg.a} {cfg.b}')
    return x * cfg.a


def inputs(x, cfg, reorder):
    ctx = FlyteContextManager.current_context()
    lm = TypeEngine.dict_to_literal_map(ctx, {'x': x, 'cfg': cfg}, {'x': int, 'cfg': Cfg})
    if reorder:
        binary = lm.literals['cfg'].scalar.binary
        assert binary.tag == 'msgpack', binary.tag
        fields = msgpack.unpackb(binary.value)
        again = msgpack.packb(dict(reversed(list(fields.items()))))
        assert again != binary.value and msgpack.unpackb(again) == fields
        literals = dict(lm.literals)
        literals['cfg'] = Literal(scalar=Scalar(binary=Binary(value=again, tag='msgpack')))
        lm = LiteralMap(literals=literals)
    return lm.to_flyte_idl().SerializeToString()


cmd, x, cfg = sys.argv[3], int(sys.argv[4]), Cfg(a=int(sys.argv[5]), b=sys.argv[6])
if cmd == 'run':
    print(json.dumps({'task': score.name, 'result': score(x=x, cfg=cfg)}))
else:
    print(json.dumps({'task': score.name, 'inputs': inputs(x, cfg, cmd == 'reordered').hex()}))
