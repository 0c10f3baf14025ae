#!/usr/bin/env python3
"""Measure explant's peak memory per cell: the slope of the peak resident set (VmHWM,
as `getrusage(RUSAGE_CHILDREN).ru_maxrss`) of `explant run` between two population sizes
of the default scene at the same cell density, on one grid, without perturbations.

Usage: scripts/memory_per_cell.py EXPLANT_BINARY [N1 N2 [GENES]]

Prints the peak of each run and the bytes per cell (the slope). GENES > 7 appends
genes with no edges, to measure the cost per gene. The figure goes into
`crates/explant-scene/src/memory.rs` and BENCHMARKS.md ("Memory per cell").
"""
import math
import pathlib
import re
import resource
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent


def scene_text(cells: int, genes: int) -> str:
    text = (REPO / "scenes/default.toml").read_text()
    # The default disk: 1500 cells in radius 260 µm; keep that density on a 6400 µm grid.
    radius = 260.0 * math.sqrt(cells / 1500.0)
    text = text.replace("cells = 1500", f"cells = {cells}", 1)
    text = text.replace("radius = 260.0", f"radius = {radius:.1f}", 1)
    text = text.replace("centre = [300.0, 300.0]\nradius", "centre = [3200.0, 3200.0]\nradius", 1)
    text = text.replace("centre = [300.0, 300.0], radius = 45.0", "centre = [3200.0, 3200.0], radius = 45.0", 1)
    text = text.replace("size = [600.0, 600.0]", "size = [6400.0, 6400.0]", 1)
    text = text.replace("duration = 240.0", "duration = 2.0", 1)
    text = text.replace("record_every = 20.0", "record_every = 1.0", 1)
    text = text.replace('path = "../models/default.pt"', f'path = "{REPO / "models/default.pt"}"', 1)
    if genes > 7:
        extra = ", ".join(f'"X{k}"' for k in range(genes - 7))
        text = re.sub(r'(genes = \[[^\]]*)\]', lambda m: m.group(1) + ", " + extra + "]", text, count=1)
    return text


def peak_bytes(exe: str, cells: int, genes: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        scene = pathlib.Path(tmp) / "scene.toml"
        scene.write_text(scene_text(cells, genes))
        cmd = [exe, "run", str(scene), "--out", str(pathlib.Path(tmp) / "out"), "--teacher",
               "--diffusion", "cpu", "--quiet"]
        # Each run in its own child so ru_maxrss is that run's peak alone.
        probe = ("import resource,subprocess,sys;subprocess.run(sys.argv[1:],check=True,"
                 "stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL);"
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = subprocess.run([sys.executable, "-c", probe, *cmd], check=True, capture_output=True, text=True)
        return int(out.stdout.strip()) * 1024


def main() -> None:
    exe = sys.argv[1]
    n1 = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    n2 = int(sys.argv[3]) if len(sys.argv) > 3 else 200_000
    genes = int(sys.argv[4]) if len(sys.argv) > 4 else 7
    p1, p2 = peak_bytes(exe, n1, genes), peak_bytes(exe, n2, genes)
    print(f"genes {genes}: {n1} cells peak {p1 / 2**20:.1f} MiB, {n2} cells peak {p2 / 2**20:.1f} MiB")
    print(f"bytes per cell (slope): {(p2 - p1) / (n2 - n1):.0f}")


if __name__ == "__main__":
    main()
