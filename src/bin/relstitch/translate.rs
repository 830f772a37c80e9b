//! `relstitch translate`: fit or apply a map between two encoders' absolute spaces.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use relstitch::space::translation::{
    LatentTranslator, Scaling, TranslationMethod, TranslationOptions,
};

use relstitch::io::read_matrix;

/// The long help of `relstitch translate` (shown after the options by `--help`; the one-line summary
/// comes from `main.rs`).
const TRANSLATE_HELP: &str = "\
Fit or apply a latent translation: a map from one encoder's space to another's.

Fit it on *parallel anchors* — the same samples embedded by the source and by the target
encoder, in the same order — then apply it to any source embeddings to get vectors a decoder
trained on the target's absolute space accepts (Maiorca et al., NeurIPS 2023).

Example:
  relstitch translate fit --source a_anchors.safetensors --target b_anchors.safetensors --method procrustes --out t.safetensors
  relstitch translate apply --map t.safetensors --embeddings a_test.safetensors --output b_test.safetensors";

/// Arguments of `relstitch translate` (see [`TRANSLATE_HELP`]).
#[derive(Args, Debug)]
#[command(after_long_help = TRANSLATE_HELP)]
pub struct TranslateArgs {
    #[command(subcommand)]
    pub command: TranslateCommand,
}

/// The two steps.
#[derive(Subcommand, Debug)]
pub enum TranslateCommand {
    // No doc comments here: clap takes each subcommand's help from its arguments' struct.
    Fit(FitArgs),
    Apply(ApplyArgs),
}

/// Fit a translation on parallel anchors.
///
/// Output: a safetensors file with f64 tensors `matrix` [d_s, d_t], `bias` [d_t], `source_mean`,
/// `source_scale` [d_s], `target_mean`, `target_scale` [d_t] and metadata `method`, `scaling`,
/// `num_anchors`; the map is y = ((x − source_mean) / source_scale · matrix + bias) · target_scale
/// + target_mean, so numpy can apply it too.
#[derive(Args, Debug)]
pub struct FitArgs {
    /// The anchors embedded by the source encoder: tensor `embeddings` [n, d_s].
    #[arg(long, value_name = "A.safetensors")]
    pub source: PathBuf,
    /// The same anchors, same order, embedded by the target encoder: tensor `embeddings` [n, d_t].
    #[arg(long, value_name = "B.safetensors")]
    pub target: PathBuf,
    /// procrustes: an orthogonal map (rotation/reflection) after scaling, the narrower space
    /// zero-padded — robust with few anchors; linear / affine: unconstrained least squares
    /// (needs more anchors than dimensions to be well determined).
    #[arg(long, value_enum, default_value_t = TranslationMethod::Procrustes)]
    pub method: TranslationMethod,
    /// How both spaces are normalised before fitting: standard (per-dimension, as in the paper),
    /// isotropic (centre + one global scale: Procrustes then recovers exact rotations), or none.
    #[arg(long, value_enum, default_value_t = Scaling::Standard)]
    pub scaling: Scaling,
    /// The tensor to read from the input files.
    #[arg(long, default_value = "embeddings")]
    pub tensor: String,
    /// Where to write the translation (written atomically).
    #[arg(long, value_name = "T.safetensors")]
    pub out: PathBuf,
}

/// Translate source embeddings with a saved translation.
///
/// Output: tensor `embeddings` [n, d_t] f32 in input order (a drop-in for the target encoder's
/// embeddings), with metadata `translated_by` and `method`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// A translation written by `relstitch translate fit`.
    #[arg(long, value_name = "T.safetensors")]
    pub map: PathBuf,
    /// Source-space embeddings: tensor `embeddings` [n, d_s].
    #[arg(long, value_name = "X.safetensors")]
    pub embeddings: PathBuf,
    /// The tensor to read from --embeddings.
    #[arg(long, default_value = "embeddings")]
    pub tensor: String,
    /// Where to write the translated embeddings (written atomically).
    #[arg(long, value_name = "Y.safetensors")]
    pub output: PathBuf,
}

pub fn run(args: TranslateArgs) -> anyhow::Result<()> {
    match args.command {
        TranslateCommand::Fit(a) => fit(a),
        TranslateCommand::Apply(a) => apply(a),
    }
}

fn fit(args: FitArgs) -> anyhow::Result<()> {
    relstitch::io::check_output_file(&args.out, &[&args.source, &args.target])?;
    let source = read_matrix(&args.source, &args.tensor)?;
    let target = read_matrix(&args.target, &args.tensor)?;
    let options = TranslationOptions::default().with_scaling(args.scaling);
    let map =
        LatentTranslator::fit_with(&source, &target, args.method, &options).with_context(|| {
            format!(
                "fitting the translation from {} (source) to {} (target); nothing written",
                args.source.display(),
                args.target.display()
            )
        })?;
    let residual = map.relative_residual(&source, &target)?;
    map.save(&args.out)?;
    eprintln!(
        "{} translation ({} scaling) fitted on {} parallel anchors, {} -> {} dims; relative \
         residual on the anchors {residual:.4} -> {}",
        map.method().name(),
        map.scaling().name(),
        map.num_anchors(),
        map.source_dim(),
        map.target_dim(),
        args.out.display()
    );
    Ok(())
}

fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    relstitch::io::check_output_file(&args.output, &[&args.map, &args.embeddings])?;
    let map = LatentTranslator::load(&args.map)?;
    let x = read_matrix(&args.embeddings, &args.tensor)?;
    let y = map
        .apply(&x)
        .with_context(|| format!("translating {}", args.embeddings.display()))?;
    let meta = HashMap::from([
        ("translated_by".to_string(), args.map.display().to_string()),
        ("method".to_string(), map.method().name().to_string()),
        ("source".to_string(), args.embeddings.display().to_string()),
    ]);
    relstitch::io::check_finite(&y, "translated embeddings").with_context(|| {
        format!(
            "translating {} overflows f32; rescale the embeddings; nothing written to {}",
            args.embeddings.display(),
            args.output.display()
        )
    })?;
    relstitch::io::write_safetensors(&args.output, &[("embeddings", &y)], &meta)?;
    let (n, d) = y.dims2()?;
    eprintln!(
        "translated {n} embeddings to {d} dims -> {}",
        args.output.display()
    );
    Ok(())
}
