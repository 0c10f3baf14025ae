"""What a Python response model costs the tick beyond its own arithmetic.

For 10^4 and 10^6 cells of the WNT-organiser benchmark scene (scenes/bench/tick_1m.toml,
the disk shrunk for 10^4 at the same density), three simulations are stepped in this
process, alternating, and their `respond` stage timed (`Simulation.stage_times()`):

- `teacher`: the teacher in Rust (rayon), for scale;
- `noop`: a Python callable that returns a preallocated zero array: its time per call
  (`Simulation.model_times()`: filling the input arrays and the one-hot, the call,
  reading the result back) is the callback's cost alone, with no model arithmetic;
- `numpy teacher`: the teacher's equations in NumPy (tests/python/test_python_api.py),
  a realistic model.

Printed per size: ms per respond step of each, the overhead (noop) as a share of the
teacher's whole tick, and the NumPy model's respond minus the noop's (its own arithmetic).

    .venv/bin/python scripts/python_callback_bench.py [--ticks-small 20] [--ticks-large 3]

Build the extension in release first: `maturin develop --release` (numbers from a debug
build are not comparable).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import explant

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))
from test_python_api import NumpyTeacher  # noqa: E402


class Noop:
    """Returns the same zero array every call: no arithmetic at all."""

    def __init__(self, scene):
        self.genes, self.ligands, self.cell_types = scene.genes, scene.ligands, scene.cell_types
        self.out = None

    def __call__(self, expression, sensed, contact, onehot):
        if self.out is None or self.out.shape != expression.shape:
            self.out = np.zeros_like(expression)
        return self.out


def scene_for(cells: int) -> explant.Scene:
    path = REPO / "scenes" / "bench" / "tick_1m.toml"
    scene = explant.Scene.from_toml(path)
    if cells == 1_000_000:
        return scene
    # The same density: lengths scale with the square root of the cells. One change of
    # several fields at once (each alone would leave the tissue outside the grid).
    k = (cells / 1_000_000) ** 0.5
    d = scene.to_dict()
    side = round(14000.0 * k / 10.0) * 10.0
    d["grid"]["size"] = [side, side]
    d["tissue"].update(centre=[side / 2, side / 2], radius=6720.0 * k, cells=cells)
    d["tissue"]["regions"][0]["shape"].update(centre=[side / 2, side / 2], radius=1160.0 * k)
    return explant.Scene.from_dict(d, base_dir=path.parent)


def measure(cells: int, ticks: int, threads: int) -> None:
    scene = scene_for(cells)
    sims = {}
    for name, model in (("teacher", "teacher"), ("noop", Noop(scene)), ("numpy teacher", NumpyTeacher(scene))):
        t = time.perf_counter()
        sims[name] = explant.Simulation(scene, model=model, seed=1, threads=threads, diffusion="cpu")
        print(f"  built {name} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    start = {n: s.stage_times() for n, s in sims.items()}
    model_start = {n: s.model_times() for n, s in sims.items()}
    wall = {n: 0.0 for n in sims}
    for _ in range(ticks):  # alternate, so a noisy machine affects all alike
        for n, s in sims.items():
            t = time.perf_counter()
            s.step(1)
            wall[n] += time.perf_counter() - t
    respond = {n: (s.stage_times()["respond"] - start[n]["respond"]) / ticks * 1e3 for n, s in sims.items()}
    tick = {n: wall[n] / ticks * 1e3 for n in sims}
    n_cells = sims["teacher"].cells
    print(f"{n_cells} cells, {ticks} ticks each, {threads} thread(s):")
    for n in sims:
        print(f"  {n:<14} respond {respond[n]:9.2f} ms/step   whole tick {tick[n]:9.2f} ms")
    for n in ("noop", "numpy teacher"):
        a, b = model_start[n], sims[n].model_times()
        calls = b["calls"] - a["calls"]
        part = {k: (b[k] - a[k]) / calls * 1e3 for k in ("inputs", "python", "outputs")}
        print(
            f"  {n:<14} per call: inputs {part['inputs']:.2f} ms, inside Python {part['python']:.2f} ms, "
            f"outputs {part['outputs']:.2f} ms"
        )
        if n == "noop":
            overhead = part["inputs"] + part["outputs"] + part["python"]
    print(
        f"  callback cost (noop: filling the inputs, the call, reading back) {overhead:.2f} ms per respond step = "
        f"{overhead / tick['teacher']:.1%} of the teacher's whole tick; {overhead * 1e6 / n_cells:.0f} ns per cell"
    )
    print(f"  the NumPy model's own arithmetic (its respond − noop's): {respond['numpy teacher'] - respond['noop']:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ticks-small", type=int, default=20)
    ap.add_argument("--ticks-large", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--skip-large", action="store_true")
    a = ap.parse_args()
    print(f"explant {explant.__version__} ({explant.COMMIT}), numpy {np.__version__}")
    measure(10_000, a.ticks_small, a.threads)
    if not a.skip_large:
        measure(1_000_000, a.ticks_large, a.threads)


if __name__ == "__main__":
    main()
