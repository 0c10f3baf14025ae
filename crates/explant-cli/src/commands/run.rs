//! `explant run`: one scene end to end.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use explant_core::{Phase, Simulation, Stage};
use explant_io::{CellColour, FieldSnapshot, ObsColumn, Snapshot, TissueView, render_png, write_h5ad};
use explant_scene::LoadedScene;
use indicatif::{ProgressBar, ProgressStyle};

use crate::backends;
use crate::cli::RunArgs;

/// Version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git commit of this build.
pub const COMMIT: &str = env!("EXPLANT_GIT_COMMIT");

/// Run a scene and write its outputs.
pub fn run(args: RunArgs) -> Result<()> {
    let mut scene = LoadedScene::from_file(&args.scene)?;
    if let Some(model) = &args.model {
        let path = std::path::absolute(model).with_context(|| format!("option `--model`: `{}`", model.display()))?;
        // The run's copy of the scene (scene.toml, the h5ad's `uns`) names the model used.
        let mut doc: toml::Table = toml::from_str(&scene.text).context("re-reading the scene to record `--model`")?;
        let mut table = toml::Table::new();
        table.insert("kind".into(), "torchscript".into());
        table.insert("path".into(), path.display().to_string().into());
        doc.insert("model".into(), toml::Value::Table(table));
        scene.text = format!(
            "# `{}` as run with `--model {}` (the original's comments are not kept)\n{}",
            scene.path.display(),
            path.display(),
            toml::to_string(&doc).context("writing the scene with `--model`")?
        );
        scene.scene.model =
            explant_scene::ModelConfig { kind: explant_scene::ModelSpec::Torchscript, path: Some(path) };
    }
    // Refuse a non-empty output early, but create or clear it only once the backends
    // have loaded, so a refused run leaves nothing behind.
    check_out_dir(&args.out, args.force)?;
    if args.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads)
            .build_global()
            .context("cannot set up the worker threads")?;
    }
    let (diffuser, note) = backends::diffusion(args.diffusion, scene.scene.grid.scheme)?;
    let model = backends::model(&scene, args.teacher, args.threads)?;
    let cells = crate::tissue::imported_cells(&scene)?;
    let mut sim = Simulation::with_cells(&scene.scene, diffuser, model, cells.clone())?;
    // The paired control: the same scene, seed and backends, without perturbations.
    let mut control = if scene.scene.perturbations.is_empty() || args.no_control {
        None
    } else {
        let mut bare = scene.scene.clone();
        bare.perturbations.clear();
        let (diffuser, _) = backends::diffusion(args.diffusion, bare.grid.scheme)?;
        let model = backends::model(&scene, args.teacher, args.threads)?;
        Some(Simulation::with_cells(&bare, diffuser, model, cells)?)
    };
    prepare_out_dir(&args.out)?;
    let (dname, mname) = sim.backend_names();
    let sc = &scene.scene;
    eprintln!(
        "explant {VERSION} ({COMMIT}): scene `{}` — {} cells, {} genes, {} ligands, {}D, {} ticks of {} min",
        sc.name,
        sim.cells().ids.len(),
        sc.genes.len(),
        sc.ligands.len(),
        sc.dims(),
        sim.total_ticks(),
        sc.time.dt
    );
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    // The explicit mechanics step's stability estimate (see explant_core::stages::mechanics).
    let m = &sc.mechanics;
    let reach = 2.0 * sc.tissue.cell_radius;
    let neighbours = if sc.dims() == 3 { 12.0 } else { 6.0 };
    let dt_mech = sc.time.mechanics_dt.unwrap_or(sc.time.dt);
    let limit = 2.0 / (neighbours * 2.0 * m.mobility * (m.repulsion / reach + m.adhesion / (1.25 * reach))).max(1e-30);
    // The estimate is conservative (the stiffness of fully overlapping cells); warn only
    // well beyond it.
    if m.mobility > 0.0 && dt_mech > 2.0 * limit {
        eprintln!(
            "note: the mechanics step ({dt_mech} min) is more than twice the explicit stability estimate ({limit:.3} min) for these \
             forces; displacements are capped at half a radius per step, so packed cells may jitter (set \
             `time.mechanics_dt` or lower `mechanics.repulsion`)"
        );
    }
    if control.is_some() {
        eprintln!(
            "paired control: the same scene and seed without its {} perturbation(s) runs alongside (--no-control to skip)",
            sc.perturbations.len()
        );
    }
    eprintln!("diffusion: {dname}\nmodel:     {mname}");

    let snapshots = args.out.join("snapshots");
    std::fs::create_dir_all(&snapshots).with_context(|| format!("cannot create `{}`", snapshots.display()))?;
    write_snapshot(&mut sim, control.as_mut(), &scene, &snapshots.join(snapshot_name(0)))?;

    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(sim.total_ticks()) };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} ticks  t = {msg} min  elapsed {elapsed}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let interval = sc.record_interval();
    let extra_snapshots = sc.snapshot_ticks();
    let mut failure = None;
    for _ in 0..sim.total_ticks() {
        if let Err(e) = sim.step() {
            failure = Some(e);
            break;
        }
        if let Some(c) = control.as_mut()
            && let Err(e) = c.step()
        {
            failure = Some(e);
            break;
        }
        let clock = sim.clock();
        bar.set_position(clock.tick);
        bar.set_message(format!("{:.1}", clock.time()));
        if clock.tick.is_multiple_of(interval) || extra_snapshots.binary_search(&clock.tick).is_ok() {
            write_snapshot(&mut sim, control.as_mut(), &scene, &snapshots.join(snapshot_name(clock.tick)))?;
        }
    }
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();

    let status = match &failure {
        None => "completed".to_string(),
        Some(e) => format!("failed: {e}"),
    };
    let mut written = write_outputs(&mut sim, control.as_mut(), &scene, &args, &status, wall)?;
    // Figures (tissue by cell type, time series, response versus distance) in figures/;
    // the run's data is already safe, so a drawing problem is only a warning.
    if !args.no_figures {
        match crate::commands::render::render_figures(&args.out, &crate::commands::render::RenderOptions::default()) {
            Ok(mut paths) => written.append(&mut paths),
            Err(e) => eprintln!("warning: figures were not drawn: {e:#}"),
        }
    }
    eprintln!("{}", stage_table(&sim, wall));
    for p in &written {
        println!("wrote {}", p.display());
    }
    if let Some(e) = failure {
        return Err(anyhow::Error::new(e).context(format!(
            "the run stopped at tick {}; results up to then are in `{}`",
            sim.clock().tick,
            args.out.display()
        )));
    }
    Ok(())
}

fn snapshot_name(tick: u64) -> String {
    format!("tick_{tick:07}.h5ad")
}

fn check_out_dir(out: &Path, force: bool) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        bail!("output `{}` exists and is not a directory", out.display());
    }
    let non_empty = std::fs::read_dir(out)
        .with_context(|| format!("cannot read output directory `{}`", out.display()))?
        .next()
        .is_some();
    if non_empty && !force {
        bail!(
            "output directory `{}` is not empty; choose another or pass `--force` to replace its contents",
            out.display()
        );
    }
    Ok(())
}

/// Create the output directory, emptying it first (only reached after `check_out_dir`).
fn prepare_out_dir(out: &Path) -> Result<()> {
    if out.is_dir() {
        for entry in std::fs::read_dir(out)? {
            let p = entry?.path();
            if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) }
                .with_context(|| format!("cannot remove `{}`", p.display()))?;
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create output directory `{}`", out.display()))
}

fn write_snapshot(
    sim: &mut Simulation,
    control: Option<&mut Simulation>,
    scene: &LoadedScene,
    path: &Path,
) -> Result<()> {
    let cells = sim.cells();
    let g = scene.scene.genes.len();
    let distance = if scene.scene.perturbations.is_empty() { Vec::new() } else { sim.perturbation_distance(&cells) };
    let control_x = control.map(|c| explant_core::effects::aligned_control(&cells, &c.cells(), g));
    let clock = sim.clock();
    let sc = &scene.scene;
    let ligand_names = sc.ligand_names();
    let ligands = sim.ligands();
    let parents: Vec<i64> = cells.parents.iter().map(|&p| if p == u64::MAX { -1 } else { p as i64 }).collect();
    let phase_names: Vec<String> = ["cycling", "apoptotic", "necrotic"].map(String::from).to_vec();
    let phases: Vec<u32> = cells
        .phases
        .iter()
        .map(|p| match p {
            Phase::Cycling => 0,
            Phase::Apoptotic => 1,
            Phase::Necrotic => 2,
        })
        .collect();
    let mut extra = vec![
        ObsColumn::Int { name: "parent", values: &parents },
        ObsColumn::Category { name: "phase", categories: &phase_names, codes: &phases },
        ObsColumn::Float { name: "radius", values: &cells.radii },
    ];
    if !distance.is_empty() {
        extra.push(ObsColumn::Float { name: "distance_to_perturbation", values: &distance });
    }
    let layers: Vec<(&str, &[f32])> = control_x.iter().map(|x| ("control", x.as_slice())).collect();
    let snap = Snapshot {
        genes: &sc.genes,
        cell_type_names: &sc.cell_type_names(),
        cell_ids: &cells.ids,
        cell_types: &cells.cell_types,
        generations: &cells.generations,
        perturbed: &cells.perturbed,
        positions: &cells.positions,
        dims: sc.dims(),
        expression: &cells.expression,
        tick: clock.tick,
        time_min: clock.time(),
        scene_toml: &scene.text,
        explant_version: VERSION,
        fields: Some(FieldSnapshot { names: &ligand_names, grid: &ligands.field.grid, data: &ligands.field.data }),
        extra_obs: &extra,
        layers: &layers,
    };
    write_h5ad(path, &snap)?;
    Ok(())
}

/// Pseudobulk time series by cell type as CSV.
fn timeseries_csv(sc: &explant_scene::Scene, rec: &explant_core::Recording) -> String {
    let mut csv = String::from("tick,time_min,cell_type,cells");
    for g in &sc.genes {
        let _ = write!(csv, ",{g}");
    }
    csv.push('\n');
    for row in &rec.pseudobulk {
        let _ = write!(csv, "{},{},{},{}", row.tick, row.time, sc.cell_types[row.cell_type as usize].name, row.cells);
        for v in &row.mean {
            let _ = write!(csv, ",{v}");
        }
        csv.push('\n');
    }
    csv
}

fn write_file(path: PathBuf, text: String, written: &mut Vec<PathBuf>) -> Result<()> {
    std::fs::write(&path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
    written.push(path);
    Ok(())
}

/// `effects.csv` and `response_vs_distance.csv` from the perturbed run and its control.
fn write_effects(
    sim: &mut Simulation,
    control: &mut Simulation,
    sc: &explant_scene::Scene,
    out: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    use explant_core::effects::{effects, response_vs_distance};
    let (cells, ctrl) = (sim.cells(), control.cells());
    let distance = sim.perturbation_distance(&cells);
    let g = sc.genes.len();
    let time = sim.clock().time();
    let mut csv =
        String::from("time_min,group,distance_from_um,distance_to_um,cells,gene,perturbed_mean,control_mean,effect\n");
    for r in effects(&cells, &ctrl, &distance, &sc.output.distance_bands, g) {
        let _ = writeln!(
            csv,
            "{time},{},{},{},{},{},{},{},{}",
            r.group, r.from, r.to, r.cells, sc.genes[r.gene], r.perturbed_mean, r.control_mean, r.effect
        );
    }
    write_file(out.join("effects.csv"), csv, written)?;
    let mut csv = String::from("distance_um,cells");
    for name in &sc.genes {
        let _ = write!(csv, ",effect_{name}");
    }
    for name in &sc.genes {
        let _ = write!(csv, ",abs_effect_{name}");
    }
    csv.push('\n');
    for b in response_vs_distance(&cells, &ctrl, &distance, sc.output.distance_bin, g) {
        let _ = write!(csv, "{},{}", b.distance, b.cells);
        for v in b.effect.iter().chain(&b.magnitude) {
            let _ = write!(csv, ",{v}");
        }
        csv.push('\n');
    }
    write_file(out.join("response_vs_distance.csv"), csv, written)?;
    write_file(out.join("timeseries_control.csv"), timeseries_csv(sc, control.recording()), written)
}

fn write_outputs(
    sim: &mut Simulation,
    mut control: Option<&mut Simulation>,
    scene: &LoadedScene,
    args: &RunArgs,
    status: &str,
    wall: f64,
) -> Result<Vec<PathBuf>> {
    let sc = &scene.scene;
    let out = &args.out;
    let mut written = Vec::new();

    let h5ad = out.join("tissue.h5ad");
    write_snapshot(sim, control.as_deref_mut(), scene, &h5ad)?;
    written.push(h5ad);

    // Pseudobulk time series by cell type.
    let rec = sim.recording().clone();
    write_file(out.join("timeseries.csv"), timeseries_csv(sc, &rec), &mut written)?;
    if !rec.regions.is_empty() {
        let mut csv = String::from("tick,time_min,region,cell_type,cells");
        for g in &sc.genes {
            let _ = write!(csv, ",{g}");
        }
        csv.push('\n');
        for r in &rec.regional {
            let row = &r.row;
            let _ = write!(
                csv,
                "{},{},{},{},{}",
                row.tick, row.time, rec.regions[r.region].name, sc.cell_types[row.cell_type as usize].name, row.cells
            );
            for v in &row.mean {
                let _ = write!(csv, ",{v}");
            }
            csv.push('\n');
        }
        write_file(out.join("timeseries_regions.csv"), csv, &mut written)?;
    }
    if let Some(c) = control.as_deref_mut() {
        write_effects(sim, c, sc, out, &mut written)?;
    }

    let mut csv = String::from("tick,time_min");
    for l in &sc.ligands {
        let _ = write!(csv, ",{}", l.name);
    }
    csv.push('\n');
    for (tick, time, totals) in &rec.ligand_totals {
        let _ = write!(csv, "{tick},{time}");
        for v in totals {
            let _ = write!(csv, ",{v}");
        }
        csv.push('\n');
    }
    let lt = out.join("ligand_totals.csv");
    std::fs::write(&lt, csv).with_context(|| format!("cannot write `{}`", lt.display()))?;
    written.push(lt);

    // The picture: cells coloured by a gene (or type) over a ligand's heat map.
    let cells = sim.cells();
    let g = sc.genes.len();
    let ligands = sim.ligands();
    let ligand =
        sc.output.heatmap_ligand.as_ref().and_then(|n| sc.ligands.iter().position(|l| &l.name == n)).unwrap_or(0);
    let field = (ligands.field.channels > 0).then(|| (&ligands.field.grid, ligands.field.channel(ligand)));
    let values: Vec<f32>;
    let colour = match sc.output.colour_by_gene.as_ref().and_then(|n| sc.gene_index(n)) {
        Some(gi) => {
            values = (0..cells.ids.len()).map(|i| cells.expression[i * g + gi]).collect();
            CellColour::Value(&values)
        }
        None => CellColour::Category(&cells.cell_types),
    };
    let png = out.join("tissue.png");
    render_png(
        &png,
        &TissueView {
            field,
            positions: &cells.positions,
            radii: &cells.radii,
            colour,
            width_px: sc.output.image_width,
        },
    )?;
    written.push(png);

    let scene_copy = out.join("scene.toml");
    std::fs::write(&scene_copy, &scene.text).with_context(|| format!("cannot write `{}`", scene_copy.display()))?;
    written.push(scene_copy);

    let (dname, mname) = sim.backend_names();
    let manifest = serde_json::json!({
        "explant_version": VERSION,
        "git_commit": COMMIT,
        "command_line": std::env::args().collect::<Vec<_>>(),
        "scene": scene.path.display().to_string(),
        "scene_fnv1a64": format!("{:016x}", fnv1a64(scene.text.as_bytes())),
        "seed": sc.seed,
        "status": status,
        "ticks_completed": sim.clock().tick,
        "ticks_planned": sim.total_ticks(),
        "dt_min": sc.time.dt,
        "time_min": sim.clock().time(),
        "cells": cells.ids.len(),
        "diffusion_backend": dname,
        "response_model": mname,
        "threads": rayon::current_num_threads(),
        "wall_seconds": wall,
        "stage_seconds": sim.stage_times().iter().map(|(s, d)| (s.name().to_string(), serde_json::json!(d.as_secs_f64()))).collect::<serde_json::Map<_, _>>(),
        "outputs": {
            "final": "tissue.h5ad",
            "snapshots": "snapshots/",
            "picture": "tissue.png",
            "timeseries": "timeseries.csv",
            "ligand_totals": "ligand_totals.csv",
        },
        "paired_control": control.is_some(),
    });
    let mf = out.join("manifest.json");
    std::fs::write(&mf, serde_json::to_string_pretty(&manifest)? + "\n")
        .with_context(|| format!("cannot write `{}`", mf.display()))?;
    written.push(mf);
    Ok(written)
}

fn stage_table(sim: &Simulation, wall: f64) -> String {
    let times = sim.stage_times();
    let ticks = sim.clock().tick.max(1) as f64;
    let mut s = String::from("stage        total (s)   per tick (ms)   share\n");
    let sum: f64 = times.iter().map(|(_, d)| d.as_secs_f64()).sum();
    for (stage, d) in &times {
        let secs = d.as_secs_f64();
        let _ = writeln!(
            s,
            "{:<12} {:>9.3}   {:>13.3}   {:>4.1}%",
            stage.name(),
            secs,
            1e3 * secs / ticks,
            100.0 * secs / sum.max(1e-12)
        );
    }
    let _ = write!(s, "{:<12} {:>9.3}   (wall, including progress and snapshots)", "all", wall);
    debug_assert_eq!(times.len(), Stage::ALL.len());
    s
}

/// FNV-1a, 64 bit: a stable fingerprint of the scene text for the manifest.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}
