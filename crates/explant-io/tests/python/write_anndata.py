"""Write small .h5ad files with Python `anndata` for the reader's tests (tests/read.rs).

Usage:
    write_anndata.py DIR

Writes DIR/csr.h5ad (sparse CSR float32 X), DIR/csc.h5ad (sparse CSC int64 counts) and
DIR/dense.h5ad (dense float64 X), all holding the same tissue:
- 7 cells `cell0`..`cell6`; genes `Wnt3a`, `LGR5`, `bmp4`, `Axin2`, `Ascl2`, `Unused`;
- X[i, j] = 10 i + j + 1 where (i + j) % 3 != 0, else 0;
- obs: categorical `cell_type` (`stem`, `ta`, `paneth` by i % 3), numeric `x` = 2.5 i and
  `y` = 100 - 0.25 i, categorical `with_missing` (like `cell_type` but missing at row 2);
- obsm['spatial'] = (2 x, 2 y, 0.5 i) as float64.
The Rust test computes the same numbers independently.
"""

import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

out = Path(sys.argv[1])
n = 7
genes = ["Wnt3a", "LGR5", "bmp4", "Axin2", "Ascl2", "Unused"]
X = np.zeros((n, len(genes)))
for i in range(n):
    for j in range(len(genes)):
        if (i + j) % 3 != 0:
            X[i, j] = 10 * i + j + 1
i = np.arange(n)
x = 2.5 * i
y = 100 - 0.25 * i
types = np.array(["stem", "ta", "paneth"])[i % 3]
with_missing = types.astype(object)
with_missing[2] = None
obs = pd.DataFrame(
    {
        "cell_type": pd.Categorical(types),
        "x": x,
        "y": y,
        "with_missing": pd.Categorical(with_missing),
    },
    index=[f"cell{k}" for k in range(n)],
)
var = pd.DataFrame(index=genes)
spatial = np.column_stack([2 * x, 2 * y, 0.5 * i])

for name, matrix in [
    ("csr", sp.csr_matrix(X.astype(np.float32))),
    ("csc", sp.csc_matrix(X.astype(np.int64))),
    ("dense", X),
]:
    a = ad.AnnData(X=matrix, obs=obs.copy(), var=var.copy())
    a.obsm["spatial"] = spatial
    a.write_h5ad(out / f"{name}.h5ad")
print("ok")
