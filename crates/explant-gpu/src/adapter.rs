//! Choosing an adapter and opening a device on it.
//!
//! We enumerate the adapters ourselves instead of calling
//! `wgpu::util::initialize_adapter_from_env_or_default`: that helper panics when
//! `WGPU_ADAPTER_NAME` matches nothing, and it cannot skip a software adapter to reach a
//! hardware one. Enumerating also lets every error name what was found and why each
//! adapter was refused.

use std::fmt;

use crate::GpuError;

/// Which adapters [`GpuDiffusion::new`](crate::GpuDiffusion::new) may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AdapterPolicy {
    /// Any adapter with compute shaders, software emulations (Mesa's lavapipe /
    /// llvmpipe) included. For tests, CI, and an explicit `--diffusion gpu`.
    #[default]
    Any,
    /// Refuse adapters whose `device_type` is `Cpu`. For `--diffusion auto`: an emulated
    /// GPU is many times slower than the rayon CPU solver, so `auto` should fall back to
    /// the CPU instead.
    HardwareOnly,
}

impl fmt::Display for AdapterPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Any => "any",
            Self::HardwareOnly => "hardware-only",
        })
    }
}

/// `name (backend, type)` of an adapter, as used in names and messages.
pub(crate) fn describe(info: &wgpu::AdapterInfo) -> String {
    format!("`{}` ({}, {:?})", info.name, info.backend, info.device_type)
}

/// The backends in a set, e.g. `vulkan|gl` (leaving out wgpu's `noop` test backend,
/// which never yields an adapter unless explicitly enabled).
pub(crate) fn backend_names(backends: wgpu::Backends) -> String {
    let names: Vec<String> =
        (backends - wgpu::Backends::NOOP).iter_names().map(|(name, _)| name.to_lowercase()).collect();
    if names.is_empty() { "none".to_owned() } else { names.join("|") }
}

/// Why an adapter is refused, or `None` when it is acceptable.
///
/// `wanted_name` is the lowercased `WGPU_ADAPTER_NAME`, if set.
pub(crate) fn refusal(
    name: &str,
    device_type: wgpu::DeviceType,
    has_compute: bool,
    policy: AdapterPolicy,
    wanted_name: Option<&str>,
) -> Option<String> {
    if !has_compute {
        return Some("no compute shaders".to_owned());
    }
    if policy == AdapterPolicy::HardwareOnly && device_type == wgpu::DeviceType::Cpu {
        return Some("software emulation refused by `hardware-only`".to_owned());
    }
    if let Some(wanted) = wanted_name
        && !name.to_lowercase().contains(wanted)
    {
        return Some(format!("name does not contain `WGPU_ADAPTER_NAME={wanted}`"));
    }
    None
}

/// Sort key among acceptable adapters: real GPUs first, native APIs before GL.
pub(crate) fn rank(device_type: wgpu::DeviceType, backend: wgpu::Backend) -> (u8, u8) {
    let by_type = match device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let by_backend = match backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::Gl => 1,
        _ => 2,
    };
    (by_type, by_backend)
}

/// Find an adapter allowed by `policy` (and `WGPU_ADAPTER_NAME`, `WGPU_BACKEND`) and
/// open a device on it with storage-buffer limits raised to what the adapter allows.
pub(crate) async fn open_device(
    policy: AdapterPolicy,
) -> Result<(wgpu::Device, wgpu::Queue, wgpu::AdapterInfo), GpuError> {
    let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    let backends = desc.backends;
    let instance = wgpu::Instance::new(desc);

    let mut adapters = instance.enumerate_adapters(backends).await;
    if adapters.is_empty() {
        // `request_adapter`'s error explains, backend by backend, why nothing was found.
        match instance.request_adapter(&wgpu::RequestAdapterOptions::default()).await {
            Ok(adapter) => adapters.push(adapter),
            Err(e) => {
                return Err(GpuError::NoAdapter { backends: backend_names(backends), reason: e.to_string() });
            }
        }
    }

    let wanted = std::env::var("WGPU_ADAPTER_NAME").ok().map(|s| s.to_lowercase()).filter(|s| !s.is_empty());
    let mut accepted = Vec::new();
    let mut seen = Vec::new();
    for adapter in adapters {
        let info = adapter.get_info();
        let has_compute = adapter.get_downlevel_capabilities().flags.contains(wgpu::DownlevelFlags::COMPUTE_SHADERS);
        match refusal(&info.name, info.device_type, has_compute, policy, wanted.as_deref()) {
            Some(why) => seen.push(format!("{} refused: {why}", describe(&info))),
            None => {
                seen.push(format!("{} usable", describe(&info)));
                accepted.push((rank(info.device_type, info.backend), adapter, info));
            }
        }
    }
    accepted.sort_by_key(|(key, ..)| *key);
    let Some((_, adapter, info)) = accepted.into_iter().next() else {
        return Err(GpuError::NoSuitableAdapter {
            policy: policy.to_string(),
            backends: backend_names(backends),
            found: seen.join("; "),
        });
    };

    // Ask for the adapter's largest buffers, so big grids are limited by the hardware
    // rather than by the 128 MiB WebGPU default; everything else stays at the downlevel
    // defaults, clamped to the adapter so the request cannot be refused for a limit.
    let available = adapter.limits();
    let mut limits = wgpu::Limits::downlevel_defaults();
    limits.max_storage_buffer_binding_size = available.max_storage_buffer_binding_size;
    limits.max_buffer_size = available.max_buffer_size;
    let required_limits = limits.or_worse_values_from(&available);

    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor { label: Some("explant-gpu"), required_limits, ..Default::default() })
        .await
        .map_err(|source| GpuError::RequestDevice { adapter: describe(&info), source })?;
    Ok((device, queue, info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgpu::DeviceType;

    #[test]
    fn hardware_only_refuses_software_adapters_and_any_accepts_them() {
        let lavapipe = "llvmpipe (LLVM 15.0.6, 256 bits)";
        assert!(refusal(lavapipe, DeviceType::Cpu, true, AdapterPolicy::HardwareOnly, None).is_some());
        assert_eq!(refusal(lavapipe, DeviceType::Cpu, true, AdapterPolicy::Any, None), None);
        assert_eq!(refusal("GeForce", DeviceType::DiscreteGpu, true, AdapterPolicy::HardwareOnly, None), None);
    }

    #[test]
    fn adapters_without_compute_or_with_another_name_are_refused() {
        assert!(refusal("GeForce", DeviceType::DiscreteGpu, false, AdapterPolicy::Any, None).is_some());
        let why = refusal("GeForce", DeviceType::DiscreteGpu, true, AdapterPolicy::Any, Some("radeon"));
        assert!(why.is_some_and(|w| w.contains("WGPU_ADAPTER_NAME=radeon")));
        assert_eq!(refusal("GeForce RTX", DeviceType::DiscreteGpu, true, AdapterPolicy::Any, Some("geforce")), None);
    }

    #[test]
    fn real_gpus_rank_before_emulations_and_native_apis_before_gl() {
        use wgpu::Backend;
        assert!(rank(DeviceType::DiscreteGpu, Backend::Gl) < rank(DeviceType::Cpu, Backend::Vulkan));
        assert!(rank(DeviceType::IntegratedGpu, Backend::Vulkan) < rank(DeviceType::IntegratedGpu, Backend::Gl));
        assert!(rank(DeviceType::DiscreteGpu, Backend::Vulkan) < rank(DeviceType::IntegratedGpu, Backend::Vulkan));
    }

    #[test]
    fn backend_names_are_readable() {
        assert_eq!(backend_names(wgpu::Backends::VULKAN | wgpu::Backends::GL), "vulkan|gl");
        assert_eq!(backend_names(wgpu::Backends::empty()), "none");
        assert!(!backend_names(wgpu::Backends::all()).contains("noop"));
    }
}
