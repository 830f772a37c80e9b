//! How similar two latent spaces are, measured over the same samples embedded in both.
//!
//! - **Linear CKA** (Kornblith et al. 2019) and its **debiased** form (the unbiased HSIC estimator of
//!   Song et al. 2012, in Kornblith's feature-space formulation): invariant to rotations and
//!   isotropic scaling, comparable across widths.
//! - **Jaccard@k** of the k-nearest-neighbour sets (cosine, self excluded) and **mutual k-NN**
//!   alignment (Huh et al. 2024, "The Platonic Representation Hypothesis"): `|N_A ∩ N_B| / k`.
//! - **MRR / top-1** of cross-space retrieval: row `i` of A queries all rows of B by cosine; the
//!   answer should be row `i`. Ties count in favour of the true match. Needs equal widths.
//! - **Mean cosine** between row `i` of A and row `i` of B. Needs equal widths.
//!
//! The last two only make sense when the two spaces share coordinates, as relative representations
//! over the same anchors do — which is the point of the paper's latent-similarity experiment
//! (absolute FastText vs Word2Vec: MRR ≈ 0; relative: ≈ 0.95). [`compare_relative`] does that in
//! one call.
//!
//! ```
//! # fn main() -> anyhow::Result<()> {
//! use candle_core::{Device, Tensor};
//! use relstitch::space::similarity::compare_spaces;
//! let a = Tensor::randn(0f32, 1., (50, 8), &Device::Cpu)?;
//! let c = compare_spaces(&a, &a, 5)?;
//! assert!((c.linear_cka - 1.0).abs() < 1e-9 && c.mrr == Some(1.0));
//! # Ok(()) }
//! ```

use std::fmt;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::CandleContext;
use crate::report::display::{cell, Table, TableRow};
use crate::space::projection::{PreTransform, Projection, RelativeProjector};
use crate::space::tensor::{
    as_f32_matrix, checked_sq_norms, f64_device, row_sq_norms, to_f64_rows,
};
use crate::{Error, Result};

/// Every metric between two spaces over the same `n` samples.
///
/// Serialises to JSON with exactly the keys `linear_cka`, `debiased_cka`, `jaccard_at_k`, `mrr`,
/// `top1`, `mean_cosine`, `mutual_knn`, `k`, `n` (`null` for the retrieval metrics and the mean
/// cosine when the widths differ).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpaceComparison {
    /// Linear CKA in `[0, 1]`.
    pub linear_cka: f64,
    /// Debiased linear CKA (can be slightly negative for unrelated spaces).
    pub debiased_cka: f64,
    /// Mean Jaccard index of the two k-NN sets of each sample, in `[0, 1]`.
    pub jaccard_at_k: f64,
    /// Mean reciprocal rank of cross-space retrieval (`None` when the widths differ).
    pub mrr: Option<f64>,
    /// Fraction of samples whose own row is retrieved first (`None` when the widths differ).
    pub top1: Option<f64>,
    /// Mean cosine between matching rows (`None` when the widths differ).
    pub mean_cosine: Option<f64>,
    /// Mutual k-NN alignment: mean fraction of shared neighbours, in `[0, 1]`.
    pub mutual_knn: f64,
    /// The neighbourhood size.
    pub k: usize,
    /// The number of samples.
    pub n: usize,
}

impl fmt::Display for SpaceComparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt =
            |v: Option<f64>| v.map_or("n/a (widths differ)".to_string(), |v| format!("{v:.4}"));
        writeln!(f, "{:<16} {}", "samples (n)", self.n)?;
        writeln!(f, "{:<16} {:.4}", "linear CKA", self.linear_cka)?;
        writeln!(f, "{:<16} {:.4}", "debiased CKA", self.debiased_cka)?;
        writeln!(
            f,
            "{:<16} {:.4}",
            format!("Jaccard@{}", self.k),
            self.jaccard_at_k
        )?;
        writeln!(
            f,
            "{:<16} {:.4}",
            format!("mutual {}-NN", self.k),
            self.mutual_knn
        )?;
        writeln!(f, "{:<16} {}", "MRR", opt(self.mrr))?;
        writeln!(f, "{:<16} {}", "top-1", opt(self.top1))?;
        write!(f, "{:<16} {}", "mean cosine", opt(self.mean_cosine))
    }
}

impl SpaceComparison {
    /// The metrics as an HTML table (one metric per row).
    pub fn to_html(&self) -> String {
        let headers = ["metric".to_string(), "value".to_string()];
        let rows: Vec<Vec<String>> =
            std::iter::once(("samples (n)".to_string(), self.n.to_string()))
                .chain(self.columns().into_iter().skip(1))
                .map(|(k, v)| vec![k, v])
                .collect();
        crate::report::display::html_table(&headers, &rows)
    }

    /// Renders as an HTML table in Jupyter notebooks running the evcxr kernel.
    #[cfg(feature = "evcxr")]
    pub fn evcxr_display(&self) {
        crate::report::display::emit_html(&self.to_html());
    }
}

impl TableRow for SpaceComparison {
    fn columns(&self) -> Vec<(String, String)> {
        vec![
            ("n".into(), self.n.to_string()),
            ("linear CKA".into(), cell(Some(self.linear_cka))),
            ("debiased CKA".into(), cell(Some(self.debiased_cka))),
            (format!("Jaccard@{}", self.k), cell(Some(self.jaccard_at_k))),
            (format!("mutual {}-NN", self.k), cell(Some(self.mutual_knn))),
            ("MRR".into(), cell(self.mrr)),
            ("top-1".into(), cell(self.top1)),
            ("mean cosine".into(), cell(self.mean_cosine)),
        ]
    }
}

/// Several named comparisons in one table (e.g. absolute vs relative, or one row per anchor
/// strategy); renders as HTML in Jupyter.
pub type ComparisonTable = Table<SpaceComparison>;

/// The cosine similarity between every pair of samples of one space, with a label per sample: what
/// the paper's Figure 1 draws for two encoders side by side. Similar matrices for two encoders mean
/// their (relative) spaces agree.
///
/// ```
/// # fn main() -> anyhow::Result<()> {
/// use candle_core::{Device, Tensor};
/// use relstitch::space::similarity::SimilarityMatrix;
/// let x = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.]], &Device::Cpu)?;
/// let m = SimilarityMatrix::cosine(&x, &["a", "b", "c"])?.with_title("toy");
/// assert!((m.values()[0][2] - 0.5f64.sqrt()).abs() < 1e-6 && m.values()[0][1].abs() < 1e-6);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SimilarityMatrix {
    title: String,
    labels: Vec<String>,
    values: Vec<Vec<f64>>,
}

impl SimilarityMatrix {
    /// Cosine similarities between the rows of `space`; `labels` names each row (e.g. its class).
    ///
    /// Errors: not a matrix, fewer than 2 rows, a zero or non-finite row, or a label count that is
    /// not the row count.
    ///
    /// # Shapes
    /// - `space`: `[n, d]`, any float dtype and device; `labels`: `n`; the result is `n × n`.
    pub fn cosine<S: AsRef<str>>(space: &Tensor, labels: &[S]) -> Result<Self> {
        let x = as_f32_matrix(space, "space")?;
        let (n, _) = x.dims2().context(|| "reading the space".into())?;
        if n < 2 {
            return Err(too_few(n, 2, "a similarity matrix"));
        }
        if labels.len() != n {
            return Err(Error::invalid(
                "similarity matrix",
                format!("{} labels for {n} rows", labels.len()),
            ));
        }
        crate::io::check_finite(&x, "space")?;
        let u = unit_rows(&x, "space")?;
        let values = u
            .matmul(&u.t().context(|| "transposing".into())?)
            .and_then(|s| s.to_dtype(DType::F64))
            .and_then(|s| s.to_vec2::<f64>())
            .context(|| "computing cosine similarities".into())?
            .into_iter()
            .map(|r| r.into_iter().map(|v| v.clamp(-1.0, 1.0)).collect())
            .collect();
        Ok(Self {
            title: "cosine similarity".into(),
            labels: labels.iter().map(|l| l.as_ref().to_string()).collect(),
            values,
        })
    }

    /// Cosine similarities between the rows of `space` after subtracting their mean row: what sets
    /// each sample apart, without the direction all of them share. Relative representations of
    /// sentence embeddings share a large one (every text is somewhat similar to every anchor), which
    /// otherwise dominates the figure and hides the block of each label.
    ///
    /// # Shapes
    /// - `space`: `[n, d]`, any float dtype and device; `labels`: `n`; the result is `n × n`.
    pub fn centered_cosine<S: AsRef<str>>(space: &Tensor, labels: &[S]) -> Result<Self> {
        let x = as_f32_matrix(space, "space")?;
        let centred = x
            .broadcast_sub(&x.mean_keepdim(0).context(|| "centring the space".into())?)
            .context(|| "centring the space".into())?;
        Ok(Self::cosine(&centred, labels)?.with_title("centred cosine similarity"))
    }

    /// Sets the title of the figure.
    #[must_use]
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The row (and column) labels.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The `n × n` similarities, row-major.
    pub fn values(&self) -> &[Vec<f64>] {
        &self.values
    }

    /// Mean similarity of pairs of different samples with the same label, and with different
    /// labels: how much the space groups samples by label (`(within, between)`; `NaN` when there
    /// is no such pair).
    pub fn label_contrast(&self) -> (f64, f64) {
        let (mut w, mut nw, mut b, mut nb) = (0.0, 0usize, 0.0, 0usize);
        for (i, row) in self.values.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                if i == j {
                    continue;
                }
                if self.labels[i] == self.labels[j] {
                    w += v;
                    nw += 1;
                } else {
                    b += v;
                    nb += 1;
                }
            }
        }
        (w / nw as f64, b / nb as f64)
    }

    /// Mean absolute difference between the entries of two matrices of the same size (0: the two
    /// spaces see the same geometry).
    pub fn mean_abs_difference(&self, other: &Self) -> Result<f64> {
        let n = self.values.len();
        if other.values.len() != n {
            return Err(Error::invalid(
                "similarity matrices",
                format!(
                    "{n} and {} rows: compare the same samples",
                    other.values.len()
                ),
            ));
        }
        let sum: f64 = self
            .values
            .iter()
            .zip(&other.values)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .sum();
        Ok(sum / (n * n) as f64)
    }

    /// The smallest and largest similarity between two different samples (the diagonal is 1).
    pub fn off_diagonal_range(&self) -> (f64, f64) {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for (i, row) in self.values.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                if i != j {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
        }
        (lo, hi)
    }

    /// The matrix as an SVG heatmap, coloured over [`off_diagonal_range`](Self::off_diagonal_range)
    /// (relative representations are mostly positive, so a fixed `[-1, 1]` would wash them out).
    #[cfg(feature = "plot")]
    pub fn to_svg(&self) -> Result<String> {
        self.to_svg_in(self.off_diagonal_range())
    }

    /// The matrix as an SVG heatmap, coloured over `range` (values outside are clamped).
    #[cfg(feature = "plot")]
    pub fn to_svg_in(&self, range: (f64, f64)) -> Result<String> {
        crate::report::plot::heatmap(
            &self.title,
            &self.values,
            &self.labels,
            &self.labels,
            // A constant matrix has no range to spread colours over: let the plot choose.
            (range.0 < range.1).then_some(range),
        )
    }

    /// Several matrices' heatmaps in one row (e.g. the same samples under two encoders), coloured
    /// over one shared range so that equal colours mean equal similarities.
    #[cfg(feature = "plot")]
    pub fn side_by_side(matrices: &[&Self]) -> Result<crate::report::display::Html> {
        let range = matrices
            .iter()
            .map(|m| m.off_diagonal_range())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (c, d)| {
                (a.min(c), b.max(d))
            });
        let svgs = matrices
            .iter()
            .map(|m| m.to_svg_in(range))
            .collect::<Result<Vec<_>>>()?;
        Ok(crate::report::display::Html::side_by_side(&svgs))
    }

    /// Renders as an SVG heatmap in Jupyter notebooks running the evcxr kernel.
    #[cfg(feature = "evcxr")]
    pub fn evcxr_display(&self) {
        match self.to_svg() {
            Ok(svg) => crate::report::display::emit_html(&svg),
            Err(e) => println!("cannot draw {:?}: {e}", self.title),
        }
    }
}

/// Cross-space retrieval results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieval {
    /// Mean reciprocal rank.
    pub mrr: f64,
    /// Fraction retrieved at rank 1.
    pub top1: f64,
    /// The 1-based rank of row `i` of B for query row `i` of A.
    pub ranks: Vec<usize>,
}

/// All metrics between `a` and `b` with neighbourhoods of size `k`.
///
/// Errors: not matrices, different row counts, fewer than 4 rows (debiased CKA needs 4),
/// `k = 0` or `k ≥ n`, NaN/infinite values, zero rows (cosine), a space with zero variance (CKA).
///
/// # Shapes
/// - `a`: `[n, d_a]`, `b`: `[n, d_b]` — row `i` of both is the same sample; any float dtype and
///   device (work runs there, in f32 for the cosine matrices and f64 for CKA).
pub fn compare_spaces(a: &Tensor, b: &Tensor, k: usize) -> Result<SpaceComparison> {
    let (a, b, n) = pair(a, b)?;
    check_k(k, n)?;
    if n < 4 {
        return Err(too_few(n, 4, "debiased CKA"));
    }
    let cka = CkaStats::new(&a, &b)?;
    let linear = cka.linear()?;
    let debiased = cka.debiased()?;
    let na = knn(&a, k)?;
    let nb = knn(&b, k)?;
    let (jac, mutual) = neighbourhood_overlap(&na, &nb, k);
    let same_width = a.dim(1).ok() == b.dim(1).ok();
    let (mrr, top1, mean_cos) = if same_width {
        let r = retrieval(&a, &b)?;
        (Some(r.mrr), Some(r.top1), Some(mean_cosine(&a, &b)?))
    } else {
        (None, None, None)
    };
    Ok(SpaceComparison {
        linear_cka: linear,
        debiased_cka: debiased,
        jaccard_at_k: jac,
        mrr,
        top1,
        mean_cosine: mean_cos,
        mutual_knn: mutual,
        k,
        n,
    })
}

/// Compares the *relative* representations of two spaces: each is projected onto its own anchors
/// (row `j` of `a_anchors` and of `b_anchors` must be the same anchor sample), then
/// [`compare_spaces`] runs on the two `[n, k]` results — which share coordinates, so retrieval and
/// mean cosine are defined.
///
/// # Shapes
/// - `a`: `[n, d_a]`, `b`: `[n, d_b]`, `a_anchors`: `[m, d_a]`, `b_anchors`: `[m, d_b]`.
///
/// # Errors
/// [`Error::InvalidArgument`] when the two anchor sets differ in size, plus the errors of
/// [`RelativeProjector::fit`], [`RelativeProjector::project`] and [`compare_spaces`].
pub fn compare_relative(
    a: &Tensor,
    b: &Tensor,
    a_anchors: &Tensor,
    b_anchors: &Tensor,
    projection: Projection,
    pre: PreTransform,
    k: usize,
) -> Result<SpaceComparison> {
    let ma = a_anchors.dims().first().copied().unwrap_or(0);
    let mb = b_anchors.dims().first().copied().unwrap_or(0);
    if ma != mb {
        return Err(Error::shape(
            "the second space's anchors",
            b_anchors.dims(),
            format!(
                "{ma} anchors for the first space but {mb} for the second; relative \
                 representations are only comparable over the same anchor samples, in the same \
                 order, embedded in each space"
            ),
        ));
    }
    let ra = RelativeProjector::fit(a_anchors, projection, pre)?.project(a)?;
    let rb = RelativeProjector::fit(b_anchors, projection, pre)?.project(b)?;
    compare_spaces(&ra, &rb, k)
}

/// Linear CKA (biased HSIC), computed in f64 from the centred features:
/// `‖AᵀB‖²_F / (‖AᵀA‖_F ‖BᵀB‖_F)`.
///
/// # Shapes
/// - `a`: `[n, d_a]`, `b`: `[n, d_b]`, `n ≥ 2`.
pub fn linear_cka(a: &Tensor, b: &Tensor) -> Result<f64> {
    let (a, b, n) = pair(a, b)?;
    if n < 2 {
        return Err(too_few(n, 2, "linear CKA"));
    }
    CkaStats::new(&a, &b)?.linear()
}

/// Debiased linear CKA: CKA with the unbiased HSIC estimator (Song et al. 2012), computed in f64
/// without forming the `n × n` Gram matrices (Kornblith et al.'s feature-space formulation).
///
/// # Shapes
/// - `a`: `[n, d_a]`, `b`: `[n, d_b]`, `n ≥ 4`.
pub fn debiased_cka(a: &Tensor, b: &Tensor) -> Result<f64> {
    let (a, b, n) = pair(a, b)?;
    if n < 4 {
        return Err(too_few(n, 4, "debiased CKA"));
    }
    CkaStats::new(&a, &b)?.debiased()
}

/// What both CKAs need, from one pass of f64 products over the centred features.
struct CkaStats {
    n: usize,
    /// `‖AᵀB‖²_F`, `‖AᵀA‖²_F`, `‖BᵀB‖²_F`.
    xy: f64,
    xx: f64,
    yy: f64,
    /// Squared norms of the centred rows.
    ra: Vec<f64>,
    rb: Vec<f64>,
}

impl CkaStats {
    fn new(a: &Tensor, b: &Tensor) -> Result<Self> {
        let (a, b) = centred64(a, b)?;
        let ctx = || "computing CKA".to_string();
        let gram = |x: &Tensor, y: &Tensor| -> Result<f64> {
            frob2(&x.t().and_then(|t| t.matmul(y)).context(ctx)?)
        };
        let rows = |x: &Tensor| -> Result<Vec<f64>> {
            to_f64_rows(&row_sq_norms(x).context(ctx)?, "computing CKA")
        };
        Ok(Self {
            n: a.dim(0).context(ctx)?,
            xy: gram(&a, &b)?,
            xx: gram(&a, &a)?,
            yy: gram(&b, &b)?,
            ra: rows(&a)?,
            rb: rows(&b)?,
        })
    }

    fn linear(&self) -> Result<f64> {
        let (xx, yy) = (self.xx.sqrt(), self.yy.sqrt());
        if xx <= 0.0 || yy <= 0.0 {
            return Err(zero_variance());
        }
        Ok(self.xy / (xx * yy))
    }

    fn debiased(&self) -> Result<f64> {
        let nf = self.n as f64;
        let (sa, sb): (f64, f64) = (self.ra.iter().sum(), self.rb.iter().sum());
        let hsic = |dot: f64, r1: &[f64], r2: &[f64], s1: f64, s2: f64| {
            let rr: f64 = r1.iter().zip(r2).map(|(x, y)| x * y).sum();
            dot - nf / (nf - 2.0) * rr + s1 * s2 / ((nf - 1.0) * (nf - 2.0))
        };
        let hxy = hsic(self.xy, &self.ra, &self.rb, sa, sb);
        let hxx = hsic(self.xx, &self.ra, &self.ra, sa, sa);
        let hyy = hsic(self.yy, &self.rb, &self.rb, sb, sb);
        if !(hxx > 0.0 && hyy > 0.0) {
            return Err(Error::invalid(
                "spaces",
                "the unbiased HSIC of a space with itself is not positive (constant or nearly \
                 constant space, or too few samples): debiased CKA is undefined",
            ));
        }
        Ok(hxy / (hxx * hyy).sqrt())
    }
}

/// The `k` nearest neighbours of every row by cosine similarity, self excluded, most similar
/// first (ties: lower index first). Computed in row chunks, `O(n²)` memory never allocated.
///
/// # Shapes
/// - `x`: `[n, d]`, `1 ≤ k < n`; returns `n` lists of `k` row indices.
pub fn knn(x: &Tensor, k: usize) -> Result<Vec<Vec<usize>>> {
    let x = as_f32_matrix(x, "space")?;
    let n = x.dim(0).context(|| "reading the space".into())?;
    check_k(k, n)?;
    let u = unit_rows(&x, "space")?;
    let mut out = Vec::with_capacity(n);
    for_each_similarity_chunk(&u, &u, |start, rows| {
        out.extend(par_rows(rows, n, |r, sims| {
            top_k_excluding(sims, k, start + r)
        })?);
        Ok(())
    })?;
    Ok(out)
}

/// The indices of the `k` largest values of `sims` other than `skip`, largest first, ties broken
/// by the lower index; one pass with a small sorted buffer.
fn top_k_excluding(sims: &[f32], k: usize, skip: usize) -> Vec<usize> {
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    for (j, &s) in sims.iter().enumerate() {
        if j == skip {
            continue;
        }
        if best.len() == k && best.last().is_some_and(|w| s <= w.0) {
            continue;
        }
        // After every kept value ≥ s: equal values keep their (lower) indices first.
        let pos = best.partition_point(|b| b.0 >= s);
        best.insert(pos, (s, j));
        best.truncate(k);
    }
    best.into_iter().map(|(_, j)| j).collect()
}

/// Mean Jaccard index of the cosine k-NN sets of each sample in `a` and in `b`.
///
/// # Shapes
/// - `a`: `[n, d_a]`, `b`: `[n, d_b]`, `1 ≤ k < n`.
pub fn jaccard_at_k(a: &Tensor, b: &Tensor, k: usize) -> Result<f64> {
    let (a, b, n) = pair(a, b)?;
    check_k(k, n)?;
    Ok(neighbourhood_overlap(&knn(&a, k)?, &knn(&b, k)?, k).0)
}

/// Mutual k-NN alignment (Huh et al. 2024): mean over samples of `|N_A(i) ∩ N_B(i)| / k`.
///
/// # Shapes
/// - `a`: `[n, d_a]`, `b`: `[n, d_b]`, `1 ≤ k < n`.
pub fn mutual_knn(a: &Tensor, b: &Tensor, k: usize) -> Result<f64> {
    let (a, b, n) = pair(a, b)?;
    check_k(k, n)?;
    Ok(neighbourhood_overlap(&knn(&a, k)?, &knn(&b, k)?, k).1)
}

/// The paper's Jaccard@k between two spaces (Table 1): for each row `i`, the `k` rows of `b` most
/// similar to row `i` of `a` (a cross-space query) against the `k` rows of `b` most similar to row
/// `i` of `b` itself (both sets may include row `i`), by cosine; the mean Jaccard index.
///
/// Unlike [`jaccard_at_k`], which compares each space's own neighbourhoods and so ignores how the
/// spaces are aligned, this needs the two spaces to be *aligned* (same coordinates): two unrelated
/// absolute spaces score ≈ 0, identical ones 1, and relative spaces built on shared anchors can be
/// compared directly.
///
/// # Shapes
/// - `a`: `[n, d]`, `b`: `[n, d]` (equal widths), `1 ≤ k < n`.
pub fn retrieval_jaccard_at_k(a: &Tensor, b: &Tensor, k: usize) -> Result<f64> {
    let (a, b, n) = pair(a, b)?;
    same_width(&a, &b, "cross-space Jaccard")?;
    check_k(k, n)?;
    let ua = unit_rows(&a, "first space")?;
    let ub = unit_rows(&b, "second space")?;
    let mut cross = Vec::with_capacity(n);
    for_each_similarity_chunk(&ua, &ub, |_, rows| {
        cross.extend(par_rows(rows, n, |_, sims| {
            top_k_excluding(sims, k, usize::MAX)
        })?);
        Ok(())
    })?;
    let mut own = Vec::with_capacity(n);
    for_each_similarity_chunk(&ub, &ub, |_, rows| {
        own.extend(par_rows(rows, n, |_, sims| {
            top_k_excluding(sims, k, usize::MAX)
        })?);
        Ok(())
    })?;
    Ok(neighbourhood_overlap(&cross, &own, k).0)
}

/// Cross-space retrieval: for each row `i` of `a`, the rank of row `i` of `b` among all rows of `b`
/// by cosine similarity (1 + the number of rows strictly more similar).
///
/// # Shapes
/// - `a`: `[n, d]`, `b`: `[n, d]` (equal widths).
pub fn retrieval(a: &Tensor, b: &Tensor) -> Result<Retrieval> {
    let (a, b, n) = pair(a, b)?;
    same_width(&a, &b, "retrieval")?;
    let ua = unit_rows(&a, "first space")?;
    let ub = unit_rows(&b, "second space")?;
    let mut ranks = Vec::with_capacity(n);
    for_each_similarity_chunk(&ua, &ub, |start, rows| {
        ranks.extend(par_rows(rows, n, |r, sims| {
            let own = sims[start + r];
            1 + sims.iter().filter(|&&s| s > own).count()
        })?);
        Ok(())
    })?;
    let mrr = ranks.iter().map(|&r| 1.0 / r as f64).sum::<f64>() / n as f64;
    let top1 = ranks.iter().filter(|&&r| r == 1).count() as f64 / n as f64;
    Ok(Retrieval { mrr, top1, ranks })
}

/// Mean cosine similarity between row `i` of `a` and row `i` of `b` (in f64).
///
/// # Shapes
/// - `a`: `[n, d]`, `b`: `[n, d]` (equal widths).
pub fn mean_cosine(a: &Tensor, b: &Tensor) -> Result<f64> {
    let (a, b, n) = pair(a, b)?;
    same_width(&a, &b, "mean cosine")?;
    let dev = f64_device(a.device());
    let ctx = || "computing the mean cosine".to_string();
    let a = a
        .to_device(&dev)
        .and_then(|t| t.to_dtype(DType::F64))
        .context(ctx)?;
    let b = b
        .to_device(&dev)
        .and_then(|t| t.to_dtype(DType::F64))
        .context(ctx)?;
    let na = checked_sq_norms(&a, true, "first space", "", 0)?;
    let nb = checked_sq_norms(&b, true, "second space", "", 0)?;
    let s = (&a * &b)
        .and_then(|p| p.sum_keepdim(1))
        .and_then(|p| p.broadcast_div(&(na * nb)?.sqrt()?))
        .and_then(|p| p.sum_all())
        .and_then(|p| p.to_scalar::<f64>())
        .context(ctx)?;
    Ok(s / n as f64)
}

// ---------------------------------------------------------------------------------------------

/// Validates a pair of spaces over the same samples; returns them as f32 and the row count.
fn pair(a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor, usize)> {
    let a = as_f32_matrix(a, "first space")?;
    let b = as_f32_matrix(b, "second space")?;
    let (na, _) = a.dims2().context(|| "reading the first space".into())?;
    let (nb, _) = b.dims2().context(|| "reading the second space".into())?;
    if na != nb {
        return Err(Error::invalid(
            "spaces",
            format!(
                "{na} rows in the first space and {nb} in the second: compare the same samples \
                 embedded twice"
            ),
        ));
    }
    if na < 2 {
        return Err(too_few(na, 2, "a comparison"));
    }
    crate::io::check_finite(&a, "first space")?;
    crate::io::check_finite(&b, "second space")?;
    Ok((a, b, na))
}

fn check_k(k: usize, n: usize) -> Result<()> {
    if k == 0 || k >= n {
        return Err(Error::invalid(
            "k",
            format!("k = {k} with n = {n} samples: k must be between 1 and n − 1 (self excluded)"),
        ));
    }
    Ok(())
}

fn same_width(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
    let (da, db) = (a.dim(1).ok(), b.dim(1).ok());
    if da != db {
        return Err(Error::shape(
            "the second space",
            b.dims(),
            format!(
                "{what} needs equal widths ({da:?} vs {db:?}); compare relative representations \
                 over shared anchors instead"
            ),
        ));
    }
    Ok(())
}

fn too_few(n: usize, min: usize, what: &str) -> Error {
    Error::invalid(
        "spaces",
        format!("{n} samples: {what} needs at least {min}"),
    )
}

fn zero_variance() -> Error {
    Error::invalid(
        "spaces",
        "a space has zero variance (all rows identical): CKA is undefined",
    )
}

/// Both spaces as column-centred f64 tensors on their f64 device.
fn centred64(a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor)> {
    let ctx = || "centring the spaces".to_string();
    let c = |x: &Tensor| {
        let dev = f64_device(x.device());
        x.to_device(&dev)
            .and_then(|x| x.to_dtype(DType::F64))
            .and_then(|x| x.broadcast_sub(&x.mean_keepdim(0)?))
            .context(ctx)
    };
    let a = c(a)?;
    let b = c(b)?;
    let b = b.to_device(a.device()).context(ctx)?;
    Ok((a, b))
}

/// Squared Frobenius norm.
fn frob2(t: &Tensor) -> Result<f64> {
    t.sqr()
        .and_then(|t| t.sum_all())
        .and_then(|t| t.to_scalar::<f64>())
        .context(|| "computing a Frobenius norm".into())
}

/// Rows scaled to unit norm (f32), with a typed error for zero rows.
fn unit_rows(x: &Tensor, what: &str) -> Result<Tensor> {
    let sq = checked_sq_norms(x, true, what, "(cosine similarity is undefined)", 0)?;
    x.broadcast_div(&sq.sqrt().context(|| "normalising rows".into())?)
        .context(|| "normalising rows".into())
}

/// Calls `f(first_row, similarities)` for row chunks of `ua · ubᵀ`, the similarities of each chunk
/// as a row-major `Vec<f32>` of `chunk × n_b`.
fn for_each_similarity_chunk(
    ua: &Tensor,
    ub: &Tensor,
    mut f: impl FnMut(usize, &[f32]) -> Result<()>,
) -> Result<()> {
    let ctx = || "computing cosine similarities".to_string();
    let n = ua.dim(0).context(ctx)?;
    let nb = ub.dim(0).context(ctx)?;
    let ub = ub.to_device(ua.device()).context(ctx)?;
    let ubt = ub.t().and_then(|t| t.contiguous()).context(ctx)?;
    let chunk = ((1usize << 24) / nb.max(1)).clamp(1, n.max(1));
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        let sims = ua
            .narrow(0, start, len)
            .and_then(|c| c.matmul(&ubt))
            .and_then(|s| s.flatten_all())
            .and_then(|s| s.to_vec1::<f32>())
            .context(ctx)?;
        f(start, &sims)?;
        start += len;
    }
    Ok(())
}

/// `f(row, values)` for every row of a row-major `rows × n` block, on all CPU threads, in order.
fn par_rows<T: Send>(
    block: &[f32],
    n: usize,
    f: impl Fn(usize, &[f32]) -> T + Sync,
) -> Result<Vec<T>> {
    let rows = block.len() / n.max(1);
    let threads = candle_core::utils::get_num_threads().clamp(1, rows.max(1));
    if threads == 1 || block.len() < (1 << 16) {
        return Ok(block
            .chunks_exact(n)
            .enumerate()
            .map(|(r, s)| f(r, s))
            .collect());
    }
    let per = rows.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = block
            .chunks(per * n)
            .enumerate()
            .map(|(b, part)| {
                let f = &f;
                scope.spawn(move || {
                    part.chunks_exact(n)
                        .enumerate()
                        .map(|(r, s)| f(b * per + r, s))
                        .collect::<Vec<T>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(rows);
        for h in handles {
            out.extend(h.join().map_err(|_| {
                Error::invalid(
                    "metrics",
                    "a worker thread panicked while ranking neighbours",
                )
            })?);
        }
        Ok(out)
    })
}

/// (mean Jaccard, mean mutual-k-NN fraction) of two neighbour lists.
fn neighbourhood_overlap(na: &[Vec<usize>], nb: &[Vec<usize>], k: usize) -> (f64, f64) {
    let n = na.len().max(1) as f64;
    let mut jac = 0.0;
    let mut mutual = 0.0;
    for (x, y) in na.iter().zip(nb) {
        let inter = x.iter().filter(|i| y.contains(i)).count() as f64;
        jac += inter / (2.0 * k as f64 - inter);
        mutual += inter / k as f64;
    }
    (jac / n, mutual / n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn retrieval_jaccard_needs_aligned_spaces() -> anyhow::Result<()> {
        let a = Tensor::randn(0f32, 1., (60, 8), &Device::Cpu)?;
        assert!((retrieval_jaccard_at_k(&a, &a, 5)? - 1.0).abs() < 1e-12);
        // Reversing the coordinates is an isometry: own neighbourhoods are unchanged…
        let idx = Tensor::new(&[7u32, 6, 5, 4, 3, 2, 1, 0], &Device::Cpu)?;
        let b = a.index_select(&idx, 1)?;
        assert!((jaccard_at_k(&a, &b, 5)? - 1.0).abs() < 1e-12);
        // …but the spaces are no longer aligned, so cross-space queries miss.
        assert!(retrieval_jaccard_at_k(&a, &b, 5)? < 0.5);
        assert!(retrieval_jaccard_at_k(&a, &a.narrow(1, 0, 4)?, 5).is_err());
        Ok(())
    }

    #[test]
    fn similarity_matrix_is_the_cosine_matrix() -> anyhow::Result<()> {
        let x = Tensor::new(&[[2f32, 0.], [0., 3.], [1., 1.], [-1., 0.]], &Device::Cpu)?;
        let m = SimilarityMatrix::cosine(&x, &["a", "b", "a", "b"])?;
        let h = 0.5f64.sqrt();
        let expected = [
            [1.0, 0.0, h, -1.0],
            [0.0, 1.0, h, 0.0],
            [h, h, 1.0, -h],
            [-1.0, 0.0, -h, 1.0],
        ];
        for (row, e) in m.values().iter().zip(expected) {
            for (v, e) in row.iter().zip(e) {
                assert!((v - e).abs() < 1e-6, "{v} vs {e}");
            }
        }
        // Same-label pairs: (0,2) and (1,3), each twice.
        let (within, between) = m.label_contrast();
        assert!((within - h / 2.0).abs() < 1e-6, "{within}");
        assert!(
            (between - (0.0 + -1.0 + h + -h) / 4.0).abs() < 1e-6,
            "{between}"
        );
        assert_eq!(m.mean_abs_difference(&m)?, 0.0);
        assert_eq!(m.labels(), ["a", "b", "a", "b"]);
        let (lo, hi) = m.off_diagonal_range();
        assert!(
            (lo + 1.0).abs() < 1e-6 && (hi - h).abs() < 1e-6,
            "{lo} {hi}"
        );
        Ok(())
    }

    #[test]
    fn centred_similarity_removes_the_shared_direction() -> anyhow::Result<()> {
        // Two groups around a large common offset: plain cosine sees everything as similar.
        let x = Tensor::new(
            &[
                [10f32, 1., 0.],
                [10., 1.2, 0.],
                [10., 0., 1.],
                [10., 0., 1.2],
            ],
            &Device::Cpu,
        )?;
        let labels = ["a", "a", "b", "b"];
        let plain = SimilarityMatrix::cosine(&x, &labels)?;
        let centred = SimilarityMatrix::centered_cosine(&x, &labels)?;
        assert!(
            plain.label_contrast().1 > 0.98,
            "{:?}",
            plain.label_contrast()
        );
        let (within, between) = centred.label_contrast();
        assert!(within > 0.9 && between < -0.9, "{within} {between}");
        Ok(())
    }

    #[test]
    fn similarity_matrix_rejects_bad_input() -> anyhow::Result<()> {
        let x = Tensor::new(&[[1f32, 0.], [0., 0.]], &Device::Cpu)?;
        assert!(SimilarityMatrix::cosine(&x, &["a", "b"]).is_err()); // zero row
        let x = Tensor::new(&[[1f32, 0.], [0., 1.]], &Device::Cpu)?;
        assert!(SimilarityMatrix::cosine(&x, &["a"]).is_err());
        let one = Tensor::new(&[[1f32, 0.]], &Device::Cpu)?;
        assert!(SimilarityMatrix::cosine(&one, &["a"]).is_err());
        let m2 = SimilarityMatrix::cosine(&x, &["a", "b"])?;
        let x3 = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.]], &Device::Cpu)?;
        let m3 = SimilarityMatrix::cosine(&x3, &["a", "b", "c"])?;
        assert!(m2.mean_abs_difference(&m3).is_err());
        Ok(())
    }

    #[test]
    fn comparisons_render_as_one_table() -> anyhow::Result<()> {
        let a = Tensor::randn(0f32, 1., (20, 6), &Device::Cpu)?;
        let b = Tensor::randn(0f32, 1., (20, 4), &Device::Cpu)?;
        let same = compare_spaces(&a, &a, 3)?;
        let other = compare_spaces(&a, &b, 3)?;
        let table = ComparisonTable::new("spaces")
            .with_row("a vs a", same.clone())
            .with_row("a vs b", other);
        let html = table.to_html();
        assert!(html.contains("<th>Jaccard@3</th>") && html.contains("<td>a vs a</td>"));
        assert!(html.contains("<td>n/a</td>"), "widths differ: no MRR");
        assert!(table.to_string().lines().count() == 3);
        assert!(same
            .to_html()
            .contains("<tr><td>linear CKA</td><td>1.0000</td></tr>"));
        Ok(())
    }

    #[cfg(feature = "plot")]
    #[test]
    fn similarity_heatmaps_draw_side_by_side() -> anyhow::Result<()> {
        let x = Tensor::randn(0f32, 1., (6, 5), &Device::Cpu)?;
        let labels = ["a", "a", "b", "b", "c", "c"];
        let m = SimilarityMatrix::cosine(&x, &labels)?.with_title("first");
        assert!(m.to_svg()?.contains("<svg"));
        let both = SimilarityMatrix::side_by_side(&[&m, &m.clone().with_title("second")])?;
        assert_eq!(both.as_str().matches("<svg").count(), 2);
        Ok(())
    }
}
