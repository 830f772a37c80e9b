//! f32 matrix products through the `gemm` crate (the one candle's CPU backend uses), called on
//! raw slices with explicit strides: no tensor allocation, no layout copies, the bias written
//! into the destination first and accumulated onto.

use candle_core::{bail, Result};
use gemm::Parallelism;

/// `out = x · Wᵀ + bias`.
///
/// # Shapes
/// - `x`: `[m, k]`; `weight`: `[n, k]` (PyTorch's `[out, in]`); `bias`: `[n]`; `out`: `[m, n]`
///
/// # Errors
/// A [`candle_core::Error`] when the slices do not match the shapes.
#[allow(clippy::too_many_arguments)]
pub fn linear(
    x: &[f32],
    m: usize,
    k: usize,
    weight: &[f32],
    bias: &[f32],
    n: usize,
    out: &mut [f32],
    parallel: bool,
) -> Result<()> {
    if x.len() != m * k || weight.len() != n * k || bias.len() != n || out.len() != m * n {
        bail!(
            "linear: shapes do not agree (x {} for {m}×{k}, weight {} for {n}×{k}, bias {}, out {})",
            x.len(),
            weight.len(),
            bias.len(),
            out.len()
        );
    }
    if m == 0 {
        return Ok(());
    }
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(bias);
    }
    // SAFETY: every pointer covers the extent its strides address: `out` is m × n row-major
    // (row stride n, column stride 1), `x` is m × k (stride k, 1), and the right-hand side is
    // Wᵀ, k × n, read from `weight` ([n, k] row-major) with row stride 1 and column stride k;
    // the lengths were checked above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            true,
            x.as_ptr(),
            1,
            k as isize,
            weight.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(parallel),
        );
    }
    Ok(())
}

/// The `gemm` parallelism for one product.
pub fn parallelism(parallel: bool) -> Parallelism {
    let threads = rayon::current_num_threads();
    if parallel && threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn linear_matches_naive(m in 1usize..50, n in 1usize..70, k in 1usize..90, parallel in any::<bool>()) {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 13) as f32 - 6.0) / 7.0).collect();
            let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.1).collect();
            let mut out = vec![f32::NAN; m * n];
            linear(&x, m, k, &w, &b, n, &mut out, parallel).unwrap();
            for r in 0..m {
                for c in 0..n {
                    let want: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum::<f32>() + b[c];
                    prop_assert!((out[r * n + c] - want).abs() < 1e-4 * (1.0 + want.abs()));
                }
            }
        }
    }
}
