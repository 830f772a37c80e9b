//! Classification metrics: accuracy, macro F1 and weighted F1 (the paper's metric).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Scores of predictions against true labels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Fraction of exact matches.
    pub accuracy: f64,
    /// Unweighted mean of per-class F1 over the classes present in the truth or the predictions.
    pub macro_f1: f64,
    /// Mean of per-class F1 weighted by each class's true count (scikit-learn's `weighted`).
    pub weighted_f1: f64,
    /// Number of samples.
    pub n: usize,
}

/// Scores `predicted` against `truth` (class indices below `num_classes`).
pub fn score(truth: &[usize], predicted: &[usize], num_classes: usize) -> Result<Scores> {
    if truth.len() != predicted.len() {
        return Err(Error::invalid(
            "predictions",
            format!("{} predictions for {} labels", predicted.len(), truth.len()),
        ));
    }
    if truth.is_empty() {
        return Err(Error::invalid(
            "predictions",
            "nothing to score: no samples",
        ));
    }
    if let Some(bad) = truth.iter().chain(predicted).find(|&&c| c >= num_classes) {
        return Err(Error::invalid(
            "labels",
            format!("class index {bad} is out of range for {num_classes} classes"),
        ));
    }
    let mut tp = vec![0usize; num_classes];
    let mut support = vec![0usize; num_classes];
    let mut pred_count = vec![0usize; num_classes];
    for (&t, &p) in truth.iter().zip(predicted) {
        support[t] += 1;
        pred_count[p] += 1;
        if t == p {
            tp[t] += 1;
        }
    }
    let f1 = |c: usize| {
        let denom = support[c] + pred_count[c];
        if denom == 0 {
            0.0
        } else {
            2.0 * tp[c] as f64 / denom as f64
        }
    };
    let present: Vec<usize> = (0..num_classes)
        .filter(|&c| support[c] + pred_count[c] > 0)
        .collect();
    let n = truth.len();
    Ok(Scores {
        accuracy: tp.iter().sum::<usize>() as f64 / n as f64,
        macro_f1: present.iter().map(|&c| f1(c)).sum::<f64>() / present.len().max(1) as f64,
        weighted_f1: (0..num_classes)
            .map(|c| f1(c) * support[c] as f64)
            .sum::<f64>()
            / n as f64,
        n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scikit_learn_by_hand() -> Result<()> {
        // y_true = [0,0,1,1,2,2], y_pred = [0,1,1,1,2,0]
        // per-class F1: c0 = 2*1/(2+2)=0.5, c1 = 2*2/(2+3)=0.8, c2 = 2*1/(2+1)=0.6667
        let s = score(&[0, 0, 1, 1, 2, 2], &[0, 1, 1, 1, 2, 0], 3)?;
        assert!((s.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert!((s.macro_f1 - (0.5 + 0.8 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert!((s.weighted_f1 - (0.5 * 2. + 0.8 * 2. + 2. / 3. * 2.) / 6.0).abs() < 1e-12);
        assert!(score(&[0], &[0, 1], 2).is_err());
        assert!(score(&[], &[], 2).is_err());
        assert!(score(&[3], &[0], 2).is_err());
        Ok(())
    }
}
