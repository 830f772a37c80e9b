//! # relstitch
//!
//! Relative representations and zero-shot model stitching on [candle](https://github.com/huggingface/candle)
//! (Moschella et al., "Relative representations enable zero-shot latent space communication", ICLR 2023).
//!
//! Data flows one way: text → [`encoder`] → absolute latents → (anchors) → relative latents → decoder.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![warn(missing_docs)]

pub mod anchors;
pub mod bench;
pub mod cache;
pub mod catalog;
pub mod checkpoint;
pub mod data;
pub mod decoder;
pub mod device;
pub mod embed;
pub mod encoder;
pub mod error;
pub mod evaluation;
pub mod fetch;
pub mod import;
pub mod io;
mod linalg;
pub mod metrics;
pub mod models;
pub mod progress;
pub mod projection;
pub mod resolve;
pub mod stitch;
pub mod translation;

pub use error::{Error, Result};
