"""explant in Python: scenes, simulations stepped in this process, and any Python callable as
the cells' response model.

    import explant
    scene = explant.Scene.from_toml("scenes/default.toml")
    scene.set("ligands.WNT3A.decay", 0.02)
    sim = explant.Simulation(scene, seed=1)
    sim.run(until=120, progress=True)
    ad = sim.adata()              # anndata.AnnData, the layout of a run's tissue.h5ad
    run = explant.read_run("results/default")   # a CLI run: .adata, .snapshots, .timeseries

See docs/python.md.
"""

from ._explant import COMMIT, HAS_TORCH, ExplantError, Scene, Simulation, __version__
from .run import Run, read_run

__all__ = ["Scene", "Simulation", "ExplantError", "read_run", "Run", "HAS_TORCH", "COMMIT", "__version__"]
