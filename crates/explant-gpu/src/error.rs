use thiserror::Error;

/// Errors from finding a GPU adapter and setting up the diffusion kernel.
///
/// Errors while stepping a field are reported as
/// [`explant_field::FieldError::Backend`] instead, since they pass through the
/// [`explant_field::DiffusionBackend`] trait.
#[derive(Debug, Error)]
pub enum GpuError {
    /// wgpu found no adapter at all on the enabled backends.
    #[error("no wgpu adapter found on backends `{backends}`: {reason}")]
    NoAdapter {
        /// The backends that were searched (from `WGPU_BACKEND`, else all compiled in).
        backends: String,
        /// wgpu's own explanation, which names each backend it tried.
        reason: String,
    },
    /// Adapters exist, but every one was refused (policy, `WGPU_ADAPTER_NAME` or no
    /// compute shaders).
    #[error("no usable wgpu adapter for policy `{policy}` on backends `{backends}`; found {found}")]
    NoSuitableAdapter {
        /// The policy in force, e.g. `hardware-only`.
        policy: String,
        /// The backends that were searched.
        backends: String,
        /// Each adapter found and why it was refused.
        found: String,
    },
    /// The chosen adapter would not give a device (wgpu's error is the source).
    #[error("adapter `{adapter}` refused to create a device")]
    RequestDevice {
        /// The adapter's name, backend and type.
        adapter: String,
        /// wgpu's error.
        #[source]
        source: wgpu::RequestDeviceError,
    },
    /// Compiling the kernel (`shaders/diffuse.wgsl` or `shaders/implicit.wgsl`) or
    /// building its pipeline failed on this device.
    #[error("could not build the diffusion kernel `{kernel}` on `{adapter}`: {message}")]
    Setup {
        /// The kernel's path, e.g. `shaders/implicit.wgsl`.
        kernel: &'static str,
        /// The adapter's name, backend and type.
        adapter: String,
        /// wgpu's validation or out-of-memory message.
        message: String,
    },
}
