//! Embedding a file of texts into a safetensors file that numpy and PyTorch read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::encoder::{Encoder, ModelIdentity};
use crate::{Error, Result};

/// The tensor name relstitch writes and reads for absolute embeddings.
pub const EMBEDDINGS: &str = "embeddings";

/// What [`embed_file`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EmbedSummary {
    /// The output file.
    pub output: PathBuf,
    /// Rows written.
    pub n: usize,
    /// Width of each row.
    pub dim: usize,
    /// Seconds spent embedding.
    pub seconds: f64,
}

impl ModelIdentity {
    /// The identity as safetensors metadata (string to string), including the whole identity as JSON
    /// under `relstitch.encoder`.
    pub fn to_metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::from([
            ("model".to_string(), self.name.clone()),
            ("weights_sha256".to_string(), self.weights_sha256.clone()),
            ("architecture".to_string(), self.architecture.clone()),
            ("pooling".to_string(), self.pooling.as_str().to_string()),
            ("normalize".to_string(), self.normalize.to_string()),
            ("max_length".to_string(), self.max_length.to_string()),
            ("dim".to_string(), self.dim.to_string()),
            ("precision".to_string(), self.precision.as_str().to_string()),
            (
                "relstitch_version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
        ]);
        if let Some(h) = &self.hub_id {
            m.insert("hub_id".into(), h.clone());
        }
        if let Some(r) = &self.revision {
            m.insert("revision".into(), r.clone());
        }
        if let Some(p) = &self.prefix {
            m.insert("prefix".into(), p.clone());
        }
        if let Some(c) = &self.commit {
            m.insert("hub_commit".into(), c.clone());
        }
        if let Some(p) = &self.prompt_name {
            m.insert("prompt_name".into(), p.clone());
        }
        if let Some(t) = self.truncate_dim {
            m.insert("truncate_dim".into(), t.to_string());
        }
        if let Some(s) = &self.similarity {
            m.insert("similarity_fn_name".into(), s.clone());
        }
        if !self.dense.is_empty() {
            let modules: Vec<String> = self
                .dense
                .iter()
                .map(|d| format!("{}→{} {:?}", d.in_features, d.out_features, d.activation))
                .collect();
            m.insert("dense".into(), modules.join(", "));
        }
        if let Ok(json) = serde_json::to_string(self) {
            m.insert("relstitch.encoder".into(), json);
        }
        m
    }
}

/// Embeds the texts of `input` (`.txt`, one per line, or `.jsonl` with the text in `field`) and
/// writes `output` atomically: tensor `embeddings` `[n, d]` f32 in input order plus the encoder's
/// identity as metadata.
///
/// # Errors
/// The errors of [`read_texts`](crate::io::read_texts) (e.g. [`Error::Input`]), of
/// [`Encoder::embed`] and of [`write_safetensors`](crate::io::write_safetensors).
pub fn embed_file(
    encoder: &Encoder,
    input: &Path,
    field: &str,
    output: &Path,
) -> Result<EmbedSummary> {
    let texts = crate::io::read_texts(input, field)?;
    let start = std::time::Instant::now();
    let e = encoder.embed(&texts)?;
    let seconds = start.elapsed().as_secs_f64();
    let (n, dim) = e
        .dims2()
        .map_err(|err| Error::candle("embedding output", err))?;
    let mut meta = encoder.identity().to_metadata();
    meta.insert("input".into(), input.display().to_string());
    meta.insert("n".into(), n.to_string());
    crate::io::write_safetensors(output, &[(EMBEDDINGS, &e)], &meta)?;
    Ok(EmbedSummary {
        output: output.to_path_buf(),
        n,
        dim,
        seconds,
    })
}
