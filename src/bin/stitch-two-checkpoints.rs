//! `stitch-two-checkpoints`: the encoder of one checkpoint with the decoder of another, zero-shot.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use relstitch::checkpoint::{Checkpoint, Space};
use relstitch::data::{read_table, Fields};
use relstitch::device::DeviceChoice;
use relstitch::encoder::{EncoderOptions, Precision};
use relstitch::stitch::{Pipeline, StitchOptions, StitchReport};
use relstitch::translation::TranslationMethod;

/// Stitch two relstitch checkpoints: run the decoder (head) of B on the encoder of A, without
/// retraining.
///
/// If B reads relative vectors, B's anchors are embedded with A's encoder and A's relative vectors
/// go straight into B's head (zero-shot, the paper's method). If B reads absolute latents, a latent
/// translation (--translation) is fitted on B's anchors embedded by both encoders.
///
/// With --eval, prints accuracy, macro F1 and weighted F1 of A alone, B alone and the stitch on the
/// same test set (--json: one object {"encoder_checkpoint", "decoder_checkpoint", "stitched"}).
/// With --out, writes the stitched model as a checkpoint that `relstitch predict` runs.
///
/// Example: `stitch-two-checkpoints --encoder-from ckpt-mpnet --decoder-from ckpt-minilm --eval test.jsonl`
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    /// Checkpoint whose encoder is used (A).
    #[arg(long)]
    encoder_from: PathBuf,
    /// Checkpoint whose decoder (head) is used (B).
    #[arg(long)]
    decoder_from: PathBuf,
    /// Labelled test data (.jsonl with `text` and `label`, or .csv/.tsv) to evaluate on.
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Write the stitched checkpoint here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the evaluation as JSON (with --eval).
    #[arg(long, requires = "eval")]
    json: bool,
    /// Latent translation, when the decoder (B) reads absolute latents. [default: procrustes]
    #[arg(long, value_enum)]
    translation: Option<TranslationArg>,
    /// Where to run: auto, cpu, cuda[:N], metal[:N].
    #[arg(long, default_value = "auto")]
    device: String,
    /// CPU threads, at least 1 and at most a few times the number of cores (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Arithmetic of the encoders' linear layers: f32, bf16 or int8 (CPU only). [default: what
    /// each checkpoint recorded]
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// Log more (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum TranslationArg {
    /// Orthogonal Procrustes after standard scaling.
    Procrustes,
    /// Least-squares linear map.
    Linear,
    /// Least-squares affine map.
    Affine,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let level = ["warn", "info", "debug"][usize::from(cli.verbose.min(2))];
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(n) = cli.threads {
        relstitch::device::set_num_threads(n)?;
    }
    let options = StitchOptions {
        encoder: EncoderOptions {
            precision: cli.precision,
            ..EncoderOptions::default().with_device(cli.device.parse::<DeviceChoice>()?)
        },
        translation: match cli.translation.unwrap_or(TranslationArg::Procrustes) {
            TranslationArg::Procrustes => TranslationMethod::Procrustes,
            TranslationArg::Linear => TranslationMethod::Linear,
            TranslationArg::Affine => TranslationMethod::Affine,
        },
        cache: true,
    };
    if let Some(out) = &cli.out {
        // Refused before any embedding: an input, or a folder that may not be replaced.
        relstitch::io::refuse_overwriting_inputs(out, &[&cli.encoder_from, &cli.decoder_from])?;
        Checkpoint::check_destination(out)?;
    }
    let a = Checkpoint::load(&cli.encoder_from)?;
    let b = Checkpoint::load(&cli.decoder_from)?;
    if cli.translation.is_some() && !matches!(b.config.space, Space::Absolute) {
        anyhow::bail!(
            "--translation only applies when the decoder checkpoint reads absolute latents; {} \
             reads {} vectors, which are stitched zero-shot without a translation",
            cli.decoder_from.display(),
            b.config.space.name()
        );
    }
    let stitched = Pipeline::stitch(&a, &b, &options)?;
    if let Some(out) = &cli.out {
        stitched.checkpoint().save(out)?;
        eprintln!("stitched checkpoint written to {}", out.display());
    }
    if let Some(test) = &cli.eval {
        let test = read_table(test, &Fields::default())?;
        let report = StitchReport::evaluate(&a, &b, &stitched, &test, &options)?;
        if cli.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!(
                "encoder: {} ({})   decoder: {} ({}, {})",
                a.config.encoder.name,
                cli.encoder_from.display(),
                b.config.encoder.name,
                cli.decoder_from.display(),
                b.config.space.name()
            );
            println!("{report}");
        }
    } else if cli.out.is_none() {
        eprintln!("nothing to do: pass --eval TEST.jsonl and/or --out DIR");
    }
    Ok(())
}
