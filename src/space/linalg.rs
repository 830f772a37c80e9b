//! Small dense linear algebra in f64 on the CPU, for what candle does not have: symmetric
//! eigen-decomposition, singular values, thin SVDs, pseudo-inverses and least squares.
//!
//! Everything runs on [faer](https://docs.rs/faer) (pure Rust): its SVD works on the matrix itself,
//! so its accuracy is that of the data (≈ ε_f64 · σ_max), where the Gram-matrix route this module
//! used before squared the condition number (resolution ≈ 1e-8 · σ_max) — exactly where anchors
//! are nearly collinear. The matrices involved are small (anchors × dims, dims × dims); the big
//! products (Gram matrices of many samples) are formed by the callers with candle.
//!
//! faer checks its preconditions with assertions, so every function here validates shapes and
//! finiteness first and returns a candle error instead.

use candle_core::{DType, Device, Tensor};
use faer::{Mat, MatRef, Side};

/// An eigen-decomposition of a symmetric matrix.
#[allow(dead_code)] // the building block of whitening; tested below
#[derive(Debug, Clone)]
pub(crate) struct SymEigen {
    /// The eigenvalues, largest first.
    pub values: Vec<f64>,
    /// The eigenvectors as the rows of an `n × n` row-major matrix, in the order of `values`
    /// (empty when they were not asked for).
    pub vectors: Vec<f64>,
}

/// Eigen-decomposition of the symmetric `n × n` row-major matrix `a` (only its lower triangle is
/// read). With `vectors = false` only the eigenvalues are computed.
#[allow(dead_code)] // the building block of whitening; tested below
pub(crate) fn sym_eigen(a: &[f64], n: usize, vectors: bool) -> candle_core::Result<SymEigen> {
    if a.len() != n * n {
        candle_core::bail!("sym_eigen: {} values for a {n}×{n} matrix", a.len());
    }
    if n == 0 {
        return Ok(SymEigen {
            values: vec![],
            vectors: vec![],
        });
    }
    if a.iter().any(|v| !v.is_finite()) {
        candle_core::bail!("sym_eigen: the matrix holds non-finite values");
    }
    // Symmetrised from the lower triangle.
    let m = Mat::<f64>::from_fn(
        n,
        n,
        |r, c| if r >= c { a[r * n + c] } else { a[c * n + r] },
    );
    if !vectors {
        let mut values = m
            .self_adjoint_eigenvalues(Side::Lower)
            .map_err(|e| candle_core::Error::Msg(format!("sym_eigen: {e:?}")))?;
        values.reverse();
        return Ok(SymEigen {
            values,
            vectors: vec![],
        });
    }
    let evd = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| candle_core::Error::Msg(format!("sym_eigen: {e:?}")))?;
    let s = evd.S().column_vector();
    let u = evd.U();
    // faer sorts ascending; we want largest first, eigenvectors as rows.
    let mut values = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(n * n);
    for i in (0..n).rev() {
        values.push(s[i]);
        out.extend((0..n).map(|r| u[(r, i)]));
    }
    Ok(SymEigen {
        values,
        vectors: out,
    })
}

/// A thin singular value decomposition `A = U diag(s) Vᵀ` of an `m × n` matrix, with
/// `r = min(m, n)` singular values.
#[derive(Debug, Clone)]
pub(crate) struct Svd {
    /// `[m, r]` f64, orthonormal columns.
    pub u: Tensor,
    /// The singular values, largest first.
    #[allow(dead_code)] // Procrustes needs only U and V; the tests check the whole product
    pub s: Vec<f64>,
    /// `[n, r]` f64, orthonormal columns.
    pub v: Tensor,
}

/// `a` as a faer matrix in f64, after checking that it is a finite matrix.
fn to_faer(a: &Tensor, what: &str) -> candle_core::Result<Mat<f64>> {
    let (m, n) = a.dims2()?;
    let v = a
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    if v.iter().any(|x| !x.is_finite()) {
        candle_core::bail!("{what}: the matrix holds non-finite values");
    }
    Ok(Mat::from_fn(m, n, |r, c| v[r * n + c]))
}

/// A faer matrix as an f64 CPU tensor.
fn from_faer(m: MatRef<'_, f64>) -> candle_core::Result<Tensor> {
    let (rows, cols) = (m.nrows(), m.ncols());
    let mut v = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        v.extend((0..cols).map(|c| m[(r, c)]));
    }
    Tensor::from_vec(v, (rows, cols), &Device::Cpu)
}

/// The faer thin SVD of a finite matrix (an empty one has an empty SVD).
fn thin_svd(a: &Mat<f64>, what: &str) -> candle_core::Result<(Mat<f64>, Vec<f64>, Mat<f64>)> {
    let (m, n) = (a.nrows(), a.ncols());
    if m == 0 || n == 0 {
        return Ok((Mat::zeros(m, 0), vec![], Mat::zeros(n, 0)));
    }
    let svd = a.thin_svd().map_err(|e| {
        candle_core::Error::Msg(format!("{what}: the SVD did not converge ({e:?})"))
    })?;
    let s: Vec<f64> = svd.S().column_vector().iter().copied().collect();
    Ok((svd.U().to_owned(), s, svd.V().to_owned()))
}

/// The singular values of `a` (`[m, n]`, any float dtype), largest first.
pub(crate) fn singular_values(a: &Tensor) -> candle_core::Result<Vec<f64>> {
    let m = to_faer(a, "singular values")?;
    if m.nrows() == 0 || m.ncols() == 0 {
        return Ok(vec![]);
    }
    m.singular_values().map_err(|e| {
        candle_core::Error::Msg(format!("singular values: the SVD did not converge ({e:?})"))
    })
}

/// The thin SVD of `a` (`[m, n]`, any float dtype), in f64 on the CPU. `U` and `V` always have
/// orthonormal columns (also for rank-deficient `a`), as orthogonal Procrustes needs.
pub(crate) fn svd(a: &Tensor) -> candle_core::Result<Svd> {
    let (u, s, v) = thin_svd(&to_faer(a, "svd")?, "svd")?;
    Ok(Svd {
        u: from_faer(u.as_ref())?,
        s,
        v: from_faer(v.as_ref())?,
    })
}

/// The rank tolerance for a matrix that came from f32 data: `10 · ε_f32 · σ_max`, the noise floor
/// f32 rounding puts under the singular values. (numpy's worst-case `max(m, n) · ε · σ_max` would
/// call one random 768 × 768 Gaussian matrix in ten rank-deficient.)
pub(crate) fn rank_tolerance(s_max: f64) -> f64 {
    10.0 * f64::from(f32::EPSILON) * s_max
}

/// `1/s` for the singular values above [`rank_tolerance`], 0 for the others; and the rank.
fn inverse_singular_values(s: &[f64]) -> (Vec<f64>, usize) {
    let tol = rank_tolerance(s.first().copied().unwrap_or(0.0));
    let inv: Vec<f64> = s
        .iter()
        .map(|&x| if x > tol { 1.0 / x } else { 0.0 })
        .collect();
    let rank = inv.iter().filter(|&&v| v != 0.0).count();
    (inv, rank)
}

/// `V diag(inv) Uᵀ B` (or `V diag(inv) Uᵀ` when `b` is `None`), without forming `Uᵀ` larger
/// than needed.
fn apply_pinv(u: &Mat<f64>, inv: &[f64], v: &Mat<f64>, b: Option<&Mat<f64>>) -> Mat<f64> {
    let ut_b = match b {
        Some(b) => u.transpose() * b,
        None => u.transpose().to_owned(),
    };
    // Scale the rows of Uᵀ B by 1/s, then multiply by V.
    let scaled = Mat::from_fn(ut_b.nrows(), ut_b.ncols(), |r, c| ut_b[(r, c)] * inv[r]);
    v * scaled
}

/// The Moore–Penrose pseudo-inverse of `a` (`[m, n]`, any float dtype) as an `[n, m]` f64 CPU
/// tensor, through its SVD; singular values at or below [`rank_tolerance`] count as zero. Also
/// returns the rank.
pub(crate) fn pinv(a: &Tensor) -> candle_core::Result<(Tensor, usize)> {
    let (u, s, v) = thin_svd(&to_faer(a, "pinv")?, "pinv")?;
    let (inv, rank) = inverse_singular_values(&s);
    Ok((from_faer(apply_pinv(&u, &inv, &v, None).as_ref())?, rank))
}

/// The minimum-norm least-squares solution `X` of `A X ≈ B` (`a`: `[m, n]`, `b`: `[m, p]`) as an
/// `[n, p]` f64 CPU tensor, and the rank of `A`, through the SVD of `A`. Never forms the `[n, m]`
/// pseudo-inverse, so many rows are cheap.
pub(crate) fn lstsq(a: &Tensor, b: &Tensor) -> candle_core::Result<(Tensor, usize)> {
    let am = to_faer(a, "lstsq")?;
    let bm = to_faer(b, "lstsq")?;
    if am.nrows() != bm.nrows() {
        candle_core::bail!("lstsq: A has {} rows but B has {}", am.nrows(), bm.nrows());
    }
    let (u, s, v) = thin_svd(&am, "lstsq")?;
    let (inv, rank) = inverse_singular_values(&s);
    Ok((
        from_faer(apply_pinv(&u, &inv, &v, Some(&bm)).as_ref())?,
        rank,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random(m: usize, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..m * n)
            .map(|_| rng.random::<f64>() * 2.0 - 1.0)
            .collect()
    }

    #[test]
    fn eigen_reconstructs() -> candle_core::Result<()> {
        for n in [1usize, 2, 3, 7, 40] {
            let b = random(n, n, n as u64);
            let bt = Tensor::from_vec(b, (n, n), &Device::Cpu)?;
            let a = bt.matmul(&bt.t()?)?; // SPD-ish
            let av = a.flatten_all()?.to_vec1::<f64>()?;
            let e = sym_eigen(&av, n, true)?;
            let v = Tensor::from_vec(e.vectors.clone(), (n, n), &Device::Cpu)?.t()?; // columns
            let l = Tensor::from_vec(e.values.clone(), (1, n), &Device::Cpu)?;
            let rec = v.broadcast_mul(&l)?.matmul(&v.t()?)?;
            let err = (rec - &a)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert!(err < 1e-10, "n={n} err={err}");
            let vtv = v.t()?.matmul(&v)?;
            let id = Tensor::eye(n, DType::F64, &Device::Cpu)?;
            let err = (vtv - id)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert!(err < 1e-10, "n={n} orth err={err}");
            let vals = sym_eigen(&av, n, false)?.values;
            for (x, y) in vals.iter().zip(&e.values) {
                assert!((x - y).abs() < 1e-10);
            }
            assert!(e.values.windows(2).all(|w| w[0] >= w[1]));
        }
        Ok(())
    }

    #[test]
    fn svd_reconstructs_and_completes() -> candle_core::Result<()> {
        for (m, n) in [(5usize, 3usize), (3, 5), (6, 6), (30, 12)] {
            let a = Tensor::from_vec(random(m, n, 7), (m, n), &Device::Cpu)?;
            let s = svd(&a)?;
            let r = m.min(n);
            let sd = Tensor::from_vec(s.s.clone(), (1, r), &Device::Cpu)?;
            let rec = s.u.broadcast_mul(&sd)?.matmul(&s.v.t()?)?;
            let err = (rec - &a)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert!(err < 1e-9, "{m}x{n}: {err}");
        }
        // Rank-deficient: U still orthonormal.
        let b = Tensor::from_vec(random(6, 2, 3), (6, 2), &Device::Cpu)?;
        let a = b.matmul(&b.t()?)?; // 6x6 rank 2
        let s = svd(&a)?;
        let utu = s.u.t()?.matmul(&s.u)?;
        let id = Tensor::eye(6, DType::F64, &Device::Cpu)?;
        let err = (utu - id)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(err < 1e-10, "{err}");
        for t in [a.clone(), a.narrow(0, 0, 3)?, a.narrow(1, 0, 3)?] {
            let (p, rank) = pinv(&t)?;
            assert_eq!(rank, 2);
            // A A⁺ A = A and A⁺ A A⁺ = A⁺
            let aa = t.matmul(&p)?.matmul(&t)?;
            let err = (aa - &t)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert!(err < 1e-9, "{err}");
            let pp = p.matmul(&t)?.matmul(&p)?;
            let err = (pp - &p)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert!(err < 1e-9, "{err}");
        }
        // lstsq recovers an exact solution, tall and wide.
        let a = Tensor::from_vec(random(20, 5, 11), (20, 5), &Device::Cpu)?;
        let x = Tensor::from_vec(random(5, 2, 12), (5, 2), &Device::Cpu)?;
        let (got, rank) = lstsq(&a, &a.matmul(&x)?)?;
        assert_eq!(rank, 5);
        let err = (got - &x)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(err < 1e-9, "{err}");
        let w = a.t()?.contiguous()?; // 5 x 20: underdetermined, min-norm
        let y = Tensor::from_vec(random(5, 1, 13), (5, 1), &Device::Cpu)?;
        let (got, _) = lstsq(&w, &y)?;
        let err = (w.matmul(&got)? - &y)?
            .abs()?
            .max_all()?
            .to_scalar::<f64>()?;
        assert!(err < 1e-9, "{err}");
        Ok(())
    }

    #[test]
    fn empty_and_non_finite_inputs_are_errors_not_panics() -> candle_core::Result<()> {
        let e = Tensor::zeros((0, 3), DType::F64, &Device::Cpu)?;
        assert!(singular_values(&e)?.is_empty());
        let mut v = random(4, 3, 1);
        v[5] = f64::NAN;
        let a = Tensor::from_vec(v, (4, 3), &Device::Cpu)?;
        assert!(svd(&a).is_err() && pinv(&a).is_err() && singular_values(&a).is_err());
        let b = Tensor::zeros((5, 1), DType::F64, &Device::Cpu)?;
        let a = Tensor::from_vec(random(4, 3, 2), (4, 3), &Device::Cpu)?;
        assert!(lstsq(&a, &b).is_err());
        Ok(())
    }

    /// What the Gram-matrix route this module used before (eigen-decomposition of AᵀA) gives for
    /// the singular values: √λ(AᵀA), whose resolution is ≈ √ε · σ_max.
    fn gram_singular_values(a: &Tensor) -> candle_core::Result<Vec<f64>> {
        let g = a.t()?.matmul(a)?;
        let n = g.dim(0)?;
        let e = sym_eigen(&g.flatten_all()?.to_vec1::<f64>()?, n, false)?;
        Ok(e.values.iter().map(|l| l.max(0.0).sqrt()).collect())
    }

    /// Nearly collinear anchors: a matrix with known singular values from 1 down to 1e-12 (the
    /// regime of anchors that almost repeat). faer's SVD recovers the small ones to the precision
    /// of the data; the Gram route loses everything below ≈ 1e-8 and its least-squares solution
    /// is far off.
    #[test]
    fn ill_conditioned_anchors_are_resolved_better_than_by_the_gram_route(
    ) -> candle_core::Result<()> {
        let (m, n) = (40usize, 8usize);
        let dev = &Device::Cpu;
        let q = |seed| -> candle_core::Result<Tensor> {
            let a = Tensor::from_vec(random(m, n, seed), (m, n), dev)?;
            Ok(svd(&a)?.u) // orthonormal columns [m, n]
        };
        let u = q(21)?;
        let v = svd(&Tensor::from_vec(random(n, n, 22), (n, n), dev)?)?.u;
        let sigma: Vec<f64> = (0..n)
            .map(|i| 10f64.powf(-(i as f64) * 12.0 / 7.0))
            .collect();
        let s = Tensor::from_vec(sigma.clone(), (1, n), dev)?;
        let a = u.broadcast_mul(&s)?.matmul(&v.t()?)?;
        let faer_s = singular_values(&a)?;
        let gram_s = gram_singular_values(&a)?;
        let rel = |got: &[f64]| -> f64 {
            got.iter()
                .zip(&sigma)
                .map(|(g, t)| ((g - t) / t).abs())
                .fold(0.0, f64::max)
        };
        let (faer_err, gram_err) = (rel(&faer_s), rel(&gram_s));
        assert!(faer_err < 1e-3, "faer relative error {faer_err}");
        assert!(
            gram_err > 1e3 * faer_err.max(1e-16),
            "gram {gram_err} vs faer {faer_err}"
        );
        // Least squares on a well-posed but ill-conditioned system (σ_min = 1e-5): the solution
        // from the SVD is accurate, the normal equations lose ~all digits.
        let sigma6: Vec<f64> = (0..n)
            .map(|i| 10f64.powf(-(i as f64) * 5.0 / 7.0))
            .collect();
        let a6 = u
            .broadcast_mul(&Tensor::from_vec(sigma6, (1, n), dev)?)?
            .matmul(&v.t()?)?;
        let x = Tensor::from_vec(random(n, 1, 23), (n, 1), dev)?;
        let b = a6.matmul(&x)?;
        let (got, rank) = lstsq(&a6, &b)?;
        assert_eq!(rank, n);
        let err = (got - &x)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(err < 1e-6, "faer lstsq error {err}");
        // The normal-equation solve through the Gram eigen-decomposition, for comparison.
        let g = a6.t()?.matmul(&a6)?;
        let e = sym_eigen(&g.flatten_all()?.to_vec1::<f64>()?, n, true)?;
        let vt = Tensor::from_vec(e.vectors, (n, n), dev)?; // rows = eigenvectors
        let inv: Vec<f64> = e.values.iter().map(|l| 1.0 / l).collect();
        let inv = Tensor::from_vec(inv, (n, 1), dev)?;
        let atb = a6.t()?.matmul(&b)?;
        let gram_x = vt.t()?.matmul(&vt.matmul(&atb)?.broadcast_mul(&inv)?)?;
        let gram_err = (gram_x - &x)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(
            gram_err > 100.0 * err.max(1e-15),
            "gram {gram_err} vs faer {err}"
        );
        Ok(())
    }
}
