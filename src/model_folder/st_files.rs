//! The sentence-transformers folder conventions: `modules.json`, `1_Pooling/config.json`,
//! `sentence_bert_config.json`.

use std::path::Path;

use serde::Deserialize;
use serde_json::json;

use super::Pooling;
use crate::{Error, Result};

/// What a sentence-transformers folder says about turning token states into a sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SentenceTransformersConfig {
    /// The pooling module's mode.
    pub pooling: Pooling,
    /// Whether a `Normalize` module follows the pooling.
    pub normalize: bool,
    /// `max_seq_length` of `sentence_bert_config.json`, when given.
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
}

#[derive(Deserialize)]
struct SbertFile {
    #[serde(default)]
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        hint: "fix or re-fetch the model folder".into(),
        source,
    })
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
                other => {
                    return Err(Error::ModelFolder {
                        path: modules_path.clone(),
                        reason: format!(
                            "sentence-transformers module `{other}` is not supported (relstitch runs Transformer, Pooling and Normalize)"
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

    fn read_pooling(path: &Path) -> Result<Pooling> {
        let p: PoolingFile = read_json(path)?;
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
}
