//! How well will a stitch hold? A label-free estimate from the decoder's texts alone.
//!
//! Both encoders embed the decoder's anchor texts, and, for a stitch through a latent translation,
//! its alignment texts (training texts beyond the anchors that `relstitch fit` keeps without their
//! labels; the translation is fitted on the same texts). Two things are measured, without any
//! label:
//!
//! - the **agreement**: the decoder's head labels every text twice, from the input its own
//!   encoder gives (what it was trained on) and from the input the stitch will give it, and the
//!   agreement is the fraction of texts labelled the same both ways;
//! - the **separability** of each encoder ([`Separability`]): with the labels the head gives the
//!   texts, how well a nearest-neighbour vote among them recovers those labels in that encoder's
//!   own space, i.e. how much of what the decoder distinguishes the space carries.
//!
//! The **predicted retained score** (the stitch's score over the decoder's own) is the ratio of
//! the two separabilities for a stitch through a latent translation (its input arrives intact, so
//! it keeps about what the new encoder knows), and the agreement times that ratio for a zero-shot
//! stitch (whose input can also be garbled, as anisotropic encoders do). The verdict and the
//! advice follow from it.
//!
//! Each anchor is also a column of the relative vectors, where it meets itself (cosine 1 after any
//! pre-transform); a fresh text has no such spike, so that entry is replaced by the mean of the
//! anchor's other entries in both views before the head sees them. For a stitch through a latent
//! translation, the texts are translated by maps fitted on the other texts (five folds), so that
//! no text is scored by a map fitted on it.
//!
//! Measured against the retained weighted F1 of every ordered pair of catalog encoders on four
//! datasets in `docs/RESULTS.md` (`stitch_robust`, where the number of neighbours was chosen):
//! mean absolute error 0.03, Spearman ρ 0.82–0.94 across each dataset's 20 pairs (0.77 pooled
//! over the 80). Other separabilities (whitened, nearest class mean, ridge, in the relative space)
//! ranked the pairs worse; they are recorded in `docs/results/compatibility_attempts.md`.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::CandleContext;
use crate::space::projection::RelativeProjector;
use crate::space::translation::{LatentTranslator, TranslationMethod};
use crate::task::checkpoint::Space;
use crate::task::decoder::Head;
use crate::{Error, Result};

/// Below this predicted retained score a stitch is predicted to be poor (warned about, with
/// advice).
pub const POOR_BELOW: f64 = 0.8;
/// Below this predicted retained score (and at or above [`POOR_BELOW`]) a stitch is predicted to
/// be fair.
pub const FAIR_BELOW: f64 = 0.9;

/// Neighbours of each text in [`Separability`] (chosen on three datasets in `docs/RESULTS.md`,
/// `stitch_robust`: fewer neighbours predicted better, from 50 down to 3).
pub const NEIGHBOURS: usize = 3;

/// What the predicted retained score says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// At least [`FAIR_BELOW`]: the stitch is expected to keep about the decoder's score.
    Good,
    /// In `[POOR_BELOW, FAIR_BELOW)`: some loss expected.
    Fair,
    /// Below [`POOR_BELOW`]: a large loss expected.
    Poor,
}

impl Verdict {
    /// The verdict of a predicted retained score.
    pub fn of(predicted_retained: f64) -> Self {
        if predicted_retained >= FAIR_BELOW {
            Self::Good
        } else if predicted_retained >= POOR_BELOW {
            Self::Fair
        } else {
            Self::Poor
        }
    }

    /// `good`, `fair` or `poor`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Fair => "fair",
            Self::Poor => "poor",
        }
    }
}

/// The label-free compatibility of a stitch, estimated on the decoder's anchors (and its
/// alignment texts, for a stitch through a translation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compatibility {
    /// The stitch's score over the decoder's own score, predicted without labels (what the
    /// verdict is made of): for a stitch through a latent translation, the [`Separability`]
    /// ratio; zero-shot, the agreement times that ratio; without a separability, the agreement.
    #[serde(default)]
    pub predicted_retained: f64,
    /// How well each encoder's anchors carry the decoder's labels, when both encoders' latents
    /// were given.
    #[serde(default)]
    pub separability: Option<Separability>,
    /// Fraction of the anchors to which the decoder's head gives the same label from the new
    /// encoder's input as from its own encoder's input.
    pub agreement: f64,
    /// One minus the mean total-variation distance between the two predicted distributions
    /// (1: identical probabilities on every anchor).
    pub soft_agreement: f64,
    /// How many texts were compared: the decoder's anchors, and its alignment texts for a stitch
    /// through a latent translation fitted on them.
    pub anchors: usize,
    /// What the agreement predicts.
    pub verdict: Verdict,
    /// What to do instead, when the stitch is predicted to be fair or poor.
    #[serde(default)]
    pub advice: Option<String>,
    /// Another way to stitch the same checkpoints, estimated the same way, when this one is not
    /// predicted to be good.
    #[serde(default)]
    pub alternative: Option<Alternative>,
}

/// Another way to stitch, with its estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    /// What it is and how to ask for it.
    pub method: String,
    /// Its estimated agreement (same head, same anchors).
    pub agreement: f64,
    /// Its predicted retained score.
    #[serde(default)]
    pub predicted_retained: f64,
}

/// How well two encoders' spaces carry what the decoder reads, without labels.
///
/// The decoder's head labels its texts (anchors, and alignment texts where there are some) from
/// its own encoder's view (the labels it would give; no true label is used). In each encoder's
/// absolute space, centred on the texts and compared by cosine, every text's label is then guessed
/// by a similarity-weighted vote of its [`NEIGHBOURS`] nearest other texts. The separability is the share guessed right: near 1 when
/// neighbourhoods are as the decoder sees them, near chance when they are unrelated to it.
///
/// A stitch feeds the decoder what the new encoder knows; when the stitch is faithful, what it
/// keeps is about how much of the decoder's distinctions the new encoder's space carries against
/// its own encoder's, [`Separability::ratio`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Separability {
    /// In the new encoder's space.
    pub new_encoder: f64,
    /// In the decoder's own encoder's space.
    pub own_encoder: f64,
}

impl Separability {
    /// `new_encoder / own_encoder`.
    pub fn ratio(&self) -> f64 {
        self.new_encoder / self.own_encoder.max(1e-12)
    }

    /// Measures both spaces.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the latents do not have one row per anchor or there are
    /// fewer than [`NEIGHBOURS`] + 1 anchors; a candle error when the head cannot read `own_view`.
    ///
    /// # Shapes
    /// - `own_view`: `[k, head input]`, the decoder's input for its anchors from its own encoder
    ///   (self-similarities masked for relative views).
    /// - `own_latents`: `[k, d_own]`, `new_latents`: `[k, d_new]`, same anchor order.
    pub fn measure(
        head: &Head,
        own_view: &Tensor,
        own_latents: &Tensor,
        new_latents: &Tensor,
    ) -> Result<Self> {
        let labels: Vec<usize> = head
            .probabilities(own_view)
            .and_then(|p| p.to_device(&Device::Cpu))
            .and_then(|p| p.to_vec2::<f32>())
            .context(|| "running the head on the anchors".into())?
            .iter()
            .map(|r| argmax(r))
            .collect();
        Ok(Self {
            new_encoder: neighbour_score(new_latents, &labels)?,
            own_encoder: neighbour_score(own_latents, &labels)?,
        })
    }
}

/// The index of the largest value (the first of equals).
fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(0, |b, (i, v)| if *v > row[b] { i } else { b })
}

/// Most rows [`neighbour_score`] compares all with all (a `[n, n]` similarity matrix).
const MAX_VOTERS: usize = 8192;

/// Leave-one-out accuracy of a similarity-weighted vote of each row's [`NEIGHBOURS`] nearest other
/// rows (centred cosine) for `labels`.
fn neighbour_score(latents: &Tensor, labels: &[usize]) -> Result<f64> {
    let neighbours = NEIGHBOURS;
    let k = labels.len();
    let rows = latents.dim(0).context(|| "the anchors' latents".into())?;
    if rows != k || k <= neighbours {
        return Err(Error::invalid(
            "compatibility",
            format!(
                "{rows} rows of latents for {k} anchors: one row per anchor, and more than \
                 {neighbours} anchors, are needed"
            ),
        ));
    }
    if k > MAX_VOTERS {
        // The vote compares every row with every other: beyond MAX_VOTERS rows, an even
        // subsample (the same rows for both encoders) keeps memory and time bounded.
        let keep: Vec<u32> = crate::space::tensor::evenly_spaced(k, MAX_VOTERS)
            .into_iter()
            .map(|i| i as u32)
            .collect();
        let sub_labels: Vec<usize> = keep.iter().map(|&i| labels[i as usize]).collect();
        let sub = Tensor::from_vec(keep, MAX_VOTERS, latents.device())
            .and_then(|i| latents.index_select(&i, 0))
            .context(|| "subsampling the texts".into())?;
        return neighbour_score(&sub, &sub_labels);
    }
    // Centred cosine similarities. (Not through a `RelativeProjector`, which refuses identical
    // rows: texts the decoder's encoder tells apart can be one point for the new encoder, e.g.
    // two long documents with the same first tokens past its shorter maximum length.)
    let sims = latents
        .to_dtype(candle_core::DType::F32)
        .and_then(|x| x.broadcast_sub(&x.mean_keepdim(0)?))
        .and_then(|c| {
            let norms = c.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12f32, f32::MAX)?;
            let u = c.broadcast_div(&norms)?;
            u.matmul(&u.t()?)
        })
        .and_then(|s| s.to_device(&Device::Cpu))
        .and_then(|s| s.to_vec2::<f32>())
        .context(|| "comparing the anchors".into())?;
    let classes = labels.iter().max().map_or(0, |c| c + 1);
    let mut right = 0usize;
    let mut votes = vec![0f64; classes];
    for (i, row) in sims.iter().enumerate() {
        let mut others: Vec<(f32, usize)> = row
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, s)| (*s, j))
            .collect();
        others.select_nth_unstable_by(neighbours - 1, |a, b| b.0.total_cmp(&a.0));
        votes.iter_mut().for_each(|v| *v = 0.0);
        for &(s, j) in &others[..neighbours] {
            votes[labels[j]] += f64::from(s.max(0.0)) + 1e-9;
        }
        let best = votes
            .iter()
            .enumerate()
            .fold(0, |b, (c, v)| if *v > votes[b] { c } else { b });
        right += usize::from(best == labels[i]);
    }
    Ok(right as f64 / k as f64)
}

impl Compatibility {
    /// Compares the head's predictions on the two views of the same anchors.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the two views differ in shape or hold no anchor; a candle
    /// error when the head cannot read them (wrong width).
    ///
    /// # Shapes
    /// - `own`, `other`: `[anchors, head input]`, row `i` of both is anchor `i`.
    pub fn from_views(head: &Head, own: &Tensor, other: &Tensor) -> Result<Self> {
        let (n, w) = own.dims2().context(|| "the anchors' own view".into())?;
        let (m, v) = other.dims2().context(|| "the anchors' other view".into())?;
        if (n, w) != (m, v) || n == 0 {
            return Err(Error::invalid(
                "compatibility",
                format!("the two views of the anchors differ in shape ({n}×{w} vs {m}×{v})"),
            ));
        }
        let probs = |x: &Tensor| -> Result<Vec<Vec<f32>>> {
            head.probabilities(x)
                .and_then(|p| p.to_device(&Device::Cpu))
                .and_then(|p| p.to_vec2::<f32>())
                .context(|| "running the head on the anchors".into())
        };
        let (p, q) = (probs(own)?, probs(other)?);
        let same = p
            .iter()
            .zip(&q)
            .filter(|(a, b)| argmax(a) == argmax(b))
            .count();
        let overlap: f64 = p
            .iter()
            .zip(&q)
            .map(|(a, b)| {
                a.iter()
                    .zip(b.iter())
                    .map(|(x, y)| f64::from(x.min(*y)))
                    .sum::<f64>()
            })
            .sum();
        let agreement = same as f64 / n as f64;
        Ok(Self {
            predicted_retained: agreement,
            separability: None,
            agreement,
            soft_agreement: overlap / n as f64,
            anchors: n,
            verdict: Verdict::of(agreement),
            advice: None,
            alternative: None,
        })
    }

    /// The compatibility of a zero-shot relative stitch: `own` and `other` are the decoder's
    /// anchors embedded by its own encoder and by the new one, each projected by a projector
    /// fitted on its own anchors.
    ///
    /// # Errors
    /// Those of [`RelativeProjector::project`] and [`Compatibility::from_views`].
    ///
    /// # Shapes
    /// - `own_anchors`: `[k, d_own]`, `other_anchors`: `[k, d_other]`, same anchor order.
    pub fn relative(
        head: &Head,
        space: Space,
        own: (&RelativeProjector, &Tensor),
        other: (&RelativeProjector, &Tensor),
    ) -> Result<Self> {
        let a = mask_self_similarity(&own.0.project(own.1)?)?;
        let b = mask_self_similarity(&other.0.project(other.1)?)?;
        let mut c = Self::from_views(head, &a, &b)?;
        c.separability = Some(Separability::measure(head, &a, own.1, other.1)?);
        c.predict(Route::ZeroShot);
        c.advice = advice(space, &c);
        Ok(c)
    }

    /// The compatibility of a stitch through a latent translation into the decoder's absolute
    /// space: each fifth of the texts (anchors, then any alignment texts) is translated by a map
    /// fitted on the other four fifths.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] with fewer than 10 anchors; those of [`LatentTranslator::fit`]
    /// and [`Compatibility::from_views`].
    ///
    /// # Shapes
    /// - `source`: `[k, d_s]` (new encoder), `target`: `[k, d_t]` (decoder's encoder).
    pub fn translated(
        head: &Head,
        source: &Tensor,
        target: &Tensor,
        method: TranslationMethod,
    ) -> Result<Self> {
        let translated = cross_fitted(source, target, method)?;
        let own = target.clone();
        let mut c = Self::from_views(head, &own, &translated)?;
        c.separability = Some(Separability::measure(head, &own, target, source)?);
        c.predict(Route::Translated);
        c.advice = advice(Space::Absolute, &c);
        Ok(c)
    }

    /// The compatibility of a translated relative stitch: the new encoder's anchors are
    /// translated into the decoder's encoder's space (each fifth by a map fitted on the other four
    /// fifths) and projected with the decoder's own projector, `own`, fitted on `target`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] with fewer than 10 anchors; those of [`LatentTranslator::fit`],
    /// [`RelativeProjector::project`] and [`Compatibility::from_views`].
    ///
    /// # Shapes
    /// - `source`: `[n, d_s]` (new encoder), `target`: `[n, d_t]` (decoder's encoder), same text
    ///   order: the decoder's anchors first, in `own`'s order, then any other texts both encoders
    ///   embedded (a checkpoint's alignment texts), which make the estimate steadier.
    pub fn translated_relative(
        head: &Head,
        space: Space,
        (source, target): (&Tensor, &Tensor),
        own: &RelativeProjector,
        method: TranslationMethod,
    ) -> Result<Self> {
        let translated = cross_fitted(source, target, method)?;
        let a = mask_self_similarity(&own.project(target)?)?;
        let b = mask_self_similarity(&own.project(&translated)?)?;
        let mut c = Self::from_views(head, &a, &b)?;
        c.separability = Some(Separability::measure(head, &a, target, source)?);
        c.predict(Route::Translated);
        let stitched = match space {
            Space::Relative {
                projection,
                pre_transform,
            } => Space::TranslatedRelative {
                projection,
                pre_transform,
            },
            other => other,
        };
        c.advice = advice(stitched, &c);
        Ok(c)
    }

    /// Sets the predicted retained score and the verdict from the agreement and the
    /// separability, as measured for the route (docs/RESULTS.md, `stitch_robust`):
    /// - through a latent translation, the agreement is high on every pair and what the stitch
    ///   keeps follows how much of the decoder's distinctions the new encoder carries: the
    ///   prediction is [`Separability::ratio`];
    /// - zero-shot, the stitch can also garble the decoder's input (anisotropic encoders): the
    ///   prediction is the agreement times that ratio.
    ///
    /// Without a separability (only [`Compatibility::from_views`]), the agreement.
    fn predict(&mut self, route: Route) {
        let ratio = self.separability.map_or(1.0, |s| s.ratio());
        self.predicted_retained = match route {
            Route::Translated => ratio,
            Route::ZeroShot => self.agreement * ratio,
        };
        self.verdict = Verdict::of(self.predicted_retained);
    }

    /// Records an alternative stitch; when it is predicted to keep more, the advice names it
    /// first.
    #[must_use]
    pub fn with_alternative(mut self, alternative: Alternative) -> Self {
        if alternative.predicted_retained > self.predicted_retained {
            let lead = format!(
                "{} is predicted to keep {:.0}% of the decoder's score",
                alternative.method,
                100.0 * alternative.predicted_retained
            );
            self.advice = Some(match self.advice.take() {
                Some(a) => format!("{lead}; {a}"),
                None => lead,
            });
        }
        self.alternative = Some(alternative);
        self
    }

    /// Whether the stitch is predicted to be poor.
    pub fn is_poor(&self) -> bool {
        self.verdict == Verdict::Poor
    }
}

/// How a stitch feeds the decoder, for [`Compatibility::predict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// The new encoder's own relative vectors.
    ZeroShot,
    /// Through a latent translation into the decoder's encoder's space.
    Translated,
}

/// Every row of `source` translated towards `target` by a map fitted without it: the rows are
/// split into five folds by index, each translated by a map fitted on the other four; returned in
/// the original row order.
///
/// # Shapes
/// - `source`: `[k, d_s]`, `target`: `[k, d_t]`; returns `[k, d_t]`.
fn cross_fitted(source: &Tensor, target: &Tensor, method: TranslationMethod) -> Result<Tensor> {
    let k = source.dim(0).context(|| "the source anchors".into())?;
    const FOLDS: usize = 5;
    if k < 2 * FOLDS {
        return Err(Error::invalid(
            "compatibility",
            format!("{k} anchors: at least {} are needed", 2 * FOLDS),
        ));
    }
    let dev = source.device();
    let rows = |idx: &[usize], t: &Tensor| -> Result<Tensor> {
        Tensor::from_vec(
            idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            idx.len(),
            dev,
        )
        .and_then(|i| t.index_select(&i, 0))
        .context(|| "selecting anchors".into())
    };
    let mut order = Vec::with_capacity(k);
    let mut parts = Vec::with_capacity(FOLDS);
    for f in 0..FOLDS {
        let held: Vec<usize> = (0..k).filter(|i| i % FOLDS == f).collect();
        let fit_on: Vec<usize> = (0..k).filter(|i| i % FOLDS != f).collect();
        let t = LatentTranslator::fit(&rows(&fit_on, source)?, &rows(&fit_on, target)?, method)?;
        parts.push(t.apply(&rows(&held, source)?)?);
        order.extend(held);
    }
    let stacked = Tensor::cat(&parts, 0).context(|| "joining the folds".into())?;
    // Row p of `stacked` is anchor order[p]: put it back at its place.
    let mut back = vec![0u32; k];
    for (p, &i) in order.iter().enumerate() {
        back[i] = p as u32;
    }
    let back = Tensor::from_vec(back, k, dev).context(|| "reordering the folds".into())?;
    stacked
        .index_select(&back, 0)
        .context(|| "reordering the folds".into())
}

/// Replaces entry `(i, i)` of `[rows, k]` relative vectors whose first `k` rows are the anchors
/// themselves by the mean of row `i`'s other entries (an anchor meeting itself has no counterpart
/// in a fresh text). Rows after the `k`th (other texts) are left as they are.
fn mask_self_similarity(r: &Tensor) -> Result<Tensor> {
    let (rows, k) = r
        .dims2()
        .context(|| "the anchors' relative vectors".into())?;
    if rows < k || k < 2 {
        return Ok(r.clone());
    }
    let mut v = r
        .to_device(&Device::Cpu)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .context(|| "reading the anchors' relative vectors".into())?;
    for i in 0..k {
        let row = &v[i * k..(i + 1) * k];
        let others: f64 = row
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, x)| f64::from(*x))
            .sum();
        v[i * k + i] = (others / (k - 1) as f64) as f32;
    }
    Tensor::from_vec(v, (rows, k), r.device()).context(|| "masking self-similarities".into())
}

/// What to try instead of a fair or poor stitch, given the decoder's space (the stitched one) and
/// the estimate.
fn advice(space: Space, c: &Compatibility) -> Option<String> {
    if c.verdict == Verdict::Good {
        return None;
    }
    // The decoder's input arrives intact but the new encoder knows less of what it distinguishes:
    // no way of stitching repairs that.
    let weaker = c
        .separability
        .is_some_and(|s| s.ratio() < FAIR_BELOW && s.ratio() <= c.agreement);
    if weaker {
        return Some(
            "the new encoder's space carries less of what the decoder distinguishes than the \
             decoder's own encoder does (see the neighbourhood scores): the stitch can only be as \
             good as the encoder; compare with a decoder trained on this encoder"
                .into(),
        );
    }
    Some(match space {
        Space::Relative { .. } => {
            "the new encoder's relative vectors look unlike those the decoder was trained on \
             (anisotropic encoders such as e5 and sre do this); stitch through a latent \
             translation into the decoder's encoder's space (the default: drop `--zero-shot`), or \
             refit with more anchors (`relstitch fit --anchors N`)"
                .into()
        }
        Space::TranslatedRelative { .. } => {
            "the latent translation fitted on these anchors does not carry the decoder's \
             decisions; refit with more anchors (`relstitch fit --anchors N`), or try \
             `--translation affine`"
                .into()
        }
        Space::Absolute | Space::Translated => {
            "the latent translation fitted on these anchors does not carry the decoder's \
             decisions; refit both checkpoints in `relstitch fit`'s default relative space and \
             stitch them through a translation, or try `--translation affine`"
                .into()
        }
    })
}

impl std::fmt::Display for Compatibility {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "predicted compatibility ({} texts, no labels): the stitch is predicted to keep \
             {:.0}% of the decoder's score: {}; the decoder keeps its label on {:.1}% of them",
            self.anchors,
            100.0 * self.predicted_retained,
            self.verdict.name(),
            100.0 * self.agreement,
        )?;
        if let Some(s) = &self.separability {
            write!(
                f,
                ", and the new encoder's neighbourhoods carry its labels {:.3} against its own \
                 encoder's {:.3}",
                s.new_encoder, s.own_encoder
            )?;
        }
        if let Some(a) = &self.advice {
            let lead = if self.is_poor() { "warning" } else { "note" };
            write!(
                f,
                "\n{lead}: a {} stitch is predicted; {a}",
                self.verdict.name()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::decoder::{train_head, HeadKind, TrainOptions};

    #[test]
    fn neighbour_votes_accept_identical_rows() -> anyhow::Result<()> {
        // Two clusters; rows 0 and 1 are the same point (the new encoder sees two texts as one).
        let x = Tensor::new(
            &[
                [1.0f32, 0.1],
                [1.0, 0.1],
                [0.9, 0.2],
                [1.1, 0.0],
                [0.95, 0.15],
                [-1.0, 0.1],
                [-0.9, -0.1],
                [-1.1, 0.05],
                [-1.0, -0.05],
            ],
            &Device::Cpu,
        )?;
        let labels = [0, 0, 0, 0, 0, 1, 1, 1, 1];
        assert_eq!(neighbour_score(&x, &labels)?, 1.0);
        Ok(())
    }

    #[test]
    fn identical_views_agree_fully_and_opposite_ones_do_not() -> anyhow::Result<()> {
        let x = Tensor::new(
            &[
                [1f32, 0.0, 0.1],
                [0.9, 0.1, 0.0],
                [0.0, 1.0, 0.2],
                [0.1, 0.9, 0.0],
            ],
            &Device::Cpu,
        )?;
        let head = train_head(
            &x,
            &[0, 0, 1, 1],
            HeadKind::Linear,
            2,
            &TrainOptions {
                epochs: 200,
                val_fraction: 0.0,
                learning_rate: 0.05,
                ..TrainOptions::default()
            },
        )?
        .head;
        let same = Compatibility::from_views(&head, &x, &x)?;
        assert_eq!(same.agreement, 1.0);
        assert!((same.soft_agreement - 1.0).abs() < 1e-6);
        assert_eq!(same.verdict, Verdict::Good);
        // Swapping the first two columns swaps the classes.
        let swapped = Tensor::cat(
            &[x.narrow(1, 1, 1)?, x.narrow(1, 0, 1)?, x.narrow(1, 2, 1)?],
            1,
        )?;
        let c = Compatibility::from_views(&head, &x, &swapped)?;
        assert_eq!(c.agreement, 0.0);
        assert_eq!(c.verdict, Verdict::Poor);
        assert!(Compatibility::from_views(&head, &x, &x.narrow(0, 0, 2)?).is_err());
        Ok(())
    }

    #[test]
    fn masking_replaces_the_diagonal_by_the_row_mean() -> anyhow::Result<()> {
        let r = Tensor::new(
            &[[1f32, 0.2, 0.4], [0.1, 1.0, 0.3], [0.0, 0.6, 1.0]],
            &Device::Cpu,
        )?;
        let m = mask_self_similarity(&r)?.to_vec2::<f32>()?;
        assert!((m[0][0] - 0.3).abs() < 1e-6 && (m[1][1] - 0.2).abs() < 1e-6);
        assert!((m[2][2] - 0.3).abs() < 1e-6 && m[0][1] == 0.2);
        Ok(())
    }

    #[test]
    fn verdicts_and_advice() {
        assert_eq!(Verdict::of(0.95), Verdict::Good);
        assert_eq!(Verdict::of(0.85), Verdict::Fair);
        assert_eq!(Verdict::of(0.5), Verdict::Poor);
        let plain = Space::Relative {
            projection: crate::space::projection::Projection::Cosine,
            pre_transform: crate::space::projection::PreTransform::NONE,
        };
        let mut c = Compatibility {
            predicted_retained: 0.95,
            separability: None,
            agreement: 0.95,
            soft_agreement: 0.9,
            anchors: 10,
            verdict: Verdict::Good,
            advice: None,
            alternative: None,
        };
        assert!(advice(plain, &c).is_none());
        // A garbled input: the agreement is low.
        c.separability = Some(Separability {
            new_encoder: 0.8,
            own_encoder: 0.85,
        });
        c.agreement = 0.5;
        c.predict(Route::ZeroShot);
        assert_eq!(c.verdict, Verdict::Poor);
        assert!((c.predicted_retained - 0.5 * 0.8 / 0.85).abs() < 1e-12);
        c.advice = advice(plain, &c);
        assert!(c
            .advice
            .as_deref()
            .is_some_and(|a| a.contains("--zero-shot")));
        let text = c.to_string();
        assert!(text.starts_with("predicted compatibility (10 texts, no labels)"));
        assert!(text.contains("47%") && text.contains("50.0%"), "{text}");
        assert!(
            text.contains("\nwarning: a poor stitch is predicted"),
            "{text}"
        );
        // An intact input from a weaker encoder: the advice says so.
        c.agreement = 0.95;
        c.separability = Some(Separability {
            new_encoder: 0.6,
            own_encoder: 0.85,
        });
        c.predict(Route::Translated);
        assert_eq!(c.verdict, Verdict::Poor);
        assert!(advice(plain, &c).is_some_and(|a| a.contains("only be as good as the encoder")));
    }

    #[test]
    fn separability_sees_which_space_carries_the_labels() -> anyhow::Result<()> {
        // Two clusters in one space, the same points shuffled across them in another.
        let dev = Device::Cpu;
        let n = 40;
        let mut clustered = Vec::new();
        let mut scrambled = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let c = i % 2;
            let jitter = (i as f32 * 0.37).sin() * 0.05;
            clustered.extend([if c == 0 { 1.0 } else { -1.0 }, jitter, 0.1 * jitter]);
            scrambled.extend([if (i / 2) % 2 == 0 { 1.0 } else { -1.0 }, jitter, -jitter]);
            labels.push(c);
        }
        let clustered = Tensor::from_vec(clustered, (n, 3), &dev)?;
        let scrambled = Tensor::from_vec(scrambled, (n, 3), &dev)?;
        let good = neighbour_score(&clustered, &labels)?;
        let bad = neighbour_score(&scrambled, &labels)?;
        assert!(good > 0.99, "{good}");
        assert!(bad < 0.7, "{bad}");
        assert!(
            neighbour_score(&clustered.narrow(0, 0, NEIGHBOURS)?, &labels[..NEIGHBOURS]).is_err()
        );
        Ok(())
    }
}
