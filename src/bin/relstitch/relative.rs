//! `relstitch relative` (being written).

/// Placeholder arguments.
#[derive(clap::Args, Debug)]
pub struct RelativeArgs {}

pub fn run(_args: RelativeArgs) -> anyhow::Result<()> {
    anyhow::bail!("`relstitch relative` is not implemented yet")
}
