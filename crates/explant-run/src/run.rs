//! One run end to end: the perturbed simulation and its paired control stepped side by
//! side, snapshots at the recording cadence, and every output written through
//! [`RunDir`], also when the simulation fails part way.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use explant_core::{CoreError, ResponseModel, Simulation, Stage};
use explant_io::{CellColour, TissueView, render_png};
use explant_scene::LoadedScene;

use crate::backends::{self, DiffusionChoice};
use crate::manifest::{Manifest, Outputs, Status, fnv1a64};
use crate::outdir::{self, OutDirLock};
use crate::snapshot::write_snapshot;
use crate::tables::{self, write_table};
use crate::{COMMIT, Checkpoint, ModelChoice, RunDir, RunError, RunFile, VERSION};

/// How to run a scene.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The output directory (created; it must be empty or absent unless `force`).
    pub out: PathBuf,
    /// Where diffusion runs.
    pub diffusion: DiffusionChoice,
    /// The response model.
    pub model: ModelChoice,
    /// Worker threads of the model (0: its default); the rayon pool is the caller's.
    pub threads: usize,
    /// Replace the contents of a non-empty output directory.
    pub force: bool,
    /// Skip the paired control of a perturbed scene.
    pub no_control: bool,
    /// Skip `figures/` at the end.
    pub no_figures: bool,
    /// The command line, for the manifest.
    pub command_line: Vec<String>,
    /// A seed and `--set PATH=VALUE` changes applied to the scene first (recorded in the
    /// run's `scene.toml`).
    pub overrides: crate::Overrides,
    /// Write a checkpoint (`checkpoint.explant`) every this many simulated minutes, and
    /// at the end, for `explant resume`.
    pub checkpoint_every: Option<f64>,
}

/// How to resume a run from its checkpoint.
#[derive(Debug, Clone, Default)]
pub struct ResumeOptions {
    /// The run directory.
    pub dir: PathBuf,
    /// A new duration, minutes (to extend a run); else the scene's.
    pub duration: Option<f64>,
    /// The command line, for the manifest.
    pub command_line: Vec<String>,
}

/// What a run tells its caller while it goes.
pub trait Observer {
    /// Something the user should read (a fallback, a warning, what runs).
    fn note(&mut self, _text: &str) {}
    /// The tick loop starts: `total` ticks.
    fn started(&mut self, _total: u64) {}
    /// A tick finished.
    fn progress(&mut self, _tick: u64, _time_min: f64) {}
    /// The tick loop ended (completed or failed).
    fn finished(&mut self) {}
}

/// An observer that ignores everything.
impl Observer for () {}

/// The perturbed simulation and, for a perturbed scene, its paired control: the same
/// scene and seed without perturbations, stepped tick for tick.
pub struct PairedRun {
    /// The simulation of the scene as given.
    pub sim: Simulation,
    /// The paired control, when there is one.
    pub control: Option<Simulation>,
}

impl PairedRun {
    /// Build both simulations with fresh backends; `notes` gains what the user should know
    /// (a GPU fallback, genes an imported tissue lacks).
    ///
    /// # Errors
    ///
    /// When a backend cannot start, the imported tissue does not fit, or the model does not
    /// fit the scene.
    pub fn build(
        scene: &LoadedScene,
        diffusion: DiffusionChoice,
        threads: usize,
        control: bool,
        notes: &mut Vec<String>,
    ) -> Result<Self, RunError> {
        Self::build_with(scene, diffusion, control, &mut || backends::model(scene, threads), notes)
    }

    /// As [`PairedRun::build`], with the response model of each simulation from `model`
    /// (called once for the simulation and once for its control): a model the scene file
    /// does not name, such as a Python callable.
    ///
    /// # Errors
    ///
    /// When a backend cannot start, `model` fails, the imported tissue does not fit, or
    /// the model does not fit the scene.
    pub fn build_with(
        scene: &LoadedScene,
        diffusion: DiffusionChoice,
        control: bool,
        model: &mut dyn FnMut() -> Result<Box<dyn ResponseModel>, RunError>,
        notes: &mut Vec<String>,
    ) -> Result<Self, RunError> {
        let (diffuser, note) = backends::diffusion(diffusion, scene.scene.grid.scheme)?;
        notes.extend(note);
        let first = model()?;
        let (cells, import_notes) = crate::import::imported_cells(scene)?;
        notes.extend(import_notes);
        let sim = Simulation::with_cells(&scene.scene, diffuser, first, cells.clone())?;
        let control = if scene.scene.perturbations.is_empty() || !control {
            None
        } else {
            let mut bare = scene.scene.clone();
            bare.perturbations.clear();
            let (diffuser, _) = backends::diffusion(diffusion, bare.grid.scheme)?;
            Some(Simulation::with_cells(&bare, diffuser, model()?, cells)?)
        };
        let mut run = Self { sim, control };
        run.keep_fields_on_device(notes)?;
        Ok(run)
    }

    /// Keep each simulation's ligand field on its diffusion backend's device between
    /// ticks where the backend offers it (the GPU), with a note.
    fn keep_fields_on_device(&mut self, notes: &mut Vec<String>) -> Result<(), RunError> {
        let on = self.sim.keep_field_on_device(true)?;
        if let Some(c) = self.control.as_mut() {
            c.keep_field_on_device(true)?;
        }
        if on {
            notes.push(
                "the ligand field stays on the GPU between ticks: cells' secretion, uptake, sensing, chemotaxis \
                 and necrosis cross as per-cell values, ligand boluses and sources as per-voxel additions, and \
                 the field comes back only to record, draw or checkpoint it"
                    .into(),
            );
        }
        Ok(())
    }

    /// Both simulations as a checkpoint saved them, with fresh backends.
    ///
    /// # Errors
    ///
    /// When a backend cannot start or a state does not fit the scene.
    pub fn restore(scene: &LoadedScene, checkpoint: &Checkpoint, notes: &mut Vec<String>) -> Result<Self, RunError> {
        Self::restore_with(scene, checkpoint, &mut || backends::model(scene, checkpoint.threads), notes)
    }

    /// As [`PairedRun::restore`], with the response models from `model`.
    ///
    /// # Errors
    ///
    /// When a backend cannot start, `model` fails, or a state does not fit the scene.
    pub fn restore_with(
        scene: &LoadedScene,
        checkpoint: &Checkpoint,
        model: &mut dyn FnMut() -> Result<Box<dyn ResponseModel>, RunError>,
        notes: &mut Vec<String>,
    ) -> Result<Self, RunError> {
        let sc = &scene.scene;
        let (diffuser, note) = backends::diffusion(checkpoint.diffusion, sc.grid.scheme)?;
        notes.extend(note);
        let sim = Simulation::restore(sc, diffuser, model()?, checkpoint.sim.clone())?;
        let control = match &checkpoint.control {
            None => None,
            Some(state) => {
                let mut bare = sc.clone();
                bare.perturbations.clear();
                let (diffuser, _) = backends::diffusion(checkpoint.diffusion, bare.grid.scheme)?;
                Some(Simulation::restore(&bare, diffuser, model()?, state.clone())?)
            }
        };
        let mut run = Self { sim, control };
        run.keep_fields_on_device(notes)?;
        Ok(run)
    }

    /// The checkpoint of both at the current tick.
    fn checkpoint(&mut self, scene: &LoadedScene, plan: &Plan, wall_seconds: f64) -> Result<Checkpoint, RunError> {
        Ok(Checkpoint {
            explant_version: VERSION.into(),
            scene_path: plan.scene_path.clone(),
            scene_text: scene.text.clone(),
            diffusion: plan.diffusion,
            diffusion_backend: self.sim.backend_names().0,
            threads: plan.threads,
            no_figures: plan.no_figures,
            every_ticks: plan.checkpoint_ticks.unwrap_or(0),
            command_line: plan.command_line.clone(),
            wall_seconds,
            sim: self.sim.state()?,
            control: self.control.as_mut().map(Simulation::state).transpose()?,
        })
    }

    /// Record the final state of both when the last tick was not a recording tick (a
    /// duration that is not a multiple of `output.record_every`), so every time series
    /// ends at the end of the run.
    ///
    /// # Errors
    ///
    /// When the final state is not finite (the record stage's check).
    pub fn record_final(&mut self) -> Result<(), Failure> {
        for (sim, in_control) in
            std::iter::once((&mut self.sim, false)).chain(self.control.iter_mut().map(|c| (c, true)))
        {
            let tick = sim.clock().tick;
            if sim.recording().ligand_totals.last().is_none_or(|r| r.0 < tick) {
                sim.record_now().map_err(|e| Failure::new(e, in_control))?;
            }
        }
        Ok(())
    }

    /// One tick of both; the error names which one failed.
    ///
    /// # Errors
    ///
    /// The first simulation error, with the stage that produced it.
    pub fn step(&mut self) -> Result<(), Failure> {
        self.sim.step().map_err(|e| Failure::new(e, false))?;
        if let Some(c) = self.control.as_mut() {
            c.step().map_err(|e| Failure::new(e, true))?;
        }
        Ok(())
    }
}

/// A simulation that stopped: the error, the stage that produced it and whether it was
/// the paired control.
#[derive(Debug)]
pub struct Failure {
    /// The error.
    pub error: CoreError,
    /// The stage that produced it.
    pub stage: Stage,
    /// Whether the paired control failed (else the perturbed run).
    pub in_control: bool,
}

impl Failure {
    pub(crate) fn new(error: CoreError, in_control: bool) -> Self {
        let stage = match &error {
            CoreError::Field(_) => Stage::Diffuse,
            CoreError::Model(_) => Stage::Respond,
            CoreError::TooManyCells { .. } => Stage::Fate,
            CoreError::Clamp(_) => Stage::Sense,
            // Non-finite and runaway values are found by the record stage's check.
            _ => Stage::Record,
        };
        Self { error, stage, in_control }
    }

    /// The stage's name, prefixed with `control ` when the control failed.
    pub fn stage_name(&self) -> String {
        if self.in_control { format!("control {}", self.stage.name()) } else { self.stage.name().to_owned() }
    }
}

/// What [`run`] did.
pub struct RunOutcome {
    /// The run directory.
    pub dir: RunDir,
    /// Every file written, in order.
    pub written: Vec<PathBuf>,
    /// The manifest as written.
    pub manifest: Manifest,
    /// The per-stage time table, for printing.
    pub stage_table: String,
    /// The failure that stopped the simulation, if any (the outputs hold the state up to it).
    pub failure: Option<Failure>,
}

/// What the tick loop and the outputs need, whether a run starts or resumes.
struct Plan {
    /// The scene file the run started from (absolute).
    scene_path: PathBuf,
    /// Where diffusion was asked to run.
    diffusion: DiffusionChoice,
    /// Worker threads of the model.
    threads: usize,
    /// Skip the figures.
    no_figures: bool,
    /// The command line that started the run.
    command_line: Vec<String>,
    /// Checkpoint interval, ticks.
    checkpoint_ticks: Option<u64>,
    /// Wall seconds of the tick loop before this process (a resumed run).
    wall_before: f64,
    /// Ticks resumed from, for the manifest.
    resumed_from: Vec<u64>,
}

/// Run `scene` end to end as `opts` asks and write every output into `opts.out`.
///
/// A failure of the simulation itself (NaN, runaway values, a model error) is not an
/// `Err`: the outputs up to that tick are written, the manifest says where it stopped, and
/// [`RunOutcome::failure`] holds it.
///
/// # Errors
///
/// When the output directory cannot be used, a backend cannot start, or a file cannot be
/// written.
pub fn run(mut scene: LoadedScene, opts: &RunOptions, obs: &mut dyn Observer) -> Result<RunOutcome, RunError> {
    opts.overrides.apply(&mut scene)?;
    opts.model.apply(&mut scene)?;
    let checkpoint_ticks = checkpoint_ticks(opts.checkpoint_every, scene.scene.time.dt)?;
    // Refuse an output directory that may not be written early, but create, lock or clear
    // it only once the backends have loaded, so a refused run leaves nothing behind.
    outdir::check(&opts.out, opts.force, &outdir::scene_inputs(&scene))?;
    let mut notes = Vec::new();
    let mut paired = PairedRun::build(&scene, opts.diffusion, opts.threads, !opts.no_control, &mut notes)?;
    let lock = OutDirLock::take(&opts.out)?;
    let dir = RunDir::new(&opts.out);
    announce(&scene, &paired, &notes, obs);
    let plan = Plan {
        scene_path: std::path::absolute(&scene.path).unwrap_or_else(|_| scene.path.clone()),
        diffusion: opts.diffusion,
        threads: opts.threads,
        no_figures: opts.no_figures,
        command_line: opts.command_line.clone(),
        checkpoint_ticks,
        wall_before: 0.0,
        resumed_from: Vec::new(),
    };
    // A manifest from the start: a run killed part way is still a run directory that
    // `render` and `report` read, and says it did not finish.
    manifest(&paired.sim, paired.control.is_some(), &scene, &plan, Status::Running, 0.0)
        .write(&dir.path(RunFile::Manifest))?;

    let snapshots = dir.path(RunFile::Snapshots);
    std::fs::create_dir_all(&snapshots).map_err(RunError::file("create", &snapshots))?;
    write_snapshot(&mut paired.sim, paired.control.as_mut(), &scene, &dir.snapshot(0))?;
    finish(paired, &scene, &plan, dir, lock, obs)
}

/// Continue the run in `opts.dir` from its latest checkpoint to the end of its scene (or
/// to `opts.duration`), writing every output as the uninterrupted run would have: the
/// same bits in every array and table.
///
/// # Errors
///
/// When the directory is not a run, another process holds it, it has no usable
/// checkpoint (none, damaged, another explant version, another scene than its
/// manifest's), the run failed or completed (without a longer duration), or a file cannot
/// be written.
pub fn resume(opts: &ResumeOptions, obs: &mut dyn Observer) -> Result<RunOutcome, RunError> {
    let dir = RunDir::open(&opts.dir)?;
    let lock = OutDirLock::hold(dir.root())?;
    let manifest_path = dir.path(RunFile::Manifest);
    let previous = Manifest::read(&manifest_path)?;
    let path = dir.path(RunFile::Checkpoint);
    if !path.is_file() {
        let message = match previous.checkpoint_every_ticks {
            Some(every) => format!(
                "it has no `{}` yet: the run stopped before its first checkpoint (tick {every}); run the scene again",
                RunFile::Checkpoint.name()
            ),
            None => format!(
                "it has no `{}`: only a run started with `--checkpoint-every MIN` can be resumed",
                RunFile::Checkpoint.name()
            ),
        };
        return Err(RunError::NotARun { path: dir.root().to_path_buf(), message });
    }
    let ck = Checkpoint::read(&path)?;
    let refuse = |message: String| RunError::Checkpoint { path: path.clone(), message };
    if ck.scene_fnv1a64() != previous.scene_fnv1a64 {
        return Err(refuse(format!(
            "it is of another scene (fingerprint {}) than the run in `{}` (fingerprint {} in its manifest)",
            ck.scene_fnv1a64(),
            dir.root().display(),
            previous.scene_fnv1a64
        )));
    }
    if let Status::Failed { stage, tick, .. } = &previous.status {
        return Err(refuse(format!(
            "the run failed at tick {tick} (stage {stage}); resuming would fail the same way: change the scene and \
             run it again"
        )));
    }
    let mut scene = LoadedScene::from_str(&ck.scene_text, &ck.scene_path).map_err(|e| {
        refuse(format!("its scene no longer loads (files it names may have moved): {}", crate::error_chain(&e)))
    })?;
    let dt = scene.scene.time.dt;
    let at = ck.tick() as f64 * f64::from(dt);
    match opts.duration {
        Some(d) => set_duration(&mut scene, d, at)?,
        None if previous.status.is_completed() => {
            return Err(RunError::Option {
                option: "--duration".into(),
                message: format!(
                    "the run in `{}` is complete ({} min); give a longer `--duration` to extend it",
                    dir.root().display(),
                    scene.scene.time.duration
                ),
            });
        }
        None => {}
    }
    let mut notes = Vec::new();
    let paired = PairedRun::restore(&scene, &ck, &mut notes)?;
    let backend = paired.sim.backend_names().0;
    if backend != ck.diffusion_backend {
        notes.push(format!(
            "diffusion ran on `{}` before the checkpoint and runs on `{backend}` now: the results may differ in the \
             last bits from an uninterrupted run",
            ck.diffusion_backend
        ));
    }
    notes.push(format!("resuming from the checkpoint at tick {} (t = {at} min)", ck.tick()));
    announce(&scene, &paired, &notes, obs);
    let mut resumed_from = previous.resumed_from_ticks.clone();
    resumed_from.push(ck.tick());
    let plan = Plan {
        scene_path: ck.scene_path.clone(),
        diffusion: ck.diffusion,
        threads: ck.threads,
        no_figures: ck.no_figures,
        command_line: ck.command_line.clone(),
        checkpoint_ticks: (ck.every_ticks > 0).then_some(ck.every_ticks),
        wall_before: ck.wall_seconds,
        resumed_from,
    };
    manifest(&paired.sim, paired.control.is_some(), &scene, &plan, Status::Running, ck.wall_seconds)
        .write(&manifest_path)?;
    finish(paired, &scene, &plan, dir, lock, obs)
}

/// A new duration for a resumed run: finite, and not before the checkpoint; the run's copy
/// of the scene records it.
fn set_duration(scene: &mut LoadedScene, duration: f64, at: f64) -> Result<(), RunError> {
    let bad = |message: String| RunError::Option { option: "--duration".into(), message };
    if !duration.is_finite() || duration < at {
        return Err(bad(format!("`{duration}` must be a number of minutes at or after the checkpoint ({at} min)")));
    }
    let mut doc: toml::Table = toml::from_str(&scene.text).map_err(|e| bad(e.to_string()))?;
    let Some(toml::Value::Table(time)) = doc.get_mut("time") else {
        return Err(bad("the scene has no [time] table".into()));
    };
    time.insert("duration".into(), toml::Value::Float(duration));
    let body = toml::to_string(&doc).map_err(|e| bad(e.to_string()))?;
    scene.text = format!("# extended by `explant resume --duration {duration}`\n{body}");
    scene.scene.time.duration = duration as f32;
    scene.scene.validate(&scene.path).map_err(|e| bad(crate::error_chain(&e)))?;
    Ok(())
}

/// `--checkpoint-every` in ticks: a positive, finite number of minutes, rounded to whole
/// ticks (at least one).
fn checkpoint_ticks(every: Option<f64>, dt: f32) -> Result<Option<u64>, RunError> {
    let Some(minutes) = every else { return Ok(None) };
    if !minutes.is_finite() || minutes <= 0.0 {
        return Err(RunError::Option {
            option: "--checkpoint-every".into(),
            message: format!("`{minutes}` must be a positive number of simulated minutes"),
        });
    }
    Ok(Some(((minutes / f64::from(dt)).round() as u64).max(1)))
}

/// The tick loop, the final recording and every output, for a run that starts or
/// resumes with `paired` at its current tick.
fn finish(
    mut paired: PairedRun,
    scene: &LoadedScene,
    plan: &Plan,
    dir: RunDir,
    lock: OutDirLock,
    obs: &mut dyn Observer,
) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let mut failure = step_all(&mut paired, scene, plan, &dir, obs)?;
    obs.finished();
    let wall = plan.wall_before + started.elapsed().as_secs_f64();
    if failure.is_none() {
        // The last checkpoint is of the final state before its closing record, so a
        // longer `--duration` continues the regular recording cadence.
        if plan.checkpoint_ticks.is_some() {
            paired.checkpoint(scene, plan, wall)?.write(&dir.path(RunFile::Checkpoint))?;
        }
        failure = paired.record_final().err();
    }

    let status = match &failure {
        None => Status::Completed,
        Some(f) => Status::Failed {
            stage: f.stage_name(),
            tick: paired.sim.clock().tick,
            message: crate::error_chain(&f.error),
        },
    };
    let mut written = write_outputs(&mut paired, scene, &dir, plan, status, wall)?;
    let manifest = dir.manifest()?;
    // Figures (tissue by cell type, time series, response versus distance) in figures/;
    // the run's data is already safe, so a drawing problem is only a warning.
    if !plan.no_figures {
        match crate::figures::render_figures(dir.root(), &crate::figures::RenderOptions::default()) {
            Ok(mut paths) => written.append(&mut paths),
            Err(e) => obs.note(&format!("warning: figures were not drawn: {}", crate::error_chain(&e))),
        }
    }
    // ParaView files, when the scene asks for them (also only a warning if they fail).
    let encoding = match scene.scene.output.vtk {
        explant_scene::VtkOutput::None => None,
        explant_scene::VtkOutput::Binary => Some(explant_io::VtkEncoding::Binary),
        explant_scene::VtkOutput::Ascii => Some(explant_io::VtkEncoding::Ascii),
    };
    if let Some(encoding) = encoding {
        match crate::export::export_vtk(&dir, true, encoding) {
            Ok(mut done) => written.append(&mut done.files),
            Err(e) => obs.note(&format!("warning: ParaView files were not written: {}", crate::error_chain(&e))),
        }
    }
    let stage_table = stage_table(&paired.sim, wall);
    lock.release();
    Ok(RunOutcome { dir, written, manifest, stage_table, failure })
}

/// Tell the observer what is about to run.
fn announce(scene: &LoadedScene, paired: &PairedRun, notes: &[String], obs: &mut dyn Observer) {
    let sc = &scene.scene;
    let sim = &paired.sim;
    obs.note(&format!(
        "explant {VERSION} ({COMMIT}): scene `{}` — {} cells, {} genes, {} ligands, {}D, {} ticks of {} min",
        sc.name,
        cell_count(sim),
        sc.genes.len(),
        sc.ligands.len(),
        sc.dims(),
        sim.total_ticks(),
        sc.time.dt
    ));
    for note in notes {
        obs.note(&format!("note: {note}"));
    }
    if let Some(note) = explant_core::mechanics_stability_note(sc) {
        obs.note(&format!("note: {note}"));
    }
    if paired.control.is_some() {
        obs.note(&format!(
            "paired control: the same scene and seed without its {} perturbation(s) runs alongside (--no-control to skip)",
            sc.perturbations.len()
        ));
    }
    let (dname, mname) = sim.backend_names();
    obs.note(&format!("diffusion: {dname}\nmodel:     {mname}"));
}

fn cell_count(sim: &Simulation) -> usize {
    sim.world.resource::<explant_core::States>().len()
}

/// Step every planned tick, writing a snapshot at the recording interval and at the
/// scene's extra snapshot times; stop at the first failure.
fn step_all(
    paired: &mut PairedRun,
    scene: &LoadedScene,
    plan: &Plan,
    dir: &RunDir,
    obs: &mut dyn Observer,
) -> Result<Option<Failure>, RunError> {
    let total = paired.sim.total_ticks();
    let interval = scene.scene.record_interval();
    let extra_snapshots = scene.scene.snapshot_ticks();
    let started = Instant::now();
    obs.started(total);
    obs.progress(paired.sim.clock().tick, paired.sim.clock().time());
    while paired.sim.clock().tick < total {
        if let Err(f) = paired.step() {
            return Ok(Some(f));
        }
        let clock = paired.sim.clock();
        obs.progress(clock.tick, clock.time());
        if clock.tick.is_multiple_of(interval) || extra_snapshots.binary_search(&clock.tick).is_ok() {
            write_snapshot(&mut paired.sim, paired.control.as_mut(), scene, &dir.snapshot(clock.tick))?;
        }
        // After the snapshot of the same tick, so a resumed run never lacks one.
        if let Some(every) = plan.checkpoint_ticks
            && clock.tick.is_multiple_of(every)
            && clock.tick < total
        {
            let wall = plan.wall_before + started.elapsed().as_secs_f64();
            paired.checkpoint(scene, plan, wall)?.write(&dir.path(RunFile::Checkpoint))?;
        }
    }
    Ok(None)
}

/// Every output of the run at its current state: the final AnnData, the tables, the
/// picture, the scene copy and the manifest (last, so a run directory with a manifest is
/// complete).
fn write_outputs(
    paired: &mut PairedRun,
    scene: &LoadedScene,
    dir: &RunDir,
    plan: &Plan,
    status: Status,
    wall: f64,
) -> Result<Vec<PathBuf>, RunError> {
    let sc = &scene.scene;
    let mut written = Vec::new();
    let table = |file: RunFile, data: &tables::TableData, written: &mut Vec<PathBuf>| {
        let path = dir.path(file);
        write_table(&path, data).map(|()| written.push(path))
    };

    let h5ad = dir.path(RunFile::Tissue);
    write_snapshot(&mut paired.sim, paired.control.as_mut(), scene, &h5ad)?;
    written.push(h5ad);

    let rec = paired.sim.recording().clone();
    table(RunFile::Timeseries, &tables::timeseries(sc, &rec), &mut written)?;
    if let Some(t) = tables::regions(sc, &rec) {
        table(RunFile::TimeseriesRegions, &t, &mut written)?;
    }
    if let Some(control) = paired.control.as_mut() {
        use explant_core::effects::{effects, response_vs_distance};
        let (cells, ctrl) = (paired.sim.cells(), control.cells());
        let distance = paired.sim.perturbation_distance(&cells);
        let g = sc.genes.len();
        let time = paired.sim.clock().time();
        let rows = effects(&cells, &ctrl, &distance, &sc.output.distance_bands, g);
        table(RunFile::Effects, &tables::effects(sc, time, &rows), &mut written)?;
        let bins = response_vs_distance(&cells, &ctrl, &distance, sc.output.distance_bin, g);
        table(RunFile::ResponseVsDistance, &tables::response_vs_distance(sc, &bins), &mut written)?;
        table(RunFile::TimeseriesControl, &tables::timeseries(sc, control.recording()), &mut written)?;
    }
    table(RunFile::LigandTotals, &tables::ligand_totals(sc, &rec), &mut written)?;

    written.push(draw_picture(&mut paired.sim, scene, dir)?);

    let scene_copy = dir.path(RunFile::Scene);
    std::fs::write(&scene_copy, &scene.text).map_err(RunError::file("write", &scene_copy))?;
    written.push(scene_copy);

    let manifest = manifest(&paired.sim, paired.control.is_some(), scene, plan, status, wall);
    let path = dir.path(RunFile::Manifest);
    manifest.write(&path)?;
    written.push(path);
    Ok(written)
}

/// `tissue.png`: cells coloured by the scene's `output.colour_by_gene` (else by type) over
/// the heat map of `output.heatmap_ligand` (else the first ligand).
fn draw_picture(sim: &mut Simulation, scene: &LoadedScene, dir: &RunDir) -> Result<PathBuf, RunError> {
    sim.sync_field()?;
    let sc = &scene.scene;
    let cells = sim.cells();
    let g = sc.genes.len();
    let ligands = sim.ligands();
    let ligand =
        sc.output.heatmap_ligand.as_ref().and_then(|n| sc.ligands.iter().position(|l| &l.name == n)).unwrap_or(0);
    let field = (ligands.field.channels > 0).then(|| (&ligands.field.grid, ligands.field.channel(ligand)));
    let values: Vec<f32>;
    let gene = sc.output.colour_by_gene.as_ref().and_then(|n| sc.gene_index(n));
    let colour = match gene {
        Some(gi) => {
            values = (0..cells.ids.len()).map(|i| cells.expression[i * g + gi]).collect();
            CellColour::Value(&values)
        }
        None => CellColour::Category(&cells.cell_types),
    };
    let png = dir.path(RunFile::Picture);
    let words = crate::figures::PictureWords::new(
        gene.map(|gi| sc.genes[gi].as_str()),
        field.is_some().then(|| sc.ligands[ligand].name.as_str()),
        Some(sim.clock().time()),
    );
    let type_names = sc.cell_type_names();
    let view = TissueView {
        field,
        positions: &cells.positions,
        radii: &cells.radii,
        colour,
        width_px: sc.output.image_width,
        labels: words.labels(&type_names),
        slice_z: None,
    };
    render_png(&png, &view)?;
    Ok(png)
}

fn manifest(
    sim: &Simulation,
    paired_control: bool,
    scene: &LoadedScene,
    plan: &Plan,
    status: Status,
    wall: f64,
) -> Manifest {
    let sc = &scene.scene;
    let (diffusion_backend, response_model) = sim.backend_names();
    Manifest {
        explant_version: VERSION.into(),
        git_commit: COMMIT.into(),
        command_line: plan.command_line.clone(),
        scene: scene.path.display().to_string(),
        scene_fnv1a64: format!("{:016x}", fnv1a64(scene.text.as_bytes())),
        seed: sc.seed,
        status,
        ticks_completed: sim.clock().tick,
        ticks_planned: sim.total_ticks(),
        dt_min: sc.time.dt,
        time_min: sim.clock().time(),
        cells: cell_count(sim),
        diffusion_backend,
        response_model,
        threads: rayon::current_num_threads(),
        wall_seconds: wall,
        stage_seconds: sim.stage_times().iter().map(|(s, d)| (s.name().to_string(), d.as_secs_f64())).collect(),
        outputs: Outputs::default(),
        paired_control,
        checkpoint_every_ticks: plan.checkpoint_ticks,
        resumed_from_ticks: plan.resumed_from.clone(),
    }
}

/// The per-stage wall times as a table for the terminal.
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
    s
}
