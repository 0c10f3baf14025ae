// Cells and the ligand field on the device (explant-gpu): the per-cell exchange of the
// secrete stage and the sampling of the sense stage, on a field that stays in its
// storage buffer between ticks.
//
// `exchange`: one invocation per (group of cells sharing a voxel) of one channel. The
// group's cells act on the voxel one after the other in row order, each with its map
//
//   rho = (rho + a) / b + c        (b == 0: the cell does not exchange this channel)
//
// exactly as `explant_field::resident::exchange_on_host` (no multiply–add to contract,
// so the arithmetic is the host's up to the division's rounding), and each cell's own
// change `rho_after - rho_before` goes to `values[i * channels + channel]`.
//
// `sample`: one invocation per cell of one channel: `values[i * channels + channel] =
// field[voxel of cell i]`.
//
// Invocation `k` of a dispatch is `id.x + id.y * num_workgroups.x * 64`: the host
// spreads more than 65535 workgroups over two dimensions.

// Must match `explant_gpu`'s `cells::WORKGROUP`.
const WORKGROUP: u32 = 64u;

// 32 bytes, one per kernel and channel.
struct Params {
    // Groups (exchange) or cells (sample) to do.
    count: u32,
    // Ligand channels: the row width of the coefficients and of `values`.
    channels: u32,
    // The channel this dispatch does (its field is `field`).
    channel: u32,
    // Where the group starts, the order and the coefficients begin in `lists`
    // (exchange; the group voxels begin at 0).
    start_at: u32,
    order_at: u32,
    coef_at: u32,
    // exchange: 1 to add each voxel's change to `sources` (a scheme that takes its
    // sources separately, ADI), else 0.
    accumulate: u32,
    _pad1: u32,
}

// Four storage buffers: the downlevel limit per stage.
@group(0) @binding(0) var<uniform> params: Params;
// exchange: group g is cells order[start[g] .. start[g + 1]], all in voxel voxel[g],
// and the (a, b, c) of cell i and channel k are the f32 bits at coef + 3 (i channels + k);
// sample: the voxel of each cell, from 0.
@group(0) @binding(1) var<storage, read> lists: array<u32>;
// exchange: each cell's change; sample: the values read.
@group(0) @binding(2) var<storage, read_write> values: array<f32>;
// The channel's field, resident.
@group(0) @binding(3) var<storage, read_write> field: array<f32>;
// exchange with `accumulate`: the channel's sources since the last step, per voxel.
@group(0) @binding(4) var<storage, read_write> sources: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn exchange(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let g = id.x + id.y * groups.x * WORKGROUP;
    if (g >= params.count) {
        return;
    }
    let v = lists[g];
    let initial = field[v];
    var rho = initial;
    let first = lists[params.start_at + g];
    let end = lists[params.start_at + g + 1u];
    for (var k = first; k < end; k = k + 1u) {
        let slot = lists[params.order_at + k] * params.channels + params.channel;
        let at = params.coef_at + 3u * slot;
        let a = bitcast<f32>(lists[at]);
        let b = bitcast<f32>(lists[at + 1u]);
        let c = bitcast<f32>(lists[at + 2u]);
        if (b == 0.0) {
            values[slot] = 0.0;
            continue;
        }
        let before = rho;
        rho = (before + a) / b + c;
        values[slot] = rho - before;
    }
    field[v] = rho;
    if (params.accumulate != 0u) {
        sources[v] = sources[v] + (rho - initial);
    }
}

@compute @workgroup_size(64, 1, 1)
fn sample(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = id.x + id.y * groups.x * WORKGROUP;
    if (i >= params.count) {
        return;
    }
    values[i * params.channels + params.channel] = field[lists[i]];
}
