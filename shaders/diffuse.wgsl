// One explicit diffusion–decay substep of one ligand channel (explant-gpu).
//
// Mirrors `explant_field::stencil_update` and the rayon loop in
// `crates/explant-field/src/cpu.rs` operation for operation, so that the GPU and CPU
// paths agree to float32 rounding:
//
//   sum  = xm + xp + ym + yp (+ zm + zp in 3D), summed left to right
//   lap  = sum - faces * c
//   c'   = c + a * lap - kdt * c
//
// with a = D dt / dx², kdt = k dt and faces = 2 * dims. A neighbour beyond a wall is
// mirrored (equal to the centre value), which makes every wall zero-flux. A grid with
// nz == 1 is 2D and has no z neighbours.
//
// `src` and `dst` hold one channel each (`(z * ny + y) * nx + x`); the host ping-pongs
// them between substeps and writes `params` once per step and channel.

struct Params {
    nx: u32,
    ny: u32,
    nz: u32,
    // D dt / dx² for this channel and substep length.
    a: f32,
    // k dt for this channel and substep length.
    kdt: f32,
    // 2 * dims: 4 in 2D, 6 in 3D.
    faces: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(8, 8, 1)
fn diffuse(@builtin(global_invocation_id) id: vec3<u32>) {
    let nx = params.nx;
    let ny = params.ny;
    let nz = params.nz;
    if (id.x >= nx || id.y >= ny || id.z >= nz) {
        return;
    }
    let i = (id.z * ny + id.y) * nx + id.x;
    let c = src[i];

    var xm = c;
    if (id.x > 0u) {
        xm = src[i - 1u];
    }
    var xp = c;
    if (id.x + 1u < nx) {
        xp = src[i + 1u];
    }
    var ym = c;
    if (id.y > 0u) {
        ym = src[i - nx];
    }
    var yp = c;
    if (id.y + 1u < ny) {
        yp = src[i + nx];
    }
    var sum = xm + xp + ym + yp;
    if (nz > 1u) {
        let plane = nx * ny;
        var zm = c;
        if (id.z > 0u) {
            zm = src[i - plane];
        }
        var zp = c;
        if (id.z + 1u < nz) {
            zp = src[i + plane];
        }
        sum = sum + zm + zp;
    }

    let lap = sum - params.faces * c;
    dst[i] = c + params.a * lap - params.kdt * c;
}
