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
// with a = D dt / dx², kdt = k dt and faces = 2 * dims. A grid with nz == 1 is 2D: it
// has no z neighbours and its z faces are ignored.
//
// The neighbour beyond a face of the grid depends on that face's boundary kind
// (`explant_field::Boundary`):
//
//   ZERO_FLUX  c                      (a mirror: no flux through the face)
//   FIXED      2.0 * value - c        (Dirichlet: `value` held on the face)
//   PERIODIC   the voxel at the opposite end of the same axis
//
// `src` and `dst` hold one channel each (`(z * ny + y) * nx + x`); the host ping-pongs
// them between substeps and writes `params` once per step and channel.

// Boundary kind codes; must match `explant_gpu`'s `resources::face_kind`.
const ZERO_FLUX: u32 = 0u;
const FIXED: u32 = 1u;
const PERIODIC: u32 = 2u;

// Face indices, in `explant_field::Faces` order.
const X_MINUS: u32 = 0u;
const X_PLUS: u32 = 1u;
const Y_MINUS: u32 = 2u;
const Y_PLUS: u32 = 3u;
const Z_MINUS: u32 = 4u;
const Z_PLUS: u32 = 5u;

// 96 bytes. Uniform arrays need a 16-byte element stride, so the six per-face entries
// are packed four to a vector: face f is `kind[f / 4][f % 4]` (entries 6 and 7 unused).
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
    // Boundary kind code of each face (ZERO_FLUX, FIXED or PERIODIC).
    kind: array<vec4<u32>, 2>,
    // The held concentration of each FIXED face (unused for the other kinds).
    value: array<vec4<f32>, 2>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// The neighbour beyond `face` of a voxel with value `c` on that face; `wrap` is the
// index of the voxel at the opposite end of the axis, read only for a PERIODIC face.
fn beyond(face: u32, c: f32, wrap: u32) -> f32 {
    let kind = params.kind[face / 4u][face % 4u];
    if (kind == FIXED) {
        return 2.0 * params.value[face / 4u][face % 4u] - c;
    }
    if (kind == PERIODIC) {
        return src[wrap];
    }
    return c;
}

// The sum of the `2 * dims` neighbours of voxel `id` (index `i`, value `c`), ghosts
// beyond the faces included, in the order xm + xp + ym + yp (+ zm + zp).
fn neighbour_sum(id: vec3<u32>, i: u32, c: f32) -> f32 {
    let nx = params.nx;
    let ny = params.ny;
    let nz = params.nz;
    let row = nx;
    let plane = nx * ny;

    var xm: f32;
    if (id.x > 0u) {
        xm = src[i - 1u];
    } else {
        xm = beyond(X_MINUS, c, i + (nx - 1u));
    }
    var xp: f32;
    if (id.x + 1u < nx) {
        xp = src[i + 1u];
    } else {
        xp = beyond(X_PLUS, c, i - (nx - 1u));
    }
    var ym: f32;
    if (id.y > 0u) {
        ym = src[i - row];
    } else {
        ym = beyond(Y_MINUS, c, i + (ny - 1u) * row);
    }
    var yp: f32;
    if (id.y + 1u < ny) {
        yp = src[i + row];
    } else {
        yp = beyond(Y_PLUS, c, i - (ny - 1u) * row);
    }
    var sum = xm + xp + ym + yp;
    if (nz > 1u) {
        var zm: f32;
        if (id.z > 0u) {
            zm = src[i - plane];
        } else {
            zm = beyond(Z_MINUS, c, i + (nz - 1u) * plane);
        }
        var zp: f32;
        if (id.z + 1u < nz) {
            zp = src[i + plane];
        } else {
            zp = beyond(Z_PLUS, c, i - (nz - 1u) * plane);
        }
        sum = sum + zm + zp;
    }
    return sum;
}

// The voxel index of `id`, or `NONE` outside the grid.
const NONE: u32 = 0xffffffffu;

fn voxel(id: vec3<u32>) -> u32 {
    if (id.x >= params.nx || id.y >= params.ny || id.z >= params.nz) {
        return NONE;
    }
    return (id.z * params.ny + id.y) * params.nx + id.x;
}

@compute @workgroup_size(8, 8, 1)
fn diffuse(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = voxel(id);
    if (i == NONE) {
        return;
    }
    let c = src[i];
    let lap = neighbour_sum(id, i, c) - params.faces * c;
    dst[i] = c + params.a * lap - params.kdt * c;
}
