//! Throughput benchmark: relstitch against its peers (sentence-transformers on PyTorch, ONNX
//! Runtime in fp32 and dynamic int8) in the same run, plus the fidelity of reduced precisions.
//!
//! The peers run as child processes (`scripts/bench/peer_throughput.py --serve`) so that no two
//! share a thread pool; each is tried at every batch size it is given and keeps its best. Then
//! all sides run in interleaved rounds ([`compare`]) and each reports the *median* of its runs: on
//! a shared machine, whose load changes from minute to minute, interleaving puts every side under
//! the same load, and the median is steadier than the best or the mean.
//!
//! Besides texts/s, the report gives tokens/s and the effective GFLOP/s (the model's linear layers
//! and attention, counted by [`crate::models::packed::Config::flops`], divided by the wall time),
//! and that rate as a share of this machine's f32 matrix-product peak measured in the same run
//! ([`matmul_peak`]).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
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
///
/// # Errors
/// The errors of [`Encoder::tokenize`](crate::Encoder::tokenize).
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
///
/// # Errors
/// [`Error::InvalidArgument`] for no texts; the errors of [`Encoder::embed`](crate::Encoder::embed).
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
///
/// # Errors
/// [`Error::Candle`] when a matrix product fails.
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
///
/// # Errors
/// [`Error::InvalidArgument`] when the shapes differ; [`Error::Candle`] when the tensors cannot be read.
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

/// How to start the peers.
#[derive(Debug, Clone)]
pub struct PeerSetup<'a> {
    /// Python interpreter with the peers' packages.
    pub python: &'a str,
    /// The peer script (`scripts/bench/peer_throughput.py`).
    pub script: &'a Path,
    /// The sentence-transformers model folder.
    pub model_dir: &'a Path,
    /// The texts (.jsonl).
    pub texts_file: &'a Path,
    /// The JSON field holding each text.
    pub field: &'a str,
    /// Threads.
    pub threads: usize,
}

/// A peer engine loaded in its own process, timing one run at a time on request (the script's
/// `--serve` mode), so that its runs can be interleaved with everyone else's.
pub struct PeerProcess {
    engine: PeerEngine,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// What the peer says it is (library and version).
    pub implementation: String,
    /// Library versions the peer reported.
    pub versions: serde_json::Value,
}

impl PeerProcess {
    /// Starts `engine` and waits until it has loaded the model (and, for ONNX Runtime, exported
    /// and quantised it).
    ///
    /// # Errors
    /// [`Error::Fetch`] when the peer's interpreter cannot start or fails to load the model (its stderr is quoted).
    pub fn spawn(engine: PeerEngine, setup: &PeerSetup<'_>) -> Result<Self> {
        let what = format!("{} peer", engine.as_str());
        let mut child = Command::new(setup.python)
            .arg(setup.script)
            .args(["--engine", engine.as_str(), "--serve"])
            .arg("--model-dir")
            .arg(setup.model_dir)
            .arg("--texts")
            .arg(setup.texts_file)
            .args(["--field", setup.field])
            .args(["--threads", &setup.threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Fetch {
                what: what.clone(),
                reason: format!(
                    "cannot run `{} {}` ({e}); pass --python with an interpreter that has \
                     sentence-transformers, torch, onnxruntime and onnx",
                    setup.python,
                    setup.script.display()
                ),
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Fetch {
                what,
                reason: "its standard input and output could not be opened".into(),
            });
        };
        let mut peer = Self {
            engine,
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            implementation: String::new(),
            versions: serde_json::Value::Null,
        };
        let ready = peer.answer()?;
        peer.implementation = ready
            .get("impl")
            .and_then(|v| v.as_str())
            .unwrap_or(engine.as_str())
            .to_string();
        peer.versions = ready
            .get("versions")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        Ok(peer)
    }

    /// The engine.
    pub fn engine(&self) -> PeerEngine {
        self.engine
    }

    /// One timed run over all the texts at `batch_size`, in seconds.
    ///
    /// # Errors
    /// [`Error::Fetch`] when the peer process fails or answers something unreadable.
    pub fn run(&mut self, batch_size: usize) -> Result<f64> {
        self.send(&format!("run {batch_size}"))?;
        let v = self.answer()?;
        v.get("seconds")
            .and_then(|s| s.as_f64())
            .ok_or_else(|| self.error(format!("answered {v} to a run")))
    }

    /// Embeds the texts at `batch_size` and writes them to `path` (safetensors, `embeddings`).
    ///
    /// # Errors
    /// [`Error::Fetch`] when the peer process fails or answers something unreadable.
    pub fn save(&mut self, batch_size: usize, path: &Path) -> Result<()> {
        self.send(&format!("save {batch_size} {}", path.display()))?;
        let v = self.answer()?;
        match v.get("saved") {
            Some(_) => Ok(()),
            None => Err(self.error(format!("answered {v} to a save"))),
        }
    }

    fn error(&self, reason: String) -> Error {
        Error::Fetch {
            what: format!("{} peer", self.engine.as_str()),
            reason,
        }
    }

    fn send(&mut self, line: &str) -> Result<()> {
        let sent = match self.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{line}").and_then(|_| stdin.flush()),
            None => Err(std::io::Error::other("closed")),
        };
        sent.map_err(|e| self.error(format!("cannot send `{line}` ({e})")))
    }

    /// The next JSON line the peer prints (other lines are skipped); its stderr's last line when
    /// it exits instead.
    fn answer(&mut self) -> Result<serde_json::Value> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .stdout
                .read_line(&mut line)
                .map_err(|e| self.error(format!("cannot read its answer ({e})")))?;
            if n == 0 {
                let mut err = String::new();
                if let Some(stderr) = self.child.stderr.as_mut() {
                    let _ = stderr.read_to_string(&mut err);
                }
                let last = err
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                return Err(self.error(format!("it exited: {last}")));
            }
            if line.trim_start().starts_with('{') {
                return serde_json::from_str(line.trim())
                    .map_err(|e| self.error(format!("its answer is not JSON ({e}): {line}")));
            }
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        // Closing its input ends the peer's loop.
        self.stdin.take();
        let _ = self.child.wait();
    }
}

/// One side of the comparison: relstitch at one precision, or a peer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Side {
    /// Its throughput (medians over the rounds).
    pub throughput: Throughput,
    /// Mean and worst cosine of its vectors to relstitch's f32 vectors (`None` for those).
    pub fidelity: Option<Fidelity>,
    /// Peers: the median seconds of the batch sizes tried while choosing the best.
    pub by_batch_size: Vec<(usize, f64)>,
    /// Peers: the library versions reported.
    pub versions: serde_json::Value,
}

/// Everything `relstitch bench` measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BenchReport {
    /// The model's name.
    pub model: String,
    /// What one pass over the texts asks of the model.
    pub workload: Workload,
    /// Threads every side used.
    pub threads: usize,
    /// Interleaved timed rounds (each side runs once per round).
    pub rounds: usize,
    /// The f32 matrix-product rate of this machine ([`matmul_peak`]), GFLOP/s.
    pub matmul_peak_gflop_per_s: f64,
    /// relstitch's sides (its f32 first), then the peers'.
    pub sides: Vec<Side>,
}

impl BenchReport {
    /// texts/s of sentence-transformers, when it ran.
    pub fn sentence_transformers(&self) -> Option<f64> {
        self.sides
            .iter()
            .find(|s| {
                s.throughput
                    .implementation
                    .starts_with("sentence-transformers")
            })
            .map(|s| s.throughput.texts_per_s)
    }
}

/// How [`compare`] runs.
#[derive(Debug, Clone)]
pub struct CompareOptions<'a> {
    /// The peers and how to start them (none: relstitch only).
    pub peers: Vec<PeerEngine>,
    /// How to start the peers.
    pub setup: Option<PeerSetup<'a>>,
    /// Batch sizes each peer is tried at; the fastest is kept.
    pub peer_batch_sizes: Vec<usize>,
    /// Interleaved timed rounds.
    pub rounds: usize,
    /// relstitch's batch size (as reported).
    pub batch_size: usize,
    /// Threads (as reported; set the pool before).
    pub threads: usize,
}

/// Times relstitch's `encoders` (the first must be f32: the reference of fidelity) and the peers
/// on `texts`, interleaved.
///
/// 1. The machine's f32 matrix-product peak ([`matmul_peak`]).
/// 2. One warm-up run of each encoder (its vectors kept for fidelity).
/// 3. Each peer is started, warmed up, and timed twice at every batch size of
///    `peer_batch_sizes`, alternating between them; the one with the lowest time is kept, and the
///    peer's vectors at that batch size are saved for fidelity.
/// 4. `rounds` rounds in which every side runs once, in an order rotated from round to round, so
///    that a change in the machine's load reaches every side alike. Each side reports the median.
///
/// # Errors
/// [`Error::InvalidArgument`] for no encoders, texts or rounds; [`Error::Io`] for the texts file or the peers' scratch files; the errors of the peers and of the encoders.
pub fn compare(
    encoders: &[&Encoder],
    texts: &[String],
    options: &CompareOptions<'_>,
) -> Result<BenchReport> {
    let Some(first) = encoders.first() else {
        return Err(Error::invalid("encoders", "nothing to benchmark"));
    };
    let work = workload(first, texts)?;
    let peak = matmul_peak(5)?;
    let mut outputs = Vec::with_capacity(encoders.len());
    for e in encoders {
        outputs.push(e.embed(texts)?);
    }
    let reference = outputs[0].clone();
    let tmp = tempfile::Builder::new()
        .prefix("relstitch-bench-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let mut peers = Vec::new();
    let mut peer_info = Vec::new();
    if let Some(setup) = &options.setup {
        for &engine in &options.peers {
            let mut p = PeerProcess::spawn(engine, setup)?;
            let sizes = &options.peer_batch_sizes;
            let first_size = sizes.first().copied().unwrap_or(32);
            p.run(first_size)?;
            let mut tried: Vec<(usize, Vec<f64>)> = sizes.iter().map(|&b| (b, vec![])).collect();
            for _ in 0..2 {
                for (b, times) in tried.iter_mut() {
                    times.push(p.run(*b)?);
                }
            }
            let by_batch: Vec<(usize, f64)> = tried.iter().map(|(b, t)| (*b, median(t))).collect();
            let best = by_batch
                .iter()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map_or(first_size, |x| x.0);
            let save = tmp.path().join(format!("{}.safetensors", engine.as_str()));
            p.save(best, &save)?;
            let theirs = crate::io::SafetensorsFile::read(&save, &candle_core::Device::Cpu)?
                .matrix("embeddings")?;
            peer_info.push((best, by_batch, fidelity(&reference, &theirs)?));
            peers.push(p);
        }
    }
    // Timed rounds: relstitch's sides first, then the peers', rotated each round.
    let sides = encoders.len() + peers.len();
    let mut seconds: Vec<Vec<f64>> = vec![Vec::new(); sides];
    for round in 0..options.rounds.max(1) {
        for step in 0..sides {
            let side = (step + round) % sides;
            if side < encoders.len() {
                let start = Instant::now();
                encoders[side].embed(texts)?;
                seconds[side].push(start.elapsed().as_secs_f64());
            } else {
                let i = side - encoders.len();
                let batch = peer_info[i].0;
                seconds[side].push(peers[i].run(batch)?);
            }
        }
    }
    let version = env!("CARGO_PKG_VERSION");
    let mut out = Vec::with_capacity(sides);
    for (i, e) in encoders.iter().enumerate() {
        let precision = e.identity().precision;
        out.push(Side {
            throughput: Throughput::new(
                format!("relstitch {version} ({})", e.backend_name()),
                precision.as_str(),
                &work,
                options.batch_size,
                options.threads,
                seconds[i].clone(),
            ),
            fidelity: if i == 0 {
                None
            } else {
                Some(fidelity(&reference, &outputs[i])?)
            },
            by_batch_size: Vec::new(),
            versions: serde_json::Value::Null,
        });
    }
    for (i, (p, (best, by_batch, fid))) in peers.iter().zip(peer_info).enumerate() {
        out.push(Side {
            throughput: Throughput::new(
                p.implementation.clone(),
                p.engine().precision(),
                &work,
                best,
                options.threads,
                seconds[encoders.len() + i].clone(),
            ),
            fidelity: Some(fid),
            by_batch_size: by_batch,
            versions: p.versions.clone(),
        });
    }
    Ok(BenchReport {
        model: first.identity().name.clone(),
        workload: work,
        threads: options.threads,
        rounds: options.rounds.max(1),
        matmul_peak_gflop_per_s: peak,
        sides: out,
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
