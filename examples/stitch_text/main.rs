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
use relstitch::space::projection::{AggregatedProjector, Aggregation, PreTransform, Projection};
use relstitch::space::translation::{LatentTranslator, TranslationMethod};
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
    translated: Vec<Vec<f64>>,
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

/// Trains all heads of one seed with `rows` as anchors and scores every pair.
fn run_seed(task: &Task, rows: &[usize], seed: u64, with_abs: bool) -> anyhow::Result<Matrices> {
    let n = task.spaces.len();
    let k = task.num_classes();
    let anchors: Vec<Tensor> = task
        .spaces
        .iter()
        .map(|(tr, _)| common::take_rows(tr, rows))
        .collect::<anyhow::Result<_>>()?;
    let mut rel_test = Vec::new();
    let mut agg_test = Vec::new();
    let mut rel_heads = Vec::new();
    let mut agg_heads = Vec::new();
    let mut centred_test = Vec::new();
    let mut centred_heads = Vec::new();
    let mut abs_heads: Vec<Option<Head>> = Vec::new();
    for (e, (tr, te)) in task.spaces.iter().enumerate() {
        let r_tr = common::relative(tr, &anchors[e])?;
        rel_test.push(common::relative(te, &anchors[e])?);
        rel_heads.push(common::fit_head(&r_tr, &task.train_y, k, seed)?);
        if with_abs {
            centred_heads.push(common::fit_head(
                &common::relative_centred(tr, &anchors[e])?,
                &task.train_y,
                k,
                seed,
            )?);
            centred_test.push(common::relative_centred(te, &anchors[e])?);
            let agg = aggregated(&anchors[e])?;
            agg_heads.push(common::fit_head(&agg.project(tr)?, &task.train_y, k, seed)?);
            agg_test.push(agg.project(te)?);
            abs_heads.push(Some(common::fit_head(tr, &task.train_y, k, seed)?));
        } else {
            abs_heads.push(None);
        }
    }
    let mut m = Matrices {
        abs: vec![vec![None; n]; n],
        rel: vec![vec![0.0; n]; n],
        agg: vec![vec![0.0; n]; n],
        centred: vec![vec![0.0; n]; n],
        translated: vec![vec![0.0; n]; n],
    };
    for i in 0..n {
        for j in 0..n {
            m.rel[i][j] = common::weighted_f1(&rel_heads[j], &rel_test[i], &task.test_y, k)?;
            let Some(abs_head) = &abs_heads[j] else {
                continue;
            };
            let te_i = &task.spaces[i].1;
            m.agg[i][j] = common::weighted_f1(&agg_heads[j], &agg_test[i], &task.test_y, k)?;
            m.centred[i][j] =
                common::weighted_f1(&centred_heads[j], &centred_test[i], &task.test_y, k)?;
            if te_i.dim(1)? == task.spaces[j].1.dim(1)? {
                m.abs[i][j] = Some(common::weighted_f1(abs_head, te_i, &task.test_y, k)?);
            }
            m.translated[i][j] = if i == j {
                common::weighted_f1(abs_head, te_i, &task.test_y, k)?
            } else {
                let t =
                    LatentTranslator::fit(&anchors[i], &anchors[j], TranslationMethod::Procrustes)?;
                common::weighted_f1(abs_head, &t.apply(te_i)?, &task.test_y, k)?
            };
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
    translated: (Vec<f64>, Vec<f64>),
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
    }

    let mut md = String::from("## stitch_text: zero-shot stitching across text encoders\n\n");
    md.push_str(
        "A decoder (LayerNorm + Linear, the paper's head) is trained on the frozen embeddings of one \
         catalog encoder and evaluated, without retraining, on every encoder's embeddings of the test \
         texts (row: encoder, column: decoder). *absolute* reads the embedding itself (only possible \
         between encoders of the same width); *relative* reads cosine similarities to the anchors; \
         *relative, centred* is the same after subtracting the anchors' mean from anchors and samples; \
         *aggregated* reads cosine, Euclidean, L1 and L∞ relative vectors side by side, each scaled to \
         unit norm, after centering on the anchors (a product of invariances); *translated* is B's absolute decoder on A's embeddings \
         mapped into B's space by orthogonal Procrustes fitted on the anchors. Anchors are drawn \
         class-stratified round-robin from the training split. *Not stitched* is the mean of the \
         diagonal (encoder = decoder), *stitched* the mean of the off-diagonal pairs; weighted F1, \
         mean ± std over seeds (anchor draw and head initialisation).\n\n",
    );
    let mut quick_json = None;
    for task in &tasks {
        let anchors_here = n_anchors.min(task.candidates.len());
        let k = task.num_classes();
        let chance = common::chance_wf1(&task.test_y, k);
        let mut s = Summary::default();
        let (mut rels, mut aggs, mut trs, mut abss) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
            push(&mut s.translated, diag_off(&m.translated));
            eprintln!(
                "{} seed {seed}: rel {:.3}/{:.3}, abs {:.3}/{:.3}, translated {:.3}, aggregated {:.3}/{:.3} ({:.0}s)",
                task.name,
                s.rel.0[seed as usize],
                s.rel.1[seed as usize],
                s.abs.0[seed as usize],
                s.abs.1[seed as usize],
                s.translated.1[seed as usize],
                s.agg.0[seed as usize],
                s.agg.1[seed as usize],
                t.elapsed().as_secs_f64()
            );
            rels.push(m.rel);
            aggs.push(m.agg);
            trs.push(m.translated);
            abss.push(m.abs);
        }
        if args.quick {
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
            &rels,
            &abss,
            &trs,
            &aggs,
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
    rels: &[Vec<Vec<f64>>],
    abss: &[Vec<Vec<Option<f64>>>],
    trs: &[Vec<Vec<f64>>],
    aggs: &[Vec<Vec<f64>>],
) -> anyhow::Result<String> {
    let names: Vec<String> = encoders.iter().map(|m| short(m).to_string()).collect();
    let mut md = format!(
        "### {}: {} labels, {}; {anchors} anchors, {seeds} seeds\n\n",
        task.name,
        task.num_classes(),
        task.about
    );
    md.push_str(
        "| decoder | not stitched | stitched | stitched / not stitched |\n|---|---|---|---|\n",
    );
    let ratio = |p: &(Vec<f64>, Vec<f64>)| mean(&p.1) / mean(&p.0);
    for (name, p) in [
        ("absolute", &s.abs),
        ("relative (cosine)", &s.rel),
        ("relative (cosine, centred on the anchors)", &s.centred),
        ("aggregated (cos+L2+L1+L∞, centred)", &s.agg),
        ("translated (Procrustes, absolute decoder)", &s.translated),
    ] {
        md.push_str(&format!(
            "| {name} | {} | {} | {:.1} % |\n",
            pm(&p.0),
            pm(&p.1),
            100.0 * ratio(p)
        ));
    }
    md.push_str(&format!(
        "| chance (majority class) | {chance:.3} | {chance:.3} | |\n\n\
         Absolute stitching runs only between encoders of the same width (not MPNet); its stitched \
         mean is over those pairs.\n\n"
    ));
    // Per-pair matrices, mean over seeds.
    let rel = mean_matrix(rels);
    let tr = mean_matrix(trs);
    let agg = mean_matrix(aggs);
    let abs: Vec<Vec<String>> = (0..names.len())
        .map(|i| {
            (0..names.len())
                .map(|j| {
                    let v: Vec<f64> = abss.iter().filter_map(|m| m[i][j]).collect();
                    if v.is_empty() {
                        "n/a".to_string()
                    } else {
                        format!("{:.3}", mean(&v))
                    }
                })
                .collect()
        })
        .collect();
    md.push_str("Per pair (mean over seeds), each cell `relative / absolute / translated / aggregated`:\n\n| encoder ↓ decoder → |");
    for n in &names {
        md.push_str(&format!(" {n} |"));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(names.len()));
    md.push('\n');
    for i in 0..names.len() {
        md.push_str(&format!("| {} |", names[i]));
        for j in 0..names.len() {
            md.push_str(&format!(
                " {:.3} / {} / {:.3} / {:.3} |",
                rel[i][j], abs[i][j], tr[i][j], agg[i][j]
            ));
        }
        md.push('\n');
    }
    let file = format!("stitch_text_{}_relative.svg", task.name);
    let f1 = common::write_figure(
        &file,
        &heatmap(
            &format!(
                "{}: relative decoders, weighted F1 (row: encoder, column: decoder)",
                task.name
            ),
            &rel,
            &names,
            &names,
            Some((0.0, 1.0)),
        )?,
    )?;
    let bars = bar_chart(
        &format!("{}: weighted F1, not stitched vs stitched", task.name),
        "weighted F1",
        &[
            "absolute",
            "relative",
            "relative, centred",
            "aggregated",
            "translated",
        ]
        .map(String::from),
        &[
            (
                "not stitched".to_string(),
                vec![
                    mean(&s.abs.0),
                    mean(&s.rel.0),
                    mean(&s.centred.0),
                    mean(&s.agg.0),
                    mean(&s.translated.0),
                ],
            ),
            (
                "stitched".to_string(),
                vec![
                    mean(&s.abs.1),
                    mean(&s.rel.1),
                    mean(&s.centred.1),
                    mean(&s.agg.1),
                    mean(&s.translated.1),
                ],
            ),
            ("chance".to_string(), vec![chance; 5]),
        ],
    )?;
    let f2 = common::write_figure(&format!("stitch_text_{}_summary.svg", task.name), &bars)?;
    md.push_str(&format!("\n![summary]({f2})\n![relative pairs]({f1})\n\n"));
    Ok(md)
}

/// Relative stitching as the number of anchors and the anchor strategy vary (three encoders of
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
        "#### Sweeps on {} (relative decoders of {}; {seeds} seeds)\n\n",
        task.name,
        names.join(", ")
    );
    let counts: Vec<usize> = [16, 32, 64, 128, 256, 512, 768, 1024]
        .into_iter()
        .filter(|&c| c <= sub.candidates.len())
        .collect();
    let (mut own, mut stitched) = (Vec::new(), Vec::new());
    md.push_str(
        "| anchors | not stitched | stitched | stitched / not stitched |\n|---|---|---|---|\n",
    );
    for &c in &counts {
        let (mut d, mut o) = (Vec::new(), Vec::new());
        for seed in 0..seeds {
            let rows = common::stratified_anchor_rows(&sub.train_y, &sub.candidates, c, seed)?;
            let (a, b) = diag_off(&run_seed(&sub, &rows, seed, false)?.rel);
            d.push(a);
            o.push(b);
        }
        eprintln!("sweep {c} anchors: {} / {}", pm(&d), pm(&o));
        md.push_str(&format!(
            "| {c} | {} | {} | {:.1} % |\n",
            pm(&d),
            pm(&o),
            100.0 * mean(&o) / mean(&d)
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
            &format!("{}: relative decoders vs number of anchors", task.name),
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
         same samples are then the anchors of every encoder):\n\n| strategy | not stitched | stitched | stitched / not stitched |\n|---|---|---|---|\n",
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
        let (mut d, mut o) = (Vec::new(), Vec::new());
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
            let (a, b) = diag_off(&run_seed(&sub, &rows, seed, false)?.rel);
            d.push(a);
            o.push(b);
        }
        eprintln!("strategy {name}: {} / {}", pm(&d), pm(&o));
        md.push_str(&format!(
            "| {name} | {} | {} | {:.1} % |\n",
            pm(&d),
            pm(&o),
            100.0 * mean(&o) / mean(&d)
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
