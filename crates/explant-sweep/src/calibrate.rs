//! Wall-time requests for a sweep's cluster jobs from a short calibration run
//! (`explant sweep SPEC --emit snakemake --calibrate`), instead of one guessed
//! `[cluster] runtime_min` for every point.
//!
//! The calibration builds the most expensive point's simulation here, exactly as a run
//! would (its model, its paired control, its backends), times its start and a few ticks
//! (after one warm-up tick), and scales the time per tick to every point by a work
//! estimate. A point's request, in minutes, is
//!
//! ```text
//! runtime_min = ceil(SAFETY × (start_s + ticks × s_per_tick × work / work_cal × growth) / 60)
//! ```
//!
//! - `work` = simulations × (starting cells × bytes per cell + voxels × ligands × bytes
//!   per voxel), the state a tick streams through, as [`crate::snakemake::memory_mb`]
//!   counts it; the calibrated point has `work_cal`;
//! - `growth` = the most cells the run may hold over its starting cells (the memory
//!   estimate's count): a tissue that doubles costs up to twice as much per tick by the
//!   end, so the request covers the whole run at its largest;
//! - [`SAFETY`] covers what the estimate leaves out (snapshot writing, a busier node).
//!
//! It is a request, not a prediction: a job that asks for too long waits a little longer
//! in a queue; one that asks for too little is killed. The measured numbers are written to
//! `calibration.json` beside the Snakefile, so the requests can be checked.

use std::path::Path;
use std::time::Instant;

use explant_run::{DiffusionChoice, PairedRun};
use explant_scene::memory::bytes_per_cell;
use explant_scene::{LoadedScene, Scene};

use crate::SweepError;
use crate::runner::scene_file;

/// Factor on the extrapolated wall time.
pub const SAFETY: f64 = 2.0;

/// Most ticks timed in a calibration.
pub const MAX_TICKS: u64 = 50;

/// What one calibration measured, and the rule that made the requests.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Calibration {
    /// The point that was run (the one with the most work over its run).
    pub point: String,
    /// Seconds to build its simulations (backends, model, tissue).
    pub start_seconds: f64,
    /// Ticks timed (after one warm-up tick).
    pub ticks_timed: u64,
    /// Mean seconds per tick of those.
    pub seconds_per_tick: f64,
    /// Its [`work`] per tick.
    pub work: f64,
    /// [`SAFETY`].
    pub safety: f64,
    /// More expensive points whose simulation failed while it was timed.
    pub skipped: Vec<Skipped>,
    /// Each point's request, minutes, in the order of the points.
    pub runtime_min: Vec<u64>,
}

/// A point the calibration could not time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    /// The point.
    pub point: String,
    /// Why: its simulation's error.
    pub error: String,
}

/// The work of one tick of `scene` at its start: simulations × (cells × bytes per cell +
/// voxels × ligands × 12 bytes).
pub fn work(scene: &Scene) -> f64 {
    let cells = scene.expected_cells().unwrap_or(0) as f64;
    simulations(scene) * (cells * bytes_per_cell(scene.genes.len()) + field_bytes(scene))
}

/// The most cells over the starting cells (at least 1), as the memory estimate counts them.
pub fn growth(scene: &Scene) -> f64 {
    let start = scene.expected_cells().unwrap_or(0);
    if start == 0 { 1.0 } else { most_cells(scene) as f64 / start as f64 }
}

/// The most cells a run of `scene` may hold: `tissue.max_cells` when set, else twice the
/// starting population (an imported tissue, whose size the scene does not say, counts 0).
pub(crate) fn most_cells(scene: &Scene) -> usize {
    let start = scene.expected_cells().unwrap_or(0);
    scene.tissue.max_cells.unwrap_or(2 * start).max(start)
}

/// 2 for a scene with perturbations (it runs a paired control), else 1.
pub(crate) fn simulations(scene: &Scene) -> f64 {
    if scene.perturbations.is_empty() { 1.0 } else { 2.0 }
}

/// The ligand fields in f32, three copies (the field, its scratch, a readback), bytes.
pub(crate) fn field_bytes(scene: &Scene) -> f64 {
    let voxels: f64 = scene.grid.size.iter().map(|&s| (f64::from(s) / f64::from(scene.grid.dx)).ceil()).product();
    voxels * scene.ligands.len() as f64 * 4.0 * 3.0
}

/// Calibrate on the most expensive of `scenes` (`ids` name them; each point's scene file
/// is in the sweep directory `dir`) for about `budget_s` seconds of ticks (at least two,
/// at most [`MAX_TICKS`] and the run's own), and give every point's wall-time request.
/// A point whose simulation fails while it is timed (a diverging corner of the sweep,
/// which stops early) is skipped for the next most expensive, up to [`CANDIDATES`]
/// points; should all of those fail, the longest of their partial timings is used.
///
/// # Errors
///
/// When a point's simulation cannot be built (every run would fail the same way), or
/// every point tried failed before a tick could be timed.
pub fn calibrate(
    dir: &Path,
    ids: &[String],
    scenes: &[Scene],
    diffusion: DiffusionChoice,
    threads: usize,
    budget_s: f64,
) -> Result<Calibration, SweepError> {
    let total = |s: &Scene| work(s) * s.ticks() as f64 * growth(s);
    let mut order: Vec<usize> = (0..scenes.len().min(ids.len())).collect();
    // The most expensive first (ties: the first point).
    order.sort_by(|&a, &b| total(&scenes[b]).total_cmp(&total(&scenes[a])).then(a.cmp(&b)));
    let mut skipped = Vec::new();
    // The best partial measurement of a point that diverged, should every point tried diverge.
    let mut partial: Option<(usize, Measured)> = None;
    for &pick in order.iter().take(CANDIDATES) {
        let id = &ids[pick];
        match time_point(dir, id, diffusion, threads, budget_s)? {
            (m, None) => return Ok(requests(id, m, &scenes[pick], scenes, skipped)),
            (m, Some(error)) => {
                if m.ticks > 0 && partial.as_ref().is_none_or(|(_, best)| m.ticks > best.ticks) {
                    partial = Some((pick, m));
                }
                skipped.push(Skipped { point: id.clone(), error });
            }
        }
    }
    if let Some((pick, m)) = partial {
        return Ok(requests(&ids[pick], m, &scenes[pick], scenes, skipped));
    }
    let why: Vec<String> = skipped.iter().map(|s| format!("{}: {}", s.point, s.error)).collect();
    Err(SweepError::Stopped(format!(
        "calibration: the simulation of each point tried failed before a tick could be timed ({}); \
         set `[cluster] runtime_min` in the spec instead",
        why.join("; ")
    )))
}

/// Every point's request from the measurement `m` of the point `id` (scene `cal`).
fn requests(id: &str, m: Measured, cal: &Scene, scenes: &[Scene], skipped: Vec<Skipped>) -> Calibration {
    let seconds_per_tick = if m.ticks > 0 { m.seconds / m.ticks as f64 } else { 0.0 };
    let work_cal = work(cal).max(1.0);
    let runtime_min = scenes
        .iter()
        .map(|s| {
            let run_s = m.start_seconds + s.ticks() as f64 * seconds_per_tick * work(s) / work_cal * growth(s);
            ((SAFETY * run_s / 60.0).ceil() as u64).max(1)
        })
        .collect();
    Calibration {
        point: id.to_owned(),
        start_seconds: m.start_seconds,
        ticks_timed: m.ticks,
        seconds_per_tick,
        work: work_cal,
        safety: SAFETY,
        skipped,
        runtime_min,
    }
}

/// Points tried, most expensive first, before a calibration gives up.
pub const CANDIDATES: usize = 3;

/// What timing one point measured.
struct Measured {
    /// Seconds to build its simulations.
    start_seconds: f64,
    /// Ticks timed (after one warm-up tick).
    ticks: u64,
    /// Seconds those ticks took.
    seconds: f64,
}

/// Build the point `id`'s simulations and time ticks for about `budget_s` seconds (at
/// least two, at most [`MAX_TICKS`] and the run's own). A tick that fails ends the
/// timing, and its error comes back beside what was measured until then: a point that
/// diverges stops early, so its run is not the sweep's longest.
fn time_point(
    dir: &Path,
    id: &str,
    diffusion: DiffusionChoice,
    threads: usize,
    budget_s: f64,
) -> Result<(Measured, Option<String>), SweepError> {
    let loaded = LoadedScene::from_file(&scene_file(dir, id))
        .map_err(|error| SweepError::Scene { point: id.to_owned(), error })?;
    let built = Instant::now();
    let mut run = PairedRun::build(&loaded, diffusion, threads, true, &mut Vec::new())
        .map_err(|e| SweepError::Stopped(format!("calibration on point {id}: {}", explant_run::error_chain(&e))))?;
    let mut m = Measured { start_seconds: built.elapsed().as_secs_f64(), ticks: 0, seconds: 0.0 };
    let ticks = loaded.scene.ticks();
    if ticks == 0 {
        return Ok((m, None));
    }
    let failed =
        |f: explant_run::Failure| Some(format!("stage `{}`: {}", f.stage_name(), explant_run::error_chain(&f.error)));
    if let Err(f) = run.step() {
        return Ok((m, failed(f)));
    }
    let clock = Instant::now();
    while m.ticks + 1 < ticks && m.ticks < MAX_TICKS && (m.ticks < 2 || clock.elapsed().as_secs_f64() < budget_s) {
        if let Err(f) = run.step() {
            return Ok((m, failed(f)));
        }
        m.ticks += 1;
        m.seconds = clock.elapsed().as_secs_f64();
    }
    Ok((m, None))
}

impl crate::runner::Prepared {
    /// Calibrate the sweep prepared in `out` ([`calibrate`]): set every point's
    /// `runtime_min` from it and write `out/calibration.json`.
    ///
    /// # Errors
    ///
    /// When the spec sets `[cluster] runtime_min` (the two would disagree: give one),
    /// when the calibration fails, or `calibration.json` cannot be written.
    pub fn calibrate(
        &mut self,
        out: &Path,
        diffusion: DiffusionChoice,
        threads: usize,
        budget_s: f64,
    ) -> Result<Calibration, SweepError> {
        if let Some(minutes) = self.spec.cluster.runtime_min {
            return Err(SweepError::Stopped(format!(
                "the sweep spec sets `[cluster] runtime_min = {minutes}` and `--calibrate` asks to measure it; \
                 give one of the two"
            )));
        }
        let ids: Vec<String> = self.points.iter().map(crate::Point::id).collect();
        let cal = calibrate(out, &ids, &self.scenes, diffusion, threads, budget_s)?;
        let path = out.join("calibration.json");
        let text = serde_json::to_string_pretty(&cal).unwrap_or_default();
        std::fs::write(&path, text + "\n").map_err(SweepError::file("write", &path))?;
        self.runtime_min.clone_from(&cal.runtime_min);
        Ok(cal)
    }
}

#[cfg(test)]
mod tests {
    use super::{growth, work};
    use explant_scene::LoadedScene;
    use std::path::Path;

    fn scene(cells: usize, max_cells: Option<usize>, perturbed: bool) -> explant_scene::Scene {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenes/default.toml");
        let mut s = LoadedScene::from_file(&path).expect("the default scene").scene;
        assert!(s.expected_cells().is_some(), "a scene that states its cells");
        s.perturbations.clear();
        s.tissue.cells = Some(cells);
        s.tissue.max_cells = max_cells;
        if perturbed {
            let other = LoadedScene::from_file(&path.with_file_name("tumour_immune.toml")).unwrap().scene;
            s.perturbations = other.perturbations;
            assert!(!s.perturbations.is_empty());
        }
        s
    }

    #[test]
    fn work_counts_cells_fields_and_the_paired_control_and_growth_the_room_to_grow() {
        let (small, large) = (scene(1000, None, false), scene(4000, None, false));
        let fields = work(&scene(0, None, false));
        assert!(fields > 0.0, "the ligand fields cost something even without cells");
        let per_cell = (work(&small) - fields) / 1000.0;
        assert!(per_cell > 100.0, "a cell is hundreds of bytes of state: {per_cell}");
        assert!((work(&large) - fields - 4.0 * (work(&small) - fields)).abs() < 1e-6 * work(&large));
        assert_eq!(work(&scene(1000, None, true)), 2.0 * work(&small), "a perturbed scene steps its control too");
        assert_eq!(growth(&small), 2.0, "without max_cells a tissue may double");
        assert_eq!(growth(&scene(1000, Some(1500), false)), 1.5);
        assert_eq!(growth(&scene(1000, Some(500), false)), 1.0, "never below the start");
    }
}
