//! The sentence-transformers model-folder format, shared by the code that builds model folders
//! ([`crate::hub::fetch`], the importers) and the code that loads them ([`crate::encoder`]): the pooling
//! modes and the `modules.json` / `1_Pooling/config.json` / `sentence_bert_config.json` files, the
//! modules after pooling ([`dense`], `Normalize`) and the prompts of
//! `config_sentence_transformers.json`.
//!
//! A leaf: it depends on nothing in the crate but [`crate::io`] and the error type, so the model
//! catalog, the fetcher and the encoder can all use it without depending on each other. The public
//! paths `relstitch::encoder::{Pooling, SentenceTransformersConfig, l2_normalize}` stay as they were.

pub mod dense;
mod pooling;
mod st_files;

pub use dense::{DenseActivation, DenseConfig, DenseIdentity, DenseLayer};
pub use pooling::{l2_normalize, l2_normalize_row, Pooling};
pub use st_files::{HeadModule, ModelPrompts, SentenceTransformersConfig};
