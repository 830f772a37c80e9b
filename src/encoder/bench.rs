//! Throughput benchmark: relstitch against its peers (sentence-transformers on PyTorch, ONNX
//! Runtime in fp32 and dynamic int8) in the same run, plus the fidelity of reduced precisions.
//!
//! The peers run as child processes (`scripts/bench/peer_throughput.py`) so that no two share a
//! thread pool; each peer is timed at every batch size it is given and reports its best. Every
//! side reports the *median* of its timed runs (after a warm-up): on a shared machine the median
//! is steadier than the best or the mean.
//!
//! Besides texts/s, the report gives tokens/s and the effective GFLOP/s (the model's linear layers
//! and attention, counted by [`crate::models::packed::Config::flops`], divided by the wall time),
//! and that rate as a share of this machine's f32 matrix-product peak measured in the same run
//! ([`matmul_peak`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::Tensor;

use crate::encoder::Encoder;
use crate::{Error, Result};

/// One side's measurement.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Throughput {
    /// Which implementation (and version).
    #[serde(rename = "impl")]
    pub implementation: String,
    /// The arithmetic (`f32`, `bf16`, `int8`).
    pub precision: String,
    /// Texts embedded per run.
    pub texts: usize,
    /// Tokens per run (after truncation, special tokens included, no padding).
    pub tokens: usize,
    /// Batch size (for peers: the best of those tried).
    pub batch_size: usize,
    /// Threads.
    pub threads: usize,
    /// Wall time of every timed run, in seconds.
    pub seconds: Vec<f64>,
    /// Median of `seconds`.
    pub median_s: f64,
    /// `texts / median_s`.
    pub texts_per_s: f64,
    /// `tokens / median_s`.
    pub tokens_per_s: f64,
    /// Model FLOPs per run / `median_s`, in GFLOP/s.
    pub gflop_per_s: f64,
}

impl Throughput {
    /// A measurement from its raw runs.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        implementation: impl Into<String>,
        precision: impl Into<String>,
        workload: &Workload,
        batch_size: usize,
        threads: usize,
        seconds: Vec<f64>,
    ) -> Self {
        let median_s = median(&seconds).max(1e-12);
        Self {
            implementation: implementation.into(),
            precision: precision.into(),
            texts: workload.texts,
            tokens: workload.tokens,
            batch_size,
            threads,
            median_s,
            texts_per_s: workload.texts as f64 / median_s,
            tokens_per_s: workload.tokens as f64 / median_s,
            gflop_per_s: workload.flops / median_s / 1e9,
            seconds,
        }
    }
}

/// What one pass over the texts asks of the model.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Workload {
    /// Texts.
    pub texts: usize,
    /// Tokens after truncation (special tokens included).
    pub tokens: usize,
    /// Model FLOPs: linear layers and attention, no padding.
    pub flops: f64,
}

/// The texts' token counts and FLOPs under `encoder` (its tokenizer, truncation and architecture).
pub fn workload(encoder: &Encoder, texts: &[String]) -> Result<Workload> {
    let ids = encoder.tokenize(texts)?;
    let tokens = ids.iter().map(Vec::len).sum();
    let flops = ids.iter().map(|t| encoder.flops(t.len())).sum();
    Ok(Workload {
        texts: texts.len(),
        tokens,
        flops,
    })
}

/// The median of `v` (0 for an empty slice).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => 0.5 * (s[n / 2 - 1] + s[n / 2]),
    }
}

/// Times `encoder.embed(texts)`: one warm-up run (skipped with `warm_up: false`), then `repeats`
/// timed runs. Returns the wall times and the embeddings of the last run.
pub fn time_encoder(
    encoder: &Encoder,
    texts: &[String],
    repeats: usize,
    warm_up: bool,
) -> Result<(Vec<f64>, Tensor)> {
    let mut last = if warm_up {
        Some(encoder.embed(texts)?)
    } else {
        None
    };
    let mut seconds = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let e = encoder.embed(texts)?;
        seconds.push(start.elapsed().as_secs_f64());
        last = Some(e);
    }
    match last {
        Some(e) => Ok((seconds, e)),
        None => Err(Error::invalid("repeats", "must be at least 1")),
    }
}

/// This machine's f32 matrix-product rate in GFLOP/s: the best of `repeats` products of
/// encoder-sized shapes (`[4096, 384] · [384, 1536]` and `[2048, 768] · [768, 3072]`) through the
/// same `gemm` the f32 encoder uses, on the rayon pool.
pub fn matmul_peak(repeats: usize) -> Result<f64> {
    let mut best = 0f64;
    for (m, k, n) in [(4096usize, 384usize, 1536usize), (2048, 768, 3072)] {
        let x: Vec<f32> = (0..m * k).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i % 13) as f32 - 6.0) / 64.0).collect();
        let b = vec![0f32; n];
        let mut out = vec![0f32; m * n];
        crate::models::kernels::gemm::linear(&x, m, k, &w, &b, n, &mut out, true)
            .map_err(|e| Error::candle("matrix-product peak", e))?;
        for _ in 0..repeats.max(1) {
            let start = Instant::now();
            crate::models::kernels::gemm::linear(&x, m, k, &w, &b, n, &mut out, true)
                .map_err(|e| Error::candle("matrix-product peak", e))?;
            let s = start.elapsed().as_secs_f64().max(1e-12);
            best = best.max(2.0 * (m * n * k) as f64 / s / 1e9);
        }
    }
    Ok(best)
}

/// How close one set of embeddings is to a reference, row by row.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Fidelity {
    /// Mean cosine similarity of matching rows.
    pub mean_cosine: f64,
    /// Lowest cosine similarity of matching rows.
    pub min_cosine: f64,
}

/// The cosine similarity of each row of `other` with the same row of `reference`, summarised.
///
/// # Shapes
/// - `reference`, `other`: `[n, d]`, same shape
pub fn fidelity(reference: &Tensor, other: &Tensor) -> Result<Fidelity> {
    let a = reference
        .to_dtype(candle_core::DType::F32)
        .and_then(|t| t.to_vec2::<f32>())
        .map_err(|e| Error::candle("fidelity", e))?;
    let b = other
        .to_dtype(candle_core::DType::F32)
        .and_then(|t| t.to_vec2::<f32>())
        .map_err(|e| Error::candle("fidelity", e))?;
    if a.len() != b.len() || a.is_empty() || a.first().map(Vec::len) != b.first().map(Vec::len) {
        return Err(Error::invalid(
            "fidelity",
            format!(
                "the two sets of embeddings differ in shape ({} and {} rows)",
                a.len(),
                b.len()
            ),
        ));
    }
    let cos: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| {
            let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
            let nx: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            dot / (nx * ny).max(1e-30)
        })
        .collect();
    Ok(Fidelity {
        mean_cosine: cos.iter().sum::<f64>() / cos.len() as f64,
        min_cosine: cos.iter().copied().fold(f64::INFINITY, f64::min),
    })
}

/// A peer engine of the benchmark script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum PeerEngine {
    /// sentence-transformers on PyTorch.
    SentenceTransformers,
    /// ONNX Runtime, fp32 (the engine under fastembed).
    Onnxruntime,
    /// ONNX Runtime after dynamic int8 quantisation.
    OnnxruntimeInt8,
}

impl PeerEngine {
    /// The `--engine` name of the peer script.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SentenceTransformers => "sentence-transformers",
            Self::Onnxruntime => "onnxruntime",
            Self::OnnxruntimeInt8 => "onnxruntime-int8",
        }
    }

    /// The arithmetic the engine runs.
    pub fn precision(self) -> &'static str {
        match self {
            Self::OnnxruntimeInt8 => "int8",
            _ => "f32",
        }
    }
}

/// How to run one peer.
#[derive(Debug, Clone)]
pub struct PeerRun<'a> {
    /// Python interpreter with the peer's packages.
    pub python: &'a str,
    /// The peer script.
    pub script: &'a Path,
    /// The engine.
    pub engine: PeerEngine,
    /// The sentence-transformers model folder.
    pub model_dir: &'a Path,
    /// The texts (.jsonl).
    pub texts_file: &'a Path,
    /// The JSON field holding each text.
    pub field: &'a str,
    /// Batch sizes to try.
    pub batch_sizes: &'a [usize],
    /// Threads.
    pub threads: usize,
    /// Timed runs per batch size.
    pub repeats: usize,
    /// Where the peer writes the embeddings of its best batch size.
    pub save: Option<PathBuf>,
}

/// What a peer reported.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PeerResult {
    /// Its best batch size, as a [`Throughput`].
    pub best: Throughput,
    /// Every batch size tried: (batch size, median seconds).
    pub by_batch_size: Vec<(usize, f64)>,
    /// Library versions the peer reported.
    pub versions: serde_json::Value,
}

#[derive(serde::Deserialize)]
struct PeerLine {
    #[serde(rename = "impl")]
    implementation: String,
    #[serde(default)]
    versions: serde_json::Value,
    runs: Vec<PeerBatchRun>,
}

#[derive(serde::Deserialize)]
struct PeerBatchRun {
    batch_size: usize,
    seconds: Vec<f64>,
}

/// Runs one peer and parses its JSON line; `workload` is the texts' tokens and FLOPs (counted
/// with relstitch's tokenizer, which is the model's own).
pub fn run_peer(peer: &PeerRun<'_>, workload: &Workload) -> Result<PeerResult> {
    let sizes: Vec<String> = peer.batch_sizes.iter().map(usize::to_string).collect();
    let mut cmd = Command::new(peer.python);
    cmd.arg(peer.script)
        .args(["--engine", peer.engine.as_str()])
        .arg("--model-dir")
        .arg(peer.model_dir)
        .arg("--texts")
        .arg(peer.texts_file)
        .args(["--field", peer.field])
        .args(["--batch-sizes", &sizes.join(",")])
        .args(["--threads", &peer.threads.to_string()])
        .args(["--repeats", &peer.repeats.to_string()]);
    if let Some(save) = &peer.save {
        cmd.arg("--save").arg(save);
    }
    let what = format!("{} peer", peer.engine.as_str());
    let out = cmd.output().map_err(|e| Error::Fetch {
        what: what.clone(),
        reason: format!(
            "cannot run `{} {}` ({e}); pass --python with an interpreter that has \
             sentence-transformers, torch and onnxruntime",
            peer.python,
            peer.script.display()
        ),
    })?;
    if !out.status.success() {
        return Err(Error::Fetch {
            what,
            reason: format!(
                "`{} {}` failed ({}): {}",
                peer.python,
                peer.script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    let parsed: PeerLine = serde_json::from_str(line).map_err(|e| Error::Fetch {
        what: what.clone(),
        reason: format!("its output is not the expected JSON line ({e}): {line}"),
    })?;
    let by_batch_size: Vec<(usize, f64)> = parsed
        .runs
        .iter()
        .map(|r| (r.batch_size, median(&r.seconds)))
        .collect();
    let best = parsed
        .runs
        .iter()
        .min_by(|a, b| median(&a.seconds).total_cmp(&median(&b.seconds)))
        .ok_or_else(|| Error::Fetch {
            what: what.clone(),
            reason: "it reported no runs".into(),
        })?;
    Ok(PeerResult {
        best: Throughput::new(
            parsed.implementation,
            peer.engine.precision(),
            workload,
            best.batch_size,
            peer.threads,
            best.seconds.clone(),
        ),
        by_batch_size,
        versions: parsed.versions,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_fidelity() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        let a = Tensor::new(&[[1f32, 0.], [0., 1.]], &candle_core::Device::Cpu).unwrap();
        let b = Tensor::new(&[[2f32, 0.], [1., 1.]], &candle_core::Device::Cpu).unwrap();
        let f = fidelity(&a, &b).unwrap();
        assert!((f.min_cosine - 0.5f64.sqrt()).abs() < 1e-9);
        assert!((f.mean_cosine - (1.0 + 0.5f64.sqrt()) / 2.0).abs() < 1e-9);
        let w = Workload {
            texts: 10,
            tokens: 100,
            flops: 2e9,
        };
        let t = Throughput::new("x", "f32", &w, 32, 2, vec![2.0, 1.0, 4.0]);
        assert_eq!(
            (t.texts_per_s, t.tokens_per_s, t.gflop_per_s),
            (5.0, 50.0, 1.0)
        );
    }
}
