//! The migration map: fitted on parallel anchors, saved as a self-describing folder.
//!
//! ```text
//! MAP/
//!   map.json          format marker, both models' full identities (weights sha256, pooling,
//!                     normalisation, prefix, …), the method and its parameters, the training
//!                     options, the anchors' count and hash, the sha256 of every other file, and the
//!                     fit diagnostics (residual, adapter training, cross-validation on the anchors)
//!   anchors.jsonl     the anchor texts, so that anyone can embed them again
//!   map.safetensors   f32 tensors: `source_anchors` [n, d_a], `target_anchors` [n, d_b], and the
//!                     method's own: `forward.weight` [d_a, d_b] / `forward.bias` [1, d_b] (the
//!                     affine map y = x W + b), `inverse.weight` / `inverse.bias`, and for `mlp`
//!                     the scaling statistics and `adapter.*` weights, for `lowrank` the factors
//! ```
//!
//! Saving goes through [`crate::io`]'s folder rules: a locked staging folder swapped in
//! atomically, and only over an empty folder or another migration map.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::adapter::{self, AdapterReport};
use super::method::{AdapterTraining, MigrationMethod, MigrationOptions};
use crate::encoder::cache::EmbeddingCache;
use crate::encoder::{Encoder, EncoderOptions, ModelIdentity};
use crate::error::CandleContext;
use crate::space::anchors::AnchorSet;
use crate::space::projection::{ColumnStats, PreTransform, Projection, RelativeProjector};
use crate::space::translation::{LatentTranslator, TranslationMethod};
use crate::{Error, Result};

/// The `format` field of every map.json.
pub const FORMAT: &str = "relstitch-migration-map";
/// The current format version.
pub const FORMAT_VERSION: u32 = 1;

const CONFIG_FILE: &str = "map.json";
const ANCHORS_FILE: &str = "anchors.jsonl";
const TENSORS_FILE: &str = "map.safetensors";

/// What a migration map folder is, for the folder rules of [`crate::io::OwnedFolder`].
const FOLDER: crate::io::OwnedFolder<'static> = crate::io::OwnedFolder {
    what: "migration map",
    flag: "--out",
    marker_file: CONFIG_FILE,
    format: FORMAT,
    files: &[ANCHORS_FILE, TENSORS_FILE],
    declared: |_| Vec::new(),
};

/// At most this many anchors describe a vector in the per-vector confidence.
const CONFIDENCE_ANCHORS: usize = 512;
/// The nearest anchors whose migration quality makes a vector's confidence.
pub const CONFIDENCE_NEIGHBOURS: usize = 10;

/// The anchors of a map, as recorded in map.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapAnchors {
    /// The file holding their texts, inside the map.
    pub file: String,
    /// How many.
    pub count: usize,
    /// [`AnchorSet::hash`].
    pub sha256: String,
}

/// Cross-validation of the method on the anchors themselves: each fold's anchors are held out,
/// the map is fitted on the rest, and the held-out anchors embedded by B (queries) search the
/// held-out anchors migrated from A (the index).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvScores {
    /// Folds.
    pub folds: usize,
    /// The neighbourhood size used.
    pub k: usize,
    /// Mean share of a B-query's `k` nearest held-out anchors (embedded by B) that it also finds
    /// among the migrated held-out anchors: the predicted retained recall@k.
    pub neighbour_recall_at_k: f64,
    /// Share of B-queries whose own migrated anchor is their nearest.
    pub top1: f64,
    /// Relative residual on the held-out anchors (`‖f(x) − y‖ / ‖y − ȳ‖`; none for `relative`).
    pub relative_residual: Option<f64>,
}

/// How the fit went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitDiagnostics {
    /// Relative residual on the anchors the map was fitted on (none for `relative`).
    pub anchor_residual: Option<f64>,
    /// The adapter's training (`lowrank`, `mlp`).
    pub adapter: Option<AdapterReport>,
    /// Cross-validation on the anchors, when asked for.
    pub cross_validation: Option<CvScores>,
    /// Seconds spent fitting (cross-validation included).
    pub fit_seconds: f64,
}

/// A map's map.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapConfig {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The relstitch version that wrote it.
    pub relstitch_version: String,
    /// The method and its parameters.
    pub method: MigrationMethod,
    /// How the adapter was trained (`lowrank`, `mlp`).
    pub training: Option<AdapterTraining>,
    /// The old model (A): the vectors `apply` takes.
    pub source: ModelIdentity,
    /// The new model (B): the vectors `apply` produces (`apply --inverse` takes).
    pub target: ModelIdentity,
    /// The anchors.
    pub anchors: MapAnchors,
    /// Whether `apply --inverse` is possible.
    pub inverse: bool,
    /// The sha256 of every other file of the map, checked on load.
    pub files: BTreeMap<String, String>,
    /// How the fit went.
    pub diagnostics: FitDiagnostics,
}

/// An affine map `y = x W + b` in f32.
#[derive(Debug, Clone)]
struct Affine {
    /// `[d_in, d_out]`.
    w: Tensor,
    /// `[1, d_out]`.
    b: Tensor,
}

impl Affine {
    fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.w)?.broadcast_add(&self.b)
    }
}

/// Per-dimension standard-scaling statistics, as `[1, d]` rows.
#[derive(Debug, Clone)]
struct Scaling {
    mean: Tensor,
    scale: Tensor,
}

impl Scaling {
    fn fit(x: &Tensor) -> Result<Self> {
        let s = ColumnStats::fit(x)?;
        let d = s.mean.len();
        let row = |v: &[f64]| {
            let v: Vec<f32> = v.iter().map(|&a| a as f32).collect();
            Tensor::from_vec(v, (1, d), &Device::Cpu).context(|| "scaling".into())
        };
        Ok(Self {
            mean: row(&s.mean)?,
            scale: row(&s.scale)?,
        })
    }

    fn scale(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.broadcast_sub(&self.mean)?.broadcast_div(&self.scale)
    }

    fn unscale(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.broadcast_mul(&self.scale)?.broadcast_add(&self.mean)
    }
}

/// The fitted part of a map.
#[derive(Debug, Clone)]
enum Fitted {
    /// Procrustes, affine, linear, lowrank: one affine map each way.
    Affine {
        forward: Affine,
        inverse: Affine,
        /// The factors of a lowrank correction (kept for the reader; already folded in).
        factors: Option<(Tensor, Tensor)>,
    },
    /// Procrustes base plus a residual MLP in the scaled spaces.
    Mlp {
        base: Affine,
        source: Scaling,
        target: Scaling,
        weights: HashMap<String, Tensor>,
    },
    /// Both sides projected onto their own anchors.
    Relative {
        source: Box<RelativeProjector>,
        target: Box<RelativeProjector>,
    },
}

/// A fitted migration map from model A (source) to model B (target).
#[derive(Debug, Clone)]
pub struct MigrationMap {
    config: MapConfig,
    anchors: AnchorSet,
    /// `[n, d_a]` f32 CPU.
    source_anchors: Tensor,
    /// `[n, d_b]` f32 CPU.
    target_anchors: Tensor,
    fitted: Fitted,
    /// Cosine projector onto (at most [`CONFIDENCE_ANCHORS`]) anchors in A's space, and how well
    /// the map moves each of those anchors (cosine of its migrated vector with its B vector).
    confidence: Option<(RelativeProjector, Vec<f32>)>,
    dir: Option<PathBuf>,
}

/// Which way vectors go through a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A's vectors into B's space (move the index).
    Forward,
    /// B's vectors into A's space (the query-side adapter: new model, old index).
    Inverse,
}

impl MigrationMap {
    /// Embeds `anchors` (texts) with both encoders, through the embedding cache, and fits the map.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for fewer anchors than the method needs
    /// ([`MigrationMethod::min_anchors`]), anchors without texts, and the errors of
    /// [`fit_embedded`](Self::fit_embedded).
    pub fn fit(
        source: &Encoder,
        target: &Encoder,
        anchors: &AnchorSet,
        options: &MigrationOptions,
    ) -> Result<Self> {
        if let MigrationMethod::Unsupervised { .. } = options.method {
            return Err(Error::invalid(
                "method",
                "unsupervised fits no paired anchors: give one corpus sample per model (MigrationMap::fit_unpaired, or `migrate fit --method unsupervised --anchors A_TEXTS --to-corpus B_TEXTS`)",
            ));
        }
        let texts = anchors.texts()?;
        check_anchor_count(&options.method, texts.len(), source.dim(), None)?;
        let a = EmbeddingCache::for_identity(source.identity())?.embed(source, &texts)?;
        let b = EmbeddingCache::for_identity(target.identity())?.embed(target, &texts)?;
        Self::fit_embedded(
            source.identity().clone(),
            target.identity().clone(),
            anchors.clone(),
            &a,
            &b,
            options,
        )
    }

    /// Fits the map on anchors already embedded by both models (row `i` of both is anchor `i`).
    ///
    /// # Shapes
    /// - `source_anchors`: `[n, d_a]`, `target_anchors`: `[n, d_b]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for fewer anchors than the method needs, rows that disagree with
    /// the identities' widths or the anchor count, NaN, degenerate anchors.
    pub fn fit_embedded(
        source: ModelIdentity,
        target: ModelIdentity,
        anchors: AnchorSet,
        source_anchors: &Tensor,
        target_anchors: &Tensor,
        options: &MigrationOptions,
    ) -> Result<Self> {
        let start = std::time::Instant::now();
        options.method.validate()?;
        let xa = cpu_f32(source_anchors, "source anchors")?;
        let xb = cpu_f32(target_anchors, "target anchors")?;
        let (n, da) = xa.dims2().context(|| "source anchors".into())?;
        let (nb, db) = xb.dims2().context(|| "target anchors".into())?;
        if n != nb || n != anchors.len() {
            return Err(Error::invalid(
                "parallel anchors",
                format!(
                    "{} anchor samples, {n} source rows and {nb} target rows: row i of both must embed anchor i",
                    anchors.len()
                ),
            ));
        }
        if da != source.dim || db != target.dim {
            return Err(Error::invalid(
                "parallel anchors",
                format!(
                    "rows {da} and {db} wide, but the models are {} and {} wide",
                    source.dim, target.dim
                ),
            ));
        }
        check_anchor_count(&options.method, n, da, None)?;
        crate::io::check_finite(&xa, "source anchors")?;
        crate::io::check_finite(&xb, "target anchors")?;
        let (fitted, adapter) = fit_method(&options.method, &xa, &xb, options)?;
        let mut map = Self::assemble(
            MapConfig {
                format: FORMAT.into(),
                format_version: FORMAT_VERSION,
                relstitch_version: env!("CARGO_PKG_VERSION").into(),
                method: options.method,
                training: options
                    .method
                    .is_trained()
                    .then(|| options.training.clone()),
                source,
                target,
                anchors: MapAnchors {
                    file: ANCHORS_FILE.into(),
                    count: n,
                    sha256: anchors.hash(),
                },
                inverse: options.method.has_inverse(),
                files: BTreeMap::new(),
                diagnostics: FitDiagnostics {
                    anchor_residual: None,
                    adapter,
                    cross_validation: None,
                    fit_seconds: 0.0,
                },
            },
            anchors,
            xa,
            xb,
            fitted,
            None,
        )?;
        map.config.diagnostics.anchor_residual =
            map.residual(&map.source_anchors, &map.target_anchors)?;
        if options.cv_folds >= 2 {
            map.config.diagnostics.cross_validation = cross_validate(&map, options)?;
        }
        map.config.diagnostics.fit_seconds = start.elapsed().as_secs_f64();
        Ok(map)
    }

    /// Reads the anchor texts of `anchors` (`.txt`, one per line, or `.jsonl` with the text in
    /// `field`; repeated texts are kept once), loads both models and fits the map
    /// ([`fit`](Self::fit)).
    ///
    /// # Errors
    /// [`Error::Input`] naming the file when it holds no texts or fewer than the method needs; the
    /// errors of [`Encoder::load`] and [`fit`](Self::fit).
    pub fn fit_from_file(
        source: (&str, &EncoderOptions),
        target: (&str, &EncoderOptions),
        anchors: &Path,
        field: &str,
        options: &MigrationOptions,
    ) -> Result<Self> {
        options.method.validate()?;
        let mut seen = std::collections::HashSet::new();
        let texts: Vec<String> = crate::io::read_texts(anchors, field)?
            .into_iter()
            .filter(|t| seen.insert(t.clone()))
            .collect();
        let a = Encoder::load(source.0, source.1)?;
        check_anchor_count(&options.method, texts.len(), a.dim(), Some(anchors))?;
        let b = Encoder::load(target.0, target.1)?;
        Self::fit(&a, &b, &AnchorSet::from_texts(&texts)?, options)
    }

    /// [`fit_unpaired`](Self::fit_unpaired) from two text files (`.txt` or `.jsonl` with `field`),
    /// each embedded by its model through the embedding cache.
    ///
    /// # Errors
    /// [`Error::Input`] naming a file that holds no texts; the errors of
    /// [`fit_unpaired`](Self::fit_unpaired) and of the encoders.
    pub fn fit_unpaired_from_files(
        source: (&str, &EncoderOptions),
        target: (&str, &EncoderOptions),
        source_texts: &Path,
        target_texts: &Path,
        field: &str,
        options: &MigrationOptions,
    ) -> Result<Self> {
        let dedup = |p: &Path| -> Result<Vec<String>> {
            let mut seen = std::collections::HashSet::new();
            Ok(crate::io::read_texts(p, field)?
                .into_iter()
                .filter(|t| seen.insert(t.clone()))
                .collect())
        };
        let (ta, tb) = (dedup(source_texts)?, dedup(target_texts)?);
        let a = Encoder::load(source.0, source.1)?;
        let b = Encoder::load(target.0, target.1)?;
        let xa = EmbeddingCache::for_identity(a.identity())?.embed(&a, &ta)?;
        let xb = EmbeddingCache::for_identity(b.identity())?.embed(&b, &tb)?;
        Self::fit_unpaired(
            a.identity().clone(),
            b.identity().clone(),
            &ta,
            &xa,
            &xb,
            options,
        )
    }

    /// Fits a map with **no paired texts**: `source_texts` embedded by A (`xa`) and another
    /// sample of the same kind of corpus embedded by B (`xb`) are matched by
    /// [`MigrationMethod::Unsupervised`]'s procedure; the map is Procrustes on the pseudo-pairs
    /// found, whose A texts become the map's anchors (and their matched B vectors its target
    /// anchors).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for another method, fewer than 128 texts on a side, NaN or
    /// infinite values, widths that disagree with the identities, or no pairs found.
    ///
    /// # Shapes
    /// - `xa`: `[source_texts.len(), d_a]`, `xb`: `[m, d_b]`.
    pub fn fit_unpaired(
        source: ModelIdentity,
        target: ModelIdentity,
        source_texts: &[String],
        xa: &Tensor,
        xb: &Tensor,
        options: &MigrationOptions,
    ) -> Result<Self> {
        let MigrationMethod::Unsupervised { rounds } = options.method else {
            return Err(Error::invalid(
                "method",
                format!(
                    "{} needs paired anchors: use MigrationMap::fit",
                    options.method.name()
                ),
            ));
        };
        let xa = cpu_f32(xa, "source corpus")?;
        let xb = cpu_f32(xb, "target corpus")?;
        crate::io::check_finite(&xa, "source corpus")?;
        crate::io::check_finite(&xb, "target corpus")?;
        if xa.dim(0).context(|| "source corpus".into())? != source_texts.len() {
            return Err(Error::invalid(
                "source corpus",
                "one text per row of the source vectors is needed",
            ));
        }
        let pairs = super::unpaired::match_spaces(&xa, &xb, rounds)?;
        let rows_a: Vec<usize> = pairs.iter().map(|p| p.0).collect();
        let rows_b: Vec<usize> = pairs.iter().map(|p| p.1).collect();
        let texts: Vec<String> = rows_a.iter().map(|&i| source_texts[i].clone()).collect();
        let take = |t: &Tensor, r: &[usize]| crate::space::anchors::gather_rows(t, r, "corpus");
        Self::fit_embedded(
            source,
            target,
            AnchorSet::from_texts(&texts)?,
            &take(&xa, &rows_a)?,
            &take(&xb, &rows_b)?,
            &MigrationOptions {
                cv_folds: 0,
                ..options.clone()
            },
        )
    }

    fn assemble(
        config: MapConfig,
        anchors: AnchorSet,
        source_anchors: Tensor,
        target_anchors: Tensor,
        fitted: Fitted,
        dir: Option<PathBuf>,
    ) -> Result<Self> {
        let m = source_anchors
            .dim(0)
            .context(|| "anchors".into())?
            .min(CONFIDENCE_ANCHORS);
        let head = |t: &Tensor| t.narrow(0, 0, m).context(|| "anchors".into());
        let mut map = Self {
            config,
            anchors,
            source_anchors,
            target_anchors,
            fitted,
            confidence: None,
            dir,
        };
        if !matches!(map.fitted, Fitted::Relative { .. }) {
            let (xa, xb) = (head(&map.source_anchors)?, head(&map.target_anchors)?);
            let quality = super::eval::row_cosines(&map.forward(&xa)?, &xb)?;
            let projector = RelativeProjector::fit(&xa, Projection::Cosine, PreTransform::NONE)?;
            map.confidence = Some((projector, quality));
        }
        Ok(map)
    }

    /// What map.json holds.
    pub fn config(&self) -> &MapConfig {
        &self.config
    }

    /// The method.
    pub fn method(&self) -> MigrationMethod {
        self.config.method
    }

    /// The anchors.
    pub fn anchors(&self) -> &AnchorSet {
        &self.anchors
    }

    /// The folder it was loaded from or saved to.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The identity of the vectors `direction` takes.
    pub fn input_identity(&self, direction: Direction) -> &ModelIdentity {
        match direction {
            Direction::Forward => &self.config.source,
            Direction::Inverse => &self.config.target,
        }
    }

    /// The width of what `direction` produces.
    pub fn output_dim(&self, direction: Direction) -> usize {
        match (&self.fitted, direction) {
            (Fitted::Relative { .. }, _) => self.config.anchors.count,
            (_, Direction::Forward) => self.config.target.dim,
            (_, Direction::Inverse) => self.config.source.dim,
        }
    }

    /// Moves A's vectors into B's space (for `relative`: into the shared relative space).
    ///
    /// # Shapes
    /// - `x`: `[m, d_a]`; returns `[m, d_b]` (`relative`: `[m, anchors]`) f32 on the CPU.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `x` is not as wide as the source model.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.map(x, Direction::Forward)
    }

    /// Brings B's vectors into A's space (for `relative`: into the shared relative space).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `mlp`, which has no inverse.
    ///
    /// # Shapes
    /// - `y`: `[m, d_b]`; returns `[m, d_a]` (`relative`: `[m, anchors]`) f32 on the CPU.
    pub fn inverse(&self, y: &Tensor) -> Result<Tensor> {
        self.map(y, Direction::Inverse)
    }

    /// [`forward`](Self::forward) or [`inverse`](Self::inverse).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a width other than the input side's, or `Inverse` with `mlp`.
    pub fn map(&self, x: &Tensor, direction: Direction) -> Result<Tensor> {
        let want = self.input_identity(direction).dim;
        let x = cpu_f32(x, "vectors to migrate")?;
        let d = x.dim(1).context(|| "vectors to migrate".into())?;
        if d != want {
            return Err(Error::invalid(
                "vectors to migrate",
                format!(
                    "{d} wide, but the map's {} model is {want} wide",
                    side(direction)
                ),
            ));
        }
        let ctx = || format!("migrating vectors ({})", self.config.method.name());
        match (&self.fitted, direction) {
            (Fitted::Affine { forward, .. }, Direction::Forward) => forward.apply(&x).context(ctx),
            (Fitted::Affine { inverse, .. }, Direction::Inverse) => inverse.apply(&x).context(ctx),
            (
                Fitted::Mlp {
                    base,
                    source,
                    target,
                    weights,
                },
                Direction::Forward,
            ) => {
                let y0 = base.apply(&x).context(ctx)?;
                let xs = source.scale(&x).context(ctx)?;
                let y0s = target.scale(&y0).context(ctx)?;
                let ys = adapter::forward(&self.config.method, weights, &xs, &y0s).context(ctx)?;
                target.unscale(&ys).context(ctx)
            }
            (Fitted::Mlp { .. }, Direction::Inverse) => Err(no_inverse(&self.config.method)),
            (Fitted::Relative { source, .. }, Direction::Forward) => source.project(&x),
            (Fitted::Relative { target, .. }, Direction::Inverse) => target.project(&x),
        }
    }

    /// B's vectors in the space migrated documents live in: themselves, or for `relative` their
    /// relative vectors (what a B-query is compared with in the migrated index).
    ///
    /// # Shapes
    /// - `y`: `[m, d_b]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `y` is not a matrix as wide as the target model.
    pub fn target_query(&self, y: &Tensor) -> Result<Tensor> {
        match &self.fitted {
            Fitted::Relative { target, .. } => target.project(y),
            _ => cpu_f32(y, "queries"),
        }
    }

    /// Per-vector confidence of a forward migration: how well the map moves the anchors nearest to
    /// `x` in A's space (the mean cosine between the migrated and the true B vector of its
    /// `CONFIDENCE_NEIGHBOURS` (10) nearest anchors among the first 512). A vector in a region the map
    /// moves well scores near 1; one among badly moved anchors scores low, and re-embedding it is
    /// worth most.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `relative` (it translates nothing).
    ///
    /// # Shapes
    /// - `x`: `[m, d_a]`; returns `m` values in `[-1, 1]`.
    pub fn confidence(&self, x: &Tensor) -> Result<Vec<f32>> {
        let Some((projector, quality)) = &self.confidence else {
            return Err(Error::invalid(
                "confidence",
                "the relative method keeps no translation to be confident about; use another --method",
            ));
        };
        let sims = projector
            .project(x)?
            .to_vec2::<f32>()
            .context(|| "computing the confidence".into())?;
        let k = CONFIDENCE_NEIGHBOURS.min(quality.len());
        Ok(sims
            .iter()
            .map(|row| {
                let mut idx: Vec<usize> = (0..row.len()).collect();
                idx.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
                idx[..k].iter().map(|&j| quality[j]).sum::<f32>() / k as f32
            })
            .collect())
    }

    /// The relative residual `‖f(x) − y‖ / ‖y − ȳ‖` on parallel vectors (none for `relative`).
    fn residual(&self, x: &Tensor, y: &Tensor) -> Result<Option<f64>> {
        if matches!(self.fitted, Fitted::Relative { .. }) {
            return Ok(None);
        }
        relative_residual(&self.forward(x)?, y).map(Some)
    }

    /// Writes the map to `dir` atomically (see the module documentation for the files).
    ///
    /// # Errors
    /// Refuses (with [`Error::InvalidArgument`]) to replace anything that is not provably a
    /// relstitch migration map: an existing `dir` must be empty or a map folder holding nothing but
    /// map files. Also refuses the folder the map was loaded from.
    pub fn save(&mut self, dir: &Path) -> Result<()> {
        let inputs: Vec<&Path> = self.dir.iter().map(PathBuf::as_path).collect();
        let mut config = self.config.clone();
        FOLDER.save(dir, &inputs, "migration-map-staged", |new| {
            self.write_files(new, &mut config)
        })?;
        self.config = config;
        self.dir = Some(dir.to_path_buf());
        tracing::info!(dir = %dir.display(), "migration map saved");
        Ok(())
    }

    /// Checks, before any work, that [`save`](Self::save) may write a map to `dir`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming why `dir` may not be replaced.
    pub fn check_destination(dir: &Path) -> Result<()> {
        FOLDER.check_replaceable(dir)
    }

    fn write_files(&self, dir: &Path, config: &mut MapConfig) -> Result<()> {
        self.anchors.save_jsonl(&dir.join(ANCHORS_FILE))?;
        let mut tensors: Vec<(String, Tensor)> = vec![
            ("source_anchors".into(), self.source_anchors.clone()),
            ("target_anchors".into(), self.target_anchors.clone()),
        ];
        match &self.fitted {
            Fitted::Affine {
                forward,
                inverse,
                factors,
            } => {
                tensors.push(("forward.weight".into(), forward.w.clone()));
                tensors.push(("forward.bias".into(), forward.b.clone()));
                tensors.push(("inverse.weight".into(), inverse.w.clone()));
                tensors.push(("inverse.bias".into(), inverse.b.clone()));
                if let Some((u, v)) = factors {
                    tensors.push(("lowrank.u".into(), u.clone()));
                    tensors.push(("lowrank.v".into(), v.clone()));
                }
            }
            Fitted::Mlp {
                base,
                source,
                target,
                weights,
            } => {
                tensors.push(("forward.weight".into(), base.w.clone()));
                tensors.push(("forward.bias".into(), base.b.clone()));
                tensors.push(("source_mean".into(), source.mean.clone()));
                tensors.push(("source_scale".into(), source.scale.clone()));
                tensors.push(("target_mean".into(), target.mean.clone()));
                tensors.push(("target_scale".into(), target.scale.clone()));
                for (k, v) in weights {
                    tensors.push((format!("adapter.{k}"), v.clone()));
                }
            }
            Fitted::Relative { .. } => {}
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let meta = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("method".to_string(), self.config.method.name().to_string()),
            (
                "source_weights_sha256".to_string(),
                self.config.source.weights_sha256.clone(),
            ),
            (
                "target_weights_sha256".to_string(),
                self.config.target.weights_sha256.clone(),
            ),
            (
                "anchors_sha256".to_string(),
                self.config.anchors.sha256.clone(),
            ),
        ]);
        crate::io::write_safetensors(&dir.join(TENSORS_FILE), &refs, &meta)?;
        config.files = BTreeMap::new();
        for f in [ANCHORS_FILE, TENSORS_FILE] {
            config
                .files
                .insert(f.to_string(), crate::io::sha256_file(&dir.join(f))?);
        }
        let json = serde_json::to_vec_pretty(&config)
            .map_err(|e| Error::invalid("migration map", e.to_string()))?;
        crate::io::write_atomic(&dir.join(CONFIG_FILE), &json)
    }

    /// Reads and checks a map folder: the format marker, the sha256 of every file, the anchors'
    /// count and hash, and every tensor's shape against the recorded models.
    ///
    /// # Errors
    /// [`Error::Input`] when `dir` is not a migration map; [`Error::Json`] when map.json is
    /// unreadable (truncated, say); [`Error::Integrity`] naming the file when a file was truncated,
    /// edited or replaced after the map was saved.
    pub fn load(dir: &Path) -> Result<Self> {
        let refit = "re-run `relstitch migrate fit` to write the map again";
        let integrity = |file: &str, reason: String| Error::Integrity {
            path: dir.join(file),
            reason: format!("{reason}; {refit}"),
        };
        if !dir.is_dir() {
            return Err(Error::Input {
                path: dir.to_path_buf(),
                line: None,
                reason: "not a folder; a migration map is the folder `relstitch migrate fit --out` wrote".into(),
            });
        }
        let cfg_path = dir.join(CONFIG_FILE);
        let text = std::fs::read(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let config: MapConfig = serde_json::from_slice(&text).map_err(|source| Error::Json {
            path: cfg_path.clone(),
            hint: format!("not a relstitch migration map, or a damaged (truncated?) one; {refit}"),
            source,
        })?;
        if config.format != FORMAT {
            return Err(Error::Input {
                path: cfg_path,
                line: None,
                reason: format!("format is `{}`, expected `{FORMAT}`", config.format),
            });
        }
        if config.format_version > FORMAT_VERSION {
            return Err(Error::Input {
                path: cfg_path,
                line: None,
                reason: format!(
                    "format version {} is newer than this relstitch reads ({FORMAT_VERSION}); upgrade relstitch",
                    config.format_version
                ),
            });
        }
        for f in [ANCHORS_FILE, TENSORS_FILE] {
            let Some(expected) = config.files.get(f) else {
                return Err(integrity(CONFIG_FILE, format!("records no sha256 for {f}")));
            };
            let path = dir.join(f);
            let actual = crate::io::sha256_file(&path)?;
            if &actual != expected {
                return Err(integrity(
                    f,
                    format!(
                        "its sha256 is {} but map.json recorded {} when the map was saved: the file was truncated, edited or replaced",
                        &actual[..12],
                        expected.chars().take(12).collect::<String>()
                    ),
                ));
            }
        }
        let anchors = AnchorSet::load_jsonl(&dir.join(ANCHORS_FILE))?;
        if anchors.len() != config.anchors.count || anchors.hash() != config.anchors.sha256 {
            return Err(integrity(
                ANCHORS_FILE,
                format!(
                    "holds {} anchors (hash {}) where map.json says {} ({})",
                    anchors.len(),
                    &anchors.hash()[..12],
                    config.anchors.count,
                    config.anchors.sha256.chars().take(12).collect::<String>()
                ),
            ));
        }
        let file = crate::io::SafetensorsFile::read(&dir.join(TENSORS_FILE), &Device::Cpu)?;
        for (key, want) in [
            ("source_weights_sha256", &config.source.weights_sha256),
            ("target_weights_sha256", &config.target.weights_sha256),
            ("anchors_sha256", &config.anchors.sha256),
        ] {
            if file.metadata.get(key) != Some(want) {
                return Err(integrity(
                    CONFIG_FILE,
                    format!("its `{key}` disagrees with what map.safetensors recorded: map.json was edited or mixed with another map's files"),
                ));
            }
        }
        let (n, da, db) = (config.anchors.count, config.source.dim, config.target.dim);
        let tensor = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = file
                .tensors
                .get(name)
                .ok_or_else(|| integrity(TENSORS_FILE, format!("has no tensor `{name}`")))?;
            if t.dims() != shape {
                return Err(integrity(
                    TENSORS_FILE,
                    format!(
                        "tensor `{name}` has shape {:?}, expected {shape:?}",
                        t.dims()
                    ),
                ));
            }
            let t = t
                .to_dtype(DType::F32)
                .context(|| format!("reading `{name}`"))?;
            crate::io::check_finite(
                &t,
                &format!("tensor `{name}` of {}", dir.join(TENSORS_FILE).display()),
            )?;
            Ok(t)
        };
        let xa = tensor("source_anchors", &[n, da])?;
        let xb = tensor("target_anchors", &[n, db])?;
        let affine = |prefix: &str, din: usize, dout: usize| -> Result<Affine> {
            Ok(Affine {
                w: tensor(&format!("{prefix}.weight"), &[din, dout])?,
                b: tensor(&format!("{prefix}.bias"), &[1, dout])?,
            })
        };
        let fitted = match config.method {
            MigrationMethod::Procrustes
            | MigrationMethod::Affine
            | MigrationMethod::Linear
            | MigrationMethod::Unsupervised { .. } => Fitted::Affine {
                forward: affine("forward", da, db)?,
                inverse: affine("inverse", db, da)?,
                factors: None,
            },
            MigrationMethod::LowRank { rank } => Fitted::Affine {
                forward: affine("forward", da, db)?,
                inverse: affine("inverse", db, da)?,
                factors: Some((
                    tensor("lowrank.u", &[da, rank])?,
                    tensor("lowrank.v", &[rank, db])?,
                )),
            },
            MigrationMethod::Mlp { hidden } => {
                let mut weights = HashMap::new();
                for (k, shape) in [
                    ("w1", vec![da, hidden]),
                    ("b1", vec![1, hidden]),
                    ("w2", vec![hidden, db]),
                    ("b2", vec![1, db]),
                ] {
                    weights.insert(k.to_string(), tensor(&format!("adapter.{k}"), &shape)?);
                }
                Fitted::Mlp {
                    base: affine("forward", da, db)?,
                    source: Scaling {
                        mean: tensor("source_mean", &[1, da])?,
                        scale: tensor("source_scale", &[1, da])?,
                    },
                    target: Scaling {
                        mean: tensor("target_mean", &[1, db])?,
                        scale: tensor("target_scale", &[1, db])?,
                    },
                    weights,
                }
            }
            MigrationMethod::Relative { center } => relative_projectors(&xa, &xb, center)?,
        };
        Self::assemble(config, anchors, xa, xb, fitted, Some(dir.to_path_buf()))
    }
}

fn side(direction: Direction) -> &'static str {
    match direction {
        Direction::Forward => "source",
        Direction::Inverse => "target",
    }
}

pub(crate) fn no_inverse(method: &MigrationMethod) -> Error {
    Error::invalid(
        "--inverse",
        format!(
            "the {} map is non-linear and has no inverse; fit a map the other way \
             (`relstitch migrate fit --from B --to A`), or use procrustes, affine, linear, lowrank or relative",
            method.name()
        ),
    )
}

/// Fails when `n` anchors are fewer than `method` needs for a source `da` wide.
pub(crate) fn check_anchor_count(
    method: &MigrationMethod,
    n: usize,
    da: usize,
    file: Option<&Path>,
) -> Result<()> {
    let need = method.min_anchors(da);
    if n >= need {
        return Ok(());
    }
    let why = match method {
        MigrationMethod::Affine | MigrationMethod::Linear => format!(
            "a least-squares {} map from a {da}-dimensional space needs at least {need}",
            method.name()
        ),
        _ => format!("the {} method needs at least {need}", method.name()),
    };
    let reason = format!(
        "{n} anchor(s), but {why}; give more anchor texts, or use --method procrustes or lowrank, which work with few"
    );
    Err(match file {
        Some(path) => Error::Input {
            path: path.to_path_buf(),
            line: None,
            reason,
        },
        None => Error::invalid("anchors", reason),
    })
}

/// The closed-form translation `m` from `x` to `y`, fused into one f32 affine map.
fn translation(x: &Tensor, y: &Tensor, m: TranslationMethod) -> Result<Affine> {
    let ctx = || format!("fitting the {} map", m.name());
    let t = LatentTranslator::fit(x, y, m)?;
    let (w, b) = t.fused();
    Ok(Affine {
        w: w.to_dtype(DType::F32).context(ctx)?,
        b: b.to_dtype(DType::F32).context(ctx)?,
    })
}

/// `x` as a contiguous f32 matrix on the CPU.
fn cpu_f32(x: &Tensor, what: &str) -> Result<Tensor> {
    let x = crate::space::tensor::as_f32_matrix(x, what)?;
    x.to_device(&Device::Cpu)
        .and_then(|x| x.contiguous())
        .context(|| format!("reading the {what}"))
}

fn relative_projectors(xa: &Tensor, xb: &Tensor, center: bool) -> Result<Fitted> {
    let pre = PreTransform::NONE.with_center(center);
    Ok(Fitted::Relative {
        source: Box::new(RelativeProjector::fit(xa, Projection::Cosine, pre)?),
        target: Box::new(RelativeProjector::fit(xb, Projection::Cosine, pre)?),
    })
}

/// Fits `method` on the anchors; returns the fitted part and the adapter's training report.
fn fit_method(
    method: &MigrationMethod,
    xa: &Tensor,
    xb: &Tensor,
    options: &MigrationOptions,
) -> Result<(Fitted, Option<AdapterReport>)> {
    let ctx = || format!("fitting the {} map", method.name());
    let translator = |m: TranslationMethod| translation(xa, xb, m);
    // The inverse is fitted the other way on the same anchors by the same closed form: for
    // Procrustes (and an unsupervised map, and lowrank's Procrustes base) that is the exact
    // inverse between the scaled spaces (the transposed rotation); for affine and linear it is the
    // least-squares map from B to A. Pseudo-inverting the fused forward map instead fails: real
    // encoders have dimensions that barely vary over the anchors, standard scaling gives them
    // enormous rows, and the pseudo-inverse's rank tolerance then discards everything else.
    let reverse = |m: TranslationMethod| translation(xb, xa, m);
    let affine =
        |forward: Affine, inverse: Affine, factors| -> Result<(Fitted, Option<AdapterReport>)> {
            Ok((
                Fitted::Affine {
                    forward,
                    inverse,
                    factors,
                },
                None,
            ))
        };
    match *method {
        // Unsupervised maps are Procrustes maps on pseudo-pairs (see `fit_unpaired`).
        MigrationMethod::Procrustes | MigrationMethod::Unsupervised { .. } => {
            let m = TranslationMethod::Procrustes;
            affine(translator(m)?, reverse(m)?, None)
        }
        MigrationMethod::Affine => {
            let m = TranslationMethod::Affine;
            affine(translator(m)?, reverse(m)?, None)
        }
        MigrationMethod::Linear => {
            let m = TranslationMethod::Linear;
            affine(translator(m)?, reverse(m)?, None)
        }
        MigrationMethod::Relative { center } => Ok((relative_projectors(xa, xb, center)?, None)),
        MigrationMethod::LowRank { .. } | MigrationMethod::Mlp { .. } => {
            let base = translator(TranslationMethod::Procrustes)?;
            let source = Scaling::fit(xa)?;
            let target = Scaling::fit(xb)?;
            let xs = source.scale(xa).context(ctx)?;
            let y0s = base.apply(xa).and_then(|y| target.scale(&y)).context(ctx)?;
            let ys = target.scale(xb).context(ctx)?;
            let (weights, report) =
                adapter::train(method, &xs, &y0s, &ys, &options.training, options.progress)?;
            if let MigrationMethod::Mlp { .. } = method {
                return Ok((
                    Fitted::Mlp {
                        base,
                        source,
                        target,
                        weights,
                    },
                    Some(report),
                ));
            }
            // Fold the correction into the affine map: y = y0 + ((x − μs)/σs) U V ⊙ σt.
            let get = |k: &str| {
                weights
                    .get(k)
                    .cloned()
                    .ok_or_else(|| Error::invalid("adapter", format!("weight `{k}` is missing")))
            };
            let (u, v) = (get("u")?, get("v")?);
            let uv = u.matmul(&v).context(ctx)?; // [ds, dt]
            let inv_scale = source.scale.t().and_then(|s| s.recip()).context(ctx)?; // [ds, 1]
            let delta = uv
                .broadcast_mul(&inv_scale)
                .and_then(|d| d.broadcast_mul(&target.scale))
                .context(ctx)?;
            let w = (&base.w + &delta).context(ctx)?;
            let b = source
                .mean
                .matmul(&delta)
                .and_then(|s| &base.b - s)
                .context(ctx)?;
            // lowrank's inverse is its Procrustes base's (the correction is not inverted).
            let (fitted, _) = affine(
                Affine { w, b },
                reverse(TranslationMethod::Procrustes)?,
                Some((u, v)),
            )?;
            Ok((fitted, Some(report)))
        }
    }
}

/// `‖y_hat − y‖_F / ‖y − ȳ‖_F`.
pub(crate) fn relative_residual(y_hat: &Tensor, y: &Tensor) -> Result<f64> {
    let ctx = || "measuring the residual".to_string();
    let num = (y_hat - y)
        .and_then(|d| d.sqr()?.sum_all()?.to_scalar::<f32>())
        .context(ctx)?;
    let den = y
        .broadcast_sub(&y.mean_keepdim(0).context(ctx)?)
        .and_then(|d| d.sqr()?.sum_all()?.to_scalar::<f32>())
        .context(ctx)?;
    Ok(f64::from(num / den.max(f32::MIN_POSITIVE)).sqrt())
}

/// `folds`-fold cross-validation of the map's method on its own anchors (none when a fold's
/// training part is below the method's minimum).
fn cross_validate(map: &MigrationMap, options: &MigrationOptions) -> Result<Option<CvScores>> {
    let n = map.config.anchors.count;
    let folds = options.cv_folds.min(n);
    let fold_len = n / folds;
    let method = map.config.method;
    if fold_len < 3 || n - fold_len < method.min_anchors(map.config.source.dim) {
        return Ok(None);
    }
    let k = options.k.min(fold_len - 1).max(1);
    let mut order: Vec<usize> = (0..n).collect();
    {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(
            options.training.seed ^ 0xc5,
        ));
    }
    let take = |t: &Tensor, rows: &[usize]| crate::space::anchors::gather_rows(t, rows, "anchors");
    let (mut recall, mut top1, mut resid, mut count) = (0.0, 0.0, 0.0, 0usize);
    let inner = MigrationOptions {
        cv_folds: 0,
        progress: false,
        ..options.clone()
    };
    for f in 0..folds {
        let test: Vec<usize> = order[f * fold_len..(f + 1) * fold_len].to_vec();
        let train: Vec<usize> = order
            .iter()
            .copied()
            .filter(|i| !test.contains(i))
            .collect();
        let (xa, xb) = (
            take(&map.source_anchors, &train)?,
            take(&map.target_anchors, &train)?,
        );
        let (fitted, _) = fit_method(&method, &xa, &xb, &inner)?;
        let sub = MigrationMap::assemble(
            map.config.clone(),
            map.anchors.clone(),
            xa,
            xb,
            fitted,
            None,
        )?;
        let (ta, tb) = (
            take(&map.source_anchors, &test)?,
            take(&map.target_anchors, &test)?,
        );
        let migrated = sub.forward(&ta)?;
        let queries = sub.target_query(&tb)?;
        let (r, t) = crate::migrate::eval::neighbour_recall(&queries, &migrated, &tb, k)?;
        recall += r * test.len() as f64;
        top1 += t * test.len() as f64;
        if let Some(res) = sub.residual(&ta, &tb)? {
            resid += res;
        }
        count += test.len();
    }
    Ok(Some(CvScores {
        folds,
        k,
        neighbour_recall_at_k: recall / count as f64,
        top1: top1 / count as f64,
        relative_residual: (!matches!(method, MigrationMethod::Relative { .. }))
            .then(|| resid / folds as f64),
    }))
}
