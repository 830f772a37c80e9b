//! A per-encoder, per-text embedding cache, so repeated fits and evaluations do not re-embed.
//!
//! Keyed by everything that changes the vectors (weights sha256, pooling, normalisation, max length,
//! prefix) and by each text's sha256. Stored as safetensors shards under
//! `$RELSTITCH_HOME/embeddings/<key>/`, each holding tensor `embeddings` and the texts' hashes in
//! its metadata; new texts are embedded and appended as a new shard, written atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::encoder::{Encoder, ModelIdentity};
use crate::error::CandleContext;
use crate::io::{write_safetensors, SafetensorsFile};
use crate::{Error, Result};

const HASHES: &str = "text_sha256";

/// The cache folder of one encoder configuration.
#[derive(Debug, Clone)]
pub struct EmbeddingCache {
    dir: PathBuf,
}

fn text_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl EmbeddingCache {
    /// The cache for vectors made by `identity`, under `home` (see [`crate::fetch::home_dir`]).
    pub fn new(home: &Path, identity: &ModelIdentity) -> Self {
        let key = format!(
            "{}|{}|{}|{}|{}",
            identity.weights_sha256,
            identity.pooling.as_str(),
            identity.normalize,
            identity.max_length,
            identity.prefix.as_deref().unwrap_or("")
        );
        let key = hex::encode(Sha256::digest(key.as_bytes()));
        Self {
            dir: home.join("embeddings").join(&key[..32]),
        }
    }

    /// The cache for vectors made by `identity` under `$RELSTITCH_HOME` (see
    /// [`crate::fetch::home_dir`]): where `relstitch fit` and the stitching pipelines keep theirs.
    pub fn for_identity(identity: &ModelIdentity) -> Result<Self> {
        Ok(Self::new(&crate::fetch::home_dir()?, identity))
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Embeds `texts` with `encoder`, reading cached rows and embedding only the texts not seen
    /// before.
    ///
    /// # Shapes
    /// - returns `[texts.len(), dim]` f32 on the encoder's device, in input order
    pub fn embed<S: AsRef<str>>(&self, encoder: &Encoder, texts: &[S]) -> Result<Tensor> {
        if texts.is_empty() {
            return Err(Error::invalid(
                "texts",
                "nothing to embed: the list is empty",
            ));
        }
        let (mut blocks, mut index) = self.load()?;
        let hashes: Vec<String> = texts.iter().map(|t| text_hash(t.as_ref())).collect();
        let mut missing: Vec<usize> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, h) in hashes.iter().enumerate() {
            if !index.contains_key(h) && seen.insert(h.clone()) {
                missing.push(i);
            }
        }
        if !missing.is_empty() {
            tracing::info!(missing = missing.len(), total = texts.len(), dir = %self.dir.display(), "embedding uncached texts");
            let new_texts: Vec<&str> = missing.iter().map(|&i| texts[i].as_ref()).collect();
            let e = encoder.embed(&new_texts)?;
            let new_hashes: Vec<&String> = missing.iter().map(|&i| &hashes[i]).collect();
            let meta = HashMap::from([
                (
                    HASHES.to_string(),
                    serde_json::to_string(&new_hashes).unwrap_or_default(),
                ),
                ("model".to_string(), encoder.identity().name.clone()),
            ]);
            let name = format!(
                "shard-{}.safetensors",
                &text_hash(&new_hashes.iter().map(|s| s.as_str()).collect::<String>())[..16]
            );
            write_safetensors(&self.dir.join(name), &[("embeddings", &e)], &meta)?;
            let base = blocks.iter().map(|b| b.dims()[0]).sum::<usize>();
            for (j, h) in new_hashes.into_iter().enumerate() {
                index.insert(h.clone(), base + j);
            }
            blocks.push(
                e.to_device(&Device::Cpu)
                    .context(|| "caching embeddings".into())?,
            );
        }
        let all = Tensor::cat(&blocks, 0).context(|| "assembling cached embeddings".into())?;
        let rows: Vec<u32> = hashes
            .iter()
            .map(|h| index.get(h).copied().unwrap_or(0) as u32)
            .collect();
        let rows = Tensor::new(rows, &Device::Cpu).context(|| "cache index".into())?;
        all.index_select(&rows, 0)
            .and_then(|t| t.to_device(encoder.device()))
            .context(|| "gathering cached embeddings".into())
    }

    /// Every shard's matrix, and text hash → row of their concatenation. Unreadable shards are
    /// skipped with a warning (they will be recomputed).
    fn load(&self) -> Result<(Vec<Tensor>, HashMap<String, usize>)> {
        let mut blocks = Vec::new();
        let mut index = HashMap::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok((blocks, index));
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        let mut base = 0usize;
        for f in files {
            let shard = match SafetensorsFile::read(&f, &Device::Cpu) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("ignoring unreadable cache shard {}: {e}", f.display());
                    continue;
                }
            };
            let hashes: Vec<String> =
                match shard.metadata.get(HASHES).map(|h| serde_json::from_str(h)) {
                    Some(Ok(h)) => h,
                    _ => continue,
                };
            let Ok(m) = shard.matrix("embeddings") else {
                continue;
            };
            if m.dims()[0] != hashes.len() {
                continue;
            }
            for (j, h) in hashes.into_iter().enumerate() {
                index.entry(h).or_insert(base + j);
            }
            base += m.dims()[0];
            blocks.push(m);
        }
        Ok((blocks, index))
    }
}
