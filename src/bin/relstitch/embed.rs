//! `relstitch embed`: texts in, a safetensors matrix out.

use std::path::PathBuf;

use clap::Args;
use relstitch::encoder::Encoder;

use crate::common::{ModelArgs, RunArgs};

/// Embed a file of texts with one encoder.
///
/// Input: a .txt file (one text per line) or a .jsonl file (one object per line, text in --field).
/// Output: a safetensors file with tensor `embeddings` [n, d] f32 in input order, and the model's
/// identity (name, weights sha256, pooling, normalisation) as metadata. Read it with
/// `safetensors.numpy.load_file(path)["embeddings"]`.
///
/// Example: `relstitch embed --model all-mpnet-base-v2 --input texts.jsonl --output e.safetensors`
#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// A local folder, a catalog name (see `relstitch fetch --list`) or a Hub id in the HF cache.
    #[arg(long, short)]
    pub model: String,
    /// The texts: .txt or .jsonl.
    #[arg(long, short)]
    pub input: PathBuf,
    /// The JSON field holding the text (.jsonl input).
    #[arg(long, default_value = "text")]
    pub field: String,
    /// Where to write the safetensors file (written atomically).
    #[arg(long, short)]
    pub output: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub model_options: ModelArgs,
}

pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    relstitch::io::check_output_file(&args.output, &[&args.input])?;
    let options = args.model_options.apply(args.run.options(!args.quiet)?);
    let encoder = Encoder::load(&args.model, &options)?;
    let s =
        relstitch::encoder::embed::embed_file(&encoder, &args.input, &args.field, &args.output)?;
    if !args.quiet {
        eprintln!(
            "embedded {} texts with {} ({} dims) in {:.2}s -> {}",
            s.n,
            encoder.identity().name,
            s.dim,
            s.seconds,
            s.output.display()
        );
    }
    Ok(())
}
