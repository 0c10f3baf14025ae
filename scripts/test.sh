#!/usr/bin/env bash
# The whole test suite: formatting, clippy with warnings as errors, and every test
# (unit, integration, GPU-vs-CPU on lavapipe, AnnData read back by Python anndata).
# Installs what it needs first (see scripts/setup.sh); safe to run any number of times.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/setup.sh

# Tests that need lavapipe or Python must run here, not skip.
export EXPLANT_REQUIRE_GPU_ADAPTER=1 EXPLANT_REQUIRE_PYTHON=1

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo clippy, the CLI without its optional backends (the disabled paths compile)"
cargo clippy -p explant-cli --no-default-features --locked -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?

# The Python package: its native module built into the test virtualenv (with the torch
# feature, so the default scene's TorchScript model runs), then its tests.
echo "== the Python package: maturin develop --features torch, then pytest"
pylog=$(mktemp)
trap 'rm -f "$log" "$pylog"' EXIT
if ! VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH" .venv/bin/maturin develop --features torch >"$pylog" 2>&1; then
  cat "$pylog"
  echo "explant: the Python package did not build"
  exit 1
fi
pystatus=0
.venv/bin/python -m pytest -p no:cacheprovider -rs tests/python/test_read_run.py tests/python/test_python_api.py 2>&1 | tee "$pylog" || pystatus=$?

# One closing line for the whole suite (cargo prints one per test binary, pytest one).
awk 'NR == FNR && /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     NR != FNR && /^=+ .* in [0-9.]+s/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^(failed|errors?)/) f += $i; if ($(i+1) ~ /^skipped/) s += $i } }
     END { printf "explant: %d passed, %d failed, %d skipped\n", p, f, s }' "$log" "$pylog"
if [ "$status" -ne 0 ] || [ "$pystatus" -ne 0 ]; then exit 1; fi
