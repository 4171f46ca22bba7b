//! PNG figures for softalign's reports: grids of panels, each holding line series (optionally
//! with a shaded band, e.g. quartiles or a confidence interval) or bars (histograms).
//!
//! The font is embedded (DejaVu Sans, see `assets/DejaVuSans.LICENSE`), so figures render the
//! same on any machine and the binary needs no system font library. Files are written to a
//! temporary name and renamed, so a reader never sees half a PNG.

#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Errors from drawing or writing a figure.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// plotters failed to draw or encode the picture.
    #[error("{path}: drawing failed: {message}")]
    Draw {
        /// The figure being written.
        path: PathBuf,
        /// What plotters reported.
        message: String,
    },
    /// The finished file could not be synced or moved into place.
    #[error("{path}: {cause}")]
    Io {
        /// The figure being written.
        path: PathBuf,
        /// The underlying error (part of the message, not a separate cause, so the
        /// one-line report names it once).
        cause: std::io::Error,
    },
}

impl From<softalign_durable::WriteError> for PlotError {
    fn from(error: softalign_durable::WriteError) -> Self {
        PlotError::Io {
            path: error.path,
            cause: error.cause,
        }
    }
}

/// One line on a panel.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Legend entry.
    pub label: String,
    /// The line's points `(x, y)`, in x order.
    pub points: Vec<(f64, f64)>,
    /// Optional shaded band `(x, low, high)` drawn under the line.
    pub band: Vec<(f64, f64, f64)>,
}

impl Series {
    /// A line with no band.
    pub fn line(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            label: label.into(),
            points,
            band: Vec::new(),
        }
    }

    /// A line with a shaded band.
    pub fn with_band(mut self, band: Vec<(f64, f64, f64)>) -> Self {
        self.band = band;
        self
    }
}

/// A bar chart: one bar per `(x, height)` of the given width, e.g. a histogram.
#[derive(Debug, Clone, Default)]
pub struct Bars {
    /// Legend entry.
    pub label: String,
    /// `(left edge, height)` per bar.
    pub bars: Vec<(f64, f64)>,
    /// Width of every bar in x units.
    pub width: f64,
    /// Optional error bar `(low, high)` per bar (e.g. a 95% interval), drawn at its centre.
    pub errors: Vec<(f64, f64)>,
}

/// One panel of a figure.
#[derive(Debug, Clone, Default)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Lines, drawn in order with colours from a fixed palette.
    pub series: Vec<Series>,
    /// Bars, drawn beneath the lines (colours continue the palette after the lines).
    pub bars: Vec<Bars>,
    /// Fixed y range; computed from the data (with a margin) when `None`.
    pub y_range: Option<(f64, f64)>,
    /// Fixed x range; computed from the data when `None`.
    pub x_range: Option<(f64, f64)>,
    /// Names of categories at x = 0, 1, 2, …: when given, the x axis shows these names instead
    /// of numbers (bar charts by model or regime; centre bars on the integers).
    pub categories: Vec<String>,
}

/// A grid of panels saved as one PNG.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Title across the top.
    pub title: String,
    /// Panels, filled row by row.
    pub panels: Vec<Panel>,
    /// Panels per row.
    pub columns: usize,
    /// Size of each panel in pixels.
    pub panel_size: (u32, u32),
}

/// The palette, chosen to stay distinguishable for common colour-vision deficiencies.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 0),
];

/// The colour of the `i`-th series of a panel.
pub fn palette(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// One colour per preference loss (and the SFT reference), the same in every figure: a family's
/// members share a hue family (DPO blue, cDPO orange, GDPO green; IPO and ROPO variants lighter
/// or darker), so a reader matches a loss across panels at a glance.
const LOSS_COLOURS: [(&str, RGBColor); 9] = [
    ("dpo", RGBColor(0, 114, 178)),
    ("cdpo", RGBColor(213, 94, 0)),
    ("gdpo", RGBColor(0, 158, 115)),
    ("ipo", RGBColor(86, 180, 233)),
    ("cipo", RGBColor(230, 159, 0)),
    ("gipo", RGBColor(120, 200, 160)),
    ("ropo", RGBColor(204, 121, 167)),
    ("gropo", RGBColor(0, 90, 60)),
    ("sft", RGBColor(120, 120, 120)),
];

/// The colour of a loss by name (`dpo`, `cDPO`, `gdpo β 0.3`: the first word, any case), or
/// `None` for a label that names no loss.
pub fn loss_colour(label: &str) -> Option<RGBColor> {
    let word = label
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    LOSS_COLOURS
        .iter()
        .find(|(name, _)| *name == word)
        .map(|&(_, colour)| colour)
}

/// The colour of a panel's `i`-th series labelled `label`: the loss's own colour when the label
/// names a loss, otherwise the palette's `i`-th.
pub fn series_colour(label: &str, i: usize) -> RGBColor {
    loss_colour(label).unwrap_or_else(|| palette(i))
}

fn register_embedded_font() {
    REGISTER.call_once(|| {
        // The font is compiled in and known to parse; registration cannot fail for it.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

impl Figure {
    /// Draw the figure and write it to `path` (PNG) whole or not at all
    /// (`softalign_durable::write_file_atomic_with`: the PNG is drawn into a temporary beside
    /// `path`, which keeps the `.png` extension the encoder goes by, then synced and renamed).
    pub fn save(&self, path: &Path) -> Result<(), PlotError> {
        register_embedded_font();
        let draw_error = |e: &dyn std::fmt::Display| PlotError::Draw {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        softalign_durable::write_file_atomic_with(path, |partial| self.draw(partial, draw_error))
    }

    /// Draws the figure into the PNG file `file`.
    fn draw(
        &self,
        file: &Path,
        draw_error: impl Fn(&dyn std::fmt::Display) -> PlotError,
    ) -> Result<(), PlotError> {
        let columns = self.columns.max(1);
        let rows = self.panels.len().div_ceil(columns).max(1);
        let title_height = if self.title.is_empty() { 0 } else { 40 };
        let size = (
            self.panel_size.0 * columns as u32,
            self.panel_size.1 * rows as u32 + title_height,
        );
        {
            let root = BitMapBackend::new(file, size).into_drawing_area();
            root.fill(&WHITE).map_err(|e| draw_error(&e))?;
            let body = if self.title.is_empty() {
                root.clone()
            } else {
                root.titled(&self.title, ("sans-serif", 26))
                    .map_err(|e| draw_error(&e))?
            };
            let areas = body.split_evenly((rows, columns));
            for (panel, area) in self.panels.iter().zip(areas.iter()) {
                draw_panel(panel, area).map_err(|e| draw_error(&e))?;
            }
            root.present().map_err(|e| draw_error(&e))?;
        }
        Ok(())
    }
}

fn data_ranges(panel: &Panel) -> ((f64, f64), (f64, f64)) {
    let mut x = (f64::INFINITY, f64::NEG_INFINITY);
    let mut y = (f64::INFINITY, f64::NEG_INFINITY);
    let mut see = |px: f64, py: f64| {
        if px.is_finite() && py.is_finite() {
            x = (x.0.min(px), x.1.max(px));
            y = (y.0.min(py), y.1.max(py));
        }
    };
    for s in &panel.series {
        s.points.iter().for_each(|&(px, py)| see(px, py));
        s.band.iter().for_each(|&(px, lo, hi)| {
            see(px, lo);
            see(px, hi)
        });
    }
    for b in &panel.bars {
        b.bars.iter().for_each(|&(px, h)| {
            see(px, 0.0);
            see(px + b.width, h)
        });
        b.bars
            .iter()
            .zip(&b.errors)
            .for_each(|(&(px, _), &(lo, hi))| {
                see(px, lo);
                see(px, hi)
            });
    }
    if !x.0.is_finite() {
        x = (0.0, 1.0);
        y = (0.0, 1.0);
    }
    if x.1 <= x.0 {
        x.1 = x.0 + 1.0;
    }
    let margin = ((y.1 - y.0) * 0.05).max(1e-9);
    ((x.0, x.1), (y.0 - margin, y.1 + margin))
}

/// Axis tick text: `20k`, `1.5M`, `0.25`, `-1`; no trailing `.0`.
pub fn compact_number(x: f64) -> String {
    let magnitude = x.abs();
    let (value, suffix) = if magnitude >= 1e6 {
        (x / 1e6, "M")
    } else if magnitude >= 1e4 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    if magnitude < 1e-9 {
        return "0".into();
    }
    let text = if value == value.round() {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        let text = format!("{value:.3}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        if text == "-0" {
            "0".to_string()
        } else {
            text.to_string()
        }
    };
    format!("{text}{suffix}")
}

/// An x tick's text: the category's name at an integer position of a categorical axis (nothing
/// between categories), the number otherwise.
fn category_or_number(categories: &[String], x: f64) -> String {
    if categories.is_empty() {
        return compact_number(x);
    }
    let nearest = x.round();
    if (x - nearest).abs() > 1e-6 || nearest < 0.0 {
        return String::new();
    }
    categories
        .get(nearest as usize)
        .cloned()
        .unwrap_or_default()
}

fn draw_panel<DB: DrawingBackend>(
    panel: &Panel,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (auto_x, auto_y) = data_ranges(panel);
    let categories = &panel.categories;
    let auto_x = if categories.is_empty() {
        auto_x
    } else {
        (-0.5, categories.len() as f64 - 0.5)
    };
    let (x0, x1) = panel.x_range.unwrap_or(auto_x);
    let (y0, y1) = panel.y_range.unwrap_or(auto_y);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .label_style(("sans-serif", 12))
        .x_labels(if categories.is_empty() {
            10
        } else {
            categories.len() + 1
        })
        .x_label_formatter(&|x| category_or_number(categories, *x))
        .y_label_formatter(&|y| compact_number(*y))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let line_count = panel.series.len();
    for (i, bars) in panel.bars.iter().enumerate() {
        let color = series_colour(&bars.label, line_count + i);
        chart
            .draw_series(bars.bars.iter().map(|&(x, h)| {
                Rectangle::new([(x, 0.0), (x + bars.width, h)], color.mix(0.55).filled())
            }))?
            .label(bars.label.as_str())
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.mix(0.55).filled())
            });
    }
    for (i, bars) in panel.bars.iter().enumerate() {
        let color = series_colour(&bars.label, line_count + i);
        chart.draw_series(
            bars.bars
                .iter()
                .zip(&bars.errors)
                .map(|(&(x, _), &(lo, hi))| {
                    let centre = x + bars.width / 2.0;
                    PathElement::new(vec![(centre, lo), (centre, hi)], color.stroke_width(2))
                }),
        )?;
    }
    for (i, series) in panel.series.iter().enumerate() {
        let color = series_colour(&series.label, i);
        if !series.band.is_empty() {
            let upper = series.band.iter().map(|&(x, _, hi)| (x, hi));
            let lower = series.band.iter().rev().map(|&(x, lo, _)| (x, lo));
            chart.draw_series(std::iter::once(Polygon::new(
                upper.chain(lower).collect::<Vec<_>>(),
                color.mix(0.18).filled(),
            )))?;
        }
        chart
            .draw_series(LineSeries::new(
                series.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(series.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    if panel.series.iter().any(|s| !s.label.is_empty())
        || panel.bars.iter().any(|b| !b.label.is_empty())
    {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 12))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_compact() {
        assert_eq!(compact_number(20_000.0), "20k");
        assert_eq!(compact_number(1_500_000.0), "1.5M");
        assert_eq!(compact_number(-1.0), "-1");
        assert_eq!(compact_number(0.25), "0.25");
        assert_eq!(compact_number(0.5), "0.5");
        assert_eq!(compact_number(-0.0001), "0");
        assert_eq!(compact_number(-1e-12), "0");
    }

    #[test]
    fn every_loss_keeps_its_colour_in_any_case_and_position() {
        assert_eq!(series_colour("cdpo", 0), series_colour("cDPO β 0.1", 5));
        assert_ne!(loss_colour("cdpo"), loss_colour("dpo"));
        assert_ne!(loss_colour("gdpo"), loss_colour("gipo"));
        assert_eq!(loss_colour("adopt"), None);
        assert_eq!(series_colour("adopt", 2), palette(2));
        let colours: std::collections::HashSet<_> =
            LOSS_COLOURS.iter().map(|(_, c)| (c.0, c.1, c.2)).collect();
        assert_eq!(colours.len(), LOSS_COLOURS.len());
    }

    #[test]
    fn categorical_axes_name_the_categories_at_integers_only() {
        let names = vec!["sft".to_string(), "dpo".to_string()];
        assert_eq!(category_or_number(&names, 1.0), "dpo");
        assert_eq!(category_or_number(&names, 0.5), "");
        assert_eq!(category_or_number(&names, 2.0), "");
        assert_eq!(category_or_number(&names, -1.0), "");
        assert_eq!(category_or_number(&[], 0.5), "0.5");
    }

    #[test]
    fn writes_a_png_atomically() {
        let dir = std::env::temp_dir().join(format!("softalign-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("figure.png");
        let figure = Figure {
            title: "test".into(),
            columns: 2,
            panel_size: (300, 200),
            panels: vec![
                Panel {
                    title: "lines".into(),
                    series: vec![
                        Series::line("a", vec![(0.0, 0.0), (1.0, 1.0)])
                            .with_band(vec![(0.0, -0.1, 0.1), (1.0, 0.9, 1.1)]),
                    ],
                    ..Panel::default()
                },
                Panel {
                    title: "bars".into(),
                    bars: vec![Bars {
                        label: "h".into(),
                        bars: vec![(-0.4, 3.0), (0.6, 5.0)],
                        width: 0.8,
                        errors: vec![(2.5, 3.5), (4.0, 6.0)],
                    }],
                    categories: vec!["first".into(), "second".into()],
                    ..Panel::default()
                },
            ],
        };
        figure.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(
            std::fs::read_dir(&dir)
                .unwrap()
                .all(|e| !softalign_durable::is_temporary(&e.unwrap().file_name()))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
