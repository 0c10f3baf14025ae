"""Run `cell-eval run` on an export of `explant eval --export DIR` and check explant's
scores against cell-eval's.

    cell_eval_compare.py EXPORT_DIR EVAL_CSV [--profile minimal] [--subprocess-once]
                         [--hold-out-type TYPE]

For every group folder and every `pred_<predictor>.h5ad` in it, `cell-eval run -ar
real.h5ad -ap pred_<predictor>.h5ad` is run (its command-line entry point, in this
process, so that numba compiles once; with `--subprocess-once` the first pair also runs
through the `cell-eval` executable and both outputs must agree). Then:

1. per group, predictor and held-out knockout, explant's scores on exactly the cells of
   the files (`scores.csv`, rows `control=pooled`) must equal cell-eval's `mae`,
   `pearson_delta`, `discrimination_score_l1` and `overlap_at_N` to 1e-6 (NaN equals NaN);
2. `EVAL_CSV` (explant eval's table) must be the mean over knockouts of the `paired`
   rows of `scores.csv` (the export scores what eval scores);
3. the table of explant eval's numbers beside cell-eval's is printed; where they differ
   the difference is named (explant eval compares each knockout's cells with their own
   control twins, cell-eval with the pooled control cells) and they must be equal where
   the two controls are the same cells, and for MAE (which involves no control) always.

First the files are checked as cell-eval's input format: single cells (several per
knockout, not pseudobulk), `obs['target_gene']` with the held-out genes and
`non-targeting`, `obs['celltype']` (with `--hold-out-type`, every cell of the
`perturbed` folder is of that type), the same genes as `var_names` in every file.

Prints one `ok: ...` line at the end; exits non-zero with every failure listed.
"""

import argparse
import contextlib
import csv
import io
import math
import os
import shutil
import subprocess
import sys
import tempfile

METRICS = ["mae", "pearson_delta", "discrimination_score_l1", "overlap_at_N"]
EVAL_COLUMNS = {"mae": "mae", "pearson_delta": "pearson_delta", "discrimination_score_l1": "pds", "overlap_at_N": "de_overlap"}
TOL = 1e-6


def close(a, b, tol=TOL):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol


def mean_finite(values):
    v = [x for x in values if not math.isnan(x)]
    return sum(v) / len(v) if v else float("nan")


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_cell_eval(real, pred, outdir, profile):
    """`cell-eval run` through its entry point, in this process."""
    from cell_eval.__main__ import main

    argv = ["cell-eval", "run", "-ar", real, "-ap", pred, "-o", outdir, "--profile", profile, "--num-threads", "1"]
    old = sys.argv
    sys.argv = argv
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            main()
    finally:
        sys.argv = old
    return {r["perturbation"]: {m: float(r[m]) for m in METRICS} for r in read_csv(os.path.join(outdir, "results.csv"))}


def check_files(export, scores, hold_out_type):
    """The files are cell-eval's input: single cells, the obs columns, the same genes."""
    import anndata as ad
    import numpy as np

    failures = []
    genes = None
    perts = sorted({r["perturbation"] for r in scores})
    for folder in sorted({r["folder"] for r in scores}):
        names = ["real"] + sorted({f"pred_{r['predictor']}" for r in scores if r["folder"] == folder})
        for name in names:
            path = os.path.join(export, folder, name + ".h5ad")
            a = ad.read_h5ad(path)
            labels = a.obs["target_gene"].astype(str)
            counts = labels.value_counts()
            if sorted(counts.index) != sorted(perts + ["non-targeting"]):
                failures.append(f"{path}: obs['target_gene'] holds {sorted(counts.index)}")
            elif counts.min() < 2 or a.n_obs <= len(counts):
                failures.append(f"{path}: not single cells: {dict(counts)}")
            if "celltype" not in a.obs:
                failures.append(f"{path}: no obs['celltype']")
            elif hold_out_type and folder == "perturbed" and set(a.obs["celltype"].astype(str)) != {hold_out_type}:
                failures.append(f"{path}: knocked-out cells of types {set(a.obs['celltype'].astype(str))}")
            if a.X.dtype != np.float64 or np.isnan(a.X).any() or (a.X < 0).any():
                failures.append(f"{path}: X is {a.X.dtype} with NaN or negative values")
            if genes is None:
                genes = list(a.var_names)
            elif list(a.var_names) != genes:
                failures.append(f"{path}: var_names {list(a.var_names)}, not {genes}")
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("export")
    ap.add_argument("eval_csv")
    ap.add_argument("--profile", default="minimal")
    ap.add_argument("--subprocess-once", action="store_true")
    ap.add_argument("--hold-out-type")
    args = ap.parse_args()

    scores = read_csv(os.path.join(args.export, "scores.csv"))
    # The export holds the free-running predictions (anchored ones are built from them).
    evals = {(r["model"], r["group"]): r for r in read_csv(args.eval_csv) if r["mode"] == "free"}
    failures = check_files(args.export, scores, args.hold_out_type)
    compared = {m: 0 for m in METRICS}
    worst = {m: 0.0 for m in METRICS}
    same_control_pairs = 0
    nontrivial = {"overlap": 0, "pearson": 0}
    work = tempfile.mkdtemp(prefix="cell_eval_compare.")
    pairs = sorted({(r["folder"], r["group"], r["predictor"]) for r in scores})
    print(f"{'group':<16} {'predictor':<14} {'metric':<24} {'explant eval':>12} {'cell-eval':>12}  note")
    for n, (folder, group, predictor) in enumerate(pairs):
        real = os.path.join(args.export, folder, "real.h5ad")
        pred = os.path.join(args.export, folder, f"pred_{predictor}.h5ad")
        out = os.path.join(work, f"{folder}_{predictor}")
        ce = run_cell_eval(real, pred, out, args.profile)
        if args.subprocess_once and n == 0:
            exe = os.path.join(os.path.dirname(sys.executable), "cell-eval")
            out2 = out + "_cli"
            o = subprocess.run(
                [exe, "run", "-ar", real, "-ap", pred, "-o", out2, "--profile", args.profile, "--num-threads", "1"],
                capture_output=True, text=True)
            if o.returncode != 0:
                failures.append(f"`cell-eval run` exited {o.returncode}: {o.stderr[-2000:]}")
            else:
                cli = {r["perturbation"]: {m: float(r[m]) for m in METRICS} for r in read_csv(os.path.join(out2, "results.csv"))}
                if cli.keys() != ce.keys() or any(not close(cli[p][m], ce[p][m], 0.0) for p in ce for m in METRICS):
                    failures.append(f"{folder}/{predictor}: the `cell-eval` executable and its entry point disagree: {cli} vs {ce}")
        rows = {(r["perturbation"], r["control"]): r for r in scores
                if r["folder"] == folder and r["predictor"] == predictor}
        perts = sorted({p for p, _ in rows})
        if sorted(ce) != perts:
            failures.append(f"{folder}/{predictor}: cell-eval scored {sorted(ce)}, explant {perts}")
            continue
        # 1. explant on the exported cells (pooled control) = cell-eval, per knockout.
        for p in perts:
            mine = rows[(p, "pooled")]
            for m in METRICS:
                a, b = float(mine[m]), ce[p][m]
                compared[m] += 1
                if not (math.isnan(a) or math.isnan(b)):
                    worst[m] = max(worst[m], abs(a - b))
                if not close(a, b):
                    failures.append(f"{folder}/{predictor}/{p}: {m}: explant {a!r}, cell-eval {b!r}")
            nontrivial["overlap"] += 0.0 < ce[p]["overlap_at_N"]
            nontrivial["pearson"] += not math.isnan(ce[p]["pearson_delta"])
        # 2. explant eval's row = the mean of the paired rows.
        ev = evals.get((predictor, group))
        if ev is None:
            failures.append(f"{group}/{predictor}: exported but no row in {args.eval_csv}")
            continue
        same_control = all(rows[(p, "pooled")]["control_cells"] == rows[(p, "paired")]["control_cells"] for p in perts)
        same_control_pairs += same_control
        for m in METRICS:
            paired_mean = mean_finite([float(rows[(p, "paired")][m]) for p in perts])
            ev_value = float(ev[EVAL_COLUMNS[m]])
            if not close(ev_value, paired_mean, 1e-9):
                failures.append(f"{group}/{predictor}: {m}: eval.csv {ev_value!r} is not the mean of the export's paired scores {paired_mean!r}")
            # 3. explant eval beside cell-eval (mean over knockouts, NaN left out as explant does).
            ce_mean = mean_finite([ce[p][m] for p in perts])
            if close(ev_value, ce_mean):
                note = "equal"
            elif m == "mae" or same_control:
                note = "DIFFERS (should be equal)"
                failures.append(f"{group}/{predictor}: {m}: explant eval {ev_value!r}, cell-eval {ce_mean!r}, same cells")
            else:
                note = "differs: explant pairs each cell with its control twin, cell-eval pools the control cells"
            print(f"{group:<16} {predictor:<14} {m:<24} {ev_value:>12.6f} {ce_mean:>12.6f}  {note}")
    shutil.rmtree(work, ignore_errors=True)
    if min(compared.values()) == 0 or nontrivial["overlap"] == 0 or nontrivial["pearson"] == 0:
        failures.append(f"too little compared to mean anything: {compared}, {nontrivial}")
    if failures:
        print("\n".join(["FAILED:"] + failures))
        sys.exit(1)
    print(f"paired and pooled control are the same cells in {same_control_pairs} of {len(pairs)} group x predictor pairs")
    print(f"largest |explant - cell-eval| on the exported cells: {', '.join(f'{m} {w:.1e}' for m, w in worst.items())}")
    print(f"ok: {len(pairs)} cell-eval runs; explant = cell-eval to {TOL} on {sum(compared.values())} scores "
          f"({', '.join(f'{m} {c}' for m, c in compared.items())})")


if __name__ == "__main__":
    main()
