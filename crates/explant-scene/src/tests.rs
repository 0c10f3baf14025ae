use std::path::Path;

use super::*;

const DEFAULT: &str = include_str!("../../../scenes/default.toml");

fn load(text: &str) -> Result<LoadedScene, SceneError> {
    LoadedScene::from_str(text, Path::new("test.toml"))
}

#[test]
fn default_scene_parses_and_validates() {
    let s = load(DEFAULT).unwrap().scene;
    assert_eq!(s.genes.len(), 7);
    assert_eq!(s.dims(), 2);
    assert_eq!(s.ticks(), 480);
    assert_eq!(s.record_interval(), 40);
    assert_eq!(s.ligands[0].receptor, "FZD7");
    assert_eq!(s.model.kind, ModelSpec::Torchscript);
}

#[test]
fn unknown_field_is_rejected_with_line_and_column() {
    let text = DEFAULT.replace("decay = 0.02", "decay = 0.02\ndecayy = 1.0");
    let err = load(&text).unwrap_err().to_string();
    assert!(err.contains("unknown field `decayy`"), "{err}");
    assert!(err.contains("test.toml"), "{err}");
    assert!(err.contains("line"), "{err}");
}

#[test]
fn unknown_gene_names_the_field_and_suggests() {
    let text = DEFAULT.replace("receptor = \"FZD7\"", "receptor = \"FZD8\"");
    let err = load(&text).unwrap_err().to_string();
    assert!(err.contains("ligands[0].receptor"), "{err}");
    assert!(err.contains("unknown gene `FZD8`"), "{err}");
    assert!(err.contains("did you mean `FZD7`"), "{err}");
}

#[test]
fn negative_rates_are_refused() {
    let text = DEFAULT.replace("decay = 0.02", "decay = -0.02");
    let err = load(&text).unwrap_err().to_string();
    assert!(err.contains("ligands[0].decay") && err.contains("`-0.02`"), "{err}");
}

#[test]
fn huge_grid_is_refused_before_allocation() {
    let text = DEFAULT.replace("dx = 10.0              # µm", "dx = 0.001");
    let err = load(&text).unwrap_err().to_string();
    assert!(err.contains("field `grid`") && err.contains("GiB"), "{err}");
}

#[test]
fn wrong_version_is_refused() {
    for bad in ["version = 3", "version = 0"] {
        let text = DEFAULT.replace("version = 1", bad);
        let err = load(&text).unwrap_err().to_string();
        let v = &bad[10..];
        assert!(err.contains("`version`") && err.contains(&format!("`{v}` is not supported")), "{err}");
    }
}

#[test]
fn an_omitted_scheme_is_explicit_in_version_1_and_adi_in_version_2() {
    use explant_field::Scheme;
    assert!(!DEFAULT.contains("scheme"), "the default scene should omit grid.scheme");
    let v2 = DEFAULT.replace("version = 1", "version = 2");
    assert_eq!(load(DEFAULT).unwrap().scene.grid.scheme, Scheme::Explicit);
    assert_eq!(load(&v2).unwrap().scene.grid.scheme, Scheme::Adi);
    // A scheme that is named is kept, in either version.
    for (version, text) in [(1, DEFAULT.to_string()), (2, v2.clone())] {
        for (name, scheme) in [("explicit", Scheme::Explicit), ("implicit", Scheme::Implicit), ("adi", Scheme::Adi)] {
            let named = text.replace("[grid]", &format!("[grid]\nscheme = \"{name}\""));
            assert_eq!(load(&named).unwrap().scene.grid.scheme, scheme, "version {version}, {name}");
        }
    }
}

#[test]
fn perturbation_fields_are_checked() {
    let mut text = DEFAULT.to_string();
    text.push_str("\n[[perturbations]]\nkind = \"knockdown\"\ngene = \"HES1\"\n");
    let err = load(&text).unwrap_err().to_string();
    assert!(err.contains("perturbations[0].fraction"), "{err}");
    let mut ok = DEFAULT.to_string();
    ok.push_str("\n[[perturbations]]\nkind = \"knockdown\"\ngene = \"HES1\"\nfraction = 0.8\nstart = 10.0\nregion = { kind = \"circle\", centre = [300.0, 300.0], radius = 50.0 }\n");
    let s = load(&ok).unwrap().scene;
    assert_eq!(s.perturbations[0].action().unwrap(), PerturbationKind::Knockdown { fraction: 0.8 });
    assert!(!s.perturbations[0].active_at(5.0) && s.perturbations[0].active_at(10.0));
    assert!(s.perturbations[0].region.as_ref().unwrap().contains([320.0, 300.0, 0.0]));
}

#[test]
fn suggestions_only_for_close_names() {
    let names = vec!["AXIN2".to_string(), "LGR5".to_string()];
    assert_eq!(suggest("AXIN3", &names), "; did you mean `AXIN2`?");
    assert_eq!(suggest("COMPLETELYDIFFERENT", &names), "");
}

#[test]
fn absurd_cell_count_is_refused_before_allocation() {
    let text = DEFAULT.replace("cells = 1500", "cells = 100000000000");
    let err = load(&text).unwrap_err().to_string();
    assert!(err.contains("tissue.cells") && err.contains("GiB"), "{err}");
}

#[test]
fn each_perturbation_kind_takes_its_own_fields() {
    let with = |p: &str| {
        let mut text = DEFAULT.to_string();
        text.push_str("\n[[perturbations]]\n");
        text.push_str(p);
        text.push('\n');
        load(&text)
    };
    let err = with("kind = \"bolus\"\nligand = \"WNT3A\"\nvalue = 1.0\ngene = \"HES1\"").unwrap_err().to_string();
    assert!(err.contains("perturbations[0].gene") && err.contains("does not take `gene`"), "{err}");
    let err = with("kind = \"graft\"\ncells = 5\ncell_type = \"organiser\"").unwrap_err().to_string();
    assert!(err.contains("perturbations[0].region") && err.contains("needs `region`"), "{err}");
    let err = with("kind = \"source\"\nligand = \"WNT3\"\nrate = 1.0").unwrap_err().to_string();
    assert!(err.contains("perturbations[0].ligand") && err.contains("WNT3A"), "{err}");
    let err = with("kind = \"receptor_block\"\nligand = \"WNT3A\"\nfraction = 1.5").unwrap_err().to_string();
    assert!(err.contains("perturbations[0].fraction") && err.contains("between 0 and 1"), "{err}");
    let err = with("kind = \"knockout\"\ngene = \"HES1\"\nwhen = { gene = \"HES1\" }").unwrap_err().to_string();
    assert!(err.contains("perturbations[0].when") && err.contains("above"), "{err}");
    let err = with("kind = \"ablation\"\nstart = 500.0").unwrap_err().to_string();
    assert!(err.contains("perturbations[0].start") && err.contains("after the end"), "{err}");
    let ok = with(
        "kind = \"receptor_block\"\nligand = \"WNT3A\"\ncell_type = \"responder\"\nids = [1, 2]\n\
         when = { gene = \"FZD7\", above = 0.5 }",
    )
    .unwrap()
    .scene;
    assert_eq!(ok.perturbations[0].action().unwrap(), PerturbationKind::ReceptorBlock { fraction: 1.0 });
}

#[test]
fn nan_and_inf_anywhere_are_refused_with_the_field() {
    // `bias = nan` in the teacher passed every range check before (NaN compares false).
    for (from, to, field) in [
        ("bias = -3.0", "bias = nan", "teacher.bias"),
        ("weight = 6.0", "weight = nan", "teacher.edges[0].weight"),
        ("decay = 0.02", "decay = inf", "ligands[0].decay"),
        ("decay = 0.02", "decay = -inf", "ligands[0].decay"),
    ] {
        assert!(DEFAULT.contains(from), "the default scene has `{from}`");
        let err = load(&DEFAULT.replacen(from, to, 1)).unwrap_err().to_string();
        assert!(err.contains(&format!("field `{field}`")) && err.contains("is not a finite number"), "{err}");
    }
    assert!(load(DEFAULT).is_ok(), "finite values pass");
}

/// The default scene with one perturbation (a TOML inline body) appended.
fn with_perturbation(body: &str) -> Result<LoadedScene, SceneError> {
    load(&format!("{DEFAULT}\n[[perturbations]]\n{body}\n"))
}

/// The warnings of a scene that must load.
/// Warnings of a scene read as if it were `scenes/test.toml` (so the default scene's
/// `../models/default.pt` is found).
fn warnings_of(text: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes/test.toml");
    LoadedScene::from_str(text, &path).unwrap().warnings().iter().map(ToString::to_string).collect()
}

#[test]
fn a_model_file_that_is_not_there_is_warned_not_refused() {
    let text = DEFAULT.replace("path = \"../models/default.pt\"", "path = \"../models/nowhere.pt\"");
    let w = warnings_of(&text);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("field `model.path`") && w[0].contains("nowhere.pt") && w[0].contains("--teacher"), "{w:?}");
    // A model without its metadata beside it.
    let dir = std::env::temp_dir().join(format!("explant-scene-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("m.pt"), "x").unwrap();
    let text =
        DEFAULT.replace("path = \"../models/default.pt\"", &format!("path = \"{}\"", dir.join("m.pt").display()));
    let w = warnings_of(&text);
    assert!(w.len() == 1 && w[0].contains("m.json"), "{w:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn regions_wholly_outside_the_grid_are_refused_naming_the_field_and_value() {
    // The grid is 600 × 600 µm.
    let err = with_perturbation(
        "kind = \"knockout\"\ngene = \"HES1\"\nregion = { kind = \"circle\", centre = [900.0, 300.0], radius = 50.0 }",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("test.toml") && err.contains("field `perturbations[0].region`"), "{err}");
    assert!(err.contains("centre = [900.0, 300.0], radius = 50") && err.contains("wholly outside the grid"), "{err}");
    let err = with_perturbation(
        "kind = \"source\"\nligand = \"WNT3A\"\nrate = 1.0\nregion = { kind = \"box\", min = [-90.0, 0.0], max = [-10.0, 50.0] }",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("field `perturbations[0].region`") && err.contains("min = [-90.0, 0.0]"), "{err}");
    let output = DEFAULT.replace(
        "[output]\n",
        "[output]\nregions = [{ name = \"far\", shape = { kind = \"circle\", centre = [300.0, 700.0], radius = 50.0 } }]\n",
    );
    let err = load(&output).unwrap_err().to_string();
    assert!(err.contains("field `output.regions[0].shape`") && err.contains("wholly outside"), "{err}");
    let tissue = DEFAULT.replace("centre = [300.0, 300.0], radius = 45.0", "centre = [-300.0, 300.0], radius = 45.0");
    let err = load(&tissue).unwrap_err().to_string();
    assert!(err.contains("field `tissue.regions[0].shape`") && err.contains("wholly outside"), "{err}");
    // A region that reaches into the grid (its centre outside) is allowed.
    with_perturbation(
        "kind = \"knockout\"\ngene = \"HES1\"\nregion = { kind = \"circle\", centre = [620.0, 300.0], radius = 50.0 }",
    )
    .unwrap();
}

#[test]
fn a_nan_region_coordinate_is_refused_with_its_field() {
    let err = with_perturbation(
        "kind = \"knockout\"\ngene = \"HES1\"\nregion = { kind = \"circle\", centre = [nan, 300.0], radius = 50.0 }",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("field `perturbations[0].region.centre[0]`") && err.contains("not a finite number"), "{err}");
}

#[test]
fn windows_that_never_act_are_refused() {
    // 240 min in ticks of 0.5 min: the last tick's stages see t = 239.5.
    let err = with_perturbation("kind = \"ablation\"\nstart = 240.0").unwrap_err().to_string();
    assert!(err.contains("field `perturbations[0].start`") && err.contains("`240`"), "{err}");
    assert!(err.contains("after the end of the run") && err.contains("239.5"), "{err}");
    with_perturbation("kind = \"ablation\"\nstart = 239.5\nids = [3]").unwrap();
    let err = with_perturbation("kind = \"knockout\"\ngene = \"HES1\"\nstart = 50.0\nstop = 20.0").unwrap_err();
    assert!(err.to_string().contains("field `perturbations[0].stop`") && err.to_string().contains("`20`"), "{err}");
    let err = with_perturbation("kind = \"knockout\"\ngene = \"HES1\"\nstart = 50.0\nstop = 50.0").unwrap_err();
    assert!(err.to_string().contains("perturbations[0].stop") && err.to_string().contains("empty"), "{err}");
    // A bolus fires once at its start whatever its stop.
    with_perturbation("kind = \"bolus\"\nligand = \"WNT3A\"\nvalue = 1.0\nstart = 50.0\nstop = 50.0").unwrap();
}

#[test]
fn targets_that_can_never_exist_are_refused() {
    let ghost = DEFAULT.replace("[tissue]\n", "[[cell_types]]\nname = \"ghost\"\n\n[tissue]\n");
    let knock_ghost = "\n[[perturbations]]\nkind = \"knockout\"\ngene = \"HES1\"\ncell_type = \"ghost\"\n";
    let err = load(&format!("{ghost}{knock_ghost}")).unwrap_err().to_string();
    assert!(err.contains("field `perturbations[0].cell_type`") && err.contains("no cell of type `ghost`"), "{err}");
    // Grafted ghosts can be knocked out.
    let graft = "\n[[perturbations]]\nkind = \"graft\"\ncells = 5\ncell_type = \"ghost\"\n\
                 region = { kind = \"circle\", centre = [300.0, 300.0], radius = 30.0 }\n";
    load(&format!("{ghost}{knock_ghost}{graft}")).unwrap();
    // 1500 cells have ids 0–1499 and none divides.
    let err = with_perturbation("kind = \"ablation\"\nids = [1500, 2000]").unwrap_err().to_string();
    assert!(err.contains("field `perturbations[0].ids`") && err.contains("[1500, 2000]"), "{err}");
    with_perturbation("kind = \"ablation\"\nids = [1499, 2000]").unwrap();
    // A condition on an unknown gene, or one no expression meets.
    let err = with_perturbation("kind = \"ablation\"\nwhen = { gene = \"HES2\", above = 0.5 }").unwrap_err();
    assert!(err.to_string().contains("perturbations[0].when.gene") && err.to_string().contains("`HES2`"), "{err}");
    let err = with_perturbation("kind = \"ablation\"\nwhen = { gene = \"HES1\", above = 0.5, below = 0.2 }")
        .unwrap_err()
        .to_string();
    assert!(err.contains("field `perturbations[0].when`") && err.contains("above `0.5` and below `0.2`"), "{err}");
    let err = with_perturbation("kind = \"ablation\"\nwhen = { gene = \"HES1\", below = 0.0 }").unwrap_err();
    assert!(err.to_string().contains("perturbations[0].when.below"), "{err}");
}

#[test]
fn targets_empty_only_at_the_start_are_warned_by_name() {
    assert!(warnings_of(DEFAULT).is_empty(), "{:?}", warnings_of(DEFAULT));
    // The tissue is a disk of radius 260 µm around (300, 300): the corner is empty.
    let corner = "region = { kind = \"box\", min = [0.0, 0.0], max = [40.0, 40.0] }";
    let text = format!("{DEFAULT}\n[[perturbations]]\nkind = \"knockout\"\ngene = \"HES1\"\n{corner}\n");
    let w = warnings_of(&text);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("test.toml") && w[0].contains("field `perturbations[0].region`"), "{w:?}");
    assert!(w[0].contains("min = [0.0, 0.0], max = [40.0, 40.0]") && w[0].contains("no cell at the start"), "{w:?}");
    let output = DEFAULT.replace(
        "[output]\n",
        "[output]\nregions = [{ name = \"corner\", shape = { kind = \"circle\", centre = [10.0, 10.0], radius = 20.0 } }]\n",
    );
    let w = warnings_of(&output);
    assert!(w.len() == 1 && w[0].contains("field `output.regions[0].shape`") && w[0].contains("`corner`"), "{w:?}");
    // Ids not yet born, in a tissue that divides.
    let dividing =
        DEFAULT.replace("bias = { WNT3A = 6.0 }\n", "bias = { WNT3A = 6.0 }\ncycle = { duration = 600.0 }\n");
    let w = warnings_of(&format!("{dividing}\n[[perturbations]]\nkind = \"ablation\"\nids = [1600]\n"));
    assert!(w.len() == 1 && w[0].contains("perturbations[0].ids") && w[0].contains("born"), "{w:?}");
}

#[test]
fn names_hdf5_cannot_hold_are_refused_with_the_character_and_field() {
    for (name, field, says) in [
        ("WNT/3A", "ligands[0].name", "`/`"),
        (".WNT3A", "ligands[0].name", "leading `.`"),
        (".", "ligands[0].name", "`.` alone"),
        ("", "ligands[0].name", "empty"),
        ("WNT\\u00003A", "ligands[0].name", "NUL"),
        ("WNT\\t3A", "ligands[0].name", "U+0009"),
    ] {
        let text = DEFAULT.replacen("name = \"WNT3A\"", &format!("name = \"{name}\""), 1);
        let err = load(&text).unwrap_err().to_string();
        assert!(err.contains(&format!("field `{field}`")) && err.contains(says), "{name}: {err}");
        assert!(err.contains("HDF5"), "{err}");
    }
    let err = load(&DEFAULT.replace("\"HES1\"]", "\"HES/1\"]")).unwrap_err().to_string();
    assert!(err.contains("field `genes[6]`") && err.contains("gene `HES/1`") && err.contains("`/`"), "{err}");
    let err = load(&DEFAULT.replace("name = \"organiser\"", "name = \"org/aniser\"")).unwrap_err().to_string();
    assert!(err.contains("field `cell_types[0].name`") && err.contains("`/`"), "{err}");
}

#[test]
fn max_cells_must_hold_the_starting_tissue() {
    let err = load(&DEFAULT.replace("cells = 1500\n", "cells = 1500\nmax_cells = 1000\n")).unwrap_err().to_string();
    assert!(err.contains("field `tissue.max_cells`") && err.contains("`1000`") && err.contains("1500 cells"), "{err}");
    let err = load(&DEFAULT.replace("cells = 1500\n", "cells = 1500\nmax_cells = 0\n")).unwrap_err().to_string();
    assert!(err.contains("field `tissue.max_cells`") && err.contains("`0`"), "{err}");
    let s = load(&DEFAULT.replace("cells = 1500\n", "cells = 1500\nmax_cells = 4000\n")).unwrap().scene;
    assert_eq!(s.cell_limit(), CellLimit { cells: 4000, origin: memory::LimitOrigin::Scene });
    assert!(s.cell_limit().to_string().contains("`tissue.max_cells` = 4000"));
}

#[test]
fn h5ad_compression_takes_none_gzip_or_a_gzip_level_and_names_a_bad_value() {
    let with = |v: &str| DEFAULT.replace("[output]\n", &format!("[output]\nh5ad_compression = \"{v}\"\n"));
    assert_eq!(load(DEFAULT).unwrap().scene.output.h5ad_gzip_level(), Ok(None), "off by default");
    assert_eq!(load(&with("none")).unwrap().scene.output.h5ad_gzip_level(), Ok(None));
    assert_eq!(load(&with("gzip")).unwrap().scene.output.h5ad_gzip_level(), Ok(Some(4)));
    assert_eq!(load(&with("gzip:9")).unwrap().scene.output.h5ad_gzip_level(), Ok(Some(9)));
    for bad in ["zip", "gzip:0", "gzip:10", "gzip:", "GZIP", "lzf"] {
        let err = load(&with(bad)).unwrap_err().to_string();
        assert!(err.contains("field `output.h5ad_compression`") && err.contains(&format!("`{bad}`")), "{err}");
        assert!(err.contains("level N from 1 to 9"), "{err}");
    }
}
