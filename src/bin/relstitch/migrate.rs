//! `relstitch migrate`: move a vector index to a new embedding model without re-embedding it.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use relstitch::migrate::{
    AdapterTraining, ApplyOptions, EvalOptions, MigrationMap, MigrationMethod, MigrationOptions,
    Reembed,
};

use crate::common::RunArgs;

const MIGRATE_HELP: &str = "\
Re-embed only a sample of anchor texts with both models, fit a map from the old model's space
to the new one's, then move the whole index through it (or bring the new model's queries back
to the old index with --inverse), and measure what it keeps.

Example (real data: King James verses as documents, World English Bible verses as queries):
  relstitch migrate data --out data/bible
  relstitch embed --model all-MiniLM-L6-v2 --input data/bible/corpus.txt --output index-minilm.safetensors
  relstitch migrate fit --from all-MiniLM-L6-v2 --to all-mpnet-base-v2 --anchors data/bible/anchors.txt --out map
  relstitch migrate apply --map map --embeddings index-minilm.safetensors --output index-mpnet.safetensors
  relstitch migrate eval --map map --data data/bible/eval.jsonl --k 10";

/// Move a vector index to a new embedding model without re-embedding the corpus.
#[derive(Args, Debug)]
#[command(after_long_help = MIGRATE_HELP)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: MigrateCommand,
}

/// The steps.
#[derive(Subcommand, Debug)]
pub enum MigrateCommand {
    Fit(FitArgs),
    Apply(ApplyArgs),
    Eval(EvalArgs),
    Plan(PlanArgs),
    Data(DataArgs),
}

/// Methods on the command line.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum MethodArg {
    /// Orthogonal Procrustes (works from 2 anchors; exact inverse).
    Procrustes,
    /// Least-squares affine map (needs more anchors than the old model has dimensions).
    Affine,
    /// Least-squares linear map after centring (same need).
    Linear,
    /// Procrustes + a trained rank-r correction (candle-nn); works with few anchors.
    Lowrank,
    /// Procrustes + a trained residual MLP (candle-nn); no inverse.
    Mlp,
    /// No map: both sides become similarities to the anchors (the paper's zero-shot route).
    Relative,
    /// No paired texts: --anchors is a sample embedded by the old model only, --to-corpus another
    /// sample embedded by the new model only; matched through their structure (annealed
    /// Gromov-Wasserstein transport, then Procrustes). Experimental: far below paired anchors on
    /// disjoint samples (docs/RESULTS.md); at most 2,048 texts per side are used, 2 to 5 minutes
    /// on 2 cores at that size.
    Unsupervised,
}

/// The two models of a migration: the old one (A), whose vectors the index holds, and the new
/// one (B), each with its own prefix or prompt.
#[derive(Args, Debug)]
pub struct ModelPair {
    /// The old model (A), whose vectors the index holds.
    #[arg(long, value_name = "MODEL")]
    pub from: String,
    /// The new model (B).
    #[arg(long, value_name = "MODEL")]
    pub to: String,
    /// Text prepended to every input of the old model (e.g. "query: " for multilingual-e5-small).
    #[arg(long)]
    pub from_prefix: Option<String>,
    /// Text prepended to every input of the new model.
    #[arg(long)]
    pub to_prefix: Option<String>,
    /// The old model's prompt by name, from its config_sentence_transformers.json (e.g. query).
    #[arg(long, conflicts_with = "from_prefix")]
    pub from_prompt_name: Option<String>,
    /// The new model's prompt by name.
    #[arg(long, conflicts_with = "to_prefix")]
    pub to_prompt_name: Option<String>,
}

impl ModelPair {
    /// Each model's encoder options: `base` with that model's prefix and prompt.
    fn options(
        &self,
        base: relstitch::EncoderOptions,
    ) -> (relstitch::EncoderOptions, relstitch::EncoderOptions) {
        let mut a = base.clone();
        a.prefix = self.from_prefix.clone();
        a.prompt_name = self.from_prompt_name.clone();
        let mut b = base;
        b.prefix = self.to_prefix.clone();
        b.prompt_name = self.to_prompt_name.clone();
        (a, b)
    }
}

/// Fit a migration map on anchor texts embedded by both models.
///
/// Writes MAP, a folder: map.json (both models' identities, method, parameters, anchors hash,
/// diagnostics), anchors.jsonl and map.safetensors; saved atomically, and only over an empty
/// folder or another map.
#[derive(Args, Debug)]
pub struct FitArgs {
    #[command(flatten)]
    pub pair: ModelPair,
    /// Anchor texts: .txt (one per line) or .jsonl (--field); a sample of the corpus.
    #[arg(long, value_name = "TEXTS")]
    pub anchors: PathBuf,
    /// The JSON field holding the text (.jsonl).
    #[arg(long, default_value = "text")]
    pub field: String,
    /// --method unsupervised: a sample of the corpus for the new model, unpaired with --anchors.
    #[arg(long, value_name = "TEXTS")]
    pub to_corpus: Option<PathBuf>,
    /// Refinement rounds of --method unsupervised.
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// The map's family (default procrustes: within 1.2 points of the best in our study from 512
    /// anchors on, the most robust below, exact inverse; see docs/RESULTS.md).
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    /// Rank of the lowrank correction.
    #[arg(long, default_value_t = 64)]
    pub rank: usize,
    /// Hidden width of the mlp adapter.
    #[arg(long, default_value_t = 1024)]
    pub hidden: usize,
    /// relative: do not centre the spaces on their anchors before the cosine.
    #[arg(long)]
    pub no_center: bool,
    /// Seed of the adapter training (lowrank, mlp) and of the cross-validation folds.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Maximum training epochs (lowrank, mlp).
    #[arg(long, default_value_t = AdapterTraining::default().epochs)]
    pub epochs: usize,
    /// Folds of the cross-validation on the anchors recorded in the diagnostics (0: none).
    #[arg(long, default_value_t = 5)]
    pub cv_folds: usize,
    /// The map folder to write.
    #[arg(long, value_name = "MAP")]
    pub out: PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Move vectors through a map, streaming rows in chunks.
///
/// The input must be a safetensors file written by `relstitch embed` with the map's old model
/// (new model with --inverse): same weights, pooling, normalisation, length and prefix; anything
/// else is refused naming the field. The output has tensor `embeddings` and metadata naming the
/// space its vectors are now in, the map and the input.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// A map written by `relstitch migrate fit`.
    #[arg(long, value_name = "MAP")]
    pub map: PathBuf,
    /// The vectors to move: tensor `embeddings` [n, d].
    #[arg(long, value_name = "IN.safetensors")]
    pub embeddings: PathBuf,
    /// Where to write the moved vectors (atomically).
    #[arg(long, value_name = "OUT.safetensors")]
    pub output: PathBuf,
    /// New model's vectors into the old model's space (a query-side adapter for the old index).
    #[arg(long)]
    pub inverse: bool,
    /// The tensor to read.
    #[arg(long, default_value = "embeddings")]
    pub tensor: String,
    /// Rows per chunk (memory stays flat whatever the number of rows). Chunks of a few MiB are
    /// fastest: larger ones make the allocator map and fault in fresh pages every chunk.
    #[arg(long, default_value_t = 1024)]
    pub chunk_rows: usize,
    /// Also write each row's confidence (tensor `confidence`).
    #[arg(long)]
    pub confidence: bool,
    /// Re-embed the least confident share of rows with the new model, e.g. 10% (needs --texts).
    #[arg(long, value_name = "P%", requires = "texts")]
    pub reembed_worst: Option<String>,
    /// The texts of the input's rows, in order (.txt or .jsonl with --field).
    #[arg(long, value_name = "CORPUS")]
    pub texts: Option<PathBuf>,
    /// The JSON field holding the text (--texts .jsonl).
    #[arg(long, default_value = "text")]
    pub field: String,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Measure what a migrated index keeps, on documents that are not anchors.
///
/// DATA lines carry `text` (a document) and optionally `query` (a query whose relevant document is
/// that line's text). Reports neighbourhood agreement (Jaccard@k, recall@k) and, with queries,
/// recall@1, recall@k, MRR and nDCG@k of new-model queries against re-embedded documents, migrated
/// documents, and the old index through --inverse queries.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A map written by `relstitch migrate fit`.
    #[arg(long, value_name = "MAP")]
    pub map: PathBuf,
    /// Evaluation data (.jsonl).
    #[arg(long, value_name = "DATA.jsonl")]
    pub data: PathBuf,
    /// Cut-off of recall@k, nDCG@k and neighbourhoods.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run: RunArgs,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Anchor strategies of `plan`.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum StrategyArg {
    /// k-means in the old model's space; the text nearest each centroid.
    Kmeans,
    /// Greedy farthest-point traversal of the old model's space.
    FarthestPoint,
    /// Uniformly at random.
    Uniform,
}

/// Choose which texts to re-embed as anchors, and predict what the budget keeps.
///
/// Picks the budget's texts by coverage of the old model's space, embeds only those with the new
/// model, holds out 20 % of them, and prints the predicted retained recall@k (the share of held-out
/// anchors whose new-model vector finds its own migrated vector among the k nearest) against the
/// anchor count (in the study of docs/RESULTS.md, within 5 points of the retained recall@10
/// measured on real queries, 0.9 on average). --out writes the picked texts, one per line, for
/// `migrate fit --anchors`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub pair: ModelPair,
    /// The corpus: .txt (one text per line) or .jsonl (--field).
    #[arg(long, value_name = "TEXTS")]
    pub corpus: PathBuf,
    /// The JSON field holding the text (.jsonl).
    #[arg(long, default_value = "text")]
    pub field: String,
    /// The corpus already embedded by the old model (rows in corpus order); embedded now otherwise.
    #[arg(long, value_name = "A.safetensors")]
    pub embeddings: Option<PathBuf>,
    /// How many texts to re-embed: a number (1000) or a share of the corpus (5%).
    #[arg(long)]
    pub budget: String,
    /// How to pick them.
    #[arg(long, value_enum, default_value_t = StrategyArg::Kmeans)]
    pub strategy: StrategyArg,
    /// The method whose retained recall is predicted.
    #[arg(long, value_enum, default_value_t = MethodArg::Procrustes)]
    pub method: MethodArg,
    /// Seed of the strategy.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to write the picked texts (one per line).
    #[arg(long, value_name = "ANCHORS.txt")]
    pub out: Option<PathBuf>,
    /// Print one JSON object (without the texts).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run: RunArgs,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Fetch real retrieval data for migration: King James verses (documents) and their World
/// English Bible renderings (queries), from Debian (sha256 verified).
///
/// Writes anchors.txt (a seeded sample of documents; its first m lines are a budget of m),
/// eval.jsonl (`text`, `query`; no anchor among them) and corpus.txt (every document).
#[derive(Args, Debug)]
pub struct DataArgs {
    /// The output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Anchor texts to write.
    #[arg(long, default_value_t = 4096)]
    pub anchors: usize,
    /// Evaluation pairs to write.
    #[arg(long, default_value_t = 4000)]
    pub eval: usize,
    /// Seed of the shuffle.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Silence the registry client.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: MigrateArgs) -> anyhow::Result<()> {
    match args.command {
        MigrateCommand::Fit(a) => fit(a),
        MigrateCommand::Apply(a) => apply(a),
        MigrateCommand::Eval(a) => eval(a),
        MigrateCommand::Plan(a) => plan(a),
        MigrateCommand::Data(a) => data(a),
    }
}

fn method(args: &FitArgs) -> MigrationMethod {
    match args.method {
        Some(MethodArg::Unsupervised) => MigrationMethod::Unsupervised {
            rounds: args.rounds,
        },
        m => method_of(m, args.rank, args.hidden, !args.no_center),
    }
}

/// The library's method for a command-line choice and its parameters.
fn method_of(m: Option<MethodArg>, rank: usize, hidden: usize, center: bool) -> MigrationMethod {
    match m {
        None => MigrationMethod::DEFAULT,
        Some(MethodArg::Procrustes) => MigrationMethod::Procrustes,
        Some(MethodArg::Affine) => MigrationMethod::Affine,
        Some(MethodArg::Linear) => MigrationMethod::Linear,
        Some(MethodArg::Lowrank) => MigrationMethod::LowRank { rank },
        Some(MethodArg::Mlp) => MigrationMethod::Mlp { hidden },
        Some(MethodArg::Relative) => MigrationMethod::Relative { center },
        Some(MethodArg::Unsupervised) => MigrationMethod::Unsupervised { rounds: 10 },
    }
}

fn fit(args: FitArgs) -> anyhow::Result<()> {
    let mut inputs = vec![args.anchors.as_path()];
    if let Some(c) = &args.to_corpus {
        inputs.push(c);
    }
    relstitch::io::refuse_overwriting_inputs(&args.out, &inputs)?;
    MigrationMap::check_destination(&args.out)?;
    let base = args.run.options(!args.quiet)?;
    let (a, b) = args.pair.options(base);
    let mut options = MigrationOptions::default()
        .with_method(method(&args))
        .with_seed(args.seed)
        .with_cv_folds(args.cv_folds)
        .with_progress(!args.quiet);
    options.training.epochs = args.epochs;
    let mut map = match (&options.method, &args.to_corpus) {
        (MigrationMethod::Unsupervised { .. }, Some(corpus)) => {
            MigrationMap::fit_unpaired_from_files(
                (&args.pair.from, &a),
                (&args.pair.to, &b),
                &args.anchors,
                corpus,
                &args.field,
                &options,
            )?
        }
        (MigrationMethod::Unsupervised { .. }, None) => {
            anyhow::bail!(
                "--method unsupervised needs --to-corpus: a sample of the corpus for the new model"
            )
        }
        _ => MigrationMap::fit_from_file(
            (&args.pair.from, &a),
            (&args.pair.to, &b),
            &args.anchors,
            &args.field,
            &options,
        )?,
    };
    map.save(&args.out)?;
    let d = &map.config().diagnostics;
    eprintln!(
        "{} map {} -> {} fitted on {} anchors in {:.1} s{}{} -> {}",
        map.method(),
        map.config().source.name,
        map.config().target.name,
        map.config().anchors.count,
        d.fit_seconds,
        d.anchor_residual
            .map(|r| format!("; residual on the anchors {r:.3}"))
            .unwrap_or_default(),
        d.cross_validation
            .as_ref()
            .map(|c| format!(
                "; {}-fold cross-validated neighbour recall@{} {:.3} (top-1 {:.3})",
                c.folds, c.k, c.neighbour_recall_at_k, c.top1
            ))
            .unwrap_or_default(),
        args.out.display()
    );
    Ok(())
}

fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let map = MigrationMap::load(&args.map)?;
    let mut options = ApplyOptions::default()
        .with_chunk_rows(args.chunk_rows)
        .with_confidence(args.confidence);
    options.tensor = args.tensor.clone();
    options.encoder = args.run.options(false)?;
    if args.inverse {
        options = options.inverse();
    }
    if let (Some(share), Some(texts)) = (&args.reembed_worst, &args.texts) {
        options = options.with_reembed(Reembed {
            fraction: relstitch::migrate::parse_share(share)?,
            texts: texts.clone(),
            field: args.field.clone(),
        });
    }
    let s = map.apply_file(&args.embeddings, &args.output, &options)?;
    eprintln!(
        "moved {} vectors ({} -> {} dims, {:?}, {}) in {:.1} s{}{} -> {}",
        s.rows,
        s.input_dim,
        s.output_dim,
        s.direction,
        s.method,
        s.seconds,
        s.mean_confidence
            .map(|c| format!("; mean confidence {c:.3}"))
            .unwrap_or_default(),
        if s.reembedded > 0 {
            format!("; {} re-embedded with the new model", s.reembedded)
        } else {
            String::new()
        },
        s.output.display()
    );
    Ok(())
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let map = MigrationMap::load(&args.map)?;
    let options = EvalOptions {
        k: args.k,
        encoder: args.run.options(!args.quiet)?,
        ..EvalOptions::default()
    };
    let report = map.evaluate(&args.data, &options)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

fn plan(args: PlanArgs) -> anyhow::Result<()> {
    use relstitch::migrate::{Budget, PlanOptions};
    use relstitch::space::anchors::AnchorStrategy;
    let mut inputs = vec![args.corpus.as_path()];
    if let Some(e) = &args.embeddings {
        inputs.push(e);
    }
    if let Some(out) = &args.out {
        relstitch::io::check_output_file(out, &inputs)?;
    }
    let texts = relstitch::io::read_texts(&args.corpus, &args.field)?;
    let base = args.run.options(!args.quiet)?;
    let (a, b) = args.pair.options(base);
    let source = relstitch::Encoder::load(&args.pair.from, &a)?;
    let target = relstitch::Encoder::load(&args.pair.to, &b)?;
    let corpus_a = match &args.embeddings {
        Some(path) => {
            let f = relstitch::io::SafetensorsFile::read(
                path,
                &relstitch::device::DeviceChoice::Cpu.device()?,
            )?;
            relstitch::migrate::check_identity(path, &f.metadata, source.identity(), "source")?;
            Some(f.matrix("embeddings")?)
        }
        None => None,
    };
    let options = PlanOptions {
        budget: Budget::parse(&args.budget)?,
        strategy: match args.strategy {
            StrategyArg::Kmeans => AnchorStrategy::KMeans {
                seed: args.seed,
                iterations: 10,
            },
            StrategyArg::FarthestPoint => AnchorStrategy::FarthestPoint { seed: args.seed },
            StrategyArg::Uniform => AnchorStrategy::Uniform { seed: args.seed },
        },
        method: method_of(Some(args.method), 64, 1024, true),
        ..PlanOptions::default()
    };
    let plan = relstitch::migrate::plan(&source, &target, &texts, corpus_a.as_ref(), &options)?;
    if let Some(out) = &args.out {
        let mut body = plan.texts.join("\n");
        body.push('\n');
        relstitch::io::write_atomic(out, body.as_bytes())?;
    }
    if args.json {
        let mut v = serde_json::to_value(&plan)?;
        if let Some(o) = v.as_object_mut() {
            o.remove("texts");
            o.remove("rows");
        }
        println!("{v}");
    } else {
        print!("{plan}");
    }
    Ok(())
}

fn data(args: DataArgs) -> anyhow::Result<()> {
    let fetcher = relstitch::Fetcher::new()?.with_quiet(args.quiet);
    let pairs = relstitch::data::bible::load_paraphrase(&fetcher)?;
    let files = relstitch::data::bible::write_paraphrase_split(
        &pairs,
        &args.out,
        args.anchors,
        args.eval,
        args.seed,
    )?;
    eprintln!(
        "{} verse pairs aligned; wrote {} ({} anchors), {} ({} pairs), {} ({} documents)",
        pairs.len(),
        files.anchors.display(),
        files.n_anchors,
        files.eval.display(),
        files.n_eval,
        files.corpus.display(),
        files.n_corpus
    );
    Ok(())
}
