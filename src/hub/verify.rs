//! Verified files: the sha256 of a model's weights is computed on every load, never taken on trust.
//!
//! Hashing a 400 MB weights file takes a second or more, so the *verdict* (the sha256 a file had)
//! is cached under `$RELSTITCH_HOME/verdicts/`, one small JSON file per file, keyed by the file's
//! canonical path, size, modification time and (on unix) change time in nanoseconds, device and
//! inode. Writing to the file changes its times, replacing it changes its inode, so a warm load
//! re-hashes nothing while a damaged file is hashed again. Verdicts are never written into a model's
//! own folder.
//!
//! Where the right sha256 is known ([`Expected`]: a fetched model's provenance file, the catalog,
//! the blob name of a Hugging Face cache snapshot), a different one is [`Error::DamagedWeights`],
//! which names the file and how to repair it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The folder of verdicts under a relstitch home.
const VERDICTS: &str = "verdicts";

/// A file modified this recently is not given a cached verdict: on a file system with coarse
/// timestamps a second write in the same tick would otherwise go unseen.
const RACY: Duration = Duration::from_secs(2);

/// The sha256 a file should have, where that knowledge comes from, and how to repair the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The sha256, lowercase hex.
    pub sha256: String,
    /// Who says so (a provenance file, the catalog, a Hugging Face blob name).
    pub according_to: String,
    /// What the user should run or do when the file does not match.
    pub repair: String,
}

/// A file's sha256 and whether it came from the verdict cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    /// The sha256 of the file's bytes, lowercase hex.
    pub sha256: String,
    /// True when the file was not read: a verdict for exactly this file (same path, size, times and
    /// inode) was cached.
    pub from_cache: bool,
}

/// What identifies one state of a file: any write or replacement changes at least one field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct FileState {
    path: PathBuf,
    size: u64,
    mtime: (i64, u32),
    ctime: Option<(i64, u32)>,
    dev: Option<u64>,
    inode: Option<u64>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Verdict {
    #[serde(flatten)]
    state: FileState,
    sha256: String,
}

fn split_time(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            let d = e.duration();
            (
                -i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            )
        }
    }
}

impl FileState {
    fn of(path: &Path) -> Result<Self> {
        let canonical = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
        let meta = std::fs::metadata(&canonical).map_err(|e| Error::io(path, e))?;
        let mtime = split_time(meta.modified().map_err(|e| Error::io(path, e))?);
        #[cfg(unix)]
        let (ctime, dev, inode) = {
            use std::os::unix::fs::MetadataExt;
            let nanos = u32::try_from(meta.ctime_nsec()).unwrap_or(0);
            (
                Some((meta.ctime(), nanos)),
                Some(meta.dev()),
                Some(meta.ino()),
            )
        };
        #[cfg(not(unix))]
        let (ctime, dev, inode) = (None, None, None);
        Ok(Self {
            path: canonical,
            size: meta.len(),
            mtime,
            ctime,
            dev,
            inode,
        })
    }

    /// Whether the file changed so recently that an equal state could hide a later write.
    fn is_racy(&self) -> bool {
        let now = split_time(SystemTime::now());
        let newest = self.ctime.map_or(self.mtime, |c| c.max(self.mtime));
        now.0.saturating_sub(newest.0) < RACY.as_secs() as i64
    }
}

/// Whether `s` is a sha256 in hex (64 hex digits).
fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The cache of hashing verdicts under one relstitch home.
#[derive(Debug, Clone)]
pub struct VerdictCache {
    dir: Option<PathBuf>,
}

impl VerdictCache {
    /// Verdicts kept under `home` (see [`crate::hub::fetch::home_dir`]), in `home/verdicts`.
    pub fn new(home: &Path) -> Self {
        Self {
            dir: Some(home.join(VERDICTS)),
        }
    }

    /// No cache: every file is hashed every time.
    pub fn disabled() -> Self {
        Self { dir: None }
    }

    fn entry(&self, state: &FileState) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let name = hex::encode(Sha256::digest(state.path.as_os_str().as_encoded_bytes()));
        Some(dir.join(format!("{}.json", &name[..32])))
    }

    /// The sha256 of `path`, from the cache when the file is exactly as it was when last hashed.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read.
    pub fn sha256(&self, path: &Path) -> Result<Hashed> {
        let state = FileState::of(path)?;
        if let Some(entry) = self.entry(&state) {
            if let Ok(text) = std::fs::read_to_string(&entry) {
                if let Ok(v) = serde_json::from_str::<Verdict>(&text) {
                    if v.state == state && is_sha256(&v.sha256) {
                        tracing::debug!(file = %path.display(), "sha256 from the verdict cache");
                        return Ok(Hashed {
                            sha256: v.sha256,
                            from_cache: true,
                        });
                    }
                }
            }
        }
        self.hash_and_store(path, state)
    }

    /// The sha256 of `path`, always read from the file (the cached verdict is refreshed).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read.
    pub fn rehash(&self, path: &Path) -> Result<Hashed> {
        let state = FileState::of(path)?;
        self.hash_and_store(path, state)
    }

    fn hash_and_store(&self, path: &Path, before: FileState) -> Result<Hashed> {
        let started = std::time::Instant::now();
        let sha256 = crate::io::sha256_file(&before.path)?;
        tracing::debug!(file = %path.display(), seconds = started.elapsed().as_secs_f64(), "hashed");
        // Only a file that did not change while it was read, and not just now, gets a verdict.
        let after = FileState::of(path)?;
        if after == before && !after.is_racy() {
            if let Some(entry) = self.entry(&after) {
                let verdict = Verdict {
                    state: after,
                    sha256: sha256.clone(),
                };
                let stored = serde_json::to_vec_pretty(&verdict)
                    .map_err(|e| Error::invalid("verdict", e.to_string()))
                    .and_then(|json| crate::io::write_atomic(&entry, &json));
                if let Err(e) = stored {
                    tracing::debug!("cannot cache the verdict for {}: {e}", path.display());
                }
            }
        }
        Ok(Hashed {
            sha256,
            from_cache: false,
        })
    }

    /// The sha256 of `path`, checked against `expected` when one is known.
    ///
    /// With `full`, the file is read even when a verdict is cached.
    ///
    /// # Errors
    /// [`Error::DamagedWeights`] when the sha256 differs from `expected`; [`Error::Io`] when the file
    /// cannot be read.
    pub fn check(&self, path: &Path, expected: Option<&Expected>, full: bool) -> Result<String> {
        let hashed = if full {
            self.rehash(path)?
        } else {
            self.sha256(path)?
        };
        match expected {
            Some(e) if e.sha256 != hashed.sha256 => Err(Error::DamagedWeights {
                path: path.to_path_buf(),
                expected: e.sha256.clone(),
                actual: hashed.sha256,
                repair: format!(
                    "the expected sha256 comes from {}; {}",
                    e.according_to, e.repair
                ),
            }),
            _ => Ok(hashed.sha256),
        }
    }
}

/// The sha256 that a file of a Hugging Face cache snapshot should have: hf-hub stores large (LFS)
/// files as `blobs/<sha256>` and links them from `snapshots/<commit>/<name>`.
pub fn hugging_face_blob(file: &Path, hub_id: Option<&str>) -> Option<Expected> {
    let target = std::fs::read_link(file).ok()?;
    let name = target.file_name()?.to_str()?;
    if !is_sha256(name) {
        return None;
    }
    let blob = file.parent().map_or(target.clone(), |p| p.join(&target));
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let download = match hub_id {
        Some(id) => format!("`huggingface-cli download {id} {file_name} --force-download`"),
        None => "`huggingface-cli download <hub id> --force-download`".to_string(),
    };
    Some(Expected {
        sha256: name.to_ascii_lowercase(),
        according_to: "its Hugging Face cache blob name".into(),
        repair: format!(
            "the download is damaged; delete {} and download it again with {download}",
            blob.display()
        ),
    })
}

/// Whether a temporary entry (file or folder) was left by a process that is gone: it and, for a
/// folder, everything directly inside it were last modified more than `age` ago.
fn is_stale(path: &Path, age: Duration) -> bool {
    let old = |p: &Path| {
        std::fs::symlink_metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|e| e > age)
    };
    if !old(path) {
        return false;
    }
    match std::fs::read_dir(path) {
        Ok(entries) => entries.filter_map(|e| e.ok()).all(|e| old(&e.path())),
        Err(_) => true,
    }
}

/// How old a temporary must be before it is taken for a leftover of a killed process.
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// Removes the entries of `dir` whose name `is_temporary` and that are stale (see [`is_stale`]):
/// the leftovers of a killed process. Fresh ones are kept: another process may be writing them.
/// Returns how many were removed; failures are logged, never fatal.
pub(crate) fn remove_stale_temporaries(
    dir: &Path,
    is_temporary: impl Fn(&str) -> bool,
    age: Duration,
) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let path = entry.path();
        if !is_temporary(name) || !is_stale(&path, age) {
            continue;
        }
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if crate::io::remove_leftover(&path, is_dir) {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_file() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let f = home.path().join("w.bin");
        std::fs::write(&f, b"weights")?;
        // A file changed in the last two seconds is not given a verdict.
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&f)?
            .set_modified(old)?;
        std::thread::sleep(RACY + Duration::from_millis(100));
        let cache = VerdictCache::new(home.path());
        let first = cache.sha256(&f)?;
        assert!(!first.from_cache);
        assert_eq!(first.sha256, hex::encode(Sha256::digest(b"weights")));
        assert!(cache.sha256(&f)?.from_cache);
        // Same size, same mtime, other bytes: the change time (or inode) gives it away.
        std::fs::write(&f, b"WEIGHTS")?;
        std::fs::File::options()
            .write(true)
            .open(&f)?
            .set_modified(old)?;
        let again = cache.sha256(&f)?;
        #[cfg(unix)]
        assert!(!again.from_cache);
        #[cfg(unix)]
        assert_eq!(again.sha256, hex::encode(Sha256::digest(b"WEIGHTS")));
        assert!(!cache.rehash(&f)?.from_cache);
        let expected = Expected {
            sha256: first.sha256,
            according_to: "a test".into(),
            repair: "restore it".into(),
        };
        let err = cache.check(&f, Some(&expected), false);
        #[cfg(unix)]
        assert!(matches!(err, Err(Error::DamagedWeights { .. })), "{err:?}");
        let _ = err;
        Ok(())
    }

    #[test]
    fn only_stale_temporaries_are_removed() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let old = SystemTime::now() - Duration::from_secs(3600);
        let stale = dir.path().join(".tmpOLD");
        std::fs::write(&stale, b"x")?;
        std::fs::File::options()
            .write(true)
            .open(&stale)?
            .set_modified(old)?;
        std::fs::write(dir.path().join(".tmpNEW"), b"x")?;
        std::fs::write(dir.path().join("keep"), b"x")?;
        let n = remove_stale_temporaries(dir.path(), |n| n.starts_with(".tmp"), STALE_AFTER);
        assert_eq!(n, 1);
        assert!(!stale.exists());
        assert!(dir.path().join(".tmpNEW").exists() && dir.path().join("keep").exists());
        Ok(())
    }
}
