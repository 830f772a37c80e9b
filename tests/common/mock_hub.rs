//! A local stand-in for the Hugging Face Hub: an HTTP/1.1 server on 127.0.0.1 that serves model
//! folders the way huggingface.co does, for the download tests (`tests/hub_mock.rs`).
//!
//! - `GET /api/models/{repo}/revision/{rev}`: `{"id", "sha", "siblings": [{"rfilename"}]}`.
//! - `HEAD|GET /{repo}/resolve/{rev}/{file}`: `x-repo-commit`, `etag`; LFS files (`*.safetensors`,
//!   `*.bin`) answer `302` to `{cdn}/cdn/{sha256}` with `x-linked-etag: "<sha256>"` and
//!   `x-linked-size`, small files answer `200` with the bytes.
//! - `GET {cdn}/cdn/{sha256}`: the bytes, from a second port (another origin, like the Hub's
//!   CDN: no token needed, and one sent there is logged), `Range: bytes=N-` answered with `206`.
//!
//! Faults on demand: a token (`401` without it), transfers cut after some bytes, a file whose
//! bytes do not match its etag. Every request is logged. Loopback only; each loop is bounded.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// One revision of the served repository.
#[derive(Clone)]
pub struct Revision {
    /// Branch and tag names that point to it.
    pub names: Vec<String>,
    /// Its commit (40 hex digits).
    pub commit: String,
    /// File path → bytes.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Revision {
    /// The files of a model folder (recursively; relstitch's own files left out).
    pub fn from_dir(names: &[&str], commit: &str, dir: &Path) -> std::io::Result<Self> {
        let mut files = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)? {
                let p = e?.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p
                        .strip_prefix(dir)
                        .map_err(std::io::Error::other)?
                        .to_string_lossy()
                        .replace('\\', "/");
                    if !rel.starts_with("relstitch-") && !rel.starts_with('.') {
                        files.insert(rel, std::fs::read(&p)?);
                    }
                }
            }
        }
        Ok(Self {
            names: names.iter().map(|s| s.to_string()).collect(),
            commit: commit.into(),
            files,
        })
    }
}

/// What the server does, changeable while it runs.
#[derive(Default)]
pub struct Behaviour {
    /// The token requests to the Hub (not the CDN) must carry.
    pub token: Option<String>,
    /// File name → how many more transfers of it to cut.
    pub cuts: BTreeMap<String, usize>,
    /// Bytes sent before a cut.
    pub cut_after: usize,
    /// Files whose bytes are served with one byte changed (the etag stays the true sha256).
    pub corrupt: Vec<String>,
    /// The repository's old name: requests for it answer `307` to the same path under the
    /// current name, as the Hub does for a renamed repository.
    pub renamed_from: Option<String>,
}

struct State {
    repo: String,
    /// The CDN's address, `http://127.0.0.1:PORT2`.
    cdn: String,
    revisions: Vec<Revision>,
    behaviour: Behaviour,
    log: Vec<String>,
}

/// The running server; stopped when dropped.
pub struct MockHub {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The CDN's address (another port).
    pub cdn: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn is_lfs(file: &str) -> bool {
    file.ends_with(".safetensors") || file.ends_with(".bin")
}

/// Connections served at most (a bound on the accept loop).
const MAX_CONNECTIONS: usize = 10_000;

impl MockHub {
    /// Serves `repo` with `revisions` on a free loopback port.
    pub fn start(repo: &str, revisions: Vec<Revision>) -> std::io::Result<Self> {
        let hub = TcpListener::bind("127.0.0.1:0")?;
        let cdn = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", hub.local_addr()?);
        let cdn_url = format!("http://{}", cdn.local_addr()?);
        let state = Arc::new(Mutex::new(State {
            repo: repo.into(),
            cdn: cdn_url.clone(),
            revisions,
            behaviour: Behaviour::default(),
            log: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = [hub, cdn]
            .into_iter()
            .map(|listener| {
                let (s, st) = (state.clone(), stop.clone());
                std::thread::spawn(move || {
                    for conn in listener.incoming().take(MAX_CONNECTIONS) {
                        if st.load(Ordering::SeqCst) {
                            break;
                        }
                        if let Ok(c) = conn {
                            let _ = serve(c, &s);
                        }
                    }
                })
            })
            .collect();
        Ok(Self {
            url,
            cdn: cdn_url,
            state,
            stop,
            threads,
        })
    }

    /// Changes what the server does.
    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s.behaviour);
        }
    }

    /// The requests so far: `METHOD path [range]`.
    pub fn log(&self) -> Vec<String> {
        self.state.lock().map(|s| s.log.clone()).unwrap_or_default()
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loops.
        for u in [&self.url, &self.cdn] {
            let _ = TcpStream::connect(u.trim_start_matches("http://"));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Close the connection after this many body bytes.
    cut: Option<usize>,
}

impl Reply {
    fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            cut: None,
        }
    }
    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    fn body(mut self, b: Vec<u8>) -> Self {
        self.body = b;
        self
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = BTreeMap::new();
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let range = headers.get("range").cloned();
    let reply = {
        let mut s = state
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        s.log.push(format!(
            "{method} {path}{}{}",
            if headers.contains_key("authorization") {
                " [token]"
            } else {
                ""
            },
            range
                .as_deref()
                .map(|r| format!(" {r}"))
                .unwrap_or_default()
        ));
        route(&mut s, &method, &path, &headers)
    };
    let mut out = stream;
    let reason = match reply.status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Other",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        if reply.headers.iter().any(|(k, _)| k == "content-length") {
            String::new()
        } else {
            reply.body.len().to_string()
        }
    ));
    // A HEAD reply carries the length it would have, without the body.
    let head = head.replace("content-length: \r\n", "");
    out.write_all(head.as_bytes())?;
    if method != "HEAD" {
        let n = reply.cut.unwrap_or(reply.body.len()).min(reply.body.len());
        out.write_all(&reply.body[..n])?;
    }
    out.flush()?;
    // Drain what the client still sends, then close.
    let _ = reader
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(10)));
    let mut sink = [0u8; 256];
    let _ = reader.read(&mut sink);
    Ok(())
}

fn route(s: &mut State, method: &str, path: &str, headers: &BTreeMap<String, String>) -> Reply {
    let authorised = match &s.behaviour.token {
        None => true,
        Some(t) => headers.get("authorization") == Some(&format!("Bearer {t}")),
    };
    if let Some(old) = &s.behaviour.renamed_from {
        for prefix in [format!("/api/models/{old}/"), format!("/{old}/resolve/")] {
            if let Some(rest) = path.strip_prefix(&prefix) {
                let new = prefix.replace(old.as_str(), &s.repo);
                return Reply::new(307).header("location", format!("{new}{rest}"));
            }
        }
    }
    let api = format!("/api/models/{}/revision/", s.repo);
    let resolve = format!("/{}/resolve/", s.repo);
    if let Some(rev) = path.strip_prefix(&api) {
        if !authorised {
            return Reply::new(401).header("x-error-code", "GatedRepo");
        }
        let rev = rev.replace("%2F", "/");
        let Some(r) = find(s, &rev) else {
            return Reply::new(404).header("x-error-code", "RevisionNotFound");
        };
        let siblings: Vec<serde_json::Value> = r
            .files
            .keys()
            .map(|f| serde_json::json!({"rfilename": f}))
            .collect();
        let body = serde_json::json!({"id": s.repo, "sha": r.commit, "siblings": siblings});
        return Reply::new(200)
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes());
    }
    if let Some(rest) = path.strip_prefix(&resolve) {
        if !authorised {
            return Reply::new(401).header("x-error-code", "GatedRepo");
        }
        let Some((rev, file)) = rest.split_once('/') else {
            return Reply::new(404);
        };
        let Some(r) = find(s, rev) else {
            return Reply::new(404).header("x-error-code", "RevisionNotFound");
        };
        let Some(bytes) = r.files.get(file) else {
            return Reply::new(404).header("x-error-code", "EntryNotFound");
        };
        let sha = sha256(bytes);
        let commit = r.commit.clone();
        if is_lfs(file) {
            return Reply::new(302)
                .header("x-repo-commit", commit)
                .header("x-linked-etag", format!("\"{sha}\""))
                .header("x-linked-size", bytes.len().to_string())
                .header("etag", format!("\"{}\"", &sha[..40]))
                .header("location", format!("{}/cdn/{sha}?file={file}", s.cdn));
        }
        let body = bytes.clone();
        let reply = Reply::new(200)
            .header("x-repo-commit", commit)
            .header("etag", format!("\"{}\"", &sha[..40]));
        return if method == "HEAD" {
            reply.header("content-length", body.len().to_string())
        } else {
            ranged(reply, body, headers)
        };
    }
    if let Some(rest) = path.strip_prefix("/cdn/") {
        let (sha, file) = rest.split_once("?file=").unwrap_or((rest, ""));
        let found = s
            .revisions
            .iter()
            .flat_map(|r| r.files.values())
            .find(|b| sha256(b) == sha)
            .cloned();
        let Some(mut body) = found else {
            return Reply::new(404);
        };
        if s.behaviour.corrupt.iter().any(|c| c == file) {
            let middle = body.len() / 2;
            if let Some(b) = body.get_mut(middle) {
                *b ^= 0xff;
            }
        }
        let mut reply = ranged(
            Reply::new(200).header("etag", format!("\"{sha}\"")),
            body,
            headers,
        );
        let cut_after = s.behaviour.cut_after;
        if let Some(n) = s.behaviour.cuts.get_mut(file).filter(|n| **n > 0) {
            *n -= 1;
            reply.cut = Some(cut_after);
        }
        return reply;
    }
    Reply::new(404)
}

/// The reply with `body`, or the part a `Range: bytes=N-` asks for.
fn ranged(reply: Reply, body: Vec<u8>, headers: &BTreeMap<String, String>) -> Reply {
    let start = headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    match start {
        Some(n) if n >= body.len() => Reply::new(416),
        Some(n) => {
            let len = body.len();
            let mut r = reply.body(body[n..].to_vec());
            r.status = 206;
            r.header("content-range", format!("bytes {n}-{}/{len}", len - 1))
        }
        None => reply.body(body),
    }
}

fn find<'a>(s: &'a State, rev: &str) -> Option<&'a Revision> {
    s.revisions
        .iter()
        .find(|r| r.commit == rev || r.names.iter().any(|n| n == rev))
}
