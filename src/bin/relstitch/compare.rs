//! `relstitch compare` (being written).

/// Placeholder arguments.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {}

pub fn run(_args: CompareArgs) -> anyhow::Result<()> {
    anyhow::bail!("`relstitch compare` is not implemented yet")
}
