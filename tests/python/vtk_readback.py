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

Every file is also read by VTK's own readers (the `vtk` wheel from PyPI: the readers
ParaView opens these formats with, `vtkXMLUnstructuredGridReader` and
`vtkStructuredPointsReader`), which must report no error and give the same points,
arrays and grid; and each `.pvd` must be the collection ParaView's PVD reader expects
(`VTKFile type="Collection"`, `DataSet` entries with `timestep`, `part` and `file`).

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
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonCore import vtkCommand, vtkLogger, vtkOutputWindow, vtkStringOutputWindow, vtkVersion
from vtkmodules.vtkIOLegacy import vtkStructuredPointsReader
from vtkmodules.vtkIOXML import vtkXMLUnstructuredGridReader


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
    check(root.tag == "VTKFile" and root.get("type") == "Collection", f"{path.name}: not a VTKFile Collection")
    sets = root.findall("./Collection/DataSet")
    check(sets and len(sets) == len(list(root.iter("DataSet"))), f"{path.name}: DataSet entries outside Collection")
    for d in sets:
        check(all(d.get(a) is not None for a in ("timestep", "part", "file")), f"{path.name}: {d.attrib} lacks an attribute")
    return [(d.get("file"), float(d.get("timestep"))) for d in sets]


# VTK's messages (its parsers report there, not only through the reader's events) are
# kept in a string, read after each file, rather than printed.
VTK_MESSAGES = vtkStringOutputWindow()
vtkOutputWindow.SetInstance(VTK_MESSAGES)
vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_OFF)


def vtk_read(reader_type, path):
    """Read `path` with a VTK reader; any error or warning it raises fails the check."""
    reader = reader_type()
    seen = len(VTK_MESSAGES.GetOutput())
    errors = []
    for event in (vtkCommand.ErrorEvent, vtkCommand.WarningEvent):
        reader.AddObserver(event, lambda obj, ev: errors.append(ev))
        reader.GetExecutive().AddObserver(event, lambda obj, ev: errors.append(ev))
    reader.SetFileName(str(path))
    reader.Update()
    data = reader.GetOutput()
    said = VTK_MESSAGES.GetOutput()[seen:].strip()
    check(not errors and not said and data is not None, f"{path.name}: VTK's reader reported {said or errors or 'no output'}")
    return data


def check_cells_vtk(mesh, path):
    """VTK's XML reader (ParaView's) sees what meshio saw, value for value."""
    grid = vtk_read(vtkXMLUnstructuredGridReader, path)
    n = mesh.points.shape[0]
    check(grid.GetNumberOfPoints() == n and grid.GetNumberOfCells() == n, f"{path.name}: VTK reads {grid.GetNumberOfPoints()} points")
    check(np.array_equal(vtk_to_numpy(grid.GetPoints().GetData()).astype(np.float32), mesh.points.astype(np.float32)), f"{path.name}: VTK's points differ")
    check(all(grid.GetCellType(i) == 1 for i in range(n)), f"{path.name}: VTK does not read vertices")  # VTK_VERTEX
    pd = grid.GetPointData()
    names = sorted(pd.GetArrayName(i) for i in range(pd.GetNumberOfArrays()))
    check(names == sorted(mesh.point_data), f"{path.name}: VTK reads arrays {names}")
    for name, values in mesh.point_data.items():
        got = vtk_to_numpy(pd.GetArray(name)).reshape(-1)
        check(np.array_equal(got.astype(np.float64), np.asarray(values, np.float64).reshape(-1), equal_nan=True), f"{path.name}: VTK reads {name} differently")


def check_fields_vtk(ad, mesh, path):
    """VTK's legacy structured-points reader (ParaView's) gives the run's grid and values."""
    image = vtk_read(vtkStructuredPointsReader, path)
    grid = ad.uns["fields_grid"]
    shape = [int(s) for s in grid["shape"]]
    want_dims = (shape[-1], shape[-2], shape[0] if len(shape) == 3 else 1)
    check(tuple(image.GetDimensions()) == want_dims, f"{path.name}: VTK reads dimensions {image.GetDimensions()}, not {want_dims}")
    spacing = float(grid["spacing"])
    check(np.allclose(image.GetSpacing()[: len(shape)], spacing), f"{path.name}: VTK reads spacing {image.GetSpacing()}")
    origin = np.asarray(grid["origin"], np.float64)
    check(np.allclose(image.GetOrigin()[:2], origin[:2] + spacing / 2), f"{path.name}: VTK reads origin {image.GetOrigin()}")
    pd = image.GetPointData()
    for name, values in ad.uns["fields"].items():
        array = pd.GetArray(name)
        check(array is not None, f"{path.name}: VTK finds no array {name}")
        got = vtk_to_numpy(array).astype(np.float32).reshape(-1)
        check(np.array_equal(got, np.asarray(values, np.float32).reshape(-1), equal_nan=True), f"{path.name}: VTK reads {name} differently")
    check(image.GetNumberOfPoints() == mesh.points.shape[0], f"{path.name}: VTK reads {image.GetNumberOfPoints()} voxels")


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
        check_cells_vtk(mesh, vtk / file)
        if k == len(snaps) - 1:
            bad = meshio.Mesh(mesh.points.copy(), mesh.cells, point_data=dict(mesh.point_data))
            bad.points[0, 0] += 1.0
            must_fail("points", lambda: check_cells(ad, bad, "shifted"))
            genes = list(ad.var_names)
            swapped = dict(mesh.point_data)
            swapped[genes[0]], swapped[genes[1]] = mesh.point_data[genes[1]], mesh.point_data[genes[0]]
            must_fail("genes", lambda: check_cells(ad, meshio.Mesh(mesh.points, mesh.cells, point_data=swapped), "swapped"))
            must_fail("the time", lambda: check(time + 1.0 == float(ad.uns["explant"]["time_min"]), "off by one"))
            # VTK's reader must see a damaged file as damaged, and the comparison must
            # see a changed value.
            damaged = run / "damaged.vtu"
            damaged.write_bytes((vtk / file).read_bytes()[: (vtk / file).stat().st_size // 2])
            must_fail("a truncated .vtu", lambda: check_cells_vtk(mesh, damaged))
            damaged.unlink()
            changed = dict(mesh.point_data)
            changed[genes[0]] = np.asarray(changed[genes[0]]) + 1.0
            must_fail("VTK's values", lambda: check_cells_vtk(meshio.Mesh(mesh.points, mesh.cells, point_data=changed), vtk / file))
        if "fields" in ad.uns:
            ffile, ftime = fields_pvd[k]
            check(ftime == time and ffile == file.replace("cells_", "fields_").replace(".vtu", ".vtk"), f"fields.pvd entry {k}")
            fmesh = meshio.read(vtk / ffile)
            check_fields(ad, fmesh, ffile)
            check_fields_vtk(ad, fmesh, vtk / ffile)
            checked_fields += 1
    print(
        f"ok: {len(snaps)} snapshots, {checked_fields} with fields, read back by meshio {meshio.__version__} "
        f"and VTK {vtkVersion.GetVTKVersion()}"
    )


if __name__ == "__main__":
    try:
        main(Path(sys.argv[1]))
    except Failed as e:
        print(f"vtk_readback: {e}", file=sys.stderr)
        sys.exit(1)
