//! # relstitch
//!
//! Relative representations and zero-shot model stitching on [candle](https://github.com/huggingface/candle)
//! (Moschella et al., "Relative representations enable zero-shot latent space communication", ICLR 2023).
//!
//! Data flows one way: text → [`encoder`] → absolute latents → ([`anchors`], [`projection`]) →
//! relative latents → [`decoder`]. [`checkpoint`] stores trained decoders; [`stitch`] fits them and
//! runs the decoder of one checkpoint on the encoder of another, zero-shot.
//!
//! ```no_run
//! # fn main() -> relstitch::Result<()> {
//! use relstitch::checkpoint::Checkpoint;
//! use relstitch::data::{Builtin, Dataset, SplitOptions};
//! use relstitch::fetch::Fetcher;
//! use relstitch::stitch::{fit, FitOptions, Pipeline, StitchOptions};
//!
//! let split = Dataset::builtin(Builtin::Fortunes, &Fetcher::new()?)?.split(&SplitOptions::default())?;
//! let a = fit("all-MiniLM-L6-v2", &split.train, &FitOptions::default())?;
//! let b = fit("all-mpnet-base-v2", &split.train, &FitOptions::default())?;
//! a.save("ckpt-minilm".as_ref())?;
//! let a = Checkpoint::load("ckpt-minilm".as_ref())?;
//! // MPNet's encoder, MiniLM's decoder: no retraining.
//! let stitched = Pipeline::stitch(&b, &a, &StitchOptions::default())?;
//! println!("{:?}", stitched.evaluate(&split.test)?);
//! # Ok(()) }
//! ```
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
pub mod display;
pub mod embed;
pub mod encoder;
pub mod error;
pub mod evaluation;
pub mod fetch;
pub mod import;
pub mod io;
mod linalg;
pub mod metrics;
mod model_folder;
pub mod models;
#[cfg(feature = "plot")]
pub mod plot;
pub mod progress;
pub mod projection;
pub mod resolve;
pub mod stitch;
pub mod translation;
pub mod verify;

/// candle's tensor, re-exported so that code using relstitch (a notebook, say) can name the
/// embeddings it holds without depending on `candle-core` itself.
pub use candle_core::Tensor;
pub use error::{Error, Result};
