//! Checkpoints: a directory of plain files that carries everything needed to reproduce a decoder.
//!
//! ```text
//! CKPT/
//!   config.json        encoder identity, space (projection, pre-transforms), anchor hash, head,
//!                      label names, training metrics, seed, relstitch version
//!   model.safetensors  the head's weights (norm.*, fc0.*, ...)
//!   anchors.jsonl      the anchor samples themselves, so any other encoder can embed them
//!   translation.safetensors  (translated stitches only) the latent map into the head's space
//! ```
//!
//! Saving writes a temporary directory next to the destination and renames it into place, so a
//! failed save never leaves a half-written checkpoint. Loading validates every field and says
//! exactly what is wrong.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::anchors::{AnchorSet, AnchorStrategy};
use crate::decoder::{Head, HeadConfig, TrainOptions, TrainReport};
use crate::encoder::ModelIdentity;
use crate::projection::{PreTransform, Projection};
use crate::translation::LatentTranslator;
use crate::{Error, Result};

/// The `format` field of every checkpoint's config.json.
pub const FORMAT: &str = "relstitch-checkpoint";
/// The current format version.
pub const FORMAT_VERSION: u32 = 1;

/// Which latent space the head reads.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Space {
    /// Relative vectors: similarities to the anchors.
    Relative {
        /// How samples are compared with anchors.
        projection: Projection,
        /// Transforms fitted on the anchors before projecting.
        #[serde(default)]
        pre_transform: PreTransform,
    },
    /// The encoder's absolute embeddings.
    Absolute,
    /// The encoder's embeddings mapped by `translation.safetensors` into the space the head was
    /// trained on (a stitched checkpoint).
    Translated,
}

impl Space {
    /// A short name: `relative`, `absolute` or `translated`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Relative { .. } => "relative",
            Self::Absolute => "absolute",
            Self::Translated => "translated",
        }
    }
}

/// The anchors of a checkpoint, as recorded in config.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnchorsInfo {
    /// The file holding them, relative to the checkpoint.
    pub file: String,
    /// How many.
    pub count: usize,
    /// [`AnchorSet::hash`].
    pub sha256: String,
    /// How they were chosen, when relstitch chose them.
    #[serde(default)]
    pub strategy: Option<AnchorStrategy>,
}

/// How the head was trained and how well.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// The options used.
    pub options: TrainOptions,
    /// What happened.
    pub report: TrainReport,
    /// The training file, when there was one.
    #[serde(default)]
    pub train_file: Option<String>,
}

/// A checkpoint's config.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The relstitch version that wrote it.
    pub relstitch_version: String,
    /// The encoder whose latents the head reads.
    pub encoder: ModelIdentity,
    /// Which space.
    pub space: Space,
    /// The anchors.
    pub anchors: AnchorsInfo,
    /// The head's shape.
    pub head: HeadConfig,
    /// Class names, index = class id.
    pub labels: Vec<String>,
    /// Training, for trained checkpoints; `None` for stitched ones.
    #[serde(default)]
    pub training: Option<TrainingInfo>,
    /// Where the parts of a stitched checkpoint came from.
    #[serde(default)]
    pub stitched_from: Option<StitchedFrom>,
    /// The seed.
    pub seed: u64,
}

/// The two checkpoints a stitched checkpoint was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StitchedFrom {
    /// The checkpoint that gave the encoder.
    pub encoder_checkpoint: String,
    /// The checkpoint that gave the decoder.
    pub decoder_checkpoint: String,
    /// The translation method, for translated stitches.
    #[serde(default)]
    pub translation: Option<String>,
}

/// A loaded checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// config.json.
    pub config: CheckpointConfig,
    /// The anchor samples.
    pub anchors: AnchorSet,
    /// The head's weights by name.
    pub weights: HashMap<String, Tensor>,
    /// The latent map of a translated checkpoint.
    pub translation: Option<LatentTranslator>,
    /// Where it was loaded from (None when built in memory).
    pub dir: Option<PathBuf>,
}

fn bad(dir: &Path, file: &str, reason: impl Into<String>) -> Error {
    Error::Input {
        path: dir.join(file),
        line: None,
        reason: reason.into(),
    }
}

impl Checkpoint {
    /// The head, on `device`.
    pub fn head(&self, device: &Device) -> Result<Head> {
        let mut w = HashMap::new();
        for (k, v) in &self.weights {
            w.insert(
                k.clone(),
                v.to_device(device)
                    .map_err(|e| Error::candle("moving the head", e))?,
            );
        }
        Head::load(
            VarBuilder::from_tensors(w, DType::F32, device),
            &self.config.head,
        )
        .map_err(|e| Error::Input {
            path: self
                .dir
                .clone()
                .unwrap_or_default()
                .join("model.safetensors"),
            line: None,
            reason: format!(
                "the weights do not fit the head in config.json ({e}); the checkpoint is corrupt"
            ),
        })
    }

    /// Writes the checkpoint to `dir` atomically (a temporary sibling directory renamed into place).
    /// An existing `dir` is replaced only if it is itself a relstitch checkpoint.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let parent = crate::io::parent_dir(dir);
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        if dir.exists()
            && !dir.join("config.json").is_file()
            && std::fs::read_dir(dir)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            return Err(Error::invalid(
                "checkpoint output",
                format!(
                    "{} exists and is not a relstitch checkpoint; choose another --out",
                    dir.display()
                ),
            ));
        }
        let tmp = tempfile::Builder::new()
            .prefix(".relstitch-ckpt-")
            .tempdir_in(&parent)
            .map_err(|e| Error::io(&parent, e))?;
        let json = serde_json::to_vec_pretty(&self.config)
            .map_err(|e| Error::invalid("checkpoint config", e.to_string()))?;
        crate::io::write_atomic(&tmp.path().join("config.json"), &json)?;
        let mut names: Vec<&String> = self.weights.keys().collect();
        names.sort();
        let tensors: Vec<(&str, &Tensor)> = names
            .iter()
            .map(|k| (k.as_str(), &self.weights[*k]))
            .collect();
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            (
                "labels".to_string(),
                serde_json::to_string(&self.config.labels).unwrap_or_default(),
            ),
        ]);
        crate::io::write_safetensors(&tmp.path().join("model.safetensors"), &tensors, &meta)?;
        self.anchors
            .save_jsonl(&tmp.path().join(&self.config.anchors.file))?;
        if let Some(t) = &self.translation {
            t.save(&tmp.path().join("translation.safetensors"))?;
        }
        let kept = tmp.keep();
        if dir.exists() {
            let old = parent.join(format!(".relstitch-old-{}", std::process::id()));
            std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
            std::fs::rename(&kept, dir).map_err(|e| Error::io(dir, e))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&kept, dir).map_err(|e| Error::io(dir, e))?;
        }
        Ok(())
    }

    /// Reads and validates a checkpoint directory.
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Input {
                path: dir.to_path_buf(),
                line: None,
                reason: "not a directory; a checkpoint is the folder `relstitch fit --out` wrote"
                    .into(),
            });
        }
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let config: CheckpointConfig = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: cfg_path.clone(),
            hint: "not a relstitch checkpoint config (or from an incompatible version); re-run `relstitch fit`".into(),
            source,
        })?;
        if config.format != FORMAT {
            return Err(bad(
                dir,
                "config.json",
                format!("format is `{}`, expected `{FORMAT}`", config.format),
            ));
        }
        if config.format_version > FORMAT_VERSION {
            return Err(bad(dir, "config.json", format!(
                "format version {} is newer than this relstitch understands ({FORMAT_VERSION}); upgrade relstitch",
                config.format_version
            )));
        }
        if config.labels.len() != config.head.num_classes || config.labels.len() < 2 {
            return Err(bad(
                dir,
                "config.json",
                format!(
                    "{} label names for a head with {} classes",
                    config.labels.len(),
                    config.head.num_classes
                ),
            ));
        }
        let mut uniq = config.labels.clone();
        uniq.sort();
        uniq.dedup();
        if uniq.len() != config.labels.len() {
            return Err(bad(dir, "config.json", "label names repeat"));
        }
        let anchors = AnchorSet::load_jsonl(&dir.join(&config.anchors.file))?;
        if anchors.len() != config.anchors.count || anchors.hash() != config.anchors.sha256 {
            return Err(bad(dir, &config.anchors.file, format!(
                "does not match config.json (count {} vs {}, hash {} vs {}); the checkpoint was modified or truncated",
                anchors.len(),
                config.anchors.count,
                &anchors.hash()[..12],
                config.anchors.sha256.chars().take(12).collect::<String>()
            )));
        }
        let expected_width = match config.space {
            Space::Relative { .. } => Some(anchors.len()),
            Space::Absolute => Some(config.encoder.dim),
            Space::Translated => None, // checked against the translation below
        };
        if let Some(w) = expected_width.filter(|w| *w != config.head.input_dim) {
            return Err(bad(
                dir,
                "config.json",
                format!(
                    "the head reads vectors of width {} but the {} space has width {w}",
                    config.head.input_dim,
                    config.space.name()
                ),
            ));
        }
        let weights_file = read_weights(&dir.join("model.safetensors"))?;
        let translation = if config.space == Space::Translated {
            Some(LatentTranslator::load(
                &dir.join("translation.safetensors"),
            )?)
        } else {
            None
        };
        let ckpt = Self {
            config,
            anchors,
            weights: weights_file,
            translation,
            dir: Some(dir.to_path_buf()),
        };
        ckpt.head(&Device::Cpu)?; // shapes and names of every weight
        Ok(ckpt)
    }
}

/// Reads the head's weights, refusing NaN or infinite values.
fn read_weights(path: &Path) -> Result<HashMap<String, Tensor>> {
    let f = crate::io::SafetensorsFile::read(path, &Device::Cpu)?;
    for (k, t) in &f.tensors {
        crate::io::check_finite(t, &format!("weight `{k}` of {}", path.display()))?;
    }
    Ok(f.tensors)
}
