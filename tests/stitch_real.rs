//! Zero-shot stitching on real encoders and real data (the `fortunes` topic dataset, fetched from
//! Debian): decoders trained with one encoder run on another.
//!
//! To keep CI fast the tests use a fixed, stratified subset of the real train/test split (every
//! label kept); embeddings are cached per model and text, so the tests share the work.
//! Run optimised: `cargo test --release --test stitch_real -- --test-threads 1`.

use std::sync::OnceLock;

use relstitch::data::{Builtin, Dataset, SplitOptions};
use relstitch::hub::fetch::Fetcher;
use relstitch::space::anchors::AnchorStrategy;
use relstitch::space::projection::{PreTransform, Projection};
use relstitch::space::translation::TranslationMethod;
use relstitch::task::checkpoint::{Checkpoint, Space};
use relstitch::task::decoder::TrainOptions;
use relstitch::task::stitch::{
    fit, AnchorChoice, FitOptions, Pipeline, RelativeStitch, StitchOptions, StitchReport,
};
use relstitch::Error;

const TRAIN_PER_LABEL: usize = 110;
const TEST_PER_LABEL: usize = 28;
const ANCHORS: usize = 384;

fn data() -> &'static (Dataset, Dataset) {
    static DATA: OnceLock<(Dataset, Dataset)> = OnceLock::new();
    DATA.get_or_init(|| {
        let fetcher = Fetcher::new().map(|f| f.with_quiet(true));
        let full = fetcher
            .and_then(|f| Dataset::builtin(Builtin::Fortunes, &f))
            .and_then(|d| d.split(&SplitOptions::default()));
        match full {
            Ok(s) => (
                s.train.first_per_label(TRAIN_PER_LABEL),
                s.test.first_per_label(TEST_PER_LABEL),
            ),
            Err(e) => panic!("cannot fetch the fortunes dataset: {e}"),
        }
    })
}

/// 40 stratified anchors and 3 epochs, the other options at their defaults: quick fits on
/// `first_per_label(20)` for tests of the mechanics.
fn quick_options() -> FitOptions {
    FitOptions {
        anchors: AnchorChoice::Select {
            count: 40,
            strategy: AnchorStrategy::Stratified { seed: 0 },
        },
        train: TrainOptions {
            epochs: 3,
            ..TrainOptions::default()
        },
        ..FitOptions::default()
    }
}

fn options(space: Space) -> FitOptions {
    FitOptions {
        anchors: AnchorChoice::Select {
            count: ANCHORS,
            strategy: AnchorStrategy::Stratified { seed: 0 },
        },
        space,
        train: TrainOptions {
            epochs: 60,
            patience: 8,
            ..TrainOptions::default()
        },
        ..FitOptions::default()
    }
}

fn relative() -> Space {
    Space::Relative {
        projection: Projection::Cosine,
        pre_transform: PreTransform::NONE,
    }
}

fn chance(test: &Dataset) -> f64 {
    // Weighted F1 of always predicting the majority class.
    let counts = test.label_counts();
    let max = *counts.iter().max().unwrap_or(&0) as f64;
    let n = test.len() as f64;
    let p = max / n;
    (2.0 * p / (1.0 + p)) * p
}

#[test]
fn relative_stitching_keeps_90_percent_across_three_encoders() -> anyhow::Result<()> {
    let (train, test) = data();
    let names = [
        "all-MiniLM-L6-v2",
        "all-mpnet-base-v2",
        "paraphrase-MiniLM-L3-v2",
    ];
    let ckpts: Vec<Checkpoint> = names
        .iter()
        .map(|m| fit(m, train, &options(relative())))
        .collect::<Result<_, _>>()?;
    let o = StitchOptions::default();
    let mut retained = Vec::new();
    for (i, a) in ckpts.iter().enumerate() {
        for (j, b) in ckpts.iter().enumerate() {
            if i == j {
                continue;
            }
            let stitched = Pipeline::stitch(a, b, &o)?;
            let report = StitchReport::evaluate(a, b, &stitched, test, &o)?;
            eprintln!("encoder {} -> decoder {}:\n{report}", names[i], names[j]);
            assert!(
                report.decoder_checkpoint.weighted_f1 > 3.0 * chance(test),
                "{report}"
            );
            retained.push((names[i], names[j], report.retained()));
        }
    }
    eprintln!("retained weighted F1 (stitched / decoder's own): {retained:?}");
    for (a, b, r) in &retained {
        // The bar of the issue for the default pair, both directions; every pair far above the
        // paper's ~85% average and far above absolute stitching.
        let bar = if [*a, *b].contains(&"paraphrase-MiniLM-L3-v2") {
            0.85
        } else {
            0.9
        };
        assert!(
            *r >= bar,
            "encoder {a} with decoder {b}: stitched keeps only {r:.3} (< {bar})"
        );
    }
    Ok(())
}

#[test]
fn absolute_stitching_is_near_chance_and_procrustes_repairs_it() -> anyhow::Result<()> {
    let (train, test) = data();
    // Two 384-wide encoders trained separately (English MiniLM; multilingual e5 from another
    // initialisation and vocabulary): their absolute coordinates do not line up. (MiniLM-L3 is
    // not used here: it shares MiniLM-L6's ancestry, and a naive absolute stitch between them keeps
    // ~65% of the score.)
    let a = fit("all-MiniLM-L6-v2", train, &options(Space::Absolute))?;
    let e5 = FitOptions {
        encoder: relstitch::encoder::EncoderOptions::default().with_prefix("query: "),
        ..options(Space::Absolute)
    };
    let b = fit("multilingual-e5-small", train, &e5)?;
    let own = Pipeline::from_checkpoint(&b, &StitchOptions::default())?.evaluate(test)?;

    // Naive absolute stitch: B's head fed A's raw embeddings (the paper's control).
    let naive = Checkpoint {
        config: relstitch::task::checkpoint::CheckpointConfig {
            encoder: a.config.encoder.clone(),
            ..b.config.clone()
        },
        ..b.clone()
    };
    let naive = Pipeline::from_checkpoint(&naive, &StitchOptions::default())?.evaluate(test)?;

    let translated = Pipeline::stitch(
        &a,
        &b,
        &StitchOptions {
            translation: TranslationMethod::Procrustes,
            ..Default::default()
        },
    )?
    .evaluate(test)?;
    let c = chance(test);
    eprintln!(
        "B own {:.3}, naive absolute stitch {:.3}, Procrustes {:.3}, chance {:.3}",
        own.weighted_f1, naive.weighted_f1, translated.weighted_f1, c
    );
    assert!(
        naive.weighted_f1 < 0.5 * own.weighted_f1,
        "naive absolute stitching should collapse: {naive:?} vs {own:?}"
    );
    assert!(
        translated.weighted_f1 > 0.8 * own.weighted_f1 && translated.weighted_f1 > 3.0 * c,
        "Procrustes: {translated:?} vs {own:?}"
    );
    Ok(())
}

#[test]
fn checkpoints_round_trip_and_training_is_deterministic() -> anyhow::Result<()> {
    let (train, test) = data();
    let o = options(relative());
    let a = fit("all-MiniLM-L6-v2", train, &o)?;
    let again = fit("all-MiniLM-L6-v2", train, &o)?;
    for (k, w) in &a.weights {
        let w2 = &again.weights[k];
        assert_eq!(
            w.to_vec1::<f32>()
                .or_else(|_| w.flatten_all()?.to_vec1::<f32>())?,
            w2.flatten_all()?.to_vec1::<f32>()?,
            "weight {k} differs between two fits with the same seed"
        );
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ckpt");
    a.save(&path)?;
    let loaded = Checkpoint::load(&path)?;
    assert_eq!(loaded.config, a.config);
    let texts: Vec<&str> = test
        .records
        .iter()
        .take(40)
        .map(|r| r.text.as_str())
        .collect();
    let p1 = Pipeline::from_checkpoint(&a, &StitchOptions::default())?
        .probabilities(&texts)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let p2 = Pipeline::from_checkpoint(&loaded, &StitchOptions::default())?
        .probabilities(&texts)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    assert_eq!(p1, p2, "save -> load -> predict must be bitwise identical");

    // Corruption: every case is a typed error naming the file, and nothing is half-written.
    let bad = dir.path().join("bad");
    let reset = || -> anyhow::Result<()> {
        let _ = std::fs::remove_dir_all(&bad);
        a.save(&bad)?;
        Ok(())
    };
    reset()?;
    let st = bad.join("model.safetensors");
    let bytes = std::fs::read(&st)?;
    std::fs::write(&st, &bytes[..bytes.len() / 2])?;
    assert!(matches!(
        Checkpoint::load(&bad),
        Err(Error::Safetensors { .. })
    ));
    reset()?;
    let anchors = bad.join("anchors.jsonl");
    let text = std::fs::read_to_string(&anchors)?;
    std::fs::write(
        &anchors,
        text.lines().skip(1).collect::<Vec<_>>().join("\n"),
    )?;
    let e = Checkpoint::load(&bad)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("anchors.jsonl"), "{e}");
    reset()?;
    let cfg = bad.join("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg)?)?;
    json["labels"] = serde_json::json!(["only-one"]);
    std::fs::write(&cfg, json.to_string())?;
    assert!(matches!(Checkpoint::load(&bad), Err(Error::Input { .. })));
    std::fs::write(&cfg, "{\"format\": \"relstitch-checkpoint\"")?;
    assert!(matches!(Checkpoint::load(&bad), Err(Error::Json { .. })));
    assert!(matches!(
        Checkpoint::load(&dir.path().join("nope")),
        Err(Error::Input { .. })
    ));

    // Mismatched label sets cannot be stitched.
    let mut other = a.clone();
    other.config.labels[0] = "something-else".into();
    assert!(matches!(
        Pipeline::stitch(&a, &other, &StitchOptions::default()),
        Err(Error::InvalidArgument { .. })
    ));

    // Saving over a folder that is not a checkpoint is refused and leaves it untouched.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir_all(&foreign)?;
    std::fs::write(foreign.join("notes.txt"), "mine")?;
    assert!(a.save(&foreign).is_err());
    assert_eq!(std::fs::read_to_string(foreign.join("notes.txt"))?, "mine");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".relstitch"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary folders left behind: {leftovers:?}"
    );
    Ok(())
}

/// A checkpoint finds its encoder by its recorded identity: a folder in the current directory that
/// happens to carry the model's name is never taken for it (issue: `./sre-embedding-model` beside a
/// checkpoint broke `stitch-two-checkpoints`).
#[test]
fn checkpoints_find_their_encoder_by_identity_not_by_a_folder_of_that_name() -> anyhow::Result<()> {
    let (train, test) = data();
    let small = train.first_per_label(20);
    let o = quick_options();
    let a = fit("all-MiniLM-L6-v2", &small, &o)?;
    let dir = tempfile::tempdir()?;
    let ckpt = dir.path().join("ckpt");
    a.save(&ckpt)?;
    // The decoy: a folder named like the model, in the folder the command runs from.
    let work = dir.path().join("work");
    let decoy = work.join("all-MiniLM-L6-v2");
    std::fs::create_dir_all(&decoy)?;
    std::fs::write(
        decoy.join("config.json"),
        r#"{"model_type": "not-a-model"}"#,
    )?;
    let texts = work.join("texts.txt");
    let lines: Vec<String> = test
        .records
        .iter()
        .take(5)
        .map(|r| r.text.replace(['\n', '\r'], " "))
        .collect();
    std::fs::write(&texts, lines.join("\n"))?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_relstitch"))
        .current_dir(&work)
        .args(["predict", "--checkpoint"])
        .arg(&ckpt)
        .args(["--input", "texts.txt"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);
    Ok(())
}

/// Issue 16: with plain cosine, every stitch whose encoder is the anisotropic sre-embedding-model
/// (unrelated texts at cosine 0.45) collapsed, and nothing said so before evaluating. The defaults
/// (`fit`: centred cosine; `stitch`: through a latent translation into the decoder's encoder's
/// space) hold both ways between sre and MiniLM-L6; whitened checkpoints (the previous default)
/// are stitched zero-shot by default and hold too; and the label-free compatibility estimate
/// tells the cases apart before any test data.
#[test]
fn the_defaults_stitch_the_anisotropic_encoder() -> anyhow::Result<()> {
    let (train, test) = data();
    let names = ["sre-embedding-model", "all-MiniLM-L6-v2"];
    let default = FitOptions::default().space;
    assert_eq!(
        default,
        Space::Relative {
            projection: Projection::Cosine,
            pre_transform: PreTransform::CENTERED,
        }
    );
    let auto = StitchOptions::default();
    assert_eq!(auto.relative, RelativeStitch::Auto);
    let zero_shot = StitchOptions::default().with_relative(RelativeStitch::ZeroShot);
    let translate = StitchOptions::default().with_relative(RelativeStitch::Translated);
    let whitened = Space::Relative {
        projection: Projection::Cosine,
        pre_transform: PreTransform::WHITENED,
    };
    let mut kept = Vec::new();
    let mut retained = Vec::new();
    let mut estimates = Vec::new();
    let mut spaces = Vec::new();
    for (space, o) in [
        (default, &auto),
        (relative(), &zero_shot),
        (relative(), &translate),
        (whitened, &auto),
    ] {
        let ckpts: Vec<Checkpoint> = names
            .iter()
            .map(|m| fit(m, train, &options(space)))
            .collect::<Result<_, _>>()?;
        for (a, b) in [(&ckpts[0], &ckpts[1]), (&ckpts[1], &ckpts[0])] {
            let stitched = Pipeline::stitch(a, b, o)?;
            let report = StitchReport::evaluate(a, b, &stitched, test, o)?;
            eprintln!(
                "{} encoder {} -> decoder {}:\n{report}",
                space.name(),
                a.config.encoder.name,
                b.config.encoder.name
            );
            let weaker = report
                .encoder_checkpoint
                .weighted_f1
                .min(report.decoder_checkpoint.weighted_f1);
            let c = report
                .compatibility
                .clone()
                .ok_or_else(|| anyhow::anyhow!("no compatibility estimate in {report}"))?;
            // Printed before the measured scores.
            assert!(report.to_string().starts_with("predicted compatibility"));
            kept.push(report.stitched.weighted_f1 / weaker);
            retained.push(report.stitched.weighted_f1 / report.decoder_checkpoint.weighted_f1);
            estimates.push(c);
            spaces.push(stitched.checkpoint().config.space.name());
        }
    }
    eprintln!(
        "kept (stitched / weaker own), sre->L6 and L6->sre: the defaults, cosine zero-shot, \
         cosine translated, whitened with the default stitch: {kept:?}"
    );
    // The default stitch of a default checkpoint goes through a translation; a whitened one is
    // stitched zero-shot.
    assert_eq!(&spaces[..2], ["translated_relative"; 2]);
    assert_eq!(&spaces[6..], ["relative"; 2]);
    // The issue's bar, both directions, with the defaults, and with whitened checkpoints.
    assert!(kept[0] >= 0.9 && kept[1] >= 0.9, "{kept:?}");
    assert!(kept[6] >= 0.9 && kept[7] >= 0.9, "{kept:?}");
    // A plain cosine decoder (as every checkpoint written first) is repaired by a translation.
    assert!(kept[4] >= 0.9 && kept[5] >= 0.9, "{kept:?}");
    // Plain cosine zero-shot with sre as the encoder collapses (0.55× on the full split), the
    // defaults hold.
    assert!(kept[2] < 0.8 && kept[0] > kept[2] + 0.1, "{kept:?}");
    // The estimate sees it coming: a poor stitch, with advice to go through a translation, which
    // is estimated better, the same estimate as that stitch gets when it runs.
    let collapsed = &estimates[2];
    assert!(
        collapsed.is_poor()
            && collapsed
                .advice
                .as_deref()
                .is_some_and(|a| a.contains("translation") && a.contains("--zero-shot")),
        "{collapsed:?}"
    );
    let alternative = collapsed
        .alternative
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no alternative in {collapsed:?}"))?;
    assert!((alternative.agreement - estimates[4].agreement).abs() < 1e-9);
    assert!((alternative.predicted_retained - estimates[4].predicted_retained).abs() < 1e-9);
    assert!(alternative.predicted_retained > collapsed.predicted_retained + 0.15);
    assert!(
        estimates[0].predicted_retained > collapsed.predicted_retained + 0.15,
        "{estimates:?}"
    );
    // For the default stitches, the prediction is the retained score to within 0.1 (sre is the
    // weaker encoder on this small split: its stitch keeps what sre itself can, and the estimate
    // says so).
    for i in 0..2 {
        assert!(
            (estimates[i].predicted_retained - retained[i]).abs() < 0.1,
            "predicted {} measured {}",
            estimates[i].predicted_retained,
            retained[i]
        );
        assert!(estimates[i].separability.is_some());
    }
    Ok(())
}

/// Issue 16: a checkpoint saved in a folder named like its model (`./all-MiniLM-L6-v2`) stitches
/// correctly from that working folder: the encoder is found by the checkpoint's recorded identity,
/// never by a folder of that name.
#[test]
fn checkpoints_in_folders_named_like_their_models_stitch_from_there() -> anyhow::Result<()> {
    let (train, test) = data();
    let small = train.first_per_label(20);
    let o = quick_options();
    let dir = tempfile::tempdir()?;
    let work = dir.path();
    for model in ["all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2"] {
        fit(model, &small, &o)?.save(&work.join(model))?;
    }
    test.first_per_label(3)
        .write_jsonl(&work.join("test.jsonl"))?;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stitch-two-checkpoints"))
        .current_dir(work)
        .args([
            "--encoder-from",
            "all-MiniLM-L6-v2",
            "--decoder-from",
            "paraphrase-MiniLM-L3-v2",
            "--eval",
            "test.jsonl",
            "--out",
            "stitched",
        ])
        .output()?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("stitched A → B"), "{stdout}");
    // The prediction comes first, then the measured scores.
    let predicted = stdout.find("predicted compatibility");
    assert!(
        predicted.is_some() && predicted < stdout.find("stitched A → B"),
        "{stdout}"
    );
    // By default the stitch goes through a translation into the decoder's encoder's space, which
    // the saved checkpoint names by identity as well; it runs from the same folder.
    let translated = Checkpoint::load(&work.join("stitched"))?;
    assert_eq!(translated.config.encoder.name, "all-MiniLM-L6-v2");
    assert_eq!(translated.config.space.name(), "translated_relative");
    assert_eq!(
        translated
            .config
            .anchor_encoder
            .as_ref()
            .map(|e| e.name.as_str()),
        Some("paraphrase-MiniLM-L3-v2")
    );
    let eval = std::process::Command::new(env!("CARGO_BIN_EXE_relstitch"))
        .current_dir(work)
        .args(["eval", "--checkpoint", "stitched", "--test", "test.jsonl"])
        .output()?;
    assert!(
        eval.status.success(),
        "{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    // With --zero-shot, the paper's stitch: the new encoder's own relative vectors.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stitch-two-checkpoints"))
        .current_dir(work)
        .args([
            "--encoder-from",
            "all-MiniLM-L6-v2",
            "--decoder-from",
            "paraphrase-MiniLM-L3-v2",
            "--zero-shot",
            "--out",
            "zero-shot",
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("predicted compatibility"));
    let zero = Checkpoint::load(&work.join("zero-shot"))?;
    assert_eq!(zero.config.space.name(), "relative");
    assert!(zero.config.anchor_encoder.is_none());
    Ok(())
}

/// Issue 16: `fit` keeps training texts beyond the anchors (without labels) as alignment texts;
/// a stitch fits its translation, and its compatibility estimate, on anchors and alignment texts
/// together; `alignment_texts: 0` keeps none and writes the checkpoint in the oldest format.
#[test]
fn alignment_texts_are_kept_and_the_stitch_fits_on_them() -> anyhow::Result<()> {
    let (train, _) = data();
    let small = train.first_per_label(20);
    let o = quick_options();
    let b = fit("paraphrase-MiniLM-L3-v2", &small, &o)?;
    let alignment = b
        .alignment
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no alignment texts"))?;
    // Every training text that is not an anchor (the set is smaller than the default cap).
    let anchors: std::collections::HashSet<String> = b.anchors.texts()?.into_iter().collect();
    let mut rest: Vec<String> = small
        .texts()
        .into_iter()
        .filter(|t| !anchors.contains(*t))
        .map(str::to_string)
        .collect();
    rest.sort();
    rest.dedup();
    let mut kept = alignment.texts()?;
    kept.sort();
    assert_eq!(kept, rest);
    assert_eq!(b.config.format_version, 3);
    let dir = tempfile::tempdir()?;
    b.save(&dir.path().join("b"))?;
    let b = Checkpoint::load(&dir.path().join("b"))?;
    assert_eq!(b.alignment.as_ref().map(|a| a.len()), Some(rest.len()));

    let a = fit("all-MiniLM-L6-v2", &small, &o)?;
    let stitched = Pipeline::stitch(&a, &b, &StitchOptions::default())?;
    let c = stitched
        .compatibility()
        .ok_or_else(|| anyhow::anyhow!("no estimate"))?;
    assert_eq!(c.anchors, 40 + rest.len());
    // The stitched checkpoint carries the fitted translation, not the texts.
    assert!(stitched.checkpoint().alignment.is_none());
    assert!(stitched.checkpoint().config.alignment.is_none());

    let none = fit(
        "paraphrase-MiniLM-L3-v2",
        &small,
        &FitOptions {
            alignment_texts: 0,
            ..o.clone()
        },
    )?;
    assert!(none.alignment.is_none() && none.config.alignment.is_none());
    assert_eq!(none.config.format_version, 1);
    none.save(&dir.path().join("none"))?;
    assert!(!dir.path().join("none/alignment.jsonl").exists());
    let c = Pipeline::stitch(&a, &none, &StitchOptions::default())?
        .compatibility()
        .map(|c| c.anchors);
    assert_eq!(c, Some(40));
    Ok(())
}

/// `relstitch fit` with fewer training texts than its default 768 anchors makes every distinct
/// training text an anchor (the count was an error before); an explicit larger count is still
/// refused.
#[test]
fn default_anchors_fit_small_training_sets() -> anyhow::Result<()> {
    let (train, _) = data();
    let dir = tempfile::tempdir()?;
    let small = train.first_per_label(6);
    let file = dir.path().join("train.jsonl");
    small.write_jsonl(&file)?;
    let fit_cli = |extra: &[&str], out: &str| {
        relstitch_fit("all-MiniLM-L6-v2", &file, &dir.path().join(out), extra)
    };
    let out = fit_cli(&[], "ckpt")?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ckpt = Checkpoint::load(&dir.path().join("ckpt"))?;
    let distinct: std::collections::HashSet<&str> = small.texts().into_iter().collect();
    assert_eq!(ckpt.anchors.len(), distinct.len());
    assert!(ckpt.alignment.is_none());
    let out = fit_cli(&["--anchors", "768"], "explicit")?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("768 anchors"));
    Ok(())
}

/// Long texts that agree up to the encoder's maximum length are one point to it: `relstitch fit`
/// counts them as one text when it chooses anchors (two such anchors would be one anchor twice),
/// and never keeps as an alignment text a twin of an anchor, chosen or from a file.
#[test]
fn texts_the_encoder_cannot_tell_apart_count_as_one() -> anyhow::Result<()> {
    let (train, _) = data();
    let dir = tempfile::tempdir()?;
    let small = train.first_per_label(6);
    let file = dir.path().join("train.jsonl");
    small.write_jsonl(&file)?;
    // Twins: the same 300 words (past MiniLM-L3's 128 tokens), then a different ending.
    let prefix = small
        .texts()
        .join(" ")
        .split_whitespace()
        .take(300)
        .collect::<Vec<_>>()
        .join(" ");
    let twins = [
        format!("{prefix} first ending"),
        format!("{prefix} second ending"),
    ];
    let mut lines = std::fs::read_to_string(&file)?;
    let template: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap_or("{}"))?;
    for (i, t) in twins.iter().enumerate() {
        let mut r = template.clone();
        r["text"] = serde_json::json!(t);
        if r.get("id").is_some() {
            r["id"] = serde_json::json!(format!("twin-{i}"));
        }
        lines.push_str(&format!("{r}\n"));
    }
    std::fs::write(&file, lines)?;
    let fit_cli = |extra: &[&str], out: &str| -> anyhow::Result<()> {
        let o = relstitch_fit(
            "paraphrase-MiniLM-L3-v2",
            &file,
            &dir.path().join(out),
            extra,
        )?;
        anyhow::ensure!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Ok(())
    };
    // Every distinct point is an anchor: the twins are one of them, and neither is left over as
    // an alignment text.
    fit_cli(&[], "ckpt")?;
    let ckpt = Checkpoint::load(&dir.path().join("ckpt"))?;
    let distinct: std::collections::HashSet<&str> = small.texts().into_iter().collect();
    assert_eq!(ckpt.anchors.len(), distinct.len() + 1);
    let anchor_texts = ckpt.anchors.texts()?;
    assert_eq!(
        anchor_texts.iter().filter(|t| twins.contains(*t)).count(),
        1
    );
    assert!(ckpt.alignment.is_none());
    // Anchors from a file holding the second twin: the first is no alignment text.
    let anchors = dir.path().join("anchors.jsonl");
    let picked: Vec<&str> = anchor_texts
        .iter()
        .filter(|t| !twins.contains(*t))
        .take(20)
        .map(String::as_str)
        .chain([twins[1].as_str()])
        .collect();
    relstitch::space::anchors::AnchorSet::from_texts(&picked)?.save_jsonl(&anchors)?;
    fit_cli(&["--anchors", &anchors.display().to_string()], "from-file")?;
    let ckpt = Checkpoint::load(&dir.path().join("from-file"))?;
    let kept = ckpt
        .alignment
        .ok_or_else(|| anyhow::anyhow!("no alignment texts"))?
        .texts()?;
    assert!(!kept.contains(&twins[0]) && !kept.contains(&twins[1]));
    assert_eq!(kept.len(), distinct.len() - 20);
    Ok(())
}

/// `relstitch fit --model MODEL --epochs 2 --quiet --train TRAIN --out OUT EXTRA…`.
fn relstitch_fit(
    model: &str,
    train: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> anyhow::Result<std::process::Output> {
    Ok(std::process::Command::new(env!("CARGO_BIN_EXE_relstitch"))
        .args([
            "fit", "--model", model, "--epochs", "2", "--quiet", "--train",
        ])
        .arg(train)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()?)
}
