//! Relative projections: a sample's representation as its similarities (or distances, or
//! coordinates) to a fixed set of anchor samples.
//!
//! Moschella et al., "Relative representations enable zero-shot latent space communication"
//! (ICLR 2023, <https://arxiv.org/abs/2209.15430>) use the cosine similarity; Cannistraci et al.,
//! "From Bricks to Bridges: Product of Invariances" (ICLR 2024, <https://arxiv.org/abs/2310.01211>)
//! add the other projections below and their aggregation; Norelli et al., "ASIF" (NeurIPS 2023,
//! <https://arxiv.org/abs/2210.01738>) the sparse top-k one.
//!
//! Which changes of the absolute space each projection ignores (what makes zero-shot stitching work):
//!
//! | projection | rotation / reflection | isotropic scaling | translation | permutation of dims | any invertible linear map |
//! |---|---|---|---|---|---|
//! | [`Cosine`](Projection::Cosine), [`Angular`](Projection::Angular), [`SparseTopK`](Projection::SparseTopK) | yes | yes | with `center` | yes | no |
//! | [`Euclidean`](Projection::Euclidean) | yes | with `standardize` or `l2_normalize` | yes | yes | no |
//! | [`L1`](Projection::L1), [`LInf`](Projection::LInf), [`Lp`](Projection::Lp) | no | with `standardize` | yes | yes | no |
//! | [`ChangeOfBasis`](Projection::ChangeOfBasis) (with at least as many anchors as dims) | yes | yes | with `center` | yes | yes |
//!
//! `standardize` (per-dimension scaling) commutes with permutations and isotropic scaling but not with
//! rotations: it breaks the rotation invariance of cosine and Euclidean projections.
//!
//! ```
//! # fn main() -> anyhow::Result<()> {
//! use candle_core::{Device, Tensor};
//! use relstitch::space::projection::{PreTransform, Projection, RelativeProjector};
//! let x = Tensor::new(&[[1f32, 0.], [0., 2.], [3., 3.]], &Device::Cpu)?;
//! let anchors = Tensor::new(&[[1f32, 0.], [0., 1.]], &Device::Cpu)?;
//! let proj = RelativeProjector::fit(&anchors, Projection::Cosine, PreTransform::default())?;
//! let rel = proj.project(&x)?; // [3, 2]: cosine of each row of x with each anchor
//! assert_eq!(rel.dims(), &[3, 2]);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::CandleContext;
use crate::space::linalg;
pub use crate::space::tensor::ColumnStats;
use crate::space::tensor::{
    as_f32_matrix, check_distinct_rows, checked_sq_norms, checked_sq_norms_vec,
    divide_rows_by_norm, f64_device, on_device, par_row_blocks, to_f64_rows,
};
use crate::{Error, Result};

/// How a sample is compared with each anchor.
///
/// Serialised (serde) with a `kind` tag in snake case, e.g. `{"kind":"cosine"}`,
/// `{"kind":"lp","p":3.0}`, `{"kind":"sparse_topk","k":8,"power":8.0}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Projection {
    /// Cosine similarity, in `[-1, 1]` (the paper's choice).
    Cosine,
    /// Angle between the sample and the anchor divided by π, in `[0, 1]` (0 = same direction);
    /// computed in f64.
    Angular,
    /// Euclidean distance (computed in f64 after shifting by the anchors' mean, so that
    /// near-coincident points do not suffer cancellation).
    Euclidean,
    /// Manhattan (L1) distance.
    L1,
    /// Chebyshev (L∞) distance: the largest absolute coordinate difference.
    #[serde(rename = "linf")]
    LInf,
    /// Minkowski distance of order `p` (finite, `p ≥ 1`; `p = 2` is [`Projection::Euclidean`]).
    Lp {
        /// The order of the norm.
        p: f64,
    },
    /// Least-squares coordinates of the sample in the basis of the anchors: the `c` minimising
    /// `‖x − c·A‖` (the minimum-norm one when the anchors outnumber the dimensions), computed in f64.
    /// Invariant to every invertible linear map of the space when the anchors span it
    /// (at least as many anchors as dimensions).
    ChangeOfBasis,
    /// ASIF's sparse relative representation: cosine similarities, of which only the `k` largest
    /// per sample are kept (negative ones clamped to 0), raised to `power` and renormalised to unit
    /// L2 norm (a sample with no positive similarity among its top `k` stays all zeros).
    #[serde(rename = "sparse_topk")]
    SparseTopK {
        /// How many anchors to keep per sample (`1 ≤ k ≤ anchors`).
        k: usize,
        /// The sharpening exponent (finite, `> 0`; ASIF uses 8).
        power: f64,
    },
}

impl Projection {
    /// The snake-case name of the projection, as used in serde and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Cosine => "cosine",
            Self::Angular => "angular",
            Self::Euclidean => "euclidean",
            Self::L1 => "l1",
            Self::LInf => "linf",
            Self::Lp { .. } => "lp",
            Self::ChangeOfBasis => "change_of_basis",
            Self::SparseTopK { .. } => "sparse_topk",
        }
    }

    /// Whether the projection divides by the norms of the samples and anchors (so that zero vectors
    /// are invalid input).
    pub fn needs_nonzero_vectors(&self) -> bool {
        matches!(self, Self::Cosine | Self::Angular | Self::SparseTopK { .. })
    }

    /// Checks the parameters (`p`, `k`, `power`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an `lp` with `p` not finite or below 1, or a `sparse_topk`
    /// with `k = 0` or a `power` that is not finite and positive.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::Lp { p } if !(p.is_finite() && p >= 1.0) => Err(Error::invalid(
                "projection lp",
                format!("p must be finite and at least 1 (got {p}); use `linf` for p = ∞"),
            )),
            Self::SparseTopK { k, power } => {
                if k == 0 {
                    return Err(Error::invalid(
                        "projection sparse_topk",
                        "k must be at least 1",
                    ));
                }
                if !(power.is_finite() && power > 0.0) {
                    return Err(Error::invalid(
                        "projection sparse_topk",
                        format!("power must be finite and positive (got {power})"),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lp { p } => write!(f, "lp(p={p})"),
            Self::SparseTopK { k, power } => write!(f, "sparse_topk(k={k}, power={power})"),
            other => f.write_str(other.name()),
        }
    }
}

/// ZCA whitening fitted on the anchors, with shrinkage towards an isotropic covariance.
///
/// With `C` the covariance of the anchors (after the other pre-transforms) and `λ̄ = tr C / d` its
/// mean eigenvalue, vectors become `(x − μ) · (C + s·λ̄·I)^{-1/2}`: directions in which the anchors
/// vary a lot are shrunk, directions in which they vary little are stretched, so that no handful of
/// dominant directions decides every cosine. This is what anisotropic encoders need (e.g. e5 or
/// sre, where two unrelated texts have cosine 0.45–0.8): their plain cosine relative vectors all
/// look alike. The shrinkage `s` keeps the directions the anchors barely see from being blown up;
/// `s = 0` is full whitening, which makes the cosine invariant to every invertible linear map of
/// the space when the anchors span it (more anchors than dimensions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Whitening {
    /// `s ≥ 0`, finite: how much of the mean eigenvalue is added to every eigenvalue.
    pub shrinkage: f64,
}

impl Whitening {
    /// The shrinkage `relstitch fit` uses by default (measured in docs/RESULTS.md, `stitch_robust`).
    pub const DEFAULT_SHRINKAGE: f64 = 1.0;

    /// Checks the shrinkage: finite and not negative.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the value.
    pub fn validate(&self) -> Result<()> {
        if self.shrinkage.is_finite() && self.shrinkage >= 0.0 {
            Ok(())
        } else {
            Err(Error::invalid(
                "whitening shrinkage",
                format!(
                    "{}: must be finite and not negative (0 = full whitening; default {})",
                    self.shrinkage,
                    Self::DEFAULT_SHRINKAGE
                ),
            ))
        }
    }
}

impl Default for Whitening {
    fn default() -> Self {
        Self {
            shrinkage: Self::DEFAULT_SHRINKAGE,
        }
    }
}

/// Transforms of the absolute space fitted on the anchors and applied to anchors and samples alike
/// before projecting, in this order: centering, standard scaling, whitening, L2 normalisation.
///
/// Serialised (serde) as `{"center":…,"standardize":…,"l2_normalize":…}` plus
/// `"whiten":{"shrinkage":…}` only when whitening is on, so that what earlier versions wrote reads
/// (and re-serialises) unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PreTransform {
    /// Subtract the anchors' per-dimension mean.
    #[serde(default)]
    pub center: bool,
    /// Divide by the anchors' per-dimension (population) standard deviation; dimensions that are
    /// constant over the anchors are left unscaled, as scikit-learn does.
    #[serde(default)]
    pub standardize: bool,
    /// Scale every vector to unit L2 norm (zero vectors are an error).
    #[serde(default)]
    pub l2_normalize: bool,
    /// ZCA whitening fitted on the anchors (it subtracts the anchors' mean itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whiten: Option<Whitening>,
}

impl PreTransform {
    /// No transform.
    pub const NONE: Self = Self {
        center: false,
        standardize: false,
        l2_normalize: false,
        whiten: None,
    };

    /// Centering on the anchors' mean: with the cosine projection, the relative space
    /// `relstitch fit` uses by default (stitched through a latent translation by default).
    pub const CENTERED: Self = Self {
        center: true,
        standardize: false,
        l2_normalize: false,
        whiten: None,
    };

    /// Centering and whitening with the default shrinkage (the most robust space for zero-shot
    /// stitches; `relstitch fit --whiten`).
    pub const WHITENED: Self = Self {
        center: true,
        standardize: false,
        l2_normalize: false,
        whiten: Some(Whitening {
            shrinkage: Whitening::DEFAULT_SHRINKAGE,
        }),
    };

    /// Sets centering.
    #[must_use]
    pub fn with_center(mut self, on: bool) -> Self {
        self.center = on;
        self
    }

    /// Sets standard scaling.
    #[must_use]
    pub fn with_standardize(mut self, on: bool) -> Self {
        self.standardize = on;
        self
    }

    /// Sets L2 normalisation.
    #[must_use]
    pub fn with_l2_normalize(mut self, on: bool) -> Self {
        self.l2_normalize = on;
        self
    }

    /// Sets whitening (`None`: off).
    #[must_use]
    pub fn with_whiten(mut self, whiten: Option<Whitening>) -> Self {
        self.whiten = whiten;
        self
    }

    /// Whether no transform is applied.
    pub fn is_identity(&self) -> bool {
        !(self.center || self.standardize || self.l2_normalize || self.whiten.is_some())
    }

    /// Checks the parameters (the whitening shrinkage).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        self.whiten.map_or(Ok(()), |w| w.validate())
    }
}

impl fmt::Display for PreTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = vec![];
        if self.center {
            parts.push("center");
        }
        if self.standardize {
            parts.push("standardize");
        }
        let white;
        if let Some(w) = self.whiten {
            white = format!("whiten(shrinkage={})", w.shrinkage);
            parts.push(&white);
        }
        if self.l2_normalize {
            parts.push("l2_normalize");
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join("+"))
        }
    }
}

/// How several relative representations of the same samples are merged into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Side by side: `[n, k₁ + k₂ + …]`.
    Concat,
    /// Each one scaled to unit L2 norm per sample, then summed: `[n, k]` (rows that are all zeros
    /// stay zero).
    NormalizedSum,
    /// Each one scaled to unit L2 norm per sample, then side by side: `[n, k₁ + k₂ + …]`. Keeps
    /// projections of very different magnitudes (cosines in `[-1, 1]`, L1 distances in the
    /// hundreds) on an equal footing, and makes distance projections invariant to rescaling the
    /// space.
    NormalizedConcat,
}

/// A [`PreTransform`] with its statistics fitted on the anchors.
#[derive(Debug, Clone)]
struct FittedPre {
    spec: PreTransform,
    stats: Option<ColumnStats>,
    /// `[1, d]` f32: the mean to subtract, when centering.
    shift: Option<Tensor>,
    /// `[1, d]` f32: the reciprocal scale to multiply by, when standardising.
    inv_scale: Option<Tensor>,
    /// When whitening: the anchors' mean after centering and scaling (`[1, d]` f32) and the
    /// symmetric whitening matrix (`[d, d]` f32).
    whiten: Option<(Tensor, Tensor)>,
}

impl FittedPre {
    fn fit(anchors: &Tensor, spec: PreTransform) -> Result<Self> {
        spec.validate()?;
        let mut fitted = Self::fit_affine(anchors, spec)?;
        if let Some(w) = spec.whiten {
            let scaled = fitted.apply_affine(anchors)?;
            fitted.whiten = Some(fit_whitening(&scaled, w)?);
        }
        Ok(fitted)
    }

    /// Centering and standard scaling.
    fn fit_affine(anchors: &Tensor, spec: PreTransform) -> Result<Self> {
        if !(spec.center || spec.standardize) {
            return Ok(Self {
                spec,
                stats: None,
                shift: None,
                inv_scale: None,
                whiten: None,
            });
        }
        let d = anchors
            .dim(1)
            .context(|| "fitting the pre-transform".into())?;
        let stats = ColumnStats::fit(anchors)?;
        let dev = anchors.device();
        let row = |v: Vec<f32>| Tensor::from_vec(v, (1, d), dev);
        let shift = if spec.center {
            Some(
                row(stats.mean.iter().map(|&m| m as f32).collect())
                    .context(|| "fitting the centering".into())?,
            )
        } else {
            None
        };
        let inv_scale = if spec.standardize {
            Some(
                row(stats.scale.iter().map(|&s| (1.0 / s) as f32).collect())
                    .context(|| "fitting the standard scaling".into())?,
            )
        } else {
            None
        };
        Ok(Self {
            spec,
            stats: Some(stats),
            shift,
            inv_scale,
            whiten: None,
        })
    }

    /// Centering and standard scaling of `x` (`[n, d]` f32), on `x`'s device.
    fn apply_affine(&self, x: &Tensor) -> Result<Tensor> {
        let ctx = || "applying the pre-transform".to_string();
        let dev = x.device();
        let mut x = x.clone();
        if let Some(shift) = &self.shift {
            x = x
                .broadcast_sub(&on_device(shift, dev).context(ctx)?)
                .context(ctx)?;
        }
        if let Some(inv) = &self.inv_scale {
            x = x
                .broadcast_mul(&on_device(inv, dev).context(ctx)?)
                .context(ctx)?;
        }
        Ok(x)
    }

    /// Applies the transform to `x` (`[n, d]` f32) on `x`'s device; `what` names `x` in errors.
    fn apply(&self, x: &Tensor, what: &str, offset: usize) -> Result<Tensor> {
        let ctx = || format!("applying the pre-transform to {what}");
        let dev = x.device();
        let mut x = self.apply_affine(x)?;
        if let Some((mean, w)) = &self.whiten {
            x = x
                .broadcast_sub(&on_device(mean, dev).context(ctx)?)
                .and_then(|x| x.matmul(&on_device(w, dev)?))
                .context(ctx)?;
        }
        if self.spec.l2_normalize {
            let sq = checked_sq_norms(&x, true, what, "before L2 normalisation", offset)?;
            x = x.broadcast_div(&sq.sqrt().context(ctx)?).context(ctx)?;
        }
        Ok(x)
    }
}

/// Fits ZCA whitening on the rows of `anchors` (`[k, d]` f32): their mean (`[1, d]`) and the
/// symmetric matrix `(C + s·λ̄·I)^{-1/2}` (`[d, d]`), both f32 on the anchors' device, computed in
/// f64 on the CPU through the eigen-decomposition of the covariance `C`.
fn fit_whitening(anchors: &Tensor, w: Whitening) -> Result<(Tensor, Tensor)> {
    let ctx = || "fitting the whitening".to_string();
    let (k, d) = anchors.dims2().context(ctx)?;
    let a64 = anchors
        .to_device(&Device::Cpu)
        .and_then(|a| a.to_dtype(DType::F64))
        .context(ctx)?;
    let mean = a64.mean_keepdim(0).context(ctx)?;
    let c = a64.broadcast_sub(&mean).context(ctx)?;
    let cov = c
        .t()
        .and_then(|t| t.matmul(&c))
        .and_then(|g| g.affine(1.0 / k as f64, 0.0))
        .context(ctx)?;
    let cov_v = to_f64_rows(&cov, "fitting the whitening")?;
    let eig = linalg::sym_eigen(&cov_v, d, true).context(ctx)?;
    let mean_ev = eig.values.iter().map(|v| v.max(0.0)).sum::<f64>() / d as f64;
    if mean_ev <= 0.0 {
        return Err(Error::invalid(
            "anchor latents",
            "the anchors are all the same vector: there is no spread to whiten",
        ));
    }
    let top = eig.values.first().copied().unwrap_or(0.0);
    let floor = w.shrinkage * mean_ev;
    // Without shrinkage, a direction the anchors do not span would be stretched without bound.
    if let Some(low) = eig.values.last().copied() {
        if low.max(0.0) + floor <= 1e-12 * top {
            return Err(Error::invalid(
                "anchor latents",
                format!(
                    "full whitening (shrinkage 0) needs anchors that span the space, but their                      covariance is singular ({k} anchors in {d} dimensions); use a shrinkage above 0                      (default {}) or more anchors",
                    Whitening::DEFAULT_SHRINKAGE
                ),
            ));
        }
    }
    let scale: Vec<f64> = eig
        .values
        .iter()
        .map(|&l| 1.0 / (l.max(0.0) + floor).sqrt())
        .collect();
    // W = Eᵀ diag(scale) E, with the eigenvectors as the rows of E.
    let e = Tensor::from_vec(eig.vectors, (d, d), &Device::Cpu).context(ctx)?;
    let scale = Tensor::from_vec(scale, (d, 1), &Device::Cpu).context(ctx)?;
    let wm = e
        .t()
        .and_then(|et| et.matmul(&e.broadcast_mul(&scale)?))
        .and_then(|m| m.to_dtype(DType::F32))
        .and_then(|m| m.to_device(anchors.device()))
        .context(ctx)?;
    let mean = mean
        .to_dtype(DType::F32)
        .and_then(|m| m.to_device(anchors.device()))
        .context(ctx)?;
    Ok((mean, wm))
}

/// The projection-specific state prepared at fit time.
#[derive(Debug, Clone)]
enum Kernel {
    /// Unit-norm anchors, transposed: `[d, k]` f32 (cosine, sparse top-k).
    Unit { anchors_t: Tensor },
    /// Unit-norm anchors, transposed: `[d, k]` f64 (angular).
    Unit64 { anchors_t: Tensor },
    /// Euclidean in f64: `shift` `[1, d]`, shifted anchors transposed `[d, k]`, their squared norms
    /// `[1, k]`.
    Euclid {
        shift: Tensor,
        anchors_t: Tensor,
        anchor_sq: Tensor,
    },
    /// Elementwise distances against the anchors `[k, d]` f32.
    Pairwise { anchors: Tensor },
    /// The pseudo-inverse of the anchor matrix: `[d, k]` f64.
    Basis { pinv: Tensor },
}

/// Relative projection fitted on a set of anchor latents.
///
/// Fit once on the anchors' absolute latents (`[k, d]`), then [`project`](Self::project) any
/// number of samples from the same space (`[n, d]` → `[n, k]`). Output column `j` always refers
/// to anchor `j`, so two projectors fitted on the *same* anchor samples embedded by two different
/// encoders produce comparable representations: that is zero-shot stitching.
#[derive(Debug, Clone)]
pub struct RelativeProjector {
    projection: Projection,
    pre: FittedPre,
    num_anchors: usize,
    dim: usize,
    kernel: Kernel,
    max_chunk_rows: Option<usize>,
}

/// Row chunks for the matmul-based projections: bounded temporaries, never a per-row loop.
const MATMUL_CHUNK_ELEMS: usize = 1 << 28;
/// Row chunks for the elementwise distances: `chunk × k × d` elements per temporary.
const PAIRWISE_CHUNK_ELEMS: usize = 1 << 22;

impl RelativeProjector {
    /// Fits the projection on the anchors' latents: validates them, fits the pre-transform on them
    /// and prepares the anchors (normalised, transposed, pseudo-inverted…) for fast projection.
    ///
    /// # Shapes
    /// - `anchor_latents`: `[k, d]`, any float dtype (computed in f32 or f64), any device; the
    ///   fitted state lives on that device and moves to the input's device when they differ.
    ///
    /// # Errors
    /// [`Error::Shape`] when `anchor_latents` is not a matrix. [`Error::InvalidArgument`] for
    /// fewer than 2 anchors or 0 dimensions, a non-float dtype, NaN/infinite values, two identical
    /// anchors, a zero anchor (after the pre-transform) for the cosine-based projections, a
    /// rank-deficient anchor matrix for [`Projection::ChangeOfBasis`], or invalid projection
    /// parameters (including `k` larger than the number of anchors). [`Error::Candle`] when a
    /// tensor operation fails.
    pub fn fit(anchor_latents: &Tensor, projection: Projection, pre: PreTransform) -> Result<Self> {
        projection.validate()?;
        let anchors = as_f32_matrix(anchor_latents, "anchor latents")?;
        let (k, d) = anchors
            .dims2()
            .map_err(|e| Error::candle("reading the anchors", e))?;
        if k < 2 {
            return Err(Error::invalid(
                "anchor latents",
                format!("{k} anchor(s): a relative representation needs at least 2 anchors"),
            ));
        }
        if d == 0 {
            return Err(Error::invalid(
                "anchor latents",
                "the anchors have 0 dimensions",
            ));
        }
        crate::io::check_finite(&anchors, "anchor latents")?;
        check_distinct_rows(&anchors)?;
        if let Projection::SparseTopK { k: top, .. } = projection {
            if top > k {
                return Err(Error::invalid(
                    "projection sparse_topk",
                    format!("k = {top} but there are only {k} anchors"),
                ));
            }
        }
        let fitted = FittedPre::fit(&anchors, pre)?;
        let a = fitted.apply(&anchors, "the anchors", 0)?;
        let ctx = || format!("preparing the {projection} projection");
        // Lp with p = 2 is the Euclidean distance: take its exact, matmul-based kernel.
        let effective = match projection {
            Projection::Lp { p: 2.0 } => Projection::Euclidean,
            other => other,
        };
        let kernel = match effective {
            Projection::Cosine | Projection::SparseTopK { .. } => {
                let sq = checked_sq_norms(&a, true, "the anchors", "after the pre-transform", 0)?;
                let unit = a.broadcast_div(&sq.sqrt().context(ctx)?).context(ctx)?;
                Kernel::Unit {
                    anchors_t: unit.t().and_then(|t| t.contiguous()).context(ctx)?,
                }
            }
            Projection::Angular => {
                let a64 = a.to_dtype(DType::F64).context(ctx)?;
                let sq = checked_sq_norms(&a64, true, "the anchors", "after the pre-transform", 0)?;
                let unit = a64.broadcast_div(&sq.sqrt().context(ctx)?).context(ctx)?;
                Kernel::Unit64 {
                    anchors_t: unit.t().and_then(|t| t.contiguous()).context(ctx)?,
                }
            }
            Projection::Euclidean => {
                let a64 = a.to_dtype(DType::F64).context(ctx)?;
                let shift = a64.mean_keepdim(0).context(ctx)?;
                let ac = a64.broadcast_sub(&shift).context(ctx)?;
                let anchor_sq = ac
                    .sqr()
                    .and_then(|t| t.sum_keepdim(1))
                    .and_then(|t| t.t())
                    .and_then(|t| t.contiguous())
                    .context(ctx)?;
                Kernel::Euclid {
                    shift,
                    anchors_t: ac.t().and_then(|t| t.contiguous()).context(ctx)?,
                    anchor_sq,
                }
            }
            Projection::L1 | Projection::LInf | Projection::Lp { .. } => {
                Kernel::Pairwise { anchors: a.clone() }
            }
            Projection::ChangeOfBasis => {
                let (pinv, rank) = linalg::pinv(&a).context(ctx)?;
                if rank < k.min(d) {
                    return Err(Error::invalid(
                        "anchor latents",
                        format!(
                            "the {k}×{d} anchor matrix has rank {rank} < {}: its change of basis is \
                             not unique; drop linearly dependent anchors or use fewer anchors",
                            k.min(d)
                        ),
                    ));
                }
                Kernel::Basis {
                    pinv: pinv.to_device(a.device()).context(ctx)?,
                }
            }
        };
        Ok(Self {
            projection,
            pre: fitted,
            num_anchors: k,
            dim: d,
            kernel,
            max_chunk_rows: None,
        })
    }

    /// The relative representation of every row of `x`: column `j` compares the row with anchor `j`.
    ///
    /// Runs on `x`'s device, in row chunks, with one matrix product per chunk for the cosine,
    /// angular, Euclidean and change-of-basis projections. Errors are typed, never NaN.
    ///
    /// # Shapes
    /// - `x`: `[n, d]`, any float dtype (converted to f32), any device.
    /// - returns: `[n, k]` f32 on `x`'s device, rows in input order.
    ///
    /// # Errors
    /// [`Error::Shape`] when `x` is not a matrix. [`Error::InvalidArgument`] for a width other
    /// than the anchors', a non-float dtype, NaN/infinite values, a zero (or under/overflowing)
    /// row after the pre-transform for the cosine-based projections, or a result that overflows
    /// f32. [`Error::Candle`] when a tensor operation fails.
    pub fn project(&self, x: &Tensor) -> Result<Tensor> {
        self.project_at(x, 0)
    }

    /// [`project`](Self::project) for rows `offset..` of a larger matrix read in pieces: errors
    /// name a row by its index in the whole matrix.
    pub(crate) fn project_at(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let x = as_f32_matrix(x, "input latents")?;
        let (n, d) = x
            .dims2()
            .map_err(|e| Error::candle("reading the input", e))?;
        if d != self.dim {
            return Err(Error::invalid(
                "input latents",
                format!(
                    "{d} dimensions, but the anchors have {}; embed the input with the encoder the \
                     anchors came from",
                    self.dim
                ),
            ));
        }
        let k = self.num_anchors;
        let auto = match self.kernel {
            Kernel::Pairwise { .. } => (PAIRWISE_CHUNK_ELEMS / (k * d)).max(1),
            _ => (MATMUL_CHUNK_ELEMS / d.max(k)).max(1),
        };
        let chunk = self.max_chunk_rows.map_or(auto, |m| m.min(auto));
        if n <= chunk {
            return self.project_chunk(&x, offset);
        }
        let mut parts = Vec::with_capacity(n.div_ceil(chunk));
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let xc = x
                .narrow(0, start, len)
                .context(|| "slicing the input".into())?;
            parts.push(self.project_chunk(&xc, offset + start)?);
            start += len;
        }
        Tensor::cat(&parts, 0).context(|| "joining the projected chunks".into())
    }

    /// Projects one chunk of rows (f32, validated width); `offset` is the index of its first row.
    fn project_chunk(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let dev = x.device().clone();
        let what = "the input";
        let ctx = || format!("computing the {} projection", self.projection);
        let x = self.pre.apply(x, "the input", offset)?;
        match &self.kernel {
            Kernel::Unit { anchors_t } => {
                let (sq, sq_vec) =
                    checked_sq_norms_vec(&x, true, what, "after the pre-transform", offset)?;
                let a = on_device(anchors_t, &dev).context(ctx)?;
                // One matmul against the unit anchors, then each row divided by its norm
                // (in place on the CPU: no extra n × k temporary).
                let cos = x
                    .matmul(&a)
                    .and_then(|y| divide_rows_by_norm(y, &sq, &sq_vec))
                    .context(ctx)?;
                match self.projection {
                    Projection::SparseTopK { k, power } => sparsify(&cos, k, power).context(ctx),
                    _ => Ok(cos),
                }
            }
            Kernel::Unit64 { anchors_t } => {
                let dev64 = f64_device(&dev);
                let x64 = x
                    .to_device(&dev64)
                    .and_then(|x| x.to_dtype(DType::F64))
                    .context(ctx)?;
                let sq = checked_sq_norms(&x64, true, what, "after the pre-transform", offset)?;
                let a = on_device(anchors_t, &dev64).context(ctx)?;
                let cos = x64
                    .matmul(&a)
                    .and_then(|y| y.broadcast_div(&sq.sqrt()?))
                    .and_then(|c| c.clamp(-1f64, 1f64))
                    .context(ctx)?;
                acos_over_pi(cos)
                    .and_then(|t| t.to_dtype(DType::F32))
                    .and_then(|t| t.to_device(&dev))
                    .context(ctx)
            }
            Kernel::Euclid {
                shift,
                anchors_t,
                anchor_sq,
            } => {
                let dev64 = f64_device(&dev);
                let x64 = x
                    .to_device(&dev64)
                    .and_then(|x| x.to_dtype(DType::F64))
                    .and_then(|x| x.broadcast_sub(&on_device(shift, &dev64)?))
                    .context(ctx)?;
                let sq = checked_sq_norms(&x64, false, what, "after the pre-transform", offset)?;
                let a = on_device(anchors_t, &dev64).context(ctx)?;
                let asq = on_device(anchor_sq, &dev64).context(ctx)?;
                let out = x64
                    .matmul(&a)
                    .and_then(|xa| xa.affine(-2.0, 0.0))
                    .and_then(|t| t.broadcast_add(&sq))
                    .and_then(|t| t.broadcast_add(&asq))
                    .and_then(|t| t.maximum(0f64))
                    .and_then(|t| t.sqrt())
                    .and_then(|t| t.to_dtype(DType::F32))
                    .and_then(|t| t.to_device(&dev))
                    .context(ctx)?;
                check_projected(out, self.projection, offset)
            }
            Kernel::Pairwise { anchors } => {
                checked_sq_norms(&x, false, what, "after the pre-transform", offset)?;
                let a = on_device(anchors, &dev).context(ctx)?;
                let out = if dev.is_cpu() {
                    pairwise_cpu(&x, &a, self.projection).context(ctx)?
                } else {
                    pairwise(&x, &a, self.projection).context(ctx)?
                };
                check_projected(out, self.projection, offset)
            }
            Kernel::Basis { pinv } => {
                let dev64 = f64_device(&dev);
                checked_sq_norms(&x, false, what, "after the pre-transform", offset)?;
                let p = on_device(pinv, &dev64).context(ctx)?;
                let out = x
                    .to_device(&dev64)
                    .and_then(|x| x.to_dtype(DType::F64))
                    .and_then(|x| x.matmul(&p))
                    .and_then(|t| t.to_dtype(DType::F32))
                    .and_then(|t| t.to_device(&dev))
                    .context(ctx)?;
                check_projected(out, self.projection, offset)
            }
        }
    }

    /// Caps the rows projected per chunk (default: automatic, so that temporaries stay around
    /// 1 GiB). Lower it to bound GPU memory; the result does not depend on it.
    #[must_use]
    pub fn with_max_chunk_rows(mut self, rows: usize) -> Self {
        self.max_chunk_rows = Some(rows.max(1));
        self
    }

    /// The projection.
    pub fn projection(&self) -> Projection {
        self.projection
    }

    /// The pre-transform.
    pub fn pre_transform(&self) -> PreTransform {
        self.pre.spec
    }

    /// The statistics fitted on the anchors for centering / standard scaling (`None` when neither
    /// is on).
    pub fn column_stats(&self) -> Option<&ColumnStats> {
        self.pre.stats.as_ref()
    }

    /// The number of anchors `k` (the width of the output).
    pub fn num_anchors(&self) -> usize {
        self.num_anchors
    }

    /// The width `d` of the absolute space.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// String metadata describing the projection (`projection` and `pre_transform` as JSON,
    /// `num_anchors`, `dim`), for the safetensors files that hold relative representations.
    pub fn metadata(&self) -> HashMap<String, String> {
        HashMap::from([
            (
                "projection".to_string(),
                serde_json::to_string(&self.projection).unwrap_or_default(),
            ),
            (
                "pre_transform".to_string(),
                serde_json::to_string(&self.pre.spec).unwrap_or_default(),
            ),
            ("num_anchors".to_string(), self.num_anchors.to_string()),
            ("dim".to_string(), self.dim.to_string()),
        ])
    }
}

/// Fits a projector on `anchor_latents` and projects `x`: the one-call form of
/// [`RelativeProjector::fit`] + [`RelativeProjector::project`].
///
/// # Shapes
/// - `x`: `[n, d]`; `anchor_latents`: `[k, d]`; returns `[n, k]` f32 on `x`'s device.
///
/// # Errors
/// The errors of [`RelativeProjector::fit`], then those of [`RelativeProjector::project`].
pub fn relative_projection(
    x: &Tensor,
    anchor_latents: &Tensor,
    projection: Projection,
    pre: PreTransform,
) -> Result<Tensor> {
    RelativeProjector::fit(anchor_latents, projection, pre)?.project(x)
}

/// Several projections of the same anchors merged into one representation (Cannistraci et al.'s
/// product of invariances).
#[derive(Debug, Clone)]
pub struct AggregatedProjector {
    parts: Vec<RelativeProjector>,
    aggregation: Aggregation,
}

impl AggregatedProjector {
    /// Fits one [`RelativeProjector`] per projection, all with the same pre-transform.
    ///
    /// # Shapes
    /// - `anchor_latents`: `[k, d]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `projections` is empty; the errors of
    /// [`RelativeProjector::fit`] for each projection.
    pub fn fit(
        anchor_latents: &Tensor,
        projections: &[Projection],
        pre: PreTransform,
        aggregation: Aggregation,
    ) -> Result<Self> {
        if projections.is_empty() {
            return Err(Error::invalid(
                "projections",
                "aggregation needs at least one projection",
            ));
        }
        let parts = projections
            .iter()
            .map(|&p| RelativeProjector::fit(anchor_latents, p, pre))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { parts, aggregation })
    }

    /// Projects `x` with every projection and aggregates.
    ///
    /// # Shapes
    /// - `x`: `[n, d]`.
    /// - returns: `[n, k · projections]` for [`Aggregation::Concat`] and
    ///   [`Aggregation::NormalizedConcat`], `[n, k]` for
    ///   [`Aggregation::NormalizedSum`]; f32 on `x`'s device.
    ///
    /// # Errors
    /// The errors of [`RelativeProjector::project`] for each part; [`Error::Candle`] when
    /// aggregating fails.
    pub fn project(&self, x: &Tensor) -> Result<Tensor> {
        let outs = self
            .parts
            .iter()
            .map(|p| p.project(x))
            .collect::<Result<Vec<_>>>()?;
        let ctx = || format!("aggregating projections ({:?})", self.aggregation);
        match self.aggregation {
            Aggregation::Concat => Tensor::cat(&outs, 1).context(ctx),
            Aggregation::NormalizedSum | Aggregation::NormalizedConcat => {
                let mut units = Vec::with_capacity(outs.len());
                for o in &outs {
                    let norm = o
                        .sqr()
                        .and_then(|t| t.sum_keepdim(1))
                        .and_then(|t| t.sqrt())
                        .and_then(|t| t.maximum(1e-30f32))
                        .context(ctx)?;
                    units.push(o.broadcast_div(&norm).context(ctx)?);
                }
                if self.aggregation == Aggregation::NormalizedConcat {
                    return Tensor::cat(&units, 1).context(ctx);
                }
                let mut acc: Option<Tensor> = None;
                for u in units {
                    acc = Some(match acc {
                        None => u,
                        Some(a) => (a + u).context(ctx)?,
                    });
                }
                acc.ok_or_else(|| Error::invalid("projections", "nothing to aggregate"))
            }
        }
    }

    /// The fitted projectors, in order.
    pub fn parts(&self) -> &[RelativeProjector] {
        &self.parts
    }

    /// The aggregation.
    pub fn aggregation(&self) -> Aggregation {
        self.aggregation
    }

    /// The width of the aggregated representation.
    pub fn width(&self) -> usize {
        let k = self.parts.first().map_or(0, |p| p.num_anchors());
        match self.aggregation {
            Aggregation::Concat | Aggregation::NormalizedConcat => k * self.parts.len(),
            Aggregation::NormalizedSum => k,
        }
    }
}

/// Fails when the projection of a chunk (`[c, k]`) holds a non-finite value: a distance or
/// coordinate too large for f32 (the inputs are finite, so only overflow can cause it).
/// `offset` is the index of the chunk's first row.
fn check_projected(out: Tensor, projection: Projection, offset: usize) -> Result<Tensor> {
    let k = out
        .dim(1)
        .map_err(|e| Error::candle("reading the projection", e))?;
    let v = out
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| Error::candle("reading the projection", e))?;
    if let Some(at) = v.iter().position(|x| !x.is_finite()) {
        let (row, anchor) = (offset + at / k.max(1), at % k.max(1));
        return Err(Error::invalid(
            "input latents",
            format!(
                "the {projection} projection of row {row} onto anchor {anchor} overflows f32 (the \
                 result is larger than {:e}): the embeddings' values are too large; rescale them \
                 (divide them by a constant) or pre-normalise them (--l2-normalize), then project \
                 again",
                f32::MAX
            ),
        ));
    }
    Ok(out)
}

/// Elementwise arccos of `x` (values in `[-1, 1]`, f64), via Abramowitz & Stegun 4.4.46
/// (|error| ≤ 2·10⁻⁸) so that it runs on any device.
fn acos(x: &Tensor) -> candle_core::Result<Tensor> {
    const A: [f64; 8] = [
        1.570_796_305_0,
        -0.214_598_801_6,
        0.088_978_987_4,
        -0.050_174_304_6,
        0.030_891_881_0,
        -0.017_088_125_6,
        0.006_670_090_1,
        -0.001_262_491_1,
    ];
    let ax = x.abs()?;
    // Horner: P(|x|)
    let mut p = ax.affine(A[7], A[6])?;
    for &c in A[..6].iter().rev() {
        p = (p * &ax)?.affine(1.0, c)?;
    }
    let pos = (ax.affine(-1.0, 1.0)?.maximum(0f64)?.sqrt()? * p)?; // acos(|x|)
    let neg = pos.affine(-1.0, std::f64::consts::PI)?; // acos(-|x|) = π − acos(|x|)
    x.ge(0f64)?.where_cond(&pos, &neg)
}

/// ASIF sparsification of cosine similarities `[n, k]`: keep the top `top` per row, clamp at 0,
/// raise to `power`, L2-renormalise.
fn sparsify(cos: &Tensor, top: usize, power: f64) -> candle_core::Result<Tensor> {
    let idx = cos
        .arg_sort_last_dim(false)?
        .narrow(1, 0, top)?
        .contiguous()?;
    let vals = cos.gather(&idx, 1)?.relu()?.powf(power)?;
    let sparse = cos.zeros_like()?.scatter(&idx, &vals, 1)?;
    let norm = sparse.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(1e-30f32)?;
    sparse.broadcast_div(&norm)
}

/// Elementwise distances between the rows of `x` (`[c, d]`) and of `a` (`[k, d]`), in row chunks.
fn pairwise(x: &Tensor, a: &Tensor, projection: Projection) -> candle_core::Result<Tensor> {
    let (n, d) = x.dims2()?;
    let k = a.dim(0)?;
    let chunk = (PAIRWISE_CHUNK_ELEMS / (k * d).max(1)).max(1);
    let a3 = a.unsqueeze(0)?;
    let mut parts = Vec::with_capacity(n.div_ceil(chunk));
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let diff = x
            .narrow(0, start, len)?
            .unsqueeze(1)?
            .broadcast_sub(&a3)?
            .abs()?; // [len, k, d]
        let out = match projection {
            Projection::L1 => diff.sum(2)?,
            Projection::LInf => diff.max(2)?,
            Projection::Lp { p } => {
                // m · (Σ (|Δ|/m)^p)^(1/p): no overflow for large p.
                let m = diff.max_keepdim(2)?;
                let safe = m.maximum(f32::MIN_POSITIVE)?;
                let s = diff
                    .broadcast_div(&safe)?
                    .powf(p)?
                    .sum_keepdim(2)?
                    .powf(1.0 / p)?;
                (s * m)?.squeeze(2)?
            }
            _ => candle_core::bail!("{projection} is not an elementwise distance"),
        };
        parts.push(out);
        start += len;
    }
    if parts.len() == 1 {
        return Ok(parts.remove(0));
    }
    Tensor::cat(&parts, 0)
}

// ---------------------------------------------------------------------------------------------
// CPU kernels for the hot path: row norms without an n × d temporary, and row scaling in place.
// Other devices use the equivalent tensor ops.

/// `arccos(x) / π` of a tensor of cosines (f64): exact and in place on the CPU, through
/// [`acos`]'s polynomial elsewhere. `cos` must own its storage (a fresh result, not a clone of a
/// tensor still in use), since the CPU path overwrites it.
fn acos_over_pi(cos: Tensor) -> candle_core::Result<Tensor> {
    if cos.device().is_cpu() && cos.is_contiguous() {
        cos.inplace_op1(&AcosOverPi)?;
        Ok(cos)
    } else {
        acos(&cos)?.affine(1.0 / std::f64::consts::PI, 0.0)
    }
}

/// In-place op: `x ← arccos(x) / π` on a contiguous f64 CPU tensor.
struct AcosOverPi;

impl candle_core::InplaceOp1 for AcosOverPi {
    fn name(&self) -> &'static str {
        "acos-over-pi"
    }

    fn cpu_fwd(
        &self,
        storage: &mut candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("acos-over-pi needs a contiguous tensor");
        };
        let candle_core::CpuStorage::F64(v) = storage else {
            candle_core::bail!("acos-over-pi supports f64");
        };
        let row = layout.dims().last().copied().unwrap_or(1).max(1);
        par_row_blocks(&mut v[start..end], row, 8 * row, |_, block| {
            block
                .iter_mut()
                .for_each(|x| *x = x.clamp(-1.0, 1.0).acos() / std::f64::consts::PI);
        });
        Ok(())
    }
}

/// Elementwise distances (L1, L∞, Lp) between the rows of `x` (`[n, d]`) and of `a` (`[k, d]`),
/// both f32 on the CPU: one pass per pair with vectorisable loops, rows spread over the threads.
fn pairwise_cpu(x: &Tensor, a: &Tensor, projection: Projection) -> candle_core::Result<Tensor> {
    let (n, d) = x.dims2()?;
    let k = a.dim(0)?;
    let xv = x.flatten_all()?.to_vec1::<f32>()?;
    let av = a.flatten_all()?.to_vec1::<f32>()?;
    let dist: fn(&[f32], &[f32], f64) -> f32 = match projection {
        Projection::L1 => |x, a, _| {
            let mut acc = [0f32; 8];
            let mut cx = x.chunks_exact(8);
            let mut ca = a.chunks_exact(8);
            for (p, q) in (&mut cx).zip(&mut ca) {
                for i in 0..8 {
                    acc[i] += (p[i] - q[i]).abs();
                }
            }
            let tail: f32 = cx
                .remainder()
                .iter()
                .zip(ca.remainder())
                .map(|(p, q)| (p - q).abs())
                .sum();
            acc.iter().sum::<f32>() + tail
        },
        Projection::LInf => |x, a, _| {
            x.iter()
                .zip(a)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max)
        },
        Projection::Lp { .. } => |x, a, p| {
            // m · (Σ (|Δ|/m)^p)^(1/p), in f64: no overflow for large p.
            let m = x
                .iter()
                .zip(a)
                .map(|(u, v)| (u - v).abs())
                .fold(0f32, f32::max);
            if m == 0.0 {
                return 0.0;
            }
            let m = f64::from(m);
            let s: f64 = x
                .iter()
                .zip(a)
                .map(|(u, v)| (f64::from((u - v).abs()) / m).powf(p))
                .sum();
            (m * s.powf(1.0 / p)) as f32
        },
        _ => candle_core::bail!("{projection} is not an elementwise distance"),
    };
    let p = match projection {
        Projection::Lp { p } => p,
        _ => 1.0,
    };
    let mut out = vec![0f32; n * k];
    par_row_blocks(&mut out, k, k * d, |first, block| {
        for (j, row) in block.chunks_exact_mut(k).enumerate() {
            let r = first + j;
            let xr = &xv[r * d..(r + 1) * d];
            for (o, ar) in row.iter_mut().zip(av.chunks_exact(d)) {
                *o = dist(xr, ar, p);
            }
        }
    });
    Tensor::from_vec(out, (n, k), x.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::tensor::row_sq_norms;
    use candle_core::Device;

    /// Every projection on values near `f32::MAX`: a finite result or a typed error that says the
    /// values are too large — never `inf` or NaN in the output.
    #[test]
    fn huge_values_never_project_to_non_finite_numbers() -> anyhow::Result<()> {
        let big = f32::MAX / 2.0;
        let anchors = Tensor::new(
            &[[big, 0.0, 0.0], [0.0, -big, 0.0], [0.0, 0.0, big]],
            &Device::Cpu,
        )?;
        let x = Tensor::new(&[[-big, big, 3.0], [big, 0.5, -big]], &Device::Cpu)?;
        let all = [
            Projection::Cosine,
            Projection::Angular,
            Projection::Euclidean,
            Projection::L1,
            Projection::LInf,
            Projection::Lp { p: 3.0 },
            Projection::ChangeOfBasis,
            Projection::SparseTopK { k: 2, power: 8.0 },
        ];
        let mut refused = 0;
        for projection in all {
            for pre in [
                PreTransform::NONE,
                PreTransform::default().with_center(true),
            ] {
                if projection == Projection::ChangeOfBasis && pre.center {
                    continue; // 3 centred anchors in 3 dimensions have rank 2: refused for that.
                }
                let r =
                    RelativeProjector::fit(&anchors, projection, pre).and_then(|p| p.project(&x));
                match r {
                    Ok(y) => {
                        let v = y.flatten_all()?.to_vec1::<f32>()?;
                        assert!(
                            v.iter().all(|v| v.is_finite()),
                            "{projection} ({pre}) wrote {v:?}"
                        );
                    }
                    Err(e @ Error::InvalidArgument { .. }) => {
                        let msg = e.to_string();
                        assert!(
                            msg.contains("too large") || msg.contains("overflows"),
                            "{projection} ({pre}): {msg}"
                        );
                        refused += 1;
                    }
                    Err(e) => anyhow::bail!("{projection} ({pre}): untyped error {e}"),
                }
            }
        }
        assert!(refused > 0);
        // The issue's case: the Euclidean distance between opposite huge rows exceeds f32::MAX.
        let p = RelativeProjector::fit(&anchors, Projection::Euclidean, PreTransform::NONE)?;
        let msg = match p.project(&x) {
            Err(e) => e.to_string(),
            Ok(y) => format!("projected to {y}"),
        };
        assert!(
            msg.contains("euclidean projection of row 0 onto anchor 0 overflows f32"),
            "{msg}"
        );
        Ok(())
    }

    /// A tiny row is not a zero row: the message says which it is.
    #[test]
    fn tiny_rows_are_not_called_zero_vectors() -> anyhow::Result<()> {
        let anchors = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &Device::Cpu)?;
        let p = RelativeProjector::fit(&anchors, Projection::Cosine, PreTransform::NONE)?;
        let tiny = Tensor::new(&[[1f32, 1.0], [1e-30, 0.0]], &Device::Cpu)?;
        let msg = match p.project(&tiny) {
            Err(e) => e.to_string(),
            Ok(y) => format!("projected to {y}"),
        };
        assert!(
            msg.contains("row 1 is not zero but its norm is too small for f32")
                && msg.contains("1e-30"),
            "{msg}"
        );
        assert!(!msg.contains("zero vector"), "{msg}");
        let huge = Tensor::new(&[[1f32, 1.0], [1e30, 0.0]], &Device::Cpu)?;
        let msg = match p.project(&huge) {
            Err(e) => e.to_string(),
            Ok(y) => format!("projected to {y}"),
        };
        assert!(
            msg.contains("row 1 holds values too large to square in f32"),
            "{msg}"
        );
        let zero = Tensor::new(&[[1f32, 1.0], [0.0, 0.0]], &Device::Cpu)?;
        let msg = match p.project(&zero) {
            Err(e) => e.to_string(),
            Ok(y) => format!("projected to {y}"),
        };
        assert!(msg.contains("row 1 is a zero vector"), "{msg}");
        Ok(())
    }

    #[test]
    fn acos_matches_std() -> candle_core::Result<()> {
        let xs: Vec<f64> = (0..=2000).map(|i| -1.0 + i as f64 / 1000.0).collect();
        let t = Tensor::new(xs.as_slice(), &Device::Cpu)?;
        let got = acos(&t)?.to_vec1::<f64>()?;
        for (x, g) in xs.iter().zip(got) {
            assert!((x.acos() - g).abs() < 5e-8, "acos({x}) = {g}");
        }
        Ok(())
    }

    #[test]
    fn cpu_kernels_match_tensor_ops() -> candle_core::Result<()> {
        let x = Tensor::randn(0f32, 1., (300, 37), &Device::Cpu)?;
        let a = Tensor::randn(0f32, 1., (11, 37), &Device::Cpu)?;
        let close = |p: &Tensor, q: &Tensor, tol: f32| -> candle_core::Result<()> {
            let e = (p - q)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(e <= tol, "max diff {e}");
            Ok(())
        };
        close(&row_sq_norms(&x)?, &x.sqr()?.sum_keepdim(1)?, 1e-4)?;
        let sq = row_sq_norms(&x)?;
        let sq_vec = sq.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        let y = x.matmul(&a.t()?)?;
        let want = y.broadcast_div(&sq.sqrt()?)?;
        close(&divide_rows_by_norm(y, &sq, &sq_vec)?, &want, 1e-6)?;
        for p in [Projection::L1, Projection::LInf, Projection::Lp { p: 3.5 }] {
            close(&pairwise_cpu(&x, &a, p)?, &pairwise(&x, &a, p)?, 1e-4)?;
        }
        let c = Tensor::new(&[-1f64, -0.3, 0.0, 0.5, 1.0], &Device::Cpu)?;
        let exact = acos_over_pi(c.copy()?)?.to_vec1::<f64>()?; // in place: a fresh copy
        let poly = (acos(&c)? / std::f64::consts::PI)?.to_vec1::<f64>()?;
        for (e, p) in exact.iter().zip(poly) {
            assert!((e - p).abs() < 2e-8, "{e} vs {p}");
        }
        Ok(())
    }

    #[test]
    fn serde_names() -> anyhow::Result<()> {
        for (p, json) in [
            (Projection::Cosine, r#"{"kind":"cosine"}"#),
            (Projection::LInf, r#"{"kind":"linf"}"#),
            (Projection::Lp { p: 3.0 }, r#"{"kind":"lp","p":3.0}"#),
            (Projection::ChangeOfBasis, r#"{"kind":"change_of_basis"}"#),
            (
                Projection::SparseTopK { k: 4, power: 8.0 },
                r#"{"kind":"sparse_topk","k":4,"power":8.0}"#,
            ),
        ] {
            assert_eq!(serde_json::to_string(&p)?, json);
            assert_eq!(serde_json::from_str::<Projection>(json)?, p);
            assert!(json.contains(p.name()));
        }
        assert_eq!(
            serde_json::to_string(&Aggregation::NormalizedSum)?,
            r#""normalized_sum""#
        );
        Ok(())
    }
}
