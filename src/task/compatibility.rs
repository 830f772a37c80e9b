//! How well will a stitch hold? A label-free estimate from the decoder's anchors alone.
//!
//! Both encoders embed the decoder's anchor texts. The decoder's head then labels every anchor
//! twice: from the relative vector its own encoder gives (what it was trained on) and from the one
//! the new encoder gives (what the stitch will feed it). The **agreement** is the fraction of
//! anchors that get the same label both ways: the share of the decoder's decisions the stitch is
//! expected to keep. No labels are needed, and nothing is evaluated on test data.
//!
//! Each anchor is also a column of the relative vectors, where it meets itself (cosine 1 after any
//! pre-transform); a fresh text has no such spike, so that entry is replaced by the mean of the
//! anchor's other entries in both views before the head sees them. For a stitch through a latent
//! translation, the anchors are translated by maps fitted on the other anchors (five folds), so
//! that no anchor is scored by a map fitted on it.
//!
//! Measured against the retained weighted F1 of every ordered pair of catalog encoders on three
//! datasets in `docs/RESULTS.md` (`stitch_robust`).

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::CandleContext;
use crate::space::projection::RelativeProjector;
use crate::space::translation::{LatentTranslator, TranslationMethod};
use crate::task::checkpoint::Space;
use crate::task::decoder::Head;
use crate::{Error, Result};

/// Below this agreement a stitch is predicted to be poor (warned about, with advice).
pub const POOR_BELOW: f64 = 0.7;
/// Below this agreement (and at or above [`POOR_BELOW`]) a stitch is predicted to be fair.
pub const FAIR_BELOW: f64 = 0.8;

/// What the agreement predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Agreement at least [`FAIR_BELOW`]: the stitch is expected to keep about the decoder's score.
    Good,
    /// Agreement in `[POOR_BELOW, FAIR_BELOW)`: some loss expected.
    Fair,
    /// Agreement below [`POOR_BELOW`]: a large loss expected.
    Poor,
}

impl Verdict {
    /// The verdict of an agreement.
    pub fn of(agreement: f64) -> Self {
        if agreement >= FAIR_BELOW {
            Self::Good
        } else if agreement >= POOR_BELOW {
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

/// The label-free compatibility of a stitch, estimated on the decoder's anchors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compatibility {
    /// Fraction of the anchors to which the decoder's head gives the same label from the new
    /// encoder's input as from its own encoder's input.
    pub agreement: f64,
    /// One minus the mean total-variation distance between the two predicted distributions
    /// (1: identical probabilities on every anchor).
    pub soft_agreement: f64,
    /// How many anchors were compared.
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

/// Another way to stitch, with its estimated agreement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    /// What it is and how to ask for it.
    pub method: String,
    /// Its estimated agreement (same head, same anchors).
    pub agreement: f64,
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
        let argmax = |row: &[f32]| {
            row.iter()
                .enumerate()
                .fold(0, |b, (i, v)| if *v > row[b] { i } else { b })
        };
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
        c.advice = advice(space, c.verdict);
        Ok(c)
    }

    /// The compatibility of a stitch through a latent translation into the decoder's absolute
    /// space: each fifth of the anchors is translated by a map fitted on the other four fifths.
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
        c.advice = advice(Space::Absolute, c.verdict);
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
    /// - `source`: `[k, d_s]` (new encoder), `target`: `[k, d_t]` (decoder's encoder).
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
        c.advice = advice(stitched, c.verdict);
        Ok(c)
    }

    /// Records an alternative stitch; when it is predicted to keep more, the advice names it
    /// first.
    #[must_use]
    pub fn with_alternative(mut self, alternative: Alternative) -> Self {
        if alternative.agreement > self.agreement {
            let lead = format!(
                "{} is predicted to keep {:.1}%",
                alternative.method,
                100.0 * alternative.agreement
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

/// Replaces entry `(i, i)` of a square `[k, k]` matrix of relative vectors by the mean of row
/// `i`'s other entries (an anchor meeting itself has no counterpart in a fresh text).
fn mask_self_similarity(r: &Tensor) -> Result<Tensor> {
    let (k, w) = r
        .dims2()
        .context(|| "the anchors' relative vectors".into())?;
    if k != w || k < 2 {
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
    Tensor::from_vec(v, (k, k), r.device()).context(|| "masking self-similarities".into())
}

/// What to try instead of a fair or poor stitch, given the decoder's space.
fn advice(space: Space, verdict: Verdict) -> Option<String> {
    if verdict == Verdict::Good {
        return None;
    }
    Some(match space {
        Space::Relative { pre_transform, .. } if pre_transform.whiten.is_none() => {
            "the decoder reads unwhitened relative vectors, which anisotropic encoders (e5, sre) \
             distort; refit both checkpoints with `relstitch fit`'s default whitened space \
             (cosine after ZCA whitening on the anchors)"
                .into()
        }
        Space::Relative { .. } => {
            "the two encoders order these anchors differently even after whitening; refit with \
             more anchors (`relstitch fit --anchors N`)"
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
             decisions; refit both checkpoints in `relstitch fit`'s default whitened relative \
             space, or try `--translation affine`"
                .into()
        }
    })
}

impl std::fmt::Display for Compatibility {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "predicted compatibility ({} anchors, no labels): the decoder keeps its label on {:.1}% \
             of its anchors (soft agreement {:.3}): {}",
            self.anchors,
            100.0 * self.agreement,
            self.soft_agreement,
            self.verdict.name()
        )?;
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
        assert_eq!(Verdict::of(0.75), Verdict::Fair);
        assert_eq!(Verdict::of(0.5), Verdict::Poor);
        let plain = Space::Relative {
            projection: crate::space::projection::Projection::Cosine,
            pre_transform: crate::space::projection::PreTransform::NONE,
        };
        assert!(advice(plain, Verdict::Good).is_none());
        assert!(advice(plain, Verdict::Poor).is_some_and(|a| a.contains("whitened")));
        let c = Compatibility {
            agreement: 0.5,
            soft_agreement: 0.6,
            anchors: 10,
            verdict: Verdict::Poor,
            advice: advice(plain, Verdict::Poor),
            alternative: None,
        };
        let text = c.to_string();
        assert!(text.starts_with("predicted compatibility (10 anchors, no labels)"));
        assert!(text.contains("50.0%") && text.contains("\nwarning: a poor stitch is predicted"));
    }
}
