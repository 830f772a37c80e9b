//! Choosing the anchor budget: which texts to re-embed, and what a budget is predicted to keep.

use serde::{Deserialize, Serialize};

use super::map::MigrationMap;
use super::method::{MigrationMethod, MigrationOptions};
use crate::encoder::cache::EmbeddingCache;
use crate::encoder::Encoder;
use crate::space::anchors::{AnchorPool, AnchorSet, AnchorStrategy};
use crate::{Error, Result, Tensor};

/// How many texts to re-embed as anchors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Budget {
    /// This many texts.
    Count(usize),
    /// This share of the corpus, in `(0, 1]`.
    Share(f64),
}

impl Budget {
    /// `N` or `P%`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for anything else.
    pub fn parse(s: &str) -> Result<Self> {
        if s.trim().ends_with('%') {
            return Ok(Self::Share(super::parse_share(s)?));
        }
        s.trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .map(Self::Count)
            .ok_or_else(|| {
                Error::invalid(
                    "budget",
                    format!("`{s}`: give a number of texts (1000) or a share of the corpus (5%)"),
                )
            })
    }

    /// The number of texts for a corpus of `n`.
    pub fn count(&self, n: usize) -> usize {
        match *self {
            Self::Count(c) => c.min(n),
            Self::Share(p) => ((n as f64) * p).round().max(1.0) as usize,
        }
    }
}

/// Options of [`plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOptions {
    /// The budget.
    pub budget: Budget,
    /// How the anchors are picked in the old model's space (coverage: k-means, farthest point).
    pub strategy: AnchorStrategy,
    /// The method whose retained recall is predicted.
    pub method: MigrationMethod,
    /// Share of the picked anchors held out to predict from.
    pub holdout: f64,
    /// Neighbourhood size of the prediction.
    pub k: usize,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            budget: Budget::Count(1024),
            strategy: AnchorStrategy::KMeans {
                seed: 0,
                iterations: 10,
            },
            method: MigrationMethod::Procrustes,
            holdout: 0.2,
            k: 10,
        }
    }
}

/// One point of the learning curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Anchors the map was fitted on.
    pub anchors: usize,
    /// Predicted retained recall@k: on the held-out anchors, the share of each B-query's true B
    /// neighbours found among the migrated ones.
    pub predicted_retained: f64,
    /// Share of held-out B-queries whose own migrated anchor is the nearest.
    pub top1: f64,
}

/// What [`plan`] chose and predicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationPlan {
    /// Texts in the corpus.
    pub corpus: usize,
    /// Texts picked to re-embed (the budget).
    pub budget: usize,
    /// How they were picked.
    pub strategy: AnchorStrategy,
    /// The method of the prediction.
    pub method: MigrationMethod,
    /// The picked texts' rows in the corpus, in anchor order.
    pub rows: Vec<usize>,
    /// The picked texts.
    pub texts: Vec<String>,
    /// Anchors held out for the prediction.
    pub held_out: usize,
    /// Predicted retained recall against the anchor count.
    pub curve: Vec<CurvePoint>,
}

impl std::fmt::Display for MigrationPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} of {} texts picked ({:?}); {} held out to predict what {} keeps:",
            self.budget, self.corpus, self.strategy, self.held_out, self.method
        )?;
        writeln!(f, "  anchors  predicted retained  top-1")?;
        for p in &self.curve {
            writeln!(
                f,
                "  {:>7}  {:>18.3}  {:>5.3}",
                p.anchors, p.predicted_retained, p.top1
            )?;
        }
        Ok(())
    }
}

/// Picks the anchors to re-embed from a corpus and predicts, by fitting on growing prefixes of
/// them and testing on a held-out share, how much retrieval the migrated index keeps against the
/// anchor count.
///
/// `corpus_a` is the corpus already embedded by the old model (the index itself); when `None` it
/// is embedded through the cache. Only the picked texts are embedded by the new model.
///
/// # Errors
/// [`Error::InvalidArgument`] for a budget too small to fit and hold out anything; the errors of
/// the strategy and the encoders.
///
/// # Shapes
/// - `corpus_a`: `[texts.len(), d_a]`.
pub fn plan(
    source: &Encoder,
    target: &Encoder,
    texts: &[String],
    corpus_a: Option<&Tensor>,
    options: &PlanOptions,
) -> Result<MigrationPlan> {
    let n = texts.len();
    let budget = options.budget.count(n);
    let held_out = ((budget as f64) * options.holdout).round() as usize;
    let min = options.method.min_anchors(source.dim());
    if held_out <= options.k || budget - held_out < min {
        return Err(Error::invalid(
            "budget",
            format!(
                "{budget} texts: {held_out} held out must exceed k = {} and the other {} reach the {} anchors {} needs; raise the budget",
                options.k,
                budget.saturating_sub(held_out),
                min,
                options.method.name()
            ),
        ));
    }
    let embedded;
    let space = match corpus_a {
        Some(x) => x,
        None => {
            embedded = EmbeddingCache::for_identity(source.identity())?.embed(source, texts)?;
            &embedded
        }
    };
    let pool = AnchorPool::from_space(space).with_texts(texts);
    let rows = options.strategy.select_rows(&pool, budget)?;
    let picked: Vec<String> = rows.iter().map(|&r| texts[r].clone()).collect();
    let xa = crate::space::anchors::gather_rows(space, &rows, "corpus")?;
    let xb = EmbeddingCache::for_identity(target.identity())?.embed(target, &picked)?;
    // Hold out every 1/holdout-th anchor (spread over the coverage order), fit on prefixes of the rest.
    let step = (budget as f64 / held_out as f64).max(1.0);
    let test: Vec<usize> = (0..held_out)
        .map(|i| ((i as f64 * step) as usize).min(budget - 1))
        .collect();
    let train: Vec<usize> = (0..budget).filter(|i| !test.contains(i)).collect();
    let take = |t: &Tensor, r: &[usize]| crate::space::anchors::gather_rows(t, r, "anchors");
    let (ta, tb) = (take(&xa, &test)?, take(&xb, &test)?);
    let mut counts: Vec<usize> = std::iter::successors(Some(64usize), |c| Some(c * 2))
        .take_while(|&c| c < train.len())
        .filter(|&c| c >= min)
        .collect();
    counts.push(train.len());
    let fit_options = MigrationOptions::default()
        .with_method(options.method)
        .with_cv_folds(0);
    let mut curve = Vec::new();
    for m in counts {
        let rows_m = &train[..m];
        let set = AnchorSet::from_texts(
            &rows_m
                .iter()
                .map(|&i| picked[i].clone())
                .collect::<Vec<_>>(),
        )?;
        let map = MigrationMap::fit_embedded(
            source.identity().clone(),
            target.identity().clone(),
            set,
            &take(&xa, rows_m)?,
            &take(&xb, rows_m)?,
            &fit_options,
        )?;
        let (recall, top1) = super::eval::neighbour_recall(
            &map.target_query(&tb)?,
            &map.forward(&ta)?,
            &tb,
            options.k,
        )?;
        curve.push(CurvePoint {
            anchors: m,
            predicted_retained: recall,
            top1,
        });
    }
    Ok(MigrationPlan {
        corpus: n,
        budget,
        strategy: options.strategy,
        method: options.method,
        rows,
        texts: picked,
        held_out,
        curve,
    })
}
