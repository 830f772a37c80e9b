//! Generic loaders for labelled data you already have: JSON Lines and CSV/TSV files.
//!
//! Both take a [`Fields`] naming the text, label and (optional) id fields. Every error names the
//! file and, when the problem is on one row, its 1-based line: invalid UTF-8 or JSON, a missing
//! field (listing the fields that are there), a non-string text, an empty text or label, a label
//! outside a fixed label list, a duplicate id, or a file with no rows at all.

use std::collections::HashMap;
use std::path::Path;

use super::{sorted_labels, Dataset, Record};
use crate::{Error, Result};

/// Which fields (JSONL keys or CSV header names) hold the text, the label and the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    /// The text field (default `text`).
    pub text: String,
    /// The label field (default `label`). Labels may be strings, integers or booleans in JSONL.
    pub label: String,
    /// The id field (default `id`). Rows without it get `line-N` (N = the row's 1-based line), so
    /// the split of an id-less file follows its line order; `None` always uses line numbers.
    pub id: Option<String>,
    /// A fixed label list, in index order; labels outside it are an error. Without it, the labels
    /// are the distinct values found, sorted (numerically when all are integers).
    pub labels: Option<Vec<String>>,
}

impl Default for Fields {
    fn default() -> Self {
        Self {
            text: "text".into(),
            label: "label".into(),
            id: Some("id".into()),
            labels: None,
        }
    }
}

impl Fields {
    /// Sets the text field.
    #[must_use]
    pub fn with_text(mut self, name: impl Into<String>) -> Self {
        self.text = name.into();
        self
    }

    /// Sets the label field.
    #[must_use]
    pub fn with_label(mut self, name: impl Into<String>) -> Self {
        self.label = name.into();
        self
    }

    /// Sets (or, with `None`, disables) the id field.
    #[must_use]
    pub fn with_id(mut self, name: Option<String>) -> Self {
        self.id = name;
        self
    }

    /// Fixes the label list and its order.
    #[must_use]
    pub fn with_labels(mut self, labels: Vec<String>) -> Self {
        self.labels = Some(labels);
        self
    }
}

/// Reads a `.jsonl`, `.ndjson`, `.csv` or `.tsv` file, chosen by extension.
///
/// # Errors
/// [`Error::Input`] for any other extension; the errors of [`read_jsonl`] or [`read_csv`].
pub fn read_table(path: &Path, fields: &Fields) -> Result<Dataset> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jsonl" | "ndjson" | "json") => read_jsonl(path, fields),
        Some("csv") => read_csv(path, fields, b','),
        Some("tsv") => read_csv(path, fields, b'\t'),
        _ => Err(Error::Input {
            path: path.to_path_buf(),
            line: None,
            reason: "unknown extension; give a .jsonl, .ndjson, .csv or .tsv file".into(),
        }),
    }
}

/// Reads a JSON Lines file: one object per line with a text and a label field (blank lines are
/// skipped).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Input`] naming the file (and the line,
/// when on one row) for the problems listed in the [module documentation](self);
/// [`Error::InvalidArgument`] when a fixed label list ([`Fields::labels`]) is empty or repeats a
/// name ([`Dataset::try_new`]).
pub fn read_jsonl(path: &Path, fields: &Fields) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut rows = Rows::new(path, fields);
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let err = |reason: String| Error::Input {
            path: path.to_path_buf(),
            line: Some(line),
            reason,
        };
        let text = std::str::from_utf8(raw).map_err(|e| {
            err(format!(
                "not valid UTF-8 ({e}); convert the file to UTF-8 (e.g. `iconv -t UTF-8`)"
            ))
        })?;
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            err(format!(
                "not valid JSON ({e}); each line must be one JSON object"
            ))
        })?;
        let obj = value
            .as_object()
            .ok_or_else(|| err(format!("expected a JSON object, found {}", kind(&value))))?;
        let missing = |field: &str| {
            let mut present: Vec<_> = obj.keys().map(String::as_str).collect();
            present.sort_unstable();
            err(format!(
                "no field `{field}` (fields here: {}); name the right field (e.g. --text-field / --label-field)",
                present.join(", ")
            ))
        };
        let body = match obj.get(&fields.text) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(err(format!(
                    "field `{}` must be a string, found {}",
                    fields.text,
                    kind(other)
                )))
            }
            None => return Err(missing(&fields.text)),
        };
        let label = match obj.get(&fields.label) {
            Some(v) => scalar(v).ok_or_else(|| {
                err(format!(
                    "field `{}` must be a string, an integer or a boolean, found {}",
                    fields.label,
                    kind(v)
                ))
            })?,
            None => return Err(missing(&fields.label)),
        };
        let id = match fields.id.as_ref().and_then(|f| obj.get(f)) {
            Some(v) => Some(scalar(v).ok_or_else(|| {
                err(format!(
                    "the id field must be a string or an integer, found {}",
                    kind(v)
                ))
            })?),
            None => None,
        };
        rows.push(line, id, body, label)?;
    }
    rows.finish()
}

/// Reads a CSV (or, with `delimiter = b'\t'`, TSV) file with a header row. Quoted fields may hold
/// delimiters, quotes (`""`) and newlines; every row must have as many fields as the header.
///
/// # Errors
/// [`Error::Io`] when the file cannot be opened; [`Error::Input`] naming the file (and the line)
/// for a missing header or column, a row with another number of fields, invalid UTF-8, or the
/// row problems of the [module documentation](self); [`Error::InvalidArgument`] as for
/// [`read_jsonl`].
pub fn read_csv(path: &Path, fields: &Fields, delimiter: u8) -> Result<Dataset> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(false)
        .from_reader(std::io::BufReader::new(file));
    let csv_err = |e: csv::Error| {
        let line = e.position().map(|p| p.line() as usize);
        let reason = match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!(
                "{len} fields where the header has {expected_len}; quote fields that contain the delimiter"
            ),
            csv::ErrorKind::Utf8 { err, .. } => format!(
                "not valid UTF-8 ({err}); convert the file to UTF-8 (e.g. `iconv -t UTF-8`)"
            ),
            _ => format!("unreadable CSV ({e})"),
        };
        Error::Input {
            path: path.to_path_buf(),
            line,
            reason,
        }
    };
    let header = reader.headers().map_err(csv_err)?.clone();
    let header_err = |reason: String| Error::Input {
        path: path.to_path_buf(),
        line: Some(1),
        reason,
    };
    if header.is_empty() || header.iter().all(str::is_empty) {
        return Err(header_err(
            "no header row; the first line must name the columns (e.g. `text,label`)".into(),
        ));
    }
    let column = |name: &str| -> Result<usize> {
        header.iter().position(|h| h.trim() == name).ok_or_else(|| {
            header_err(format!(
                "no column `{name}` in the header (columns: {}); name the right column (e.g. --text-field / --label-field)",
                header.iter().collect::<Vec<_>>().join(", ")
            ))
        })
    };
    let text_col = column(&fields.text)?;
    let label_col = column(&fields.label)?;
    let id_col = fields
        .id
        .as_ref()
        .and_then(|f| header.iter().position(|h| h.trim() == f.as_str()));
    let mut rows = Rows::new(path, fields);
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let get = |c: usize| record.get(c).unwrap_or_default().to_string();
        let id = id_col.map(get).filter(|s| !s.trim().is_empty());
        rows.push(line, id, get(text_col), get(label_col).trim().to_string())?;
    }
    rows.finish()
}

/// The rows of a file being read, with the checks shared by both formats.
struct Rows<'a> {
    path: &'a Path,
    fields: &'a Fields,
    /// (line, id, text, label)
    rows: Vec<(usize, String, String, String)>,
    id_lines: HashMap<String, usize>,
}

impl<'a> Rows<'a> {
    fn new(path: &'a Path, fields: &'a Fields) -> Self {
        Self {
            path,
            fields,
            rows: Vec::new(),
            id_lines: HashMap::new(),
        }
    }

    fn err(&self, line: usize, reason: String) -> Error {
        Error::Input {
            path: self.path.to_path_buf(),
            line: Some(line),
            reason,
        }
    }

    fn push(&mut self, line: usize, id: Option<String>, text: String, label: String) -> Result<()> {
        let id = id.unwrap_or_else(|| format!("line-{line}"));
        if text.trim().is_empty() {
            return Err(self.err(
                line,
                format!("the text (`{}`) is empty; remove the row", self.fields.text),
            ));
        }
        if label.is_empty() {
            return Err(self.err(
                line,
                format!(
                    "the label (`{}`) is empty; label the row or remove it",
                    self.fields.label
                ),
            ));
        }
        if let Some(known) = &self.fields.labels {
            if !known.contains(&label) {
                return Err(self.err(
                    line,
                    format!(
                        "unknown label `{label}` (expected one of: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        if let Some(first) = self.id_lines.insert(id.clone(), line) {
            return Err(self.err(
                line,
                format!("the id `{id}` was already used on line {first}; ids must be unique"),
            ));
        }
        self.rows.push((line, id, text, label));
        Ok(())
    }

    fn finish(self) -> Result<Dataset> {
        if self.rows.is_empty() {
            return Err(Error::Input {
                path: self.path.to_path_buf(),
                line: None,
                reason: format!(
                    "holds no rows; expected records with a `{}` and a `{}` field",
                    self.fields.text, self.fields.label
                ),
            });
        }
        let labels = match &self.fields.labels {
            Some(l) => l.clone(),
            None => sorted_labels(self.rows.iter().map(|r| r.3.as_str())),
        };
        let index: HashMap<&str, usize> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        let records = self
            .rows
            .iter()
            .map(|(_, id, text, label)| Record {
                id: id.clone(),
                text: text.clone(),
                label: index.get(label.as_str()).copied().unwrap_or(usize::MAX),
            })
            .collect();
        let name = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Dataset::try_new(name, self.path.display().to_string(), labels, records)
    }
}

/// A JSON scalar as label or id text.
fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.trim().to_string()),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> std::io::Result<std::path::PathBuf> {
        let p = dir.join(name);
        std::fs::write(&p, body)?;
        Ok(p)
    }

    fn err_text(r: Result<Dataset>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn jsonl_reads_labels_of_every_kind() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = write(
            dir.path(),
            "d.jsonl",
            "{\"text\":\"a\",\"label\":10,\"id\":\"x\"}\n\n{\"text\":\"b\",\"label\":2}\r\n{\"text\":\"c\",\"label\":10,\"id\":7}\n",
        )?;
        let d = read_jsonl(&p, &Fields::default())?;
        assert_eq!(d.name, "d");
        assert_eq!(d.labels, vec!["2", "10"]);
        let ids: Vec<_> = d.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, vec!["x", "line-3", "7"]);
        assert_eq!(d.label_indices(), vec![1, 0, 1]);
        let custom = write(dir.path(), "c.jsonl", "{\"body\":\"a\",\"y\":true}\n")?;
        let d = read_table(
            &custom,
            &Fields::default().with_text("body").with_label("y"),
        )?;
        assert_eq!(d.labels, vec!["true"]);
        Ok(())
    }

    #[test]
    fn jsonl_errors_name_file_and_line() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let f = Fields::default();
        let cases = [
            ("{\"text\":\"a\",\"label\":\"x\"}\n{\"txt\":\"b\",\"label\":\"x\"}\n", ":2", "no field `text`"),
            ("{\"text\":\"a\",\"label\":\"x\"}\nnot json\n", ":2", "not valid JSON"),
            ("[1,2]\n", ":1", "expected a JSON object"),
            ("{\"text\":3,\"label\":\"x\"}\n", ":1", "must be a string"),
            ("{\"text\":\"  \",\"label\":\"x\"}\n", ":1", "empty"),
            ("{\"text\":\"a\",\"label\":[1]}\n", ":1", "must be a string, an integer"),
            ("{\"text\":\"a\",\"label\":\"\"}\n", ":1", "label"),
            ("{\"text\":\"a\",\"label\":\"x\",\"id\":1}\n{\"text\":\"b\",\"label\":\"x\",\"id\":\"1\"}\n", ":2", "already used on line 1"),
        ];
        for (body, line, needle) in cases {
            let p = write(dir.path(), "bad.jsonl", body)?;
            let e = err_text(read_jsonl(&p, &f));
            assert!(
                e.contains("bad.jsonl") && e.contains(line) && e.contains(needle),
                "{e}"
            );
        }
        let p = write(dir.path(), "empty.jsonl", "\n  \n")?;
        let e = err_text(read_jsonl(&p, &f));
        assert!(e.contains("empty.jsonl") && e.contains("no rows"), "{e}");
        std::fs::write(&p, b"{\"text\":\"\xff\",\"label\":\"x\"}\n")?;
        assert!(err_text(read_jsonl(&p, &f)).contains("UTF-8"));
        let p = write(
            dir.path(),
            "fixed.jsonl",
            "{\"text\":\"a\",\"label\":\"q\"}\n",
        )?;
        let fixed = f.clone().with_labels(vec!["p".into()]);
        assert!(err_text(read_jsonl(&p, &fixed)).contains("unknown label `q`"));
        Ok(())
    }

    #[test]
    fn csv_handles_quotes_commas_and_newlines() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = write(
            dir.path(),
            "d.csv",
            "\u{feff}label,text,extra\nspam,\"hello, \"\"world\"\"\nsecond line\",1\nham,plain,2\n",
        )?;
        let d = read_csv(&p, &Fields::default(), b',')?;
        assert_eq!(d.labels, vec!["ham", "spam"]);
        assert_eq!(d.records[0].text, "hello, \"world\"\nsecond line");
        assert_eq!(d.records[0].id, "line-2");
        assert_eq!(d.records[1].id, "line-4");
        let t = write(dir.path(), "d.tsv", "id\ttext\tlabel\na\tx y\t1\n")?;
        let d = read_table(&t, &Fields::default())?;
        assert_eq!((d.records[0].id.as_str(), d.labels[0].as_str()), ("a", "1"));
        Ok(())
    }

    #[test]
    fn csv_errors_name_file_and_line() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let f = Fields::default();
        let cases = [
            (
                "text,label\na,x\nb,x,extra\n",
                ":3",
                "3 fields where the header has 2",
            ),
            ("txt,label\na,x\n", ":1", "no column `text`"),
            ("text,label\n,x\n", ":2", "empty"),
            ("text,label\na,\n", ":2", "label"),
            ("text,label\n", "", "no rows"),
            ("", "", "no header row"),
        ];
        for (body, line, needle) in cases {
            let p = write(dir.path(), "bad.csv", body)?;
            let e = err_text(read_csv(&p, &f, b','));
            assert!(
                e.contains("bad.csv") && e.contains(line) && e.contains(needle),
                "{body:?}: {e}"
            );
        }
        let p = dir.path().join("bad.csv");
        std::fs::write(&p, b"text,label\n\xff,x\n")?;
        let e = err_text(read_csv(&p, &f, b','));
        assert!(e.contains("UTF-8") && e.contains(":2"), "{e}");
        assert!(err_text(read_table(&dir.path().join("x.txt"), &f)).contains("extension"));
        Ok(())
    }
}
