//! Row-wise reductions: residual + LayerNorm, softmax, sums. Each works on one row; the callers
//! run rows in parallel.
//!
//! Sums and maxima accumulate in 16 lanes (then add the lanes) so that LLVM vectorises them
//! without reassociating floating-point operations behind our back.

use super::activation::exp;

const LANES: usize = 16;

/// Sum of `xs` (16-lane accumulation).
#[inline(always)]
pub fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    let tail: f32 = chunks.remainder().iter().sum();
    acc.iter().sum::<f32>() + tail
}

/// Sum of `(x - mean)²` over `xs`.
#[inline(always)]
fn sum_sq_dev(xs: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            let d = x - mean;
            *a += d * d;
        }
    }
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|x| (x - mean) * (x - mean))
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Maximum of `xs` (−∞ for an empty slice).
#[inline(always)]
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a = a.max(*x);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, x| m.max(*x));
    acc.iter().fold(tail, |m, x| m.max(*x))
}

/// One row of a post-LayerNorm residual block: `x ← LN(x + residual) · gamma + beta`
/// (`residual` optional), with the mean and the biased variance of the row, as in PyTorch.
///
/// # Shapes
/// - `x`, `residual`, `gamma`, `beta`: `[h]`
#[inline(always)]
pub fn add_layer_norm(
    x: &mut [f32],
    residual: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    if let Some(r) = residual {
        for (x, r) in x.iter_mut().zip(r) {
            *x += r;
        }
    }
    let h = x.len().max(1) as f32;
    let mean = sum(x) / h;
    let var = sum_sq_dev(x, mean) / h;
    let rstd = 1.0 / (var + eps).sqrt();
    for ((x, g), b) in x.iter_mut().zip(gamma).zip(beta) {
        *x = (*x - mean) * rstd * g + b;
    }
}

/// One row of attention scores: `x ← softmax(x + bias)` (`bias` optional).
///
/// # Shapes
/// - `x`, `bias`: `[keys]`
#[inline(always)]
pub fn softmax(x: &mut [f32], bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for (x, b) in x.iter_mut().zip(b) {
            *x += b;
        }
    }
    let m = max(x);
    for v in x.iter_mut() {
        *v = exp(*v - m);
    }
    let inv = 1.0 / sum(x);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

super::simd::multiversion! {
    /// Every row of `x` (rows of `gamma.len()` values): `x ← LN(x + residual) · gamma + beta`
    /// ([`add_layer_norm`] row by row; `residual` has the shape of `x` when given).
    pub fn add_layer_norm_rows(
        x: &mut [f32],
        residual: Option<&[f32]>,
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
    ) {
        let h = gamma.len();
        if h == 0 {
            return;
        }
        match residual {
            Some(res) => {
                for (row, r) in x.chunks_exact_mut(h).zip(res.chunks_exact(h)) {
                    add_layer_norm(row, Some(r), gamma, beta, eps);
                }
            }
            None => {
                for row in x.chunks_exact_mut(h) {
                    add_layer_norm(row, None, gamma, beta, eps);
                }
            }
        }
    }
}

super::simd::multiversion! {
    /// Every row of `scores` (`[rows, len]`): `softmax(row_i + bias_i)`, where `bias_i` is
    /// `bias[start - i..start - i + len]` (a band of a Toeplitz matrix: MPNet's relative position
    /// bias by key − query distance); no bias when `bias` is empty.
    pub fn softmax_rows(scores: &mut [f32], len: usize, bias: &[f32], start: usize) {
        if len == 0 {
            return;
        }
        for (i, row) in scores.chunks_exact_mut(len).enumerate() {
            if bias.is_empty() {
                softmax(row, None);
            } else {
                let first = start - i;
                softmax(row, Some(&bias[first..first + len]));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn layer_norm_matches_f64(
            row in proptest::collection::vec(-50f32..50.0, 1..200),
            seed in 0u64..1000,
        ) {
            let h = row.len();
            let res: Vec<f32> = (0..h).map(|i| ((i as u64 * 7 + seed) % 13) as f32 - 6.0).collect();
            let gamma: Vec<f32> = (0..h).map(|i| 0.5 + (i % 5) as f32 * 0.25).collect();
            let beta: Vec<f32> = (0..h).map(|i| (i % 3) as f32 - 1.0).collect();
            let mut x = row.clone();
            add_layer_norm_rows(&mut x, Some(&res), &gamma, &beta, 1e-5);
            let s: Vec<f64> = row.iter().zip(&res).map(|(a, b)| *a as f64 + *b as f64).collect();
            let mean = s.iter().sum::<f64>() / h as f64;
            let var = s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64;
            for i in 0..h {
                let want = (s[i] - mean) / (var + 1e-5).sqrt() * gamma[i] as f64 + beta[i] as f64;
                prop_assert!((x[i] as f64 - want).abs() < 1e-4, "{i}: {} vs {want}", x[i]);
            }
        }

        #[test]
        fn softmax_matches_f64(
            row in proptest::collection::vec(-30f32..30.0, 1..300),
        ) {
            let bias: Vec<f32> = (0..row.len()).map(|i| (i % 7) as f32 * 0.5).collect();
            let mut x = row.clone();
            let len = x.len();
            softmax_rows(&mut x, len, &bias, 0);
            let z: Vec<f64> = row.iter().zip(&bias).map(|(a, b)| *a as f64 + *b as f64).collect();
            let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
            for i in 0..row.len() {
                let want = (z[i] - m).exp() / s;
                prop_assert!((x[i] as f64 - want).abs() < 1e-6, "{i}: {} vs {want}", x[i]);
            }
        }
    }
}
