"""Prints the tables of `scripts/bench fs` from the JSON its parts wrote,
for the parts that ran (see scripts/bench-fs; part 0 prints its own).

usage: fs_report.py RESULTS_DIR"""
import json, os, sys


def load(name):
    path = os.path.join(sys.argv[1], name)
    return json.load(open(path)) if os.path.exists(path) else None


small, big, tags, conc = (load(f'{n}.json') for n in ('small', 'big', 'tags', 'conc'))

if small and big:
    print("| workload | diskcachefs | python-diskcache | native | diskcachefs / native |")
    print("|---|---:|---:|---:|---:|")
    for name, r in small.items():
        print(f"| {name}, us/op | {r['diskcachefs']:.1f} | {r['python-diskcache']:.1f} | {r['native']:.1f} | {r['diskcachefs'] / r['native']:.1f}x |")
    wf, wn, rf, rn = big['write_fs'], big['write_native'], big['read_fs'], big['read_native']
    lf, ln, lfp, lnp = big['ls_fs'], big['ls_native'], big['ls_fs_plain'], big['ls_native_plain']
    gib = 1.0
    print(f"| write 1 GiB sequential (dd bs=1M), GB/s | {gib / wf * 1.074:.2f} | | {gib / wn * 1.074:.2f} | {wn / wf:.2f} of native speed |")
    print(f"| read 1 GiB sequential, cold cache (dd bs=1M), GB/s | {gib / rf * 1.074:.2f} | | {gib / rn * 1.074:.2f} | {rn / rf:.2f} of native speed |")
    print(f"| ls -l of 100,000 keys, s | {lf:.2f} | | {ln:.2f} | {lf / ln:.1f}x |")
    print(f"| ls of 100,000 keys, s | {lfp:.2f} | | {lnp:.2f} | {lfp / lnp:.1f}x |")
    ff, fn, rf2, rn2 = big['find_fs'], big['find_native'], big['lsr_fs'], big['lsr_native']
    print(f"| find over 100,000 keys as paths (1,100 directories), s | {ff:.2f} | | {fn:.2f} | {ff / fn:.1f}x |")
    print(f"| ls -lR of the same tree, s | {rf2:.2f} | | {rn2:.2f} | {rf2 / rn2:.1f}x |")

if conc:
    rounds, secs = conc['rounds'], conc['seconds']
    cells = {tuple(c['key']): c for c in conc['main']}
    print()
    print(f"Small files from several processes at once ({rounds} rounds of {secs:g} s per cell, cells interleaved; "
          "each number the median of the rounds; ops/s of all processes together; slowest = one open+read+close "
          "or open+write+close; python writers: 2 processes doing cache.set of 1 KiB in a loop, on the mounted "
          "cache for diskcachefs, on a cache of their own on the native disk for native, sets/s shown fs / native):")
    print()
    print("| workload | diskcachefs ops/s | native ops/s | of native | diskcachefs p99 ms | native p99 ms | diskcachefs slowest ms | native slowest ms | python sets/s (fs / native) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    worst = 0.0
    for kind, counts in (('read', (1, 4, 8)), ('write', (1, 4))):
        for bg in (False, True):
            for n in counts:
                f, nat = cells[(kind, n, bg, 'diskcachefs')], cells[(kind, n, bg, 'native')]
                worst = max(worst, f['max_ms_all'])
                what = f"{kind} 1 KiB (open, {kind}, close), {n} process{'es' if n > 1 else ''}"
                what += ", while 2 python writers" if bg else ", alone"
                sets = f"{f['bg_sets']:,.0f} / {nat['bg_sets']:,.0f}" if bg else ""
                print(f"| {what} | {f['ops']:,.0f} | {nat['ops']:,.0f} | {f['ops'] / nat['ops']:.2f} | "
                      f"{f['p99_ms']:.2f} | {nat['p99_ms']:.2f} | {f['max_ms']:.1f} | {nat['max_ms']:.1f} | {sets} |")
    errors = sum(c['errors'] for c in conc['main'] + conc['threads'])
    print()
    print(f"(Slowest diskcachefs request in any round: {worst:.1f} ms; writes failed with EBUSY: {errors}.)")

    print()
    print(f"--threads for 8 reading processes ({rounds} rounds of {secs:g} s per cell, interleaved with the cells above; "
          "medians; one daemon per thread count, all on the same cache; 'python sets/s' the 2 python writers together, "
          "'file writes/s' the 2 processes writing new 1 KiB files through the same mount):")
    print()
    print("| --threads | while | read ops/s | p99 ms | slowest ms | python sets/s | file writes/s | slowest file write ms |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    th = {tuple(c['key']): c for c in conc['threads']}
    scenario = {0: 'alone', 1: '2 python writers', 2: '2 python writers + 2 file writers'}
    for s_ in (0, 1, 2):
        for t in sorted({k[0] for k in th}):
            c = th[(t, s_)]
            sets = f"{c['bg_sets']:,.0f}" if s_ else ""
            files = f"{c['files']:,.0f} | {c['files_max_ms']:.0f}" if s_ == 2 else " | "
            print(f"| {t} | {scenario[s_]} | {c['ops']:,.0f} | {c['p99_ms']:.2f} | {c['max_ms']:.1f} | {sets} | {files} |")
    print()
    ranges = "; ".join(f"{k[0]} {scenario[k[1]]}: {c['ops_range'][0]:,.0f}-{c['ops_range'][1]:,.0f}"
                       for k, c in sorted(th.items()))
    print(f"(read ops/s range over the rounds: {ranges}.)")

if tags:
    print()
    print(f"Listing a tag, `os.listdir` of tags/T, us per entry ({tags['rounds']} rounds, medians; each listing 1.1 s "
          "after the last, so the kernel's entries have expired; three tags in one 105,000-entry cache, interleaved):")
    print()
    print("| entries | diskcachefs (no tag index: diskcache's default) | diskcachefs, tag index | native | diskcachefs (no index) / native |")
    print("|---:|---:|---:|---:|---:|")
    for n in tags['native']:
        f, fi, nat = tags['diskcachefs'][n], tags['diskcachefs, tag index'][n], tags['native'][n]
        print(f"| {int(n):,} | {f:.2f} | {fi:.2f} | {nat:.3f} | {f / nat:.0f}x |")
