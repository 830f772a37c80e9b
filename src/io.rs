//! Plain-file input and output: text inputs, atomic writes, safetensors that numpy and PyTorch read.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, then a rename.
///
/// A crash or an error never leaves a half-written `path` behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| Error::io(&dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    persist(tmp, path)
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
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
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

/// Fails with [`Error::InvalidArgument`] when `t` holds NaN or infinite values.
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
/// Errors name the file and the 1-based line: invalid UTF-8, invalid JSON, a missing or non-string
/// field, or a file with no texts at all.
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
