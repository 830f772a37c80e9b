//! A tiny BERT exported to ONNX the way PyTorch writes it, as the importer's own `prost` messages
//! (`src/hub/import/onnx/proto.rs`, compiled here too) encoded with `prost::Message`.

use std::collections::BTreeMap;

use prost::bytes::Bytes;
use prost::Message;

#[path = "../../src/hub/import/onnx/proto.rs"]
mod proto;
pub(crate) use proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};

/// `TensorProto.DataType` FLOAT and INT64.
const FLOAT: i32 = 1;
const INT64: i32 = 7;

/// A float tensor, as `float_data` (`typed`) or as little-endian `raw_data`.
fn tensor(name: &str, dims: &[usize], values: &[f32], typed: bool) -> TensorProto {
    let mut t = TensorProto {
        name: name.into(),
        dims: dims.iter().map(|d| *d as i64).collect(),
        data_type: FLOAT,
        ..TensorProto::default()
    };
    if typed {
        t.float_data = values.to_vec();
    } else {
        t.raw_data = Some(values.iter().flat_map(|v| v.to_le_bytes()).collect());
    }
    t
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], epsilon: Option<f32>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        op_type: op.into(),
        attribute: epsilon
            .map(|f| AttributeProto {
                name: "epsilon".into(),
                f: Some(f),
            })
            .into_iter()
            .collect(),
    }
}

fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|j| (0..rows).map(move |i| values[i * cols + j]))
        .collect()
}

/// A one-layer BERT with hidden 4, intermediate 8, vocab 6, 5 positions and 2 token types,
/// exported the way PyTorch does it: names behind the `model.0.auto_model.` prefix, the six
/// linear weights as anonymous `onnx::MatMul_N` initializers stored transposed (`[in, out]`,
/// half of them as `float_data`, half as `raw_data`) and named only by the bias `Add` that follows
/// their `MatMul`, an unrelated int64 constant, and a LayerNormalization with epsilon 1e-12.
///
/// Returns the model and the tensors the import must write (Hugging Face names, `[out, in]`).
pub fn tiny_bert() -> (ModelProto, BTreeMap<String, Vec<f32>>) {
    let (h, i) = (4usize, 8usize);
    let mut expected: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let mut graph = GraphProto::default();
    let mut counter = 0f32;
    let mut vals = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                counter += 1.0;
                counter * 0.01
            })
            .collect()
    };
    let prefix = "model.0.auto_model.";
    for (name, shape) in [
        ("embeddings.word_embeddings.weight", vec![6, h]),
        ("embeddings.position_embeddings.weight", vec![5, h]),
        ("embeddings.token_type_embeddings.weight", vec![2, h]),
        ("embeddings.LayerNorm.weight", vec![h]),
        ("embeddings.LayerNorm.bias", vec![h]),
        ("encoder.layer.0.attention.output.LayerNorm.weight", vec![h]),
        ("encoder.layer.0.attention.output.LayerNorm.bias", vec![h]),
        ("encoder.layer.0.output.LayerNorm.weight", vec![h]),
        ("encoder.layer.0.output.LayerNorm.bias", vec![h]),
    ] {
        let v = vals(shape.iter().product());
        let t = tensor(&format!("{prefix}{name}"), &shape, &v, false);
        graph.initializer.push(t);
        expected.insert(name.to_string(), v);
    }
    // An unrelated int64 constant that must be ignored.
    graph.initializer.push(TensorProto {
        name: "onnx::Slice_65".into(),
        dims: vec![1],
        data_type: INT64,
        raw_data: Some(Bytes::from_static(&[0; 8])),
        ..TensorProto::default()
    });
    let linears = [
        ("attention.self.query", h, h),
        ("attention.self.key", h, h),
        ("attention.self.value", h, h),
        ("attention.output.dense", h, h),
        ("intermediate.dense", i, h),
        ("output.dense", h, i),
    ];
    for (k, (stem, out_f, in_f)) in linears.into_iter().enumerate() {
        let w_name = format!("onnx::MatMul_{}", 470 + k);
        let b_name = format!("{prefix}encoder.layer.0.{stem}.bias");
        // torch weight [out, in]; ONNX stores its transpose [in, out].
        let w = vals(out_f * in_f);
        let b = vals(out_f);
        let wt = transpose(&w, out_f, in_f);
        graph
            .initializer
            .push(tensor(&w_name, &[in_f, out_f], &wt, k % 2 == 0));
        graph.initializer.push(tensor(&b_name, &[out_f], &b, false));
        let mm_out = format!("/{stem}/MatMul_output_0");
        graph
            .node
            .push(node("MatMul", &["x", &w_name], &[&mm_out], None));
        // Bias first, the way the PyTorch exporter writes it.
        graph
            .node
            .push(node("Add", &[&b_name, &mm_out], &["y"], None));
        expected.insert(format!("encoder.layer.0.{stem}.weight"), w);
        expected.insert(format!("encoder.layer.0.{stem}.bias"), b);
    }
    graph.node.push(node(
        "LayerNormalization",
        &["a", "b", "c"],
        &["d"],
        Some(1e-12),
    ));
    let model = ModelProto { graph: Some(graph) };
    (model, expected)
}

/// The bytes of [`tiny_bert`]'s model, as an `.onnx` file holds them.
pub fn tiny_bert_bytes() -> Vec<u8> {
    tiny_bert().0.encode_to_vec()
}
