# %% [markdown]
# # explant from Python
#
# A tissue simulation stepped in process, read as AnnData and analysed with squidpy; a
# response model written as a Python class; a finished `explant run` read back.
# Run it from the repository root, as a script (`python examples/notebook.py`) or cell by
# cell in Jupyter or VS Code. Figures go to `results/notebook/`.

# %%
import tomllib
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import squidpy as sq

import explant

OUT = Path("results/notebook")
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## A scene, changed and checked
# The default scene: a WNT3A organiser patterning a disk of responder cells. `set` takes
# the same paths as `explant run --set`; `check` validates like the CLI does.

# %%
scene = explant.Scene.from_toml("scenes/default.toml")
scene.set("ligands.WNT3A.decay", 0.02)
for warning in scene.check():  # raises explant.ExplantError if the scene is refused
    print("warning:", warning)

# %% [markdown]
# ## Simulate, perturb, simulate on
# `run(until=…)` and `time` are in simulated minutes; `step(n)` runs n ticks. The scene's
# `[model]` is TorchScript (`models/default.pt`), which needs a `torch` build; without one,
# its mechanistic teacher runs. The first `perturb` starts the paired control from the
# current state, so `layers['control']` holds the same tissue without the knockout.

# %%
sim = explant.Simulation(scene, model=None if explant.HAS_TORCH else "teacher", seed=1, threads=2)
sim.run(until=120, progress=True)
sim.perturb({"kind": "knockout", "gene": "FZD7", "cell_type": "responder"})  # no WNT receptor; from now
sim.step(10)
ad = sim.adata()
print(sim, f"{ad.n_obs} cells")
effect = ad.to_df() - ad.layers["control"]  # knockout − control, per cell and gene
print(effect.groupby(ad.obs["cell_type"], observed=True)[["FZD7", "AXIN2", "LGR5"]].mean())

# %% [markdown]
# ## squidpy on the simulated tissue
# `obsp['spatial_connectivities']` is the simulator's own contact graph, so no
# `sq.gr.spatial_neighbors` call is needed.

# %%
sq.gr.nhood_enrichment(ad, cluster_key="cell_type", n_perms=200, seed=0)
sq.pl.nhood_enrichment(ad, cluster_key="cell_type")
plt.savefig(OUT / "nhood_enrichment.png", bbox_inches="tight")
sq.pl.spatial_scatter(ad, color=["cell_type", "AXIN2", "HES1"], shape=None, size=20)
plt.savefig(OUT / "spatial_scatter.png", bbox_inches="tight")

# %% [markdown]
# ## The ligand field
# One array per ligand, indexed `[y, x]` on the scene's grid (10 µm voxels here).

# %%
wnt = sim.fields()["WNT3A"]
dx_um = tomllib.loads(scene.to_toml())["grid"]["dx"]
fig, axis = plt.subplots(figsize=(5, 4))
image = axis.imshow(wnt, origin="lower", extent=[0, wnt.shape[1] * dx_um, 0, wnt.shape[0] * dx_um])
fig.colorbar(image, label="WNT3A")
axis.set(xlabel="x (µm)", ylabel="y (µm)", title=f"WNT3A at {sim.time} min")
fig.savefig(OUT / "wnt3a_field.png", bbox_inches="tight")

# %% [markdown]
# ## A response model in Python
# Any callable with `genes`, `ligands` and `cell_types` (the scene's names, in order) and
# `__call__(expression, sensed, contact, cell_type_onehot[, neighbour_types])` → dx/dt,
# float32 `[N, G]`, per minute (`neighbour_types` only with `neighbour_counts = True`).
# It is called once per tick with every cell; compute from the inputs, do not keep them.


# %%
class WntRelaxation:
    """dx/dt = rate · (baseline of the cell's type − x) + gain · s / (K + s) on the WNT targets,
    with s the WNT3A a cell senses."""

    def __init__(self, scene, targets=("AXIN2", "LGR5"), rate=0.05, gain=0.1, half=1.0):
        self.genes, self.ligands, self.cell_types = scene.genes, scene.ligands, scene.cell_types
        spec = tomllib.loads(scene.to_toml())
        self.baseline = np.array(  # [T, G]
            [[t.get("baseline", {}).get(g, 0.0) for g in self.genes] for t in spec["cell_types"]], dtype=np.float32
        )
        self.targets = np.isin(self.genes, targets).astype(np.float32)  # [G]
        self.wnt = self.ligands.index("WNT3A")
        self.rate, self.gain, self.half = rate, gain, half

    def __call__(self, expression, sensed, contact, cell_type_onehot, neighbour_types=None):
        baseline = cell_type_onehot @ self.baseline  # [N, G]
        s = sensed[:, self.wnt, None]  # [N, 1]
        dxdt = self.rate * (baseline - expression) + self.gain * s / (self.half + s) * self.targets
        return dxdt.astype(np.float32, copy=False)


mine = explant.Simulation(scene, model=WntRelaxation(scene), seed=1, threads=2)
mine.run(until=60)
adm = mine.adata()
print(adm.to_df().groupby(adm.obs["cell_type"], observed=True)[["AXIN2", "LGR5"]].mean())

# %% [markdown]
# ## A finished run, read back
# `results/default` is what `bash scripts/quickstart.sh` (or
# `explant run scenes/default.toml --out results/default`) writes.

# %%
if Path("results/default/manifest.json").exists():
    run = explant.read_run("results/default")
    print(run)
    last = run.snapshots[run.snapshots.ticks[-1]]  # reads one snapshot file
    print(f"last snapshot: {run.snapshots.times[run.snapshots.ticks[-1]]} min, {last.n_obs} cells")
    ts = run.timeseries.pivot(index="time_min", columns="cell_type", values="AXIN2")
    ax = ts.plot(title="AXIN2, pseudobulk by cell type")
    ax.set(xlabel="time (min)", ylabel="mean expression")
    plt.savefig(OUT / "run_axin2.png", bbox_inches="tight")
else:
    print("no results/default yet: make it with `bash scripts/quickstart.sh`")
