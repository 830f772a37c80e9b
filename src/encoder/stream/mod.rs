//! Embedding a corpus of any size: streamed, resumable, sharded, merged.
//!
//! The input is read one record at a time and cut into *chunks* of [`EmbedJob::chunk_rows`]
//! records (chunk `c` holds records `c·C .. (c+1)·C`). Each chunk is embedded on its own and written
//! durably to a journal folder beside the output (`OUTPUT.relstitch-parts/`); when all are there,
//! they are assembled into the output (streamed, never the whole matrix in memory) and the journal
//! is removed. Memory holds one chunk of texts and vectors, whatever the corpus size.
//!
//! - **Resume**: rerunning the same job after a crash or `kill -9` reuses every chunk already in the
//!   journal (checked against its digest and the ids read again) and embeds the rest; since a chunk
//!   is always embedded as the same batches, the output is bit-identical to an uninterrupted run.
//! - **Shards**: shard `I/N` ([`Shard`]) owns the chunks `c` with `c mod N = I`, so N processes
//!   (a Kubernetes Indexed Job, a Slurm array, Ray tasks) split any corpus evenly without talking to
//!   each other; [`merge_shards`] checks the set (same job, each shard once, rows complete) and
//!   writes one output in input order, bit-identical to a single-process run.
//! - **Ids**: every row keeps its record's id ([`records::RecordId`]), written beside the vectors.
//!
//! ```no_run
//! # fn main() -> relstitch::Result<()> {
//! use relstitch::encoder::stream::{embed_stream, EmbedJob, Shard};
//! use relstitch::{Encoder, EncoderOptions};
//! let encoder = Encoder::load("all-MiniLM-L6-v2", &EncoderOptions::default())?;
//! let job = EmbedJob::new("corpus.jsonl").with_shard("0/4".parse::<Shard>()?);
//! let done = embed_stream(&encoder, &job, "part-0.safetensors".as_ref())?;
//! println!("{} rows of {} records", done.rows, done.total_records);
//! # Ok(()) }
//! ```

pub mod format;
#[cfg(feature = "parquet")]
pub mod parquet_file;
pub mod records;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};

use self::format::{
    f32_bytes, npy_header, npy_sidecars, read_at, safetensors_header, Counted, Header, IdsLayout,
    OutputFormat, IDS, IDS_OFFSETS, IDS_UTF8,
};
use self::records::{Record, RecordId, RecordOptions, RecordReader};
use crate::encoder::embed::EMBEDDINGS;
use crate::encoder::Encoder;
use crate::error::CandleContext;
use crate::{Error, Result};

/// The journal folder's marker (in its `job.json`).
const JOURNAL_FORMAT: &str = "relstitch-embed-journal/1";
/// Metadata key: the job's fingerprint (JSON), equal for every shard of one job.
pub const JOB: &str = "relstitch.job";
/// Metadata key: `I/N`.
pub const SHARD: &str = "shard";
/// Metadata key: the number of records of the whole input.
pub const TOTAL_RECORDS: &str = "total_records";
/// Records per chunk when not chosen.
pub const DEFAULT_CHUNK_ROWS: usize = 2048;

/// One shard of a job: chunks `c` with `c mod count = index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// 0-based shard number.
    pub index: usize,
    /// How many shards.
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = Error;

    /// Parses `I/N` (0-based `I < N`).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(
                "shard",
                format!("`{s}`: write I/N with 0 ≤ I < N, e.g. 0/4 for the first of four shards"),
            )
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        Self::new(index, count).map_err(|_| bad())
    }
}

impl Shard {
    /// Shard `index` of `count`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(Error::invalid(
                "shard",
                format!("{index}/{count}: the index must be below the count (0-based)"),
            ));
        }
        Ok(Self { index, count })
    }

    /// The shard given by the engine running this process, read through `env`: a Slurm array
    /// (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN`, of `SLURM_ARRAY_TASK_COUNT`) or a Kubernetes
    /// Indexed Job (`JOB_COMPLETION_INDEX`, of `count`, since Kubernetes does not export the
    /// completion count). `count` overrides the Slurm count too. `None` outside both.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for unparsable variables, a Kubernetes index without `count`, or
    /// an index past the count.
    pub fn from_env(
        env: impl Fn(&str) -> Option<String>,
        count: Option<usize>,
    ) -> Result<Option<Self>> {
        let num = |name: &str| -> Result<Option<usize>> {
            env(name)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        Error::invalid(name, format!("`{v}` is not a non-negative integer"))
                    })
                })
                .transpose()
        };
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let index = id.checked_sub(min).ok_or_else(|| {
                Error::invalid(
                    "SLURM_ARRAY_TASK_ID",
                    format!("{id} is below SLURM_ARRAY_TASK_MIN {min}"),
                )
            })?;
            let count = match count {
                Some(c) => c,
                None => num("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                    Error::invalid(
                        "shard count",
                        "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --shards N",
                    )
                })?,
            };
            return Self::new(index, count).map(Some);
        }
        if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let count = count.ok_or_else(|| {
                Error::invalid(
                    "shard count",
                    "JOB_COMPLETION_INDEX (Kubernetes Indexed Job) is set; pass --shards N with the \
                     Job's completions",
                )
            })?;
            return Self::new(index, count).map(Some);
        }
        Ok(None)
    }

    fn owns(&self, chunk: u64) -> bool {
        chunk % self.count as u64 == self.index as u64
    }
}

/// What to embed and how to cut it.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedJob {
    /// The corpus: `.txt` or `.jsonl`.
    pub input: PathBuf,
    /// How records and ids are read.
    pub records: RecordOptions,
    /// Records per chunk (the unit of resumption and of sharding).
    pub chunk_rows: usize,
    /// Which part of the input this run embeds.
    pub shard: Shard,
    /// Show a progress bar.
    pub progress: bool,
}

impl EmbedJob {
    /// The whole of `input`, default options.
    pub fn new(input: impl Into<PathBuf>) -> Self {
        Self {
            input: input.into(),
            records: RecordOptions::default(),
            chunk_rows: DEFAULT_CHUNK_ROWS,
            shard: Shard::default(),
            progress: false,
        }
    }

    /// Sets the shard.
    pub fn with_shard(mut self, shard: Shard) -> Self {
        self.shard = shard;
        self
    }

    /// Sets the record options.
    pub fn with_records(mut self, records: RecordOptions) -> Self {
        self.records = records;
        self
    }

    /// Sets the records per chunk.
    pub fn with_chunk_rows(mut self, n: usize) -> Self {
        self.chunk_rows = n;
        self
    }

    /// Shows a progress bar.
    pub fn with_progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }
}

/// What [`embed_stream`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamSummary {
    /// The output file.
    pub output: PathBuf,
    /// Rows written (this shard's).
    pub rows: u64,
    /// Records in the whole input.
    pub total_records: u64,
    /// Width of each row.
    pub dim: usize,
    /// Chunks embedded by this run.
    pub chunks_embedded: usize,
    /// Chunks taken from the journal of an interrupted run.
    pub chunks_resumed: usize,
    /// Empty texts skipped.
    pub skipped_empty: u64,
    /// Seconds.
    pub seconds: f64,
}

/// The journal folder of an output.
pub fn journal_dir(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".relstitch-parts");
    PathBuf::from(s)
}

/// The job's fingerprint: everything that changes the bytes of the output, but not the shard index
/// (equal for every shard of a job) and not where the model happened to be found.
fn fingerprint(encoder: &Encoder, job: &EmbedJob, input_sha256: &str) -> Result<serde_json::Value> {
    let mut identity = serde_json::to_value(encoder.identity())
        .map_err(|e| Error::invalid("encoder identity", e.to_string()))?;
    if let serde_json::Value::Object(m) = &mut identity {
        for k in ["name", "path", "hub_id", "revision"] {
            m.remove(k);
        }
    }
    Ok(serde_json::json!({
        "encoder": identity,
        "input_sha256": input_sha256,
        "records": job.records,
        "chunk_rows": job.chunk_rows,
        "shards": job.shard.count,
    }))
}

/// The first key path where two fingerprints differ (`encoder.weights_sha256`, `input_sha256`...).
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> Option<String> {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => first_difference(u, v, &path),
                    _ => Some(path),
                }
            })
        }
        _ if a == b => None,
        _ => Some(if at.is_empty() {
            "(all)".into()
        } else {
            at.into()
        }),
    }
}

/// Embeds `job` with `encoder` into `output` (`.safetensors`, `.npy` or, with the feature
/// `parquet`, `.parquet`), streaming and resumable.
///
/// # Errors
/// [`Error::InvalidArgument`] for an unknown output format, or a shard written as `.npy`; the
/// errors of reading records ([`Error::Input`] naming the line), of the encoder, and of writing
/// ([`Error::Io`]); [`Error::Integrity`] when the journal folder is not relstitch's.
pub fn embed_stream(encoder: &Encoder, job: &EmbedJob, output: &Path) -> Result<StreamSummary> {
    let start = std::time::Instant::now();
    let fmt = OutputFormat::of(output)?;
    if job.shard.count > 1 && fmt != OutputFormat::Safetensors {
        return Err(Error::invalid(
            "output",
            "a shard must be written as .safetensors (it carries the ids and the job that \
             `relstitch merge` checks); merge the shards into a .npy or .parquet instead",
        ));
    }
    if job.chunk_rows == 0 {
        return Err(Error::invalid("chunk rows", "must be at least 1"));
    }
    crate::io::check_output_file(output, &[&job.input])?;
    if fmt == OutputFormat::Npy {
        let (a, b, c) = npy_sidecars(output);
        for p in [a, b, c] {
            crate::io::check_output_file(&p, &[&job.input])?;
        }
    }
    let input_sha256 = crate::io::sha256_file(&job.input)?;
    let print = fingerprint(encoder, job, &input_sha256)?;
    let journal = Journal::open(output, &print, job.shard)?;

    let mut reader = RecordReader::open(&job.input, &job.records)?;
    let bar = crate::progress::bar(
        std::fs::metadata(&job.input).map(|m| m.len()).unwrap_or(0),
        "embedding",
        job.progress,
    );
    let (mut embedded, mut resumed) = (0usize, 0usize);
    let mut chunk: Vec<Record> = Vec::with_capacity(job.chunk_rows.min(1 << 16));
    let mut chunk_no = 0u64;
    let mut owned = Vec::new();
    let mut bytes_read = 0u64;
    let mut total = 0u64;
    let mut flush = |chunk: &mut Vec<Record>, c: u64| -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        if job.shard.owns(c) {
            if journal.chunk_is_done(c, chunk)? {
                resumed += 1;
            } else {
                journal.embed_chunk(encoder, c, chunk)?;
                embedded += 1;
            }
            owned.push(c);
        }
        chunk.clear();
        Ok(())
    };
    for record in reader.by_ref() {
        let record = record?;
        bytes_read += record.text.len() as u64 + 1;
        total = record.index + 1;
        chunk.push(record);
        if chunk.len() == job.chunk_rows {
            flush(&mut chunk, chunk_no)?;
            chunk_no += 1;
            bar.set_position(bytes_read);
        }
    }
    flush(&mut chunk, chunk_no)?;
    bar.finish_and_clear();
    if total == 0 {
        return Err(Error::Input {
            path: job.input.clone(),
            line: None,
            reason: "no texts to embed".into(),
        });
    }
    let mut meta = encoder.identity().to_metadata();
    meta.insert("input".into(), job.input.display().to_string());
    meta.insert("input_sha256".into(), input_sha256);
    meta.insert(TOTAL_RECORDS.into(), total.to_string());
    meta.insert("chunk_rows".into(), job.chunk_rows.to_string());
    meta.insert(SHARD.into(), job.shard.to_string());
    meta.insert("skipped_empty".into(), reader.skipped().to_string());
    meta.insert(JOB.into(), print.to_string());
    let dim = encoder.dim();
    let mut source = JournalChunks {
        journal: &journal,
        chunks: owned,
    };
    let rows = write_output(output, fmt, dim, &mut meta, &mut source)?;
    journal.remove();
    Ok(StreamSummary {
        output: output.to_path_buf(),
        rows,
        total_records: total,
        dim,
        chunks_embedded: embedded,
        chunks_resumed: resumed,
        skipped_empty: reader.skipped(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The journal of one output: `job.json` and one safetensors file per finished chunk.
struct Journal {
    dir: PathBuf,
    // Held open: a second process on the same output fails instead of racing.
    _lock: File,
}

impl Journal {
    fn open(output: &Path, print: &serde_json::Value, shard: Shard) -> Result<Self> {
        let dir = journal_dir(output);
        let job = serde_json::json!({"format": JOURNAL_FORMAT, "job": print, "shard": shard});
        let job_path = dir.join("job.json");
        if dir.exists() {
            let ours = std::fs::read_to_string(&job_path)
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .filter(|v| v.get("format").and_then(|f| f.as_str()) == Some(JOURNAL_FORMAT));
            // A run killed between creating the folder and writing job.json left only its lock.
            let only_lock = std::fs::read_dir(&dir)
                .map(|entries| {
                    entries.flatten().all(|e| {
                        let name = e.file_name();
                        let name = name.to_string_lossy();
                        name == "lock" || name.starts_with(".relstitch-tmp-")
                    })
                })
                .unwrap_or(false);
            let previous =
                match ours {
                    Some(previous) => previous,
                    None if only_lock => serde_json::Value::Null,
                    None => return Err(Error::Integrity {
                        path: dir.clone(),
                        reason:
                            "exists but is not a relstitch embed journal; move it away (relstitch \
                             keeps the progress of an embed there)"
                                .into(),
                    }),
                };
            let lock = lock_journal(&dir)?;
            if previous != job {
                let what = first_difference(&previous, &job, "").unwrap_or_default();
                tracing::info!(
                    "{}: the progress of another job ({what} differs); starting over",
                    dir.display()
                );
                drop(lock);
                std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            } else {
                tracing::info!("{}: resuming", dir.display());
                return Ok(Self { dir, _lock: lock });
            }
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let lock = lock_journal(&dir)?;
        crate::io::write_atomic(&job_path, job.to_string().as_bytes())?;
        Ok(Self { dir, _lock: lock })
    }

    fn chunk_path(&self, c: u64) -> PathBuf {
        self.dir.join(format!("chunk-{c:09}.safetensors"))
    }

    /// Whether chunk `c` is in the journal, whole, with the ids of `records`.
    fn chunk_is_done(&self, c: u64, records: &[Record]) -> Result<bool> {
        let path = self.chunk_path(c);
        if !path.exists() {
            return Ok(false);
        }
        let check = || -> Result<bool> {
            let (_, ids) = read_chunk(&path)?;
            Ok(ids.iter().eq(records.iter().map(|r| &r.id)))
        };
        match check() {
            Ok(true) => Ok(true),
            Ok(false) | Err(_) => {
                tracing::warn!("{}: damaged or stale; embedding it again", path.display());
                Ok(false)
            }
        }
    }

    fn embed_chunk(&self, encoder: &Encoder, c: u64, records: &[Record]) -> Result<()> {
        let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
        let e = encoder.embed(&texts)?;
        let v = e
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .context(|| format!("reading the vectors of chunk {c}"))?;
        let bytes = f32_bytes(&v);
        let ids: Vec<&RecordId> = records.iter().map(|r| &r.id).collect();
        let ids_json =
            serde_json::to_string(&ids).map_err(|e| Error::invalid("ids", e.to_string()))?;
        let meta = HashMap::from([
            ("ids".to_string(), ids_json.clone()),
            ("digest".to_string(), chunk_digest(&bytes, &ids_json)),
            ("first_record".to_string(), records[0].index.to_string()),
        ]);
        crate::io::write_safetensors(&self.chunk_path(c), &[(EMBEDDINGS, &e)], &meta)?;
        crate::io::failpoint(&format!("embed-chunk-{c}-written"));
        tracing::debug!("chunk {c}: {} records embedded", records.len());
        Ok(())
    }

    fn remove(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!("{}: could not remove the journal ({e})", self.dir.display());
        }
    }
}

fn lock_journal(dir: &Path) -> Result<File> {
    let path = dir.join("lock");
    let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::invalid(
            "output",
            format!(
                "another relstitch process is embedding into this output ({} is locked); wait for \
                 it, or choose another --output",
                dir.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

fn chunk_digest(bytes: &[u8], ids_json: &str) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.update(ids_json.as_bytes());
    hex::encode(h.finalize())
}

/// A chunk file's vector bytes and ids, checked against its digest.
fn read_chunk(path: &Path) -> Result<(Vec<u8>, Vec<RecordId>)> {
    let bad = |reason: &str| Error::Integrity {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    let header = Header::read(path)?;
    let entry = header.entry(path, EMBEDDINGS)?;
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = (entry.data_offsets[1] - entry.data_offsets[0]) as usize;
    let bytes = read_at(&mut f, path, header.offset(entry, 0), len)?;
    let ids_json = header.metadata.get("ids").ok_or_else(|| bad("no ids"))?;
    if header.metadata.get("digest") != Some(&chunk_digest(&bytes, ids_json)) {
        return Err(bad("its digest does not match its contents"));
    }
    let ids: Vec<RecordId> = serde_json::from_str(ids_json).map_err(|_| bad("unreadable ids"))?;
    if entry.shape.first() != Some(&ids.len()) || entry.dtype != "F32" {
        return Err(bad("its rows do not match its ids"));
    }
    Ok((bytes, ids))
}

/// Where the chunks of an output come from, in output order.
trait ChunkSource {
    fn len(&self) -> usize;
    /// The f32 bytes and the ids of chunk `i`.
    fn chunk(&mut self, i: usize) -> Result<(Vec<u8>, Vec<RecordId>)>;
    /// The ids of chunk `i` alone.
    fn ids(&mut self, i: usize) -> Result<Vec<RecordId>> {
        Ok(self.chunk(i)?.1)
    }
}

struct JournalChunks<'a> {
    journal: &'a Journal,
    chunks: Vec<u64>,
}

impl ChunkSource for JournalChunks<'_> {
    fn len(&self) -> usize {
        self.chunks.len()
    }

    fn chunk(&mut self, i: usize) -> Result<(Vec<u8>, Vec<RecordId>)> {
        read_chunk(&self.journal.chunk_path(self.chunks[i]))
    }

    fn ids(&mut self, i: usize) -> Result<Vec<RecordId>> {
        let path = self.journal.chunk_path(self.chunks[i]);
        let header = Header::read(&path)?;
        let json = header.metadata.get("ids").ok_or_else(|| Error::Integrity {
            path: path.clone(),
            reason: "no ids".into(),
        })?;
        serde_json::from_str(json).map_err(|_| Error::Integrity {
            path,
            reason: "unreadable ids".into(),
        })
    }
}

fn id_text(id: &RecordId) -> String {
    match id {
        RecordId::Int(i) => i.to_string(),
        RecordId::Str(s) => s.clone(),
    }
}

/// Writes the chunks of `source` to `output` in `fmt`, streaming, atomically; returns the rows.
fn write_output(
    output: &Path,
    fmt: OutputFormat,
    dim: usize,
    meta: &mut HashMap<String, String>,
    source: &mut dyn ChunkSource,
) -> Result<u64> {
    // Pass 1: the row count and how the ids will be laid out.
    let (mut n, mut all_int, mut str_bytes) = (0u64, true, 0u64);
    for i in 0..source.len() {
        for id in source.ids(i)? {
            n += 1;
            all_int &= matches!(id, RecordId::Int(_));
            str_bytes += id_text(&id).len() as u64;
        }
    }
    let layout = if all_int {
        IdsLayout::Int
    } else {
        IdsLayout::Str { bytes: str_bytes }
    };
    meta.insert("n".into(), n.to_string());
    meta.insert(
        "ids".into(),
        if all_int { "int" } else { "str" }.to_string(),
    );
    let dir = crate::io::parent_dir(output);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| Error::io(&p, e)
    };
    let row_bytes = dim as u64 * 4;
    match fmt {
        OutputFormat::Safetensors => {
            let tmp = crate::io::temp_file_in(&dir)?;
            let tmp_path = tmp.path().to_path_buf();
            let mut w = Counted {
                inner: BufWriter::new(tmp.as_file()),
                written: 0,
            };
            let header = safetensors_header(n, dim, layout, meta)?;
            w.write_all(&header).map_err(io_err(&tmp_path))?;
            write_vectors(&mut w, output, dim, source)?;
            write_ids(&mut w, &tmp_path, layout, source)?;
            let expected = header.len() as u64
                + n * row_bytes
                + match layout {
                    IdsLayout::Int => n * 8,
                    IdsLayout::Str { bytes } => (n + 1) * 8 + bytes,
                };
            w.flush().map_err(io_err(&tmp_path))?;
            if w.written != expected {
                return Err(Error::Integrity {
                    path: output.to_path_buf(),
                    reason: format!(
                        "wrote {} bytes where {expected} were due; the journal changed while it \
                         was read",
                        w.written
                    ),
                });
            }
            drop(w);
            crate::io::persist(tmp, output)
        }
        OutputFormat::Npy => {
            let (ids_npy, ids_txt, meta_json) = npy_sidecars(output);
            // Sidecars first, the matrix last: a crash leaves the journal, and a rerun rewrites all.
            let tmp = crate::io::temp_file_in(&dir)?;
            let tmp_path = tmp.path().to_path_buf();
            {
                let mut w = BufWriter::new(tmp.as_file());
                match layout {
                    IdsLayout::Int => {
                        w.write_all(&npy_header("<i8", &[n]))
                            .map_err(io_err(&tmp_path))?;
                        write_ids(&mut w, &tmp_path, layout, source)?;
                    }
                    IdsLayout::Str { .. } => {
                        for i in 0..source.len() {
                            for id in source.ids(i)? {
                                writeln!(w, "{}", id_text(&id)).map_err(io_err(&tmp_path))?;
                            }
                        }
                    }
                }
                w.flush().map_err(io_err(&tmp_path))?;
            }
            let (ids_path, other) = match layout {
                IdsLayout::Int => (&ids_npy, &ids_txt),
                IdsLayout::Str { .. } => (&ids_txt, &ids_npy),
            };
            crate::io::persist(tmp, ids_path)?;
            // A sidecar of the other kind from an earlier run would contradict this one.
            if other.is_file() {
                std::fs::remove_file(other).map_err(|e| Error::io(other, e))?;
            }
            let sorted: std::collections::BTreeMap<_, _> = meta.iter().collect();
            let json = serde_json::to_vec_pretty(&sorted)
                .map_err(|e| Error::invalid("metadata", e.to_string()))?;
            crate::io::write_atomic(&meta_json, &json)?;
            let tmp = crate::io::temp_file_in(&dir)?;
            let tmp_path = tmp.path().to_path_buf();
            {
                let mut w = BufWriter::new(tmp.as_file());
                w.write_all(&npy_header("<f4", &[n, dim as u64]))
                    .map_err(io_err(&tmp_path))?;
                write_vectors(&mut w, output, dim, source)?;
                w.flush().map_err(io_err(&tmp_path))?;
            }
            crate::io::persist(tmp, output)
        }
        #[cfg(feature = "parquet")]
        OutputFormat::Parquet => {
            let tmp = crate::io::temp_file_in(&dir)?;
            parquet_file::write_parquet(tmp.as_file(), output, dim, layout, meta, source)?;
            crate::io::persist(tmp, output)
        }
        #[cfg(not(feature = "parquet"))]
        OutputFormat::Parquet => Err(Error::invalid(
            "output",
            "this relstitch was built without the `parquet` feature",
        )),
    }?;
    Ok(n)
}

/// The vectors, chunk by chunk, each checked against its ids.
fn write_vectors(
    w: &mut dyn Write,
    path: &Path,
    dim: usize,
    source: &mut dyn ChunkSource,
) -> Result<()> {
    for i in 0..source.len() {
        let (bytes, ids) = source.chunk(i)?;
        check_chunk(path, i, &bytes, &ids, dim)?;
        w.write_all(&bytes).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// Fails unless chunk `i` holds one row of `dim` f32 values per id.
fn check_chunk(path: &Path, i: usize, bytes: &[u8], ids: &[RecordId], dim: usize) -> Result<()> {
    if bytes.len() as u64 == ids.len() as u64 * dim as u64 * 4 {
        return Ok(());
    }
    Err(Error::Integrity {
        path: path.to_path_buf(),
        reason: format!(
            "chunk {i} holds {} bytes for {} rows of width {dim}",
            bytes.len(),
            ids.len()
        ),
    })
}

/// The ids section: `[n]` i64, or `[n + 1]` offsets then the UTF-8 bytes.
fn write_ids(
    w: &mut dyn Write,
    path: &Path,
    layout: IdsLayout,
    source: &mut dyn ChunkSource,
) -> Result<()> {
    let e = |err: std::io::Error| Error::io(path, err);
    match layout {
        IdsLayout::Int => {
            for i in 0..source.len() {
                for id in source.ids(i)? {
                    if let RecordId::Int(v) = id {
                        w.write_all(&v.to_le_bytes()).map_err(e)?;
                    }
                }
            }
        }
        IdsLayout::Str { .. } => {
            let mut at = 0i64;
            w.write_all(&at.to_le_bytes()).map_err(e)?;
            for i in 0..source.len() {
                for id in source.ids(i)? {
                    at += id_text(&id).len() as i64;
                    w.write_all(&at.to_le_bytes()).map_err(e)?;
                }
            }
            for i in 0..source.len() {
                for id in source.ids(i)? {
                    w.write_all(id_text(&id).as_bytes()).map_err(e)?;
                }
            }
        }
    }
    Ok(())
}

/// What [`merge_shards`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MergeSummary {
    /// The output.
    pub output: PathBuf,
    /// Rows (all records).
    pub rows: u64,
    /// Shards merged.
    pub shards: usize,
    /// Seconds.
    pub seconds: f64,
}

/// One shard file opened for merging.
struct ShardFile {
    path: PathBuf,
    file: File,
    header: Header,
}

struct ShardChunks {
    shards: Vec<ShardFile>,
    chunk_rows: u64,
    total: u64,
    dim: usize,
}

impl ShardChunks {
    fn rows_of(&self, c: u64) -> u64 {
        self.chunk_rows.min(self.total - c * self.chunk_rows)
    }
}

impl ChunkSource for ShardChunks {
    fn len(&self) -> usize {
        self.total.div_ceil(self.chunk_rows) as usize
    }

    fn chunk(&mut self, i: usize) -> Result<(Vec<u8>, Vec<RecordId>)> {
        let ids = self.ids(i)?;
        let c = i as u64;
        let n = self.shards.len() as u64;
        let (m, first) = (self.rows_of(c), (c / n) * self.chunk_rows);
        let row_bytes = self.dim as u64 * 4;
        let s = &mut self.shards[(c % n) as usize];
        let entry = s.header.entry(&s.path, EMBEDDINGS)?.clone();
        let at = s.header.offset(&entry, first * row_bytes);
        let bytes = read_at(&mut s.file, &s.path, at, (m * row_bytes) as usize)?;
        Ok((bytes, ids))
    }

    fn ids(&mut self, i: usize) -> Result<Vec<RecordId>> {
        let c = i as u64;
        let n = self.shards.len() as u64;
        let (m, first) = (self.rows_of(c), (c / n) * self.chunk_rows);
        let s = &mut self.shards[(c % n) as usize];
        let le = |b: &[u8]| {
            b.chunks_exact(8)
                .map(|x| i64::from_le_bytes(x.try_into().unwrap_or([0; 8])))
                .collect::<Vec<i64>>()
        };
        if let Some(entry) = s.header.tensors.get(IDS).cloned() {
            let at = s.header.offset(&entry, first * 8);
            let v = read_at(&mut s.file, &s.path, at, (m * 8) as usize)?;
            return Ok(le(&v).into_iter().map(RecordId::Int).collect());
        }
        let offsets = s.header.entry(&s.path, IDS_OFFSETS)?.clone();
        let utf8 = s.header.entry(&s.path, IDS_UTF8)?.clone();
        let at = s.header.offset(&offsets, first * 8);
        let offs = le(&read_at(&mut s.file, &s.path, at, ((m + 1) * 8) as usize)?);
        let (lo, hi) = (offs[0], offs[offs.len() - 1]);
        let span = utf8.data_offsets[1] - utf8.data_offsets[0];
        if lo < 0 || hi < lo || hi as u64 > span || offs.windows(2).any(|w| w[1] < w[0]) {
            return Err(Error::Integrity {
                path: s.path.clone(),
                reason: "its id offsets are out of order or out of range".into(),
            });
        }
        let bytes = read_at(
            &mut s.file,
            &s.path,
            s.header.offset(&utf8, lo as u64),
            (hi - lo) as usize,
        )?;
        offs.windows(2)
            .map(|w| {
                let part = &bytes[(w[0] - lo) as usize..(w[1] - lo) as usize];
                let text = std::str::from_utf8(part).map_err(|_| Error::Integrity {
                    path: s.path.clone(),
                    reason: "an id is not valid UTF-8".into(),
                })?;
                // Integer ids of a shard whose other ids are strings stay integers.
                Ok(RecordId::Str(text.to_string()))
            })
            .collect()
    }
}

/// Merges the shard files of one job into `output` (`.safetensors`, `.npy` or `.parquet`), in input order,
/// streaming: bit-identical to the output of a single-process run of the same job.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the problem when the set is not one job's complete set of
/// shards: a shard missing or given twice, shards of different jobs (the differing field is named:
/// `encoder.weights_sha256`, `input_sha256`...), a file that is not a shard; [`Error::Integrity`]
/// when a shard's rows do not match its job; the errors of reading and writing.
pub fn merge_shards(shards: &[PathBuf], output: &Path) -> Result<MergeSummary> {
    let start = std::time::Instant::now();
    let fmt = OutputFormat::of(output)?;
    if shards.is_empty() {
        return Err(Error::invalid("shards", "no shard files given"));
    }
    let inputs: Vec<&Path> = shards.iter().map(PathBuf::as_path).collect();
    crate::io::check_output_file(output, &inputs)?;
    let mut opened: Vec<(Shard, serde_json::Value, ShardFile)> = Vec::new();
    for path in shards {
        let header = Header::read(path)?;
        let not_shard = |what: &str| {
            Error::invalid(
                "shard",
                format!(
                    "{}: {what}; merge takes the files written by `relstitch embed --shard I/N`",
                    path.display()
                ),
            )
        };
        let shard: Shard = header
            .metadata
            .get(SHARD)
            .ok_or_else(|| not_shard("no shard metadata"))?
            .parse()?;
        let job: serde_json::Value = header
            .metadata
            .get(JOB)
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| not_shard("no job metadata"))?;
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        opened.push((
            shard,
            job,
            ShardFile {
                path: path.clone(),
                file,
                header,
            },
        ));
    }
    let (first_shard, first_job) = (opened[0].0, opened[0].1.clone());
    let count = first_shard.count;
    for (shard, job, f) in &opened[1..] {
        if let Some(field) = first_difference(&first_job, job, "") {
            return Err(Error::invalid(
                "shards",
                format!(
                    "{} and {} come from different jobs: `{field}` differs; merge only the shards \
                     of one `relstitch embed` command",
                    shards[0].display(),
                    f.path.display()
                ),
            ));
        }
        let _ = shard;
    }
    let mut slots: Vec<Option<ShardFile>> = (0..count).map(|_| None).collect();
    let mut totals = Vec::new();
    for (shard, _, f) in opened {
        totals.push((
            f.header.metadata.get(TOTAL_RECORDS).cloned(),
            f.path.clone(),
        ));
        if let Some(prev) = &slots[shard.index] {
            return Err(Error::invalid(
                "shards",
                format!(
                    "shard {shard} is given twice ({} and {})",
                    prev.path.display(),
                    f.path.display()
                ),
            ));
        }
        slots[shard.index] = Some(f);
    }
    let missing: Vec<String> = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_none())
        .map(|(i, _)| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::invalid(
            "shards",
            format!(
                "missing shard(s) {} of {count}; run `relstitch embed --shard I/{count}` for them",
                missing.join(", ")
            ),
        ));
    }
    let total: u64 = match totals[0].0.as_deref().map(str::parse) {
        Some(Ok(t)) => t,
        _ => {
            return Err(Error::invalid(
                "shards",
                format!("{}: no record count", totals[0].1.display()),
            ))
        }
    };
    if let Some((_, p)) = totals
        .iter()
        .find(|(t, _)| t.as_deref() != Some(&total.to_string()))
    {
        return Err(Error::invalid(
            "shards",
            format!(
                "{}: another record count than the other shards",
                p.display()
            ),
        ));
    }
    let chunk_rows = first_job
        .get("chunk_rows")
        .and_then(serde_json::Value::as_u64)
        .filter(|&c| c > 0)
        .ok_or_else(|| Error::invalid("shards", "the job records no chunk size"))?;
    let shards_files: Vec<ShardFile> = slots.into_iter().flatten().collect();
    let mut dim = 0usize;
    for (i, s) in shards_files.iter().enumerate() {
        let e = s.header.entry(&s.path, EMBEDDINGS)?;
        let chunks = total.div_ceil(chunk_rows);
        let want: u64 = (0..chunks)
            .filter(|c| c % count as u64 == i as u64)
            .map(|c| chunk_rows.min(total - c * chunk_rows))
            .sum();
        if e.shape.first().map(|&r| r as u64) != Some(want) || e.dtype != "F32" {
            return Err(Error::Integrity {
                path: s.path.clone(),
                reason: format!(
                    "holds {:?} {} vectors where shard {i}/{count} of {total} records has {want} rows",
                    e.shape, e.dtype
                ),
            });
        }
        let d = e.shape.get(1).copied().unwrap_or(0);
        if i > 0 && d != dim {
            return Err(Error::Integrity {
                path: s.path.clone(),
                reason: format!("vectors of width {d}, the other shards {dim}"),
            });
        }
        dim = d;
    }
    let mut meta = shards_files[0].header.metadata.clone();
    meta.insert(SHARD.into(), Shard::default().to_string());
    // The single-process run of the same job records one shard.
    if let Some(v) = meta.get_mut(JOB) {
        let mut job = first_job.clone();
        job["shards"] = serde_json::json!(1);
        *v = job.to_string();
    }
    let mut source = ShardChunks {
        shards: shards_files,
        chunk_rows,
        total,
        dim,
    };
    let rows = write_output(output, fmt, dim, &mut meta, &mut source)?;
    Ok(MergeSummary {
        output: output.to_path_buf(),
        rows,
        shards: count,
        seconds: start.elapsed().as_secs_f64(),
    })
}
