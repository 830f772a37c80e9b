//! Throughput benchmark: relstitch against sentence-transformers (PyTorch) in the same run.
//!
//! Both sides embed the same real texts with the same batch size and thread count; the peer runs as
//! a child process (`scripts/bench/st_throughput.py`) so that the two never share a thread pool.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::encoder::Encoder;
use crate::{Error, Result};

/// One side's measurement.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Throughput {
    /// Which implementation.
    #[serde(rename = "impl")]
    pub implementation: String,
    /// Texts embedded per run.
    pub texts: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Threads.
    pub threads: usize,
    /// Best wall time of the timed runs, in seconds.
    pub seconds: f64,
    /// `texts / seconds`.
    pub texts_per_s: f64,
}

/// Times `encoder.embed(texts)`: one warm-up run, then the best of `repeats`.
///
/// # Errors
/// The errors of [`Encoder::embed`] (e.g. [`Error::InvalidArgument`] for empty `texts`).
pub fn time_relstitch(
    encoder: &Encoder,
    texts: &[String],
    batch_size: usize,
    threads: usize,
    repeats: usize,
) -> Result<Throughput> {
    encoder.embed(texts)?;
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        encoder.embed(texts)?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(Throughput {
        implementation: format!("relstitch {}", env!("CARGO_PKG_VERSION")),
        texts: texts.len(),
        batch_size,
        threads,
        seconds: best,
        texts_per_s: texts.len() as f64 / best,
    })
}

/// Runs the sentence-transformers peer on the same model folder and texts file, and parses its
/// one line of JSON.
///
/// # Errors
/// [`Error::Fetch`] (naming the "sentence-transformers peer") when `python` cannot be run, the
/// script exits with a failure, or its output holds no valid JSON line.
#[allow(clippy::too_many_arguments)]
pub fn time_sentence_transformers(
    python: &str,
    script: &Path,
    model_dir: &Path,
    texts_file: &Path,
    batch_size: usize,
    threads: usize,
    repeats: usize,
) -> Result<Throughput> {
    let out = Command::new(python)
        .arg(script)
        .arg("--model-dir")
        .arg(model_dir)
        .arg("--texts")
        .arg(texts_file)
        .args(["--batch-size", &batch_size.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--repeats", &repeats.to_string()])
        .output()
        .map_err(|e| Error::Fetch {
            what: "sentence-transformers peer".into(),
            reason: format!("cannot run `{python} {}` ({e}); pass --python with an interpreter that has sentence-transformers", script.display()),
        })?;
    if !out.status.success() {
        return Err(Error::Fetch {
            what: "sentence-transformers peer".into(),
            reason: format!(
                "`{python} {}` failed ({}): {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ),
        });
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    let mut t: Throughput = serde_json::from_str(line).map_err(|e| Error::Fetch {
        what: "sentence-transformers peer".into(),
        reason: format!("its output is not the expected JSON line ({e}): {line}"),
    })?;
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        let version = v.get("version").and_then(|x| x.as_str()).unwrap_or("?");
        let torch = v.get("torch").and_then(|x| x.as_str()).unwrap_or("?");
        t.implementation = format!("sentence-transformers {version} (torch {torch})");
    }
    Ok(t)
}
