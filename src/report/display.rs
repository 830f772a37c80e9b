//! Rich display: the values a user looks at as HTML tables (and, with the `plot` feature, SVG
//! figures), so that they render in Jupyter notebooks running the evcxr kernel.
//!
//! Every displayable type has a cheap `to_html()`; with the cargo feature `evcxr` it also has
//! `evcxr_display()`, which the evcxr kernel calls on the value a cell ends with. This module holds
//! the two generic pieces: [`Html`], a fragment that displays itself (e.g. two figures side by
//! side), and [`Table`], named rows of any [`TableRow`] type (several
//! [`SpaceComparison`](crate::space::similarity::SpaceComparison)s, anchor diagnostics, stitch reports...).
//!
//! ```
//! use relstitch::report::display::{Table, TableRow};
//! use relstitch::task::scores::Scores;
//! let s = Scores { accuracy: 0.9, macro_f1: 0.88, weighted_f1: 0.89, n: 100 };
//! let table = Table::new("checkpoint").with_row("minilm", s);
//! assert!(table.to_html().contains("<td>0.8900</td>"));
//! println!("{table}"); // aligned plain text
//! ```

use std::fmt;

/// A fragment of HTML that displays itself in Jupyter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Html(String);

impl Html {
    /// Wraps trusted HTML (or SVG) markup.
    pub fn new(markup: impl Into<String>) -> Self {
        Self(markup.into())
    }

    /// Lays out `items` (HTML or SVG fragments) in one row, wrapping on narrow screens.
    pub fn side_by_side<S: AsRef<str>>(items: &[S]) -> Self {
        let cells: String = items
            .iter()
            .map(|i| {
                format!(
                    "<div style=\"flex: 1 1 0; min-width: 320px\">{}</div>",
                    i.as_ref()
                )
            })
            .collect();
        Self(format!(
            "<div style=\"display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start\">{cells}</div>"
        ))
    }

    /// The markup.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The markup, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Renders the markup in Jupyter notebooks running the evcxr kernel.
    #[cfg(feature = "evcxr")]
    pub fn evcxr_display(&self) {
        emit_html(&self.0);
    }
}

impl fmt::Display for Html {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value that can be one row of a [`Table`]: its columns as `(header, cell)` pairs, always in the
/// same order.
pub trait TableRow {
    /// `(header, formatted cell)` for every column.
    fn columns(&self) -> Vec<(String, String)>;
}

/// Named rows of one [`TableRow`] type, shown as an HTML table (and as aligned text by `Display`).
///
/// The headers are those of the first row.
#[derive(Debug, Clone, PartialEq)]
pub struct Table<T> {
    key: String,
    rows: Vec<(String, T)>,
}

impl<T: TableRow> Table<T> {
    /// An empty table whose first column, the row names, is headed `key`.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    #[must_use]
    pub fn with_row(mut self, name: impl Into<String>, value: T) -> Self {
        self.push(name, value);
        self
    }

    /// Adds a row.
    pub fn push(&mut self, name: impl Into<String>, value: T) {
        self.rows.push((name.into(), value));
    }

    /// The rows, in insertion order.
    pub fn rows(&self) -> &[(String, T)] {
        &self.rows
    }

    /// The row named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&T> {
        self.rows.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The header row and every row's cells, as text.
    fn grid(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let mut headers = vec![self.key.clone()];
        if let Some((_, first)) = self.rows.first() {
            headers.extend(first.columns().into_iter().map(|(h, _)| h));
        }
        let cells = self
            .rows
            .iter()
            .map(|(name, v)| {
                std::iter::once(name.clone())
                    .chain(v.columns().into_iter().map(|(_, c)| c))
                    .collect()
            })
            .collect();
        (headers, cells)
    }

    /// The table as HTML (text escaped).
    pub fn to_html(&self) -> String {
        let (headers, cells) = self.grid();
        html_table(&headers, &cells)
    }

    /// Renders as an HTML table in Jupyter notebooks running the evcxr kernel.
    #[cfg(feature = "evcxr")]
    pub fn evcxr_display(&self) {
        emit_html(&self.to_html());
    }
}

impl<T: TableRow> fmt::Display for Table<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (headers, cells) = self.grid();
        let width = |c: usize| {
            std::iter::once(&headers)
                .chain(&cells)
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..headers.len()).map(width).collect();
        for (i, row) in std::iter::once(&headers).chain(&cells).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (s, w))| {
                    if c == 0 {
                        format!("{s:<w$}")
                    } else {
                        format!("{s:>w$}")
                    }
                })
                .collect();
            write!(f, "{}", line.join("  ").trim_end())?;
        }
        Ok(())
    }
}

/// An HTML table with one header row; cells are escaped. Rows shorter than the header are padded.
pub(crate) fn html_table(headers: &[String], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table><thead><tr>");
    for h in headers {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for c in 0..headers.len().max(r.len()) {
            out.push_str(&format!(
                "<td>{}</td>",
                escape(r.get(c).map_or("", String::as_str))
            ));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// `text` with `& < > " '` replaced by their HTML entities.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Prints `html` in the form the evcxr kernel turns into a `text/html` output.
#[cfg(feature = "evcxr")]
pub(crate) fn emit_html(html: &str) {
    println!("EVCXR_BEGIN_CONTENT text/html\n{html}\nEVCXR_END_CONTENT");
}

/// A float with 4 decimals, or `n/a` — the cell format of the metric tables.
pub(crate) fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"))
}

impl TableRow for crate::task::scores::Scores {
    fn columns(&self) -> Vec<(String, String)> {
        vec![
            ("accuracy".into(), cell(Some(self.accuracy))),
            ("macro F1".into(), cell(Some(self.macro_f1))),
            ("weighted F1".into(), cell(Some(self.weighted_f1))),
            ("n".into(), self.n.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair(f64, &'static str);

    impl TableRow for Pair {
        fn columns(&self) -> Vec<(String, String)> {
            vec![
                ("value".into(), cell(Some(self.0))),
                ("note".into(), self.1.into()),
            ]
        }
    }

    #[test]
    fn table_renders_html_and_aligned_text() {
        let t = Table::new("name")
            .with_row("a", Pair(0.5, "<b>"))
            .with_row("longer name", Pair(1.0, "ok"));
        assert_eq!(
            t.to_html(),
            "<table><thead><tr><th>name</th><th>value</th><th>note</th></tr></thead><tbody>\
             <tr><td>a</td><td>0.5000</td><td>&lt;b&gt;</td></tr>\
             <tr><td>longer name</td><td>1.0000</td><td>ok</td></tr></tbody></table>"
        );
        assert_eq!(
            t.to_string(),
            "name          value  note\na            0.5000   <b>\nlonger name  1.0000    ok"
        );
        assert!(t.get("a").is_some() && t.get("b").is_none());
        assert_eq!(t.rows().len(), 2);
    }

    #[test]
    fn empty_table_has_only_the_key_header() {
        let t: Table<Pair> = Table::new("k");
        assert_eq!(
            t.to_html(),
            "<table><thead><tr><th>k</th></tr></thead><tbody></tbody></table>"
        );
    }

    #[test]
    fn side_by_side_wraps_each_item() {
        let h = Html::side_by_side(&["<svg>1</svg>", "<svg>2</svg>"]);
        assert!(h.as_str().starts_with("<div style=\"display: flex"));
        assert_eq!(h.as_str().matches("<svg>").count(), 2);
        assert_eq!(escape("a&b \"c\" 'd'"), "a&amp;b &quot;c&quot; &#39;d&#39;");
    }
}
