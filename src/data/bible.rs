//! `bible-genre-en` / `bible-genre-es`: Bible verses labelled by the genre of their book, in
//! English (King James) and Spanish (Reina-Valera 1909), aligned verse by verse.
//!
//! Sources: Debian `sword-text-kjv` 14.3-1 and `sword-text-sparv` 2.60-1, two SWORD zText modules
//! (`usr/share/sword/modules/texts/ztext/<module>/{ot,nt}.{bzs,bzv,bzz}`) in the KJV
//! versification. The format, as read by [`read_ztext`]:
//!
//! * `.bzs`: 12-byte block entries `(u32 offset, u32 size, u32 uncompressed size)`, little-endian,
//!   into `.bzz`, whose blocks are zlib streams;
//! * `.bzv`: 10-byte entries `(u32 block, u32 offset, u16 size)`, one per index slot, into the
//!   uncompressed block;
//! * the index slots of a testament are: 2 leading slots (module and testament headings), then for
//!   each book 1 book-heading slot and, for each chapter, 1 chapter-heading slot followed by one
//!   slot per verse ([`KJV_BOOKS`] gives the books, in order, with their verses per chapter).
//!
//! Verse text is OSIS XML, turned into plain text by [`osis_to_text`]. A verse empty in either
//! language is dropped from both (18 verses, all empty in the Spanish module), so the two datasets
//! hold exactly the same ids (`"John.3.16"`, OSIS book ids) and split identically: they double as
//! English–Spanish parallel anchors. 31,084 verses each.
//!
//! Labels ([`Genre`]): `law` (Genesis–Deuteronomy), `history` (Joshua–Esther and Acts), `poetry`
//! (Job–Song of Solomon), `prophecy` (Isaiah–Malachi, Lamentations included as in the book order,
//! and Revelation, which calls itself "the words of this prophecy"), `gospels` (Matthew–John) and
//! `letters` (Romans–Jude).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{describe_packages, extract_deb, fold_whitespace, Dataset, Record};
use crate::hub::catalog::{Package, Registry};
use crate::hub::fetch::Fetcher;
use crate::{Error, Result};

/// Where the zText modules live inside the packages.
pub const ZTEXT_DIR: &str = "usr/share/sword/modules/texts/ztext";

/// The Debian package of the King James Version (SWORD module `engKJV2006eb`).
pub fn package_kjv() -> Package {
    Package {
        registry: Registry::Debian,
        name: "sword-text-kjv".into(),
        version: "14.3-1".into(),
        platform: None,
        sha256: "9f463f28ce665f6f528fc723179722bced880a4c5485f7a41bf742838315de57".into(),
    }
}

/// The Debian package of the Reina-Valera 1909 (SWORD module `spaRV1909eb`).
pub fn package_sparv() -> Package {
    Package {
        registry: Registry::Debian,
        name: "sword-text-sparv".into(),
        version: "2.60-1".into(),
        platform: None,
        sha256: "5c87f9b2bc97457e8a872f5bae7ea7ce59cb3de1dcee73e4d4740451863694cf".into(),
    }
}

/// The genre of a book: the label of its verses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Genre {
    /// Genesis–Deuteronomy.
    Law,
    /// Joshua–Esther, and Acts.
    History,
    /// Job, Psalms, Proverbs, Ecclesiastes, Song of Solomon.
    Poetry,
    /// Isaiah–Malachi, and Revelation.
    Prophecy,
    /// Matthew, Mark, Luke, John.
    Gospels,
    /// Romans–Jude.
    Letters,
}

impl Genre {
    /// Every genre.
    pub const ALL: [Genre; 6] = [
        Genre::Law,
        Genre::History,
        Genre::Poetry,
        Genre::Prophecy,
        Genre::Gospels,
        Genre::Letters,
    ];

    /// The label name.
    pub fn name(self) -> &'static str {
        match self {
            Genre::Law => "law",
            Genre::History => "history",
            Genre::Poetry => "poetry",
            Genre::Prophecy => "prophecy",
            Genre::Gospels => "gospels",
            Genre::Letters => "letters",
        }
    }
}

/// A book of the KJV versification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Book {
    /// The OSIS book id (`Gen`, `1Sam`, `John`), used in verse ids.
    pub osis: &'static str,
    /// The genre of the book.
    pub genre: Genre,
    /// The number of verses of each chapter.
    pub verses: &'static [u8],
}

/// The number of Old Testament books at the start of [`KJV_BOOKS`].
pub const OT_BOOKS: usize = 39;

/// The 66 books of the KJV versification, in canonical order, with their verses per chapter
/// (1,189 chapters, 31,102 verses).
pub const KJV_BOOKS: [Book; 66] = [
    Book {
        osis: "Gen",
        genre: Genre::Law,
        verses: &[
            31, 25, 24, 26, 32, 22, 24, 22, 29, 32, 32, 20, 18, 24, 21, 16, 27, 33, 38, 18, 34, 24,
            20, 67, 34, 35, 46, 22, 35, 43, 55, 32, 20, 31, 29, 43, 36, 30, 23, 23, 57, 38, 34, 34,
            28, 34, 31, 22, 33, 26,
        ],
    },
    Book {
        osis: "Exod",
        genre: Genre::Law,
        verses: &[
            22, 25, 22, 31, 23, 30, 25, 32, 35, 29, 10, 51, 22, 31, 27, 36, 16, 27, 25, 26, 36, 31,
            33, 18, 40, 37, 21, 43, 46, 38, 18, 35, 23, 35, 35, 38, 29, 31, 43, 38,
        ],
    },
    Book {
        osis: "Lev",
        genre: Genre::Law,
        verses: &[
            17, 16, 17, 35, 19, 30, 38, 36, 24, 20, 47, 8, 59, 57, 33, 34, 16, 30, 37, 27, 24, 33,
            44, 23, 55, 46, 34,
        ],
    },
    Book {
        osis: "Num",
        genre: Genre::Law,
        verses: &[
            54, 34, 51, 49, 31, 27, 89, 26, 23, 36, 35, 16, 33, 45, 41, 50, 13, 32, 22, 29, 35, 41,
            30, 25, 18, 65, 23, 31, 40, 16, 54, 42, 56, 29, 34, 13,
        ],
    },
    Book {
        osis: "Deut",
        genre: Genre::Law,
        verses: &[
            46, 37, 29, 49, 33, 25, 26, 20, 29, 22, 32, 32, 18, 29, 23, 22, 20, 22, 21, 20, 23, 30,
            25, 22, 19, 19, 26, 68, 29, 20, 30, 52, 29, 12,
        ],
    },
    Book {
        osis: "Josh",
        genre: Genre::History,
        verses: &[
            18, 24, 17, 24, 15, 27, 26, 35, 27, 43, 23, 24, 33, 15, 63, 10, 18, 28, 51, 9, 45, 34,
            16, 33,
        ],
    },
    Book {
        osis: "Judg",
        genre: Genre::History,
        verses: &[
            36, 23, 31, 24, 31, 40, 25, 35, 57, 18, 40, 15, 25, 20, 20, 31, 13, 31, 30, 48, 25,
        ],
    },
    Book {
        osis: "Ruth",
        genre: Genre::History,
        verses: &[22, 23, 18, 22],
    },
    Book {
        osis: "1Sam",
        genre: Genre::History,
        verses: &[
            28, 36, 21, 22, 12, 21, 17, 22, 27, 27, 15, 25, 23, 52, 35, 23, 58, 30, 24, 42, 15, 23,
            29, 22, 44, 25, 12, 25, 11, 31, 13,
        ],
    },
    Book {
        osis: "2Sam",
        genre: Genre::History,
        verses: &[
            27, 32, 39, 12, 25, 23, 29, 18, 13, 19, 27, 31, 39, 33, 37, 23, 29, 33, 43, 26, 22, 51,
            39, 25,
        ],
    },
    Book {
        osis: "1Kgs",
        genre: Genre::History,
        verses: &[
            53, 46, 28, 34, 18, 38, 51, 66, 28, 29, 43, 33, 34, 31, 34, 34, 24, 46, 21, 43, 29, 53,
        ],
    },
    Book {
        osis: "2Kgs",
        genre: Genre::History,
        verses: &[
            18, 25, 27, 44, 27, 33, 20, 29, 37, 36, 21, 21, 25, 29, 38, 20, 41, 37, 37, 21, 26, 20,
            37, 20, 30,
        ],
    },
    Book {
        osis: "1Chr",
        genre: Genre::History,
        verses: &[
            54, 55, 24, 43, 26, 81, 40, 40, 44, 14, 47, 40, 14, 17, 29, 43, 27, 17, 19, 8, 30, 19,
            32, 31, 31, 32, 34, 21, 30,
        ],
    },
    Book {
        osis: "2Chr",
        genre: Genre::History,
        verses: &[
            17, 18, 17, 22, 14, 42, 22, 18, 31, 19, 23, 16, 22, 15, 19, 14, 19, 34, 11, 37, 20, 12,
            21, 27, 28, 23, 9, 27, 36, 27, 21, 33, 25, 33, 27, 23,
        ],
    },
    Book {
        osis: "Ezra",
        genre: Genre::History,
        verses: &[11, 70, 13, 24, 17, 22, 28, 36, 15, 44],
    },
    Book {
        osis: "Neh",
        genre: Genre::History,
        verses: &[11, 20, 32, 23, 19, 19, 73, 18, 38, 39, 36, 47, 31],
    },
    Book {
        osis: "Esth",
        genre: Genre::History,
        verses: &[22, 23, 15, 17, 14, 14, 10, 17, 32, 3],
    },
    Book {
        osis: "Job",
        genre: Genre::Poetry,
        verses: &[
            22, 13, 26, 21, 27, 30, 21, 22, 35, 22, 20, 25, 28, 22, 35, 22, 16, 21, 29, 29, 34, 30,
            17, 25, 6, 14, 23, 28, 25, 31, 40, 22, 33, 37, 16, 33, 24, 41, 30, 24, 34, 17,
        ],
    },
    Book {
        osis: "Ps",
        genre: Genre::Poetry,
        verses: &[
            6, 12, 8, 8, 12, 10, 17, 9, 20, 18, 7, 8, 6, 7, 5, 11, 15, 50, 14, 9, 13, 31, 6, 10,
            22, 12, 14, 9, 11, 12, 24, 11, 22, 22, 28, 12, 40, 22, 13, 17, 13, 11, 5, 26, 17, 11,
            9, 14, 20, 23, 19, 9, 6, 7, 23, 13, 11, 11, 17, 12, 8, 12, 11, 10, 13, 20, 7, 35, 36,
            5, 24, 20, 28, 23, 10, 12, 20, 72, 13, 19, 16, 8, 18, 12, 13, 17, 7, 18, 52, 17, 16,
            15, 5, 23, 11, 13, 12, 9, 9, 5, 8, 28, 22, 35, 45, 48, 43, 13, 31, 7, 10, 10, 9, 8, 18,
            19, 2, 29, 176, 7, 8, 9, 4, 8, 5, 6, 5, 6, 8, 8, 3, 18, 3, 3, 21, 26, 9, 8, 24, 13, 10,
            7, 12, 15, 21, 10, 20, 14, 9, 6,
        ],
    },
    Book {
        osis: "Prov",
        genre: Genre::Poetry,
        verses: &[
            33, 22, 35, 27, 23, 35, 27, 36, 18, 32, 31, 28, 25, 35, 33, 33, 28, 24, 29, 30, 31, 29,
            35, 34, 28, 28, 27, 28, 27, 33, 31,
        ],
    },
    Book {
        osis: "Eccl",
        genre: Genre::Poetry,
        verses: &[18, 26, 22, 16, 20, 12, 29, 17, 18, 20, 10, 14],
    },
    Book {
        osis: "Song",
        genre: Genre::Poetry,
        verses: &[17, 17, 11, 16, 16, 13, 13, 14],
    },
    Book {
        osis: "Isa",
        genre: Genre::Prophecy,
        verses: &[
            31, 22, 26, 6, 30, 13, 25, 22, 21, 34, 16, 6, 22, 32, 9, 14, 14, 7, 25, 6, 17, 25, 18,
            23, 12, 21, 13, 29, 24, 33, 9, 20, 24, 17, 10, 22, 38, 22, 8, 31, 29, 25, 28, 28, 25,
            13, 15, 22, 26, 11, 23, 15, 12, 17, 13, 12, 21, 14, 21, 22, 11, 12, 19, 12, 25, 24,
        ],
    },
    Book {
        osis: "Jer",
        genre: Genre::Prophecy,
        verses: &[
            19, 37, 25, 31, 31, 30, 34, 22, 26, 25, 23, 17, 27, 22, 21, 21, 27, 23, 15, 18, 14, 30,
            40, 10, 38, 24, 22, 17, 32, 24, 40, 44, 26, 22, 19, 32, 21, 28, 18, 16, 18, 22, 13, 30,
            5, 28, 7, 47, 39, 46, 64, 34,
        ],
    },
    Book {
        osis: "Lam",
        genre: Genre::Prophecy,
        verses: &[22, 22, 66, 22, 22],
    },
    Book {
        osis: "Ezek",
        genre: Genre::Prophecy,
        verses: &[
            28, 10, 27, 17, 17, 14, 27, 18, 11, 22, 25, 28, 23, 23, 8, 63, 24, 32, 14, 49, 32, 31,
            49, 27, 17, 21, 36, 26, 21, 26, 18, 32, 33, 31, 15, 38, 28, 23, 29, 49, 26, 20, 27, 31,
            25, 24, 23, 35,
        ],
    },
    Book {
        osis: "Dan",
        genre: Genre::Prophecy,
        verses: &[21, 49, 30, 37, 31, 28, 28, 27, 27, 21, 45, 13],
    },
    Book {
        osis: "Hos",
        genre: Genre::Prophecy,
        verses: &[11, 23, 5, 19, 15, 11, 16, 14, 17, 15, 12, 14, 16, 9],
    },
    Book {
        osis: "Joel",
        genre: Genre::Prophecy,
        verses: &[20, 32, 21],
    },
    Book {
        osis: "Amos",
        genre: Genre::Prophecy,
        verses: &[15, 16, 15, 13, 27, 14, 17, 14, 15],
    },
    Book {
        osis: "Obad",
        genre: Genre::Prophecy,
        verses: &[21],
    },
    Book {
        osis: "Jonah",
        genre: Genre::Prophecy,
        verses: &[17, 10, 10, 11],
    },
    Book {
        osis: "Mic",
        genre: Genre::Prophecy,
        verses: &[16, 13, 12, 13, 15, 16, 20],
    },
    Book {
        osis: "Nah",
        genre: Genre::Prophecy,
        verses: &[15, 13, 19],
    },
    Book {
        osis: "Hab",
        genre: Genre::Prophecy,
        verses: &[17, 20, 19],
    },
    Book {
        osis: "Zeph",
        genre: Genre::Prophecy,
        verses: &[18, 15, 20],
    },
    Book {
        osis: "Hag",
        genre: Genre::Prophecy,
        verses: &[15, 23],
    },
    Book {
        osis: "Zech",
        genre: Genre::Prophecy,
        verses: &[21, 13, 10, 14, 11, 15, 14, 23, 17, 12, 17, 14, 9, 21],
    },
    Book {
        osis: "Mal",
        genre: Genre::Prophecy,
        verses: &[14, 17, 18, 6],
    },
    Book {
        osis: "Matt",
        genre: Genre::Gospels,
        verses: &[
            25, 23, 17, 25, 48, 34, 29, 34, 38, 42, 30, 50, 58, 36, 39, 28, 27, 35, 30, 34, 46, 46,
            39, 51, 46, 75, 66, 20,
        ],
    },
    Book {
        osis: "Mark",
        genre: Genre::Gospels,
        verses: &[
            45, 28, 35, 41, 43, 56, 37, 38, 50, 52, 33, 44, 37, 72, 47, 20,
        ],
    },
    Book {
        osis: "Luke",
        genre: Genre::Gospels,
        verses: &[
            80, 52, 38, 44, 39, 49, 50, 56, 62, 42, 54, 59, 35, 35, 32, 31, 37, 43, 48, 47, 38, 71,
            56, 53,
        ],
    },
    Book {
        osis: "John",
        genre: Genre::Gospels,
        verses: &[
            51, 25, 36, 54, 47, 71, 53, 59, 41, 42, 57, 50, 38, 31, 27, 33, 26, 40, 42, 31, 25,
        ],
    },
    Book {
        osis: "Acts",
        genre: Genre::History,
        verses: &[
            26, 47, 26, 37, 42, 15, 60, 40, 43, 48, 30, 25, 52, 28, 41, 40, 34, 28, 41, 38, 40, 30,
            35, 27, 27, 32, 44, 31,
        ],
    },
    Book {
        osis: "Rom",
        genre: Genre::Letters,
        verses: &[
            32, 29, 31, 25, 21, 23, 25, 39, 33, 21, 36, 21, 14, 23, 33, 27,
        ],
    },
    Book {
        osis: "1Cor",
        genre: Genre::Letters,
        verses: &[
            31, 16, 23, 21, 13, 20, 40, 13, 27, 33, 34, 31, 13, 40, 58, 24,
        ],
    },
    Book {
        osis: "2Cor",
        genre: Genre::Letters,
        verses: &[24, 17, 18, 18, 21, 18, 16, 24, 15, 18, 33, 21, 14],
    },
    Book {
        osis: "Gal",
        genre: Genre::Letters,
        verses: &[24, 21, 29, 31, 26, 18],
    },
    Book {
        osis: "Eph",
        genre: Genre::Letters,
        verses: &[23, 22, 21, 32, 33, 24],
    },
    Book {
        osis: "Phil",
        genre: Genre::Letters,
        verses: &[30, 30, 21, 23],
    },
    Book {
        osis: "Col",
        genre: Genre::Letters,
        verses: &[29, 23, 25, 18],
    },
    Book {
        osis: "1Thess",
        genre: Genre::Letters,
        verses: &[10, 20, 13, 18, 28],
    },
    Book {
        osis: "2Thess",
        genre: Genre::Letters,
        verses: &[12, 17, 18],
    },
    Book {
        osis: "1Tim",
        genre: Genre::Letters,
        verses: &[20, 15, 16, 16, 25, 21],
    },
    Book {
        osis: "2Tim",
        genre: Genre::Letters,
        verses: &[18, 26, 17, 22],
    },
    Book {
        osis: "Titus",
        genre: Genre::Letters,
        verses: &[16, 15, 15],
    },
    Book {
        osis: "Phlm",
        genre: Genre::Letters,
        verses: &[25],
    },
    Book {
        osis: "Heb",
        genre: Genre::Letters,
        verses: &[14, 18, 19, 16, 14, 20, 28, 13, 28, 39, 40, 29, 25],
    },
    Book {
        osis: "Jas",
        genre: Genre::Letters,
        verses: &[27, 26, 18, 17, 20],
    },
    Book {
        osis: "1Pet",
        genre: Genre::Letters,
        verses: &[25, 25, 22, 19, 14],
    },
    Book {
        osis: "2Pet",
        genre: Genre::Letters,
        verses: &[21, 22, 18],
    },
    Book {
        osis: "1John",
        genre: Genre::Letters,
        verses: &[10, 29, 24, 21, 21],
    },
    Book {
        osis: "2John",
        genre: Genre::Letters,
        verses: &[13],
    },
    Book {
        osis: "3John",
        genre: Genre::Letters,
        verses: &[14],
    },
    Book {
        osis: "Jude",
        genre: Genre::Letters,
        verses: &[25],
    },
    Book {
        osis: "Rev",
        genre: Genre::Prophecy,
        verses: &[
            20, 29, 22, 11, 14, 17, 17, 13, 21, 11, 19, 17, 18, 20, 8, 21, 18, 24, 21, 15, 27, 21,
        ],
    },
];

/// A verse of the KJV versification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerseRef {
    /// The OSIS book id.
    pub book: &'static str,
    /// The 1-based chapter.
    pub chapter: u16,
    /// The 1-based verse.
    pub verse: u16,
    /// The genre of the book.
    pub genre: Genre,
}

impl std::fmt::Display for VerseRef {
    /// `Book.chapter.verse`, e.g. `John.3.16`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.book, self.chapter, self.verse)
    }
}

/// What one index slot of a testament holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// The module and testament headings.
    Intro,
    /// A book heading.
    Book,
    /// A chapter heading: its `Book.chapter` OSIS id.
    Chapter(&'static str, u16),
    /// A verse.
    Verse(VerseRef),
}

/// The index slots of a testament, in order.
fn layout(books: &[Book]) -> Vec<Slot> {
    let mut slots = vec![Slot::Intro, Slot::Intro];
    for b in books {
        slots.push(Slot::Book);
        for (c, &n) in b.verses.iter().enumerate() {
            let chapter = c as u16 + 1;
            slots.push(Slot::Chapter(b.osis, chapter));
            for v in 1..=u16::from(n) {
                slots.push(Slot::Verse(VerseRef {
                    book: b.osis,
                    chapter,
                    verse: v,
                    genre: b.genre,
                }));
            }
        }
    }
    slots
}

/// Reads every verse of a zText module folder (holding `ot.*` and `nt.*`) in the KJV
/// versification: `(verse, OSIS text)` for all 31,102 verses, in canonical order (a verse the
/// module lacks has an empty text).
///
/// # Errors
/// [`Error::Io`] when a file is missing or unreadable; [`Error::Input`] naming the file when it is
/// truncated, an entry points outside its block, a block does not inflate to its recorded size, or
/// the index does not have the KJV layout (wrong number of slots, or a chapter heading naming
/// another chapter).
pub fn read_ztext(dir: &Path) -> Result<Vec<(VerseRef, String)>> {
    let (ot, nt) = KJV_BOOKS.split_at(OT_BOOKS);
    let mut verses = read_testament(dir, "ot", ot)?;
    verses.extend(read_testament(dir, "nt", nt)?);
    Ok(verses)
}

fn read_testament(dir: &Path, testament: &str, books: &[Book]) -> Result<Vec<(VerseRef, String)>> {
    let read = |ext: &str| -> Result<(PathBuf, Vec<u8>)> {
        let path = dir.join(format!("{testament}.{ext}"));
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        Ok((path, bytes))
    };
    let (bzs_path, bzs) = read("bzs")?;
    let (bzv_path, bzv) = read("bzv")?;
    let (bzz_path, bzz) = read("bzz")?;
    let bad = |path: &Path, reason: String| Error::Input {
        path: path.to_path_buf(),
        line: None,
        reason,
    };
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    if bzs.len() % 12 != 0 || bzv.len() % 10 != 0 {
        let (p, unit) = if bzs.len() % 12 != 0 {
            (&bzs_path, 12)
        } else {
            (&bzv_path, 10)
        };
        return Err(bad(
            p,
            format!("size is not a multiple of {unit} bytes: truncated; fetch the module again"),
        ));
    }
    let slots = layout(books);
    let n_entries = bzv.len() / 10;
    if n_entries != slots.len() {
        return Err(bad(
            &bzv_path,
            format!(
                "{n_entries} index entries where the KJV versification has {} (2 headings + books + chapters + verses); \
                 the module does not use the KJV versification",
                slots.len()
            ),
        ));
    }
    let mut blocks: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut out = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        let e = &bzv[i * 10..i * 10 + 10];
        let (block, offset, size) = (
            u32_at(e, 0),
            u32_at(e, 4) as usize,
            usize::from(u16::from_le_bytes([e[8], e[9]])),
        );
        let text = if size == 0 {
            String::new()
        } else {
            let data = match blocks.entry(block) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    v.insert(inflate_block(&bzs, &bzz, block, &bzs_path, &bzz_path)?)
                }
            };
            let bytes = data.get(offset..offset + size).ok_or_else(|| {
                bad(
                    &bzv_path,
                    format!("entry {i} points past the end of block {block}"),
                )
            })?;
            String::from_utf8_lossy(bytes).into_owned()
        };
        match slot {
            Slot::Verse(v) => out.push((*v, text)),
            Slot::Chapter(book, chapter) => {
                if let Some(id) = chapter_osis_id(&text) {
                    if id != format!("{book}.{chapter}") {
                        return Err(bad(
                            &bzv_path,
                            format!(
                                "slot {i} should head chapter {book}.{chapter} but heads {id}; \
                                 the module does not use the KJV versification"
                            ),
                        ));
                    }
                }
            }
            Slot::Intro | Slot::Book => {}
        }
    }
    Ok(out)
}

/// Inflates block `block` of a `.bzz` file, checked against its `.bzs` entry.
fn inflate_block(
    bzs: &[u8],
    bzz: &[u8],
    block: u32,
    bzs_path: &Path,
    bzz_path: &Path,
) -> Result<Vec<u8>> {
    let bad = |path: &Path, reason: String| Error::Input {
        path: path.to_path_buf(),
        line: None,
        reason,
    };
    let b = block as usize;
    let entry = bzs.get(b * 12..b * 12 + 12).ok_or_else(|| {
        bad(
            bzs_path,
            format!(
                "the index names block {block}, but there are only {} blocks",
                bzs.len() / 12
            ),
        )
    })?;
    let u32_at = |i: usize| {
        u32::from_le_bytes([entry[i], entry[i + 1], entry[i + 2], entry[i + 3]]) as usize
    };
    let (start, len, full) = (u32_at(0), u32_at(4), u32_at(8));
    let raw = bzz.get(start..start.saturating_add(len)).ok_or_else(|| {
        bad(
            bzz_path,
            format!(
                "block {block} ends past the end of the file: truncated; fetch the module again"
            ),
        )
    })?;
    // `full` comes from the file: never trust it for an allocation, and never inflate more than
    // it promises (plus one byte, to notice a block that inflates to more).
    let mut inflated = Vec::with_capacity(full.min(raw.len().saturating_mul(8)));
    flate2::read::ZlibDecoder::new(raw)
        .take(full as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| {
            bad(
                bzz_path,
                format!("block {block} is not a zlib stream ({e})"),
            )
        })?;
    if inflated.len() != full {
        let got = if inflated.len() > full {
            "more".to_string()
        } else {
            inflated.len().to_string()
        };
        return Err(bad(
            bzz_path,
            format!("block {block} inflates to {got} bytes, the index says {full}"),
        ));
    }
    Ok(inflated)
}

/// The `osisID` of the first `<chapter …>` tag, if any.
fn chapter_osis_id(osis: &str) -> Option<&str> {
    let start = osis.find("<chapter")?;
    let tag = &osis[start..start + osis[start..].find('>')?];
    let at = tag.find("osisID=\"")? + "osisID=\"".len();
    let len = tag[at..].find('"')?;
    Some(&tag[at..at + len])
}

/// Plain text of an OSIS verse: `<note>`s and non-canonical `<title>`s are dropped with their
/// content (canonical titles, such as the Psalm superscriptions the Spanish text has inside verse 1,
/// are kept), every other tag is removed (block tags such as `<l/>` or `<div/>` leave a space),
/// character references are decoded, pilcrows (`¶`) are removed and whitespace is folded.
pub fn osis_to_text(osis: &str) -> String {
    let mut out = String::with_capacity(osis.len());
    // The end tag we are skipping to, with a nesting depth.
    let mut skipping: Option<(&str, usize)> = None;
    let mut rest = osis;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            if skipping.is_none() {
                out.push_str(rest);
            }
            break;
        };
        if skipping.is_none() {
            out.push_str(&rest[..lt]);
        }
        let Some(gt) = rest[lt..].find('>') else {
            break;
        };
        let tag = &rest[lt + 1..lt + gt];
        rest = &rest[lt + gt + 1..];
        let closing = tag.starts_with('/');
        let self_closing = tag.ends_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == ':' || *c == '_')
            .collect();
        if let Some((skip, depth)) = skipping {
            if name == skip && !self_closing {
                let depth = if closing { depth - 1 } else { depth + 1 };
                skipping = (depth > 0).then_some((skip, depth));
            }
            continue;
        }
        if !closing && !self_closing {
            if name == "note" {
                skipping = Some(("note", 1));
                continue;
            }
            if name == "title" && !tag.contains("canonical=\"true\"") {
                skipping = Some(("title", 1));
                continue;
            }
        }
        if matches!(
            name.as_str(),
            "div"
                | "l"
                | "lg"
                | "lb"
                | "p"
                | "chapter"
                | "milestone"
                | "title"
                | "verse"
                | "br"
                | "list"
                | "item"
                | "head"
        ) {
            out.push(' ');
        }
    }
    let text = super::decode_entities(&out).replace('¶', " ");
    fold_whitespace(&strip_usfm_markers(&text))
}

/// Removes USFM character markers left in some OSIS conversions (`\nd LORD` → `LORD`, and the
/// `\+nd*` / `\nd*` closers): a backslash, an optional `+`, letters and digits, an optional `*`.
fn strip_usfm_markers(text: &str) -> String {
    if !text.contains('\\') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'+') {
            chars.next();
        }
        let mut marker = false;
        while chars.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            chars.next();
            marker = true;
        }
        // A closing `*`, or the space after an opening marker, goes with the marker.
        if chars.peek() == Some(&'*') || (marker && chars.peek() == Some(&' ')) {
            chars.next();
        }
    }
    out
}

/// The aligned English and Spanish datasets from two zText module folders: verses empty in either
/// language are dropped from both.
///
/// # Errors
/// The errors of [`read_ztext`] for either folder.
pub fn parallel_from_dirs(en_dir: &Path, es_dir: &Path) -> Result<(Dataset, Dataset)> {
    let en = read_ztext(en_dir)?;
    let es = read_ztext(es_dir)?;
    let labels: Vec<String> = {
        let mut g = Genre::ALL.map(Genre::name).to_vec();
        g.sort_unstable();
        g.into_iter().map(String::from).collect()
    };
    let index = |g: Genre| labels.iter().position(|l| l == g.name()).unwrap_or(0);
    let (mut en_records, mut es_records) = (Vec::new(), Vec::new());
    for ((v, en_osis), (_, es_osis)) in en.iter().zip(&es) {
        let (e, s) = (osis_to_text(en_osis), osis_to_text(es_osis));
        if e.is_empty() || s.is_empty() {
            continue;
        }
        let id = v.to_string();
        let label = index(v.genre);
        en_records.push(Record {
            id: id.clone(),
            text: e,
            label,
        });
        es_records.push(Record { id, text: s, label });
    }
    Ok((
        Dataset::try_new(
            "bible-genre-en",
            en_dir.display().to_string(),
            labels.clone(),
            en_records,
        )?,
        Dataset::try_new(
            "bible-genre-es",
            es_dir.display().to_string(),
            labels,
            es_records,
        )?,
    ))
}

/// Downloads both packages (or reuses the cached downloads), extracts them and builds the aligned
/// English and Spanish datasets.
///
/// # Errors
/// The errors of [`Fetcher::download`]; [`Error::Fetch`] when a package cannot be extracted or
/// does not hold exactly one zText module; [`Error::Io`] when the extracted folder cannot be
/// listed; the errors of [`parallel_from_dirs`].
pub fn load_parallel(fetcher: &Fetcher) -> Result<(Dataset, Dataset)> {
    let (kjv, sparv) = (package_kjv(), package_sparv());
    let en_tmp = extract_deb(fetcher, &fetcher.download(&kjv)?)?;
    let es_tmp = extract_deb(fetcher, &fetcher.download(&sparv)?)?;
    let (mut en, mut es) =
        parallel_from_dirs(&module_dir(en_tmp.path())?, &module_dir(es_tmp.path())?)?;
    let source = describe_packages(&[kjv, sparv]);
    en.source = source.clone();
    es.source = source;
    Ok((en, es))
}

/// The Debian package of the World English Bible with Deuterocanon (SWORD module
/// `engWEB2015eb`, NRSVA versification).
pub fn package_web() -> Package {
    Package {
        registry: Registry::Debian,
        name: "sword-text-web".into(),
        version: "426.0-1".into(),
        platform: None,
        sha256: "930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1".into(),
    }
}

/// Reads a zText module whose versification is not the KJV's, by its markers: each chapter-heading
/// slot carries `<chapter osisID="Book.N" sID=…>`, and the slots after it, up to the next heading,
/// are that chapter's verses 1, 2, … (book headings, `type="book"`, are skipped). Returns each verse
/// as (`Book.chapter.verse`, OSIS text), in module order. Verses before the first chapter heading
/// are dropped.
///
/// Fails like [`read_ztext`] on a missing, truncated or inconsistent file.
///
/// # Errors
/// [`Error::Io`] or [`Error::Input`] naming the file when one is missing, truncated, or points
/// outside its blocks.
pub fn read_ztext_by_markers(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for testament in ["ot", "nt"] {
        let read = |ext: &str| -> Result<(PathBuf, Vec<u8>)> {
            let path = dir.join(format!("{testament}.{ext}"));
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            Ok((path, bytes))
        };
        let (bzs_path, bzs) = read("bzs")?;
        let (bzv_path, bzv) = read("bzv")?;
        let (bzz_path, bzz) = read("bzz")?;
        if bzv.len() % 10 != 0 || bzs.len() % 12 != 0 {
            return Err(Error::Input {
                path: bzv_path,
                line: None,
                reason: "index sizes are not whole entries: truncated; fetch the module again"
                    .into(),
            });
        }
        let mut blocks: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut chapter: Option<String> = None;
        let mut verse = 0u32;
        for (i, e) in bzv.chunks_exact(10).enumerate() {
            let block = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            let offset = u32::from_le_bytes([e[4], e[5], e[6], e[7]]) as usize;
            let size = usize::from(u16::from_le_bytes([e[8], e[9]]));
            let text = if size == 0 {
                String::new()
            } else {
                let data = match blocks.entry(block) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => {
                        v.insert(inflate_block(&bzs, &bzz, block, &bzs_path, &bzz_path)?)
                    }
                };
                let bytes = data
                    .get(offset..offset + size)
                    .ok_or_else(|| Error::Input {
                        path: bzv_path.clone(),
                        line: None,
                        reason: format!("entry {i} points past the end of block {block}"),
                    })?;
                String::from_utf8_lossy(bytes).into_owned()
            };
            if text.contains("type=\"book\"") && text.contains("sID=") {
                chapter = None;
                continue;
            }
            if let Some(id) = chapter_osis_id(&text).filter(|_| text.contains("sID=")) {
                chapter = Some(id.to_string());
                verse = 0;
                continue;
            }
            if let Some(c) = &chapter {
                verse += 1;
                out.push((format!("{c}.{verse}"), text));
            }
        }
    }
    Ok(out)
}

/// One verse in two English translations: a paraphrase pair for retrieval (the modern text is the
/// query, the King James text the document to find).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParaphrasePair {
    /// The OSIS verse id, e.g. `John.3.16`.
    pub id: String,
    /// The King James text (the document).
    pub text: String,
    /// The World English Bible text (the query).
    pub query: String,
}

/// Aligns the King James module (KJV versification) with the World English Bible module (read by
/// [`read_ztext_by_markers`]) verse by verse. A chapter is kept only when both modules give it the
/// same number of verses (so a versification difference never pairs two different verses), and a
/// verse only when both texts are non-empty and differ.
///
/// # Errors
/// The errors of [`read_ztext`] and [`read_ztext_by_markers`]; [`Error::Input`] when no verse
/// aligns.
pub fn paraphrase_from_dirs(kjv_dir: &Path, web_dir: &Path) -> Result<Vec<ParaphrasePair>> {
    let kjv = read_ztext(kjv_dir)?;
    let web = read_ztext_by_markers(web_dir)?;
    let chapter_of = |id: &str| id.rsplit_once('.').map(|(c, _)| c.to_string());
    let mut web_count: HashMap<String, usize> = HashMap::new();
    for (id, _) in &web {
        if let Some(c) = chapter_of(id) {
            *web_count.entry(c).or_default() += 1;
        }
    }
    let web: HashMap<&str, &str> = web.iter().map(|(i, t)| (i.as_str(), t.as_str())).collect();
    let mut out = Vec::new();
    for (v, osis) in &kjv {
        let id = v.to_string();
        let book_verses = KJV_BOOKS
            .iter()
            .find(|b| b.osis == v.book)
            .and_then(|b| b.verses.get(usize::from(v.chapter) - 1))
            .map(|&n| usize::from(n));
        let chapter = format!("{}.{}", v.book, v.chapter);
        if web_count.get(&chapter).copied() != book_verses {
            continue;
        }
        let Some(web_osis) = web.get(id.as_str()) else {
            continue;
        };
        let (text, query) = (osis_to_text(osis), osis_to_text(web_osis));
        if text.is_empty() || query.is_empty() || text == query {
            continue;
        }
        out.push(ParaphrasePair { id, text, query });
    }
    if out.is_empty() {
        return Err(Error::Input {
            path: web_dir.to_path_buf(),
            line: None,
            reason: "no verse could be aligned with the King James text; the module layout changed"
                .into(),
        });
    }
    Ok(out)
}

/// Downloads the King James and World English Bible packages (or reuses the cached downloads) and
/// aligns them with [`paraphrase_from_dirs`]: about 30,000 real query/document pairs.
///
/// # Errors
/// [`Error::Fetch`] when a package cannot be downloaded or extracted, and the errors of
/// [`paraphrase_from_dirs`].
pub fn load_paraphrase(fetcher: &Fetcher) -> Result<Vec<ParaphrasePair>> {
    let kjv_tmp = extract_deb(fetcher, &fetcher.download(&package_kjv())?)?;
    let web_tmp = extract_deb(fetcher, &fetcher.download(&package_web())?)?;
    paraphrase_from_dirs(&module_dir(kjv_tmp.path())?, &module_dir(web_tmp.path())?)
}

/// The files [`write_paraphrase_split`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ParaphraseFiles {
    /// `anchors.txt`: anchor texts (King James verses), one per line.
    pub anchors: PathBuf,
    /// `eval.jsonl`: `{"id", "text" (King James), "query" (World English Bible)}` per line, no
    /// verse of which is an anchor.
    pub eval: PathBuf,
    /// `corpus.txt`: every King James verse of the pairs, in canonical order (the index to move).
    pub corpus: PathBuf,
    /// Anchors written.
    pub n_anchors: usize,
    /// Evaluation pairs written.
    pub n_eval: usize,
    /// Corpus lines written.
    pub n_corpus: usize,
}

/// The anchors (texts) and evaluation pairs of [`write_paraphrase_split`], in memory.
///
/// # Errors
/// [`Error::InvalidArgument`] when there are fewer distinct verses than `n_anchors + n_eval`.
pub fn paraphrase_split(
    pairs: &[ParaphrasePair],
    n_anchors: usize,
    n_eval: usize,
    seed: u64,
) -> Result<(Vec<String>, Vec<ParaphrasePair>)> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut seen = std::collections::HashSet::new();
    let mut distinct: Vec<&ParaphrasePair> = pairs
        .iter()
        .filter(|p| seen.insert(p.text.as_str()))
        .collect();
    if distinct.len() < n_anchors + n_eval {
        return Err(Error::invalid(
            "paraphrase split",
            format!(
                "{} anchors and {} evaluation pairs asked from {} distinct verses",
                n_anchors,
                n_eval,
                distinct.len()
            ),
        ));
    }
    distinct.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let anchors = distinct[..n_anchors]
        .iter()
        .map(|p| p.text.clone())
        .collect();
    let eval = distinct[n_anchors..n_anchors + n_eval]
        .iter()
        .map(|p| (*p).clone())
        .collect();
    Ok((anchors, eval))
}

/// Splits paraphrase pairs for a migration study: a seeded shuffle of the distinct King James
/// texts gives the anchors (its first `n_anchors`, so that the first `m` lines of anchors.txt are
/// the anchors a smaller budget would pick) and the evaluation pairs (the next `n_eval`); the
/// corpus is every King James text. Files are written atomically into `dir`.
///
/// # Errors
/// [`Error::InvalidArgument`] when there are fewer distinct verses than `n_anchors + n_eval`;
/// [`Error::Io`] when writing fails.
pub fn write_paraphrase_split(
    pairs: &[ParaphrasePair],
    dir: &Path,
    n_anchors: usize,
    n_eval: usize,
    seed: u64,
) -> Result<ParaphraseFiles> {
    let (anchors, eval_pairs) = paraphrase_split(pairs, n_anchors, n_eval, seed)?;
    let lines = |texts: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for t in texts {
            s.push_str(t);
            s.push('\n');
        }
        s
    };
    let files = ParaphraseFiles {
        anchors: dir.join("anchors.txt"),
        eval: dir.join("eval.jsonl"),
        corpus: dir.join("corpus.txt"),
        n_anchors,
        n_eval,
        n_corpus: pairs.len(),
    };
    crate::io::write_atomic(
        &files.anchors,
        lines(&mut anchors.iter().map(String::as_str)).as_bytes(),
    )?;
    let mut eval = String::new();
    for p in &eval_pairs {
        let line = serde_json::to_string(p)
            .map_err(|e| Error::invalid("paraphrase pair", e.to_string()))?;
        eval.push_str(&line);
        eval.push('\n');
    }
    crate::io::write_atomic(&files.eval, eval.as_bytes())?;
    crate::io::write_atomic(
        &files.corpus,
        lines(&mut pairs.iter().map(|p| p.text.as_str())).as_bytes(),
    )?;
    Ok(files)
}

/// The single module folder under `root/usr/share/sword/modules/texts/ztext`.
fn module_dir(root: &Path) -> Result<PathBuf> {
    let base = root.join(ZTEXT_DIR);
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&base)
        .map_err(|e| Error::io(&base, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    match (dirs.pop(), dirs.is_empty()) {
        (Some(d), true) => Ok(d),
        _ => Err(Error::Fetch {
            what: base.display().to_string(),
            reason: "expected exactly one zText module folder; the package layout changed".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Writes a zText module in the KJV layout whose verses are `texts` (id → OSIS), every other
    /// verse empty; chapter headings carry `<chapter osisID>` like real modules. Old Testament books
    /// go in one block each, the New Testament in a single block.
    fn write_module(dir: &Path, texts: &HashMap<&str, &str>) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let (ot, nt) = KJV_BOOKS.split_at(OT_BOOKS);
        for (name, books, per_book) in [("ot", ot, true), ("nt", nt, false)] {
            let mut blocks: Vec<Vec<u8>> = vec![Vec::new()];
            let mut bzv = Vec::new();
            for slot in layout(books) {
                if per_book && slot == Slot::Book && !blocks.last().is_some_and(Vec::is_empty) {
                    blocks.push(Vec::new());
                }
                let text = match slot {
                    Slot::Verse(v) => texts
                        .get(v.to_string().as_str())
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    Slot::Chapter(b, c) => format!("<chapter osisID=\"{b}.{c}\"/>"),
                    _ => String::new(),
                };
                let block = blocks.len() - 1;
                let cur = &mut blocks[block];
                bzv.extend((block as u32).to_le_bytes());
                bzv.extend((cur.len() as u32).to_le_bytes());
                bzv.extend((text.len() as u16).to_le_bytes());
                cur.extend(text.as_bytes());
            }
            let (mut bzs, mut bzz) = (Vec::new(), Vec::new());
            for b in &blocks {
                let mut enc =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(b)?;
                let z = enc.finish()?;
                bzs.extend((bzz.len() as u32).to_le_bytes());
                bzs.extend((z.len() as u32).to_le_bytes());
                bzs.extend((b.len() as u32).to_le_bytes());
                bzz.extend(z);
            }
            std::fs::write(dir.join(format!("{name}.bzs")), bzs)?;
            std::fs::write(dir.join(format!("{name}.bzv")), bzv)?;
            std::fs::write(dir.join(format!("{name}.bzz")), bzz)?;
        }
        Ok(())
    }

    #[test]
    fn versification_totals() {
        let chapters: usize = KJV_BOOKS.iter().map(|b| b.verses.len()).sum();
        let verses: usize = KJV_BOOKS
            .iter()
            .flat_map(|b| b.verses.iter())
            .map(|&n| usize::from(n))
            .sum();
        assert_eq!((chapters, verses), (1189, 31102));
        let (ot, nt) = KJV_BOOKS.split_at(OT_BOOKS);
        // The slot counts of the real modules' .bzv files (241,150 and 82,460 bytes).
        assert_eq!((layout(ot).len(), layout(nt).len()), (24115, 8246));
        assert_eq!(
            (ot[38].osis, nt[0].osis, nt[26].osis),
            ("Mal", "Matt", "Rev")
        );
    }

    #[test]
    fn osis_cleaning() {
        let v = "<div type=\"x-milestone\" sID=\"pv1\"/><q who=\"Jesus\">¶ <w lemma=\"strong:G1063\">For</w> <w>God</w> so &amp; <transChange type=\"added\">is</transChange>,<note placement=\"foot\"><reference>3.16</reference>the <divineName>LORD\\+nd*</divineName>: or, <note>x</note>nested</note> loved<l/>the<lb/>world.</q>";
        assert_eq!(osis_to_text(v), "For God so & is, loved the world.");
        let ps = "<title canonical=\"true\" type=\"psalm\">A Psalm of <w>David</w>.</title> <title type=\"x-gen\">Heading</title><lg/>LORD, how";
        assert_eq!(osis_to_text(ps), "A Psalm of David. LORD, how");
        assert_eq!(osis_to_text("<note>only a note</note>"), "");
        assert_eq!(
            osis_to_text("the \\nd LORD\\nd* and the \\+nd GOD\\+nd*."),
            "the LORD and the GOD."
        );
    }

    #[test]
    fn reads_a_hand_built_module_and_aligns() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let (en_dir, es_dir) = (tmp.path().join("en"), tmp.path().join("es"));
        let en: HashMap<&str, &str> = [
            (
                "Gen.1.1",
                "In the <w>beginning</w> God created the heaven and the earth.",
            ),
            ("Exod.40.38", "For the cloud of the LORD"),
            ("Num.12.16", "And afterward the people removed"),
            ("John.3.16", "<q>For God so loved the world</q>"),
            ("Rev.22.21", "The grace of our Lord"),
        ]
        .into();
        let es: HashMap<&str, &str> = [
            (
                "Gen.1.1",
                "EN el principio crió Dios los cielos y la tierra.",
            ),
            ("Exod.40.38", "Porque la nube de Jehová"),
            ("John.3.16", "Porque de tal manera amó Dios al mundo"),
            ("Rev.22.21", "La gracia de nuestro Señor"),
        ]
        .into();
        write_module(&en_dir, &en)?;
        write_module(&es_dir, &es)?;
        let verses = read_ztext(&en_dir)?;
        assert_eq!(verses.len(), 31102);
        assert_eq!(verses[0].0.to_string(), "Gen.1.1");
        assert!(verses[0].1.contains("beginning"));
        let (e, s) = parallel_from_dirs(&en_dir, &es_dir)?;
        let ids: Vec<_> = e.records.iter().map(|r| r.id.as_str()).collect();
        // Num.12.16 is empty in Spanish: dropped from both.
        assert_eq!(ids, vec!["Gen.1.1", "Exod.40.38", "John.3.16", "Rev.22.21"]);
        assert_eq!(
            s.records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ids
        );
        let label = |d: &Dataset, i: usize| d.label_name(&d.records[i]).to_string();
        assert_eq!(
            [label(&e, 0), label(&e, 2), label(&e, 3)],
            ["law", "gospels", "prophecy"]
        );
        assert_eq!(
            e.labels,
            vec!["gospels", "history", "law", "letters", "poetry", "prophecy"]
        );
        assert_eq!(e.records[2].text, "For God so loved the world");
        assert_eq!(e.label_indices(), s.label_indices());
        Ok(())
    }

    #[test]
    fn refuses_broken_modules() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("m");
        write_module(&dir, &[("Gen.1.1", "x")].into())?;
        // One index entry too many: not the KJV layout.
        let bzv = dir.join("nt.bzv");
        let mut bytes = std::fs::read(&bzv)?;
        bytes.extend([0u8; 10]);
        std::fs::write(&bzv, &bytes)?;
        let e = read_ztext(&dir)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("nt.bzv") && e.contains("versification"), "{e}");
        // A truncated compressed file.
        write_module(&dir, &[("Gen.1.1", "x")].into())?;
        let bzz = dir.join("ot.bzz");
        let bytes = std::fs::read(&bzz)?;
        std::fs::write(&bzz, &bytes[..bytes.len() / 2])?;
        let e = read_ztext(&dir)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("ot.bzz"), "{e}");
        // A chapter heading in the wrong slot.
        write_module(&dir, &[("Gen.1.1", "x")].into())?;
        let ot_bzv = dir.join("ot.bzv");
        let mut idx = std::fs::read(&ot_bzv)?;
        // Slot 3 heads Gen.1; point its entry at the text of slot 35, the heading of Gen.2
        // (slot 3 + the heading + Genesis 1's 31 verses).
        let from = (3 + 1 + 31) * 10;
        let entry: Vec<u8> = idx[from..from + 10].to_vec();
        idx[30..40].copy_from_slice(&entry);
        std::fs::write(&ot_bzv, &idx)?;
        let e = read_ztext(&dir)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("Gen.1") && e.contains("Gen.2"), "{e}");
        Ok(())
    }
}
