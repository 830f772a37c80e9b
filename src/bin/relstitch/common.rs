//! Arguments shared by the commands that run an encoder.
//!
//! [`RunArgs`] (where and how fast) is taken by every command that runs an encoder;
//! [`ModelArgs`] (overrides of the model's pooling, normalisation, length, prefix or prompt and
//! truncation) only by the
//! commands that load a model by name (`embed`, `fit`, `bench`, `compare --model`). `predict` and
//! `eval` run the encoder a checkpoint recorded, with the settings it was trained with, so they do
//! not take [`ModelArgs`]: clap refuses those flags there instead of ignoring them.

use clap::Args;
use relstitch::device::DeviceChoice;
use relstitch::encoder::{EncoderOptions, Pooling, Precision};

/// Texts per forward pass when `--batch-size` is not given.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Where and how fast to run the encoder.
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Where to run: auto, cpu, cuda[:N] or metal[:N] (cuda/metal need a build with that feature).
    /// [default: auto]
    #[arg(long)]
    pub device: Option<String>,
    /// CPU threads, at least 1 and at most a few times the number of cores (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Texts per forward pass. On the CPU, texts are packed without padding up to the tokens of
    /// this many texts at the model's maximum length (32 × 256 = 8192 tokens for
    /// all-MiniLM-L6-v2). [default: 32]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Arithmetic of the encoder's linear layers: f32, bf16 or int8 (CPU only; `bench` takes a
    /// comma-separated list). [default: f32, or what a checkpoint recorded]
    #[arg(long, value_enum, value_delimiter = ',')]
    pub precision: Vec<Precision>,
}

impl RunArgs {
    /// Whether any of these flags was given.
    pub fn any_given(&self) -> bool {
        self.device.is_some()
            || self.threads.is_some()
            || self.batch_size.is_some()
            || !self.precision.is_empty()
    }

    /// The one precision asked for, if any (only `bench` takes several).
    pub fn precision(&self) -> anyhow::Result<Option<Precision>> {
        match self.precision.as_slice() {
            [] => Ok(None),
            [p] => Ok(Some(*p)),
            _ => anyhow::bail!("--precision takes one value here (only `bench` takes a list)"),
        }
    }

    /// The texts per forward pass.
    pub fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE)
    }

    /// The library options these arguments describe (and sets the thread count).
    pub fn options(&self, progress: bool) -> anyhow::Result<EncoderOptions> {
        if let Some(n) = self.threads {
            relstitch::device::set_num_threads(n)?;
        }
        let device: DeviceChoice = self.device.as_deref().unwrap_or("auto").parse()?;
        let mut options = EncoderOptions::default()
            .with_device(device)
            .with_batch_size(self.batch_size())
            .with_progress(progress);
        options.precision = self.precision()?;
        Ok(options)
    }
}

/// Overrides of the model's own settings, for commands that load a model by name.
#[derive(Args, Debug, Clone, Default)]
pub struct ModelArgs {
    /// Override the model's pooling (default: its 1_Pooling/config.json).
    #[arg(long, value_enum)]
    pub pooling: Option<Pooling>,
    /// Override the model's L2 normalisation (default: whether modules.json has Normalize).
    #[arg(long)]
    pub normalize: Option<bool>,
    /// Override the maximum tokens per text (default: sentence_bert_config.json max_seq_length).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Text prepended to every input, e.g. "query: " for multilingual-e5-small (default: the
    /// model's default prompt, if it declares one).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Prepend the model's prompt of this name (config_sentence_transformers.json), e.g. query
    /// or passage for multilingual-e5-small.
    #[arg(long, conflicts_with = "prefix")]
    pub prompt_name: Option<String>,
    /// Keep the first N dimensions of each vector (Matryoshka models), normalised again when the
    /// model normalises; recorded in the output's identity.
    #[arg(long, value_name = "N")]
    pub truncate_dim: Option<usize>,
}

impl ModelArgs {
    /// Whether any override was given.
    pub fn any_given(&self) -> bool {
        self.pooling.is_some()
            || self.normalize.is_some()
            || self.max_length.is_some()
            || self.prefix.is_some()
            || self.prompt_name.is_some()
            || self.truncate_dim.is_some()
    }

    /// `options` with these overrides.
    pub fn apply(&self, mut options: EncoderOptions) -> EncoderOptions {
        options.pooling = self.pooling;
        options.normalize = self.normalize;
        options.max_length = self.max_length;
        options.prefix = self.prefix.clone();
        options.prompt_name = self.prompt_name.clone();
        options.truncate_dim = self.truncate_dim;
        options
    }
}
