//! Bad input to the relative-representation core must give a typed error — never a panic and never
//! a silent NaN.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use relstitch::space::anchors::{diagnose, AnchorPool, AnchorSet, AnchorStrategy};
use relstitch::space::projection::{PreTransform, Projection, RelativeProjector};
use relstitch::space::similarity;
use relstitch::space::translation::{LatentTranslator, TranslationMethod};
use relstitch::Error;

fn randn(n: usize, d: usize) -> Result<Tensor> {
    Ok(Tensor::randn(0f32, 1., (n, d), &Device::Cpu)?)
}

/// With one NaN or infinity at (r, c).
fn poisoned(n: usize, d: usize, r: usize, c: usize, v: f32) -> Result<Tensor> {
    let mut x = randn(n, d)?.to_vec2::<f32>()?;
    x[r][c] = v;
    Ok(Tensor::new(x, &Device::Cpu)?)
}

/// Asserts an `InvalidArgument` whose message contains every needle.
#[track_caller]
fn invalid<T: std::fmt::Debug>(r: relstitch::Result<T>, needles: &[&str]) {
    match r {
        Err(e @ Error::InvalidArgument { .. }) => {
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "`{msg}` does not mention `{n}`");
            }
        }
        other => panic!("expected InvalidArgument mentioning {needles:?}, got {other:?}"),
    }
}

/// Asserts an `Error::Shape` whose message contains every needle.
#[track_caller]
fn shape<T: std::fmt::Debug>(r: relstitch::Result<T>, needles: &[&str]) {
    match r {
        Err(e @ Error::Shape { .. }) => {
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "`{msg}` does not mention `{n}`");
            }
        }
        other => panic!("expected Error::Shape mentioning {needles:?}, got {other:?}"),
    }
}

const NONE: PreTransform = PreTransform::NONE;

#[test]
fn projector_rejects_bad_anchors() -> Result<()> {
    let fit = |a: &Tensor, p: Projection| RelativeProjector::fit(a, p, NONE);
    // Too few anchors, wrong ranks, wrong dtype.
    invalid(
        fit(&randn(1, 4)?, Projection::Cosine),
        &["at least 2 anchors"],
    );
    shape(
        fit(
            &Tensor::zeros(4, DType::F32, &Device::Cpu)?,
            Projection::Cosine,
        ),
        &["matrix"],
    );
    shape(
        fit(
            &Tensor::zeros((2, 2, 2), DType::F32, &Device::Cpu)?,
            Projection::Cosine,
        ),
        &["matrix"],
    );
    invalid(
        fit(
            &Tensor::zeros((3, 2), DType::U32, &Device::Cpu)?,
            Projection::Cosine,
        ),
        &["floating"],
    );
    // NaN / Inf.
    invalid(
        fit(&poisoned(5, 4, 2, 1, f32::NAN)?, Projection::Cosine),
        &["non-finite"],
    );
    invalid(
        fit(&poisoned(5, 4, 0, 3, f32::INFINITY)?, Projection::Euclidean),
        &["non-finite"],
    );
    // Duplicate anchors.
    let dup = Tensor::new(&[[1f32, 2.], [3., 4.], [1., 2.]], &Device::Cpu)?;
    invalid(
        fit(&dup, Projection::L1),
        &["anchors 0 and 2 are identical"],
    );
    // A zero anchor is fine for distances, not for cosine.
    let zero = Tensor::new(&[[1f32, 2.], [0., 0.], [3., 1.]], &Device::Cpu)?;
    invalid(fit(&zero, Projection::Cosine), &["row 1 is a zero vector"]);
    invalid(fit(&zero, Projection::Angular), &["zero vector"]);
    invalid(
        fit(&zero, Projection::SparseTopK { k: 1, power: 2.0 }),
        &["zero vector"],
    );
    assert!(fit(&zero, Projection::Euclidean).is_ok());
    // An anchor equal to the anchors' mean becomes zero after centering.
    let mean = Tensor::new(
        &[[1f32, 1.], [0., 0.], [-1., -1.], [2., -2.], [-2., 2.]],
        &Device::Cpu,
    )?;
    invalid(
        RelativeProjector::fit(&mean, Projection::Cosine, NONE.with_center(true)),
        &["row 1 is a zero vector", "after the pre-transform"],
    );
    invalid(
        RelativeProjector::fit(&zero, Projection::Euclidean, NONE.with_l2_normalize(true)),
        &["zero vector", "L2 normalisation"],
    );
    // Projection parameters.
    invalid(
        fit(&randn(4, 3)?, Projection::SparseTopK { k: 5, power: 8.0 }),
        &["only 4 anchors"],
    );
    invalid(
        fit(&randn(4, 3)?, Projection::SparseTopK { k: 0, power: 8.0 }),
        &["at least 1"],
    );
    invalid(
        fit(
            &randn(4, 3)?,
            Projection::SparseTopK {
                k: 2,
                power: f64::NAN,
            },
        ),
        &["power"],
    );
    invalid(
        fit(&randn(4, 3)?, Projection::Lp { p: 0.5 }),
        &["at least 1"],
    );
    invalid(
        fit(&randn(4, 3)?, Projection::Lp { p: f64::INFINITY }),
        &["linf"],
    );
    // Change of basis needs independent anchors.
    let dependent = Tensor::new(&[[1f32, 0., 0.], [0., 1., 0.], [1., 1., 0.]], &Device::Cpu)?;
    invalid(fit(&dependent, Projection::ChangeOfBasis), &["rank 2 < 3"]);
    Ok(())
}

#[test]
fn projector_rejects_bad_inputs() -> Result<()> {
    let anchors = randn(6, 4)?;
    let p = RelativeProjector::fit(&anchors, Projection::Cosine, NONE)?;
    invalid(
        p.project(&randn(3, 5)?),
        &["5 dimensions", "anchors have 4"],
    );
    shape(
        p.project(&Tensor::zeros((2, 3, 4), DType::F32, &Device::Cpu)?),
        &["matrix"],
    );
    invalid(
        p.project(&poisoned(10, 4, 7, 2, f32::NAN)?),
        &["row 7", "NaN"],
    );
    invalid(
        p.project(&poisoned(10, 4, 3, 0, f32::NEG_INFINITY)?),
        &["row 3"],
    );
    // A zero sample has no cosine — also when it is found in a later chunk.
    let mut x = randn(50, 4)?.to_vec2::<f32>()?;
    x[41] = vec![0.0; 4];
    let x = Tensor::new(x, &Device::Cpu)?;
    invalid(p.project(&x), &["row 41 is a zero vector"]);
    invalid(
        p.clone().with_max_chunk_rows(8).project(&x),
        &["row 41 is a zero vector"],
    );
    // Distances accept zero rows.
    let e = RelativeProjector::fit(&anchors, Projection::Euclidean, NONE)?;
    let out = e.project(&x)?;
    assert!(out
        .flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .all(|v| v.is_finite()));
    invalid(e.project(&poisoned(5, 4, 4, 1, f32::NAN)?), &["row 4"]);
    let l1 = RelativeProjector::fit(&anchors, Projection::L1, NONE)?;
    invalid(
        l1.project(&poisoned(5, 4, 2, 1, f32::INFINITY)?),
        &["row 2"],
    );
    let cob = RelativeProjector::fit(&anchors, Projection::ChangeOfBasis, NONE)?;
    invalid(cob.project(&poisoned(5, 4, 0, 0, f32::NAN)?), &["row 0"]);
    // Values whose squares overflow f32 are refused rather than turned into inf/NaN.
    invalid(
        p.project(&Tensor::new(&[[1e30f32, 1e30, 0., 0.]], &Device::Cpu)?),
        &["row 0"],
    );
    Ok(())
}

#[test]
fn sparse_rows_without_positive_similarity_stay_zero() -> Result<()> {
    // The only sample points away from every anchor: all top-k similarities are negative.
    let anchors = Tensor::new(&[[1f32, 0.], [0.8, 0.6]], &Device::Cpu)?;
    let x = Tensor::new(&[[-1f32, -0.1]], &Device::Cpu)?;
    let out = RelativeProjector::fit(&anchors, Projection::SparseTopK { k: 1, power: 8.0 }, NONE)?
        .project(&x)?
        .to_vec2::<f32>()?;
    assert_eq!(out, [[0.0, 0.0]]);
    Ok(())
}

#[test]
fn translation_rejects_bad_input() -> Result<()> {
    let m = TranslationMethod::Procrustes;
    shape(
        LatentTranslator::fit(&randn(5, 3)?, &randn(6, 3)?, m),
        &["5 rows", "6"],
    );
    invalid(
        LatentTranslator::fit(&randn(1, 3)?, &randn(1, 3)?, m),
        &["at least 2"],
    );
    invalid(
        LatentTranslator::fit(&poisoned(5, 3, 1, 1, f32::NAN)?, &randn(5, 3)?, m),
        &["non-finite"],
    );
    invalid(
        LatentTranslator::fit(&randn(5, 3)?, &poisoned(5, 3, 1, 1, f32::INFINITY)?, m),
        &["non-finite"],
    );
    shape(
        LatentTranslator::fit(
            &randn(5, 3)?,
            &Tensor::zeros(5, DType::F32, &Device::Cpu)?,
            m,
        ),
        &["matrix"],
    );
    let t = LatentTranslator::fit(&randn(8, 3)?, &randn(8, 4)?, TranslationMethod::Linear)?;
    invalid(t.apply(&randn(2, 4)?), &["4 dimensions", "3-dimensional"]);
    invalid(t.apply(&poisoned(3, 3, 2, 0, f32::NAN)?), &["row 2"]);
    // Loading something that is not a translator.
    let dir = tempfile::tempdir()?;
    let p = dir.path().join("x.safetensors");
    std::fs::write(&p, b"not safetensors")?;
    assert!(matches!(
        LatentTranslator::load(&p),
        Err(Error::Safetensors { .. })
    ));
    relstitch::io::write_safetensors(&p, &[("embeddings", &randn(2, 2)?)], &Default::default())?;
    let err = LatentTranslator::load(&p)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("not a latent translation"), "{err}");
    assert!(matches!(
        LatentTranslator::load(&dir.path().join("missing")),
        Err(Error::Io { .. })
    ));
    Ok(())
}

#[test]
fn metrics_reject_bad_input() -> Result<()> {
    let a = randn(10, 4)?;
    invalid(
        similarity::compare_spaces(&a, &randn(11, 4)?, 3),
        &["10 rows", "11"],
    );
    invalid(similarity::compare_spaces(&a, &a, 0), &["k = 0"]);
    invalid(
        similarity::compare_spaces(&a, &a, 10),
        &["k = 10", "n = 10"],
    );
    invalid(similarity::knn(&a, 12), &["k = 12"]);
    invalid(
        similarity::debiased_cka(&randn(3, 4)?, &randn(3, 4)?),
        &["at least 4"],
    );
    invalid(
        similarity::linear_cka(&randn(1, 4)?, &randn(1, 4)?),
        &["at least 2"],
    );
    invalid(
        similarity::compare_spaces(&poisoned(10, 4, 5, 2, f32::NAN)?, &a, 3),
        &["non-finite"],
    );
    let constant = Tensor::ones((10, 4), DType::F32, &Device::Cpu)?;
    invalid(similarity::linear_cka(&constant, &a), &["zero variance"]);
    invalid(similarity::debiased_cka(&constant, &a), &["undefined"]);
    let mut z = a.to_vec2::<f32>()?;
    z[6] = vec![0.0; 4];
    let z = Tensor::new(z, &Device::Cpu)?;
    invalid(similarity::knn(&z, 3), &["row 6 is a zero vector"]);
    invalid(similarity::retrieval(&a, &z), &["row 6"]);
    invalid(similarity::mean_cosine(&z, &a), &["row 6"]);
    shape(similarity::retrieval(&a, &randn(10, 5)?), &["equal widths"]);
    shape(
        similarity::mean_cosine(&a, &randn(10, 5)?),
        &["equal widths"],
    );
    shape(
        similarity::compare_relative(
            &a,
            &a,
            &randn(3, 4)?,
            &randn(4, 4)?,
            Projection::Cosine,
            NONE,
            3,
        ),
        &["3 anchors", "4"],
    );
    // Different widths: the comparison still works, retrieval is None.
    let c = similarity::compare_spaces(&a, &randn(10, 7)?, 3)?;
    assert!(c.mrr.is_none() && c.top1.is_none() && c.mean_cosine.is_none());
    Ok(())
}

#[test]
fn anchors_reject_bad_input() -> Result<()> {
    invalid(AnchorSet::try_new(vec![]), &["no anchor samples"]);
    invalid(AnchorSet::from_rows(&[1, 2, 1]), &["duplicate"]);
    invalid(AnchorSet::from_texts(&["a", "b", "a"]), &["duplicate"]);
    invalid(
        AnchorSet::from_rows(&[0, 5])?.latents(&randn(5, 2)?),
        &["row 5 is out of range"],
    );
    invalid(AnchorSet::from_texts(&["a"])?.rows(), &["no row"]);
    let pool = AnchorPool::new(10);
    let uniform = AnchorStrategy::Uniform { seed: 0 };
    invalid(uniform.select_rows(&pool, 0), &["at least 1"]);
    invalid(
        uniform.select_rows(&pool, 11),
        &["11 anchors", "10 samples"],
    );
    invalid(
        AnchorStrategy::Stratified { seed: 0 }.select_rows(&pool, 3),
        &["labels"],
    );
    invalid(
        AnchorStrategy::FarthestPoint { seed: 0 }.select_rows(&pool, 3),
        &["latents"],
    );
    let labels: Vec<String> = (0..9).map(|i| i.to_string()).collect();
    invalid(
        AnchorStrategy::Stratified { seed: 0 }.select_rows(&pool.with_labels(&labels), 3),
        &["9 labels"],
    );
    let space = randn(9, 3)?;
    invalid(
        uniform.select_rows(&pool.with_space(&space), 3),
        &["9 rows"],
    );
    let nan = poisoned(10, 3, 4, 0, f32::NAN)?;
    invalid(
        AnchorStrategy::KMeans {
            seed: 0,
            iterations: 3,
        }
        .select_rows(&AnchorPool::from_space(&nan), 3),
        &["non-finite"],
    );
    invalid(diagnose(&randn(1, 3)?), &["at least 2 anchors"]);
    invalid(diagnose(&poisoned(4, 3, 0, 0, f32::NAN)?), &["non-finite"]);
    Ok(())
}
