#!/usr/bin/env bash
# biofvm_lod.sh -- build and run explant's BioFVM speed anchor.
#
# Measures BioFVM's own implicit LOD 3-D constant-coefficient diffusion-decay
# solver (diffusion_decay_solver__constant_coefficients_LOD_3D, the default
# solver of a BioFVM::Microenvironment) on 100^3 voxels x 10 substrates,
# dx = 10 um, D = 1e5 um^2/min, decay 0.1 /min, dt = 0.01 min, no sources,
# sinks, Dirichlet nodes or agents. Reports ns per voxel-substrate-step per
# round, the fastest and median round, and a checksum of the final field.
# The driver is scripts/anchors/biofvm_lod.cpp (ours).
#
# Build: every BioFVM .cpp of the library (as in BioFVM's Makefile: BioFVM_*.cpp
# and pugixml.cpp) is compiled to its own object, then linked with the driver,
# using BioFVM's Makefile flags with -march=native instead of -march=core2 and
# without -s (symbol stripping, no effect on speed):
#   g++ -march=native -O3 -fomit-frame-pointer -mfpmath=both -fopenmp -m64 -std=c++11
# Objects are rebuilt only when a source is newer or the flags changed.
#
# Usage: scripts/anchors/biofvm_lod.sh BIOFVM_SRC_DIR [BUILD_DIR=/tmp/biofvm-build]
#                                      [THREADS=1] [ROUNDS=15] [STEPS=10]
# Get the source: github.com/MathCancer/BioFVM (tested at 503d27cc, version 1.0.4).
set -euo pipefail

die() { echo "biofvm_lod.sh: error: $*" >&2; exit 1; }

[ $# -ge 1 ] || die "usage: $0 BIOFVM_SRC_DIR [BUILD_DIR] [THREADS] [ROUNDS] [STEPS]"
SRC=$1
BUILD=${2:-/tmp/biofvm-build}
THREADS=${3:-1}
ROUNDS=${4:-15}
STEPS=${5:-10}
CXX=${CXX:-g++}
FLAGS="-march=native -O3 -fomit-frame-pointer -mfpmath=both -fopenmp -m64 -std=c++11"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DRIVER=$HERE/biofvm_lod.cpp

[ -d "$SRC" ] || die "BioFVM source directory '$SRC' does not exist"
[ -f "$SRC/BioFVM.h" ] || die "'$SRC' has no BioFVM.h; pass the top of a BioFVM checkout"
[ -f "$DRIVER" ] || die "driver $DRIVER is missing"
command -v "$CXX" >/dev/null || die "compiler '$CXX' not found"
for n in "$THREADS" "$ROUNDS" "$STEPS"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "THREADS, ROUNDS and STEPS must be positive integers (got '$n')"
done

SRC=$(cd "$SRC" && pwd)
LIB_SOURCES=(BioFVM_vector BioFVM_matlab BioFVM_utilities BioFVM_mesh
             BioFVM_microenvironment BioFVM_solvers BioFVM_basic_agent
             BioFVM_agent_container BioFVM_MultiCellDS pugixml)
for s in "${LIB_SOURCES[@]}"; do
  [ -f "$SRC/$s.cpp" ] || die "missing $SRC/$s.cpp"
done

mkdir -p "$BUILD/obj" || die "cannot create build directory '$BUILD'"
STAMP=$BUILD/flags.txt
WANT="$($CXX --version | head -1) | $FLAGS | $SRC"
REBUILD_ALL=0
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then REBUILD_ALL=1; fi

OBJS=()
for s in "${LIB_SOURCES[@]}"; do
  o=$BUILD/obj/$s.o
  if [ $REBUILD_ALL = 1 ] || [ ! -f "$o" ] || [ "$SRC/$s.cpp" -nt "$o" ]; then
    echo "+ $CXX $FLAGS -I$SRC -c $SRC/$s.cpp -o $o"
    # Compiler messages go to a per-file log, shown on failure.
    # shellcheck disable=SC2086
    if ! $CXX $FLAGS -I"$SRC" -c "$SRC/$s.cpp" -o "$o" 2> "$BUILD/obj/$s.log"; then
      cat "$BUILD/obj/$s.log" >&2; rm -f "$o"; die "compiling $s.cpp failed (log: $BUILD/obj/$s.log)"
    fi
  fi
  OBJS+=("$o")
done
BIN=$BUILD/biofvm_lod
echo "+ $CXX $FLAGS -I$SRC $DRIVER ${OBJS[*]} -o $BIN"
# shellcheck disable=SC2086
$CXX $FLAGS -I"$SRC" "$DRIVER" "${OBJS[@]}" -o "$BIN" || die "linking $BIN failed"
echo "$WANT" > "$STAMP"

echo "+ OMP_NUM_THREADS=$THREADS $BIN $ROUNDS $STEPS"
OMP_NUM_THREADS=$THREADS exec "$BIN" "$ROUNDS" "$STEPS"
