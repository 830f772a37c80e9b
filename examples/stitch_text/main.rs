//! Zero-shot stitching across text encoders of different architectures (the paper's Sec. 5.2 /
//! Table 4 set-up on catalog encoders): a decoder trained on one encoder's space runs on every
//! other encoder's space. Absolute vs relative (cosine) vs Procrustes-translated vs an aggregated
//! projection, plus sweeps over the number of anchors and the anchor strategy.
//!
//! ```sh
//! cargo run --release --example stitch_text -- --quick   # < 5 min, prints one JSON line
//! cargo run --release --example stitch_text              # full: writes docs/RESULTS.md
//! ```

#[path = "../common/mod.rs"]
mod common;

use anyhow::Context;
use candle_core::Tensor;
use clap::Parser;
use relstitch::data::{Builtin, Dataset, SplitOptions};
use relstitch::hub::fetch::Fetcher;
use relstitch::report::plot::{bar_chart, heatmap, line_chart, Series};
use relstitch::space::anchors::{AnchorPool, AnchorStrategy};
use relstitch::space::projection::{
    AggregatedProjector, Aggregation, PreTransform, Projection, RelativeProjector,
};
use relstitch::space::translation::{LatentTranslator, TranslationMethod};
use relstitch::task::checkpoint::Space;
use relstitch::task::compatibility::Compatibility;
use relstitch::task::decoder::Head;

use common::{mean, pm, short, ENCODERS};

/// Trains a classification head on each encoder's space and runs it on every encoder's space.
///
/// Four kinds of decoder, all the paper's head (LayerNorm + Linear) on frozen encoders:
/// `absolute` reads the embedding itself; `relative` reads cosine similarities to the anchors;
/// `aggregated` reads cosine, Euclidean, L1 and L∞ relative vectors side by side, each scaled to
/// unit norm, after centering on the anchors (Cannistraci et al.'s product of invariances);
/// `translated` is the absolute decoder of B fed with A's embeddings mapped into B's space by
/// orthogonal Procrustes fitted on the anchors (Maiorca et al.). Anchors: drawn class-stratified
/// round-robin from the training split, the paper's text recipe. Metric: weighted F1.
#[derive(Parser, Debug)]
struct Args {
    /// A small run (fortunes subset, 3 encoders, 192 anchors, one seed, no sweeps) that prints one
    /// line of JSON.
    #[arg(long)]
    quick: bool,
    /// Seeds (anchor draw and head initialisation); full mode default 5.
    #[arg(long)]
    seeds: Option<u64>,
    /// Anchors of the main tables (full mode default 768, the paper's).
    #[arg(long)]
    anchors: Option<usize>,
    /// Skips the anchor-count and anchor-strategy sweeps.
    #[arg(long)]
    no_sweeps: bool,
}

/// One dataset's embedded train and test sets.
struct Task {
    name: &'static str,
    labels: Vec<String>,
    train_y: Vec<usize>,
    /// Training rows that may be anchors (distinct texts and embeddings).
    candidates: Vec<usize>,
    test_y: Vec<usize>,
    /// Per encoder: (train, test) embeddings.
    spaces: Vec<(Tensor, Tensor)>,
    about: String,
}

impl Task {
    fn num_classes(&self) -> usize {
        self.labels.len()
    }
}

fn load_task(
    name: &'static str,
    which: Builtin,
    encoders: &[&str],
    per_label: Option<(usize, usize)>,
    max_length: Option<usize>,
) -> anyhow::Result<Task> {
    let split = Dataset::builtin(which, &Fetcher::new()?)?.split(&SplitOptions::default())?;
    let (train, test) = match per_label {
        Some((a, b)) => (
            split.train.first_per_label(a),
            split.test.first_per_label(b),
        ),
        None => (split.train, split.test),
    };
    eprintln!(
        "{name}: {} train, {} test, {} labels",
        train.len(),
        test.len(),
        train.labels.len()
    );
    let mut spaces = Vec::new();
    for m in encoders {
        spaces.push((
            common::embed(m, &train.texts(), max_length)?,
            common::embed(m, &test.texts(), max_length)?,
        ));
    }
    let about = format!(
        "{} train / {} test texts{}{}",
        train.len(),
        test.len(),
        per_label.map_or(String::new(), |(a, b)| format!(
            " (the first {a} train and {b} test texts of each label of the deterministic split)"
        )),
        max_length.map_or(String::new(), |n| format!(
            ", inputs truncated to {n} tokens"
        ))
    );
    let texts: Vec<String> = train.records.iter().map(|r| r.text.clone()).collect();
    let candidates =
        common::anchor_candidates(&texts, &spaces.iter().map(|(tr, _)| tr).collect::<Vec<_>>())?;
    Ok(Task {
        name,
        labels: train.labels.clone(),
        train_y: train.label_indices(),
        candidates,
        test_y: test.label_indices(),
        spaces,
        about,
    })
}

/// Weighted F1 of every (encoder, decoder) pair for one seed, per kind of decoder.
/// `None` where the pair cannot run (absolute decoders of another width).
struct Matrices {
    abs: Vec<Vec<Option<f64>>>,
    rel: Vec<Vec<f64>>,
    agg: Vec<Vec<f64>>,
    /// Relative (cosine) after centring on the anchors' mean.
    centred: Vec<Vec<f64>>,
    /// Relative (cosine) after ZCA whitening on the anchors: `relstitch fit`'s previous default.
    white: Vec<Vec<f64>>,
    translated: Vec<Vec<f64>>,
    /// The label-free compatibility (anchor agreement) of each stitch, per kind of decoder:
    /// plain cosine, centred, whitened, translated.
    compat: [Vec<Vec<f64>>; 4],
    /// The share of the decoder's own test predictions each stitch keeps, same kinds.
    test_agreement: [Vec<Vec<f64>>; 4],
}

/// A decoder kind's fitted projectors and heads, one per encoder.
struct Relative {
    space: Space,
    projectors: Vec<RelativeProjector>,
    heads: Vec<Head>,
    test: Vec<Tensor>,
}

impl Relative {
    fn fit(task: &Task, anchors: &[Tensor], pre: PreTransform, seed: u64) -> anyhow::Result<Self> {
        let k = task.num_classes();
        let (mut projectors, mut heads, mut test) = (Vec::new(), Vec::new(), Vec::new());
        for (e, (tr, te)) in task.spaces.iter().enumerate() {
            let p = RelativeProjector::fit(&anchors[e], Projection::Cosine, pre)?;
            heads.push(common::fit_head(&p.project(tr)?, &task.train_y, k, seed)?);
            test.push(p.project(te)?);
            projectors.push(p);
        }
        Ok(Self {
            space: Space::Relative {
                projection: Projection::Cosine,
                pre_transform: pre,
            },
            projectors,
            heads,
            test,
        })
    }

    /// Weighted F1, label-free compatibility and test agreement of encoder `i` with decoder `j`.
    fn pair(
        &self,
        task: &Task,
        anchors: &[Tensor],
        i: usize,
        j: usize,
    ) -> anyhow::Result<(f64, f64, f64)> {
        let k = task.num_classes();
        let wf1 = common::weighted_f1(&self.heads[j], &self.test[i], &task.test_y, k)?;
        let c = Compatibility::relative(
            &self.heads[j],
            self.space,
            (&self.projectors[j], &anchors[j]),
            (&self.projectors[i], &anchors[i]),
        )?;
        let agree = common::agreement(&self.heads[j], &self.test[i], &self.test[j])?;
        Ok((wf1, c.agreement, agree))
    }
}

fn aggregated(anchors: &Tensor) -> anyhow::Result<AggregatedProjector> {
    Ok(AggregatedProjector::fit(
        anchors,
        &[
            Projection::Cosine,
            Projection::Euclidean,
            Projection::L1,
            Projection::LInf,
        ],
        PreTransform::NONE.with_center(true),
        Aggregation::NormalizedConcat,
    )?)
}

/// Trains all heads of one seed with `rows` as anchors and scores every pair. Without `with_abs`
/// (the sweeps), only the plain and whitened relative decoders.
fn run_seed(task: &Task, rows: &[usize], seed: u64, with_abs: bool) -> anyhow::Result<Matrices> {
    let n = task.spaces.len();
    let k = task.num_classes();
    let anchors: Vec<Tensor> = task
        .spaces
        .iter()
        .map(|(tr, _)| common::take_rows(tr, rows))
        .collect::<anyhow::Result<_>>()?;
    let rel = Relative::fit(task, &anchors, PreTransform::NONE, seed)?;
    let white = Relative::fit(task, &anchors, PreTransform::WHITENED, seed)?;
    let centred = if with_abs {
        Some(Relative::fit(
            task,
            &anchors,
            PreTransform::NONE.with_center(true),
            seed,
        )?)
    } else {
        None
    };
    let mut agg_test = Vec::new();
    let mut agg_heads = Vec::new();
    let mut abs_heads: Vec<Option<Head>> = Vec::new();
    for (e, (tr, te)) in task.spaces.iter().enumerate() {
        if with_abs {
            let agg = aggregated(&anchors[e])?;
            agg_heads.push(common::fit_head(&agg.project(tr)?, &task.train_y, k, seed)?);
            agg_test.push(agg.project(te)?);
            abs_heads.push(Some(common::fit_head(tr, &task.train_y, k, seed)?));
        } else {
            abs_heads.push(None);
        }
    }
    let grid = || vec![vec![f64::NAN; n]; n];
    let mut m = Matrices {
        abs: vec![vec![None; n]; n],
        rel: grid(),
        agg: grid(),
        centred: grid(),
        white: grid(),
        translated: grid(),
        compat: [grid(), grid(), grid(), grid()],
        test_agreement: [grid(), grid(), grid(), grid()],
    };
    for i in 0..n {
        for j in 0..n {
            let kinds = [Some(&rel), centred.as_ref(), Some(&white)];
            for (kind, r) in kinds.into_iter().enumerate() {
                let Some(r) = r else { continue };
                let (wf1, compat, agree) = r.pair(task, &anchors, i, j)?;
                match kind {
                    0 => m.rel[i][j] = wf1,
                    1 => m.centred[i][j] = wf1,
                    _ => m.white[i][j] = wf1,
                }
                m.compat[kind][i][j] = compat;
                m.test_agreement[kind][i][j] = agree;
            }
            let Some(abs_head) = &abs_heads[j] else {
                continue;
            };
            let te_i = &task.spaces[i].1;
            m.agg[i][j] = common::weighted_f1(&agg_heads[j], &agg_test[i], &task.test_y, k)?;
            if te_i.dim(1)? == task.spaces[j].1.dim(1)? {
                m.abs[i][j] = Some(common::weighted_f1(abs_head, te_i, &task.test_y, k)?);
            }
            if i == j {
                m.translated[i][j] = common::weighted_f1(abs_head, te_i, &task.test_y, k)?;
                m.compat[3][i][j] = 1.0;
                m.test_agreement[3][i][j] = 1.0;
            } else {
                let t =
                    LatentTranslator::fit(&anchors[i], &anchors[j], TranslationMethod::Procrustes)?;
                let mapped = t.apply(te_i)?;
                m.translated[i][j] = common::weighted_f1(abs_head, &mapped, &task.test_y, k)?;
                m.compat[3][i][j] = Compatibility::translated(
                    abs_head,
                    &anchors[i],
                    &anchors[j],
                    TranslationMethod::Procrustes,
                )?
                .agreement;
                m.test_agreement[3][i][j] =
                    common::agreement(abs_head, &mapped, &task.spaces[j].1)?;
            }
        }
    }
    Ok(m)
}

/// Means over the diagonal (not stitched) and the off-diagonal (stitched) cells.
fn diag_off(m: &[Vec<f64>]) -> (f64, f64) {
    let n = m.len();
    let diag: Vec<f64> = (0..n).map(|i| m[i][i]).collect();
    let off: Vec<f64> = (0..n)
        .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| m[i][j]))
        .collect();
    (mean(&diag), mean(&off))
}

fn diag_off_opt(m: &[Vec<Option<f64>>]) -> (f64, f64) {
    let n = m.len();
    let diag: Vec<f64> = (0..n).filter_map(|i| m[i][i]).collect();
    let off: Vec<f64> = (0..n)
        .flat_map(|i| (0..n).filter(move |&j| j != i).filter_map(move |j| m[i][j]))
        .collect();
    (mean(&diag), mean(&off))
}

/// Summary over seeds: per kind, (not stitched, stitched) values, one per seed.
#[derive(Default)]
struct Summary {
    abs: (Vec<f64>, Vec<f64>),
    rel: (Vec<f64>, Vec<f64>),
    agg: (Vec<f64>, Vec<f64>),
    centred: (Vec<f64>, Vec<f64>),
    white: (Vec<f64>, Vec<f64>),
    translated: (Vec<f64>, Vec<f64>),
}

/// Every seed's matrices of one dataset.
#[derive(Default)]
struct Seeds {
    rel: Vec<Vec<Vec<f64>>>,
    centred: Vec<Vec<Vec<f64>>>,
    white: Vec<Vec<Vec<f64>>>,
    translated: Vec<Vec<Vec<f64>>>,
    agg: Vec<Vec<Vec<f64>>>,
    abs: Vec<Vec<Vec<Option<f64>>>>,
    compat: [Vec<Vec<Vec<f64>>>; 4],
    test_agreement: [Vec<Vec<Vec<f64>>>; 4],
}

/// Stitched weighted F1 over the weaker of the two checkpoints' own (the diagonal), per pair.
fn kept(m: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = m.len();
    (0..n)
        .map(|i| (0..n).map(|j| m[i][j] / m[i][i].min(m[j][j])).collect())
        .collect()
}

/// Mean and worst of the off-diagonal cells.
fn mean_worst(m: &[Vec<f64>]) -> (f64, f64) {
    let off: Vec<f64> = (0..m.len())
        .flat_map(|i| (0..m.len()).filter(move |&j| j != i).map(move |j| m[i][j]))
        .collect();
    (
        mean(&off),
        off.iter().copied().fold(f64::INFINITY, f64::min),
    )
}

/// The off-diagonal cells, row by row.
fn off_diagonal(m: &[Vec<f64>]) -> Vec<f64> {
    (0..m.len())
        .flat_map(|i| (0..m.len()).filter(move |&j| j != i).map(move |j| m[i][j]))
        .collect()
}

/// Retained score (stitched over the decoder's own) per pair.
fn retained(m: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = m.len();
    (0..n)
        .map(|i| (0..n).map(|j| m[i][j] / m[j][j]).collect())
        .collect()
}

fn push(pair: &mut (Vec<f64>, Vec<f64>), (d, o): (f64, f64)) {
    pair.0.push(d);
    pair.1.push(o);
}

/// Mean over seeds of every cell.
fn mean_matrix(ms: &[Vec<Vec<f64>>]) -> Vec<Vec<f64>> {
    let n = ms[0].len();
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| mean(&ms.iter().map(|m| m[i][j]).collect::<Vec<_>>()))
                .collect()
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = std::time::Instant::now();
    let encoders: Vec<&str> = if args.quick {
        vec![ENCODERS[0], ENCODERS[2], ENCODERS[3]]
    } else {
        ENCODERS.to_vec()
    };
    let seeds = args.seeds.unwrap_or(if args.quick { 1 } else { 5 });
    let n_anchors = args.anchors.unwrap_or(if args.quick { 192 } else { 768 });

    let mut tasks = vec![load_task(
        "fortunes",
        Builtin::Fortunes,
        &encoders,
        args.quick.then_some((40, 15)),
        None,
    )?];
    if !args.quick {
        tasks.push(load_task(
            "spam-assassin",
            Builtin::SpamAssassin,
            &encoders,
            Some((250, 100)),
            Some(128),
        )?);
        tasks.push(load_task(
            "bible-genre-en",
            Builtin::BibleGenreEn,
            &encoders,
            Some((500, 100)),
            None,
        )?);
    }

    let mut md = String::from("## stitch_text: zero-shot stitching across text encoders\n\n");
    md.push_str(
        "A decoder (LayerNorm + Linear, the paper's head) is trained on the frozen embeddings of one \
         catalog encoder and evaluated, without retraining, on every encoder's embeddings of the test \
         texts (row: encoder, column: decoder). *whitened* was `relstitch fit`'s default in issue \
         16's first round (the default is now centred cosine stitched through a latent \
         translation: see `stitch_robust`): cosine similarities to the anchors after ZCA whitening fitted on the anchors (shrinkage \
         1; see `stitch_robust` for how it was chosen); *relative* is the paper's plain cosine; \
         *relative, centred* is cosine after subtracting the anchors' mean from anchors and samples; \
         *aggregated* reads cosine, Euclidean, L1 and L∞ relative vectors side by side, each scaled \
         to unit norm, after centering on the anchors (a product of invariances); *absolute* reads \
         the embedding itself (only possible between encoders of the same width); *translated* is \
         B's absolute decoder on A's embeddings mapped into B's space by orthogonal Procrustes \
         fitted on the anchors. Anchors are drawn class-stratified round-robin from the training \
         split. *Not stitched* is the mean of the diagonal (encoder = decoder), *stitched* the mean \
         of the off-diagonal pairs; weighted F1, mean ± std over seeds (anchor draw and head \
         initialisation). *Kept* is a stitch's weighted F1 over the weaker of its two checkpoints' \
         own (the issue's bar: ≥ 0.90 on the worst pair and ≥ 0.97 on average); *compatibility* is \
         the label-free estimate every stitch report prints first (`task::compatibility`: the share \
         of the decoder's anchors it labels the same from both encoders), and ρ its Spearman \
         correlation across the 20 pairs with the measured retained score (stitched over the \
         decoder's own).\n\n",
    );
    let mut quick_json = None;
    let mut pooled: [(Vec<f64>, Vec<f64>); 4] = Default::default();
    let mut overall: Vec<(String, [(f64, f64); 4])> = Vec::new();
    for task in &tasks {
        let anchors_here = n_anchors.min(task.candidates.len());
        let k = task.num_classes();
        let chance = common::chance_wf1(&task.test_y, k);
        let mut s = Summary::default();
        let mut all = Seeds::default();
        for seed in 0..seeds {
            let t = std::time::Instant::now();
            let rows = common::stratified_anchor_rows(
                &task.train_y,
                &task.candidates,
                anchors_here,
                seed,
            )?;
            let m = run_seed(task, &rows, seed, true)?;
            push(&mut s.abs, diag_off_opt(&m.abs));
            push(&mut s.rel, diag_off(&m.rel));
            push(&mut s.agg, diag_off(&m.agg));
            push(&mut s.centred, diag_off(&m.centred));
            push(&mut s.white, diag_off(&m.white));
            push(&mut s.translated, diag_off(&m.translated));
            let last = s.rel.0.len() - 1;
            eprintln!(
                "{} seed {seed}: whitened {:.3}/{:.3}, rel {:.3}/{:.3}, centred {:.3}/{:.3}, abs {:.3}/{:.3}, translated {:.3} ({:.0}s)",
                task.name,
                s.white.0[last],
                s.white.1[last],
                s.rel.0[last],
                s.rel.1[last],
                s.centred.0[last],
                s.centred.1[last],
                s.abs.0[last],
                s.abs.1[last],
                s.translated.1[last],
                t.elapsed().as_secs_f64()
            );
            all.rel.push(m.rel);
            all.centred.push(m.centred);
            all.white.push(m.white);
            all.translated.push(m.translated);
            all.agg.push(m.agg);
            all.abs.push(m.abs);
            for (c, x) in all.compat.iter_mut().zip(m.compat) {
                c.push(x);
            }
            for (c, x) in all.test_agreement.iter_mut().zip(m.test_agreement) {
                c.push(x);
            }
        }
        // Kinds in table order: whitened (previous default), plain cosine, centred, Procrustes.
        let kinds = [&all.white, &all.rel, &all.centred, &all.translated];
        let compat_of = [2, 0, 1, 3];
        let mut stats = [(0.0, 0.0); 4];
        for (q, (kind, &c)) in kinds.iter().zip(&compat_of).enumerate() {
            let wf1 = mean_matrix(kind);
            stats[q] = mean_worst(&kept(&wf1));
            pooled[q]
                .0
                .extend(off_diagonal(&mean_matrix(&all.compat[c])));
            pooled[q].1.extend(off_diagonal(&retained(&wf1)));
        }
        overall.push((task.name.to_string(), stats));
        if args.quick {
            let white = mean_matrix(&all.white);
            let (kept_mean, kept_worst) = mean_worst(&kept(&white));
            quick_json = Some(serde_json::json!({
                "abs_not_stitched_wf1": mean(&s.abs.0),
                "abs_stitched_wf1": mean(&s.abs.1),
                "rel_not_stitched_wf1": mean(&s.rel.0),
                "rel_stitched_wf1": mean(&s.rel.1),
                "translated_stitched_wf1": mean(&s.translated.1),
                "aggregated_not_stitched_wf1": mean(&s.agg.0),
                "aggregated_stitched_wf1": mean(&s.agg.1),
                "rel_centred_not_stitched_wf1": mean(&s.centred.0),
                "rel_centred_stitched_wf1": mean(&s.centred.1),
                "whitened_not_stitched_wf1": mean(&s.white.0),
                "whitened_stitched_wf1": mean(&s.white.1),
                "whitened_kept_mean": kept_mean,
                "whitened_kept_worst": kept_worst,
                "whitened_compatibility_spearman": common::spearman(
                    &off_diagonal(&mean_matrix(&all.compat[2])),
                    &off_diagonal(&retained(&white)),
                ),
                "chance_wf1": chance,
            }));
            continue;
        }
        md.push_str(&task_section(
            task,
            &encoders,
            anchors_here,
            seeds,
            chance,
            &s,
            &all,
        )?);
        if task.name == "fortunes" && !args.no_sweeps {
            md.push_str(&sweeps(task, &encoders, seeds.min(3))?);
        }
    }
    if let Some(j) = quick_json {
        eprintln!("done in {:.0}s", started.elapsed().as_secs_f64());
        println!("{j}");
        return Ok(());
    }
    md.push_str(
        "### Every dataset: kept (stitched over the weaker checkpoint's own), mean / worst of the 20 pairs\n\n\
         | dataset | whitened (previous default) | plain cosine | centred | Procrustes (absolute decoder) |\n|---|---|---|---|---|\n",
    );
    for (name, st) in &overall {
        md.push_str(&format!("| {name} |"));
        for (m, w) in st {
            md.push_str(&format!(" {m:.3} / {w:.3} |"));
        }
        md.push('\n');
    }
    md.push_str(&format!(
        "\nCompatibility against retained score over all {} pairs of all datasets (Spearman ρ): \
         whitened {:.2}, plain cosine {:.2}, centred {:.2}, Procrustes {:.2}; over the four kinds \
         together ({} stitches) {:.2}.\n\n",
        pooled[0].0.len(),
        common::spearman(&pooled[0].0, &pooled[0].1),
        common::spearman(&pooled[1].0, &pooled[1].1),
        common::spearman(&pooled[2].0, &pooled[2].1),
        common::spearman(&pooled[3].0, &pooled[3].1),
        4 * pooled[0].0.len(),
        {
            let a: Vec<f64> = pooled.iter().flat_map(|p| p.0.clone()).collect();
            let b: Vec<f64> = pooled.iter().flat_map(|p| p.1.clone()).collect();
            common::spearman(&a, &b)
        }
    ));
    md.push_str(&format!(
        "Regenerate with `{}` ({:.0} min on {}; embeddings cached under `$RELSTITCH_HOME/embeddings`, so \
         a second run skips the encoders).\n",
        common::command_line("stitch_text"),
        started.elapsed().as_secs_f64() / 60.0,
        common::machine()
    ));
    common::write_results("stitch_text", &md)?;
    println!("{md}");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn task_section(
    task: &Task,
    encoders: &[&str],
    anchors: usize,
    seeds: u64,
    chance: f64,
    s: &Summary,
    all: &Seeds,
) -> anyhow::Result<String> {
    let names: Vec<String> = encoders.iter().map(|m| short(m).to_string()).collect();
    let mut md = format!(
        "### {}: {} labels, {}; {anchors} anchors, {seeds} seeds\n\n",
        task.name,
        task.num_classes(),
        task.about
    );
    md.push_str(
        "| decoder | not stitched | stitched | stitched / not stitched | kept: mean / worst pair | compatibility ρ |\n|---|---|---|---|---|---|\n",
    );
    let ratio = |p: &(Vec<f64>, Vec<f64>)| mean(&p.1) / mean(&p.0);
    let rho = |wf1: &[Vec<Vec<f64>>], c: usize| {
        let m = mean_matrix(wf1);
        common::spearman(
            &off_diagonal(&mean_matrix(&all.compat[c])),
            &off_diagonal(&retained(&m)),
        )
    };
    for (name, p, mats, c) in [
        (
            "whitened (cosine after ZCA whitening; the previous default)",
            &s.white,
            Some(&all.white),
            Some(2),
        ),
        ("relative (cosine)", &s.rel, Some(&all.rel), Some(0)),
        (
            "relative (cosine, centred on the anchors)",
            &s.centred,
            Some(&all.centred),
            Some(1),
        ),
        (
            "aggregated (cos+L2+L1+L∞, centred)",
            &s.agg,
            Some(&all.agg),
            None,
        ),
        (
            "translated (Procrustes, absolute decoder)",
            &s.translated,
            Some(&all.translated),
            Some(3),
        ),
        ("absolute", &s.abs, None, None),
    ] {
        let kept_cell = mats.map_or("".to_string(), |m| {
            let (a, b) = mean_worst(&kept(&mean_matrix(m)));
            format!("{a:.3} / {b:.3}")
        });
        let rho_cell = match (mats, c) {
            (Some(m), Some(c)) => format!("{:.2}", rho(m, c)),
            _ => String::new(),
        };
        md.push_str(&format!(
            "| {name} | {} | {} | {:.1} % | {kept_cell} | {rho_cell} |\n",
            pm(&p.0),
            pm(&p.1),
            100.0 * ratio(p)
        ));
    }
    md.push_str(&format!(
        "| chance (majority class) | {chance:.3} | {chance:.3} | | | |\n\n\
         Absolute stitching runs only between encoders of the same width (not MPNet); its stitched \
         mean is over those pairs.\n\n"
    ));
    // Per-pair matrices, mean over seeds.
    let header = |title: &str| {
        let mut h = format!("{title}\n\n| encoder ↓ decoder → |");
        for n in &names {
            h.push_str(&format!(" {n} |"));
        }
        h.push_str("\n|---|");
        h.push_str(&"---|".repeat(names.len()));
        h.push('\n');
        h
    };
    for (title, mats, c) in [
        ("whitened (the previous default)", &all.white, 2),
        ("plain cosine (the paper's)", &all.rel, 0),
        ("cosine, centred", &all.centred, 1),
        (
            "Procrustes-translated absolute decoders",
            &all.translated,
            3,
        ),
    ] {
        let wf1 = mean_matrix(mats);
        let kp = kept(&wf1);
        let compat = mean_matrix(&all.compat[c]);
        let agree = mean_matrix(&all.test_agreement[c]);
        let (km, kw) = mean_worst(&kp);
        md.push_str(&header(&format!(
            "**{title}**: each cell `weighted F1 (kept) · compatibility`; kept mean {km:.3}, worst \
             {kw:.3}; compatibility vs retained ρ = {:.2}, vs the measured share of the decoder's \
             test predictions kept ρ = {:.2}.",
            common::spearman(&off_diagonal(&compat), &off_diagonal(&retained(&wf1))),
            common::spearman(&off_diagonal(&compat), &off_diagonal(&agree)),
        )));
        for i in 0..names.len() {
            md.push_str(&format!("| {} |", names[i]));
            for j in 0..names.len() {
                if i == j {
                    md.push_str(&format!(" **{:.3}** |", wf1[i][j]));
                } else {
                    md.push_str(&format!(
                        " {:.3} ({:.2}) · {:.2} |",
                        wf1[i][j], kp[i][j], compat[i][j]
                    ));
                }
            }
            md.push('\n');
        }
        md.push('\n');
    }
    let rel = mean_matrix(&all.rel);
    let white = mean_matrix(&all.white);
    let file = format!("stitch_text_{}_relative.svg", task.name);
    let f1 = common::write_figure(
        &file,
        &heatmap(
            &format!(
                "{}: plain cosine decoders, weighted F1 (row: encoder, column: decoder)",
                task.name
            ),
            &rel,
            &names,
            &names,
            Some((0.0, 1.0)),
        )?,
    )?;
    let f3 = common::write_figure(
        &format!("stitch_text_{}_whitened.svg", task.name),
        &heatmap(
            &format!(
                "{}: whitened decoders (the previous default), weighted F1 (row: encoder, column: decoder)",
                task.name
            ),
            &white,
            &names,
            &names,
            Some((0.0, 1.0)),
        )?,
    )?;
    let kinds = [
        ("absolute", &s.abs),
        ("relative", &s.rel),
        ("relative, centred", &s.centred),
        ("whitened", &s.white),
        ("aggregated", &s.agg),
        ("translated", &s.translated),
    ];
    let bars = bar_chart(
        &format!("{}: weighted F1, not stitched vs stitched", task.name),
        "weighted F1",
        &kinds.map(|(n, _)| n.to_string()),
        &[
            (
                "not stitched".to_string(),
                kinds.iter().map(|(_, p)| mean(&p.0)).collect(),
            ),
            (
                "stitched".to_string(),
                kinds.iter().map(|(_, p)| mean(&p.1)).collect(),
            ),
            ("chance".to_string(), vec![chance; kinds.len()]),
        ],
    )?;
    let f2 = common::write_figure(&format!("stitch_text_{}_summary.svg", task.name), &bars)?;
    md.push_str(&format!(
        "![summary]({f2})\n![whitened pairs]({f3})\n![plain cosine pairs]({f1})\n\n"
    ));
    Ok(md)
}

/// Whitened (and plain cosine) relative stitching as the number of anchors and the anchor strategy vary (three encoders of
/// different families: MiniLM-L6, MPNet, e5).
fn sweeps(task: &Task, encoders: &[&str], seeds: u64) -> anyhow::Result<String> {
    let pick: Vec<usize> = [
        "all-MiniLM-L6-v2",
        "all-mpnet-base-v2",
        "multilingual-e5-small",
    ]
    .iter()
    .filter_map(|m| encoders.iter().position(|e| e == m))
    .collect();
    let sub = Task {
        name: task.name,
        labels: task.labels.clone(),
        train_y: task.train_y.clone(),
        candidates: task.candidates.clone(),
        test_y: task.test_y.clone(),
        spaces: pick.iter().map(|&i| task.spaces[i].clone()).collect(),
        about: task.about.clone(),
    };
    let names: Vec<&str> = pick.iter().map(|&i| short(encoders[i])).collect();
    let mut md = format!(
        "#### Sweeps on {} (whitened decoders, the previous default, of {}; {seeds} seeds; the last column is the plain cosine decoders of the same runs)\n\n",
        task.name,
        names.join(", ")
    );
    let counts: Vec<usize> = [16, 32, 64, 128, 256, 512, 768, 1024]
        .into_iter()
        .filter(|&c| c <= sub.candidates.len())
        .collect();
    let (mut own, mut stitched) = (Vec::new(), Vec::new());
    md.push_str(
        "| anchors | not stitched | stitched | stitched / not stitched | plain cosine: stitched / not stitched |\n|---|---|---|---|---|\n",
    );
    for &c in &counts {
        let (mut d, mut o, mut d0, mut o0) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for seed in 0..seeds {
            let rows = common::stratified_anchor_rows(&sub.train_y, &sub.candidates, c, seed)?;
            let m = run_seed(&sub, &rows, seed, false)?;
            let (a, b) = diag_off(&m.white);
            let (a0, b0) = diag_off(&m.rel);
            d.push(a);
            o.push(b);
            d0.push(a0);
            o0.push(b0);
        }
        eprintln!("sweep {c} anchors: {} / {}", pm(&d), pm(&o));
        md.push_str(&format!(
            "| {c} | {} | {} | {:.1} % | {:.1} % |\n",
            pm(&d),
            pm(&o),
            100.0 * mean(&o) / mean(&d),
            100.0 * mean(&o0) / mean(&d0)
        ));
        own.push(d);
        stitched.push(o);
    }
    let series = |name: &str, v: &[Vec<f64>]| {
        Series::new(
            name,
            counts
                .iter()
                .zip(v)
                .map(|(&c, s)| (c as f64, mean(s)))
                .collect(),
        )
        .with_errors(v.iter().map(|s| common::mean_std(s).1).collect())
    };
    let fig = common::write_figure(
        &format!("stitch_text_{}_anchor_sweep.svg", task.name),
        &line_chart(
            &format!("{}: whitened decoders vs number of anchors", task.name),
            "anchors (log scale)",
            "weighted F1",
            &[series("not stitched", &own), series("stitched", &stitched)],
            true,
        )?,
    )?;
    md.push_str(&format!("\n![anchor sweep]({fig})\n\n"));

    // Strategies, at the main anchor count. Farthest-point and k-means need a space to select in:
    // MiniLM-L6's training embeddings (the same rows then serve as anchors for every encoder).
    let count = 768.min(sub.candidates.len());
    let label_names: Vec<String> = sub
        .candidates
        .iter()
        .map(|&r| sub.train_y[r].to_string())
        .collect();
    let reference = common::take_rows(&sub.spaces[0].0, &sub.candidates)?;
    md.push_str(&format!(
        "Anchor strategies at {count} anchors (farthest-point and k-means select in {}'s space; the \
         same samples are then the anchors of every encoder):\n\n| strategy | not stitched | stitched | stitched / not stitched | plain cosine: stitched / not stitched |\n|---|---|---|---|---|\n",
        names[0]
    ));
    let (mut groups, mut bars_own, mut bars_st) = (Vec::new(), Vec::new(), Vec::new());
    for (name, make) in [
        (
            "uniform",
            (|s| AnchorStrategy::Uniform { seed: s }) as fn(u64) -> AnchorStrategy,
        ),
        ("stratified", |s| AnchorStrategy::Stratified { seed: s }),
        ("farthest_point", |s| AnchorStrategy::FarthestPoint {
            seed: s,
        }),
        ("kmeans", |s| AnchorStrategy::KMeans {
            seed: s,
            iterations: 10,
        }),
    ] {
        let (mut d, mut o, mut d0, mut o0) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for seed in 0..seeds {
            let pool = AnchorPool::new(sub.candidates.len())
                .with_labels(&label_names)
                .with_space(&reference);
            let rows: Vec<usize> = make(seed)
                .select_rows(&pool, count)
                .with_context(|| format!("{name} anchors"))?
                .into_iter()
                .map(|i| sub.candidates[i])
                .collect();
            let m = run_seed(&sub, &rows, seed, false)?;
            let (a, b) = diag_off(&m.white);
            let (a0, b0) = diag_off(&m.rel);
            d.push(a);
            o.push(b);
            d0.push(a0);
            o0.push(b0);
        }
        eprintln!("strategy {name}: {} / {}", pm(&d), pm(&o));
        md.push_str(&format!(
            "| {name} | {} | {} | {:.1} % | {:.1} % |\n",
            pm(&d),
            pm(&o),
            100.0 * mean(&o) / mean(&d),
            100.0 * mean(&o0) / mean(&d0)
        ));
        groups.push(name.to_string());
        bars_own.push(mean(&d));
        bars_st.push(mean(&o));
    }
    let fig = common::write_figure(
        &format!("stitch_text_{}_strategies.svg", task.name),
        &bar_chart(
            &format!("{}: anchor strategies ({count} anchors)", task.name),
            "weighted F1",
            &groups,
            &[
                ("not stitched".to_string(), bars_own),
                ("stitched".to_string(), bars_st),
            ],
        )?,
    )?;
    md.push_str(&format!("\n![anchor strategies]({fig})\n\n"));
    Ok(md)
}
