//! Fast tests on tiny random models through the real loaders, one per architecture, plus the
//! bad-input cases of model folders. Weights are random: these check loading, shapes, batching
//! and masking, never quality (the real-model tests in `parity.rs` do that).

use candle_core::{DType, Device, Tensor};
use relstitch::encoder::{CpuBackend, CpuParallelism, Encoder, EncoderOptions, Pooling, Precision};
use relstitch::Error;
use serde_json::json;

mod common;
use common::tiny_folder;

const TEXTS: &[&str] = &[
    "the cat sat on the mat .",
    "a dog",
    "the dogs ran far away , far far away , the cat sat on the mat and the dog ran",
    "",
    "unknownword cat",
];

#[test]
fn every_architecture_loads_and_embeds_in_input_order() -> anyhow::Result<()> {
    for arch in ["bert", "xlm-roberta", "distilbert", "mpnet"] {
        for pooling in [Pooling::Mean, Pooling::Cls, Pooling::Max] {
            let tmp = tempfile::tempdir()?;
            tiny_folder(tmp.path(), arch, pooling, 2)?;
            let options = EncoderOptions::default()
                .with_device(relstitch::device::DeviceChoice::Cpu)
                .with_batch_size(2);
            let enc = Encoder::from_dir(tmp.path(), &options)?;
            assert_eq!(enc.identity().architecture, arch);
            assert_eq!(enc.identity().pooling, pooling);
            let all = enc.embed(TEXTS)?;
            assert_eq!(all.dims(), &[TEXTS.len(), 16], "{arch}");
            // Each text alone gives the same vector as inside a padded, length-sorted batch.
            for (i, t) in TEXTS.iter().enumerate() {
                let alone = enc.embed(&[*t])?;
                let diff = (alone - all.narrow(0, i, 1)?)?
                    .abs()?
                    .max_all()?
                    .to_scalar::<f32>()?;
                assert!(
                    diff < 1e-4,
                    "{arch} {pooling:?}: text {i} differs by {diff} when batched"
                );
            }
            // Normalised output.
            let norms = all.sqr()?.sum(1)?.sqrt()?.to_vec1::<f32>()?;
            assert!(
                norms.iter().all(|n| (n - 1.).abs() < 1e-4),
                "{arch}: {norms:?}"
            );
            // Truncation at max_seq_length = 12 tokens.
            let ids = enc.tokenize(&[TEXTS[2]])?;
            assert_eq!(ids[0].len(), 12, "{arch}");
        }
    }
    Ok(())
}

/// Row-wise cosine similarities of two `[n, d]` matrices.
fn cosines(a: &Tensor, b: &Tensor) -> anyhow::Result<Vec<f32>> {
    let (a, b) = (a.to_vec2::<f32>()?, b.to_vec2::<f32>()?);
    Ok(a.iter()
        .zip(&b)
        .map(|(x, y)| {
            let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let n = |v: &[f32]| v.iter().map(|p| p * p).sum::<f32>().sqrt();
            dot / (n(x) * n(y)).max(1e-30)
        })
        .collect())
}

#[test]
fn the_packed_encoder_matches_candle_on_every_architecture() -> anyhow::Result<()> {
    // More texts than one packed batch holds (batch size 1 × 12 tokens), of every length.
    let texts: Vec<String> = (0..23)
        .map(|i| {
            let words = [
                "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away",
            ];
            (0..i % 13)
                .map(|j| words[(i + j) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    for arch in ["bert", "xlm-roberta", "distilbert", "mpnet"] {
        for pooling in [Pooling::Mean, Pooling::Cls, Pooling::Max] {
            let tmp = tempfile::tempdir()?;
            tiny_folder(tmp.path(), arch, pooling, 2)?;
            let options = EncoderOptions::default()
                .with_device(relstitch::device::DeviceChoice::Cpu)
                .with_batch_size(1);
            let candle = Encoder::from_dir(
                tmp.path(),
                &options.clone().with_cpu_backend(CpuBackend::Candle),
            )?;
            assert_eq!(candle.backend_name(), "candle");
            let reference = candle.embed(&texts)?;
            for parallelism in [CpuParallelism::InsideOps, CpuParallelism::AcrossBatches] {
                let packed = Encoder::from_dir(
                    tmp.path(),
                    &options
                        .clone()
                        .with_cpu_backend(CpuBackend::Packed(parallelism)),
                )?;
                assert_eq!(packed.backend_name(), "packed");
                let ours = packed.embed(&texts)?;
                let cos = cosines(&reference, &ours)?;
                let worst = cos.iter().cloned().fold(f32::INFINITY, f32::min);
                // candle's DistilBERT applies the tanh approximation of GELU where Hugging Face
                // (and the packed encoder) use the exact erf form: a small, expected difference.
                let bound = if arch == "distilbert" { 0.999 } else { 0.99999 };
                assert!(
                    worst >= bound,
                    "{arch} {pooling:?} {parallelism:?}: cosine {worst} to candle's"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn reduced_precisions_run_on_every_architecture_and_are_recorded() -> anyhow::Result<()> {
    for arch in ["bert", "xlm-roberta", "distilbert", "mpnet"] {
        let tmp = tempfile::tempdir()?;
        tiny_folder(tmp.path(), arch, Pooling::Mean, 2)?;
        let options = EncoderOptions::default().with_device(relstitch::device::DeviceChoice::Cpu);
        let f32_enc = Encoder::from_dir(tmp.path(), &options)?;
        assert_eq!(f32_enc.identity().precision, Precision::F32);
        let reference = f32_enc.embed(TEXTS)?;
        for precision in [Precision::Bf16, Precision::Int8] {
            let enc = Encoder::from_dir(tmp.path(), &options.clone().with_precision(precision))?;
            assert_eq!(enc.identity().precision, precision);
            assert_eq!(
                enc.identity()
                    .to_metadata()
                    .get("precision")
                    .map(String::as_str),
                Some(precision.as_str())
            );
            let e = enc.embed(TEXTS)?;
            let worst = cosines(&reference, &e)?
                .into_iter()
                .fold(f32::INFINITY, f32::min);
            assert!(worst > 0.98, "{arch} {precision}: cosine {worst} to f32");
        }
        // Reduced precision needs the packed encoder.
        let candle_int8 = options
            .clone()
            .with_precision(Precision::Int8)
            .with_cpu_backend(CpuBackend::Candle);
        assert!(matches!(
            Encoder::from_dir(tmp.path(), &candle_int8),
            Err(Error::InvalidArgument { .. })
        ));
    }
    Ok(())
}

#[test]
fn bad_model_folders_give_typed_errors() -> anyhow::Result<()> {
    let options = EncoderOptions::default().with_device(relstitch::device::DeviceChoice::Cpu);
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("m");

    // Missing folder.
    assert!(matches!(
        Encoder::from_dir(&dir, &options),
        Err(Error::Io { .. })
    ));

    // Unknown model_type.
    tiny_folder(&dir, "bert", Pooling::Mean, 2)?;
    std::fs::write(
        dir.join("config.json"),
        json!({"model_type": "gpt9"}).to_string(),
    )?;
    match Encoder::from_dir(&dir, &options) {
        Err(Error::UnsupportedArchitecture { model_type, .. }) => assert_eq!(model_type, "gpt9"),
        other => anyhow::bail!("expected UnsupportedArchitecture, got {other:?}"),
    }

    // Corrupt weights.
    tiny_folder(&dir, "bert", Pooling::Mean, 2)?;
    std::fs::write(
        dir.join("model.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json",
    )?;
    let e = Encoder::from_dir(&dir, &options)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("model.safetensors"), "{e}");

    // Weights of the wrong shape: a checkpoint of another width.
    tiny_folder(&dir, "bert", Pooling::Mean, 2)?;
    let mut cfg = common::config("bert", 2);
    cfg["hidden_size"] = json!(32);
    std::fs::write(dir.join("config.json"), cfg.to_string())?;
    match Encoder::from_dir(&dir, &options) {
        Err(Error::ModelFolder { path, reason }) => {
            assert!(
                path.ends_with("model.safetensors") && reason.contains("do not fit"),
                "{reason}"
            )
        }
        other => anyhow::bail!("expected ModelFolder, got {other:?}"),
    }

    // Missing weights, missing tokenizer.
    tiny_folder(&dir, "bert", Pooling::Mean, 2)?;
    std::fs::remove_file(dir.join("tokenizer.json"))?;
    assert!(matches!(
        Encoder::from_dir(&dir, &options),
        Err(Error::Tokenizer { .. })
    ));
    std::fs::remove_file(dir.join("model.safetensors"))?;
    assert!(matches!(
        Encoder::from_dir(&dir, &options),
        Err(Error::ModelFolder { .. })
    ));

    // Empty input.
    tiny_folder(&dir, "bert", Pooling::Mean, 2)?;
    let enc = Encoder::from_dir(&dir, &options)?;
    let none: [&str; 0] = [];
    assert!(matches!(
        enc.embed(&none),
        Err(Error::InvalidArgument { .. })
    ));
    let _ = Tensor::zeros(1, DType::F32, &Device::Cpu)?;
    Ok(())
}
