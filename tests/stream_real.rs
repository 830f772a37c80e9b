//! Streamed, resumable, sharded embeds with the real binary, a real encoder (all-MiniLM-L6-v2) and
//! real texts (`fortunes`): shards merge to the bytes of one run, a run killed with SIGKILL resumes
//! to the same bytes, `.npy` output holds the same vectors, ids follow the input, the engines'
//! environment variables pick the shard, and `relstitch merge` refuses bad shard sets clearly.
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};
use candle_core::Device;
use common::real::{kill_at_failpoint, minilm_and_fortunes, run_err, run_ok};
use relstitch::encoder::stream::journal_dir;
use relstitch::io::SafetensorsFile;

const RELSTITCH: &str = env!("CARGO_BIN_EXE_relstitch");
/// 5 chunks of 24 records (the last one shorter).
const CHUNK: &str = "24";

struct Fixture {
    model: PathBuf,
    dir: tempfile::TempDir,
    texts: PathBuf,
    /// The output of one uninterrupted single-process run.
    single: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| match make_fixture() {
        Ok(f) => f,
        Err(e) => panic!("cannot prepare the stream-test fixture: {e:#}"),
    })
}

fn make_fixture() -> Result<Fixture> {
    let (model, split) = minilm_and_fortunes()?;
    let dir = tempfile::tempdir()?;
    let texts = dir.path().join("texts.jsonl");
    let mut part = split.test.clone();
    part.records.truncate(110);
    part.write_jsonl(&texts)?;
    let single = dir.path().join("single.safetensors");
    let f = Fixture {
        model,
        texts,
        single,
        dir,
    };
    run_ok(embed(&f, &f.single, &[]))?;
    Ok(f)
}

fn home(f: &Fixture) -> PathBuf {
    f.dir.path().join("home")
}

/// `relstitch embed` of the fixture's texts with string ids from the `id` field.
fn embed(f: &Fixture, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(RELSTITCH);
    c.args([
        "embed",
        "--model",
        &f.model.to_string_lossy(),
        "--input",
        &f.texts.to_string_lossy(),
        "--id-field",
        "id",
        "--chunk-rows",
        CHUNK,
        "--output",
        &out.to_string_lossy(),
        "--quiet",
        "--threads",
        "2",
    ])
    .args(extra)
    .env("RELSTITCH_HOME", home(f))
    .env_remove("RELSTITCH_FAILPOINT")
    .env_remove("SLURM_ARRAY_TASK_ID")
    .env_remove("JOB_COMPLETION_INDEX")
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null());
    c
}

fn bytes(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
}

/// The fixture, a fresh folder, and the fixture's texts embedded into `name` in that folder.
fn embedded_into(name: &str) -> Result<(&'static Fixture, tempfile::TempDir, PathBuf)> {
    let f = fixture();
    let work = tempfile::tempdir()?;
    let out = work.path().join(name);
    run_ok(embed(f, &out, &[]))?;
    Ok((f, work, out))
}

fn merge(shards: &[&Path], out: &Path) -> Command {
    let mut c = Command::new(RELSTITCH);
    c.arg("merge")
        .args(shards)
        .arg("--output")
        .arg(out)
        .stdout(Stdio::null());
    c
}

#[test]
fn shards_merge_to_the_bytes_of_one_run() -> Result<()> {
    let f = fixture();
    let work = tempfile::tempdir()?;
    let shard = |i: usize| work.path().join(format!("part-{i}.safetensors"));
    for i in 0..3 {
        run_ok(embed(f, &shard(i), &["--shard", &format!("{i}/3")]))?;
    }
    let out = work.path().join("merged.safetensors");
    let (s0, s1, s2) = (shard(0), shard(1), shard(2));
    run_ok(merge(&[&s2, &s0, &s1], &out))?;
    assert!(
        bytes(&out)? == bytes(&f.single)?,
        "merged output differs from one run"
    );
    // The single run's contents: 110 rows, the records' ids in order, the model's identity.
    let st = SafetensorsFile::read(&f.single, &Device::Cpu)?;
    assert_eq!(st.matrix("embeddings")?.dims(), [110, 384]);
    assert_eq!(st.metadata["total_records"], "110");
    assert_eq!(st.metadata["shard"], "0/1");
    let text = std::fs::read_to_string(&f.texts)?;
    let first_id = text
        .lines()
        .next()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["id"].as_str().map(str::to_string))
        .context("first id")?;
    let offsets = st.tensors["ids_offsets"].to_vec1::<i64>()?;
    let utf8 = st.tensors["ids_utf8"].to_vec1::<u8>()?;
    assert_eq!(offsets.len(), 111);
    assert_eq!(
        std::str::from_utf8(&utf8[offsets[0] as usize..offsets[1] as usize])?,
        first_id
    );

    // Refusals: a missing shard, a shard twice, a shard of another job, a file that is no shard.
    let e = run_err(merge(&[&s0, &s2], &work.path().join("m.safetensors")))?;
    assert!(e.contains("missing shard(s) 1/3"), "{e}");
    let e = run_err(merge(
        &[&s0, &s1, &s1, &s2],
        &work.path().join("m.safetensors"),
    ))?;
    assert!(e.contains("given twice"), "{e}");
    let other = work.path().join("other-1.safetensors");
    run_ok(embed(f, &other, &["--shard", "1/3", "--skip-empty"]))?;
    let e = run_err(merge(
        &[&s0, &other, &s2],
        &work.path().join("m.safetensors"),
    ))?;
    assert!(
        e.contains("different jobs") && e.contains("records.skip_empty"),
        "{e}"
    );
    // A single run is the one shard of its job: merging it alone rewrites the same bytes.
    let alone = work.path().join("alone.safetensors");
    run_ok(merge(&[&f.single], &alone))?;
    assert!(bytes(&alone)? == bytes(&f.single)?);
    // A file that is not a shard (a safetensors file from elsewhere) is refused.
    let plain = work.path().join("plain.safetensors");
    relstitch::io::write_safetensors(
        &plain,
        &[(
            "embeddings",
            &candle_core::Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu)?,
        )],
        &Default::default(),
    )?;
    let e = run_err(merge(&[&plain], &work.path().join("m.safetensors")))?;
    assert!(e.contains("no shard metadata"), "{e}");
    // A truncated shard is refused before anything is written.
    let cut = work.path().join("cut-0.safetensors");
    let b = bytes(&s0)?;
    std::fs::write(&cut, &b[..b.len() - 100])?;
    let m = work.path().join("m.safetensors");
    let e = run_err(merge(&[&cut, &s1, &s2], &m))?;
    assert!(e.contains("cut-0.safetensors"), "{e}");
    assert!(!m.exists());
    Ok(())
}

#[test]
fn a_killed_run_resumes_to_the_same_bytes() -> Result<()> {
    let f = fixture();
    let work = tempfile::tempdir()?;
    let out = work.path().join("e.safetensors");
    // Killed with SIGKILL right after chunk 2 reached the disk.
    let point = "embed-chunk-2-written";
    kill_at_failpoint(embed(f, &out, &[]), point, Duration::from_secs(600))?;
    assert!(!out.exists(), "no output before the run completes");
    let journal = journal_dir(&out);
    let chunks = std::fs::read_dir(&journal)?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("chunk-"))
        .count();
    assert_eq!(chunks, 3, "chunks 0, 1 and 2 are kept");
    // The same command again: resumes, embeds chunks 3 and 4 only, same bytes as one run.
    let mut again = embed(f, &out, &[]);
    again.env("RUST_LOG", "info");
    let log = run_ok(again)?;
    assert!(log.contains("resuming"), "{log}");
    assert!(bytes(&out)? == bytes(&f.single)?, "resumed output differs");
    assert!(
        !journal.exists(),
        "the journal is removed once the output is complete"
    );
    Ok(())
}

#[test]
fn npy_output_and_text_ids() -> Result<()> {
    let (f, work, out) = embedded_into("e.npy")?;
    let raw = bytes(&out)?;
    assert_eq!(&raw[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([raw[8], raw[9]]) as usize;
    let header = std::str::from_utf8(&raw[10..10 + header_len])?;
    assert!(
        header.contains("'descr': '<f4'") && header.contains("(110, 384)"),
        "{header}"
    );
    let data: Vec<f32> = raw[10 + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let st = SafetensorsFile::read(&f.single, &Device::Cpu)?;
    let want = st.matrix("embeddings")?.flatten_all()?.to_vec1::<f32>()?;
    assert_eq!(data, want);
    let ids = std::fs::read_to_string(work.path().join("e.ids.txt"))?;
    assert_eq!(ids.lines().count(), 110);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.path().join("e.meta.json"))?)?;
    assert_eq!(meta["model"], "all-MiniLM-L6-v2");

    // A .txt input: ids are line numbers; an empty line fails unless --skip-empty.
    let txt = work.path().join("t.txt");
    std::fs::write(&txt, "the cpu overheated\n\na cat on the mat\n")?;
    let mut c = Command::new(RELSTITCH);
    let out = work.path().join("t.safetensors");
    c.args(["embed", "--model", &f.model.to_string_lossy(), "--quiet"])
        .arg("--input")
        .arg(&txt)
        .arg("--output")
        .arg(&out)
        .env("RELSTITCH_HOME", home(f));
    let e = run_err(c)?;
    assert!(e.contains("t.txt:2") && e.contains("--skip-empty"), "{e}");
    let mut c = Command::new(RELSTITCH);
    c.args([
        "embed",
        "--model",
        &f.model.to_string_lossy(),
        "--quiet",
        "--skip-empty",
    ])
    .arg("--input")
    .arg(&txt)
    .arg("--output")
    .arg(&out)
    .env("RELSTITCH_HOME", home(f));
    run_ok(c)?;
    let st = SafetensorsFile::read(&out, &Device::Cpu)?;
    assert_eq!(st.tensors["ids"].to_vec1::<i64>()?, [1, 3]);
    assert_eq!(st.metadata["skipped_empty"], "1");
    Ok(())
}

#[test]
fn engines_pick_the_shard_from_their_environment() -> Result<()> {
    let f = fixture();
    let work = tempfile::tempdir()?;
    // A Slurm array task 7 of an array 6..8: shard 1/3.
    let slurm = work.path().join("slurm.safetensors");
    let mut c = embed(f, &slurm, &[]);
    c.env("SLURM_ARRAY_TASK_ID", "7")
        .env("SLURM_ARRAY_TASK_MIN", "6")
        .env("SLURM_ARRAY_TASK_COUNT", "3");
    run_ok(c)?;
    let st = SafetensorsFile::read(&slurm, &Device::Cpu)?;
    assert_eq!(st.metadata["shard"], "1/3");
    // A Kubernetes Indexed Job: JOB_COMPLETION_INDEX, with the count from --shards.
    let k8s = work.path().join("k8s.safetensors");
    let mut c = embed(f, &k8s, &["--shards", "3"]);
    c.env("JOB_COMPLETION_INDEX", "1");
    run_ok(c)?;
    assert!(
        bytes(&k8s)? == bytes(&slurm)?,
        "the same shard, the same bytes"
    );
    let mut c = embed(f, &work.path().join("x.safetensors"), &[]);
    c.env("JOB_COMPLETION_INDEX", "1");
    let e = run_err(c)?;
    assert!(e.contains("--shards"), "{e}");
    // An explicit --shard wins over the environment.
    let mut c = embed(f, &work.path().join("y.safetensors"), &["--shard", "2/3"]);
    c.env("SLURM_ARRAY_TASK_ID", "0")
        .env("SLURM_ARRAY_TASK_COUNT", "3");
    run_ok(c)?;
    let st = SafetensorsFile::read(&work.path().join("y.safetensors"), &Device::Cpu)?;
    assert_eq!(st.metadata["shard"], "2/3");
    Ok(())
}

/// A Python with pyarrow: `RELSTITCH_PYARROW_PYTHON`, else `target/pyarrow-venv` (created with
/// `python3 -m venv` and `pip install pyarrow` when missing, as the CI scripts do for ray).
#[cfg(feature = "parquet")]
fn pyarrow_python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("RELSTITCH_PYARROW_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let venv = target.join("pyarrow-venv");
    let python = venv.join("bin/python");
    let ready = |p: &Path| {
        Command::new(p)
            .args(["-c", "import pyarrow, numpy"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&python) {
        let mut c = Command::new("python3");
        c.args(["-m", "venv"]).arg(&venv);
        run_ok(c)?;
        let mut c = Command::new(venv.join("bin/pip"));
        c.args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "pyarrow",
            "numpy",
        ]);
        run_ok(c)?;
    }
    Ok(python)
}

/// The vectors (f32 little-endian bytes) and ids of an embed output in safetensors.
#[cfg(feature = "parquet")]
fn safetensors_rows(p: &Path) -> Result<(Vec<u8>, Vec<String>)> {
    let st = SafetensorsFile::read(p, &Device::Cpu)?;
    let v = st.matrix("embeddings")?.flatten_all()?.to_vec1::<f32>()?;
    let offsets = st.tensors["ids_offsets"].to_vec1::<i64>()?;
    let utf8 = st.tensors["ids_utf8"].to_vec1::<u8>()?;
    let ids = offsets
        .windows(2)
        .map(|w| Ok(std::str::from_utf8(&utf8[w[0] as usize..w[1] as usize])?.to_string()))
        .collect::<Result<_>>()?;
    Ok((v.iter().flat_map(|x| x.to_le_bytes()).collect(), ids))
}

#[cfg(feature = "parquet")]
#[test]
fn parquet_output_reads_back_in_pyarrow() -> Result<()> {
    let (f, work, out) = embedded_into("e.parquet")?;
    // Shards merged into Parquet: the same bytes as one run into Parquet.
    let shard = |i: usize| work.path().join(format!("part-{i}.safetensors"));
    for i in 0..2 {
        run_ok(embed(f, &shard(i), &["--shard", &format!("{i}/2")]))?;
    }
    let merged = work.path().join("merged.parquet");
    run_ok(merge(&[&shard(1), &shard(0)], &merged))?;
    assert!(bytes(&merged)? == bytes(&out)?, "merged Parquet differs");
    // A shard itself cannot be Parquet (merge checks the safetensors metadata of shards).
    let e = run_err(embed(
        f,
        &work.path().join("p.parquet"),
        &["--shard", "0/2"],
    ))?;
    assert!(e.contains(".safetensors"), "{e}");

    // pyarrow reads the id and embedding columns, a fixed-size list of float32, one row group per
    // chunk, and the model's identity in the file's key-value metadata.
    let (want_vectors, want_ids) = safetensors_rows(&f.single)?;
    let vectors = work.path().join("vectors.f32");
    let script = r#"
import json, sys
import pyarrow as pa, pyarrow.parquet as pq
path, dump = sys.argv[1], sys.argv[2]
pf = pq.ParquetFile(path)
t = pf.read()
emb = t.column("embedding").combine_chunks()
assert pa.types.is_fixed_size_list(emb.type), emb.type
emb.flatten().to_numpy().astype("<f4").tofile(dump)
kv = {k.decode(): v.decode() for k, v in (pf.metadata.metadata or {}).items()}
print(json.dumps({
    "embedding_type": str(t.schema.field("embedding").type),
    "id_type": str(t.schema.field("id").type),
    "ids": t.column("id").to_pylist(),
    "row_groups": pf.num_row_groups,
    "model": kv.get("model"),
    "weights_sha256": kv.get("weights_sha256"),
    "encoder_json": "relstitch.encoder" in kv,
}))
"#;
    let mut c = Command::new(pyarrow_python()?);
    c.arg("-c").arg(script).arg(&out).arg(&vectors);
    let o = c.output()?;
    assert!(
        o.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    assert_eq!(got["embedding_type"], "fixed_size_list<item: float>[384]");
    assert_eq!(got["id_type"], "string");
    assert_eq!(
        got["row_groups"], 5,
        "one row group per chunk of 24 of 110 rows"
    );
    let ids: Vec<String> = serde_json::from_value(got["ids"].clone())?;
    assert_eq!(ids, want_ids);
    assert!(bytes(&vectors)? == want_vectors, "vectors differ");
    let st = SafetensorsFile::read(&f.single, &Device::Cpu)?;
    assert_eq!(got["model"], st.metadata["model"].as_str());
    assert_eq!(
        got["weights_sha256"],
        st.metadata["weights_sha256"].as_str()
    );
    assert_eq!(got["encoder_json"], true);
    Ok(())
}

/// Integer ids make an int64 id column; the parquet crate reads the file back (no Python).
#[cfg(feature = "parquet")]
#[test]
fn parquet_integer_ids_read_back_in_rust() -> Result<()> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let (f, work) = (fixture(), tempfile::tempdir()?);
    // Line numbers are the ids; the empty line 2 is skipped.
    let txt = work.path().join("t.txt");
    std::fs::write(
        &txt,
        "the cpu overheated\n\na cat on the mat\nstocks fell\n",
    )?;
    let run = |out: &Path| {
        let mut c = Command::new(RELSTITCH);
        c.args(["embed", "--model", &f.model.to_string_lossy(), "--quiet"])
            .args(["--skip-empty", "--chunk-rows", "2"])
            .arg("--input")
            .arg(&txt)
            .arg("--output")
            .arg(out)
            .env("RELSTITCH_HOME", home(f));
        c
    };
    let (pq_out, st_out) = (
        work.path().join("t.parquet"),
        work.path().join("t.safetensors"),
    );
    run_ok(run(&pq_out))?;
    run_ok(run(&st_out))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&pq_out)?)?;
    let kv: std::collections::HashMap<String, String> = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .context("key-value metadata")?
        .iter()
        .filter_map(|kv| Some((kv.key.clone(), kv.value.clone()?)))
        .collect();
    assert_eq!(reader.metadata().num_row_groups(), 2);
    let (mut ids, mut values) = (Vec::new(), Vec::new());
    for batch in reader.build()? {
        let batch = batch?;
        let id = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::Int64Array>()
            .context("int64 ids")?;
        ids.extend(id.values().iter().copied());
        let emb = batch
            .column(1)
            .as_any()
            .downcast_ref::<arrow_array::FixedSizeListArray>()
            .context("fixed-size list")?;
        assert_eq!(emb.value_length(), 384);
        let v = emb
            .values()
            .as_any()
            .downcast_ref::<arrow_array::Float32Array>()
            .context("float32 items")?;
        values.extend(v.values().iter().copied());
    }
    let st = SafetensorsFile::read(&st_out, &Device::Cpu)?;
    assert_eq!(ids, st.tensors["ids"].to_vec1::<i64>()?);
    assert_eq!(ids, [1, 3, 4]);
    assert_eq!(
        values,
        st.matrix("embeddings")?.flatten_all()?.to_vec1::<f32>()?
    );
    for key in ["model", "weights_sha256", "skipped_empty", "n", "ids"] {
        assert_eq!(kv.get(key), st.metadata.get(key), "{key}");
    }
    Ok(())
}
