//! MPNet encoder (inference only).
//!
//! MPNet unifies masked and permuted language modelling; its encoder is a BERT-like
//! post-LayerNorm transformer with two differences: it has no token-type embeddings, and every
//! layer adds a shared T5-style bucketed relative position bias to its attention scores.
//!
//! - Paper: Song et al., 2020, "MPNet: Masked and Permuted Pre-training for Language
//!   Understanding", [arXiv:2004.09297](https://arxiv.org/abs/2004.09297).
//! - This implementation follows Hugging Face transformers'
//!   [`modeling_mpnet.py`](https://github.com/huggingface/transformers/blob/main/src/transformers/models/mpnet/modeling_mpnet.py)
//!   (`MPNetModel` without the pooler, no dropout), and loads both sentence-transformers
//!   checkpoints (e.g. `sentence-transformers/all-mpnet-base-v2`, bare tensor names) and
//!   `MPNetForMaskedLM`-style checkpoints (tensor names prefixed with `mpnet.`).
//!
//! ```no_run
//! # fn main() -> candle_core::Result<()> {
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::VarBuilder;
//! use relstitch::models::mpnet::{Config, MPNetModel};
//!
//! let device = Device::Cpu;
//! let config: Config = serde_json::from_str(&std::fs::read_to_string("config.json")?)
//!     .map_err(candle_core::Error::wrap)?;
//! let vb = unsafe {
//!     VarBuilder::from_mmaped_safetensors(&["model.safetensors"], DType::F32, &device)?
//! };
//! let model = MPNetModel::load(vb, &config)?;
//! let input_ids = Tensor::new(&[[0u32, 2023, 2003, 1037, 3231, 2]], &device)?;
//! let attention_mask = input_ids.ones_like()?;
//! let hidden = model.forward(&input_ids, &attention_mask)?; // [1, 6, 768]
//! # Ok(()) }
//! ```

use candle_core::{bail, DType, Device, Result, Tensor};
use candle_nn::{
    embedding, layer_norm, linear, Activation, Embedding, LayerNorm, Linear, Module, VarBuilder,
};
use serde::Deserialize;

/// Number of buckets HF's `MPNetEncoder.compute_position_bias` passes to the bucket function.
///
/// HF never forwards `config.relative_attention_num_buckets` there (it relies on the default
/// argument `num_buckets=32`); the config value only sizes the bias embedding table.
const POSITION_BIAS_NUM_BUCKETS: usize = 32;

/// Maximum relative distance of the bucket function (HF's default `max_distance=128`).
const POSITION_BIAS_MAX_DISTANCE: usize = 128;

fn default_max_position_embeddings() -> usize {
    514
}

fn default_relative_attention_num_buckets() -> usize {
    32
}

fn default_layer_norm_eps() -> f64 {
    1e-5
}

fn default_pad_token_id() -> u32 {
    1
}

/// MPNet configuration, deserialisable from a checkpoint's `config.json`.
///
/// Unknown keys (dropout probabilities, `architectures`, ...) are ignored; fields with a
/// `#[serde(default)]` take Hugging Face `MPNetConfig`'s defaults when absent.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Size of the token vocabulary (30527 for `mpnet-base`).
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Feed-forward activation (`"gelu"`, the exact erf GELU, when absent).
    #[serde(default)]
    pub hidden_act: Activation,
    /// Number of rows of the absolute position embedding table (514 when absent).
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    /// Number of rows of the relative attention bias table (32 when absent).
    #[serde(default = "default_relative_attention_num_buckets")]
    pub relative_attention_num_buckets: usize,
    /// Epsilon of every LayerNorm (1e-5 when absent).
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token, also the `padding_idx` of the position ids (1 when absent).
    #[serde(default = "default_pad_token_id")]
    pub pad_token_id: u32,
}

/// T5-style bidirectional relative position bucket, exactly as HF's
/// `MPNetEncoder.relative_position_bucket` (including its float32 logarithm and truncation).
///
/// `relative_position` is `memory_position - context_position` (key index minus query index).
fn relative_position_bucket(
    relative_position: i64,
    num_buckets: usize,
    max_distance: usize,
) -> u32 {
    let half = (num_buckets / 2) as i64;
    let n = -relative_position;
    let mut ret = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    if n < max_exact {
        ret += n;
    } else {
        // torch: log(n.float() / max_exact) / math.log(max_distance / max_exact) * (nb - max_exact),
        // evaluated in float32, then `.to(torch.long)` (truncation toward zero).
        let log_ratio = (n as f32 / max_exact as f32).ln();
        let log_max = (max_distance as f64 / max_exact as f64).ln() as f32;
        let scaled = log_ratio / log_max * (half - max_exact) as f32;
        let val_if_large = (max_exact + scaled as i64).min(half - 1);
        ret += val_if_large;
    }
    ret as u32
}

/// Row-major `[seq_len, seq_len]` table of bucket ids for key index minus query index.
fn relative_position_buckets(seq_len: usize) -> Vec<u32> {
    // One bucket per distance in -(seq_len - 1)..=(seq_len - 1), then gathered per (q, k).
    let offset = seq_len as i64 - 1;
    let per_distance: Vec<u32> = (-offset..=offset)
        .map(|rel| {
            relative_position_bucket(rel, POSITION_BIAS_NUM_BUCKETS, POSITION_BIAS_MAX_DISTANCE)
        })
        .collect();
    let mut table = Vec::with_capacity(seq_len * seq_len);
    for q in 0..seq_len {
        // k - q + offset for k in 0..seq_len
        let start = seq_len - 1 - q;
        table.extend_from_slice(&per_distance[start..start + seq_len]);
    }
    table
}

/// `torch.finfo(dtype).min`, the additive mask value HF uses for padded keys.
fn mask_min_value(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => -65504.0,
        DType::BF16 => -3.3895313892515355e38,
        DType::F64 => f64::MIN,
        _ => f32::MIN as f64,
    }
}

#[derive(Debug, Clone)]
struct MPNetEmbeddings {
    word_embeddings: Embedding,
    position_embeddings: Embedding,
    layer_norm: LayerNorm,
}

impl MPNetEmbeddings {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let word_embeddings = embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("word_embeddings"))?;
        let position_embeddings = embedding(
            cfg.max_position_embeddings,
            cfg.hidden_size,
            vb.pp("position_embeddings"),
        )?;
        let layer_norm = layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("LayerNorm"))?;
        Ok(Self {
            word_embeddings,
            position_embeddings,
            layer_norm,
        })
    }

    fn forward(&self, input_ids: &Tensor, position_ids: &Tensor) -> Result<Tensor> {
        let _span = tracing::trace_span!("embeddings").entered();
        let words = self.word_embeddings.forward(input_ids)?;
        let positions = self.position_embeddings.forward(position_ids)?;
        self.layer_norm.forward(&(words + positions)?)
    }
}

#[derive(Debug, Clone)]
struct MPNetSelfAttention {
    /// `q`, `k` and `v` fused into one projection; `q` is pre-scaled by `1/sqrt(head_dim)`.
    qkv: Linear,
    o: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl MPNetSelfAttention {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let hidden = cfg.hidden_size;
        let head_dim = hidden / cfg.num_attention_heads;
        let q = linear(hidden, hidden, vb.pp("q"))?;
        let k = linear(hidden, hidden, vb.pp("k"))?;
        let v = linear(hidden, hidden, vb.pp("v"))?;
        let o = linear(hidden, hidden, vb.pp("o"))?;
        // HF divides q·kᵀ by sqrt(head_dim); folding the factor into q's weight and bias is
        // exact when head_dim is a power of four (e.g. 64) and saves a [b, h, s, s] pass.
        let scale = 1.0 / (head_dim as f64).sqrt();
        let weight = Tensor::cat(
            &[
                (q.weight() * scale)?,
                k.weight().clone(),
                v.weight().clone(),
            ],
            0,
        )?;
        let bias = match (q.bias(), k.bias(), v.bias()) {
            (Some(qb), Some(kb), Some(vb)) => {
                Tensor::cat(&[(qb * scale)?, kb.clone(), vb.clone()], 0)?
            }
            _ => bail!("MPNet: attention q/k/v projections must have biases"),
        };
        Ok(Self {
            qkv: Linear::new(weight, Some(bias)),
            o,
            num_heads: cfg.num_attention_heads,
            head_dim,
        })
    }

    /// `xs`: `[b, s, hidden]`; `bias`: `[b, heads, s, s]` (relative position bias + mask).
    fn forward(&self, xs: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (b, s, hidden) = xs.dims3()?;
        let span = tracing::trace_span!("self-attn").entered();
        let qkv = {
            let _span = tracing::trace_span!("linear").entered();
            self.qkv.forward(xs)?
        };
        let qkv = qkv
            .reshape((b, s, 3, self.num_heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?; // [3, b, heads, s, head_dim]
        let q = qkv.get(0)?;
        let k = qkv.get(1)?;
        let v = qkv.get(2)?;
        let scores = (q.matmul(&k.t()?)? + bias)?;
        let probs = {
            let _span = tracing::trace_span!("softmax").entered();
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let context = probs
            .matmul(&v)? // [b, heads, s, head_dim]
            .transpose(1, 2)?
            .reshape((b, s, hidden))?;
        drop(span);
        let _span = tracing::trace_span!("self-out").entered();
        let _span = tracing::trace_span!("linear").entered();
        self.o.forward(&context)
    }
}

#[derive(Debug, Clone)]
struct MPNetLayer {
    attn: MPNetSelfAttention,
    attention_layer_norm: LayerNorm,
    intermediate: Linear,
    activation: Activation,
    output: Linear,
    output_layer_norm: LayerNorm,
}

impl MPNetLayer {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let attention = vb.pp("attention");
        let attn = MPNetSelfAttention::load(attention.pp("attn"), cfg)?;
        let attention_layer_norm = layer_norm(
            cfg.hidden_size,
            cfg.layer_norm_eps,
            attention.pp("LayerNorm"),
        )?;
        let intermediate = linear(
            cfg.hidden_size,
            cfg.intermediate_size,
            vb.pp("intermediate").pp("dense"),
        )?;
        let output = vb.pp("output");
        let output_dense = linear(cfg.intermediate_size, cfg.hidden_size, output.pp("dense"))?;
        let output_layer_norm =
            layer_norm(cfg.hidden_size, cfg.layer_norm_eps, output.pp("LayerNorm"))?;
        Ok(Self {
            attn,
            attention_layer_norm,
            intermediate,
            activation: cfg.hidden_act,
            output: output_dense,
            output_layer_norm,
        })
    }

    fn forward(&self, xs: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let attention = self.attn.forward(xs, bias)?;
        let attention = {
            let _span = tracing::trace_span!("self-out").entered();
            let sum = (attention + xs)?;
            let _span = tracing::trace_span!("layer-norm").entered();
            self.attention_layer_norm.forward(&sum)?
        };
        let intermediate = {
            let _span = tracing::trace_span!("inter").entered();
            let up = {
                let _span = tracing::trace_span!("linear").entered();
                self.intermediate.forward(&attention)?
            };
            let _span = tracing::trace_span!("hidden-act").entered();
            self.activation.forward(&up)?
        };
        let _span = tracing::trace_span!("out").entered();
        let output = {
            let _span = tracing::trace_span!("linear").entered();
            self.output.forward(&intermediate)?
        };
        let sum = (output + attention)?;
        let _span = tracing::trace_span!("layer-norm").entered();
        self.output_layer_norm.forward(&sum)
    }
}

/// The MPNet encoder (`MPNetModel` without its pooler), returning the last hidden state.
#[derive(Debug, Clone)]
pub struct MPNetModel {
    embeddings: MPNetEmbeddings,
    layers: Vec<MPNetLayer>,
    relative_attention_bias: Embedding,
    pad_token_id: u32,
    vocab_size: usize,
    max_position_embeddings: usize,
    dtype: DType,
    device: Device,
}

impl MPNetModel {
    /// Builds the model from a checkpoint.
    ///
    /// Tensor names are looked up bare (`embeddings.word_embeddings.weight`,
    /// `encoder.layer.0.attention.attn.q.weight`, `encoder.relative_attention_bias.weight`, ...,
    /// as in sentence-transformers checkpoints). When `embeddings.word_embeddings.weight` is
    /// absent but `mpnet.embeddings.word_embeddings.weight` is present (`MPNetForMaskedLM`-style
    /// checkpoints), everything is loaded under the `mpnet.` prefix instead. The pooler and any
    /// LM head are not loaded.
    ///
    /// The model computes in `vb.dtype()`; [`MPNetModel::forward`] always returns `f32`.
    ///
    /// # Errors
    /// A [`candle_core::Error`] when `hidden_size` is not a multiple of `num_attention_heads`,
    /// `relative_attention_num_buckets` is below the 32 buckets the position bias uses, or a
    /// tensor is missing from `vb` or has the wrong shape.
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        const PROBE: &str = "embeddings.word_embeddings.weight";
        let vb = if !vb.contains_tensor(PROBE) && vb.contains_tensor(&format!("mpnet.{PROBE}")) {
            vb.pp("mpnet")
        } else {
            vb
        };
        Self::load_unprefixed(vb, cfg)
    }

    /// Loads with `vb` pointing directly at the `embeddings` / `encoder` level.
    fn load_unprefixed(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads)
        {
            bail!(
                "MPNet: hidden_size {} is not a multiple of num_attention_heads {}",
                cfg.hidden_size,
                cfg.num_attention_heads
            );
        }
        if cfg.relative_attention_num_buckets < POSITION_BIAS_NUM_BUCKETS {
            bail!(
                "MPNet: relative_attention_num_buckets {} is below the {} buckets the position \
                 bias uses (as in Hugging Face transformers)",
                cfg.relative_attention_num_buckets,
                POSITION_BIAS_NUM_BUCKETS
            );
        }
        let embeddings = MPNetEmbeddings::load(vb.pp("embeddings"), cfg)?;
        let encoder = vb.pp("encoder");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| MPNetLayer::load(encoder.pp("layer").pp(i), cfg))
            .collect::<Result<Vec<_>>>()?;
        let relative_attention_bias = embedding(
            cfg.relative_attention_num_buckets,
            cfg.num_attention_heads,
            encoder.pp("relative_attention_bias"),
        )?;
        Ok(Self {
            embeddings,
            layers,
            relative_attention_bias,
            pad_token_id: cfg.pad_token_id,
            vocab_size: cfg.vocab_size,
            max_position_embeddings: cfg.max_position_embeddings,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs the encoder and returns the last hidden state.
    ///
    /// Position ids are derived from `input_ids` as in HF's
    /// `create_position_ids_from_input_ids` (non-padding tokens get `pad_token_id + 1`,
    /// `pad_token_id + 2`, ...; padding tokens get `pad_token_id`), while `attention_mask`
    /// decides which keys are attended to.
    ///
    /// # Shapes
    ///
    /// - `input_ids`: `[batch, seq]`, `u32` (other integer dtypes are converted).
    /// - `attention_mask`: `[batch, seq]`, `u32` or float; 1 for real tokens, 0 for padding.
    /// - returns: `[batch, seq, hidden_size]`, `f32`.
    ///
    /// # Errors
    ///
    /// Fails on mismatched or non-2D shapes, an empty batch or sequence, float `input_ids`,
    /// token ids outside the vocabulary, or more tokens than the position table supports
    /// (512 for `max_position_embeddings = 514`).
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let Ok((batch, seq_len)) = input_ids.dims2() else {
            bail!(
                "MPNet: input_ids must have shape [batch, seq], got {:?}",
                input_ids.shape()
            )
        };
        if attention_mask.dims() != [batch, seq_len] {
            bail!(
                "MPNet: attention_mask must have the shape of input_ids {:?}, got {:?}",
                input_ids.shape(),
                attention_mask.shape()
            );
        }
        if batch == 0 || seq_len == 0 {
            bail!(
                "MPNet: empty input (input_ids shape {:?})",
                input_ids.shape()
            );
        }
        let input_ids = match input_ids.dtype() {
            DType::U32 => input_ids.clone(),
            DType::U8 | DType::I64 => input_ids.to_dtype(DType::U32)?,
            dtype => bail!("MPNet: input_ids must be integer token ids, got dtype {dtype:?}"),
        };

        // create_position_ids_from_input_ids, computed on the host alongside the id checks.
        let ids = input_ids.to_vec2::<u32>()?;
        let pad = self.pad_token_id;
        let mut positions = Vec::with_capacity(batch * seq_len);
        for row in &ids {
            let mut count = 0u32;
            for &id in row {
                if id as usize >= self.vocab_size {
                    bail!(
                        "MPNet: token id {id} is outside the vocabulary (size {})",
                        self.vocab_size
                    );
                }
                if id == pad {
                    positions.push(pad);
                } else {
                    count += 1;
                    positions.push(count + pad);
                }
            }
            if (count + pad) as usize >= self.max_position_embeddings {
                bail!(
                    "MPNet: a sequence has {count} non-padding tokens; at most {} are supported \
                     (max_position_embeddings {}, pad_token_id {pad})",
                    self.max_position_embeddings
                        .saturating_sub(pad as usize + 1),
                    self.max_position_embeddings
                );
            }
        }
        let input_ids = input_ids.to_device(&self.device)?;
        let position_ids = Tensor::from_vec(positions, (batch, seq_len), &self.device)?;

        let bias_span = tracing::trace_span!("mask-and-position-bias").entered();
        // Extended attention mask: (1 - mask) * finfo(dtype).min, shape [b, 1, 1, s].
        let mask = attention_mask
            .to_device(&self.device)?
            .to_dtype(self.dtype)?
            .reshape((batch, 1, 1, seq_len))?;
        let mask = ((1.0 - mask)? * mask_min_value(self.dtype))?;

        // Relative position bias, computed once and shared by every layer: [1, heads, s, s].
        let buckets = Tensor::from_vec(
            relative_position_buckets(seq_len),
            (seq_len, seq_len),
            &self.device,
        )?;
        let position_bias = self
            .relative_attention_bias
            .forward(&buckets)? // [s, s, heads]
            .permute((2, 0, 1))?
            .unsqueeze(0)?;
        // HF adds the bias and then the mask to the scores; adding them together first gives the
        // same result on real keys (mask 0) and a large negative value on padded keys.
        let bias = position_bias.broadcast_add(&mask)?.contiguous()?; // [b, heads, s, s]
        drop(bias_span);

        let mut hidden = self.embeddings.forward(&input_ids, &position_ids)?;
        for layer in &self.layers {
            hidden = layer.forward(&hidden, &bias)?;
        }
        hidden.to_dtype(DType::F32)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    fn tiny_config() -> Config {
        serde_json::from_str(
            r#"{
                "vocab_size": 100,
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "intermediate_size": 64,
                "hidden_act": "gelu",
                "max_position_embeddings": 40,
                "attention_probs_dropout_prob": 0.1
            }"#,
        )
        .unwrap()
    }

    fn tiny_model() -> (VarMap, MPNetModel) {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = MPNetModel::load(vb, &tiny_config()).unwrap();
        (varmap, model)
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn config_defaults() {
        let cfg = tiny_config();
        assert_eq!(cfg.hidden_act, Activation::Gelu);
        assert_eq!(cfg.relative_attention_num_buckets, 32);
        assert_eq!(cfg.pad_token_id, 1);
        assert!((cfg.layer_norm_eps - 1e-5).abs() < 1e-12);
    }

    #[test]
    fn bucket_matches_hf_formula() {
        let b = |rel| relative_position_bucket(rel, 32, 128);
        assert_eq!(b(0), 0);
        // key before query: n = -rel > 0, small distances map to themselves.
        assert_eq!(b(-1), 1);
        assert_eq!(b(-7), 7);
        // n = 8: max_exact + trunc(log(1) / log(16) * 8) = 8.
        assert_eq!(b(-8), 8);
        // n = 20: 8 + trunc(log(2.5) / log(16) * 8) = 8 + trunc(2.64) = 10.
        assert_eq!(b(-20), 10);
        // n = 127: 8 + trunc(log(15.875) / log(16) * 8) = 8 + trunc(7.98) = 15.
        assert_eq!(b(-127), 15);
        // n = 200 and beyond saturate at num_buckets / 2 - 1 = 15.
        assert_eq!(b(-200), 15);
        assert_eq!(b(-1000), 15);
        // key after query: offset by num_buckets / 2 = 16.
        assert_eq!(b(1), 17);
        assert_eq!(b(7), 23);
        // n = 10: 16 + 8 + trunc(log(1.25) / log(16) * 8) = 16 + 8 + trunc(0.64) = 24.
        assert_eq!(b(10), 24);
        assert_eq!(b(20), 26);
        assert_eq!(b(300), 31);
        // Exact powers: n = 16 -> 8 + 2, n = 32 -> 8 + 4.
        assert_eq!(b(-16), 10);
        assert_eq!(b(-32), 12);
    }

    #[test]
    fn bucket_table_layout() {
        let s = 5;
        let table = relative_position_buckets(s);
        assert_eq!(table.len(), s * s);
        for q in 0..s {
            for k in 0..s {
                assert_eq!(
                    table[q * s + k],
                    relative_position_bucket(k as i64 - q as i64, 32, 128)
                );
            }
        }
    }

    #[test]
    fn output_shape_and_dtype() {
        let (_varmap, model) = tiny_model();
        let ids = Tensor::new(&[[0u32, 5, 6, 7, 2], [0, 8, 9, 2, 1]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 1, 1, 1], [1, 1, 1, 1, 0]], &Device::Cpu).unwrap();
        let out = model.forward(&ids, &mask).unwrap();
        assert_eq!(out.dims(), &[2, 5, 32]);
        assert_eq!(out.dtype(), DType::F32);
        let values = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()));
        // A float mask gives the same result as an integer one.
        let out_f = model
            .forward(&ids, &mask.to_dtype(DType::F32).unwrap())
            .unwrap();
        assert!(max_abs_diff(&out, &out_f) == 0.0);
    }

    #[test]
    fn padding_does_not_change_real_tokens() {
        let (_varmap, model) = tiny_model();
        let dev = Device::Cpu;
        let short = [0u32, 5, 6, 7, 2];
        let long = [0u32, 8, 9, 10, 11, 12, 13, 2];
        let alone = model
            .forward(
                &Tensor::new(&[short], &dev).unwrap(),
                &Tensor::new(&[[1u32; 5]], &dev).unwrap(),
            )
            .unwrap();
        let ids = Tensor::new(&[[0u32, 5, 6, 7, 2, 1, 1, 1], long], &dev).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 1, 1, 1, 0, 0, 0], [1; 8]], &dev).unwrap();
        let batched = model.forward(&ids, &mask).unwrap();
        let real = batched.get(0).unwrap().narrow(0, 0, 5).unwrap();
        let diff = max_abs_diff(&alone.get(0).unwrap(), &real);
        assert!(diff < 1e-4, "padding changed real tokens by {diff}");
        let long_alone = model
            .forward(
                &Tensor::new(&[long], &dev).unwrap(),
                &Tensor::new(&[[1u32; 8]], &dev).unwrap(),
            )
            .unwrap();
        let diff = max_abs_diff(&long_alone.get(0).unwrap(), &batched.get(1).unwrap());
        assert!(diff < 1e-4, "batching changed the long sentence by {diff}");
    }

    #[test]
    fn mpnet_prefix_variant_loads() {
        let cfg = tiny_config();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        // Populate the map with `mpnet.`-prefixed tensors only.
        let reference = MPNetModel::load_unprefixed(vb.pp("mpnet"), &cfg).unwrap();
        let n_vars = varmap.all_vars().len();
        {
            let data = varmap.data().lock().unwrap();
            assert!(data.contains_key("mpnet.embeddings.word_embeddings.weight"));
            assert!(data.contains_key("mpnet.encoder.layer.1.attention.attn.o.weight"));
            assert!(data.contains_key("mpnet.encoder.relative_attention_bias.weight"));
            assert!(!data.keys().any(|k| !k.starts_with("mpnet.")));
        }
        let model = MPNetModel::load(vb, &cfg).unwrap();
        // The detection picked the prefixed tensors instead of creating bare ones.
        assert_eq!(varmap.all_vars().len(), n_vars);
        let ids = Tensor::new(&[[0u32, 5, 6, 7, 2]], &Device::Cpu).unwrap();
        let mask = ids.ones_like().unwrap();
        let a = reference.forward(&ids, &mask).unwrap();
        let b = model.forward(&ids, &mask).unwrap();
        assert!(max_abs_diff(&a, &b) == 0.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let (_varmap, model) = tiny_model();
        let dev = Device::Cpu;
        let ids = Tensor::new(&[[0u32, 5, 2]], &dev).unwrap();
        let mask = Tensor::new(&[[1u32, 1]], &dev).unwrap();
        let err = model.forward(&ids, &mask).unwrap_err().to_string();
        assert!(err.contains("attention_mask"), "{err}");
        let flat = Tensor::new(&[0u32, 5, 2], &dev).unwrap();
        let err = model.forward(&flat, &flat).unwrap_err().to_string();
        assert!(err.contains("[batch, seq]"), "{err}");
        let oov = Tensor::new(&[[0u32, 500, 2]], &dev).unwrap();
        let err = model
            .forward(&oov, &oov.ones_like().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("vocabulary"), "{err}");
        // max_position_embeddings = 40 and pad 1 allow 38 real tokens.
        let ok = Tensor::new(&[[3u32; 38]], &dev).unwrap();
        assert!(model.forward(&ok, &ok.ones_like().unwrap()).is_ok());
        let long = Tensor::new(&[[3u32; 39]], &dev).unwrap();
        let err = model
            .forward(&long, &long.ones_like().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("non-padding tokens"), "{err}");
    }

    #[test]
    fn bad_config_is_error() {
        let mut cfg = tiny_config();
        cfg.num_attention_heads = 5;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        assert!(MPNetModel::load(vb, &cfg).is_err());
    }
}
