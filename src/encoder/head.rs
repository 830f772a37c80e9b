//! What follows the pooling: the `Dense` and `Normalize` modules of a sentence-transformers
//! pipeline, in `modules.json` order, then the Matryoshka truncation (`--truncate-dim`).
//!
//! Both the packed CPU encoder and candle's path pool first and hand the pooled `[n, hidden]`
//! matrix here, so the two paths share one implementation.

use candle_core::{Device, Tensor};

use crate::model_folder::{l2_normalize, DenseIdentity, DenseLayer, HeadModule};
use crate::{Error, Result};

/// One step after pooling.
#[derive(Debug, Clone)]
enum Step {
    Dense(DenseLayer),
    Normalize,
}

/// The steps after pooling, and the truncation.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    steps: Vec<Step>,
    truncate_dim: Option<usize>,
    /// The width of the pooled vectors.
    input_dim: usize,
}

impl Head {
    /// Builds the head of the folder `dir` from its `modules` (see
    /// [`crate::model_folder::SentenceTransformersConfig::head_modules`]): `normalize` overrides
    /// the folder's normalisation (`Some(false)` drops its Normalize modules, `Some(true)` ends the
    /// pipeline with one), `truncate_dim` keeps the first dimensions of the output and normalises
    /// again when the pipeline normalises.
    ///
    /// # Errors
    /// The errors of [`DenseLayer::load`]; [`Error::ModelFolder`] when a Dense module's input
    /// width is not the width before it; [`Error::InvalidArgument`] when `truncate_dim` is zero or
    /// wider than the output.
    pub(crate) fn load(
        dir: &std::path::Path,
        modules: &[HeadModule],
        input_dim: usize,
        normalize: Option<bool>,
        truncate_dim: Option<usize>,
        device: &Device,
    ) -> Result<Self> {
        let mut steps = Vec::new();
        let mut width = input_dim;
        for m in modules {
            match m {
                HeadModule::Dense(config) => {
                    if config.in_features != width {
                        return Err(Error::ModelFolder {
                            path: dir.join(&config.path).join("config.json"),
                            reason: format!(
                                "in_features is {} but the vectors before this Dense module are {width} wide",
                                config.in_features
                            ),
                        });
                    }
                    let layer = DenseLayer::load(dir, config, device)?;
                    width = layer.out_features();
                    steps.push(Step::Dense(layer));
                }
                HeadModule::Normalize if normalize != Some(false) => steps.push(Step::Normalize),
                HeadModule::Normalize => {}
            }
        }
        if normalize == Some(true) && !matches!(steps.last(), Some(Step::Normalize)) {
            steps.push(Step::Normalize);
        }
        if let Some(t) = truncate_dim {
            if t == 0 || t > width {
                return Err(Error::invalid(
                    "truncate dim",
                    format!("{t} is not between 1 and the model's output width {width}"),
                ));
            }
        }
        Ok(Self {
            steps,
            truncate_dim: truncate_dim.filter(|&t| t < width),
            input_dim,
        })
    }

    /// Whether the output is L2-normalised.
    pub(crate) fn normalizes(&self) -> bool {
        matches!(self.steps.last(), Some(Step::Normalize))
    }

    /// Whether anything but a final normalisation happens (the packed encoder normalises rows
    /// itself when that is all).
    pub(crate) fn is_trivial(&self) -> bool {
        self.truncate_dim.is_none() && self.steps.iter().all(|s| matches!(s, Step::Normalize))
    }

    /// The width of the output.
    pub(crate) fn output_dim(&self) -> usize {
        self.truncate_dim.unwrap_or_else(|| {
            self.steps
                .iter()
                .rev()
                .find_map(|s| match s {
                    Step::Dense(d) => Some(d.out_features()),
                    Step::Normalize => None,
                })
                .unwrap_or(self.input_dim)
        })
    }

    /// The Dense modules, for the identity.
    pub(crate) fn dense_identities(&self) -> Vec<DenseIdentity> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Dense(d) => Some(d.identity()),
                Step::Normalize => None,
            })
            .collect()
    }

    /// The truncation in use (`None` when there is none or it keeps every dimension).
    pub(crate) fn truncate_dim(&self) -> Option<usize> {
        self.truncate_dim
    }

    /// Runs the steps on pooled vectors.
    ///
    /// # Shapes
    /// - `pooled`: `[n, input_dim]` f32; returns `[n, output_dim]`
    ///
    /// # Errors
    /// A [`candle_core::Error`] when a tensor operation fails.
    pub(crate) fn forward(&self, pooled: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = pooled.clone();
        for s in &self.steps {
            x = match s {
                Step::Dense(d) => d.forward(&x)?,
                Step::Normalize => l2_normalize(&x)?,
            };
        }
        if let Some(t) = self.truncate_dim {
            x = x.narrow(1, 0, t)?.contiguous()?;
            if self.normalizes() {
                x = l2_normalize(&x)?;
            }
        }
        Ok(x)
    }
}
