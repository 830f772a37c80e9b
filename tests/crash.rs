//! Crash tests: the real binaries (`relstitch fit`, `relstitch embed`, `stitch-two-checkpoints
//! --out`) on a real encoder (all-MiniLM-L6-v2) and real data (`fortunes`), killed with SIGKILL at
//! several points. Afterwards the output that existed before loads and is either unchanged or the
//! complete new one (never a mix, never missing), rerunning the same command succeeds, and no
//! temporary file or folder remains beside the output or inside the cache.
//!
//! Kill points: timed (while the model loads, embeds, trains) and named failpoints
//! (`RELSTITCH_FAILPOINT`): the binary stops there, says so on stderr, and waits to be killed.
#![cfg(unix)]

mod common;

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};
use candle_core::Device;
use common::real::{kill_at_failpoint, minilm_and_fortunes, run_ok};
use relstitch::io::SafetensorsFile;
use relstitch::task::checkpoint::Checkpoint;

const RELSTITCH: &str = env!("CARGO_BIN_EXE_relstitch");
const STITCH: &str = env!("CARGO_BIN_EXE_stitch-two-checkpoints");

/// Kill points inside a save, and times after the start (model load, embedding, training).
const FAILPOINTS: [&str; 3] = [
    "atomic-write-synced",
    "checkpoint-staged",
    "replace-dir-exchanged",
];
const DELAYS_MS: [u64; 3] = [300, 1200, 2500];

/// The real encoder's folder and a small real training file (shared, read-only).
struct Fixture {
    model: PathBuf,
    _dir: tempfile::TempDir,
    train: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| match make_fixture() {
        Ok(f) => f,
        Err(e) => panic!("cannot prepare the crash-test fixture: {e:#}"),
    })
}

fn make_fixture() -> Result<Fixture> {
    let (model, split) = minilm_and_fortunes()?;
    let dir = tempfile::tempdir()?;
    let train = dir.path().join("train.jsonl");
    split.train.first_per_label(25).write_jsonl(&train)?;
    Ok(Fixture {
        model,
        _dir: dir,
        train,
    })
}

/// A command with its own cache folder.
fn command(bin: &str, home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.args(args)
        .env("RELSTITCH_HOME", home)
        .env_remove("RELSTITCH_FAILPOINT")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    c
}

/// `relstitch fit` on the fixture: 40 anchors, 4 epochs, the given seed.
fn fit_command(home: &Path, out: &Path, seed: &str) -> Command {
    let f = fixture();
    command(
        RELSTITCH,
        home,
        &[
            "fit",
            "--model",
            &f.model.to_string_lossy(),
            "--train",
            &f.train.to_string_lossy(),
            "--out",
            &out.to_string_lossy(),
            "--anchors",
            "40",
            "--epochs",
            "4",
            "--seed",
            seed,
            "--quiet",
        ],
    )
}

/// Kills `new()` at each of `kills` with the output in its `previous` state, then checks that the
/// output is `previous` or `new_state`, that rerunning `new()` succeeds and gives `new_state`,
/// and that no temporary is left under `work`; `reset()` brings back the previous output.
fn kill_everywhere<S: PartialEq + std::fmt::Debug>(
    work: &Path,
    kills: &[Kill],
    new: impl Fn() -> Command,
    reset: impl Fn() -> Result<()>,
    state: impl Fn() -> Result<S>,
    (previous, new_state): (&S, &S),
) -> Result<()> {
    assert_ne!(
        previous, new_state,
        "the two runs must give different outputs"
    );
    for &kill in kills {
        let killed = run_killed(new(), kill)?;
        let now = state().with_context(|| format!("after kill {kill:?}"))?;
        assert!(
            &now == previous || &now == new_state,
            "after kill {kill:?} (killed: {killed}) the output is neither the old nor the new one"
        );
        settle();
        run_ok(new())?;
        assert_eq!(&state()?, new_state, "rerun after {kill:?}");
        let left = temporaries(work);
        assert!(left.is_empty(), "after kill {kill:?} and a rerun: {left:?}");
        reset()?;
    }
    Ok(())
}

/// How a run was stopped.
#[derive(Debug, Clone, Copy)]
enum Kill {
    At(&'static str),
    After(u64),
}

/// Starts `c`, kills it with SIGKILL at `kill`, and waits for it. Returns whether it was killed
/// (a timed kill may come after the command finished on its own).
fn run_killed(mut c: Command, kill: Kill) -> Result<bool> {
    match kill {
        Kill::At(point) => {
            kill_at_failpoint(c, point, Duration::from_secs(300))?;
            Ok(true)
        }
        Kill::After(ms) => {
            let mut child = c.stderr(Stdio::piped()).spawn()?;
            let stderr = child.stderr.take().context("stderr")?;
            // Drain stderr in the background so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut BufReader::new(stderr), &mut std::io::sink());
            });
            std::thread::sleep(Duration::from_millis(ms));
            let finished = child.try_wait()?.is_some();
            if !finished {
                child.kill()?;
            }
            child.wait()?;
            Ok(!finished)
        }
    }
}

/// Every `.relstitch*` or `.tmp*` entry under `dir` (recursively, not following links).
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with(".relstitch") || name.starts_with(".tmp") {
            out.push(path.clone());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(temporaries(&path));
        }
    }
    out
}

/// A checkpoint's meaning: its config (as JSON) and its weights' values by name.
type CheckpointState = (String, Vec<(String, Vec<f32>)>);
/// An embedding file's meaning: its vectors and its sorted metadata.
type EmbeddingsState = (Vec<Vec<f32>>, Vec<(String, String)>);

/// A checkpoint's meaning: its config and its weights' values.
fn checkpoint_state(dir: &Path) -> Result<CheckpointState> {
    let c = Checkpoint::load(dir)?;
    let mut w: Vec<(String, Vec<f32>)> = c
        .weights
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.flatten_all()?.to_vec1::<f32>()?)))
        .collect::<Result<_>>()?;
    w.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((serde_json::to_string(&c.config)?, w))
}

/// An embedding file's meaning: its vectors and its metadata.
fn embeddings_state(path: &Path) -> Result<EmbeddingsState> {
    let f = SafetensorsFile::read(path, &Device::Cpu)?;
    let mut meta: Vec<(String, String)> = f.metadata.into_iter().collect();
    meta.sort();
    let e = f
        .tensors
        .get("embeddings")
        .context("embeddings tensor")?
        .to_vec2::<f32>()?;
    Ok((e, meta))
}

/// Waits a moment so that temporaries left by a kill are older than the one-second grace period
/// during which a writer may not have locked them yet.
fn settle() {
    std::thread::sleep(Duration::from_millis(1100));
}

fn kills() -> Vec<Kill> {
    FAILPOINTS
        .iter()
        .map(|p| Kill::At(p))
        .chain(DELAYS_MS.iter().map(|&ms| Kill::After(ms)))
        .collect()
}

#[test]
fn fit_killed_anywhere_keeps_the_previous_checkpoint() -> Result<()> {
    let work = tempfile::tempdir()?;
    let home = work.path().join("home");
    let out = work.path().join("ckpt");
    run_ok(fit_command(&home, &out, "0"))?;
    let previous = checkpoint_state(&out)?;
    let reference = work.path().join("reference");
    run_ok(fit_command(&home, &reference, "1"))?;
    let new = checkpoint_state(&reference)?;
    std::fs::remove_dir_all(&reference)?;
    kill_everywhere(
        work.path(),
        &kills(),
        || fit_command(&home, &out, "1"),
        || run_ok(fit_command(&home, &out, "0")).map(drop),
        || checkpoint_state(&out),
        (&previous, &new),
    )
}

#[test]
fn embed_killed_anywhere_keeps_the_previous_output() -> Result<()> {
    let f = fixture();
    let work = tempfile::tempdir()?;
    let home = work.path().join("home");
    let out = work.path().join("e.safetensors");
    let texts_a = work.path().join("a.jsonl");
    let texts_b = work.path().join("b.jsonl");
    let train = std::fs::read_to_string(&f.train)?;
    let lines: Vec<&str> = train.lines().collect();
    std::fs::write(&texts_a, lines[..lines.len() / 2].join("\n"))?;
    std::fs::write(&texts_b, lines[lines.len() / 2..].join("\n"))?;
    let model = f.model.to_string_lossy().into_owned();
    let embed = |input: &Path, out: &Path| {
        command(
            RELSTITCH,
            &home,
            &[
                "embed",
                "--model",
                &model,
                "--input",
                &input.to_string_lossy(),
                "--output",
                &out.to_string_lossy(),
                "--quiet",
            ],
        )
    };
    run_ok(embed(&texts_a, &out))?;
    let previous = embeddings_state(&out)?;
    let reference = work.path().join("reference.safetensors");
    run_ok(embed(&texts_b, &reference))?;
    let new = embeddings_state(&reference)?;
    std::fs::remove_file(&reference)?;
    let kills = [
        Kill::At("atomic-write-synced"),
        Kill::After(300),
        Kill::After(1000),
        Kill::After(2000),
    ];
    kill_everywhere(
        work.path(),
        &kills,
        || embed(&texts_b, &out),
        || run_ok(embed(&texts_a, &out)).map(drop),
        || embeddings_state(&out),
        (&previous, &new),
    )?;
    // Output equal to the input is refused before anything is written.
    let before = std::fs::read(&texts_a)?;
    assert!(embed(&texts_a, &texts_a).output()?.status.code() != Some(0));
    assert_eq!(std::fs::read(&texts_a)?, before);
    Ok(())
}

#[test]
fn stitch_out_killed_anywhere_keeps_the_previous_checkpoint() -> Result<()> {
    let work = tempfile::tempdir()?;
    let home = work.path().join("home");
    let a = work.path().join("a");
    let b = work.path().join("b");
    run_ok(fit_command(&home, &a, "0"))?;
    run_ok(fit_command(&home, &b, "1"))?;
    let stitch = |enc: &Path, dec: &Path, out: &Path| {
        command(
            STITCH,
            &home,
            &[
                "--encoder-from",
                &enc.to_string_lossy(),
                "--decoder-from",
                &dec.to_string_lossy(),
                "--out",
                &out.to_string_lossy(),
            ],
        )
    };
    let out = work.path().join("stitched");
    run_ok(stitch(&a, &b, &out))?;
    let previous = checkpoint_state(&out)?;
    let reference = work.path().join("reference");
    run_ok(stitch(&b, &a, &reference))?;
    let new = checkpoint_state(&reference)?;
    std::fs::remove_dir_all(&reference)?;
    // `relstitch stitch` is the same command: same flags, the same checkpoint.
    run_ok(command(
        RELSTITCH,
        &home,
        &[
            "stitch",
            "--encoder-from",
            &b.to_string_lossy(),
            "--decoder-from",
            &a.to_string_lossy(),
            "--out",
            &reference.to_string_lossy(),
        ],
    ))?;
    assert_eq!(checkpoint_state(&reference)?, new);
    std::fs::remove_dir_all(&reference)?;
    kill_everywhere(
        work.path(),
        &kills(),
        || stitch(&b, &a, &out),
        || run_ok(stitch(&a, &b, &out)).map(drop),
        || checkpoint_state(&out),
        (&previous, &new),
    )?;
    // --out equal to one of the inputs is refused and the input stays as it was.
    let before = checkpoint_state(&a)?;
    let status = stitch(&a, &b, &a).stderr(Stdio::null()).status()?;
    assert!(!status.success());
    assert_eq!(checkpoint_state(&a)?, before);
    // A user's folder holding a config.json and data is never replaced.
    let user = work.path().join("user");
    std::fs::create_dir(&user)?;
    std::fs::write(user.join("config.json"), "{}")?;
    std::fs::write(user.join("data.csv"), "x,y\n1,2\n")?;
    let status = stitch(&a, &b, &user).stderr(Stdio::null()).status()?;
    assert!(!status.success());
    assert_eq!(
        std::fs::read_to_string(user.join("data.csv"))?,
        "x,y\n1,2\n"
    );
    Ok(())
}
