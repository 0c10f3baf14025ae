"""`explant.read_run` against the files of real run directories.

Three short runs are made once per module with the CLI binary (`EXPLANT_BIN`, else
`target/release/explant`, else `target/debug/explant`; skipped loudly when there is none,
and an error when `EXPLANT_BIN` names a file that does not exist):

- `default`: scenes/default.toml, 60 min of 0.5 min ticks, a snapshot every 20 min, so
  it ends on a recording tick (snapshots 0, 40, 80, 120); with a checkpoint and figures.
- `offcadence`: the same scene with 0.1 min ticks for 10 min and a snapshot every 4 min:
  snapshots 0, 40, 80 and the final state at tick 100, between recordings. A tick of
  0.1 min is not exact in single precision, so its times test the clock's rounding.
- `perturbed`: scenes/tumour_immune.toml (IFNGR1 knocked out in the tumour) for 30 min,
  with an `output.regions` entry appended, so it writes every table.

Every value is compared with what anndata, pandas or json read from the file itself.

Run with: `PYTHONPATH=python .venv/bin/python -m pytest tests/python/test_read_run.py -q`
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "python" / "explant" / "run.py"

try:
    import explant.run as run_module
except ImportError:  # the package's native module is not built yet: load run.py alone
    _spec = importlib.util.spec_from_file_location("explant_run_standalone", RUN_PY)
    run_module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(run_module)

read_run = run_module.read_run

GENES_DEFAULT = ["WNT3A", "FZD7", "AXIN2", "LGR5", "DLL1", "NOTCH1", "HES1"]
TABLES = {
    "timeseries": "timeseries.csv",
    "timeseries_control": "timeseries_control.csv",
    "regions": "timeseries_regions.csv",
    "ligand_totals": "ligand_totals.csv",
    "effects": "effects.csv",
    "response_vs_distance": "response_vs_distance.csv",
}


def explant_bin() -> Path:
    given = os.environ.get("EXPLANT_BIN")
    if given:
        path = Path(given)
        if not path.is_file():
            pytest.fail(f"EXPLANT_BIN=`{given}` does not exist")
        return path
    for candidate in (REPO / "target/release/explant", REPO / "target/debug/explant"):
        if candidate.is_file():
            return candidate
    pytest.skip(
        "SKIPPED LOUDLY: no explant binary (`target/release/explant` or `target/debug/explant`); "
        "build it with `cargo build --release -p explant-cli` or set EXPLANT_BIN"
    )


def explant_run(binary: Path, scene: Path, out: Path, *args: str) -> Path:
    cmd = [str(binary), "run", str(scene), "--out", str(out), "--quiet", "--threads", "2", *args]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}"
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    binary = explant_bin()
    root = tmp_path_factory.mktemp("runs")
    default = REPO / "scenes/default.toml"
    # The teacher rather than the scene's TorchScript model, so a build without `torch` runs it.
    out = {
        "default": explant_run(
            binary, default, root / "default", "--teacher", "--set", "time.duration=60", "--checkpoint-every", "30"
        ),
        "offcadence": explant_run(
            binary,
            default,
            root / "offcadence",
            "--teacher",
            "--no-figures",
            "--set",
            "time.dt=0.1",
            "--set",
            "time.duration=10",
            "--set",
            "time.record_every=4",
        ),
    }
    scene = root / "tumour_regions.toml"
    scene.write_text(
        (REPO / "scenes/tumour_immune.toml").read_text(encoding="utf-8")
        + '\n[[output.regions]]\nname = "core"\nshape = { kind = "circle", centre = [350.0, 350.0], radius = 80.0 }\n',
        encoding="utf-8",
    )
    out["perturbed"] = explant_run(
        binary, scene, root / "perturbed", "--no-figures", "--set", "time.duration=30", "--set", "time.record_every=15"
    )
    return out


def ticks_of_files(run_dir: Path) -> list[int]:
    names = os.listdir(run_dir / "snapshots")
    return sorted(int(m.group(1)) for n in names if (m := re.fullmatch(r"tick_(\d+)\.h5ad", n)))


def assert_same_adata(got: anndata.AnnData, want: anndata.AnnData) -> None:
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.asarray(got.X), np.asarray(want.X))
    pd.testing.assert_frame_equal(got.obs, want.obs)
    assert list(got.var_names) == list(want.var_names)
    assert set(got.obsm) == set(want.obsm)
    for key in want.obsm:
        np.testing.assert_array_equal(got.obsm[key], want.obsm[key])


@pytest.fixture
def h5ad_reads(monkeypatch) -> list[Path]:
    """Every `anndata.read_h5ad` call from here on, by path."""
    calls: list[Path] = []
    real = anndata.read_h5ad

    def recording(path, *args, **kwargs):
        calls.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(anndata, "read_h5ad", recording)
    return calls


# The final tissue ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "offcadence", "perturbed"])
def test_adata_is_the_final_tissue_file(runs, name):
    run = read_run(runs[name])
    want = anndata.read_h5ad(runs[name] / "tissue.h5ad")
    assert_same_adata(run.adata, want)
    # The final state, not a snapshot: its tick is the last one that ran.
    assert (run.adata.obs["tick"] == run.manifest["ticks_completed"]).all()


def test_adata_of_a_run_ending_between_recordings_is_not_its_last_snapshot(runs):
    run = read_run(runs["offcadence"])
    assert run.snapshots.ticks == [0, 40, 80]
    assert run.manifest["ticks_completed"] == 100
    assert (run.adata.obs["tick"] == 100).all()
    assert not np.array_equal(run.adata.X, anndata.read_h5ad(run.snapshots.path(80)).X)


def test_adata_is_read_once_and_cached(runs, h5ad_reads):
    run = read_run(runs["default"])
    assert h5ad_reads == []
    first = run.adata
    assert run.adata is first
    assert h5ad_reads == [runs["default"] / "tissue.h5ad"]


# Snapshots ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "offcadence", "perturbed"])
def test_snapshot_keys_are_the_ticks_of_the_files_in_order(runs, name):
    snaps = read_run(runs[name]).snapshots
    want = ticks_of_files(runs[name])
    assert len(want) >= 2
    assert list(snaps) == want
    assert list(snaps.keys()) == want
    assert snaps.ticks == want
    assert len(snaps) == len(want)


def test_snapshot_ticks_follow_the_recording_interval(runs):
    # 20 min of 0.5 min ticks; 15 min of 1 min ticks.
    assert read_run(runs["default"]).snapshots.ticks == [0, 40, 80, 120]
    assert read_run(runs["perturbed"]).snapshots.ticks == [0, 15, 30]


def test_each_snapshot_is_its_own_file(runs):
    snaps = read_run(runs["default"]).snapshots
    for tick in snaps:
        got = snaps[tick]
        assert_same_adata(got, anndata.read_h5ad(runs["default"] / "snapshots" / f"tick_{tick:07}.h5ad"))
        assert (got.obs["tick"] == tick).all()


def test_last_snapshot_equals_the_final_tissue_when_the_run_ends_on_a_recording_tick(runs):
    run = read_run(runs["default"])
    last = run.snapshots[run.snapshots.ticks[-1]]
    np.testing.assert_array_equal(last.X, run.adata.X)
    np.testing.assert_array_equal(last.obsm["spatial"], run.adata.obsm["spatial"])
    # ...and the first does not, so the check above can fail.
    assert not np.array_equal(run.snapshots[0].X, run.adata.X)


@pytest.mark.parametrize("name", ["default", "offcadence", "perturbed"])
def test_snapshot_times_equal_each_files_time_min(runs, name):
    snaps = read_run(runs[name]).snapshots
    times = snaps.times
    assert list(times) == snaps.ticks
    for tick, minutes in times.items():
        adata = anndata.read_h5ad(snaps.path(tick))
        assert (adata.obs["time_min"] == minutes).all(), (tick, minutes, adata.obs["time_min"].iloc[0])
        assert adata.uns["explant"]["time_min"] == minutes


def test_snapshot_times_round_the_tick_length_as_the_clock_does(runs):
    # 0.1 min is not exact in single precision; the clock's 40 ticks are a little over 4 min.
    times = read_run(runs["offcadence"]).snapshots.times
    assert times[40] == 40 * float(np.float32(0.1)) != 4.0


def test_snapshots_open_no_file_until_a_tick_is_looked_up(runs, h5ad_reads):
    run = read_run(runs["default"])
    snaps = run.snapshots
    assert len(snaps) == 4
    assert list(snaps) == [0, 40, 80, 120]
    assert 40 in snaps and 41 not in snaps and "40" not in snaps
    assert snaps.times[120] == 60.0
    assert snaps.get(41) is None
    repr(snaps), repr(run)
    assert h5ad_reads == []
    adata = snaps[40]
    assert h5ad_reads == [runs["default"] / "snapshots" / "tick_0000040.h5ad"]
    assert (adata.obs["tick"] == 40).all()


def test_opening_a_run_imports_neither_anndata_nor_pandas(runs):
    code = (
        "import sys, explant.run as r\n"
        f"run = r.read_run({str(runs['default'])!r})\n"
        "s = run.snapshots; len(s); list(s); s.times; repr(run); run.status; run.manifest\n"
        "print(sorted(m for m in ('anndata', 'pandas', 'h5py') if m in sys.modules))\n"
    )
    # run.py alone under an empty `explant` package, so the check holds whether or not
    # the native module is built (and measures run.py, not the package's __init__).
    prelude = (
        "import importlib.util, sys, types\n"
        "pkg = types.ModuleType('explant'); pkg.__path__ = []; sys.modules['explant'] = pkg\n"
        f"spec = importlib.util.spec_from_file_location('explant.run', {str(RUN_PY)!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['explant.run'] = m; spec.loader.exec_module(m)\n"
    )
    done = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_missing_tick_is_a_key_error_naming_the_ticks_there(runs):
    snaps = read_run(runs["default"]).snapshots
    with pytest.raises(KeyError, match=r"tick 41 .*ticks: 0, 40, 80, 120"):
        snaps[41]
    with pytest.raises(KeyError):
        snaps["40"]


# Tables -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "offcadence", "perturbed"])
def test_tables_equal_the_csv_files(runs, name):
    run = read_run(runs[name])
    for attr, file in TABLES.items():
        path = runs[name] / file
        got = getattr(run, attr)
        if not path.exists():
            assert got is None, attr
            continue
        want = pd.read_csv(path)
        assert len(want) > 0, file
        pd.testing.assert_frame_equal(got, want)


def test_timeseries_has_a_row_per_cell_type_and_recorded_tick(runs):
    run = read_run(runs["default"])
    ts = run.timeseries
    assert list(ts.columns) == ["tick", "time_min", "cell_type", "cells", *GENES_DEFAULT]
    assert sorted(set(ts["cell_type"])) == ["organiser", "responder"]
    assert sorted(set(ts["tick"])) == [0, 40, 80, 120]
    assert len(ts) == 8
    # Cells of each type at the end add up to the final tissue.
    last = ts[ts["tick"] == 120]
    assert last["cells"].sum() == run.adata.n_obs


def test_effects_are_present_for_a_perturbed_scene_and_none_without_perturbations(runs):
    plain = read_run(runs["default"])
    assert plain.effects is None
    assert plain.timeseries_control is None
    assert plain.response_vs_distance is None
    assert plain.regions is None

    perturbed = read_run(runs["perturbed"])
    effects = perturbed.effects
    assert effects is not None and len(effects) > 0
    # IFNGR1 is knocked out in the targeted (tumour) cells: clamped to 0 there, not in
    # the control.
    row = effects[(effects["group"] == "perturbed") & (effects["gene"] == "IFNGR1")]
    assert len(row) == 1
    assert row["perturbed_mean"].iloc[0] == 0.0
    assert row["control_mean"].iloc[0] > 0.5
    assert row["effect"].iloc[0] < -0.5
    assert perturbed.timeseries_control is not None and len(perturbed.timeseries_control) > 0
    assert set(perturbed.regions["region"]) == {"core"}


def test_cell_types_named_like_missing_values_stay_names(tmp_path, runs):
    run_dir = tmp_path / "run"
    shutil.copytree(runs["offcadence"], run_dir)
    path = run_dir / "timeseries.csv"
    path.write_text(path.read_text().replace("organiser", "NA"))
    ts = read_run(run_dir).timeseries
    assert "NA" in set(ts["cell_type"])
    assert ts["cell_type"].notna().all()


# Manifest, scene, status, other files ------------------------------------------------


@pytest.mark.parametrize("name", ["default", "perturbed"])
def test_manifest_is_the_json_file(runs, name):
    run = read_run(runs[name])
    assert run.manifest == json.loads((runs[name] / "manifest.json").read_text())
    assert run.status == "completed"
    assert run.failure is None
    assert run.path == runs[name]


def test_scene_is_the_run_s_scene_toml_with_its_overrides(runs):
    run = read_run(runs["default"])
    text = (runs["default"] / "scene.toml").read_text()
    assert run.scene_text == text
    assert run.scene == tomllib.loads(text)
    assert run.scene["time"]["duration"] == 60.0
    assert run.scene["genes"] == GENES_DEFAULT


def test_a_failed_run_says_where_it_failed(tmp_path, runs):
    run_dir = tmp_path / "failed"
    shutil.copytree(runs["offcadence"], run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["status"] = {"failed": {"stage": "respond", "tick": 12, "message": "NaN in dx/dt"}}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    run = read_run(run_dir)
    assert run.status == "failed"
    assert run.failure == {"stage": "respond", "tick": 12, "message": "NaN in dx/dt"}
    assert "failed in respond at tick 12" in repr(run)


def test_a_run_without_a_final_state_says_so_when_asked_for_it(tmp_path, runs):
    run_dir = tmp_path / "killed"
    shutil.copytree(runs["offcadence"], run_dir)
    (run_dir / "tissue.h5ad").unlink()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["status"] = "running"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    run = read_run(run_dir)
    assert run.status == "running"
    with pytest.raises(FileNotFoundError, match=re.escape(str(run_dir / "tissue.h5ad"))) as e:
        run.adata
    assert "tick 80" in str(e.value)


def test_repr_is_one_line_naming_the_run(runs):
    text = repr(read_run(runs["perturbed"]))
    assert "\n" not in text
    assert str(runs["perturbed"]) in text
    assert "completed" in text and "3 snapshots" in text and "paired control" in text


def test_checkpoint_and_figures(runs):
    default, off = read_run(runs["default"]), read_run(runs["offcadence"])
    assert default.checkpoint == runs["default"] / "checkpoint.explant"
    assert off.checkpoint is None
    assert default.figures and all(p.parent == runs["default"] / "figures" for p in default.figures)
    assert off.figures == []


# Errors -------------------------------------------------------------------------------


def test_a_missing_directory_is_file_not_found_naming_it(tmp_path):
    path = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(f"`{path}` does not exist")):
        read_run(path)


def test_a_directory_without_a_manifest_is_not_a_run(tmp_path):
    (tmp_path / "tissue.h5ad").write_bytes(b"")
    with pytest.raises(ValueError, match=re.escape(f"`{tmp_path}` is not an explant run directory")) as e:
        read_run(tmp_path)
    assert "manifest.json" in str(e.value)


def test_a_file_is_not_a_run_directory(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match=re.escape(f"`{path}` is not an explant run directory")):
        read_run(path)


def test_a_damaged_manifest_is_an_error_naming_it(tmp_path):
    (tmp_path / "manifest.json").write_text('{"status": "compl')
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "manifest.json"))):
        read_run(tmp_path)
