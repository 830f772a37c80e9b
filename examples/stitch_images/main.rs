//! Zero-shot stitching across training seeds on images (Moschella et al., ICLR 2023, Sec. 5.1):
//! small CNN autoencoders and classifiers trained from scratch on Fashion-MNIST and MNIST-5k, each
//! with a relative bottleneck trained end to end and an absolute twin; then the encoder of every
//! seed is run with the decoder of every other seed, without retraining.
//!
//! ```sh
//! cargo run --release --example stitch_images -- --quick   # < 5 min, prints one JSON line
//! cargo run --release --example stitch_images              # full: docs/results/stitch_images.md
//! ```

#[path = "../common/mod.rs"]
mod common;
mod model;

use std::time::Instant;

use anyhow::Context;
use candle_core::{Device, Tensor, D};
use clap::Parser;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use relstitch::data::images::{self, ImageBuiltin, ImageDataset};
use relstitch::hub::fetch::Fetcher;
use serde::Serialize;

use common::{mean, pm};
use model::{Arch, Model, Space, Task, TrainOptions};

/// Trains small CNN autoencoders and classifiers with different seeds, each in two versions — a
/// relative bottleneck (cosine similarities to anchor images, computed by the same encoder at every
/// training step) and an absolute twin — and stitches every ordered pair of seeds zero-shot:
/// encoder of seed i, decoder of seed j, same anchor images.
///
/// Reports reconstruction MSE (autoencoders) and accuracy (classifiers) on held-out images, for
/// i = j ("not stitched") and i ≠ j ("stitched"), as mean ± std over the pairs. The full run
/// (no --quick) writes docs/results/stitch_images.md and docs/figures/stitch_images_*.svg and
/// rebuilds docs/RESULTS.md.
///
/// Everything is seeded: weights, batch order, the training subset, the anchors and the test
/// subset; two runs with the same flags on the same machine give the same numbers.
#[derive(Parser, Debug)]
#[command(about, long_about)]
struct Args {
    /// A small run (Fashion-MNIST only, 2 seeds, 3,000 training images, 2 epochs, 64 anchors)
    /// that prints one line of JSON and writes nothing.
    #[arg(long)]
    quick: bool,
    /// Datasets to run (default: both in full mode, fashion-mnist in quick mode).
    #[arg(long, value_enum, value_delimiter = ',')]
    datasets: Vec<ImageBuiltin>,
    /// Number of training seeds (models per kind); every ordered pair is stitched.
    #[arg(long)]
    seeds: Option<usize>,
    /// Training images per dataset: a seeded random subset of the training split (default: 6,000
    /// quick, 4,000 full; MNIST-5k has only 4,000).
    #[arg(long)]
    train_size: Option<usize>,
    /// Training epochs over that subset (default: 2).
    #[arg(long)]
    epochs: Option<usize>,
    /// Anchor images, drawn uniformly at random from the training split (the paper uses 500 for
    /// its autoencoders; default: 64 quick, 200 full, for the CPU budget).
    #[arg(long)]
    anchors: Option<usize>,
    /// Held-out images scored per stitched pair (a seeded random subset of the test split).
    #[arg(long)]
    test_size: Option<usize>,
    /// Width of the encoder's output (the absolute latent).
    #[arg(long, default_value_t = 32)]
    latent: usize,
    /// Hidden width of the decoders.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Mini-batch size (the anchors go through the encoder with every batch).
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 3e-3)]
    learning_rate: f64,
    /// Do not write docs/ (full mode writes by default; quick mode never writes).
    #[arg(long)]
    no_write: bool,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

/// The settings of one run, resolved from the flags and the mode.
#[derive(Debug, Clone, Serialize)]
struct Settings {
    seeds: usize,
    train_size: usize,
    /// None: the per-dataset default, see [`Settings::epochs_for`].
    epochs: Option<usize>,
    quick: bool,
    anchors: usize,
    test_size: usize,
    arch: Arch,
    batch_size: usize,
    learning_rate: f64,
}

impl Settings {
    /// Epochs on `which`: the flag, else 2 (the same in both modes; kept per dataset so that
    /// a longer run can give the smaller MNIST-5k more epochs).
    fn epochs_for(&self, which: ImageBuiltin) -> usize {
        match (self.epochs, self.quick, which) {
            (Some(e), _, _) => e,
            (None, _, _) => 2,
        }
    }
}

/// The one-line JSON of the quick mode (means over the datasets run).
#[derive(Serialize)]
struct QuickJson {
    abs_not_stitched_acc: f64,
    abs_stitched_acc: f64,
    rel_not_stitched_acc: f64,
    rel_stitched_acc: f64,
    abs_stitched_mse: f64,
    rel_stitched_mse: f64,
}

/// Every ordered (encoder seed, decoder seed) pair's score, for one task and space.
struct PairScores {
    /// `scores[i][j]`: encoder of seed i, decoder of seed j.
    scores: Vec<Vec<f64>>,
}

impl PairScores {
    fn diagonal(&self) -> Vec<f64> {
        (0..self.scores.len()).map(|i| self.scores[i][i]).collect()
    }
    fn off_diagonal(&self) -> Vec<f64> {
        let n = self.scores.len();
        (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| self.scores[i][j])
            .collect()
    }
}

/// The results on one dataset.
struct DatasetResult {
    name: String,
    train_used: usize,
    epochs: usize,
    test_used: usize,
    /// (space, reconstruction MSE per pair).
    mse: Vec<(Space, PairScores)>,
    /// (space, accuracy per pair).
    acc: Vec<(Space, PairScores)>,
    /// MSE of predicting the mean training image, for scale.
    mean_image_mse: f64,
    /// Accuracy of predicting the most frequent class.
    chance_acc: f64,
    /// Final training losses, per (task, space): one per seed.
    train_losses: Vec<(String, Vec<f64>)>,
    /// The figure of originals vs reconstructions.
    figure: Option<String>,
    seconds: f64,
}

impl DatasetResult {
    fn get(list: &[(Space, PairScores)], space: Space) -> &PairScores {
        &list
            .iter()
            .find(|(s, _)| *s == space)
            .expect("both spaces are always run")
            .1
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let quick = args.quick;
    let datasets = if !args.datasets.is_empty() {
        args.datasets.clone()
    } else if quick {
        vec![ImageBuiltin::FashionMnist]
    } else {
        vec![ImageBuiltin::FashionMnist, ImageBuiltin::Mnist5k]
    };
    let anchors = args.anchors.unwrap_or(if quick { 64 } else { 200 });
    let settings = Settings {
        seeds: args.seeds.unwrap_or(if quick { 2 } else { 5 }),
        train_size: args.train_size.unwrap_or(if quick { 3_000 } else { 4_000 }),
        epochs: args.epochs,
        anchors,
        test_size: args.test_size.unwrap_or(if quick { 1_000 } else { 2_000 }),
        arch: Arch {
            latent: args.latent,
            anchors,
            hidden: args.hidden,
        },
        batch_size: args.batch_size,
        learning_rate: args.learning_rate,
        quick,
    };
    anyhow::ensure!(settings.seeds >= 2, "--seeds must be at least 2 to stitch");
    anyhow::ensure!(
        settings.anchors >= 1 && settings.epochs != Some(0) && settings.batch_size >= 1,
        "--anchors, --epochs and --batch-size must be positive"
    );
    eprintln!("settings: {}", serde_json::to_string(&settings)?);

    let start = Instant::now();
    let fetcher = Fetcher::new()?.with_quiet(args.quiet);
    let mut results = Vec::new();
    for &which in &datasets {
        let split = images::load(which, &fetcher).with_context(|| format!("loading {which}"))?;
        results.push(run_dataset(
            which,
            &split.train,
            &split.test,
            &settings,
            args.quiet,
        )?);
    }
    let wall = start.elapsed().as_secs_f64();

    let avg = |f: &dyn Fn(&DatasetResult) -> f64| mean(&results.iter().map(f).collect::<Vec<_>>());
    let json = QuickJson {
        abs_not_stitched_acc: avg(&|r| {
            mean(&DatasetResult::get(&r.acc, Space::Absolute).diagonal())
        }),
        abs_stitched_acc: avg(&|r| {
            mean(&DatasetResult::get(&r.acc, Space::Absolute).off_diagonal())
        }),
        rel_not_stitched_acc: avg(&|r| {
            mean(&DatasetResult::get(&r.acc, Space::Relative).diagonal())
        }),
        rel_stitched_acc: avg(&|r| {
            mean(&DatasetResult::get(&r.acc, Space::Relative).off_diagonal())
        }),
        abs_stitched_mse: avg(&|r| {
            mean(&DatasetResult::get(&r.mse, Space::Absolute).off_diagonal())
        }),
        rel_stitched_mse: avg(&|r| {
            mean(&DatasetResult::get(&r.mse, Space::Relative).off_diagonal())
        }),
    };
    for r in &results {
        eprintln!("{}", table(r));
    }
    eprintln!("wall time: {wall:.0} s");
    if !quick && !args.no_write {
        write_docs(&results, &settings, wall)?;
    }
    println!("{}", serde_json::to_string(&json)?);
    Ok(())
}

/// `count` distinct indices below `n`, from a shuffle seeded with `seed`.
fn sample(n: usize, count: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    idx.truncate(count.min(n));
    idx
}

/// Trains every model on one dataset and scores every stitched pair.
fn run_dataset(
    which: ImageBuiltin,
    train: &ImageDataset,
    test: &ImageDataset,
    s: &Settings,
    quiet: bool,
) -> anyhow::Result<DatasetResult> {
    let t0 = Instant::now();
    let device = Device::Cpu;
    // The same training subset, anchors and test subset for every model of this dataset.
    let train_sub = train.subset(&sample(train.len(), s.train_size, 1))?;
    let anchor_set = train.subset(&sample(train.len(), s.anchors, 2))?;
    let test_sub = test.subset(&sample(test.len(), s.test_size, 3))?;
    let x_train = train_sub.to_tensor(&device)?;
    let y_train = train_sub.labels_tensor(&device)?;
    let x_anchor = anchor_set.to_tensor(&device)?;
    let x_test = test_sub.to_tensor(&device)?;
    let y_test: Vec<u8> = test_sub.labels.clone();
    let classes = train.class_names.len();
    eprintln!(
        "{which}: {} training images × {} epochs, {} anchors, {} test images, {} seeds",
        train_sub.len(),
        s.epochs_for(which),
        anchor_set.len(),
        test_sub.len(),
        s.seeds
    );

    let tasks = [Task::Reconstruct, Task::Classify { classes }];
    let spaces = [Space::Absolute, Space::Relative];
    let epochs = s.epochs_for(which);
    let steps_per_model = epochs * train_sub.len().div_ceil(s.batch_size);
    let bar = relstitch::progress::bar(
        (tasks.len() * spaces.len() * s.seeds * steps_per_model) as u64,
        which.name(),
        !quiet,
    );
    let mut mse = Vec::new();
    let mut acc = Vec::new();
    let mut train_losses = Vec::new();
    let mut recon_models: Vec<(Space, Vec<Model>)> = Vec::new();
    for task in tasks {
        for space in spaces {
            // Seeds train in parallel (candle's CPU kernels use few threads for these sizes).
            let trained = (0..s.seeds as u64)
                .into_par_iter()
                .map(|seed| -> anyhow::Result<(Model, f64)> {
                    let t = Instant::now();
                    let m = Model::new(space, task, &s.arch, seed, &device)?;
                    let options = TrainOptions {
                        epochs,
                        batch_size: s.batch_size,
                        learning_rate: s.learning_rate,
                        seed,
                    };
                    let loss =
                        model::train(&m, &x_train, &y_train, &x_anchor, &options, |_| bar.inc(1))?;
                    if !quiet {
                        bar.suspend(|| {
                            eprintln!(
                                "  {which} {} {} seed {seed}: final loss {loss:.4} ({:.0} s)",
                                task.kind(),
                                space.name(),
                                t.elapsed().as_secs_f64()
                            )
                        });
                    }
                    Ok((m, f64::from(loss)))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (models, losses): (Vec<Model>, Vec<f64>) = trained.into_iter().unzip();
            train_losses.push((format!("{}, {}", task.kind(), space.name()), losses));
            let scores = stitch_all(&models, &x_test, &x_anchor, &y_test)?;
            match task {
                Task::Reconstruct => {
                    mse.push((space, scores));
                    recon_models.push((space, models));
                }
                Task::Classify { .. } => acc.push((space, scores)),
            }
        }
    }
    bar.finish_and_clear();

    // Baselines: the mean training image, the most frequent class.
    let mean_image = x_train.mean_keepdim(0)?;
    let mean_image_mse = x_test
        .broadcast_sub(&mean_image)?
        .sqr()?
        .mean_all()?
        .to_scalar::<f32>()? as f64;
    let counts = test_sub.class_counts();
    let chance_acc = *counts.iter().max().unwrap_or(&0) as f64 / test_sub.len().max(1) as f64;

    let figure = reconstruction_figure(which, &test_sub, &x_test, &x_anchor, &recon_models)?;
    Ok(DatasetResult {
        name: which.name().to_string(),
        train_used: train_sub.len(),
        epochs,
        test_used: test_sub.len(),
        mse,
        acc,
        mean_image_mse,
        chance_acc,
        train_losses,
        figure: Some(figure),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The decoder input of `model`'s space for images encoded by `encoder_of`.
fn bottleneck_input(
    encoder_of: &Model,
    space: Space,
    x: &Tensor,
    anchors: &Tensor,
) -> anyhow::Result<Tensor> {
    let z = model::encode(&encoder_of.encoder, x, 500)?;
    Ok(match space {
        Space::Absolute => z,
        Space::Relative => {
            let za = model::encode(&encoder_of.encoder, anchors, 500)?;
            model::relative(&z, &za)?
        }
    })
}

/// Scores encoder i with decoder j for every ordered pair: MSE for autoencoders, accuracy for
/// classifiers.
fn stitch_all(
    models: &[Model],
    x: &Tensor,
    anchors: &Tensor,
    labels: &[u8],
) -> anyhow::Result<PairScores> {
    let inputs = models
        .iter()
        .map(|m| bottleneck_input(m, m.space, x, anchors))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut scores = vec![vec![0.0; models.len()]; models.len()];
    for (i, z) in inputs.iter().enumerate() {
        for (j, m) in models.iter().enumerate() {
            let out = model::decode(&m.decoder, z, 500)?;
            scores[i][j] = match m.task {
                Task::Reconstruct => out.sub(x)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64,
                Task::Classify { .. } => {
                    let pred = out.argmax(D::Minus1)?.to_vec1::<u32>()?;
                    let right = pred
                        .iter()
                        .zip(labels)
                        .filter(|(p, &l)| **p == u32::from(l))
                        .count();
                    right as f64 / labels.len().max(1) as f64
                }
            };
        }
    }
    Ok(PairScores { scores })
}

/// Originals vs reconstructions: one test image per class; rows are the originals, then for the
/// absolute and the relative autoencoders the decoder of seed 0 reading its own encoder and the
/// encoders of seeds 1 and 2 (as many as were trained).
fn reconstruction_figure(
    which: ImageBuiltin,
    test: &ImageDataset,
    x_test: &Tensor,
    anchors: &Tensor,
    models: &[(Space, Vec<Model>)],
) -> anyhow::Result<String> {
    let classes = test.class_names.len();
    let mut picks = Vec::new();
    for c in 0..classes as u8 {
        if let Some(i) = test.labels.iter().position(|&l| l == c) {
            picks.push(i as u32);
        }
    }
    let idx = Tensor::new(picks.as_slice(), x_test.device())?;
    let x = x_test.index_select(&idx, 0)?;
    let rows_of = |t: &Tensor| -> anyhow::Result<Vec<Vec<f32>>> {
        let n = t.dim(0)?;
        let flat = t.reshape((n, 28 * 28))?;
        Ok(flat.to_vec2::<f32>()?)
    };
    let mut images = rows_of(&x)?;
    let mut labels = vec!["original".to_string()];
    for (space, ms) in models {
        let decoder = &ms[0];
        for (i, enc) in ms.iter().enumerate().take(3) {
            let z = bottleneck_input(enc, *space, &x, anchors)?;
            let out = model::decode(&decoder.decoder, &z, 500)?;
            images.extend(rows_of(&out)?);
            labels.push(if i == 0 {
                format!("{}: seed 0 → 0", space.name())
            } else {
                format!("{}, stitched: {i} → 0", space.name())
            });
        }
    }
    let title = format!("{which}: originals and reconstructions (encoder seed → decoder seed)");
    Ok(relstitch::report::plot::image_grid(
        &title,
        &images,
        (28, 28),
        picks.len(),
        &labels,
        3,
    )?)
}

/// A plain-text summary table for the log.
fn table(r: &DatasetResult) -> String {
    let mut s = format!(
        "{} ({} training images, {:.0} s)\n",
        r.name, r.train_used, r.seconds
    );
    for space in [Space::Absolute, Space::Relative] {
        let a = DatasetResult::get(&r.acc, space);
        let m = DatasetResult::get(&r.mse, space);
        s.push_str(&format!(
            "  {:<9} accuracy: not stitched {}  stitched {} | MSE: not stitched {}  stitched {}\n",
            space.name(),
            pm(&a.diagonal()),
            pm(&a.off_diagonal()),
            pm(&m.diagonal()),
            pm(&m.off_diagonal()),
        ));
    }
    s.push_str(&format!(
        "  chance accuracy {:.3}, mean-image MSE {:.4}",
        r.chance_acc, r.mean_image_mse
    ));
    s
}

/// Writes the results section and the figures.
fn write_docs(results: &[DatasetResult], s: &Settings, wall: f64) -> anyhow::Result<()> {
    let mut md = String::new();
    md.push_str("## Images across seeds (`stitch_images`)\n\n");
    md.push_str(&format!(
        "Small CNN autoencoders and classifiers trained from scratch with {} seeds per kind \
         (Moschella et al. 2023, Sec. 5.1). Encoder: conv 1→16 and 16→32 (3×3, stride 2, ReLU), \
         linear to a {}-d latent. Each model has a **relative** bottleneck trained end to end — at \
         every step the {} anchor images (uniformly random training images, the same for every \
         model) pass through the encoder with the batch, and the decoder reads the cosine \
         similarities of each latent to the anchor latents after a LayerNorm — and an **absolute** \
         twin whose decoder reads the {}-d latent (after a LayerNorm) instead. Decoders: \
         linear → {} → ReLU, then either linear → 512 → ReLU → linear → 784 → sigmoid \
         (reconstruction, MSE loss; an MLP rather than a transposed CNN to fit the CPU budget) \
         or linear → classes (cross-entropy). Adam, lr {}, batch {}, on a seeded random subset \
         of the training split (size and epochs in the table); scored on a seeded random subset \
         of the test split. *Stitched*: encoder of seed i with the decoder \
         of seed j, i ≠ j, zero-shot ({} ordered pairs); *not stitched*: i = j ({} models). Mean \
         ± std over the pairs.\n\n",
        s.seeds,
        s.arch.latent,
        s.anchors,
        s.arch.latent,
        s.arch.hidden,
        s.learning_rate,
        s.batch_size,
        s.seeds * (s.seeds - 1),
        s.seeds,
    ));
    md.push_str(
        "| dataset | train images × epochs / test images | space | accuracy, not stitched | accuracy, stitched | MSE, not stitched | MSE, stitched |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in results {
        for space in [Space::Absolute, Space::Relative] {
            let a = DatasetResult::get(&r.acc, space);
            let m = DatasetResult::get(&r.mse, space);
            md.push_str(&format!(
                "| {} | {} × {} / {} | {} | {} | {} | {} | {} |\n",
                r.name,
                r.train_used,
                r.epochs,
                r.test_used,
                space.name(),
                pm(&a.diagonal()),
                pm(&a.off_diagonal()),
                pm4(&m.diagonal()),
                pm4(&m.off_diagonal()),
            ));
        }
    }
    md.push_str("\nFor scale: ");
    md.push_str(
        &results
            .iter()
            .map(|r| {
                format!(
                    "{}: chance accuracy {:.3}, MSE of always predicting the mean training image {:.4}",
                    r.name, r.chance_acc, r.mean_image_mse
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    );
    md.push_str(".\n\n");

    // Verdict, computed from the numbers.
    for r in results {
        let ra = DatasetResult::get(&r.acc, Space::Relative);
        let aa = DatasetResult::get(&r.acc, Space::Absolute);
        let rm = DatasetResult::get(&r.mse, Space::Relative);
        let am = DatasetResult::get(&r.mse, Space::Absolute);
        md.push_str(&format!(
            "- **{}**: relative stitching keeps {:.0}% of the non-stitched accuracy ({:.3} vs {:.3}); \
             absolute stitching keeps {:.0}% ({:.3} vs {:.3}, chance {:.3}). Stitched reconstruction \
             MSE is {:.4} relative vs {:.4} absolute (non-stitched {:.4} / {:.4}; mean image {:.4}).\n",
            r.name,
            100.0 * mean(&ra.off_diagonal()) / mean(&ra.diagonal()),
            mean(&ra.off_diagonal()),
            mean(&ra.diagonal()),
            100.0 * mean(&aa.off_diagonal()) / mean(&aa.diagonal()),
            mean(&aa.off_diagonal()),
            mean(&aa.diagonal()),
            r.chance_acc,
            mean(&rm.off_diagonal()),
            mean(&am.off_diagonal()),
            mean(&rm.diagonal()),
            mean(&am.diagonal()),
            r.mean_image_mse,
        ));
    }
    md.push('\n');

    // Figures.
    let groups: Vec<String> = results.iter().map(|r| r.name.clone()).collect();
    let series =
        |list: fn(&DatasetResult) -> &Vec<(Space, PairScores)>| -> Vec<(String, Vec<f64>)> {
            let mut out = Vec::new();
            for space in [Space::Absolute, Space::Relative] {
                for stitched in [false, true] {
                    let name = format!(
                        "{}, {}",
                        space.name(),
                        if stitched { "stitched" } else { "not stitched" }
                    );
                    let v = results
                        .iter()
                        .map(|r| {
                            let p = DatasetResult::get(list(r), space);
                            mean(&if stitched {
                                p.off_diagonal()
                            } else {
                                p.diagonal()
                            })
                        })
                        .collect();
                    out.push((name, v));
                }
            }
            out
        };
    let acc_svg = relstitch::report::plot::bar_chart(
        "Classification accuracy across seeds (mean over pairs)",
        "accuracy",
        &groups,
        &series(|r| &r.acc),
    )?;
    let acc_fig = common::write_figure("stitch_images_accuracy.svg", &acc_svg)?;
    let mse_svg = relstitch::report::plot::bar_chart(
        "Reconstruction MSE across seeds (mean over pairs, lower is better)",
        "MSE",
        &groups,
        &series(|r| &r.mse),
    )?;
    let mse_fig = common::write_figure("stitch_images_mse.svg", &mse_svg)?;
    md.push_str(&format!(
        "![accuracy]({acc_fig})\n\n![reconstruction MSE]({mse_fig})\n\n"
    ));
    for r in results {
        let seeds: Vec<String> = (0..s.seeds).map(|i| format!("seed {i}")).collect();
        for space in [Space::Relative, Space::Absolute] {
            let p = DatasetResult::get(&r.acc, space);
            let svg = relstitch::report::plot::heatmap(
                &format!(
                    "{}: {} classifier accuracy (rows: encoder, columns: decoder)",
                    r.name,
                    space.name()
                ),
                &p.scores,
                &seeds,
                &seeds,
                Some((0.0, 1.0)),
            )?;
            let f = common::write_figure(
                &format!("stitch_images_{}_{}_accuracy.svg", r.name, space.name()),
                &svg,
            )?;
            md.push_str(&format!(
                "![{} {} accuracy per pair]({f})\n",
                r.name,
                space.name()
            ));
        }
        md.push('\n');
        if let Some(svg) = &r.figure {
            let f = common::write_figure(
                &format!("stitch_images_{}_reconstructions.svg", r.name),
                svg,
            )?;
            md.push_str(&format!("![{} reconstructions]({f})\n\n", r.name));
        }
    }
    md.push_str("Final training loss per seed (mean over the last epoch):\n\n");
    for r in results {
        for (what, losses) in &r.train_losses {
            md.push_str(&format!("- {} {}: {}\n", r.name, what, pm4(losses)));
        }
    }
    md.push_str(&format!(
        "\nRegenerate with `{}` ({:.1} min wall time on {}; {}).\n",
        common::command_line("stitch_images"),
        wall / 60.0,
        common::machine(),
        results
            .iter()
            .map(|r| format!("{} {:.1} min", r.name, r.seconds / 60.0))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    common::write_results("stitch_images", &md)
}

/// `0.0123 ± 0.0004`.
fn pm4(v: &[f64]) -> String {
    let (m, s) = common::mean_std(v);
    if v.len() < 2 {
        format!("{m:.4}")
    } else {
        format!("{m:.4} ± {s:.4}")
    }
}
