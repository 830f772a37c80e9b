//! `relstitch relative`: absolute embeddings in, relative representations out.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use relstitch::space::projection::{PreTransform, Projection};
use relstitch::space::relative_file::{project_file, AnchorSpec};

/// The long help of `relstitch relative` (shown after the options by `--help`; the one-line
/// summary comes from `main.rs`).
const RELATIVE_HELP: &str = "\
Project absolute embeddings onto anchors: each row becomes its similarities to the anchors.

Two encoders that embed the *same anchor samples* produce relative vectors that can be
compared, or fed to one decoder, without any training (zero-shot stitching). With the default
cosine projection the result is unchanged by rotations, reflections and rescaling of the
absolute space; add --center to also ignore translations.

Input: safetensors files holding tensor `embeddings` [n, d] (what `relstitch embed` writes).
Output: a safetensors file with tensor `relative` [n, k] f32 in input order, and metadata
`projection` and `pre_transform` (JSON), `num_anchors`, `dim`, `anchor_latents_sha256` (sha256
of the anchors' f32 latents) and, when the anchors are known samples, `anchor_set_sha256`.

Examples:
  relstitch relative --embeddings x.safetensors --anchors a.safetensors --output r.safetensors
  relstitch relative --embeddings x.safetensors --anchors rows:0..768 --center --output r.safetensors
  relstitch relative --embeddings x.safetensors --anchors rows:3,17,42 --projection sparse_topk --k 2 --output r.safetensors";

/// Arguments of `relstitch relative` (see [`RELATIVE_HELP`]).
#[derive(Args, Debug)]
#[command(after_long_help = RELATIVE_HELP)]
pub struct RelativeArgs {
    /// The embeddings to project: a safetensors file with tensor `embeddings` [n, d].
    #[arg(long, value_name = "X.safetensors")]
    pub embeddings: PathBuf,
    /// The anchors, as one of: a safetensors file with tensor `embeddings` [k, d] (the anchor
    /// samples embedded by the same encoder); `rows:I,J,K` or `rows:A..B` (0-based rows of
    /// --embeddings, B excluded); or an anchor-set .jsonl whose samples carry a `row`.
    #[arg(long, value_name = "SPEC")]
    pub anchors: String,
    #[command(flatten)]
    pub projection: ProjectionArgs,
    #[command(flatten)]
    pub sparse: SparseK,
    /// The tensor to read from the input files.
    #[arg(long, default_value = "embeddings")]
    pub tensor: String,
    /// Where to write the relative representations (written atomically).
    #[arg(long, value_name = "R.safetensors")]
    pub output: PathBuf,
}

/// The projection and its pre-transforms, shared by `relative`, `fit` and `compare`.
///
/// The number of anchors kept by `--projection sparse_topk` is not here: `relative` and `fit`
/// spell it `--k` ([`SparseK`]), `compare` `--top-k` (its `--k` is the neighbourhood size); the
/// messages below name the caller's spelling.
#[derive(Args, Debug, Clone)]
pub struct ProjectionArgs {
    /// How each sample is compared with each anchor. [default: cosine]
    #[arg(long, value_enum)]
    pub projection: Option<ProjectionArg>,
    /// The order of the Minkowski distance, for `--projection lp` (p ≥ 1).
    #[arg(long)]
    pub p: Option<f64>,
    /// The sharpening exponent for `--projection sparse_topk` (ASIF uses 8). [default: 8]
    #[arg(long)]
    pub power: Option<f64>,
    /// Subtract the anchors' mean from anchors and samples first (adds translation invariance).
    #[arg(long)]
    pub center: bool,
    /// Divide every dimension by the anchors' standard deviation first (adds invariance to
    /// per-dimension rescaling; breaks rotation invariance).
    #[arg(long)]
    pub standardize: bool,
    /// Scale every vector to unit length first (after --center/--standardize).
    #[arg(long)]
    pub l2_normalize: bool,
}

/// `--k`: the anchors kept per sample by `--projection sparse_topk` (`relative`, `fit`).
#[derive(Args, Debug, Clone)]
pub struct SparseK {
    /// How many anchors to keep per sample, for `--projection sparse_topk`.
    #[arg(long)]
    pub k: Option<usize>,
}

impl ProjectionArgs {
    /// The library's projection; `k` is the sparse top-k count, spelled `k_flag` by the caller.
    pub fn projection(&self, k: Option<usize>, k_flag: &str) -> anyhow::Result<Projection> {
        projection_from_args(self.projection, self.p, k, self.power, k_flag)
    }

    /// The library's pre-transform.
    pub fn pre_transform(&self) -> PreTransform {
        PreTransform::default()
            .with_center(self.center)
            .with_standardize(self.standardize)
            .with_l2_normalize(self.l2_normalize)
    }

    /// The flags given on the command line, by name (empty when all are left at their defaults).
    pub fn given<'a>(&self, k: Option<usize>, k_flag: &'a str) -> Vec<&'a str> {
        [
            ("--projection", self.projection.is_some()),
            ("--p", self.p.is_some()),
            (k_flag, k.is_some()),
            ("--power", self.power.is_some()),
            ("--center", self.center),
            ("--standardize", self.standardize),
            ("--l2-normalize", self.l2_normalize),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect()
    }
}

/// Projection names on the command line (as in the library's serde names).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProjectionArg {
    /// Cosine similarity (the paper's).
    Cosine,
    /// Angle / π, in [0, 1].
    Angular,
    /// Euclidean distance.
    Euclidean,
    /// Manhattan distance.
    L1,
    /// Chebyshev distance (largest coordinate difference).
    Linf,
    /// Minkowski distance of order --p.
    Lp,
    /// Least-squares coordinates in the anchor basis (invariant to any invertible linear map).
    #[value(name = "change_of_basis", alias = "change-of-basis")]
    ChangeOfBasis,
    /// ASIF: the top-k cosine similarities, raised to --power, renormalised.
    #[value(name = "sparse_topk", alias = "sparse-topk")]
    SparseTopk,
}

/// The command-line name of a projection.
fn arg_name(p: ProjectionArg) -> String {
    p.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// The sharpening exponent of `sparse_topk` when `--power` is not given (ASIF's).
const DEFAULT_POWER: f64 = 8.0;

/// Builds the library's projection from the name (default cosine) and its parameters, refusing a
/// parameter the projection does not take (`k_flag` is how the caller spells the top-k flag).
pub(crate) fn projection_from_args(
    name: Option<ProjectionArg>,
    p: Option<f64>,
    k: Option<usize>,
    power: Option<f64>,
    k_flag: &str,
) -> anyhow::Result<Projection> {
    let name = name.unwrap_or(ProjectionArg::Cosine);
    if p.is_some() && name != ProjectionArg::Lp {
        bail!("--p only applies to --projection lp (the projection here is {}); drop --p or use --projection lp", arg_name(name));
    }
    if name != ProjectionArg::SparseTopk {
        if k.is_some() {
            bail!("{k_flag} only applies to --projection sparse_topk (the projection here is {}); drop {k_flag} or use --projection sparse_topk", arg_name(name));
        }
        if power.is_some() {
            bail!("--power only applies to --projection sparse_topk (the projection here is {}); drop --power or use --projection sparse_topk", arg_name(name));
        }
    }
    Ok(match name {
        ProjectionArg::Cosine => Projection::Cosine,
        ProjectionArg::Angular => Projection::Angular,
        ProjectionArg::Euclidean => Projection::Euclidean,
        ProjectionArg::L1 => Projection::L1,
        ProjectionArg::Linf => Projection::LInf,
        ProjectionArg::Lp => Projection::Lp {
            p: p.context("--projection lp needs --p (e.g. --p 3)")?,
        },
        ProjectionArg::ChangeOfBasis => Projection::ChangeOfBasis,
        ProjectionArg::SparseTopk => Projection::SparseTopK {
            k: k.with_context(|| {
                format!("--projection sparse_topk needs {k_flag} (anchors kept per sample)")
            })?,
            power: power.unwrap_or(DEFAULT_POWER),
        },
    })
}

pub fn run(args: RelativeArgs) -> anyhow::Result<()> {
    let projection = args.projection.projection(args.sparse.k, "--k")?;
    let pre = args.projection.pre_transform();
    let spec: AnchorSpec = args.anchors.parse()?;
    let made = project_file(
        &args.embeddings,
        &spec,
        &args.tensor,
        projection,
        pre,
        &args.output,
    )
    .with_context(|| {
        format!(
            "projecting {} onto the anchors {}",
            args.embeddings.display(),
            args.anchors
        )
    })?;
    eprintln!(
        "{} samples × {} anchors ({projection}, pre-transform {pre}) -> {}",
        made.rows,
        made.anchors,
        args.output.display()
    );
    Ok(())
}
