//! Small dense linear algebra in f64 on the CPU, for what candle does not have: symmetric
//! eigen-decomposition, and from it singular values, thin SVDs and pseudo-inverses.
//!
//! The matrices involved are small (anchors × dims, dims × dims), so the O(n³) work runs on the CPU;
//! the big products (Gram matrices of many samples) are formed by the callers with candle in f64.
//!
//! The eigen-solver is the classic Householder tridiagonalisation followed by the implicit QL
//! algorithm (`tred2`/`tql2` of EISPACK, as in JAMA), laid out so that the inner loops run over
//! contiguous memory.

use candle_core::{DType, Device, Tensor};

/// An eigen-decomposition of a symmetric matrix.
#[derive(Debug, Clone)]
pub(crate) struct SymEigen {
    /// The eigenvalues, largest first.
    pub values: Vec<f64>,
    /// The eigenvectors as the rows of an `n × n` row-major matrix, in the order of `values`
    /// (empty when they were not asked for).
    pub vectors: Vec<f64>,
}

/// Eigen-decomposition of the symmetric `n × n` row-major matrix `a` (only its lower triangle is
/// read; it is symmetrised first). With `vectors = false` only the eigenvalues are computed.
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
    // `w` holds V transposed: V[r][c] lives at w[c * n + r], so JAMA's column walks are contiguous.
    let mut w = vec![0f64; n * n];
    for r in 0..n {
        for c in 0..n {
            // Symmetrise from the lower triangle: V[r][c] = A[max][min].
            let (hi, lo) = if r >= c { (r, c) } else { (c, r) };
            w[c * n + r] = a[hi * n + lo];
        }
    }
    let mut d = vec![0f64; n];
    let mut e = vec![0f64; n];
    tred2(&mut w, &mut d, &mut e, n, vectors);
    tql2(&mut w, &mut d, &mut e, n, vectors)?;
    // Sort descending; rows of `w` are now the eigenvectors (w[i*n + k] = V[k][i]).
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| d[j].total_cmp(&d[i]));
    let values = order.iter().map(|&i| d[i]).collect();
    let mut out = Vec::new();
    if vectors {
        out.reserve(n * n);
        for &i in &order {
            out.extend_from_slice(&w[i * n..(i + 1) * n]);
        }
    }
    Ok(SymEigen {
        values,
        vectors: out,
    })
}

/// Householder reduction to tridiagonal form (EISPACK tred2), on V stored transposed.
#[allow(clippy::needless_range_loop)]
fn tred2(w: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize, vectors: bool) {
    let ix = |r: usize, c: usize| c * n + r;
    for j in 0..n {
        d[j] = w[ix(n - 1, j)];
    }
    for i in (1..n).rev() {
        let mut scale = 0.0;
        let mut h = 0.0;
        for k in 0..i {
            scale += d[k].abs();
        }
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = w[ix(i - 1, j)];
                w[ix(i, j)] = 0.0;
                w[ix(j, i)] = 0.0;
            }
        } else {
            for k in 0..i {
                d[k] /= scale;
                h += d[k] * d[k];
            }
            let mut f = d[i - 1];
            let mut g = h.sqrt();
            if f > 0.0 {
                g = -g;
            }
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            for j in 0..i {
                e[j] = 0.0;
            }
            for j in 0..i {
                f = d[j];
                w[ix(j, i)] = f;
                g = e[j] + w[ix(j, j)] * f;
                // Column j of V, rows j+1..i: contiguous in `w`.
                let col = &w[j * n..j * n + i];
                for k in (j + 1)..i {
                    g += col[k] * d[k];
                    e[k] += col[k] * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                let f = d[j];
                let g = e[j];
                let col = &mut w[j * n..j * n + i];
                for k in j..i {
                    col[k] -= f * e[k] + g * d[k];
                }
                d[j] = w[ix(i - 1, j)];
                w[ix(i, j)] = 0.0;
            }
        }
        d[i] = h;
    }
    if vectors {
        // Accumulate the transformations.
        for i in 0..n - 1 {
            w[ix(n - 1, i)] = w[ix(i, i)];
            w[ix(i, i)] = 1.0;
            let h = d[i + 1];
            if h != 0.0 {
                for k in 0..=i {
                    d[k] = w[ix(k, i + 1)] / h;
                }
                for j in 0..=i {
                    let mut g = 0.0;
                    for k in 0..=i {
                        g += w[ix(k, i + 1)] * w[ix(k, j)];
                    }
                    let col = &mut w[j * n..j * n + i + 1];
                    for k in 0..=i {
                        col[k] -= g * d[k];
                    }
                }
            }
            for k in 0..=i {
                w[ix(k, i + 1)] = 0.0;
            }
        }
        for j in 0..n {
            d[j] = w[ix(n - 1, j)];
            w[ix(n - 1, j)] = 0.0;
        }
        w[ix(n - 1, n - 1)] = 1.0;
    } else {
        // The diagonal of the tridiagonal matrix sits on the diagonal of V.
        for j in 0..n {
            d[j] = w[ix(j, j)];
        }
    }
    e[0] = 0.0;
}

/// Implicit QL on the symmetric tridiagonal matrix (EISPACK tql2), on V stored transposed.
fn tql2(
    w: &mut [f64],
    d: &mut [f64],
    e: &mut [f64],
    n: usize,
    vectors: bool,
) -> candle_core::Result<()> {
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let mut f = 0.0f64;
    let mut tst1 = 0.0f64;
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n {
            if e[m].abs() <= eps * tst1 {
                break;
            }
            m += 1;
        }
        if m == n {
            // e[n-1] is 0, so this cannot happen; guard anyway.
            m = n - 1;
        }
        if m > l {
            let mut iter = 0;
            loop {
                iter += 1;
                if iter > 100 {
                    candle_core::bail!("symmetric eigen-decomposition did not converge");
                }
                let mut g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for di in d.iter_mut().take(n).skip(l + 2) {
                    *di -= h;
                }
                f += h;
                p = d[m];
                let mut c = 1.0;
                let mut c2 = c;
                let mut c3 = c;
                let el1 = e[l + 1];
                let mut s = 0.0;
                let mut s2 = 0.0;
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    if vectors {
                        // Rotate eigenvector rows i and i+1 (columns of V).
                        let (lo, hi) = w.split_at_mut((i + 1) * n);
                        let vi = &mut lo[i * n..];
                        let vi1 = &mut hi[..n];
                        for k in 0..n {
                            let h = vi1[k];
                            vi1[k] = s * vi[k] + c * h;
                            vi[k] = c * vi[k] - s * h;
                        }
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
    Ok(())
}

/// A thin singular value decomposition `A = U diag(s) Vᵀ` of an `m × n` matrix, with
/// `r = min(m, n)` singular values.
#[derive(Debug, Clone)]
pub(crate) struct Svd {
    /// `[m, r]` f64, orthonormal columns.
    pub u: Tensor,
    /// The singular values, largest first.
    pub s: Vec<f64>,
    /// `[n, r]` f64, orthonormal columns.
    pub v: Tensor,
}

/// The singular values of `a` (`[m, n]`, any float dtype), largest first: the square roots of the
/// eigenvalues of the smaller Gram matrix, formed in f64.
pub(crate) fn singular_values(a: &Tensor) -> candle_core::Result<Vec<f64>> {
    let (m, n) = a.dims2()?;
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let g = if m >= n {
        a.t()?.matmul(&a)?
    } else {
        a.matmul(&a.t()?)?
    };
    let r = m.min(n);
    let eig = sym_eigen(&g.flatten_all()?.to_vec1::<f64>()?, r, false)?;
    Ok(eig.values.iter().map(|&l| l.max(0.0).sqrt()).collect())
}

/// The thin SVD of `a` (`[m, n]`, any float dtype), computed from the eigen-decomposition of the
/// smaller Gram matrix in f64 on the CPU.
///
/// The singular vectors of singular values below the resolution of the Gram route
/// (≈ 1e-8 × the largest) are completed to an orthonormal set, so `U` and `V` always have
/// orthonormal columns, as orthogonal Procrustes needs.
pub(crate) fn svd(a: &Tensor) -> candle_core::Result<Svd> {
    let (m, n) = a.dims2()?;
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    if m < n {
        let t = svd(&a.t()?)?;
        return Ok(Svd {
            u: t.v,
            s: t.s,
            v: t.u,
        });
    }
    // m >= n: eigen of AᵀA gives V and s²; U = A V / s.
    let g = a.t()?.matmul(&a)?;
    let eig = sym_eigen(&g.flatten_all()?.to_vec1::<f64>()?, n, true)?;
    let s: Vec<f64> = eig.values.iter().map(|&l| l.max(0.0).sqrt()).collect();
    // Rows of `eig.vectors` are the columns of V.
    let vt = Tensor::from_vec(eig.vectors, (n, n), &Device::Cpu)?;
    let av = a.matmul(&vt.t()?)?; // [m, n], column i = A v_i = s_i u_i
    let av_cols = av.t()?.contiguous()?.flatten_all()?.to_vec1::<f64>()?; // column-major
    let smax = s.first().copied().unwrap_or(0.0);
    let tol = smax * 1e-7;
    let mut cols: Vec<Vec<f64>> = Vec::with_capacity(n);
    for (i, si) in s.iter().enumerate() {
        let mut c = av_cols[i * m..(i + 1) * m].to_vec();
        if *si > tol {
            for x in c.iter_mut() {
                *x /= si;
            }
        } else {
            c.iter_mut().for_each(|x| *x = 0.0);
        }
        cols.push(c);
    }
    orthonormalise_columns(&mut cols, m, &s, tol);
    let mut u_cm = Vec::with_capacity(m * n);
    for c in &cols {
        u_cm.extend_from_slice(c);
    }
    let u = Tensor::from_vec(u_cm, (n, m), &Device::Cpu)?
        .t()?
        .contiguous()?;
    let v = vt.t()?.contiguous()?;
    Ok(Svd { u, s, v })
}

/// Modified Gram–Schmidt (twice) over `cols` (each of length `m`), in order; columns whose singular
/// value is below `tol` (or that vanish) are replaced by standard basis vectors orthogonalised
/// against the others.
fn orthonormalise_columns(cols: &mut [Vec<f64>], m: usize, s: &[f64], tol: f64) {
    let mut next_basis = 0usize;
    for i in 0..cols.len() {
        let mut ok = s[i] > tol;
        if ok {
            ok = orthogonalise_against(cols, i);
        }
        while !ok && next_basis < m {
            let mut e = vec![0.0; m];
            e[next_basis] = 1.0;
            next_basis += 1;
            cols[i] = e;
            ok = orthogonalise_against(cols, i);
        }
    }
}

/// Orthogonalises `cols[i]` against `cols[..i]` (twice) and normalises it; false when it vanishes.
fn orthogonalise_against(cols: &mut [Vec<f64>], i: usize) -> bool {
    let (done, rest) = cols.split_at_mut(i);
    let c = &mut rest[0];
    let before = dot(c, c).sqrt();
    if before == 0.0 {
        return false;
    }
    for _ in 0..2 {
        for q in done.iter() {
            let p = dot(q, c);
            for (x, y) in c.iter_mut().zip(q) {
                *x -= p * y;
            }
        }
    }
    let after = dot(c, c).sqrt();
    if after <= 1e-6 * before {
        return false;
    }
    c.iter_mut().for_each(|x| *x /= after);
    true
}

/// Dot product with four accumulators.
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        acc[0] += x[0] * y[0];
        acc[1] += x[1] * y[1];
        acc[2] += x[2] * y[2];
        acc[3] += x[3] * y[3];
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

/// The rank tolerance for a matrix that came from f32 data: `10 · ε_f32 · σ_max`, the noise floor
/// f32 rounding puts under the singular values. (numpy's worst-case `max(m, n) · ε · σ_max` would
/// call one random 768 × 768 Gaussian matrix in ten rank-deficient.)
pub(crate) fn rank_tolerance(s_max: f64) -> f64 {
    10.0 * f64::from(f32::EPSILON) * s_max
}

/// Eigen-decomposition of the Gram matrix `AᵀA` (`transpose = false`, `n × n`) or `AAᵀ`
/// (`transpose = true`, `m × m`) of an f64 CPU matrix: the eigenvectors as the columns of a
/// tensor, the eigenvalues, largest first.
fn gram_eigen(a: &Tensor, transpose: bool) -> candle_core::Result<(Tensor, Vec<f64>)> {
    let g = if transpose {
        a.matmul(&a.t()?)?
    } else {
        a.t()?.matmul(a)?
    };
    let r = g.dim(0)?;
    let eig = sym_eigen(&g.flatten_all()?.to_vec1::<f64>()?, r, true)?;
    let v = Tensor::from_vec(eig.vectors, (r, r), &Device::Cpu)?
        .t()?
        .contiguous()?;
    Ok((v, eig.values))
}

/// `1/λ` for the eigenvalues of a Gram matrix whose singular values `√λ` are above
/// [`rank_tolerance`], 0 for the others; and the rank.
fn inverse_gram_values(values: &[f64]) -> (Vec<f64>, usize) {
    let smax = values.first().copied().unwrap_or(0.0).max(0.0).sqrt();
    let tol = rank_tolerance(smax);
    let inv: Vec<f64> = values
        .iter()
        .map(|&l| {
            if l.max(0.0).sqrt() > tol {
                1.0 / l
            } else {
                0.0
            }
        })
        .collect();
    let rank = inv.iter().filter(|&&v| v != 0.0).count();
    (inv, rank)
}

/// The Moore–Penrose pseudo-inverse of `a` (`[m, n]`, any float dtype) as an `[n, m]` f64 CPU
/// tensor, through the eigen-decomposition of the smaller Gram matrix; singular values at or below
/// [`rank_tolerance`] count as zero. Also returns the rank.
pub(crate) fn pinv(a: &Tensor) -> candle_core::Result<(Tensor, usize)> {
    let (m, n) = a.dims2()?;
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    if m >= n {
        // A⁺ = (AᵀA)⁺ Aᵀ = V Λ⁻¹ Vᵀ Aᵀ
        let (v, l) = gram_eigen(&a, false)?;
        let (inv, rank) = inverse_gram_values(&l);
        let inv = Tensor::from_vec(inv, (1, n), &Device::Cpu)?;
        let p = v.broadcast_mul(&inv)?.matmul(&v.t()?)?.matmul(&a.t()?)?;
        Ok((p, rank))
    } else {
        // A⁺ = Aᵀ (AAᵀ)⁺ = Aᵀ U Λ⁻¹ Uᵀ
        let (u, l) = gram_eigen(&a, true)?;
        let (inv, rank) = inverse_gram_values(&l);
        let inv = Tensor::from_vec(inv, (1, m), &Device::Cpu)?;
        let p = a.t()?.matmul(&u.broadcast_mul(&inv)?.matmul(&u.t()?)?)?;
        Ok((p, rank))
    }
}

/// The minimum-norm least-squares solution `X` of `A X ≈ B` (`a`: `[m, n]`, `b`: `[m, p]`) as an
/// `[n, p]` f64 CPU tensor, and the rank of `A`. Never forms the `[n, m]` pseudo-inverse when
/// `m ≥ n`, so many rows are cheap.
pub(crate) fn lstsq(a: &Tensor, b: &Tensor) -> candle_core::Result<(Tensor, usize)> {
    let (m, n) = a.dims2()?;
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    if m >= n {
        let (v, l) = gram_eigen(&a, false)?;
        let (inv, rank) = inverse_gram_values(&l);
        let inv = Tensor::from_vec(inv, (1, n), &Device::Cpu)?;
        let atb = a.t()?.matmul(&b)?;
        let x = v.broadcast_mul(&inv)?.matmul(&v.t()?.matmul(&atb)?)?;
        Ok((x, rank))
    } else {
        let (p, rank) = pinv(&a)?;
        Ok((p.matmul(&b)?, rank))
    }
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
}
