//! Zero-shot stitching across languages (the paper's Sec. 5.3 set-up on parallel Bibles): a genre
//! classifier trained on English verses (King James) with an English encoder runs on Spanish
//! verses (Reina-Valera 1909) encoded by a multilingual encoder, through *parallel* anchors (the
//! same verses in both languages). Also the translation-based variant, against chance and against
//! a decoder trained directly on Spanish.
//!
//! ```sh
//! cargo run --release --example stitch_languages -- --quick   # < 5 min, prints one JSON line
//! cargo run --release --example stitch_languages              # full: writes docs/RESULTS.md
//! ```

#[path = "../common/mod.rs"]
mod common;

use clap::Parser;
use relstitch::data::{bible, SplitOptions};
use relstitch::hub::fetch::Fetcher;
use relstitch::report::plot::bar_chart;
use relstitch::space::translation::{LatentTranslator, TranslationMethod};

use common::{mean, pm, short};

/// English → Spanish stitching of a Bible-genre classifier (law, history, poetry, prophecy,
/// gospels, letters).
///
/// The English decoder is trained on the King James verses embedded by `--english` (default
/// all-MiniLM-L6-v2, which has never been trained on Spanish); at test time the Spanish verses are
/// embedded by `--spanish` (default multilingual-e5-small, with its `query: ` prefix). Relative
/// stitching: both sides compute cosine similarities to the same anchor verses, each in its own
/// language, and the English head reads the Spanish relative vectors unchanged. Translated
/// stitching: Procrustes maps the Spanish embeddings into the English space, fitted on the
/// parallel anchors; the English absolute head reads them. Train/test split by verse id, so the
/// two languages split identically; anchors come from the training verses.
#[derive(Parser, Debug)]
struct Args {
    /// A small run (50 train / 20 test verses per genre, 128 anchors, one seed) that prints one
    /// line of JSON.
    #[arg(long)]
    quick: bool,
    /// The English encoders, comma-separated: each gets its own English decoder (quick mode uses
    /// the first). The default pairs an English-only encoder with the multilingual one, and the
    /// multilingual one with itself.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "all-MiniLM-L6-v2,multilingual-e5-small"
    )]
    english: Vec<String>,
    /// The Spanish (multilingual) encoder.
    #[arg(long, default_value = "multilingual-e5-small")]
    spanish: String,
    /// Seeds (anchor draw and head initialisation); full mode default 5.
    #[arg(long)]
    seeds: Option<u64>,
    /// Anchors (full mode default 768).
    #[arg(long)]
    anchors: Option<usize>,
    /// Training verses per genre (full mode default 500).
    #[arg(long)]
    train_per_genre: Option<usize>,
    /// Test verses per genre (full mode default 100).
    #[arg(long)]
    test_per_genre: Option<usize>,
}

/// Weighted F1 of every variant, one value per seed.
#[derive(Default)]
struct Runs {
    en_own: Vec<f64>,
    es_own_rel: Vec<f64>,
    es_own_abs: Vec<f64>,
    en_to_es_rel: Vec<f64>,
    es_own_centred: Vec<f64>,
    en_to_es_centred: Vec<f64>,
    en_to_es_abs: Vec<f64>,
    en_to_es_translated: Vec<f64>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = std::time::Instant::now();
    let seeds = args.seeds.unwrap_or(if args.quick { 1 } else { 5 });
    let n_anchors = args.anchors.unwrap_or(if args.quick { 128 } else { 768 });
    let per_train = args
        .train_per_genre
        .unwrap_or(if args.quick { 50 } else { 500 });
    let per_test = args
        .test_per_genre
        .unwrap_or(if args.quick { 20 } else { 100 });

    let (en, es) = bible::load_parallel(&Fetcher::new()?)?;
    let (en, es) = (
        en.split(&SplitOptions::default())?,
        es.split(&SplitOptions::default())?,
    );
    let (en_train, en_test) = (
        en.train.first_per_label(per_train),
        en.test.first_per_label(per_test),
    );
    let (es_train, es_test) = (
        es.train.first_per_label(per_train),
        es.test.first_per_label(per_test),
    );
    // The same verses on both sides, row by row: the anchors are parallel.
    let same = |a: &relstitch::data::Dataset, b: &relstitch::data::Dataset| {
        a.records.len() == b.records.len()
            && a.records
                .iter()
                .zip(&b.records)
                .all(|(x, y)| x.id == y.id && x.label == y.label)
    };
    anyhow::ensure!(
        same(&en_train, &es_train) && same(&en_test, &es_test),
        "the English and Spanish splits are not aligned verse by verse"
    );
    let labels = en_train.label_indices();
    let test_y = en_test.label_indices();
    let k = en_train.labels.len();
    eprintln!(
        "{} train / {} test verses per language, {k} genres, {n_anchors} anchors, {seeds} seed(s)",
        en_train.len(),
        en_test.len()
    );

    let es_tr = common::embed(&args.spanish, &es_train.texts(), None)?;
    let es_te = common::embed(&args.spanish, &es_test.texts(), None)?;

    // Anchor candidates: training verses whose text is not repeated in either language (some
    // verses recur word for word; two identical anchors would be degenerate). Checking the
    // Spanish embeddings covers the Spanish texts.
    let en_texts: Vec<String> = en_train.records.iter().map(|r| r.text.clone()).collect();
    let candidates = common::anchor_candidates(&en_texts, &[&es_tr])?;
    let english: Vec<String> = if args.quick {
        args.english.iter().take(1).cloned().collect()
    } else {
        args.english.clone()
    };
    let mut all: Vec<(String, Runs)> = Vec::new();
    for model in &english {
        let en_tr = common::embed(model, &en_train.texts(), None)?;
        let en_te = common::embed(model, &en_test.texts(), None)?;
        let mut r = Runs::default();
        for seed in 0..seeds {
            let rows = common::stratified_anchor_rows(
                &labels,
                &candidates,
                n_anchors.min(candidates.len()),
                seed,
            )?;
            let (en_a, es_a) = (
                common::take_rows(&en_tr, &rows)?,
                common::take_rows(&es_tr, &rows)?,
            );
            // Relative: English head, Spanish relative vectors w.r.t. the Spanish anchor verses.
            let en_rel_head =
                common::fit_head(&common::relative(&en_tr, &en_a)?, &labels, k, seed)?;
            let es_rel_test = common::relative(&es_te, &es_a)?;
            r.en_own.push(common::weighted_f1(
                &en_rel_head,
                &common::relative(&en_te, &en_a)?,
                &test_y,
                k,
            )?);
            r.en_to_es_rel
                .push(common::weighted_f1(&en_rel_head, &es_rel_test, &test_y, k)?);
            // The same, centred on the anchors' mean (e5's space is strongly anisotropic).
            let centred_head =
                common::fit_head(&common::relative_centred(&en_tr, &en_a)?, &labels, k, seed)?;
            let es_centred_test = common::relative_centred(&es_te, &es_a)?;
            r.en_to_es_centred.push(common::weighted_f1(
                &centred_head,
                &es_centred_test,
                &test_y,
                k,
            )?);
            let es_centred_head =
                common::fit_head(&common::relative_centred(&es_tr, &es_a)?, &labels, k, seed)?;
            r.es_own_centred.push(common::weighted_f1(
                &es_centred_head,
                &es_centred_test,
                &test_y,
                k,
            )?);
            // Spanish decoders, trained directly on Spanish (the upper reference).
            let es_rel_head =
                common::fit_head(&common::relative(&es_tr, &es_a)?, &labels, k, seed)?;
            r.es_own_rel
                .push(common::weighted_f1(&es_rel_head, &es_rel_test, &test_y, k)?);
            let es_abs_head = common::fit_head(&es_tr, &labels, k, seed)?;
            r.es_own_abs
                .push(common::weighted_f1(&es_abs_head, &es_te, &test_y, k)?);
            // Absolute: the English head on Spanish embeddings as they are (only if widths agree),
            // and after Procrustes from the Spanish space into the English one.
            let en_abs_head = common::fit_head(&en_tr, &labels, k, seed)?;
            if es_te.dim(1)? == en_te.dim(1)? {
                r.en_to_es_abs
                    .push(common::weighted_f1(&en_abs_head, &es_te, &test_y, k)?);
            }
            let t = LatentTranslator::fit(&es_a, &en_a, TranslationMethod::Procrustes)?;
            r.en_to_es_translated.push(common::weighted_f1(
                &en_abs_head,
                &t.apply(&es_te)?,
                &test_y,
                k,
            )?);
            eprintln!(
                "seed {seed}: en {:.3}, es own {:.3}, en→es relative {:.3}, translated {:.3}",
                r.en_own[seed as usize],
                r.es_own_rel[seed as usize],
                r.en_to_es_rel[seed as usize],
                r.en_to_es_translated[seed as usize]
            );
        }
        eprintln!("English encoder {model} done");
        all.push((model.clone(), r));
    }
    let chance = common::chance_wf1(&test_y, k);

    let (first, r) = all
        .first()
        .ok_or_else(|| anyhow::anyhow!("no English encoder given (--english)"))?;
    if args.quick {
        eprintln!("done in {:.0}s", started.elapsed().as_secs_f64());
        println!(
            "{}",
            serde_json::json!({
                "english_encoder": first,
                "es_not_stitched_wf1": mean(&r.es_own_rel),
                "en_to_es_rel_stitched_wf1": mean(&r.en_to_es_rel),
                "en_to_es_rel_centred_stitched_wf1": mean(&r.en_to_es_centred),
                "en_to_es_translated_wf1": mean(&r.en_to_es_translated),
                "en_to_es_abs_stitched_wf1": (!r.en_to_es_abs.is_empty()).then(|| mean(&r.en_to_es_abs)),
                "en_not_stitched_wf1": mean(&r.en_own),
                "chance_wf1": chance,
            })
        );
        return Ok(());
    }

    let es_name = short(&args.spanish);
    let en_names: Vec<&str> = all.iter().map(|(m, _)| short(m)).collect();
    let mut md = String::from("## stitch_languages: English decoder, Spanish inputs\n\n");
    md.push_str(&format!(
        "Bible-genre classification ({k} genres: {}) on verses aligned by id between the King James \
         Bible (English) and the Reina-Valera 1909 (Spanish), both from Debian's SWORD packages. \
         {} training and {} test verses per language (the first {per_train} / {per_test} of each genre \
         after the deterministic split by verse id); {n_anchors} parallel anchors drawn class-stratified \
         from the training verses (never a verse whose text repeats); {seeds} seeds (anchor draw and \
         head initialisation); weighted F1 on the Spanish test verses unless said otherwise. English \
         encoders: {}; Spanish encoder: {es_name} (prefix `query: `).\n\n",
        en_train.labels.join(", "),
        en_train.len(),
        en_test.len(),
        en_names.join(", ")
    ));
    md.push_str(&format!(
        "| decoder trained on | test inputs | stitching | weighted F1 |\n|---|---|---|---|\n\
         | Spanish, {es_name} | Spanish | none (relative) | {} |\n\
         | Spanish, {es_name} | Spanish | none (relative, centred) | {} |\n\
         | Spanish, {es_name} | Spanish | none (absolute) | {} |\n",
        pm(&r.es_own_rel),
        pm(&r.es_own_centred),
        pm(&r.es_own_abs)
    ));
    for ((_, r), en_name) in all.iter().zip(&en_names) {
        let rows: [(&str, &str, &Vec<f64>); 5] = [
            ("English", "none (relative)", &r.en_own),
            ("Spanish", "**relative, zero-shot**", &r.en_to_es_rel),
            (
                "Spanish",
                "relative centred on the anchors, zero-shot",
                &r.en_to_es_centred,
            ),
            (
                "Spanish",
                "translated (Procrustes on the anchors)",
                &r.en_to_es_translated,
            ),
            ("Spanish", "absolute, naive (same width)", &r.en_to_es_abs),
        ];
        for (inputs, how, v) in rows {
            if !v.is_empty() {
                md.push_str(&format!(
                    "| English, {en_name} | {inputs} | {how} | {} |\n",
                    pm(v)
                ));
            }
        }
    }
    md.push_str(&format!(
        "| chance (majority genre) | Spanish | | {chance:.3} |\n\n"
    ));
    for ((_, r), en_name) in all.iter().zip(&en_names) {
        md.push_str(&format!(
            "- English decoder on {en_name}: relative stitching keeps {:.1} % of the Spanish decoder's own \
             score ({:.1}× chance); centred, {:.1} % of the centred Spanish decoder's; the translated \
             variant keeps {:.1} %.\n",
            100.0 * mean(&r.en_to_es_rel) / mean(&r.es_own_rel),
            mean(&r.en_to_es_rel) / chance,
            100.0 * mean(&r.en_to_es_centred) / mean(&r.es_own_centred),
            100.0 * mean(&r.en_to_es_translated) / mean(&r.es_own_rel),
        ));
    }
    let groups: Vec<String> = en_names
        .iter()
        .map(|n| format!("English decoder on {n}"))
        .collect();
    let per = |f: &dyn Fn(&Runs) -> f64| all.iter().map(|(_, r)| f(r)).collect::<Vec<f64>>();
    let fig = common::write_figure(
        "stitch_languages.svg",
        &bar_chart(
            &format!("Spanish verses ({es_name}), weighted F1"),
            "weighted F1",
            &groups,
            &[
                ("Spanish decoder".to_string(), per(&|r| mean(&r.es_own_rel))),
                (
                    "en→es relative".to_string(),
                    per(&|r| mean(&r.en_to_es_rel)),
                ),
                (
                    "en→es translated".to_string(),
                    per(&|r| mean(&r.en_to_es_translated)),
                ),
                (
                    "en→es absolute".to_string(),
                    per(&|r| {
                        if r.en_to_es_abs.is_empty() {
                            0.0
                        } else {
                            mean(&r.en_to_es_abs)
                        }
                    }),
                ),
                ("chance".to_string(), vec![chance; groups.len()]),
            ],
        )?,
    )?;
    md.push_str(&format!(
        "\n![languages]({fig})\n\nRegenerate with `{}` ({:.0} min on {}).\n",
        common::command_line("stitch_languages"),
        started.elapsed().as_secs_f64() / 60.0,
        common::machine()
    ));
    common::write_results("stitch_languages", &md)?;
    println!("{md}");
    Ok(())
}
