#!/usr/bin/env bash
# Builds what scripts/device-check.sh runs on a lent GPU machine: a release `explant`
# without libtorch (the 440 MB library cannot travel), the release GPU-vs-CPU test
# binary, and the shared libraries they need that a bare machine may lack.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/setup.sh
rm -rf devcheck && mkdir -p devcheck/lib
cargo build --release --locked -p explant-cli --no-default-features --features gpu
cp target/release/explant devcheck/explant
test_bin=$(cargo test --release --locked -p explant-gpu --test gpu --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')
cp "$test_bin" devcheck/gpu_matches_cpu
strip devcheck/explant devcheck/gpu_matches_cpu # the carry limit is 64 MiB
# Every shared library except glibc's own (the machine's glibc must serve).
for bin in devcheck/explant devcheck/gpu_matches_cpu; do
  ldd "$bin" | awk '/=> \// {print $3}' |
    grep -v -E '/(libc|libm|libpthread|libdl|librt|libresolv|ld-linux-x86-64)\.so' |
    while read -r lib; do cp -Ln "$lib" devcheck/lib/ 2>/dev/null || true; done
done
# The Vulkan loader and glvnd's EGL/GL dispatch libraries, which a bare GPU machine may
# lack (its NVIDIA driver brings only the vendor libraries): unpacked there by
# scripts/device-check.sh.
rm -rf .gl && mkdir -p .gl
if ! (cd .gl && apt-get download libvulkan1 libglvnd0 libegl1 libgl1 libglx0 >/dev/null 2>&1); then
  echo "warning: could not download the Vulkan/EGL loader packages into .gl/ (apt-get download);" \
    "the device check will rely on the GPU machine's own loaders" >&2
fi
# Restore the full build (with libtorch) for local use.
cargo build --release --locked -p explant-cli
du -sh devcheck .gl
