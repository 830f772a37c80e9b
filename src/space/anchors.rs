//! Anchors: the fixed samples every relative representation is measured against.
//!
//! An [`AnchorSet`] is an ordered list of samples (a text, a row of some dataset, a label). Two
//! encoders can be stitched zero-shot only if they embed the *same* anchor samples in the *same*
//! order, so the set carries a content hash ([`AnchorSet::hash`]) that is written next to every
//! relative representation made from it.
//!
//! Selection strategies ([`AnchorStrategy`]) follow the paper (uniform for vision,
//! class-stratified round-robin over a shuffled train set for text) and add farthest-point and
//! k-means anchors; [`diagnose`] reports the rank and conditioning of an anchor matrix and
//! [`sweep_num_anchors`] evaluates anything over a range of anchor counts.
//!
//! ```
//! # fn main() -> relstitch::Result<()> {
//! use relstitch::space::anchors::{AnchorPool, AnchorSet, AnchorStrategy};
//! let texts: Vec<String> = (0..100).map(|i| format!("text {i}")).collect();
//! let labels: Vec<String> = (0..100).map(|i| format!("class {}", i % 4)).collect();
//! let pool = AnchorPool::new(100).with_texts(&texts).with_labels(&labels);
//! let anchors = AnchorSet::select(&pool, 8, &AnchorStrategy::Stratified { seed: 0 })?;
//! assert_eq!(anchors.len(), 8); // two per class, round-robin
//! println!("anchor set {}", anchors.hash());
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::Path;

use candle_core::{DType, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::CandleContext;
use crate::space::linalg;
use crate::space::tensor::as_f32_matrix;
use crate::{Error, Result};

/// One anchor sample: any of its text, its row in a dataset or embedding matrix, and its label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AnchorSample {
    /// The raw input (what an encoder embeds).
    #[serde(default)]
    pub text: Option<String>,
    /// The index of the sample in the dataset / embedding matrix it was drawn from.
    #[serde(default)]
    pub row: Option<usize>,
    /// The class label, when known.
    #[serde(default)]
    pub label: Option<String>,
}

impl AnchorSample {
    /// A sample known by its row.
    pub fn from_row(row: usize) -> Self {
        Self {
            text: None,
            row: Some(row),
            label: None,
        }
    }

    /// A sample known by its text.
    pub fn from_text(text: impl Into<String>) -> Self {
        Self {
            text: Some(text.into()),
            row: None,
            label: None,
        }
    }

    /// A short human description: its row, its text (cut to 60 characters) and its label.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.row {
            parts.push(format!("row {r}"));
        }
        if let Some(t) = &self.text {
            let cut: String = t.chars().take(60).collect();
            let more = if cut.len() < t.len() { "…" } else { "" };
            parts.push(format!("text {:?}", format!("{cut}{more}")));
        }
        if let Some(l) = &self.label {
            parts.push(format!("label {l:?}"));
        }
        parts.join(", ")
    }

    /// Sets the label.
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
}

/// An ordered, duplicate-free, non-empty list of anchor samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorSet {
    samples: Vec<AnchorSample>,
}

impl AnchorSet {
    /// Validates and wraps `samples`: at least one, each with a text or a row, no two equal, no row
    /// used twice.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the offending sample: none at all, a sample with neither
    /// text nor row, a row used twice, or a sample equal to an earlier one.
    pub fn try_new(samples: Vec<AnchorSample>) -> Result<Self> {
        if samples.is_empty() {
            return Err(Error::invalid("anchor set", "no anchor samples"));
        }
        let mut seen: HashMap<&AnchorSample, usize> = HashMap::new();
        let mut rows: HashMap<usize, usize> = HashMap::new();
        for (i, s) in samples.iter().enumerate() {
            if s.text.is_none() && s.row.is_none() {
                return Err(Error::invalid(
                    "anchor set",
                    format!("sample {i} has neither a text nor a row"),
                ));
            }
            if let Some(r) = s.row {
                if let Some(j) = rows.insert(r, i) {
                    return Err(Error::invalid(
                        "anchor set",
                        format!(
                            "duplicate anchor: row {r} is used by samples {j} and {i}; each \
                             anchor must be a different row — remove the repeated one"
                        ),
                    ));
                }
            }
            if let Some(j) = seen.insert(s, i) {
                return Err(Error::invalid(
                    "anchor set",
                    format!(
                        "sample {i} is a duplicate of sample {j} ({}); each anchor must be a \
                         different sample — remove the repeated one",
                        s.describe()
                    ),
                ));
            }
        }
        Ok(Self { samples })
    }

    /// Anchors given by their rows (e.g. `rows:3,17,42` on the command line).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `rows` is empty or repeats a row ([`AnchorSet::try_new`]).
    pub fn from_rows(rows: &[usize]) -> Result<Self> {
        Self::try_new(rows.iter().map(|&r| AnchorSample::from_row(r)).collect())
    }

    /// Anchors given by their texts.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `texts` is empty or repeats a text ([`AnchorSet::try_new`]).
    pub fn from_texts<S: AsRef<str>>(texts: &[S]) -> Result<Self> {
        Self::try_new(
            texts
                .iter()
                .map(|t| AnchorSample::from_text(t.as_ref()))
                .collect(),
        )
    }

    /// The samples, in order.
    pub fn samples(&self) -> &[AnchorSample] {
        &self.samples
    }

    /// The number of anchors.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Always false (an anchor set is never empty); here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The rows of the samples, in order; an error when a sample has no row.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first sample without a row.
    pub fn rows(&self) -> Result<Vec<usize>> {
        self.samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.row.ok_or_else(|| {
                    Error::invalid("anchor set", format!("sample {i} has no row index"))
                })
            })
            .collect()
    }

    /// The texts of the samples, in order; an error when a sample has no text.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first sample without a text.
    pub fn texts(&self) -> Result<Vec<String>> {
        self.samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.text
                    .clone()
                    .ok_or_else(|| Error::invalid("anchor set", format!("sample {i} has no text")))
            })
            .collect()
    }

    /// The canonical JSON the hash is computed over: a compact JSON array of
    /// `{"text":…,"row":…,"label":…}` objects, keys in that order, `null` for what is absent.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(&self.samples).unwrap_or_default()
    }

    /// The content hash: lowercase hex sha256 of [`canonical_json`](Self::canonical_json).
    /// Equal hashes mean the same samples in the same order.
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// Writes the set as JSONL (one sample object per line, in order), atomically.
    ///
    /// # Errors
    /// The errors of [`write_atomic`](crate::io::write_atomic) (e.g. [`Error::Io`]);
    /// [`Error::Json`] if a sample cannot be serialised.
    pub fn save_jsonl(&self, path: &Path) -> Result<()> {
        let mut out = Vec::new();
        for s in &self.samples {
            serde_json::to_writer(&mut out, s).map_err(|e| Error::Json {
                path: path.to_path_buf(),
                hint: "cannot serialise an anchor sample".into(),
                source: e,
            })?;
            out.write_all(b"\n").map_err(|e| Error::io(path, e))?;
        }
        crate::io::write_atomic(path, &out)
    }

    /// Reads a set written by [`save_jsonl`](Self::save_jsonl) (blank lines are skipped; missing
    /// keys are `null`).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened or read; [`Error::Input`] naming the line that
    /// is not an anchor sample, or (without a line) when the samples do not make a valid set
    /// ([`AnchorSet::try_new`]: none, or duplicates).
    pub fn load_jsonl(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut samples = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| Error::io(path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            let s: AnchorSample = serde_json::from_str(&line).map_err(|e| Error::Input {
                path: path.to_path_buf(),
                line: Some(i + 1),
                reason: format!(
                    "not an anchor sample ({e}); expected {{\"text\": …, \"row\": …, \"label\": …}}"
                ),
            })?;
            samples.push(s);
        }
        Self::try_new(samples).map_err(|e| Error::Input {
            path: path.to_path_buf(),
            line: None,
            reason: e.to_string(),
        })
    }

    /// The anchors' rows of `space`, in anchor order.
    ///
    /// # Shapes
    /// - `space`: `[n, d]`; returns `[k, d]` (same dtype and device).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a sample has no row or a row is out of range;
    /// [`Error::Shape`] when `space` is not a matrix; [`Error::Candle`] when gathering fails.
    pub fn latents(&self, space: &Tensor) -> Result<Tensor> {
        let rows = self.rows()?;
        gather_rows(space, &rows, "anchor rows")
    }

    /// Selects `n_anchors` samples of `pool` with `strategy`. The samples carry their row, and their
    /// text and label when the pool has them.
    ///
    /// # Errors
    /// The errors of [`AnchorStrategy::select_rows`].
    pub fn select(
        pool: &AnchorPool<'_>,
        n_anchors: usize,
        strategy: &AnchorStrategy,
    ) -> Result<Self> {
        let rows = strategy.select_rows(pool, n_anchors)?;
        Self::try_new(
            rows.into_iter()
                .map(|r| AnchorSample {
                    text: pool.texts.map(|t| t[r].clone()),
                    row: Some(r),
                    label: pool.labels.map(|l| l[r].clone()),
                })
                .collect(),
        )
    }

    /// How many anchors each label has, labels sorted by name (unlabelled samples are not counted).
    pub fn label_counts(&self) -> Vec<(String, usize)> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for l in self.samples.iter().filter_map(|s| s.label.as_deref()) {
            *counts.entry(l).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(l, c)| (l.to_string(), c))
            .collect()
    }

    /// A summary as HTML: the count, the hash, the anchors per label and the first samples (texts
    /// cut to 100 characters).
    pub fn to_html(&self) -> String {
        const SHOWN: usize = 8;
        let per_label: Vec<String> = self
            .label_counts()
            .iter()
            .map(|(l, c)| format!("{} {c}", crate::report::display::escape(l)))
            .collect();
        let mut out = format!(
            "<p><b>{} anchors</b>, sha256 <code>{}</code>{}</p>",
            self.len(),
            &self.hash()[..16],
            if per_label.is_empty() {
                String::new()
            } else {
                format!("; per label: {}", per_label.join(", "))
            }
        );
        let rows: Vec<Vec<String>> = self
            .samples
            .iter()
            .take(SHOWN)
            .enumerate()
            .map(|(i, s)| {
                let text = s.text.as_deref().unwrap_or("");
                let cut = crate::data::truncate_chars(text, 100);
                vec![
                    i.to_string(),
                    s.row.map_or_else(String::new, |r| r.to_string()),
                    s.label.clone().unwrap_or_default(),
                    if cut.len() < text.len() {
                        format!("{cut}…")
                    } else {
                        cut.to_string()
                    },
                ]
            })
            .collect();
        let headers = ["#", "row", "label", "text"].map(String::from);
        out.push_str(&crate::report::display::html_table(&headers, &rows));
        if self.len() > SHOWN {
            out.push_str(&format!("<p>… and {} more</p>", self.len() - SHOWN));
        }
        out
    }

    /// Renders as an HTML summary in Jupyter notebooks running the evcxr kernel.
    #[cfg(feature = "evcxr")]
    pub fn evcxr_display(&self) {
        crate::report::display::emit_html(&self.to_html());
    }
}

/// The samples anchors are drawn from: how many, and optionally their texts, labels and latents.
#[derive(Debug, Clone, Copy)]
pub struct AnchorPool<'a> {
    len: usize,
    texts: Option<&'a [String]>,
    labels: Option<&'a [String]>,
    space: Option<&'a Tensor>,
}

impl<'a> AnchorPool<'a> {
    /// A pool of `len` samples, known by their rows `0..len`.
    pub fn new(len: usize) -> Self {
        Self {
            len,
            texts: None,
            labels: None,
            space: None,
        }
    }

    /// A pool made of the rows of a latent space (`[n, d]`), needed by the farthest-point and
    /// k-means strategies and by [`sweep_num_anchors`].
    ///
    /// # Shapes
    /// - `space`: `[n, d]`.
    pub fn from_space(space: &'a Tensor) -> Self {
        Self::new(space.dims().first().copied().unwrap_or(0)).with_space(space)
    }

    /// Attaches the texts (one per sample).
    #[must_use]
    pub fn with_texts(mut self, texts: &'a [String]) -> Self {
        self.texts = Some(texts);
        self
    }

    /// Attaches the class labels (one per sample), needed by the stratified strategy.
    #[must_use]
    pub fn with_labels(mut self, labels: &'a [String]) -> Self {
        self.labels = Some(labels);
        self
    }

    /// Attaches the latents (`[n, d]`), needed by the farthest-point and k-means strategies.
    ///
    /// # Shapes
    /// - `space`: `[n, d]`.
    #[must_use]
    pub fn with_space(mut self, space: &'a Tensor) -> Self {
        self.space = Some(space);
        self
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the pool has no samples.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self) -> Result<()> {
        if let Some(t) = self.texts {
            if t.len() != self.len {
                return Err(Error::invalid(
                    "anchor pool",
                    format!("{} texts for {} samples", t.len(), self.len),
                ));
            }
        }
        if let Some(l) = self.labels {
            if l.len() != self.len {
                return Err(Error::invalid(
                    "anchor pool",
                    format!("{} labels for {} samples", l.len(), self.len),
                ));
            }
        }
        if let Some(s) = self.space {
            let (n, _) = s.dims2().map_err(|e| {
                Error::invalid("anchor pool", format!("the space is not a matrix ({e})"))
            })?;
            if n != self.len {
                return Err(Error::invalid(
                    "anchor pool",
                    format!("the space has {n} rows for {} samples", self.len),
                ));
            }
        }
        Ok(())
    }

    fn space(&self, strategy: &str) -> Result<Tensor> {
        let s = self.space.ok_or_else(|| {
            Error::invalid(
                "anchor strategy",
                format!("{strategy} needs the latents of the pool (AnchorPool::with_space)"),
            )
        })?;
        let s = as_f32_matrix(s, "anchor pool space")?;
        crate::io::check_finite(&s, "anchor pool space")?;
        Ok(s)
    }
}

/// How anchors are chosen. Every strategy is deterministic given its seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum AnchorStrategy {
    /// Uniformly at random without replacement (the paper's vision anchors): the first `n` of a
    /// seeded shuffle, so smaller counts with the same seed are prefixes of larger ones.
    Uniform {
        /// The shuffle seed.
        seed: u64,
    },
    /// The paper's text anchors: shuffle the pool with the seed, group it by label (labels in sorted
    /// order, samples in shuffled order), then take one sample per class round-robin until `n`
    /// (classes that run out are skipped).
    Stratified {
        /// The shuffle seed.
        seed: u64,
    },
    /// Greedy farthest-point (max–min Euclidean distance) traversal of the space, starting from a
    /// seeded random sample: spreads anchors over the space.
    FarthestPoint {
        /// Picks the first anchor.
        seed: u64,
    },
    /// k-means (k-means++ seeding, then `iterations` Lloyd steps) in the space; each anchor is the
    /// sample nearest to a centroid (the next nearest unused one when two centroids share it).
    KMeans {
        /// Seeds k-means++.
        seed: u64,
        /// The number of Lloyd iterations (0 keeps the k-means++ seeds).
        iterations: usize,
    },
}

impl AnchorStrategy {
    /// The rows of `pool` this strategy picks, in anchor order.
    ///
    /// When the pool has texts ([`AnchorPool::with_texts`]), the uniform and stratified strategies
    /// skip samples whose text was already chosen, so repeated texts never become two identical
    /// anchors.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `n_anchors` of 0 or larger than the pool (or than its
    /// distinct texts), a strategy that needs labels or a space the pool lacks, pool parts of
    /// different lengths, a space that is not a matrix or holds NaN/infinite values, or
    /// (farthest-point, k-means) a space with fewer distinct points than anchors asked for;
    /// [`Error::Shape`] or [`Error::Candle`] when the space cannot be read as an f32 matrix.
    pub fn select_rows(&self, pool: &AnchorPool<'_>, n_anchors: usize) -> Result<Vec<usize>> {
        pool.check()?;
        let n = pool.len;
        if n_anchors == 0 {
            return Err(Error::invalid("number of anchors", "must be at least 1"));
        }
        if n_anchors > n {
            return Err(Error::invalid(
                "number of anchors",
                format!("{n_anchors} anchors asked from a pool of {n} samples"),
            ));
        }
        match *self {
            Self::Uniform { seed } => {
                let mut rows: Vec<usize> = (0..n).collect();
                rows.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
                let mut seen = DistinctTexts::new(pool.texts);
                let mut out = Vec::with_capacity(n_anchors);
                for r in rows {
                    if out.len() == n_anchors {
                        break;
                    }
                    if seen.first_time(r) {
                        out.push(r);
                    }
                }
                seen.enough(out, n_anchors)
            }
            Self::Stratified { seed } => {
                let labels = pool.labels.ok_or_else(|| {
                    Error::invalid(
                        "anchor strategy",
                        "stratified selection needs labels (AnchorPool::with_labels)",
                    )
                })?;
                let mut rows: Vec<usize> = (0..n).collect();
                rows.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
                let mut by_class: BTreeMap<&str, std::collections::VecDeque<usize>> =
                    BTreeMap::new();
                for r in rows {
                    by_class.entry(labels[r].as_str()).or_default().push_back(r);
                }
                let mut seen = DistinctTexts::new(pool.texts);
                let mut out = Vec::with_capacity(n_anchors);
                while out.len() < n_anchors && by_class.values().any(|q| !q.is_empty()) {
                    for queue in by_class.values_mut() {
                        if out.len() == n_anchors {
                            break;
                        }
                        while let Some(r) = queue.pop_front() {
                            if seen.first_time(r) {
                                out.push(r);
                                break;
                            }
                        }
                    }
                }
                seen.enough(out, n_anchors)
            }
            Self::FarthestPoint { seed } => {
                let x = pool.space("farthest-point selection")?;
                farthest_point(&x, n_anchors, seed)
            }
            Self::KMeans { seed, iterations } => {
                let x = pool.space("k-means selection")?;
                kmeans_anchors(&x, n_anchors, seed, iterations)
            }
        }
    }
}

/// Remembers the texts already chosen, when the pool has texts: the same text twice (a repeated
/// verse, a duplicated email) would make two identical anchors.
struct DistinctTexts<'a> {
    texts: Option<&'a [String]>,
    seen: std::collections::HashSet<&'a str>,
}

impl<'a> DistinctTexts<'a> {
    fn new(texts: Option<&'a [String]>) -> Self {
        Self {
            texts,
            seen: Default::default(),
        }
    }

    /// Whether row `r` has a text not seen before (always true without texts); marks it seen.
    fn first_time(&mut self, r: usize) -> bool {
        match self.texts {
            Some(t) => self.seen.insert(t[r].as_str()),
            None => true,
        }
    }

    /// `rows` if there are `n` of them, else an error saying the pool has too few distinct texts.
    fn enough(&self, rows: Vec<usize>, n: usize) -> Result<Vec<usize>> {
        if rows.len() < n {
            return Err(Error::invalid(
                "number of anchors",
                format!(
                    "{n} anchors asked from a pool with only {} distinct texts (texts whose \
                     embeddings are identical, e.g. long documents that agree up to the model's \
                     maximum length, count as one); ask for fewer",
                    rows.len()
                ),
            ));
        }
        Ok(rows)
    }
}

/// `rows` of `x` (`[n, d]`) with bounds checks.
pub(crate) fn gather_rows(x: &Tensor, rows: &[usize], what: &str) -> Result<Tensor> {
    let n = x
        .dims()
        .first()
        .copied()
        .ok_or_else(|| Error::shape(what, &[], "cannot take rows of a scalar"))?;
    if x.rank() != 2 {
        return Err(Error::shape(
            what,
            x.dims(),
            "expected a matrix [rows, dims]",
        ));
    }
    if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
        return Err(Error::invalid(
            what,
            format!("row {bad} is out of range: the matrix has {n} rows"),
        ));
    }
    let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
    let idx = Tensor::new(idx.as_slice(), x.device())
        .and_then(|i| x.index_select(&i, 0))
        .context(|| format!("taking {what}"))?;
    Ok(idx)
}

/// Squared Euclidean distances of every row of `x` (`[n, d]` f32) to `c` (`[d]` as `[1, d]`), given
/// the rows' squared norms.
fn sq_dist_to(x: &Tensor, x_sq: &[f32], c: &Tensor) -> Result<Vec<f32>> {
    let ctx = || "computing distances for anchor selection".to_string();
    let c_sq: f32 = c
        .sqr()
        .and_then(|t| t.sum_all())
        .and_then(|t| t.to_scalar::<f32>())
        .context(ctx)?;
    let dots = x
        .matmul(&c.t().context(ctx)?)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .context(ctx)?;
    Ok(dots
        .iter()
        .zip(x_sq)
        .map(|(d, s)| (s + c_sq - 2.0 * d).max(0.0))
        .collect())
}

fn row_sq_norms(x: &Tensor) -> Result<Vec<f32>> {
    x.sqr()
        .and_then(|t| t.sum(1))
        .and_then(|t| t.to_vec1::<f32>())
        .context(|| "computing norms for anchor selection".into())
}

fn row(x: &Tensor, r: usize) -> Result<Tensor> {
    x.narrow(0, r, 1).context(|| "taking a row".into())
}

fn not_enough_distinct(found: usize, wanted: usize) -> Error {
    Error::invalid(
        "number of anchors",
        format!(
            "the space has only {found} distinct points, fewer than the {wanted} anchors asked for"
        ),
    )
}

fn farthest_point(x: &Tensor, k: usize, seed: u64) -> Result<Vec<usize>> {
    let n = x.dim(0).context(|| "reading the space".into())?;
    let x_sq = row_sq_norms(x)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let first = rng.random_range(0..n);
    let mut chosen = vec![first];
    let mut min_d = sq_dist_to(x, &x_sq, &row(x, first)?)?;
    min_d[first] = 0.0;
    while chosen.len() < k {
        let (best, &dist) = min_d
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .ok_or_else(|| not_enough_distinct(chosen.len(), k))?;
        if dist <= 0.0 {
            return Err(not_enough_distinct(chosen.len(), k));
        }
        chosen.push(best);
        let d = sq_dist_to(x, &x_sq, &row(x, best)?)?;
        for (m, v) in min_d.iter_mut().zip(d) {
            *m = m.min(v);
        }
        min_d[best] = 0.0;
    }
    Ok(chosen)
}

fn kmeans_anchors(x: &Tensor, k: usize, seed: u64, iterations: usize) -> Result<Vec<usize>> {
    let ctx = || "running k-means for anchor selection".to_string();
    let (n, d) = x.dims2().context(ctx)?;
    let x_sq = row_sq_norms(x)?;
    // k-means++ seeding.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let first = rng.random_range(0..n);
    let mut seeds = vec![first];
    let mut min_d = sq_dist_to(x, &x_sq, &row(x, first)?)?;
    min_d[first] = 0.0;
    while seeds.len() < k {
        let total: f64 = min_d.iter().map(|&v| f64::from(v)).sum();
        if total <= 0.0 {
            return Err(not_enough_distinct(seeds.len(), k));
        }
        let mut target = rng.random::<f64>() * total;
        let mut pick = None;
        for (i, &v) in min_d.iter().enumerate() {
            if v <= 0.0 {
                continue;
            }
            target -= f64::from(v);
            pick = Some(i);
            if target <= 0.0 {
                break;
            }
        }
        let pick = pick.ok_or_else(|| not_enough_distinct(seeds.len(), k))?;
        seeds.push(pick);
        let dd = sq_dist_to(x, &x_sq, &row(x, pick)?)?;
        for (m, v) in min_d.iter_mut().zip(dd) {
            *m = m.min(v);
        }
        min_d[pick] = 0.0;
    }
    let mut centroids = gather_rows(x, &seeds, "k-means seeds")?;
    if iterations > 0 {
        let xv = x
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .context(ctx)?;
        for _ in 0..iterations {
            let (assign, dist) = assign_nearest(x, &x_sq, &centroids)?;
            let mut sums = vec![0f64; k * d];
            let mut counts = vec![0usize; k];
            for (i, &c) in assign.iter().enumerate() {
                counts[c] += 1;
                for (s, v) in sums[c * d..(c + 1) * d]
                    .iter_mut()
                    .zip(&xv[i * d..(i + 1) * d])
                {
                    *s += f64::from(*v);
                }
            }
            // Empty clusters take the points farthest from their centroids.
            let mut far: Vec<usize> = (0..n).collect();
            far.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]));
            let mut far = far.into_iter();
            let mut new = vec![0f32; k * d];
            for c in 0..k {
                if counts[c] == 0 {
                    if let Some(p) = far.next() {
                        new[c * d..(c + 1) * d].copy_from_slice(&xv[p * d..(p + 1) * d]);
                    }
                } else {
                    for (o, s) in new[c * d..(c + 1) * d]
                        .iter_mut()
                        .zip(&sums[c * d..(c + 1) * d])
                    {
                        *o = (s / counts[c] as f64) as f32;
                    }
                }
            }
            centroids = Tensor::from_vec(new, (k, d), x.device()).context(ctx)?;
        }
    }
    // The nearest unused sample to each centroid.
    let mut used = HashSet::new();
    let mut out = Vec::with_capacity(k);
    for c in 0..k {
        let dist = sq_dist_to(x, &x_sq, &row(&centroids, c)?)?;
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| dist[a].total_cmp(&dist[b]).then(a.cmp(&b)));
        let pick = order
            .into_iter()
            .find(|r| !used.contains(r))
            .ok_or_else(|| not_enough_distinct(out.len(), k))?;
        used.insert(pick);
        out.push(pick);
    }
    Ok(out)
}

/// For every row of `x`, the nearest centroid and the squared distance to it (chunked matmuls).
fn assign_nearest(x: &Tensor, x_sq: &[f32], centroids: &Tensor) -> Result<(Vec<usize>, Vec<f32>)> {
    let ctx = || "assigning samples to k-means centroids".to_string();
    let n = x_sq.len();
    let k = centroids.dim(0).context(ctx)?;
    let c_sq = centroids
        .sqr()
        .and_then(|t| t.sum_keepdim(1))
        .and_then(|t| t.t())
        .context(ctx)?; // [1, k]
    let ct = centroids.t().and_then(|t| t.contiguous()).context(ctx)?;
    let chunk = ((1usize << 24) / k.max(1)).max(1);
    let mut assign = Vec::with_capacity(n);
    let mut dist = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let len = chunk.min(n - start);
        // ‖c‖² − 2 x·c (‖x‖² is constant per row).
        let part = x
            .narrow(0, start, len)
            .and_then(|xc| xc.matmul(&ct))
            .and_then(|t| t.affine(-2.0, 0.0))
            .and_then(|t| t.broadcast_add(&c_sq))
            .context(ctx)?;
        let idx = part
            .argmin_keepdim(1)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<u32>())
            .context(ctx)?;
        let val = part.min(1).and_then(|t| t.to_vec1::<f32>()).context(ctx)?;
        for (j, (i, v)) in idx.into_iter().zip(val).enumerate() {
            assign.push(i as usize);
            dist.push((v + x_sq[start + j]).max(0.0));
        }
        start += len;
    }
    Ok((assign, dist))
}

/// Rank and conditioning of an anchor matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnchorDiagnostics {
    /// The number of anchors `k`.
    pub num_anchors: usize,
    /// The width `d` of the space.
    pub dim: usize,
    /// The numerical rank: singular values above `10 · ε_f32 · σ_max` (the f32 noise floor).
    pub rank: usize,
    /// `σ_max / σ_min` over the `min(k, d)` singular values; infinite (`null` in JSON) when the
    /// matrix is rank-deficient (beyond ≈ 8·10⁵, the f32 noise floor of [`rank`](Self::rank)).
    pub condition_number: f64,
    /// The singular values, largest first (computed in f64).
    pub singular_values: Vec<f64>,
    /// The largest cosine similarity between two different anchors (1 means a duplicate
    /// direction; near 1, anchors that add little).
    pub max_pairwise_cosine: f64,
}

impl crate::report::display::TableRow for AnchorDiagnostics {
    fn columns(&self) -> Vec<(String, String)> {
        vec![
            ("anchors".into(), self.num_anchors.to_string()),
            ("dim".into(), self.dim.to_string()),
            ("rank".into(), self.rank.to_string()),
            (
                "condition number".into(),
                if self.condition_number.is_finite() {
                    format!("{:.1}", self.condition_number)
                } else {
                    "∞".into()
                },
            ),
            (
                "max pairwise cosine".into(),
                crate::report::display::cell(Some(self.max_pairwise_cosine)),
            ),
        ]
    }
}

/// A bar chart (SVG) of the anchors per label of several anchor sets, e.g. one per strategy.
///
/// # Errors
/// [`Error::InvalidArgument`] when `sets` is empty or none of its anchors has a label;
/// [`Error::Plot`] when drawing fails ([`bar_chart`](crate::report::plot::bar_chart)).
#[cfg(feature = "plot")]
pub fn label_chart(title: &str, sets: &[(&str, &AnchorSet)]) -> Result<String> {
    let mut labels: Vec<String> = sets
        .iter()
        .flat_map(|(_, s)| s.label_counts().into_iter().map(|(l, _)| l))
        .collect();
    labels.sort();
    labels.dedup();
    let series: Vec<(String, Vec<f64>)> = sets
        .iter()
        .map(|(name, set)| {
            let counts = set.label_counts();
            let values = labels
                .iter()
                .map(|l| {
                    counts
                        .iter()
                        .find(|(c, _)| c == l)
                        .map_or(0.0, |(_, n)| *n as f64)
                })
                .collect();
            (name.to_string(), values)
        })
        .collect();
    crate::report::plot::bar_chart(title, "anchors", &labels, &series)
}

/// Rank, condition number, singular values and near-duplicates of an anchor matrix.
///
/// # Shapes
/// - `anchor_latents`: `[k, d]`, `k ≥ 2`, any float dtype and device.
///
/// # Errors
/// [`Error::Shape`] when `anchor_latents` is not a matrix; [`Error::InvalidArgument`] when it is
/// not floating-point, holds NaN/infinite values, or has fewer than 2 rows or no columns;
/// [`Error::Candle`] when the decomposition fails.
pub fn diagnose(anchor_latents: &Tensor) -> Result<AnchorDiagnostics> {
    let a = as_f32_matrix(anchor_latents, "anchor latents")?;
    crate::io::check_finite(&a, "anchor latents")?;
    let (k, d) = a.dims2().context(|| "reading the anchors".into())?;
    if k < 2 || d == 0 {
        return Err(Error::invalid(
            "anchor latents",
            format!("{k}×{d}: diagnostics need at least 2 anchors of at least 1 dimension"),
        ));
    }
    let ctx = || "diagnosing the anchor matrix".to_string();
    let s = linalg::singular_values(&a).context(ctx)?;
    let smax = s.first().copied().unwrap_or(0.0);
    let tol = linalg::rank_tolerance(smax);
    let rank = s.iter().filter(|&&v| v > tol).count();
    let smin = s.last().copied().unwrap_or(0.0);
    let condition_number = if rank == s.len() && smin > 0.0 {
        smax / smin
    } else {
        f64::INFINITY
    };
    let a64 = a.to_dtype(DType::F64).context(ctx)?;
    let norms = a64
        .sqr()
        .and_then(|t| t.sum_keepdim(1))
        .and_then(|t| t.sqrt())
        .and_then(|t| t.maximum(1e-300f64))
        .context(ctx)?;
    let unit = a64.broadcast_div(&norms).context(ctx)?;
    let cos = unit
        .matmul(&unit.t().context(ctx)?)
        .and_then(|t| t.to_vec2::<f64>())
        .context(ctx)?;
    let mut max_cos = f64::NEG_INFINITY;
    for (i, r) in cos.iter().enumerate() {
        for (j, &v) in r.iter().enumerate() {
            if i != j {
                max_cos = max_cos.max(v);
            }
        }
    }
    Ok(AnchorDiagnostics {
        num_anchors: k,
        dim: d,
        rank,
        condition_number,
        singular_values: s,
        max_pairwise_cosine: max_cos.min(1.0),
    })
}

/// One point of an anchor-count sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint<T> {
    /// The number of anchors.
    pub num_anchors: usize,
    /// The anchor set's content hash.
    pub anchor_hash: String,
    /// Rank and conditioning of the anchors' latents.
    pub diagnostics: AnchorDiagnostics,
    /// What `evaluate` returned.
    pub score: T,
}

/// Selects anchors with `strategy` for each count in `counts` (from a pool that has a space),
/// diagnoses them and calls `evaluate(anchor_set, anchor_latents)`.
///
/// With [`AnchorStrategy::Uniform`] and a fixed seed the smaller sets are prefixes of the larger
/// ones, so the sweep isolates the effect of the count.
///
/// # Shapes
/// - the pool's space: `[n, d]`; `evaluate` receives the anchors' latents `[k, d]`.
///
/// # Errors
/// [`Error::InvalidArgument`] when the pool has no space; the errors of [`AnchorSet::select`],
/// [`AnchorSet::latents`] and [`diagnose`] for each count; the first error `evaluate` returns.
pub fn sweep_num_anchors<T>(
    pool: &AnchorPool<'_>,
    counts: &[usize],
    strategy: &AnchorStrategy,
    mut evaluate: impl FnMut(&AnchorSet, &Tensor) -> Result<T>,
) -> Result<Vec<SweepPoint<T>>> {
    let space = pool.space.ok_or_else(|| {
        Error::invalid(
            "anchor sweep",
            "the pool needs its latents (AnchorPool::with_space)",
        )
    })?;
    let mut out = Vec::with_capacity(counts.len());
    for &c in counts {
        let set = AnchorSet::select(pool, c, strategy)?;
        let latents = set.latents(space)?;
        let diagnostics = diagnose(&latents)?;
        let score = evaluate(&set, &latents)?;
        out.push(SweepPoint {
            num_anchors: c,
            anchor_hash: set.hash(),
            diagnostics,
            score,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use candle_core::Device;

    #[test]
    fn duplicate_anchors_are_described_for_humans() {
        let msg = |r: Result<AnchorSet>| r.err().map(|e| e.to_string()).unwrap_or_default();
        let m = msg(AnchorSet::from_rows(&[4, 1, 4]));
        assert!(
            m.contains("duplicate anchor: row 4 is used by samples 0 and 2"),
            "{m}"
        );
        let m = msg(AnchorSet::from_texts(&["a cat", "a dog", "a cat"]));
        assert!(
            m.contains("sample 2 is a duplicate of sample 0 (text \"a cat\")"),
            "{m}"
        );
        for m in [
            msg(AnchorSet::from_rows(&[1, 1])),
            msg(AnchorSet::from_texts(&["x", "x"])),
        ] {
            assert!(!m.contains("AnchorSample") && !m.contains("Some("), "{m}");
        }
    }

    fn labels(n: usize, classes: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{}", i % classes)).collect()
    }

    #[test]
    fn anchor_sets_summarise_as_html() -> anyhow::Result<()> {
        let texts: Vec<String> = (0..30).map(|i| format!("text <{i}>")).collect();
        let l = labels(30, 3);
        let pool = AnchorPool::new(30).with_texts(&texts).with_labels(&l);
        let set = AnchorSet::select(&pool, 10, &AnchorStrategy::Stratified { seed: 1 })?;
        assert_eq!(
            set.label_counts(),
            vec![("c0".into(), 4), ("c1".into(), 3), ("c2".into(), 3)]
        );
        let html = set.to_html();
        assert!(
            html.starts_with("<p><b>10 anchors</b>, sha256 <code>"),
            "{html}"
        );
        assert!(html.contains("per label: c0 4, c1 3, c2 3"), "{html}");
        assert!(html.contains("text &lt;"), "texts are escaped: {html}");
        assert!(html.ends_with("<p>… and 2 more</p>"), "{html}");
        assert!(AnchorSet::from_rows(&[1, 2])?.label_counts().is_empty());
        Ok(())
    }

    #[test]
    fn diagnostics_are_a_table_row() -> anyhow::Result<()> {
        use crate::report::display::Table;
        let a = Tensor::new(&[[1f32, 0.], [0., 2.], [1., 1.]], &Device::Cpu)?;
        let t = Table::new("strategy").with_row("toy", diagnose(&a)?);
        assert!(t.to_html().contains("<th>condition number</th>"));
        assert!(t
            .to_html()
            .contains("<td>toy</td><td>3</td><td>2</td><td>2</td>"));
        Ok(())
    }

    #[test]
    fn hash_is_canonical_and_jsonl_round_trips() -> anyhow::Result<()> {
        let set = AnchorSet::try_new(vec![
            AnchorSample::from_text("a \"quoted\" text").with_label("x"),
            AnchorSample::from_row(3),
        ])?;
        assert_eq!(
            set.canonical_json(),
            r#"[{"text":"a \"quoted\" text","row":null,"label":"x"},{"text":null,"row":3,"label":null}]"#
        );
        assert_eq!(set.hash().len(), 64);
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("anchors.jsonl");
        set.save_jsonl(&p)?;
        let back = AnchorSet::load_jsonl(&p)?;
        assert_eq!(back, set);
        assert_eq!(back.hash(), set.hash());
        // Order matters.
        let swapped = AnchorSet::try_new(set.samples().iter().rev().cloned().collect())?;
        assert_ne!(swapped.hash(), set.hash());
        std::fs::write(&p, "{\"row\": 1}\n{\"row\": 1}\n")?;
        assert!(AnchorSet::load_jsonl(&p).is_err());
        std::fs::write(&p, "{\"row\": 1}\nnope\n")?;
        assert!(matches!(
            AnchorSet::load_jsonl(&p),
            Err(Error::Input { line: Some(2), .. })
        ));
        Ok(())
    }

    #[test]
    fn uniform_is_seeded_and_nested() -> anyhow::Result<()> {
        let pool = AnchorPool::new(50);
        let a = AnchorStrategy::Uniform { seed: 1 }.select_rows(&pool, 10)?;
        let b = AnchorStrategy::Uniform { seed: 1 }.select_rows(&pool, 20)?;
        let c = AnchorStrategy::Uniform { seed: 2 }.select_rows(&pool, 10)?;
        assert_eq!(a, b[..10]);
        assert_ne!(a, c);
        assert!(AnchorStrategy::Uniform { seed: 1 }
            .select_rows(&pool, 51)
            .is_err());
        Ok(())
    }

    #[test]
    fn stratified_round_robin() -> anyhow::Result<()> {
        let l = labels(30, 3);
        let pool = AnchorPool::new(30).with_labels(&l);
        let rows = AnchorStrategy::Stratified { seed: 0 }.select_rows(&pool, 7)?;
        let classes: Vec<&str> = rows.iter().map(|&r| l[r].as_str()).collect();
        assert_eq!(classes, ["c0", "c1", "c2", "c0", "c1", "c2", "c0"]);
        // Unbalanced: a class that runs out is skipped.
        let l2: Vec<String> = (0..10)
            .map(|i| if i < 2 { "rare" } else { "common" }.to_string())
            .collect();
        let pool = AnchorPool::new(10).with_labels(&l2);
        let rows = AnchorStrategy::Stratified { seed: 0 }.select_rows(&pool, 6)?;
        assert_eq!(rows.iter().filter(|&&r| r < 2).count(), 2);
        assert!(AnchorStrategy::Stratified { seed: 0 }
            .select_rows(&AnchorPool::new(10), 3)
            .is_err());
        Ok(())
    }

    #[test]
    fn repeated_texts_never_become_two_anchors() -> anyhow::Result<()> {
        // Ten samples, but only four distinct texts (like repeated Bible verses).
        let texts: Vec<String> = (0..10).map(|i| format!("verse {}", i % 4)).collect();
        let l = labels(10, 2);
        let pool = AnchorPool::new(10).with_labels(&l).with_texts(&texts);
        for strategy in [
            AnchorStrategy::Uniform { seed: 3 },
            AnchorStrategy::Stratified { seed: 3 },
        ] {
            let rows = strategy.select_rows(&pool, 4)?;
            let mut chosen: Vec<&str> = rows.iter().map(|&r| texts[r].as_str()).collect();
            chosen.sort_unstable();
            chosen.dedup();
            assert_eq!(chosen.len(), 4, "{strategy:?} chose {rows:?}");
            let five = strategy.select_rows(&pool, 5);
            assert!(
                five.as_ref()
                    .is_err_and(|e| e.to_string().contains("only 4 distinct texts")),
                "{five:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn farthest_point_and_kmeans_spread() -> anyhow::Result<()> {
        // Four tight clusters: both strategies must put one anchor in each.
        let mut v = Vec::new();
        let centers = [[0f32, 0.], [10., 0.], [0., 10.], [10., 10.]];
        for i in 0..40 {
            let c = centers[i % 4];
            let jitter = (i / 4) as f32 * 0.01;
            v.extend_from_slice(&[c[0] + jitter, c[1] - jitter]);
        }
        let x = Tensor::from_vec(v, (40, 2), &Device::Cpu)?;
        let pool = AnchorPool::from_space(&x);
        for s in [
            AnchorStrategy::FarthestPoint { seed: 3 },
            AnchorStrategy::KMeans {
                seed: 3,
                iterations: 5,
            },
        ] {
            let rows = s.select_rows(&pool, 4)?;
            let mut clusters: Vec<usize> = rows.iter().map(|r| r % 4).collect();
            clusters.sort();
            assert_eq!(clusters, [0, 1, 2, 3], "{s:?}");
        }
        // Fewer distinct points than anchors.
        let dup = Tensor::ones((5, 3), DType::F32, &Device::Cpu)?;
        let pool = AnchorPool::from_space(&dup);
        assert!(AnchorStrategy::FarthestPoint { seed: 0 }
            .select_rows(&pool, 2)
            .is_err());
        assert!(AnchorStrategy::KMeans {
            seed: 0,
            iterations: 2
        }
        .select_rows(&pool, 2)
        .is_err());
        Ok(())
    }

    #[test]
    fn diagnostics_rank_and_condition() -> anyhow::Result<()> {
        let a = Tensor::new(&[[3f32, 0., 0.], [0., 1., 0.]], &Device::Cpu)?;
        let d = diagnose(&a)?;
        assert_eq!(d.rank, 2);
        assert!((d.condition_number - 3.0).abs() < 1e-9);
        assert!((d.singular_values[0] - 3.0).abs() < 1e-9);
        assert!(d.max_pairwise_cosine.abs() < 1e-12);
        let b = Tensor::new(&[[1f32, 2.], [2., 4.], [0., 1.]], &Device::Cpu)?;
        let d = diagnose(&b)?;
        assert_eq!(d.rank, 2);
        let c = Tensor::new(&[[1f32, 2., 3.], [2., 4., 6.]], &Device::Cpu)?;
        let d = diagnose(&c)?;
        assert_eq!(d.rank, 1);
        assert!(d.condition_number.is_infinite());
        assert!((d.max_pairwise_cosine - 1.0).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn sweep_runs_each_count() -> anyhow::Result<()> {
        let x = Tensor::randn(0f32, 1., (30, 4), &Device::Cpu)?;
        let pool = AnchorPool::from_space(&x);
        let pts = sweep_num_anchors(
            &pool,
            &[2, 4, 8],
            &AnchorStrategy::Uniform { seed: 0 },
            |s, l| Ok(s.len() + l.dim(0).unwrap_or(0)),
        )?;
        assert_eq!(pts.iter().map(|p| p.score).collect::<Vec<_>>(), [4, 8, 16]);
        assert_eq!(pts[2].diagnostics.rank, 4);
        Ok(())
    }
}
