//! `relstitch relative`: absolute embeddings in, relative representations out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use clap::{Args, ValueEnum};
use relstitch::io::SafetensorsFile;
use relstitch::space::anchors::AnchorSet;
use relstitch::space::projection::{PreTransform, Projection, RelativeProjector, Whitening};

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
    /// The tensor to read from the input files.
    #[arg(long, default_value = "embeddings")]
    pub tensor: String,
    /// Where to write the relative representations (written atomically).
    #[arg(long, value_name = "R.safetensors")]
    pub output: PathBuf,
}

/// The projection and its pre-transforms, shared by `relative` and `fit`.
#[derive(Args, Debug, Clone)]
pub struct ProjectionArgs {
    /// How each sample is compared with each anchor. [default: cosine]
    #[arg(long, value_enum)]
    pub projection: Option<ProjectionArg>,
    /// The order of the Minkowski distance, for `--projection lp` (p ≥ 1).
    #[arg(long)]
    pub p: Option<f64>,
    /// How many anchors to keep per sample, for `--projection sparse_topk`.
    #[arg(long)]
    pub k: Option<usize>,
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
    /// Scale every vector to unit length first (after --center/--standardize/--whiten).
    #[arg(long)]
    pub l2_normalize: bool,
    /// ZCA-whiten with the anchors' covariance first (after --center/--standardize), shrunk
    /// towards isotropy by SHRINKAGE times its mean eigenvalue (0 = full whitening). [default
    /// shrinkage: 1]
    #[arg(long, value_name = "SHRINKAGE", num_args = 0..=1, default_missing_value = "1.0")]
    pub whiten: Option<f64>,
}

impl ProjectionArgs {
    /// The library's projection.
    pub fn projection(&self) -> anyhow::Result<Projection> {
        projection_from_args(self.projection, self.p, self.k, self.power, "--k")
    }

    /// The library's pre-transform.
    pub fn pre_transform(&self) -> PreTransform {
        PreTransform::default()
            .with_center(self.center)
            .with_standardize(self.standardize)
            .with_l2_normalize(self.l2_normalize)
            .with_whiten(self.whiten.map(|shrinkage| Whitening { shrinkage }))
    }

    /// The flags given on the command line, by name (empty when all are left at their defaults).
    pub fn given(&self) -> Vec<&'static str> {
        [
            ("--projection", self.projection.is_some()),
            ("--p", self.p.is_some()),
            ("--k", self.k.is_some()),
            ("--power", self.power.is_some()),
            ("--center", self.center),
            ("--standardize", self.standardize),
            ("--l2-normalize", self.l2_normalize),
            ("--whiten", self.whiten.is_some()),
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

/// Where anchors come from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AnchorSpec {
    /// Rows of the embeddings.
    Rows(RowList),
    /// A safetensors file of anchor latents.
    File(PathBuf),
    /// An anchor-set JSONL whose samples carry rows.
    Jsonl(PathBuf),
}

impl AnchorSpec {
    /// Parses `rows:…`, a `.jsonl` path or a safetensors path.
    pub(crate) fn parse(spec: &str) -> anyhow::Result<Self> {
        if let Some(rows) = spec.strip_prefix("rows:") {
            return Ok(Self::Rows(RowList::parse(rows)?));
        }
        let path = PathBuf::from(spec);
        if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("jsonl") | Some("ndjson")
        ) {
            Ok(Self::Jsonl(path))
        } else {
            Ok(Self::File(path))
        }
    }
}

/// A `rows:` list as written (`I,J,K` and `A..B`, B excluded), kept as spans so that a huge range
/// is checked against the row count before anything is expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowList {
    /// `(start, end, as written)`, end excluded, start < end.
    spans: Vec<(usize, usize, String)>,
}

impl RowList {
    /// Parses `I,J,K` and `A..B` lists of 0-based rows; refuses empty and reversed ranges.
    pub(crate) fn parse(s: &str) -> anyhow::Result<Self> {
        let mut spans = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let number = |x: &str| -> anyhow::Result<usize> {
                x.trim().parse().with_context(|| {
                    format!("bad row `{part}` (expected rows:I,J,K or rows:A..B with 0-based rows)")
                })
            };
            if let Some((a, b)) = part.split_once("..") {
                let (a, b) = (number(a)?, number(b)?);
                if b <= a {
                    bail!("empty row range `{part}` (write A..B with A < B; B is excluded)");
                }
                spans.push((a, b, part.to_string()));
            } else {
                let a = number(part)?;
                let b = a
                    .checked_add(1)
                    .with_context(|| format!("row `{part}` is too large"))?;
                spans.push((a, b, part.to_string()));
            }
        }
        if spans.is_empty() {
            bail!("no rows given (expected rows:I,J,K or rows:A..B)");
        }
        Ok(Self { spans })
    }

    /// The rows, in order, for a matrix of `n` rows: refuses a row or range past the last row
    /// (before expanding it) and a row named twice.
    pub(crate) fn resolve(&self, n: usize) -> anyhow::Result<Vec<usize>> {
        let mut total = 0usize;
        for (a, b, text) in &self.spans {
            if *b > n {
                let what = if b - a == 1 {
                    format!("row {a}")
                } else {
                    format!("row range `{text}`")
                };
                bail!(
                    "{what} is out of range: the embeddings have {n} rows (0..{n}); name rows \
                     below {n}"
                );
            }
            total += b - a;
        }
        let mut rows = Vec::with_capacity(total);
        let mut first_use: HashMap<usize, &str> = HashMap::new();
        for (a, b, text) in &self.spans {
            for r in *a..*b {
                if let Some(earlier) = first_use.insert(r, text) {
                    let by = if earlier == text.as_str() {
                        format!("`{text}`")
                    } else {
                        format!("by `{earlier}` and by `{text}`")
                    };
                    bail!(
                        "duplicate row {r}: named twice ({by}); each anchor must be a different row"
                    );
                }
                rows.push(r);
            }
        }
        Ok(rows)
    }
}

/// Anchor latents resolved against one embedding matrix.
pub(crate) struct ResolvedAnchors {
    /// `[k, d]`.
    pub latents: Tensor,
    /// The anchor set's hash, when the anchors are known samples.
    pub set_hash: Option<String>,
}

/// Resolves `spec` against `embeddings` (rows) or reads the anchor file.
pub(crate) fn resolve_anchors(
    spec: &AnchorSpec,
    embeddings: &Tensor,
    tensor: &str,
) -> anyhow::Result<ResolvedAnchors> {
    match spec {
        AnchorSpec::Rows(rows) => {
            let n = embeddings.dim(0)?;
            let set = AnchorSet::from_rows(&rows.resolve(n)?)?;
            Ok(ResolvedAnchors {
                latents: set.latents(embeddings)?,
                set_hash: Some(set.hash()),
            })
        }
        AnchorSpec::Jsonl(path) => {
            let set = AnchorSet::load_jsonl(path)?;
            Ok(ResolvedAnchors {
                latents: set
                    .latents(embeddings)
                    .with_context(|| format!("taking the rows named by {}", path.display()))?,
                set_hash: Some(set.hash()),
            })
        }
        AnchorSpec::File(path) => {
            let f = SafetensorsFile::read(path, &Device::Cpu)?;
            Ok(ResolvedAnchors {
                latents: f.matrix(tensor)?,
                set_hash: f.metadata.get("anchor_set_sha256").cloned(),
            })
        }
    }
}

/// Reads tensor `name` of a safetensors file as an f32 matrix.
pub(crate) fn read_matrix(path: &Path, name: &str) -> anyhow::Result<Tensor> {
    Ok(SafetensorsFile::read(path, &Device::Cpu)?.matrix(name)?)
}

/// The sha256 of a matrix's f32 little-endian bytes.
pub(crate) fn latents_sha256(t: &Tensor) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let v = t.flatten_all()?.to_vec1::<f32>()?;
    let mut h = Sha256::new();
    for x in v {
        h.update(x.to_le_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

pub fn run(args: RelativeArgs) -> anyhow::Result<()> {
    relstitch::io::check_output_file(
        &args.output,
        &[&args.embeddings, std::path::Path::new(&args.anchors)],
    )?;
    let projection = args.projection.projection()?;
    let pre = args.projection.pre_transform();
    let x = read_matrix(&args.embeddings, &args.tensor)?;
    let spec = AnchorSpec::parse(&args.anchors)?;
    let anchors = resolve_anchors(&spec, &x, &args.tensor)?;
    let projector = RelativeProjector::fit(&anchors.latents, projection, pre)
        .context("fitting the projection on the anchors")?;
    let rel = projector
        .project(&x)
        .with_context(|| format!("projecting {}", args.embeddings.display()))?;
    let mut meta: HashMap<String, String> = projector.metadata();
    meta.insert(
        "anchor_latents_sha256".into(),
        latents_sha256(&anchors.latents)?,
    );
    if let Some(h) = &anchors.set_hash {
        meta.insert("anchor_set_sha256".into(), h.clone());
    }
    meta.insert("anchors".into(), args.anchors.clone());
    meta.insert("source".into(), args.embeddings.display().to_string());
    relstitch::io::check_finite(&rel, "relative representations")
        .with_context(|| format!("nothing written to {}", args.output.display()))?;
    relstitch::io::write_safetensors(&args.output, &[("relative", &rel)], &meta)?;
    let (n, k) = rel.dims2()?;
    eprintln!(
        "{n} samples × {k} anchors ({projection}, pre-transform {pre}) -> {}",
        args.output.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse() -> anyhow::Result<()> {
        let parse_rows = |s: &str| RowList::parse(s)?.resolve(10);
        assert_eq!(parse_rows("3, 1,2")?, vec![3, 1, 2]);
        assert_eq!(parse_rows("0..3,7")?, vec![0, 1, 2, 7]);
        assert!(parse_rows("").is_err());
        assert!(parse_rows("4..2").is_err());
        assert!(parse_rows("x").is_err());
        assert_eq!(
            AnchorSpec::parse("rows:1")?,
            AnchorSpec::Rows(RowList::parse("1")?)
        );
        assert!(matches!(
            AnchorSpec::parse("a.jsonl")?,
            AnchorSpec::Jsonl(_)
        ));
        assert!(matches!(
            AnchorSpec::parse("a.safetensors")?,
            AnchorSpec::File(_)
        ));
        Ok(())
    }

    #[test]
    fn rows_are_checked_before_they_are_expanded() -> anyhow::Result<()> {
        let msg = |spec: &str, n: usize| match RowList::parse(spec).and_then(|r| r.resolve(n)) {
            Ok(rows) => format!("accepted {} rows", rows.len()),
            Err(e) => e.to_string(),
        };
        // 10^11 rows would be 800 GB of indices: refused at once, naming the row count.
        let m = msg("0..99999999999", 10);
        assert!(
            m.contains("row range `0..99999999999` is out of range"),
            "{m}"
        );
        assert!(m.contains("10 rows"), "{m}");
        let m = msg("3,10", 10);
        assert!(m.contains("row 10 is out of range"), "{m}");
        assert!(msg("18446744073709551615", 10).contains("too large"));
        assert!(msg("5..5", 10).contains("empty row range"));
        assert!(msg("5..3", 10).contains("empty row range"));
        assert!(msg("0..-3", 10).contains("bad row"));
        assert!(msg("1,1", 10).contains("duplicate row 1: named twice (`1`)"));
        let m = msg("0..4,2", 10);
        assert!(
            m.contains("duplicate row 2: named twice (by `0..4` and by `2`)"),
            "{m}"
        );
        assert_eq!(msg("0..10", 10), "accepted 10 rows");
        Ok(())
    }
}
