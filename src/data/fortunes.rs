//! `fortunes`: topic classification over Unix `fortune(6)` quotations.
//!
//! Source: Debian `fortunes` 1:1.99.1-7.3, whose `usr/share/games/fortunes/<category>` files hold
//! entries separated by lines containing only `%`. Eight categories are kept, chosen to be about
//! clearly different things and to have at least ~150 entries each: see [`CATEGORIES`]. (The
//! package's `medicine` has only 74 entries, and people/wisdom/work-style categories overlap in
//! theme, so they are left out.)
//!
//! Cleaning: typewriter overstrikes (`_\x08x`) are resolved, whitespace is folded, entries shorter
//! than [`MIN_CHARS`] characters are dropped, exact duplicates within a category are kept once,
//! and texts found in two categories are dropped. Ids are `<category>.<n>`, n being the entry's
//! 1-based position in its file (before any filtering, so ids never shift).

use std::path::Path;

use super::{dedup_build, describe_packages, extract_deb, fold_whitespace, Dataset};
use crate::hub::catalog::{Package, Registry};
use crate::hub::fetch::Fetcher;
use crate::{Error, Result};

/// The categories kept, which are also the label names.
pub const CATEGORIES: [&str; 8] = [
    "computers",
    "food",
    "law",
    "love",
    "politics",
    "science",
    "sports",
    "startrek",
];

/// Entries shorter than this (in characters, after folding) are dropped.
pub const MIN_CHARS: usize = 20;

/// Where the category files live inside the package.
pub const FORTUNES_DIR: &str = "usr/share/games/fortunes";

/// The Debian package.
pub fn package() -> Package {
    Package {
        registry: Registry::Debian,
        name: "fortunes".into(),
        version: "1:1.99.1-7.3".into(),
        platform: None,
        sha256: "41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5".into(),
    }
}

/// Downloads the package (or reuses the cached download), extracts it and builds the dataset.
pub fn load(fetcher: &Fetcher) -> Result<Dataset> {
    let pkg = package();
    let deb = fetcher.download(&pkg)?;
    let tmp = extract_deb(fetcher, &deb)?;
    let mut d = from_dir(&tmp.path().join(FORTUNES_DIR), &CATEGORIES)?;
    d.name = "fortunes".into();
    d.source = describe_packages(&[pkg]);
    Ok(d)
}

/// Builds the dataset from a folder of fortune files, one label per file in `categories`.
pub fn from_dir(dir: &Path, categories: &[&str]) -> Result<Dataset> {
    let mut items = Vec::new();
    for &cat in categories {
        let path = dir.join(cat);
        let bytes = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Fetch {
                    what: path.display().to_string(),
                    reason: format!(
                        "no fortune category `{cat}`; the package does not hold the expected files (fetch it again)"
                    ),
                }
            } else {
                Error::io(&path, e)
            }
        })?;
        for (i, text) in parse_entries(&bytes).into_iter().enumerate() {
            if text.chars().count() >= MIN_CHARS {
                items.push((format!("{cat}.{}", i + 1), text, cat.to_string()));
            }
        }
    }
    let d = dedup_build("fortunes", dir.display().to_string(), items)?;
    if d.labels.len() != categories.len() {
        return Err(Error::Input {
            path: dir.to_path_buf(),
            line: None,
            reason: format!(
                "only {} of the {} categories hold usable entries",
                d.labels.len(),
                categories.len()
            ),
        });
    }
    Ok(d)
}

/// Splits a fortune file into its entries (every entry, in order, including empty ones, so that
/// positions are stable), with overstrikes resolved and whitespace folded.
pub fn parse_entries(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut entries = Vec::new();
    let mut current = String::new();
    for line in text.split('\n') {
        if line.trim_end() == "%" {
            entries.push(fold_whitespace(&resolve_backspaces(&current)));
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    if !current.trim().is_empty() {
        entries.push(fold_whitespace(&resolve_backspaces(&current)));
    }
    entries
}

/// Applies backspaces the way a terminal does: `_\x08I` (underlined I) becomes `I`.
fn resolve_backspaces(text: &str) -> String {
    if !text.contains('\u{8}') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cleans_and_dedupes() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("computers"),
            "A computer is a\n\tstate machine, mostly.\n%\nshort\n%\nThis one is *_\u{8}o_\u{8}n_\u{8}l_\u{8}y* ones and zeroes.\n%\nShared between two categories, alas.\n%\nA computer is a state machine, mostly.\n%\n",
        )?;
        std::fs::write(
            dir.path().join("food"),
            "Shared between two categories, alas.\n%\nDinner is ready when the smoke alarm goes off.\n",
        )?;
        let d = from_dir(dir.path(), &["computers", "food"])?;
        assert_eq!(d.labels, vec!["computers", "food"]);
        let got: Vec<_> = d
            .records
            .iter()
            .map(|r| (r.id.as_str(), r.text.as_str(), d.label_name(r)))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "computers.1",
                    "A computer is a state machine, mostly.",
                    "computers"
                ),
                (
                    "computers.3",
                    "This one is *only* ones and zeroes.",
                    "computers"
                ),
                (
                    "food.2",
                    "Dinner is ready when the smoke alarm goes off.",
                    "food"
                ),
            ]
        );
        let e = from_dir(dir.path(), &["computers", "nope"])
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("nope"));
        Ok(())
    }
}
