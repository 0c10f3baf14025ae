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
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "explant: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
