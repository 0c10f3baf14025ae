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

/// A fresh temporary folder for one test.
fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("explant-sweep-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A spec over the shipped lateral-inhibition scene (genes DLL1, NOTCH1, HES1; cell
/// type `epithelium`; no ligands, no named regions; one perturbation) with `extra`.
fn lateral_spec(dir: &Path, extra: &str) -> std::path::PathBuf {
    let scene = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes/lateral_inhibition.toml");
    let path = dir.join("spec.toml");
    std::fs::write(&path, format!("version = 1\nscene = {:?}\n{extra}", scene.display().to_string())).unwrap();
    path
}

#[test]
fn a_bad_readout_is_refused_by_prepare_naming_the_field_and_value_and_nothing_is_written() {
    let dir = temp("readouts");
    let out = dir.join("out");
    let cases = [
        ("kind = \"pseudobulk\"\nname = \"x\"\ngene = \"HES2\"", "readouts[0].gene", "`HES2` is not a gene", "HES1"),
        (
            "kind = \"pseudobulk\"\nname = \"x\"\ngene = \"HES1\"\ncell_type = \"epithelial\"",
            "readouts[0].cell_type",
            "`epithelial` is not a cell type",
            "epithelium",
        ),
        (
            "kind = \"pseudobulk\"\nname = \"x\"\ngene = \"HES1\"\nregion = \"core\"",
            "readouts[0].region",
            "`core` is not a region",
            "",
        ),
        ("kind = \"cell_count\"\nname = \"x\"\ncell_type = \"Epithelium\"", "readouts[0].cell_type", "", "epithelium"),
        ("kind = \"ligand_total\"\nname = \"x\"\nligand = \"WNT3A\"", "readouts[0].ligand", "(ligands: none)", ""),
        ("kind = \"response\"\nname = \"x\"\ngene = \"NOTCH\"\ndistance = 10.0", "readouts[0].gene", "", "NOTCH1"),
        ("kind = \"response\"\nname = \"x\"\ngene = \"HES1\"\ndistance = nan", "readouts[0].distance", "`NaN`", ""),
    ];
    for (readout, field, fragment, suggestion) in cases {
        let spec = lateral_spec(&dir, &format!("[[readouts]]\n{readout}\n"));
        let e = explant_sweep::runner::prepare(&spec, &out).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("spec.toml") && e.contains(&format!("field `{field}`")) && e.contains(fragment), "{e}");
        if !suggestion.is_empty() {
            assert!(e.contains(&format!("did you mean `{suggestion}`?")), "{e}");
        }
        assert!(!out.exists(), "a refused spec left `{}` behind ({e})", out.display());
    }
    // Checked against every point's scene, not only the base scene: a parameter that
    // removes the perturbations leaves `response` nothing to measure.
    let spec = lateral_spec(
        &dir,
        "[[parameters]]\npath = \"perturbations\"\nvalues = [[]]\n\
         [[readouts]]\nkind = \"response\"\nname = \"r\"\ngene = \"HES1\"\ndistance = 10.0\n",
    );
    let e = explant_sweep::runner::prepare(&spec, &out).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.contains("field `readouts[0].kind`") && e.contains("point run_00001") && e.contains("perturbations"),
        "{e}"
    );
    assert!(!out.exists());
    // The same readouts, spelt right, are accepted.
    let spec = lateral_spec(
        &dir,
        "[[readouts]]\nkind = \"pseudobulk\"\nname = \"h\"\ngene = \"HES1\"\ncell_type = \"epithelium\"\n\
         [[readouts]]\nkind = \"response\"\nname = \"r\"\ngene = \"HES1\"\ndistance = 10.0\n",
    );
    let prepared = explant_sweep::runner::prepare(&spec, &out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(prepared.points.len(), 1);
    drop(prepared);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_refused_spec_leaves_no_folder_and_the_corrected_spec_then_takes_it() {
    let dir = temp("refused");
    let out = dir.join("new/parent/out");
    // The second value is refused by the scene's validation (a negative decay).
    let bad = lateral_spec(&dir, "[[parameters]]\npath = \"teacher.degradation\"\nvalues = [0.05, -1.0]\n");
    let e = explant_sweep::runner::prepare(&bad, &out).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("run_00002"), "{e}");
    assert!(!dir.join("new").exists(), "a refused spec left a folder behind");
    let good = lateral_spec(&dir, "[[parameters]]\npath = \"teacher.degradation\"\nvalues = [0.05, 0.1]\n");
    let prepared = explant_sweep::runner::prepare(&good, &out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(prepared.points.len(), 2);
    assert!(out.join("scenes/run_00002.toml").exists() && out.join("points.csv").exists());
    drop(prepared);
    // A different spec into it is refused and changes nothing there.
    let before: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    let other = lateral_spec(&dir, "[[parameters]]\npath = \"teacher.degradation\"\nvalues = [0.2]\n");
    let e = explant_sweep::runner::prepare(&other, &out).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("holds a different sweep"), "{e}");
    let after: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after);
    assert!(std::fs::read_to_string(out.join("sweep.toml")).unwrap().contains("0.1"), "the first spec's copy stays");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_folder_that_holds_something_else_is_refused_and_left_as_it_was() {
    let dir = temp("foreign");
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let spec = lateral_spec(&dir, "");
    let e = explant_sweep::runner::prepare(&spec, &dir).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("holds no sweep") && e.contains("choose a new or empty `--out`"), "{e}");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["notes.txt", "spec.toml"], "nothing added, nothing removed");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_sweep_at_a_time_holds_a_sweep_folder() {
    let dir = temp("lock");
    let out = dir.join("out");
    let spec = lateral_spec(&dir, "");
    let first = explant_sweep::runner::prepare(&spec, &out).unwrap_or_else(|e| panic!("{e}"));
    let e = explant_sweep::runner::prepare(&spec, &out).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("another `explant sweep` is using") && e.contains("out"), "{e}");
    let e = explant_sweep::runner::collect(&spec, &out).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("another `explant sweep` is using"), "collect too: {e}");
    assert!(out.join("sweep.toml").exists(), "the refused sweep removed nothing");
    drop(first);
    let again = explant_sweep::runner::prepare(&spec, &out).unwrap_or_else(|e| panic!("{e}"));
    drop(again);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_cluster_section_is_optional_and_refuses_zero_naming_the_field() {
    let s = spec(HEAD).unwrap();
    assert_eq!((s.cluster.runtime_min, s.cluster.mem_mb), (None, None));
    let s = spec(&format!("{HEAD}[cluster]\nruntime_min = 5\nmem_mb = 2048\n")).unwrap();
    assert_eq!((s.cluster.runtime_min, s.cluster.mem_mb), (Some(5), Some(2048)));
    let e = spec(&format!("{HEAD}[cluster]\nruntime_min = 0\n")).unwrap_err();
    assert!(e.contains("sweep.toml") && e.contains("cluster.runtime_min") && e.contains("`0`"), "{e}");
    let e = spec(&format!("{HEAD}[cluster]\nmem_mb = 0\n")).unwrap_err();
    assert!(e.contains("cluster.mem_mb"), "{e}");
    let e = spec(&format!("{HEAD}[cluster]\nruntime = 5\n")).unwrap_err();
    assert!(e.contains("runtime"), "{e}");
}

#[test]
fn a_runs_memory_estimate_has_a_floor_and_grows_with_cells_fields_and_a_paired_control() {
    use explant_sweep::snakemake::{FLOOR_MB, memory_mb};
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes/default.toml");
    let scene = explant_scene::LoadedScene::from_file(&base).unwrap().scene;
    let mut small = scene.clone();
    small.tissue.max_cells = Some(10);
    small.perturbations.clear();
    assert_eq!(memory_mb(&small), FLOOR_MB, "a tiny run asks for the floor");
    let mut big = small.clone();
    big.tissue.max_cells = Some(1_000_000);
    // 10⁶ cells at ≥ 612 bytes each, twice over (the safety factor): over 1.2 GB.
    let one = memory_mb(&big);
    assert!(one > 1224 && one.is_multiple_of(64), "{one}");
    let perturbed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes/tumour_immune.toml");
    let mut paired = big.clone();
    paired.perturbations = explant_scene::LoadedScene::from_file(&perturbed).unwrap().scene.perturbations;
    assert!(!paired.perturbations.is_empty());
    assert!(memory_mb(&paired) > one + 1000, "a paired control doubles the cells");
    let mut fine = big.clone();
    fine.grid.dx /= 4.0;
    assert!(memory_mb(&fine) >= one, "a finer grid needs no less");
}
