//! Row-streaming safetensors: read a matrix a chunk of rows at a time, and write one the same way,
//! so that a command over millions of vectors keeps a flat memory footprint.
//!
//! The format (<https://github.com/huggingface/safetensors>): an 8-byte little-endian header
//! length, a JSON header (`{"name": {"dtype", "shape", "data_offsets": [start, end]}, …,
//! "__metadata__": {…}}`), then the tensors' bytes, little-endian, row-major. [`RowReader`] reads
//! the header, checks every offset against the file's size, and then reads any range of rows of one
//! matrix; [`RowWriter`] writes the header of tensors whose shapes are known in advance, then
//! their values in order, into a locked temporary file that is renamed into place only when every
//! value has been written (the rules of [`write_atomic`](super::write_atomic)).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Largest header relstitch reads (the safetensors crate's own limit).
const MAX_HEADER: u64 = 100_000_000;

/// The element types a [`RowReader`] converts to f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    F32,
    F16,
    Bf16,
    F64,
}

impl Dtype {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "F32" => Some(Self::F32),
            "F16" => Some(Self::F16),
            "BF16" => Some(Self::Bf16),
            "F64" => Some(Self::F64),
            _ => None,
        }
    }

    fn size(self) -> usize {
        match self {
            Self::F16 | Self::Bf16 => 2,
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }
}

/// One matrix of a safetensors file, read a range of rows at a time.
#[derive(Debug)]
pub struct RowReader {
    path: PathBuf,
    file: std::fs::File,
    dtype: Dtype,
    rows: usize,
    cols: usize,
    /// Absolute byte offset of the first value.
    start: u64,
    metadata: HashMap<String, String>,
}

impl RowReader {
    /// Opens `path` and finds the rank-2 tensor `name` (f32, f16, bf16 or f64).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::Safetensors`] naming the file when it
    /// is not safetensors, is truncated (an offset past its end), lacks `name`, or `name` is not a
    /// float matrix.
    pub fn open(path: &Path, name: &str) -> Result<Self> {
        let bad = |reason: String| Error::Safetensors {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut len = [0u8; 8];
        file.read_exact(&mut len).map_err(|_| {
            bad(
                "shorter than a safetensors header (8 bytes): not a safetensors file, or truncated"
                    .into(),
            )
        })?;
        let header_len = u64::from_le_bytes(len);
        if header_len > MAX_HEADER || 8 + header_len > size {
            return Err(bad(format!(
                "the header claims {header_len} bytes but the file has {size}: not a safetensors file, or truncated; regenerate it"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header)
            .map_err(|e| Error::io(path, e))?;
        let header: serde_json::Value = serde_json::from_slice(&header).map_err(|e| {
            bad(format!(
                "the header is not valid JSON ({e}); regenerate the file"
            ))
        })?;
        let obj = header
            .as_object()
            .ok_or_else(|| bad("the header is not a JSON object; regenerate the file".into()))?;
        let metadata: HashMap<String, String> = match obj.get("__metadata__") {
            None => HashMap::new(),
            Some(m) => serde_json::from_value(m.clone())
                .map_err(|e| bad(format!("`__metadata__` is not a map of strings ({e})")))?,
        };
        let data_start = 8 + header_len;
        let mut data_end = 0u64;
        for (key, info) in obj {
            if key == "__metadata__" {
                continue;
            }
            let end = info
                .get("data_offsets")
                .and_then(|o| o.get(1))
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| bad(format!("tensor `{key}` has no data_offsets")))?;
            data_end = data_end.max(end);
        }
        if data_start + data_end > size {
            return Err(bad(format!(
                "the tensors end at byte {} but the file has {size} bytes: truncated; regenerate it",
                data_start + data_end
            )));
        }
        let info = obj.get(name).ok_or_else(|| {
            let mut names: Vec<&str> = obj
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "__metadata__")
                .collect();
            names.sort_unstable();
            bad(format!(
                "no tensor named `{name}` (found: {}); relstitch writes `{name}`",
                names.join(", ")
            ))
        })?;
        let dtype_name = info
            .get("dtype")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?");
        let dtype = Dtype::parse(dtype_name).ok_or_else(|| {
            bad(format!(
                "tensor `{name}` has dtype {dtype_name}; expected F32, F16, BF16 or F64"
            ))
        })?;
        let shape: Vec<u64> = info
            .get("shape")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .ok_or_else(|| bad(format!("tensor `{name}` has no readable shape")))?;
        let [rows, cols] = shape[..] else {
            return Err(bad(format!(
                "tensor `{name}` has shape {shape:?}, expected a matrix [rows, dims]"
            )));
        };
        let offsets: Vec<u64> = info
            .get("data_offsets")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .unwrap_or_default();
        let expected = rows
            .checked_mul(cols)
            .and_then(|n| n.checked_mul(dtype.size() as u64));
        match (&offsets[..], expected) {
            (&[a, b], Some(len)) if b >= a && b - a == len => Ok(Self {
                path: path.to_path_buf(),
                file,
                dtype,
                rows: rows as usize,
                cols: cols as usize,
                start: data_start + a,
                metadata,
            }),
            _ => Err(bad(format!(
                "tensor `{name}`: its data_offsets {offsets:?} do not hold a {rows}×{cols} {dtype_name} matrix; the file is damaged"
            ))),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The width of each row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The file's `__metadata__` strings.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Rows `start..start + count` as f32, row-major (`count × cols` values).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a range past the last row; [`Error::Io`] when reading fails.
    pub fn read(&mut self, start: usize, count: usize) -> Result<Vec<f32>> {
        if start.checked_add(count).is_none_or(|end| end > self.rows) {
            return Err(Error::invalid(
                "row range",
                format!(
                    "rows {start}..{} of {} holding {} rows",
                    start.saturating_add(count),
                    self.path.display(),
                    self.rows
                ),
            ));
        }
        let size = self.dtype.size();
        let offset = self.start + (start * self.cols * size) as u64;
        let mut bytes = vec![0u8; count * self.cols * size];
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(match self.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F64 => bytes
                .chunks_exact(8)
                .map(|b| {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                })
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::Bf16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        })
    }
}

/// Writes f32 tensors of known shapes into a safetensors file, value by value in order, without
/// holding them in memory; the file appears at its path only when [`finish`](Self::finish) has
/// checked that every value was written.
#[derive(Debug)]
pub struct RowWriter {
    path: PathBuf,
    tmp: std::io::BufWriter<tempfile::NamedTempFile>,
    expected: u64,
    written: u64,
}

impl RowWriter {
    /// Starts `path` with the f32 tensors `tensors` (name and shape, laid out in this order) and
    /// `metadata`. Checks `path` like [`check_replaceable_file`](super::check_replaceable_file)
    /// first.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `path` exists and is not a regular file; [`Error::Io`] when
    /// the folder cannot be written.
    pub fn create(
        path: &Path,
        tensors: &[(&str, Vec<usize>)],
        metadata: &HashMap<String, String>,
    ) -> Result<Self> {
        super::check_replaceable_file(path)?;
        let mut header = serde_json::Map::new();
        if !metadata.is_empty() {
            header.insert(
                "__metadata__".into(),
                serde_json::to_value(metadata)
                    .map_err(|e| Error::invalid("safetensors metadata", e.to_string()))?,
            );
        }
        let mut offset = 0u64;
        for (name, shape) in tensors {
            let len = shape.iter().map(|&d| d as u64).product::<u64>() * 4;
            header.insert(
                (*name).to_string(),
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len]}),
            );
            offset += len;
        }
        let mut json = serde_json::to_vec(&header)
            .map_err(|e| Error::invalid("safetensors header", e.to_string()))?;
        // The data starts 8-byte aligned, as the safetensors crate writes it.
        while json.len() % 8 != 0 {
            json.push(b' ');
        }
        let dir = super::parent_dir(path);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let tmp = super::temp_file_in(&dir)?;
        let mut tmp = std::io::BufWriter::with_capacity(1 << 20, tmp);
        let err = |e| Error::io(path, e);
        tmp.write_all(&(json.len() as u64).to_le_bytes())
            .map_err(err)?;
        tmp.write_all(&json).map_err(err)?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            expected: offset / 4,
            written: 0,
        })
    }

    /// Appends `values` (the next values of the tensors, in declaration order).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when more values arrive than the tensors hold.
    pub fn write(&mut self, values: &[f32]) -> Result<()> {
        if self.written + values.len() as u64 > self.expected {
            return Err(Error::invalid(
                "rows written",
                format!(
                    "more values than the {} declared for {}",
                    self.expected,
                    self.path.display()
                ),
            ));
        }
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        self.tmp
            .write_all(&bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        self.written += values.len() as u64;
        Ok(())
    }

    /// Checks that every declared value was written, then syncs the file and renames it into
    /// place. Dropping the writer instead removes the temporary file: nothing is half-written.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when fewer values were written than declared (nothing is
    /// written then); [`Error::Io`] when syncing or renaming fails.
    pub fn finish(self) -> Result<()> {
        if self.written != self.expected {
            return Err(Error::invalid(
                "rows written",
                format!(
                    "{} of the {} values declared for {}; nothing written",
                    self.written,
                    self.expected,
                    self.path.display()
                ),
            ));
        }
        let tmp = self
            .tmp
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        super::persist(tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn round_trip_in_chunks_and_refusals() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("x.safetensors");
        let t = Tensor::arange(0f32, 60., &Device::Cpu)?.reshape((12, 5))?;
        let meta = HashMap::from([("model".to_string(), "m".to_string())]);
        super::super::write_safetensors(&p, &[("embeddings", &t)], &meta)?;
        let mut r = RowReader::open(&p, "embeddings")?;
        assert_eq!((r.rows(), r.cols()), (12, 5));
        assert_eq!(r.metadata().get("model").map(String::as_str), Some("m"));
        assert_eq!(
            r.read(3, 2)?,
            (15..25).map(|v| v as f32).collect::<Vec<_>>()
        );
        assert!(r.read(11, 2).is_err());

        let out = dir.path().join("y.safetensors");
        let mut w = RowWriter::create(
            &out,
            &[("embeddings", vec![12, 5]), ("confidence", vec![12])],
            &meta,
        )?;
        for chunk in 0..3 {
            w.write(&r.read(chunk * 4, 4)?)?;
        }
        w.write(&[0.5; 12])?;
        assert!(w.write(&[1.0]).is_err());
        w.finish()?;
        let back = super::super::SafetensorsFile::read(&out, &Device::Cpu)?;
        assert_eq!(
            back.matrix("embeddings")?.to_vec2::<f32>()?,
            t.to_vec2::<f32>()?
        );
        assert_eq!(back.tensors["confidence"].to_vec1::<f32>()?, vec![0.5; 12]);

        // An unfinished writer leaves nothing behind.
        let never = dir.path().join("never.safetensors");
        let mut w = RowWriter::create(&never, &[("embeddings", vec![2, 2])], &meta)?;
        w.write(&[1.0, 2.0])?;
        assert!(w.finish().is_err());
        assert!(!never.exists());

        // Truncation is named.
        let bytes = std::fs::read(&p)?;
        std::fs::write(&p, &bytes[..bytes.len() - 7])?;
        let e = RowReader::open(&p, "embeddings")
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("truncated")),
            "{e:?}"
        );
        Ok(())
    }
}
