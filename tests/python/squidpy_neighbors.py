"""Build squidpy's spatial neighbour graph on a run's tissue.h5ad and check it against the scene.

Usage:
    squidpy_neighbors.py PATH [--factor 1.25]

PATH is an .h5ad written by `explant run` for a 2D scene whose tissue is generated on a
lattice (`shape = "box"` or `"disk"`, `packing = "lattice"`, the default) and whose cells
have not moved far (e.g. `mechanics.mobility = 0`). The scene is read back from
`uns['explant']['scene']`; from its area and cell count follows the spacing `a` of the
hexagonal lattice the cells were placed on (the same formula as explant's generator:
`a = sqrt(area / (n * sqrt(3) / 2))`; a box lattice is then refined by a few per cent and
thinned at random, leaving some vacancies).

`squidpy.gr.spatial_neighbors(coord_type="generic", radius=factor * a)` must then give a
non-empty, symmetric graph in which:
- the median distance between neighbours is within 10 % of `a`;
- interior cells (more than 2 `a` inside the tissue's outline) have a mean degree between
  5.0 and 6.2 (hexagonal packing: 6 within 1.25 `a`, a little less where a lattice site was
  left empty);
- no cell has more than 7 neighbours (the second shell is at sqrt(3) `a`, out of reach even
  with the 10 % placement jitter).

Prints `ok: ...` on success, exits non-zero with a message naming the first failed check.
"""

import argparse
import logging
import math
import sys
import tomllib

import anndata
import numpy as np
import squidpy as sq


def fail(path, msg):
    sys.exit(f"squidpy_neighbors: {path}: {msg}")


def lattice(path, scene, positions):
    """The lattice spacing the scene implies and each cell's distance inside the outline."""
    t = scene.get("tissue", {})
    if len(scene.get("grid", {}).get("size", [])) != 2:
        fail(path, "only 2D scenes are checked")
    if t.get("packing", "lattice") != "lattice":
        fail(path, f"tissue.packing is {t.get('packing')!r}; only lattice tissues have a known spacing")
    n = t.get("cells")
    if not n:
        fail(path, "the scene's tissue has no `cells` count")
    shape = t.get("shape", "disk")
    if shape == "box":
        lo, hi = np.asarray(t["min"][:2], float), np.asarray(t["max"][:2], float)
        area = float(np.prod(hi - lo))
        inside = np.minimum(positions - lo, hi - positions).min(axis=1)
    elif shape == "disk":
        centre, r = np.asarray(t["centre"][:2], float), float(t["radius"])
        area = math.pi * r * r
        inside = r - np.linalg.norm(positions - centre, axis=1)
    else:
        fail(path, f"tissue.shape is {shape!r}; only `box` and `disk` are checked")
    return math.sqrt(area / (n * math.sqrt(3) / 2)), inside


def main():
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("--factor", type=float, default=1.25, help="neighbour radius in lattice spacings")
    a = p.parse_args()

    # squidpy logs through spatialdata's logger, at INFO and onto stdout.
    logging.getLogger("spatialdata._logging").setLevel(logging.WARNING)
    ad = anndata.read_h5ad(a.path)
    scene = tomllib.loads(str(ad.uns["explant"]["scene"]))
    positions = np.asarray(ad.obsm["spatial"], float)[:, :2]
    spacing, inside = lattice(a.path, scene, positions)
    radius = a.factor * spacing

    sq.gr.spatial_neighbors(ad, coord_type="generic", radius=radius)
    conn = ad.obsp["spatial_connectivities"].tocsr()
    dist = ad.obsp["spatial_distances"].tocsr()

    if conn.shape != (ad.n_obs, ad.n_obs):
        fail(a.path, f"connectivities shape {conn.shape} for {ad.n_obs} cells")
    if conn.nnz == 0:
        fail(a.path, f"no neighbours within {radius:.2f} µm")
    if (conn != conn.T).nnz != 0:
        fail(a.path, "the connectivity graph is not symmetric")
    if abs(dist - dist.T).max() > 1e-4:
        fail(a.path, "the distance graph is not symmetric")
    if conn.diagonal().any():
        fail(a.path, "a cell is its own neighbour")

    degree = np.asarray(conn.sum(axis=1)).ravel()
    median_edge = float(np.median(dist.data))
    if abs(median_edge / spacing - 1) > 0.1:
        fail(a.path, f"median neighbour distance {median_edge:.2f} µm, lattice spacing {spacing:.2f} µm")
    interior = inside > 2 * spacing
    if interior.sum() < 10:
        fail(a.path, f"only {interior.sum()} interior cells; use a larger tissue")
    interior_mean = float(degree[interior].mean())
    if not 5.0 <= interior_mean <= 6.2:
        fail(a.path, f"interior mean degree {interior_mean:.2f}, expected about 6 (5.0 to 6.2)")
    if degree.max() > 7:
        fail(a.path, f"a cell has {int(degree.max())} neighbours within {radius:.2f} µm, more than 7")

    print(
        f"ok: {ad.n_obs} cells, radius {radius:.2f} µm ({a.factor} × lattice spacing {spacing:.2f} µm), "
        f"{conn.nnz} directed edges, mean degree {degree.mean():.2f}, interior {interior_mean:.2f} "
        f"over {int(interior.sum())} cells, median neighbour distance {median_edge:.2f} µm"
    )


if __name__ == "__main__":
    main()
