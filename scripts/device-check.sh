#!/usr/bin/env bash
# GPU check on a lent accelerator machine, which has no Rust toolchain and no network.
# Prepared here by scripts/device-prepare.sh (binaries and the libraries they need in
# devcheck/, Vulkan/EGL loader packages in .gl/); run there from the repository root
# with `devcheck` and `.gl` carried. Results go to $OUT.
set -u
OUT="${OUT:-/tmp/explant-devcheck}"
mkdir -p "$OUT"
for f in .gl/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
ldconfig
export XDG_RUNTIME_DIR=/tmp LD_LIBRARY_PATH="$PWD/devcheck/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$nvidia_icd" ]; then
  export VK_DRIVER_FILES="$nvidia_icd"
  export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
{
  echo "== machine"; nvidia-smi -L 2>&1; nproc
  echo "== GPU vs CPU tests (release): explicit, implicit, shared x sweep, resident field and cell kernels"
  EXPLANT_REQUIRE_GPU_ADAPTER=1 ./devcheck/gpu_matches_cpu --test-threads=1 2>&1 | tail -40
  for scheme in implicit explicit; do
    echo "== explant bench diffusion ($scheme): 2D 1024² × 8, then 3D 100³ × 10 (dx 10, dt 0.01, D 1e5, k 0.1)"
    ./devcheck/explant bench diffusion --scheme $scheme --dims 2 --size 1024 --channels 8 --steps 5 2>&1
    ./devcheck/explant bench diffusion --scheme $scheme --dims 3 --size 100 --channels 10 --steps 5 2>&1
    ./devcheck/explant bench diffusion --scheme $scheme --dims 3 --size 100 --channels 10 --steps 5 --threads 1 --backend cpu 2>&1 | tail -2
  done
  echo "== resident implicit step against the device's copy bandwidth: 3D 100³ × 10, 3D 256³ × 4, 2D 4096² × 4"
  ./devcheck/explant bench diffusion --scheme implicit --dims 3 --size 100 --channels 10 --steps 20 --backend gpu 2>&1
  ./devcheck/explant bench diffusion --scheme implicit --dims 3 --size 256 --channels 4 --steps 20 --backend gpu 2>&1
  ./devcheck/explant bench diffusion --scheme implicit --dims 2 --size 4096 --channels 4 --steps 20 --backend gpu 2>&1
  echo "== resident ADI and explicit steps, 3D 100³ × 10"
  ./devcheck/explant bench diffusion --scheme adi --dims 3 --size 100 --channels 10 --steps 20 --backend gpu 2>&1
  ./devcheck/explant bench diffusion --scheme explicit --dims 3 --size 100 --channels 10 --steps 5 --backend gpu 2>&1
  echo "== PhysiCell-sized scene (60 min, field kept on the GPU) against the same machine's CPU, alternated"
  for round in 1 2; do
    for d in gpu cpu; do
      t0=$(date +%s.%N)
      ./devcheck/explant run scenes/physicell_compare.toml --diffusion $d --out "$OUT/pc$d$round" --quiet \
        --no-figures >"$OUT/pc$d.log" 2>&1 || tail -5 "$OUT/pc$d.log"
      echo "physicell_compare --diffusion $d, round $round: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }') s wall"
    done
  done
  grep -h diffusion_backend "$OUT/pcgpu1/manifest.json" "$OUT/pccpu1/manifest.json"
  paste -d, "$OUT/pcgpu1/ligand_totals.csv" "$OUT/pccpu1/ligand_totals.csv" | tail -n 1
  echo "== morphogen flag scene (implicit), GPU vs CPU"
  ./devcheck/explant run scenes/morphogen_flag.toml --diffusion gpu --out "$OUT/fgpu" --quiet 2>&1 | grep -E "diffusion|all"
  ./devcheck/explant run scenes/morphogen_flag.toml --diffusion cpu --out "$OUT/fcpu" --quiet 2>&1 | grep -E "diffusion|all"
  paste -d, "$OUT/fgpu/ligand_totals.csv" "$OUT/fcpu/ligand_totals.csv" | tail -n 1
  echo "== default scene, teacher, GPU vs CPU diffusion"
  ./devcheck/explant run scenes/default.toml --teacher --diffusion gpu --out "$OUT/gpu" --quiet 2>&1 | tail -12
  ./devcheck/explant run scenes/default.toml --teacher --diffusion cpu --out "$OUT/cpu" --quiet 2>&1 | tail -12
  echo "== largest relative difference, GPU vs CPU run (numeric columns of the time series)"
  for f in ligand_totals.csv timeseries.csv; do
    paste -d, "$OUT/gpu/$f" "$OUT/cpu/$f" | awk -F, -v f="$f" 'NR > 1 { h = NF / 2; for (i = 1; i <= h; i++) if ($i ~ /^[-0-9.e]+$/) {
        d = $i - $(i + h); if (d < 0) d = -d; s = ($(i + h) < 0 ? -$(i + h) : $(i + h)); if (s > 1e-12 && d / s > m) m = d / s } }
      END { printf "%s: %.2e\n", f, m }'
  done
} 2>&1 | tee "$OUT/devcheck.log"
rm -rf "$OUT/gpu" "$OUT/cpu" "$OUT/fgpu" "$OUT/fcpu" "$OUT"/pcgpu? "$OUT"/pccpu? "$OUT"/pc*.log
