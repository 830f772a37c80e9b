//! `relstitch bench`: throughput against sentence-transformers and ONNX Runtime in the same run.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use relstitch::encoder::bench::{
    compare, median, time_encoder, BenchReport, CompareOptions, PeerEngine, PeerSetup,
};
use relstitch::encoder::{CpuBackend, CpuParallelism, Encoder, Precision};

use crate::common::{ModelArgs, RunArgs};

/// The peer script, built into the binary so that an installed `relstitch` needs no source tree.
const PEER_SCRIPT: &str = include_str!("../../../scripts/bench/peer_throughput.py");

/// Throughput of relstitch against sentence-transformers (PyTorch) and ONNX Runtime, in one run.
///
/// relstitch runs at each --precision (f32 always, as the reference of fidelity) with its
/// defaults (or --batch-size). Each peer is loaded in its own process and tried at every batch size
/// of --peer-batch-sizes; it keeps its fastest. Then every side runs once per round for --repeats
/// rounds, interleaved, so that a change in the machine's load affects all sides alike; each figure
/// is the median of a side's rounds. Reported: texts/s, tokens/s, effective GFLOP/s (linear layers and attention,
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
    /// Timed rounds: every side runs once per round, interleaved (the median is kept, after a
    /// warm-up).
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
    let encoders = precisions
        .iter()
        .map(|&p| Encoder::load(&args.model, &base.clone().with_precision(p)))
        .collect::<relstitch::Result<Vec<_>>>()?;

    if let Some(profile) = profile {
        for encoder in &encoders {
            encoder.embed(&texts)?;
            profile.reset();
            let (seconds, _) = time_encoder(encoder, &texts, args.repeats, false)?;
            println!(
                "model {}  {} ({})  texts {}  batch {}  threads {}  (profiled: {} runs, \
                 median {:.3} s)",
                encoder.identity().name,
                encoder.identity().precision,
                encoder.backend_name(),
                texts.len(),
                run.batch_size(),
                threads,
                seconds.len(),
                median(&seconds)
            );
            crate::profile::print(&profile.report());
            println!();
        }
        return Ok(());
    }

    // The built-in peer goes to a temporary file unless --peer-script names another.
    let tmp = tempfile::Builder::new()
        .prefix("relstitch-peer-")
        .tempdir()?;
    let builtin = tmp.path().join("peer_throughput.py");
    std::fs::write(&builtin, PEER_SCRIPT)?;
    let script = args.peer_script.clone().unwrap_or(builtin);
    let model_dir = encoders
        .first()
        .map(|e| e.identity().path.clone())
        .unwrap_or_default();
    let setup = PeerSetup {
        python: &args.python,
        script: &script,
        model_dir: &model_dir,
        texts_file: &args.texts,
        field: &args.field,
        threads,
    };
    let refs: Vec<&Encoder> = encoders.iter().collect();
    let report = compare(
        &refs,
        &texts,
        &CompareOptions {
            peers: if args.no_peer {
                Vec::new()
            } else {
                args.peers.clone()
            },
            setup: (!args.no_peer).then_some(setup),
            peer_batch_sizes: args.peer_batch_sizes.clone(),
            rounds: args.repeats,
            batch_size: run.batch_size(),
            threads,
        },
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    print_report(&report);
    Ok(())
}

/// The report as a table.
fn print_report(report: &BenchReport) {
    let work = &report.workload;
    let peak = report.matmul_peak_gflop_per_s;
    println!(
        "model {}  texts {} ({} tokens, {:.1}/text)  threads {}  rounds {}  \
         f32 matmul peak {peak:.0} GFLOP/s",
        report.model,
        work.texts,
        work.tokens,
        work.tokens as f64 / work.texts.max(1) as f64,
        report.threads,
        report.rounds,
    );
    println!(
        "{:<50} {:>5} {:>5} {:>9} {:>9} {:>8} {:>6} {:>7} {:>17}",
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
    let st = report.sentence_transformers();
    for side in &report.sides {
        let t = &side.throughput;
        let ratio = st.map_or("-".to_string(), |s| format!("{:.2}x", t.texts_per_s / s));
        let fid = side.fidelity.map_or("-".to_string(), |f| {
            format!("{:.5}/{:.4}", f.mean_cosine, f.min_cosine)
        });
        println!(
            "{:<50} {:>5} {:>5} {:>9.1} {:>9.0} {:>8.1} {:>5.0}% {:>7} {:>17}",
            t.implementation,
            t.precision,
            t.batch_size,
            t.texts_per_s,
            t.tokens_per_s,
            t.gflop_per_s,
            100.0 * t.gflop_per_s / peak.max(1e-12),
            ratio,
            fid
        );
    }
    for side in report.sides.iter().filter(|s| !s.by_batch_size.is_empty()) {
        let tried: Vec<String> = side
            .by_batch_size
            .iter()
            .map(|(b, s)| format!("{b}: {:.1}", work.texts as f64 / s.max(1e-12)))
            .collect();
        println!(
            "  {} texts/s by batch size while choosing: {}",
            side.throughput.implementation,
            tried.join(", ")
        );
    }
}
