//! The migration methods and the options of a fit.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How vectors of the old model (A, the source) are brought to the new model (B, the target).
///
/// Every method is fitted on *parallel anchors*: a sample of texts embedded by both models.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MigrationMethod {
    /// Orthogonal Procrustes after per-dimension standard scaling, the narrower space zero-padded
    /// (Maiorca et al. 2023). Needs only 2 anchors; exact inverse (the transposed rotation).
    Procrustes,
    /// Least-squares affine map `x W + b`: needs more anchors than the source has dimensions. Its
    /// `--inverse` is the least-squares affine map fitted from B to A.
    Affine,
    /// Least-squares linear map after centring (standard scaling), like `affine` without its
    /// free bias in the scaled space.
    Linear,
    /// Procrustes plus a trained rank-`rank` correction `x U V` (a residual adapter trained with
    /// candle-nn), folded into one affine map: between Procrustes (rank 0) and `linear` (full
    /// rank), and well-posed with few anchors. `--inverse` inverts its Procrustes base.
    #[serde(rename = "lowrank")]
    LowRank {
        /// The rank of the correction.
        rank: usize,
    },
    /// Procrustes plus a trained residual MLP `fc2(gelu(fc1(x)))` on the scaled source (candle-nn),
    /// whose last layer starts at zero. Non-linear: no inverse.
    Mlp {
        /// The hidden width.
        hidden: usize,
    },
    /// No paired texts at all: two unrelated samples of the corpus, one embedded by each model, are
    /// matched by annealed entropic Gromov–Wasserstein transport between their intra-space cosine
    /// similarities, then refined for `rounds` rounds of Procrustes and CSLS mutual nearest
    /// neighbours ([`MigrationMap::fit_unpaired`]); the result is a Procrustes map on the induced
    /// pseudo-pairs. Exact inverse. It recovers the pairing when both samples hold the same texts
    /// and the encoders are close, but keeps far less than paired Procrustes on disjoint samples
    /// (docs/results/migrate.md).
    ///
    /// [`MigrationMap::fit_unpaired`]: super::MigrationMap::fit_unpaired
    Unsupervised {
        /// Refinement rounds.
        rounds: usize,
    },
    /// No fitted map (the paper's zero-shot route): vectors of A become cosine similarities to the
    /// anchors embedded by A, vectors of B similarities to the same anchors embedded by B, so
    /// documents of A and queries of B meet in one relative space (as wide as there are anchors).
    Relative {
        /// Centre both sides on their anchors' mean before the cosine (removes the common
        /// direction of anisotropic encoders).
        center: bool,
    },
}

impl MigrationMethod {
    /// The method used when none is given: Procrustes. In the `migrate` study (docs/RESULTS.md,
    /// six directed pairs, 64 to 4,096 anchors) no method beats it by more than 1.2 points of
    /// retained recall@10 from 512 anchors on (6 queries of 500) and 0.8 from 1,024 on, while
    /// below 256 anchors it is the best or close to the best translating method and the trained
    /// adapters can lose up to 11 points; it needs no training, works from 2 anchors and has an
    /// exact inverse (at 1,024 anchors its inverse route keeps 98.6–100 % of recall@10, affine's,
    /// fitted the other way, 95.4–99.2 %).
    pub const DEFAULT: Self = Self::Procrustes;

    /// `lowrank` with its default rank (64).
    pub fn low_rank_default() -> Self {
        Self::LowRank { rank: 64 }
    }

    /// `mlp` with its default hidden width (1024).
    pub fn mlp_default() -> Self {
        Self::Mlp { hidden: 1024 }
    }

    /// `relative` with its default (centred).
    pub fn relative_default() -> Self {
        Self::Relative { center: true }
    }

    /// The snake-case name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Procrustes => "procrustes",
            Self::Affine => "affine",
            Self::Linear => "linear",
            Self::LowRank { .. } => "lowrank",
            Self::Mlp { .. } => "mlp",
            Self::Relative { .. } => "relative",
            Self::Unsupervised { .. } => "unsupervised",
        }
    }

    /// The method named `name` with its default parameters.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] listing the names.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "procrustes" => Self::Procrustes,
            "affine" => Self::Affine,
            "linear" => Self::Linear,
            "lowrank" => Self::low_rank_default(),
            "mlp" => Self::mlp_default(),
            "relative" => Self::relative_default(),
            "unsupervised" => Self::Unsupervised { rounds: 10 },
            other => {
                return Err(Error::invalid(
                    "migration method",
                    format!(
                        "`{other}`; choose procrustes, affine, linear, lowrank, mlp, relative or unsupervised"
                    ),
                ))
            }
        })
    }

    /// Whether vectors of B can be brought back to A's space (the query-side adapter).
    pub fn has_inverse(&self) -> bool {
        !matches!(self, Self::Mlp { .. })
    }

    /// Whether the method trains an adapter with candle-nn.
    pub fn is_trained(&self) -> bool {
        matches!(self, Self::LowRank { .. } | Self::Mlp { .. })
    }

    /// The fewest anchors the method can be fitted on, for a source `source_dim` wide.
    pub fn min_anchors(&self, source_dim: usize) -> usize {
        match self {
            Self::Procrustes | Self::Relative { .. } => 2,
            // Standard scaling centres the anchors, which costs one rank: a determined
            // least-squares map needs one anchor more than the source has dimensions.
            Self::Affine | Self::Linear => source_dim + 1,
            // A training split and a validation split of a few anchors each.
            Self::LowRank { .. } | Self::Mlp { .. } => MIN_TRAINED_ANCHORS,
            // Pseudo-pairs found by matching: as few as Procrustes needs.
            Self::Unsupervised { .. } => 2,
        }
    }

    /// Checks the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero rank or hidden width.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::LowRank { rank: 0 } => Err(Error::invalid(
                "lowrank rank",
                "0: the correction needs rank ≥ 1 (default 64); use --method procrustes for none",
            )),
            Self::Mlp { hidden: 0 } => Err(Error::invalid(
                "mlp hidden width",
                "0: use at least 1 hidden unit (default 1024)",
            )),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for MigrationMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LowRank { rank } => write!(f, "lowrank (rank {rank})"),
            Self::Mlp { hidden } => write!(f, "mlp (hidden {hidden})"),
            Self::Relative { center: true } => write!(f, "relative (centred)"),
            other => f.write_str(other.name()),
        }
    }
}

/// The fewest anchors a trained adapter is fitted on.
pub const MIN_TRAINED_ANCHORS: usize = 20;

/// How the `lowrank` and `mlp` adapters are trained (AdamW on the mean squared error in the
/// standard-scaled target space, early stopping on a held-out share of the anchors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterTraining {
    /// Maximum passes over the anchors.
    pub epochs: usize,
    /// Anchors per step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Share of the anchors held out for early stopping.
    pub val_fraction: f64,
    /// Epochs without improvement on the held-out anchors before stopping.
    pub patience: usize,
    /// Seeds the initialisation, the held-out split and the shuffling: the same seed gives the
    /// same map, bit for bit.
    pub seed: u64,
}

impl Default for AdapterTraining {
    fn default() -> Self {
        Self {
            epochs: 200,
            batch_size: 64,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            val_fraction: 0.1,
            patience: 15,
            seed: 0,
        }
    }
}

impl AdapterTraining {
    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the option.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 {
            return Err(Error::invalid(
                "adapter training",
                "epochs and batch size must be at least 1",
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(Error::invalid(
                "learning rate",
                format!("{}: must be finite and positive", self.learning_rate),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::invalid(
                "weight decay",
                format!("{}: must be finite and not negative", self.weight_decay),
            ));
        }
        if !(0.0..0.5).contains(&self.val_fraction) {
            return Err(Error::invalid(
                "validation fraction",
                format!("{}: must be in [0, 0.5)", self.val_fraction),
            ));
        }
        Ok(())
    }
}

/// Options of [`MigrationMap::fit`](super::MigrationMap::fit).
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationOptions {
    /// The method.
    pub method: MigrationMethod,
    /// How `lowrank` and `mlp` are trained (ignored by the closed-form methods).
    pub training: AdapterTraining,
    /// Folds of the cross-validation on the anchors recorded in the map's diagnostics (0: none).
    pub cv_folds: usize,
    /// Neighbourhood size of the cross-validated neighbour recall.
    pub k: usize,
    /// Shows progress bars.
    pub progress: bool,
}

impl Default for MigrationOptions {
    fn default() -> Self {
        Self {
            method: MigrationMethod::DEFAULT,
            training: AdapterTraining::default(),
            cv_folds: 5,
            k: 10,
            progress: false,
        }
    }
}

impl MigrationOptions {
    /// Uses `method`.
    #[must_use]
    pub fn with_method(mut self, method: MigrationMethod) -> Self {
        self.method = method;
        self
    }

    /// Seeds the adapter training.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.training.seed = seed;
        self
    }

    /// Runs `folds`-fold cross-validation on the anchors (0: none).
    #[must_use]
    pub fn with_cv_folds(mut self, folds: usize) -> Self {
        self.cv_folds = folds;
        self
    }

    /// Shows progress bars.
    #[must_use]
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }
}
