"""Explanation accuracy of `explant explain` (any method) against the teacher's wiring (issue 15).

For each (target, group) of an ablation attribution.csv whose |total effect| is at least
1e-3 and at least 1 % of the largest |total| in the table, the top channel (largest
|effect|, coarse channels only: `from` rows and `direct` left out) is checked against the
true channels of the target: those with a path in the teacher's edges to it (a channel
is an edge source `ligand:`, `contact:` or `neighbours:`; genes relay). Prints top-1
precision and, given a second table (a learned model's), the top-1 agreement and the
Spearman correlation of the effects over the channels per (target, group). Rows whose
effect no channel carries (every channel below 5 % of the total: the knocked-out gene
itself) are listed and not scored; ties for the top (channels carrying the same effect,
as an upstream and a downstream channel of one chain do under ablation) are reported
separately.

Usage: python3 scripts/explain_accuracy.py SCENE.toml RUN/explain/attribution.csv [OTHER.csv]"""
import csv, sys, tomllib, math

def true_channels(scene):
    sc = tomllib.load(open(scene, 'rb'))
    edges = sc['teacher']['edges']
    into = {}
    for e in edges:
        into.setdefault(e['target'], set()).add(e['source'])
    memo = {}
    def reach(gene, seen=()):
        out = set()
        for s in into.get(gene, ()):
            if s.startswith('gene:'):
                g = s[5:]
                if g not in seen:
                    out |= reach(g, seen + (gene,))
            else:
                out.add(s)
        return out
    return reach

def table(path):
    # A gradients table also holds the ablation's rows after its own: score the first
    # method's rows only. `direct` (Shapley) and `residual` (gradients) are no channel.
    rows = list(csv.DictReader(open(path)))
    first = rows[0]['method'] if rows else None
    rows = [r for r in rows if r['method'] == first and ' from ' not in r['channel']
            and r['channel'] not in ('direct', 'residual')]
    by = {}
    for r in rows:
        by.setdefault((r['target'], r['group']), []).append(r)
    return by

def rank(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r

def spearman(a, b):
    ra, rb = rank(a), rank(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = math.sqrt(sum((x - ma) ** 2 for x in ra)); vb = math.sqrt(sum((y - mb) ** 2 for y in rb))
    return cov / (va * vb) if va > 0 and vb > 0 else float('nan')

scene, path = sys.argv[1], sys.argv[2]
reach = true_channels(scene)
by = table(path)
big = max(abs(float(rs[0]['total_effect'])) for rs in by.values())
keep = {k: rs for k, rs in by.items() if abs(float(rs[0]['total_effect'])) >= max(1e-3, 0.01 * big)}
# Rows whose effect no channel carries (the knocked-out gene itself, or what follows from
# it inside the cell): every channel's |effect| below 5 % of |total|. Not scored.
direct = {k for k, rs in keep.items() if max(abs(float(r['effect'])) for r in rs) < 0.05 * abs(float(rs[0]['total_effect']))}
keep = {k: rs for k, rs in keep.items() if k not in direct}
print(f"{path}: {len(direct)} rows carried by no channel (direct): {sorted(direct)}")
hits = 0
tie_hits = 0
misses = []
for (t, g), rs in sorted(keep.items()):
    top = max(rs, key=lambda r: abs(float(r['effect'])))
    best = abs(float(top['effect']))
    tied = [r['channel'] for r in rs if abs(float(r['effect'])) >= best * (1 - 1e-6)]
    ok = top['channel'] in reach(t)
    hits += ok
    tie_hits += any(c in reach(t) for c in tied)
    if not ok:
        misses.append(f"{t} in {g}: top {top['channel']} not in {sorted(reach(t))}")
th = tie_hits
print(f"{path}: top-1 precision {hits}/{len(keep)} = {hits / max(1, len(keep)):.3f}; a true channel among those tied for the top: {th}/{len(keep)} (rows with |total| >= {max(1e-3, 0.01 * big):.2g})")
for m in misses:
    print('  miss:', m)
if len(sys.argv) > 3:
    other = table(sys.argv[3])
    agree, rhos, n = 0, [], 0
    for k, rs in keep.items():
        if k not in other: continue
        n += 1
        a = {r['channel']: float(r['effect']) for r in rs}
        b = {r['channel']: float(r['effect']) for r in other[k]}
        ch = sorted(set(a) & set(b))
        agree += max(ch, key=lambda c: abs(a[c])) == max(ch, key=lambda c: abs(b[c]))
        rho = spearman([a[c] for c in ch], [b[c] for c in ch])
        if not math.isnan(rho): rhos.append(rho)
    print(f"  vs {sys.argv[3]}: top-1 agreement {agree}/{n}, Spearman of effects over channels: median {sorted(rhos)[len(rhos)//2] if rhos else float('nan'):.3f}, min {min(rhos) if rhos else float('nan'):.3f} ({len(rhos)} rows)")
