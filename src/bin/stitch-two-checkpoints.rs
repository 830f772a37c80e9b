//! `stitch-two-checkpoints`: run the decoder of one checkpoint on the encoder of another, zero-shot.

use clap::Parser;

/// Stitch two relstitch checkpoints: the encoder of A with the decoder of B.
///
/// Not implemented yet: decoders and checkpoints arrive with the stitching work (issue 4).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Checkpoint whose encoder is used.
    #[arg(long)]
    encoder_from: std::path::PathBuf,
    /// Checkpoint whose decoder (head) is used.
    #[arg(long)]
    decoder_from: std::path::PathBuf,
}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("stitching is not implemented yet (decoders and checkpoints are still to come)")
}
