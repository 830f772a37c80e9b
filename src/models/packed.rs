//! A padding-free CPU encoder for the BERT family: BERT, XLM-RoBERTa, DistilBERT and MPNet.
//!
//! The texts of a batch are *packed*: their tokens are laid end to end in one `[tokens, hidden]`
//! matrix, with no padding rows. Every linear layer (the fused QKV projection, the attention
//! output, both feed-forward layers) is one matrix product over all the tokens of the batch, so
//! short texts make large, efficient products; attention runs per text and per head on its own
//! rows, so no mask is needed and no time is spent on padding. Around the products, the steps are
//! fused: bias + GELU in the first feed-forward layer, residual + LayerNorm after the attention
//! output and the second feed-forward layer, bias + softmax of the scores.
//!
//! The maths is the post-LayerNorm transformer of each architecture as in Hugging Face
//! transformers (`modeling_bert.py`, `modeling_xlm_roberta.py`, `modeling_distilbert.py`,
//! `modeling_mpnet.py`, no dropout):
//! - BERT: absolute positions from 0, token type 0;
//! - XLM-RoBERTa: positions from `pad_token_id + 1` (the padding token keeps `pad_token_id`),
//!   token type 0;
//! - DistilBERT: positions from 0, no token types;
//! - MPNet: positions as XLM-RoBERTa, no token types, and a T5-style bucketed relative position
//!   bias added to every layer's attention scores.
//!
//! The linear layers run at a [`Precision`]: f32 (`gemm`), bf16 or int8 (relstitch's
//! [`super::kernels`]). At bf16 and int8, attention's two products (`q · kᵀ`, `p · v`)
//! also take bfloat16 operands where the CPU has AVX-512 BF16; sums, softmax, LayerNorm, GELU and
//! pooling stay f32.
//!
//! - Devlin et al., 2019, "BERT" ([arXiv:1810.04805](https://arxiv.org/abs/1810.04805));
//!   Conneau et al., 2020, "XLM-R" ([arXiv:1911.02116](https://arxiv.org/abs/1911.02116));
//!   Sanh et al., 2019, "DistilBERT" ([arXiv:1910.01108](https://arxiv.org/abs/1910.01108));
//!   Song et al., 2020, "MPNet" ([arXiv:2004.09297](https://arxiv.org/abs/2004.09297)).
//!
//! ```no_run
//! # fn main() -> candle_core::Result<()> {
//! use candle_core::{DType, Device};
//! use candle_nn::VarBuilder;
//! use relstitch::models::packed::{Config, Family, PackedEncoder};
//! use relstitch::models::Precision;
//! use relstitch::models::kernels::activation::Activation;
//!
//! let config = Config {
//!     family: Family::Bert,
//!     vocab_size: 30522,
//!     hidden_size: 384,
//!     num_layers: 6,
//!     num_heads: 12,
//!     intermediate_size: 1536,
//!     max_position_embeddings: 512,
//!     type_vocab_size: 2,
//!     layer_norm_eps: 1e-12,
//!     activation: Activation::GeluErf,
//!     pad_token_id: 0,
//! };
//! let vb = unsafe {
//!     VarBuilder::from_mmaped_safetensors(&["model.safetensors"], DType::F32, &Device::Cpu)?
//! };
//! let model = PackedEncoder::load(vb, &config, Precision::Int8)?;
//! let texts: [&[u32]; 2] = [&[101, 7592, 102], &[101, 2088, 2003, 102]];
//! let hidden = model.forward(&texts, true)?; // [7, 384]: the tokens of both texts, in order
//! # Ok(()) }
//! ```

use candle_core::{bail, Result, Tensor};
use candle_nn::VarBuilder;

use super::kernels::activation::Activation;
use super::kernels::tiles::OutPtr;
use super::kernels::{self, attention, norm, Linear};
use super::Precision;

/// Which architecture of the family: decides weight names, position ids, token types and the
/// relative position bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// BERT and its relatives (MiniLM, e5, BGE, ...).
    Bert,
    /// XLM-RoBERTa (and RoBERTa, CamemBERT).
    XlmRoberta,
    /// DistilBERT.
    DistilBert,
    /// MPNet.
    MPNet,
}

/// What the packed encoder needs to know of a checkpoint's config.json.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The architecture.
    pub family: Family,
    /// Rows of the word embedding table.
    pub vocab_size: usize,
    /// Width of the token states.
    pub hidden_size: usize,
    /// Transformer layers.
    pub num_layers: usize,
    /// Attention heads; divides `hidden_size`.
    pub num_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Rows of the absolute position table.
    pub max_position_embeddings: usize,
    /// Rows of the token type table (0 when the architecture has none).
    pub type_vocab_size: usize,
    /// Epsilon of every LayerNorm.
    pub layer_norm_eps: f64,
    /// Feed-forward activation.
    pub activation: Activation,
    /// The padding token (position ids of XLM-RoBERTa and MPNet start after it).
    pub pad_token_id: u32,
}

impl Config {
    /// Multiply-adds × 2 of one forward pass over a text of `len` tokens: the linear layers
    /// (`2 · len · Σ in · out`) and attention (`2 · 2 · len² · hidden`). Embeddings, norms and
    /// activations are not counted.
    pub fn flops(&self, len: usize) -> f64 {
        let (h, i, l) = (
            self.hidden_size as f64,
            self.intermediate_size as f64,
            len as f64,
        );
        let linear = 2.0 * l * (4.0 * h * h + 2.0 * h * i);
        let attention = 4.0 * l * l * h;
        self.num_layers as f64 * (linear + attention)
    }
}

/// MPNet's relative position buckets (HF's `relative_position_bucket`, its default 32 buckets
/// and maximum distance 128, whatever the config says: see [`super::mpnet`]).
fn mpnet_bucket(relative_position: i64) -> usize {
    const NUM_BUCKETS: i64 = 32;
    const MAX_DISTANCE: f64 = 128.0;
    let half = NUM_BUCKETS / 2;
    let n = -relative_position;
    let mut ret = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    if n < max_exact {
        ret += n;
    } else {
        let log_ratio = (n as f32 / max_exact as f32).ln();
        let log_max = (MAX_DISTANCE / max_exact as f64).ln() as f32;
        let scaled = log_ratio / log_max * (half - max_exact) as f32;
        ret += (max_exact + scaled as i64).min(half - 1);
    }
    ret as usize
}

#[derive(Debug, Clone)]
struct LayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    fn load(vb: VarBuilder, h: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            gamma: vec_of(&vb.get(h, "weight")?)?,
            beta: vec_of(&vb.get(h, "bias")?)?,
            eps: eps as f32,
        })
    }
}

#[derive(Debug, Clone)]
struct Layer {
    /// `[3 · hidden, hidden]`: query, key and value concatenated.
    qkv: Linear,
    out: Linear,
    attention_norm: LayerNorm,
    up: Linear,
    down: Linear,
    output_norm: LayerNorm,
}

/// The copy of a tensor's values (contiguous, f32).
fn vec_of(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

fn load_linear(vb: &VarBuilder, name: &str, n: usize, k: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let vb = vb.pp(name);
    Ok((
        vec_of(&vb.get((n, k), "weight")?)?,
        vec_of(&vb.get(n, "bias")?)?,
    ))
}

impl Layer {
    fn load(vb: VarBuilder, cfg: &Config, precision: Precision) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let eps = cfg.layer_norm_eps;
        // (query, key, value, attention output, attention norm, up, down, output norm)
        let names: [&str; 8] = match cfg.family {
            Family::Bert | Family::XlmRoberta => [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
                "attention.output.LayerNorm",
                "intermediate.dense",
                "output.dense",
                "output.LayerNorm",
            ],
            Family::DistilBert => [
                "attention.q_lin",
                "attention.k_lin",
                "attention.v_lin",
                "attention.out_lin",
                "sa_layer_norm",
                "ffn.lin1",
                "ffn.lin2",
                "output_layer_norm",
            ],
            Family::MPNet => [
                "attention.attn.q",
                "attention.attn.k",
                "attention.attn.v",
                "attention.attn.o",
                "attention.LayerNorm",
                "intermediate.dense",
                "output.dense",
                "output.LayerNorm",
            ],
        };
        let (qw, qb) = load_linear(&vb, names[0], h, h)?;
        let (kw, kb) = load_linear(&vb, names[1], h, h)?;
        let (vw, vbias) = load_linear(&vb, names[2], h, h)?;
        let qkv_w = [qw, kw, vw].concat();
        let qkv_b = [qb, kb, vbias].concat();
        let (ow, ob) = load_linear(&vb, names[3], h, h)?;
        let (uw, ub) = load_linear(&vb, names[5], i, h)?;
        let (dw, db) = load_linear(&vb, names[6], h, i)?;
        Ok(Self {
            qkv: Linear::new(qkv_w, Some(qkv_b), 3 * h, h, precision)?,
            out: Linear::new(ow, Some(ob), h, h, precision)?,
            attention_norm: LayerNorm::load(vb.pp(names[4]), h, eps)?,
            up: Linear::new(uw, Some(ub), i, h, precision)?,
            down: Linear::new(dw, Some(db), h, i, precision)?,
            output_norm: LayerNorm::load(vb.pp(names[7]), h, eps)?,
        })
    }
}

/// The packed encoder: weights in plain vectors, ready for the kernels.
#[derive(Debug, Clone)]
pub struct PackedEncoder {
    config: Config,
    precision: Precision,
    /// `[vocab, hidden]`.
    word: Vec<f32>,
    /// `[max_positions, hidden]`.
    position: Vec<f32>,
    /// Row 0 of the token type table (`[hidden]`), for the architectures that have one.
    token_type: Option<Vec<f32>>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    /// MPNet: `[heads, 2 · max_positions - 1]`, the bias of key − query distance
    /// `d` at `d + max_positions - 1`.
    relative_bias: Option<Vec<f32>>,
}

impl PackedEncoder {
    /// Loads the weights under `vb` (the names of each architecture's Hugging Face checkpoints,
    /// bare or under `bert.`, `roberta.`, `distilbert.` or `mpnet.`), quantising the linear
    /// layers to `precision`.
    ///
    /// # Errors
    /// A [`candle_core::Error`] when a weight is missing or has the wrong shape, or the configuration is not supported.
    pub fn load(vb: VarBuilder, config: &Config, precision: Precision) -> Result<Self> {
        let cfg = config;
        let (h, heads) = (cfg.hidden_size, cfg.num_heads);
        if heads == 0 || h == 0 || !h.is_multiple_of(heads) {
            bail!("packed encoder: hidden size {h} is not a multiple of {heads} heads");
        }
        const PROBE: &str = "embeddings.word_embeddings.weight";
        let prefix = match cfg.family {
            Family::Bert => "bert",
            Family::XlmRoberta => "roberta",
            Family::DistilBert => "distilbert",
            Family::MPNet => "mpnet",
        };
        let vb = if !vb.contains_tensor(PROBE) && vb.contains_tensor(&format!("{prefix}.{PROBE}")) {
            vb.pp(prefix)
        } else {
            vb
        };
        let emb = vb.pp("embeddings");
        let word = vec_of(&emb.get((cfg.vocab_size, h), "word_embeddings.weight")?)?;
        let position = vec_of(&emb.get(
            (cfg.max_position_embeddings, h),
            "position_embeddings.weight",
        )?)?;
        let token_type = match cfg.family {
            Family::Bert | Family::XlmRoberta if cfg.type_vocab_size > 0 => {
                let t = emb.get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?;
                Some(vec_of(&t.get(0)?)?)
            }
            _ => None,
        };
        let embedding_norm = LayerNorm::load(emb.pp("LayerNorm"), h, cfg.layer_norm_eps)?;
        let body = match cfg.family {
            Family::DistilBert => vb.pp("transformer").pp("layer"),
            _ => vb.pp("encoder").pp("layer"),
        };
        let layers = (0..cfg.num_layers)
            .map(|i| Layer::load(body.pp(i), cfg, precision))
            .collect::<Result<Vec<_>>>()?;
        let relative_bias = match cfg.family {
            Family::MPNet => {
                let buckets = vb
                    .pp("encoder")
                    .get_unchecked("relative_attention_bias.weight")?;
                let (rows, cols) = buckets.dims2()?;
                if cols != heads || rows < 32 {
                    bail!(
                        "MPNet: relative_attention_bias is [{rows}, {cols}], expected at least \
                         32 buckets × {heads} heads"
                    );
                }
                let table = buckets.to_vec2::<f32>()?;
                let span = 2 * cfg.max_position_embeddings - 1;
                let offset = cfg.max_position_embeddings as i64 - 1;
                let mut bias = vec![0f32; heads * span];
                for d in 0..span {
                    let bucket = mpnet_bucket(d as i64 - offset);
                    for (head, v) in table[bucket].iter().enumerate() {
                        bias[head * span + d] = *v;
                    }
                }
                Some(bias)
            }
            _ => None,
        };
        Ok(Self {
            config: cfg.clone(),
            precision,
            word,
            position,
            token_type,
            embedding_norm,
            layers,
            relative_bias,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The precision of the linear layers.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The longest text (special tokens included) the position table allows.
    pub fn max_tokens(&self) -> usize {
        match self.config.family {
            Family::Bert | Family::DistilBert => self.config.max_position_embeddings,
            Family::XlmRoberta | Family::MPNet => self
                .config
                .max_position_embeddings
                .saturating_sub(self.config.pad_token_id as usize + 1),
        }
    }

    /// Position ids of one text, as the architecture computes them.
    fn positions(&self, ids: &[u32], out: &mut Vec<u32>) {
        match self.config.family {
            Family::Bert | Family::DistilBert => out.extend(0..ids.len() as u32),
            Family::XlmRoberta | Family::MPNet => {
                let pad = self.config.pad_token_id;
                let mut count = 0u32;
                for &id in ids {
                    if id == pad {
                        out.push(pad);
                    } else {
                        count += 1;
                        out.push(pad + count);
                    }
                }
            }
        }
    }

    /// Runs the encoder on the texts of a batch, packed, and returns the last hidden states of
    /// all their tokens, text after text.
    ///
    /// `parallel` splits every op across the rayon pool; without it the whole pass runs on the
    /// calling thread (for data parallelism across batches).
    ///
    /// # Shapes
    /// - `texts`: token ids of each text (specials included), any lengths
    /// - returns `[Σ lengths, hidden]` f32, row-major
    ///
    /// # Errors
    /// A token id outside the vocabulary, or a text longer than [`PackedEncoder::max_tokens`].
    pub fn forward(&self, texts: &[&[u32]], parallel: bool) -> Result<Vec<f32>> {
        let cfg = &self.config;
        let h = cfg.hidden_size;
        let total: usize = texts.iter().map(|t| t.len()).sum();
        let mut ids = Vec::with_capacity(total);
        let mut positions = Vec::with_capacity(total);
        for t in texts {
            if t.len() > self.max_tokens() {
                bail!(
                    "packed encoder: a text has {} tokens, at most {} are supported",
                    t.len(),
                    self.max_tokens()
                );
            }
            if let Some(bad) = t.iter().find(|&&id| id as usize >= cfg.vocab_size) {
                bail!(
                    "packed encoder: token id {bad} is outside the vocabulary (size {})",
                    cfg.vocab_size
                );
            }
            ids.extend_from_slice(t);
            self.positions(t, &mut positions);
        }
        if let Some(&p) = positions.iter().max() {
            if p as usize >= cfg.max_position_embeddings {
                bail!("packed encoder: position {p} is outside the position table");
            }
        }
        let mut x = vec![0f32; total * h];
        {
            let _span = tracing::trace_span!("embeddings").entered();
            self.embed(&ids, &positions, &mut x, parallel);
        }
        let mut spans = Vec::with_capacity(texts.len());
        let mut start = 0;
        for t in texts {
            spans.push((start, t.len()));
            start += t.len();
        }
        let mut qkv = vec![0f32; total * 3 * h];
        let mut ctx = vec![0f32; total * h];
        let mut attn = vec![0f32; total * h];
        let mut inter = vec![0f32; total * cfg.intermediate_size];
        for layer in &self.layers {
            {
                let _span = tracing::trace_span!("qkv").entered();
                layer.qkv.forward(&x, total, &mut qkv, None, parallel)?;
            }
            {
                let _span = tracing::trace_span!("attention").entered();
                self.attention(&qkv, &mut ctx, &spans, parallel)?;
            }
            {
                let _span = tracing::trace_span!("attention-output").entered();
                layer.out.forward(&ctx, total, &mut attn, None, parallel)?;
            }
            {
                let _span = tracing::trace_span!("add-layer-norm").entered();
                add_norm_rows(&mut attn, &x, &layer.attention_norm, h, parallel);
            }
            {
                let _span = tracing::trace_span!("ffn-up-act").entered();
                let act = Some(cfg.activation);
                layer.up.forward(&attn, total, &mut inter, act, parallel)?;
            }
            {
                let _span = tracing::trace_span!("ffn-down").entered();
                layer.down.forward(&inter, total, &mut x, None, parallel)?;
            }
            {
                let _span = tracing::trace_span!("add-layer-norm").entered();
                add_norm_rows(&mut x, &attn, &layer.output_norm, h, parallel);
            }
        }
        Ok(x)
    }

    /// Word + position (+ token type 0) embeddings, then LayerNorm, into `x` (`[tokens, h]`).
    fn embed(&self, ids: &[u32], positions: &[u32], x: &mut [f32], parallel: bool) {
        let h = self.config.hidden_size;
        let norm = &self.embedding_norm;
        for (t, row) in x.chunks_exact_mut(h).enumerate() {
            let (id, p) = (ids[t] as usize, positions[t] as usize);
            let word = &self.word[id * h..(id + 1) * h];
            let pos = &self.position[p * h..(p + 1) * h];
            for ((x, w), p) in row.iter_mut().zip(word).zip(pos) {
                *x = w + p;
            }
            if let Some(tt) = &self.token_type {
                for (x, t) in row.iter_mut().zip(tt) {
                    *x += t;
                }
            }
        }
        kernels::for_row_chunks(x, h, parallel, |rows| {
            norm::add_layer_norm_rows(rows, None, &norm.gamma, &norm.beta, norm.eps)
        });
    }

    /// Self-attention of every text and head: `ctx = softmax(q kᵀ / √d + bias) v`.
    ///
    /// # Shapes
    /// - `qkv`: `[tokens, 3 · hidden]`; `ctx`: `[tokens, hidden]`; `spans`: `(first row, rows)`
    ///   of each text
    fn attention(
        &self,
        qkv: &[f32],
        ctx: &mut [f32],
        spans: &[(usize, usize)],
        parallel: bool,
    ) -> Result<()> {
        let cfg = &self.config;
        let (h, heads) = (cfg.hidden_size, cfg.num_heads);
        let d = h / heads;
        let scale = 1.0 / (d as f32).sqrt();
        let span_len = 2 * cfg.max_position_embeddings - 1;
        let offset = cfg.max_position_embeddings - 1;
        if qkv.len() != ctx.len() * 3 {
            bail!("attention: qkv and ctx disagree");
        }
        let out = OutPtr(ctx.as_mut_ptr());
        let reduced = self.precision != Precision::F32;
        type Scratch = (Vec<f32>, Vec<f32>, Vec<u16>);
        let task = |(text, head): (usize, usize), scratch: &mut Scratch| {
            let (start, len) = spans[text];
            if len == 0 {
                return;
            }
            let row = 3 * h;
            let base = start * row + head * d;
            let view = attention::Head {
                q: &qkv[base..],
                k: &qkv[base + h..],
                v: &qkv[base + 2 * h..],
                stride: row,
                len,
                d,
            };
            let (work, result, half) = scratch;
            result.clear();
            result.resize(len * d, 0.0);
            let (band, first): (&[f32], usize) = match &self.relative_bias {
                Some(b) => (&b[head * span_len..(head + 1) * span_len], offset),
                None => (&[], 0),
            };
            if reduced {
                attention::attention_head_bf16(view, scale, band, first, work, half, result);
            } else {
                attention::attention_head(view, scale, band, first, work, result);
            }
            for (i, r) in result.chunks_exact(d).enumerate() {
                // SAFETY: row start + i < tokens and columns head · d..(head + 1) · d < h of ctx
                // ([tokens, h], its length checked against qkv above); no other task writes
                // this text's rows in this head's columns.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        r.as_ptr(),
                        out.get().add((start + i) * h + head * d),
                        d,
                    )
                };
            }
        };
        let tasks = spans.len() * heads;
        if parallel && tasks > 1 && rayon::current_num_threads() > 1 {
            use rayon::prelude::*;
            (0..tasks)
                .into_par_iter()
                .for_each_init(Scratch::default, |scratch, t| {
                    task((t / heads, t % heads), scratch)
                });
        } else {
            let mut scratch = Scratch::default();
            for t in 0..tasks {
                task((t / heads, t % heads), &mut scratch);
            }
        }
        Ok(())
    }
}

/// `x[r] ← LN(x[r] + residual[r])` for every row.
fn add_norm_rows(x: &mut [f32], residual: &[f32], norm: &LayerNorm, h: usize, parallel: bool) {
    kernels::for_row_chunks_with(x, residual, h, parallel, |rows, res| {
        norm::add_layer_norm_rows(rows, Some(res), &norm.gamma, &norm.beta, norm.eps)
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_the_candle_mpnet() {
        // Same values as relstitch's MPNet on candle (tests there follow HF's formula).
        for (rel, want) in [
            (0, 0),
            (-1, 1),
            (-8, 8),
            (-20, 10),
            (-200, 15),
            (1, 17),
            (10, 24),
            (300, 31),
        ] {
            assert_eq!(mpnet_bucket(rel), want, "{rel}");
        }
    }

    #[test]
    fn flops_count_linear_and_attention() {
        let cfg = Config {
            family: Family::Bert,
            vocab_size: 10,
            hidden_size: 4,
            num_layers: 2,
            num_heads: 2,
            intermediate_size: 8,
            max_position_embeddings: 16,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            activation: Activation::GeluErf,
            pad_token_id: 0,
        };
        // per layer: 2·3·(4·16 + 2·32) + 4·9·4 = 768 + 144
        assert_eq!(cfg.flops(3), 2.0 * (768.0 + 144.0));
    }
}
