//! # relstitch
//!
//! Relative representations and zero-shot model stitching on [candle](https://github.com/huggingface/candle)
//! (Moschella et al., "Relative representations enable zero-shot latent space communication", ICLR 2023).
//!
//! ## The data flow, and where each step lives
//!
//! ```text
//!  model name ──▶ hub ──▶ model folder ──▶ encoder ──▶ absolute latents [n, d]
//!                                                        │
//!                        space::anchors ──▶ space::projection ──▶ relative latents [n, k]
//!                                                        │            (space::translation:
//!                                                        ▼             absolute A → absolute B)
//!                                     task::decoder ──▶ task::checkpoint ──▶ task::stitch
//! ```
//!
//! | step | module | the types you use |
//! |---|---|---|
//! | name → folder on disk | [`hub`] | [`Fetcher`] (registry packages), [`hub::catalog`], [`hub::resolve`] |
//! | text → vectors | [`encoder`] | [`Encoder`], [`EncoderOptions`], [`EmbeddingCache`] |
//! | the anchor samples | [`space::anchors`] | [`AnchorSet`], [`AnchorStrategy`] |
//! | absolute → relative | [`space::projection`] | [`Projection`], [`RelativeProjector`] |
//! | space A → space B | [`space::translation`] | [`LatentTranslator`] |
//! | how alike two spaces are | [`space::similarity`] | [`compare_spaces`](space::similarity::compare_spaces) |
//! | heads, checkpoints, stitching | [`task`] | [`fit`], [`Checkpoint`], [`Pipeline`], [`StitchReport`] |
//! | move an index to a new model | [`migrate`] | [`MigrationMap`], [`MigrationMethod`], [`MigrationEval`] |
//! | datasets | [`data`] | [`Dataset`], [`Builtin`] |
//! | tables and figures | [`report`] | [`report::display::Table`], `report::plot` |
//! | files, devices, errors | [`io`], [`device`], [`error`] | [`Error`], [`Result`] |
//!
//! The types a user needs are re-exported here at the crate root; everything else stays in its
//! module. Each folder imports only from the ones below it in the picture, so the module graph has
//! no cycle (`tests/module_graph.rs` keeps it so).
//!
//! ## Fit two decoders and stitch them
//!
//! ```no_run
//! # fn main() -> relstitch::Result<()> {
//! use relstitch::{fit, Builtin, Checkpoint, Dataset, Fetcher, FitOptions, Pipeline, StitchOptions};
//! use relstitch::data::SplitOptions;
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
//!
//! ## Relative vectors by hand
//!
//! ```no_run
//! # fn main() -> relstitch::Result<()> {
//! use relstitch::{Encoder, EncoderOptions, PreTransform, Projection, RelativeProjector};
//!
//! let encoder = Encoder::load("all-MiniLM-L6-v2", &EncoderOptions::default())?;
//! let anchors = encoder.embed(&["a cat", "the stock market", "a goal in extra time"])?; // [3, 384]
//! let projector = RelativeProjector::fit(&anchors, Projection::Cosine, PreTransform::default())?;
//! let relative = projector.project(&encoder.embed(&["my dog sleeps"])?)?; // [1, 3]
//! # let _ = relative; Ok(()) }
//! ```
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![warn(missing_docs)]
#![warn(clippy::missing_errors_doc)]

// Bottom floor: plain files, devices, errors, progress bars.
pub mod device;
pub mod error;
pub mod io;
pub mod progress;

// The sentence-transformers folder format (a leaf), and getting such folders onto the disk.
pub mod hub;
mod model_folder;

// Text → absolute latents.
pub mod encoder;
pub mod models;

// Absolute latents → anchors, relative latents, translations, similarities.
pub mod space;

// Heads on top of spaces: decoders, checkpoints, fit and stitch, scores.
pub mod task;

// Moving an index to a new model: anchors, translations and relative spaces put to work.
pub mod migrate;

// Datasets, and what a user looks at.
pub mod data;
pub mod report;

/// candle's tensor, re-exported so that code using relstitch (a notebook, say) can name the
/// embeddings it holds without depending on `candle-core` itself.
pub use candle_core::Tensor;

pub use data::{Builtin, Dataset};
pub use device::DeviceChoice;
pub use encoder::cache::EmbeddingCache;
pub use encoder::{Encoder, EncoderOptions, ModelIdentity, Pooling, Precision};
pub use error::{Error, HubFailure, Result};
pub use hub::fetch::Fetcher;
pub use migrate::{MigrationEval, MigrationMap, MigrationMethod, MigrationOptions};
pub use space::anchors::{AnchorSet, AnchorStrategy};
pub use space::projection::{PreTransform, Projection, RelativeProjector};
pub use space::translation::{LatentTranslator, TranslationMethod};
pub use task::checkpoint::Checkpoint;
pub use task::compatibility::Compatibility;
pub use task::scores::Scores;
pub use task::stitch::{fit, FitOptions, Pipeline, RelativeStitch, StitchOptions, StitchReport};
