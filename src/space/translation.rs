//! Latent space translation: a map from one encoder's absolute space to another's, fitted on
//! *parallel anchors* (the same samples embedded by both), so that a decoder trained on the target
//! space's absolute latents can be reused on the source encoder.
//!
//! Maiorca et al., "Latent Space Translation via Semantic Alignment" (NeurIPS 2023,
//! <https://arxiv.org/abs/2311.00664>): both spaces are standard-scaled with their anchors'
//! statistics, the smaller one is zero-padded to the width of the larger, an orthogonal map is
//! fitted by Procrustes (SVD), and the result is de-standardised with the target's statistics.
//! Least-squares linear and affine maps are the unconstrained alternatives.
//!
//! ```
//! # fn main() -> anyhow::Result<()> {
//! use candle_core::{Device, Tensor};
//! use relstitch::space::translation::{LatentTranslator, TranslationMethod};
//! let source = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.], [2., -1.]], &Device::Cpu)?;
//! let target = Tensor::new(&[[0f32, 1.], [-1., 0.], [-1., 1.], [1., 2.]], &Device::Cpu)?;
//! let map = LatentTranslator::fit(&source, &target, TranslationMethod::Linear)?;
//! let y = map.apply(&source)?; // ≈ target
//! assert!(map.relative_residual(&source, &target)? < 0.5);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::CandleContext;
use crate::space::linalg;
use crate::space::tensor::{as_f32_matrix, checked_sq_norms, f64_device, ColumnStats};
use crate::{Error, Result};

/// The family of maps fitted between the two (scaled) spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum TranslationMethod {
    /// Orthogonal Procrustes: the rotation/reflection `R` minimising `‖X R − Y‖` (`R = U Vᵀ` from
    /// the SVD of `Xᵀ Y`), after zero-padding the narrower space.
    Procrustes,
    /// Least-squares linear map `W` minimising `‖X W − Y‖` (minimum-norm when underdetermined).
    Linear,
    /// Least-squares affine map `X W + b`.
    Affine,
}

impl TranslationMethod {
    /// The snake-case name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Procrustes => "procrustes",
            Self::Linear => "linear",
            Self::Affine => "affine",
        }
    }
}

/// How each space is normalised (with its own anchors' statistics) before the map is fitted; the
/// output is de-normalised with the target's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Scaling {
    /// Per-dimension standard scaling `(x − μ) / σ` (Maiorca et al.; constant dimensions unscaled).
    /// Per-dimension scaling does not commute with rotations, so a Procrustes map fitted after it
    /// recovers an exact rotation between the raw spaces only approximately.
    #[default]
    Standard,
    /// Centering, then one scale for the whole space (the RMS norm of the centred anchors):
    /// commutes with rotations, so Procrustes recovers an exact isometry between the raw spaces.
    Isotropic,
    /// No normalisation.
    None,
}

impl Scaling {
    /// The snake-case name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Isotropic => "isotropic",
            Self::None => "none",
        }
    }
}

/// Options of [`LatentTranslator::fit_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TranslationOptions {
    /// The normalisation of both spaces.
    pub scaling: Scaling,
}

impl TranslationOptions {
    /// Sets the scaling.
    #[must_use]
    pub fn with_scaling(mut self, scaling: Scaling) -> Self {
        self.scaling = scaling;
        self
    }
}

/// A fitted translation from a source space (`d_s` wide) to a target space (`d_t` wide):
/// `y = ((x − μ_s) / σ_s · W + b) · σ_t + μ_t`.
#[derive(Debug, Clone)]
pub struct LatentTranslator {
    method: TranslationMethod,
    scaling: Scaling,
    num_anchors: usize,
    source_mean: Vec<f64>,
    source_scale: Vec<f64>,
    target_mean: Vec<f64>,
    target_scale: Vec<f64>,
    /// `[d_s, d_t]` f64 CPU: the map between the scaled spaces.
    matrix: Tensor,
    /// `[d_t]` f64 CPU: zero except for [`TranslationMethod::Affine`].
    bias: Tensor,
    /// `[d_s, d_t]` f64: the whole map folded into one matrix…
    fused_w: Tensor,
    /// `[1, d_t]` f64: …and one bias.
    fused_b: Tensor,
}

/// The key of the safetensors metadata that marks a translator file.
const FORMAT: &str = "relstitch.latent_translator";

impl LatentTranslator {
    /// Fits `method` with the default options (per-dimension standard scaling, as in Maiorca et
    /// al.).
    ///
    /// # Shapes
    /// - `source`: `[n, d_s]`, `target`: `[n, d_t]` — row `i` of both is the same anchor sample;
    ///   any float dtype and device (the fit runs in f64 on the CPU).
    ///
    /// # Errors
    /// The errors of [`LatentTranslator::fit_with`].
    pub fn fit(source: &Tensor, target: &Tensor, method: TranslationMethod) -> Result<Self> {
        Self::fit_with(source, target, method, &TranslationOptions::default())
    }

    /// Fits `method` with explicit options.
    ///
    /// # Shapes
    /// - `source`: `[n, d_s]`, `target`: `[n, d_t]`.
    ///
    /// # Errors
    /// [`Error::Shape`] when a side is not a matrix or the two have different numbers of rows.
    /// [`Error::InvalidArgument`] for fewer than 2 anchors, a side with 0 dimensions or a
    /// non-float dtype, NaN/infinite values, or a degenerate side — a source or target whose
    /// anchors are all the same vector (zero or constant embeddings), from which no map can be
    /// learned. [`Error::Candle`] when the decomposition fails.
    pub fn fit_with(
        source: &Tensor,
        target: &Tensor,
        method: TranslationMethod,
        options: &TranslationOptions,
    ) -> Result<Self> {
        let s = as_f32_matrix(source, "source anchors")?;
        let t = as_f32_matrix(target, "target anchors")?;
        let (n, ds) = s.dims2().context(|| "reading the source".into())?;
        let (nt, dt) = t.dims2().context(|| "reading the target".into())?;
        if n != nt {
            return Err(Error::shape(
                "target anchors",
                &[nt, dt],
                format!(
                    "the source has {n} rows and the target {nt}: row i of both must be the same \
                     anchor sample"
                ),
            ));
        }
        if n < 2 {
            return Err(Error::invalid(
                "parallel anchors",
                format!("{n} anchor(s): a translation needs at least 2"),
            ));
        }
        if ds == 0 || dt == 0 {
            return Err(Error::invalid(
                "parallel anchors",
                "a space has 0 dimensions",
            ));
        }
        crate::io::check_finite(&s, "source anchors")?;
        crate::io::check_finite(&t, "target anchors")?;
        check_spread(&s, "source")?;
        check_spread(&t, "target")?;
        let ctx = || format!("fitting the {} translation", method.name());
        let cpu = Device::Cpu;
        let s64 = s
            .to_device(&cpu)
            .and_then(|x| x.to_dtype(DType::F64))
            .context(ctx)?;
        let t64 = t
            .to_device(&cpu)
            .and_then(|x| x.to_dtype(DType::F64))
            .context(ctx)?;
        let (source_mean, source_scale) = scaling_stats(&s, options.scaling)?;
        let (target_mean, target_scale) = scaling_stats(&t, options.scaling)?;
        let xs = normalise(&s64, &source_mean, &source_scale).context(ctx)?;
        let ys = normalise(&t64, &target_mean, &target_scale).context(ctx)?;
        let (matrix, bias) = match method {
            TranslationMethod::Procrustes => {
                let d = ds.max(dt);
                let xp = pad_cols(&xs, d).context(ctx)?;
                let yp = pad_cols(&ys, d).context(ctx)?;
                let m = xp.t().and_then(|x| x.matmul(&yp)).context(ctx)?;
                let svd = linalg::svd(&m).context(ctx)?;
                let r = svd.u.matmul(&svd.v.t().context(ctx)?).context(ctx)?;
                let w = r
                    .narrow(0, 0, ds)
                    .and_then(|r| r.narrow(1, 0, dt))
                    .and_then(|r| r.contiguous())
                    .context(ctx)?;
                (w, Tensor::zeros(dt, DType::F64, &cpu).context(ctx)?)
            }
            TranslationMethod::Linear => {
                let (w, _) = linalg::lstsq(&xs, &ys).context(ctx)?;
                (w, Tensor::zeros(dt, DType::F64, &cpu).context(ctx)?)
            }
            TranslationMethod::Affine => {
                let ones = Tensor::ones((n, 1), DType::F64, &cpu).context(ctx)?;
                let xa = Tensor::cat(&[&xs, &ones], 1).context(ctx)?;
                let (wb, _) = linalg::lstsq(&xa, &ys).context(ctx)?;
                let w = wb
                    .narrow(0, 0, ds)
                    .and_then(|w| w.contiguous())
                    .context(ctx)?;
                let b = wb
                    .narrow(0, ds, 1)
                    .and_then(|b| b.flatten_all())
                    .context(ctx)?;
                (w, b)
            }
        };
        Self::assemble(
            method,
            options.scaling,
            n,
            [source_mean, source_scale, target_mean, target_scale],
            matrix,
            bias,
        )
    }

    /// Builds the translator and folds scaling, map and de-scaling into one affine map.
    fn assemble(
        method: TranslationMethod,
        scaling: Scaling,
        num_anchors: usize,
        stats: [Vec<f64>; 4],
        matrix: Tensor,
        bias: Tensor,
    ) -> Result<Self> {
        let [source_mean, source_scale, target_mean, target_scale] = stats;
        let ctx = || "assembling the translation".to_string();
        let cpu = Device::Cpu;
        let (ds, dt) = matrix.dims2().context(ctx)?;
        let col = |v: &[f64], len: usize, shape: (usize, usize)| {
            if v.len() != len {
                return Err(Error::invalid(
                    "latent translator",
                    format!("statistics of length {} where {len} was expected", v.len()),
                ));
            }
            Tensor::from_slice(v, shape, &cpu).context(ctx)
        };
        let inv_ss: Vec<f64> = source_scale.iter().map(|s| 1.0 / s).collect();
        let inv_ss = col(&inv_ss, ds, (ds, 1))?;
        let mu_s = col(&source_mean, ds, (1, ds))?;
        let sig_t = col(&target_scale, dt, (1, dt))?;
        let mu_t = col(&target_mean, dt, (1, dt))?;
        // W_f = diag(1/σ_s) W diag(σ_t);  b_f = (b − (μ_s/σ_s) W) σ_t + μ_t
        let fused_w = matrix
            .broadcast_mul(&inv_ss)
            .and_then(|w| w.broadcast_mul(&sig_t))
            .context(ctx)?;
        let shift = mu_s
            .matmul(&matrix.broadcast_mul(&inv_ss).context(ctx)?)
            .context(ctx)?; // [1, dt]
        let fused_b = bias
            .reshape((1, dt))
            .and_then(|b| b.broadcast_sub(&shift))
            .and_then(|b| b.broadcast_mul(&sig_t))
            .and_then(|b| b.broadcast_add(&mu_t))
            .context(ctx)?;
        Ok(Self {
            method,
            scaling,
            num_anchors,
            source_mean,
            source_scale,
            target_mean,
            target_scale,
            matrix,
            bias,
            fused_w,
            fused_b,
        })
    }

    /// Translates source-space latents into the target space (computed in f64; on `x`'s device,
    /// or the CPU for Metal).
    ///
    /// # Shapes
    /// - `x`: `[m, d_s]`, any float dtype and device.
    /// - returns: `[m, d_t]` f32 on `x`'s device.
    ///
    /// # Errors
    /// [`Error::Shape`] when `x` is not a matrix; [`Error::InvalidArgument`] when its width is not
    /// the source's, its dtype is not float, or it holds NaN/infinite values; [`Error::Candle`]
    /// when a tensor operation fails.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let x = as_f32_matrix(x, "source latents")?;
        let (_, d) = x.dims2().context(|| "reading the input".into())?;
        let ds = self.source_dim();
        if d != ds {
            return Err(Error::invalid(
                "source latents",
                format!(
                    "{d} dimensions, but the translation was fitted on a {ds}-dimensional source"
                ),
            ));
        }
        let dev = x.device().clone();
        let dev64 = f64_device(&dev);
        let ctx = || format!("applying the {} translation", self.method.name());
        let x64 = x
            .to_device(&dev64)
            .and_then(|x| x.to_dtype(DType::F64))
            .context(ctx)?;
        checked_sq_norms(&x64, false, "source latents", "", 0)?;
        let w = self.fused_w.to_device(&dev64).context(ctx)?;
        let b = self.fused_b.to_device(&dev64).context(ctx)?;
        x64.matmul(&w)
            .and_then(|y| y.broadcast_add(&b))
            .and_then(|y| y.to_dtype(DType::F32))
            .and_then(|y| y.to_device(&dev))
            .context(ctx)
    }

    /// How well the map fits parallel samples: `‖apply(source) − target‖_F / ‖target − mean‖_F`
    /// (0 is perfect, 1 is no better than predicting the mean).
    ///
    /// # Shapes
    /// - `source`: `[n, d_s]`, `target`: `[n, d_t]`.
    ///
    /// # Errors
    /// The errors of [`apply`](Self::apply) on `source`; [`Error::Shape`] when `target` is not a
    /// matrix of the translated source's shape; [`Error::InvalidArgument`] when all rows of
    /// `target` are identical (the residual is undefined).
    pub fn relative_residual(&self, source: &Tensor, target: &Tensor) -> Result<f64> {
        let y = self.apply(source)?;
        let t = as_f32_matrix(target, "target latents")?;
        if y.dims() != t.dims() {
            return Err(Error::shape(
                "target latents",
                t.dims(),
                format!(
                    "expected {:?}, the shape of the translated source",
                    y.dims()
                ),
            ));
        }
        let ctx = || "measuring the translation residual".to_string();
        let cpu = Device::Cpu;
        let y = y
            .to_device(&cpu)
            .and_then(|y| y.to_dtype(DType::F64))
            .context(ctx)?;
        let t = t
            .to_device(&cpu)
            .and_then(|t| t.to_dtype(DType::F64))
            .context(ctx)?;
        let num = (&y - &t)
            .and_then(|d| d.sqr()?.sum_all()?.to_scalar::<f64>())
            .context(ctx)?;
        let den = t
            .broadcast_sub(&t.mean_keepdim(0).context(ctx)?)
            .and_then(|d| d.sqr()?.sum_all()?.to_scalar::<f64>())
            .context(ctx)?;
        if den <= 0.0 {
            return Err(Error::invalid(
                "target latents",
                "all rows are identical: the residual is undefined",
            ));
        }
        Ok((num / den).sqrt())
    }

    /// The whole map folded into one affine map on the raw spaces, `y = x · W + b` (scaling, map and
    /// de-scaling together): what [`apply`](Self::apply) computes.
    ///
    /// # Shapes
    /// - returns `W`: `[d_s, d_t]` and `b`: `[1, d_t]`, f64 on the CPU.
    pub fn fused(&self) -> (&Tensor, &Tensor) {
        (&self.fused_w, &self.fused_b)
    }

    /// The method.
    pub fn method(&self) -> TranslationMethod {
        self.method
    }

    /// The scaling.
    pub fn scaling(&self) -> Scaling {
        self.scaling
    }

    /// The number of anchors it was fitted on.
    pub fn num_anchors(&self) -> usize {
        self.num_anchors
    }

    /// The width of the source space.
    pub fn source_dim(&self) -> usize {
        self.source_mean.len()
    }

    /// The width of the target space.
    pub fn target_dim(&self) -> usize {
        self.target_mean.len()
    }

    /// The map between the *scaled* spaces (orthogonal rows/columns for Procrustes).
    ///
    /// # Shapes
    /// - returns `[d_s, d_t]` f64 on the CPU.
    pub fn matrix(&self) -> &Tensor {
        &self.matrix
    }

    /// The bias in the scaled target space (zero except for [`TranslationMethod::Affine`]).
    ///
    /// # Shapes
    /// - returns `[d_t]` f64 on the CPU.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// Writes the translator as a safetensors file (atomically): f64 tensors `matrix` `[d_s, d_t]`,
    /// `bias` `[d_t]`, `source_mean`, `source_scale` `[d_s]`, `target_mean`, `target_scale`
    /// `[d_t]`, and metadata `format`, `method`, `scaling`, `num_anchors`, `source_dim`,
    /// `target_dim`. The map is `y = ((x − source_mean) / source_scale · matrix + bias) ·
    /// target_scale + target_mean`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when any number of the map is NaN or infinite (nothing is
    /// written then); [`Error::Io`] / [`Error::Safetensors`] when writing fails.
    pub fn save(&self, path: &Path) -> Result<()> {
        let ctx = || format!("saving the translation to {}", path.display());
        let cpu = Device::Cpu;
        let v = |x: &[f64]| Tensor::from_slice(x, x.len(), &cpu).context(ctx);
        let sm = v(&self.source_mean)?;
        let ss = v(&self.source_scale)?;
        let tm = v(&self.target_mean)?;
        let ts = v(&self.target_scale)?;
        // Never write a map that would turn every input into NaN or infinity.
        for (name, t) in [
            ("matrix", &self.matrix),
            ("bias", &self.bias),
            ("fused matrix", &self.fused_w),
            ("fused bias", &self.fused_b),
            ("source_scale", &ss),
            ("target_scale", &ts),
        ] {
            crate::io::check_finite(t, &format!("the translation's {name}")).map_err(|e| {
                Error::invalid(
                    "latent translation",
                    format!(
                        "not saved to {}: {e}; the anchors' values are too large or too \
                         degenerate for this method — rescale them or use --method procrustes",
                        path.display()
                    ),
                )
            })?;
        }
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("method".to_string(), self.method.name().to_string()),
            ("scaling".to_string(), self.scaling.name().to_string()),
            ("num_anchors".to_string(), self.num_anchors.to_string()),
            ("source_dim".to_string(), self.source_dim().to_string()),
            ("target_dim".to_string(), self.target_dim().to_string()),
        ]);
        crate::io::write_safetensors(
            path,
            &[
                ("matrix", &self.matrix),
                ("bias", &self.bias),
                ("source_mean", &sm),
                ("source_scale", &ss),
                ("target_mean", &tm),
                ("target_scale", &ts),
            ],
            &metadata,
        )
    }

    /// Reads a translator written by [`save`](Self::save).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::Safetensors`] when it is not a
    /// translator file: wrong `format`, missing or unparsable metadata, missing tensors, wrong
    /// ranks, disagreeing shapes or non-positive scales; [`Error::InvalidArgument`] when a tensor
    /// holds NaN or infinite values.
    pub fn load(path: &Path) -> Result<Self> {
        let file = crate::io::SafetensorsFile::read(path, &Device::Cpu)?;
        let bad = |reason: String| Error::Safetensors {
            path: path.to_path_buf(),
            reason,
        };
        if file.metadata.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!(
                "not a latent translation (metadata `format` is not `{FORMAT}`); write one with \
                 `relstitch translate fit`"
            )));
        }
        let meta = |key: &str| {
            file.metadata
                .get(key)
                .cloned()
                .ok_or_else(|| bad(format!("metadata `{key}` is missing")))
        };
        let method: TranslationMethod =
            serde_json::from_value(serde_json::Value::String(meta("method")?))
                .map_err(|e| bad(format!("unknown method ({e})")))?;
        let scaling: Scaling = serde_json::from_value(serde_json::Value::String(meta("scaling")?))
            .map_err(|e| bad(format!("unknown scaling ({e})")))?;
        let num_anchors: usize = meta("num_anchors")?
            .parse()
            .map_err(|e| bad(format!("metadata `num_anchors` is not a number ({e})")))?;
        let tensor = |name: &str, rank: usize| -> Result<Tensor> {
            let t = file
                .tensors
                .get(name)
                .ok_or_else(|| bad(format!("tensor `{name}` is missing")))?;
            if t.rank() != rank {
                return Err(bad(format!(
                    "tensor `{name}` has shape {:?}, expected rank {rank}",
                    t.dims()
                )));
            }
            let t = t
                .to_dtype(DType::F64)
                .map_err(|e| bad(format!("tensor `{name}` is not numeric ({e})")))?;
            crate::io::check_finite(&t, &format!("tensor `{name}` of {}", path.display()))?;
            Ok(t)
        };
        let vec = |name: &str| -> Result<Vec<f64>> {
            tensor(name, 1)?
                .to_vec1::<f64>()
                .map_err(|e| bad(format!("tensor `{name}`: {e}")))
        };
        let matrix = tensor("matrix", 2)?;
        let bias = tensor("bias", 1)?;
        let (ds, dt) = matrix.dims2().map_err(|e| bad(e.to_string()))?;
        let stats = [
            vec("source_mean")?,
            vec("source_scale")?,
            vec("target_mean")?,
            vec("target_scale")?,
        ];
        let lens = [ds, ds, dt, dt];
        if stats.iter().zip(lens).any(|(s, l)| s.len() != l) || bias.dim(0).ok() != Some(dt) {
            return Err(bad(format!(
                "tensor shapes disagree with the {ds}×{dt} matrix"
            )));
        }
        if stats[1].iter().chain(&stats[3]).any(|&s| s <= 0.0) {
            return Err(bad("scales must be positive".into()));
        }
        Self::assemble(method, scaling, num_anchors, stats, matrix, bias)
    }
}

/// Fails when all rows of `x` (`[n, d]` f32) are the same point, up to f32 rounding: a space with
/// no spread carries no information about the map (the least-squares maps then send everything to
/// one point and Procrustes returns an arbitrary rotation, an identity from the SVD of zero).
/// `side` is "source" or "target".
fn check_spread(x: &Tensor, side: &str) -> Result<()> {
    let d = x.dim(1).context(|| format!("reading the {side} anchors"))?;
    let v = crate::space::tensor::to_f64_rows(x, &format!("reading the {side} anchors"))?;
    let n = v.len() / d.max(1);
    let mut mean = vec![0f64; d];
    for row in v.chunks_exact(d) {
        mean.iter_mut().zip(row).for_each(|(m, a)| *m += a);
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let (mut spread, mut largest) = (vec![0f64; d], vec![0f64; d]);
    for row in v.chunks_exact(d) {
        for (j, (a, m)) in row.iter().zip(&mean).enumerate() {
            spread[j] = spread[j].max((a - m).abs());
            largest[j] = largest[j].max(a.abs());
        }
    }
    // A dimension whose values are equal up to a few f32 roundings is constant; the side is
    // degenerate when every dimension is.
    let constant = spread
        .iter()
        .zip(&largest)
        .all(|(s, l)| *s <= 8.0 * f64::from(f32::EPSILON) * l);
    if constant {
        let what = if largest.iter().all(|&l| l == 0.0) {
            "zero vectors"
        } else {
            "the same vector"
        };
        let consequence = if side == "source" {
            "the source carries nothing to translate (procrustes would save an identity map, \
             linear and affine a constant one)"
        } else {
            "every translated vector would be that one point"
        };
        return Err(Error::invalid(
            format!("{side} anchors"),
            format!(
                "all {n} rows are {what} (no variance), so no translation can be learned: \
                 {consequence}; give the anchors embedded by the {side} encoder, one different \
                 sample per row"
            ),
        ));
    }
    Ok(())
}

/// The mean and scale of a space for `scaling`, per dimension.
fn scaling_stats(x: &Tensor, scaling: Scaling) -> Result<(Vec<f64>, Vec<f64>)> {
    let d = x.dim(1).context(|| "reading a space".into())?;
    match scaling {
        Scaling::None => Ok((vec![0.0; d], vec![1.0; d])),
        Scaling::Standard => {
            let s = ColumnStats::fit(x)?;
            Ok((s.mean, s.scale))
        }
        Scaling::Isotropic => {
            let s = ColumnStats::fit(x)?;
            let n = x.dim(0).context(|| "reading a space".into())?;
            let v = crate::space::tensor::to_f64_rows(x, "scaling a space")?;
            let mut total = 0.0;
            for row in v.chunks_exact(d) {
                for (a, m) in row.iter().zip(&s.mean) {
                    total += (a - m) * (a - m);
                }
            }
            let rms = (total / n as f64).sqrt();
            let scale = if rms > 0.0 { rms } else { 1.0 };
            Ok((s.mean, vec![scale; d]))
        }
    }
}

/// `(x − mean) / scale` for an f64 CPU matrix.
fn normalise(x: &Tensor, mean: &[f64], scale: &[f64]) -> candle_core::Result<Tensor> {
    let d = mean.len();
    let m = Tensor::from_slice(mean, (1, d), &Device::Cpu)?;
    let s = Tensor::from_slice(scale, (1, d), &Device::Cpu)?;
    x.broadcast_sub(&m)?.broadcast_div(&s)
}

/// `x` (`[n, c]`) with zero columns appended up to `d`.
fn pad_cols(x: &Tensor, d: usize) -> candle_core::Result<Tensor> {
    let (n, c) = x.dims2()?;
    if c == d {
        return Ok(x.clone());
    }
    let z = Tensor::zeros((n, d - c), x.dtype(), x.device())?;
    Tensor::cat(&[x, &z], 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: Result<LatentTranslator>, needles: &[&str]) -> anyhow::Result<()> {
        match r {
            Err(e @ Error::InvalidArgument { .. }) => {
                let msg = e.to_string();
                for n in needles {
                    anyhow::ensure!(msg.contains(n), "`{msg}` does not mention `{n}`");
                }
                Ok(())
            }
            Err(e) => anyhow::bail!("expected InvalidArgument mentioning {needles:?}, got {e}"),
            Ok(_) => anyhow::bail!("expected InvalidArgument mentioning {needles:?}, got a map"),
        }
    }

    #[test]
    fn degenerate_sides_are_refused() -> anyhow::Result<()> {
        let cpu = Device::Cpu;
        let good = Tensor::randn(0f32, 1., (6, 3), &cpu)?;
        let zero = Tensor::zeros((6, 3), DType::F32, &cpu)?;
        let constant = Tensor::new(&[0.25f32, -3.0, 7.5], &cpu)?
            .unsqueeze(0)?
            .repeat((6, 1))?;
        // Equal up to f32 rounding of a large value: still no spread.
        let nearly = Tensor::new(
            &[
                [1e6f32, 1.0, 2.0],
                [1e6 + 0.0625, 1.0, 2.0],
                [1e6, 1.0, 2.0],
                [1e6 - 0.0625, 1.0, 2.0],
            ],
            &cpu,
        )?;
        let nearly_good = good.narrow(0, 0, 4)?;
        // A large constant offset in one dimension is fine when another dimension varies.
        let offset = Tensor::new(
            &[
                [1e6f32, 0.1, 2.0],
                [1e6, 0.2, 2.0],
                [1e6, 0.3, 2.0],
                [1e6, 0.5, 2.0],
            ],
            &cpu,
        )?;
        for method in [
            TranslationMethod::Procrustes,
            TranslationMethod::Linear,
            TranslationMethod::Affine,
        ] {
            for scaling in [Scaling::Standard, Scaling::Isotropic, Scaling::None] {
                let o = TranslationOptions::default().with_scaling(scaling);
                let fit = |s: &Tensor, t: &Tensor| LatentTranslator::fit_with(s, t, method, &o);
                refused(
                    fit(&zero, &good),
                    &["source anchors", "all 6 rows are zero vectors", "identity"],
                )?;
                refused(
                    fit(&constant, &good),
                    &["source anchors", "all 6 rows are the same vector"],
                )?;
                refused(
                    fit(&nearly, &nearly_good),
                    &["source anchors", "all 4 rows are the same vector"],
                )?;
                fit(&offset, &nearly_good)?;
                refused(
                    fit(&good, &zero),
                    &["target anchors", "zero vectors", "one point"],
                )?;
                refused(
                    fit(&good, &constant),
                    &["target anchors", "the same vector"],
                )?;
                fit(&good, &good)?;
            }
        }
        Ok(())
    }
}
