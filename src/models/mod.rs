//! Model architectures that candle-transformers does not provide, and relstitch's own CPU
//! encoder for the BERT family.
//!
//! - [`mpnet`]: MPNet on candle tensors (any device).
//! - [`gte`]: GTE v1.5 / multilingual (Alibaba-NLP's `new` architecture) on candle tensors.
//! - [`modernbert`], [`nomic_bert`], [`qwen3`]: candle-transformers' implementations, checked
//!   against Hugging Face transformers, behind configurations that read every published form of
//!   their config.json (and refuse, when read, what the implementations do not do).
//! - [`packed`]: BERT, XLM-RoBERTa, DistilBERT and MPNet on the CPU without padding: the linear
//!   layers run on the tokens of the whole batch, attention runs per text, and the steps around
//!   the matrix products are fused [`kernels`]. It also runs them in bf16 or int8
//!   ([`Precision`]).

pub mod gte;
pub mod kernels;
pub mod modernbert;
pub mod mpnet;
pub mod nomic_bert;
pub mod packed;
pub mod qwen3;
mod rope;

/// The arithmetic of an encoder's linear layers.
///
/// `F32` is the reference. `Bf16` rounds weights and activations to bfloat16 and sums in f32;
/// `Int8` quantises weights per output channel (at load) and activations per token and group of
/// 64 inputs (at run time) to int8 and sums in i32. Both reduced precisions run on the CPU only, through
/// [`packed`], where attention's products also take bfloat16 operands (f32 sums); softmax,
/// LayerNorm, GELU and pooling stay in f32.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Precision {
    /// 32-bit floats throughout (the default).
    #[default]
    F32,
    /// bfloat16 weights and activations in the linear layers, f32 accumulation.
    Bf16,
    /// int8 weights (per output channel) and activations (per token and group of 64 inputs),
    /// i32 accumulation.
    Int8,
}

impl Precision {
    /// The name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Int8 => "int8",
        }
    }

    /// Whether this is the default, [`Precision::F32`] (serde uses it to leave the field out).
    pub fn is_f32(&self) -> bool {
        *self == Self::F32
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Precision {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Self::F32),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            "int8" | "i8" => Ok(Self::Int8),
            _ => Err(crate::Error::invalid(
                "precision",
                format!("`{s}` is not one of f32, bf16, int8"),
            )),
        }
    }
}
