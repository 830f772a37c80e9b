//! `relstitch fit`: train a decoder on a frozen encoder and save a checkpoint.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use relstitch::data::{read_table, Fields};
use relstitch::space::anchors::AnchorStrategy;
use relstitch::task::checkpoint::Space;
use relstitch::task::decoder::{HeadKind, TrainOptions};
use relstitch::task::stitch::{fit, AnchorChoice, FitOptions};

use crate::common::{ModelArgs, RunArgs};
use crate::relative::{ProjectionArgs, SparseK};

/// Train a classification head on a frozen encoder's relative (default) or absolute latents.
///
/// Without projection flags the relative space is the cosine after centring on the anchors' mean
/// (`--center`): `relstitch stitch` then stitches it to any other encoder through a latent
/// translation into this encoder's space, the most faithful stitch measured on every pair of
/// catalog encoders, anisotropic ones (sre, e5) included. Any projection flag gives exactly the
/// space it names: `--projection cosine` alone for the paper's plain cosine, `--whiten` for the
/// cosine after ZCA whitening, the most robust space for zero-shot stitches.
///
/// Embeds the training texts (cached per model and text, so a second fit does not re-embed),
/// chooses anchors among them, projects onto the anchors, and trains the paper's head (LayerNorm,
/// then Linear) with AdamW and early stopping on a validation split. Deterministic for a given
/// --seed on CPU. The checkpoint is a directory: config.json, model.safetensors, anchors.jsonl,
/// and alignment.jsonl: up to --alignment-texts further training texts (without their labels) on
/// which a stitch fits its latent translation into this encoder's space; more pairs than the
/// anchors alone make that map steadier. They are the only training texts kept besides the
/// anchors: `--alignment-texts 0` keeps none.
///
/// Example: `relstitch fit --model all-MiniLM-L6-v2 --train train.jsonl --out ckpt-minilm`
#[derive(Args, Debug)]
pub struct FitArgs {
    /// The encoder: a folder, a catalog name or a Hub id in the HF cache.
    #[arg(long, short)]
    pub model: String,
    /// Labelled training data: .jsonl (`text`, `label`) or .csv/.tsv with a header.
    #[arg(long)]
    pub train: PathBuf,
    /// The text field / column.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// The label field / column.
    #[arg(long, default_value = "label")]
    pub label_field: String,
    /// Where to write the checkpoint directory (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of anchors chosen from the training set, or an anchors .jsonl file (with texts).
    /// [default: 768, or every distinct training text when there are fewer]
    #[arg(long)]
    pub anchors: Option<String>,
    /// How anchors are chosen from the training set (not with an anchors file). [default: stratified]
    #[arg(long, value_enum)]
    pub anchor_strategy: Option<StrategyArg>,
    /// Which space the head reads.
    #[arg(long, value_enum, default_value_t = SpaceArg::Relative)]
    pub space: SpaceArg,
    #[command(flatten)]
    pub projection: ProjectionArgs,
    #[command(flatten)]
    pub sparse: SparseK,
    /// The head: linear (LayerNorm + Linear, the paper's) or mlp (one hidden layer).
    #[arg(long, value_enum, default_value_t = HeadArg::Linear)]
    pub head: HeadArg,
    /// Hidden width of --head mlp. [default: 256]
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Maximum epochs.
    #[arg(long, default_value_t = 40)]
    pub epochs: usize,
    /// Seed of anchors, initialisation, validation split and shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Share of the training set held out for early stopping.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Training texts beyond the anchors kept in the checkpoint, without labels, for stitches
    /// to fit their latent translation on (a seeded uniform sample; all when fewer). 0 keeps none.
    #[arg(long, default_value_t = relstitch::task::stitch::ALIGNMENT_TEXTS)]
    pub alignment_texts: usize,
    /// Do not read or write the embedding cache.
    #[arg(long)]
    pub no_cache: bool,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub model_options: ModelArgs,
}

/// Anchor strategies on the command line.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum StrategyArg {
    /// Seeded uniform sample.
    Uniform,
    /// Class-stratified round-robin over a seeded shuffle (the paper's).
    Stratified,
    /// Farthest-point traversal in the encoder's space.
    #[value(name = "farthest_point", alias = "farthest-point")]
    FarthestPoint,
    /// The sample nearest to each k-means centroid.
    Kmeans,
}

/// Spaces on the command line.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum SpaceArg {
    /// Similarities to the anchors.
    Relative,
    /// The encoder's own embeddings.
    Absolute,
}

/// Heads on the command line.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum HeadArg {
    /// LayerNorm, Linear.
    Linear,
    /// LayerNorm, Linear, GELU, LayerNorm, Linear.
    Mlp,
}

/// Anchors chosen from the training set when `--anchors` is not given (the paper's text count).
const DEFAULT_ANCHORS: usize = 768;

/// Hidden width of `--head mlp` when `--hidden` is not given.
const DEFAULT_HIDDEN: usize = 256;

pub fn run(args: FitArgs) -> anyhow::Result<()> {
    // Refuse a folder that may not be replaced before minutes of embedding and training.
    relstitch::task::checkpoint::Checkpoint::check_destination(&args.out)?;
    if matches!(args.head, HeadArg::Linear) && args.hidden.is_some() {
        anyhow::bail!("--hidden only applies to --head mlp (the linear head has no hidden layer)");
    }
    if matches!(args.space, SpaceArg::Absolute) {
        let given = args.projection.given(args.sparse.k, "--k");
        if !given.is_empty() {
            let (verb, them) = if given.len() == 1 {
                ("applies", "it")
            } else {
                ("apply", "them")
            };
            anyhow::bail!(
                "{} only {verb} to --space relative (the head reads the encoder's own embeddings \
                 with --space absolute); drop {them} or use --space relative",
                given.join(", ")
            );
        }
    }
    let fields = Fields::default()
        .with_text(&args.text_field)
        .with_label(&args.label_field);
    let train = read_table(&args.train, &fields)?;
    let strategy = match args.anchor_strategy.unwrap_or(StrategyArg::Stratified) {
        StrategyArg::Uniform => AnchorStrategy::Uniform { seed: args.seed },
        StrategyArg::Stratified => AnchorStrategy::Stratified { seed: args.seed },
        StrategyArg::FarthestPoint => AnchorStrategy::FarthestPoint { seed: args.seed },
        StrategyArg::Kmeans => AnchorStrategy::KMeans {
            seed: args.seed,
            iterations: 20,
        },
    };
    let anchors = match args.anchors.as_deref().map(str::parse::<usize>) {
        None => AnchorChoice::UpTo {
            count: DEFAULT_ANCHORS,
            strategy,
        },
        Some(Ok(count)) => AnchorChoice::Select { count, strategy },
        Some(Err(_)) if args.anchor_strategy.is_some() => anyhow::bail!(
            "--anchor-strategy only applies when --anchors is a number (anchors chosen from the \
             training set); {} is read as an anchors file",
            args.anchors.as_deref().unwrap_or_default()
        ),
        Some(Err(_)) => {
            AnchorChoice::File(PathBuf::from(args.anchors.as_deref().unwrap_or_default()))
        }
    };
    let space = match args.space {
        SpaceArg::Absolute => Space::Absolute,
        // No projection flag: the library's default (cosine after centring on the anchors).
        SpaceArg::Relative if args.projection.given(args.sparse.k, "--k").is_empty() => {
            FitOptions::default().space
        }
        SpaceArg::Relative => Space::Relative {
            projection: args.projection.projection(args.sparse.k, "--k")?,
            pre_transform: args.projection.pre_transform(),
        },
    };
    let options = FitOptions {
        encoder: args.model_options.apply(args.run.options(!args.quiet)?),
        anchors,
        space,
        head: match args.head {
            HeadArg::Linear => HeadKind::Linear,
            HeadArg::Mlp => HeadKind::Mlp {
                hidden: args.hidden.unwrap_or(DEFAULT_HIDDEN),
            },
        },
        train: TrainOptions {
            epochs: args.epochs,
            seed: args.seed,
            val_fraction: args.val_fraction,
            learning_rate: args.lr,
            progress: !args.quiet,
            ..TrainOptions::default()
        },
        cache: !args.no_cache,
        alignment_texts: args.alignment_texts,
    };
    // Refuse absurd sizes and options before anything is embedded.
    options.head.validate()?;
    options.train.validate()?;
    let ckpt = fit(&args.model, &train, &options)?;
    ckpt.save(&args.out)?;
    let report = ckpt.config.training.as_ref().map(|t| &t.report);
    eprintln!(
        "trained on {} samples ({} labels, {} anchors, {} alignment texts, {} space); best epoch {}; validation weighted F1 {}",
        train.len(),
        train.labels.len(),
        ckpt.anchors.len(),
        ckpt.alignment.as_ref().map_or(0, |a| a.len()),
        ckpt.config.space.name(),
        report.map(|r| r.best_epoch).unwrap_or(0),
        report
            .and_then(|r| r.validation)
            .map(|v| format!("{:.4}", v.weighted_f1))
            .unwrap_or_else(|| "-".into())
    );
    println!("{}", args.out.display());
    Ok(())
}
