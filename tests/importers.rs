//! The importers (`relstitch::hub::import`) on tiny files: a BERT exported to ONNX, from
//! `tests/common` (the fuzz tests mutate the same file). The real models they import are checked
//! against their reference implementations in `parity.rs`.

use std::path::{Path, PathBuf};

use prost::Message;
use relstitch::hub::import::onnx::import_bert_onnx;
use relstitch::Error;
use safetensors::SafeTensors;
use serde_json::Value;

mod common;
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
