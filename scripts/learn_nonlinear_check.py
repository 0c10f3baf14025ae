"""Would a nonlinear learner beat the neighbour average on the SCC section?

Reads `DIR/observed.h5ad` written by `explant learn` (the section on its gene panel) and
cross-validates ridge, an MLP and a random forest on the same kind of inputs as the
learned model's (own cluster one-hot, neighbour cluster fractions, neighbours' mean
expression; no ligand fields) on 5 contiguous stripes with a contact-radius buffer, as
`explant learn` does. Prints each learner's held-out MAE relative to the neighbour
average's. Needs scikit-learn (in the test virtualenv through squidpy/scanpy).

    .venv/bin/python scripts/learn_nonlinear_check.py learned/observed.h5ad 212.2
"""

import sys
import warnings

import anndata as ad
import numpy as np
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.neural_network import MLPRegressor

warnings.filterwarnings("ignore")
path, radius = sys.argv[1], float(sys.argv[2])
a = ad.read_h5ad(path)
X = np.asarray(a.X, float)
t = a.obs["cell_type"].cat.codes.values
T = t.max() + 1
P = a.obsm["spatial"][:, :2]
n = len(P)
D = np.sqrt(((P[:, None] - P[None]) ** 2).sum(-1))
A = (D < radius) & (D > 0)
count = A.sum(1)
neighbour_mean = (A @ X) / np.maximum(count, 1)[:, None]
onehot = np.eye(T)[t]
fractions = (A @ onehot) / np.maximum(count, 1)[:, None]
F = np.hstack([onehot, fractions, neighbour_mean])
axis = P[:, 0] if np.ptp(P[:, 0]) >= np.ptp(P[:, 1]) else P[:, 1]
order = np.argsort(axis, kind="stable")
fold = np.zeros(n, int)
fold[order] = np.arange(n) * 5 // n


def cross_validated_mae(make):
    pred = np.zeros_like(X)
    for k in range(5):
        lo, hi = axis[fold == k].min(), axis[fold == k].max()
        train = (fold != k) & ((axis < lo - radius) | (axis > hi + radius))
        test = fold == k
        mu, sd = F[train].mean(0), F[train].std(0) + 1e-9
        model = make()
        model.fit((F[train] - mu) / sd, X[train])
        pred[test] = model.predict((F[test] - mu) / sd)
    return np.abs(pred - X).mean()


reference = np.abs(np.where(count[:, None] > 0, neighbour_mean, X.mean(0)) - X).mean()
print(f"neighbour average MAE {reference:.4f}")
for name, make in [
    ("ridge alpha=300", lambda: Ridge(alpha=300)),
    ("MLP 32 hidden, alpha=10", lambda: MLPRegressor(hidden_layer_sizes=(32,), alpha=10.0, max_iter=1000, random_state=0)),
    ("MLP 16 hidden, alpha=30", lambda: MLPRegressor(hidden_layer_sizes=(16,), alpha=30.0, max_iter=1000, random_state=0)),
    ("random forest", lambda: RandomForestRegressor(200, min_samples_leaf=5, max_features=0.3, random_state=0, n_jobs=2)),
]:
    print(f"{name:28s} MAE / neighbour average {cross_validated_mae(make) / reference:.3f}")
