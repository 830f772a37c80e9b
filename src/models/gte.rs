//! GTE v1.5 / multilingual encoder (Alibaba-NLP's `new` architecture), inference only.
//!
//! A BERT-style post-LayerNorm encoder with three changes: rotary position embeddings instead of
//! absolute ones, q/k/v fused into one projection (`qkv_proj`), and a gated feed-forward block
//! (`up_gate_proj` → `act(gate) * up` → `down_proj`).
//!
//! - Paper: Zhang et al., 2024, "mGTE: Generalized Long-Context Text Representation and Reranking
//!   Models for Multilingual Text Retrieval", [arXiv:2407.19669](https://arxiv.org/abs/2407.19669).
//! - Checkpoints: `Alibaba-NLP/gte-base-en-v1.5`, `gte-large-en-v1.5`, `gte-multilingual-base`
//!   (`model_type: "new"`, remote code `Alibaba-NLP/new-impl`), and the same weights under
//!   transformers' native port (`model_type: "gte"`, `GteModel`), whose `save_pretrained` writes
//!   the original tensor names again.
//! - This implementation follows transformers 5's `modeling_gte.py` (the port of
//!   `new-impl`'s `NewModel` without the pooler, no dropout) and reads the original tensor names:
//!   `embeddings.{word_embeddings, token_type_embeddings, LayerNorm}`,
//!   `encoder.layer.N.{attention.qkv_proj, attention.o_proj, attn_ln, mlp.up_gate_proj,
//!   mlp.down_proj, mlp_ln}`, optionally under `new.` (masked-LM checkpoints).
//!
//! ```no_run
//! # fn main() -> candle_core::Result<()> {
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::VarBuilder;
//! use relstitch::models::gte::{Config, GteModel};
//!
//! let device = Device::Cpu;
//! let config: Config = serde_json::from_str(&std::fs::read_to_string("config.json")?)
//!     .map_err(candle_core::Error::wrap)?;
//! let vb = unsafe {
//!     VarBuilder::from_mmaped_safetensors(&["model.safetensors"], DType::F32, &device)?
//! };
//! let model = GteModel::load(vb, &config)?;
//! let input_ids = Tensor::new(&[[101u32, 2023, 2003, 1037, 3231, 102]], &device)?;
//! let hidden = model.forward(&input_ids, &input_ids.ones_like()?)?; // [1, 6, hidden]
//! # Ok(()) }
//! ```

use candle_core::{DType, Result, Tensor, D};
use candle_nn::{embedding, layer_norm, linear, linear_no_bias, Activation, Embedding};
use candle_nn::{LayerNorm, Linear, Module, VarBuilder};
use serde::Deserialize;

use super::rope::{Rotary, RotaryTables};

fn default_hidden_act() -> Activation {
    Activation::Gelu
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}

fn default_max_position_embeddings() -> usize {
    8192
}

fn default_position_embedding_type() -> String {
    "rope".into()
}

fn default_layer_norm_type() -> String {
    "layer_norm".into()
}

fn default_true() -> bool {
    true
}

/// GTE configuration, deserialisable from both a `new` (remote-code) and a `gte`
/// (transformers-native) `config.json`.
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
    /// Width of each half of the gated feed-forward block.
    pub intermediate_size: usize,
    /// Activation of the gate (`"gelu"`, the exact erf GELU, when absent).
    #[serde(default = "default_hidden_act")]
    pub hidden_act: Activation,
    /// The longest sequence the model was trained for (8192 when absent).
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    /// Rows of the token-type table; 0 (gte-base-en-v1.5) means the model has none.
    #[serde(default)]
    pub type_vocab_size: usize,
    /// Epsilon of every LayerNorm (1e-12 when absent).
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// `new`: the rotary base.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// `new`: rotary scaling (`{"type": "ntk", "factor": 2.0}` in gte-*-en-v1.5).
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// `gte` (transformers 5): `{"rope_type": "default", "rope_theta": ...}`.
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    /// `new`: `"rope"` (the only kind the released checkpoints use).
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
    /// `new`: `"layer_norm"` (the only kind the released checkpoints use).
    #[serde(default = "default_layer_norm_type")]
    pub layer_norm_type: String,
    /// `new`: whether q/k/v are one projection (`true` in every released checkpoint).
    #[serde(default = "default_true")]
    pub pack_qkv: bool,
    /// `new`: log-n attention scaling (`false` in every released checkpoint).
    #[serde(default)]
    pub logn_attention_scale: bool,
}

impl Config {
    /// The rotary base: `rope_parameters.rope_theta`, else `rope_theta`, else 160000
    /// (transformers' `GteConfig` default).
    pub fn rope_base(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(serde_json::Value::as_f64)
            .or(self.rope_theta)
            .unwrap_or(160_000.0)
    }

    /// Why this configuration cannot be run, if it cannot: the variants of `new-impl` that no
    /// released checkpoint uses, and rotary scaling.
    ///
    /// # Errors
    /// A sentence naming the field and its value.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.position_embedding_type != "rope" {
            return Err(format!(
                "position_embedding_type `{}` is not supported (only `rope`)",
                self.position_embedding_type
            ));
        }
        if self.layer_norm_type != "layer_norm" {
            return Err(format!(
                "layer_norm_type `{}` is not supported (only `layer_norm`)",
                self.layer_norm_type
            ));
        }
        if !self.pack_qkv {
            return Err("pack_qkv: false is not supported (only the fused qkv_proj)".into());
        }
        if self.logn_attention_scale {
            return Err("logn_attention_scale: true is not supported".into());
        }
        let scaling = self.rope_scaling.as_ref().filter(|v| !v.is_null());
        let parameters = self
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_type"))
            .and_then(serde_json::Value::as_str)
            .filter(|t| *t != "default");
        if let Some(s) = scaling {
            return Err(format!(
                "rope_scaling {s} is not supported yet (relstitch runs plain rotary embeddings); \
                 remove it only if the model was trained without it"
            ));
        }
        if let Some(t) = parameters {
            return Err(format!("rope_parameters.rope_type `{t}` is not supported"));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "num_attention_heads ({}) must divide hidden_size ({})",
                self.num_attention_heads, self.hidden_size
            ));
        }
        Ok(())
    }
}

/// `torch.finfo(float32).min`, the additive mask value HF uses for padded keys.
const MASK_MIN: f64 = f32::MIN as f64;

#[derive(Debug, Clone)]
struct GteLayer {
    qkv_proj: Linear,
    o_proj: Linear,
    attn_ln: LayerNorm,
    up_gate_proj: Linear,
    down_proj: Linear,
    mlp_ln: LayerNorm,
    activation: Activation,
    num_heads: usize,
    head_dim: usize,
    intermediate_size: usize,
}

impl GteLayer {
    fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let h = cfg.hidden_size;
        let attention = vb.pp("attention");
        let mlp = vb.pp("mlp");
        Ok(Self {
            qkv_proj: linear(h, 3 * h, attention.pp("qkv_proj"))?,
            o_proj: linear(h, h, attention.pp("o_proj"))?,
            attn_ln: layer_norm(h, cfg.layer_norm_eps, vb.pp("attn_ln"))?,
            up_gate_proj: linear_no_bias(h, 2 * cfg.intermediate_size, mlp.pp("up_gate_proj"))?,
            down_proj: linear(cfg.intermediate_size, h, mlp.pp("down_proj"))?,
            mlp_ln: layer_norm(h, cfg.layer_norm_eps, vb.pp("mlp_ln"))?,
            activation: cfg.hidden_act,
            num_heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            intermediate_size: cfg.intermediate_size,
        })
    }

    /// `xs`: `[b, s, hidden]`; `mask`: `[b, 1, 1, s]` additive.
    fn forward(&self, xs: &Tensor, mask: &Tensor, rope: &Rotary) -> Result<Tensor> {
        let (b, s, hidden) = xs.dims3()?;
        let qkv = self
            .qkv_proj
            .forward(xs)?
            .reshape((b, s, 3, self.num_heads, self.head_dim))?
            .permute((2, 0, 3, 1, 4))?; // [3, b, heads, s, head_dim]
        let q = rope.apply(&qkv.get(0)?.contiguous()?)?;
        let k = rope.apply(&qkv.get(1)?.contiguous()?)?;
        let v = qkv.get(2)?.contiguous()?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, hidden))?;
        let attention = self.o_proj.forward(&context)?;
        let xs = self.attn_ln.forward(&(xs + attention)?)?;
        let up_gate = self.up_gate_proj.forward(&xs)?;
        let up = up_gate.narrow(D::Minus1, 0, self.intermediate_size)?;
        let gate = up_gate.narrow(D::Minus1, self.intermediate_size, self.intermediate_size)?;
        let gated = (self.activation.forward(&gate)? * up)?;
        let out = self.down_proj.forward(&gated)?;
        self.mlp_ln.forward(&(xs + out)?)
    }
}

/// The GTE encoder (`NewModel` / `GteModel` without its pooler), returning the last hidden
/// state.
#[derive(Debug, Clone)]
pub struct GteModel {
    word_embeddings: Embedding,
    token_type_embeddings: Option<Embedding>,
    embeddings_ln: LayerNorm,
    layers: Vec<GteLayer>,
    rope: RotaryTables,
}

impl GteModel {
    /// Loads the weights (original `new-impl` tensor names, bare or under `new.`).
    ///
    /// # Errors
    /// When the configuration is one [`Config::check`] refuses, or a tensor is missing or has
    /// the wrong shape.
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        cfg.check().map_err(candle_core::Error::msg)?;
        let vb = if vb.contains_tensor("new.embeddings.word_embeddings.weight") {
            vb.pp("new")
        } else {
            vb
        };
        let emb = vb.pp("embeddings");
        let word_embeddings =
            embedding(cfg.vocab_size, cfg.hidden_size, emb.pp("word_embeddings"))?;
        let token_type_embeddings = if cfg.type_vocab_size > 0 {
            Some(embedding(
                cfg.type_vocab_size,
                cfg.hidden_size,
                emb.pp("token_type_embeddings"),
            )?)
        } else {
            None
        };
        let embeddings_ln = layer_norm(cfg.hidden_size, cfg.layer_norm_eps, emb.pp("LayerNorm"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| GteLayer::load(vb.pp(format!("encoder.layer.{i}")), cfg))
            .collect::<Result<Vec<_>>>()?;
        let head_dim = cfg.hidden_size / cfg.num_attention_heads;
        let rope = RotaryTables::new(head_dim, cfg.rope_base(), vb.device())?;
        Ok(Self {
            word_embeddings,
            token_type_embeddings,
            embeddings_ln,
            layers,
            rope,
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
        let (_b, s) = input_ids.dims2()?;
        let mut xs = self.word_embeddings.forward(input_ids)?;
        if let Some(tt) = &self.token_type_embeddings {
            xs = xs.broadcast_add(&tt.forward(&input_ids.zeros_like()?)?)?;
        }
        let mut xs = self.embeddings_ln.forward(&xs)?;
        let rope = self.rope.for_len(s)?;
        let mask = additive_mask(attention_mask)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, &mask, &rope)?;
        }
        Ok(xs)
    }
}

/// `[b, s]` 1/0 mask → `[b, 1, 1, s]` additive f32 mask (0 for tokens, f32::MIN for padding).
pub(crate) fn additive_mask(mask: &Tensor) -> Result<Tensor> {
    let (b, s) = mask.dims2()?;
    let m = mask.to_dtype(DType::F32)?;
    ((m.ones_like()? - m)? * MASK_MIN)?.reshape((b, 1, 1, s))
}
