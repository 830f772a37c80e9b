//! Moving a file of vectors through a map, a chunk of rows at a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Serialize;

use super::map::{Direction, MigrationMap};
use super::MigrationMethod;
use crate::encoder::{Encoder, EncoderOptions, ModelIdentity};
use crate::error::CandleContext;
use crate::io::{RowReader, RowWriter};
use crate::{Error, Result};

/// The identity fields that say *which* model it is rather than *what vectors* it makes: they may
/// differ between the map and the input (another name or folder for the same weights).
const NAMING_FIELDS: [&str; 7] = [
    "name",
    "hub_id",
    "revision",
    "commit",
    "path",
    "prompt_name",
    "similarity",
];

/// Re-embedding the least trustworthy migrated vectors with the new model.
#[derive(Debug, Clone, PartialEq)]
pub struct Reembed {
    /// The share of rows to re-embed (the lowest confidence first), in `(0, 1]`.
    pub fraction: f64,
    /// The texts of the input's rows, one per row in the same order (`.txt` or `.jsonl`).
    pub texts: PathBuf,
    /// The JSON field that holds the text (`.jsonl` only).
    pub field: String,
}

/// Options of [`MigrationMap::apply_file`].
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Forward (A's vectors in, B's out) or inverse.
    pub direction: Direction,
    /// The tensor to read from the input.
    pub tensor: String,
    /// Rows per chunk: memory stays near `chunk_rows × width × 8` bytes whatever the row count.
    pub chunk_rows: usize,
    /// Writes each row's confidence (tensor `confidence` `[n]`), see [`MigrationMap::confidence`].
    pub confidence: bool,
    /// Re-embeds the least confident rows with B (forward only).
    pub reembed: Option<Reembed>,
    /// How to run B when re-embedding.
    pub encoder: EncoderOptions,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            direction: Direction::Forward,
            tensor: crate::encoder::embed::EMBEDDINGS.into(),
            chunk_rows: 1024,
            confidence: false,
            reembed: None,
            encoder: EncoderOptions::default(),
        }
    }
}

impl ApplyOptions {
    /// Goes from B's space to A's (the query-side adapter).
    #[must_use]
    pub fn inverse(mut self) -> Self {
        self.direction = Direction::Inverse;
        self
    }

    /// Uses chunks of `rows` rows.
    #[must_use]
    pub fn with_chunk_rows(mut self, rows: usize) -> Self {
        self.chunk_rows = rows;
        self
    }

    /// Writes the per-row confidence.
    #[must_use]
    pub fn with_confidence(mut self, on: bool) -> Self {
        self.confidence = on;
        self
    }

    /// Re-embeds the least confident rows.
    #[must_use]
    pub fn with_reembed(mut self, reembed: Reembed) -> Self {
        self.reembed = Some(reembed);
        self
    }
}

/// What [`MigrationMap::apply_file`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplySummary {
    /// The input file.
    pub input: PathBuf,
    /// The output file.
    pub output: PathBuf,
    /// Rows moved.
    pub rows: usize,
    /// Their width before and after.
    pub input_dim: usize,
    /// .
    pub output_dim: usize,
    /// The direction.
    pub direction: Direction,
    /// The map's method.
    pub method: String,
    /// Rows re-embedded with B instead of migrated.
    pub reembedded: usize,
    /// Mean confidence, when computed.
    pub mean_confidence: Option<f64>,
    /// Seconds spent (re-embedding included).
    pub seconds: f64,
}

/// Fails unless the identity recorded in `metadata` (`relstitch.encoder`, as `relstitch embed`
/// writes it) describes the same vectors as `expected`: every field but the naming ones must agree
/// (weights sha256, architecture, pooling, normalisation, max length, prefix, width, and any field
/// a later relstitch adds, such as a precision).
///
/// # Errors
/// [`Error::ModelMismatch`] naming the first field that differs (or the missing record).
pub fn check_identity(
    path: &Path,
    metadata: &HashMap<String, String>,
    expected: &ModelIdentity,
    role: &str,
) -> Result<()> {
    let fix = format!(
        "embed the texts with the map's {role} model (`relstitch embed --model {}{}`), or fit a map from the model that made this file",
        expected.name,
        expected
            .prefix
            .as_ref()
            .map(|p| format!(" --prefix {p:?}"))
            .unwrap_or_default()
    );
    let mismatch = |field: &str, found: String, want: String| Error::ModelMismatch {
        path: path.to_path_buf(),
        field: field.to_string(),
        found,
        expected: format!("{want} (the map's {role} model, {})", expected.name).into(),
        fix: fix.clone().into(),
    };
    let Some(json) = metadata.get("relstitch.encoder") else {
        return Err(mismatch(
            "relstitch.encoder",
            "absent (the file does not say which model made it)".into(),
            "a recorded model identity".into(),
        ));
    };
    let found: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        mismatch(
            "relstitch.encoder",
            format!("unreadable ({e})"),
            "a recorded model identity".into(),
        )
    })?;
    let want = serde_json::to_value(expected)
        .map_err(|e| Error::invalid("model identity", e.to_string()))?;
    let (Some(want), Some(found)) = (want.as_object(), found.as_object()) else {
        return Err(mismatch(
            "relstitch.encoder",
            "not a JSON object".into(),
            "a recorded model identity".into(),
        ));
    };
    let mut fields: Vec<&String> = want.keys().collect();
    fields.sort_by_key(|k| (k.as_str() != "weights_sha256", k.as_str()));
    for key in fields {
        if NAMING_FIELDS.contains(&key.as_str()) {
            continue;
        }
        let w = &want[key];
        match found.get(key) {
            Some(f) if f == w => {}
            Some(f) => return Err(mismatch(key, f.to_string(), w.to_string())),
            None => return Err(mismatch(key, "not recorded".into(), w.to_string())),
        }
    }
    Ok(())
}

impl MigrationMap {
    /// Moves the vectors of `input` (a safetensors file with `options.tensor` `[n, d]`, written by
    /// `relstitch embed` with the map's source model, or its target model for
    /// [`Direction::Inverse`]) into `output`, streaming `options.chunk_rows` rows at a time.
    /// `output` holds tensor `embeddings` `[n, d_out]` f32 (plus `confidence` `[n]` and
    /// `reembedded` `[n]` (1 where re-embedded) when asked), and metadata naming the space the
    /// vectors are now in, the map and the input. It is written to a locked temporary file and
    /// renamed into place only when complete.
    ///
    /// # Errors
    /// [`Error::ModelMismatch`] when the input's width or recorded model differs from what the map
    /// takes (naming the field); [`Error::Input`] naming the row and column of a NaN or infinite
    /// value; [`Error::InvalidArgument`] for an output that is an input, `--inverse` with `mlp`,
    /// bad options. Nothing is written on any error.
    pub fn apply_file(
        &self,
        input: &Path,
        output: &Path,
        options: &ApplyOptions,
    ) -> Result<ApplySummary> {
        let start = std::time::Instant::now();
        let direction = options.direction;
        let mut inputs: Vec<PathBuf> = vec![input.to_path_buf()];
        if let Some(dir) = self.dir() {
            inputs.extend(["map.json", "map.safetensors", "anchors.jsonl"].map(|f| dir.join(f)));
        }
        if let Some(r) = &options.reembed {
            inputs.push(r.texts.clone());
        }
        let input_refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
        crate::io::check_output_file(output, &input_refs)?;
        if options.chunk_rows == 0 {
            return Err(Error::invalid("chunk rows", "must be at least 1"));
        }
        if direction == Direction::Inverse && !self.method().has_inverse() {
            return Err(super::map::no_inverse(&self.method()));
        }
        let is_relative = matches!(self.method(), MigrationMethod::Relative { .. });
        if let Some(r) = &options.reembed {
            if direction == Direction::Inverse || is_relative {
                return Err(Error::invalid(
                    "--reembed-worst",
                    "re-embedding replaces migrated vectors with the new model's own: it needs a forward migration with a translating method (not --inverse, not relative)",
                ));
            }
            if !(r.fraction > 0.0 && r.fraction <= 1.0) {
                return Err(Error::invalid(
                    "--reembed-worst",
                    format!("{}: give a share in (0, 100] %", 100.0 * r.fraction),
                ));
            }
        }
        if options.confidence && is_relative {
            return Err(Error::invalid(
                "--confidence",
                "the relative method keeps no translation to be confident about",
            ));
        }
        let expected = self.input_identity(direction).clone();
        let role = match direction {
            Direction::Forward => "source",
            Direction::Inverse => "target",
        };
        let mut reader = RowReader::open(input, &options.tensor)?;
        if reader.cols() != expected.dim {
            return Err(Error::ModelMismatch {
                path: input.to_path_buf(),
                field: "width".into(),
                found: format!("{} (tensor `{}`)", reader.cols(), options.tensor),
                expected: format!(
                    "{} (the map's {role} model, {})",
                    expected.dim, expected.name
                )
                .into(),
                fix: format!(
                    "give vectors of the map's {role} model{}",
                    if direction == Direction::Forward {
                        " (or add --inverse to bring the target model's vectors back)"
                    } else {
                        " (or drop --inverse to move the source model's vectors)"
                    }
                )
                .into(),
            });
        }
        check_identity(input, reader.metadata(), &expected, role)?;
        let n = reader.rows();
        let d_out = self.output_dim(direction);
        let want_conf = options.confidence || options.reembed.is_some();

        // Pass 1 (re-embedding only): every row's confidence, to find the least trustworthy.
        let mut confidence: Vec<f32> = Vec::new();
        let mut replacement: HashMap<usize, Vec<f32>> = HashMap::new();
        if let Some(r) = &options.reembed {
            self.stream(&mut reader, direction, options.chunk_rows, |_, x, _| {
                confidence.extend(self.confidence(x)?);
                Ok(())
            })?;
            let m = ((n as f64) * r.fraction).ceil() as usize;
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&i, &j| confidence[i].total_cmp(&confidence[j]).then(i.cmp(&j)));
            order.truncate(m.min(n));
            order.sort_unstable();
            let texts = crate::io::read_texts(&r.texts, &r.field)?;
            if texts.len() != n {
                return Err(Error::Input {
                    path: r.texts.clone(),
                    line: None,
                    reason: format!(
                        "{} texts for the {n} rows of {}: --texts must hold the text of each row, in order",
                        texts.len(),
                        input.display()
                    ),
                });
            }
            let chosen: Vec<&str> = order.iter().map(|&i| texts[i].as_str()).collect();
            if !chosen.is_empty() {
                let b = Encoder::from_identity(&self.config().target, &options.encoder)?;
                let e = crate::encoder::cache::EmbeddingCache::for_identity(b.identity())?
                    .embed(&b, &chosen)?
                    .to_vec2::<f32>()
                    .context(|| "re-embedded rows".into())?;
                replacement = order.into_iter().zip(e).collect();
            }
        }

        let mut tensors = vec![("embeddings", vec![n, d_out])];
        if want_conf {
            tensors.push(("confidence", vec![n]));
        }
        if options.reembed.is_some() {
            tensors.push(("reembedded", vec![n]));
        }
        let mut writer = RowWriter::create(
            output,
            &tensors,
            &self.output_metadata(input, direction, &expected, n, replacement.len())?,
        )?;
        let compute_conf = want_conf && options.reembed.is_none();
        self.stream(&mut reader, direction, options.chunk_rows, |first, x, y| {
            if compute_conf {
                confidence.extend(self.confidence(x)?);
            }
            let mut rows = y.to_vec2::<f32>().context(|| "migrated rows".into())?;
            for (i, row) in rows.iter_mut().enumerate() {
                if let Some(v) = replacement.get(&(first + i)) {
                    row.copy_from_slice(v);
                }
            }
            writer.write(&rows.concat())
        })?;
        if want_conf {
            writer.write(&confidence)?;
        }
        if options.reembed.is_some() {
            let flags: Vec<f32> = (0..n)
                .map(|i| f32::from(u8::from(replacement.contains_key(&i))))
                .collect();
            writer.write(&flags)?;
        }
        writer.finish()?;
        Ok(ApplySummary {
            input: input.to_path_buf(),
            output: output.to_path_buf(),
            rows: n,
            input_dim: expected.dim,
            output_dim: d_out,
            direction,
            method: self.method().to_string(),
            reembedded: replacement.len(),
            mean_confidence: want_conf
                .then(|| confidence.iter().map(|&c| f64::from(c)).sum::<f64>() / n.max(1) as f64),
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Reads `reader` in chunks, checks every value is finite, maps each chunk and calls
    /// `f(first_row, x, mapped)`.
    fn stream(
        &self,
        reader: &mut RowReader,
        direction: Direction,
        chunk_rows: usize,
        mut f: impl FnMut(usize, &Tensor, &Tensor) -> Result<()>,
    ) -> Result<()> {
        let (n, d) = (reader.rows(), reader.cols());
        let mut first = 0;
        while first < n {
            let len = chunk_rows.min(n - first);
            let values = reader.read(first, len)?;
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(Error::Input {
                    path: reader.path().to_path_buf(),
                    line: None,
                    reason: format!(
                        "row {}, column {} holds {}: every value must be finite; re-embed those texts (nothing was written)",
                        first + i / d,
                        i % d,
                        values[i]
                    ),
                });
            }
            let x = Tensor::from_vec(values, (len, d), &Device::Cpu)
                .context(|| "a chunk of rows".into())?;
            let y = self.map(&x, direction)?;
            f(first, &x, &y)?;
            first += len;
        }
        Ok(())
    }

    fn output_metadata(
        &self,
        input: &Path,
        direction: Direction,
        input_identity: &ModelIdentity,
        rows: usize,
        reembedded: usize,
    ) -> Result<HashMap<String, String>> {
        let is_relative = matches!(self.method(), MigrationMethod::Relative { .. });
        let mut meta = if is_relative {
            HashMap::from([
                ("relstitch.space".to_string(), "relative".to_string()),
                (
                    "anchors_sha256".to_string(),
                    self.config().anchors.sha256.clone(),
                ),
            ])
        } else {
            let out = match direction {
                Direction::Forward => &self.config().target,
                Direction::Inverse => &self.config().source,
            };
            let mut m = out.to_metadata();
            m.insert("migrated".into(), "true".into());
            m
        };
        let record = serde_json::json!({
            "map": self.dir().map(|d| d.display().to_string()),
            "method": self.method(),
            "direction": direction,
            "anchors_sha256": self.config().anchors.sha256,
            "input": input.display().to_string(),
            "input_encoder": input_identity,
            "reembedded_rows": reembedded,
        });
        meta.insert("relstitch.migration".into(), record.to_string());
        meta.insert("n".into(), rows.to_string());
        Ok(meta)
    }
}
