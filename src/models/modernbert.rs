//! ModernBERT, through candle-transformers' implementation, with a configuration that reads every
//! form of ModernBERT's config.json.
//!
//! - Paper: Warner et al., 2024, "Smarter, Better, Faster, Longer: A Modern Bidirectional Encoder
//!   for Fast, Memory Efficient, and Long Context Finetuning and Inference",
//!   [arXiv:2412.13663](https://arxiv.org/abs/2412.13663).
//! - candle-transformers' `modernbert::ModernBert` was checked against transformers 5's
//!   `modeling_modernbert.py`: pre-LayerNorm layers without biases (the first layer's attention
//!   norm is the identity), GeGLU feed-forward (`Wi` → `gelu(input) * gate` → `Wo`), global
//!   attention every `global_attn_every_n_layers` layers and a sliding window of
//!   `local_attention / 2` tokens on each side elsewhere, each kind with its own rotary base, and
//!   the final norm. Its loader wants the masked-LM tensor names (`model.` prefix); a
//!   sentence-transformers folder (bare `ModernBertModel` names) is read through a renaming.
//! - What candle does not implement is refused when the configuration is read: biases
//!   (`norm_bias`, `attention_bias`, `mlp_bias`), an activation other than GELU, rotary scaling, and
//!   a `layer_types` list that is not "global every n layers".

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::modernbert as candle_modernbert;
use serde::Deserialize;

fn default_norm_eps() -> f64 {
    1e-5
}

fn default_global_every() -> usize {
    3
}

fn default_local_attention() -> usize {
    128
}

fn default_pad_token_id() -> u32 {
    50283
}

fn default_max_position_embeddings() -> usize {
    8192
}

fn default_activation() -> String {
    "gelu".into()
}

/// ModernBERT configuration as written by transformers 4.48+ (`global_rope_theta`,
/// `global_attn_every_n_layers`, ...) or transformers 5 (`rope_parameters`, `layer_types`).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Size of the token vocabulary.
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Number of attention heads; must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of each half of the GeGLU block.
    pub intermediate_size: usize,
    /// Number of position the model was trained for.
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    /// Epsilon of every LayerNorm (1e-5 when absent).
    #[serde(default = "default_norm_eps", alias = "layer_norm_eps")]
    pub norm_eps: f64,
    /// Whether the LayerNorms have biases (not supported).
    #[serde(default)]
    pub norm_bias: bool,
    /// Whether the attention projections have biases (not supported).
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether the feed-forward projections have biases (not supported).
    #[serde(default)]
    pub mlp_bias: bool,
    /// The activation of the GeGLU block (`gelu` only).
    #[serde(default = "default_activation")]
    pub hidden_activation: String,
    /// The padding token id.
    #[serde(default = "default_pad_token_id")]
    pub pad_token_id: u32,
    /// Every n-th layer (from 0) attends globally, the others locally.
    #[serde(default = "default_global_every")]
    pub global_attn_every_n_layers: usize,
    /// transformers 5: each layer's kind, `full_attention` or `sliding_attention`.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// The width of the local attention window (`local_attention / 2` tokens on each side).
    #[serde(default = "default_local_attention")]
    pub local_attention: usize,
    /// The rotary base of the global layers (160000 when absent).
    #[serde(default)]
    pub global_rope_theta: Option<f64>,
    /// The rotary base of the local layers (10000 when absent).
    #[serde(default)]
    pub local_rope_theta: Option<f64>,
    /// transformers 5: `{"full_attention": {"rope_theta": ...}, "sliding_attention": {...}}`.
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    /// Rotary scaling (not supported).
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
}

impl Config {
    fn theta(&self, kind: &str, legacy: Option<f64>, default: f64) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.get(kind))
            .and_then(|p| p.get("rope_theta"))
            .and_then(serde_json::Value::as_f64)
            .or(legacy)
            .unwrap_or(default)
    }

    /// The period of global layers: `global_attn_every_n_layers`, or the one `layer_types`
    /// follows.
    fn global_every(&self) -> std::result::Result<usize, String> {
        let Some(types) = &self.layer_types else {
            return Ok(self.global_attn_every_n_layers.max(1));
        };
        let global: Vec<bool> = types.iter().map(|t| t == "full_attention").collect();
        if let Some(bad) = types
            .iter()
            .find(|t| *t != "full_attention" && *t != "sliding_attention")
        {
            return Err(format!("layer_types holds `{bad}`"));
        }
        let every = global
            .iter()
            .skip(1)
            .position(|g| *g)
            .map_or(global.len().max(1), |p| p + 1);
        let periodic = global
            .iter()
            .enumerate()
            .all(|(i, g)| *g == (i % every == 0));
        if global.len() != self.num_hidden_layers || !periodic {
            return Err(format!(
                "layer_types {types:?} is not \"full attention every n layers from layer 0\", the \
                 only pattern relstitch runs"
            ));
        }
        Ok(every)
    }

    /// Checks what candle's ModernBERT does not implement, and builds its configuration.
    ///
    /// # Errors
    /// A sentence naming the unsupported field.
    pub fn to_candle(&self) -> std::result::Result<candle_modernbert::Config, String> {
        if self.norm_bias || self.attention_bias || self.mlp_bias {
            return Err("biases (norm_bias, attention_bias, mlp_bias) are not supported".into());
        }
        super::rope::check_table_length(self.max_position_embeddings)?;
        if self.hidden_activation != "gelu" {
            return Err(format!(
                "hidden_activation `{}` is not supported (only gelu)",
                self.hidden_activation
            ));
        }
        let scaled = self.rope_scaling.as_ref().is_some_and(|v| !v.is_null())
            || self.rope_parameters.as_ref().is_some_and(|p| {
                ["full_attention", "sliding_attention"].iter().any(|k| {
                    p.get(k)
                        .and_then(|v| v.get("rope_type"))
                        .and_then(serde_json::Value::as_str)
                        .is_some_and(|t| t != "default")
                })
            });
        if scaled {
            return Err("rotary scaling is not supported".into());
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "num_attention_heads ({}) must divide hidden_size ({})",
                self.num_attention_heads, self.hidden_size
            ));
        }
        Ok(candle_modernbert::Config {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            intermediate_size: self.intermediate_size,
            max_position_embeddings: self.max_position_embeddings,
            layer_norm_eps: self.norm_eps,
            pad_token_id: self.pad_token_id,
            global_attn_every_n_layers: self.global_every()?,
            global_rope_theta: self.theta("full_attention", self.global_rope_theta, 160_000.0),
            local_attention: self.local_attention,
            local_rope_theta: self.theta("sliding_attention", self.local_rope_theta, 10_000.0),
            classifier_config: None,
        })
    }
}

/// The ModernBERT encoder (`ModernBertModel`), returning the last hidden state (after the final
/// norm).
#[derive(Clone)]
pub struct ModernBertModel {
    inner: candle_modernbert::ModernBert,
}

impl std::fmt::Debug for ModernBertModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModernBertModel")
    }
}

impl ModernBertModel {
    /// Loads the weights: bare `ModernBertModel` names (sentence-transformers) or masked-LM
    /// names under `model.`.
    ///
    /// # Errors
    /// When the configuration is one [`Config::to_candle`] refuses, or a tensor is missing or has
    /// the wrong shape.
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let config = cfg.to_candle().map_err(candle_core::Error::msg)?;
        let vb = if vb.contains_tensor("model.embeddings.tok_embeddings.weight") {
            vb
        } else {
            // candle asks for `model.X`; the file has `X`.
            vb.rename_f(|name: &str| name.strip_prefix("model.").unwrap_or(name).to_string())
        };
        Ok(Self {
            inner: candle_modernbert::ModernBert::load(vb, &config)?,
        })
    }

    /// Runs the encoder.
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, seq]` u32
    /// - `attention_mask`: `[batch, seq]`, 1 = token, 0 = padding
    /// - returns `[batch, seq, hidden]` f32
    ///
    /// # Errors
    /// When the shapes disagree or a token id is outside the vocabulary.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        self.inner.forward(input_ids, attention_mask)
    }
}
