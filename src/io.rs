//! Plain-file input and output: text inputs, atomic writes, safetensors that numpy and PyTorch read.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

pub mod rows;
pub use rows::{RowReader, RowWriter};

/// The prefix of every temporary file or folder relstitch creates beside an output. Each one is
/// locked (an advisory `flock`) by the process writing it for as long as it lives, so a later run
/// can tell one left behind by a crash (unlocked: removed) from one still being written (locked:
/// left alone).
pub(crate) const TEMP_PREFIX: &str = ".relstitch-tmp-";

/// The lock file inside a temporary folder.
const DIR_LOCK: &str = ".lock";

/// Temporaries younger than this are never removed by [`clean_stale_temporaries`]: their writer
/// may be between creating and locking them.
const TEMP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Legacy temporary folders of older relstitch versions (no lock) are removed after this long.
const LEGACY_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Writes `bytes` to `path` atomically: a locked temporary file in the same folder, synced, then
/// renamed over `path`.
///
/// A crash or an error never leaves a half-written `path` behind, and the temporary file a crash
/// leaves is removed by the next relstitch write into the same folder.
///
/// # Errors
/// [`Error::InvalidArgument`] when `path` exists and is not a regular file (a folder, a symbolic
/// link, a FIFO, a device...): relstitch replaces only regular files. [`Error::Io`] when the folder
/// cannot be created or written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    check_replaceable_file(path)?;
    let dir = parent_dir(path);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut tmp = temp_file_in(&dir)?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    persist(tmp, path)
}

/// Fails unless `path` is absent or a regular file (symbolic links are not followed: a link is
/// refused, never replaced).
///
/// # Errors
/// [`Error::InvalidArgument`] naming what sits at `path`; [`Error::Io`] when `path` cannot be
/// inspected (e.g. permission denied on its folder).
pub fn check_replaceable_file(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(m) => Err(Error::invalid(
            "output",
            format!(
                "{} exists and is {}; relstitch only replaces regular files: remove it or choose another output path",
                path.display(),
                describe_file_type(&m.file_type())
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// "a folder", "a symbolic link", "a FIFO"...
pub(crate) fn describe_file_type(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device node";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a folder"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Fails when `output` is one of `inputs` (the same path, the same file through another path or
/// a link, or the same folder): a command never overwrites what it reads.
///
/// # Errors
/// [`Error::InvalidArgument`] naming both.
pub fn refuse_overwriting_inputs(output: &Path, inputs: &[&Path]) -> Result<()> {
    for input in inputs {
        if same_file(output, input) {
            return Err(Error::invalid(
                "output",
                format!(
                    "{} is also an input ({}); relstitch never overwrites what it reads: choose another output path",
                    output.display(),
                    input.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks an output file before any work is done: it must not be one of `inputs`
/// ([`refuse_overwriting_inputs`]) and, if it exists, must be a regular file
/// ([`check_replaceable_file`]).
///
/// # Errors
/// [`Error::InvalidArgument`] saying which rule `output` breaks.
pub fn check_output_file(output: &Path, inputs: &[&Path]) -> Result<()> {
    refuse_overwriting_inputs(output, inputs)?;
    check_replaceable_file(output)
}

/// Whether two paths name the same file or folder (by device and inode on unix, by canonical path
/// elsewhere); false when either does not exist.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
        false
    }
    #[cfg(not(unix))]
    {
        match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

/// A new temporary file in `dir`, named with [`TEMP_PREFIX`] and locked by this process; stale
/// temporaries of crashed runs in `dir` are removed first.
pub(crate) fn temp_file_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    clean_stale_temporaries(dir);
    let tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    lock(tmp.as_file(), tmp.path())?;
    Ok(tmp)
}

/// A temporary folder beside an output, locked by this process while it lives and removed with
/// everything in it when dropped.
#[derive(Debug)]
pub(crate) struct TempDir {
    dir: tempfile::TempDir,
    // Held open: the lock lives as long as this handle.
    _lock: std::fs::File,
}

impl TempDir {
    /// Creates one in `parent` (after removing the stale temporaries of crashed runs there).
    pub(crate) fn new_in(parent: &Path) -> Result<Self> {
        clean_stale_temporaries(parent);
        let dir = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        let lock_path = dir.path().join(DIR_LOCK);
        let file = std::fs::File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
        lock(&file, &lock_path)?;
        Ok(Self { dir, _lock: file })
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn lock(file: &std::fs::File, path: &Path) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "a fresh temporary file is locked by another process",
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(path, e)),
    }
}

/// Whether the temporary `path` (a file, or a folder holding a lock file) belongs to a process that
/// is gone: its lock can be taken. Temporaries younger than a second are never stale.
fn is_stale(path: &Path, meta: &std::fs::Metadata) -> bool {
    let age = meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .unwrap_or_default();
    if age < TEMP_GRACE {
        return false;
    }
    let lock_path = if meta.is_dir() {
        path.join(DIR_LOCK)
    } else {
        path.to_path_buf()
    };
    match std::fs::File::open(&lock_path) {
        Ok(f) => f.try_lock().is_ok(),
        // A folder without its lock file is one whose creation or removal a crash cut short (the
        // lock file is made right after the folder, and a removal may take it first): stale.
        Err(_) => meta.is_dir(),
    }
}

/// Removes the temporaries that crashed relstitch runs left in `dir`: unlocked files and folders
/// named [`TEMP_PREFIX`]`*`, and the lock-less `.relstitch-ckpt-*` folders of older versions once
/// an hour old. An interrupted folder replacement is rolled back first (see
/// [`replace_dir`]). Best effort: failures are logged, never returned.
pub(crate) fn clean_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            continue;
        }
        let stale = if name.starts_with(TEMP_PREFIX) {
            is_stale(&path, &meta)
        } else if name.starts_with(".relstitch-ckpt-") && meta.is_dir() {
            meta.modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age >= LEGACY_GRACE)
        } else {
            false
        };
        if !stale {
            continue;
        }
        if meta.is_dir() {
            roll_back_interrupted_replacement(&path);
        }
        remove_leftover(&path, meta.is_dir());
    }
}

/// Removes a temporary file or folder left by a process that is gone, logging what happened;
/// returns whether it is gone. Best effort: a failure is logged, never returned.
pub(crate) fn remove_leftover(path: &Path, is_dir: bool) -> bool {
    let done = if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match done {
        Ok(()) => {
            tracing::info!(path = %path.display(), "removed a temporary left by an interrupted run");
            true
        }
        Err(e) => {
            tracing::warn!("cannot remove the stale temporary {}: {e}", path.display());
            false
        }
    }
}

/// The file inside a staging folder that names the folder being replaced (the portable,
/// two-rename path of [`replace_dir`] only).
const TARGET_RECORD: &str = "target";
/// Where the replaced folder waits inside the staging folder (two-rename path only).
const OLD: &str = "old";

/// If `staging` holds a folder moved aside by an interrupted two-rename replacement and its
/// destination is empty, moves it back.
fn roll_back_interrupted_replacement(staging: &Path) {
    let old = staging.join(OLD);
    let Ok(target) = std::fs::read_to_string(staging.join(TARGET_RECORD)) else {
        return;
    };
    let target = PathBuf::from(target);
    if old.is_dir() && std::fs::symlink_metadata(&target).is_err() {
        match std::fs::rename(&old, &target) {
            Ok(()) => tracing::warn!(
                path = %target.display(),
                "restored the folder an interrupted save had moved aside"
            ),
            Err(e) => tracing::warn!(
                "an interrupted save left {} in {}; move it back by hand ({e})",
                target.display(),
                old.display()
            ),
        }
    }
}

/// Puts the complete folder `new` (inside the locked `staging` folder) at `dest`.
///
/// When `dest` does not exist, `new` is renamed to it. When it does (the caller has checked that
/// it may be replaced), the two are exchanged in one atomic `renameat2(RENAME_EXCHANGE)` on Linux,
/// so that at every instant `dest` is either the old folder or the new one, whole; the old one then
/// goes with `staging`. Elsewhere (or on a file system without exchange), `dest` is moved into
/// `staging` (which records where it came from), `new` renamed to `dest`, and a failure in between
/// moves it back; a crash in between is rolled back by the next run's
/// [`clean_stale_temporaries`].
pub(crate) fn replace_dir(staging: &TempDir, new: &Path, dest: &Path) -> Result<()> {
    if std::fs::symlink_metadata(dest).is_err() {
        std::fs::rename(new, dest).map_err(|e| Error::io(dest, e))?;
        sync_dir(&parent_dir(dest));
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, new, CWD, dest, RenameFlags::EXCHANGE) {
            Ok(()) => {
                sync_dir(&parent_dir(dest));
                failpoint("replace-dir-exchanged");
                return Ok(());
            }
            Err(e) => {
                tracing::debug!("atomic exchange unavailable here ({e}); using two renames");
            }
        }
    }
    let record = staging.path().join(TARGET_RECORD);
    let absolute = std::path::absolute(dest).map_err(|e| Error::io(dest, e))?;
    write_atomic(&record, absolute.as_os_str().as_encoded_bytes())?;
    let old = staging.path().join(OLD);
    std::fs::rename(dest, &old).map_err(|e| Error::io(dest, e))?;
    failpoint("replace-dir-moved-aside");
    if let Err(e) = std::fs::rename(new, dest) {
        let _ = std::fs::rename(&old, dest);
        return Err(Error::io(dest, e));
    }
    sync_dir(&parent_dir(dest));
    Ok(())
}

/// A kind of folder relstitch owns (a checkpoint, a migration map): how to recognise one, so that a
/// save replaces a folder only when it is provably one of them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnedFolder<'a> {
    /// What it is, in messages ("checkpoint", "migration map").
    pub what: &'a str,
    /// The command-line flag that names the folder, in messages ("--out").
    pub flag: &'a str,
    /// The JSON file inside that carries the format marker (`config.json`, `map.json`).
    pub marker_file: &'a str,
    /// The value of that file's `"format"` field.
    pub format: &'a str,
    /// The files such a folder may hold besides the marker file.
    pub files: &'a [&'a str],
    /// Reads, from the parsed marker file, the names of further files it declares (a
    /// checkpoint's anchors file).
    pub declared: fn(&serde_json::Value) -> Vec<String>,
}

impl OwnedFolder<'_> {
    /// Fails unless `dir` may be replaced by a save of this kind: absent, an empty folder, or a
    /// folder whose marker file carries the format marker and which holds nothing but the files of
    /// this kind, all regular files.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming why `dir` may not be replaced.
    pub(crate) fn check_replaceable(&self, dir: &Path) -> Result<()> {
        let refuse = |why: String| {
            Error::invalid(
                format!("{} output", self.what),
                format!(
                    "{} {why}; relstitch replaces only an empty folder or one of its own {}s: choose another {}",
                    dir.display(),
                    self.what,
                    self.flag
                ),
            )
        };
        let meta = match std::fs::symlink_metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(dir, e)),
        };
        if !meta.file_type().is_dir() {
            return Err(refuse(format!(
                "exists and is {}",
                describe_file_type(&meta.file_type())
            )));
        }
        let names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .map(|e| {
                e.map(|e| e.file_name().to_string_lossy().into_owned())
                    .map_err(|e| Error::io(dir, e))
            })
            .collect::<Result<_>>()?;
        if names.is_empty() {
            return Ok(());
        }
        let marker = std::fs::read(dir.join(self.marker_file))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let format = marker
            .as_ref()
            .and_then(|v| v.get("format"))
            .and_then(serde_json::Value::as_str);
        if format != Some(self.format) {
            return Err(refuse(format!(
                "exists and is not a relstitch {} (its {} has no `\"format\": \"{}\"`)",
                self.what, self.marker_file, self.format
            )));
        }
        let declared = marker.as_ref().map(self.declared).unwrap_or_default();
        let mut foreign: Vec<&String> = names
            .iter()
            .filter(|n| {
                n.as_str() != self.marker_file
                    && !self.files.contains(&n.as_str())
                    && !declared.contains(n)
            })
            .collect();
        foreign.sort();
        if !foreign.is_empty() {
            let list: Vec<&str> = foreign.iter().take(5).map(|s| s.as_str()).collect();
            return Err(refuse(format!(
                "is a relstitch {} but also holds files that are not part of one ({}{})",
                self.what,
                list.join(", "),
                if foreign.len() > 5 { ", ..." } else { "" }
            )));
        }
        for n in &names {
            let p = dir.join(n);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_file() => {}
                Ok(m) => {
                    return Err(refuse(format!(
                        "holds {} that is {}",
                        p.display(),
                        describe_file_type(&m.file_type())
                    )))
                }
                Err(e) => return Err(Error::io(&p, e)),
            }
        }
        Ok(())
    }

    /// Saves a folder of this kind at `dir` atomically: `write` fills a fresh folder inside a
    /// locked staging folder beside `dir`, which then takes `dir`'s place ([`replace_dir`]). A
    /// crash at any point leaves `dir` as it was or complete. `dir` must not be one of `inputs`
    /// and must pass [`check_replaceable`](Self::check_replaceable), checked before any writing
    /// and again right before the swap. The failpoint `staged` is reached once the files are
    /// written (crash tests).
    pub(crate) fn save(
        &self,
        dir: &Path,
        inputs: &[&Path],
        staged: &str,
        write: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        refuse_overwriting_inputs(dir, inputs)?;
        self.check_replaceable(dir)?;
        let parent = parent_dir(dir);
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let staging = TempDir::new_in(&parent)?;
        let new = staging.path().join("new");
        std::fs::create_dir(&new).map_err(|e| Error::io(&new, e))?;
        write(&new)?;
        failpoint(staged);
        // Checked again right before the swap: the folder may have changed while we wrote.
        self.check_replaceable(dir)?;
        replace_dir(&staging, &new, dir)
    }
}

/// Makes a rename inside `dir` durable (best effort; not every platform can sync a folder).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Test hook for crash tests: when the environment variable `RELSTITCH_FAILPOINT` equals `name`,
/// prints `relstitch failpoint NAME reached` on stderr and waits to be killed. Costs one cached
/// environment lookup otherwise.
pub(crate) fn failpoint(name: &str) {
    static POINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let point = POINT.get_or_init(|| std::env::var("RELSTITCH_FAILPOINT").ok());
    if point.as_deref() == Some(name) {
        eprintln!("relstitch failpoint {name} reached");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Syncs a finished temporary file, makes it readable like an ordinary file (temporary files are
/// created `0600`) and renames it to `path`.
pub(crate) fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(tmp.path(), e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    failpoint("atomic-write-synced");
    check_replaceable_file(path)?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_dir(&parent_dir(path));
    Ok(())
}

/// The folder a file lives in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes named tensors (converted to contiguous CPU tensors) and string metadata as one safetensors
/// file, atomically.
///
/// # Errors
/// [`Error::Candle`] when a tensor cannot be copied to the CPU; [`Error::Safetensors`] when the
/// tensors cannot be serialised; the errors of [`write_atomic`].
pub fn write_safetensors(
    path: &Path,
    tensors: &[(&str, &Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let mut owned = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t
            .to_device(&Device::Cpu)
            .and_then(|t| t.contiguous())
            .map_err(|e| {
                Error::candle(
                    format!("preparing tensor `{name}` for {}", path.display()),
                    e,
                )
            })?;
        owned.push((name.to_string(), t));
    }
    let views: Vec<(String, &Tensor)> = owned.iter().map(|(n, t)| (n.clone(), t)).collect();
    let meta = if metadata.is_empty() {
        None
    } else {
        Some(metadata.clone())
    };
    let bytes = safetensors::tensor::serialize(views, meta).map_err(|e| Error::Safetensors {
        path: path.to_path_buf(),
        reason: format!("cannot serialise: {e}"),
    })?;
    write_atomic(path, &bytes)
}

/// A safetensors file read into memory: its tensors and its string metadata.
#[derive(Debug)]
pub struct SafetensorsFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The tensors, by name.
    pub tensors: HashMap<String, Tensor>,
    /// The `__metadata__` strings.
    pub metadata: HashMap<String, String>,
}

impl SafetensorsFile {
    /// Reads every tensor of `path` onto `device`.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::Safetensors`] when it is not a valid
    /// safetensors file or its tensors cannot be loaded onto `device`.
    pub fn read(path: &Path, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |reason: String| Error::Safetensors {
            path: path.to_path_buf(),
            reason,
        };
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a valid safetensors file ({e}); regenerate it")))?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        let tensors = candle_core::safetensors::load_buffer(&bytes, device)
            .map_err(|e| bad(format!("cannot load tensors ({e})")))?;
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            metadata,
        })
    }

    /// The tensor `name` as a rank-2 f32 matrix `[rows, cols]`, with a clear error when it is missing,
    /// has another rank, or holds NaN or infinite values.
    ///
    /// # Errors
    /// [`Error::Safetensors`] when the tensor is missing, is not rank 2 or cannot be read as f32;
    /// [`Error::InvalidArgument`] when it holds NaN or infinite values ([`check_finite`]).
    pub fn matrix(&self, name: &str) -> Result<Tensor> {
        let bad = |reason: String| Error::Safetensors {
            path: self.path.clone(),
            reason,
        };
        let t = self.tensors.get(name).ok_or_else(|| {
            let mut names: Vec<_> = self.tensors.keys().cloned().collect();
            names.sort();
            bad(format!(
                "no tensor named `{name}` (found: {}); relstitch writes `{name}`",
                names.join(", ")
            ))
        })?;
        if t.rank() != 2 {
            return Err(bad(format!(
                "tensor `{name}` has shape {:?}, expected a matrix [rows, dims]",
                t.dims()
            )));
        }
        let t = t
            .to_dtype(DType::F32)
            .map_err(|e| bad(format!("tensor `{name}` cannot be read as f32 ({e})")))?;
        check_finite(&t, &format!("tensor `{name}` of {}", self.path.display()))?;
        Ok(t)
    }
}

/// Tensor `name` of the safetensors file `path` as an f32 matrix on the CPU
/// ([`SafetensorsFile::matrix`]).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Safetensors`] (naming the file) when it is
/// not safetensors, lacks the tensor, or the tensor is not a matrix; [`Error::InvalidArgument`]
/// when the tensor holds NaN or infinite values.
pub fn read_matrix(path: &Path, name: &str) -> Result<Tensor> {
    SafetensorsFile::read(path, &Device::Cpu)?.matrix(name)
}

/// Fails with [`Error::InvalidArgument`] when `t` holds NaN or infinite values.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `what` and the flat index of the first non-finite value;
/// [`Error::Candle`] when `t` cannot be read back as f32.
pub fn check_finite(t: &Tensor, what: &str) -> Result<()> {
    let s = t
        .to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| Error::candle(format!("checking {what}"), e))?;
    if let Some(i) = s.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            what,
            format!("holds a non-finite value ({}) at flat index {i}", s[i]),
        ));
    }
    Ok(())
}

/// Where a text input comes from and which field holds the text.
#[derive(Debug, Clone)]
pub struct TextInput {
    /// A `.txt` (one text per line) or `.jsonl` file.
    pub path: PathBuf,
    /// The JSON field that holds the text (`.jsonl` only).
    pub field: String,
}

/// Reads texts from a `.txt` (one per line; empty lines are skipped) or a `.jsonl` file (one object per
/// line with a string field `field`; blank lines are skipped).
///
/// # Errors
/// [`Error::Input`] naming the file and the 1-based line: invalid UTF-8, invalid JSON, a line that
/// is not an object, a missing or non-string field, or (without a line) a file with no texts at all;
/// [`Error::Io`] when the file cannot be opened or read.
pub fn read_texts(path: &Path, field: &str) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let jsonl = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl") | Some("json") | Some("ndjson")
    );
    let mut reader = std::io::BufReader::new(file);
    let mut texts = Vec::new();
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let input_err = |reason: String| Error::Input {
            path: path.to_path_buf(),
            line: Some(line_no),
            reason,
        };
        let line = std::str::from_utf8(&buf).map_err(|e| {
            input_err(format!(
                "not valid UTF-8 ({e}); convert the file to UTF-8 (e.g. `iconv -t UTF-8`)"
            ))
        })?;
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        if jsonl {
            let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                input_err(format!(
                    "not valid JSON ({e}); each line must be one JSON object"
                ))
            })?;
            let kind = match &value {
                serde_json::Value::Object(_) => None,
                serde_json::Value::Array(_) => Some("an array"),
                serde_json::Value::String(_) => Some("a string"),
                serde_json::Value::Number(_) => Some("a number"),
                serde_json::Value::Bool(_) => Some("a boolean"),
                serde_json::Value::Null => Some("null"),
            };
            if let Some(kind) = kind {
                return Err(input_err(format!(
                    "not a JSON object (found {kind}); each line must be one JSON object with the \
                     text in field `{field}`, e.g. {{\"{field}\": \"...\"}}"
                )));
            }
            match value.get(field) {
                Some(serde_json::Value::String(s)) => texts.push(s.clone()),
                Some(other) => {
                    return Err(input_err(format!(
                        "field `{field}` is not a string (found {other}); use --field to pick the text field"
                    )))
                }
                None => {
                    return Err(input_err(format!(
                        "no field `{field}`; use --field to name the field that holds the text"
                    )))
                }
            }
        } else {
            texts.push(line.to_string());
        }
    }
    if texts.is_empty() {
        return Err(Error::Input {
            path: path.to_path_buf(),
            line: None,
            reason:
                "holds no texts; give a .txt with one text per line or a .jsonl with a `text` field"
                    .into(),
        });
    }
    Ok(texts)
}

/// The sha256 of a file, as lowercase hex, read in chunks.
///
/// # Errors
/// [`Error::Io`] when the file cannot be opened or read.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_errors_name_the_line() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("t.jsonl");
        std::fs::write(&p, "{\"text\": \"a\"}\n\n{\"txt\": \"b\"}\n")?;
        let err = read_texts(&p, "text")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(":3") && err.contains("--field"), "{err}");
        std::fs::write(&p, "{\"text\": \"a\"}\nnot json\n")?;
        let err = read_texts(&p, "text")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(":2"), "{err}");
        Ok(())
    }

    #[test]
    fn txt_and_empty_and_utf8() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("t.txt");
        std::fs::write(&p, "one\r\ntwo\n\n")?;
        assert_eq!(read_texts(&p, "text")?, vec!["one", "two"]);
        std::fs::write(&p, "\n \n")?;
        assert!(matches!(
            read_texts(&p, "text"),
            Err(Error::Input { line: None, .. })
        ));
        std::fs::write(&p, b"ok\n\xff\xfe\n")?;
        assert!(matches!(
            read_texts(&p, "text"),
            Err(Error::Input { line: Some(2), .. })
        ));
        Ok(())
    }

    #[test]
    fn safetensors_round_trip_and_errors() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("e.safetensors");
        let t = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu)?;
        let meta = HashMap::from([("model".to_string(), "x".to_string())]);
        write_safetensors(&p, &[("embeddings", &t)], &meta)?;
        let f = SafetensorsFile::read(&p, &Device::Cpu)?;
        assert_eq!(f.metadata.get("model").map(String::as_str), Some("x"));
        assert_eq!(
            f.matrix("embeddings")?.to_vec2::<f32>()?,
            t.to_vec2::<f32>()?
        );
        assert!(f.matrix("relative").is_err());
        let nan = Tensor::new(&[[1f32, f32::NAN]], &Device::Cpu)?;
        write_safetensors(&p, &[("embeddings", &nan)], &meta)?;
        assert!(SafetensorsFile::read(&p, &Device::Cpu)?
            .matrix("embeddings")
            .is_err());
        std::fs::write(&p, b"garbage")?;
        assert!(matches!(
            SafetensorsFile::read(&p, &Device::Cpu),
            Err(Error::Safetensors { .. })
        ));
        Ok(())
    }
}
