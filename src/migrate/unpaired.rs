//! Unpaired translation: a map from A's space to B's fitted with no paired texts, from two
//! unrelated samples of the same kind of corpus, one embedded by each model.
//!
//! The two samples are matched by **annealed entropic Gromov–Wasserstein** (GW) optimal transport
//! (Mémoli, FoCM 2011; Peyré, Cuturi & Solomon, ICML 2016; Alvarez-Melis & Jaakkola, EMNLP 2018
//! apply it to word embeddings): a transport plan `T` between the two samples is sought that makes
//! each space's intra-space cosine similarities (of centred, unit vectors) agree,
//! `min_T Σ (C_A[i,k] − C_B[j,l])² T[i,j] T[k,l]`, which needs no shared coordinates. With
//! inner-product similarities the GW gradient is `−U_A (U_Aᵀ T U_B) U_Bᵀ`, so each iteration is two
//! thin matrix products and a Sinkhorn projection (Cuturi, NIPS 2013) onto uniform marginals. GW
//! is not convex; the entropic regulariser is annealed from large to small (relative to the
//! spread of the gradient), so the plan first settles the coarse structure (the leading principal
//! directions) and then sharpens. The plan's mutual argmaxes are pseudo-pairs; then, for `rounds`
//! rounds, a Procrustes map is fitted on the pairs, A is mapped into B, and the pairs are
//! re-induced as mutual nearest neighbours under CSLS (cross-domain similarity local scaling,
//! Conneau et al., ICLR 2018).
//!
//! What it achieves on real data (docs/results/migrate.md, docs/results/unsupervised_attempts.md):
//! when the two samples hold the same texts (order unknown) it recovers the pairing for close
//! encoders (all-MiniLM-L6-v2 → all-mpnet-base-v2) but not for a more distant one
//! (multilingual-e5-small); on truly disjoint samples it keeps only part of what paired Procrustes
//! keeps. Samples larger than [`MAX_TEXTS`] are thinned evenly to that size; the cost is
//! `O(n² d)` per iteration and `O(n²)` memory.

use candle_core::{Device, Tensor};

use crate::error::CandleContext;
use crate::space::tensor::evenly_spaced;
use crate::space::translation::{LatentTranslator, TranslationMethod};
use crate::{Error, Result};

/// Fewest texts per model.
pub(crate) const MIN_TEXTS: usize = 128;
/// Most texts per model the transport runs on (larger samples are thinned evenly).
pub(crate) const MAX_TEXTS: usize = 2048;
/// Neighbours of the CSLS penalty.
const CSLS_K: usize = 10;
/// The annealing schedule: entropic regularisation, relative to the standard deviation of the
/// gradient, from `EPS_START` down to `EPS_END` in `EPS_STEPS` geometric steps.
const EPS_START: f64 = 1.0;
const EPS_END: f64 = 0.01;
const EPS_STEPS: usize = 12;
/// GW iterations (gradient, then Sinkhorn projection) per step of the schedule.
const GW_ITERS: usize = 15;
/// Sinkhorn iterations at most, and the relative change of the column scaling that stops them.
const SINKHORN_ITERS: usize = 200;
const SINKHORN_TOL: f64 = 1e-6;

/// `x` centred and with unit rows.
fn unit_centred_t(x: &Tensor) -> Result<Tensor> {
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
    c.broadcast_div(&n).context(ctx)
}

/// `x` centred and with unit rows, as row vectors.
fn unit_centred(x: &Tensor) -> Result<Vec<Vec<f32>>> {
    rows_of(&unit_centred_t(x)?)
}

fn rows_of(t: &Tensor) -> Result<Vec<Vec<f32>>> {
    t.to_vec2::<f32>().context(|| "normalising".to_string())
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

/// Runs `f(first_row, rows)` on contiguous blocks of `0..n` rows of `width` values, one block
/// per thread (one thread when the whole is too small to be worth spawning threads for).
fn par_rows<R: Send>(n: usize, width: usize, f: impl Fn(usize, usize) -> R + Sync) -> Vec<R> {
    let threads = if n.saturating_mul(width) < 1 << 18 {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, 16)
            .min(n.max(1))
    };
    let block = n.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = (0..n)
            .step_by(block)
            .map(|start| scope.spawn(move || f(start, block.min(n - start))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// The entropic optimal-transport plan (`n × m`, row-major, total mass 1) between uniform
/// marginals for the cost `g`, by Sinkhorn's iterations; `eps` is relative to the standard
/// deviation of `g` (a constant `g` gives the uniform plan).
///
/// Stabilised by absorption (Schmitzer, SIAM J. Sci. Comput. 2019): the kernel is
/// `exp(−(g − α_i − β_j) / scale)` with dual potentials `α`, `β`; when a scaling factor leaves
/// `[e^−ABSORB, e^ABSORB]` it is folded into its potential and the kernel recomputed. So a column
/// whose every entry underflows at a small `eps` still receives its mass, and no scaling
/// overflows. The iterations stop when every row's mass is within `SINKHORN_TOL` (relative) of
/// its marginal, the columns being exact after their update; the last row update makes the rows
/// exact.
fn sinkhorn(g: &[f32], n: usize, m: usize, eps: f64) -> Vec<f64> {
    const ABSORB: f64 = 50.0;
    let len = g.len().max(1) as f64;
    let mean = g.iter().map(|&v| f64::from(v)).sum::<f64>() / len;
    let var = g
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / len;
    let scale = (eps * var.sqrt()).max(1e-300);
    // Potentials, in units of the cost; α starts at each row's minimum, so that every row of
    // the first kernel has an entry 1.
    let mut alpha: Vec<f64> = g
        .chunks_exact(m.max(1))
        .map(|row| f64::from(row.iter().copied().fold(f32::INFINITY, f32::min)))
        .collect();
    let mut beta = vec![0.0f64; m];
    let kernel = |alpha: &[f64], beta: &[f64]| -> Vec<f64> {
        par_rows(n, m, |start, rows| {
            let mut out = Vec::with_capacity(rows * m);
            for (row, ai) in g[start * m..(start + rows) * m]
                .chunks_exact(m)
                .zip(&alpha[start..start + rows])
            {
                out.extend(
                    row.iter()
                        .zip(beta)
                        .map(|(&v, bj)| (-(f64::from(v) - ai - bj) / scale).exp()),
                );
            }
            out
        })
        .concat()
    };
    let mut k = kernel(&alpha, &beta);
    let (a, b) = (1.0 / n as f64, 1.0 / m as f64);
    // K v, row by row.
    let kv = |k: &[f64], v: &[f64]| -> Vec<f64> {
        par_rows(n, m, |start, rows| {
            k[start * m..(start + rows) * m]
                .chunks_exact(m)
                .map(|row| row.iter().zip(v).map(|(x, y)| x * y).sum::<f64>())
                .collect::<Vec<f64>>()
        })
        .concat()
    };
    // Kᵀ u, by blocks of columns, each summed over the rows in order: the same result whatever
    // the number of threads.
    let ktu = |k: &[f64], u: &[f64]| -> Vec<f64> {
        par_rows(m, n, |c0, cols| {
            let mut acc = vec![0.0f64; cols];
            for (row, ui) in k.chunks_exact(m).zip(u) {
                acc.iter_mut()
                    .zip(&row[c0..c0 + cols])
                    .for_each(|(s, x)| *s += x * ui);
            }
            acc
        })
        .concat()
    };
    let (lo, hi) = ((-ABSORB).exp(), ABSORB.exp());
    let mut u = vec![1.0f64; n];
    let mut v = vec![1.0f64; m];
    for _ in 0..SINKHORN_ITERS {
        let sums = kv(&k, &v);
        let err = u
            .iter()
            .zip(&sums)
            .map(|(ui, s)| (ui * s - a).abs() / a)
            .fold(0.0f64, f64::max);
        if err < SINKHORN_TOL {
            break;
        }
        u = sums.iter().map(|s| a / s.max(1e-300)).collect();
        v = ktu(&k, &u).iter().map(|s| b / s.max(1e-300)).collect();
        let out = |x: &f64| !(lo..=hi).contains(x);
        if u.iter().any(out) || v.iter().any(out) {
            alpha
                .iter_mut()
                .zip(&u)
                .for_each(|(p, x)| *p += scale * x.ln());
            beta.iter_mut()
                .zip(&v)
                .for_each(|(p, x)| *p += scale * x.ln());
            k = kernel(&alpha, &beta);
            u.iter_mut().for_each(|x| *x = 1.0);
            v.iter_mut().for_each(|x| *x = 1.0);
        }
    }
    u = kv(&k, &v).iter().map(|s| a / s.max(1e-300)).collect();
    for (row, ui) in k.chunks_exact_mut(m).zip(&u) {
        row.iter_mut()
            .zip(&v)
            .for_each(|(x, vj)| *x = (*x * ui) * vj);
    }
    k
}

/// The annealed entropic Gromov–Wasserstein plan (`n × m`, row-major) between the centred unit
/// rows `ua` (`[n, d_a]`) and `ub` (`[m, d_b]`), for the square loss on their cosine similarities.
fn gw_plan(ua: &Tensor, ub: &Tensor) -> Result<Vec<f64>> {
    let ctx = || "Gromov-Wasserstein".to_string();
    let (n, m) = (ua.dim(0).context(ctx)?, ub.dim(0).context(ctx)?);
    let uat = ua.t().and_then(|t| t.contiguous()).context(ctx)?;
    let ubt = ub.t().and_then(|t| t.contiguous()).context(ctx)?;
    let mut plan = vec![1.0 / (n * m) as f64; n * m];
    for step in 0..EPS_STEPS {
        let eps =
            EPS_START * (EPS_END / EPS_START).powf(step as f64 / (EPS_STEPS.max(2) - 1) as f64);
        for _ in 0..GW_ITERS {
            // The gradient of the GW square loss, up to constants: −C_A T C_B with
            // C = U Uᵀ, computed as −U_A (U_Aᵀ T U_B) U_Bᵀ (T scaled to rows of mass 1).
            let t = Tensor::from_vec(
                plan.iter()
                    .map(|&p| (p * n as f64) as f32)
                    .collect::<Vec<f32>>(),
                (n, m),
                &Device::Cpu,
            )
            .context(ctx)?;
            let g = uat
                .matmul(&t)
                .and_then(|x| x.matmul(ub))
                .and_then(|cross| ua.matmul(&cross))
                .and_then(|x| x.matmul(&ubt))
                .and_then(|x| x.neg())
                .and_then(|x| x.flatten_all())
                .and_then(|x| x.to_vec1::<f32>())
                .context(ctx)?;
            let next = sinkhorn(&g, n, m, eps);
            let moved: f64 = next.iter().zip(&plan).map(|(x, y)| (x - y).abs()).sum();
            plan = next;
            if moved < 1e-7 {
                break;
            }
        }
    }
    Ok(plan)
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

/// Pseudo-pairs `(row of xa, row of xb)` between `xa` (`[na, d_a]`) and `xb` (`[nb, d_b]`),
/// found without any paired sample: annealed entropic Gromov–Wasserstein, then `rounds` rounds of
/// Procrustes and CSLS mutual nearest neighbours (see the module docs). Deterministic.
///
/// # Errors
/// [`Error::InvalidArgument`] when either side has fewer than [`MIN_TEXTS`] rows, or no mutual
/// pairs are found.
pub(crate) fn match_spaces(xa: &Tensor, xb: &Tensor, rounds: usize) -> Result<Vec<(usize, usize)>> {
    let ctx = || "unpaired matching".to_string();
    let (na, nb) = (xa.dim(0).context(ctx)?, xb.dim(0).context(ctx)?);
    for (n, side) in [(na, "source"), (nb, "target")] {
        if n < MIN_TEXTS {
            return Err(Error::invalid(
                format!("{side} corpus"),
                format!("{n} texts: unpaired matching needs at least {MIN_TEXTS} per model"),
            ));
        }
    }
    let (rows_a, rows_b) = (evenly_spaced(na, MAX_TEXTS), evenly_spaced(nb, MAX_TEXTS));
    let take = |t: &Tensor, rows: &[usize]| crate::space::anchors::gather_rows(t, rows, "corpus");
    let (xa, xb) = (take(xa, &rows_a)?, take(xb, &rows_b)?);
    let (ta, tb) = (unit_centred_t(&xa)?, unit_centred_t(&xb)?);
    let plan = gw_plan(&ta, &tb)?;
    let m = rows_b.len();
    let scale = (rows_a.len() * m) as f64;
    let plan: Vec<Vec<f32>> = plan
        .chunks_exact(m)
        .map(|r| r.iter().map(|&p| (p * scale) as f32).collect())
        .collect();
    let mut pairs = mutual_pairs(&plan, false);
    drop(plan);
    let ub = rows_of(&tb)?;
    for _ in 0..rounds {
        if pairs.len() < 2 {
            break;
        }
        let map = LatentTranslator::fit(
            &take(&xa, &pairs.iter().map(|p| p.0).collect::<Vec<_>>())?,
            &take(&xb, &pairs.iter().map(|p| p.1).collect::<Vec<_>>())?,
            TranslationMethod::Procrustes,
        )?;
        let moved = unit_centred(&map.apply(&xa)?)?;
        pairs = mutual_pairs(&sims(&moved, &ub)?, true);
    }
    if pairs.len() < 2 {
        return Err(Error::invalid(
            "unpaired matching",
            "found no mutual pairs between the two corpora; give larger samples of the same kind of text",
        ));
    }
    Ok(pairs
        .into_iter()
        .map(|(i, j)| (rows_a[i], rows_b[j]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of values in [-1, 1).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
    }

    /// `n` points in `d` dimensions: uneven clusters with anisotropic spread (a corpus has
    /// topics of different sizes), so the similarity structure has no symmetry.
    fn clustered(n: usize, d: usize, rng: &mut Lcg) -> Vec<f32> {
        let centres: Vec<Vec<f32>> = (0..7)
            .map(|_| (0..d).map(|_| 2.0 * rng.next()).collect())
            .collect();
        (0..n)
            .flat_map(|i| {
                // Cluster sizes grow with the index: cluster c takes a share ∝ c + 1.
                let c = (((8 * 7 * i / n) as f64).sqrt() as usize).min(6);
                let centre = centres[c].clone();
                let noise: Vec<f32> = (0..d)
                    .map(|k| rng.next() * (0.9 / (1.0 + k as f32 * 0.4)))
                    .collect();
                centre
                    .into_iter()
                    .zip(noise)
                    .map(|(a, b)| a + b)
                    .collect::<Vec<f32>>()
            })
            .collect()
    }

    /// A `d_a × d_b` matrix with orthonormal rows (`d_a ≤ d_b`), by Gram–Schmidt.
    fn semi_orthogonal(d_a: usize, d_b: usize, rng: &mut Lcg) -> Vec<f32> {
        let mut rows: Vec<Vec<f32>> = Vec::new();
        while rows.len() < d_a {
            let mut v: Vec<f32> = (0..d_b).map(|_| rng.next()).collect();
            for r in &rows {
                let dot: f32 = v.iter().zip(r).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(r).for_each(|(a, b)| *a -= dot * b);
            }
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
            if norm > 1e-3 {
                rows.push(v.iter().map(|a| a / norm).collect());
            }
        }
        rows.concat()
    }

    #[test]
    fn recovers_a_hidden_rotation_and_order_without_pairs(
    ) -> std::result::Result<(), Box<dyn std::error::Error>> {
        let (n, d_a, d_b) = (240, 12, 16);
        let mut rng = Lcg(7);
        let a = Tensor::from_vec(clustered(n, d_a, &mut rng), (n, d_a), &Device::Cpu)?;
        let q = Tensor::from_vec(
            semi_orthogonal(d_a, d_b, &mut rng),
            (d_a, d_b),
            &Device::Cpu,
        )?;
        // B's row j is A's row order[j], rotated into a wider space, with a little noise.
        let order: Vec<u32> = (0..n as u32).map(|j| (j * 97 + 13) % n as u32).collect();
        let noise: Vec<f32> = (0..n * d_b).map(|_| 0.01 * rng.next()).collect();
        let b = a
            .index_select(&Tensor::new(order.as_slice(), &Device::Cpu)?, 0)?
            .matmul(&q)?
            .add(&Tensor::from_vec(noise, (n, d_b), &Device::Cpu)?)?;
        let pairs = match_spaces(&a, &b, 5)?;
        let correct = pairs
            .iter()
            .filter(|&&(i, j)| order[j] as usize == i)
            .count();
        assert!(
            pairs.len() >= n * 8 / 10 && correct >= pairs.len() * 95 / 100,
            "{} pairs, {correct} correct",
            pairs.len()
        );
        // Deterministic.
        assert_eq!(pairs, match_spaces(&a, &b, 5)?);
        Ok(())
    }

    #[test]
    fn sinkhorn_plans_have_uniform_marginals() {
        let (n, m) = (5, 7);
        let g: Vec<f32> = (0..n * m).map(|i| ((i * 37) % 11) as f32 * 0.1).collect();
        // (Rows are exact after the last row scaling; columns within Sinkhorn's tolerance.)
        for eps in [1.0, 0.3] {
            let plan = sinkhorn(&g, n, m, eps);
            for row in plan.chunks_exact(m) {
                assert!((row.iter().sum::<f64>() - 1.0 / n as f64).abs() < 1e-9);
            }
            for j in 0..m {
                let col: f64 = (0..n).map(|i| plan[i * m + j]).sum();
                assert!((col - 1.0 / m as f64).abs() < 1e-6, "{col}");
            }
        }
        // A constant cost gives the uniform plan.
        let flat = sinkhorn(&[0.5; 35], n, m, 0.1);
        assert!(flat.iter().all(|&p| (p - 1.0 / 35.0).abs() < 1e-12));
    }

    #[test]
    fn sinkhorn_fills_columns_whose_kernel_underflows() {
        // A near-permutation cost at a small eps: rows 0..7 all prefer column 0, so columns
        // 1..7 are far from every row's minimum and their kernel entries underflow to 0.
        let n = 60;
        let g: Vec<f32> = (0..n * n)
            .map(|p| {
                let (i, j) = (p / n, p % n);
                let best = if i < 7 { 0 } else { i };
                if j == best {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        let plan = sinkhorn(&g, n, n, 0.01);
        assert!(plan.iter().all(|p| p.is_finite()));
        // (Sinkhorn converges slowly at so small an eps: every column within 1 % of its mass
        // after the iterations allowed, where without stabilisation six columns get none.)
        for j in 0..n {
            let col: f64 = (0..n).map(|i| plan[i * n + j]).sum();
            assert!((col * n as f64 - 1.0).abs() < 0.01, "column {j}: {col}");
        }
        for row in plan.chunks_exact(n) {
            assert!((row.iter().sum::<f64>() - 1.0 / n as f64).abs() < 1e-9);
        }
    }

    #[test]
    fn refuses_small_samples() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let small = Tensor::zeros((MIN_TEXTS - 1, 4), candle_core::DType::F32, &Device::Cpu)?;
        let ok = Tensor::zeros((MIN_TEXTS, 4), candle_core::DType::F32, &Device::Cpu)?;
        for (a, b) in [(&small, &ok), (&ok, &small)] {
            assert!(matches!(
                match_spaces(a, b, 1),
                Err(Error::InvalidArgument { .. })
            ));
        }
        Ok(())
    }
}
