//! Unpaired translation: a map from A's space to B's fitted with no paired texts, from two
//! unrelated samples of the same kind of corpus, one embedded by each model.
//!
//! The structure of the two spaces is matched through relative representations. Each vector is
//! described by its *sorted* similarities to the other vectors of its own space (its relative
//! vector with the anchor identities forgotten, which makes it comparable across spaces without
//! knowing which anchor is which; Artetxe et al., ACL 2018, do this for word embeddings). Vectors
//! whose descriptions are mutual nearest neighbours seed a dictionary of pseudo-pairs; then, for a
//! number of rounds, a Procrustes map is fitted on the pairs, A is mapped into B, and the pairs
//! are re-induced as mutual nearest neighbours under CSLS (cross-domain similarity local scaling,
//! Conneau et al., ICLR 2018).

use candle_core::{Device, Tensor};

use crate::error::CandleContext;
use crate::space::translation::{LatentTranslator, TranslationMethod};
use crate::{Error, Result};

/// Length of a sorted-similarity description.
const SIGNATURE: usize = 64;
/// Neighbours of the CSLS penalty.
const CSLS_K: usize = 10;

/// `x` centred and with unit rows, as row vectors.
fn unit_centred(x: &Tensor) -> Result<Vec<Vec<f32>>> {
    let ctx = || "normalising".to_string();
    let c = x
        .broadcast_sub(&x.mean_keepdim(0).context(ctx)?)
        .context(ctx)?;
    let n = c
        .sqr()
        .and_then(|s| s.sum_keepdim(1))
        .and_then(|s| s.sqrt())
        .and_then(|s| s.clamp(1e-12f32, f32::MAX))
        .context(ctx)?;
    c.broadcast_div(&n)
        .and_then(|u| u.to_vec2::<f32>())
        .context(ctx)
}

fn sims(a: &[Vec<f32>], b: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
    let ctx = || "similarities".to_string();
    let t = |v: &[Vec<f32>]| -> Result<Tensor> {
        let d = v.first().map_or(0, Vec::len);
        Tensor::from_vec(v.concat(), (v.len(), d), &Device::Cpu).context(ctx)
    };
    t(a)?
        .matmul(&t(b)?.t().context(ctx)?)
        .and_then(|s| s.to_vec2::<f32>())
        .context(ctx)
}

/// Each row's similarities to the others, sorted, first [`SIGNATURE`] (self excluded), centred
/// and of unit norm.
fn signatures(u: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
    let s = sims(u, u)?;
    Ok(s.into_iter()
        .enumerate()
        .map(|(i, mut row)| {
            row.remove(i);
            row.sort_by(|a, b| b.total_cmp(a));
            row.truncate(SIGNATURE);
            let m = row.iter().sum::<f32>() / row.len().max(1) as f32;
            row.iter_mut().for_each(|v| *v -= m);
            let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= n);
            row
        })
        .collect())
}

/// Mutual nearest neighbours of a score matrix, with CSLS when `csls`.
fn mutual_pairs(s: &[Vec<f32>], csls: bool) -> Vec<(usize, usize)> {
    let (na, nb) = (s.len(), s.first().map_or(0, Vec::len));
    let mean_top = |v: &mut Vec<f32>| {
        let k = CSLS_K.min(v.len());
        v.select_nth_unstable_by(k.saturating_sub(1), |a, b| b.total_cmp(a));
        v[..k].iter().sum::<f32>() / k.max(1) as f32
    };
    let (ra, rb): (Vec<f32>, Vec<f32>) = if csls {
        (
            s.iter().map(|r| mean_top(&mut r.clone())).collect(),
            (0..nb)
                .map(|j| mean_top(&mut s.iter().map(|r| r[j]).collect()))
                .collect(),
        )
    } else {
        (vec![0.0; na], vec![0.0; nb])
    };
    let score = |i: usize, j: usize| 2.0 * s[i][j] - ra[i] - rb[j];
    let best_b: Vec<usize> = (0..na)
        .map(|i| {
            (0..nb)
                .max_by(|&x, &y| score(i, x).total_cmp(&score(i, y)))
                .unwrap_or(0)
        })
        .collect();
    let best_a: Vec<usize> = (0..nb)
        .map(|j| {
            (0..na)
                .max_by(|&x, &y| score(x, j).total_cmp(&score(y, j)))
                .unwrap_or(0)
        })
        .collect();
    (0..na)
        .filter(|&i| best_a[best_b[i]] == i)
        .map(|i| (i, best_b[i]))
        .collect()
}

/// Pseudo-pairs between `xa` (`[na, d_a]`) and `xb` (`[nb, d_b]`), found without any paired
/// sample, and how many rounds of refinement ran.
///
/// # Errors
/// [`Error::InvalidArgument`] when either side has fewer than 2 × [`SIGNATURE`] rows, or no
/// mutual pairs are found.
pub(crate) fn match_spaces(xa: &Tensor, xb: &Tensor, rounds: usize) -> Result<Vec<(usize, usize)>> {
    let (ua, ub) = (unit_centred(xa)?, unit_centred(xb)?);
    for (n, side) in [(ua.len(), "source"), (ub.len(), "target")] {
        if n < 2 * SIGNATURE {
            return Err(Error::invalid(
                format!("{side} corpus"),
                format!(
                    "{n} texts: unpaired matching needs at least {} per model",
                    2 * SIGNATURE
                ),
            ));
        }
    }
    let mut pairs = mutual_pairs(&sims(&signatures(&ua)?, &signatures(&ub)?)?, false);
    for _ in 0..rounds {
        if pairs.len() < 2 {
            break;
        }
        let take =
            |t: &Tensor, rows: Vec<usize>| crate::space::anchors::gather_rows(t, &rows, "corpus");
        let map = LatentTranslator::fit(
            &take(xa, pairs.iter().map(|p| p.0).collect())?,
            &take(xb, pairs.iter().map(|p| p.1).collect())?,
            TranslationMethod::Procrustes,
        )?;
        let moved = unit_centred(&map.apply(xa)?)?;
        pairs = mutual_pairs(&sims(&moved, &ub)?, true);
    }
    if pairs.len() < 2 {
        return Err(Error::invalid(
            "unpaired matching",
            "found no mutual pairs between the two corpora; give larger samples of the same kind of text",
        ));
    }
    Ok(pairs)
}
