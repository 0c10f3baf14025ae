use thiserror::Error;

/// Errors from building or stepping a ligand field.
#[derive(Debug, Error)]
pub enum FieldError {
    /// The requested time step is zero, negative or not finite.
    #[error("time step `{dt}` must be a positive finite number of minutes")]
    BadTimeStep {
        /// The offending time step.
        dt: f32,
    },
    /// A diffusion coefficient or decay rate is negative or not finite.
    #[error("ligand {channel}: `{name}` is `{value}`, it must be a non-negative finite number")]
    BadParameter {
        /// Index of the ligand.
        channel: usize,
        /// Which parameter.
        name: &'static str,
        /// Its value.
        value: f32,
    },
    /// An axis is periodic on one face but not on the other. Periodicity joins the two
    /// faces of an axis, so it must be set on both or on neither.
    #[error(
        "ligand {channel}: the {axis} axis is `periodic` on one face only; set `periodic` on both {axis} faces or on neither"
    )]
    HalfPeriodic {
        /// Index of the ligand.
        channel: usize,
        /// The axis, `x`, `y` or `z`.
        axis: char,
    },
    /// The explicit scheme would need an absurd number of substeps.
    #[error(
        "time step `{dt}` min needs more than 10^7 substeps (stability limit `{limit}` min): use a coarser grid or a smaller diffusion coefficient"
    )]
    TooManySubsteps {
        /// The requested step.
        dt: f32,
        /// The largest stable substep.
        limit: f32,
    },
    /// The field passed in does not match the parameters.
    #[error("field has {field} ligand channels but {params} sets of parameters were given")]
    ChannelMismatch {
        /// Channels in the field.
        field: usize,
        /// Parameter sets given.
        params: usize,
    },
    /// A listed source points outside the field (a bug in the caller, not user input).
    #[error("a source was listed at index {index} of a field of {len} values")]
    SourceOutOfRange {
        /// The index given.
        index: usize,
        /// Values in the field.
        len: usize,
    },
    /// The cells' exchange or sample lists of a resident field are malformed (a bug in
    /// the caller, not user input).
    #[error("resident field: {0}")]
    Exchange(String),
    /// A backend (e.g. the GPU) failed.
    #[error("diffusion backend `{backend}` failed: {message}")]
    Backend {
        /// Which backend.
        backend: String,
        /// What went wrong.
        message: String,
    },
}
