//! The Parquet output of a streamed embed (feature `parquet`): what vector databases and dataframe
//! libraries import directly.
//!
//! Columns `id` (int64 when every id is an integer, else utf8 with integers as their decimal text)
//! and `embedding` (`FixedSizeList<Float32, d>`, as Arrow writes it: a Parquet LIST with the Arrow
//! schema in the footer, so pyarrow, polars and DuckDB read it back as a fixed-size list). The
//! file's key-value metadata holds the same keys as the safetensors output's (`model`,
//! `weights_sha256`, `relstitch.encoder`, ...). Each chunk of the job becomes one row group,
//! written as it is read: memory holds one chunk, whatever the number of rows.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::format::IdsLayout;
use super::records::RecordId;
use super::{check_chunk, id_text, ChunkSource};
use crate::{Error, Result};

/// The id column.
pub const ID_COLUMN: &str = "id";
/// The vector column.
pub const EMBEDDING_COLUMN: &str = "embedding";

/// Wraps an Arrow or Parquet error with the file being written.
fn wrap<E: std::error::Error + Send + Sync + 'static>(path: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Parquet {
        path: path.to_path_buf(),
        source: Box::new(e),
    }
}

/// Writes the chunks of `source` to `w` as Parquet, one row group per chunk.
///
/// # Errors
/// [`Error::Parquet`] when the Arrow arrays or the Parquet writer fail; [`Error::Integrity`] when
/// a chunk's bytes do not match its ids; the errors of reading the chunks.
pub(super) fn write_parquet<W: Write + Send>(
    w: W,
    path: &Path,
    dim: usize,
    layout: IdsLayout,
    meta: &std::collections::HashMap<String, String>,
    source: &mut dyn ChunkSource,
) -> Result<()> {
    let width = i32::try_from(dim).map_err(|_| Error::invalid("dim", "too wide for Parquet"))?;
    // Nullable items, as pyarrow's `pa.list_(pa.float32(), d)`: the type vector databases expect.
    let item = Arc::new(Field::new("item", DataType::Float32, true));
    let id_type = match layout {
        IdsLayout::Int => DataType::Int64,
        IdsLayout::Str { .. } => DataType::Utf8,
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new(ID_COLUMN, id_type, false),
        Field::new(
            EMBEDDING_COLUMN,
            DataType::FixedSizeList(item.clone(), width),
            false,
        ),
    ]));
    // Sorted, so that the same job always writes the same bytes.
    let sorted: std::collections::BTreeMap<_, _> = meta.iter().collect();
    let kv = sorted
        .into_iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    let props = WriterProperties::builder()
        // Float vectors do not compress, nor do distinct ids deduplicate.
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        // One row group per chunk, cut by `flush` below.
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(None)
        .set_key_value_metadata(Some(kv))
        .build();
    let mut writer =
        ArrowWriter::try_new(BufWriter::new(w), schema.clone(), Some(props)).map_err(wrap(path))?;
    for i in 0..source.len() {
        let (bytes, ids) = source.chunk(i)?;
        check_chunk(path, i, &bytes, &ids, dim)?;
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let ids: ArrayRef = match layout {
            IdsLayout::Int => {
                let ints = ids
                    .iter()
                    .map(|id| match id {
                        RecordId::Int(v) => Ok(*v),
                        RecordId::Str(s) => Err(Error::Integrity {
                            path: path.to_path_buf(),
                            reason: format!(
                                "chunk {i} has the string id `{s}` where all ids were integers"
                            ),
                        }),
                    })
                    .collect::<Result<Vec<i64>>>()?;
                Arc::new(Int64Array::from(ints))
            }
            IdsLayout::Str { .. } => {
                Arc::new(StringArray::from_iter_values(ids.iter().map(id_text)))
            }
        };
        let vectors = FixedSizeListArray::try_new(
            item.clone(),
            width,
            Arc::new(Float32Array::from(values)),
            None,
        )
        .map_err(wrap(path))?;
        let batch = RecordBatch::try_new(schema.clone(), vec![ids, Arc::new(vectors)])
            .map_err(wrap(path))?;
        writer.write(&batch).map_err(wrap(path))?;
        writer.flush().map_err(wrap(path))?;
    }
    let mut inner = writer.into_inner().map_err(wrap(path))?;
    inner.flush().map_err(|e| Error::io(path, e))?;
    Ok(())
}
