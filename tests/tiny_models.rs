//! Fast tests on tiny random models through the real loaders, one per architecture, plus the
//! bad-input cases of model folders. Weights are random: these check loading, shapes, batching
//! and masking, never quality (the real-model tests in `parity.rs` do that).

use candle_core::{DType, Device, Tensor};
use relstitch::encoder::{Encoder, EncoderOptions, Pooling};
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
