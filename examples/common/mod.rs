//! What the paper-reproduction examples share: cached embedding of real texts, subsets, head
//! training and scoring on fixed features, summary statistics, and writing results and figures
//! into `docs/`.
//!
//! Each example includes this file with `#[path = "../common/mod.rs"] mod common;`, so not every
//! item is used by every example.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::Tensor;
use relstitch::encoder::cache::EmbeddingCache;
use relstitch::encoder::{Encoder, EncoderOptions};
use relstitch::task::decoder::{predict_classes, train_head, HeadKind, TrainOptions};
use relstitch::task::scores::score;

/// The five catalog encoders, in the order the tables use.
pub const ENCODERS: [&str; 5] = [
    "all-MiniLM-L6-v2",
    "all-mpnet-base-v2",
    "paraphrase-MiniLM-L3-v2",
    "multilingual-e5-small",
    "sre-embedding-model",
];

/// A short name for tables and figures.
pub fn short(model: &str) -> &str {
    match model {
        "all-MiniLM-L6-v2" => "MiniLM-L6",
        "all-mpnet-base-v2" => "MPNet",
        "paraphrase-MiniLM-L3-v2" => "MiniLM-L3",
        "multilingual-e5-small" => "e5-small",
        "sre-embedding-model" => "sre",
        other => other,
    }
}

/// The options each catalog encoder is meant to run with: e5 wants a `query: ` prefix.
/// `max_length` caps the sequence length (None: the model's own `max_seq_length`).
pub fn encoder_options(model: &str, max_length: Option<usize>) -> EncoderOptions {
    let mut o = EncoderOptions::default().with_progress(true);
    if model.contains("e5") {
        o = o.with_prefix("query: ");
    }
    if let Some(n) = max_length {
        o = o.with_max_length(n);
    }
    o
}

/// Embeds `texts` with `model`, reusing (and filling) the embedding cache under
/// `$RELSTITCH_HOME/embeddings`.
///
/// # Shapes
/// - returns `[texts.len(), d]` f32
pub fn embed(model: &str, texts: &[&str], max_length: Option<usize>) -> anyhow::Result<Tensor> {
    let encoder = Encoder::load(model, &encoder_options(model, max_length))
        .with_context(|| format!("loading {model}"))?;
    let cache = EmbeddingCache::for_identity(encoder.identity())?;
    let t = std::time::Instant::now();
    let x = cache.embed(&encoder, texts)?;
    eprintln!(
        "  {model}: {} texts embedded or read from the cache in {:.1}s",
        texts.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(x)
}

/// Trains the paper's head (LayerNorm + Linear) on fixed features with early stopping on a
/// stratified 10 % validation split.
///
/// # Shapes
/// - `x`: `[n, d]`; `labels`: n class indices
pub fn fit_head(
    x: &Tensor,
    labels: &[usize],
    num_classes: usize,
    seed: u64,
) -> anyhow::Result<relstitch::task::decoder::Head> {
    let options = TrainOptions {
        epochs: 60,
        patience: 8,
        seed,
        ..TrainOptions::default()
    };
    Ok(train_head(x, labels, HeadKind::Linear, num_classes, &options)?.head)
}

/// Weighted F1 of `head` on features `x` against `labels`.
pub fn weighted_f1(
    head: &relstitch::task::decoder::Head,
    x: &Tensor,
    labels: &[usize],
    num_classes: usize,
) -> anyhow::Result<f64> {
    let predicted = predict_classes(head, x)?;
    Ok(score(labels, &predicted, num_classes)?.weighted_f1)
}

/// The share of rows of `a` and `b` (two inputs for the same texts) to which `head` gives the
/// same class.
///
/// # Shapes
/// - `a`, `b`: `[n, input_dim]`
pub fn agreement(
    head: &relstitch::task::decoder::Head,
    a: &Tensor,
    b: &Tensor,
) -> anyhow::Result<f64> {
    let (p, q) = (predict_classes(head, a)?, predict_classes(head, b)?);
    Ok(p.iter().zip(&q).filter(|(x, y)| x == y).count() as f64 / p.len().max(1) as f64)
}

/// Spearman's rank correlation (average ranks for ties).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&x, &y| v[x].total_cmp(&v[y]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            for t in i..=j {
                r[idx[t]] = (i + j) as f64 / 2.0 + 1.0;
            }
            i = j + 1;
        }
        r
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut s, mut sa, mut sb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        s += (x - ma) * (y - mb);
        sa += (x - ma).powi(2);
        sb += (y - mb).powi(2);
    }
    s / (sa * sb).sqrt().max(1e-30)
}

/// Weighted F1 of always predicting the most frequent class (the chance level of the tables).
pub fn chance_wf1(labels: &[usize], num_classes: usize) -> f64 {
    let mut counts = vec![0usize; num_classes];
    for &l in labels {
        counts[l] += 1;
    }
    let p = counts.iter().copied().max().unwrap_or(0) as f64 / labels.len().max(1) as f64;
    // F1 of the majority class is 2p/(1+p); every other class scores 0.
    p * 2.0 * p / (1.0 + p)
}

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (m, 0.0);
    }
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, var.sqrt())
}

/// Mean.
pub fn mean(v: &[f64]) -> f64 {
    mean_std(v).0
}

/// `0.812 ± 0.013` (just the mean when there is a single value).
pub fn pm(v: &[f64]) -> String {
    let (m, s) = mean_std(v);
    if v.len() < 2 {
        format!("{m:.3}")
    } else {
        format!("{m:.3} ± {s:.3}")
    }
}

/// The repository root (where `Cargo.toml` is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Writes `docs/figures/NAME` atomically and returns its path relative to `docs/`.
pub fn write_figure(name: &str, svg: &str) -> anyhow::Result<String> {
    let path = repo_root().join("docs/figures").join(name);
    relstitch::io::write_atomic(&path, svg.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(format!("figures/{name}"))
}

/// The order of the sections in `docs/RESULTS.md`.
const SECTIONS: [&str; 7] = [
    "stitch_text",
    "stitch_robust",
    "stitch_robust_explore",
    "stitch_images",
    "stitch_languages",
    "latent_similarity",
    "migrate",
];

/// Writes this example's section to `docs/results/NAME.md`, then rebuilds `docs/RESULTS.md` from
/// all the sections present (each written by a full run of its example).
pub fn write_results(name: &str, markdown: &str) -> anyhow::Result<()> {
    let dir = repo_root().join("docs/results");
    relstitch::io::write_atomic(&dir.join(format!("{name}.md")), markdown.as_bytes())?;
    assemble_results(&repo_root().join("docs"))
}

fn assemble_results(docs: &Path) -> anyhow::Result<()> {
    let header = std::fs::read_to_string(docs.join("results/HEADER.md")).unwrap_or_default();
    let mut out = header;
    for s in SECTIONS {
        match std::fs::read_to_string(docs.join(format!("results/{s}.md"))) {
            Ok(text) => {
                out.push_str("\n\n");
                // Sections keep figure paths relative to docs/, as RESULTS.md does.
                out.push_str(text.trim_end());
                out.push('\n');
            }
            Err(_) => out.push_str(&format!(
                "\n\n## {s}\n\nNot run yet: `cargo run --release --example {s}`.\n"
            )),
        }
    }
    relstitch::io::write_atomic(&docs.join("RESULTS.md"), out.as_bytes())?;
    eprintln!("wrote {}", docs.join("RESULTS.md").display());
    Ok(())
}

/// One line about the machine: CPU model and logical cores.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} logical cores, relstitch's CPU build")
}

/// The command line that ran this example, for the "regenerate with" lines.
pub fn command_line(example: &str) -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut c = format!("cargo run --release --example {example}");
    if !args.is_empty() {
        c.push_str(" -- ");
        c.push_str(&args.join(" "));
    }
    c
}

/// The rows that may serve as anchors: the first occurrence of each text whose embedding is also a
/// first occurrence in every space. Two different texts can still embed identically (e.g. emails
/// that agree on their first 128 tokens), and two identical anchors would be degenerate.
///
/// # Shapes
/// - each of `spaces`: `[texts.len(), d]`
pub fn anchor_candidates(texts: &[String], spaces: &[&Tensor]) -> anyhow::Result<Vec<usize>> {
    use std::collections::HashSet;
    let rows: Vec<Vec<Vec<u32>>> = spaces
        .iter()
        .map(|x| {
            Ok(x.to_vec2::<f32>()?
                .into_iter()
                .map(|r| r.into_iter().map(f32::to_bits).collect())
                .collect())
        })
        .collect::<anyhow::Result<_>>()?;
    let mut seen_text = HashSet::new();
    let mut seen: Vec<HashSet<&Vec<u32>>> = vec![HashSet::new(); spaces.len()];
    Ok((0..texts.len())
        .filter(|&r| {
            let mut fresh = seen_text.insert(texts[r].as_str());
            for (s, x) in seen.iter_mut().zip(&rows) {
                fresh &= s.insert(&x[r]);
            }
            fresh
        })
        .collect())
}

/// The paper's text anchors: `count` of the `candidates` rows (see [`anchor_candidates`]), drawn
/// class-stratified round-robin from a shuffle seeded with `seed`; returns rows of the full pool.
pub fn stratified_anchor_rows(
    labels: &[usize],
    candidates: &[usize],
    count: usize,
    seed: u64,
) -> anyhow::Result<Vec<usize>> {
    use relstitch::space::anchors::{AnchorPool, AnchorStrategy};
    let names: Vec<String> = candidates.iter().map(|&r| labels[r].to_string()).collect();
    let pool = AnchorPool::new(candidates.len()).with_labels(&names);
    let picked = AnchorStrategy::Stratified { seed }.select_rows(&pool, count)?;
    Ok(picked.into_iter().map(|i| candidates[i]).collect())
}

/// The rows `rows` of `x`, in that order.
///
/// # Shapes
/// - `x`: `[n, d]`; returns `[rows.len(), d]`
pub fn take_rows(x: &Tensor, rows: &[usize]) -> anyhow::Result<Tensor> {
    let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
    let idx = Tensor::from_vec(idx, rows.len(), x.device())?;
    Ok(x.index_select(&idx, 0)?)
}

/// Cosine relative representation of `x` with respect to `anchors`.
///
/// # Shapes
/// - `x`: `[n, d]`, `anchors`: `[k, d]`; returns `[n, k]`
pub fn relative(x: &Tensor, anchors: &Tensor) -> anyhow::Result<Tensor> {
    use relstitch::space::projection::{PreTransform, Projection, RelativeProjector};
    Ok(RelativeProjector::fit(anchors, Projection::Cosine, PreTransform::NONE)?.project(x)?)
}

/// Cosine relative representation after centring `x` and the anchors on the anchors' mean, which
/// removes the common direction of anisotropic spaces.
///
/// # Shapes
/// - `x`: `[n, d]`, `anchors`: `[k, d]`; returns `[n, k]`
pub fn relative_centred(x: &Tensor, anchors: &Tensor) -> anyhow::Result<Tensor> {
    use relstitch::space::projection::{PreTransform, Projection, RelativeProjector};
    let pre = PreTransform::NONE.with_center(true);
    Ok(RelativeProjector::fit(anchors, Projection::Cosine, pre)?.project(x)?)
}
