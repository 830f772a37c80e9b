//! CPU kernels of the packed encoder ([`crate::models::packed`]): linear layers in f32, bf16 and
//! int8, and the fused element-wise steps around them (bias + GELU, residual + LayerNorm,
//! softmax), all on plain `f32` slices.
//!
//! Every kernel runs either on the calling thread or split across the rayon pool (`parallel`),
//! so that the encoder can choose between parallelism inside each op and data parallelism
//! across batches.

pub mod activation;
pub mod attention;
pub mod bf16;
pub mod gemm;
pub mod int8;
pub mod norm;
pub mod simd;
pub mod tiles;

use candle_core::Result;

use crate::models::Precision;
use activation::Activation;

/// Rows handed to one rayon task by [`for_row_chunks`] (fewer tasks, less scheduling).
const ROWS_PER_TASK: usize = 16;

/// Calls `f` on chunks of whole rows (`width` values each) of `buf`, split across the rayon pool
/// when `parallel`. `f` should call the multiversioned kernels (`activation::apply`,
/// `norm::add_layer_norm_rows`, ...), which pick the CPU's widest vectors themselves.
pub fn for_row_chunks(
    buf: &mut [f32],
    width: usize,
    parallel: bool,
    f: impl Fn(&mut [f32]) + Sync + Send,
) {
    if width == 0 || buf.is_empty() {
        return;
    }
    let rows = buf.len() / width;
    if parallel && rows > ROWS_PER_TASK && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        buf.par_chunks_mut(width * ROWS_PER_TASK).for_each(f);
    } else {
        f(buf);
    }
}

/// As [`for_row_chunks`], with the matching rows of `other` (same width and row count).
pub fn for_row_chunks_with(
    buf: &mut [f32],
    other: &[f32],
    width: usize,
    parallel: bool,
    f: impl Fn(&mut [f32], &[f32]) + Sync + Send,
) {
    if width == 0 || buf.is_empty() {
        return;
    }
    let rows = buf.len() / width;
    if parallel && rows > ROWS_PER_TASK && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        buf.par_chunks_mut(width * ROWS_PER_TASK)
            .zip(other.par_chunks(width * ROWS_PER_TASK))
            .for_each(|(a, b)| f(a, b));
    } else {
        f(buf, other);
    }
}

/// A linear layer (`y = x · Wᵀ + b`) at one precision.
#[derive(Debug, Clone)]
pub enum Linear {
    /// f32 weights, `gemm`.
    F32 {
        /// `[n, k]`.
        weight: Vec<f32>,
        /// `[n]`.
        bias: Vec<f32>,
        /// Output width.
        n: usize,
        /// Input width.
        k: usize,
    },
    /// bfloat16 weights and activations, f32 sums.
    Bf16(bf16::Bf16Linear),
    /// int8 weights (per channel) and activations (per row), i32 sums.
    Int8(int8::Int8Linear),
}

impl Linear {
    /// A layer from PyTorch-layout weights (`[n, k]`, row-major) at `precision`.
    ///
    /// # Errors
    /// A [`candle_core::Error`] when the sizes do not match or the precision's kernel cannot be built.
    pub fn new(
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        n: usize,
        k: usize,
        precision: Precision,
    ) -> Result<Self> {
        if weight.len() != n * k {
            candle_core::bail!(
                "linear: weight has {} values, expected {n} × {k}",
                weight.len()
            );
        }
        let bias = bias.unwrap_or_else(|| vec![0.0; n]);
        if bias.len() != n {
            candle_core::bail!("linear: bias has {} values, expected {n}", bias.len());
        }
        Ok(match precision {
            Precision::F32 => Self::F32 { weight, bias, n, k },
            Precision::Bf16 => Self::Bf16(bf16::Bf16Linear::new(&weight, Some(&bias), n, k)?),
            Precision::Int8 => Self::Int8(int8::Int8Linear::new(&weight, Some(&bias), n, k)?),
        })
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        match self {
            Self::F32 { n, .. } => *n,
            Self::Bf16(l) => l.out_features(),
            Self::Int8(l) => l.out_features(),
        }
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        match self {
            Self::F32 { k, .. } => *k,
            Self::Bf16(l) => l.in_features(),
            Self::Int8(l) => l.in_features(),
        }
    }

    /// `out = act(x · Wᵀ + b)`.
    ///
    /// # Shapes
    /// - `x`: `[m, in_features]`; `out`: `[m, out_features]`
    ///
    /// # Errors
    /// A [`candle_core::Error`] when the slices do not match the shapes.
    pub fn forward(
        &self,
        x: &[f32],
        m: usize,
        out: &mut [f32],
        act: Option<Activation>,
        parallel: bool,
    ) -> Result<()> {
        match self {
            Self::F32 { weight, bias, n, k } => {
                gemm::linear(x, m, *k, weight, bias, *n, out, parallel)?;
                if let Some(act) = act {
                    for_row_chunks(out, *n, parallel, |rows| activation::apply(act, rows));
                }
                Ok(())
            }
            Self::Bf16(l) => l.forward(x, m, out, act, parallel),
            Self::Int8(l) => l.forward(x, m, out, act, parallel),
        }
    }
}
