//! A per-encoder, per-text embedding cache, so repeated fits and evaluations do not re-embed.
//!
//! Keyed by everything that changes the vectors (weights sha256, pooling, normalisation, max length,
//! prefix, precision, Dense modules, truncation) and by each text's sha256. Stored as safetensors shards under
//! `$RELSTITCH_HOME/embeddings/<key>/`, each holding tensor `embeddings` and, in its metadata, the
//! texts' hashes, the weights sha256 it was computed with and a digest of both ([`shard_digest`]);
//! new texts are embedded and appended as new shards (4096 rows at most each), written atomically.
//! A lookup reads the shards' headers and loads only the shards that hold a wanted text. `key.json` in each key
//! folder names the encoder, so that [`verify_all`] and [`clear`] can attribute keys to models.
//!
//! Nothing on disk is trusted: a shard whose digest or weights sha256 does not match (rows shuffled,
//! values changed, truncated, written by an older relstitch without a digest) is deleted with one
//! warning and its texts are embedded again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

use crate::encoder::{Encoder, ModelIdentity};
use crate::error::CandleContext;
use crate::hub::verify::{remove_stale_temporaries, STALE_AFTER};
use crate::io::{write_safetensors, SafetensorsFile};
use crate::{Error, Result};

const HASHES: &str = "text_sha256";
const DIGEST: &str = "digest_sha256";
const WEIGHTS: &str = "weights_sha256";
const EMBEDDINGS: &str = "embeddings";
/// The file in each key folder that says which encoder the key belongs to.
pub const KEY_FILE: &str = "key.json";

/// The cache folder of one encoder configuration.
#[derive(Debug, Clone)]
pub struct EmbeddingCache {
    dir: PathBuf,
    identity: ModelIdentity,
}

fn text_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The key folder name of an encoder configuration.
fn key_of(identity: &ModelIdentity) -> String {
    let mut key = format!(
        "{}|{}|{}|{}|{}",
        identity.weights_sha256,
        identity.pooling.as_str(),
        identity.normalize,
        identity.max_length,
        identity.prefix.as_deref().unwrap_or("")
    );
    // f32 keys stay what they were before precisions existed, so their caches stay valid.
    if !identity.precision.is_f32() {
        key.push('|');
        key.push_str(identity.precision.as_str());
    }
    // Likewise for the modules after pooling and the truncation: only present ones extend the key.
    for d in &identity.dense {
        key.push_str(&format!(
            "|dense:{}:{}:{}:{}:{:?}:{}",
            d.path.display(),
            d.in_features,
            d.out_features,
            d.weights_sha256,
            d.activation,
            d.residual
        ));
    }
    if let Some(t) = identity.truncate_dim {
        key.push_str(&format!("|truncate:{t}"));
    }
    hex::encode(Sha256::digest(key.as_bytes()))[..32].to_string()
}

/// The digest a shard records: sha256 over a format tag, the matrix shape (u64 little-endian), its
/// f32 values (little-endian, row-major) and the text hashes (each followed by `\n`). Any change
/// to the rows, their order, the values or the list of texts changes it.
///
/// # Shapes
/// - `embeddings`: `[rows, dims]`, read as f32; `text_sha256`: `rows` hashes
///
/// # Errors
/// [`Error::Shape`] when `embeddings` does not have one row per hash; [`Error::Candle`] when it is
/// not a matrix or cannot be read as f32.
pub fn shard_digest(embeddings: &Tensor, text_sha256: &[String]) -> Result<String> {
    let (rows, cols) = embeddings
        .dims2()
        .context(|| "digest of an embedding shard".into())?;
    if rows != text_sha256.len() {
        return Err(Error::shape(
            "embedding shard",
            &[rows, cols],
            format!("{rows} rows but {} text hashes", text_sha256.len()),
        ));
    }
    let values = embeddings
        .to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .context(|| "digest of an embedding shard".into())?;
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let mut h = Sha256::new();
    h.update(b"relstitch embedding shard v1\n");
    h.update((rows as u64).to_le_bytes());
    h.update((cols as u64).to_le_bytes());
    h.update(&bytes);
    for t in text_sha256 {
        h.update(t.as_bytes());
        h.update(b"\n");
    }
    Ok(hex::encode(h.finalize()))
}

/// A shard that passed its checks.
struct Shard {
    embeddings: Tensor,
    hashes: Vec<String>,
}

/// Reads and checks one shard: readable, a finite f32 matrix, one text hash per row, the recorded
/// digest matches, and it was computed with `weights_sha256` (when given). `Err` says what is wrong.
fn read_shard(path: &Path, weights_sha256: Option<&str>) -> std::result::Result<Shard, String> {
    let file = SafetensorsFile::read(path, &Device::Cpu).map_err(|e| e.to_string())?;
    let meta = |k: &str| file.metadata.get(k);
    let (Some(digest), Some(weights)) = (meta(DIGEST), meta(WEIGHTS)) else {
        return Err("has no digest (written by an older relstitch)".into());
    };
    if let Some(expected) = weights_sha256.filter(|w| *w != weights) {
        return Err(format!(
            "was computed with other weights (sha256 {weights}, this key is {expected})"
        ));
    }
    let hashes: Vec<String> = meta(HASHES)
        .and_then(|h| serde_json::from_str(h).ok())
        .ok_or("has no readable list of text hashes")?;
    let embeddings = file.matrix(EMBEDDINGS).map_err(|e| e.to_string())?;
    let actual = shard_digest(&embeddings, &hashes).map_err(|e| e.to_string())?;
    if &actual != digest {
        return Err(format!(
            "its data does not match its digest (rows reordered or values changed: {} recorded, {} now)",
            digest.chars().take(16).collect::<String>(),
            &actual[..16]
        ));
    }
    Ok(Shard { embeddings, hashes })
}

/// The shard files of a key folder, in name order.
fn shard_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    files
}

/// Rows per shard written by [`EmbeddingCache::embed`] (and texts per encoder call there), so that
/// reading a shard back never needs more memory than this many vectors.
const SHARD_ROWS: usize = 4096;

/// The text hashes a shard lists in its header (the data is not read).
fn listed_hashes(path: &Path) -> std::result::Result<Vec<String>, String> {
    let header = crate::encoder::stream::format::Header::read(path).map_err(|e| e.to_string())?;
    header
        .metadata
        .get(HASHES)
        .and_then(|h| serde_json::from_str(h).ok())
        .ok_or_else(|| "has no readable list of text hashes".into())
}

/// Deletes a shard that failed its checks, with one warning; its texts will be embedded again.
fn discard(path: &Path, why: &str) {
    let outcome = match std::fs::remove_file(path) {
        Ok(()) => "deleted; its texts will be embedded again".to_string(),
        Err(e) => format!("ignored (cannot delete it: {e})"),
    };
    tracing::warn!(
        "bad embedding-cache shard {}: {why}; {outcome}",
        path.display()
    );
}

/// The `key.json` of a key folder: the identity of the encoder whose vectors it holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct KeyFile {
    identity: ModelIdentity,
}

fn read_key_file(dir: &Path) -> Option<ModelIdentity> {
    let text = std::fs::read_to_string(dir.join(KEY_FILE)).ok()?;
    serde_json::from_str::<KeyFile>(&text)
        .ok()
        .map(|k| k.identity)
}

impl EmbeddingCache {
    /// The cache for vectors made by `identity`, under `home` (see [`crate::hub::fetch::home_dir`]).
    pub fn new(home: &Path, identity: &ModelIdentity) -> Self {
        Self {
            dir: home.join("embeddings").join(key_of(identity)),
            identity: identity.clone(),
        }
    }

    /// The cache for vectors made by `identity` under `$RELSTITCH_HOME` (see
    /// [`crate::hub::fetch::home_dir`]): where `relstitch fit` and the stitching pipelines keep theirs.
    ///
    /// # Errors
    /// The errors of [`home_dir`](crate::hub::fetch::home_dir).
    pub fn for_identity(identity: &ModelIdentity) -> Result<Self> {
        Ok(Self::new(&crate::hub::fetch::home_dir()?, identity))
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Embeds `texts` with `encoder`, reading cached rows and embedding only the texts not seen
    /// before.
    ///
    /// Only the shards whose header lists a wanted text are read, one at a time; new texts are
    /// embedded and kept 4096 at a time. Memory holds the result and one shard, not the cache.
    /// Bad shards among those read (see the module documentation) are deleted with one warning and
    /// recomputed; `relstitch cache verify` checks every shard.
    ///
    /// # Shapes
    /// - returns `[texts.len(), dim]` f32 on the encoder's device, in input order
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `texts` is empty or `encoder` is not the one this cache was
    /// made for; the encoder's errors; [`Error::Io`] when a shard cannot be written.
    pub fn embed<S: AsRef<str>>(&self, encoder: &Encoder, texts: &[S]) -> Result<Tensor> {
        if texts.is_empty() {
            return Err(Error::invalid(
                "texts",
                "nothing to embed: the list is empty",
            ));
        }
        if key_of(encoder.identity()) != key_of(&self.identity) {
            return Err(Error::invalid(
                "embedding cache",
                format!(
                    "the cache {} belongs to another encoder configuration than {}; make it with \
                     `EmbeddingCache::new(home, encoder.identity())`",
                    self.dir.display(),
                    encoder.identity().name
                ),
            ));
        }
        remove_stale_temporaries(&self.dir, |n| n.starts_with(".tmp"), STALE_AFTER);
        crate::io::clean_stale_temporaries(&self.dir);
        let dim = encoder.dim();
        let hashes: Vec<String> = texts.iter().map(|t| text_hash(t.as_ref())).collect();
        // The positions of each distinct text still to be filled.
        let mut want: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, h) in hashes.iter().enumerate() {
            want.entry(h.as_str()).or_default().push(i);
        }
        let mut out = vec![0f32; texts.len() * dim];
        let fill = |out: &mut [f32], positions: &[usize], row: &[f32]| {
            for &i in positions {
                out[i * dim..(i + 1) * dim].copy_from_slice(row);
            }
        };
        // Shards are read one at a time, and only those that list a wanted text: memory holds the
        // result and one shard, never the whole cache.
        for f in shard_files(&self.dir) {
            if want.is_empty() {
                break;
            }
            let listed = match listed_hashes(&f) {
                Ok(h) => h,
                Err(why) => {
                    discard(&f, &why);
                    continue;
                }
            };
            if !listed.iter().any(|h| want.contains_key(h.as_str())) {
                continue;
            }
            let rows = match read_shard(&f, Some(&self.identity.weights_sha256)).and_then(|s| {
                let (_, cols) = s.embeddings.dims2().map_err(|e| e.to_string())?;
                if cols != dim {
                    return Err(format!(
                        "holds vectors of width {cols}, the encoder's are {dim}"
                    ));
                }
                let v = s
                    .embeddings
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(|e| e.to_string())?;
                Ok((s.hashes, v))
            }) {
                Ok(r) => r,
                Err(why) => {
                    discard(&f, &why);
                    continue;
                }
            };
            let (shard_hashes, values) = rows;
            for (j, h) in shard_hashes.iter().enumerate() {
                if let Some(positions) = want.remove(h.as_str()) {
                    fill(&mut out, &positions, &values[j * dim..(j + 1) * dim]);
                }
            }
        }
        // The texts no shard holds, in input order, embedded and kept SHARD_ROWS at a time.
        let mut missing: Vec<(String, Vec<usize>)> = Vec::new();
        for h in &hashes {
            if let Some(positions) = want.remove(h.as_str()) {
                missing.push((h.clone(), positions));
            }
        }
        if !missing.is_empty() {
            tracing::info!(missing = missing.len(), total = texts.len(), dir = %self.dir.display(), "embedding uncached texts");
        }
        for part in missing.chunks(SHARD_ROWS) {
            let new_texts: Vec<&str> = part.iter().map(|(_, p)| texts[p[0]].as_ref()).collect();
            let e = encoder
                .embed(&new_texts)?
                .to_device(&Device::Cpu)
                .context(|| "caching embeddings".into())?;
            let new_hashes: Vec<String> = part.iter().map(|(h, _)| h.clone()).collect();
            self.write_shard(&e, &new_hashes)?;
            let values = e
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .context(|| "caching embeddings".into())?;
            for (j, (_, positions)) in part.iter().enumerate() {
                fill(&mut out, positions, &values[j * dim..(j + 1) * dim]);
            }
        }
        Tensor::from_vec(out, (texts.len(), dim), encoder.device())
            .context(|| "gathering cached embeddings".into())
    }

    /// Writes one shard (and `key.json` when the folder has none yet).
    ///
    /// # Shapes
    /// - `embeddings`: `[hashes.len(), dim]` f32 on the CPU
    fn write_shard(&self, embeddings: &Tensor, hashes: &[String]) -> Result<()> {
        if attribute(&self.dir).is_err() {
            let key = KeyFile {
                identity: self.identity.clone(),
            };
            let json = serde_json::to_vec_pretty(&key)
                .map_err(|e| Error::invalid("cache key file", e.to_string()))?;
            crate::io::write_atomic(&self.dir.join(KEY_FILE), &json)?;
        }
        let hash_list = serde_json::to_string(hashes)
            .map_err(|e| Error::invalid("cache shard", e.to_string()))?;
        let meta = HashMap::from([
            (HASHES.to_string(), hash_list),
            (DIGEST.to_string(), shard_digest(embeddings, hashes)?),
            (WEIGHTS.to_string(), self.identity.weights_sha256.clone()),
            ("model".to_string(), self.identity.name.clone()),
        ]);
        let name = format!("shard-{}.safetensors", &text_hash(&hashes.concat())[..16]);
        write_safetensors(&self.dir.join(name), &[(EMBEDDINGS, embeddings)], &meta)
    }
}

/// A shard that failed its checks.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BadShard {
    /// The shard file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
    /// Whether it was deleted.
    pub deleted: bool,
}

/// What [`verify_all`] found in one key folder.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyReport {
    /// The key folder.
    pub dir: PathBuf,
    /// The encoder it belongs to, from its `key.json`, when that is readable and matches the folder.
    pub identity: Option<ModelIdentity>,
    /// What is wrong with `key.json`, if anything.
    pub key_problem: Option<String>,
    /// Shards that passed every check.
    pub ok: usize,
    /// Shards that did not.
    pub bad: Vec<BadShard>,
}

impl KeyReport {
    /// The model's name, or `?` when the key cannot be attributed.
    pub fn model_name(&self) -> &str {
        self.identity.as_ref().map_or("?", |i| i.name.as_str())
    }
}

/// The key folders under `home/embeddings`, in name order.
fn key_dirs(home: &Path) -> Result<Vec<PathBuf>> {
    let root = home.join("embeddings");
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&root, e)),
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The identity in a key folder's `key.json`, or what is wrong with it.
fn attribute(dir: &Path) -> std::result::Result<ModelIdentity, String> {
    let Some(identity) = read_key_file(dir) else {
        return Err(format!(
            "no readable {KEY_FILE} (written by an older relstitch?)"
        ));
    };
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    if name.as_deref() != Some(key_of(&identity).as_str()) {
        return Err(format!("{KEY_FILE} describes another key than its folder"));
    }
    Ok(identity)
}

/// Checks every shard of every key under `home/embeddings` (`relstitch cache verify`): each must be
/// readable, match its digest, and have been computed with its key's weights. With `fix`, bad shards
/// and stale temporaries are deleted.
///
/// # Errors
/// [`Error::Io`] when the cache folder cannot be listed.
pub fn verify_all(home: &Path, fix: bool) -> Result<Vec<KeyReport>> {
    let mut reports = Vec::new();
    for dir in key_dirs(home)? {
        if fix {
            remove_stale_temporaries(&dir, |n| n.starts_with(".tmp"), STALE_AFTER);
            crate::io::clean_stale_temporaries(&dir);
        }
        let (identity, key_problem) = match attribute(&dir) {
            Ok(i) => (Some(i), None),
            Err(p) => (None, Some(p)),
        };
        let weights = identity.as_ref().map(|i| i.weights_sha256.as_str());
        let mut report = KeyReport {
            dir: dir.clone(),
            identity: identity.clone(),
            key_problem,
            ok: 0,
            bad: Vec::new(),
        };
        for f in shard_files(&dir) {
            match read_shard(&f, weights) {
                Ok(_) => report.ok += 1,
                Err(reason) => {
                    let deleted = fix && std::fs::remove_file(&f).is_ok();
                    report.bad.push(BadShard {
                        path: f,
                        reason,
                        deleted,
                    });
                }
            }
        }
        reports.push(report);
    }
    Ok(reports)
}

/// What [`clear`] removed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Cleared {
    /// Key folders removed.
    pub keys: usize,
    /// Key folders kept because they could not be attributed to a model (no `key.json`).
    pub unattributed_kept: usize,
}

/// The weights sha256 values that `model` may stand for, without fetching anything: a sha256
/// itself; a folder's weights (hashed) and its provenance; a catalog name's pinned sha256 and the
/// fetched copy's provenance.
fn weights_of(home: &Path, model: &str) -> Result<Vec<String>> {
    let mut shas = Vec::new();
    if model.len() == 64 && model.bytes().all(|b| b.is_ascii_hexdigit()) {
        shas.push(model.to_ascii_lowercase());
    }
    let path = Path::new(model);
    let mut dirs = vec![];
    if path.is_dir() {
        dirs.push(path.to_path_buf());
    }
    if let Some(m) = crate::hub::catalog::Catalog::builtin()?.get(model) {
        shas.extend(m.weights_sha256.clone());
        dirs.push(home.join("models").join(&m.name));
    }
    let verdicts = crate::hub::verify::VerdictCache::new(home);
    for dir in dirs {
        if let Some(p) = crate::hub::fetch::Provenance::read(&dir) {
            shas.push(p.weights_sha256);
        }
        if let Some(w) = crate::encoder::weights_file(&dir) {
            shas.push(verdicts.sha256(&w)?.sha256);
        }
    }
    Ok(shas)
}

/// Removes cached embeddings under `home/embeddings` (`relstitch cache clear`): all of them, or
/// only the keys of `model` (a catalog name, a model folder, a name as given when embedding, or a
/// weights sha256), found through each key's `key.json`.
///
/// # Errors
/// [`Error::Io`] when a key folder cannot be removed.
pub fn clear(home: &Path, model: Option<&str>) -> Result<Cleared> {
    let mut cleared = Cleared::default();
    let Some(model) = model else {
        cleared.keys = key_dirs(home)?.len();
        let root = home.join("embeddings");
        match std::fs::remove_dir_all(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&root, e)),
        }
        return Ok(cleared);
    };
    let shas = weights_of(home, model)?;
    for dir in key_dirs(home)? {
        match attribute(&dir) {
            Ok(identity) => {
                if identity.name == model || shas.contains(&identity.weights_sha256) {
                    std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                    cleared.keys += 1;
                }
            }
            Err(_) => cleared.unattributed_kept += 1,
        }
    }
    Ok(cleared)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::encoder::{Pooling, Precision};

    #[test]
    fn the_key_separates_precisions_and_keeps_f32_keys() {
        let mut id = ModelIdentity {
            name: "m".into(),
            hub_id: None,
            revision: None,
            commit: None,
            path: PathBuf::from("/m"),
            weights_sha256: "ab".repeat(32),
            architecture: "bert".into(),
            pooling: Pooling::Mean,
            normalize: true,
            max_length: 256,
            prefix: None,
            prompt_name: None,
            dense: Vec::new(),
            truncate_dim: None,
            similarity: None,
            dim: 384,
            precision: Precision::F32,
        };
        // The key of an f32 encoder is the one relstitch computed before precisions existed.
        let old = format!("{}|mean|true|256|", "ab".repeat(32));
        assert_eq!(
            key_of(&id),
            hex::encode(Sha256::digest(old.as_bytes()))[..32]
        );
        let f32_key = key_of(&id);
        id.precision = Precision::Int8;
        let int8_key = key_of(&id);
        id.precision = Precision::Bf16;
        let bf16_key = key_of(&id);
        assert!(f32_key != int8_key && int8_key != bf16_key && f32_key != bf16_key);
        // A Dense module, other Dense weights and a truncation are other keys; the commit a Hub
        // download came from is not (the weights' sha256 already says what it is).
        id.precision = Precision::F32;
        id.commit = Some("c".repeat(40));
        assert_eq!(key_of(&id), f32_key);
        let dense = crate::model_folder::DenseIdentity {
            path: "2_Dense".into(),
            in_features: 384,
            out_features: 128,
            activation: crate::model_folder::DenseActivation::Tanh,
            residual: false,
            weights_sha256: "cd".repeat(32),
        };
        id.dense = vec![dense.clone()];
        let dense_key = key_of(&id);
        id.dense[0].weights_sha256 = "ef".repeat(32);
        let other_dense_key = key_of(&id);
        id.truncate_dim = Some(64);
        let truncated_key = key_of(&id);
        let keys = [&f32_key, &dense_key, &other_dense_key, &truncated_key];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
