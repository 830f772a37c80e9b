//! The sentence-transformers folder conventions: `modules.json`, `1_Pooling/config.json`,
//! `sentence_bert_config.json`, the modules after pooling (`Dense`, `Normalize`) and
//! `config_sentence_transformers.json` (prompts, similarity function).

use std::path::Path;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use super::dense::DenseConfig;
use super::Pooling;
use crate::{Error, Result};

/// What a sentence-transformers folder says about turning token states into a sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SentenceTransformersConfig {
    /// The pooling module's mode.
    pub pooling: Pooling,
    /// Whether a `Normalize` module follows the pooling.
    pub normalize: bool,
    /// `max_seq_length` of `sentence_bert_config.json`, else `model_max_length` of
    /// `tokenizer_config.json`, when given.
    pub max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct Module {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize, Default)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
    /// sentence-transformers ≥ 5.2 writes one `pooling_mode` (a name or a list of names).
    #[serde(default)]
    pooling_mode: Option<serde_json::Value>,
    /// Whether prompt tokens are pooled (sentence-transformers' default: yes).
    #[serde(default = "yes")]
    include_prompt: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct SbertFile {
    #[serde(default)]
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        hint: "fix or re-fetch the model folder".into(),
        source,
    })
}

/// `model_max_length` of `dir/tokenizer_config.json`, unless absent, unreadable or the
/// "no limit" placeholder (transformers writes `1e30`-like values).
fn tokenizer_max_length(dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let n = v.get("model_max_length")?.as_f64()?;
    (1.0..=1e7).contains(&n).then_some(n as usize)
}

impl SentenceTransformersConfig {
    /// Reads the sentence-transformers files of `dir`. A folder without `modules.json` is a plain
    /// Hugging Face model: mean pooling, no normalisation, and a warning.
    ///
    /// Also returns `do_lower_case` from `sentence_bert_config.json`.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Json`] when a file present cannot be read or parsed;
    /// [`Error::ModelFolder`] for a module other than Transformer, Pooling and Normalize, a missing
    /// Pooling module, or a pooling mode relstitch does not run (none, several, weighted-mean).
    pub fn read(dir: &Path) -> Result<(Self, bool)> {
        let sbert_path = dir.join("sentence_bert_config.json");
        let (max_seq_length, lower) = if sbert_path.is_file() {
            let s: SbertFile = read_json(&sbert_path)?;
            (s.max_seq_length, s.do_lower_case)
        } else {
            (None, false)
        };
        // sentence-transformers ≥ 6 writes no max_seq_length there: it keeps it as the
        // tokenizer's model_max_length, which older versions also fell back to.
        let max_seq_length = max_seq_length.or_else(|| tokenizer_max_length(dir));
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            tracing::warn!(
                "{} has no modules.json: not a sentence-transformers folder; using mean pooling without normalisation",
                dir.display()
            );
            return Ok((
                Self {
                    pooling: Pooling::Mean,
                    normalize: false,
                    max_seq_length,
                },
                lower,
            ));
        }
        let modules: Vec<Module> = read_json(&modules_path)?;
        let mut pooling = None;
        let mut normalize = false;
        for m in &modules {
            let kind = m.kind.rsplit('.').next().unwrap_or(&m.kind);
            match kind {
                "Transformer" => {}
                "Pooling" => {
                    let p = dir.join(&m.path).join("config.json");
                    pooling = Some(Self::read_pooling(&p)?);
                }
                "Normalize" => normalize = true,
                // Read by `head_modules`.
                "Dense" => {}
                other => {
                    return Err(Error::ModelFolder {
                        path: modules_path.clone(),
                        reason: format!(
                            "sentence-transformers module `{other}` is not supported (relstitch runs Transformer, Pooling, Dense and Normalize)"
                        ),
                    })
                }
            }
        }
        let pooling = pooling.ok_or_else(|| Error::ModelFolder {
            path: modules_path.clone(),
            reason: "has no Pooling module; add one (e.g. 1_Pooling/config.json with pooling_mode_mean_tokens) or pass --pooling".into(),
        })?;
        Ok((
            Self {
                pooling,
                normalize,
                max_seq_length,
            },
            lower,
        ))
    }

    /// The modules that follow the pooling in `dir`'s `modules.json`, in order (`Dense` and
    /// `Normalize`); empty for a folder without `modules.json`.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Json`] when `modules.json` or a Dense config cannot be read or
    /// parsed; the errors of [`DenseConfig::read`].
    pub fn head_modules(dir: &Path) -> Result<Vec<HeadModule>> {
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok(Vec::new());
        }
        let modules: Vec<Module> = read_json(&modules_path)?;
        let mut out = Vec::new();
        for m in &modules {
            match m.kind.rsplit('.').next().unwrap_or(&m.kind) {
                "Dense" => out.push(HeadModule::Dense(DenseConfig::read(dir, &m.path)?)),
                "Normalize" => out.push(HeadModule::Normalize),
                _ => {}
            }
        }
        Ok(out)
    }

    fn read_pooling(path: &Path) -> Result<Pooling> {
        let p: PoolingFile = read_json(path)?;
        if !p.include_prompt {
            return Err(Error::ModelFolder {
                path: path.to_path_buf(),
                reason:
                    "include_prompt: false (prompt tokens left out of the pooling) is not supported"
                        .into(),
            });
        }
        if let Some(mode) = &p.pooling_mode {
            let names: Vec<&str> = match mode {
                serde_json::Value::String(s) => vec![s.as_str()],
                serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str()).collect(),
                _ => Vec::new(),
            };
            return match names.as_slice() {
                ["mean"] => Ok(Pooling::Mean),
                ["cls"] => Ok(Pooling::Cls),
                ["max"] => Ok(Pooling::Max),
                ["mean_sqrt_len_tokens"] => Ok(Pooling::MeanSqrtLen),
                ["lasttoken"] => Ok(Pooling::LastToken),
                [one] => Err(Error::ModelFolder {
                    path: path.to_path_buf(),
                    reason: format!("pooling mode `{one}` is not supported; pass --pooling to override"),
                }),
                _ => Err(Error::ModelFolder {
                    path: path.to_path_buf(),
                    reason: "pooling_mode must name one mode (several, concatenated, are not supported); pass --pooling to pick one".into(),
                }),
            };
        }
        let modes = [
            (p.pooling_mode_mean_tokens, Some(Pooling::Mean)),
            (p.pooling_mode_cls_token, Some(Pooling::Cls)),
            (p.pooling_mode_max_tokens, Some(Pooling::Max)),
            (
                p.pooling_mode_mean_sqrt_len_tokens,
                Some(Pooling::MeanSqrtLen),
            ),
            (p.pooling_mode_weightedmean_tokens, None),
            (p.pooling_mode_lasttoken, Some(Pooling::LastToken)),
        ];
        let on: Vec<_> = modes
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, m)| *m)
            .collect();
        match on.as_slice() {
            [Some(m)] => Ok(*m),
            [None] => Err(Error::ModelFolder {
                path: path.to_path_buf(),
                reason: "weighted-mean pooling is not supported; pass --pooling to override".into(),
            }),
            [] => Err(Error::ModelFolder {
                path: path.to_path_buf(),
                reason: "no pooling mode is switched on".into(),
            }),
            _ => Err(Error::ModelFolder {
                path: path.to_path_buf(),
                reason: "several pooling modes at once (concatenated) are not supported; pass --pooling to pick one".into(),
            }),
        }
    }

    /// Writes `modules.json`, `1_Pooling/config.json` and `sentence_bert_config.json` into `dir`,
    /// in the layout sentence-transformers reads.
    ///
    /// # Errors
    /// The errors of [`write_atomic`](crate::io::write_atomic) for each file; [`Error::Io`] when
    /// `2_Normalize` cannot be created.
    pub fn write(&self, dir: &Path, width: usize) -> Result<()> {
        let mut modules = vec![
            json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
            json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
        ];
        if self.normalize {
            modules.push(json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}));
        }
        let pooling = json!({
            "word_embedding_dimension": width,
            "pooling_mode_cls_token": self.pooling == Pooling::Cls,
            "pooling_mode_mean_tokens": self.pooling == Pooling::Mean,
            "pooling_mode_max_tokens": self.pooling == Pooling::Max,
            "pooling_mode_mean_sqrt_len_tokens": self.pooling == Pooling::MeanSqrtLen,
            "pooling_mode_lasttoken": self.pooling == Pooling::LastToken,
        });
        let sbert = json!({"max_seq_length": self.max_seq_length, "do_lower_case": false});
        let write = |rel: &str, v: &serde_json::Value| -> Result<()> {
            let bytes =
                serde_json::to_vec_pretty(v).map_err(|e| Error::invalid(rel, e.to_string()))?;
            crate::io::write_atomic(&dir.join(rel), &bytes)
        };
        write("modules.json", &serde_json::Value::Array(modules))?;
        write("1_Pooling/config.json", &pooling)?;
        write("sentence_bert_config.json", &sbert)?;
        if self.normalize {
            let d = dir.join("2_Normalize");
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        }
        Ok(())
    }
}

/// A module that follows the pooling in a sentence-transformers pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadModule {
    /// A linear layer and its activation.
    Dense(DenseConfig),
    /// L2 normalisation.
    Normalize,
}

/// What `config_sentence_transformers.json` says: the model's prompts, the one used by default,
/// and the similarity function its vectors are meant for.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct ModelPrompts {
    /// Prompt name → the text prepended to every input (e.g. `query` → `query: `).
    #[serde(default)]
    pub prompts: BTreeMap<String, String>,
    /// The prompt used when none is asked for.
    #[serde(default)]
    pub default_prompt_name: Option<String>,
    /// `cosine`, `dot`, `euclidean` or `manhattan`.
    #[serde(default)]
    pub similarity_fn_name: Option<String>,
}

impl ModelPrompts {
    /// Reads `dir/config_sentence_transformers.json`; the default (no prompts) when the file is
    /// absent.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Json`] when the file is present but cannot be read or parsed;
    /// [`Error::ModelFolder`] when `default_prompt_name` names no prompt.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("config_sentence_transformers.json");
        if !path.is_file() {
            return Ok(Self::default());
        }
        let p: Self = read_json(&path)?;
        if let Some(d) = &p.default_prompt_name {
            if !p.prompts.contains_key(d) {
                return Err(Error::ModelFolder {
                    path,
                    reason: format!("default_prompt_name `{d}` is not one of its prompts"),
                });
            }
        }
        Ok(p)
    }

    /// The text of prompt `name`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the prompts there are when `name` is not one.
    pub fn get(&self, name: &str) -> Result<&str> {
        self.prompts.get(name).map(String::as_str).ok_or_else(|| {
            Error::invalid(
                "prompt name",
                if self.prompts.is_empty() {
                    format!("`{name}`: the model declares no prompts (config_sentence_transformers.json); use --prefix")
                } else {
                    format!(
                        "`{name}` is not one of the model's prompts ({})",
                        self.prompts.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_round_trips() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        for cfg in [
            SentenceTransformersConfig {
                pooling: Pooling::Mean,
                normalize: true,
                max_seq_length: Some(128),
            },
            SentenceTransformersConfig {
                pooling: Pooling::Cls,
                normalize: false,
                max_seq_length: None,
            },
            SentenceTransformersConfig {
                pooling: Pooling::LastToken,
                normalize: true,
                max_seq_length: Some(32768),
            },
        ] {
            cfg.write(dir.path(), 8)?;
            let (back, lower) = SentenceTransformersConfig::read(dir.path())?;
            assert_eq!(back, cfg);
            assert!(!lower);
        }
        std::fs::write(
            dir.path().join("1_Pooling/config.json"),
            "{\"pooling_mode_cls_token\": true, \"pooling_mode_mean_tokens\": true}",
        )?;
        assert!(matches!(
            SentenceTransformersConfig::read(dir.path()),
            Err(Error::ModelFolder { .. })
        ));
        std::fs::write(dir.path().join("modules.json"), "[{")?;
        assert!(matches!(
            SentenceTransformersConfig::read(dir.path()),
            Err(Error::Json { .. })
        ));
        Ok(())
    }

    #[test]
    fn dense_modules_new_pooling_files_and_prompts_are_read() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        std::fs::write(
            d.join("modules.json"),
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.base.modules.transformer.Transformer"},
                {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.sentence_transformer.modules.pooling.Pooling"},
                {"idx":2,"name":"2","path":"2_Dense","type":"sentence_transformers.base.modules.dense.Dense"},
                {"idx":3,"name":"3","path":"3_Normalize","type":"sentence_transformers.base.modules.normalize.Normalize"}]"#,
        )?;
        std::fs::create_dir_all(d.join("1_Pooling"))?;
        std::fs::create_dir_all(d.join("2_Dense"))?;
        // sentence-transformers ≥ 5.2 writes one `pooling_mode`.
        std::fs::write(
            d.join("1_Pooling/config.json"),
            r#"{"embedding_dimension": 8, "pooling_mode": "cls", "include_prompt": true}"#,
        )?;
        // No activation_function: sentence-transformers' default, Tanh.
        std::fs::write(
            d.join("2_Dense/config.json"),
            r#"{"in_features": 8, "out_features": 4, "bias": false}"#,
        )?;
        let (st, _) = SentenceTransformersConfig::read(d)?;
        assert_eq!((st.pooling, st.normalize), (Pooling::Cls, true));
        let head = SentenceTransformersConfig::head_modules(d)?;
        match head.as_slice() {
            [HeadModule::Dense(c), HeadModule::Normalize] => {
                assert_eq!((c.in_features, c.out_features, c.bias), (8, 4, false));
                assert_eq!(c.activation, super::super::DenseActivation::Tanh);
            }
            other => anyhow::bail!("{other:?}"),
        }
        std::fs::write(
            d.join("2_Dense/config.json"),
            r#"{"in_features": 8, "out_features": 4, "activation_function": "my.custom.Swish"}"#,
        )?;
        assert!(matches!(
            SentenceTransformersConfig::head_modules(d),
            Err(Error::ModelFolder { .. })
        ));
        std::fs::write(
            d.join("1_Pooling/config.json"),
            r#"{"embedding_dimension": 8, "pooling_mode": "mean", "include_prompt": false}"#,
        )?;
        assert!(matches!(
            SentenceTransformersConfig::read(d),
            Err(Error::ModelFolder { .. })
        ));
        // Prompts.
        assert_eq!(ModelPrompts::read(d)?, ModelPrompts::default());
        std::fs::write(
            d.join("config_sentence_transformers.json"),
            r#"{"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": "query", "similarity_fn_name": "cosine"}"#,
        )?;
        let p = ModelPrompts::read(d)?;
        assert_eq!(p.get("passage")?, "passage: ");
        assert_eq!(p.default_prompt_name.as_deref(), Some("query"));
        assert!(matches!(p.get("doc"), Err(Error::InvalidArgument { .. })));
        std::fs::write(
            d.join("config_sentence_transformers.json"),
            r#"{"prompts": {}, "default_prompt_name": "query"}"#,
        )?;
        assert!(matches!(
            ModelPrompts::read(d),
            Err(Error::ModelFolder { .. })
        ));
        Ok(())
    }
}
