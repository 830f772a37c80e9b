//! The relative-representation file: what `relstitch relative` writes, and how anchors are named on
//! the command line.
//!
//! A relative file is a safetensors file with one tensor, [`RELATIVE`] (`[n, k]` f32, in the input's
//! row order), and string metadata that says how it was made:
//!
//! | key | value |
//! |---|---|
//! | `projection`, `pre_transform`, `num_anchors`, `dim` | from [`RelativeProjector::metadata`] |
//! | [`ANCHOR_LATENTS_SHA256`] | sha256 of the anchors' f32 latents ([`latents_sha256`]) |
//! | [`ANCHOR_SET_SHA256`] | the anchor set's hash, when the anchors are known samples |
//! | `anchors` | the anchor spec as given ([`AnchorSpec`]) |
//! | `source` | the embeddings file it was made from |
//!
//! ```no_run
//! # fn main() -> relstitch::Result<()> {
//! use relstitch::space::relative_file::{project_file, AnchorSpec};
//! use relstitch::{PreTransform, Projection};
//! let spec: AnchorSpec = "rows:0..300".parse()?;
//! let made = project_file(
//!     "x.safetensors".as_ref(), &spec, "embeddings", Projection::Cosine,
//!     PreTransform::default().with_center(true), "r.safetensors".as_ref(),
//! )?;
//! println!("{} samples × {} anchors", made.rows, made.anchors);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::error::CandleContext;
use crate::io::{RowReader, RowWriter, SafetensorsFile};
use crate::space::anchors::AnchorSet;
use crate::space::projection::{PreTransform, Projection, RelativeProjector};
use crate::{Error, Result};

/// The tensor name of relative representations.
pub const RELATIVE: &str = "relative";
/// Metadata key: the sha256 of the anchors' f32 latents.
pub const ANCHOR_LATENTS_SHA256: &str = "anchor_latents_sha256";
/// Metadata key: the anchor set's content hash ([`AnchorSet::hash`]).
pub const ANCHOR_SET_SHA256: &str = "anchor_set_sha256";

/// Where anchors come from, as written on the command line.
#[derive(Debug, Clone, PartialEq)]
pub enum AnchorSpec {
    /// `rows:I,J,K` or `rows:A..B`: rows of the embeddings themselves.
    Rows(RowList),
    /// A safetensors file of anchor latents (`[k, d]`), the anchor samples embedded by the same
    /// encoder.
    File(PathBuf),
    /// An anchor-set `.jsonl` whose samples carry a `row`.
    Jsonl(PathBuf),
}

impl FromStr for AnchorSpec {
    type Err = Error;

    /// Parses `rows:…`, a `.jsonl`/`.ndjson` path, or (anything else) a safetensors path.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a malformed `rows:` list.
    fn from_str(spec: &str) -> Result<Self> {
        if let Some(rows) = spec.strip_prefix("rows:") {
            return Ok(Self::Rows(rows.parse()?));
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

impl AnchorSpec {
    /// The anchors' latents for one embedding matrix: its rows, or the rows an anchor set names, or
    /// tensor `tensor` of the anchor file.
    ///
    /// # Shapes
    /// - `embeddings`: `[n, d]`; the result's latents: `[k, d]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for rows out of range or named twice; the file errors of
    /// [`AnchorSet::load_jsonl`] and [`SafetensorsFile::read`].
    pub fn resolve(&self, embeddings: &Tensor, tensor: &str) -> Result<ResolvedAnchors> {
        match self {
            Self::Rows(rows) => {
                let n = embeddings
                    .dim(0)
                    .context(|| "reading the embeddings".into())?;
                let set = AnchorSet::from_rows(&rows.resolve(n)?)?;
                Ok(ResolvedAnchors {
                    latents: set.latents(embeddings)?,
                    set_hash: Some(set.hash()),
                })
            }
            Self::Jsonl(path) => {
                let set = AnchorSet::load_jsonl(path)?;
                Ok(ResolvedAnchors {
                    latents: set.latents(embeddings)?,
                    set_hash: Some(set.hash()),
                })
            }
            Self::File(path) => read_anchor_file(path, tensor),
        }
    }

    /// The anchors' latents for the matrix `reader` reads, reading only the rows they name (or
    /// tensor `tensor` of the anchor file).
    ///
    /// # Errors
    /// Those of [`resolve`](Self::resolve), and of reading the rows.
    fn resolve_rows(&self, reader: &mut RowReader, tensor: &str) -> Result<ResolvedAnchors> {
        let (rows, set_hash) = match self {
            // An anchor file is small and holds the latents themselves.
            Self::File(path) => return read_anchor_file(path, tensor),
            Self::Rows(rows) => {
                let set = AnchorSet::from_rows(&rows.resolve(reader.rows())?)?;
                (set.rows()?, set.hash())
            }
            Self::Jsonl(path) => {
                let set = AnchorSet::load_jsonl(path)?;
                let rows = set.rows()?;
                if let Some(&bad) = rows.iter().find(|&&r| r >= reader.rows()) {
                    return Err(Error::invalid(
                        "anchor rows",
                        format!(
                            "row {bad} (named by {}) is out of range: the matrix has {} rows",
                            path.display(),
                            reader.rows()
                        ),
                    ));
                }
                (rows, set.hash())
            }
        };
        let d = reader.cols();
        let mut values = Vec::with_capacity(rows.len() * d);
        for &r in &rows {
            values.extend(reader.read(r, 1)?);
        }
        let latents = Tensor::from_vec(values, (rows.len(), d), &Device::Cpu)
            .context(|| "gathering the anchor rows".into())?;
        Ok(ResolvedAnchors {
            latents,
            set_hash: Some(set_hash),
        })
    }

    /// The file this spec reads, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Rows(_) => None,
            Self::File(p) | Self::Jsonl(p) => Some(p),
        }
    }
}

/// Tensor `tensor` of an anchor file, and the anchor set hash it records.
fn read_anchor_file(path: &Path, tensor: &str) -> Result<ResolvedAnchors> {
    let f = SafetensorsFile::read(path, &Device::Cpu)?;
    Ok(ResolvedAnchors {
        latents: f.matrix(tensor)?,
        set_hash: f.metadata.get(ANCHOR_SET_SHA256).cloned(),
    })
}

impl fmt::Display for AnchorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rows(rows) => write!(f, "rows:{rows}"),
            Self::File(p) | Self::Jsonl(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A `rows:` list as written (`I,J,K` and `A..B`, B excluded), kept as spans so that a huge range
/// is checked against the row count before anything is expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowList {
    /// `(start, end, as written)`, end excluded, start < end.
    spans: Vec<(usize, usize, String)>,
}

impl FromStr for RowList {
    type Err = Error;

    /// Parses `I,J,K` and `A..B` lists of 0-based rows; refuses empty and reversed ranges.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the part that is wrong.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: String| Error::invalid("anchor rows", reason);
        let mut spans = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let number = |x: &str| -> Result<usize> {
                x.trim().parse().map_err(|_| {
                    bad(format!(
                        "bad row `{part}` (expected rows:I,J,K or rows:A..B with 0-based rows)"
                    ))
                })
            };
            if let Some((a, b)) = part.split_once("..") {
                let (a, b) = (number(a)?, number(b)?);
                if b <= a {
                    return Err(bad(format!(
                        "empty row range `{part}` (write A..B with A < B; B is excluded)"
                    )));
                }
                spans.push((a, b, part.to_string()));
            } else {
                let a = number(part)?;
                let b = a
                    .checked_add(1)
                    .ok_or_else(|| bad(format!("row `{part}` is too large")))?;
                spans.push((a, b, part.to_string()));
            }
        }
        if spans.is_empty() {
            return Err(bad(
                "no rows given (expected rows:I,J,K or rows:A..B)".into()
            ));
        }
        Ok(Self { spans })
    }
}

impl fmt::Display for RowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<&str> = self.spans.iter().map(|(_, _, s)| s.as_str()).collect();
        write!(f, "{}", parts.join(","))
    }
}

impl RowList {
    /// The rows, in order, for a matrix of `n` rows.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a row or range past the last row (checked before anything
    /// is expanded) and for a row named twice.
    pub fn resolve(&self, n: usize) -> Result<Vec<usize>> {
        let bad = |reason: String| Error::invalid("anchor rows", reason);
        let mut total = 0usize;
        for (a, b, text) in &self.spans {
            if *b > n {
                let what = if b - a == 1 {
                    format!("row {a}")
                } else {
                    format!("row range `{text}`")
                };
                return Err(bad(format!(
                    "{what} is out of range: the embeddings have {n} rows (0..{n}); name rows \
                     below {n}"
                )));
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
                    return Err(bad(format!(
                        "duplicate row {r}: named twice ({by}); each anchor must be a different row"
                    )));
                }
                rows.push(r);
            }
        }
        Ok(rows)
    }
}

/// Anchor latents resolved against one embedding matrix.
#[derive(Debug, Clone)]
pub struct ResolvedAnchors {
    /// `[k, d]`.
    pub latents: Tensor,
    /// The anchor set's hash, when the anchors are known samples.
    pub set_hash: Option<String>,
}

/// The sha256 of a matrix's f32 little-endian bytes (metadata key [`ANCHOR_LATENTS_SHA256`]).
///
/// # Errors
/// [`Error::Candle`] when the tensor cannot be read as f32.
pub fn latents_sha256(t: &Tensor) -> Result<String> {
    let v = t
        .flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .context(|| "hashing the anchor latents".into())?;
    let mut h = Sha256::new();
    for x in v {
        h.update(x.to_le_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

/// What [`project_file`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelativeSummary {
    /// Samples (rows).
    pub rows: usize,
    /// Anchors (the width of each relative vector).
    pub anchors: usize,
}

/// Rows of the embeddings projected per step by [`project_file`]: memory holds this many input and
/// output rows, whatever the file's size.
pub const CHUNK_ROWS: usize = 8192;

/// Reads tensor `tensor` of `embeddings`, projects it onto the anchors of `spec` and writes the
/// relative file to `output` (atomically; refusing to replace an input or a non-regular file).
///
/// Streams: the anchors are read first (the rows they name, or their own file), then the
/// embeddings [`CHUNK_ROWS`] rows at a time, each chunk projected and written before the next is
/// read, so memory does not grow with the number of rows.
///
/// # Shapes
/// - the input tensor: `[n, d]`; the anchors: `[k, d]`; the output [`RELATIVE`]: `[n, k]` f32.
///
/// # Errors
/// [`Error::InvalidArgument`] for a bad anchor spec, anchors that do not fit the projection, or a
/// projection that overflows (nothing is written then); the file errors of reading and writing.
pub fn project_file(
    embeddings: &Path,
    spec: &AnchorSpec,
    tensor: &str,
    projection: Projection,
    pre: PreTransform,
    output: &Path,
) -> Result<RelativeSummary> {
    let mut inputs = vec![embeddings];
    inputs.extend(spec.path());
    crate::io::check_output_file(output, &inputs)?;
    let mut reader = RowReader::open(embeddings, tensor)?;
    let (n, d) = (reader.rows(), reader.cols());
    let anchors = spec.resolve_rows(&mut reader, tensor)?;
    let projector = RelativeProjector::fit(&anchors.latents, projection, pre)?;
    let mut meta: HashMap<String, String> = projector.metadata();
    meta.insert(
        ANCHOR_LATENTS_SHA256.into(),
        latents_sha256(&anchors.latents)?,
    );
    if let Some(h) = &anchors.set_hash {
        meta.insert(ANCHOR_SET_SHA256.into(), h.clone());
    }
    meta.insert("anchors".into(), spec.to_string());
    meta.insert("source".into(), embeddings.display().to_string());
    let k = projector.num_anchors();
    // Nothing appears at `output` unless every chunk was projected and written.
    let mut writer = RowWriter::create(output, &[(RELATIVE, vec![n, k])], &meta)?;
    let mut first = 0;
    while first < n {
        let len = CHUNK_ROWS.min(n - first);
        let x = Tensor::from_vec(reader.read(first, len)?, (len, d), &Device::Cpu)
            .context(|| format!("rows {first}..{} of {}", first + len, embeddings.display()))?;
        let rel = projector.project_at(&x, first)?;
        crate::io::check_finite(&rel, "relative representations")?;
        let values = rel
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .context(|| "reading the projection".into())?;
        writer.write(&values)?;
        first += len;
    }
    writer.finish()?;
    Ok(RelativeSummary {
        rows: n,
        anchors: k,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse() -> anyhow::Result<()> {
        let parse_rows = |s: &str| s.parse::<RowList>()?.resolve(10);
        assert_eq!(parse_rows("3, 1,2")?, vec![3, 1, 2]);
        assert_eq!(parse_rows("0..3,7")?, vec![0, 1, 2, 7]);
        assert!(parse_rows("").is_err());
        assert!(parse_rows("4..2").is_err());
        assert!(parse_rows("x").is_err());
        assert_eq!(
            "rows:1".parse::<AnchorSpec>()?,
            AnchorSpec::Rows("1".parse()?)
        );
        assert_eq!(
            "rows:0..3,7".parse::<AnchorSpec>()?.to_string(),
            "rows:0..3,7"
        );
        assert!(matches!("a.jsonl".parse()?, AnchorSpec::Jsonl(_)));
        assert!(matches!("a.safetensors".parse()?, AnchorSpec::File(_)));
        Ok(())
    }

    #[test]
    fn rows_are_checked_before_they_are_expanded() {
        let msg = |spec: &str, n: usize| match spec.parse::<RowList>().and_then(|r| r.resolve(n)) {
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
    }
}
