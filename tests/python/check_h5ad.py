"""Check that an .h5ad file written by explant reads back with Python `anndata`.

Usage:
    check_h5ad.py PATH N_OBS N_VARS GENES DIMS
        [--categories A,B,...] [--x ROW,COL,VALUE] [--spatial ROW,COL,VALUE]
        [--scene-contains TEXT] [--run-columns] [--graph]

GENES and --categories are comma-separated (an empty string means none). Every file has
`obs['time_min']` and `obs['tick']` (the snapshot's time on every row) and
`uns['cell_type_colors']` (matplotlib's `tab10`, as the pictures); with --graph (implied by
--run-columns) it has the contact graph in `obsp` and `uns['spatial_neighbors']`, which
must be symmetric CSR without self loops whose distances are the coordinates' (the full
checks against a run are in `anndata_conventions.py`), else `obsp` is empty. Exits non-zero
with a message naming the first mismatch; prints `ok` and a one-line summary on success.
"""

import argparse
import sys

import anndata
import matplotlib
import numpy as np
import pandas as pd
import scipy.sparse as sparse


def split(s):
    return [] if s == "" else s.split(",")


def triple(s):
    row, col, value = s.split(",")
    return int(row), int(col), float(value)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("n_obs", type=int)
    p.add_argument("n_vars", type=int)
    p.add_argument("genes")
    p.add_argument("dims", type=int)
    p.add_argument("--categories")
    p.add_argument("--x", type=triple, help="ROW,COL,VALUE expected in X")
    p.add_argument("--spatial", type=triple, help="ROW,COL,VALUE expected in obsm['spatial']")
    p.add_argument("--scene-contains")
    p.add_argument("--run-columns", action="store_true", help="also require parent, phase and radius (written by explant run)")
    p.add_argument("--graph", action="store_true", help="require the contact graph in obsp (implied by --run-columns)")
    a = p.parse_args()

    ad = anndata.read_h5ad(a.path)

    def check(cond, msg):
        if not cond:
            sys.exit(f"check_h5ad: {a.path}: {msg}")

    check(ad.shape == (a.n_obs, a.n_vars), f"shape {ad.shape} != {(a.n_obs, a.n_vars)}")
    check(list(ad.var_names) == split(a.genes), f"var_names {list(ad.var_names)} != {split(a.genes)}")
    check(ad.X.dtype == np.float32, f"X dtype {ad.X.dtype}")
    check(isinstance(ad.X, np.ndarray), f"X is {type(ad.X)}, expected a dense array")
    check(all(isinstance(n, str) for n in ad.obs_names), "obs_names are not strings")
    check(ad.obs_names.is_unique, "obs_names are not unique")
    cols = list(ad.obs.columns)
    check(cols[:3] == ["cell_type", "generation", "perturbed"], f"obs columns {cols}")
    # A run's snapshots add the life-cycle columns; hand-made test files may not.
    if a.run_columns:
        check(cols[3:6] == ["parent", "phase", "radius"], f"obs columns {cols}")
        check(np.issubdtype(ad.obs["parent"].dtype, np.integer), f"parent dtype {ad.obs['parent'].dtype}")
        check(list(ad.obs["phase"].cat.categories) == ["cycling", "apoptotic", "necrotic"], "phase categories")
        check(bool((ad.obs["radius"] > 0).all()), "radius > 0")
    check(ad.obs["perturbed"].dtype == bool, f"perturbed dtype {ad.obs['perturbed'].dtype}")

    ct = ad.obs["cell_type"]
    check(isinstance(ct.dtype, pd.CategoricalDtype), f"cell_type dtype {ct.dtype}")
    check(not ct.cat.ordered, "cell_type is ordered")
    check(not ct.isna().any(), "cell_type has missing values")
    if a.categories is not None:
        cats = list(ct.cat.categories)
        check(cats == split(a.categories), f"categories {cats} != {split(a.categories)}")
    check(np.issubdtype(ad.obs["generation"].dtype, np.integer), f"generation dtype {ad.obs['generation'].dtype}")

    sp = ad.obsm["spatial"]
    check(sp.shape == (a.n_obs, a.dims), f"obsm['spatial'] shape {sp.shape} != {(a.n_obs, a.dims)}")
    check(sp.dtype == np.float32, f"obsm['spatial'] dtype {sp.dtype}")

    if a.x is not None:
        r, c, v = a.x
        check(np.isclose(ad.X[r, c], v, rtol=1e-6, atol=0), f"X[{r},{c}] = {ad.X[r, c]} != {v}")
    if a.spatial is not None:
        r, c, v = a.spatial
        check(np.isclose(sp[r, c], v, rtol=1e-6, atol=0), f"spatial[{r},{c}] = {sp[r, c]} != {v}")

    ex = ad.uns["explant"]
    for key in ["scene", "version", "time_min", "tick"]:
        check(key in ex, f"uns['explant'] lacks {key!r}")
    check(isinstance(ex["scene"], str), f"scene is {type(ex['scene'])}")
    check(isinstance(ex["version"], str), f"version is {type(ex['version'])}")
    if a.scene_contains is not None:
        check(a.scene_contains in ex["scene"], "scene text does not round-trip")
    for key in ["layers", "varm", "varp"]:
        check(len(getattr(ad, key)) == 0, f"{key} is not empty")

    check(list(ad.obs.columns[-2:]) == ["time_min", "tick"], f"obs columns {cols} do not end with time_min, tick")
    check(ad.obs["time_min"].dtype == np.float64, f"time_min dtype {ad.obs['time_min'].dtype}")
    check(ad.obs["tick"].dtype == np.int64, f"tick dtype {ad.obs['tick'].dtype}")
    check(bool((ad.obs["time_min"] == ex["time_min"]).all()), "obs['time_min'] is not uns['explant']['time_min']")
    check(bool((ad.obs["tick"] == ex["tick"]).all()), "obs['tick'] is not uns['explant']['tick']")
    tab10 = [matplotlib.colors.to_hex(matplotlib.colormaps["tab10"](k % 10)) for k in range(len(ct.cat.categories))]
    check(list(ad.uns["cell_type_colors"]) == tab10, f"cell_type_colors {list(ad.uns['cell_type_colors'])} != {tab10}")

    if a.graph or a.run_columns:
        check(set(ad.obsp) == {"spatial_connectivities", "spatial_distances"}, f"obsp holds {list(ad.obsp)}")
        conn, dist = ad.obsp["spatial_connectivities"], ad.obsp["spatial_distances"]
        check(sparse.issparse(conn) and conn.format == "csr" and conn.shape == (a.n_obs, a.n_obs), "connectivities")
        check((conn != conn.T).nnz == 0 and not conn.diagonal().any(), "the graph is not symmetric without self loops")
        r, c = conn.nonzero()
        xy = np.asarray(ad.obsm["spatial"], np.float64)
        want = np.linalg.norm(xy[r] - xy[c], axis=1)
        check(np.allclose(np.asarray(dist[r, c]).ravel(), want, rtol=1e-12, atol=0), "distances are not the coordinates'")
        nb = ad.uns["spatial_neighbors"]
        check(nb["connectivities_key"] == "spatial_connectivities" and nb["distances_key"] == "spatial_distances", f"{nb}")
    else:
        check(len(ad.obsp) == 0, "obsp is not empty")

    print(f"ok: {ad.n_obs} x {ad.n_vars}, {len(ct.cat.categories)} categories, tick {ex['tick']}, t {ex['time_min']} min")


if __name__ == "__main__":
    main()
