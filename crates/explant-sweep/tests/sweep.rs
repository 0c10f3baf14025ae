//! Spec parsing, design expansion, scene paths and readouts.

use std::path::Path;

use explant_sweep::{Design, SweepSpec, plan, readouts, scene_text, set_path};

fn spec(text: &str) -> Result<SweepSpec, String> {
    SweepSpec::from_str(text, Path::new("sweep.toml")).map_err(|e| e.to_string())
}

const HEAD: &str = "version = 1\nscene = \"s.toml\"\n";

#[test]
fn a_grid_is_every_combination_times_every_seed_in_a_fixed_order() {
    let s = spec(&format!(
        "{HEAD}seeds = [5, 6]\n[[parameters]]\npath = \"a\"\nvalues = [1, 2, 3]\n\
         [[parameters]]\npath = \"b\"\nfrom = 1.0\nto = 100.0\nsteps = 3\nlog = true\n"
    ))
    .unwrap();
    let points = plan(&s, 0);
    assert_eq!(points.len(), 3 * 3 * 2);
    assert_eq!(points[0].id(), "run_00001");
    assert_eq!(points[0].values[0], toml::Value::Integer(1));
    assert!((points[0].values[1].as_float().unwrap() - 1.0).abs() < 1e-12);
    assert_eq!((points[0].seed, points[1].seed), (5, 6));
    // The log range is 1, 10, 100 (to rounding); the first parameter varies slowest.
    let b: Vec<f64> = points.iter().step_by(2).take(3).map(|p| p.values[1].as_float().unwrap()).collect();
    assert!((b[1] - 10.0).abs() < 1e-9 && (b[2] - 100.0).abs() < 1e-9, "{b:?}");
    assert_eq!(points[6].values[0], toml::Value::Integer(2));
}

#[test]
fn a_latin_hypercube_puts_one_point_in_every_stratum_of_every_parameter() {
    let text = |seed: u64| {
        format!(
            "{HEAD}design = \"latin_hypercube\"\nsamples = 20\nsampling_seed = {seed}\n\
             [[parameters]]\npath = \"a\"\nfrom = 0.0\nto = 1.0\n[[parameters]]\npath = \"b\"\nfrom = 10.0\nto = 30.0\n"
        )
    };
    let s = spec(&text(3)).unwrap();
    assert_eq!(s.design, Design::LatinHypercube);
    let points = plan(&s, 9);
    assert_eq!(points.len(), 20);
    for (k, (lo, hi)) in [(0.0, 1.0), (10.0, 30.0)].into_iter().enumerate() {
        let mut strata: Vec<usize> = points
            .iter()
            .map(|p| (((p.values[k].as_float().unwrap() - lo) / (hi - lo)) * 20.0).floor() as usize)
            .collect();
        strata.sort_unstable();
        assert_eq!(strata, (0..20).collect::<Vec<_>>(), "parameter {k}");
    }
    // Deterministic for the sampling seed; seeds default to the scene's.
    assert_eq!(plan(&s, 9), points);
    assert!(points.iter().all(|p| p.seed == 9));
    assert_ne!(plan(&spec(&text(4)).unwrap(), 9), points);
}

#[test]
fn random_samples_stay_in_range_and_draw_list_items() {
    let s = spec(&format!(
        "{HEAD}design = \"random\"\nsamples = 200\nreplicates = 2\n[[parameters]]\npath = \"a\"\nfrom = 1.0\nto = 1000.0\nlog = true\n\
         [[parameters]]\npath = \"g\"\nvalues = [\"X\", \"Y\"]\n"
    ))
    .unwrap();
    let points = plan(&s, 100);
    assert_eq!(points.len(), 400);
    assert_eq!((points[0].seed, points[1].seed), (100, 101));
    let a: Vec<f64> = points.iter().map(|p| p.values[0].as_float().unwrap()).collect();
    assert!(a.iter().all(|v| (1.0..=1000.0).contains(v)));
    // Log-uniform: about half below √1000 ≈ 31.6.
    let below = a.iter().filter(|&&v| v < 31.62).count();
    assert!((150..250).contains(&below), "{below}");
    assert!(points.iter().any(|p| p.values[1].as_str() == Some("X")));
    assert!(points.iter().any(|p| p.values[1].as_str() == Some("Y")));
}

#[test]
fn bad_specs_name_the_field() {
    let e = spec(&format!("{HEAD}[[parameters]]\npath = \"a\"\n")).unwrap_err();
    assert!(e.contains("parameters[0].values"), "{e}");
    let e = spec(&format!("{HEAD}[[parameters]]\npath = \"a\"\nfrom = 1.0\nto = 2.0\n")).unwrap_err();
    assert!(e.contains("parameters[0].steps"), "{e}");
    let e = spec(&format!("{HEAD}design = \"random\"\n[[parameters]]\npath = \"a\"\nvalues = [1]\n")).unwrap_err();
    assert!(e.contains("samples"), "{e}");
    let e = spec(&format!(
        "{HEAD}[[readouts]]\nkind = \"cell_count\"\nname = \"n\"\n[[readouts]]\nkind = \"cell_count\"\nname = \"n\"\n"
    ))
    .unwrap_err();
    assert!(e.contains("readouts[1].name"), "{e}");
    let e = spec(&format!("{HEAD}replicatez = 2\n")).unwrap_err();
    assert!(e.contains("replicatez"), "{e}");
}

#[test]
fn paths_reach_tables_named_items_and_indices() {
    let mut doc: toml::Table = toml::from_str(
        "seed = 1\n[time]\ndt = 0.5\n[[ligands]]\nname = \"WNT3A\"\ndiffusion = 200.0\n\
         [[perturbations]]\nkind = \"knockout\"\ngene = \"HES1\"\n",
    )
    .unwrap();
    set_path(&mut doc, "ligands.WNT3A.diffusion", toml::Value::Integer(50)).unwrap();
    assert_eq!(doc["ligands"][0]["diffusion"], toml::Value::Float(50.0), "an integer keeps the float type");
    set_path(&mut doc, "perturbations[0].gene", toml::Value::String("DLL1".into())).unwrap();
    assert_eq!(doc["perturbations"][0]["gene"].as_str(), Some("DLL1"));
    set_path(&mut doc, "time.mechanics_dt", toml::Value::Float(1.0)).unwrap();
    assert_eq!(doc["time"]["mechanics_dt"], toml::Value::Float(1.0));
    let e = set_path(&mut doc, "ligands.WNT3.diffusion", toml::Value::Float(1.0)).unwrap_err();
    assert!(e.contains("no item named `WNT3`") && e.contains("WNT3A"), "{e}");
    let e = set_path(&mut doc, "tme.dt", toml::Value::Float(1.0)).unwrap_err();
    assert!(e.contains("`tme` does not exist") && e.contains("time"), "{e}");
    let e = set_path(&mut doc, "perturbations[3].gene", toml::Value::Float(1.0)).unwrap_err();
    assert!(e.contains("index 3") && e.contains("1 items"), "{e}");
}

#[test]
fn a_point_scene_is_valid_with_absolute_paths_and_its_seed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes");
    let base = dir.join("default.toml");
    let text = std::fs::read_to_string(&base).unwrap();
    let s = spec(&format!("{HEAD}seeds = [42]\n[[parameters]]\npath = \"ligands.WNT3A.decay\"\nvalues = [0.05]\n"))
        .unwrap();
    let p = &plan(&s, 7)[0];
    let out = scene_text(&s, &text, &base, p).unwrap();
    let doc: toml::Table = toml::from_str(&out).unwrap();
    assert_eq!(doc["seed"].as_integer(), Some(42));
    assert_eq!(doc["ligands"][0]["decay"].as_float(), Some(0.05));
    let model = doc["model"]["path"].as_str().unwrap();
    assert!(Path::new(model).is_absolute() && model.ends_with("models/default.pt"), "{model}");
    // A value the scene refuses is reported with the point.
    let bad = spec(&format!("{HEAD}[[parameters]]\npath = \"ligands.WNT3A.decay\"\nvalues = [-1.0]\n")).unwrap();
    let e = scene_text(&bad, &text, &base, &plan(&bad, 7)[0]).unwrap_err().to_string();
    assert!(e.contains("run_00001") && e.contains("ligands[0].decay"), "{e}");
}

#[test]
fn readouts_come_from_the_run_tables() {
    let dir = std::env::temp_dir().join(format!("explant-sweep-readouts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("timeseries.csv"),
        "tick,time_min,cell_type,cells,A,B\n0,0,x,10,1,0\n0,0,y,30,3,0\n10,5,x,10,2,0\n10,5,y,30,4,1\n",
    )
    .unwrap();
    std::fs::write(dir.join("ligand_totals.csv"), "tick,time_min,L\n0,0,1.5\n10,5,2.5\n").unwrap();
    std::fs::write(
        dir.join("response_vs_distance.csv"),
        "distance_um,cells,effect_A,abs_effect_A\n10,5,-0.5,0.5\n30,4,-0.1,0.1\n",
    )
    .unwrap();
    let s = spec(&format!(
        "{HEAD}[[readouts]]\nkind = \"pseudobulk\"\nname = \"a_all\"\ngene = \"A\"\n\
         [[readouts]]\nkind = \"pseudobulk\"\nname = \"a_x\"\ngene = \"A\"\ncell_type = \"x\"\n\
         [[readouts]]\nkind = \"cell_count\"\nname = \"n\"\n\
         [[readouts]]\nkind = \"ligand_total\"\nname = \"l\"\nligand = \"L\"\n\
         [[readouts]]\nkind = \"response\"\nname = \"r\"\ngene = \"A\"\ndistance = 28.0\n"
    ))
    .unwrap();
    let v = readouts(&s, &dir).unwrap();
    // Final tick: A = (10·2 + 30·4)/40 = 3.5 over all cells, 2 in type x.
    assert_eq!(v, vec![3.5, 2.0, 40.0, 2.5, -0.1]);
    let missing = spec(&format!("{HEAD}[[readouts]]\nkind = \"pseudobulk\"\nname = \"c\"\ngene = \"C\"\n")).unwrap();
    let e = readouts(&missing, &dir).unwrap_err().to_string();
    assert!(e.contains("no column `C`") && e.contains("timeseries.csv"), "{e}");
    // A truncated row is refused, not indexed past its end.
    std::fs::write(dir.join("ligand_totals.csv"), "tick,time_min,L\n0,0,1.5\n10,5\n").unwrap();
    let e = readouts(&s, &dir).unwrap_err().to_string();
    assert!(e.contains("ligand_totals.csv` line 3: 2 fields where the header has 3"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_shipped_sweep_spec_expands_into_valid_scenes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes/sweeps");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let s = SweepSpec::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let base = s.scene_path(&path);
        let loaded = explant_scene::LoadedScene::from_file(&base).unwrap_or_else(|e| panic!("{e}"));
        let points = plan(&s, loaded.scene.seed);
        assert!(!points.is_empty());
        for p in &points {
            scene_text(&s, &loaded.text, &base, p).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        n += 1;
    }
    assert!(n >= 1);
}
