//! `relstitch bench`: throughput against sentence-transformers in the same run.

use std::path::PathBuf;

use clap::Args;
use relstitch::encoder::bench::{time_relstitch, time_sentence_transformers};

/// The sentence-transformers peer, built into the binary so that an installed `relstitch` needs no
/// source tree.
const PEER_SCRIPT: &str = include_str!("../../../scripts/bench/st_throughput.py");
use relstitch::encoder::Encoder;

use crate::common::{ModelArgs, RunArgs};

/// Throughput of relstitch against sentence-transformers (PyTorch), in one run.
///
/// Measures texts/s of both on the same model, texts, batch size and thread count, one after the
/// other, and prints both and their ratio.
///
/// The peer is `scripts/bench/st_throughput.py`, run with --python (an interpreter with
/// sentence-transformers and torch; see scripts/reference/README.md for one). Example:
/// `relstitch bench --model all-MiniLM-L6-v2 --texts tests/fixtures/bench_texts.jsonl --threads 2 --python .venv-ref/bin/python`
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The model (as for `embed`).
    #[arg(long, short)]
    pub model: String,
    /// Real texts to embed (.txt or .jsonl).
    #[arg(long)]
    pub texts: PathBuf,
    /// The JSON field holding the text.
    #[arg(long, default_value = "text")]
    pub field: String,
    /// Timed runs per side (the best is kept, after one warm-up).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Python interpreter for the sentence-transformers peer.
    #[arg(long, env = "RELSTITCH_BENCH_PYTHON", default_value = "python3")]
    pub python: String,
    /// Another peer script (default: the built-in copy of scripts/bench/st_throughput.py).
    #[arg(long)]
    pub peer_script: Option<PathBuf>,
    /// Skip the peer (relstitch only).
    #[arg(long)]
    pub no_peer: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub model_options: ModelArgs,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let threads = args.run.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let mut run = args.run.clone();
    run.threads = Some(threads);
    let options = args.model_options.apply(run.options(false)?);
    let encoder = Encoder::load(&args.model, &options)?;
    let texts = relstitch::io::read_texts(&args.texts, &args.field)?;
    let ours = time_relstitch(&encoder, &texts, run.batch_size(), threads, args.repeats)?;
    let peer = if args.no_peer {
        None
    } else {
        // The built-in peer goes to a temporary file unless --peer-script names another.
        let builtin = tempfile::Builder::new()
            .prefix("relstitch-peer-")
            .suffix(".py")
            .tempfile()?;
        std::fs::write(builtin.path(), PEER_SCRIPT)?;
        let script = args
            .peer_script
            .clone()
            .unwrap_or_else(|| builtin.path().to_path_buf());
        Some(time_sentence_transformers(
            &args.python,
            &script,
            &encoder.identity().path,
            &args.texts,
            run.batch_size(),
            threads,
            args.repeats,
        )?)
    };
    let ratio = peer.as_ref().map(|p| ours.texts_per_s / p.texts_per_s);
    if args.json {
        let v = serde_json::json!({
            "model": encoder.identity().name,
            "relstitch": ours,
            "sentence_transformers": peer,
            "ratio": ratio,
        });
        println!("{v}");
    } else {
        println!(
            "model {}  texts {}  batch {}  threads {}",
            encoder.identity().name,
            ours.texts,
            ours.batch_size,
            threads
        );
        println!(
            "{:<50} {:>10.1} texts/s",
            ours.implementation, ours.texts_per_s
        );
        if let (Some(p), Some(r)) = (&peer, ratio) {
            println!("{:<50} {:>10.1} texts/s", p.implementation, p.texts_per_s);
            println!("ratio relstitch / sentence-transformers: {r:.2}x");
        }
    }
    Ok(())
}
