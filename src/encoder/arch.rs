//! The transformer architectures an encoder can run, chosen from config.json's `model_type`.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{bert, distilbert, xlm_roberta};

use crate::models::kernels::activation::Activation;
use crate::models::packed::{self, Family, PackedEncoder};
use crate::models::{gte, modernbert, mpnet, nomic_bert, qwen3, Precision};
use crate::{Error, Result};

/// A loaded transformer body (no pooling).
pub enum Architecture {
    /// BERT and its relatives (MiniLM, e5, BGE, ...).
    Bert(bert::BertModel),
    /// XLM-RoBERTa.
    XlmRoberta(xlm_roberta::XLMRobertaModel),
    /// DistilBERT.
    DistilBert(distilbert::DistilBertModel),
    /// MPNet (relstitch's own implementation).
    MPNet(mpnet::MPNetModel),
    /// ModernBERT (candle-transformers').
    ModernBert(modernbert::ModernBertModel),
    /// GTE v1.5 / multilingual, Alibaba-NLP's `new` (relstitch's own implementation).
    Gte(gte::GteModel),
    /// Nomic-BERT (candle-transformers').
    NomicBert(nomic_bert::NomicBertModel),
    /// Qwen3 as an embedder (candle-transformers'), causal.
    Qwen3(qwen3::Qwen3Model),
    /// Any of the above on the CPU, padding-free, at any [`Precision`] (relstitch's own
    /// implementation, [`crate::models::packed`]).
    Packed(PackedEncoder),
}

/// What relstitch needs from config.json before choosing the architecture.
#[derive(serde::Deserialize)]
struct ModelType {
    model_type: Option<String>,
    #[serde(default)]
    max_position_embeddings: Option<usize>,
    /// DistilBERT's head count (private in candle's config), checked before loading.
    #[serde(default)]
    n_heads: Option<serde_json::Value>,
}

/// The DistilBERT fields that candle's config keeps private.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct DistilBertShape {
    /// Transformer layers.
    pub n_layers: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// Width of the feed-forward block.
    pub hidden_dim: usize,
    /// Feed-forward activation (`gelu` or `relu`).
    #[serde(default = "default_distilbert_activation")]
    pub activation: String,
}

fn default_distilbert_activation() -> String {
    "gelu".into()
}

/// The parsed config.json of a supported architecture.
#[derive(Debug, Clone)]
pub enum ArchConfig {
    /// `model_type: bert`.
    Bert(bert::Config),
    /// `model_type: xlm-roberta` (also `roberta`, `camembert`).
    XlmRoberta(xlm_roberta::Config),
    /// `model_type: distilbert`.
    DistilBert {
        /// candle's configuration.
        config: distilbert::Config,
        /// `max_position_embeddings` (private in candle's struct).
        max_position_embeddings: usize,
        /// The other fields candle keeps private.
        shape: DistilBertShape,
    },
    /// `model_type: mpnet`.
    MPNet(mpnet::Config),
    /// `model_type: modernbert`.
    ModernBert(modernbert::Config),
    /// `model_type: new` (Alibaba-NLP's remote code) or `gte` (transformers' port).
    Gte(gte::Config),
    /// `model_type: nomic_bert`.
    NomicBert(nomic_bert::Config),
    /// `model_type: qwen3`.
    Qwen3(qwen3::Config),
}

impl ArchConfig {
    /// Reads config.json and picks the architecture from its `model_type`.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::Json`] when it is not valid JSON or
    /// not that architecture's configuration; [`Error::UnsupportedArchitecture`] for another (or a
    /// missing) `model_type`; [`Error::ModelFolder`] when the head count is missing, zero, or does
    /// not divide the hidden size.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let json_err = |source| Error::Json {
            path: path.to_path_buf(),
            hint: "config.json must be the model's Hugging Face configuration".into(),
            source,
        };
        let head: ModelType = serde_json::from_str(&text).map_err(json_err)?;
        let model_type = head.model_type.unwrap_or_default();
        let config = match model_type.as_str() {
            "bert" => Self::Bert(serde_json::from_str(&text).map_err(json_err)?),
            "xlm-roberta" | "roberta" | "camembert" => {
                Self::XlmRoberta(serde_json::from_str(&text).map_err(json_err)?)
            }
            "distilbert" => Self::DistilBert {
                config: serde_json::from_str(&text).map_err(json_err)?,
                max_position_embeddings: head.max_position_embeddings.unwrap_or(512),
                shape: serde_json::from_str(&text).map_err(json_err)?,
            },
            "mpnet" => Self::MPNet(serde_json::from_str(&text).map_err(json_err)?),
            "modernbert" => Self::ModernBert(serde_json::from_str(&text).map_err(json_err)?),
            "new" | "gte" => Self::Gte(serde_json::from_str(&text).map_err(json_err)?),
            "nomic_bert" => Self::NomicBert(serde_json::from_str(&text).map_err(json_err)?),
            "qwen3" => Self::Qwen3(serde_json::from_str(&text).map_err(json_err)?),
            _ => {
                return Err(Error::UnsupportedArchitecture {
                    path: path.to_path_buf(),
                    model_type: if model_type.is_empty() {
                        "(missing)".into()
                    } else {
                        model_type
                    },
                })
            }
        };
        // What the implementation does not do is refused now, naming the field.
        let unsupported = match &config {
            Self::ModernBert(c) => c.to_candle().err(),
            Self::Gte(c) => c.check().err(),
            Self::NomicBert(c) => c.to_candle().err(),
            Self::Qwen3(c) => c.to_candle().err(),
            _ => None,
        };
        if let Some(reason) = unsupported {
            return Err(Error::ModelFolder {
                path: path.to_path_buf(),
                reason: format!("{model_type}: {reason}"),
            });
        }
        // candle divides the width by the head count while loading: check both here.
        let (width, heads) = match &config {
            Self::Bert(c) => (c.hidden_size, Some(c.num_attention_heads as u64)),
            Self::XlmRoberta(c) => (c.hidden_size, Some(c.num_attention_heads as u64)),
            Self::DistilBert { config, .. } => {
                (config.dim, head.n_heads.as_ref().and_then(|v| v.as_u64()))
            }
            Self::MPNet(c) => (c.hidden_size, Some(c.num_attention_heads as u64)),
            Self::ModernBert(c) => (c.hidden_size, Some(c.num_attention_heads as u64)),
            Self::Gte(c) => (c.hidden_size, Some(c.num_attention_heads as u64)),
            Self::NomicBert(c) => (c.hidden_size, Some(c.num_attention_heads as u64)),
            // Checked by `to_candle` (the width need not be heads × head_dim).
            Self::Qwen3(_) => (0, Some(1)),
        };
        match heads {
            Some(h) if h > 0 && (width as u64).is_multiple_of(h) => Ok(config),
            _ => Err(Error::ModelFolder {
                path: path.to_path_buf(),
                reason: format!(
                    "the attention head count ({}) must be at least 1 and divide the hidden size \
                     ({width}); the config.json is corrupt",
                    heads.map_or("missing".to_string(), |h| h.to_string())
                ),
            }),
        }
    }

    /// The `model_type` name.
    pub fn model_type(&self) -> &'static str {
        match self {
            Self::Bert(_) => "bert",
            Self::XlmRoberta(_) => "xlm-roberta",
            Self::DistilBert { .. } => "distilbert",
            Self::MPNet(_) => "mpnet",
            Self::ModernBert(_) => "modernbert",
            Self::Gte(_) => "new",
            Self::NomicBert(_) => "nomic_bert",
            Self::Qwen3(_) => "qwen3",
        }
    }

    /// The width of the token states.
    pub fn hidden_size(&self) -> usize {
        match self {
            Self::Bert(c) => c.hidden_size,
            Self::XlmRoberta(c) => c.hidden_size,
            Self::DistilBert { config, .. } => config.dim,
            Self::MPNet(c) => c.hidden_size,
            Self::ModernBert(c) => c.hidden_size,
            Self::Gte(c) => c.hidden_size,
            Self::NomicBert(c) => c.hidden_size,
            Self::Qwen3(c) => c.hidden_size,
        }
    }

    /// The configuration of the packed CPU encoder for this architecture, or `None` when it
    /// uses something the packed encoder does not implement (an activation other than GELU or
    /// ReLU).
    pub fn packed(&self) -> Option<packed::Config> {
        let from_nn = |a: candle_nn::Activation| match a {
            candle_nn::Activation::Gelu => Some(Activation::GeluErf),
            candle_nn::Activation::NewGelu | candle_nn::Activation::GeluPytorchTanh => {
                Some(Activation::GeluTanh)
            }
            candle_nn::Activation::Relu => Some(Activation::Relu),
            _ => None,
        };
        Some(match self {
            Self::Bert(c) => packed::Config {
                family: Family::Bert,
                vocab_size: c.vocab_size,
                hidden_size: c.hidden_size,
                num_layers: c.num_hidden_layers,
                num_heads: c.num_attention_heads,
                intermediate_size: c.intermediate_size,
                max_position_embeddings: c.max_position_embeddings,
                type_vocab_size: c.type_vocab_size,
                layer_norm_eps: c.layer_norm_eps,
                activation: match c.hidden_act {
                    bert::HiddenAct::Gelu => Activation::GeluErf,
                    bert::HiddenAct::GeluApproximate => Activation::GeluTanh,
                    bert::HiddenAct::Relu => Activation::Relu,
                },
                pad_token_id: c.pad_token_id as u32,
            },
            Self::XlmRoberta(c) => packed::Config {
                family: Family::XlmRoberta,
                vocab_size: c.vocab_size,
                hidden_size: c.hidden_size,
                num_layers: c.num_hidden_layers,
                num_heads: c.num_attention_heads,
                intermediate_size: c.intermediate_size,
                max_position_embeddings: c.max_position_embeddings,
                type_vocab_size: c.type_vocab_size,
                layer_norm_eps: c.layer_norm_eps,
                activation: from_nn(c.hidden_act)?,
                pad_token_id: c.pad_token_id,
            },
            Self::DistilBert {
                config,
                max_position_embeddings,
                shape,
            } => packed::Config {
                family: Family::DistilBert,
                vocab_size: config.vocab_size,
                hidden_size: config.dim,
                num_layers: shape.n_layers,
                num_heads: shape.n_heads,
                intermediate_size: shape.hidden_dim,
                max_position_embeddings: *max_position_embeddings,
                type_vocab_size: 0,
                // Hugging Face's DistilBERT hard-codes this epsilon.
                layer_norm_eps: 1e-12,
                activation: match shape.activation.as_str() {
                    "gelu" => Activation::GeluErf,
                    "relu" => Activation::Relu,
                    _ => return None,
                },
                pad_token_id: config.pad_token_id as u32,
            },
            Self::MPNet(c) => packed::Config {
                family: Family::MPNet,
                vocab_size: c.vocab_size,
                hidden_size: c.hidden_size,
                num_layers: c.num_hidden_layers,
                num_heads: c.num_attention_heads,
                intermediate_size: c.intermediate_size,
                max_position_embeddings: c.max_position_embeddings,
                type_vocab_size: 0,
                layer_norm_eps: c.layer_norm_eps,
                activation: from_nn(c.hidden_act)?,
                pad_token_id: c.pad_token_id,
            },
            Self::ModernBert(_) | Self::Gte(_) | Self::NomicBert(_) | Self::Qwen3(_) => {
                return None
            }
        })
    }

    /// FLOPs of one forward pass over a text of `len` tokens: the linear layers and attention
    /// (see [`packed::Config::flops`]), whatever the implementation. Gated feed-forward blocks
    /// (three matrices) count as a BERT block 1.5 times as wide; grouped-query attention is
    /// counted as full attention.
    pub fn flops(&self, len: usize) -> f64 {
        let (layers, intermediate) = match self {
            Self::Bert(c) => (c.num_hidden_layers, c.intermediate_size),
            Self::XlmRoberta(c) => (c.num_hidden_layers, c.intermediate_size),
            Self::DistilBert { shape, .. } => (shape.n_layers, shape.hidden_dim),
            Self::MPNet(c) => (c.num_hidden_layers, c.intermediate_size),
            Self::ModernBert(c) => (c.num_hidden_layers, c.intermediate_size * 3 / 2),
            Self::Gte(c) => (c.num_hidden_layers, c.intermediate_size * 3 / 2),
            Self::NomicBert(c) => (c.num_hidden_layers, c.intermediate_size * 3 / 2),
            Self::Qwen3(c) => (c.num_hidden_layers, c.intermediate_size * 3 / 2),
        };
        packed::Config {
            family: Family::Bert,
            vocab_size: 0,
            hidden_size: self.hidden_size(),
            num_layers: layers,
            num_heads: 1,
            intermediate_size: intermediate,
            max_position_embeddings: 0,
            type_vocab_size: 0,
            layer_norm_eps: 0.0,
            activation: Activation::GeluErf,
            pad_token_id: 0,
        }
        .flops(len)
    }

    /// The longest input (special tokens included) the position embeddings allow. RoBERTa-style
    /// models start positions at `padding_idx + 1`, so two positions are not usable.
    pub fn max_tokens(&self) -> usize {
        match self {
            Self::Bert(c) => c.max_position_embeddings,
            Self::XlmRoberta(c) => c
                .max_position_embeddings
                .saturating_sub(c.pad_token_id as usize + 1),
            Self::DistilBert {
                max_position_embeddings,
                ..
            } => *max_position_embeddings,
            Self::MPNet(c) => c
                .max_position_embeddings
                .saturating_sub(c.pad_token_id as usize + 1),
            Self::ModernBert(c) => c.max_position_embeddings,
            Self::Gte(c) => c.max_position_embeddings,
            Self::NomicBert(c) => c.max_tokens(),
            Self::Qwen3(c) => c.max_position_embeddings,
        }
    }
}

impl Architecture {
    /// Builds relstitch's packed CPU encoder for `cfg` at `precision`, or `None` when the
    /// packed encoder does not implement the architecture (see [`ArchConfig::packed`]).
    ///
    /// # Errors
    /// A [`candle_core::Error`] when a tensor is missing from `vb` or has the wrong shape.
    pub fn load_packed(
        cfg: &ArchConfig,
        vb: VarBuilder,
        precision: Precision,
    ) -> candle_core::Result<Option<Self>> {
        match cfg.packed() {
            Some(p) => Ok(Some(Self::Packed(PackedEncoder::load(vb, &p, precision)?))),
            None => Ok(None),
        }
    }

    /// Builds the architecture from its weights, on candle's tensors (any device, f32 or the
    /// dtype of `vb`).
    ///
    /// # Errors
    /// A [`candle_core::Error`] when a tensor is missing from `vb` or has the wrong shape (the
    /// caller, [`Encoder`](crate::Encoder), turns it into [`Error::ModelFolder`]).
    pub fn load(cfg: &ArchConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(match cfg {
            ArchConfig::Bert(c) => Self::Bert(bert::BertModel::load(vb, c)?),
            ArchConfig::XlmRoberta(c) => {
                // MaskedLM checkpoints keep the body under `roberta.`.
                let vb = if vb.contains_tensor("roberta.embeddings.word_embeddings.weight") {
                    vb.pp("roberta")
                } else {
                    vb
                };
                Self::XlmRoberta(xlm_roberta::XLMRobertaModel::new(c, vb)?)
            }
            ArchConfig::DistilBert { config, .. } => {
                Self::DistilBert(distilbert::DistilBertModel::load(vb, config)?)
            }
            ArchConfig::MPNet(c) => Self::MPNet(mpnet::MPNetModel::load(vb, c)?),
            ArchConfig::ModernBert(c) => {
                Self::ModernBert(modernbert::ModernBertModel::load(vb, c)?)
            }
            ArchConfig::Gte(c) => Self::Gte(gte::GteModel::load(vb, c)?),
            ArchConfig::NomicBert(c) => Self::NomicBert(nomic_bert::NomicBertModel::load(vb, c)?),
            ArchConfig::Qwen3(c) => Self::Qwen3(qwen3::Qwen3Model::load(vb, c)?),
        })
    }

    /// Runs the transformer body.
    ///
    /// # Shapes
    /// - `input_ids`: `[batch, seq]` u32
    /// - `mask`: `[batch, seq]` u32, 1 = token, 0 = padding
    /// - returns `[batch, seq, hidden]` f32
    ///
    /// # Errors
    /// A [`candle_core::Error`] when the shapes disagree, a token id is outside the vocabulary,
    /// or the sequence is longer than the position embeddings allow.
    pub fn forward(&self, input_ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Bert(m) => {
                let token_type_ids = input_ids.zeros_like()?;
                m.forward(input_ids, &token_type_ids, Some(mask))
            }
            Self::XlmRoberta(m) => {
                let token_type_ids = input_ids.zeros_like()?;
                m.forward(input_ids, mask, &token_type_ids, None, None, None)
            }
            Self::DistilBert(m) => {
                // candle's DistilBERT masks where the mask is true: pass the padding positions.
                let (b, t) = mask.dims2()?;
                let inverted = mask.eq(0u32)?.reshape((b, 1, 1, t))?;
                m.forward(input_ids, &inverted)
            }
            Self::MPNet(m) => m.forward(input_ids, mask),
            Self::ModernBert(m) => m.forward(input_ids, mask),
            Self::Gte(m) => m.forward(input_ids, mask),
            Self::NomicBert(m) => m.forward(input_ids, mask),
            // Causal: the padding (on the right, see `Encoder::embed_ids`) never reaches a
            // text's tokens.
            Self::Qwen3(m) => m.forward(input_ids),
            Self::Packed(m) => {
                // Unpack the padded batch, run packed, and pad the result again.
                let (b, t) = mask.dims2()?;
                let ids = input_ids.to_vec2::<u32>()?;
                let lens: Vec<usize> = mask
                    .to_dtype(DType::U32)?
                    .sum(1)?
                    .to_vec1::<u32>()?
                    .into_iter()
                    .map(|l| l as usize)
                    .collect();
                let rows: Vec<&[u32]> = ids.iter().zip(&lens).map(|(r, &l)| &r[..l]).collect();
                let packed = m.forward(&rows, true)?;
                let h = m.config().hidden_size;
                let mut out = vec![0f32; b * t * h];
                let mut src = 0;
                for (r, &l) in lens.iter().enumerate() {
                    out[r * t * h..(r * t + l) * h].copy_from_slice(&packed[src..src + l * h]);
                    src += l * h;
                }
                Tensor::from_vec(out, (b, t, h), input_ids.device())
            }
        }
    }
}

/// Opens the weights of a model folder: `model.safetensors` (memory-mapped), else
/// `pytorch_model.bin`.
///
/// # Errors
/// [`Error::ModelFolder`] when `dir` has neither file, or the one found cannot be opened as
/// safetensors or as a PyTorch checkpoint.
pub fn weights(dir: &Path, device: &Device) -> Result<(VarBuilder<'static>, std::path::PathBuf)> {
    let st = dir.join("model.safetensors");
    if st.is_file() {
        // SAFETY: the file is memory-mapped read-only; relstitch never writes to a model's weights
        // while they are loaded, and a user who rewrites them concurrently gets garbage, not UB in
        // safe code paths candle guards.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&st], DType::F32, device) }
            .map_err(|e| Error::ModelFolder {
                path: st.clone(),
                reason: format!(
                    "not a readable safetensors file ({e}); re-fetch or re-download the model"
                ),
            })?;
        return Ok((vb, st));
    }
    let pt = dir.join("pytorch_model.bin");
    if pt.is_file() {
        let vb = VarBuilder::from_pth(&pt, DType::F32, device).map_err(|e| Error::ModelFolder {
            path: pt.clone(),
            reason: format!("not a readable PyTorch checkpoint ({e})"),
        })?;
        return Ok((vb, pt));
    }
    Err(Error::ModelFolder {
        path: dir.to_path_buf(),
        reason: "has no model.safetensors (or pytorch_model.bin); fetch the model again (`relstitch fetch NAME`) or point at a complete Hugging Face folder".into(),
    })
}
