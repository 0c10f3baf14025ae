// One sweep of the implicit (LOD) scheme along one axis of one ligand channel
// (explant-gpu).
//
// Each invocation solves one grid line of the axis in place, with exactly the
// per-element arithmetic of `explant_field::implicit::solve_line` (see the module docs
// of `explant_field::implicit`):
//
//   1. d[0] += rhs_lo if the low face is Fixed, then d[n-1] += rhs_hi if the high one is
//   2. forward:  d[0] = d[0] * inv[0];  d[i] = (d[i] - lower[i] * d[i-1]) * inv[i]
//   3. back:     d[i] = d[i] - upper[i] * d[i+1],  i = n-2 down to 0
//   4. cyclic lines only: f = (d[0] + q * d[n-1]) * r, then d[i] = d[i] - f * z[i]
//      (f from the values before any correction)
//
// WGSL compilers may contract `a * b + c` into a fused multiply–add, so the result
// agrees with the CPU to float32 rounding rather than bit for bit.
//
// The coefficients come from `explant_field::implicit::coefficients`, uploaded by the
// host (never recomputed here), interleaved as `coef[i] = (lower[i], upper[i], inv[i],
// z[i])` (`z` is 0 on a line without the cyclic correction).
//
// Line `l` of the axis (0 <= l < lines) starts at voxel
// `(l % inner) * inner_step + (l / inner) * outer_step` of the channel, and its
// element `i` lies `i * stride` further on:
//
//   x lines: stride 1,       inner 1,       outer_step nx
//   y lines: stride nx,      inner nx,      inner_step 1, outer_step nx * ny
//   z lines: stride nx * ny, inner nx * ny, inner_step 1, outer_step 0

// Flag bits; must match `explant_gpu`'s `implicit::flags`.
const FIXED_LO: u32 = 1u;
const FIXED_HI: u32 = 2u;
const CYCLIC: u32 = 4u;

// Lines solved per workgroup; must match `explant_gpu`'s `implicit::WORKGROUP`.
const WORKGROUP: u32 = 64u;

// 48 bytes, one per channel and axis.
struct Line {
    // Voxels on a line (>= 1).
    n: u32,
    // Index step between consecutive voxels of a line.
    stride: u32,
    // Number of lines of this axis.
    lines: u32,
    // Line start: (l % inner) * inner_step + (l / inner) * outer_step.
    inner: u32,
    inner_step: u32,
    outer_step: u32,
    // FIXED_LO | FIXED_HI | CYCLIC.
    flags: u32,
    _pad: u32,
    // 2 a value of a Fixed low / high face.
    rhs_lo: f32,
    rhs_hi: f32,
    // Sherman–Morrison scalars of a cyclic line.
    q: f32,
    r: f32,
}

@group(0) @binding(0) var<uniform> line: Line;
@group(0) @binding(1) var<storage, read> coef: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> field: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn sweep(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    // The host spreads many lines over a 2D grid of workgroups.
    let l = id.x + id.y * groups.x * WORKGROUP;
    if (l >= line.lines) {
        return;
    }
    let n = line.n;
    let s = line.stride;
    let start = (l % line.inner) * line.inner_step + (l / line.inner) * line.outer_step;
    let last = start + (n - 1u) * s;

    // 1. Fixed faces.
    if ((line.flags & FIXED_LO) != 0u) {
        field[start] = field[start] + line.rhs_lo;
    }
    if ((line.flags & FIXED_HI) != 0u) {
        field[last] = field[last] + line.rhs_hi;
    }

    // 2. Forward elimination; `prev` carries d[i-1].
    var prev = field[start] * coef[0].z;
    field[start] = prev;
    for (var i = 1u; i < n; i = i + 1u) {
        let k = start + i * s;
        let c = coef[i];
        prev = (field[k] - c.x * prev) * c.z;
        field[k] = prev;
    }

    // 3. Back substitution; `next` carries d[i+1].
    var next = prev;
    for (var i = n - 1u; i > 0u; i = i - 1u) {
        let k = start + (i - 1u) * s;
        next = field[k] - coef[i - 1u].y * next;
        field[k] = next;
    }

    // 4. Sherman–Morrison correction of a periodic line.
    if ((line.flags & CYCLIC) != 0u) {
        let f = (field[start] + line.q * field[last]) * line.r;
        for (var i = 0u; i < n; i = i + 1u) {
            let k = start + i * s;
            field[k] = field[k] - f * coef[i].w;
        }
    }
}

// The x sweep through workgroup memory (`sweep_x_shared`): x lines are contiguous, so a
// workgroup loads the block of `per_group` consecutive lines with coalesced reads (each
// invocation takes every 64th value), each of its first `per_group` invocations solves
// one line in workgroup memory with the arithmetic above, and the block is written back
// the same coalesced way. Lines sit `pitch = n | 1` apart in the tile (an odd pitch
// spreads the invocations' accesses over the memory banks), and
// `per_group = min(64, TILE / pitch)`; the host uses this kernel only when `per_group`
// is at least `MIN_SHARED_LINES` and dispatches `ceil(lines / per_group)` workgroups.

// Floats of workgroup memory: 16000 bytes, under the downlevel limit of 16352.
// Must match `explant_gpu`'s `implicit::TILE`.
const TILE: u32 = 4000u;

var<workgroup> tile: array<f32, 4000>;

@compute @workgroup_size(64, 1, 1)
fn sweep_x_shared(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let n = line.n;
    let pitch = n | 1u;
    let per_group = min(WORKGROUP, TILE / pitch);
    let first = (wg.x + wg.y * groups.x) * per_group;
    // Lines of this workgroup (none past the last line), and where the block begins.
    let count = min(per_group, select(0u, line.lines - first, first < line.lines));
    let base = first * n;
    let values = count * n;

    // Load, coalesced.
    for (var k = t; k < values; k = k + WORKGROUP) {
        tile[(k / n) * pitch + k % n] = field[base + k];
    }
    workgroupBarrier();

    if (t < count) {
        let s0 = t * pitch;
        let sl = s0 + n - 1u;
        if ((line.flags & FIXED_LO) != 0u) {
            tile[s0] = tile[s0] + line.rhs_lo;
        }
        if ((line.flags & FIXED_HI) != 0u) {
            tile[sl] = tile[sl] + line.rhs_hi;
        }
        var prev = tile[s0] * coef[0].z;
        tile[s0] = prev;
        for (var i = 1u; i < n; i = i + 1u) {
            let c = coef[i];
            prev = (tile[s0 + i] - c.x * prev) * c.z;
            tile[s0 + i] = prev;
        }
        var next = prev;
        for (var i = n - 1u; i > 0u; i = i - 1u) {
            next = tile[s0 + i - 1u] - coef[i - 1u].y * next;
            tile[s0 + i - 1u] = next;
        }
        if ((line.flags & CYCLIC) != 0u) {
            let f = (tile[s0] + line.q * tile[sl]) * line.r;
            for (var i = 0u; i < n; i = i + 1u) {
                tile[s0 + i] = tile[s0 + i] - f * coef[i].w;
            }
        }
    }
    workgroupBarrier();

    // Store, coalesced.
    for (var k = t; k < values; k = k + WORKGROUP) {
        field[base + k] = tile[(k / n) * pitch + k % n];
    }
}
