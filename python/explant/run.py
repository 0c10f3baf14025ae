"""Read back a run directory written by ``explant run``.

``explant run SCENE --out DIR`` leaves one directory per run: the final tissue as AnnData,
a snapshot at every recorded time point, pseudobulk tables and the manifest that says
what ran and how it ended. :func:`read_run` opens such a directory and hands each part
back in the form a scanpy/squidpy user works with: :class:`anndata.AnnData` for the
tissue, :class:`pandas.DataFrame` for the tables, a ``dict`` for the manifest.

Nothing heavy is read up front: ``read_run`` only parses ``manifest.json``; the final
tissue, each snapshot and each table is read when first asked for. anndata and pandas
are imported at that point too, so ``import explant`` stays fast.

The file names are those of ``crates/explant-run/src/layout.rs`` (``RunFile``), the one
owner of the run directory's layout on the Rust side; keep the two in step.

Example::

    >>> import explant, scanpy as sc
    >>> run = explant.read_run("results/default")
    >>> run
    <explant.Run 'results/default': `scenes/default.toml`, completed, tick 480 of 480 (240 min), 1500 cells, 13 snapshots>
    >>> sc.pl.spatial(run.adata, color="AXIN2", spot_size=12)
    >>> for tick, adata in run.snapshots.items():   # one file at a time
    ...     print(run.snapshots.times[tick], adata.X.mean(axis=0))
    >>> run.timeseries.query("cell_type == 'responder'").plot(x="time_min", y="AXIN2")
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported lazily at run time: see the module docs
    import anndata
    import pandas

__all__ = ["Run", "Snapshots", "read_run"]

# The run directory's files, as `RunFile::name` in crates/explant-run/src/layout.rs.
MANIFEST = "manifest.json"
SCENE = "scene.toml"
TISSUE = "tissue.h5ad"
SNAPSHOTS = "snapshots"
TIMESERIES = "timeseries.csv"
TIMESERIES_CONTROL = "timeseries_control.csv"
TIMESERIES_REGIONS = "timeseries_regions.csv"
LIGAND_TOTALS = "ligand_totals.csv"
EFFECTS = "effects.csv"
RESPONSE_VS_DISTANCE = "response_vs_distance.csv"
FIGURES = "figures"
CHECKPOINT = "checkpoint.explant"

# `snapshots/tick_NNNNNNN.h5ad` (`snapshot_name` in layout.rs; the tick is zero-padded to
# seven digits, and longer when it needs to be).
_SNAPSHOT_NAME = re.compile(r"tick_([0-9]+)\.h5ad")


def read_run(path: str | os.PathLike[str]) -> Run:
    """Open a run directory written by ``explant run SCENE --out DIR``.

    Only ``manifest.json`` is read here; everything else is read on first access (see
    :class:`Run`).

    Parameters
    ----------
    path
        The run's output directory (the ``--out`` of ``explant run``).

    Returns
    -------
    :class:`Run`

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When ``path`` is not a directory, has no ``manifest.json`` (it is not an explant
        run directory), or its manifest is not valid JSON.
    """
    return Run(path)


class Run:
    """A run directory written by ``explant run``, read lazily.

    Attributes
    ----------
    path : pathlib.Path
        The run directory.
    manifest : dict
        ``manifest.json`` as parsed JSON: the command line, seed, ``dt_min``,
        ``ticks_completed``, ``cells``, the diffusion backend and response model that ran,
        wall time per stage, and ``status``. Read when the run is opened.

    The other attributes are properties, each read from its file the first time it is
    used and cached on the object (so ``run.adata`` is the same object every time; copy it
    before changing it if you want the file's version back):

    - :attr:`adata`: the final tissue (``tissue.h5ad``) as AnnData.
    - :attr:`snapshots`: every recorded time point, a read-only mapping tick → AnnData.
    - :attr:`timeseries`, :attr:`timeseries_control`, :attr:`regions`,
      :attr:`ligand_totals`, :attr:`effects`, :attr:`response_vs_distance`: the CSV
      tables as DataFrames, or ``None`` when the run did not write that table.
    - :attr:`scene` (parsed TOML, a ``dict``) and :attr:`scene_text` (the file's text).
    - :attr:`status` and :attr:`failure`: how the run ended.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        root = Path(path).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"run directory `{root}` does not exist")
        if not root.is_dir():
            raise ValueError(
                f"`{root}` is not an explant run directory: it is not a directory; "
                "give the output directory of `explant run`"
            )
        manifest = root / MANIFEST
        if not manifest.is_file():
            raise ValueError(
                f"`{root}` is not an explant run directory (no {MANIFEST}, "
                "written by `explant run SCENE --out DIR`)"
            )
        try:
            parsed = json.loads(manifest.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"manifest `{manifest}` is not valid JSON: {e}") from e
        if not isinstance(parsed, dict):
            raise ValueError(f"manifest `{manifest}` is not a JSON object")
        self.path: Path = root
        self.manifest: dict[str, Any] = parsed

    def __repr__(self) -> str:
        m = self.manifest
        scene = m.get("scene", "?")
        status = self.status
        if status == "failed" and self.failure is not None:
            f = self.failure
            status = f"failed in {f.get('stage', '?')} at tick {f.get('tick', '?')}"
        done, planned = m.get("ticks_completed", "?"), m.get("ticks_planned", "?")
        minutes = _minutes(m.get("time_min"))
        control = ", paired control" if m.get("paired_control") else ""
        n = len(self.snapshots)
        return (
            f"<explant.Run '{self.path}': `{scene}`, {status}, tick {done} of {planned} ({minutes} min), "
            f"{m.get('cells', '?')} cells, {n} snapshot{'' if n == 1 else 's'}{control}>"
        )

    # How it ended ---------------------------------------------------------------------

    @property
    def status(self) -> str:
        """How the run ended: ``"completed"``, ``"failed"`` or ``"running"``.

        ``"running"`` means the run never recorded an end: it is still going or was killed
        (it then has snapshots but no ``tissue.h5ad`` or tables yet). A failed run wrote
        all its outputs with the state at the failing tick; :attr:`failure` says where.
        """
        status = self.manifest.get("status")
        if isinstance(status, str):
            return status
        if isinstance(status, dict) and len(status) == 1:
            return next(iter(status))
        raise ValueError(f"manifest `{self.path / MANIFEST}`: `status` is not understood: {status!r}")

    @property
    def failure(self) -> dict[str, Any] | None:
        """For a failed run, ``{"stage": ..., "tick": ..., "message": ...}``; else ``None``."""
        status = self.manifest.get("status")
        if isinstance(status, dict) and isinstance(status.get("failed"), dict):
            return status["failed"]
        return None

    # The scene ------------------------------------------------------------------------

    @cached_property
    def scene_text(self) -> str:
        """The text of ``scene.toml``: the exact scene that ran, with any ``--set``,
        ``--seed`` or ``--model`` override written in (the original's comments are not
        kept)."""
        path = self.path / SCENE
        if not path.is_file():
            raise FileNotFoundError(
                f"`{path}` is missing (run status: {self.status}); the scene is also in every "
                "snapshot's `uns['explant']['scene']`"
            )
        return path.read_text(encoding="utf-8")

    @cached_property
    def scene(self) -> dict[str, Any]:
        """``scene.toml`` parsed with :mod:`tomllib` into a ``dict`` (``run.scene["genes"]``,
        ``run.scene["time"]["dt"]``…). The raw text is :attr:`scene_text`."""
        try:
            import tomllib
        except ModuleNotFoundError:  # Python < 3.11
            import tomli as tomllib  # type: ignore[no-redef]
        return tomllib.loads(self.scene_text)

    # The tissue -----------------------------------------------------------------------

    @cached_property
    def adata(self) -> anndata.AnnData:
        """The final tissue, ``tissue.h5ad``, as AnnData (read on first access, then cached).

        One row per cell, one column per gene of the scene. ``obs`` holds ``cell_type``,
        ``generation``, ``parent``, ``phase``, ``radius``, ``perturbed`` (and
        ``distance_to_perturbation`` with perturbations), ``time_min`` and ``tick``;
        ``obsm['spatial']`` the positions in µm; ``obsp['spatial_connectivities']`` and
        ``obsp['spatial_distances']`` the contact graph, as squidpy's
        ``sq.gr.spatial_neighbors`` stores it; ``uns['fields']`` the ligand grids;
        ``layers['control']`` the paired control's expression, when it ran.

        Raises ``FileNotFoundError`` when the run has no final state yet (status
        ``"running"``); its latest snapshot is then ``run.snapshots[run.snapshots.ticks[-1]]``.
        """
        path = self.path / TISSUE
        if not path.is_file():
            hint = ""
            if len(self.snapshots):
                hint = f"; its latest snapshot is tick {self.snapshots.ticks[-1]}"
            raise FileNotFoundError(
                f"`{path}` is missing: the run has no final state (status: {self.status}){hint}"
            )
        import anndata

        return anndata.read_h5ad(path)

    @cached_property
    def snapshots(self) -> Snapshots:
        """Every recorded time point, as a read-only mapping tick → AnnData.

        See :class:`Snapshots`: the ticks come from the file names; a snapshot file is
        only read when its tick is looked up.
        """
        return Snapshots(self.path / SNAPSHOTS, dt_min=self._dt_min())

    def _dt_min(self) -> float:
        """The tick length in minutes, as the simulation held it (an f32)."""
        dt = self.manifest.get("dt_min")
        if dt is None:
            dt = self.scene["time"]["dt"]
        return _f32(float(dt))

    # The tables -----------------------------------------------------------------------

    @cached_property
    def timeseries(self) -> pandas.DataFrame | None:
        """``timeseries.csv``: pseudobulk by cell type over time.

        Columns ``tick, time_min, cell_type, cells`` and one per gene: the mean expression
        of each cell type's ``cells`` cells at every recorded tick (long format: one row
        per tick and cell type).
        """
        return self._table(TIMESERIES)

    @cached_property
    def timeseries_control(self) -> pandas.DataFrame | None:
        """``timeseries_control.csv``: :attr:`timeseries` for the paired control (the same
        scene and seed without its perturbations); ``None`` when no control ran."""
        return self._table(TIMESERIES_CONTROL)

    @cached_property
    def regions(self) -> pandas.DataFrame | None:
        """``timeseries_regions.csv``: pseudobulk by named region and cell type over time
        (``tick, time_min, region, cell_type, cells``, then one column per gene);
        ``None`` when the scene names no ``output.regions``."""
        return self._table(TIMESERIES_REGIONS)

    @cached_property
    def ligand_totals(self) -> pandas.DataFrame | None:
        """``ligand_totals.csv``: each ligand's total on the grid over time
        (``tick, time_min``, then one column per ligand)."""
        return self._table(LIGAND_TOTALS)

    @cached_property
    def effects(self) -> pandas.DataFrame | None:
        """``effects.csv``: perturbed − control at the end of the run, per gene and group.

        Columns ``time_min, group, distance_from_um, distance_to_um, cells, gene,
        perturbed_mean, control_mean, effect``; ``group`` is ``perturbed`` (the targeted
        cells) or a distance band of the untargeted ones. ``None`` when no paired control
        ran (a scene without perturbations, or ``--no-control``).
        """
        return self._table(EFFECTS)

    @cached_property
    def response_vs_distance(self) -> pandas.DataFrame | None:
        """``response_vs_distance.csv``: the effect per gene in distance bins from the
        perturbation (``distance_um, cells``, then ``effect_GENE`` and ``abs_effect_GENE``
        per gene); ``None`` when no paired control ran."""
        return self._table(RESPONSE_VS_DISTANCE)

    def _table(self, name: str) -> pandas.DataFrame | None:
        path = self.path / name
        if not path.is_file():
            return None
        import pandas

        # Only the spellings explant writes for a missing or non-finite number are NaN, so
        # a cell type or gene named "NA", "None" or "null" stays a name.
        return pandas.read_csv(path, keep_default_na=False, na_values=["", "NaN"])

    # Other files ----------------------------------------------------------------------

    @property
    def figures(self) -> list[Path]:
        """The files in ``figures/`` (drawn at the end of the run and by
        ``explant render``), sorted by name; empty when there are none."""
        folder = self.path / FIGURES
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_file())

    @property
    def checkpoint(self) -> Path | None:
        """``checkpoint.explant`` (written with ``--checkpoint-every``; what
        ``explant resume`` continues from), or ``None``."""
        path = self.path / CHECKPOINT
        return path if path.is_file() else None


class Snapshots(Mapping[int, "anndata.AnnData"]):
    """The run's snapshots, ``snapshots/tick_NNNNNNN.h5ad``: a read-only mapping from tick
    (``int``) to AnnData, in tick order.

    The ticks are taken from the file names when the mapping is made; ``len``,
    iteration, ``in``, :attr:`ticks`, :attr:`times` and :meth:`path` never open a file.
    ``snapshots[tick]`` reads that one file with :func:`anndata.read_h5ad` every time it
    is looked up (nothing is cached, so looping over a long run holds one snapshot at a
    time); keep the result in a variable if you use it more than once.

    Each snapshot has the layout of :attr:`Run.adata`, at its own time point.

    >>> snaps = run.snapshots
    >>> snaps.ticks                     # [0, 40, 80, ...]
    >>> snaps.times[80]                 # 40.0 (minutes)
    >>> first = snaps[snaps.ticks[0]]   # reads snapshots/tick_0000000.h5ad
    >>> for tick, adata in snaps.items():
    ...     ...
    """

    def __init__(self, folder: Path, dt_min: float) -> None:
        self._folder = folder
        self._dt_min = dt_min
        found: dict[int, Path] = {}
        if folder.is_dir():
            for entry in folder.iterdir():
                m = _SNAPSHOT_NAME.fullmatch(entry.name)
                if m and entry.is_file():
                    found[int(m.group(1))] = entry
        self._paths = dict(sorted(found.items()))

    @property
    def ticks(self) -> list[int]:
        """The recorded ticks, ascending."""
        return list(self._paths)

    @property
    def times(self) -> dict[int, float]:
        """Simulated minutes of each snapshot, ``{tick: minutes}`` in tick order.

        Computed from the file names as ``tick × dt`` with the manifest's ``dt_min``
        rounded to single precision, as the simulation's clock does, so each value equals
        the snapshot's ``obs['time_min']`` and the ``time_min`` column of the tables
        exactly (e.g. ``4.000000059604645`` rather than ``4.0`` for 40 ticks of 0.1 min),
        and no file is opened.
        """
        return {tick: tick * self._dt_min for tick in self._paths}

    def path(self, tick: int) -> Path:
        """The file of the snapshot at ``tick`` (``KeyError`` if there is none)."""
        return self._paths[self._key(tick)]

    def _key(self, tick: object) -> int:
        try:
            key = int(tick.__index__())  # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            raise KeyError(tick) from None
        if key not in self._paths:
            have = ", ".join(map(str, self._paths)) or "none"
            raise KeyError(f"no snapshot at tick {key} in `{self._folder}` (ticks: {have})")
        return key

    def __getitem__(self, tick: int) -> anndata.AnnData:
        path = self.path(tick)
        import anndata

        return anndata.read_h5ad(path)

    def __contains__(self, tick: object) -> bool:
        try:
            self._key(tick)
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[int]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __repr__(self) -> str:
        n = len(self._paths)
        if n == 0:
            return f"<explant.Snapshots: none in `{self._folder}`>"
        times = self.times
        first, last = self.ticks[0], self.ticks[-1]
        return (
            f"<explant.Snapshots: {n} in `{self._folder}`, ticks {first}–{last} "
            f"({_minutes(times[first])}–{_minutes(times[last])} min)>"
        )


def _f32(x: float) -> float:
    """``x`` rounded to the nearest single-precision float (the simulation's `dt: f32`)."""
    return struct.unpack("f", struct.pack("f", x))[0]


def _minutes(x: object) -> str:
    """Minutes for a summary line: ``60`` rather than ``60.0``, a few digits otherwise."""
    if not isinstance(x, (int, float)):
        return "?"
    return f"{x:.6g}"
