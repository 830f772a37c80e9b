//! `stitch-two-checkpoints`: the same command as `relstitch stitch` (same flags, same output), kept
//! as its own binary for the users and scripts that call it by this name.

#[path = "relstitch/logging.rs"]
mod logging;
#[path = "relstitch/stitch.rs"]
mod stitch;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "stitch-two-checkpoints", version, about = stitch::ABOUT, long_about = stitch::LONG_ABOUT)]
struct Cli {
    #[command(flatten)]
    args: stitch::StitchArgs,
    /// Log more (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    stitch::run(cli.args)
}
