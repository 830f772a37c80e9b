//! The transformer architectures an encoder can run, chosen from config.json's `model_type`.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{bert, distilbert, xlm_roberta};

use crate::models::mpnet;
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
    },
    /// `model_type: mpnet`.
    MPNet(mpnet::Config),
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
            },
            "mpnet" => Self::MPNet(serde_json::from_str(&text).map_err(json_err)?),
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
        // candle divides the width by the head count while loading: check both here.
        let (width, heads) = match &config {
            Self::Bert(c) => (c.hidden_size, Some(c.num_attention_heads as u64)),
            Self::XlmRoberta(c) => (c.hidden_size, Some(c.num_attention_heads as u64)),
            Self::DistilBert { config, .. } => {
                (config.dim, head.n_heads.as_ref().and_then(|v| v.as_u64()))
            }
            Self::MPNet(c) => (c.hidden_size, Some(c.num_attention_heads as u64)),
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
        }
    }

    /// The width of the token states.
    pub fn hidden_size(&self) -> usize {
        match self {
            Self::Bert(c) => c.hidden_size,
            Self::XlmRoberta(c) => c.hidden_size,
            Self::DistilBert { config, .. } => config.dim,
            Self::MPNet(c) => c.hidden_size,
        }
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
        }
    }
}

impl Architecture {
    /// Builds the architecture from its weights.
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
