"""The Python package against the CLI: `explant.Scene` and `explant.Simulation`.

- The default scene stepped from Python gives, array for array and byte for byte, the
  `tissue.h5ad` that `explant run` writes for the same scene and seed.
- A NumPy callable that implements the teacher's equations gives the teacher's run (to
  float32 rounding), and a model that does nothing or the wrong thing does not.
- Errors raise `explant.ExplantError` with the CLI's messages; a Python model with wrong
  names, a wrong shape or a non-finite output is refused at load, naming the problem.
- `perturb()` between steps: the paired control it starts is, bit for bit, the same
  simulation stepped on without the perturbation.
- `checkpoint()` / `Simulation.resume()` continue bit for bit.
- A real `torch.nn.Module` as the model, where PyTorch is installed (skipped loudly where
  it is not: the test virtualenv does not install PyTorch's several GB).

The CLI binary is `EXPLANT_BIN`, else target/debug/explant, else target/release/explant.
Run: `.venv/bin/python -m pytest tests/python/test_python_api.py -q` after
`maturin develop --features torch` (scripts/test.sh does both).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import anndata
import numpy as np
import pytest

import explant

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "scenes" / "default.toml"


def cli() -> Path:
    named = os.environ.get("EXPLANT_BIN")
    if named:
        assert Path(named).is_file(), f"EXPLANT_BIN={named} does not exist"
        return Path(named)
    for p in (REPO / "target/debug/explant", REPO / "target/release/explant"):
        if p.is_file():
            return p
    print("\n*** SKIPPED: no explant binary (cargo build) ***\n", file=sys.stderr)
    pytest.skip("no explant binary: build it with cargo build")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(cli()), *args], capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})


# The learned model needs the torch build; without it both sides run the teacher.
MODEL = None if explant.HAS_TORCH else "teacher"
MODEL_FLAGS = [] if explant.HAS_TORCH else ["--teacher"]


def short_default(minutes: float = 30.0) -> explant.Scene:
    scene = explant.Scene.from_toml(DEFAULT)
    scene.set("time.duration", minutes)
    return scene


@pytest.fixture(scope="module")
def cli_default(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "default"
    r = run_cli("run", str(DEFAULT), "--out", str(out), "--seed", "3", "--set", "time.duration=30", "--quiet",
                "--no-figures", "--diffusion", "cpu", *MODEL_FLAGS)
    assert r.returncode == 0, r.stderr
    return out


def assert_same_adata(a: anndata.AnnData, b: anndata.AnnData):
    assert a.shape == b.shape
    assert list(a.var_names) == list(b.var_names) and list(a.obs_names) == list(b.obs_names)
    assert np.asarray(a.X).tobytes() == np.asarray(b.X).tobytes(), "X differs"
    for k in b.obsm:
        assert np.asarray(a.obsm[k]).tobytes() == np.asarray(b.obsm[k]).tobytes(), f"obsm[{k}] differs"
    for k in b.layers:
        assert np.asarray(a.layers[k]).tobytes() == np.asarray(b.layers[k]).tobytes(), f"layers[{k}] differs"
    for c in b.obs.columns:
        assert a.obs[c].equals(b.obs[c]), f"obs[{c}] differs"
    for name, values in b.uns["fields"].items():
        assert np.asarray(a.uns["fields"][name]).tobytes() == np.asarray(values).tobytes(), f"field {name} differs"


def test_the_default_scene_from_python_is_the_cli_run_byte_for_byte(cli_default):
    sim = explant.Simulation(short_default(), model=MODEL, seed=3, threads=1, diffusion="cpu")
    assert sim.run() == 30.0 and sim.tick == 60
    ours = sim.adata()
    theirs = anndata.read_h5ad(cli_default / "tissue.h5ad")
    assert_same_adata(ours, theirs)
    # Not a comparison that passes by construction: another seed changes the arrays.
    other = explant.Simulation(short_default(), model=MODEL, seed=4, threads=1, diffusion="cpu")
    other.run()
    assert np.asarray(other.adata().X).tobytes() != np.asarray(theirs.X).tobytes()
    # fields() is the run's field, in [ny, nx].
    f = sim.fields()["WNT3A"]
    assert f.shape == (60, 60) and f.dtype == np.float32
    assert f.tobytes() == np.asarray(theirs.uns["fields"]["WNT3A"], np.float32).reshape(60, 60).tobytes()


class NumpyTeacher:
    """The teacher's equations in NumPy: dx/dt = α σ(b_type + b + W x + U s + V c) − γ x."""

    def __init__(self, scene: explant.Scene):
        d = scene.to_dict()
        self.genes, self.ligands, self.cell_types = scene.genes, scene.ligands, scene.cell_types
        t = d["teacher"]
        g, l = len(self.genes), len(self.ligands)
        gi = {n: i for i, n in enumerate(self.genes)}
        li = {n: i for i, n in enumerate(self.ligands)}
        self.alpha = np.array([t.get("max_rate", {}).get(n, t["default_max_rate"]) for n in self.genes], np.float32)
        self.gamma = np.float32(t["degradation"])
        self.bias = np.array(
            [[ct.get("bias", {}).get(n, 0.0) + t.get("bias", 0.0) for n in self.genes] for ct in d["cell_types"]],
            np.float32,
        )
        self.W, self.U, self.V = np.zeros((g, g), np.float32), np.zeros((g, l), np.float32), np.zeros((g, g), np.float32)
        for e in t["edges"]:
            kind, src = e["source"].split(":")
            target = gi[e["target"]]
            if kind == "gene":
                self.W[target, gi[src]] += e["weight"]
            elif kind == "ligand":
                self.U[target, li[src]] += e["weight"]
            elif kind == "contact":
                self.V[target, gi[src]] += e["weight"]
            else:
                raise NotImplementedError(kind)
        self.calls = 0

    def __call__(self, expression, sensed, contact, cell_type_onehot):
        self.calls += 1
        z = cell_type_onehot @ self.bias + expression @ self.W.T + sensed @ self.U.T + contact @ self.V.T
        return self.alpha / (1.0 + np.exp(-z)) - self.gamma * expression


def test_a_numpy_callable_with_the_teachers_equations_gives_the_teachers_run():
    scene = short_default(20.0)
    teacher = explant.Simulation(scene, model="teacher", seed=5, threads=1, diffusion="cpu")
    teacher.run()
    model = NumpyTeacher(scene)
    mine = explant.Simulation(scene, model=model, seed=5, threads=1, diffusion="cpu")
    mine.run()
    assert model.calls == 41, f"one call per respond step (40 ticks) and the probe at load, not {model.calls}"
    want, got = teacher.adata(), mine.adata()
    assert got.shape == want.shape
    diff = np.abs(np.asarray(got.X) - np.asarray(want.X)).max()
    assert diff < 1e-4, f"largest difference from the teacher's run: {diff}"

    # A model that changes nothing, or whose ligand response is missing, is far from it.
    class Still(NumpyTeacher):
        def __call__(self, expression, sensed, contact, cell_type_onehot):
            return np.zeros_like(expression)

    class Deaf(NumpyTeacher):
        def __call__(self, expression, sensed, contact, cell_type_onehot):
            return super().__call__(expression, np.zeros_like(sensed), contact, cell_type_onehot)

    for wrong in (Still(scene), Deaf(scene)):
        sim = explant.Simulation(scene, model=wrong, seed=5, threads=1, diffusion="cpu")
        sim.run()
        off = np.abs(np.asarray(sim.adata().X) - np.asarray(want.X)).max()
        assert off > 100 * max(diff, 1e-6), f"{type(wrong).__name__} is only {off} from the teacher's run"


def test_errors_raise_with_the_clis_messages(tmp_path):
    # A bad value through --set and through Scene.set: the same words.
    r = run_cli("run", str(DEFAULT), "--out", str(tmp_path / "x"), "--set", "ligands.WNT3A.decay=-1", "--quiet")
    assert r.returncode == 1
    cli_line = next(l for l in r.stderr.splitlines() if l.startswith("error:"))[len("error: "):]
    scene = explant.Scene.from_toml(DEFAULT)
    with pytest.raises(explant.ExplantError) as e:
        scene.set("ligands.WNT3A.decay", -1)
    assert cli_line in str(e.value), (cli_line, str(e.value))
    assert scene.to_dict()["ligands"][0]["decay"] == 0.02, "a refused change leaves the scene as it was"
    # A missing scene file: the CLI's words too.
    r = run_cli("check", str(tmp_path / "nope.toml"))
    cli_line = next(l for l in r.stderr.splitlines() if l.startswith("error:"))[len("error: "):]
    with pytest.raises(explant.ExplantError) as e:
        explant.Scene.from_toml(tmp_path / "nope.toml")
    assert cli_line in str(e.value), (cli_line, str(e.value))
    # A path that does not resolve names the step.
    with pytest.raises(explant.ExplantError, match="ligands"):
        scene.set("ligands.NOPE.decay", 0.1)
    with pytest.raises(explant.ExplantError, match="diffusion `fast`"):
        explant.Simulation(scene, diffusion="fast")


def test_from_dict_and_set_give_the_same_scene_as_the_file():
    scene = explant.Scene.from_toml(DEFAULT)
    again = explant.Scene.from_dict(scene.to_dict(), base_dir=DEFAULT.parent)
    assert again.to_dict() == scene.to_dict()
    assert (again.genes, again.ligands, again.cell_types) == (scene.genes, scene.ligands, scene.cell_types)
    scene.set("ligands.WNT3A.decay", 0.04)
    scene.set("tissue.cells", 300)
    d = scene.to_dict()
    assert d["ligands"][0]["decay"] == 0.04 and d["tissue"]["cells"] == 300
    assert scene.check() == [] or all(isinstance(w, str) for w in scene.check())


def python_model_error(model, scene=None) -> str:
    with pytest.raises(explant.ExplantError) as e:
        explant.Simulation(scene or short_default(5.0), model=model, threads=1, diffusion="cpu")
    return str(e.value)


def test_a_python_model_is_checked_at_load_like_a_torchscript_model():
    scene = short_default(5.0)
    good = NumpyTeacher(scene)

    class Reordered(NumpyTeacher):
        pass

    bad = Reordered(scene)
    bad.genes = list(reversed(scene.genes))
    assert "different order" in python_model_error(bad, scene)
    missing = NumpyTeacher(scene)
    missing.ligands = []
    assert "WNT3A" in python_model_error(missing, scene) and "missing from the model" in python_model_error(missing, scene)

    class Nameless:
        def __call__(self, *a):
            return a[0]

    assert "no `genes` attribute" in python_model_error(Nameless(), scene)

    class Narrow(NumpyTeacher):
        def __call__(self, expression, *rest):
            return expression[:, :3]

    assert "shape" in python_model_error(Narrow(scene), scene)

    class Nan(NumpyTeacher):
        def __call__(self, expression, *rest):
            out = np.zeros_like(expression)
            out[:, 2] = np.nan
            return out

    msg = python_model_error(Nan(scene), scene)
    assert "AXIN2" in msg and "NaN" in msg, msg

    class Raises(NumpyTeacher):
        def __call__(self, *a):
            raise RuntimeError("my model broke")

    assert "my model broke" in python_model_error(Raises(scene), scene)
    # The good one loads and runs; float64 output is accepted (converted).

    class Doubles(NumpyTeacher):
        def __call__(self, *a):
            return super().__call__(*a).astype(np.float64)

    for m in (good, Doubles(scene)):
        sim = explant.Simulation(scene, model=m, threads=1, diffusion="cpu")
        sim.step(2)


def test_secretion_and_fate_outputs_act_on_the_tissue():
    scene = short_default(10.0)

    class Outputs(NumpyTeacher):
        outputs = ["dxdt", "secretion", "fate"]

        def __init__(self, scene, secretion, hazard):
            super().__init__(scene)
            self.secretion, self.hazard = secretion, hazard

        def __call__(self, expression, sensed, contact, onehot):
            n = expression.shape[0]
            fate = np.zeros((n, 2), np.float32)
            fate[:, 0] = self.hazard * onehot[:, 1]  # responders die at this hazard per minute
            fate[:, 1] = 1.0
            return {
                "dxdt": super().__call__(expression, sensed, contact, onehot),
                "secretion": np.full((n, len(self.ligands)), self.secretion, np.float32),
                "fate": fate,
            }

    def run(secretion, hazard):
        sim = explant.Simulation(scene, model=Outputs(scene, secretion, hazard), seed=1, threads=1, diffusion="cpu")
        sim.run()
        return sim

    base, secreting, dying = run(0.0, 0.0), run(5.0, 0.0), run(0.0, 1.0)
    total = lambda s: float(s.fields()["WNT3A"].sum())
    assert total(secreting) > 1.5 * total(base), (total(secreting), total(base))
    responders = lambda s: int((s.adata().obs["cell_type"] == "responder").sum())
    assert responders(base) > 1000 and responders(dying) < 0.5 * responders(base), (responders(dying), responders(base))

    class Missing(Outputs):
        def __call__(self, *a):
            out = super().__call__(*a)
            del out["fate"]
            return out

    with pytest.raises(explant.ExplantError, match="declares `fate` but its dict has none"):
        explant.Simulation(scene, model=Missing(scene, 0.0, 0.0), threads=1, diffusion="cpu")


def test_a_model_that_keeps_its_inputs_keeps_them_unchanged():
    scene = short_default(5.0)

    class Keeper(NumpyTeacher):
        kept = []

        def __call__(self, expression, sensed, contact, onehot):
            self.kept.append(expression)
            return super().__call__(expression, sensed, contact, onehot)

    m = Keeper(scene)
    sim = explant.Simulation(scene, model=m, threads=1, diffusion="cpu")
    sim.step(3)
    first = m.kept[1].copy()
    sim.step(3)
    assert np.array_equal(m.kept[1], first), "an input a model kept was overwritten by a later call"
    assert not np.array_equal(m.kept[1], m.kept[-1]), "expression changed over the ticks"


def test_a_model_that_freezes_its_inputs_does_not_stop_the_run():
    scene = short_default(5.0)

    class Freezer(NumpyTeacher):
        def __call__(self, expression, sensed, contact, onehot):
            for a in (expression, sensed, contact, onehot):
                a.flags.writeable = False
            return super().__call__(expression, sensed, contact, onehot)

    sim = explant.Simulation(scene, model=Freezer(scene), threads=1, diffusion="cpu")
    sim.step(3)
    assert sim.tick == 3


def test_a_model_that_reshapes_or_restrides_its_inputs_in_place_gets_fresh_ones():
    # Reused input arrays must still be C-contiguous and [cells, width]: a model that
    # set their shape or strides in place would otherwise get transposed inputs, or
    # stop the run with a panic, at the next call.
    scene = short_default(5.0)
    plain = explant.Simulation(scene, model=NumpyTeacher(scene), threads=1, diffusion="cpu")
    plain.step(3)

    class Reshaper(NumpyTeacher):
        def __call__(self, expression, sensed, contact, onehot):
            out = super().__call__(expression, sensed, contact, onehot)
            for a in (expression, sensed, contact, onehot):
                a.shape = (a.shape[1], a.shape[0])
            return out

    class Restrider(NumpyTeacher):
        def __call__(self, expression, sensed, contact, onehot):
            out = super().__call__(expression, sensed, contact, onehot)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                for a in (expression, sensed, contact, onehot):
                    a.strides = (a.itemsize, a.itemsize * a.shape[0])  # column-major, same shape
            return out

    for model in (Reshaper, Restrider):
        sim = explant.Simulation(scene, model=model(scene), threads=1, diffusion="cpu")
        sim.step(3)
        assert sim.tick == 3
        assert np.asarray(sim.adata().X).tobytes() == np.asarray(plain.adata().X).tobytes(), model.__name__


def test_perturb_starts_a_control_that_is_the_unperturbed_simulation_bit_for_bit():
    scene = short_default(20.0)
    plain = explant.Simulation(scene, model="teacher", seed=2, threads=1, diffusion="cpu")
    plain.run(until=20.0)
    sim = explant.Simulation(scene, model="teacher", seed=2, threads=1, diffusion="cpu")
    sim.run(until=10.0)
    sim.perturb({"kind": "knockout", "gene": "FZD7", "cell_type": "responder"})
    assert "with its paired control" in repr(sim)
    sim.run(until=20.0)
    ad = sim.adata()
    assert np.asarray(ad.layers["control"]).tobytes() == np.asarray(plain.adata().X).tobytes()
    fzd7 = list(ad.var_names).index("FZD7")
    responders = (ad.obs["cell_type"] == "responder").to_numpy()
    assert np.all(np.asarray(ad.X)[responders, fzd7] == 0.0), "the knockout acted"
    axin2 = list(ad.var_names).index("AXIN2")
    effect = np.asarray(ad.X)[responders, axin2] - np.asarray(ad.layers["control"])[responders, axin2]
    assert effect.mean() < -1e-3, "without its receptor, WNT target AXIN2 falls"
    assert sim.scene.to_dict()["perturbations"][-1]["start"] == 10.0
    with pytest.raises(explant.ExplantError, match="NOPE"):
        sim.perturb({"kind": "knockout", "gene": "NOPE"})


def test_a_checkpoint_resumes_bit_for_bit(tmp_path):
    scene = short_default(20.0)
    whole = explant.Simulation(scene, model="teacher", seed=9, threads=1, diffusion="cpu")
    whole.run()
    half = explant.Simulation(scene, model="teacher", seed=9, threads=1, diffusion="cpu")
    half.run(until=10.0)
    half.checkpoint(tmp_path / "half.explant")
    resumed = explant.Simulation.resume(tmp_path / "half.explant")
    assert resumed.time == 10.0
    resumed.run()
    assert np.asarray(resumed.adata().X).tobytes() == np.asarray(whole.adata().X).tobytes()


def test_read_run_reads_a_cli_run(cli_default):
    run = explant.read_run(cli_default)
    assert run.status == "completed"
    assert np.asarray(run.adata.X).tobytes() == np.asarray(anndata.read_h5ad(cli_default / "tissue.h5ad").X).tobytes()
    assert list(run.snapshots) == sorted(run.snapshots) and len(run.snapshots) >= 2


def test_a_torch_module_as_the_model():
    try:
        import torch
    except ImportError:
        print("\n*** SKIPPED: test_a_torch_module_as_the_model: PyTorch is not installed in this environment "
              "(the test virtualenv leaves out its several GB; pip install torch to run it) ***\n", file=sys.stderr)
        pytest.skip("PyTorch is not installed")
    scene = short_default(10.0)
    teacher = NumpyTeacher(scene)

    class Module(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.W, self.U, self.V = (torch.tensor(m) for m in (teacher.W, teacher.U, teacher.V))
            self.bias, self.alpha = torch.tensor(teacher.bias), torch.tensor(teacher.alpha)
            self.genes, self.ligands, self.cell_types = teacher.genes, teacher.ligands, teacher.cell_types

        def forward(self, x, s, c, onehot):
            x, s, c, onehot = (torch.from_numpy(a) for a in (x, s, c, onehot))
            z = onehot @ self.bias + x @ self.W.T + s @ self.U.T + c @ self.V.T
            return (self.alpha * torch.sigmoid(z) - float(teacher.gamma) * x).numpy()

    sim = explant.Simulation(scene, model=Module(), seed=5, threads=1, diffusion="cpu")
    sim.run()
    ref = explant.Simulation(scene, model="teacher", seed=5, threads=1, diffusion="cpu")
    ref.run()
    assert np.abs(np.asarray(sim.adata().X) - np.asarray(ref.adata().X)).max() < 1e-4
