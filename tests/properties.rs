//! Properties of the relative-representation core, as a table of invariances (latentis-style):
//! every projection × pre-transform × change of the absolute space, with the expected answer either
//! way; every vectorised projection against a slow per-row f64 reference; Procrustes and least
//! squares recovering known maps; metrics on analytic cases and against the numpy fixture.

use anyhow::Result;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use relstitch::space::projection::{
    AggregatedProjector, Aggregation, PreTransform, Projection, RelativeProjector,
};
use relstitch::space::similarity::{self, compare_spaces};
use relstitch::space::translation::{
    LatentTranslator, Scaling, TranslationMethod, TranslationOptions,
};

// ---------------------------------------------------------------------------------------------
// Small f64 matrix helpers (row-major Vec<Vec<f64>>), independent of the library.

type Mat = Vec<Vec<f64>>;

fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller.
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn random_mat(rows: usize, cols: usize, seed: u64) -> Mat {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..rows)
        .map(|_| (0..cols).map(|_| gauss(&mut rng)).collect())
        .collect()
}

fn matmul(a: &Mat, b: &Mat) -> Mat {
    let p = b[0].len();
    a.iter()
        .map(|r| {
            (0..p)
                .map(|j| r.iter().zip(b).map(|(x, brow)| x * brow[j]).sum())
                .collect()
        })
        .collect()
}

fn transpose(a: &Mat) -> Mat {
    (0..a[0].len())
        .map(|j| a.iter().map(|r| r[j]).collect())
        .collect()
}

/// A random orthogonal matrix (Gram–Schmidt of a Gaussian matrix).
fn random_orthogonal(d: usize, seed: u64) -> Mat {
    let g = random_mat(d, d, seed);
    let mut q: Mat = Vec::new();
    for v in g {
        let mut v = v;
        for _ in 0..2 {
            for u in &q {
                let p: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= p * b);
            }
        }
        let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        q.push(v.into_iter().map(|a| a / n).collect());
    }
    q
}

/// A Householder reflection `I − 2vvᵀ` with a random unit `v`.
fn random_reflection(d: usize, seed: u64) -> Mat {
    let v = &random_mat(1, d, seed)[0];
    let n2: f64 = v.iter().map(|a| a * a).sum();
    (0..d)
        .map(|i| {
            (0..d)
                .map(|j| f64::from(u8::from(i == j)) - 2.0 * v[i] * v[j] / n2)
                .collect()
        })
        .collect()
}

/// A well-conditioned invertible map `Q₁ diag(s) Q₂`, `s ∈ [0.5, 3]`.
fn random_invertible(d: usize, seed: u64) -> Mat {
    let q1 = random_orthogonal(d, seed);
    let q2 = random_orthogonal(d, seed + 1);
    let s: Mat = (0..d)
        .map(|i| {
            (0..d)
                .map(|j| {
                    if i == j {
                        0.5 + 2.5 * i as f64 / d as f64
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    matmul(&matmul(&q1, &s), &q2)
}

/// f32-exact copy of a matrix (what the library sees).
fn round32(a: &Mat) -> Mat {
    a.iter()
        .map(|r| r.iter().map(|&x| f64::from(x as f32)).collect())
        .collect()
}

fn tensor(a: &Mat) -> Result<Tensor> {
    let (n, d) = (a.len(), a[0].len());
    let v: Vec<f32> = a.iter().flatten().map(|&x| x as f32).collect();
    Ok(Tensor::from_vec(v, (n, d), &Device::Cpu)?)
}

fn to_mat(t: &Tensor) -> Result<Mat> {
    Ok(t.to_dtype(candle_core::DType::F64)?.to_vec2::<f64>()?)
}

fn max_abs_diff(a: &Mat, b: &Mat) -> f64 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

// ---------------------------------------------------------------------------------------------
// The invariance table.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Rotation,
    Reflection,
    Scale100,
    Translate20,
    Permutation,
    InvertibleLinear,
}

const CHANGES: [Change; 6] = [
    Change::Rotation,
    Change::Reflection,
    Change::Scale100,
    Change::Translate20,
    Change::Permutation,
    Change::InvertibleLinear,
];

fn apply_change(x: &Mat, change: Change) -> Mat {
    let d = x[0].len();
    let out = match change {
        Change::Rotation => matmul(x, &random_orthogonal(d, 101)),
        Change::Reflection => matmul(x, &random_reflection(d, 102)),
        Change::Scale100 => x
            .iter()
            .map(|r| r.iter().map(|v| v * 100.0).collect())
            .collect(),
        Change::Translate20 => x
            .iter()
            .map(|r| r.iter().map(|v| v + 20.0).collect())
            .collect(),
        Change::Permutation => {
            let mut perm: Vec<usize> = (0..d).collect();
            use rand::seq::SliceRandom;
            perm.shuffle(&mut ChaCha8Rng::seed_from_u64(103));
            x.iter()
                .map(|r| perm.iter().map(|&j| r[j]).collect())
                .collect()
        }
        Change::InvertibleLinear => matmul(x, &random_invertible(d, 104)),
    };
    round32(&out)
}

const N: usize = 120;
const D: usize = 16;
const K: usize = 24; // ≥ D, so that the change of basis spans the space

fn data() -> Mat {
    // Anisotropic, off-centre data: per-dimension scales and a shift, so that standard scaling and
    // centering do something.
    let x = random_mat(N, D, 7);
    round32(
        &x.iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .map(|(j, v)| v * (0.5 + j as f64 / 8.0) + 0.3)
                    .collect()
            })
            .collect(),
    )
}

/// The expected invariance of `projection` with `pre` under `change` — the table the module docs
/// state.
fn expected(projection: Projection, pre: PreTransform, change: Change) -> bool {
    use Change::*;
    let cosine_like = matches!(
        projection,
        Projection::Cosine | Projection::Angular | Projection::SparseTopK { .. }
    );
    let elementwise = matches!(
        projection,
        Projection::L1 | Projection::LInf | Projection::Lp { .. }
    );
    if projection == Projection::ChangeOfBasis {
        // Coordinates in the anchor basis absorb every invertible linear map, including the
        // per-dimension scaling of `standardize`; only translations need centering.
        return change != Translate20 || pre.center;
    }
    match change {
        InvertibleLinear => false,
        // Per-dimension standardisation does not commute with rotations.
        Rotation | Reflection => !elementwise && !pre.standardize,
        Permutation => true,
        Scale100 => cosine_like || pre.standardize || pre.l2_normalize,
        Translate20 => {
            let distance = projection == Projection::Euclidean || elementwise;
            // Distances ignore translations unless the vectors are L2-normalised uncentred.
            pre.center || (distance && !pre.l2_normalize)
        }
    }
}

fn projections() -> Vec<Projection> {
    vec![
        Projection::Cosine,
        Projection::Angular,
        Projection::Euclidean,
        Projection::L1,
        Projection::LInf,
        Projection::Lp { p: 3.0 },
        Projection::ChangeOfBasis,
        Projection::SparseTopK { k: 5, power: 8.0 },
    ]
}

fn pre_transforms() -> Vec<PreTransform> {
    let none = PreTransform::default();
    vec![
        none,
        none.with_center(true),
        none.with_standardize(true),
        none.with_center(true).with_standardize(true),
        none.with_l2_normalize(true),
    ]
}

#[test]
fn invariance_table() -> Result<()> {
    let x = data();
    let anchors = |m: &Mat| m[..K].to_vec();
    let mut checked = 0;
    let mut failures = Vec::new();
    let (mut worst_invariant, mut smallest_change) = (0f64, f64::INFINITY);
    for projection in projections() {
        for pre in pre_transforms() {
            // ChangeOfBasis after L2 normalisation is not linear any more; skip that meaningless cell.
            if projection == Projection::ChangeOfBasis && pre.l2_normalize {
                continue;
            }
            let base = RelativeProjector::fit(&tensor(&anchors(&x))?, projection, pre)?
                .project(&tensor(&x)?)?;
            let base = to_mat(&base)?;
            for change in CHANGES {
                let y = apply_change(&x, change);
                let rel = RelativeProjector::fit(&tensor(&anchors(&y))?, projection, pre)?
                    .project(&tensor(&y)?)?;
                let diff = max_abs_diff(&base, &to_mat(&rel)?);
                let want = expected(projection, pre, change);
                let ok = if want { diff <= 1e-4 } else { diff > 1e-2 };
                if want {
                    worst_invariant = worst_invariant.max(diff);
                } else {
                    smallest_change = smallest_change.min(diff);
                }
                checked += 1;
                if !ok {
                    failures.push(format!(
                        "{projection} with pre {pre} under {change:?}: expected {}, max diff {diff:e}",
                        if want { "invariant" } else { "not invariant" }
                    ));
                }
            }
        }
    }
    eprintln!(
        "{checked} cells: largest diff where invariant {worst_invariant:e}, smallest where not \
         {smallest_change:e}"
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, (8 * 5 - 1) * 6);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Vectorised = slow per-row f64 reference.

fn reference_pre(x: &Mat, anchors: &Mat, pre: PreTransform) -> (Mat, Mat) {
    let d = anchors[0].len();
    let k = anchors.len() as f64;
    let mean: Vec<f64> = (0..d)
        .map(|j| anchors.iter().map(|r| r[j]).sum::<f64>() / k)
        .collect();
    let sd: Vec<f64> = (0..d)
        .map(|j| {
            let v = anchors
                .iter()
                .map(|r| (r[j] - mean[j]).powi(2))
                .sum::<f64>()
                / k;
            if v == 0.0 {
                1.0
            } else {
                v.sqrt()
            }
        })
        .collect();
    let f = |r: &Vec<f64>| -> Vec<f64> {
        let mut v: Vec<f64> = r.clone();
        if pre.center {
            v.iter_mut().zip(&mean).for_each(|(a, m)| *a -= m);
        }
        if pre.standardize {
            v.iter_mut().zip(&sd).for_each(|(a, s)| *a /= s);
        }
        if pre.l2_normalize {
            let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            v.iter_mut().for_each(|a| *a /= n);
        }
        v
    };
    (x.iter().map(f).collect(), anchors.iter().map(f).collect())
}

fn cos(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Solves `m z = rhs` (square, by Gaussian elimination with partial pivoting).
fn solve(m: &Mat, rhs: &[f64]) -> Vec<f64> {
    let n = m.len();
    let mut a: Mat = m
        .iter()
        .zip(rhs)
        .map(|(r, b)| {
            let mut r = r.clone();
            r.push(*b);
            r
        })
        .collect();
    for c in 0..n {
        let p = (c..n)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap_or(c);
        a.swap(c, p);
        let pivot = a[c].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != c {
                let f = row[c] / pivot[c];
                row.iter_mut()
                    .zip(&pivot)
                    .skip(c)
                    .for_each(|(v, p)| *v -= f * p);
            }
        }
    }
    (0..n).map(|i| a[i][n] / a[i][i]).collect()
}

fn reference_row(x: &[f64], anchors: &Mat, projection: Projection) -> Vec<f64> {
    match projection {
        Projection::Cosine => anchors.iter().map(|a| cos(x, a)).collect(),
        Projection::Angular => anchors
            .iter()
            .map(|a| cos(x, a).clamp(-1.0, 1.0).acos() / std::f64::consts::PI)
            .collect(),
        Projection::Euclidean => anchors
            .iter()
            .map(|a| {
                x.iter()
                    .zip(a)
                    .map(|(p, q)| (p - q).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect(),
        Projection::L1 => anchors
            .iter()
            .map(|a| x.iter().zip(a).map(|(p, q)| (p - q).abs()).sum())
            .collect(),
        Projection::LInf => anchors
            .iter()
            .map(|a| {
                x.iter()
                    .zip(a)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0, f64::max)
            })
            .collect(),
        Projection::Lp { p } => anchors
            .iter()
            .map(|a| {
                x.iter()
                    .zip(a)
                    .map(|(u, v)| (u - v).abs().powf(p))
                    .sum::<f64>()
                    .powf(1.0 / p)
            })
            .collect(),
        Projection::ChangeOfBasis => {
            // k ≥ d, full column rank: the minimum-norm c with c·A = x is A (AᵀA)⁻¹ xᵀ.
            let at = transpose(anchors);
            let ata = matmul(&at, anchors);
            let z = solve(&ata, x);
            anchors
                .iter()
                .map(|a| a.iter().zip(&z).map(|(p, q)| p * q).sum())
                .collect()
        }
        Projection::SparseTopK { k, power } => {
            let c: Vec<f64> = anchors.iter().map(|a| cos(x, a)).collect();
            let mut order: Vec<usize> = (0..c.len()).collect();
            order.sort_by(|&i, &j| c[j].total_cmp(&c[i]));
            let mut out = vec![0.0; c.len()];
            for &i in &order[..k] {
                out[i] = c[i].max(0.0).powf(power);
            }
            let n = out.iter().map(|v| v * v).sum::<f64>().sqrt();
            if n > 0.0 {
                out.iter_mut().for_each(|v| *v /= n);
            }
            out
        }
    }
}

#[test]
fn vectorised_equals_per_row_reference() -> Result<()> {
    let x = data();
    let anchors = x[..K].to_vec();
    for projection in projections() {
        for pre in pre_transforms() {
            if projection == Projection::ChangeOfBasis && pre.l2_normalize {
                continue;
            }
            let fast = RelativeProjector::fit(&tensor(&anchors)?, projection, pre)?;
            let got = to_mat(&fast.project(&tensor(&x)?)?)?;
            // Also in several chunks.
            let chunked = to_mat(&fast.clone().with_max_chunk_rows(7).project(&tensor(&x)?)?)?;
            let (xp, ap) = reference_pre(&x, &anchors, pre);
            let want: Mat = xp
                .iter()
                .map(|r| reference_row(r, &ap, projection))
                .collect();
            for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                    "{projection} pre {pre}: {g} vs reference {w}"
                );
            }
            assert_eq!(
                got, chunked,
                "{projection} pre {pre}: chunking changed the result"
            );
        }
    }
    Ok(())
}

#[test]
fn aggregation_concat_and_normalized_sum() -> Result<()> {
    let x = data();
    let a = tensor(&x[..K].to_vec())?;
    let xt = tensor(&x)?;
    let ps = [Projection::Cosine, Projection::Euclidean];
    let pre = PreTransform::default();
    let cat = AggregatedProjector::fit(&a, &ps, pre, Aggregation::Concat)?;
    let out = cat.project(&xt)?;
    assert_eq!(out.dims(), &[N, 2 * K]);
    assert_eq!(cat.width(), 2 * K);
    let c = RelativeProjector::fit(&a, Projection::Cosine, pre)?.project(&xt)?;
    assert_eq!(to_mat(&out.narrow(1, 0, K)?)?, to_mat(&c)?);
    let sum = AggregatedProjector::fit(&a, &ps, pre, Aggregation::NormalizedSum)?.project(&xt)?;
    assert_eq!(sum.dims(), &[N, K]);
    // Aggregating two rotation-invariant projections stays rotation-invariant.
    let y = apply_change(&x, Change::Rotation);
    let sum_y = AggregatedProjector::fit(
        &tensor(&y[..K].to_vec())?,
        &ps,
        pre,
        Aggregation::NormalizedSum,
    )?
    .project(&tensor(&y)?)?;
    assert!(max_abs_diff(&to_mat(&sum)?, &to_mat(&sum_y)?) <= 1e-4);
    Ok(())
}

#[test]
fn normalized_concat_has_unit_parts_and_survives_rotation_and_rescaling() -> Result<()> {
    let x = data();
    let xt = tensor(&x)?;
    let ps = [Projection::Cosine, Projection::Euclidean, Projection::L1];
    let pre = PreTransform::default().with_center(true);
    let fit = |x: &Vec<Vec<f64>>| -> Result<AggregatedProjector> {
        Ok(AggregatedProjector::fit(
            &tensor(&x[..K].to_vec())?,
            &ps,
            pre,
            Aggregation::NormalizedConcat,
        )?)
    };
    let agg = fit(&x)?;
    assert_eq!(agg.width(), 3 * K);
    let out = agg.project(&xt)?;
    assert_eq!(out.dims(), &[N, 3 * K]);
    for p in 0..3 {
        let norms = out
            .narrow(1, p * K, K)?
            .sqr()?
            .sum(1)?
            .sqrt()?
            .to_vec1::<f32>()?;
        assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-4), "{norms:?}");
    }
    // Cosine and Euclidean parts are rotation-invariant; all parts are invariant to rescaling.
    let rot = apply_change(&x, Change::Rotation);
    let out_rot = fit(&rot)?.project(&tensor(&rot)?)?;
    assert!(
        max_abs_diff(
            &to_mat(&out.narrow(1, 0, 2 * K)?)?,
            &to_mat(&out_rot.narrow(1, 0, 2 * K)?)?
        ) <= 1e-4
    );
    let big = apply_change(&x, Change::Scale100);
    let out_big = fit(&big)?.project(&tensor(&big)?)?;
    assert!(max_abs_diff(&to_mat(&out)?, &to_mat(&out_big)?) <= 1e-4);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Translation.

#[test]
fn procrustes_recovers_a_rotation() -> Result<()> {
    let x = data();
    let q = random_orthogonal(D, 5);
    let y = round32(&matmul(&x, &q));
    let opts = TranslationOptions::default().with_scaling(Scaling::Isotropic);
    let map = LatentTranslator::fit_with(
        &tensor(&x)?,
        &tensor(&y)?,
        TranslationMethod::Procrustes,
        &opts,
    )?;
    assert!(max_abs_diff(&to_mat(map.matrix())?, &q) <= 1e-5, "R != Q");
    // On new points too.
    let z = random_mat(30, D, 99);
    let got = to_mat(&map.apply(&tensor(&z)?)?)?;
    assert!(max_abs_diff(&got, &matmul(&z, &q)) <= 1e-5);
    // The map is orthogonal with any scaling.
    for scaling in [Scaling::Standard, Scaling::None] {
        let m = LatentTranslator::fit_with(
            &tensor(&x)?,
            &tensor(&y)?,
            TranslationMethod::Procrustes,
            &TranslationOptions::default().with_scaling(scaling),
        )?;
        let r = to_mat(m.matrix())?;
        let rtr = matmul(&transpose(&r), &r);
        let id: Mat = (0..D)
            .map(|i| (0..D).map(|j| f64::from(u8::from(i == j))).collect())
            .collect();
        assert!(max_abs_diff(&rtr, &id) <= 1e-9, "{scaling:?}");
    }
    // Scaling::None has no centering: a rotation about the origin is still recovered exactly.
    let m = LatentTranslator::fit_with(
        &tensor(&x)?,
        &tensor(&y)?,
        TranslationMethod::Procrustes,
        &TranslationOptions::default().with_scaling(Scaling::None),
    )?;
    assert!(max_abs_diff(&to_mat(m.matrix())?, &q) <= 1e-5);
    Ok(())
}

#[test]
fn procrustes_zero_pads_different_widths() -> Result<()> {
    // Target = source embedded in a wider space, then rotated.
    let x = data();
    let wide: Mat = x
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.extend([0.0; 4]);
            r
        })
        .collect();
    let q = random_orthogonal(D + 4, 6);
    let y = round32(&matmul(&wide, &q));
    let opts = TranslationOptions::default().with_scaling(Scaling::Isotropic);
    let fwd = LatentTranslator::fit_with(
        &tensor(&x)?,
        &tensor(&y)?,
        TranslationMethod::Procrustes,
        &opts,
    )?;
    assert_eq!((fwd.source_dim(), fwd.target_dim()), (D, D + 4));
    assert!(max_abs_diff(&to_mat(&fwd.apply(&tensor(&x)?)?)?, &y) <= 1e-5);
    // And back: the wider space is truncated.
    let back = LatentTranslator::fit_with(
        &tensor(&y)?,
        &tensor(&x)?,
        TranslationMethod::Procrustes,
        &opts,
    )?;
    assert!(max_abs_diff(&to_mat(&back.apply(&tensor(&y)?)?)?, &x) <= 1e-5);
    Ok(())
}

#[test]
fn least_squares_recover_linear_and_affine_maps() -> Result<()> {
    let x = data();
    let m = random_mat(D, 10, 8);
    let lin = round32(&matmul(&x, &m));
    let aff: Mat = round32(
        &lin.iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .map(|(j, v)| v + j as f64 - 3.0)
                    .collect()
            })
            .collect(),
    );
    let z = random_mat(20, D, 9);
    for scaling in [Scaling::Standard, Scaling::Isotropic, Scaling::None] {
        let opts = TranslationOptions::default().with_scaling(scaling);
        let l = LatentTranslator::fit_with(
            &tensor(&x)?,
            &tensor(&lin)?,
            TranslationMethod::Linear,
            &opts,
        )?;
        assert!(
            max_abs_diff(&to_mat(&l.apply(&tensor(&z)?)?)?, &matmul(&z, &m)) <= 1e-4,
            "{scaling:?}"
        );
        let a = LatentTranslator::fit_with(
            &tensor(&x)?,
            &tensor(&aff)?,
            TranslationMethod::Affine,
            &opts,
        )?;
        let want: Mat = matmul(&z, &m)
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .map(|(j, v)| v + j as f64 - 3.0)
                    .collect()
            })
            .collect();
        assert!(
            max_abs_diff(&to_mat(&a.apply(&tensor(&z)?)?)?, &want) <= 1e-4,
            "{scaling:?}"
        );
        assert!(a.relative_residual(&tensor(&x)?, &tensor(&aff)?)? < 1e-5);
    }
    // Without centering a linear map cannot fit an offset; the affine one can.
    let opts = TranslationOptions::default().with_scaling(Scaling::None);
    let l = LatentTranslator::fit_with(
        &tensor(&x)?,
        &tensor(&aff)?,
        TranslationMethod::Linear,
        &opts,
    )?;
    assert!(l.relative_residual(&tensor(&x)?, &tensor(&aff)?)? > 1e-2);
    Ok(())
}

#[test]
fn translator_save_load_round_trip() -> Result<()> {
    let x = data();
    let y = round32(&matmul(&x, &random_invertible(D, 3)));
    let dir = tempfile::tempdir()?;
    for method in [
        TranslationMethod::Procrustes,
        TranslationMethod::Linear,
        TranslationMethod::Affine,
    ] {
        let map = LatentTranslator::fit(&tensor(&x)?, &tensor(&y)?, method)?;
        let p = dir.path().join(format!("{}.safetensors", method.name()));
        map.save(&p)?;
        let back = LatentTranslator::load(&p)?;
        assert_eq!(back.method(), method);
        assert_eq!(back.scaling(), Scaling::Standard);
        assert_eq!(back.num_anchors(), N);
        let a = to_mat(&map.apply(&tensor(&x)?)?)?;
        let b = to_mat(&back.apply(&tensor(&x)?)?)?;
        assert_eq!(a, b);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Metrics.

#[test]
fn a_space_against_itself() -> Result<()> {
    let x = tensor(&data())?;
    let c = compare_spaces(&x, &x, 10)?;
    assert!((c.linear_cka - 1.0).abs() < 1e-9, "{c:?}");
    assert!((c.debiased_cka - 1.0).abs() < 1e-9, "{c:?}");
    assert_eq!(c.jaccard_at_k, 1.0);
    assert_eq!(c.mutual_knn, 1.0);
    assert_eq!(c.mrr, Some(1.0));
    assert_eq!(c.top1, Some(1.0));
    assert!((c.mean_cosine.unwrap_or(0.0) - 1.0).abs() < 1e-9);
    assert_eq!((c.k, c.n), (10, N));
    // CKA and neighbourhoods ignore rotation and isotropic scaling; retrieval across the two
    // absolute spaces does not (they share no coordinates).
    let y = tensor(&round32(
        &matmul(&data(), &random_orthogonal(D, 4))
            .iter()
            .map(|r| r.iter().map(|v| v * 3.0).collect())
            .collect(),
    ))?;
    let c = compare_spaces(&x, &y, 10)?;
    assert!((c.linear_cka - 1.0).abs() < 1e-6 && (c.debiased_cka - 1.0).abs() < 1e-6);
    assert_eq!(c.jaccard_at_k, 1.0);
    assert!(c.mrr.unwrap_or(1.0) < 0.9);
    // ... but their relative representations over shared anchors do.
    let r = similarity::compare_relative(
        &x,
        &y,
        &x.narrow(0, 0, K)?,
        &y.narrow(0, 0, K)?,
        Projection::Cosine,
        PreTransform::default(),
        10,
    )?;
    assert_eq!(r.mrr, Some(1.0));
    assert!((r.mean_cosine.unwrap_or(0.0) - 1.0).abs() < 1e-6);
    // The JSON has exactly the documented keys.
    let v: serde_json::Value = serde_json::to_value(&c)?;
    let mut keys: Vec<&str> = v
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort();
    assert_eq!(
        keys,
        [
            "debiased_cka",
            "jaccard_at_k",
            "k",
            "linear_cka",
            "mean_cosine",
            "mrr",
            "mutual_knn",
            "n",
            "top1"
        ]
    );
    Ok(())
}

#[test]
fn knn_excludes_self_and_orders_by_similarity() -> Result<()> {
    let x = Tensor::new(&[[1f32, 0.], [0.9, 0.1], [0., 1.], [-1., 0.]], &Device::Cpu)?;
    let nn = similarity::knn(&x, 2)?;
    assert_eq!(nn[0], [1, 2]);
    assert_eq!(nn[3], [2, 1]);
    Ok(())
}

/// The fixture written by `scripts/metrics_reference.py`.
pub fn fixture() -> Result<serde_json::Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/metrics_reference.json"
    );
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

fn fixture_matrix(v: &serde_json::Value) -> Result<Tensor> {
    let rows: Vec<Vec<f32>> = serde_json::from_value(v.clone())?;
    let (n, d) = (rows.len(), rows[0].len());
    Ok(Tensor::from_vec(rows.concat(), (n, d), &Device::Cpu)?)
}

fn assert_matches_fixture(got: &similarity::SpaceComparison, want: &serde_json::Value) {
    let g = serde_json::to_value(got).unwrap_or_default();
    for key in [
        "linear_cka",
        "debiased_cka",
        "jaccard_at_k",
        "mrr",
        "top1",
        "mean_cosine",
        "mutual_knn",
        "k",
        "n",
    ] {
        match (g[key].as_f64(), want[key].as_f64()) {
            (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-5, "{key}: {a} vs numpy {b}"),
            (None, None) => assert!(g[key].is_null() && want[key].is_null(), "{key}"),
            (a, b) => panic!("{key}: {a:?} vs numpy {b:?}"),
        }
    }
}

#[test]
fn metrics_match_numpy_reference() -> Result<()> {
    let f = fixture()?;
    let a = fixture_matrix(&f["a"])?;
    let b = fixture_matrix(&f["b"])?;
    let k = f["k"].as_u64().unwrap_or(5) as usize;
    let abs = compare_spaces(&a, &b, k)?;
    assert_matches_fixture(&abs, &f["absolute"]);
    let rows = f["anchor_rows"].as_array().map_or(0, Vec::len);
    let rel = similarity::compare_relative(
        &a,
        &b,
        &a.narrow(0, 0, rows)?,
        &b.narrow(0, 0, rows)?,
        Projection::Cosine,
        PreTransform::default(),
        k,
    )?;
    assert_matches_fixture(&rel, &f["relative"]);
    // The individual functions agree with the struct.
    assert_eq!(similarity::linear_cka(&a, &b)?, abs.linear_cka);
    assert_eq!(similarity::jaccard_at_k(&a, &b, k)?, abs.jaccard_at_k);
    assert_eq!(similarity::mutual_knn(&a, &b, k)?, abs.mutual_knn);
    Ok(())
}
