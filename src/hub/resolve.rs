//! Turning a model name into a folder on disk.
//!
//! Order: an existing local folder → a catalog name already fetched → the Hugging Face cache
//! (`HF_HOME`) → the catalog's registry source (fetched now) → the Hub itself (only with the
//! `hub-download` feature). A name that none of these can serve fails at once with a message that
//! says how to get it.

use std::path::{Path, PathBuf};

use crate::hub::catalog::Catalog;
use crate::hub::fetch::{CachedModel, Fetcher, Provenance};
use crate::hub::verify::{hugging_face_blob, Expected};
use crate::{Error, Result};

/// The weights file whose sha256 an [`Expected`] of a model folder is about.
const WEIGHTS: &str = "model.safetensors";

/// The expected weights of a folder fetched into `fetcher`'s cache.
fn fetched_expectation(dir: &Path, fetcher: &Fetcher) -> Option<Expected> {
    Provenance::read(dir).map(|p| p.expected_weights(dir, Some(fetcher.home())))
}

/// Where a resolved model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolvedFrom {
    /// A folder given by path.
    LocalFolder,
    /// The relstitch cache (fetched earlier).
    Cache,
    /// The Hugging Face cache.
    HuggingFaceCache,
    /// Fetched just now from a package registry.
    Registry,
    /// Downloaded just now from the Hugging Face Hub.
    Hub,
}

/// A model name resolved to a folder.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// The name as asked for (the catalog name when it is one).
    pub name: String,
    /// The folder holding config.json, weights and tokenizer.
    pub dir: PathBuf,
    /// The Hub id, when known.
    pub hub_id: Option<String>,
    /// The Hub revision, when known.
    pub revision: Option<String>,
    /// Where it came from.
    pub from: ResolvedFrom,
    /// The sha256 its weights must have, when something other than the file itself says so (the
    /// provenance file of a fetched model, a Hugging Face cache blob name).
    pub expected_weights: Option<Expected>,
}

impl ResolvedModel {
    /// A local folder, taken as is (its weights are checked against its provenance file, or against
    /// the blob name when it is a Hugging Face cache snapshot).
    pub fn local(dir: &Path) -> Self {
        let provenance = crate::hub::fetch::Provenance::read(dir);
        let home = crate::hub::fetch::home_dir().ok();
        let expected_weights = match &provenance {
            Some(p) => Some(p.expected_weights(dir, home.as_deref())),
            None => hugging_face_blob(&dir.join(WEIGHTS), None),
        };
        Self {
            name: provenance
                .as_ref()
                .map(|p| p.model.name.clone())
                .unwrap_or_else(|| dir.display().to_string()),
            dir: dir.to_path_buf(),
            hub_id: provenance.as_ref().map(|p| p.model.hub_id.clone()),
            revision: provenance.as_ref().map(|p| p.model.revision.clone()),
            from: ResolvedFrom::LocalFolder,
            expected_weights,
        }
    }
}

/// Resolves `name` with the built-in catalog and the default cache.
pub fn resolve_model(name: &str) -> Result<ResolvedModel> {
    resolve_with(name, &Catalog::builtin()?, &Fetcher::new()?)
}

/// Resolves `name` with a given catalog and fetcher.
pub fn resolve_with(name: &str, catalog: &Catalog, fetcher: &Fetcher) -> Result<ResolvedModel> {
    let path = Path::new(name);
    if path.is_dir() {
        return Ok(ResolvedModel::local(path));
    }
    if name.starts_with('.') || name.starts_with('/') || name.starts_with('~') || path.exists() {
        return Err(Error::UnknownModel {
            name: name.into(),
            hint: "no such folder; give a folder holding config.json, model.safetensors and tokenizer.json".into(),
        });
    }
    resolve_by_name(name, catalog, fetcher)
}

/// Resolves a catalog name or a Hub id (`org/name[@revision]`) without looking for a local folder
/// of that name: the cache, the Hugging Face cache, the registry, the Hub. What a checkpoint uses to
/// find its encoder, so that a folder that happens to sit in the current directory is never taken
/// for it.
///
/// # Errors
/// [`Error::UnknownModel`] when nothing serves `name`; the errors of fetching otherwise.
pub(crate) fn resolve_by_name(
    name: &str,
    catalog: &Catalog,
    fetcher: &Fetcher,
) -> Result<ResolvedModel> {
    let entry = catalog.get(name);
    if let Some(m) = entry {
        match fetcher.check_cached(m, false)? {
            CachedModel::Ready { dir, .. } => {
                return Ok(catalog_model(m, dir, fetcher, ResolvedFrom::Cache));
            }
            // Damaged weights are an error that says how to repair them, never a silent re-fetch.
            CachedModel::Damaged { problem, .. } => return Err(problem),
            CachedModel::Missing => {}
        }
    }
    let (hub_id, revision) = match entry {
        Some(m) => (m.hub_id.clone(), m.revision.clone()),
        None => match name.split_once('@') {
            Some((id, rev)) => (id.to_string(), rev.to_string()),
            None => (name.to_string(), "main".to_string()),
        },
    };
    let hf_cache = hf_hub::Cache::from_env();
    let repo =
        hf_hub::Repo::with_revision(hub_id.clone(), hf_hub::RepoType::Model, revision.clone());
    if let Some(config) = hf_cache.repo(repo.clone()).get("config.json") {
        if let Some(dir) = config.parent() {
            tracing::info!(model = name, dir = %dir.display(), "found in the Hugging Face cache");
            return Ok(ResolvedModel {
                name: entry
                    .map(|m| m.name.clone())
                    .unwrap_or_else(|| name.to_string()),
                dir: dir.to_path_buf(),
                expected_weights: hugging_face_blob(&dir.join(WEIGHTS), Some(&hub_id)),
                hub_id: Some(hub_id),
                revision: Some(revision),
                from: ResolvedFrom::HuggingFaceCache,
            });
        }
    }
    if let Some(m) = entry {
        let dir = fetcher.fetch(catalog, m)?;
        return Ok(catalog_model(m, dir, fetcher, ResolvedFrom::Registry));
    }
    from_hub(name, repo, &hf_cache, catalog)
}

/// A catalog model materialised in the cache folder `dir`.
fn catalog_model(
    m: &crate::hub::catalog::CatalogModel,
    dir: PathBuf,
    fetcher: &Fetcher,
    from: ResolvedFrom,
) -> ResolvedModel {
    ResolvedModel {
        name: m.name.clone(),
        expected_weights: fetched_expectation(&dir, fetcher),
        dir,
        hub_id: Some(m.hub_id.clone()),
        revision: Some(m.revision.clone()),
        from,
    }
}

#[cfg(feature = "hub-download")]
fn from_hub(
    name: &str,
    repo: hf_hub::Repo,
    _cache: &hf_hub::Cache,
    _catalog: &Catalog,
) -> Result<ResolvedModel> {
    let api = hf_hub::api::sync::Api::new().map_err(|e| Error::Fetch {
        what: name.into(),
        reason: format!("cannot start the Hugging Face Hub client ({e})"),
    })?;
    let api = api.repo(repo.clone());
    let get = |f: &str| api.get(f);
    let config = get("config.json").map_err(|e| Error::Fetch {
        what: name.into(),
        reason: format!(
            "cannot download config.json from the Hub ({e}); check the id and your network"
        ),
    })?;
    for f in ["model.safetensors", "tokenizer.json"] {
        get(f).map_err(|e| Error::Fetch {
            what: format!("{name}/{f}"),
            reason: format!("{e}"),
        })?;
    }
    for f in [
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
    ] {
        let _ = get(f); // optional sentence-transformers files
    }
    let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(ResolvedModel {
        name: name.into(),
        expected_weights: hugging_face_blob(
            &dir.join(WEIGHTS),
            Some(name.split('@').next().unwrap_or(name)),
        ),
        dir,
        hub_id: Some(repo.folder_name()),
        revision: Some(repo.revision().to_string()),
        from: ResolvedFrom::Hub,
    })
}

#[cfg(not(feature = "hub-download"))]
fn from_hub(
    name: &str,
    _repo: hf_hub::Repo,
    cache: &hf_hub::Cache,
    catalog: &Catalog,
) -> Result<ResolvedModel> {
    Err(Error::UnknownModel {
        name: name.into(),
        hint: format!(
            "not a folder, not in the catalog ({}), and not in the Hugging Face cache at {}. \
             Download it where the Hub is reachable (`huggingface-cli download {name}`) and copy the cache \
             (set HF_HOME), pass the model's folder instead, or build relstitch with `--features hub-download`",
            catalog.names().join(", "),
            cache.path().display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_hub_id_fails_fast_with_advice() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        std::env::set_var("HF_HOME", home.path().join("hf"));
        let fetcher = Fetcher::new()?.with_home(home.path());
        let err = resolve_with("someone/not-a-model", &Catalog::builtin()?, &fetcher);
        match err {
            Err(Error::UnknownModel { hint, .. }) => {
                assert!(
                    hint.contains("huggingface-cli download") || hint.contains("Hub"),
                    "{hint}"
                )
            }
            #[cfg(feature = "hub-download")]
            Err(Error::Fetch { .. }) => {}
            other => anyhow::bail!("unexpected: {other:?}"),
        }
        assert!(matches!(
            resolve_with("./no/such/folder", &Catalog::builtin()?, &fetcher),
            Err(Error::UnknownModel { .. })
        ));
        Ok(())
    }

    #[test]
    fn hugging_face_cache_is_used() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let hf = home.path().join("hf");
        // The layout hf-hub reads: hub/models--ORG--NAME/{refs/main, snapshots/COMMIT/...}
        let repo = hf.join("hub").join("models--org--tiny");
        std::fs::create_dir_all(repo.join("refs"))?;
        std::fs::write(repo.join("refs/main"), "abc123")?;
        let snap = repo.join("snapshots/abc123");
        std::fs::create_dir_all(&snap)?;
        std::fs::write(snap.join("config.json"), "{}")?;
        let cache = hf_hub::Cache::new(hf.join("hub"));
        assert!(cache.model("org/tiny".into()).get("config.json").is_some());
        Ok(())
    }
}
