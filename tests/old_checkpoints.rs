//! Checkpoints written before the relative space could be whitened load as before and
//! predict exactly what they predicted then (`tests/fixtures/old-checkpoints`, written by the
//! version named in its README), whatever the defaults of `fit` and stitching are now.
//!
//! Needs the real all-MiniLM-L6-v2 and paraphrase-MiniLM-L3-v2 (fetched on first use).

use std::path::{Path, PathBuf};

use relstitch::space::projection::{PreTransform, Projection};
use relstitch::task::checkpoint::{Checkpoint, Space};
use relstitch::task::stitch::{Pipeline, RelativeStitch, StitchOptions};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/old-checkpoints")
}

/// The probabilities recorded by `relstitch predict` in `NAME.predictions.jsonl`.
fn recorded(name: &str) -> anyhow::Result<Vec<Vec<(String, f64)>>> {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.predictions.jsonl")))?;
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            let p = v["probabilities"]
                .as_object()
                .ok_or_else(|| anyhow::anyhow!("no probabilities in {l}"))?;
            Ok(p.iter()
                .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(f64::NAN)))
                .collect())
        })
        .collect()
}

fn texts() -> anyhow::Result<Vec<String>> {
    Ok(std::fs::read_to_string(fixtures().join("texts.txt"))?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Every probability within 1e-6 of the recorded one (f32 values printed as f64: the same
/// computation reproduces them to the last bits; the tolerance only absorbs thread-count effects
/// on summation order).
fn assert_same(pipeline: &Pipeline, name: &str) -> anyhow::Result<()> {
    let want = recorded(name)?;
    let got = pipeline.predict(&texts()?)?;
    assert_eq!(got.len(), want.len(), "{name}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        for (label, p) in w {
            let q = g
                .probabilities
                .iter()
                .find(|(l, _)| l == label)
                .map(|(_, q)| f64::from(*q))
                .ok_or_else(|| anyhow::anyhow!("{name}: label {label} missing"))?;
            assert!(
                (q - p).abs() <= 1e-6,
                "{name}, text {i}, {label}: {q} now, {p} recorded"
            );
        }
    }
    Ok(())
}

#[test]
fn old_checkpoints_read_as_plain_cosine_and_predict_as_before() -> anyhow::Result<()> {
    for name in ["minilm", "l3", "l3-to-minilm"] {
        let ckpt = Checkpoint::load(&fixtures().join(name))?;
        assert_eq!(
            ckpt.config.space,
            Space::Relative {
                projection: Projection::Cosine,
                pre_transform: PreTransform::NONE,
            },
            "{name}: a pre-transform without `whiten` is the old, unwhitened one"
        );
        assert_same(
            &Pipeline::from_checkpoint(&ckpt, &StitchOptions::default())?,
            name,
        )?;
    }
    Ok(())
}

/// Stitching two old checkpoints zero-shot (`--zero-shot`, the only stitch of their day) gives
/// exactly what the old stitch gave (the decoder's recorded space decides, not today's default
/// space), and saves as the old format. The default stitch of an unwhitened decoder now goes
/// through a latent translation: it is written as format 2, which names the encoder that embeds
/// the anchors.
#[test]
fn stitching_old_checkpoints_reproduces_the_old_stitch() -> anyhow::Result<()> {
    let l3 = Checkpoint::load(&fixtures().join("l3"))?;
    let minilm = Checkpoint::load(&fixtures().join("minilm"))?;
    let zero_shot = StitchOptions::default().with_relative(RelativeStitch::ZeroShot);
    let stitched = Pipeline::stitch(&l3, &minilm, &zero_shot)?;
    assert_same(&stitched, "l3-to-minilm")?;
    // And saving it writes the old space and format again, without the new fields.
    let dir = tempfile::tempdir()?;
    stitched.checkpoint().save(&dir.path().join("again"))?;
    let config = std::fs::read_to_string(dir.path().join("again/config.json"))?;
    assert!(
        !config.contains("whiten") && !config.contains("anchor_encoder"),
        "{config}"
    );
    assert!(config.contains("\"format_version\": 1"), "{config}");

    let translate = StitchOptions::default();
    let translated = Pipeline::stitch(&l3, &minilm, &translate)?;
    assert_eq!(
        translated.checkpoint().config.space.name(),
        "translated_relative"
    );
    translated
        .checkpoint()
        .save(&dir.path().join("translated"))?;
    let reloaded = Checkpoint::load(&dir.path().join("translated"))?;
    assert_eq!(reloaded.config.format_version, 2);
    assert_eq!(
        reloaded
            .config
            .anchor_encoder
            .as_ref()
            .map(|e| e.name.as_str()),
        Some("all-MiniLM-L6-v2")
    );
    // The saved stitch predicts what the in-memory one does.
    let texts = texts()?;
    let a = translated.probabilities(&texts)?.to_vec2::<f32>()?;
    let b = Pipeline::from_checkpoint(&reloaded, &translate)?
        .probabilities(&texts)?
        .to_vec2::<f32>()?;
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!((x - y).abs() <= 1e-6, "{x} vs {y}");
    }
    Ok(())
}
