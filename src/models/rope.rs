//! Rotary position embeddings (RoPE, "rotate half" layout) as Hugging Face computes them, shared
//! by the rotary encoders relstitch implements itself.

use candle_core::{DType, Device, Result, Tensor};

/// The inverse frequencies of a rotary embedding: `1 / base^(2i / dim)` for `i < dim / 2`,
/// computed in f32 like transformers' `compute_default_rope_parameters`.
#[derive(Debug, Clone)]
pub(crate) struct RotaryTables {
    inv_freq: Vec<f32>,
    device: Device,
}

/// The cos/sin tables of one sequence length.
#[derive(Debug, Clone)]
pub(crate) struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl RotaryTables {
    /// Tables for heads of width `dim` (even) and rotary base `base`.
    pub(crate) fn new(dim: usize, base: f64, device: &Device) -> Result<Self> {
        if dim == 0 || !dim.is_multiple_of(2) {
            candle_core::bail!("rotary embeddings need an even, non-zero head width, not {dim}");
        }
        let inv_freq = (0..dim)
            .step_by(2)
            .map(|i| 1.0 / (base as f32).powf(i as f32 / dim as f32))
            .collect();
        Ok(Self {
            inv_freq,
            device: device.clone(),
        })
    }

    /// cos and sin of `position × inv_freq` for positions `0..len`, each `[len, dim / 2]`.
    pub(crate) fn for_len(&self, len: usize) -> Result<Rotary> {
        let half = self.inv_freq.len();
        let inv = Tensor::from_slice(&self.inv_freq, (1, half), &self.device)?;
        let t = Tensor::arange(0u32, len as u32, &self.device)?
            .to_dtype(DType::F32)?
            .reshape((len, 1))?;
        let freqs = t.broadcast_mul(&inv)?;
        Ok(Rotary {
            cos: freqs.cos()?.contiguous()?,
            sin: freqs.sin()?.contiguous()?,
        })
    }
}

impl Rotary {
    /// Rotates `x` (`[batch, heads, len, dim]`, contiguous) position by position.
    pub(crate) fn apply(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::rotary_emb::rope(x, &self.cos, &self.sin)
    }
}

/// The most positions a rotary table built at load time may cover (candle's implementations
/// precompute cos/sin for every position): real checkpoints have at most 131,072.
pub(crate) const MAX_TABLE_POSITIONS: usize = 1 << 20;

/// Refuses a `max_position_embeddings` whose precomputed rotary table would be absurdly large.
///
/// # Errors
/// A sentence naming the field and the bound.
pub(crate) fn check_table_length(positions: usize) -> std::result::Result<(), String> {
    if positions > MAX_TABLE_POSITIONS {
        return Err(format!(
            "max_position_embeddings {positions} is over {MAX_TABLE_POSITIONS}; the config.json is \
             corrupt"
        ));
    }
    Ok(())
}
