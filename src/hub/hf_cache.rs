//! The Hugging Face cache, read and written in the layout `huggingface_hub` (Python) and `hf-hub`
//! (Rust) use, so that a model downloaded by sentence-transformers is found here and the other way
//! round:
//!
//! ```text
//! $HF_HUB_CACHE (default $HF_HOME/hub, $HF_HOME default ~/.cache/huggingface)
//! └── models--ORG--NAME/
//!     ├── blobs/<etag>                  file contents, named by their etag (sha256 for LFS files)
//!     ├── refs/<branch or tag>          the commit it points to
//!     └── snapshots/<commit>/<file>     a symbolic link to ../../blobs/<etag>
//! ```
//!
//! Also the Hub's environment variables: `HF_ENDPOINT`, `HF_TOKEN` (or `$HF_HOME/token`),
//! `HF_HUB_OFFLINE`.

use std::path::{Path, PathBuf};

/// Where the Hub is and how to talk to it, read from the environment by [`HubConfig::from_env`].
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The Hub's address, without a trailing `/` (`HF_ENDPOINT`, default `https://huggingface.co`).
    pub endpoint: String,
    /// The cache folder (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub cache: PathBuf,
    /// The access token for gated and private models (`HF_TOKEN`, else the `token` file of
    /// `$HF_HOME`, as `huggingface-cli login` writes it).
    pub token: Option<String>,
    /// No network at all (`HF_HUB_OFFLINE=1`): only the cache is used.
    pub offline: bool,
    /// Shows a progress bar per file on stderr.
    pub progress: bool,
    /// How many times a broken transfer is resumed before giving up.
    pub retries: usize,
}

/// The default Hub address.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

/// Whether an environment flag's value means "on" (`1`, `true`, `yes`, `on`).
fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

impl HubConfig {
    /// Reads `HF_ENDPOINT`, `HF_HOME`, `HF_HUB_CACHE`, `HF_TOKEN` (or `HUGGING_FACE_HUB_TOKEN`, or
    /// the token file) and `HF_HUB_OFFLINE`; progress on, three retries.
    pub fn from_env() -> Self {
        let home = env("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            env("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| dirs::home_dir().map(|h| h.join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("huggingface")
        });
        let cache = env("HF_HUB_CACHE")
            .or_else(|| env("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("hub"));
        let token_file = env("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("token"));
        let token = env("HF_TOKEN")
            .or_else(|| env("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| {
                std::fs::read_to_string(token_file)
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
            });
        Self {
            endpoint: env("HF_ENDPOINT")
                .unwrap_or_else(|| DEFAULT_ENDPOINT.into())
                .trim_end_matches('/')
                .to_string(),
            cache,
            token,
            offline: env("HF_HUB_OFFLINE").is_some_and(|v| truthy(&v)),
            progress: true,
            retries: 3,
        }
    }

    /// The same, at another Hub address (a trailing `/` is dropped).
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into().trim_end_matches('/').to_string();
        self
    }

    /// The same, with another cache folder.
    #[must_use]
    pub fn with_cache(mut self, cache: impl Into<PathBuf>) -> Self {
        self.cache = cache.into();
        self
    }

    /// The same, with another token (`None`: anonymous).
    #[must_use]
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// The same, offline or not.
    #[must_use]
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// The same, with or without progress bars.
    #[must_use]
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// The same, resuming a broken transfer at most `n` times.
    #[must_use]
    pub fn with_retries(mut self, n: usize) -> Self {
        self.retries = n;
        self
    }

    /// The cache folder of a model repository: `models--ORG--NAME`.
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache
            .join(format!("models--{}", repo.replace('/', "--")))
    }
}

/// A model's files at one commit, in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// `snapshots/<commit>/`: a model folder.
    pub dir: PathBuf,
    /// The commit.
    pub commit: String,
}

/// Whether `s` looks like a full git commit hash (40 hexadecimal digits).
pub fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The cached snapshot of `repo` at `revision` (a branch or tag through `refs/`, or a commit), if
/// it is complete enough to load (see [`snapshot_is_complete`]).
pub fn cached_snapshot(config: &HubConfig, repo: &str, revision: &str) -> Option<Snapshot> {
    let dir = config.repo_dir(repo);
    let commit = if is_commit(revision) {
        revision.to_string()
    } else {
        std::fs::read_to_string(dir.join("refs").join(revision))
            .ok()?
            .trim()
            .to_string()
    };
    let snap = dir.join("snapshots").join(&commit);
    snapshot_is_complete(&snap).then_some(Snapshot { dir: snap, commit })
}

/// Whether a snapshot folder holds what loading needs: config.json, tokenizer.json, the weights,
/// and the files of the sentence-transformers modules that `modules.json` names (a download
/// that stopped half-way leaves a snapshot without some of them).
pub fn snapshot_is_complete(dir: &Path) -> bool {
    let has = |f: &str| dir.join(f).is_file();
    if !(has("config.json") && has("tokenizer.json")) {
        return false;
    }
    if !(has("model.safetensors") || has("pytorch_model.bin")) {
        return false;
    }
    module_files_present(dir)
}

/// The module folders `modules.json` names, with the files each needs.
fn module_files_present(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("modules.json")) else {
        return true;
    };
    let Ok(modules) = serde_json::from_str::<Vec<serde_json::Value>>(&text) else {
        return false;
    };
    modules.iter().all(|m| {
        let path = m.get("path").and_then(|p| p.as_str()).unwrap_or("");
        let kind = m.get("type").and_then(|t| t.as_str()).unwrap_or("");
        let folder = dir.join(path);
        match kind.rsplit('.').next().unwrap_or(kind) {
            "Pooling" => folder.join("config.json").is_file(),
            "Dense" => {
                folder.join("config.json").is_file()
                    && (folder.join("model.safetensors").is_file()
                        || folder.join("pytorch_model.bin").is_file())
            }
            _ => true,
        }
    })
}

/// The files of a repository that a relstitch model folder needs, from the Hub's file list: the
/// top-level configuration and tokenizer files, one weights file (safetensors preferred), and the
/// files of each sentence-transformers module folder in `modules` (the paths `modules.json`
/// names; other formats — ONNX, OpenVINO, TensorFlow, Flax — are left out).
pub fn wanted_files(siblings: &[String], modules: &[String]) -> Vec<String> {
    let small = |f: &str| [".json", ".txt", ".model"].iter().any(|e| f.ends_with(e));
    let in_folder = |folder: &str| -> Vec<String> {
        let prefix = if folder.is_empty() {
            String::new()
        } else {
            format!("{}/", folder.trim_end_matches('/'))
        };
        let files: Vec<&String> = siblings
            .iter()
            .filter(|f| {
                f.strip_prefix(&prefix)
                    .is_some_and(|rest| !rest.contains('/'))
            })
            .collect();
        let safetensors = format!("{prefix}model.safetensors");
        let has_safetensors = files.iter().any(|f| **f == safetensors);
        files
            .into_iter()
            .filter(|f| {
                let name = &f[prefix.len()..];
                small(name)
                    || name == "model.safetensors"
                    || (name == "pytorch_model.bin" && !has_safetensors)
            })
            .cloned()
            .collect()
    };
    let mut out = in_folder("");
    for m in modules.iter().filter(|m| !m.is_empty()) {
        for f in in_folder(m) {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_a_model_folder_needs_is_wanted() {
        let siblings: Vec<String> = [
            ".gitattributes",
            "README.md",
            "config.json",
            "model.safetensors",
            "pytorch_model.bin",
            "tf_model.h5",
            "onnx/model.onnx",
            "openvino/openvino_model.xml",
            "tokenizer.json",
            "vocab.txt",
            "sentencepiece.bpe.model",
            "modules.json",
            "1_Pooling/config.json",
            "2_Dense/config.json",
            "2_Dense/pytorch_model.bin",
            "3_Dense/config.json",
            "3_Dense/model.safetensors",
            "3_Dense/pytorch_model.bin",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let modules = [
            "".to_string(),
            "1_Pooling".into(),
            "2_Dense".into(),
            "3_Dense".into(),
        ];
        let mut got = wanted_files(&siblings, &modules);
        got.sort();
        assert_eq!(
            got,
            [
                "1_Pooling/config.json",
                "2_Dense/config.json",
                "2_Dense/pytorch_model.bin",
                "3_Dense/config.json",
                "3_Dense/model.safetensors",
                "config.json",
                "model.safetensors",
                "modules.json",
                "sentencepiece.bpe.model",
                "tokenizer.json",
                "vocab.txt",
            ]
        );
    }

    #[test]
    fn the_environment_is_read_like_huggingface_hub() {
        assert!(is_commit(&"0a".repeat(20)));
        assert!(!is_commit("main") && !is_commit(&"0g".repeat(20)));
        assert!(truthy("1") && truthy("TRUE") && truthy(" on ") && !truthy("0") && !truthy(""));
        let c = HubConfig::from_env()
            .with_endpoint("http://127.0.0.1:1/")
            .with_cache("/c");
        assert_eq!(c.endpoint, "http://127.0.0.1:1");
        assert_eq!(
            c.repo_dir("org/name"),
            PathBuf::from("/c/models--org--name")
        );
    }
}
