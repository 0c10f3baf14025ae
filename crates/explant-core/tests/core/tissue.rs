//! Tissue generators (disk, ball, box, epithelium; lattice and random packing; regions
//! and mixtures) and the mapping of imported cells onto a scene.

use std::path::Path;

use explant_core::{InitialCells, Simulation, Teacher};
use explant_field::CpuDiffusion;
use explant_scene::{LoadedScene, Scene};

fn scene(grid: &str, tissue: &str) -> Result<Scene, String> {
    let text = format!(
        r#"
version = 1
name = "tissue"
seed = 3
genes = ["G", "H"]
[time]
dt = 1.0
duration = 1.0
record_every = 1.0
[grid]
size = {grid}
dx = 20.0
[[cell_types]]
name = "basal"
baseline = {{ G = 1.0 }}
[[cell_types]]
name = "suprabasal"
baseline = {{ H = 2.0 }}
[[cell_types]]
name = "immune"
[tissue]
{tissue}
"#
    );
    LoadedScene::from_str(&text, Path::new("tissue.toml")).map(|s| s.scene).map_err(|e| e.to_string())
}

fn cells(s: &Scene) -> explant_core::CellTable {
    Simulation::new(s, Box::new(CpuDiffusion::new()), Box::new(Teacher::from_scene(s))).unwrap().cells()
}

#[test]
fn a_box_holds_exactly_the_requested_cells_inside_it() {
    for (grid, tissue) in [
        (
            "[400.0, 300.0]",
            "shape = \"box\"\nmin = [50.0, 40.0]\nmax = [350.0, 200.0]\ncells = 300\ncell_type = \"basal\"",
        ),
        (
            "[200.0, 200.0, 200.0]",
            "shape = \"box\"\nmin = [20.0, 20.0, 20.0]\nmax = [120.0, 180.0, 100.0]\ncells = 500\ncell_type = \"basal\"",
        ),
        (
            "[400.0, 300.0]",
            "shape = \"box\"\nmin = [50.0, 40.0]\nmax = [350.0, 200.0]\ncells = 300\npacking = \"random\"\ncell_type = \"basal\"",
        ),
    ] {
        let s = scene(grid, tissue).unwrap();
        let t = cells(&s);
        let (lo, hi) = (s.tissue.min.clone().unwrap(), s.tissue.max.clone().unwrap());
        assert_eq!(t.ids.len(), s.tissue.cells.unwrap(), "{tissue}");
        // Lattice jitter is 10 % of the spacing: allow that much outside the box.
        for p in &t.positions {
            for a in 0..lo.len() {
                assert!(p[a] >= lo[a] - 3.0 && p[a] <= hi[a] + 3.0, "{p:?} outside {lo:?}–{hi:?}");
            }
        }
        // Spread over the whole box: the centroid is near the box centre.
        for a in 0..lo.len() {
            let mean = t.positions.iter().map(|p| p[a]).sum::<f32>() / t.ids.len() as f32;
            let mid = 0.5 * (lo[a] + hi[a]);
            assert!((mean - mid).abs() < 0.05 * (hi[a] - lo[a]), "axis {a}: centroid {mean} vs {mid}");
        }
    }
}

#[test]
fn random_packing_fills_a_disk_uniformly() {
    let s = scene(
        "[600.0, 600.0]",
        "centre = [300.0, 300.0]\nradius = 200.0\ncells = 4000\npacking = \"random\"\ncell_type = \"basal\"",
    )
    .unwrap();
    let t = cells(&s);
    assert_eq!(t.ids.len(), 4000);
    let r = |p: &[f32; 3]| ((p[0] - 300.0).powi(2) + (p[1] - 300.0).powi(2)).sqrt();
    assert!(t.positions.iter().all(|p| r(p) <= 200.0));
    // Uniform in area: half the cells lie within r/√2 (binomial sd 32).
    let inner = t.positions.iter().filter(|p| r(p) < 200.0 / 2f32.sqrt()).count();
    assert!((inner as i64 - 2000).abs() < 130, "{inner}");
}

#[test]
fn a_ball_in_3d_has_the_requested_cells() {
    let s = scene(
        "[300.0, 300.0, 300.0]",
        "centre = [150.0, 150.0, 150.0]\nradius = 100.0\ncells = 2000\ncell_type = \"basal\"",
    )
    .unwrap();
    let t = cells(&s);
    assert_eq!(t.ids.len(), 2000);
    let r = |p: &[f32; 3]| p.iter().map(|x| (x - 150.0).powi(2)).sum::<f32>().sqrt();
    assert!(t.positions.iter().all(|p| r(p) < 106.0));
}

#[test]
fn an_epithelium_stacks_its_layers_with_their_types() {
    for (grid, min, max) in [
        ("[400.0, 200.0]", "[0.0, 20.0]", "[400.0, 0.0]"),
        ("[200.0, 200.0, 200.0]", "[0.0, 0.0, 50.0]", "[200.0, 100.0, 0.0]"),
    ] {
        let tissue = format!(
            "shape = \"epithelium\"\nmin = {min}\nmax = {max}\ncell_radius = 5.0\ncell_type = \"basal\"\nlayers = [\n  \
             {{ cell_type = \"basal\", thickness = 10.0 }},\n  {{ cell_type = \"suprabasal\", thickness = 30.0 }},\n]"
        );
        let s = scene(grid, &tissue).unwrap();
        let t = cells(&s);
        let dims = s.dims();
        let base = s.tissue.min.as_ref().unwrap()[dims - 1];
        assert_eq!(Some(t.ids.len()), s.expected_cells(), "{tissue}");
        let (mut basal, mut supra) = (0, 0);
        for (p, &ty) in t.positions.iter().zip(&t.cell_types) {
            let h = p[dims - 1] - base;
            match ty {
                0 => {
                    basal += 1;
                    assert!((-1.0..11.0).contains(&h), "basal cell at height {h}");
                }
                1 => {
                    supra += 1;
                    assert!((9.0..41.0).contains(&h), "suprabasal cell at height {h}");
                }
                _ => panic!("unexpected type {ty}"),
            }
        }
        // One sheet of basal cells, three of suprabasal ones.
        assert_eq!(supra, 3 * basal, "{basal} basal, {supra} suprabasal");
        // Cells start with their type's baseline.
        let i = t.cell_types.iter().position(|&c| c == 1).unwrap();
        assert_eq!(&t.expression[2 * i..2 * i + 2], &[0.0, 2.0]);
    }
}

#[test]
fn a_mixture_region_draws_types_in_the_given_proportions() {
    let s = scene(
        "[600.0, 600.0]",
        "centre = [300.0, 300.0]\nradius = 250.0\ncells = 3000\ncell_type = \"basal\"\nregions = [\n  \
         { mixture = { suprabasal = 3.0, immune = 1.0 }, shape = { kind = \"circle\", centre = [300.0, 300.0], \
         radius = 150.0 } },\n]",
    )
    .unwrap();
    let t = cells(&s);
    let inside: Vec<usize> = (0..t.ids.len())
        .filter(|&i| ((t.positions[i][0] - 300.0).powi(2) + (t.positions[i][1] - 300.0).powi(2)).sqrt() <= 150.0)
        .collect();
    let immune = inside.iter().filter(|&&i| t.cell_types[i] == 2).count() as f64;
    let supra = inside.iter().filter(|&&i| t.cell_types[i] == 1).count() as f64;
    let n = inside.len() as f64;
    assert_eq!(immune + supra, n, "no basal cell inside the mixture region");
    let sd = (n * 0.25 * 0.75).sqrt();
    assert!((immune - 0.25 * n).abs() < 4.0 * sd, "{immune} immune of {n}");
    let outside_basal = (0..t.ids.len()).filter(|i| !inside.contains(i)).all(|i| t.cell_types[i] == 0);
    assert!(outside_basal);
}

#[test]
fn tissue_fields_of_another_shape_and_missing_fields_are_refused() {
    let e = scene(
        "[600.0, 600.0]",
        "centre = [300.0, 300.0]\nradius = 100.0\ncells = 10\nmin = [0.0, 0.0]\ncell_type = \"basal\"",
    )
    .unwrap_err();
    assert!(e.contains("tissue.min") && e.contains("not used by `shape = \"disk\"`"), "{e}");
    let e =
        scene("[600.0, 600.0]", "shape = \"epithelium\"\nmin = [0.0, 0.0]\nmax = [100.0, 0.0]\ncell_type = \"basal\"")
            .unwrap_err();
    assert!(e.contains("tissue.layers"), "{e}");
    let e = scene("[600.0, 600.0]", "shape = \"import\"\ncell_type = \"basal\"").unwrap_err();
    assert!(e.contains("tissue.path"), "{e}");
    let e = scene(
        "[600.0, 600.0]",
        "centre = [300.0, 300.0]\nradius = 100.0\ncells = 10\ncell_type = \"basal\"\nregions = [ { mixture = { imune = 1.0 }, \
         shape = { kind = \"circle\", centre = [300.0, 300.0], radius = 50.0 } } ]",
    )
    .unwrap_err();
    assert!(e.contains("tissue.regions[0].mixture.imune") && e.contains("immune"), "{e}");
}

#[test]
fn imported_cells_are_mapped_by_type_name_and_gene_and_checked_against_the_grid() {
    let s = scene("[600.0, 600.0]", "shape = \"import\"\npath = \"x.h5ad\"\ncell_type_column = \"t\"\nscale = 2.0")
        .unwrap();
    let file = Path::new("x.h5ad");
    let pos = [[10.0, 20.0, 0.0], [100.0, 250.0, 0.0]];
    let types = ["immune".to_string(), "basal".to_string()];
    // Gene G is in the file, H is not: H starts at the type's baseline.
    let x = [5.0, 0.0, 6.0, 0.0];
    let c = InitialCells::from_import(&s, file, &pos, Some(&types), &x, &[true, false]).unwrap();
    assert_eq!(c.cell_types, vec![2, 0]);
    assert_eq!(c.positions[1].to_array(), [200.0, 500.0, 0.0]);
    assert_eq!(c.expression, vec![5.0, 0.0, 6.0, 0.0]);
    let mut sim =
        Simulation::with_cells(&s, Box::new(CpuDiffusion::new()), Box::new(Teacher::from_scene(&s)), Some(c)).unwrap();
    assert_eq!(sim.cells().ids.len(), 2);

    let bad_type = ["immun".to_string(), "basal".to_string()];
    let e = InitialCells::from_import(&s, file, &pos, Some(&bad_type), &x, &[true, false]).unwrap_err().to_string();
    assert!(e.contains("x.h5ad") && e.contains("cell 0") && e.contains("`immun`") && e.contains("immune"), "{e}");
    let far = [[10.0, 20.0, 0.0], [400.0, 20.0, 0.0]];
    let e = InitialCells::from_import(&s, file, &far, Some(&types), &x, &[true, false]).unwrap_err().to_string();
    assert!(e.contains("cell 1") && e.contains("800") && e.contains("tissue.scale"), "{e}");
    // Without the cells, a scene that imports its tissue is refused with a clear message.
    let e = match Simulation::new(&s, Box::new(CpuDiffusion::new()), Box::new(Teacher::from_scene(&s))) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("an import scene ran without its cells"),
    };
    assert!(e.contains("x.h5ad") && e.contains("imports its tissue"), "{e}");
}

#[test]
fn random_packing_keeps_each_layer_in_its_slab_even_when_two_layers_share_a_type() {
    let s = scene(
        "[400.0, 200.0]",
        "shape = \"epithelium\"\nmin = [0.0, 20.0]\nmax = [400.0, 0.0]\npacking = \"random\"\ncell_radius = 5.0\n\
         cell_type = \"basal\"\nlayers = [\n  { cell_type = \"basal\", thickness = 10.0 },\n  \
         { cell_type = \"suprabasal\", thickness = 20.0 },\n  { cell_type = \"basal\", thickness = 10.0 },\n]",
    )
    .unwrap();
    let t = cells(&s);
    assert_eq!(Some(t.ids.len()), s.expected_cells());
    // Basal cells at 20–30 µm and 50–60 µm, suprabasal between; none elsewhere.
    let (mut low, mut high) = (0, 0);
    for (p, &ty) in t.positions.iter().zip(&t.cell_types) {
        let y = p[1];
        match ty {
            0 if (20.0..=30.0).contains(&y) => low += 1,
            0 if (50.0..=60.0).contains(&y) => high += 1,
            1 => assert!((30.0..=50.0).contains(&y), "suprabasal at {y}"),
            _ => panic!("type {ty} at {y}"),
        }
    }
    assert_eq!(low, high, "the two basal layers have one sheet each");
    assert!(low > 10);
}
