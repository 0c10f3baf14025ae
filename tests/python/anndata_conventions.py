"""Check the AnnData conventions of a run's snapshots against the run itself.

Usage:
    anndata_conventions.py PLAIN_RUN GZIP_RUN

PLAIN_RUN and GZIP_RUN are two `explant run` folders of the same 2D scene and seed (a
static lattice sheet with at least two cell types coloured by cell type in `tissue.png`),
the second with `output.h5ad_compression = "gzip"`. For `tissue.h5ad` and every snapshot
of PLAIN_RUN:

- `obsp['spatial_connectivities']` and `obsp['spatial_distances']` are CSR matrices of
  shape (n, n), rows sorted, no diagonal, symmetric, with the same pattern; every
  connectivity is 1 and every distance is the centre distance of `obsm['spatial']`;
- the graph is exactly the pairs whose centres are within the scene's `contact.radius`
  (a brute-force search over all pairs; pairs within 1e-4 µm of the radius may go either
  way, as the simulator decides them in float32), so no pair is farther apart than the
  radius, and on the lattice interior cells have about 6 neighbours;
- `uns['spatial_neighbors']` names both keys, `params.radius` is `contact.radius` and
  `params.coord_type` is `generic`;
- `obs['time_min']` (float64) and `obs['tick']` (int64) equal `uns['explant']['time_min']`
  and `['tick']` on every row;
- `uns['cell_type_colors']` and `uns['phase_colors']` are matplotlib's `tab10` in
  category order, and in `tissue.png` the centre pixel of each cell has its type's colour.

`squidpy.gr.nhood_enrichment(cluster_key="cell_type")` runs on the stored graph, with
`squidpy.gr.spatial_neighbors` replaced by a function that fails, leaves the graph as it
was, and counts the same type-to-type edges as the graph does.

GZIP_RUN's `tissue.h5ad` has gzip-compressed datasets, reads back with the same values as
PLAIN_RUN's, and is smaller.

Each check is also run on deliberately wrong copies (an empty graph, a graph with one
direction of an edge dropped, a graph missing one contact pair, the colours in the wrong
order, a wrong tick) and must reject each: a check that cannot fail checks nothing.

Prints `ok: ...` on success; exits non-zero with a message naming the first failed check.
"""

import copy
import logging
import math
import os
import sys
import tomllib
from collections import Counter
from pathlib import Path

import anndata
import h5py
import matplotlib
import numpy as np
import pandas as pd
import scipy.sparse as sp
from PIL import Image


class Failed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failed(msg)


def tab10(n):
    cmap = matplotlib.colormaps["tab10"]
    return [matplotlib.colors.to_hex(cmap(k % 10)) for k in range(n)]


def contact_radius(ad):
    scene = tomllib.loads(str(ad.uns["explant"]["scene"]))
    return float(scene.get("contact", {}).get("radius", 25.0))


def check_graph(ad):
    """obsp and uns['spatial_neighbors'] against the coordinates and the contact radius."""
    n = ad.n_obs
    for key in ["spatial_connectivities", "spatial_distances"]:
        check(key in ad.obsp, f"obsp lacks {key!r}")
        check(sp.issparse(ad.obsp[key]) and ad.obsp[key].format == "csr", f"obsp[{key!r}] is not CSR")
        check(ad.obsp[key].shape == (n, n), f"obsp[{key!r}] shape {ad.obsp[key].shape} for {n} cells")
    conn, dist = ad.obsp["spatial_connectivities"], ad.obsp["spatial_distances"]
    check(conn.nnz > 0, "the contact graph is empty")
    check(conn.has_sorted_indices, "connectivity rows are not sorted")
    check(np.array_equal(conn.indptr, dist.indptr) and np.array_equal(conn.indices, dist.indices),
          "connectivities and distances have different patterns")
    check(bool((conn.data == 1).all()), "a connectivity is not 1")
    check(not conn.diagonal().any(), "a cell is its own neighbour")
    check((conn != conn.T).nnz == 0, "the connectivity graph is not symmetric")

    xy = np.asarray(ad.obsm["spatial"], np.float64)
    rows = np.repeat(np.arange(n), np.diff(conn.indptr))
    cols = conn.indices
    true_d = np.linalg.norm(xy[rows] - xy[cols], axis=1)
    worst = float(np.max(np.abs(dist.data - true_d))) if len(true_d) else 0.0
    check(worst <= 1e-9 * max(1.0, float(true_d.max())), f"a stored distance is off by {worst:.3g} µm")

    radius = contact_radius(ad)
    check(float(dist.data.max()) <= radius * (1 + 1e-6),
          f"neighbours {dist.data.max():.4f} µm apart, beyond the contact radius {radius} µm")
    # Every pair within the radius, by brute force.
    d_all = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=2)
    np.fill_diagonal(d_all, np.inf)
    within = sp.csr_matrix(d_all <= radius)
    stored = sp.csr_matrix((np.ones(conn.nnz, bool), conn.indices, conn.indptr), shape=(n, n))
    diff = (within != stored).tocoo()
    unsure = np.abs(d_all[diff.row, diff.col] - radius) <= 1e-4
    check(bool(unsure.all()),
          f"{int((~unsure).sum())} ordered pairs differ from the pairs within {radius} µm, e.g. cells "
          f"{diff.row[~unsure][:1]} and {diff.col[~unsure][:1]}")

    nb = ad.uns.get("spatial_neighbors")
    check(isinstance(nb, dict), "uns lacks 'spatial_neighbors'")
    check(nb.get("connectivities_key") == "spatial_connectivities", f"connectivities_key {nb.get('connectivities_key')!r}")
    check(nb.get("distances_key") == "spatial_distances", f"distances_key {nb.get('distances_key')!r}")
    params = nb.get("params", {})
    check(params.get("coord_type") == "generic", f"coord_type {params.get('coord_type')!r}")
    check(math.isclose(float(params.get("radius", -1)), radius, rel_tol=1e-6), f"params radius {params.get('radius')}")
    check("explant" in str(params.get("source", "")), f"params source {params.get('source')!r}")
    return conn


def check_lattice_degree(ad, conn):
    """On the hexagonal sheet (spacing about 10 µm, radius 15 µm) an interior cell has 6."""
    xy = np.asarray(ad.obsm["spatial"], np.float64)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    inside = np.minimum(xy - lo, hi - xy).min(axis=1) > 30.0
    degree = np.diff(conn.indptr)
    check(inside.sum() >= 10, "too few interior cells")
    mean = float(degree[inside].mean())
    check(5.0 <= mean <= 6.2, f"interior mean degree {mean:.2f}, expected about 6")
    check(int(degree.max()) <= 7, f"a cell has {int(degree.max())} neighbours, more than a lattice allows")
    return mean


def check_time(ad):
    ex = ad.uns["explant"]
    for col, dtype in [("time_min", np.float64), ("tick", np.int64)]:
        check(col in ad.obs.columns, f"obs lacks {col!r}")
        check(ad.obs[col].dtype == dtype, f"obs[{col!r}] dtype {ad.obs[col].dtype}, expected {dtype.__name__}")
        check(bool((ad.obs[col] == ex[col]).all()), f"obs[{col!r}] is not uns['explant'][{col!r}] = {ex[col]}")
    check(list(ad.obs.columns[-2:]) == ["time_min", "tick"], f"obs columns {list(ad.obs.columns)}")


def check_colours(ad):
    for col in ["cell_type", "phase"]:
        key = f"{col}_colors"
        check(key in ad.uns, f"uns lacks {key!r}")
        got = [str(c) for c in ad.uns[key]]
        want = tab10(len(ad.obs[col].cat.categories))
        check(got == want, f"uns[{key!r}] = {got}, the pictures' palette (tab10) is {want}")


def check_picture(ad, png):
    """The centre pixel of every cell in tissue.png has its type's uns colour."""
    img = np.asarray(Image.open(png).convert("RGB"))
    width = img.shape[1]
    xy = np.asarray(ad.obsm["spatial"], np.float32)
    r = np.asarray(ad.obs["radius"], np.float32)
    # render.rs without a field: the cells' bounding box grown by 5 % of its larger side.
    x0, y0 = float((xy[:, 0] - r).min()), float((xy[:, 1] - r).min())
    x1, y1 = float((xy[:, 0] + r).max()), float((xy[:, 1] + r).max())
    margin = max(0.05 * max(x1 - x0, y1 - y0), 1.0)
    x0, y0, x1, y1 = x0 - margin, y0 - margin, x1 + margin, y1 + margin
    height = max(1, round(width * (y1 - y0) / (x1 - x0)))
    # render.rs labels explant's pictures: a title strip above the map, its text's line
    # (16 + scale px) with scale px above and below (scale = width // 256, 1 to 4), and a
    # scale bar in a white box in the map's lower left corner (at most a fifth of the
    # width plus padding; with its margin the box reaches 12 + 10 × scale px above the
    # map's bottom: the label's 12 + scale px line, the bar and padding), whose cells,
    # and those a scale px above, are not looked at.
    scale = min(max(width // 256, 1), 4)
    title = 16 + 3 * scale
    def under_scale_bar(px, py):
        return px < width // 5 + 8 * scale and py >= height - (12 + 11 * scale)
    colours = [str(c) for c in ad.uns["cell_type_colors"]]
    codes = ad.obs["cell_type"].cat.codes.to_numpy()
    seen = Counter()
    for i in range(ad.n_obs):
        px = int((xy[i, 0] - x0) / (x1 - x0) * width)
        py = int((y1 - xy[i, 1]) / (y1 - y0) * height)
        if under_scale_bar(px, py):
            continue
        got = "#{:02x}{:02x}{:02x}".format(*img[title + py, px])
        seen[(codes[i], got == colours[codes[i]])] += 1
    types = sorted(set(codes))
    check(len(types) >= 2, "the picture check needs at least two cell types")
    for k in types:
        right, wrong = seen[(k, True)], seen[(k, False)]
        check(right > 0 and wrong <= 0.02 * (right + wrong),
              f"{wrong} of {right + wrong} cells of type {k} are not drawn in {colours[k]} in {png}")
    return len(types)


def check_nhood(ad):
    """nhood_enrichment on the stored graph, never rebuilding it."""
    import squidpy as sq

    logging.getLogger("spatialdata._logging").setLevel(logging.WARNING)

    def refuse(*args, **kwargs):
        raise Failed("squidpy rebuilt the graph with spatial_neighbors")

    saved = sq.gr.spatial_neighbors
    sq.gr.spatial_neighbors = refuse
    try:
        conn = ad.obsp["spatial_connectivities"]
        before = conn.copy()
        sq.gr.nhood_enrichment(ad, cluster_key="cell_type", n_perms=20, seed=0, show_progress_bar=False)
    finally:
        sq.gr.spatial_neighbors = saved
    check(ad.obsp["spatial_connectivities"] is conn and (conn != before).nnz == 0, "nhood_enrichment changed the graph")
    res = ad.uns.get("cell_type_nhood_enrichment")
    check(res is not None, "nhood_enrichment left no result")
    k = len(ad.obs["cell_type"].cat.categories)
    check(res["zscore"].shape == (k, k) and res["count"].shape == (k, k), "nhood_enrichment result shape")
    codes = ad.obs["cell_type"].cat.codes.to_numpy()
    coo = conn.tocoo()
    counts = np.zeros((k, k))
    np.add.at(counts, (codes[coo.row], codes[coo.col]), 1)
    check(np.array_equal(res["count"], counts), f"nhood counts {res['count'].tolist()} are not the graph's {counts.tolist()}")
    return res["zscore"]


def check_compression(plain, gzip):
    with h5py.File(gzip, "r") as f:
        for key in ["X", "obsm/spatial", "obsp/spatial_connectivities/indices", "obs/tick"]:
            check(f[key].compression == "gzip", f"{gzip}: {key} is not gzip-compressed ({f[key].compression})")
    with h5py.File(plain, "r") as f:
        check(f["X"].compression is None, f"{plain}: X is compressed without being asked")
    a, b = anndata.read_h5ad(plain), anndata.read_h5ad(gzip)
    check(np.array_equal(a.X, b.X), "X differs between the plain and the gzip file")
    check(np.array_equal(a.obsm["spatial"], b.obsm["spatial"]), "obsm['spatial'] differs")
    check(a.obs.equals(b.obs), "obs differs")
    for key in a.obsp:
        check((a.obsp[key] != b.obsp[key]).nnz == 0, f"obsp[{key!r}] differs")
    check(list(a.uns["cell_type_colors"]) == list(b.uns["cell_type_colors"]), "colours differ")
    sa, sb = os.path.getsize(plain), os.path.getsize(gzip)
    check(sb < sa, f"the gzip file ({sb} bytes) is not smaller than the plain one ({sa} bytes)")
    return sa, sb


def must_fail(name, fn, ad):
    try:
        fn(ad)
    except Failed:
        return
    raise Failed(f"a wrong file passed: {name}")


def with_graph(ad, conn):
    bad = ad.copy()
    conn = sp.csr_matrix(conn)
    conn.sort_indices()
    bad.obsp["spatial_connectivities"] = conn
    dist = conn.copy().astype(np.float64)
    xy = np.asarray(ad.obsm["spatial"], np.float64)
    rows = np.repeat(np.arange(ad.n_obs), np.diff(dist.indptr))
    dist.data = np.linalg.norm(xy[rows] - xy[dist.indices], axis=1)
    bad.obsp["spatial_distances"] = dist
    return bad


def wrong_copies(ad):
    """Each check must reject a file that is wrong in its one respect."""
    conn = ad.obsp["spatial_connectivities"]
    n = ad.n_obs
    must_fail("an empty graph", check_graph, with_graph(ad, sp.csr_matrix((n, n), dtype=np.float32)))
    upper = sp.triu(conn, k=1)
    must_fail("one direction of every edge", check_graph, with_graph(ad, upper))
    one_way = conn.tolil()
    i = int(np.argmax(np.diff(conn.indptr) > 0))
    one_way[i, conn.indices[conn.indptr[i]]] = 0
    must_fail("one direction of one edge dropped", check_graph, with_graph(ad, one_way.tocsr()))
    missing = conn.tolil()
    j = conn.indices[conn.indptr[i]]
    missing[i, j] = 0
    missing[j, i] = 0
    must_fail("one contact pair missing", check_graph, with_graph(ad, missing.tocsr()))
    far = conn.tolil()
    xy = np.asarray(ad.obsm["spatial"], np.float64)
    a, b = int(np.argmin(xy[:, 0])), int(np.argmax(xy[:, 0]))
    far[a, b] = 1
    far[b, a] = 1
    must_fail("a pair beyond the contact radius", check_graph, with_graph(ad, far.tocsr()))
    bad = ad.copy()
    bad.obsp["spatial_distances"] = ad.obsp["spatial_distances"] * 1.01
    must_fail("distances 1 % off", check_graph, bad)
    bad = ad.copy()
    bad.uns["cell_type_colors"] = list(reversed(list(ad.uns["cell_type_colors"])))
    must_fail("cell type colours in the wrong order", check_colours, bad)
    bad = ad.copy()
    bad.obs["tick"] = bad.obs["tick"] + 1
    must_fail("a wrong tick", check_time, bad)
    bad = ad.copy()
    bad.obs["time_min"] = bad.obs["time_min"].astype(np.float32)
    must_fail("time_min as float32", check_time, bad)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    plain, gzip = Path(sys.argv[1]), Path(sys.argv[2])
    files = [plain / "tissue.h5ad"] + sorted((plain / "snapshots").glob("tick_*.h5ad"))
    try:
        for f in files:
            where = f.relative_to(plain)
            try:
                ad = anndata.read_h5ad(f)
                conn = check_graph(ad)
                mean = check_lattice_degree(ad, conn)
                check_time(ad)
                check_colours(ad)
                stem = f.stem
                if stem.startswith("tick_"):
                    check(int(stem[5:]) == int(ad.uns["explant"]["tick"]), f"tick {ad.uns['explant']['tick']} in {stem}")
            except Failed as e:
                raise Failed(f"{where}: {e}") from None
        ad = anndata.read_h5ad(plain / "tissue.h5ad")
        types = check_picture(ad, plain / "tissue.png")
        bad = ad.copy()
        bad.uns["cell_type_colors"] = list(reversed(list(ad.uns["cell_type_colors"])))
        must_fail("the picture against reversed colours", lambda a: check_picture(a, plain / "tissue.png"), bad)
        wrong_copies(ad)
        z = check_nhood(ad)
        sizes = check_compression(plain / "tissue.h5ad", gzip / "tissue.h5ad")
    except Failed as e:
        sys.exit(f"anndata_conventions: {e}")
    print(
        f"ok: {len(files)} files, {ad.n_obs} cells, {ad.obsp['spatial_connectivities'].nnz} directed contacts, "
        f"interior degree {mean:.2f}, {types} cell types drawn in their uns colours, nhood z-score diagonal "
        f"{np.round(np.diag(z), 1).tolist()}, gzip {sizes[1]} bytes against {sizes[0]}"
    )


if __name__ == "__main__":
    main()
