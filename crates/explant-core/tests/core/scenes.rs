//! Every shipped scene loads, builds and runs a few ticks with the teacher.

use std::path::Path;

use explant_core::{Simulation, Teacher};
use explant_field::CpuDiffusion;
use explant_scene::LoadedScene;

#[test]
fn every_shipped_scene_runs_a_few_ticks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes");
    let mut ran = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let scene = LoadedScene::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let sc = &scene.scene;
        let mut sim =
            Simulation::new(sc, Box::new(CpuDiffusion::with_scheme(sc.grid.scheme)), Box::new(Teacher::from_scene(sc)))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for _ in 0..5 {
            sim.step().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        assert_eq!(sim.clock().tick, 5);
        ran.push(path.file_name().unwrap().to_string_lossy().to_string());
    }
    ran.sort();
    assert!(ran.len() >= 2, "expected the shipped scenes, found {ran:?}");
    eprintln!("ran {ran:?}");
}

#[test]
fn morphogen_flag_scene_reads_the_gradient_as_three_stripes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes/morphogen_flag.toml");
    let scene = LoadedScene::from_file(&path).unwrap();
    let sc = &scene.scene;
    let mut sim =
        Simulation::new(sc, Box::new(CpuDiffusion::with_scheme(sc.grid.scheme)), Box::new(Teacher::from_scene(sc)))
            .unwrap();
    for _ in 0..sim.total_ticks() {
        sim.step().unwrap();
    }
    let t = sim.cells();
    let (id1, msx2) = (sc.gene_index("ID1").unwrap(), sc.gene_index("MSX2").unwrap());
    let g = sc.genes.len();
    let band = |lo: f32, hi: f32, gene: usize| {
        let v: Vec<f32> = (0..t.ids.len())
            .filter(|&i| (lo..hi).contains(&t.positions[i][0]))
            .map(|i| t.expression[i * g + gene])
            .collect();
        assert!(v.len() > 20, "band {lo}–{hi} has {} cells", v.len());
        v.iter().sum::<f32>() / v.len() as f32
    };
    // Near the boundary source: MSX2 on, ID1 repressed by it.
    assert!(band(100.0, 150.0, msx2) > 1.5 && band(100.0, 150.0, id1) < 0.2);
    // Middle stripe: ID1 on, MSX2 off.
    assert!(band(200.0, 300.0, id1) > 1.0 && band(200.0, 300.0, msx2) < 0.3);
    // Far from the source both fade.
    assert!(band(350.0, 400.0, id1) < 0.6 && band(350.0, 400.0, msx2) < 0.05);
    // The field decays monotonically away from the fixed face at x = 0.
    let f = &sim.ligands().field;
    let row: Vec<f32> = (0..f.grid.nx).map(|x| f.data[15 * f.grid.nx + x]).collect();
    assert!(row.windows(2).all(|w| w[0] >= w[1]), "{row:?}");
    assert!(row[0] > 0.85 && row[0] < 1.0, "first voxel {}", row[0]);
}

/// A shipped scene with its perturbations, and the same scene without them (the paired
/// control), both run for `ticks`.
fn paired(name: &str, ticks: u64) -> (explant_scene::Scene, Simulation, Simulation) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes").join(name);
    let sc = LoadedScene::from_file(&path).unwrap_or_else(|e| panic!("{e}")).scene;
    let mut bare = sc.clone();
    bare.perturbations.clear();
    let start = |s: &explant_scene::Scene| {
        Simulation::new(s, Box::new(CpuDiffusion::with_scheme(s.grid.scheme)), Box::new(Teacher::from_scene(s)))
            .unwrap()
    };
    let (mut sim, mut ctrl) = (start(&sc), start(&bare));
    for _ in 0..ticks {
        sim.step().unwrap();
        ctrl.step().unwrap();
    }
    (sc, sim, ctrl)
}

#[test]
fn lateral_inhibition_resolves_into_salt_and_pepper_and_the_hes1_knockout_lifts_it() {
    let (sc, mut sim, mut ctrl) = paired("lateral_inhibition.toml", 300);
    let t = sim.cells();
    let d = sim.perturbation_distance(&t);
    let dll1 = sc.gene_index("DLL1").unwrap();
    let g = sc.genes.len();
    let x: Vec<f32> = (0..t.ids.len()).map(|i| t.expression[i * g + dll1]).collect();
    // Away from the knockout: about a third of the cells are DLL1-high (1/3 is the
    // densest pattern on a hexagonal sheet), and a cell's DLL1 anticorrelates with its
    // neighbours' mean.
    let positions: Vec<glam::Vec3> = t.positions.iter().map(|p| glam::Vec3::from(*p)).collect();
    let csr = explant_core::neighbours::CellList::new(&positions, sc.contact.radius).neighbours().unwrap();
    let (mut own, mut nb) = (Vec::new(), Vec::new());
    for i in 0..t.ids.len() {
        let list = csr.list(i);
        if d[i] > 30.0 && list.len() >= 3 {
            own.push(f64::from(x[i]));
            nb.push(list.iter().map(|&j| f64::from(x[j as usize])).sum::<f64>() / list.len() as f64);
        }
    }
    let high = own.iter().filter(|&&v| v > 1.0).count() as f64 / own.len() as f64;
    assert!((0.2..0.45).contains(&high), "fraction of DLL1-high cells {high}");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mo, mn) = (mean(&own), mean(&nb));
    let cov: f64 = own.iter().zip(&nb).map(|(a, b)| (a - mo) * (b - mn)).sum();
    let var = |v: &[f64], m: f64| v.iter().map(|a| (a - m).powi(2)).sum::<f64>();
    let r = cov / (var(&own, mo) * var(&nb, mn)).sqrt();
    assert!(r < -0.6, "own vs neighbour DLL1 correlation {r}");
    // Inside the knockout every cell is DLL1-high, against a mixed control.
    let rows = explant_core::effects::effects(&t, &ctrl.cells(), &d, &[0.0, 25.0], g);
    let ko = rows.iter().find(|r| r.group == "perturbed" && r.gene == dll1).unwrap();
    assert!(ko.perturbed_mean > 1.5 && ko.effect > 0.8, "{ko:?}");
}

#[test]
fn the_wound_closes_with_edge_cells_proliferating_under_egf() {
    let (sc, mut sim, mut ctrl) = paired("wound_healing.toml", 360);
    let t = sim.cells();
    let g = sc.genes.len();
    let mki67 = sc.gene_index("MKI67").unwrap();
    let r: Vec<f32> = t.positions.iter().map(|p| ((p[0] - 250.0).powi(2) + (p[1] - 250.0).powi(2)).sqrt()).collect();
    // The ablation emptied r < 80 µm; six hours later cells have moved back in.
    let inside = r.iter().filter(|&&v| v < 80.0).count();
    assert!(inside > 120, "{inside} cells back in the wound after 6 h");
    // The unwounded control keeps its cells there.
    let c = ctrl.cells();
    let inside_control =
        c.positions.iter().filter(|p| ((p[0] - 250.0).powi(2) + (p[1] - 250.0).powi(2)).sqrt() < 80.0).count();
    assert!(inside_control > 200, "{inside_control}");
    let mean = |sel: &dyn Fn(usize) -> bool| {
        let v: Vec<f32> = (0..t.ids.len()).filter(|&i| sel(i)).map(|i| t.expression[i * g + mki67]).collect();
        v.iter().sum::<f32>() / v.len().max(1) as f32
    };
    let near = mean(&|i| r[i] < 120.0);
    let far = mean(&|i| r[i] > 200.0);
    assert!(near > 0.5 && near > 3.0 * far, "MKI67 near the wound {near}, far {far}");
    // Cells divided (the count recovers from the ablation).
    let after_ablation = sim.recording().pseudobulk.iter().find(|p| p.tick > 0).map(|p| p.cells).unwrap();
    assert!(t.ids.len() > after_ablation, "{} cells now, {after_ablation} after the ablation", t.ids.len());
}

#[test]
fn the_ifngr1_knockout_silences_the_tumour_and_recruits_fewer_t_cells() {
    let (sc, mut sim, mut ctrl) = paired("tumour_immune.toml", 600);
    let (t, c) = (sim.cells(), ctrl.cells());
    let g = sc.genes.len();
    let tumour = sc.cell_type_index("tumour").unwrap() as u32;
    let tcell = sc.cell_type_index("tcell").unwrap() as u32;
    let mean = |tab: &explant_core::CellTable, ty: u32, gene: &str| {
        let k = sc.gene_index(gene).unwrap();
        let v: Vec<f32> =
            (0..tab.ids.len()).filter(|&i| tab.cell_types[i] == ty).map(|i| tab.expression[i * g + k]).collect();
        v.iter().sum::<f32>() / v.len() as f32
    };
    for gene in ["STAT1", "CXCL10", "CD274"] {
        let (ko, wt) = (mean(&t, tumour, gene), mean(&c, tumour, gene));
        assert!(ko < 0.6 * wt, "tumour {gene}: knockout {ko} vs control {wt}");
    }
    // T cells: less activated integrin, and fewer of them inside the nest.
    let (ko, wt) = (mean(&t, tcell, "ITGAL"), mean(&c, tcell, "ITGAL"));
    assert!(ko < 0.8 * wt, "T-cell ITGAL: knockout {ko} vs control {wt}");
    let in_nest = |tab: &explant_core::CellTable| {
        (0..tab.ids.len())
            .filter(|&i| {
                let p = tab.positions[i];
                tab.cell_types[i] == tcell && ((p[0] - 350.0).powi(2) + (p[1] - 350.0).powi(2)).sqrt() < 120.0
            })
            .count()
    };
    assert!(in_nest(&t) < in_nest(&c), "T cells in the nest: knockout {} vs control {}", in_nest(&t), in_nest(&c));
}
