//! Choosing where tensors live: CPU by default, CUDA and Metal when built with their features.

use std::str::FromStr;

use candle_core::Device;

use crate::{Error, Result};

/// Which device to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    /// CUDA if this build has it and a GPU is present, else Metal likewise, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// An NVIDIA GPU (build with `--features cuda`).
    Cuda {
        /// The GPU index.
        ordinal: usize,
    },
    /// An Apple GPU (build with `--features metal`).
    Metal {
        /// The GPU index.
        ordinal: usize,
    },
}

impl DeviceChoice {
    /// The candle device, with a clear error when this build or machine lacks it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when an explicit [`Cuda`](Self::Cuda) or [`Metal`](Self::Metal)
    /// device is not in this build or on this machine; [`Auto`](Self::Auto) never fails.
    pub fn device(self) -> Result<Device> {
        let unavailable = |what: &str, feature: &str, e: candle_core::Error| {
            Error::invalid(
                "device",
                format!("{what} is not available ({e}); build relstitch with `--features {feature}` on a machine that has one, or use --device cpu"),
            )
        };
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda { ordinal } => {
                Device::new_cuda(ordinal).map_err(|e| unavailable("CUDA", "cuda", e))
            }
            Self::Metal { ordinal } => {
                Device::new_metal(ordinal).map_err(|e| unavailable("Metal", "metal", e))
            }
            Self::Auto => {
                if candle_core::utils::cuda_is_available() {
                    if let Ok(d) = Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                if candle_core::utils::metal_is_available() {
                    if let Ok(d) = Device::new_metal(0) {
                        return Ok(d);
                    }
                }
                Ok(Device::Cpu)
            }
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = Error;

    /// Parses `auto`, `cpu`, `cuda`, `cuda:N`, `metal`, `metal:N`.
    fn from_str(s: &str) -> Result<Self> {
        let (kind, ordinal) = match s.split_once(':') {
            Some((k, n)) => {
                let n = n.parse::<usize>().map_err(|_| {
                    Error::invalid("device", format!("`{s}`: the GPU index must be a number"))
                })?;
                (k, n)
            }
            None => (s, 0),
        };
        match kind.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda { ordinal }),
            "metal" => Ok(Self::Metal { ordinal }),
            _ => Err(Error::invalid(
                "device",
                format!("`{s}`; use auto, cpu, cuda[:N] or metal[:N]"),
            )),
        }
    }
}

/// How many threads per available core [`set_num_threads`] accepts at most.
pub const MAX_THREADS_PER_CORE: usize = 4;

/// The largest thread count [`set_num_threads`] accepts on this machine:
/// [`MAX_THREADS_PER_CORE`] × the cores available to this process.
pub fn max_num_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_mul(MAX_THREADS_PER_CORE)
}

/// Sets the number of CPU threads used by candle's matrix code and by tokenization.
///
/// Call it once, before any model runs; later calls cannot shrink a pool that already exists
/// (they log a warning).
///
/// Why there is a maximum: candle's matrix products (gemm) split every product into one job per
/// thread, each of the rayon workers keeps its own packing buffer, and idle workers spin looking
/// for work. With 5000 threads on 2 cores, projecting 4000 × 384 embeddings onto 768 anchors ran
/// for more than 120 s (killed; 550 MB resident) instead of 0.6 s with 2 threads — it looks like a
/// hang. More threads than cores never helps, so counts above [`max_num_threads`] are refused.
///
/// # Errors
/// [`Error::InvalidArgument`] for 0 or more than [`max_num_threads`]; nothing is changed then.
pub fn set_num_threads(n: usize) -> Result<()> {
    let max = max_num_threads();
    if n == 0 || n > max {
        let cores = max / MAX_THREADS_PER_CORE;
        return Err(Error::invalid(
            "thread count",
            format!(
                "{n}: use 1 to {max} ({MAX_THREADS_PER_CORE} × the {cores} core(s) available), \
                 or leave --threads out to use all cores"
            ),
        ));
    }
    // candle reads RAYON_NUM_THREADS for its gemm parallelism; rayon's global pool runs the rest.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
    {
        tracing::warn!("could not set the thread count to {n}: {e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() -> anyhow::Result<()> {
        assert_eq!("cpu".parse::<DeviceChoice>()?, DeviceChoice::Cpu);
        assert_eq!(
            "cuda:1".parse::<DeviceChoice>()?,
            DeviceChoice::Cuda { ordinal: 1 }
        );
        assert_eq!(
            "metal".parse::<DeviceChoice>()?,
            DeviceChoice::Metal { ordinal: 0 }
        );
        assert!("tpu".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        assert!(matches!(
            DeviceChoice::Auto.device()?,
            Device::Cpu | Device::Cuda(_) | Device::Metal(_)
        ));
        Ok(())
    }

    #[test]
    fn absurd_thread_counts_are_refused_before_anything_changes() -> anyhow::Result<()> {
        // Only refusals here: a valid count would change the process-wide pool of the test binary.
        let max = max_num_threads();
        assert!(max >= MAX_THREADS_PER_CORE);
        for n in [0, max + 1, 5000.max(max + 1), usize::MAX] {
            match set_num_threads(n) {
                Err(e @ Error::InvalidArgument { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("use 1 to {max}")), "{msg}");
                }
                other => anyhow::bail!("--threads {n} was not refused: {other:?}"),
            }
        }
        Ok(())
    }
}
