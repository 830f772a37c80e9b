//! Zero-shot stitching through the library API, end to end on real models and data:
//! train a head on all-MiniLM-L6-v2's relative space and one on all-mpnet-base-v2's, then run
//! MPNet's encoder with MiniLM's head without retraining.
//!
//! `cargo run --release --example stitch [-- PER_LABEL]` (PER_LABEL: training texts per label,
//! default all).

use relstitch::data::{Builtin, Dataset, SplitOptions};
use relstitch::hub::fetch::Fetcher;
use relstitch::task::stitch::{fit, FitOptions, Pipeline, StitchOptions, StitchReport};

fn main() -> anyhow::Result<()> {
    let per_label: Option<usize> = std::env::args().nth(1).map(|a| a.parse()).transpose()?;
    let data = Dataset::builtin(Builtin::Fortunes, &Fetcher::new()?)?;
    let split = data.split(&SplitOptions::default())?;
    let mut train = split.train;
    if let Some(k) = per_label {
        let mut seen = vec![0usize; train.labels.len()];
        train.records.retain(|r| {
            seen[r.label] += 1;
            seen[r.label] <= k
        });
    }
    let options = FitOptions::default();
    let minilm = fit("all-MiniLM-L6-v2", &train, &options)?;
    let mpnet = fit("all-mpnet-base-v2", &train, &options)?;
    let stitch = StitchOptions::default();
    let stitched = Pipeline::stitch(&mpnet, &minilm, &stitch)?;
    let report = StitchReport::evaluate(&mpnet, &minilm, &stitched, &split.test, &stitch)?;
    println!("{report}");
    for p in stitched.predict(&[
        "The compiler segfaults when I enable optimisations.",
        "Beam me up.",
    ])? {
        println!(
            "{} ({:.2})",
            p.label,
            p.probabilities.iter().map(|x| x.1).fold(0.0, f32::max)
        );
    }
    Ok(())
}
