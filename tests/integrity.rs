//! Trust nothing on disk (issue 10): damaged model weights are refused with the repair, `fetch`
//! rebuilds them, verdicts are cached, and embedding-cache shards that do not match their digest or
//! their weights are deleted and recomputed.
//!
//! Every test works on a copy of the real all-MiniLM-L6-v2 in a temporary `RELSTITCH_HOME` (the
//! shared cache is only read, to copy from). Homes are passed explicitly (`Fetcher::with_home`,
//! `EmbeddingCache::new`, `Command::env`): no test changes the process environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use relstitch::encoder::cache::{shard_digest, verify_all, EmbeddingCache};
use relstitch::encoder::{Encoder, EncoderOptions};
use relstitch::hub::catalog::{Catalog, CatalogModel};
use relstitch::hub::fetch::{CachedModel, Fetcher, PROVENANCE_FILE};
use relstitch::hub::verify::VerdictCache;
use relstitch::io::{write_safetensors, SafetensorsFile};
use relstitch::Error;

const MODEL: &str = "all-MiniLM-L6-v2";
const TEXTS: &[&str] = &[
    "a cat sits on the mat",
    "the stock market fell sharply today",
    "rain is expected over the weekend",
    "she plays the violin beautifully",
    "the recipe needs two eggs",
    "a new planet was discovered",
];

fn catalog_model(catalog: &Catalog) -> Result<&CatalogModel> {
    catalog.get(MODEL).context("MiniLM is in the catalog")
}

/// The shared, intact MiniLM folder (fetched once per process; only ever read).
fn shared_minilm() -> Result<PathBuf> {
    static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut dir = DIR.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    if let Some(d) = dir.as_ref() {
        return Ok(d.clone());
    }
    let catalog = Catalog::builtin()?;
    let d = Fetcher::new()?
        .with_quiet(true)
        .fetch(&catalog, catalog_model(&catalog)?)?;
    *dir = Some(d.clone());
    Ok(d)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// A temporary home holding a copy of MiniLM as a fetched model (and, with `downloads`, a copy of
/// its verified package, so that it can be rebuilt offline). Returns the home and the model folder.
fn home_with_minilm(downloads: bool) -> Result<(tempfile::TempDir, PathBuf)> {
    let shared = shared_minilm()?;
    let home = tempfile::tempdir()?;
    let dir = home.path().join("models").join(MODEL);
    copy_dir(&shared, &dir)?;
    if downloads {
        let catalog = Catalog::builtin()?;
        let shared_home = shared
            .parent()
            .and_then(Path::parent)
            .context("shared home")?;
        let dl = home.path().join("downloads");
        std::fs::create_dir_all(&dl)?;
        for p in &catalog_model(&catalog)?.packages {
            let marker = format!("{}.path", p.sha256);
            let name = std::fs::read_to_string(shared_home.join("downloads").join(&marker))?;
            std::fs::copy(
                shared_home.join("downloads").join(name.trim()),
                dl.join(name.trim()),
            )?;
            std::fs::write(dl.join(marker), name)?;
        }
    }
    Ok((home, dir))
}

/// Zeroes the bytes of one tensor of a safetensors file, keeping its size.
fn zero_tensor(file: &Path, tensor: &str) -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let bytes = std::fs::read(file)?;
    let n = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n])?;
    let offsets = header[tensor]["data_offsets"]
        .as_array()
        .context("tensor offsets")?;
    let (a, b) = (
        offsets[0].as_u64().context("offset")? as usize,
        offsets[1].as_u64().context("offset")? as usize,
    );
    let mut f = std::fs::OpenOptions::new().write(true).open(file)?;
    f.seek(SeekFrom::Start((8 + n + a) as u64))?;
    f.write_all(&vec![0u8; b - a])?;
    Ok(())
}

const ZEROED: &str = "embeddings.word_embeddings.weight";

fn cpu() -> EncoderOptions {
    EncoderOptions::default().with_device(relstitch::device::DeviceChoice::Cpu)
}

fn relstitch(home: &Path, args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_relstitch"))
        .args(args)
        .env("RELSTITCH_HOME", home)
        .env_remove("RUST_LOG")
        .output()?)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok(a.sub(b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

// ---------------------------------------------------------------------------------------------
// A. Verified weights
// ---------------------------------------------------------------------------------------------

#[test]
fn zeroed_weights_are_refused_naming_the_file_and_the_repair() -> Result<()> {
    let (home, dir) = home_with_minilm(false)?;
    let weights = dir.join("model.safetensors");
    zero_tensor(&weights, ZEROED)?;
    // Loaded by path: the provenance file says what the weights must be.
    match Encoder::from_dir(&dir, &cpu()) {
        Err(e @ Error::DamagedWeights { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&weights.display().to_string()), "{msg}");
            assert!(
                msg.contains(&format!("relstitch fetch --force {MODEL}")),
                "{msg}"
            );
        }
        other => bail!("expected DamagedWeights, got {other:?}"),
    }
    // Loaded by catalog name from this home: the same error, never "already fetched".
    let catalog = Catalog::builtin()?;
    let fetcher = Fetcher::new()?.with_home(home.path());
    let m = catalog_model(&catalog)?;
    assert!(fetcher.cached(m).is_none());
    assert!(matches!(
        fetcher.check_cached(m, false)?,
        CachedModel::Damaged { .. }
    ));
    assert!(matches!(
        relstitch::hub::resolve::resolve_with(MODEL, &catalog, &fetcher),
        Err(Error::DamagedWeights { .. })
    ));
    // Without a provenance file nothing says what the weights should be: the identity written into
    // outputs is the hash of the bytes actually loaded, not the catalog's.
    std::fs::remove_file(dir.join(PROVENANCE_FILE))?;
    let enc = Encoder::from_dir(&dir, &cpu())?;
    assert_eq!(
        enc.identity().weights_sha256,
        relstitch::io::sha256_file(&weights)?
    );
    assert_ne!(
        Some(&enc.identity().weights_sha256),
        m.weights_sha256.as_ref()
    );
    Ok(())
}

#[test]
fn truncated_weights_are_refused() -> Result<()> {
    let (_home, dir) = home_with_minilm(false)?;
    let weights = dir.join("model.safetensors");
    let len = std::fs::metadata(&weights)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&weights)?
        .set_len(len / 2)?;
    match Encoder::from_dir(&dir, &cpu()) {
        Err(e @ Error::DamagedWeights { .. }) => {
            assert!(e.to_string().contains("fetch --force"), "{e}")
        }
        other => bail!("expected DamagedWeights, got {other:?}"),
    }
    Ok(())
}

#[test]
fn fetch_rebuilds_a_damaged_model_and_removes_stale_temporaries() -> Result<()> {
    let (home, dir) = home_with_minilm(true)?;
    zero_tensor(&dir.join("model.safetensors"), ZEROED)?;
    // A folder left by a fetch killed an hour ago, and one being built right now.
    let stale = home
        .path()
        .join("models")
        .join(format!(".{MODEL}-dead1234"));
    let fresh = home
        .path()
        .join("models")
        .join(format!(".{MODEL}-busy5678"));
    std::fs::create_dir_all(&stale)?;
    std::fs::create_dir_all(&fresh)?;
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::open(&stale)?.set_modified(hour_ago)?;
    let catalog = Catalog::builtin()?;
    let m = catalog_model(&catalog)?;
    let fetcher = Fetcher::new()?.with_home(home.path()).with_quiet(true);
    // The downloads are intact, so this rebuilds from them (the registry client is never run).
    let got = fetcher.fetch(&catalog, m)?;
    assert_eq!(got, dir);
    match fetcher.verify(m)? {
        CachedModel::Ready { weights_sha256, .. } => {
            assert_eq!(Some(&weights_sha256), m.weights_sha256.as_ref())
        }
        other => bail!("expected an intact model, got {other:?}"),
    }
    assert!(!stale.exists(), "stale fetch folder kept");
    assert!(fresh.exists(), "a fresh temporary folder was removed");
    let leftovers: Vec<_> = std::fs::read_dir(home.path().join("models"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-old-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    Ok(())
}

#[test]
fn fetch_verify_and_force_through_the_binary() -> Result<()> {
    let (home, dir) = home_with_minilm(true)?;
    let ok = relstitch(home.path(), &["fetch", "--verify"])?;
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains(&format!("ok       {MODEL}")));

    zero_tensor(&dir.join("model.safetensors"), ZEROED)?;
    for args in [
        &["fetch", "--verify"][..],
        &["fetch", "--verify", MODEL][..],
    ] {
        let bad = relstitch(home.path(), args)?;
        assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
        assert!(
            String::from_utf8_lossy(&bad.stdout).contains(&format!("damaged  {MODEL}")),
            "{}",
            text(&bad)
        );
        assert!(text(&bad).contains("fetch --force"), "{}", text(&bad));
    }
    // Loading the damaged model by name fails with the repair, exit 1, no output written.
    let input = home.path().join("t.txt");
    std::fs::write(&input, TEXTS.join("\n"))?;
    let out = home.path().join("e.safetensors");
    let load = relstitch(
        home.path(),
        &[
            "embed",
            "-q",
            "--model",
            MODEL,
            "--input",
            input.to_str().context("utf8")?,
            "--output",
            out.to_str().context("utf8")?,
        ],
    )?;
    assert!(!load.status.success());
    assert!(text(&load).contains("fetch --force"), "{}", text(&load));
    assert!(!out.exists());

    let force = relstitch(home.path(), &["fetch", "--force", "-q", MODEL])?;
    assert!(force.status.success(), "{}", text(&force));
    let again = relstitch(home.path(), &["fetch", "--verify", "all"])?;
    assert!(again.status.success(), "{}", text(&again));
    // --force on an intact model rebuilds and replaces it too, leaving nothing behind.
    let force = relstitch(home.path(), &["fetch", "--force", "-q", MODEL])?;
    assert!(force.status.success(), "{}", text(&force));
    let names: Vec<String> = std::fs::read_dir(home.path().join("models"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![MODEL.to_string()]);
    Ok(())
}

#[test]
fn a_warm_load_reads_the_verdict_instead_of_hashing() -> Result<()> {
    let (home, dir) = home_with_minilm(false)?;
    let weights = dir.join("model.safetensors");
    // A file changed in the last two seconds gets no verdict (coarse timestamps could hide a write).
    std::thread::sleep(Duration::from_millis(2100));
    let verdicts = VerdictCache::new(home.path());
    let cold = verdicts.sha256(&weights)?;
    assert!(!cold.from_cache);
    let warm = verdicts.sha256(&weights)?;
    assert!(warm.from_cache);
    assert_eq!(cold.sha256, warm.sha256);
    // The verdict lives under the home, never in the model's folder.
    let entries: Vec<_> = std::fs::read_dir(home.path().join("verdicts"))?.collect();
    assert_eq!(entries.len(), 1);
    let files_before: Vec<_> = std::fs::read_dir(&dir)?.collect();
    assert!(files_before
        .iter()
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().contains("verdict")));
    // Any write makes it hash again.
    zero_tensor(&weights, ZEROED)?;
    let after = verdicts.sha256(&weights)?;
    assert!(!after.from_cache);
    assert_ne!(after.sha256, cold.sha256);
    Ok(())
}

#[test]
fn the_encoder_uses_the_verdict_cache_of_its_home() -> Result<()> {
    // Timing-free proof that a second load does not re-hash: after the first load, the verdict is
    // replaced by a wrong sha256; the second load then reports the mismatch with that sha256
    // (it read the verdict), and a full `fetch --verify` (which re-hashes) finds the model intact.
    let (home, dir) = home_with_minilm(false)?;
    std::thread::sleep(Duration::from_millis(2100));
    let input = home.path().join("t.txt");
    std::fs::write(&input, TEXTS.join("\n"))?;
    let out = home.path().join("e.safetensors");
    let embed = |home: &Path| {
        relstitch(
            home,
            &[
                "embed",
                "-q",
                "--model",
                dir.to_str().unwrap_or_default(),
                "--input",
                input.to_str().unwrap_or_default(),
                "--output",
                out.to_str().unwrap_or_default(),
            ],
        )
    };
    let first = embed(home.path())?;
    assert!(first.status.success(), "{}", text(&first));
    let verdict = std::fs::read_dir(home.path().join("verdicts"))?
        .next()
        .context("a verdict was stored")??
        .path();
    let good = relstitch::io::sha256_file(&dir.join("model.safetensors"))?;
    let stored = std::fs::read_to_string(&verdict)?;
    assert!(stored.contains(&good), "{stored}");
    let fake = "a".repeat(64);
    std::fs::write(&verdict, stored.replace(&good, &fake))?;
    let second = embed(home.path())?;
    assert!(!second.status.success());
    assert!(text(&second).contains(&fake), "{}", text(&second));
    let verify = relstitch(home.path(), &["fetch", "--verify", MODEL])?;
    assert!(verify.status.success(), "{}", text(&verify));
    Ok(())
}

#[test]
fn a_hugging_face_blob_name_is_the_expected_sha256() -> Result<()> {
    let shared = shared_minilm()?;
    let root = tempfile::tempdir()?;
    let sha = relstitch::io::sha256_file(&shared.join("model.safetensors"))?;
    let blobs = root.path().join("blobs");
    let snap = root.path().join("snapshots").join("abc123");
    std::fs::create_dir_all(&blobs)?;
    copy_dir(&shared, &snap)?;
    std::fs::remove_file(snap.join(PROVENANCE_FILE))?;
    std::fs::remove_file(snap.join("model.safetensors"))?;
    std::fs::copy(shared.join("model.safetensors"), blobs.join(&sha))?;
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        Path::new("../../blobs").join(&sha),
        snap.join("model.safetensors"),
    )?;
    #[cfg(not(unix))]
    return Ok(());
    let enc = Encoder::from_dir(&snap, &cpu())?;
    assert_eq!(enc.identity().weights_sha256, sha);
    drop(enc);
    zero_tensor(&blobs.join(&sha), ZEROED)?;
    match Encoder::from_dir(&snap, &cpu()) {
        Err(e @ Error::DamagedWeights { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("Hugging Face") && msg.contains("download"),
                "{msg}"
            );
        }
        other => bail!("expected DamagedWeights, got {other:?}"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// B. Verified embedding caches
// ---------------------------------------------------------------------------------------------

/// Collects the messages of WARN events on the current thread.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Message(String);
impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut m = Message(String::new());
            event.record(&mut m);
            if let Ok(mut w) = self.0.lock() {
                w.push(m.0);
            }
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

impl Warnings {
    fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }
}

/// Runs `f` and returns its result with the warnings it logged.
fn with_warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let w = Warnings::default();
    let out = tracing::subscriber::with_default(w.clone(), f);
    (out, w.take())
}

fn shards(cache: &EmbeddingCache) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(cache.dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    v.sort();
    Ok(v)
}

/// Rewrites a shard with its metadata kept and its matrix changed by `f`.
fn tamper(shard: &Path, f: impl FnOnce(Vec<Vec<f32>>) -> Vec<Vec<f32>>) -> Result<()> {
    let file = SafetensorsFile::read(shard, &candle_core::Device::Cpu)?;
    let m = file.matrix("embeddings")?.to_vec2::<f32>()?;
    let t = Tensor::new(f(m), &candle_core::Device::Cpu)?;
    write_safetensors(shard, &[("embeddings", &t)], &file.metadata)?;
    Ok(())
}

fn encoder() -> Result<Encoder> {
    Ok(Encoder::from_dir(&shared_minilm()?, &cpu())?)
}

#[test]
fn a_shard_with_shuffled_rows_is_deleted_and_recomputed() -> Result<()> {
    let home = tempfile::tempdir()?;
    let enc = encoder()?;
    let fresh = enc.embed(TEXTS)?;
    let cache = EmbeddingCache::new(home.path(), enc.identity());
    let first = cache.embed(&enc, TEXTS)?;
    assert!(max_abs_diff(&first, &fresh)? < 1e-5);
    let Ok([shard]) = <[PathBuf; 1]>::try_from(shards(&cache)?) else {
        bail!("expected one shard");
    };
    tamper(&shard, |mut m| {
        m.swap(0, 1);
        m
    })?;
    let (again, warnings) = with_warnings(|| cache.embed(&enc, TEXTS));
    let again = again?;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(&shard.display().to_string()),
        "{warnings:?}"
    );
    assert!(max_abs_diff(&again, &fresh)? < 1e-5, "stale rows were used");
    // Recomputed and written again, intact; a third read is silent.
    let report = verify_all(home.path(), false)?;
    assert_eq!((report.len(), report[0].ok, report[0].bad.len()), (1, 1, 0));
    assert_eq!(report[0].model_name(), MODEL);
    let (_, warnings) = with_warnings(|| cache.embed(&enc, TEXTS));
    assert!(warnings.is_empty(), "{warnings:?}");
    Ok(())
}

/// A lookup reads only the shards that hold a wanted text: a damaged shard of other texts is left
/// for `cache verify` (and is not read into memory), while the answer stays exact.
#[test]
fn a_lookup_reads_only_the_shards_it_needs() -> Result<()> {
    let home = tempfile::tempdir()?;
    let enc = encoder()?;
    let cache = EmbeddingCache::new(home.path(), enc.identity());
    let (a, b) = TEXTS.split_at(3);
    cache.embed(&enc, a)?;
    let first = shards(&cache)?;
    cache.embed(&enc, b)?;
    let Some(other) = shards(&cache)?.into_iter().find(|p| !first.contains(p)) else {
        bail!("expected a second shard");
    };
    tamper(&other, |mut m| {
        m.swap(0, 1);
        m
    })?;
    let (got, warnings) = with_warnings(|| cache.embed(&enc, a));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(max_abs_diff(&got?, &enc.embed(a)?)? < 1e-5);
    assert!(other.exists(), "a shard that was not needed was touched");
    let report = verify_all(home.path(), false)?;
    assert_eq!((report[0].ok, report[0].bad.len()), (1, 1));
    // Asked for, it is found bad, deleted and recomputed; duplicates map to one row each.
    let ask = [b[0], a[0], b[0], b[2]];
    let (got, warnings) = with_warnings(|| cache.embed(&enc, &ask));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(max_abs_diff(&got?, &enc.embed(&ask)?)? < 1e-5);
    assert!(!other.exists());
    Ok(())
}

#[test]
fn shards_of_other_weights_or_without_a_digest_are_not_used() -> Result<()> {
    let home = tempfile::tempdir()?;
    let enc = encoder()?;
    let fresh = enc.embed(TEXTS)?;
    let cache = EmbeddingCache::new(home.path(), enc.identity());
    std::fs::create_dir_all(cache.dir())?;
    let hashes: Vec<String> = TEXTS
        .iter()
        .map(|t| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(t.as_bytes())))
        .collect();
    let zeros = Tensor::zeros(
        (TEXTS.len(), enc.dim()),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )?;
    // Intact by its own digest, but computed with other weights.
    let other = std::collections::HashMap::from([
        ("text_sha256".to_string(), serde_json::to_string(&hashes)?),
        ("digest_sha256".to_string(), shard_digest(&zeros, &hashes)?),
        ("weights_sha256".to_string(), "0".repeat(64)),
    ]);
    let a = cache.dir().join("shard-0000.safetensors");
    write_safetensors(&a, &[("embeddings", &zeros)], &other)?;
    // As written by relstitch before shards had a digest.
    let old = std::collections::HashMap::from([(
        "text_sha256".to_string(),
        serde_json::to_string(&hashes)?,
    )]);
    let b = cache.dir().join("shard-0001.safetensors");
    write_safetensors(&b, &[("embeddings", &zeros)], &old)?;
    let (got, warnings) = with_warnings(|| cache.embed(&enc, TEXTS));
    assert!(
        max_abs_diff(&got?, &fresh)? < 1e-5,
        "a foreign shard was used"
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings
        .iter()
        .any(|w| w.contains("shard-0000") && w.contains("other weights")));
    assert!(warnings
        .iter()
        .any(|w| w.contains("shard-0001") && w.contains("no digest")));
    assert!(!a.exists() && !b.exists());
    Ok(())
}

#[test]
fn stale_temporaries_in_a_key_folder_are_removed_fresh_ones_kept() -> Result<()> {
    let home = tempfile::tempdir()?;
    let enc = encoder()?;
    let cache = EmbeddingCache::new(home.path(), enc.identity());
    std::fs::create_dir_all(cache.dir())?;
    let stale = cache.dir().join(".tmpDEAD01");
    let fresh = cache.dir().join(".tmpBUSY01");
    std::fs::write(&stale, b"half a shard")?;
    std::fs::write(&fresh, b"being written")?;
    std::fs::File::options()
        .write(true)
        .open(&stale)?
        .set_modified(SystemTime::now() - Duration::from_secs(3600))?;
    cache.embed(&enc, &TEXTS[..2])?;
    assert!(!stale.exists());
    assert!(fresh.exists());
    Ok(())
}

#[test]
fn cache_verify_and_clear_through_the_binary() -> Result<()> {
    let home = tempfile::tempdir()?;
    let enc = encoder()?;
    let cache = EmbeddingCache::new(home.path(), enc.identity());
    cache.embed(&enc, TEXTS)?;
    let ok = relstitch(home.path(), &["cache", "verify"])?;
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains(MODEL), "{}", text(&ok));

    let Ok([shard]) = <[PathBuf; 1]>::try_from(shards(&cache)?) else {
        bail!("expected one shard");
    };
    tamper(&shard, |m| {
        m.into_iter().map(|r| vec![0.0; r.len()]).collect()
    })?;
    let bad = relstitch(home.path(), &["cache", "verify"])?;
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("bad    1"), "{}", text(&bad));
    assert!(shard.exists(), "verify without --fix deleted a shard");
    let fix = relstitch(home.path(), &["cache", "verify", "--fix"])?;
    assert!(fix.status.success(), "{}", text(&fix));
    assert!(text(&fix).contains("deleted"), "{}", text(&fix));
    assert!(!shard.exists());

    cache.embed(&enc, TEXTS)?;
    let other = relstitch(
        home.path(),
        &["cache", "clear", "--model", "all-mpnet-base-v2"],
    )?;
    assert!(other.status.success(), "{}", text(&other));
    assert!(cache.dir().exists(), "cleared another model's keys");
    let mine = relstitch(home.path(), &["cache", "clear", "--model", MODEL])?;
    assert!(mine.status.success(), "{}", text(&mine));
    assert!(text(&mine).contains("removed 1 key"), "{}", text(&mine));
    assert!(!cache.dir().exists());

    cache.embed(&enc, TEXTS)?;
    let all = relstitch(home.path(), &["cache", "clear"])?;
    assert!(all.status.success(), "{}", text(&all));
    assert!(!home.path().join("embeddings").exists());
    Ok(())
}
