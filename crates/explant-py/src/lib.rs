//! explant in Python (`import explant`): scenes, simulations stepped in this process,
//! and any Python callable as the cells' response model.
//!
//! The native module `explant._explant` holds [`Scene`] and [`Simulation`]; the pure-Python
//! package around it (`python/explant/`) adds `read_run`. Everything goes through the run
//! library (`explant_run`), as `explant run` does, so a simulation made here is the one
//! the CLI makes of the same scene and seed. Errors are raised as `explant.ExplantError`
//! with the CLI's message (the error and its causes on one line).
//!
//! Built by maturin (`pip install .` from the repository); TorchScript models need the
//! `torch` feature (libtorch), the GPU diffusion backend the `gpu` feature.

// pyo3's macros expand to `unsafe` blocks of their own; this crate writes none.
#![allow(unsafe_code)]

mod model;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use explant_core::{ModelSignature, ResponseInput, ResponseModel};
use explant_run::{Checkpoint, DiffusionChoice, ModelChoice, Overrides, PairedRun, RunError};
use explant_scene::LoadedScene;
use numpy::{PyArray1, PyArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::model::PyModel;

create_exception!(_explant, ExplantError, PyException, "An explant error, with the message the CLI prints.");

/// An error of the run library as the CLI words it.
fn explant_error(e: &dyn std::error::Error) -> PyErr {
    ExplantError::new_err(explant_run::error_chain(e))
}

fn err(message: impl Into<String>) -> PyErr {
    ExplantError::new_err(message.into())
}

/// A validated scene (`Scene.from_toml(path)`, `Scene.from_dict(d)`), changed with
/// `set(path, value)` as sweeps and `explant run --set` change it.
#[pyclass(module = "explant", name = "Scene")]
#[derive(Clone)]
struct Scene {
    loaded: LoadedScene,
}

#[pymethods]
impl Scene {
    /// Read and validate a scene file.
    #[staticmethod]
    fn from_toml(path: PathBuf) -> PyResult<Self> {
        LoadedScene::from_file(&path).map(|loaded| Self { loaded }).map_err(|e| explant_error(&e))
    }

    /// A scene from a dict with the TOML file's structure. Relative paths in it (a model,
    /// an imported tissue) are read from `base_dir` (default: the working directory).
    #[staticmethod]
    #[pyo3(signature = (d, base_dir=None))]
    fn from_dict(py: Python<'_>, d: &Bound<'_, PyDict>, base_dir: Option<PathBuf>) -> PyResult<Self> {
        let value = to_toml(py, d.as_any())?;
        let toml::Value::Table(table) = value else { return Err(err("a scene dict must be a mapping")) };
        let text =
            toml::to_string(&table).map_err(|e| err(format!("the scene dict cannot be written as TOML: {e}")))?;
        let base = base_dir.unwrap_or_else(|| PathBuf::from("."));
        let path = std::path::absolute(base.join("<dict>.toml")).unwrap_or(base.join("<dict>.toml"));
        LoadedScene::from_str(&text, &path).map(|loaded| Self { loaded }).map_err(|e| explant_error(&e))
    }

    /// Set the value at `path` (`ligands.WNT3A.decay`, `perturbations[0].gene`,
    /// `tissue.cells`: the paths of sweeps and `--set`) and validate the scene again; the
    /// scene is unchanged when the result is refused.
    fn set(&mut self, py: Python<'_>, path: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = to_toml(py, value)?;
        let literal = toml_literal(&value)?;
        let overrides = Overrides { seed: None, set: vec![format!("{path}={literal}")] };
        let mut changed = self.loaded.clone();
        overrides.apply(&mut changed).map_err(|e| explant_error(&e))?;
        self.loaded = changed;
        Ok(())
    }

    /// Validate again and return the scene's warnings (an unstable time step, …) as text.
    fn check(&self) -> PyResult<Vec<String>> {
        self.loaded.scene.validate(&self.loaded.path).map_err(|e| explant_error(&e))?;
        Ok(self.loaded.warnings().iter().map(ToString::to_string).collect())
    }

    /// The scene as TOML text.
    fn to_toml(&self) -> String {
        self.loaded.text.clone()
    }

    /// The scene as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let value: toml::Value = toml::from_str(&self.loaded.text).map_err(|e| err(e.to_string()))?;
        let json = serde_json::to_string(&value).map_err(|e| err(e.to_string()))?;
        py.import("json")?.call_method1("loads", (json,))
    }

    /// The scene's name.
    #[getter]
    fn name(&self) -> String {
        self.loaded.scene.name.clone()
    }

    /// Genes, in the state vector's order.
    #[getter]
    fn genes(&self) -> Vec<String> {
        self.loaded.scene.genes.clone()
    }

    /// Ligands, in the fields' order.
    #[getter]
    fn ligands(&self) -> Vec<String> {
        self.loaded.scene.ligand_names()
    }

    /// Cell types, in the one-hot input's order.
    #[getter]
    fn cell_types(&self) -> Vec<String> {
        self.loaded.scene.cell_type_names()
    }

    /// The file the scene was read from (`<dict>.toml` under its base directory for a dict).
    #[getter]
    fn path(&self) -> PathBuf {
        self.loaded.path.clone()
    }

    fn __repr__(&self) -> String {
        let s = &self.loaded.scene;
        format!(
            "Scene('{}': {} genes, {} ligands, {} cell types, {}D, {} min in ticks of {} min)",
            s.name,
            s.genes.len(),
            s.ligands.len(),
            s.cell_types.len(),
            s.dims(),
            s.time.duration,
            s.time.dt
        )
    }
}

/// A Python value as TOML (through JSON: dicts, lists, str, numbers, bools).
fn to_toml(py: Python<'_>, v: &Bound<'_, PyAny>) -> PyResult<toml::Value> {
    let json: String = py.import("json")?.call_method1("dumps", (v,))?.extract()?;
    let value: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| err(format!("not a value a scene can hold: {e}")))?;
    json_to_toml(&value).ok_or_else(|| err(format!("`{json}` holds a null, which a scene cannot hold")))
}

fn json_to_toml(v: &serde_json::Value) -> Option<toml::Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(a) => toml::Value::Array(a.iter().map(json_to_toml).collect::<Option<_>>()?),
        J::Object(o) => {
            toml::Value::Table(o.iter().map(|(k, v)| Some((k.clone(), json_to_toml(v)?))).collect::<Option<_>>()?)
        }
    })
}

/// A TOML value as the text after `PATH=` in `--set`.
fn toml_literal(v: &toml::Value) -> PyResult<String> {
    let mut table = toml::Table::new();
    table.insert("v".into(), v.clone());
    let text = toml::to_string(&table).map_err(|e| err(e.to_string()))?;
    Ok(text.trim_start_matches("v = ").trim().to_owned())
}

/// Which model a [`Simulation`] uses.
enum ModelKind {
    /// The scene's own `[model]`, or the teacher, or a TorchScript file: built by the run library.
    Library,
    /// A Python callable.
    Python(PyModel),
}

/// A scene stepped in this process: `Simulation(scene, model=None, seed=None, threads=0)`.
///
/// `model` is None (the scene's own `[model]`), `"teacher"` (its mechanistic teacher), a
/// path to a TorchScript `.pt` (needs the `torch` build), or any Python callable (its
/// contract: docs/python.md, "Python models"). A scene with perturbations is stepped beside its paired control, as
/// `explant run` steps it; `perturb()` adds one between steps (and starts the control
/// then, from the same state).
#[pyclass(module = "explant", name = "Simulation", unsendable)]
struct Simulation {
    scene: LoadedScene,
    run: PairedRun,
    model: ModelKind,
    threads: usize,
    diffusion: DiffusionChoice,
    failed: Option<String>,
}

/// The rayon pool is per process: the thread count the first simulation asked for.
static POOL: AtomicU64 = AtomicU64::new(u64::MAX);

fn use_threads(threads: usize) -> PyResult<Option<String>> {
    let asked = threads as u64;
    match POOL.compare_exchange(u64::MAX, asked, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => {
            let (_, note) = explant_run::use_threads(threads).map_err(|e| explant_error(&e))?;
            Ok(note)
        }
        Err(first) if first == asked || threads == 0 => Ok(None),
        Err(first) => Ok(Some(format!(
            "threads={threads}: this process's worker pool was set to {first} thread(s) by its first simulation \
             (results are the same on any thread count)"
        ))),
    }
}

/// `diffusion=`: None is the GPU where this build has the GPU backend and a hardware
/// adapter exists, else the CPU (without the warning `auto` gives in a CPU-only build).
fn parse_diffusion(d: Option<&str>) -> PyResult<DiffusionChoice> {
    let d = d.unwrap_or(if cfg!(feature = "gpu") { "auto" } else { "cpu" });
    match d {
        "auto" => Ok(DiffusionChoice::Auto),
        "cpu" => Ok(DiffusionChoice::Cpu),
        "gpu" => Ok(DiffusionChoice::Gpu),
        other => Err(err(format!("diffusion `{other}`: give \"auto\", \"cpu\" or \"gpu\""))),
    }
}

impl Simulation {
    /// A model factory for the run library: the library's own, or the Python callable shared.
    fn factory<'a>(
        py: Python<'a>,
        model: &'a ModelKind,
        scene: &'a LoadedScene,
        threads: usize,
    ) -> impl FnMut() -> Result<Box<dyn ResponseModel>, RunError> + 'a {
        move || match model {
            ModelKind::Library => explant_run::backends::model(scene, threads),
            ModelKind::Python(m) => Ok(Box::new(m.share(py)) as Box<dyn ResponseModel>),
        }
    }

    fn warn(py: Python<'_>, text: &str) -> PyResult<()> {
        let warnings = py.import("warnings")?;
        warnings.call_method1("warn", (text,))?;
        Ok(())
    }

    fn check_running(&self) -> PyResult<()> {
        match &self.failed {
            Some(why) => Err(err(format!("this simulation stopped earlier ({why}); make a new one"))),
            None => Ok(()),
        }
    }

    /// Step `n` ticks, the GIL released (a Python model takes it back for its call);
    /// Ctrl-C between ticks raises KeyboardInterrupt.
    fn advance(&mut self, py: Python<'_>, n: u64, progress: bool) -> PyResult<()> {
        self.check_running()?;
        let every = (n / 20).max(1);
        let started = std::time::Instant::now();
        let mut k = 0u64;
        while k < n {
            // Ticks in batches of up to 0.1 s on a worker thread, the GIL released (see
            // `explant_run::on_workers`); signals are checked and progress printed between.
            let stop = if progress { ((k / every + 1) * every).min(n) } else { n };
            let run = &mut self.run;
            let (done, result) = py.detach(|| {
                explant_run::on_workers(|| {
                    let batch = std::time::Instant::now();
                    let mut done = 0u64;
                    while k + done < stop {
                        if let Err(f) = run.step() {
                            return (done, Err(f));
                        }
                        done += 1;
                        if batch.elapsed() > std::time::Duration::from_millis(100) {
                            break;
                        }
                    }
                    (done, Ok(()))
                })
            });
            k += done;
            if let Err(f) = result {
                let stage = f.stage_name();
                let why = format!(
                    "the run stopped at tick {} (stage `{stage}`): {}",
                    self.run.sim.clock().tick + 1,
                    explant_run::error_chain(&f.error)
                );
                self.failed = Some(why.clone());
                return Err(err(why));
            }
            py.check_signals()?;
            if progress && (k.is_multiple_of(every) || k == n) {
                let c = self.run.sim.clock();
                eprintln!(
                    "progress: tick {k}/{n} ({:.0}%), t = {} min, {:.1} s elapsed",
                    100.0 * k as f64 / n as f64,
                    f64::from(c.dt) * c.tick as f64,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Ok(())
    }
}

#[pymethods]
impl Simulation {
    #[new]
    #[pyo3(signature = (scene, model=None, seed=None, threads=0, diffusion=None))]
    fn new(
        py: Python<'_>,
        scene: &Scene,
        model: Option<&Bound<'_, PyAny>>,
        seed: Option<u64>,
        threads: usize,
        diffusion: Option<&str>,
    ) -> PyResult<Self> {
        let mut loaded = scene.loaded.clone();
        let diffusion = parse_diffusion(diffusion)?;
        if let Some(note) = use_threads(threads)? {
            Self::warn(py, &note)?;
        }
        Overrides { seed, set: Vec::new() }.apply(&mut loaded).map_err(|e| explant_error(&e))?;
        let kind = match model {
            None => ModelKind::Library,
            Some(m) if m.extract::<String>().is_ok_and(|s| s == "teacher") => {
                ModelChoice::Teacher.apply(&mut loaded).map_err(|e| explant_error(&e))?;
                ModelKind::Library
            }
            Some(m) if m.extract::<PathBuf>().is_ok() && !m.is_callable() => {
                let path: PathBuf = m.extract()?;
                ModelChoice::Torchscript(path).apply(&mut loaded).map_err(|e| explant_error(&e))?;
                ModelKind::Library
            }
            Some(m) => ModelKind::Python(python_model(py, m, &loaded)?),
        };
        let mut notes = Vec::new();
        let run = PairedRun::build_with(
            &loaded,
            diffusion,
            true,
            &mut Self::factory(py, &kind, &loaded, threads),
            &mut notes,
        )
        .map_err(|e| explant_error(&e))?;
        for n in &notes {
            Self::warn(py, n)?;
        }
        Ok(Self { scene: loaded, run, model: kind, threads, diffusion, failed: None })
    }

    /// Step `n` ticks.
    #[pyo3(signature = (n=1))]
    fn step(&mut self, py: Python<'_>, n: u64) -> PyResult<()> {
        self.advance(py, n, false)
    }

    /// Step until `until` minutes (default: the scene's duration); `progress` prints a
    /// line every 5 %. Returns the time reached.
    #[pyo3(signature = (until=None, progress=false))]
    fn run(&mut self, py: Python<'_>, until: Option<f64>, progress: bool) -> PyResult<f64> {
        let c = self.run.sim.clock();
        let dt = f64::from(c.dt);
        let until = until.unwrap_or(f64::from(self.scene.scene.time.duration));
        if !until.is_finite() {
            return Err(err(format!("until={until}: give a time in minutes")));
        }
        let target = (until / dt).round().max(0.0) as u64;
        self.advance(py, target.saturating_sub(c.tick), progress)?;
        Ok(self.time())
    }

    /// Simulated minutes so far.
    #[getter]
    fn time(&self) -> f64 {
        let c = self.run.sim.clock();
        f64::from(c.dt) * c.tick as f64
    }

    /// Ticks so far.
    #[getter]
    fn tick(&self) -> u64 {
        self.run.sim.clock().tick
    }

    /// The scene as it runs now (perturbations added by `perturb()` included).
    #[getter]
    fn scene(&self) -> Scene {
        Scene { loaded: self.scene.clone() }
    }

    /// The tissue now as `anndata.AnnData`, with the layout of a run's `tissue.h5ad`
    /// (written by the same code and read back with anndata).
    fn adata<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "explant-{}-{}.h5ad",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let written = explant_run::write_snapshot(&mut self.run.sim, self.run.control.as_mut(), &self.scene, &path);
        let result = written.map_err(|e| explant_error(&e)).and_then(|()| {
            let ad = py.import("anndata")?.call_method1("read_h5ad", (path.as_os_str(),))?;
            Ok(ad)
        });
        let _ = std::fs::remove_file(&path);
        result
    }

    /// Each ligand's field now, as a NumPy array `[ny, nx]` (2D) or `[nz, ny, nx]` (3D),
    /// amount per µm³, voxel centres at `origin + (index + 0.5) × dx`.
    fn fields<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.run.sim.sync_field().map_err(|e| explant_error(&e))?;
        let ligands = self.run.sim.ligands();
        let f = &ligands.field;
        let g = f.grid;
        let voxels = g.voxels();
        let out = PyDict::new(py);
        for (c, name) in self.scene.scene.ligand_names().iter().enumerate() {
            let values = &f.data[c * voxels..(c + 1) * voxels];
            let array = PyArray1::from_slice(py, values);
            let shape: Vec<usize> = if g.nz > 1 { vec![g.nz, g.ny, g.nx] } else { vec![g.ny, g.nx] };
            out.set_item(name, array.reshape(shape)?)?;
        }
        Ok(out)
    }

    /// Add a perturbation between steps: a dict with the fields of a scene's
    /// `[[perturbations]]` entry (`{"kind": "knockout", "gene": "AXIN2", "cell_type":
    /// "responder"}`; `start` defaults to now). The first one starts the paired control
    /// from the current state, so effects are measured from this tick.
    fn perturb(&mut self, py: Python<'_>, perturbation: &Bound<'_, PyDict>) -> PyResult<()> {
        self.check_running()?;
        let now = self.time();
        let mut value = to_toml(py, perturbation.as_any())?;
        if let toml::Value::Table(t) = &mut value
            && !t.contains_key("start")
        {
            t.insert("start".into(), toml::Value::Float(now));
        }
        let mut doc: toml::Table = toml::from_str(&self.scene.text).map_err(|e| err(e.to_string()))?;
        let list = doc.entry("perturbations").or_insert_with(|| toml::Value::Array(Vec::new()));
        let toml::Value::Array(list) = list else { return Err(err("the scene's `perturbations` is not a list")) };
        list.push(value);
        let body = toml::to_string(&doc).map_err(|e| err(e.to_string()))?;
        let text = format!("# `{}` with perturbations added in Python\n{body}", self.scene.path.display());
        let changed = LoadedScene::from_str(&text, &self.scene.path).map_err(|e| explant_error(&e))?;
        let added = changed.scene.perturbations.last().cloned().ok_or_else(|| err("no perturbation was added"))?;
        if self.run.control.is_none() {
            // The control is this simulation as it is now, stepped on without perturbations.
            let mut bare = self.scene.scene.clone();
            bare.perturbations.clear();
            let state = self.run.sim.state().map_err(|e| explant_error(&e))?;
            let (diffuser, _) =
                explant_run::backends::diffusion(self.diffusion, bare.grid.scheme).map_err(|e| explant_error(&e))?;
            let model = Self::factory(py, &self.model, &self.scene, self.threads)().map_err(|e| explant_error(&e))?;
            let control =
                explant_core::Simulation::restore(&bare, diffuser, model, state).map_err(|e| explant_error(&e))?;
            self.run.control = Some(control);
        }
        if !self.run.sim.add_perturbation(&changed.scene, &added) {
            return Err(err("the perturbation does not resolve against the scene"));
        }
        self.scene = changed;
        Ok(())
    }

    /// Save the simulation (and its control) to `path`, for `Simulation.resume(path)`.
    fn checkpoint(&mut self, path: PathBuf) -> PyResult<()> {
        self.check_running()?;
        let ck = Checkpoint {
            explant_version: explant_run::VERSION.into(),
            scene_path: std::path::absolute(&self.scene.path).unwrap_or(self.scene.path.clone()),
            scene_text: self.scene.text.clone(),
            diffusion: self.diffusion,
            diffusion_backend: self.run.sim.backend_names().0,
            threads: self.threads,
            no_figures: true,
            every_ticks: 0,
            command_line: vec!["python".into()],
            wall_seconds: 0.0,
            sim: self.run.sim.state().map_err(|e| explant_error(&e))?,
            control: self
                .run
                .control
                .as_mut()
                .map(explant_core::Simulation::state)
                .transpose()
                .map_err(|e| explant_error(&e))?,
        };
        ck.write(&path).map_err(|e| explant_error(&e))
    }

    /// A simulation from a checkpoint written by `checkpoint()` (or by `explant run
    /// --checkpoint-every`): stepping it continues bit for bit. A simulation that ran a
    /// Python model needs the same `model` again.
    #[staticmethod]
    #[pyo3(signature = (path, model=None))]
    fn resume(py: Python<'_>, path: PathBuf, model: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let ck = Checkpoint::read(&path).map_err(|e| explant_error(&e))?;
        let loaded = LoadedScene::from_str(&ck.scene_text, &ck.scene_path).map_err(|e| explant_error(&e))?;
        let kind = match model {
            None => ModelKind::Library,
            Some(m) => ModelKind::Python(python_model(py, m, &loaded)?),
        };
        use_threads(ck.threads)?;
        let mut notes = Vec::new();
        let run = PairedRun::restore_with(&loaded, &ck, &mut Self::factory(py, &kind, &loaded, ck.threads), &mut notes)
            .map_err(|e| explant_error(&e))?;
        Ok(Self { scene: loaded, run, model: kind, threads: ck.threads, diffusion: ck.diffusion, failed: None })
    }

    /// Seconds spent in each stage of the tick so far (`secrete`, `diffuse`, `sense`,
    /// `respond`, …), summed over the ticks, of this simulation (not its control).
    fn stage_times<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (stage, time) in self.run.sim.stage_times() {
            out.set_item(stage.name(), time.as_secs_f64())?;
        }
        Ok(out)
    }

    /// Where a Python model's time went, summed over its calls (this simulation's and its
    /// control's): `calls`, and seconds `inputs` (filling its input arrays), `python`
    /// (inside the callable) and `outputs` (reading its result back). None for a model
    /// that is not Python.
    fn model_times<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let ModelKind::Python(m) = &self.model else { return Ok(None) };
        let t = m.timing();
        let out = PyDict::new(py);
        out.set_item("calls", t.calls)?;
        out.set_item("inputs", t.inputs.as_secs_f64())?;
        out.set_item("python", t.python.as_secs_f64())?;
        out.set_item("outputs", t.outputs.as_secs_f64())?;
        Ok(Some(out))
    }

    /// The number of cells now.
    #[getter]
    fn cells(&mut self) -> usize {
        self.run.sim.cells().ids.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "Simulation('{}', t = {} min, tick {}{})",
            self.scene.scene.name,
            self.time(),
            self.tick(),
            if self.run.control.is_some() { ", with its paired control" } else { "" }
        )
    }
}

/// `m` as the response model of `scene`: its declared names checked against the scene's,
/// then one call on the probe batch ([`probe`]).
fn python_model(py: Python<'_>, m: &Bound<'_, PyAny>, scene: &LoadedScene) -> PyResult<PyModel> {
    let model = PyModel::new(m).map_err(err)?;
    model
        .signature()
        .check_against(&ModelSignature::of_scene(&scene.scene), &model.name())
        .map_err(|e| explant_error(&e))?;
    probe(py, &model, scene)?;
    Ok(model)
}

/// Call a Python model once on a few cells (each cell type at its baseline, nothing
/// sensed) and refuse it when it fails, returns the wrong shape, or a non-finite value.
fn probe(py: Python<'_>, model: &PyModel, scene: &LoadedScene) -> PyResult<()> {
    let sc = &scene.scene;
    let (g, l, t) = (sc.genes.len(), sc.ligands.len(), sc.cell_types.len());
    let n = t.max(1);
    let mut expression = Vec::with_capacity(n * g);
    for ct in &sc.cell_types {
        expression.extend(sc.gene_vector(&ct.baseline));
    }
    expression.resize(n * g, 0.0);
    let cell_type: Vec<u32> = (0..n as u32).collect();
    let (sensed, contact, neighbours) = (vec![0.0; n * l], vec![0.0; n * g], vec![0.0; n * t]);
    let input = ResponseInput {
        cells: n,
        expression: &expression,
        sensed: &sensed,
        contact: &contact,
        neighbour_types: &neighbours,
        cell_type: &cell_type,
        dt: sc.time.dt,
    };
    let mut m = model.share(py);
    let extras = m.extras();
    let mut rates = vec![0.0; n * g];
    let mut secretion = vec![0.0; if extras.secretion { n * l } else { 0 }];
    let mut fate = vec![0.0; if extras.fate { n * 2 } else { 0 }];
    m.respond(&input, &mut rates, &mut secretion, &mut fate).map_err(|e| explant_error(&e))?;
    for (what, values, width, names) in [
        ("dx/dt", &rates, g, &sc.genes),
        ("secretion", &secretion, l, &sc.ligand_names()),
        ("fate", &fate, 2, &vec!["apoptosis".to_owned(), "cycle".to_owned()]),
    ] {
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(err(format!(
                "model `{}` is not usable: on the probe batch (each cell type at its baseline, nothing sensed) its {what} \
                 for cell type `{}`, `{}` is {}",
                m.name(),
                sc.cell_types.get(i / width).map_or("?", |c| c.name.as_str()),
                names.get(i % width).map_or("?", String::as_str),
                values[i]
            )));
        }
    }
    Ok(())
}

/// The native part of the `explant` package.
#[pymodule]
fn _explant(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Scene>()?;
    m.add_class::<Simulation>()?;
    m.add("ExplantError", m.py().get_type::<ExplantError>())?;
    m.add("__version__", explant_run::VERSION)?;
    m.add("COMMIT", explant_run::COMMIT)?;
    m.add("HAS_TORCH", cfg!(feature = "torch"))?;
    Ok(())
}
