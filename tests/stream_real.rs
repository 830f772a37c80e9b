//! Streamed, resumable, sharded embeds with the real binary, a real encoder (all-MiniLM-L6-v2) and
//! real texts (`fortunes`): shards merge to the bytes of one run, a run killed with SIGKILL resumes
//! to the same bytes, `.npy` output holds the same vectors, ids follow the input, the engines'
//! environment variables pick the shard, and `relstitch merge` refuses bad shard sets clearly.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use relstitch::data::{Builtin, Dataset, SplitOptions};
use relstitch::encoder::stream::journal_dir;
use relstitch::hub::catalog::Catalog;
use relstitch::hub::fetch::Fetcher;
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
    let fetcher = Fetcher::new()?.with_quiet(true);
    let catalog = Catalog::builtin()?;
    let entry = catalog
        .get("all-MiniLM-L6-v2")
        .context("all-MiniLM-L6-v2 is in the catalog")?;
    let model = fetcher.fetch(&catalog, entry)?;
    let split = Dataset::builtin(Builtin::Fortunes, &fetcher)?.split(&SplitOptions::default())?;
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

fn run_ok(mut c: Command) -> Result<String> {
    let out = c.stderr(Stdio::piped()).output()?;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        bail!("{c:?} failed: {}", err.trim());
    }
    Ok(err)
}

fn run_err(mut c: Command) -> Result<String> {
    let out = c.stderr(Stdio::piped()).output()?;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.success() {
        bail!("{c:?} succeeded, expected an error");
    }
    Ok(err)
}

fn bytes(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
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
    let mut child = embed(f, &out, &[])
        .env("RELSTITCH_FAILPOINT", point)
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut reached = false;
    for line in BufReader::new(stderr).lines() {
        if line?.contains(&format!("relstitch failpoint {point} reached")) {
            reached = true;
            break;
        }
        if Instant::now() > deadline {
            break;
        }
    }
    child.kill()?;
    child.wait()?;
    assert!(reached, "the embed never reached {point}");
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
    let f = fixture();
    let work = tempfile::tempdir()?;
    let out = work.path().join("e.npy");
    run_ok(embed(f, &out, &[]))?;
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
