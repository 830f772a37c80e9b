//! SVG figures: heatmaps, line charts with error bars, grouped bar charts and image grids.
//!
//! Every function returns the SVG document as a `String` (write it with [`crate::io::write_atomic`],
//! embed it in HTML, or show it in Jupyter). Figures carry a title, axis labels and a legend, and
//! draw with the SVG backend of [plotters](https://docs.rs/plotters) only: no fonts or system
//! libraries are needed. Behind the `plot` feature (on by default).
//!
//! ```
//! # fn main() -> relstitch::Result<()> {
//! use relstitch::report::plot::{heatmap, line_chart, Series};
//! let names = vec!["MiniLM".to_string(), "MPNet".to_string()];
//! let svg = heatmap("Linear CKA", &[vec![1.0, 0.8], vec![0.8, 1.0]], &names, &names, Some((0.0, 1.0)))?;
//! assert!(svg.starts_with("<svg"));
//! let sweep = Series::new("relative", vec![(16.0, 0.41), (64.0, 0.63), (256.0, 0.71)]);
//! let svg = line_chart("Anchors", "anchors", "weighted F1", &[sweep], true)?;
//! assert!(svg.contains("weighted F1"));
//! # Ok(()) }
//! ```

use plotters::element::{ErrorBar, PathElement};
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{Error, Result};

/// Font family used for all text.
const FONT: &str = "sans-serif";

/// One named line of a [`line_chart`], with optional symmetric error bars (one per point).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// `(x, y)` points, drawn in order.
    pub points: Vec<(f64, f64)>,
    /// Half-height of the error bar at each point (e.g. a standard deviation).
    pub errors: Option<Vec<f64>>,
}

impl Series {
    /// A series without error bars.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            errors: None,
        }
    }

    /// Adds error bars, one per point.
    #[must_use]
    pub fn with_errors(mut self, errors: Vec<f64>) -> Self {
        self.errors = Some(errors);
        self
    }
}

fn draw_err<E: std::error::Error + Send + Sync + 'static>(
    figure: &str,
) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Plot {
        figure: figure.to_string(),
        source: Box::new(e),
    }
}

fn check_finite(figure: &str, what: &str, values: impl IntoIterator<Item = f64>) -> Result<()> {
    if values.into_iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid(
            format!("{what} of figure {figure:?}"),
            "contains NaN or infinite values",
        ));
    }
    Ok(())
}

/// A categorical palette that stays readable in print (Tableau 10).
fn palette(i: usize) -> RGBColor {
    const C: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = C[i % C.len()];
    RGBColor(r, g, b)
}

/// The legend of a chart's labelled series, boxed, at `position`.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()
}

/// A heatmap of `values` (`rows.len()` rows of `cols.len()` values each) with a colour bar.
///
/// Colours run over `range` (default: the values' min and max) on the viridis scale. Row and
/// column labels are drawn when there are at most 40 of them; cell values are printed when the
/// matrix is at most 12 × 12.
pub fn heatmap(
    title: &str,
    values: &[Vec<f64>],
    rows: &[String],
    cols: &[String],
    range: Option<(f64, f64)>,
) -> Result<String> {
    let (n_rows, n_cols) = (values.len(), values.first().map_or(0, Vec::len));
    if n_rows == 0 || n_cols == 0 {
        return Err(Error::invalid(
            format!("values of heatmap {title:?}"),
            "empty matrix",
        ));
    }
    if values.iter().any(|r| r.len() != n_cols) {
        return Err(Error::invalid(
            format!("values of heatmap {title:?}"),
            "rows have different lengths",
        ));
    }
    if rows.len() != n_rows || cols.len() != n_cols {
        return Err(Error::invalid(
            format!("labels of heatmap {title:?}"),
            format!(
                "{} row and {} column labels for a {n_rows} × {n_cols} matrix",
                rows.len(),
                cols.len()
            ),
        ));
    }
    check_finite(title, "values", values.iter().flatten().copied())?;
    let (lo, hi) = match range {
        Some((lo, hi)) if lo < hi && lo.is_finite() && hi.is_finite() => (lo, hi),
        Some(r) => {
            return Err(Error::invalid(
                format!("colour range of heatmap {title:?}"),
                format!("{r:?} is not an increasing finite range"),
            ))
        }
        None => {
            let lo = values
                .iter()
                .flatten()
                .copied()
                .fold(f64::INFINITY, f64::min);
            let hi = values
                .iter()
                .flatten()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            if hi > lo {
                (lo, hi)
            } else {
                (lo - 0.5, lo + 0.5)
            }
        }
    };
    let labelled = n_rows.max(n_cols) <= 40;
    let annotate = n_rows.max(n_cols) <= 12;
    let cell = (480 / n_rows.max(n_cols)).clamp(2, 72) as i32;
    let label_w = if labelled {
        let chars = rows.iter().chain(cols).map(|s| s.chars().count()).max();
        (chars.unwrap_or(0).min(28) as i32) * 7 + 12
    } else {
        16
    };
    let (top, left) = (40 + label_w, 10 + label_w);
    let grid_w = cell * n_cols as i32;
    let grid_h = cell * n_rows as i32;
    let width = left + grid_w + 90;
    let height = top + grid_h + 20;
    let mut svg = String::new();
    {
        let err = draw_err(title);
        let root =
            SVGBackend::with_string(&mut svg, (width as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let title_style =
            TextStyle::from((FONT, 18).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(title.to_string(), (width / 2, 8), title_style))
            .map_err(&err)?;
        let t = |v: f64| ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
        for (i, row) in values.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let (x, y) = (left + cell * j as i32, top + cell * i as i32);
                let c = ViridisRGB::get_color_normalized(t(v) as f32, 0.0, 1.0);
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], c.filled()))
                    .map_err(&err)?;
                if annotate && cell >= 28 {
                    let ink = if t(v) > 0.55 { BLACK } else { WHITE };
                    let style = TextStyle::from((FONT, 11).into_font())
                        .color(&ink)
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    root.draw(&Text::new(
                        format!("{v:.2}"),
                        (x + cell / 2, y + cell / 2),
                        style,
                    ))
                    .map_err(&err)?;
                }
            }
        }
        if labelled {
            let short = |s: &String| s.chars().take(28).collect::<String>();
            for (i, r) in rows.iter().enumerate() {
                let style = TextStyle::from((FONT, 12).into_font())
                    .pos(Pos::new(HPos::Right, VPos::Center));
                root.draw(&Text::new(
                    short(r),
                    (left - 6, top + cell * i as i32 + cell / 2),
                    style,
                ))
                .map_err(&err)?;
            }
            for (j, c) in cols.iter().enumerate() {
                let style = TextStyle::from((FONT, 12).into_font())
                    .transform(FontTransform::Rotate270)
                    .pos(Pos::new(HPos::Left, VPos::Center));
                root.draw(&Text::new(
                    short(c),
                    (left + cell * j as i32 + cell / 2, top - 6),
                    style,
                ))
                .map_err(&err)?;
            }
        }
        // Colour bar.
        let (bx, steps) = (left + grid_w + 20, 64);
        for s in 0..steps {
            let y0 = top + grid_h * s / steps;
            let y1 = top + grid_h * (s + 1) / steps;
            let c =
                ViridisRGB::get_color_normalized(1.0 - (s as f32 + 0.5) / steps as f32, 0.0, 1.0);
            root.draw(&Rectangle::new([(bx, y0), (bx + 14, y1)], c.filled()))
                .map_err(&err)?;
        }
        for (frac, v) in [(0.0, hi), (0.5, (lo + hi) / 2.0), (1.0, lo)] {
            let style =
                TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(
                format!("{v:.2}"),
                (bx + 18, top + (grid_h as f64 * frac) as i32),
                style,
            ))
            .map_err(&err)?;
        }
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

/// Extent of `values` padded by 5 %, never empty.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { 0.5 };
    (lo - pad, hi + pad)
}

/// A line chart of one or more series, with markers, optional error bars and a legend.
///
/// With `log_x` the x axis is logarithmic (base 2; every x must be positive), which suits sweeps
/// over the number of anchors.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_x: bool,
) -> Result<String> {
    if series.is_empty() || series.iter().all(|s| s.points.is_empty()) {
        return Err(Error::invalid(
            format!("series of line chart {title:?}"),
            "nothing to draw",
        ));
    }
    for s in series {
        check_finite(title, "points", s.points.iter().flat_map(|&(x, y)| [x, y]))?;
        if let Some(e) = &s.errors {
            if e.len() != s.points.len() {
                return Err(Error::invalid(
                    format!("error bars of series {:?}", s.name),
                    format!("{} error bars for {} points", e.len(), s.points.len()),
                ));
            }
            check_finite(title, "error bars", e.iter().copied())?;
        }
        if log_x && s.points.iter().any(|&(x, _)| x <= 0.0) {
            return Err(Error::invalid(
                format!("x values of series {:?}", s.name),
                "a logarithmic x axis needs positive x",
            ));
        }
    }
    let fx = |x: f64| if log_x { x.log2() } else { x };
    let (x0, x1) = padded_range(series.iter().flat_map(|s| s.points.iter().map(|p| fx(p.0))));
    let (y0, y1) = padded_range(series.iter().flat_map(|s| {
        s.points.iter().enumerate().flat_map(move |(i, p)| {
            let e = s.errors.as_ref().map_or(0.0, |e| e[i].abs());
            [p.1 - e, p.1 + e]
        })
    }));
    let mut svg = String::new();
    {
        let err = draw_err(title);
        let root = SVGBackend::with_string(&mut svg, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(&err)?;
        let x_fmt = |v: &f64| {
            if log_x {
                format!("{}", 2f64.powf(*v).round())
            } else {
                format!("{v}")
            }
        };
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&x_fmt)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(&err)?;
        for (k, s) in series.iter().enumerate() {
            let color = palette(k);
            let pts: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (fx(x), y)).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(&err)?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(&err)?;
            if let Some(e) = &s.errors {
                chart
                    .draw_series(pts.iter().zip(e).map(|(&(x, y), &e)| {
                        ErrorBar::new_vertical(x, y - e.abs(), y, y + e.abs(), color.filled(), 8)
                    }))
                    .map_err(&err)?;
            }
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight).map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

/// A grouped bar chart: one group per entry of `groups`, one coloured bar per series in each
/// group, each series holding one value per group.
pub fn bar_chart(
    title: &str,
    y_label: &str,
    groups: &[String],
    series: &[(String, Vec<f64>)],
) -> Result<String> {
    if groups.is_empty() || series.is_empty() {
        return Err(Error::invalid(
            format!("data of bar chart {title:?}"),
            "needs at least one group and one series",
        ));
    }
    for (name, v) in series {
        if v.len() != groups.len() {
            return Err(Error::invalid(
                format!("series {name:?} of bar chart {title:?}"),
                format!("{} values for {} groups", v.len(), groups.len()),
            ));
        }
        check_finite(title, "values", v.iter().copied())?;
    }
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::max);
    let bottom = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0f64, f64::min);
    // Headroom above the tallest bar keeps the legend (upper right) off the bars.
    let y1 = if top > 0.0 {
        top * (1.2 + 0.08 * series.len() as f64)
    } else {
        1.0
    };
    let y0 = if bottom < 0.0 { bottom * 1.15 } else { 0.0 };
    let width = (160 + groups.len() * (30 + 22 * series.len())).clamp(520, 1400) as u32;
    let mut svg = String::new();
    {
        let err = draw_err(title);
        let root = SVGBackend::with_string(&mut svg, (width, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(60)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..groups.len() as f64, y0..y1)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(y_label)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(&err)?;
        let slot = 0.8 / series.len() as f64;
        for (k, (name, values)) in series.iter().enumerate() {
            let color = palette(k);
            chart
                .draw_series(values.iter().enumerate().map(|(g, &v)| {
                    let x = g as f64 + 0.1 + slot * k as f64;
                    Rectangle::new([(x, 0.0), (x + slot * 0.92, v)], color.filled())
                }))
                .map_err(&err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
                });
        }
        let base = chart.backend_coord(&(0.0, y0)).1;
        for (g, name) in groups.iter().enumerate() {
            let x = chart.backend_coord(&(g as f64 + 0.5, y0)).0;
            let style =
                TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
            root.draw(&Text::new(name.clone(), (x, base + 8), style))
                .map_err(&err)?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight).map_err(&err)?;
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

/// A grid of grey-scale images with a title and a label at the left of each row.
///
/// `images` holds row-major `height × width` intensities in `[0, 1]` (values outside are clipped),
/// laid out `columns` per row; `row_labels` names each row of the grid. The pixels are embedded
/// as one PNG (so the SVG stays small) and drawn `scale` times larger, without smoothing.
pub fn image_grid(
    title: &str,
    images: &[Vec<f32>],
    (height, width): (usize, usize),
    columns: usize,
    row_labels: &[String],
    scale: usize,
) -> Result<String> {
    let what = || format!("images of grid {title:?}");
    if images.is_empty() || columns == 0 || height == 0 || width == 0 || scale == 0 {
        return Err(Error::invalid(
            what(),
            "needs images, columns, a size and a scale",
        ));
    }
    if let Some(bad) = images.iter().position(|im| im.len() != height * width) {
        return Err(Error::invalid(
            what(),
            format!(
                "image {bad} has {} pixels, expected {height} × {width}",
                images[bad].len()
            ),
        ));
    }
    check_finite(title, "pixels", images.iter().flatten().map(|&v| v as f64))?;
    let grid_rows = images.len().div_ceil(columns);
    if row_labels.len() != grid_rows {
        return Err(Error::invalid(
            format!("row labels of grid {title:?}"),
            format!("{} labels for {grid_rows} rows", row_labels.len()),
        ));
    }
    let gap = 2;
    let (pw, ph) = (columns * (width + gap), grid_rows * (height + gap));
    let mut pixels = vec![255u8; pw * ph];
    for (k, im) in images.iter().enumerate() {
        let (gy, gx) = (k / columns * (height + gap), k % columns * (width + gap));
        for y in 0..height {
            for x in 0..width {
                let v = (im[y * width + x].clamp(0.0, 1.0) * 255.0).round() as u8;
                // Dark ink on white, like print.
                pixels[(gy + y) * pw + gx + x] = 255 - v;
            }
        }
    }
    let png = grey_png(&pixels, pw, ph).map_err(|source| Error::Plot {
        figure: title.to_string(),
        source,
    })?;
    let label_w = row_labels
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        * 7
        + 16;
    let (w, h) = (label_w + pw * scale + 10, 40 + ph * scale + 10);
    let mut svg = format!(
        r#"<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">
<rect x="0" y="0" width="{w}" height="{h}" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-family="{FONT}" font-size="18">{}</text>
"#,
        w / 2,
        xml_escape(title)
    );
    for (r, label) in row_labels.iter().enumerate() {
        let y = 40 + r * (height + gap) * scale + height * scale / 2;
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{y}\" text-anchor=\"end\" dominant-baseline=\"middle\" font-family=\"{FONT}\" font-size=\"13\">{}</text>\n",
            label_w - 8,
            xml_escape(label)
        ));
    }
    let data = base64(&png);
    svg.push_str(&format!(
        "<image x=\"{label_w}\" y=\"40\" width=\"{}\" height=\"{}\" style=\"image-rendering:pixelated\" href=\"data:image/png;base64,{data}\" xlink:href=\"data:image/png;base64,{data}\"/>\n</svg>\n",
        pw * scale,
        ph * scale,
    ));
    Ok(svg)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An 8-bit grey-scale PNG of `pixels` (row-major, `width × height`), by the `png` crate.
fn grey_png(
    pixels: &[u8],
    width: usize,
    height: usize,
) -> std::result::Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
    let w = u32::try_from(width)?;
    let h = u32::try_from(height)?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(pixels)?;
    writer.finish()?;
    Ok(out)
}

/// Standard base64 with padding (RFC 4648), by the `base64` crate.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m{i}")).collect()
    }

    #[test]
    fn heatmap_has_title_labels_and_rejects_bad_shapes() -> Result<()> {
        let v = vec![vec![1.0, 0.5, 0.2], vec![0.5, 1.0, 0.3]];
        let svg = heatmap("CKA <abs>", &v, &labels(2), &labels(3), None)?;
        assert!(svg.contains("CKA &lt;abs&gt;") || svg.contains("CKA <abs>"));
        assert!(svg.contains("m2") && svg.contains("0.50"));
        assert!(heatmap("x", &v, &labels(3), &labels(3), None).is_err());
        assert!(heatmap("x", &[vec![f64::NAN]], &labels(1), &labels(1), None).is_err());
        assert!(heatmap("x", &[], &[], &[], None).is_err());
        assert!(heatmap("x", &v, &labels(2), &labels(3), Some((1.0, 0.0))).is_err());
        // Constant matrices still draw.
        heatmap("x", &[vec![0.3]], &labels(1), &labels(1), None)?;
        Ok(())
    }

    #[test]
    fn line_and_bar_charts_draw_legends() -> Result<()> {
        let s =
            Series::new("relative", vec![(16.0, 0.4), (64.0, 0.6)]).with_errors(vec![0.01, 0.02]);
        let svg = line_chart(
            "sweep",
            "anchors",
            "weighted F1",
            std::slice::from_ref(&s),
            true,
        )?;
        assert!(svg.contains("relative") && svg.contains("anchors"));
        let bad = Series::new("b", vec![(0.0, 1.0)]);
        assert!(line_chart("sweep", "x", "y", &[bad], true).is_err());
        let svg = bar_chart(
            "scores",
            "accuracy",
            &labels(2),
            &[
                ("abs".into(), vec![0.1, 0.9]),
                ("rel".into(), vec![0.8, 0.85]),
            ],
        )?;
        assert!(svg.contains("abs") && svg.contains("m1") && svg.contains("accuracy"));
        assert!(bar_chart("s", "y", &labels(2), &[("a".into(), vec![1.0])]).is_err());
        Ok(())
    }

    #[test]
    fn image_grid_embeds_a_valid_png() -> Result<()> {
        let im: Vec<Vec<f32>> = (0..4).map(|k| vec![k as f32 / 3.0; 6]).collect();
        let svg = image_grid("digits", &im, (2, 3), 2, &labels(2), 4)?;
        assert!(svg.contains("data:image/png;base64,iVBORw0KGgo"));
        assert!(image_grid("d", &im, (2, 3), 2, &labels(1), 4).is_err());
        assert!(image_grid("d", &im, (3, 3), 2, &labels(2), 4).is_err());
        Ok(())
    }

    #[test]
    fn grey_png_decodes_to_the_same_pixels() -> anyhow::Result<()> {
        use base64::Engine;
        let pixels: Vec<u8> = (0..35u8).map(|v| v * 7).collect();
        let png = grey_png(&pixels, 7, 5).map_err(|e| anyhow::anyhow!("{e}"))?;
        let text = base64(&png);
        let bytes = base64::engine::general_purpose::STANDARD.decode(text)?;
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info()?;
        let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
        let info = reader.next_frame(&mut buf)?;
        assert_eq!((info.width, info.height), (7, 5));
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        assert_eq!(&buf[..info.buffer_size()], &pixels[..]);
        Ok(())
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
