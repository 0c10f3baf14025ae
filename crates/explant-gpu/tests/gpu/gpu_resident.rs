//! The explicit and implicit fields kept on the GPU between steps (`ResidentField`): steps, the cell
//! kernels' exchange and sample, and the download, against the host reference
//! (`CpuDiffusion` with the same scheme, `exchange_on_host`, `sample_on_host`).
//!
//! The sweeps may fuse multiply–adds and WGSL's division may round differently from the
//! host's, so fields and changes are compared to [`TOLERANCE`] of the largest value; a
//! sample is a plain read and must be exact.

use crate::common::*;

use explant_field::resident::{exchange_on_host, sample_on_host};
use explant_field::{
    Boundary, CellExchange, ChannelParams, CpuDiffusion, Detached, DiffusionBackend, Field, Grid, Scheme,
};
use explant_gpu::CELLS_WGSL;

/// Deterministic xorshift numbers in [0, 1).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// `cells` cells in random voxels (several share a voxel), grouped as the engine groups
/// them, with maps like the secrete stage's: secretion toward a saturation, uptake,
/// export; about one map in five skipped.
struct Cells {
    voxel: Vec<u32>,
    start: Vec<u32>,
    order: Vec<u32>,
    coef: Vec<[f32; 3]>,
    cell_voxel: Vec<u32>,
}

impl Cells {
    fn new(grid: &Grid, channels: usize, cells: usize, seed: u64) -> Self {
        let mut n = Noise(seed);
        // Crowd the cells into a fifth of the voxels so that groups hold several.
        let crowd = (grid.voxels() / 5).max(1);
        let cell_voxel: Vec<u32> =
            (0..cells).map(|_| ((n.next() * crowd as f32) as usize * 5 % grid.voxels()) as u32).collect();
        let mut by: Vec<(u32, u32)> = cell_voxel.iter().enumerate().map(|(i, &v)| (v, i as u32)).collect();
        by.sort_unstable();
        let (mut voxel, mut start, mut order) = (Vec::new(), Vec::new(), Vec::new());
        for (k, &(v, i)) in by.iter().enumerate() {
            if k == 0 || by[k - 1].0 != v {
                voxel.push(v);
                start.push(k as u32);
            }
            order.push(i);
        }
        start.push(by.len() as u32);
        let coef = (0..cells * channels)
            .map(|_| {
                if n.next() < 0.2 {
                    return [0.0; 3];
                }
                let f = 0.05 * n.next();
                let (s, u, e) = (2.0 * n.next(), 3.0 * n.next(), 0.5 * n.next());
                [f * s * 10.0, 1.0 + f * (s + u), 0.01 * e]
            })
            .collect();
        Self { voxel, start, order, coef, cell_voxel }
    }

    fn exchange(&self, channels: usize) -> CellExchange<'_> {
        CellExchange {
            channels,
            voxel: &self.voxel,
            start: &self.start,
            order: &self.order,
            coef: &self.coef,
            additions: false,
        }
    }
}

#[test]
fn cells_wgsl_parses_and_validates_with_naga() {
    assert_valid_wgsl("shaders/cells.wgsl", CELLS_WGSL, "exchange", [64, 1, 1]);
    assert_valid_wgsl("shaders/cells.wgsl", CELLS_WGSL, "sample", [64, 1, 1]);
}

#[test]
fn a_resident_field_steps_exchanges_and_samples_as_the_host_does() {
    resident_matches_host(Scheme::Implicit);
}

#[test]
fn a_resident_adi_field_takes_its_sources_and_damped_restarts_as_the_host_does() {
    // The exchanges' changes and the host's own additions become the step's sources; the
    // first step and the third are damped restarts.
    resident_matches_host(Scheme::Adi);
}

#[test]
fn a_resident_explicit_field_steps_exchanges_and_samples_as_the_host_does() {
    // The substep counts differ between the grids (even and odd), so the field ends a
    // step in either ping-pong buffer before it is brought back to its home buffer.
    resident_matches_host(Scheme::Explicit);
}

fn resident_matches_host(scheme: Scheme) {
    let Some(mut gpu) = gpu_or_skip(scheme) else { return };
    use Boundary::{Fixed, Periodic, ZeroFlux};
    let mut parities = [false; 2];
    for (grid, cells) in [
        (Grid { nx: 20, ny: 16, nz: 12, dx: 10.0, origin: [0.0; 3] }, 3000),
        (Grid { nx: 70, ny: 33, nz: 1, dx: 10.0, origin: [0.0; 3] }, 5000),
    ] {
        let faces: explant_field::Faces =
            [Fixed { value: 2.0 }, ZeroFlux, Periodic, Periodic, ZeroFlux, Fixed { value: 0.5 }];
        let params = vec![with_faces(400.0, 0.1, faces), ChannelParams::new(1000.0, 0.0)];
        let nl = params.len();
        let start = noisy_field(grid, nl);
        // The reference: the host solver with its own copy, the reference exchange and
        // sample, and (ADI) the sources listed in the host's order.
        let mut reference = Detached::new(CpuDiffusion::with_scheme(scheme));
        let host = reference.resident().unwrap();
        host.upload(&start).unwrap();
        let r = gpu.resident().expect("the GPU solver keeps its field");
        r.upload(&start).unwrap();
        let mut worst = 0.0f64;
        for (tick, dt) in [0.5f32, 0.3, 0.5, 0.45].into_iter().enumerate() {
            let tick = tick as u64;
            let c = Cells::new(&grid, nl, cells, 0x51 + tick);
            let (mut on_host, mut on_gpu) = (vec![0.0; cells * nl], vec![0.0; cells * nl]);
            host.exchange(&c.exchange(nl), &mut on_host).unwrap();
            r.exchange(&c.exchange(nl), &mut on_gpu).unwrap();
            // What the host added to its copy since the step (a steady source), twice
            // into one voxel: the ADI scheme takes it as a source.
            let added = [(7u32, 0.75f32), ((grid.voxels() + 3) as u32, 2.0), (7, -0.25)];
            host.add_sources(&added).unwrap();
            r.add_sources(&added).unwrap();
            let scale = on_host.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
            assert!(scale > 0.0, "the exchanges changed nothing");
            let change_diff = relative_difference(&on_gpu, &on_host);
            assert!(change_diff < TOLERANCE, "tick {tick}: per-cell changes differ by {change_diff:.3e}");
            // Skipped maps report no change on both.
            for (k, co) in c.coef.iter().enumerate() {
                if co[1] == 0.0 {
                    assert_eq!(on_gpu[k], 0.0);
                }
            }
            parities[(explant_field::substeps(&grid, &params, dt).unwrap().count % 2) as usize] = true;
            let restart = tick.is_multiple_of(2);
            r.step_resident(&params, dt, restart).unwrap();
            host.step_resident(&params, dt, restart).unwrap();
            // Sampling reads the resident field as it is: compare with a download.
            let (mut down, mut expected) = (Field::zeros(grid, nl), Field::zeros(grid, nl));
            r.download(&mut down).unwrap();
            host.download(&mut expected).unwrap();
            let rel = relative_difference(&down.data, &expected.data);
            worst = worst.max(rel);
            assert!(rel < TOLERANCE, "tick {tick}: resident field vs host {rel:.3e}");
            let (mut s_gpu, mut s_ref) = (vec![0.0; cells * nl], vec![0.0; cells * nl]);
            r.sample(&c.cell_voxel, &mut s_gpu).unwrap();
            sample_on_host(&down, &c.cell_voxel, &mut s_ref).unwrap();
            assert_eq!(s_gpu, s_ref, "tick {tick}: a sample is a plain read of the resident field");
        }
        if scheme == Scheme::Explicit {
            assert_eq!(parities, [true, true], "explicit steps of both substep parities should be tested");
        }
        eprintln!(
            "resident {scheme:?} {}×{}×{}, {cells} cells: worst field difference {worst:.3e}",
            grid.nx, grid.ny, grid.nz
        );
    }
}

#[test]
fn the_cell_buffers_grow_and_a_host_step_replaces_the_resident_field() {
    let Some(mut gpu) = gpu_or_skip(Scheme::Implicit) else { return };
    let grid = Grid { nx: 16, ny: 16, nz: 1, dx: 10.0, origin: [0.0; 3] };
    let mut host = noisy_field(grid, 1);
    let r = gpu.resident().unwrap();
    r.upload(&host).unwrap();
    for cells in [10, 700, 3, 2000] {
        let c = Cells::new(&grid, 1, cells, cells as u64);
        let (mut a, mut b) = (vec![0.0; cells], vec![0.0; cells]);
        exchange_on_host(&mut host, &c.exchange(1), &mut a).unwrap();
        r.exchange(&c.exchange(1), &mut b).unwrap();
        assert!(relative_difference(&b, &a) < TOLERANCE, "{cells} cells");
    }
    let mut down = Field::zeros(grid, 1);
    r.download(&mut down).unwrap();
    assert!(relative_difference(&down.data, &host.data) < TOLERANCE);
    // A step through the host path uses the same buffers: the resident copy is gone, and
    // using it is refused rather than answered from someone else's field.
    gpu.step(&mut host, &[ChannelParams::new(100.0, 0.0)], 0.5).unwrap();
    let e = gpu.resident().unwrap().sample(&[0], &mut [0.0]).unwrap_err();
    assert!(e.to_string().contains("never uploaded"), "{e}");
    // Malformed lists are refused by name, before anything reaches the device.
    let r = gpu.resident().unwrap();
    r.upload(&host).unwrap();
    let e = r.sample(&[256], &mut [0.0]).unwrap_err();
    assert!(e.to_string().contains("voxel 256 is outside"), "{e}");
    let bad = CellExchange {
        channels: 1,
        voxel: &[0],
        start: &[0, 2],
        order: &[0],
        coef: &[[0.0, 1.0, 1.0]],
        additions: false,
    };
    assert!(r.exchange(&bad, &mut [0.0]).is_err());
}

#[test]
fn adi_wgsl_appended_to_the_stencil_parses_and_validates_with_naga() {
    let source = format!("{}\n{}", explant_gpu::DIFFUSE_WGSL, explant_gpu::ADI_WGSL);
    for entry in ["take_back", "increment", "finish"] {
        assert_valid_wgsl("shaders/diffuse.wgsl + shaders/adi.wgsl", &source, entry, [8, 8, 1]);
    }
}
