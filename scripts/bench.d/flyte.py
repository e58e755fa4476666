"""flytekit's side of `scripts/bench flyte`: what LocalTaskCache.get/set
pay to compute a key from a client's serialized inputs (parse, model
conversion, _calculate_cache_key), over the same vectors. Prints
microseconds per key."""
import base64, json, sys, time
from flyteidl.core.literals_pb2 import LiteralMap
from flytekit.core.local_cache import _calculate_cache_key
from flytekit.models.literals import LiteralMap as ModelLiteralMap

vectors = [json.loads(l) for l in open(sys.argv[1])]
rounds = int(sys.argv[2])
decoded = [(v['task'], v['version'], base64.b64decode(v['inputs']), tuple(v['ignore'])) for v in vectors]
n = 0
start = time.perf_counter()
for _ in range(rounds):
    for task, version, raw, ignore in decoded:
        model = ModelLiteralMap.from_flyte_idl(LiteralMap.FromString(raw))
        _calculate_cache_key(task, version, model, ignore)
        n += 1
print(f'{(time.perf_counter() - start) * 1e6 / n:.3f}')
