//! Reading a corpus one record at a time: `.txt` (one text per line) or `.jsonl` (one object per
//! line), each record with its id.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A record's id: the JSONL `--id-field` value (a string or an integer), else its 0-based record
/// index (`.jsonl`) or its 1-based line number (`.txt`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum RecordId {
    /// An integer id (record index, line number, or an integer id field).
    Int(i64),
    /// A string id field.
    Str(String),
}

/// One text of the corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// 0-based position among the records kept (the row of the output).
    pub index: u64,
    /// Its id.
    pub id: RecordId,
    /// The text.
    pub text: String,
}

/// How records are read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordOptions {
    /// The JSON field holding the text (`.jsonl`).
    pub field: String,
    /// The JSON field holding the id (`.jsonl`); without it the id is the record index.
    pub id_field: Option<String>,
    /// Skip empty lines (`.txt`) or records whose text is empty, instead of failing on them. The
    /// skipped lines are absent from the ids, so their absence is recorded.
    pub skip_empty: bool,
}

impl Default for RecordOptions {
    fn default() -> Self {
        Self {
            field: "text".into(),
            id_field: None,
            skip_empty: false,
        }
    }
}

/// Streams the records of a `.txt` or `.jsonl` file; memory holds one line at a time.
///
/// Blank lines of a `.jsonl` file are not records (they are skipped, like every JSONL reader
/// does); an empty line of a `.txt` file, or a JSONL text that is empty, is an error naming the line
/// unless [`RecordOptions::skip_empty`].
pub struct RecordReader {
    path: PathBuf,
    reader: std::io::BufReader<std::fs::File>,
    jsonl: bool,
    options: RecordOptions,
    line_no: usize,
    next_index: u64,
    skipped: u64,
    buf: Vec<u8>,
}

impl RecordReader {
    /// Opens `path`.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be opened.
    pub fn open(path: &Path, options: &RecordOptions) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let jsonl = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("jsonl") | Some("json") | Some("ndjson")
        );
        Ok(Self {
            path: path.to_path_buf(),
            reader: std::io::BufReader::new(file),
            jsonl,
            options: options.clone(),
            line_no: 0,
            next_index: 0,
            skipped: 0,
            buf: Vec::new(),
        })
    }

    /// Empty texts skipped so far (with [`RecordOptions::skip_empty`]).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    fn input_err(&self, reason: String) -> Error {
        Error::Input {
            path: self.path.clone(),
            line: Some(self.line_no),
            reason,
        }
    }

    /// The next record, or `None` at the end of the file.
    fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| Error::io(&self.path, e))?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            let line = std::str::from_utf8(&self.buf).map_err(|e| {
                self.input_err(format!(
                    "not valid UTF-8 ({e}); convert the file to UTF-8 (e.g. `iconv -t UTF-8`)"
                ))
            })?;
            let line = line.trim_end_matches(['\n', '\r']).to_string();
            let (id, text) = if self.jsonl {
                if line.trim().is_empty() {
                    continue;
                }
                self.parse_json(&line)?
            } else {
                let id = RecordId::Int(i64::try_from(self.line_no).unwrap_or(i64::MAX));
                (id, line)
            };
            if text.trim().is_empty() {
                if self.options.skip_empty {
                    self.skipped += 1;
                    continue;
                }
                return Err(self.input_err(
                    "empty text; remove the line, or pass --skip-empty to skip empty texts (their \
                     ids are then absent from the output)"
                        .into(),
                ));
            }
            let index = self.next_index;
            self.next_index += 1;
            return Ok(Some(Record { index, id, text }));
        }
    }

    fn parse_json(&self, line: &str) -> Result<(RecordId, String)> {
        let field = &self.options.field;
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            self.input_err(format!(
                "not valid JSON ({e}); each line must be one JSON object"
            ))
        })?;
        let serde_json::Value::Object(map) = value else {
            return Err(self.input_err(format!(
                "not a JSON object; each line must be one JSON object with the text in field \
                 `{field}`, e.g. {{\"{field}\": \"...\"}}"
            )));
        };
        let text = match map.get(field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(self.input_err(format!(
                    "field `{field}` is not a string (found {other}); use --field to pick the text \
                     field"
                )))
            }
            None => {
                return Err(self.input_err(format!(
                    "no field `{field}`; use --field to pick the text field"
                )))
            }
        };
        let id = match &self.options.id_field {
            None => RecordId::Int(i64::try_from(self.next_index).unwrap_or(i64::MAX)),
            Some(id_field) => match map.get(id_field) {
                Some(serde_json::Value::String(s)) if !s.contains(['\n', '\0']) => {
                    RecordId::Str(s.clone())
                }
                Some(serde_json::Value::Number(n)) if n.as_i64().is_some() => {
                    RecordId::Int(n.as_i64().unwrap_or_default())
                }
                Some(other) => {
                    return Err(self.input_err(format!(
                        "id field `{id_field}` must be an integer or a string without newlines \
                         (found {other})"
                    )))
                }
                None => {
                    return Err(self.input_err(format!(
                        "no id field `{id_field}`; every record needs one (or drop --id-field to \
                         use record indices)"
                    )))
                }
            },
        };
        Ok((id, text))
    }
}

impl Iterator for RecordReader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(name: &str, body: &str, options: &RecordOptions) -> Result<Vec<Record>> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let path = dir.path().join(name);
        std::fs::write(&path, body).map_err(|e| Error::io(&path, e))?;
        RecordReader::open(&path, options)?.collect()
    }

    #[test]
    fn ids_follow_the_format() -> Result<()> {
        let o = RecordOptions::default();
        let r = read("a.txt", "one\ntwo\r\nthree", &o)?;
        let ids: Vec<_> = r.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, [1, 2, 3].map(RecordId::Int));
        assert_eq!(r[1].text, "two");
        let r = read("a.jsonl", "{\"text\":\"x\"}\n\n{\"text\":\"y\"}\n", &o)?;
        assert_eq!(r[1].id, RecordId::Int(1));
        let o = RecordOptions {
            id_field: Some("id".into()),
            ..RecordOptions::default()
        };
        let r = read(
            "a.jsonl",
            "{\"text\":\"x\",\"id\":\"doc-7\"}\n{\"text\":\"y\",\"id\":42}\n",
            &o,
        )?;
        assert_eq!(r[0].id, RecordId::Str("doc-7".into()));
        assert_eq!(r[1].id, RecordId::Int(42));
        assert!(read("a.jsonl", "{\"text\":\"x\"}\n", &o).is_err());
        Ok(())
    }

    #[test]
    fn empty_texts_fail_or_are_skipped() -> Result<()> {
        let o = RecordOptions::default();
        let e = read("a.txt", "one\n\nthree\n", &o)
            .err()
            .map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(e.contains("line 2") || e.contains(":2"), "{e}");
        assert!(e.contains("--skip-empty"), "{e}");
        let o = RecordOptions {
            skip_empty: true,
            ..o
        };
        let r = read("a.txt", "one\n\nthree\n", &o)?;
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].id, RecordId::Int(3));
        assert_eq!(r[1].index, 1);
        Ok(())
    }
}
