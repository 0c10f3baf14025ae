//! Channel clamps: a run whose signals are held at its control's values responds as the
//! control does, channel by channel.

use std::path::Path;
use std::sync::Arc;

use explant_core::{CellTable, Channel, Simulation, Teacher};
use explant_field::CpuDiffusion;
use explant_scene::{LoadedScene, Scene};

/// 400 cells: type `a` (left half) secretes ligand `L` through gene `S`; `T` responds to
/// the sensed `L`, to the neighbours' mean of the contact gene `H`, and to the number of
/// `a` neighbours; `S` drives `H` in the same cell. Knocking `S` out in the `a` cells
/// (`extra`) reaches the others only through sensing: less `L` on the grid, less `H` on
/// their `a` neighbours.
fn scene(extra: &str) -> Scene {
    let text = format!(
        r#"
version = 1
name = "clamp"
seed = 11
genes = ["S", "R", "H", "T"]
[time]
dt = 0.5
duration = 30.0
record_every = 10.0
[grid]
size = [400.0, 400.0]
dx = 20.0
[[ligands]]
name = "L"
diffusion = 100.0
decay = 0.05
secreted_by = "S"
export_rate = 10.0
receptor = "R"
[contact]
genes = ["H"]
radius = 15.0
[[cell_types]]
name = "a"
baseline = {{ S = 1.0, R = 1.0, H = 1.0 }}
bias = {{ S = 4.0 }}
[[cell_types]]
name = "b"
baseline = {{ R = 1.0 }}
[tissue]
centre = [200.0, 200.0]
radius = 150.0
cells = 400
cell_type = "b"
regions = [ {{ cell_type = "a", shape = {{ kind = "box", min = [0.0, 0.0], max = [200.0, 400.0] }} }} ]
[teacher]
degradation = 0.05
default_max_rate = 0.1
bias = -1.0
edges = [
  {{ source = "ligand:L", target = "T", weight = 2.0 }},
  {{ source = "contact:H", target = "T", weight = 1.5 }},
  {{ source = "neighbours:a", target = "T", weight = 0.3 }},
  {{ source = "gene:S", target = "H", weight = 3.0 }},
]
{extra}
"#
    );
    LoadedScene::from_str(&text, Path::new("clamp.toml")).unwrap_or_else(|e| panic!("{e}")).scene
}

const KNOCKOUT: &str = "[[perturbations]]\nkind = \"knockout\"\ngene = \"S\"\ncell_type = \"a\"";

fn start(s: &Scene) -> Simulation {
    Simulation::new(s, Box::new(CpuDiffusion::new()), Box::new(Teacher::from_scene(s))).unwrap()
}

/// Step `control` and `clamped` to the end, `clamped` holding `channels` at the
/// control's values each tick (the control steps first).
fn run_clamped(control: &mut Simulation, clamped: &mut Simulation, channels: &[Channel]) {
    let all = Channel::all(&scene(""));
    for _ in 0..control.total_ticks() {
        control.step().unwrap();
        clamped.clamp_channels(channels, Arc::new(control.channel_values(&all))).unwrap();
        clamped.step().unwrap();
    }
}

fn run(sim: &mut Simulation) {
    for _ in 0..sim.total_ticks() {
        sim.step().unwrap();
    }
}

fn control_scene() -> Scene {
    scene("")
}

/// Expression bits of every cell, by id.
fn bits(t: &CellTable) -> Vec<u32> {
    t.expression.iter().map(|v| v.to_bits()).collect()
}

const T: usize = 3;

#[test]
fn the_scene_has_one_channel_per_ligand_contact_gene_and_cell_type() {
    let s = control_scene();
    let names: Vec<String> = Channel::all(&s).iter().map(|c| c.name(&s)).collect();
    assert_eq!(names, ["ligand:L", "contact:H", "neighbours:a", "neighbours:b"]);
    assert_eq!(Channel::parse("contact:H", &s), Ok(Channel::Contact(2)));
    let e = Channel::parse("contact:S", &s).unwrap_err();
    assert!(e.contains("`contact:S`") && e.contains("`ligand:L`"), "{e}");
}

#[test]
fn clamping_every_channel_to_an_identical_run_changes_nothing() {
    // The same perturbed scene twice: the clamp copies each cell's own values back, bit
    // for bit, only if it finds each cell's twin (a wrong row or column would move
    // another cell's or another channel's value in).
    let s = scene(KNOCKOUT);
    let (mut twin, mut clamped, mut free) = (start(&s), start(&s), start(&s));
    run_clamped(&mut twin, &mut clamped, &Channel::all(&s));
    run(&mut free);
    assert_eq!(bits(&clamped.cells()), bits(&free.cells()));
    assert_eq!(clamped.cells(), free.cells());
}

#[test]
fn clamping_every_channel_gives_the_control_response_to_a_perturbation_that_acts_through_sensing() {
    let (c, p) = (control_scene(), scene(KNOCKOUT));
    let (mut control, mut clamped) = (start(&c), start(&p));
    run_clamped(&mut control, &mut clamped, &Channel::all(&p));
    let (mut free, mut control_alone) = (start(&p), start(&c));
    run(&mut free);
    run(&mut control_alone);
    let (ct, cl, fr) = (control.cells(), clamped.cells(), free.cells());
    assert_eq!(ct, control_alone.cells(), "the control is not changed by being read");
    assert_eq!(ct.ids, cl.ids);
    let g = 4;
    let mut unperturbed = 0;
    for i in 0..ct.ids.len() {
        if !cl.perturbed[i] {
            unperturbed += 1;
            assert_eq!(&cl.expression[i * g..(i + 1) * g], &ct.expression[i * g..(i + 1) * g], "cell {}", ct.ids[i]);
        }
        // T reads only signals: even the knocked-out cells respond as in the control.
        assert_eq!(cl.expression[i * g + T].to_bits(), ct.expression[i * g + T].to_bits(), "T of cell {}", ct.ids[i]);
    }
    assert!(unperturbed > 100, "{unperturbed} unperturbed cells");
    // Without the clamp the knockout does reach T in the unperturbed cells.
    let moved = (0..fr.ids.len())
        .filter(|&i| !fr.perturbed[i])
        .map(|i| (fr.expression[i * g + T] - ct.expression[i * g + T]).abs())
        .fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "the knockout moves T by {moved} only: the test would pass without a clamp");
}

#[test]
fn clamping_one_channel_cuts_only_the_effect_along_it() {
    // The knockout reaches T of the `b` cells along two paths: ligand L (everywhere) and
    // contact H (only at the border, from `a` neighbours). Cutting L alone leaves T of the
    // border cells moved (H still differs there) and restores T of `b` cells with no `a`
    // neighbour within the contact radius (bit for bit: nothing else reaches them).
    let (c, p) = (control_scene(), scene(KNOCKOUT));
    let (mut control, mut clamped) = (start(&c), start(&p));
    run_clamped(&mut control, &mut clamped, &[Channel::Ligand(0)]);
    let (ct, cl) = (control.cells(), clamped.cells());
    let g = 4;
    let (mut inner, mut border_moved) = (0, 0);
    for i in 0..ct.ids.len() {
        if ct.cell_types[i] != 1 {
            continue;
        }
        let p = glam::Vec3::from(ct.positions[i]);
        let near_a = (0..ct.ids.len())
            .any(|j| ct.cell_types[j] == 0 && glam::Vec3::from(ct.positions[j]).distance(p) <= 15.0 + 1.0);
        let (a, b) = (cl.expression[i * g + T], ct.expression[i * g + T]);
        if near_a {
            border_moved += usize::from((a - b).abs() > 1e-4);
        } else {
            inner += 1;
            assert_eq!(a.to_bits(), b.to_bits(), "T of inner `b` cell {}", ct.ids[i]);
        }
    }
    assert!(inner > 50, "{inner} inner cells");
    assert!(border_moved > 5, "the contact path still moves T at the border ({border_moved} cells)");
}

#[test]
fn values_of_another_tick_stop_the_run_with_a_clear_error() {
    let s = scene(KNOCKOUT);
    let (mut control, mut clamped) = (start(&s), start(&s));
    control.step().unwrap();
    control.step().unwrap();
    clamped.clamp_channels(&[Channel::Ligand(0)], Arc::new(control.channel_values(&[Channel::Ligand(0)]))).unwrap();
    let e = clamped.step().unwrap_err().to_string();
    assert!(e.contains("tick 1") && e.contains("tick 0") && e.contains("step the control first"), "{e}");
}
