//! Fast tests on tiny random models through the real loaders, one per architecture, plus the
//! bad-input cases of model folders. Weights are random: these check loading, shapes, batching
//! and masking, never quality (the real-model tests in `parity.rs` do that).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use relstitch::encoder::{
    ArchConfig, Architecture, Encoder, EncoderOptions, Pooling, SentenceTransformersConfig,
};
use relstitch::Error;
use serde_json::json;

const WORDS: &[&str] = &[
    "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away", "##s", "##ing", ".", ",",
];

/// A WordPiece tokenizer.json whose special tokens fit every architecture here:
/// id 0 = [CLS], 1 = [PAD], 2 = [SEP], 3 = [UNK].
fn tokenizer_json() -> serde_json::Value {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["[CLS]", "[PAD]", "[SEP]", "[UNK]"]
        .iter()
        .chain(WORDS)
        .enumerate()
    {
        vocab.insert(t.to_string(), json!(i));
    }
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [0], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab}
    })
}

fn config(model_type: &str) -> serde_json::Value {
    let vocab = 4 + WORDS.len();
    match model_type {
        "distilbert" => json!({
            "model_type": "distilbert", "vocab_size": vocab, "dim": 16, "n_layers": 2, "n_heads": 2,
            "hidden_dim": 32, "activation": "gelu", "max_position_embeddings": 64,
            "initializer_range": 0.02, "pad_token_id": 1
        }),
        "xlm-roberta" => json!({
            "model_type": "xlm-roberta", "vocab_size": vocab, "hidden_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": 66, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
            "pad_token_id": 1, "position_embedding_type": "absolute"
        }),
        "mpnet" => json!({
            "model_type": "mpnet", "vocab_size": vocab, "hidden_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu",
            "max_position_embeddings": 66, "relative_attention_num_buckets": 32,
            "layer_norm_eps": 1e-5, "pad_token_id": 1
        }),
        _ => json!({
            "model_type": "bert", "vocab_size": vocab, "hidden_size": 16, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "max_position_embeddings": 64, "type_vocab_size": 2,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0
        }),
    }
}

/// Writes a complete tiny sentence-transformers folder with random weights made by the real loader.
fn tiny_folder(dir: &Path, model_type: &str, pooling: Pooling) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.json"), config(model_type).to_string())?;
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json().to_string())?;
    let cfg = ArchConfig::read(&dir.join("config.json"))?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    Architecture::load(&cfg, vb)?;
    varmap.save(dir.join("model.safetensors"))?;
    SentenceTransformersConfig {
        pooling,
        normalize: true,
        max_seq_length: Some(12),
    }
    .write(dir, 16)?;
    Ok(())
}

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
            tiny_folder(tmp.path(), arch, pooling)?;
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
    tiny_folder(&dir, "bert", Pooling::Mean)?;
    std::fs::write(
        dir.join("config.json"),
        json!({"model_type": "gpt9"}).to_string(),
    )?;
    match Encoder::from_dir(&dir, &options) {
        Err(Error::UnsupportedArchitecture { model_type, .. }) => assert_eq!(model_type, "gpt9"),
        other => anyhow::bail!("expected UnsupportedArchitecture, got {other:?}"),
    }

    // Corrupt weights.
    tiny_folder(&dir, "bert", Pooling::Mean)?;
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
    tiny_folder(&dir, "bert", Pooling::Mean)?;
    let mut cfg = config("bert");
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
    tiny_folder(&dir, "bert", Pooling::Mean)?;
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
    tiny_folder(&dir, "bert", Pooling::Mean)?;
    let enc = Encoder::from_dir(&dir, &options)?;
    let none: [&str; 0] = [];
    assert!(matches!(
        enc.embed(&none),
        Err(Error::InvalidArgument { .. })
    ));
    let _ = Tensor::zeros(1, DType::F32, &Device::Cpu)?;
    Ok(())
}
