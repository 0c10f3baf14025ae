// biofvm_lod.cpp -- explant's BioFVM speed anchor (our driver, not a BioFVM example).
//
// Times BioFVM's own implicit LOD 3-D constant-coefficient solver,
// BioFVM::diffusion_decay_solver__constant_coefficients_LOD_3D (the function
// a BioFVM::Microenvironment uses by default), called directly, with no bulk
// sources/sinks, no Dirichlet nodes and no basic agents.
//
// Problem: 100 x 100 x 100 voxels, dx = dy = dz = 10 um (domain 0..1000 um per
// axis), 10 substrates, D = 1e5 um^2/min, decay = 0.1 /min, dt = 0.01 min.
// Initial field: density[s] of voxel v = ((i * 7919) % 1000) * 1e-3 with the
// flat index i = v * 10 + s.
//
// One untimed warm-up step (builds the Thomas coefficients), then R rounds of
// S steps. Per round it prints ns per voxel-substrate-step
//   = elapsed_ns / (S * voxels * substrates),
// then the fastest and median round, and a checksum of the final field.
//
// Usage: biofvm_lod [rounds=15] [steps_per_round=10]
// Build and run: scripts/anchors/biofvm_lod.sh BIOFVM_SRC_DIR [BUILD_DIR] [THREADS]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <omp.h>

#include "BioFVM.h"

using namespace BioFVM;

int main(int argc, char** argv)
{
    const int rounds = argc > 1 ? std::atoi(argv[1]) : 15;
    const int steps = argc > 2 ? std::atoi(argv[2]) : 10;
    if (rounds < 1 || steps < 1) {
        std::fprintf(stderr, "usage: %s [rounds>=1] [steps_per_round>=1]\n", argv[0]);
        return 2;
    }

    const int n_sub = 10;
    const double dx = 10.0;
    const double D = 1e5;      // um^2 / min
    const double decay = 0.1;  // 1 / min
    const double dt = 0.01;    // min

    Microenvironment M;
    M.name = "explant anchor";
    M.spatial_units = "micron";
    M.time_units = "min";
    // Mesh first (sizes gradient_vectors), then the substrate count.
    M.resize_space(0.0, 1000.0, 0.0, 1000.0, 0.0, 1000.0, dx, dx, dx);
    M.resize_densities(n_sub);
    for (int s = 0; s < n_sub; ++s) {
        M.set_density(s, "substrate" + std::to_string(s), "dimensionless", D, decay);
    }

    const int nx = M.mesh.x_coordinates.size();
    const int ny = M.mesh.y_coordinates.size();
    const int nz = M.mesh.z_coordinates.size();
    const long n_vox = (long)M.number_of_voxels();
    if (nx != 100 || ny != 100 || nz != 100 || n_vox != 1000000L
        || M.number_of_densities() != n_sub
        || !M.mesh.uniform_mesh || !M.mesh.Cartesian_mesh) {
        std::fprintf(stderr, "unexpected setup: %d x %d x %d = %ld voxels, %d substrates\n",
                     nx, ny, nz, n_vox, (int)M.number_of_densities());
        return 1;
    }

    for (long v = 0; v < n_vox; ++v) {
        std::vector<double>& rho = M.density_vector((int)v);
        for (int s = 0; s < n_sub; ++s) {
            const long i = v * n_sub + s;
            rho[s] = (double)((i * 7919L) % 1000L) * 1e-3;
        }
    }

    std::printf("BioFVM %s, LOD 3-D constant coefficients, %d x %d x %d voxels, %d substrates, "
                "dt %g, OpenMP threads %d\n",
                BioFVM_Version.c_str(), nx, ny, nz, n_sub, dt, omp_get_max_threads());

    // Warm-up: first call builds the Thomas coefficients (and prints BioFVM's banner).
    diffusion_decay_solver__constant_coefficients_LOD_3D(M, dt);
    std::fflush(stdout);

    const double work = (double)steps * (double)n_vox * (double)n_sub;
    std::vector<double> ns;
    for (int r = 0; r < rounds; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int k = 0; k < steps; ++k) {
            diffusion_decay_solver__constant_coefficients_LOD_3D(M, dt);
        }
        const auto t1 = std::chrono::steady_clock::now();
        const double e = std::chrono::duration<double, std::nano>(t1 - t0).count();
        ns.push_back(e / work);
        std::printf("round %2d: %d steps %9.3f ms  %.4f ns/voxel-substrate-step\n",
                    r + 1, steps, e * 1e-6, e / work);
        std::fflush(stdout);
    }

    std::vector<double> sorted = ns;
    std::sort(sorted.begin(), sorted.end());
    const size_t m = sorted.size();
    const double median = (m % 2) ? sorted[m / 2] : 0.5 * (sorted[m / 2 - 1] + sorted[m / 2]);

    double sum = 0.0, wsum = 0.0;
    for (long v = 0; v < n_vox; ++v) {
        const std::vector<double>& rho = M.density_vector((int)v);
        for (int s = 0; s < n_sub; ++s) {
            sum += rho[s];
            wsum += rho[s] * (double)((v * n_sub + s) % 997 + 1);
        }
    }

    std::printf("fastest %.4f ns/voxel-substrate-step, median %.4f (rounds %d x steps %d, threads %d)\n",
                sorted[0], median, rounds, steps, omp_get_max_threads());
    std::printf("checksum after %d steps: sum %.12e weighted %.12e\n",
                1 + rounds * steps, sum, wsum);
    return 0;
}
