//! Fitting decoders, running checkpoints, and stitching the encoder of one checkpoint to the
//! decoder of another — zero-shot.
//!
//! ```no_run
//! # fn main() -> relstitch::Result<()> {
//! use relstitch::task::checkpoint::Checkpoint;
//! use relstitch::task::stitch::{Pipeline, StitchOptions};
//! let a = Checkpoint::load("ckpt-minilm".as_ref())?; // trained on all-MiniLM-L6-v2
//! let b = Checkpoint::load("ckpt-mpnet".as_ref())?;  // trained on all-mpnet-base-v2
//! // MiniLM's encoder with MPNet's head: no retraining.
//! let stitched = Pipeline::stitch(&a, &b, &StitchOptions::default())?;
//! let predictions = stitched.predict(&["the cpu overheated again"])?;
//! println!("{}", predictions[0].label);
//! # Ok(()) }
//! ```

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::encoder::cache::EmbeddingCache;
use crate::encoder::{Encoder, EncoderOptions, ModelIdentity};
use crate::error::CandleContext;
use crate::space::anchors::{AnchorPool, AnchorSet, AnchorStrategy};
use crate::space::projection::{PreTransform, Projection, RelativeProjector};
use crate::space::translation::{LatentTranslator, TranslationMethod};
use crate::task::checkpoint::{
    required_format_version, AnchorsInfo, Checkpoint, CheckpointConfig, Space, StitchedFrom,
    TrainingInfo, FORMAT,
};
use crate::task::compatibility::{Alternative, Compatibility, Verdict};
use crate::task::decoder::{train_head, Head, HeadKind, TrainOptions};
use crate::task::scores::{score, Scores};
use crate::{Error, Result};

/// Where the anchors of a new decoder come from.
#[derive(Debug, Clone, PartialEq)]
pub enum AnchorChoice {
    /// Choose `count` training samples with `strategy`.
    Select {
        /// How many anchors.
        count: usize,
        /// How to choose them.
        strategy: AnchorStrategy,
    },
    /// Choose `count` training samples with `strategy`, or every distinct one when there are
    /// fewer (the default: small training sets need no anchor count).
    UpTo {
        /// How many anchors at most.
        count: usize,
        /// How to choose them.
        strategy: AnchorStrategy,
    },
    /// Use the samples of an anchors `.jsonl` file (they must carry their text).
    File(std::path::PathBuf),
}

/// Everything `relstitch fit` decides.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// How the encoder runs.
    pub encoder: EncoderOptions,
    /// The anchors.
    pub anchors: AnchorChoice,
    /// Relative (with its projection) or absolute.
    pub space: Space,
    /// The head's shape.
    pub head: HeadKind,
    /// Training.
    pub train: TrainOptions,
    /// Reuse and store embeddings in the cache (`$RELSTITCH_HOME/embeddings`).
    pub cache: bool,
    /// How many training texts beyond the anchors the checkpoint keeps, without their labels, as
    /// alignment texts (a seeded uniform sample): a stitch onto this decoder fits its latent
    /// translation on the anchors and these, which makes the map steadier than on the anchors
    /// alone. 0 keeps none (and the checkpoint readable by relstitch versions before format 3).
    pub alignment_texts: usize,
}

/// The default of [`FitOptions::alignment_texts`].
pub const ALIGNMENT_TEXTS: usize = 4096;

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            encoder: EncoderOptions::default(),
            anchors: AnchorChoice::UpTo {
                count: 768,
                strategy: AnchorStrategy::Stratified { seed: 0 },
            },
            space: Space::Relative {
                projection: Projection::Cosine,
                pre_transform: PreTransform::CENTERED,
            },
            head: HeadKind::Linear,
            train: TrainOptions::default(),
            cache: true,
            alignment_texts: ALIGNMENT_TEXTS,
        }
    }
}

/// Embeds with the cache when asked to.
fn embed(encoder: &Encoder, texts: &[String], cache: bool) -> Result<Tensor> {
    if cache {
        EmbeddingCache::new(&crate::hub::fetch::home_dir()?, encoder.identity())
            .embed(encoder, texts)
    } else {
        encoder.embed(texts)
    }
}

/// Loads the encoder a checkpoint names, with the pooling, normalisation, length and prefix it was
/// trained with, and checks that its weights are the same ([`Encoder::from_identity`]).
///
/// # Errors
/// Those of [`Encoder::from_identity`].
pub fn load_encoder(identity: &ModelIdentity, options: &EncoderOptions) -> Result<Encoder> {
    Encoder::from_identity(identity, options)
}

/// Trains a decoder on `train` with the encoder `model` and returns the checkpoint (not yet saved).
///
/// # Errors
/// [`Error::InvalidArgument`] when `train` has fewer than 2 labels or the space is
/// [`Space::Translated`]; [`Error::Input`] when an anchors file has samples without text; the
/// errors of [`Encoder::load`], of embedding (and the embedding cache), of anchor selection or
/// [`AnchorSet::load_jsonl`], of [`RelativeProjector`] and of [`train_head`].
pub fn fit(model: &str, train: &Dataset, options: &FitOptions) -> Result<Checkpoint> {
    if train.labels.len() < 2 {
        return Err(Error::invalid("training data", "needs at least two labels"));
    }
    if matches!(options.space, Space::Translated) {
        return Err(Error::invalid(
            "space",
            "`translated` is made by stitching, not by fitting; use relative or absolute",
        ));
    }
    if let Space::Relative {
        projection,
        pre_transform,
    } = options.space
    {
        // Before minutes of embedding.
        projection.validate()?;
        pre_transform.validate()?;
    }
    let encoder = Encoder::load(model, &options.encoder)?;
    let texts: Vec<String> = train.records.iter().map(|r| r.text.clone()).collect();
    let labels: Vec<usize> = train.label_indices();
    let x = embed(&encoder, &texts, options.cache)?;
    // Texts the encoder cannot tell apart (e.g. the same first tokens of two long documents, past
    // its maximum length) count as one: two such anchors would be one anchor twice, and such an
    // alignment text would repeat an anchor.
    let mut keys = same_latents_same_text(&texts, &x)?;
    let (anchors, strategy, anchor_latents) = match &options.anchors {
        AnchorChoice::Select { count, strategy } | AnchorChoice::UpTo { count, strategy } => {
            let label_names: Vec<String> = train
                .records
                .iter()
                .map(|r| train.labels[r.label].clone())
                .collect();
            let pool = AnchorPool::from_space(&x)
                .with_texts(&keys)
                .with_labels(&label_names);
            let count = match &options.anchors {
                AnchorChoice::UpTo { .. } => {
                    let distinct = keys.iter().collect::<std::collections::HashSet<_>>().len();
                    if distinct < *count {
                        tracing::info!(
                            "{distinct} distinct training samples: every one is an anchor (at most {count} asked)"
                        );
                    }
                    (*count).min(distinct)
                }
                _ => *count,
            };
            let set = AnchorSet::select(&pool, count, strategy)?;
            let lat = set.latents(&x)?;
            (set, Some(*strategy), lat)
        }
        AnchorChoice::File(path) => {
            let set = AnchorSet::load_jsonl(path)?;
            let anchor_texts = set.texts().map_err(|e| Error::Input {
                path: path.clone(),
                line: None,
                reason: format!("{e}; anchors for fitting must carry their text"),
            })?;
            let lat = embed(&encoder, &anchor_texts, options.cache)?;
            // A training text the encoder cannot tell from a file anchor counts as that anchor.
            let both = Tensor::cat(&[&lat, &x], 0)
                .context(|| "joining the anchors' and the training texts' latents".into())?;
            let all: Vec<String> = anchor_texts.iter().chain(&texts).cloned().collect();
            keys = same_latents_same_text(&all, &both)?.split_off(anchor_texts.len());
            (set, None, lat)
        }
    };
    let features = match options.space {
        Space::Relative {
            projection,
            pre_transform,
        } => RelativeProjector::fit(&anchor_latents, projection, pre_transform)?.project(&x)?,
        _ => x.clone(),
    };
    let trained = train_head(
        &features,
        &labels,
        options.head,
        train.labels.len(),
        &options.train,
    )?;
    let alignment = alignment_texts(&keys, &anchors, options.alignment_texts, options.train.seed)?;
    let mut config = CheckpointConfig {
        format: FORMAT.into(),
        format_version: required_format_version(&options.space),
        relstitch_version: env!("CARGO_PKG_VERSION").into(),
        encoder: encoder.identity().clone(),
        space: options.space,
        anchors: AnchorsInfo {
            file: "anchors.jsonl".into(),
            count: anchors.len(),
            sha256: anchors.hash(),
            strategy,
        },
        head: trained.head.config().clone(),
        labels: train.labels.clone(),
        training: Some(TrainingInfo {
            options: options.train.clone(),
            report: trained.report,
            train_file: Some(train.source.clone()),
        }),
        stitched_from: None,
        seed: options.train.seed,
        anchor_encoder: None,
        alignment: alignment.as_ref().map(|(set, strategy)| AnchorsInfo {
            file: "alignment.jsonl".into(),
            count: set.len(),
            sha256: set.hash(),
            strategy: Some(*strategy),
        }),
    };
    config.format_version = config.minimum_format_version();
    Ok(Checkpoint {
        config,
        anchors,
        weights: trained.weights,
        translation: None,
        alignment: alignment.map(|(set, _)| set),
        dir: None,
    })
}

/// `texts` with every text replaced by the first text of identical latents (row of `x`; `+0.0`
/// and `-0.0` are the same point).
fn same_latents_same_text(texts: &[String], x: &Tensor) -> Result<Vec<String>> {
    let first = crate::space::tensor::first_identical_rows(x)?;
    if first.len() != texts.len() {
        return Err(Error::invalid(
            "training latents",
            format!("{} rows for {} texts", first.len(), texts.len()),
        ));
    }
    Ok(first.into_iter().map(|j| texts[j].clone()).collect())
}

/// Up to `count` distinct training texts (`texts` keyed so that texts of identical latents are one
/// text) that are not anchor texts, as a seeded uniform sample
/// ([`AnchorStrategy::Uniform`]), with the strategy; `None` when `count` is 0 or no text is left.
fn alignment_texts(
    texts: &[String],
    anchors: &AnchorSet,
    count: usize,
    seed: u64,
) -> Result<Option<(AnchorSet, AnchorStrategy)>> {
    if count == 0 {
        return Ok(None);
    }
    let taken: std::collections::HashSet<&str> = anchors
        .samples()
        .iter()
        .filter_map(|s| s.text.as_deref())
        .collect();
    let mut seen = std::collections::HashSet::new();
    let rest: Vec<String> = texts
        .iter()
        .filter(|t| !taken.contains(t.as_str()) && seen.insert(t.as_str()))
        .cloned()
        .collect();
    if rest.is_empty() {
        return Ok(None);
    }
    let strategy = AnchorStrategy::Uniform { seed };
    let rows = strategy.select_rows(&AnchorPool::new(rest.len()), count.min(rest.len()))?;
    let picked: Vec<&str> = rows.iter().map(|&r| rest[r].as_str()).collect();
    Ok(Some((AnchorSet::from_texts(&picked)?, strategy)))
}

/// How the encoder's latents become the head's input.
#[derive(Debug, Clone)]
enum Features {
    Relative(RelativeProjector),
    Absolute,
    Translated(LatentTranslator),
    /// Translated into the anchor encoder's space, then projected onto its anchors.
    TranslatedRelative(LatentTranslator, RelativeProjector),
}

/// How a relative decoder is stitched to another encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelativeStitch {
    /// The default: [`RelativeStitch::Translated`] for decoders that read unwhitened relative
    /// vectors (`relstitch fit`'s default, centred cosine, and the paper's plain cosine), falling
    /// back to [`RelativeStitch::ZeroShot`] with a warning when the decoder's own encoder cannot
    /// be loaded here; [`RelativeStitch::ZeroShot`] for decoders fitted in a whitened space, which
    /// stitch better zero-shot than through a translation. Each is the most faithful stitch
    /// measured for its kind of decoder (docs/RESULTS.md, `stitch_robust`).
    #[default]
    Auto,
    /// The paper's zero-shot stitch: the new encoder embeds the anchors and projects onto them
    /// itself; the decoder's encoder is never needed to run the stitch. Holds on most pairs of
    /// encoders, but less well than [`RelativeStitch::Translated`] on the worst ones (an
    /// anisotropic encoder such as sre-embedding-model or e5 feeding a decoder trained on another
    /// one; docs/RESULTS.md, `stitch_robust`).
    ZeroShot,
    /// The new encoder's latents are mapped into the decoder's encoder's space by a latent
    /// translation ([`StitchOptions::translation`]) fitted on the decoder's anchors and
    /// alignment texts embedded by both encoders, then projected onto the anchors exactly as the decoder was
    /// trained. Needs the decoder's encoder at stitch and predict time (it is found by its
    /// recorded identity and its weights are verified). The most faithful stitch measured on
    /// every pair of catalog encoders for unwhitened decoders (docs/RESULTS.md, `stitch_robust`).
    Translated,
}

/// How to stitch.
#[derive(Debug, Clone)]
pub struct StitchOptions {
    /// How the encoders run.
    pub encoder: EncoderOptions,
    /// The latent translation, for absolute decoders and [`RelativeStitch::Translated`].
    pub translation: TranslationMethod,
    /// How relative decoders are stitched.
    pub relative: RelativeStitch,
    /// Use the embedding cache.
    pub cache: bool,
}

impl Default for StitchOptions {
    fn default() -> Self {
        Self {
            encoder: EncoderOptions::default(),
            translation: TranslationMethod::Procrustes,
            relative: RelativeStitch::default(),
            cache: true,
        }
    }
}

impl StitchOptions {
    /// Sets how relative decoders are stitched.
    #[must_use]
    pub fn with_relative(mut self, relative: RelativeStitch) -> Self {
        self.relative = relative;
        self
    }
}

/// The estimate, or `None` with a warning saying why it could not be made.
fn estimated(c: Result<Compatibility>) -> Option<Compatibility> {
    match c {
        Ok(c) => {
            tracing::info!(
                predicted_retained = c.predicted_retained,
                agreement = c.agreement,
                verdict = c.verdict.name(),
                "stitch compatibility"
            );
            Some(c)
        }
        Err(e) => {
            tracing::warn!("cannot estimate the stitch's compatibility: {e}");
            None
        }
    }
}

/// One prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The most probable label.
    pub label: String,
    /// Every label's probability, in the checkpoint's label order.
    pub probabilities: Vec<(String, f32)>,
}

/// An encoder, the map from its latents to a head's input, and the head: a runnable classifier.
pub struct Pipeline {
    encoder: Encoder,
    features: Features,
    head: Head,
    checkpoint: Checkpoint,
    cache: bool,
    compatibility: Option<Compatibility>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("encoder", self.encoder.identity())
            .field("space", &self.checkpoint.config.space)
            .finish()
    }
}

fn anchor_texts(ckpt: &Checkpoint) -> Result<Vec<String>> {
    ckpt.anchors.texts().map_err(|e| Error::Input {
        path: ckpt
            .dir
            .clone()
            .unwrap_or_default()
            .join(&ckpt.config.anchors.file),
        line: None,
        reason: format!(
            "{e}; stitching needs anchors with their text so the other encoder can embed them"
        ),
    })
}

/// The texts on which a stitch onto `decoder` fits its latent translation, as latents of both
/// encoders: the decoder's anchors (`source`, `target` already embedded) followed by its alignment
/// texts, when it has some.
///
/// # Shapes
/// - `source`: `[k, d_s]`, `target`: `[k, d_t]`; returns `[k + m, d_s]` and `[k + m, d_t]`.
fn with_alignment(
    decoder: &Checkpoint,
    (encoder, source): (&Encoder, &Tensor),
    (b_encoder, target): (&Encoder, &Tensor),
    cache: bool,
) -> Result<(Tensor, Tensor)> {
    let Some(set) = &decoder.alignment else {
        return Ok((source.clone(), target.clone()));
    };
    let texts = set.texts().map_err(|e| Error::Input {
        path: decoder.dir.clone().unwrap_or_default().join(
            decoder
                .config
                .alignment
                .as_ref()
                .map_or("alignment.jsonl", |a| a.file.as_str()),
        ),
        line: None,
        reason: format!("{e}; alignment texts must carry their text"),
    })?;
    let join = |a: &Tensor, b: Tensor| {
        Tensor::cat(&[a, &b], 0).context(|| "joining the anchors and the alignment texts".into())
    };
    Ok((
        join(source, embed(encoder, &texts, cache)?)?,
        join(target, embed(b_encoder, &texts, cache)?)?,
    ))
}

impl Pipeline {
    /// Runs a checkpoint as it was trained (its own encoder).
    ///
    /// # Errors
    /// The errors of [`load_encoder`], of embedding the anchors and fitting the projection;
    /// [`Error::Input`] when the anchors have no text; [`Error::InvalidArgument`] for a
    /// translated checkpoint without its translation; the errors of [`Checkpoint::head`].
    pub fn from_checkpoint(ckpt: &Checkpoint, options: &StitchOptions) -> Result<Self> {
        let encoder = load_encoder(&ckpt.config.encoder, &options.encoder)?;
        let features = match ckpt.config.space {
            Space::Relative {
                projection,
                pre_transform,
            } => {
                let lat = embed(&encoder, &anchor_texts(ckpt)?, options.cache)?;
                Features::Relative(RelativeProjector::fit(&lat, projection, pre_transform)?)
            }
            Space::Absolute => Features::Absolute,
            Space::Translated => {
                Features::Translated(ckpt.translation.clone().ok_or_else(|| {
                    Error::invalid(
                        "checkpoint",
                        "a translated checkpoint without translation.safetensors",
                    )
                })?)
            }
            Space::TranslatedRelative {
                projection,
                pre_transform,
            } => {
                let missing = |what: &str| {
                    Error::invalid(
                        "checkpoint",
                        format!("a translated_relative checkpoint without {what}"),
                    )
                };
                let t = ckpt
                    .translation
                    .clone()
                    .ok_or_else(|| missing("translation.safetensors"))?;
                let identity = ckpt
                    .config
                    .anchor_encoder
                    .as_ref()
                    .ok_or_else(|| missing("its anchor_encoder"))?;
                let anchor_encoder = load_encoder(identity, &options.encoder)?;
                let lat = embed(&anchor_encoder, &anchor_texts(ckpt)?, options.cache)?;
                Features::TranslatedRelative(
                    t,
                    RelativeProjector::fit(&lat, projection, pre_transform)?,
                )
            }
        };
        let head = ckpt.head(encoder.device())?;
        Ok(Self {
            encoder,
            features,
            head,
            checkpoint: ckpt.clone(),
            cache: options.cache,
            compatibility: None,
        })
    }

    /// The encoder of `encoder_from` with the decoder of `decoder_from`.
    ///
    /// A relative decoder is stitched as [`StitchOptions::relative`] says: by default
    /// ([`RelativeStitch::Auto`]) an unwhitened decoder gets the new encoder's latents translated
    /// into its encoder's space (a map fitted on the decoder's anchors and alignment texts
    /// embedded by both encoders)
    /// and projected onto the anchors as it was trained ([`RelativeStitch::Translated`]), and a
    /// whitened one gets them zero-shot: the anchors are embedded by the new encoder and
    /// projected the same way ([`RelativeStitch::ZeroShot`], the paper's). An
    /// absolute decoder gets a latent translation (Procrustes by default) fitted on its anchors
    /// and alignment texts embedded by both encoders.
    ///
    /// Before any evaluation, the stitch's label-free [`Compatibility`] is estimated on the
    /// decoder's anchors, and its alignment texts where a translation is fitted (both encoders
    /// embed them; see [`Pipeline::compatibility`]). When the
    /// decoder's own encoder cannot be loaded here, the estimate is skipped with a warning and the
    /// stitch still runs.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the two label sets differ, the decoder is itself a
    /// translated stitch, or its projection cannot be fitted on the new encoder's anchors (the
    /// cause is in the message); [`Error::Input`] when the decoder's anchors have no text; the
    /// errors of [`load_encoder`], of embedding, of [`LatentTranslator::fit`] and of
    /// [`Checkpoint::head`].
    pub fn stitch(
        encoder_from: &Checkpoint,
        decoder_from: &Checkpoint,
        options: &StitchOptions,
    ) -> Result<Self> {
        let (a, b) = (&encoder_from.config, &decoder_from.config);
        let mut la = a.labels.clone();
        let mut lb = b.labels.clone();
        la.sort();
        lb.sort();
        if la != lb {
            return Err(Error::invalid(
                "checkpoints",
                format!("their label sets differ ({:?} vs {:?}); stitch checkpoints trained on the same task", a.labels, b.labels),
            ));
        }
        let encoder = load_encoder(&a.encoder, &options.encoder)?;
        let texts = anchor_texts(decoder_from)?;
        let source = embed(&encoder, &texts, options.cache)?;
        let head = decoder_from.head(encoder.device())?;
        let mut anchor_encoder = None;
        // A relative decoder goes through a translation unless told otherwise, or (by default)
        // when it reads whitened vectors, which stitch best zero-shot.
        let through_translation = match (b.space, options.relative) {
            (Space::Relative { .. }, RelativeStitch::ZeroShot) => None,
            (Space::Relative { pre_transform, .. }, RelativeStitch::Auto) if pre_transform.whiten.is_some() => None,
            (Space::Relative { .. }, RelativeStitch::Translated) => Some(load_encoder(&b.encoder, &options.encoder).map_err(|e| {
                Error::invalid("stitch", format!("a translated stitch embeds the anchors with the decoder's own encoder, which cannot be loaded here ({e}); stitch zero-shot instead (`--zero-shot`, RelativeStitch::ZeroShot)"))
            })?),
            (Space::Relative { .. }, RelativeStitch::Auto) => match load_encoder(&b.encoder, &options.encoder) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!("the decoder's own encoder cannot be loaded here ({e}): stitching zero-shot instead of through a latent translation, which holds less well on hard pairs");
                    None
                }
            },
            _ => None,
        };
        let (features, space, translation, method, compatibility) = match (b.space, through_translation) {
            (Space::Relative { projection, pre_transform }, Some(b_encoder)) => {
                let target = embed(&b_encoder, &texts, options.cache)?;
                let own = RelativeProjector::fit(&target, projection, pre_transform)?;
                let (source_all, target_all) = with_alignment(decoder_from, (&encoder, &source), (&b_encoder, &target), options.cache)?;
                let t = LatentTranslator::fit(&source_all, &target_all, options.translation)?;
                let compatibility = estimated((|| {
                    let mut c = Compatibility::translated_relative(&head, b.space, (&source_all, &target_all), &own, options.translation)?;
                    if c.verdict != Verdict::Good {
                        // Would the zero-shot stitch keep more? Same head, same anchors. (Not
                        // where it cannot be made: the new encoder may see two anchors as one.)
                        let zero_shot = RelativeProjector::fit(&source, projection, pre_transform)
                            .and_then(|p| Compatibility::relative(&head, b.space, (&own, &target), (&p, &source)));
                        match zero_shot {
                            Ok(z) => {
                                c = c.with_alternative(Alternative {
                                    method: "a zero-shot stitch (`--zero-shot`, RelativeStitch::ZeroShot)".into(),
                                    agreement: z.agreement,
                                    predicted_retained: z.predicted_retained,
                                });
                            }
                            Err(e) => tracing::debug!("no zero-shot alternative to compare with: {e}"),
                        }
                    }
                    Ok(c)
                })());
                anchor_encoder = Some(b_encoder.identity().clone());
                (
                    Features::TranslatedRelative(t.clone(), own),
                    Space::TranslatedRelative { projection, pre_transform },
                    Some(t),
                    Some(options.translation.name().to_string()),
                    compatibility,
                )
            }
            (Space::Relative { projection, pre_transform }, None) => {
                let p = RelativeProjector::fit(&source, projection, pre_transform).map_err(|e| {
                    Error::invalid("stitch", format!("the decoder's {} projection cannot be fitted on the new encoder's anchors ({e})", projection.name()))
                })?;
                let compatibility = estimated((|| {
                    let b_encoder = load_encoder(&b.encoder, &options.encoder)?;
                    let target = embed(&b_encoder, &texts, options.cache)?;
                    let own = RelativeProjector::fit(&target, projection, pre_transform)?;
                    let mut c = Compatibility::relative(&head, b.space, (&own, &target), (&p, &source))?;
                    if c.verdict != Verdict::Good {
                        // Would a stitch through a latent translation keep more? Same head, same texts.
                        let (source_all, target_all) = with_alignment(decoder_from, (&encoder, &source), (&b_encoder, &target), options.cache)?;
                        let t = Compatibility::translated_relative(&head, b.space, (&source_all, &target_all), &own, options.translation)?;
                        c = c.with_alternative(Alternative {
                            method: format!("a stitch through a {} latent translation (`--translate`, RelativeStitch::Translated)", options.translation.name()),
                            agreement: t.agreement,
                            predicted_retained: t.predicted_retained,
                        });
                    }
                    Ok(c)
                })());
                (Features::Relative(p), b.space, None, None, compatibility)
            }
            (Space::Absolute, _) => {
                let b_encoder = load_encoder(&b.encoder, &options.encoder)?;
                let target = embed(&b_encoder, &texts, options.cache)?;
                let (source_all, target_all) = with_alignment(decoder_from, (&encoder, &source), (&b_encoder, &target), options.cache)?;
                let t = LatentTranslator::fit(&source_all, &target_all, options.translation)?;
                let compatibility = estimated(Compatibility::translated(&head, &source_all, &target_all, options.translation));
                (Features::Translated(t.clone()), Space::Translated, Some(t), Some(options.translation.name().to_string()), compatibility)
            }
            (Space::Translated | Space::TranslatedRelative { .. }, _) => {
                return Err(Error::invalid(
                    "stitch",
                    "the decoder checkpoint is itself a translated stitch; stitch from the checkpoint it was made from",
                ))
            }
        };
        let name = |c: &Checkpoint| {
            c.dir
                .as_ref()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        };
        let config = CheckpointConfig {
            encoder: encoder.identity().clone(),
            space,
            training: None,
            stitched_from: Some(StitchedFrom {
                encoder_checkpoint: name(encoder_from),
                decoder_checkpoint: name(decoder_from),
                translation: method,
            }),
            relstitch_version: env!("CARGO_PKG_VERSION").into(),
            format_version: required_format_version(&space),
            anchor_encoder,
            // The translation is fitted: a stitched checkpoint needs no alignment texts.
            alignment: None,
            ..b.clone()
        };
        let checkpoint = Checkpoint {
            config,
            anchors: decoder_from.anchors.clone(),
            weights: decoder_from.weights.clone(),
            translation,
            alignment: None,
            dir: None,
        };
        Ok(Self {
            encoder,
            features,
            head,
            checkpoint,
            cache: options.cache,
            compatibility,
        })
    }

    /// The label-free estimate of how well this stitch holds, computed from the decoder's anchors
    /// (and alignment texts) before any evaluation (`None` for a checkpoint run as trained, or when the estimate could
    /// not be made).
    pub fn compatibility(&self) -> Option<&Compatibility> {
        self.compatibility.as_ref()
    }

    /// The checkpoint this pipeline runs (for a stitch: the stitched checkpoint, ready to save).
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The label names, in class order.
    pub fn labels(&self) -> &[String] {
        &self.checkpoint.config.labels
    }

    /// The head's input for `texts`.
    ///
    /// # Shapes
    /// - returns `[texts.len(), head input width]`
    ///
    /// # Errors
    /// The errors of embedding `texts` (e.g. [`Error::InvalidArgument`] when it is empty), then
    /// those of [`RelativeProjector::project`] or [`LatentTranslator::apply`].
    pub fn features<S: AsRef<str>>(&self, texts: &[S]) -> Result<Tensor> {
        let texts: Vec<String> = texts.iter().map(|t| t.as_ref().to_string()).collect();
        let x = embed(&self.encoder, &texts, self.cache)?;
        match &self.features {
            Features::Relative(p) => p.project(&x),
            Features::Absolute => Ok(x),
            Features::Translated(t) => t.apply(&x),
            Features::TranslatedRelative(t, p) => p.project(&t.apply(&x)?),
        }
    }

    /// Class probabilities.
    ///
    /// # Shapes
    /// - returns `[texts.len(), num_classes]`
    ///
    /// # Errors
    /// The errors of [`Pipeline::features`]; [`Error::Candle`] when running the head fails.
    pub fn probabilities<S: AsRef<str>>(&self, texts: &[S]) -> Result<Tensor> {
        let f = self.features(texts)?;
        let f = f
            .to_device(self.encoder.device())
            .context(|| "moving features".into())?;
        self.head
            .probabilities(&f)
            .context(|| "running the head".into())
    }

    /// Predicts the label of each text.
    ///
    /// # Errors
    /// The errors of [`Pipeline::probabilities`].
    pub fn predict<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Prediction>> {
        let p = self
            .probabilities(texts)?
            .to_device(&Device::Cpu)
            .and_then(|p| p.to_vec2::<f32>())
            .context(|| "reading probabilities".into())?;
        let labels = self.labels();
        Ok(p.into_iter()
            .map(|row| {
                let best = row
                    .iter()
                    .enumerate()
                    .fold(0, |b, (i, v)| if *v > row[b] { i } else { b });
                Prediction {
                    label: labels[best].clone(),
                    probabilities: labels.iter().cloned().zip(row).collect(),
                }
            })
            .collect())
    }

    /// Scores the pipeline on a labelled dataset (its labels must be among the checkpoint's).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a record's label is not one of the checkpoint's (or
    /// `data` is empty); the errors of [`Pipeline::probabilities`].
    pub fn evaluate(&self, data: &Dataset) -> Result<Scores> {
        let labels = self.labels();
        let truth = data
            .records
            .iter()
            .map(|r| {
                let name = &data.labels[r.label];
                labels.iter().position(|l| l == name).ok_or_else(|| {
                    Error::invalid(
                        "evaluation labels",
                        format!(
                            "`{name}` (record {}) is not a label of the checkpoint ({})",
                            r.id,
                            labels.join(", ")
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let texts: Vec<&str> = data.records.iter().map(|r| r.text.as_str()).collect();
        let predicted: Vec<usize> = self
            .probabilities(&texts)?
            .argmax(1)
            .and_then(|a| a.to_vec1::<u32>())
            .context(|| "predicting".into())?
            .into_iter()
            .map(|i| i as usize)
            .collect();
        score(&truth, &predicted, labels.len())
    }
}

/// The scores of A alone, B alone and the stitch, on the same test set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StitchReport {
    /// The label-free estimate made from the anchors before evaluating
    /// ([`Pipeline::compatibility`]).
    #[serde(default)]
    pub compatibility: Option<Compatibility>,
    /// The encoder checkpoint run as trained.
    pub encoder_checkpoint: Scores,
    /// The decoder checkpoint run as trained.
    pub decoder_checkpoint: Scores,
    /// A's encoder with B's decoder.
    pub stitched: Scores,
}

impl StitchReport {
    /// Evaluates the three pipelines on `test`.
    ///
    /// # Errors
    /// The errors of [`Pipeline::from_checkpoint`] for `a` and `b`, and of [`Pipeline::evaluate`]
    /// for each pipeline.
    pub fn evaluate(
        a: &Checkpoint,
        b: &Checkpoint,
        stitched: &Pipeline,
        test: &Dataset,
        options: &StitchOptions,
    ) -> Result<Self> {
        Ok(Self {
            compatibility: stitched.compatibility().cloned(),
            encoder_checkpoint: Pipeline::from_checkpoint(a, options)?.evaluate(test)?,
            decoder_checkpoint: Pipeline::from_checkpoint(b, options)?.evaluate(test)?,
            stitched: stitched.evaluate(test)?,
        })
    }

    /// The stitch's weighted F1 as a fraction of the decoder checkpoint's own.
    pub fn retained(&self) -> f64 {
        self.stitched.weighted_f1 / self.decoder_checkpoint.weighted_f1.max(1e-12)
    }
}

impl StitchReport {
    /// The three rows (encoder checkpoint, decoder checkpoint, stitch) as a table.
    pub fn to_table(&self) -> crate::report::display::Table<Scores> {
        crate::report::display::Table::new("pipeline")
            .with_row("encoder checkpoint (A)", self.encoder_checkpoint)
            .with_row("decoder checkpoint (B)", self.decoder_checkpoint)
            .with_row("stitched A → B", self.stitched)
    }

    /// The report as HTML: the predicted compatibility, the score table and the retained fraction.
    pub fn to_html(&self) -> String {
        let predicted = self.compatibility.as_ref().map_or(String::new(), |c| {
            format!(
                "<p>{}</p>",
                crate::report::display::escape(&c.to_string()).replace('\n', "<br>")
            )
        });
        format!(
            "{predicted}{}<p>stitched keeps <b>{:.1}%</b> of B's weighted F1</p>",
            self.to_table().to_html(),
            100.0 * self.retained()
        )
    }

    /// A bar chart (SVG) of accuracy, macro F1 and weighted F1 of the three pipelines.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a score is NaN or infinite; [`Error::Plot`] when drawing
    /// fails.
    #[cfg(feature = "plot")]
    pub fn to_svg(&self, title: &str) -> Result<String> {
        let groups = ["accuracy", "macro F1", "weighted F1"].map(String::from);
        let series: Vec<(String, Vec<f64>)> = self
            .to_table()
            .rows()
            .iter()
            .map(|(name, s)| (name.clone(), vec![s.accuracy, s.macro_f1, s.weighted_f1]))
            .collect();
        crate::report::plot::bar_chart(title, "score", &groups, &series)
    }

    /// Renders as an HTML table and a bar chart in Jupyter notebooks running the evcxr kernel.
    #[cfg(feature = "evcxr")]
    pub fn evcxr_display(&self) {
        let chart = self.to_svg("stitching").unwrap_or_else(|e| {
            format!(
                "<p>cannot draw the chart: {}</p>",
                crate::report::display::escape(&e.to_string())
            )
        });
        crate::report::display::emit_html(
            crate::report::display::Html::side_by_side(&[self.to_html(), chart]).as_str(),
        );
    }
}

impl crate::report::display::TableRow for StitchReport {
    /// One line per stitch: both checkpoints' own weighted F1, the stitch's, and the fraction kept.
    fn columns(&self) -> Vec<(String, String)> {
        let cell = |v| crate::report::display::cell(Some(v));
        vec![
            (
                "A's own weighted F1".into(),
                cell(self.encoder_checkpoint.weighted_f1),
            ),
            (
                "B's own weighted F1".into(),
                cell(self.decoder_checkpoint.weighted_f1),
            ),
            (
                "stitched weighted F1".into(),
                cell(self.stitched.weighted_f1),
            ),
            ("kept".into(), format!("{:.1}%", 100.0 * self.retained())),
        ]
    }
}

impl std::fmt::Display for StitchReport {
    /// The predicted compatibility first (made before any evaluation), then the measured scores.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(c) = &self.compatibility {
            writeln!(f, "{c}")?;
        }
        writeln!(
            f,
            "{:<22} {:>9} {:>9} {:>12} {:>6}",
            "", "accuracy", "macro F1", "weighted F1", "n"
        )?;
        for (name, s) in [
            ("encoder checkpoint (A)", &self.encoder_checkpoint),
            ("decoder checkpoint (B)", &self.decoder_checkpoint),
            ("stitched A → B", &self.stitched),
        ] {
            writeln!(
                f,
                "{name:<22} {:>9.4} {:>9.4} {:>12.4} {:>6}",
                s.accuracy, s.macro_f1, s.weighted_f1, s.n
            )?;
        }
        write!(
            f,
            "stitched keeps {:.1}% of B's weighted F1",
            100.0 * self.retained()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::display::Table;

    fn report() -> StitchReport {
        let s = |f: f64| Scores {
            accuracy: f,
            macro_f1: f,
            weighted_f1: f,
            n: 10,
        };
        StitchReport {
            compatibility: None,
            encoder_checkpoint: s(0.8),
            decoder_checkpoint: s(0.9),
            stitched: s(0.81),
        }
    }

    #[test]
    fn texts_with_identical_latents_share_the_first_text() -> Result<()> {
        let texts: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        // Rows 0, 2 and 4 are the same vector, and so are 1 and 3 (-0.0 is 0.0).
        let x = Tensor::new(
            &[
                [1.0f32, 2.0],
                [0.0, 1.0],
                [1.0, 2.0],
                [-0.0, 1.0],
                [1.0, 2.0],
            ],
            &Device::Cpu,
        )
        .context(|| "test".into())?;
        let keys = same_latents_same_text(&texts, &x)?;
        assert_eq!(keys, ["a", "b", "a", "b", "a"]);
        Ok(())
    }

    #[test]
    fn report_renders_as_tables() {
        let r = report();
        let html = r.to_html();
        assert!(
            html.contains("<td>stitched A → B</td><td>0.8100</td>"),
            "{html}"
        );
        assert!(html.ends_with("<p>stitched keeps <b>90.0%</b> of B's weighted F1</p>"));
        let t = Table::new("direction").with_row("L3 → L6", r);
        assert!(t.to_html().contains("<th>kept</th>") && t.to_html().contains("<td>90.0%</td>"));
    }

    #[cfg(feature = "plot")]
    #[test]
    fn report_draws_a_bar_chart() -> Result<()> {
        assert!(report().to_svg("stitch")?.contains("<svg"));
        Ok(())
    }
}
