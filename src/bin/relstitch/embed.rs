//! `relstitch embed`: texts in, vectors out (streamed, resumable, sharded); `relstitch merge`.

use std::path::PathBuf;

use clap::Args;
use relstitch::encoder::stream::records::RecordOptions;
use relstitch::encoder::stream::{embed_stream, merge_shards, EmbedJob, Shard, DEFAULT_CHUNK_ROWS};
use relstitch::encoder::Encoder;

use crate::common::{ModelArgs, RunArgs};

/// The long help of `relstitch embed`.
const EMBED_HELP: &str = "\
Input: a .txt file (one text per line; an empty line is an error unless --skip-empty) or a .jsonl
file (one object per line, text in --field, id in --id-field).

Output, by extension:
  .safetensors  tensor `embeddings` [n, d] f32 in input order, the ids as tensor `ids` [n] i64
                (or `ids_utf8` + `ids_offsets` for string ids), and the model's identity as
                metadata. numpy: safetensors.numpy.load_file(path)[\"embeddings\"].
  .npy          the [n, d] f32 matrix (numpy.load), ids in STEM.ids.npy (or STEM.ids.txt for
                string ids), metadata in STEM.meta.json.
  .parquet      columns `id` (int64, or utf8 for string ids) and `embedding`
                (FixedSizeList<Float32, d>), one row group per chunk, the model's identity as
                key-value metadata (builds with the default feature `parquet`).
Ids: the --id-field value, else the 0-based record index (.jsonl) or the 1-based line number (.txt).

Large corpora: the input is read and embedded one chunk (--chunk-rows records) at a time and each
chunk is kept in OUTPUT.relstitch-parts/ until the output is complete, so memory stays flat and a
killed run, started again with the same command, continues where it stopped (same bytes as an
uninterrupted run).

Shards: --shard I/N embeds chunks I, I+N, I+2N... of the input into a shard file; `relstitch merge`
joins the N shard files into the same output a single run writes. Under a Slurm array the shard
comes from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, under a Kubernetes Indexed Job from
JOB_COMPLETION_INDEX (with --shards N); an explicit --shard wins.

Models: a folder, a catalog name, or a Hub id org/name[@revision] (branch, tag or commit), found in
the Hugging Face cache or downloaded (HF_TOKEN for gated models, HF_HUB_OFFLINE=1 for no network).
A sentence-transformers folder runs its whole pipeline (Pooling, Dense, Normalize); its prompts
(config_sentence_transformers.json) are chosen with --prompt-name, its default_prompt_name applies
otherwise.

Examples:
  relstitch embed --model all-mpnet-base-v2 --input texts.jsonl --output e.safetensors
  relstitch embed -m sentence-transformers/all-MiniLM-L6-v2 -i t.txt -o e.safetensors
  relstitch embed -m intfloat/multilingual-e5-small --prompt-name query -i q.txt -o q.safetensors
  relstitch embed -m all-MiniLM-L6-v2 -i corpus.jsonl --id-field doc_id -o e.npy
  relstitch embed -m all-MiniLM-L6-v2 -i corpus.jsonl --id-field doc_id -o e.parquet
  relstitch embed -m all-MiniLM-L6-v2 -i corpus.jsonl --shard 0/4 -o part-0.safetensors
  relstitch merge part-*.safetensors --output e.safetensors";

/// Embed a file of texts with one encoder.
#[derive(Args, Debug)]
#[command(after_long_help = EMBED_HELP)]
pub struct EmbedArgs {
    /// A local folder, a catalog name (see `relstitch fetch --list`) or a Hub id
    /// `org/name[@revision]` (from the Hugging Face cache, else downloaded; HF_TOKEN, HF_ENDPOINT,
    /// HF_HOME and HF_HUB_OFFLINE apply).
    #[arg(long, short)]
    pub model: String,
    /// The texts: .txt or .jsonl.
    #[arg(long, short)]
    pub input: PathBuf,
    /// The JSON field holding the text (.jsonl input).
    #[arg(long, default_value = "text")]
    pub field: String,
    /// The JSON field holding each record's id (.jsonl input; an integer or a string).
    #[arg(long)]
    pub id_field: Option<String>,
    /// Skip empty texts instead of failing on them (their ids are then absent from the output).
    #[arg(long)]
    pub skip_empty: bool,
    /// Where to write: .safetensors, .npy or .parquet (written atomically).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Embed only shard I of N (0-based), e.g. 0/4.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// The number of shards, when the shard index comes from the environment (Kubernetes
    /// JOB_COMPLETION_INDEX; overrides SLURM_ARRAY_TASK_COUNT).
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// Records per chunk: the unit of progress kept on disk and of sharding. Every shard of a job
    /// must use the same value.
    #[arg(long, default_value_t = DEFAULT_CHUNK_ROWS)]
    pub chunk_rows: usize,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub model_options: ModelArgs,
}

pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    let shard = match args.shard {
        Some(s) => {
            if args.shards.is_some_and(|n| n != s.count) {
                anyhow::bail!(
                    "--shards {} contradicts --shard {s}",
                    args.shards.unwrap_or(0)
                );
            }
            s
        }
        None => Shard::from_env(|k| std::env::var(k).ok(), args.shards)?.unwrap_or_default(),
    };
    relstitch::io::check_output_file(&args.output, &[&args.input])?;
    let options = args.model_options.apply(args.run.options(!args.quiet)?);
    let encoder = Encoder::load(&args.model, &options)?;
    let job = EmbedJob::new(&args.input)
        .with_records(RecordOptions {
            field: args.field.clone(),
            id_field: args.id_field.clone(),
            skip_empty: args.skip_empty,
        })
        .with_chunk_rows(args.chunk_rows)
        .with_shard(shard)
        .with_progress(!args.quiet);
    let s = embed_stream(&encoder, &job, &args.output)?;
    if !args.quiet {
        let resumed = if s.chunks_resumed > 0 {
            format!(" ({} chunks resumed)", s.chunks_resumed)
        } else {
            String::new()
        };
        let part = if shard.count > 1 {
            format!(" of {} records (shard {shard})", s.total_records)
        } else {
            String::new()
        };
        let id = encoder.identity();
        let mut notes = Vec::new();
        if let Some(c) = &id.commit {
            notes.push(format!("commit {}", &c[..c.len().min(12)]));
        }
        if let Some(p) = &id.prompt_name {
            notes.push(format!("prompt {p}"));
        }
        if let Some(t) = id.truncate_dim {
            notes.push(format!("truncated to {t}"));
        }
        if let Some(f) = &id.similarity {
            notes.push(format!("similarity {f}"));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(", {}", notes.join(", "))
        };
        eprintln!(
            "embedded {} texts{part} with {} ({} dims{notes}) in {:.2}s{resumed} -> {}",
            s.rows,
            id.name,
            s.dim,
            s.seconds,
            s.output.display()
        );
    }
    Ok(())
}

/// Merge the shard files of one `relstitch embed --shard I/N` job into one output.
///
/// Checks that the shards are one job's complete set (same model, input and options, each shard
/// once, every row present) and writes one .safetensors, .npy or .parquet in input order,
/// streaming: the same bytes as a single `relstitch embed` run into the same format.
///
/// Example: `relstitch merge part-0.safetensors part-1.safetensors --output e.safetensors`
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The shard files.
    #[arg(required = true, value_name = "SHARD")]
    pub shards: Vec<PathBuf>,
    /// Where to write: .safetensors, .npy or .parquet.
    #[arg(long, short)]
    pub output: PathBuf,
}

pub fn run_merge(args: MergeArgs) -> anyhow::Result<()> {
    let s = merge_shards(&args.shards, &args.output)?;
    eprintln!(
        "merged {} shards, {} rows, in {:.2}s -> {}",
        s.shards,
        s.rows,
        s.seconds,
        s.output.display()
    );
    Ok(())
}
