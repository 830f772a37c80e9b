//! Downloading a model from the Hugging Face Hub into the Hugging Face cache ([`super::hf_cache`]).
//!
//! What happens, with the endpoints and headers the Hub (and `huggingface_hub`) use:
//!
//! 1. `GET {endpoint}/api/models/{repo}/revision/{revision}` gives the commit the revision (a
//!    branch, a tag or a commit) points to and the repository's file list (the relative redirect
//!    of a renamed repository is followed; the cache keeps the name asked for, as
//!    `huggingface_hub` does). 401/403 mean the model is gated or private (set `HF_TOKEN`), 404
//!    that the id or revision does not exist.
//! 2. For each file a model folder needs ([`super::hf_cache::wanted_files`]), at that commit:
//!    `HEAD {endpoint}/{repo}/resolve/{commit}/{file}` without following redirects gives its etag
//!    (`x-linked-etag` for LFS files, which is their sha256, else `etag`), its size
//!    (`x-linked-size`, else `content-length`) and, for LFS files, a redirect to where the bytes
//!    are (relative redirects of renamed repositories are followed).
//! 3. The bytes go to `blobs/<etag>.incomplete`, locked against a second process. A transfer that
//!    breaks off is resumed with a `Range` request (at most [`HubConfig::retries`] times; a later
//!    run resumes from the same file). A server that ignores the range makes it start again.
//! 4. The file must have its size, and an LFS file its sha256; one that does not is deleted and
//!    refused ([`HubFailure::Integrity`]). Only then is it renamed to `blobs/<etag>` and linked
//!    from `snapshots/<commit>/<file>`; `refs/<revision>` records the commit.
//!
//! `hf-hub` 0.5's sync client does steps 2–3 but reads no `HF_TOKEN`, knows no offline mode and
//! renames a `.part` file into the cache without checking its sha256, so relstitch does the
//! transfer itself on the same HTTP client (`ureq` 3).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::hf_cache::{is_commit, wanted_files, HubConfig, Snapshot};
use crate::error::HubFailure;
use crate::{Error, Result};

/// Redirects followed at most, per request.
const MAX_REDIRECTS: usize = 5;

/// A client for one repository at one revision.
struct Client<'a> {
    config: &'a HubConfig,
    agent: ureq::Agent,
    repo: &'a str,
    /// The repository as the user named it (`org/name@revision`), for messages.
    label: String,
}

/// What `HEAD …/resolve/…` says about a file.
struct FileMeta {
    etag: String,
    size: Option<u64>,
    /// Where to GET the bytes.
    url: String,
}

/// The response of the revision endpoint.
#[derive(serde::Deserialize)]
struct RevisionInfo {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(serde::Deserialize)]
struct Sibling {
    rfilename: String,
}

/// Percent-encodes a path segment (everything but unreserved characters).
fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a file path, keeping its `/`.
fn encode_path(s: &str) -> String {
    s.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// The scheme and authority of a URL (`http://127.0.0.1:8080`).
fn origin(url: &str) -> &str {
    let after = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after..].find('/') {
        Some(i) => &url[..after + i],
        None => url,
    }
}

/// Whether an endpoint is this machine (no proxy is used for it).
fn is_loopback(url: &str) -> bool {
    let host = origin(url).split("://").nth(1).unwrap_or("");
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

impl<'a> Client<'a> {
    fn new(config: &'a HubConfig, repo: &'a str, revision: &str) -> Self {
        let mut builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(20)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            // Sizes are compared with the bytes on disk: no compressed transfer.
            .accept_encoding("identity")
            .user_agent(format!("relstitch/{}", env!("CARGO_PKG_VERSION")));
        if is_loopback(&config.endpoint) {
            builder = builder.proxy(None);
        }
        Self {
            config,
            agent: builder.build().new_agent(),
            repo,
            label: format!("{repo}@{revision}"),
        }
    }

    fn err(&self, file: Option<&str>, kind: HubFailure, reason: impl Into<String>) -> Error {
        Error::Hub {
            repo: self.label.clone(),
            file: file.map(str::to_string),
            kind,
            reason: reason.into(),
        }
    }

    /// A request to `url`, with the token when it goes to the Hub itself (never to the host a
    /// download is redirected to).
    fn request(
        &self,
        method: &str,
        url: &str,
    ) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let req = match method {
            "HEAD" => self.agent.head(url),
            _ => self.agent.get(url),
        };
        match &self.config.token {
            Some(t) if origin(url) == origin(&self.config.endpoint) => {
                req.header("Authorization", format!("Bearer {t}"))
            }
            _ => req,
        }
    }

    /// The error for an HTTP status that is not success.
    fn status_error(&self, file: Option<&str>, status: u16) -> Error {
        match status {
            401 | 403 => self.err(
                file,
                HubFailure::Unauthorized,
                format!(
                    "the Hub answered {status}: the model is gated or private. {}",
                    if self.config.token.is_some() {
                        "The token in HF_TOKEN (or the token file) has no access: accept the model's terms on its Hub page, or use a token that can read it"
                    } else {
                        "Set HF_TOKEN to an access token (https://huggingface.co/settings/tokens) that can read it"
                    }
                ),
            ),
            404 => self.err(
                file,
                HubFailure::NotFound,
                format!(
                    "the Hub answered 404: no such {}; check the id and the revision{}",
                    if file.is_some() { "file" } else { "repository or revision" },
                    if self.config.token.is_none() {
                        " (a private model also answers 404 without HF_TOKEN)"
                    } else {
                        ""
                    }
                ),
            ),
            _ => self.err(file, HubFailure::Network, format!("the Hub answered HTTP {status}")),
        }
    }

    fn network_error(&self, file: Option<&str>, e: &ureq::Error) -> Error {
        self.err(
            file,
            HubFailure::Network,
            format!(
                "cannot reach {} ({e}); check the network (or HF_ENDPOINT), or set HF_HUB_OFFLINE=1 and use a model already in the cache",
                self.config.endpoint
            ),
        )
    }

    /// Step 1: the commit of `revision` and the file list.
    fn revision(&self, revision: &str) -> Result<RevisionInfo> {
        let url = format!(
            "{}/api/models/{}/revision/{}",
            self.config.endpoint,
            self.repo,
            encode_segment(revision)
        );
        let mut url = url;
        let mut redirects = 0;
        let mut resp = loop {
            let resp = self
                .request("GET", &url)
                .call()
                .map_err(|e| self.network_error(None, &e))?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .filter(|l| l.starts_with('/'));
            // A renamed repository answers with a relative redirect to its new name.
            match location {
                Some(l) if (300..400).contains(&status) && redirects < MAX_REDIRECTS => {
                    url = format!("{}{l}", origin(&self.config.endpoint));
                    redirects += 1;
                }
                _ if status == 200 => break resp,
                _ => return Err(self.status_error(None, status)),
            }
        };
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| self.network_error(None, &e))?;
        let info: RevisionInfo = serde_json::from_str(&text).map_err(|e| {
            self.err(
                None,
                HubFailure::Network,
                format!("the revision endpoint's answer is not what the Hub sends ({e})"),
            )
        })?;
        if !is_commit(&info.sha) {
            return Err(self.err(
                None,
                HubFailure::Network,
                format!("the Hub named commit `{}`, not a 40-digit hash", info.sha),
            ));
        }
        Ok(info)
    }

    /// Step 2: the etag, size and download address of `file` at `commit`.
    fn metadata(&self, commit: &str, file: &str) -> Result<FileMeta> {
        let mut url = format!(
            "{}/{}/resolve/{commit}/{}",
            self.config.endpoint,
            self.repo,
            encode_path(file)
        );
        for _ in 0..=MAX_REDIRECTS {
            let resp = self
                .request("HEAD", &url)
                .call()
                .map_err(|e| self.network_error(Some(file), &e))?;
            let status = resp.status().as_u16();
            let header = |k: &str| {
                resp.headers()
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let location = header("location");
            // A relative redirect (a renamed repository) is followed for the metadata too.
            if (300..400).contains(&status)
                && location.as_deref().is_some_and(|l| l.starts_with('/'))
            {
                url = format!(
                    "{}{}",
                    origin(&self.config.endpoint),
                    location.unwrap_or_default()
                );
                continue;
            }
            if !(200..400).contains(&status) {
                return Err(self.status_error(Some(file), status));
            }
            if let Some(c) = header("x-repo-commit") {
                if c != commit {
                    return Err(self.err(
                        Some(file),
                        HubFailure::Network,
                        format!("asked for commit {commit}, the Hub answered with {c}"),
                    ));
                }
            }
            let etag = header("x-linked-etag")
                .or_else(|| header("etag"))
                .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
                .filter(|e| !e.is_empty() && !e.contains('/') && !e.contains(".."))
                .ok_or_else(|| {
                    self.err(
                        Some(file),
                        HubFailure::Network,
                        "the Hub sent no usable etag; relstitch cannot file it in the cache",
                    )
                })?;
            let size = header("x-linked-size")
                .or_else(|| header("content-length"))
                .and_then(|s| s.parse().ok());
            let url = match location {
                Some(l) if (300..400).contains(&status) => {
                    if l.starts_with('/') {
                        format!("{}{l}", origin(&self.config.endpoint))
                    } else {
                        l
                    }
                }
                _ => url,
            };
            return Ok(FileMeta { etag, size, url });
        }
        Err(self.err(
            Some(file),
            HubFailure::Network,
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }

    /// One GET of `meta.url` from byte `from` on, appended to `out`; follows absolute redirects
    /// (a CDN). Returns whether the transfer completed (the body ended normally).
    fn transfer(
        &self,
        file: &str,
        meta: &FileMeta,
        out: &mut std::fs::File,
        bar: &indicatif::ProgressBar,
    ) -> Result<std::result::Result<(), String>> {
        let from = out.seek(SeekFrom::End(0)).map_err(|e| Error::io(file, e))?;
        let mut url = meta.url.clone();
        let mut resp = None;
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.request("GET", &url);
            if from > 0 {
                req = req.header("Range", format!("bytes={from}-"));
            }
            let r = match req.call() {
                Ok(r) => r,
                Err(e) => return Ok(Err(e.to_string())),
            };
            let status = r.status().as_u16();
            if (300..400).contains(&status) {
                let location = r
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                url = if location.starts_with('/') {
                    format!("{}{location}", origin(&url))
                } else {
                    location
                };
                continue;
            }
            resp = Some(r);
            break;
        }
        let Some(resp) = resp else {
            return Err(self.err(
                Some(file),
                HubFailure::Network,
                format!("more than {MAX_REDIRECTS} redirects"),
            ));
        };
        match resp.status().as_u16() {
            206 if from > 0 => {
                let start = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start != Some(from) {
                    // Not the range asked for: start again.
                    out.set_len(0).map_err(|e| Error::io(file, e))?;
                    return Ok(Err(format!("the server sent range {start:?}, not {from}-")));
                }
            }
            200 => {
                // The server ignored the range (or none was asked): start from the beginning.
                if from > 0 {
                    out.set_len(0).map_err(|e| Error::io(file, e))?;
                    out.seek(SeekFrom::Start(0))
                        .map_err(|e| Error::io(file, e))?;
                    bar.set_position(0);
                }
            }
            416 if meta.size == Some(from) => return Ok(Ok(())),
            416 => {
                out.set_len(0).map_err(|e| Error::io(file, e))?;
                return Ok(Err("the server refused the range".into()));
            }
            s => return Err(self.status_error(Some(file), s)),
        }
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(Ok(())),
                Ok(n) => {
                    out.write_all(&buf[..n]).map_err(|e| Error::io(file, e))?;
                    bar.inc(n as u64);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Ok(Err(e.to_string())),
            }
        }
    }

    /// Steps 2–4 for one file: the path of its snapshot link when done.
    fn fetch_file(&self, commit: &str, file: &str) -> Result<PathBuf> {
        let repo_dir = self.config.repo_dir(self.repo);
        let pointer = repo_dir.join("snapshots").join(commit).join(file);
        if pointer.is_file() {
            return Ok(pointer);
        }
        let meta = self.metadata(commit, file)?;
        let blobs = repo_dir.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(|e| Error::io(&blobs, e))?;
        let blob = blobs.join(&meta.etag);
        if !blob.is_file() {
            self.download_blob(file, &meta, &blob)?;
        }
        link(&blob, &pointer)?;
        Ok(pointer)
    }

    /// Downloads one blob through its `.incomplete` file, resuming, then checks and renames it.
    fn download_blob(&self, file: &str, meta: &FileMeta, blob: &Path) -> Result<()> {
        let partial = PathBuf::from(format!("{}.incomplete", blob.display()));
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&partial)
            .map_err(|e| Error::io(&partial, e))?;
        // Another relstitch (or Python) process on the same file waits here.
        out.lock().map_err(|e| Error::io(&partial, e))?;
        if blob.is_file() {
            // The other process finished it while this one waited.
            drop(out);
            let _ = std::fs::remove_file(&partial);
            return Ok(());
        }
        let have = out.metadata().map_err(|e| Error::io(&partial, e))?.len();
        if meta.size.is_some_and(|s| have > s) {
            out.set_len(0).map_err(|e| Error::io(&partial, e))?;
        }
        let bar = self.bar(file, meta.size);
        bar.set_position(out.metadata().map(|m| m.len()).unwrap_or(0));
        let mut attempt = 0;
        loop {
            let outcome = self.transfer(file, meta, &mut out, &bar)?;
            let len = out.metadata().map_err(|e| Error::io(&partial, e))?.len();
            let complete = match (meta.size, &outcome) {
                (Some(s), _) => len == s,
                (None, Ok(())) => true,
                (None, Err(_)) => false,
            };
            if complete {
                break;
            }
            if meta.size.is_some_and(|s| len > s) {
                drop(out);
                let _ = std::fs::remove_file(&partial);
                return Err(self.err(
                    Some(file),
                    HubFailure::Integrity,
                    format!(
                        "the server sent {len} bytes, more than the {} it announced; the file was discarded",
                        meta.size.unwrap_or(0)
                    ),
                ));
            }
            attempt += 1;
            if attempt > self.config.retries {
                bar.abandon();
                return Err(self.err(
                    Some(file),
                    HubFailure::Interrupted,
                    format!(
                        "the transfer broke off at {len} of {} bytes ({}) and {} retries did not finish it; \
                         run the command again to resume from {}",
                        meta.size.map(|s| s.to_string()).unwrap_or_else(|| "?".into()),
                        outcome.err().unwrap_or_else(|| "the body ended early".into()),
                        self.config.retries,
                        partial.display()
                    ),
                ));
            }
            tracing::warn!(file, len, attempt, "the transfer broke off; resuming");
            std::thread::sleep(Duration::from_millis(200 * attempt as u64));
        }
        bar.finish_and_clear();
        out.flush().map_err(|e| Error::io(&partial, e))?;
        // An LFS file's etag is its sha256: check every byte before the file is used.
        if meta.etag.len() == 64 && meta.etag.bytes().all(|b| b.is_ascii_hexdigit()) {
            let actual = sha256_of(&partial)?;
            if !actual.eq_ignore_ascii_case(&meta.etag) {
                drop(out);
                let _ = std::fs::remove_file(&partial);
                return Err(self.err(
                    Some(file),
                    HubFailure::Integrity,
                    format!(
                        "the bytes received have sha256 {actual}, not the {} the Hub announced; the file was discarded, try again",
                        meta.etag
                    ),
                ));
            }
        }
        out.sync_all().map_err(|e| Error::io(&partial, e))?;
        std::fs::rename(&partial, blob).map_err(|e| Error::io(blob, e))?;
        drop(out);
        Ok(())
    }

    fn bar(&self, file: &str, size: Option<u64>) -> indicatif::ProgressBar {
        if !self.config.progress {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(size.unwrap_or(0));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg:>24} {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        ) {
            bar.set_style(style);
        }
        bar.set_message(file.to_string());
        bar
    }
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Links `pointer` to `blob` with a relative symbolic link, as `huggingface_hub` does (a copy
/// where links are not available).
fn link(blob: &Path, pointer: &Path) -> Result<()> {
    let parent = pointer.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let _ = std::fs::remove_file(pointer);
    #[cfg(unix)]
    {
        // snapshots/<commit>/<a>/<b> → ../../../blobs/<etag>: up from the file's folder to the
        // repository folder.
        let depth = pointer
            .strip_prefix(
                blob.parent()
                    .and_then(Path::parent)
                    .unwrap_or(Path::new("")),
            )
            .map(|p| p.components().count().saturating_sub(1))
            .unwrap_or(2);
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(blob.file_name().unwrap_or_default());
        std::os::unix::fs::symlink(&target, pointer).map_err(|e| Error::io(pointer, e))
    }
    #[cfg(not(unix))]
    {
        std::fs::copy(blob, pointer)
            .map(|_| ())
            .map_err(|e| Error::io(pointer, e))
    }
}

/// Downloads what a model folder needs of `repo` at `revision` into the cache of `config`, and
/// returns the snapshot. Files already in the snapshot are not downloaded again.
///
/// # Errors
/// [`Error::Hub`] with [`HubFailure::Offline`] when `config.offline`; with
/// [`HubFailure::Unauthorized`], [`HubFailure::NotFound`] or [`HubFailure::Network`] when the Hub
/// refuses or cannot be reached; [`HubFailure::Integrity`] when a file does not have its size or
/// sha256 (it is deleted); [`HubFailure::Interrupted`] when transfers keep breaking off (the
/// partial file is kept and resumed next time); [`Error::Io`] when the cache cannot be written.
pub fn download(config: &HubConfig, repo: &str, revision: &str) -> Result<Snapshot> {
    let client = Client::new(config, repo, revision);
    if config.offline {
        return Err(client.err(
            None,
            HubFailure::Offline,
            format!(
                "HF_HUB_OFFLINE is set and the model is not (completely) in the cache {}; \
                 unset HF_HUB_OFFLINE to download it, or copy a cache that has it",
                config.cache.display()
            ),
        ));
    }
    let info = client.revision(revision)?;
    let siblings: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
    if !siblings.iter().any(|f| f == "config.json") {
        return Err(client.err(
            None,
            HubFailure::NotFound,
            "the repository has no config.json: not a transformers model",
        ));
    }
    let commit = info.sha;
    // modules.json first: it names the module folders to download.
    let mut modules = Vec::new();
    if siblings.iter().any(|f| f == "modules.json") {
        let path = client.fetch_file(&commit, "modules.json")?;
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let list: Vec<serde_json::Value> =
            serde_json::from_str(&text).map_err(|source| Error::Json {
                path: path.clone(),
                hint: "the model's modules.json is not valid JSON".into(),
                source,
            })?;
        modules = list
            .iter()
            .filter_map(|m| m.get("path").and_then(|p| p.as_str()).map(str::to_string))
            .collect();
    }
    let files = wanted_files(&siblings, &modules);
    tracing::info!(
        repo,
        revision,
        commit,
        files = files.len(),
        "downloading from the Hub"
    );
    for f in &files {
        client.fetch_file(&commit, f)?;
    }
    if !is_commit(revision) || revision != commit {
        let refs = config.repo_dir(repo).join("refs").join(revision);
        crate::io::write_atomic(&refs, commit.as_bytes())?;
    }
    Ok(Snapshot {
        dir: config.repo_dir(repo).join("snapshots").join(&commit),
        commit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_built_and_taken_apart_like_the_hub_does() {
        assert_eq!(encode_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode_segment("v1.0_x-y~"), "v1.0_x-y~");
        assert_eq!(encode_path("2_Dense/config.json"), "2_Dense/config.json");
        assert_eq!(encode_path("a b/c"), "a%20b/c");
        assert_eq!(
            origin("https://huggingface.co/org/m/resolve/main/x"),
            "https://huggingface.co"
        );
        assert_eq!(origin("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert!(is_loopback("http://127.0.0.1:8080/x") && is_loopback("http://localhost"));
        assert!(!is_loopback("https://huggingface.co"));
    }

    #[test]
    fn snapshot_links_point_into_blobs() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let repo = dir.path().join("models--o--m");
        let blob = repo.join("blobs").join("abc");
        std::fs::create_dir_all(blob.parent().unwrap_or(dir.path()))?;
        std::fs::write(&blob, "x")?;
        for f in ["config.json", "2_Dense/config.json"] {
            let pointer = repo.join("snapshots").join("c0ffee").join(f);
            link(&blob, &pointer)?;
            assert_eq!(std::fs::read_to_string(&pointer)?, "x");
        }
        Ok(())
    }
}
