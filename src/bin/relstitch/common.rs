//! Arguments shared by every command that runs an encoder.

use clap::{Args, ValueEnum};
use relstitch::device::DeviceChoice;
use relstitch::encoder::{EncoderOptions, Pooling};

/// Pooling names on the command line.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum PoolingArg {
    /// Mean of the token states.
    Mean,
    /// The first token's state.
    Cls,
    /// Element-wise maximum.
    Max,
    /// Sum divided by the square root of the length.
    MeanSqrtLen,
}

impl From<PoolingArg> for Pooling {
    fn from(p: PoolingArg) -> Self {
        match p {
            PoolingArg::Mean => Pooling::Mean,
            PoolingArg::Cls => Pooling::Cls,
            PoolingArg::Max => Pooling::Max,
            PoolingArg::MeanSqrtLen => Pooling::MeanSqrtLen,
        }
    }
}

/// How to run the encoder.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Where to run: auto, cpu, cuda[:N] or metal[:N] (cuda/metal need a build with that feature).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Override the model's pooling (default: its 1_Pooling/config.json).
    #[arg(long, value_enum)]
    pub pooling: Option<PoolingArg>,
    /// Override the model's L2 normalisation (default: whether modules.json has Normalize).
    #[arg(long)]
    pub normalize: Option<bool>,
    /// Override the maximum tokens per text (default: sentence_bert_config.json max_seq_length).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Text prepended to every input, e.g. "query: " for multilingual-e5-small.
    #[arg(long)]
    pub prefix: Option<String>,
}

impl RunArgs {
    /// The library options these arguments describe (and sets the thread count).
    pub fn options(&self, progress: bool) -> anyhow::Result<EncoderOptions> {
        if let Some(n) = self.threads {
            relstitch::device::set_num_threads(n);
        }
        let device: DeviceChoice = self.device.parse()?;
        let mut o = EncoderOptions::default()
            .with_device(device)
            .with_batch_size(self.batch_size)
            .with_progress(progress);
        o.pooling = self.pooling.map(Into::into);
        o.normalize = self.normalize;
        o.max_length = self.max_length;
        o.prefix = self.prefix.clone();
        Ok(o)
    }
}
