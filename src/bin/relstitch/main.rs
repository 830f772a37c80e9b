//! The `relstitch` command line: thin wrappers over the library.

mod bench;
mod cache;
mod common;
mod compare;
mod data;
mod embed;
mod fetch;
mod fit;
mod logging;
mod migrate;
mod predict;
mod profile;
mod relative;
mod stitch;
mod translate;

use clap::{Parser, Subcommand};

/// Relative representations and zero-shot model stitching on candle.
///
/// Models are named everywhere by a local folder, a catalog name (see `relstitch fetch --list`),
/// or a Hugging Face id already in the local Hugging Face cache.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log more (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    // Variants without a doc comment take their help (summary and long help) from their Args.
    Fetch(fetch::FetchArgs),
    Embed(embed::EmbedArgs),
    Merge(embed::MergeArgs),
    Bench(bench::BenchArgs),
    Fit(fit::FitArgs),
    Predict(predict::PredictArgs),
    Eval(predict::EvalArgs),
    /// Project absolute embeddings onto anchors: relative representations.
    Relative(relative::RelativeArgs),
    /// Fit or apply a latent translation between two spaces.
    Translate(translate::TranslateArgs),
    /// Measure how similar two latent spaces are (CKA, Jaccard@k, MRR, ...).
    Compare(compare::CompareArgs),
    #[command(about = stitch::ABOUT, long_about = stitch::LONG_ABOUT)]
    Stitch(stitch::StitchArgs),
    /// Labelled text datasets: fetch the built-in ones or split your own into train/test.
    Data(data::DataArgs),
    Cache(cache::CacheArgs),
    /// Move a vector index to a new embedding model without re-embedding the corpus.
    Migrate(migrate::MigrateArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let profile = match &cli.command {
        Command::Bench(a) if a.profile => Some(profile::OpProfile::default()),
        _ => None,
    };
    match &profile {
        Some(p) => profile::init_logging(cli.verbose, p.clone()),
        None => logging::init(cli.verbose),
    }
    match cli.command {
        Command::Fetch(a) => fetch::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Merge(a) => embed::run_merge(a),
        Command::Bench(a) => bench::run(a, profile),
        Command::Fit(a) => fit::run(a),
        Command::Predict(a) => predict::run_predict(a),
        Command::Eval(a) => predict::run_eval(a),
        Command::Relative(a) => relative::run(a),
        Command::Translate(a) => translate::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Stitch(a) => stitch::run(a),
        Command::Data(a) => data::run(a),
        Command::Cache(a) => cache::run(a),
        Command::Migrate(a) => migrate::run(a),
    }
}
