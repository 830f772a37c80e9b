//! How much of the new model's retrieval quality a migrated index keeps.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::map::{Direction, MigrationMap};
use crate::encoder::cache::EmbeddingCache;
use crate::encoder::{Encoder, EncoderOptions};
use crate::error::CandleContext;
use crate::{Error, Result};

/// Retrieval scores of queries that each have one relevant document.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetrievalScores {
    /// Share of queries whose document ranks first.
    pub recall_at_1: f64,
    /// Share of queries whose document is among the first `k`.
    pub recall_at_k: f64,
    /// Mean reciprocal rank.
    pub mrr: f64,
    /// Mean nDCG@k (one relevant document: `1 / log2(rank + 1)` within the first `k`, else 0).
    pub ndcg_at_k: f64,
}

impl RetrievalScores {
    /// The scores of 1-based `ranks` at cut-off `k`.
    pub fn from_ranks(ranks: &[usize], k: usize) -> Self {
        let n = ranks.len().max(1) as f64;
        let mean = |f: &dyn Fn(usize) -> f64| ranks.iter().map(|&r| f(r)).sum::<f64>() / n;
        Self {
            recall_at_1: mean(&|r| f64::from(u8::from(r == 1))),
            recall_at_k: mean(&|r| f64::from(u8::from(r <= k))),
            mrr: mean(&|r| 1.0 / r as f64),
            ndcg_at_k: mean(&|r| {
                if r <= k {
                    1.0 / ((r + 1) as f64).log2()
                } else {
                    0.0
                }
            }),
        }
    }
}

/// Whether the per-vector confidence finds the vectors worth re-embedding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceCheck {
    /// Spearman correlation, over the documents, between the confidence of a migrated vector and
    /// its cosine with the document's true B vector.
    pub spearman_with_true_cosine: f64,
    /// The share of documents re-embedded in the two comparisons below.
    pub fraction: f64,
    /// Migrated recall@k after re-embedding the least confident `fraction` of documents with B.
    pub recall_at_k_reembed_worst: f64,
    /// The same after re-embedding a random `fraction` (seeded).
    pub recall_at_k_reembed_random: f64,
}

/// What `relstitch migrate eval` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationEval {
    /// Documents evaluated (anchors excluded).
    pub n_docs: usize,
    /// Queries evaluated (those whose document is not an anchor).
    pub n_queries: usize,
    /// The map's anchors.
    pub n_anchors: usize,
    /// The map's method.
    pub method: String,
    /// The cut-off.
    pub k: usize,
    /// B-queries against the documents re-embedded with B (the cost we avoid).
    pub reembedded: Option<RetrievalScores>,
    /// B-queries against the documents migrated from A.
    pub migrated: Option<RetrievalScores>,
    /// B-queries brought back to A's space against the old A index (`None` without an inverse).
    pub inverse: Option<RetrievalScores>,
    /// Mean Jaccard index between each migrated document's `k` nearest migrated documents and its
    /// `k` nearest documents re-embedded with B.
    pub neighbour_jaccard_at_k: f64,
    /// Mean share of those true B neighbours found among the migrated neighbours.
    pub neighbour_recall_at_k: f64,
    /// `migrated.recall_at_k / reembedded.recall_at_k`.
    pub retained: Option<f64>,
    /// `inverse.recall_at_k / reembedded.recall_at_k`.
    pub retained_inverse: Option<f64>,
    /// Whether the confidence ranks the documents worth re-embedding (not for `relative`).
    pub confidence: Option<ConfidenceCheck>,
}

impl std::fmt::Display for MigrationEval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "migration {} on {} documents ({} queries), {} anchors, k = {}",
            self.method, self.n_docs, self.n_queries, self.n_anchors, self.k
        )?;
        writeln!(
            f,
            "  neighbourhoods: Jaccard@{k} {:.3}, recall@{k} {:.3}",
            self.neighbour_jaccard_at_k,
            self.neighbour_recall_at_k,
            k = self.k
        )?;
        for (name, s) in [
            ("re-embedded with B", &self.reembedded),
            ("migrated A index", &self.migrated),
            ("inverse (B-queries → A)", &self.inverse),
        ] {
            match s {
                Some(s) => writeln!(
                    f,
                    "  {name:<24} recall@1 {:.3}  recall@{} {:.3}  MRR {:.3}  nDCG@{} {:.3}",
                    s.recall_at_1, self.k, s.recall_at_k, s.mrr, self.k, s.ndcg_at_k
                )?,
                None => writeln!(f, "  {name:<24} n/a")?,
            }
        }
        if let Some(r) = self.retained {
            writeln!(f, "  retained recall@{}: {:.1} %", self.k, 100.0 * r)?;
        }
        if let Some(c) = &self.confidence {
            writeln!(
                f,
                "  confidence: Spearman {:.3} with the true cosine; re-embedding the worst {:.0} % gives recall@{} {:.3} (a random {:.0} %: {:.3})",
                c.spearman_with_true_cosine,
                100.0 * c.fraction,
                self.k,
                c.recall_at_k_reembed_worst,
                100.0 * c.fraction,
                c.recall_at_k_reembed_random
            )?;
        }
        Ok(())
    }
}

/// Options of [`MigrationMap::evaluate`].
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The cut-off of recall@k, nDCG@k and the neighbourhoods.
    pub k: usize,
    /// How to run the two encoders (device, batch size, progress).
    pub encoder: EncoderOptions,
    /// The share of documents re-embedded in the confidence check.
    pub reembed_fraction: f64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            k: 10,
            encoder: EncoderOptions::default(),
            reembed_fraction: 0.1,
        }
    }
}

/// One line of an evaluation file: a document and, optionally, a query it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalRow {
    /// The document.
    pub text: String,
    /// A query whose relevant document is `text`.
    pub query: Option<String>,
}

/// Reads a `.jsonl` file whose lines carry `text` (a document) and optionally `query`.
///
/// # Errors
/// [`Error::Input`] naming the file and line for invalid JSON, a missing or non-string `text`, a
/// non-string `query`, or a file without documents.
pub fn read_eval_data(path: &Path) -> Result<Vec<EvalRow>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| Error::Input {
            path: path.to_path_buf(),
            line: Some(i + 1),
            reason,
        };
        let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| {
            bad(format!(
                "not valid JSON ({e}); each line is {{\"text\": …, \"query\": …}}"
            ))
        })?;
        let text = match v.get("text") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => return Err(bad("no string field `text` (the document)".into())),
        };
        let query = match v.get("query") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("field `query` is not a string".into())),
        };
        rows.push(EvalRow { text, query });
    }
    if rows.is_empty() {
        return Err(Error::Input {
            path: path.to_path_buf(),
            line: None,
            reason: "holds no documents; each line is {\"text\": DOCUMENT, \"query\": QUERY}"
                .into(),
        });
    }
    Ok(rows)
}

/// The documents (distinct texts that are not anchors) and queries of `rows`, with each query's
/// document index.
pub fn split_eval_rows(
    rows: &[EvalRow],
    anchors: &HashSet<String>,
) -> (Vec<String>, Vec<String>, Vec<usize>) {
    let mut docs = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let (mut queries, mut relevant) = (Vec::new(), Vec::new());
    for r in rows {
        if anchors.contains(&r.text) {
            continue;
        }
        let d = *index.entry(r.text.as_str()).or_insert_with(|| {
            docs.push(r.text.clone());
            docs.len() - 1
        });
        if let Some(q) = &r.query {
            queries.push(q.clone());
            relevant.push(d);
        }
    }
    (docs, queries, relevant)
}

impl MigrationMap {
    /// Evaluates the map on `data` (see [`read_eval_data`]): embeds the documents that are not
    /// anchors with both models and the queries with B (through the embedding cache), then
    /// [`evaluate_embedded`](Self::evaluate_embedded).
    ///
    /// # Errors
    /// [`Error::Input`] for a bad file or fewer than `k + 1` documents left once the anchors are
    /// removed; the encoders' errors.
    pub fn evaluate(&self, data: &Path, options: &EvalOptions) -> Result<MigrationEval> {
        let rows = read_eval_data(data)?;
        let anchors: HashSet<String> = self.anchors().texts()?.into_iter().collect();
        let (docs, queries, relevant) = split_eval_rows(&rows, &anchors);
        if docs.len() <= options.k {
            return Err(Error::Input {
                path: data.to_path_buf(),
                line: None,
                reason: format!(
                    "{} documents are not anchors; at least k + 1 = {} are needed",
                    docs.len(),
                    options.k + 1
                ),
            });
        }
        let a = Encoder::from_identity(&self.config().source, &options.encoder)?;
        let b = Encoder::from_identity(&self.config().target, &options.encoder)?;
        let ea = EmbeddingCache::for_identity(a.identity())?.embed(&a, &docs)?;
        let cache_b = EmbeddingCache::for_identity(b.identity())?;
        let eb = cache_b.embed(&b, &docs)?;
        let qb = if queries.is_empty() {
            None
        } else {
            Some(cache_b.embed(&b, &queries)?)
        };
        self.evaluate_embedded(
            &ea,
            &eb,
            qb.as_ref().map(|q| (q, relevant.as_slice())),
            options,
        )
    }

    /// Evaluates the map on documents embedded by both models (`docs_a`, `docs_b`, row `i` of both
    /// the same document) and, optionally, B-queries with the index of their relevant document.
    ///
    /// # Shapes
    /// - `docs_a`: `[n, d_a]`, `docs_b`: `[n, d_b]`, queries: `[m, d_b]` with `m` document indices.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `k = 0` or not more documents than `k`, and the errors of
    /// [`MigrationMap::forward`] (widths).
    pub fn evaluate_embedded(
        &self,
        docs_a: &Tensor,
        docs_b: &Tensor,
        queries: Option<(&Tensor, &[usize])>,
        options: &EvalOptions,
    ) -> Result<MigrationEval> {
        let k = options.k;
        let n = docs_a.dim(0).context(|| "documents".into())?;
        if k == 0 || n <= k {
            return Err(Error::invalid(
                "k",
                format!("{k} with {n} documents: need 1 ≤ k < documents"),
            ));
        }
        let migrated = self.forward(docs_a)?;
        let na = crate::space::similarity::knn(&migrated, k)?;
        let nb = crate::space::similarity::knn(docs_b, k)?;
        let (mut jac, mut rec) = (0.0, 0.0);
        for (x, y) in na.iter().zip(&nb) {
            let x: HashSet<usize> = x.iter().copied().collect();
            let inter = y.iter().filter(|j| x.contains(j)).count() as f64;
            // The Jaccard index of two k-sets: |∩| / (2k − |∩|).
            jac += inter / (2.0 * k as f64 - inter);
            rec += inter / k as f64;
        }
        let mut out = MigrationEval {
            n_docs: n,
            n_queries: 0,
            n_anchors: self.config().anchors.count,
            method: self.method().to_string(),
            k,
            reembedded: None,
            migrated: None,
            inverse: None,
            neighbour_jaccard_at_k: jac / n as f64,
            neighbour_recall_at_k: rec / n as f64,
            retained: None,
            retained_inverse: None,
            confidence: None,
        };
        let Some((q, relevant)) = queries else {
            return Ok(out);
        };
        out.n_queries = relevant.len();
        let re = RetrievalScores::from_ranks(&ranks(q, docs_b, relevant)?, k);
        let tq = self.target_query(q)?;
        let mig = RetrievalScores::from_ranks(&ranks(&tq, &migrated, relevant)?, k);
        let inv = if self.method().has_inverse() {
            let back = self.map(q, Direction::Inverse)?;
            let base = match self.method() {
                super::MigrationMethod::Relative { .. } => migrated.clone(),
                _ => docs_a.clone(),
            };
            Some(RetrievalScores::from_ranks(
                &ranks(&back, &base, relevant)?,
                k,
            ))
        } else {
            None
        };
        out.retained = retained(&mig, &re);
        out.retained_inverse = inv.as_ref().and_then(|s| retained(s, &re));
        out.reembedded = Some(re);
        out.migrated = Some(mig);
        out.inverse = inv;
        if !matches!(self.method(), super::MigrationMethod::Relative { .. }) {
            out.confidence =
                Some(self.check_confidence(docs_a, docs_b, &migrated, q, relevant, options)?);
        }
        Ok(out)
    }

    fn check_confidence(
        &self,
        docs_a: &Tensor,
        docs_b: &Tensor,
        migrated: &Tensor,
        q: &Tensor,
        relevant: &[usize],
        options: &EvalOptions,
    ) -> Result<ConfidenceCheck> {
        let ctx = || "checking the confidence".to_string();
        let conf = self.confidence(docs_a)?;
        let truth = row_cosines(migrated, docs_b)?;
        let n = conf.len();
        let m = ((n as f64) * options.reembed_fraction).round() as usize;
        let mut worst: Vec<usize> = (0..n).collect();
        worst.sort_by(|&i, &j| conf[i].total_cmp(&conf[j]));
        worst.truncate(m);
        let mut random: Vec<usize> = (0..n).collect();
        random.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
        random.truncate(m);
        let patched = |rows: &[usize]| -> Result<f64> {
            let mut take_b = vec![0u8; n];
            rows.iter().for_each(|&r| take_b[r] = 1);
            let mask = Tensor::from_vec(take_b, (n, 1), &Device::Cpu).context(ctx)?;
            let mixed = mask
                .broadcast_as(migrated.shape())
                .and_then(|m| m.where_cond(docs_b, migrated))
                .context(ctx)?;
            Ok(RetrievalScores::from_ranks(&ranks(q, &mixed, relevant)?, options.k).recall_at_k)
        };
        Ok(ConfidenceCheck {
            spearman_with_true_cosine: spearman(&conf, &truth),
            fraction: options.reembed_fraction,
            recall_at_k_reembed_worst: patched(&worst)?,
            recall_at_k_reembed_random: patched(&random)?,
        })
    }
}

/// `s.recall_at_k / reference.recall_at_k`, when the reference finds anything.
fn retained(s: &RetrievalScores, reference: &RetrievalScores) -> Option<f64> {
    (reference.recall_at_k > 0.0).then(|| s.recall_at_k / reference.recall_at_k)
}

/// Unit rows of `x` as f32 on the CPU.
fn unit(x: &Tensor) -> Result<Tensor> {
    let x = crate::space::tensor::as_f32_matrix(x, "vectors")?;
    let ctx = || "normalising".to_string();
    let norm = x
        .sqr()
        .and_then(|s| s.sum_keepdim(1))
        .and_then(|s| s.sqrt())
        .and_then(|s| s.clamp(1e-12f32, f32::MAX))
        .context(ctx)?;
    x.broadcast_div(&norm)
        .and_then(|x| x.to_device(&Device::Cpu))
        .context(ctx)
}

/// Cosine of row `i` of `a` with row `i` of `b`.
pub(crate) fn row_cosines(a: &Tensor, b: &Tensor) -> Result<Vec<f32>> {
    let (ua, ub) = (unit(a)?, unit(b)?);
    (&ua * &ub)
        .and_then(|p| p.sum(1))
        .and_then(|s| s.to_vec1::<f32>())
        .context(|| "row cosines".into())
}

/// Runs `f(start, rows)` on the cosine similarities of `q`'s rows (chunks of 512) with all of
/// `d`'s.
fn for_each_chunk(
    q: &Tensor,
    d: &Tensor,
    mut f: impl FnMut(usize, Vec<Vec<f32>>) -> Result<()>,
) -> Result<()> {
    let (uq, ud) = (unit(q)?, unit(d)?);
    let m = uq.dim(0).context(|| "queries".into())?;
    let udt = ud.t().context(|| "documents".into())?;
    let mut start = 0;
    while start < m {
        let len = 512.min(m - start);
        let s = uq
            .narrow(0, start, len)
            .and_then(|c| c.matmul(&udt))
            .and_then(|s| s.to_vec2::<f32>())
            .context(|| "similarities".into())?;
        f(start, s)?;
        start += len;
    }
    Ok(())
}

/// The 1-based rank of document `relevant[i]` for query `i`: 1 + the other documents at least as
/// similar (ties count against the query, so a degenerate query that scores every document alike
/// ranks last, not first).
///
/// # Shapes
/// - `q`: `[m, d]`, `docs`: `[n, d]`, `relevant`: `m` indices below `n`.
///
/// # Errors
/// [`Error::Candle`] when the shapes do not fit.
pub fn ranks(q: &Tensor, docs: &Tensor, relevant: &[usize]) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(relevant.len());
    for_each_chunk(q, docs, |start, rows| {
        for (r, sims) in rows.iter().enumerate() {
            let rel = relevant[start + r];
            let own = sims[rel];
            let ahead = sims
                .iter()
                .enumerate()
                .filter(|&(j, &s)| j != rel && s >= own)
                .count();
            out.push(1 + ahead);
        }
        Ok(())
    })?;
    Ok(out)
}

/// The indices of the `k` largest values, largest first.
fn top_k(sims: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..sims.len()).collect();
    let k = k.min(idx.len());
    if k < idx.len() {
        idx.select_nth_unstable_by(k, |&a, &b| sims[b].total_cmp(&sims[a]).then(a.cmp(&b)));
        idx.truncate(k);
    }
    idx.sort_by(|&a, &b| sims[b].total_cmp(&sims[a]).then(a.cmp(&b)));
    idx
}

/// For parallel held-out samples: the mean share of each B-query's `k` nearest samples in B
/// (`truth`, self included) that it also finds among its `k` nearest migrated samples, and the
/// share of queries whose own migrated sample is the nearest.
///
/// # Shapes
/// - `queries`: `[m, d']`, `migrated`: `[m, d']`, `truth`: `[m, d_b]`.
pub(crate) fn neighbour_recall(
    queries: &Tensor,
    migrated: &Tensor,
    truth: &Tensor,
    k: usize,
) -> Result<(f64, f64)> {
    let mut found = Vec::new();
    for_each_chunk(queries, migrated, |_, rows| {
        found.extend(rows.iter().map(|s| top_k(s, k)));
        Ok(())
    })?;
    let mut wanted = Vec::new();
    for_each_chunk(truth, truth, |_, rows| {
        wanted.extend(rows.iter().map(|s| top_k(s, k)));
        Ok(())
    })?;
    let m = found.len().max(1) as f64;
    let recall = found
        .iter()
        .zip(&wanted)
        .map(|(f, w)| w.iter().filter(|j| f.contains(j)).count() as f64 / k as f64)
        .sum::<f64>()
        / m;
    let top1 = found
        .iter()
        .enumerate()
        .filter(|(i, f)| f.first() == Some(i))
        .count() as f64
        / m;
    Ok((recall, top1))
}

/// Spearman rank correlation (average ranks for ties).
fn spearman(a: &[f32], b: &[f32]) -> f64 {
    fn rank(v: &[f32]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            let avg = (i + j) as f64 / 2.0;
            for &t in &idx[i..=j] {
                r[t] = avg;
            }
            i = j + 1;
        }
        r
    }
    let (ra, rb) = (rank(a), rank(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    if va > 0.0 && vb > 0.0 {
        cov / (va * vb).sqrt()
    } else {
        0.0
    }
}
