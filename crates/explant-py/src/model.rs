//! Any Python callable as the cell's response model.
//!
//! The callable is called once per respond step with the whole population:
//!
//! ```text
//! model(expression [N,G], sensed [N,L], contact [N,G], cell_type_onehot [N,T]
//!       [, neighbour_types [N,T]]) -> dx/dt [N,G]
//! ```
//!
//! all float32 NumPy arrays, the same contract as a TorchScript model (README, "Response
//! models"). It declares the names it was built for as attributes `genes`, `ligands` and
//! `cell_types` (lists of str, in input order), checked against the scene as a TorchScript
//! model's `.json` is; `neighbour_counts = True` asks for the fifth input; `outputs`
//! naming `"secretion"` and/or `"fate"` says it returns a dict `{"dxdt": …, "secretion":
//! [N,L], "fate": [N,2]}` instead of the bare array.
//!
//! The inputs are NumPy arrays this model owns, filled from the engine's buffers each
//! call (one copy of each input; the arrays are reused from call to call, so a model
//! that keeps one past the call is noticed, by its reference count, and gets fresh ones
//! the next call: what it kept never changes under it). Views of the engine's own
//! memory would save that copy, but a callable that keeps such a view (or a traceback
//! that holds it) would then read freed memory.
//!
//! The output is read as float32 (another dtype is converted, with a copy), checked for
//! its shape, and copied into the engine; a non-finite value stops the run in the
//! respond stage, naming the cell and gene, as for every model.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use explant_core::{Extras, ModelError, ModelSignature, ResponseInput, ResponseModel};
use numpy::{PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// A Python callable as a [`ResponseModel`].
pub struct PyModel {
    callable: Py<PyAny>,
    name: String,
    signature: ModelSignature,
    extras: Extras,
    neighbour_counts: bool,
    inputs: Option<Inputs>,
    timing: Arc<Mutex<Timing>>,
}

/// Where the time of a Python model's calls went, summed over the calls (of every handle
/// on the same callable: a simulation and its control).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// Calls.
    pub calls: u64,
    /// Filling the input arrays from the engine's buffers (and the one-hot).
    pub inputs: Duration,
    /// Inside the callable (the model's own computation, and Python's call itself).
    pub python: Duration,
    /// Reading its outputs back (conversion to float32 where needed, checks, copies).
    pub outputs: Duration,
}

/// The arrays handed to the callable, reused while the population's size is unchanged
/// and nothing kept them.
struct Inputs {
    cells: usize,
    expression: Py<PyArray2<f32>>,
    sensed: Py<PyArray2<f32>>,
    contact: Py<PyArray2<f32>>,
    onehot: Py<PyArray2<f32>>,
    neighbours: Py<PyArray2<f32>>,
}

impl PyModel {
    /// Wrap `callable`, reading the names it declares.
    ///
    /// # Errors
    ///
    /// When it is not callable or lacks `genes`, `ligands` or `cell_types` (lists of
    /// str), or declares an unknown output.
    pub fn new(callable: &Bound<'_, PyAny>) -> Result<Self, String> {
        if !callable.is_callable() {
            return Err(format!(
                "the model must be None, a path to a TorchScript .pt file, \"teacher\" or a callable; got a {}",
                type_name(callable)
            ));
        }
        let name = match callable.getattr("__name__").or_else(|_| callable.get_type().getattr("__name__")) {
            Ok(n) => format!("python:{}", n),
            Err(_) => "python callable".into(),
        };
        let names = |attr: &str| -> Result<Vec<String>, String> {
            let value = callable.getattr(attr).map_err(|_| {
                format!("the Python model `{name}` has no `{attr}` attribute: give the names it was built for, in input order")
            })?;
            value
                .extract::<Vec<String>>()
                .map_err(|_| format!("the Python model `{name}`'s `{attr}` must be a list of str"))
        };
        let signature =
            ModelSignature { genes: names("genes")?, ligands: names("ligands")?, cell_types: names("cell_types")? };
        let mut extras = Extras::default();
        if let Ok(outputs) = callable.getattr("outputs") {
            let outputs: Vec<String> = outputs
                .extract()
                .map_err(|_| format!("the Python model `{name}`'s `outputs` must be a list of str"))?;
            for o in outputs {
                match o.as_str() {
                    "dxdt" => {}
                    "secretion" => extras.secretion = true,
                    "fate" => extras.fate = true,
                    other => {
                        return Err(format!(
                            "the Python model `{name}` declares the output `{other}`; outputs are `dxdt`, `secretion` and `fate`"
                        ));
                    }
                }
            }
        }
        let neighbour_counts = match callable.getattr("neighbour_counts") {
            Ok(v) => v.is_truthy().map_err(|e| e.to_string())?,
            Err(_) => false,
        };
        Ok(Self {
            callable: callable.clone().unbind(),
            name,
            signature,
            extras,
            neighbour_counts,
            inputs: None,
            timing: Arc::default(),
        })
    }

    /// A second handle on the same callable (for a paired control).
    pub fn share(&self, py: Python<'_>) -> Self {
        Self {
            callable: self.callable.clone_ref(py),
            name: self.name.clone(),
            signature: self.signature.clone(),
            extras: self.extras,
            neighbour_counts: self.neighbour_counts,
            inputs: None,
            timing: Arc::clone(&self.timing),
        }
    }

    /// The time of this callable's calls so far.
    pub fn timing(&self) -> Timing {
        self.timing.lock().map(|t| *t).unwrap_or_default()
    }

    fn failed(&self, message: String) -> ModelError {
        ModelError::Run { model: self.name.clone(), message }
    }

    /// The input arrays for `cells` cells, reused when they fit and nobody kept them.
    fn inputs<'py>(&mut self, py: Python<'py>, cells: usize) -> &Inputs {
        let (g, l, t) = (self.signature.genes.len(), self.signature.ligands.len(), self.signature.cell_types.len());
        // Reused only when nobody else holds them and they are still writeable, C-contiguous
        // and of their shape (a model may have cleared the flag on its inputs, or set their
        // strides or shape in place).
        let reusable = self.inputs.as_ref().is_some_and(|i| {
            i.cells == cells
                && [(&i.expression, g), (&i.sensed, l), (&i.contact, g), (&i.onehot, t), (&i.neighbours, t)].iter().all(
                    |(a, w)| {
                        let b = a.bind(py);
                        references(a) == 1
                            && b.is_c_contiguous()
                            && b.shape() == [cells, *w]
                            && b.try_readwrite().is_ok()
                    },
                )
        });
        if !reusable {
            let new = |w: usize| PyArray2::<f32>::zeros(py, [cells, w], false).unbind();
            self.inputs = Some(Inputs {
                cells,
                expression: new(g),
                sensed: new(l),
                contact: new(g),
                onehot: new(t),
                neighbours: new(t),
            });
        }
        self.inputs.as_ref().expect("just set")
    }

    fn call(
        &mut self,
        py: Python<'_>,
        input: &ResponseInput<'_>,
        rates: &mut [f32],
        secretion: &mut [f32],
        fate: &mut [f32],
    ) -> Result<(), ModelError> {
        let n = input.cells;
        let (g, l, t) = (self.signature.genes.len(), self.signature.ligands.len(), self.signature.cell_types.len());
        let counts = self.neighbour_counts;
        let started = Instant::now();
        let name = self.name.clone();
        let arrays = self.inputs(py, n);
        // Fresh or checked reusable above, so neither step fails unless something else
        // holds the arrays meanwhile: then an error naming the model, not a panic.
        let layout = |e: String| ModelError::Run {
            model: name.clone(),
            message: format!("its input arrays could not be written: {e}"),
        };
        let fill = |a: &Py<PyArray2<f32>>, from: &[f32]| -> Result<(), ModelError> {
            let a = a.bind(py);
            let mut rw = a.try_readwrite().map_err(|e| layout(e.to_string()))?;
            let to = rw.as_slice_mut().map_err(|e| layout(e.to_string()))?;
            if from.len() == to.len() {
                to.copy_from_slice(from);
            } else {
                to.fill(0.0);
            }
            Ok(())
        };
        fill(&arrays.expression, input.expression)?;
        fill(&arrays.sensed, input.sensed)?;
        fill(&arrays.contact, input.contact)?;
        fill(&arrays.neighbours, input.neighbour_types)?;
        {
            let a = arrays.onehot.bind(py);
            let mut rw = a.try_readwrite().map_err(|e| layout(e.to_string()))?;
            let to = rw.as_slice_mut().map_err(|e| layout(e.to_string()))?;
            to.fill(0.0);
            for (i, &c) in input.cell_type.iter().enumerate().take(n) {
                if (c as usize) < t {
                    to[i * t + c as usize] = 1.0;
                }
            }
        }
        let mut args = vec![
            arrays.expression.clone_ref(py).into_any(),
            arrays.sensed.clone_ref(py).into_any(),
            arrays.contact.clone_ref(py).into_any(),
            arrays.onehot.clone_ref(py).into_any(),
        ];
        if counts {
            args.push(arrays.neighbours.clone_ref(py).into_any());
        }
        let args = PyTuple::new(py, args).map_err(|e| self.failed(e.to_string()))?;
        let filled = Instant::now();
        let out = self.callable.bind(py).call1(args).map_err(|e| self.failed(python_error(py, &e)))?;
        let called = Instant::now();
        let (dxdt, sec, fat) = if self.extras.secretion || self.extras.fate {
            let d = out.cast::<PyDict>().map_err(|_| {
                self.failed(format!(
                    "it declares `outputs` beyond dx/dt, so it must return a dict with `dxdt`; it returned a {}",
                    type_name(&out)
                ))
            })?;
            let get = |k: &str| d.get_item(k).ok().flatten();
            (get("dxdt").ok_or_else(|| self.failed("its dict has no `dxdt`".into()))?, get("secretion"), get("fate"))
        } else {
            (out, None, None)
        };
        self.read(py, "dx/dt", &dxdt, n, g, rates)?;
        if self.extras.secretion {
            let s = sec.ok_or_else(|| self.failed("it declares `secretion` but its dict has none".into()))?;
            self.read(py, "secretion", &s, n, l, secretion)?;
        }
        if self.extras.fate {
            let f = fat.ok_or_else(|| self.failed("it declares `fate` but its dict has none".into()))?;
            self.read(py, "fate", &f, n, 2, fate)?;
        }
        if let Ok(mut timing) = self.timing.lock() {
            timing.calls += 1;
            timing.inputs += filled - started;
            timing.python += called - filled;
            timing.outputs += called.elapsed();
        }
        Ok(())
    }

    /// Copy the model's output `value` (`rows × cols`) into `to`.
    fn read(
        &self,
        py: Python<'_>,
        what: &str,
        value: &Bound<'_, PyAny>,
        rows: usize,
        cols: usize,
        to: &mut [f32],
    ) -> Result<(), ModelError> {
        let np = py.import("numpy").map_err(|e| self.failed(e.to_string()))?;
        let array = np
            .call_method1("ascontiguousarray", (value, "float32"))
            .map_err(|e| self.failed(format!("its {what} is not an array of numbers: {}", python_error(py, &e))))?;
        let array: PyReadonlyArray2<f32> = array.extract().map_err(|_| {
            let shape = value.getattr("shape").map(|s| s.to_string()).unwrap_or_else(|_| type_name(value));
            self.failed(format!("its {what} must be a 2-D array [{rows}, {cols}]; it returned shape {shape}"))
        })?;
        if array.shape() != [rows, cols] {
            return Err(self.failed(format!(
                "its {what} has shape {:?}; the batch needs [{rows}, {cols}] (cells × {})",
                array.shape(),
                if what == "fate" {
                    "2 scores"
                } else if what == "secretion" {
                    "ligands"
                } else {
                    "genes"
                }
            )));
        }
        let from = array.as_slice().map_err(|e| self.failed(e.to_string()))?;
        to[..from.len()].copy_from_slice(from);
        Ok(())
    }
}

impl ResponseModel for PyModel {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn extras(&self) -> Extras {
        self.extras
    }

    fn rates(&mut self, input: &ResponseInput<'_>, rates: &mut [f32]) -> Result<(), ModelError> {
        self.respond(input, rates, &mut [], &mut [])
    }

    fn respond(
        &mut self,
        input: &ResponseInput<'_>,
        rates: &mut [f32],
        secretion: &mut [f32],
        fate: &mut [f32],
    ) -> Result<(), ModelError> {
        Python::attach(|py| self.call(py, input, rates, secretion, fate))
    }
}

/// How many references Python holds to `a` (ours included).
fn references(a: &Py<PyArray2<f32>>) -> isize {
    // SAFETY: `a` is a live object (we hold a reference), and reading its count only
    // needs the GIL, which every caller holds (`Python<'_>` in scope).
    unsafe { pyo3::ffi::Py_REFCNT(a.as_ptr()) }
}

/// A Python error as one text: its type, message and the traceback's last lines.
pub fn python_error(py: Python<'_>, e: &PyErr) -> String {
    let mut text = e.to_string();
    if let Some(tb) = e.traceback(py)
        && let Ok(lines) = tb.format()
    {
        let last: Vec<&str> = lines.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = last.iter().rev().take(4).rev().cloned().collect::<Vec<_>>().join(" | ");
        if !tail.is_empty() {
            text = format!("{text} ({})", tail.trim());
        }
    }
    text
}

fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".into())
}
