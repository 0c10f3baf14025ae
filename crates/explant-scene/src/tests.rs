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
    let text = DEFAULT.replace("version = 1", "version = 2");
    let err = load(&text).unwrap_err().to_string();
    assert!(err.contains("`version`") && err.contains("`2`"), "{err}");
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
