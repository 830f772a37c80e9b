//! `relstitch predict` and `relstitch eval`: run a checkpoint.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use relstitch::data::{read_table, Fields};
use relstitch::task::checkpoint::Checkpoint;
use relstitch::task::stitch::{Pipeline, StitchOptions};

use crate::common::RunArgs;

/// Predict labels with a checkpoint (trained or stitched).
///
/// Input: .txt (one text per line) or .jsonl (--field). Output: JSON Lines, one object per text
/// with `label` and `probabilities` (label → probability), to --output (atomically) or stdout.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// The checkpoint directory.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The texts.
    #[arg(long, short)]
    pub input: PathBuf,
    /// The JSON field holding the text.
    #[arg(long, default_value = "text")]
    pub field: String,
    /// Where to write predictions (default: stdout).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Score a checkpoint on labelled data: accuracy, macro F1, weighted F1.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The checkpoint directory.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Labelled test data (.jsonl with `text` and `label`, or .csv/.tsv).
    #[arg(long)]
    pub test: PathBuf,
    /// Print one JSON object {"accuracy", "macro_f1", "weighted_f1", "n"}.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run_predict(args: PredictArgs) -> anyhow::Result<()> {
    if let Some(out) = &args.output {
        relstitch::io::check_output_file(out, &[&args.input])?;
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
        let parent = parent.unwrap_or(std::path::Path::new("."));
        if relstitch::io::refuse_overwriting_inputs(parent, &[&args.checkpoint]).is_err() {
            anyhow::bail!(
                "--output {} is inside the checkpoint {}; write predictions elsewhere",
                out.display(),
                args.checkpoint.display()
            );
        }
    }
    let ckpt = Checkpoint::load(&args.checkpoint)?;
    let options = StitchOptions {
        encoder: args.run.options(false)?,
        ..Default::default()
    };
    let pipeline = Pipeline::from_checkpoint(&ckpt, &options)?;
    let texts = relstitch::io::read_texts(&args.input, &args.field)?;
    let predictions = pipeline.predict(&texts)?;
    let mut out = Vec::new();
    for p in &predictions {
        let probs: serde_json::Map<String, serde_json::Value> = p
            .probabilities
            .iter()
            .map(|(l, v)| (l.clone(), serde_json::json!(v)))
            .collect();
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({"label": p.label, "probabilities": probs}),
        )?;
        out.push(b'\n');
    }
    match &args.output {
        Some(path) => relstitch::io::write_atomic(path, &out)?,
        None => std::io::stdout().write_all(&out)?,
    }
    Ok(())
}

pub fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    let ckpt = Checkpoint::load(&args.checkpoint)?;
    let options = StitchOptions {
        encoder: args.run.options(false)?,
        ..Default::default()
    };
    let pipeline = Pipeline::from_checkpoint(&ckpt, &options)?;
    let test = read_table(&args.test, &Fields::default())?;
    let s = pipeline.evaluate(&test)?;
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!(
            "accuracy {:.4}  macro F1 {:.4}  weighted F1 {:.4}  n {}",
            s.accuracy, s.macro_f1, s.weighted_f1, s.n
        );
    }
    Ok(())
}
