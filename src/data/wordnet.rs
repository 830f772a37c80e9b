//! `wordnet-lexnames`: what a dictionary definition is about, from WordNet's noun glosses.
//!
//! Source: Debian `wordnet-base` 1:3.0-37 (Princeton WordNet 3.0). Every line of
//! `usr/share/wordnet/data.noun` is one synset: its byte offset, its lexicographer file number
//! (the synset's coarse semantic class, see `lexnames(5WN)`), its words, its pointers and, after
//! ` | `, its gloss: a definition, often followed by quoted examples. The text of a record is the
//! definition alone (examples dropped: they often name the word being defined), its label the
//! lexicographer class. Eight classes are kept ([`CLASSES`]): concrete and abstract, some close to
//! each other (animal/body/food/plant, artifact/location), so that the task is neither trivial
//! nor keyword matching.
//!
//! Sampling: the classes hold from ~2,000 to ~11,000 synsets each. [`PER_CLASS`] synsets per class
//! are kept, those whose id has the smallest sha256 (a fixed, unbiased sample that does not
//! depend on the file's order, which follows the hierarchy). Definitions shorter than
//! [`MIN_CHARS`] characters are dropped before sampling, and texts found in two classes are
//! dropped. Ids are `n<offset>`, WordNet's own synset id (`n02084071` is the dog).

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{dedup_build, describe_packages, extract_deb, fold_whitespace, Dataset};
use crate::hub::catalog::{Package, Registry};
use crate::hub::fetch::Fetcher;
use crate::{Error, Result};

/// The lexicographer classes kept (WordNet's `lexnames`), which are also the label names, with
/// their lexicographer file numbers.
pub const CLASSES: [(u32, &str); 8] = [
    (5, "noun.animal"),
    (6, "noun.artifact"),
    (8, "noun.body"),
    (10, "noun.communication"),
    (13, "noun.food"),
    (15, "noun.location"),
    (18, "noun.person"),
    (20, "noun.plant"),
];

/// Synsets kept per class.
pub const PER_CLASS: usize = 600;

/// Definitions shorter than this (in characters, after folding) are dropped.
pub const MIN_CHARS: usize = 20;

/// The noun data file inside the package.
pub const DATA_NOUN: &str = "usr/share/wordnet/data.noun";

/// The Debian package.
pub fn package() -> Package {
    Package {
        registry: Registry::Debian,
        name: "wordnet-base".into(),
        version: "1:3.0-37".into(),
        platform: None,
        sha256: "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752".into(),
    }
}

/// Downloads the package (or reuses the cached download), extracts it and builds the dataset.
///
/// # Errors
/// The errors of [`Fetcher::download`]; [`Error::Fetch`] when `dpkg-deb` cannot extract the
/// package; the errors of [`from_file`].
pub fn load(fetcher: &Fetcher) -> Result<Dataset> {
    let pkg = package();
    let deb = fetcher.download(&pkg)?;
    let tmp = extract_deb(fetcher, &deb)?;
    let mut d = from_file(&tmp.path().join(DATA_NOUN))?;
    d.source = describe_packages(&[pkg]);
    Ok(d)
}

/// Builds the dataset from a WordNet `data.noun` file.
///
/// # Errors
/// [`Error::Fetch`] when the file is missing; [`Error::Io`] when it cannot be read;
/// [`Error::Input`] naming the line when a synset line is malformed, or when some class holds no
/// usable definition.
pub fn from_file(path: &Path) -> Result<Dataset> {
    let bytes = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Fetch {
                what: path.display().to_string(),
                reason: "no WordNet noun data; the package does not hold the expected file \
                         (fetch it again)"
                    .into(),
            }
        } else {
            Error::io(path, e)
        }
    })?;
    let text = String::from_utf8_lossy(&bytes);
    // Per class: (sampling key, id, definition).
    type Synset = ([u8; 32], String, String);
    let mut by_class: BTreeMap<&str, Vec<Synset>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        // The licence header: lines that start with two spaces.
        if line.starts_with("  ") || line.trim().is_empty() {
            continue;
        }
        let bad = |reason: &str| Error::Input {
            path: path.to_path_buf(),
            line: Some(i + 1),
            reason: format!("{reason}; this is not a WordNet data.noun file"),
        };
        let (head, gloss) = line
            .split_once(" | ")
            .ok_or_else(|| bad("a synset line without ` | ` before its gloss"))?;
        let mut fields = head.split(' ');
        let offset = fields
            .next()
            .filter(|o| o.len() == 8 && o.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad("a synset line that does not start with an 8-digit offset"))?;
        let lex: u32 = fields
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| bad("a synset line without a lexicographer file number"))?;
        let Some(&(_, class)) = CLASSES.iter().find(|(n, _)| *n == lex) else {
            continue;
        };
        let definition = fold_whitespace(definition_of(gloss));
        if definition.chars().count() < MIN_CHARS {
            continue;
        }
        let id = format!("n{offset}");
        let key: [u8; 32] = Sha256::digest(id.as_bytes()).into();
        by_class
            .entry(class)
            .or_default()
            .push((key, id, definition));
    }
    let mut items = Vec::new();
    for (_, class) in CLASSES {
        let Some(mut synsets) = by_class.remove(class) else {
            return Err(Error::Input {
                path: path.to_path_buf(),
                line: None,
                reason: format!("no usable definition of class {class}"),
            });
        };
        synsets.sort_unstable_by_key(|s| s.0);
        synsets.truncate(PER_CLASS);
        // Source order within a class: by offset, as in the file.
        synsets.sort_unstable_by(|a, b| a.1.cmp(&b.1));
        items.extend(
            synsets
                .into_iter()
                .map(|(_, id, text)| (id, text, class.to_string())),
        );
    }
    dedup_build("wordnet-lexnames", path.display().to_string(), items)
}

/// The definition part of a gloss: everything before the first quoted example (and its `;`).
fn definition_of(gloss: &str) -> &str {
    let end = gloss.find('"').unwrap_or(gloss.len());
    gloss[..end].trim().trim_end_matches(';').trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_drop_examples() {
        assert_eq!(
            definition_of("a member of the genus Canis; \"the dog barked all night\"  "),
            "a member of the genus Canis"
        );
        assert_eq!(
            definition_of("an entity that has physical existence  "),
            "an entity that has physical existence"
        );
    }

    #[test]
    fn parses_classes_and_refuses_malformed_lines() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("data.noun");
        let mut text = String::from("  1 This software and database is being provided\n");
        for (k, (lex, _)) in CLASSES.iter().enumerate() {
            for j in 0..3 {
                text.push_str(&format!(
                    "{:08} {lex:02} n 01 word{k}x{j} 0 000 | a long enough definition number {j} of class {k}; \"an example\"  \n",
                    1000 + 10 * k + j
                ));
            }
        }
        // A class not kept, and a too-short definition.
        text.push_str("00009999 03 n 01 entity 0 000 | that which is perceived or known  \n");
        text.push_str("00009998 05 n 01 cat 0 000 | short  \n");
        std::fs::write(&path, &text)?;
        let d = from_file(&path)?;
        assert_eq!(d.labels.len(), 8);
        assert_eq!(d.records.len(), 24);
        assert!(d.records.iter().all(|r| !r.text.contains('"')));
        assert!(d.records.iter().any(|r| r.id == "n00001000"));

        std::fs::write(&path, format!("{text}garbage line without a gloss\n"))?;
        match from_file(&path) {
            Ok(_) => anyhow::bail!("a malformed line was accepted"),
            Err(err) => assert!(err.to_string().contains("data.noun"), "{err}"),
        }
        Ok(())
    }
}
