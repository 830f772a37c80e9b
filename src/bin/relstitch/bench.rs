//! `relstitch bench`: throughput against sentence-transformers and ONNX Runtime in the same run.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use relstitch::encoder::bench::{
    fidelity, matmul_peak, run_peer, time_encoder, workload, Fidelity, PeerEngine, PeerRun,
    Throughput,
};
use relstitch::encoder::{CpuBackend, CpuParallelism, Encoder, Precision};

use crate::common::{ModelArgs, RunArgs};

/// The peer script, built into the binary so that an installed `relstitch` needs no source tree.
const PEER_SCRIPT: &str = include_str!("../../../scripts/bench/peer_throughput.py");

/// Throughput of relstitch against sentence-transformers (PyTorch) and ONNX Runtime, in one run.
///
/// relstitch embeds the texts at each --precision (f32 always, as the reference of fidelity) with
/// its defaults (or --batch-size); then each peer embeds them at every batch size of
/// --peer-batch-sizes and keeps its best; then relstitch runs again, so that a change in the
/// machine's load during the run affects both sides. Every figure is the median of the timed runs
/// after a warm-up. Reported: texts/s, tokens/s, effective GFLOP/s (linear layers and attention,
/// no padding) and its share of this machine's f32 matrix-product peak (measured first), each
/// side's ratio to sentence-transformers, and the mean / min cosine of each side's vectors to
/// relstitch's f32 ones.
///
/// The peers are `scripts/bench/peer_throughput.py`, run with --python (an interpreter with
/// sentence-transformers, torch, onnxruntime and onnx; see docs/BENCHMARKS.md). Example:
/// `relstitch bench --model all-MiniLM-L6-v2 --texts texts.jsonl --threads 2 --python venv/bin/python`
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The model (as for `embed`).
    #[arg(long, short)]
    pub model: String,
    /// Real texts to embed (.jsonl for the peers; .txt works with --no-peer).
    #[arg(long)]
    pub texts: PathBuf,
    /// The JSON field holding the text.
    #[arg(long, default_value = "text")]
    pub field: String,
    /// Timed runs per side and block (the median is kept, after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Python interpreter for the peers.
    #[arg(long, env = "RELSTITCH_BENCH_PYTHON", default_value = "python3")]
    pub python: String,
    /// Another peer script (default: the built-in copy of scripts/bench/peer_throughput.py).
    #[arg(long)]
    pub peer_script: Option<PathBuf>,
    /// The peers to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sentence-transformers,onnxruntime,onnxruntime-int8"
    )]
    pub peers: Vec<PeerEngine>,
    /// Batch sizes each peer is timed at (its best is reported).
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128")]
    pub peer_batch_sizes: Vec<usize>,
    /// Skip the peers (relstitch only).
    #[arg(long)]
    pub no_peer: bool,
    /// relstitch's CPU implementation: its packed encoder, or candle's padded batches (the
    /// implementation before the packed encoder, f32 only).
    #[arg(long, value_enum, default_value = "packed")]
    pub backend: BackendArg,
    /// How the packed encoder uses the threads: split every op (ops) or one batch per thread
    /// (batches).
    #[arg(long, value_enum, default_value = "ops")]
    pub parallelism: ParallelismArg,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Profile relstitch op by op (exclusive time of each traced op over the timed runs) instead
    /// of comparing with the peers; the timing of a profiled run includes the tracing overhead.
    #[arg(long)]
    pub profile: bool,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub model_options: ModelArgs,
}

/// `--backend`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum BackendArg {
    /// relstitch's padding-free encoder.
    Packed,
    /// candle's padded batches.
    Candle,
}

/// `--parallelism`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ParallelismArg {
    /// Every op split across the threads.
    Ops,
    /// One batch per thread.
    Batches,
}

struct Ours {
    precision: Precision,
    encoder: Encoder,
    seconds: Vec<f64>,
    embeddings: relstitch::Tensor,
}

pub fn run(args: BenchArgs, profile: Option<crate::profile::OpProfile>) -> anyhow::Result<()> {
    let threads = args.run.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let mut run = args.run.clone();
    run.threads = Some(threads);
    let mut precisions = vec![Precision::F32];
    if run.precision.is_empty() {
        precisions.extend([Precision::Bf16, Precision::Int8]);
    }
    for p in std::mem::take(&mut run.precision) {
        if !precisions.contains(&p) {
            precisions.push(p);
        }
    }
    let backend = match (args.backend, args.parallelism) {
        (BackendArg::Candle, _) => CpuBackend::Candle,
        (BackendArg::Packed, ParallelismArg::Ops) => CpuBackend::Packed(CpuParallelism::InsideOps),
        (BackendArg::Packed, ParallelismArg::Batches) => {
            CpuBackend::Packed(CpuParallelism::AcrossBatches)
        }
    };
    let base = args
        .model_options
        .apply(run.options(false)?)
        .with_cpu_backend(backend);
    let texts = relstitch::io::read_texts(&args.texts, &args.field)?;

    if let Some(profile) = profile {
        for &precision in &precisions {
            let encoder = Encoder::load(&args.model, &base.clone().with_precision(precision))?;
            encoder.embed(&texts)?;
            profile.reset();
            let (seconds, _) = time_encoder(&encoder, &texts, args.repeats, false)?;
            println!(
                "model {}  {precision} ({})  texts {}  batch {}  threads {}  (profiled: {} runs, \
                 median {:.3} s)",
                encoder.identity().name,
                encoder.backend_name(),
                texts.len(),
                run.batch_size(),
                threads,
                seconds.len(),
                relstitch::encoder::bench::median(&seconds)
            );
            crate::profile::print(&profile.report());
            println!();
        }
        return Ok(());
    }

    let peak = matmul_peak(5)?;
    let mut ours: Vec<Ours> = Vec::new();
    for &precision in &precisions {
        let encoder = Encoder::load(&args.model, &base.clone().with_precision(precision))?;
        let (seconds, embeddings) = time_encoder(&encoder, &texts, args.repeats, true)?;
        ours.push(Ours {
            precision,
            encoder,
            seconds,
            embeddings,
        });
    }
    let Some(first) = ours.first() else {
        anyhow::bail!("no precision to run");
    };
    let work = workload(&first.encoder, &texts)?;
    let model_dir = first.encoder.identity().path.clone();
    let model_name = first.encoder.identity().name.clone();
    // The f32 vectors, the reference of every fidelity figure.
    let reference = first.embeddings.clone();

    let mut peers: Vec<(
        PeerEngine,
        relstitch::encoder::bench::PeerResult,
        Option<Fidelity>,
    )> = Vec::new();
    if !args.no_peer {
        // The built-in peer goes to a temporary file unless --peer-script names another.
        let tmp = tempfile::Builder::new()
            .prefix("relstitch-bench-")
            .tempdir()?;
        let builtin = tmp.path().join("peer_throughput.py");
        std::fs::write(&builtin, PEER_SCRIPT)?;
        let script = args.peer_script.clone().unwrap_or(builtin);
        for &engine in &args.peers {
            let save = tmp.path().join(format!("{}.safetensors", engine.as_str()));
            let result = run_peer(
                &PeerRun {
                    python: &args.python,
                    script: &script,
                    engine,
                    model_dir: &model_dir,
                    texts_file: &args.texts,
                    field: &args.field,
                    batch_sizes: &args.peer_batch_sizes,
                    threads,
                    repeats: args.repeats,
                    save: Some(save.clone()),
                },
                &work,
            )?;
            let fid = match relstitch::io::SafetensorsFile::read(&save, &candle_core::Device::Cpu) {
                Ok(f) => Some(fidelity(&reference, &f.matrix("embeddings")?)?),
                Err(_) => None,
            };
            peers.push((engine, result, fid));
        }
        // The second block: the machine's load now, as the peers saw it.
        for o in &mut ours {
            let (more, _) = time_encoder(&o.encoder, &texts, args.repeats, false)?;
            o.seconds.extend(more);
        }
    }

    let version = env!("CARGO_PKG_VERSION");
    let mut rows: Vec<(Throughput, Option<Fidelity>)> = Vec::new();
    for o in &ours {
        let fid = if o.precision == Precision::F32 {
            None
        } else {
            Some(fidelity(&reference, &o.embeddings)?)
        };
        rows.push((
            Throughput::new(
                format!("relstitch {version} ({})", o.encoder.backend_name()),
                o.precision.as_str(),
                &work,
                run.batch_size(),
                threads,
                o.seconds.clone(),
            ),
            fid,
        ));
    }
    for (_, p, fid) in &peers {
        rows.push((p.best.clone(), *fid));
    }
    let st = peers
        .iter()
        .find(|(e, _, _)| *e == PeerEngine::SentenceTransformers)
        .map(|(_, p, _)| p.best.texts_per_s);

    if args.json {
        let v = serde_json::json!({
            "model": model_name,
            "texts_file": args.texts,
            "workload": work,
            "threads": threads,
            "matmul_peak_gflop_per_s": peak,
            "rows": rows.iter().map(|(t, f)| serde_json::json!({
                "throughput": t,
                "share_of_peak": t.gflop_per_s / peak,
                "ratio_to_sentence_transformers": st.map(|s| t.texts_per_s / s),
                "fidelity_to_relstitch_f32": f,
            })).collect::<Vec<_>>(),
            "peers": peers.iter().map(|(e, p, _)| serde_json::json!({
                "engine": e.as_str(),
                "by_batch_size": p.by_batch_size,
                "versions": p.versions,
            })).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "model {model_name}  texts {} ({} tokens, {:.1}/text)  threads {threads}  \
         f32 matmul peak {peak:.0} GFLOP/s",
        work.texts,
        work.tokens,
        work.tokens as f64 / work.texts.max(1) as f64,
    );
    println!(
        "{:<52} {:>5} {:>6} {:>9} {:>10} {:>8} {:>6} {:>7} {:>17}",
        "implementation",
        "prec",
        "batch",
        "texts/s",
        "tokens/s",
        "GFLOP/s",
        "%peak",
        "vs ST",
        "cos to f32 mean/min"
    );
    for (t, f) in &rows {
        let ratio = st.map_or("-".to_string(), |s| format!("{:.2}x", t.texts_per_s / s));
        let fid = f.map_or("-".to_string(), |f| {
            format!("{:.5}/{:.4}", f.mean_cosine, f.min_cosine)
        });
        println!(
            "{:<52} {:>5} {:>6} {:>9.1} {:>10.0} {:>8.1} {:>5.0}% {:>7} {:>17}",
            t.implementation,
            t.precision,
            t.batch_size,
            t.texts_per_s,
            t.tokens_per_s,
            t.gflop_per_s,
            100.0 * t.gflop_per_s / peak,
            ratio,
            fid
        );
    }
    for (e, p, _) in &peers {
        let tried: Vec<String> = p
            .by_batch_size
            .iter()
            .map(|(b, s)| format!("{b}: {:.1}/s", work.texts as f64 / s.max(1e-12)))
            .collect();
        println!(
            "  {} by batch size (texts/s): {}",
            e.as_str(),
            tried.join(", ")
        );
    }
    Ok(())
}
