"""Read a run's ParaView export back with meshio and compare it with the run's AnnData.

Usage:
    vtk_readback.py RUN_DIR

RUN_DIR holds a run of `explant run` and its export, `explant export RUN_DIR --vtk`. For
every snapshot `snapshots/tick_*.h5ad` (or `tissue.h5ad` alone):
- `vtk/cells_<stem>.vtu` (read by meshio): one vertex per cell; points equal
  `obsm['spatial']` (z = 0 in 2D), `radius`, `cell_type` (the codes of
  `obs['cell_type']`), `cell_id` (`obs_names`) and every gene's array equal the
  AnnData's values exactly (float32);
- `vtk/fields_<stem>.vtk` (legacy structured points, read by meshio): one point per voxel
  at its centre (origin + spacing / 2), and every ligand's values equal
  `uns['fields'][name]` exactly, in x-fastest order;
- `vtk/cells.pvd` and `vtk/fields.pvd` list those files in tick order with
  `timestep` = `uns['explant']['time_min']`.

Each check is also run on a deliberately wrong copy (a shifted point, a gene's values
swapped with another's, a time off by one minute), which must be rejected.

Prints `ok: ...` on success, exits non-zero naming the first failed check.
"""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import anndata
import meshio
import numpy as np


class Failed(Exception):
    pass


def check(ok, message):
    if not ok:
        raise Failed(message)


def check_cells(ad, mesh, where):
    n = ad.n_obs
    check(mesh.points.shape == (n, 3), f"{where}: {mesh.points.shape} points for {n} cells")
    xy = np.asarray(ad.obsm["spatial"], np.float32)
    want = np.zeros((n, 3), np.float32)
    want[:, : xy.shape[1]] = xy
    check(np.array_equal(mesh.points.astype(np.float32), want), f"{where}: points differ from obsm['spatial']")
    check([c.type for c in mesh.cells] == ["vertex"] and len(mesh.cells[0].data) == n, f"{where}: not one vertex per cell")
    pd = mesh.point_data
    check(np.array_equal(np.asarray(pd["radius"], np.float32), np.asarray(ad.obs["radius"], np.float32)), f"{where}: radius")
    check(np.array_equal(np.asarray(pd["cell_type"]), ad.obs["cell_type"].cat.codes.to_numpy()), f"{where}: cell_type")
    check(np.array_equal(np.asarray(pd["cell_id"]), np.array([int(i) for i in ad.obs_names])), f"{where}: cell_id")
    x = np.asarray(ad.X, np.float32)
    for k, gene in enumerate(ad.var_names):
        got = np.asarray(pd[gene], np.float32).reshape(-1)
        check(np.array_equal(got, x[:, k], equal_nan=True), f"{where}: gene {gene} differs")


def check_fields(ad, mesh, where):
    fields, grid = ad.uns["fields"], ad.uns["fields_grid"]
    spacing = float(grid["spacing"])
    origin = np.asarray(grid["origin"], np.float64)
    shape = [int(s) for s in grid["shape"]]  # (ny, nx) or (nz, ny, nx)
    nx, ny = shape[-1], shape[-2]
    nz = shape[0] if len(shape) == 3 else 1
    check(mesh.points.shape[0] == nx * ny * nz, f"{where}: {mesh.points.shape[0]} points for {nx}×{ny}×{nz} voxels")
    first = mesh.points[0]
    check(np.allclose(first[:2], origin[:2] + spacing / 2), f"{where}: first voxel centre {first} vs origin {origin}")
    check(np.allclose(mesh.points[1] - mesh.points[0], [spacing, 0, 0]), f"{where}: x is not the fastest axis")
    for name, values in fields.items():
        got = np.asarray(mesh.point_data[name], np.float32).reshape(-1)
        want = np.asarray(values, np.float32).reshape(-1)
        check(np.array_equal(got, want, equal_nan=True), f"{where}: ligand {name} differs")


def pvd(path):
    root = ET.parse(path).getroot()
    return [(d.get("file"), float(d.get("timestep"))) for d in root.iter("DataSet")]


def must_fail(what, f):
    try:
        f()
    except Failed:
        return
    raise Failed(f"the check of {what} accepted a wrong copy")


def main(run):
    snaps = sorted((run / "snapshots").glob("tick_*.h5ad")) or [run / "tissue.h5ad"]
    vtk = run / "vtk"
    cells_pvd = pvd(vtk / "cells.pvd")
    fields_pvd = pvd(vtk / "fields.pvd") if (vtk / "fields.pvd").exists() else []
    check(len(cells_pvd) == len(snaps), f"cells.pvd lists {len(cells_pvd)} files for {len(snaps)} snapshots")
    checked_fields = 0
    for k, snap in enumerate(snaps):
        ad = anndata.read_h5ad(snap)
        stem = snap.stem if snap.name != "tissue.h5ad" else None
        file, time = cells_pvd[k]
        check(stem is None or file == f"cells_{stem}.vtu", f"cells.pvd entry {k} is {file}")
        check(time == float(ad.uns["explant"]["time_min"]), f"{file}: timestep {time} vs {ad.uns['explant']['time_min']}")
        mesh = meshio.read(vtk / file)
        check_cells(ad, mesh, file)
        if k == len(snaps) - 1:
            bad = meshio.Mesh(mesh.points.copy(), mesh.cells, point_data=dict(mesh.point_data))
            bad.points[0, 0] += 1.0
            must_fail("points", lambda: check_cells(ad, bad, "shifted"))
            genes = list(ad.var_names)
            swapped = dict(mesh.point_data)
            swapped[genes[0]], swapped[genes[1]] = mesh.point_data[genes[1]], mesh.point_data[genes[0]]
            must_fail("genes", lambda: check_cells(ad, meshio.Mesh(mesh.points, mesh.cells, point_data=swapped), "swapped"))
            must_fail("the time", lambda: check(time + 1.0 == float(ad.uns["explant"]["time_min"]), "off by one"))
        if "fields" in ad.uns:
            ffile, ftime = fields_pvd[k]
            check(ftime == time and ffile == file.replace("cells_", "fields_").replace(".vtu", ".vtk"), f"fields.pvd entry {k}")
            check_fields(ad, meshio.read(vtk / ffile), ffile)
            checked_fields += 1
    print(f"ok: {len(snaps)} snapshots, {checked_fields} with fields, read back by meshio {meshio.__version__}")


if __name__ == "__main__":
    try:
        main(Path(sys.argv[1]))
    except Failed as e:
        print(f"vtk_readback: {e}", file=sys.stderr)
        sys.exit(1)
