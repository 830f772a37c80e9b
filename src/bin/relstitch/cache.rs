//! `relstitch cache`: check and clean the embedding cache.

use clap::{Args, Subcommand};
use relstitch::encoder::cache;
use relstitch::hub::fetch::home_dir;

/// Check and clean the embedding cache ($RELSTITCH_HOME/embeddings).
///
/// `fit` and the stitching pipelines keep every text's embedding there, one folder per encoder
/// configuration (its key.json names the model). Each shard records a digest of its rows and the
/// weights sha256 it was computed with; a shard that does not match is deleted and recomputed when
/// it is next read, and `cache verify` finds them all at once.
///
/// Examples:
///
/// `relstitch cache verify` prints, per key, the model and its shards ok and bad; exit status 1 if
/// any is bad.
///
/// `relstitch cache verify --fix` also deletes the bad shards (they are recomputed when next needed).
///
/// `relstitch cache clear --model all-MiniLM-L6-v2` removes one model's cached embeddings;
/// `relstitch cache clear` removes them all.
#[derive(Args, Debug)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// What to do with the cache.
#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Check every shard of every key; exit status 1 if bad shards remain.
    ///
    /// A shard is good when it is readable, matches its digest and was computed with its key's
    /// weights. Prints `ok`/`bad` counts per key and each bad shard.
    ///
    /// Example: `relstitch cache verify --fix`
    Verify {
        /// Delete the bad shards (and temporaries left by killed runs).
        #[arg(long)]
        fix: bool,
    },
    /// Remove cached embeddings: all of them, or only those of one model.
    ///
    /// Example: `relstitch cache clear --model all-mpnet-base-v2`
    Clear {
        /// Only this model's keys: a catalog name, a model folder, the name it was embedded with,
        /// or its weights sha256.
        #[arg(long, short)]
        model: Option<String>,
    },
}

pub fn run(args: CacheArgs) -> anyhow::Result<()> {
    let home = home_dir()?;
    match args.command {
        CacheCommand::Verify { fix } => {
            let reports = cache::verify_all(&home, fix)?;
            let mut remaining = 0usize;
            for r in &reports {
                let key = r
                    .dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                println!(
                    "{}  {:<26} ok {:>4}  bad {:>4}",
                    key.chars().take(12).collect::<String>(),
                    r.model_name(),
                    r.ok,
                    r.bad.len()
                );
                if let Some(p) = &r.key_problem {
                    println!("    key: {p}");
                }
                for b in &r.bad {
                    let state = if b.deleted { "deleted" } else { "bad" };
                    println!("    {state} {}: {}", b.path.display(), b.reason);
                    remaining += usize::from(!b.deleted);
                }
            }
            let shards: usize = reports.iter().map(|r| r.ok + r.bad.len()).sum();
            println!(
                "{} keys, {shards} shards under {}",
                reports.len(),
                home.join("embeddings").display()
            );
            if remaining > 0 {
                anyhow::bail!(
                    "{remaining} bad shard(s); `relstitch cache verify --fix` deletes them (they are recomputed when next needed)"
                );
            }
        }
        CacheCommand::Clear { model } => {
            let cleared = cache::clear(&home, model.as_deref())?;
            match &model {
                Some(m) => println!("removed {} key(s) of {m}", cleared.keys),
                None => println!("removed the embedding cache ({} key(s))", cleared.keys),
            }
            if cleared.unattributed_kept > 0 {
                println!(
                    "kept {} key(s) without key.json (written by an older relstitch); `relstitch cache clear` removes them",
                    cleared.unattributed_kept
                );
            }
        }
    }
    Ok(())
}
