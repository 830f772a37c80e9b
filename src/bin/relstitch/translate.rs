//! `relstitch translate` (being written).

/// Placeholder arguments.
#[derive(clap::Args, Debug)]
pub struct TranslateArgs {}

pub fn run(_args: TranslateArgs) -> anyhow::Result<()> {
    anyhow::bail!("`relstitch translate` is not implemented yet")
}
