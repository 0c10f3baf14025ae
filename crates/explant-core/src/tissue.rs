//! Initial tissue: cells on a jittered hexagonal (2D) or face-centred cubic-like (3D)
//! lattice filling a disk or ball, typed by region.

use bevy_ecs::prelude::*;
use explant_scene::Scene;
use glam::Vec3;

use crate::components::*;
use crate::rng::{Purpose, uniform};

/// Lattice points closest to the centre, `n` of them, spaced so that `n` cells fill
/// the disk/ball; positions get a small jitter (10 % of the spacing) from the seed.
pub(crate) fn lattice(scene: &Scene) -> Vec<Vec3> {
    let t = &scene.tissue;
    let n = t.cells;
    let dims = scene.dims();
    let centre = Vec3::new(t.centre[0], t.centre[1], if dims == 3 { t.centre[2] } else { 0.0 });
    let mut pts = Vec::new();
    if dims == 2 {
        // Hexagonal packing: area per point = (√3/2) a².
        let area = std::f32::consts::PI * t.radius * t.radius;
        let a = (area / (n as f32 * 3f32.sqrt() / 2.0)).sqrt();
        let rows = (t.radius / (a * 3f32.sqrt() / 2.0)).ceil() as i32 + 2;
        let cols = (t.radius / a).ceil() as i32 + 2;
        for r in -rows..=rows {
            for c in -cols..=cols {
                let x = (c as f32 + if r.rem_euclid(2) == 1 { 0.5 } else { 0.0 }) * a;
                let y = r as f32 * a * 3f32.sqrt() / 2.0;
                pts.push(Vec3::new(x, y, 0.0));
            }
        }
    } else {
        // Simple cubic lattice: volume per point = a³.
        let vol = 4.0 / 3.0 * std::f32::consts::PI * t.radius.powi(3);
        let a = (vol / n as f32).cbrt();
        let k = (t.radius / a).ceil() as i32 + 2;
        for i in -k..=k {
            for j in -k..=k {
                for l in -k..=k {
                    pts.push(Vec3::new(i as f32, j as f32, l as f32) * a);
                }
            }
        }
    }
    // Nearest `n` to the centre, ties broken by coordinates for determinism.
    pts.sort_by(|p, q| {
        p.length_squared()
            .total_cmp(&q.length_squared())
            .then(p.x.total_cmp(&q.x))
            .then(p.y.total_cmp(&q.y))
            .then(p.z.total_cmp(&q.z))
    });
    pts.truncate(n);
    let spacing = if pts.len() > 1 { (pts[1] - pts[0]).length().max(1e-3) } else { 1.0 };
    pts.iter()
        .enumerate()
        .map(|(i, p)| {
            let j = |d: u64| (uniform(scene.seed, i as u64, 0, Purpose::Placement, d) as f32 - 0.5) * 0.2 * spacing;
            let jitter = Vec3::new(j(0), j(1), if dims == 3 { j(2) } else { 0.0 });
            centre + *p + jitter
        })
        .collect()
}

/// Spawn the scene's initial cells, with their rows of the expression matrix. Cells
/// of a dividing type start at a random point of their cycle (an asynchronous
/// population), sized accordingly.
pub(crate) fn populate(world: &mut World, scene: &Scene) {
    let default_type = scene.cell_type_index(&scene.tissue.cell_type).unwrap_or(0);
    let baselines: Vec<Vec<f32>> = scene.cell_types.iter().map(|t| scene.gene_vector(&t.baseline)).collect();
    let full = sphere_volume(scene.tissue.cell_radius);
    let mut states = States { genes: scene.genes.len(), ..Default::default() };
    let points = lattice(scene);
    let n = points.len();
    for (i, p) in points.into_iter().enumerate() {
        let ty = scene
            .tissue
            .regions
            .iter()
            .find(|r| r.shape.contains(p.to_array()))
            .and_then(|r| scene.cell_type_index(&r.cell_type))
            .unwrap_or(default_type);
        let id = i as u64;
        let (length, progress) = match &scene.cell_types[ty].cycle {
            Some(c) => {
                let length = crate::life::cycle_length(c, scene.seed, id, 0);
                (length, uniform(scene.seed, id, 0, Purpose::Cycle, 7) as f32 * length)
            }
            None => (f32::INFINITY, 0.0),
        };
        let radius = if length.is_finite() {
            sphere_radius(full * (0.5 + 0.5 * progress / length))
        } else {
            scene.tissue.cell_radius
        };
        let row = states.len() as u32;
        let entity = world
            .spawn((
                CellId(id),
                Row(row),
                Position(p),
                Radius(radius),
                CellType(ty as u32),
                Lineage { parent: None, generation: 0 },
                Perturbed(false),
                Cycle { phase: Phase::Cycling, age: 0.0, progress, length, dying: 0.0, volume_at_death: 0.0 },
                Motility::default(),
            ))
            .id();
        states.push(entity, &baselines[ty]);
    }
    world.insert_resource(states);
    world.insert_resource(NextId(n as u64));
}
