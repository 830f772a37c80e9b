//! The output files of a streamed embed, written without holding the matrix in memory: a
//! safetensors file (header first, then the rows as they come) or a `.npy` file with sidecars; and
//! reading row ranges of a safetensors file by offset.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The tensor of integer ids (`[n]` i64).
pub const IDS: &str = "ids";
/// The tensor of string ids, UTF-8 bytes one after the other (`[bytes]` u8).
pub const IDS_UTF8: &str = "ids_utf8";
/// Where each string id starts in [`IDS_UTF8`] (`[n + 1]` i64; id `i` is
/// `ids_utf8[ids_offsets[i]..ids_offsets[i + 1]]`).
pub const IDS_OFFSETS: &str = "ids_offsets";

/// Output formats, chosen by the output's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// `.safetensors`: tensor `embeddings` `[n, d]` f32, the ids as tensors, the identity as metadata.
    Safetensors,
    /// `.npy`: the `[n, d]` f32 matrix; the ids in `STEM.ids.npy` (integers) or `STEM.ids.txt`
    /// (strings, one per line), the metadata in `STEM.meta.json`.
    Npy,
    /// `.parquet` (feature `parquet`): columns `id` and `embedding` (`FixedSizeList<Float32, d>`),
    /// the identity as the file's key-value metadata, one row group per chunk.
    Parquet,
}

impl OutputFormat {
    /// The format an output path asks for.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for any other extension.
    pub fn of(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => Ok(Self::Safetensors),
            Some("npy") => Ok(Self::Npy),
            #[cfg(feature = "parquet")]
            Some("parquet") => Ok(Self::Parquet),
            #[cfg(not(feature = "parquet"))]
            Some("parquet") => Err(Error::invalid(
                "output",
                format!(
                    "{}: this relstitch was built without Parquet; rebuild with the default \
                     features (or `--features parquet`), or name the output *.safetensors or *.npy",
                    path.display()
                ),
            )),
            _ => Err(Error::invalid(
                "output",
                format!(
                    "{}: unknown format; name the output *.safetensors, *.npy or *.parquet",
                    path.display()
                ),
            )),
        }
    }
}

/// The ids of an output, as they will be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdsLayout {
    /// All ids are integers: `[n]` i64.
    Int,
    /// Some ids are strings (integers among them are written as their decimal text): UTF-8 bytes
    /// and `n + 1` offsets.
    Str {
        /// Total UTF-8 bytes of all ids.
        bytes: u64,
    },
}

/// One tensor entry of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TensorEntry {
    /// `F32`, `I64`, `U8`...
    pub dtype: String,
    /// The shape.
    pub shape: Vec<usize>,
    /// `[begin, end)` byte offsets in the data section.
    pub data_offsets: [u64; 2],
}

/// The header of a safetensors file, read without its data.
#[derive(Debug, Clone)]
pub struct Header {
    /// Where the data section starts in the file.
    pub data_start: u64,
    /// The tensors by name.
    pub tensors: BTreeMap<String, TensorEntry>,
    /// The `__metadata__` strings.
    pub metadata: HashMap<String, String>,
}

impl Header {
    /// Reads the header of `path`.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read; [`Error::Safetensors`] when it is not a safetensors
    /// file or its offsets do not fit the file.
    pub fn read(path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::Safetensors {
            path: path.to_path_buf(),
            reason,
        };
        let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = f.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut len = [0u8; 8];
        f.read_exact(&mut len)
            .map_err(|_| bad("too short for a safetensors file; regenerate it".into()))?;
        let len = u64::from_le_bytes(len);
        if len > 100_000_000 || len + 8 > file_len {
            return Err(bad(format!(
                "header length {len} does not fit the file ({file_len} bytes); the file is \
                 truncated or not safetensors"
            )));
        }
        let mut head = vec![0u8; len as usize];
        f.read_exact(&mut head).map_err(|e| Error::io(path, e))?;
        let value: serde_json::Value = serde_json::from_slice(&head)
            .map_err(|e| bad(format!("unreadable header ({e}); regenerate the file")))?;
        let serde_json::Value::Object(map) = value else {
            return Err(bad("the header is not a JSON object".into()));
        };
        let data_start = 8 + len;
        let mut tensors = BTreeMap::new();
        let mut metadata = HashMap::new();
        for (k, v) in map {
            if k == "__metadata__" {
                metadata = serde_json::from_value(v)
                    .map_err(|e| bad(format!("unreadable metadata ({e})")))?;
                continue;
            }
            let entry: TensorEntry = serde_json::from_value(v)
                .map_err(|e| bad(format!("unreadable entry for tensor `{k}` ({e})")))?;
            let [b, e] = entry.data_offsets;
            let width = match entry.dtype.as_str() {
                "F32" => 4,
                "I64" | "F64" => 8,
                "U8" => 1,
                other => {
                    return Err(bad(format!(
                        "tensor `{k}` has dtype {other}; relstitch writes F32, I64 and U8"
                    )))
                }
            };
            let elems = entry
                .shape
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d as u64));
            let fits = elems.and_then(|n| n.checked_mul(width)) == Some(e.wrapping_sub(b))
                && b <= e
                && data_start.checked_add(e).is_some_and(|end| end <= file_len);
            if !fits {
                return Err(bad(format!(
                    "tensor `{k}` ({:?}, {}) does not fit its offsets {b}..{e} or the file ({file_len} \
                     bytes); the file is truncated or damaged",
                    entry.shape, entry.dtype
                )));
            }
            tensors.insert(k, entry);
        }
        Ok(Self {
            data_start,
            tensors,
            metadata,
        })
    }

    /// The entry of tensor `name`, with an error naming the file when it is missing.
    ///
    /// # Errors
    /// [`Error::Safetensors`] when the file has no such tensor.
    pub fn entry(&self, path: &Path, name: &str) -> Result<&TensorEntry> {
        self.tensors.get(name).ok_or_else(|| Error::Safetensors {
            path: path.to_path_buf(),
            reason: format!("no tensor `{name}`; it was not written by `relstitch embed`"),
        })
    }

    /// The absolute file offset of byte `at` of tensor `name`.
    pub fn offset(&self, entry: &TensorEntry, at: u64) -> u64 {
        self.data_start + entry.data_offsets[0] + at
    }
}

/// Reads `len` bytes at `offset` of an open file.
pub(crate) fn read_at(f: &mut File, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    f.seek(SeekFrom::Start(offset))
        .and_then(|_| f.read_exact(&mut buf))
        .map_err(|e| Error::io(path, e))?;
    Ok(buf)
}

/// The safetensors header for the tensors of an embed output, in the order their data follows.
pub(crate) fn safetensors_header(
    n: u64,
    dim: usize,
    ids: IdsLayout,
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>> {
    let mut map = serde_json::Map::new();
    let emb_bytes = n * dim as u64 * 4;
    let entry = |dtype: &str, shape: Vec<usize>, b: u64, e: u64| serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [b, e]});
    let n_us = usize::try_from(n).map_err(|_| Error::invalid("rows", "too many rows"))?;
    map.insert(
        crate::encoder::embed::EMBEDDINGS.into(),
        entry("F32", vec![n_us, dim], 0, emb_bytes),
    );
    match ids {
        IdsLayout::Int => {
            map.insert(
                IDS.into(),
                entry("I64", vec![n_us], emb_bytes, emb_bytes + n * 8),
            );
        }
        IdsLayout::Str { bytes } => {
            let off_end = emb_bytes + (n + 1) * 8;
            map.insert(
                IDS_OFFSETS.into(),
                entry("I64", vec![n_us + 1], emb_bytes, off_end),
            );
            let b = usize::try_from(bytes).map_err(|_| Error::invalid("ids", "too large"))?;
            map.insert(
                IDS_UTF8.into(),
                entry("U8", vec![b], off_end, off_end + bytes),
            );
        }
    }
    if !metadata.is_empty() {
        map.insert(
            "__metadata__".into(),
            // Sorted, so that the same job always writes the same bytes.
            serde_json::to_value(metadata.iter().collect::<BTreeMap<_, _>>())
                .map_err(|e| Error::invalid("metadata", e.to_string()))?,
        );
    }
    let mut json = serde_json::to_vec(&serde_json::Value::Object(map))
        .map_err(|e| Error::invalid("metadata", e.to_string()))?;
    // Pad so that the data starts 8-byte aligned.
    while (json.len() + 8) % 8 != 0 {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    Ok(out)
}

/// A `.npy` (version 1.0) header for an `[n, d]` little-endian f32 or `[n]` i64 array.
pub(crate) fn npy_header(descr: &str, shape: &[u64]) -> Vec<u8> {
    let shape = match shape {
        [n] => format!("({n},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // magic (6) + version (2) + length (2) + dict + '\n', padded to a multiple of 64.
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// The sidecar files of a `.npy` output: (`STEM.ids.npy`, `STEM.ids.txt`, `STEM.meta.json`).
pub fn npy_sidecars(output: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let stem = output.with_extension("");
    let with = |suffix: &str| {
        let mut s = stem.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    (with(".ids.npy"), with(".ids.txt"), with(".meta.json"))
}

/// A writer that counts what it wrote (to check the promised sizes).
pub(crate) struct Counted<W: Write> {
    pub inner: W,
    pub written: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// f32 values as little-endian bytes.
pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_read_back() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("x.safetensors");
        let meta = HashMap::from([("model".to_string(), "m".to_string())]);
        let mut bytes = safetensors_header(2, 3, IdsLayout::Int, &meta)?;
        bytes.extend(f32_bytes(&[1., 2., 3., 4., 5., 6.]));
        bytes.extend([7i64, 9].iter().flat_map(|x| x.to_le_bytes()));
        std::fs::write(&path, &bytes)?;
        // The safetensors crate reads it, with the right values.
        let st = crate::io::SafetensorsFile::read(&path, &candle_core::Device::Cpu)?;
        assert_eq!(
            st.matrix("embeddings")?.to_vec2::<f32>()?,
            [[1., 2., 3.], [4., 5., 6.]]
        );
        assert_eq!(st.tensors["ids"].to_vec1::<i64>()?, [7, 9]);
        assert_eq!(st.metadata["model"], "m");
        let h = Header::read(&path)?;
        assert_eq!(h.tensors["embeddings"].shape, [2, 3]);
        assert_eq!(h.data_start % 8, 0);
        // Truncated: refused by the header check.
        std::fs::write(&path, &bytes[..bytes.len() - 1])?;
        assert!(Header::read(&path).is_err());
        Ok(())
    }

    #[test]
    fn npy_header_is_aligned() {
        let h = npy_header("<f4", &[1000, 384]);
        assert_eq!(h.len() % 64, 0);
        assert!(String::from_utf8_lossy(&h).contains("'shape': (1000, 384)"));
        assert!(String::from_utf8_lossy(&npy_header("<i8", &[5])).contains("(5,)"));
    }
}
