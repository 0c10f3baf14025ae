#!/usr/bin/env bash
# Runs the default scene end to end: installs what is needed (scripts/setup.sh),
# builds explant in release mode, and writes results to results/default/
# (tissue.h5ad, tissue.png, time series, snapshots, manifest).
# Extra arguments are passed to `explant run`, e.g. `--diffusion gpu`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/setup.sh
cargo build --release --locked -p explant-cli
./target/release/explant run scenes/default.toml --out results/default --force "$@"
echo "results are in results/default/ (open tissue.png; read tissue.h5ad with anndata.read_h5ad)"
