//! Initial tissue: generated cells (a disk or ball, a box or a layered epithelium, on a
//! jittered lattice or at random, typed by region or by a mixture of types), or cells
//! imported from a file and handed over as [`InitialCells`].

use std::path::{Path, PathBuf};

use bevy_ecs::prelude::*;
use explant_scene::{Packing, Scene, TissueShape};
use glam::Vec3;

use crate::CoreError;
use crate::components::*;
use crate::rng::{Purpose, uniform};

/// Cells to start from, made outside the core (e.g. read from an AnnData file).
#[derive(Debug, Clone, PartialEq)]
pub struct InitialCells {
    /// Positions, µm.
    pub positions: Vec<Vec3>,
    /// Cell type indices.
    pub cell_types: Vec<u32>,
    /// Expression, `N × G`.
    pub expression: Vec<f32>,
}

impl InitialCells {
    /// Map imported cells onto a scene: cell types by name (or the scene's
    /// `tissue.cell_type` for all), coordinates scaled and offset as the scene says and
    /// checked to lie in the domain, expression taken from the file for the genes it has
    /// (`matched`) and from the cell type's baseline for the others.
    pub fn from_import(
        scene: &Scene,
        path: &Path,
        positions: &[[f32; 3]],
        type_names: Option<&[String]>,
        expression: &[f32],
        matched: &[bool],
    ) -> Result<Self, CoreError> {
        let bad = |message: String| CoreError::Tissue { path: PathBuf::from(path), message };
        let t = &scene.tissue;
        let dims = scene.dims();
        let g = scene.genes.len();
        let n = positions.len();
        if expression.len() != n * g || matched.len() != g {
            return Err(bad(format!("expected {n} × {g} expression values, got {}", expression.len())));
        }
        let offset = t.offset.clone().unwrap_or_default();
        let domain = [scene.grid.size[0], scene.grid.size[1], if dims == 3 { scene.grid.size[2] } else { 0.0 }];
        let mut out = InitialCells {
            positions: Vec::with_capacity(n),
            cell_types: Vec::with_capacity(n),
            expression: Vec::with_capacity(n * g),
        };
        let fixed = t.cell_type.as_deref().and_then(|name| scene.cell_type_index(name));
        let names = scene.cell_type_names();
        for i in 0..n {
            let mut p = Vec3::ZERO;
            for a in 0..dims {
                p[a] = positions[i][a] * t.scale + offset.get(a).copied().unwrap_or(0.0);
                if !(0.0..=domain[a]).contains(&p[a]) {
                    return Err(bad(format!(
                        "cell {i} lies at {} µm on axis {a}, outside the grid (0–{}); set `tissue.scale` or \
                         `tissue.offset`",
                        p[a], domain[a]
                    )));
                }
            }
            let ty = match (fixed, type_names) {
                (Some(ty), _) => ty,
                (None, Some(types)) => scene.cell_type_index(&types[i]).ok_or_else(|| {
                    bad(format!(
                        "cell {i} has cell type `{}`, which the scene does not define{}",
                        types[i],
                        explant_scene::suggest(&types[i], &names)
                    ))
                })?,
                (None, None) => {
                    return Err(bad("the file has no cell type column and the scene names no `cell_type`".into()));
                }
            };
            let baseline = scene.gene_vector(&scene.cell_types[ty].baseline);
            for k in 0..g {
                out.expression.push(if matched[k] { expression[i * g + k] } else { baseline[k] });
            }
            out.positions.push(p);
            out.cell_types.push(ty as u32);
        }
        if n == 0 {
            return Err(bad("the file holds no cells".into()));
        }
        Ok(out)
    }
}

/// Hexagonal (2D) or simple cubic (3D) lattice points with spacing `a` covering the
/// box `lo`–`hi`.
fn lattice_points(lo: Vec3, hi: Vec3, a: f32, dims: usize) -> Vec<Vec3> {
    let mut pts = Vec::new();
    if dims == 2 {
        let dy = a * 3f32.sqrt() / 2.0;
        let rows = ((hi.y - lo.y) / dy).floor() as i64;
        let cols = ((hi.x - lo.x) / a).floor() as i64;
        for r in 0..=rows {
            for c in 0..=cols {
                let x = lo.x + (c as f32 + if r % 2 == 1 { 0.5 } else { 0.0 }) * a;
                let p = Vec3::new(x, lo.y + r as f32 * dy, 0.0);
                if p.x <= hi.x {
                    pts.push(p);
                }
            }
        }
    } else {
        let k = ((hi - lo) / a).floor();
        for i in 0..=k.x as i64 {
            for j in 0..=k.y as i64 {
                for l in 0..=k.z as i64 {
                    pts.push(lo + Vec3::new(i as f32, j as f32, l as f32) * a);
                }
            }
        }
    }
    pts
}

/// Lattice spacing at which `n` cells fill `measure` (area in 2D, volume in 3D).
fn spacing_for(measure: f32, n: usize, dims: usize) -> f32 {
    if dims == 2 { (measure / (n as f32 * 3f32.sqrt() / 2.0)).sqrt() } else { (measure / n as f32).cbrt() }
}

/// The `n` points nearest `centre`, ties broken by coordinates for determinism.
fn nearest(mut pts: Vec<Vec3>, centre: Vec3, n: usize) -> Vec<Vec3> {
    pts.sort_by(|p, q| {
        (*p - centre)
            .length_squared()
            .total_cmp(&(*q - centre).length_squared())
            .then(p.x.total_cmp(&q.x))
            .then(p.y.total_cmp(&q.y))
            .then(p.z.total_cmp(&q.z))
    });
    pts.truncate(n);
    pts
}

fn vec3(v: &[f32]) -> Vec3 {
    Vec3::new(v[0], v[1], v.get(2).copied().unwrap_or(0.0))
}

/// Uniform random points inside `contains`, drawn in the box `lo`–`hi`.
fn random_points(seed: u64, lo: Vec3, hi: Vec3, n: usize, dims: usize, contains: impl Fn(Vec3) -> bool) -> Vec<Vec3> {
    let mut pts = Vec::with_capacity(n);
    let mut k = 0u64;
    while pts.len() < n {
        let u = |d: u64| uniform(seed, k, 0, Purpose::Placement, 10 + d) as f32;
        let p = Vec3::new(
            lo.x + u(0) * (hi.x - lo.x),
            lo.y + u(1) * (hi.y - lo.y),
            if dims == 3 { lo.z + u(2) * (hi.z - lo.z) } else { 0.0 },
        );
        if contains(p) {
            pts.push(p);
        }
        k += 1;
    }
    pts
}

/// Generated cell positions with the type each gets from its shape (the epithelium's
/// layer) before regions apply.
pub(crate) fn generate(scene: &Scene) -> Vec<(Vec3, Option<usize>)> {
    let untyped = |pts: Vec<Vec3>| pts.into_iter().map(|p| (p, None)).collect();
    match scene.tissue.shape {
        TissueShape::Disk => untyped(disk(scene)),
        TissueShape::Box => untyped(box_of_cells(scene)),
        TissueShape::Epithelium => epithelium(scene),
        TissueShape::Import => Vec::new(),
    }
}

/// Move each lattice point by up to ±10 % of the spacing per axis (keyed by its index),
/// so the lattice does not show.
fn jitter(seed: u64, dims: usize, pts: Vec<Vec3>, spacing: f32) -> Vec<Vec3> {
    pts.into_iter()
        .enumerate()
        .map(|(i, p)| {
            let j = |d: u64| (uniform(seed, i as u64, 0, Purpose::Placement, d) as f32 - 0.5) * 0.2 * spacing;
            p + Vec3::new(j(0), j(1), if dims == 3 { j(2) } else { 0.0 })
        })
        .collect()
}

/// A disk (2D) or ball (3D): the `n` lattice points nearest the centre at the spacing
/// that fills it, or `n` uniform random points in it.
fn disk(scene: &Scene) -> Vec<Vec3> {
    let (t, dims, seed) = (&scene.tissue, scene.dims(), scene.seed);
    let (centre, r, n) =
        (vec3(t.centre.as_deref().unwrap_or(&[0.0; 3])), t.radius.unwrap_or(0.0), t.cells.unwrap_or(0));
    match t.packing {
        Packing::Lattice => {
            let measure =
                if dims == 2 { std::f32::consts::PI * r * r } else { 4.0 / 3.0 * std::f32::consts::PI * r.powi(3) };
            let a = spacing_for(measure, n, dims);
            // A margin of two spacings so that the n nearest always exist.
            let margin = Vec3::new(r + 2.0 * a, r + 2.0 * a, if dims == 3 { r + 2.0 * a } else { 0.0 });
            jitter(seed, dims, nearest(lattice_points(centre - margin, centre + margin, a, dims), centre, n), a)
        }
        Packing::Random => {
            let rv = Vec3::new(r, r, if dims == 3 { r } else { 0.0 });
            random_points(seed, centre - rv, centre + rv, n, dims, |p| (p - centre).length() <= r)
        }
    }
}

/// A box filled with `n` cells: a lattice refined until it holds at least `n` points,
/// thinned at random to `n`; or `n` uniform random points.
fn box_of_cells(scene: &Scene) -> Vec<Vec3> {
    let (t, dims, seed) = (&scene.tissue, scene.dims(), scene.seed);
    let (lo, hi, n) = (
        vec3(t.min.as_deref().unwrap_or(&[0.0; 3])),
        vec3(t.max.as_deref().unwrap_or(&[0.0; 3])),
        t.cells.unwrap_or(0),
    );
    match t.packing {
        Packing::Lattice => {
            let e = hi - lo;
            let measure = if dims == 2 { e.x * e.y } else { e.x * e.y * e.z };
            let a = spacing_for(measure, n, dims);
            let half = |a: f32| Vec3::new(0.5 * a, 0.5 * a, if dims == 3 { 0.5 * a } else { 0.0 });
            // A lattice rarely holds exactly n points: refine until it holds enough.
            let mut a2 = a;
            let mut pts = lattice_points(lo + half(a2), hi, a2, dims);
            while pts.len() < n {
                a2 *= 0.97;
                pts = lattice_points(lo + half(a2), hi, a2, dims);
            }
            // Fill the whole box: drop the surplus lattice points at random rather than
            // keeping the n nearest the centre (which would round the corners).
            let mut keyed: Vec<(u64, usize)> =
                (0..pts.len()).map(|i| (crate::rng::bits(seed, i as u64, 0, Purpose::Placement, 5), i)).collect();
            keyed.sort_unstable();
            let mut keep: Vec<usize> = keyed[..n].iter().map(|k| k.1).collect();
            keep.sort_unstable();
            jitter(seed, dims, keep.into_iter().map(|i| pts[i]).collect(), a2)
        }
        Packing::Random => random_points(seed, lo, hi, n, dims, |_| true),
    }
}

/// A layered epithelium: each layer, bottom up along the last axis, is
/// `thickness / 2r` sheets of cells of the layer's type, jittered; with random packing
/// each layer keeps its count and scatters it uniformly within its slab.
fn epithelium(scene: &Scene) -> Vec<(Vec3, Option<usize>)> {
    let (t, dims, seed) = (&scene.tissue, scene.dims(), scene.seed);
    let (lo, hi) = (vec3(t.min.as_deref().unwrap_or(&[0.0; 3])), vec3(t.max.as_deref().unwrap_or(&[0.0; 3])));
    let a = 2.0 * t.cell_radius;
    let up = dims - 1;
    let mut out = Vec::new();
    let mut base = lo[up];
    let mut per_layer = Vec::with_capacity(t.layers.len());
    for layer in &t.layers {
        let layer_start = out.len();
        let ty = scene.cell_type_index(&layer.cell_type);
        let rows = (layer.thickness / a).round().max(1.0) as usize;
        let dz = layer.thickness / rows as f32;
        for r in 0..rows {
            let level = base + (r as f32 + 0.5) * dz;
            out.extend(sheet(lo, hi, a, level, r, dims).into_iter().map(|p| (p, ty)));
        }
        per_layer.push(out.len() - layer_start);
        base += layer.thickness;
    }
    if t.packing == Packing::Random {
        scatter_layers(scene, lo, hi, &per_layer, &mut out);
        out
    } else {
        let pts = jitter(seed, dims, out.iter().map(|c| c.0).collect(), a);
        out.iter().zip(pts).map(|(c, p)| (p, c.1)).collect()
    }
}

/// One sheet of an epithelium at height `level`: a row of cells (2D) or a square sheet
/// (3D) at spacing `a`, odd sheets (`r`) shifted by half a spacing.
fn sheet(lo: Vec3, hi: Vec3, a: f32, level: f32, r: usize, dims: usize) -> Vec<Vec3> {
    let mut sheet = Vec::new();
    let shift = if r % 2 == 1 { 0.5 * a } else { 0.0 };
    if dims == 2 {
        let count = ((hi.x - lo.x) / a).floor().max(1.0) as usize;
        for c in 0..count {
            let x = lo.x + (c as f32 + 0.5) * a + shift;
            if x <= hi.x {
                sheet.push(Vec3::new(x, level, 0.0));
            }
        }
    } else {
        let (cx, cy) = (((hi.x - lo.x) / a).floor().max(1.0) as usize, ((hi.y - lo.y) / a).floor().max(1.0) as usize);
        for i in 0..cx {
            for j in 0..cy {
                let x = (lo.x + (i as f32 + 0.5) * a + shift).min(hi.x);
                let y = (lo.y + (j as f32 + 0.5) * a + shift).min(hi.y);
                sheet.push(Vec3::new(x, y, level));
            }
        }
    }
    sheet
}

/// Random packing of an epithelium: the same count per layer (each layer's cells are
/// contiguous in `out`), at uniform positions within the layer's slab.
fn scatter_layers(scene: &Scene, lo: Vec3, hi: Vec3, per_layer: &[usize], out: &mut [(Vec3, Option<usize>)]) {
    let (t, dims, seed) = (&scene.tissue, scene.dims(), scene.seed);
    let up = dims - 1;
    let (mut base, mut first) = (lo[up], 0);
    for (k, (layer, &count)) in t.layers.iter().zip(per_layer).enumerate() {
        let mut l = lo;
        let mut h = hi;
        l[up] = base;
        h[up] = base + layer.thickness;
        let pts = random_points(seed ^ k as u64, l, h, count, dims, |_| true);
        for (slot, p) in out[first..first + count].iter_mut().zip(pts) {
            slot.0 = p;
        }
        base += layer.thickness;
        first += count;
    }
}

/// The type a generated cell gets: the first region containing it (a fixed type or a
/// draw from the region's mixture), else its layer's type, else `tissue.cell_type`.
fn type_of(scene: &Scene, i: usize, p: Vec3, layer: Option<usize>, default: usize) -> usize {
    for region in &scene.tissue.regions {
        if !region.shape.contains(p.to_array()) {
            continue;
        }
        if let Some(t) = region.cell_type.as_deref().and_then(|t| scene.cell_type_index(t)) {
            return t;
        }
        if let Some(mix) = &region.mixture {
            let total: f32 = mix.values().sum();
            let mut u = uniform(scene.seed, i as u64, 0, Purpose::Placement, 3) as f32 * total;
            let mut last = default;
            for (name, f) in mix {
                last = scene.cell_type_index(name).unwrap_or(default);
                if u < *f {
                    return last;
                }
                u -= f;
            }
            return last;
        }
    }
    layer.unwrap_or(default)
}

/// Spawn the initial cells (generated from the scene, or `given`), with their rows of
/// the expression matrix, with ids `0..N` in the order of the tissue (see
/// [`crate::lineage`]). Cells of a dividing type start at a random point of their cycle
/// (an asynchronous population), sized accordingly.
pub(crate) fn populate(world: &mut World, scene: &Scene, given: Option<InitialCells>) {
    let default_type = scene.tissue.cell_type.as_deref().and_then(|t| scene.cell_type_index(t)).unwrap_or(0);
    let baselines: Vec<Vec<f32>> = scene.cell_types.iter().map(|t| scene.gene_vector(&t.baseline)).collect();
    let g = scene.genes.len();
    let cells: Vec<(Vec3, usize, Vec<f32>)> = match given {
        Some(c) => (0..c.positions.len())
            .map(|i| (c.positions[i], c.cell_types[i] as usize, c.expression[i * g..(i + 1) * g].to_vec()))
            .collect(),
        None => generate(scene)
            .into_iter()
            .enumerate()
            .map(|(i, (p, layer))| {
                let ty = type_of(scene, i, p, layer, default_type);
                let noise = scene.tissue.expression_noise;
                let x = baselines[ty]
                    .iter()
                    .enumerate()
                    .map(|(k, &b)| {
                        if noise > 0.0 {
                            let z = crate::rng::normal(scene.seed, i as u64, 0, Purpose::Inheritance, k as u64);
                            b * (noise * z as f32).exp()
                        } else {
                            b
                        }
                    })
                    .collect();
                (p, ty, x)
            })
            .collect(),
    };
    world.insert_resource(States { genes: g, ..Default::default() });
    world.insert_resource(LiveIds::default());
    // Spawned in the neighbour search's bin order (ids keep the generated order), the
    // order [`crate::sort_rows`] keeps the rows in, so the rows need no re-sort at the
    // start, and the entities' own storage order follows the rows: the stages that walk the
    // entities and write by row (gather, mechanics, fate) then touch memory in order
    // instead of at random. No result depends on the entities' order.
    let positions: Vec<Vec3> = cells.iter().map(|c| c.0).collect();
    let order = crate::neighbours::CellList::new(&positions, scene.contact.radius).order().to_vec();
    let mut cells: Vec<Option<(Vec3, usize, Vec<f32>)>> = cells.into_iter().map(Some).collect();
    for i in order.into_iter().map(|i| i as usize) {
        let Some((p, ty, x)) = cells[i].take() else { continue };
        let id = i as u64;
        let (cycle, radius) = crate::life::founder_cycle(
            scene.cell_types[ty].cycle.as_ref(),
            scene.seed,
            id,
            0,
            scene.tissue.cell_radius,
        );
        spawn_cell(world, CellBundle::founder(id, p, radius, ty as u32, cycle, false), &x);
    }
}
