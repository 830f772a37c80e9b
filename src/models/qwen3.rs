//! Qwen3 as a text embedder (Qwen3-Embedding), through candle-transformers' implementation.
//!
//! - Model: Zhang et al., 2025, "Qwen3 Embedding: Advancing Text Embedding and Reranking Through
//!   Foundation Models", [arXiv:2506.05176](https://arxiv.org/abs/2506.05176). A decoder: causal
//!   attention, so a text's vector is the state of its last token (the tokenizer appends
//!   `<|endoftext|>`), taken by [`Pooling::LastToken`](crate::encoder::Pooling::LastToken); queries
//!   carry an instruction prompt (`Instruct: {task}\nQuery: `).
//! - candle-transformers' `qwen3::Model` was checked against transformers 5's `modeling_qwen3.py`:
//!   pre-RMSNorm layers, grouped-query attention with per-head RMSNorm of q and k before the
//!   rotary embedding, SwiGLU MLP, final norm. Its loader wants causal-LM tensor names (`model.`
//!   prefix); a sentence-transformers folder (bare `Qwen3Model` names) is read through a renaming.
//!   Its `forward` keeps a KV cache, so each call runs on a fresh copy of the (cheaply cloned)
//!   model.
//! - Padding: batches are padded on the right. Attention is causal, so a text's tokens never see
//!   the padding after them, and positions start at 0 for every text; sentence-transformers pads
//!   Qwen3-Embedding on the left, which shifts every position of a text by the same amount and
//!   leaves the rotary attention scores, and so the vectors, the same up to rounding.
//! - Refused when the configuration is read: sliding-window attention and rotary scaling.

use candle_core::{Result, Tensor};
use candle_nn::{Activation, VarBuilder};
use candle_transformers::models::qwen3 as candle_qwen3;
use serde::Deserialize;

fn default_eps() -> f64 {
    1e-6
}

fn default_act() -> Activation {
    Activation::Silu
}

/// Qwen3 configuration as written by transformers 4.51+ (`rope_theta`) or 5 (`rope_parameters`).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Size of the token vocabulary.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Width of the SwiGLU block.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention); must divide the query heads.
    pub num_key_value_heads: usize,
    /// Width of each head (`hidden_size / num_attention_heads` when absent).
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Whether q/k/v/o have biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Number of positions the rotary tables cover.
    pub max_position_embeddings: usize,
    /// Epsilon of every RMSNorm.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// The rotary base (transformers 4).
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// transformers 5: `{"rope_type": "default", "rope_theta": ...}`.
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    /// Rotary scaling (transformers 4; not supported).
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Sliding-window attention (not supported).
    #[serde(default)]
    pub use_sliding_window: bool,
    /// The MLP activation (`silu`).
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
}

impl Config {
    /// The width of each head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Checks what candle's Qwen3 does not implement, and builds its configuration.
    ///
    /// # Errors
    /// A sentence naming the unsupported field.
    pub fn to_candle(&self) -> std::result::Result<candle_qwen3::Config, String> {
        super::rope::check_table_length(self.max_position_embeddings)?;
        if self.use_sliding_window {
            return Err("use_sliding_window: true is not supported".into());
        }
        let scaled = self.rope_scaling.as_ref().is_some_and(|v| !v.is_null())
            || self.rope_parameters.as_ref().is_some_and(|p| {
                p.get("rope_type")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|t| t != "default")
            });
        if scaled {
            return Err("rotary scaling is not supported".into());
        }
        let (heads, kv) = (self.num_attention_heads, self.num_key_value_heads);
        if heads == 0 || kv == 0 || !heads.is_multiple_of(kv) {
            return Err(format!(
                "num_key_value_heads ({kv}) must be at least 1 and divide num_attention_heads \
                 ({heads})"
            ));
        }
        if self.head_dim() == 0 || !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "head_dim ({}) must be even and non-zero",
                self.head_dim()
            ));
        }
        let theta = self
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(serde_json::Value::as_f64)
            .or(self.rope_theta)
            .unwrap_or(1_000_000.0);
        Ok(candle_qwen3::Config {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: heads,
            head_dim: self.head_dim(),
            attention_bias: self.attention_bias,
            num_key_value_heads: kv,
            max_position_embeddings: self.max_position_embeddings,
            sliding_window: None,
            max_window_layers: self.num_hidden_layers,
            tie_word_embeddings: false,
            rope_theta: theta,
            rms_norm_eps: self.rms_norm_eps,
            use_sliding_window: false,
            hidden_act: self.hidden_act,
        })
    }
}

/// The Qwen3 decoder (`Qwen3Model`), returning the last hidden state (after the final norm).
#[derive(Clone)]
pub struct Qwen3Model {
    inner: candle_qwen3::Model,
}

impl std::fmt::Debug for Qwen3Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Qwen3Model")
    }
}

impl Qwen3Model {
    /// Loads the weights: bare `Qwen3Model` names (sentence-transformers) or causal-LM names
    /// under `model.` (the language-model head, if any, is not read).
    ///
    /// # Errors
    /// When the configuration is one [`Config::to_candle`] refuses, or a tensor is missing or has
    /// the wrong shape.
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let config = cfg.to_candle().map_err(candle_core::Error::msg)?;
        let vb = if vb.contains_tensor("model.embed_tokens.weight") {
            vb
        } else {
            vb.rename_f(|name: &str| name.strip_prefix("model.").unwrap_or(name).to_string())
        };
        Ok(Self {
            inner: candle_qwen3::Model::new(&config, vb)?,
        })
    }

    /// Runs the decoder on right-padded texts (causal attention: the padding after a text's
    /// tokens never reaches them, so no mask is needed).
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, seq]` u32, each row a text followed by padding
    /// - returns `[batch, seq, hidden]` f32
    ///
    /// # Errors
    /// When a token id is outside the vocabulary or the sequence is longer than the rotary
    /// tables.
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        // candle's forward appends to a KV cache: run a fresh copy (tensors are shared, not
        // copied), whose cache starts empty.
        let mut model = self.inner.clone();
        model.forward(input_ids, 0)
    }
}
