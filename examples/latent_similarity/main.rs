//! How similar are the latent spaces of the catalog encoders, in absolute and in relative space?
//! The analogue of the paper's Table 1 (there: FastText vs Word2Vec) on real encoders and real
//! texts: Jaccard@10 of neighbourhoods, cross-space retrieval MRR, mean cosine of matching rows,
//! and linear CKA, for every pair of encoders.
//!
//! ```sh
//! cargo run --release --example latent_similarity -- --quick   # < 5 min, prints one JSON line
//! cargo run --release --example latent_similarity              # full: writes docs/RESULTS.md
//! ```

#[path = "../common/mod.rs"]
mod common;

use candle_core::Tensor;
use clap::Parser;
use relstitch::data::{Builtin, Dataset, SplitOptions};
use relstitch::hub::fetch::Fetcher;
use relstitch::space::similarity::{compare_spaces, retrieval_jaccard_at_k, SpaceComparison};
use serde::Serialize;

use common::{pm, short, ENCODERS};

/// Compares every pair of catalog encoders on the same real texts (the `fortunes` dataset), in
/// absolute space and in cosine relative space with shared anchors.
///
/// Anchors are drawn class-stratified from the training split; the compared samples are the test
/// split. Relative vectors of two encoders are comparable dimension by dimension (one dimension
/// per anchor), so MRR and mean cosine exist for every pair; in absolute space they exist only
/// when the two widths agree.
#[derive(Parser, Debug)]
struct Args {
    /// A small run (3 encoders, 200 texts, 96 anchors, one seed) that prints one line of JSON.
    #[arg(long)]
    quick: bool,
    /// Number of anchors (default: 96 quick, 300 full — the paper's Table 1 uses 300).
    #[arg(long)]
    anchors: Option<usize>,
    /// Neighbourhood size of Jaccard@k.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Anchor seeds (full mode: 5).
    #[arg(long)]
    seeds: Option<usize>,
}

/// One pair of encoders in the quick-mode JSON.
#[derive(Serialize)]
struct PairJson {
    a: String,
    b: String,
    abs_jaccard: Option<f64>,
    rel_jaccard: f64,
    abs_mrr: Option<f64>,
    rel_mrr: f64,
    rel_mean_cosine: f64,
    linear_cka: f64,
}

/// Absolute-space metrics of a pair, and the paper's cross-space Jaccard (None: widths differ).
type AbsolutePair = (SpaceComparison, Option<f64>);

/// Per pair, one value per seed of every metric.
#[derive(Default)]
struct PairRuns {
    rel_jaccard: Vec<f64>,
    rel_own_jaccard: Vec<f64>,
    rel_mrr: Vec<f64>,
    rel_cos: Vec<f64>,
    rel_cka: Vec<f64>,
    /// Cosine relative space after centring on the anchors' mean.
    centred_jaccard: Vec<f64>,
    centred_mrr: Vec<f64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = std::time::Instant::now();
    let encoders: Vec<&str> = if args.quick {
        vec![ENCODERS[0], ENCODERS[2], ENCODERS[3]]
    } else {
        ENCODERS.to_vec()
    };
    let n_anchors = args.anchors.unwrap_or(if args.quick { 96 } else { 300 });
    let seeds = args.seeds.unwrap_or(if args.quick { 1 } else { 5 }) as u64;

    let split =
        Dataset::builtin(Builtin::Fortunes, &Fetcher::new()?)?.split(&SplitOptions::default())?;
    let (pool, eval) = if args.quick {
        (
            split.train.first_per_label(24),
            split.test.first_per_label(25),
        )
    } else {
        (split.train.clone(), split.test.clone())
    };
    let pool_labels = pool.label_indices();
    eprintln!(
        "{} anchor-pool texts, {} compared texts, {n_anchors} anchors, {seeds} seed(s), encoders {encoders:?}",
        pool.len(),
        eval.len()
    );

    // Embed once per encoder: the anchor pool and the compared texts.
    let mut spaces = Vec::new();
    for m in &encoders {
        let p = common::embed(m, &pool.texts(), None)?;
        let e = common::embed(m, &eval.texts(), None)?;
        spaces.push((p, e));
    }
    let pool_texts: Vec<String> = pool.records.iter().map(|r| r.text.clone()).collect();
    let candidates = common::anchor_candidates(
        &pool_texts,
        &spaces.iter().map(|(p, _)| p).collect::<Vec<_>>(),
    )?;

    let n = encoders.len();
    let mut abs: Vec<Vec<Option<AbsolutePair>>> = vec![vec![None; n]; n];
    let mut runs: Vec<Vec<PairRuns>> = (0..n)
        .map(|_| (0..n).map(|_| PairRuns::default()).collect())
        .collect();
    for i in 0..n {
        for j in 0..n {
            let (a, b) = (&spaces[i].1, &spaces[j].1);
            let cross = if a.dim(1)? == b.dim(1)? {
                Some(retrieval_jaccard_at_k(a, b, args.k)?)
            } else {
                None
            };
            abs[i][j] = Some((compare_spaces(a, b, args.k)?, cross));
        }
    }
    for seed in 0..seeds {
        let rows = common::stratified_anchor_rows(&pool_labels, &candidates, n_anchors, seed)?;
        let rel: Vec<_> = spaces
            .iter()
            .map(|(p, e)| common::relative(e, &common::take_rows(p, &rows)?))
            .collect::<anyhow::Result<_>>()?;
        let centred: Vec<Tensor> = spaces
            .iter()
            .map(|(p, e)| common::relative_centred(e, &common::take_rows(p, &rows)?))
            .collect::<anyhow::Result<_>>()?;
        for i in 0..n {
            for j in 0..n {
                let c = compare_spaces(&rel[i], &rel[j], args.k)?;
                let r = &mut runs[i][j];
                r.rel_jaccard
                    .push(retrieval_jaccard_at_k(&rel[i], &rel[j], args.k)?);
                r.rel_own_jaccard.push(c.jaccard_at_k);
                r.rel_mrr.push(c.mrr.unwrap_or(f64::NAN));
                r.rel_cos.push(c.mean_cosine.unwrap_or(f64::NAN));
                r.rel_cka.push(c.linear_cka);
                r.centred_jaccard
                    .push(retrieval_jaccard_at_k(&centred[i], &centred[j], args.k)?);
                r.centred_mrr
                    .push(relstitch::space::similarity::retrieval(&centred[i], &centred[j])?.mrr);
            }
        }
    }
    let abs_of = |i: usize, j: usize| {
        abs[i][j]
            .as_ref()
            .map(|(c, _)| c)
            .ok_or_else(|| anyhow::anyhow!("pair {i},{j} not compared"))
    };
    let abs_jaccard = |i: usize, j: usize| abs[i][j].as_ref().and_then(|(_, x)| *x);

    if args.quick {
        let mut pairs = Vec::new();
        for i in 0..n {
            for j in (i + 1)..n {
                let a = abs_of(i, j)?;
                let r = &runs[i][j];
                pairs.push(PairJson {
                    a: encoders[i].to_string(),
                    b: encoders[j].to_string(),
                    abs_jaccard: abs_jaccard(i, j),
                    rel_jaccard: common::mean(&r.rel_jaccard),
                    abs_mrr: a.mrr,
                    rel_mrr: common::mean(&r.rel_mrr),
                    rel_mean_cosine: common::mean(&r.rel_cos),
                    linear_cka: a.linear_cka,
                });
            }
        }
        eprintln!("done in {:.0}s", started.elapsed().as_secs_f64());
        println!("{}", serde_json::json!({ "pairs": pairs }));
        return Ok(());
    }

    // Full mode: tables and figures into docs/.
    let names: Vec<String> = encoders.iter().map(|m| short(m).to_string()).collect();
    let matrix =
        |f: &dyn Fn(usize, usize) -> anyhow::Result<f64>| -> anyhow::Result<Vec<Vec<f64>>> {
            (0..n).map(|i| (0..n).map(|j| f(i, j)).collect()).collect()
        };
    let rel_jac = matrix(&|i, j| Ok(common::mean(&runs[i][j].rel_jaccard)))?;
    let rel_mrr = matrix(&|i, j| Ok(common::mean(&runs[i][j].rel_mrr)))?;
    let cka = matrix(&|i, j| Ok(abs_of(i, j)?.linear_cka))?;
    let k = args.k;
    let off: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| ((i + 1)..n).map(move |j| (i, j)))
        .collect();
    let same_width: Vec<(usize, usize)> = off
        .iter()
        .copied()
        .filter(|&(i, j)| abs_jaccard(i, j).is_some())
        .collect();
    let pair_name = |(i, j): (usize, usize)| format!("{}/{}", names[i], names[j]);
    let bars = relstitch::report::plot::bar_chart(
        &format!("Cross-space Jaccard@{k}: absolute vs relative (same-width pairs)"),
        &format!("Jaccard@{k}"),
        &same_width.iter().map(|&p| pair_name(p)).collect::<Vec<_>>(),
        &[
            (
                "absolute".to_string(),
                same_width
                    .iter()
                    .map(|&(i, j)| abs_jaccard(i, j).unwrap_or(0.0))
                    .collect(),
            ),
            (
                "relative".to_string(),
                same_width.iter().map(|&(i, j)| rel_jac[i][j]).collect(),
            ),
        ],
    )?;
    let figs = [
        ("latent_similarity_jaccard_bars.svg", bars),
        (
            "latent_similarity_rel_jaccard.svg",
            relstitch::report::plot::heatmap(
                &format!("Relative space ({n_anchors} anchors): cross-space Jaccard@{k}"),
                &rel_jac,
                &names,
                &names,
                Some((0.0, 1.0)),
            )?,
        ),
        (
            "latent_similarity_rel_mrr.svg",
            relstitch::report::plot::heatmap(
                &format!("Relative space ({n_anchors} anchors): retrieval MRR"),
                &rel_mrr,
                &names,
                &names,
                Some((0.0, 1.0)),
            )?,
        ),
        (
            "latent_similarity_linear_cka.svg",
            relstitch::report::plot::heatmap(
                "Absolute space: linear CKA",
                &cka,
                &names,
                &names,
                Some((0.0, 1.0)),
            )?,
        ),
    ];
    let mut fig_md = String::new();
    for (file, svg) in &figs {
        let rel_path = common::write_figure(file, svg)?;
        fig_md.push_str(&format!("![{file}]({rel_path})\n"));
    }

    let opt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3}"));
    let mut md = String::new();
    md.push_str(
        "## latent_similarity: how alike are the encoders' spaces? (the paper's Table 1)\n\n",
    );
    md.push_str(&format!(
        "Every pair of the five catalog encoders, on the {} texts of the `fortunes` test split. Relative \
         space: cosine to {n_anchors} anchors drawn class-stratified from the {} training texts \
         (mean ± std over {seeds} anchor seeds); absolute space needs no anchors (one value).\n\n\
         - **Jaccard@{k}** (the paper's): for each text, its {k} nearest neighbours in B when queried with \
         its vector from A, against its {k} nearest neighbours in B queried with its own B vector. It needs \
         aligned coordinates, so two absolute spaces of different models score ≈ 0.\n\
         - **MRR**: rank of the text's own B vector when queried with its A vector. **mean cos**: cosine of \
         the A and B vectors of the same text. These three need equal widths, so in absolute space they \
         are n/a for MPNet (768 wide; the others are 384).\n\
         - **own-neighbourhood Jaccard@{k}** compares each space's own {k}-NN sets; it ignores alignment \
         (a rotation leaves it unchanged) and so is high even between absolute spaces.\n\
         - **linear CKA** is alignment-free as well.\n\
         - **centred**: the relative space computed after subtracting the anchors' mean from both \
         anchors and samples (`PreTransform::center`), which removes the common direction of \
         anisotropic spaces (see the table below).\n\n",
        eval.len(),
        pool.len()
    ));
    md.push_str(&format!(
        "| A | B | abs Jaccard@{k} | rel Jaccard@{k} | abs MRR | rel MRR | abs mean cos | rel mean cos | own-nbhd Jaccard abs | own-nbhd Jaccard rel | linear CKA abs | linear CKA rel | centred rel Jaccard@{k} | centred rel MRR |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    ));
    for &(i, j) in &off {
        let a = abs_of(i, j)?;
        let r = &runs[i][j];
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.3} | {} | {:.3} | {} | {} | {} |\n",
            names[i],
            names[j],
            opt(abs_jaccard(i, j)),
            pm(&r.rel_jaccard),
            opt(a.mrr),
            pm(&r.rel_mrr),
            opt(a.mean_cosine),
            pm(&r.rel_cos),
            a.jaccard_at_k,
            pm(&r.rel_own_jaccard),
            a.linear_cka,
            pm(&r.rel_cka),
            pm(&r.centred_jaccard),
            pm(&r.centred_mrr)
        ));
    }
    let avg = |pairs: &[(usize, usize)], f: &dyn Fn(usize, usize) -> f64| {
        pairs.iter().map(|&(i, j)| f(i, j)).sum::<f64>() / pairs.len().max(1) as f64
    };
    md.push_str(&format!(
        "\nOver the {} same-width pairs: Jaccard@{k} {:.3} absolute → {:.3} relative; MRR {:.3} → {:.3}; \
         mean cosine {:.3} → {:.3}. Over all {} pairs, relative: Jaccard@{k} {:.3}, MRR {:.3}, mean cosine \
         {:.3}. (Paper, FastText vs Word2Vec, 300 anchors: Jaccard@10 0.00 → ≈0.4, MRR 0.00 → ≈0.95, \
         cosine 0.86 relative.)\n\n",
        same_width.len(),
        avg(&same_width, &|i, j| abs_jaccard(i, j).unwrap_or(f64::NAN)),
        avg(&same_width, &|i, j| rel_jac[i][j]),
        avg(&same_width, &|i, j| abs[i][j].as_ref().and_then(|(c, _)| c.mrr).unwrap_or(f64::NAN)),
        avg(&same_width, &|i, j| rel_mrr[i][j]),
        avg(&same_width, &|i, j| abs[i][j].as_ref().and_then(|(c, _)| c.mean_cosine).unwrap_or(f64::NAN)),
        avg(&same_width, &|i, j| common::mean(&runs[i][j].rel_cos)),
        off.len(),
        avg(&off, &|i, j| rel_jac[i][j]),
        avg(&off, &|i, j| rel_mrr[i][j]),
        avg(&off, &|i, j| common::mean(&runs[i][j].rel_cos)),
    ));
    md.push_str(&format!(
        "Over all {} pairs, centred relative: Jaccard@{k} {:.3}, MRR {:.3}.\n\n\
         Anisotropy of each absolute space (mean cosine between two different test texts; 0 for \
         directions spread evenly, 1 for a collapsed space). Where it is high, plain cosine relative \
         vectors of all texts look alike, which hurts cross-space retrieval; centring helps.\n\n\
         | encoder | mean pairwise cosine |\n|---|---|\n",
        off.len(),
        avg(&off, &|i, j| common::mean(&runs[i][j].centred_jaccard)),
        avg(&off, &|i, j| common::mean(&runs[i][j].centred_mrr)),
    ));
    for (name, (_, e)) in names.iter().zip(&spaces) {
        md.push_str(&format!("| {name} | {:.3} |\n", mean_pairwise_cosine(e)?));
    }
    md.push('\n');
    md.push_str(&fig_md);
    md.push_str(&format!(
        "\nRegenerate with `{}` ({:.0} s on {}; embeddings cached under `$RELSTITCH_HOME/embeddings`).\n",
        common::command_line("latent_similarity"),
        started.elapsed().as_secs_f64(),
        common::machine()
    ));
    common::write_results("latent_similarity", &md)?;
    println!("{md}");
    Ok(())
}

/// Mean cosine similarity between two different rows of `x`.
fn mean_pairwise_cosine(x: &Tensor) -> anyhow::Result<f64> {
    let n = x.dim(0)? as f64;
    let u = x.broadcast_div(&x.sqr()?.sum_keepdim(1)?.sqrt()?)?;
    // Σ_ij cos(i, j) = ‖Σ_i u_i‖², minus the n diagonal ones.
    let total = u.sum(0)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    Ok((total - n) / (n * (n - 1.0)))
}
