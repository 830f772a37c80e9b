//! `relstitch compare`: how similar are two latent spaces over the same samples?

use std::path::PathBuf;

use anyhow::{bail, Context};
use candle_core::Tensor;
use clap::{Args, ValueEnum};
use relstitch::encoder::Encoder;
use relstitch::io::read_matrix;
use relstitch::space::relative_file::AnchorSpec;
use relstitch::space::similarity::{compare_relative, compare_spaces, SpaceComparison};

use crate::common::{ModelArgs, RunArgs};
use crate::relative::ProjectionArgs;

/// The long help of `relstitch compare` (shown after the options by `--help`; the one-line summary
/// comes from `main.rs`).
const COMPARE_HELP: &str = "\
Measure how similar two latent spaces are, over the same samples embedded twice.

Metrics: linear CKA and debiased CKA (rotation- and scale-invariant, any widths), Jaccard@k
and mutual k-NN of cosine neighbourhoods (self excluded), and — when both spaces have the same
width — MRR and top-1 of cross-space retrieval (row i of A should find row i of B) and the mean
cosine between matching rows.

Absolute spaces of two different encoders share no coordinates, so retrieval between them is
at chance; their *relative* representations over shared anchors do. That is the paper's first
experiment: compare with `--space relative --anchors rows:0..300`.

Inputs: either two safetensors files (--a, --b) holding tensor `embeddings` [n, d_a] and
[n, d_b], row i of both being the same sample; or two models (--model twice) and a text file
(--input) that both embed.

Examples:
  relstitch compare --a x.safetensors --b y.safetensors --json
  relstitch compare --a x.safetensors --b y.safetensors --space relative --anchors rows:0..300
  relstitch compare --model all-MiniLM-L6-v2 --model all-mpnet-base-v2 --input texts.jsonl --anchors rows:0..100";

/// Arguments of `relstitch compare` (see [`COMPARE_HELP`]).
#[derive(Args, Debug)]
#[command(after_long_help = COMPARE_HELP)]
pub struct CompareArgs {
    /// The first space: a safetensors file with tensor `embeddings` [n, d_a].
    #[arg(
        long,
        value_name = "X.safetensors",
        requires = "b",
        conflicts_with = "model"
    )]
    pub a: Option<PathBuf>,
    /// The second space: a safetensors file with tensor `embeddings` [n, d_b], same samples.
    #[arg(
        long,
        value_name = "Y.safetensors",
        requires = "a",
        conflicts_with = "model"
    )]
    pub b: Option<PathBuf>,
    /// Instead of --a/--b: embed --input with this model; give it twice (first space, second).
    #[arg(long, value_name = "MODEL", num_args = 1, requires = "input")]
    pub model: Vec<String>,
    /// The texts both models embed (.txt or .jsonl), with --model.
    #[arg(long, value_name = "texts.jsonl", requires = "model")]
    pub input: Option<PathBuf>,
    /// The JSON field holding the text (.jsonl input), with --model.
    #[arg(long, default_value = "text", requires = "model")]
    pub field: String,
    /// Neighbourhood size for Jaccard@k and mutual k-NN (1 ≤ k < n).
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Anchors for relative representations: `rows:I,J,K` / `rows:A..B` (rows of both spaces),
    /// or `A.safetensors,B.safetensors` (the anchors embedded in each space, same order).
    #[arg(long, value_name = "SPEC")]
    pub anchors: Option<String>,
    /// Which representations to compare: the absolute embeddings, or their relative projections
    /// onto --anchors. Default: relative when --anchors is given, else absolute.
    #[arg(long, value_enum)]
    pub space: Option<SpaceArg>,
    #[command(flatten)]
    pub projection: ProjectionArgs,
    /// Anchors kept per sample for `--projection sparse_topk` (`--k` is the neighbourhood size
    /// here).
    #[arg(long = "top-k")]
    pub top_k: Option<usize>,
    /// Print one JSON object (keys linear_cka, debiased_cka, jaccard_at_k, mrr, top1, mean_cosine,
    /// mutual_knn, k, n; null where undefined) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The tensor to read from the input files (--a/--b and safetensors anchors).
    #[arg(long, default_value = "embeddings", conflicts_with = "model")]
    pub tensor: String,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub model_options: ModelArgs,
}

/// Which representations to compare.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpaceArg {
    /// The embeddings as they are.
    Absolute,
    /// Their relative representations over the anchors.
    Relative,
}

pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    let (a, b, names) = load_spaces(&args)?;
    let space = match (args.space, &args.anchors) {
        (Some(s), _) => s,
        (None, Some(_)) => SpaceArg::Relative,
        (None, None) => SpaceArg::Absolute,
    };
    let c = match space {
        SpaceArg::Absolute => {
            if args.anchors.is_some() {
                bail!("--anchors only applies to --space relative");
            }
            let given = args.projection.given(args.top_k, "--top-k");
            if !given.is_empty() {
                let (verb, them) = if given.len() == 1 {
                    ("applies", "it")
                } else {
                    ("apply", "them")
                };
                bail!(
                    "{} only {verb} to --space relative (with --anchors); drop {them} or add \
                     --anchors",
                    given.join(", ")
                );
            }
            compare_spaces(&a, &b, args.k)?
        }
        SpaceArg::Relative => {
            let spec = args.anchors.as_deref().context(
                "--space relative needs --anchors (rows:… or A.safetensors,B.safetensors)",
            )?;
            let projection = args.projection.projection(args.top_k, "--top-k")?;
            let pre = args.projection.pre_transform();
            let (anchors_a, anchors_b) = anchor_pair(spec, &a, &b, &args.tensor)?;
            compare_relative(&a, &b, &anchors_a, &anchors_b, projection, pre, args.k)
                .with_context(|| format!("--anchors {spec}"))?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&c)?);
    } else {
        print_table(&c, &names, space);
    }
    Ok(())
}

/// The two spaces, from files or from two models.
fn load_spaces(args: &CompareArgs) -> anyhow::Result<(Tensor, Tensor, [String; 2])> {
    match (&args.a, &args.b, args.model.as_slice()) {
        (Some(a), Some(b), []) => {
            if args.run.any_given() || args.model_options.any_given() {
                bail!(
                    "--device, --threads, --batch-size, --precision, --pooling, --normalize, \
                     --max-length and --prefix only apply with --model (with --a/--b nothing is \
                     embedded)"
                );
            }
            Ok((
                read_matrix(a, &args.tensor)?,
                read_matrix(b, &args.tensor)?,
                [a.display().to_string(), b.display().to_string()],
            ))
        }
        (None, None, [m1, m2]) => {
            let input = args.input.as_ref().context("--model needs --input")?;
            let texts = relstitch::io::read_texts(input, &args.field)?;
            let options = args.model_options.apply(args.run.options(!args.quiet)?);
            let embed = |m: &str| -> anyhow::Result<Tensor> {
                let enc = Encoder::load(m, &options).with_context(|| format!("loading {m}"))?;
                Ok(enc
                    .embed(&texts)
                    .with_context(|| format!("embedding {} with {m}", input.display()))?
                    .to_device(&candle_core::Device::Cpu)?)
            };
            Ok((embed(m1)?, embed(m2)?, [m1.clone(), m2.clone()]))
        }
        (None, None, models) if !models.is_empty() => {
            bail!("give --model exactly twice (got {})", models.len())
        }
        _ => bail!(
            "give either --a X.safetensors --b Y.safetensors, or --model A --model B --input texts"
        ),
    }
}

/// The anchors of each space: shared rows, or two files.
fn anchor_pair(
    spec: &str,
    a: &Tensor,
    b: &Tensor,
    tensor: &str,
) -> anyhow::Result<(Tensor, Tensor)> {
    if spec.starts_with("rows:") || spec.ends_with(".jsonl") {
        let spec: AnchorSpec = spec.parse()?;
        let ra = spec
            .resolve(a, tensor)
            .context("taking the anchors of the first space")?;
        let rb = spec
            .resolve(b, tensor)
            .context("taking the anchors of the second space")?;
        return Ok((ra.latents, rb.latents));
    }
    let Some((fa, fb)) = spec.split_once(',') else {
        bail!("--anchors must be rows:…, a .jsonl anchor set, or A.safetensors,B.safetensors (one file per space)");
    };
    let ra = AnchorSpec::File(fa.trim().into()).resolve(a, tensor)?;
    let rb = AnchorSpec::File(fb.trim().into()).resolve(b, tensor)?;
    if let (Some(ha), Some(hb)) = (&ra.set_hash, &rb.set_hash) {
        if ha != hb {
            bail!(
                "--anchors {spec}: the two files hold different anchor sets (anchor_set_sha256 \
                 {ha} vs {hb}); embed the same anchor samples in each space"
            );
        }
    }
    Ok((ra.latents, rb.latents))
}

fn print_table(c: &SpaceComparison, names: &[String; 2], space: SpaceArg) {
    let space = match space {
        SpaceArg::Absolute => "absolute",
        SpaceArg::Relative => "relative",
    };
    println!("A: {}", names[0]);
    println!("B: {}", names[1]);
    println!("{:<16} {space}", "space");
    println!("{c}");
}
