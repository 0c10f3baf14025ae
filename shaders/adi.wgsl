// The ADI scheme's explicit half on a field kept on the device (explant-gpu). This file
// is appended to `shaders/diffuse.wgsl` (its `Params`, `src`, `dst`, `voxel` and
// `neighbour_sum`) when the pipelines are built.
//
// A Douglas step of `explant_field::adi` from the resident field `u` (which already
// holds what was added since the last step, `S`, kept per voxel in `sources`):
//
//   take_back:  u = u - S                                   (bind: dst = u)
//   increment:  delta = a (sum - faces u) - kdt u + S        (bind: src = u, dst = delta)
//   (the homogeneous half-coefficient sweeps of delta: `shaders/implicit.wgsl`)
//   finish:     u = u + delta, S = 0                         (bind: src = delta, dst = u)
//
// with `a = D dt / dx^2` and `kdt = k dt` of the whole step in `params`. The host
// subtracts and adds each listed source one by one; here a voxel's sources arrive
// summed, so the two agree to float32 rounding.

@group(0) @binding(3) var<storage, read_write> sources: array<f32>;

@compute @workgroup_size(8, 8, 1)
fn take_back(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = voxel(id);
    if (i == NONE) {
        return;
    }
    dst[i] = dst[i] - sources[i];
}

@compute @workgroup_size(8, 8, 1)
fn increment(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = voxel(id);
    if (i == NONE) {
        return;
    }
    let u = src[i];
    dst[i] = params.a * (neighbour_sum(id, i, u) - params.faces * u) - params.kdt * u + sources[i];
}

@compute @workgroup_size(8, 8, 1)
fn finish(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = voxel(id);
    if (i == NONE) {
        return;
    }
    dst[i] = dst[i] + src[i];
    sources[i] = 0.0;
}
