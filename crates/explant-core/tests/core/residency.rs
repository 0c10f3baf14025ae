//! A ligand field kept on the diffusion backend's device between ticks
//! (`Simulation::keep_field_on_device`) gives the very bits of one kept on the host.
//!
//! The device here is `explant_field::Detached`: the host implicit solver stepping its
//! own copy of the field, with the reference exchange and sample. Its arithmetic is the
//! host's, so any difference is a fault of the engine's residency (a stale copy read, an
//! edit lost, a ledger summed in another order), which these tests would see as a
//! mismatch in a single bit. The GPU's own arithmetic is checked in `explant-gpu`'s tests
//! and the CLI's GPU-against-CPU run.

use std::path::Path;

use explant_core::{CellTable, Extras, ModelSignature, ResponseInput, ResponseModel, Simulation, Teacher};
use explant_field::{CpuDiffusion, Detached, Scheme};
use explant_scene::{LoadedScene, Scene};

fn shipped(name: &str) -> Scene {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes").join(name);
    let mut sc = LoadedScene::from_file(&path).unwrap_or_else(|e| panic!("{e}")).scene;
    sc.grid.scheme = Scheme::Implicit;
    sc
}

/// The scene's teacher, plus a secretion output (`0.05 × expression of the first gene`
/// into every ligand) so that the respond stage releases onto the grid.
struct Releasing(Teacher);

impl ResponseModel for Releasing {
    fn name(&self) -> String {
        "teacher releasing secretion".into()
    }
    fn signature(&self) -> &ModelSignature {
        self.0.signature()
    }
    fn rates(&mut self, input: &ResponseInput<'_>, rates: &mut [f32]) -> Result<(), explant_core::ModelError> {
        self.0.rates(input, rates)
    }
    fn extras(&self) -> Extras {
        Extras { secretion: true, fate: false }
    }
    fn respond(
        &mut self,
        input: &ResponseInput<'_>,
        rates: &mut [f32],
        secretion: &mut [f32],
        _fate: &mut [f32],
    ) -> Result<(), explant_core::ModelError> {
        self.0.rates(input, rates)?;
        let g = rates.len() / input.cells.max(1);
        let nl = secretion.len() / input.cells.max(1);
        for i in 0..input.cells {
            for c in 0..nl {
                secretion[i * nl + c] = 0.05 * input.expression[i * g];
            }
        }
        Ok(())
    }
}

fn model(sc: &Scene, releasing: bool) -> Box<dyn ResponseModel> {
    let t = Teacher::from_scene(sc);
    if releasing { Box::new(Releasing(t)) } else { Box::new(t) }
}

/// A run's end state: its cells, the field's bits, the ledger's and the recorded totals'.
type End = (CellTable, Vec<u32>, Vec<u64>, Vec<u64>);

/// Run `sc` for `ticks` with the field on the host and with it on the (detached)
/// device; return both end states.
fn both(sc: &Scene, ticks: u64, releasing: bool) -> [End; 2] {
    let scheme = sc.grid.scheme;
    let mut host = Simulation::new(sc, Box::new(CpuDiffusion::with_scheme(scheme)), model(sc, releasing)).unwrap();
    assert!(!host.keep_field_on_device(true).unwrap(), "the plain CPU solver keeps no device copy");
    let mut dev =
        Simulation::new(sc, Box::new(Detached::new(CpuDiffusion::with_scheme(scheme))), model(sc, releasing)).unwrap();
    assert!(dev.keep_field_on_device(true).unwrap(), "the detached solver offers its copy");
    for _ in 0..ticks {
        host.step().unwrap();
        dev.step().unwrap();
    }
    assert!(dev.field_home().on_device());
    dev.sync_field().unwrap();
    [&mut host, &mut dev].map(|s| {
        let field: Vec<u32> = s.ligands().field.data.iter().map(|v| v.to_bits()).collect();
        let exchanged: Vec<u64> = s.ligands().exchanged.iter().map(|v| v.to_bits()).collect();
        let totals: Vec<u64> =
            s.recording().ligand_totals.iter().flat_map(|r| r.2.iter().map(|v| v.to_bits())).collect();
        (s.cells(), field, exchanged, totals)
    })
}

fn assert_same(name: &str, [host, dev]: [End; 2]) {
    assert!(host.0.ids.len() > 10, "{name}: too few cells to mean anything");
    assert!(host.1.iter().any(|&b| f32::from_bits(b) != 0.0), "{name}: an empty field proves nothing");
    assert!(host.0 == dev.0, "{name}: the cells differ");
    assert!(host.1 == dev.1, "{name}: the fields differ");
    assert_eq!(host.2, dev.2, "{name}: the exchange ledgers differ");
    assert_eq!(host.3, dev.3, "{name}: the recorded ligand totals differ");
}

#[test]
fn shipped_scenes_give_the_same_bits_with_the_field_on_the_device() {
    // wound_healing: a steady source (a host edit every tick) and chemotaxis (a host read
    // every tick); tumour_immune: chemotaxis gated by a gene, a knockout; the morphogen
    // flag (a Fixed face) and the signalling panel: secretion, uptake and contact only.
    for (name, ticks) in [
        ("wound_healing.toml", 25),
        ("tumour_immune.toml", 25),
        ("morphogen_flag.toml", 65),
        ("signalling_panel.toml", 25),
    ] {
        assert_same(name, both(&shipped(name), ticks, false));
    }
}

/// `scenes/physicell_compare.toml` cut to a 300 µm box of 500 cells, with one more
/// `(from, to)` replacement in its text.
fn small_physicell(extra: (&str, &str)) -> Scene {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes/physicell_compare.toml");
    let mut text = std::fs::read_to_string(path).unwrap();
    for (from, to) in [
        ("size = [1500.0, 1500.0, 1500.0]", "size = [300.0, 300.0, 300.0]"),
        ("[750.0, 750.0, 750.0]", "[150.0, 150.0, 150.0]"),
        ("radius = 250.0", "radius = 100.0"),
        ("cells = 18300", "cells = 500"),
        extra,
    ] {
        assert!(text.contains(from), "{from}");
        text = text.replace(from, to);
    }
    LoadedScene::from_str(&text, Path::new("small.toml")).unwrap_or_else(|e| panic!("{e}")).scene
}

#[test]
fn necrosis_and_model_secretion_read_and_write_the_field_through_the_host_copy() {
    // The PhysiCell-like scene, cut to a small 3D box: oxygen uptake, necrosis where it is
    // low, chemotaxis, a Fixed boundary; and the model releasing secretion.
    let sc = small_physicell(("below = 5.0, rate = 0.00277", "below = 37.99, rate = 0.5"));
    assert_same("physicell_compare (small)", both(&sc, 30, true));
}

#[test]
fn a_bolus_and_a_receptor_block_are_applied_to_the_current_copy() {
    let l = shipped("signalling_panel.toml").ligands[0].name.clone();
    let extra = format!(
        "[[perturbations]]\nkind = \"bolus\"\nligand = \"{l}\"\nvalue = 3.0\nstart = 5.0\n\
         region = {{ kind = \"circle\", centre = [250.0, 250.0], radius = 80.0 }}\n\
         [[perturbations]]\nkind = \"receptor_block\"\nligand = \"{l}\"\nfraction = 0.7\nstart = 8.0\n"
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes/signalling_panel.toml");
    let text = format!("{}\n{extra}", std::fs::read_to_string(path).unwrap());
    let mut sc = LoadedScene::from_str(&text, Path::new("bolus.toml")).unwrap_or_else(|e| panic!("{e}")).scene;
    sc.grid.scheme = Scheme::Implicit;
    assert_same("signalling_panel + bolus + receptor block", both(&sc, 20, true));
}

#[test]
fn chemotaxis_necrosis_and_a_steady_source_use_the_field_on_the_device() {
    // The small PhysiCell-like scene: necrosis and chemotaxis at every mechanics step,
    // no ligand perturbation: the field comes back only at the records (tick 0 is
    // recorded before it goes up; 30 ticks of 0.01 min, records every 0.1 min).
    let sc = small_physicell(("record_every = 30.0", "record_every = 0.1"));
    let mut sim =
        Simulation::new(&sc, Box::new(Detached::new(CpuDiffusion::with_scheme(Scheme::Implicit))), model(&sc, false))
            .unwrap();
    assert!(sim.keep_field_on_device(true).unwrap());
    for _ in 0..30 {
        sim.step().unwrap();
    }
    let records = (sim.recording().ligand_totals.len() - 1) as u64;
    assert_eq!(records, 3);
    assert_eq!(sim.field_home().transfers(), (1, records), "only the records bring the field back");

    // The wound: a steady source every tick and chemotaxis, for 25 ticks of 1 min with
    // no record: the field goes up once and never comes back.
    let sc = shipped("wound_healing.toml");
    let mut sim =
        Simulation::new(&sc, Box::new(Detached::new(CpuDiffusion::with_scheme(Scheme::Implicit))), model(&sc, false))
            .unwrap();
    assert!(sim.keep_field_on_device(true).unwrap());
    for _ in 0..25 {
        sim.step().unwrap();
    }
    assert_eq!(sim.recording().ligand_totals.len(), 1, "no record after tick 0");
    assert_eq!(sim.field_home().transfers(), (1, 0));
}

#[test]
fn a_field_on_the_device_crosses_only_when_the_host_reads_it() {
    // Morphogen flag: no stage reads the field on the host, so it goes up once and comes
    // back once per recording (tick 0 is recorded before it goes up).
    let sc = shipped("morphogen_flag.toml");
    let mut sim =
        Simulation::new(&sc, Box::new(Detached::new(CpuDiffusion::with_scheme(Scheme::Implicit))), model(&sc, false))
            .unwrap();
    assert!(sim.keep_field_on_device(true).unwrap());
    let ticks = 95;
    for _ in 0..ticks {
        sim.step().unwrap();
    }
    let records = (sim.recording().ligand_totals.len() - 1) as u64;
    assert_eq!(records, 3, "records at 30, 60 and 90 min");
    assert_eq!(sim.field_home().transfers(), (1, records));
    // Reading it now brings it back once more; reading again costs nothing.
    sim.sync_field().unwrap();
    sim.sync_field().unwrap();
    assert_eq!(sim.field_home().transfers(), (1, records + 1));
    // Turning residency off leaves the field on the host, current.
    assert!(!sim.keep_field_on_device(false).unwrap());
    sim.step().unwrap();
    assert_eq!(sim.field_home().transfers(), (1, records + 1));
}

#[test]
fn the_adi_scheme_on_the_device_takes_the_same_sources_in_the_same_order() {
    // ADI takes what was added since the last step as its sources: the exchanges' changes
    // (listed by the device), the steady source of the wound scene and the bolus of the
    // panel (listed by the host, a damped restart), and the model's release.
    for (name, ticks) in [("wound_healing.toml", 25), ("tumour_immune.toml", 25)] {
        let mut sc = shipped(name);
        sc.grid.scheme = Scheme::Adi;
        assert_same(&format!("{name} (adi)"), both(&sc, ticks, true));
    }
    let l = shipped("signalling_panel.toml").ligands[0].name.clone();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes/signalling_panel.toml");
    let extra = format!("[[perturbations]]\nkind = \"bolus\"\nligand = \"{l}\"\nvalue = 3.0\nstart = 5.0\n");
    let text = format!("{}\n{extra}", std::fs::read_to_string(path).unwrap());
    let mut sc = LoadedScene::from_str(&text, Path::new("bolus.toml")).unwrap_or_else(|e| panic!("{e}")).scene;
    sc.grid.scheme = Scheme::Adi;
    assert_same("signalling_panel + bolus (adi)", both(&sc, 20, true));
}

#[test]
fn split_sources_keep_the_field_on_the_host() {
    let sc = shipped("signalling_panel.toml");
    let mut sim =
        Simulation::new(&sc, Box::new(Detached::new(CpuDiffusion::with_scheme(Scheme::Implicit))), model(&sc, false))
            .unwrap();
    assert!(sim.keep_field_on_device(true).unwrap());
    let channel = explant_core::Channel::LigandFrom(0, 0);
    sim.split_sources(&[channel], Box::new(CpuDiffusion::with_scheme(Scheme::Implicit))).unwrap();
    assert!(!sim.field_home().on_device(), "splitting sources brings the field home");
    assert!(!sim.keep_field_on_device(true).unwrap());
}

#[test]
fn a_saved_state_holds_the_device_copy_of_the_field() {
    // Morphogen flag at tick 7: no record since tick 0, so only the device holds the
    // current field; the saved state must bring it back. A host run restored from it
    // then steps to the bits of the resident run.
    let sc = shipped("morphogen_flag.toml");
    let mut dev =
        Simulation::new(&sc, Box::new(Detached::new(CpuDiffusion::with_scheme(Scheme::Implicit))), model(&sc, false))
            .unwrap();
    assert!(dev.keep_field_on_device(true).unwrap());
    for _ in 0..7 {
        dev.step().unwrap();
    }
    assert!(!dev.field_home().host_current(), "the host copy should be stale before the save");
    let state = dev.state().unwrap();
    let mut host =
        Simulation::restore(&sc, Box::new(CpuDiffusion::with_scheme(Scheme::Implicit)), model(&sc, false), state)
            .unwrap();
    for _ in 0..10 {
        dev.step().unwrap();
        host.step().unwrap();
    }
    dev.sync_field().unwrap();
    let bits = |s: &Simulation| s.ligands().field.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert!(bits(&dev) == bits(&host), "the restored run differs: the saved field was stale");
    assert_eq!(dev.cells(), host.cells());
}
