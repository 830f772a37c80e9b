//! Nomic-BERT (nomic-embed-text, nomic-bert-2048), through candle-transformers' implementation,
//! with a configuration that reads both forms of its config.json.
//!
//! - Paper: Nussbaum et al., 2024, "Nomic Embed: Training a Reproducible Long Context Text
//!   Embedder", [arXiv:2402.01613](https://arxiv.org/abs/2402.01613).
//! - The checkpoints' own config.json (remote code `nomic-ai/nomic-bert-2048`) uses GPT-2 field
//!   names (`n_embd`, `n_head`, `n_layer`, `n_inner`, `n_positions`, `rotary_emb_base`, ...);
//!   transformers 5's native `NomicBertConfig` uses BERT names (`hidden_size`, ...,
//!   `rope_parameters`). Both are read here. Tensor names are the original ones
//!   (`embeddings.word_embeddings`, `emb_ln`, `encoder.layers.N.{attn.Wqkv, attn.out_proj,
//!   mlp.fc11, mlp.fc12, mlp.fc2, norm1, norm2}`), which transformers 5 also writes back.
//! - candle-transformers' `nomic_bert::NomicBertModel` was checked against transformers 5's
//!   `modeling_nomic_bert.py`: post-LayerNorm blocks, fused Wqkv, non-interleaved rotary
//!   embeddings on the whole head, SwiGLU (`fc11(x) * silu(fc12(x))`), LayerNorm after the
//!   embeddings. What it does not implement is refused when the configuration is read: an
//!   activation other than SwiGLU, partial or interleaved rotary embeddings, parallel blocks.
//!   With `rotary_scaling_factor` set (dynamic NTK past the trained length), the usable length
//!   is capped at `max_trained_positions`, where the scaling does not apply.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::nomic_bert as candle_nomic;
use serde::Deserialize;

fn default_vocab_size() -> usize {
    30528
}

fn default_type_vocab_size() -> usize {
    2
}

fn default_eps() -> f64 {
    1e-12
}

fn default_positions() -> usize {
    2048
}

fn default_one() -> f64 {
    1.0
}

fn default_activation() -> String {
    "swiglu".into()
}

/// Nomic-BERT configuration, in either naming.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Size of the token vocabulary.
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    /// Width of the hidden states.
    #[serde(alias = "n_embd")]
    pub hidden_size: usize,
    /// Number of transformer layers.
    #[serde(alias = "n_layer")]
    pub num_hidden_layers: usize,
    /// Number of attention heads; must divide `hidden_size`.
    #[serde(alias = "n_head")]
    pub num_attention_heads: usize,
    /// Width of the SwiGLU block.
    #[serde(alias = "n_inner")]
    pub intermediate_size: usize,
    /// Number of positions the rotary tables cover.
    #[serde(default = "default_positions", alias = "n_positions")]
    pub max_position_embeddings: usize,
    /// The length the model was trained at (remote-code configs).
    #[serde(default)]
    pub max_trained_positions: Option<usize>,
    /// Rows of the token-type table (0: none).
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// Epsilon of every LayerNorm.
    #[serde(default = "default_eps", alias = "layer_norm_epsilon")]
    pub layer_norm_eps: f64,
    /// The rotary base (remote-code configs).
    #[serde(default)]
    pub rotary_emb_base: Option<f64>,
    /// transformers 5: `{"rope_type": "default", "rope_theta": ...}`.
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    /// The share of each head that is rotated (1 only).
    #[serde(default = "default_one")]
    pub rotary_emb_fraction: f64,
    /// Interleaved (GPT-J) rotary layout (not supported by the checks here: `false` only).
    #[serde(default)]
    pub rotary_emb_interleaved: bool,
    /// Dynamic NTK scaling past `max_trained_positions`.
    #[serde(default)]
    pub rotary_scaling_factor: Option<f64>,
    /// Remote-code activation name (`swiglu` only).
    #[serde(default = "default_activation")]
    pub activation_function: String,
    /// transformers 5 activation name of the gate (`silu` only).
    #[serde(default)]
    pub hidden_act: Option<String>,
    /// Biases of the attention projections.
    #[serde(default)]
    pub qkv_proj_bias: bool,
    /// Biases of the two input projections of the SwiGLU block.
    #[serde(default)]
    pub mlp_fc1_bias: bool,
    /// Bias of the output projection of the SwiGLU block.
    #[serde(default)]
    pub mlp_fc2_bias: bool,
    /// Pre-LayerNorm blocks.
    #[serde(default)]
    pub prenorm: bool,
    /// Parallel attention and MLP (not supported).
    #[serde(default)]
    pub parallel_block: bool,
}

impl Config {
    /// The longest input the model runs exactly: the rotary table's length, capped at the trained
    /// length when dynamic NTK scaling would start beyond it.
    pub fn max_tokens(&self) -> usize {
        match (self.rotary_scaling_factor, self.max_trained_positions) {
            (Some(_), Some(trained)) => trained.min(self.max_position_embeddings),
            _ => self.max_position_embeddings,
        }
    }

    /// Checks what candle's Nomic-BERT does not implement, and builds its configuration.
    ///
    /// # Errors
    /// A sentence naming the unsupported field.
    pub fn to_candle(&self) -> std::result::Result<candle_nomic::Config, String> {
        if self.activation_function != "swiglu" {
            return Err(format!(
                "activation_function `{}` is not supported (only swiglu)",
                self.activation_function
            ));
        }
        if let Some(act) = self.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Err(format!("hidden_act `{act}` is not supported (only silu)"));
        }
        if self.rotary_emb_fraction != 1.0 || self.rotary_emb_interleaved {
            return Err(
                "partial or interleaved rotary embeddings are not supported (rotary_emb_fraction \
                 must be 1, rotary_emb_interleaved false)"
                    .into(),
            );
        }
        super::rope::check_table_length(self.max_position_embeddings)?;
        if self.parallel_block {
            return Err("parallel_block: true is not supported".into());
        }
        if self.rotary_scaling_factor.is_some() && self.max_trained_positions.is_none() {
            return Err("rotary_scaling_factor needs max_trained_positions".into());
        }
        let scaled = self.rope_parameters.as_ref().is_some_and(|p| {
            p.get("rope_type")
                .and_then(serde_json::Value::as_str)
                .is_some_and(|t| t != "default")
        });
        if scaled {
            return Err("rope_parameters.rope_type other than `default` is not supported".into());
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "num_attention_heads ({}) must divide hidden_size ({})",
                self.num_attention_heads, self.hidden_size
            ));
        }
        let base = self
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(serde_json::Value::as_f64)
            .or(self.rotary_emb_base)
            .unwrap_or(1000.0);
        Ok(candle_nomic::Config {
            vocab_size: self.vocab_size,
            n_embd: self.hidden_size,
            n_head: self.num_attention_heads,
            n_layer: self.num_hidden_layers,
            n_inner: self.intermediate_size,
            n_positions: self.max_tokens(),
            type_vocab_size: self.type_vocab_size,
            layer_norm_epsilon: self.layer_norm_eps,
            rotary_emb_fraction: 1.0,
            rotary_emb_base: base,
            rotary_emb_interleaved: false,
            qkv_proj_bias: self.qkv_proj_bias,
            mlp_fc1_bias: self.mlp_fc1_bias,
            mlp_fc2_bias: self.mlp_fc2_bias,
            activation_function: "swiglu".into(),
            prenorm: self.prenorm,
            model_type: Some("nomic_bert".into()),
        })
    }
}

/// The Nomic-BERT encoder (`NomicBertModel`), returning the last hidden state.
pub struct NomicBertModel {
    inner: candle_nomic::NomicBertModel,
}

impl std::fmt::Debug for NomicBertModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NomicBertModel")
    }
}

impl NomicBertModel {
    /// Loads the weights (original tensor names, bare or under `nomic_bert.`).
    ///
    /// # Errors
    /// When the configuration is one [`Config::to_candle`] refuses, or a tensor is missing or has
    /// the wrong shape.
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let config = cfg.to_candle().map_err(candle_core::Error::msg)?;
        Ok(Self {
            inner: candle_nomic::NomicBertModel::load(vb, &config)?,
        })
    }

    /// Runs the encoder.
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, seq]` u32
    /// - `attention_mask`: `[batch, seq]` u32, 1 = token, 0 = padding
    /// - returns `[batch, seq, hidden]` f32
    ///
    /// # Errors
    /// When the shapes disagree or a token id is outside the vocabulary.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        self.inner.forward(input_ids, None, Some(attention_mask))
    }
}
