//! Checkpoints: a directory of plain files that carries everything needed to reproduce a decoder.
//!
//! ```text
//! CKPT/
//!   config.json        encoder identity, space (projection, pre-transforms), anchor hash, head,
//!                      label names, training metrics, seed, relstitch version
//!   model.safetensors  the head's weights (norm.*, fc0.*, ...)
//!   anchors.jsonl      the anchor samples themselves, so any other encoder can embed them
//!   alignment.jsonl    (optional) more training texts, without labels, on which a stitch fits
//!                      its latent translation into this checkpoint's encoder's space
//!   translation.safetensors  (translated stitches only) the latent map into the space of the
//!                      encoder the head was trained on
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

use crate::encoder::ModelIdentity;
use crate::space::anchors::{AnchorSet, AnchorStrategy};
use crate::space::projection::{PreTransform, Projection};
use crate::space::translation::LatentTranslator;
use crate::task::decoder::{Head, HeadConfig, TrainOptions, TrainReport};
use crate::{Error, Result};

/// The `format` field of every checkpoint's config.json.
pub const FORMAT: &str = "relstitch-checkpoint";
/// The newest format version this relstitch reads and writes. Version 2 added whitening to the
/// relative space and the `translated_relative` space; version 3 added alignment texts. A
/// checkpoint that uses none of them is still written as version 1, which every earlier relstitch
/// reads ([`CheckpointConfig::minimum_format_version`]).
pub const FORMAT_VERSION: u32 = 3;

/// The lowest format version that can hold a checkpoint of `space`: 2 when it whitens or is a
/// `translated_relative` stitch, 1 otherwise (so that older relstitch versions refuse what they
/// cannot compute, with "upgrade relstitch", and read everything else).
pub fn required_format_version(space: &Space) -> u32 {
    match space {
        Space::Relative { pre_transform, .. } if pre_transform.whiten.is_none() => 1,
        Space::Absolute | Space::Translated => 1,
        Space::Relative { .. } | Space::TranslatedRelative { .. } => 2,
    }
}

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
    /// A stitched relative decoder: the encoder's embeddings mapped by `translation.safetensors`
    /// into the space of `anchor_encoder` (the encoder the head was trained with), then projected
    /// onto the anchors as `anchor_encoder` embeds them, exactly as the head was trained.
    TranslatedRelative {
        /// How samples are compared with anchors.
        projection: Projection,
        /// Transforms fitted on the anchors before projecting.
        #[serde(default)]
        pre_transform: PreTransform,
    },
}

impl Space {
    /// A short name: `relative`, `absolute` or `translated`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Relative { .. } => "relative",
            Self::Absolute => "absolute",
            Self::Translated => "translated",
            Self::TranslatedRelative { .. } => "translated_relative",
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
    /// For a `translated_relative` stitch: the encoder that embeds the anchors (the one the head
    /// was trained with), found by its identity like `encoder`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_encoder: Option<ModelIdentity>,
    /// Alignment texts (format version 3): training texts beyond the anchors, without their
    /// labels, on which a stitch fits its latent translation into this checkpoint's encoder's
    /// space (more pairs than the anchors alone make a steadier map).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alignment: Option<AnchorsInfo>,
}

impl CheckpointConfig {
    /// The lowest format version that can hold this checkpoint: [`required_format_version`] of its
    /// space, and 3 when it carries alignment texts.
    pub fn minimum_format_version(&self) -> u32 {
        let v = required_format_version(&self.space);
        if self.alignment.is_some() {
            v.max(3)
        } else {
            v
        }
    }
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
    /// The alignment texts, when config.json names them.
    pub alignment: Option<AnchorSet>,
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
    ///
    /// # Errors
    /// [`Error::Candle`] when a weight cannot be moved to `device`; [`Error::Input`] (naming
    /// model.safetensors) when the weights do not fit the head config.json describes.
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

    /// Writes the checkpoint to `dir` atomically: every file is written into a locked staging
    /// folder beside `dir`, which then takes `dir`'s place in one atomic exchange (Linux) or two
    /// renames with roll-back elsewhere. A crash at any point leaves `dir` as it was or complete,
    /// and the next save into the same folder removes what the crash left behind.
    ///
    /// `model.safetensors` records what config.json says the head computes (labels, space,
    /// anchors, head shape, the encoder's identity) and a digest of the weights, so that
    /// [`Checkpoint::load`] notices any later disagreement.
    ///
    /// # Errors
    /// Refuses (with [`Error::InvalidArgument`]) to replace anything that is not provably a
    /// relstitch checkpoint: an existing `dir` must be an empty folder, or a folder whose config.json
    /// carries the checkpoint format marker and which holds nothing but checkpoint files. Refuses a
    /// `dir` that is one of this checkpoint's own inputs (the folder it was loaded from, or the
    /// checkpoints a stitch was made from), a symbolic link, or anything that is not a folder.
    /// [`Error::Io`] when writing fails.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut inputs: Vec<PathBuf> = self.dir.iter().cloned().collect();
        if let Some(s) = &self.config.stitched_from {
            inputs.extend(
                [&s.encoder_checkpoint, &s.decoder_checkpoint]
                    .into_iter()
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from),
            );
        }
        let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
        FOLDER.save(dir, &inputs, "checkpoint-staged", |new| {
            self.write_files(new)
        })?;
        tracing::info!(dir = %dir.display(), "checkpoint saved");
        Ok(())
    }

    /// Checks, before any work, that [`Checkpoint::save`] may write a checkpoint to `dir` (the
    /// folder rules only; a save checks them again, and its inputs, when it runs).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming why `dir` may not be replaced; [`Error::Io`] when `dir` or
    /// its entries cannot be inspected.
    pub fn check_destination(dir: &Path) -> Result<()> {
        check_replaceable(dir)
    }

    /// Writes config.json, model.safetensors, the anchors and the translation into `dir`.
    fn write_files(&self, dir: &Path) -> Result<()> {
        check_file_name(&self.config.anchors.file, dir)?;
        let json = serde_json::to_vec_pretty(&self.config)
            .map_err(|e| Error::invalid("checkpoint config", e.to_string()))?;
        crate::io::write_atomic(&dir.join("config.json"), &json)?;
        self.anchors
            .save_jsonl(&dir.join(&self.config.anchors.file))?;
        match (&self.config.alignment, &self.alignment) {
            (Some(info), Some(set)) => {
                check_file_name(&info.file, dir)?;
                if info.file == self.config.anchors.file {
                    return Err(Error::invalid(
                        "checkpoint config",
                        "the alignment texts and the anchors need different files",
                    ));
                }
                set.save_jsonl(&dir.join(&info.file))?;
            }
            (None, None) => {}
            _ => {
                return Err(Error::invalid(
                    "checkpoint",
                    "config.json's `alignment` and the alignment texts must come together",
                ))
            }
        }
        let translation_sha256 = match &self.translation {
            Some(t) => {
                let path = dir.join(TRANSLATION_FILE);
                t.save(&path)?;
                Some(crate::io::sha256_file(&path)?)
            }
            None => None,
        };
        let mut names: Vec<&String> = self.weights.keys().collect();
        names.sort();
        let tensors: Vec<(&str, &Tensor)> = names
            .iter()
            .map(|k| (k.as_str(), &self.weights[*k]))
            .collect();
        let mut meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            (
                TENSORS_SHA256.to_string(),
                weights_digest(&self.weights, &dir.join(WEIGHTS_FILE))?,
            ),
        ]);
        for (key, value) in semantic_record(&self.config)? {
            meta.insert(key.to_string(), value.to_string());
        }
        if let Some(sha) = translation_sha256 {
            meta.insert(TRANSLATION_SHA256.to_string(), sha);
        }
        crate::io::write_safetensors(&dir.join(WEIGHTS_FILE), &tensors, &meta)
    }

    /// Reads and validates a checkpoint directory.
    ///
    /// # Errors
    /// [`Error::Input`] when `dir` is not a folder, or config.json has another format, a newer
    /// version, bad labels, a head width that does not fit its space, or anchors or weights that do
    /// not match it; [`Error::Io`] / [`Error::Json`] when config.json cannot be read or parsed;
    /// [`Error::Integrity`] when config.json, the weights or the translation disagree with what was
    /// recorded at save; the errors of [`AnchorSet::load_jsonl`], of reading model.safetensors
    /// ([`Error::Safetensors`], [`Error::InvalidArgument`] for NaN or infinite weights) and of
    /// [`LatentTranslator::load`].
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
        if config.format_version < config.minimum_format_version() {
            return Err(bad(dir, "config.json", format!(
                "format version {} cannot hold what config.json declares (its space or alignment texts need version {}); \
                 config.json was edited or mixed with another checkpoint's: restore it, or re-run `relstitch fit`",
                config.format_version,
                config.minimum_format_version()
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
        check_file_name(&config.anchors.file, dir)?;
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
        let alignment = match &config.alignment {
            Some(info) => {
                check_file_name(&info.file, dir)?;
                if info.file == config.anchors.file {
                    return Err(bad(
                        dir,
                        "config.json",
                        "alignment.file names the anchors file; they need different files",
                    ));
                }
                let set = AnchorSet::load_jsonl(&dir.join(&info.file))?;
                if set.len() != info.count || set.hash() != info.sha256 {
                    return Err(bad(dir, &info.file, format!(
                        "does not match config.json (count {} vs {}, hash {} vs {}); the checkpoint was modified or truncated: restore it, or re-run `relstitch fit`",
                        set.len(),
                        info.count,
                        &set.hash()[..12],
                        info.sha256.chars().take(12).collect::<String>()
                    )));
                }
                if let Err(e) = set.texts() {
                    return Err(bad(
                        dir,
                        &info.file,
                        format!("{e}; alignment texts must carry their text"),
                    ));
                }
                Some(set)
            }
            None => None,
        };
        let expected_width = match config.space {
            Space::Relative { .. } | Space::TranslatedRelative { .. } => Some(anchors.len()),
            Space::Absolute => Some(config.encoder.dim),
            Space::Translated => None, // checked against the translation below
        };
        let needs_anchor_encoder = matches!(config.space, Space::TranslatedRelative { .. });
        if needs_anchor_encoder != config.anchor_encoder.is_some() {
            return Err(bad(
                dir,
                "config.json",
                if needs_anchor_encoder {
                    "a translated_relative checkpoint must name its `anchor_encoder`"
                } else {
                    "`anchor_encoder` belongs only to translated_relative checkpoints"
                },
            ));
        }
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
        let (weights_file, recorded) = read_weights(&dir.join(WEIGHTS_FILE))?;
        check_recorded(dir, &config, &weights_file, &recorded)?;
        let translation = if matches!(
            config.space,
            Space::Translated | Space::TranslatedRelative { .. }
        ) {
            let path = dir.join(TRANSLATION_FILE);
            let translator = LatentTranslator::load(&path)?;
            // (Checked for translated_relative stitches, which name both encoders; translated
            // ones are accepted as before.)
            let target_dim = config.anchor_encoder.as_ref().map(|e| e.dim);
            if target_dim.is_some_and(|d| {
                d != translator.target_dim() || translator.source_dim() != config.encoder.dim
            }) {
                return Err(bad(
                    dir,
                    TRANSLATION_FILE,
                    format!(
                        "maps {} to {} dimensions, but the encoder has {}{}",
                        translator.source_dim(),
                        translator.target_dim(),
                        config.encoder.dim,
                        target_dim
                            .map_or(String::new(), |d| format!(" and the anchor encoder {d}"))
                    ),
                ));
            }
            if let Some(expected) = recorded.get(TRANSLATION_SHA256) {
                let actual = crate::io::sha256_file(&path)?;
                if &actual != expected {
                    return Err(Error::Integrity {
                        path,
                        reason: format!(
                            "its sha256 is {actual} but model.safetensors recorded {expected} when the checkpoint was saved; \
                             the file was replaced or damaged: restore it, or stitch again"
                        ),
                    });
                }
            }
            Some(translator)
        } else {
            None
        };
        let ckpt = Self {
            config,
            anchors,
            weights: weights_file,
            translation,
            alignment,
            dir: Some(dir.to_path_buf()),
        };
        ckpt.head(&Device::Cpu)?; // shapes and names of every weight
        Ok(ckpt)
    }
}

/// The head's weights file in a checkpoint.
const WEIGHTS_FILE: &str = "model.safetensors";
/// The latent map of a translated checkpoint.
const TRANSLATION_FILE: &str = "translation.safetensors";
/// model.safetensors metadata: the digest of the head's weights.
const TENSORS_SHA256: &str = "tensors_sha256";
/// model.safetensors metadata: the sha256 of translation.safetensors.
const TRANSLATION_SHA256: &str = "translation_sha256";
/// model.safetensors metadata (and config.json key): the alignment texts' count and hash.
const ALIGNMENT_KEY: &str = "alignment";

/// The files a checkpoint folder may hold (besides config.json and its anchors file, named in
/// config.json).
const CHECKPOINT_FILES: [&str; 2] = [WEIGHTS_FILE, TRANSLATION_FILE];

/// What a checkpoint folder is, for the folder rules of [`crate::io::OwnedFolder`].
const FOLDER: crate::io::OwnedFolder<'static> = crate::io::OwnedFolder {
    what: "checkpoint",
    flag: "--out",
    marker_file: "config.json",
    format: FORMAT,
    files: &CHECKPOINT_FILES,
    declared: declared_anchors_file,
};

/// The samples files a checkpoint's config.json names: its anchors (`anchors.jsonl` by default)
/// and its alignment texts, when it has some.
fn declared_anchors_file(config: &serde_json::Value) -> Vec<String> {
    let file = |key: &str| {
        config
            .get(key)
            .and_then(|a| a.get("file"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    let mut files = vec![file("anchors").unwrap_or_else(|| "anchors.jsonl".into())];
    files.extend(file("alignment"));
    files
}

/// Fails unless `dir` may be replaced by a checkpoint save: absent, an empty folder, or a folder
/// that is provably a relstitch checkpoint (config.json with the format marker) holding nothing
/// but checkpoint files.
fn check_replaceable(dir: &Path) -> Result<()> {
    FOLDER.check_replaceable(dir)
}

/// A file named in config.json must be a plain file name inside the checkpoint.
fn check_file_name(name: &str, dir: &Path) -> Result<()> {
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(std::path::Component::Normal(_)), None) => Ok(()),
        _ => Err(bad(
            dir,
            "config.json",
            format!(
                "the samples file `{name}` must be a plain file name inside the checkpoint folder"
            ),
        )),
    }
}

/// What config.json says the head computes, as (metadata key, JSON) pairs: recorded in
/// model.safetensors at save and compared at load.
fn semantic_record(config: &CheckpointConfig) -> Result<Vec<(&'static str, String)>> {
    let json = |v: serde_json::Value| v.to_string();
    let to = |what: &str, v: std::result::Result<serde_json::Value, serde_json::Error>| {
        v.map_err(|e| Error::invalid("checkpoint config", format!("cannot serialise {what}: {e}")))
    };
    let e = &config.encoder;
    let mut encoder = serde_json::json!({
        "weights_sha256": e.weights_sha256,
        "architecture": e.architecture,
        "pooling": to("pooling", serde_json::to_value(e.pooling))?,
        "normalize": e.normalize,
        "max_length": e.max_length,
        "prefix": e.prefix,
        "dim": e.dim,
    });
    // Recorded only when not f32, so that checkpoints saved before precisions existed (f32,
    // no such key) still match their record.
    if !e.precision.is_f32() {
        encoder["precision"] = serde_json::json!(e.precision.as_str());
    }
    let mut record = vec![
        (
            "labels",
            json(to("labels", serde_json::to_value(&config.labels))?),
        ),
        (
            "space",
            json(to("space", serde_json::to_value(config.space))?),
        ),
        (
            "head",
            json(to("head", serde_json::to_value(&config.head))?),
        ),
        (
            "anchors",
            json(
                serde_json::json!({"count": config.anchors.count, "sha256": config.anchors.sha256}),
            ),
        ),
        ("encoder", json(encoder)),
    ];
    // Only where there is one, so that the records of earlier checkpoints are unchanged.
    if let Some(a) = &config.anchor_encoder {
        record.push((
            "anchor_encoder",
            json(serde_json::json!({"weights_sha256": a.weights_sha256, "dim": a.dim})),
        ));
    }
    if let Some(a) = &config.alignment {
        record.push((
            ALIGNMENT_KEY,
            json(serde_json::json!({"count": a.count, "sha256": a.sha256})),
        ));
    }
    Ok(record)
}

/// Compares config.json with what model.safetensors recorded at save, and the weights with their
/// recorded digest. Checkpoints written before these records existed carry only `labels` (checked)
/// and are otherwise accepted as before.
fn check_recorded(
    dir: &Path,
    config: &CheckpointConfig,
    weights: &HashMap<String, Tensor>,
    recorded: &HashMap<String, String>,
) -> Result<()> {
    let weights_path = dir.join(WEIGHTS_FILE);
    if let Some(expected) = recorded.get(TENSORS_SHA256) {
        let actual = weights_digest(weights, &weights_path)?;
        if &actual != expected {
            return Err(Error::Integrity {
                path: weights_path,
                reason: "the head's weights do not match the digest recorded when the checkpoint was saved; \
                         the file was modified or damaged: restore it from a backup, or re-run `relstitch fit`"
                    .into(),
            });
        }
    }
    let now_record = semantic_record(config)?;
    // Recorded only where there was one: removing it from config.json is an edit too.
    for key in [ALIGNMENT_KEY, "anchor_encoder"] {
        if recorded.contains_key(key) && !now_record.iter().any(|(k, _)| *k == key) {
            return Err(Error::Integrity {
                path: dir.join("config.json"),
                reason: format!(
                    "its `{key}` was removed after the checkpoint was saved (model.safetensors recorded one); \
                     restore config.json, or re-run `relstitch fit`"
                ),
            });
        }
    }
    // Alignment texts are recorded whenever a checkpoint has them; one whose record (digest and
    // all) names none had none when it was saved.
    if config.alignment.is_some()
        && recorded.contains_key(TENSORS_SHA256)
        && !recorded.contains_key(ALIGNMENT_KEY)
    {
        return Err(Error::Integrity {
            path: dir.join("config.json"),
            reason: "its `alignment` was added after the checkpoint was saved (model.safetensors recorded none); \
                     remove it, or re-run `relstitch fit` to make a checkpoint with alignment texts"
                .into(),
        });
    }
    for (key, now) in now_record {
        let Some(saved) = recorded.get(key) else {
            continue;
        };
        let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
        if parse(saved) != parse(&now) {
            let short = |s: &str| {
                if s.chars().count() > 160 {
                    format!("{}...", s.chars().take(160).collect::<String>())
                } else {
                    s.to_string()
                }
            };
            return Err(Error::Integrity {
                path: dir.join("config.json"),
                reason: format!(
                    "its `{key}` disagrees with what model.safetensors recorded when the checkpoint was saved \
                     (saved {}, config.json now {}); config.json was edited or mixed with another checkpoint's files: \
                     restore it, or re-run `relstitch fit`",
                    short(saved),
                    short(&now)
                ),
            });
        }
    }
    Ok(())
}

/// sha256 over the weights in name order: each name, its shape and its f32 values (little endian).
fn weights_digest(weights: &HashMap<String, Tensor>, path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut names: Vec<&String> = weights.keys().collect();
    names.sort();
    let mut h = Sha256::new();
    for name in names {
        let t = &weights[name];
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((t.rank() as u64).to_le_bytes());
        for d in t.dims() {
            h.update((*d as u64).to_le_bytes());
        }
        let values = t
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| {
                Error::candle(format!("hashing weight `{name}` of {}", path.display()), e)
            })?;
        for v in values {
            h.update(v.to_le_bytes());
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Reads the head's weights, refusing NaN or infinite values, and the file's metadata.
fn read_weights(path: &Path) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let f = crate::io::SafetensorsFile::read(path, &Device::Cpu)?;
    for (k, t) in &f.tensors {
        crate::io::check_finite(t, &format!("weight `{k}` of {}", path.display()))?;
    }
    Ok((f.tensors, f.metadata))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::Pooling;
    use crate::models::Precision;
    use crate::task::decoder::{train_head, HeadKind};

    /// A small trained relative checkpoint: 6 anchors, 3 classes, no encoder needed.
    fn tiny() -> anyhow::Result<Checkpoint> {
        let texts: Vec<String> = (0..6).map(|i| format!("anchor text {i}")).collect();
        let anchors = AnchorSet::from_texts(&texts)?;
        let x = Tensor::randn(0f32, 1., (30, 6), &Device::Cpu)?;
        let labels: Vec<usize> = (0..30).map(|i| i % 3).collect();
        let options = TrainOptions {
            epochs: 2,
            ..Default::default()
        };
        let trained = train_head(&x, &labels, HeadKind::Linear, 3, &options)?;
        let encoder = ModelIdentity {
            name: "tiny".into(),
            hub_id: None,
            revision: None,
            commit: None,
            path: PathBuf::from("/nowhere"),
            weights_sha256: "ab".repeat(32),
            architecture: "bert".into(),
            pooling: Pooling::Mean,
            normalize: true,
            max_length: 128,
            prefix: None,
            prompt_name: None,
            dense: Vec::new(),
            truncate_dim: None,
            similarity: None,
            dim: 8,
            precision: Precision::Int8,
        };
        let config = CheckpointConfig {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            relstitch_version: env!("CARGO_PKG_VERSION").into(),
            encoder,
            space: Space::Relative {
                projection: Projection::Cosine,
                pre_transform: PreTransform::default(),
            },
            anchors: AnchorsInfo {
                file: "anchors.jsonl".into(),
                count: anchors.len(),
                sha256: anchors.hash(),
                strategy: None,
            },
            head: trained.head.config().clone(),
            labels: vec!["a".into(), "b".into(), "c".into()],
            training: None,
            stitched_from: None,
            seed: 0,
            anchor_encoder: None,
            alignment: None,
        };
        Ok(Checkpoint {
            config,
            anchors,
            weights: trained.weights,
            translation: None,
            alignment: None,
            dir: None,
        })
    }

    /// Every file under `dir` with its bytes, for before/after comparisons.
    fn snapshot(dir: &Path) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() {
                out.extend(snapshot(&p)?);
            } else {
                out.push((p.clone(), std::fs::read(&p)?));
            }
        }
        out.sort();
        Ok(out)
    }

    fn leftovers(dir: &Path) -> anyhow::Result<Vec<String>> {
        Ok(std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".relstitch"))
            .collect())
    }

    #[test]
    fn never_replaces_a_folder_that_is_not_a_checkpoint() -> anyhow::Result<()> {
        let ckpt = tiny()?;
        let root = tempfile::tempdir()?;
        // A Hugging Face model folder: config.json, but not ours.
        let hf = root.path().join("hf-model");
        std::fs::create_dir(&hf)?;
        std::fs::write(hf.join("config.json"), r#"{"model_type": "bert"}"#)?;
        std::fs::write(hf.join("tokenizer.json"), "{}")?;
        std::fs::write(hf.join("model.safetensors"), b"weights")?;
        // A user's data folder with a config.json beside data.csv.
        let data = root.path().join("data");
        std::fs::create_dir(&data)?;
        std::fs::write(data.join("config.json"), "{}")?;
        std::fs::write(data.join("data.csv"), "a,b\n1,2\n")?;
        // A relstitch checkpoint into which the user put a file of their own.
        let mixed = root.path().join("mixed");
        ckpt.save(&mixed)?;
        std::fs::write(mixed.join("notes.txt"), "mine")?;
        // A config.json that merely mentions the marker somewhere else.
        let sneaky = root.path().join("sneaky");
        std::fs::create_dir(&sneaky)?;
        std::fs::write(
            sneaky.join("config.json"),
            r#"{"model_type": "bert", "comment": "relstitch-checkpoint"}"#,
        )?;
        for dir in [&hf, &data, &mixed, &sneaky] {
            let before = snapshot(dir)?;
            let err = ckpt.save(dir);
            assert!(
                matches!(err, Err(Error::InvalidArgument { .. })),
                "{}: {err:?}",
                dir.display()
            );
            assert_eq!(snapshot(dir)?, before, "{} was modified", dir.display());
        }
        // A regular file is not a folder to replace.
        let file = root.path().join("file");
        std::fs::write(&file, "x")?;
        assert!(ckpt.save(&file).is_err());
        assert_eq!(std::fs::read_to_string(&file)?, "x");
        assert!(leftovers(root.path())?.is_empty());
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn refuses_links_and_special_files() -> anyhow::Result<()> {
        let ckpt = tiny()?;
        let root = tempfile::tempdir()?;
        let real = root.path().join("real");
        ckpt.save(&real)?;
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link)?;
        assert!(ckpt.save(&link).is_err());
        assert!(std::fs::symlink_metadata(&link)?.file_type().is_symlink());
        let fifo = root.path().join("fifo");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status()?;
        if status.success() {
            let e = ckpt.save(&fifo).err().map(|e| e.to_string());
            assert!(e.is_some_and(|e| e.contains("FIFO")));
            let e = crate::io::write_atomic(&fifo, b"x")
                .err()
                .map(|e| e.to_string());
            assert!(e.is_some_and(|e| e.contains("FIFO")));
        }
        // write_atomic never replaces a link either (it would cut it).
        let target = root.path().join("target.txt");
        std::fs::write(&target, "keep")?;
        let file_link = root.path().join("out.txt");
        std::os::unix::fs::symlink(&target, &file_link)?;
        assert!(crate::io::write_atomic(&file_link, b"new").is_err());
        assert_eq!(std::fs::read_to_string(&target)?, "keep");
        assert!(crate::io::write_atomic(&real, b"x").is_err());
        Ok(())
    }

    #[test]
    fn replaces_its_own_checkpoint_and_refuses_its_inputs() -> anyhow::Result<()> {
        let ckpt = tiny()?;
        let root = tempfile::tempdir()?;
        let out = root.path().join("ckpt");
        ckpt.save(&out)?;
        let mut other = ckpt.clone();
        other.config.seed = 7;
        other.save(&out)?;
        assert_eq!(Checkpoint::load(&out)?.config.seed, 7);
        assert!(leftovers(root.path())?.is_empty());
        // An empty folder is fine.
        let empty = root.path().join("empty");
        std::fs::create_dir(&empty)?;
        ckpt.save(&empty)?;
        Checkpoint::load(&empty)?;
        // Saving a loaded checkpoint over the folder it came from, or a stitch over one of the
        // checkpoints it was made from, is refused.
        let loaded = Checkpoint::load(&out)?;
        let before = snapshot(&out)?;
        assert!(matches!(
            loaded.save(&out),
            Err(Error::InvalidArgument { .. })
        ));
        let mut stitched = ckpt.clone();
        stitched.config.stitched_from = Some(StitchedFrom {
            encoder_checkpoint: out.display().to_string(),
            decoder_checkpoint: empty.display().to_string(),
            translation: None,
        });
        let e = stitched.save(&out).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("also an input")));
        // The same folder through another spelling of its path.
        let dotted = root.path().join(".").join("ckpt");
        assert!(stitched.save(&dotted).is_err());
        assert_eq!(snapshot(&out)?, before);
        Ok(())
    }

    #[test]
    fn stale_temporaries_are_removed_and_live_ones_kept() -> anyhow::Result<()> {
        let ckpt = tiny()?;
        let root = tempfile::tempdir()?;
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        let age = |p: &Path| -> anyhow::Result<()> {
            std::fs::File::options()
                .write(true)
                .open(p)?
                .set_modified(old)?;
            Ok(())
        };
        // Left by crashed runs: an unlocked file and an unlocked folder.
        let dead_file = root.path().join(".relstitch-tmp-dead1");
        std::fs::write(&dead_file, "partial")?;
        age(&dead_file)?;
        let dead_dir = root.path().join(".relstitch-tmp-dead2");
        std::fs::create_dir(&dead_dir)?;
        std::fs::write(dead_dir.join(".lock"), "")?;
        std::fs::write(dead_dir.join("config.json"), "{}")?;
        age(&dead_dir.join(".lock"))?;
        std::fs::File::open(&dead_dir)?.set_modified(old)?;
        // Half removed by a crash during cleanup: its lock file went first.
        let half = root.path().join(".relstitch-tmp-half");
        std::fs::create_dir_all(half.join("new"))?;
        std::fs::write(half.join("new").join("config.json"), "{}")?;
        std::fs::File::open(&half)?.set_modified(old)?;
        // Still being written by someone: locked.
        let live = root.path().join(".relstitch-tmp-live");
        std::fs::write(&live, "writing")?;
        age(&live)?;
        let held = std::fs::File::open(&live)?;
        held.lock()?;
        // Not ours at all.
        let foreign = root.path().join(".tmpABCDEF");
        std::fs::write(&foreign, "someone else's")?;
        age(&foreign)?;
        ckpt.save(&root.path().join("ckpt"))?;
        assert!(!dead_file.exists() && !dead_dir.exists() && !half.exists());
        assert!(live.exists() && foreign.exists());
        drop(held);
        Ok(())
    }

    #[test]
    fn an_interrupted_two_rename_replacement_is_rolled_back() -> anyhow::Result<()> {
        let ckpt = tiny()?;
        let root = tempfile::tempdir()?;
        let target = root.path().join("ckpt");
        // A crash between "move the old checkpoint aside" and "move the new one in".
        let staging = root.path().join(".relstitch-tmp-crashed");
        std::fs::create_dir(&staging)?;
        std::fs::write(staging.join(".lock"), "")?;
        ckpt.save(&staging.join("old"))?;
        let before = snapshot(&staging.join("old"))?;
        std::fs::write(
            staging.join("target"),
            std::path::absolute(&target)?.display().to_string(),
        )?;
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(staging.join(".lock"))?
            .set_modified(old)?;
        std::fs::File::open(&staging)?.set_modified(old)?;
        crate::io::clean_stale_temporaries(root.path());
        assert!(!staging.exists());
        let after: Vec<Vec<u8>> = snapshot(&target)?.into_iter().map(|(_, b)| b).collect();
        let before: Vec<Vec<u8>> = before.into_iter().map(|(_, b)| b).collect();
        assert_eq!(after, before);
        Checkpoint::load(&target)?;
        Ok(())
    }

    #[test]
    fn alignment_texts_round_trip_and_tampering_is_detected() -> anyhow::Result<()> {
        let mut ckpt = tiny()?;
        let set = AnchorSet::from_texts(&["one more text", "and another", "a third"])?;
        ckpt.config.alignment = Some(AnchorsInfo {
            file: "alignment.jsonl".into(),
            count: set.len(),
            sha256: set.hash(),
            strategy: Some(AnchorStrategy::Uniform { seed: 0 }),
        });
        ckpt.config.format_version = ckpt.config.minimum_format_version();
        assert_eq!(ckpt.config.format_version, 3);
        ckpt.alignment = Some(set.clone());
        let root = tempfile::tempdir()?;
        let dir = root.path().join("ckpt");
        ckpt.save(&dir)?;
        let back = Checkpoint::load(&dir)?;
        assert_eq!(back.alignment.as_ref(), Some(&set));
        assert_eq!(back.config, ckpt.config);
        // Saving over it again is allowed: alignment.jsonl is one of its own files.
        ckpt.save(&dir)?;

        // A line dropped from the alignment texts.
        let file = dir.join("alignment.jsonl");
        let text = std::fs::read_to_string(&file)?;
        std::fs::write(&file, text.lines().take(2).collect::<Vec<_>>().join("\n"))?;
        let e = Checkpoint::load(&dir).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("alignment.jsonl") && e.contains("count 2 vs 3")),
            "{e:?}"
        );

        // The alignment entry removed from config.json (or pointed elsewhere) is caught.
        ckpt.save(&dir)?;
        let cfg = dir.join("config.json");
        let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg)?)?;
        if let Some(o) = json.as_object_mut() {
            o.remove("alignment");
        }
        std::fs::write(&cfg, serde_json::to_vec_pretty(&json)?)?;
        assert!(matches!(
            Checkpoint::load(&dir),
            Err(Error::Integrity { .. })
        ));
        for bad_name in ["../elsewhere.jsonl", "anchors.jsonl"] {
            // (config.json no longer names alignment.jsonl, so that folder is no longer provably
            // a checkpoint's, and is not replaced.)
            std::fs::remove_dir_all(&dir)?;
            ckpt.save(&dir)?;
            let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg)?)?;
            json["alignment"]["file"] = serde_json::json!(bad_name);
            std::fs::write(&cfg, serde_json::to_vec_pretty(&json)?)?;
            assert!(
                matches!(Checkpoint::load(&dir), Err(Error::Input { .. })),
                "{bad_name}"
            );
        }

        // A config that names alignment texts the checkpoint does not carry is not written.
        let mut half = ckpt.clone();
        half.alignment = None;
        assert!(half.save(&root.path().join("half")).is_err());

        // A format version too old for what config.json declares.
        std::fs::remove_dir_all(&dir)?;
        ckpt.save(&dir)?;
        let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg)?)?;
        json["format_version"] = serde_json::json!(1);
        std::fs::write(&cfg, serde_json::to_vec_pretty(&json)?)?;
        let e = Checkpoint::load(&dir).err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("version 3")),
            "{e:?}"
        );

        // Alignment texts added to a checkpoint saved without any.
        let plain = root.path().join("plain");
        tiny()?.save(&plain)?;
        std::fs::copy(dir.join("alignment.jsonl"), plain.join("alignment.jsonl"))?;
        let cfg = plain.join("config.json");
        let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg)?)?;
        json["alignment"] = serde_json::to_value(&ckpt.config.alignment)?;
        json["format_version"] = serde_json::json!(3);
        std::fs::write(&cfg, serde_json::to_vec_pretty(&json)?)?;
        let e = Checkpoint::load(&plain).err();
        assert!(
            matches!(&e, Some(Error::Integrity { reason, .. }) if reason.contains("added")),
            "{e:?}"
        );
        Ok(())
    }

    #[test]
    fn edited_config_or_weights_are_detected() -> anyhow::Result<()> {
        let ckpt = tiny()?;
        let root = tempfile::tempdir()?;
        let dir = root.path().join("ckpt");
        let cfg = dir.join("config.json");
        let edit = |f: &dyn Fn(&mut serde_json::Value)| -> anyhow::Result<Result<Checkpoint>> {
            let _ = std::fs::remove_dir_all(&dir);
            ckpt.save(&dir)?;
            let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg)?)?;
            f(&mut json);
            std::fs::write(&cfg, serde_json::to_vec_pretty(&json)?)?;
            Ok(Checkpoint::load(&dir))
        };
        let integrity = |r: Result<Checkpoint>, needle: &str| match r {
            Err(e @ Error::Integrity { .. }) if e.to_string().contains(needle) => Ok(()),
            other => Err(anyhow::anyhow!(
                "expected an integrity error about {needle}, got {other:?}"
            )),
        };
        integrity(
            edit(&|j| j["labels"] = serde_json::json!(["c", "b", "a"]))?,
            "labels",
        )?;
        integrity(
            edit(&|j| j["space"]["projection"] = serde_json::json!({"kind": "euclidean"}))?,
            "space",
        )?;
        integrity(
            edit(&|j| j["encoder"]["weights_sha256"] = serde_json::json!("cd".repeat(32)))?,
            "encoder",
        )?;
        integrity(
            edit(&|j| j["encoder"]["pooling"] = serde_json::json!("cls"))?,
            "encoder",
        )?;
        // The checkpoint was fitted on int8 vectors: claiming f32 (or dropping the field, which
        // reads as f32) is caught.
        integrity(
            edit(&|j| j["encoder"]["precision"] = serde_json::json!("f32"))?,
            "encoder",
        )?;
        integrity(
            edit(&|j| {
                if let Some(e) = j["encoder"].as_object_mut() {
                    e.remove("precision");
                }
            })?,
            "encoder",
        )?;
        // Harmless edits still load.
        assert!(edit(&|j| j["encoder"]["path"] = serde_json::json!("/elsewhere"))?.is_ok());
        // A changed weight, with the file otherwise intact.
        let _ = std::fs::remove_dir_all(&dir);
        ckpt.save(&dir)?;
        let st = dir.join(WEIGHTS_FILE);
        let f = crate::io::SafetensorsFile::read(&st, &Device::Cpu)?;
        let mut tensors: Vec<(String, Tensor)> = f.tensors.into_iter().collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        tensors[0].1 = (&tensors[0].1 * 2.0)?;
        let views: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        crate::io::write_safetensors(&st, &views, &f.metadata)?;
        integrity(Checkpoint::load(&dir), "weights")?;
        Ok(())
    }

    #[test]
    fn checkpoints_of_earlier_versions_still_load_and_their_labels_are_checked(
    ) -> anyhow::Result<()> {
        let ckpt = tiny()?;
        let root = tempfile::tempdir()?;
        let dir = root.path().join("ckpt");
        ckpt.save(&dir)?;
        // What relstitch 0.1 wrote: only `format` and `labels` in the metadata.
        let st = dir.join(WEIGHTS_FILE);
        let f = crate::io::SafetensorsFile::read(&st, &Device::Cpu)?;
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("labels".to_string(), r#"["a","b","c"]"#.to_string()),
        ]);
        let views: Vec<(&str, &Tensor)> = f.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        crate::io::write_safetensors(&st, &views, &meta)?;
        let loaded = Checkpoint::load(&dir)?;
        assert_eq!(loaded.config, ckpt.config);
        assert_eq!(loaded.config.encoder.precision, Precision::Int8);
        let cfg = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg)?
            .replace("\"a\"", "\"x\"")
            .replace("\"c\"", "\"a\"")
            .replace("\"x\"", "\"c\"");
        std::fs::write(&cfg, text)?;
        assert!(matches!(
            Checkpoint::load(&dir),
            Err(Error::Integrity { .. })
        ));
        Ok(())
    }

    #[test]
    fn anchors_file_must_stay_inside_the_checkpoint() -> anyhow::Result<()> {
        let ckpt = tiny()?;
        let root = tempfile::tempdir()?;
        let dir = root.path().join("ckpt");
        ckpt.save(&dir)?;
        let cfg = dir.join("config.json");
        let mut json: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg)?)?;
        json["anchors"]["file"] = serde_json::json!("../elsewhere.jsonl");
        std::fs::write(&cfg, json.to_string())?;
        assert!(matches!(Checkpoint::load(&dir), Err(Error::Input { .. })));
        Ok(())
    }
}
